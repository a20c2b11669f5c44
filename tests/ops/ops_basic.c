// ops_basic.c: op cases for memory, im2col, tokens, layernorm, linear, gelu,
// residual and gather_rows: shapes, float64 references (forward and analytic
// gradient) and the backend calls. Row parameters p[] are listed per op.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops.h"

#define XF(i) ((float *)x[i])
#define XA(i) ((const Act *)x[i])
#define YF(j) ((float *)y[j])
#define HI(i) ((const int *)c->x[i].h)

// ---- memory: p = {n}. alloc is zero-filled; to_device, copy, zero, to_host ----------
static void mem_init(OpCase *c, Rng *r) {
    size_t n = c->row->p[0];
    c->nx = 1, c->ny = 3;
    tensor_set(&c->x[0], "h", n, T_F32, 0);
    fill_normal(&c->x[0], r, 1.f);
    tensor_set(&c->y[0], "fresh alloc", n, T_F32, 0);
    tensor_set(&c->y[1], "copy", n, T_F32, 0);
    tensor_set(&c->y[2], "zeroed", n, T_F32, 0);
}
static void mem_ref(const OpCase *c, double *const *x, double *const *y) {
    for (size_t k = 0; k < c->x[0].n; k++) y[0][k] = 0, y[1][k] = x[0][k], y[2][k] = 0;
}
static void mem_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    size_t b = c->x[0].n * sizeof(float);
    void *p = be->alloc(b);
    be->copy(y[0], p, b);
    be->copy(p, x[0], b);
    be->copy(y[1], p, b);
    be->zero(p, b);
    be->copy(y[2], p, b);
    be->sync();
    be->free(p);
}
const OpDef OP_MEMORY = {"memory", mem_init, mem_ref, NULL, mem_be, NULL, NULL, 0, NULL};

// ---- im2col: p = {B, C, S, patch} -----------------------------------------------
static void im2col_init(OpCase *c, Rng *r) {
    const int *p = c->row->p, g = p[2] / p[3];
    c->nx = 1, c->ny = 1;
    tensor_set(&c->x[0], "img", (size_t)p[0] * p[1] * p[2] * p[2], T_F32, 0);
    fill_normal(&c->x[0], r, 1.f);
    tensor_set(&c->y[0], "cols", (size_t)p[0] * g * g * p[1] * p[3] * p[3], T_ACT, 0);   // the patch GEMM's input
}
// cols [B*P, C*p*p], column order (c, ky, kx): cols·Wᵀ is the stride-p conv with W [D, C, p, p].
static void im2col_ref(const OpCase *c, double *const *x, double *const *y) {
    int B = c->row->p[0], C = c->row->p[1], S = c->row->p[2], p = c->row->p[3], g = S / p, K = C * p * p;
    for (int b = 0; b < B; b++)
        for (int py = 0; py < g; py++)
            for (int px = 0; px < g; px++)
                for (int ch = 0; ch < C; ch++)
                    for (int ky = 0; ky < p; ky++)
                        for (int kx = 0; kx < p; kx++)
                            y[0][((size_t)b * g * g + py * g + px) * K + (ch * p + ky) * p + kx] =
                                x[0][(((size_t)b * C + ch) * S + py * p + ky) * S + px * p + kx];
}
static void im2col_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    const int *p = c->row->p;
    be->im2col_forward((Act *)y[0], XF(0), p[0], p[1], p[2], p[3]);
}
const OpDef OP_IM2COL = {"im2col", im2col_init, im2col_ref, NULL, im2col_be, NULL, NULL, 1, NULL};   // Act output

// ---- tokens: p = {B, N, D} -------------------------------------------------------
static void tokens_init(OpCase *c, Rng *r) {
    int B = c->row->p[0], N = c->row->p[1], D = c->row->p[2];
    c->nx = 3, c->ny = 1;
    tensor_set(&c->x[0], "pe", (size_t)B * (N - 1) * D, T_F32, 1);
    tensor_set(&c->x[1], "cls", D, T_F32, 1);
    tensor_set(&c->x[2], "pos", (size_t)N * D, T_F32, 1);
    for (int i = 0; i < 3; i++) fill_normal(&c->x[i], r, 1.f);
    c->x[0].exact = 1;   // dpe is dx0 without the CLS row
    tensor_set(&c->y[0], "x0", (size_t)B * N * D, T_F32, 1);
    make_gy(c, 0, r, 1.f);
}
static void tokens_ref(const OpCase *c, double *const *x, double *const *y) {
    int B = c->row->p[0], N = c->row->p[1], D = c->row->p[2];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < N; t++)
            for (int d = 0; d < D; d++)
                y[0][((size_t)b * N + t) * D + d] =
                    (t == 0 ? x[1][d] : x[0][((size_t)b * (N - 1) + t - 1) * D + d]) + x[2][(size_t)t * D + d];
}
static void tokens_ref_bwd(const OpCase *c, double *const *x, double *const *gy, double *const *gx) {
    int B = c->row->p[0], N = c->row->p[1], D = c->row->p[2];
    (void)x;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < N; t++)
            for (int d = 0; d < D; d++) {
                double g = gy[0][((size_t)b * N + t) * D + d];
                if (t == 0) gx[1][d] += g;
                else gx[0][((size_t)b * (N - 1) + t - 1) * D + d] += g;
                gx[2][(size_t)t * D + d] += g;
            }
}
static void tokens_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    const int *p = c->row->p;
    be->tokens_forward(YF(0), XF(0), XF(1), XF(2), p[0], p[1], p[2]);
}
static void tokens_be_bwd(const Backend *be, const OpCase *c, void *const *x, void *const *y, float *const *gy,
                          float *const *gx) {
    const int *p = c->row->p;
    (void)x, (void)y;
    be->tokens_backward(gx[0], gx[1], gx[2], gy[0], p[0], p[1], p[2]);
}
const OpDef OP_TOKENS = {"tokens", tokens_init, tokens_ref, tokens_ref_bwd, tokens_be, tokens_be_bwd, NULL, 0, NULL};

// ---- layernorm: p = {rows, D, mean offset}; eps 1e-6 --------------------------------
static void ln_init(OpCase *c, Rng *r) {
    int rows = c->row->p[0], D = c->row->p[1];
    c->nx = 3, c->ny = 3;
    tensor_set(&c->x[0], "inp", (size_t)rows * D, T_F32, 1);
    tensor_set(&c->x[1], "w", D, T_F32, 1);
    tensor_set(&c->x[2], "b", D, T_F32, 1);
    float *inp = fill_normal(&c->x[0], r, 2.f);
    for (size_t k = 0; k < c->x[0].n; k++) inp[k] += (float)c->row->p[2];   // a mean offset: two-pass variance
    fill_normal(&c->x[1], r, 1.f), fill_normal(&c->x[2], r, 1.f);
    tensor_set(&c->y[0], "out", (size_t)rows * D, T_ACT, 1);   // a GEMM's input
    tensor_set(&c->y[1], "mean", rows, T_F32, 0);
    tensor_set(&c->y[2], "rstd", rows, T_F32, 0);
    make_gy(c, 0, r, 1.f);
}
static void ln_stats(const double *x, int D, double *m, double *rs) {
    double s = 0, v = 0;
    for (int i = 0; i < D; i++) s += x[i];
    *m = s / D;
    for (int i = 0; i < D; i++) v += (x[i] - *m) * (x[i] - *m);
    *rs = 1 / sqrt(v / D + 1e-6);
}
static void ln_ref(const OpCase *c, double *const *x, double *const *y) {
    int rows = c->row->p[0], D = c->row->p[1];
    for (int r = 0; r < rows; r++) {
        const double *xr = x[0] + (size_t)r * D;
        ln_stats(xr, D, &y[1][r], &y[2][r]);
        for (int i = 0; i < D; i++) y[0][(size_t)r * D + i] = (xr[i] - y[1][r]) * y[2][r] * x[1][i] + x[2][i];
    }
}
// dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = g·w; dw = Σ g·x̂; db = Σ g.
static void ln_ref_bwd(const OpCase *c, double *const *x, double *const *gy, double *const *gx) {
    int rows = c->row->p[0], D = c->row->p[1];
    for (int r = 0; r < rows; r++) {
        const double *xr = x[0] + (size_t)r * D, *g = gy[0] + (size_t)r * D;
        double m, rs, a = 0, b = 0;
        ln_stats(xr, D, &m, &rs);
        for (int i = 0; i < D; i++) a += g[i] * x[1][i], b += g[i] * x[1][i] * (xr[i] - m) * rs;
        for (int i = 0; i < D; i++) {
            double xh = (xr[i] - m) * rs;
            gx[0][(size_t)r * D + i] += rs * (g[i] * x[1][i] - a / D - xh * b / D);
            gx[1][i] += g[i] * xh;
            gx[2][i] += g[i];
        }
    }
}
static void ln_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    be->layernorm_forward((Act *)y[0], YF(1), YF(2), XF(0), XF(1), XF(2), c->row->p[0], c->row->p[1], 1e-6f);
}
static void ln_be_bwd(const Backend *be, const OpCase *c, void *const *x, void *const *y, float *const *gy,
                      float *const *gx) {
    be->layernorm_backward(c->partial ? NULL : gx[0], gx[1], gx[2], gy[0], XF(0), XF(1), YF(1), YF(2),
                           c->row->p[0], c->row->p[1]);
}
static int ln_keeps(const OpCase *c, int i, size_t k) { return (void)c, (void)k, i != 0; }
const OpDef OP_LAYERNORM = {"layernorm", ln_init, ln_ref, ln_ref_bwd, ln_be, ln_be_bwd, ln_keeps, 1,
                             NULL};   // Act output

// ---- linear: p = {rows, IC, OC, bias, weight scale in 1/100} -------------------------
static void lin_init(OpCase *c, Rng *r) {
    int rows = c->row->p[0], IC = c->row->p[1], OC = c->row->p[2];
    c->nx = 3, c->ny = 1;
    tensor_set(&c->x[0], "inp", (size_t)rows * IC, T_ACT, 1);   // an activation: LayerNorm's, GELU's, ...
    tensor_set(&c->x[1], "w", (size_t)OC * IC, T_F32, 1);
    tensor_set(&c->x[2], "b", c->row->p[3] ? OC : 0, T_F32, 1);
    c->x[2].cap = 1e-4;   // db is a plain fp32 column sum even where the GEMM takes bf16 operands
    fill_normal(&c->x[0], r, 1.f), fill_normal(&c->x[1], r, c->row->p[4] / 100.f), fill_normal(&c->x[2], r, 1.f);
    tensor_set(&c->y[0], "out", (size_t)rows * OC, T_F32, 1);
    make_gy(c, 0, r, 1.f);
}
static void lin_ref(const OpCase *c, double *const *x, double *const *y) {
    int rows = c->row->p[0], IC = c->row->p[1], OC = c->row->p[2];
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < OC; o++) {
            double s = x[2] ? x[2][o] : 0;
            for (int i = 0; i < IC; i++) s += x[0][(size_t)r * IC + i] * x[1][(size_t)o * IC + i];
            y[0][(size_t)r * OC + o] = s;
        }
}
static void lin_ref_bwd(const OpCase *c, double *const *x, double *const *gy, double *const *gx) {
    int rows = c->row->p[0], IC = c->row->p[1], OC = c->row->p[2];
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < OC; o++) {
            double g = gy[0][(size_t)r * OC + o];
            if (gx[2]) gx[2][o] += g;
            for (int i = 0; i < IC; i++) {
                gx[0][(size_t)r * IC + i] += g * x[1][(size_t)o * IC + i];
                gx[1][(size_t)o * IC + i] += g * x[0][(size_t)r * IC + i];
            }
        }
}
static void lin_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    be->linear_forward(YF(0), XA(0), XF(1), c->x[2].n ? XF(2) : NULL, c->row->p[0], c->row->p[1], c->row->p[2]);
}
// Partial: only db (with a bias), else only dw. op: linear_backward or linear_backward_set.
typedef void (*LinBwd)(float *, float *, float *, const float *, const Act *, const float *, int, int, int);
static void lin_bwd_with(LinBwd op, const OpCase *c, void *const *x, float *const *gy, float *const *gx) {
    int bias = c->x[2].n > 0, pt = c->partial;
    op(pt ? NULL : gx[0], pt && bias ? NULL : gx[1], bias ? gx[2] : NULL, gy[0], XA(0), XF(1), c->row->p[0],
       c->row->p[1], c->row->p[2]);
}
static void lin_be_bwd(const Backend *be, const OpCase *c, void *const *x, void *const *y, float *const *gy,
                       float *const *gx) {
    (void)y;
    lin_bwd_with(be->linear_backward, c, x, gy, gx);
}
static int lin_keeps(const OpCase *c, int i, size_t k) { return (void)k, i == (c->x[2].n ? 2 : 1); }
const OpDef OP_LINEAR = {"linear", lin_init, lin_ref, lin_ref_bwd, lin_be, lin_be_bwd, lin_keeps, 1, NULL};

// ---- linear_backward_set: linear's backward with dinp written, not accumulated (the model's
// first writer of a gradient buffer, which then needs no zeroing); dw and db still accumulate.
static void lin_set_be_bwd(const Backend *be, const OpCase *c, void *const *x, void *const *y, float *const *gy,
                           float *const *gx) {
    (void)y;
    lin_bwd_with(be->linear_backward_set, c, x, gy, gx);
}
static int lin_set_writes(const OpCase *c, int i) { return (void)c, i == 0; }
const OpDef OP_LINEAR_SET = {"linear_backward_set", lin_init, lin_ref, lin_ref_bwd, lin_be, lin_set_be_bwd,
                             lin_keeps, 1, lin_set_writes};

// ---- linear_forward_act: linear's rows with the output stored as Act (forward only: the
// model's gradient through such an output is linear_backward's, checked above).
static void lin_act_init(OpCase *c, Rng *r) {
    lin_init(c, r);
    c->y[0].type = T_ACT;
    c->y[0].diff = 0;
    free(c->gy[0]);
    c->gy[0] = NULL;
}
static void lin_act_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    be->linear_forward_act(y[0], XA(0), XF(1), c->x[2].n ? XF(2) : NULL, c->row->p[0], c->row->p[1], c->row->p[2]);
}
const OpDef OP_LINEAR_ACT = {"linear_forward_act", lin_act_init, lin_ref, NULL, lin_act_be, NULL, NULL, 1, NULL};

// ---- gelu (exact, erf): p = {n, input scale} ------------------------------------------
static void gelu_init(OpCase *c, Rng *r) {
    c->nx = 1, c->ny = 1;
    tensor_set(&c->x[0], "inp", c->row->p[0], T_ACT, 1);   // fc1's stored output
    fill_normal(&c->x[0], r, (float)c->row->p[1]);
    tensor_set(&c->y[0], "out", c->row->p[0], T_ACT, 1);   // fc2's input
    make_gy(c, 0, r, 1.f);
}
static void gelu_ref(const OpCase *c, double *const *x, double *const *y) {
    for (size_t k = 0; k < c->x[0].n; k++) y[0][k] = 0.5 * x[0][k] * (1 + erf(x[0][k] / sqrt(2.0)));
}
static void gelu_ref_bwd(const OpCase *c, double *const *x, double *const *gy, double *const *gx) {
    for (size_t k = 0; k < c->x[0].n; k++) {
        double u = x[0][k];
        gx[0][k] += gy[0][k] * (0.5 * (1 + erf(u / sqrt(2.0))) + u * exp(-0.5 * u * u) / sqrt(2 * M_PI));
    }
}
static void gelu_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    be->gelu_forward((Act *)y[0], XA(0), c->x[0].n);
}
static void gelu_be_bwd(const Backend *be, const OpCase *c, void *const *x, void *const *y, float *const *gy,
                        float *const *gx) {
    (void)y;
    be->gelu_backward(gx[0], XA(0), gy[0], c->x[0].n);
}
const OpDef OP_GELU = {"gelu", gelu_init, gelu_ref, gelu_ref_bwd, gelu_be, gelu_be_bwd, NULL, 1, NULL};

// ---- gelu_backward_set: the same gradient written, not accumulated (as linear_backward_set).
static void gelu_set_be_bwd(const Backend *be, const OpCase *c, void *const *x, void *const *y, float *const *gy,
                            float *const *gx) {
    (void)y;
    be->gelu_backward_set(gx[0], XA(0), gy[0], c->x[0].n);
}
static int gelu_set_writes(const OpCase *c, int i) { return (void)c, i == 0; }
const OpDef OP_GELU_SET = {"gelu_backward_set", gelu_init, gelu_ref, gelu_ref_bwd, gelu_be, gelu_set_be_bwd,
                           NULL, 1, gelu_set_writes};

// ---- residual: p = {B, n_per_b, with drop-path scale} --------------------------------
static const float kScale[4] = {0.f, 1.25f, 1.f, 1.f / 0.9f};   // dropped, 1/keep_prob, kept

static void res_init(OpCase *c, Rng *r) {
    int B = c->row->p[0];
    size_t n = (size_t)B * c->row->p[1];
    c->nx = 3, c->ny = 1;
    tensor_set(&c->x[0], "x", n, T_F32, 1);
    tensor_set(&c->x[1], "f", n, T_F32, 1);
    tensor_set(&c->x[2], "scale", c->row->p[2] ? B : 0, T_F32, 0);
    c->x[0].exact = 1;   // dx is dout
    fill_normal(&c->x[0], r, 1.f), fill_normal(&c->x[1], r, 1.f);
    float *s = fill_normal(&c->x[2], r, 0.f);
    for (size_t b = 0; b < c->x[2].n; b++) s[b] = kScale[b % 4];
    tensor_set(&c->y[0], "out", n, T_F32, 1);
    make_gy(c, 0, r, 1.f);
}
static double res_scale(const OpCase *c, double *const *x, size_t k) {
    return x[2] ? x[2][k / (size_t)c->row->p[1]] : 1.0;
}
static void res_ref(const OpCase *c, double *const *x, double *const *y) {
    for (size_t k = 0; k < c->x[0].n; k++) y[0][k] = x[0][k] + res_scale(c, x, k) * x[1][k];
}
static void res_ref_bwd(const OpCase *c, double *const *x, double *const *gy, double *const *gx) {
    for (size_t k = 0; k < c->x[0].n; k++) gx[0][k] += gy[0][k], gx[1][k] += res_scale(c, x, k) * gy[0][k];
}
static void res_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    be->residual_forward(YF(0), XF(0), XF(1), c->x[2].n ? XF(2) : NULL, c->row->p[0], c->row->p[1]);
}
static void res_be_bwd(const Backend *be, const OpCase *c, void *const *x, void *const *y, float *const *gy,
                       float *const *gx) {
    (void)y;
    be->residual_backward(c->partial ? NULL : gx[0], gx[1], gy[0], c->x[2].n ? XF(2) : NULL, c->row->p[0],
                          c->row->p[1]);
}
static int res_keeps(const OpCase *c, int i, size_t k) { return (void)c, (void)k, i == 1; }
const OpDef OP_RESIDUAL = {"residual", res_init, res_ref, res_ref_bwd, res_be, res_be_bwd, res_keeps, 0, NULL};

// ---- gather_rows: p = {B, Nin, Nout, D}; distinct rows per b, as the GLCA selection --
static void gather_init(OpCase *c, Rng *r) {
    int B = c->row->p[0], Nin = c->row->p[1], Nout = c->row->p[2], D = c->row->p[3];
    c->nx = 2, c->ny = 1;
    tensor_set(&c->x[0], "inp", (size_t)B * Nin * D, T_F32, 1);
    tensor_set(&c->x[1], "idx", (size_t)B * Nout, T_I32, 0);
    fill_normal(&c->x[0], r, 1.f);
    int *idx = fill_int(&c->x[1]), *perm = tz(Nin, sizeof(int));
    for (int b = 0; b < B; b++) {   // the first Nout of a random permutation
        for (int i = 0; i < Nin; i++) perm[i] = i;
        for (int i = Nin - 1; i > 0; i--) {
            int j = (int)rng_below(r, (uint32_t)i + 1), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        memcpy(idx + (size_t)b * Nout, perm, Nout * sizeof(int));
    }
    free(perm);
    tensor_set(&c->y[0], "out", (size_t)B * Nout * D, T_F32, 1);
    make_gy(c, 0, r, 1.f);
}
static void gather_ref(const OpCase *c, double *const *x, double *const *y) {
    int B = c->row->p[0], Nin = c->row->p[1], Nout = c->row->p[2], D = c->row->p[3];
    for (int b = 0; b < B; b++)
        for (int j = 0; j < Nout; j++)
            memcpy(y[0] + ((size_t)b * Nout + j) * D, x[0] + ((size_t)b * Nin + HI(1)[b * Nout + j]) * D,
                   D * sizeof(double));
}
static void gather_ref_bwd(const OpCase *c, double *const *x, double *const *gy, double *const *gx) {
    int B = c->row->p[0], Nin = c->row->p[1], Nout = c->row->p[2], D = c->row->p[3];
    (void)x;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < Nout; j++)
            for (int d = 0; d < D; d++)
                gx[0][((size_t)b * Nin + HI(1)[b * Nout + j]) * D + d] += gy[0][((size_t)b * Nout + j) * D + d];
}
static void gather_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    const int *p = c->row->p;
    be->gather_rows_forward(YF(0), XF(0), (const int *)x[1], p[0], p[1], p[2], p[3]);
}
static void gather_be_bwd(const Backend *be, const OpCase *c, void *const *x, void *const *y, float *const *gy,
                          float *const *gx) {
    const int *p = c->row->p;
    (void)y;
    be->gather_rows_backward(gx[0], gy[0], (const int *)x[1], p[0], p[1], p[2], p[3]);
}
const OpDef OP_GATHER = {"gather_rows", gather_init, gather_ref, gather_ref_bwd, gather_be, gather_be_bwd, NULL, 0,
                          NULL};
