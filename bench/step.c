// step.c: full DCAL training steps with random inputs on one backend, timed per
// phase exactly as the trainer runs them (src/train/step.c, train.c, optimizer.c):
//   forward   model_zero_grads + model_forward_train
//   backward  model_backward (loss scale 1, no accumulation)
//   optimizer backend sumsq over every gradient (the trainer's finite check and
//             grad norm) + optimizer_adamw (AdamW, decay groups, a call per group)
// With train.update_in_backward (the default; --set train.update_in_backward=false
// for the other way), as the trainer at accumulation 1 on one process: each group's
// sumsq and AdamW run inside backward as its gradient becomes final, one block's
// gradient is held at a time, and the optimizer phase is only the sum of the parts.
// after warm-up steps, with the memory plan beside the measured peak (bench/README.md).
//
//   bench_step [img_size=448] [micro_batch=2] [ckpt 0|1] [backend cpu|cuda|auto] [steps=1] [peak TFLOP/s]
//              [precision, default the backend's best: see backend.h set_precision]
//              [--config FILE] [--set key=value]... [--warmup N=1] [--graphs]
// --graphs: forward and backward go through the backend's graph_run as one body, as the trainer
// runs them (recorded with DCAL_CUDA_GRAPHS=1 on CUDA); fwd_ms then holds both and bwd_ms is 0.
// --config/--set load a run config (configs/fgvc/cub.yaml …) under the positional
// arguments; without --config the model is config_defaults() (ViT-B/16, 448, CUB).
// A positional img_size sets model.img_size and data.crop together.
//
// Output: the backend's describe() line, one human line per phase and memory, and last
//   dcal: step_ms=… mean_ms=… fwd_ms=… bwd_ms=… opt_ms=… img_s=… gflops=… peak_mib=… plan_mib=…
//   (… base_mib=: the process's own resident memory at start, on the CPU)
// (bench/cpu.sh and bench/run.sh parse that line; keep its keys stable). step_ms, img_s and
// gflops are the fastest timed step's, as bench/peer.py's step_ms is (like against like);
// mean_ms and the phases are means over the timed steps.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "core/rng.h"
#include "model/plan.h"
#include "train/train.h"

// What one benchmarked run holds: the model, its AdamW state and the step count.
typedef struct {
    const DcalConfig *c;
    const Backend *be;
    Model m;
    float *am, *av;
    AdamwGroups adamw;
    int64_t step;
    bool graphs;               // --graphs: forward + backward through graph_run
    double *gsq_part, *gsq_dev;   // [n_groups], host and backend memory: update in backward (model.h grad_ready)
} Bench;

// The trainer's optimizer_in_backward at the benchmark's fixed learning rate.
static void bench_in_backward(void *ctx, int g) {
    Bench *t = ctx;
    optimizer_group_final(&t->adamw, &t->m, t->am, t->av, &t->c->optim, t->c->optim.lr, t->step, t->gsq_dev, g);
}

// The trainer's recorded body (src/train/step.c): the forward after the inputs, then the backward.
static void bench_body(void *ctx) {
    Bench *t = ctx;
    StepOut o;
    model_forward_body(&t->m, &o);
    model_backward(&t->m, 1.0f);
}

typedef struct {
    const char *pos[8];        // positional arguments, in order
    int n_pos;
    const char *config;
    const char *sets[32];
    int n_sets;
    int warmup;
    bool graphs;
} Args;

typedef struct {
    double fwd, bwd, opt;      // mean seconds per phase over the timed steps
    double best;               // fastest whole step
    double loss, gnorm;        // the last step's
    size_t dev_peak;           // CUDA: largest drop of free device memory since start
    double user, sys;          // process CPU seconds per timed step (all threads)
    double minflt;             // minor page faults per timed step
    double t_begin, t_end;     // CLOCK_MONOTONIC seconds around the timed steps (for perf report --time)
} Timing;

static int parse_args(int argc, char **argv, Args *a) {
    memset(a, 0, sizeof *a);
    a->warmup = 1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(s, "--config") && has_val) a->config = argv[++i];
        else if (!strcmp(s, "--set") && has_val && a->n_sets < 32) a->sets[a->n_sets++] = argv[++i];
        else if (!strcmp(s, "--warmup") && has_val) a->warmup = atoi(argv[++i]);
        else if (!strcmp(s, "--graphs")) a->graphs = true;
        else if (s[0] == '-' && s[1] == '-') {
            fprintf(stderr, "bench_step: %s: unknown option or missing value (see bench/README.md)\n", s);
            return 0;
        } else if (a->n_pos < 8) a->pos[a->n_pos++] = s;
    }
    return 1;
}

static const char *pos_arg(const Args *a, int i, const char *def) { return i < a->n_pos ? a->pos[i] : def; }

// The config: defaults or --config, then --set, then the positional img_size and ckpt.
static int build_config(const Args *a, DcalConfig *c) {
    config_defaults(c);
    if (a->config && !config_load(c, a->config)) return 0;
    for (int i = 0; i < a->n_sets; i++)
        if (!config_set(c, a->sets[i])) return 0;
    if (a->n_pos > 0) {
        char kv[64];
        snprintf(kv, sizeof kv, "model.img_size=%s", a->pos[0]);
        if (!config_set(c, kv)) return 0;
        snprintf(kv, sizeof kv, "data.crop=%s", a->pos[0]);
        if (!config_set(c, kv)) return 0;
    }
    if (a->n_pos > 2) {   // the positional ckpt is train.checkpoint_blocks (train.checkpoint_layers needs it)
        char kv[64];
        snprintf(kv, sizeof kv, "train.checkpoint_blocks=%s", atoi(a->pos[2]) ? "true" : "false");
        if (!config_set(c, kv)) return 0;
    }
    if (!a->config) c->model.drop_path = 0;   // the defaults-only bench has always run without drop-path
    if (!config_finalize(c)) return 0;
    if (c->train.threads > 0) omp_set_num_threads(c->train.threads);   // as setup.c does
    return 1;
}

// The backend named on the command line at the precision asked for (argument,
// else train.precision unless auto); prints its describe() line. NULL after an error line.
static const Backend *open_backend(const char *name, const char *precision) {
    const Backend *be = backend_get(name);
    if (!be) return NULL;
    if (precision && strcmp(precision, "auto") && !be->set_precision(precision)) {
        const char *note = be->precision_note ? be->precision_note() : NULL;
        fprintf(stderr, "bench_step: backend %s has no precision '%s' (supported here: %s)%s%s\n", be->name, precision,
                be->precisions, note ? ": " : "", note ? note : "");
        return NULL;
    }
    char desc[512];
    be->describe(desc, sizeof desc);
    printf("%s\n", desc);
    return be;
}

// Model FLOPs of one training step: matrix products only (patch embedding, QKV /
// projection / MLP GEMMs, QK^T and PV in SA, GLCA and PWCA with 2N keys, the
// rollout's attention-probability recompute); backward counted as 2× forward, the
// usual convention (the recomputing attention backward does a little more).
// LayerNorm, GELU, softmax, heads and AdamW are not counted.
static double step_flops(const Model *m, const ModelConfig *mc, int B, bool pwca) {
    double N = m->N, D = mc->dim, F = mc->mlp_dim, Q = 1 + m->K, P = N - 1, pp = mc->patch * mc->patch;
    double blk = 2 * N * (4 * D * D + 2 * D * F);
    double fwd = 2 * P * 3 * pp * D + mc->depth * (blk + 4 * N * N * D) + mc->glca_blocks *
                 (2 * Q * D * D + 4 * N * D * D + 2 * Q * (D * D + 2 * D * F) + 4 * Q * N * D) +
                 (mc->depth - mc->glca_blocks) * 2 * N * N * D;
    if (pwca) fwd += mc->pwca_blocks * (blk + 8 * N * N * D);
    return 3 * fwd * B;
}

// Device memory in use now relative to `free0` (CUDA); 0 for a backend that does
// not report free memory (CPU: peak RSS is read instead).
static size_t dev_used(const Backend *be, size_t free0) {
    size_t f = be->free_memory();
    return free0 && f && f < free0 ? free0 - f : 0;
}

// One trainer step; adds each phase's seconds to tm when tm != NULL.
static void one_step(Bench *t, const Batch *bt, Timing *tm, size_t free0) {
    const Backend *be = t->be;
    StepOut o;
    double t0 = now_seconds(), t1, t2;
    size_t used;
    model_zero_grads(&t->m);
    if (t->graphs) {
        model_train_inputs(&t->m, bt);
        be->graph_run(0, bench_body, t);
        be->sync();
        t1 = t2 = now_seconds();
        used = dev_used(be, free0);
    } else {
        model_forward_train(&t->m, bt, &o);
        be->sync();
        t1 = now_seconds();
        used = dev_used(be, free0);
        model_backward(&t->m, 1.0f);
        be->sync();
        t2 = now_seconds();
    }
    bool in_bwd = t->m.grad_ready != NULL;
    double gsq = optimizer_sumsq(&t->m, in_bwd ? t->gsq_dev : NULL, t->gsq_part);
    if (!in_bwd) optimizer_adamw(&t->adamw, &t->m, t->am, t->av, &t->c->optim, t->c->optim.lr, t->step);
    be->sync();
    double t3 = now_seconds();
    t->step++;
    if (!tm) return;
    model_read_outputs(&t->m, &o);   // after the timed step: a read-back is no part of it
    tm->fwd += t1 - t0;
    tm->bwd += t2 - t1;
    tm->opt += t3 - t2;
    if (tm->best == 0 || t3 - t0 < tm->best) tm->best = t3 - t0;
    tm->loss = o.loss;
    tm->gnorm = sqrt(gsq);
    size_t u = dev_used(be, free0);
    if (used > tm->dev_peak) tm->dev_peak = used;
    if (u > tm->dev_peak) tm->dev_peak = u;
}

static double cpu_s(struct timeval tv) { return tv.tv_sec + tv.tv_usec / 1e6; }

// Warm-up, then the timed steps; the rusage difference over the timed steps says
// how much of a step is system time and page faults (the warm-up pays the first touch).
static void time_steps(Bench *t, const Batch *bt, int warmup, int steps, Timing *tm, size_t free0) {
    memset(tm, 0, sizeof *tm);
    for (int s = 0; s < warmup; s++) one_step(t, bt, NULL, free0);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    tm->t_begin = now_seconds();
    for (int s = 0; s < steps; s++) one_step(t, bt, tm, free0);
    tm->t_end = now_seconds();
    getrusage(RUSAGE_SELF, &r1);
    tm->user = (cpu_s(r1.ru_utime) - cpu_s(r0.ru_utime)) / steps;
    tm->sys = (cpu_s(r1.ru_stime) - cpu_s(r0.ru_stime)) / steps;
    tm->minflt = (double)(r1.ru_minflt - r0.ru_minflt) / steps;
    tm->fwd /= steps;
    tm->bwd /= steps;
    tm->opt /= steps;
}

// Random normalised images, labels 0, the derangement b → b+1 (PWCA needs B >= 2).
static float *random_batch(Batch *bt, int B, int S, int *lab, int *pair, uint64_t seed) {
    float *img = malloc(sizeof(float) * B * 3 * S * S);
    Rng r;
    rng_init(&r, 1, 0, 0, RNG_TEST);
    for (long i = 0; i < (long)B * 3 * S * S; i++) img[i] = rng_normal(&r);
    for (int b = 0; b < B; b++) lab[b] = 0, pair[b] = (b + 1) % B;
    *bt = (Batch){.B = B, .images = img, .labels = lab, .pair = B >= 2 ? pair : NULL, .seed = seed};
    return img;
}

static void report(const Bench *t, const DcalConfig *c, int B, int ckpt, bool pwca, const Timing *tm,
                   double peak_tflops) {
    const Model *m = &t->m;
    MemPlan p;
    model_plan(&m->cfg, B, ckpt, true, &p);   // the model's copy: its Act tensors at the precision that ran
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double step = tm->fwd + tm->bwd + tm->opt, flops = step_flops(m, &c->model, B, pwca);
    double mib = 1048576.0, plan = p.total / mib, rss = ru.ru_maxrss / 1024.0;
    double peak = tm->dev_peak ? tm->dev_peak / mib : rss;
    printf("%s img %d N %d K %d micro-batch %d ckpt %d PWCA %s drop-path %.2g threads %d\n", t->be->name,
           c->model.img_size, m->N, m->K, B, ckpt, pwca ? "on" : "off", c->model.drop_path, omp_get_max_threads());
    printf("  forward %.1f ms  backward %.1f ms%s  optimizer (sumsq + AdamW) %.1f ms  step %.1f ms (best %.1f)\n",
           tm->fwd * 1e3, tm->bwd * 1e3, m->grad_ready ? " (AdamW inside)" : "", tm->opt * 1e3, step * 1e3,
           tm->best * 1e3);
    printf("  %.3f img/s  %.1f GFLOP/s over the step (%.1f over forward+backward; %.1f GFLOP model FLOPs/step)\n",
           B / step, flops / step / 1e9, flops / (tm->fwd + tm->bwd) / 1e9, flops / 1e9);
    if (peak_tflops > 0) printf("  MFU %.1f%% of %.0f TFLOP/s\n", 100 * flops / step / 1e12 / peak_tflops, peak_tflops);
    printf("  loss %.4f  grad norm %.4g\n", tm->loss, tm->gnorm);
    printf("  planned %.1f MiB (weights %.1f grads %.1f AdamW %.1f activations %.1f workspace %.1f) | %s %.1f MiB\n",
           plan, p.weights / mib, p.grads / mib, p.optimizer / mib, p.activations / mib, p.workspace / mib,
           tm->dev_peak ? "device used" : "peak RSS", peak);
    // The backend's own scratch (CUDA: plus cuBLASLt's workspace; plan_cuda_extra / plan_cpu_extra),
    // beside what the scratch really peaked at: dcal plan prints the same line.
    bool cuda = !strcmp(t->be->name, "cuda");
    double extra = (cuda ? plan_cuda_extra(&m->cfg, B) : plan_cpu_extra(&m->cfg, B)) / mib;
    double scratch = t->be->scratch_peak() / mib;
    if (cuda)
        printf("  beyond the plan: scratch peak %.1f MiB (planned %.1f) + cuBLASLt workspace %.1f MiB: planned "
               "device total %.1f MiB\n", scratch, plan_cuda_scratch(&m->cfg, B) / mib,
               CUDA_LT_WORKSPACE_BYTES / mib, plan + extra);
    else if (extra > 0)   // the CPU: its op scratch, and at bf16 its GEMMs' operand copies (cpu_scratch_rule.h)
        printf("  beyond the plan: the CPU backend's scratch peaked at %.1f MiB (planned %.1f): planned total "
               "%.1f MiB\n", scratch, extra, plan + extra);
    double base = cuda ? 0 : process_rss_at_start() / mib;   // host RSS holds the process itself too
    if (!cuda)
        printf("  the process itself at start %.1f MiB: planned %.1f MiB in all against peak RSS %.1f MiB (%+.1f%%)\n",
               base, plan + extra + base, peak, 100 * (peak / (plan + extra + base) - 1));
    printf("  per timed step: user %.2f s  system %.2f s (CPU time, all threads)  minor page faults %.0f\n",
           tm->user, tm->sys, tm->minflt);
    printf("  timed steps: CLOCK_MONOTONIC %.6f to %.6f (perf record -k CLOCK_MONOTONIC; perf report --time %.6f,%.6f)\n",
           tm->t_begin, tm->t_end, tm->t_begin, tm->t_end);
    printf("dcal: step_ms=%.1f mean_ms=%.1f fwd_ms=%.1f bwd_ms=%.1f opt_ms=%.1f img_s=%.4f gflops=%.1f peak_mib=%.1f "
           "plan_mib=%.1f user_s=%.2f sys_s=%.2f faults=%.0f backend_plan_mib=%.1f scratch_peak_mib=%.1f base_mib=%.1f\n",
           tm->best * 1e3, step * 1e3, tm->fwd * 1e3, tm->bwd * 1e3, tm->opt * 1e3, B / tm->best,
           flops / tm->best / 1e9, peak, plan, tm->user, tm->sys, tm->minflt, extra, scratch, base);
}

int main(int argc, char **argv) {
    Args a;
    DcalConfig c;
    if (!parse_args(argc, argv, &a) || !build_config(&a, &c)) return 1;
    int B = atoi(pos_arg(&a, 1, "2")), ckpt = atoi(pos_arg(&a, 2, "0")), steps = atoi(pos_arg(&a, 4, "1"));
    double peak_tflops = atof(pos_arg(&a, 5, "0"));
    if (B < 1 || B > 64 || steps < 1 || a.warmup < 0) {
        fprintf(stderr, "bench_step: micro_batch must be 1..64, steps >= 1, warmup >= 0\n");
        return 1;
    }
    const Backend *be = open_backend(pos_arg(&a, 3, "cpu"), pos_arg(&a, 6, c.train.precision));
    if (!be) return 1;
    size_t free0 = be->free_memory();
    static Bench t;
    t.c = &c;
    t.graphs = a.graphs;
    t.be = be;
    ModelConfig mc = c.model;   // one process, no accumulation: the update in backward applies unless recorded
    mc.grads_per_block = config_update_in_backward(&c.train, 1, 1) && !a.graphs;
    mc.act_bytes = (int)be->act_bytes();   // the precision opened, before the backend's rules (config.h)
    config_model_backend(&mc, be->name, c.train.threads);   // as config_resolve sets it for a run on this backend
    if (!model_build(&t.m, &mc, be)) return 1;
    model_init_weights(&t.m, c.train.seed);
    if (!model_alloc_activations(&t.m, B, ckpt, true)) return 1;
    t.am = be->alloc(t.m.n_params * sizeof(float));
    t.av = be->alloc(t.m.n_params * sizeof(float));
    adamw_groups_make(&t.adamw, &t.m);
    t.gsq_part = calloc((size_t)t.m.n_groups, sizeof(double));
    t.gsq_dev = be->alloc((size_t)t.m.n_groups * sizeof(double));
    if (mc.grads_per_block) {
        t.m.grad_ready = bench_in_backward;
        t.m.grad_ctx = &t;
    }
    int lab[64], pair[64];
    Batch bt;
    float *img = random_batch(&bt, B, c.model.img_size, lab, pair, c.train.seed);
    Timing tm;
    time_steps(&t, &bt, a.warmup, steps, &tm, free0);
    if (!isfinite(tm.loss) || !isfinite(tm.gnorm)) fprintf(stderr, "bench_step: warning: loss or gradient not finite\n");
    report(&t, &c, B, ckpt, bt.pair != NULL, &tm, peak_tflops);
    be->free(t.am);
    be->free(t.av);
    adamw_groups_free(&t.adamw);
    model_free(&t.m);
    free(t.gsq_part);
    be->free(t.gsq_dev);
    free(img);
    return 0;
}
