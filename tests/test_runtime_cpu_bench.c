/* Throughput of the cpu backend's FULLY_CONNECTED through the whole backend (prepare once, execute
 * repeatedly): GEMV (M = 1, decode) in weight GB/s ("tokens-equivalent": the weight bytes one
 * token streams), GEMM (M = 512, prefill) in GFLOP/s, for 1 and 2 threads.
 *   build-cpu/test_runtime_cpu_bench --bench [machine|gemv|gemm]   full sizes ([2048 x 768],
 *   [32000 x 768], M = 512), optionally one part
 * Without --bench (ctest) it runs the same code on small sizes and only checks that it runs.
 * This lives in tests/ because bench/ executables link the host libraries only; see
 * docs/runtime-cpu.md for moving it to bench/bench_cpu_kernels.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/test_runtime_cpu_util.h"

#include "runtime/cpu_kern.h"
#include "runtime/threadpool.h"

#include <time.h>

static int full;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    int wtype; /* F32, F16, I8 (per channel), I4 (group 32) */
    const char *label;
} wkind;

/* Builds x[M, K] @ w[N, K]^T and returns the best seconds per execute. */
static double time_fc(int32_t M, int32_t K, int32_t N, wkind wk, int threads, double budget) {
    ei_rng r;
    ei_rng_seed(&r, 1);
    tg t = tg_new("bench");
    int32_t tw;
    if (wk.wtype == F32 || wk.wtype == F16) {
        tw = tg_t(&t, "w", wk.wtype, KC, R(N, K));
    } else {
        int32_t ng = wk.wtype == I4 ? K / 32 : 1;
        uint16_t *s = malloc((size_t)N * ng * 2);
        for (int64_t i = 0; i < (int64_t)N * ng; i++) s[i] = ei_f32_to_f16(0.01f);
        int32_t ts = wk.wtype == I4 ? tg_c(&t, "s", F16, R(N, ng), s) : tg_c(&t, "s", F16, R(N), s);
        free(s);
        tw = tg_t(&t, "w", wk.wtype, KC, R(N, K));
        t.g->tensors[tw].q = (ei_gquant){.kind = wk.wtype == I4 ? EI_GQ_GROUP : EI_GQ_CHANNEL, .axis = wk.wtype == I4,
                                         .group = 32, .scales = ts};
    }
    ei_gtensor *wt = &t.g->tensors[tw];
    uint64_t bytes = ei_gtensor_bytes(wt), off = (t.size + 63) & ~(uint64_t)63;
    t.blob = realloc(t.blob, (size_t)(off + bytes));
    assert_non_null(t.blob);
    for (uint64_t i = t.size; i < off + bytes; i++) t.blob[i] = (uint8_t)(i * 2654435761u >> 13);
    if (wk.wtype == F32) /* finite floats */
        for (uint64_t i = 0; i < bytes / 4; i++) ((float *)(void *)(t.blob + off))[i] = (float)((i * 7) % 13) * 0.01f;
    if (wk.wtype == F16)
        for (uint64_t i = 0; i < bytes / 2; i++) ((uint16_t *)(void *)(t.blob + off))[i] = ei_f32_to_f16((float)((i * 7) % 13) * 0.01f);
    wt->offset = off, wt->size = bytes, t.size = off + bytes, t.cap = off + bytes;
    int32_t tx = tg_t(&t, "x", F32, KI, R(M, K)), ty = tg_t(&t, "y", F32, KO, R(M, N));
    tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(tx, tw), ty, NULL);
    /* 64-byte aligned weights (as in a mapped .eig) and activations (as in the arena): rows only
     * 16-byte aligned run a third slower (split loads) */
    float *x = NULL, *y = zeros_f32((int64_t)M * N), *xr = rnd_f32(&r, (int64_t)M * K, -1, 1);
    uint8_t *blob = NULL;
    assert_int_equal(posix_memalign((void **)&x, 64, (size_t)M * K * 4), 0);
    assert_int_equal(posix_memalign((void **)&blob, 64, (size_t)t.size), 0);
    memcpy(x, xr, (size_t)M * K * 4);
    memcpy(blob, t.blob, (size_t)t.size);
    free(xr);
    void **bind = calloc((size_t)t.g->n_tensors, sizeof *bind);
    bind[tx] = x, bind[ty] = y;
    ei_backend *b = ei_backend_cpu_new(&(ei_cpu_options){.threads = threads});
    ei_backend_exec *e = b->ops->prepare(b, t.g, blob, t.size);
    assert_non_null(e);
    assert_int_equal(b->ops->execute(e, bind), 0); /* warm-up */
    double best = 1e30, start = now();
    int reps = 0;
    do {
        double t0 = now();
        assert_int_equal(b->ops->execute(e, bind), 0);
        double dt = now() - t0;
        if (dt < best) best = dt;
        reps++;
    } while (now() - start < budget || reps < 3);
    b->ops->release(e);
    b->ops->destroy(b);
    free(bind), free(x), free(y), free(blob);
    tg_free(&t);
    return best;
}

static void test_gemv(void **state) {
    (void)state;
    const int32_t Ns[2] = {2048, 32000};
    const wkind kinds[4] = {{F32, "f32"}, {F16, "f16"}, {I8, "w8"}, {I4, "w4g32"}};
    const int32_t K = full ? 768 : 64;
    for (int ni = 0; ni < 2; ni++)
        for (int k = 0; k < 4; k++)
            for (int th = 1; th <= 2; th++) {
                const int32_t N = full ? Ns[ni] : Ns[ni] / 64;
                double s = time_fc(1, K, N, kinds[k], th, full ? 1.0 : 0.01);
                double bytes = (double)N * K * (kinds[k].wtype == F32 ? 4 : kinds[k].wtype == F16 ? 2 : kinds[k].wtype == I8 ? 1 : 0.5);
                printf("GEMV [%5d x %d] %-6s threads %d: %8.1f us  %6.1f GB/s of weights\n", N, K, kinds[k].label, th,
                       s * 1e6, bytes / s * 1e-9);
                assert_true(s > 0);
            }
}

static void test_gemm(void **state) {
    (void)state;
    const int32_t shapes[4][2] = {{768, 768}, {2048, 768}, {768, 2048}, {32000, 768}}; /* N, K */
    const int32_t M = full ? 512 : 16;
    for (int si = 0; si < 4; si++)
        for (int th = 1; th <= 2; th++) {
            const int32_t N = full ? shapes[si][0] : shapes[si][0] / 64, K = full ? shapes[si][1] : shapes[si][1] / 16;
            if (!full && si == 3 && th == 2) continue;
            double s = time_fc(M, K, N, (wkind){F32, "f32"}, th, full ? 1.5 : 0.01);
            printf("GEMM M %d [%5d x %4d] f32 threads %d: %8.2f ms  %6.1f GFLOP/s\n", M, N, K, th, s * 1e3,
                   2.0 * M * N * K / s * 1e-9);
            if (si == 0) {
                double g = time_fc(1, K, N, (wkind){F32, "f32"}, th, full ? 0.5 : 0.01);
                printf("    vs %d GEMVs: %8.2f ms (GEMM %.1fx faster)\n", M, g * M * 1e3, g * M / s);
            }
            assert_true(s > 0);
        }
    const wkind q[3] = {{F16, "f16"}, {I8, "w8"}, {I4, "w4g32"}};
    for (int k = 0; k < 3; k++)
        for (int th = 1; th <= 2; th++) {
            const int32_t N = full ? 2048 : 32, K = full ? 768 : 64;
            double s = time_fc(M, K, N, q[k], th, full ? 1.0 : 0.01);
            printf("GEMM M %d [%5d x %4d] %-5s threads %d: %8.2f ms  %6.1f GFLOP/s\n", M, N, K, q[k].label, th,
                   s * 1e3, 2.0 * M * N * K / s * 1e-9);
        }
}

/* The machine's read bandwidth (the 8-lane sum kernel over a buffer, split across the pool), the
 * ceiling GEMV is measured against, and the cost of one empty parallel region. */
typedef struct {
    const float *x;
    int64_t n;
    float part[4];
} sum_ctx;

static void sum_fn(void *p, int tid, int nth) {
    sum_ctx *c = p;
    int64_t lo, hi;
    ei_tp_range(c->n, tid, nth, 64, &lo, &hi);
    c->part[tid] = ei_cpu_kernels_best()->sum(c->x + lo, hi - lo);
}

static void empty_fn(void *p, int tid, int nth) { (void)p, (void)tid, (void)nth; }

static void test_machine(void **state) {
    (void)state;
    const int64_t sizes[2] = {2048 * 768, 32000 * 768};
    for (int si = 0; si < 2; si++)
        for (int th = 1; th <= 2; th++) {
            const int64_t n = full ? sizes[si] : sizes[si] / 256;
            float *x = zeros_f32(n);
            for (int64_t i = 0; i < n; i++) x[i] = 1.0f; /* touch: calloc'd pages all map to one zero page */
            ei_tp *tp = ei_tp_new(th);
            sum_ctx c = {x, n, {0}};
            double best = 1e30, start = now();
            do {
                double t0 = now();
                ei_tp_run(tp, sum_fn, &c);
                double dt = now() - t0;
                if (dt < best) best = dt;
            } while (now() - start < (full ? 0.5 : 0.01));
            printf("read %6.1f MB threads %d: %6.1f GB/s\n", (double)n * 4 / 1e6, th, (double)n * 4 / best * 1e-9);
            ei_tp_free(tp);
            free(x);
        }
    ei_tp *tp = ei_tp_new(2);
    const int reps = full ? 200000 : 2000;
    double t0 = now();
    for (int i = 0; i < reps; i++) ei_tp_run(tp, empty_fn, NULL);
    printf("empty parallel region, 2 threads: %.2f us\n", (now() - t0) / reps * 1e6);
    ei_tp_free(tp);
}

int main(int argc, char **argv) {
    const char *only = NULL; /* --bench [machine|gemv|gemm] */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bench") == 0) full = 1;
        else only = argv[i];
    }
    ei_backend *b = ei_backend_cpu_new(NULL);
    printf("cpu kernels: %s\n", ei_backend_cpu_kernels(b));
    b->ops->destroy(b);
    const struct CMUnitTest all[] = {cmocka_unit_test(test_machine), cmocka_unit_test(test_gemv), cmocka_unit_test(test_gemm)};
    struct CMUnitTest tests[3];
    size_t n = 0;
    for (size_t i = 0; i < 3; i++)
        if (!only || strstr(all[i].name, only)) tests[n++] = all[i];
    return _cmocka_run_group_tests("test_runtime_cpu_bench", tests, n, NULL, NULL);
}
