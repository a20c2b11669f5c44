// elementwise.c: GELU, residual with drop-path, row gather, cross-entropy and
// the sum of squares (mirrors kernels/elementwise.cu).
// Contracts in backend/backend.h: backward ops accumulate (+=) and skip NULL
// gradients. Every loop that reduces over rows runs in a fixed order, so results
// never depend on the thread count.
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cpu/cpu.h"
#include "core/common.h"

// Exact GELU, x·Φ(x), in chunks: erf and exp of a chunk at once (vecmath.c), then
// the elementwise rest.
enum { GELU_CHUNK = 1024 };

// y = GELU(x) and d = GELU'(x) = Φ(x) + x·φ(x) for a chunk of len <= GELU_CHUNK.
static void gelu_values(float *y, const float *x, size_t len) {
    float erf_[GELU_CHUNK];
    cpu_verf(erf_, x, (float)M_SQRT1_2, len);
    for (size_t i = 0; i < len; i++) y[i] = 0.5f * x[i] * (1.0f + erf_[i]);
}
static void gelu_slopes(float *d, const float *x, size_t len) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    float erf_[GELU_CHUNK], gauss[GELU_CHUNK];
    cpu_verf(erf_, x, (float)M_SQRT1_2, len);
    for (size_t i = 0; i < len; i++) gauss[i] = -0.5f * x[i] * x[i];
    cpu_vexp(gauss, gauss, 0.0f, len);
    for (size_t i = 0; i < len; i++) {
        float cdf = 0.5f * (1.0f + erf_[i]), pdf = inv_sqrt_2pi * gauss[i];
        d[i] = cdf + x[i] * pdf;
    }
}

// At bf16 the input is a bf16 value, one of 65536: its GELU, rounded as the output is stored,
// and its slope are looked up in two tables (384 KiB) made once by the functions above, so
// the bits are those of computing each value (erf and exp were ~3% of a bf16 step on a Zen 4).
enum { GELU_TABLE = 1 << 16 };
static uint16_t gelu_y16[GELU_TABLE];
static float gelu_d32[GELU_TABLE];
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;
static void gelu_tables(void) {
    for (size_t c = 0; c < GELU_TABLE; c += GELU_CHUNK) {
        float x[GELU_CHUNK], y[GELU_CHUNK];
        for (size_t i = 0; i < GELU_CHUNK; i++) x[i] = bf16_f32((uint16_t)(c + i));
        gelu_values(y, x, GELU_CHUNK);
        cpu_bf16_pack_row(gelu_y16 + c, y, GELU_CHUNK);
        gelu_slopes(gelu_d32 + c, x, GELU_CHUNK);
    }
}

// Input and output are Acts: at bf16 a table lookup per element; at fp32 in place, a chunk at a time.
void cpu_gelu_forward(Act *out, const Act *act, size_t n) {
    if (cpu_bf16) {
        pthread_once(&gelu_once, gelu_tables);
        const uint16_t *x = (const uint16_t *)act;
        uint16_t *y = (uint16_t *)out;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) y[i] = gelu_y16[x[i]];
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < n; c += GELU_CHUNK)
        gelu_values((float *)out + c, act_f32(act) + c, n - c < GELU_CHUNK ? n - c : GELU_CHUNK);
}

// dinp += dout · GELU'(x), or = with set (gelu_backward_set).
static void gelu_backward(float *dinp, const Act *act, const float *dout, size_t n, bool set) {
    if (cpu_bf16) {
        pthread_once(&gelu_once, gelu_tables);
        const uint16_t *x = (const uint16_t *)act;
        if (set) {
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * gelu_d32[x[i]];
        } else {
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * gelu_d32[x[i]];
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < n; c += GELU_CHUNK) {
        size_t len = n - c < GELU_CHUNK ? n - c : GELU_CHUNK;
        float d[GELU_CHUNK];
        gelu_slopes(d, act_f32(act) + c, len);
        if (set)
            for (size_t i = 0; i < len; i++) dinp[c + i] = dout[c + i] * d[i];
        else
            for (size_t i = 0; i < len; i++) dinp[c + i] += dout[c + i] * d[i];
    }
}
void cpu_gelu_backward(float *dinp, const Act *act, const float *dout, size_t n) {
    gelu_backward(dinp, act, dout, n, false);
}
void cpu_gelu_backward_set(float *dinp, const Act *act, const float *dout, size_t n) {
    gelu_backward(dinp, act, dout, n, true);
}

void cpu_residual_forward(float *out, const float *x, const float *f, const float *scale, int B, size_t n_per_b) {
    for (int b = 0; b < B; b++) {
        float s = scale ? scale[b] : 1.0f;
        size_t o = (size_t)b * n_per_b;
#pragma omp parallel for
        for (size_t i = 0; i < n_per_b; i++) out[o + i] = x[o + i] + s * f[o + i];
    }
}

void cpu_residual_backward(float *dx, float *df, const float *dout, const float *scale, int B, size_t n_per_b) {
    for (int b = 0; b < B; b++) {
        float s = scale ? scale[b] : 1.0f;
        size_t o = (size_t)b * n_per_b;
#pragma omp parallel for
        for (size_t i = 0; i < n_per_b; i++) {
            if (dx) dx[o + i] += dout[o + i];
            if (df) df[o + i] += s * dout[o + i];
        }
    }
}

void cpu_gather_rows_forward(float *out, const float *inp, const int *idx, int B, int Nin, int Nout, int D) {
    for (int b = 0; b < B; b++)
        for (int j = 0; j < Nout; j++)
            memcpy(out + ((size_t)b * Nout + j) * D, inp + ((size_t)b * Nin + idx[b * Nout + j]) * D,
                   (size_t)D * sizeof(float));
}

void cpu_gather_rows_backward(float *dinp, const float *dout, const int *idx, int B, int Nin, int Nout, int D) {
    for (int b = 0; b < B; b++)
        for (int j = 0; j < Nout; j++) {
            float *o = dinp + ((size_t)b * Nin + idx[b * Nout + j]) * D;
            const float *g = dout + ((size_t)b * Nout + j) * D;
            for (int i = 0; i < D; i++) o[i] += g[i];
        }
}

void cpu_crossentropy_forward(float *losses, float *probs, const float *logits, const int *labels, int B, int C) {
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * C;
        float *p = probs + (size_t)b * C;
        float m = z[0];
        for (int c = 1; c < C; c++) m = z[c] > m ? z[c] : m;
        double s = 0;
        for (int c = 0; c < C; c++) s += exp((double)z[c] - m);
        for (int c = 0; c < C; c++) p[c] = (float)(exp((double)z[c] - m) / s);
        losses[b] = (float)(log(s) + m - z[labels[b]]);   // −log softmax, stable for large logits
    }
}

void cpu_crossentropy_backward(float *dlogits, const float *probs, const int *labels, const float *coef, int B, int C) {
    float dscale = coef[0] / B;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            dlogits[(size_t)b * C + c] += dscale * (probs[(size_t)b * C + c] - (c == labels[b] ? 1.0f : 0.0f));
}

void cpu_loss_forward(float *out, const float *const losses[3], const float *w, int B, int heads, int uw) {
    double loss = 0;
    for (int h = 0; h < 3; h++) {
        out[1 + h] = 0;
        if (!(heads >> h & 1)) continue;
        double s = 0;
        for (int b = 0; b < B; b++) s += losses[h][b];
        float ce = out[1 + h] = (float)(s / B);
        loss += uw ? 0.5 * (exp(-w[h]) * ce + w[h]) : ce;
    }
    out[0] = (float)loss;
}

void cpu_loss_backward(float *coef, float *dw, const float *w, const float *out, float s, int heads, int uw) {
    for (int h = 0; h < 3; h++) {
        int on = heads >> h & 1;
        coef[h] = !on ? 0 : uw ? s * 0.5f * expf(-w[h]) : s;
        dw[h] += on && uw ? s * 0.5f * (1.0f - expf(-w[h]) * out[1 + h]) : 0.0f;
    }
}

// Σ x², in double. It was one serial chain of dependent adds over the whole gradient (86 M
// floats for ViT-B: 92 ms, 1.6% of a quiet 224-px CPU step, the other threads idle; now 22 ms on
// 2 threads, bench/RESULTS.md). Blocks of
// SUMSQ_BLOCK floats are summed in parallel, each in SUMSQ_LANES lanes (lane l takes the block's
// x[i] with i % 16 == l, one fma chain), the lanes combined pairwise ((l0+l8) + …, a fixed tree)
// and the blocks' sums added in block order: one order for any thread count, and the scalar
// loop runs the same chains and tree as the AVX2 one (unit_vecmath).
enum { SUMSQ_BLOCK = 1 << 16, SUMSQ_LANES = 16 };

static double lanes_total(double l[SUMSQ_LANES]) {
    for (int w = SUMSQ_LANES / 2; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) l[k] += l[k + w];
    return l[0];
}

static double block_scalar(const float *x, size_t n) {
    double l[SUMSQ_LANES] = {0};
    for (size_t i = 0; i < n; i++) l[i % SUMSQ_LANES] = fma((double)x[i], (double)x[i], l[i % SUMSQ_LANES]);
    return lanes_total(l);
}

#define AVX2 __attribute__((target("avx2,fma")))
static AVX2 double block_avx2(const float *x, size_t n) {
    __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    size_t i = 0;
    for (; i + SUMSQ_LANES <= n; i += SUMSQ_LANES)
        for (int k = 0; k < 4; k++) {
            __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * k));
            a[k] = _mm256_fmadd_pd(v, v, a[k]);
        }
    double l[SUMSQ_LANES];
    for (int k = 0; k < 4; k++) _mm256_storeu_pd(l + 4 * k, a[k]);
    for (; i < n; i++) l[i % SUMSQ_LANES] = fma((double)x[i], (double)x[i], l[i % SUMSQ_LANES]);
    return lanes_total(l);
}

double cpu_sumsq(const float *x, size_t n) {
    size_t nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
    double *part = xmalloc((nb ? nb : 1) * sizeof(double)), s = 0;
    int avx2 = cpu_use_avx2();
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * SUMSQ_BLOCK, m = n - i0 < SUMSQ_BLOCK ? n - i0 : SUMSQ_BLOCK;
        part[b] = avx2 ? block_avx2(x + i0, m) : block_scalar(x + i0, m);
    }
    for (size_t b = 0; b < nb; b++) s += part[b];
    free(part);
    return s;
}

double cpu_sumsq_scalar(const float *x, size_t n) {
    double s = 0;
    for (size_t i0 = 0; i0 < n; i0 += SUMSQ_BLOCK) s += block_scalar(x + i0, n - i0 < SUMSQ_BLOCK ? n - i0 : SUMSQ_BLOCK);
    return s;
}

void cpu_sumsq_into(double *out, const float *x, size_t n) { *out = cpu_sumsq(x, n); }
