// ops_attention.c: op cases for fused attention (SA, GLCA, PWCA), the
// head-mean attention probabilities, the rollout step and the top-K selection.
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
    tensor_set(&c->x[0], "qkv", nqkv, T_F32, 1);
    tensor_set(&c->x[1], "qkv2", pw ? nqkv : 0, T_F32, 1);
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
    tensor_set(&c->y[0], "out", (size_t)g.B * g.Nq * D, T_F32, 1);
    tensor_set(&c->y[1], "lse", (size_t)g.B * g.H * g.Nq, T_F32, 0);
    make_gy(c, 0, r, 1.f);
}

static AttnArgs att_args(const OpCase *c, void *const *x) {
    Geom g = geom(c);
    int D = g.H * g.hd;
    long bs = (long)g.N * 3 * D, ts = 3 * D;
    const float *q = x[0], *q2 = x[1];
    AttnArgs a = {.B = g.B, .H = g.H, .hd = g.hd, .Nq = g.Nq, .q_idx = x[2], .q = q, .q_bstride = bs,
                  .q_tstride = ts, .k1 = q + D, .v1 = q + 2 * D, .n1 = g.N, .kv1_bstride = bs, .kv1_tstride = ts,
                  .scale = 1.0f / sqrtf((float)g.hd)};
    if (g.n2) {
        a.k2 = q2 + D, a.v2 = q2 + 2 * D, a.n2 = g.n2, a.kv2_bstride = bs, a.kv2_tstride = ts;
        a.kv2_b = x[3];
    }
    return a;
}

static void att_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    AttnArgs a = att_args(c, x);
    be->attention_forward(&a, YF(0), YF(1));
}
// Partial: only dv1/dv2 (the q and k columns of the gradient buffers keep their start).
static void att_be_bwd(const Backend *be, const OpCase *c, void *const *x, void *const *y, float *const *gy,
                       float *const *gx) {
    AttnArgs a = att_args(c, x);
    int D = c->row->p[1] * c->row->p[2], pt = c->partial;
    AttnGrads g = {.dq = pt ? NULL : gx[0], .dk1 = pt ? NULL : gx[0] + D, .dv1 = gx[0] + 2 * D};
    if (a.n2) g.dk2 = pt ? NULL : gx[1] + D, g.dv2 = gx[1] + 2 * D;
    be->attention_backward(&a, &g, YF(0), YF(1), gy[0]);
}
static int att_keeps(const OpCase *c, int i, size_t k) {
    size_t D = (size_t)c->row->p[1] * c->row->p[2];
    return (void)i, k % (3 * D) >= 2 * D;
}
const OpDef OP_ATTENTION = {"attention", att_init, att_ref, att_ref_bwd, att_be, att_be_bwd, att_keeps, 1};

// ---- attention_probs_mean: p = {B, H, hd, N}; SA, lse from the float64 forward ---------
static void pm_init(OpCase *c, Rng *r) {
    Geom g = geom(c);
    int D = g.H * g.hd;
    c->nx = 2, c->ny = 1;
    tensor_set(&c->x[0], "qkv", (size_t)g.B * g.N * 3 * D, T_F32, 0);
    tensor_set(&c->x[1], "lse", (size_t)g.B * g.H * g.N, T_F32, 0);
    float *q = fill_normal(&c->x[0], r, 1.5f), *lse = fill_normal(&c->x[1], r, 0.f);
    double *qd = tz(c->x[0].n, sizeof(double)), *p = tz(g.N, sizeof(double));
    for (size_t k = 0; k < c->x[0].n; k++) qd[k] = q[k];
    const double *buf[2] = {qd, NULL};
    for (int b = 0; b < g.B; b++)
        for (int h = 0; h < g.H; h++)
            for (int i = 0; i < g.N; i++) {
                size_t qo;
                lse[((size_t)b * g.H + h) * g.N + i] = (float)att_probs(&g, NULL, NULL, buf, b, h, i, p, &qo);
            }
    free(qd), free(p);
    tensor_set(&c->y[0], "S", (size_t)g.B * g.N * g.N, T_F32, 0);
}
// S[b, i, j] = mean_h exp(q_i·k_j·scale − lse[b, h, i]), with the given lse.
static void pm_ref(const OpCase *c, double *const *x, double *const *y) {
    Geom g = geom(c);
    int D = g.H * g.hd;
    for (int b = 0; b < g.B; b++)
        for (int i = 0; i < g.N; i++)
            for (int j = 0; j < g.N; j++) {
                double s = 0;
                for (int h = 0; h < g.H; h++) {
                    const double *q = x[0] + ((size_t)b * g.N + i) * 3 * D + h * g.hd;
                    const double *k = x[0] + ((size_t)b * g.N + j) * 3 * D + D + h * g.hd;
                    double dot = 0;
                    for (int d = 0; d < g.hd; d++) dot += q[d] * k[d];
                    s += exp(dot / sqrt((double)g.hd) - x[1][((size_t)b * g.H + h) * g.N + i]);
                }
                y[0][((size_t)b * g.N + i) * g.N + j] = s / g.H;
            }
}
static void pm_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    void *v[4] = {x[0], NULL, NULL, NULL};
    AttnArgs a = att_args(c, v);
    be->attention_probs_mean(&a, XF(1), YF(0));
}
const OpDef OP_PROBS_MEAN = {"attention_probs_mean", pm_init, pm_ref, NULL, pm_be, NULL, NULL, 0};

// ---- rollout_step: p = {B, N, steps, hand} ------------------------------------------
// S [steps, B, N, N] row-stochastic, applied in order (newest layer first); r0 = the CLS row
// of the identity. hand: B = 1, N = 3, two steps with the 3×3 matrices of MODEL.md §2's example.
static void roll_init(OpCase *c, Rng *r) {
    int B = c->row->p[0], N = c->row->p[1], steps = c->row->p[2];
    c->nx = 2, c->ny = 1;
    tensor_set(&c->x[0], "S", (size_t)steps * B * N * N, T_F32, 0);
    tensor_set(&c->x[1], "r0", (size_t)B * N, T_F32, 0);
    float *S = fill_normal(&c->x[0], r, 2.f), *r0 = fill_normal(&c->x[1], r, 0.f);
    for (size_t row = 0; row < (size_t)steps * B * N; row++) {   // softmax rows, as attention gives
        double z = 0;
        for (int j = 0; j < N; j++) z += exp(S[row * N + j]);
        for (int j = 0; j < N; j++) S[row * N + j] = (float)(exp(S[row * N + j]) / z);
    }
    if (c->row->p[3]) {
        static const float hand[18] = {.2f, .6f, .2f, .1f, .1f, .8f, 1 / 3.f, 1 / 3.f, 1 / 3.f,   // S2
                                       .5f, .25f, .25f, 0, 1, 0, .2f, .3f, .5f};                // S1
        memcpy(S, hand, sizeof hand);
    }
    for (int b = 0; b < B; b++) r0[(size_t)b * N] = 1.f;
    tensor_set(&c->y[0], "r", (size_t)B * N, T_F32, 0);
}
// r ← r · (0.5 S + 0.5 I)
static void roll_ref(const OpCase *c, double *const *x, double *const *y) {
    int B = c->row->p[0], N = c->row->p[1], steps = c->row->p[2];
    double *t = tz(N, sizeof(double));
    memcpy(y[0], x[1], (size_t)B * N * sizeof(double));
    for (int s = 0; s < steps; s++)
        for (int b = 0; b < B; b++) {
            const double *S = x[0] + ((size_t)s * B + b) * N * N;
            double *rb = y[0] + (size_t)b * N;
            for (int j = 0; j < N; j++) {
                t[j] = 0.5 * rb[j];
                for (int i = 0; i < N; i++) t[j] += 0.5 * rb[i] * S[(size_t)i * N + j];
            }
            memcpy(rb, t, N * sizeof(double));
        }
    free(t);
}
static void roll_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    int B = c->row->p[0], N = c->row->p[1], steps = c->row->p[2];
    float *tmp = be->alloc((size_t)B * N * sizeof(float));
    be->copy(y[0], x[1], (size_t)B * N * sizeof(float));
    for (int s = 0; s < steps; s++) be->rollout_step(YF(0), XF(0) + (size_t)s * B * N * N, tmp, B, N);
    be->sync();
    be->free(tmp);
}
const OpDef OP_ROLLOUT = {"rollout_step", roll_init, roll_ref, NULL, roll_be, NULL, NULL, 0};

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
const OpDef OP_TOPK = {"topk_select", topk_init, topk_ref, NULL, topk_be, NULL, NULL, 0};
