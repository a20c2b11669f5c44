// adamw.cu: fused AdamW on fp32 master weights and moments (ARCHITECTURE.md §5).
// Decoupled weight decay, as torch.optim.AdamW and the CPU reference:
//   m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²
//   p ← p − lr·( m̂/(√v̂ + ε) + wd·p ),  m̂ = m/(1−β1^t), v̂ = v/(1−β2^t)
// The bias corrections are computed once on the host in double.
#include "kernels/cuda_common.h"
#include <math.h>

// One float's update, shared by both kernels so that adamw_multi gives
// adamw_update's bits (backend.h).
__device__ __forceinline__ void adamw_one(float *param, const float *grad, float *m, float *v, size_t i, float lr,
                                          float beta1, float beta2, float eps, float wd, float bc1, float bc2) {
    float g = grad[i];
    float mi = beta1 * m[i] + (1.f - beta1) * g;
    float vi = beta2 * v[i] + (1.f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float mhat = mi / bc1, vhat = vi / bc2;
    float p = param[i];
    param[i] = p - lr * (mhat / (sqrtf(vhat) + eps) + wd * p);
}

__global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                             float beta2, float eps, float wd, float bc1, float bc2) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    adamw_one(param, grad, m, v, i, lr, beta1, beta2, eps, wd, bc1, bc2);
}

static void bias_corrections(float beta1, float beta2, int t, float *bc1, float *bc2) {
    *bc1 = (float)(1.0 - pow((double)beta1, (double)t));
    *bc2 = (float)(1.0 - pow((double)beta2, (double)t));
}

void cuda_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                       float beta2, float eps, float wd, int t) {
    if (!n) return;
    float bc1, bc2;
    bias_corrections(beta1, beta2, t, &bc1, &bc2);
    adamw_kernel<<<cdiv(n, 256), 256, 0, cuda_stream()>>>(param, grad, m, v, n, lr, beta1, beta2, eps, wd, bc1, bc2);
    LAUNCH_CHECK();
}

// The first span that ends after float i (n_spans when none does).
__device__ int span_after(const AdamwSpan *spans, int n_spans, size_t i) {
    int lo = 0, hi = n_spans;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (spans[mid].offset + spans[mid].numel <= i) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// Grid-stride over the whole buffer. A thread's floats only increase, so it finds
// its span once by bisection and then walks the (sorted) table forward: a few
// cached loads per float, and neighbouring threads stay coalesced.
__global__ void adamw_multi_kernel(float *param, const float *grad, float *m, float *v, size_t n,
                                   const AdamwSpan *spans, int n_spans, float lr, float beta1, float beta2, float eps,
                                   float wd, float bc1, float bc2) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    int s = span_after(spans, n_spans, i);
    for (; i < n && s < n_spans; i += stride) {
        while (s < n_spans && spans[s].offset + spans[s].numel <= i) s++;
        if (s == n_spans) break;
        if (i < spans[s].offset) continue;   // a gap that no span owns: untouched
        adamw_one(param, grad, m, v, i, lr, beta1, beta2, eps, spans[s].decay ? wd : 0.f, bc1, bc2);
    }
}

// At least ADAMW_PER_THREAD floats a thread (so the span walk is exercised at any
// size, the simulator's small cases included) and at most enough blocks to fill any
// current GPU several times over. The result does not depend on the grid: no float
// reads another.
#define ADAMW_PER_THREAD 4
#define ADAMW_MAX_BLOCKS 4096

void cuda_adamw_multi(float *param, const float *grad, float *m, float *v, size_t n, const AdamwSpan *spans,
                      int n_spans, float lr, float beta1, float beta2, float eps, float wd, int t) {
    if (!n || n_spans <= 0) return;
    float bc1, bc2;
    bias_corrections(beta1, beta2, t, &bc1, &bc2);
    size_t want = cdiv(n, 256 * ADAMW_PER_THREAD);
    unsigned nb = (unsigned)(want < ADAMW_MAX_BLOCKS ? want : ADAMW_MAX_BLOCKS);
    adamw_multi_kernel<<<nb, 256, 0, cuda_stream()>>>(param, grad, m, v, n, spans, n_spans, lr, beta1, beta2, eps,
                                                      wd, bc1, bc2);
    LAUNCH_CHECK();
}
