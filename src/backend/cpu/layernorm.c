// layernorm.c: LayerNorm forward and backward, statistics in fp32 (mirrors
// kernels/layernorm.cu).
// Contracts in backend/backend.h: backward ops accumulate (+=) and skip NULL
// gradients. Every loop that reduces over rows runs in a fixed order, so results
// never depend on the thread count.
#include <math.h>
#include <string.h>
#include "backend/cpu/cpu.h"

void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                           int rows, int D, float eps) {
#pragma omp parallel for
    for (int r = 0; r < rows; r++) {
        const float *x = inp + (size_t)r * D;
        double s = 0, ss = 0;   // double: the variance of large-mean rows loses nothing
        for (int i = 0; i < D; i++) s += x[i];
        double m = s / D;
        for (int i = 0; i < D; i++) ss += (x[i] - m) * (x[i] - m);
        float rs = (float)(1.0 / sqrt(ss / D + eps));
        float *o = out + (size_t)r * D;
        for (int i = 0; i < D; i++) o[i] = ((float)(x[i] - m)) * rs * w[i] + b[i];
        mean[r] = (float)m;
        rstd[r] = rs;
    }
}

void cpu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                            const float *mean, const float *rstd, int rows, int D) {
    if (dinp) {
#pragma omp parallel for
        for (int r = 0; r < rows; r++) {
            const float *x = inp + (size_t)r * D, *g = dout + (size_t)r * D;
            float m = mean[r], rs = rstd[r];
            double dn_mean = 0, dn_xhat = 0;
            for (int i = 0; i < D; i++) {
                float xhat = (x[i] - m) * rs, dn = g[i] * w[i];
                dn_mean += dn;
                dn_xhat += dn * xhat;
            }
            float a = (float)(dn_mean / D), c = (float)(dn_xhat / D);
            float *o = dinp + (size_t)r * D;
            for (int i = 0; i < D; i++) {
                float xhat = (x[i] - m) * rs;
                o[i] += (g[i] * w[i] - a - xhat * c) * rs;
            }
        }
    }
    if (dw || db) {
        // Parameter gradients: columns in parallel, rows in order.
#pragma omp parallel for
        for (int i = 0; i < D; i++) {
            float sw = 0, sb = 0;
            for (int r = 0; r < rows; r++) {
                float g = dout[(size_t)r * D + i];
                sw += g * (inp[(size_t)r * D + i] - mean[r]) * rstd[r];
                sb += g;
            }
            if (dw) dw[i] += sw;
            if (db) db[i] += sb;
        }
    }
}
