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

static int isa_forced = -1;   // cpu_force_isa (tests)
void cpu_force_isa(int k) { __atomic_store_n(&isa_forced, k, __ATOMIC_RELAXED); }

int cpu_isa(void) {
    static int v = -1;   // racing first calls compute and store the same answer
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                     __builtin_cpu_supports("avx512vl");
        r = avx2 ? (avx512 ? 2 : 1) : 0;
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    int f = __atomic_load_n(&isa_forced, __ATOMIC_RELAXED);
    return f >= 0 && f < r ? f : r;
}

int cpu_use_avx2(void) { return cpu_isa() >= 1; }

static int cvt_off;   // cpu_force_bf16_cvt (tests)
void cpu_force_bf16_cvt(int on) { __atomic_store_n(&cvt_off, !on, __ATOMIC_RELAXED); }
int cpu_bf16_cvt(void) { return !__atomic_load_n(&cvt_off, __ATOMIC_RELAXED) && cpu_isa() == 2 && cpu_has_avx512_bf16(); }

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

#include "backend/cpu/exp512.h"

static AVX512 void exp_rows_avx512(float *s, size_t ld, int n, int nv, const float *shift, float *sum) {
    for (int i0 = 0; i0 < nv; i0 += 16) {
        __mmask16 k = (__mmask16)(nv - i0 >= 16 ? 0xffff : (1u << (nv - i0)) - 1);
        __m512 sh = _mm512_maskz_loadu_ps(k, shift + i0), acc = _mm512_setzero_ps();
        for (int j = 0; j < n; j++) {
            float *row = s + (size_t)j * ld + i0;
            __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row), sh));
            _mm512_mask_storeu_ps(row, k, e);
            acc = _mm512_add_ps(acc, e);   // each query's sum over the keys in order, as before
        }
        if (sum) _mm512_mask_storeu_ps(sum + i0, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, sum + i0), acc));
    }
}

void cpu_vexp_rows(float *s, size_t ld, int n, int nv, const float *shift, float *sum, int poly) {
    if (poly && cpu_isa() == 2) { exp_rows_avx512(s, ld, n, nv, shift, sum); return; }
    for (int j = 0; j < n; j++) {
        float *row = s + (size_t)j * ld;
        cpu_vexp_sub(row, row, shift, (size_t)nv);
        if (sum)
            for (int i = 0; i < nv; i++) sum[i] += row[i];
    }
}

// The rollout's head sum at bf16 (rollout.c): acc[j] = (first ? 0 : acc[j]) + exp(x[j] − shift),
// one pass over a row of scores, on the same polynomial.
static AVX512 void exp_acc_avx512(float *acc, const float *x, float shift, size_t n, int first) {
    __m512 sh = _mm512_set1_ps(shift);
    for (size_t j = 0; j < n; j += 16) {
        __mmask16 k = (__mmask16)(n - j >= 16 ? 0xffff : (1u << (n - j)) - 1);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), sh));
        _mm512_mask_storeu_ps(acc + j, k, first ? e : _mm512_add_ps(_mm512_maskz_loadu_ps(k, acc + j), e));
    }
}

void cpu_vexp_acc(float *acc, const float *x, float shift, size_t n, int first) {
    if (cpu_isa() == 2) { exp_acc_avx512(acc, x, shift, n, first); return; }
    for (size_t j = 0; j < n; j++) acc[j] = (first ? 0.0f : acc[j]) + expf(x[j] - shift);
}

const char *cpu_vecmath_name(void) {
    if (cpu_bf16 && cpu_isa() == 2)
        return "exp/erf: glibc libmvec AVX2; at bf16 attention's exp an AVX-512 polynomial, GELU a table of its 65536 inputs";
    return cpu_use_avx2() ? "exp/erf: glibc libmvec AVX2" : "exp/erf: glibc scalar";
}
