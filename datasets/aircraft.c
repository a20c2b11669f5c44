// aircraft.c: FGVC-Aircraft 2013b, official layout, variant level (100 classes).
//   root/data/variants.txt                    one variant name per line (class order)
//   root/data/images_variant_trainval.txt     "imageid Variant Name" (train = trainval)
//   root/data/images_variant_test.txt
//   root/data/images/<imageid>.jpg            (bottom 20-px banner: data.banner_px)
#include <string.h>
#include "datasets/readers.h"

static int read_split(const IndexBuild *b, const char *file, DatasetItem **v, int *n) {
    const Dataset *d = b->d;
    TextFile tf;
    if (!tf_read(&tf, b, file)) return 0;
    const char *path = tf.path;
    int cap = 0;
    for (int i = 0; i < tf.n; i++) {
        char *l = tf.line[i];
        if (tf_blank(l)) continue;
        char *sp = strchr(l, ' ');
        int c = -1;
        if (sp) {
            *sp = 0;
            for (int k = 0; k < d->num_classes; k++)
                if (!strcmp(sp + 1, d->class_names[k])) { c = k; break; }
        }
        if (c < 0) {
            dcal_err("%s:%d: expected 'imageid Variant' with a variant from variants.txt%s%s%s", path, i + 1,
                     sp ? " (got '" : "", sp ? sp + 1 : "", sp ? "')" : "");
            tf_free(&tf);
            return 0;
        }
        if (!ds_check_rel(path, i + 1, l, "data/images/ of the data root")) {   // the image id names the file
            tf_free(&tf);
            return 0;
        }
        char rel[DCAL_PATH_MAX];
        snprintf(rel, sizeof rel, "data/images/%s.jpg", l);
        ds_push(v, n, &cap, d->root, rel, c);
    }
    tf_free(&tf);
    return 1;
}

int aircraft_read(IndexBuild *b) {
    Dataset *d = b->d;
    return ds_read_class_names(b, "data/variants.txt") &&
           read_split(b, "data/images_variant_trainval.txt", &d->train, &d->n_train) &&
           read_split(b, "data/images_variant_test.txt", &d->test, &d->n_test);
}
