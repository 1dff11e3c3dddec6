/* The end-to-end self-check of the model (train/selfcheck.h) must pass its own bounds: every
 * gradient of one segment (all weights and state inputs) and the BPTT gate gradients of whole
 * documents against finite differences in float64, and must see non-zero gradients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "train/selfcheck.h"

static void test_model_selfcheck(void **s) {
    (void)s;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        ag_selfcheck_row rows[8];
        int n = ei_selfcheck_model(rows, 8, seed);
        if (n < 0) fail_msg("%s", ei_error_get());
        assert_int_equal(n, 5);
        for (int i = 0; i < n; i++) {
            if (!(rows[i].max_rel_err <= 1e-6) || !(rows[i].max_abs_grad > 1e-6))
                fail_msg("seed %d, %s: relative error %.3g, max |grad| %.3g", (int)seed, rows[i].family,
                         rows[i].max_rel_err, rows[i].max_abs_grad);
            assert_true(rows[i].n_checked > 0);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_model_selfcheck)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
