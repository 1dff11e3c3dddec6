/* train/optim: AdamW against a float64 reference written here (textbook form with bias-corrected
 * m_hat and v_hat, not the code's PyTorch-style arrangement), its closed-form first step, exact
 * resume from saved moments, global-norm clipping and the learning-rate schedule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "train/optim.h"

#include <math.h>
#include <string.h>

#define N 6

/* A deterministic, varied gradient for step s. */
static void grad_at(int s, const float *p, float *g) {
    static const float base[N] = {0.5f, -1.25f, 3e-3f, 2.0f, -0.75f, 0.0f};
    for (int i = 0; i < N; i++) g[i] = base[i] * (1.0f + 0.3f * (float)s) + 0.1f * p[i] - (s % 2 ? 0.2f : 0.0f);
}

/* AdamW in double: p <- p - lr*wd*p - lr * m_hat / (sqrt(v_hat) + eps). */
static void reference(double *p, int steps, double lr, double b1, double b2, double eps, double wd) {
    double m[N] = {0}, v[N] = {0};
    for (int t = 1; t <= steps; t++) {
        float pf[N], g[N];
        for (int i = 0; i < N; i++) pf[i] = (float)p[i];
        grad_at(t - 1, pf, g);
        for (int i = 0; i < N; i++) {
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * (double)g[i] * g[i];
            double mh = m[i] / (1 - pow(b1, t)), vh = v[i] / (1 - pow(b2, t));
            p[i] = p[i] - lr * wd * p[i] - lr * mh / (sqrt(vh) + eps);
        }
    }
}

static const float p0[N] = {0.1f, -0.2f, 0.3f, 1.5f, -2.0f, 0.0f};

static void test_first_step_closed_form(void **state) {
    (void)state;
    /* At t = 1, m_hat = g and v_hat = g^2: the update is lr * g / (|g| + eps), i.e. lr * sign(g). */
    ei_adamw o;
    assert_int_equal(ei_adamw_init(&o, N, 0.9, 0.999, 1e-8, 0.0), 0);
    float p[N], g[N];
    memcpy(p, p0, sizeof p);
    grad_at(0, p, g);
    ei_adamw_step(&o, p, g, 0.01);
    for (int i = 0; i < N; i++) {
        double want = p0[i] - (g[i] == 0 ? 0.0 : 0.01 * g[i] / (fabs(g[i]) + 1e-8));
        assert_true(fabs(p[i] - want) < 1e-7);
    }
    assert_true(o.t == 1);
    ei_adamw_free(&o);
}

static void run_against_reference(double lr, double b1, double b2, double eps, double wd) {
    const int steps = 8;
    ei_adamw o;
    assert_int_equal(ei_adamw_init(&o, N, b1, b2, eps, wd), 0);
    float p[N], g[N];
    memcpy(p, p0, sizeof p);
    for (int s = 0; s < steps; s++) {
        grad_at(s, p, g);
        ei_adamw_step(&o, p, g, lr);
    }
    double ref[N];
    for (int i = 0; i < N; i++) ref[i] = p0[i];
    reference(ref, steps, lr, b1, b2, eps, wd);
    for (int i = 0; i < N; i++) {
        double err = fabs(p[i] - ref[i]);
        if (err > 2e-6 * (1 + fabs(ref[i])))
            fail_msg("param %d: %.9g vs reference %.9g (lr %g wd %g)", i, p[i], ref[i], lr, wd);
    }
    ei_adamw_free(&o);
}

static void test_against_reference(void **state) {
    (void)state;
    run_against_reference(0.01, 0.9, 0.999, 1e-8, 0.0);
    run_against_reference(0.05, 0.8, 0.99, 1e-6, 0.1); /* with decoupled weight decay */
    run_against_reference(1e-3, 0.0, 0.5, 1e-3, 0.0);
}

static void test_restore_is_exact(void **state) {
    (void)state;
    ei_adamw a, b;
    assert_int_equal(ei_adamw_init(&a, N, 0.9, 0.999, 1e-8, 0.01), 0);
    float pa[N], pb[N], g[N];
    memcpy(pa, p0, sizeof pa);
    for (int s = 0; s < 3; s++) {
        grad_at(s, pa, g);
        ei_adamw_step(&a, pa, g, 0.02);
    }
    /* "checkpoint": copy params, moments and t into a fresh optimizer */
    memcpy(pb, pa, sizeof pb);
    assert_int_equal(ei_adamw_init(&b, N, 0.9, 0.999, 1e-8, 0.01), 0);
    assert_int_equal(ei_adamw_restore(&b, a.m, a.v, a.t), 0);
    for (int s = 3; s < 7; s++) {
        grad_at(s, pa, g);
        ei_adamw_step(&a, pa, g, 0.02);
        grad_at(s, pb, g);
        ei_adamw_step(&b, pb, g, 0.02);
    }
    assert_memory_equal(pa, pb, sizeof pa);
    assert_int_equal(ei_adamw_restore(&b, a.m, a.v, -1), -1);
    ei_adamw_free(&a);
    ei_adamw_free(&b);
}

static void test_norm_and_clip(void **state) {
    (void)state;
    float g[4] = {3, 4, 0, 0};
    assert_true(ei_grad_global_norm(g, 4) == 5.0);
    assert_true(ei_grad_clip(g, 4, 10.0) == 5.0); /* below the limit: untouched */
    assert_true(g[0] == 3 && g[1] == 4);
    assert_true(ei_grad_clip(g, 4, 0.0) == 5.0); /* 0: clipping off */
    assert_true(g[0] == 3 && g[1] == 4);
    assert_true(ei_grad_clip(g, 4, 1.0) == 5.0);
    double after = ei_grad_global_norm(g, 4);
    assert_true(after <= 1.0 && after > 1.0 - 1e-5);
    assert_true(fabs(g[0] / g[1] - 0.75) < 1e-6); /* direction kept */

    float bad[3] = {1, NAN, 2};
    assert_true(isnan(ei_grad_global_norm(bad, 3)));
    assert_true(isnan(ei_grad_clip(bad, 3, 1.0)));
    assert_true(bad[0] == 1 && bad[2] == 2); /* not scaled by a NaN */
    float inf[2] = {INFINITY, 0};
    assert_true(isinf(ei_grad_global_norm(inf, 2)));

    /* many small values: accumulated in double */
    static float many[100000];
    for (int i = 0; i < 100000; i++) many[i] = 1e-3f;
    double want = sqrt(100000.0) * (double)1e-3f;
    assert_true(fabs(ei_grad_global_norm(many, 100000) - want) < 1e-12);
}

static void test_schedule(void **state) {
    (void)state;
    ei_lr_schedule s = {.lr = 2.0, .warmup_steps = 10, .total_steps = 110, .min_lr_ratio = 0.1, .kind = EI_LR_COSINE};
    const double eps = 1e-12;
    assert_true(fabs(ei_lr_at(&s, 0) - 0.2) < eps);   /* (0+1)/10 * 2 */
    assert_true(fabs(ei_lr_at(&s, 4) - 1.0) < eps);   /* 5/10 * 2 */
    assert_true(fabs(ei_lr_at(&s, 9) - 2.0) < eps);   /* warmup done */
    assert_true(fabs(ei_lr_at(&s, 10) - 2.0) < eps);  /* cosine at p = 0 */
    assert_true(fabs(ei_lr_at(&s, 60) - 1.1) < eps);  /* p = 1/2: 2 * (0.1 + 0.9 * 0.5) */
    assert_true(fabs(ei_lr_at(&s, 35) - 2.0 * (0.1 + 0.9 * 0.5 * (1 + cos(M_PI / 4)))) < eps); /* p = 1/4 */
    assert_true(fabs(ei_lr_at(&s, 110) - 0.2) < eps); /* p = 1: lr * min_lr_ratio */
    assert_true(fabs(ei_lr_at(&s, 1000) - 0.2) < eps); /* past the end */
    for (int64_t k = 10; k < 120; k++) assert_true(ei_lr_at(&s, k + 1) <= ei_lr_at(&s, k) + eps);

    s.kind = EI_LR_CONSTANT;
    assert_true(fabs(ei_lr_at(&s, 3) - 0.8) < eps);
    assert_true(ei_lr_at(&s, 10) == 2.0 && ei_lr_at(&s, 10000) == 2.0);

    ei_lr_schedule nw = {.lr = 1e-3, .warmup_steps = 0, .total_steps = 100, .min_lr_ratio = 0.0, .kind = EI_LR_COSINE};
    assert_true(ei_lr_at(&nw, 0) == 1e-3);
    assert_true(fabs(ei_lr_at(&nw, 50) - 0.5e-3) < 1e-15);
    assert_true(fabs(ei_lr_at(&nw, 100)) < 1e-15);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_step_closed_form), cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_restore_is_exact),       cmocka_unit_test(test_norm_and_clip),
        cmocka_unit_test(test_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
