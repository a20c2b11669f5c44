// optimizer.c: the learning-rate schedule and the AdamW update (MODEL.md §4).
// Warm-up is linear per optimizer step from warmup_lr, then cosine to min_lr;
// AdamW runs per tensor so that weight decay applies only where
// ParamTensor.decay says (not biases, LayerNorm, pos/cls or loss_w).
#include <limits.h>
#include <math.h>
#include <string.h>
#include "train/trainer.h"

double lr_at(const OptimConfig *o, long s, long total, long warm) {
    if (!strcmp(o->schedule, "constant")) return o->lr;
    if (s < warm) return o->warmup_lr + (o->lr - o->warmup_lr) * (double)s / warm;
    double t = total > warm ? (double)(s - warm) / (total - warm) : 1.0;
    return o->min_lr + 0.5 * (o->lr - o->min_lr) * (1.0 + cos(M_PI * t));
}

// AdamW's step count for the bias correction 1 − β^t. Past INT_MAX steps β^t is
// 0 in any float, so clamping there changes nothing and keeps the int slot exact.
static int adam_t(int64_t t) { return t < INT_MAX ? (int)t : INT_MAX; }

void optimizer_adamw(const Backend *be, Model *m, float *am, float *av, const OptimConfig *o, double lr,
                     int64_t steps_done) {
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *p = &m->tensors[i];
        be->adamw_update(m->params + p->offset, m->grads + p->offset, am + p->offset, av + p->offset, p->numel,
                         (float)lr, (float)o->beta1, (float)o->beta2, (float)o->eps,
                         p->decay ? (float)o->weight_decay : 0.0f, adam_t(steps_done + 1));
    }
}

void optimizer_update(Trainer *t, double lr) {
    optimizer_adamw(t->be, &t->m, t->am, t->av, &t->c->optim, lr, t->pos.step);
}
