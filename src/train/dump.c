// dump.c: --dump-step. The first optimizer step written to one safetensors
// file (inputs, labels, pairing, selection, logits, losses, the accumulated
// gradient of every tensor, the weights) so that the step can be compared
// with an independent implementation. No run directory is created.
#include <string.h>
#include "core/safetensors.h"
#include "model/weights.h"
#include "train/trainer.h"

void dump_alloc(Trainer *t) {
    int S = t->m.cfg.img_size, C = t->m.cfg.num_classes, R = t->accum * t->micro, Q = 1 + t->m.K;
    Dump *d = &t->dump;
    d->input = xmalloc(sizeof(float) * R * 3 * S * S);
    d->labels = xmalloc(sizeof(int) * R);
    d->pair = xmalloc(sizeof(int) * R);
    d->sel = xmalloc(sizeof(int) * R * Q);
    for (int h = 0; h < 3; h++) d->logits[h] = xmalloc(sizeof(float) * R * C);
    d->ce = xmalloc(sizeof(float) * t->accum * 3);
    d->loss = xmalloc(sizeof(float) * t->accum);
}

// Micro-batch k of the first optimizer step.
void dump_micro(Trainer *t, const StepOut *o, int k) {
    const Model *m = &t->m;
    Dump *d = &t->dump;
    int S = m->cfg.img_size, C = m->cfg.num_classes, Q = 1 + m->K, micro = t->micro;
    size_t r0 = (size_t)k * micro;
    memcpy(d->input + r0 * 3 * S * S, t->img, sizeof(float) * micro * 3 * S * S);
    memcpy(d->labels + r0, t->lab, sizeof(int) * micro);
    memcpy(d->pair + r0, t->pair, sizeof(int) * micro);
    memcpy(d->sel + r0 * Q, o->sel, sizeof(int) * micro * Q);
    for (int h = 0; h < 3; h++) memcpy(d->logits[h] + r0 * C, o->logits[h], sizeof(float) * micro * C);
    for (int h = 0; h < 3; h++) d->ce[k * 3 + h] = o->ce[h];
    d->loss[k] = o->loss;
}

int dump_write(Trainer *t) {
    const Model *m = &t->m;
    Dump *d = &t->dump;
    int S = m->cfg.img_size, C = m->cfg.num_classes, Q = 1 + m->K, accum = t->accum, R = accum * t->micro;
    StWriter *w = stw_new();
    stw_add_f32(w, "input", d->input, 4, (int64_t[]){R, 3, S, S});
    stw_add_i32(w, "labels", d->labels, 1, (int64_t[]){R});
    stw_add_i32(w, "pair", d->pair, 2, (int64_t[]){accum, t->micro});
    stw_add_i32(w, "sel", d->sel, 2, (int64_t[]){R, Q});
    stw_add_f32(w, "logits.sa", d->logits[0], 2, (int64_t[]){R, C});
    stw_add_f32(w, "logits.glca", d->logits[1], 2, (int64_t[]){R, C});
    stw_add_f32(w, "logits.pwca", d->logits[2], 2, (int64_t[]){R, C});
    stw_add_f32(w, "ce", d->ce, 2, (int64_t[]){accum, 3});
    stw_add_f32(w, "loss", d->loss, 1, (int64_t[]){accum});
    weights_add(m, w, "grad.", m->grads);
    weights_add(m, w, "", m->params);
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)t->c->train.seed);
    stw_meta(w, "seed", buf);
    stw_meta(w, "note", "pair[k][b]: distractor index of row b within micro-batch k; pair, sel, logits, ce, loss per "
                        "micro-batch; grad.* is the accumulated gradient of the first optimizer step (before AdamW)");
    int ok = stw_write(w, t->o->dump_path);
    stw_free(w);
    if (ok) printf("dcal: wrote the first optimizer step to %s\n", t->o->dump_path);
    return ok;
}

void dump_free(Dump *d) {
    free(d->input); free(d->labels); free(d->pair); free(d->sel);
    for (int h = 0; h < 3; h++) free(d->logits[h]);
    free(d->ce); free(d->loss);
}
