// trainer.h: the state of one training run, shared by the trainer's files
// (setup.c, step.c, optimizer.c, log.c, eval.c, dump.c, train.c). Private to
// src/train/; the public entry point is train.h.
#pragma once
#include <signal.h>
#include "datasets/dataset.h"
#include "dist/reduce.h"
#include "model/model.h"
#include "run/rundir.h"
#include "run/steplog.h"
#include "train/checkpoint.h"
#include "train/train.h"

// What --dump-step collects over the first optimizer step (host memory).
typedef struct {
    float *input, *logits[3], *ce, *loss;
    int *labels, *pair, *sel;
} Dump;

// Running sums between two progress lines.
typedef struct {
    double t_start, t_log;      // run start, last progress line
    long steps_timed, imgs_since;
    double sum_loss, sum_ce[3];
    int n_sum;
    double ep_loss;             // the live line (a terminal): this epoch's step losses, summed ...
    int ep_steps;               // ... over this many steps
    double t_shown;             // when it was last redrawn
    double best_comb;           // best SA+GLCA accuracy on the test split, and its epoch
    int best_epoch;
} Progress;

typedef struct {
    const DcalConfig *c;
    const TrainOptions *o;
    const Backend *be;
    Dataset ds;
    bool ds_open;
    Model m;
    RunDir run;
    Loader *L;
    float *am, *av;             // AdamW moments, backend memory, the parameters' layout
    AdamwGroups adamw;          // the model's decay spans, a backend call per parameter group
    bool in_backward;           // train.update_in_backward in force: AdamW runs inside backward (grad_ready)
    double step_lr;             // ... at this learning rate (the step's, set before its micro-batches)
    double *gsq_dev;            // in backward only (else NULL), backend memory [n_groups]: each group's sum of squares, taken as it
    double *gsq_part;           // became final; gsq_part its host copy, read once at the step's end
    float *img;                 // the micro-batch being loaded: one of img_buf
    float *img_buf[2];          // host_alloc'd (page-locked on CUDA), taken in turn: the loader fills one
    int img_i;                  // while the other's upload may still run (backend.h: upload)
    int *lab, *pair;            // this micro-batch's labels and PWCA pairing: one of lab_buf, pair_buf,
    int *lab_buf[2], *pair_buf[2];   // host_alloc'd and taken in turn with img_buf, uploaded the same way
    int *ids;
    int micro, accum;           // micro-batch and accumulation steps of this process (resolved config)
    int rank, world;            // data parallelism (src/dist/): rank 0 alone writes the run directory
    int group;                  // micro-batches per optimizer step over all ranks: accum * world
    Reducer red;                // the step's gradient: per micro-batch buffers summed in a fixed tree
    double *micro_sums;         // [group * 4]: each micro-batch's loss and CEs, in global order
    float *loss_dev;            // backend memory [accum * 4]: this rank's micro-batches' loss_forward outputs,
                                // read back once, at the step's end (no host sync between micro-batches)
    int spe;                    // optimizer steps per epoch
    long total, warm;           // schedule length and warm-up, in optimizer steps
    TrainPos pos;
    char ckpt_path[DCAL_PATH_MAX + 32];
    char init_hash[65], pre_hash[65];
    Dump dump;
    int64_t saved_step;         // the step of the last checkpoint written (-1: none yet)
    Progress prog;
    StepLogW steps;             // RUN/steps.tsv (not open for a dump or a replay)
    double step_sum[4];         // this step's micro-batch loss and CEs (SA, GLCA, PWCA), summed in double
    StepRecord *replayed;       // replay mode (o->replay_steps): record of step s at [s - 1]
    Dataset val;                // data.val_fraction > 0: the held-out images as a test split (a view of ds)
    double val_acc;             // this epoch's validation accuracy (-1: not evaluated)
    double best_val;            // best.safetensors' validation accuracy (-1: none yet)
} Trainer;

// A phase either lets the run go on or ends it with an exit code.
enum { TRAIN_GO_ON = -1, TRAIN_INTERRUPTED = -3 };   // -3: the loader gave up on a signal

extern volatile sig_atomic_t train_stop_signal;   // SIGINT/SIGTERM seen (signal number)

// Replaying a run's first steps (dcal audit --replay): no run directory, no eval, no checkpoint.
static inline bool trainer_replaying(const Trainer *t) { return t->o->replay_steps > 0; }
// Whether this process writes the run directory (manifest, metrics, steps, checkpoints).
static inline bool trainer_writes_run(const Trainer *t) {
    return !t->o->dump_path && !trainer_replaying(t) && t->rank == 0;
}

// train.c: the epochs from t->pos with SIGINT/SIGTERM handled; an exit code.
int trainer_run(Trainer *t);

// setup.c: everything before the first step, and the teardown.
int trainer_setup(Trainer *t);
void trainer_teardown(Trainer *t);

// step.c: one optimizer step's micro-batches (forward, loss check, backward);
// TRAIN_GO_ON or an exit code, the same on every rank. The gradient ends
// summed over every rank's micro-batches in t->m.grads (src/dist/reduce.h), or,
// with the update inside backward (t->in_backward), it has already been applied
// group by group and only its sums of squares remain (t->gsq_dev).
int trainer_micro_batches(Trainer *t);
// The ranks agree on a phase's outcome: the worst of theirs (a failure over an
// interruption over going on); a rank that did not fail itself returns the failure silently.
int trainer_agree(int rc);

// optimizer.c: AdamW over every tensor at learning rate lr (MODEL.md §4 decay groups).
void optimizer_update(Trainer *t, double lr);
// optimizer.c: the model's grad_ready under train.update_in_backward (ctx: the Trainer).
void optimizer_in_backward(void *ctx, int group);

// log.c: the progress line and its metrics.jsonl row; the final summary.
void log_progress(Trainer *t, int epoch, double lr, double gsq);
// The exact record of the step just done (t->pos.step): a steps.tsv line, or
// in replay mode t->replayed[step - 1]. 0 after an error line.
int log_step(Trainer *t, double lr, double gsq);
void log_final(Trainer *t);
// A metrics row with the checkpoint just written: step, params_sha256, adam_sha256.
void log_checkpoint(Trainer *t);
// A "best" metrics row: what best.safetensors records (step, epoch, params_sha256, val_acc, val_n).
void log_best(Trainer *t, const CkptBest *b);
// On resume: the ledger rows a kill -9 left out (after a checkpoint's or
// best.safetensors' atomic rename, before its row), written from the files.
void log_resume_ledger(Trainer *t);

// eval.c: evaluate on the test split, print and record it; with a validation
// split, evaluate that too (t->val_acc, a "val" metrics row).
int trainer_eval(Trainer *t, int epoch);
// eval.c: the validation split's part of trainer_eval alone (t->val_acc, a "val" row).
int trainer_eval_val(Trainer *t, int epoch);
// eval.c: on resume, the best test epoch so far (t->prog) from the kept "eval" rows.
void trainer_resume_test_best(Trainer *t);
// eval.c: on resume, the validation split's state at the checkpoint as an uninterrupted run
// had it: t->best_val is the first highest accuracy of the kept "val" rows (rank 0's: the
// others only follow its saves). When that is the checkpoint's own epoch and best.safetensors is
// not from it, a stop came between the two saves: the checkpoint's weights are that epoch's,
// so best.safetensors is written from them now. 0 after an error line.
int trainer_resume_best(Trainer *t);
// eval.c: t->val_acc beats best.safetensors: write it and its "best" metrics row.
int trainer_save_best(Trainer *t, int epoch);
// eval.c: the validation split (data.val_fraction) held out of training.
int trainer_open_val(Trainer *t);

// dump.c: --dump-step buffers, one micro-batch's record, the file.
void dump_alloc(Trainer *t);
void dump_micro(Trainer *t, const StepOut *o, int k);
int dump_write(Trainer *t);
void dump_free(Dump *d);

// ranks.c: with several ranks, all must share the config, dataset and build;
// 0 on every rank (rank 0 prints the one line) when they do not.
int trainer_check_ranks(const Trainer *t);

// For error messages that stop a run: what the user still has on disk.
const char *trainer_checkpoint_state(const Trainer *t);
