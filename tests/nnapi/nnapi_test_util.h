/* Helpers of the nnapi backend tests (tests/test_runtime_nnapi*.c): where the two conformance
 * libraries are, their test hooks, the small hand-built IR graphs run on both backends, random
 * inputs, and the comparison of a graph's outputs between the cpu backend and the nnapi backend.
 * Include after cmocka.h and tests/test_runtime_cpu_util.h. */
#ifndef EI_TESTS_NNAPI_TEST_UTIL_H
#define EI_TESTS_NNAPI_TEST_UTIL_H

#include "runtime/backend.h"
#include "tests/nnapi/fake_nnapi_hooks.h"

#include <dlfcn.h>
#include <unistd.h>

#ifndef EI_FAKE_NNAPI_FL7
#error "EI_FAKE_NNAPI_FL7 (path of the level-7 conformance library) is set by tests/nnapi/CMakeLists.txt"
#endif

static const char *const NT_FL7 = EI_FAKE_NNAPI_FL7;
static const char *const NT_FL1 = EI_FAKE_NNAPI_FL1;

/* ---------------------------------------------------------------- the library's hooks */
typedef struct {
    void *dl;
    ei_fake_nnapi_get_stats_fn stats;
    ei_fake_nnapi_reset_stats_fn reset;
    ei_fake_nnapi_last_error_fn last_error;
} nt_fake;

/* Opening the same path as the backend gives the same instance (and keeps it loaded). */
static inline nt_fake nt_fake_open(const char *path) {
    nt_fake f = {dlopen(path, RTLD_NOW | RTLD_LOCAL), NULL, NULL, NULL};
    assert_non_null(f.dl);
    void *a = dlsym(f.dl, "ei_fake_nnapi_get_stats"), *b = dlsym(f.dl, "ei_fake_nnapi_reset_stats"),
         *c = dlsym(f.dl, "ei_fake_nnapi_last_error");
    assert_true(a && b && c);
    memcpy(&f.stats, &a, sizeof a), memcpy(&f.reset, &b, sizeof b), memcpy(&f.last_error, &c, sizeof c);
    f.reset();
    return f;
}

static inline ei_fake_nnapi_stats nt_stats(const nt_fake *f) {
    ei_fake_nnapi_stats s;
    f->stats(&s);
    return s;
}

static inline void nt_fake_close(nt_fake *f) {
    if (f->dl) dlclose(f->dl);
    memset(f, 0, sizeof *f);
}

/* The fake's feature level for the next calls ("": the build's). */
static inline void nt_level(int fl) {
    if (fl > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", fl);
        setenv("EI_FAKE_NNAPI_FEATURE_LEVEL", v, 1);
    } else {
        unsetenv("EI_FAKE_NNAPI_FEATURE_LEVEL");
    }
}

static inline void nt_env_clear(void) {
    unsetenv("EI_FAKE_NNAPI_FEATURE_LEVEL");
    unsetenv("EI_FAKE_NPU_UNSUPPORTED");
    unsetenv("EI_FAKE_NNAPI_NO_NPU");
    unsetenv("EI_FAKE_NNAPI_FAIL");
    unsetenv("EI_FAKE_NPU_FEATURE_LEVEL");
}

/* ---------------------------------------------------------------- files */
static inline void nt_tmp_path(char *path, size_t n, const char *stem) {
    const char *dir = getenv("TMPDIR");
    snprintf(path, n, "%s/ei-nnapi-test-%s-XXXXXX", dir && dir[0] ? dir : "/tmp", stem);
}

/* The graph's constant blob written to a file, as a .eig would hold it (at offset 64). */
static inline void nt_blob_file(const tg *t, char *path, size_t n, uint64_t *offset) {
    nt_tmp_path(path, n, "blob");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    uint8_t pad[64] = "not the blob";
    assert_int_equal(write(fd, pad, sizeof pad), (ssize_t)sizeof pad);
    if (t->size) assert_int_equal(write(fd, t->blob, (size_t)t->size), (ssize_t)t->size);
    close(fd);
    *offset = sizeof pad;
}

static inline FILE *nt_log(void) {
    FILE *f = tmpfile();
    assert_non_null(f);
    return f;
}

/* Lines written to a log, and whether every needle occurs in it. */
static inline int nt_log_lines(FILE *f, char *text, size_t cap) {
    fflush(f);
    rewind(f);
    size_t k = fread(text, 1, cap - 1, f);
    text[k] = '\0';
    int n = 0;
    for (size_t i = 0; i < k; i++) n += text[i] == '\n';
    return n;
}

/* ---------------------------------------------------------------- inputs, outputs */
static inline void **nt_bind(const ei_graph *g) {
    void **b = calloc((size_t)g->n_tensors + 1, sizeof *b);
    assert_non_null(b);
    return b;
}

/* Random INPUT data: floats in [-1, 1], int32 in [0, imax), u8 booleans, quantised integers over a
 * good part of their range. */
static inline void nt_fill_inputs(const ei_graph *g, void **bind, ei_rng *r, int32_t imax) {
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const ei_gtensor *t = &g->tensors[i];
        if (t->kind != EI_GK_INPUT) continue;
        int64_t n = ei_gtensor_numel(t);
        if (!bind[i]) bind[i] = calloc(1, (size_t)ei_gtensor_bytes(t) + 1);
        assert_non_null(bind[i]);
        for (int64_t k = 0; k < n; k++) {
            double u = ei_rng_uniform(r);
            switch (t->type) {
            case EI_GT_F32: ((float *)bind[i])[k] = (float)(2 * u - 1); break;
            case EI_GT_F16: ((uint16_t *)bind[i])[k] = ei_f32_to_f16((float)(2 * u - 1)); break;
            case EI_GT_I32: ((int32_t *)bind[i])[k] = (int32_t)(u * imax); break;
            case EI_GT_U8: ((uint8_t *)bind[i])[k] = t->q.kind == EI_GQ_NONE ? (uint8_t)(u < 0.5) : (uint8_t)(u * 255); break;
            case EI_GT_I8: ((int8_t *)bind[i])[k] = (int8_t)(u * 200 - 100); break;
            case EI_GT_I16: ((int16_t *)bind[i])[k] = (int16_t)(u * 6000 - 3000); break;
            default: break;
            }
        }
    }
}

static inline void nt_alloc_outputs(const ei_graph *g, void **bind) {
    for (int32_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].kind == EI_GK_OUTPUT && !bind[i]) {
            bind[i] = calloc(1, (size_t)ei_gtensor_bytes(&g->tensors[i]) + 1);
            assert_non_null(bind[i]);
        }
}

static inline void nt_free_bind(const ei_graph *g, void **bind) {
    for (int32_t i = 0; bind && i < g->n_tensors; i++) free(bind[i]);
    free(bind);
}

/* Outputs of a against b: floats within rtol |b| + atol, quantised integers within qsteps. */
static inline void nt_compare(const ei_graph *g, void *const *a, void *const *b, double rtol, double atol, int qsteps,
                              const char *what) {
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const ei_gtensor *t = &g->tensors[i];
        if (t->kind != EI_GK_OUTPUT) continue;
        for (int64_t k = 0, n = ei_gtensor_numel(t); k < n; k++) {
            double x, y, tol;
            switch (t->type) {
            case EI_GT_F32: x = ((float *)a[i])[k], y = ((float *)b[i])[k], tol = rtol * fabs(y) + atol; break;
            case EI_GT_F16:
                x = ei_f16_to_f32(((uint16_t *)a[i])[k]), y = ei_f16_to_f32(((uint16_t *)b[i])[k]);
                tol = rtol * fabs(y) + atol;
                break;
            case EI_GT_I8: x = ((int8_t *)a[i])[k], y = ((int8_t *)b[i])[k], tol = qsteps; break;
            case EI_GT_U8: x = ((uint8_t *)a[i])[k], y = ((uint8_t *)b[i])[k], tol = qsteps; break;
            case EI_GT_I16: x = ((int16_t *)a[i])[k], y = ((int16_t *)b[i])[k], tol = qsteps; break;
            default: x = ((int32_t *)a[i])[k], y = ((int32_t *)b[i])[k], tol = 0; break;
            }
            if (!(fabs(x - y) <= tol)) {
                fprintf(stderr, "%s: output '%s' element %lld: nnapi %.9g, cpu %.9g (tolerance %.3g)\n", what, t->name,
                        (long long)k, x, y, tol);
                fail();
            }
        }
    }
}

/* prepare + execute + release; the exec's nnapi info when it is an nnapi exec. */
static inline int nt_run(ei_backend *b, const tg *t, void **bind, ei_nnapi_exec_info *info) {
    ei_backend_exec *x = b->ops->prepare(b, t->g, t->blob, t->size);
    if (!x) return -1;
    if (info) assert_int_equal(ei_backend_nnapi_exec_info(x, info), 0);
    int rc = b->ops->execute(x, bind);
    b->ops->release(x);
    return rc;
}

static inline void nt_cpu_ref(const tg *t, void **bind) {
    ei_backend *c = ei_backend_cpu_new(&(ei_cpu_options){.threads = 1});
    assert_non_null(c);
    int rc = nt_run(c, t, bind, NULL);
    if (rc) fprintf(stderr, "cpu: %s\n", ei_error_get());
    assert_int_equal(rc, 0);
    c->ops->destroy(c);
}

/* The graph on the cpu backend and on nnapi with options o (strict unless the caller says
 * otherwise), same random inputs, outputs compared. */
static inline void nt_vs_cpu(const tg *t, ei_nnapi_options o, uint64_t seed, int32_t imax, double rtol, double atol,
                             int qsteps, ei_nnapi_exec_info *info, const char *what) {
    ei_rng r;
    ei_rng_seed(&r, seed);
    void **in = nt_bind(t->g), **ref = nt_bind(t->g);
    nt_fill_inputs(t->g, in, &r, imax);
    for (int32_t i = 0; i < t->g->n_tensors; i++)
        if (t->g->tensors[i].kind == EI_GK_INPUT) ref[i] = in[i];
    nt_alloc_outputs(t->g, ref);
    nt_cpu_ref(t, ref);
    void **got = nt_bind(t->g);
    for (int32_t i = 0; i < t->g->n_tensors; i++)
        if (t->g->tensors[i].kind == EI_GK_INPUT) got[i] = in[i];
    nt_alloc_outputs(t->g, got);
    ei_backend *b = ei_backend_nnapi_new(&o);
    if (!b) fprintf(stderr, "%s: nnapi backend: %s\n", what, ei_error_get());
    assert_non_null(b);
    ei_nnapi_exec_info inf;
    int rc = nt_run(b, t, got, &inf);
    if (rc) fprintf(stderr, "%s: nnapi: %s\n", what, ei_error_get());
    assert_int_equal(rc, 0);
    b->ops->destroy(b);
    if (info) *info = inf;
    nt_compare(t->g, got, ref, rtol, atol, qsteps, what);
    for (int32_t i = 0; i < t->g->n_tensors; i++)
        if (t->g->tensors[i].kind == EI_GK_INPUT) ref[i] = got[i] = NULL;
    nt_free_bind(t->g, got);
    nt_free_bind(t->g, ref);
    nt_free_bind(t->g, in);
}

/* ---------------------------------------------------------------- graphs */
static inline void nt_quant(tg *t, int32_t i, float scale, int32_t zp) {
    t->g->tensors[i].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = scale, .zero_point = zp, .scales = -1};
}

static inline int32_t nt_cf(tg *t, ei_rng *r, const char *name, int32_t rank, const int32_t *shape, double amp) {
    int64_t n = 1;
    for (int32_t i = 0; i < rank; i++) n *= shape[i];
    float *v = rnd_f32(r, n, -amp, amp);
    int32_t i = tg_c(t, name, F32, rank, shape, v);
    free(v);
    return i;
}

/* Float graph of ops every feature level has (FULLY_CONNECTED, RESHAPE, both BATCH_MATMUL forms of
 * attention, SOFTMAX of rank 3, LOGISTIC, MUL, ADD with broadcasting, CONCATENATION, GATHER):
 * the level-1 build runs it through the decompositions. Inputs x, k, v and ids (int32 < 10). */
static inline tg nt_graph_basic(uint64_t seed) {
    ei_rng r;
    ei_rng_seed(&r, seed);
    tg t = tg_new("basic");
    int32_t x = tg_t(&t, "x", F32, KI, R(2, 4, 8)), k = tg_t(&t, "k", F32, KI, R(2, 5, 8));
    int32_t v = tg_t(&t, "v", F32, KI, R(2, 5, 8)), ids = tg_t(&t, "ids", I32, KI, R(4));
    int32_t w1 = nt_cf(&t, &r, "w1", R(8, 8), 0.5), b1 = nt_cf(&t, &r, "b1", R(8), 0.5);
    int32_t emb = nt_cf(&t, &r, "emb", R(10, 8), 1.0);
    int32_t h = tg_t(&t, "h", F32, KV, R(8, 8)), h3 = tg_t(&t, "h3", F32, KV, R(2, 4, 8));
    int32_t s = tg_t(&t, "s", F32, KV, R(2, 4, 5)), p = tg_t(&t, "p", F32, KO, R(2, 4, 5));
    int32_t o = tg_t(&t, "o", F32, KV, R(2, 4, 8)), g = tg_t(&t, "g", F32, KV, R(2, 4, 8));
    int32_t m = tg_t(&t, "m", F32, KV, R(2, 4, 8)), e = tg_t(&t, "e", F32, KV, R(4, 8));
    int32_t a = tg_t(&t, "a", F32, KV, R(2, 4, 8)), a2 = tg_t(&t, "a2", F32, KV, R(2, 4, 8));
    int32_t c = tg_t(&t, "c", F32, KO, R(2, 4, 16));
    tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(x, w1, b1), h, NULL);
    tg_n(&t, EI_OP_RESHAPE, NIN(h), h3, NULL);
    tg_n(&t, EI_OP_BATCH_MATMUL, NIN(h3, k), s, &(ei_gparams){.bmm = {0, 1}});
    tg_n(&t, EI_OP_SOFTMAX, NIN(s), p, &(ei_gparams){.softmax = {0.5f, 2}});
    tg_n(&t, EI_OP_BATCH_MATMUL, NIN(p, v), o, &(ei_gparams){.bmm = {0, 0}});
    tg_n(&t, EI_OP_LOGISTIC, NIN(o), g, NULL);
    tg_n(&t, EI_OP_MUL, NIN(o, g), m, NULL);
    tg_n(&t, EI_OP_GATHER, NIN(emb, ids), e, &(ei_gparams){.gather = {0}});
    tg_n(&t, EI_OP_ADD, NIN(m, e), a, NULL);
    tg_n(&t, EI_OP_ADD, NIN(a, x), a2, NULL);
    tg_n(&t, EI_OP_CONCATENATION, NIN(a2, x), c, &(ei_gparams){.concat = {2}});
    assert_int_equal(ei_graph_validate(t.g, t.size), 0);
    return t;
}

/* Float graph of the rest of the op set (levels 2-7): RMSNorm (MUL, MEAN, ADD of a scalar, RSQRT),
 * CAST from int32, DIV, SUB, EXP, ELU, MAXIMUM, SELECT on a u8 mask, SLICE, TRANSPOSE (its result
 * an OUTPUT also read later), BATCH_MATMUL with adj_x, float16 arithmetic, QUANTIZE / DEQUANTIZE.
 * Inputs x, mask, pos (int32 < 10), q. */
static inline tg nt_graph_rich(uint64_t seed) {
    ei_rng r;
    ei_rng_seed(&r, seed);
    tg t = tg_new("rich");
    int32_t x = tg_t(&t, "x", F32, KI, R(3, 8)), mask = tg_t(&t, "mask", U8, KI, R(3, 8));
    int32_t pos = tg_t(&t, "pos", I32, KI, R(3, 1)), q = tg_t(&t, "q", F32, KI, R(2, 6, 3));
    int32_t gam = nt_cf(&t, &r, "gamma", R(8), 1.0);
    float epsv = 1e-5f, onev = 1.0f;
    int32_t eps = tg_c(&t, "eps", F32, 0, NULL, &epsv), one = tg_c(&t, "one", F32, R(1), &onev);
#define V(name, ...) tg_t(&t, name, F32, KV, R(__VA_ARGS__))
    int32_t sq = V("sq", 3, 8), ms = V("ms", 3, 1), ad = V("ad", 3, 1), rs = V("rs", 3, 1), xn = V("xn", 3, 8);
    int32_t y = V("y", 3, 8), pf = V("pf", 3, 1), pf1 = V("pf1", 3, 1), dv = V("dv", 3, 8), sb = V("sb", 3, 8);
    int32_t ex = V("ex", 3, 8), el = V("el", 3, 8), mx = V("mx", 3, 8), sel = V("sel", 3, 8), sl = V("sl", 2, 6);
    int32_t cc = V("cc", 12, 2), bb = V("bb", 2, 6, 2), bm = V("bm", 2, 3, 2), back = tg_t(&t, "out1", F32, KO, R(2, 3, 2));
#undef V
    int32_t tr = tg_t(&t, "tr", F32, KO, R(6, 2)), h = tg_t(&t, "h", F16, KV, R(2, 3, 2));
    int32_t h2 = tg_t(&t, "h2", F16, KV, R(2, 3, 2)), qz = tg_t(&t, "qz", U8, KV, R(3, 8));
    int32_t dq = tg_t(&t, "out2", F32, KO, R(3, 8));
    nt_quant(&t, qz, 0.02f, 128);
    tg_n(&t, EI_OP_MUL, NIN(x, x), sq, NULL);
    tg_n(&t, EI_OP_MEAN, NIN(sq), ms, &(ei_gparams){.mean = {1, 1}});
    tg_n(&t, EI_OP_ADD, NIN(ms, eps), ad, NULL);
    tg_n(&t, EI_OP_RSQRT, NIN(ad), rs, NULL);
    tg_n(&t, EI_OP_MUL, NIN(x, rs), xn, NULL);
    tg_n(&t, EI_OP_MUL, NIN(xn, gam), y, NULL);
    tg_n(&t, EI_OP_CAST, NIN(pos), pf, NULL);
    tg_n(&t, EI_OP_ADD, NIN(pf, one), pf1, NULL);
    tg_n(&t, EI_OP_DIV, NIN(y, pf1), dv, NULL);
    tg_n(&t, EI_OP_SUB, NIN(dv, x), sb, NULL);
    tg_n(&t, EI_OP_EXP, NIN(sb), ex, NULL);
    tg_n(&t, EI_OP_ELU, NIN(sb), el, &(ei_gparams){.elu = {0.7f}});
    tg_n(&t, EI_OP_MAXIMUM, NIN(ex, el), mx, NULL);
    tg_n(&t, EI_OP_SELECT, NIN(mask, mx, x), sel, NULL);
    tg_n(&t, EI_OP_SLICE, NIN(sel), sl, &(ei_gparams){.slice = {{1, 2}, {2, -1}}});
    tg_n(&t, EI_OP_TRANSPOSE, NIN(sl), tr, &(ei_gparams){.transpose = {{1, 0}}});
    tg_n(&t, EI_OP_CONCATENATION, NIN(tr, tr), cc, &(ei_gparams){.concat = {0}});
    tg_n(&t, EI_OP_RESHAPE, NIN(cc), bb, NULL);
    tg_n(&t, EI_OP_BATCH_MATMUL, NIN(q, bb), bm, &(ei_gparams){.bmm = {1, 0}});
    tg_n(&t, EI_OP_CAST, NIN(bm), h, NULL);
    tg_n(&t, EI_OP_ADD, NIN(h, h), h2, NULL);
    tg_n(&t, EI_OP_CAST, NIN(h2), back, NULL);
    tg_n(&t, EI_OP_QUANTIZE, NIN(sel), qz, NULL);
    tg_n(&t, EI_OP_DEQUANTIZE, NIN(qz), dq, NULL);
    assert_int_equal(ei_graph_validate(t.g, t.size), 0);
    return t;
}

/* int8 graph: per-tensor activations, int8 weights per output channel (or one scale with
 * per_tensor), an int32 bias; FULLY_CONNECTED, LOGISTIC, ADD and MUL of different scales,
 * SOFTMAX, CONCATENATION, RESHAPE and DEQUANTIZE. Input xq. */
static inline tg nt_graph_int8(uint64_t seed, int per_tensor) {
    ei_rng r;
    ei_rng_seed(&r, seed);
    tg t = tg_new(per_tensor ? "int8_tensor" : "int8_channel");
    int32_t xq = tg_t(&t, "xq", I8, KI, R(3, 16));
    nt_quant(&t, xq, 0.05f, 3);
    float sc[12];
    for (int i = 0; i < 12; i++) sc[i] = (float)(0.01 + 0.01 * ei_rng_uniform(&r));
    int32_t scales = per_tensor ? -1 : tg_c(&t, "w_scales", F32, R(12), sc);
    int8_t wv[12 * 16];
    int32_t bv[12];
    for (int i = 0; i < 12 * 16; i++) wv[i] = (int8_t)(ei_rng_uniform(&r) * 254 - 127);
    for (int i = 0; i < 12; i++) bv[i] = (int32_t)(ei_rng_uniform(&r) * 2000 - 1000);
    int32_t w = tg_c(&t, "w", I8, R(12, 16), wv), b = tg_c(&t, "b", I32, R(12), bv);
    if (per_tensor) nt_quant(&t, w, 0.015f, 0);
    else t.g->tensors[w].q = (ei_gquant){.kind = EI_GQ_CHANNEL, .axis = 0, .scales = scales};
    int32_t y = tg_t(&t, "y", I8, KO, R(3, 12)), lg = tg_t(&t, "lg", I8, KV, R(3, 12));
    int32_t ad = tg_t(&t, "ad", I8, KV, R(3, 12)), mu = tg_t(&t, "mu", I8, KO, R(3, 12));
    int32_t sm = tg_t(&t, "sm", I8, KV, R(3, 12)), cc = tg_t(&t, "cc", I8, KO, R(3, 24));
    int32_t rs = tg_t(&t, "rs", I8, KO, R(36)), dq = tg_t(&t, "dq", F32, KO, R(3, 12));
    nt_quant(&t, y, 0.08f, -2), nt_quant(&t, lg, 1.0f / 256, -128), nt_quant(&t, ad, 0.09f, 0);
    nt_quant(&t, mu, 0.05f, 1), nt_quant(&t, sm, 1.0f / 256, -128), nt_quant(&t, cc, 1.0f / 256, -128);
    nt_quant(&t, rs, 0.09f, 0);
    tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(xq, w, b), y, NULL);
    tg_n(&t, EI_OP_LOGISTIC, NIN(y), lg, NULL);
    tg_n(&t, EI_OP_ADD, NIN(y, lg), ad, NULL);
    tg_n(&t, EI_OP_MUL, NIN(y, lg), mu, NULL);
    tg_n(&t, EI_OP_SOFTMAX, NIN(ad), sm, &(ei_gparams){.softmax = {1.0f, 1}});
    tg_n(&t, EI_OP_CONCATENATION, NIN(lg, sm), cc, &(ei_gparams){.concat = {1}});
    tg_n(&t, EI_OP_RESHAPE, NIN(ad), rs, NULL);
    tg_n(&t, EI_OP_DEQUANTIZE, NIN(ad), dq, NULL);
    assert_int_equal(ei_graph_validate(t.g, t.size), 0);
    return t;
}

/* int16 activations (an "a16" plan): FULLY_CONNECTED with per-channel int8 weights, LOGISTIC,
 * DEQUANTIZE. Input x. */
static inline tg nt_graph_int16(uint64_t seed) {
    ei_rng r;
    ei_rng_seed(&r, seed);
    tg t = tg_new("int16");
    int32_t x = tg_t(&t, "x16", I16, KI, R(2, 8));
    nt_quant(&t, x, 1.0f / 4096, 0);
    float sc[6];
    int8_t wv[48];
    int32_t bv[6];
    for (int i = 0; i < 6; i++) sc[i] = (float)(0.005 + 0.005 * ei_rng_uniform(&r)), bv[i] = (int32_t)(ei_rng_uniform(&r) * 400 - 200);
    for (int i = 0; i < 48; i++) wv[i] = (int8_t)(ei_rng_uniform(&r) * 254 - 127);
    int32_t ws = tg_c(&t, "ws", F32, R(6), sc), w = tg_c(&t, "w16", I8, R(6, 8), wv), b = tg_c(&t, "b16", I32, R(6), bv);
    t.g->tensors[w].q = (ei_gquant){.kind = EI_GQ_CHANNEL, .axis = 0, .scales = ws};
    int32_t y = tg_t(&t, "y16", I16, KO, R(2, 6)), lg = tg_t(&t, "lg16", I16, KV, R(2, 6));
    int32_t out = tg_t(&t, "out16", F32, KO, R(2, 6));
    nt_quant(&t, y, 1.0f / 2048, 0), nt_quant(&t, lg, 1.0f / 32768, 0);
    tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(x, w, b), y, NULL);
    tg_n(&t, EI_OP_LOGISTIC, NIN(y), lg, NULL);
    tg_n(&t, EI_OP_DEQUANTIZE, NIN(lg), out, NULL);
    assert_int_equal(ei_graph_validate(t.g, t.size), 0);
    return t;
}

/* int4 weights per group of 16 (f16 scales) with a float input. Input x. */
static inline tg nt_graph_int4(uint64_t seed) {
    ei_rng r;
    ei_rng_seed(&r, seed);
    tg t = tg_new("int4");
    int32_t x = tg_t(&t, "x4", F32, KI, R(2, 32));
    uint16_t sc[8];
    uint8_t wv[4 * 16];
    for (int i = 0; i < 8; i++) sc[i] = ei_f32_to_f16((float)(0.02 + 0.02 * ei_rng_uniform(&r)));
    for (int i = 0; i < 64; i++) wv[i] = (uint8_t)ei_rng_next(&r);
    int32_t ws = tg_c(&t, "w4_scales", F16, R(4, 2), sc), w = tg_c(&t, "w4", I4, R(4, 32), wv);
    t.g->tensors[w].q = (ei_gquant){.kind = EI_GQ_GROUP, .axis = 1, .group = 16, .scales = ws};
    int32_t y = tg_t(&t, "y4", F32, KO, R(2, 4));
    tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(x, w), y, NULL);
    assert_int_equal(ei_graph_validate(t.g, t.size), 0);
    return t;
}

#endif
