// config.h: the resolved configuration as a typed struct (YAML → struct by
// config.c on libyaml). Field names mirror the YAML keys: section.key.
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/common.h"

#define DCAL_MAX_DEVIATIONS 32
#define DCAL_MAX_OVERRIDES 64

typedef struct {
    // model: (MODEL.md §1-2)
    char preset[32];          // vit_b16 | deit_t | deit_s | deit_b | custom
    int img_size;             // input side after crop (448)
    int patch;                // 16
    int dim;                  // D
    int heads;                // H
    int depth;                // L, SA blocks
    int mlp_dim;
    int glca_blocks;          // M
    int pwca_blocks;          // T
    double top_r;             // R
    double drop_path;         // rate at the last block
    int num_classes;
    bool glca_shares_sa_weights;   // paper: false
    bool pwca_shares_sa_weights;   // paper: true
    double ln_eps;                 // 1e-6
    int act_bytes;                 // not a YAML key: bytes of a stored Act element (backend.h),
                                   // config_act_bytes(train.precision), set once the precision is
                                   // resolved; 0 (unresolved) plans as 4
    bool on_cuda;                  // not a YAML key: the run's backend is CUDA, so a step's bytes
                                   // include its scratch and cuBLASLt's workspace (plan_cuda_extra)
    bool recompute_h;              // not a YAML key: a block that keeps its activations keeps no h
                                   // (x + attention's projection): backward makes it again with one
                                   // more projection GEMM. Set for the CPU (memory first), not CUDA
    int cpu_threads;               // not a YAML key: the CPU backend's threads (config_cpu_threads), whose
                                   // per-thread attention scratch the plan counts (plan_cpu_extra)
    bool recompute_att;            // not a YAML key: such a block keeps no attention output either:
                                   // backward runs its attention forward again from the kept q, k, v
                                   // (B·N·D floats a block for one attention forward). CPU while
                                   // 3·N <= D (config_model_backend), not CUDA
    int ckpt_layers;               // not a YAML key: train.checkpoint_layers, the SA/PWCA layers a
                                   // checkpointed run recomputes, lowest first (0: all of them)
    bool fp32_stream;              // not a YAML key: !train.bf16_stream, the streams fp32 whatever the
                                   // Act type (model_graph.c stream_in); no effect at fp32
    bool grads_per_block;          // not a YAML key: train.update_in_backward in force (one micro-batch
                                   // per step, one process: config_update_in_backward), so the model
                                   // keeps one block's gradient at a time (model.h n_grads)
} ModelConfig;

typedef struct {
    bool uncertainty_weighting;    // paper: true
} LossConfig;

typedef struct {
    char dataset[32];              // cub | cars | aircraft | synthetic
    char root[DCAL_PATH_MAX];
    int resize;                    // 550
    int crop;                      // 448 (train random crop, test centre crop)
    char train_crop[16];           // random
    char test_crop[16];            // center (random: keyed like training's, no flip)
    bool hflip;
    float mean[3], std[3];
    int banner_px;                 // aircraft: 20
    int workers;
    bool skip_bad;
    // Held out of the training split, per class, seeded by train.seed, for
    // choosing best.safetensors (never the test split). 0 = none (the paper).
    double val_fraction;
    // synthetic generator
    int synth_classes;
    int synth_per_class;
    int synth_test_per_class;
} DataConfig;

typedef struct {
    char name[16];                 // adamw
    double base_lr;                // 5e-4
    int lr_ref_batch;              // 512
    double lr;                     // base_lr / lr_ref_batch * effective batch
    double weight_decay;           // 0.05
    double beta1, beta2, eps;
    char schedule[16];             // cosine
    int epochs;                    // 100
    int warmup_epochs;             // 5
    double warmup_lr;              // 1e-6
    double min_lr;                 // 0
} OptimConfig;

typedef struct {
    int micro_batch;
    int accum_steps;
    int devices;
    uint64_t seed;
    char device[16];               // auto | cpu | cuda
    bool checkpoint_blocks;        // per-block activation checkpointing
    int checkpoint_layers;         // with it: only the lowest N layers are recomputed (0: every layer)
    bool update_in_backward;       // AdamW updates each block once its gradient is final (true):
                                   // applies at accumulation 1 on one process (config_update_in_backward)
    char precision[16];            // auto | fp32 | bf16
    bool bf16_stream;              // at precision bf16, the residual streams between blocks (the block
                                   // inputs, also the checkpoints) are stored in bf16 (true: half their
                                   // memory) or in fp32 (false, the default: as PyTorch autocast keeps
                                   // them; bf16 streams learned worse, bench/RESULTS.md 2026-12-02)
    char attention[16];            // dcal | cudnn: whose fused attention kernels run (config_attention_note)
    char pretrained[DCAL_PATH_MAX];
    char out_dir[DCAL_PATH_MAX];   // parent of run directories (runs)
    char run_name[128];
    int eval_every;                // epochs
    int save_every;                // epochs
    int keep_last;                 // checkpoints kept: checkpoint.safetensors, plus checkpoint-step<S> files when > 1
    int max_steps;                 // 0 = run the schedule; >0 stops early (tests)
    int threads;                   // 0 = OpenMP default
} TrainConfig;

typedef struct {
    char rule[48];
    char reason[256];
    int line, col;                 // where it was declared (0 for none)
} Deviation;

typedef struct {
    char source[DCAL_PATH_MAX];    // file it came from ("" for defaults)
    ModelConfig model;
    LossConfig loss;
    DataConfig data;
    OptimConfig optim;
    TrainConfig train;
    int n_deviations;
    Deviation deviations[DCAL_MAX_DEVIATIONS];
    int n_overrides;
    char overrides[DCAL_MAX_OVERRIDES][DCAL_PATH_MAX + 64];   // "--set" strings as given, in order (a path fits)
} DcalConfig;

// Paper defaults (ViT-B/16, CUB, MODEL.md §1-5).
void config_defaults(DcalConfig *c);
// Load YAML over defaults. On error prints "dcal: file:line:col: message" and returns 0.
int config_load(DcalConfig *c, const char *path);
// Apply one "key.sub=value" override (records it). Returns 0 after an error line.
int config_set(DcalConfig *c, const char *assignment);
// Fill derived values and check cross-field consistency (e.g. D % H == 0).
int config_finalize(DcalConfig *c);
// Emit the resolved config as YAML (re-loadable by config_load).
int config_write_yaml(const DcalConfig *c, FILE *f);
// Effective batch = micro × accumulation × devices.
static inline int config_effective_batch(const DcalConfig *c) {
    return c->train.micro_batch * c->train.accum_steps * (c->train.devices > 0 ? c->train.devices : 1);
}
// The launcher's world size (processes, one per device) applied to the config,
// keeping its effective batch (config.c). 0 after an error line.
int config_apply_world(DcalConfig *c, int world, bool resume);
// Whether train.update_in_backward applies at `accum` micro-batches per step on `world`
// processes: a gradient summed over micro-batches or processes is final only at the step's end.
static inline bool config_update_in_backward(const TrainConfig *t, int accum, int world) {
    return t->update_in_backward && accum == 1 && world <= 1;
}
// Tokens per image: 1 + (img/patch)^2.
static inline int config_tokens(const ModelConfig *m) {
    int g = m->img_size / m->patch;
    return 1 + g * g;
}
// The threads the CPU backend runs: train.threads, else OpenMP's default (OMP_NUM_THREADS's
// first number, else the CPUs online: an upper bound where an affinity mask allows fewer).
static inline int config_cpu_threads(int threads) {
    if (threads > 0) return threads;
    const char *e = getenv("OMP_NUM_THREADS");
    int n = e ? atoi(e) : 0;
    if (n > 0) return n;
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}
// What the run's backend (its name; NULL: unknown; threads: train.threads) changes in the model's plan: the CUDA
// backend's own scratch counts (on_cuda), and the CPU, where memory binds before time, recomputes
// h instead of keeping it, and the attention output too where that is as cheap. The exchange rate
// is h's: its projection GEMM costs 2·D FLOPs a row per float it saves; the attention forward
// costs 4·N (SA) and 8·N (PWCA's 2N keys) FLOPs per float, 6·N on the average of the two, so it
// is recomputed only while 6·N <= 2·D. ViT-B/16: at 224 px (N 197) it is, at 448 px (N 785),
// where attention would be about 10% of the step again, it is kept (bench/RESULTS.md).
// At bf16 (act_bytes 2, so set the precision first) the CPU keeps both: there the step is
// twice as fast and the recomputes cost 8-15% of it (on a Zen 4) for 5% of its memory, and
// bf16's targets are speed ones (issue 13; fp32's include half the peer's memory).
static inline void config_model_backend(ModelConfig *m, const char *backend, int threads) {
    m->on_cuda = backend && !strcmp(backend, "cuda");
    m->cpu_threads = config_cpu_threads(threads);
    m->recompute_h = backend && !m->on_cuda && m->act_bytes != 2;
    m->recompute_att = m->recompute_h && 3 * config_tokens(m) <= m->dim;
}
// Bytes of an Act element (backend.h) at a resolved precision: bf16 stores them in 2, fp32 in 4.
static inline int config_act_bytes(const char *precision) {
    return strcmp(precision, "bf16") ? 4 : 2;
}
// train.precision and what follows from it, the Act element size the model plans and
// allocates with, set together (a config that runs at another precision than it was
// resolved with: eval and predict run a trained model at the precision asked now).
static inline void config_use_precision(DcalConfig *c, const char *precision) {
    snprintf(c->train.precision, sizeof c->train.precision, "%s", precision);
    c->model.act_bytes = strcmp(precision, "auto") ? config_act_bytes(precision) : 0;
}
// K = floor(R·(N−1)) selected patch tokens (at least 1).
int config_topk(const ModelConfig *m);
// train.attention's one-line statement for verify-config and the manifest: whose kernels run
// and whether their backward is deterministic (*deterministic set to 1 or 0). NULL for an unknown name.
const char *config_attention_note(const char *impl, int *deterministic);
// Closest known key to `key` by edit distance (for "did you mean"), or NULL.
const char *config_suggest(const char *key);

// What a training step holds at micro-batch B with A micro-batches accumulated
// per optimizer step on each of `world` processes (the gradient sum's buffers
// grow with A and, for A = 1, with the world: src/dist/reduce.h).
// The whole config, not only the model: on the CPU the budget is the process's peak RSS,
// which also holds the loaders' and checkpoints' host data (data.workers, the image size).
typedef size_t (*StepBytesFn)(const DcalConfig *, int micro_batch, int accum, int world, bool ckpt);
// The largest micro-batch B >= 2 that divides per_device and whose bytes(c, B,
// per_device / B, world) fit budget; 0 when even B = 2 does not. The one picker (dcal plan uses it too).
int config_pick_micro_batch(const DcalConfig *c, int per_device, int world, bool ckpt, size_t budget,
                            StepBytesFn bytes);
