/* The nnapi backend on the NNAPI conformance libraries (tests/nnapi): hand-built IR graphs (float32,
 * float32 relaxed to float16, int8 with per-tensor activations and per-channel or per-tensor
 * weights) give the cpu backend's outputs at every feature level of the level-7 library (1..7,
 * through EI_FAKE_NNAPI_FEATURE_LEVEL) and on the level-1 library, whose missing functions the
 * loader detects; constants come from the mapped blob file; state bound through
 * ei_backend_nnapi_alloc memory is not copied and the execution is reused; compilation caching
 * hits; NNAPI failures are reported naming the call, the operation and the code; the support
 * report lists what the accelerator does not take.
 *
 * Tolerances (cpu vs nnapi): float32 1e-5 relative + 1e-5 absolute (summation order and exp
 * implementations differ); relaxed float16 2e-2 + 2e-2 (the library rounds every float32 result to
 * float16); int8 one quantisation step (float vs double requantisation at a rounding tie). These
 * are conformance results of a reference library on Linux, not accelerator measurements. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/test_runtime_cpu_util.h"

#include "runtime/nnapi_internal.h"
#include "tests/nnapi/nnapi_test_util.h"

#include <dirent.h>

#define F32_TOL 1e-5, 1e-5, 0
#define F16_TOL 2e-2, 2e-2, 0
#define Q8_TOL 1e-5, 1e-5, 1

static ei_nnapi_options strict_opts(const char *lib) { return (ei_nnapi_options){.lib = lib, .strict = 1}; }

static int contains(const char *s, const char *needle) {
    if (!strstr(s, needle)) fprintf(stderr, "'%s' not found in: %s\n", needle, s);
    return strstr(s, needle) != NULL;
}

static int setup(void **state) {
    (void)state;
    nt_env_clear();
    return 0;
}

/* ---------------------------------------------------------------- float32 */
static void test_basic_every_level(void **state) {
    (void)state;
    tg t = nt_graph_basic(1);
    char blob[256];
    uint64_t off;
    nt_blob_file(&t, blob, sizeof blob, &off);
    nt_fake f = nt_fake_open(NT_FL7);
    for (int fl = 7; fl >= 1; fl--) {
        nt_level(fl);
        f.reset();
        ei_nnapi_options o = strict_opts(NT_FL7);
        o.blob_path = blob, o.blob_offset = off;
        ei_nnapi_exec_info info;
        char what[64];
        snprintf(what, sizeof what, "basic, level-7 library at level %d", fl);
        nt_vs_cpu(&t, o, 100 + (uint64_t)fl, 10, F32_TOL, &info, what);
        ei_fake_nnapi_stats s = nt_stats(&f);
        assert_int_equal(info.on_cpu, 0);
        assert_int_equal(info.feature_level, fl);
        assert_true(info.consts_from_memory >= 2); /* w1 and emb are longer than 128 bytes */
        assert_true(s.values_from_memory >= 2);
        if (fl >= 3) {
            assert_string_equal(info.device, "ei-fake-npu");
            assert_int_equal(s.compilations_for_devices, 1);
            assert_int_equal(info.burst, 1);
            assert_int_equal(s.burst_computes, 1);
        } else {
            assert_null(info.device);
            assert_int_equal(s.compilations_default, 1);
            assert_int_equal(s.start_computes, 1);
        }
        assert_int_equal(info.reusable, fl >= 5);
        assert_int_equal(s.last_preference, ANEURALNETWORKS_PREFER_SUSTAINED_SPEED);
    }
    nt_level(0);
    nt_fake_close(&f);
    unlink(blob);
    tg_free(&t);
}

static void test_basic_level1_library(void **state) {
    (void)state;
    tg t = nt_graph_basic(2);
    nt_fake f = nt_fake_open(NT_FL1);
    ei_nnapi_exec_info info;
    nt_vs_cpu(&t, strict_opts(NT_FL1), 7, 10, F32_TOL, &info, "basic, level-1 library");
    ei_fake_nnapi_stats s = nt_stats(&f);
    assert_int_equal(info.on_cpu, 0);
    assert_int_equal(info.feature_level, 1);
    assert_null(info.device);
    assert_int_equal(info.burst, 0);
    assert_int_equal(s.start_computes, 1);
    assert_int_equal(s.compilations_default, 1);
    /* the identity matrices of the level-1 transposes are derived constants, passed by pointer */
    assert_true(info.consts_by_pointer >= 1);
    nt_fake_close(&f);
    tg_free(&t);
}

static void test_rich_levels(void **state) {
    (void)state;
    tg t = nt_graph_rich(3);
    int levels[] = {7, 6, 5, 4, 3};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        nt_level(levels[i]);
        ei_nnapi_exec_info info;
        char what[64];
        snprintf(what, sizeof what, "rich at level %d", levels[i]);
        nt_vs_cpu(&t, strict_opts(NT_FL7), 9, 10, F32_TOL, &info, what);
        assert_int_equal(info.on_cpu, 0);
        assert_int_equal(info.feature_level, levels[i]);
    }
    /* level 2 has no SELECT, CAST, EXP, float16...: refused (strict), naming an op and the level */
    nt_level(2);
    ei_backend *b = ei_backend_nnapi_new(&(ei_nnapi_options){.lib = NT_FL7, .strict = 1});
    assert_non_null(b);
    assert_null(b->ops->prepare(b, t.g, t.blob, t.size));
    assert_true(contains(ei_error_get(), "graph 'rich': node"));
    assert_true(contains(ei_error_get(), "feature level"));
    b->ops->destroy(b);
    nt_level(0);
    b = ei_backend_nnapi_new(&(ei_nnapi_options){.lib = NT_FL1, .strict = 1});
    assert_non_null(b);
    assert_null(b->ops->prepare(b, t.g, t.blob, t.size));
    assert_true(contains(ei_error_get(), "the target has level 1"));
    b->ops->destroy(b);
    tg_free(&t);
}

static void test_relaxed(void **state) {
    (void)state;
    nt_fake f = nt_fake_open(NT_FL7);
    tg t = nt_graph_basic(4), r = nt_graph_rich(5);
    ei_nnapi_options o = strict_opts(NT_FL7);
    o.relax_f16 = 1;
    ei_nnapi_exec_info info;
    nt_vs_cpu(&t, o, 11, 10, F16_TOL, &info, "basic relaxed");
    assert_int_equal(info.relaxed, 1);
    nt_vs_cpu(&r, o, 12, 10, F16_TOL, &info, "rich relaxed");
    assert_int_equal(info.relaxed, 1);
    assert_int_equal(nt_stats(&f).relaxed_models, 2);
    nt_fake_close(&f);
    /* level 1 has no relaxation: the option is ignored and float32 results come back */
    o.lib = NT_FL1;
    nt_vs_cpu(&t, o, 13, 10, F32_TOL, &info, "basic relaxed on level 1");
    assert_int_equal(info.relaxed, 0);
    tg_free(&t);
    tg_free(&r);
}

/* ---------------------------------------------------------------- int8 */
static void test_int8(void **state) {
    (void)state;
    tg ch = nt_graph_int8(6, 0), pt = nt_graph_int8(7, 1);
    int levels[] = {7, 4, 3};
    for (size_t i = 0; i < 3; i++) {
        nt_level(levels[i]);
        ei_nnapi_exec_info info;
        char what[64];
        snprintf(what, sizeof what, "int8 per-channel at level %d", levels[i]);
        nt_vs_cpu(&ch, strict_opts(NT_FL7), 21, 10, Q8_TOL, &info, what);
        assert_int_equal(info.on_cpu, 0);
        assert_int_equal(info.i8_emulated, levels[i] < 4);
        snprintf(what, sizeof what, "int8 per-tensor at level %d", levels[i]);
        nt_vs_cpu(&pt, strict_opts(NT_FL7), 22, 10, Q8_TOL, &info, what);
        assert_int_equal(info.on_cpu, 0);
    }
    nt_level(0);
    /* level 1: int8 as uint8 with zero point + 128, per-tensor weights through FULLY_CONNECTED */
    ei_nnapi_exec_info info;
    nt_vs_cpu(&pt, strict_opts(NT_FL1), 23, 10, Q8_TOL, &info, "int8 per-tensor, level-1 library");
    assert_int_equal(info.i8_emulated, 1);
    /* per-channel weights need level 3 (TENSOR_QUANT8_SYMM_PER_CHANNEL) */
    ei_backend *b = ei_backend_nnapi_new(&(ei_nnapi_options){.lib = NT_FL1, .strict = 1});
    assert_non_null(b);
    assert_null(b->ops->prepare(b, ch.g, ch.blob, ch.size));
    assert_true(contains(ei_error_get(), "per-channel int8 weights"));
    assert_true(contains(ei_error_get(), "feature level 3"));
    b->ops->destroy(b);
    tg_free(&ch);
    tg_free(&pt);
}

/* ---------------------------------------------------------------- memory */
static void test_constants_by_pointer(void **state) {
    (void)state;
    nt_fake f = nt_fake_open(NT_FL7);
    tg t = nt_graph_basic(8);
    ei_nnapi_exec_info info;
    nt_vs_cpu(&t, strict_opts(NT_FL7), 31, 10, F32_TOL, &info, "basic without a blob file");
    assert_int_equal(info.consts_from_memory, 0);
    assert_true(info.consts_by_pointer >= 2);
    assert_int_equal(nt_stats(&f).values_from_memory, 0);
    assert_true(nt_stats(&f).values_by_pointer >= 2);
    /* a file that does not hold the blob at the offset given is caught before it is used */
    char blob[256];
    uint64_t off;
    nt_blob_file(&t, blob, sizeof blob, &off);
    ei_nnapi_options o = strict_opts(NT_FL7);
    o.blob_path = blob, o.blob_offset = 0;
    ei_backend *b = ei_backend_nnapi_new(&o);
    assert_non_null(b);
    assert_null(b->ops->prepare(b, t.g, t.blob, t.size));
    assert_true(contains(ei_error_get(), "does not hold the constant blob"));
    b->ops->destroy(b);
    unlink(blob);
    nt_fake_close(&f);
    tg_free(&t);
}

static void test_state_in_nnapi_memory(void **state) {
    (void)state;
    nt_fake f = nt_fake_open(NT_FL7);
    tg t = nt_graph_basic(9);
    ei_backend *b = ei_backend_nnapi_new(&(ei_nnapi_options){.lib = NT_FL7, .strict = 1});
    assert_non_null(b);
    void **bind = nt_bind(t.g), **ref = nt_bind(t.g);
    for (int32_t i = 0; i < t.g->n_tensors; i++) {
        const ei_gtensor *x = &t.g->tensors[i];
        if (x->kind != EI_GK_INPUT && x->kind != EI_GK_OUTPUT) continue;
        assert_non_null(bind[i] = ei_backend_nnapi_alloc(b, ei_gtensor_bytes(x)));
        if (x->kind == EI_GK_INPUT) ref[i] = bind[i];
    }
    nt_alloc_outputs(t.g, ref);
    ei_backend_exec *x = b->ops->prepare(b, t.g, t.blob, t.size);
    assert_non_null(x);
    f.reset();
    ei_rng r;
    ei_rng_seed(&r, 41);
    for (int run = 0; run < 3; run++) { /* new contents each time, the same buffers */
        nt_fill_inputs(t.g, bind, &r, 10);
        assert_int_equal(b->ops->execute(x, bind), 0);
        nt_cpu_ref(&t, ref);
        nt_compare(t.g, bind, ref, F32_TOL, "state in nnapi memory");
    }
    ei_nnapi_exec_info info;
    assert_int_equal(ei_backend_nnapi_exec_info(x, &info), 0);
    assert_int_equal(info.inputs_from_memory, 4);
    assert_int_equal(info.outputs_from_memory, 2);
    ei_fake_nnapi_stats s = nt_stats(&f);
    assert_int_equal(s.executions, 1); /* level 5: one reusable execution for the three runs */
    assert_int_equal(s.reusable_executions, 1);
    assert_int_equal(s.inputs_from_memory, 4);
    assert_int_equal(s.inputs_by_pointer, 0);
    assert_int_equal(s.outputs_from_memory, 2);
    assert_int_equal(s.burst_computes, 3);
    b->ops->release(x);
    for (int32_t i = 0; i < t.g->n_tensors; i++) {
        if (bind[i]) ei_backend_nnapi_free(b, bind[i]);
        if (t.g->tensors[i].kind == EI_GK_INPUT) ref[i] = NULL;
        bind[i] = NULL;
    }
    free(bind);
    nt_free_bind(t.g, ref);
    b->ops->destroy(b);
    nt_fake_close(&f);
    tg_free(&t);
}

static void test_plain_bindings_and_int8_staging(void **state) {
    (void)state;
    /* caller memory bound by pointer; emulated int8 staged through nnapi memory at level 3 */
    nt_fake f = nt_fake_open(NT_FL7);
    tg t = nt_graph_int8(10, 0);
    nt_level(3);
    ei_nnapi_exec_info info;
    nt_vs_cpu(&t, strict_opts(NT_FL7), 51, 10, Q8_TOL, &info, "int8 staged");
    ei_fake_nnapi_stats s = nt_stats(&f);
    assert_int_equal(s.inputs_from_memory, 1);  /* xq, flipped into the staging memory */
    assert_int_equal(s.outputs_from_memory, 4); /* y, mu, cc, rs: every int8 output is staged too */
    assert_int_equal(s.outputs_by_pointer, 1);  /* dq, float32, straight into caller memory */
    nt_level(0);
    nt_fake_close(&f);
    tg_free(&t);
}

/* ---------------------------------------------------------------- caching */
static void clean_dir(const char *dir) {
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static void test_caching(void **state) {
    (void)state;
    char dir[256];
    nt_tmp_path(dir, sizeof dir, "cache");
    assert_non_null(mkdtemp(dir));
    nt_fake f = nt_fake_open(NT_FL7);
    tg a = nt_graph_basic(11), c = nt_graph_rich(12);
    ei_nnapi_options o = strict_opts(NT_FL7);
    o.cache_dir = dir;
    nt_vs_cpu(&a, o, 61, 10, F32_TOL, NULL, "cached 1");
    ei_fake_nnapi_stats s = nt_stats(&f);
    assert_int_equal(s.caching, 1);
    assert_int_equal(s.cache_writes, 1);
    assert_int_equal(s.cache_hits, 0);
    nt_vs_cpu(&a, o, 62, 10, F32_TOL, NULL, "cached 2");
    assert_int_equal(nt_stats(&f).cache_hits, 1);
    nt_vs_cpu(&c, o, 63, 10, F32_TOL, NULL, "another graph"); /* another token */
    assert_int_equal(nt_stats(&f).cache_writes, 2);
    o.relax_f16 = 1; /* another compilation of the same graph */
    nt_vs_cpu(&a, o, 64, 10, F16_TOL, NULL, "relaxed");
    assert_int_equal(nt_stats(&f).cache_writes, 3);
    o.relax_f16 = 0, o.blob_hash = 0x1234; /* the runner's checksum stands in for hashing the blob */
    nt_vs_cpu(&a, o, 65, 10, F32_TOL, NULL, "given hash");
    assert_int_equal(nt_stats(&f).cache_writes, 4);
    nt_fake_close(&f);
    clean_dir(dir);
    tg_free(&a);
    tg_free(&c);
}

/* ---------------------------------------------------------------- errors */
static void test_errors_name_call_operation_code(void **state) {
    (void)state;
    tg t = nt_graph_basic(13);
    ei_backend *b = ei_backend_nnapi_new(&(ei_nnapi_options){.lib = NT_FL7, .strict = 1});
    assert_non_null(b);
    setenv("EI_FAKE_NNAPI_FAIL", "ANeuralNetworksModel_addOperation:3:4", 1);
    assert_null(b->ops->prepare(b, t.g, t.blob, t.size));
    const char *e = ei_error_get();
    assert_true(contains(e, "graph 'basic': node"));
    assert_true(contains(e, "NNAPI operation 2"));
    assert_true(contains(e, "ANeuralNetworksModel_addOperation failed"));
    assert_true(contains(e, "ANEURALNETWORKS_BAD_DATA"));
    setenv("EI_FAKE_NNAPI_FAIL", "ANeuralNetworksCompilation_finish:1:9", 1);
    assert_null(b->ops->prepare(b, t.g, t.blob, t.size));
    assert_true(contains(ei_error_get(), "ANeuralNetworksCompilation_finish"));
    assert_true(contains(ei_error_get(), "ANEURALNETWORKS_UNAVAILABLE_DEVICE"));
    unsetenv("EI_FAKE_NNAPI_FAIL");
    ei_backend_exec *x = b->ops->prepare(b, t.g, t.blob, t.size);
    assert_non_null(x);
    ei_rng r;
    ei_rng_seed(&r, 71);
    void **bind = nt_bind(t.g);
    nt_fill_inputs(t.g, bind, &r, 10);
    nt_alloc_outputs(t.g, bind);
    setenv("EI_FAKE_NNAPI_FAIL", "ANeuralNetworksExecution_burstCompute:1:5", 1);
    assert_int_equal(b->ops->execute(x, bind), -1);
    assert_true(contains(ei_error_get(), "ANeuralNetworksExecution_burstCompute"));
    assert_true(contains(ei_error_get(), "ANEURALNETWORKS_OP_FAILED"));
    unsetenv("EI_FAKE_NNAPI_FAIL");
    assert_int_equal(b->ops->execute(x, bind), 0); /* the failed execution is not reused */
    /* data only the run can check: an index out of range fails inside NNAPI */
    int32_t ids = ei_graph_find(t.g, "ids");
    ((int32_t *)bind[ids])[2] = 50;
    assert_int_equal(b->ops->execute(x, bind), -1);
    assert_true(contains(ei_error_get(), "ANEURALNETWORKS_OP_FAILED"));
    b->ops->release(x);
    nt_free_bind(t.g, bind);
    /* a genuine rejection: the runtime reported level 7 when the backend was created and enforces
     * level 5 now, so the BATCH_MATMUL the backend emits is refused by the library */
    nt_level(5);
    assert_null(b->ops->prepare(b, t.g, t.blob, t.size));
    e = ei_error_get();
    assert_true(contains(e, "node 2 (BATCH_MATMUL): NNAPI operation 2 (BATCH_MATMUL): ANeuralNetworksModel_addOperation "
                            "failed: ANEURALNETWORKS_BAD_DATA (4)"));
    tg q = nt_graph_int8(20, 0);
    nt_level(2); /* and the per-channel operand type of level 3 */
    assert_null(b->ops->prepare(b, q.g, q.blob, q.size));
    assert_true(contains(ei_error_get(), "ANeuralNetworksModel_addOperand failed: ANEURALNETWORKS_BAD_DATA"));
    nt_level(0);
    tg_free(&q);
    b->ops->destroy(b);
    /* level 1: startCompute + Event_wait */
    b = ei_backend_nnapi_new(&(ei_nnapi_options){.lib = NT_FL1, .strict = 1});
    assert_non_null(x = b->ops->prepare(b, t.g, t.blob, t.size));
    bind = nt_bind(t.g);
    nt_fill_inputs(t.g, bind, &r, 10);
    nt_alloc_outputs(t.g, bind);
    setenv("EI_FAKE_NNAPI_FAIL", "ANeuralNetworksEvent_wait:1:5", 1);
    assert_int_equal(b->ops->execute(x, bind), -1);
    assert_true(contains(ei_error_get(), "ANeuralNetworksEvent_wait"));
    unsetenv("EI_FAKE_NNAPI_FAIL");
    b->ops->release(x);
    b->ops->destroy(b);
    nt_free_bind(t.g, bind);
    tg_free(&t);
}

static void test_nonstrict_api_failure_falls_back(void **state) {
    (void)state;
    tg t = nt_graph_basic(14);
    FILE *log = nt_log();
    setenv("EI_FAKE_NNAPI_FAIL", "ANeuralNetworksModel_addOperand:5:1", 1);
    ei_nnapi_options o = {.lib = NT_FL7, .log = log};
    ei_nnapi_exec_info info;
    nt_vs_cpu(&t, o, 81, 10, 0, 0, 0, &info, "fallback"); /* the cpu backend itself: identical */
    unsetenv("EI_FAKE_NNAPI_FAIL");
    assert_int_equal(info.on_cpu, 1);
    char text[2048];
    assert_int_equal(nt_log_lines(log, text, sizeof text), 1);
    assert_true(contains(text, "ANeuralNetworksModel_addOperand failed: ANEURALNETWORKS_OUT_OF_MEMORY"));
    assert_true(contains(text, "running it on the cpu backend"));
    fclose(log);
    tg_free(&t);
}

/* ---------------------------------------------------------------- devices, report */
static void test_devices(void **state) {
    (void)state;
    nt_fake f = nt_fake_open(NT_FL7);
    tg t = nt_graph_basic(15);
    ei_nnapi_options o = strict_opts(NT_FL7);
    ei_nnapi_exec_info info;
    o.device = "nnapi-reference";
    nt_vs_cpu(&t, o, 91, 10, F32_TOL, &info, "forced device");
    assert_string_equal(info.device, "nnapi-reference");
    o.device = "nope";
    assert_null(ei_backend_nnapi_new(&o));
    assert_true(contains(ei_error_get(), "no device 'nope' (nnapi-reference, ei-fake-npu)"));
    o.device = NULL;
    setenv("EI_FAKE_NNAPI_NO_NPU", "1", 1); /* no accelerator: the runtime chooses */
    f.reset();
    nt_vs_cpu(&t, o, 92, 10, F32_TOL, &info, "no accelerator");
    assert_null(info.device);
    assert_int_equal(nt_stats(&f).compilations_default, 1);
    unsetenv("EI_FAKE_NNAPI_NO_NPU");
    setenv("EI_FAKE_NPU_FEATURE_LEVEL", "5", 1); /* an older accelerator: lowered for its level */
    nt_vs_cpu(&t, o, 93, 10, F32_TOL, &info, "level-5 accelerator");
    assert_int_equal(info.feature_level, 5);
    unsetenv("EI_FAKE_NPU_FEATURE_LEVEL");
    o.max_feature_level = 4, o.no_burst = 1; /* the cap applies to the lowering and the calls */
    f.reset();
    nt_vs_cpu(&t, o, 94, 10, F32_TOL, &info, "capped at level 4, no burst");
    assert_int_equal(info.feature_level, 4);
    assert_int_equal(info.burst, 0);
    assert_int_equal(info.reusable, 0);
    assert_int_equal(nt_stats(&f).computes, 1);
    assert_int_equal(nt_stats(&f).bursts, 0);
    nt_fake_close(&f);
    tg_free(&t);
}

static void test_partial_support(void **state) {
    (void)state;
    nt_fake f = nt_fake_open(NT_FL7);
    tg t = nt_graph_basic(16);
    setenv("EI_FAKE_NPU_UNSUPPORTED", "LOGISTIC,GATHER", 1);
    FILE *out = nt_log();
    assert_int_equal(ei_nnapi_report(t.g, t.blob, t.size, &(ei_nnapi_options){.lib = NT_FL7}, out), 2);
    char text[8192];
    nt_log_lines(out, text, sizeof text);
    assert_true(contains(text, "device 1: ei-fake-npu (accelerator, version ei-fake-1, feature level 7)  <- chosen"));
    assert_true(contains(text, "LOGISTIC (node 5 LOGISTIC) does not run on ei-fake-npu"));
    assert_true(contains(text, "GATHER (node 7 GATHER) does not run on ei-fake-npu"));
    assert_true(contains(text, "the graph runs on the cpu backend"));
    fclose(out);
    /* prepare: cpu with a notice, or an error when strict, or NNAPI's partitioning when asked */
    FILE *log = nt_log();
    ei_nnapi_exec_info info;
    nt_vs_cpu(&t, (ei_nnapi_options){.lib = NT_FL7, .log = log}, 101, 10, 0, 0, 0, &info, "partial -> cpu");
    assert_int_equal(info.on_cpu, 1);
    assert_int_equal(nt_log_lines(log, text, sizeof text), 1);
    assert_true(contains(text, "ei-fake-npu does not take 2 of"));
    fclose(log);
    ei_backend *b = ei_backend_nnapi_new(&(ei_nnapi_options){.lib = NT_FL7, .strict = 1});
    assert_null(b->ops->prepare(b, t.g, t.blob, t.size));
    assert_true(contains(ei_error_get(), "first: operation"));
    b->ops->destroy(b);
    log = nt_log();
    f.reset();
    nt_vs_cpu(&t, (ei_nnapi_options){.lib = NT_FL7, .strict = 1, .partition = 1, .log = log}, 102, 10, F32_TOL, &info,
              "partitioned");
    assert_int_equal(info.on_cpu, 0);
    assert_int_equal(nt_stats(&f).last_devices, 2);
    assert_int_equal(nt_log_lines(log, text, sizeof text), 1);
    fclose(log);
    unsetenv("EI_FAKE_NPU_UNSUPPORTED");
    nt_fake_close(&f);
    tg_free(&t);
}

static void test_report_levels(void **state) {
    (void)state;
    tg t = nt_graph_basic(17), r = nt_graph_rich(18), q = nt_graph_int8(19, 1);
    char text[8192];
    FILE *out = nt_log();
    assert_int_equal(ei_nnapi_report(t.g, t.blob, t.size, &(ei_nnapi_options){.lib = NT_FL1}, out), 0);
    nt_log_lines(out, text, sizeof text);
    assert_true(contains(text, "runtime feature level 1 (code 27, inferred from its symbols)"));
    assert_true(contains(text, "BATCH_MATMUL as EMBEDDING_LOOKUP + 2 x FULLY_CONNECTED + CONCATENATION with identity FULLY_CONNECTED transposes (feature level 1 < 6)"));
    assert_true(contains(text, "GATHER as EMBEDDING_LOOKUP"));
    assert_true(contains(text, "SOFTMAX of rank 3"));
    assert_true(contains(text, "which operations a device takes is unknown"));
    fclose(out);
    out = nt_log();
    assert_int_equal(ei_nnapi_report(r.g, r.blob, r.size, &(ei_nnapi_options){.lib = NT_FL1}, out), -1);
    nt_log_lines(out, text, sizeof text);
    assert_true(contains(text, "not expressible in NNAPI at this feature level"));
    fclose(out);
    out = nt_log();
    nt_level(3);
    assert_int_equal(ei_nnapi_report(r.g, r.blob, r.size, &(ei_nnapi_options){.lib = NT_FL7}, out), 0);
    assert_int_equal(ei_nnapi_report(q.g, q.blob, q.size, &(ei_nnapi_options){.lib = NT_FL7}, out), 0);
    nt_level(0);
    nt_log_lines(out, text, sizeof text);
    assert_true(contains(text, "ELU as max(x,0) + alpha*(exp(min(x,0)) - 1)"));
    assert_true(contains(text, "BATCH_MATMUL as SPLIT + 2 x FULLY_CONNECTED + CONCATENATION after TRANSPOSE"));
    assert_true(contains(text, "int8 tensors run as TENSOR_QUANT8_ASYMM with zero point + 128"));
    fclose(out);
    tg_free(&t);
    tg_free(&r);
    tg_free(&q);
}

/* ---------------------------------------------------------------- loader */
static void test_feature_detection(void **state) {
    (void)state;
    ei_nn_api a;
    assert_int_equal(ei_nn_load(&a, NT_FL1, 0), 0);
    assert_int_equal(a.fl, 1);
    assert_int_equal(a.fl_inferred, 1);
    assert_null(a.getDeviceCount);
    assert_null(a.Execution_compute);
    assert_null(a.Model_relaxComputationFloat32toFloat16);
    assert_non_null(a.Execution_startCompute);
    ei_nn_unload(&a);
    assert_int_equal(ei_nn_load(&a, NT_FL7, 0), 0);
    assert_int_equal(a.fl, 7);
    assert_int_equal(a.fl_code, ANEURALNETWORKS_FEATURE_LEVEL_7);
    assert_int_equal(a.fl_inferred, 0);
    assert_non_null(a.Execution_setReusable);
    ei_nn_device *d;
    int n;
    assert_int_equal(ei_nn_devices(&a, &d, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(d[1].name, "ei-fake-npu");
    assert_int_equal(d[1].type, ANEURALNETWORKS_DEVICE_ACCELERATOR);
    assert_int_equal(d[1].fl, 7);
    free(d);
    ei_nn_unload(&a);
    nt_level(3); /* a level-3 runtime: functions of levels 4+ cleared although they resolve */
    assert_int_equal(ei_nn_load(&a, NT_FL7, 0), 0);
    assert_int_equal(a.fl, 3);
    assert_null(a.Execution_setReusable);
    assert_null(a.Compilation_setPriority);
    assert_non_null(a.Execution_compute);
    ei_nn_unload(&a);
    nt_level(0);
    assert_int_equal(ei_nn_load(&a, NT_FL7, 2), 0); /* max_feature_level */
    assert_int_equal(a.fl, 2);
    assert_int_equal(a.fl_runtime, 7);
    assert_non_null(a.Model_relaxComputationFloat32toFloat16);
    assert_null(a.Execution_compute);
    ei_nn_unload(&a);
    assert_int_equal(ei_nn_load(&a, "/nonexistent/libneuralnetworks.so", 0), -1);
    assert_true(contains(ei_error_get(), "cannot open /nonexistent/libneuralnetworks.so"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_basic_every_level, setup),
        cmocka_unit_test_setup(test_basic_level1_library, setup),
        cmocka_unit_test_setup(test_rich_levels, setup),
        cmocka_unit_test_setup(test_relaxed, setup),
        cmocka_unit_test_setup(test_int8, setup),
        cmocka_unit_test_setup(test_constants_by_pointer, setup),
        cmocka_unit_test_setup(test_state_in_nnapi_memory, setup),
        cmocka_unit_test_setup(test_plain_bindings_and_int8_staging, setup),
        cmocka_unit_test_setup(test_caching, setup),
        cmocka_unit_test_setup(test_errors_name_call_operation_code, setup),
        cmocka_unit_test_setup(test_nonstrict_api_failure_falls_back, setup),
        cmocka_unit_test_setup(test_devices, setup),
        cmocka_unit_test_setup(test_partial_support, setup),
        cmocka_unit_test_setup(test_report_levels, setup),
        cmocka_unit_test_setup(test_feature_detection, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
