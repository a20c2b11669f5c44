// linear.cu: patch embedding (im2col, tokens) and the linear layer on cuBLAS.
//
// Precision (ARCHITECTURE.md §5): operands stay fp32 at the interface; the compute type
// follows the backend's precision (device.cu): "bf16" runs the GEMMs on the
// tensor cores in TF32 with fp32 accumulation (CUBLAS_COMPUTE_32F_FAST_TF32),
// which needs no bf16 copies of weights/activations and keeps ~1e-3 parity;
// "fp32" runs plain fp32 GEMMs (CUBLAS_COMPUTE_32F).
#include "kernels/cuda_common.h"

// Column-major cuBLAS on row-major data: a row-major [R, C] matrix is a
// column-major [C, R] one, so every product below is written for the transposes.
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    const float alpha = 1.f;
    CUBLAS_CHECK(cublasGemmEx(cuda_cublas(), ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, &beta, C,
                              CUDA_R_32F, ldc, cuda_gemm_compute(), CUBLAS_GEMM_DEFAULT));
}

__global__ void add_bias_kernel(float *out, const float *b, size_t rows, int OC) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * OC) out[i] += b[i % OC];
}

void cuda_linear_forward(float *out, const float *inp, const float *w, const float *b, int rows, int IC, int OC) {
    if (rows <= 0 || OC <= 0) return;
    // out^T [OC, rows] = W [OC, IC] · inp^T [IC, rows]; W^T is W's column-major view.
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, OC, rows, IC, w, IC, inp, IC, 0.f, out, OC);
    if (b) {
        size_t n = (size_t)rows * OC;
        add_bias_kernel<<<cdiv(n, 256), 256, 0, cuda_stream()>>>(out, b, rows, OC);
        LAUNCH_CHECK();
    }
}

void cuda_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                          int rows, int IC, int OC) {
    if (rows <= 0) return;
    // dinp [rows, IC] += dout [rows, OC] · W [OC, IC]; column-major: dinp^T = W^T · dout^T.
    if (dinp) gemm(CUBLAS_OP_N, CUBLAS_OP_N, IC, rows, OC, w, IC, dout, OC, 1.f, dinp, IC);
    // dW [OC, IC] += dout^T · inp; column-major: dW^T [IC, OC] = inp^T [IC, rows] · dout [rows, OC].
    if (dw) gemm(CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, rows, inp, IC, dout, OC, 1.f, dw, IC);
    if (db) cuda_colsum_acc(db, dout, rows, OC);
}

// cols [B*P, C*p*p], row (b, py, px), column (c, ky, kx): one thread per column
// entry, so consecutive threads read consecutive kx of one image row.
__global__ void im2col_kernel(float *cols, const float *img, int B, int C, int S, int p) {
    int g = S / p, P = g * g, K = C * p * p;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * P * K) return;
    int col = (int)(i % K);
    size_t row = i / K;
    int b = (int)(row / P), pi = (int)(row % P);
    int py = pi / g, px = pi % g;
    int c = col / (p * p), ky = (col / p) % p, kx = col % p;
    cols[i] = img[(((size_t)b * C + c) * S + py * p + ky) * S + px * p + kx];
}

void cuda_im2col_forward(float *cols, const float *img, int B, int C, int S, int p) {
    int g = S / p;
    size_t n = (size_t)B * g * g * C * p * p;
    if (!n) return;
    im2col_kernel<<<cdiv(n, 256), 256, 0, cuda_stream()>>>(cols, img, B, C, S, p);
    LAUNCH_CHECK();
}

__global__ void tokens_forward_kernel(float *x0, const float *pe, const float *cls, const float *pos, int B, int N,
                                      int D) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * N * D) return;
    int d = (int)(i % D);
    int t = (int)((i / D) % N);
    int b = (int)(i / ((size_t)N * D));
    float v = t == 0 ? cls[d] : pe[((size_t)b * (N - 1) + t - 1) * D + d];
    x0[i] = v + pos[(size_t)t * D + d];
}

void cuda_tokens_forward(float *x0, const float *pe, const float *cls, const float *pos, int B, int N, int D) {
    size_t n = (size_t)B * N * D;
    if (!n) return;
    tokens_forward_kernel<<<cdiv(n, 256), 256, 0, cuda_stream()>>>(x0, pe, cls, pos, B, N, D);
    LAUNCH_CHECK();
}

// One thread per (t, d): it owns dpos[t, d] (and dcls[d] for t = 0) and sums
// over b in order — deterministic, no atomics. dpe is a plain per-element +=.
__global__ void tokens_backward_kernel(float *dpe, float *dcls, float *dpos, const float *dx0, int B, int N, int D) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * D) return;
    int d = (int)(i % D), t = (int)(i / D);
    float s = 0.f;
    for (int b = 0; b < B; b++) {
        float g = dx0[((size_t)b * N + t) * D + d];
        s += g;
        if (t > 0 && dpe) dpe[((size_t)b * (N - 1) + t - 1) * D + d] += g;
    }
    if (dpos) dpos[i] += s;
    if (t == 0 && dcls) dcls[d] += s;
}

void cuda_tokens_backward(float *dpe, float *dcls, float *dpos, const float *dx0, int B, int N, int D) {
    size_t n = (size_t)N * D;
    if (!n || (!dpe && !dcls && !dpos)) return;
    tokens_backward_kernel<<<cdiv(n, 256), 256, 0, cuda_stream()>>>(dpe, dcls, dpos, dx0, B, N, D);
    LAUNCH_CHECK();
}
