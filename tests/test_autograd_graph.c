/* Graph-level behaviour: end-to-end gradient check of a 2-layer transformer stack, frozen weights,
 * gradient accumulation, binding, multi-output seeding, determinism across thread counts, float32
 * vs float64 agreement and build-time shape errors. Gradient bound as in test_autograd_ops.c:
 * max |analytic - numeric| / max |numeric| <= 1e-6 (float64, central differences, h = 1e-5). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "autograd/autograd.h"
#include "autograd/gradcheck.h"
#include "autograd/selfcheck.h"
#include "tests/ag_composite.h"
#include "core/ei_error.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static const ag_tiny_cfg SMALL = {11, 8, 12, 2, 4, 2, 4, 5, 3, AG_ROPE_HALF};

static void all_wrt(const ag_tiny_model *m, ag_tensor **wrt, int *n) {
    *n = 0;
    for (int i = 0; i < m->nparams; i++) wrt[(*n)++] = m->params[i];
    for (int i = 0; i < m->nstate; i++) wrt[(*n)++] = m->state[i];
}

static void test_transformer_gradcheck(void **state) {
    (void)state;
    for (int layout = 0; layout < 2; layout++) {
        ag_tiny_cfg cfg = SMALL;
        cfg.layout = layout;
        ag_graph *g = ag_graph_new(AG_F64, 0);
        ag_tiny_model m;
        if (ag_tiny_build(g, &cfg, 100 + (uint64_t)layout, &m)) fail_msg("%s", ei_error_get());
        ag_tensor *wrt[96];
        int n;
        all_wrt(&m, wrt, &n);
        ag_gradcheck_result r;
        if (ag_gradcheck(g, m.loss, n, wrt, 1e-5, 0, &r)) fail_msg("%s", ei_error_get());
        printf("  transformer layout %d: rel err %.2e over %lld elements (max |grad| %.2e)\n", layout, r.max_rel_err,
               (long long)r.n_checked, r.max_abs_grad);
        assert_true(r.max_rel_err <= 1e-6);
        assert_true(r.max_abs_grad > 1e-3);
        /* every state input really receives gradient (memory, caches) */
        for (int i = 0; i < m.nstate; i++) {
            double mx = 0;
            for (int64_t e = 0; e < m.state[i]->numel; e++) mx = fmax(mx, fabs(ag_tensor_grad_at(m.state[i], e)));
            assert_true(mx > 1e-6);
        }
        ag_graph_free(g);
    }
}

static void test_frozen(void **state) {
    (void)state;
    ag_graph *g = ag_graph_new(AG_F64, 0);
    ag_tiny_model m;
    assert_int_equal(ag_tiny_build(g, &SMALL, 7, &m), 0);
    double *copies[16];
    for (int i = 0; i < m.nfrozen; i++) {
        assert_null(m.frozen[i]->grad);
        copies[i] = malloc((size_t)m.frozen[i]->numel * sizeof(double));
        memcpy(copies[i], m.frozen[i]->data, (size_t)m.frozen[i]->numel * sizeof(double));
    }
    assert_int_equal(ag_graph_forward(g), 0);
    assert_int_equal(ag_graph_backward_scalar(g, m.loss, 1.0), 0);
    for (int i = 0; i < m.nfrozen; i++) {
        assert_null(m.frozen[i]->grad);
        assert_memory_equal(copies[i], m.frozen[i]->data, (size_t)m.frozen[i]->numel * sizeof(double));
        free(copies[i]);
    }
    ag_graph_free(g);

    /* a const bound to read-only pages: any write would fault; the gradient still reaches x */
    const long pg = 4096;
    float *w = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(w != MAP_FAILED);
    for (int i = 0; i < 6; i++) w[i] = (float)(i + 1); /* W [2, 3] */
    assert_int_equal(mprotect(w, (size_t)pg, PROT_READ), 0);
    g = ag_graph_new(AG_F32, 0);
    ag_tensor *x = ag_input(g, AG_SHAPE(1, 3)), *W = ag_const(g, AG_SHAPE(2, 3));
    assert_int_equal(ag_tensor_set_requires_grad(x, 1), 0);
    assert_int_equal(ag_tensor_bind_const(W, w), 0);
    float wgrad[6];
    assert_int_equal(ag_tensor_bind(W, NULL, wgrad), -1); /* no gradient for a const */
    const float xv[3] = {1, -1, 2};
    ag_tensor_set_f32(x, xv);
    assert_int_not_equal(ag_tensor_set_f32(W, xv), 0); /* read-only */
    ag_tensor *y = ag_sum_all(g, ag_linear(g, x, W, NULL));
    assert_int_equal(ag_graph_forward(g), 0);
    assert_true(ag_tensor_at(y, 0) == (1 - 2 + 6) + (4 - 5 + 12));
    assert_int_equal(ag_graph_backward_scalar(g, y, 1.0), 0);
    assert_null(W->grad);
    for (int c = 0; c < 3; c++) assert_true(ag_tensor_grad_at(x, c) == w[c] + w[3 + c]);
    ag_graph_free(g);
    munmap(w, (size_t)pg);
}

static void test_accumulate_and_zero(void **state) {
    (void)state;
    ag_graph *g = ag_graph_new(AG_F64, 0);
    ag_tiny_model m;
    assert_int_equal(ag_tiny_build(g, &SMALL, 9, &m), 0);
    ag_tensor *wrt[96];
    int n;
    all_wrt(&m, wrt, &n);
    ag_graph_zero_grads(g);
    assert_int_equal(ag_graph_forward(g), 0);
    assert_int_equal(ag_graph_backward_scalar(g, m.loss, 1.0), 0);
    double **one = malloc((size_t)n * sizeof *one);
    for (int i = 0; i < n; i++) {
        one[i] = malloc((size_t)wrt[i]->numel * sizeof(double));
        ag_tensor_get_grad(wrt[i], one[i], AG_F64);
    }
    assert_int_equal(ag_graph_forward(g), 0);
    assert_int_equal(ag_graph_backward_scalar(g, m.loss, 1.0), 0);
    for (int i = 0; i < n; i++)
        for (int64_t e = 0; e < wrt[i]->numel; e++) /* GEMM adds into C with its own rounding: not bit-exact */
            assert_true(fabs(ag_tensor_grad_at(wrt[i], e) - 2 * one[i][e]) <= 1e-14 * (1 + fabs(one[i][e])));
    ag_graph_zero_grads(g);
    for (int i = 0; i < n; i++)
        for (int64_t e = 0; e < wrt[i]->numel; e++) assert_true(ag_tensor_grad_at(wrt[i], e) == 0.0);
    /* a scaled seed scales the gradient (1/count normalisation) */
    assert_int_equal(ag_graph_backward_scalar(g, m.loss, 0.25), 0);
    for (int i = 0; i < n; i++) {
        for (int64_t e = 0; e < wrt[i]->numel; e++)
            assert_true(fabs(ag_tensor_grad_at(wrt[i], e) - 0.25 * one[i][e]) <= 1e-15 * (1 + fabs(one[i][e])));
        free(one[i]);
    }
    free(one);
    ag_graph_free(g);
}

/* Seeding loss (1) and an output (S) gives the gradient of loss + sum(out * S), checked by finite
 * differences of that sum on a sample of elements. */
static void test_multi_seed(void **state) {
    (void)state;
    ag_graph *g = ag_graph_new(AG_F64, 0);
    ag_tiny_model a;
    assert_int_equal(ag_tiny_build(g, &SMALL, 11, &a), 0);
    ag_tensor *out = a.layer_out[0];
    double *S = malloc((size_t)out->numel * sizeof *S);
    for (int64_t i = 0; i < out->numel; i++) S[i] = sin((double)i);
    ag_tensor *seeds_out[2] = {a.loss, out};
    const void *seeds[2] = {NULL, S};
    assert_int_equal(ag_graph_forward(g), 0);
    ag_graph_zero_grads(g);
    assert_int_equal(ag_graph_backward(g, 2, seeds_out, seeds), 0);
    ag_tensor *wrt[96];
    int n;
    all_wrt(&a, wrt, &n);
    double maxerr = 0, maxg = 0;
    for (int i = 0; i < n; i += 3) {
        ag_tensor *t = wrt[i];
        double *d = t->data;
        for (int64_t e = 0; e < t->numel; e += 7) {
            double f[2], keep = d[e];
            for (int sgn = 0; sgn < 2; sgn++) {
                d[e] = keep + (sgn ? -1e-5 : 1e-5);
                assert_int_equal(ag_graph_forward(g), 0);
                double v = ag_tensor_at(a.loss, 0);
                for (int64_t k = 0; k < out->numel; k++) v += S[k] * ag_tensor_at(out, k);
                f[sgn] = v;
            }
            d[e] = keep;
            const double num = (f[0] - f[1]) / 2e-5;
            maxerr = fmax(maxerr, fabs(num - ag_tensor_grad_at(t, e)));
            maxg = fmax(maxg, fabs(num));
        }
    }
    assert_true(maxg > 1e-3);
    assert_true(maxerr / maxg <= 1e-6);
    free(S);
    ag_graph_free(g);
}

/* big enough that every kernel and GEMM splits into several blocks (rows and columns) */
static ag_tiny_cfg big_cfg(void) { return (ag_tiny_cfg){600, 64, 128, 2, 4, 2, 16, 160, 100, AG_ROPE_INTERLEAVED}; }

typedef struct {
    float loss;
    float *logits;
    float **grads;
    int n;
    int64_t *sizes;
} snapshot;

static void run_f32(int threads, snapshot *s) {
    ei_k_threads_set(threads);
    ag_graph *g = ag_graph_new(AG_F32, 0);
    ag_tiny_model m;
    ag_tiny_cfg cfg = big_cfg();
    assert_int_equal(ag_tiny_build(g, &cfg, 5, &m), 0);
    assert_int_equal(ag_graph_forward(g), 0);
    assert_int_equal(ag_graph_backward_scalar(g, m.loss, 1.0), 0);
    ag_tensor *wrt[96];
    all_wrt(&m, wrt, &s->n);
    s->loss = (float)ag_tensor_at(m.loss, 0);
    s->logits = malloc((size_t)m.logits->numel * 4);
    memcpy(s->logits, m.logits->data, (size_t)m.logits->numel * 4);
    s->grads = malloc((size_t)s->n * sizeof *s->grads);
    s->sizes = malloc((size_t)s->n * sizeof *s->sizes);
    for (int i = 0; i < s->n; i++) {
        s->sizes[i] = wrt[i]->numel;
        s->grads[i] = malloc((size_t)wrt[i]->numel * 4);
        memcpy(s->grads[i], wrt[i]->grad, (size_t)wrt[i]->numel * 4);
    }
    ag_graph_free(g);
}

static void test_threads_bit_identical(void **state) {
    (void)state;
    snapshot a, b;
    run_f32(1, &a);
    run_f32(2, &b);
    ei_k_threads_set(1);
    assert_memory_equal(&a.loss, &b.loss, sizeof a.loss);
    assert_memory_equal(a.logits, b.logits, (size_t)big_cfg().seq * big_cfg().vocab * 4);
    assert_int_equal(a.n, b.n);
    for (int i = 0; i < a.n; i++) {
        assert_memory_equal(a.grads[i], b.grads[i], (size_t)a.sizes[i] * 4);
        free(a.grads[i]);
        free(b.grads[i]);
    }
    free(a.grads), free(b.grads), free(a.sizes), free(b.sizes), free(a.logits), free(b.logits);
}

static void test_f32_matches_f64(void **state) {
    (void)state;
    ag_tiny_cfg cfg = big_cfg();
    cfg.seq = 20;
    cfg.cache = 8;
    ag_graph *g32 = ag_graph_new(AG_F32, 0), *g64 = ag_graph_new(AG_F64, 0);
    ag_tiny_model a, b;
    assert_int_equal(ag_tiny_build(g32, &cfg, 3, &a), 0);
    assert_int_equal(ag_tiny_build(g64, &cfg, 3, &b), 0);
    assert_int_equal(ag_graph_forward(g32), 0);
    assert_int_equal(ag_graph_forward(g64), 0);
    const double l32 = ag_tensor_at(a.loss, 0), l64 = ag_tensor_at(b.loss, 0);
    assert_true(fabs(l32 - l64) <= 1e-5 * fabs(l64));
    assert_int_equal(ag_graph_backward_scalar(g32, a.loss, 1.0), 0);
    assert_int_equal(ag_graph_backward_scalar(g64, b.loss, 1.0), 0);
    for (int i = 0; i < a.nparams; i++) {
        double mx = 0, err = 0;
        for (int64_t e = 0; e < a.params[i]->numel; e++) {
            mx = fmax(mx, fabs(ag_tensor_grad_at(b.params[i], e)));
            err = fmax(err, fabs(ag_tensor_grad_at(a.params[i], e) - ag_tensor_grad_at(b.params[i], e)));
        }
        assert_true(err <= 1e-3 * mx + 1e-7);
    }
    ag_graph_free(g32);
    ag_graph_free(g64);
}

/* Params bound to one external block (data and gradients) behave exactly like arena params. */
static void test_bind_contiguous(void **state) {
    (void)state;
    ag_graph *g = ag_graph_new(AG_F64, 0);
    ag_tensor *x = ag_input(g, AG_SHAPE(3, 4)), *w = ag_param(g, AG_SHAPE(2, 4)), *b = ag_param(g, AG_SHAPE(2));
    double block[10] = {0}, grads[10] = {0};
    assert_int_equal(ag_tensor_bind(w, block, grads), 0);
    assert_int_equal(ag_tensor_bind(b, block + 8, grads + 8), 0);
    for (int i = 0; i < 10; i++) block[i] = 0.1 * (i + 1);
    ag_tensor *y = ag_sum_all(g, ag_linear(g, x, w, b));
    double xv[12];
    for (int i = 0; i < 12; i++) xv[i] = i - 5.5;
    assert_int_equal(ag_tensor_set_f64(x, xv), 0);
    assert_int_equal(ag_graph_forward(g), 0);
    assert_int_equal(ag_graph_backward_scalar(g, y, 1.0), 0);
    /* dL/dW[o][c] = sum_r x[r][c]; dL/db[o] = rows */
    for (int o = 0; o < 2; o++)
        for (int c = 0; c < 4; c++) assert_true(fabs(grads[o * 4 + c] - (xv[c] + xv[4 + c] + xv[8 + c])) < 1e-12);
    assert_true(grads[8] == 3 && grads[9] == 3);
    /* rebinding an input between forwards is seen by views */
    double xv2[12];
    for (int i = 0; i < 12; i++) xv2[i] = 1.0;
    assert_int_equal(ag_tensor_bind(x, xv2, NULL), 0);
    assert_int_equal(ag_graph_forward(g), 0);
    double want = 0;
    for (int o = 0; o < 2; o++) {
        double s = block[8 + o];
        for (int c = 0; c < 4; c++) s += block[o * 4 + c];
        want += 3 * s;
    }
    assert_true(fabs(ag_tensor_at(y, 0) - want) < 1e-12);
    ag_graph_free(g);
}

static void expect_error(ag_tensor *t, const char *want) {
    assert_null(t);
    if (!strstr(ei_error_get(), want)) fail_msg("error '%s' lacks '%s'", ei_error_get(), want);
}

static void test_bad_shapes(void **state) {
    (void)state;
    ag_graph *g = ag_graph_new(AG_F32, 0);
    ag_tensor *a = ag_input(g, AG_SHAPE(3, 4)), *b = ag_input(g, AG_SHAPE(5, 2));
    expect_error(ag_matmul(g, a, b, 0, 0), "matmul: inner dims differ: [3,4] x [5,2]");
    ag_graph_free(g);
    /* every later call reports its own op; the graph keeps the first failure */
    g = ag_graph_new(AG_F32, 0);
    a = ag_input(g, AG_SHAPE(3, 4));
    b = ag_input(g, AG_SHAPE(5, 2));
    ag_tensor *w = ag_const(g, AG_SHAPE(6, 5));
    expect_error(ag_linear(g, a, w, NULL), "linear: inner dims differ: x [3,4], W [6,5]");
    expect_error(ag_add(g, a, b), "add: shapes do not broadcast: [3,4], [5,2]");
    ag_tensor *q = ag_input(g, AG_SHAPE(2, 3, 4)), *k = ag_input(g, AG_SHAPE(2, 2, 4));
    expect_error(ag_attention(g, q, k, k, NULL, 1.0, 0), "attention: 3 query heads not a multiple of 2 kv heads");
    expect_error(ag_attention(g, a, k, k, NULL, 1.0, 0), "attention: q, k, v must be [T, heads, d]");
    expect_error(ag_reshape(g, a, AG_SHAPE(5, 2)), "reshape: element counts differ: [3,4] -> [5,2]");
    expect_error(ag_concat(g, a, b, 0), "concat: shapes differ off axis 0: [3,4], [5,2]");
    expect_error(ag_slice(g, a, 1, 2, 3), "slice: [2, 5) outside axis 1 of [3,4]");
    ag_tensor *pos = ag_input_i32(g, AG_SHAPE(3));
    expect_error(ag_rope(g, ag_input(g, AG_SHAPE(3, 5)), pos, 1e4, AG_ROPE_HALF), "rope: head dim 5 of [3,5] is odd");
    expect_error(ag_cross_entropy(g, a, ag_input_i32(g, AG_SHAPE(4)), NULL), "cross_entropy: 4 targets [4] for 3 rows");
    expect_error(ag_sum(g, a, 2, 0), "sum: axis 2 out of range for [3,4]");
    expect_error(ag_embedding(g, a, a), "embedding: ids must be int32");
    expect_error(ag_input(g, AG_SHAPE(0, 2)), "ag_input: bad shape [0,2]");
    /* a NULL source propagates silently */
    ei_error_clear();
    assert_null(ag_silu(g, NULL));
    assert_int_equal(ag_graph_finalize(g), -1);
    assert_non_null(strstr(ei_error_get(), "linear: inner dims differ")); /* the first failure */
    assert_int_equal(ag_graph_forward(g), -1);
    ag_graph_free(g);
}

static void test_runtime_errors(void **state) {
    (void)state;
    ag_graph *g = ag_graph_new(AG_F32, 0);
    ag_tensor *l = ag_input(g, AG_SHAPE(2, 3)), *t = ag_input_i32(g, AG_SHAPE(2));
    ag_tensor *ce = ag_cross_entropy(g, l, t, NULL);
    ag_tensor *e = ag_embedding(g, ag_const(g, AG_SHAPE(4, 2)), t);
    assert_non_null(ce);
    assert_non_null(e);
    int32_t *tv = ag_tensor_data(t);
    tv[0] = 1;
    tv[1] = 3;
    assert_int_equal(ag_graph_forward(g), -1);
    assert_non_null(strstr(ei_error_get(), "cross_entropy: target 3 of row 1 outside [0, 3)"));
    tv[1] = -1; /* ignored by cross-entropy, but not a valid embedding id */
    assert_int_equal(ag_graph_forward(g), -1);
    assert_non_null(strstr(ei_error_get(), "embedding: id -1"));
    tv[1] = 2;
    assert_int_equal(ag_graph_forward(g), 0);
    /* no building after finalize */
    assert_null(ag_silu(g, l));
    assert_non_null(strstr(ei_error_get(), "finalized"));
    ag_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transformer_gradcheck), cmocka_unit_test(test_frozen),
        cmocka_unit_test(test_accumulate_and_zero),   cmocka_unit_test(test_multi_seed),
        cmocka_unit_test(test_threads_bit_identical), cmocka_unit_test(test_f32_matches_f64),
        cmocka_unit_test(test_bind_contiguous),       cmocka_unit_test(test_bad_shapes),
        cmocka_unit_test(test_runtime_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
