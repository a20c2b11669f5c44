// rollout.c: the attention rollout on the CPU (mirrors kernels/rollout.cu):
// head-mean probabilities of one SA layer recomputed from Q, K and the saved
// log-sum-exp, one step of the CLS-row chain, and the top-K selection.
#include <math.h>
#include "backend/cpu/attention_common.h"

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
