// valsplit.c: the held-out validation split (data.val_fraction). Selecting a
// checkpoint on the test split would bias the number it then reports, so the
// selection gets its own images, carved from the training split: per class, so
// every class is represented, and keyed by (seed, class), so the same config
// always holds out the same images whatever the machine or thread count.
#include <math.h>
#include <string.h>
#include "core/rng.h"
#include "core/sha256.h"
#include "datasets/dataset.h"

// Which of class c's n training images (their indices idx[0..n)) are held out: mark[idx[j]] = 1.
static int mark_class(int c, const int *idx, int n, double fraction, uint64_t seed, char *mark) {
    int v = (int)floor(fraction * n + 0.5);
    if (v > n - 1) v = n - 1;   // a class never leaves training entirely
    if (v <= 0) return 0;
    int *perm = xmalloc(sizeof(int) * (size_t)n);
    memcpy(perm, idx, sizeof(int) * (size_t)n);
    Rng r;
    rng_init(&r, seed, 0, (uint64_t)c, RNG_VAL_SPLIT);
    for (int j = n - 1; j > 0; j--) {   // Fisher-Yates; the first v drawn are held out
        int k = (int)rng_below(&r, (uint32_t)(j + 1)), t = perm[j];
        perm[j] = perm[k];
        perm[k] = t;
    }
    for (int j = 0; j < v; j++) mark[perm[n - 1 - j]] = 1;
    free(perm);
    return v;
}

// The record of the split, independent of where the data sits: root-relative paths and labels.
static void hash_val(Dataset *d) {
    Sha256 *h = sha256_new();
    size_t rl = strlen(d->root);
    for (int i = 0; i < d->n_val; i++) {
        const char *p = d->val[i].path;
        if (!strncmp(p, d->root, rl) && p[rl] == '/') p += rl + 1;
        char lab[24];
        snprintf(lab, sizeof lab, "\t%d\n", d->val[i].label);
        sha256_update(h, p, strlen(p));
        sha256_update(h, lab, strlen(lab));
    }
    sha256_final(h, d->val_sha256);
}

int dataset_hold_out_val(Dataset *d, double fraction, uint64_t seed) {
    if (fraction <= 0) return 1;
    char *mark = xcalloc((size_t)d->n_train, 1);
    int *idx = xmalloc(sizeof(int) * (size_t)d->n_train), total = 0;
    for (int c = 0; c < d->num_classes; c++) {
        int n = 0;
        for (int i = 0; i < d->n_train; i++)
            if (d->train[i].label == c) idx[n++] = i;
        total += mark_class(c, idx, n, fraction, seed, mark);
    }
    free(idx);
    if (!total) {
        free(mark);
        dcal_err("%s: data.val_fraction=%g holds out no image (classes have too few training images; raise it or "
                 "set 0)", d->root, fraction);
        return 0;
    }
    DatasetItem *val = xmalloc(sizeof(DatasetItem) * (size_t)total);
    int nt = 0, nv = 0;
    for (int i = 0; i < d->n_train; i++) {   // both lists keep the index's order
        if (mark[i]) val[nv++] = d->train[i];
        else d->train[nt++] = d->train[i];
    }
    free(mark);
    d->n_train = nt;
    d->val = val;
    d->n_val = nv;
    hash_val(d);
    return 1;
}

Dataset dataset_val_view(const Dataset *d) {
    Dataset v = *d;
    v.test = d->val;
    v.n_test = d->n_val;
    return v;
}
