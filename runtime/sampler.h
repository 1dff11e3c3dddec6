/* Next-token sampling from logits: greedy, or temperature + nucleus (top-p) with a seeded RNG
 * (core/ei_rng), shared by `ei generate` (eager model) and the on-device runner. libc only.
 *
 * A non-finite logit is an error (a model with NaN weights must not produce an index from garbage).
 * Ownership: ei_sampler_init allocates the scratch for a vocabulary; ei_sampler_free releases it. */
#ifndef EI_RUNTIME_SAMPLER_H
#define EI_RUNTIME_SAMPLER_H

#include "core/ei_rng.h"

#include <stdint.h>

typedef struct {
    float temperature; /* <= 0: greedy */
    float top_p;       /* (0, 1]; >= 1: the whole distribution */
    ei_rng rng;
    int vocab;
    void *scratch;     /* vocab (probability, index) pairs */
} ei_sampler;

int ei_sampler_init(ei_sampler *s, int vocab, float temperature, float top_p, uint64_t seed);
void ei_sampler_free(ei_sampler *s);
/* The next token id from logits[vocab] (overwritten with probabilities when sampling); -1 with
 * ei_error set when a logit is not finite. */
int ei_sampler_next(ei_sampler *s, float *logits);

#endif
