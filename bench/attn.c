// attn.c: dcal's three attention calls timed alone, through the Backend table
// (backend.h attention_forward / attention_backward), on the DCAL shapes of
// ViT-B/16 at 448 px (issue 15; bench/README.md):
//   sa    Nq = N queries against N keys
//   glca  Nq = 1+K queries gathered by q_idx from the [B, N, 3D] qkv buffer, N keys
//   pwca  Nq = N queries against n1 = N own keys + n2 = N keys of another buffer
//         (the distractor's, batch element kv2_b[b] = (b+1) mod B), one softmax
// each forward alone and forward + backward, on any backend and precision; and
//   rollout  one rollout_step_attn through an SA layer (the selection's r ← r·(½S̄ + ½I),
//         probabilities recomputed from q, k and the saved lse; no gradient, so fwd only).
//
//   bench_attn [--backend cuda(default)|cpu|auto] [--precision P] [--attention dcal|cudnn] [--B 16] [--H 12] [--hd 64]
//              [--N 785] [--K 78] [--reps 20] [--warmup 3] [--cases sa,glca,pwca,rollout]
//              [--passes fwd,fwdbwd] [--step-ms MS]
//
// FLOPs (stated, not measured): forward 4·B·H·Nq·Nk·hd (QKᵀ and P·V); backward
// 2.5× forward as FlashAttention counts it (the recomputed QKᵀ, dV, dP, dQ, dK),
// so forward + backward = 3.5× forward. Softmax and exp are not counted. rollout:
// 2·B·H·N²·(hd + 1) (the recomputed QKᵀ, and r times the head's probabilities).
// Each repetition: sync, clock, the call(s), sync, clock: launches are included,
// which is what the "GLCA under 2% of the step, launch included" asks.
// Output: the backend's describe() line first, a human line per measurement and,
// after each, its machine line (keys stable; bench/ratio.py parses them):
//   attn: case=sa pass=fwd ms=… min_ms=… tflops=… gflop=… B=… H=… hd=… N=… Nq=… Nk=… reps=… prec=… backend=…
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "core/common.h"
#include "core/rng.h"

typedef struct {
    const char *backend, *precision, *attention, *cases, *passes;
    int B, H, hd, N, K, reps, warmup;
    double step_ms;
} Opts;

// Device buffers: qkv of the image and of the distractor (Act storage, backend.h: bf16 at
// precision bf16 on CUDA, as the model's qkv GEMM stores them), the outputs, their gradients (fp32).
typedef struct {
    Act *qkv, *qkv2;
    Act *out;   // the projection's input: an Act (bf16 at precision bf16)
    float *lse, *dout, *dqkv, *dqkv2, *r, *rtmp;
    int *q_idx, *kv2_b;
    size_t n_qkv, n_out, n_lse;
} Bufs;

static int parse_int(const char *opt, const char *s, int lo, int hi, int *v) {
    char *end;
    long x = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || x < lo || x > hi) {
        fprintf(stderr, "bench_attn: %s: '%s' is not an integer in %d..%d\n", opt, s, lo, hi);
        return 0;
    }
    *v = (int)x;
    return 1;
}

static int parse_opt(Opts *o, const char *k, const char *v) {
    if (!strcmp(k, "--backend")) o->backend = v;
    else if (!strcmp(k, "--precision")) o->precision = v;
    else if (!strcmp(k, "--attention")) o->attention = v;
    else if (!strcmp(k, "--cases")) o->cases = v;
    else if (!strcmp(k, "--passes")) o->passes = v;
    else if (!strcmp(k, "--step-ms")) {
        char *end;
        o->step_ms = strtod(v, &end);
        if (*end || !(o->step_ms > 0)) {
            fprintf(stderr, "bench_attn: --step-ms: '%s' is not a positive number of milliseconds\n", v);
            return 0;
        }
    } else if (!strcmp(k, "--B")) return parse_int(k, v, 1, 4096, &o->B);
    else if (!strcmp(k, "--H")) return parse_int(k, v, 1, 256, &o->H);
    else if (!strcmp(k, "--hd")) return parse_int(k, v, 1, 512, &o->hd);
    else if (!strcmp(k, "--N")) return parse_int(k, v, 2, 1 << 20, &o->N);
    else if (!strcmp(k, "--K")) return parse_int(k, v, 1, 1 << 20, &o->K);
    else if (!strcmp(k, "--reps")) return parse_int(k, v, 1, 1000000, &o->reps);
    else if (!strcmp(k, "--warmup")) return parse_int(k, v, 0, 1000000, &o->warmup);
    else {
        fprintf(stderr, "bench_attn: %s: unknown option (see bench/README.md)\n", k);
        return 0;
    }
    return 1;
}

// Every comma-separated word of list is one of the space-separated words of allowed.
static int valid_list(const char *opt, const char *list, const char *allowed) {
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ","), m;
        int ok = 0;
        for (const char *a = allowed; *a; a += m + (a[m] == ' ')) {
            m = strcspn(a, " ");
            ok |= m == n && !strncmp(a, p, n);
        }
        if (!ok || n == 0) {
            fprintf(stderr, "bench_attn: %s: '%.*s' is not one of %s (comma-separated)\n", opt, (int)n, p, allowed);
            return 0;
        }
        p += n + (p[n] == ',');
    }
    return 1;
}

static int parse_args(int argc, char **argv, Opts *o) {
    *o = (Opts){.backend = "cuda", .cases = "sa,glca,pwca,rollout", .passes = "fwd,fwdbwd", .B = 16, .H = 12, .hd = 64,
                .N = 785, .K = -1, .reps = 20, .warmup = 3};
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_attn: %s: missing value (see bench/README.md)\n", argv[i]);
            return 0;
        }
        if (!parse_opt(o, argv[i], argv[i + 1])) return 0;
        i++;
    }
    // GLCA's K as dcal's config_topk computes it for top_r = 0.1: floor(0.1·(N−1)), at least 1.
    if (o->K < 0) o->K = (int)floor(0.1 * (o->N - 1) + 1e-9) > 0 ? (int)floor(0.1 * (o->N - 1) + 1e-9) : 1;
    if (o->K > o->N - 1) {
        fprintf(stderr, "bench_attn: --K: %d selected tokens but only %d patch tokens (K must be < N)\n", o->K,
                o->N - 1);
        return 0;
    }
    return valid_list("--cases", o->cases, "sa glca pwca rollout") && valid_list("--passes", o->passes, "fwd fwdbwd");
}

// A comma-separated list holds the word w.
static int listed(const char *list, const char *w) {
    size_t n = strlen(w);
    for (const char *p = list; (p = strstr(p, w)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

static float *upload_normal(const Backend *be, size_t n, uint64_t index) {
    float *h = xmalloc(n * sizeof(float)), *d = be->alloc(n * sizeof(float));
    Rng r;
    rng_init(&r, 7, 0, index, RNG_TEST);
    for (size_t i = 0; i < n; i++) h[i] = rng_normal(&r);
    be->to_device(d, h, n * sizeof(float));
    free(h);
    return d;
}

// The same normal draws stored as Act: converted on the device (rounded to bf16 at precision bf16).
static Act *upload_normal_act(const Backend *be, size_t n, uint64_t index) {
    float *f = upload_normal(be, n, index);
    Act *d = be->alloc(n * be->act_bytes());
    be->act_from_f32(d, f, n);
    be->sync();
    be->free(f);
    return d;
}

// q_idx: per batch element the CLS token then K distinct patch tokens, ascending
// (what topk_select writes), drawn at random; kv2_b: the pairing b → b+1.
static void upload_indices(const Backend *be, const Opts *o, Bufs *x) {
    int Nq = 1 + o->K, *idx = xmalloc(sizeof(int) * o->B * Nq), *perm = xmalloc(sizeof(int) * o->N);
    int *pair = xmalloc(sizeof(int) * o->B);
    Rng r;
    rng_init(&r, 7, 0, 99, RNG_TEST);
    for (int b = 0; b < o->B; b++) {
        for (int t = 0; t < o->N; t++) perm[t] = 0;
        for (int j = 0; j < o->K; j++) {   // K distinct tokens of 1..N-1
            int t;
            do t = 1 + (int)rng_below(&r, (uint32_t)(o->N - 1)); while (perm[t]);
            perm[t] = 1;
        }
        int *row = idx + (size_t)b * Nq, n = 0;
        row[n++] = 0;
        for (int t = 1; t < o->N; t++)
            if (perm[t]) row[n++] = t;
        pair[b] = (b + 1) % o->B;
    }
    x->q_idx = be->alloc(sizeof(int) * o->B * Nq);
    x->kv2_b = be->alloc(sizeof(int) * o->B);
    be->to_device(x->q_idx, idx, sizeof(int) * o->B * Nq);
    be->to_device(x->kv2_b, pair, sizeof(int) * o->B);
    free(idx), free(perm), free(pair);
}

static void alloc_bufs(const Backend *be, const Opts *o, Bufs *x) {
    size_t D = (size_t)o->H * o->hd;
    x->n_qkv = (size_t)o->B * o->N * 3 * D;
    x->n_out = (size_t)o->B * o->N * D;
    x->n_lse = (size_t)o->B * o->H * o->N;
    x->qkv = upload_normal_act(be, x->n_qkv, 1);
    x->qkv2 = upload_normal_act(be, x->n_qkv, 2);
    x->dout = upload_normal(be, x->n_out, 3);
    x->out = be->alloc(x->n_out * sizeof(float));
    x->lse = be->alloc(x->n_lse * sizeof(float));
    x->dqkv = be->alloc(x->n_qkv * sizeof(float));
    x->dqkv2 = be->alloc(x->n_qkv * sizeof(float));
    x->r = be->alloc((size_t)o->B * o->N * sizeof(float));
    x->rtmp = be->alloc((size_t)o->B * o->N * sizeof(float));
    upload_indices(be, o, x);
}

static void free_bufs(const Backend *be, Bufs *x) {
    void *f[] = {x->qkv, x->qkv2, x->out, x->lse, x->dout, x->dqkv, x->dqkv2, x->r, x->rtmp};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) be->free(f[i]);
    be->free(x->q_idx), be->free(x->kv2_b);
}

// The AttnArgs of one case over the [B, N, 3D] buffers, as model_block.c builds them.
static AttnArgs case_args(const Backend *be, const char *c, const Opts *o, const Bufs *x, AttnGrads *g) {
    int D = o->H * o->hd;
    long bs = (long)o->N * 3 * D, ts = 3 * D;
    size_t eb = be->act_bytes();   // strides are in elements; act_at offsets by bytes
    AttnArgs a = {.B = o->B, .H = o->H, .hd = o->hd, .Nq = o->N, .q = x->qkv, .q_bstride = bs, .q_tstride = ts,
                  .k1 = act_at(x->qkv, D, eb), .v1 = act_at(x->qkv, 2 * D, eb), .n1 = o->N, .kv1_bstride = bs,
                  .kv1_tstride = ts,
                  .scale = 1.0f / sqrtf((float)o->hd)};
    *g = (AttnGrads){.dq = x->dqkv, .dk1 = x->dqkv + D, .dv1 = x->dqkv + 2 * D};
    if (!strcmp(c, "glca")) a.Nq = 1 + o->K, a.q_idx = x->q_idx;
    if (!strcmp(c, "pwca")) {
        a.k2 = act_at(x->qkv2, D, eb), a.v2 = act_at(x->qkv2, 2 * D, eb), a.n2 = o->N, a.kv2_bstride = bs, a.kv2_tstride = ts;
        a.kv2_b = x->kv2_b;
        g->dk2 = x->dqkv2 + D, g->dv2 = x->dqkv2 + 2 * D;
    }
    return a;
}

// Fills a device buffer with NaN, so that the check after the runs proves every element written.
static void poison(const Backend *be, float *d, size_t n) {
    float *h = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    be->to_device(d, h, n * sizeof(float));
    free(h);
}

static void poison_act(const Backend *be, Act *d, size_t n) {
    float *f = be->alloc(n * sizeof(float));
    poison(be, f, n);
    be->act_from_f32(d, f, n);
    be->free(f);
}

// Number of non-finite values among the first n of d.
static size_t count_bad(const Backend *be, const float *d, size_t n) {
    float *h = xmalloc(n * sizeof(float));
    be->to_host(h, d, n * sizeof(float));
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += !isfinite(h[i]);
    free(h);
    return bad;
}
static size_t count_bad_act(const Backend *be, const Act *d, size_t n) {
    float *f = be->alloc(n * sizeof(float));
    be->act_to_f32(f, d, n);
    size_t bad = count_bad(be, f, n);
    be->free(f);
    return bad;
}

static double run_once(const Backend *be, const AttnArgs *a, const AttnGrads *g, const Bufs *x, int bwd) {
    be->sync();
    double t0 = now_seconds();
    be->attention_forward(a, x->out, x->lse);
    if (bwd) be->attention_backward(a, g, x->out, x->lse, x->dout);
    be->sync();
    return now_seconds() - t0;
}

// One rollout step from r = 1/N (a distribution stays one: the rows of ½S̄ + ½I sum to 1).
static double rollout_once(const Backend *be, const Opts *o, const AttnArgs *a, const Bufs *x) {
    size_t n = (size_t)o->B * o->N;
    float *h = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = 1.0f / o->N;
    be->to_device(x->r, h, n * sizeof(float));
    free(h);
    be->sync();
    double t0 = now_seconds();
    be->rollout_step_attn(a, x->lse, x->r, x->rtmp);
    be->sync();
    return now_seconds() - t0;
}

static int cmp_double(const void *p, const void *q) {
    double a = *(const double *)p, b = *(const double *)q;
    return (a > b) - (a < b);
}

typedef struct {
    double med, min;   // seconds
    size_t bad;        // non-finite outputs (out, lse, and the gradients after backward)
} Result;

static Result measure(const Backend *be, const Opts *o, const AttnArgs *a, const AttnGrads *g, const Bufs *x,
                      int bwd, int rollout) {
    size_t D = (size_t)o->H * o->hd, n_out = (size_t)o->B * a->Nq * D, n_lse = (size_t)o->B * o->H * a->Nq;
    poison_act(be, x->out, n_out);
    poison(be, x->lse, n_lse);
    be->zero(x->dqkv, x->n_qkv * sizeof(float));
    be->zero(x->dqkv2, x->n_qkv * sizeof(float));
    if (rollout) be->attention_forward(a, x->out, x->lse);   // the SA layer's lse, which the rollout reads
    for (int i = 0; i < o->warmup; i++) rollout ? rollout_once(be, o, a, x) : run_once(be, a, g, x, bwd);
    double *t = xmalloc(sizeof(double) * o->reps);
    for (int i = 0; i < o->reps; i++) t[i] = rollout ? rollout_once(be, o, a, x) : run_once(be, a, g, x, bwd);
    qsort(t, o->reps, sizeof *t, cmp_double);
    Result r = {.med = o->reps % 2 ? t[o->reps / 2] : 0.5 * (t[o->reps / 2 - 1] + t[o->reps / 2]), .min = t[0]};
    free(t);
    r.bad = count_bad_act(be, x->out, n_out) + count_bad(be, x->lse, n_lse);
    if (rollout) r.bad += count_bad(be, x->r, (size_t)o->B * o->N);
    if (bwd) r.bad += count_bad(be, x->dqkv, x->n_qkv) + count_bad(be, x->dqkv2, x->n_qkv);
    return r;
}

static void report(const char *c, int bwd, const Opts *o, const AttnArgs *a, const Result *r, const char *prec,
                   const char *backend) {
    int Nk = a->n1 + a->n2;
    double gflop = !strcmp(c, "rollout") ? 2.0 * o->B * o->H * a->Nq * Nk * (o->hd + 1.0) / 1e9
                                         : 4.0 * o->B * o->H * a->Nq * Nk * o->hd * (bwd ? 3.5 : 1.0) / 1e9;
    double tflops = gflop / r->med / 1e3;
    const char *pass = bwd ? "fwdbwd" : "fwd";
    printf("%s %s: median %.4g ms (min %.4g, %d reps after %d warm-up) %.4g TFLOP/s of %.4g GFLOP\n", c, pass,
           r->med * 1e3, r->min * 1e3, o->reps, o->warmup, tflops, gflop);
    char pct[64] = "";
    if (o->step_ms > 0 && bwd && !strcmp(c, "glca")) {
        snprintf(pct, sizeof pct, " step_pct=%.4g", 100 * r->med * 1e3 / o->step_ms);
        printf("glca forward+backward: %.4g%% of a %.4g ms step (issue 15: under 2%%)\n", 100 * r->med * 1e3 / o->step_ms,
               o->step_ms);
    }
    printf("attn: case=%s pass=%s ms=%.6g min_ms=%.6g tflops=%.6g gflop=%.6g B=%d H=%d hd=%d N=%d Nq=%d Nk=%d reps=%d "
           "prec=%s backend=%s attn=%s%s\n", c, pass, r->med * 1e3, r->min * 1e3, tflops, gflop, o->B, o->H, o->hd, o->N,
           a->Nq, Nk, o->reps, prec, backend, o->attention ? o->attention : "dcal", pct);
    fflush(stdout);
}

static const Backend *open_backend(const Opts *o, char *prec, size_t n) {
    const Backend *be = backend_get(o->backend);
    if (!be) return NULL;
    if (o->precision && !be->set_precision(o->precision)) {
        const char *note = be->precision_note ? be->precision_note() : NULL;
        fprintf(stderr, "bench_attn: --precision: backend %s has no precision '%s' (supported here: %s)%s%s\n",
                be->name, o->precision, be->precisions, note ? ": " : "", note ? note : "");
        return NULL;
    }
    // train.attention's choice (dcal's kernels, or cuDNN's fused SDPA on CUDA): one error line if refused.
    if (o->attention && !backend_set_attention(be, o->attention)) return NULL;
    // The precision in force: the one asked for, else the backend's first (best).
    snprintf(prec, n, "%s", o->precision ? o->precision : be->precisions);
    prec[strcspn(prec, " ")] = '\0';
    char desc[512];
    be->describe(desc, sizeof desc);
    printf("%s\n", desc);
    return be;
}

int main(int argc, char **argv) {
    Opts o;
    if (!parse_args(argc, argv, &o)) return 2;
    char prec[32];
    const Backend *be = open_backend(&o, prec, sizeof prec);
    if (!be) return 1;
    Bufs x;
    alloc_bufs(be, &o, &x);
    const char *cases[] = {"sa", "glca", "pwca", "rollout"};
    int bad = 0, ran = 0;
    for (int c = 0; c < 4; c++) {
        if (!listed(o.cases, cases[c])) continue;
        AttnGrads g;
        AttnArgs a = case_args(be, cases[c], &o, &x, &g);
        int rollout = c == 3;
        for (int bwd = 0; bwd < 2 - rollout; bwd++) {   // the rollout has no backward
            if (!listed(o.passes, bwd ? "fwdbwd" : "fwd")) continue;
            Result r = measure(be, &o, &a, &g, &x, bwd, rollout);
            report(cases[c], bwd, &o, &a, &r, prec, be->name);
            ran++;
            if (r.bad) fprintf(stderr, "bench_attn: %s %s: %zu outputs not finite (unwritten or overflowed)\n",
                               cases[c], bwd ? "fwdbwd" : "fwd", r.bad);
            bad += r.bad != 0;
        }
    }
    free_bufs(be, &x);
    if (!ran) fprintf(stderr, "bench_attn: nothing ran (the rollout case has only the fwd pass)\n");
    return bad || !ran ? 1 : 0;
}
