// tile_dpbf16.c: C (+)= alpha·A·B on bf16 operands with fp32 accumulation on AVX512_BF16's
// vdpbf16ps: attention's tile products at precision bf16 on CPUs that have it but no AMX (AMD
// Zen 4 and 5). The contract and layouts are cpu_tile_amx_bf16's (cpu.h), so attention_bf16.c
// lays its operands out once for either: A(i, p) = a[i·lda + p], B pair-interleaved,
// B(p, j) = b2[(p/2)·2·ldb + 2·j + p%2], k even.
//
// Why: vdpbf16ps multiplies 32 bf16 pairs into 16 fp32 lanes in one instruction at the rate of
// an fp32 FMA on Zen 5 (one core: 5.8–6.3 G/s against 6.5–6.8), twice the fp32 tile's products.
// One k-pair of a row of A is one 32-bit word, broadcast; a row of B's pairs, 16 columns, is one
// vector: C's row i, columns j..j+15 += that word · that vector. C goes 6 rows × 64 columns at
// a time (24 accumulators), the last vector of a row masked to the columns left, so nothing
// outside the m × n block of C, the m rows of A or the k/2 pair rows of B is touched. Each
// element's sum runs over k in order, so the result repeats for any thread count; inside
// vdpbf16ps the two products of a pair are added as the hardware does (denormals flushed), so
// the bits are not the fp32 tile's, only within the op table's bf16 tolerance.
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include "backend/cpu/cpu.h"

#define DP __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define INLINE inline __attribute__((always_inline))
enum { MR = 6, NV = 4 };   // rows × 16-column vectors per block

int cpu_has_avx512_bf16(void) {
    static int v = -1;   // racing first calls compute and store the same answer
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        r = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    return r;
}

// Rows [i0, i0+R) × the nv vectors from column j0 (the last one masked by ml): R and nv are
// constants in each instance below, so the accumulators live in registers.
static DP INLINE void block(float *c, long ldc, const uint16_t *a, long lda, const uint16_t *b2, long ldb, int i0,
                            const int R, int j0, const int nv, __mmask16 ml, int k, float alpha, int acc) {
    __m512 z[MR][NV];
    __mmask16 mk[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) mk[v] = v == nv - 1 ? ml : (__mmask16)0xffff;
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            z[r][v] = acc ? _mm512_maskz_loadu_ps(mk[v], c + (i0 + r) * ldc + j0 + 16 * v) : _mm512_setzero_ps();
    const uint16_t *ap = a + i0 * lda, *bp = b2 + 2 * j0;
    for (int p = 0; p < k; p += 2, bp += 2 * ldb) {
        __m512bh b[NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) b[v] = (__m512bh)_mm512_maskz_loadu_epi32(mk[v], bp + 32 * v);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            uint32_t w;
            memcpy(&w, ap + r * lda + p, 4);   // the k-pair (p, p+1) of row r
            __m512bh x = (__m512bh)_mm512_set1_epi32((int)w);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) z[r][v] = _mm512_dpbf16_ps(z[r][v], x, b[v]);
        }
    }
    __m512 al = _mm512_set1_ps(alpha);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            _mm512_mask_storeu_ps(c + (i0 + r) * ldc + j0 + 16 * v, mk[v], acc ? z[r][v] : _mm512_mul_ps(z[r][v], al));
}

typedef void (*BlockFn)(float *, long, const uint16_t *, long, const uint16_t *, long, int, int, __mmask16, int, float,
                        int);
#define BLOCK(R, V)                                                                                             \
    static DP void block_##R##_##V(float *c, long ldc, const uint16_t *a, long lda, const uint16_t *b2, long ldb, \
                                   int i0, int j0, __mmask16 ml, int k, float alpha, int acc) {                 \
        block(c, ldc, a, lda, b2, ldb, i0, R, j0, V, ml, k, alpha, acc);                                        \
    }
#define BLOCKS(R) BLOCK(R, 1) BLOCK(R, 2) BLOCK(R, 3) BLOCK(R, 4)
BLOCKS(1) BLOCKS(2) BLOCKS(3) BLOCKS(4) BLOCKS(5) BLOCKS(6)
#define ROW(R) {block_##R##_1, block_##R##_2, block_##R##_3, block_##R##_4}
static const BlockFn blocks[MR][NV] = {ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6)};

void cpu_tile_dp_bf16(float *c, long ldc, const uint16_t *a, long lda, const uint16_t *b2, long ldb, int m, int n,
                      int k, float alpha, int acc) {
    if (m <= 0 || n <= 0) return;
    for (int j0 = 0; j0 < n; j0 += 16 * NV) {   // 64-column strips; all rows of a strip reuse its B
        int w = n - j0 < 16 * NV ? n - j0 : 16 * NV, nv = (w + 15) / 16, last = w - 16 * (nv - 1);
        __mmask16 ml = (__mmask16)((1u << last) - 1);
        for (int i0 = 0; i0 < m; i0 += MR) {
            int r = m - i0 < MR ? m - i0 : MR;
            blocks[r - 1][nv - 1](c, ldc, a, lda, b2, ldb, i0, j0, ml, k, alpha, acc);
        }
    }
}
