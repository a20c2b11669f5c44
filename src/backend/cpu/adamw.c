// adamw.c: the AdamW update with decoupled weight decay (mirrors kernels/adamw.cu).
// Contracts in backend/backend.h: backward ops accumulate (+=) and skip NULL
// gradients. Every loop that reduces over rows runs in a fixed order, so results
// never depend on the thread count.
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include "backend/cpu/cpu.h"

typedef struct {
    float lr, beta1, beta2, eps, wd, bc1, bc2;
} AdamwK;

// One float's update, shared by every path so that they give the same bits
// (backend.h: adamw_multi's contract). One rounding per operation, in this order:
// the AVX2 loop below repeats it operation for operation (C11 mode: no contraction).
static inline void adamw_one(float *param, const float *grad, float *m, float *v, size_t i, const AdamwK *k) {
    float g = grad[i];
    m[i] = k->beta1 * m[i] + (1.0f - k->beta1) * g;
    v[i] = k->beta2 * v[i] + (1.0f - k->beta2) * g * g;
    float mhat = m[i] / k->bc1, vhat = v[i] / k->bc2;
    // Decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW.
    param[i] -= k->lr * (mhat / (sqrtf(vhat) + k->eps) + k->wd * param[i]);
}

// Eight floats at a time: the scalar loop's two divisions and square root per float
// made AdamW compute-bound (3.6% of a 224-px CPU step at ~7 GB/s; the loop's
// streams allow ~25). Division and square root are correctly rounded in both,
// and no product is fused, so every float gets the scalar loop's bits
// (unit_adamw_multi's test_avx2_same_bits).
static __attribute__((target("avx2"))) void adamw_avx2(float *param, const float *grad, float *m, float *v,
                                                       size_t lo, size_t hi, const AdamwK *k) {
    __m256 b1 = _mm256_set1_ps(k->beta1), c1 = _mm256_set1_ps(1.0f - k->beta1);
    __m256 b2 = _mm256_set1_ps(k->beta2), c2 = _mm256_set1_ps(1.0f - k->beta2);
    __m256 bc1 = _mm256_set1_ps(k->bc1), bc2 = _mm256_set1_ps(k->bc2), eps = _mm256_set1_ps(k->eps);
    __m256 lr = _mm256_set1_ps(k->lr), wd = _mm256_set1_ps(k->wd);
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        __m256 g = _mm256_loadu_ps(grad + i), p = _mm256_loadu_ps(param + i);
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(c1, g));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(c2, g), g));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 mhat = _mm256_div_ps(mi, bc1), vhat = _mm256_div_ps(vi, bc2);
        __m256 q = _mm256_div_ps(mhat, _mm256_add_ps(_mm256_sqrt_ps(vhat), eps));
        __m256 u = _mm256_mul_ps(lr, _mm256_add_ps(q, _mm256_mul_ps(wd, p)));
        _mm256_storeu_ps(param + i, _mm256_sub_ps(p, u));
    }
    for (; i < hi; i++) adamw_one(param, grad, m, v, i, k);
}

static void adamw_range(float *param, const float *grad, float *m, float *v, size_t lo, size_t hi,
                        const AdamwK *k) {
    if (cpu_use_avx2()) { adamw_avx2(param, grad, m, v, lo, hi, k); return; }
    for (size_t i = lo; i < hi; i++) adamw_one(param, grad, m, v, i, k);
}

static AdamwK adamw_k(float lr, float beta1, float beta2, float eps, float wd, int t) {
    return (AdamwK){lr, beta1, beta2, eps, wd, 1.0f - powf(beta1, (float)t), 1.0f - powf(beta2, (float)t)};
}

// This thread's share of [lo, hi) in a parallel region: static, in whole vectors.
static void thread_share(size_t lo, size_t hi, size_t *a, size_t *b) {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    size_t per = ((hi - lo + (size_t)nt - 1) / (size_t)nt + 7) & ~(size_t)7;
    *a = lo + per * (size_t)id < hi ? lo + per * (size_t)id : hi;
    *b = *a + per < hi ? *a + per : hi;
}

void cpu_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                      float beta2, float eps, float wd, int t) {
    AdamwK k = adamw_k(lr, beta1, beta2, eps, wd, t);
    cpu_weights_written(param, n * sizeof(float));
#pragma omp parallel
    {
        size_t a, b;
        thread_share(0, n, &a, &b);
        adamw_range(param, grad, m, v, a, b, &k);
    }
}

// One parallel region for the whole buffer: the threads split each span without
// waiting at its end, since no float depends on another.
void cpu_adamw_multi(float *param, const float *grad, float *m, float *v, size_t n, const AdamwSpan *spans,
                     int n_spans, float lr, float beta1, float beta2, float eps, float wd, int t) {
    (void)n;   // the spans say which floats; n bounds them for device backends
    AdamwK k0 = adamw_k(lr, beta1, beta2, eps, wd, t);
    for (int s = 0; s < n_spans; s++) cpu_weights_written(param + spans[s].offset, spans[s].numel * sizeof(float));
#pragma omp parallel
    for (int s = 0; s < n_spans; s++) {
        AdamwK k = k0;
        k.wd = spans[s].decay ? wd : 0.0f;
        size_t a, b;
        thread_share(spans[s].offset, spans[s].offset + spans[s].numel, &a, &b);
        adamw_range(param, grad, m, v, a, b, &k);
    }
}

