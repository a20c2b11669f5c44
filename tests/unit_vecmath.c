// unit_vecmath.c: the CPU's vector math that attention's softmax and the gradient norm use.
//  * cpu_vexp_sub(y, x, shift) = exp(x[i] - shift[i]) (attention's transposed scores, one max
//    per query column) within 4 ulp of expf (libmvec's bound), in place too, for every length
//    0..19 (whole vectors and tails), and exp(-inf) = 0;
//  * cpu_vexp_rows (attention's at bf16: a polynomial on AVX-512) within 3 ulp of exp, row sums;
//  * cpu_sumsq (elementwise.c, the gradient norm) gives its scalar twin's bits — 16 lane chains
//    per 65536-float block, a fixed tree, blocks in order — for lengths around the lane and
//    block edges, under any thread count (1, 2, 3 threads here), within 1e-12 of a long-double
//    sum, and propagates NaN;
//  * bf16_round512 (exp512.h: attention's and the linear's roundings at bf16) gives f32_bf16's
//    bits for every upper half with low halves at the rounding edges: ties to even, carries
//    into the exponent and to infinity, subnormals, infinities, and every NaN (kept quiet); so does
//    bf16_round2x512 on two such vectors, by vcvtne2ps2bf16 where the CPU has AVX512_BF16 (a pair
//    with a subnormal the integer way: the instruction flushes it) and without, and its zip.
#include <omp.h>
#include <math.h>
#include <string.h>
#include "backend/cpu/cpu.h"
#include "backend/cpu/exp512.h"
#include "core/rng.h"
#include "testutil.h"

START_TEST(test_exp_sub) {
    float x[19], sh[19], y[19];
    Rng r;
    rng_init(&r, 3, 0, 0, RNG_TEST);
    for (size_t n = 0; n <= 19; n++) {
        for (size_t i = 0; i < 19; i++) x[i] = 4 * rng_normal(&r), sh[i] = 4 * rng_normal(&r), y[i] = -1;
        cpu_vexp_sub(y, x, sh, n);
        for (size_t i = 0; i < 19; i++) {
            if (i >= n) { ck_assert_float_eq(y[i], -1); continue; }   // nothing past n written
            float want = expf(x[i] - sh[i]);
            ck_assert_msg(fabsf(y[i] - want) <= 4 * 0x1p-23f * want, "n %zu: exp(%g - %g) = %.9g, expf %.9g", n, x[i],
                          sh[i], y[i], want);
        }
        cpu_vexp_sub(x, x, sh, n);   // in place, as attention calls it
        ck_assert(!memcmp(x, y, n * sizeof(float)));
    }
    x[3] = -INFINITY, sh[3] = 0;
    cpu_vexp_sub(y, x, sh, 8);
    ck_assert_float_eq(y[3], 0);
    printf("cpu_vexp_sub: %s path\n", cpu_use_avx2() ? "AVX2 (libmvec)" : "scalar expf");
}
END_TEST

// cpu_vexp_rows (attention's exponentials at bf16): every row of an [n, ld] block in place, nv
// queries (whole and partial vectors of 16), within 3 ulp of exp in double over the range the
// softmax meets (x - shift in [-110, 0], and up to 88 for the polynomial's own range), exp(-inf)
// = 0, nothing past nv touched, and sum[i] += the row values in key order; on every ISA the CPU has.
static void check_rows(int isa) {
    enum { LD = 72, NR = 9 };
    float s[NR * LD], keep[NR * LD], shift[LD], sum[LD], sum0[LD];
    Rng r;
    rng_init(&r, 11, 0, 0, RNG_TEST);
    double worst = 0;
    const int nvs[] = {8, 16, 24, 40, 64, 72};
    for (size_t c = 0; c < sizeof nvs / sizeof nvs[0]; c++) {
        int nv = nvs[c];
        for (int i = 0; i < LD; i++) shift[i] = 3 * rng_normal(&r), sum[i] = sum0[i] = rng_normal(&r);
        for (int k = 0; k < NR * LD; k++) {
            float u = (float)rng_uniform(&r);
            s[k] = shift[k % LD] + (k % 5 == 4 ? 88 * u : -110 * u);   // mostly the softmax's range
        }
        s[LD + 1] = -INFINITY;
        memcpy(keep, s, sizeof s);
        cpu_force_isa(isa);
        cpu_vexp_rows(s, LD, NR, nv, shift, sum, 1);
        cpu_force_isa(-1);
        float rows[NR * LD], want_rows[NR * LD];   // without poly: cpu_vexp_sub's bits, row by row
        memcpy(rows, keep, sizeof rows);
        memcpy(want_rows, keep, sizeof rows);
        cpu_vexp_rows(rows, LD, NR, nv, shift, NULL, 0);
        for (int j = 0; j < NR; j++) cpu_vexp_sub(want_rows + j * LD, want_rows + j * LD, shift, (size_t)nv);
        ck_assert(!memcmp(rows, want_rows, sizeof rows));
        for (int i = 0; i < LD; i++) {
            double acc = 0;
            for (int j = 0; j < NR; j++) {
                int k = j * LD + i;
                if (i >= nv) { ck_assert(!memcmp(&s[k], &keep[k], 4)); continue; }
                double want = exp((double)(keep[k] - shift[i]));   // the float difference, as the op takes it
                double ulp = want < 0x1p-126 ? 0x1p-149 : ldexp(1.0, ilogb(want) - 23);
                double e = fabs(s[k] - want) / ulp;
                worst = e > worst ? e : worst;
                ck_assert_msg(e <= 3, "nv %d: exp(%.9g - %.9g) = %.9g, want %.9g (%.1f ulp)", nv, keep[k], shift[i],
                              s[k], want, e);
                acc += s[k];
            }
            if (i >= nv) { ck_assert_float_eq(sum[i], sum0[i]); continue; }
            ck_assert_msg(fabs(sum[i] - (sum0[i] + acc)) <= 1e-6 * (fabs(sum0[i]) + acc), "sum %d", i);
        }
        ck_assert_float_eq(s[LD + 1], 0);
    }
    printf("cpu_vexp_rows at ISA %d: worst %.2f ulp\n", isa, worst);
}

START_TEST(test_exp_rows) {
    for (int isa = cpu_isa(); isa >= 0; isa--) check_rows(isa);
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

static AVX512 void round16(uint16_t *out, const uint32_t *in) {
    __m512i r = bf16_round512(_mm512_castsi512_ps(_mm512_loadu_si512(in)));
    _mm256_storeu_si256((__m256i *)out, _mm512_cvtepi32_epi16(r));
}

// bf16_round2x512 of in[0..16) and in[16..32) into out[0..32) as it lays them out, and zipped
// into pairs zip[0..32) (word i = (in[i], in[16 + i])).
static AVX512BF16 void round32(uint16_t *out, uint16_t *zip, const uint32_t *in, int cvt) {
    __m512i r = bf16_round2x512(_mm512_castsi512_ps(_mm512_loadu_si512(in)),
                                _mm512_castsi512_ps(_mm512_loadu_si512(in + 16)), cvt);
    _mm512_storeu_si512(out, r);
    _mm512_storeu_si512(zip, bf16_zip512(r));
}

// Every 32 values of the sweep below through bf16_round2x512, both ways where the CPU has
// AVX512_BF16: vcvtne2ps2bf16 flushes a subnormal, so a pair holding one must go the integer way.
static long check_round32(const uint32_t *in, long *cvt_pairs) {
    long bad = 0;
    for (int cvt = 0; cvt <= cpu_has_avx512_bf16(); cvt++) {
        uint16_t got[32], zip[32];
        round32(got, zip, in, cvt);
        int sub = 0;
        for (int k = 0; k < 32; k++) {
            union { uint32_t u; float f; } v = {in[k]};
            sub |= fpclassify(v.f) == FP_SUBNORMAL;
            bad += got[k] != f32_bf16(v.f) || zip[(k % 16) * 2 + k / 16] != got[k];
        }
        *cvt_pairs += cvt && !sub;
    }
    return bad;
}

START_TEST(test_bf16_round512) {
    if (cpu_isa() < 2) { printf("bf16_round512: no AVX-512 here; not run\n"); return; }
    static const uint32_t lows[] = {0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xc000, 0xffff, 0x1234};
    enum { NL = sizeof lows / sizeof lows[0] };
    uint32_t in[32];
    uint16_t got[16];
    long nan_seen = 0, inf_made = 0, bad = 0, bad32 = 0, cvt_pairs = 0;
    uint32_t first_bad = 0;
    for (uint32_t hi = 0; hi < 65536; hi++)
        for (int l0 = 0; l0 < NL; l0 += 2) {   // sixteen lanes: two lows x eight upper halves
            for (int k = 0; k < 16; k++) in[k] = ((hi + (uint32_t)(k >> 1) * 8191u) & 0xffff) << 16 | lows[l0 + (k & 1)];
            for (int k = 0; k < 16; k++) in[16 + k] = in[15 - k] ^ 0x80000000u;   // the other sign, reversed
            round16(got, in);
            bad32 += check_round32(in, &cvt_pairs);
            for (int k = 0; k < 16; k++) {
                union { uint32_t u; float f; } v = {in[k]};
                uint16_t want = f32_bf16(v.f);
                if (got[k] != want && !bad++) first_bad = in[k];   // (ck_assert per value is a syscall)
                nan_seen += isnan(v.f);
                inf_made += !isinf(v.f) && !isnan(v.f) && (want & 0x7fff) == 0x7f80;
            }
        }
    ck_assert_msg(!bad, "%ld values differ from f32_bf16, the first 0x%08x", bad, first_bad);
    ck_assert_msg(!bad32, "bf16_round2x512: %ld values differ from f32_bf16 or their zipped pair", bad32);
    // The instruction's way ran (AVX512_BF16 here) on most vectors, not only the fallback.
    ck_assert(!cpu_has_avx512_bf16() || cvt_pairs > 65536);
    ck_assert(nan_seen > 0 && inf_made > 0);   // the sweep reached both edges
    uint32_t snan[16];
    for (int k = 0; k < 16; k++) snan[k] = 0x7f800001u | (uint32_t)k << 31;   // signalling NaNs, +-: stay NaN, quiet
    round16(got, snan);
    for (int k = 0; k < 16; k++) ck_assert_msg((got[k] & 0x7fc0) == 0x7fc0 && got[k] >> 15 == (uint32_t)(k & 1),
                                               "0x%08x: 0x%04x", snan[k], got[k]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("vecmath");
    TCase *tc = tcase_create("vecmath");
    tcase_add_test(tc, test_exp_sub);
    tcase_add_test(tc, test_exp_rows);
    tcase_add_test(tc, test_sumsq);
    tcase_add_test(tc, test_bf16_round512);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
