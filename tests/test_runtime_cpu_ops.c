/* cpu backend: every op of the graph IR against a straightforward float64 reference computed here,
 * on small random shapes chosen to hit tails of the 8-wide kernels: broadcasting, adj flags,
 * slices, transposes, gathers, F16 values, quantised tensors and quantised FULLY_CONNECTED weights.
 * Float results are checked to 1e-5 relative to the magnitude of the terms (float32 rounding over
 * short sums, ~1 ulp exp); conversions that the spec defines in float are checked exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/test_runtime_cpu_util.h"

#if defined(__clang__)
/* the references spell out separate multiplies and adds; clang would fuse them by default */
#pragma STDC FP_CONTRACT OFF
#endif

static int64_t numel(int32_t rank, const int32_t *s) {
    int64_t n = 1;
    for (int32_t i = 0; i < rank; i++) n *= s[i];
    return n;
}

/* ---------------------------------------------------------------- element-wise */
static double bin_ref(ei_gop op, double a, double b) {
    switch (op) {
    case EI_OP_ADD: return a + b;
    case EI_OP_SUB: return a - b;
    case EI_OP_MUL: return a * b;
    case EI_OP_DIV: return a / b;
    default: return a > b ? a : b;
    }
}

/* offset in a tensor of rank r (right-aligned, extent-1 axes broadcast) of output index o[4] */
static int64_t bidx(int32_t r, const int32_t *s, const int64_t *o) {
    int64_t off = 0;
    for (int32_t i = 0; i < r; i++) off = off * s[i] + (s[i] == 1 ? 0 : o[4 - r + i]);
    return off;
}

static void bin_case(ei_gop op, int32_t ra, const int32_t *sa, int32_t rb, const int32_t *sb, int threads) {
    int32_t ro = ra > rb ? ra : rb, so[4];
    for (int32_t i = 0; i < ro; i++) {
        int32_t ea = i < ra ? sa[ra - 1 - i] : 1, eb = i < rb ? sb[rb - 1 - i] : 1;
        so[ro - 1 - i] = ea > eb ? ea : eb;
    }
    int64_t na = numel(ra, sa), nb = numel(rb, sb), no = numel(ro, so);
    ei_rng r;
    ei_rng_seed(&r, (uint64_t)(op * 100 + na + 7 * nb));
    float *a = rnd_f32(&r, na, -2, 2), *b = rnd_f32(&r, nb, 0.5, 2), *y = zeros_f32(no);
    for (int64_t i = 0; i < nb; i++)
        if (ei_rng_uniform(&r) < 0.5) b[i] = -b[i];
    tg t = tg_new("binary");
    int32_t ta = tg_t(&t, "a", F32, KI, ra, sa), tb = tg_t(&t, "b", F32, KI, rb, sb), to = tg_t(&t, "y", F32, KO, ro, so);
    tg_n(&t, op, NIN(ta, tb), to, NULL);
    void *bind[3] = {a, b, y};
    tg_run(&t, threads, bind);
    double *ref = zeros_f64(no);
    int64_t o[4], d[4] = {1, 1, 1, 1};
    for (int32_t i = 0; i < ro; i++) d[4 - ro + i] = so[i];
    for (int64_t i = 0; i < no; i++) {
        o[3] = i % d[3], o[2] = i / d[3] % d[2], o[1] = i / (d[3] * d[2]) % d[1], o[0] = i / (d[3] * d[2] * d[1]);
        ref[i] = bin_ref(op, a[bidx(ra, sa, o)], b[bidx(rb, sb, o)]);
    }
    check_close(ei_gop_name(op), y, ref, NULL, no, 1e-6, 0);
    free(a), free(b), free(y), free(ref);
    tg_free(&t);
}

static void test_binary(void **state) {
    (void)state;
    const ei_gop ops[] = {EI_OP_ADD, EI_OP_SUB, EI_OP_MUL, EI_OP_DIV, EI_OP_MAXIMUM};
    for (int k = 0; k < 5; k++) {
        bin_case(ops[k], R(3, 5, 7), R(3, 5, 7), 2);  /* same shape */
        bin_case(ops[k], R(4, 13), R(13), 2);         /* a row */
        bin_case(ops[k], R(4, 13), R(4, 1), 3);       /* a column */
        bin_case(ops[k], R(1), R(6, 9), 1);           /* a scalar on the left */
        bin_case(ops[k], R(2, 1, 5), R(3, 1), 2);     /* both broadcast */
        bin_case(ops[k], R(2, 3, 4, 5), R(1, 3, 1, 5), 3);
        bin_case(ops[k], R(3000), R(3000), 2);        /* split across threads */
    }
}

static void test_binary_i32(void **state) {
    (void)state;
    tg t = tg_new("i32");
    int32_t ta = tg_t(&t, "a", I32, KI, R(2, 3)), tb = tg_t(&t, "b", I32, KI, R(3)), ts = tg_t(&t, "s", I32, KV, R(2, 3));
    int32_t tq = tg_t(&t, "q", I32, KO, R(2, 3));
    tg_n(&t, EI_OP_ADD, NIN(ta, tb), ts, NULL);
    tg_n(&t, EI_OP_DIV, NIN(ts, tb), tq, NULL);
    int32_t a[6] = {1, -7, 9, 100, -2147483640, 5}, b[3] = {2, -3, 4}, q[6];
    void *bind[4] = {a, b, NULL, q};
    tg_run(&t, 2, bind);
    for (int i = 0; i < 6; i++) assert_int_equal(q[i], (a[i] + b[i % 3]) / b[i % 3]);
    tg_free(&t);
}

static double unary_ref(ei_gop op, double x, double alpha) {
    switch (op) {
    case EI_OP_RSQRT: return 1.0 / sqrt(x);
    case EI_OP_LOGISTIC: return 1.0 / (1.0 + exp(-x));
    case EI_OP_EXP: return exp(x);
    default: return x > 0 ? x : alpha * (exp(x) - 1.0);
    }
}

static void test_unary(void **state) {
    (void)state;
    const ei_gop ops[] = {EI_OP_RSQRT, EI_OP_LOGISTIC, EI_OP_EXP, EI_OP_ELU};
    const int64_t sizes[] = {1, 7, 37, 1003, 20001};
    for (int k = 0; k < 4; k++)
        for (int si = 0; si < 5; si++) {
            int64_t n = sizes[si];
            ei_rng r;
            ei_rng_seed(&r, (uint64_t)(k * 10 + si));
            float *x = ops[k] == EI_OP_RSQRT ? rnd_f32(&r, n, 0.01, 50) : rnd_f32(&r, n, ops[k] == EI_OP_EXP ? -95 : -12, ops[k] == EI_OP_EXP ? 88 : 12);
            float *y = zeros_f32(n);
            double *ref = zeros_f64(n);
            tg t = tg_new("unary");
            int32_t tx = tg_t(&t, "x", F32, KI, R((int32_t)n)), ty = tg_t(&t, "y", F32, KO, R((int32_t)n));
            ei_gparams p = {.elu = {0.7f}};
            tg_n(&t, ops[k], NIN(tx), ty, &p);
            void *bind[2] = {x, y};
            tg_run(&t, 2, bind);
            for (int64_t i = 0; i < n; i++) ref[i] = unary_ref(ops[k], x[i], 0.7);
            check_close(ei_gop_name(ops[k]), y, ref, NULL, n, 1e-6, 1e-30);
            if (ops[k] == EI_OP_ELU) check_close("ELU abs", y, ref, NULL, n, 0, 2e-7);
            free(x), free(y), free(ref);
            tg_free(&t);
        }
}

/* ---------------------------------------------------------------- MEAN, SOFTMAX */
static void test_mean(void **state) {
    (void)state;
    const int32_t sh[3] = {3, 5, 37};
    for (int ax = 0; ax < 3; ax++)
        for (int keep = 0; keep < 2; keep++) {
            int32_t so[3], ro = 0;
            for (int i = 0; i < 3; i++)
                if (i != ax) so[ro++] = sh[i];
                else if (keep) so[ro++] = 1;
            ei_rng r;
            ei_rng_seed(&r, (uint64_t)(ax * 2 + keep));
            float *x = rnd_f32(&r, 3 * 5 * 37, -3, 3), *y = zeros_f32(numel(ro, so));
            tg t = tg_new("mean");
            int32_t tx = tg_t(&t, "x", F32, KI, 3, sh), ty = tg_t(&t, "y", F32, KO, ro, so);
            ei_gparams p = {.mean = {ax, keep}};
            tg_n(&t, EI_OP_MEAN, NIN(tx), ty, &p);
            void *bind[2] = {x, y};
            tg_run(&t, 2, bind);
            int64_t st[3];
            strides(3, sh, st);
            int64_t nout = 3 * 5 * 37 / sh[ax];
            double *ref = zeros_f64(nout), *mag = zeros_f64(nout);
            for (int64_t o = 0; o < nout; o++) {
                int64_t inner = st[ax], outer = o / inner, in = o % inner;
                for (int j = 0; j < sh[ax]; j++) {
                    double v = x[outer * sh[ax] * inner + j * inner + in];
                    ref[o] += v / sh[ax];
                    mag[o] += fabs(v) / sh[ax];
                }
            }
            check_close("MEAN", y, ref, mag, nout, 1e-6, 0);
            free(x), free(y), free(ref), free(mag);
            tg_free(&t);
        }
}

static void softmax_case(int32_t rank, const int32_t *sh, int32_t ax, float beta) {
    int64_t n = numel(rank, sh), st[4];
    strides(rank, sh, st);
    ei_rng r;
    ei_rng_seed(&r, (uint64_t)(n + ax));
    float *x = rnd_f32(&r, n, -8, 8), *y = zeros_f32(n);
    tg t = tg_new("softmax");
    int32_t tx = tg_t(&t, "x", F32, KI, rank, sh), ty = tg_t(&t, "y", F32, KO, rank, sh);
    ei_gparams p = {.softmax = {beta, ax}};
    tg_n(&t, EI_OP_SOFTMAX, NIN(tx), ty, &p);
    void *bind[2] = {x, y};
    tg_run(&t, 2, bind);
    double *ref = zeros_f64(n);
    const int64_t inner = st[ax], len = sh[ax];
    for (int64_t o = 0; o < n / len; o++) {
        int64_t base = (o / inner) * len * inner + o % inner;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < len; j++) m = fmax(m, x[base + j * inner]);
        for (int64_t j = 0; j < len; j++) s += exp(beta * (x[base + j * inner] - m));
        for (int64_t j = 0; j < len; j++) ref[base + j * inner] = exp(beta * (x[base + j * inner] - m)) / s;
    }
    check_close("SOFTMAX", y, ref, NULL, n, 1e-5, 1e-9);
    free(x), free(y), free(ref);
    tg_free(&t);
}

static void test_softmax(void **state) {
    (void)state;
    softmax_case(R(4, 37), 1, 1.0f);
    softmax_case(R(2, 3, 1), 2, 1.0f);
    softmax_case(R(3, 6, 5), 1, 0.7f);
    softmax_case(R(2, 2, 3, 129), 3, 0.125f);
    softmax_case(R(7, 4), 0, 2.0f);
}

/* ---------------------------------------------------------------- FULLY_CONNECTED */
typedef struct {
    int wtype;   /* F32, F16, I8, I4 */
    int qkind;   /* EI_GQ_* for I8 / I4 */
    int group;   /* I4 */
    int scale16; /* F16 scales */
    int bias;
    int x16; /* F16 activations (and output) */
    int exact; /* ei_cpu_options.exact_w8 */
} fc_kind;

static void fc_case(int32_t M, int32_t K, int32_t N, fc_kind fk, int threads) {
    ei_rng r;
    ei_rng_seed(&r, (uint64_t)(M * 1000003 + K * 1009 + N + fk.wtype * 7 + fk.qkind));
    float *x = rnd_f32(&r, (int64_t)M * K, -1, 1), *bias = rnd_f32(&r, N, -1, 1), *y = zeros_f32((int64_t)M * N);
    double *wd = zeros_f64((int64_t)N * K); /* the decoded weights */
    tg t = tg_new("fc");
    int32_t tw;
    const int64_t nw = (int64_t)N * K;
    if (fk.wtype == F32 || fk.wtype == F16) {
        float *w = rnd_f32(&r, nw, -1, 1);
        uint16_t *h = malloc((size_t)nw * 2);
        for (int64_t i = 0; i < nw; i++) {
            h[i] = ei_f32_to_f16(w[i]);
            wd[i] = fk.wtype == F16 ? ei_f16_to_f32(h[i]) : w[i];
        }
        tw = tg_c(&t, "w", fk.wtype, R(N, K), fk.wtype == F16 ? (void *)h : (void *)w);
        free(w), free(h);
    } else {
        const int64_t ng = fk.qkind == EI_GQ_GROUP ? K / fk.group : 1, rb = fk.wtype == I4 ? (K + 1) / 2 : K;
        float *sc = rnd_f32(&r, N * ng, 0.001, 0.05);
        uint16_t *sh = malloc((size_t)(N * ng) * 2);
        for (int64_t i = 0; i < N * ng; i++) {
            sh[i] = ei_f32_to_f16(sc[i]);
            if (fk.scale16) sc[i] = ei_f16_to_f32(sh[i]);
        }
        int32_t ts = -1;
        if (fk.qkind == EI_GQ_CHANNEL) ts = tg_c(&t, "ws", fk.scale16 ? F16 : F32, R(N), fk.scale16 ? (void *)sh : (void *)sc);
        if (fk.qkind == EI_GQ_GROUP) ts = tg_c(&t, "ws", fk.scale16 ? F16 : F32, R(N, (int32_t)ng), fk.scale16 ? (void *)sh : (void *)sc);
        uint8_t *q = calloc((size_t)(N * rb), 1);
        const int32_t zp = fk.qkind == EI_GQ_TENSOR ? 3 : 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < K; k++) {
                int v = fk.wtype == I4 ? (int)ei_rng_below(&r, 16) - 8 : (int)ei_rng_below(&r, 256) - 128; /* -128 too */
                if (fk.wtype == I4) q[n * rb + k / 2] |= (uint8_t)((v & 15) << (4 * (k & 1)));
                else q[n * rb + k] = (uint8_t)(int8_t)v;
                double s = fk.qkind == EI_GQ_TENSOR ? 0.02 : fk.qkind == EI_GQ_CHANNEL ? sc[n] : sc[n * ng + k / fk.group];
                if (fk.qkind == EI_GQ_TENSOR) s = 0.02f;
                wd[n * K + k] = (double)(v - zp) * s;
            }
        tw = tg_t(&t, "w", fk.wtype, KC, R(N, K));
        ei_gtensor *wt = &t.g->tensors[tw];
        wt->q = (ei_gquant){.kind = (ei_gquant_kind)fk.qkind, .scale = 0.02f, .zero_point = zp, .axis = fk.qkind == EI_GQ_GROUP,
                            .group = fk.group, .scales = ts};
        /* place the data like tg_c does */
        uint64_t off = (t.size + 63) & ~(uint64_t)63, bytes = ei_gtensor_bytes(wt);
        t.cap = off + bytes + 64;
        t.blob = realloc(t.blob, (size_t)t.cap);
        memset(t.blob + t.size, 0, (size_t)(off - t.size));
        memcpy(t.blob + off, q, (size_t)bytes);
        wt->offset = off, wt->size = bytes, t.size = off + bytes;
        free(sc), free(sh), free(q);
    }
    const int xt = fk.x16 ? F16 : F32;
    uint16_t *x16 = malloc((size_t)M * K * 2), *y16 = malloc((size_t)M * N * 2);
    for (int64_t i = 0; i < (int64_t)M * K; i++) {
        x16[i] = ei_f32_to_f16(x[i]);
        if (fk.x16) x[i] = ei_f16_to_f32(x16[i]);
    }
    int32_t tx = M % 2 == 0 ? tg_t(&t, "x", xt, KI, R(2, M / 2, K)) : tg_t(&t, "x", xt, KI, R(M, K));
    int32_t ty = tg_t(&t, "y", xt, KO, R(M, N));
    int32_t tb = fk.bias ? tg_c(&t, "b", F32, R(N), bias) : -1;
    if (fk.bias) tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(tx, tw, tb), ty, NULL);
    else tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(tx, tw), ty, NULL);
    void *bind[8] = {0};
    bind[tx] = fk.x16 ? (void *)x16 : (void *)x;
    bind[ty] = fk.x16 ? (void *)y16 : (void *)y;
    assert_int_equal(tg_run_opts(&t, (ei_cpu_options){.threads = threads, .exact_w8 = fk.exact}, bind, NULL), 0);
    if (fk.x16)
        for (int64_t i = 0; i < (int64_t)M * N; i++) y[i] = ei_f16_to_f32(y16[i]);
    double *ref = zeros_f64((int64_t)M * N), *mag = zeros_f64((int64_t)M * N);
    /* what the weights multiply: x, or its Q8 form: per weight group for I4, per block of 32 for I8
     * with one scale per row (no zero point) unless exact_w8 */
    const int64_t qg = fk.wtype == I4 ? fk.group : fk.wtype == I8 && fk.qkind == EI_GQ_CHANNEL && !fk.exact ? 32 : 0;
    double *xe = zeros_f64((int64_t)M * K);
    for (int64_t m = 0; m < M; m++) {
        int8_t *q8 = malloc((size_t)K);
        float *xs = malloc((size_t)K * sizeof *xs);
        if (qg) ref_q8(x + m * K, K, qg, q8, xs);
        for (int64_t k = 0; k < K; k++)
            xe[m * K + k] = qg ? (double)xs[k / (qg < K ? qg : K)] * q8[k] : x[m * K + k];
        free(q8), free(xs);
    }
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = fk.bias ? bias[n] : 0, a = fabs(s);
            for (int64_t k = 0; k < K; k++) s += xe[m * K + k] * wd[n * K + k], a += fabs(xe[m * K + k] * wd[n * K + k]);
            ref[m * N + n] = s;
            mag[m * N + n] = a;
        }
    char what[96];
    snprintf(what, sizeof what, "FC M%d K%d N%d w%s q%d g%d", M, K, N, ei_gtype_name((ei_gtype)fk.wtype), fk.qkind, fk.group);
    if (fk.x16) check_close(what, y, ref, NULL, (int64_t)M * N, 1e-3, 1e-3 * (double)K / 64);
    else check_close(what, y, ref, mag, (int64_t)M * N, 1e-5, 1e-7);
    free(x), free(bias), free(y), free(wd), free(ref), free(mag), free(x16), free(y16), free(xe);
    tg_free(&t);
}

static void test_fc_float(void **state) {
    (void)state;
    const int32_t Ms[] = {1, 2, 5, 17}, Ks[] = {1, 7, 33, 100}, Ns[] = {1, 5, 13, 30};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c++) {
                fc_case(Ms[a], Ks[b], Ns[c], (fc_kind){.wtype = F32, .bias = (a + b + c) % 2}, 1 + (a + c) % 3);
                fc_case(Ms[a], Ks[b], Ns[c], (fc_kind){.wtype = F16, .bias = (a + b) % 2}, 2);
            }
    fc_case(3, 256, 700, (fc_kind){.wtype = F32, .bias = 1}, 2); /* several row blocks */
    fc_case(1, 768, 515, (fc_kind){.wtype = F32}, 2);
    fc_case(4, 40, 9, (fc_kind){.wtype = F16, .x16 = 1, .bias = 1}, 2);
}

static void test_fc_quant(void **state) {
    (void)state;
    const int32_t Ms[] = {1, 6}, Ns[] = {1, 7, 29};
    for (int a = 0; a < 2; a++)
        for (int c = 0; c < 3; c++) {
            const int32_t M = Ms[a], N = Ns[c];
            fc_case(M, 37, N, (fc_kind){.wtype = I8, .qkind = EI_GQ_CHANNEL}, 2);
            fc_case(M, 64, N, (fc_kind){.wtype = I8, .qkind = EI_GQ_CHANNEL, .scale16 = 1, .bias = 1}, 3);
            fc_case(M, 45, N, (fc_kind){.wtype = I8, .qkind = EI_GQ_TENSOR, .bias = 1}, 2);
            fc_case(M, 96, N, (fc_kind){.wtype = I4, .qkind = EI_GQ_GROUP, .group = 32, .scale16 = 1}, 2);
            fc_case(M, 128, N, (fc_kind){.wtype = I4, .qkind = EI_GQ_GROUP, .group = 64, .scale16 = 1, .bias = 1}, 1);
            fc_case(M, 256, N, (fc_kind){.wtype = I4, .qkind = EI_GQ_GROUP, .group = 128}, 2);
        }
    fc_case(1, 768, 301, (fc_kind){.wtype = I4, .qkind = EI_GQ_GROUP, .group = 32, .scale16 = 1}, 2);
    /* odd group counts, groups that are not a multiple of 16, a row that ends inside a 64-block */
    fc_case(1, 40, 9, (fc_kind){.wtype = I4, .qkind = EI_GQ_GROUP, .group = 8, .scale16 = 1, .bias = 1}, 3);
    fc_case(5, 72, 11, (fc_kind){.wtype = I4, .qkind = EI_GQ_GROUP, .group = 24}, 2);
    fc_case(1, 224, 33, (fc_kind){.wtype = I4, .qkind = EI_GQ_GROUP, .group = 32, .scale16 = 1}, 2);
    fc_case(7, 320, 14, (fc_kind){.wtype = I4, .qkind = EI_GQ_GROUP, .group = 64, .scale16 = 1, .bias = 1}, 3);
    fc_case(9, 200, 50, (fc_kind){.wtype = I8, .qkind = EI_GQ_CHANNEL, .x16 = 1}, 2);
    /* I8 in float (exact_w8); Q8 blocks over a row that ends inside a block, several row blocks */
    fc_case(1, 37, 7, (fc_kind){.wtype = I8, .qkind = EI_GQ_CHANNEL, .exact = 1}, 2);
    fc_case(6, 64, 29, (fc_kind){.wtype = I8, .qkind = EI_GQ_CHANNEL, .scale16 = 1, .bias = 1, .exact = 1}, 3);
    fc_case(1, 768, 301, (fc_kind){.wtype = I8, .qkind = EI_GQ_CHANNEL, .scale16 = 1}, 2);
    fc_case(11, 1000, 500, (fc_kind){.wtype = I8, .qkind = EI_GQ_CHANNEL, .bias = 1}, 2);
}

/* ---------------------------------------------------------------- BATCH_MATMUL */
static void bmm_case(int32_t B0, int32_t B1, int32_t M, int32_t K, int32_t N, int ax, int ay, int threads) {
    const int rank = B0 ? 4 : 3;
    const int32_t nb = (B0 ? B0 : 1) * B1;
    int32_t sa[4], sb[4], so[4], i = 0;
    if (B0) sa[i] = sb[i] = so[i] = B0, i++;
    sa[i] = sb[i] = so[i] = B1, i++;
    sa[i] = ax ? K : M, sa[i + 1] = ax ? M : K;
    sb[i] = ay ? N : K, sb[i + 1] = ay ? K : N;
    so[i] = M, so[i + 1] = N;
    ei_rng r;
    ei_rng_seed(&r, (uint64_t)(M * 31 + K * 7 + N + ax * 2 + ay));
    float *a = rnd_f32(&r, (int64_t)nb * M * K, -1, 1), *b = rnd_f32(&r, (int64_t)nb * K * N, -1, 1);
    float *y = zeros_f32((int64_t)nb * M * N);
    tg t = tg_new("bmm");
    int32_t ta = tg_t(&t, "a", F32, KI, rank, sa), tb = tg_t(&t, "b", F32, KI, rank, sb), ty = tg_t(&t, "y", F32, KO, rank, so);
    ei_gparams p = {.bmm = {ax, ay}};
    tg_n(&t, EI_OP_BATCH_MATMUL, NIN(ta, tb), ty, &p);
    void *bind[3] = {a, b, y};
    tg_run(&t, threads, bind);
    double *ref = zeros_f64((int64_t)nb * M * N), *mag = zeros_f64((int64_t)nb * M * N);
    for (int64_t bt = 0; bt < nb; bt++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = 0, g = 0;
                for (int64_t k = 0; k < K; k++) {
                    double av = a[bt * M * K + (ax ? k * M + m : m * K + k)], bv = b[bt * K * N + (ay ? n * K + k : k * N + n)];
                    s += av * bv, g += fabs(av * bv);
                }
                ref[(bt * M + m) * N + n] = s, mag[(bt * M + m) * N + n] = g;
            }
    check_close("BATCH_MATMUL", y, ref, mag, (int64_t)nb * M * N, 1e-5, 1e-7);
    free(a), free(b), free(y), free(ref), free(mag);
    tg_free(&t);
}

static void test_bmm(void **state) {
    (void)state;
    for (int ax = 0; ax < 2; ax++)
        for (int ay = 0; ay < 2; ay++) {
            bmm_case(0, 3, 5, 9, 21, ax, ay, 2);
            bmm_case(2, 3, 1, 17, 35, ax, ay, 3); /* decode attention: M = 1 */
            bmm_case(0, 4, 7, 64, 16, ax, ay, 2);
            bmm_case(0, 1, 13, 3, 8, ax, ay, 1);
        }
}

/* ---------------------------------------------------------------- data movement */
static void test_gather(void **state) {
    (void)state;
    /* embedding lookup: [10, 9] by [7] along 0, F32 and F16; then [5, 6, 3] by [2, 4] along 1 */
    for (int ty = 0; ty < 2; ty++) {
        const int et = ty ? F16 : F32;
        const size_t es = ty ? 2 : 4;
        ei_rng r;
        ei_rng_seed(&r, 5);
        float *x = rnd_f32(&r, 90, -1, 1);
        uint16_t xh[90];
        for (int i = 0; i < 90; i++) xh[i] = ei_f32_to_f16(x[i]);
        int32_t idx[7] = {3, 0, 9, 9, 1, 4, 7};
        uint8_t y[7 * 9 * 4];
        tg t = tg_new("gather");
        int32_t tx = tg_c(&t, "emb", et, R(10, 9), ty ? (void *)xh : (void *)x);
        int32_t ti = tg_t(&t, "idx", I32, KI, R(7)), to = tg_t(&t, "y", et, KO, R(7, 9));
        ei_gparams p = {.gather = {0}};
        tg_n(&t, EI_OP_GATHER, NIN(tx, ti), to, &p);
        void *bind[3] = {NULL, idx, y};
        tg_run(&t, 2, bind);
        for (int j = 0; j < 7; j++)
            assert_memory_equal(y + j * 9 * es, (ty ? (const uint8_t *)xh : (const uint8_t *)x) + idx[j] * 9 * es, 9 * es);
        free(x);
        tg_free(&t);
    }
    ei_rng r;
    ei_rng_seed(&r, 6);
    float *x = rnd_f32(&r, 90, -1, 1), y[5 * 8 * 3];
    int32_t idx[8] = {5, 0, 2, 2, 1, 4, 3, 0};
    tg t = tg_new("gather1");
    int32_t tx = tg_t(&t, "x", F32, KI, R(5, 6, 3)), ti = tg_t(&t, "idx", I32, KI, R(2, 4));
    int32_t to = tg_t(&t, "y", F32, KO, R(5, 2, 4, 3));
    ei_gparams p = {.gather = {1}};
    tg_n(&t, EI_OP_GATHER, NIN(tx, ti), to, &p);
    void *bind[3] = {x, idx, y};
    tg_run(&t, 3, bind);
    for (int o = 0; o < 5; o++)
        for (int j = 0; j < 8; j++)
            for (int c = 0; c < 3; c++) assert_true(y[(o * 8 + j) * 3 + c] == x[(o * 6 + idx[j]) * 3 + c]);
    free(x);
    tg_free(&t);
}

static void test_concat_slice(void **state) {
    (void)state;
    for (int ax = 0; ax < 3; ax++) {
        int32_t s[3][3] = {{2, 3, 4}, {2, 3, 4}, {2, 3, 4}};
        s[1][ax] = 1, s[2][ax] = 5;
        int32_t so[3] = {2, 3, 4};
        so[ax] = s[0][ax] + s[1][ax] + s[2][ax];
        ei_rng r;
        ei_rng_seed(&r, (uint64_t)ax);
        float *in[3], *y = zeros_f32(numel(3, so));
        tg t = tg_new("concat");
        int32_t ti[3];
        for (int k = 0; k < 3; k++) {
            in[k] = rnd_f32(&r, numel(3, s[k]), -1, 1);
            char nm[8];
            snprintf(nm, sizeof nm, "x%d", k);
            ti[k] = tg_t(&t, nm, F32, KI, 3, s[k]);
        }
        int32_t to = tg_t(&t, "y", F32, KO, 3, so);
        ei_gparams p = {.concat = {ax}};
        tg_n(&t, EI_OP_CONCATENATION, NIN(ti[0], ti[1], ti[2]), to, &p);
        void *bind[4] = {in[0], in[1], in[2], y};
        tg_run(&t, 2, bind);
        for (int i0 = 0; i0 < so[0]; i0++)
            for (int i1 = 0; i1 < so[1]; i1++)
                for (int i2 = 0; i2 < so[2]; i2++) {
                    int id[3] = {i0, i1, i2}, k = 0;
                    while (id[ax] >= s[k][ax]) id[ax] -= s[k][ax], k++;
                    float want = in[k][(id[0] * s[k][1] + id[1]) * s[k][2] + id[2]];
                    assert_true(y[(i0 * so[1] + i1) * so[2] + i2] == want);
                }
        for (int k = 0; k < 3; k++) free(in[k]);
        free(y);
        tg_free(&t);
    }
    /* SLICE [4, 5, 6] begin (1, 0, 2) size (2, -1, 3), F16 */
    uint16_t x[120], y[30];
    for (int i = 0; i < 120; i++) x[i] = ei_f32_to_f16((float)i);
    tg t = tg_new("slice");
    int32_t tx = tg_t(&t, "x", F16, KI, R(4, 5, 6)), to = tg_t(&t, "y", F16, KO, R(2, 5, 3));
    ei_gparams p = {.slice = {{1, 0, 2}, {2, -1, 3}}};
    tg_n(&t, EI_OP_SLICE, NIN(tx), to, &p);
    void *bind[2] = {x, y};
    tg_run(&t, 2, bind);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 5; j++)
            for (int k = 0; k < 3; k++) assert_int_equal(y[(i * 5 + j) * 3 + k], x[((1 + i) * 5 + j) * 6 + 2 + k]);
    tg_free(&t);
}

static void transpose_case(int32_t rank, const int32_t *sh, const int32_t *perm, int et) {
    int32_t so[4];
    for (int i = 0; i < rank; i++) so[i] = sh[perm[i]];
    const int64_t n = numel(rank, sh);
    const size_t es = et == F16 ? 2 : 4;
    uint8_t *x = malloc((size_t)n * es), *y = malloc((size_t)n * es);
    for (int64_t i = 0; i < n * (int64_t)es; i++) x[i] = (uint8_t)(i * 7 + 3);
    tg t = tg_new("transpose");
    int32_t tx = tg_t(&t, "x", et, KI, rank, sh), to = tg_t(&t, "y", et, KO, rank, so);
    ei_gparams p = {0};
    memcpy(p.transpose.perm, perm, (size_t)rank * 4);
    tg_n(&t, EI_OP_TRANSPOSE, NIN(tx), to, &p);
    void *bind[2] = {x, y};
    tg_run(&t, 2, bind);
    int64_t sti[4], sto[4];
    strides(rank, sh, sti), strides(rank, so, sto);
    for (int64_t o = 0; o < n; o++) {
        int64_t off = 0;
        for (int i = 0; i < rank; i++) off += (o / sto[i] % so[i]) * sti[perm[i]];
        assert_memory_equal(y + o * (int64_t)es, x + off * (int64_t)es, es);
    }
    free(x), free(y);
    tg_free(&t);
}

static void test_transpose(void **state) {
    (void)state;
    transpose_case(R(2, 3, 4), S(2, 0, 1), F32);
    transpose_case(R(5, 3, 7), S(1, 0, 2), F32); /* [N, H, d] -> [H, N, d]: contiguous runs */
    transpose_case(R(2, 3, 4, 5), S(3, 1, 0, 2), F16);
    transpose_case(R(6, 9), S(1, 0), I32);
}

static void test_reshape(void **state) {
    (void)state;
    /* a VALUE reshape is a view (no step), a reshape into an OUTPUT a copy */
    float x[12], c[4] = {1, 2, 3, 4}, y[12], z[12];
    for (int i = 0; i < 12; i++) x[i] = (float)i * 0.5f;
    tg t = tg_new("reshape");
    int32_t tx = tg_t(&t, "x", F32, KI, R(2, 6)), tv = tg_t(&t, "v", F32, KV, R(3, 4)), tc = tg_c(&t, "c", F32, R(4), c);
    int32_t ty = tg_t(&t, "y", F32, KO, R(3, 4)), tz = tg_t(&t, "z", F32, KO, R(12));
    tg_n(&t, EI_OP_RESHAPE, NIN(tx), tv, NULL);
    tg_n(&t, EI_OP_ADD, NIN(tv, tc), ty, NULL);
    tg_n(&t, EI_OP_RESHAPE, NIN(tv), tz, NULL);
    void *bind[5] = {x, NULL, NULL, y, z};
    ei_cpu_exec_info info;
    assert_int_equal(tg_run_opts(&t, (ei_cpu_options){.threads = 2}, bind, &info), 0);
    assert_int_equal(info.steps, 2);
    for (int i = 0; i < 12; i++) assert_true(y[i] == x[i] + c[i % 4] && z[i] == x[i]);
    tg_free(&t);
}

/* ---------------------------------------------------------------- conversions */
static void test_quantize_dequantize(void **state) {
    (void)state;
    const int types[3] = {I8, U8, I16};
    const float scales[3] = {0.05f, 0.02f, 0.001f};
    const int32_t zps[3] = {-3, 128, 0};
    ei_rng r;
    ei_rng_seed(&r, 9);
    float *x = rnd_f32(&r, 301, -40, 40), *back = zeros_f32(301);
    for (int k = 0; k < 3; k++) {
        uint8_t q[301 * 2];
        tg t = tg_new("quant");
        int32_t tx = tg_t(&t, "x", F32, KI, R(301)), tq = tg_t(&t, "q", types[k], KO, R(301));
        int32_t tb = tg_t(&t, "back", F32, KO, R(301));
        t.g->tensors[tq].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = scales[k], .zero_point = zps[k], .scales = -1};
        tg_n(&t, EI_OP_QUANTIZE, NIN(tx), tq, NULL);
        tg_n(&t, EI_OP_DEQUANTIZE, NIN(tq), tb, NULL);
        void *bind[3] = {x, q, back};
        tg_run(&t, 2, bind);
        const double lo = types[k] == I8 ? -128 : types[k] == U8 ? 0 : -32768, hi = types[k] == I8 ? 127 : types[k] == U8 ? 255 : 32767;
        for (int i = 0; i < 301; i++) {
            double v = round((double)x[i] / (double)scales[k]) + zps[k]; /* the quotient in double */
            v = v < lo ? lo : v > hi ? hi : v;
            int32_t got = types[k] == I8 ? ((int8_t *)q)[i] : types[k] == U8 ? q[i] : ((int16_t *)(void *)q)[i];
            assert_int_equal(got, (int32_t)v);
            assert_true(back[i] == (float)(got - zps[k]) * scales[k]);
        }
        tg_free(&t);
    }
    free(x), free(back);
}

static void test_dequantize_const(void **state) {
    (void)state;
    /* I8 per-channel along axis 0 [4, 6] (F32 scales); I4 per-group of 32 along axis 1 [3, 64]
     * (F16 scales) into an F16 output */
    int8_t q8[24];
    float s8[4] = {0.5f, 0.25f, 2.0f, 0.125f}, y8[24];
    for (int i = 0; i < 24; i++) q8[i] = (int8_t)(i * 11 - 120);
    uint8_t q4[3 * 32];
    uint16_t s4[6], y4[192];
    for (int i = 0; i < 96; i++) q4[i] = (uint8_t)(i * 37 + 5);
    for (int i = 0; i < 6; i++) s4[i] = ei_f32_to_f16(0.01f * (float)(i + 1));
    tg t = tg_new("dequant");
    int32_t ts8 = tg_c(&t, "s8", F32, R(4), s8), ts4 = tg_c(&t, "s4", F16, R(3, 2), s4);
    int32_t tq8 = tg_t(&t, "q8", I8, KC, R(4, 6));
    t.g->tensors[tq8].q = (ei_gquant){.kind = EI_GQ_CHANNEL, .axis = 0, .scales = ts8};
    int32_t tq4 = tg_t(&t, "q4", I4, KC, R(3, 64));
    t.g->tensors[tq4].q = (ei_gquant){.kind = EI_GQ_GROUP, .axis = 1, .group = 32, .scales = ts4};
    /* place data */
    uint64_t off8 = (t.size + 63) & ~63ull, off4 = (off8 + 24 + 63) & ~63ull;
    t.blob = realloc(t.blob, (size_t)(off4 + 96));
    memcpy(t.blob + off8, q8, 24), memcpy(t.blob + off4, q4, 96);
    t.g->tensors[tq8].offset = off8, t.g->tensors[tq8].size = 24;
    t.g->tensors[tq4].offset = off4, t.g->tensors[tq4].size = 96;
    t.size = off4 + 96;
    int32_t ty8 = tg_t(&t, "y8", F32, KO, R(4, 6)), ty4 = tg_t(&t, "y4", F16, KO, R(3, 64));
    tg_n(&t, EI_OP_DEQUANTIZE, NIN(tq8), ty8, NULL);
    tg_n(&t, EI_OP_DEQUANTIZE, NIN(tq4), ty4, NULL);
    void *bind[8] = {0};
    bind[ty8] = y8, bind[ty4] = y4;
    tg_run(&t, 2, bind);
    for (int i = 0; i < 24; i++) assert_true(y8[i] == (float)q8[i] * s8[i / 6]);
    for (int rr = 0; rr < 3; rr++)
        for (int c = 0; c < 64; c++) {
            int v = (q4[rr * 32 + c / 2] >> (4 * (c & 1))) & 15;
            v = v >= 8 ? v - 16 : v;
            float want = (float)v * ei_f16_to_f32(s4[rr * 2 + c / 32]);
            assert_int_equal(y4[rr * 64 + c], ei_f32_to_f16(want));
        }
    tg_free(&t);
}

static void test_cast(void **state) {
    (void)state;
    float x[9] = {-3.7f, -0.5f, 0.0f, 0.49f, 2.5f, 7.99f, -100.25f, 1e10f, -1e10f}, back[9], xf[9];
    int32_t yi[9];
    uint16_t h[9];
    tg t = tg_new("cast");
    int32_t tx = tg_t(&t, "x", F32, KI, R(9)), ti = tg_t(&t, "i", I32, KO, R(9)), tb = tg_t(&t, "b", F32, KO, R(9));
    int32_t th = tg_t(&t, "h", F16, KO, R(9)), tf = tg_t(&t, "f", F32, KO, R(9));
    tg_n(&t, EI_OP_CAST, NIN(tx), ti, NULL);
    tg_n(&t, EI_OP_CAST, NIN(ti), tb, NULL);
    tg_n(&t, EI_OP_CAST, NIN(tx), th, NULL);
    tg_n(&t, EI_OP_CAST, NIN(th), tf, NULL);
    void *bind[5] = {x, yi, back, h, xf};
    tg_run(&t, 1, bind);
    const int32_t want[9] = {-3, 0, 0, 0, 2, 7, -100, INT32_MAX, INT32_MIN};
    for (int i = 0; i < 9; i++) {
        assert_int_equal(yi[i], want[i]);
        assert_true(back[i] == (float)want[i]);
        assert_int_equal(h[i], ei_f32_to_f16(x[i]));
        assert_true(xf[i] == ei_f16_to_f32(h[i]));
    }
    tg_free(&t);
}

/* The fused RoPE step (cpu_fuse.c) against the unfused nodes, bit for bit: both layouts of
 * deploy/ir_emit.c's rope (interleaved pairs [T, H, d/2, 2], halves [T, H, d]), the operands of the
 * MULs and of the ADD in either order; a half that is also read elsewhere (an OUTPUT) is not fused. */
static void rope_case(int interleaved, int swap, int tap) {
    enum { T = 5, H = 3, HALF = 4 };
    ei_rng r;
    ei_rng_seed(&r, 7 + (uint64_t)(interleaved * 4 + swap * 2 + tap));
    tg t = tg_new("rope");
    const int32_t rk = interleaved ? 4 : 3;
    const int32_t *xs = interleaved ? S(T, H, HALF, 2) : S(T, H, 2 * HALF);
    const int32_t *hs = interleaved ? S(T, H, HALF, 1) : S(T, H, HALF);
    const int32_t *cs = interleaved ? S(T, 1, HALF, 1) : S(T, 1, HALF);
    int32_t tx = tg_t(&t, "x", F32, KI, rk, xs), tc = tg_t(&t, "cos", F32, KI, rk, cs), ts = tg_t(&t, "sin", F32, KI, rk, cs);
    int32_t ta = tg_t(&t, "a", F32, tap ? KO : KV, rk, hs), tb = tg_t(&t, "b", F32, KV, rk, hs);
    ei_gparams pa = {0}, pb = {0};
    for (int i = 0; i < rk; i++) pa.slice.size[i] = pb.slice.size[i] = hs[i];
    pb.slice.begin[rk - 1] = interleaved ? 1 : HALF;
    tg_n(&t, EI_OP_SLICE, NIN(tx), ta, &pa);
    tg_n(&t, EI_OP_SLICE, NIN(tx), tb, &pb);
    int32_t m[4], ya = tg_t(&t, "ya", F32, KV, rk, hs), yb = tg_t(&t, "yb", F32, KV, rk, hs);
    const int32_t ops[4][2] = {{ta, tc}, {tb, ts}, {ta, ts}, {tb, tc}};
    for (int i = 0; i < 4; i++) {
        char nm[8];
        snprintf(nm, sizeof nm, "m%d", i);
        m[i] = tg_t(&t, nm, F32, KV, rk, hs);
        tg_n(&t, EI_OP_MUL, NIN(ops[i][swap], ops[i][1 - swap]), m[i], NULL);
    }
    tg_n(&t, EI_OP_SUB, NIN(m[0], m[1]), ya, NULL);
    tg_n(&t, EI_OP_ADD, NIN(m[swap ? 3 : 2], m[swap ? 2 : 3]), yb, NULL);
    int32_t ty = tg_t(&t, "y", F32, KO, rk, xs);
    ei_gparams pc = {.concat = {rk - 1}};
    tg_n(&t, EI_OP_CONCATENATION, NIN(ya, yb), ty, &pc);
    float *x = rnd_f32(&r, T * H * 2 * HALF, -3, 3), *c = rnd_f32(&r, T * HALF, -1, 1), *sn = rnd_f32(&r, T * HALF, -1, 1);
    float *y1 = zeros_f32(T * H * 2 * HALF), *y2 = zeros_f32(T * H * 2 * HALF), *a1 = zeros_f32(T * H * HALF);
    void *bind_full[16] = {0}; /* by tensor index */
    bind_full[tx] = x, bind_full[tc] = c, bind_full[ts] = sn, bind_full[ty] = y1;
    if (tap) bind_full[ta] = a1;
    ei_cpu_exec_info fi, ui;
    assert_int_equal(tg_run_opts(&t, (ei_cpu_options){.threads = 2}, bind_full, &fi), 0);
    bind_full[ty] = y2;
    assert_int_equal(tg_run_opts(&t, (ei_cpu_options){.threads = 1, .no_fuse = 1}, bind_full, &ui), 0);
    assert_int_equal(fi.fused, tap ? 0 : 1);
    assert_int_equal(ui.fused, 0);
    assert_memory_equal(y1, y2, sizeof(float) * T * H * 2 * HALF);
    /* and the values: a c - b s, a s + b c per pair */
    for (int tt = 0; tt < T; tt++)
        for (int h = 0; h < H; h++)
            for (int j = 0; j < HALF; j++) {
                const int64_t ia = interleaved ? ((tt * H + h) * HALF + j) * 2 : (tt * H + h) * 2 * HALF + j;
                const int64_t ib = interleaved ? ia + 1 : ia + HALF;
                const float av = x[ia], bv = x[ib], cv = c[tt * HALF + j], sv = sn[tt * HALF + j];
                const float p0 = av * cv, p1 = bv * sv, p2 = av * sv, p3 = bv * cv;
                assert_true(y1[ia] == p0 - p1);
                assert_true(y1[ib] == p2 + p3);
            }
    free(x), free(c), free(sn), free(y1), free(y2), free(a1);
    tg_free(&t);
}

static void test_rope_fused(void **state) {
    (void)state;
    for (int il = 0; il < 2; il++)
        for (int sw = 0; sw < 2; sw++) rope_case(il, sw, 0);
    rope_case(1, 0, 1);
}

/* BATCH_MATMUL of TRANSPOSE(X, {1, 0, 2}) fused into one strided step (cpu_fuse.c), as
 * deploy/ir_emit.c's attention reads the caches: scores a [B, M, d] x X [T, B, d] (adj_y) and the
 * weighted sum p [B, M, T] x X [T, B, d], F32 and F16 X; fused equals unfused bit for bit and a
 * float64 reference; a transpose that is also an OUTPUT is not fused. */
static void bmm_t_case(int adj_y, int half, int tap) {
    enum { B = 3, M = 2, T = 7, DD = 16 };
    ei_rng r;
    ei_rng_seed(&r, 31 + (uint64_t)(adj_y * 4 + half * 2 + tap));
    const int32_t K = adj_y ? DD : T, N = adj_y ? T : DD, et = half ? F16 : F32;
    float *a = rnd_f32(&r, B * M * K, -2, 2), *xf = rnd_f32(&r, T * B * DD, -2, 2);
    uint16_t ah[B * M * K], xh[T * B * DD], xt_h[T * B * DD], y1h[B * M * N], y2h[B * M * N];
    float xt_f[T * B * DD], y1f[B * M * N], y2f[B * M * N];
    for (int i = 0; i < B * M * K; i++) ah[i] = ei_f32_to_f16(a[i]), a[i] = half ? ei_f16_to_f32(ah[i]) : a[i];
    for (int i = 0; i < T * B * DD; i++) xh[i] = ei_f32_to_f16(xf[i]), xf[i] = half ? ei_f16_to_f32(xh[i]) : xf[i];
    tg t = tg_new("bmm_t");
    int32_t ta = tg_t(&t, "a", et, KI, R(B, M, K)), tx = tg_t(&t, "x", et, KI, R(T, B, DD));
    int32_t tt = tg_t(&t, "xt", et, tap ? KO : KV, R(B, T, DD)), ty = tg_t(&t, "y", et, KO, R(B, M, N));
    ei_gparams pt = {.transpose = {{1, 0, 2}}}, pb = {.bmm = {0, adj_y}};
    tg_n(&t, EI_OP_TRANSPOSE, NIN(tx), tt, &pt);
    tg_n(&t, EI_OP_BATCH_MATMUL, NIN(ta, tt), ty, &pb);
    void *bind[4] = {0};
    bind[ta] = half ? (void *)ah : (void *)a, bind[tx] = half ? (void *)xh : (void *)xf;
    bind[ty] = half ? (void *)y1h : (void *)y1f;
    if (tap) bind[tt] = half ? (void *)xt_h : (void *)xt_f;
    ei_cpu_exec_info fi, ui;
    assert_int_equal(tg_run_opts(&t, (ei_cpu_options){.threads = 2}, bind, &fi), 0);
    bind[ty] = half ? (void *)y2h : (void *)y2f;
    assert_int_equal(tg_run_opts(&t, (ei_cpu_options){.threads = 1, .no_fuse = 1}, bind, &ui), 0);
    assert_int_equal(fi.fused, tap ? 0 : 1);
    assert_int_equal(ui.fused, 0);
    if (half) assert_memory_equal(y1h, y2h, sizeof y1h);
    else assert_memory_equal(y1f, y2f, sizeof y1f);
    for (int b = 0; b < B; b++)
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double want = 0;
                for (int k = 0; k < K; k++) {
                    /* the op's b[b][k][n] is X[k][b][n]; with adj_y it is b^T: X[n][b][k] */
                    const double xv = adj_y ? xf[(n * B + b) * DD + k] : xf[(k * B + b) * DD + n];
                    want += (double)a[(b * M + m) * K + k] * xv;
                }
                const int64_t i = (b * M + m) * N + n;
                const double got = half ? ei_f16_to_f32(y1h[i]) : y1f[i];
                assert_true(fabs(got - want) <= (half ? 2e-3 : 1e-5) * (1 + fabs(want)));
            }
    free(a), free(xf);
    tg_free(&t);
}

/* MUL(BATCH_MATMUL(..), alpha) folded into the BATCH_MATMUL step (attention's 1/sqrt(d)): of a
 * transposed operand or plain, alpha on either side; fused equals unfused bit for bit and the
 * float64 reference; a product that is also an OUTPUT keeps its MUL. */
static void bmm_scale_case(int transposed, int order, int tap) {
    enum { B = 2, M = 3, T = 9, DD = 8 };
    ei_rng r;
    ei_rng_seed(&r, 51 + (uint64_t)(transposed * 4 + order * 2 + tap));
    const float alpha = 0.353553f;
    float *a = rnd_f32(&r, B * M * DD, -2, 2), *xk = rnd_f32(&r, T * B * DD, -2, 2);
    float y1[B * M * T], y2[B * M * T], prod[B * M * T];
    tg t = tg_new("bmm_scale");
    int32_t ta = tg_t(&t, "a", F32, KI, R(B, M, DD));
    int32_t tx = transposed ? tg_t(&t, "x", F32, KI, R(T, B, DD)) : tg_t(&t, "x", F32, KI, R(B, T, DD));
    int32_t tb = tx;
    if (transposed) {
        tb = tg_t(&t, "xt", F32, KV, R(B, T, DD));
        ei_gparams pt = {.transpose = {{1, 0, 2}}};
        tg_n(&t, EI_OP_TRANSPOSE, NIN(tx), tb, &pt);
    }
    int32_t tp = tg_t(&t, "prod", F32, tap ? KO : KV, R(B, M, T)), tc = tg_c(&t, "alpha", F32, R(1), &alpha);
    int32_t ty = tg_t(&t, "y", F32, KO, R(B, M, T));
    ei_gparams pb = {.bmm = {0, 1}};
    tg_n(&t, EI_OP_BATCH_MATMUL, NIN(ta, tb), tp, &pb);
    if (order) tg_n(&t, EI_OP_MUL, NIN(tc, tp), ty, NULL);
    else tg_n(&t, EI_OP_MUL, NIN(tp, tc), ty, NULL);
    void *bind[8] = {0};
    bind[ta] = a, bind[tx] = xk, bind[ty] = y1;
    if (tap) bind[tp] = prod;
    ei_cpu_exec_info fi, ui;
    assert_int_equal(tg_run_opts(&t, (ei_cpu_options){.threads = 2}, bind, &fi), 0);
    bind[ty] = y2;
    assert_int_equal(tg_run_opts(&t, (ei_cpu_options){.threads = 1, .no_fuse = 1}, bind, &ui), 0);
    assert_int_equal(fi.fused, tap ? transposed : 1);
    assert_int_equal(fi.steps, tap ? 2 : 1);
    assert_memory_equal(y1, y2, sizeof y1);
    for (int bt = 0; bt < B; bt++)
        for (int m = 0; m < M; m++)
            for (int n = 0; n < T; n++) {
                double want = 0, mag = 0;
                for (int k = 0; k < DD; k++) {
                    const double xv = transposed ? xk[(n * B + bt) * DD + k] : xk[(bt * T + n) * DD + k];
                    want += a[(bt * M + m) * DD + k] * xv, mag += fabs(a[(bt * M + m) * DD + k] * xv);
                }
                assert_true(fabs(y1[(bt * M + m) * T + n] - alpha * want) <= 1e-5 * alpha * mag + 1e-7);
            }
    free(a), free(xk);
    tg_free(&t);
}

static void test_bmm_scaled_fused(void **state) {
    (void)state;
    for (int tr = 0; tr < 2; tr++)
        for (int o = 0; o < 2; o++) bmm_scale_case(tr, o, 0);
    bmm_scale_case(1, 0, 1);
    bmm_scale_case(0, 1, 1);
}

static void test_bmm_transposed_fused(void **state) {
    (void)state;
    for (int adj = 0; adj < 2; adj++)
        for (int h = 0; h < 2; h++) bmm_t_case(adj, h, 0);
    bmm_t_case(1, 1, 1);
    bmm_t_case(0, 0, 1);
}

static void test_select(void **state) {
    (void)state;
    for (int k = 0; k < 2; k++) {
        const int et = k ? F16 : F32;
        uint8_t c[50];
        float a[50], b[50], y[50];
        uint16_t ah[50], bh[50], yh[50];
        for (int i = 0; i < 50; i++) {
            c[i] = (uint8_t)(i % 3 == 0 ? 0 : i % 3);
            a[i] = (float)i, b[i] = -(float)i;
            ah[i] = ei_f32_to_f16(a[i]), bh[i] = ei_f32_to_f16(b[i]);
        }
        tg t = tg_new("select");
        int32_t tc = tg_t(&t, "c", U8, KI, R(5, 10)), ta = tg_t(&t, "a", et, KI, R(5, 10));
        int32_t tb = tg_t(&t, "b", et, KI, R(5, 10)), ty = tg_t(&t, "y", et, KO, R(5, 10));
        tg_n(&t, EI_OP_SELECT, NIN(tc, ta, tb), ty, NULL);
        void *bind[4] = {c, k ? (void *)ah : (void *)a, k ? (void *)bh : (void *)b, k ? (void *)yh : (void *)y};
        tg_run(&t, 2, bind);
        for (int i = 0; i < 50; i++) {
            if (k) assert_int_equal(yh[i], c[i] ? ah[i] : bh[i]);
            else assert_true(y[i] == (c[i] ? a[i] : b[i]));
        }
        tg_free(&t);
    }
}

/* F16 VALUEs through element-wise ops: each op computes in float and rounds to f16 once */
static void test_f16_values(void **state) {
    (void)state;
    enum { N = 6, D = 19 };
    ei_rng r;
    ei_rng_seed(&r, 11);
    float *af = rnd_f32(&r, N * D, -4, 4), *bf = rnd_f32(&r, N * D, -4, 4), *cf = rnd_f32(&r, D, -2, 2);
    uint16_t a[N * D], b[N * D], c[D], y[N * D];
    for (int i = 0; i < N * D; i++) a[i] = ei_f32_to_f16(af[i]), b[i] = ei_f32_to_f16(bf[i]);
    for (int i = 0; i < D; i++) c[i] = ei_f32_to_f16(cf[i]);
    float e[N * D];
    tg t = tg_new("f16");
    int32_t ta = tg_t(&t, "a", F16, KI, R(N, D)), tb = tg_t(&t, "b", F16, KI, R(N, D)), tc = tg_c(&t, "c", F16, R(D), c);
    int32_t ts = tg_t(&t, "s", F16, KV, R(N, D)), tm = tg_t(&t, "m", F16, KV, R(N, D)), ty = tg_t(&t, "y", F16, KO, R(N, D));
    int32_t tl = tg_t(&t, "l", F16, KV, R(N, D)), te = tg_t(&t, "e", F32, KO, R(N, D));
    tg_n(&t, EI_OP_ADD, NIN(ta, tb), ts, NULL);
    tg_n(&t, EI_OP_MUL, NIN(ts, tc), tm, NULL);
    tg_n(&t, EI_OP_MAXIMUM, NIN(tm, ta), ty, NULL);
    tg_n(&t, EI_OP_LOGISTIC, NIN(tm), tl, NULL);
    tg_n(&t, EI_OP_CAST, NIN(tl), te, NULL);
    void *bind[9] = {0};
    bind[ta] = a, bind[tb] = b, bind[ty] = y, bind[te] = e;
    tg_run(&t, 2, bind);
    for (int i = 0; i < N * D; i++) {
        float s = ei_f16_to_f32(ei_f32_to_f16(ei_f16_to_f32(a[i]) + ei_f16_to_f32(b[i])));
        float m = ei_f16_to_f32(ei_f32_to_f16(s * ei_f16_to_f32(c[i % D])));
        float av = ei_f16_to_f32(a[i]);
        assert_int_equal(y[i], ei_f32_to_f16(m > av ? m : av));
        double l = 1.0 / (1.0 + exp(-(double)m));
        assert_true(fabs(e[i] - l) <= 1e-3 * l); /* rounded to f16 on the way */
    }
    free(af), free(bf), free(cf);
    tg_free(&t);
}

/* Attention over an F16 cache: BATCH_MATMUL and SOFTMAX on F16 tensors (converted, computed in
 * float, rounded to F16 once per op), then MEAN into F32. */
static void test_f16_attention(void **state) {
    (void)state;
    enum { B = 2, N = 3, T = 5, DD = 8 };
    ei_rng r;
    ei_rng_seed(&r, 12);
    float *qf = rnd_f32(&r, B * N * DD, -1, 1), *kf = rnd_f32(&r, B * T * DD, -1, 1);
    uint16_t q[B * N * DD], k[B * T * DD];
    for (int i = 0; i < B * N * DD; i++) q[i] = ei_f32_to_f16(qf[i]), qf[i] = ei_f16_to_f32(q[i]);
    for (int i = 0; i < B * T * DD; i++) k[i] = ei_f32_to_f16(kf[i]), kf[i] = ei_f16_to_f32(k[i]);
    float m[B * N];
    tg t = tg_new("f16att");
    int32_t tq = tg_t(&t, "q", F16, KI, R(B, N, DD)), tk = tg_c(&t, "k", F16, R(B, T, DD), k);
    int32_t ts = tg_t(&t, "s", F16, KV, R(B, N, T)), tp = tg_t(&t, "p", F16, KV, R(B, N, T));
    int32_t tm = tg_t(&t, "m", F32, KV, R(B, N, T)), tc = tg_t(&t, "mc", F32, KO, R(B, N, 1));
    ei_gparams pb = {.bmm = {0, 1}}, ps = {.softmax = {1.0f, 2}}, pm = {.mean = {2, 1}};
    tg_n(&t, EI_OP_BATCH_MATMUL, NIN(tq, tk), ts, &pb);
    tg_n(&t, EI_OP_SOFTMAX, NIN(ts), tp, &ps);
    tg_n(&t, EI_OP_CAST, NIN(tp), tm, NULL);
    tg_n(&t, EI_OP_MEAN, NIN(tm), tc, &pm);
    void *bind[8] = {0};
    bind[tq] = q, bind[tc] = m;
    tg_run(&t, 2, bind);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < N; i++) {
            double sc[T], mx = -1e30, sum = 0, mean = 0;
            for (int j = 0; j < T; j++) {
                double d = 0;
                for (int c = 0; c < DD; c++) d += (double)qf[(b * N + i) * DD + c] * kf[(b * T + j) * DD + c];
                sc[j] = ei_f16_to_f32(ei_f32_to_f16((float)d));
                mx = fmax(mx, sc[j]);
            }
            for (int j = 0; j < T; j++) sum += exp(sc[j] - mx);
            for (int j = 0; j < T; j++) mean += ei_f16_to_f32(ei_f32_to_f16((float)(exp(sc[j] - mx) / sum))) / T;
            assert_true(fabs(m[b * N + i] - mean) < 2e-3 * mean);
        }
    free(qf), free(kf);
    tg_free(&t);
}

/* Quantised element-wise inputs are computed in float: dequantise, op, requantise. */
static void test_quantized_add(void **state) {
    (void)state;
    int8_t a[40], b[40], y[40];
    for (int i = 0; i < 40; i++) a[i] = (int8_t)(i * 7 - 128), b[i] = (int8_t)(100 - i * 5);
    tg t = tg_new("qadd");
    int32_t ta = tg_t(&t, "a", I8, KI, R(40)), tb = tg_t(&t, "b", I8, KI, R(40)), ty = tg_t(&t, "y", I8, KO, R(40));
    t.g->tensors[ta].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = 0.1f, .zero_point = 2, .scales = -1};
    t.g->tensors[tb].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = 0.05f, .zero_point = -1, .scales = -1};
    t.g->tensors[ty].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = 0.2f, .zero_point = 0, .scales = -1};
    tg_n(&t, EI_OP_ADD, NIN(ta, tb), ty, NULL);
    void *bind[3] = {a, b, y};
    tg_run(&t, 2, bind);
    for (int i = 0; i < 40; i++) {
        /* the op in float, the quotient of the requantisation in double (cpu_convert.c) */
        float s = (float)(a[i] - 2) * 0.1f + (float)(b[i] + 1) * 0.05f, q = (float)round((double)s / (double)0.2f);
        q = q < -128 ? -128 : q > 127 ? 127 : q;
        assert_int_equal(y[i], (int)q);
    }
    tg_free(&t);
}

/* FULLY_CONNECTED with quantised activations (I8 x, I8 per-channel w, I32 bias of scale
 * x_scale * w_scale[n], I8 out; the integer path, tests/test_runtime_cpu_int.c): within one output
 * quantum of the exact result. */
static void test_fc_quantized_activations(void **state) {
    (void)state;
    enum { M = 3, K = 20, N = 6 };
    int8_t x[M * K], w[N * K], y[M * N];
    int32_t b[N];
    float ws[N];
    for (int i = 0; i < M * K; i++) x[i] = (int8_t)((i * 29) % 200 - 100);
    for (int i = 0; i < N * K; i++) w[i] = (int8_t)((i * 53) % 254 - 127);
    for (int n = 0; n < N; n++) b[n] = n * 300 - 700, ws[n] = 0.004f * (float)(n + 1);
    tg t = tg_new("qfc");
    int32_t ts = tg_c(&t, "ws", F32, R(N), ws), tw = tg_c(&t, "w", I8, R(N, K), w), tb = tg_c(&t, "b", I32, R(N), b);
    t.g->tensors[tw].q = (ei_gquant){.kind = EI_GQ_CHANNEL, .axis = 0, .scales = ts};
    int32_t tx = tg_t(&t, "x", I8, KI, R(M, K)), ty = tg_t(&t, "y", I8, KO, R(M, N));
    t.g->tensors[tx].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = 0.05f, .zero_point = 1, .scales = -1};
    t.g->tensors[ty].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = 0.1f, .zero_point = -2, .scales = -1};
    tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(tx, tw, tb), ty, NULL);
    void *bind[6] = {0};
    bind[tx] = x, bind[ty] = y;
    tg_run(&t, 2, bind);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = (double)b[n] * 0.05 * ws[n];
            for (int k = 0; k < K; k++) s += (x[m * K + k] - 1) * 0.05 * w[n * K + k] * ws[n];
            double q = fmin(127, fmax(-128, round(s / 0.1) - 2));
            assert_true(fabs(y[m * N + n] - q) <= 1);
        }
    tg_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary),         cmocka_unit_test(test_binary_i32),     cmocka_unit_test(test_unary),
        cmocka_unit_test(test_mean),           cmocka_unit_test(test_softmax),        cmocka_unit_test(test_fc_float),
        cmocka_unit_test(test_fc_quant),       cmocka_unit_test(test_bmm),            cmocka_unit_test(test_gather),
        cmocka_unit_test(test_concat_slice),   cmocka_unit_test(test_transpose),      cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_quantize_dequantize), cmocka_unit_test(test_dequantize_const), cmocka_unit_test(test_cast),
        cmocka_unit_test(test_select),         cmocka_unit_test(test_f16_values),     cmocka_unit_test(test_quantized_add),
        cmocka_unit_test(test_f16_attention),   cmocka_unit_test(test_rope_fused),
        cmocka_unit_test(test_bmm_transposed_fused), cmocka_unit_test(test_bmm_scaled_fused),
        cmocka_unit_test(test_fc_quantized_activations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
