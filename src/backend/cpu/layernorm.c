// layernorm.c: LayerNorm forward and backward, statistics in fp32, and the
// residual-fused pair the blocks call (mirrors kernels/layernorm.cu).
// Contracts in backend/backend.h: backward ops accumulate (+=) and skip NULL
// gradients. Every loop that reduces over rows runs in a fixed order, so results
// never depend on the thread count.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cpu/cpu.h"
#include "core/common.h"

// A row's sums in double run in LN_LANES partial sums, element i into lane i % LN_LANES, added
// at the end in a fixed tree: the lanes vectorise, where one running double sum waited ~4
// cycles an element (LayerNorm was 1.3-1.8% of a ViT-B step, nearly all of it those waits).
// The order depends on D alone, so the bits do not depend on the CPU, its ISA or the threads.
enum { LN_LANES = 16 };
static inline double lanes_total(double *acc) {
    for (int w = LN_LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}
static inline double row_sum(const float *x, int D) {
    double acc[LN_LANES] = {0};
    int i = 0;
    for (; i + LN_LANES <= D; i += LN_LANES)
        for (int j = 0; j < LN_LANES; j++) acc[j] += x[i + j];
    for (int j = 0; i < D; i++, j++) acc[j] += x[i];
    return lanes_total(acc);
}
static inline double row_sq_dev(const float *x, double m, int D) {
    double acc[LN_LANES] = {0};
    int i = 0;
    for (; i + LN_LANES <= D; i += LN_LANES)
        for (int j = 0; j < LN_LANES; j++) acc[j] += (x[i + j] - m) * (x[i + j] - m);
    for (int j = 0; i < D; i++, j++) acc[j] += (x[i] - m) * (x[i] - m);
    return lanes_total(acc);
}

// One row: statistics in double, then the normalised row. Shared by the plain and
// the residual-fused op so that both give the same bits.
static inline void ln_row(float *o, float *mean, float *rstd, const float *x, const float *w, const float *b, int D,
                          float eps) {
    // double: the variance of large-mean rows loses nothing
    double m = row_sum(x, D) / D, ss = row_sq_dev(x, m, D);
    float rs = (float)(1.0 / sqrt(ss / D + eps));
    for (int i = 0; i < D; i++) o[i] = ((float)(x[i] - m)) * rs * w[i] + b[i];
    *mean = (float)m;
    *rstd = rs;
}

// The output is an Act: at bf16 each row is normalised into a per-thread fp32 row, then
// rounded once where it is written.
void cpu_layernorm_forward(Act *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                           int rows, int D, float eps) {
    if (!cpu_bf16) {
#pragma omp parallel for
        for (int r = 0; r < rows; r++)
            ln_row((float *)out + (size_t)r * D, mean + r, rstd + r, inp + (size_t)r * D, w, b, D, eps);
        return;
    }
#pragma omp parallel
    {
        float *row = xmalloc((size_t)D * sizeof(float));
#pragma omp for
        for (int r = 0; r < rows; r++) {
            ln_row(row, mean + r, rstd + r, inp + (size_t)r * D, w, b, D, eps);
            cpu_act_store(out, (size_t)r * D, row, (size_t)D);
        }
        free(row);
    }
}

// One row's two means of the input gradient: a = mean(g·w), c = mean(g·w·x̂).
static inline void ln_row_means(float *a, float *c, const float *g, const float *x, const float *w, float m,
                                float rs, int D) {
    double am[LN_LANES] = {0}, ax[LN_LANES] = {0};   // in lanes, as row_sum
    int i = 0;
    for (; i + LN_LANES <= D; i += LN_LANES)
        for (int j = 0; j < LN_LANES; j++) {
            float xhat = (x[i + j] - m) * rs, dn = g[i + j] * w[i + j];
            am[j] += dn;
            ax[j] += dn * xhat;
        }
    for (int j = 0; i < D; i++, j++) {
        float xhat = (x[i] - m) * rs, dn = g[i] * w[i];
        am[j] += dn;
        ax[j] += dn * xhat;
    }
    *a = (float)(lanes_total(am) / D), *c = (float)(lanes_total(ax) / D);
}

// dw/db: columns in parallel, rows in order.
// Each column's sums run over the rows in order, as a column-at-a-time loop would, but
// a block of columns at a time, row by row: contiguous loads that vectorise across the
// columns (the strided column loop was 1.4% of a 224-px step), with the same bits.
static void ln_dwdb(float *dw, float *db, const float *dout, const float *inp, const float *mean, const float *rstd,
                    int rows, int D) {
    enum { CB = 64 };
#pragma omp parallel for
    for (int i0 = 0; i0 < D; i0 += CB) {
        int n = D - i0 < CB ? D - i0 : CB;
        float sw[CB] = {0}, sb[CB] = {0};
        for (int r = 0; r < rows; r++) {
            const float *g = dout + (size_t)r * D + i0, *x = inp + (size_t)r * D + i0;
            float m = mean[r], rs = rstd[r];
            for (int i = 0; i < n; i++) {
                sw[i] += g[i] * (x[i] - m) * rs;
                sb[i] += g[i];
            }
        }
        for (int i = 0; i < n; i++) {
            if (dw) dw[i0 + i] += sw[i];
            if (db) db[i0 + i] += sb[i];
        }
    }
}

void cpu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                            const float *mean, const float *rstd, int rows, int D) {
    if (dinp) {
#pragma omp parallel for
        for (int r = 0; r < rows; r++) {
            const float *x = inp + (size_t)r * D, *g = dout + (size_t)r * D;
            float m = mean[r], rs = rstd[r], a, c;
            ln_row_means(&a, &c, g, x, w, m, rs, D);
            float *o = dinp + (size_t)r * D;
            for (int i = 0; i < D; i++) {
                float xhat = (x[i] - m) * rs;
                o[i] += (g[i] * w[i] - a - xhat * c) * rs;
            }
        }
    }
    if (dw || db) ln_dwdb(dw, db, dout, inp, mean, rstd, rows, D);
}

// Residual + LayerNorm (backend.h): each row's h is written, then normalised from
// what was written, so every float is the one the two separate ops produce.
void cpu_residual_layernorm_forward(float *h, Act *out, float *mean, float *rstd, const float *x, const float *f,
                                    const float *scale, const float *w, const float *b, int B, int rows_per_b, int D,
                                    float eps) {
    int rows = B * rows_per_b;
#pragma omp parallel
    {
        float *row = cpu_bf16 ? xmalloc((size_t)D * sizeof(float)) : NULL;   // bf16: as layernorm_forward
#pragma omp for
        for (int r = 0; r < rows; r++) {
            float s = scale ? scale[r / rows_per_b] : 1.0f;
            size_t o = (size_t)r * D;
            for (int i = 0; i < D; i++) h[o + i] = x[o + i] + s * f[o + i];
            ln_row(row ? row : (float *)out + o, mean + r, rstd + r, h + o, w, b, D, eps);
            if (row) cpu_act_store(out, o, row, (size_t)D);
        }
        free(row);
    }
}

// The mirror (backend.h). dh is kept in a register: it starts as 0 + dskip (the sum the
// separate ops make in a zeroed buffer, so a −0 gradient stays +0 as it did), then takes
// LayerNorm's term, then goes to dx and, scaled, to df.
void cpu_residual_layernorm_backward(float *dx, float *df, float *dw, float *db, const float *dskip,
                                     const float *dout, const float *h, const float *w, const float *mean,
                                     const float *rstd, const float *scale, int B, int rows_per_b, int D) {
    int rows = B * rows_per_b;
    if (dx || df) {
#pragma omp parallel for
        for (int r = 0; r < rows; r++) {
            size_t o = (size_t)r * D;
            const float *x = h + o, *g = dout + o, *k = dskip + o;
            float m = mean[r], rs = rstd[r], s = scale ? scale[r / rows_per_b] : 1.0f, a, c;
            ln_row_means(&a, &c, g, x, w, m, rs, D);
            for (int i = 0; i < D; i++) {
                float xhat = (x[i] - m) * rs, d = 0.0f + k[i];
                d += (g[i] * w[i] - a - xhat * c) * rs;
                if (dx) dx[o + i] += d;
                if (df) df[o + i] += s * d;
            }
        }
    }
    if (dw || db) ln_dwdb(dw, db, dout, h, mean, rstd, rows, D);
}
