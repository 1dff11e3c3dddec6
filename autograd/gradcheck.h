/* Gradient checking against central finite differences, for tests and `ei selfcheck`.
 *
 * Meant for float64 graphs (float32 differences are too noisy for tight bounds). The graph is
 * finalized and run by the checker; the wrt tensors' data is perturbed and restored exactly. */
#ifndef EI_AG_GRADCHECK_H
#define EI_AG_GRADCHECK_H

#include "autograd/autograd.h"

typedef struct {
    double max_rel_err;   /* max_i |analytic_i - numeric_i| / max(max_i |numeric_i|, 1e-8) per tensor, max over tensors */
    double max_abs_err;   /* max_i |analytic_i - numeric_i| */
    double max_abs_grad;  /* max_i |numeric_i|: a check that sees only zeros checks nothing */
    int64_t n_checked;    /* elements perturbed */
    int worst_tensor;     /* index into wrt of the tensor with the largest relative error */
    int64_t worst_index;
} ag_gradcheck_result;

/* loss: a [1] node. wrt: params or requires-grad inputs (their gradients are zeroed first and hold
 * the analytic gradient afterwards). step: finite-difference step (1e-5 is a good default in
 * float64). max_per_tensor: check at most this many elements per tensor, spread evenly (0 = all).
 * Returns -1 if a forward/backward failed (ei_error set). */
int ag_gradcheck(ag_graph *g, ag_tensor *loss, int n, ag_tensor *const *wrt, double step, int64_t max_per_tensor,
                 ag_gradcheck_result *res);

/* A random projection loss sum(out * R), R a const of out's shape filled from seed in [-1, 1):
 * gives every element of out a distinct gradient. */
ag_tensor *ag_gradcheck_loss(ag_graph *g, ag_tensor *out, uint64_t seed);

/* Fills a float tensor with uniform values in [lo, hi): one ei_splitmix64 step (core/ei_rng.h) of
 * *state per element, so the values depend only on the state, on every platform. */
int ag_fill_uniform(ag_tensor *t, uint64_t *state, double lo, double hi);

#endif
