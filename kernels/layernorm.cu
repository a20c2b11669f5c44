// layernorm.cu: LayerNorm over the last dim, fp32 throughout (ARCHITECTURE.md §5 keeps
// LN statistics in fp32). One warp per row; the two-pass mean/variance avoids
// the cancellation of E[x²]−E[x]², matching the CPU reference's definition
// (biased variance, rstd = 1/sqrt(var + eps)).
#include "kernels/cuda_common.h"

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// The output is an Act (backend.h: a GEMM's input), T its storage type: fp32 statistics and
// arithmetic, one rounding where it is stored.
template <typename T>
__global__ void layernorm_forward_kernel(T *out, float *mean, float *rstd, const float *inp, const float *w,
                                         const float *b, int rows, int D, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float *x = inp + (size_t)row * D;
    float s = 0.f;
    for (int i = lane; i < D; i += 32) s += x[i];
    float m = warp_sum(s) / D;
    float v = 0.f;
    for (int i = lane; i < D; i += 32) { float d = x[i] - m; v += d * d; }
    float rs = 1.f / sqrtf(warp_sum(v) / D + eps);
    T *o = out + (size_t)row * D;
    for (int i = lane; i < D; i += 32) act_store(o, i, (x[i] - m) * rs * w[i] + b[i]);
    if (lane == 0) {
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = rs;
    }
}

void cuda_layernorm_forward(Act *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                            int rows, int D, float eps) {
    if (rows <= 0) return;
    if (cuda_act_bf16())
        layernorm_forward_kernel<__nv_bfloat16><<<cdiv(rows, 8), 256, 0, cuda_stream()>>>((__nv_bfloat16 *)out, mean, rstd, inp, w,
                                                                           b, rows, D, eps);
    else
        layernorm_forward_kernel<float><<<cdiv(rows, 8), 256, 0, cuda_stream()>>>((float *)out, mean, rstd, inp, w, b, rows,
                                                                           D, eps);
    LAUNCH_CHECK();
}

// The two row means of LayerNorm's input gradient, mean(g) and mean(g·x̂) with g = dout·w,
// summed by one warp in a fixed order (the plain and the fused backward share them).
__device__ __forceinline__ void dinp_means(const float *dy, const float *w, const float *x, float m, float rs, int D, int lane,
                                           float *sg_out, float *sgx_out) {
    float sg = 0.f, sgx = 0.f;
    for (int i = lane; i < D; i += 32) {
        float g = dy[i] * w[i];
        sg += g;
        sgx += g * (x[i] - m) * rs;
    }
    *sg_out = warp_sum(sg) / D;
    *sgx_out = warp_sum(sgx) / D;
}

// dinp += rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dout·w. One warp per row.
__global__ void layernorm_dinp_kernel(float *dinp, const float *dout, const float *inp, const float *w,
                                      const float *mean, const float *rstd, int rows, int D) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float *x = inp + (size_t)row * D, *dy = dout + (size_t)row * D;
    float m = mean[row], rs = rstd[row], sg, sgx;
    dinp_means(dy, w, x, m, rs, D, lane, &sg, &sgx);
    float *dx = dinp + (size_t)row * D;
    for (int i = lane; i < D; i += 32) {
        float xh = (x[i] - m) * rs;
        dx[i] += rs * (dy[i] * w[i] - sg - xh * sgx);
    }
}

// dw/db: column sums over rows of dout·x̂ and dout, in two deterministic passes
// (fixed chunks of rows, then the chunks in order) instead of float atomics.
#define LN_ROWS_PER_CHUNK 256

__global__ void layernorm_dwdb_partial_kernel(float *part, const float *dout, const float *inp, const float *mean,
                                              const float *rstd, int rows, int D, int nchunks) {
    __shared__ float aw[8][33], ab[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * LN_ROWS_PER_CHUNK, r1 = min(rows, r0 + LN_ROWS_PER_CHUNK);
    float sw = 0.f, sb = 0.f;
    if (c < D)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) {
            float g = dout[(size_t)r * D + c];
            sw += g * (inp[(size_t)r * D + c] - mean[r]) * rstd[r];
            sb += g;
        }
    aw[threadIdx.y][threadIdx.x] = sw;
    ab[threadIdx.y][threadIdx.x] = sb;
    __syncthreads();
    if (threadIdx.y == 0 && c < D) {
        float tw = 0.f, tb = 0.f;
        for (int k = 0; k < 8; k++) { tw += aw[k][threadIdx.x]; tb += ab[k][threadIdx.x]; }
        part[(size_t)blockIdx.y * D + c] = tw;
        part[((size_t)nchunks + blockIdx.y) * D + c] = tb;
    }
}

__global__ void layernorm_dwdb_final_kernel(float *dw, float *db, const float *part, int nchunks, int D) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= D) return;
    float tw = 0.f, tb = 0.f;
    for (int k = 0; k < nchunks; k++) {
        tw += part[(size_t)k * D + c];
        tb += part[((size_t)nchunks + k) * D + c];
    }
    if (dw) dw[c] += tw;
    if (db) db[c] += tb;
}

void cuda_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                             const float *mean, const float *rstd, int rows, int D) {
    if (rows <= 0) return;
    if (dinp) {
        layernorm_dinp_kernel<<<cdiv(rows, 8), 256, 0, cuda_stream()>>>(dinp, dout, inp, w, mean, rstd, rows, D);
        LAUNCH_CHECK();
    }
    if (dw || db) {
        int nchunks = (int)cdiv(rows, LN_ROWS_PER_CHUNK);
        float *part = (float *)cuda_scratch((size_t)2 * nchunks * D * sizeof(float));
        layernorm_dwdb_partial_kernel<<<dim3(cdiv(D, 32), nchunks), dim3(32, 8), 0, cuda_stream()>>>(
            part, dout, inp, mean, rstd, rows, D, nchunks);
        LAUNCH_CHECK();
        layernorm_dwdb_final_kernel<<<cdiv(D, 256), 256, 0, cuda_stream()>>>(dw, db, part, nchunks, D);
        LAUNCH_CHECK();
    }
}

// ---- residual + LayerNorm (backend.h), the pre-norm block's h = x + s·f and LN2 -------
// One warp per row, the arithmetic of residual_forward_kernel and the two kernels above
// in the same order (lane-strided sums, the same warp_sum tree), so a row's bits are
// those of the separate ops; h is written once and re-read by the lane that wrote it.
template <typename T>
__global__ void residual_layernorm_forward_kernel(float *h, T *out, float *mean, float *rstd, const float *x,
                                                  const float *f, const float *scale, const float *w, const float *b,
                                                  int rows, int rows_per_b, int D, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    size_t o = (size_t)row * D;
    float sc = scale ? scale[row / rows_per_b] : 1.f;
    float *hr = h + o;
    float s = 0.f;
    for (int i = lane; i < D; i += 32) {
        float v = x[o + i] + sc * f[o + i];
        hr[i] = v;
        s += v;
    }
    float m = warp_sum(s) / D;
    float v = 0.f;
    for (int i = lane; i < D; i += 32) { float d = hr[i] - m; v += d * d; }
    float rs = 1.f / sqrtf(warp_sum(v) / D + eps);
    T *yr = out + o;
    for (int i = lane; i < D; i += 32) act_store(yr, i, (hr[i] - m) * rs * w[i] + b[i]);
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = rs;
    }
}

void cuda_residual_layernorm_forward(float *h, Act *out, float *mean, float *rstd, const float *x, const float *f,
                                     const float *scale, const float *w, const float *b, int B, int rows_per_b, int D,
                                     float eps) {
    int rows = B * rows_per_b;
    if (rows <= 0) return;
    if (cuda_act_bf16())
        residual_layernorm_forward_kernel<__nv_bfloat16><<<cdiv(rows, 8), 256, 0, cuda_stream()>>>(
            h, (__nv_bfloat16 *)out, mean, rstd, x, f, scale, w, b, rows, rows_per_b, D, eps);
    else
        residual_layernorm_forward_kernel<float><<<cdiv(rows, 8), 256, 0, cuda_stream()>>>(
            h, (float *)out, mean, rstd, x, f, scale, w, b, rows, rows_per_b, D, eps);
    LAUNCH_CHECK();
}

// dh = (0 + dskip) + LayerNorm's term, the order in which the separate ops build it in a
// zeroed buffer (so a −0 stays +0), kept in a register; then dx += dh, df += s·dh.
__global__ void residual_layernorm_dinp_kernel(float *dx, float *df, const float *dskip, const float *dout,
                                               const float *h, const float *w, const float *mean, const float *rstd,
                                               const float *scale, int rows, int rows_per_b, int D) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    size_t o = (size_t)row * D;
    const float *x = h + o, *dy = dout + o, *dk = dskip + o;
    float m = mean[row], rs = rstd[row], sg, sgx;
    dinp_means(dy, w, x, m, rs, D, lane, &sg, &sgx);
    float sc = scale ? scale[row / rows_per_b] : 1.f;
    for (int i = lane; i < D; i += 32) {
        float xh = (x[i] - m) * rs;
        float d = 0.f + dk[i];
        d += rs * (dy[i] * w[i] - sg - xh * sgx);
        if (dx) dx[o + i] += d;
        if (df) df[o + i] += sc * d;
    }
}

void cuda_residual_layernorm_backward(float *dx, float *df, float *dw, float *db, const float *dskip,
                                      const float *dout, const float *h, const float *w, const float *mean,
                                      const float *rstd, const float *scale, int B, int rows_per_b, int D) {
    int rows = B * rows_per_b;
    if (rows <= 0) return;
    if (dx || df) {
        residual_layernorm_dinp_kernel<<<cdiv(rows, 8), 256, 0, cuda_stream()>>>(dx, df, dskip, dout, h, w, mean,
                                                                                  rstd, scale, rows, rows_per_b, D);
        LAUNCH_CHECK();
    }
    // dw/db: the plain op's deterministic two-pass column sums, unchanged.
    if (dw || db) cuda_layernorm_backward(NULL, dw, db, dout, h, w, mean, rstd, rows, D);
}
