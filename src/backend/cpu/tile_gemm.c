// tile_gemm.c: the one product inside an attention tile, C (+)= A·B, as an AVX2 or AVX-512
// micro-kernel.
//
// Why not sgemm: attention's products are small (64 queries × 256 keys × head dim 64) and
// OpenBLAS packs both operands on every call; in a 448-px step that packing, the beta pass and
// the call overhead held attention to ~80 GFLOP/s against sgemm's ~175 on the big GEMMs
// (bench/RESULTS.md). Here B is read in place, a row of n floats at a time, and A one element
// at a time by broadcast at any row and column stride, so every product of the tile — the
// scores Sᵀ = K·Qᵀ, P·V from the stored Pᵀ, dPᵀ = V·dOᵀ, dV += Pᵀ·dO, dK += dSᵀ·Q,
// dQ += dS·K — is this one routine with no copies (attention.c transposes Q and dO once a
// query tile).
//
// Bits: each C element is one chain of fused multiply-adds over k in ascending order, from 0
// (then times alpha, one rounding) or from C. The vector lanes are independent chains and the
// scalar loop (no AVX2, or the n % 8 columns) runs the same chain with fmaf, so the result does
// not depend on the CPU, the tiling or the thread count (unit_tile_gemm checks every path).
#include <immintrin.h>
#include <math.h>
#include "backend/cpu/cpu.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE inline __attribute__((always_inline))

enum { MR = 6 };   // rows of C a micro-tile holds: 6 × 16 columns = 12 of the 16 ymm registers

// C[i, j] for rows [i0, i0+R) and columns [j0, j0 + 8·NV), every k; R and NV are constants at
// every call (MICRO), so the accumulators are named registers, not an array on the stack.
#define ROW(i, X)                                                                                    \
    if (R > i) { X(i, a); if (NV > 1) X(i, b); }
#define C_AT(i, v) (c + (i0 + i) * ldc + j0 + ((#v)[0] == 'b' ? 8 : 0))
#define C_LOAD(i, v) c##i##v = acc ? _mm256_loadu_ps(C_AT(i, v)) : _mm256_setzero_ps()
#define C_STORE(i, v) _mm256_storeu_ps(C_AT(i, v), acc ? c##i##v : _mm256_mul_ps(c##i##v, al))
// One row's broadcast and its FMAs together: 12 accumulators, 2 of B and 1 of A fit the 16
// registers (all six broadcasts first would spill).
#define C_FMA(i)                                                                                     \
    if (R > i) {                                                                                     \
        __m256 x = _mm256_broadcast_ss(ap + i * ars);                                               \
        c##i##a = _mm256_fmadd_ps(x, ba, c##i##a);                                                  \
        if (NV > 1) c##i##b = _mm256_fmadd_ps(x, bb, c##i##b);                                      \
    }
static AVX2 INLINE void micro(float *c, long ldc, const float *a, long ars, long acs, const float *b, long ldb,
                              int i0, const int R, int j0, const int NV, int k, float alpha, int acc) {
    __m256 c0a, c0b, c1a, c1b, c2a, c2b, c3a, c3b, c4a, c4b, c5a, c5b;
    c0b = c1b = c2b = c3b = c4b = c5b = c1a = c2a = c3a = c4a = c5a = _mm256_setzero_ps();
    ROW(0, C_LOAD) ROW(1, C_LOAD) ROW(2, C_LOAD) ROW(3, C_LOAD) ROW(4, C_LOAD) ROW(5, C_LOAD)
    const float *ap = a + i0 * ars;
    for (int p = 0; p < k; p++, ap += acs) {
        __m256 ba = _mm256_loadu_ps(b + p * ldb + j0), bb = NV > 1 ? _mm256_loadu_ps(b + p * ldb + j0 + 8) : ba;
        C_FMA(0) C_FMA(1) C_FMA(2) C_FMA(3) C_FMA(4) C_FMA(5)
    }
    __m256 al = _mm256_set1_ps(alpha);
    ROW(0, C_STORE) ROW(1, C_STORE) ROW(2, C_STORE) ROW(3, C_STORE) ROW(4, C_STORE) ROW(5, C_STORE)
}

// The micro-tile for each row count, 16 or 8 columns wide.
#define MICRO(R)                                                                                     \
    static AVX2 void micro_##R(float *c, long ldc, const float *a, long ars, long acs, const float *b, \
                               long ldb, int i0, int j0, int nv, int k, float alpha, int acc) {     \
        if (nv == 2) micro(c, ldc, a, ars, acs, b, ldb, i0, R, j0, 2, k, alpha, acc);                \
        else micro(c, ldc, a, ars, acs, b, ldb, i0, R, j0, 1, k, alpha, acc);                        \
    }
MICRO(1) MICRO(2) MICRO(3) MICRO(4) MICRO(5) MICRO(6)

typedef void (*MicroFn)(float *, long, const float *, long, long, const float *, long, int, int, int, int, float,
                        int);
static const MicroFn micro_rows[MR + 1] = {NULL, micro_1, micro_2, micro_3, micro_4, micro_5, micro_6};

// Columns [0, n8) in 16- and 8-wide strips. When all of B fits in half of L1 (Sᵀ's Qᵀ, dPᵀ's
// dOᵀ, dV's dO, dK's Q: 64 × 64 floats) the rows go outer, so that B and one row block of A
// stay in L1 across the strips; else (P·V's and dQ's 256 keys) the strip of B stays while the
// rows pass. The order of the micro-tiles changes no element's chain.
static AVX2 void gemm_avx2(float *c, long ldc, const float *a, long ars, long acs, const float *b, long ldb, int m,
                           int n8, int k, float alpha, int acc) {
    if ((size_t)k * n8 * sizeof(float) <= 16384) {
        for (int i0 = 0; i0 < m; i0 += MR) {
            int mr = m - i0 < MR ? m - i0 : MR;
            for (int j0 = 0; j0 < n8; j0 += 16)
                micro_rows[mr](c, ldc, a, ars, acs, b, ldb, i0, j0, n8 - j0 >= 16 ? 2 : 1, k, alpha, acc);
        }
        return;
    }
    for (int j0 = 0; j0 < n8; j0 += 16) {
        int nv = n8 - j0 >= 16 ? 2 : 1;
        for (int i0 = 0; i0 < m; i0 += MR) {
            int mr = m - i0 < MR ? m - i0 : MR;
            micro_rows[mr](c, ldc, a, ars, acs, b, ldb, i0, j0, nv, k, alpha, acc);
        }
    }
}

// ---- AVX-512: 8 rows × 32 columns (16 of the 32 zmm registers), tails by mask ----
// The same chains as above, 16 lanes to a vector; the last vector of a row is masked to the
// columns left, so no column falls to the scalar loop.
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
enum { MR5 = 8 };
#define ROW5(i, X)                                                                                   \
    if (R > i) { X(i, a); if (NV > 1) X(i, b); }
#define Z_MASK(v) ((#v)[0] == 'b' || NV == 1 ? ml : (__mmask16)0xffff)
#define Z_AT(i, v) (c + (i0 + i) * ldc + j0 + ((#v)[0] == 'b' ? 16 : 0))
#define Z_LOAD(i, v) z##i##v = acc ? _mm512_maskz_loadu_ps(Z_MASK(v), Z_AT(i, v)) : _mm512_setzero_ps()
#define Z_STORE(i, v) _mm512_mask_storeu_ps(Z_AT(i, v), Z_MASK(v), acc ? z##i##v : _mm512_mul_ps(z##i##v, al))
#define Z_FMA(i)                                                                                     \
    if (R > i) {                                                                                     \
        __m512 x = _mm512_set1_ps(ap[i * ars]);                                                      \
        z##i##a = _mm512_fmadd_ps(x, ba, z##i##a);                                                   \
        if (NV > 1) z##i##b = _mm512_fmadd_ps(x, bb, z##i##b);                                       \
    }
static AVX512 INLINE void micro5(float *c, long ldc, const float *a, long ars, long acs, const float *b, long ldb,
                                 int i0, const int R, int j0, const int NV, __mmask16 ml, int k, float alpha,
                                 int acc) {
    __m512 z0a, z0b, z1a, z1b, z2a, z2b, z3a, z3b, z4a, z4b, z5a, z5b, z6a, z6b, z7a, z7b;
    z0a = z0b = z1a = z1b = z2a = z2b = z3a = z3b = z4a = z4b = z5a = z5b = z6a = z6b = z7a = z7b = _mm512_setzero_ps();
    ROW5(0, Z_LOAD) ROW5(1, Z_LOAD) ROW5(2, Z_LOAD) ROW5(3, Z_LOAD)
    ROW5(4, Z_LOAD) ROW5(5, Z_LOAD) ROW5(6, Z_LOAD) ROW5(7, Z_LOAD)
    const float *ap = a + i0 * ars;
    for (int p = 0; p < k; p++, ap += acs) {
        const float *bp = b + p * ldb + j0;
        __m512 ba = _mm512_maskz_loadu_ps(Z_MASK(a), bp), bb = NV > 1 ? _mm512_maskz_loadu_ps(Z_MASK(b), bp + 16) : ba;
        Z_FMA(0) Z_FMA(1) Z_FMA(2) Z_FMA(3) Z_FMA(4) Z_FMA(5) Z_FMA(6) Z_FMA(7)
    }
    __m512 al = _mm512_set1_ps(alpha);
    ROW5(0, Z_STORE) ROW5(1, Z_STORE) ROW5(2, Z_STORE) ROW5(3, Z_STORE)
    ROW5(4, Z_STORE) ROW5(5, Z_STORE) ROW5(6, Z_STORE) ROW5(7, Z_STORE)
}

#define MICRO5(R)                                                                                    \
    static AVX512 void micro5_##R(float *c, long ldc, const float *a, long ars, long acs, const float *b, \
                                  long ldb, int i0, int j0, int nv, __mmask16 ml, int k, float alpha, int acc) { \
        if (nv == 2) micro5(c, ldc, a, ars, acs, b, ldb, i0, R, j0, 2, ml, k, alpha, acc);           \
        else micro5(c, ldc, a, ars, acs, b, ldb, i0, R, j0, 1, ml, k, alpha, acc);                   \
    }
MICRO5(1) MICRO5(2) MICRO5(3) MICRO5(4) MICRO5(5) MICRO5(6) MICRO5(7) MICRO5(8)

typedef void (*Micro5Fn)(float *, long, const float *, long, long, const float *, long, int, int, int, __mmask16,
                         int, float, int);
static const Micro5Fn micro5_rows[MR5 + 1] = {NULL,      micro5_1, micro5_2, micro5_3, micro5_4,
                                               micro5_5, micro5_6, micro5_7, micro5_8};

// One 32-column strip at j0: its vector count and the mask of its last vector.
static inline void strip(int n, int j0, int *nv, __mmask16 *ml) {
    int w = n - j0 < 32 ? n - j0 : 32;
    *nv = w > 16 ? 2 : 1;
    int last = w - (*nv - 1) * 16;
    *ml = (__mmask16)((1u << last) - 1);
}

// gemm_avx2's two loop orders, in 32-column strips over all n columns.
static AVX512 void gemm_avx512(float *c, long ldc, const float *a, long ars, long acs, const float *b, long ldb,
                               int m, int n, int k, float alpha, int acc) {
    int nv;
    __mmask16 ml;
    if ((size_t)k * n * sizeof(float) <= 16384) {
        for (int i0 = 0; i0 < m; i0 += MR5) {
            int mr = m - i0 < MR5 ? m - i0 : MR5;
            for (int j0 = 0; j0 < n; j0 += 32) {
                strip(n, j0, &nv, &ml);
                micro5_rows[mr](c, ldc, a, ars, acs, b, ldb, i0, j0, nv, ml, k, alpha, acc);
            }
        }
        return;
    }
    for (int j0 = 0; j0 < n; j0 += 32) {
        strip(n, j0, &nv, &ml);
        for (int i0 = 0; i0 < m; i0 += MR5) {
            int mr = m - i0 < MR5 ? m - i0 : MR5;
            micro5_rows[mr](c, ldc, a, ars, acs, b, ldb, i0, j0, nv, ml, k, alpha, acc);
        }
    }
}

// The same chains one element at a time: columns [j0, n).
static void gemm_scalar(float *c, long ldc, const float *a, long ars, long acs, const float *b, long ldb, int m,
                        int j0, int n, int k, float alpha, int acc) {
    for (int i = 0; i < m; i++)
        for (int j = j0; j < n; j++) {
            float s = acc ? c[i * ldc + j] : 0.0f;
            for (int p = 0; p < k; p++) s = fmaf(a[i * ars + p * acs], b[p * ldb + j], s);
            c[i * ldc + j] = acc ? s : s * alpha;
        }
}

void cpu_tile_gemm(float *c, long ldc, const float *a, long ars, long acs, const float *b, long ldb, int m, int n,
                   int k, float alpha, int acc) {
    if (cpu_isa() == 2 && m > 0 && n > 0) {
        gemm_avx512(c, ldc, a, ars, acs, b, ldb, m, n, k, alpha, acc);
        return;
    }
    int n8 = cpu_use_avx2() ? n / 8 * 8 : 0;
    if (n8) gemm_avx2(c, ldc, a, ars, acs, b, ldb, m, n8, k, alpha, acc);
    if (n8 < n) gemm_scalar(c, ldc, a, ars, acs, b, ldb, m, n8, n, k, alpha, acc);
}

void cpu_tile_gemm_scalar(float *c, long ldc, const float *a, long ars, long acs, const float *b, long ldb, int m,
                          int n, int k, float alpha, int acc) {
    gemm_scalar(c, ldc, a, ars, acs, b, ldb, m, 0, n, k, alpha, acc);
}
