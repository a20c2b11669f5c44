// cublas.cpp: cudasim's cuBLAS: a reference column-major GEMM (see cublas_v2.h).
#include <stdio.h>
#include <string.h>
#include <vector>
#include "blas_ref.h"
#include "cublas_v2.h"
#include "cuda_bf16.h"

struct cublasContext {
    cudaStream_t stream;
};

cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = new cublasContext{nullptr}; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}
cublasStatus_t cublasGetProperty(libraryPropertyType, int *v) { *v = 0; return CUBLAS_STATUS_SUCCESS; }

namespace cudasim_blas {

float tf32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & ~0x1fffu;
    memcpy(&f, &u, 4);
    return f;
}

float elem(const void *p, cudaDataType_t t, size_t i) {
    return t == CUDA_R_16BF ? __bfloat162float(((const __nv_bfloat16 *)p)[i]) : ((const float *)p)[i];
}

void store(void *p, cudaDataType_t t, size_t i, float v) {
    if (t == CUDA_R_16BF) ((__nv_bfloat16 *)p)[i] = __float2bfloat16(v);
    else ((float *)p)[i] = v;
}

size_t esize(cudaDataType_t t) { return t == CUDA_R_16BF ? 2 : 4; }

size_t extent(int rows, int cols, int ld) { return rows && cols ? (size_t)(cols - 1) * ld + rows : 0; }

bool in_device(const char *fn, const char *what, const void *p, size_t elems, cudaDataType_t t) {
    if (!elems || cudasim::device_range(p, elems * esize(t))) return true;
    fprintf(stderr, "cudasim: %s: %s = %p spanning %zu elements is not inside one device allocation\n", fn, what, p,
            elems);
    return false;
}

std::vector<float> operand(const void *X, cudaDataType_t t, int ld, bool trans, int rows, int cols, bool round) {
    std::vector<float> o((size_t)rows * cols);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            float v = elem(X, t, trans ? (size_t)r * ld + c : (size_t)c * ld + r);
            o[(size_t)r * cols + c] = round ? tf32(v) : v;
        }
    return o;
}

}   // namespace cudasim_blas

namespace {
using namespace cudasim_blas;

cublasStatus_t gemm1(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const void *A,
                     cudaDataType_t At, int lda, const void *B, cudaDataType_t Bt, int ldb, float beta, void *C,
                     cudaDataType_t Ct, int ldc, cublasComputeType_t compute, bool run = true) {
    bool tA = ta != CUBLAS_OP_N, tB = tb != CUBLAS_OP_N;
    if (m < 0 || n < 0 || k < 0 || lda < (tA ? k : m) || ldb < (tB ? n : k) || ldc < m) return CUBLAS_STATUS_INVALID_VALUE;
    if (!in_device("cublasGemmEx", "A", A, tA ? extent(k, m, lda) : extent(m, k, lda), At) ||
        !in_device("cublasGemmEx", "B", B, tB ? extent(n, k, ldb) : extent(k, n, ldb), Bt) || !in_device("cublasGemmEx", "C", C, extent(m, n, ldc), Ct))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!run) return CUBLAS_STATUS_SUCCESS;   // checked only: a capture records the call
    bool round = compute == CUBLAS_COMPUTE_32F_FAST_TF32;
    std::vector<float> a = operand(A, At, lda, tA, m, k, round);   // op(A) [m][k]
    std::vector<float> bt = operand(B, Bt, ldb, !tB, n, k, round); // op(B)ᵀ [n][k]
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = 0.f;
            const float *ar = &a[(size_t)i * k], *br = &bt[(size_t)j * k];
            for (int l = 0; l < k; l++) s += ar[l] * br[l];
            size_t ci = (size_t)j * ldc + i;
            float old = beta == 0.f ? 0.f : elem(C, Ct, ci);   // beta = 0: C is not read (it may hold NaN)
            float v = alpha * s + beta * old;
            store(C, Ct, ci, v);
        }
    return CUBLAS_STATUS_SUCCESS;
}

// gemm1 now, or (the handle's stream capturing) checked now and recorded, alpha and beta by
// value as the host pointer mode reads them at the call.
cublasStatus_t gemm_or_record(cudaStream_t s, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                              const void *A, cudaDataType_t At, int lda, const void *B, cudaDataType_t Bt, int ldb,
                              float beta, void *C, cudaDataType_t Ct, int ldc, cublasComputeType_t compute) {
    bool record;
    if (cudasim::capture_gate(s, "cublasGemmEx", &record) != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
    cublasStatus_t st = gemm1(ta, tb, m, n, k, alpha, A, At, lda, B, Bt, ldb, beta, C, Ct, ldc, compute, !record);
    if (record && st == CUBLAS_STATUS_SUCCESS)
        cudasim::capture_record([=] {
            if (gemm1(ta, tb, m, n, k, alpha, A, At, lda, B, Bt, ldb, beta, C, Ct, ldc, compute) != CUBLAS_STATUS_SUCCESS)
                cudasim::fail("cublasGemmEx replayed from a graph: an operand is no longer device memory");
        });
    return st;
}

bool supported(cudaDataType_t At, cudaDataType_t Bt, cudaDataType_t Ct) {
    auto ok = [](cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16BF; };
    return ok(At) && ok(Bt) && ok(Ct);
}

}   // namespace

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t Atype, int lda, const void *B,
                            cudaDataType_t Btype, int ldb, const void *beta, void *C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!supported(Atype, Btype, Ctype)) return CUBLAS_STATUS_NOT_SUPPORTED;
    return gemm_or_record(h->stream, ta, tb, m, n, k, *(const float *)alpha, A, Atype, lda, B, Btype, ldb,
                          *(const float *)beta, C, Ctype, ldc, compute);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda,
                                          long long sA, const void *B, cudaDataType_t Btype, int ldb, long long sB,
                                          const void *beta, void *C, cudaDataType_t Ctype, int ldc, long long sC,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!supported(Atype, Btype, Ctype)) return CUBLAS_STATUS_NOT_SUPPORTED;
    for (int i = 0; i < batch; i++) {
        cublasStatus_t s = gemm_or_record(h->stream, ta, tb, m, n, k, *(const float *)alpha,
                                          (const char *)A + sA * i * esize(Atype), Atype, lda,
                                          (const char *)B + sB * i * esize(Btype), Btype, ldb, *(const float *)beta,
                                          (char *)C + sC * i * esize(Ctype), Ctype, ldc, compute);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}
