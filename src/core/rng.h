// rng.h: counter-based random numbers. Every draw is a pure function of
// (seed, epoch, index, purpose, counter), so results never depend on thread
// count or scheduling (ARCHITECTURE.md §6). Philox-4x32-10.
#pragma once
#include <stdint.h>

// What a draw is for; part of the key so streams never overlap.
enum RngPurpose {
    RNG_INIT = 1,      // parameter initialisation (index = parameter tensor id)
    RNG_SHUFFLE = 2,   // epoch permutation of the train set
    RNG_CROP = 3,      // random crop offsets (index = sample id)
    RNG_FLIP = 4,      // horizontal flip (index = sample id)
    RNG_PAIR = 5,      // PWCA derangement (index = global micro-step)
    RNG_DROPPATH = 6,  // stochastic depth masks (index = global micro-step)
    RNG_SYNTH = 7,     // synthetic dataset generator (index = image id)
    RNG_TEST = 8,
    RNG_VAL_SPLIT = 9, // held-out validation images (index = class id)
};

typedef struct {
    uint32_t key[2];
    uint32_t ctr[4];
    uint32_t out[4];
    int used;          // how many of out[] are consumed
} Rng;

void rng_init(Rng *r, uint64_t seed, uint32_t epoch, uint64_t index, uint32_t purpose);
uint32_t rng_u32(Rng *r);
double rng_uniform(Rng *r);                 // [0, 1), 53 bits
float rng_normal(Rng *r);                   // N(0,1), Box-Muller
uint32_t rng_below(Rng *r, uint32_t n);     // uniform in [0, n), unbiased
