// unit_tile_gemm.c: attention's tile product (src/backend/cpu/tile_gemm.c).
//  * a hand-computed case: both modes, alpha, and A read at row and column strides;
//  * every vector path this machine has (AVX-512, AVX2) gives exactly the scalar chain's bits, over
//    shapes with every micro-tile remainder (m 1..17, n 1..70, k 1..260: both loop orders), both A layouts the
//    attention uses, overwrite and accumulate, and is within k·2⁻²³·Σ|a·b| of a float64
//    product; nothing outside the m × n block of C is written.
#include <math.h>
#include <string.h>
#include "backend/cpu/cpu.h"
#include "core/rng.h"
#include "testutil.h"

START_TEST(test_hand) {
    // A = [[1, 2], [3, 4]] read as rows (ars 2, acs 1) and as its transpose's columns
    // (ars 1, acs 2: A(i, p) = at[p·2 + i]); B = [[5, 6], [7, 8]].
    const float a[4] = {1, 2, 3, 4}, at[4] = {1, 3, 2, 4}, b[4] = {5, 6, 7, 8};
    float c[4];
    cpu_tile_gemm(c, 2, a, 2, 1, b, 2, 2, 2, 2, 0.5f, 0);   // 0.5·A·B = 0.5·[[19, 22], [43, 50]]
    ck_assert(c[0] == 9.5f && c[1] == 11 && c[2] == 21.5f && c[3] == 25);
    cpu_tile_gemm(c, 2, at, 1, 2, b, 2, 2, 2, 2, 0.5f, 1);   // accumulate: alpha unused
    ck_assert(c[0] == 28.5f && c[1] == 33 && c[2] == 64.5f && c[3] == 75);
}
END_TEST

enum { MAXM = 17, MAXN = 70, MAXK = 260, LDC = 80 };
// Column counts: every remainder of the 8- and 16-lane vectors, and around the 32-column strips.
static const int NS[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 24, 31, 32, 33, 40, 47, 48, 49, 64, 65, 70};

START_TEST(test_paths_agree) {
    static float a[MAXM * MAXK], b[MAXK * LDC], c0[MAXM * LDC], got[MAXM * LDC], want[MAXM * LDC];
    Rng r;
    rng_init(&r, 11, 0, 0, RNG_TEST);
    for (size_t i = 0; i < sizeof a / 4; i++) a[i] = rng_normal(&r);
    for (size_t i = 0; i < sizeof b / 4; i++) b[i] = rng_normal(&r);
    for (size_t i = 0; i < sizeof c0 / 4; i++) c0[i] = rng_normal(&r);
    int shapes = 0;
    for (int isa = cpu_isa(); isa >= 1; isa--) {
    cpu_force_isa(isa);
    for (int m = 1; m <= MAXM; m += 1)
        for (size_t ni = 0; ni < sizeof NS / sizeof NS[0]; ni++) {
            int n = NS[ni];
            for (int k = 1; k <= MAXK; k += k < 70 ? 23 : 190)   // 260 × 16+ columns: B over 16 KiB
                if (k <= 70 || (n >= 16 && m % 4 == 0))   // the large-B order: a few shapes suffice
                for (int lay = 0; lay < 2; lay++)
                    for (int acc = 0; acc < 2; acc++) {
                        // lay 0: A(i, p) = a[i·MAXK + p] (K rows); lay 1: a[p·MAXM + i] (Pᵀ's columns)
                        long ars = lay ? 1 : MAXK, acs = lay ? MAXM : 1;
                        memcpy(got, c0, sizeof got);
                        memcpy(want, c0, sizeof want);
                        cpu_tile_gemm(got, LDC, a, ars, acs, b, LDC, m, n, k, 0.125f, acc);
                        cpu_tile_gemm_scalar(want, LDC, a, ars, acs, b, LDC, m, n, k, 0.125f, acc);
                        if (memcmp(got, want, sizeof got))
                            ck_abort_msg("isa %d m %d n %d k %d layout %d acc %d: bits differ", isa, m, n, k, lay, acc);
                        for (int i = 0; i < MAXM; i++)
                            for (int j = 0; j < LDC; j++) {
                                float v = got[i * LDC + j], v0 = c0[i * LDC + j];
                                // Plain ifs, not ck_assert per element: each passing check writes
                                // to Check's pipe, millions of system calls here.
                                if (i >= m || j >= n) {
                                    if (v != v0) ck_abort_msg("m %d n %d: C[%d, %d] written", m, n, i, j);
                                    continue;
                                }
                                double s = 0, mag = 0;
                                for (int p = 0; p < k; p++) {
                                    double t = (double)a[i * ars + p * acs] * b[p * LDC + j];
                                    s += t, mag += fabs(t);
                                }
                                double ref = acc ? v0 + s : 0.125 * s, tol = (k + 2) * 0x1p-23 * (mag + fabs(v0));
                                if (!(fabs(v - ref) <= tol))
                                    ck_abort_msg("isa %d m %d n %d k %d: C[%d, %d] = %.9g, float64 %.9g", isa, m, n, k, i, j, v, ref);
                            }
                        shapes++;
                    }
        }
    }
    cpu_force_isa(-1);
    printf("cpu_tile_gemm: %s = scalar chain, bit for bit, over %d cases\n",
           cpu_isa() == 2 ? "AVX-512 and AVX2 paths" : cpu_isa() == 1 ? "AVX2 path" : "scalar (no AVX2 here)", shapes);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tile_gemm");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_hand);
    tcase_add_test(tc, test_paths_agree);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
