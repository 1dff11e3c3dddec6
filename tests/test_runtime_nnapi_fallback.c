/* Falling back from nnapi to cpu (runtime/backend_open.c, nnapi_backend.c): no library
 * (EI_NNAPI_LIB=/nonexistent) gives the cpu backend after exactly one notice line, or an error when
 * strict; the library path comes from the option, else EI_NNAPI_LIB; a library that is not NNAPI
 * is named; a graph NNAPI cannot take (int16 activations, int4 weights, operations above the
 * runtime's level) runs on cpu after one notice naming the tensor or operation, or fails when
 * strict, while other graphs of the same backend stay on NNAPI; with fallback_f16 the int16 and
 * int4 graphs run on NNAPI in float16 (tolerance: float16 rounding of every tensor, stated below). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/test_runtime_cpu_util.h"

#include "tests/nnapi/nnapi_test_util.h"

static int contains(const char *s, const char *needle) {
    if (!strstr(s, needle)) fprintf(stderr, "'%s' not found in: %s\n", needle, s);
    return strstr(s, needle) != NULL;
}

static int setup(void **state) {
    (void)state;
    nt_env_clear();
    unsetenv("EI_NNAPI_LIB");
    return 0;
}

static void test_no_library(void **state) {
    (void)state;
    setenv("EI_NNAPI_LIB", "/nonexistent", 1);
    FILE *log = nt_log();
    ei_backend *b = ei_backend_open("nnapi", &(ei_backend_options){.log = log});
    assert_non_null(b);
    assert_string_equal(b->ops->name, "cpu");
    char text[2048];
    assert_int_equal(nt_log_lines(log, text, sizeof text), 1);
    assert_true(contains(text, "nnapi: cannot open /nonexistent"));
    assert_true(contains(text, "using the cpu backend"));
    tg t = nt_graph_basic(1); /* and it runs */
    ei_rng r;
    ei_rng_seed(&r, 1);
    void **bind = nt_bind(t.g);
    nt_fill_inputs(t.g, bind, &r, 10);
    nt_alloc_outputs(t.g, bind);
    assert_int_equal(nt_run(b, &t, bind, NULL), 0);
    nt_free_bind(t.g, bind);
    tg_free(&t);
    b->ops->destroy(b);
    assert_null(ei_backend_open("nnapi", &(ei_backend_options){.strict = 1, .log = log}));
    assert_true(contains(ei_error_get(), "/nonexistent"));
    assert_int_equal(nt_log_lines(log, text, sizeof text), 1); /* no second notice when strict */
    b = ei_backend_open("cpu", &(ei_backend_options){.log = log});
    assert_string_equal(b->ops->name, "cpu");
    b->ops->destroy(b);
    assert_int_equal(nt_log_lines(log, text, sizeof text), 1);
    assert_null(ei_backend_open("vulkan", NULL));
    assert_true(contains(ei_error_get(), "unknown backend 'vulkan'"));
    fclose(log);
    unsetenv("EI_NNAPI_LIB");
}

static void test_library_path(void **state) {
    (void)state;
    setenv("EI_NNAPI_LIB", NT_FL7, 1);
    ei_backend *b = ei_backend_open("nnapi", &(ei_backend_options){.strict = 1});
    assert_non_null(b);
    assert_string_equal(b->ops->name, "nnapi");
    b->ops->destroy(b);
    setenv("EI_NNAPI_LIB", "/nonexistent", 1); /* the option wins over the environment */
    b = ei_backend_open("nnapi", &(ei_backend_options){.strict = 1, .nnapi = {.lib = NT_FL1}});
    assert_non_null(b);
    assert_string_equal(b->ops->name, "nnapi");
    b->ops->destroy(b);
    unsetenv("EI_NNAPI_LIB");
    assert_null(ei_backend_nnapi_new(&(ei_nnapi_options){.lib = "libm.so.6"}));
    assert_true(contains(ei_error_get(), "libm.so.6 is not an NNAPI runtime: ANeuralNetworksMemory_createFromFd is missing"));
}

static void test_graph_fallback(void **state) {
    (void)state;
    FILE *log = nt_log();
    ei_backend *b = ei_backend_open("nnapi", &(ei_backend_options){.log = log, .nnapi = {.lib = NT_FL7}});
    assert_string_equal(b->ops->name, "nnapi");
    tg a = nt_graph_basic(2), h = nt_graph_int16(3), w = nt_graph_int4(4);
    ei_backend_exec *xa = b->ops->prepare(b, a.g, a.blob, a.size), *xh = b->ops->prepare(b, h.g, h.blob, h.size);
    ei_backend_exec *xw = b->ops->prepare(b, w.g, w.blob, w.size);
    assert_true(xa && xh && xw);
    ei_nnapi_exec_info ia, ih, iw;
    assert_int_equal(ei_backend_nnapi_exec_info(xa, &ia), 0);
    assert_int_equal(ei_backend_nnapi_exec_info(xh, &ih), 0);
    assert_int_equal(ei_backend_nnapi_exec_info(xw, &iw), 0);
    assert_int_equal(ia.on_cpu, 0);
    assert_int_equal(ih.on_cpu, 1);
    assert_int_equal(iw.on_cpu, 1);
    char text[4096];
    assert_int_equal(nt_log_lines(log, text, sizeof text), 2);
    assert_true(contains(text, "graph 'int16': tensor 0 'x16' is i16: NNAPI general operations take no int16 tensors"));
    assert_true(contains(text, "--nnapi-fallback f16 (fallback_f16)"));
    assert_true(contains(text, "'w4' is i4: NNAPI general operations take no int4 tensors"));
    /* the fallen-back graph gives exactly the cpu backend's outputs */
    ei_rng r;
    ei_rng_seed(&r, 5);
    void **got = nt_bind(h.g), **ref = nt_bind(h.g);
    nt_fill_inputs(h.g, got, &r, 1);
    for (int32_t i = 0; i < h.g->n_tensors; i++)
        if (h.g->tensors[i].kind == EI_GK_INPUT) ref[i] = got[i];
    nt_alloc_outputs(h.g, got);
    nt_alloc_outputs(h.g, ref);
    assert_int_equal(b->ops->execute(xh, got), 0);
    nt_cpu_ref(&h, ref);
    nt_compare(h.g, got, ref, 0, 0, 0, "int16 on the cpu fallback");
    for (int32_t i = 0; i < h.g->n_tensors; i++)
        if (h.g->tensors[i].kind == EI_GK_INPUT) ref[i] = NULL;
    nt_free_bind(h.g, got);
    nt_free_bind(h.g, ref);
    b->ops->release(xa);
    b->ops->release(xh);
    b->ops->release(xw);
    b->ops->destroy(b);
    /* strict: the same graph is an error naming the tensor */
    b = ei_backend_open("nnapi", &(ei_backend_options){.strict = 1, .log = log, .nnapi = {.lib = NT_FL7}});
    assert_null(b->ops->prepare(b, h.g, h.blob, h.size));
    assert_true(contains(ei_error_get(), "'x16' is i16"));
    b->ops->destroy(b);
    /* operations above the runtime's level: the rich graph on the level-1 library */
    tg rich = nt_graph_rich(6);
    b = ei_backend_open("nnapi", &(ei_backend_options){.log = log, .nnapi = {.lib = NT_FL1}});
    ei_backend_exec *x = b->ops->prepare(b, rich.g, rich.blob, rich.size);
    assert_non_null(x);
    assert_int_equal(nt_log_lines(log, text, sizeof text), 3);
    assert_true(contains(text, "graph 'rich': node"));
    assert_true(contains(text, "needs NNAPI feature level"));
    b->ops->release(x);
    b->ops->destroy(b);
    fclose(log);
    tg_free(&a);
    tg_free(&h);
    tg_free(&w);
    tg_free(&rich);
}

/* fallback_f16: the int16 / int4 graphs in float16 on NNAPI. Every tensor is rounded to float16
 * (relative 2^-11) instead of to its int16 grid, so outputs agree with the cpu backend within
 * 4e-3 relative + 4 int16 steps (int16 outputs) and 2e-2 absolute (the int4 layer of 32 terms). */
static void test_fallback_f16(void **state) {
    (void)state;
    nt_fake f = nt_fake_open(NT_FL7);
    tg h = nt_graph_int16(7), w = nt_graph_int4(8);
    ei_nnapi_options o = {.lib = NT_FL7, .strict = 1, .fallback_f16 = 1};
    ei_backend *b = ei_backend_nnapi_new(&o);
    assert_non_null(b);
    for (int g = 0; g < 2; g++) {
        const tg *t = g ? &w : &h;
        ei_rng r;
        ei_rng_seed(&r, 9 + (uint64_t)g);
        void **got = nt_bind(t->g), **ref = nt_bind(t->g);
        nt_fill_inputs(t->g, got, &r, 1);
        for (int32_t i = 0; i < t->g->n_tensors; i++)
            if (t->g->tensors[i].kind == EI_GK_INPUT) ref[i] = got[i];
        nt_alloc_outputs(t->g, got);
        nt_alloc_outputs(t->g, ref);
        ei_nnapi_exec_info info;
        int rc = nt_run(b, t, got, &info);
        if (rc) fprintf(stderr, "%s\n", ei_error_get());
        assert_int_equal(rc, 0);
        assert_int_equal(info.on_cpu, 0);
        assert_int_equal(info.f16_mode, 1);
        nt_cpu_ref(t, ref);
        for (int32_t i = 0; i < t->g->n_tensors; i++) {
            const ei_gtensor *x = &t->g->tensors[i];
            if (x->kind != EI_GK_OUTPUT) continue;
            for (int64_t k = 0; k < ei_gtensor_numel(x); k++) {
                double a, c, tol;
                if (x->type == EI_GT_I16) {
                    a = ((int16_t *)got[i])[k] * (double)x->q.scale, c = ((int16_t *)ref[i])[k] * (double)x->q.scale;
                    tol = 4e-3 * fabs(c) + 4 * x->q.scale;
                } else {
                    a = ((float *)got[i])[k], c = ((float *)ref[i])[k];
                    tol = g ? 2e-2 : 4e-3 * fabs(c) + 4.0 / 32768;
                }
                if (!(fabs(a - c) <= tol)) {
                    fprintf(stderr, "%s: %s[%lld]: nnapi %.6g cpu %.6g\n", t->g->name, x->name, (long long)k, a, c);
                    fail();
                }
            }
        }
        for (int32_t i = 0; i < t->g->n_tensors; i++)
            if (t->g->tensors[i].kind == EI_GK_INPUT) ref[i] = NULL;
        nt_free_bind(t->g, got);
        nt_free_bind(t->g, ref);
    }
    /* the int16 input and output are converted through the staging memory */
    ei_fake_nnapi_stats s = nt_stats(&f);
    assert_int_equal(s.inputs_from_memory, 2);
    assert_int_equal(s.outputs_from_memory, 3);
    b->ops->destroy(b);
    nt_fake_close(&f);
    tg_free(&h);
    tg_free(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_no_library, setup),
        cmocka_unit_test_setup(test_library_path, setup),
        cmocka_unit_test_setup(test_graph_fallback, setup),
        cmocka_unit_test_setup(test_fallback_f16, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
