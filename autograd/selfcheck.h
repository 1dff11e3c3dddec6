/* Built-in gradient self-check of the autograd engine (`ei selfcheck`, tests): small float64 graphs
 * per op family, checked against central finite differences. The model itself (the layer recipe
 * through the autograd emitter) is checked end to end by train/selfcheck.h. */
#ifndef EI_AG_SELFCHECK_H
#define EI_AG_SELFCHECK_H

#include "autograd/autograd.h"
#include "autograd/gradcheck.h"

#include <stdio.h>

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
