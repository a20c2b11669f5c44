// gpu_parity.c: every Backend op, CUDA against the CPU reference, on fresh
// random inputs (DESIGN §3). Exits 77 (ctest: skipped) without a GPU.
//
// Method: the same host inputs go to both backends; forward outputs on the GPU
// are poisoned with NaN first (an unwritten element then fails, since NaN never
// passes rel_err); backward gradients start from the same random values on both
// sides, which checks the += contract. Error = max|gpu − cpu| / max|cpu|.
//
// Tolerances, per op family (why):
//   exact copies (im2col, tokens fwd, gather fwd)         1e-7  (no arithmetic)
//   fp32 elementwise (gelu, residual, CE, AdamW)            1e-5  (libm ulp differences)
//   fp32 reductions (LN, token/bias grads, rollout, probs)  1e-4  (summation order)
//   sumsq (double accumulation on both sides)               1e-9
//   linear (cuBLAS TF32 tensor cores; DCAL_GEMM=bf16)       5e-3  (2e-2 for bf16)
//   attention, fp32 reference kernels (DCAL_ATTN=fp32)      1e-4  (summation order, expf)
//   attention, bf16 tensor-core kernels (default)           2e-2  (bf16 operands, p and dS)
//   topk_select                                             exact
// Determinism: attention backward (and the LN / bias grads) run twice must
// agree bit for bit.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

#ifndef DCAL_HAVE_CUDA
int main(void) {
    printf("built without CUDA: skipping\n");
    return 77;
}
#else
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "core/rng.h"

static const Backend *CPU = &backend_cpu, *GPU = &backend_cuda;
static uint64_t g_draw = 1;   // every array gets its own stream of draws

#define TOL_EXACT 1e-7
#define TOL_EW 1e-5
#define TOL_RED 1e-4
#define TOL_ATTN 1e-4
#define TOL_ATTN_MMA 2e-2

static double tol_gemm(void) {
    const char *e = getenv("DCAL_GEMM");
    return e && !strcmp(e, "bf16") ? 2e-2 : 5e-3;
}

static float *h_randn(size_t n, float sc) {
    Rng r;
    rng_init(&r, 1234, 0, g_draw++, RNG_TEST);
    float *h = malloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++) h[i] = sc * rng_normal(&r);
    return h;
}
static float *h_dup(const float *h, size_t n) {
    float *c = malloc(n * sizeof(float) + 1);
    memcpy(c, h, n * sizeof(float));
    return c;
}
static void *d_from(const void *h, size_t bytes) {
    void *d = GPU->alloc(bytes);
    GPU->to_device(d, h, bytes);
    return d;
}
static float *d_poison(size_t n) {   // NaN everywhere: unwritten outputs fail the comparison
    float *h = malloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    float *d = d_from(h, n * sizeof(float));
    free(h);
    return d;
}
static float *h_of(const float *d, size_t n) {
    float *h = malloc(n * sizeof(float) + 1);
    GPU->to_host(h, d, n * sizeof(float));
    return h;
}
static double err_vs(const float *dgpu, const float *href, size_t n) {
    float *h = h_of(dgpu, n);
    double *r = malloc(n * sizeof(double) + 1);
    for (size_t i = 0; i < n; i++) r[i] = href[i];
    double e = rel_err(h, r, n, 1e-12);
    free(h);
    free(r);
    return e;
}
static int same_bits(const float *d1, const float *d2, size_t n) {
    float *a = h_of(d1, n), *b = h_of(d2, n);
    int ok = memcmp(a, b, n * sizeof(float)) == 0;
    free(a);
    free(b);
    return ok;
}

#define EXPECT(name, dgpu, href, n, tol)                                                         \
    do {                                                                                         \
        double e_ = err_vs((dgpu), (href), (n));                                                 \
        printf("parity %-34s rel_err %.2e  tol %.0e\n", (name), e_, (double)(tol));             \
        ck_assert_msg(e_ <= (tol), "%s: rel_err %g > tol %g", (name), e_, (double)(tol));        \
    } while (0)

START_TEST(test_memory) {
    size_t n = 1000;
    float *d = GPU->alloc(n * sizeof(float)), *zeros = calloc(n, sizeof(float));
    EXPECT("alloc zero-filled", d, zeros, n, 0.0);
    float *h = h_randn(n, 1.f);
    GPU->to_device(d, h, n * sizeof(float));
    float *d2 = GPU->alloc(n * sizeof(float));
    GPU->copy(d2, d, n * sizeof(float));
    GPU->sync();
    EXPECT("to_device/copy/to_host", d2, h, n, 0.0);
    GPU->zero(d2, n * sizeof(float));
    EXPECT("zero", d2, zeros, n, 0.0);
    GPU->free(d);
    GPU->free(d2);
}
END_TEST

START_TEST(test_im2col_tokens) {
    int B = 2, C = 3, S = 48, p = 16, g = S / p, P = g * g, K = C * p * p;
    float *img = h_randn((size_t)B * C * S * S, 1.f), *dimg = d_from(img, (size_t)B * C * S * S * 4);
    float *cols = malloc((size_t)B * P * K * 4), *dcols = d_poison((size_t)B * P * K);
    CPU->im2col_forward(cols, img, B, C, S, p);
    GPU->im2col_forward(dcols, dimg, B, C, S, p);
    EXPECT("im2col_forward", dcols, cols, (size_t)B * P * K, TOL_EXACT);

    int N = 1 + 9, D = 40;
    size_t nx = (size_t)B * N * D, npe = (size_t)B * (N - 1) * D;
    float *pe = h_randn(npe, 1.f), *cls = h_randn(D, 1.f), *pos = h_randn((size_t)N * D, 1.f);
    float *x0 = malloc(nx * 4), *dx0 = d_poison(nx);
    CPU->tokens_forward(x0, pe, cls, pos, B, N, D);
    GPU->tokens_forward(dx0, d_from(pe, npe * 4), d_from(cls, D * 4), d_from(pos, (size_t)N * D * 4), B, N, D);
    EXPECT("tokens_forward", dx0, x0, nx, TOL_EXACT);

    float *g0 = h_randn(nx, 1.f), *gpe = h_randn(npe, 1.f), *gcls = h_randn(D, 1.f), *gpos = h_randn((size_t)N * D, 1.f);
    float *d_gpe = d_from(gpe, npe * 4), *d_gcls = d_from(gcls, D * 4), *d_gpos = d_from(gpos, (size_t)N * D * 4);
    CPU->tokens_backward(gpe, gcls, gpos, g0, B, N, D);
    GPU->tokens_backward(d_gpe, d_gcls, d_gpos, d_from(g0, nx * 4), B, N, D);
    EXPECT("tokens_backward dpe", d_gpe, gpe, npe, TOL_EW);
    EXPECT("tokens_backward dcls", d_gcls, gcls, D, TOL_EW);
    EXPECT("tokens_backward dpos", d_gpos, gpos, (size_t)N * D, TOL_EW);
}
END_TEST

static void layernorm_case(int rows, int D) {
    size_t n = (size_t)rows * D;
    float *x = h_randn(n, 2.f), *w = h_randn(D, 1.f), *b = h_randn(D, 1.f), *dy = h_randn(n, 1.f);
    for (size_t i = 0; i < n; i++) x[i] += 3.f;   // a mean offset: exercises the two-pass variance
    float *out = malloc(n * 4), *mean = malloc(rows * 4), *rstd = malloc(rows * 4);
    float *dx_ = d_from(x, n * 4), *dw_ = d_from(w, D * 4), *db_ = d_from(b, D * 4);
    float *dout = d_poison(n), *dmean = d_poison(rows), *drstd = d_poison(rows);
    CPU->layernorm_forward(out, mean, rstd, x, w, b, rows, D, 1e-6f);
    GPU->layernorm_forward(dout, dmean, drstd, dx_, dw_, db_, rows, D, 1e-6f);
    char name[64];
    snprintf(name, sizeof name, "layernorm_forward %dx%d", rows, D);
    EXPECT(name, dout, out, n, TOL_EW);
    EXPECT("layernorm_forward mean", dmean, mean, rows, TOL_EW);
    EXPECT("layernorm_forward rstd", drstd, rstd, rows, TOL_EW);

    float *gx = h_randn(n, 1.f), *gw = h_randn(D, 1.f), *gb = h_randn(D, 1.f);
    float *d_gx = d_from(gx, n * 4), *d_gw = d_from(gw, D * 4), *d_gb = d_from(gb, D * 4);
    float *d_gw2 = d_from(gw, D * 4), *d_gb2 = d_from(gb, D * 4), *d_dy = d_from(dy, n * 4);
    // Both backends read the CPU's saved statistics, so only the backward differs.
    float *d_mean = d_from(mean, rows * 4), *d_rstd = d_from(rstd, rows * 4);
    CPU->layernorm_backward(gx, gw, gb, dy, x, w, mean, rstd, rows, D);
    GPU->layernorm_backward(d_gx, d_gw, d_gb, d_dy, dx_, dw_, d_mean, d_rstd, rows, D);
    EXPECT("layernorm_backward dinp", d_gx, gx, n, TOL_RED);
    EXPECT("layernorm_backward dw", d_gw, gw, D, TOL_RED);
    EXPECT("layernorm_backward db", d_gb, gb, D, TOL_RED);
    GPU->layernorm_backward(NULL, d_gw2, d_gb2, d_dy, dx_, dw_, d_mean, d_rstd, rows, D);
    GPU->layernorm_backward(NULL, d_gw2, d_gb2, d_dy, dx_, dw_, d_mean, d_rstd, rows, D);
    GPU->layernorm_backward(NULL, d_gw, d_gb, d_dy, dx_, dw_, d_mean, d_rstd, rows, D);
    ck_assert_msg(same_bits(d_gw, d_gw2, D) && same_bits(d_gb, d_gb2, D), "layernorm dw/db not bitwise reproducible");
}

START_TEST(test_layernorm) {
    layernorm_case(50, 100);
    layernorm_case(1000, 768);   // several 256-row chunks in the dw/db reduction
}
END_TEST

static void linear_case(int rows, int IC, int OC, int bias) {
    double tol = tol_gemm();
    size_t ni = (size_t)rows * IC, no = (size_t)rows * OC, nw = (size_t)OC * IC;
    float *x = h_randn(ni, 1.f), *w = h_randn(nw, 0.1f), *b = h_randn(OC, 1.f), *dy = h_randn(no, 1.f);
    float *out = malloc(no * 4), *d_out = d_poison(no);
    float *d_x = d_from(x, ni * 4), *d_w = d_from(w, nw * 4), *d_b = d_from(b, OC * 4), *d_dy = d_from(dy, no * 4);
    CPU->linear_forward(out, x, w, bias ? b : NULL, rows, IC, OC);
    GPU->linear_forward(d_out, d_x, d_w, bias ? d_b : NULL, rows, IC, OC);
    char name[80];
    snprintf(name, sizeof name, "linear_forward %dx%d->%d%s", rows, IC, OC, bias ? "" : " nobias");
    EXPECT(name, d_out, out, no, tol);

    float *gx = h_randn(ni, 1.f), *gw = h_randn(nw, 1.f), *gb = h_randn(OC, 1.f);
    float *d_gx = d_from(gx, ni * 4), *d_gw = d_from(gw, nw * 4), *d_gb = d_from(gb, OC * 4);
    float *d_gb2 = d_from(gb, OC * 4);
    CPU->linear_backward(gx, gw, bias ? gb : NULL, dy, x, w, rows, IC, OC);
    GPU->linear_backward(d_gx, d_gw, bias ? d_gb : NULL, d_dy, d_x, d_w, rows, IC, OC);
    EXPECT("linear_backward dinp", d_gx, gx, ni, tol);
    EXPECT("linear_backward dw", d_gw, gw, nw, tol);
    EXPECT("linear_backward db", d_gb, gb, OC, TOL_RED);
    // NULL gradients are skipped: db alone, from the same start, lands on the same bits.
    if (bias) {
        GPU->linear_backward(NULL, NULL, d_gb2, d_dy, d_x, d_w, rows, IC, OC);
        ck_assert_msg(same_bits(d_gb, d_gb2, OC), "linear_backward db alone differs");
    }
    free(x), free(w), free(b), free(dy), free(out), free(gx), free(gw), free(gb);
}

START_TEST(test_linear) {
    linear_case(300, 96, 200, 1);
    linear_case(257, 768, 2304, 1);   // the qkv shape, odd row count
    linear_case(33, 50, 7, 0);
}
END_TEST

START_TEST(test_gelu_residual) {
    size_t n = 10007;
    float *x = h_randn(n, 3.f), *dy = h_randn(n, 1.f), *gx = h_randn(n, 1.f);
    float *y = malloc(n * 4), *d_y = d_poison(n), *d_x = d_from(x, n * 4), *d_gx = d_from(gx, n * 4);
    CPU->gelu_forward(y, x, n);
    GPU->gelu_forward(d_y, d_x, n);
    EXPECT("gelu_forward", d_y, y, n, TOL_EW);
    CPU->gelu_backward(gx, x, dy, n);
    GPU->gelu_backward(d_gx, d_x, d_from(dy, n * 4), n);
    EXPECT("gelu_backward", d_gx, gx, n, TOL_EW);

    int B = 3;
    size_t per = 1001, m = B * per;
    float scale[3] = {0.f, 1.f / 0.9f, 1.f};
    float *a = h_randn(m, 1.f), *f = h_randn(m, 1.f), *g = h_randn(m, 1.f);
    float *d_a = d_from(a, m * 4), *d_f = d_from(f, m * 4), *d_g = d_from(g, m * 4), *d_s = d_from(scale, sizeof scale);
    for (int withscale = 0; withscale < 2; withscale++) {
        const float *sc = withscale ? scale : NULL;
        float *o = malloc(m * 4), *d_o = d_poison(m);
        CPU->residual_forward(o, a, f, sc, B, per);
        GPU->residual_forward(d_o, d_a, d_f, withscale ? d_s : NULL, B, per);
        EXPECT(withscale ? "residual_forward scaled" : "residual_forward", d_o, o, m, TOL_EW);
        float *gxa = h_randn(m, 1.f), *gf = h_randn(m, 1.f);
        float *d_gxa = d_from(gxa, m * 4), *d_gf = d_from(gf, m * 4);
        CPU->residual_backward(gxa, gf, g, sc, B, per);
        GPU->residual_backward(d_gxa, d_gf, d_g, withscale ? d_s : NULL, B, per);
        EXPECT("residual_backward dx", d_gxa, gxa, m, TOL_EW);
        EXPECT("residual_backward df", d_gf, gf, m, TOL_EW);
        GPU->residual_backward(NULL, d_gf, d_g, withscale ? d_s : NULL, B, per);   // NULL dx skipped
        CPU->residual_backward(NULL, gf, g, sc, B, per);
        EXPECT("residual_backward df (dx NULL)", d_gf, gf, m, TOL_EW);
    }
}
END_TEST

START_TEST(test_gather) {
    int B = 3, Nin = 20, Nout = 7, D = 70;
    int idx[3 * 7];
    Rng r;
    rng_init(&r, 7, 0, 0, RNG_TEST);
    for (int b = 0; b < B; b++) {   // distinct rows per b, as the GLCA selection is
        int perm[20];
        for (int i = 0; i < Nin; i++) perm[i] = i;
        for (int i = Nin - 1; i > 0; i--) {
            int j = (int)rng_below(&r, (uint32_t)i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (int j = 0; j < Nout; j++) idx[b * Nout + j] = perm[j];
    }
    size_t ni = (size_t)B * Nin * D, no = (size_t)B * Nout * D;
    float *x = h_randn(ni, 1.f), *y = malloc(no * 4), *d_y = d_poison(no);
    int *d_idx = d_from(idx, sizeof idx);
    CPU->gather_rows_forward(y, x, idx, B, Nin, Nout, D);
    GPU->gather_rows_forward(d_y, d_from(x, ni * 4), d_idx, B, Nin, Nout, D);
    EXPECT("gather_rows_forward", d_y, y, no, TOL_EXACT);
    float *gy = h_randn(no, 1.f), *gx = h_randn(ni, 1.f), *d_gx = d_from(gx, ni * 4);
    CPU->gather_rows_backward(gx, gy, idx, B, Nin, Nout, D);
    GPU->gather_rows_backward(d_gx, d_from(gy, no * 4), d_idx, B, Nin, Nout, D);
    EXPECT("gather_rows_backward", d_gx, gx, ni, TOL_EW);
}
END_TEST

START_TEST(test_crossentropy) {
    int Cs[2] = {200, 1000};
    for (int k = 0; k < 2; k++) {
        int B = 5, C = Cs[k];
        size_t n = (size_t)B * C;
        float *z = h_randn(n, 4.f), *loss = malloc(B * 4), *pr = malloc(n * 4);
        int lab[5] = {0, C - 1, 3, 17, C / 2};
        float *d_loss = d_poison(B), *d_pr = d_poison(n);
        int *d_lab = d_from(lab, sizeof lab);
        CPU->crossentropy_forward(loss, pr, z, lab, B, C);
        GPU->crossentropy_forward(d_loss, d_pr, d_from(z, n * 4), d_lab, B, C);
        EXPECT("crossentropy_forward loss", d_loss, loss, B, TOL_EW);
        EXPECT("crossentropy_forward probs", d_pr, pr, n, TOL_EW);
        float *gz = h_randn(n, 1.f), *d_gz = d_from(gz, n * 4);
        CPU->crossentropy_backward(gz, pr, lab, 0.25f, B, C);
        GPU->crossentropy_backward(d_gz, d_from(pr, n * 4), d_lab, 0.25f, B, C);
        EXPECT("crossentropy_backward", d_gz, gz, n, TOL_EW);
    }
}
END_TEST

START_TEST(test_adamw_sumsq) {
    size_t n = 10007;
    float *p = h_randn(n, 1.f), *m = calloc(n, 4), *v = calloc(n, 4);
    float *d_p = d_from(p, n * 4), *d_m = GPU->alloc(n * 4), *d_v = GPU->alloc(n * 4);
    for (int t = 1; t <= 3; t++) {
        float *g = h_randn(n, 0.01f), *d_g = d_from(g, n * 4);
        CPU->adamw_update(p, g, m, v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.05f, t);
        GPU->adamw_update(d_p, d_g, d_m, d_v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.05f, t);
        free(g);
        GPU->free(d_g);
    }
    EXPECT("adamw_update param", d_p, p, n, TOL_EW);
    EXPECT("adamw_update m", d_m, m, n, TOL_EW);
    EXPECT("adamw_update v", d_v, v, n, TOL_EW);

    size_t big = 3000017;
    float *x = h_randn(big, 1.f), *d_x = d_from(x, big * 4);
    double sc = CPU->sumsq(x, big), sg = GPU->sumsq(d_x, big), sg2 = GPU->sumsq(d_x, big);
    double e = fabs(sg - sc) / sc;
    printf("parity %-34s rel_err %.2e  tol %.0e\n", "sumsq", e, 1e-9);
    ck_assert_msg(e <= 1e-9 && !isnan(sg), "sumsq: gpu %.17g cpu %.17g", sg, sc);
    ck_assert_msg(memcmp(&sg, &sg2, sizeof sg) == 0, "sumsq not bitwise reproducible");
    ck_assert(GPU->sumsq(d_x, 1) == (double)x[0] * x[0]);
}
END_TEST

// ---- attention ----
// A case: q|k|v views into a [B, N, 3D] buffer (the qkv GEMM output); GLCA adds
// q_idx (K+1 queries); PWCA adds a second [B, N, 3D] buffer read through the
// derangement kv2_b[b] = (b+1) % B. Gradients go to the matching [B, N, 3D]
// buffers, compared whole, so rows/columns that must stay untouched are checked too.
typedef struct {
    const char *name;
    int B, H, hd, N, K;   // K > 0: GLCA with 1+K queries
    int pwca;
} AttnCase;

typedef struct {
    AttnArgs a;
    AttnGrads g;
    float *qkv, *qkv2, *dqkv, *dqkv2;
    int *q_idx, *kv2_b;
} AttnSide;

static void side_views(AttnSide *s, const AttnCase *c) {
    int D = c->H * c->hd;
    long bs = (long)c->N * 3 * D, ts = 3 * D;
    AttnArgs *a = &s->a;
    memset(a, 0, sizeof *a);
    a->B = c->B, a->H = c->H, a->hd = c->hd, a->scale = 1.f / sqrtf((float)c->hd);
    a->Nq = c->K > 0 ? 1 + c->K : c->N;
    a->q_idx = c->K > 0 ? s->q_idx : NULL;
    a->q = s->qkv, a->q_bstride = bs, a->q_tstride = ts;
    a->k1 = s->qkv + D, a->v1 = s->qkv + 2 * D, a->n1 = c->N, a->kv1_bstride = bs, a->kv1_tstride = ts;
    if (c->pwca) {
        a->k2 = s->qkv2 + D, a->v2 = s->qkv2 + 2 * D, a->n2 = c->N, a->kv2_bstride = bs, a->kv2_tstride = ts;
        a->kv2_b = s->kv2_b;
    }
    s->g.dq = s->dqkv, s->g.dk1 = s->dqkv + D, s->g.dv1 = s->dqkv + 2 * D;
    if (c->pwca) s->g.dk2 = s->dqkv2 + D, s->g.dv2 = s->dqkv2 + 2 * D;
}

static void attention_case(const AttnCase *c, const char *impl, double tol) {
    int B = c->B, D = c->H * c->hd, Nq = c->K > 0 ? 1 + c->K : c->N;
    size_t nqkv = (size_t)B * c->N * 3 * D, nout = (size_t)B * Nq * D, nlse = (size_t)B * c->H * Nq;
    float *qkv = h_randn(nqkv, 1.5f), *qkv2 = h_randn(nqkv, 1.5f);
    float *dqkv = h_randn(nqkv, 0.1f), *dqkv2 = h_randn(nqkv, 0.1f), *dout = h_randn(nout, 1.f);
    int *q_idx = malloc((size_t)B * Nq * sizeof(int) + 1), kv2_b[64];
    for (int b = 0; b < B; b++) kv2_b[b] = (b + 1) % B;
    if (c->K > 0)   // CLS then K distinct tokens in ascending order, different per b
        for (int b = 0; b < B; b++) {
            q_idx[b * Nq] = 0;
            for (int j = 1; j <= c->K; j++) q_idx[b * Nq + j] = 1 + ((j - 1) * (c->N - 1) / c->K + b) % (c->N - 1);
        }
    float *dqkv0 = h_dup(dqkv, nqkv);   // the CPU backward updates dqkv in place
    AttnSide h = {.qkv = qkv, .qkv2 = qkv2, .dqkv = dqkv, .dqkv2 = dqkv2, .q_idx = q_idx, .kv2_b = kv2_b};
    AttnSide d = {.qkv = d_from(qkv, nqkv * 4), .qkv2 = d_from(qkv2, nqkv * 4), .dqkv = d_from(dqkv, nqkv * 4),
                  .dqkv2 = d_from(dqkv2, nqkv * 4), .q_idx = d_from(q_idx, (size_t)B * Nq * sizeof(int) + 1),
                  .kv2_b = d_from(kv2_b, sizeof kv2_b)};
    side_views(&h, c);
    side_views(&d, c);

    float *out = malloc(nout * 4), *lse = malloc(nlse * 4), *d_out = d_poison(nout), *d_lse = d_poison(nlse);
    CPU->attention_forward(&h.a, out, lse);
    GPU->attention_forward(&d.a, d_out, d_lse);
    char name[96];
    snprintf(name, sizeof name, "attn %s fwd %s out", impl, c->name);
    EXPECT(name, d_out, out, nout, tol);
    snprintf(name, sizeof name, "attn %s fwd %s lse", impl, c->name);
    EXPECT(name, d_lse, lse, nlse, tol);

    // Each backend's backward reads its own forward's out and lse.
    float *d_dout = d_from(dout, nout * 4);
    CPU->attention_backward(&h.a, &h.g, out, lse, dout);
    GPU->attention_backward(&d.a, &d.g, d_out, d_lse, d_dout);
    snprintf(name, sizeof name, "attn %s bwd %s dqkv", impl, c->name);
    EXPECT(name, d.dqkv, dqkv, nqkv, tol);
    if (c->pwca) {
        snprintf(name, sizeof name, "attn %s bwd %s dqkv2", impl, c->name);
        EXPECT(name, d.dqkv2, dqkv2, nqkv, tol);
    }

    // Determinism: the same backward from the same start, twice, bit for bit.
    float *g1 = d_from(dqkv, nqkv * 4), *g2 = d_from(dqkv, nqkv * 4);
    float *g1b = d_from(dqkv2, nqkv * 4), *g2b = d_from(dqkv2, nqkv * 4);
    AttnSide r1 = d, r2 = d;
    r1.dqkv = g1, r1.dqkv2 = g1b, r2.dqkv = g2, r2.dqkv2 = g2b;
    side_views(&r1, c);
    side_views(&r2, c);
    GPU->attention_backward(&r1.a, &r1.g, d_out, d_lse, d_dout);
    GPU->attention_backward(&r2.a, &r2.g, d_out, d_lse, d_dout);
    ck_assert_msg(same_bits(g1, g2, nqkv) && same_bits(g1b, g2b, nqkv), "%s: backward not bitwise reproducible",
                  c->name);
    printf("parity %-34s bitwise identical\n", "attn bwd determinism");

    // Only dv wanted: the q and k columns keep their start values exactly and
    // the v columns get the same bits as in the full backward.
    if (!c->pwca && c->K == 0) {
        float *g3 = d_from(dqkv0, nqkv * 4);
        AttnSide r3 = d;
        r3.dqkv = g3;
        side_views(&r3, c);
        r3.g.dq = NULL, r3.g.dk1 = NULL;
        GPU->attention_backward(&r3.a, &r3.g, d_out, d_lse, d_dout);
        float *only = h_of(g3, nqkv), *full = h_of(d.dqkv, nqkv);
        for (size_t i = 0; i < nqkv; i++) {
            int vcol = i % (size_t)(3 * D) >= (size_t)(2 * D);
            float want = vcol ? full[i] : dqkv0[i];
            ck_assert_msg(memcmp(&only[i], &want, 4) == 0, "%s: dv-only backward touched %zu", c->name, i);
        }
        free(only), free(full);
        printf("parity %-34s ok\n", "attn bwd NULL dq/dk skipped");
    }
    free(dqkv0);
    free(qkv), free(qkv2), free(dqkv), free(dqkv2), free(dout), free(q_idx), free(out), free(lse);
}

START_TEST(test_attention) {
    static const AttnCase cases[] = {
        {"SA small", 2, 3, 16, 37, 0, 0},
        {"SA hd40", 2, 2, 40, 33, 0, 0},      // hd padded up to the 64 template
        {"SA hd128", 1, 2, 128, 70, 0, 0},
        {"SA N=785", 1, 2, 64, 785, 0, 0},
        {"GLCA", 2, 3, 32, 50, 5, 0},
        {"GLCA N=785 K=78", 1, 2, 64, 785, 78, 0},
        {"PWCA", 3, 2, 32, 29, 0, 1},
        {"PWCA N=197", 2, 3, 64, 197, 0, 1},
    };
    // Both CUDA implementations: the fp32 reference kernels, then the default
    // bf16 tensor-core ones (the backend reads DCAL_ATTN on every call).
    const char *prev = getenv("DCAL_ATTN");
    char *saved = prev ? strdup(prev) : NULL;
    for (int impl = 0; impl < 2; impl++) {
        setenv("DCAL_ATTN", impl == 0 ? "fp32" : "mma", 1);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            attention_case(&cases[i], impl == 0 ? "fp32" : "mma", impl == 0 ? TOL_ATTN : TOL_ATTN_MMA);
    }
    if (saved) setenv("DCAL_ATTN", saved, 1), free(saved);
    else unsetenv("DCAL_ATTN");
}
END_TEST

START_TEST(test_rollout_topk) {
    AttnCase c = {"rollout", 2, 3, 32, 45, 0, 0};
    int B = c.B, N = c.N, D = c.H * c.hd;
    size_t nqkv = (size_t)B * N * 3 * D, nlse = (size_t)B * c.H * N, nS = (size_t)B * N * N;
    float *qkv = h_randn(nqkv, 1.5f), *lse = malloc(nlse * 4), *out = malloc((size_t)B * N * D * 4);
    AttnSide h = {.qkv = qkv}, d = {.qkv = d_from(qkv, nqkv * 4)};
    side_views(&h, &c);
    side_views(&d, &c);
    CPU->attention_forward(&h.a, out, lse);
    float *S = malloc(nS * 4), *d_S = d_poison(nS), *d_lse = d_from(lse, nlse * 4);
    CPU->attention_probs_mean(&h.a, lse, S);
    GPU->attention_probs_mean(&d.a, d_lse, d_S);
    EXPECT("attention_probs_mean", d_S, S, nS, TOL_RED);

    float *r = calloc((size_t)B * N, 4), *tmp = malloc((size_t)B * N * 4);
    for (int b = 0; b < B; b++) r[(size_t)b * N] = 1.f;   // the CLS row of the identity
    float *d_r = d_from(r, (size_t)B * N * 4), *d_tmp = d_poison((size_t)B * N), *d_Sc = d_from(S, nS * 4);
    for (int step = 0; step < 3; step++) {
        CPU->rollout_step(r, S, tmp, B, N);
        GPU->rollout_step(d_r, d_Sc, d_tmp, B, N);
    }
    EXPECT("rollout_step x3", d_r, r, (size_t)B * N, TOL_RED);

    // topk on identical inputs, with ties (values quantised to 1/8).
    for (int b = 0; b < B; b++)
        for (int i = 0; i < N; i++) r[(size_t)b * N + i] = floorf(8.f * r[(size_t)b * N + i] * N) / 8.f;
    int K = 9;
    int *sel = malloc((size_t)B * (K + 1) * sizeof(int)), *hsel = malloc((size_t)B * (K + 1) * sizeof(int));
    int *d_sel = GPU->alloc((size_t)B * (K + 1) * sizeof(int));
    CPU->topk_select(sel, r, B, N, K);
    GPU->topk_select(d_sel, d_from(r, (size_t)B * N * 4), B, N, K);
    GPU->to_host(hsel, d_sel, (size_t)B * (K + 1) * sizeof(int));
    ck_assert_msg(memcmp(sel, hsel, (size_t)B * (K + 1) * sizeof(int)) == 0, "topk_select differs from CPU");
    // Ties everywhere: all r equal → the K lowest patch indices.
    for (int i = 0; i < B * N; i++) r[i] = 0.5f;
    GPU->topk_select(d_sel, d_from(r, (size_t)B * N * 4), B, N, K);
    GPU->to_host(hsel, d_sel, (size_t)B * (K + 1) * sizeof(int));
    for (int b = 0; b < B; b++)
        for (int j = 0; j <= K; j++) ck_assert_int_eq(hsel[b * (K + 1) + j], j);
    printf("parity %-34s exact\n", "topk_select");
}
END_TEST

int main(void) {
    int n = cuda_device_count();
    if (n == 0) {
        printf("no CUDA GPU: skipping\n");
        return 77;
    }
    Suite *s = suite_create("gpu_parity");
    TCase *tc = tcase_create("parity");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_memory);
    tcase_add_test(tc, test_im2col_tokens);
    tcase_add_test(tc, test_layernorm);
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_gelu_residual);
    tcase_add_test(tc, test_gather);
    tcase_add_test(tc, test_crossentropy);
    tcase_add_test(tc, test_adamw_sumsq);
    tcase_add_test(tc, test_attention);
    tcase_add_test(tc, test_rollout_topk);
    suite_add_tcase(s, tc);
    // No fork: the parent has already touched the CUDA driver (device count),
    // and a forked child cannot use a CUDA context created before the fork.
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
#endif
