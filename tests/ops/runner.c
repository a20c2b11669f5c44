// runner.c: runs one Row of the op table against the float64 reference and
// against every backend present (the way ggml's test-backend-ops does).
//
// Per row: init builds deterministic host inputs; the float64 reference gives
// the forward outputs and, from its analytic gradient, the input gradients;
// that analytic gradient is itself checked against float64 central finite
// differences. Then per backend (a "column"):
//   fwd   outputs start as NaN (an unwritten element never passes), compared
//         with the reference; a second forward must give the same bits.
//   bwd   A: gradients from zero, compared with the reference;
//         B: from random start values s0 on one thread: (B − s0) compared, so
//            an op that overwrites instead of accumulating (+=) fails (B itself for a
//            gradient the op writes by contract, OpDef.overwrites, so one that adds fails);
//         C: B again on the default thread count: same bits as B (ARCHITECTURE.md §6);
//         D: with the op's optional gradients NULL (c->partial): the rest has
//            C's bits, the NULL'd views keep s0.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/common.h"
#include "ops.h"

#define FD_TOL 1e-6       // analytic vs central differences, both float64: truncation ~1e-9
#define FD_SAMPLES 48     // coordinates per tensor checked by finite differences (all if fewer)
#define ERR_FLOOR 1e-6    // relative errors divide by max(max|ref|, this), as the old gradcheck
#define START_SLACK 1e-7  // run B: fp32 rounding of s0 + g with |s0| ≤ max|g|/2 is ≤ 9e-8 of max|g|
#ifndef OPS_MAX_SIZE
#define OPS_MAX_SIZE BIG  // the largest row size run; tools/cudasim builds the suite with MEDIUM
#endif

void *tz(size_t n, size_t elem) { return xcalloc(n ? n : 1, elem); }

void tensor_set(Tensor *t, const char *name, size_t n, int type, int diff) {
    t->name = name, t->n = n, t->type = type, t->diff = diff;
}

float *fill_normal(Tensor *t, Rng *r, float scale) {
    float *h = tz(t->n, sizeof(float));
    for (size_t i = 0; i < t->n; i++) h[i] = scale * rng_normal(r);
    return t->h = h;
}

int *fill_int(Tensor *t) { return t->h = tz(t->n, sizeof(int)); }

float *make_gy(OpCase *c, int j, Rng *r, float scale) {
    float *g = tz(c->y[j].n, sizeof(float));
    for (size_t i = 0; i < c->y[j].n; i++) g[i] = scale * rng_normal(r);
    return c->gy[j] = g;
}

double ref_softmax_lse(double *s, int n) {
    double m = -INFINITY, l = 0;
    for (int j = 0; j < n; j++) m = fmax(m, s[j]);
    for (int j = 0; j < n; j++) l += (s[j] = exp(s[j] - m));
    for (int j = 0; j < n; j++) s[j] /= l;
    return m + log(l);
}

static size_t tsize(int type) { return type == T_F64 ? 8 : 4; }
// Bytes of one element of a tensor on backend be (Act storage follows its precision).
static size_t bsize(const Backend *be, int type) { return type == T_ACT ? be->act_bytes() : tsize(type); }

static double rel_err_d(const double *a, const double *b, size_t n) {
    double md = 0, mr = ERR_FLOOR;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;   // NaN never passes
        md = fmax(md, fabs(a[i] - b[i]));
        mr = fmax(mr, fabs(b[i]));
    }
    return md / mr;
}

// Backend memory → host doubles, by element type (Act storage through act_to_f32).
static double *down(const Backend *be, const void *d, size_t n, int type) {
    void *h = tz(n, tsize(type));
    double *o = tz(n, sizeof(double));
    if (type == T_ACT) {
        float *f = be->alloc(n ? n * sizeof(float) : 4);
        be->act_to_f32(f, d, n);
        be->to_host(h, f, n * sizeof(float));
        be->free(f);
    } else {
        be->to_host(h, d, n * tsize(type));
    }
    for (size_t i = 0; i < n; i++)
        o[i] = type == T_F64 ? ((double *)h)[i] : type == T_I32 ? ((int *)h)[i] : ((float *)h)[i];
    free(h);
    return o;
}

static void *up(const Backend *be, const void *h, size_t bytes) {
    void *d = be->alloc(bytes ? bytes : 4);
    if (bytes) be->to_device(d, h, bytes);
    return d;
}

// A tensor's host values onto backend be in its element type (T_ACT: rounded by act_from_f32).
static void *up_tensor(const Backend *be, const Tensor *t, const void *h) {
    if (t->type != T_ACT) return up(be, h, t->n * tsize(t->type));
    float *f = up(be, h, t->n * sizeof(float));
    void *d = be->alloc(t->n ? t->n * be->act_bytes() : 4);
    be->act_from_f32(d, f, t->n);
    be->free(f);
    return d;
}

static int same_bits(const Backend *be, const void *d1, const void *d2, size_t bytes) {
    void *a = tz(bytes, 1), *b = tz(bytes, 1);
    be->to_host(a, d1, bytes), be->to_host(b, d2, bytes);
    int ok = memcmp(a, b, bytes) == 0;
    free(a), free(b);
    return ok;
}

// ---- the float64 reference ------------------------------------------------------

typedef struct {
    double *x[MAXT], *y[MAXT], *gy[MAXT], *gx[MAXT];
} Ref;

static void ref_alloc(const OpCase *c, Ref *R) {
    memset(R, 0, sizeof *R);
    for (int i = 0; i < c->nx; i++) {
        const Tensor *t = &c->x[i];
        if (!t->n || t->type == T_I32) continue;
        R->x[i] = tz(t->n, sizeof(double));
        for (size_t k = 0; k < t->n; k++) R->x[i][k] = ((float *)t->h)[k];
        if (t->diff) R->gx[i] = tz(t->n, sizeof(double));
    }
    for (int j = 0; j < c->ny; j++) {
        R->y[j] = tz(c->y[j].n, sizeof(double));
        if (c->y[j].diff) {
            R->gy[j] = tz(c->y[j].n, sizeof(double));
            for (size_t k = 0; k < c->y[j].n; k++) R->gy[j][k] = c->gy[j][k];
        }
    }
}

static void ref_free(Ref *R) {
    for (int i = 0; i < MAXT; i++) free(R->x[i]), free(R->y[i]), free(R->gy[i]), free(R->gx[i]);
}

// Σ_j gy[j]·y[j] of the reference forward at inputs x.
static double ref_objective(const OpCase *c, const Ref *R, double *const *x) {
    double *y[MAXT] = {0}, s = 0;
    for (int j = 0; j < c->ny; j++) y[j] = tz(c->y[j].n, sizeof(double));
    c->row->op->ref_fwd(c, x, y);
    for (int j = 0; j < c->ny; j++) {
        if (R->gy[j])
            for (size_t k = 0; k < c->y[j].n; k++) s += R->gy[j][k] * y[j][k];
        free(y[j]);
    }
    return s;
}

// The analytic reference gradient against central differences, on up to
// FD_SAMPLES coordinates per input spread over the tensor. Returns the worst error.
static double ref_fd_check(const OpCase *c, const Ref *R) {
    double worst = 0;
    for (int i = 0; i < c->nx; i++) {
        if (!R->gx[i]) continue;
        size_t n = c->x[i].n, ns = n < FD_SAMPLES ? n : FD_SAMPLES;
        double *x[MAXT];
        memcpy(x, R->x, sizeof x);
        x[i] = tz(n, sizeof(double));
        memcpy(x[i], R->x[i], n * sizeof(double));
        double md = 0, mr = ERR_FLOOR;
        for (size_t k = 0; k < n; k++) mr = fmax(mr, fabs(R->gx[i][k]));
        for (size_t s = 0; s < ns; s++) {
            size_t k = ns == n ? s : (s * n) / ns + (s * 7) % (n / ns);   // spread, not only row starts
            double h = 1e-6 * fmax(1.0, fabs(R->x[i][k]));
            x[i][k] = R->x[i][k] + h;
            double fp = ref_objective(c, R, x);
            x[i][k] = R->x[i][k] - h;
            double fm = ref_objective(c, R, x);
            x[i][k] = R->x[i][k];
            md = fmax(md, fabs((fp - fm) / (2 * h) - R->gx[i][k]));
        }
        free(x[i]);
        worst = fmax(worst, md / mr);
    }
    return worst;
}

// ---- one backend column ---------------------------------------------------------

typedef struct {
    double err[2], tol[2], ratio[2];   // [fwd, bwd]: the worst tensor (largest err/tol)
    int fail;
    char why[256];                     // the first failure
} Report;

static void note(Report *rep, int bwd, const char *what, const char *tname, double err, double tol) {
    double ratio = err / fmax(tol, 1e-30);
    if (ratio >= rep->ratio[bwd]) rep->err[bwd] = err, rep->tol[bwd] = tol, rep->ratio[bwd] = ratio;
    if (!(err <= tol) && !rep->fail++)
        snprintf(rep->why, sizeof rep->why, "%s %s: err %.3g > tol %.3g", what, tname, err, tol);
}

static void flag(Report *rep, int ok, const char *what, const char *tname) {
    if (!ok && !rep->fail++) snprintf(rep->why, sizeof rep->why, "%s %s", what, tname);
}

static double tol_of(const Tensor *t, double tol) { return t->exact ? 0 : t->cap > 0 ? fmin(t->cap, tol) : tol; }

// Outputs start as NaN (ints as -1): an element the op forgets stays wrong.
static void *poisoned(const Backend *be, const Tensor *t) {
    size_t b = t->n * tsize(t->type);
    unsigned char *h = tz(b, 1);
    if (t->type == T_I32) memset(h, 0xff, b);
    else
        for (size_t k = 0; k < t->n; k++)
            t->type == T_F64 ? (void)(((double *)h)[k] = NAN) : (void)(((float *)h)[k] = NAN);
    void *d = up_tensor(be, t, h);
    free(h);
    return d;
}

static void check_forward(const Backend *be, const OpCase *c, const Ref *R, void *const *dx, void **dy, double tol,
                          Report *rep) {
    void *dy2[MAXT] = {0};
    for (int j = 0; j < c->ny; j++) dy[j] = poisoned(be, &c->y[j]), dy2[j] = poisoned(be, &c->y[j]);
    c->row->op->be_fwd(be, c, dx, dy);
    c->row->op->be_fwd(be, c, dx, dy2);
    be->sync();
    for (int j = 0; j < c->ny; j++) {
        const Tensor *t = &c->y[j];
        double *got = down(be, dy[j], t->n, t->type);
        // Index outputs (topk) must match exactly.
        note(rep, 0, "fwd", t->name, rel_err_d(got, R->y[j], t->n), t->type == T_I32 ? 0 : tol_of(t, tol));
        flag(rep, same_bits(be, dy[j], dy2[j], t->n * bsize(be, t->type)), "fwd not bitwise reproducible:", t->name);
        free(got);
        be->free(dy2[j]);
    }
}

// Gradients (runs A-D above). s0 per tensor: uniform in ±max|g_ref|/2.
typedef struct { float *s0[MAXT]; } Starts;

static void run_bwd(const Backend *be, const OpCase *c, void *const *dx, void *const *dy, float *const *dgy,
                    void *const *gx) {
    c->row->op->be_bwd(be, c, dx, dy, dgy, (float *const *)gx);
    be->sync();
}

static void grads_from(const Backend *be, const OpCase *c, const Starts *S, void **g) {
    for (int i = 0; i < MAXT; i++) g[i] = NULL;
    for (int i = 0; i < c->nx; i++)   // alloc is zero-filled (the contract run A relies on)
        if (c->x[i].n && c->x[i].diff) g[i] = S ? up(be, S->s0[i], c->x[i].n * 4) : be->alloc(c->x[i].n * 4);
}

static void free_grads(const Backend *be, void **g) {
    for (int i = 0; i < MAXT; i++)
        if (g[i]) be->free(g[i]), g[i] = NULL;
}

static void compare_grads(const Backend *be, const OpCase *c, const Ref *R, void *const *g, const Starts *S,
                          double tol, const char *run, Report *rep) {
    for (int i = 0; i < c->nx; i++) {
        if (!g[i]) continue;
        const Tensor *t = &c->x[i];
        double *got = down(be, g[i], t->n, T_F32);
        int from_s0 = S && !(c->row->op->overwrites && c->row->op->overwrites(c, i));
        if (from_s0)
            for (size_t k = 0; k < t->n; k++) got[k] -= S->s0[i][k];
        note(rep, 1, run, t->name, rel_err_d(got, R->gx[i], t->n), tol_of(t, tol) + (from_s0 ? START_SLACK : 0));
        free(got);
    }
}

static void check_partial(const Backend *be, const OpCase *c, void *const *dx, void *const *dy, float *const *dgy,
                          const Starts *S, void *const *gC, Report *rep) {
    void *gD[MAXT];
    grads_from(be, c, S, gD);
    ((OpCase *)c)->partial = 1;
    run_bwd(be, c, dx, dy, dgy, gD);
    ((OpCase *)c)->partial = 0;
    for (int i = 0; i < c->nx; i++) {
        if (!gD[i]) continue;
        size_t n = c->x[i].n;
        float *full = tz(n, 4), *got = tz(n, 4);
        be->to_host(full, gC[i], n * 4), be->to_host(got, gD[i], n * 4);
        int ok = 1;
        for (size_t k = 0; k < n && ok; k++) {
            const float *want = c->row->op->partial_keeps(c, i, k) ? &full[k] : &S->s0[i][k];
            ok = memcmp(&got[k], want, 4) == 0;
        }
        flag(rep, ok, "bwd with optional gradients NULL differs:", c->x[i].name);
        free(full), free(got);
    }
    free_grads(be, gD);
}

static void check_backward(const Backend *be, const OpCase *c, const Ref *R, const Starts *S, void *const *dx,
                           void *const *dy, double tol, Report *rep) {
    float *dgy[MAXT] = {0};
    for (int j = 0; j < c->ny; j++)
        if (c->gy[j]) dgy[j] = up(be, c->gy[j], c->y[j].n * 4);
    void *gA[MAXT], *gB[MAXT], *gC[MAXT];
    grads_from(be, c, NULL, gA);
    run_bwd(be, c, dx, dy, dgy, gA);
    compare_grads(be, c, R, gA, NULL, tol, "bwd", rep);
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    grads_from(be, c, S, gB);
    run_bwd(be, c, dx, dy, dgy, gB);
    omp_set_num_threads(threads);
    compare_grads(be, c, R, gB, S, tol, "bwd +=", rep);
    grads_from(be, c, S, gC);
    run_bwd(be, c, dx, dy, dgy, gC);
    for (int i = 0; i < c->nx; i++)
        if (gB[i]) flag(rep, same_bits(be, gB[i], gC[i], c->x[i].n * 4), "bwd differs from 1 to N threads:", c->x[i].name);
    if (c->row->op->partial_keeps) check_partial(be, c, dx, dy, dgy, S, gC, rep);
    free_grads(be, gA), free_grads(be, gB), free_grads(be, gC);
    for (int j = 0; j < c->ny; j++)
        if (dgy[j]) be->free(dgy[j]);
}

static Tol col_tol(const Row *row, int col) {
    Tol t = row->tol[col];
    if (col > COL_CUDA && t.fwd == 0 && t.bwd == 0) t = row->tol[COL_CUDA];
    return t;
}

static int run_column(const Backend *be, const char *label, int col, const OpCase *c, const Ref *R,
                      const Starts *S) {
    Tol tol = col_tol(c->row, col);
    Report rep = {0};
    void *dx[MAXT] = {0}, *dy[MAXT] = {0};
    for (int i = 0; i < c->nx; i++)
        if (c->x[i].n) dx[i] = up_tensor(be, &c->x[i], c->x[i].h);
    check_forward(be, c, R, dx, dy, tol.fwd, &rep);
    if (c->row->op->be_bwd) check_backward(be, c, R, S, dx, dy, tol.bwd, &rep);
    for (int i = 0; i < MAXT; i++) {
        if (dx[i]) be->free(dx[i]);
        if (dy[i]) be->free(dy[i]);
    }
    printf("  %-10s %-34s fwd %.2e (tol %.0e)", label, c->row->label, rep.err[0], rep.tol[0]);
    if (c->row->op->be_bwd) printf("  bwd %.2e (tol %.0e)", rep.err[1], rep.tol[1]);
    printf("  %s%s\n", rep.fail ? "FAIL: " : "OK", rep.fail ? rep.why : "");
    return rep.fail;
}

// ---- rows -----------------------------------------------------------------------

// The backends present: every compiled-in backend that is available here (the
// registry lists the device backends first, the CPU last; the CPU always is).
static int backends(const Backend **list) {
    static const Backend *present[8];
    static int n = -1;
    if (n < 0) {
        n = 0;
        for (int i = 0; i < backend_count() && n < 8; i++) {
            char why[256] = "";
            if (backend_at(i)->available(why, sizeof why)) {
                present[n++] = backend_at(i);
                // What runs (kernel choices included), so a log says which column was which.
                char d[1024];
                present[n - 1]->describe(d, sizeof d);
                printf("  (%s)\n", d);
            }
            else printf("  (%s backend not available here: %s; its columns are skipped)\n", backend_at(i)->name, why);
        }
    }
    for (int i = 0; i < n; i++) list[i] = present[i];
    return n;
}

// The tolerance column of backend be at precision p.
static int column_of(const Backend *be, const char *p) {
    if (!strcmp(be->name, "cpu")) return strcmp(p, "fp32") ? COL_CPU_BF16 : COL_CPU;
    return strcmp(p, "fp32") ? COL_CUDA : COL_CUDA_FP32;
}

// The columns of one backend: one per precision it supports here for ops whose numerics
// follow it (the CPU: fp32, and bf16 where offered), else its default's.
static int run_backend(const Backend *be, const OpCase *c, const Ref *R, const Starts *S) {
    int cpu = !strcmp(be->name, "cpu");
    if (!c->row->op->by_precision) return run_column(be, be->name, cpu ? COL_CPU : COL_CUDA, c, R, S);
    char def[16] = "", p[16], label[40];
    int f = 0, used;
    for (const char *w = be->precisions; sscanf(w, " %15s%n", p, &used) == 1; w += used) {
        if (!def[0]) snprintf(def, sizeof def, "%s", p);   // the first listed is the default
        if (!be->set_precision(p)) { printf("  %s: set_precision(%s) refused\n", be->name, p); return 1; }
        snprintf(label, sizeof label, "%s-%s", be->name, p);
        f |= run_column(be, cpu && !strcmp(p, "fp32") ? be->name : label, column_of(be, p), c, R, S);
    }
    be->set_precision(def);   // back to the backend's default for the next rows
    return f;
}

// The reference gradient against finite differences, and the start values s0.
static int ref_backward(const OpCase *c, Ref *R, Starts *S, Rng *r, int want_fd) {
    c->row->op->ref_bwd(c, R->x, R->gy, R->gx);
    // Device-sized rows skip finite differences: same reference code as the small rows.
    int fd = want_fd && c->row->size == SMALL;
    double e = fd ? ref_fd_check(c, R) : 0;
    int fail = !(e <= FD_TOL);
    printf("  %-10s %-34s grad vs central differences %.2e (tol %.0e)  %s\n", "ref-f64", c->row->label, e, FD_TOL,
           !fd ? "not run (shape not SMALL)" : fail ? "FAIL" : "OK");
    for (int i = 0; i < c->nx; i++) {
        if (!R->gx[i]) continue;
        double m = ERR_FLOOR;   // an all-zero gradient (a dropped sample) still gets a start value
        for (size_t k = 0; k < c->x[i].n; k++) m = fmax(m, fabs(R->gx[i][k]));
        S->s0[i] = tz(c->x[i].n, sizeof(float));
        for (size_t k = 0; k < c->x[i].n; k++) S->s0[i][k] = (float)((rng_uniform(r) - 0.5) * m);
    }
    return fail;
}

static void case_free(OpCase *c) {
    for (int i = 0; i < MAXT; i++) free(c->x[i].h), free(c->gy[i]);
}

// One row against the reference: on every backend present, or (cudnn_be) only cudnn_be's cuDNN column.
static int row_on(const Row *row, int row_index, const Backend *cudnn_be) {
    const Backend *be[8];
    int nb = backends(be);
    if (row->size == BIG && nb == 1) {
        printf("  %-10s %-34s skipped: device-sized shape, run only with a device backend\n", "-", row->label);
        return 0;
    }
    if (row->size > OPS_MAX_SIZE) {
        printf("  %-10s %-34s skipped: larger than this build's OPS_MAX_SIZE (the CUDA simulator runs smaller shapes)\n",
               "-", row->label);
        return 0;
    }
    OpCase c = {.row = row};
    Rng r;
    rng_init(&r, 1234, 0, (uint64_t)row_index, RNG_TEST);
    row->op->init(&c, &r);
    Ref R;
    ref_alloc(&c, &R);
    row->op->ref_fwd(&c, R.x, R.y);
    Starts S = {0};
    int fail = row->op->ref_bwd ? ref_backward(&c, &R, &S, &r, !cudnn_be) : 0;
    if (cudnn_be) fail |= run_column(cudnn_be, "cuda-cudnn", COL_CUDA_CUDNN, &c, &R, &S);
    for (int i = 0; !cudnn_be && i < nb; i++) fail |= run_backend(be[i], &c, &R, &S);
    ref_free(&R);
    case_free(&c);
    for (int i = 0; i < MAXT; i++) free(S.s0[i]);
    return fail;
}

int run_row(const Row *row, int row_index) { return row_on(row, row_index, NULL); }

// The cuDNN column (train.attention=cudnn) of an attention row, at the backend's default precision
// and the same inputs and reference as run_row's; skipped, saying why, where the backend refuses
// cuDNN (the simulator, no cuDNN) or the shape. A separate pass, after every run_row: a cuDNN
// failure exits the process (like any device error), and must not cost the other rows' results.
int run_row_cudnn(const Row *row, int row_index) {
    const Backend *be[8];
    int nb = backends(be), fail = 0;
    if (row->op != &OP_ATTENTION || nb == 1 || row->size > OPS_MAX_SIZE) return 0;
    OpCase probe = {.row = row};
    for (int i = 0; i < nb; i++) {
        if (!strcmp(be[i]->name, "cpu")) continue;
        char why[256] = "the backend has no set_attention";
        const char *shape = attention_cudnn_skip(&probe);
        if (shape) snprintf(why, sizeof why, "%s", shape);
        if (shape || !be[i]->set_attention || !be[i]->set_attention("cudnn", why, sizeof why)) {
            printf("  %-10s %-34s skipped: %s\n", "cuda-cudnn", row->label, why);
            continue;
        }
        fail |= row_on(row, row_index, be[i]);
        if (!be[i]->set_attention("dcal", why, sizeof why)) {
            printf("  %s: set_attention(dcal) refused: %s\n", be[i]->name, why);
            fail = 1;
        }
    }
    return fail;
}

double *ref_output(const Row *row, int j) {
    OpCase c = {.row = row};
    Rng r;
    rng_init(&r, 1234, 0, 0, RNG_TEST);
    row->op->init(&c, &r);
    Ref R;
    ref_alloc(&c, &R);
    row->op->ref_fwd(&c, R.x, R.y);
    double *y = R.y[j];
    R.y[j] = NULL;
    ref_free(&R);
    case_free(&c);
    return y;
}
