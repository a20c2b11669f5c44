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
// The products inside a tile are cpu_tile_gemm calls (tile_gemm.c) on the strided views:
// one AVX-512 or AVX2 micro-kernel that packs nothing. The scores are held transposed, Sᵀ [keys,
// queries] = K·Qᵀ, so that the softmax's per-query max, exponentials and sums run down the
// columns, eight queries to a vector, and every product reads its operands in place (Qᵀ and
// dOᵀ are made once a query tile). Key tiles never straddle the two key buffers of PWCA, so
// every key tile is one strided matrix and the keys are never concatenated.
//
// Determinism: forward splits over (b, h, query tile), each output row owned
// by one unit; backward over (b, h) pairs, whose query tiles run in order, so
// dk/dv accumulate in a fixed order. Results are identical for any thread
// count. For PWCA, dk2/dv2 land in rows of batch element kv2_b[b]; when kv2_b
// is not a permutation two pairs could write the same rows, so the split
// falls back to heads only.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cpu/attention_tile.h"

// Packs (b, h)'s keys and values into t->kp / t->vp, unless they are there already.
static void pack_kv(const AttnArgs *a, int b, int h, Tile *t) {
    if (t->pb == b && t->ph == h) return;
    for (int j = 0; j < a->n1 + a->n2; j++) {
        int second = j >= a->n1;
        long off = kv_off(a, b, h, second, second ? j - a->n1 : j);
        cpu_act_load(t->kp + (size_t)j * a->hd, second ? a->k2 : a->k1, off, a->hd);
        cpu_act_load(t->vp + (size_t)j * a->hd, second ? a->v2 : a->v1, off, a->hd);
    }
    t->pb = b, t->ph = h;
}

// Key tile t of (b, h), whose keys t->kp (t->kp16 at bf16) holds; returns 0 past the last one.
int att_key_tile(const AttnArgs *a, const AttnGrads *g, int b, int h, int t, KeyTile *kt, Tile *tl) {
    int t1 = (a->n1 + KT - 1) / KT, t2 = (a->n2 + KT - 1) / KT;
    if (t >= t1 + t2) return 0;
    int second = t >= t1, j = (second ? t - t1 : t) * KT, n = second ? a->n2 : a->n1;
    long off = kv_off(a, b, h, second, j);
    kt->ldg = second ? a->kv2_tstride : a->kv1_tstride;
    kt->j0 = second ? a->n1 + j : j;
    kt->jT = second ? even(a->n1) + j : j;
    kt->n = n - j < KT ? n - j : KT;
    kt->ld = a->hd;
    kt->k = tl->kp ? tl->kp + (size_t)kt->j0 * a->hd : NULL;
    kt->v = tl->vp ? tl->vp + (size_t)kt->j0 * a->hd : NULL;
    float *dk = g ? (second ? g->dk2 : g->dk1) : NULL, *dv = g ? (second ? g->dv2 : g->dv1) : NULL;
    kt->dk = dk ? dk + off : NULL;
    kt->dv = dv ? dv + off : NULL;
    return 1;
}

// Sized as cpu_attention_scratch counts it (backend/cpu_scratch_rule.h): on the bf16 tile the
// fp32 packs and transposes give way to the bf16 operands (attention_tile.h).
static Tile tile_new(const AttnArgs *a) {
    int hd = a->hd, bf = att_bf16(a), nk = a->n1 + a->n2;
    size_t qh = cpu_att_qrows(a->Nq) * hd * 4, tq = (size_t)QT * hd * 4, kr = cpu_att_krows(a->n1, a->n2),
           st = kr * QT * 4, kv = (size_t)nk * hd * 4;
    Tile t = {.q = xmalloc(qh), .o = xmalloc(bf ? tq : qh), .s = xmalloc(st), .dp = xmalloc(st), .go = xmalloc(qh),
              .m = xmalloc(QT * 4), .l = xmalloc(QT * 4), .L = xmalloc(QT * 4), .pb = -1, .ph = -1};
    if (!bf) {
        t.qT = xcalloc(1, tq), t.gT = xcalloc(1, tq), t.kp = xmalloc(kv), t.vp = xmalloc(kv);
        return t;
    }
    t.ldT = even(a->n1) + even(a->n2);
    size_t rows = (size_t)nk * hd * 2, cols = (size_t)hd * t.ldT * 2, pairs = (size_t)QT * hd * 2,
           pk = (size_t)even((int)kr) * QT * 2;
    t.kp16 = xmalloc(rows), t.vp16 = xmalloc(rows), t.kT16 = xmalloc(cols), t.vT16 = xmalloc(cols);
    t.qTI = xmalloc(pairs), t.qI = xmalloc(pairs), t.gTI = xmalloc(pairs), t.gI = xmalloc(pairs);
    t.pI = xmalloc(pk), t.p16 = xmalloc(pk), t.ds16 = xmalloc(pk), t.dsI = xmalloc(pk);
    return t;
}
static void tile_free(Tile *t) {
    free(t->q); free(t->qT); free(t->o); free(t->s); free(t->dp); free(t->go); free(t->gT);
    free(t->m); free(t->l); free(t->L); free(t->kp); free(t->vp);
    free(t->kp16); free(t->vp16); free(t->kT16); free(t->vT16); free(t->qTI); free(t->qI); free(t->gTI);
    free(t->gI); free(t->pI); free(t->p16); free(t->ds16); free(t->dsI);
}

// xT [hd, QT] = the nq rows of x (row stride ld) transposed; columns nq..pad8(nq) zero.
static void transpose_rows(float *xT, const float *x, long ld, int nq, int hd) {
    for (int d = 0; d < hd; d++) {
        for (int i = 0; i < nq; i++) xT[d * QT + i] = x[i * ld + d];
        for (int i = nq; i < pad8(nq); i++) xT[d * QT + i] = 0;
    }
}

// Copies query rows [i0, i0+nq) of head h into t->q (widened at bf16; GLCA's rows are a
// gather) and their transpose into t->qT.
static void load_q(const AttnArgs *a, int b, int h, int i0, int nq, Tile *t) {
    for (int i = 0; i < nq; i++)
        cpu_act_load(t->q + (size_t)i * a->hd, a->q, b * a->q_bstride + qrow(a, b, i0 + i) * a->q_tstride + h * a->hd,
                     (size_t)a->hd);
    transpose_rows(t->qT, t->q, a->hd, nq, a->hd);
}

// Sᵀ = scale · K Qᵀ for one (query tile, key tile): [kt->n, pad8(nq)], leading dimension QT.
static void tile_scores(const AttnArgs *a, const Tile *t, int nq, const KeyTile *kt) {
    cpu_tile_gemm(t->s, QT, kt->k, kt->ld, 1, t->qT, QT, kt->n, pad8(nq), a->hd, a->scale, 0);
}

// One key tile of the online softmax, query by query down Sᵀ's columns: the new max,
// Pᵀ = exp(Sᵀ - m), the sums (over keys in order), and c[i] = exp(m_old - m_new), by which
// what the rows hold so far is rescaled.
void att_softmax_tile(Tile *t, int nq, int n, float *c, uint16_t *xI) {
    int nv = pad8(nq);
    float mx[QT], sum[QT] = {0};
    for (int i = 0; i < nv; i++) mx[i] = i < nq ? t->m[i] : 0;   // padded queries: finite, never used
    for (int j = 0; j < n; j++) {
        const float *s = t->s + (size_t)j * QT;
        for (int i = 0; i < nv; i++) mx[i] = s[i] > mx[i] ? s[i] : mx[i];
    }
    if (xI) att16_exp_pairs(xI, t->s, n, nv, mx, sum);
    else cpu_vexp_rows(t->s, QT, n, nv, mx, sum, cpu_bf16);   // at bf16 the polynomial: P is rounded next
    for (int i = 0; i < nq; i++) {
        c[i] = expf(t->m[i] - mx[i]);   // c = 0 on the first tile (m_old = -inf)
        t->l[i] = t->l[i] * c[i] + sum[i];
        t->m[i] = mx[i];
    }
}

// One key tile of forward: the softmax, O's rows rescaled, then O += P·V.
static void forward_key_tile(const AttnArgs *a, Tile *t, int nq, const KeyTile *kt) {
    int hd = a->hd;
    float c[QT];
    tile_scores(a, t, nq, kt);
    att_softmax_tile(t, nq, kt->n, c, NULL);
    for (int i = 0; i < nq; i++)
        for (int d = 0; d < hd; d++) t->o[(size_t)i * hd + d] *= c[i];
    cpu_tile_gemm(t->o, hd, t->s, 1, QT, kt->v, kt->ld, nq, hd, kt->n, 1.0f, 1);
}

static void forward_tile(const AttnArgs *a, Act *out, float *lse, int b, int h, int i0, Tile *t) {
    int hd = a->hd, D = a->H * hd, nq = a->Nq - i0 < QT ? a->Nq - i0 : QT;
    pack_kv(a, b, h, t);   // once per (b, h) a thread meets: its query tiles come in a row
    load_q(a, b, h, i0, nq, t);
    memset(t->o, 0, (size_t)nq * hd * 4);
    for (int i = 0; i < nq; i++) t->m[i] = -INFINITY, t->l[i] = 0;
    KeyTile kt;
    for (int k = 0; att_key_tile(a, NULL, b, h, k, &kt, t); k++) forward_key_tile(a, t, nq, &kt);
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
        Tile t = tile_new(a);
#pragma omp for collapse(3) schedule(static)
        for (int b = 0; b < a->B; b++)
            for (int h = 0; h < a->H; h++)
                for (int q = 0; q < qt; q++)
                    if (att_bf16(a)) att16_forward_tile(a, out, lse, b, h, q * QT, &t);
                    else forward_tile(a, out, lse, b, h, q * QT, &t);
        tile_free(&t);
    }
}

// Pᵀ = exp(Sᵀ - lse) recomputed in t->s and dSᵀ = Pᵀ ∘ (dPᵀ - Di) · scale in t->dp, for the
// n keys and nv (padded) queries of a backward key tile (Di in t->m, lse in t->L).
void att_dscores(const AttnArgs *a, Tile *t, int n, int nv) {
    const float *Di = t->m;
    cpu_vexp_rows(t->s, QT, n, nv, t->L, NULL, cpu_bf16);   // recomputed probabilities, as forward's
    for (int j = 0; j < n; j++) {
        const float *p = t->s + (size_t)j * QT;
        float *dp = t->dp + (size_t)j * QT;
        for (int i = 0; i < nv; i++) dp[i] = p[i] * (dp[i] - Di[i]) * a->scale;
    }
}

// A backward query tile's statistics: Di = dO·O (O as stored, widened into row) in t->m and the
// saved lse in t->L, zero for the padded queries up to pad8(nq).
void att_backward_stats(const AttnArgs *a, const Act *out, const float *lse, const float *dout, int b, int h, int i0,
                        int nq, Tile *t, float *row) {
    int hd = a->hd, D = a->H * hd;
    const float *go = dout + ((size_t)b * a->Nq + i0) * D + h * hd;
    const float *L = lse + ((size_t)b * a->H + h) * a->Nq + i0;
    for (int i = 0; i < pad8(nq); i++) {
        if (i >= nq) { t->m[i] = t->L[i] = 0; continue; }
        cpu_act_load(row, out, ((size_t)b * a->Nq + i0 + i) * D + h * hd, (size_t)hd);
        t->m[i] = dot(go + (size_t)i * D, row, hd);
        t->L[i] = L[i];
    }
}

// One (query tile, key tile) of backward, transposed as forward. With P = exp(S - lse) and
// dS = P ∘ (dO·Vᵀ - Di) · scale (Di = dO·O per row, = Σ_j P_ij dP_ij):
// dV += Pᵀ·dO, dK += dSᵀ·Q, dQ (t->o) += dS·K. t->L and t->m (Di) are padded with zeros.
static void backward_key_tile(const AttnArgs *a, Tile *t, int nq, const KeyTile *kt) {
    int hd = a->hd, n = kt->n, nv = pad8(nq);
    tile_scores(a, t, nq, kt);
    cpu_tile_gemm(t->dp, QT, kt->v, kt->ld, 1, t->gT, QT, n, nv, hd, 1.0f, 0);   // dPᵀ = V·dOᵀ
    att_dscores(a, t, n, nv);
    if (kt->dv) cpu_tile_gemm(kt->dv, kt->ldg, t->s, QT, 1, t->go, hd, n, hd, nq, 1.0f, 1);
    if (kt->dk) cpu_tile_gemm(kt->dk, kt->ldg, t->dp, QT, 1, t->q, hd, n, hd, nq, 1.0f, 1);
    cpu_tile_gemm(t->o, hd, t->dp, 1, QT, kt->k, kt->ld, nq, hd, n, 1.0f, 1);
}

static void backward_tile(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse,
                          const float *dout, int b, int h, int i0, Tile *t) {
    int hd = a->hd, D = a->H * hd, nq = a->Nq - i0 < QT ? a->Nq - i0 : QT;
    const float *go = dout + ((size_t)b * a->Nq + i0) * D + h * hd;
    att_backward_stats(a, out, lse, dout, b, h, i0, nq, t, t->o);   // O's rows widened in t->o, cleared below
    load_q(a, b, h, i0, nq, t);
    for (int i = 0; i < nq; i++) memcpy(t->go + (size_t)i * hd, go + (size_t)i * D, (size_t)hd * 4);
    transpose_rows(t->gT, t->go, hd, nq, hd);
    memset(t->o, 0, (size_t)nq * hd * 4);
    KeyTile kt;
    for (int k = 0; att_key_tile(a, g, b, h, k, &kt, t); k++) backward_key_tile(a, t, nq, &kt);
    if (g->dq)   // scatter-add this tile's dq (GLCA's rows are gathered)
        for (int i = 0; i < nq; i++) {
            float *dq = g->dq + b * a->q_bstride + qrow(a, b, i0 + i) * a->q_tstride + h * hd;
            for (int d = 0; d < hd; d++) dq[d] += t->o[(size_t)i * hd + d];
        }
}

static void backward_pair(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse,
                          const float *dout, int b, int h, Tile *t) {
    if (att_bf16(a)) {
        att16_pack_kv(a, b, h, t);
        for (int i0 = 0; i0 < a->Nq; i0 += QT) att16_backward_tile(a, g, out, lse, dout, b, h, i0, t);
        return;
    }
    pack_kv(a, b, h, t);
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
        Tile t = tile_new(a);
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
