// optimizer.c: the learning-rate schedule and the AdamW update (MODEL.md §4).
// Warm-up is linear per optimizer step from warmup_lr, then cosine to min_lr.
// Weight decay applies only where ParamTensor.decay says (not biases, LayerNorm,
// pos/cls or loss_w): each parameter group (model.h) becomes a table of decay spans
// once, and each step updates a group in one backend call — at the step's end, or,
// with train.update_in_backward, as soon as backward has finished its gradient.
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

// Group g's tensors as spans relative to its first float; neighbours with the same
// decay become one span (fewer, longer spans: less for a device thread to walk).
static int decay_spans(const Model *m, int g, AdamwSpan *out) {
    const ParamGroup *p = &m->groups[g];
    int n = 0;
    for (int i = p->first; i < p->first + p->count; i++) {
        const ParamTensor *t = &m->tensors[i];
        if (!t->numel) continue;
        size_t off = t->offset - p->offset;
        AdamwSpan *last = n ? &out[n - 1] : NULL;
        if (last && off < last->offset + last->numel)
            dcal_die("adamw: tensor '%s' overlaps the one before it in the parameter buffer", t->name);
        if (last && off == last->offset + last->numel && (last->decay != 0) == t->decay)
            last->numel += t->numel;
        else
            out[n++] = (AdamwSpan){.offset = off, .numel = t->numel, .decay = t->decay};
    }
    return n;
}

void adamw_groups_make(AdamwGroups *g, const Model *m) {
    AdamwSpan *h = xmalloc(((size_t)m->n_tensors + 1) * sizeof *h);
    *g = (AdamwGroups){.be = m->be, .n_groups = m->n_groups};
    g->first = xcalloc((size_t)m->n_groups, sizeof(int));
    g->count = xcalloc((size_t)m->n_groups, sizeof(int));
    int n = 0;
    for (int k = 0; k < m->n_groups; k++) {
        g->first[k] = n;
        g->count[k] = decay_spans(m, k, h + n);
        n += g->count[k];
    }
    g->spans = m->be->alloc(((size_t)n + 1) * sizeof *h);
    m->be->to_device(g->spans, h, (size_t)n * sizeof *h);
    free(h);
}

void adamw_groups_free(AdamwGroups *g) {
    if (g->spans) g->be->free(g->spans);
    free(g->first);
    free(g->count);
    *g = (AdamwGroups){0};
}

void optimizer_adamw_group(const AdamwGroups *g, Model *m, float *am, float *av, const OptimConfig *o, double lr,
                           int64_t steps_done, int group) {
    const ParamGroup *p = &m->groups[group];
    g->be->adamw_multi(m->params + p->offset, m->grads + p->goffset, am + p->offset, av + p->offset, p->numel,
                       g->spans + g->first[group], g->count[group], (float)lr, (float)o->beta1, (float)o->beta2,
                       (float)o->eps, (float)o->weight_decay, adam_t(steps_done + 1));
}

void optimizer_adamw(const AdamwGroups *g, Model *m, float *am, float *av, const OptimConfig *o, double lr,
                     int64_t steps_done) {
    for (int k = 0; k < m->n_groups; k++) optimizer_adamw_group(g, m, am, av, o, lr, steps_done, k);
}

double optimizer_group_sumsq(const Model *m, int group) {
    const ParamGroup *p = &m->groups[group];
    return m->be->sumsq(m->grads + p->goffset, p->numel);
}

double optimizer_sumsq(const Model *m, const double *gsq_dev, double *part) {
    if (gsq_dev) m->be->to_host(part, gsq_dev, (size_t)m->n_groups * sizeof(double));
    double s = 0;
    for (int k = 0; k < m->n_groups; k++) s += gsq_dev ? part[k] : optimizer_group_sumsq(m, k);
    return s;
}

void optimizer_update(Trainer *t, double lr) {
    optimizer_adamw(&t->adamw, &t->m, t->am, t->av, &t->c->optim, lr, t->pos.step);
}

void optimizer_group_final(const AdamwGroups *g, Model *m, float *am, float *av, const OptimConfig *o, double lr,
                           int64_t steps_done, double *gsq_dev, int group) {
    const ParamGroup *p = &m->groups[group];
    m->be->sumsq_into(gsq_dev + group, m->grads + p->goffset, p->numel);
    optimizer_adamw_group(g, m, am, av, o, lr, steps_done, group);
}

// train.update_in_backward (model.h grad_ready): at the step's learning rate.
void optimizer_in_backward(void *ctx, int g) {
    Trainer *t = ctx;
    optimizer_group_final(&t->adamw, &t->m, t->am, t->av, &t->c->optim, t->step_lr, t->pos.step, t->gsq_dev, g);
}
