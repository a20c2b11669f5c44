// unit_cpu_bf16.c: the CPU backend at precision bf16 (src/backend/cpu/bf16.c, linear_bf16.c).
//  * rounding: f32_bf16 on hand-picked values (ties to even, carries into the exponent,
//    overflow to infinity, NaN kept) and pack/unpack against it;
//  * the vectorised conversions (every variant this CPU runs: portable, AVX2, AVX-512, and
//    AVX-512 with AVX512_BF16's vcvtne2ps2bf16) give f32_bf16's bits on every class of float (NaN
//    payloads, infinities, subnormals, ties) and on runs of normal floats only (where the
//    instruction does the rounding) at every length and misalignment, whole-array and row forms;
//  * the offer: bf16 is listed exactly when offered, with a reason when it is not, and
//    set_precision follows the list;
//  * the GEMMs multiply bf16 operands: a linear call at bf16 matches a float64 product of the
//    bf16-ROUNDED operands to fp32-summation accuracy (1e-5), a bound that an fp32 operand
//    (≈ 2^-9 off) breaks; over CPU_LIN_ROWS rows so that the row chunks are covered;
//  * the weights' bf16 copies (weight_bf16.c) follow every backend write: after an upload, a
//    copy, a zero, AdamW (one tensor, and spans of a buffer) and a free and new alloc, the
//    forward multiplies the weight as it is now, never a stale copy, and the copies' bytes are
//    counted and released;
//  * GELU at bf16 looks its values up in tables (elementwise.c): for every one of the 65536 bf16
//    inputs the forward gives the bits of the fp32 GELU rounded, the backward those of the fp32
//    backward on the widened input.
// The test runs under DCAL_CPU_BF16=portable (set below, before the backend reads it: the
// table is filled before main, so the test re-executes itself with it set).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cpu/cpu.h"
#include "core/common.h"
#include "core/rng.h"
#include "testutil.h"

static uint32_t bits(float f) { union { float f; uint32_t u; } v = {f}; return v.u; }
static float from_bits(uint32_t u) { union { uint32_t u; float f; } v = {u}; return v.f; }

START_TEST(test_rounding_hand_cases) {
    ck_assert_uint_eq(f32_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(f32_bf16(from_bits(0x3f808000)), 0x3f80);   // tie, even below: down
    ck_assert_uint_eq(f32_bf16(from_bits(0x3f818000)), 0x3f82);   // tie, odd below: up
    ck_assert_uint_eq(f32_bf16(from_bits(0x3f808001)), 0x3f81);   // above the tie: up
    ck_assert_uint_eq(f32_bf16(from_bits(0x3fffffff)), 0x4000);   // carries into the exponent
    ck_assert_uint_eq(f32_bf16(-2.5f), 0xc020);
    ck_assert_uint_eq(f32_bf16(from_bits(0x7f7fffff)), 0x7f80);   // FLT_MAX rounds to +inf
    ck_assert_uint_eq(f32_bf16(INFINITY), 0x7f80);
    ck_assert(isnan(bf16_f32(f32_bf16(NAN))));
    ck_assert(isnan(bf16_f32(f32_bf16(from_bits(0x7f800001)))));   // a NaN whose top half is inf
    ck_assert_uint_eq(bits(bf16_f32(0x3f81)), 0x3f810000);
    float src[5] = {1.0f, from_bits(0x3f818000), -2.5f, 3.14159f, -0.0f}, r[5];
    uint16_t h[5];
    cpu_bf16_pack(h, src, 5);
    cpu_bf16_round(r, src, 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_uint_eq(h[i], f32_bf16(src[i]));
        ck_assert_uint_eq(bits(r[i]), bits(bf16_f32(h[i])));
    }
    ck_assert_uint_eq(h[4], 0x8000);   // −0 keeps its sign
}
END_TEST

// Every variant against the scalar f32_bf16: the test's floats mix random bit patterns with
// the special classes, at lengths 0..200 (vector bodies and tails) and at odd offsets.
START_TEST(test_vector_conversions_match_scalar) {
    enum { N = 70000 };   // over the whole-array functions' block of 65536: two blocks
    static const uint32_t special[] = {0x7fc00000, 0xffc00001, 0x7f800001, 0x7fbfffff, 0x7f800000, 0xff800000,
                                       0x00000001, 0x807fffff, 0x00008000, 0x00018000, 0x3f808000, 0x3f818000,
                                       0x7f7fffff, 0x7f7f8000, 0x80000000, 0x00000000, 0x3fffffff, 0xff7fffff};
    float *x = malloc(N * sizeof *x), *r = malloc(N * sizeof *r), *w = malloc(N * sizeof *w);
    uint16_t *h = malloc(N * sizeof *h), *hs = malloc(N * sizeof *hs);
    Rng g;
    rng_init(&g, 7, 0, 0, RNG_INIT);
    for (int i = 0; i < N; i++)
        x[i] = i % 3 == 0 ? from_bits(special[(i / 3) % (sizeof special / 4)]) : from_bits(rng_u32(&g));
    for (int i = N / 2; i < N; i++)   // the second half normal floats only: whole vectors without a subnormal
        if (fpclassify(x[i]) != FP_NORMAL) x[i] = (float)rng_normal(&g);
    for (int i = 0; i < N; i++) hs[i] = f32_bf16(x[i]);
    for (int k = 3; k >= 0; k--) {   // 3: AVX-512 with AVX512_BF16's instruction where the CPU has it
        cpu_force_isa(k == 3 ? 2 : k);
        cpu_force_bf16_cvt(k == 3);
        if (k == 3 && !cpu_bf16_cvt()) continue;
        for (int off = 0; off < 3 * 2; off++)   // offsets 0..2 in the first half and in the second
            for (int n = 0; n <= 200; n++) {
                int o = off % 3 + off / 3 * N / 2;
                memset(h, 0xab, (size_t)(n + 1) * 2);
                cpu_bf16_pack_row(h, x + o, (size_t)n);
                for (int i = 0; i < n; i++) ck_assert_uint_eq(h[i], hs[o + i]);
                ck_assert_uint_eq(h[n], 0xabab);   // nothing written past n
                cpu_bf16_unpack_row(r, hs + o, (size_t)n);
                for (int i = 0; i < n; i++)
                    if (bits(r[i]) != (uint32_t)hs[o + i] << 16) ck_abort_msg("unpack_row isa %d n %d i %d", k, n, i);
            }
        cpu_bf16_pack(h, x, N);
        cpu_bf16_unpack(r, h, N);
        cpu_bf16_round(w, x, N);
        for (int i = 0; i < N; i++)
            if (h[i] != hs[i] || bits(r[i]) != (uint32_t)hs[i] << 16 || bits(w[i]) != bits(r[i]))
                ck_abort_msg("isa %d element %d: %08x -> %04x (scalar %04x)", k, i, bits(x[i]), h[i], hs[i]);
    }
    cpu_force_isa(-1);
    cpu_force_bf16_cvt(1);
    free(x), free(r), free(w), free(h), free(hs);
}
END_TEST

START_TEST(test_offer_and_set_precision) {
    const Backend *be = &backend_cpu;
    const char *note = be->precision_note();
    int listed = strstr(be->precisions, "bf16") != NULL;
    ck_assert_msg(listed == (note == NULL), "precisions '%s', note '%s'", be->precisions, note ? note : "(none)");
    ck_assert_msg(!strncmp(be->precisions, "fp32", 4), "fp32 must stay first (auto): '%s'", be->precisions);
    ck_assert(listed);   // DCAL_CPU_BF16=portable here
    ck_assert(be->set_precision("bf16"));
    ck_assert_uint_eq(be->act_bytes(), 2);
    ck_assert(!be->set_precision("fp16"));
    ck_assert_uint_eq(be->act_bytes(), 2);   // a refused call changes nothing
    ck_assert(be->set_precision("fp32"));
    ck_assert_uint_eq(be->act_bytes(), 4);
}
END_TEST

static float *normal(size_t n, uint64_t idx, float scale) {
    float *h = xmalloc(n * sizeof(float));
    Rng r;
    rng_init(&r, 5, 0, idx, RNG_TEST);
    for (size_t i = 0; i < n; i++) h[i] = scale * rng_normal(&r);
    return h;
}
static double rb(float f) { return bf16_f32(f32_bf16(f)); }

// Forward and both backward products at bf16 against float64 on the rounded operands.
START_TEST(test_linear_multiplies_bf16_operands) {
    const Backend *be = &backend_cpu;
    ck_assert(be->set_precision("bf16"));
    int rows = CPU_LIN_ROWS + 77, IC = 40, OC = 24;
    float *x = normal((size_t)rows * IC, 1, 1.0f), *w = normal((size_t)OC * IC, 2, 0.3f), *b = normal(OC, 3, 1.0f);
    float *g = normal((size_t)rows * OC, 4, 1.0f), *out = xmalloc((size_t)rows * OC * 4);
    float *dx = calloc((size_t)rows * IC, 4), *dw = calloc((size_t)OC * IC, 4);
    Act *xa = be->alloc((size_t)rows * IC * 2);
    be->act_from_f32(xa, x, (size_t)rows * IC);
    be->linear_forward(out, xa, w, b, rows, IC, OC);
    be->linear_backward(dx, dw, NULL, g, xa, w, rows, IC, OC);
    double ef = 0, ex = 0, ew = 0, mf = 0, mx = 0, mw = 0;
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < OC; o++) {
            double s = b[o];
            for (int i = 0; i < IC; i++) s += rb(x[(size_t)r * IC + i]) * rb(w[(size_t)o * IC + i]);
            ef = fmax(ef, fabs(out[(size_t)r * OC + o] - s)), mf = fmax(mf, fabs(s));
        }
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < IC; i++) {
            double s = 0;
            for (int o = 0; o < OC; o++) s += rb(g[(size_t)r * OC + o]) * rb(w[(size_t)o * IC + i]);
            ex = fmax(ex, fabs(dx[(size_t)r * IC + i] - s)), mx = fmax(mx, fabs(s));
        }
    for (int o = 0; o < OC; o++)
        for (int i = 0; i < IC; i++) {
            double s = 0;
            for (int r = 0; r < rows; r++) s += rb(g[(size_t)r * OC + o]) * rb(x[(size_t)r * IC + i]);
            ew = fmax(ew, fabs(dw[(size_t)o * IC + i] - s)), mw = fmax(mw, fabs(s));
        }
    printf("bf16 linear vs float64 on rounded operands: fwd %.2e dinp %.2e dW %.2e (relative)\n", ef / mf, ex / mx,
           ew / mw);
    ck_assert_msg(ef / mf < 1e-5 && ex / mx < 1e-5 && ew / mw < 1e-5, "a GEMM operand was not rounded to bf16");
    ck_assert_uint_gt(be->scratch_peak(), 0);
    be->set_precision("fp32");
    be->free(xa);
    free(x), free(w), free(b), free(g), free(out), free(dx), free(dw);
}
END_TEST

// Forward at bf16 with the weight in backend memory W (its values as now in wh): the largest
// error against float64 on the rounded operands, relative to the largest output.
static double forward_err(const Backend *be, const Act *xa, const float *x, const float *W, int rows, int IC, int OC) {
    float *wh = xmalloc((size_t)OC * IC * 4), *out = xmalloc((size_t)rows * OC * 4);
    be->to_host(wh, W, (size_t)OC * IC * 4);
    be->linear_forward(out, xa, W, NULL, rows, IC, OC);
    double e = 0, m = 1e-30;
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < OC; o++) {
            double s = 0;
            for (int i = 0; i < IC; i++) s += rb(x[(size_t)r * IC + i]) * rb(wh[(size_t)o * IC + i]);
            e = fmax(e, fabs(out[(size_t)r * OC + o] - s)), m = fmax(m, fabs(s));
        }
    free(wh), free(out);
    return e / m;
}

START_TEST(test_weight_copies_follow_writes) {
    const Backend *be = &backend_cpu;
    ck_assert(be->set_precision("bf16"));
    int rows = 8, IC = 40, OC = 24;
    size_t n = (size_t)OC * IC, bytes = n * 4;
    float *x = normal((size_t)rows * IC, 11, 1.0f), *w1 = normal(n, 12, 0.3f), *w2 = normal(n, 13, 0.3f);
    Act *xa = be->alloc((size_t)rows * IC * 2);
    be->act_from_f32(xa, x, (size_t)rows * IC);
    float *W = be->alloc(bytes), *other = be->alloc(bytes);
    be->upload(W, w1, bytes);
    ck_assert_double_lt(forward_err(be, xa, x, W, rows, IC, OC), 1e-5);
    ck_assert_uint_eq(cpu_weights_bf16_bytes(), n * 2);   // one copy, made on first use
    be->upload(W, w2, bytes);                               // upload
    ck_assert_double_lt(forward_err(be, xa, x, W, rows, IC, OC), 1e-5);
    be->to_device(other, w1, bytes);
    be->copy(W, other, bytes);                              // device-to-device copy
    ck_assert_double_lt(forward_err(be, xa, x, W, rows, IC, OC), 1e-5);
    be->to_device(W + n / 2, w2, bytes / 2);                // a write over half of it
    ck_assert_double_lt(forward_err(be, xa, x, W, rows, IC, OC), 1e-5);
    float *g = be->alloc(bytes), *am = be->alloc(bytes), *av = be->alloc(bytes);
    be->to_device(g, w2, bytes);
    be->adamw_update(W, g, am, av, n, 0.05f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);   // AdamW: every weight moves 0.05
    ck_assert_double_lt(forward_err(be, xa, x, W, rows, IC, OC), 1e-5);
    AdamwSpan span[1] = {{n / 3, n / 3, 1}};                // AdamW on a span inside the weight
    be->adamw_multi(W, g, am, av, n, span, 1, 0.05f, 0.9f, 0.999f, 1e-8f, 0.05f, 2);
    ck_assert_double_lt(forward_err(be, xa, x, W, rows, IC, OC), 1e-5);
    be->zero(W, bytes);                                     // zero: the product is 0
    ck_assert_double_lt(forward_err(be, xa, x, W, rows, IC, OC), 1e-5);
    be->free(W);                                            // freed: the copy goes with it
    ck_assert_uint_eq(cpu_weights_bf16_bytes(), 0);
    W = be->alloc(bytes);                                   // likely the same address, new values
    be->upload(W, w2, bytes);
    ck_assert_double_lt(forward_err(be, xa, x, W, rows, IC, OC), 1e-5);
    be->set_precision("fp32");                              // a precision change drops every copy
    ck_assert_uint_eq(cpu_weights_bf16_bytes(), 0);
    be->free(W), be->free(other), be->free(g), be->free(am), be->free(av), be->free(xa);
    free(x), free(w1), free(w2);
}
END_TEST

START_TEST(test_gelu_tables_give_fp32_bits) {
    const Backend *be = &backend_cpu;
    size_t n = 1 << 16;
    uint16_t *xq = xmalloc(n * 2), *yq = xmalloc(n * 2);
    float *x = xmalloc(n * 4), *y = xmalloc(n * 4), *dout = normal(n, 21, 1.0f);
    float *d16 = xcalloc(n, 4), *d32 = xcalloc(n, 4);
    for (size_t i = 0; i < n; i++) xq[i] = (uint16_t)i, x[i] = bf16_f32((uint16_t)i);
    ck_assert(be->set_precision("fp32"));
    be->gelu_forward((Act *)y, (const Act *)x, n);
    be->gelu_backward(d32, (const Act *)x, dout, n);
    ck_assert(be->set_precision("bf16"));
    be->gelu_forward((Act *)yq, (const Act *)xq, n);
    be->gelu_backward(d16, (const Act *)xq, dout, n);
    size_t bad = 0, nan = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t want = f32_bf16(y[i]);
        int both_nan = isnan(bf16_f32(want)) && isnan(bf16_f32(yq[i]));
        nan += both_nan;
        if (!both_nan && (yq[i] != want || !(bits(d16[i]) == bits(d32[i]) || (isnan(d16[i]) && isnan(d32[i])))))
            if (bad++ < 5) printf("x 0x%04zx: y 0x%04x want 0x%04x, d %a want %a\n", i, yq[i], want, d16[i], d32[i]);
    }
    ck_assert_uint_eq(bad, 0);
    ck_assert_uint_gt(nan, 0);   // the NaN inputs were among them
    be->set_precision("fp32");
    free(xq), free(yq), free(x), free(y), free(dout), free(d16), free(d32);
}
END_TEST

int main(int argc, char **argv) {
    (void)argc;
    if (test_cpu_bf16_portable(argv)) return 1;
    Suite *s = suite_create("cpu_bf16");
    TCase *tc = tcase_create("cpu_bf16");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_rounding_hand_cases);
    tcase_add_test(tc, test_vector_conversions_match_scalar);
    tcase_add_test(tc, test_offer_and_set_precision);
    tcase_add_test(tc, test_linear_multiplies_bf16_operands);
    tcase_add_test(tc, test_weight_copies_follow_writes);
    tcase_add_test(tc, test_gelu_tables_give_fp32_bits);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
