// train.c: the training loop (SPEC §4). One optimizer step = accum_steps
// micro-batches whose gradients average (loss scaled by 1/accum), then AdamW
// per tensor (weight decay only where ParamTensor.decay). Everything random is
// keyed by (seed, position), so a run stopped and resumed from its checkpoint
// ends bit for bit where an uninterrupted run ends (CPU).
#include "train/train.h"
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "train/checkpoint.h"
#include "model/plan.h"
#include "core/rng.h"
#include "run/rundir.h"
#include "core/safetensors.h"
#include "core/sha256.h"
#include "model/weights.h"

static volatile sig_atomic_t stop_signal = 0;
static void on_signal(int s) { stop_signal = s; }

double lr_at(const OptimConfig *o, long s, long total, long warm) {
    if (!strcmp(o->schedule, "constant")) return o->lr;
    if (s < warm) return o->warmup_lr + (o->lr - o->warmup_lr) * (double)s / warm;
    double t = total > warm ? (double)(s - warm) / (total - warm) : 1.0;
    return o->min_lr + 0.5 * (o->lr - o->min_lr) * (1.0 + cos(M_PI * t));
}

void pwca_pairing(int *pair, int B, uint64_t seed, uint64_t micro_step) {
    Rng r;
    rng_init(&r, seed, 0, micro_step, RNG_PAIR);
    for (;;) {   // uniform over derangements: shuffle until no fixed point (≈ e tries)
        for (int i = 0; i < B; i++) pair[i] = i;
        for (int i = B - 1; i > 0; i--) {
            int j = (int)rng_below(&r, (uint32_t)(i + 1)), t = pair[i];
            pair[i] = pair[j];
            pair[j] = t;
        }
        int fixed = 0;
        for (int i = 0; i < B; i++) fixed |= pair[i] == i;
        if (!fixed) return;
    }
}

int evaluate(Model *m, const Dataset *ds, const DcalConfig *c, EvalResult *out) {
    int B = m->B, C = m->cfg.num_classes, S = m->cfg.img_size;
    Loader *L = loader_create(ds, &c->data, false, B, c->train.seed);
    if (!L) return 0;
    float *img = xmalloc(sizeof(float) * B * 3 * S * S), *ls = xmalloc(sizeof(float) * B * C),
          *lg = xmalloc(sizeof(float) * B * C);
    int *lab = xmalloc(sizeof(int) * B), *ids = xmalloc(sizeof(int) * B);
    int *cls_n = xcalloc((size_t)C, sizeof(int)), *cls_ok = xcalloc((size_t)C, sizeof(int));
    long ok[3] = {0, 0, 0}, n = 0;
    int rows, fail = 0;
    loader_start(L, 0, 0);
    while ((rows = loader_next(L, img, lab, ids)) > 0) {
        model_forward_infer(m, img, rows, ls, lg, NULL);
        for (int b = 0; b < rows; b++) {
            const float *a = ls + (size_t)b * C, *g = lg + (size_t)b * C;
            float ma = a[0], mg = g[0];
            for (int k = 1; k < C; k++) { ma = fmaxf(ma, a[k]); mg = fmaxf(mg, g[k]); }
            double za = 0, zg = 0;
            for (int k = 0; k < C; k++) { za += exp(a[k] - ma); zg += exp(g[k] - mg); }
            int pa = 0, pg = 0, pc = 0;
            double best = -1;
            for (int k = 0; k < C; k++) {
                if (a[k] > a[pa]) pa = k;
                if (g[k] > g[pg]) pg = k;
                double p = exp(a[k] - ma) / za + exp(g[k] - mg) / zg;   // SPEC §3: softmax sum
                if (p > best) { best = p; pc = k; }
            }
            ok[0] += pa == lab[b];
            ok[1] += pg == lab[b];
            ok[2] += pc == lab[b];
            cls_n[lab[b]]++;
            cls_ok[lab[b]] += pc == lab[b];
            n++;
        }
    }
    if (rows < 0) fail = 1;
    double mca = 0;
    int present = 0;
    for (int k = 0; k < C; k++)
        if (cls_n[k]) { mca += (double)cls_ok[k] / cls_n[k]; present++; }
    out->n = (int)n;
    out->acc_sa = n ? (double)ok[0] / n : 0;
    out->acc_glca = n ? (double)ok[1] / n : 0;
    out->acc_combined = n ? (double)ok[2] / n : 0;
    out->mean_class_acc = present ? mca / present : 0;
    loader_destroy(L);
    free(img); free(ls); free(lg); free(lab); free(ids); free(cls_n); free(cls_ok);
    return !fail;
}

// For error messages that stop a run: what the user still has on disk.
static const char *checkpoint_state(const char *path) {
    static char buf[DCAL_PATH_MAX + 64];
    if (path[0] && access(path, F_OK) == 0) snprintf(buf, sizeof buf, "the last checkpoint is untouched: %s", path);
    else snprintf(buf, sizeof buf, "no checkpoint written");
    return buf;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

typedef struct {   // what --dump-step collects over the first optimizer step
    StWriter *w;
    float *input, *logits[3], *ce, *loss;
    int *labels, *pair, *sel;
    int rows;
} Dump;

static void dump_micro(Dump *d, const Model *m, const float *img, const int *lab, const int *pair, const StepOut *o,
                       int micro, int k) {
    int S = m->cfg.img_size, C = m->cfg.num_classes, Q = 1 + m->K;
    size_t r0 = (size_t)k * micro;
    memcpy(d->input + r0 * 3 * S * S, img, sizeof(float) * micro * 3 * S * S);
    memcpy(d->labels + r0, lab, sizeof(int) * micro);
    memcpy(d->pair + r0, pair, sizeof(int) * micro);
    memcpy(d->sel + r0 * Q, o->sel, sizeof(int) * micro * Q);
    for (int h = 0; h < 3; h++) memcpy(d->logits[h] + r0 * C, o->logits[h], sizeof(float) * micro * C);
    for (int h = 0; h < 3; h++) d->ce[k * 3 + h] = o->ce[h];
    d->loss[k] = o->loss;
}

static int dump_write(Dump *d, const Model *m, int accum, int micro, const char *path, uint64_t seed) {
    int S = m->cfg.img_size, C = m->cfg.num_classes, Q = 1 + m->K, R = accum * micro;
    StWriter *w = stw_new();
    stw_add_f32(w, "input", d->input, 4, (int64_t[]){R, 3, S, S});
    stw_add_i32(w, "labels", d->labels, 1, (int64_t[]){R});
    stw_add_i32(w, "pair", d->pair, 2, (int64_t[]){accum, micro});
    stw_add_i32(w, "sel", d->sel, 2, (int64_t[]){R, Q});
    stw_add_f32(w, "logits.sa", d->logits[0], 2, (int64_t[]){R, C});
    stw_add_f32(w, "logits.glca", d->logits[1], 2, (int64_t[]){R, C});
    stw_add_f32(w, "logits.pwca", d->logits[2], 2, (int64_t[]){R, C});
    stw_add_f32(w, "ce", d->ce, 2, (int64_t[]){accum, 3});
    stw_add_f32(w, "loss", d->loss, 1, (int64_t[]){accum});
    weights_add(m, w, "grad.", m->grads);
    weights_add(m, w, "", m->params);
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)seed);
    stw_meta(w, "seed", buf);
    stw_meta(w, "note", "pair[k][b]: distractor index of row b within micro-batch k; pair, sel, logits, ce, loss per "
                        "micro-batch; grad.* is the accumulated gradient of the first optimizer step (before AdamW)");
    int ok = stw_write(w, path);
    stw_free(w);
    return ok;
}

int train_main(DcalConfig *c, const TrainOptions *o) {
    const Backend *be = backend_get(c->train.device);
    if (!be) return DCAL_EXIT_FAIL;
    if (c->train.threads > 0) omp_set_num_threads(c->train.threads);
    int eff = config_effective_batch(c);
    size_t budget = 0;
    const char *budget_from = NULL;
    if (o->max_memory) {
        budget = plan_parse_size(o->max_memory);
        budget_from = o->max_memory;
        if (!budget) { dcal_err("--max-memory '%s': expected a size like 8G or 512M", o->max_memory); return DCAL_EXIT_USAGE; }
    }
#ifdef DCAL_HAVE_CUDA
    else if (be == &backend_cuda) {   // DESIGN §4: fit the micro-batch to the device, never OOM mid-run
        budget = cuda_free_memory() / 100 * 95;   // 5% for cuBLAS workspaces and the CUDA context's growth
        budget_from = "free device memory";
    }
#endif
    if (budget) {
        int per_dev = eff / c->train.devices;
        int mb = plan_pick_micro_batch(&c->model, per_dev, c->train.checkpoint_blocks, budget);
        if (!mb) {
            dcal_err("%s (%.1f MiB): even micro-batch 2 needs %.1f MiB (try --set train.checkpoint_blocks=true)",
                     budget_from, budget / 1048576.0,
                     plan_train_bytes(&c->model, 2, c->train.checkpoint_blocks) / 1048576.0);
            return DCAL_EXIT_FAIL;
        }
        c->train.micro_batch = mb;
        c->train.accum_steps = per_dev / mb;
        printf("memory plan: micro-batch %d x accumulation %d x devices %d = %d (%.1f MiB of %.1f MiB %s)\n", mb,
               c->train.accum_steps, c->train.devices, eff,
               plan_train_bytes(&c->model, mb, c->train.checkpoint_blocks) / 1048576.0, budget / 1048576.0, budget_from);
    }
    int micro = c->train.micro_batch, accum = c->train.accum_steps;
    if (c->model.pwca_blocks > 0 && micro < 2) {
        dcal_err("train.micro_batch=1: PWCA pairs each image with another image of the same micro-batch (SPEC §2), so "
                 "the micro-batch must be at least 2");
        return DCAL_EXIT_FAIL;
    }
    Dataset ds;
    if (!dataset_open(&ds, &c->data)) return DCAL_EXIT_FAIL;
    int rc = DCAL_EXIT_FAIL;
    Model m = {0};
    RunDir run = {0};
    Loader *L = NULL;
    float *am = NULL, *av = NULL, *img = NULL;
    int *lab = NULL, *ids = NULL, pair[4096];
    Dump dump = {0};
    if (ds.num_classes != c->model.num_classes) {
        dcal_err("%s: dataset '%s' at %s has %d classes but model.num_classes is %d", c->source, ds.name, ds.root,
                 ds.num_classes, c->model.num_classes);
        goto out;
    }
    if (micro > 4096) { dcal_err("train.micro_batch %d too large", micro); goto out; }
    if (!model_build(&m, &c->model, be)) goto out;
    m.uncertainty_weighting = c->loss.uncertainty_weighting;
    am = be->alloc(m.n_params * sizeof(float));
    av = be->alloc(m.n_params * sizeof(float));
    TrainPos pos = {.seed = c->train.seed};
    char ckpt_path[DCAL_PATH_MAX + 32] = "", init_hash[65] = "", pre_hash[65] = "";
    if (o->resume_dir) {
        snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint.safetensors", o->resume_dir);
        if (!checkpoint_load(ckpt_path, &m, am, av, &pos)) goto out;
        if (pos.seed != c->train.seed) { dcal_err("%s: seed %llu differs from the run's config", ckpt_path, (unsigned long long)pos.seed); goto out; }
    } else if (o->init_path) {
        SafeTensors st;
        if (!st_load(&st, o->init_path)) goto out;
        int ok = weights_load_exact(&m, &st, 1);   // a checkpoint or a dump carries more than weights
        st_free(&st);
        if (!ok || !sha256_file(o->init_path, init_hash)) goto out;
    } else if (c->train.pretrained[0]) {
        model_init_weights(&m, c->train.seed);   // heads and loss weights keep their init
        if (!weights_load_pretrained(&m, c->train.pretrained) || !sha256_file(c->train.pretrained, pre_hash)) goto out;
    } else {
        model_init_weights(&m, c->train.seed);
    }
    if (!model_alloc_activations(&m, micro, c->train.checkpoint_blocks, true)) goto out;
    L = loader_create(&ds, &c->data, true, micro, c->train.seed);
    if (!L) goto out;
    int nb = loader_num_batches(L), spe = nb / accum;
    if (spe < 1) {
        dcal_err("%s: %d training images give %d micro-batches of %d: fewer than one optimizer step of %d", ds.root,
                 ds.n_train, nb, micro, accum);
        goto out;
    }
    long total = (long)spe * c->optim.epochs, warm = (long)spe * c->optim.warmup_epochs;
    int S = c->model.img_size, C = c->model.num_classes;
    img = xmalloc(sizeof(float) * micro * 3 * S * S);
    lab = xmalloc(sizeof(int) * micro);
    ids = xmalloc(sizeof(int) * micro);
    if (o->dump_path) {
        int R = accum * micro, Q = 1 + m.K;
        dump.input = xmalloc(sizeof(float) * R * 3 * S * S);
        dump.labels = xmalloc(sizeof(int) * R);
        dump.pair = xmalloc(sizeof(int) * R);
        dump.sel = xmalloc(sizeof(int) * R * Q);
        for (int h = 0; h < 3; h++) dump.logits[h] = xmalloc(sizeof(float) * R * C);
        dump.ce = xmalloc(sizeof(float) * accum * 3);
        dump.loss = xmalloc(sizeof(float) * accum);
    } else {
        if (!rundir_open(&run, c, o->resume_dir != NULL)) goto out;
        if (!o->resume_dir) {
            ManifestInfo info = {.argc = o->argc, .argv = o->argv, .backend = be->name, .device_name = "",
                                 .dataset_fingerprint = ds.fingerprint, .pretrained_path = c->train.pretrained,
                                 .pretrained_sha256 = pre_hash, .init_path = o->init_path ? o->init_path : "",
                                 .init_sha256 = init_hash, .n_allowed = o->n_allowed, .allowed = o->allowed};
            if (!rundir_write_manifest(&run, c, &info)) goto out;
        }
        snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint.safetensors", run.dir);
        MemPlan mp;
        model_plan(&c->model, micro, c->train.checkpoint_blocks, true, &mp);
        printf("dcal: run %s | %s backend | %s: %d train / %d test images, %d classes | micro-batch %d x accum %d "
               "(effective %d) | %ld steps (%d per epoch) | planned memory %.1f MiB\n",
               run.dir, be->name, ds.name, ds.n_train, ds.n_test, ds.num_classes, micro, accum, eff, total, spe,
               mp.total / 1048576.0);
        if (o->resume_dir) printf("dcal: resuming at step %lld (epoch %d, micro-batch %d)\n", (long long)pos.step, pos.epoch + 1, pos.batch);
        fflush(stdout);
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int log_every = spe / 5 > 0 ? spe / 5 : 1;
    double t_start = now_seconds(), t_log = t_start, best_comb = -1;
    long steps_timed = 0, imgs_since = 0;
    int best_epoch = -1;
    double sum_loss = 0, sum_ce[3] = {0, 0, 0};
    int n_sum = 0;
    for (int epoch = pos.epoch; epoch < c->optim.epochs; epoch++) {
        int b = epoch == pos.epoch ? pos.batch : 0;
        loader_start(L, epoch, b);
        while (b + accum <= spe * accum) {
            model_zero_grads(&m);
            for (int k = 0; k < accum; k++) {
                int rows = loader_next(L, img, lab, ids);
                if (rows < 0) goto out;
                if (rows != micro) { dcal_err("internal: loader gave %d rows, expected %d", rows, micro); goto out; }
                pwca_pairing(pair, micro, c->train.seed, (uint64_t)pos.micro_step);
                Batch bt = {.B = micro, .images = img, .labels = lab, .pair = c->model.pwca_blocks ? pair : NULL,
                            .seed = c->train.seed, .step = (uint64_t)pos.micro_step};
                StepOut so;
                model_forward_train(&m, &bt, &so);
                if (!isfinite(so.loss)) {
                    dcal_err("step %lld: loss is %g (CE SA %g, GLCA %g, PWCA %g): stopping; %s", (long long)pos.step + 1,
                             so.loss, so.ce[0], so.ce[1], so.ce[2], checkpoint_state(ckpt_path));
                    goto out;
                }
                model_backward(&m, 1.0f / accum);
                if (o->dump_path) dump_micro(&dump, &m, img, lab, pair, &so, micro, k);
                pos.micro_step++;
                sum_loss += so.loss;
                for (int h = 0; h < 3; h++) sum_ce[h] += so.ce[h];
                n_sum++;
            }
            b += accum;
            if (o->dump_path) {
                rc = dump_write(&dump, &m, accum, micro, o->dump_path, c->train.seed) ? DCAL_EXIT_OK : DCAL_EXIT_FAIL;
                if (rc == DCAL_EXIT_OK) printf("dcal: wrote the first optimizer step to %s\n", o->dump_path);
                goto out;
            }
            double lr = lr_at(&c->optim, pos.step, total, warm);
            double gsq = be->sumsq(m.grads, m.n_params);
            if (!isfinite(gsq)) {
                dcal_err("step %lld: gradient is not finite: stopping; %s", (long long)pos.step + 1,
                         checkpoint_state(ckpt_path));
                goto out;
            }
            for (int i = 0; i < m.n_tensors; i++) {   // SPEC §4: no decay on biases, LN, pos/cls, loss_w
                const ParamTensor *t = &m.tensors[i];
                be->adamw_update(m.params + t->offset, m.grads + t->offset, am + t->offset, av + t->offset, t->numel,
                                 (float)lr, (float)c->optim.beta1, (float)c->optim.beta2, (float)c->optim.eps,
                                 t->decay ? (float)c->optim.weight_decay : 0.0f, (int)(pos.step + 1));
            }
            pos.step++;
            pos.epoch = epoch;
            pos.batch = b;
            steps_timed++;
            imgs_since += (long)micro * accum;
            bool end_epoch = b + accum > spe * accum;
            if (pos.step % log_every == 0 || end_epoch) {
                double now = now_seconds(), ips = imgs_since / fmax(now - t_log, 1e-9);
                double per_step = (now - t_start) / steps_timed, eta = per_step * (total - pos.step);
                float w[3];
                be->to_host(w, m.params + model_find(&m, "loss_w")->offset, sizeof w);
                printf("step %lld/%ld epoch %d/%d loss %.4f (ce sa %.4f glca %.4f pwca %.4f) lr %.3e |g| %.3e "
                       "%.1f img/s ETA %dm%02ds rss %.0f MiB\n",
                       (long long)pos.step, total, epoch + 1, c->optim.epochs, sum_loss / n_sum, sum_ce[0] / n_sum,
                       sum_ce[1] / n_sum, sum_ce[2] / n_sum, lr, sqrt(gsq), ips, (int)(eta / 60), (int)eta % 60,
                       peak_rss_mb());
                fflush(stdout);
                char line[512];
                snprintf(line, sizeof line,
                         "{\"kind\":\"train\",\"step\":%lld,\"epoch\":%d,\"loss\":%.6g,\"ce_sa\":%.6g,\"ce_glca\":%.6g,"
                         "\"ce_pwca\":%.6g,\"lr\":%.6g,\"grad_norm\":%.6g,\"loss_w\":[%.6g,%.6g,%.6g],\"img_s\":%.3g,"
                         "\"rss_mib\":%.1f,\"skipped_images\":%d}",
                         (long long)pos.step, epoch + 1, sum_loss / n_sum, sum_ce[0] / n_sum, sum_ce[1] / n_sum,
                         sum_ce[2] / n_sum, lr, sqrt(gsq), w[0], w[1], w[2], ips, peak_rss_mb(), loader_skipped(L));
                rundir_metric(&run, line);
                t_log = now;
                imgs_since = 0;
                sum_loss = 0;
                sum_ce[0] = sum_ce[1] = sum_ce[2] = 0;
                n_sum = 0;
            }
            bool stop_now = stop_signal || (c->train.max_steps > 0 && pos.step >= c->train.max_steps);
            if (stop_now) {
                if (!checkpoint_save(ckpt_path, &m, am, av, &pos)) goto out;
                printf("dcal: %s at step %lld: checkpoint %s saved; continue with 'dcal train --resume %s'\n",
                       stop_signal ? "interrupted" : "stopped (train.max_steps)", (long long)pos.step, ckpt_path, run.dir);
                rc = DCAL_EXIT_OK;
                goto out;
            }
        }
        bool last = epoch + 1 == c->optim.epochs;
        pos.epoch = epoch + 1;
        pos.batch = 0;
        if ((c->train.eval_every && (epoch + 1) % c->train.eval_every == 0) || last) {
            EvalResult er;
            if (!evaluate(&m, &ds, c, &er)) goto out;
            if (er.acc_combined > best_comb) { best_comb = er.acc_combined; best_epoch = epoch + 1; }
            if (c->model.glca_blocks > 0)
                printf("eval epoch %d/%d (test split, %d images): top-1 SA %.2f%% GLCA %.2f%% SA+GLCA %.2f%% | mean "
                       "per-class %.2f%%\n", epoch + 1, c->optim.epochs, er.n, 100 * er.acc_sa, 100 * er.acc_glca,
                       100 * er.acc_combined, 100 * er.mean_class_acc);
            else
                printf("eval epoch %d/%d (test split, %d images): top-1 SA %.2f%% (SA-only model: no GLCA) | mean "
                       "per-class %.2f%%\n", epoch + 1, c->optim.epochs, er.n, 100 * er.acc_sa, 100 * er.mean_class_acc);
            fflush(stdout);
            char line[400];
            snprintf(line, sizeof line,
                     "{\"kind\":\"eval\",\"split\":\"test\",\"step\":%lld,\"epoch\":%d,\"n\":%d,\"acc_sa\":%.6f,"
                     "\"acc_glca\":%.6f,\"acc_combined\":%.6f,\"mean_class_acc\":%.6f}",
                     (long long)pos.step, epoch + 1, er.n, er.acc_sa, er.acc_glca, er.acc_combined, er.mean_class_acc);
            rundir_metric(&run, line);
        }
        if ((c->train.save_every && (epoch + 1) % c->train.save_every == 0) || last)
            if (!checkpoint_save(ckpt_path, &m, am, av, &pos)) goto out;
        if (stop_signal && !last) {   // a signal during eval: stop at the epoch boundary
            if (!checkpoint_save(ckpt_path, &m, am, av, &pos)) goto out;
            printf("dcal: interrupted at step %lld (after epoch %d): checkpoint %s saved; continue with 'dcal train "
                   "--resume %s'\n", (long long)pos.step, epoch + 1, ckpt_path, run.dir);
            rc = DCAL_EXIT_OK;
            goto out;
        }
    }
    {
        char hex[65];
        checkpoint_params_sha256(&m, hex);
        printf("dcal: done: %lld steps in %.1f s; final weights sha256 %s; checkpoint %s\n", (long long)pos.step,
               now_seconds() - t_start, hex, ckpt_path);
        if (loader_skipped(L))   // data.skip_bad: never silent
            printf("dcal: WARNING: unreadable training images were skipped %d time(s) over the run (data.skip_bad; "
                   "see skipped_images in metrics.jsonl)\n", loader_skipped(L));
        if (best_epoch > 0)
            printf("dcal: the reported accuracy is the last epoch's; the best epoch on the TEST split was %d (%.2f%% "
                   "SA+GLCA) — selected on the test split, so not an unbiased estimate\n", best_epoch, 100 * best_comb);
        char line[256];
        snprintf(line, sizeof line, "{\"kind\":\"final\",\"step\":%lld,\"params_sha256\":\"%s\",\"best_epoch_on_test\":%d}",
                 (long long)pos.step, hex, best_epoch);
        rundir_metric(&run, line);
    }
    rc = DCAL_EXIT_OK;
out:
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (L) loader_destroy(L);
    if (run.metrics) rundir_close(&run);
    if (am) be->free(am);
    if (av) be->free(av);
    if (m.params) model_free(&m);
    dataset_free(&ds);
    free(img); free(lab); free(ids);
    free(dump.input); free(dump.labels); free(dump.pair); free(dump.sel);
    for (int h = 0; h < 3; h++) free(dump.logits[h]);
    free(dump.ce); free(dump.loss);
    return rc;
}
