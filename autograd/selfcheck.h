/* Built-in gradient self-check (`ei selfcheck`, tests): small float64 graphs per op family and a
 * tiny 2-layer transformer stack, all checked against central finite differences.
 *
 * The tiny transformer (ag_tiny_*) is also the composite graph the tests use for end-to-end
 * checks: token embedding (frozen), per layer RMSNorm, q/k/v/o projections (k and v frozen),
 * RoPE on cache-relative positions, GQA attention over [cached K/V | segment] with a slot-validity
 * mask, an EdgeInfinite-style memory read-out sigma(q) M / (sigma(q) z + eps) mixed in by a
 * sigmoid gate, a SwiGLU MLP; final RMSNorm, classifier and masked cross-entropy. Cached K/V and
 * M, z are requires-grad inputs (state from a previous segment). */
#ifndef EI_AG_SELFCHECK_H
#define EI_AG_SELFCHECK_H

#include "autograd/autograd.h"
#include "autograd/gradcheck.h"

#include <stdio.h>

typedef struct {
    int vocab, dim, hidden, layers, heads, kv_heads, head_dim, seq, cache;
    ag_rope_layout layout;
} ag_tiny_cfg;

#define AG_TINY_MAX_LAYERS 4

typedef struct {
    ag_tensor *loss;                 /* [1], masked CE sum */
    ag_tensor *logits;               /* [seq, vocab] */
    ag_tensor *params[16 * AG_TINY_MAX_LAYERS + 4];
    int nparams;
    ag_tensor *state[4 * AG_TINY_MAX_LAYERS]; /* requires-grad inputs: cache K, cache V, M, z per layer */
    int nstate;
    ag_tensor *frozen[3 * AG_TINY_MAX_LAYERS + 1]; /* const weights: embedding, wk, wv */
    int nfrozen;
    ag_tensor *layer_out[AG_TINY_MAX_LAYERS]; /* residual stream after each layer [seq, dim] */
} ag_tiny_model;

/* Builds the model into g (either dtype) and fills every leaf deterministically from seed.
 * Returns -1 with ei_error set if building failed. */
int ag_tiny_build(ag_graph *g, const ag_tiny_cfg *cfg, uint64_t seed, ag_tiny_model *m);

typedef struct {
    const char *family;
    double max_rel_err;
    double max_abs_grad;
    int64_t n_checked;
} ag_selfcheck_row;

/* Runs every family check (step 1e-5) and writes up to max rows. Returns the row count, or -1
 * if a graph could not be built or run. */
int ag_selfcheck_run(ag_selfcheck_row *rows, int max, uint64_t seed);

#endif
