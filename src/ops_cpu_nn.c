// ops_cpu_nn.c: the CPU reference for every op except attention (fp32,
// OpenMP over rows, OpenBLAS sgemm). Contracts in ops.h: backward ops
// accumulate (+=) and skip NULL gradients. Every loop that reduces over
// rows runs in a fixed order so results never depend on the thread count.
#include <cblas.h>
#include <math.h>
#include <string.h>
#include "ops_cpu.h"

void cpu_im2col_forward(float *cols, const float *img, int B, int C, int S, int p) {
    int g = S / p, P = g * g, K = C * p * p;
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < P; t++) {
            int py = t / g, px = t % g;
            float *row = cols + ((size_t)b * P + t) * K;
            for (int c = 0; c < C; c++)
                for (int ky = 0; ky < p; ky++) {
                    const float *src = img + (((size_t)b * C + c) * S + py * p + ky) * S + px * p;
                    memcpy(row + (c * p + ky) * p, src, (size_t)p * sizeof(float));
                }
        }
}

void cpu_tokens_forward(float *x0, const float *pe, const float *cls, const float *pos, int B, int N, int D) {
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < N; t++) {
            float *o = x0 + ((size_t)b * N + t) * D;
            const float *src = t == 0 ? cls : pe + ((size_t)b * (N - 1) + t - 1) * D;
            const float *ps = pos + (size_t)t * D;
            for (int i = 0; i < D; i++) o[i] = src[i] + ps[i];
        }
}

void cpu_tokens_backward(float *dpe, float *dcls, float *dpos, const float *dx0, int B, int N, int D) {
    if (dpe)
        for (int b = 0; b < B; b++)
            for (int t = 1; t < N; t++) {
                float *o = dpe + ((size_t)b * (N - 1) + t - 1) * D;
                const float *g = dx0 + ((size_t)b * N + t) * D;
                for (int i = 0; i < D; i++) o[i] += g[i];
            }
    // Sum over the batch in order b = 0..B-1: deterministic.
#pragma omp parallel for
    for (int t = 0; t < N; t++)
        for (int b = 0; b < B; b++) {
            const float *g = dx0 + ((size_t)b * N + t) * D;
            if (dpos)
                for (int i = 0; i < D; i++) dpos[(size_t)t * D + i] += g[i];
            if (t == 0 && dcls)
                for (int i = 0; i < D; i++) dcls[i] += g[i];
        }
}

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

void cpu_linear_forward(float *out, const float *inp, const float *w, const float *b, int rows, int IC, int OC) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, OC, IC, 1.0f, inp, IC, w, IC, 0.0f, out, OC);
    if (b) {
#pragma omp parallel for
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < OC; o++) out[(size_t)r * OC + o] += b[o];
    }
}

void cpu_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                         int rows, int IC, int OC) {
    if (dinp)   // dinp [rows, IC] += dout [rows, OC] · W [OC, IC]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, IC, OC, 1.0f, dout, OC, w, IC, 1.0f, dinp, IC);
    if (dw)     // dW [OC, IC] += doutᵀ · inp
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, rows, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
    if (db) {
#pragma omp parallel for
        for (int o = 0; o < OC; o++) {
            float s = 0;
            for (int r = 0; r < rows; r++) s += dout[(size_t)r * OC + o];
            db[o] += s;
        }
    }
}

void cpu_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * (float)M_SQRT1_2));
}

void cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
        float pdf = inv_sqrt_2pi * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
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

void cpu_crossentropy_backward(float *dlogits, const float *probs, const int *labels, float dscale, int B, int C) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            dlogits[(size_t)b * C + c] += dscale * (probs[(size_t)b * C + c] - (c == labels[b] ? 1.0f : 0.0f));
}

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

double cpu_sumsq(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}
