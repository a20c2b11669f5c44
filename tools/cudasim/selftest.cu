// selftest.cu: the simulator's own checks (ctest sim_selftest): each CUDA feature
// it models gives the hardware's answer, and each misuse it claims to catch
// (deadlock, misaligned wmma, out-of-bounds write, bad launch, wrong copy kind)
// is reported. Written as CUDA and translated by cu2cpp.pl like kernels/*.cu.
// cuBLASLt and linear.cu's use of it: selftest_lt.cu (sim_selftest_lt).
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
#include "tools/cudasim/selftest.h"

using namespace nvcuda;

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

int main(void) {
    test_warp_ops();
    test_barrier();
    test_bf16();
    test_wmma();
    test_mma16816();
    test_ldmatrix();
    test_gemm();
    test_runtime_errors();
    expect_death("divergent barrier", run_divergent, "deadlock in kernel divergent_barrier_kernel");
    expect_death("misaligned wmma", run_misaligned, "is not 32-byte aligned");
    expect_death("misaligned ldmatrix", run_ldmatrix_misaligned, "is not 16-byte aligned");
    expect_death("mma.sync with a lane elsewhere", run_mma_divergent, "warp divergence: lane");
    expect_death("write past an allocation", run_oob, "segmentation fault in kernel oob_kernel");
    printf("%s\n", g_fail ? "sim_selftest: FAILED" : "sim_selftest: all checks passed");
    return g_fail;
}
