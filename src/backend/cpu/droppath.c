// droppath.c: the drop-path scales, drawn from the counter RNG (core/rng.h), so a
// scale is a pure function of (seed, step, block, branch, image) whatever the
// thread count; kernels/droppath.cu draws the same bits on the device with cuRAND.
#include "backend/cpu/cpu.h"
#include "core/rng.h"

void cpu_droppath_masks(float *drop, const float *keep, int nblk, int B, uint64_t seed, uint64_t step) {
    for (int m = 0; m < 2 * nblk; m++) {   // m = 2·block + branch: the stream's epoch
        float k = keep[m / 2];
        Rng r;
        rng_init(&r, seed, (uint32_t)m, step, RNG_DROPPATH);
        for (int b = 0; b < B; b++) drop[(size_t)m * B + b] = rng_uniform(&r) < k ? 1.0f / k : 0.0f;
    }
}
