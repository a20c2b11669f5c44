// unit_vecmath.c: the CPU's reductions in vecmath.c that attention's online softmax uses.
//  * cpu_vsum adds in one documented order — eight lane sums (lane k: x[k], x[k+8], …), then
//    ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)) — on every CPU: the AVX2 path (where this
//    machine has it) must give exactly the bits of that expression written out here, for every
//    length 0..67 (whole vectors and tails), and differ from a plain left-to-right sum somewhere
//    (or the test would not see a lost reordering);
//  * cpu_vmax is max(init, x…) with NaNs skipped, exactly (max has no rounding);
//  * cpu_sumsq (elementwise.c, the gradient norm) gives its scalar twin's bits — 16 lane chains
//    per 65536-float block, a fixed tree, blocks in order — for lengths around the lane and
//    block edges, under any thread count (1, 2, 3 threads here), within 1e-12 of a long-double
//    sum, and propagates NaN.
#include <omp.h>
#include <math.h>
#include <string.h>
#include "backend/cpu/cpu.h"
#include "core/rng.h"
#include "testutil.h"

static float expected_sum(const float *x, size_t n) {
    float l[8] = {0};
    for (size_t i = 0; i < n; i++) l[i % 8] += x[i];
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

START_TEST(test_sum_order) {
    float x[67];
    Rng r;
    rng_init(&r, 3, 0, 0, RNG_TEST);
    int differs = 0;
    for (int trial = 0; trial < 20; trial++) {
        for (int i = 0; i < 67; i++) x[i] = expf(3 * rng_normal(&r));   // softmax-like: positive, wide range
        for (size_t n = 0; n <= 67; n++) {
            float got = cpu_vsum(x, n), want = expected_sum(x, n), plain = 0;
            for (size_t i = 0; i < n; i++) plain += x[i];
            ck_assert_msg(!memcmp(&got, &want, sizeof got), "n %zu: %.9g, the lane order gives %.9g", n, got, want);
            differs |= got != plain;
        }
    }
    ck_assert_msg(differs, "the lane order never differed from a plain sum: the test cannot see it");
    printf("cpu_vsum: %s path, the documented lane order for n = 0..67\n", cpu_use_avx2() ? "AVX2" : "scalar");
}
END_TEST

START_TEST(test_max) {
    float x[29];
    for (int i = 0; i < 29; i++) x[i] = (float)((i * 7) % 29) - 14.0f;   // max 14 at i = 2
    ck_assert_float_eq(cpu_vmax(x, 29, -INFINITY), 14.0f);
    ck_assert_float_eq(cpu_vmax(x, 29, 20.0f), 20.0f);                  // init counts
    ck_assert_float_eq(cpu_vmax(x, 0, -3.0f), -3.0f);
    x[5] = NAN, x[17] = NAN;                                             // skipped, in vectors and tails
    x[28] = NAN;
    ck_assert_float_eq(cpu_vmax(x, 29, -INFINITY), 14.0f);
    x[27] = 99.0f;                                                       // in the tail
    ck_assert_float_eq(cpu_vmax(x, 29, -INFINITY), 99.0f);
}
END_TEST

START_TEST(test_sumsq) {
    enum { MAXN = 3 * 65536 + 37 };
    static float x[MAXN];
    Rng r;
    rng_init(&r, 5, 0, 0, RNG_TEST);
    for (int i = 0; i < MAXN; i++) x[i] = rng_normal(&r) * expf(2 * rng_normal(&r));
    const size_t ns[] = {0, 1, 15, 16, 17, 1000, 65535, 65536, 65537, 2 * 65536 + 5, MAXN};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        size_t n = ns[k];
        double want = cpu_sumsq_scalar(x, n);
        long double ref = 0;
        for (size_t i = 0; i < n; i++) ref += (long double)x[i] * x[i];
        ck_assert_msg(fabsl(want - ref) <= 1e-12L * ref, "n %zu: %.17g, long double %.17Lg", n, want, ref);
        for (int th = 1; th <= 3; th++) {
            omp_set_num_threads(th);
            double got = cpu_sumsq(x, n);
            ck_assert_msg(!memcmp(&got, &want, sizeof got), "n %zu, %d threads: %.17g, the scalar order %.17g", n, th,
                          got, want);
        }
    }
    x[70000] = NAN;
    ck_assert(isnan(cpu_sumsq(x, MAXN)));
}
END_TEST

int main(void) {
    Suite *s = suite_create("vecmath");
    TCase *tc = tcase_create("vecmath");
    tcase_add_test(tc, test_sum_order);
    tcase_add_test(tc, test_max);
    tcase_add_test(tc, test_sumsq);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
