// linear_bf16.c: the linear layers at precision bf16 (backend.h; mirrors kernels/linear.cu's bf16
// GEMMs): bf16 operands — the Act input as stored, the weight and dout rounded to bf16 on each
// call — with fp32 accumulation and an fp32 output (an Act output is rounded once, bias added).
// Two engines compute the same products: oneDNN's bf16 matmul on CPUs with AVX512_BF16 or
// AMX-BF16 (gemm_dnnl.c), and elsewhere, under DCAL_CPU_BF16=portable, OpenBLAS sgemm on fp32 copies of
// the bf16 values (a product of two bf16 values is exact in fp32; the sums are sgemm's).
// Rows go CPU_LIN_ROWS at a time, so the copies stay a few MiB at any micro-batch
// (backend/cpu_scratch_rule.h, which the planner counts); dW sums the chunks in order.
#include <cblas.h>
#include <stdlib.h>
#include "backend/cpu/cpu.h"
#include "core/common.h"

// C (+)= op(A)·op(B) on bf16 operands (cpu.h's layout): oneDNN, or, for a shape it refuses,
// sgemm on widened copies (the same products; only the engine's sums differ).
static void gemm_bf16(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda, const uint16_t *B, int ldb,
                      int acc, float *C, int ldc) {
    if (cpu_dnnl_gemm_bf16(ta, tb, M, N, K, A, lda, B, ldb, acc, C, ldc)) return;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
    float *a = xmalloc(na * 4), *b = xmalloc(nb * 4);
    cpu_bf16_unpack(a, A, na);
    cpu_bf16_unpack(b, B, nb);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, a, lda,
                b, ldb, acc ? 1.0f : 0.0f, C, ldc);
    free(a), free(b);
}

// The weight as the GEMM multiplies it: its bf16 copy, rounded once per change (weight_bf16.c),
// for oneDNN; for the portable engine (tests) that copy widened into slot A on each call.
static const void *weight_operand(const float *w, int OC, int IC) {
    size_t n = (size_t)OC * IC;
    const uint16_t *q = cpu_weight_bf16(w, n);
    if (cpu_bf16_dnnl()) return q;
    float *f = cpu_scratch(CPU_SCRATCH_A, n * 4);
    cpu_bf16_unpack(f, q, n);
    return f;
}

// y [n, OC] = x·Wᵀ for rows [r0, r0+n) of the Act input (no bias).
static void rows_forward(float *y, const Act *inp, const void *wq, size_t r0, int n, int IC, int OC) {
    const uint16_t *x = (const uint16_t *)inp + r0 * IC;
    if (cpu_bf16_dnnl()) {
        gemm_bf16(0, 1, n, OC, IC, x, IC, wq, IC, 0, y, OC);
        return;
    }
    float *xb = cpu_scratch(CPU_SCRATCH_B, (size_t)cpu_lin_chunk(n) * IC * 4);
    cpu_bf16_unpack(xb, x, (size_t)n * IC);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, OC, IC, 1.0f, xb, IC, wq, IC, 0.0f, y, OC);
}

void cpu_linear_forward_bf16(float *out, const Act *inp, const float *w, const float *b, int rows, int IC, int OC) {
    const void *wq = weight_operand(w, OC, IC);
    for (int r0 = 0; r0 < rows; r0 += CPU_LIN_ROWS) {
        int n = rows - r0 < CPU_LIN_ROWS ? rows - r0 : CPU_LIN_ROWS;
        rows_forward(out + (size_t)r0 * OC, inp, wq, (size_t)r0, n, IC, OC);
    }
    if (b) cpu_linear_bias_forward(out, b, rows, OC);
}

// out's rows = bf16(y + bq), row by row in one pass (y is in cache from the GEMM; a bias pass
// then a rounding pass over all rows read it twice).
static void bias_pack_rows(uint16_t *out, float *y, const float *bq, int n, int OC) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        float *row = y + (size_t)r * OC;
        if (bq)
            for (int o = 0; o < OC; o++) row[o] += bq[o];
        cpu_bf16_pack_row(out + (size_t)r * OC, row, (size_t)OC);
    }
}

// out = bf16(acc + bf16(b)) (backend.h: the bias has the output's type, as in cuBLASLt).
void cpu_linear_forward_act_bf16(Act *out, const Act *inp, const float *w, const float *b, int rows, int IC,
                                 int OC) {
    const void *wq = weight_operand(w, OC, IC);
    float *y = cpu_scratch(CPU_SCRATCH_C, cpu_lin_chunk((size_t)rows) * OC * 4), *bq = NULL;
    if (b) {   // the bias rounded once, not once a row
        bq = xmalloc((size_t)OC * sizeof(float));
        cpu_bf16_round(bq, b, (size_t)OC);
    }
    for (int r0 = 0; r0 < rows; r0 += CPU_LIN_ROWS) {
        int n = rows - r0 < CPU_LIN_ROWS ? rows - r0 : CPU_LIN_ROWS;
        rows_forward(y, inp, wq, (size_t)r0, n, IC, OC);
        bias_pack_rows((uint16_t *)out + (size_t)r0 * OC, y, bq, n, OC);
    }
    free(bq);
}

// g = rows [0, n) of dout rounded to bf16 and, with s, s[o] += their column sums, rows in order:
// one pass over dout (the bias's own pass read it again: 0.9% of a 448-px bf16 step). Each
// s[o] is the chain cpu_linear_bias_backward makes (its columns over the threads, rows
// ascending, chunk after chunk into the same s), so db keeps its bits.
enum { PACK_COLS = 256 };
static void pack_rows_sum(uint16_t *g, float *s, const float *dout, int n, int OC) {
#pragma omp parallel for schedule(static)
    for (int o0 = 0; o0 < OC; o0 += PACK_COLS) {
        int w = OC - o0 < PACK_COLS ? OC - o0 : PACK_COLS;
        for (int r = 0; r < n; r++) {
            const float *d = dout + (size_t)r * OC + o0;
            cpu_bf16_pack_row(g + (size_t)r * OC + o0, d, (size_t)w);
            if (s)
                for (int j = 0; j < w; j++) s[o0 + j] += d[j];
        }
    }
}

// Rows [r0, r0+n): dinp += G·W (= with set) and dW += Gᵀ·X, with G = dout's rows rounded to
// bf16; with s (oneDNN's engine), the rows' column sums go into it as G is made.
static void rows_backward(float *dinp, float *dw, float *s, const float *dout, const Act *inp, const void *wq,
                          size_t r0, int n, int IC, int OC, bool set) {
    const uint16_t *x = (const uint16_t *)inp + r0 * IC;
    float *dx = dinp ? dinp + r0 * IC : NULL;
    if (cpu_bf16_dnnl()) {
        uint16_t *g = cpu_scratch(CPU_SCRATCH_C, (size_t)cpu_lin_chunk(n) * OC * 2);
        pack_rows_sum(g, s, dout + r0 * OC, n, OC);
        if (dx) gemm_bf16(0, 0, n, IC, OC, g, OC, wq, IC, !set, dx, IC);
        if (dw) gemm_bf16(1, 0, OC, IC, n, g, OC, x, IC, 1, dw, IC);
        return;
    }
    float *g = cpu_scratch(CPU_SCRATCH_C, (size_t)cpu_lin_chunk(n) * OC * 4);
    cpu_bf16_round(g, dout + r0 * OC, (size_t)n * OC);
    if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, IC, OC, 1.0f, g, OC, wq, IC, set ? 0.0f : 1.0f, dx,
                        IC);
    if (dw) {
        float *xb = cpu_scratch(CPU_SCRATCH_B, (size_t)cpu_lin_chunk(n) * IC * 4);
        cpu_bf16_unpack(xb, x, (size_t)n * IC);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, n, 1.0f, g, OC, xb, IC, 1.0f, dw, IC);
    }
}

void cpu_linear_backward_bf16(float *dinp, float *dw, float *db, const float *dout, const Act *inp, const float *w,
                              int rows, int IC, int OC, bool set) {
    // db from the fp32 dout, as on CUDA: with oneDNN's engine summed as G is made.
    float *s = db && (dinp || dw) && cpu_bf16_dnnl() ? xcalloc((size_t)OC, sizeof(float)) : NULL;
    if (dinp || dw) {
        const void *wq = weight_operand(w, OC, IC);
        for (int r0 = 0; r0 < rows; r0 += CPU_LIN_ROWS) {
            int n = rows - r0 < CPU_LIN_ROWS ? rows - r0 : CPU_LIN_ROWS;
            rows_backward(dinp, dw, s, dout, inp, wq, (size_t)r0, n, IC, OC, set);
        }
    }
    if (s)
        for (int o = 0; o < OC; o++) db[o] += s[o];
    else if (db)
        cpu_linear_bias_backward(db, dout, rows, OC);
    free(s);
}
