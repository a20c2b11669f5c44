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

int ds_check_rel(const char *file, int line, const char *rel, const char *within) {
    const char *why = NULL;
    if (!*rel) why = "is empty";
    else if (*rel == '/') why = "is absolute";
    else if (strlen(rel) >= DCAL_PATH_MAX - 32) why = "is too long";   // readers add a short prefix/suffix
    for (const char *p = rel; !why && *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.') why = "has a '..' component";
        p += n;
        p += *p == '/';
    }
    if (!why) return 1;
    dcal_err("%s:%d: path '%s' %s (listed paths must stay inside %s: relative, without '..'; symbolic links inside it "
             "are fine)", file, line, rel, why, within);
    return 0;
}

const char *ds_file_kind(unsigned mode) {
    return S_ISFIFO(mode) ? "a FIFO" : S_ISDIR(mode) ? "a directory" : S_ISCHR(mode) || S_ISBLK(mode) ? "a device"
                                                                                                   : "a special file";
}

int ds_parse_int(const char *s, long lo, long hi, long *out) {
    long long v = 0;   // hi <= INT_MAX, so v * 10 + 9 cannot overflow
    if (*s < '0' || *s > '9') return 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (*s - '0');
        if (v > hi) return 0;
    }
    if (*s || v < lo) return 0;
    *out = (long)v;
    return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// The size of image p for the fingerprint, or -1 if it is missing or not a regular
// file: then an error line (once, via *ok) unless `tolerated`. stat (not open) here:
// it never blocks on a FIFO; image_load re-checks on the descriptor it reads.
static long long image_size(const Dataset *d, const char *p, bool test, bool tolerated, int *ok) {
    struct stat sb;
    int err = stat(p, &sb) != 0 ? errno : 0;
    if (!err && S_ISREG(sb.st_mode)) return (long long)sb.st_size;
    if (tolerated || !*ok) return -1;
    *ok = 0;
    char what[96];
    if (err) snprintf(what, sizeof what, "%s", strerror(err));
    else snprintf(what, sizeof what, "is %s, not a regular file", ds_file_kind(sb.st_mode));
    if (test)
        dcal_err("%s: %s (a test image in the %s index; data.skip_bad applies to training images only: skipping a test "
                 "image would change the reported accuracy)", p, what, d->name);
    else
        dcal_err("%s: %s (listed in the %s index; set data.skip_bad=true to skip bad training images)", p, what,
                 d->name);
    return -1;
}

int ds_finish(Dataset *d, Sha256 *h, DsTolerate tol) {
    int n = d->n_train + d->n_test;
    size_t skip = strlen(d->root) + 1;   // items are root + "/" + rel
    char **lines = xmalloc(sizeof(char *) * (size_t)(n ? n : 1));
    int ok = 1;
    for (int i = 0; i < n; i++) {
        bool test = i >= d->n_train;
        const char *p = test ? d->test[i - d->n_train].path : d->train[i].path;
        bool tolerated = tol == DS_TOLERATE_ALL || (tol == DS_TOLERATE_TRAIN && !test);
        long long size = image_size(d, p, test, tolerated, &ok);
        size_t len = strlen(p + skip) + 32;
        lines[i] = xmalloc(len);
        snprintf(lines[i], len, "%s\t%lld\n", p + skip, size);
    }
    qsort(lines, (size_t)n, sizeof(char *), cmp_str);
    for (int i = 0; i < n; i++) { sha256_update(h, lines[i], strlen(lines[i])); free(lines[i]); }
    free(lines);
    return ok;
}
