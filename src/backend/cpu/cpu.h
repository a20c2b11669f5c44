// cpu.h: the CPU reference ops (fp32, OpenMP, OpenBLAS), one function per
// Backend slot, one op family per file named as in kernels/. backend_cpu.c
// assembles them into backend_cpu. Contracts: backend/backend.h.
#pragma once
#include "backend/backend.h"

// The CPU runs precision fp32 only, so its Act tensors are plain floats.
static inline const float *act_f32(const Act *p) { return (const float *)p; }

// linear.c, layernorm.c, elementwise.c, adamw.c
void cpu_im2col_forward(float *cols, const float *img, int B, int C, int S, int p);
void cpu_tokens_forward(float *x0, const float *pe, const float *cls, const float *pos, int B, int N, int D);
void cpu_tokens_backward(float *dpe, float *dcls, float *dpos, const float *dx0, int B, int N, int D);
void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                           int rows, int D, float eps);
void cpu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                            const float *mean, const float *rstd, int rows, int D);
void cpu_linear_forward(float *out, const float *inp, const float *w, const float *b, int rows, int IC, int OC);
void cpu_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                         int rows, int IC, int OC);
void cpu_gelu_forward(float *out, const Act *inp, size_t n);
void cpu_gelu_backward(float *dinp, const Act *inp, const float *dout, size_t n);
void cpu_residual_forward(float *out, const float *x, const float *f, const float *scale, int B, size_t n_per_b);
void cpu_residual_backward(float *dx, float *df, const float *dout, const float *scale, int B, size_t n_per_b);
void cpu_residual_layernorm_forward(float *h, float *out, float *mean, float *rstd, const float *x, const float *f,
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
void cpu_sumsq_into(double *out, const float *x, size_t n);

// vecmath.c: y = exp(x - shift), y = erf(x · scale) over n floats (y may be x), and what computes them.
void cpu_vexp(float *y, const float *x, float shift, size_t n);
void cpu_verf(float *y, const float *x, float scale, size_t n);
const char *cpu_vecmath_name(void);
int cpu_use_avx2(void);   // the CPU has AVX2 and FMA (asked once per process): the vector paths run

// attention.c, rollout.c
void cpu_attention_forward(const AttnArgs *a, float *out, float *lse);
void cpu_attention_backward(const AttnArgs *a, const AttnGrads *g, const float *out, const float *lse,
                            const float *dout);
void cpu_rollout_step_attn(const AttnArgs *a, const float *lse, float *r, float *tmp);
void cpu_topk_select(int *sel, const float *r, int B, int N, int K);
