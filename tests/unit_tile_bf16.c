// unit_tile_bf16.c: attention's bf16 tile product on each engine this CPU has: AMX
// (src/backend/cpu/tile_amx.c, AMX-BF16) and vdpbf16ps (tile_dpbf16.c, AVX512_BF16), one
// contract: a hand-computed case; shapes with every edge (m 1..40, n 1..70, k up to 258, so
// edge blocks of C, masked column tails and AMX's edge tile configurations all run), overwrite
// with alpha and accumulate, each element within k·2⁻²³·Σ|a·b| of a float64 product of the
// same bf16 values; nothing outside the m × n block of C written; the same bits when repeated.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "backend/cpu/cpu.h"
#include "core/rng.h"
#include "testutil.h"

static uint16_t h(float f) { return f32_bf16(f); }

typedef void (*TileFn)(float *, long, const uint16_t *, long, const uint16_t *, long, int, int, int, float, int);
static const struct {
    const char *name;
    int (*have)(void);
    TileFn fn;
} engines[] = {{"AMX", cpu_has_amx_bf16, cpu_tile_amx_bf16}, {"vdpbf16ps", cpu_has_avx512_bf16, cpu_tile_dp_bf16}};

START_TEST(test_hand) {
    if (!engines[_i].have()) return;
    TileFn tile = engines[_i].fn;
    // A = [[1, 2], [3, 4]] (one k-pair a row), B = [[5, 6], [7, 8]] interleaved: (5,7), (6,8).
    const uint16_t a[4] = {h(1), h(2), h(3), h(4)}, b2[4] = {h(5), h(7), h(6), h(8)};
    float c[4];
    tile(c, 2, a, 2, b2, 2, 2, 2, 2, 0.5f, 0);   // 0.5·[[19, 22], [43, 50]]
    ck_assert(c[0] == 9.5f && c[1] == 11 && c[2] == 21.5f && c[3] == 25);
    tile(c, 2, a, 2, b2, 2, 2, 2, 2, 0.5f, 1);   // accumulate: alpha unused
    ck_assert(c[0] == 28.5f && c[1] == 33 && c[2] == 64.5f && c[3] == 75);
}
END_TEST

enum { MAXM = 40, MAXK = 258, LDA = 264, LDB = 80 };   // LDB: columns of C and of B
static const int MS[] = {1, 2, 15, 16, 17, 31, 32, 33, 40};
static const int NS[] = {1, 2, 7, 15, 16, 17, 31, 32, 33, 64, 65, 70};
static const int KS[] = {2, 4, 30, 32, 34, 64, 66, 128, 256, 258};

START_TEST(test_shapes) {
    if (!engines[_i].have()) {
        printf("unit_tile_bf16: no %s here (for AMX: or Linux refused the tile state): nothing to check\n",
               engines[_i].name);
        return;
    }
    TileFn tile = engines[_i].fn;
    static uint16_t a[MAXM * LDA], b2[MAXK * LDB];   // b2: MAXK/2 pair rows of 2·LDB
    static float c0[MAXM * LDB], got[MAXM * LDB], again[MAXM * LDB];
    Rng r;
    rng_init(&r, 23, 0, 0, RNG_TEST);
    for (size_t i = 0; i < MAXM * LDA; i++) a[i] = h(rng_normal(&r));
    for (size_t i = 0; i < MAXK * LDB; i++) b2[i] = h(rng_normal(&r));
    for (size_t i = 0; i < MAXM * LDB; i++) c0[i] = rng_normal(&r);
    int cases = 0;
    for (size_t mi = 0; mi < sizeof MS / sizeof MS[0]; mi++)
        for (size_t ni = 0; ni < sizeof NS / sizeof NS[0]; ni++)
            for (size_t ki = 0; ki < sizeof KS / sizeof KS[0]; ki++)
                for (int acc = 0; acc < 2; acc++) {
                    int m = MS[mi], n = NS[ni], k = KS[ki];
                    memcpy(got, c0, sizeof got);
                    tile(got, LDB, a, LDA, b2, LDB, m, n, k, 0.125f, acc);
                    memcpy(again, c0, sizeof again);
                    tile(again, LDB, a, LDA, b2, LDB, m, n, k, 0.125f, acc);
                    if (memcmp(got, again, sizeof got)) ck_abort_msg("m %d n %d k %d: not repeatable", m, n, k);
                    for (int i = 0; i < MAXM; i++)
                        for (int j = 0; j < LDB; j++) {
                            float v = got[i * LDB + j], v0 = c0[i * LDB + j];
                            if (i >= m || j >= n) {
                                if (memcmp(&v, &v0, 4)) ck_abort_msg("m %d n %d k %d: C[%d, %d] written", m, n, k, i, j);
                                continue;
                            }
                            double s = 0, mag = 0;
                            for (int p = 0; p < k; p++) {
                                double t = (double)bf16_f32(a[i * LDA + p]) * bf16_f32(b2[(p / 2) * 2 * LDB + 2 * j + p % 2]);
                                s += t, mag += fabs(t);
                            }
                            double ref = acc ? v0 + s : 0.125 * s, tol = (k + 2) * 0x1p-23 * (mag + fabs(v0));
                            if (!(fabs(v - ref) <= tol))
                                ck_abort_msg("m %d n %d k %d acc %d: C[%d, %d] = %.9g, float64 %.9g", m, n, k, acc, i,
                                             j, v, ref);
                        }
                    cases++;
                }
    printf("unit_tile_bf16: %s within fp32-summation accuracy of float64, over %d cases\n", engines[_i].name, cases);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tile_bf16");
    TCase *tc = tcase_create("core");
    int n = (int)(sizeof engines / sizeof engines[0]);
    tcase_add_loop_test(tc, test_hand, 0, n);
    tcase_add_loop_test(tc, test_shapes, 0, n);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
