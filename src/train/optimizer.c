// optimizer.c: the learning-rate schedule and the AdamW update (MODEL.md §4).
// Warm-up is linear per optimizer step from warmup_lr, then cosine to min_lr.
// Weight decay applies only where ParamTensor.decay says (not biases, LayerNorm,
// pos/cls or loss_w): the tensor table becomes a table of decay spans over the
// flat buffer once, and each step updates every span in one backend call.
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/common.h"
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

static int by_offset(const void *a, const void *b) {
    const ParamTensor *x = *(const ParamTensor *const *)a, *y = *(const ParamTensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

// The tensors in buffer order; neighbours with the same decay become one span
// (fewer, longer spans: less for a device thread to walk). Returns the count.
static int decay_spans(const Model *m, AdamwSpan *out) {
    const ParamTensor **ord = xmalloc((size_t)m->n_tensors * sizeof *ord);
    for (int i = 0; i < m->n_tensors; i++) ord[i] = &m->tensors[i];
    qsort(ord, (size_t)m->n_tensors, sizeof *ord, by_offset);
    int n = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *p = ord[i];
        if (!p->numel) continue;
        AdamwSpan *last = n ? &out[n - 1] : NULL;
        if (last && p->offset < last->offset + last->numel)
            dcal_die("adamw: tensor '%s' overlaps the one before it in the parameter buffer", p->name);
        if (last && p->offset == last->offset + last->numel && (last->decay != 0) == p->decay)
            last->numel += p->numel;
        else
            out[n++] = (AdamwSpan){.offset = p->offset, .numel = p->numel, .decay = p->decay};
    }
    free(ord);
    return n;
}

void adamw_groups_make(AdamwGroups *g, const Model *m) {
    AdamwSpan *h = xmalloc(((size_t)m->n_tensors + 1) * sizeof *h);
    *g = (AdamwGroups){.be = m->be, .n = decay_spans(m, h)};
    g->spans = m->be->alloc(((size_t)g->n + 1) * sizeof *h);
    m->be->to_device(g->spans, h, (size_t)g->n * sizeof *h);
    free(h);
}

void adamw_groups_free(AdamwGroups *g) {
    if (g->spans) g->be->free(g->spans);
    *g = (AdamwGroups){0};
}

void optimizer_adamw(const AdamwGroups *g, Model *m, float *am, float *av, const OptimConfig *o, double lr,
                     int64_t steps_done) {
    g->be->adamw_multi(m->params, m->grads, am, av, m->n_params, g->spans, g->n, (float)lr, (float)o->beta1,
                       (float)o->beta2, (float)o->eps, (float)o->weight_decay, adam_t(steps_done + 1));
}

void optimizer_update(Trainer *t, double lr) {
    optimizer_adamw(&t->adamw, &t->m, t->am, t->av, &t->c->optim, lr, t->pos.step);
}
