// eval.c: evaluation on the test split (MODEL.md §3). PWCA is off at inference;
// the combined prediction is argmax(softmax(SA) + softmax(GLCA)). Reports the
// top-1 of SA, GLCA and SA+GLCA and the mean per-class accuracy.
#include <math.h>
#include <string.h>
#include <unistd.h>
#include "core/json.h"
#include "dist/dist.h"
#include "train/trainer.h"

// Accumulates one batch's predictions.
typedef struct {
    long ok[3], n;
    int *cls_n, *cls_ok;   // [C] per-class counts of the combined prediction
} Tally;

static void tally_row(Tally *y, const float *a, const float *g, int C, int label) {
    float ma = a[0], mg = g[0];
    for (int k = 1; k < C; k++) { ma = fmaxf(ma, a[k]); mg = fmaxf(mg, g[k]); }
    double za = 0, zg = 0;
    for (int k = 0; k < C; k++) { za += exp(a[k] - ma); zg += exp(g[k] - mg); }
    int pa = 0, pg = 0, pc = 0;
    double best = -1;
    for (int k = 0; k < C; k++) {
        if (a[k] > a[pa]) pa = k;
        if (g[k] > g[pg]) pg = k;
        double p = exp(a[k] - ma) / za + exp(g[k] - mg) / zg;   // MODEL.md §3: softmax sum
        if (p > best) { best = p; pc = k; }
    }
    y->ok[0] += pa == label;
    y->ok[1] += pg == label;
    y->ok[2] += pc == label;
    y->cls_n[label]++;
    y->cls_ok[label] += pc == label;
    y->n++;
}

// Data parallelism: each rank evaluated its share of the test batches; the
// counts are integers, so their sum is exact in any order.
static int tally_sum(Tally *y, int C) {
    long *v = xcalloc((size_t)(4 + 2 * C), sizeof(long));
    v[0] = y->ok[0]; v[1] = y->ok[1]; v[2] = y->ok[2]; v[3] = y->n;
    for (int k = 0; k < C; k++) { v[4 + k] = y->cls_n[k]; v[4 + C + k] = y->cls_ok[k]; }
    int ok = dist_sum_long(v, 4 + 2 * C);
    y->ok[0] = v[0]; y->ok[1] = v[1]; y->ok[2] = v[2]; y->n = v[3];
    for (int k = 0; k < C; k++) { y->cls_n[k] = (int)v[4 + k]; y->cls_ok[k] = (int)v[4 + C + k]; }
    free(v);
    return ok;
}

static void tally_result(const Tally *y, int C, EvalResult *out) {
    double mca = 0;
    int present = 0;
    for (int k = 0; k < C; k++)
        if (y->cls_n[k]) { mca += (double)y->cls_ok[k] / y->cls_n[k]; present++; }
    long n = y->n;
    out->n = (int)n;
    out->acc_sa = n ? (double)y->ok[0] / n : 0;
    out->acc_glca = n ? (double)y->ok[1] / n : 0;
    out->acc_combined = n ? (double)y->ok[2] / n : 0;
    out->mean_class_acc = present ? mca / present : 0;
}

int evaluate(Model *m, const Dataset *ds, const DcalConfig *c, EvalResult *out) {
    int B = m->B, C = m->cfg.num_classes, S = m->cfg.img_size;
    Loader *L = loader_create(ds, &c->data, false, B, c->train.seed);
    if (!L) return 0;
    loader_set_shard(L, dist_rank(), dist_world(), 1);
    loader_set_stop_flag(L, &train_stop_signal);
    float *img = xmalloc(sizeof(float) * B * 3 * S * S), *ls = xmalloc(sizeof(float) * B * C),
          *lg = xmalloc(sizeof(float) * B * C);
    int *lab = xmalloc(sizeof(int) * B), *ids = xmalloc(sizeof(int) * B);
    Tally y = {.cls_n = xcalloc((size_t)C, sizeof(int)), .cls_ok = xcalloc((size_t)C, sizeof(int))};
    int rows;
    loader_start(L, 0, 0);
    while ((rows = loader_next(L, img, lab, ids)) > 0) {
        model_forward_infer(m, img, rows, ls, lg, NULL);
        for (int b = 0; b < rows; b++) tally_row(&y, ls + (size_t)b * C, lg + (size_t)b * C, C, lab[b]);
    }
    int summed = tally_sum(&y, C);   // every rank, even after a bad batch: the others wait for it
    tally_result(&y, C, out);
    loader_destroy(L);
    free(img); free(ls); free(lg); free(lab); free(ids); free(y.cls_n); free(y.cls_ok);
    return rows >= 0 && summed;
}

// One eval as a metrics row: kind "eval" (the test split) or "val" (held out of training).
static void eval_row(Trainer *t, const char *kind, int epoch, const EvalResult *er) {
    JsonW w;
    jw_init(&w, false, 0);
    jw_begin_object(&w);
    jw_kv_string(&w, "kind", kind);
    jw_kv_string(&w, "split", strcmp(kind, "val") ? "test" : "val");
    jw_kv_int(&w, "step", t->pos.step);
    jw_kv_int(&w, "epoch", epoch + 1);
    jw_kv_int(&w, "n", er->n);
    jw_kv_double(&w, "acc_sa", "%.6f", er->acc_sa);
    jw_kv_double(&w, "acc_glca", "%.6f", er->acc_glca);
    jw_kv_double(&w, "acc_combined", "%.6f", er->acc_combined);
    jw_kv_double(&w, "mean_class_acc", "%.6f", er->mean_class_acc);
    jw_end_object(&w);
    rundir_metric_json(&t->run, &w);
    jw_free(&w);
}

// What selects best.safetensors: the prediction the run reports (SA+GLCA, or SA without GLCA).
static double selection_acc(const DcalConfig *c, const EvalResult *er) {
    return c->model.glca_blocks > 0 ? er->acc_combined : er->acc_sa;
}

int trainer_eval_val(Trainer *t, int epoch) {
    EvalResult er;
    if (!evaluate(&t->m, &t->val, t->c, &er)) return 0;
    printf("val epoch %d/%d (held out of the training split, %d images): top-1 SA %.2f%% GLCA %.2f%% SA+GLCA "
           "%.2f%%\n", epoch + 1, t->c->optim.epochs, er.n, 100 * er.acc_sa, 100 * er.acc_glca, 100 * er.acc_combined);
    fflush(stdout);
    eval_row(t, "val", epoch, &er);
    t->val_acc = selection_acc(t->c, &er);
    return 1;
}

int trainer_eval(Trainer *t, int epoch) {
    const DcalConfig *c = t->c;
    EvalResult er;
    if (!evaluate(&t->m, &t->ds, c, &er)) return 0;
    if (er.acc_combined > t->prog.best_comb) { t->prog.best_comb = er.acc_combined; t->prog.best_epoch = epoch + 1; }
    if (c->model.glca_blocks > 0)
        printf("eval epoch %d/%d (test split, %d images): top-1 SA %.2f%% GLCA %.2f%% SA+GLCA %.2f%% | mean "
               "per-class %.2f%%\n", epoch + 1, c->optim.epochs, er.n, 100 * er.acc_sa, 100 * er.acc_glca,
               100 * er.acc_combined, 100 * er.mean_class_acc);
    else
        printf("eval epoch %d/%d (test split, %d images): top-1 SA %.2f%% (SA-only model: no GLCA) | mean "
               "per-class %.2f%%\n", epoch + 1, c->optim.epochs, er.n, 100 * er.acc_sa, 100 * er.mean_class_acc);
    fflush(stdout);
    eval_row(t, "eval", epoch, &er);
    return t->val.n_test > 0 ? trainer_eval_val(t, epoch) : 1;
}

int trainer_save_best(Trainer *t, int epoch) {
    double acc = t->val_acc;
    t->val_acc = -1;
    if (acc < 0 || acc <= t->best_val) return 1;   // ties keep the earlier, equally good weights
    if (!trainer_writes_run(t)) {   // data parallelism: rank 0 writes; the others track the same best
        t->best_val = acc;
        return 1;
    }
    char path[DCAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/" CKPT_BEST_FILE, t->run.dir);
    if (!checkpoint_save_best(path, &t->m, &t->pos, acc, t->val.n_test)) return 0;
    t->best_val = acc;
    CkptBest b = {.step = t->pos.step, .epoch = epoch + 1, .val_n = t->val.n_test, .val_acc = acc};
    checkpoint_params_sha256(&t->m, b.params_sha256);
    log_best(t, &b);
    printf("dcal: %s: epoch %d, %.2f%% on the validation split (chosen there, never on test)\n", path, epoch + 1,
           100 * acc);
    fflush(stdout);
    return 1;
}

void trainer_resume_test_best(Trainer *t) {
    RowBest b = {.kind = "eval", .key = "acc_combined", .upto = t->pos.step};
    rundir_best_of(t->run.dir, &b);
    t->prog.best_comb = b.acc;
    t->prog.best_epoch = b.epoch;
}

int trainer_resume_best(Trainer *t) {
    if (t->c->data.val_fraction <= 0 || !trainer_writes_run(t)) return 1;
    RowBest v = {.kind = "val", .key = t->c->model.glca_blocks > 0 ? "acc_combined" : "acc_sa", .upto = t->pos.step};
    rundir_best_of(t->run.dir, &v);
    if (v.acc < 0) return 1;   // no val row kept: nothing chosen yet
    t->best_val = v.acc;
    // Chosen before the checkpoint's epoch, or saved then (its row; log_resume_ledger wrote a
    // missing one for a file of that step; a newer file is rewritten by the epoch that made it).
    if (v.step != t->pos.step || t->pos.batch != 0 || rundir_ledger_has(&t->run, "best", v.step)) return 1;
    printf("dcal: epoch %d's validation accuracy (%.2f%%) beat best.safetensors, but the run stopped before saving "
           "it: saved now from the checkpoint's weights\n", v.epoch, 100 * v.acc);
    t->val_acc = v.acc;
    t->best_val = -1;
    return trainer_save_best(t, v.epoch - 1);   // a failed write stops the run, as at an epoch's end
}

int trainer_open_val(Trainer *t) {
    t->val_acc = t->best_val = -1;
    if (t->c->data.val_fraction <= 0) return 1;
    if (!dataset_hold_out_val(&t->ds, t->c->data.val_fraction, t->c->train.seed)) return 0;
    t->val = dataset_val_view(&t->ds);
    return 1;
}
