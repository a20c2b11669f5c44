// cars.c: Stanford Cars in a simple CSV layout (the official devkit ships .mat
// files; converting them once to CSV keeps a MATLAB reader out of dcal).
//   root/class_names.txt   one class name per line, line k = class k (196 lines)
//   root/cars_train.csv    "relpath,class_id" per line, relpath relative to root,
//   root/cars_test.csv     class_id 1-based; line 1 may be the header "relpath,class_id"
// See datasets/README.md for the conversion from the devkit.
#include <string.h>
#include "datasets/readers.h"

#define CARS_HEADER "relpath,class_id"   // the only header accepted (datasets/README.md)

// Split "relpath,class_id" at the last comma (paths may contain commas); the id
// is digits only, trailing spaces allowed. 0 after an error line naming file:line.
static int parse_row(const Dataset *d, const char *path, int line, char *l, long *c) {
    char *comma = strrchr(l, ',');
    if (!comma || comma == l) {
        dcal_err("%s:%d: expected 'relpath,class_id' (got '%s'; only line 1 may be the header '" CARS_HEADER "')", path,
                 line, l);
        return 0;
    }
    char *id = comma + 1;
    size_t k = strlen(id);
    while (k && (id[k - 1] == ' ' || id[k - 1] == '\t')) id[--k] = 0;
    if (!ds_parse_int(id, 1, d->num_classes, c)) {
        dcal_err("%s:%d: class_id '%s' is not an integer in 1..%d (expected 'relpath,class_id', nothing after it)", path,
                 line, id, d->num_classes);
        return 0;
    }
    *comma = 0;
    return ds_check_rel(path, line, l, "the data root");
}

static int read_csv(const IndexBuild *b, const char *file, DatasetItem **v, int *n) {
    const Dataset *d = b->d;
    TextFile tf;
    if (!tf_read(&tf, b, file)) return 0;
    int cap = 0, ok = 1;
    for (int i = 0; i < tf.n && ok; i++) {
        char *l = tf.line[i];
        if (tf_blank(l) || (i == 0 && !strcmp(l, CARS_HEADER))) continue;
        long c;
        ok = parse_row(d, tf.path, i + 1, l, &c);
        if (ok) ds_push(v, n, &cap, d->root, l, (int)c - 1);
    }
    tf_free(&tf);
    return ok;
}

int cars_read(IndexBuild *b) {
    Dataset *d = b->d;
    return ds_read_class_names(b, "class_names.txt") &&
           read_csv(b, "cars_train.csv", &d->train, &d->n_train) &&
           read_csv(b, "cars_test.csv", &d->test, &d->n_test);
}
