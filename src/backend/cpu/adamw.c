// adamw.c: the AdamW update with decoupled weight decay (mirrors kernels/adamw.cu).
// Contracts in backend/backend.h: backward ops accumulate (+=) and skip NULL
// gradients. Every loop that reduces over rows runs in a fixed order, so results
// never depend on the thread count.
#include <math.h>
#include "backend/cpu/cpu.h"

// One float's update, shared by the per-tensor and the multi-span op so that the
// two give the same bits (backend.h: adamw_multi's contract).
static inline void adamw_one(float *param, const float *grad, float *m, float *v, size_t i, float lr, float beta1,
                             float beta2, float eps, float wd, float bc1, float bc2) {
    float g = grad[i];
    m[i] = beta1 * m[i] + (1.0f - beta1) * g;
    v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
    float mhat = m[i] / bc1, vhat = v[i] / bc2;
    // Decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW.
    param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * param[i]);
}

void cpu_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                      float beta2, float eps, float wd, int t) {
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) adamw_one(param, grad, m, v, i, lr, beta1, beta2, eps, wd, bc1, bc2);
}

// One parallel region for the whole buffer: the threads split each span without
// waiting at its end (nowait), since no float depends on another.
void cpu_adamw_multi(float *param, const float *grad, float *m, float *v, size_t n, const AdamwSpan *spans,
                     int n_spans, float lr, float beta1, float beta2, float eps, float wd, int t) {
    (void)n;   // the spans say which floats; n bounds them for device backends
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
#pragma omp parallel
    for (int s = 0; s < n_spans; s++) {
        size_t lo = spans[s].offset, hi = spans[s].offset + spans[s].numel;
        float wds = spans[s].decay ? wd : 0.0f;
#pragma omp for schedule(static) nowait
        for (size_t i = lo; i < hi; i++) adamw_one(param, grad, m, v, i, lr, beta1, beta2, eps, wds, bc1, bc2);
    }
}
