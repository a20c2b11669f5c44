// cpu.h: the CPU reference ops (fp32, OpenMP, OpenBLAS), one function per
// Backend slot, one op family per file named as in kernels/. backend_cpu.c
// assembles them into backend_cpu. Contracts: backend/backend.h.
#pragma once
#include <stdbool.h>
#include "backend/backend.h"

// An Act at precision fp32 is plain floats (at bf16 see the end of this file).
static inline const float *act_f32(const Act *p) { return (const float *)p; }

// linear.c, layernorm.c, elementwise.c, adamw.c
void cpu_im2col_forward(Act *cols, const float *img, int B, int C, int S, int p);
void cpu_tokens_forward(float *x0, const float *pe, const float *cls, const float *pos, int B, int N, int D);
void cpu_tokens_backward(float *dpe, float *dcls, float *dpos, const float *dx0, int B, int N, int D);
void cpu_layernorm_forward(Act *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                           int rows, int D, float eps);
void cpu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                            const float *mean, const float *rstd, int rows, int D);
void cpu_linear_forward(float *out, const float *inp, const float *w, const float *b, int rows, int IC, int OC);
// set: dinp = (backend.h linear_backward_set), else dinp +=.
void cpu_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                         int rows, int IC, int OC, bool set);
void cpu_linear_bias_forward(float *out, const float *b, int rows, int OC);   // out [rows, OC] += b
void cpu_linear_bias_backward(float *db, const float *dout, int rows, int OC);
// linear_bf16.c: the same three at precision bf16 (Act input bf16; the weight and dout rounded).
void cpu_linear_forward_bf16(float *out, const Act *inp, const float *w, const float *b, int rows, int IC, int OC);
void cpu_linear_forward_act_bf16(Act *out, const Act *inp, const float *w, const float *b, int rows, int IC, int OC);
void cpu_linear_backward_bf16(float *dinp, float *dw, float *db, const float *dout, const Act *inp, const float *w,
                              int rows, int IC, int OC, bool set);
void cpu_gelu_forward(Act *out, const Act *inp, size_t n);
void cpu_gelu_backward(float *dinp, const Act *inp, const float *dout, size_t n);
void cpu_gelu_backward_set(float *dinp, const Act *inp, const float *dout, size_t n);
void cpu_residual_forward(float *out, const float *x, const float *f, const float *scale, int B, size_t n_per_b);
void cpu_residual_backward(float *dx, float *df, const float *dout, const float *scale, int B, size_t n_per_b);
void cpu_residual_layernorm_forward(float *h, Act *out, float *mean, float *rstd, const float *x, const float *f,
                                    const float *scale, const float *w, const float *b, int B, int rows_per_b, int D,
                                    float eps);
void cpu_residual_layernorm_backward(float *dx, float *df, float *dw, float *db, const float *dskip,
                                     const float *dout, const float *h, const float *w, const float *mean,
                                     const float *rstd, const float *scale, int B, int rows_per_b, int D);
// droppath.c
void cpu_droppath_masks(float *drop, const float *keep, int nblk, int B, uint64_t seed, uint64_t step);
void cpu_gather_rows_forward(float *out, const float *inp, const int *idx, int B, int Nin, int Nout, int D);
void cpu_gather_rows_backward(float *dinp, const float *dout, const int *idx, int B, int Nin, int Nout, int D);
void cpu_crossentropy_forward(float *losses, float *probs, const float *logits, const int *labels, int B, int C);
void cpu_crossentropy_backward(float *dlogits, const float *probs, const int *labels, const float *coef, int B, int C);
void cpu_loss_forward(float *out, const float *const losses[3], const float *w, int B, int heads, int uw);
void cpu_loss_backward(float *coef, float *dw, const float *w, const float *out, float s, int heads, int uw);
void cpu_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                      float beta2, float eps, float wd, int t);
void cpu_adamw_multi(float *param, const float *grad, float *m, float *v, size_t n, const AdamwSpan *spans,
                     int n_spans, float lr, float beta1, float beta2, float eps, float wd, int t);
double cpu_sumsq(const float *x, size_t n);
double cpu_sumsq_scalar(const float *x, size_t n);   // its scalar twin: the same bits (unit_vecmath)
void cpu_sumsq_into(double *out, const float *x, size_t n);

// vecmath.c: y = exp(x - shift), y = erf(x · scale) over n floats (y may be x), and what computes them.
void cpu_vexp(float *y, const float *x, float shift, size_t n);
void cpu_verf(float *y, const float *x, float scale, size_t n);
void cpu_vexp_sub(float *y, const float *x, const float *shift, size_t n);   // y = exp(x - shift[i])
// Attention's exponentials: s[j·ld + i] = exp(s[j·ld + i] - shift[i]) for j < n, i < nv, and (sum
// non-NULL) sum[i] += them in j order; with poly (bf16) a degree-6 polynomial on AVX-512 (~2 ulp),
// else (fp32, or no AVX-512) cpu_vexp_sub row by row, its bits.
void cpu_vexp_rows(float *s, size_t ld, int n, int nv, const float *shift, float *sum, int poly);
// acc[j] = (first ? 0 : acc[j]) + exp(x[j] - shift), j < n: the polynomial on AVX-512, else expf.
void cpu_vexp_acc(float *acc, const float *x, float shift, size_t n, int first);
const char *cpu_vecmath_name(void);
// tile_gemm.c: C[i, j] = alpha·Σ_p A(i, p)·B[p, j] (acc 0) or C[i, j] += Σ_p A(i, p)·B[p, j] (acc 1,
// alpha unused), i < m, j < n, p < k, with A(i, p) = a[i·ars + p·acs] and B[p, j] = b[p·ldb + j]:
// attention's tile products, each element one fma chain over p in order (the same bits with or
// without AVX2). The _scalar twin runs that chain without vectors (unit_tile_gemm).
void cpu_tile_gemm(float *c, long ldc, const float *a, long ars, long acs, const float *b, long ldb, int m, int n,
                   int k, float alpha, int acc);
void cpu_tile_gemm_scalar(float *c, long ldc, const float *a, long ars, long acs, const float *b, long ldb, int m,
                          int n, int k, float alpha, int acc);
// The vector paths this CPU runs (asked once per process): 2 AVX-512 (F, BW, VL) and AVX2, 1 AVX2
// and FMA, 0 neither. cpu_force_isa(k) (tests) caps it at k, to run a narrower path; -1 undoes it.
int cpu_isa(void);
void cpu_force_isa(int k);
int cpu_use_avx2(void);   // cpu_isa() >= 1
// Whether the roundings to bf16 take AVX512_BF16's vcvtne2ps2bf16 (exp512.h bf16_round2x512,
// the same bits as the integer way): cpu_isa() == 2 and the CPU has the instruction.
// cpu_force_bf16_cvt(0) (tests) takes the integer way; 1 undoes it.
int cpu_bf16_cvt(void);
void cpu_force_bf16_cvt(int on);
// tile_amx.c: C (+)= alpha·A·B (alpha only when overwriting, as cpu_tile_gemm) on bf16 operands,
// fp32 accumulation, on AMX tiles: A(i, p) = a[i·lda + p]; B pair-interleaved, B(p, j) =
// b2[(p/2)·2·ldb + 2·j + p%2]; k even. Only where cpu_has_amx_bf16() (the CPU has AMX-BF16 and
// Linux granted the tile state).
int cpu_has_amx_bf16(void);
void cpu_tile_amx_bf16(float *c, long ldc, const uint16_t *a, long lda, const uint16_t *b2, long ldb, int m, int n,
                       int k, float alpha, int acc);
// tile_dpbf16.c: the same product, contract and layouts on AVX512_BF16's vdpbf16ps, for CPUs
// with it and no AMX; only where cpu_has_avx512_bf16().
int cpu_has_avx512_bf16(void);
void cpu_tile_dp_bf16(float *c, long ldc, const uint16_t *a, long lda, const uint16_t *b2, long ldb, int m, int n,
                      int k, float alpha, int acc);

// attention.c, rollout.c
void cpu_attention_forward(const AttnArgs *a, Act *out, float *lse);
void cpu_attention_backward(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse,
                            const float *dout);
void cpu_rollout_step_attn(const AttnArgs *a, const float *lse, float *r, float *tmp);
void cpu_topk_select(int *sel, const float *r, int B, int N, int K);

// ---- precision bf16 on the CPU (bf16.c; ARCHITECTURE.md §3) ----
// At "bf16" the Act tensors are bf16 (the top half of an fp32, rounded to nearest even where
// they are written); GEMMs multiply bf16 operands with fp32 accumulation; everything else,
// statistics, softmax and gradients included, stays fp32: the CUDA backend's contract.
extern int cpu_bf16;   // 1 after set_precision("bf16")
static inline float bf16_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}
static inline uint16_t f32_bf16(float f) {   // round to nearest even; a NaN stays a (quiet) NaN
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(v.u >> 16 | 0x40);
    return (uint16_t)((v.u + 0x7fffu + (v.u >> 16 & 1)) >> 16);
}
void cpu_bf16_pack(uint16_t *dst, const float *src, size_t n);     // round
void cpu_bf16_unpack(float *dst, const uint16_t *src, size_t n);   // widen (exact)
void cpu_bf16_round(float *dst, const float *src, size_t n);       // fp32 → its bf16 value, as fp32
// The same conversions without threads, for rows inside the ops' parallel regions.
void cpu_bf16_pack_row(uint16_t *dst, const float *src, size_t n);
void cpu_bf16_unpack_row(float *dst, const uint16_t *src, size_t n);
// Act element i.. of p at the precision in force: widened into dst / rounded from src (fp32: copies).
void cpu_act_load(float *dst, const Act *p, size_t i, size_t n);
void cpu_act_store(Act *p, size_t i, const float *src, size_t n);
// Whether bf16 is offered here: 1 when the CPU has AVX512_BF16 or AMX-BF16, or when
// DCAL_CPU_BF16=portable asks for bf16 numerics on any CPU (GEMMs on widened copies, slower
// than fp32: for tests). The reason for a refusal goes to why (n bytes).
int cpu_bf16_offered(char *why, size_t n);
// 1 when oneDNN runs the bf16 GEMMs: it makes a bf16 matmul here and DCAL_CPU_BF16 is not
// "portable"; else the portable engine runs them. cpu_bf16_engine: which, in one line.
int cpu_bf16_dnnl(void);
// Where attention at bf16 runs its products on bf16 operands (attention_bf16.c): oneDNN runs the
// GEMMs (cpu_bf16_dnnl) and the CPU has AMX-BF16 with the tile state granted (CPU_ATT_AMX), or
// else AVX512_BF16 (CPU_ATT_DP); 0: the fp32 tile on widened q, k, v.
enum { CPU_ATT_DP = 1, CPU_ATT_AMX = 2 };
int cpu_att_bf16(void);
const char *cpu_bf16_engine(void);
// Grow-only host scratch, one buffer per slot (slots below), reused across calls and steps;
// the largest total is scratch_peak (the planner's cpu_scratch_rule.h).
enum { CPU_SCRATCH_A, CPU_SCRATCH_B, CPU_SCRATCH_C, CPU_SCRATCH_DNNL, CPU_SCRATCH_NSLOTS };
void *cpu_scratch(int slot, size_t bytes);
size_t cpu_scratch_peak_bytes(void);
// weight_bf16.c: each linear weight rounded to bf16 once per change (oneDNN's engine). The copy of
// w [n] is made on first use and again after a write: every backend call that writes memory
// reports it (cpu_weights_written), free and alloc drop what the block held. Memory written
// behind the backend's back (a test's pointer) must be reported too. _clear drops every copy
// (set_precision); _bytes: the copies' total (scratch_peak counts it).
const uint16_t *cpu_weight_bf16(const float *w, size_t n);
void cpu_weights_written(const void *p, size_t bytes);
void cpu_weights_dropped(const void *p, size_t bytes);
void cpu_weights_freed(const void *p);
void cpu_weights_bf16_clear(void);
size_t cpu_weights_bf16_bytes(void);

// gemm_dnnl.c: bf16 GEMMs through oneDNN's matmul primitive (CPUs with AVX512_BF16 or AMX).
// C [M, N] (row-major, ldc) = op(A)·op(B) (+ C when accumulate), fp32 accumulation and output.
// op(A) is [M, K]: A stored [M, K] row-major (ta = 0) or [K, M] (ta = 1), lda its row stride;
// op(B) is [K, N]: B stored [K, N] (tb = 0) or [N, K] (tb = 1), ldb its row stride.
// cpu_dnnl_gemm_bf16 takes bf16 (uint16_t) A and B; cpu_dnnl_gemm_f32 the same with fp32
// operands (the same code and layouts, so its tests run on any CPU). Each returns 1 when it
// ran, 0 when oneDNN cannot here (built without oneDNN, or no primitive for this CPU).
int cpu_dnnl_gemm_bf16(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda, const uint16_t *B, int ldb,
                       int accumulate, float *C, int ldc);
int cpu_dnnl_gemm_f32(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      int accumulate, float *C, int ldc);
// 1 when oneDNN makes a bf16 matmul on this CPU (probed once); its one-line description
// ("oneDNN 2.6.3, bf16 matmul brg:avx512_core_amx" or why not) for the manifest.
int cpu_dnnl_bf16_ready(void);
const char *cpu_dnnl_describe(void);
// The same for an fp32 matmul ("oneDNN 2.6.3, fp32 matmul brg:avx512_core").
int cpu_dnnl_f32_ready(void);
const char *cpu_dnnl_describe_f32(void);
// sgemm.c: C = alpha·op(A)·op(B) + beta·C (cblas_sgemm's row-major contract; ta, tb 0 or 1) on the
// fp32 engine chosen once per process: oneDNN where OpenBLAS runs non-AVX-512 kernels on an
// AVX-512 CPU (it does not know the CPU), OpenBLAS otherwise; DCAL_CPU_SGEMM=openblas|onednn|auto.
void cpu_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc);
int cpu_sgemm_dnnl(void);
const char *cpu_sgemm_engine(void);   // which, and why, in one line
void cpu_sgemm_rechoose(void);         // tests: choose again at the next call (after setenv)
