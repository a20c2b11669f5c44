// rng_philox.cuh: core/rng.c's streams drawn on the device with cuRAND's
// Philox4_32_10 (curand_kernel.h), bit for bit.
//
// Both run the same Philox-4x32-10 block function (same round constants, same key
// schedule) on a 128-bit counter under a 64-bit key. They differ in how the counter
// moves: rng.c puts (epoch, index low, index high) in ctr.x..z and counts blocks in
// ctr.w, while curand() steps ctr.x (carrying upward) when a block is used up. So a
// cuRAND state is set here field by field at the block holding the wanted draw, and
// curand() reads on only inside that block: never across its end, where cuRAND's next
// block would not be rng.c's.
#pragma once
#include <curand_kernel.h>
#include <stdint.h>

// The state whose next curand() is u32 number `pos` (0-based) of the stream
// rng_init(seed, epoch, index, purpose) (rng.c: its key mixing, its counter layout).
// curand() then gives rng_u32's values up to the end of that block of four.
__device__ __forceinline__ void rng_philox_seek(curandStatePhilox4_32_10_t *s, uint64_t seed, uint32_t epoch,
                                                uint64_t index, uint32_t purpose, uint64_t pos) {
    uint64_t k = seed ^ ((uint64_t)purpose * 0x9E3779B97F4A7C15ull);
    s->key.x = (uint32_t)k;
    s->key.y = (uint32_t)(k >> 32);
    s->ctr.x = epoch;
    s->ctr.y = (uint32_t)index;
    s->ctr.z = (uint32_t)(index >> 32);
    s->ctr.w = (uint32_t)(pos >> 2);   // rng.c's 32-bit block counter
    s->output = curand_Philox4x32_10(s->ctr, s->key);
    s->STATE = (unsigned)(pos & 3);
    s->boxmuller_flag = s->boxmuller_flag_double = 0;
    s->boxmuller_extra = 0.f;
    s->boxmuller_extra_double = 0.;
}

// rng_uniform: the next two u32s as a 53-bit fraction in [0, 1). Every step is exact
// (a 53-bit integer, then a power of two), so no rounding mode or FMA contraction can
// change a bit. The two draws must lie in one block: seek to an even pos.
__device__ __forceinline__ double rng_philox_uniform(curandStatePhilox4_32_10_t *s) {
    uint64_t a = curand(s) >> 5;
    uint64_t b = curand(s) >> 6;
    return ((double)a * 67108864.0 + (double)b) * (1.0 / 9007199254740992.0);
}
