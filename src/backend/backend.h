// backend.h: the seam between the model and the hardware (ARCHITECTURE.md §3).
//
// Every op is a forward/backward pair with one contract, implemented by the
// CPU reference (src/backend/cpu/*.c, fp32) and by the CUDA backend (kernels/*.cu).
// The model calls ops only through a Backend table and never touches data.
//
// Conventions, for every op:
//  * All pointers are backend memory (host memory for CPU, device memory for
//    CUDA), including int index arrays. Activations are float (fp32) at this
//    interface, except the `Act` tensors below; a backend may compute internally
//    in lower precision.
//  * Row-major. A "token matrix" is [B, N, D] contiguous.
//  * Backward ops ACCUMULATE (+=) into every gradient they write, activation
//    gradients included; callers zero buffers first. The exceptions say so in
//    their name: linear_backward_set and gelu_backward_set write their input
//    gradient (=), for a buffer they are the first to write. A NULL gradient
//    pointer means "not needed" and is skipped.
//  * Linear weights use timm's layout: W [OC, IC], out = in·Wᵀ + b.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "backend/cuda_scratch_rule.h"   // the CUDA backend's scratch, as the planner counts it
#include "backend/cpu_scratch_rule.h"    // the CPU backend's at bf16, likewise

// Activation storage. Two kinds of activation are `Act` tensors, stored in the activation
// type of the precision in force: fp32 at "fp32", bf16 at "bf16" (the rule is the
// precision's, so the planner knows it from the config: config_act_bytes):
//  * what a GEMM writes and only attention, the rollout and the GELU read: qkv (and GLCA's
//    q and k|v) and fc1's output, the largest tensors a block keeps;
//  * what a GEMM reads as its activation input: LayerNorm, GELU and attention outputs and
//    im2col's columns. At bf16 the GEMM multiplies bf16 anyway: its producer rounds once where
//    it writes, instead of the GEMM copying an fp32 tensor into bf16 on every call.
// The model's streams between blocks are Act tensors as well when train.bf16_stream asks
// (model_int.h; fp32 by default): at bf16 this halves them; readers widen on load (exact). Opaque outside the backends: the model sizes
// them with act_bytes() and offsets them with act_at().
typedef struct Act Act;
static inline const Act *act_at(const Act *p, size_t elems, size_t elem_bytes) {
    return p ? (const Act *)((const char *)p + elems * elem_bytes) : NULL;
}

// One attention call. q, k, v are strided views into larger buffers (the
// qkv GEMM output [B, N, 3D], q|k|v, heads contiguous inside each). Element
// (b, t, h*hd + i) of a view lives at ptr[b*bstride + t*tstride + h*hd + i].
//
//  SA:   Nq = n1 = N, q_idx = NULL, n2 = 0.
//  GLCA: Nq = 1+K, q_idx[b*Nq + j] = token index of query j (0 = CLS), keys n1 = N.
//  PWCA: Nq = n1 = n2 = N; k2/v2 belong to batch element kv2_b[b] of another
//        buffer (the distractor's SA stream). One softmax over n1+n2 keys; the
//        keys are never concatenated in memory.
typedef struct {
    int B, H, hd;              // D = H*hd
    int Nq;                    // query rows per batch element
    const int *q_idx;          // [B*Nq] or NULL (identity, Nq rows from token 0)
    const Act *q;     long q_bstride, q_tstride;          // strides in elements, not bytes
    const Act *k1, *v1; int n1; long kv1_bstride, kv1_tstride;
    const Act *k2, *v2; int n2; long kv2_bstride, kv2_tstride;
    const int *kv2_b;          // [B] batch index of k2/v2 for each b, or NULL (= b)
    float scale;               // 1/sqrt(hd)
} AttnArgs;

// Gradient views matching AttnArgs' q/k1/v1/k2/v2 with the same strides.
typedef struct {
    float *dq, *dk1, *dv1, *dk2, *dv2;
} AttnGrads;

// A run of floats of one flat parameter buffer that AdamW updates with one weight
// decay: [offset, offset + numel), decayed when decay is non-zero (adamw_multi).
typedef struct {
    size_t offset, numel;
    int decay;
} AdamwSpan;

typedef struct Backend {
    const char *name;          // "cpu" or "cuda"

    // machine: what the trainer and the run directory ask of a backend, so that
    // nothing outside the backend names a device API. None of these needs a
    // prior op; available() is safe to call on any machine.
    //
    // 1 when the backend can run on this machine; else 0 and a one-line reason
    // in why (n bytes, NUL-terminated), e.g. CUDA: "no CUDA GPU is available".
    int (*available)(char *why, size_t n);
    // Bytes a run may plan its memory with (ARCHITECTURE.md §4). 0 means "not limited by
    // the backend": the caller then plans only when asked (--max-memory). CPU: 0
    // (host memory is the OS's business). CUDA: free bytes on the device now
    // (cudaMemGetInfo); the caller keeps its own headroom for workspaces.
    size_t (*free_memory)(void);
    // Bytes of the largest scratch request the backend's ops have made so far, beyond the
    // model's own buffers (CUDA: the GEMM operand copies and partial sums, which dcal plan
    // predicts: backend/cuda_scratch_rule.h). CPU: its bf16 GEMMs' operand copies
    // (backend/cpu_scratch_rule.h), 0 at fp32.
    size_t (*scratch_peak)(void);
    // One line (no newline) for the manifest and the logs: the device (CPU model
    // / GPU name), runtime and library versions (OpenBLAS config / CUDA runtime,
    // driver, cuBLAS) and the numerics in force (precision, GEMM operand type,
    // attention path). Truncated to n bytes. Call it after set_precision.
    void (*describe)(char *buf, size_t n);
    // Supported precisions here, space-separated, best first: CUDA "bf16 fp32"; CPU "fp32", or
    // "fp32 bf16" on a CPU with AVX512_BF16 or AMX-BF16 (or under DCAL_CPU_BF16=portable).
    const char *precisions;
    // One line: why a precision this backend can have is missing from `precisions` on this
    // machine (CPU: the bf16 instructions), or NULL. An error refusing the precision says it.
    const char *(*precision_note)(void);
    // Selects the numerics ("fp32" or "bf16") for every op enqueued after the
    // call; a run calls it once, before its first op. Returns 0 (and changes
    // nothing) when p is not one of `precisions`. Without a call a backend runs
    // its first (best) precision. Activations stay fp32 at this interface, except
    // the Act tensors (stored in bf16 at "bf16", see Act above).
    // (GEMM operands: a linear's Act input as stored, its weights and dout copied to bf16.)
    //   CUDA "bf16": GEMMs on bf16 copies of their operands, fp32 accumulation and
    //                output + bf16 MMA attention with fp32 softmax (the default). No TF32.
    //   CUDA "fp32": fp32 GEMMs (CUBLAS_COMPUTE_32F) + the fp32 attention kernels.
    //   CPU "bf16":  GEMMs on bf16 operands with fp32 accumulation (oneDNN, or sgemm on widened
    //                values under DCAL_CPU_BF16=portable) + the fp32 attention on bf16 q/k/v.
    //   CPU "fp32":  OpenBLAS sgemm + the fp32 attention.
    int (*set_precision)(const char *p);
    // Selects whose fused attention runs attention_forward/backward (train.attention): "dcal"
    // (the backend's own kernels, the default) or "cudnn" (CUDA: cuDNN's fused SDPA through its
    // graph API, bf16). Returns 0, changing nothing, with a one-line reason in why (n bytes) when
    // impl cannot run here (cuDNN missing, no GPU, the CUDA simulator). Call it once, before the
    // first op, after set_precision. NULL: the backend has only "dcal" (the CPU).
    int (*set_attention)(const char *impl, char *why, size_t n);
    // Bytes of one Act element under the precision in force: 4 at "fp32", 2 at "bf16"
    // (config_act_bytes says the same from the config; the model checks they agree).
    size_t (*act_bytes)(void);
    // Conversions between fp32 and Act storage (backend memory both; n elements). To Act:
    // round to nearest even at bf16, a copy at fp32; from Act: exact. For tests and tools:
    // the model's Act tensors are written by linear_forward_act only.
    void (*act_from_f32)(Act *dst, const float *src, size_t n);
    void (*act_to_f32)(float *dst, const Act *src, size_t n);

    // memory
    void *(*alloc)(size_t bytes);              // zero-filled; dies with a message on failure
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*to_device)(void *dst, const void *host_src, size_t bytes);
    void (*to_host)(void *host_dst, const void *src, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);   // device to device
    void (*sync)(void);
    // The input batch's way in, overlapped with the device's queued work.
    // host_alloc/host_free: host memory for upload()'s source: page-locked on CUDA, so the
    // copy is a real asynchronous DMA; plain memory on the CPU. Zero-filled; dies on failure.
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);
    // upload: host → dst like to_device, but it may still be running when the call returns
    // (CUDA: on a copy stream of its own, beside the compute work queued before it). Every op
    // enqueued after the call sees dst's new bytes. The caller promises two things:
    //  * host_src stays unchanged until host_ready(host_src) has returned;
    //  * once the last op that reads dst is enqueued, it calls consumed(dst): the next upload
    //    into dst then waits for those ops, and for nothing else queued.
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*consumed)(const void *dst);
    // Blocks until no upload still reads host memory at p (an upload's host_src), so the
    // caller may overwrite it. Returns at once for memory no upload read.
    void (*host_ready)(const void *p);

    // Recorded steps (CUDA graphs). graph_run(key, body, ctx) has the ops that body(ctx) enqueues
    // run. A backend that records them (CUDA with DCAL_CUDA_GRAPHS=1) runs body directly the
    // first time it sees key (a warm-up that sizes scratch and picks GEMM algorithms), records
    // it the second time (stream capture) and from then on replays the recording without
    // calling body. The caller promises that body enqueues the same ops with the same
    // arguments (pointers and host scalars) every time — whatever changes lives in backend
    // memory — and does no read-back, allocation, upload or host wait inside it. Returns 1
    // when a recording ran, 0 when body ran directly (the CPU: always). graph_reset drops every
    // recording (call it when buffers body uses move). The CPU's graph_run calls body.
    int (*graph_run)(int key, void (*body)(void *ctx), void *ctx);
    void (*graph_reset)(void);

    // patch embedding as GEMM: im2col then linear.
    // img [B, C, S, S] → cols [B*P, C*p*p] with P = (S/p)^2, column order (c, ky, kx)
    // so that cols·Wᵀ matches a conv weight [D, C, p, p]. No backward to the image.
    void (*im2col_forward)(Act *cols, const float *img, int B, int C, int S, int p);

    // x0[b,0,:] = cls + pos[0]; x0[b,1+i,:] = pe[b,i,:] + pos[1+i]; x0 [B,N,D], pe [B,N-1,D]
    void (*tokens_forward)(float *x0, const float *pe, const float *cls, const float *pos, int B, int N, int D);
    void (*tokens_backward)(float *dpe, float *dcls, float *dpos, const float *dx0, int B, int N, int D);

    // LayerNorm over the last dim; mean/rstd [rows] saved for backward. The output, a GEMM's
    // input, is an Act (rounded once where it is written, as the GEMM would round it).
    void (*layernorm_forward)(Act *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int rows, int D, float eps);
    void (*layernorm_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                               const float *w, const float *mean, const float *rstd, int rows, int D);

    // out [rows, OC] = inp [rows, IC] · Wᵀ + b (b may be NULL). The activation input is an Act
    // (every one a producer writes: LayerNorm, GELU, attention, im2col), so at bf16 the GEMM
    // reads it as it is, with no per-call copy; weights and dout are fp32 (copied at bf16).
    void (*linear_forward)(float *out, const Act *inp, const float *w, const float *b, int rows, int IC, int OC);
    void (*linear_backward)(float *dinp, float *dw, float *db, const float *dout, const Act *inp,
                            const float *w, int rows, int IC, int OC);
    // The same with dinp written, not accumulated (dinp = dout · W; dw and db still +=): for a
    // dinp nothing else has written, which then needs no zeroing pass of its own first.
    void (*linear_backward_set)(float *dinp, float *dw, float *db, const float *dout, const Act *inp,
                                const float *w, int rows, int IC, int OC);
    // linear_forward with the output stored as Act (any OC): at fp32 exactly linear_forward; at
    // bf16 the fp32 accumulation plus the bias, rounded once to bf16 — the bias itself in bf16
    // (cuBLASLt's bias has the output's type), so out = bf16(acc + bf16(b)).
    void (*linear_forward_act)(Act *out, const Act *inp, const float *w, const float *b, int rows, int IC, int OC);

    // GELU, exact (erf), of an Act input (fc1's output) into an Act (fc2's input); the
    // gradient is fp32.
    void (*gelu_forward)(Act *out, const Act *inp, size_t n);
    void (*gelu_backward)(float *dinp, const Act *inp, const float *dout, size_t n);
    // The same with dinp written, not accumulated (as linear_backward_set).
    void (*gelu_backward_set)(float *dinp, const Act *inp, const float *dout, size_t n);

    // Residual with per-sample drop-path scale: out = x + scale[b] * f, rows of
    // n_per_b floats per batch element; scale NULL means 1 (no drop-path).
    // scale[b] is 0 (dropped) or 1/keep_prob.
    void (*residual_forward)(float *out, const float *x, const float *f, const float *scale, int B, size_t n_per_b);
    void (*residual_backward)(float *dx, float *df, const float *dout, const float *scale, int B, size_t n_per_b);

    // The pre-norm block's residual and the LayerNorm after it, in one pass over each row
    // (one read of x and f, no re-read of h for the statistics): h = x + scale[b]·f as
    // residual_forward with n_per_b = rows_per_b·D, then out/mean/rstd = layernorm_forward(h).
    // rows = B·rows_per_b. On one backend the bits equal those of the two separate calls.
    // h may be x (each element is read before it is written; the CLS tail does so).
    void (*residual_layernorm_forward)(float *h, Act *out, float *mean, float *rstd, const float *x,
                                       const float *f, const float *scale, const float *w, const float *b, int B,
                                       int rows_per_b, int D, float eps);
    // Its mirror, in one pass over each row: the gradient reaching h, dh = dskip (along the
    // skip path) + LayerNorm's dinp from dout, is never stored; dx += dh, df += scale[b]·dh,
    // dw/db += as layernorm_backward(dout, h). dx, df, dw, db may each be NULL; no output may
    // alias an input. On one backend the bits equal those of: zero(dh);
    // residual_backward(dh, NULL, dskip, NULL, 1, n); layernorm_backward(dh, dw, db, dout, h, …);
    // residual_backward(dx, df, dh, scale, B, rows_per_b·D).
    void (*residual_layernorm_backward)(float *dx, float *df, float *dw, float *db, const float *dskip,
                                        const float *dout, const float *h, const float *w, const float *mean,
                                        const float *rstd, const float *scale, int B, int rows_per_b, int D);

    // The drop-path scales of one micro-step, drawn on the backend (no host draw or copy in a step):
    // for block k < nblk, branch w (0 attention, 1 MLP) and image b < B,
    //   drop[(2k + w)·B + b] = u < (double)keep[k] ? 1.0f / keep[k] : 0
    // with u the b-th rng_uniform of rng_init(seed, 2k + w, step, RNG_DROPPATH) (core/rng.h),
    // the same bits on every backend (CUDA draws the stream with cuRAND's Philox4_32_10).
    // keep [nblk] (keep probability per block), drop [2·nblk·B]: backend memory.
    void (*droppath_masks)(float *drop, const float *keep, int nblk, int B, uint64_t seed, uint64_t step);

    // Row gather: out[b, j, :] = inp[b, idx[b*Nout + j], :]; inp [B, Nin, D].
    void (*gather_rows_forward)(float *out, const float *inp, const int *idx, int B, int Nin, int Nout, int D);
    void (*gather_rows_backward)(float *dinp, const float *dout, const int *idx, int B, int Nin, int Nout, int D);

    // Fused attention (flash style): out [B, Nq, D], lse [B, H, Nq] (natural log).
    // No per-head Nq×Nk matrix is ever stored; backward recomputes scores tile by tile.
    // q, k, v are Act views (the qkv GEMM's stored output) and so is out (the projection's
    // input); lse and every gradient fp32.
    void (*attention_forward)(const AttnArgs *a, Act *out, float *lse);
    void (*attention_backward)(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse,
                               const float *dout);

    // One rollout step through an SA layer (MODEL.md §2): r[b,:] ← r[b,:]·(0.5·S[b] + 0.5·I)
    // with S[b, i, j] = mean_h exp(q_i·k_j·scale − lse[b, h, i]), the head-mean attention
    // recomputed tile by tile from a's q and k1 and the layer's saved lse [B, H, N]; no N×N
    // map is stored. SA arguments only (Nq = n1 = N; v, n2 ignored). r [B, N]; tmp is scratch
    // of B*N floats. Each r[b, j] is summed in a fixed order (independent of thread count).
    void (*rollout_step_attn)(const AttnArgs *a, const float *lse, float *r, float *tmp);
    // Selection: sel[b, 0] = 0 (CLS), sel[b, 1..K] = the K patch tokens (1..N-1)
    // with largest r[b, :], ties → lower index, written in ascending token order.
    void (*topk_select)(int *sel, const float *r, int B, int N, int K);

    // Softmax cross-entropy, plain (no smoothing). logits [B, C], labels [B].
    // losses [B] per sample; probs [B, C] saved for backward.
    void (*crossentropy_forward)(float *losses, float *probs, const float *logits, const int *labels, int B, int C);
    // dlogits += dscale * (probs - onehot(label)), per row, with dscale = coef[0] / B in fp32:
    // coef is backend memory (loss_backward's), so a step reads no loss weight back to the host.
    void (*crossentropy_backward)(float *dlogits, const float *probs, const int *labels, const float *coef, int B,
                                  int C);

    // The DCAL loss of one micro-batch (MODEL.md §3), on the backend: a step reads nothing back
    // before its end. Heads h = 0 SA, 1 GLCA, 2 PWCA take part when bit h of `heads` is set
    // (losses[h] is then that head's per-sample CE [B]; NULL otherwise). Written to out [4]:
    //   out[1 + h] = ce_h = (float)(Σ_b losses[h][b] / B), the sum in double in b order (0 when off);
    //   out[0] = (float)Σ_{h on} (uw ? 0.5·(exp(−w_h)·ce_h + w_h) : ce_h), in double in h order,
    // with w = loss_w [3] (fp32, exp of the double). out, w: backend memory.
    void (*loss_forward)(float *out, const float *const losses[3], const float *w, int B, int heads, int uw);
    // Its backward, the loss scaled by s, in fp32: coef[h] = on ? (uw ? s·0.5f·expf(−w_h) : s) : 0,
    // the factor of head h's CE gradient (crossentropy_backward's coef), and
    // dw[h] += (uw && on) ? s·0.5f·(1 − expf(−w_h)·ce_h) : 0 (every dw[h] gets the add), with ce_h
    // read from loss_forward's out. coef [3], dw [3] (loss_w's gradient), w, out: backend memory.
    void (*loss_backward)(float *coef, float *dw, const float *w, const float *out, float s, int heads, int uw);

    // AdamW, decoupled weight decay (wd = 0 for no-decay groups). t is the 1-based step.
    void (*adamw_update)(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                         float beta1, float beta2, float eps, float wd, int t);
    // AdamW over every span of one flat buffer [n] in one call (one kernel launch on
    // CUDA, no host copy): each float of spans[s] gets exactly adamw_update's
    // arithmetic with wd' = spans[s].decay ? wd : 0, bit for bit on the same backend.
    // spans [n_spans] is backend memory (made once, before the steps), sorted by
    // offset, disjoint, inside [0, n); floats in no span are not touched.
    void (*adamw_multi)(float *param, const float *grad, float *m, float *v, size_t n, const AdamwSpan *spans,
                        int n_spans, float lr, float beta1, float beta2, float eps, float wd, int t);

    // Sum of squares of x (for gradient norms and NaN checks), returned to the host.
    double (*sumsq)(const float *x, size_t n);
    // The same value, bit for bit, into backend memory out[0] instead: no read-back, so a
    // step's queue keeps running (the gradient's groups inside backward, train.update_in_backward).
    void (*sumsq_into)(double *out, const float *x, size_t n);

    // Collectives over this backend's memory for data parallelism (src/dist/);
    // NULL when it has none (CPU: src/dist/ moves host memory over MPI).
    const struct BackendComm *comm;
} Backend;

// Point-to-point and broadcast of float buffers in backend memory between the
// processes of one group (NCCL on CUDA). The reduction order is the caller's
// (src/dist/reduce.c): these only move bytes. Each returns 0 after an error line.
typedef struct BackendComm {
    const char *name;          // "nccl"
    size_t id_bytes;           // the group's id: made on rank 0 (make_id), sent to all by the caller (MPI)
    // One device per process: called before anything else touches the device.
    int (*select_device)(int local_rank);
    int (*make_id)(void *id);
    int (*init)(const void *id, int rank, int world);
    int (*send)(const float *buf, size_t n, int peer);
    int (*recv)(float *buf, size_t n, int peer);
    int (*bcast)(float *buf, size_t n, int root);
    void (*finish)(void);
} BackendComm;

// The registry (registry.c) knows the backends compiled into this binary
// (backend_list.h, generated by CMake), best first; CPU is always present, last.
//
// "cpu", "cuda" or "auto" → a backend; NULL after an error line when the name is
// unknown, not compiled in, or not available here. "auto" is the first compiled-in
// backend that is available (CUDA when built and a GPU is present, else CPU).
const Backend *backend_get(const char *name);
// The compiled-in backends, available or not, best first (tests that run every
// backend present call available() on each). backend_at(i) is NULL outside [0, count).
int backend_count(void);
const Backend *backend_at(int i);

// Selects train.attention's implementation on be (set_attention; "dcal" everywhere): 1, or 0
// after one error line naming the choice, the backend and why. After set_precision.
int backend_set_attention(const Backend *be, const char *impl);

// The CPU reference, for tests and tools that need the reference explicitly.
extern const Backend backend_cpu;
