// dataset.c: dataset_open dispatch, index-file helpers and the fingerprint.
// The fingerprint identifies the data, not where it lives: sha256 over the
// index files' bytes, then the sorted root-relative "path\tsize\n" list.
#include "datasets/dataset_int.h"
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

int tf_read(TextFile *tf, const char *path, Sha256 *h, const char *layout, const char *source) {
    memset(tf, 0, sizeof *tf);
    snprintf(tf->path, sizeof tf->path, "%s", path);
    size_t len;
    tf->text = read_file(path, &len);
    if (!tf->text) {
        dcal_err("%s: %s (expected layout: %s; get it from %s)", path, strerror(errno ? errno : ENOENT), layout, source);
        return 0;
    }
    if (strlen(tf->text) != len) { dcal_err("%s: contains a NUL byte (not a text index file)", path); tf_free(tf); return 0; }
    if (h) sha256_update(h, tf->text, len);
    int cap = 0;
    for (char *p = tf->text; *p;) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        size_t n = strlen(p);
        if (n && p[n - 1] == '\r') p[n - 1] = 0;
        if (tf->n == cap) {
            cap = cap ? 2 * cap : 1024;
            tf->line = realloc(tf->line, sizeof(char *) * (size_t)cap);
            if (!tf->line) dcal_die("out of host memory");
        }
        tf->line[tf->n++] = p;
        if (!e) break;
        p = e + 1;
    }
    return 1;
}

void tf_free(TextFile *tf) {
    free(tf->text);
    free(tf->line);
    memset(tf, 0, sizeof *tf);
}

bool tf_blank(const char *line) {
    while (*line == ' ' || *line == '\t') line++;
    return *line == 0 || *line == '#';
}

int ds_read_class_names(Dataset *d, const char *rel, Sha256 *h, const char *layout, const char *source) {
    char path[DCAL_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", d->root, rel);
    TextFile tf;
    if (!tf_read(&tf, path, h, layout, source)) return 0;
    d->class_names = xcalloc((size_t)(tf.n ? tf.n : 1), sizeof(char *));
    for (int i = 0; i < tf.n; i++)
        if (!tf_blank(tf.line[i])) d->class_names[d->num_classes++] = xstrdup(tf.line[i]);
    tf_free(&tf);
    return 1;
}

void ds_push(DatasetItem **v, int *n, int *cap, const char *root, const char *rel, int label) {
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 1024;
        *v = realloc(*v, sizeof(DatasetItem) * (size_t)*cap);
        if (!*v) dcal_die("out of host memory");
    }
    size_t len = strlen(root) + strlen(rel) + 2;
    char *p = xmalloc(len);
    snprintf(p, len, "%s/%s", root, rel);
    (*v)[*n].path = p;
    (*v)[*n].label = label;
    (*n)++;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int ds_finish(Dataset *d, Sha256 *h, bool skip_bad) {
    int n = d->n_train + d->n_test;
    size_t skip = strlen(d->root) + 1;   // items are root + "/" + rel
    char **lines = xmalloc(sizeof(char *) * (size_t)(n ? n : 1));
    int ok = 1;
    for (int i = 0; i < n; i++) {
        const char *p = i < d->n_train ? d->train[i].path : d->test[i - d->n_train].path;
        struct stat sb;
        long long size = -1;
        if (stat(p, &sb) == 0) size = (long long)sb.st_size;
        else if (!skip_bad && ok) {
            dcal_err("%s: %s (listed in the %s index; set data.skip_bad=true to skip missing images)", p,
                     strerror(errno), d->name);
            ok = 0;
        }
        size_t len = strlen(p + skip) + 32;
        lines[i] = xmalloc(len);
        snprintf(lines[i], len, "%s\t%lld\n", p + skip, size);
    }
    qsort(lines, (size_t)n, sizeof(char *), cmp_str);
    for (int i = 0; i < n; i++) { sha256_update(h, lines[i], strlen(lines[i])); free(lines[i]); }
    free(lines);
    return ok;
}

int dataset_open(Dataset *d, const DataConfig *cfg) {
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", cfg->dataset);
    snprintf(d->root, sizeof d->root, "%s", cfg->root);
    size_t rl = strlen(d->root);
    while (rl > 1 && d->root[rl - 1] == '/') d->root[--rl] = 0;
    if (!rl) { dcal_err("data.root is empty (set it in the config or with --data-root DIR)"); return 0; }
    struct stat sb;
    if (stat(d->root, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        const char *layout = !strcmp(cfg->dataset, "cars") ? CARS_LAYOUT
                             : !strcmp(cfg->dataset, "aircraft") ? AIR_LAYOUT : CUB_LAYOUT;
        const char *source = !strcmp(cfg->dataset, "cars") ? CARS_SOURCE
                             : !strcmp(cfg->dataset, "aircraft") ? AIR_SOURCE : CUB_SOURCE;
        dcal_err("%s: dataset root for '%s' is not a directory (expected %s; get it from %s; set --data-root DIR)",
                 d->root, cfg->dataset, layout, source);
        return 0;
    }
    Sha256 *h = sha256_new();
    int ok;
    if (!strcmp(cfg->dataset, "cub") || !strcmp(cfg->dataset, "synthetic")) ok = cub_open(d, cfg, h);
    else if (!strcmp(cfg->dataset, "cars")) ok = cars_open(d, cfg, h);
    else if (!strcmp(cfg->dataset, "aircraft")) ok = aircraft_open(d, cfg, h);
    else {
        dcal_err("unknown dataset '%s' (cub, cars, aircraft or synthetic)", cfg->dataset);
        ok = 0;
    }
    if (ok && (d->n_train == 0 || d->n_test == 0)) {
        dcal_err("%s: dataset '%s' has %d train and %d test images (both must be > 0)", d->root, d->name, d->n_train, d->n_test);
        ok = 0;
    }
    if (ok) ok = ds_finish(d, h, cfg->skip_bad);
    char hex[65];
    sha256_final(h, hex);
    if (!ok) { dataset_free(d); return 0; }
    memcpy(d->fingerprint, hex, sizeof hex);
    return 1;
}

void dataset_free(Dataset *d) {
    for (int i = 0; i < d->n_train; i++) free(d->train[i].path);
    for (int i = 0; i < d->n_test; i++) free(d->test[i].path);
    for (int i = 0; d->class_names && i < d->num_classes; i++) free(d->class_names[i]);
    free(d->train); free(d->test); free(d->class_names);
    memset(d, 0, sizeof *d);
}
