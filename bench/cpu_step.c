// cpu_step.c: one DCAL training step (forward + backward) on the CPU backend
// with random inputs; prints step time and peak RSS. Used to record the memory
// of a ViT-B/16 448 step (bench/RESULTS.md).
//   bench_cpu_step [img_size] [micro_batch] [ckpt 0|1] [depth]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "model.h"
#include "rng.h"

int main(int argc, char **argv) {
    DcalConfig c;
    config_defaults(&c);   // ViT-B/16, 448, L=12, M=1, T=12, R=0.1
    if (argc > 1) c.model.img_size = atoi(argv[1]);
    int B = argc > 2 ? atoi(argv[2]) : 2;
    int ckpt = argc > 3 ? atoi(argv[3]) : 0;
    if (argc > 4) { strcpy(c.model.preset, "custom"); c.model.depth = atoi(argv[4]); c.model.pwca_blocks = c.model.depth; }
    c.model.drop_path = 0;
    Model m;
    if (!model_build(&m, &c.model, &backend_cpu)) return 1;
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
    double t0 = now_seconds();
    model_forward_train(&m, &bt, &o);
    double t1 = now_seconds();
    model_backward(&m, 1.0f);
    double t2 = now_seconds();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("img %d N %d micro-batch %d ckpt %d PWCA %s: forward %.2f s backward %.2f s loss %.4f | planned %.1f MiB "
           "(weights %.1f grads %.1f activations %.1f workspace %.1f; AdamW state not allocated here) | peak RSS %.1f MiB\n",
           S, m.N, B, ckpt, bt.pair ? "on" : "off", t1 - t0, t2 - t1, o.loss,
           (p.weights + p.grads + p.activations + p.workspace) / 1048576.0, p.weights / 1048576.0, p.grads / 1048576.0,
           p.activations / 1048576.0, p.workspace / 1048576.0, ru.ru_maxrss / 1024.0);
    model_free(&m);
    free(img);
    return 0;
}
