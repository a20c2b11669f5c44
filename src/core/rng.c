// rng.c: Philox-4x32-10 (Salmon et al., SC'11), keyed by (seed, purpose) with
// the counter carrying (epoch, index, block).
#include "core/rng.h"
#include <math.h>

static void philox_round(uint32_t c[4], const uint32_t k[2]) {
    uint64_t p0 = (uint64_t)0xD2511F53u * c[0];
    uint64_t p1 = (uint64_t)0xCD9E8D57u * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k[0];
    uint32_t n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
}

static void philox_block(Rng *r) {
    uint32_t c[4] = {r->ctr[0], r->ctr[1], r->ctr[2], r->ctr[3]};
    uint32_t k[2] = {r->key[0], r->key[1]};
    for (int i = 0; i < 10; i++) {
        philox_round(c, k);
        k[0] += 0x9E3779B9u;
        k[1] += 0xBB67AE85u;
    }
    for (int i = 0; i < 4; i++) r->out[i] = c[i];
    r->used = 0;
    r->ctr[3]++;   // block counter
}

void rng_init(Rng *r, uint64_t seed, uint32_t epoch, uint64_t index, uint32_t purpose) {
    // Mix the purpose into the key so different purposes are independent streams.
    uint64_t s = seed ^ ((uint64_t)purpose * 0x9E3779B97F4A7C15ull);
    r->key[0] = (uint32_t)s;
    r->key[1] = (uint32_t)(s >> 32);
    r->ctr[0] = epoch;
    r->ctr[1] = (uint32_t)index;
    r->ctr[2] = (uint32_t)(index >> 32);
    r->ctr[3] = 0;
    r->used = 4;
}

uint32_t rng_u32(Rng *r) {
    if (r->used >= 4) philox_block(r);
    return r->out[r->used++];
}

double rng_uniform(Rng *r) {
    uint64_t a = rng_u32(r) >> 5, b = rng_u32(r) >> 6;
    return ((double)a * 67108864.0 + (double)b) * (1.0 / 9007199254740992.0);
}

float rng_normal(Rng *r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t rng_below(Rng *r, uint32_t n) {
    if (n <= 1) return 0;
    uint32_t limit = (uint32_t)(0x100000000ull - (0x100000000ull % n));
    for (;;) {
        uint32_t x = rng_u32(r);
        if (limit == 0 || x < limit) return x % n;
    }
}
