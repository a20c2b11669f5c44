// step.c: DCAL training steps (forward + backward) with random inputs on one
// backend; prints step time, img/s, model FLOP/s (and MFU given a peak), the
// planned bytes and the peak RSS (bench/RESULTS.md).
//   bench_step [img_size=448] [micro_batch=2] [ckpt 0|1] [backend cpu|cuda|auto] [steps=1] [peak TFLOP/s]
//              [precision, default the backend's best: see backend.h set_precision]
// The first line of output is the backend's describe(): device, versions, numerics.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "model/model.h"
#include "core/rng.h"

// The backend named on the command line, at the precision asked for (if any);
// prints its describe() line. NULL after an error line.
static const Backend *open_backend(const char *name, const char *precision) {
    const Backend *be = backend_get(name);
    if (!be) return NULL;
    if (precision && !be->set_precision(precision)) {
        fprintf(stderr, "bench_step: backend %s has no precision '%s' (supported: %s)\n", be->name, precision,
                be->precisions);
        return NULL;
    }
    char desc[512];
    be->describe(desc, sizeof desc);
    printf("%s\n", desc);
    return be;
}

// Model FLOPs of one training step (matrix products only), backward counted as 2× forward.
static double step_flops(const Model *m, const ModelConfig *mc, int B, bool pwca) {
    double N = m->N, D = mc->dim, F = mc->mlp_dim, Q = 1 + m->K, P = N - 1, pp = mc->patch * mc->patch;
    double blk = 2 * N * (4 * D * D + 2 * D * F);
    double fwd = 2 * P * 3 * pp * D + mc->depth * (blk + 4 * N * N * D) + (mc->glca_blocks - 0) *
                 (2 * Q * D * D + 4 * N * D * D + 2 * Q * (D * D + 2 * D * F) + 4 * Q * N * D) +
                 (mc->depth - mc->glca_blocks) * 2 * N * N * D;
    if (pwca) fwd += mc->pwca_blocks * (blk + 8 * N * N * D);
    return 3 * fwd * B;
}

// Mean forward and backward seconds over `steps` steps, after one warm-up step
// (allocations, cuBLAS heuristics); o is the last step's output.
static void time_steps(Model *m, const Batch *bt, int steps, StepOut *o, double *tf, double *tb) {
    model_forward_train(m, bt, o);
    model_backward(m, 1.0f);
    m->be->sync();
    *tf = *tb = 0;
    for (int s = 0; s < steps; s++) {
        double t0 = now_seconds();
        model_forward_train(m, bt, o);
        m->be->sync();
        double t1 = now_seconds();
        model_backward(m, 1.0f);
        m->be->sync();
        *tf += t1 - t0;
        *tb += now_seconds() - t1;
    }
    *tf /= steps;
    *tb /= steps;
}

int main(int argc, char **argv) {
    DcalConfig c;
    config_defaults(&c);   // ViT-B/16, 448, L=12, M=1, T=12, R=0.1
    if (argc > 1) c.model.img_size = atoi(argv[1]);
    int B = argc > 2 ? atoi(argv[2]) : 2;
    int ckpt = argc > 3 ? atoi(argv[3]) : 0;
    int steps = argc > 5 ? atoi(argv[5]) : 1;
    double peak = argc > 6 ? atof(argv[6]) : 0;
    const Backend *be = open_backend(argc > 4 ? argv[4] : "cpu", argc > 7 ? argv[7] : NULL);
    if (!be) return 1;
    c.model.drop_path = 0;
    Model m;
    if (!model_build(&m, &c.model, be)) return 1;
    model_init_weights(&m, 1);
    MemPlan p;
    model_plan(&c.model, B, ckpt, true, &p);
    if (!model_alloc_activations(&m, B, ckpt, true)) return 1;
    int S = c.model.img_size;
    float *img = malloc(sizeof(float) * B * 3 * S * S);
    Rng r;
    rng_init(&r, 1, 0, 0, RNG_TEST);
    for (long i = 0; i < (long)B * 3 * S * S; i++) img[i] = rng_normal(&r);
    int lab[64] = {0}, pair[64];
    for (int b = 0; b < B; b++) pair[b] = (b + 1) % B;
    Batch bt = {.B = B, .images = img, .labels = lab, .pair = B >= 2 ? pair : NULL};
    StepOut o;
    double tf, tb;
    time_steps(&m, &bt, steps, &o, &tf, &tb);
    double tflops = step_flops(&m, &c.model, B, bt.pair != NULL) / (tf + tb) / 1e12;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%s img %d N %d micro-batch %d ckpt %d PWCA %s: forward %.3f s backward %.3f s (%.1f img/s, %.2f TFLOP/s",
           be->name, S, m.N, B, ckpt, bt.pair ? "on" : "off", tf, tb, B / (tf + tb), tflops);
    if (peak > 0) printf(", MFU %.1f%% of %.0f", 100 * tflops / peak, peak);
    printf(") loss %.4f | planned %.1f MiB (weights %.1f grads %.1f activations %.1f workspace %.1f; AdamW state "
           "not allocated here) | peak RSS %.1f MiB\n",
           o.loss, (p.weights + p.grads + p.activations + p.workspace) / 1048576.0, p.weights / 1048576.0,
           p.grads / 1048576.0, p.activations / 1048576.0, p.workspace / 1048576.0, ru.ru_maxrss / 1024.0);
    model_free(&m);
    free(img);
    return 0;
}
