// fuzz_util.h: what every harness needs — a private scratch directory (in
// $TMPDIR, else /dev/shm, else /tmp) and writing the fuzz input there as a
// file, since dcal's readers take paths. Header-only: each harness is one
// program, and dcal's own library is linked as it ships (public APIs only).
#pragma once
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_dir[512];

static inline void fuzz_rm_dir(void) {
    if (!fuzz_dir[0]) return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
}

// The scratch directory, made on first use and removed at exit.
static inline const char *fuzz_scratch(void) {
    if (fuzz_dir[0]) return fuzz_dir;
    const char *base = getenv("TMPDIR");
    struct stat sb;
    if (!base || !*base) base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/dcal-fuzz-XXXXXX", base);
    if (!mkdtemp(fuzz_dir)) { perror(fuzz_dir); abort(); }
    atexit(fuzz_rm_dir);
    return fuzz_dir;
}

// out = scratch/rel.
static inline void fuzz_path(char *out, size_t cap, const char *rel) {
    snprintf(out, cap, "%s/%s", fuzz_scratch(), rel);
}

static inline void fuzz_mkdir(const char *rel) {
    char p[700];
    fuzz_path(p, sizeof p, rel);
    if (mkdir(p, 0700) != 0 && access(p, F_OK) != 0) { perror(p); abort(); }
}

// Replace the file at path with exactly these bytes (the harness's own I/O
// failing is not a finding in dcal: abort loudly so it is never mistaken for one).
static inline void fuzz_write(const char *path, const uint8_t *data, size_t size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror(path); abort(); }
    while (size) {
        ssize_t k = write(fd, data, size);
        if (k <= 0) { perror(path); abort(); }
        data += k;
        size -= (size_t)k;
    }
    close(fd);
}
