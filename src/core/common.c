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

int write_file_atomic(const char *path, const void *data, size_t len) {
    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 32);
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { dcal_err("%s: cannot create (%s)", tmp, strerror(errno)); free(tmp); return 0; }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            dcal_err("%s: write failed (%s); %s left as it was", tmp, strerror(errno), path);
            close(fd); unlink(tmp); free(tmp); return 0;
        }
        p += w; left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        dcal_err("%s: fsync/close failed (%s); %s left as it was", tmp, strerror(errno), path);
        unlink(tmp); free(tmp); return 0;
    }
    if (rename(tmp, path) != 0) {
        dcal_err("%s: rename failed (%s)", path, strerror(errno));
        unlink(tmp); free(tmp); return 0;
    }
    free(tmp);
    // fsync the directory so the rename itself survives a crash.
    char *dup = xstrdup(path);
    int dfd = open(dirname(dup), O_RDONLY);
    if (dfd >= 0) { fsync(dfd); close(dfd); }
    free(dup);
    return 1;
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
