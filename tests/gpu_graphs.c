// gpu_graphs.c: a recorded step (backend.h graph_run, kernels/graph.cu) gives the bits of the
// body run op by op. With DCAL_CUDA_GRAPHS=1 (set here before the backend's first use), three
// micro-batches — different images, labels, pairs and drop-path masks each, all written outside
// the body by model_train_inputs — go through graph_run under one key (warm-up, capture +
// launch, replay) on one model, and op by op on a twin with the same weights; the loss and every
// gradient must match bit for bit, and graph_run must report 0, 1, 1. Runs on a GPU and, as
// sim_graphs, in the CUDA simulator; skips (77) when the CUDA backend is not built or available.
#include <string.h>
#include "model/model.h"
#include "core/rng.h"
#include "testutil.h"

enum { B = 4, CALLS = 3 };
static const Backend *GPU;

static ModelConfig tiny(void) { return test_tiny_model(64, 0.2); }

typedef struct {
    Model m;
    float *loss_dev;   // [4], backend memory: the body's device copy of the loss
} Twin;

static void twin_init(Twin *t) {
    ModelConfig cfg = tiny();
    ck_assert(model_build(&t->m, &cfg, GPU));
    model_init_weights(&t->m, 5);
    ck_assert(model_alloc_activations(&t->m, B, false, true));
    t->loss_dev = GPU->alloc(4 * sizeof(float));
}

// What src/train/step.c's micro_body does: forward from the embedding, loss copy, backward.
static void body(void *ctx) {
    Twin *t = ctx;
    StepOut so;
    model_forward_body(&t->m, &so);
    GPU->copy(t->loss_dev, so.loss_dev, 4 * sizeof(float));
    model_backward(&t->m, 0.5f);
}

static void inputs(Twin *t, int call, float *img, int *lab, int *pair) {
    Rng r;
    rng_init(&r, 91, 0, (uint64_t)call, RNG_TEST);
    for (int i = 0; i < B * 3 * 32 * 32; i++) img[i] = rng_normal(&r);
    for (int b = 0; b < B; b++) lab[b] = (int)rng_below(&r, 5);
    for (int b = 0; b < B; b++) pair[b] = (b + 1 + call % (B - 1)) % B;
    Batch bt = {.B = B, .images = img, .labels = lab, .pair = pair, .seed = 3, .step = (uint64_t)call};
    model_zero_grads(&t->m);
    model_train_inputs(&t->m, &bt);
}

START_TEST(test_recorded_equals_direct) {
    Twin d, g;
    twin_init(&d);
    twin_init(&g);
    size_t np = d.m.n_params;
    float *gd = xmalloc(np * sizeof(float)), *gg = xmalloc(np * sizeof(float));
    float img[B * 3 * 32 * 32], ld[4], lg[4], first[4] = {0};
    int lab[B], pair[B];
    for (int k = 0; k < CALLS; k++) {
        inputs(&d, k, img, lab, pair);
        body(&d);
        inputs(&g, k, img, lab, pair);
        int rec = GPU->graph_run(0, body, &g);
        ck_assert_msg(rec == (k > 0), "call %d: graph_run returned %d, want %d", k + 1, rec, k > 0);
        GPU->to_host(ld, d.loss_dev, sizeof ld);
        GPU->to_host(lg, g.loss_dev, sizeof lg);
        GPU->to_host(gd, d.m.grads, np * sizeof(float));
        GPU->to_host(gg, g.m.grads, np * sizeof(float));
        fprintf(stderr, "call %d: loss direct %.9g recorded %.9g\n", k + 1, ld[0], lg[0]);
        ck_assert_msg(!memcmp(ld, lg, sizeof ld), "call %d: loss %a (direct) vs %a (recorded)", k + 1, ld[0], lg[0]);
        for (size_t i = 0; i < np; i++)
            ck_assert_msg(!memcmp(&gd[i], &gg[i], sizeof(float)), "call %d: gradient %zu: %a (direct) vs %a (recorded)",
                          k + 1, i, gd[i], gg[i]);
        if (k == 0) memcpy(first, ld, sizeof first);
        else ck_assert_msg(memcmp(first, ld, sizeof ld), "call %d repeats call 1's loss: the inputs did not change", k + 1);
    }
    GPU->graph_reset();
    free(gd);
    free(gg);
    GPU->free(d.loss_dev);
    GPU->free(g.loss_dev);
    model_free(&d.m);
    model_free(&g.m);
}
END_TEST

int main(void) {
    char why[640];
    setenv("DCAL_CUDA_GRAPHS", "1", 1);   // read once, at the backend's first describe or graph_run
    int rc = gpu_backend_for_test("gpu_graphs", &GPU);
    if (rc) return rc;
    GPU->describe(why, sizeof why);
    if (!strstr(why, "; graphs on")) {
        fprintf(stderr, "gpu_graphs: DCAL_CUDA_GRAPHS=1 but the describe line does not say 'graphs on'\n");
        return 1;
    }
    setenv("CK_FORK", "no", 1);   // a forked child cannot use the parent's CUDA context
    Suite *s = suite_create("gpu_graphs");
    TCase *tc = tcase_create("graphs");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_recorded_equals_direct);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
