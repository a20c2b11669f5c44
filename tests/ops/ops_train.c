// ops_train.c: op cases for the loss and the optimizer: softmax cross-entropy,
// the AdamW update and the sum of squares.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ops.h"

#define XF(i) ((float *)x[i])
#define YF(j) ((float *)y[j])

// ---- crossentropy: p = {B, C, 1/dscale, large first logit, logit scale} ---------------
// The backward is dlogits += dscale·(probs − onehot): the gradient of dscale·Σ_b loss_b,
// so the upstream gradient of the losses is the constant dscale.
static float ce_dscale(const OpCase *c) { return 1.0f / c->row->p[2]; }

static void ce_init(OpCase *c, Rng *r) {
    int B = c->row->p[0], C = c->row->p[1];
    c->nx = 2, c->ny = 2;
    tensor_set(&c->x[0], "logits", (size_t)B * C, T_F32, 1);
    tensor_set(&c->x[1], "labels", B, T_I32, 0);
    float *z = fill_normal(&c->x[0], r, (float)c->row->p[4]);
    if (c->row->p[3]) z[0] = 80.0f;   // exp(80) overflows fp32: the op must subtract the max
    int *lab = fill_int(&c->x[1]);
    for (int b = 0; b < B; b++) {
        const int pick[5] = {0, C - 1, 3 % C, 17 % C, C / 2};
        lab[b] = pick[b % 5];
    }
    tensor_set(&c->y[0], "losses", B, T_F32, 1);
    tensor_set(&c->y[1], "probs", (size_t)B * C, T_F32, 0);
    float *g = make_gy(c, 0, r, 0.f);
    for (int b = 0; b < B; b++) g[b] = ce_dscale(c);
}
static void ce_ref(const OpCase *c, double *const *x, double *const *y) {
    int B = c->row->p[0], C = c->row->p[1];
    const int *lab = c->x[1].h;
    for (int b = 0; b < B; b++) {
        double *p = y[1] + (size_t)b * C;
        memcpy(p, x[0] + (size_t)b * C, C * sizeof(double));
        y[0][b] = ref_softmax_lse(p, C) - x[0][(size_t)b * C + lab[b]];
    }
}
static void ce_ref_bwd(const OpCase *c, double *const *x, double *const *gy, double *const *gx) {
    int B = c->row->p[0], C = c->row->p[1];
    const int *lab = c->x[1].h;
    double *y[2] = {tz(B, sizeof(double)), tz((size_t)B * C, sizeof(double))};
    ce_ref(c, x, y);
    for (int b = 0; b < B; b++)
        for (int k = 0; k < C; k++) gx[0][(size_t)b * C + k] += gy[0][b] * (y[1][(size_t)b * C + k] - (k == lab[b]));
    free(y[0]), free(y[1]);
}
static void ce_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    be->crossentropy_forward(YF(0), YF(1), XF(0), (const int *)x[1], c->row->p[0], c->row->p[1]);
}
static void ce_be_bwd(const Backend *be, const OpCase *c, void *const *x, void *const *y, float *const *gy,
                      float *const *gx) {
    (void)gy;   // the op takes the scalar dscale (= every element of gy[0]) as coef / B, coef in backend memory
    int B = c->row->p[0];
    float coef = ce_dscale(c) * B, *d = be->alloc(sizeof coef);   // dscale = 1/2^k: coef / B is exact
    be->to_device(d, &coef, sizeof coef);
    be->crossentropy_backward(gx[0], YF(1), (const int *)x[1], d, B, c->row->p[1]);
    be->sync();
    be->free(d);
}
const OpDef OP_CROSSENTROPY = {"crossentropy", ce_init, ce_ref, ce_ref_bwd, ce_be, ce_be_bwd, NULL, 0, NULL};

// ---- loss_forward: p = {B, heads (bit h: head h on), uncertainty weighting} ------------------
// The three heads' per-sample CEs (positive) and loss_w; out = {loss, ce_SA, ce_GLCA, ce_PWCA}.
static void loss_init(OpCase *c, Rng *r) {
    int B = c->row->p[0], heads = c->row->p[1];
    static const char *names[3] = {"losses SA", "losses GLCA", "losses PWCA"};
    c->nx = 4, c->ny = 1;
    for (int h = 0; h < 3; h++) {
        tensor_set(&c->x[h], names[h], heads >> h & 1 ? B : 0, T_F32, 0);
        float *l = fill_normal(&c->x[h], r, 1.f);
        for (int b = 0; b < (int)c->x[h].n; b++) l[b] = fabsf(l[b]) + 0.1f;
    }
    tensor_set(&c->x[3], "loss_w", 3, T_F32, 0);
    fill_normal(&c->x[3], r, 0.5f);
    tensor_set(&c->y[0], "out", 4, T_F32, 0);
}
static void loss_ref(const OpCase *c, double *const *x, double *const *y) {
    int B = c->row->p[0], heads = c->row->p[1], uw = c->row->p[2];
    y[0][0] = 0;
    for (int h = 0; h < 3; h++) {
        double ce = 0;
        for (int b = 0; b < B && (heads >> h & 1); b++) ce += x[h][b] / B;
        y[0][1 + h] = ce;
        if (heads >> h & 1) y[0][0] += uw ? 0.5 * (exp(-x[3][h]) * ce + x[3][h]) : ce;
    }
}
static void loss_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    const float *l[3] = {x[0], x[1], x[2]};
    be->loss_forward(YF(0), l, XF(3), c->row->p[0], c->row->p[1], c->row->p[2]);
}
const OpDef OP_LOSS = {"loss_forward", loss_init, loss_ref, NULL, loss_be, NULL, NULL, 0, NULL};

// ---- loss_backward: p = {heads, uncertainty weighting, loss scale ×100} ----------------------
// From loss_w, loss_forward's out and dw's start values: coef (each head's CE factor) and dw
// after the += (the loss weights' gradient), against ∂loss/∂ce_h and ∂loss/∂w_h in float64.
static void lossb_init(OpCase *c, Rng *r) {
    c->nx = 3, c->ny = 2;
    tensor_set(&c->x[0], "loss_w", 3, T_F32, 0);
    tensor_set(&c->x[1], "out", 4, T_F32, 0);
    tensor_set(&c->x[2], "dw start", 3, T_F32, 0);
    fill_normal(&c->x[0], r, 0.5f);
    float *o = fill_normal(&c->x[1], r, 1.f);
    for (int i = 0; i < 4; i++) o[i] = fabsf(o[i]) + 0.1f;
    fill_normal(&c->x[2], r, 1.f);
    tensor_set(&c->y[0], "coef", 3, T_F32, 0);
    tensor_set(&c->y[1], "dw", 3, T_F32, 0);
}
static void lossb_ref(const OpCase *c, double *const *x, double *const *y) {
    int heads = c->row->p[0], uw = c->row->p[1];
    double s = c->row->p[2] / 100.0;
    for (int h = 0; h < 3; h++) {
        int on = heads >> h & 1;
        y[0][h] = !on ? 0 : uw ? s * 0.5 * exp(-x[0][h]) : s;
        y[1][h] = x[2][h] + (on && uw ? s * 0.5 * (1 - exp(-x[0][h]) * x[1][1 + h]) : 0);
    }
}
static void lossb_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    be->copy(y[1], x[2], 3 * sizeof(float));
    be->loss_backward(YF(0), YF(1), XF(0), XF(1), c->row->p[2] / 100.f, c->row->p[0], c->row->p[1]);
}
const OpDef OP_LOSS_BWD = {"loss_backward", lossb_init, lossb_ref, NULL, lossb_be, NULL, NULL, 0, NULL};

// ---- adamw_update: p = {n, steps, wd ×1000, first t, lr ×1e4, hand} --------------------
// One gradient per step; m, v start random (v ≥ 0) unless hand. betas 0.9/0.999, eps 1e-8.
// hand 1: p = [1, −2], g = [.5, −.25] from m = v = 0; hand 2: p = [3], g = [1].
static void adam_init(OpCase *c, Rng *r) {
    size_t n = c->row->p[0];
    int hand = c->row->p[5];
    c->nx = 4, c->ny = 3;
    tensor_set(&c->x[0], "param", n, T_F32, 0);
    tensor_set(&c->x[1], "grads", n * c->row->p[1], T_F32, 0);
    tensor_set(&c->x[2], "m0", n, T_F32, 0);
    tensor_set(&c->x[3], "v0", n, T_F32, 0);
    float *p = fill_normal(&c->x[0], r, 1.f), *g = fill_normal(&c->x[1], r, .01f);
    fill_normal(&c->x[2], r, hand ? 0.f : .01f);
    float *v = fill_normal(&c->x[3], r, hand ? 0.f : .01f);
    for (size_t k = 0; k < n; k++) v[k] *= v[k];
    static const float hp[2][2] = {{1, -2}, {3, 0}}, hg[2][2] = {{.5f, -.25f}, {1, 0}};
    for (size_t k = 0; hand && k < n; k++) p[k] = hp[hand - 1][k], g[k] = hg[hand - 1][k];
    tensor_set(&c->y[0], "param", n, T_F32, 0);
    tensor_set(&c->y[1], "m", n, T_F32, 0);
    tensor_set(&c->y[2], "v", n, T_F32, 0);
}
// The float arguments as the op gets them.
static void adam_hyper(const OpCase *c, float *lr, float *wd) {
    *lr = c->row->p[4] * 1e-4f, *wd = c->row->p[2] * 1e-3f;
}
static void adam_ref(const OpCase *c, double *const *x, double *const *y) {
    size_t n = c->row->p[0];
    float lr, wd;
    adam_hyper(c, &lr, &wd);
    double b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    memcpy(y[0], x[0], n * sizeof(double)), memcpy(y[1], x[2], n * sizeof(double)), memcpy(y[2], x[3], n * sizeof(double));
    for (int s = 0; s < c->row->p[1]; s++) {
        int t = c->row->p[3] + s;
        for (size_t k = 0; k < n; k++) {
            double g = x[1][s * n + k];
            y[1][k] = b1 * y[1][k] + (1 - b1) * g;
            y[2][k] = b2 * y[2][k] + (1 - b2) * g * g;
            double mh = y[1][k] / (1 - pow(b1, t)), vh = y[2][k] / (1 - pow(b2, t));
            y[0][k] -= (double)lr * (mh / (sqrt(vh) + eps) + (double)wd * y[0][k]);
        }
    }
}
static void adam_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    size_t n = c->row->p[0], b = n * sizeof(float);
    float lr, wd;
    adam_hyper(c, &lr, &wd);
    be->copy(y[0], x[0], b), be->copy(y[1], x[2], b), be->copy(y[2], x[3], b);
    for (int s = 0; s < c->row->p[1]; s++)
        be->adamw_update(YF(0), XF(1) + s * n, YF(1), YF(2), n, lr, 0.9f, 0.999f, 1e-8f, wd, c->row->p[3] + s);
}
const OpDef OP_ADAMW = {"adamw_update", adam_init, adam_ref, NULL, adam_be, NULL, NULL, 0, NULL};

// ---- adamw_multi: p = {n, steps, wd ×1000, first t, lr ×1e4} --------------------------
// adamw_update's case over one buffer cut into spans of odd lengths, with gaps (no span:
// the floats must come back unchanged) and decay on, off, and on twice in a row.
static int multi_spans(size_t n, AdamwSpan *out) {
    static const size_t piece[] = {1, 7, 2, 129, 3, 1000, 31, 64, 5};
    int ns = 0;
    size_t at = 0;
    for (int k = 0; at < n; k++) {
        size_t len = piece[k % 9] < n - at ? piece[k % 9] : n - at;
        if (k % 4 != 3) out[ns++] = (AdamwSpan){.offset = at, .numel = len, .decay = k % 3 != 1};
        at += len;
    }
    return ns;
}
static void multi_ref(const OpCase *c, double *const *x, double *const *y) {
    size_t n = c->row->p[0];
    float lr, wd;
    adam_hyper(c, &lr, &wd);
    double b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    memcpy(y[0], x[0], n * sizeof(double)), memcpy(y[1], x[2], n * sizeof(double)), memcpy(y[2], x[3], n * sizeof(double));
    AdamwSpan *sp = tz(n, sizeof *sp);
    int ns = multi_spans(n, sp);
    for (int s = 0; s < c->row->p[1]; s++) {
        int t = c->row->p[3] + s;
        for (int j = 0; j < ns; j++)
            for (size_t k = sp[j].offset; k < sp[j].offset + sp[j].numel; k++) {
                double g = x[1][s * n + k], w = sp[j].decay ? (double)wd : 0.0;
                y[1][k] = b1 * y[1][k] + (1 - b1) * g;
                y[2][k] = b2 * y[2][k] + (1 - b2) * g * g;
                double mh = y[1][k] / (1 - pow(b1, t)), vh = y[2][k] / (1 - pow(b2, t));
                y[0][k] -= (double)lr * (mh / (sqrt(vh) + eps) + w * y[0][k]);
            }
    }
    free(sp);
}
static void multi_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    size_t n = c->row->p[0], b = n * sizeof(float);
    float lr, wd;
    adam_hyper(c, &lr, &wd);
    be->copy(y[0], x[0], b), be->copy(y[1], x[2], b), be->copy(y[2], x[3], b);
    AdamwSpan *h = tz(n, sizeof *h), *d = be->alloc(n * sizeof *h);
    int ns = multi_spans(n, h);
    be->to_device(d, h, (size_t)ns * sizeof *h);
    for (int s = 0; s < c->row->p[1]; s++)
        be->adamw_multi(YF(0), XF(1) + s * n, YF(1), YF(2), n, d, ns, lr, 0.9f, 0.999f, 1e-8f, wd, c->row->p[3] + s);
    be->sync();
    be->free(d);
    free(h);
}
const OpDef OP_ADAMW_MULTI = {"adamw_multi", adam_init, multi_ref, NULL, multi_be, NULL, NULL, 0, NULL};

// ---- sumsq: p = {n}; the double result goes back through the backend's memory ---------
static void sumsq_init(OpCase *c, Rng *r) {
    c->nx = 1, c->ny = 1;
    tensor_set(&c->x[0], "x", c->row->p[0], T_F32, 0);
    fill_normal(&c->x[0], r, 1.f);
    tensor_set(&c->y[0], "sumsq", 1, T_F64, 0);
}
static void sumsq_ref(const OpCase *c, double *const *x, double *const *y) {
    y[0][0] = 0;
    for (size_t k = 0; k < c->x[0].n; k++) y[0][0] += x[0][k] * x[0][k];
}
// sumsq_into writes the reported value; it must carry sumsq's bits, or the row gets NaN.
static void sumsq_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    double s = be->sumsq(XF(0), c->x[0].n), t;
    be->sumsq_into((double *)y[0], XF(0), c->x[0].n);
    be->to_host(&t, y[0], sizeof t);
    if (memcmp(&s, &t, sizeof s)) {
        fprintf(stderr, "sumsq_into %a differs from sumsq %a\n", t, s);
        t = NAN;
        be->to_device(y[0], &t, sizeof t);
    }
}
const OpDef OP_SUMSQ = {"sumsq", sumsq_init, sumsq_ref, NULL, sumsq_be, NULL, NULL, 0, NULL};
