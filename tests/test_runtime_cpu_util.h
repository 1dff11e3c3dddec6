/* Helpers shared by the cpu backend tests (test_runtime_cpu*.c): a graph + constant blob builder,
 * random data, running a graph on the cpu backend, and comparisons against float64 references.
 * Include after cmocka.h. */
#ifndef TEST_RUNTIME_CPU_UTIL_H
#define TEST_RUNTIME_CPU_UTIL_H

#include "core/ei_error.h"
#include "core/ei_half.h"
#include "core/ei_rng.h"
#include "runtime/backend.h"
#include "runtime/graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(...) ((const int32_t[]){__VA_ARGS__})
#define R(...) (int32_t)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t)), S(__VA_ARGS__)
#define IN(...) ((const int32_t[]){__VA_ARGS__})
#define NIN(...) (int32_t)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t)), IN(__VA_ARGS__)

enum { F32 = EI_GT_F32, F16 = EI_GT_F16, I32 = EI_GT_I32, I8 = EI_GT_I8, U8 = EI_GT_U8, I16 = EI_GT_I16, I4 = EI_GT_I4 };
enum { KC = EI_GK_CONST, KI = EI_GK_INPUT, KO = EI_GK_OUTPUT, KV = EI_GK_VALUE };

typedef struct {
    ei_graph *g;
    uint8_t *blob;
    uint64_t size, cap;
} tg;

static inline tg tg_new(const char *name) {
    tg t = {ei_graph_new(name), NULL, 0, 0};
    assert_non_null(t.g);
    return t;
}

static inline void tg_free(tg *t) {
    ei_graph_free(t->g);
    free(t->blob);
    memset(t, 0, sizeof *t);
}

/* Names must be unique: a repeated one gets the tensor's index appended. */
static inline int32_t tg_t(tg *t, const char *name, int type, int kind, int32_t rank, const int32_t *shape) {
    char uniq[96];
    if (ei_graph_find(t->g, name) >= 0) snprintf(uniq, sizeof uniq, "%s_%d", name, (int)t->g->n_tensors), name = uniq;
    int32_t i = ei_graph_add_tensor(t->g, name, (ei_gtype)type, (ei_gkind)kind, rank, shape);
    assert_true(i >= 0);
    return i;
}

/* A CONST tensor whose bytes (ei_gtensor_bytes, after q is set by the caller if it matters for the
 * size) are copied into the blob at a 64-byte-aligned offset. */
static inline int32_t tg_c(tg *t, const char *name, int type, int32_t rank, const int32_t *shape, const void *data) {
    int32_t i = tg_t(t, name, type, KC, rank, shape);
    ei_gtensor *tt = &t->g->tensors[i];
    uint64_t bytes = ei_gtensor_bytes(tt), off = (t->size + 63) & ~(uint64_t)63;
    if (off + bytes > t->cap) {
        t->cap = 2 * (off + bytes) + 4096;
        t->blob = realloc(t->blob, (size_t)t->cap);
        assert_non_null(t->blob);
    }
    memset(t->blob + t->size, 0, (size_t)(off - t->size));
    memcpy(t->blob + off, data, (size_t)bytes);
    tt->offset = off;
    tt->size = bytes;
    t->size = off + bytes;
    return i;
}

static inline void tg_n(tg *t, ei_gop op, int32_t n_in, const int32_t *in, int32_t out, const ei_gparams *p) {
    assert_true(ei_graph_add_node(t->g, op, n_in, in, out, p) >= 0);
}

/* Runs the graph once; returns execute's result (prepare must succeed). */
static inline int tg_run_opts(const tg *t, ei_cpu_options o, void **bind, ei_cpu_exec_info *info) {
    ei_backend *b = ei_backend_cpu_new(&o);
    assert_non_null(b);
    ei_backend_exec *x = b->ops->prepare(b, t->g, t->blob, t->size);
    if (!x) fprintf(stderr, "prepare: %s\n", ei_error_get());
    assert_non_null(x);
    if (info) assert_int_equal(ei_backend_cpu_exec_info(x, info), 0);
    int rc = b->ops->execute(x, bind);
    b->ops->release(x);
    b->ops->destroy(b);
    return rc;
}

static inline void tg_run(const tg *t, int threads, void **bind) {
    int rc = tg_run_opts(t, (ei_cpu_options){.threads = threads}, bind, NULL);
    if (rc) fprintf(stderr, "execute: %s\n", ei_error_get());
    assert_int_equal(rc, 0);
}

static inline float *rnd_f32(ei_rng *r, int64_t n, double lo, double hi) {
    float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    assert_non_null(x);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * ei_rng_uniform(r));
    return x;
}

static inline float *zeros_f32(int64_t n) {
    float *x = calloc((size_t)(n ? n : 1), sizeof *x);
    assert_non_null(x);
    return x;
}

static inline double *zeros_f64(int64_t n) {
    double *x = calloc((size_t)(n ? n : 1), sizeof *x);
    assert_non_null(x);
    return x;
}

/* |got - ref| <= rtol * scale + atol, scale = |ref| or, where given, a per-element magnitude (the
 * sum of |terms| of a dot product). */
static inline void check_close(const char *what, const float *got, const double *ref, const double *scale, int64_t n,
                               double rtol, double atol) {
    for (int64_t i = 0; i < n; i++) {
        double s = scale ? scale[i] : fabs(ref[i]);
        double err = fabs((double)got[i] - ref[i]);
        if (!(err <= rtol * s + atol)) {
            fprintf(stderr, "%s: element %lld: got %.9g, want %.9g (scale %.3g)\n", what, (long long)i, (double)got[i],
                    ref[i], s);
            fail();
        }
    }
}

/* FULLY_CONNECTED's Q8 activations for I4 weights (runtime/graph.h), written out plainly: per group
 * of G (G >= K: one group) amax = max |x|, xs = amax / 127 (NaN if the group holds a NaN or an
 * infinity), q = clamp(roundf(x * (127 / amax)), -127, 127) (0 when amax is 0 or not finite). */
static inline void ref_q8(const float *x, int64_t K, int64_t G, int8_t *q, float *xs) {
    if (G <= 0 || G >= K) G = K > 0 ? K : 1;
    for (int64_t g = 0; g * G < K; g++) {
        const int64_t k0 = g * G, k1 = k0 + G < K ? k0 + G : K;
        float amax = 0.0f;
        int bad = 0;
        for (int64_t k = k0; k < k1; k++) {
            if (!isfinite(x[k])) bad = 1;
            else if (fabsf(x[k]) > amax) amax = fabsf(x[k]);
        }
        xs[g] = bad ? NAN : amax / 127.0f;
        const float r = bad || amax == 0.0f ? 0.0f : 127.0f / amax;
        for (int64_t k = k0; k < k1; k++) {
            const float p = x[k] * r, v = roundf(p);
            q[k] = (int8_t)(v != v || v < -127.0f ? -127 : v > 127.0f ? 127 : (int)v);
        }
    }
}

/* row-major strides of a shape */
static inline void strides(int32_t rank, const int32_t *shape, int64_t *st) {
    int64_t a = 1;
    for (int32_t i = rank - 1; i >= 0; i--) st[i] = a, a *= shape[i];
}

#endif
