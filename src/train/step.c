// step.c: the micro-batches of one optimizer step. Each micro-batch gets its
// PWCA distractors from a derangement keyed by the global micro-step, runs the
// training forward (SA, rollout, GLCA, PWCA, loss) and the backward, which
// accumulates into the model's gradient with loss scale 1/accumulation, so k
// micro-batches of 16/k average to one batch of 16 (MODEL.md §4).
#include <math.h>
#include "core/rng.h"
#include "train/trainer.h"

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

// One micro-batch: load, pair, forward, check the loss, backward.
static int micro_batch(Trainer *t, int k) {
    const DcalConfig *c = t->c;
    int rows = loader_next(t->L, t->img, t->lab, t->ids);
    if (rows == LOADER_INTERRUPTED) return TRAIN_INTERRUPTED;
    if (rows < 0) return DCAL_EXIT_FAIL;
    if (rows != t->micro) {
        dcal_err("internal: loader gave %d rows, expected %d", rows, t->micro);
        return DCAL_EXIT_FAIL;
    }
    pwca_pairing(t->pair, t->micro, c->train.seed, (uint64_t)t->pos.micro_step);
    Batch bt = {.B = t->micro, .images = t->img, .labels = t->lab, .pair = c->model.pwca_blocks ? t->pair : NULL,
                .seed = c->train.seed, .step = (uint64_t)t->pos.micro_step};
    StepOut so;
    model_forward_train(&t->m, &bt, &so);
    if (!isfinite(so.loss)) {
        dcal_err("step %lld: loss is %g (CE SA %g, GLCA %g, PWCA %g): stopping; %s", (long long)t->pos.step + 1,
                 so.loss, so.ce[0], so.ce[1], so.ce[2], trainer_checkpoint_state(t));
        return DCAL_EXIT_FAIL;
    }
    model_backward(&t->m, 1.0f / t->accum);
    if (t->o->dump_path) dump_micro(t, &so, k);
    t->pos.micro_step++;
    t->step_sum[0] += so.loss;   // steps.tsv: in micro-batch order, in double (exact for a few floats)
    for (int h = 0; h < 3; h++) t->step_sum[1 + h] += so.ce[h];
    t->prog.sum_loss += so.loss;
    for (int h = 0; h < 3; h++) t->prog.sum_ce[h] += so.ce[h];
    t->prog.n_sum++;
    return TRAIN_GO_ON;
}

int trainer_micro_batches(Trainer *t) {
    model_zero_grads(&t->m);
    for (int i = 0; i < 4; i++) t->step_sum[i] = 0;
    for (int k = 0; k < t->accum; k++) {
        int rc = micro_batch(t, k);
        if (rc != TRAIN_GO_ON) return rc;
    }
    return TRAIN_GO_ON;
}
