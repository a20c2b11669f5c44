// unit_vecmath.c: the CPU's reductions in vecmath.c that attention's online softmax uses.
//  * cpu_vsum adds in one documented order — eight lane sums (lane k: x[k], x[k+8], …), then
//    ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)) — on every CPU: the AVX2 path (where this
//    machine has it) must give exactly the bits of that expression written out here, for every
//    length 0..67 (whole vectors and tails), and differ from a plain left-to-right sum somewhere
//    (or the test would not see a lost reordering);
//  * cpu_vmax is max(init, x…) with NaNs skipped, exactly (max has no rounding).
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

int main(void) {
    Suite *s = suite_create("vecmath");
    TCase *tc = tcase_create("vecmath");
    tcase_add_test(tc, test_sum_order);
    tcase_add_test(tc, test_max);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
