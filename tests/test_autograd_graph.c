/* Graph-level behaviour: end-to-end gradient check of a 2-layer transformer stack, frozen weights,
 * gradient accumulation, binding, multi-output seeding, determinism across thread counts, float32
 * vs float64 agreement, build-time shape errors and the shared gradient pool placed by liveness.
 * Gradient bound as in test_autograd_ops.c: max |analytic - numeric| / max |numeric| <= 1e-6
 * (float64, central differences, h = 1e-5). */
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

/* Batched matmul large enough that its batch entries run as parallel tasks (the memory products of
 * EdgeInfinite: a kv head per entry), every transpose combination: output and both gradients
 * against a float64 loop, and the same bits on 1 and 2 threads. */
enum { MMB = 4, MMM = 384, MMK = 64, MMN = 48 };

static float mm_val(uint64_t i, uint64_t seed) { return (float)(((i * 2654435761u + seed * 97u) % 1009u) / 1009.0 - 0.5); }

static void mm_run(int threads, int ta, int tb, float *out, float *ga, float *gb) {
    ei_k_threads_set(threads);
    ag_graph *g = ag_graph_new(AG_F32, 0);
    ag_tensor *a = ag_param(g, AG_SHAPE(MMB, ta ? MMK : MMM, ta ? MMM : MMK));
    ag_tensor *b = ag_param(g, AG_SHAPE(MMB, tb ? MMN : MMK, tb ? MMK : MMN));
    ag_tensor *w = ag_const(g, AG_SHAPE(MMB, MMM, MMN));
    ag_tensor *c = ag_matmul(g, a, b, ta, tb);
    ag_tensor *loss = ag_sum(g, ag_sum(g, ag_sum(g, ag_mul(g, c, w), 2, 0), 1, 0), 0, 0);
    assert_non_null(loss);
    float *av = ag_tensor_data(a), *bv = ag_tensor_data(b), *wv = ag_tensor_data(w);
    for (int64_t i = 0; i < a->numel; i++) av[i] = mm_val((uint64_t)i, 1);
    for (int64_t i = 0; i < b->numel; i++) bv[i] = mm_val((uint64_t)i, 2);
    for (int64_t i = 0; i < w->numel; i++) wv[i] = mm_val((uint64_t)i, 3);
    assert_int_equal(ag_graph_forward(g), 0);
    assert_int_equal(ag_graph_backward_scalar(g, loss, 1.0), 0);
    memcpy(out, c->data, (size_t)c->numel * 4);
    memcpy(ga, a->grad, (size_t)a->numel * 4);
    memcpy(gb, b->grad, (size_t)b->numel * 4);
    ag_graph_free(g);
}

static double mm_rel(const float *x, const double *ref, size_t n) {
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)x[i] - ref[i]));
        m = fmax(m, fabs(ref[i]));
    }
    return e / m;
}

static void test_matmul_batched_parallel(void **state) {
    (void)state;
    const size_t nc = (size_t)MMB * MMM * MMN, na = (size_t)MMB * MMM * MMK, nb = (size_t)MMB * MMK * MMN;
    float *c1 = malloc(nc * 4), *c2 = malloc(nc * 4), *a1 = malloc(na * 4), *a2 = malloc(na * 4);
    float *b1 = malloc(nb * 4), *b2 = malloc(nb * 4);
    double *rc = calloc(nc, 8), *ra = calloc(na, 8), *rb = calloc(nb, 8);
    for (int combo = 0; combo < 4; combo++) {
        const int ta = combo & 1, tb = combo >> 1;
        mm_run(1, ta, tb, c1, a1, b1);
        mm_run(2, ta, tb, c2, a2, b2);
        assert_memory_equal(c1, c2, nc * 4);
        assert_memory_equal(a1, a2, na * 4);
        assert_memory_equal(b1, b2, nb * 4);
        memset(rc, 0, nc * 8), memset(ra, 0, na * 8), memset(rb, 0, nb * 8);
        for (int e = 0; e < MMB; e++)
            for (int i = 0; i < MMM; i++)
                for (int j = 0; j < MMN; j++) {
                    const size_t ci = ((size_t)e * MMM + i) * MMN + j;
                    const double wij = mm_val(ci, 3);
                    for (int k = 0; k < MMK; k++) {
                        const size_t ai = (size_t)e * MMM * MMK + (ta ? (size_t)k * MMM + i : (size_t)i * MMK + k);
                        const size_t bi = (size_t)e * MMK * MMN + (tb ? (size_t)j * MMK + k : (size_t)k * MMN + j);
                        const double av = mm_val(ai, 1), bv = mm_val(bi, 2);
                        rc[ci] += av * bv;
                        ra[ai] += wij * bv; /* d loss / d a = w b^T, in a's stored layout */
                        rb[bi] += av * wij;
                    }
                }
        if (mm_rel(c1, rc, nc) > 1e-5 || mm_rel(a1, ra, na) > 1e-5 || mm_rel(b1, rb, nb) > 1e-5)
            fail_msg("ta %d tb %d: rel err out %.2e da %.2e db %.2e", ta, tb, mm_rel(c1, rc, nc), mm_rel(a1, ra, na),
                     mm_rel(b1, rb, nb));
    }
    ei_k_threads_set(1);
    free(c1), free(c2), free(a1), free(a2), free(b1), free(b2), free(rc), free(ra), free(rb);
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

/* ---------------------------------------------------------------- shared gradient pool
 * Pooled graphs place op-node gradients by liveness in the reverse sweep. Any two buffers wrongly
 * given overlapping bytes corrupt a gradient flowing through them, so every check compares the
 * leaf gradients with those of an unpooled twin bit for bit. */

#define PG_MAX_LEAVES 128

typedef struct {
    ag_graph *g;
    ag_tensor *leaves[PG_MAX_LEAVES]; /* params and requires-grad inputs, in creation order */
    int nleaves;
    ag_tensor *loss, *mid;
} pgraph;

static uint64_t pg_rng;

static double pg_rand(void) {
    pg_rng ^= pg_rng << 13;
    pg_rng ^= pg_rng >> 7;
    pg_rng ^= pg_rng << 17;
    return (double)(pg_rng >> 11) * 0x1p-53 - 0.5;
}

static void pg_begin(pgraph *m, ag_grad_pool *p, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->g = ag_graph_new(AG_F64, 0);
    assert_non_null(m->g);
    if (p) assert_int_equal(ag_graph_share_grads(m->g, p), 0);
    pg_rng = seed;
}

static ag_tensor *pg_leaf(pgraph *m, int param, int nd, const int64_t *shape) {
    ag_tensor *t = param ? ag_param(m->g, nd, shape) : ag_input(m->g, nd, shape);
    assert_non_null(t);
    if (!param) assert_int_equal(ag_tensor_set_requires_grad(t, 1), 0);
    double *d = ag_tensor_data(t);
    for (int64_t i = 0; i < t->numel; i++) d[i] = pg_rand();
    assert_true(m->nleaves < PG_MAX_LEAVES);
    m->leaves[m->nleaves++] = t;
    return t;
}

/* A chain of `steps` ops of one shape [16, 32]: at most a few of its gradients are live at once. */
static void pg_chain(pgraph *m, ag_grad_pool *p, int steps, uint64_t seed) {
    pg_begin(m, p, seed);
    ag_graph *g = m->g;
    ag_tensor *y = pg_leaf(m, 0, AG_SHAPE(16, 32));
    for (int k = 0; k < steps; k++) {
        switch (k % 4) {
        case 0: y = ag_silu(g, y); break;
        case 1: y = ag_mul(g, y, pg_leaf(m, 1, AG_SHAPE(32))); break;
        case 2: y = ag_add_scalar(g, ag_scale(g, y, 0.9), 0.1); break;
        default: y = ag_linear(g, y, pg_leaf(m, 1, AG_SHAPE(32, 32)), NULL); break;
        }
    }
    m->loss = ag_sum_all(g, ag_mul(g, y, y));
    assert_int_equal(ag_graph_finalize(g), 0);
}

/* Branches and residuals: x feeds a, b and the sum; views, slices and a concat in between; the
 * fused classifier loss, whose backward scratch goes to the pool too. */
static void pg_residual(pgraph *m, ag_grad_pool *p, int layers, int64_t T, int64_t D, uint64_t seed) {
    const int64_t V = 13;
    pg_begin(m, p, seed);
    ag_graph *g = m->g;
    ag_tensor *x = pg_leaf(m, 0, AG_SHAPE(T, D));
    ag_tensor *tg = ag_input_i32(g, AG_SHAPE(T));
    int32_t *tv = ag_tensor_data(tg);
    for (int64_t t = 0; t < T; t++) tv[t] = (int32_t)((t * 5 + 2) % V);
    for (int l = 0; l < layers; l++) {
        ag_tensor *wa = pg_leaf(m, 1, AG_SHAPE(D, D)), *wb = pg_leaf(m, 1, AG_SHAPE(D, D));
        ag_tensor *nw = pg_leaf(m, 1, AG_SHAPE(D));
        ag_tensor *a = ag_silu(g, ag_linear(g, x, wa, NULL)), *b = ag_sigmoid(g, ag_linear(g, x, wb, NULL));
        ag_tensor *ab = ag_mul(g, a, b);
        ag_tensor *rot = ag_concat(g, ag_slice(g, ab, 1, D / 2, D / 2), ag_slice(g, ab, 1, 0, D / 2), 1);
        ag_tensor *av = ag_reshape(g, ag_reshape(g, a, AG_SHAPE(T * D)), AG_SHAPE(T, D));
        x = ag_rmsnorm(g, ag_add(g, ag_add(g, rot, av), x), nw, 1e-5);
        if (l == 0) m->mid = x;
    }
    m->loss = ag_linear_cross_entropy(g, x, pg_leaf(m, 1, AG_SHAPE(V, D)), tg, NULL);
    assert_int_equal(ag_graph_finalize(g), 0);
}

static void pg_same_grads(const pgraph *a, const pgraph *b) {
    assert_int_equal(a->nleaves, b->nleaves);
    for (int i = 0; i < a->nleaves; i++) {
        assert_int_equal(a->leaves[i]->numel, b->leaves[i]->numel);
        assert_memory_equal(a->leaves[i]->grad, b->leaves[i]->grad, (size_t)a->leaves[i]->numel * sizeof(double));
    }
}

static double pg_grad_norm(const pgraph *m) {
    double s = 0;
    for (int i = 0; i < m->nleaves; i++)
        for (int64_t e = 0; e < m->leaves[i]->numel; e++) s += fabs(ag_tensor_grad_at(m->leaves[i], e));
    return s;
}

/* Bytes of all op-node gradients: what one offset per node would reserve. */
static size_t pg_op_grad_bytes(const ag_graph *g) {
    size_t s = 0;
    for (int i = 0; i < ag_graph_node_count(g); i++) {
        const ag_tensor *t = ag_graph_node(g, i);
        if (t->kind == AG_NODE_OP && t->requires_grad) s += (size_t)t->numel * sizeof(double);
    }
    return s;
}

/* Runs a (pooled) and b (a buffer per node) forward, then `reps` backward calls with `seed`: leaf
 * gradients accumulate, op-node gradients start afresh, and a's must equal b's after each call.
 * Frees both graphs. */
static void pg_compare(pgraph *a, pgraph *b, int reps, double seed) {
    assert_int_equal(ag_graph_forward(a->g), 0);
    assert_int_equal(ag_graph_forward(b->g), 0);
    for (int r = 0; r < reps; r++) {
        assert_int_equal(ag_graph_backward_scalar(a->g, a->loss, seed), 0);
        assert_int_equal(ag_graph_backward_scalar(b->g, b->loss, seed), 0);
        pg_same_grads(a, b);
    }
    assert_true(pg_grad_norm(b) > 1e-3);
    ag_graph_free(a->g);
    ag_graph_free(b->g);
}

static void test_pool_chain(void **state) {
    (void)state;
    ag_grad_pool *p = ag_grad_pool_new();
    pgraph a, b;
    pg_chain(&a, p, 64, 21);
    pg_chain(&b, NULL, 64, 21);
    const size_t sum = pg_op_grad_bytes(a.g), bytes = ag_grad_pool_bytes(p);
    printf("  chain: pool %zu bytes for %zu bytes of op-node gradients\n", bytes, sum);
    assert_true(bytes > 0 && bytes < sum / 4);
    pg_compare(&a, &b, 1, 1.0);
    ag_grad_pool_free(p);
}

static void test_pool_residual(void **state) {
    (void)state;
    ag_grad_pool *p = ag_grad_pool_new();
    pgraph a, b;
    pg_residual(&a, p, 4, 9, 16, 5);
    pg_residual(&b, NULL, 4, 9, 16, 5);
    assert_true(ag_grad_pool_bytes(p) < pg_op_grad_bytes(a.g));
    pg_compare(&a, &b, 2, 0.5);
    ag_grad_pool_free(p);

    /* the composite transformer (attention, rope, memory read-out, cross-entropy) */
    p = ag_grad_pool_new();
    ag_tiny_cfg cfg = SMALL;
    cfg.layers = 3;
    ag_graph *gp = ag_graph_new(AG_F64, 0), *gu = ag_graph_new(AG_F64, 0);
    assert_int_equal(ag_graph_share_grads(gp, p), 0);
    ag_tiny_model mp, mu;
    assert_int_equal(ag_tiny_build(gp, &cfg, 17, &mp), 0);
    assert_int_equal(ag_tiny_build(gu, &cfg, 17, &mu), 0);
    printf("  transformer: pool %zu bytes for %zu bytes of op-node gradients\n", ag_grad_pool_bytes(p),
           pg_op_grad_bytes(gp));
    assert_true(ag_grad_pool_bytes(p) < pg_op_grad_bytes(gp) / 2);
    assert_int_equal(ag_graph_forward(gp), 0);
    assert_int_equal(ag_graph_forward(gu), 0);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(ag_graph_backward_scalar(gp, mp.loss, 1.0), 0);
        assert_int_equal(ag_graph_backward_scalar(gu, mu.loss, 1.0), 0);
    }
    ag_tensor *wp[96], *wu[96];
    int np, nu;
    all_wrt(&mp, wp, &np);
    all_wrt(&mu, wu, &nu);
    assert_int_equal(np, nu);
    for (int i = 0; i < np; i++) assert_memory_equal(wp[i]->grad, wu[i]->grad, (size_t)wp[i]->numel * sizeof(double));
    ag_graph_free(gp);
    ag_graph_free(gu);
    ag_grad_pool_free(p);
}

/* A reshape whose source feeds nothing else that takes a gradient shares the source's gradient
 * buffer (chains of them too); one whose source has a second consumer keeps its own. The gradients
 * are those of the graph with a buffer per node, over two backward calls. */
static void pg_reshapes(pgraph *m, ag_grad_pool *p, ag_tensor **nodes) {
    pg_begin(m, p, 31);
    ag_graph *g = m->g;
    ag_tensor *x = pg_leaf(m, 0, AG_SHAPE(6, 4)), *w = pg_leaf(m, 1, AG_SHAPE(24));
    ag_tensor *y = ag_silu(g, x);
    ag_tensor *r1 = ag_reshape(g, y, AG_SHAPE(4, 6)), *r2 = ag_reshape(g, r1, AG_SHAPE(24));
    ag_tensor *u = ag_sigmoid(g, x), *s = ag_reshape(g, u, AG_SHAPE(24)); /* u also feeds the sum */
    ag_tensor *z = ag_add(g, ag_mul(g, r2, w), ag_mul(g, s, s));
    m->loss = ag_add(g, ag_sum_all(g, ag_mul(g, z, z)), ag_sum_all(g, u));
    assert_int_equal(ag_graph_finalize(g), 0);
    ag_tensor *keep[5] = {y, r1, r2, u, s};
    memcpy(nodes, keep, sizeof keep);
}

static void test_pool_reshape_alias(void **state) {
    (void)state;
    ag_grad_pool *p = ag_grad_pool_new();
    pgraph a, b;
    ag_tensor *na[5], *nb[5];
    pg_reshapes(&a, p, na);
    pg_reshapes(&b, NULL, nb);
    assert_ptr_equal(na[0]->grad, na[1]->grad);
    assert_ptr_equal(na[1]->grad, na[2]->grad);
    assert_ptr_not_equal(na[3]->grad, na[4]->grad);
    assert_ptr_not_equal(nb[0]->grad, nb[1]->grad); /* no pool: a buffer per node */
    pg_compare(&a, &b, 2, 1.0);
    ag_grad_pool_free(p);
}

/* Two graphs on one pool, backward alternately (as a training sweep does over kept segments): the
 * pool holds the larger graph's peak, not the sum, and neither graph's gradients suffer. */
static void test_pool_two_graphs(void **state) {
    (void)state;
    ag_grad_pool *solo_a = ag_grad_pool_new(), *solo_b = ag_grad_pool_new(), *p = ag_grad_pool_new();
    pgraph a, b, a2, b2, sa, sb;
    pg_residual(&sa, solo_a, 3, 7, 12, 8);
    pg_chain(&sb, solo_b, 24, 9);
    pg_residual(&a, p, 3, 7, 12, 8);
    pg_chain(&b, p, 24, 9); /* finalized later, and larger: the pool moves under a */
    pg_residual(&a2, NULL, 3, 7, 12, 8);
    pg_chain(&b2, NULL, 24, 9);
    const size_t na = ag_grad_pool_bytes(solo_a), nb = ag_grad_pool_bytes(solo_b);
    assert_true(ag_grad_pool_bytes(p) == (na > nb ? na : nb));
    pgraph *pooled[2] = {&a, &b}, *own[2] = {&a2, &b2};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(ag_graph_forward(pooled[k]->g), 0);
        assert_int_equal(ag_graph_forward(own[k]->g), 0);
    }
    for (int r = 0; r < 3; r++)
        for (int k = 1; k >= 0; k--) {
            assert_int_equal(ag_graph_backward_scalar(pooled[k]->g, pooled[k]->loss, 1.0), 0);
            assert_int_equal(ag_graph_backward_scalar(own[k]->g, own[k]->loss, 1.0), 0);
            pg_same_grads(pooled[k], own[k]);
        }
    pgraph *all[6] = {&a, &b, &a2, &b2, &sa, &sb};
    for (int k = 0; k < 6; k++) ag_graph_free(all[k]->g);
    ag_grad_pool_free(p);
    ag_grad_pool_free(solo_a);
    ag_grad_pool_free(solo_b);
}

/* h1 -> h2 -> h3 -> loss, all one shape: unmarked, h1's gradient would take bytes that h3's
 * gradient still uses when the seed is added. */
static void pg_seeded(pgraph *m, ag_grad_pool *p, int mark) {
    pg_begin(m, p, 3);
    ag_graph *g = m->g;
    ag_tensor *x = pg_leaf(m, 0, AG_SHAPE(6, 8));
    m->mid = ag_silu(g, ag_mul(g, x, pg_leaf(m, 1, AG_SHAPE(8))));
    ag_tensor *h = ag_silu(g, ag_silu(g, m->mid));
    m->loss = ag_sum_all(g, ag_mul(g, h, h));
    if (mark) assert_int_equal(ag_graph_mark_output(g, m->mid), 0);
    assert_int_equal(ag_graph_finalize(g), 0);
}

static void test_pool_seed_unmarked(void **state) {
    (void)state;
    double S[48];
    for (int i = 0; i < 48; i++) S[i] = sin(0.7 * i);
    const void *seeds[2] = {NULL, S};
    ag_grad_pool *p = ag_grad_pool_new();
    pgraph a, b, c;
    pg_seeded(&a, p, 0);
    assert_int_equal(ag_graph_forward(a.g), 0);
    ag_tensor *outs[2] = {a.loss, a.mid};
    ei_error_clear();
    assert_int_equal(ag_graph_backward(a.g, 2, outs, seeds), -1);
    if (!strstr(ei_error_get(), "ag_graph_mark_output")) fail_msg("unexpected error '%s'", ei_error_get());
    assert_int_equal(ag_graph_backward_scalar(a.g, a.mid, 1.0), -1);
    assert_int_equal(ag_graph_mark_output(a.g, a.mid), -1);  /* too late: the offsets are placed */
    assert_int_equal(ag_graph_mark_output(a.g, a.loss), 0);  /* an output anyway */
    assert_int_equal(ag_graph_backward_scalar(a.g, a.loss, 1.0), 0);
    assert_int_equal(ag_graph_mark_output(a.g, NULL), -1);

    /* marked, the same seeds give the unpooled graph's gradients (which needs no mark) */
    pg_seeded(&b, p, 1);
    pg_seeded(&c, NULL, 0);
    assert_int_equal(ag_graph_forward(b.g), 0);
    assert_int_equal(ag_graph_forward(c.g), 0);
    ag_tensor *ob[2] = {b.loss, b.mid}, *oc[2] = {c.loss, c.mid};
    assert_int_equal(ag_graph_backward(b.g, 2, ob, seeds), 0);
    assert_int_equal(ag_graph_backward(c.g, 2, oc, seeds), 0);
    assert_true(pg_grad_norm(&c) > 1e-3);
    pg_same_grads(&b, &c);
    ag_graph_free(a.g);
    ag_graph_free(b.g);
    ag_graph_free(c.g);
    ag_grad_pool_free(p);
}

/* ---------------------------------------------------------------- first-touch gradients
 * An op that writes every element of a source's gradient overwrites it on the first touch in a
 * backward (ag_grad_acquire_overwrite) instead of zeroing it and adding. Each case runs its op on
 * op-node inputs u, v (leaves are never fresh) in three graphs: the op alone (fresh), with a second
 * consumer of u and v built before it (the op's backward runs first, fresh, and the other adds) and
 * built after it (the op adds to a live gradient). Every op-node gradient starts as NaN, or lies in
 * a shared pool, so an element a fresh write skips reaches the leaves' gradients as NaN or as
 * another gradient's bytes. Checked by central differences in float64, and float32 against it. */

typedef ag_tensor *(*ow_build_fn)(ag_graph *g, ag_tensor *u, ag_tensor *v);

typedef struct {
    const char *name;
    int un; /* rank and shape of u's leaf, then of v's */
    int64_t us[4];
    int vn;
    int64_t vs[4];
    ow_build_fn build;
} ow_case;

static ag_tensor *ow_i32(ag_graph *g, int64_t n, const int32_t *vals) {
    ag_tensor *t = ag_input_i32(g, 1, &n);
    memcpy(ag_tensor_data(t), vals, (size_t)n * sizeof *vals);
    return t;
}

static ag_tensor *ow_add(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_add(g, u, v); }
static ag_tensor *ow_sub(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_sub(g, u, v); }
static ag_tensor *ow_sub_rev(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_sub(g, v, u); }
static ag_tensor *ow_mul(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_mul(g, u, v); }
static ag_tensor *ow_mul_rev(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_mul(g, v, u); }
static ag_tensor *ow_div(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_div(g, u, v); }
static ag_tensor *ow_mul_self(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_add(g, ag_mul(g, u, u), v); }
static ag_tensor *ow_add_self(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_mul(g, ag_add(g, u, u), v); }
static ag_tensor *ow_silu(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_silu(g, u); }
static ag_tensor *ow_sigmoid(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_sigmoid(g, u); }
static ag_tensor *ow_elu1(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_elu1(g, u); }
static ag_tensor *ow_exp(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_exp(g, u); }
static ag_tensor *ow_scale(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_scale(g, u, -0.75); }
static ag_tensor *ow_addc(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_add_scalar(g, u, 0.5); }
static ag_tensor *ow_swiglu(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_swiglu(g, u, v); }
static ag_tensor *ow_swiglu_rev(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_swiglu(g, v, u); }
static ag_tensor *ow_swiglu_self(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_mul(g, ag_swiglu(g, u, u), v); }
static ag_tensor *ow_concat(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_concat(g, u, v, 1); }
static ag_tensor *ow_concat0(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_concat(g, v, u, 0); }
static ag_tensor *ow_concat_twice(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    ag_tensor *ts[3] = {u, v, u};
    return ag_concat_n(g, 3, ts, 1);
}
static ag_tensor *ow_slice_lead(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_slice(g, u, 0, 1, 2); }
static ag_tensor *ow_slice_mid(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_slice(g, u, 1, 2, 3); }
static ag_tensor *ow_slice_all(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_slice(g, u, 1, 0, 6); }
static ag_tensor *ow_slice_two(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    (void)v;
    return ag_mul(g, ag_slice(g, u, 1, 0, 2), ag_slice(g, u, 1, 3, 2)); /* column 2 and 5 of u get nothing */
}
static ag_tensor *ow_slice_3d(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_slice(g, u, 1, 1, 1); }
static ag_tensor *ow_reshape(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    return ag_add(g, ag_reshape(g, ag_reshape(g, u, AG_SHAPE(2, 6)), AG_SHAPE(3, 4)), v);
}
static ag_tensor *ow_transpose01(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_transpose(g, u, 0, 1); }
static ag_tensor *ow_transpose12(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_transpose(g, u, 1, 2); }
static ag_tensor *ow_sum1(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_sum(g, u, 1, 0); }
static ag_tensor *ow_sum2(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_sum(g, u, 2, 1); }
static ag_tensor *ow_mean0(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_mean(g, u, 0, 0); }
static ag_tensor *ow_sum_all(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_mul(g, ag_sum_all(g, u), v); }
static ag_tensor *ow_softmax(ag_graph *g, ag_tensor *u, ag_tensor *v) { return (void)v, ag_softmax(g, u); }
static const int32_t ow_targets[4] = {1, -1, 4, 0};
static ag_tensor *ow_ce(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    return (void)v, ag_cross_entropy(g, u, ow_i32(g, 4, ow_targets), NULL);
}
static ag_tensor *ow_ce_mask(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    ag_tensor *m = ag_input_u8(g, AG_SHAPE(4));
    memcpy(ag_tensor_data(m), (const uint8_t[]){1, 1, 0, 1}, 4); /* rows 1 (target -1) and 2 count nothing */
    return (void)v, ag_cross_entropy(g, u, ow_i32(g, 4, ow_targets), m);
}
static ag_tensor *ow_lce(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    return ag_linear_cross_entropy(g, u, v, ow_i32(g, 4, ow_targets), NULL);
}
static ag_tensor *ow_lce_all(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    return ag_linear_cross_entropy(g, u, v, ow_i32(g, 4, (const int32_t[]){1, 3, 4, 0}), NULL);
}
static ag_tensor *ow_matmul(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_matmul(g, u, v, 0, 0); }
static ag_tensor *ow_matmul_ta(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_matmul(g, u, v, 1, 0); }
static ag_tensor *ow_matmul_tb(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_matmul(g, u, v, 0, 1); }
static ag_tensor *ow_matmul_tab(ag_graph *g, ag_tensor *u, ag_tensor *v) { return ag_matmul(g, u, v, 1, 1); }
static ag_tensor *ow_matmul_self(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    return ag_mul(g, ag_matmul(g, u, u, 0, 1), v);
}
static ag_tensor *ow_linear(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    return ag_linear(g, u, v, ag_sum(g, v, 1, 0)); /* an op-node bias, so its gradient can be fresh */
}
static ag_tensor *ow_linear_bias_live(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    ag_tensor *b = ag_sum(g, v, 1, 0);
    return ag_mul(g, ag_linear(g, u, v, b), b); /* the mul's backward touches b first */
}
static ag_tensor *ow_rmsnorm(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    return ag_rmsnorm(g, u, ag_sum(g, v, 0, 0), 1e-5);
}
static ag_tensor *ow_rmsnorm_now(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    return (void)v, ag_rmsnorm(g, u, NULL, 1e-5);
}
static const int32_t ow_pos[3] = {0, 5, 2};
static ag_tensor *ow_rope(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    return (void)v, ag_rope(g, u, ow_i32(g, 3, ow_pos), 1e4, AG_ROPE_INTERLEAVED);
}
static ag_tensor *ow_rope_half(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    return (void)v, ag_rope_ex(g, u, ow_i32(g, 3, ow_pos), 1e4, AG_ROPE_HALF, 8);
}

#define OW2(a, b) 2, {a, b, 1, 1}
#define OW3(a, b, c) 3, {a, b, c, 1}
#define OW1(a) 1, {a, 1, 1, 1}

static const ow_case ow_cases[] = {
    {"add flat", OW2(3, 4), OW2(3, 4), ow_add},
    {"sub, v broadcast over rows", OW2(3, 4), OW1(4), ow_sub},
    {"sub, u broadcast over rows", OW1(4), OW2(3, 4), ow_sub_rev},
    {"mul, v per row", OW2(3, 4), OW2(3, 1), ow_mul},
    {"mul, u per row", OW2(3, 1), OW2(3, 4), ow_mul_rev},
    {"mul, u over a middle axis", OW3(2, 1, 4), OW3(2, 3, 4), ow_mul_rev},
    {"div flat", OW2(3, 4), OW2(3, 4), ow_div},
    {"div, v per row", OW2(3, 4), OW2(3, 1), ow_div},
    {"mul(u, u)", OW2(3, 4), OW2(3, 4), ow_mul_self},
    {"add(u, u)", OW2(3, 4), OW2(3, 4), ow_add_self},
    {"silu", OW2(3, 4), OW1(1), ow_silu},
    {"sigmoid", OW2(3, 4), OW1(1), ow_sigmoid},
    {"elu1", OW2(3, 4), OW1(1), ow_elu1},
    {"exp", OW2(3, 4), OW1(1), ow_exp},
    {"scale", OW2(3, 4), OW1(1), ow_scale},
    {"add_scalar", OW2(3, 4), OW1(1), ow_addc},
    {"swiglu", OW2(3, 4), OW2(3, 4), ow_swiglu},
    {"swiglu(v, u)", OW2(3, 4), OW2(3, 4), ow_swiglu_rev},
    {"swiglu(u, u)", OW2(3, 4), OW2(3, 4), ow_swiglu_self},
    {"concat axis 1", OW2(3, 2), OW2(3, 3), ow_concat},
    {"concat axis 0", OW2(2, 3), OW2(3, 3), ow_concat0},
    {"concat u, v, u", OW2(3, 2), OW2(3, 3), ow_concat_twice},
    {"slice leading (view)", OW2(4, 6), OW1(1), ow_slice_lead},
    {"slice inside", OW2(4, 6), OW1(1), ow_slice_mid},
    {"slice whole", OW2(4, 6), OW1(1), ow_slice_all},
    {"two slices, gaps", OW2(4, 6), OW1(1), ow_slice_two},
    {"slice middle axis", OW3(2, 3, 4), OW1(1), ow_slice_3d},
    {"reshape", OW2(3, 4), OW2(3, 4), ow_reshape},
    {"transpose rows", OW3(2, 3, 4), OW1(1), ow_transpose01},
    {"transpose inner", OW3(2, 3, 4), OW1(1), ow_transpose12},
    {"sum axis 1", OW3(2, 3, 4), OW1(1), ow_sum1},
    {"sum last axis keepdim", OW3(2, 3, 4), OW1(1), ow_sum2},
    {"mean axis 0", OW3(2, 3, 4), OW1(1), ow_mean0},
    {"sum_all", OW2(3, 4), OW1(1), ow_sum_all},
    {"softmax", OW2(3, 5), OW1(1), ow_softmax},
    {"cross_entropy", OW2(4, 5), OW1(1), ow_ce},
    {"cross_entropy masked", OW2(4, 5), OW1(1), ow_ce_mask},
    {"linear_cross_entropy, rows skipped", OW2(4, 3), OW2(5, 3), ow_lce},
    {"linear_cross_entropy, every row", OW2(4, 3), OW2(5, 3), ow_lce_all},
    {"matmul", OW2(3, 4), OW2(4, 2), ow_matmul},
    {"matmul batched, shared b", OW3(2, 3, 4), OW2(4, 2), ow_matmul},
    {"matmul batched trans_a, shared b", OW3(2, 4, 3), OW2(4, 2), ow_matmul_ta},
    {"matmul batched", OW3(2, 3, 4), OW3(2, 4, 2), ow_matmul},
    {"matmul batched trans_a trans_b", OW3(2, 4, 3), OW3(2, 2, 4), ow_matmul_tab},
    {"matmul trans_b", OW2(3, 4), OW2(2, 4), ow_matmul_tb},
    {"matmul(u, u^T)", OW2(3, 4), OW2(3, 3), ow_matmul_self},
    {"linear with bias", OW2(3, 4), OW2(2, 4), ow_linear},
    {"linear, bias gradient live", OW2(3, 4), OW2(2, 4), ow_linear_bias_live},
    {"rmsnorm", OW2(3, 4), OW2(2, 4), ow_rmsnorm},
    {"rmsnorm without weight", OW2(3, 4), OW1(1), ow_rmsnorm_now},
    {"rope interleaved", OW3(3, 2, 4), OW1(1), ow_rope},
    {"rope half, position table", OW3(3, 2, 4), OW1(1), ow_rope_half},
};

typedef struct {
    ag_graph *g;
    ag_tensor *x, *y, *loss;
} ow_graph;

/* The second consumer of u and v: its backward runs before the ops built ahead of it. */
static ag_tensor *ow_other(ag_graph *g, ag_tensor *u, ag_tensor *v) {
    return ag_add(g, ag_gradcheck_loss(g, ag_sigmoid(g, u), 5), ag_gradcheck_loss(g, ag_sigmoid(g, v), 6));
}

/* variant 0: the op alone; 1: another consumer of u and v built before it; 2: built after it. */
static void ow_build(ow_graph *m, const ow_case *c, ag_dtype dt, int variant, ag_grad_pool *pool) {
    m->g = ag_graph_new(dt, 0);
    assert_non_null(m->g);
    if (pool) assert_int_equal(ag_graph_share_grads(m->g, pool), 0);
    ag_graph *g = m->g;
    m->x = ag_input(g, c->un, c->us);
    m->y = ag_input(g, c->vn, c->vs);
    assert_int_equal(ag_tensor_set_requires_grad(m->x, 1), 0);
    assert_int_equal(ag_tensor_set_requires_grad(m->y, 1), 0);
    uint64_t s = 77;
    assert_int_equal(ag_fill_uniform(m->x, &s, -1.0, 1.0), 0);
    assert_int_equal(ag_fill_uniform(m->y, &s, -1.0, 1.0), 0);
    ag_tensor *u = ag_scale(g, m->x, 1.25), *v = ag_add_scalar(g, m->y, 3.0); /* v: a safe divisor */
    ag_tensor *other = variant == 1 ? ow_other(g, u, v) : NULL;
    ag_tensor *out = c->build(g, u, v);
    if (variant == 2) other = ow_other(g, u, v);
    m->loss = ag_gradcheck_loss(g, out, 4);
    if (other) m->loss = ag_add(g, m->loss, other);
    if (ag_graph_finalize(g)) fail_msg("%s: %s", c->name, ei_error_get());
    /* garbage in every op-node gradient: what a fresh write leaves unwritten stays NaN */
    for (int i = 0; i < ag_graph_node_count(g); i++) {
        ag_tensor *t = ag_graph_node(g, i);
        if (t->kind != AG_NODE_OP || !t->grad) continue;
        for (int64_t e = 0; e < t->numel; e++) {
            if (dt == AG_F32)
                ((float *)t->grad)[e] = NAN;
            else
                ((double *)t->grad)[e] = NAN;
        }
    }
}

static void test_grad_first_touch(void **state) {
    (void)state;
    const int ncase = (int)(sizeof ow_cases / sizeof ow_cases[0]);
    double worst = 0;
    for (int k = 0; k < ncase; k++) {
        const ow_case *c = &ow_cases[k];
        for (int variant = 0; variant < 3; variant++)
            for (int pooled = 0; pooled < 2; pooled++) {
                ag_grad_pool *p = pooled ? ag_grad_pool_new() : NULL;
                ow_graph a, b;
                ow_build(&a, c, AG_F64, variant, p);
                ag_tensor *wrt[2] = {a.x, a.y};
                ag_gradcheck_result r;
                if (ag_gradcheck(a.g, a.loss, 2, wrt, 1e-5, 0, &r)) fail_msg("%s: %s", c->name, ei_error_get());
                if (!(r.max_rel_err <= 1e-6) || !(r.max_abs_grad > 1e-3))
                    fail_msg("%s, variant %d%s: rel err %.3g (tensor %d, element %lld), max |grad| %.3g", c->name,
                             variant, pooled ? ", pooled" : "", r.max_rel_err, r.worst_tensor,
                             (long long)r.worst_index, r.max_abs_grad);
                worst = fmax(worst, r.max_rel_err);
                /* float32 on the same garbage, against the float64 gradient */
                ow_build(&b, c, AG_F32, variant, p);
                assert_int_equal(ag_graph_forward(b.g), 0);
                assert_int_equal(ag_graph_backward_scalar(b.g, b.loss, 1.0), 0);
                for (int w = 0; w < 2; w++) {
                    ag_tensor *t64 = w ? a.y : a.x, *t32 = w ? b.y : b.x;
                    double mx = 0;
                    for (int64_t e = 0; e < t64->numel; e++) mx = fmax(mx, fabs(ag_tensor_grad_at(t64, e)));
                    for (int64_t e = 0; e < t64->numel; e++) {
                        const double d = fabs(ag_tensor_grad_at(t32, e) - ag_tensor_grad_at(t64, e));
                        if (!(d <= 1e-4 * mx + 1e-6))
                            fail_msg("%s, variant %d%s, float32: %s[%lld] %.9g vs %.9g", c->name, variant,
                                     pooled ? ", pooled" : "", w ? "y" : "x", (long long)e,
                                     ag_tensor_grad_at(t32, e), ag_tensor_grad_at(t64, e));
                    }
                }
                ag_graph_free(a.g);
                ag_graph_free(b.g);
                ag_grad_pool_free(p);
            }
    }
    printf("  first-touch gradients: %d cases x 3 graphs x (own, pooled) buffers, worst rel err %.2e\n", ncase, worst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transformer_gradcheck), cmocka_unit_test(test_frozen),
        cmocka_unit_test(test_accumulate_and_zero),   cmocka_unit_test(test_multi_seed),
        cmocka_unit_test(test_threads_bit_identical), cmocka_unit_test(test_matmul_batched_parallel),
        cmocka_unit_test(test_f32_matches_f64),
        cmocka_unit_test(test_bind_contiguous),       cmocka_unit_test(test_bad_shapes),
        cmocka_unit_test(test_runtime_errors),        cmocka_unit_test(test_pool_chain),
        cmocka_unit_test(test_pool_residual),         cmocka_unit_test(test_pool_two_graphs),
        cmocka_unit_test(test_pool_reshape_alias),
        cmocka_unit_test(test_pool_seed_unmarked),
        cmocka_unit_test(test_grad_first_touch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
