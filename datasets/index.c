// index.c: the helpers every reader builds its index with — index files as
// lines, the growable item lists — and the fingerprint, which identifies the
// data, not where it lives: sha256 over the index files' bytes, then the
// sorted root-relative "path\tsize\n" list.
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include "datasets/index.h"

int tf_read(TextFile *tf, const IndexBuild *b, const char *rel) {
    memset(tf, 0, sizeof *tf);
    const char *path = tf->path;
    snprintf(tf->path, sizeof tf->path, "%s/%s", b->d->root, rel);
    size_t len;
    tf->text = read_file(path, &len);
    if (!tf->text) {
        dcal_err("%s: %s (expected layout: %s; get it from %s)", path, strerror(errno ? errno : ENOENT), b->layout,
                 b->source);
        return 0;
    }
    if (strlen(tf->text) != len) { dcal_err("%s: contains a NUL byte (not a text index file)", path); tf_free(tf); return 0; }
    if (b->h) sha256_update(b->h, tf->text, len);
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

int ds_read_class_names(IndexBuild *b, const char *rel) {
    Dataset *d = b->d;
    TextFile tf;
    if (!tf_read(&tf, b, rel)) return 0;
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
