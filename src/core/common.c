// common.c: error reporting, allocation, atomic file writes.
#include "core/common.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// One write per line: several processes (mpirun) share one stderr.
static void verr(const char *fmt, va_list ap) {
    char line[4096];
    int n = vsnprintf(line, sizeof line, fmt, ap);
    if (n >= 0 && (size_t)n < sizeof line) {
        fprintf(stderr, "dcal: %s\n", line);
        return;
    }
    fputs("dcal: ", stderr);   // longer than the buffer: as before, in pieces
    fputs(line, stderr);
    fputc('\n', stderr);
}

void dcal_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verr(fmt, ap);
    va_end(ap);
}

static int warnings_muted;

void dcal_mute_warnings(int mute) { warnings_muted = mute; }

void dcal_warn(const char *fmt, ...) {
    if (warnings_muted) return;
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);   // a longer warning is cut, never split over lines
    va_end(ap);
    fprintf(stderr, "dcal: WARNING: %s\n", line);
}

void dcal_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verr(fmt, ap);
    va_end(ap);
    exit(DCAL_EXIT_FAIL);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) dcal_die("out of host memory allocating %zu bytes", n);
    return p;
}

void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) dcal_die("out of host memory allocating %zu x %zu bytes", n, sz);
    return p;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

char *read_file(const char *path, size_t *len) {
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return NULL; }
    char *buf = xmalloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(buf); return NULL; }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

int atomic_open(AtomicFile *f, const char *path) {
    size_t plen = strlen(path);
    f->path = path;
    f->tmp = xmalloc(plen + 32);
    snprintf(f->tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (f->fd < 0) {
        dcal_err("%s: cannot create (%s)", f->tmp, strerror(errno));
        free(f->tmp);
        f->tmp = NULL;
        return 0;
    }
    return 1;
}

void atomic_abort(AtomicFile *f) {
    if (!f->tmp) return;
    close(f->fd);
    unlink(f->tmp);
    free(f->tmp);
    f->tmp = NULL;
}

int atomic_write(AtomicFile *f, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(f->fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            dcal_err("%s: write failed (%s); %s left as it was", f->tmp, strerror(errno), f->path);
            atomic_abort(f);
            return 0;
        }
        p += w, len -= (size_t)w;
    }
    return 1;
}

int atomic_commit(AtomicFile *f) {
    if (fsync(f->fd) != 0 || close(f->fd) != 0) {
        dcal_err("%s: fsync/close failed (%s); %s left as it was", f->tmp, strerror(errno), f->path);
        unlink(f->tmp); free(f->tmp); f->tmp = NULL; return 0;
    }
    if (rename(f->tmp, f->path) != 0) {
        dcal_err("%s: rename failed (%s)", f->path, strerror(errno));
        unlink(f->tmp); free(f->tmp); f->tmp = NULL; return 0;
    }
    free(f->tmp);
    f->tmp = NULL;
    // fsync the directory so the rename itself survives a crash.
    char *dup = xstrdup(f->path);
    int dfd = open(dirname(dup), O_RDONLY);
    if (dfd >= 0) { fsync(dfd); close(dfd); }
    free(dup);
    return 1;
}

int write_file_atomic(const char *path, const void *data, size_t len) {
    AtomicFile f;
    return atomic_open(&f, path) && atomic_write(&f, data, len) && atomic_commit(&f);
}

int copy_file_atomic(const char *src, const char *dst) {
    int fd = open(src, O_RDONLY);
    if (fd < 0) { dcal_err("%s: cannot open (%s)", src, strerror(errno)); return 0; }
    enum { CHUNK = 8 << 20 };   // a few MiB at a time, whatever the file's size
    char *buf = xmalloc(CHUNK);
    AtomicFile f;
    int ok = atomic_open(&f, dst);
    while (ok) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            dcal_err("%s: read failed (%s); %s left as it was", src, strerror(errno), dst);
            atomic_abort(&f);
            ok = 0;
        }
        if (r <= 0) break;
        ok = atomic_write(&f, buf, (size_t)r);
    }
    ok = ok && atomic_commit(&f);
    free(buf);
    close(fd);
    return ok;
}

int mkdir_p(const char *path) {
    char buf[DCAL_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
            buf[i] = c;
        }
    }
    return 0;
}

// Read once before main (after the shared libraries' own constructors, which run first).
static size_t rss_at_start;
__attribute__((constructor)) static void read_rss_at_start(void) { rss_at_start = process_rss_bytes(); }
size_t process_rss_at_start(void) { return rss_at_start; }

size_t process_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    int ok = f && fscanf(f, "%lu %lu", &size, &resident) == 2;
    if (f) fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return ok && page > 0 ? (size_t)resident * (size_t)page : 0;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
