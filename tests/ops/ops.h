// ops.h: the op-case machinery behind tests/gradcheck_backend_ops.c.
//
// An OpDef says, for one Backend op (or forward/backward pair): which tensors a
// case has (init), the float64 reference forward and its analytic gradient
// (ref_fwd, ref_bwd), and how to call the op on a backend (be_fwd, be_bwd).
// A Row of the table picks an OpDef, its shape parameters and per-backend
// tolerances. runner.c does the rest for every row and every backend.
#pragma once
#include <stddef.h>
#include "backend/backend.h"
#include "core/rng.h"

// Element types of a tensor. T_ACT: host values are float; on a backend it is Act
// storage (backend.h: bf16 at precision bf16), written with act_from_f32, read with act_to_f32.
enum { T_F32, T_I32, T_F64, T_ACT };
enum { MAXT = 6 };              // tensors per side (inputs, outputs)

// One tensor of a case. n == 0 means "absent" (the op gets NULL there).
typedef struct {
    const char *name;
    size_t n;
    int type;          // T_F32, T_I32, T_ACT, or T_F64 (outputs only)
    int diff;          // input: has a gradient; output: has an upstream gradient
    double cap;        // > 0: tolerance ceiling for this tensor (a plain reduction inside a GEMM op)
    int exact;         // gradient that is a plain copy of the upstream one: tolerance 0 on every backend
    void *h;           // inputs: host values, filled by init
} Tensor;

typedef struct Row Row;
typedef struct OpCase {
    const Row *row;
    int nx, ny;
    Tensor x[MAXT], y[MAXT];
    float *gy[MAXT];   // upstream gradients (host) for outputs with diff, filled by init
    int partial;       // be_bwd: pass NULL for the op's optional gradients (see partial_keeps)
} OpCase;

typedef struct {
    const char *name;
    // Shapes from row->p, host inputs and upstream gradients, from r.
    void (*init)(OpCase *c, Rng *r);
    // float64 forward: x[i] = inputs as double (NULL for int inputs: read c->x[i].h), y[j] written.
    void (*ref_fwd)(const OpCase *c, double *const *x, double *const *y);
    // Analytic float64 gradient: gx[i] (for diff inputs) = ∂(Σ_j gy[j]·y[j]) / ∂x[i]. NULL: no backward.
    void (*ref_bwd)(const OpCase *c, double *const *x, double *const *gy, double *const *gx);
    // The op on a backend; all pointers are that backend's memory.
    void (*be_fwd)(const Backend *be, const OpCase *c, void *const *x, void *const *y);
    // y: this backend's own forward outputs (saved statistics); gx accumulated (+=).
    void (*be_bwd)(const Backend *be, const OpCase *c, void *const *x, void *const *y, float *const *gy,
                   float *const *gx);
    // With c->partial set, element k of gradient i must equal the full backward
    // (1) or keep its start value (0). NULL: the op has no optional gradients.
    int (*partial_keeps)(const OpCase *c, int i, size_t k);
    int by_precision;  // numerics follow the backend's precision (GEMM compute type, attention kernels):
                       // a device backend runs one column per precision it supports
    // Gradient i is written (=), not accumulated: run B compares it with the reference as it is,
    // so an op that adds to its start value fails. NULL: every gradient accumulates.
    int (*overwrites)(const OpCase *c, int i);
} OpDef;

typedef struct { double fwd, bwd; } Tol;
// Tolerance columns: the CPU (fp32), CUDA at precision bf16 (its default: bf16-operand GEMMs,
// bf16 tensor-core attention) and at fp32 (fp32 GEMMs, fp32 attention kernels).
// A zero entry in a later column falls back to CUDA's, the bf16 one. COL_CUDA_CUDNN: CUDA with
// train.attention=cudnn (cuDNN's fused SDPA, bf16; only on a GPU: the simulator does not model
// cuDNN). COL_CPU_BF16: the CPU at precision bf16 (bf16 Act storage and GEMM operands, fp32
// attention on bf16 q/k/v), run where the CPU offers bf16 (DCAL_CPU_BF16=portable in ctest).
enum { COL_CPU, COL_CUDA, COL_CUDA_FP32, COL_CUDA_CUDNN, COL_CPU_BF16, NCOL };

struct Row {
    const OpDef *op;
    const char *label;
    int p[8];          // shape parameters, meaning per op (see the op's init)
    Tol tol[NCOL];     // max relative error, max|got−ref| / max|ref|, per column
    int size;          // SMALL, MEDIUM or BIG (below)
};
// SMALL: everything. MEDIUM: no finite differences (the same reference code is
// checked by them on the small rows). BIG: also runs only when a device backend is present.
enum { SMALL, MEDIUM, BIG };

// ---- helpers (runner.c) ----
void *tz(size_t n, size_t elem);                          // zeroed host memory
void tensor_set(Tensor *t, const char *name, size_t n, int type, int diff);
float *fill_normal(Tensor *t, Rng *r, float scale);       // allocates t->h (F32) and fills it
int *fill_int(Tensor *t);                                 // allocates t->h (I32), zeroed; caller fills
float *make_gy(OpCase *c, int j, Rng *r, float scale);    // upstream gradient of output j
double ref_softmax_lse(double *s, int n);                 // s ← exp(s − lse); returns lse

// Run one row against the reference and every backend present; returns 0 when all pass.
int run_row(const Row *row, int row_index);
// Its cuDNN column (OP_ATTENTION rows on a device backend that takes train.attention=cudnn), run as
// a pass of its own after run_row's; skipped, saying why, elsewhere. 0 when it passes or is skipped.
int run_row_cudnn(const Row *row, int row_index);
// The float64 reference forward output j of a row (caller frees): for hand-computed checks.
double *ref_output(const Row *row, int j);

// ---- the ops (ops_*.c) ----
extern const OpDef OP_MEMORY, OP_IM2COL, OP_TOKENS, OP_LAYERNORM, OP_LINEAR, OP_LINEAR_SET, OP_LINEAR_ACT, OP_GELU,
    OP_GELU_SET, OP_RESIDUAL, OP_GATHER;
extern const OpDef OP_ATTENTION, OP_ROLLOUT_ATTN, OP_TOPK;
// OP_ATTENTION rows also run a cuDNN column (COL_CUDA_CUDNN) on a device backend whose
// set_attention takes "cudnn": NULL when cuDNN's fused SDPA can take the case, else why not.
const char *attention_cudnn_skip(const OpCase *c);
// r ← r·(0.5 S + 0.5 I) in float64, S [B, N, N], r [B, N] (the rollout reference, for hand checks).
void ref_rollout_step(double *r, const double *S, int B, int N);
extern const OpDef OP_CROSSENTROPY, OP_LOSS, OP_LOSS_BWD, OP_ADAMW, OP_ADAMW_MULTI, OP_SUMSQ;
extern const OpDef OP_DROPPATH;   // ops_droppath.c
extern const OpDef OP_RESIDUAL_LAYERNORM;   // ops_fused.c

