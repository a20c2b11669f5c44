// selftest.cu: the simulator's own checks (ctest sim_selftest): each CUDA feature
// it models gives the hardware's answer, and each misuse it claims to catch
// (deadlock, misaligned wmma, out-of-bounds write, bad launch, wrong copy kind)
// is reported. Written as CUDA and translated by cu2cpp.pl like kernels/*.cu.
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <mma.h>
#include "kernels/mma_sm80.cuh"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <string>
#include <vector>
#include "kernels/cuda_common.h"

using namespace nvcuda;
static int g_fail;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); g_fail = 1; } } while (0)

__global__ void warp_ops_kernel(int *out) {
    int lane = threadIdx.x % 32, w = threadIdx.x / 32;
    int s = lane;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    int down = __shfl_down_sync(0xffffffffu, lane * 10, 3);
    int bcast = __shfl_sync(0xffffffffu, lane + 100, 7);
    unsigned ballot = __ballot_sync(0xffffffffu, lane % 3 == 0);
    int *o = out + (w * 32 + lane) * 4;
    o[0] = s, o[1] = down, o[2] = bcast, o[3] = (int)ballot;
}

// Reverse 256 values through shared memory: needs the barrier between write and read.
__global__ void reverse_kernel(float *out, const float *in) {
    __shared__ float buf[256];
    buf[threadIdx.x] = in[threadIdx.x];
    __syncthreads();
    out[threadIdx.x] = buf[255 - threadIdx.x];
}
__global__ void reverse_nosync_kernel(float *out, const float *in) {
    __shared__ float buf[256];
    buf[threadIdx.x] = in[threadIdx.x];
    out[threadIdx.x] = buf[255 - threadIdx.x];
}

__global__ void wmma_kernel(float *c, const __nv_bfloat16 *a, const __nv_bfloat16 *b) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
    wmma::fill_fragment(fc, 0.f);
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b, 16);
    wmma::mma_sync(fc, fa, fb, fc);
    wmma::store_matrix_sync(c, fc, 16, wmma::mem_row_major);
}

// mma.sync m16n8k16: every lane builds its fragments from row-major A (16×16),
// B (16×8, stored k-major: B[k][n] at b[k*8+n]) and C (16×8) by the PTX ISA's
// layout formulas written out here (not the model's), and stores D by the C
// layout. swap != 0 swaps registers a[1] and a[2]: a wrong fragment.
__global__ void mma16816_kernel(float *d, const __nv_bfloat16 *A, const __nv_bfloat16 *B, const float *C, int swap) {
    int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    uint32_t a[4], b[2];
    float c[4], o[4];
    for (int i = 0; i < 4; i++) {   // a_i pairs: rows g, g+8, g, g+8; columns 2t, 2t, 2t+8, 2t+8
        int row = g + 8 * (i & 1), col = 2 * t + 8 * (i >> 1);
        a[i] = (uint32_t)__bfloat16_as_ushort(A[row * 16 + col]) | (uint32_t)__bfloat16_as_ushort(A[row * 16 + col + 1]) << 16;
    }
    for (int i = 0; i < 2; i++) {   // b_i pairs: rows 2t, 2t+8; column g
        int k = 2 * t + 8 * i;
        b[i] = (uint32_t)__bfloat16_as_ushort(B[k * 8 + g]) | (uint32_t)__bfloat16_as_ushort(B[(k + 1) * 8 + g]) << 16;
    }
    for (int i = 0; i < 4; i++) c[i] = C[(g + 8 * (i >> 1)) * 8 + 2 * t + (i & 1)];
    if (swap) { uint32_t x = a[1]; a[1] = a[2]; a[2] = x; }
    mma_m16n8k16_bf16(o, a, b, c);
    for (int i = 0; i < 4; i++) d[(g + 8 * (i >> 1)) * 8 + 2 * t + (i & 1)] = o[i];
}

// ldmatrix x4 (and .trans) from a 32×8 shared tile holding the 16-bit values
// row*8 + col; lane l addresses row l. Every lane stores its four registers.
__global__ void ldmatrix_kernel(uint32_t *out, int trans) {
    __shared__ __align__(16) unsigned short tile[32 * 8];
    int lane = threadIdx.x;
    for (int c = 0; c < 8; c++) tile[lane * 8 + c] = (unsigned short)(lane * 8 + c);
    __syncwarp();
    uint32_t r[4];
    if (trans) ldmatrix_x4_trans(r, tile + lane * 8);
    else ldmatrix_x4(r, tile + lane * 8);
    for (int m = 0; m < 4; m++) out[lane * 4 + m] = r[m];
}
// ldmatrix .x2 (the model's other count): only lanes 0-15 give addresses (the others a wild one).
__global__ void ldmatrix_x2_kernel(uint32_t *out) {
    __shared__ __align__(16) unsigned short tile[16 * 8];
    int lane = threadIdx.x;
    if (lane < 16)
        for (int c = 0; c < 8; c++) tile[lane * 8 + c] = (unsigned short)(lane * 8 + c);
    __syncwarp();
    uint32_t r[2];
    cudasim::ldmatrix_b16(r, 2, false, lane < 16 ? (const void *)(tile + lane * 8) : (const void *)1);
    out[lane * 2] = r[0], out[lane * 2 + 1] = r[1];
}
__global__ void ldmatrix_misaligned_kernel(void) {
    __shared__ __align__(16) unsigned short tile[33 * 8];
    for (int c = 0; c < 8; c++) tile[threadIdx.x * 8 + c] = 0;
    uint32_t r[4];
    ldmatrix_x4(r, tile + threadIdx.x * 8 + 1);
}
// Lane 0 waits at __syncwarp while the others are at the mma: the instruction is warp-collective.
__global__ void mma_divergent_kernel(void) {
    uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    float c[4] = {0, 0, 0, 0};
    if (threadIdx.x == 0) __syncwarp();
    else mma_m16n8k16_bf16(c, a, b, c);
}

// Lane 0 waits at a warp barrier for lanes that wait at the block barrier for lane 0.
__global__ void divergent_barrier_kernel(void) {
    if (threadIdx.x == 0) __syncwarp();
    else __syncthreads();
}
__global__ void misaligned_wmma_kernel(const __nv_bfloat16 *a) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
    wmma::load_matrix_sync(fa, a + 1, 16);
}
// 64 floats fill the 256-byte-aligned body exactly, so p[64] is the first byte of the guard page.
__global__ void oob_kernel(float *p, int n) { p[n + threadIdx.x] = 1.f; }
__global__ void big_smem_kernel(float *p) {
    extern __shared__ float dyn[];
    dyn[threadIdx.x] = 1.f;
    p[threadIdx.x] = dyn[threadIdx.x];
}

template <class T> static T *dev(const T *h, size_t n) {
    T *d;
    cudaMalloc(&d, n * sizeof(T));
    if (h) cudaMemcpy(d, h, n * sizeof(T), cudaMemcpyHostToDevice);
    return d;
}

static void test_warp_ops(void) {
    int *d = dev<int>(nullptr, 64 * 4), h[64 * 4];
    warp_ops_kernel<<<1, 64>>>(d);
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    unsigned want_ballot = 0;
    for (int l = 0; l < 32; l++) want_ballot |= (l % 3 == 0) << l;
    for (int t = 0; t < 64; t++) {
        int l = t % 32;
        CHECK(h[t * 4] == 496, "xor reduction lane %d: %d", t, h[t * 4]);
        CHECK(h[t * 4 + 1] == (l + 3 < 32 ? l + 3 : l) * 10, "shfl_down lane %d: %d", t, h[t * 4 + 1]);
        CHECK(h[t * 4 + 2] == 107, "shfl lane %d: %d", t, h[t * 4 + 2]);
        CHECK((unsigned)h[t * 4 + 3] == want_ballot, "ballot lane %d: %08x", t, h[t * 4 + 3]);
    }
    cudaFree(d);
}

static void test_barrier(void) {
    float in[256], out[256];
    for (int i = 0; i < 256; i++) in[i] = (float)i;
    float *din = dev(in, 256), *dout = dev<float>(nullptr, 256);
    reverse_kernel<<<1, 256>>>(dout, din);
    cudaMemcpy(out, dout, sizeof out, cudaMemcpyDeviceToHost);
    for (int i = 0; i < 256; i++) CHECK(out[i] == 255 - i, "reverse[%d] = %g", i, out[i]);
    // Without the barrier, the first threads read slots not yet written: NaN (poisoned).
    reverse_nosync_kernel<<<1, 256>>>(dout, din);
    cudaMemcpy(out, dout, sizeof out, cudaMemcpyDeviceToHost);
    CHECK(out[0] != out[0], "missing __syncthreads not visible: out[0] = %g", out[0]);
    cudaFree(din), cudaFree(dout);
}

static void test_bf16(void) {
    // 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: ties to even (1); 1 + 3·2^-8 rounds up.
    CHECK(__float2bfloat16(1.0f + 1.0f / 256).bits == 0x3f80, "tie to even");
    CHECK(__float2bfloat16(1.0f + 3.0f / 256).bits == 0x3f82, "tie to even (odd)");
    CHECK(__float2bfloat16(1.0f + 1.0f / 256 + 1.0f / 65536).bits == 0x3f81, "above half rounds up");
    CHECK(__bfloat162float(__float2bfloat16(-2.5f)) == -2.5f, "exact value");
    float nan = __bfloat162float(__float2bfloat16(NAN));
    CHECK(nan != nan, "NaN stays NaN");
}

static void test_wmma(void) {
    __nv_bfloat16 a[256], b[256];
    float af[256], bf[256], c[256];
    for (int i = 0; i < 256; i++) {
        a[i] = __float2bfloat16(sinf(i * 0.37f)), b[i] = __float2bfloat16(cosf(i * 0.11f));
        af[i] = __bfloat162float(a[i]), bf[i] = __bfloat162float(b[i]);
    }
    __nv_bfloat16 *da = dev(a, 256), *db = dev(b, 256);
    float *dc = dev<float>(nullptr, 256);
    wmma_kernel<<<1, 32>>>(dc, da, db);
    cudaMemcpy(c, dc, sizeof c, cudaMemcpyDeviceToHost);
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            float s = 0.f;   // B col_major: element (k, j) at b[j*16 + k]
            for (int k = 0; k < 16; k++) s += af[i * 16 + k] * bf[j * 16 + k];
            CHECK(c[i * 16 + j] == s, "wmma (%d,%d): %g, want %g", i, j, c[i * 16 + j], s);
        }
    cudaFree(da), cudaFree(db), cudaFree(dc);
}

static void test_gemm(void) {
    // C[3x2] = op(A) op(B) with A stored transposed (k x m = 4 x 3), B plain (k x n = 4 x 2).
    float A[12], B[8], C[6], one = 1.f, zero = 0.f;
    for (int i = 0; i < 12; i++) A[i] = (float)(i + 1);
    for (int i = 0; i < 8; i++) B[i] = (float)(i % 3) - 1;
    float *dA = dev(A, 12), *dB = dev(B, 8), *dC = dev<float>(nullptr, 6);   // dC holds NaN: beta = 0 must not read it
    cublasHandle_t h;
    cublasCreate(&h);
    cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, 3, 2, 4, &one, dA, CUDA_R_32F, 4, dB, CUDA_R_32F, 4,
                                    &zero, dC, CUDA_R_32F, 3, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    CHECK(s == CUBLAS_STATUS_SUCCESS, "gemm status %d", (int)s);
    cudaMemcpy(C, dC, sizeof C, cudaMemcpyDeviceToHost);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) {
            float w = 0;
            for (int k = 0; k < 4; k++) w += A[i * 4 + k] * B[j * 4 + k];
            CHECK(C[j * 3 + i] == w, "gemm C(%d,%d) = %g, want %g", i, j, C[j * 3 + i], w);
        }
    // An operand that runs past its allocation is refused.
    s = cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 3, 3, 4, &one, dA, CUDA_R_32F, 3, dB, CUDA_R_32F, 4, &zero, dC,
                     CUDA_R_32F, 3, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    CHECK(s == CUBLAS_STATUS_INVALID_VALUE, "out-of-range gemm accepted (%d)", (int)s);
    cublasDestroy(h);
    cudaFree(dA), cudaFree(dB), cudaFree(dC);
}


// ---- cuBLASLt ----
// fp32 → bf16 → fp32 (8 significant bits, nearest even), as precision bf16's GEMMs read operands.
static float bf16r(float f) { return __bfloat162float(__float2bfloat16(f)); }
struct Lt {
    cublasLtHandle_t h;
    cublasLtMatmulDesc_t d;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulPreference_t p;
    cublasLtMatmulHeuristicResult_t r;
    int found;
};
// D [m×n] (= C, in place) = op(A) op(B) + beta·D with epilogue e; layouts as stored; A and B
// of type ab, C/D of type cd, accumulating in `compute`.
static cublasStatus_t lt_plan_typed(Lt *l, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                    cublasLtEpilogue_t e, void *bias, cudaDataType_t ab, cudaDataType_t cd,
                                    cublasComputeType_t compute) {
    int32_t t_a = ta, t_b = tb;
    uint32_t epi = e;
    cublasLtCreate(&l->h);
    cublasLtMatmulDescCreate(&l->d, compute, CUDA_R_32F);
    cublasLtMatmulDescSetAttribute(l->d, CUBLASLT_MATMUL_DESC_TRANSA, &t_a, sizeof t_a);
    cublasLtMatmulDescSetAttribute(l->d, CUBLASLT_MATMUL_DESC_TRANSB, &t_b, sizeof t_b);
    cublasLtMatmulDescSetAttribute(l->d, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    if (bias) cublasLtMatmulDescSetAttribute(l->d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    cublasLtMatrixLayoutCreate(&l->a, ab, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, ta == CUBLAS_OP_N ? m : k);
    cublasLtMatrixLayoutCreate(&l->b, ab, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, tb == CUBLAS_OP_N ? k : n);
    cublasLtMatrixLayoutCreate(&l->c, cd, m, n, m);
    cublasLtMatmulPreferenceCreate(&l->p);
    return cublasLtMatmulAlgoGetHeuristic(l->h, l->d, l->a, l->b, l->c, l->c, l->p, 1, &l->r, &l->found);
}
static cublasStatus_t lt_plan(Lt *l, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, cublasLtEpilogue_t e,
                              void *bias) {
    return lt_plan_typed(l, ta, tb, m, n, k, e, bias, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F);
}
static void lt_free(Lt *l) {
    cublasLtMatmulPreferenceDestroy(l->p);
    cublasLtMatrixLayoutDestroy(l->a), cublasLtMatrixLayoutDestroy(l->b), cublasLtMatrixLayoutDestroy(l->c);
    cublasLtMatmulDescDestroy(l->d);
    cublasLtDestroy(l->h);
}

// The linear layer's two products: out^T = W^T-view · inp^T + bias (BIAS, A transposed) and
// dW^T += inp^T · dout with db from the epilogue (BGRADB, B transposed), against scalar loops.
static void test_lt(void) {
    const int R = 5, I = 3, O = 4;   // rows, in features, out features
    float x[R * I], w[O * I], b[O], g[R * O], out[R * O], dw[O * I], db[O];
    for (int i = 0; i < R * I; i++) x[i] = sinf(i * 0.7f) * 3;
    for (int i = 0; i < O * I; i++) w[i] = cosf(i * 0.3f), dw[i] = 0.25f * i;
    for (int i = 0; i < O; i++) b[i] = 10.f + i, db[i] = NAN;
    for (int i = 0; i < R * O; i++) g[i] = (float)((i * 7) % 5) - 1.5f;
    float *dx = dev(x, R * I), *dwt = dev(w, O * I), *dbias = dev(b, O), *dg = dev(g, R * O), *dout = dev<float>(nullptr, R * O);
    float *ddw = dev(dw, O * I), *ddb = dev(db, O), one = 1.f, zero = 0.f;
    Lt l;
    CHECK(lt_plan(&l, CUBLAS_OP_T, CUBLAS_OP_N, O, R, I, CUBLASLT_EPILOGUE_BIAS, dbias) == CUBLAS_STATUS_SUCCESS && l.found == 1,
          "BIAS heuristic");
    CHECK(cublasLtMatmul(l.h, l.d, &one, dwt, l.a, dx, l.b, &zero, dout, l.c, dout, l.c, &l.r.algo, nullptr, 0, 0) ==
              CUBLAS_STATUS_SUCCESS, "BIAS matmul");
    lt_free(&l);
    cudaMemcpy(out, dout, sizeof out, cudaMemcpyDeviceToHost);
    for (int r = 0; r < R; r++)
        for (int o = 0; o < O; o++) {
            float s = 0.f;
            for (int i = 0; i < I; i++) s += w[o * I + i] * x[r * I + i];
            CHECK(out[r * O + o] == s + b[o], "BIAS out[%d,%d] = %g, want %g", r, o, out[r * O + o], s + b[o]);
        }
    CHECK(lt_plan(&l, CUBLAS_OP_N, CUBLAS_OP_T, I, O, R, CUBLASLT_EPILOGUE_BGRADB, ddb) == CUBLAS_STATUS_SUCCESS && l.found == 1,
          "BGRADB heuristic");
    CHECK(cublasLtMatmul(l.h, l.d, &one, dx, l.a, dg, l.b, &one, ddw, l.c, ddw, l.c, &l.r.algo, nullptr, 0, 0) ==
              CUBLAS_STATUS_SUCCESS, "BGRADB matmul");
    lt_free(&l);
    float got_dw[O * I], got_db[O];
    cudaMemcpy(got_dw, ddw, sizeof got_dw, cudaMemcpyDeviceToHost);
    cudaMemcpy(got_db, ddb, sizeof got_db, cudaMemcpyDeviceToHost);
    for (int o = 0; o < O; o++) {
        float s = 0.f;   // the epilogue writes db (the NaN it held is gone), it does not add to it
        for (int r = 0; r < R; r++) s += g[r * O + o];
        CHECK(got_db[o] == s, "BGRADB db[%d] = %g, want %g", o, got_db[o], s);
        for (int i = 0; i < I; i++) {
            float t = 0.f;
            for (int r = 0; r < R; r++) t += x[r * I + i] * g[r * O + o];
            CHECK(got_dw[o * I + i] == t + dw[o * I + i], "BGRADB dw[%d,%d] = %g, want %g", o, i, got_dw[o * I + i],
                  t + dw[o * I + i]);
        }
    }
    // A refused epilogue: no algorithm, as a library without one for these types answers.
    cudasim_lt_refuse_epilogues(CUBLASLT_EPILOGUE_BGRADB);
    CHECK(lt_plan(&l, CUBLAS_OP_N, CUBLAS_OP_T, I, O, R, CUBLASLT_EPILOGUE_BGRADB, ddb) == CUBLAS_STATUS_NOT_SUPPORTED &&
              l.found == 0, "refused BGRADB still found an algorithm");
    lt_free(&l);
    cudasim_lt_refuse_epilogues(0);
    cudaFree(dx), cudaFree(dwt), cudaFree(dbias), cudaFree(dg), cudaFree(dout), cudaFree(ddw), cudaFree(ddb);
}

// linear.cu's forward with the BIAS epilogue and, with that epilogue refused, its fallback
// (the product, then add_bias_kernel): both against the scalar product plus bias, bit for bit
// (the sum is in k order either way). The runs differ in rows, so linear.cu's algorithm
// cache cannot answer the second from the first.
static void test_linear_fallback(void) {
    const int R = 40, I = 9, O = 6;
    std::vector<float> x(R * I), w(O * I), b(O), out(R * O);
    for (int i = 0; i < R * I; i++) x[i] = sinf(i * 0.37f);
    for (int i = 0; i < O * I; i++) w[i] = cosf(i * 0.11f);
    for (int i = 0; i < O; i++) b[i] = 100.f + i;
    float *dx = dev(x.data(), R * I), *dw_ = dev(w.data(), O * I), *db = dev(b.data(), O);
    for (int refuse = 0; refuse < 2; refuse++) {
        int rows = R - refuse;
        float *dout = dev<float>(nullptr, R * O);
        cudasim_lt_refuse_epilogues(refuse ? CUBLASLT_EPILOGUE_BIAS : 0);
        cuda_linear_forward(dout, dx, dw_, db, rows, I, O);
        int refused = cudasim_lt_refuse_epilogues(0);
        CHECK(refused == refuse, "linear forward: %d BIAS queries refused, want %d", refused, refuse);
        cudaMemcpy(out.data(), dout, (size_t)rows * O * sizeof(float), cudaMemcpyDeviceToHost);
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < O; o++) {
                float s = 0.f;
                for (int i = 0; i < I; i++) s += bf16r(w[o * I + i]) * bf16r(x[r * I + i]);
                CHECK(out[r * O + o] == s + b[o], "linear out[%d,%d] (%s) = %.9g, want %.9g", r, o,
                      refuse ? "add-bias fallback" : "BIAS epilogue", out[r * O + o], s + b[o]);
            }
        cudaFree(dout);
    }
    cudaFree(dx), cudaFree(dw_), cudaFree(db);
}

// precision bf16's product: bf16 A/B (A transposed, as the linear forward's W view), fp32 C/D,
// compute 32F, the fp32 BIAS epilogue, beta = 0 over NaN; against a scalar loop over the
// bf16-rounded operands (exact products, fp32 sum in k order, then the bias), bit for bit.
static void test_lt_bf16(void) {
    const int R = 7, I = 19, O = 5;
    std::vector<__nv_bfloat16> x(R * I), w(O * I);
    std::vector<float> b(O), out(R * O);
    for (int i = 0; i < R * I; i++) x[i] = __float2bfloat16(sinf(i * 0.71f) * 2.3f);
    for (int i = 0; i < O * I; i++) w[i] = __float2bfloat16(cosf(i * 0.29f) * 1.7f);
    for (int i = 0; i < O; i++) b[i] = 3.f + 0.1f * i;
    __nv_bfloat16 *dx = dev(x.data(), R * I), *dw_ = dev(w.data(), O * I);
    float *dbias = dev(b.data(), O), *dout = dev<float>(nullptr, R * O), one = 1.f, zero = 0.f;
    Lt l;
    CHECK(lt_plan_typed(&l, CUBLAS_OP_T, CUBLAS_OP_N, O, R, I, CUBLASLT_EPILOGUE_BIAS, dbias, CUDA_R_16BF, CUDA_R_32F,
                        CUBLAS_COMPUTE_32F) == CUBLAS_STATUS_SUCCESS && l.found == 1, "bf16 BIAS heuristic");
    CHECK(cublasLtMatmul(l.h, l.d, &one, dw_, l.a, dx, l.b, &zero, dout, l.c, dout, l.c, &l.r.algo, nullptr, 0, 0) ==
              CUBLAS_STATUS_SUCCESS, "bf16 BIAS matmul");
    lt_free(&l);
    cudaMemcpy(out.data(), dout, R * O * sizeof(float), cudaMemcpyDeviceToHost);
    for (int r = 0; r < R; r++)
        for (int o = 0; o < O; o++) {
            float s = 0.f;
            for (int i = 0; i < I; i++) s += __bfloat162float(w[o * I + i]) * __bfloat162float(x[r * I + i]);
            CHECK(out[r * O + o] == s + b[o], "bf16 BIAS out[%d,%d] = %.9g, want %.9g", r, o, out[r * O + o], s + b[o]);
        }
    cudaFree(dx), cudaFree(dw_), cudaFree(dbias), cudaFree(dout);
}

// linear.cu's backward at precision bf16 (the default): dinp and dW += products of the bf16
// copies of dout, W and inp (beta = 1 onto the fp32 gradients), db by the fp32 column sum,
// against scalar loops bit for bit. dout (78 floats) and W (66) are 16-byte aligned: vector
// path plus a scalar tail; inp starts one float into its allocation: scalar path throughout.
static void test_linear_bf16_backward(void) {
    const int R = 13, I = 11, O = 6;
    std::vector<float> x(R * I + 1), w(O * I), g(R * O), di(R * I), dw(O * I), db(O);
    for (int i = 0; i < R * I + 1; i++) x[i] = sinf(i * 0.53f) * 1.9f;
    for (int i = 0; i < O * I; i++) w[i] = cosf(i * 0.17f), dw[i] = 0.01f * i;
    for (int i = 0; i < R * O; i++) g[i] = sinf(i * 1.3f + 0.2f);
    for (int i = 0; i < R * I; i++) di[i] = -0.5f + 0.003f * i;
    for (int i = 0; i < O; i++) db[i] = 1.f + i;
    float *dx = dev(x.data(), R * I + 1), *dw_ = dev(w.data(), O * I), *dg = dev(g.data(), R * O);
    float *ddi = dev(di.data(), R * I), *ddw = dev(dw.data(), O * I), *ddb = dev(db.data(), O);
    cuda_linear_backward(ddi, ddw, ddb, dg, dx + 1, dw_, R, I, O);   // inp = dx + 1: not 16-byte aligned
    std::vector<float> got_di(R * I), got_dw(O * I), got_db(O);
    cudaMemcpy(got_di.data(), ddi, R * I * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(got_dw.data(), ddw, O * I * sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(got_db.data(), ddb, O * sizeof(float), cudaMemcpyDeviceToHost);
    const float *xi = x.data() + 1;
    for (int r = 0; r < R; r++)
        for (int i = 0; i < I; i++) {
            float s = 0.f;
            for (int o = 0; o < O; o++) s += bf16r(g[r * O + o]) * bf16r(w[o * I + i]);
            CHECK(got_di[r * I + i] == s + di[r * I + i], "bf16 linear dinp[%d,%d] = %.9g, want %.9g", r, i,
                  got_di[r * I + i], s + di[r * I + i]);
        }
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            float s = 0.f;
            for (int r = 0; r < R; r++) s += bf16r(xi[r * I + i]) * bf16r(g[r * O + o]);
            CHECK(got_dw[o * I + i] == s + dw[o * I + i], "bf16 linear dW[%d,%d] = %.9g, want %.9g", o, i,
                  got_dw[o * I + i], s + dw[o * I + i]);
        }
    for (int o = 0; o < O; o++) {
        float s = 0.f;   // fp32 dout, not its bf16 copy: db is not a GEMM
        for (int r = 0; r < R; r++) s += g[r * O + o];
        CHECK(fabsf(got_db[o] - (s + db[o])) <= 1e-5f * (1.f + fabsf(s)), "bf16 linear db[%d] = %.9g, want %.9g", o,
              got_db[o], s + db[o]);
    }
    cudaFree(dx), cudaFree(dw_), cudaFree(dg), cudaFree(ddi), cudaFree(ddw), cudaFree(ddb);
}

static void test_runtime_errors(void) {
    float *d = dev<float>(nullptr, 256), h[256];
    CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyHostToDevice) == cudaErrorInvalidMemcpyDirection, "wrong copy kind");
    CHECK(cudaMemcpy(d, h, 2 * sizeof h, cudaMemcpyHostToDevice) == cudaErrorInvalidMemcpyDirection, "copy too long");
    CHECK(cudaFree(h) == cudaErrorInvalidDevicePointer, "cudaFree of host memory");
    big_smem_kernel<<<1, 32, 64 * 1024>>>(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "64 KB dynamic smem without opt-in was launched");
    CHECK(cudaFuncSetAttribute(big_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) == cudaSuccess,
          "opt-in refused");
    big_smem_kernel<<<1, 32, 64 * 1024>>>(d);
    CHECK(cudaGetLastError() == cudaSuccess, "64 KB dynamic smem after opt-in refused");
    big_smem_kernel<<<1, 2048>>>(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block launched");
    cudaFree(d);
}

// D = A·B + C against a scalar product, A and B neither symmetric nor
// structured; then a hand case (A = identity, B[k][n] = k*8 + n, C = n: D = B + C);
// then the same mma with two A registers swapped must give other numbers.
static void run_mma16816(float *d, const float *af, const float *bf, const float *c, int swap) {
    __nv_bfloat16 a[256], b[128];
    for (int i = 0; i < 256; i++) a[i] = __float2bfloat16(af[i]);
    for (int i = 0; i < 128; i++) b[i] = __float2bfloat16(bf[i]);
    __nv_bfloat16 *da = dev(a, 256), *db = dev(b, 128);
    float *dc = dev(c, 128), *dd = dev<float>(nullptr, 128);
    mma16816_kernel<<<1, 32>>>(dd, da, db, dc, swap);
    cudaMemcpy(d, dd, 128 * sizeof(float), cudaMemcpyDeviceToHost);
    cudaFree(da), cudaFree(db), cudaFree(dc), cudaFree(dd);
}
static void test_mma16816(void) {
    float af[256], bf[128], c[128], d[128];
    for (int i = 0; i < 256; i++) af[i] = __bfloat162float(__float2bfloat16(sinf(i * 0.37f) + 0.25f * (i / 16)));
    for (int i = 0; i < 128; i++) bf[i] = __bfloat162float(__float2bfloat16(cosf(i * 0.11f) - 0.5f * (i % 8)));
    for (int i = 0; i < 128; i++) c[i] = 0.125f * i - 3.f;
    run_mma16816(d, af, bf, c, 0);
    for (int i = 0; i < 16; i++)
        for (int n = 0; n < 8; n++) {
            float s = c[i * 8 + n];
            for (int k = 0; k < 16; k++) s += af[i * 16 + k] * bf[k * 8 + n];
            CHECK(d[i * 8 + n] == s, "mma m16n8k16 (%d,%d): %g, want %g", i, n, d[i * 8 + n], s);
        }
    float id[256], hb[128], hc[128], hd[128];
    for (int i = 0; i < 256; i++) id[i] = i / 16 == i % 16;
    for (int i = 0; i < 128; i++) hb[i] = (float)i, hc[i] = (float)(i % 8);
    run_mma16816(hd, id, hb, hc, 0);
    for (int i = 0; i < 128; i++) CHECK(hd[i] == i + i % 8, "mma identity case [%d]: %g, want %d", i, hd[i], i + i % 8);
    float w[128];
    run_mma16816(w, af, bf, c, 1);
    int differ = 0;
    for (int i = 0; i < 128; i++) differ += w[i] != d[i];
    CHECK(differ >= 64, "swapping a[1] and a[2] changed only %d of 128 results", differ);
}

// Hand placement: plain, lane l gets in r[m] the values of matrix m (tile rows 8m..8m+7)
// at row l/4, columns 2(l%4), 2(l%4)+1; transposed, rows 2(l%4), 2(l%4)+1 at column l/4.
static void test_ldmatrix(void) {
    for (int trans = 0; trans < 2; trans++) {
        uint32_t h[128], *d = dev<uint32_t>(nullptr, 128);
        ldmatrix_kernel<<<1, 32>>>(d, trans);
        cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
        for (int l = 0; l < 32; l++)
            for (int m = 0; m < 4; m++) {
                unsigned e[2];
                for (int j = 0; j < 2; j++)
                    e[j] = trans ? (8 * m + 2 * (l % 4) + j) * 8 + l / 4 : (8 * m + l / 4) * 8 + 2 * (l % 4) + j;
                uint32_t want = e[0] | e[1] << 16;
                CHECK(h[l * 4 + m] == want, "ldmatrix%s lane %d r[%d]: %08x, want %08x", trans ? ".trans" : "", l, m,
                      h[l * 4 + m], want);
            }
        cudaFree(d);
    }
    uint32_t h2[64], *d2 = dev<uint32_t>(nullptr, 64);
    ldmatrix_x2_kernel<<<1, 32>>>(d2);
    cudaMemcpy(h2, d2, sizeof h2, cudaMemcpyDeviceToHost);
    for (int l = 0; l < 32; l++)
        for (int m = 0; m < 2; m++) {
            unsigned e0 = (8 * m + l / 4) * 8 + 2 * (l % 4);
            CHECK(h2[l * 2 + m] == (e0 | (e0 + 1) << 16), "ldmatrix.x2 lane %d r[%d]: %08x", l, m, h2[l * 2 + m]);
        }
    cudaFree(d2);
    // Two spot values written out by hand: lane 5 is (g 1, t 1).
    uint32_t h[128], *d = dev<uint32_t>(nullptr, 128);
    ldmatrix_kernel<<<1, 32>>>(d, 0);
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    CHECK(h[5 * 4 + 2] == (138u | 139u << 16), "ldmatrix lane 5 r[2]: %08x (want row 17, cols 2-3: 138, 139)", h[22]);
    ldmatrix_kernel<<<1, 32>>>(d, 1);
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    CHECK(h[5 * 4 + 2] == (145u | 153u << 16), "ldmatrix.trans lane 5 r[2]: %08x (want rows 18-19, col 1: 145, 153)", h[22]);
    cudaFree(d);
}

// Runs f in a child; it must exit 1 with `want` in its stderr.
static void expect_death(const char *name, void (*f)(void), const char *want) {
    int fd[2];
    if (pipe(fd)) abort();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        f();
        _exit(0);
    }
    close(fd[1]);
    std::string err;
    char buf[512];
    ssize_t n;
    while ((n = read(fd[0], buf, sizeof buf)) > 0) err.append(buf, (size_t)n);
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 1 && err.find(want) != std::string::npos;
    CHECK(ok, "%s: want exit 1 and '%s', got status %d and: %s", name, want, st, err.c_str());
    if (ok) printf("ok: %s -> %s", name, err.c_str());
}
static void run_divergent(void) { divergent_barrier_kernel<<<1, 32>>>(); }
static void run_misaligned(void) {
    __nv_bfloat16 *d = dev<__nv_bfloat16>(nullptr, 512);
    misaligned_wmma_kernel<<<1, 32>>>(d);
}
static void run_ldmatrix_misaligned(void) { ldmatrix_misaligned_kernel<<<1, 32>>>(); }
static void run_mma_divergent(void) { mma_divergent_kernel<<<1, 32>>>(); }
static void run_oob(void) {
    float *d = dev<float>(nullptr, 64);
    oob_kernel<<<1, 32>>>(d, 64);
}

static void run_lt_gelu(void) {
    cublasLtMatmulDesc_t d;
    uint32_t e = CUBLASLT_EPILOGUE_GELU_BIAS;
    cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e);
}
static void run_lt_wrong_algo(void) {
    float *p = dev<float>(nullptr, 64), one = 1.f;
    Lt l, l2;
    lt_plan(&l, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr);
    lt_plan(&l2, CUBLAS_OP_N, CUBLAS_OP_N, 4, 2, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr);
    cublasLtMatmul(l.h, l.d, &one, p, l.a, p, l.b, &one, p, l.c, p, l.c, &l2.r.algo, nullptr, 0, 0);
}
static void run_lt_bf16_tf32(void) {
    Lt l;   // bf16 operands under FAST_TF32: no such cuBLASLt kernel, not simulated
    lt_plan_typed(&l, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr, CUDA_R_16BF, CUDA_R_32F,
                  CUBLAS_COMPUTE_32F_FAST_TF32);
}
static void run_lt_bf16_out(void) {
    Lt l;   // bf16 D: dcal's GEMMs write fp32; a bf16 output is not modelled
    lt_plan_typed(&l, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr, CUDA_R_16BF, CUDA_R_16BF,
                  CUBLAS_COMPUTE_32F);
}
static void run_lt_algo_other_types(void) {
    __nv_bfloat16 *p = dev<__nv_bfloat16>(nullptr, 64);
    float *c = dev<float>(nullptr, 64), one = 1.f;
    Lt l, l32;   // an fp32 problem's algorithm run on the same shapes in bf16 (a cache key without the type)
    lt_plan_typed(&l, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr, CUDA_R_16BF, CUDA_R_32F,
                  CUBLAS_COMPUTE_32F);
    lt_plan(&l32, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr);
    cublasLtMatmul(l.h, l.d, &one, p, l.a, p, l.b, &one, c, l.c, c, l.c, &l32.r.algo, nullptr, 0, 0);
}
static void run_lt_misaligned(void) {
    float *p = dev<float>(nullptr, 64), one = 1.f;
    Lt l;
    lt_plan(&l, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, CUBLASLT_EPILOGUE_DEFAULT, nullptr);   // alignment left at 256
    cublasLtMatmul(l.h, l.d, &one, p + 1, l.a, p, l.b, &one, p + 32, l.c, p + 32, l.c, &l.r.algo, nullptr, 0, 0);
}

int main(void) {
    test_warp_ops();
    test_barrier();
    test_bf16();
    test_wmma();
    test_mma16816();
    test_ldmatrix();
    test_gemm();
    test_lt();
    test_linear_fallback();
    test_lt_bf16();
    test_linear_bf16_backward();
    test_runtime_errors();
    expect_death("divergent barrier", run_divergent, "deadlock in kernel divergent_barrier_kernel");
    expect_death("misaligned wmma", run_misaligned, "is not 32-byte aligned");
    expect_death("misaligned ldmatrix", run_ldmatrix_misaligned, "is not 16-byte aligned");
    expect_death("mma.sync with a lane elsewhere", run_mma_divergent, "warp divergence: lane");
    expect_death("write past an allocation", run_oob, "segmentation fault in kernel oob_kernel");
    expect_death("cuBLASLt GELU epilogue", run_lt_gelu, "epilogue 36 is not simulated");
    expect_death("cuBLASLt algorithm of another problem", run_lt_wrong_algo, "was not found by the heuristic for this problem");
    expect_death("cuBLASLt misaligned A", run_lt_misaligned, "is not 256-byte aligned");
    expect_death("cuBLASLt bf16 A/B under FAST_TF32", run_lt_bf16_tf32, "with compute type 77 is not simulated");
    expect_death("cuBLASLt bf16 D", run_lt_bf16_out, "C/D type 14 with compute type 68 is not simulated");
    expect_death("cuBLASLt fp32 algorithm run on bf16", run_lt_algo_other_types, "was not found by the heuristic for this problem");
    printf("%s\n", g_fail ? "sim_selftest: FAILED" : "sim_selftest: all checks passed");
    return g_fail;
}
