// stuck_read.c: an LD_PRELOAD shim for e2e_signal.sh: a read that never returns, as on a hung
// network filesystem. open() of a path ending in $DCAL_STUCK_NAME hands out the read end of a
// pipe that nobody writes to (its write end stays open, so a read waits instead of seeing EOF),
// and fstat() of that descriptor reports a regular file, so the loader's checks pass and its
// worker blocks in read(2). When it hands the descriptor out it creates $DCAL_STUCK_MARK, so the
// test knows the read is stuck. Built by the test (cc -shared -fPIC).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int stuck_fd = -1;

static int matches(const char *path) {
    const char *name = getenv("DCAL_STUCK_NAME");
    size_t n = name ? strlen(name) : 0, p = strlen(path);
    return n && p >= n && !strcmp(path + p - n, name);
}

int open(const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (matches(path)) {
        int p[2];
        if (pipe(p) != 0) return -1;
        __atomic_store_n(&stuck_fd, p[0], __ATOMIC_RELAXED);
        const char *mark = getenv("DCAL_STUCK_MARK");
        if (mark) close(((int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open"))(mark, O_WRONLY | O_CREAT, 0644));
        return p[0];
    }
    return ((int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open"))(path, flags, mode);
}

int fstat(int fd, struct stat *st) {
    int r = ((int (*)(int, struct stat *))dlsym(RTLD_NEXT, "fstat"))(fd, st);
    if (r == 0 && fd == __atomic_load_n(&stuck_fd, __ATOMIC_RELAXED)) {
        st->st_mode = S_IFREG | 0644;
        st->st_size = 4096;
    }
    return r;
}
