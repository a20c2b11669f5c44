// unit_adamw_multi.c: the one-call AdamW (backend.h adamw_multi, optimizer_adamw)
// against the per-tensor loop it replaced (adamw_update once per tensor, wd only
// where ParamTensor.decay says), BIT FOR BIT, on every backend present: a tiny
// model's real tensor table (mixed decay, odd sizes) over three steps, and a
// synthetic span table with gaps, whose floats must come back untouched. Also the
// span table itself: buffer order, disjoint, merged, each float with its tensor's
// decay. Built a second time as sim_adamw_multi (tools/cudasim), where the CUDA
// kernels run on the CPU and the cuda backend must be among those checked.
#include <math.h>
#include <string.h>
#include "core/common.h"
#include "core/rng.h"
#include "model/model.h"
#include "train/train.h"
#include "testutil.h"

enum { STEPS = 3 };
static const float LR = 1e-3f, B1 = 0.9f, B2 = 0.999f, EPS = 1e-8f, WD = 0.05f;

static ModelConfig tiny(void) {
    DcalConfig c;
    config_defaults(&c);
    ModelConfig m = c.model;
    strcpy(m.preset, "custom");
    m.img_size = 32; m.patch = 8; m.dim = 24; m.heads = 2; m.depth = 2; m.mlp_dim = 40;
    m.glca_blocks = 1; m.pwca_blocks = 2; m.top_r = 0.25; m.drop_path = 0; m.num_classes = 7;
    return m;
}

static float *randoms(size_t n, uint64_t index, float scale, int square) {
    float *h = xmalloc(n * sizeof(float));
    Rng r;
    rng_init(&r, 31, 0, index, RNG_TEST);
    for (size_t i = 0; i < n; i++) {
        h[i] = scale * rng_normal(&r);
        if (square) h[i] *= h[i];   // a second moment is never negative
    }
    return h;
}

// One AdamW state in backend memory: params, grads, m, v of n floats.
typedef struct { float *buf[4]; } State;

static void state_init(State *s, const Backend *be, size_t n) {
    for (int k = 0; k < 4; k++) {
        float *h = randoms(n, (uint64_t)k, k == 0 ? 1.f : .01f, k == 3);
        s->buf[k] = be->alloc(n * sizeof(float));
        be->to_device(s->buf[k], h, n * sizeof(float));
        free(h);
    }
}
static void state_grads(State *s, const Backend *be, size_t n, int step) {
    float *h = randoms(n, 100 + (uint64_t)step, .01f, 0);
    be->to_device(s->buf[1], h, n * sizeof(float));
    free(h);
}
static float *host(const Backend *be, const float *d, size_t n) {
    float *h = xmalloc(n * sizeof(float));
    be->to_host(h, d, n * sizeof(float));
    return h;
}
static void state_free(State *s, const Backend *be) {
    for (int k = 0; k < 4; k++) be->free(s->buf[k]);
}

// The first float where the two states differ (params, m or v), or -1.
static long first_diff(const Backend *be, const State *a, const State *b, size_t n, int *which) {
    static const int keep[3] = {0, 2, 3};
    for (int j = 0; j < 3; j++) {
        float *x = host(be, a->buf[keep[j]], n), *y = host(be, b->buf[keep[j]], n);
        long at = -1;
        for (size_t i = 0; i < n && at < 0; i++)
            if (memcmp(&x[i], &y[i], sizeof(float))) at = (long)i;
        free(x), free(y);
        if (at >= 0) { *which = keep[j]; return at; }
    }
    return -1;
}

static const char *tensor_at(const Model *m, size_t i) {
    for (int k = 0; k < m->n_tensors; k++)
        if (i >= m->tensors[k].offset && i < m->tensors[k].offset + m->tensors[k].numel) return m->tensors[k].name;
    return "(no tensor)";
}

static int backends_checked, cuda_checked;

static const Backend *usable(int i) {
    char why[256];
    const Backend *be = backend_at(i);
    if (!be->available(why, sizeof why)) {
        printf("%s: %s: skipped\n", be->name, why);
        return NULL;
    }
    return be;
}

// The model's table: the old per-tensor loop (state a) and optimizer_adamw (state b).
static void model_table_on(const Backend *be) {
    ModelConfig cfg = tiny();
    Model m;
    ck_assert(model_build(&m, &cfg, be));
    int n_decay = 0, n_odd = 0;
    for (int k = 0; k < m.n_tensors; k++) n_decay += m.tensors[k].decay, n_odd += m.tensors[k].numel % 2;
    ck_assert_msg(n_decay > 0 && n_decay < m.n_tensors && n_odd > 0, "the tiny table lacks mixed decay or odd sizes");
    AdamwGroups g;
    adamw_groups_make(&g, &m);
    OptimConfig o = {.beta1 = B1, .beta2 = B2, .eps = EPS, .weight_decay = WD};
    State a, b;
    state_init(&a, be, m.n_params), state_init(&b, be, m.n_params);
    float *own_params = m.params, *own_grads = m.grads;
    float *p0 = host(be, a.buf[0], m.n_params);
    for (int s = 0; s < STEPS; s++) {
        state_grads(&a, be, m.n_params, s), state_grads(&b, be, m.n_params, s);
        for (int k = 0; k < m.n_tensors; k++) {
            const ParamTensor *p = &m.tensors[k];
            be->adamw_update(a.buf[0] + p->offset, a.buf[1] + p->offset, a.buf[2] + p->offset, a.buf[3] + p->offset,
                             p->numel, LR, B1, B2, EPS, p->decay ? WD : 0.0f, s + 1);
        }
        m.params = b.buf[0], m.grads = b.buf[1];
        optimizer_adamw(&g, &m, b.buf[2], b.buf[3], &o, LR, s);
    }
    int which = 0;
    long at = first_diff(be, &a, &b, m.n_params, &which);
    ck_assert_msg(at < 0, "%s: adamw_multi differs from the per-tensor loop in buffer %d at float %ld (%s)", be->name,
                  which, at, tensor_at(&m, (size_t)at));
    float *p1 = host(be, b.buf[0], m.n_params);
    for (int k = 0; k < m.n_tensors; k++)   // not vacuous: every tensor moved
        ck_assert_msg(memcmp(p0 + m.tensors[k].offset, p1 + m.tensors[k].offset, m.tensors[k].numel * sizeof(float)),
                      "%s: tensor %s did not change", be->name, m.tensors[k].name);
    free(p0), free(p1);
    state_free(&a, be), state_free(&b, be);
    printf("%s: %d tensors in %d groups of %d spans, %zu floats, %d steps: adamw_multi == per-tensor loop, bit for "
           "bit\n", be->name, m.n_tensors, g.n_groups, g.first[g.n_groups - 1] + g.count[g.n_groups - 1], m.n_params,
           STEPS);
    adamw_groups_free(&g);
    m.params = own_params, m.grads = own_grads;
    model_free(&m);
}

START_TEST(test_model_table_bitwise) {
    for (int i = 0; i < backend_count(); i++) {
        const Backend *be = usable(i);
        if (!be) continue;
        model_table_on(be);
        backends_checked++;
        cuda_checked += !strcmp(be->name, "cuda");
    }
#ifdef ADAMW_MULTI_NEED_CUDA
    ck_assert_msg(cuda_checked, "the simulated cuda backend was not checked");
#endif
    ck_assert(backends_checked > 0);
}
END_TEST

// A synthetic table: spans of odd lengths with gaps, decay on/off and on twice in a
// row (not merged), against one adamw_update per span; gap floats keep their bits.
static int synthetic(AdamwSpan *sp, size_t n) {
    static const size_t len[] = {3, 1, 255, 2, 77, 1, 513, 9, 4, 31};
    int ns = 0;
    size_t at = 5;   // a gap at the start too
    for (int k = 0; at < n; k++) {
        size_t l = len[k % 10] < n - at ? len[k % 10] : n - at;
        if (k % 5 != 4) sp[ns++] = (AdamwSpan){.offset = at, .numel = l, .decay = k % 3 != 1};
        at += l;
    }
    if (ns && sp[ns - 1].offset + sp[ns - 1].numel == n && sp[ns - 1].numel > 2) sp[ns - 1].numel -= 2;   // and at the end
    return ns;
}

static void synthetic_on(const Backend *be) {
    enum { N = 4099 };
    AdamwSpan h[N];
    int ns = synthetic(h, N);
    AdamwSpan *d = be->alloc(sizeof h);
    be->to_device(d, h, (size_t)ns * sizeof *h);
    State a, b;
    state_init(&a, be, N), state_init(&b, be, N);
    float *p0 = host(be, a.buf[0], N);
    for (int s = 0; s < STEPS; s++) {
        state_grads(&a, be, N, s), state_grads(&b, be, N, s);
        for (int k = 0; k < ns; k++)
            be->adamw_update(a.buf[0] + h[k].offset, a.buf[1] + h[k].offset, a.buf[2] + h[k].offset,
                             a.buf[3] + h[k].offset, h[k].numel, LR, B1, B2, EPS, h[k].decay ? WD : 0.0f, 7 + s);
        be->adamw_multi(b.buf[0], b.buf[1], b.buf[2], b.buf[3], N, d, ns, LR, B1, B2, EPS, WD, 7 + s);
    }
    int which = 0;
    long at = first_diff(be, &a, &b, N, &which);
    ck_assert_msg(at < 0, "%s: adamw_multi differs from one adamw_update per span in buffer %d at float %ld", be->name,
                  which, at);
    float *p1 = host(be, b.buf[0], N);
    size_t in_span = 0, gaps = 0;
    for (size_t i = 0, k = 0; i < N; i++) {
        while (k < (size_t)ns && h[k].offset + h[k].numel <= i) k++;
        int inside = k < (size_t)ns && i >= h[k].offset;
        in_span += inside, gaps += !inside;
        ck_assert_msg(inside == !!memcmp(&p0[i], &p1[i], sizeof(float)), "%s: float %zu %s", be->name, i,
                      inside ? "in a span did not change" : "in a gap changed");
    }
    ck_assert(gaps > 0 && in_span > 0);
    free(p0), free(p1);
    state_free(&a, be), state_free(&b, be);
    be->free(d);
    printf("%s: %d synthetic spans, %zu gap floats untouched: bit for bit\n", be->name, ns, gaps);
}

START_TEST(test_synthetic_spans_bitwise) {
    int n = 0;
    for (int i = 0; i < backend_count(); i++) {
        const Backend *be = usable(i);
        if (be) synthetic_on(be), n++;
    }
    ck_assert(n > 0);
}
END_TEST

// The tables optimizer_adamw_group hands the backend: the groups tile the buffer in
// order; each group's spans, relative to its first float, are in order, disjoint,
// merged as far as decay allows, and every tensor float lies under a span with the
// tensor's decay.
START_TEST(test_groups_cover_the_table) {
    ModelConfig cfg = tiny();
    Model m;
    ck_assert(model_build(&m, &cfg, &backend_cpu));
    AdamwGroups g;
    adamw_groups_make(&g, &m);
    int n = g.first[g.n_groups - 1] + g.count[g.n_groups - 1];
    ck_assert_int_eq(g.n_groups, m.n_groups);
    ck_assert_msg(n > m.n_groups && n < m.n_tensors, "%d spans for %d tensors in %d groups", n, m.n_tensors, m.n_groups);
    AdamwSpan *abs = calloc((size_t)n, sizeof *abs);
    size_t covered = 0, floats = 0, next = 0;
    for (int k = 0; k < g.n_groups; k++) {
        const ParamGroup *p = &m.groups[k];
        ck_assert_uint_eq(p->offset, next);   // the groups tile the buffer in table order
        next += p->numel;
        for (int s = g.first[k]; s < g.first[k] + g.count[k]; s++) {
            ck_assert(g.spans[s].offset + g.spans[s].numel <= p->numel);
            abs[s] = g.spans[s];
            abs[s].offset += p->offset;
            covered += g.spans[s].numel;
            if (s > g.first[k]) {
                size_t end = g.spans[s - 1].offset + g.spans[s - 1].numel;
                ck_assert(g.spans[s].offset >= end);
                ck_assert_msg(g.spans[s].offset > end || g.spans[s].decay != g.spans[s - 1].decay, "span %d not merged", s);
            }
        }
    }
    ck_assert_uint_eq(next, m.n_params);
    for (int k = 0; k < m.n_tensors; k++) {
        const ParamTensor *p = &m.tensors[k];
        floats += p->numel;
        int s = 0;
        while (s < n && abs[s].offset + abs[s].numel <= p->offset) s++;
        ck_assert_msg(s < n && abs[s].offset <= p->offset && p->offset + p->numel <= abs[s].offset + abs[s].numel,
                      "tensor %s is not inside one span", p->name);
        ck_assert_msg(!!abs[s].decay == p->decay, "tensor %s: span decay %d", p->name, abs[s].decay);
    }
    ck_assert_uint_eq(covered, floats);
    free(abs);
    adamw_groups_free(&g);
    ck_assert_ptr_null(g.spans);
    model_free(&m);
}
END_TEST

// The CPU backend's AVX2 loop (adamw.c) against a scalar loop of the same expression
// written here: the same bits, float for float, over sizes with vector tails, with and
// without decay, over three steps. Plain C11 here: no fused products (no -march and
// ISO mode's fp-contract=off), so this is the scalar path's arithmetic.
static void scalar_adamw(float *p, const float *g, float *m, float *v, size_t n, float wd, int t) {
    float bc1 = 1.0f - powf(B1, (float)t), bc2 = 1.0f - powf(B2, (float)t);
    for (size_t i = 0; i < n; i++) {
        m[i] = B1 * m[i] + (1.0f - B1) * g[i];
        v[i] = B2 * v[i] + (1.0f - B2) * g[i] * g[i];
        float mhat = m[i] / bc1, vhat = v[i] / bc2;
        p[i] -= LR * (mhat / (sqrtf(vhat) + EPS) + wd * p[i]);
    }
}

START_TEST(test_update_equals_scalar_expression) {
    static const size_t sizes[] = {1, 7, 8, 9, 1003, 65536 + 5};
    for (int i = 0; i < backend_count(); i++) {
        const Backend *be = usable(i);
        if (!be || strcmp(be->name, "cpu")) continue;
        for (unsigned z = 0; z < sizeof sizes / sizeof *sizes; z++) {
            size_t n = sizes[z];
            for (int decay = 0; decay < 2; decay++) {
                State a;
                state_init(&a, be, n);
                float *h[4];
                for (int k = 0; k < 4; k++) h[k] = host(be, a.buf[k], n);
                for (int s = 1; s <= STEPS; s++) {
                    state_grads(&a, be, n, s);
                    be->to_host(h[1], a.buf[1], n * sizeof(float));
                    be->adamw_update(a.buf[0], a.buf[1], a.buf[2], a.buf[3], n, LR, B1, B2, EPS, decay ? WD : 0, s);
                    scalar_adamw(h[0], h[1], h[2], h[3], n, decay ? WD : 0, s);
                }
                static const int keep[3] = {0, 2, 3};
                for (int j = 0; j < 3; j++) {
                    float *x = host(be, a.buf[keep[j]], n);
                    for (size_t e = 0; e < n; e++)
                        ck_assert_msg(!memcmp(&x[e], &h[keep[j]][e], sizeof(float)),
                                      "%s: adamw_update differs from the scalar expression in buffer %d at float %zu "
                                      "of %zu (decay %d): %a vs %a", be->name, keep[j], e, n, decay, x[e],
                                      h[keep[j]][e]);
                    free(x);
                }
                for (int k = 0; k < 4; k++) free(h[k]);
                state_free(&a, be);
            }
        }
        printf("%s: adamw_update == the scalar expression, bit for bit\n", be->name);
    }
}
END_TEST

int main(void) {
    setenv("CK_FORK", "no", 1);   // a forked child cannot use the parent's CUDA context
    Suite *s = suite_create("adamw_multi");
    TCase *tc = tcase_create("adamw_multi");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_groups_cover_the_table);
    tcase_add_test(tc, test_model_table_bitwise);
    tcase_add_test(tc, test_synthetic_spans_bitwise);
    tcase_add_test(tc, test_update_equals_scalar_expression);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
