// linear.c: patch embedding (im2col, tokens) and linear layers on the fp32 GEMM engine
// (cpu_sgemm: OpenBLAS or oneDNN, sgemm.c; mirrors kernels/linear.cu).
// Contracts in backend/backend.h: backward ops accumulate (+=) and skip NULL
// gradients. Every loop that reduces over rows runs in a fixed order, so results
// never depend on the thread count.
#include <string.h>
#include "backend/cpu/cpu.h"

// cols is an Act: rounded where it is written at bf16 (cpu_act_store), a copy at fp32.
void cpu_im2col_forward(Act *cols, const float *img, int B, int C, int S, int p) {
    int g = S / p, P = g * g, K = C * p * p;
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < P; t++) {
            int py = t / g, px = t % g;
            size_t row = ((size_t)b * P + t) * K;
            for (int c = 0; c < C; c++)
                for (int ky = 0; ky < p; ky++) {
                    const float *src = img + (((size_t)b * C + c) * S + py * p + ky) * S + px * p;
                    cpu_act_store(cols, row + (size_t)(c * p + ky) * p, src, (size_t)p);
                }
        }
}

void cpu_tokens_forward(float *x0, const float *pe, const float *cls, const float *pos, int B, int N, int D) {
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < N; t++) {
            float *o = x0 + ((size_t)b * N + t) * D;
            const float *src = t == 0 ? cls : pe + ((size_t)b * (N - 1) + t - 1) * D;
            const float *ps = pos + (size_t)t * D;
            for (int i = 0; i < D; i++) o[i] = src[i] + ps[i];
        }
}

void cpu_tokens_backward(float *dpe, float *dcls, float *dpos, const float *dx0, int B, int N, int D) {
    if (dpe)
        for (int b = 0; b < B; b++)
            for (int t = 1; t < N; t++) {
                float *o = dpe + ((size_t)b * (N - 1) + t - 1) * D;
                const float *g = dx0 + ((size_t)b * N + t) * D;
                for (int i = 0; i < D; i++) o[i] += g[i];
            }
    // Sum over the batch in order b = 0..B-1: deterministic.
#pragma omp parallel for
    for (int t = 0; t < N; t++)
        for (int b = 0; b < B; b++) {
            const float *g = dx0 + ((size_t)b * N + t) * D;
            if (dpos)
                for (int i = 0; i < D; i++) dpos[(size_t)t * D + i] += g[i];
            if (t == 0 && dcls)
                for (int i = 0; i < D; i++) dcls[i] += g[i];
        }
}

void cpu_linear_bias_forward(float *out, const float *b, int rows, int OC) {
#pragma omp parallel for
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < OC; o++) out[(size_t)r * OC + o] += b[o];
}

// With a bias, out starts as the bias rows and sgemm accumulates into it (beta 1): the engine
// then skips its pass that zeroes C for beta 0, and no second pass adds the bias (together
// 1.2% of a 224-px step in perf; ~0.6% saved). The bias is the first term of each output's
// sum, not the last.
void cpu_linear_forward(float *out, const float *inp, const float *w, const float *b, int rows, int IC, int OC) {
    if (b) {
#pragma omp parallel for
        for (int r = 0; r < rows; r++) memcpy(out + (size_t)r * OC, b, (size_t)OC * sizeof(float));
    }
    cpu_sgemm(0, 1, rows, OC, IC, 1.0f, inp, IC, w, IC, b ? 1.0f : 0.0f, out, OC);
}

// db [OC] += Σ_r dout [r, :]. Each column is still summed over rows in ascending
// order (the same bits as a column-at-a-time loop), but DB_COLS columns at once, so
// a row is read contiguously and the adds vectorise.
enum { DB_COLS = 64 };

void cpu_linear_bias_backward(float *db, const float *dout, int rows, int OC) {
#pragma omp parallel for schedule(static)
    for (int o0 = 0; o0 < OC; o0 += DB_COLS) {
        int n = OC - o0 < DB_COLS ? OC - o0 : DB_COLS;
        float s[DB_COLS] = {0};
        for (int r = 0; r < rows; r++) {
            const float *d = dout + (size_t)r * OC + o0;
            for (int j = 0; j < n; j++) s[j] += d[j];
        }
        for (int j = 0; j < n; j++) db[o0 + j] += s[j];
    }
}

void cpu_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                         int rows, int IC, int OC, bool set) {
    if (dinp)   // dinp [rows, IC] (+)= dout [rows, OC] · W [OC, IC]
        cpu_sgemm(0, 0, rows, IC, OC, 1.0f, dout, OC, w, IC, set ? 0.0f : 1.0f, dinp, IC);
    if (dw)     // dW [OC, IC] += doutᵀ · inp
        cpu_sgemm(1, 0, OC, IC, rows, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
    if (db) cpu_linear_bias_backward(db, dout, rows, OC);
}
