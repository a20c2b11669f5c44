// checkpoint.h: training state ⇄ one safetensors file (ARCHITECTURE.md §6).
// Tensors: every parameter by its MODEL.md §6 name, AdamW moments as
// "adam.m.<name>" / "adam.v.<name>", all F32. __metadata__: format
// "dcal-checkpoint-1", dcal's version, the position in the run (step, epoch,
// batch, micro_step), the seed, skipped_images, log_window, params_sha256 = sha256 over the fp32 bytes of
// the parameters in table order, and adam_sha256 = sha256 over the fp32 bytes
// of m then v, each in table order (absent when saved without AdamW state).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "config/config.h"
#include "model/model.h"

typedef struct {
    int64_t step;          // optimizer steps done
    int64_t micro_step;    // micro-batches done (keys the PWCA pairing)
    int epoch;             // epoch to continue in (0-based)
    int batch;             // next micro-batch index within that epoch
    uint64_t seed;
    int64_t skipped;       // unreadable training images skipped so far (data.skip_bad; 0 in older files)
    // The progress line's running sums since the last one (a stop between two lines leaves
    // steps in them): loss, ce SA/GLCA/PWCA over win_n steps. Zero in older files.
    double win[4];
    int win_n;
} TrainPos;

// Bounds on the position read from a file, so that no resume arithmetic on it
// can overflow: step, micro_step < 2^40; epoch <= 10^6; batch <= 2^30.
#define CKPT_MAX_STEP ((((int64_t)1) << 40) - 1)
#define CKPT_MAX_EPOCH 1000000
#define CKPT_MAX_BATCH (1 << 30)

// Write params (+ AdamW m, v when not NULL; backend memory) atomically. A NaN
// or Inf anywhere is refused before anything is written (the old file stays),
// with an error line naming the tensor and element.
int checkpoint_save(const char *path, const Model *m, const float *adam_m, const float *adam_v, const TrainPos *pos);
// The run's files (ARCHITECTURE.md §6): the latest, which a resume reads; the
// kept history when train.keep_last > 1 (hard links, "%08lld" = the step); the
// weights chosen on the validation split (data.val_fraction > 0).
#define CKPT_LATEST_FILE "checkpoint.safetensors"
#define CKPT_STEP_PREFIX "checkpoint-step"
#define CKPT_BEST_FILE "best.safetensors"
// best.safetensors: the weights only (no AdamW state), metadata as above plus
// selected_on "val", val_acc (the selection accuracy, 6 decimals) and val_n.
int checkpoint_save_best(const char *path, const Model *m, const TrainPos *pos, double val_acc, int val_n);
// What a best.safetensors records (its metadata, validated; the tensors not re-hashed):
// the step and epoch it was chosen at, its validation accuracy over val_n images, and
// the parameters' sha256. 0 after an error line.
typedef struct {
    int64_t step;
    int epoch, val_n;
    double val_acc;
    char params_sha256[65];
} CkptBest;
int checkpoint_best_meta(const char *path, CkptBest *b);
// train.keep_last: link dir/checkpoint.safetensors (just written, step) as
// dir/checkpoint-step<step>.safetensors, make the link durable (fsync of dir),
// and only then remove the oldest step files beyond keep_last. keep_last 1 keeps
// checkpoint.safetensors alone. 0 after an error line (the latest is untouched).
int checkpoint_keep_last(const char *dir, int64_t step, int keep_last);
// Load params (and m, v when not NULL, required then) exactly; fills pos when
// not NULL. Refused, with one error line naming the file and the tensor or
// field: a tensor that is not the model's (or its adam.m./adam.v. twin), a
// missing one, a shape other than the table's, a dtype other than F32, a NaN or
// Inf, a negative second moment, params_sha256 / adam_sha256 absent or not
// matching, format, step, micro_step, epoch, batch or seed absent or out of bounds.
int checkpoint_load(const char *path, Model *m, float *adam_m, float *adam_v, TrainPos *pos);
// sha256 of the parameters (fp32 bytes, table order), hex.
void checkpoint_params_sha256(const Model *m, char hex[65]);
// The hashes and step a checkpoint's metadata records (validated as by
// checkpoint_load, the tensors not re-hashed): for recording them outside the
// checkpoint. 0 after an error line.
int checkpoint_hashes(const char *path, char params_hex[65], char adam_hex[65], int64_t *step);
// What `dcal audit` runs on a checkpoint: builds the model of cfg on the CPU and
// loads the file with checkpoint_load (every tensor's name, shape, dtype,
// finiteness, both hashes, the metadata), then compares the seed with cfg's.
// best.safetensors is checked as weights only (it holds no AdamW state).
// 1 with a one-line summary; 0 after an error line saying what failed.
int checkpoint_verify(const char *path, const DcalConfig *cfg, char *summary, size_t cap);
