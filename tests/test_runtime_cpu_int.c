/* cpu backend: FULLY_CONNECTED's quantised paths (runtime/graph.h, docs/runtime-cpu.md).
 *  - integer activations (I8 / U8 / I16 x; I8 per-tensor, per-channel, I4 per-group weights; I32
 *    bias; I8 / U8 / I16 out) bit for bit against a reference of the same arithmetic written out
 *    here (TFLite's fixed point), and within one output quantum of the real product;
 *  - requantisation edge cases: multipliers at and near 1, below 2^-31, above 1, saturation of the
 *    output and of the int32 accumulator, negative zero points;
 *  - Q8 activations of I4 weights with float x bit for bit against a scalar emulation of the lanes,
 *    and their error against exact float products (printed; docs/runtime-cpu.md);
 *  - every case for 1, 2 and 3 threads and with the portable kernels: the same bytes;
 *  - QUANTIZE / DEQUANTIZE equal deploy/quant.h's ei_qact_quantize / ei_qact_dequantize. */
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

#include "runtime/cpu_internal.h"

/* deploy/quant.c is host-side code built from libc + libm only (deploy/quant.h); runtime tests link
 * ei_runtime alone, so its source is compiled into this test to compare QUANTIZE with it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
#if defined(__clang__)
#pragma GCC diagnostic ignored "-Wsource-uses-openmp"
#endif
#include "deploy/quant.c"
#pragma GCC diagnostic pop

/* ---------------------------------------------------------------- reference fixed point
 * gemmlowp / TFLite, as in tensorflow/lite/kernels/internal/common.h and quantization_util.cc,
 * plus what TFLite leaves undefined: the accumulator and the left shift saturate. */
static int32_t r_srdhm(int32_t a, int32_t b) {
    int overflow = a == b && a == INT32_MIN;
    int64_t ab = (int64_t)a * (int64_t)b;
    int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    int32_t hi = (int32_t)((ab + nudge) / (1ll << 31));
    return overflow ? INT32_MAX : hi;
}

static int32_t r_rdbpot(int32_t x, int e) {
    int32_t mask = (int32_t)((1ll << e) - 1), rem = x & mask, thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (int32_t)(((int64_t)x - (int64_t)rem) / (1ll << e)) + (rem > thr ? 1 : 0); /* (x >> e) */
}

static int32_t r_sat(int64_t v) { return v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : (int32_t)v; }

static int32_t r_mbqm(int64_t acc, int32_t qm, int shift) {
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    int32_t x = r_sat(acc);
    return r_rdbpot(r_srdhm(r_sat((int64_t)x * ((int64_t)1 << left)), qm), right);
}

static void r_qmult(double m, int32_t *qm, int *shift) {
    *qm = 0, *shift = 0;
    if (m == 0.0) return;
    double q = frexp(m, shift);
    int64_t f = (int64_t)round(q * (double)(1ll << 31));
    if (f == (1ll << 31)) f /= 2, ++*shift;
    if (*shift < -31) {
        *shift = 0, f = 0;
    }
    if (*shift > 31) *shift = 31, f = INT32_MAX;
    *qm = (int32_t)f;
}

static void test_fixed_point(void **state) {
    (void)state;
    const int32_t edge[] = {INT32_MIN, INT32_MIN + 1, -(1 << 30) - 1, -(1 << 30), -65537, -3, -2, -1, 0, 1, 2, 3,
                            65535, 1 << 30, (1 << 30) + 1, INT32_MAX - 1, INT32_MAX};
    const int ne = (int)(sizeof edge / sizeof *edge);
    for (int i = 0; i < ne; i++)
        for (int j = 0; j < ne; j++) assert_int_equal(ei_cpu_srdhm(edge[i], edge[j]), r_srdhm(edge[i], edge[j]));
    for (int i = 0; i < ne; i++)
        for (int e = 0; e <= 31; e++) assert_int_equal(ei_cpu_rdbpot(edge[i], e), r_rdbpot(edge[i], e));
    const double ms[] = {1.0, 1.0 - 1e-10, 1.0 - ldexp(1, -33), 1.0 + 1e-9, 0.5, 0.25 + 1e-12, 0.999999940395,
                         ldexp(1, -31), ldexp(1, -32), ldexp(1, -32) * 1.5, 1e-12, 3.7, 1000.0, ldexp(1, 31),
                         ldexp(1, 40), 1e-5, 0.0};
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) {
        int32_t a, b, sa;
        int sb;
        ei_cpu_quantize_multiplier(ms[i], &a, &sa);
        r_qmult(ms[i], &b, &sb);
        assert_int_equal(a, b);
        assert_int_equal(sa, sb);
        if (ms[i] > 0 && ms[i] < ldexp(1, 31) && ms[i] >= ldexp(1, -31)) assert_true(a >= (1 << 30));
    }
    /* ties: as gemmlowp, the doubling high multiply rounds half up, the shift half away from 0 */
    int32_t qm, sh;
    ei_cpu_quantize_multiplier(0.5, &qm, &sh);
    assert_int_equal(ei_cpu_requant(3, qm, sh), 2);
    assert_int_equal(ei_cpu_requant(-3, qm, sh), -1);
    ei_cpu_quantize_multiplier(0.25, &qm, &sh);
    assert_int_equal(ei_cpu_requant(6, qm, sh), 2);
    assert_int_equal(ei_cpu_requant(-6, qm, sh), -2);
    assert_int_equal(ei_cpu_requant(-5, qm, sh), -1);
    /* random accumulators and multipliers: equal to the reference, and within one unit of acc * m
     * (two roundings; the Q31 mantissa is good to 2^-31 relative) */
    ei_rng r;
    ei_rng_seed(&r, 77);
    for (int it = 0; it < 200000; it++) {
        const double m = exp(-30.0 + 32.0 * ei_rng_uniform(&r)); /* 1e-13 .. 7.9e0 */
        int64_t acc = (int64_t)ei_rng_below(&r, 1ull << 33) - (1ll << 32);
        if (it % 3 == 0) acc >>= ei_rng_below(&r, 30);
        int32_t q1, s1, q2;
        int s2;
        ei_cpu_quantize_multiplier(m, &q1, &s1);
        r_qmult(m, &q2, &s2);
        assert_int_equal(q1, q2);
        assert_int_equal(s1, s2);
        const int32_t got = ei_cpu_requant(acc, q1, s1);
        assert_int_equal(got, r_mbqm(acc, q2, s2));
        const double real = (double)r_sat(acc) * m;
        const double shifted = (double)r_sat(acc) * ldexp(1, s1 > 0 ? s1 : 0); /* a left shift saturates */
        if (fabs(shifted) < 2147483647.0 && !(fabs((double)got - real) <= 1.0 + fabs(real) * ldexp(1, -30))) {
            fprintf(stderr, "acc %lld m %.17g (%d, %d): got %d, real %.6f\n", (long long)acc, m, q1, s1, got, real);
            fail();
        }
    }
}

/* ---------------------------------------------------------------- graphs */
typedef struct {
    int xt;       /* I8, U8, I16 */
    int32_t xzp;
    int wt;       /* I8, I4 */
    int wq;       /* EI_GQ_TENSOR, EI_GQ_CHANNEL, EI_GQ_GROUP */
    int32_t wzp;  /* per-tensor I8 only */
    int group;    /* I4 */
    int scale16;  /* F16 scales (CHANNEL / GROUP) */
    int bias;     /* 0: none, 1: I32, 2: I32 with a per-tensor scale */
    double oscale_mul; /* output scale = max |real| / qmax x this (> 1.4 saturates some) */
    int32_t ozp;
} icfg;

static int64_t elsz(int t) { return t == I16 ? 2 : 1; }
static int32_t get_q(int t, const void *p, int64_t i) {
    return t == I8 ? ((const int8_t *)p)[i] : t == U8 ? ((const uint8_t *)p)[i] : ((const int16_t *)p)[i];
}
static void qrange_of(int t, int32_t *lo, int32_t *hi) {
    *lo = t == I8 ? -128 : t == U8 ? 0 : -32768;
    *hi = t == I8 ? 127 : t == U8 ? 255 : 32767;
}

/* A CONST weight whose q is set before its bytes are placed (its size depends on the type). */
static int32_t add_qweight(tg *t, int type, ei_gquant q, int32_t N, int32_t K, const void *data) {
    int32_t w = tg_t(t, "w", type, KC, R(N, K));
    ei_gtensor *wt = &t->g->tensors[w];
    wt->q = q;
    uint64_t off = (t->size + 63) & ~(uint64_t)63, bytes = ei_gtensor_bytes(wt);
    t->cap = off + bytes + 64;
    t->blob = realloc(t->blob, (size_t)t->cap);
    assert_non_null(t->blob);
    memset(t->blob + t->size, 0, (size_t)(off - t->size));
    memcpy(t->blob + off, data, (size_t)bytes);
    wt->offset = off, wt->size = bytes, t->size = off + bytes;
    return w;
}

/* Runs g with threads 1, 2, 3 and portable kernels: all must write the same bytes to y (ybytes). */
static void run_all(const tg *t, void **bind, int32_t ty, size_t ybytes, void *out1) {
    void *y = bind[ty];
    tg_run(t, 1, bind);
    memcpy(out1, y, ybytes);
    for (int th = 2; th <= 4; th++) {
        memset(y, 0x5a, ybytes);
        int rc = tg_run_opts(t, (ei_cpu_options){.threads = th == 4 ? 2 : th, .portable = th == 4}, bind, NULL);
        assert_int_equal(rc, 0);
        if (memcmp(y, out1, ybytes) != 0) {
            fprintf(stderr, "%s: threads %d%s differ from 1 thread\n", t->g->name, th == 4 ? 2 : th,
                    th == 4 ? " (portable)" : "");
            fail();
        }
    }
}

static int64_t off_by_one, counted; /* I8 outputs != round_half_away(real), of those in range */

static int int_case(const icfg *c, int32_t M, int32_t K, int32_t N, uint64_t seed) {
    ei_rng r;
    ei_rng_seed(&r, seed);
    int32_t xlo, xhi, olo, ohi;
    qrange_of(c->xt, &xlo, &xhi);
    qrange_of(c->xt, &olo, &ohi);
    const int i4 = c->wt == I4;
    const int64_t G = i4 ? c->group : K, ng = K / G, rb = i4 ? (K + 1) / 2 : K;
    const float xs = (float)(0.001 + 0.05 * ei_rng_uniform(&r));
    void *x = malloc((size_t)(M * K * elsz(c->xt)));
    for (int64_t i = 0; i < (int64_t)M * K; i++) {
        int32_t v = xlo + (int32_t)ei_rng_below(&r, (uint64_t)(xhi - xlo + 1));
        if (c->xt == I16 && i % 5) v /= 64; /* mostly moderate, some full-range values */
        if (c->xt == I8) ((int8_t *)x)[i] = (int8_t)v;
        else if (c->xt == U8) ((uint8_t *)x)[i] = (uint8_t)v;
        else ((int16_t *)x)[i] = (int16_t)v;
    }
    int32_t *wv = malloc((size_t)(N * K) * sizeof *wv);
    uint8_t *wb = calloc((size_t)(N * rb), 1);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            int32_t v = i4 ? (int32_t)ei_rng_below(&r, 16) - 8 : (int32_t)ei_rng_below(&r, 256) - 128;
            wv[n * K + k] = v;
            if (i4) wb[n * rb + k / 2] |= (uint8_t)((v & 15) << (4 * (k & 1)));
            else wb[n * rb + k] = (uint8_t)(int8_t)v;
        }
    const int64_t nsc = c->wq == EI_GQ_GROUP ? N * ng : N;
    float *ws = malloc((size_t)nsc * sizeof *ws);
    uint16_t *ws16 = malloc((size_t)nsc * 2);
    for (int64_t i = 0; i < nsc; i++) {
        ws[i] = (float)(0.002 + 0.03 * ei_rng_uniform(&r));
        ws16[i] = ei_f32_to_f16(ws[i]);
        if (c->scale16) ws[i] = ei_f16_to_f32(ws16[i]);
    }
    if (c->wq == EI_GQ_TENSOR) ws[0] = (float)(0.002 + 0.03 * ei_rng_uniform(&r));
    int32_t *bias = malloc((size_t)N * sizeof *bias);
    for (int64_t n = 0; n < N; n++) bias[n] = (int32_t)ei_rng_below(&r, 20001) - 10000;
    const float bs_tensor = c->wq == EI_GQ_TENSOR ? xs * ws[0] : xs * 0.37f; /* I4: any scale */
    /* real values: (x - zx) xs (w - zw) ws + b bs */
    double *real = zeros_f64((int64_t)M * N), amax = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                const double wsc = c->wq == EI_GQ_TENSOR ? ws[0] : c->wq == EI_GQ_CHANNEL ? ws[n] : ws[n * ng + k / G];
                s += (double)(get_q(c->xt, x, m * K + k) - c->xzp) * xs * (double)(wv[n * K + k] - c->wzp) * wsc;
            }
            if (c->bias) { /* I8 weights: NNAPI's units x_scale * w_scale[n]; I4: the bias's scale or x_scale */
                const double bsc = i4 ? (c->bias == 2 ? bs_tensor : xs) : (double)xs * (c->wq == EI_GQ_TENSOR ? ws[0] : ws[n]);
                s += bias[n] * bsc;
            }
            real[m * N + n] = s;
            if (fabs(s) > amax) amax = fabs(s);
        }
    const float os = (float)((amax > 0 ? amax : 1) / (double)(ohi - olo) * 2.0 * c->oscale_mul);

    tg t = tg_new("qfc");
    ei_gquant wq = {.kind = (ei_gquant_kind)c->wq, .scale = ws[0], .zero_point = c->wzp, .axis = i4, .group = (int32_t)G, .scales = -1};
    if (c->wq == EI_GQ_CHANNEL) wq.scales = tg_c(&t, "ws", c->scale16 ? F16 : F32, R(N), c->scale16 ? (void *)ws16 : (void *)ws);
    if (c->wq == EI_GQ_GROUP)
        wq.scales = tg_c(&t, "ws", c->scale16 ? F16 : F32, R(N, (int32_t)ng), c->scale16 ? (void *)ws16 : (void *)ws);
    if (c->wq == EI_GQ_TENSOR) wq.scale = ws[0];
    int32_t tw = add_qweight(&t, c->wt, wq, N, K, wb);
    int32_t tb = c->bias ? tg_c(&t, "b", I32, R(N), bias) : -1;
    if (c->bias == 2) t.g->tensors[tb].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = bs_tensor, .scales = -1};
    int32_t tx = tg_t(&t, "x", c->xt, KI, R(M, K)), ty = tg_t(&t, "y", c->xt, KO, R(M, N));
    t.g->tensors[tx].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = xs, .zero_point = c->xzp, .scales = -1};
    t.g->tensors[ty].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = os, .zero_point = c->ozp, .scales = -1};
    if (c->bias) tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(tx, tw, tb), ty, NULL);
    else tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(tx, tw), ty, NULL);
    const size_t yb = (size_t)(M * N * elsz(c->xt));
    void *y = malloc(yb), *y1 = malloc(yb);
    void **bind = calloc((size_t)t.g->n_tensors, sizeof *bind);
    bind[tx] = x, bind[ty] = y;
    run_all(&t, bind, ty, yb, y1);

    /* the reference, bit for bit */
    int saturated = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int64_t v;
            if (!i4) {
                int64_t acc = 0;
                for (int64_t k = 0; k < K; k++)
                    acc += (int64_t)(get_q(c->xt, x, m * K + k) - c->xzp) * (wv[n * K + k] - c->wzp);
                if (c->bias) acc += bias[n];
                int32_t qm;
                int sh;
                r_qmult((double)xs * (double)(c->wq == EI_GQ_TENSOR ? ws[0] : ws[n]) / (double)os, &qm, &sh);
                v = (int64_t)r_mbqm(acc, qm, sh) + c->ozp;
            } else {
                float f = 0.0f;
                for (int64_t g = 0; g < ng; g++) {
                    int64_t dot = 0;
                    for (int64_t k = g * G; k < (g + 1) * G; k++)
                        dot += (int64_t)(get_q(c->xt, x, m * K + k) - c->xzp) * wv[n * K + k];
                    f = f + (float)dot * (xs * ws[n * ng + g]);
                }
                if (c->bias) f = f + (float)bias[n] * (c->bias == 2 ? bs_tensor : xs);
                const double rr = round((double)f / (double)os); /* the quotient in double, as the kernel */
                v = (int64_t)rr + c->ozp;
            }
            v = v < olo ? olo : v > ohi ? ohi : v;
            const int32_t got = get_q(c->xt, y1, m * N + n);
            if (got != v) {
                fprintf(stderr, "int FC x%s zp%d w%s q%d zp%d g%d M%d K%d N%d: (%lld, %lld) got %d want %lld\n",
                        ei_gtype_name((ei_gtype)c->xt), c->xzp, ei_gtype_name((ei_gtype)c->wt), c->wq, c->wzp, c->group, M,
                        K, N, (long long)m, (long long)n, got, (long long)v);
                fail();
            }
            /* and the real product, within one output quantum (or saturated toward it) */
            const double q = real[m * N + n] / os + c->ozp;
            if (got == olo || got == ohi) saturated++;
            else if (!i4) off_by_one += got != (int32_t)round(q), counted++;
            if (got == olo) assert_true(q <= olo + 1.0);
            else if (got == ohi) assert_true(q >= ohi - 1.0);
            else assert_true(fabs(got - q) <= 1.0 + 1e-5 * fabs(q));
        }
    free(x), free(wv), free(wb), free(ws), free(ws16), free(bias), free(real), free(y), free(y1), free(bind);
    tg_free(&t);
    return saturated;
}

static void test_int_fc(void **state) {
    (void)state;
    const struct {
        int t;
        int32_t zp;
    } xs[] = {{I8, -5}, {I8, -128}, {U8, 128}, {U8, 3}, {I16, 0}};
    const icfg ws[] = {
        {.wt = I8, .wq = EI_GQ_CHANNEL},
        {.wt = I8, .wq = EI_GQ_CHANNEL, .scale16 = 1, .bias = 1},
        {.wt = I8, .wq = EI_GQ_CHANNEL, .bias = 2},
        {.wt = I8, .wq = EI_GQ_TENSOR, .bias = 2},
        {.wt = I8, .wq = EI_GQ_TENSOR, .wzp = 3, .bias = 1},
        {.wt = I8, .wq = EI_GQ_TENSOR, .wzp = -100},
        {.wt = I4, .wq = EI_GQ_GROUP, .group = 8, .scale16 = 1},
        {.wt = I4, .wq = EI_GQ_GROUP, .group = 24, .bias = 1},
        {.wt = I4, .wq = EI_GQ_GROUP, .group = 32, .scale16 = 1, .bias = 2},
        {.wt = I4, .wq = EI_GQ_GROUP, .group = 64, .scale16 = 1},
        {.wt = I4, .wq = EI_GQ_GROUP, .group = 128, .scale16 = 1, .bias = 1},
    };
    const int32_t Ms[] = {1, 5}, Ns[] = {1, 6, 13, 33};
    int cases = 0, sat = 0;
    for (size_t xi = 0; xi < sizeof xs / sizeof *xs; xi++)
        for (size_t wi = 0; wi < sizeof ws / sizeof *ws; wi++) {
            icfg c = ws[wi];
            c.xt = xs[xi].t, c.xzp = xs[xi].zp;
            const int32_t Ks[3] = {c.wt == I4 ? c.group : 17, c.wt == I4 ? 3 * c.group : 200, c.wt == I4 ? 5 * c.group : 770};
            for (int ki = 0; ki < 3; ki++)
                for (int mi = 0; mi < 2; mi++) {
                    const int32_t N = Ns[(ki + mi + wi) % 4];
                    c.oscale_mul = (ki + wi) % 4 == 0 ? 0.4 : 1.0; /* every fourth saturates */
                    c.ozp = (int32_t)((xi + wi + ki) % 3) * (c.xt == U8 ? 60 : c.xt == I8 ? -50 : -300);
                    if (c.xt == U8) c.ozp += 30;
                    sat += int_case(&c, Ms[mi], Ks[ki], N, 1000 * xi + 10 * wi + ki);
                    cases++;
                }
        }
    printf("integer FULLY_CONNECTED: %d graphs bit-exact (threads 1/2/3, portable), %d outputs saturated; I8 weights: "
           "%lld of %lld outputs differ by one from the rounded real product (fixed-point double rounding)\n",
           cases, sat, (long long)off_by_one, (long long)counted);
    assert_true(sat > 0);
}

/* K = 1 graphs pin the requantisation: y = clamp(requant((x - zx) (w - zw) + b) + zo). */
static void edge_case(int type, float xs_, int32_t xzp, float ws_, int32_t wq8, float os, int32_t ozp, int32_t K,
                      const int32_t *want_at, int nwant) {
    tg t = tg_new("edge");
    int8_t w[2048];
    for (int32_t k = 0; k < K; k++) w[k] = (int8_t)wq8;
    int32_t tw = add_qweight(&t, I8, (ei_gquant){.kind = EI_GQ_TENSOR, .scale = ws_, .scales = -1}, 1, K, w);
    int32_t xlo, xhi;
    qrange_of(type, &xlo, &xhi);
    const int32_t M = xhi - xlo + 1 < 512 ? xhi - xlo + 1 : 512;
    int32_t tx = tg_t(&t, "x", type, KI, R(M, K)), ty = tg_t(&t, "y", type, KO, R(M, 1));
    t.g->tensors[tx].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = xs_, .zero_point = xzp, .scales = -1};
    t.g->tensors[ty].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = os, .zero_point = ozp, .scales = -1};
    tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(tx, tw), ty, NULL);
    void *x = malloc((size_t)(M * K * 2)), *y = malloc((size_t)M * 2), *y1 = malloc((size_t)M * 2);
    for (int32_t m = 0; m < M; m++) { /* every value of I8 / U8; a spread of I16 */
        const int32_t v = M == xhi - xlo + 1 ? xlo + m : xlo + (int32_t)((int64_t)m * (xhi - xlo) / (M - 1));
        for (int32_t k = 0; k < K; k++) {
            if (type == I8) ((int8_t *)x)[m * K + k] = (int8_t)v;
            else if (type == U8) ((uint8_t *)x)[m * K + k] = (uint8_t)v;
            else ((int16_t *)x)[m * K + k] = (int16_t)v;
        }
    }
    void *bind[4] = {0};
    bind[tx] = x, bind[ty] = y;
    run_all(&t, bind, ty, (size_t)(M * elsz(type)), y1);
    int32_t qm, sh, olo, ohi;
    int shi;
    r_qmult((double)xs_ * ws_ / os, &qm, &shi);
    sh = shi;
    qrange_of(type, &olo, &ohi);
    for (int32_t m = 0; m < M; m++) {
        const int64_t acc = (int64_t)K * (get_q(type, x, (int64_t)m * K) - xzp) * wq8;
        int64_t v = (int64_t)r_mbqm(acc, qm, sh) + ozp;
        v = v < olo ? olo : v > ohi ? ohi : v;
        assert_int_equal(get_q(type, y1, m), v);
    }
    for (int i = 0; i < nwant; i++) assert_int_equal(get_q(type, y1, want_at[2 * i]), want_at[2 * i + 1]);
    free(x), free(y), free(y1);
    tg_free(&t);
}

static void test_requant_edges(void **state) {
    (void)state;
    /* multiplier 1: the identity (x = -128 .. 127 at rows 0 .. 255) */
    edge_case(I8, 0.5f, 0, 2.0f, 1, 1.0f, 0, 1, (const int32_t[]){0, -128, 128, 0, 255, 127}, 3);
    /* just below and just above 1 (the Q31 mantissa rounds up to 2^31 below 1): still the identity */
    edge_case(I8, 1.0f, 0, 0.99999994f, 1, 1.0f, 0, 1, (const int32_t[]){0, -128, 255, 127, 200, 72}, 3);
    edge_case(I8, 1.0f, 0, 1.0000001f, 1, 1.0f, 0, 1, (const int32_t[]){0, -128, 255, 127, 129, 1}, 3);
    /* below 2^-31: flushed to 0, every output is the zero point */
    edge_case(I8, 1e-3f, 3, 1e-3f, 1, 1e6f, -7, 1, (const int32_t[]){0, -7, 255, -7}, 2);
    /* above 1 (left shifts) and saturation at both ends; negative zero points */
    edge_case(I8, 1.0f, -128, 1.0f, 1, 1e-2f, -100, 1, (const int32_t[]){0, -100, 1, 0, 2, 100, 3, 127, 255, 127}, 5);
    edge_case(I8, 1.0f, 10, 1.0f, -1, 0.3f, -128, 1, (const int32_t[]){0, 127, 138, -128, 255, -128}, 3);
    edge_case(U8, 0.01f, 255, 0.5f, 1, 0.02f, 255, 4, (const int32_t[]){255, 255, 0, 0}, 2);
    edge_case(I16, 1.0f, 0, 1.0f, 3, 1.0f, 0, 1, (const int32_t[]){0, -32768, 511, 32767}, 2);
    /* an accumulator beyond int32 saturates before requantisation: K = 1024 of 32767 x 127 =
     * 4.26e9 becomes 2^31 - 1, so y = round((2^31 - 1) x 1e-6) = 2147, not 4261 */
    edge_case(I16, 1.0f, 0, 1.0f, 127, 1e6f, 0, 1024, (const int32_t[]){511, 2147}, 1);
}

/* ---------------------------------------------------------------- Q8 activations of I4 weights */
/* The lanes of fc_q4 written out: lane l of block b covers k = 64 b + 8 l .. + 7 (one group g);
 * acc_l = fmaf((float)dot, w_scale(n, g) * x_scale(g), acc_l), b ascending; then v8_hsum's tree. */
static float q8_lanes(const int8_t *q8, const float *xs, const int8_t *q4, const float *wsr, int64_t K, int64_t G) {
    float acc[8] = {0};
    for (int64_t b = 0; b * 64 < K; b++)
        for (int l = 0; l < 8; l++) {
            const int64_t k0 = 64 * b + 8 * l;
            if (k0 >= K) continue;
            int32_t dot = 0;
            for (int64_t k = k0; k < k0 + 8 && k < K; k++) dot += q8[k] * q4[k];
            acc[l] = fmaf((float)dot, wsr[k0 / G] * xs[k0 / G], acc[l]);
        }
    float t[4], u[2];
    for (int j = 0; j < 4; j++) t[j] = acc[j] + acc[j + 4];
    for (int j = 0; j < 2; j++) u[j] = t[j] + t[j + 2];
    return u[0] + u[1];
}

/* y = FULLY_CONNECTED(x, w4 [N, K] group G): bit-exact against q8_lanes for threads 1/2/3 and
 * portable; returns the relative error (2-norm) against exact float products, err_max the largest
 * error relative to sum |x w| of an output. xmode 0: uniform [-1, 1]; 1: normal with 1% outliers
 * x 20; 2: special values (zeros, one NaN / inf group); 3: normal. */
static double q8_case(int32_t M, int32_t K, int32_t N, int32_t G, int xmode, int bias, uint64_t seed, double *err_max) {
    ei_rng r;
    ei_rng_seed(&r, seed);
    const int64_t ng = K / G, rb = (K + 1) / 2;
    float *x = malloc((size_t)(M * K) * sizeof *x), *ws = malloc((size_t)(N * ng) * sizeof *ws);
    float *b = rnd_f32(&r, N, -1, 1);
    int8_t *q4 = malloc((size_t)(N * K));
    uint8_t *wb = calloc((size_t)(N * rb), 1);
    uint16_t *ws16 = malloc((size_t)(N * ng) * 2);
    for (int64_t i = 0; i < (int64_t)M * K; i++) {
        x[i] = xmode == 0 ? (float)(2 * ei_rng_uniform(&r) - 1) : (float)ei_rng_normal(&r);
        if (xmode == 1 && ei_rng_below(&r, 100) == 0) x[i] *= 20.0f;
        if (xmode == 2) x[i] = i % 7 == 0 ? 0.0f : x[i];
    }
    if (xmode == 2 && M > 1) { /* row 0: all zero; row 1: a NaN; row 2 (if any): an infinity */
        for (int64_t k = 0; k < K; k++) x[k] = 0.0f;
        x[K + 3] = NAN;
        if (M > 2) x[2 * K + K - 1] = INFINITY;
    }
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            int v = (int)ei_rng_below(&r, 15) - 7;
            q4[n * K + k] = (int8_t)v;
            wb[n * rb + k / 2] |= (uint8_t)((v & 15) << (4 * (k & 1)));
        }
    for (int64_t i = 0; i < N * ng; i++) ws16[i] = ei_f32_to_f16((float)(0.01 + 0.02 * ei_rng_uniform(&r))), ws[i] = ei_f16_to_f32(ws16[i]);
    tg t = tg_new("q8");
    int32_t ts = tg_c(&t, "ws", F16, R(N, (int32_t)ng), ws16);
    int32_t tw = add_qweight(&t, I4, (ei_gquant){.kind = EI_GQ_GROUP, .axis = 1, .group = G, .scales = ts}, N, K, wb);
    int32_t tb = bias ? tg_c(&t, "b", F32, R(N), b) : -1;
    int32_t tx = tg_t(&t, "x", F32, KI, R(M, K)), ty = tg_t(&t, "y", F32, KO, R(M, N));
    if (bias) tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(tx, tw, tb), ty, NULL);
    else tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(tx, tw), ty, NULL);
    float *y = zeros_f32((int64_t)M * N), *y1 = zeros_f32((int64_t)M * N);
    void **bind = calloc((size_t)t.g->n_tensors, sizeof *bind);
    bind[tx] = x, bind[ty] = y;
    run_all(&t, bind, ty, (size_t)(M * N) * 4, y1);
    int8_t *q8 = malloc((size_t)K);
    float *xs = malloc((size_t)K * sizeof *xs);
    double se = 0, sr = 0;
    *err_max = 0;
    for (int64_t m = 0; m < M; m++) {
        ref_q8(x + m * K, K, G, q8, xs);
        for (int64_t n = 0; n < N; n++) {
            float want = q8_lanes(q8, xs, q4 + n * K, ws + n * ng, K, G);
            if (bias) want += b[n];
            const float got = y1[m * N + n];
            if (memcmp(&got, &want, 4) != 0 && !(got != got && want != want)) {
                fprintf(stderr, "Q8 M%d K%d N%d G%d x%d: (%lld, %lld) got %.9g want %.9g\n", M, K, N, G, xmode,
                        (long long)m, (long long)n, (double)got, (double)want);
                fail();
            }
            double ex = bias ? b[n] : 0, mag = fabs(ex);
            int finite = 1;
            for (int64_t k = 0; k < K; k++) {
                if (!isfinite(x[m * K + k])) finite = 0;
                const double p = (double)x[m * K + k] * ((double)q4[n * K + k] * ws[n * ng + k / G]);
                ex += p, mag += fabs(p);
            }
            if (!finite) {
                assert_true(got != got); /* NaN, whatever the weights */
                continue;
            }
            se += (got - ex) * (got - ex), sr += ex * ex;
            if (mag > 0 && fabs(got - ex) / mag > *err_max) *err_max = fabs(got - ex) / mag;
        }
    }
    free(x), free(ws), free(b), free(q4), free(wb), free(ws16), free(y), free(y1), free(bind), free(q8), free(xs);
    tg_free(&t);
    return sr > 0 ? sqrt(se / sr) : 0.0;
}

static void test_q8_activations(void **state) {
    (void)state;
    double em;
    /* awkward shapes: groups not a multiple of 16, odd group counts, rows ending inside a block,
     * more than 8 groups (several chunks), GEMM (M > 1) and GEMV */
    const int32_t shapes[][3] = {{8, 1}, {8, 5}, {24, 3}, {32, 1}, {32, 3}, {32, 7}, {32, 11}, {64, 5}, {128, 3}, {40, 9}, {16, 17}, {20, 1}, {100, 1}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const int32_t G = shapes[i][0], K = G * shapes[i][1];
        for (int32_t M = 1; M <= 6; M += 5) {
            q8_case(M, K, 1 + (int32_t)(i * 5) % 19, G, 0, (int)i % 2, 100 + i, &em);
            q8_case(M, K, 13, G, 1, 1, 200 + i, &em);
        }
        q8_case(5, K, 7, G, 2, 1, 300 + i, &em);
    }
    /* the accuracy of Q8 against exact float products (docs/runtime-cpu.md) */
    const int32_t Gs[3] = {32, 64, 128};
    const char *xn[4] = {"uniform", "normal, 1% x 20", "", "normal"};
    for (int gi = 0; gi < 3; gi++)
        for (int xm = 0; xm < 4; xm += xm == 1 ? 2 : 1) {
            const double rel = q8_case(4, 768, 256, Gs[gi], xm, 0, 400 + gi * 4 + xm, &em);
            printf("Q8 x w4g%d, K 768, x %s: relative error %.2e (2-norm), max %.2e of sum |x w|\n", Gs[gi], xn[xm],
                   rel, em);
            assert_true(rel < (xm == 0 ? 0.01 : 0.1));
        }
}

/* The float fallback: I16 input with a zero point (x - zp may leave int16) dequantises, multiplies in
 * float and requantises: within one output quantum of the real product. */
static void test_int_fallback(void **state) {
    (void)state;
    enum { M = 3, K = 40, N = 5 };
    int16_t x[M * K], y[M * N];
    int8_t w[N * K];
    for (int i = 0; i < M * K; i++) x[i] = (int16_t)((i * 7919) % 60000 - 30000);
    for (int i = 0; i < N * K; i++) w[i] = (int8_t)((i * 53) % 254 - 127);
    tg t = tg_new("fallback");
    int32_t tw = add_qweight(&t, I8, (ei_gquant){.kind = EI_GQ_TENSOR, .scale = 0.01f, .scales = -1}, N, K, w);
    int32_t tx = tg_t(&t, "x", I16, KI, R(M, K)), ty = tg_t(&t, "y", I16, KO, R(M, N));
    t.g->tensors[tx].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = 1e-3f, .zero_point = 1000, .scales = -1};
    t.g->tensors[ty].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = 2e-3f, .zero_point = -20, .scales = -1};
    tg_n(&t, EI_OP_FULLY_CONNECTED, NIN(tx, tw), ty, NULL);
    void *bind[4] = {0};
    bind[tx] = x, bind[ty] = y;
    tg_run(&t, 2, bind);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (x[m * K + k] - 1000) * 1e-3 * w[n * K + k] * 0.01;
            const double q = fmin(32767, fmax(-32768, s / 2e-3 - 20));
            assert_true(fabs(y[m * N + n] - q) <= 1.0);
        }
    tg_free(&t);
}

/* ---------------------------------------------------------------- QUANTIZE / DEQUANTIZE */
static void test_qact_consistency(void **state) {
    (void)state;
    ei_rng r;
    ei_rng_seed(&r, 5);
    enum { n = 4096 };
    const ei_qact acts[3] = {EI_QA_A16, EI_QA_A8, EI_QA_A8S};
    for (int ai = 0; ai < 3; ai++)
        for (int rep = 0; rep < 4; rep++) {
            const float lo = (float)(-10 * ei_rng_uniform(&r)) * (rep == 3 ? 0 : 1), hi = (float)(0.01 + 30 * ei_rng_uniform(&r));
            ei_qaparams p;
            assert_int_equal(ei_qact_params(acts[ai], lo, hi, &p), 0);
            float *x = malloc(n * sizeof *x), *b1 = malloc(n * sizeof *b1), *b2 = malloc(n * sizeof *b2);
            for (int i = 0; i < n; i++) {
                const double u = ei_rng_uniform(&r);
                x[i] = (float)(lo - 2 + (hi - lo + 4) * u);
                if (i % 5 == 0) x[i] = (float)((double)((int)(u * 400) - 200) + 0.5) * p.scale; /* ties */
                if (i % 97 == 0) x[i] = i % 2 ? -0.0f : 0.0f;
            }
            x[1] = INFINITY, x[2] = -INFINITY, x[3] = NAN, x[4] = 1e30f;
            uint8_t q1[2 * n], q2[2 * n];
            tg t = tg_new("qact");
            int32_t tx = tg_t(&t, "x", F32, KI, R(n)), tq = tg_t(&t, "q", p.type, KO, R(n)), tb = tg_t(&t, "b", F32, KO, R(n));
            t.g->tensors[tq].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = p.scale, .zero_point = p.zero_point, .scales = -1};
            tg_n(&t, EI_OP_QUANTIZE, NIN(tx), tq, NULL);
            tg_n(&t, EI_OP_DEQUANTIZE, NIN(tq), tb, NULL);
            void *bind[3] = {x, q1, b1};
            tg_run(&t, 2, bind);
            ei_qact_quantize(&p, x, n, q2);
            ei_qact_dequantize(&p, q2, n, b2);
            assert_memory_equal(q1, q2, (size_t)n * (p.type == EI_GT_I16 ? 2 : 1));
            assert_memory_equal(b1, b2, (size_t)n * 4);
            free(x), free(b1), free(b2);
            tg_free(&t);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_point),     cmocka_unit_test(test_int_fc),         cmocka_unit_test(test_requant_edges),
        cmocka_unit_test(test_q8_activations),  cmocka_unit_test(test_int_fallback),   cmocka_unit_test(test_qact_consistency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
