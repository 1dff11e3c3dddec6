/* cpu backend as a whole: a small transformer block (GATHER, RMSNorm, F16 / I8 / I4 / F32
 * FULLY_CONNECTED, attention with BATCH_MATMUL and SOFTMAX, SwiGLU) gives bit-identical outputs
 * for 1, 2 and 3 threads and for the SIMD and portable kernels, fused equals unfused (1e-5
 * relative), fusion happens exactly where the rules allow; every SIMD kernel (float and integer,
 * every table the CPU runs) equals its portable twin bit for bit on awkward sizes; the arena reuses
 * buffers; the constant blob may be read-only; inputs need no alignment; an idle pool sleeps;
 * run-time errors name graph, node and op. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/test_runtime_cpu_util.h"

#include "runtime/cpu_internal.h"
#include "runtime/cpu_kern.h"
#include "runtime/threadpool.h"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- a transformer block */
enum { V = 300, D = 64, H = 4, DH = 16, FF = 160 };

typedef struct {
    int32_t tok, out, logits, t4; /* t4: an RMSNorm intermediate (made an OUTPUT by tap) */
} block_ids;

static int32_t cw(tg *t, ei_rng *r, const char *name, int32_t n, int32_t k, double amp) {
    float *w = rnd_f32(r, (int64_t)n * k, -amp, amp);
    int32_t i = tg_c(t, name, F32, R(n, k), w);
    free(w);
    return i;
}

static int32_t cv(tg *t, ei_rng *r, const char *name, int32_t n, double lo, double hi) {
    float *w = rnd_f32(r, n, lo, hi);
    int32_t i = tg_c(t, name, F32, R(n), w);
    free(w);
    return i;
}

/* A quantised weight CONST whose data is placed by hand (its bytes depend on q). */
static int32_t cq(tg *t, ei_rng *r, const char *name, int type, int32_t n, int32_t k, int group) {
    int32_t ts;
    if (type == I8) {
        ts = cv(t, r, "s", n, 0.001, 0.01);
    } else {
        uint16_t *s = malloc((size_t)(n * (k / group)) * 2);
        for (int32_t i = 0; i < n * (k / group); i++) s[i] = ei_f32_to_f16((float)(0.005 + 0.01 * ei_rng_uniform(r)));
        ts = tg_c(t, "s4", F16, R(n, k / group), s);
        free(s);
    }
    int32_t w = tg_t(t, name, type, KC, R(n, k));
    ei_gtensor *wt = &t->g->tensors[w];
    wt->q = (ei_gquant){.kind = type == I8 ? EI_GQ_CHANNEL : EI_GQ_GROUP, .axis = type == I4, .group = group, .scales = ts};
    uint64_t bytes = ei_gtensor_bytes(wt), off = (t->size + 63) & ~(uint64_t)63;
    t->blob = realloc(t->blob, (size_t)(off + bytes));
    t->cap = off + bytes;
    for (uint64_t i = t->size; i < off + bytes; i++) t->blob[i] = (uint8_t)ei_rng_next(r);
    wt->offset = off, wt->size = bytes, t->size = off + bytes;
    return w;
}

static int32_t val(tg *t, const char *name, int32_t rank, const int32_t *shape) { return tg_t(t, name, F32, KV, rank, shape); }

/* RMSNorm from primitives; swap: the other operand orders. tap: make t4 an OUTPUT (no fusion). */
static int32_t rmsnorm(tg *t, ei_rng *r, int32_t x, int32_t T, int swap, int32_t *tap) {
    const float eps = 1e-5f;
    int32_t e = tg_c(t, "eps", F32, R(1), &eps), w = cv(t, r, "g", D, 0.5, 1.5);
    int32_t t1 = val(t, "t1", R(T, D)), t2 = val(t, "t2", R(T, 1)), t3 = val(t, "t3", R(T, 1));
    int32_t t4 = tap ? tg_t(t, "t4", F32, KO, R(T, 1)) : val(t, "t4", R(T, 1));
    int32_t t5 = val(t, "t5", R(T, D)), y = val(t, "y", R(T, D));
    ei_gparams pm = {.mean = {1, 1}};
    tg_n(t, EI_OP_MUL, NIN(x, x), t1, NULL);
    tg_n(t, EI_OP_MEAN, NIN(t1), t2, &pm);
    if (swap) tg_n(t, EI_OP_ADD, NIN(e, t2), t3, NULL);
    else tg_n(t, EI_OP_ADD, NIN(t2, e), t3, NULL);
    tg_n(t, EI_OP_RSQRT, NIN(t3), t4, NULL);
    if (swap) tg_n(t, EI_OP_MUL, NIN(t4, x), t5, NULL), tg_n(t, EI_OP_MUL, NIN(w, t5), y, NULL);
    else tg_n(t, EI_OP_MUL, NIN(x, t4), t5, NULL), tg_n(t, EI_OP_MUL, NIN(t5, w), y, NULL);
    if (tap) *tap = t4;
    return y;
}

static int32_t fc(tg *t, int32_t x, int32_t w, int32_t T, int32_t N, int32_t b) {
    int32_t y = val(t, "fc", R(T, N));
    if (b >= 0) tg_n(t, EI_OP_FULLY_CONNECTED, NIN(x, w, b), y, NULL);
    else tg_n(t, EI_OP_FULLY_CONNECTED, NIN(x, w), y, NULL);
    return y;
}

static int32_t heads(tg *t, int32_t x, int32_t T) { /* [T, D] -> [H, T, DH] */
    int32_t a = val(t, "r", R(T, H, DH)), b = val(t, "h", R(H, T, DH));
    ei_gparams p = {.transpose = {{1, 0, 2}}};
    tg_n(t, EI_OP_RESHAPE, NIN(x), a, NULL);
    tg_n(t, EI_OP_TRANSPOSE, NIN(a), b, &p);
    return b;
}

static tg build_block(int32_t T, int tap, block_ids *ids) {
    ei_rng r;
    ei_rng_seed(&r, 42);
    tg t = tg_new("block");
    ids->tok = tg_t(&t, "tokens", I32, KI, R(T));
    int32_t emb = cw(&t, &r, "emb", V, D, 1.0);
    int32_t x = val(&t, "x", R(T, D));
    ei_gparams pg = {.gather = {0}};
    tg_n(&t, EI_OP_GATHER, NIN(emb, ids->tok), x, &pg);
    int32_t hn = rmsnorm(&t, &r, x, T, 0, tap ? &ids->t4 : NULL);
    /* q: F16, k: I8 per channel, v: I4 per group of 32 */
    float *wq = rnd_f32(&r, D * D, -0.2, 0.2);
    uint16_t *wq16 = malloc(D * D * 2);
    for (int i = 0; i < D * D; i++) wq16[i] = ei_f32_to_f16(wq[i]);
    int32_t tq = tg_c(&t, "wq", F16, R(D, D), wq16);
    free(wq), free(wq16);
    int32_t tk = cq(&t, &r, "wk", I8, D, D, 0), tv = cq(&t, &r, "wv", I4, D, D, 32);
    int32_t q = heads(&t, fc(&t, hn, tq, T, D, -1), T), k = heads(&t, fc(&t, hn, tk, T, D, cv(&t, &r, "bk", D, -1, 1)), T);
    int32_t v = heads(&t, fc(&t, hn, tv, T, D, -1), T);
    int32_t s = val(&t, "scores", R(H, T, T)), ss = val(&t, "scaled", R(H, T, T)), sm = val(&t, "masked", R(H, T, T));
    int32_t p = val(&t, "probs", R(H, T, T)), o = val(&t, "att", R(H, T, DH)), ot = val(&t, "att_t", R(T, H, DH));
    int32_t of = val(&t, "att_f", R(T, D));
    const float scale = 0.25f;
    float *mask = zeros_f32((int64_t)T * T);
    for (int32_t i = 0; i < T; i++)
        for (int32_t j = i + 1; j < T; j++) mask[i * T + j] = -1e9f;
    int32_t tsc = tg_c(&t, "scale", F32, R(1), &scale), tm = tg_c(&t, "mask", F32, R(T, T), mask);
    free(mask);
    ei_gparams pq = {.bmm = {0, 1}}, pv = {.bmm = {0, 0}}, psm = {.softmax = {1.0f, 2}}, ptr = {.transpose = {{1, 0, 2}}};
    tg_n(&t, EI_OP_BATCH_MATMUL, NIN(q, k), s, &pq);
    tg_n(&t, EI_OP_MUL, NIN(s, tsc), ss, NULL);
    tg_n(&t, EI_OP_ADD, NIN(ss, tm), sm, NULL);
    tg_n(&t, EI_OP_SOFTMAX, NIN(sm), p, &psm);
    tg_n(&t, EI_OP_BATCH_MATMUL, NIN(p, v), o, &pv);
    tg_n(&t, EI_OP_TRANSPOSE, NIN(o), ot, &ptr);
    tg_n(&t, EI_OP_RESHAPE, NIN(ot), of, NULL);
    int32_t h1 = val(&t, "h1", R(T, D));
    tg_n(&t, EI_OP_ADD, NIN(x, fc(&t, of, cw(&t, &r, "wo", D, D, 0.2), T, D, -1)), h1, NULL);
    int32_t hn2 = rmsnorm(&t, &r, h1, T, 1, NULL);
    int32_t gt = fc(&t, hn2, cw(&t, &r, "wg", FF, D, 0.3), T, FF, -1), up = fc(&t, hn2, cw(&t, &r, "wu", FF, D, 0.3), T, FF, -1);
    int32_t sg = val(&t, "sig", R(T, FF)), a = val(&t, "silu", R(T, FF)), gu = val(&t, "gu", R(T, FF));
    tg_n(&t, EI_OP_LOGISTIC, NIN(gt), sg, NULL);
    tg_n(&t, EI_OP_MUL, NIN(sg, gt), a, NULL);
    tg_n(&t, EI_OP_MUL, NIN(up, a), gu, NULL);
    ids->out = tg_t(&t, "out", F32, KO, R(T, D));
    tg_n(&t, EI_OP_ADD, NIN(h1, fc(&t, gu, cw(&t, &r, "wd", D, FF, 0.2), T, D, -1)), ids->out, NULL);
    ids->logits = tg_t(&t, "logits", F32, KO, R(T, V));
    tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(ids->out, emb), ids->logits, NULL);
    return t;
}

typedef struct {
    float *out, *logits;
    ei_cpu_exec_info info;
} block_run;

static block_run run_block(const tg *t, const block_ids *ids, int32_t T, ei_cpu_options o) {
    block_run br = {zeros_f32((int64_t)T * D), zeros_f32((int64_t)T * V), {0}};
    int32_t tok[16];
    for (int32_t i = 0; i < T; i++) tok[i] = (i * 37 + 11) % V;
    float t4[16];
    void **bind = calloc((size_t)t->g->n_tensors, sizeof *bind);
    bind[ids->tok] = tok, bind[ids->out] = br.out, bind[ids->logits] = br.logits;
    if (ids->t4 > 0) bind[ids->t4] = t4;
    int rc = tg_run_opts(t, o, bind, &br.info);
    if (rc) fprintf(stderr, "%s\n", ei_error_get());
    assert_int_equal(rc, 0);
    free(bind);
    return br;
}

static void free_run(block_run *b) { free(b->out), free(b->logits); }

static void test_block_determinism(void **state) {
    (void)state;
    const int32_t Ts[2] = {7, 1}; /* prefill and decode (GEMV) */
    for (int ti = 0; ti < 2; ti++) {
        const int32_t T = Ts[ti];
        block_ids ids = {0};
        tg t = build_block(T, 0, &ids);
        block_run ref = run_block(&t, &ids, T, (ei_cpu_options){.threads = 1});
        uint64_t hsh = 1469598103934665603ull; /* FNV-1a of the logits: compare across machines by eye */
        for (size_t i = 0; i < (size_t)T * V * 4; i++) hsh = (hsh ^ ((const uint8_t *)ref.logits)[i]) * 1099511628211ull;
        printf("block T=%d logits fnv1a %016llx\n", T, (unsigned long long)hsh);
        /* two RMSNorms (both operand orders), one SwiGLU, two BATCH_MATMULs of a transposed K / V */
        assert_int_equal(ref.info.fused, 5);
        for (int th = 2; th <= 3; th++) {
            block_run b = run_block(&t, &ids, T, (ei_cpu_options){.threads = th});
            assert_memory_equal(b.out, ref.out, (size_t)T * D * 4);
            assert_memory_equal(b.logits, ref.logits, (size_t)T * V * 4);
            free_run(&b);
        }
        block_run p = run_block(&t, &ids, T, (ei_cpu_options){.threads = 2, .portable = 1});
        assert_memory_equal(p.out, ref.out, (size_t)T * D * 4);
        assert_memory_equal(p.logits, ref.logits, (size_t)T * V * 4);
        block_run u = run_block(&t, &ids, T, (ei_cpu_options){.threads = 2, .no_fuse = 1});
        assert_int_equal(u.info.fused, 0);
        assert_true(u.info.steps > ref.info.steps + 10);
        double *rd = zeros_f64((int64_t)T * V);
        for (int64_t i = 0; i < (int64_t)T * V; i++) rd[i] = u.logits[i];
        check_close("fused vs unfused logits", ref.logits, rd, NULL, (int64_t)T * V, 1e-5, 1e-6);
        for (int64_t i = 0; i < (int64_t)T * D; i++) rd[i] = u.out[i];
        check_close("fused vs unfused out", ref.out, rd, NULL, (int64_t)T * D, 1e-5, 1e-6);
        free(rd);
        free_run(&ref), free_run(&p), free_run(&u);
        tg_free(&t);
    }
}

static void test_no_fusion_when_tapped(void **state) {
    (void)state;
    block_ids ids = {0};
    tg t = build_block(5, 1, &ids); /* the first RMSNorm's t4 is an OUTPUT */
    block_run a = run_block(&t, &ids, 5, (ei_cpu_options){.threads = 2});
    assert_int_equal(a.info.fused, 4); /* the other RMSNorm, SwiGLU, the two BATCH_MATMULs */
    block_run b = run_block(&t, &ids, 5, (ei_cpu_options){.threads = 2, .no_fuse = 1});
    double *rd = zeros_f64(5 * V);
    for (int i = 0; i < 5 * V; i++) rd[i] = b.logits[i];
    check_close("tapped", a.logits, rd, NULL, 5 * V, 1e-5, 1e-6);
    free(rd);
    free_run(&a), free_run(&b);
    tg_free(&t);
}

/* The constant blob is read through a read-only mapping; inputs at odd addresses work. */
static void test_readonly_blob_unaligned_inputs(void **state) {
    (void)state;
    block_ids ids = {0};
    const int32_t T = 3;
    tg t = build_block(T, 0, &ids);
    block_run ref = run_block(&t, &ids, T, (ei_cpu_options){.threads = 2});
    size_t len = ((size_t)t.size + 4095) & ~(size_t)4095;
    uint8_t *ro = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(ro != MAP_FAILED);
    memcpy(ro, t.blob, (size_t)t.size);
    assert_int_equal(mprotect(ro, len, PROT_READ), 0);
    uint8_t *own = t.blob;
    t.blob = ro;
    char *buf = malloc(64 + (size_t)T * (4 + D + V) * 4);
    int32_t *tok = (int32_t *)(void *)(buf + 4); /* 4-byte aligned only */
    float *out = (float *)(void *)(buf + 4 + 4 * T), *logits = out + T * D;
    for (int32_t i = 0; i < T; i++) tok[i] = (i * 37 + 11) % V;
    void **bind = calloc((size_t)t.g->n_tensors, sizeof *bind);
    bind[ids.tok] = tok, bind[ids.out] = out, bind[ids.logits] = logits;
    assert_int_equal(tg_run_opts(&t, (ei_cpu_options){.threads = 2}, bind, NULL), 0);
    assert_memory_equal(out, ref.out, (size_t)T * D * 4);
    assert_memory_equal(logits, ref.logits, (size_t)T * V * 4);
    t.blob = own;
    munmap(ro, len);
    free(bind), free(buf);
    free_run(&ref);
    tg_free(&t);
}

/* ---------------------------------------------------------------- memory planning */
static void test_arena_reuse(void **state) {
    (void)state;
    enum { N = 4096, CHAIN = 10 };
    float *x = zeros_f32(N), *y = zeros_f32(N), c = 1.0f;
    tg t = tg_new("chain");
    int32_t prev = tg_t(&t, "x", F32, KI, R(N)), tc = tg_c(&t, "c", F32, R(1), &c);
    for (int i = 0; i < CHAIN; i++) {
        int32_t nx = i == CHAIN - 1 ? tg_t(&t, "y", F32, KO, R(N)) : tg_t(&t, "v", F32, KV, R(N));
        if (i == 4) { /* a reshape in the middle is a view */
            int32_t rs = tg_t(&t, "rs", F32, KV, R(64, 64)), rb = tg_t(&t, "rb", F32, KV, R(N));
            tg_n(&t, EI_OP_RESHAPE, NIN(prev), rs, NULL);
            tg_n(&t, EI_OP_RESHAPE, NIN(rs), rb, NULL);
            prev = rb;
        }
        tg_n(&t, EI_OP_ADD, NIN(prev, tc), nx, NULL);
        prev = nx;
    }
    void **bind = calloc((size_t)t.g->n_tensors, sizeof *bind);
    bind[0] = x, bind[t.g->n_tensors - 1] = y;
    ei_cpu_exec_info info;
    assert_int_equal(tg_run_opts(&t, (ei_cpu_options){.threads = 2}, bind, &info), 0);
    assert_int_equal(info.steps, CHAIN);
    assert_true(info.arena_bytes <= 2 * N * 4); /* ping-pong between two buffers */
    for (int i = 0; i < N; i++) assert_true(y[i] == (float)CHAIN);
    free(bind), free(x), free(y);
    tg_free(&t);
}

/* ---------------------------------------------------------------- errors */
static void test_errors(void **state) {
    (void)state;
    float emb[40] = {0}, y[12];
    int32_t idx[3] = {1, 12, 0};
    tg t = tg_new("errs");
    int32_t te = tg_c(&t, "emb", F32, R(10, 4), emb), ti = tg_t(&t, "idx", I32, KI, R(3)), ty = tg_t(&t, "y", F32, KO, R(3, 4));
    ei_gparams p = {.gather = {0}};
    tg_n(&t, EI_OP_GATHER, NIN(te, ti), ty, &p);
    void *bind[3] = {NULL, idx, y};
    ei_error_clear();
    assert_int_equal(tg_run_opts(&t, (ei_cpu_options){.threads = 2}, bind, NULL), -1);
    const char *msg = ei_error_get();
    assert_non_null(strstr(msg, "errs"));
    assert_non_null(strstr(msg, "node 0"));
    assert_non_null(strstr(msg, "GATHER"));
    assert_non_null(strstr(msg, "index 12"));
    idx[1] = -1;
    assert_int_equal(tg_run_opts(&t, (ei_cpu_options){.threads = 1}, bind, NULL), -1);
    assert_non_null(strstr(ei_error_get(), "index -1"));
    bind[1] = NULL; /* an unbound input */
    assert_int_equal(tg_run_opts(&t, (ei_cpu_options){.threads = 1}, bind, NULL), -1);
    assert_non_null(strstr(ei_error_get(), "idx"));
    /* an invalid graph never gets past prepare */
    t.g->tensors[ty].shape[1] = 5;
    ei_backend *b = ei_backend_cpu_new(NULL);
    assert_null(b->ops->prepare(b, t.g, t.blob, t.size));
    assert_non_null(strstr(ei_error_get(), "errs"));
    b->ops->destroy(b);
    tg_free(&t);
}

/* ---------------------------------------------------------------- SIMD vs portable */
static void same(const char *what, const void *a, const void *b, size_t n, int64_t p1, int64_t p2, int64_t p3) {
    if (memcmp(a, b, n)) {
        fprintf(stderr, "%s (%lld, %lld, %lld): SIMD and portable differ\n", what, (long long)p1, (long long)p2, (long long)p3);
        fail();
    }
}

static void test_simd_twins(void **state) {
    (void)state;
    const ei_cpu_kernels *s = ei_cpu_kernels_simd(), *p = ei_cpu_kernels_portable();
    if (!s) {
        printf("no SIMD kernels on this machine: nothing to compare\n");
        return;
    }
    printf("comparing %s with %s\n", s->name, p->name);
    ei_rng r;
    ei_rng_seed(&r, 3);
    enum { MAXN = 1100 };
    float *x = rnd_f32(&r, 16 * MAXN, -3, 3), *w = rnd_f32(&r, 16 * MAXN, -3, 3), *big = rnd_f32(&r, MAXN, -100, 100);
    float *y1 = zeros_f32(16 * MAXN), *y2 = zeros_f32(16 * MAXN);
    uint8_t *raw = malloc(16 * MAXN * 4);
    for (int i = 0; i < 16 * MAXN * 4; i++) raw[i] = (uint8_t)ei_rng_next(&r);
    uint16_t *h = malloc(16 * MAXN * 2), sc16[512];
    for (int i = 0; i < 16 * MAXN; i++) h[i] = ei_f32_to_f16(w[i]);
    float sc32[512];
    for (int i = 0; i < 512; i++) sc32[i] = (float)(0.01 + 0.01 * ei_rng_uniform(&r)), sc16[i] = ei_f32_to_f16(sc32[i]);
    const int64_t Ks[] = {1, 3, 8, 15, 16, 17, 31, 64, 100, 129}, Ms[] = {1, 2, 4, 5, 9}, Ns[] = {1, 3, 4, 5, 7, 13};
    for (int wt = EI_CPU_W_F32; wt <= EI_CPU_W_I4; wt++) /* (I8Z: I8 in mode 2) */
        for (int ki = 0; ki < 10; ki++)
            for (int mi = 0; mi < 5; mi++)
                for (int ni = 0; ni < 6; ni++) {
                    const int64_t K = Ks[ki], M = Ms[mi], N = Ns[ni];
                    ei_cpu_wmat m = {.type = wt, .group = K, .tscale = 1.0f};
                    m.row_bytes = wt == EI_CPU_W_F32 ? K * 4 : wt == EI_CPU_W_F16 ? K * 2 : wt == EI_CPU_W_I8 ? K : (K + 1) / 2;
                    m.data = wt == EI_CPU_W_F32 ? (const void *)w : wt == EI_CPU_W_F16 ? (const void *)h : (const void *)raw;
                    if (wt >= EI_CPU_W_I8) { /* alternate per-channel F32, per-group F16 (group 8), per-tensor */
                        int mode = (int)((ki + ni) % 3);
                        m.zp = mode == 2 && wt == EI_CPU_W_I8 ? 3 : 0;
                        if (m.zp) m.type = EI_CPU_W_I8Z;
                        m.scales = mode == 1 ? (const void *)sc16 : mode == 0 ? (const void *)sc32 : (const void *)&m.tscale;
                        m.scale_f16 = mode == 1;
                        m.group = mode == 1 && K > 8 ? (K >= 48 ? 16 : 8) : K;
                        m.scale_row = mode == 2 ? 0 : (K + m.group - 1) / m.group;
                        m.tscale = 0.03f;
                    }
                    const float *bias = ni % 2 ? w + 7 : NULL;
                    memset(y1, 0, M * N * 4), memset(y2, 0, M * N * 4);
                    s->fc(x, K, M, &m, K, 0, N, bias, y1, N);
                    p->fc(x, K, M, &m, K, 0, N, bias, y2, N);
                    same("fc", y1, y2, (size_t)(M * N) * 4, wt, K, M * 100 + N);
                    if (N > 2) { /* a sub-range of output channels */
                        s->fc(x, K, M, &m, K, 1, N - 1, bias, y1, N);
                        p->fc(x, K, M, &m, K, 1, N - 1, bias, y2, N);
                        same("fc range", y1, y2, (size_t)(M * N) * 4, wt, K, M * 100 + N);
                    }
                }
    /* K longer than the GEMM's K block (1024): blocked GEMM rows equal the one-pass GEMV bits, and
     * SIMD equals portable; per-channel scales span blocks, groups of 32 do not */
    for (int wt = EI_CPU_W_F32; wt <= EI_CPU_W_I4; wt++) {
        const int64_t K = 2100, M = 5, N = 7;
        float *xa = rnd_f32(&r, M * K, -1, 1), *g1 = zeros_f32(M * N), *g2 = zeros_f32(M * N), *v1 = zeros_f32(N);
        uint8_t *wb = malloc((size_t)(N * K * 4));
        for (int64_t i = 0; i < N * K * 4; i++) wb[i] = (uint8_t)ei_rng_next(&r);
        if (wt == EI_CPU_W_F32)
            for (int64_t i = 0; i < N * K; i++) ((float *)(void *)wb)[i] = (float)(ei_rng_uniform(&r) - 0.5);
        if (wt == EI_CPU_W_F16)
            for (int64_t i = 0; i < N * K; i++) ((uint16_t *)(void *)wb)[i] = ei_f32_to_f16((float)(ei_rng_uniform(&r) - 0.5));
        ei_cpu_wmat m = {.type = wt, .data = wb, .group = K, .tscale = 1.0f};
        m.row_bytes = wt == EI_CPU_W_F32 ? K * 4 : wt == EI_CPU_W_F16 ? K * 2 : wt == EI_CPU_W_I8 ? K : (K + 1) / 2;
        float *scl = rnd_f32(&r, N * (K / 32 + 1), 0.01, 0.02);
        if (wt == EI_CPU_W_I8) m.scales = scl, m.scale_row = 1;
        if (wt == EI_CPU_W_I4) m.scales = scl, m.group = 32, m.scale_row = K / 32 + 1;
        s->fc(xa, K, M, &m, K, 0, N, NULL, g1, N);
        p->fc(xa, K, M, &m, K, 0, N, NULL, g2, N);
        same("fc K=2100", g1, g2, (size_t)(M * N) * 4, wt, K, M);
        for (int64_t row = 0; row < M; row++) {
            s->fc(xa + row * K, K, 1, &m, K, 0, N, NULL, v1, N);
            same("GEMM row vs GEMV", g1 + row * N, v1, (size_t)N * 4, wt, K, row);
        }
        free(xa), free(g1), free(g2), free(v1), free(wb), free(scl);
    }
    const int64_t NNs[] = {1, 7, 8, 9, 15, 16, 17, 33};
    for (int mi = 0; mi < 5; mi++)
        for (int ki = 0; ki < 5; ki++)
            for (int ni = 0; ni < 8; ni++) {
                const int64_t M = Ms[mi], K = Ks[ki], N = NNs[ni];
                for (int tr = 0; tr < 2; tr++) {
                    s->mm_nn(x, tr ? 1 : K, tr ? M : 1, M, w, N, K, N, y1, N);
                    p->mm_nn(x, tr ? 1 : K, tr ? M : 1, M, w, N, K, N, y2, N);
                    same("mm_nn", y1, y2, (size_t)(M * N) * 4, M, K, N);
                }
            }
    for (int64_t n = 1; n <= MAXN; n += n < 40 ? 1 : 97) {
        float a = s->sum(x, n), b = p->sum(x, n);
        same("sum", &a, &b, 4, n, 0, 0);
        s->softmax(big, y1, n, 0.3f), p->softmax(big, y2, n, 0.3f);
        same("softmax", y1, y2, (size_t)n * 4, n, 0, 0);
        s->rmsnorm(x, w, y1, n, 1e-5f), p->rmsnorm(x, w, y2, n, 1e-5f);
        same("rmsnorm", y1, y2, (size_t)n * 4, n, 0, 0);
        s->swiglu(big, x, y1, n), p->swiglu(big, x, y2, n);
        same("swiglu", y1, y2, (size_t)n * 4, n, 0, 0);
        s->exp(big, y1, n), p->exp(big, y2, n);
        same("exp", y1, y2, (size_t)n * 4, n, 0, 0);
        s->logistic(big, y1, n), p->logistic(big, y2, n);
        same("logistic", y1, y2, (size_t)n * 4, n, 0, 0);
        s->elu(big, y1, n, 0.9f), p->elu(big, y2, n, 0.9f);
        same("elu", y1, y2, (size_t)n * 4, n, 0, 0);
        s->elu(x, y1, n, 1.1f), p->elu(x, y2, n, 1.1f);
        same("elu small", y1, y2, (size_t)n * 4, n, 0, 0);
    }
    free(x), free(w), free(big), free(y1), free(y2), free(raw), free(h);
}

/* One product over prepared activation rows (fc_q4 or fc_q8i8: the same signature), SIMD against
 * portable for several M, N (every other N with a bias), an output sub-range, and each GEMM row
 * against the GEMV of that row. tag is printed with a difference; big: fewer shapes (long rows). */
typedef void (*fcq_fn)(const uint8_t *xq, int64_t ldq, int64_t M, const ei_cpu_wmat *w, int64_t K, int64_t n0,
                       int64_t n1, const float *bias, float *y, int64_t ldy);
enum { FCQ_MAXN = 13 };

static void fcq_twins(const char *name, fcq_fn fs, fcq_fn fp, const uint8_t *xq, int64_t ldq, const ei_cpu_wmat *w,
                      int64_t K, int64_t tag, int big, const float *bias_vals, float *y1, float *y2) {
    static const int64_t Ms[] = {1, 2, 4, 5, 9}, Ns[] = {1, 3, 4, 5, 7, FCQ_MAXN};
    char what[64];
    for (int mi = 0; mi < 5; mi += big ? 3 : 1)
        for (int ni = big; ni < 6; ni += big ? 4 : 1) {
            const int64_t M = Ms[mi], N = Ns[ni];
            const float *bias = ni % 2 ? bias_vals : NULL;
            memset(y1, 0, (size_t)(M * N) * 4), memset(y2, 0, (size_t)(M * N) * 4);
            fs(xq, ldq, M, w, K, 0, N, bias, y1, N);
            fp(xq, ldq, M, w, K, 0, N, bias, y2, N);
            same(name, y1, y2, (size_t)(M * N) * 4, K, tag, M * 100 + N);
            if (N > 2) {
                fs(xq, ldq, M, w, K, 1, N - 1, bias, y1, N);
                fp(xq, ldq, M, w, K, 1, N - 1, bias, y2, N);
                snprintf(what, sizeof what, "%s range", name);
                same(what, y1, y2, (size_t)(M * N) * 4, K, tag, M * 100 + N);
            }
            for (int64_t m = 0; M > 1 && m < M; m++) {
                float v[FCQ_MAXN];
                fs(xq + m * ldq, ldq, 1, w, K, 0, N, bias, v, N);
                snprintf(what, sizeof what, "%s GEMM row vs GEMV", name);
                same(what, y1 + m * N, v, (size_t)N * 4, K, tag, m);
            }
        }
}

/* The integer kernels (q8_row, fc_q4, q8b_row, fc_q8i8, fc_int) of every SIMD table this CPU runs (avx2 and, where
 * the CPU has AVX-VNNI, avx2-vnni; neon) against the portable table, bit for bit: Q8 rows byte for
 * byte (special values included), outputs for awkward K, groups, M, N and output sub-ranges, and
 * GEMM rows equal to GEMV. */
static void twins_int(const ei_cpu_kernels *s, const ei_cpu_kernels *p) {
    printf("comparing %s with %s (integer kernels)\n", s->name, p->name);
    ei_rng r;
    ei_rng_seed(&r, 11);
    enum { MAXK = 2100, MAXM = 9, MAXN = 13 };
    float *x = rnd_f32(&r, MAXM * MAXK, -2, 2), *y1 = zeros_f32(MAXM * MAXN), *y2 = zeros_f32(MAXM * MAXN);
    uint8_t *raw = malloc(MAXN * MAXK), *r1 = malloc(MAXM * 20000), *r2 = malloc(MAXM * 20000);
    for (int i = 0; i < MAXN * MAXK; i++) raw[i] = (uint8_t)ei_rng_next(&r);
    uint16_t sc16[MAXN * 300];
    float sc32[MAXN * 300];
    for (int i = 0; i < MAXN * 300; i++) sc32[i] = (float)(0.005 + 0.02 * ei_rng_uniform(&r)), sc16[i] = ei_f32_to_f16(sc32[i]);
    for (int i = 0; i < MAXK; i++) { /* zero runs, tiny and huge values in row 1; a NaN and an inf in row 2 */
        if ((i / 24) % 5 == 1) x[MAXK + i] = 0.0f;
        if (i % 37 == 0) x[MAXK + i] *= 1e-30f;
        if (i % 53 == 0) x[MAXK + i] *= 1e30f;
    }
    x[2 * MAXK + 70] = NAN, x[2 * MAXK + 300] = INFINITY;
    const int64_t Ks[] = {1, 3, 8, 15, 16, 17, 31, 64, 100, 129, 200, 256, 2100}, Gs[] = {8, 16, 24, 32, 64, 128, 0};
    const int64_t Ms[] = {1, 2, 4, 5, 9}, Ns[] = {1, 3, 4, 5, 7, 13};
    for (int ki = 0; ki < 13; ki++)
        for (int gi = 0; gi < 7; gi++) {
            const int64_t K = Ks[ki], G = Gs[gi] ? Gs[gi] : K;
            if (Gs[gi] && Gs[gi] >= K) continue;
            const int64_t ldq = ei_cpu_q8_row_bytes(K, G), ng = (K + G - 1) / G;
            const int big = K > 129; /* fewer M, N for long rows (Debug + ASan runs this too) */
            for (int m = 0; m < MAXM; m++) { /* Q8 rows: the same bytes */
                memset(r1 + m * ldq, 0xa5, (size_t)ldq), memset(r2 + m * ldq, 0xa5, (size_t)ldq);
                s->q8_row(x + (m % 3) * MAXK + m, K, G, r1 + m * ldq);
                p->q8_row(x + (m % 3) * MAXK + m, K, G, r2 + m * ldq);
            }
            same("q8_row", r1, r2, (size_t)(MAXM * ldq), K, G, 0);
            for (int mode = 0; mode < 2; mode++) { /* f16 / f32 scales */
                ei_cpu_wmat w4 = {.type = EI_CPU_W_I4, .data = raw, .row_bytes = (K + 1) / 2, .scale_f16 = !mode,
                                  .scales = mode ? (const void *)sc32 : (const void *)sc16, .scale_row = ng, .group = G,
                                  .tscale = 1.0f};
                fcq_twins("fc_q4", s->fc_q4, p->fc_q4, r1, ldq, &w4, K, G, big, sc32 + 3, y1, y2);
            }
            if (!Gs[gi]) { /* Q8 blocks of 32 x I8 weights with one scale per row (-128 among the bytes) */
                const int64_t ldb = ei_cpu_q8b_row_bytes(K);
                for (int m = 0; m < MAXM; m++) {
                    memset(r1 + m * ldb, 0xa5, (size_t)ldb), memset(r2 + m * ldb, 0xa5, (size_t)ldb);
                    s->q8b_row(x + (m % 3) * MAXK + m, K, r1 + m * ldb);
                    p->q8b_row(x + (m % 3) * MAXK + m, K, r2 + m * ldb);
                }
                same("q8b_row", r1, r2, (size_t)(MAXM * ldb), K, 0, 0);
                for (int mode = 0; mode < 3; mode++) { /* f16, f32 per-channel scales; per-tensor */
                    ei_cpu_wmat w8 = {.type = EI_CPU_W_I8, .data = raw, .row_bytes = K, .scale_f16 = mode == 0,
                                      .scales = mode == 0 ? (const void *)sc16 : (const void *)sc32,
                                      .scale_row = mode == 2 ? 0 : 1, .group = K, .tscale = 0.02f};
                    if (mode == 2) w8.scales = &w8.tscale;
                    fcq_twins("fc_q8i8", s->fc_q8i8, p->fc_q8i8, r1, ldb, &w8, K, mode, big, sc32 + 3, y1, y2);
                }
            }
            /* integer activations: int16 rows in the kernel's layout, I8 (with and without a
             * weight zero point) and I4 weights, every output type */
            for (int wt = 0; wt < 3; wt++) {
                const int i4 = wt == 2;
                if (!i4 && Gs[gi]) continue; /* I8: one pass over K */
                const int64_t ldx = ei_cpu_int_ldx(K, G, i4), G16 = (G + 15) / 16 * 16;
                int16_t *xi = calloc((size_t)(MAXM * ldx), 2);
                int64_t xsum[MAXM] = {0};
                for (int64_t m = 0; m < MAXM; m++)
                    for (int64_t k = 0; k < K; k++) {
                        const int16_t v = (int16_t)(ei_rng_below(&r, 65536) - 32768) / (m % 2 ? 1 : 200);
                        xi[m * ldx + (i4 ? k / G * G16 + k % G : k)] = v;
                        xsum[m] += v;
                    }
                int32_t mult[MAXN], shift[MAXN], bias[MAXN];
                for (int n = 0; n < MAXN; n++) {
                    ei_cpu_quantize_multiplier(exp(-25.0 + 24.0 * ei_rng_uniform(&r)), &mult[n], &shift[n]);
                    bias[n] = (int32_t)ei_rng_below(&r, 200001) - 100000;
                }
                ei_cpu_wmat w = {.type = i4 ? EI_CPU_W_I4 : wt ? EI_CPU_W_I8Z : EI_CPU_W_I8, .data = raw,
                                 .row_bytes = i4 ? (K + 1) / 2 : K, .zp = wt == 1 ? -7 : 0, .scale_f16 = 1, .scales = sc16,
                                 .scale_row = ng, .group = G, .tscale = 1.0f};
                for (int ot = 0; ot < 3; ot++) {
                    ei_cpu_iq q = {.bias = ot != 1 ? bias : NULL, .xsum = wt == 1 ? xsum : NULL, .wzp = w.zp, .mult = mult,
                                   .shift = shift, .x_scale = 0.01f, .b_scale = 0.003f, .out_scale = 0.5f + ot,
                                   .zo = ot == 1 ? 7 : -3, .otype = ot};
                    q.qmin = ot == 0 ? -128 : ot == 1 ? 0 : -32768, q.qmax = ot == 0 ? 127 : ot == 1 ? 255 : 32767;
                    for (int mi = 0; mi < 5; mi += big ? 3 : 1)
                        for (int ni = big; ni < 6; ni += big ? 4 : 1) {
                            const int64_t M = Ms[mi], N = Ns[ni];
                            int16_t o1[MAXM * MAXN], o2[MAXM * MAXN], v[MAXN];
                            memset(o1, 0, sizeof o1), memset(o2, 0, sizeof o2);
                            s->fc_int(xi, ldx, M, &w, K, 0, N, &q, o1, N);
                            p->fc_int(xi, ldx, M, &w, K, 0, N, &q, o2, N);
                            same("fc_int", o1, o2, sizeof o1, K, G, wt * 10000 + ot * 1000 + M * 100 + N);
                            for (int64_t m = 0; M > 1 && m < M; m++) {
                                ei_cpu_iq qm = q;
                                if (qm.xsum) qm.xsum += m;
                                memset(v, 0, sizeof v);
                                s->fc_int(xi + m * ldx, ldx, 1, &w, K, 0, N, &qm, v, N);
                                same("fc_int GEMM row vs GEMV", (const char *)o1 + m * N * (ot == 2 ? 2 : 1), v,
                                     (size_t)N * (ot == 2 ? 2 : 1), K, G, m);
                            }
                        }
                }
                free(xi);
            }
        }
    free(x), free(y1), free(y2), free(raw), free(r1), free(r2);
}

static void test_simd_twins_int(void **state) {
    (void)state;
    const ei_cpu_kernels *s = ei_cpu_kernels_simd(), *p = ei_cpu_kernels_portable();
    if (!s) {
        printf("no SIMD kernels on this machine: nothing to compare\n");
        return;
    }
    twins_int(s, p);
#if defined(__x86_64__)
    if (s != &ei_cpu_kernels_tab_avx2) twins_int(&ei_cpu_kernels_tab_avx2, p); /* the table CI machines run */
#endif
}

/* ---------------------------------------------------------------- thread pool */
static void count_fn(void *ctx, int tid, int nth) {
    int *hits = ctx;
    __atomic_fetch_add(&hits[tid], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&hits[8], nth, __ATOMIC_RELAXED);
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_threadpool(void **state) {
    (void)state;
    for (int64_t n = 0; n < 50; n++)
        for (int nth = 1; nth <= 4; nth++)
            for (int64_t al = 1; al <= 8; al *= 2) {
                int64_t prev = 0;
                for (int t = 0; t < nth; t++) {
                    int64_t lo, hi;
                    ei_tp_range(n, t, nth, al, &lo, &hi);
                    assert_true(lo == prev && hi >= lo && (hi == n || hi % al == 0));
                    prev = hi;
                }
                assert_true(prev == n);
            }
    ei_tp *tp = ei_tp_new(3);
    assert_non_null(tp);
    int hits[9] = {0};
    for (int i = 0; i < 2000; i++) ei_tp_run(tp, count_fn, hits);
    ei_tp_run_n(tp, 2, count_fn, hits);
    assert_int_equal(hits[0], 2001);
    assert_int_equal(hits[1], 2001);
    assert_int_equal(hits[2], 2000);
    /* idle: after the spin window the workers sleep and cost (almost) no CPU */
    struct timespec nap = {0, 20 * 1000 * 1000};
    nanosleep(&nap, NULL);
    double c0 = cpu_seconds();
    struct timespec wait = {0, 100 * 1000 * 1000};
    nanosleep(&wait, NULL);
    double used = cpu_seconds() - c0;
    printf("idle pool of 3: %.2f ms CPU in 100 ms\n", used * 1e3);
    assert_true(used < 0.02);
    ei_tp_run(tp, count_fn, hits); /* and wakes up again */
    assert_int_equal(hits[2], 2001);
    ei_tp_free(tp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_determinism), cmocka_unit_test(test_no_fusion_when_tapped),
        cmocka_unit_test(test_readonly_blob_unaligned_inputs), cmocka_unit_test(test_arena_reuse),
        cmocka_unit_test(test_errors), cmocka_unit_test(test_simd_twins), cmocka_unit_test(test_simd_twins_int),
        cmocka_unit_test(test_threadpool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
