// ops_cpu_attention.c: fused attention for SA, GLCA and PWCA on the CPU, plus
// the rollout pieces (head-mean probabilities, CLS-row chain, top-K).
//
// Memory: forward keeps only out and the per-row log-sum-exp; backward
// recomputes each query row's scores from q, k and lse. The only score
// storage is one row of n1+n2 floats per thread, so backward storage grows
// linearly in N (DESIGN §3), never as a per-head N×N matrix.
//
// Work is split over (b, h) pairs; each pair's rows run in order inside one
// thread, so results are identical for any thread count. For PWCA, dk2/dv2
// land in rows of batch element kv2_b[b]; when kv2_b is not a permutation two
// pairs could write the same rows, so the split falls back to heads only.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "ops_cpu.h"

static inline float dot(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline int kv2_of(const AttnArgs *a, int b) { return a->kv2_b ? a->kv2_b[b] : b; }
static inline int qrow(const AttnArgs *a, int b, int i) { return a->q_idx ? a->q_idx[b * a->Nq + i] : i; }

// Pointers to head h of key/value row j of batch b; j < n1 reads buffer 1, else buffer 2.
static inline const float *krow(const AttnArgs *a, int b, int h, int j) {
    if (j < a->n1) return a->k1 + b * a->kv1_bstride + j * a->kv1_tstride + h * a->hd;
    return a->k2 + kv2_of(a, b) * a->kv2_bstride + (j - a->n1) * a->kv2_tstride + h * a->hd;
}
static inline const float *vrow(const AttnArgs *a, int b, int h, int j) {
    if (j < a->n1) return a->v1 + b * a->kv1_bstride + j * a->kv1_tstride + h * a->hd;
    return a->v2 + kv2_of(a, b) * a->kv2_bstride + (j - a->n1) * a->kv2_tstride + h * a->hd;
}

// Per-thread scratch for one (b, h) pair: the head's keys and values copied
// both transposed [hd][nk] and row-major [nk][hd], so that every inner loop is
// an axpy over contiguous floats (reductions do not vectorise without
// reassociation). O(N·hd) per thread: copies of K and V, never an N×N matrix.
typedef struct {
    float *kt, *vt, *k, *v, *dkt, *dvt, *p, *dp;
} Scratch;

static Scratch scratch_new(const AttnArgs *a, int grads) {
    size_t nk = (size_t)(a->n1 + a->n2), hd = (size_t)a->hd;
    Scratch s = {xmalloc(nk * hd * 4), xmalloc(nk * hd * 4), xmalloc(nk * hd * 4), xmalloc(nk * hd * 4),
                 grads ? xmalloc(nk * hd * 4) : NULL, grads ? xmalloc(nk * hd * 4) : NULL, xmalloc(nk * 4),
                 xmalloc(nk * 4)};
    return s;
}
static void scratch_free(Scratch *s) {
    free(s->kt); free(s->vt); free(s->k); free(s->v); free(s->dkt); free(s->dvt); free(s->p); free(s->dp);
}

static void load_kv(const AttnArgs *a, int b, int h, Scratch *s) {
    int nk = a->n1 + a->n2, hd = a->hd;
    for (int j = 0; j < nk; j++) {
        const float *k = krow(a, b, h, j), *v = vrow(a, b, h, j);
        memcpy(s->k + (size_t)j * hd, k, (size_t)hd * 4);
        memcpy(s->v + (size_t)j * hd, v, (size_t)hd * 4);
        for (int d = 0; d < hd; d++) {
            s->kt[(size_t)d * nk + j] = k[d];
            s->vt[(size_t)d * nk + j] = v[d];
        }
    }
}

// p[j] = q·k_j·scale for all keys.
static void scores(const AttnArgs *a, const float *q, const Scratch *s, float *p) {
    int nk = a->n1 + a->n2;
    for (int j = 0; j < nk; j++) p[j] = 0;
    for (int d = 0; d < a->hd; d++) {
        float qd = q[d] * a->scale;
        const float *kd = s->kt + (size_t)d * nk;
        for (int j = 0; j < nk; j++) p[j] += qd * kd[j];
    }
}

void cpu_attention_forward(const AttnArgs *a, float *out, float *lse) {
    int B = a->B, H = a->H, hd = a->hd, D = H * hd, nk = a->n1 + a->n2;
#pragma omp parallel
    {
        Scratch s = scratch_new(a, 0);
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                load_kv(a, b, h, &s);
                for (int i = 0; i < a->Nq; i++) {
                    const float *q = a->q + b * a->q_bstride + qrow(a, b, i) * a->q_tstride + h * hd;
                    float *p = s.p;
                    scores(a, q, &s, p);
                    float m = -INFINITY;
                    for (int j = 0; j < nk; j++) m = p[j] > m ? p[j] : m;
                    float l = 0;
                    for (int j = 0; j < nk; j++) l += (p[j] = expf(p[j] - m));
                    float inv = 1.0f / l;
                    float *o = out + ((size_t)b * a->Nq + i) * D + h * hd;
                    memset(o, 0, (size_t)hd * 4);
                    for (int j = 0; j < nk; j++) {
                        const float *v = s.v + (size_t)j * hd;
                        float pj = p[j] * inv;
                        for (int d = 0; d < hd; d++) o[d] += pj * v[d];
                    }
                    lse[((size_t)b * H + h) * a->Nq + i] = m + logf(l);
                }
            }
        scratch_free(&s);
    }
}

// Gradient row pointers mirror the inputs' strides.
static inline float *gk(const AttnArgs *a, float *g1, float *g2, int b, int h, int j) {
    if (j < a->n1) return g1 ? g1 + b * a->kv1_bstride + j * a->kv1_tstride + h * a->hd : NULL;
    return g2 ? g2 + kv2_of(a, b) * a->kv2_bstride + (j - a->n1) * a->kv2_tstride + h * a->hd : NULL;
}

static void backward_pair(const AttnArgs *a, const AttnGrads *g, const float *out, const float *lse,
                          const float *dout, int b, int h, Scratch *s) {
    int H = a->H, hd = a->hd, D = H * hd, nk = a->n1 + a->n2;
    load_kv(a, b, h, s);
    memset(s->dkt, 0, (size_t)nk * hd * 4);
    memset(s->dvt, 0, (size_t)nk * hd * 4);
    float *p = s->p, *dp = s->dp;
    for (int i = 0; i < a->Nq; i++) {
        int t = qrow(a, b, i);
        const float *q = a->q + b * a->q_bstride + t * a->q_tstride + h * hd;
        const float *o = out + ((size_t)b * a->Nq + i) * D + h * hd;
        const float *go = dout + ((size_t)b * a->Nq + i) * D + h * hd;
        float L = lse[((size_t)b * H + h) * a->Nq + i];
        scores(a, q, s, p);
        for (int j = 0; j < nk; j++) p[j] = expf(p[j] - L);   // recomputed probabilities
        float Di = dot(go, o, hd);                            // Σ_j p_j dp_j = dout·out
        for (int j = 0; j < nk; j++) dp[j] = 0;
        for (int d = 0; d < hd; d++) {
            const float *vd = s->vt + (size_t)d * nk;
            float gd = go[d];
            float *dvd = s->dvt + (size_t)d * nk;
            for (int j = 0; j < nk; j++) {
                dp[j] += gd * vd[j];
                dvd[j] += gd * p[j];
            }
        }
        for (int j = 0; j < nk; j++) dp[j] = p[j] * (dp[j] - Di) * a->scale;   // dS, scaled for q·k
        float *dq = g->dq ? g->dq + b * a->q_bstride + t * a->q_tstride + h * hd : NULL;
        if (dq)
            for (int j = 0; j < nk; j++) {
                const float *k = s->k + (size_t)j * hd;
                for (int d = 0; d < hd; d++) dq[d] += dp[j] * k[d];
            }
        for (int d = 0; d < hd; d++) {
            float qd = q[d];
            float *dkd = s->dkt + (size_t)d * nk;
            for (int j = 0; j < nk; j++) dkd[j] += qd * dp[j];
        }
    }
    for (int j = 0; j < nk; j++) {   // scatter this head's dk, dv into the strided gradients
        float *dk = gk(a, g->dk1, g->dk2, b, h, j), *dv = gk(a, g->dv1, g->dv2, b, h, j);
        for (int d = 0; d < hd; d++) {
            if (dk) dk[d] += s->dkt[(size_t)d * nk + j];
            if (dv) dv[d] += s->dvt[(size_t)d * nk + j];
        }
    }
}

static int is_permutation(const int *idx, int B) {
    if (!idx) return 1;
    char *seen = xcalloc((size_t)B, 1);
    int ok = 1;
    for (int b = 0; b < B && ok; b++) {
        if (idx[b] < 0 || idx[b] >= B || seen[idx[b]]) ok = 0;
        else seen[idx[b]] = 1;
    }
    free(seen);
    return ok;
}

void cpu_attention_backward(const AttnArgs *a, const AttnGrads *g, const float *out, const float *lse,
                            const float *dout) {
    int B = a->B, H = a->H;
    // GLCA: queries are a gathered subset, so dq rows are distinct per b; dk/dv rows
    // belong to b. PWCA with a permutation: the dk2/dv2 rows of different b are disjoint.
    int by_pair = a->n2 == 0 || is_permutation(a->kv2_b, B);
#pragma omp parallel
    {
        Scratch s = scratch_new(a, 1);
        if (by_pair) {
#pragma omp for collapse(2) schedule(static)
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++) backward_pair(a, g, out, lse, dout, b, h, &s);
        } else {
#pragma omp for schedule(static)
            for (int h = 0; h < H; h++)
                for (int b = 0; b < B; b++) backward_pair(a, g, out, lse, dout, b, h, &s);
        }
        scratch_free(&s);
    }
}

void cpu_attention_probs_mean(const AttnArgs *a, const float *lse, float *S) {
    int B = a->B, H = a->H, hd = a->hd, n1 = a->n1;
    AttnArgs one = *a;
    one.n2 = 0;   // the rollout uses the layer's own keys only
    Scratch shared = scratch_new(&one, 0);   // this head's keys, read by every thread
    memset(S, 0, (size_t)B * a->Nq * n1 * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {   // heads in order: a deterministic sum per row
            load_kv(&one, b, h, &shared);
#pragma omp parallel
            {
                float *p = xmalloc((size_t)n1 * sizeof(float));
#pragma omp for schedule(static)
                for (int i = 0; i < a->Nq; i++) {
                    float *row = S + ((size_t)b * a->Nq + i) * n1;
                    const float *q = a->q + b * a->q_bstride + qrow(a, b, i) * a->q_tstride + h * hd;
                    float L = lse[((size_t)b * H + h) * a->Nq + i];
                    scores(&one, q, &shared, p);
                    for (int j = 0; j < n1; j++) row[j] += expf(p[j] - L) / (float)H;
                }
                free(p);
            }
        }
    scratch_free(&shared);
}

void cpu_rollout_step(float *r, const float *S, float *tmp, int B, int N) {
    // r ← r·(0.5 S + 0.5 I): tmp_j = 0.5 Σ_i r_i S_ij + 0.5 r_j.
#pragma omp parallel for
    for (int b = 0; b < B; b++) {
        const float *rb = r + (size_t)b * N;
        float *t = tmp + (size_t)b * N;
        for (int j = 0; j < N; j++) t[j] = 0.5f * rb[j];
        for (int i = 0; i < N; i++) {
            float ri = 0.5f * rb[i];
            const float *Si = S + ((size_t)b * N + i) * N;
            for (int j = 0; j < N; j++) t[j] += ri * Si[j];
        }
    }
    memcpy(r, tmp, (size_t)B * N * sizeof(float));
}

void cpu_topk_select(int *sel, const float *r, int B, int N, int K) {
    char *taken = xmalloc((size_t)N);
    for (int b = 0; b < B; b++) {
        const float *rb = r + (size_t)b * N;
        memset(taken, 0, (size_t)N);
        for (int k = 0; k < K; k++) {   // K passes; strict '>' scanning upward keeps the lower index on ties
            int best = -1;
            for (int j = 1; j < N; j++)
                if (!taken[j] && (best < 0 || rb[j] > rb[best])) best = j;
            taken[best] = 1;
        }
        int *s = sel + (size_t)b * (K + 1), n = 0;
        s[n++] = 0;
        for (int j = 1; j < N; j++)
            if (taken[j]) s[n++] = j;
    }
    free(taken);
}
