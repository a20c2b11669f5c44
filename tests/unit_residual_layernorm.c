// unit_residual_layernorm.c: the fused residual + LayerNorm ops (backend.h) against
// the separate calls they replace in model_block.c, BIT FOR BIT, on every backend
// present: forward = residual_forward then layernorm_forward; backward = zero(dh),
// residual_backward(dh ← dskip), layernorm_backward(dh, dw, db), residual_backward(dx, df
// ← dh, scale). Gradients start from random values (the += contract) and some incoming
// gradients are −0 (the fused op must keep the sign the zeroed buffer gave). Built a
// second time as sim_residual_layernorm (tools/cudasim), where the CUDA kernels run on
// the CPU and the cuda backend must be among those checked.
#include <string.h>
#include "backend/backend.h"
#include "core/common.h"
#include "core/rng.h"
#include "testutil.h"

typedef struct { int B, rpb, D, scaled; } Case;
static const Case kCases[] = {{3, 5, 33, 1}, {1, 1, 33, 0}, {4, 2, 12, 1}, {2, 197, 768, 1}, {1, 1, 768, 0}};
static const float kScale[4] = {0.f, 1.25f, 1.f, 1.f / 0.9f};   // dropped, 1/keep_prob, kept

// n floats of backend memory: normal·scale + offset, every 7th −0 when negzero.
static float *dev_random(const Backend *be, size_t n, uint64_t index, float scale, float offset, int negzero) {
    float *h = xmalloc(n * sizeof(float));
    Rng r;
    rng_init(&r, 77, 0, index, RNG_TEST);
    for (size_t i = 0; i < n; i++) h[i] = negzero && i % 7 == 3 ? -0.0f : scale * rng_normal(&r) + offset;
    float *d = be->alloc(n * sizeof(float));
    be->to_device(d, h, n * sizeof(float));
    free(h);
    return d;
}

static float *dev_zeros(const Backend *be, size_t n) { return be->alloc(n * sizeof(float)); }

static float *dev_copy(const Backend *be, const float *src, size_t n) {
    float *d = be->alloc(n * sizeof(float));
    be->copy(d, src, n * sizeof(float));
    return d;
}

// The first float where a and b (backend memory) differ in bits, or -1.
static long first_diff(const Backend *be, const float *a, const float *b, size_t n) {
    float *x = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float));
    be->to_host(x, a, n * sizeof(float)), be->to_host(y, b, n * sizeof(float));
    long at = -1;
    for (size_t i = 0; i < n && at < 0; i++)
        if (memcmp(&x[i], &y[i], sizeof(float))) at = (long)i;
    free(x), free(y);
    return at;
}

#define SAME(be, cs, what, a, b, n)                                                                                  \
    do {                                                                                                             \
        long at_ = first_diff(be, a, b, n);                                                                          \
        ck_assert_msg(at_ < 0, "%s B%d x %d D%d: %s differs from the separate ops at float %ld", (be)->name,        \
                      (cs)->B, (cs)->rpb, (cs)->D, what, at_);                                                       \
    } while (0)

static void case_on(const Backend *be, const Case *cs) {
    int rows = cs->B * cs->rpb, D = cs->D;
    size_t n = (size_t)rows * D, per_b = (size_t)cs->rpb * D;
    float eps = 1e-6f, hs[4];
    float *x = dev_random(be, n, 1, 1.f, 3.f, 0), *f = dev_random(be, n, 2, 1.f, 0.f, 0);
    float *w = dev_random(be, D, 3, 1.f, 0.f, 0), *b = dev_random(be, D, 4, 1.f, 0.f, 0), *scale = NULL;
    if (cs->scaled) {
        for (int k = 0; k < cs->B; k++) hs[k] = kScale[k % 4];
        scale = be->alloc(cs->B * sizeof(float));
        be->to_device(scale, hs, cs->B * sizeof(float));
    }
    float *h1 = dev_zeros(be, n), *o1 = dev_zeros(be, n), *m1 = dev_zeros(be, rows), *r1 = dev_zeros(be, rows);
    float *h2 = dev_zeros(be, n), *o2 = dev_zeros(be, n), *m2 = dev_zeros(be, rows), *r2 = dev_zeros(be, rows);
    // The LayerNorm outputs are Act (bf16 at bf16) in buffers of n floats: the bytes past them
    // stay zero in both, so SAME's n floats compare the Act values and agreeing zeros.
    be->residual_layernorm_forward(h1, (Act *)o1, m1, r1, x, f, scale, w, b, cs->B, cs->rpb, D, eps);
    be->residual_forward(h2, x, f, scale, cs->B, per_b);
    be->layernorm_forward((Act *)o2, m2, r2, h2, w, b, rows, D, eps);
    SAME(be, cs, "h", h1, h2, n);
    SAME(be, cs, "out", o1, o2, n);
    SAME(be, cs, "mean", m1, m2, rows);
    SAME(be, cs, "rstd", r1, r2, rows);

    float *dskip = dev_random(be, n, 5, 1.f, 0.f, 1), *dout = dev_random(be, n, 6, 1.f, 0.f, 0);
    // Row 0 of dout all −0: LayerNorm's term is then ±0 and, where dskip is −0 too, only the
    // zeroed buffer's 0 + dskip makes dh +0 (seen through dx's −0 start values).
    float *nz = xmalloc(D * sizeof(float));
    for (int i = 0; i < D; i++) nz[i] = -0.0f;
    be->to_device(dout, nz, D * sizeof(float));
    free(nz);
    float *dx1 = dev_random(be, n, 7, .5f, 0.f, 1), *df1 = dev_zeros(be, n);
    float *dw1 = dev_random(be, D, 8, .5f, 0.f, 0), *db1 = dev_random(be, D, 9, .5f, 0.f, 0);
    float *dx2 = dev_copy(be, dx1, n), *df2 = dev_zeros(be, n);
    float *dw2 = dev_copy(be, dw1, D), *db2 = dev_copy(be, db1, D);
    float *dh = dev_zeros(be, n);
    be->residual_layernorm_backward(dx1, df1, dw1, db1, dskip, dout, h1, w, m1, r1, scale, cs->B, cs->rpb, D);
    be->zero(dh, n * sizeof(float));
    be->residual_backward(dh, NULL, dskip, NULL, 1, n);
    be->layernorm_backward(dh, dw2, db2, dout, h2, w, m2, r2, rows, D);
    be->residual_backward(dx2, df2, dh, scale, cs->B, per_b);
    SAME(be, cs, "dx", dx1, dx2, n);
    SAME(be, cs, "df", df1, df2, n);
    SAME(be, cs, "dw", dw1, dw2, D);
    SAME(be, cs, "db", db1, db2, D);
    float *all[] = {x, f, w, b, scale, h1, o1, m1, r1, h2, o2, m2, r2, dskip, dout, dx1, df1, dw1, db1, dx2, df2, dw2,
                    db2, dh};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++)
        if (all[k]) be->free(all[k]);
}

START_TEST(test_fused_equals_separate_bitwise) {
    int checked = 0, cuda = 0;
    for (int i = 0; i < backend_count(); i++) {
        char why[256];
        const Backend *be = backend_at(i);
        if (!be->available(why, sizeof why)) {
            printf("%s: %s: skipped\n", be->name, why);
            continue;
        }
        for (size_t k = 0; k < sizeof kCases / sizeof *kCases; k++) case_on(be, &kCases[k]);
        printf("%s: %zu cases: residual_layernorm_forward/backward == the separate ops, bit for bit\n", be->name,
               sizeof kCases / sizeof *kCases);
        checked++, cuda += !strcmp(be->name, "cuda");
    }
#ifdef RESLN_NEED_CUDA
    ck_assert_msg(cuda, "the simulated cuda backend was not checked");
#endif
    (void)cuda;
    ck_assert(checked > 0);
}
END_TEST

int main(void) {
    setenv("CK_FORK", "no", 1);   // a forked child cannot use the parent's CUDA context
    Suite *s = suite_create("residual_layernorm");
    TCase *tc = tcase_create("residual_layernorm");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_fused_equals_separate_bitwise);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
