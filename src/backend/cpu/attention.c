// attention.c: fused attention for SA, GLCA and PWCA on the CPU (mirrors
// kernels/attention.cu). The rollout pieces are in rollout.c.
//
// Tile-blocked, with the GPU kernels' structure: a tile of QT query rows meets
// the keys KT at a time, the scores of that tile only (QT×KT floats per
// thread) live in scratch, and forward keeps a running max and sum per row
// (online softmax), saving out and the log-sum-exp. Backward recomputes each
// tile's probabilities from q, k and the saved lse. No N×N matrix exists, so
// storage grows linearly in N (ARCHITECTURE.md §3).
//
// The products inside a tile are single-threaded OpenBLAS sgemm calls on the
// strided views (OpenBLAS runs single-threaded inside an OpenMP region), which
// brings attention from ~8 GFLOP/s of scalar loops to BLAS's register-blocked
// kernels. Key tiles never straddle the two key buffers of PWCA, so every
// key tile is one strided matrix and the keys are never concatenated.
//
// Determinism: forward splits over (b, h, query tile), each output row owned
// by one unit; backward over (b, h) pairs, whose query tiles run in order, so
// dk/dv accumulate in a fixed order. Results are identical for any thread
// count. For PWCA, dk2/dv2 land in rows of batch element kv2_b[b]; when kv2_b
// is not a permutation two pairs could write the same rows, so the split
// falls back to heads only.
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cpu/attention_common.h"

enum { QT = 64, KT = 256 };   // a tile's scores: 64 KiB, in L2 beside the K and V tiles

// One key tile: rows [j0, j0+n) of buffer 1 or 2 (never both), as strided matrices.
typedef struct {
    const float *k, *v;
    long ld;          // row stride of k and v
    int j0, n;        // first key (over n1+n2) and count
    float *dk, *dv;   // gradient rows of the same keys, or NULL
    long ldg;         // their row stride
} KeyTile;

// Per-thread tile scratch: QT query rows (gathered for GLCA), their output or
// dq accumulator, the scores and dP of one key tile, and per-row statistics;
// at bf16 also one key tile's k and v widened to fp32 (kb, vb: KT rows of hd).
typedef struct {
    float *q, *o, *s, *dp, *m, *l, *kb, *vb;
} Tile;

// At bf16 the tile's k and v rows are widened into t->kb / t->vb (exact), so the products
// below are the fp32 ones on bf16 values; at fp32 the tile reads the buffers in place.
static void widen_kv(const AttnArgs *a, KeyTile *kt, const Act *k, const Act *v, long off, Tile *t) {
    if (!cpu_bf16) {
        kt->k = act_f32(k) + off, kt->v = act_f32(v) + off;
        return;
    }
    for (int j = 0; j < kt->n; j++) {
        cpu_act_load(t->kb + (size_t)j * a->hd, k, off + j * kt->ld, a->hd);
        cpu_act_load(t->vb + (size_t)j * a->hd, v, off + j * kt->ld, a->hd);
    }
    kt->k = t->kb, kt->v = t->vb, kt->ld = a->hd;
}

// Key tile t of (b, h); returns 0 past the last one.
static int key_tile(const AttnArgs *a, const AttnGrads *g, int b, int h, int t, KeyTile *kt, Tile *tl) {
    int t1 = (a->n1 + KT - 1) / KT, t2 = (a->n2 + KT - 1) / KT;
    if (t >= t1 + t2) return 0;
    int second = t >= t1, j = (second ? t - t1 : t) * KT, n = second ? a->n2 : a->n1;
    long off = second ? kv2_of(a, b) * a->kv2_bstride + j * a->kv2_tstride + h * a->hd
                      : b * a->kv1_bstride + j * a->kv1_tstride + h * a->hd;
    kt->ld = kt->ldg = second ? a->kv2_tstride : a->kv1_tstride;
    kt->j0 = second ? a->n1 + j : j;
    kt->n = n - j < KT ? n - j : KT;
    widen_kv(a, kt, second ? a->k2 : a->k1, second ? a->v2 : a->v1, off, tl);
    float *dk = g ? (second ? g->dk2 : g->dk1) : NULL, *dv = g ? (second ? g->dv2 : g->dv1) : NULL;
    kt->dk = dk ? dk + off : NULL;
    kt->dv = dv ? dv + off : NULL;
    return 1;
}

static Tile tile_new(int hd) {
    size_t kv = cpu_bf16 ? (size_t)KT * hd * 4 : 4;
    Tile t = {xmalloc((size_t)QT * hd * 4), xmalloc((size_t)QT * hd * 4), xmalloc((size_t)QT * KT * 4),
              xmalloc((size_t)QT * KT * 4), xmalloc(QT * 4), xmalloc(QT * 4), xmalloc(kv), xmalloc(kv)};
    return t;
}
static void tile_free(Tile *t) {
    free(t->q); free(t->o); free(t->s); free(t->dp); free(t->m); free(t->l); free(t->kb); free(t->vb);
}

// Copies query rows [i0, i0+nq) of head h into t->q (widened at bf16): GLCA's rows are a gather.
static void load_q(const AttnArgs *a, int b, int h, int i0, int nq, Tile *t) {
    for (int i = 0; i < nq; i++)
        cpu_act_load(t->q + (size_t)i * a->hd, a->q, b * a->q_bstride + qrow(a, b, i0 + i) * a->q_tstride + h * a->hd,
                     (size_t)a->hd);
}

// S = scale · Q Kᵀ for one (query tile, key tile): [nq, kt->n], leading dimension KT.
static void tile_scores(const AttnArgs *a, const Tile *t, int nq, const KeyTile *kt) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, kt->n, a->hd, a->scale, t->q, a->hd, kt->k,
                (int)kt->ld, 0.0f, t->s, KT);
}

// One key tile of the online softmax: rescale what the rows hold by exp(m_old - m_new), add P·V.
static void forward_key_tile(const AttnArgs *a, Tile *t, int nq, const KeyTile *kt) {
    int hd = a->hd;
    tile_scores(a, t, nq, kt);
    for (int i = 0; i < nq; i++) {
        float *s = t->s + (size_t)i * KT, m = cpu_vmax(s, (size_t)kt->n, t->m[i]);
        float c = expf(t->m[i] - m);   // c = 0 on the first tile (m_old = -inf)
        cpu_vexp(s, s, m, (size_t)kt->n);
        float l = cpu_vsum(s, (size_t)kt->n);
        t->l[i] = t->l[i] * c + l;
        t->m[i] = m;
        float *o = t->o + (size_t)i * hd;
        for (int d = 0; d < hd; d++) o[d] *= c;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, kt->n, 1.0f, t->s, KT, kt->v, (int)kt->ld,
                1.0f, t->o, hd);
}

static void forward_tile(const AttnArgs *a, Act *out, float *lse, int b, int h, int i0, Tile *t) {
    int hd = a->hd, D = a->H * hd, nq = a->Nq - i0 < QT ? a->Nq - i0 : QT;
    load_q(a, b, h, i0, nq, t);
    memset(t->o, 0, (size_t)nq * hd * 4);
    for (int i = 0; i < nq; i++) t->m[i] = -INFINITY, t->l[i] = 0;
    KeyTile kt;
    for (int k = 0; key_tile(a, NULL, b, h, k, &kt, t); k++) forward_key_tile(a, t, nq, &kt);
    for (int i = 0; i < nq; i++) {
        float inv = 1.0f / t->l[i], *o = t->o + (size_t)i * hd;
        for (int d = 0; d < hd; d++) o[d] *= inv;
        cpu_act_store(out, ((size_t)b * a->Nq + i0 + i) * D + h * hd, o, (size_t)hd);   // rounded once at bf16
        lse[((size_t)b * a->H + h) * a->Nq + i0 + i] = t->m[i] + logf(t->l[i]);
    }
}

void cpu_attention_forward(const AttnArgs *a, Act *out, float *lse) {
    int qt = (a->Nq + QT - 1) / QT;
#pragma omp parallel
    {
        Tile t = tile_new(a->hd);
#pragma omp for collapse(3) schedule(static)
        for (int b = 0; b < a->B; b++)
            for (int h = 0; h < a->H; h++)
                for (int q = 0; q < qt; q++) forward_tile(a, out, lse, b, h, q * QT, &t);
        tile_free(&t);
    }
}

// One (query tile, key tile) of backward. With P = exp(S - lse) and
// dS = P ∘ (dO·Vᵀ - Di) · scale (Di = dO·O per row, = Σ_j P_ij dP_ij):
// dV += Pᵀ·dO, dK += dSᵀ·Q, dQ (t->o) += dS·K.
static void backward_key_tile(const AttnArgs *a, Tile *t, int nq, const float *go, const float *L,
                              const float *Di, const KeyTile *kt) {
    int hd = a->hd, D = a->H * hd, n = kt->n, ld = (int)kt->ld, ldg = (int)kt->ldg;
    tile_scores(a, t, nq, kt);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, n, hd, 1.0f, go, D, kt->v, ld, 0.0f, t->dp, KT);
    for (int i = 0; i < nq; i++) {
        float *p = t->s + (size_t)i * KT, *dp = t->dp + (size_t)i * KT;
        cpu_vexp(p, p, L[i], (size_t)n);   // recomputed probabilities
        for (int j = 0; j < n; j++) dp[j] = p[j] * (dp[j] - Di[i]) * a->scale;
    }
    if (kt->dv)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, nq, 1.0f, t->s, KT, go, D, 1.0f, kt->dv, ldg);
    if (kt->dk)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, nq, 1.0f, t->dp, KT, t->q, hd, 1.0f, kt->dk, ldg);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, n, 1.0f, t->dp, KT, kt->k, ld, 1.0f, t->o, hd);
}

static void backward_tile(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse,
                          const float *dout, int b, int h, int i0, Tile *t) {
    int hd = a->hd, D = a->H * hd, nq = a->Nq - i0 < QT ? a->Nq - i0 : QT;
    const float *go = dout + ((size_t)b * a->Nq + i0) * D + h * hd;
    const float *L = lse + ((size_t)b * a->H + h) * a->Nq + i0;
    float *Di = t->m;
    for (int i = 0; i < nq; i++) {   // Di = dO·O, with O as stored (bf16 at bf16: widened into t->o first)
        cpu_act_load(t->o, out, ((size_t)b * a->Nq + i0 + i) * D + h * hd, (size_t)hd);
        Di[i] = dot(go + (size_t)i * D, t->o, hd);
    }
    load_q(a, b, h, i0, nq, t);
    memset(t->o, 0, (size_t)nq * hd * 4);
    KeyTile kt;
    for (int k = 0; key_tile(a, g, b, h, k, &kt, t); k++) backward_key_tile(a, t, nq, go, L, Di, &kt);
    if (g->dq)   // scatter-add this tile's dq (GLCA's rows are gathered)
        for (int i = 0; i < nq; i++) {
            float *dq = g->dq + b * a->q_bstride + qrow(a, b, i0 + i) * a->q_tstride + h * hd;
            for (int d = 0; d < hd; d++) dq[d] += t->o[(size_t)i * hd + d];
        }
}

static void backward_pair(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse,
                          const float *dout, int b, int h, Tile *t) {
    for (int i0 = 0; i0 < a->Nq; i0 += QT) backward_tile(a, g, out, lse, dout, b, h, i0, t);
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

void cpu_attention_backward(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse,
                            const float *dout) {
    int B = a->B, H = a->H;
    // GLCA: queries are a gathered subset, so dq rows are distinct per b; dk/dv rows
    // belong to b. PWCA with a permutation: the dk2/dv2 rows of different b are disjoint.
    int by_pair = a->n2 == 0 || is_permutation(a->kv2_b, B);
#pragma omp parallel
    {
        Tile t = tile_new(a->hd);
        if (by_pair) {
#pragma omp for collapse(2) schedule(static)
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++) backward_pair(a, g, out, lse, dout, b, h, &t);
        } else {
#pragma omp for schedule(static)
            for (int h = 0; h < H; h++)
                for (int b = 0; b < B; b++) backward_pair(a, g, out, lse, dout, b, h, &t);
        }
        tile_free(&t);
    }
}
