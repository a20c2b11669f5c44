// rollout.c: the attention rollout on the CPU (mirrors kernels/rollout.cu): one step
// of the CLS-row chain through an SA layer's head-mean attention, recomputed tile by
// tile from Q, K and the saved log-sum-exp (no N×N map), and the top-K selection.
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include "backend/cpu/attention_tile.h"

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

// ---- at bf16 on the tile engines (att_bf16: vdpbf16ps or AMX) ----
// The scores are products of the stored bf16 q and k with fp32 sums, as attention's own
// (attention_bf16.c), instead of sgemm on widened copies: at 448 px the sgemm path took 26–33 ms
// a layer (74 GFLOP/s; a tenth of it widening every key again for each query tile, a tenth
// waiting at the two barriers of each tile). Here each thread owns a range of key columns
// [c0, c0 + nj) (cpu_rollout_cols wide) for the whole step: per image it lays out its keys' Kᵀ
// for every head once, pair-interleaved along hd (the tile product's B operand); per query tile
// it makes each head's S_h [nq, nj] = scale·Q_h·K_hᵀ, Q's rows read in place, adds exp(S_h −
// lse) into sp over the heads in order (the AVX-512 exponential attention uses at bf16), then
// folds sp's rows into t with i ascending, t_j += (0.5·r_i/H)·sp_ij: each t_j one fixed chain, on
// one thread, with no barrier between tiles. A score's sum runs over hd in order whatever its
// column, so the bits do not depend on the thread count. (The bits are not the sgemm path's.)
typedef struct {
    uint16_t *kT;   // [H][hd/2][ldb][2]: the thread's keys, per head, pairs along hd
    float *st, *sp;   // [PR][ldb]: one head's scores / exponentials; their sum over heads
    int c0, nj, ldb;
} RollCols;

static void cols_keys(const AttnArgs *a, int b, RollCols *c) {
    int hd = a->hd, H = a->H;
    for (int h = 0; h < H; h++) {
        uint32_t *w = (uint32_t *)(void *)(c->kT + (size_t)h * hd * c->ldb);
        const uint16_t *k0 = (const uint16_t *)a->k1 + b * a->kv1_bstride + (long)c->c0 * a->kv1_tstride + h * hd;
        for (int j = 0; j < c->nj; j++) {
            const uint16_t *k = k0 + (long)j * a->kv1_tstride;
            for (int d2 = 0; d2 < hd / 2; d2++) memcpy(w + (size_t)d2 * c->ldb + j, k + 2 * d2, 4);
        }
    }
}

// sp sums exp(S_h − lse) over the heads; the mean's 1/H goes with r_i (one multiply a term).
static void cols_tile(const AttnArgs *a, const float *lse, const float *rb, float *t, int b, int i0, int nq,
                      RollCols *c) {
    int hd = a->hd, H = a->H, ld = c->ldb;
    for (int h = 0; h < H; h++) {
        const uint16_t *q = (const uint16_t *)a->q + b * a->q_bstride + (long)i0 * a->q_tstride + h * hd;
        tile16(c->st, ld, q, a->q_tstride, c->kT + (size_t)h * hd * ld, ld, nq, c->nj, hd, a->scale, 0);
        for (int i = 0; i < nq; i++)
            cpu_vexp_acc(c->sp + (size_t)i * ld, c->st + (size_t)i * ld, lse[((size_t)b * H + h) * a->Nq + i0 + i],
                         (size_t)c->nj, h == 0);
    }
    for (int i = 0; i < nq; i++) {
        float ri = 0.5f * rb[i0 + i] / (float)H;
        const float *sp = c->sp + (size_t)i * ld;
        for (int j = 0; j < c->nj; j++) t[c->c0 + j] += ri * sp[j];
    }
}

static void rollout_cols(const AttnArgs *a, const float *lse, const float *r, float *tmp) {
    int N = a->n1;
#pragma omp parallel
    {
        int w = (int)cpu_rollout_cols(N, omp_get_num_threads());
        RollCols c = {.c0 = omp_get_thread_num() * w, .ldb = w};
        c.nj = N - c.c0 < w ? N - c.c0 : w;
        if (c.nj > 0) {
            c.kT = xcalloc((size_t)a->H * a->hd * w, 2);   // the pad columns stay zero
            c.st = xmalloc((size_t)2 * PR * w * sizeof(float));
            c.sp = c.st + (size_t)PR * w;
            for (int b = 0; b < a->B; b++) {
                const float *rb = r + (size_t)b * N;
                float *t = tmp + (size_t)b * N;
                for (int j = c.c0; j < c.c0 + c.nj; j++) t[j] = 0.5f * rb[j];
                cols_keys(a, b, &c);
                for (int i0 = 0; i0 < N; i0 += PR) cols_tile(a, lse, rb, t, b, i0, N - i0 < PR ? N - i0 : PR, &c);
            }
            free(c.kT);
            free(c.st);
        }
    }
}

void cpu_rollout_step_attn(const AttnArgs *a, const float *lse, float *r, float *tmp) {
    int N = a->n1, H = a->H;   // SA: Nq = n1 = N (n2 ignored)
    if (att_bf16(a) && !a->q_idx) {
        rollout_cols(a, lse, r, tmp);
        memcpy(r, tmp, (size_t)a->B * N * sizeof(float));
        return;
    }
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
