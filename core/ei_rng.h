/* A small seeded pseudo-random generator: xoshiro256** (Blackman & Vigna), its state seeded by
 * splitmix64. Deterministic on every platform, so shuffles and samples are reproducible, and its
 * whole state is four uint64 words that checkpoints store and restore (ei_rng.s).
 * Not for cryptography. */
#ifndef EI_RNG_H
#define EI_RNG_H

#include <stddef.h>
#include <stdint.h>

#define EI_RNG_STATE_WORDS 4

typedef struct {
    uint64_t s[EI_RNG_STATE_WORDS];
} ei_rng;

/* One splitmix64 step: advances *state and returns the next output. */
uint64_t ei_splitmix64(uint64_t *state);

/* Seeds the four state words from splitmix64(seed); never all zero. */
void ei_rng_seed(ei_rng *r, uint64_t seed);
/* Restores a saved state; -1 (with ei_error set) if all words are zero, which xoshiro cannot leave. */
int ei_rng_set_state(ei_rng *r, const uint64_t s[EI_RNG_STATE_WORDS]);

uint64_t ei_rng_next(ei_rng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double ei_rng_uniform(ei_rng *r);
/* Uniform integer in [0, n) without modulo bias; n must be > 0 (returns 0 for n == 0). */
uint64_t ei_rng_below(ei_rng *r, uint64_t n);
/* Standard normal (Box-Muller, one value per call). */
double ei_rng_normal(ei_rng *r);
/* Fisher-Yates shuffle of a[0..n). */
void ei_rng_shuffle_i64(ei_rng *r, int64_t *a, size_t n);
/* Advances the state by 2^128 calls: gives independent streams (e.g. one per rank). */
void ei_rng_jump(ei_rng *r);

#endif
