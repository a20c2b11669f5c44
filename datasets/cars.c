// cars.c: Stanford Cars in a simple CSV layout (the official devkit ships .mat
// files; converting them once to CSV keeps a MATLAB reader out of dcal).
//   root/class_names.txt   one class name per line, line k = class k (196 lines)
//   root/cars_train.csv    "relpath,class_id" per line, relpath relative to root,
//   root/cars_test.csv     class_id 1-based; an optional first header line is skipped
// See datasets/README.md for the conversion from the devkit.
#include <string.h>
#include "datasets/readers.h"

static int read_csv(const IndexBuild *b, const char *file, DatasetItem **v, int *n) {
    const Dataset *d = b->d;
    TextFile tf;
    if (!tf_read(&tf, b, file)) return 0;
    const char *path = tf.path;
    int cap = 0;
    for (int i = 0; i < tf.n; i++) {
        char *l = tf.line[i];
        if (tf_blank(l)) continue;
        char *comma = strrchr(l, ',');   // the last comma: paths may contain commas
        char *end = NULL;
        long c = comma ? strtol(comma + 1, &end, 10) : 0;
        bool good = comma && end != comma + 1 && (*end == 0 || *end == ' ') && comma > l;
        if (!good && i == 0) continue;   // header line
        if (!good || c < 1 || c > d->num_classes) {
            dcal_err("%s:%d: expected 'relpath,class_id' with class_id in 1..%d", path, i + 1, d->num_classes);
            tf_free(&tf);
            return 0;
        }
        *comma = 0;
        ds_push(v, n, &cap, d->root, l, (int)c - 1);
    }
    tf_free(&tf);
    return 1;
}

int cars_read(IndexBuild *b) {
    Dataset *d = b->d;
    return ds_read_class_names(b, "class_names.txt") &&
           read_csv(b, "cars_train.csv", &d->train, &d->n_train) &&
           read_csv(b, "cars_test.csv", &d->test, &d->n_test);
}
