// cuda_common.h: what every kernels/*.cu file shares: status-check macros, the
// one stream and cuBLAS/cuBLASLt handles the backend runs on, a grow-only scratch buffer,
// the precision in force, and the cuda_* functions that kernels/backend_cuda.cu gathers into backend_cuda.
//
// Every op is enqueued on one stream, so ops run in call order and scratch can
// be reused by the next op without extra synchronisation.
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <cublasLt.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "backend/backend.h"
}

// graph.cu: inside an open step capture a failure is collected (the capture then fails cleanly
// and the body runs directly, graphs off); true when it was, false (fatal) otherwise.
bool cuda_graph_absorb(const char *err, const char *call);

// Any failing CUDA/cuBLAS call is fatal: the training state is unknown after it (except inside
// a step capture, which enqueues nothing that runs: cuda_graph_absorb).
#define CUDA_CHECK(call)                                                                      \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess && !cuda_graph_absorb(cudaGetErrorString(e_), #call)) {         \
            fprintf(stderr, "dcal: cuda: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,         \
                    cudaGetErrorString(e_));                                                  \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

#define CUBLAS_CHECK(call)                                                                    \
    do {                                                                                      \
        cublasStatus_t s_ = (call);                                                           \
        if (s_ != CUBLAS_STATUS_SUCCESS && !cuda_graph_absorb(cublasGetStatusString(s_), #call)) { \
            fprintf(stderr, "dcal: cuda: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,         \
                    cublasGetStatusString(s_));                                               \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

// After every launch: catches bad launch configurations at the call site.
#define LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

static inline unsigned cdiv(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

// An Act element (backend.h) as its storage type: float at precision fp32, __nv_bfloat16 at
// bf16 (the host picks the kernel's T by cuda_act_bf16()). Loads widen exactly; stores round
// to nearest even, once.
__device__ __forceinline__ float act_load(const float *p, size_t i) { return p[i]; }
__device__ __forceinline__ float act_load(const __nv_bfloat16 *p, size_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void act_store(float *p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void act_store(__nv_bfloat16 *p, size_t i, float v) { p[i] = __float2bfloat16_rn(v); }

// Lazily created on first use (so a CPU-only run never touches the driver).
cudaStream_t cuda_stream(void);
cublasHandle_t cuda_cublas(void);
cublasLtHandle_t cuda_cublaslt(void);
// cuBLASLt's workspace, ours (not the library's), so results stay reproducible (linear.cu):
// CUDA_LT_WORKSPACE_BYTES (cuda_scratch_rule.h), 32 MiB, what the cuBLAS guide recommends for
// Hopper; allocated on first use.
void *cuda_lt_workspace(void);
static inline size_t cuda_lt_workspace_bytes(void) { return CUDA_LT_WORKSPACE_BYTES; }
// Device scratch of at least `bytes`, valid until the next call (stream-ordered).
void *cuda_scratch(size_t bytes);
// The largest request cuda_scratch has seen (what cuda_scratch_rule.h predicts: tests).
extern "C" size_t cuda_scratch_max_request(void);
// dst[c] += sum_r src[r*cols + c], deterministic (fixed-order two-pass). Uses scratch.
void cuda_colsum_acc(float *dst, const float *src, int rows, int cols);

// upload.cu: the input batch's host memory and its copy stream (backend.h: host_alloc … host_ready).
void *cuda_host_alloc(size_t bytes);
void cuda_host_free(void *p);
void cuda_upload(void *dst, const void *src, size_t bytes);
void cuda_consumed(const void *dst);
void cuda_host_ready(const void *p);
// graph.cu: recorded steps (backend.h graph_run), on when DCAL_CUDA_GRAPHS=1
int cuda_graph_run(int key, void (*body)(void *ctx), void *ctx);
void cuda_graph_reset(void);
bool cuda_graphs_enabled(void);    // DCAL_CUDA_GRAPHS=1 (and no capture has failed); describe says it
bool cuda_graph_capturing(void);   // a step capture is open (cuda_scratch must not grow then)

// machine (device.cu): the Backend slots available, free_memory, describe and
// set_precision, and what the ops read of the precision in force.
extern "C" int cuda_device_count(void);      // 0 when no GPU or no driver
extern "C" size_t cuda_free_memory(void);    // cudaMemGetInfo free bytes
int cuda_available(char *why, size_t n);
void cuda_describe(char *buf, size_t n);
int cuda_set_precision(const char *p);
#define CUDA_PRECISIONS "bf16 fp32"            // the names of device.cu's table, best first
cudaDataType_t cuda_gemm_operands(void);      // linear.cu's A/B type: CUDA_R_16BF (bf16 copies) or CUDA_R_32F
bool cuda_attention_mma(void);                 // attention.cu: bf16 MMA kernels, else the fp32 ones
size_t cuda_act_bytes(void);                   // backend.h act_bytes: 2 at precision bf16, 4 at fp32
bool cuda_act_bf16(void);                      // Act tensors hold __nv_bfloat16 (precision bf16), else float
bool cuda_attention_fa2(void);                 // and of those, the forward: attention_fa2.cu (DCAL_CUDA_ATTN=fa2), else WMMA
int cuda_set_attention(const char *impl, char *why, size_t n);
bool cuda_attention_cudnn(void);               // attention.cu: train.attention=cudnn, cuDNN's fused SDPA

// memory (cuda_common.cu)
void *cuda_alloc(size_t bytes);
void cuda_free(void *p);
void cuda_zero(void *p, size_t bytes);
void cuda_to_device(void *dst, const void *src, size_t bytes);
void cuda_to_host(void *dst, const void *src, size_t bytes);
void cuda_copy(void *dst, const void *src, size_t bytes);
void cuda_sync(void);

// linear.cu
void cuda_im2col_forward(Act *cols, const float *img, int B, int C, int S, int p);
void cuda_tokens_forward(float *x0, const float *pe, const float *cls, const float *pos, int B, int N, int D);
void cuda_tokens_backward(float *dpe, float *dcls, float *dpos, const float *dx0, int B, int N, int D);
void cuda_linear_forward(float *out, const Act *inp, const float *w, const float *b, int rows, int IC, int OC);
void cuda_linear_backward(float *dinp, float *dw, float *db, const float *dout, const Act *inp, const float *w,
                          int rows, int IC, int OC);
void cuda_linear_backward_set(float *dinp, float *dw, float *db, const float *dout, const Act *inp, const float *w,
                              int rows, int IC, int OC);
void cuda_linear_forward_act(Act *out, const Act *inp, const float *w, const float *b, int rows, int IC, int OC);
// layernorm.cu
void cuda_layernorm_forward(Act *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                            int rows, int D, float eps);
void cuda_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                             const float *mean, const float *rstd, int rows, int D);
void cuda_residual_layernorm_forward(float *h, Act *out, float *mean, float *rstd, const float *x, const float *f,
                                     const float *scale, const float *w, const float *b, int B, int rows_per_b, int D,
                                     float eps);
void cuda_residual_layernorm_backward(float *dx, float *df, float *dw, float *db, const float *dskip,
                                      const float *dout, const float *h, const float *w, const float *mean,
                                      const float *rstd, const float *scale, int B, int rows_per_b, int D);
// elementwise.cu
void cuda_act_from_f32(Act *dst, const float *src, size_t n);
void cuda_act_to_f32(float *dst, const Act *src, size_t n);
void cuda_gelu_forward(Act *out, const Act *inp, size_t n);
void cuda_gelu_backward(float *dinp, const Act *inp, const float *dout, size_t n);
void cuda_gelu_backward_set(float *dinp, const Act *inp, const float *dout, size_t n);
void cuda_residual_forward(float *out, const float *x, const float *f, const float *scale, int B, size_t n_per_b);
void cuda_residual_backward(float *dx, float *df, const float *dout, const float *scale, int B, size_t n_per_b);
void cuda_gather_rows_forward(float *out, const float *inp, const int *idx, int B, int Nin, int Nout, int D);
void cuda_gather_rows_backward(float *dinp, const float *dout, const int *idx, int B, int Nin, int Nout, int D);
void cuda_crossentropy_forward(float *losses, float *probs, const float *logits, const int *labels, int B, int C);
void cuda_crossentropy_backward(float *dlogits, const float *probs, const int *labels, const float *coef, int B,
                                int C);
void cuda_loss_forward(float *out, const float *const losses[3], const float *w, int B, int heads, int uw);
void cuda_loss_backward(float *coef, float *dw, const float *w, const float *out, float s, int heads, int uw);
double cuda_sumsq(const float *x, size_t n);
void cuda_sumsq_into(double *out, const float *x, size_t n);
// droppath.cu
void cuda_droppath_masks(float *drop, const float *keep, int nblk, int B, uint64_t seed, uint64_t step);
// adamw.cu
void cuda_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                       float beta2, float eps, float wd, int t);
void cuda_adamw_multi(float *param, const float *grad, float *m, float *v, size_t n, const AdamwSpan *spans,
                      int n_spans, float lr, float beta1, float beta2, float eps, float wd, int t);
// attention.cu
void cuda_attention_forward(const AttnArgs *a, Act *out, float *lse);
void cuda_attention_backward(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse,
                             const float *dout);
// attention_cudnn.cu: cuDNN's fused SDPA behind the same contract (bf16 copies, fp32 in and out).
int cudnn_attention_open(char *why, size_t n);        // 1 when cuDNN runs here; else 0 and the reason
void cudnn_attention_describe(char *buf, size_t n);   // "attention cuDNN 9.19.0 fused SDPA ..." for describe
void cudnn_attention_forward(const AttnArgs *a, Act *out, float *lse);
void cudnn_attention_backward(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse,
                              const float *dout);
// rollout.cu
void cuda_rollout_step_attn(const AttnArgs *a, const float *lse, float *r, float *tmp);
void cuda_topk_select(int *sel, const float *r, int B, int N, int K);
