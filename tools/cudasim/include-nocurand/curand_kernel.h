// cudasim's stand-in for curand_kernel.h, used only when no CUDA toolkit headers are
// found (tools/cudasim/README.md, "cuRAND"): the Philox4_32_10 part of cuRAND's device
// API that kernels/rng_philox.cuh uses, written from cuRAND's documented behaviour
// (Salmon et al., SC'11, and the state's public fields). With a toolkit, the real header
// is compiled instead and sim_curand proves it draws core/rng.c's stream; with this
// stand-in that test skips, since it would only compare this file with itself.
#pragma once
#include <cuda_runtime.h>
#define CUDASIM_CURAND_STANDIN 1

struct curandStatePhilox4_32_10 {
    uint4 ctr;
    uint4 output;
    uint2 key;
    unsigned int STATE;
    int boxmuller_flag;
    int boxmuller_flag_double;
    float boxmuller_extra;
    double boxmuller_extra_double;
};
typedef struct curandStatePhilox4_32_10 curandStatePhilox4_32_10_t;

static inline uint4 cudasim_philox_round(uint4 c, uint2 k) {
    unsigned long long p0 = 0xD2511F53ull * c.x, p1 = 0xCD9E8D57ull * c.z;
    return uint4{(unsigned)(p1 >> 32) ^ c.y ^ k.x, (unsigned)p1, (unsigned)(p0 >> 32) ^ c.w ^ k.y, (unsigned)p0};
}

static inline uint4 curand_Philox4x32_10(uint4 c, uint2 k) {
    for (int i = 0; i < 9; i++) {
        c = cudasim_philox_round(c, k);
        k.x += 0x9E3779B9u;
        k.y += 0xBB67AE85u;
    }
    return cudasim_philox_round(c, k);
}

// cuRAND's order: a used-up block steps the counter from its lowest word.
static inline void Philox_State_Incr(curandStatePhilox4_32_10_t *s) {
    if (++s->ctr.x) return;
    if (++s->ctr.y) return;
    if (++s->ctr.z) return;
    ++s->ctr.w;
}

static inline unsigned int curand(curandStatePhilox4_32_10_t *s) {
    const uint4 o = s->output;
    unsigned r = s->STATE == 1 ? o.y : s->STATE == 2 ? o.z : s->STATE == 3 ? o.w : o.x;
    if (++s->STATE == 4) {
        Philox_State_Incr(s);
        s->output = curand_Philox4x32_10(s->ctr, s->key);
        s->STATE = 0;
    }
    return r;
}
