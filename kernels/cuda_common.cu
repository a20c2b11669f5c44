// cuda_common.cu: the stream, the cuBLAS and cuBLASLt handles (and cuBLASLt's workspace),
// memory ops, scratch, and a deterministic column sum shared by the bias/LN/token grads. (Device discovery,
// description and precision: device.cu.)
#include "kernels/cuda_common.h"

static cudaStream_t g_stream;
static cublasHandle_t g_cublas;
static cublasLtHandle_t g_cublaslt;
static void *g_lt_workspace;
static int g_ready;
static void *g_scratch;
static size_t g_scratch_bytes, g_scratch_max_request;

extern "C" size_t cuda_scratch_max_request(void) { return g_scratch_max_request; }

static void init_once(void) {
    if (g_ready) return;
    // A blocking stream: still ordered after anything that slipped onto the legacy stream.
    CUDA_CHECK(cudaStreamCreate(&g_stream));
    CUBLAS_CHECK(cublasCreate(&g_cublas));
    CUBLAS_CHECK(cublasSetStream(g_cublas, g_stream));
    CUBLAS_CHECK(cublasLtCreate(&g_cublaslt));
    g_ready = 1;
}

cudaStream_t cuda_stream(void) { init_once(); return g_stream; }
cublasHandle_t cuda_cublas(void) { init_once(); return g_cublas; }
cublasLtHandle_t cuda_cublaslt(void) { init_once(); return g_cublaslt; }

void *cuda_lt_workspace(void) {
    init_once();
    if (!g_lt_workspace) CUDA_CHECK(cudaMalloc(&g_lt_workspace, CUDA_LT_WORKSPACE_BYTES));
    return g_lt_workspace;
}

void *cuda_scratch(size_t bytes) {
    init_once();
    if (bytes > g_scratch_max_request) g_scratch_max_request = bytes;
    if (bytes <= g_scratch_bytes) return g_scratch;
    // Inside a step capture growing is impossible (no allocation, no host wait) and the recorded
    // kernels would point at the old buffer: the capture fails (graph.cu then runs the body
    // directly, graphs off). What is enqueued with the too-small buffer is never run.
    if (cuda_graph_capturing() && cuda_graph_absorb("the step needs more scratch than its warm-up did", "cuda_scratch"))
        return g_scratch;
    // Grow-only; the old buffer may still be in use by queued kernels, so wait first.
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
    if (g_scratch) CUDA_CHECK(cudaFree(g_scratch));
    size_t want = bytes < CUDA_SCRATCH_MIN_BYTES ? CUDA_SCRATCH_MIN_BYTES : bytes;
    CUDA_CHECK(cudaMalloc(&g_scratch, want));
    g_scratch_bytes = want;
    // Recorded steps point at the freed buffer: record them again (graph.cu).
    cuda_graph_reset();
    return g_scratch;
}

void *cuda_alloc(size_t bytes) {
    init_once();
    void *p = NULL;
    if (bytes == 0) bytes = 1;   // a distinct valid pointer even for empty tensors
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        fprintf(stderr, "dcal: cuda: %s:%d: cudaMalloc(%zu bytes): %s\n", __FILE__, __LINE__, bytes,
                cudaGetErrorString(e));
        exit(1);
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, g_stream));
    return p;
}

void cuda_free(void *p) {
    if (!p) return;
    // cudaFree waits for the device itself, so queued kernels that use p finish first.
    CUDA_CHECK(cudaFree(p));
}

void cuda_zero(void *p, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda_stream()));
}

void cuda_to_device(void *dst, const void *src, size_t bytes) {
    // Pageable host source: the call returns once the source has been staged,
    // so the caller may reuse it immediately.
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_stream()));
}

void cuda_to_host(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));   // host data must be ready on return
}

void cuda_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream()));
}

void cuda_sync(void) { CUDA_CHECK(cudaStreamSynchronize(cuda_stream())); }

// ---- deterministic column sum: dst[c] += sum_r src[r, c] ----
// Pass 1: block (32 columns x 8 row-lanes) sums one chunk of rows into
// part[chunk, c] in a fixed order; pass 2 adds the chunks in order. No atomics,
// so the result is bitwise reproducible for a given shape.
#define COLSUM_ROWS_PER_CHUNK 256

__global__ void colsum_partial_kernel(float *part, const float *src, int rows, int cols) {
    __shared__ float acc[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * COLSUM_ROWS_PER_CHUNK;
    int r1 = min(rows, r0 + COLSUM_ROWS_PER_CHUNK);
    float s = 0.f;
    if (c < cols)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) s += src[(size_t)r * cols + c];
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float t = 0.f;
        for (int k = 0; k < 8; k++) t += acc[k][threadIdx.x];
        part[(size_t)blockIdx.y * cols + c] = t;
    }
}

__global__ void colsum_final_kernel(float *dst, const float *part, int nchunks, int cols) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float t = 0.f;
    for (int k = 0; k < nchunks; k++) t += part[(size_t)k * cols + c];
    dst[c] += t;
}

void cuda_colsum_acc(float *dst, const float *src, int rows, int cols) {
    if (rows <= 0 || cols <= 0) return;
    int nchunks = (int)cdiv(rows, COLSUM_ROWS_PER_CHUNK);
    float *part = (float *)cuda_scratch((size_t)nchunks * cols * sizeof(float));
    colsum_partial_kernel<<<dim3(cdiv(cols, 32), nchunks), dim3(32, 8), 0, cuda_stream()>>>(part, src, rows, cols);
    LAUNCH_CHECK();
    colsum_final_kernel<<<cdiv(cols, 256), 256, 0, cuda_stream()>>>(dst, part, nchunks, cols);
    LAUNCH_CHECK();
}
