// attention.c: fused attention for SA, GLCA and PWCA on the CPU (mirrors
// kernels/attention.cu). The rollout pieces are in rollout.c.
//
// Memory: forward keeps only out and the per-row log-sum-exp; backward
// recomputes each query row's scores from q, k and lse. The only score
// storage is one row of n1+n2 floats per thread, so backward storage grows
// linearly in N (ARCHITECTURE.md §3), never as a per-head N×N matrix.
//
// Work is split over (b, h) pairs; each pair's rows run in order inside one
// thread, so results are identical for any thread count. For PWCA, dk2/dv2
// land in rows of batch element kv2_b[b]; when kv2_b is not a permutation two
// pairs could write the same rows, so the split falls back to heads only.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cpu/attention_common.h"

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
