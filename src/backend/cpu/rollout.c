// rollout.c: the attention rollout on the CPU (mirrors kernels/rollout.cu):
// head-mean probabilities of one SA layer recomputed from Q, K and the saved
// log-sum-exp, one step of the CLS-row chain, and the top-K selection.
#include <cblas.h>
#include <math.h>
#include <string.h>
#include "backend/cpu/attention_common.h"

// S[b] = (1/H) Σ_h exp(scale·Q_h K_hᵀ - lse_h), heads summed in order. Tiles of
// PR query rows: the scores of one head are one sgemm on the strided q/k views
// (single-threaded inside the OpenMP region), then exponentiated into the rows.
// Each row of S belongs to one tile, so the sum is the same for any thread count.
enum { PR = 64 };

static void probs_tile(const AttnArgs *a, const float *lse, float *S, int b, int i0, float *qt, float *st) {
    int H = a->H, hd = a->hd, n1 = a->n1, nq = a->Nq - i0 < PR ? a->Nq - i0 : PR;
    float *rows = S + ((size_t)b * a->Nq + i0) * n1;
    memset(rows, 0, (size_t)nq * n1 * sizeof(float));
    for (int h = 0; h < H; h++) {
        for (int i = 0; i < nq; i++)
            memcpy(qt + (size_t)i * hd, a->q + b * a->q_bstride + qrow(a, b, i0 + i) * a->q_tstride + h * hd,
                   (size_t)hd * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, n1, hd, a->scale, qt, hd,
                    a->k1 + b * a->kv1_bstride + h * hd, (int)a->kv1_tstride, 0.0f, st, n1);
        const float *L = lse + ((size_t)b * H + h) * a->Nq + i0;
        for (int i = 0; i < nq; i++)
            for (int j = 0; j < n1; j++) rows[(size_t)i * n1 + j] += expf(st[(size_t)i * n1 + j] - L[i]) / (float)H;
    }
}

void cpu_attention_probs_mean(const AttnArgs *a, const float *lse, float *S) {
    int tiles = (a->Nq + PR - 1) / PR;   // the rollout uses the layer's own keys only (n2 ignored)
#pragma omp parallel
    {
        float *qt = xmalloc((size_t)PR * a->hd * sizeof(float)), *st = xmalloc((size_t)PR * a->n1 * sizeof(float));
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < a->B; b++)
            for (int t = 0; t < tiles; t++) probs_tile(a, lse, S, b, t * PR, qt, st);
        free(qt);
        free(st);
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
