// steplog.h: RUN/steps.tsv, the exact per-step log (ARCHITECTURE.md §6).
// One line per optimizer step, values as C99 hex floats (%a) so that nothing
// is rounded: `dcal audit --replay K` re-executes the first K steps and
// compares every value bit for bit. metrics.jsonl stays the human-readable,
// averaged, 6-digit view.
//
// Format (tab-separated, after one '#' header line):
//   step micro_step loss ce_sa ce_glca ce_pwca grad_sumsq lr
// step is 1-based and consecutive; micro_step is the micro-batches done after
// the step; loss and the CEs are the means over the step's micro-batches of the
// float values the model returned, summed in double in micro-batch order (a
// sum of a few floats in double is exact, so any change in any micro-batch
// shows); grad_sumsq is the backend's sum of squares of the accumulated
// gradient (the norm check's value) and lr the learning rate AdamW used.
#pragma once
#include <stdint.h>
#include <stdio.h>
#include "core/common.h"

#define STEPLOG_FILE "steps.tsv"
#define STEPLOG_FIELDS 8   // step, micro_step and the six values below

typedef struct {
    int64_t step, micro_step;
    double loss, ce[3];    // ce: SA, GLCA, PWCA
    double gsq, lr;
} StepRecord;

typedef struct {
    FILE *f;               // NULL: not logging (a dump, a replay)
    char path[DCAL_PATH_MAX + 16];
} StepLogW;

// Open DIR/steps.tsv for appending. resume_step < 0: a new run, the file is
// created with its header. resume_step >= 0 (resume from a checkpoint at that
// step): the lines of later steps, left by a run killed after its last
// checkpoint, and any torn last line are cut away atomically (temp file,
// fsync, rename), so the log again ends where the checkpoint does. 0 after an
// error line.
int steplog_open(StepLogW *w, const char *dir, int64_t resume_step);
// Append one line and flush it (a crash loses at most the line being written).
// 0 with errno set when it cannot be written (the caller says what stops).
int steplog_append(StepLogW *w, const StepRecord *r);
void steplog_close(StepLogW *w);

// Read DIR/steps.tsv strictly: header, then lines of exactly 8 fields, steps
// 1, 2, 3, ..., micro_step increasing, finite values. *out (free it) holds *n
// records. 0 after an error line "dcal: <path>:<line>: <what>".
int steplog_read(const char *dir, StepRecord **out, int64_t *n);

// Field i (0..STEPLOG_FIELDS-1) of r as a double, and its name.
double steplog_field(const StepRecord *r, int i);
const char *steplog_field_name(int i);

// For `dcal audit`: steps.tsv reads (see steplog_read) and agrees with
// metrics.jsonl: it covers every step there, and each train row's lr and
// grad_norm are the 6-digit rounding of the exact values. Prints "OK   ...",
// "WARN ..." or "FAIL ..." lines like the audit; returns the number of FAILs.
int steplog_audit(const char *dir);
