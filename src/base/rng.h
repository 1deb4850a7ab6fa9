/*
 * Seeded pseudo-random numbers: xoshiro256** seeded through splitmix64.
 * A (seed, stream) pair names an independent sequence, so shuffles, weight
 * initialisation and dropout masks can each draw from their own stream and
 * stay reproducible when one of them changes how much it draws.
 */
#ifndef DISTML_BASE_RNG_H
#define DISTML_BASE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} dm_rng;

void dm_rng_seed(dm_rng *rng, uint64_t seed, uint64_t stream);
uint64_t dm_rng_next(dm_rng *rng);
/* Uniform integer in [0, bound), without modulo bias; BOUND must be > 0. */
uint64_t dm_rng_below(dm_rng *rng, uint64_t bound);
/* Uniform float in [0, 1) with 24 random bits. */
float dm_rng_uniform(dm_rng *rng);

#endif
