// dataset.c: dataset_open — look the name up in the registry, check the root,
// run the row's reader, finish the fingerprint (index.c) — and dataset_free.
#include <string.h>
#include <sys/stat.h>
#include "datasets/registry_int.h"

// d->name and d->root from cfg (trailing '/' dropped). 0 after an error line when
// the root is empty or not a directory; that line names the layout and source of
// info (CUB's for an unknown name, which dataset_open reports after this check).
static int set_root(Dataset *d, const DataConfig *cfg, const DatasetInfo *info) {
    snprintf(d->name, sizeof d->name, "%s", cfg->dataset);
    snprintf(d->root, sizeof d->root, "%s", cfg->root);
    size_t rl = strlen(d->root);
    while (rl > 1 && d->root[rl - 1] == '/') d->root[--rl] = 0;
    if (!rl) { dcal_err("data.root is empty (set it in the config or with --data-root DIR)"); return 0; }
    struct stat sb;
    if (stat(d->root, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        if (!info) info = dataset_info_at(0);
        dcal_err("%s: dataset root for '%s' is not a directory (expected %s; get it from %s; set --data-root DIR)",
                 d->root, cfg->dataset, info->layout, info->source);
        return 0;
    }
    return 1;
}

static int open_as(Dataset *d, const DataConfig *cfg, DsTolerate tol) {
    memset(d, 0, sizeof *d);
    const DatasetInfo *info = dataset_info(cfg->dataset);
    if (!set_root(d, cfg, info)) return 0;
    if (!info) { dcal_err("unknown dataset '%s' (%s)", cfg->dataset, dataset_names_text()); return 0; }
    IndexBuild b = {d, sha256_new(), info->layout, info->source};
    int ok = dataset_reader(info)(&b);
    if (ok && (d->n_train == 0 || d->n_test == 0)) {
        dcal_err("%s: dataset '%s' has %d train and %d test images (both must be > 0)", d->root, d->name, d->n_train, d->n_test);
        ok = 0;
    }
    if (ok) ok = ds_finish(d, b.h, tol);
    char hex[65];
    sha256_final(b.h, hex);
    if (!ok) { dataset_free(d); return 0; }
    memcpy(d->fingerprint, hex, sizeof hex);
    return 1;
}

int dataset_open(Dataset *d, const DataConfig *cfg) {
    return open_as(d, cfg, cfg->skip_bad ? DS_TOLERATE_TRAIN : DS_TOLERATE_NONE);
}

int dataset_open_lenient(Dataset *d, const DataConfig *cfg) { return open_as(d, cfg, DS_TOLERATE_ALL); }

void dataset_free(Dataset *d) {
    for (int i = 0; i < d->n_train; i++) free(d->train[i].path);
    for (int i = 0; i < d->n_test; i++) free(d->test[i].path);
    for (int i = 0; i < d->n_val; i++) free(d->val[i].path);
    for (int i = 0; d->class_names && i < d->num_classes; i++) free(d->class_names[i]);
    free(d->train); free(d->test); free(d->val); free(d->class_names);
    memset(d, 0, sizeof *d);
}
