// vecmath.c: exp and erf over arrays. Scalar glibc expf/erff were ~8% of a
// 448-px training step (attention's exponentials, exact GELU); glibc's libmvec
// has 8-wide AVX2 versions (~4 ulp instead of ~0.5, well inside every op's
// tolerance). Chosen once per process by the CPU's features, so a machine gives
// the same bits every run; a CPU without AVX2+FMA gets the scalar loop.
// Every element of an array goes through the same function (the tail is padded
// into a full vector), so a value never depends on its position or the tiling.
#include <immintrin.h>
#include <math.h>
#include <string.h>
#include "backend/cpu/cpu.h"

#define AVX2 __attribute__((target("avx2,fma")))
AVX2 __m256 _ZGVdN8v_expf(__m256 x);   // glibc libmvec (GLIBC_2.22)
AVX2 __m256 _ZGVdN8v_erff(__m256 x);   // glibc libmvec (GLIBC_2.35)

typedef __m256 (*Vec8Fn)(__m256);

// y = f(a·x + b), eight at a time (a·x + b as one fused rounding: exactly x − shift
// for a = 1 and exactly the product for b = 0).
static AVX2 void map_avx2(float *y, const float *x, float a, float b, size_t n, Vec8Fn f) {
    __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), vb)));
    if (i < n) {
        float t[8] = {0};
        memcpy(t, x + i, (n - i) * sizeof(float));
        _mm256_storeu_ps(t, f(_mm256_fmadd_ps(va, _mm256_loadu_ps(t), vb)));
        memcpy(y + i, t, (n - i) * sizeof(float));
    }
}

int cpu_use_avx2(void) {
    static int v = -1;   // racing first calls compute and store the same answer
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        r = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    return r;
}

void cpu_vexp(float *y, const float *x, float shift, size_t n) {
    if (cpu_use_avx2()) { map_avx2(y, x, 1.0f, -shift, n, _ZGVdN8v_expf); return; }
    for (size_t i = 0; i < n; i++) y[i] = expf(x[i] - shift);
}

// y = exp(x - shift) with a shift per element (attention's transposed scores: one max per
// query column), through the same vector expf.
static AVX2 void exp_sub_avx2(float *y, const float *x, const float *shift, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _ZGVdN8v_expf(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(shift + i))));
    if (i < n) {
        float t[8] = {0}, u[8] = {0};
        memcpy(t, x + i, (n - i) * sizeof(float));
        memcpy(u, shift + i, (n - i) * sizeof(float));
        _mm256_storeu_ps(t, _ZGVdN8v_expf(_mm256_sub_ps(_mm256_loadu_ps(t), _mm256_loadu_ps(u))));
        memcpy(y + i, t, (n - i) * sizeof(float));
    }
}

void cpu_vexp_sub(float *y, const float *x, const float *shift, size_t n) {
    if (cpu_use_avx2()) { exp_sub_avx2(y, x, shift, n); return; }
    for (size_t i = 0; i < n; i++) y[i] = expf(x[i] - shift[i]);
}

void cpu_verf(float *y, const float *x, float scale, size_t n) {
    if (cpu_use_avx2()) { map_avx2(y, x, scale, 0.0f, n, _ZGVdN8v_erff); return; }
    for (size_t i = 0; i < n; i++) y[i] = erff(x[i] * scale);
}

// max(init, x[0..n)), NaNs skipped as `x > m ? x : m` skips them. Max is exact in any
// order, so the vector path gives the scalar loop's value.
static AVX2 float max_avx2(const float *x, size_t n, float init) {
    __m256 m = _mm256_set1_ps(init);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + i), m);   // NaN in x: keeps m
    float l[8], r = init;
    _mm256_storeu_ps(l, m);
    for (int k = 0; k < 8; k++) r = l[k] > r ? l[k] : r;
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

float cpu_vmax(const float *x, size_t n, float init) {
    if (cpu_use_avx2()) return max_avx2(x, n, init);
    for (size_t i = 0; i < n; i++) init = x[i] > init ? x[i] : init;
    return init;
}

// Σ x in one fixed order on every CPU: lane k (0..7) sums x[k], x[k+8], … ascending, then the
// lanes combine as ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)). Eight independent chains instead
// of one (the scalar chain was ~3% of a 448-px step in attention's softmax sums).
static float lanes_sum(const float l[8]) { return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])); }

static AVX2 float sum_avx2(const float *x, size_t n) {
    __m256 s = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(x + i));
    float l[8];
    _mm256_storeu_ps(l, s);
    for (; i < n; i++) l[i & 7] += x[i];
    return lanes_sum(l);
}

float cpu_vsum(const float *x, size_t n) {
    if (cpu_use_avx2()) return sum_avx2(x, n);
    float l[8] = {0};
    for (size_t i = 0; i < n; i++) l[i & 7] += x[i];
    return lanes_sum(l);
}

const char *cpu_vecmath_name(void) { return cpu_use_avx2() ? "exp/erf: glibc libmvec AVX2" : "exp/erf: glibc scalar"; }
