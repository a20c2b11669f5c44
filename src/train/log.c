// log.c: what a run tells its user. A progress line about five times an
// epoch (loss and the three CEs averaged since the last line, lr, gradient
// norm, throughput, ETA, peak RSS), mirrored as a row of metrics.jsonl, and
// the final summary; and the exact record of every step (RUN/steps.tsv).
// On a terminal the progress lines give way to one live line per epoch,
// redrawn with '\r'; piped or redirected output keeps the plain lines (logs,
// tests/e2e_bitwise.sh), and metrics.jsonl is the same either way.
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>
#include "core/json.h"
#include "run/report.h"
#include "train/explain.h"
#include "train/trainer.h"

#define LIVE_REDRAW_S 0.1   // a redraw per step would flood a slow terminal on the tiny configs
#define OVERLAY_IMAGES 4    // test images the final model explains for report.html

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

// The progress line's numbers as one metrics.jsonl row.
static void metrics_row(Trainer *t, int epoch, double lr, double gsq, double ips) {
    float w3[3];
    t->be->to_host(w3, t->m.params + model_find(&t->m, "loss_w")->offset, sizeof w3);
    JsonW w;
    jw_init(&w, false, 0);
    jw_begin_object(&w);
    jw_kv_string(&w, "kind", "train");
    jw_kv_int(&w, "step", t->pos.step);
    jw_kv_int(&w, "epoch", epoch + 1);
    jw_kv_double(&w, "loss", "%.6g", t->prog.sum_loss / t->prog.n_sum);
    jw_kv_double(&w, "ce_sa", "%.6g", t->prog.sum_ce[0] / t->prog.n_sum);
    jw_kv_double(&w, "ce_glca", "%.6g", t->prog.sum_ce[1] / t->prog.n_sum);
    jw_kv_double(&w, "ce_pwca", "%.6g", t->prog.sum_ce[2] / t->prog.n_sum);
    jw_kv_double(&w, "lr", "%.6g", lr);
    jw_kv_double(&w, "grad_norm", "%.6g", sqrt(gsq));
    jw_key(&w, "loss_w");
    jw_begin_array(&w);
    for (int i = 0; i < 3; i++) jw_double(&w, "%.6g", w3[i]);
    jw_end_array(&w);
    jw_kv_double(&w, "img_s", "%.3g", ips);
    jw_kv_double(&w, "rss_mib", "%.1f", peak_rss_mb());
    jw_kv_int(&w, "skipped_images", loader_skipped(t->L));
    jw_end_object(&w);
    rundir_metric_json(&t->run, &w);
    jw_free(&w);
}

static bool live_mode(void) {
    const char *term = getenv("TERM");
    return isatty(STDOUT_FILENO) && !(term && !strcmp(term, "dumb"));
}

static void format_eta(char *out, size_t cap, double s) {
    int v = (int)fmax(s, 0);
    if (v >= 3600) snprintf(out, cap, "%dh%02dm%02ds", v / 3600, v / 60 % 60, v % 60);
    else snprintf(out, cap, "%dm%02ds", v / 60, v % 60);
}

// "epoch 2/10 [#####.......] 12/40 31.2 img/s ETA 1m05s loss 2.3012 lr 1.00e-04 rss 512 MiB",
// cut to the terminal's width (a wrapped line cannot be redrawn with '\r').
static void live_line(Trainer *t, double lr, bool end_line) {
    Progress *p = &t->prog;
    enum { BAR = 20 };
    const int done = t->pos.batch / t->accum;
    double now = now_seconds(), el = fmax(now - p->t_start, 1e-9);
    long steps = p->steps_timed + 1;   // this step is not counted in steps_timed yet
    char bar[BAR + 1], eta[24], line[512];
    for (int i = 0; i < BAR; i++) bar[i] = i < BAR * done / t->spe ? '#' : '.';
    bar[BAR] = 0;
    format_eta(eta, sizeof eta, el / steps * (t->total - t->pos.step));
    int n = snprintf(line, sizeof line, "epoch %d/%d [%s] %d/%d %.1f img/s ETA %s loss %.4f lr %.2e rss %.0f MiB",
                     t->pos.epoch + 1, t->c->optim.epochs, bar, done, t->spe, steps * t->micro * t->accum / el, eta,
                     p->ep_loss / p->ep_steps, lr, peak_rss_mb());
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && n >= ws.ws_col) line[ws.ws_col - 1] = 0;
    printf("\r%s\033[K%s", line, end_line ? "\n" : "");
    fflush(stdout);
    p->t_shown = now;
}

// After each step on a terminal: redraw now and then, and end the line when
// the epoch ends or the run is about to stop (so what follows starts a line).
static void live_step(Trainer *t, double loss, double lr) {
    Progress *p = &t->prog;
    p->ep_loss += loss;
    p->ep_steps++;
    bool end_epoch = t->pos.batch + t->accum > t->spe * t->accum;
    bool stopping = train_stop_signal || (t->c->train.max_steps > 0 && t->pos.step >= t->c->train.max_steps);
    if (end_epoch || stopping || now_seconds() - p->t_shown >= LIVE_REDRAW_S || p->ep_steps == 1)
        live_line(t, lr, end_epoch || stopping);
    if (end_epoch) p->ep_loss = p->ep_steps = 0;
}

void log_progress(Trainer *t, int epoch, double lr, double gsq) {
    Progress *p = &t->prog;
    double now = now_seconds(), ips = p->imgs_since / fmax(now - p->t_log, 1e-9);
    double per_step = (now - p->t_start) / p->steps_timed, eta = per_step * (t->total - t->pos.step);
    double n = p->n_sum;
    if (!live_mode())
        printf("step %lld/%ld epoch %d/%d loss %.4f (ce sa %.4f glca %.4f pwca %.4f) lr %.3e |g| %.3e "
               "%.1f img/s ETA %dm%02ds rss %.0f MiB\n",
               (long long)t->pos.step, t->total, epoch + 1, t->c->optim.epochs, p->sum_loss / n, p->sum_ce[0] / n,
               p->sum_ce[1] / n, p->sum_ce[2] / n, lr, sqrt(gsq), ips, (int)(eta / 60), (int)eta % 60, peak_rss_mb());
    fflush(stdout);
    metrics_row(t, epoch, lr, gsq, ips);
    p->t_log = now;
    p->imgs_since = 0;
    p->sum_loss = 0;
    p->sum_ce[0] = p->sum_ce[1] = p->sum_ce[2] = 0;
    p->n_sum = 0;
}

int log_step(Trainer *t, double lr, double gsq) {
    const double n = t->group;   // every rank's micro-batches (step.c sums them)
    StepRecord r = {.step = t->pos.step, .micro_step = t->pos.micro_step, .loss = t->step_sum[0] / n,
                    .ce = {t->step_sum[1] / n, t->step_sum[2] / n, t->step_sum[3] / n}, .gsq = gsq, .lr = lr};
    if (trainer_replaying(t)) {
        if (r.step >= 1 && r.step <= t->o->replay_steps) t->replayed[r.step - 1] = r;
        return 1;
    }
    if (steplog_append(&t->steps, &r)) {
        if (live_mode()) live_step(t, r.loss, lr);
        return 1;
    }
    dcal_err("%s: cannot write step %lld: %s: stopping; %s", t->steps.path, (long long)r.step, strerror(errno),
             trainer_checkpoint_state(t));
    return 0;
}

// The final model explains OVERLAY_IMAGES test images spread over the split (so,
// in CUB's class order, over the classes) into the run directory, where report.html
// embeds them: rollout heat-map, top-R patches, predictions and the true class.
// Returns how many were written.
static int final_overlays(Trainer *t) {
    const Dataset *d = &t->ds;
    int n = d->n_test < OVERLAY_IMAGES ? d->n_test : OVERLAY_IMAGES, S = t->c->model.img_size, done = 0;
    if (t->c->model.glca_blocks <= 0) return 0;   // no GLCA: no selection to show
    float *img = xmalloc(sizeof(float) * 3 * S * S);
    for (int i = 0; i < n; i++) {
        const DatasetItem *it = &d->test[(size_t)i * d->n_test / n];
        char pre[DCAL_PATH_MAX];
        Explained e = {0};
        overlay_prefix(pre, sizeof pre, t->run.dir, it->path);
        if (image_load(it->path, &t->c->data, false, 0, 0, 0, img) &&
            explain_write(&t->m, &t->c->data, img, d->class_names, it->label, pre, &e))
            done++;
        explained_free(&e);
    }
    free(img);
    return done;
}

void log_final(Trainer *t) {
    char hex[65];
    checkpoint_params_sha256(&t->m, hex);
    printf("dcal: done: %lld steps in %.1f s; final weights sha256 %s; checkpoint %s\n", (long long)t->pos.step,
           now_seconds() - t->prog.t_start, hex, t->ckpt_path);
    if (loader_skipped(t->L))   // data.skip_bad: never silent
        printf("dcal: WARNING: unreadable training images were skipped %d time(s) over the run (data.skip_bad; "
               "see skipped_images in metrics.jsonl)\n", loader_skipped(t->L));
    if (t->prog.best_epoch > 0)
        printf("dcal: the reported accuracy is the last epoch's; the best epoch on the TEST split was %d (%.2f%% "
               "SA+GLCA) — selected on the test split, so not an unbiased estimate\n", t->prog.best_epoch,
               100 * t->prog.best_comb);
    JsonW w;
    jw_init(&w, false, 0);
    jw_begin_object(&w);
    jw_kv_string(&w, "kind", "final");
    jw_kv_int(&w, "step", t->pos.step);
    jw_kv_string(&w, "params_sha256", hex);
    jw_kv_int(&w, "best_epoch_on_test", t->prog.best_epoch);
    jw_end_object(&w);
    rundir_metric_json(&t->run, &w);
    jw_free(&w);
    if (!trainer_writes_run(t)) return;   // rank 0's run directory only
    int n = final_overlays(t);   // overlays and a report that cannot be written leave the finished run as it is
    if (n > 0) printf("dcal: attention overlays of %d test images: %s/overlay_*.png\n", n, t->run.dir);
    char html[DCAL_PATH_MAX + 32];
    if (report_write(t->run.dir, html, sizeof html)) printf("dcal: report %s (open it in a browser)\n", html);
}

void log_checkpoint(Trainer *t) {
    char params[65], adam[65];
    int64_t step;
    if (!checkpoint_hashes(t->ckpt_path, params, adam, &step)) return;   // just written: cannot fail
    JsonW w;
    jw_init(&w, false, 0);
    jw_begin_object(&w);
    jw_kv_string(&w, "kind", "checkpoint");
    jw_kv_int(&w, "step", step);
    jw_kv_string(&w, "params_sha256", params);
    jw_kv_string(&w, "adam_sha256", adam);
    jw_end_object(&w);
    rundir_metric_json(&t->run, &w);
    jw_free(&w);
}

void log_best(Trainer *t, const CkptBest *b) {
    JsonW w;
    jw_init(&w, false, 0);
    jw_begin_object(&w);
    jw_kv_string(&w, "kind", "best");
    jw_kv_int(&w, "step", b->step);
    jw_kv_int(&w, "epoch", b->epoch);
    jw_kv_string(&w, "params_sha256", b->params_sha256);
    jw_kv_double(&w, "val_acc", "%.6f", b->val_acc);
    jw_kv_int(&w, "val_n", b->val_n);
    jw_end_object(&w);
    rundir_metric_json(&t->run, &w);
    jw_free(&w);
}

// Both files were written whole (temp, fsync, rename) and the checkpoint was just
// loaded and verified, so their own metadata is what the killed run would have logged.
void log_resume_ledger(Trainer *t) {
    const char *m = "metrics.jsonl: no row for";
    if (access(t->ckpt_path, F_OK) != 0) return;   // started again from step 0: nothing saved yet
    if (!rundir_ledger_has(&t->run, "checkpoint", t->pos.step)) {
        printf("dcal: %s/%s the checkpoint at step %lld (the run stopped before writing it); recorded now\n",
               t->run.dir, m, (long long)t->pos.step);
        log_checkpoint(t);
    }
    char path[DCAL_PATH_MAX + 32];
    CkptBest b;
    snprintf(path, sizeof path, "%s/" CKPT_BEST_FILE, t->run.dir);
    // A best file newer than the checkpoint is chosen again by the epoch that runs again.
    if (access(path, F_OK) != 0 || !checkpoint_best_meta(path, &b) || b.step > t->pos.step ||
        rundir_ledger_has(&t->run, "best", b.step))
        return;
    printf("dcal: %s/%s %s (step %lld; the run stopped before writing it); recorded now\n", t->run.dir, m,
           CKPT_BEST_FILE, (long long)b.step);
    log_best(t, &b);
}
