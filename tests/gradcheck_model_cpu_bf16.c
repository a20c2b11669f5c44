// gradcheck_model_cpu_bf16.c: the whole DCAL model on the CPU at precision bf16 (bf16 Act
// storage, bf16-operand GEMMs; src/backend/cpu/bf16.c) against the same CPU at fp32, as
// gpu_model.c holds the CUDA backend's bf16 to it: one step's loss and every parameter
// gradient (loss 2e-2 relative, gradients 5e-2 per tensor: max |bf16 − fp32| / max |fp32|),
// a 20-step loss curve (5% per step), and at bf16 the same bits with every layer or the lowest
// layer checkpointed and with the CPU's recomputes (h, the attention output), since each
// re-reads the bf16 values the stored run read; and with the streams kept fp32
// (train.bf16_stream: false) as well. Last, the GEMMs' operand copies peak at what
// the planner counts (plan_cpu_copies, in plan_cpu_extra). The CPU's precision is one switch, so the runs
// alternate it (use); the test re-executes itself under DCAL_CPU_BF16=portable, which
// offers bf16 on any CPU.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "model/model.h"
#include "model/plan.h"
#include "core/rng.h"
#include "testutil.h"

enum { B = 4, STEPS = 20 };
static const Backend *CPU = &backend_cpu;

static void use(const char *p) { ck_assert_msg(CPU->set_precision(p), "the CPU refuses precision %s", p); }

typedef struct {
    Model m;
    const char *prec;
    float *am, *av;
} Run;

// how: 0 activations kept, 1 every layer checkpointed, 2 the lowest layer, 3 kept with the
// CPU's recomputes of h and the attention output; 4 and 5: 0 and 1 with the residual streams
// kept in fp32 (train.bf16_stream: false).
static void run_init(Run *r, const char *prec, int how) {
    use(prec);
    r->prec = prec;
    ModelConfig cfg = test_tiny_model(64, 0);
    cfg.ckpt_layers = how == 2;
    cfg.recompute_h = cfg.recompute_att = how == 3;
    cfg.fp32_stream = how >= 4;
    ck_assert(model_build(&r->m, &cfg, CPU));
    model_init_weights(&r->m, 5);
    ck_assert(model_alloc_activations(&r->m, B, how == 1 || how == 2 || how == 5, true));
    ck_assert_int_eq(r->m.cfg.act_bytes, strcmp(prec, "bf16") ? 4 : 2);
    r->am = xcalloc(r->m.n_params, sizeof(float));
    r->av = xcalloc(r->m.n_params, sizeof(float));
}
static void run_free(Run *r) {
    free(r->am), free(r->av);
    model_free(&r->m);
}

static float step(Run *r, int t, bool update) {
    static float img[B * 3 * 32 * 32];
    int lab[B], pair[B];
    Rng g;
    rng_init(&g, 77, 0, (uint64_t)t, RNG_TEST);
    for (int i = 0; i < B * 3 * 32 * 32; i++) img[i] = rng_normal(&g);
    for (int b = 0; b < B; b++) lab[b] = (int)rng_below(&g, 5);
    for (int b = 0; b < B; b++) pair[b] = (b + 1 + t % (B - 1)) % B;   // a derangement
    use(r->prec);
    Batch bt = {.B = B, .images = img, .labels = lab, .pair = pair};
    StepOut o;
    test_model_step(&r->m, &bt, &o);
    for (int i = 0; update && i < r->m.n_tensors; i++) {
        const ParamTensor *p = &r->m.tensors[i];
        CPU->adamw_update(r->m.params + p->offset, r->m.grads + p->offset, r->am + p->offset, r->av + p->offset,
                          p->numel, 1e-3f, 0.9f, 0.999f, 1e-8f, p->decay ? 0.05f : 0, t + 1);
    }
    return o.loss;
}

START_TEST(test_one_step_gradients) {
    Run f, h;
    run_init(&f, "fp32", 0);
    run_init(&h, "bf16", 0);
    float lf = step(&f, 0, false), lh = step(&h, 0, false);
    ck_assert_msg(isfinite(lh) && fabsf(lh - lf) <= 2e-2f * fabsf(lf) && lh != lf, "loss bf16 %g fp32 %g", lh, lf);
    double worst = 0;
    for (int i = 0; i < f.m.n_tensors; i++) {
        const ParamTensor *t = &f.m.tensors[i];
        double *ref = xmalloc(t->numel * sizeof(double));
        for (size_t k = 0; k < t->numel; k++) ref[k] = f.m.grads[t->offset + k];
        double e = rel_err(h.m.grads + t->offset, ref, t->numel, 1e-6);
        worst = fmax(worst, e);
        ck_assert_msg(e < 5e-2, "grad.%s: bf16 vs fp32 relative error %.3g", t->name, e);
        free(ref);
    }
    printf("one step: loss fp32 %.6f bf16 %.6f; largest gradient error %.3g\n", lf, lh, worst);
    run_free(&f), run_free(&h);
}
END_TEST

START_TEST(test_loss_curve_20_steps) {
    Run f, h;
    run_init(&f, "fp32", 0);
    run_init(&h, "bf16", 0);
    double worst = 0;
    for (int t = 0; t < STEPS; t++) {
        float lf = step(&f, t, true), lh = step(&h, t, true);
        worst = fmax(worst, fabs(lh - lf) / fabs(lf));
        ck_assert_msg(isfinite(lh) && fabsf(lh - lf) <= 0.05f * fabsf(lf), "step %d: bf16 %g fp32 %g", t + 1, lh, lf);
    }
    printf("20 steps: largest relative loss difference %.3g\n", worst);
    run_free(&f), run_free(&h);
}
END_TEST

START_TEST(test_checkpointing_and_recompute_same_bits) {
    static const char *how[] = {"stored", "checkpointed", "lowest layer checkpointed", "h and attention recomputed"};
    float *grads[4], loss[4];
    size_t n = 0;
    for (int k = 0; k < 4; k++) {
        Run h;
        run_init(&h, "bf16", k);
        loss[k] = step(&h, 3, false);
        n = h.m.n_params;
        grads[k] = xmalloc(n * sizeof(float));
        memcpy(grads[k], h.m.grads, n * sizeof(float));
        run_free(&h);
    }
    for (int k = 1; k < 4; k++) {
        ck_assert_msg(!memcmp(&loss[0], &loss[k], sizeof(float)), "loss %.9g stored, %.9g %s", loss[0], loss[k], how[k]);
        size_t first = n;
        for (size_t i = 0; i < n && first == n; i++)
            if (memcmp(&grads[0][i], &grads[k][i], sizeof(float))) first = i;
        ck_assert_msg(first == n, "gradient %zu differs: %s", first, how[k]);
    }
    for (int k = 0; k < 4; k++) free(grads[k]);
}
END_TEST

// train.bf16_stream: false keeps the streams fp32: a different loss from the bf16 streams', as
// close to fp32's, and checkpointing (the checkpoints are those fp32 entries) changes no bit.
START_TEST(test_fp32_stream) {
    float loss[3], *grads[2];
    size_t n = 0;
    Run f;
    run_init(&f, "fp32", 0);
    float lf = step(&f, 3, false);
    run_free(&f);
    for (int k = 0; k < 3; k++) {   // bf16 streams; fp32 streams stored; fp32 streams checkpointed
        Run h;
        run_init(&h, "bf16", k ? 3 + k : 0);
        loss[k] = step(&h, 3, false);
        n = h.m.n_params;
        if (k) grads[k - 1] = xmalloc(n * sizeof(float)), memcpy(grads[k - 1], h.m.grads, n * sizeof(float));
        run_free(&h);
    }
    printf("loss fp32 %.9g; bf16 with bf16 streams %.9g, with fp32 streams %.9g\n", lf, loss[0], loss[1]);
    ck_assert_msg(loss[1] != loss[0], "train.bf16_stream false changed nothing");
    ck_assert_msg(fabsf(loss[1] - lf) <= 2e-2f * fabsf(lf), "fp32 streams: loss %g, fp32 %g", loss[1], lf);
    ck_assert_msg(!memcmp(&loss[1], &loss[2], sizeof(float)) && !memcmp(grads[0], grads[1], n * sizeof(float)),
                  "fp32 streams: checkpointing changed the bits");
    free(grads[0]), free(grads[1]);
}
END_TEST

START_TEST(test_scratch_as_planned) {
    Run h;
    run_init(&h, "bf16", 0);
    step(&h, 0, true);
    size_t want = plan_cpu_copies(&h.m.cfg, B), got = CPU->scratch_peak();
    ck_assert_msg(want > 0 && got == want, "operand copies peaked at %zu bytes, planned %zu", got, want);
    run_free(&h);
}
END_TEST

int main(int argc, char **argv) {
    (void)argc;
    if (test_cpu_bf16_portable(argv)) return 1;
    setenv("CK_FORK", "no", 1);   // one process: the scratch peak is this process's
    Suite *s = suite_create("model_cpu_bf16");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_scratch_as_planned);   // first: the peak is this process's largest so far
    tcase_add_test(tc, test_one_step_gradients);
    tcase_add_test(tc, test_loss_curve_20_steps);
    tcase_add_test(tc, test_checkpointing_and_recompute_same_bits);
    tcase_add_test(tc, test_fp32_stream);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
