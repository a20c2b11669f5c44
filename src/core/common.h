// common.h: error reporting and small helpers shared by every module.
// Errors are one line: "dcal: <where>: <what> (<hint>)" on stderr.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>

#define DCAL_PATH_MAX 1024

// Exit codes: 0 ok, 1 a check failed / runtime error, 2 usage error.
enum { DCAL_EXIT_OK = 0, DCAL_EXIT_FAIL = 1, DCAL_EXIT_USAGE = 2 };

// Print "dcal: <formatted>\n" to stderr.
void dcal_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Print "dcal: WARNING: <formatted>\n" to stderr, unless warnings are muted.
void dcal_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Mute dcal_warn: the ranks above 0 of a data-parallel job, whose warnings would
// repeat rank 0's word for word (errors are never muted: a rank may fail alone).
void dcal_mute_warnings(int mute);
// dcal_err then exit(1). For errors a caller cannot recover from.
void dcal_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

void *xmalloc(size_t n);          // dies naming the size on failure
void *xcalloc(size_t n, size_t sz);
char *xstrdup(const char *s);

// Read a whole file; returns NULL (and sets *len=0) when it cannot be read.
char *read_file(const char *path, size_t *len);
// Write atomically: temp file in the same directory, fsync, rename, fsync dir.
// On failure the old file (if any) is untouched and 0 is returned after an error line.
int write_file_atomic(const char *path, const void *data, size_t len);
// The same, streamed: atomic_open makes the temp file, atomic_write appends (on failure it
// removes the temp file), atomic_commit fsyncs and renames; atomic_abort drops the temp file.
// Each returns 0 after an error line, the old file untouched.
typedef struct { const char *path; char *tmp; int fd; } AtomicFile;
int atomic_open(AtomicFile *f, const char *path);
int atomic_write(AtomicFile *f, const void *data, size_t len);
int atomic_commit(AtomicFile *f);
void atomic_abort(AtomicFile *f);
// Copy src to dst atomically (as write_file_atomic), a few MiB at a time.
int copy_file_atomic(const char *src, const char *dst);
int mkdir_p(const char *path);    // 0 ok, -1 on error (errno set)

double now_seconds(void);         // monotonic clock
// This process's resident memory now (/proc/self/statm), 0 where it cannot be read. Read
// before anything is allocated it is the process itself: code, the shared libraries' touched
// pages and their static data (CUDA's libraries hold ~140 MiB on some machines even on a CPU run).
size_t process_rss_bytes(void);
size_t process_rss_at_start(void);   // process_rss_bytes() as it was before main
