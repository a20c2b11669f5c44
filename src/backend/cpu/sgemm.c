// sgemm.c: which library runs the fp32 GEMMs of the linear layers at precision fp32:
// OpenBLAS, or oneDNN's matmul where OpenBLAS does not know the CPU. Chosen once per process,
// by the CPU and the libraries alone, never by timing, so a run's bits follow from its machine.
// (The rollout's small per-thread score products, inside its parallel region, and the portable
// bf16 engine, a test engine whose scratch the planner counts exactly, stay on OpenBLAS.)
//
// Why two: Debian's OpenBLAS 0.3.21 picks its kernels by CPU model (DYNAMIC_ARCH). A CPU newer
// than it (AMD Zen 4 and 5) gets its Haswell kernels, AVX2 only, and runs sgemm at half of
// what its AVX-512 units do: on a Zen 5 EPYC, 190 against oneDNN's 343 GFLOP/s over the step's
// linear layers (bench/RESULTS.md). Where OpenBLAS picked an AVX-512 core (SkylakeX and later)
// or the CPU has no AVX-512, OpenBLAS stays: it was the fastest there (RESULTS.md, Zen 3).
// DCAL_CPU_SGEMM=openblas|onednn|auto overrides the choice (auto: as above).
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "backend/cpu/cpu.h"
#include "core/common.h"

char *openblas_get_corename(void);   // OpenBLAS (as openblas_get_config in backend_cpu.c)

// OpenBLAS core names whose sgemm kernels use AVX-512 (0.3.21's; later releases map Zen 4 onto these).
static int openblas_avx512(const char *core) {
    static const char *const names[] = {"skylakex", "cooperlake", "sapphirerapids"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (core && !strcasecmp(core, names[i])) return 1;
    return 0;
}

// -1 not asked yet; 0 OpenBLAS; 1 oneDNN. why: the reason, for describe().
static int engine = -1;
static char why[160];

static void choose(void) {
    const char *env = getenv("DCAL_CPU_SGEMM"), *core = openblas_get_corename();
    if (env && *env && strcmp(env, "auto") && strcmp(env, "openblas") && strcmp(env, "onednn"))
        dcal_die("DCAL_CPU_SGEMM=%s: expected openblas, onednn or auto", env);
    int want = env && !strcmp(env, "onednn") ? 1 : env && !strcmp(env, "openblas") ? 0 : -1;
    if (want < 0) {
        want = cpu_isa() == 2 && !openblas_avx512(core);
        snprintf(why, sizeof why, want ? "OpenBLAS's %s kernels lack AVX-512" : "OpenBLAS %s", core ? core : "?");
    } else
        snprintf(why, sizeof why, "DCAL_CPU_SGEMM=%s", env);
    if (want && !cpu_dnnl_f32_ready()) {   // built without oneDNN, or only its reference code here
        char w[sizeof why + 200];
        snprintf(w, sizeof w, "%s, but %s", why, cpu_dnnl_describe_f32());
        memcpy(why, w, sizeof why - 1);   // truncated to fit
        why[sizeof why - 1] = 0;
        want = 0;
    }
    engine = want;
}

int cpu_sgemm_dnnl(void) {
    if (engine < 0) {
#pragma omp critical(dcal_sgemm_choose)
        if (engine < 0) choose();
    }
    return engine;
}

void cpu_sgemm_rechoose(void) { engine = -1; }

const char *cpu_sgemm_engine(void) {
    static char line[320];
    if (cpu_sgemm_dnnl())
        snprintf(line, sizeof line, "%s (%s)", cpu_dnnl_describe_f32(), why);
    else
        snprintf(line, sizeof line, "OpenBLAS sgemm (%s)", why);
    return line;
}

// C = alpha·op(A)·op(B) + beta·C, row-major (cblas_sgemm's contract). oneDNN takes the products
// with alpha 1 and beta 0 or 1 (all of the linear layers'); any other, or a shape it refuses,
// runs on OpenBLAS.
void cpu_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc) {
    if (cpu_sgemm_dnnl() && alpha == 1.0f && (beta == 0.0f || beta == 1.0f) &&
        cpu_dnnl_gemm_f32(ta, tb, M, N, K, A, lda, B, ldb, beta == 1.0f, C, ldc))
        return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                B, ldb, beta, C, ldc);
}
