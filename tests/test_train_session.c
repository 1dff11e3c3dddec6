/* The one check that sink + window + segment stays within the model's trained context
 * (ei_opts_context_check, train/edge_session.h), which ei train, eval, generate and compile share. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "train/edge_session.h"

#include <string.h>

static void test_context_check(void **state) {
    (void)state;
    ei_opts o;
    ei_opts_default(&o); /* sink 4 + window 256 + segment 128 = 388 */
    ei_model_config c = {.max_seq_len = 128};
    char msg[512];
    assert_int_equal(ei_opts_context_check(&o, &c, msg, sizeof msg), 1);
    assert_non_null(strstr(msg, "sink 4 + window 256 + segment 128 = 388"));
    assert_non_null(strstr(msg, "trained context of 128"));
    /* exactly the context fits: positions 0 .. S + W + L - 1 */
    c.max_seq_len = 388;
    assert_int_equal(ei_opts_context_check(&o, &c, msg, sizeof msg), 0);
    assert_string_equal(msg, "");
    c.max_seq_len = 387;
    assert_int_equal(ei_opts_context_check(&o, &c, msg, sizeof msg), 1);
    o.window = 64;
    o.segment = 32;
    c.max_seq_len = 128;
    assert_int_equal(ei_opts_context_check(&o, &c, msg, sizeof msg), 0);
    /* no model, or one that does not say: nothing to check */
    assert_int_equal(ei_opts_context_check(&o, NULL, msg, sizeof msg), 0);
    c.max_seq_len = 0;
    assert_int_equal(ei_opts_context_check(&o, &c, msg, sizeof msg), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_context_check)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
