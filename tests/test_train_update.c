/* The trainer's update rule for bad steps: a non-finite loss or gradient skips the update without
 * touching parameters or Adam moments, consecutive skips are counted, max_bad_steps in a row is a
 * clear error, and a finite step resets the count and applies AdamW (checked against the optimizer
 * called directly on a copy). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "train/trainer.h"

#include <math.h>
#include <string.h>

#define N 16

static void fill(float *g, float scale) {
    for (int i = 0; i < N; i++) g[i] = scale * (float)(i - 7) / 8.0f;
}

static void test_skip_and_count(void **state) {
    (void)state;
    ei_adamw a, ref;
    assert_int_equal(ei_adamw_init(&a, N, 0.9, 0.999, 1e-8, 0.0), 0);
    assert_int_equal(ei_adamw_init(&ref, N, 0.9, 0.999, 1e-8, 0.0), 0);
    float p[N], pref[N], g[N], gref[N];
    fill(p, 1.0f);
    memcpy(pref, p, sizeof p);
    int bad = 0;

    /* finite step: same as AdamW applied directly (after clipping to 1.0) */
    fill(g, 0.5f);
    memcpy(gref, g, sizeof g);
    double norm = ei_grad_global_norm(g, N);
    assert_int_equal(ei_trainer_update(&a, p, g, N, 1.5, norm, 1e-2, 1.0, &bad, 3), 1);
    ei_grad_clip(gref, N, 1.0);
    ei_adamw_step(&ref, pref, gref, 1e-2);
    assert_memory_equal(p, pref, sizeof p);
    assert_int_equal(bad, 0);

    /* NaN loss, then an infinite gradient: skipped, nothing changes */
    float before[N], m_before[N], v_before[N];
    memcpy(before, p, sizeof p);
    memcpy(m_before, a.m, sizeof m_before);
    memcpy(v_before, a.v, sizeof v_before);
    fill(g, 0.5f);
    assert_int_equal(ei_trainer_update(&a, p, g, N, NAN, ei_grad_global_norm(g, N), 1e-2, 1.0, &bad, 3), 0);
    assert_int_equal(bad, 1);
    g[3] = INFINITY;
    norm = ei_grad_global_norm(g, N);
    assert_false(isfinite(norm));
    assert_int_equal(ei_trainer_update(&a, p, g, N, 1.0, norm, 1e-2, 1.0, &bad, 3), 0);
    assert_int_equal(bad, 2);
    assert_memory_equal(p, before, sizeof p);
    assert_memory_equal(a.m, m_before, sizeof m_before);
    assert_memory_equal(a.v, v_before, sizeof v_before);
    assert_int_equal(a.t, 1);

    /* a good step resets the count */
    fill(g, -0.25f);
    assert_int_equal(ei_trainer_update(&a, p, g, N, 1.0, ei_grad_global_norm(g, N), 1e-2, 1.0, &bad, 3), 1);
    assert_int_equal(bad, 0);
    assert_memory_not_equal(p, before, sizeof p);

    /* three bad steps in a row: the third is fatal with a message naming the setting */
    for (int k = 0; k < 2; k++)
        assert_int_equal(ei_trainer_update(&a, p, g, N, NAN, 1.0, 1e-2, 1.0, &bad, 3), 0);
    assert_int_equal(ei_trainer_update(&a, p, g, N, NAN, 1.0, 1e-2, 1.0, &bad, 3), -1);
    assert_non_null(strstr(ei_error_get(), "train.max_bad_steps"));
    ei_adamw_free(&a);
    ei_adamw_free(&ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_skip_and_count)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
