// setup.c: everything before the first step — backend, dataset, model and
// its starting weights (resume, --init, --pretrained or the paper's init),
// activations, loader, run directory and manifest — and the teardown.
#include <errno.h>
#include <omp.h>
#include <string.h>
#include <unistd.h>
#include "core/json.h"
#include "core/safetensors.h"
#include "core/sha256.h"
#include "dist/dist.h"
#include "model/plan.h"
#include "model/weights.h"
#include "train/trainer.h"

const char *trainer_checkpoint_state(const Trainer *t) {
    static char buf[DCAL_PATH_MAX + 128];
    if (t->ckpt_path[0] && access(t->ckpt_path, F_OK) == 0)
        snprintf(buf, sizeof buf, "the last checkpoint is untouched: %s", t->ckpt_path);
    else
        snprintf(buf, sizeof buf, "no checkpoint written");
    return buf;
}

// Starting weights: a run's checkpoint (with AdamW state and position), exact
// weights (--init), timm weights over the paper init (--pretrained), or the init.
// The paper's init, then timm weights over it when the config names them.
static int init_weights(Trainer *t) {
    const DcalConfig *c = t->c;
    model_init_weights(&t->m, c->train.seed);   // with pretrained weights, heads and loss weights keep their init
    if (!c->train.pretrained[0]) return 1;
    return weights_load_pretrained(&t->m, c->train.pretrained) && sha256_file(c->train.pretrained, t->pre_hash);
}

// A run stopped (kill -9, power) before its first checkpoint: start it again
// from step 0 — the same init from the same seed — unless it began from --init
// weights, which only the user can give again.
static int restart_without_checkpoint(Trainer *t) {
    char path[DCAL_PATH_MAX + 32];
    size_t len;
    snprintf(path, sizeof path, "%s/manifest.json", t->o->resume_dir);
    char *text = read_file(path, &len);
    Json man;
    if (!text || !json_parse(text, len, 0, &man, NULL)) {
        dcal_err("%s: cannot read the run's manifest", path);
        free(text);
        return 0;
    }
    const char *init = json_str(json_get(&man, "init"), "path");
    int ok = !init || !*init;
    if (!ok) dcal_err("%s: no checkpoint yet, and the run started from --init %s: start it again with it", t->o->resume_dir, init);
    json_free(&man);
    free(text);
    if (!ok) return 0;
    printf("dcal: %s has no checkpoint yet (stopped before the first save): starting again from step 0\n",
           t->o->resume_dir);
    return init_weights(t);
}

size_t train_host_bytes(const DcalConfig *c, int micro) {
    size_t batch = (size_t)3 * c->model.img_size * c->model.img_size * sizeof(float) * (size_t)micro;
    size_t train = loader_plan_bytes(&c->data, micro) + 2 * batch;   // img_buf[2], filled in turn
    size_t eval = loader_plan_bytes(&c->data, micro) + batch;        // evaluate(): its loader and one batch
    size_t ckpt = plan_largest_tensor(&c->model);                    // one tensor at a time (checkpoint.c)
    // Evaluation and saving take turns, but what one freed may stay with the allocator (its
    // mmap threshold grows with freed blocks): both are counted (measured: +13 MiB after both).
    return train + eval + ckpt;
}

size_t train_planned_bytes(const DcalConfig *c, int B, int accum, int world, bool ckpt) {
    ModelConfig m = c->model;
    m.grads_per_block = c->model.grads_per_block && accum == 1 && world <= 1;
    MemPlan p;
    model_plan(&m, B, ckpt, true, &p);
    size_t n = p.grads / sizeof(float), reduce = reduce_extra_bytes(n, accum, world);
    if (m.on_cuda) return p.total + reduce + plan_cuda_extra(&m, B);
    return p.total + reduce + plan_cpu_extra(&m, B) + train_host_bytes(c, B);
}

static int load_start_weights(Trainer *t) {
    const DcalConfig *c = t->c;
    Model *m = &t->m;
    if (t->o->resume_dir) {
        snprintf(t->ckpt_path, sizeof t->ckpt_path, "%s/checkpoint.safetensors", t->o->resume_dir);
        if (access(t->ckpt_path, F_OK) != 0 && errno == ENOENT) return restart_without_checkpoint(t);
        if (!checkpoint_load(t->ckpt_path, m, t->am, t->av, &t->pos)) return 0;
        if (t->pos.seed != c->train.seed) {
            dcal_err("%s: seed %llu differs from the run's config", t->ckpt_path, (unsigned long long)t->pos.seed);
            return 0;
        }
    } else if (t->o->init_path) {
        SafeTensors st;
        if (!st_load(&st, t->o->init_path)) return 0;
        int ok = weights_load_exact(m, &st, 1, 0);   // a checkpoint or a dump carries more than weights
        st_free(&st);
        if (!ok || !sha256_file(t->o->init_path, t->init_hash)) return 0;
    } else {
        return init_weights(t);
    }
    return 1;
}

static int open_data_and_model(Trainer *t) {
    const DcalConfig *c = t->c;
    if (!dataset_open(&t->ds, &c->data)) return 0;
    t->ds_open = true;
    if (!trainer_check_ranks(t)) return 0;
    // data.root may change on resume; the files it names may not.
    if (t->o->resume_dir && t->rank == 0 && !rundir_check_dataset(&t->run, t->ds.root, t->ds.fingerprint)) return 0;
    if (t->ds.num_classes != c->model.num_classes) {
        dcal_err("%s: dataset '%s' at %s has %d classes but model.num_classes is %d", c->source, t->ds.name,
                 t->ds.root, t->ds.num_classes, c->model.num_classes);
        return 0;
    }
    if (t->micro > 4096) { dcal_err("train.micro_batch %d too large", t->micro); return 0; }
    // train.update_in_backward, as config_resolve settled it (model.grads_per_block): AdamW
    // updates each group as backward finishes its gradient, so one block's gradient is held
    // at a time. A dump writes the whole gradient, so it keeps it.
    ModelConfig mc = c->model;
    mc.grads_per_block = c->model.grads_per_block && !t->o->dump_path;
    if (!model_build(&t->m, &mc, t->be)) return 0;
    t->m.uncertainty_weighting = c->loss.uncertainty_weighting;
    t->in_backward = mc.grads_per_block;
    if (t->in_backward) {
        t->gsq_part = xcalloc((size_t)t->m.n_groups, sizeof(double));
        t->gsq_dev = t->be->alloc((size_t)t->m.n_groups * sizeof(double));
        t->m.grad_ready = optimizer_in_backward;
        t->m.grad_ctx = t;
    }
    t->am = t->be->alloc(t->m.n_params * sizeof(float));
    t->av = t->be->alloc(t->m.n_params * sizeof(float));
    adamw_groups_make(&t->adamw, &t->m);
    t->pos = (TrainPos){.seed = c->train.seed};
    if (!load_start_weights(t)) return 0;
    if (!trainer_open_val(t)) return 0;   // after the fingerprint, which covers the whole training split
    Transport tr;
    if (!transport_for(t->be, t->world, &tr) ||
        !reducer_init(&t->red, t->be, &tr, t->m.grads, t->m.n_grads, t->accum, t->rank, t->world))
        return 0;
    t->micro_sums = xcalloc((size_t)t->group * 4, sizeof(double));
    t->loss_dev = t->be->alloc((size_t)t->accum * 4 * sizeof(float));
    return model_alloc_activations(&t->m, t->micro, c->train.checkpoint_blocks, true);
}

static int open_loader(Trainer *t) {
    const DcalConfig *c = t->c;
    t->L = loader_create(&t->ds, &c->data, true, t->micro, c->train.seed);
    if (!t->L) return 0;
    loader_set_shard(t->L, t->rank, t->world, t->accum);
    loader_set_stop_flag(t->L, &train_stop_signal);   // a stuck file must not hold off SIGTERM
    loader_set_skipped(t->L, (int)t->pos.skipped);      // resumed: the count over the whole run goes on
    int nb = loader_num_batches(t->L);
    t->spe = nb / t->accum;
    if (t->spe < 1) {
        dcal_err("%s: %d training images give %d micro-batches of %d: fewer than one optimizer step of %d",
                 t->ds.root, t->ds.n_train, nb, t->micro, t->accum);
        return 0;
    }
    t->total = (long)t->spe * c->optim.epochs;
    t->warm = (long)t->spe * c->optim.warmup_epochs;
    // A checkpoint's position must lie in this run's schedule, or a resume would
    // quietly skip training (checkpoint_load has bounded each number already).
    // Its batch counts every rank's micro-batches: a resume on another world size
    // keeps the position as long as the micro-batch and the effective batch are kept.
    if (t->o->resume_dir && (t->pos.epoch > c->optim.epochs || t->pos.batch > t->spe * t->group ||
                             t->pos.batch % t->group || t->pos.step > t->total)) {
        dcal_err("%s: metadata 'epoch' %d / 'batch' %d / 'step' %lld lie outside this run's schedule (%d epochs of "
                 "%d micro-batches, %ld steps)", t->ckpt_path, t->pos.epoch, t->pos.batch, (long long)t->pos.step,
                 c->optim.epochs, t->spe * t->group, t->total);
        return 0;
    }
    int S = c->model.img_size;
    for (int i = 0; i < 2; i++) t->img_buf[i] = t->be->host_alloc(sizeof(float) * t->micro * 3 * S * S);
    t->img = t->img_buf[0];
    for (int i = 0; i < 2; i++) {
        t->lab_buf[i] = t->be->host_alloc(sizeof(int) * t->micro);
        t->pair_buf[i] = t->be->host_alloc(sizeof(int) * t->micro);
    }
    t->lab = t->lab_buf[0];
    t->pair = t->pair_buf[0];
    t->ids = xmalloc(sizeof(int) * t->micro);
    return 1;
}

// What a resumed run takes back from its run directory, after metrics.jsonl was trimmed to
// the checkpoint, so that it ends with the files and rows of a run never stopped: ledger rows
// a kill left out, the best choices so far (replayed from the kept rows), a best file a stop
// left unsaved, and keep_last's step file (a kill between the checkpoint and its link).
static int resume_records(Trainer *t) {
    const DcalConfig *c = t->c;
    log_resume_ledger(t);
    trainer_resume_test_best(t);   // the final summary's best test epoch so far
    if (!trainer_resume_best(t)) return 0;
    if (c->train.keep_last > 1 && access(t->ckpt_path, F_OK) == 0 &&
        !checkpoint_keep_last(t->run.dir, t->pos.step, c->train.keep_last))
        fprintf(stderr, "dcal: WARNING: train.keep_last: older checkpoints not kept as configured (see above)\n");
    return 1;
}

// The run directory (config, compliance report, manifest, metrics) and the header line.
static int open_run(Trainer *t) {
    const DcalConfig *c = t->c;
    const TrainOptions *o = t->o;
    // A resumed run was opened (and locked) before its checkpoint was read.
    if (!o->resume_dir && !rundir_open(&t->run, c, NULL)) return 0;
    if (!rundir_open_metrics(&t->run, o->resume_dir != NULL, t->pos.step)) return 0;
    if (o->resume_dir && !resume_records(t)) return 0;
    if (!o->resume_dir) {
        char describe[1024];
        t->be->describe(describe, sizeof describe);
        ManifestInfo info = {.argc = o->argc, .argv = o->argv, .backend = t->be->name, .device_name = "",
                             .backend_describe = describe,
                             .dataset_fingerprint = t->ds.fingerprint, .val_n = t->ds.n_val,
                             .val_sha256 = t->ds.val_sha256, .pretrained_path = c->train.pretrained,
                             .pretrained_sha256 = t->pre_hash, .init_path = o->init_path ? o->init_path : "",
                             .init_sha256 = t->init_hash, .n_allowed = o->n_allowed, .allowed = o->allowed,
                             .rules = o->rules, .n_rules = o->n_rules};
        if (!rundir_write_manifest(&t->run, c, &info)) return 0;
    }
    snprintf(t->ckpt_path, sizeof t->ckpt_path, "%s/checkpoint.safetensors", t->run.dir);
    bool cuda = t->m.cfg.on_cuda;
    size_t planned = train_planned_bytes(c, t->micro, t->accum, t->world, c->train.checkpoint_blocks) +
                     (cuda ? 0 : process_rss_at_start());
    char procs[48] = "";
    if (t->world > 1) snprintf(procs, sizeof procs, " x %d processes", t->world);
    printf("dcal: run %s | %s backend | %s: %d train / %d test images, %d classes | micro-batch %d x accum %d%s "
           "(effective %d) | %ld steps (%d per epoch) | planned memory %.1f MiB%s\n",
           t->run.dir, t->be->name, t->ds.name, t->ds.n_train, t->ds.n_test, t->ds.num_classes, t->micro, t->accum,
           procs, config_effective_batch(c), t->total, t->spe, planned / 1048576.0,
           cuda ? " of the device" : " (peak RSS, the process included)");
    if (t->ds.n_val)
        printf("dcal: validation split: %d training images held out (data.val_fraction %g per class, seed %llu); "
               "they choose best.safetensors\n", t->ds.n_val, c->data.val_fraction, (unsigned long long)c->train.seed);
    if (o->resume_dir)
        printf("dcal: resuming at step %lld (epoch %d, micro-batch %d)\n", (long long)t->pos.step, t->pos.epoch + 1,
               t->pos.batch);
    fflush(stdout);
    return 1;
}

int trainer_setup(Trainer *t) {
    const DcalConfig *c = t->c;
    t->be = backend_get(c->train.device);
    if (!t->be) return 0;
    if (!t->be->set_precision(c->train.precision)) {   // config_resolve checked it against be->precisions
        dcal_err("train.precision=%s: the %s backend supports %s", c->train.precision, t->be->name,
                 t->be->precisions);
        return 0;
    }
    if (!backend_set_attention(t->be, c->train.attention)) return 0;
    if (c->train.threads > 0) omp_set_num_threads(c->train.threads);
    t->micro = c->train.micro_batch;
    t->accum = c->train.accum_steps;
    t->rank = dist_rank();
    t->world = dist_world();
    t->group = t->accum * t->world;
    if (t->world > 1 && (t->o->dump_path || trainer_replaying(t))) {
        dcal_err("%s: one process only (started as %d by a launcher): run it without mpirun/srun",
                 t->o->dump_path ? "--dump-step" : "audit --replay", t->world);
        return 0;
    }
    // Resume: lock the run before reading its checkpoint, so a run still going
    // cannot save a newer one between our read and our first write.
    if (t->o->resume_dir && t->rank == 0 && !rundir_open(&t->run, c, t->o->resume_dir)) return 0;
    if (!open_data_and_model(t) || !open_loader(t)) return 0;
    t->prog.best_comb = -1;   // none yet; a resumed run's from its rows (resume_records)
    t->prog.best_epoch = -1;
    if (t->o->dump_path) dump_alloc(t);
    else if (trainer_writes_run(t) && !open_run(t)) return 0;   // --dump-step and replays write no run directory
    // Every rank names rank 0's checkpoint in its messages.
    if (t->world > 1 && !dist_bcast_bytes(t->ckpt_path, sizeof t->ckpt_path, 0)) return 0;
    t->prog.n_sum = t->pos.win_n;   // resumed between two progress lines: the next averages the whole window
    t->prog.sum_loss = t->pos.win[0];
    for (int i = 0; i < 3; i++) t->prog.sum_ce[i] = t->pos.win[1 + i];
    t->saved_step = t->o->resume_dir ? t->pos.step : -1;   // a resumed run's checkpoint is at its step
    return 1;
}

void trainer_teardown(Trainer *t) {
    if (t->L) loader_destroy(t->L);
    if (t->red.buf) t->m.grads = t->red.buf[0];   // the model frees its own buffer, the reducer the rest
    reducer_free(&t->red);
    free(t->micro_sums);
    free(t->gsq_part);
    if (t->gsq_dev) t->be->free(t->gsq_dev);
    if (t->loss_dev) t->be->free(t->loss_dev);
    rundir_close(&t->run);   // metrics and the run's lock
    if (t->am) t->be->free(t->am);
    if (t->av) t->be->free(t->av);
    adamw_groups_free(&t->adamw);
    if (t->m.params) model_free(&t->m);
    if (t->ds_open) dataset_free(&t->ds);
    for (int i = 0; i < 2; i++) {
        if (t->img_buf[i]) t->be->host_free(t->img_buf[i]);
        if (t->lab_buf[i]) t->be->host_free(t->lab_buf[i]);
        if (t->pair_buf[i]) t->be->host_free(t->pair_buf[i]);
    }
    free(t->ids);
    dump_free(&t->dump);
}
