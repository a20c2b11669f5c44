// unit_sgemm.c: the fp32 GEMM engine of src/backend/cpu/sgemm.c. Each engine (OpenBLAS, and
// oneDNN where it runs here) against a float64 reference on every (ta, tb) pair, beta 0 and 1,
// alpha 1 and not (oneDNN hands alpha ≠ 1 to OpenBLAS); DCAL_CPU_SGEMM picks the engine and
// describe says which; the automatic choice follows the rule (oneDNN only on an AVX-512 CPU
// whose OpenBLAS kernels are not AVX-512 ones); a bad DCAL_CPU_SGEMM stops with its name.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "backend/cpu/cpu.h"
#include "core/common.h"
#include "core/rng.h"
#include "testutil.h"

char *openblas_get_corename(void);

static void fill(float *x, size_t n, uint64_t seed) {
    Rng r;
    rng_init(&r, 11, 0, seed, RNG_TEST);
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(&r);
}

// One product on the engine in force against float64; returns the largest relative error.
static double run_one(int ta, int tb, int M, int N, int K, float alpha, float beta, uint64_t seed) {
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = xmalloc(na * 4), *B = xmalloc(nb * 4), *C = xmalloc(nc * 4);
    fill(A, na, seed), fill(B, nb, seed + 1), fill(C, nc, seed + 2);
    double *ref = xmalloc((size_t)M * N * sizeof(double));
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++)
                s += (double)A[ta ? (size_t)p * lda + i : (size_t)i * lda + p] *
                     B[tb ? (size_t)j * ldb + p : (size_t)p * ldb + j];
            ref[(size_t)i * N + j] = alpha * s + (beta != 0 ? beta * (double)C[(size_t)i * ldc + j] : 0);
        }
    float pad = C[N];   // row 0's first padding element: must stay
    cpu_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    ck_assert(C[N] == pad);
    double worst = 0, scale = 1;
    for (size_t i = 0; i < (size_t)M * N; i++) scale = fmax(scale, fabs(ref[i]));
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) worst = fmax(worst, fabs(C[(size_t)i * ldc + j] - ref[(size_t)i * N + j]) / scale);
    free(A), free(B), free(C), free(ref);
    return worst;
}

static void use(const char *engine) {
    if (engine) setenv("DCAL_CPU_SGEMM", engine, 1);
    else unsetenv("DCAL_CPU_SGEMM");
    cpu_sgemm_rechoose();
}

static void check_engine(const char *name) {
    printf("unit_sgemm: %s: %s\n", name, cpu_sgemm_engine());
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int k = 0; k < 3; k++) {
                float alpha = k == 2 ? 0.125f : 1.0f, beta = k == 1 ? 1.0f : 0.0f;
                double e = run_one(ta, tb, 67, 45, 131, alpha, beta, (uint64_t)(ta * 6 + tb * 3 + k) * 3);
                if (e > 2e-6) ck_abort_msg("%s ta %d tb %d alpha %g beta %g: error %.3g", name, ta, tb, alpha, beta, e);
            }
}

START_TEST(test_openblas) {
    use("openblas");
    ck_assert_int_eq(cpu_sgemm_dnnl(), 0);
    ck_assert(strstr(cpu_sgemm_engine(), "OpenBLAS sgemm (DCAL_CPU_SGEMM=openblas)"));
    check_engine("openblas");
}
END_TEST

// Asked for, oneDNN runs wherever it makes an fp32 matmul; elsewhere OpenBLAS, saying why.
START_TEST(test_onednn) {
    use("onednn");
    ck_assert_int_eq(cpu_sgemm_dnnl(), cpu_dnnl_f32_ready());
    ck_assert(strstr(cpu_sgemm_engine(), cpu_sgemm_dnnl() ? "fp32 matmul" : ", but "));
    check_engine("onednn");
}
END_TEST

START_TEST(test_auto_rule) {
    use(NULL);
    const char *core = openblas_get_corename();
    int avx512_core = core && (!strcasecmp(core, "SkylakeX") || !strcasecmp(core, "Cooperlake") ||
                               !strcasecmp(core, "SapphireRapids"));
    int want = cpu_isa() == 2 && !avx512_core && cpu_dnnl_f32_ready();
    printf("unit_sgemm: OpenBLAS core %s, ISA level %d: auto chooses %s\n", core, cpu_isa(), want ? "oneDNN" : "OpenBLAS");
    ck_assert_int_eq(cpu_sgemm_dnnl(), want);
    use("auto");
    ck_assert_int_eq(cpu_sgemm_dnnl(), want);
    check_engine("auto");
}
END_TEST

START_TEST(test_bad_value) {
    use("mkl");
    cpu_sgemm_dnnl();   // dies: tcase_add_exit_test expects DCAL_EXIT_FAIL
}
END_TEST

int main(void) {
    Suite *s = suite_create("sgemm");
    TCase *tc = tcase_create("sgemm");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_openblas);
    tcase_add_test(tc, test_onednn);
    tcase_add_test(tc, test_auto_rule);
    tcase_add_exit_test(tc, test_bad_value, DCAL_EXIT_FAIL);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
