// elementwise.cu: the Act conversions, GELU, residual with drop-path scale, row gather,
// softmax cross-entropy and the sum of squares. All arithmetic fp32 (the loss and norms are
// the numbers the run is judged by), all deterministic: no float atomics anywhere. Only the
// Act tensors (backend.h) may be stored in bf16; what reads them widens on load (exact).
#include "kernels/cuda_common.h"
#include <cuda_bf16.h>

#define EW_THREADS 256

// ---- Act storage: float at precision fp32, __nv_bfloat16 at bf16 (cuda_act_bf16) ----

// Round to nearest even (cvt.rn.bf16.f32), the rounding linear_forward_act's GEMM applies.
__global__ void act_from_f32_kernel(__nv_bfloat16 *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void act_to_f32_kernel(float *dst, const __nv_bfloat16 *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __bfloat162float(src[i]);
}

void cuda_act_from_f32(Act *dst, const float *src, size_t n) {
    if (!n) return;
    if (!cuda_act_bf16()) return cuda_copy(dst, src, n * sizeof(float));
    act_from_f32_kernel<<<cdiv(n, EW_THREADS), EW_THREADS, 0, cuda_stream()>>>((__nv_bfloat16 *)dst, src, n);
    LAUNCH_CHECK();
}

void cuda_act_to_f32(float *dst, const Act *src, size_t n) {
    if (!n) return;
    if (!cuda_act_bf16()) return cuda_copy(dst, src, n * sizeof(float));
    act_to_f32_kernel<<<cdiv(n, EW_THREADS), EW_THREADS, 0, cuda_stream()>>>(dst, (const __nv_bfloat16 *)src, n);
    LAUNCH_CHECK();
}

// GELU of an Act input (fc1's output): the element widened to fp32, then the same exact-erf
// arithmetic at either storage type.
template <typename T> __global__ void gelu_forward_kernel(T *out, const T *inp, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { float x = act_load(inp, i); act_store(out, i, 0.5f * x * (1.f + erff(x * 0.70710678118654752f))); }
}

// d/dx [x·Φ(x)] = Φ(x) + x·φ(x)
// SET: dinp written (gelu_backward_set), else accumulated.
template <typename T, bool SET>
__global__ void gelu_backward_kernel(float *dinp, const T *inp, const float *dout, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = act_load(inp, i);
    float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    float g = dout[i] * (cdf + x * pdf);
    if (SET) dinp[i] = g;
    else dinp[i] += g;
}

void cuda_gelu_forward(Act *out, const Act *inp, size_t n) {
    if (!n) return;
    if (cuda_act_bf16())
        gelu_forward_kernel<__nv_bfloat16><<<cdiv(n, EW_THREADS), EW_THREADS, 0, cuda_stream()>>>(
            (__nv_bfloat16 *)out, (const __nv_bfloat16 *)inp, n);
    else
        gelu_forward_kernel<float><<<cdiv(n, EW_THREADS), EW_THREADS, 0, cuda_stream()>>>((float *)out,
                                                                                          (const float *)inp, n);
    LAUNCH_CHECK();
}

template <bool SET> static void gelu_backward(float *dinp, const Act *inp, const float *dout, size_t n) {
    if (!n || !dinp) return;
    if (cuda_act_bf16())
        gelu_backward_kernel<__nv_bfloat16, SET><<<cdiv(n, EW_THREADS), EW_THREADS, 0, cuda_stream()>>>(
            dinp, (const __nv_bfloat16 *)inp, dout, n);
    else
        gelu_backward_kernel<float, SET><<<cdiv(n, EW_THREADS), EW_THREADS, 0, cuda_stream()>>>(
            dinp, (const float *)inp, dout, n);
    LAUNCH_CHECK();
}
void cuda_gelu_backward(float *dinp, const Act *inp, const float *dout, size_t n) {
    gelu_backward<false>(dinp, inp, dout, n);
}
void cuda_gelu_backward_set(float *dinp, const Act *inp, const float *dout, size_t n) {
    gelu_backward<true>(dinp, inp, dout, n);
}

__global__ void residual_forward_kernel(float *out, const float *x, const float *f, const float *scale, size_t n,
                                        size_t n_per_b) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float s = scale ? scale[i / n_per_b] : 1.f;
    out[i] = x[i] + s * f[i];
}

__global__ void residual_backward_kernel(float *dx, float *df, const float *dout, const float *scale, size_t n,
                                         size_t n_per_b) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = dout[i];
    if (dx) dx[i] += g;
    if (df) df[i] += (scale ? scale[i / n_per_b] : 1.f) * g;
}

void cuda_residual_forward(float *out, const float *x, const float *f, const float *scale, int B, size_t n_per_b) {
    size_t n = (size_t)B * n_per_b;
    if (!n) return;
    residual_forward_kernel<<<cdiv(n, EW_THREADS), EW_THREADS, 0, cuda_stream()>>>(out, x, f, scale, n, n_per_b);
    LAUNCH_CHECK();
}

void cuda_residual_backward(float *dx, float *df, const float *dout, const float *scale, int B, size_t n_per_b) {
    size_t n = (size_t)B * n_per_b;
    if (!n || (!dx && !df)) return;
    residual_backward_kernel<<<cdiv(n, EW_THREADS), EW_THREADS, 0, cuda_stream()>>>(dx, df, dout, scale, n, n_per_b);
    LAUNCH_CHECK();
}

__global__ void gather_rows_forward_kernel(float *out, const float *inp, const int *idx, int Nin, int Nout, int D) {
    int j = blockIdx.x, b = blockIdx.y;
    const float *src = inp + ((size_t)b * Nin + idx[b * Nout + j]) * D;
    float *dst = out + ((size_t)b * Nout + j) * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) dst[d] = src[d];
}

// Backward by ownership: block (row, b) scans idx[b, :] and adds every output
// row that came from it, in j order (the CPU's order), so no two blocks ever
// write one dinp row and no atomics are needed — even if idx had duplicates.
__global__ void gather_rows_backward_kernel(float *dinp, const float *dout, const int *idx, int Nin, int Nout,
                                            int D) {
    int row = blockIdx.x, b = blockIdx.y;
    const int *ib = idx + (size_t)b * Nout;
    float *dst = dinp + ((size_t)b * Nin + row) * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float v = dst[d];
        int hit = 0;
        for (int j = 0; j < Nout; j++)
            if (ib[j] == row) { v += dout[((size_t)b * Nout + j) * D + d]; hit = 1; }
        if (hit) dst[d] = v;
    }
}

void cuda_gather_rows_forward(float *out, const float *inp, const int *idx, int B, int Nin, int Nout, int D) {
    if (B <= 0 || Nout <= 0) return;
    gather_rows_forward_kernel<<<dim3(Nout, B), 128, 0, cuda_stream()>>>(out, inp, idx, Nin, Nout, D);
    LAUNCH_CHECK();
}

void cuda_gather_rows_backward(float *dinp, const float *dout, const int *idx, int B, int Nin, int Nout, int D) {
    if (B <= 0 || Nin <= 0 || !dinp) return;
    gather_rows_backward_kernel<<<dim3(Nin, B), 128, 0, cuda_stream()>>>(dinp, dout, idx, Nin, Nout, D);
    LAUNCH_CHECK();
}

// Fixed-shape tree reductions in shared memory: same order every run.
template <typename T, typename Op>
__device__ T block_reduce(T v, T *sh, Op op) {
    int t = threadIdx.x;
    sh[t] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) sh[t] = op(sh[t], sh[t + s]);
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads();   // sh may be reused by the caller's next reduction
    return r;
}

struct MaxOp { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };
struct SumOpF { __device__ float operator()(float a, float b) const { return a + b; } };
struct SumOpD { __device__ double operator()(double a, double b) const { return a + b; } };

// One block (EW_THREADS, a power of two) per sample. loss = logsumexp − logit[label].
__global__ void crossentropy_forward_kernel(float *losses, float *probs, const float *logits, const int *labels,
                                            int C) {
    __shared__ float sh[EW_THREADS];
    int b = blockIdx.x;
    const float *x = logits + (size_t)b * C;
    float m = -INFINITY;
    for (int i = threadIdx.x; i < C; i += blockDim.x) m = fmaxf(m, x[i]);
    m = block_reduce(m, sh, MaxOp());
    float s = 0.f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) s += expf(x[i] - m);
    s = block_reduce(s, sh, SumOpF());
    float inv = 1.f / s;
    if (probs)
        for (int i = threadIdx.x; i < C; i += blockDim.x) probs[(size_t)b * C + i] = expf(x[i] - m) * inv;
    if (threadIdx.x == 0 && losses) losses[b] = m + logf(s) - x[labels[b]];
}

// dscale = coef[0] / B, read on the device: the loss weights never travel to the host in a step.
__global__ void crossentropy_backward_kernel(float *dlogits, const float *probs, const int *labels, const float *coef,
                                             int B, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * C) return;
    int b = (int)(i / C), c = (int)(i % C);
    float dscale = coef[0] / B;
    dlogits[i] += dscale * (probs[i] - (c == labels[b] ? 1.f : 0.f));
}

// The loss (backend.h loss_forward/backward): a few numbers, so one thread, with the CPU's
// arithmetic in the CPU's order (double sums; the same bits up to exp's last ulp).
struct HeadLosses { const float *l[3]; };
__global__ void loss_forward_kernel(float *out, HeadLosses in, const float *w, int B, int heads, int uw) {
    double loss = 0;
    for (int h = 0; h < 3; h++) {
        out[1 + h] = 0.f;
        if (!(heads >> h & 1)) continue;
        double s = 0;
        for (int b = 0; b < B; b++) s += in.l[h][b];
        float ce = (float)(s / B);
        out[1 + h] = ce;
        loss += uw ? 0.5 * (exp((double)-w[h]) * ce + w[h]) : ce;
    }
    out[0] = (float)loss;
}

__global__ void loss_backward_kernel(float *coef, float *dw, const float *w, const float *out, float s, int heads,
                                     int uw) {
    for (int h = 0; h < 3; h++) {
        int on = heads >> h & 1;
        coef[h] = !on ? 0.f : uw ? s * 0.5f * expf(-w[h]) : s;
        dw[h] += on && uw ? s * 0.5f * (1.0f - expf(-w[h]) * out[1 + h]) : 0.0f;
    }
}

void cuda_loss_forward(float *out, const float *const losses[3], const float *w, int B, int heads, int uw) {
    HeadLosses in = {{losses[0], losses[1], losses[2]}};
    loss_forward_kernel<<<1, 1, 0, cuda_stream()>>>(out, in, w, B, heads, uw);
    LAUNCH_CHECK();
}

void cuda_loss_backward(float *coef, float *dw, const float *w, const float *out, float s, int heads, int uw) {
    loss_backward_kernel<<<1, 1, 0, cuda_stream()>>>(coef, dw, w, out, s, heads, uw);
    LAUNCH_CHECK();
}

void cuda_crossentropy_forward(float *losses, float *probs, const float *logits, const int *labels, int B, int C) {
    if (B <= 0) return;
    crossentropy_forward_kernel<<<B, EW_THREADS, 0, cuda_stream()>>>(losses, probs, logits, labels, C);
    LAUNCH_CHECK();
}

void cuda_crossentropy_backward(float *dlogits, const float *probs, const int *labels, const float *coef, int B,
                                int C) {
    size_t n = (size_t)B * C;
    if (!n || !dlogits) return;
    crossentropy_backward_kernel<<<cdiv(n, EW_THREADS), EW_THREADS, 0, cuda_stream()>>>(dlogits, probs, labels, coef,
                                                                                         B, C);
    LAUNCH_CHECK();
}

// Sum of squares in double: pass 1 a fixed grid (a function of n only) of
// grid-stride partials, pass 2 one block adds them in order. Bitwise stable.
#define SUMSQ_MAX_BLOCKS 1024

__global__ void sumsq_partial_kernel(double *part, const float *x, size_t n) {
    __shared__ double sh[EW_THREADS];
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        double v = x[i];
        s += v * v;
    }
    s = block_reduce(s, sh, SumOpD());
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void sumsq_final_kernel(double *res, const double *part, int nparts) {
    __shared__ double sh[EW_THREADS];
    double s = 0.0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) s += part[i];
    s = block_reduce(s, sh, SumOpD());
    if (threadIdx.x == 0) *res = s;
}

static int sumsq_blocks(size_t n) {
    size_t want = cdiv(n, (size_t)EW_THREADS * 16);
    return (int)(want < SUMSQ_MAX_BLOCKS ? want : SUMSQ_MAX_BLOCKS);
}

// The two passes: nb partials into part, their sum into res (not inside part).
static void sumsq_launch(double *res, double *part, int nb, const float *x, size_t n) {
    sumsq_partial_kernel<<<nb, EW_THREADS, 0, cuda_stream()>>>(part, x, n);
    LAUNCH_CHECK();
    sumsq_final_kernel<<<1, EW_THREADS, 0, cuda_stream()>>>(res, part, nb);
    LAUNCH_CHECK();
}

void cuda_sumsq_into(double *out, const float *x, size_t n) {
    if (!n) {
        cuda_zero(out, sizeof(double));
        return;
    }
    int nb = sumsq_blocks(n);
    sumsq_launch(out, (double *)cuda_scratch((size_t)nb * sizeof(double)), nb, x, n);
}

double cuda_sumsq(const float *x, size_t n) {
    if (!n) return 0.0;
    int nb = sumsq_blocks(n);
    double *part = (double *)cuda_scratch((size_t)(nb + 1) * sizeof(double));
    sumsq_launch(part, part + 1, nb, x, n);
    double r = 0.0;
    cuda_to_host(&r, part, sizeof r);
    return r;
}
