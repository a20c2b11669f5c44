// gradcheck_model.c: the whole DCAL model (MODEL.md §1-3) on a tiny config
// against an independent float64 reference written here from docs/MODEL.md, loop
// by loop. Forward: loss, logits and selected tokens agree. Backward: every
// parameter tensor's gradient (sampled entries, all entries for small
// tensors) agrees with central differences of the float64 reference.
// Tolerances: loss/logits relative 1e-5; gradients relative 1e-3 per tensor
// (max |analytic − numeric| / max |numeric| over the checked entries).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/common.h"
#include "model/model_int.h"
#include "core/rng.h"
#include "testutil.h"

enum { B = 4 };
static ModelConfig tiny(void) { return test_tiny_model(32, 0); }

// ---- float64 reference ---------------------------------------------------------
typedef struct {
    const Model *m;            // for the tensor table only
    const double *P;           // parameters, same layout as m->params
    const double *img;         // [B,3,S,S]
    const int *lab, *pair;
    bool uncertainty;
    int sel[B * 64];           // out: selection
    double ce[3], logits[3][B * 16];
} Ref;

static const double *T(const Ref *r, int id) { return r->P + r->m->tensors[id].offset; }

static void ln(const double *x, const double *w, const double *b, int D, double *out) {
    double mu = 0, v = 0;
    for (int i = 0; i < D; i++) mu += x[i];
    mu /= D;
    for (int i = 0; i < D; i++) v += (x[i] - mu) * (x[i] - mu);
    v /= D;
    for (int i = 0; i < D; i++) out[i] = (x[i] - mu) / sqrt(v + 1e-6) * w[i] + b[i];
}
// out[o] = b[o] + Σ_i x[i] W[o, i]; W rows [row0, row0+OC)
static void lin(const double *x, const double *W, const double *bias, int IC, int OC, double *out) {
    for (int o = 0; o < OC; o++) {
        double s = bias ? bias[o] : 0;
        for (int i = 0; i < IC; i++) s += x[i] * W[(size_t)o * IC + i];
        out[o] = s;
    }
}

// One block for one image: Rq query rows Y attend to keys/values from the N rows
// of G1 (and G2 when given: one softmax over both). out [Rq, D].
// Optionally returns the head-mean attention [Rq, N] over G1 only (rollout).
static void block(const Ref *r, int first, const double *Y, int Rq, const double *G1, const double *G2, double *out,
                  double *Smean) {
    const ModelConfig *c = &r->m->cfg;
    int D = c->dim, H = c->heads, hd = D / H, F = c->mlp_dim, N = r->m->N, nk = G2 ? 2 * N : N;
    const double *ln1w = T(r, first), *ln1b = T(r, first + 1), *Wqkv = T(r, first + 2), *bqkv = T(r, first + 3);
    const double *Wo = T(r, first + 4), *bo = T(r, first + 5), *ln2w = T(r, first + 6), *ln2b = T(r, first + 7);
    const double *W1 = T(r, first + 8), *b1 = T(r, first + 9), *W2 = T(r, first + 10), *b2 = T(r, first + 11);
    double *q = xmalloc(sizeof(double) * Rq * D), *k = xmalloc(sizeof(double) * nk * D),
           *v = xmalloc(sizeof(double) * nk * D), *t = xmalloc(sizeof(double) * D), *a = xmalloc(sizeof(double) * D),
           *s = xmalloc(sizeof(double) * nk), *h = xmalloc(sizeof(double) * D), *f = xmalloc(sizeof(double) * F);
    for (int i = 0; i < Rq; i++) {
        ln(Y + (size_t)i * D, ln1w, ln1b, D, t);
        lin(t, Wqkv, bqkv, D, D, q + (size_t)i * D);
    }
    for (int j = 0; j < nk; j++) {
        ln((j < N ? G1 + (size_t)j * D : G2 + (size_t)(j - N) * D), ln1w, ln1b, D, t);
        lin(t, Wqkv + (size_t)D * D, bqkv + D, D, D, k + (size_t)j * D);
        lin(t, Wqkv + (size_t)2 * D * D, bqkv + 2 * D, D, D, v + (size_t)j * D);
    }
    if (Smean) memset(Smean, 0, sizeof(double) * Rq * N);
    for (int i = 0; i < Rq; i++) {
        for (int hh = 0; hh < H; hh++) {
            double mx = -INFINITY, l = 0;
            for (int j = 0; j < nk; j++) {
                s[j] = 0;
                for (int d = 0; d < hd; d++) s[j] += q[(size_t)i * D + hh * hd + d] * k[(size_t)j * D + hh * hd + d];
                s[j] /= sqrt((double)hd);
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < nk; j++) l += (s[j] = exp(s[j] - mx));
            for (int d = 0; d < hd; d++) {
                a[hh * hd + d] = 0;
                for (int j = 0; j < nk; j++) a[hh * hd + d] += s[j] / l * v[(size_t)j * D + hh * hd + d];
            }
            if (Smean)
                for (int j = 0; j < N; j++) Smean[(size_t)i * N + j] += s[j] / l / H;
        }
        lin(a, Wo, bo, D, D, t);
        for (int d = 0; d < D; d++) h[d] = Y[(size_t)i * D + d] + t[d];
        ln(h, ln2w, ln2b, D, t);
        lin(t, W1, b1, D, F, f);
        for (int e = 0; e < F; e++) f[e] = 0.5 * f[e] * (1 + erf(f[e] / sqrt(2.0)));
        lin(f, W2, b2, F, D, t);
        for (int d = 0; d < D; d++) out[(size_t)i * D + d] = h[d] + t[d];
    }
    free(q); free(k); free(v); free(t); free(a); free(s); free(h); free(f);
}

static double head(const Ref *r, const double *cls, int nw, int hw, int label, double *logits) {
    int D = r->m->cfg.dim, C = r->m->cfg.num_classes;
    double t[64], mx = -INFINITY, l = 0;
    ln(cls, T(r, nw), T(r, nw + 1), D, t);
    lin(t, T(r, hw), T(r, hw + 1), D, C, logits);
    for (int c = 0; c < C; c++) mx = fmax(mx, logits[c]);
    for (int c = 0; c < C; c++) l += exp(logits[c] - mx);
    return log(l) + mx - logits[label];
}

// Patch embedding of image b (the conv as a direct sum), CLS and positions: x0 [N, D].
static void ref_embed(const Ref *r, int b, double *x0) {
    const ModelConfig *c = &r->m->cfg;
    int D = c->dim, S = c->img_size, p = c->patch, g = S / p;
    TensorIds id = model_ids(r->m);
    for (int d = 0; d < D; d++) x0[d] = T(r, id.cls)[d] + T(r, id.pos)[d];
    for (int py = 0; py < g; py++)
        for (int px = 0; px < g; px++) {
            int tok = 1 + py * g + px;
            for (int o = 0; o < D; o++) {
                double s = T(r, id.pe_b)[o];
                for (int ch = 0; ch < 3; ch++)
                    for (int ky = 0; ky < p; ky++)
                        for (int kx = 0; kx < p; kx++)
                            s += T(r, id.pe_w)[((o * 3 + ch) * p + ky) * p + kx] *
                                 r->img[(((size_t)b * 3 + ch) * S + py * p + ky) * S + px * p + kx];
                x0[(size_t)tok * D + o] = s + T(r, id.pos)[(size_t)tok * D + o];
            }
        }
}

// Image b's selection sel [1+K]: rollout r ← e0; r ← r·(0.5 S_l + 0.5 I) for
// l = L−M … 1 (newest first) over the head-mean attentions Sm [L][B][N,N], then top-K.
static void ref_select(const Ref *r, const double *Sm, int b, int *sel) {
    int N = r->m->N, L = r->m->cfg.depth, M = r->m->cfg.glca_blocks, K = r->m->K;
    double rr[256] = {0}, nr[256];
    rr[0] = 1;
    for (int l = L - M - 1; l >= 0; l--) {
        const double *Sl = Sm + ((size_t)l * B + b) * N * N;
        for (int j = 0; j < N; j++) {
            nr[j] = 0.5 * rr[j];
            for (int i = 0; i < N; i++) nr[j] += 0.5 * rr[i] * Sl[(size_t)i * N + j];
        }
        memcpy(rr, nr, sizeof(double) * N);
    }
    char taken[256] = {0};
    for (int kk = 0; kk < K; kk++) {
        int best = -1;
        for (int j = 1; j < N; j++)
            if (!taken[j] && (best < 0 || rr[j] > rr[best])) best = j;
        taken[best] = 1;
    }
    int n = 0;
    sel[n++] = 0;
    for (int j = 1; j < N; j++)
        if (taken[j]) sel[n++] = j;
}

static double ref_loss(Ref *r) {
    const Model *m = r->m;
    const ModelConfig *c = &m->cfg;
    int D = c->dim, N = m->N, L = c->depth, M = c->glca_blocks, Tn = c->pwca_blocks, Q = 1 + m->K;
    TensorIds id = model_ids(m);
    size_t img_n = (size_t)N * D;
    double *x = xcalloc((size_t)(L + 1) * B * img_n, sizeof(double));   // SA stream per layer, per image
#define X(l, b) (x + ((size_t)(l) * B + (b)) * img_n)
    for (int b = 0; b < B; b++) ref_embed(r, b, X(0, b));
    double *Sm = xmalloc(sizeof(double) * (size_t)L * B * N * N);
    for (int l = 0; l < L; l++)
        for (int b = 0; b < B; b++)
            block(r, model_sa_tensor(l), X(l, b), N, X(l, b), NULL, X(l + 1, b), Sm + ((size_t)l * B + b) * N * N);
    double loss_sum[3] = {0, 0, 0}, *yl = xmalloc(sizeof(double) * Q * D), *yo = xmalloc(sizeof(double) * Q * D);
    double *z = xmalloc(sizeof(double) * img_n), *z2 = xmalloc(sizeof(double) * img_n);
    for (int b = 0; b < B; b++) {
        int *sel = r->sel + b * Q;
        ref_select(r, Sm, b, sel);
        // GLCA
        for (int i = 0; i < Q; i++) memcpy(yl + (size_t)i * D, X(L - M, b) + (size_t)sel[i] * D, sizeof(double) * D);
        for (int j = 0; j < M; j++) {
            block(r, model_glca_tensor(m, j), yl, Q, X(L - M + j, b), NULL, yo, NULL);
            memcpy(yl, yo, sizeof(double) * Q * D);
        }
        loss_sum[0] += head(r, X(L, b), id.norm_w, id.head_w, r->lab[b], r->logits[0] + b * c->num_classes);
        loss_sum[1] += head(r, yl, id.gnorm_w, id.ghead_w, r->lab[b], r->logits[1] + b * c->num_classes);
        // PWCA: own stream, distractor's keys/values from its SA stream at the same layer.
        memcpy(z, X(0, b), sizeof(double) * img_n);
        for (int t = 0; t < Tn; t++) {
            block(r, model_sa_tensor(t), z, N, z, X(t, r->pair[b]), z2, NULL);
            memcpy(z, z2, sizeof(double) * img_n);
        }
        loss_sum[2] += head(r, z, id.norm_w, id.head_w, r->lab[b], r->logits[2] + b * c->num_classes);
    }
    const double *w = T(r, id.loss_w);
    double loss = 0;
    for (int h = 0; h < 3; h++) {
        r->ce[h] = loss_sum[h] / B;
        loss += r->uncertainty ? 0.5 * (exp(-w[h]) * r->ce[h] + w[h]) : r->ce[h];
    }
    free(x); free(Sm); free(yl); free(yo); free(z); free(z2);
#undef X
    return loss;
}

// ---- fixtures -------------------------------------------------------------------
typedef struct {
    Model m;
    float *img;
    int lab[B], pair[B];
} Fix;

// The fixture on cfg: tiny() with a test's changes to how the model is laid out.
static void fix_init_cfg(Fix *f, ModelConfig cfg, bool ckpt, uint64_t seed) {
    ck_assert(model_build(&f->m, &cfg, &backend_cpu));
    model_init_weights(&f->m, seed);
    // Break the symmetry of a fresh init so every path carries gradient: random LN
    // affine, biases, and non-zero loss weights.
    Rng r;
    rng_init(&r, seed, 1, 0, RNG_TEST);
    for (int i = 0; i < f->m.n_tensors; i++) {
        ParamTensor *t = &f->m.tensors[i];
        if (t->ndim == 1)
            for (size_t k = 0; k < t->numel; k++) f->m.params[t->offset + k] += 0.3f * rng_normal(&r);
        else
            for (size_t k = 0; k < t->numel; k++) f->m.params[t->offset + k] *= 5.0f;   // larger signals
    }
    ck_assert(model_alloc_activations(&f->m, B, ckpt, true));
    int S = cfg.img_size;
    f->img = xmalloc(sizeof(float) * B * 3 * S * S);
    for (int i = 0; i < B * 3 * S * S; i++) f->img[i] = rng_normal(&r);
    for (int b = 0; b < B; b++) f->lab[b] = (int)rng_below(&r, (uint32_t)cfg.num_classes);
    int pair[B] = {1, 2, 3, 0};
    memcpy(f->pair, pair, sizeof pair);
}
// per_block: gradients one block at a time (ModelConfig.grads_per_block, train.update_in_backward);
// ckpt_layers: with ckpt, the layers recomputed (train.checkpoint_layers; 0: all).
static void fix_init_with(Fix *f, bool ckpt, uint64_t seed, bool per_block, int ckpt_layers) {
    ModelConfig cfg = tiny();
    cfg.grads_per_block = per_block;
    cfg.ckpt_layers = ckpt_layers;
    fix_init_cfg(f, cfg, ckpt, seed);
}
static void fix_init(Fix *f, bool ckpt, uint64_t seed) { fix_init_with(f, ckpt, seed, false, 0); }
static void fix_free(Fix *f) { model_free(&f->m); free(f->img); }

static float run_step(Fix *f, StepOut *out) {
    Batch bt = {.B = B, .images = f->img, .labels = f->lab, .pair = f->pair};
    return test_model_step(&f->m, &bt, out);
}

// pwca_blocks: tiny()'s T, or fewer (then PWCA's last block, the CLS tail, sits below SA's);
// per_tensor: the entries of each tensor checked by central differences (at most 6).
static void check_against_reference_on(bool ckpt, int pwca_blocks, int per_tensor) {
    Fix f;
    ModelConfig cfg = tiny();
    cfg.pwca_blocks = pwca_blocks;
    fix_init_cfg(&f, cfg, ckpt, 11);
    StepOut out;
    run_step(&f, &out);
    Model *m = &f.m;
    double *P = xmalloc(sizeof(double) * m->n_params), *img = xmalloc(sizeof(double) * B * 3 * 32 * 32);
    for (size_t i = 0; i < m->n_params; i++) P[i] = m->params[i];
    for (int i = 0; i < B * 3 * 32 * 32; i++) img[i] = f.img[i];
    Ref r = {.m = m, .P = P, .img = img, .lab = f.lab, .pair = f.pair, .uncertainty = true};
    double loss = ref_loss(&r);
    ck_assert_msg(fabs(out.loss - loss) < 1e-5 * fabs(loss), "loss %.8g vs reference %.8g", out.loss, loss);
    int Q = 1 + m->K, C = m->cfg.num_classes;
    for (int i = 0; i < B * Q; i++) ck_assert_int_eq(out.sel[i], r.sel[i]);
    for (int h = 0; h < 3; h++) {
        ck_assert_msg(fabs(out.ce[h] - r.ce[h]) < 1e-5 * fabs(r.ce[h]), "CE %d: %g vs %g", h, out.ce[h], r.ce[h]);
        char what[32];
        snprintf(what, sizeof what, "logits %d", h);
        double e = rel_err(out.logits[h], r.logits[h], (size_t)B * C, 1e-6);
        ck_assert_msg(e < 1e-5, "%s: relative error %g", what, e);
    }
    // Checkpointing's gradients equal these bit for bit (test_checkpointing_same_gradients), and
    // these meet the finite differences below: the ~2400 float64 forwards run once, not twice.
    if (ckpt) {
        free(P); free(img);
        fix_free(&f);
        return;
    }
    int saved_sel[B * 64];
    memcpy(saved_sel, r.sel, sizeof saved_sel);
    // Gradients: central differences on up to 6 entries per tensor (all of loss_w).
    Rng pick;
    rng_init(&pick, 5, 0, 0, RNG_TEST);
    double worst = 0;
    const char *worst_name = "";
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const ParamTensor *t = &m->tensors[ti];
        int n = t->numel < (size_t)per_tensor ? (int)t->numel : per_tensor;
        double num[6];
        float ana[6];
        for (int k = 0; k < n; k++) {
            size_t e = t->numel <= (size_t)per_tensor ? (size_t)k : rng_below(&pick, (uint32_t)t->numel);
            size_t i = t->offset + e;
            double h = 1e-5 * fmax(1.0, fabs(P[i])), p0 = P[i];
            P[i] = p0 + h;
            double lp = ref_loss(&r);
            ck_assert_int_eq(memcmp(saved_sel, r.sel, sizeof saved_sel), 0);   // no selection flip
            P[i] = p0 - h;
            double lm = ref_loss(&r);
            P[i] = p0;
            num[k] = (lp - lm) / (2 * h);
            ana[k] = m->grads[i];
        }
        double e = rel_err(ana, num, (size_t)n, 1e-4);
        if (e > worst) { worst = e; worst_name = t->name; }
        ck_assert_msg(e < 1e-3, "grad.%s (ckpt=%d): relative error %.3g (analytic %g vs numeric %g)", t->name, ckpt, e,
                      ana[0], num[0]);
    }
    fprintf(stderr, "gradcheck_model ckpt=%d T=%d: worst relative error %.3g (%s)\n", ckpt, pwca_blocks, worst,
            worst_name);
    free(P); free(img);
    fix_free(&f);
}

// Under the sanitizers (CI's second stage) the model's forward and backward run as
// everywhere; the float64 finite differences, checked in full by the plain build, take one
// entry a tensor there: they are the test's own loops and most of its time.
#if defined(__SANITIZE_ADDRESS__)
enum { FD_PER_TENSOR = 1 };
#else
enum { FD_PER_TENSOR = 6 };
#endif
static void check_against_reference(bool ckpt) {
    check_against_reference_on(ckpt, tiny().pwca_blocks, FD_PER_TENSOR);
}

START_TEST(test_model_vs_reference) { check_against_reference(false); }
END_TEST
START_TEST(test_model_vs_reference_ckpt) { check_against_reference(true); }
END_TEST
// T = 1 < L: PWCA's only block is its CLS tail, reading z⁰ = x⁰ and SA layer 0's keys and
// values, while SA's tail is layer L-1 (model_block.c); one entry a tensor keeps it short
// (the sanitizer build runs it too).
START_TEST(test_model_vs_reference_short_pwca) { check_against_reference_on(false, 1, 1); }
END_TEST

// Every layer checkpointed (ckpt_layers 0), and only the lowest 1 or 2 of the 3
// (train.checkpoint_layers): the same loss and gradient bits as keeping everything, and
// the planned activations fall as more layers are recomputed.
START_TEST(test_checkpointing_same_gradients) {
    Fix a;
    fix_init(&a, false, 3);
    StepOut oa;
    run_step(&a, &oa);
    int L = a.m.cfg.depth;
    MemPlan prev;
    model_plan(&a.m.cfg, B, false, true, &prev);
    for (int k = 1; k <= L; k++) {
        Fix b;
        fix_init_with(&b, true, 3, false, k == L ? 0 : k);
        ck_assert_int_eq(b.m.n_ckpt, k);
        StepOut ob;
        run_step(&b, &ob);
        ck_assert_float_eq(oa.loss, ob.loss);
        // Recomputation repeats the same float operations in the same order: identical bits.
        ck_assert_msg(!memcmp(a.m.grads, b.m.grads, a.m.n_params * sizeof(float)), "%d of %d layers checkpointed: "
                      "gradients differ", k, L);
        MemPlan p;
        model_plan(&b.m.cfg, B, true, true, &p);
        ck_assert_msg(p.activations + p.workspace < prev.activations + prev.workspace,
                      "%d layers checkpointed: %zu bytes, not below %zu", k, p.activations + p.workspace,
                      prev.activations + prev.workspace);
        prev = p;
        fix_free(&b);
    }
    fix_free(&a);
}
END_TEST

// cfg.recompute_h and cfg.recompute_att (the CPU's defaults in a run): blocks keeping their
// activations keep no h and/or no attention output, and backward makes them again (the
// projection from x and the attention output; the attention forward from the kept q, k, v):
// the same loss and gradient bits as keeping them, each alone and both, with and without
// checkpointing, and B·N·D floats a block less for each (one shared buffer holds the current).
static size_t al256(size_t b) { return (b + 255) & ~(size_t)255; }
START_TEST(test_recompute_h_att_same_bits) {
    for (int ckpt = 0; ckpt < 2; ckpt++) {
        for (int mode = 1; mode < 4; mode++) {   // bit 0: h, bit 1: attention output
            Fix a, b;
            fix_init(&a, ckpt, 9);
            ModelConfig cfg = tiny();
            cfg.recompute_h = mode & 1;
            cfg.recompute_att = mode & 2;
            fix_init_cfg(&b, cfg, ckpt, 9);   // the same seed: the same weights and batch
            StepOut oa, ob;
            run_step(&a, &oa);
            run_step(&b, &ob);
            ck_assert_float_eq(oa.loss, ob.loss);
            ck_assert_msg(!memcmp(a.m.grads, b.m.grads, a.m.n_params * sizeof(float)),
                          "ckpt %d, recompute h %d att %d: gradients differ", ckpt, mode & 1, mode >> 1);
            MemPlan pa, pb;
            model_plan(&a.m.cfg, B, ckpt, true, &pa);
            model_plan(&b.m.cfg, B, ckpt, true, &pb);
            // The CLS tail (the last SA and the last PWCA block) keeps its B-row h and att anyway.
            size_t rowsD = al256((size_t)B * a.m.N * cfg.dim * sizeof(float)),
                   blocks = cfg.depth + cfg.pwca_blocks - 2;
            // Without checkpointing every other SA and PWCA block drops its own and a shared buffer
            // holds one (the attention's also its statistics); with it, no change.
            size_t saved = 0;
            if (!ckpt && (mode & 1)) saved += (blocks - 1) * rowsD;
            if (!ckpt && (mode & 2)) saved += (blocks - 1) * rowsD - al256((size_t)B * cfg.heads * a.m.N * sizeof(float));
            ck_assert_uint_eq(pa.activations + pa.workspace - (pb.activations + pb.workspace), saved);
            fix_free(&a);
            fix_free(&b);
        }
    }
}
END_TEST

// What backward hands over group by group (model.h grad_ready), copied to the params' layout.
typedef struct {
    const Model *m;
    float *full;               // [n_params]
    int order[64], n;
} Collect;
static void collect(void *ctx, int g) {
    Collect *c = ctx;
    const ParamGroup *p = &c->m->groups[g];
    ck_assert_int_lt(c->n, 64);
    memcpy(c->full + p->offset, c->m->grads + p->goffset, p->numel * sizeof(float));
    c->order[c->n++] = g;
}

// train.update_in_backward's layout: every block's gradient in one slot, so backward must
// hand each group over once, each block as its own backward ends (GLCA's top block first,
// then SA from the top layer), and what it hands over equals the whole gradient's bits —
// with and without checkpointing (of every layer or some). A slot not zeroed between blocks, or a group handed
// over before its last contribution (PWCA's share of a layer), fails the memcmp.
START_TEST(test_grads_per_block_same_bits) {
    for (int mode = 0; mode < 3; mode++) {   // no checkpointing, every layer, the lowest layer only
        bool ckpt = mode > 0;
        Fix a, b;
        fix_init_with(&a, ckpt, 5, false, mode == 2);
        fix_init_with(&b, ckpt, 5, true, mode == 2);
        const Model *m = &b.m;
        int L = m->cfg.depth, M = m->cfg.glca_blocks;
        size_t blk = m->groups[model_sa_group(0)].numel;
        ck_assert_uint_eq(m->n_grads, m->n_params - (size_t)(L + M - 1) * blk);
        MemPlan pa, pb;
        model_plan(&a.m.cfg, B, ckpt, true, &pa);
        model_plan(&m->cfg, B, ckpt, true, &pb);
        ck_assert_uint_eq(pb.grads, m->n_grads * sizeof(float));
        ck_assert_uint_eq(pa.grads - pb.grads, (size_t)(L + M - 1) * blk * sizeof(float));
        Collect c = {.m = m, .full = xcalloc(m->n_params, sizeof(float))};
        b.m.grad_ready = collect;
        b.m.grad_ctx = &c;
        StepOut oa, ob;
        run_step(&a, &oa);
        run_step(&b, &ob);
        ck_assert_float_eq(oa.loss, ob.loss);
        ck_assert_int_eq(c.n, m->n_groups);
        int k = 0;
        for (int j = M - 1; j >= 0; j--) ck_assert_int_eq(c.order[k++], model_glca_group(m, j));
        for (int l = L - 1; l >= 0; l--) ck_assert_int_eq(c.order[k++], model_sa_group(l));
        for (int g = 0; g < m->n_groups; g++)
            if (!m->groups[g].block) ck_assert_int_eq(c.order[k++], g);
        for (size_t i = 0; i < m->n_params; i++)
            ck_assert_msg(!memcmp(&a.m.grads[i], &c.full[i], sizeof(float)), "mode %d: gradient float %zu: %a vs %a",
                          mode, i, a.m.grads[i], c.full[i]);
        free(c.full);
        fix_free(&a);
        fix_free(&b);
    }
}
END_TEST

START_TEST(test_glca_cls_row_equals_sa) {
    // GLCA's weights start as a copy of SA block L−M+1 (MODEL.md §2). Its CLS query
    // attends to all N tokens of that block's input, exactly as SA's CLS row does.
    Fix f;
    ModelConfig cfg = tiny();
    ck_assert(model_build(&f.m, &cfg, &backend_cpu));
    model_init_weights(&f.m, 9);
    ck_assert(model_alloc_activations(&f.m, B, false, true));
    f.img = xmalloc(sizeof(float) * B * 3 * 32 * 32);
    Rng r;
    rng_init(&r, 9, 0, 0, RNG_TEST);
    for (int i = 0; i < B * 3 * 32 * 32; i++) f.img[i] = rng_normal(&r);
    int lab[B] = {0, 1, 2, 3}, pair[B] = {1, 0, 3, 2};
    Batch bt = {.B = B, .images = f.img, .labels = lab, .pair = pair};
    StepOut out;
    model_forward_train(&f.m, &bt, &out);
    int L = cfg.depth, M = cfg.glca_blocks, D = cfg.dim, N = f.m.N, Q = 1 + f.m.K;
    const float *sa_att = (const float *)f.m.acts->sa[L - M].att, *gl_att = (const float *)f.m.acts->gl[0].att;   // CPU: Act = fp32
    // SA block L−M's attention output: every row, or, for the last block (the CLS tail), the CLS rows only.
    size_t sa_stride = L - M == L - 1 ? (size_t)D : (size_t)N * D;
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++)
            ck_assert_float_eq_tol(gl_att[(size_t)b * Q * D + d], sa_att[(size_t)b * sa_stride + d], 1e-6f);
    free(f.img);
    model_free(&f.m);
}
END_TEST

START_TEST(test_infer_matches_train_logits) {
    Fix f;
    fix_init(&f, true, 21);
    StepOut out;
    run_step(&f, &out);
    int C = f.m.cfg.num_classes, Q = 1 + f.m.K;
    float *ls = xmalloc(sizeof(float) * B * C), *lg = xmalloc(sizeof(float) * B * C);
    int *sel = xmalloc(sizeof(int) * B * Q);
    model_forward_infer(&f.m, f.img, B, ls, lg, sel);
    for (int i = 0; i < B * C; i++) {
        ck_assert_float_eq(ls[i], out.logits[0][i]);
        ck_assert_float_eq(lg[i], out.logits[1][i]);
    }
    for (int i = 0; i < B * Q; i++) ck_assert_int_eq(sel[i], out.sel[i]);
    free(ls); free(lg); free(sel);
    fix_free(&f);
}
END_TEST

START_TEST(test_uncertainty_off_is_plain_sum) {
    Fix f;
    fix_init(&f, false, 4);
    f.m.uncertainty_weighting = false;
    StepOut out;
    run_step(&f, &out);
    ck_assert_float_eq_tol(out.loss, out.ce[0] + out.ce[1] + out.ce[2], 1e-6f);
    const ParamTensor *w = model_find(&f.m, "loss_w");
    for (int i = 0; i < 3; i++) ck_assert_float_eq(f.m.grads[w->offset + i], 0.0f);
    fix_free(&f);
}
END_TEST

START_TEST(test_backward_storage_linear_in_N) {
    // Stored activations (what backward needs) grow linearly in N: equal steps in
    // N give equal steps in bytes (up to 256-byte alignment per buffer).
    ModelConfig cfg = tiny();
    size_t a[3];
    int sizes[3] = {64, 128, 192};   // N − 1 = 64, 256, 576: use patch 8, compare per-token
    long tokens[3];
    for (int i = 0; i < 3; i++) {
        cfg.img_size = sizes[i];
        MemPlan p;
        model_plan(&cfg, B, false, true, &p);
        a[i] = p.activations;
        tokens[i] = config_tokens(&cfg);
    }
    double per1 = (double)(a[1] - a[0]) / (tokens[1] - tokens[0]);
    double per2 = (double)(a[2] - a[1]) / (tokens[2] - tokens[1]);
    ck_assert_msg(fabs(per1 - per2) < 0.01 * per1, "bytes per token %g vs %g: not linear", per1, per2);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gradcheck_model");
    // Two cases, so that ctest runs them as two tests side by side (CMakeLists.txt: CK_RUN_CASE):
    // the float64 reference's finite differences are most of the time, under the sanitizers too.
    TCase *ref = tcase_create("reference");
    tcase_set_timeout(ref, 300);
    tcase_add_test(ref, test_model_vs_reference);
    tcase_add_test(ref, test_model_vs_reference_ckpt);
    tcase_add_test(ref, test_model_vs_reference_short_pwca);
    suite_add_tcase(s, ref);
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_checkpointing_same_gradients);
    tcase_add_test(tc, test_grads_per_block_same_bits);
    tcase_add_test(tc, test_recompute_h_att_same_bits);
    tcase_add_test(tc, test_glca_cls_row_equals_sa);
    tcase_add_test(tc, test_infer_matches_train_logits);
    tcase_add_test(tc, test_uncertainty_off_is_plain_sum);
    tcase_add_test(tc, test_backward_storage_linear_in_N);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
