// gpu_model.c: the whole DCAL model on the CUDA backend against the CPU
// reference (tiny config, MODEL.md §1-3): one step's loss and every parameter
// gradient, a 20-step training loss curve, a bitwise-identical repeat of
// the same 10 steps on the GPU, and per-block checkpointing changing no bit
// (at bf16 too: the checkpoints are the bf16 stream every reader sees). Skips (77) when the CUDA backend is not built
// or not available. Runs precision "bf16" (backend.h set_precision).
// Tolerances (bf16 tensor-core attention, bf16-operand GEMMs): loss relative 2e-2,
// gradients 5e-2 per tensor (max |gpu − cpu| / max |cpu|), curve 5% per step.
#include <math.h>
#include <string.h>
#include "model/model.h"
#include "model/plan.h"
#include "core/rng.h"
#include "testutil.h"

enum { B = 4, STEPS = 20 };
static const Backend *GPU;   // the CUDA backend, found through the registry in main

static ModelConfig tiny(void) { return test_tiny_model(64, 0); }

typedef struct {
    Model m;
    float *am, *av;
} Run;

// ckpt_layers: with ckpt, the layers recomputed (train.checkpoint_layers; 0: all).
static void run_init_layers(Run *r, const Backend *be, bool ckpt, int ckpt_layers) {
    ModelConfig cfg = tiny();
    cfg.ckpt_layers = ckpt_layers;
    ck_assert(model_build(&r->m, &cfg, be));
    model_init_weights(&r->m, 5);   // same host values on both backends
    ck_assert(model_alloc_activations(&r->m, B, ckpt, true));
    r->am = be->alloc(r->m.n_params * sizeof(float));
    r->av = be->alloc(r->m.n_params * sizeof(float));
}
static void run_init_ckpt(Run *r, const Backend *be, bool ckpt) { run_init_layers(r, be, ckpt, 0); }
static void run_init(Run *r, const Backend *be) { run_init_ckpt(r, be, false); }
static void run_free(Run *r) {
    r->m.be->free(r->am);
    r->m.be->free(r->av);
    model_free(&r->m);
}

static void batch_for(int step, float *img, int *lab, int *pair) {
    Rng r;
    rng_init(&r, 77, 0, (uint64_t)step, RNG_TEST);
    for (int i = 0; i < B * 3 * 32 * 32; i++) img[i] = rng_normal(&r);
    for (int b = 0; b < B; b++) lab[b] = (int)rng_below(&r, 5);
    for (int b = 0; b < B; b++) pair[b] = (b + 1 + step % (B - 1)) % B;   // a derangement
}

static float step(Run *r, int t, float *img, int *lab, int *pair, bool update) {
    batch_for(t, img, lab, pair);
    Batch bt = {.B = B, .images = img, .labels = lab, .pair = pair};
    StepOut o;
    test_model_step(&r->m, &bt, &o);
    if (update)
        for (int i = 0; i < r->m.n_tensors; i++) {
            const ParamTensor *p = &r->m.tensors[i];
            r->m.be->adamw_update(r->m.params + p->offset, r->m.grads + p->offset, r->am + p->offset,
                                  r->av + p->offset, p->numel, 1e-3f, 0.9f, 0.999f, 1e-8f, p->decay ? 0.05f : 0, t + 1);
        }
    return o.loss;
}

static float *host_copy(const Model *m, const float *buf) {
    float *h = xmalloc(m->n_params * sizeof(float));
    m->be->to_host(h, buf, m->n_params * sizeof(float));
    return h;
}

START_TEST(test_one_step_gradients) {
    Run c, g;
    run_init(&c, &backend_cpu);
    run_init(&g, GPU);
    float img[B * 3 * 32 * 32];
    int lab[B], pair[B];
    float lc = step(&c, 0, img, lab, pair, false), lg = step(&g, 0, img, lab, pair, false);
    ck_assert_msg(isfinite(lg) && fabsf(lg - lc) <= 2e-2f * fabsf(lc), "loss gpu %g cpu %g", lg, lc);
    float *gc = host_copy(&c.m, c.m.grads), *gg = host_copy(&g.m, g.m.grads);
    for (int i = 0; i < c.m.n_tensors; i++) {
        const ParamTensor *t = &c.m.tensors[i];
        double *ref = xmalloc(t->numel * sizeof(double));
        for (size_t k = 0; k < t->numel; k++) ref[k] = gc[t->offset + k];
        double e = rel_err(gg + t->offset, ref, t->numel, 1e-6);
        fprintf(stderr, "grad.%-40s rel err %.3g\n", t->name, e);
        ck_assert_msg(e < 5e-2, "grad.%s: gpu vs cpu relative error %.3g", t->name, e);
        free(ref);
    }
    free(gc); free(gg);
    run_free(&c);
    run_free(&g);
}
END_TEST

START_TEST(test_loss_curve_20_steps) {
    Run c, g;
    run_init(&c, &backend_cpu);
    run_init(&g, GPU);
    float img[B * 3 * 32 * 32];
    int lab[B], pair[B];
    for (int t = 0; t < STEPS; t++) {
        float lc = step(&c, t, img, lab, pair, true), lg = step(&g, t, img, lab, pair, true);
        fprintf(stderr, "step %2d loss cpu %.5f gpu %.5f\n", t + 1, lc, lg);
        ck_assert_msg(isfinite(lg) && fabsf(lg - lc) <= 0.05f * fabsf(lc), "step %d: gpu %g cpu %g", t + 1, lg, lc);
    }
    run_free(&c);
    run_free(&g);
}
END_TEST

START_TEST(test_bitwise_repeat_10_steps) {
    float *final[2];
    float img[B * 3 * 32 * 32];
    int lab[B], pair[B];
    size_t n = 0;
    for (int k = 0; k < 2; k++) {
        Run g;
        run_init(&g, GPU);
        for (int t = 0; t < 10; t++) step(&g, t, img, lab, pair, true);
        final[k] = host_copy(&g.m, g.m.params);
        n = g.m.n_params;
        run_free(&g);
    }
    ck_assert_msg(memcmp(final[0], final[1], n * sizeof(float)) == 0, "two identical GPU runs differ");
    free(final[0]);
    free(final[1]);
}
END_TEST

// Checkpointing every layer, or only the lowest one (train.checkpoint_layers), repeats the
// stored run's operations on the same values: the same loss and gradient bits, bf16 included.
START_TEST(test_checkpointing_same_bits) {
    float *grads[3], loss[3];
    float img[B * 3 * 32 * 32];
    int lab[B], pair[B];
    size_t n = 0;
    for (int k = 0; k < 3; k++) {   // activations kept, every layer checkpointed, the lowest layer only
        Run g;
        run_init_layers(&g, GPU, k > 0, k == 2);
        ck_assert_int_eq(g.m.cfg.act_bytes, (int)GPU->act_bytes());
        loss[k] = step(&g, 3, img, lab, pair, false);
        grads[k] = host_copy(&g.m, g.m.grads);
        n = g.m.n_params;
        run_free(&g);
    }
    for (int k = 1; k < 3; k++) {
        const char *how = k == 1 ? "checkpointed" : "lowest layer checkpointed";
        ck_assert_msg(memcmp(&loss[0], &loss[k], sizeof(float)) == 0, "loss %.9g stored, %.9g %s", loss[0], loss[k],
                      how);
        size_t first = n;
        for (size_t i = 0; i < n && first == n; i++)
            if (memcmp(&grads[0][i], &grads[k][i], sizeof(float))) first = i;
        ck_assert_msg(first == n, "gradient %zu: %.9g stored, %.9g %s", first, first < n ? grads[0][first] : 0.,
                      first < n ? grads[k][first] : 0., how);
    }
    for (int k = 0; k < 3; k++) free(grads[k]);
}
END_TEST

// The planner's count of the backend's scratch (cuda_scratch_rule.h, shown by dcal plan) is the
// largest request a training step makes: the bf16 copies of fc1's dout and weight here.
START_TEST(test_scratch_as_planned) {
    Run g;
    run_init(&g, GPU);
    float img[B * 3 * 32 * 32];
    int lab[B], pair[B];
    step(&g, 0, img, lab, pair, true);
    size_t want = plan_cuda_scratch(&g.m.cfg, B), got = GPU->scratch_peak();
    ck_assert_msg(want > 0 && got == want, "largest scratch request %zu bytes, planned %zu", got, want);
    run_free(&g);
}
END_TEST

// The compiled-in backend named "cuda", or NULL.
int main(void) {
    int rc = gpu_backend_for_test("gpu_model", &GPU);
    if (rc) return rc;
    setenv("CK_FORK", "no", 1);   // a forked child cannot use the parent's CUDA context
    Suite *s = suite_create("gpu_model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_one_step_gradients);
    tcase_add_test(tc, test_loss_curve_20_steps);
    tcase_add_test(tc, test_bitwise_repeat_10_steps);
    tcase_add_test(tc, test_checkpointing_same_bits);
    tcase_add_test(tc, test_scratch_as_planned);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
