/* The classifier fused with the loss on the counted rows only (ag_linear_cross_entropy, used by
 * the training graphs of train/seg_graph.c), issue 15:
 *  - every row counted: loss, dx and dW bit-identical to ag_linear + ag_cross_entropy (float32)
 *    for an upstream gradient of 1, the same within float rounding for another (the fused op
 *    scales its dlogits in the GEMMs, the pair in the cross-entropy's backward);
 *  - some rows counted (u8 mask, float weights, targets -1): the same values within float rounding,
 *    and the uncounted rows' dx exactly 0;
 *  - float64 gradients w.r.t. x and W against central finite differences (1e-8 of the largest);
 *  - no row counted: loss 0, zero gradients; a bad target names its row of x;
 *  - a second backward without a forward (the forward turned the logits into dlogits in place)
 *    gives the same gradient again;
 *  - a training graph's loss equals the evaluation graphs' (which use the recipe's classifier and
 *    the plain cross-entropy): bit for bit when every position counts, within 1e-6 when a loss mask
 *    hides some. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "autograd/autograd.h"
#include "core/ei_error.h"
#include "train/edge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static double urand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ULL) >> 11) / 4503599627370496.0 - 1.0;
}

enum { R = 37, D = 24, V = 300 };

typedef struct {
    ag_graph *g;
    ag_tensor *x, *w, *tg, *mask, *loss;
} ce_graph;

/* fused = 1: ag_linear_cross_entropy; 0: ag_linear then ag_cross_entropy. mask_dt: AG_U8, the
 * graph's dtype (weights) or -1 (no mask). */
static ce_graph build(ag_dtype dt, int fused, int mask_dt) {
    ce_graph c = {0};
    c.g = ag_graph_new(dt, 0);
    c.x = ag_param(c.g, AG_SHAPE(R, D));
    c.w = ag_param(c.g, AG_SHAPE(V, D));
    c.tg = ag_input_i32(c.g, AG_SHAPE(R));
    c.mask = mask_dt < 0 ? NULL : mask_dt == AG_U8 ? ag_input_u8(c.g, AG_SHAPE(R)) : ag_input(c.g, AG_SHAPE(R));
    c.loss = fused ? ag_linear_cross_entropy(c.g, c.x, c.w, c.tg, c.mask)
                   : ag_cross_entropy(c.g, ag_linear(c.g, c.x, c.w, NULL), c.tg, c.mask);
    if (!c.loss || ag_graph_finalize(c.g) != 0) fail_msg("build: %s", ei_error_get());
    return c;
}

/* Fills x, W, targets and the mask of c from fixed seeds; counted: every row when all = 1, else
 * about half (target -1 on some rows, mask 0 on others). */
static void fill(ce_graph *c, int all) {
    rng = 12345;
    double *x = malloc(sizeof(double) * R * D), *w = malloc(sizeof(double) * V * D);
    for (int i = 0; i < R * D; i++) x[i] = urand();
    for (int i = 0; i < V * D; i++) w[i] = 0.3 * urand();
    ag_tensor_set_f64(c->x, x);
    ag_tensor_set_f64(c->w, w);
    int32_t *tg = ag_tensor_data(c->tg);
    for (int r = 0; r < R; r++) tg[r] = (int32_t)((urand() + 1) * 0.5 * V) % V;
    if (!all)
        for (int r = 0; r < R; r += 7) tg[r] = -1;
    if (c->mask) {
        if (c->mask->dtype == AG_U8) {
            uint8_t *m = ag_tensor_data(c->mask);
            for (int r = 0; r < R; r++) m[r] = (uint8_t)(all || r % 3 != 1);
        } else {
            double mw[R];
            for (int r = 0; r < R; r++) mw[r] = all ? 1.0 : r % 3 == 1 ? 0.0 : 0.25 + 0.5 * (r % 4);
            ag_tensor_set_f64(c->mask, mw);
        }
    }
    free(x);
    free(w);
}

static void run_seed(ce_graph *c, double seed) {
    ag_graph_zero_grads(c->g);
    if (ag_graph_forward(c->g) != 0 || ag_graph_backward_scalar(c->g, c->loss, seed) != 0)
        fail_msg("run: %s", ei_error_get());
}

static void run(ce_graph *c) { run_seed(c, 0.75); }

/* |a - b| <= tol * max |b| over n gradients */
static void assert_grads_near(const ag_tensor *a, const ag_tensor *b, int64_t n, double tol) {
    double gmax = 0;
    for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(ag_tensor_grad_at(b, i)));
    assert_true(gmax > 0);
    for (int64_t i = 0; i < n; i++) assert_true(fabs(ag_tensor_grad_at(a, i) - ag_tensor_grad_at(b, i)) <= tol * gmax);
}

static void test_all_rows_bit_identical(void **state) {
    (void)state;
    for (int mk = -1; mk <= (int)AG_U8; mk += 1 + (int)AG_U8) { /* no mask, u8 mask */
        ce_graph a = build(AG_F32, 1, mk), b = build(AG_F32, 0, mk);
        fill(&a, 1);
        fill(&b, 1);
        run_seed(&a, 1.0);
        run_seed(&b, 1.0);
        assert_memory_equal(a.loss->data, b.loss->data, sizeof(float));
        assert_memory_equal(a.x->grad, b.x->grad, sizeof(float) * R * D);
        assert_memory_equal(a.w->grad, b.w->grad, sizeof(float) * V * D);
        assert_true(ag_cross_entropy_count(a.loss) == R && ag_cross_entropy_count(b.loss) == R);
        run(&a);
        run(&b);
        assert_memory_equal(a.loss->data, b.loss->data, sizeof(float));
        assert_grads_near(a.x, b.x, R * D, 1e-5);
        assert_grads_near(a.w, b.w, V * D, 1e-5);
        ag_graph_free(a.g);
        ag_graph_free(b.g);
    }
}

static void test_some_rows(void **state) {
    (void)state;
    const int kinds[2] = {AG_U8, AG_F32};
    for (int k = 0; k < 2; k++) {
        ce_graph a = build(AG_F32, 1, kinds[k]), b = build(AG_F32, 0, kinds[k]);
        fill(&a, 0);
        fill(&b, 0);
        run(&a);
        run(&b);
        const double la = ag_tensor_at(a.loss, 0), lb = ag_tensor_at(b.loss, 0);
        assert_true(fabs(la - lb) <= 1e-6 * fabs(lb));
        assert_true(lb > 1.0);
        assert_true(ag_cross_entropy_count(a.loss) == ag_cross_entropy_count(b.loss));
        double gmax = 0;
        for (int i = 0; i < V * D; i++) gmax = fmax(gmax, fabs(ag_tensor_grad_at(b.w, i)));
        for (int i = 0; i < V * D; i++)
            assert_true(fabs(ag_tensor_grad_at(a.w, i) - ag_tensor_grad_at(b.w, i)) <= 1e-5 * gmax);
        const int32_t *tg = ag_tensor_data(a.tg);
        for (int r = 0; r < R; r++) {
            const int counted = tg[r] >= 0 && r % 3 != 1;
            for (int j = 0; j < D; j++) {
                const double ga = ag_tensor_grad_at(a.x, r * D + j), gb = ag_tensor_grad_at(b.x, r * D + j);
                if (!counted) assert_true(ga == 0.0 && gb == 0.0);
                assert_true(fabs(ga - gb) <= 1e-5 * (fabs(gb) + 1e-3));
            }
        }
        ag_graph_free(a.g);
        ag_graph_free(b.g);
    }
}

/* The forward turns the stored logits into dlogits in place and the backward only reads them: a
 * second backward without a forward accumulates leaf gradients to exactly twice the first (g + g
 * is exact). */
static void test_backward_twice(void **state) {
    (void)state;
    for (int all = 0; all < 2; all++) {
        ce_graph c = build(AG_F32, 1, AG_U8);
        fill(&c, all);
        run(&c);
        float *gx = malloc(sizeof(float) * R * D), *gw = malloc(sizeof(float) * V * D);
        memcpy(gx, c.x->grad, sizeof(float) * R * D);
        memcpy(gw, c.w->grad, sizeof(float) * V * D);
        if (ag_graph_backward_scalar(c.g, c.loss, 0.75) != 0) fail_msg("backward: %s", ei_error_get());
        for (int i = 0; i < R * D; i++) assert_true(((float *)c.x->grad)[i] == 2 * gx[i]);
        for (int i = 0; i < V * D; i++) assert_true(((float *)c.w->grad)[i] == 2 * gw[i]);
        free(gx);
        free(gw);
        ag_graph_free(c.g);
    }
}

static void test_finite_differences(void **state) {
    (void)state;
    ce_graph c = build(AG_F64, 1, AG_F64);
    fill(&c, 0);
    run(&c);
    const double seed = 0.75, h = 1e-4;
    ag_tensor *leaves[2] = {c.x, c.w};
    double worst = 0;
    for (int li = 0; li < 2; li++) {
        ag_tensor *t = leaves[li];
        double *p = ag_tensor_data(t), gmax = 0;
        for (int64_t i = 0; i < t->numel; i++) gmax = fmax(gmax, fabs(ag_tensor_grad_at(t, i)));
        assert_true(gmax > 1e-3);
        for (int64_t i = 0; i < t->numel; i += li ? 53 : 5) {
            const double keep = p[i];
            p[i] = keep + h;
            ag_graph_forward(c.g);
            const double lp = ag_tensor_at(c.loss, 0);
            p[i] = keep - h;
            ag_graph_forward(c.g);
            const double lm = ag_tensor_at(c.loss, 0);
            p[i] = keep;
            const double fd = seed * (lp - lm) / (2 * h), an = ag_tensor_grad_at(t, i);
            const double err = fabs(fd - an) / (gmax + fabs(an));
            worst = fmax(worst, err);
            if (err > 1e-8) fail_msg("%s[%lld]: analytic %.12g vs finite difference %.12g", li ? "W" : "x", (long long)i, an, fd);
        }
    }
    print_message("  linear_cross_entropy vs finite differences: max rel err %.2e\n", worst);
    ag_graph_free(c.g);
}

static void test_nothing_counted_and_bad_target(void **state) {
    (void)state;
    ce_graph c = build(AG_F32, 1, AG_U8);
    fill(&c, 1);
    memset(ag_tensor_data(c.mask), 0, R);
    run(&c);
    assert_true(ag_tensor_at(c.loss, 0) == 0.0 && ag_cross_entropy_count(c.loss) == 0.0);
    for (int i = 0; i < R * D; i++) assert_true(ag_tensor_grad_at(c.x, i) == 0.0);
    for (int i = 0; i < V * D; i++) assert_true(ag_tensor_grad_at(c.w, i) == 0.0);
    /* a bad target on a masked row is ignored; on a counted row it fails naming that row of x */
    uint8_t *m = ag_tensor_data(c.mask);
    int32_t *tg = ag_tensor_data(c.tg);
    tg[5] = V;
    assert_int_equal(ag_graph_forward(c.g), 0);
    m[2] = m[5] = 1;
    assert_int_equal(ag_graph_forward(c.g), -1);
    assert_non_null(strstr(ei_error_get(), "row 5"));
    ag_graph_free(c.g);
    /* shape errors */
    ag_graph *g = ag_graph_new(AG_F32, 0);
    ag_tensor *x = ag_input(g, AG_SHAPE(4, 3)), *w = ag_input(g, AG_SHAPE(10, 5)), *t = ag_input_i32(g, AG_SHAPE(4));
    assert_null(ag_linear_cross_entropy(g, x, w, t, NULL));
    assert_non_null(strstr(ei_error_get(), "linear_cross_entropy: inner dims differ"));
    ag_graph_free(g);
}

/* ---------------------------------------------------------------- whole model */

static ei_model *tiny_model(float **pool) {
    ei_model *m = calloc(1, sizeof *m);
    m->cfg = (ei_model_config){.dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                               .head_dim = 4, .vocab_size = 40, .max_seq_len = 64, .rope_theta = 10000.f,
                               .norm_eps = 1e-5f, .tie_embeddings = 0, .qkv_bias = 1, .rope_interleaved = 1,
                               .bos_id = 1, .eos_id = 2};
    if (ei_tensor_table_init(&m->tensors, &m->cfg) != 0) fail_msg("%s", ei_error_get());
    size_t n = 0;
    for (int i = 0; i < m->tensors.n; i++) n += (size_t)m->tensors.t[i].numel;
    float *p = *pool = malloc(n * sizeof(float));
    rng = 777;
    for (int i = 0; i < m->tensors.n; i++) {
        ei_tensor *w = &m->tensors.t[i];
        const int norm = w->cls == EI_TC_ATTN_NORM || w->cls == EI_TC_FFN_NORM || w->cls == EI_TC_FINAL_NORM;
        for (int64_t j = 0; j < w->numel; j++) p[j] = norm ? (float)(1.0 + 0.1 * urand()) : (float)(0.5 * urand());
        w->data = p;
        p += w->numel;
    }
    return m;
}

static void test_train_loss_is_eval_loss(void **state) {
    (void)state;
    float *pool;
    ei_model *m = tiny_model(&pool);
    ei_opts o;
    ei_opts_default(&o);
    o.segment = 5;
    o.sink = 2;
    o.window = 3;
    o.route_threshold = 0;
    ei_gates *g = ei_gates_new(&m->cfg, o.gate, 0.0);
    for (size_t i = 0; i < g->n; i++) g->data[i] = (float)(0.5 * urand());
    enum { N = 23 };
    int32_t ids[N], tg[N];
    uint8_t mk[N];
    for (int i = 0; i < N; i++) {
        ids[i] = (int32_t)((urand() + 1) * 0.5 * m->cfg.vocab_size) % m->cfg.vocab_size;
        tg[i] = (int32_t)((urand() + 1) * 0.5 * m->cfg.vocab_size) % m->cfg.vocab_size;
        mk[i] = (uint8_t)(i % 4 == 1 || i > 17); /* instruction-like: a few, then the answer */
    }
    /* one segment per training graph: the same rows summed in the same order as evaluation, so
     * unmasked the same bits; graphs of several segments (the default) sum a chunk's rows at once */
    for (int dt = 0; dt < 2; dt++)
        for (int chunk = 1; chunk >= 0; chunk--) {
            ei_edge *e = ei_edge_new(m, &o, g, EI_MODE_EDGEINFINITE, dt ? AG_F64 : AG_F32);
            if (!e || ei_edge_set_chunk(e, chunk) != 0) fail_msg("%s", ei_error_get());
            assert_true(chunk ? ei_edge_chunk(e) == 1 : ei_edge_chunk(e) > 1);
            for (int masked = 0; masked < 2; masked++) {
                ei_doc_result tr, ev;
                memset(g->grad, 0, g->n * sizeof(float));
                if (ei_edge_doc_train(e, ids, tg, masked ? mk : NULL, N, 1.0, &tr, NULL) != 0 ||
                    ei_edge_doc_eval(e, ids, tg, masked ? mk : NULL, N, &ev) != 0)
                    fail_msg("%s", ei_error_get());
                assert_int_equal(tr.count, ev.count);
                assert_int_equal(tr.count, masked ? 10 : N);
                if (!masked && chunk)
                    assert_memory_equal(&tr.nll_sum, &ev.nll_sum, sizeof(double));
                else
                    assert_true(fabs(tr.nll_sum - ev.nll_sum) <= (dt ? 1e-12 : 1e-6) * ev.nll_sum);
            }
            ei_edge_free(e);
        }
    ei_gates_free(g);
    ei_tensor_table_free(&m->tensors);
    free(m);
    free(pool);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_rows_bit_identical),
        cmocka_unit_test(test_some_rows),
        cmocka_unit_test(test_backward_twice),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_nothing_counted_and_bad_target),
        cmocka_unit_test(test_train_loss_is_eval_loss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
