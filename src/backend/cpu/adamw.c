// adamw.c: the AdamW update with decoupled weight decay (mirrors kernels/adamw.cu).
// Contracts in backend/backend.h: backward ops accumulate (+=) and skip NULL
// gradients. Every loop that reduces over rows runs in a fixed order, so results
// never depend on the thread count.
#include <math.h>
#include "backend/cpu/cpu.h"

void cpu_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                      float beta2, float eps, float wd, int t) {
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        float mhat = m[i] / bc1, vhat = v[i] / bc2;
        // Decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW.
        param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * param[i]);
    }
}
