// attention_bf16.c: the attention tile at precision bf16 on CPUs with AMX-BF16
// (cpu_attention_forward/backward choose it, attention.c): the same tiles, online softmax and
// recompute as the fp32 tile, with every product on bf16 operands and fp32 accumulation on
// AMX tiles (cpu_tile_amx_bf16). q, k and v are the stored bf16 values; P, dS and dO are rounded
// to bf16 where a product takes them, as the GPU's bf16 attention does; the scores, softmax
// statistics, Di and every accumulator stay fp32.
//
// tdpbf16ps and vdpbf16ps pair adjacent elements of the reduced dimension, so each product's operands are
// laid out with those pairs together (attention_tile.h): Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ reduce over
// hd (K, V as rows; Qᵀ, dOᵀ pair-interleaved along hd); dV += Pᵀ·dO and dK += dSᵀ·Q over the
// queries (Pᵀ, dSᵀ as rows; dO, Q interleaved along the queries); O and dQ over the keys, so
// they are made transposed, Oᵀ += Vᵀ·Pᵀ and dQᵀ += Kᵀ·dSᵀ, with Vᵀ and Kᵀ laid out once per
// (b, h) and Pᵀ, dSᵀ interleaved along the keys as the softmax writes them.
#include <math.h>
#include <string.h>
#include "backend/cpu/attention_tile.h"
#include "backend/cpu/exp512.h"

static const uint16_t *act16(const Act *p) { return (const uint16_t *)p; }

// dst [cols, ldd] = src [rows, cols] transposed (16-bit elements, rows contiguous at stride
// lds), 32 rows at a time so that a block of src stays in L1 while its columns are gathered.
static void transpose16(uint16_t *dst, long ldd, const uint16_t *src, long lds, int rows, int cols) {
    for (int j0 = 0; j0 < rows; j0 += 32) {
        int nj = rows - j0 < 32 ? rows - j0 : 32;
        for (int d = 0; d < cols; d++) {
            uint16_t *o = dst + (size_t)d * ldd + j0;
            const uint16_t *x = src + (size_t)j0 * lds + d;
            for (int j = 0; j < nj; j++) o[j] = x[(size_t)j * lds];
        }
    }
}

// w[i] = the pair (lo[i], hi[i]), i < n: two rows zipped into one row of pairs.
static void zip16(uint32_t *w, const uint16_t *lo, const uint16_t *hi, int n) {
    for (int i = 0; i < n; i++) w[i] = (uint32_t)lo[i] | (uint32_t)(hi ? hi[i] : 0) << 16;
}

// (b, h)'s keys and values as rows and transposed, each buffer's from an even column.
void att16_pack_kv(const AttnArgs *a, int b, int h, Tile *t) {
    if (t->pb == b && t->ph == h) return;
    int hd = a->hd, ldT = t->ldT, e1 = even(a->n1);
    for (int j = 0; j < a->n1 + a->n2; j++) {
        int second = j >= a->n1, r = second ? j - a->n1 : j;
        long off = kv_off(a, b, h, second, r);
        memcpy(t->kp16 + (size_t)j * hd, act16(second ? a->k2 : a->k1) + off, (size_t)hd * 2);
        memcpy(t->vp16 + (size_t)j * hd, act16(second ? a->v2 : a->v1) + off, (size_t)hd * 2);
    }
    transpose16(t->kT16, ldT, t->kp16, hd, a->n1, hd);
    transpose16(t->vT16, ldT, t->vp16, hd, a->n1, hd);
    transpose16(t->kT16 + e1, ldT, t->kp16 + (size_t)a->n1 * hd, hd, a->n2, hd);
    transpose16(t->vT16 + e1, ldT, t->vp16 + (size_t)a->n1 * hd, hd, a->n2, hd);
    for (int d = 0; d < hd; d++) {   // the zero key that pads an odd count
        if (a->n1 % 2) t->kT16[(size_t)d * ldT + a->n1] = t->vT16[(size_t)d * ldT + a->n1] = 0;
        if (a->n2 % 2) t->kT16[(size_t)d * ldT + e1 + a->n2] = t->vT16[(size_t)d * ldT + e1 + a->n2] = 0;
    }
    t->pb = b, t->ph = h;
}

// x's rows i < nq (row i at rows[i], bf16 bits), zero up to pad8(nq), into xTI [hd/2, QT, 2]
// (pairs along hd: a row's own pairs, transposed as 32-bit words) and xI [QT/2, hd, 2] (pairs
// along the rows: two rows zipped).
static void interleave(uint16_t *xTI, uint16_t *xI, const uint16_t *const *rows, int nq, int hd) {
    static const uint16_t zero[256];
    int nv = pad8(nq);
    for (int i = 0; i < nv; i++) {
        const uint32_t *w = (const uint32_t *)(const void *)(i < nq ? rows[i] : zero);
        uint32_t *o = (uint32_t *)(void *)xTI + i;
        for (int d2 = 0; d2 < hd / 2; d2++) o[(size_t)d2 * QT] = w[d2];
    }
    for (int i = 0; i < nv; i += 2)
        zip16((uint32_t *)(void *)(xI + (size_t)i * hd), i < nq ? rows[i] : zero, i + 1 < nq ? rows[i + 1] : zero, hd);
}

static void load_q16(const AttnArgs *a, int b, int h, int i0, int nq, Tile *t) {
    const uint16_t *rows[QT] = {NULL};
    for (int i = 0; i < nq; i++) rows[i] = act16(a->q) + b * a->q_bstride + qrow(a, b, i0 + i) * a->q_tstride + h * a->hd;
    interleave(t->qTI, t->qI, rows, nq, a->hd);
}

// Sᵀ = scale · K Qᵀ [n, pad8(nq)] (leading dimension QT).
static void scores16(const AttnArgs *a, Tile *t, int nq, const KeyTile *kt) {
    tile16(t->s, QT, t->kp16 + (size_t)kt->j0 * a->hd, a->hd, t->qTI, QT, kt->n, pad8(nq), a->hd, a->scale, 0);
}

// The n rows of an fp32 [·, QT] tile rounded to bf16: kept as rows where rows is given, and
// pair-interleaved along the rows into xI [even(n)/2, QT, 2] (a zero row pads an odd n) where
// xI is; tmp: two rows of scratch when rows is not given.
static void round_keys(uint16_t *xI, uint16_t *rows, uint16_t *tmp, const float *x, int n, int nv) {
    for (int j = 0; j < even(n); j += 2) {
        uint16_t *r0 = rows ? rows + (size_t)j * QT : tmp, *r1 = rows ? r0 + QT : tmp + QT;
        cpu_bf16_pack_row(r0, x + (size_t)j * QT, (size_t)nv);
        if (j + 1 < n) cpu_bf16_pack_row(r1, x + (size_t)(j + 1) * QT, (size_t)nv);
        else memset(r1, 0, (size_t)nv * 2);
        if (xI) zip16((uint32_t *)(void *)(xI + (size_t)j * QT), r0, r1, nv);
    }
}

// ---- the passes over a key tile fused, on AVX-512 ----
// Each element's exponential, product and rounding are those of the passes they replace
// (cpu_vexp_rows' polynomial, att_dscores, round_keys; the sums over keys in the same order), so
// the bits are the same; what goes is writing Pᵀ and dSᵀ back as fp32 and reading them again
// (at 448 px the rounding passes were 3% of a bf16 step, the exponentials 1.5%).
#define BF16_512 __attribute__((target("avx512f,avx512bw,avx512vl")))

static BF16_512 inline __mmask16 lanes(int nv, int i0) {
    return (__mmask16)(nv - i0 >= 16 ? 0xffff : (1u << (nv - i0)) - 1);
}

// Forward: Pᵀ = exp(Sᵀ − mx) for rows j < n of s (queries i < nv across), sum[i] += them (keys
// in order), P rounded into xI's pairs [even(n)/2, QT, 2] (an odd n's pad row zero).
static AVX512BF16 void exp_pairs(uint16_t *xI, const float *s, int n, int nv, const float *mx, float *sum, int cvt) {
    for (int i0 = 0; i0 < nv; i0 += 16) {
        __mmask16 k = lanes(nv, i0);
        __m512 sh = _mm512_maskz_loadu_ps(k, mx + i0), acc = _mm512_setzero_ps();
        for (int j = 0; j < n; j += 2) {
            __m512 e0 = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + (size_t)j * QT + i0), sh));
            __m512 e1 = _mm512_setzero_ps();
            acc = _mm512_add_ps(acc, e0);
            if (j + 1 < n) {
                e1 = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + (size_t)(j + 1) * QT + i0), sh));
                acc = _mm512_add_ps(acc, e1);
            }
            __m512i w = bf16_zip512(bf16_round2x512(e0, e1, cvt));
            _mm512_mask_storeu_epi32((uint32_t *)(void *)xI + (size_t)j / 2 * QT + i0, k, w);
        }
        _mm512_mask_storeu_ps(sum + i0, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, sum + i0), acc));
    }
}

void att16_exp_pairs(uint16_t *xI, const float *s, int n, int nv, const float *mx, float *sum) {
    exp_pairs(xI, s, n, nv, mx, sum, cpu_bf16_cvt());
}

// Backward: P = exp(Sᵀ − lse) and dS = P ∘ (dPᵀ − Di) · scale (att_dscores) for the n keys,
// rounded into p16 and ds16 as rows and ds into dsI's pairs (an odd n's pad row zero in all three).
// Two key rows at a time: both rounded by one instruction, and dsI's pair made in registers.
static AVX512BF16 inline void dscore_row(const Tile *t, size_t o, __mmask16 k, __m512 L, __m512 Di, __m512 sc,
                                         __m512 *p, __m512 *d) {
    *p = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, t->s + o), L));
    *d = _mm512_mul_ps(_mm512_mul_ps(*p, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, t->dp + o), Di)), sc);
}

static AVX512BF16 void dscores_round(const AttnArgs *a, Tile *t, int n, int nv, int cvt) {
    __m512 sc = _mm512_set1_ps(a->scale);
    for (int i0 = 0; i0 < nv; i0 += 16) {
        __mmask16 k = lanes(nv, i0);
        __m512 L = _mm512_maskz_loadu_ps(k, t->L + i0), Di = _mm512_maskz_loadu_ps(k, t->m + i0);
        for (int j = 0; j < n; j += 2) {
            size_t o = (size_t)j * QT + i0;
            __m512 p0, d0, p1 = _mm512_setzero_ps(), d1 = p1;
            dscore_row(t, o, k, L, Di, sc, &p0, &d0);
            if (j + 1 < n) dscore_row(t, o + QT, k, L, Di, sc, &p1, &d1);
            __m512i p = bf16_round2x512(p0, p1, cvt), d = bf16_round2x512(d0, d1, cvt);
            _mm256_mask_storeu_epi16(t->p16 + o, k, _mm512_castsi512_si256(p));
            _mm256_mask_storeu_epi16(t->p16 + o + QT, k, _mm512_extracti64x4_epi64(p, 1));
            _mm256_mask_storeu_epi16(t->ds16 + o, k, _mm512_castsi512_si256(d));
            _mm256_mask_storeu_epi16(t->ds16 + o + QT, k, _mm512_extracti64x4_epi64(d, 1));
            _mm512_mask_storeu_epi32((uint32_t *)(void *)t->dsI + (size_t)j / 2 * QT + i0, k, bf16_zip512(d));
        }
    }
}

static void forward_key_tile16(const AttnArgs *a, Tile *t, int nq, const KeyTile *kt) {
    int hd = a->hd, fused = cpu_isa() == 2;
    float c[QT];
    scores16(a, t, nq, kt);
    att_softmax_tile(t, nq, kt->n, c, fused ? t->pI : NULL);
    for (int d = 0; d < hd; d++)   // Oᵀ's columns are the queries
        for (int i = 0; i < nq; i++) t->o[(size_t)d * QT + i] *= c[i];
    if (!fused) round_keys(t->pI, NULL, t->p16, t->s, kt->n, pad8(nq));
    tile16(t->o, QT, t->vT16 + kt->jT, t->ldT, t->pI, QT, hd, nq, even(kt->n), 1.0f, 1);   // Oᵀ += Vᵀ·Pᵀ
}

void att16_forward_tile(const AttnArgs *a, Act *out, float *lse, int b, int h, int i0, Tile *t) {
    int hd = a->hd, D = a->H * hd, nq = a->Nq - i0 < QT ? a->Nq - i0 : QT;
    att16_pack_kv(a, b, h, t);
    load_q16(a, b, h, i0, nq, t);
    memset(t->o, 0, (size_t)QT * hd * 4);
    for (int i = 0; i < nq; i++) t->m[i] = -INFINITY, t->l[i] = 0;
    KeyTile kt;
    for (int k = 0; att_key_tile(a, NULL, b, h, k, &kt, t); k++) forward_key_tile16(a, t, nq, &kt);
    for (int i = 0; i < nq; i++) {
        float inv = 1.0f / t->l[i], *o = t->q;   // one output row, from Oᵀ's column
        for (int d = 0; d < hd; d++) o[d] = t->o[(size_t)d * QT + i] * inv;
        cpu_act_store(out, ((size_t)b * a->Nq + i0 + i) * D + h * hd, o, (size_t)hd);
        lse[((size_t)b * a->H + h) * a->Nq + i0 + i] = t->m[i] + logf(t->l[i]);
    }
}

// One (query tile, key tile) of backward, as the fp32 tile's (attention.c) on bf16 operands.
static void backward_key_tile16(const AttnArgs *a, Tile *t, int nq, const KeyTile *kt) {
    int hd = a->hd, n = kt->n, nv = pad8(nq);
    scores16(a, t, nq, kt);
    tile16(t->dp, QT, t->vp16 + (size_t)kt->j0 * hd, hd, t->gTI, QT, n, nv, hd, 1.0f, 0);   // dPᵀ = V·dOᵀ
    if (cpu_isa() == 2) {
        dscores_round(a, t, n, nv, cpu_bf16_cvt());
    } else {
        att_dscores(a, t, n, nv);
        round_keys(NULL, t->p16, NULL, t->s, n, nv);
        round_keys(t->dsI, t->ds16, NULL, t->dp, n, nv);
    }
    if (kt->dv) tile16(kt->dv, kt->ldg, t->p16, QT, t->gI, hd, n, hd, even(nq), 1.0f, 1);    // dV += Pᵀ·dO
    if (kt->dk) tile16(kt->dk, kt->ldg, t->ds16, QT, t->qI, hd, n, hd, even(nq), 1.0f, 1);   // dK += dSᵀ·Q
    tile16(t->o, QT, t->kT16 + kt->jT, t->ldT, t->dsI, QT, hd, nq, even(n), 1.0f, 1);       // dQᵀ += Kᵀ·dSᵀ
}

void att16_backward_tile(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse, const float *dout,
                         int b, int h, int i0, Tile *t) {
    int hd = a->hd, D = a->H * hd, nq = a->Nq - i0 < QT ? a->Nq - i0 : QT;
    const float *go = dout + ((size_t)b * a->Nq + i0) * D + h * hd;
    att_backward_stats(a, out, lse, dout, b, h, i0, nq, t, t->q);   // Di = dO·O in fp32
    load_q16(a, b, h, i0, nq, t);
    uint16_t *g16 = (uint16_t *)t->go;   // dO rounded to bf16, row by row (go: qrows × hd floats)
    const uint16_t *rows[QT] = {NULL};
    for (int i = 0; i < nq; i++) {
        cpu_bf16_pack_row(g16 + (size_t)i * hd, go + (size_t)i * D, (size_t)hd);
        rows[i] = g16 + (size_t)i * hd;
    }
    interleave(t->gTI, t->gI, rows, nq, hd);
    memset(t->o, 0, (size_t)QT * hd * 4);
    KeyTile kt;
    for (int k = 0; att_key_tile(a, g, b, h, k, &kt, t); k++) backward_key_tile16(a, t, nq, &kt);
    if (g->dq)   // scatter-add this tile's dq from dQᵀ's columns (GLCA's rows are gathered)
        for (int i = 0; i < nq; i++) {
            float *dq = g->dq + b * a->q_bstride + qrow(a, b, i0 + i) * a->q_tstride + h * hd;
            for (int d = 0; d < hd; d++) dq[d] += t->o[(size_t)d * QT + i];
        }
}
