// selftest.h: what the simulator's self-tests (selftest.cu, selftest_lt.cu) share: a CHECK
// that records a failure and goes on, device copies of host arrays, and expect_death (a misuse
// the simulator claims to catch must exit 1 with its message, in a child process).
#pragma once
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <string>

static int g_fail;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); g_fail = 1; } } while (0)

template <class T> static T *dev(const T *h, size_t n) {
    T *d;
    cudaMalloc(&d, n * sizeof(T));
    if (h) cudaMemcpy(d, h, n * sizeof(T), cudaMemcpyHostToDevice);
    return d;
}

// Runs f in a child; returns what it wrote to stderr, its wait status in *st. A child that
// returns from f exits with `ret`.
static std::string run_child(void (*f)(void), int ret, int *st) {
    int fd[2];
    if (pipe(fd)) abort();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        f();
        _exit(ret);
    }
    close(fd[1]);
    std::string err;
    char buf[512];
    ssize_t n;
    while ((n = read(fd[0], buf, sizeof buf)) > 0) err.append(buf, (size_t)n);
    close(fd[0]);
    waitpid(pid, st, 0);
    return err;
}

// Runs f in a child; it must exit 1 with `want` in its stderr.
static void expect_death(const char *name, void (*f)(void), const char *want) {
    int st;
    std::string err = run_child(f, 0, &st);
    bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 1 && err.find(want) != std::string::npos;
    CHECK(ok, "%s: want exit 1 and '%s', got status %d and: %s", name, want, st, err.c_str());
    if (ok) printf("ok: %s -> %s", name, err.c_str());
}
