// adamw.cu: fused AdamW on fp32 master weights and moments (ARCHITECTURE.md §5).
// Decoupled weight decay, as torch.optim.AdamW and the CPU reference:
//   m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²
//   p ← p − lr·( m̂/(√v̂ + ε) + wd·p ),  m̂ = m/(1−β1^t), v̂ = v/(1−β2^t)
// The bias corrections are computed once on the host in double.
#include "kernels/cuda_common.h"
#include <math.h>

__global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                             float beta2, float eps, float wd, float bc1, float bc2) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i];
    float mi = beta1 * m[i] + (1.f - beta1) * g;
    float vi = beta2 * v[i] + (1.f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float mhat = mi / bc1, vhat = vi / bc2;
    float p = param[i];
    param[i] = p - lr * (mhat / (sqrtf(vhat) + eps) + wd * p);
}

void cuda_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                       float beta2, float eps, float wd, int t) {
    if (!n) return;
    float bc1 = (float)(1.0 - pow((double)beta1, (double)t));
    float bc2 = (float)(1.0 - pow((double)beta2, (double)t));
    adamw_kernel<<<cdiv(n, 256), 256, 0, cuda_stream()>>>(param, grad, m, v, n, lr, beta1, beta2, eps, wd, bc1, bc2);
    LAUNCH_CHECK();
}
