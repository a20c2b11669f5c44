// ops_fused.c: op cases for the fused ops: residual + LayerNorm (the pre-norm block's
// h = x + s·f followed by LN2), forward and backward, against a float64 reference.
#include <math.h>
#include <stdlib.h>
#include "ops.h"

#define XF(i) ((float *)x[i])
#define YF(j) ((float *)y[j])

// ---- residual_layernorm: p = {B, rows per b, D, drop-path scale, mean offset}; eps 1e-6 ----
// Inputs x, f, scale, w, b; outputs h (upstream gradient: the skip path), out (through LN),
// mean, rstd. Scales cycle dropped (0), 1/keep_prob (1.25), kept (1), 1/0.9.
static const float kResLnScale[4] = {0.f, 1.25f, 1.f, 1.f / 0.9f};

static void rln_init(OpCase *c, Rng *r) {
    const int *p = c->row->p;
    int B = p[0], D = p[2];
    size_t rows = (size_t)B * p[1], n = rows * D;
    c->nx = 5, c->ny = 4;
    tensor_set(&c->x[0], "x", n, T_F32, 1);
    tensor_set(&c->x[1], "f", n, T_F32, 1);
    tensor_set(&c->x[2], "scale", p[3] ? B : 0, T_F32, 0);
    tensor_set(&c->x[3], "w", D, T_F32, 1);
    tensor_set(&c->x[4], "b", D, T_F32, 1);
    float *xs = fill_normal(&c->x[0], r, 1.f);
    for (size_t k = 0; k < n; k++) xs[k] += (float)p[4];   // a mean offset: two-pass variance
    fill_normal(&c->x[1], r, 1.f);
    float *s = fill_normal(&c->x[2], r, 0.f);
    for (size_t b = 0; b < c->x[2].n; b++) s[b] = kResLnScale[b % 4];
    fill_normal(&c->x[3], r, 1.f), fill_normal(&c->x[4], r, 1.f);
    tensor_set(&c->y[0], "h", n, T_F32, 1);
    tensor_set(&c->y[1], "out", n, T_ACT, 1);   // a GEMM's input (fc1's)
    tensor_set(&c->y[2], "mean", rows, T_F32, 0);
    tensor_set(&c->y[3], "rstd", rows, T_F32, 0);
    make_gy(c, 0, r, 1.f), make_gy(c, 1, r, 1.f);
}

static double rln_scale(const OpCase *c, double *const *x, size_t row) {
    return x[2] ? x[2][row / (size_t)c->row->p[1]] : 1.0;
}

static void rln_stats(const double *h, int D, double *m, double *rs) {
    double s = 0, v = 0;
    for (int i = 0; i < D; i++) s += h[i];
    *m = s / D;
    for (int i = 0; i < D; i++) v += (h[i] - *m) * (h[i] - *m);
    *rs = 1 / sqrt(v / D + 1e-6);
}

static void rln_ref(const OpCase *c, double *const *x, double *const *y) {
    int D = c->row->p[2];
    size_t rows = (size_t)c->row->p[0] * c->row->p[1];
    for (size_t r = 0; r < rows; r++) {
        double s = rln_scale(c, x, r), *h = y[0] + r * D;
        for (int i = 0; i < D; i++) h[i] = x[0][r * D + i] + s * x[1][r * D + i];
        rln_stats(h, D, &y[2][r], &y[3][r]);
        for (int i = 0; i < D; i++) y[1][r * D + i] = (h[i] - y[2][r]) * y[3][r] * x[3][i] + x[4][i];
    }
}

// dh = gh + rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = gout·w; dx = dh, df = s·dh; dw = Σ gout·x̂, db = Σ gout.
static void rln_ref_bwd(const OpCase *c, double *const *x, double *const *gy, double *const *gx) {
    int D = c->row->p[2];
    size_t rows = (size_t)c->row->p[0] * c->row->p[1];
    double *h = tz(D, sizeof(double));
    for (size_t r = 0; r < rows; r++) {
        double s = rln_scale(c, x, r), m, rs, a = 0, b = 0;
        const double *g = gy[1] + r * D;
        for (int i = 0; i < D; i++) h[i] = x[0][r * D + i] + s * x[1][r * D + i];
        rln_stats(h, D, &m, &rs);
        for (int i = 0; i < D; i++) a += g[i] * x[3][i], b += g[i] * x[3][i] * (h[i] - m) * rs;
        for (int i = 0; i < D; i++) {
            double xh = (h[i] - m) * rs, dh = gy[0][r * D + i] + rs * (g[i] * x[3][i] - a / D - xh * b / D);
            gx[0][r * D + i] += dh;
            gx[1][r * D + i] += s * dh;
            gx[3][i] += g[i] * xh;
            gx[4][i] += g[i];
        }
    }
    free(h);
}

static void rln_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    const int *p = c->row->p;
    be->residual_layernorm_forward(YF(0), (Act *)y[1], YF(2), YF(3), XF(0), XF(1), c->x[2].n ? XF(2) : NULL, XF(3),
                                   XF(4), p[0], p[1], p[2], 1e-6f);
}
// Partial: dx and dw NULL (df and db still written).
static void rln_be_bwd(const Backend *be, const OpCase *c, void *const *x, void *const *y, float *const *gy,
                       float *const *gx) {
    const int *p = c->row->p;
    int pt = c->partial;
    be->residual_layernorm_backward(pt ? NULL : gx[0], gx[1], pt ? NULL : gx[3], gx[4], gy[0], gy[1], YF(0), XF(3),
                                    YF(2), YF(3), c->x[2].n ? XF(2) : NULL, p[0], p[1], p[2]);
}
static int rln_keeps(const OpCase *c, int i, size_t k) { return (void)c, (void)k, i != 0 && i != 3; }
const OpDef OP_RESIDUAL_LAYERNORM = {"residual_layernorm", rln_init, rln_ref, rln_ref_bwd,
                                     rln_be, rln_be_bwd, rln_keeps, 1, NULL};   // Act output
