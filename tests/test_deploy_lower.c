/* The lowered graphs against the eager model: the same document through `ei_lower` + the runner on
 * the cpu backend and through the EdgeInfinite model of train/edge.h (autograd graphs, the same
 * layer recipe) gives the same logits at every position (1e-4 relative to the position's largest
 * logit), through every phase: sink filling, window filling, the first compression, the steady
 * state, a padded last chunk, decoding across compressions; for both position schemes, both gate
 * kinds, both memory rules, window mode, routed documents and full attention. On the real
 * stories260K model with random non-zero gates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "deploy/eig_write.h"
#include "deploy/lower.h"
#include "formats/model.h"
#include "runtime/runner.h"
#include "train/edge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STORIES_BIN EI_FIXTURES "/models/stories260K/stories260K.bin"

static ei_model *g_model;
enum { V = 512, NMAX = 96 };
static int32_t doc[NMAX + 1];

static void make_doc(void) {
    uint32_t x = 777;
    doc[0] = 1;
    for (int i = 1; i <= NMAX; i++) {
        x = x * 1664525u + 1013904223u;
        doc[i] = (int32_t)(3 + (x >> 12) % (V - 3));
    }
}

static double row_err(const float *a, const float *b) {
    double scale = 1, e = 0;
    for (int i = 0; i < V; i++) scale = fmax(scale, fabs((double)b[i]));
    for (int i = 0; i < V; i++) e = fmax(e, fabs((double)a[i] - b[i]));
    return e / scale;
}

/* Writes the graphs of (mode, o, N) to a temporary .eig and opens a runner on it. */
static ei_runner *compile_open(ei_mode mode, const ei_opts *o, const ei_gates *g, int N, int context, char *path) {
    ei_eigw *w = ei_eigw_new();
    assert_non_null(w);
    assert_int_equal(ei_eigw_set_config(w, &g_model->cfg), 0);
    ei_lower_spec spec = {.m = g_model, .gates = g, .mode = mode, .o = *o, .tokens_per_call = N, .context = context};
    if (ei_lower(&spec, w) != 0) fail_msg("lower: %s", ei_error_get());
    strcpy(path, "/tmp/ei_lower_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    if (ei_eigw_write(w, path) != 0) fail_msg("write: %s", ei_error_get());
    ei_eigw_free(w);
    ei_runner *r = ei_runner_open(path, &(ei_runner_options){.threads = 2});
    if (!r) fail_msg("runner: %s", ei_error_get());
    return r;
}

/* Feeds doc[0..n) to the runner: `first` tokens at once (prefill in chunks of N), then one at a
 * time (decode), and checks every returned logit row against the eager model's row. */
static void compare(ei_runner *r, ei_edge *e, int n, int first, int known, const char *what) {
    float *ref = malloc(sizeof(float) * V * n), got[V];
    if (known) ei_edge_begin(e, n);
    else ei_edge_reset(e);
    /* the eager reference: position by position with the same knowledge of the length */
    for (int t = 0; t < n; t++)
        if (ei_edge_feed_all(e, doc + t, 1, ref + (size_t)t * V) != 0) fail_msg("eager: %s", ei_error_get());
    if (known) ei_runner_begin(r, n);
    else ei_runner_reset(r);
    double worst = 0;
    int worst_t = -1;
    if (ei_runner_feed(r, doc, first, NULL, NULL, NULL, got) != 0) fail_msg("%s: runner: %s", what, ei_error_get());
    double err = row_err(got, ref + (size_t)(first - 1) * V);
    if (err > worst) worst = err, worst_t = first - 1;
    for (int t = first; t < n; t++) {
        if (ei_runner_feed(r, doc + t, 1, NULL, NULL, NULL, got) != 0) fail_msg("%s: runner: %s", what, ei_error_get());
        err = row_err(got, ref + (size_t)t * V);
        if (err > worst) worst = err, worst_t = t;
    }
    if (!(worst <= 1e-4)) fail_msg("%s: position %d differs by %.3g (relative)", what, worst_t, worst);
    free(ref);
}

static void random_gates(ei_gates *g, double shift) {
    for (size_t i = 0; i < g->n; i++) g->data[i] = (float)(0.8 * sin(0.31 * (double)i + shift) - 0.3);
}

static void one_case(ei_mode mode, ei_gate_kind gk, ei_mem_rule rule, ei_positions pos, int route, int N) {
    ei_opts o;
    ei_opts_default(&o);
    o.segment = 8;
    o.sink = 2;
    o.window = 8;
    o.gate = gk;
    o.memory_rule = rule;
    o.positions = pos;
    o.route_threshold = route ? -1 : 0;
    ei_gates *g = NULL;
    if (mode == EI_MODE_EDGEINFINITE) {
        g = ei_gates_new(&g_model->cfg, gk, 0.0);
        random_gates(g, (double)gk + 2.0 * rule);
    }
    char path[64], what[128];
    ei_runner *r = compile_open(mode, &o, g, N, 0, path);
    ei_edge *e = ei_edge_new(g_model, &o, g, mode, AG_F32);
    assert_non_null(e);
    snprintf(what, sizeof what, "%s %s gate %s rule %s positions, route %d, N %d", ei_mode_name(mode),
             ei_gate_kind_name(gk), ei_mem_rule_name(rule), ei_positions_name(pos), route, N);
    /* prefill 37 tokens (a padded last chunk, sink and window filled, compressions), decode the rest
     * across further compressions; then a short prompt decoded past the routing threshold */
    compare(r, e, 70, 37, 0, what);
    compare(r, e, 70, 37, 1, what);
    compare(r, e, 40, 5, 0, what);
    if (route) compare(r, e, 15, 15, 1, what); /* routed whole */
    ei_edge_free(e);
    ei_runner_close(r);
    unlink(path);
    ei_gates_free(g);
}

static void test_edgeinfinite_phases(void **s) {
    (void)s;
    for (int gk = 0; gk < 2; gk++)
        for (int rule = 0; rule < 2; rule++)
            for (int pos = 0; pos < 2; pos++) one_case(EI_MODE_EDGEINFINITE, (ei_gate_kind)gk, (ei_mem_rule)rule,
                                                        (ei_positions)pos, 0, 4);
}

static void test_routing_and_window(void **s) {
    (void)s;
    one_case(EI_MODE_EDGEINFINITE, EI_GATE_TOKEN, EI_MEM_LINEAR, EI_POS_COMPACT, 1, 4);
    one_case(EI_MODE_EDGEINFINITE, EI_GATE_TOKEN, EI_MEM_DELTA, EI_POS_DESIGN, 1, 8);
    one_case(EI_MODE_WINDOW, EI_GATE_TOKEN, EI_MEM_LINEAR, EI_POS_COMPACT, 1, 8);
    one_case(EI_MODE_WINDOW, EI_GATE_TOKEN, EI_MEM_LINEAR, EI_POS_DESIGN, 0, 3);
}

static void test_full_attention(void **s) {
    (void)s;
    ei_opts o;
    ei_opts_default(&o);
    char path[64];
    ei_runner *r = compile_open(EI_MODE_FULL, &o, NULL, 16, 80, path);
    assert_int_equal(ei_runner_capacity(r), 80);
    ei_edge *e = ei_edge_new(g_model, &o, NULL, EI_MODE_FULL, AG_F32);
    assert_non_null(e);
    compare(r, e, 80, 50, 0, "full attention");
    /* the context is full: one more token is an error, not garbage */
    float lg[V];
    assert_int_equal(ei_runner_feed(r, doc, 1, NULL, NULL, NULL, lg), -1);
    assert_non_null(strstr(ei_error_get(), "context full"));
    ei_edge_free(e);
    ei_runner_close(r);
    unlink(path);
}

/* Scoring through the runner: the summed NLL of a document equals the eager model's. */
static void test_scoring(void **s) {
    (void)s;
    ei_opts o;
    ei_opts_default(&o);
    o.segment = 8;
    o.sink = 2;
    o.window = 8;
    ei_gates *g = ei_gates_new(&g_model->cfg, o.gate, 0.0);
    random_gates(g, 1.0);
    char path[64];
    ei_runner *r = compile_open(EI_MODE_EDGEINFINITE, &o, g, 8, 0, path);
    ei_edge *e = ei_edge_new(g_model, &o, g, EI_MODE_EDGEINFINITE, AG_F32);
    for (int n = 12; n <= 60; n += 24) {
        ei_doc_result res;
        assert_int_equal(ei_edge_doc_eval(e, doc, doc + 1, NULL, n, &res), 0);
        double nll = 0;
        int64_t cnt = 0;
        ei_runner_begin(r, n);
        assert_int_equal(ei_runner_feed(r, doc, n, doc + 1, &nll, &cnt, NULL), 0);
        assert_int_equal(cnt, res.count);
        if (fabs(nll - res.nll_sum) > 1e-4 * res.nll_sum) fail_msg("n %d: nll %.8g vs eager %.8g", n, nll, res.nll_sum);
    }
    ei_edge_free(e);
    ei_runner_close(r);
    unlink(path);
    ei_gates_free(g);
}

static int setup(void **s) {
    (void)s;
    g_model = ei_model_load(STORIES_BIN);
    make_doc();
    return g_model ? 0 : -1;
}

static int teardown(void **s) {
    (void)s;
    ei_model_free(g_model);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edgeinfinite_phases),
        cmocka_unit_test(test_routing_and_window),
        cmocka_unit_test(test_full_attention),
        cmocka_unit_test(test_scoring),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
