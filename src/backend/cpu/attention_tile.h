// attention_tile.h: the tile and key-tile records the CPU attention shares between its fp32
// path (attention.c) and its bf16 one (attention_bf16.c).
#pragma once
#include "backend/cpu/attention_common.h"

enum { QT = CPU_ATT_QT, KT = CPU_ATT_KT };   // a tile's scores: 64 KiB, in L2 (cpu_scratch_rule.h counts the scratch)

// One key tile: rows [j0, j0+n) of buffer 1 or 2 (never both): k and v are rows of the
// head's packed copy, the gradients strided rows of the gradient buffers.
typedef struct {
    const float *k, *v;
    long ld;          // row stride of k and v (hd: packed)
    int j0, n;        // first key (over n1+n2) and count
    int jT;           // at bf16: its first column in kT16 / vT16 (each buffer's keys start even)
    float *dk, *dv;   // gradient rows of the same keys, or NULL
    long ldg;         // their row stride
} KeyTile;

// Per-thread tile scratch: QT query rows (gathered for GLCA) and their transpose qT [hd, QT]
// (columns past the tile's queries zero, up to a multiple of 8), their output or dq
// accumulator, the transposed scores Sᵀ and dPᵀ of one key tile [KT, QT], backward's dO rows
// (go) and dOᵀ [hd, QT], per-query statistics, and the keys and values of one (b, h), all
// n1 + n2 of them, packed [n1 + n2, hd] (kp, vp; widened at bf16) for the (pb, ph) last packed.
// Packed because the products read k and v as rows: at their own stride (3·D floats, 9 KiB
// for ViT-B) 256 rows fall into 4 of L1's 64 sets and evict each other.
//
// On the bf16 tile (attention_bf16.c) the products take bf16 operands (cpu_tile_amx_bf16's layouts):
// keys and values as rows (kp16, vp16 [n1 + n2, hd]) and transposed (kT16, vT16 [hd, ldT],
// each buffer's keys from an even column, odd counts padded with a zero column); the query
// and dO tiles pair-interleaved both ways (qTI, gTI [hd/2, QT, 2]: pairs along hd; qI, gI
// [QT/2, hd, 2]: pairs along queries); P and dS of a key tile rounded to bf16 as rows (p16,
// ds16 [KT, QT]) and pair-interleaved along keys (pI, dsI [KT/2, QT, 2]); o holds Oᵀ or dQᵀ
// [hd, QT]. kp and vp (fp32) are not made.
typedef struct {
    float *q, *qT, *o, *s, *dp, *go, *gT, *m, *l, *L, *kp, *vp;
    uint16_t *kp16, *vp16, *kT16, *vT16, *qTI, *qI, *gTI, *gI, *pI, *p16, *ds16, *dsI;
    int ldT;   // row stride of kT16 and vT16
    int pb, ph;
} Tile;

// Where key r of buffer 1 or 2 (second) of (b, h) starts in k, v and their gradients.
static inline long kv_off(const AttnArgs *a, int b, int h, int second, int r) {
    return second ? kv2_of(a, b) * a->kv2_bstride + r * a->kv2_tstride + h * a->hd
                  : b * a->kv1_bstride + r * a->kv1_tstride + h * a->hd;
}

// Queries padded to a multiple of 8: the vector width of the column-wise softmax.
static inline int pad8(int n) { return (n + 7) / 8 * 8; }
static inline int even(int n) { return (n + 1) & ~1; }

// At bf16, with an even head dim, where oneDNN runs the GEMMs (not DCAL_CPU_BF16=portable) on
// a CPU with AMX-BF16 or AVX512_BF16 the bf16 tile runs (attention_bf16.c); else the fp32 one,
// on q, k, v widened at bf16.
static inline int att_bf16(const AttnArgs *a) { return cpu_bf16 && a->hd % 2 == 0 && cpu_att_bf16(); }
// C (+)= alpha·A·B on the engine cpu_att_bf16 chose (cpu.h's contract for both).
static inline void tile16(float *c, long ldc, const uint16_t *a, long lda, const uint16_t *b2, long ldb, int m, int n,
                          int k, float alpha, int acc) {
    if (cpu_att_bf16() == CPU_ATT_AMX) cpu_tile_amx_bf16(c, ldc, a, lda, b2, ldb, m, n, k, alpha, acc);
    else cpu_tile_dp_bf16(c, ldc, a, lda, b2, ldb, m, n, k, alpha, acc);
}
void att16_pack_kv(const AttnArgs *a, int b, int h, Tile *t);
void att16_forward_tile(const AttnArgs *a, Act *out, float *lse, int b, int h, int i0, Tile *t);
void att16_backward_tile(const AttnArgs *a, const AttnGrads *g, const Act *out, const float *lse, const float *dout,
                         int b, int h, int i0, Tile *t);
int att_key_tile(const AttnArgs *a, const AttnGrads *g, int b, int h, int t, KeyTile *kt, Tile *tl);
// The online softmax of one key tile down Sᵀ's columns (t->s: scores in, Pᵀ out): the new
// max and sum per query; c[i] is what the rows so far are to be rescaled by. With xI (bf16 on
// AVX-512) Pᵀ goes rounded into xI's pairs instead (att16_exp_pairs), t->s left as it was.
void att_softmax_tile(Tile *t, int nq, int n, float *c, uint16_t *xI);
void att16_exp_pairs(uint16_t *xI, const float *s, int n, int nv, const float *mx, float *sum);
// Backward: a query tile's Di and lse (att_backward_stats; row: hd floats of scratch), and a key
// tile's recomputed Pᵀ and dSᵀ from Sᵀ and dPᵀ (att_dscores).
void att_backward_stats(const AttnArgs *a, const Act *out, const float *lse, const float *dout, int b, int h, int i0,
                        int nq, Tile *t, float *row);
void att_dscores(const AttnArgs *a, Tile *t, int n, int nv);
