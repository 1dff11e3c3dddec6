/* End-to-end gradient self-check of the model (`ei selfcheck`, tests), on the real model code: a
 * small random Llama (formats/model_write.c) built by the layer recipe through the autograd
 * emitter, in float64, against central finite differences:
 *   - one EdgeInfinite segment graph (memory non-empty, tokens compressed) with EVERY weight a
 *     parameter and every state input (sink, window, M, z) requiring a gradient: the loss's
 *     gradient with respect to all of them;
 *   - a whole document of several segments through ei_edge (BPTT by recomputation across the
 *     memory updates): the gradient of the loss with respect to the gates, for each gate kind and
 *     memory rule. */
#ifndef EI_TRAIN_SELFCHECK_H
#define EI_TRAIN_SELFCHECK_H

#include "autograd/selfcheck.h"

#include <stdint.h>

/* Appends up to max rows (family, max relative error, max |gradient|, elements checked). Returns
 * the row count, or -1 with ei_error set when a graph could not be built or run. */
int ei_selfcheck_model(ag_selfcheck_row *rows, int max, uint64_t seed);

#endif
