// train.c: the training loop (MODEL.md §4), read top-down as a list of calls:
// for each epoch, for each optimizer step — micro-batches (forward, backward),
// gradient check, AdamW, progress — then eval and checkpoint. Everything random
// is keyed by (seed, position), so a run stopped and resumed from its
// checkpoint ends bit for bit where an uninterrupted run ends (CPU).
// SIGINT/SIGTERM finish the current optimizer step, save and exit 0; a second
// one exits at once (128 + signal).
#include <math.h>
#include "dist/dist.h"
#include <unistd.h>
#include "train/trainer.h"

volatile sig_atomic_t train_stop_signal = 0;

// The first SIGINT/SIGTERM asks for a clean stop (finish the step, save); a
// second means "now": _exit at once, non-zero. Checkpoints are written to a
// temporary file and renamed, so exiting mid-save leaves the last one whole.
static void on_signal(int s) {
    static const char first[] = "\ndcal: stop requested: finishing the current step and saving a checkpoint "
                                "(interrupt again to exit at once without saving)\n";
    static const char again[] = "\ndcal: second interrupt: exiting now without saving; the last checkpoint on disk "
                                "is intact\n";
    if (train_stop_signal) {
        ssize_t w = write(STDERR_FILENO, again, sizeof again - 1);
        (void)w;
        _exit(128 + s);
    }
    train_stop_signal = s;
    ssize_t w = write(STDERR_FILENO, first, sizeof first - 1);
    (void)w;
}

// Save and tell the user how to continue; the run ends with exit 0.
// The checkpoint, then its hashes as a metrics row: the run's ledger that
// `dcal audit` holds the checkpoint file against.
static int save(Trainer *t) {
    if (!trainer_writes_run(t)) {   // data parallelism: rank 0 alone writes; the others hold the same state
        t->saved_step = t->pos.step;
        return 1;
    }
    t->pos.skipped = loader_skipped(t->L);
    t->pos.win_n = t->prog.n_sum;   // a stop between two progress lines: their sums so far
    t->pos.win[0] = t->prog.sum_loss;
    for (int i = 0; i < 3; i++) t->pos.win[1 + i] = t->prog.sum_ce[i];
    if (!checkpoint_save(t->ckpt_path, &t->m, t->am, t->av, &t->pos)) return 0;
    log_checkpoint(t);
    t->saved_step = t->pos.step;
    // train.keep_last: the latest is safe; losing a kept older one does not stop the run.
    if (!checkpoint_keep_last(t->run.dir, t->pos.step, t->c->train.keep_last))
        fprintf(stderr, "dcal: WARNING: train.keep_last: older checkpoints not kept as configured (see above)\n");
    return 1;
}

static int stop_with_checkpoint(Trainer *t, const char *why) {
    if (t->saved_step != t->pos.step && !save(t)) return DCAL_EXIT_FAIL;
    printf("dcal: %s at step %lld: checkpoint %s saved; continue with 'dcal train --resume %s'\n", why,
           (long long)t->pos.step, t->ckpt_path, t->run.dir);
    return DCAL_EXIT_OK;
}

// After a step: stop for a signal or train.max_steps, or go on. A replay
// stops after its last step and never writes a checkpoint.
static int after_step(Trainer *t) {
    if (trainer_replaying(t)) {
        if (train_stop_signal) { dcal_err("replay interrupted at step %lld", (long long)t->pos.step); return DCAL_EXIT_FAIL; }
        return t->pos.step >= t->o->replay_steps ? DCAL_EXIT_OK : TRAIN_GO_ON;
    }
    // Every rank stops at the same step: a signal seen by one stops all.
    if (dist_max_int((int)train_stop_signal)) return stop_with_checkpoint(t, "interrupted");
    if (t->c->train.max_steps > 0 && t->pos.step >= t->c->train.max_steps)
        return stop_with_checkpoint(t, "stopped (train.max_steps)");
    return TRAIN_GO_ON;
}

// One optimizer step of epoch `epoch` that ends at micro-batch index b.
static int optimizer_step(Trainer *t, int epoch, int b) {
    int64_t micro_step0 = t->pos.micro_step;
    double lr = lr_at(&t->c->optim, t->pos.step, t->total, t->warm);
    t->step_lr = lr;   // train.update_in_backward: backward updates at it
    int rc = trainer_micro_batches(t);   // the same outcome on every rank
    if (rc == TRAIN_INTERRUPTED && !trainer_replaying(t)) {
        // A signal while the loader waited on a stuck file: drop the partial step.
        // The checkpoint keeps the last whole step, and the micro-step that keys
        // the PWCA pairing goes back with it, so a resume repeats this step exactly.
        t->pos.micro_step = micro_step0;
        return stop_with_checkpoint(t, "interrupted");
    }
    if (rc == TRAIN_INTERRUPTED) return DCAL_EXIT_FAIL;
    if (rc != TRAIN_GO_ON) return rc;
    if (t->o->dump_path) return dump_write(t) ? DCAL_EXIT_OK : DCAL_EXIT_FAIL;
    // With the update in backward the weights in memory have moved already; a stop here
    // writes nothing, so the checkpoint on disk stays the last good step.
    double gsq = optimizer_sumsq(&t->m, t->gsq_dev, t->gsq_part);   // gsq_dev: NULL unless in backward
    if (!isfinite(gsq)) {
        dcal_err("step %lld: gradient is not finite: stopping; %s", (long long)t->pos.step + 1,
                 trainer_checkpoint_state(t));
        return DCAL_EXIT_FAIL;
    }
    if (!t->in_backward) optimizer_update(t, lr);
    t->pos.step++;
    t->pos.epoch = epoch;
    t->pos.batch = b;
    if ((t->rank == 0 || trainer_replaying(t)) && !log_step(t, lr, gsq)) return DCAL_EXIT_FAIL;
    t->prog.steps_timed++;
    t->prog.imgs_since += (long)t->micro * t->group;
    int log_every = t->spe / 5 > 0 ? t->spe / 5 : 1;
    bool end_epoch = b + t->group > t->spe * t->group;
    if ((t->pos.step % log_every == 0 || end_epoch) && !trainer_replaying(t)) log_progress(t, epoch, lr, gsq);
    return after_step(t);
}

// Whether an epoch ends with an evaluation: train.eval_every, and always the last.
static bool eval_due(const Trainer *t, int epoch) {
    int every = t->c->train.eval_every;
    return (every && (epoch + 1) % every == 0) || epoch + 1 == t->c->optim.epochs;
}

// After the epoch's steps: eval and checkpoint as configured (always after the last).
static int end_of_epoch(Trainer *t, int epoch) {
    const TrainConfig *tc = &t->c->train;
    bool last = epoch + 1 == t->c->optim.epochs;
    t->pos.epoch = epoch + 1;
    t->pos.batch = 0;
    if (trainer_replaying(t)) return TRAIN_GO_ON;   // eval and checkpoints do not change the steps
    if (eval_due(t, epoch))
        if (trainer_agree(trainer_eval(t, epoch) || train_stop_signal ? TRAIN_GO_ON : DCAL_EXIT_FAIL) != TRAIN_GO_ON)
            return DCAL_EXIT_FAIL;   // a signal may cut eval short
    if ((tc->save_every && (epoch + 1) % tc->save_every == 0) || last)
        if (!save(t)) return DCAL_EXIT_FAIL;
    if (!trainer_save_best(t, epoch)) return DCAL_EXIT_FAIL;   // after the periodic save: never newer than it
    if (dist_max_int((int)train_stop_signal) && !last) {   // a signal during eval: stop at the epoch boundary
        if (t->saved_step != t->pos.step && !save(t)) return DCAL_EXIT_FAIL;
        printf("dcal: interrupted at step %lld (after epoch %d): checkpoint %s saved; continue with 'dcal train "
               "--resume %s'\n", (long long)t->pos.step, epoch + 1, t->ckpt_path, t->run.dir);
        return DCAL_EXIT_OK;
    }
    return TRAIN_GO_ON;
}

// A resume at an epoch's end whose evaluation a stop cut short (a signal while the eval
// loader waits on a stuck read: eval gives up, the checkpoint is saved, the eval rows are
// not; an eval that runs finishes before the stop): the part without its row (the test
// split's, or only the validation split's) runs now, on the checkpoint's weights, which are
// that epoch's, and chooses best.safetensors as the epoch would have.
static int redo_cut_eval(Trainer *t) {
    int e = t->pos.epoch - 1;
    if (!t->o->resume_dir || trainer_replaying(t) || t->pos.batch != 0 || e < 0 || !eval_due(t, e))
        return TRAIN_GO_ON;
    int missing = 0;   // rank 0 reads the rows; 1: no test row (both run again), 2: no val row alone
    if (trainer_writes_run(t))
        missing = !rundir_ledger_has(&t->run, "eval", t->pos.step)                                 ? 1
                  : t->val.n_test > 0 && !rundir_ledger_has(&t->run, "val", t->pos.step) ? 2 : 0;
    if (!(missing = dist_max_int(missing))) return TRAIN_GO_ON;
    if (trainer_writes_run(t))
        printf("dcal: epoch %d has no %s evaluation in metrics.jsonl (a stop cut it short): evaluating it now\n",
               e + 1, missing == 1 ? "test split" : "validation split");
    int ok = missing == 1 ? trainer_eval(t, e) : trainer_eval_val(t, e);
    if (trainer_agree(ok || train_stop_signal ? TRAIN_GO_ON : DCAL_EXIT_FAIL) != TRAIN_GO_ON) return DCAL_EXIT_FAIL;
    if (!trainer_save_best(t, e)) return DCAL_EXIT_FAIL;   // t->val_acc -1 when cut short: nothing to save
    if (dist_max_int((int)train_stop_signal)) {   // stop before the next epoch; cut short again, the next resume retries
        printf("dcal: interrupted at step %lld (evaluating epoch %d): continue with 'dcal train --resume %s'\n",
               (long long)t->pos.step, e + 1, t->run.dir);
        return DCAL_EXIT_OK;
    }
    return TRAIN_GO_ON;
}

static int run_epochs(Trainer *t) {
    t->prog.t_start = t->prog.t_log = now_seconds();
    int rc = redo_cut_eval(t);
    if (rc != TRAIN_GO_ON) return rc;
    for (int epoch = t->pos.epoch; epoch < t->c->optim.epochs; epoch++) {
        int b = epoch == t->pos.epoch ? t->pos.batch : 0;   // resume mid-epoch
        loader_start(t->L, epoch, b / t->world);   // b counts every rank's micro-batches; the loader this rank's
        while (b + t->group <= t->spe * t->group) {
            b += t->group;
            rc = optimizer_step(t, epoch, b);
            if (rc != TRAIN_GO_ON) return rc;
        }
        rc = end_of_epoch(t, epoch);
        if (rc != TRAIN_GO_ON) return rc;
    }
    if (!trainer_replaying(t)) log_final(t);
    return DCAL_EXIT_OK;
}

int trainer_run(Trainer *t) {
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int rc = run_epochs(t);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    return rc;
}

// RUN/steps.tsv, cut back to the checkpoint's step on resume (after a kill -9
// it may hold steps the checkpoint does not).
static int open_step_log(Trainer *t) {
    if (!trainer_writes_run(t)) return 1;   // no run directory, or not rank 0's
    return steplog_open(&t->steps, t->run.dir, t->o->resume_dir ? t->pos.step : -1);
}

int train_main(const DcalConfig *c, const TrainOptions *o) {
    Trainer t = {.c = c, .o = o};
    int rc = DCAL_EXIT_FAIL;
    if (trainer_setup(&t) && open_step_log(&t)) rc = trainer_run(&t);
    steplog_close(&t.steps);
    trainer_teardown(&t);
    return rc;
}
