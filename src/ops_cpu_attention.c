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

// Scores of one query row against all n1+n2 keys, scaled, into s.
static void scores_row(const AttnArgs *a, int b, int h, const float *q, float *s) {
    int nk = a->n1 + a->n2;
    for (int j = 0; j < nk; j++) s[j] = dot(q, krow(a, b, h, j), a->hd) * a->scale;
}

void cpu_attention_forward(const AttnArgs *a, float *out, float *lse) {
    int B = a->B, H = a->H, hd = a->hd, D = H * hd, nk = a->n1 + a->n2;
#pragma omp parallel
    {
        float *s = xmalloc((size_t)nk * sizeof(float));
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < a->Nq; i++) {
                    const float *q = a->q + b * a->q_bstride + qrow(a, b, i) * a->q_tstride + h * hd;
                    scores_row(a, b, h, q, s);
                    float m = -INFINITY;
                    for (int j = 0; j < nk; j++) m = s[j] > m ? s[j] : m;
                    float l = 0;
                    for (int j = 0; j < nk; j++) l += (s[j] = expf(s[j] - m));
                    float *o = out + ((size_t)b * a->Nq + i) * D + h * hd;
                    memset(o, 0, (size_t)hd * sizeof(float));
                    for (int j = 0; j < nk; j++) {
                        const float *v = vrow(a, b, h, j);
                        float p = s[j] / l;
                        for (int d = 0; d < hd; d++) o[d] += p * v[d];
                    }
                    lse[((size_t)b * H + h) * a->Nq + i] = m + logf(l);
                }
        free(s);
    }
}

// Row pointers for gradients mirror the inputs' strides.
static inline float *gk(const AttnArgs *a, float *g1, float *g2, int b, int h, int j) {
    if (j < a->n1) return g1 ? g1 + b * a->kv1_bstride + j * a->kv1_tstride + h * a->hd : NULL;
    return g2 ? g2 + kv2_of(a, b) * a->kv2_bstride + (j - a->n1) * a->kv2_tstride + h * a->hd : NULL;
}

static void backward_pair(const AttnArgs *a, const AttnGrads *g, const float *out, const float *lse,
                          const float *dout, int b, int h, float *p) {
    int H = a->H, hd = a->hd, D = H * hd, nk = a->n1 + a->n2;
    for (int i = 0; i < a->Nq; i++) {
        int t = qrow(a, b, i);
        const float *q = a->q + b * a->q_bstride + t * a->q_tstride + h * hd;
        const float *o = out + ((size_t)b * a->Nq + i) * D + h * hd;
        const float *go = dout + ((size_t)b * a->Nq + i) * D + h * hd;
        float L = lse[((size_t)b * H + h) * a->Nq + i];
        scores_row(a, b, h, q, p);
        for (int j = 0; j < nk; j++) p[j] = expf(p[j] - L);   // recomputed probabilities
        float Di = dot(go, o, hd);                            // Σ_j p_j dp_j = dout·out
        float *dq = g->dq ? g->dq + b * a->q_bstride + t * a->q_tstride + h * hd : NULL;
        for (int j = 0; j < nk; j++) {
            const float *k = krow(a, b, h, j), *v = vrow(a, b, h, j);
            float ds = p[j] * (dot(go, v, hd) - Di) * a->scale;
            float *dk = gk(a, g->dk1, g->dk2, b, h, j), *dv = gk(a, g->dv1, g->dv2, b, h, j);
            if (dq)
                for (int d = 0; d < hd; d++) dq[d] += ds * k[d];
            if (dk)
                for (int d = 0; d < hd; d++) dk[d] += ds * q[d];
            if (dv)
                for (int d = 0; d < hd; d++) dv[d] += p[j] * go[d];
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
    int B = a->B, H = a->H, nk = a->n1 + a->n2;
    // GLCA: queries are a gathered subset, so dq rows are distinct per b; dk/dv rows
    // belong to b. PWCA with a permutation: the dk2/dv2 rows of different b are disjoint.
    int by_pair = a->n2 == 0 || is_permutation(a->kv2_b, B);
#pragma omp parallel
    {
        float *p = xmalloc((size_t)nk * sizeof(float));
        if (by_pair) {
#pragma omp for collapse(2) schedule(static)
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++) backward_pair(a, g, out, lse, dout, b, h, p);
        } else {
#pragma omp for schedule(static)
            for (int h = 0; h < H; h++)
                for (int b = 0; b < B; b++) backward_pair(a, g, out, lse, dout, b, h, p);
        }
        free(p);
    }
}

void cpu_attention_probs_mean(const AttnArgs *a, const float *lse, float *S) {
    int B = a->B, H = a->H, hd = a->hd, n1 = a->n1;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int i = 0; i < a->Nq; i++) {
            float *row = S + ((size_t)b * a->Nq + i) * n1;
            memset(row, 0, (size_t)n1 * sizeof(float));
            for (int h = 0; h < H; h++) {   // heads in order: deterministic sum
                const float *q = a->q + b * a->q_bstride + qrow(a, b, i) * a->q_tstride + h * hd;
                float L = lse[((size_t)b * H + h) * a->Nq + i];
                for (int j = 0; j < n1; j++) row[j] += expf(dot(q, krow(a, b, h, j), hd) * a->scale - L);
            }
            for (int j = 0; j < n1; j++) row[j] /= (float)H;
        }
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
