// rollout.c: the attention rollout on the CPU (mirrors kernels/rollout.cu): one step
// of the CLS-row chain through an SA layer's head-mean attention, recomputed tile by
// tile from Q, K and the saved log-sum-exp (no N×N map), and the top-K selection.
#include <cblas.h>
#include <math.h>
#include <string.h>
#include "backend/cpu/attention_common.h"

// One step of the CLS-row chain, r ← r·(0.5·S + 0.5·I), with S[b] = (1/H) Σ_h
// exp(scale·Q_h K_hᵀ − lse_h) never stored. Query rows go in tiles of PR, in order:
// the tile's scores for every head are sgemm calls on the strided q/k views (one head
// per task, single-threaded inside the OpenMP region), then each task owns a range of
// key columns j and folds t_j += (0.5·r_i)·S_ij for the tile's rows i ascending, with
// S_ij summed over heads in order. So every t_j is one fixed chain of fp32 operations,
// whatever the thread count, and the same chain as building S row-tile by row-tile and
// multiplying afterwards (the sgemm shape PR × N is kept for that reason: OpenBLAS's
// kernels round differently for other column blockings). Scratch: H·PR·N scores.
enum { PR = CPU_ROLLOUT_PR, PJ = 64 };   // PR: cpu_scratch_rule.h counts the scratch

// st[h] [nq, N] = scale·q_i·k_j of head h for the query rows i0 .. i0+nq-1. At bf16 q and k
// are widened first (qt; kt, N rows of hd), at fp32 k is read in place.
static void head_scores(const AttnArgs *a, int b, int h, int i0, int nq, float *qt, float *kt, float *st) {
    int hd = a->hd, ldk = (int)a->kv1_tstride;
    for (int i = 0; i < nq; i++)
        cpu_act_load(qt + (size_t)i * hd, a->q, b * a->q_bstride + qrow(a, b, i0 + i) * a->q_tstride + h * hd,
                     (size_t)hd);
    long koff = b * a->kv1_bstride + h * hd;
    const float *k = kt;
    if (cpu_bf16) {
        for (int j = 0; j < a->n1; j++) cpu_act_load(kt + (size_t)j * hd, a->k1, koff + j * a->kv1_tstride, (size_t)hd);
        ldk = hd;
    } else {
        k = act_f32(a->k1) + koff;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, a->n1, hd, a->scale, qt, hd, k, ldk, 0.0f, st, a->n1);
}

// t_j += Σ_{i in tile} (0.5·r_i)·S_ij for j in [j0, j0+PJ), i ascending; S_ij is summed
// over heads in order in sp, the inner loops run along j (contiguous scores).
static void fold_cols(const AttnArgs *a, const float *lse, const float *rb, float *t, int b, int i0, int nq, int j0,
                      const float *st) {
    int H = a->H, N = a->n1, nj = N - j0 < PJ ? N - j0 : PJ;
    float sp[PJ], e[PJ];
    for (int i = 0; i < nq; i++) {
        memset(sp, 0, sizeof sp);
        for (int h = 0; h < H; h++) {
            const float *sc = st + ((size_t)h * PR + i) * N + j0;
            float L = lse[((size_t)b * H + h) * a->Nq + i0 + i];
            cpu_vexp(e, sc, L, (size_t)nj);   // vecmath.c: eight at a time
            for (int j = 0; j < nj; j++) sp[j] += e[j] / (float)H;
        }
        float ri = 0.5f * rb[i0 + i];
        for (int j = 0; j < nj; j++) t[j0 + j] += ri * sp[j];
    }
}

void cpu_rollout_step_attn(const AttnArgs *a, const float *lse, float *r, float *tmp) {
    int N = a->n1, H = a->H;   // SA: Nq = n1 = N (n2 ignored)
    float *st = xmalloc((size_t)H * PR * N * sizeof(float));
#pragma omp parallel
    {
        float *qt = xmalloc((size_t)PR * a->hd * sizeof(float));
        float *kt = xmalloc(cpu_bf16 ? (size_t)N * a->hd * sizeof(float) : 4);
        for (int b = 0; b < a->B; b++) {
            const float *rb = r + (size_t)b * N;
            float *t = tmp + (size_t)b * N;
#pragma omp for schedule(static)
            for (int j = 0; j < N; j++) t[j] = 0.5f * rb[j];
            for (int i0 = 0; i0 < N; i0 += PR) {
                int nq = N - i0 < PR ? N - i0 : PR;
#pragma omp for schedule(static)
                for (int h = 0; h < H; h++) head_scores(a, b, h, i0, nq, qt, kt, st + (size_t)h * PR * N);
#pragma omp for schedule(static)
                for (int j0 = 0; j0 < N; j0 += PJ) fold_cols(a, lse, rb, t, b, i0, nq, j0, st);
            }
        }
        free(qt);
        free(kt);
    }
    free(st);
    memcpy(r, tmp, (size_t)a->B * N * sizeof(float));
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
