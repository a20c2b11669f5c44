// droppath.cu: the drop-path scales drawn on the device with cuRAND's Philox4_32_10,
// the same bits as the CPU's src/backend/cpu/droppath.c (core/rng.c's stream; the
// mapping is in rng_philox.cuh): no host draw, allocation or copy in a step.
#include "kernels/cuda_common.h"
#include "kernels/rng_philox.cuh"

extern "C" {
#include "core/rng.h"
}

// One thread per scale (m = 2·block + branch, image b): image b's uniform is u32s 2b
// and 2b+1 of stream m, one half of block b/2, so each thread seeks straight to it.
__global__ void droppath_masks_kernel(float *drop, const float *keep, int nblk, int B, uint64_t seed,
                                      uint64_t step) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= 2 * nblk * B) return;
    int m = i / B, b = i % B;
    curandStatePhilox4_32_10_t s;
    rng_philox_seek(&s, seed, (uint32_t)m, step, RNG_DROPPATH, 2ull * (uint64_t)b);
    double u = rng_philox_uniform(&s);
    float k = keep[m / 2];
    drop[i] = u < (double)k ? __fdiv_rn(1.0f, k) : 0.0f;   // IEEE division, as the CPU's 1.0f / k
}

void cuda_droppath_masks(float *drop, const float *keep, int nblk, int B, uint64_t seed, uint64_t step) {
    int n = 2 * nblk * B;
    if (n <= 0) return;
    droppath_masks_kernel<<<cdiv((size_t)n, 256), 256, 0, cuda_stream()>>>(drop, keep, nblk, B, seed, step);
    LAUNCH_CHECK();
}
