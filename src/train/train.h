// train.h: the training loop (MODEL.md §4): AdamW with decay groups, warm-up +
// cosine, gradient accumulation to the effective batch, eval, checkpoints,
// exact resume, SIGINT/SIGTERM handling.
#pragma once
#include "compliance/compliance.h"
#include "config/config.h"
#include "datasets/dataset.h"
#include "model/model.h"

typedef struct {
    const char *resume_dir;    // continue this run (NULL: new run)
    const char *init_path;     // --init: exact weights (docs/MODEL.md §6 names)
    const char *dump_path;     // --dump-step: write the first optimizer step and exit
    int argc; char **argv;     // for the manifest
    int n_allowed; char (*allowed)[48];   // --allow-deviation ids, for the manifest
    const RuleResult *rules; int n_rules; // the gate's table (config_resolve), for compliance.txt
    int64_t replay_steps;      // > 0: replay mode (train_replay): no run directory, eval or checkpoint
} TrainOptions;

// The config is final (config_resolve): the trainer never changes it.
int train_main(const DcalConfig *c, const TrainOptions *o);
// Host memory a run holds for its data and files, beyond the model's plan and the backend's:
// the training loader and the two micro-batch buffers it fills in turn, an evaluation's loader
// and batch, and a checkpoint's one tensor (the last two take turns, but freed memory may stay
// with the allocator). On the CPU
// it is part of the planned peak RSS (dcal train's "planned memory", dcal plan's last line).
size_t train_host_bytes(const DcalConfig *c, int micro);
// What a training process holds at micro-batch B, accumulation A on `world` processes: the
// plan's table, the fixed-order gradient sum's buffers (src/dist/reduce.h) and the backend's
// own bytes; on the CPU, where the budget is the peak RSS, also train_host_bytes. The one
// planner: dcal train's "planned memory" (which adds, on the CPU, the process itself as it
// started), the --max-memory picker (a StepBytesFn) and dcal plan's picks. The process's own
// pages are left out of the picks: they vary by a few KiB from one start to the next, and a
// pick, which sets the run's micro-batch and so its bits, must not. c->model.grads_per_block
// says the update in backward may apply; it does at accumulation 1 on one process.
size_t train_planned_bytes(const DcalConfig *c, int B, int accum, int world, bool ckpt);

// dcal audit --replay: re-execute the first `steps` optimizer steps of the run
// in run_dir from its recorded start (c: its config.yaml, resolved as on
// resume; data.root may differ) without writing into run_dir, and compare
// every value with its steps.tsv bit for bit. The starting weights must hash
// as the manifest records and the dataset must fingerprint as recorded. On
// another machine kind (the backend's describe() differs from the manifest's)
// it reports the largest relative difference instead of a verdict.
// DCAL_EXIT_OK: match (or no verdict); DCAL_EXIT_FAIL: a difference or a
// refusal; DCAL_EXIT_USAGE: steps out of range.
int train_replay(const DcalConfig *c, const char *run_dir, int64_t steps);

// Evaluation on the test split: top-1 of SA, GLCA and SA+GLCA (softmax sum),
// and the mean per-class accuracy of the combined prediction.
typedef struct {
    double acc_sa, acc_glca, acc_combined, mean_class_acc;
    int n;
} EvalResult;
int evaluate(Model *m, const Dataset *ds, const DcalConfig *c, EvalResult *out);

// Learning rate at optimizer step s (0-based) of `total`, warm-up `warm` steps.
double lr_at(const OptimConfig *o, long s, long total, long warm);
// A random derangement of 0..B-1 keyed by (seed, micro_step): no image is its own distractor.
void pwca_pairing(int *pair, int B, uint64_t seed, uint64_t micro_step);

// A model's AdamW decay groups (MODEL.md §4), per parameter group (model.h
// ParamGroup): each group's tensors as spans relative to the group's first float,
// neighbours with the same decay merged, in backend memory. Made once before the
// steps, so that a step allocates and uploads nothing.
typedef struct {
    const Backend *be;
    AdamwSpan *spans;          // backend memory: group g's spans at [first[g], first[g] + count[g])
    int *first, *count;        // host [n_groups]
    int n_groups;
} AdamwGroups;
void adamw_groups_make(AdamwGroups *g, const Model *m);
void adamw_groups_free(AdamwGroups *g);   // safe on a zeroed or freed g

// AdamW over parameter group `group` of m at learning rate lr, weight decay only
// where ParamTensor.decay says (MODEL.md §4); steps_done optimizer steps came
// before. One backend call (adamw_multi); g made from m. Elementwise, so a group
// updated as soon as its gradient is final (train.update_in_backward) gets the
// same bits as at the step's end.
void optimizer_adamw_group(const AdamwGroups *g, Model *m, float *am, float *av, const OptimConfig *o, double lr,
                           int64_t steps_done, int group);
// Every group: the trainer's update when it is not done in backward, public for
// benchmarks that time a full step.
void optimizer_adamw(const AdamwGroups *g, Model *m, float *am, float *av, const OptimConfig *o, double lr,
                     int64_t steps_done);
// Group `group`'s gradient is final (model.h grad_ready, train.update_in_backward): its sum of
// squares into backend memory gsq_dev[group] (no read-back inside the step), then its AdamW update.
void optimizer_group_final(const AdamwGroups *g, Model *m, float *am, float *av, const OptimConfig *o, double lr,
                           int64_t steps_done, double *gsq_dev, int group);
// The sum of squares of group g's gradient (the finite check and the grad norm).
double optimizer_group_sumsq(const Model *m, int group);
// The gradient's sum of squares: the groups' sums added in group order, so the bits do not
// depend on when each was taken: those optimizer_group_final left in gsq_dev (read into the
// host array part [n_groups]), or, when gsq_dev is NULL, computed now.
double optimizer_sumsq(const Model *m, const double *gsq_dev, double *part);
