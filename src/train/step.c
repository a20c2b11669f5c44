// step.c: the micro-batches of one optimizer step. Micro-batch k of rank r is
// the step's global micro-batch g = r * accum + k (datasets' loader_set_shard):
// its PWCA distractors come from a derangement keyed by the global micro-step,
// the training forward runs (SA, rollout, GLCA, PWCA, loss), and its backward
// writes its own gradient, from zero, scaled by 1/(accum * world). The step's
// gradient is the sum of those in one fixed tree over g (src/dist/reduce.h), so
// k micro-batches of 16/k average to one batch of 16 (MODEL.md §4), with the
// same bits on one process as on several.
#include <math.h>
#include "core/rng.h"
#include "dist/dist.h"
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

// The part of micro-batch k that is the same ops on the same buffers every step (after
// model_train_inputs): forward, its loss kept in loss_dev (check_losses reads it at the
// step's end), backward into micro-batch k's gradient buffer. Recorded where the backend
// records steps (graph_run, keyed by k: each k has its own buffers).
typedef struct {
    Trainer *t;
    int k;
} MicroBody;

static void micro_body(void *ctx) {
    const MicroBody *mb = ctx;
    Trainer *t = mb->t;
    StepOut so;
    model_forward_body(&t->m, &so);
    t->be->copy(t->loss_dev + (size_t)mb->k * 4, so.loss_dev, 4 * sizeof(float));
    model_backward(&t->m, 1.0f / (float)t->group);
}

// One micro-batch: load, pair, forward, backward into its own buffer (check_losses reads the loss).
static int micro_batch(Trainer *t, int k) {
    const DcalConfig *c = t->c;
    // The other buffer: the last micro-batch's upload may still be reading this one's twin.
    t->img_i ^= 1;
    t->img = t->img_buf[t->img_i];
    t->lab = t->lab_buf[t->img_i];
    t->pair = t->pair_buf[t->img_i];
    t->be->host_ready(t->img);
    t->be->host_ready(t->lab);
    t->be->host_ready(t->pair);
    int rows = loader_next(t->L, t->img, t->lab, t->ids);
    if (rows == LOADER_INTERRUPTED) return TRAIN_INTERRUPTED;
    if (rows < 0) return DCAL_EXIT_FAIL;
    if (rows != t->micro) {
        dcal_err("internal: loader gave %d rows, expected %d", rows, t->micro);
        return DCAL_EXIT_FAIL;
    }
    uint64_t g = (uint64_t)t->pos.micro_step + (uint64_t)t->rank * (uint64_t)t->accum + (uint64_t)k;
    pwca_pairing(t->pair, t->micro, c->train.seed, g);
    Batch bt = {.B = t->micro, .images = t->img, .labels = t->lab, .pair = c->model.pwca_blocks ? t->pair : NULL,
                .seed = c->train.seed, .step = g};
    model_train_inputs(&t->m, &bt);
    t->m.grads = reducer_leaf(&t->red);
    MicroBody mb = {t, k};
    // Not recorded: a dump reads this micro-batch's outputs back, and an update in backward
    // runs at this step's learning rate (a kernel argument a recording would keep).
    if (t->o->dump_path || t->in_backward) {
        micro_body(&mb);
        if (t->o->dump_path) {
            StepOut so;
            model_read_outputs(&t->m, &so);
            dump_micro(t, &so, k);
        }
    } else {
        t->be->graph_run(k, micro_body, &mb);
    }
    model_inputs_consumed(&t->m);
    reducer_push(&t->red);
    return TRAIN_GO_ON;
}

// This rank's micro-batch losses, read back once per step: each must be finite (a NaN or
// infinite loss stops the run with nothing written: before its optimizer step, or, with the
// update inside backward, after it moved only the weights in memory), then they join
// micro_sums in global micro-batch order.
static int check_losses(Trainer *t) {
    float *v = xmalloc((size_t)t->accum * 4 * sizeof(float));
    t->be->to_host(v, t->loss_dev, (size_t)t->accum * 4 * sizeof(float));
    int rc = TRAIN_GO_ON;
    for (int k = 0; k < t->accum && rc == TRAIN_GO_ON; k++) {
        const float *o = v + (size_t)k * 4;
        if (!isfinite(o[0])) {
            dcal_err("step %lld: loss is %g (CE SA %g, GLCA %g, PWCA %g): stopping; %s", (long long)t->pos.step + 1,
                     o[0], o[1], o[2], o[3], trainer_checkpoint_state(t));
            rc = DCAL_EXIT_FAIL;
        }
        double *mine = t->micro_sums + (size_t)(t->rank * t->accum + k) * 4;
        for (int i = 0; i < 4; i++) mine[i] = o[i];
    }
    free(v);
    return rc;
}

int trainer_agree(int rc) {
    int mine = rc == TRAIN_GO_ON ? 0 : rc == TRAIN_INTERRUPTED ? 1 : 2, all = dist_max_int(mine);
    if (all == mine) return rc;
    return all == 1 ? TRAIN_INTERRUPTED : DCAL_EXIT_FAIL;
}

// steps.tsv and the progress line: every micro-batch's loss and CEs, summed in
// double in global micro-batch order, the same on every rank and every split.
static int sum_losses(Trainer *t) {
    size_t mine = (size_t)t->rank * t->accum * 4, n = (size_t)t->accum * 4 * sizeof(double);
    if (t->world > 1 && !dist_allgather(t->micro_sums + mine, t->micro_sums, n)) return 0;
    for (int i = 0; i < 4; i++) t->step_sum[i] = 0;
    for (int g = 0; g < t->group; g++) {
        const double *v = t->micro_sums + (size_t)g * 4;
        for (int i = 0; i < 4; i++) t->step_sum[i] += v[i];
        t->prog.sum_loss += v[0];
        for (int h = 0; h < 3; h++) t->prog.sum_ce[h] += v[1 + h];
        t->prog.n_sum++;
    }
    return 1;
}

int trainer_micro_batches(Trainer *t) {
    int rc = TRAIN_GO_ON;
    reducer_begin(&t->red);
    for (int k = 0; k < t->accum && rc == TRAIN_GO_ON; k++) rc = micro_batch(t, k);
    if (rc == TRAIN_GO_ON) rc = check_losses(t);
    rc = trainer_agree(rc);
    t->m.grads = t->red.buf[0];
    if (rc != TRAIN_GO_ON) return rc;
    if (!reducer_finish(&t->red) || !sum_losses(t)) return DCAL_EXIT_FAIL;
    t->pos.micro_step += t->group;
    return TRAIN_GO_ON;
}
