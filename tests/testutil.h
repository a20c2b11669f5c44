// testutil.h: helpers shared by the Check suites.
#pragma once
#include <check.h>
#include <stddef.h>
#include "config/config.h"
#include "model/model.h"

// Run "$DCAL_BIN args..." through the shell; capture stdout+stderr (up to cap bytes)
// into out (may be NULL). Returns the exit status (or -1).
int run_dcal(const char *args, char *out, size_t cap);
// A fresh empty directory under the build dir's tmp/, unique per call.
const char *test_tmpdir(const char *tag);
// Write text to a file (dies on failure).
void write_text(const char *path, const char *text);
// Path of the source tree (DCAL_SRC env or ".").
const char *src_dir(void);
// Run a suite and return 0/1 for main(); honours CK_FORK and friends.
int run_suite(Suite *s);
// Max relative error between a and b: max|a-b| / max(max|b|, floor).
double rel_err(const float *a, const double *b, size_t n, double floor);
// Capture what the code under test writes to stderr (fd 2) between the two calls.
void cap_begin(void);
const char *cap_end(void);   // the captured text (static buffer, up to 16 KiB)

// The CPU backend offers precision bf16 on any CPU under DCAL_CPU_BF16=portable, read before
// main; a suite that needs it calls this first: it returns 0 when the variable is set, else
// re-executes the test with it set (returning only after an error line, with 1).
int test_cpu_bf16_portable(char **argv);

struct Backend;
// The CUDA backend at precision bf16 for a gpu-labelled suite named `test`: 0 with *out set and
// its describe line printed; 77 (skip, saying why) without a CUDA build or a usable device;
// 1 after an error line. main() returns anything but 0 as is.
int gpu_backend_for_test(const char *test, const struct Backend **out);
// One training micro-step as the trainer runs it, without the update: zero the gradients,
// forward, backward (loss scale 1), read the outputs into *out; returns the loss.
float test_model_step(Model *m, const Batch *bt, StepOut *out);
// The whole-model tests' tiny DCAL (32 px, patch 8: N = 17, K = 4; 3 SA blocks, M = 1 GLCA, T = 3
// PWCA, 2 heads, MLP 2·dim, 5 classes) at width dim and drop-path rate drop_path.
ModelConfig test_tiny_model(int dim, double drop_path);
