// cub.c: CUB-200-2011 index (also the synthetic set's layout, MODEL.md §7).
// root/classes.txt "id name", images.txt "id relpath", image_class_labels.txt
// "id label", train_test_split.txt "id is_train"; ids 1-based; images under root/images/.
#include <string.h>
#include "datasets/readers.h"

// Read "id value" pairs; ids must run 1..n in order. vals[i] points into tf.
static int read_pairs(TextFile *tf, const IndexBuild *b, const char *file, char ***vals, int *n) {
    if (!tf_read(tf, b, file)) return 0;
    const char *path = tf->path;
    *vals = xmalloc(sizeof(char *) * (size_t)(tf->n ? tf->n : 1));
    *n = 0;
    for (int i = 0; i < tf->n; i++) {
        char *l = tf->line[i];
        if (tf_blank(l)) continue;
        char *end;
        long id = strtol(l, &end, 10);
        if (end == l || (*end != ' ' && *end != '\t')) {
            dcal_err("%s:%d: expected 'id value'", path, i + 1);
            goto fail;
        }
        if (id != *n + 1) {
            dcal_err("%s:%d: expected id %d, got %ld (ids must run 1..N in order)", path, i + 1, *n + 1, id);
            goto fail;
        }
        while (*end == ' ' || *end == '\t') end++;
        size_t k = strlen(end);
        while (k && (end[k - 1] == ' ' || end[k - 1] == '\t')) end[--k] = 0;
        if (!k) { dcal_err("%s:%d: missing value after id", path, i + 1); goto fail; }
        (*vals)[(*n)++] = end;
    }
    return 1;
fail:
    free(*vals);
    *vals = NULL;   // the caller frees it too
    return 0;
}

static int to_int(const char *s, const char *root, const char *file, int id, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) {
        dcal_err("%s/%s: id %d: value '%s' is not an integer in [%d, %d]", root, file, id, s, lo, hi);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int cub_read(IndexBuild *b) {
    Dataset *d = b->d;
    TextFile tc, ti, tl, ts;
    char **cls = NULL, **img = NULL, **lab = NULL, **spl = NULL;
    int nc = 0, ni = 0, nl = 0, ns = 0, ok = 0;
    memset(&tc, 0, sizeof tc); memset(&ti, 0, sizeof ti); memset(&tl, 0, sizeof tl); memset(&ts, 0, sizeof ts);
    if (!read_pairs(&tc, b, "classes.txt", &cls, &nc)) goto out;
    if (!read_pairs(&ti, b, "images.txt", &img, &ni)) goto out;
    if (!read_pairs(&tl, b, "image_class_labels.txt", &lab, &nl)) goto out;
    if (!read_pairs(&ts, b, "train_test_split.txt", &spl, &ns)) goto out;
    if (nl != ni || ns != ni) {
        dcal_err("%s: images.txt has %d entries but image_class_labels.txt has %d and train_test_split.txt %d",
                 d->root, ni, nl, ns);
        goto out;
    }
    d->num_classes = nc;
    d->class_names = xcalloc((size_t)(nc ? nc : 1), sizeof(char *));
    for (int c = 0; c < nc; c++) d->class_names[c] = xstrdup(cls[c]);
    int cap_tr = 0, cap_te = 0;
    for (int i = 0; i < ni; i++) {
        int label, is_train;
        if (!to_int(lab[i], d->root, "image_class_labels.txt", i + 1, 1, nc, &label)) goto out;
        if (!to_int(spl[i], d->root, "train_test_split.txt", i + 1, 0, 1, &is_train)) goto out;
        char rel[DCAL_PATH_MAX];
        snprintf(rel, sizeof rel, "images/%s", img[i]);
        if (is_train) ds_push(&d->train, &d->n_train, &cap_tr, d->root, rel, label - 1);
        else ds_push(&d->test, &d->n_test, &cap_te, d->root, rel, label - 1);
    }
    ok = 1;
out:
    free(cls); free(img); free(lab); free(spl);
    tf_free(&tc); tf_free(&ti); tf_free(&tl); tf_free(&ts);
    return ok;
}
