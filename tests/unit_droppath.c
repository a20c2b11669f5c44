// unit_droppath.c: the model's drop-path masks, drawn by the backend's droppath_masks op,
// are the bits the host loop drew before the op existed (kept below, verbatim, as the
// reference), on every backend present: the CPU here, the simulated CUDA backend in the
// sim build (sim_droppath) and a GPU when there is one. The keep probabilities are made
// once per model; the masks change with the step and the seed.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/common.h"
#include "core/rng.h"
#include "model/model_int.h"
#include "testutil.h"

enum { B = 3 };
static ModelConfig tiny(double drop_path) {
    DcalConfig c;
    config_defaults(&c);
    ModelConfig m = c.model;
    strcpy(m.preset, "custom");
    m.img_size = 32; m.patch = 8; m.dim = 32; m.heads = 2; m.depth = 3; m.mlp_dim = 64;
    m.glca_blocks = 1; m.pwca_blocks = 3; m.top_r = 0.25; m.drop_path = drop_path; m.num_classes = 5;
    return m;
}

// model_graph.c's draw_drop_masks as it was before the op: the reference.
static float *host_masks(const ModelConfig *c, int Bn, uint64_t seed, uint64_t step) {
    int L = c->depth, T = c->pwca_blocks, M = c->glca_blocks, nblk = L + T + M;
    float *h = xmalloc((size_t)2 * nblk * Bn * sizeof(float));
    for (int k = 0; k < nblk; k++) {
        int depth = k < L ? k : k < L + T ? k - L : L - M + (k - L - T);   // the SA layer a block stands for
        double rate = L > 1 ? c->drop_path * depth / (L - 1) : c->drop_path;   // linear over depth (timm)
        float keep = (float)(1.0 - rate);
        for (int w = 0; w < 2; w++) {
            Rng r;
            rng_init(&r, seed, (uint32_t)(2 * k + w), step, RNG_DROPPATH);
            for (int b = 0; b < Bn; b++)
                h[(size_t)(2 * k + w) * Bn + b] = rng_uniform(&r) < keep ? 1.0f / keep : 0.0f;
        }
    }
    return h;
}

typedef struct {
    Model m;
    float *img;
    int lab[B], pair[B];
} Fix;

static void fix_init(Fix *f, const Backend *be, double drop_path) {
    ModelConfig cfg = tiny(drop_path);
    ck_assert(model_build(&f->m, &cfg, be));
    model_init_weights(&f->m, 3);
    ck_assert(model_alloc_activations(&f->m, B, false, true));
    size_t n = (size_t)B * 3 * 32 * 32;
    f->img = xmalloc(n * sizeof(float));
    Rng r;
    rng_init(&r, 3, 0, 0, RNG_TEST);
    for (size_t i = 0; i < n; i++) f->img[i] = rng_normal(&r);
    for (int b = 0; b < B; b++) f->lab[b] = b, f->pair[b] = (b + 1) % B;
}

// One training forward at (seed, step); the masks it used, from the backend's memory.
static float *forward_masks(Fix *f, uint64_t seed, uint64_t step) {
    Batch bt = {.B = B, .images = f->img, .labels = f->lab, .pair = f->pair, .seed = seed, .step = step};
    StepOut out;
    model_forward_train(&f->m, &bt, &out);
    const ModelConfig *c = &f->m.cfg;
    size_t n = (size_t)2 * (c->depth + c->pwca_blocks + c->glca_blocks) * B;
    float *h = xmalloc(n * sizeof(float));
    f->m.be->to_host(h, f->m.acts->drop, n * sizeof(float));
    return h;
}

static size_t n_masks(const Model *m) {
    return (size_t)2 * (m->cfg.depth + m->cfg.pwca_blocks + m->cfg.glca_blocks) * B;
}

static void check_backend(const Backend *be) {
    Fix f;
    fix_init(&f, be, 0.4);
    size_t n = n_masks(&f.m);
    const uint64_t cases[][2] = {{1, 0}, {1, 1}, {2, 1}, {0x9E3779B97F4A7C15ull, (1ull << 32) + 7}};
    float *first = NULL;
    for (int i = 0; i < 4; i++) {
        float *got = forward_masks(&f, cases[i][0], cases[i][1]);
        float *want = host_masks(&f.m.cfg, B, cases[i][0], cases[i][1]);
        for (size_t k = 0; k < n; k++)
            ck_assert_msg(!memcmp(&got[k], &want[k], sizeof(float)), "%s seed %llu step %llu: mask[%zu] = %.9g, host %.9g",
                          be->name, (unsigned long long)cases[i][0], (unsigned long long)cases[i][1], k, got[k],
                          want[k]);
        if (i == 0) first = got;
        else {
            // Another step or seed draws other masks (a stale buffer would pass the bit check only by luck).
            ck_assert_msg(memcmp(first, got, n * sizeof(float)), "%s: case %d drew the masks of case 0", be->name, i);
            free(got);
        }
        free(want);
    }
    // Some samples are dropped and some kept at 0.4 over 42 draws: the masks are not all one value.
    int zeros = 0;
    for (size_t k = 0; k < n; k++) zeros += first[k] == 0;
    ck_assert_msg(zeros > 0 && zeros < (int)n, "%s: %d of %zu masks zero", be->name, zeros, n);
    free(first);
    free(f.img);
    model_free(&f.m);
}

START_TEST(test_masks_equal_host_loop) {
    int ran = 0;
    for (int i = 0; i < backend_count(); i++) {
        const Backend *be = backend_at(i);
        char why[256];
        if (!be->available(why, sizeof why)) {
            printf("unit_droppath: %s skipped: %s\n", be->name, why);
            continue;
        }
        check_backend(be);
        printf("unit_droppath: %s: drop-path masks equal the host loop's bits\n", be->name);
        ran++;
    }
    ck_assert(ran > 0);
}
END_TEST

START_TEST(test_no_drop_path_no_keep) {
    // Without drop-path: no keep buffer, and no masks reach the blocks.
    Fix f;
    fix_init(&f, &backend_cpu, 0);
    ck_assert_ptr_null(f.m.acts->keep);
    free(forward_masks(&f, 1, 1));
    ck_assert(!f.m.acts->have_drop);
    free(f.img);
    model_free(&f.m);
}
END_TEST

int main(void) {
    setenv("CK_FORK", "no", 1);   // a forked child cannot use the parent's CUDA context
    Suite *s = suite_create("unit_droppath");
    TCase *tc = tcase_create("droppath");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_masks_equal_host_loop);
    tcase_add_test(tc, test_no_drop_path_no_keep);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
