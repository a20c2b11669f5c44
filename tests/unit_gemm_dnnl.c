// unit_gemm_dnnl.c: the oneDNN GEMMs of src/backend/cpu/gemm_dnnl.c against a float64
// reference. The fp32 variant runs the same code and strided layouts as the bf16 one on any
// CPU, so it checks every (ta, tb) pair, odd sizes, padded leading dimensions (the padding
// of C must stay untouched, NaN padding of A and B must not leak in), accumulate 0 and 1,
// the primitive cache (same bits on a hit, still right after eviction) and refused
// arguments. The bf16 variant runs where the CPU has a bf16 matmul; elsewhere it must
// refuse and leave C alone. Built without oneDNN, every call must return 0.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "backend/cpu/cpu.h"
#include "core/common.h"
#include "core/rng.h"
#include "testutil.h"

#ifdef DCAL_HAVE_DNNL
enum { HAVE_DNNL = 1 };
#else
enum { HAVE_DNNL = 0 };
#endif

static const float C_PAD = 12345.f;   // what C's padding holds before and after

// One problem: op(A) [M, K], op(B) [K, N], C [M, N], each stored with padded rows.
typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc, acc;
    float *A, *B, *C;   // A and B: rows ≥ their logical row length, NaN in the padding
    double *ref;        // [M, N]: the float64 result C must approach
} Gemm;

static uint16_t bf16_rne(float f) {   // round to nearest even (no NaN among the inputs here)
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// A stored matrix of `rows` rows of `cols` values, row stride ld, NaN past cols; values
// rounded to bf16 when `bf16` so that the bf16 GEMM sees exactly what the reference does.
static float *stored(int rows, int cols, int ld, uint64_t index, int bf16) {
    float *m = xmalloc((size_t)rows * ld * sizeof(float));
    Rng r;
    rng_init(&r, 7, 0, index, RNG_TEST);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < ld; j++) {
            float v = j < cols ? rng_normal(&r) : NAN;
            m[(size_t)i * ld + j] = bf16 && j < cols ? bf16_to_f32(bf16_rne(v)) : v;
        }
    return m;
}

static Gemm gemm_make(int ta, int tb, int M, int N, int K, int pad, int acc, uint64_t seed, int bf16) {
    Gemm g = {ta, tb, M, N, K, (ta ? M : K) + pad, (tb ? K : N) + pad + 2, N + pad + 4, acc, 0, 0, 0, 0};
    g.A = stored(ta ? K : M, ta ? M : K, g.lda, seed * 3, bf16);
    g.B = stored(tb ? N : K, tb ? K : N, g.ldb, seed * 3 + 1, bf16);
    g.C = stored(M, N, g.ldc, seed * 3 + 2, 0);
    g.ref = xmalloc((size_t)M * N * sizeof(double));
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = acc ? g.C[(size_t)i * g.ldc + j] : 0;
            for (int k = 0; k < K; k++) {
                double a = g.A[ta ? (size_t)k * g.lda + i : (size_t)i * g.lda + k];
                double b = g.B[tb ? (size_t)j * g.ldb + k : (size_t)k * g.ldb + j];
                s += a * b;
            }
            g.ref[(size_t)i * N + j] = s;
        }
    for (int i = 0; i < M; i++)   // C's padding: a value to find again, not NaN
        for (int j = N; j < g.ldc; j++) g.C[(size_t)i * g.ldc + j] = C_PAD;
    return g;
}

static void gemm_free(Gemm *g) {
    free(g->A), free(g->B), free(g->C), free(g->ref);
}

static int run_f32(const Gemm *g, float *C) {
    return cpu_dnnl_gemm_f32(g->ta, g->tb, g->M, g->N, g->K, g->A, g->lda, g->B, g->ldb, g->acc, C, g->ldc);
}

// bf16 copies of A and B (their values are bf16 already: the conversion is exact).
static int run_bf16(const Gemm *g, float *C) {
    size_t na = (size_t)(g->ta ? g->K : g->M) * g->lda, nb = (size_t)(g->tb ? g->N : g->K) * g->ldb;
    uint16_t *a = xmalloc(na * 2), *b = xmalloc(nb * 2);
    for (size_t i = 0; i < na; i++) a[i] = bf16_rne(g->A[i]);
    for (size_t i = 0; i < nb; i++) b[i] = bf16_rne(g->B[i]);
    int ran = cpu_dnnl_gemm_bf16(g->ta, g->tb, g->M, g->N, g->K, a, g->lda, b, g->ldb, g->acc, C, g->ldc);
    free(a), free(b);
    return ran;
}

// C against the reference (max error over max |ref|, floor 1) and its padding untouched.
static void check_result(const Gemm *g, const float *C, double tol, const char *what) {
    float *dense = xmalloc((size_t)g->M * g->N * sizeof(float));
    for (int i = 0; i < g->M; i++) {
        memcpy(dense + (size_t)i * g->N, C + (size_t)i * g->ldc, (size_t)g->N * sizeof(float));
        for (int j = g->N; j < g->ldc; j++)
            ck_assert_msg(C[(size_t)i * g->ldc + j] == C_PAD, "%s ta=%d tb=%d acc=%d: C padding [%d,%d] written",
                          what, g->ta, g->tb, g->acc, i, j);
    }
    double err = rel_err(dense, g->ref, (size_t)g->M * g->N, 1.0);
    ck_assert_msg(err < tol, "%s ta=%d tb=%d acc=%d: rel err %.3g (tol %.1g)", what, g->ta, g->tb, g->acc, err, tol);
    free(dense);
}

static size_t c_bytes(const Gemm *g) { return (size_t)g->M * g->ldc * sizeof(float); }

START_TEST(test_f32_layouts) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int acc = 0; acc < 2; acc++) {
                Gemm g = gemm_make(ta, tb, 37, 29, 53, 3, acc, (uint64_t)(ta * 4 + tb * 2 + acc), 0);
                float *before = xmalloc(c_bytes(&g));
                memcpy(before, g.C, c_bytes(&g));
                int ran = run_f32(&g, g.C);
                ck_assert_int_eq(ran, HAVE_DNNL);
                if (ran)
                    check_result(&g, g.C, 1e-5, "f32");
                else   // built without oneDNN: refused, C as it was
                    ck_assert(memcmp(before, g.C, c_bytes(&g)) == 0);
                free(before);
                gemm_free(&g);
            }
}
END_TEST

// The second call of a shape reuses its cached primitive: the same bits. More shapes than the
// cache holds then evict it; the shape rebuilt afterwards must still give those bits.
START_TEST(test_f32_cache) {
    if (!HAVE_DNNL) return;
    Gemm g = gemm_make(1, 0, 37, 29, 53, 1, 1, 40, 0);
    float *c1 = xmalloc(c_bytes(&g)), *c2 = xmalloc(c_bytes(&g));
    memcpy(c1, g.C, c_bytes(&g));
    memcpy(c2, g.C, c_bytes(&g));
    ck_assert_int_eq(run_f32(&g, c1), 1);
    ck_assert_int_eq(run_f32(&g, c2), 1);
    ck_assert(memcmp(c1, c2, c_bytes(&g)) == 0);
    check_result(&g, c1, 1e-5, "f32 cached");
    for (int s = 1; s <= 270; s++) {   // 270 > the 256 cache slots
        Gemm h = gemm_make(0, 1, s, 5, 3, 0, 0, 100 + (uint64_t)s, 0);
        ck_assert_int_eq(run_f32(&h, h.C), 1);
        check_result(&h, h.C, 1e-5, "f32 eviction");
        gemm_free(&h);
    }
    memcpy(c2, g.C, c_bytes(&g));
    ck_assert_int_eq(run_f32(&g, c2), 1);
    ck_assert(memcmp(c1, c2, c_bytes(&g)) == 0);
    free(c1), free(c2);
    gemm_free(&g);
}
END_TEST

// Shapes that would read out of bounds, or are empty, are refused with C untouched.
START_TEST(test_refused_arguments) {
    Gemm g = gemm_make(0, 0, 9, 7, 5, 0, 0, 50, 0);
    float *before = xmalloc(c_bytes(&g));
    memcpy(before, g.C, c_bytes(&g));
    ck_assert_int_eq(cpu_dnnl_gemm_f32(0, 0, 9, 7, 5, g.A, 4, g.B, g.ldb, 0, g.C, g.ldc), 0);   // lda < K
    ck_assert_int_eq(cpu_dnnl_gemm_f32(1, 0, 9, 7, 5, g.A, 5, g.B, g.ldb, 0, g.C, g.ldc), 0);   // lda < M
    ck_assert_int_eq(cpu_dnnl_gemm_f32(0, 1, 9, 7, 5, g.A, g.lda, g.B, 4, 0, g.C, g.ldc), 0);   // ldb < K
    ck_assert_int_eq(cpu_dnnl_gemm_f32(0, 0, 9, 7, 5, g.A, g.lda, g.B, g.ldb, 0, g.C, 6), 0);   // ldc < N
    ck_assert_int_eq(cpu_dnnl_gemm_f32(0, 0, 0, 7, 5, g.A, g.lda, g.B, g.ldb, 0, g.C, g.ldc), 0);
    ck_assert(memcmp(before, g.C, c_bytes(&g)) == 0);
    free(before);
    gemm_free(&g);
}
END_TEST

// bf16 products are exact in fp32, so with bf16 inputs the result is as close as fp32's.
START_TEST(test_bf16) {
    int ready = cpu_dnnl_bf16_ready();
    const char *d = cpu_dnnl_describe();
    printf("unit_gemm_dnnl: bf16 ready %d: %s\n", ready, d);
    ck_assert(d && d[0]);
    ck_assert_int_eq(cpu_dnnl_bf16_ready(), ready);   // probed once, same answer
    if (!HAVE_DNNL) ck_assert_int_eq(ready, 0);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int acc = 0; acc < 2; acc++) {
                Gemm g = gemm_make(ta, tb, 37, 29, 53, 3, acc, 20 + (uint64_t)(ta * 4 + tb * 2 + acc), 1);
                float *before = xmalloc(c_bytes(&g));
                memcpy(before, g.C, c_bytes(&g));
                ck_assert_int_eq(run_bf16(&g, g.C), ready);
                if (ready)
                    check_result(&g, g.C, 1e-5, "bf16");
                else
                    ck_assert(memcmp(before, g.C, c_bytes(&g)) == 0);
                free(before);
                gemm_free(&g);
            }
}
END_TEST

int main(void) {
    printf("unit_gemm_dnnl: %s\n", HAVE_DNNL ? "built with oneDNN" : "built without oneDNN: every call must refuse");
    Suite *s = suite_create("gemm_dnnl");
    TCase *tc = tcase_create("gemm_dnnl");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_f32_layouts);
    tcase_add_test(tc, test_f32_cache);
    tcase_add_test(tc, test_refused_arguments);
    tcase_add_test(tc, test_bf16);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
