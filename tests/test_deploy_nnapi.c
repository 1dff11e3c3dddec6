/* The NNAPI backend end to end on the stories260K fixture: every shipped scenario compiled with
 * f32 and f16 weights runs through the runner on the conformance library (tests/nnapi/, feature
 * level 7 with a fake accelerator) and gives the same greedy tokens as the cpu backend, with
 * logits within 1e-4 (f32) or 2e-2 (f16 relaxed) relative to the position's largest logit. On the
 * feature-level-1 build the graphs need newer operations (MEAN, RSQRT, ...): each falls back to the
 * cpu backend with a notice, gives the same tokens, and --strict turns that into an error. This is
 * conformance on Linux, not a measurement on an NPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "deploy/eig_write.h"
#include "deploy/lower.h"
#include "deploy/scenario.h"
#include "formats/model.h"
#include "runtime/runner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STORIES_BIN EI_FIXTURES "/models/stories260K/stories260K.bin"
enum { V = 512, PROMPT = 45, GEN = 40 };

static ei_model *g_model;
static ei_gates *g_gates;

static ei_qscheme f16_scheme(void *ctx, ei_tclass c, int l, int64_t cols) {
    (void)ctx, (void)c, (void)l, (void)cols;
    return EI_QW_F16;
}

/* Compiles a scenario file (with f16 weights when f16) into a temporary .eig. */
static void compile(const char *scenario, int f16, char *path) {
    ei_scenario sc;
    if (ei_scenario_load(&sc, scenario, NULL, 0) != 0) fail_msg("%s", ei_error_get());
    ei_opts o;
    ei_opts_default(&o);
    assert_int_equal(ei_scenario_apply_opts(&sc, &o, 0), 0);
    ei_eigw *w = ei_eigw_new();
    assert_int_equal(ei_eigw_set_config(w, &g_model->cfg), 0);
    ei_lower_spec spec = {g_model, g_gates, EI_MODE_EDGEINFINITE, o, sc.tokens_per_call, 0, f16 ? f16_scheme : NULL,
                          NULL, NULL};
    if (ei_lower(&spec, w) != 0) fail_msg("lower %s: %s", scenario, ei_error_get());
    strcpy(path, "/tmp/ei_nnapi_XXXXXX");
    int fd = mkstemp(path);
    close(fd);
    assert_int_equal(ei_eigw_write(w, path), 0);
    ei_eigw_free(w);
    ei_scenario_free(&sc);
}

/* Greedy continuation of a fixed prompt: the tokens and every logit row. */
static void generate(ei_runner *r, int32_t *toks, float *rows) {
    int32_t prompt[PROMPT];
    for (int i = 0; i < PROMPT; i++) prompt[i] = (int32_t)(1 + (i * 37 + 11) % (V - 1));
    ei_runner_reset(r);
    float *lg = rows;
    if (ei_runner_feed(r, prompt, PROMPT, NULL, NULL, NULL, lg) != 0) fail_msg("%s", ei_error_get());
    for (int t = 0; t < GEN; t++) {
        int best = 0;
        for (int j = 1; j < V; j++)
            if (lg[j] > lg[best]) best = j;
        toks[t] = best;
        lg += V;
        if (t + 1 < GEN && ei_runner_feed(r, &toks[t], 1, NULL, NULL, NULL, lg) != 0) fail_msg("%s", ei_error_get());
    }
}

static void compare(const char *scenario, int f16) {
    char path[64];
    compile(scenario, f16, path);
    int32_t ta[GEN], tb[GEN];
    float *ra = malloc(sizeof(float) * V * GEN), *rb = malloc(sizeof(float) * V * GEN);
    ei_runner *cpu = ei_runner_open(path, &(ei_runner_options){.backend = "cpu", .threads = 1});
    assert_non_null(cpu);
    generate(cpu, ta, ra);
    ei_runner_close(cpu);
    /* NNAPI, feature level 7: every graph on the fake accelerator */
    ei_runner *nn = ei_runner_open(path, &(ei_runner_options){.backend = "nnapi", .nnapi_lib = EI_FAKE_NNAPI_FL7,
                                                               .strict = 1, .relax_f16 = f16});
    if (!nn) fail_msg("%s: nnapi: %s", scenario, ei_error_get());
    assert_string_equal(ei_runner_backend(nn), "nnapi");
    int on_nn, on_cpu;
    ei_runner_nnapi_graphs(nn, &on_nn, &on_cpu);
    assert_true(on_nn >= 3 && on_cpu == 0);
    generate(nn, tb, rb);
    ei_runner_close(nn);
    assert_memory_equal(ta, tb, sizeof ta);
    const double tol = f16 ? 2e-2 : 1e-4;
    for (int t = 0; t < GEN; t++) {
        double scale = 1, e = 0;
        for (int j = 0; j < V; j++) scale = fmax(scale, fabs(ra[t * V + j]));
        for (int j = 0; j < V; j++) e = fmax(e, fabs(ra[t * V + j] - rb[t * V + j]));
        if (e > tol * scale) fail_msg("%s f16 %d: step %d logits differ by %.3g (scale %.3g)", scenario, f16, t, e, scale);
    }
    /* feature level 1: the graphs fall back to cpu (one notice each); strict refuses */
    ei_runner *old = ei_runner_open(path, &(ei_runner_options){.backend = "nnapi", .nnapi_lib = EI_FAKE_NNAPI_FL1});
    assert_non_null(old);
    ei_runner_nnapi_graphs(old, &on_nn, &on_cpu);
    assert_true(on_cpu >= 3);
    generate(old, tb, rb);
    assert_memory_equal(ta, tb, sizeof ta);
    ei_runner_close(old);
    assert_null(ei_runner_open(path, &(ei_runner_options){.backend = "nnapi", .nnapi_lib = EI_FAKE_NNAPI_FL1,
                                                         .strict = 1}));
    free(ra);
    free(rb);
    unlink(path);
}

static void test_scenarios_f32(void **s) {
    (void)s;
    compare(EI_SOURCE "/configs/scenarios/stories.yaml", 0);
    compare(EI_SOURCE "/configs/scenarios/chat.yaml", 0);
    compare(EI_SOURCE "/configs/scenarios/summarize.yaml", 0);
}

static void test_scenarios_f16(void **s) {
    (void)s;
    compare(EI_SOURCE "/configs/scenarios/stories.yaml", 1);
    compare(EI_SOURCE "/configs/scenarios/chat.yaml", 1);
    compare(EI_SOURCE "/configs/scenarios/summarize.yaml", 1);
}

/* No library: one notice and cpu; strict: an error. */
static void test_no_library(void **s) {
    (void)s;
    char path[64];
    compile(EI_SOURCE "/configs/scenarios/stories.yaml", 0, path);
    ei_runner *r = ei_runner_open(path, &(ei_runner_options){.backend = "nnapi", .nnapi_lib = "/nonexistent/libnn.so"});
    assert_non_null(r);
    assert_string_equal(ei_runner_backend(r), "cpu");
    ei_runner_close(r);
    assert_null(ei_runner_open(path, &(ei_runner_options){.backend = "nnapi", .nnapi_lib = "/nonexistent/libnn.so",
                                                         .strict = 1}));
    unlink(path);
}

static int setup(void **s) {
    (void)s;
    g_model = ei_model_load(STORIES_BIN);
    if (!g_model) return -1;
    g_gates = ei_gates_new(&g_model->cfg, EI_GATE_TOKEN, 0.0);
    for (size_t i = 0; i < g_gates->n; i++) g_gates->data[i] = (float)(0.6 * sin(0.21 * (double)i) - 0.2);
    return 0;
}

static int teardown(void **s) {
    (void)s;
    ei_gates_free(g_gates);
    ei_model_free(g_model);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenarios_f32),
        cmocka_unit_test(test_scenarios_f16),
        cmocka_unit_test(test_no_library),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
