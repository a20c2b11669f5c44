// ops_attention.c: op cases for fused attention (SA, GLCA, PWCA), the rollout
// step through an SA layer's head-mean attention, and the top-K selection.
//
// Layout as the model uses it: q|k|v are views into one qkv buffer [B, N, 3D]
// per image set; PWCA reads k2/v2 from a second buffer through kv2_b.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops.h"

#define XF(i) ((float *)x[i])
#define YF(j) ((float *)y[j])

// ---- attention: p = {B, H, hd, N, K, pwca, input scale ×10} ----------------------------
// K > 0: GLCA with Nq = 1+K queries [CLS; K distinct tokens ascending], different per b.
// pwca: 0 none (SA/GLCA); 1 kv2_b[b] = (b+1)%B, a derangement; 2 kv2_b[b] = b/2, not a
// permutation (two images share a distractor); 3 qkv2 = a copy of qkv, kv2_b[b] = b
// (one softmax over duplicated keys: the output equals SA's, lse gains log 2).
typedef struct { int B, H, hd, N, Nq, n2; } Geom;

static Geom geom(const OpCase *c) {
    const int *p = c->row->p;
    Geom g = {p[0], p[1], p[2], p[3], p[4] > 0 ? 1 + p[4] : p[3], p[5] ? p[3] : 0};
    return g;
}

// Offset of row (b, token j) of the key/value sequence [k1; k2] in its buffer (*buf = 0 or 1).
static size_t kv_row(const Geom *g, const int *kv2_b, int b, int j, int *buf) {
    int D = g->H * g->hd;
    *buf = j >= g->N;
    return (*buf ? (size_t)kv2_b[b] * g->N + (j - g->N) : (size_t)b * g->N + j) * 3 * D;
}

// One (b, h, query i): probabilities p[nk] (softmax of scores), returns lse; q row offset in *qo.
static double att_probs(const Geom *g, const int *q_idx, const int *kv2_b, const double *const *buf, int b, int h,
                        int i, double *p, size_t *qo) {
    int D = g->H * g->hd, t = q_idx ? q_idx[b * g->Nq + i] : i, w;
    *qo = ((size_t)b * g->N + t) * 3 * D + h * g->hd;
    for (int j = 0; j < g->N + g->n2; j++) {
        size_t o = kv_row(g, kv2_b, b, j, &w) + D + h * g->hd;
        const double *k = buf[w] + o;
        p[j] = 0;
        for (int d = 0; d < g->hd; d++) p[j] += buf[0][*qo + d] * k[d];
        p[j] /= sqrt((double)g->hd);
    }
    return ref_softmax_lse(p, g->N + g->n2);
}

static void att_ref(const OpCase *c, double *const *x, double *const *y) {
    Geom g = geom(c);
    int D = g.H * g.hd, w;
    const int *q_idx = c->x[2].n ? c->x[2].h : NULL, *kv2_b = c->x[3].h;
    const double *buf[2] = {x[0], x[1]};
    double *p = tz(g.N + g.n2, sizeof(double));
    for (int b = 0; b < g.B; b++)
        for (int h = 0; h < g.H; h++)
            for (int i = 0; i < g.Nq; i++) {
                size_t qo;
                y[1][((size_t)b * g.H + h) * g.Nq + i] = att_probs(&g, q_idx, kv2_b, buf, b, h, i, p, &qo);
                double *o = y[0] + ((size_t)b * g.Nq + i) * D + h * g.hd;
                for (int d = 0; d < g.hd; d++) o[d] = 0;
                for (int j = 0; j < g.N + g.n2; j++) {
                    size_t vo = kv_row(&g, kv2_b, b, j, &w) + 2 * D + h * g.hd;
                    const double *v = buf[w] + vo;
                    for (int d = 0; d < g.hd; d++) o[d] += p[j] * v[d];
                }
            }
    free(p);
}

// o = Σ p_j v_j; dp_j = do·v_j; ds_j = p_j (dp_j − do·o); dq = scale Σ ds_j k_j;
// dk_j = scale ds_j q; dv_j = p_j do.
static void att_ref_bwd(const OpCase *c, double *const *x, double *const *gy, double *const *gx) {
    Geom g = geom(c);
    int D = g.H * g.hd, nk = g.N + g.n2, w;
    const int *q_idx = c->x[2].n ? c->x[2].h : NULL, *kv2_b = c->x[3].h;
    const double *buf[2] = {x[0], x[1]};
    double *p = tz(nk, sizeof(double)), *dp = tz(nk, sizeof(double)), sc = 1 / sqrt((double)g.hd);
    for (int b = 0; b < g.B; b++)
        for (int h = 0; h < g.H; h++)
            for (int i = 0; i < g.Nq; i++) {
                size_t qo;
                att_probs(&g, q_idx, kv2_b, buf, b, h, i, p, &qo);
                const double *go = gy[0] + ((size_t)b * g.Nq + i) * D + h * g.hd;
                double dot = 0;
                for (int j = 0; j < nk; j++) {
                    size_t vo = kv_row(&g, kv2_b, b, j, &w) + 2 * D + h * g.hd;
                    dp[j] = 0;
                    for (int d = 0; d < g.hd; d++) dp[j] += go[d] * buf[w][vo + d];
                    dot += p[j] * dp[j];
                }
                for (int j = 0; j < nk; j++) {
                    size_t ko = kv_row(&g, kv2_b, b, j, &w) + D + h * g.hd;
                    double ds = p[j] * (dp[j] - dot) * sc;
                    for (int d = 0; d < g.hd; d++) {
                        gx[0][qo + d] += ds * buf[w][ko + d];
                        gx[w][ko + d] += ds * buf[0][qo + d];
                        gx[w][ko + D + d] += p[j] * go[d];
                    }
                }
            }
    free(p), free(dp);
}

static void att_init(OpCase *c, Rng *r) {
    Geom g = geom(c);
    int pw = c->row->p[5], D = g.H * g.hd;
    size_t nqkv = (size_t)g.B * g.N * 3 * D;
    c->nx = 4, c->ny = 2;
    tensor_set(&c->x[0], "qkv", nqkv, T_ACT, 1);   // the qkv GEMM's stored output
    tensor_set(&c->x[1], "qkv2", pw ? nqkv : 0, T_ACT, 1);
    tensor_set(&c->x[2], "q_idx", c->row->p[4] > 0 ? (size_t)g.B * g.Nq : 0, T_I32, 0);
    tensor_set(&c->x[3], "kv2_b", pw ? g.B : 0, T_I32, 0);
    float *q = fill_normal(&c->x[0], r, c->row->p[6] / 10.f), *q2 = fill_normal(&c->x[1], r, c->row->p[6] / 10.f);
    if (pw == 3) memcpy(q2, q, nqkv * sizeof(float));
    int *qi = fill_int(&c->x[2]), *kb = fill_int(&c->x[3]), K = c->row->p[4];
    for (int b = 0; b < g.B && K > 0; b++) {
        qi[b * g.Nq] = 0;
        for (int j = 1; j <= K; j++) qi[b * g.Nq + j] = 1 + ((j - 1) * (g.N - 1) / K + b) % (g.N - 1);
    }
    for (int b = 0; b < (int)c->x[3].n; b++) kb[b] = pw == 1 ? (b + 1) % g.B : pw == 2 ? b / 2 : b;
    tensor_set(&c->y[0], "out", (size_t)g.B * g.Nq * D, T_ACT, 1);   // the projection's input
    tensor_set(&c->y[1], "lse", (size_t)g.B * g.H * g.Nq, T_F32, 0);
    make_gy(c, 0, r, 1.f);
}

static AttnArgs att_args(const Backend *be, const OpCase *c, void *const *x) {
    Geom g = geom(c);
    int D = g.H * g.hd;
    long bs = (long)g.N * 3 * D, ts = 3 * D;
    const Act *q = x[0], *q2 = x[1];
    size_t eb = be->act_bytes();
    AttnArgs a = {.B = g.B, .H = g.H, .hd = g.hd, .Nq = g.Nq, .q_idx = x[2], .q = q, .q_bstride = bs,
                  .q_tstride = ts, .k1 = act_at(q, D, eb), .v1 = act_at(q, 2 * D, eb), .n1 = g.N, .kv1_bstride = bs,
                  .kv1_tstride = ts, .scale = 1.0f / sqrtf((float)g.hd)};
    if (g.n2) {
        a.k2 = act_at(q2, D, eb), a.v2 = act_at(q2, 2 * D, eb), a.n2 = g.n2, a.kv2_bstride = bs, a.kv2_tstride = ts;
        a.kv2_b = x[3];
    }
    return a;
}

static void att_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    AttnArgs a = att_args(be, c, x);
    be->attention_forward(&a, (Act *)y[0], YF(1));
}
// Partial: only dv1/dv2 (the q and k columns of the gradient buffers keep their start).
static void att_be_bwd(const Backend *be, const OpCase *c, void *const *x, void *const *y, float *const *gy,
                       float *const *gx) {
    AttnArgs a = att_args(be, c, x);
    int D = c->row->p[1] * c->row->p[2], pt = c->partial;
    AttnGrads g = {.dq = pt ? NULL : gx[0], .dk1 = pt ? NULL : gx[0] + D, .dv1 = gx[0] + 2 * D};
    if (a.n2) g.dk2 = pt ? NULL : gx[1] + D, g.dv2 = gx[1] + 2 * D;
    be->attention_backward(&a, &g, (const Act *)y[0], YF(1), gy[0]);
}
static int att_keeps(const OpCase *c, int i, size_t k) {
    size_t D = (size_t)c->row->p[1] * c->row->p[2];
    return (void)i, k % (3 * D) >= 2 * D;
}
// cuDNN's flash engines take head dims that are multiples of 8 up to 128 (config.c refuses others too).
const char *attention_cudnn_skip(const OpCase *c) {
    int hd = c->row->p[2];
    return hd % 8 || hd > 128 ? "head dim not a multiple of 8 up to 128 (cuDNN's fused SDPA)" : NULL;
}

const OpDef OP_ATTENTION = {"attention", att_init, att_ref, att_ref_bwd, att_be, att_be_bwd, att_keeps, 1, NULL};

// ---- rollout_step_attn: p = {B, H, hd, N, steps} --------------------------------------
// One SA layer per step (its own qkv [B, N, 3D] and the lse of its float64 forward),
// applied in order as the model's chain goes (newest layer first); r0 = the CLS row
// plus positive noise on every token, so every row of each S counts from the first step.
typedef struct { int B, H, hd, N, steps; } Roll;

static Roll roll_geom(const OpCase *c) {
    const int *p = c->row->p;
    return (Roll){p[0], p[1], p[2], p[3], p[4]};
}

static void roll_init(OpCase *c, Rng *r) {
    Roll R = roll_geom(c);
    Geom g = {R.B, R.H, R.hd, R.N, R.N, 0};
    size_t D = (size_t)R.H * R.hd, nqkv = (size_t)R.B * R.N * 3 * D, nlse = (size_t)R.B * R.H * R.N;
    c->nx = 3, c->ny = 1;
    tensor_set(&c->x[0], "qkv", (size_t)R.steps * nqkv, T_ACT, 0);
    tensor_set(&c->x[1], "lse", (size_t)R.steps * nlse, T_F32, 0);
    tensor_set(&c->x[2], "r0", (size_t)R.B * R.N, T_F32, 0);
    float *q = fill_normal(&c->x[0], r, 1.5f), *lse = fill_normal(&c->x[1], r, 0.f), *r0 = fill_normal(&c->x[2], r, 1.f);
    double *qd = tz(nqkv, sizeof(double)), *p = tz(R.N, sizeof(double));
    for (int s = 0; s < R.steps; s++) {
        for (size_t k = 0; k < nqkv; k++) qd[k] = q[s * nqkv + k];
        const double *buf[2] = {qd, NULL};
        for (int b = 0; b < R.B; b++)
            for (int h = 0; h < R.H; h++)
                for (int i = 0; i < R.N; i++) {
                    size_t qo;
                    lse[s * nlse + ((size_t)b * R.H + h) * R.N + i] = (float)att_probs(&g, NULL, NULL, buf, b, h, i, p, &qo);
                }
    }
    for (int k = 0; k < R.B * R.N; k++) r0[k] = fabsf(r0[k]) / (float)R.N + (k % R.N == 0);
    free(qd), free(p);
    tensor_set(&c->y[0], "r", (size_t)R.B * R.N, T_F32, 0);
}

void ref_rollout_step(double *r, const double *S, int B, int N) {
    double *t = tz(N, sizeof(double));
    for (int b = 0; b < B; b++) {
        const double *Sb = S + (size_t)b * N * N;
        double *rb = r + (size_t)b * N;
        for (int j = 0; j < N; j++) {
            t[j] = 0.5 * rb[j];
            for (int i = 0; i < N; i++) t[j] += 0.5 * rb[i] * Sb[(size_t)i * N + j];
        }
        memcpy(rb, t, N * sizeof(double));
    }
    free(t);
}

// The explicit S of each step in double, S[b, i, j] = mean_h exp(q_i·k_j/√hd − lse[b, h, i])
// with the given lse, then r ← r·(0.5 S + 0.5 I).
static void roll_ref(const OpCase *c, double *const *x, double *const *y) {
    Roll R = roll_geom(c);
    size_t D = (size_t)R.H * R.hd, nqkv = (size_t)R.B * R.N * 3 * D, nlse = (size_t)R.B * R.H * R.N;
    double *S = tz((size_t)R.B * R.N * R.N, sizeof(double));
    memcpy(y[0], x[2], (size_t)R.B * R.N * sizeof(double));
    for (int s = 0; s < R.steps; s++) {
        const double *qkv = x[0] + s * nqkv, *lse = x[1] + s * nlse;
        for (int b = 0; b < R.B; b++)
            for (int i = 0; i < R.N; i++)
                for (int j = 0; j < R.N; j++) {
                    double m = 0;
                    for (int h = 0; h < R.H; h++) {
                        const double *q = qkv + ((size_t)b * R.N + i) * 3 * D + h * R.hd, *k = qkv + ((size_t)b * R.N + j) * 3 * D + D + h * R.hd;
                        double dot = 0;
                        for (int d = 0; d < R.hd; d++) dot += q[d] * k[d];
                        m += exp(dot / sqrt((double)R.hd) - lse[((size_t)b * R.H + h) * R.N + i]);
                    }
                    S[((size_t)b * R.N + i) * R.N + j] = m / R.H;
                }
        ref_rollout_step(y[0], S, R.B, R.N);
    }
    free(S);
}

static void roll_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    Roll R = roll_geom(c);
    size_t D = (size_t)R.H * R.hd, nqkv = (size_t)R.B * R.N * 3 * D, nlse = (size_t)R.B * R.H * R.N;
    float *tmp = be->alloc((size_t)R.B * R.N * sizeof(float));
    be->copy(y[0], x[2], (size_t)R.B * R.N * sizeof(float));
    size_t eb = be->act_bytes();
    for (int s = 0; s < R.steps; s++) {
        const Act *q = act_at(x[0], s * nqkv, eb);
        long bs = (long)R.N * 3 * D, ts = 3 * D;
        AttnArgs a = {.B = R.B, .H = R.H, .hd = R.hd, .Nq = R.N, .q = q, .q_bstride = bs, .q_tstride = ts,
                      .k1 = act_at(q, D, eb), .v1 = act_at(q, 2 * D, eb), .n1 = R.N, .kv1_bstride = bs, .kv1_tstride = ts,
                      .scale = 1.0f / sqrtf((float)R.hd)};
        be->rollout_step_attn(&a, XF(1) + s * nlse, YF(0), tmp);
    }
    be->sync();
    be->free(tmp);
}
const OpDef OP_ROLLOUT_ATTN = {"rollout_step_attn", roll_init, roll_ref, NULL, roll_be, NULL, NULL, 1, NULL};

// ---- topk_select: p = {B, N, K, mode} ---------------------------------------------
// mode 0: values on a 1/8 grid (many ties); 1: all equal; 2, 3: the hand cases below.
static void topk_init(OpCase *c, Rng *r) {
    int B = c->row->p[0], N = c->row->p[1], K = c->row->p[2], mode = c->row->p[3];
    c->nx = 1, c->ny = 1;
    tensor_set(&c->x[0], "r", (size_t)B * N, T_F32, 0);
    float *v = fill_normal(&c->x[0], r, 0.f);
    // mode 2: CLS largest never ranks; ties go to the lower index. mode 3: ranked 2, 4, 6, written ascending.
    static const float hand2[14] = {9, .1f, .5f, .5f, .2f, .5f, .3f, 9, .4f, .4f, .4f, .4f, .4f, .4f};
    static const float hand3[7] = {0, .1f, .9f, .2f, .8f, .3f, .7f};
    for (int k = 0; k < B * N; k++)
        v[k] = mode == 0 ? floorf(24.f * (float)rng_uniform(r)) / 8.f : mode == 1 ? .5f : mode == 2 ? hand2[k] : hand3[k];
    tensor_set(&c->y[0], "sel", (size_t)B * (K + 1), T_I32, 0);
}
// sel[b] = [0; the K largest of r[b, 1..N−1], ties → lower index, in ascending order].
static void topk_ref(const OpCase *c, double *const *x, double *const *y) {
    int B = c->row->p[0], N = c->row->p[1], K = c->row->p[2];
    char *taken = tz(N, 1);
    for (int b = 0; b < B; b++) {
        const double *rb = x[0] + (size_t)b * N;
        memset(taken, 0, N);
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int j = 1; j < N; j++)
                if (!taken[j] && (best < 0 || rb[j] > rb[best])) best = j;
            taken[best] = 1;
        }
        double *s = y[0] + (size_t)b * (K + 1);
        int n = 0;
        s[n++] = 0;
        for (int j = 1; j < N; j++)
            if (taken[j]) s[n++] = j;
    }
    free(taken);
}
static void topk_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    be->topk_select((int *)y[0], XF(0), c->row->p[0], c->row->p[1], c->row->p[2]);
}
const OpDef OP_TOPK = {"topk_select", topk_init, topk_ref, NULL, topk_be, NULL, NULL, 0, NULL};
