// gradcheck_ops.c: every CPU op against a float64 reference written here
// from the definition (forward), and its backward against central finite
// differences of that float64 reference (eps 1e-6, so truncation and
// roundoff are ~1e-9 and the fp32 op's own error dominates).
// Tolerances: forward max relative error < 1e-5; gradients < 1e-4 per tensor
// (fp32 backward vs exact float64 derivative; measured errors are ~1e-6).
#include <math.h>
#include <omp.h>
#include <string.h>
#include <stdlib.h>
#include "core/common.h"
#include "backend/cpu/cpu.h"
#include "core/rng.h"
#include "testutil.h"

#define FWD_TOL 1e-5
#define GRAD_TOL 1e-4

static Rng rng;
static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(&rng) * scale;
}
static double *to_d(const float *x, size_t n) {
    double *d = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

// A float64 function of one input tensor x (others fixed in ctx), returning Σ G·f(x).
typedef double (*ObjFn)(void *ctx, const double *x);

// Central differences of obj at x (float64), for every element.
static double *fd_grad(ObjFn obj, void *ctx, const double *x0, size_t n) {
    double *x = xmalloc(n * sizeof(double)), *g = xmalloc(n * sizeof(double));
    memcpy(x, x0, n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double h = 1e-6 * fmax(1.0, fabs(x0[i]));
        x[i] = x0[i] + h;
        double fp = obj(ctx, x);
        x[i] = x0[i] - h;
        double fm = obj(ctx, x);
        x[i] = x0[i];
        g[i] = (fp - fm) / (2 * h);
    }
    free(x);
    return g;
}

static void expect_close(const char *what, const float *got, const double *want, size_t n, double tol) {
    double e = rel_err(got, want, n, 1e-6);
    ck_assert_msg(e < tol, "%s: relative error %.3g >= %.3g", what, e, tol);
}

// ---- LayerNorm ---------------------------------------------------------------
typedef struct { int rows, D; double *x, *w, *b, *G; int which; } LnCtx;
static void ln_ref(const LnCtx *c, const double *x, const double *w, const double *b, double *out) {
    for (int r = 0; r < c->rows; r++) {
        double m = 0, v = 0;
        for (int i = 0; i < c->D; i++) m += x[r * c->D + i];
        m /= c->D;
        for (int i = 0; i < c->D; i++) v += (x[r * c->D + i] - m) * (x[r * c->D + i] - m);
        v /= c->D;
        for (int i = 0; i < c->D; i++) out[r * c->D + i] = (x[r * c->D + i] - m) / sqrt(v + 1e-6) * w[i] + b[i];
    }
}
static double ln_obj(void *vc, const double *p) {
    LnCtx *c = vc;
    int n = c->rows * c->D;
    double *out = xmalloc(n * sizeof(double)), s = 0;
    ln_ref(c, c->which == 0 ? p : c->x, c->which == 1 ? p : c->w, c->which == 2 ? p : c->b, out);
    for (int i = 0; i < n; i++) s += c->G[i] * out[i];
    free(out);
    return s;
}
START_TEST(test_layernorm) {
    int rows = 5, D = 12, n = rows * D;
    float x[60], w[12], b[12], G[60], out[60], mean[5], rstd[5], dx[60] = {0}, dw[12] = {0}, db[12] = {0};
    fill(x, n, 2.0f);
    for (int i = 0; i < n; i++) x[i] += 3.0f;   // a non-zero mean
    fill(w, D, 1.0f);
    fill(b, D, 1.0f);
    fill(G, n, 1.0f);
    cpu_layernorm_forward(out, mean, rstd, x, w, b, rows, D, 1e-6f);
    LnCtx c = {rows, D, to_d(x, n), to_d(w, D), to_d(b, D), to_d(G, n), 0};
    double ref[60];
    ln_ref(&c, c.x, c.w, c.b, ref);
    expect_close("layernorm forward", out, ref, n, FWD_TOL);
    // Accumulation contract: start from 1, subtract it afterwards.
    for (int i = 0; i < n; i++) dx[i] = 1.0f;
    cpu_layernorm_backward(dx, dw, db, G, x, w, mean, rstd, rows, D);
    for (int i = 0; i < n; i++) dx[i] -= 1.0f;
    double *g;
    c.which = 0; g = fd_grad(ln_obj, &c, c.x, n); expect_close("layernorm dx", dx, g, n, GRAD_TOL); free(g);
    c.which = 1; g = fd_grad(ln_obj, &c, c.w, D); expect_close("layernorm dw", dw, g, D, GRAD_TOL); free(g);
    c.which = 2; g = fd_grad(ln_obj, &c, c.b, D); expect_close("layernorm db", db, g, D, GRAD_TOL); free(g);
    free(c.x); free(c.w); free(c.b); free(c.G);
}
END_TEST

// ---- Linear ------------------------------------------------------------------
typedef struct { int rows, IC, OC; double *x, *w, *b, *G; int which; } LinCtx;
static double lin_obj(void *vc, const double *p) {
    LinCtx *c = vc;
    const double *x = c->which == 0 ? p : c->x, *w = c->which == 1 ? p : c->w, *b = c->which == 2 ? p : c->b;
    double s = 0;
    for (int r = 0; r < c->rows; r++)
        for (int o = 0; o < c->OC; o++) {
            double y = b[o];
            for (int i = 0; i < c->IC; i++) y += x[r * c->IC + i] * w[o * c->IC + i];
            s += c->G[r * c->OC + o] * y;
        }
    return s;
}
START_TEST(test_linear) {
    enum { R = 6, IC = 7, OC = 5 };
    float x[R * IC], w[OC * IC], b[OC], G[R * OC], out[R * OC], dx[R * IC] = {0}, dw[OC * IC] = {0}, db[OC] = {0};
    fill(x, R * IC, 1); fill(w, OC * IC, 1); fill(b, OC, 1); fill(G, R * OC, 1);
    cpu_linear_forward(out, x, w, b, R, IC, OC);
    LinCtx c = {R, IC, OC, to_d(x, R * IC), to_d(w, OC * IC), to_d(b, OC), to_d(G, R * OC), 0};
    double ref[R * OC];
    for (int r = 0; r < R; r++)
        for (int o = 0; o < OC; o++) {
            ref[r * OC + o] = b[o];
            for (int i = 0; i < IC; i++) ref[r * OC + o] += (double)x[r * IC + i] * w[o * IC + i];
        }
    expect_close("linear forward", out, ref, R * OC, FWD_TOL);
    cpu_linear_backward(dx, dw, db, G, x, w, R, IC, OC);
    cpu_linear_backward(dx, dw, db, G, x, w, R, IC, OC);   // accumulates: twice the gradient
    for (int i = 0; i < R * IC; i++) dx[i] *= 0.5f;
    for (int i = 0; i < OC * IC; i++) dw[i] *= 0.5f;
    for (int i = 0; i < OC; i++) db[i] *= 0.5f;
    double *g;
    c.which = 0; g = fd_grad(lin_obj, &c, c.x, R * IC); expect_close("linear dx", dx, g, R * IC, GRAD_TOL); free(g);
    c.which = 1; g = fd_grad(lin_obj, &c, c.w, OC * IC); expect_close("linear dw", dw, g, OC * IC, GRAD_TOL); free(g);
    c.which = 2; g = fd_grad(lin_obj, &c, c.b, OC); expect_close("linear db", db, g, OC, GRAD_TOL); free(g);
    free(c.x); free(c.w); free(c.b); free(c.G);
}
END_TEST

// ---- GELU, residual, gather, tokens, im2col ------------------------------------
typedef struct { double *G; size_t n; } GeluCtx;
static double gelu_obj(void *vc, const double *x) {
    GeluCtx *c = vc;
    double s = 0;
    for (size_t i = 0; i < c->n; i++) s += c->G[i] * 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0)));
    return s;
}
START_TEST(test_gelu) {
    enum { n = 64 };
    float x[n], G[n], out[n], dx[n] = {0};
    fill(x, n, 2); fill(G, n, 1);
    cpu_gelu_forward(out, x, n);
    double ref[n];
    for (int i = 0; i < n; i++) ref[i] = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0)));
    expect_close("gelu forward", out, ref, n, FWD_TOL);
    cpu_gelu_backward(dx, x, G, n);
    GeluCtx c = {to_d(G, n), n};
    double *xd = to_d(x, n), *g = fd_grad(gelu_obj, &c, xd, n);
    expect_close("gelu dx", dx, g, n, GRAD_TOL);
    free(g); free(xd); free(c.G);
}
END_TEST

START_TEST(test_residual_droppath) {
    enum { B = 3, n = 10 };
    float x[B * n], f[B * n], out[B * n], scale[B] = {0.0f, 1.25f, 1.0f}, G[B * n], dx[B * n] = {0}, df[B * n] = {0};
    fill(x, B * n, 1); fill(f, B * n, 1); fill(G, B * n, 1);
    cpu_residual_forward(out, x, f, scale, B, n);
    cpu_residual_backward(dx, df, G, scale, B, n);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++) {
            int k = b * n + i;
            ck_assert_float_eq_tol(out[k], x[k] + scale[b] * f[k], 1e-6f);
            ck_assert_float_eq(dx[k], G[k]);
            ck_assert_float_eq_tol(df[k], scale[b] * G[k], 1e-6f);   // a dropped sample gets no gradient
        }
}
END_TEST

START_TEST(test_gather_rows) {
    enum { B = 2, Nin = 5, Nout = 3, D = 4 };
    float in[B * Nin * D], out[B * Nout * D], G[B * Nout * D], din[B * Nin * D] = {0};
    int idx[B * Nout] = {0, 2, 4, 1, 3, 4};
    fill(in, B * Nin * D, 1); fill(G, B * Nout * D, 1);
    cpu_gather_rows_forward(out, in, idx, B, Nin, Nout, D);
    cpu_gather_rows_backward(din, G, idx, B, Nin, Nout, D);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < Nout; j++)
            for (int d = 0; d < D; d++) {
                ck_assert_float_eq(out[(b * Nout + j) * D + d], in[(b * Nin + idx[b * Nout + j]) * D + d]);
                ck_assert_float_eq(din[(b * Nin + idx[b * Nout + j]) * D + d], G[(b * Nout + j) * D + d]);
            }
    ck_assert_float_eq(din[(0 * Nin + 1) * D], 0.0f);   // row 1 of batch 0 was not gathered
}
END_TEST

START_TEST(test_tokens) {
    enum { B = 2, N = 4, D = 3 };
    float pe[B * (N - 1) * D], cls[D], pos[N * D], x0[B * N * D], G[B * N * D];
    float dpe[B * (N - 1) * D] = {0}, dcls[D] = {0}, dpos[N * D] = {0};
    fill(pe, B * (N - 1) * D, 1); fill(cls, D, 1); fill(pos, N * D, 1); fill(G, B * N * D, 1);
    cpu_tokens_forward(x0, pe, cls, pos, B, N, D);
    cpu_tokens_backward(dpe, dcls, dpos, G, B, N, D);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < N; t++)
            for (int d = 0; d < D; d++) {
                float src = t == 0 ? cls[d] : pe[(b * (N - 1) + t - 1) * D + d];
                ck_assert_float_eq_tol(x0[(b * N + t) * D + d], src + pos[t * D + d], 1e-6f);
                if (t > 0) ck_assert_float_eq(dpe[(b * (N - 1) + t - 1) * D + d], G[(b * N + t) * D + d]);
            }
    for (int t = 0; t < N; t++)
        for (int d = 0; d < D; d++) ck_assert_float_eq_tol(dpos[t * D + d], G[t * D + d] + G[(N + t) * D + d], 1e-6f);
    for (int d = 0; d < D; d++) ck_assert_float_eq_tol(dcls[d], G[d] + G[N * D + d], 1e-6f);
}
END_TEST

START_TEST(test_im2col_is_conv) {
    // Patch embedding as GEMM must equal a stride-p convolution with weight [D, C, p, p].
    enum { B = 2, C = 3, S = 8, p = 4, D = 5, g = S / p, P = g * g, K = C * p * p };
    float img[B * C * S * S], w[D * K], bias[D], cols[B * P * K], out[B * P * D];
    fill(img, B * C * S * S, 1); fill(w, D * K, 1); fill(bias, D, 1);
    cpu_im2col_forward(cols, img, B, C, S, p);
    cpu_linear_forward(out, cols, w, bias, B * P, K, D);
    double ref[B * P * D];
    for (int b = 0; b < B; b++)
        for (int py = 0; py < g; py++)
            for (int px = 0; px < g; px++)
                for (int o = 0; o < D; o++) {
                    double s = bias[o];
                    for (int c = 0; c < C; c++)
                        for (int ky = 0; ky < p; ky++)
                            for (int kx = 0; kx < p; kx++)
                                s += (double)w[((o * C + c) * p + ky) * p + kx] *
                                     img[((b * C + c) * S + py * p + ky) * S + px * p + kx];
                    ref[(b * P + py * g + px) * D + o] = s;
                }
    expect_close("patch embedding", out, ref, B * P * D, FWD_TOL);
}
END_TEST

// ---- Cross-entropy -------------------------------------------------------------
typedef struct { int B, C; const int *lab; } CeCtx;
static double ce_obj(void *vc, const double *z) {
    CeCtx *c = vc;
    double s = 0;
    for (int b = 0; b < c->B; b++) {
        double m = -INFINITY, l = 0;
        for (int k = 0; k < c->C; k++) m = fmax(m, z[b * c->C + k]);
        for (int k = 0; k < c->C; k++) l += exp(z[b * c->C + k] - m);
        s += log(l) + m - z[b * c->C + c->lab[b]];
    }
    return s / c->B;   // mean over the batch
}
START_TEST(test_crossentropy) {
    enum { B = 4, C = 6 };
    float z[B * C], losses[B], probs[B * C], dz[B * C] = {0};
    int lab[B] = {0, 5, 2, 2};
    fill(z, B * C, 3);
    z[0] = 80.0f;   // large logit: must not overflow
    cpu_crossentropy_forward(losses, probs, z, lab, B, C);
    CeCtx c = {B, C, lab};
    double *zd = to_d(z, B * C);
    double mean = 0;
    for (int b = 0; b < B; b++) mean += losses[b];
    ck_assert_double_eq_tol(mean / B, ce_obj(&c, zd), 1e-5);
    cpu_crossentropy_backward(dz, probs, lab, 1.0f / B, B, C);
    double *g = fd_grad(ce_obj, &c, zd, B * C);
    expect_close("crossentropy dlogits", dz, g, B * C, GRAD_TOL);
    free(g); free(zd);
}
END_TEST

// ---- Attention (SA, GLCA with q_idx, PWCA with two buffers) ---------------------
// Layout: one qkv buffer [B, N, 3D] per image set, as the model uses.
typedef struct {
    int B, H, hd, N, Nq, n2;
    const int *q_idx, *kv2_b;
    double *qkv, *qkv2, *G;   // G [B, Nq, D]
    int which;                // 0: differentiate qkv, 1: qkv2
} AttCtx;

static void att_ref(const AttCtx *c, const double *qkv, const double *qkv2, double *out, double *lse) {
    int D = c->H * c->hd, nk = c->N + c->n2;
    double *s = xmalloc(nk * sizeof(double));
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++)
            for (int i = 0; i < c->Nq; i++) {
                int t = c->q_idx ? c->q_idx[b * c->Nq + i] : i;
                const double *q = qkv + ((size_t)b * c->N + t) * 3 * D + h * c->hd;
                double m = -INFINITY, l = 0;
                for (int j = 0; j < nk; j++) {
                    const double *k = j < c->N ? qkv + ((size_t)b * c->N + j) * 3 * D + D + h * c->hd
                                               : qkv2 + ((size_t)c->kv2_b[b] * c->N + j - c->N) * 3 * D + D + h * c->hd;
                    s[j] = 0;
                    for (int d = 0; d < c->hd; d++) s[j] += q[d] * k[d];
                    s[j] /= sqrt((double)c->hd);
                    m = fmax(m, s[j]);
                }
                for (int j = 0; j < nk; j++) l += (s[j] = exp(s[j] - m));
                if (lse) lse[(b * c->H + h) * c->Nq + i] = m + log(l);
                double *o = out + ((size_t)b * c->Nq + i) * D + h * c->hd;
                for (int d = 0; d < c->hd; d++) o[d] = 0;
                for (int j = 0; j < nk; j++) {
                    const double *v = j < c->N ? qkv + ((size_t)b * c->N + j) * 3 * D + 2 * D + h * c->hd
                                               : qkv2 + ((size_t)c->kv2_b[b] * c->N + j - c->N) * 3 * D + 2 * D + h * c->hd;
                    for (int d = 0; d < c->hd; d++) o[d] += s[j] / l * v[d];
                }
            }
    free(s);
}
static double att_obj(void *vc, const double *p) {
    AttCtx *c = vc;
    size_t n = (size_t)c->B * c->Nq * c->H * c->hd;
    double *out = xmalloc(n * sizeof(double)), s = 0;
    att_ref(c, c->which == 0 ? p : c->qkv, c->which == 1 ? p : c->qkv2, out, NULL);
    for (size_t i = 0; i < n; i++) s += c->G[i] * out[i];
    free(out);
    return s;
}

static AttnArgs make_args(int B, int H, int hd, int N, int Nq, const int *q_idx, const float *qkv, const float *qkv2,
                          const int *kv2_b) {
    int D = H * hd;
    AttnArgs a = {.B = B, .H = H, .hd = hd, .Nq = Nq, .q_idx = q_idx, .q = qkv, .q_bstride = (long)N * 3 * D,
                  .q_tstride = 3 * D, .k1 = qkv + D, .v1 = qkv + 2 * D, .n1 = N, .kv1_bstride = (long)N * 3 * D,
                  .kv1_tstride = 3 * D, .scale = 1.0f / sqrtf((float)hd)};
    if (qkv2) {
        a.k2 = qkv2 + D; a.v2 = qkv2 + 2 * D; a.n2 = N;
        a.kv2_bstride = (long)N * 3 * D; a.kv2_tstride = 3 * D; a.kv2_b = kv2_b;
    }
    return a;
}

static void check_attention(const char *name, int B, int H, int hd, int N, int Nq, const int *q_idx, int pwca,
                            const int *kv2_b) {
    int D = H * hd;
    size_t nqkv = (size_t)B * N * 3 * D, nout = (size_t)B * Nq * D;
    float *qkv = xmalloc(nqkv * 4), *qkv2 = pwca ? xmalloc(nqkv * 4) : NULL, *G = xmalloc(nout * 4);
    float *out = xmalloc(nout * 4), *lse = xmalloc((size_t)B * H * Nq * 4);
    float *dqkv = xcalloc(nqkv, 4), *dqkv2 = pwca ? xcalloc(nqkv, 4) : NULL;
    fill(qkv, nqkv, 1.0f);
    if (pwca) fill(qkv2, nqkv, 1.0f);
    fill(G, nout, 1.0f);
    AttnArgs a = make_args(B, H, hd, N, Nq, q_idx, qkv, qkv2, kv2_b);
    cpu_attention_forward(&a, out, lse);
    AttCtx c = {B, H, hd, N, Nq, pwca ? N : 0, q_idx, kv2_b, to_d(qkv, nqkv), pwca ? to_d(qkv2, nqkv) : NULL,
                to_d(G, nout), 0};
    double *ref = xmalloc(nout * 8), *rlse = xmalloc((size_t)B * H * Nq * 8);
    att_ref(&c, c.qkv, c.qkv2, ref, rlse);
    char what[128];
    snprintf(what, sizeof what, "%s forward", name);
    expect_close(what, out, ref, nout, FWD_TOL);
    snprintf(what, sizeof what, "%s lse", name);
    expect_close(what, lse, rlse, (size_t)B * H * Nq, FWD_TOL);
    AttnGrads g = {.dq = dqkv, .dk1 = dqkv + D, .dv1 = dqkv + 2 * D, .dk2 = pwca ? dqkv2 + D : NULL,
                   .dv2 = pwca ? dqkv2 + 2 * D : NULL};
    cpu_attention_backward(&a, &g, out, lse, G);
    double *fd = fd_grad(att_obj, &c, c.qkv, nqkv);
    snprintf(what, sizeof what, "%s d(q|k1|v1)", name);
    expect_close(what, dqkv, fd, nqkv, GRAD_TOL);
    free(fd);
    if (pwca) {
        c.which = 1;
        fd = fd_grad(att_obj, &c, c.qkv2, nqkv);
        snprintf(what, sizeof what, "%s d(k2|v2)", name);
        expect_close(what, dqkv2, fd, nqkv, GRAD_TOL);
        free(fd);
    }
    free(qkv); free(qkv2); free(G); free(out); free(lse); free(dqkv); free(dqkv2);
    free(c.qkv); free(c.qkv2); free(c.G); free(ref); free(rlse);
}

START_TEST(test_attention_sa) { check_attention("SA", 2, 2, 4, 6, 6, NULL, 0, NULL); }
END_TEST
START_TEST(test_attention_glca) {
    int q_idx[2 * 3] = {0, 2, 5, 0, 1, 3};   // [CLS; selected] per image
    check_attention("GLCA", 2, 2, 4, 6, 3, q_idx, 0, NULL);
}
END_TEST
START_TEST(test_attention_pwca) {
    int pair[3] = {2, 0, 1};   // a derangement
    check_attention("PWCA", 3, 2, 4, 5, 5, NULL, 1, pair);
}
END_TEST

START_TEST(test_pwca_with_itself_equals_sa) {
    // Distractor = the image itself: softmax over duplicated keys equals SA exactly.
    enum { B = 2, H = 2, hd = 4, N = 5, D = H * hd };
    float qkv[B * N * 3 * D], o_sa[B * N * D], o_pw[B * N * D], l_sa[B * H * N], l_pw[B * H * N];
    int self[B] = {0, 1};
    fill(qkv, B * N * 3 * D, 1);
    AttnArgs sa = make_args(B, H, hd, N, N, NULL, qkv, NULL, NULL);
    AttnArgs pw = make_args(B, H, hd, N, N, NULL, qkv, qkv, self);
    cpu_attention_forward(&sa, o_sa, l_sa);
    cpu_attention_forward(&pw, o_pw, l_pw);
    for (int i = 0; i < B * N * D; i++) ck_assert_float_eq_tol(o_pw[i], o_sa[i], 1e-6f);
    for (int i = 0; i < B * H * N; i++) ck_assert_float_eq_tol(l_pw[i], l_sa[i] + logf(2.0f), 1e-5f);
}
END_TEST

START_TEST(test_probs_mean_and_rollout) {
    // Head-mean probabilities from q, k, lse equal the naive softmax mean.
    enum { B = 2, H = 3, hd = 4, N = 5, D = H * hd };
    float qkv[B * N * 3 * D], out[B * N * D], lse[B * H * N], S[B * N * N];
    fill(qkv, B * N * 3 * D, 1);
    AttnArgs a = make_args(B, H, hd, N, N, NULL, qkv, NULL, NULL);
    cpu_attention_forward(&a, out, lse);
    cpu_attention_probs_mean(&a, lse, S);
    double ref[B * N * N];
    for (int b = 0; b < B; b++)
        for (int i = 0; i < N; i++) {
            for (int j = 0; j < N; j++) ref[(b * N + i) * N + j] = 0;
            for (int h = 0; h < H; h++) {
                double s[N], m = -INFINITY, l = 0;
                for (int j = 0; j < N; j++) {
                    s[j] = 0;
                    for (int d = 0; d < hd; d++)
                        s[j] += (double)qkv[(b * N + i) * 3 * D + h * hd + d] * qkv[(b * N + j) * 3 * D + D + h * hd + d];
                    s[j] /= sqrt(hd);
                    m = fmax(m, s[j]);
                }
                for (int j = 0; j < N; j++) l += exp(s[j] - m);
                for (int j = 0; j < N; j++) ref[(b * N + i) * N + j] += exp(s[j] - m) / l / H;
            }
        }
    expect_close("attention_probs_mean", S, ref, B * N * N, FWD_TOL);
}
END_TEST

START_TEST(test_rollout_hand_3x3) {
    // Two layers with known 3×3 head-mean attention. S̄ = 0.5 S + 0.5 I.
    // S1 = [[.5,.25,.25],[0,1,0],[.2,.3,.5]], S2 = [[.2,.6,.2],[.1,.1,.8],[1/3,1/3,1/3]].
    // Ŝ = S̄2·S̄1; r = row0(Ŝ) = row0(S̄2)·S̄1. row0(S̄2) = [.6,.3,.1].
    // S̄1 = [[.75,.125,.125],[0,1,0],[.1,.15,.75]] → r = [.46, .39, .15] (by hand).
    float S1[9] = {.5f, .25f, .25f, 0, 1, 0, .2f, .3f, .5f};
    float S2[9] = {.2f, .6f, .2f, .1f, .1f, .8f, 1 / 3.f, 1 / 3.f, 1 / 3.f};
    float r[3] = {1, 0, 0}, tmp[3];
    cpu_rollout_step(r, S2, tmp, 1, 3);   // newest layer first (SPEC §2)
    ck_assert_float_eq_tol(r[0], 0.6f, 1e-6f);
    ck_assert_float_eq_tol(r[1], 0.3f, 1e-6f);
    ck_assert_float_eq_tol(r[2], 0.1f, 1e-6f);
    cpu_rollout_step(r, S1, tmp, 1, 3);
    ck_assert_float_eq_tol(r[0], 0.46f, 1e-6f);
    ck_assert_float_eq_tol(r[1], 0.39f, 1e-6f);
    ck_assert_float_eq_tol(r[2], 0.15f, 1e-6f);
}
END_TEST

START_TEST(test_topk_ties_and_order) {
    // CLS (index 0) never ranks even when largest; ties go to the lower index;
    // output is [0; selected ascending].
    enum { B = 2, N = 7, K = 3 };
    float r[B * N] = {9, 0.1f, 0.5f, 0.5f, 0.2f, 0.5f, 0.3f,
                      9, 0.4f, 0.4f, 0.4f, 0.4f, 0.4f, 0.4f};
    int sel[B * (K + 1)];
    cpu_topk_select(sel, r, B, N, K);
    int want[B * (K + 1)] = {0, 2, 3, 5, 0, 1, 2, 3};
    for (int i = 0; i < B * (K + 1); i++) ck_assert_int_eq(sel[i], want[i]);
    float r2[N] = {0, 0.1f, 0.9f, 0.2f, 0.8f, 0.3f, 0.7f};
    int sel2[K + 1];
    cpu_topk_select(sel2, r2, 1, N, K);
    int want2[K + 1] = {0, 2, 4, 6};   // ranked 2, 4, 6 but written ascending
    for (int i = 0; i < K + 1; i++) ck_assert_int_eq(sel2[i], want2[i]);
}
END_TEST

START_TEST(test_adamw_hand_step) {
    // t=1: m = 0.1 g, v = 0.001 g²; m̂ = g, v̂ = g²; p -= lr (g/(|g|+eps) + wd p).
    float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, -0.25f}, m[2] = {0}, v[2] = {0};
    cpu_adamw_update(p, g, m, v, 2, 0.1f, 0.9f, 0.999f, 1e-8f, 0.05f, 1);
    ck_assert_float_eq_tol(p[0], 1.0f - 0.1f * (1.0f + 0.05f * 1.0f), 1e-6f);
    ck_assert_float_eq_tol(p[1], -2.0f - 0.1f * (-1.0f + 0.05f * -2.0f), 1e-6f);
    ck_assert_float_eq_tol(m[0], 0.05f, 1e-7f);
    ck_assert_float_eq_tol(v[1], 0.001f * 0.0625f, 1e-9f);
    // wd = 0 (a no-decay group) leaves pure Adam.
    float q[1] = {3.0f}, gq[1] = {1.0f}, mq[1] = {0}, vq[1] = {0};
    cpu_adamw_update(q, gq, mq, vq, 1, 0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
    ck_assert_float_eq_tol(q[0], 3.0f - 0.01f, 1e-6f);
}
END_TEST

START_TEST(test_attention_deterministic_threads) {
    // Same result bit for bit whatever the thread count (DESIGN §6).
    enum { B = 2, H = 4, hd = 8, N = 33, D = H * hd };
    size_t nq = (size_t)B * N * 3 * D, no = (size_t)B * N * D;
    float *qkv = xmalloc(nq * 4), *G = xmalloc(no * 4), *out = xmalloc(no * 4), *lse = xmalloc(B * H * N * 4);
    float *d1 = xcalloc(nq, 4), *d2 = xcalloc(nq, 4);
    fill(qkv, nq, 1); fill(G, no, 1);
    AttnArgs a = make_args(B, H, hd, N, N, NULL, qkv, NULL, NULL);
    cpu_attention_forward(&a, out, lse);
    AttnGrads g1 = {d1, d1 + D, d1 + 2 * D, NULL, NULL}, g2 = {d2, d2 + D, d2 + 2 * D, NULL, NULL};
    omp_set_num_threads(1);
    cpu_attention_backward(&a, &g1, out, lse, G);
    omp_set_num_threads(2);
    cpu_attention_backward(&a, &g2, out, lse, G);
    ck_assert_int_eq(memcmp(d1, d2, nq * 4), 0);
    free(qkv); free(G); free(out); free(lse); free(d1); free(d2);
}
END_TEST

int main(void) {
    rng_init(&rng, 1234, 0, 0, RNG_TEST);
    Suite *s = suite_create("gradcheck_ops");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_layernorm);
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_gelu);
    tcase_add_test(tc, test_residual_droppath);
    tcase_add_test(tc, test_gather_rows);
    tcase_add_test(tc, test_tokens);
    tcase_add_test(tc, test_im2col_is_conv);
    tcase_add_test(tc, test_crossentropy);
    tcase_add_test(tc, test_attention_sa);
    tcase_add_test(tc, test_attention_glca);
    tcase_add_test(tc, test_attention_pwca);
    tcase_add_test(tc, test_pwca_with_itself_equals_sa);
    tcase_add_test(tc, test_probs_mean_and_rollout);
    tcase_add_test(tc, test_rollout_hand_3x3);
    tcase_add_test(tc, test_topk_ties_and_order);
    tcase_add_test(tc, test_adamw_hand_step);
    tcase_add_test(tc, test_attention_deterministic_threads);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
