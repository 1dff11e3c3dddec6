/* Throughput of the cpu backend's FULLY_CONNECTED through the whole backend (prepare once, execute
 * repeatedly): GEMV (M = 1, decode) in weight GB/s ("tokens-equivalent": the weight bytes one
 * token streams) and G weights/s, GEMM (M = 512, prefill) in GFLOP/s, for 1 and 2 threads, and the
 * decode of a 100M-parameter model in tokens/s for f32, w8 and w4g32.
 *   build-cpu/test_runtime_cpu_bench --bench [machine|gemv|gemm|model]   full sizes ([2048 x 768],
 *   [32000 x 768], M = 512, the 100M model), optionally one part
 * Without --bench (ctest) it runs the same code on small sizes and only checks that it runs.
 * EI_CPU_NO_VNNI=1 measures the avx2 table on a CPU with AVX-VNNI. It stays in tests/ for the
 * graph builder of test_runtime_cpu_util.h and cmocka, which bench/ executables do not use. */
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

/* A weight CONST of wk's kind [N, K] filled in place with values of a unit-gain layer (uniform in
 * +-sqrt(3 / K): the activations neither vanish nor blow up through a chain of layers); w8 has
 * F32 row scales as deploy/quant.h writes them, w4g32 F16 group scales. */
static int32_t bench_weight(tg *t, ei_rng *r, int wtype, int32_t N, int32_t K) {
    const float amp = sqrtf(3.0f / (float)K);
    int32_t ts = -1;
    if (wtype == I8) {
        float *sc = malloc((size_t)N * sizeof *sc);
        for (int32_t i = 0; i < N; i++) sc[i] = amp / 127.0f;
        ts = tg_c(t, "s", F32, R(N), sc);
        free(sc);
    } else if (wtype == I4) {
        uint16_t *sc = malloc((size_t)N * (K / 32) * 2);
        for (int64_t i = 0; i < (int64_t)N * (K / 32); i++) sc[i] = ei_f32_to_f16(amp / 7.0f);
        ts = tg_c(t, "s", F16, R(N, K / 32), sc);
        free(sc);
    }
    int32_t tw = tg_t(t, "w", wtype, KC, R(N, K));
    ei_gtensor *wt = &t->g->tensors[tw];
    if (wtype == I8) wt->q = (ei_gquant){.kind = EI_GQ_CHANNEL, .axis = 0, .scales = ts};
    if (wtype == I4) wt->q = (ei_gquant){.kind = EI_GQ_GROUP, .axis = 1, .group = 32, .scales = ts};
    uint64_t bytes = ei_gtensor_bytes(wt), off = (t->size + 63) & ~(uint64_t)63;
    if (off + bytes > t->cap) {
        t->cap = 2 * (off + bytes);
        t->blob = realloc(t->blob, (size_t)t->cap);
        assert_non_null(t->blob);
    }
    uint8_t *d = t->blob + off;
    memset(t->blob + t->size, 0, (size_t)(off - t->size));
    const int64_t n = (int64_t)N * K;
    for (int64_t i = 0; i < n; i += 4) {
        const uint64_t u = ei_rng_next(r);
        for (int j = 0; j < 4 && i + j < n; j++) {
            const uint32_t v = (uint32_t)(u >> (16 * j)) & 0xffff;
            const float f = amp * (2.0f * (float)v / 65535.0f - 1.0f);
            if (wtype == F32) memcpy(d + 4 * (i + j), &f, 4);
            else if (wtype == F16) ((uint16_t *)(void *)d)[i + j] = ei_f32_to_f16(f);
            else if (wtype == I8) d[i + j] = (uint8_t)(int8_t)(v % 255 - 127);
            else if ((i + j) % 2 == 0) d[(i + j) / 2] = (uint8_t)(v % 15 + 1 - 8) & 15;
            else d[(i + j) / 2] |= (uint8_t)(((v % 15 + 1 - 8) & 15) << 4);
        }
    }
    wt->offset = off, wt->size = bytes, t->size = off + bytes;
    return tw;
}

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
                printf("GEMV [%5d x %d] %-6s threads %d: %8.1f us  %6.1f GB/s of weights  %6.1f G weights/s\n", N, K,
                       kinds[k].label, th, s * 1e6, bytes / s * 1e-9, (double)N * K / s * 1e-9);
                assert_true(s > 0);
            }
}

/* Decode of a 100M-parameter decoder (dim 768, hidden 2048, 12 layers, vocab 32000: 109.6 M weights
 * in FULLY_CONNECTEDs, the embedding gathered aside) as the FULLY_CONNECTED chain one token runs:
 * per layer q, k, v, o [768 x 768], gate and up [2048 x 768], down [768 x 2048], then the
 * classifier [32000 x 768]; attention over a cache and the norms are left out (small at decode),
 * an ADD stands where they mix. The three precisions and a plain read of as many bytes as the f32
 * weights are timed in turn, round after round, so that each sees the same share of a machine
 * other jobs load; tokens/s = 1 / (best time of one execute). */
typedef struct {
    tg t;
    uint8_t *blob;
    void **bind;
    int32_t x, y;
} model_graph;

static model_graph build_model(int wtype, int32_t D, int32_t F, int32_t L, int32_t V) {
    ei_rng r;
    ei_rng_seed(&r, 7);
    model_graph mg = {tg_new("decode"), NULL, NULL, 0, 0};
    tg *t = &mg.t;
    int32_t h = mg.x = tg_t(t, "x", F32, KI, R(1, D));
    for (int32_t l = 0; l < L; l++) {
        int32_t q = tg_t(t, "q", F32, KV, R(1, D)), k = tg_t(t, "k", F32, KV, R(1, D)), v = tg_t(t, "v", F32, KV, R(1, D));
        int32_t a = tg_t(t, "a", F32, KV, R(1, D)), a2 = tg_t(t, "a2", F32, KV, R(1, D)), o = tg_t(t, "o", F32, KV, R(1, D));
        int32_t h1 = tg_t(t, "h1", F32, KV, R(1, D)), g = tg_t(t, "g", F32, KV, R(1, F)), u = tg_t(t, "u", F32, KV, R(1, F));
        int32_t gu = tg_t(t, "gu", F32, KV, R(1, F)), dn = tg_t(t, "dn", F32, KV, R(1, D)), h2 = tg_t(t, "h2", F32, KV, R(1, D));
        tg_n(t, EI_OP_FULLY_CONNECTED, NIN(h, bench_weight(t, &r, wtype, D, D)), q, NULL);
        tg_n(t, EI_OP_FULLY_CONNECTED, NIN(h, bench_weight(t, &r, wtype, D, D)), k, NULL);
        tg_n(t, EI_OP_FULLY_CONNECTED, NIN(h, bench_weight(t, &r, wtype, D, D)), v, NULL);
        tg_n(t, EI_OP_ADD, NIN(q, k), a, NULL);
        tg_n(t, EI_OP_ADD, NIN(a, v), a2, NULL);
        tg_n(t, EI_OP_FULLY_CONNECTED, NIN(a2, bench_weight(t, &r, wtype, D, D)), o, NULL);
        tg_n(t, EI_OP_ADD, NIN(h, o), h1, NULL);
        tg_n(t, EI_OP_FULLY_CONNECTED, NIN(h1, bench_weight(t, &r, wtype, F, D)), g, NULL);
        tg_n(t, EI_OP_FULLY_CONNECTED, NIN(h1, bench_weight(t, &r, wtype, F, D)), u, NULL);
        tg_n(t, EI_OP_ADD, NIN(g, u), gu, NULL);
        tg_n(t, EI_OP_FULLY_CONNECTED, NIN(gu, bench_weight(t, &r, wtype, D, F)), dn, NULL);
        tg_n(t, EI_OP_ADD, NIN(h1, dn), h2, NULL);
        h = h2;
    }
    mg.y = tg_t(t, "logits", F32, KO, R(1, V));
    tg_n(t, EI_OP_FULLY_CONNECTED, NIN(h, bench_weight(t, &r, wtype, V, D)), mg.y, NULL);
    assert_int_equal(posix_memalign((void **)&mg.blob, 64, (size_t)t->size), 0);
    memcpy(mg.blob, t->blob, (size_t)t->size);
    free(t->blob), t->blob = NULL, t->cap = 0;
    mg.bind = calloc((size_t)t->g->n_tensors, sizeof *mg.bind);
    mg.bind[mg.x] = rnd_f32(&r, D, -1, 1);
    mg.bind[mg.y] = zeros_f32(V);
    return mg;
}

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

static void test_model(void **state) {
    (void)state;
    const int32_t D = full ? 768 : 64, F = full ? 2048 : 128, L = full ? 12 : 2, V = full ? 32000 : 500;
    const wkind kinds[3] = {{F32, "f32"}, {I8, "w8"}, {I4, "w4g32"}};
    model_graph mg[3];
    for (int ki = 0; ki < 3; ki++) mg[ki] = build_model(kinds[ki].wtype, D, F, L, V);
    const int64_t nread = (int64_t)(mg[0].t.size / 4);
    float *buf = zeros_f32(nread);
    for (int64_t i = 0; i < nread; i++) buf[i] = 1.0f;
    printf("load average before: ");
    FILE *la = fopen("/proc/loadavg", "r");
    char line[128] = "?";
    if (la && fgets(line, sizeof line, la)) printf("%s", line);
    if (la) fclose(la);
    for (int th = 1; th <= 2; th++) {
        ei_backend *b = ei_backend_cpu_new(&(ei_cpu_options){.threads = th});
        ei_tp *tp = ei_tp_new(th);
        ei_backend_exec *e[3];
        double best[4] = {1e30, 1e30, 1e30, 1e30};
        for (int ki = 0; ki < 3; ki++) {
            e[ki] = b->ops->prepare(b, mg[ki].t.g, mg[ki].blob, mg[ki].t.size);
            assert_non_null(e[ki]);
            assert_int_equal(b->ops->execute(e[ki], mg[ki].bind), 0);
        }
        const double start = now();
        int rounds = 0;
        do {
            for (int ki = 0; ki < 3; ki++) {
                double t0 = now();
                assert_int_equal(b->ops->execute(e[ki], mg[ki].bind), 0);
                double dt = now() - t0;
                if (dt < best[ki]) best[ki] = dt;
            }
            sum_ctx c = {buf, nread, {0}};
            double t0 = now();
            ei_tp_run(tp, sum_fn, &c);
            double dt = now() - t0;
            if (dt < best[3]) best[3] = dt;
            rounds++;
        } while (now() - start < (full ? 20.0 : 0.05) || rounds < 3);
        printf("decode, threads %d, best of %d rounds: plain read of %.0f MB %.2f ms (%.1f GB/s)\n", th, rounds,
               (double)nread * 4e-6, best[3] * 1e3, (double)nread * 4 / best[3] * 1e-9);
        for (int ki = 0; ki < 3; ki++) {
            printf("decode %-5s %6.1f MB of weights, threads %d: %7.2f ms/token  %6.1f tokens/s  %5.2fx f32\n",
                   kinds[ki].label, (double)mg[ki].t.size / 1e6, th, best[ki] * 1e3, 1.0 / best[ki], best[0] / best[ki]);
            assert_true(isfinite(((float *)mg[ki].bind[mg[ki].y])[0]));
            b->ops->release(e[ki]);
        }
        ei_tp_free(tp);
        b->ops->destroy(b);
    }
    for (int ki = 0; ki < 3; ki++) {
        free(mg[ki].bind[mg[ki].x]), free(mg[ki].bind[mg[ki].y]), free(mg[ki].bind), free(mg[ki].blob);
        tg_free(&mg[ki].t);
    }
    free(buf);
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

/* The machine's read bandwidth (the 8-lane sum kernel over a buffer, split across the pool, as
 * sum_fn above), the ceiling GEMV is measured against, and the cost of one empty parallel region. */

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
    const struct CMUnitTest all[] = {cmocka_unit_test(test_machine), cmocka_unit_test(test_gemv), cmocka_unit_test(test_gemm),
                                     cmocka_unit_test(test_model)};
    struct CMUnitTest tests[4];
    size_t n = 0;
    for (size_t i = 0; i < 4; i++)
        if (!only || strstr(all[i].name, only)) tests[n++] = all[i];
    return _cmocka_run_group_tests("test_runtime_cpu_bench", tests, n, NULL, NULL);
}
