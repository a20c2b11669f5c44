// cub.c: CUB-200-2011 index (also the synthetic set's layout, MODEL.md §7).
// root/classes.txt "id name", images.txt "id relpath", image_class_labels.txt
// "id label", train_test_split.txt "id is_train"; ids 1-based; images under root/images/.
#include <limits.h>
#include <string.h>
#include "datasets/readers.h"

// One "id value" file: the values (pointing into tf) and the line each came from,
// so every later complaint names file:line.
typedef struct {
    TextFile tf;
    char **val;
    int *line;
    int n;
} Pairs;

static void pairs_free(Pairs *p) {
    free(p->val); free(p->line);
    tf_free(&p->tf);
}

// Split one non-blank line into a checked id and a trimmed value. 0 after an error line.
static int parse_pair(Pairs *p, int i) {
    const char *path = p->tf.path;
    char *l = p->tf.line[i];
    while (*l == ' ' || *l == '\t') l++;
    size_t k = strcspn(l, " \t");
    char *v = l + k;
    if (*v) *v++ = 0;
    long id;
    if (!ds_parse_int(l, 1, INT_MAX, &id) || id != p->n + 1) {
        dcal_err("%s:%d: expected id %d, got '%s' (ids must run 1..N in order)", path, i + 1, p->n + 1, l);
        return 0;
    }
    while (*v == ' ' || *v == '\t') v++;
    k = strlen(v);
    while (k && (v[k - 1] == ' ' || v[k - 1] == '\t')) v[--k] = 0;
    if (!k) { dcal_err("%s:%d: missing value after id %ld (expected 'id value')", path, i + 1, id); return 0; }
    p->val[p->n] = v;
    p->line[p->n++] = i + 1;
    return 1;
}

// Read "id value" pairs; ids must run 1..n in order. 0 after an error line (p is freed by the caller).
static int read_pairs(Pairs *p, const IndexBuild *b, const char *file) {
    if (!tf_read(&p->tf, b, file)) return 0;
    size_t cap = (size_t)(p->tf.n ? p->tf.n : 1);
    p->val = xmalloc(sizeof(char *) * cap);
    p->line = xmalloc(sizeof(int) * cap);
    for (int i = 0; i < p->tf.n; i++)
        if (!tf_blank(p->tf.line[i]) && !parse_pair(p, i)) return 0;
    return 1;
}

// Value k of p as an integer in [lo, hi]; else an error line naming file:line.
static int to_int(const Pairs *p, int k, const char *what, int lo, int hi, int *out) {
    long v;
    if (!ds_parse_int(p->val[k], lo, hi, &v)) {
        dcal_err("%s:%d: %s '%s' is not an integer in %d..%d (image id %d)", p->tf.path, p->line[k], what, p->val[k], lo,
                 hi, k + 1);
        return 0;
    }
    *out = (int)v;
    return 1;
}

// The train and test lists from the three per-image files. 0 after an error line.
static int push_items(Dataset *d, const Pairs *img, const Pairs *lab, const Pairs *spl) {
    int cap_tr = 0, cap_te = 0;
    for (int i = 0; i < img->n; i++) {
        int label, is_train;
        if (!to_int(lab, i, "class id", 1, d->num_classes, &label)) return 0;
        if (!to_int(spl, i, "is_train flag", 0, 1, &is_train)) return 0;
        if (!ds_check_rel(img->tf.path, img->line[i], img->val[i], "images/ of the data root")) return 0;
        char rel[DCAL_PATH_MAX];
        snprintf(rel, sizeof rel, "images/%s", img->val[i]);
        if (is_train) ds_push(&d->train, &d->n_train, &cap_tr, d->root, rel, label - 1);
        else ds_push(&d->test, &d->n_test, &cap_te, d->root, rel, label - 1);
    }
    return 1;
}

int cub_read(IndexBuild *b) {
    Dataset *d = b->d;
    Pairs pc, pi, pl, ps;
    memset(&pc, 0, sizeof pc); memset(&pi, 0, sizeof pi); memset(&pl, 0, sizeof pl); memset(&ps, 0, sizeof ps);
    int ok = read_pairs(&pc, b, "classes.txt") && read_pairs(&pi, b, "images.txt") &&
             read_pairs(&pl, b, "image_class_labels.txt") && read_pairs(&ps, b, "train_test_split.txt");
    if (ok && (pl.n != pi.n || ps.n != pi.n)) {
        dcal_err("%s: images.txt has %d entries but image_class_labels.txt has %d and train_test_split.txt %d "
                 "(one line per image in each)", d->root, pi.n, pl.n, ps.n);
        ok = 0;
    }
    if (ok) {
        d->num_classes = pc.n;
        d->class_names = xcalloc((size_t)(pc.n ? pc.n : 1), sizeof(char *));
        for (int c = 0; c < pc.n; c++) d->class_names[c] = xstrdup(pc.val[c]);
        ok = push_items(d, &pi, &pl, &ps);
    }
    pairs_free(&pc); pairs_free(&pi); pairs_free(&pl); pairs_free(&ps);
    return ok;
}
