// tile_amx.c: C (+)= alpha·A·B on bf16 operands with fp32 accumulation on AMX tiles
// (tdpbf16ps), attention's tile products at precision bf16 on CPUs with AMX-BF16.
//
// Layouts (cpu.h, cpu_tile_amx_bf16): A(i, p) = a[i·lda + p], each k-pair of a row one 32-bit
// word (the A tile's format); B pair-interleaved, B(p, j) = b2[(p/2)·2·ldb + 2·j + p%2] (the
// B tile's "VNNI" format: a tile row holds k-pair p/2 of 16 columns). k even.
//
// C goes 16 × 16 at a time, k 32 at a time; edge blocks take a tile configuration of their
// own size, so nothing outside the m × n block of C, the m rows of A or the k/2 pair rows of
// B is read or written. Each block's sum runs over k in order, so the result is repeatable
// for any thread count; the order inside tdpbf16ps is the hardware's (its bits are not those
// of the fp32 path, only within the bf16 tolerance of the op table).
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "backend/cpu/cpu.h"

#define AMX __attribute__((target("amx-tile,amx-bf16")))
#define TC 0   // the tiles: C, A, B (macros: the intrinsics paste their numbers into the instruction)
#define TA 1
#define TB 2

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} TileConfig;

// Linux hands out AMX's tile state only on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
static int amx_permitted(void) {
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

int cpu_has_amx_bf16(void) {
    static int v = -1;   // racing first calls compute and store the same answer
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        r = __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16") && amx_permitted();
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    return r;
}

// Whether cur is the configuration for an r × w block of C with kk of k.
static int configured(const TileConfig *cur, int r, int w, int kk) {
    return cur->palette && cur->rows[TC] == r && cur->colsb[TC] == 4 * w && cur->colsb[TA] == 2 * kk;
}

// The configuration for an r × w block of C with kk of k (kk even, ≤ 32).
static AMX void configure(TileConfig *cur, int r, int w, int kk) {
    if (configured(cur, r, w, kk)) return;
    memset(cur, 0, sizeof *cur);
    cur->palette = 1;
    cur->rows[TC] = (uint8_t)r, cur->colsb[TC] = (uint16_t)(4 * w);
    cur->rows[TA] = (uint8_t)r, cur->colsb[TA] = (uint16_t)(2 * kk);
    cur->rows[TB] = (uint8_t)(kk / 2), cur->colsb[TB] = (uint16_t)(4 * w);
    _tile_loadconfig(cur);
}

// Stores a finished r × w C tile: in place (accumulate, or alpha 1), else scaled by alpha.
#define STORE_C(T, cb, r, w)                                                                         \
    do {                                                                                             \
        if (acc || alpha == 1.0f) {                                                                  \
            _tile_stored(T, cb, ldc * 4);                                                            \
        } else {                                                                                     \
            _tile_stored(T, tmp, 64);                                                                \
            for (int i_ = 0; i_ < (r); i_++)                                                         \
                for (int j_ = 0; j_ < (w); j_++) (cb)[i_ * ldc + j_] = tmp[i_ * 16 + j_] * alpha;    \
        }                                                                                            \
    } while (0)

// Rows [i1, m) × columns [j1, n) of C, 16 × 16 blocks (edge blocks their own size), k in 32s.
static AMX void amx_1x1(float *c, long ldc, const uint16_t *a, long lda, const uint16_t *b2, long ldb, int i1, int m,
                        int j1, int n, int k, float alpha, int acc) {
    TileConfig cur = {0};
    float tmp[16 * 16];
    for (int i0 = i1; i0 < m; i0 += 16)
        for (int j0 = j1; j0 < n; j0 += 16) {
            int r = m - i0 < 16 ? m - i0 : 16, w = n - j0 < 16 ? n - j0 : 16;
            float *cb = c + i0 * ldc + j0;
            for (int p0 = 0; p0 < k; p0 += 32) {
                int kk = k - p0 < 32 ? k - p0 : 32;
                int fresh = !configured(&cur, r, w, kk);
                if (fresh && p0 > 0) _tile_stored(TC, tmp, 64);   // a new configuration clears the tiles
                configure(&cur, r, w, kk);
                if (p0 == 0) {
                    if (acc) _tile_loadd(TC, cb, ldc * 4);
                    else _tile_zero(TC);
                } else if (fresh) {
                    _tile_loadd(TC, tmp, 64);
                }
                _tile_loadd(TA, a + i0 * lda + p0, lda * 2);
                _tile_loadd(TB, b2 + (p0 / 2) * 2 * ldb + 2 * j0, ldb * 4);
                _tile_dpbf16ps(TC, TA, TB);
            }
            STORE_C(TC, cb, r, w);
        }
}

// Rows [0, m2) × columns [0, n2) of C (multiples of 32), k a multiple of 32: 2 × 2 blocks of
// 16 × 16 in tiles 0-3, two A tiles (4, 5) and two B tiles (6, 7), so each tile loaded serves
// two products. Each element's sum over k runs in the same order as in amx_1x1.
static AMX void amx_2x2(float *c, long ldc, const uint16_t *a, long lda, const uint16_t *b2, long ldb, int m2, int n2,
                        int k, float alpha, int acc) {
    TileConfig cfg = {.palette = 1};
    for (int t = 0; t < 8; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
    _tile_loadconfig(&cfg);
    float tmp[16 * 16];
    for (int i0 = 0; i0 < m2; i0 += 32)
        for (int j0 = 0; j0 < n2; j0 += 32) {
            float *c00 = c + i0 * ldc + j0, *c01 = c00 + 16, *c10 = c00 + 16 * ldc, *c11 = c10 + 16;
            if (acc) {
                _tile_loadd(0, c00, ldc * 4); _tile_loadd(1, c01, ldc * 4);
                _tile_loadd(2, c10, ldc * 4); _tile_loadd(3, c11, ldc * 4);
            } else {
                _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
            }
            for (int p0 = 0; p0 < k; p0 += 32) {
                _tile_loadd(4, a + i0 * lda + p0, lda * 2);
                _tile_loadd(5, a + (i0 + 16) * lda + p0, lda * 2);
                _tile_loadd(6, b2 + (p0 / 2) * 2 * ldb + 2 * j0, ldb * 4);
                _tile_loadd(7, b2 + (p0 / 2) * 2 * ldb + 2 * (j0 + 16), ldb * 4);
                _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
            }
            STORE_C(0, c00, 16, 16); STORE_C(1, c01, 16, 16);
            STORE_C(2, c10, 16, 16); STORE_C(3, c11, 16, 16);
        }
}

void AMX cpu_tile_amx_bf16(float *c, long ldc, const uint16_t *a, long lda, const uint16_t *b2, long ldb, int m,
                           int n, int k, float alpha, int acc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {   // an empty sum: C stays (accumulate) or becomes zero
        for (int i = 0; i < m && !acc; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    int m2 = k % 32 ? 0 : m / 32 * 32, n2 = k % 32 ? 0 : n / 32 * 32;
    if (m2 && n2) amx_2x2(c, ldc, a, lda, b2, ldb, m2, n2, k, alpha, acc);
    else m2 = n2 = 0;
    if (n2 < n) amx_1x1(c, ldc, a, lda, b2, ldb, 0, m2, n2, n, k, alpha, acc);   // right of the 2 × 2 part
    amx_1x1(c, ldc, a, lda, b2, ldb, m2, m, 0, n, k, alpha, acc);                 // below it
    _tile_release();
}
