// ops_droppath.c: the op case for droppath_masks. Its reference is the host loop that
// drew the masks before the op existed (model_graph.c, through core/rng.c): every
// backend must give those exact bits (tolerance 0), the CUDA one through cuRAND.
#include <stdint.h>
#include <stdlib.h>
#include "ops.h"

// p = {nblk, B, seed low, seed high, step low, step high, drop rate ‰ at the last block}.
static uint64_t u64(int lo, int hi) { return (uint64_t)(uint32_t)hi << 32 | (uint32_t)lo; }

static void dp_init(OpCase *c, Rng *r) {
    (void)r;
    const int *p = c->row->p;
    int nblk = p[0];
    c->nx = 1, c->ny = 1;
    tensor_set(&c->x[0], "keep", nblk, T_F32, 0);
    float *keep = c->x[0].h = tz(nblk, sizeof(float));
    // Linear over depth as the model's schedule: keep 1 at block 0, 1 − rate at the last
    // (rate 1000‰ makes it 0: nothing kept, and no 1/0 may leak out).
    for (int k = 0; k < nblk; k++) keep[k] = (float)(1.0 - p[6] / 1000.0 * (nblk > 1 ? (double)k / (nblk - 1) : 1.0));
    tensor_set(&c->y[0], "drop", (size_t)2 * nblk * p[1], T_F32, 0);
}

static void dp_ref(const OpCase *c, double *const *x, double *const *y) {
    const int *p = c->row->p;
    int nblk = p[0], B = p[1];
    for (int m = 0; m < 2 * nblk; m++) {
        float keep = (float)x[0][m / 2];
        Rng r;
        rng_init(&r, u64(p[2], p[3]), (uint32_t)m, u64(p[4], p[5]), RNG_DROPPATH);
        for (int b = 0; b < B; b++) y[0][(size_t)m * B + b] = rng_uniform(&r) < keep ? 1.0f / keep : 0.0f;
    }
}

static void dp_be(const Backend *be, const OpCase *c, void *const *x, void *const *y) {
    const int *p = c->row->p;
    be->droppath_masks((float *)y[0], (const float *)x[0], p[0], p[1], u64(p[2], p[3]), u64(p[4], p[5]));
}
const OpDef OP_DROPPATH = {"droppath_masks", dp_init, dp_ref, NULL, dp_be, NULL, NULL, 0, NULL};
