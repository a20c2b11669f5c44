// model.h: the DCAL graph (MODEL.md §1-3) over the ops of one Backend.
// Parameters live in one flat buffer described by a named tensor table
// (MODEL.md §6 names); gradients, AdamW moments share the same layout.
#pragma once
#include <stdbool.h>
#include "config/config.h"
#include "backend/backend.h"

typedef struct {
    char name[96];             // MODEL.md §6, e.g. "blocks.3.attn.qkv.weight"
    int ndim;
    int shape[4];
    size_t offset;             // in floats, into Model.params (and the AdamW moments)
    size_t goffset;            // in floats, into Model.grads: = offset, unless cfg.grads_per_block packs them
    size_t numel;
    bool decay;                // AdamW weight decay applies (MODEL.md §4: not biases, LN, pos/cls, loss_w)
} ParamTensor;

// Exact byte counts by category (ARCHITECTURE.md §4); what model_alloc_activations allocates.
typedef struct {
    size_t weights, grads, optimizer, activations, workspace;
    size_t total;
} MemPlan;

typedef struct Acts Acts;      // private to model.c

// Tensors whose gradients become final together in backward, in table order: the
// embedding (cls, pos, patch), each SA block, the SA/PWCA head, each GLCA block, and the
// GLCA head with loss_w. Contiguous in params and in grads, with the same inner layout.
typedef struct {
    int first, count;          // tensors [first, first + count)
    size_t offset, goffset, numel;
    bool block;                // an SA or GLCA block: with grads_per_block, all share one slot
} ParamGroup;

typedef struct {
    ModelConfig cfg;
    const Backend *be;
    int N;                     // tokens per image
    int K;                     // selected patch tokens (GLCA queries = 1+K)
    int n_tensors;
    ParamTensor *tensors;
    size_t n_params;           // floats
    float *params;             // backend memory [n_params]
    float *grads;              // backend memory [n_grads], accumulated by backward
    size_t n_grads;            // n_params, or with cfg.grads_per_block the non-block
                               // groups packed plus one block's slot (model_group_*)
    int n_groups;
    ParamGroup *groups;
    // Called by model_backward as each group's gradient becomes final (NULL: not called):
    // a block group at the end of that block's backward, the others at the end. With
    // cfg.grads_per_block a block group's gradient must be used before it returns: the
    // slot is zeroed for the next block right after.
    void (*grad_ready)(void *ctx, int group);
    void *grad_ctx;
    Acts *acts;                // activations for the allocated micro-batch
    void *arena;               // one backend allocation holding every activation
    int B;                     // allocated micro-batch
    bool ckpt;                 // per-block checkpointing on
    int n_ckpt;                // training: layers [0, n_ckpt) recomputed in backward (model_ckpt_layers)
    bool training;
    bool uncertainty_weighting;   // MODEL.md §3 loss weighting (loss.uncertainty_weighting), on by default
} Model;

// One micro-batch, host memory.
typedef struct {
    int B;
    const float *images;       // [B, 3, S, S], normalised
    const int *labels;         // [B]
    const int *pair;           // [B] derangement π: distractor of b is pair[b]; NULL = no PWCA
    uint64_t seed, step;       // drop-path masks are drawn from (seed, step) when model.drop_path > 0
} Batch;

// What a training forward reports. loss_dev is backend memory; the host fields are filled only by
// model_read_outputs (host memory owned by the model, valid until the next forward).
typedef struct {
    const float *loss_dev;     // backend memory [4]: loss, CE SA, GLCA, PWCA (backend.h loss_forward)
    float ce[3];               // mean CE: SA, GLCA, PWCA (0 when a head is off)
    float loss;                // uncertainty-weighted total (MODEL.md §3)
    const float *logits[3];    // [B, C] each: SA, GLCA, PWCA
    const int *sel;            // [B, 1+K] selected token indices
} StepOut;

// Build the tensor table and allocate params + grads (zeroed). 0 after an error line.
int model_build(Model *m, const ModelConfig *cfg, const Backend *be);
// Paper init: trunc-normal(0.02) linear/patch weights, zero biases, LN 1/0,
// cls/pos normal(0.02), loss_w 0, GLCA copied from SA block L−M+1 (MODEL.md §2). Deterministic in seed.
void model_init_weights(Model *m, uint64_t seed);
// Copy GLCA block j from SA block L−M+1+j (used after loading pretrained SA weights).
void model_copy_sa_to_glca(Model *m);
const ParamTensor *model_find(const Model *m, const char *name);
// The largest tensor's floats (at least 1): the buffer that streams weights to and from files.
size_t model_largest_tensor(const Model *m);
// The SA/PWCA layers a training run recomputes in backward: none without checkpointing, else
// cfg->ckpt_layers (train.checkpoint_layers, the lowest ones) or, when 0, all of them.
static inline int model_ckpt_layers(const ModelConfig *cfg, bool ckpt) {
    if (!ckpt) return 0;
    return cfg->ckpt_layers > 0 && cfg->ckpt_layers < cfg->depth ? cfg->ckpt_layers : cfg->depth;
}
// Activations for micro-batch B. training=false allocates inference buffers only.
int model_alloc_activations(Model *m, int B, bool ckpt, bool training);
// Exact memory plan without allocating anything (same sizing code as the allocation).
void model_plan(const ModelConfig *cfg, int B, bool ckpt, bool training, MemPlan *out);

// Training forward: SA, rollout (no grad), selection, GLCA, PWCA, heads, loss. Nothing is read
// back to the host (out->loss_dev holds the loss): a device backend's queue keeps running.
void model_forward_train(Model *m, const Batch *batch, StepOut *out);
// model_forward_train in its two parts, for a recorded step (backend.h graph_run): the
// inputs — labels, pairing, drop-path masks (drawn from the batch's seed and step), the images'
// upload and im2col — then the body, the same ops on the same buffers every micro-batch.
void model_train_inputs(Model *m, const Batch *batch);
void model_forward_body(Model *m, StepOut *out);
// Once a micro-batch's backward is enqueued: its labels and pairing (uploaded by
// model_train_inputs) have no reader left, so the next upload into them waits only for that.
void model_inputs_consumed(Model *m);
// The last training forward's loss, CEs, logits and selection, read back into out's host fields
// (a synchronising read-back: for --dump-step, tests and tools, not inside a step).
void model_read_outputs(Model *m, StepOut *out);
// Backward of the last forward_train; accumulates into m->grads, scaling the
// loss by loss_scale (1/accumulation steps).
void model_backward(Model *m, float loss_scale);
// Inference: PWCA off. Host outputs [B, C] each; sel [B,1+K] may be NULL.
void model_forward_infer(Model *m, const float *images, int B, float *logits_sa, float *logits_glca, int *sel);
// The rollout's CLS row r [B, N] (host) of the last model_forward_infer: what the
// top-R selection ranked (MODEL.md §2; entry 0 is CLS, 1.. the patches in raster
// order). For explanations. 0 when the model has no GLCA (no rollout ran).
int model_rollout_cls(const Model *m, int B, float *r);
void model_zero_grads(Model *m);
void model_free(Model *m);
