// gemm.c → build/bench_gemm: which sgemm for the CPU backend (issue 13: "compare OpenBLAS,
// BLIS and oneDNN and choose by measurement"). The ViT-B/16 step's GEMM shapes (224 px,
// micro-batch 4: 788 token rows; forward, input-gradient and weight-gradient forms) and the
// attention tiles, best of 3, GFLOP/s per shape and over the linear layers together.
// The build links dcal's OpenBLAS; the other libraries (Debian libblis-openmp-dev, libdnnl-dev)
// by hand, see bench/README.md.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef USE_DNNL
#include <dnnl.h>
#else
#include <cblas.h>
#endif
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static void gemm(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C) {
    int lda = ta ? M : K, ldb = tb ? K : N;
#ifdef USE_DNNL
    dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
#else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
#endif
}
int main(void) {
    int R = 788, D = 768;
    struct { const char *name; int ta, tb, M, N, K; } s[] = {
        {"qkv fwd", 0, 1, R, 3 * D, D},   {"proj fwd", 0, 1, R, D, D},      {"fc1 fwd", 0, 1, R, 4 * D, D},
        {"fc2 fwd", 0, 1, R, D, 4 * D},   {"qkv dX", 0, 0, R, D, 3 * D},    {"fc1 dX", 0, 0, R, D, 4 * D},
        {"fc2 dX", 0, 0, R, 4 * D, D},    {"qkv dW", 1, 0, 3 * D, D, R},    {"fc1 dW", 1, 0, 4 * D, D, R},
        {"fc2 dW", 1, 0, D, 4 * D, R},    {"attn tile S", 0, 1, 64, 256, 64}, {"attn tile PV", 0, 0, 64, 64, 256},
    };
    size_t big = (size_t)4 * D * 3072 + 16;
    float *A = malloc(big * 4), *B = malloc(big * 4), *C = malloc(big * 4);
    for (size_t i = 0; i < big; i++) A[i] = (float)((i * 7919) % 1000) / 1000.f - 0.5f, B[i] = (float)((i * 104729) % 1000) / 1000.f - 0.5f;
    double tot_t = 0, tot_f = 0;
    for (unsigned k = 0; k < sizeof s / sizeof *s; k++) {
        int reps = s[k].M * (double)s[k].N * s[k].K < 1e8 ? 400 : 6;
        gemm(s[k].ta, s[k].tb, s[k].M, s[k].N, s[k].K, A, B, C);
        double best = 1e9;
        for (int r = 0; r < 3; r++) {
            double t0 = now();
            for (int i = 0; i < reps; i++) gemm(s[k].ta, s[k].tb, s[k].M, s[k].N, s[k].K, A, B, C);
            double t = (now() - t0) / reps;
            if (t < best) best = t;
        }
        double f = 2.0 * s[k].M * s[k].N * s[k].K;
        printf("%-14s %5d x %5d x %5d  %7.2f ms  %6.1f GFLOP/s\n", s[k].name, s[k].M, s[k].N, s[k].K, best * 1e3, f / best / 1e9);
        if (s[k].M > 64) { tot_t += best; tot_f += f; }
    }
    printf("linear layers together: %.1f GFLOP/s\n", tot_f / tot_t / 1e9);
    return 0;
}
