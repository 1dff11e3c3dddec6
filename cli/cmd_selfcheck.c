/* `ei selfcheck`: gradient check against central finite differences in float64: one line per
 * autograd op family, then the real model end to end (train/selfcheck.h). */
#include "autograd/selfcheck.h"
#include "train/selfcheck.h"
#include "cli/commands.h"
#include "core/ei_args.h"
#include "core/ei_error.h"

#include <stdio.h>
#include <stdlib.h>

int ei_cmd_selfcheck(int argc, char **argv) {
    double tol = 1e-6;
    int seed = 1, npos = 0;
    char **pos = NULL;
    ei_arg opts[] = {
        {"tol", EI_ARG_FLOAT, &tol, "X", "largest accepted relative error (max |analytic-numeric| / max |numeric|)"},
        EI_ARG_RANGE(1e-15, 1),
        {"seed", EI_ARG_INT, &seed, "N", "seed of the random test data"},
        EI_ARG_RANGE(0, 2147483647),
        {0}};
    int rc = ei_args_parse(argc, argv, "ei selfcheck",
                           "Checks every autograd op family, one segment of a small random model (every weight "
                           "and state input) and the gate gradients of whole documents (BPTT through the memory) "
                           "against central finite differences (float64, step 1e-5). Exits 1 if any error "
                           "exceeds --tol.",
                           opts, &pos, &npos);
    if (rc) return rc < 0 ? 2 : 0;
    free(pos);
    if (npos) {
        fprintf(stderr, "ei selfcheck: error: unexpected argument (see --help)\n");
        return 2;
    }
    ag_selfcheck_row rows[16];
    int n = ag_selfcheck_run(rows, 16, (uint64_t)seed);
    int nm = n < 0 ? -1 : ei_selfcheck_model(rows + n, 16 - n, (uint64_t)seed);
    n = nm < 0 ? -1 : n + nm;
    if (n < 0) {
        ei_error_print("selfcheck");
        return 1;
    }
    int bad = 0;
    printf("%-44s %12s %12s %9s  %s\n", "check", "max rel err", "max |grad|", "checked", "result");
    for (int i = 0; i < n; i++) {
        /* a family whose gradients are all ~0 would pass vacuously */
        const int ok = rows[i].max_rel_err <= tol && rows[i].max_abs_grad > 1e-6;
        bad |= !ok;
        printf("%-44s %12.2e %12.2e %9lld  %s\n", rows[i].family, rows[i].max_rel_err, rows[i].max_abs_grad,
               (long long)rows[i].n_checked, ok ? "ok" : "FAIL");
    }
    printf("selfcheck: %s (tolerance %.1e)\n", bad ? "FAILED" : "all gradients match", tol);
    return bad ? 1 : 0;
}
