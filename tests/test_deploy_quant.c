/* deploy/quant: scheme names, sizes against the graph IR, quantise / dequantise round-trip bounds on
 * random and adversarial weights (constant rows, one huge outlier, all zero, subnormals, +-0, rows
 * that are not a multiple of the group), the MSE search never worse than max-abs, f16 round trips,
 * NaN / inf errors naming the tensor, activation parameters, and quantised FULLY_CONNECTED weights
 * run on the cpu backend against their dequantised values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_half.h"
#include "deploy/quant.h"
#include "tests/test_runtime_cpu_util.h" /* ref_q8: the Q8 rule of I4 layers */
#include "runtime/backend.h"
#include "runtime/graph.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ei_qscheme qschemes[] = {EI_QW_W8, EI_QW_W4G32, EI_QW_W4G64, EI_QW_W4G128};
#define NQ (int)(sizeof qschemes / sizeof qschemes[0])

static void expect_error(const char *frag) {
    if (!strstr(ei_error_get(), frag)) fail_msg("error '%s' lacks '%s'", ei_error_get(), frag);
}

/* A small deterministic generator (the tests must not depend on another module's sequence). */
static uint64_t rs = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) * (1.0 / 9007199254740992.0);
}
static float nrand(void) {
    double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static float scale_of(ei_qscheme s, const void *scales, int64_t cols, int64_t r, int64_t c) {
    ei_qscheme_info in = ei_qscheme_describe(s);
    if (in.scale_type == EI_GT_F32) return ((const float *)scales)[r];
    int64_t ng = cols / in.group;
    return ei_f16_to_f32(((const uint16_t *)scales)[r * ng + c / in.group]);
}

/* Quantises w under s (clip mode), checks every element against the bound and the statistics, and
 * returns the reported SSE. */
static double check_roundtrip(const float *w, int64_t rows, int64_t cols, ei_qscheme s, ei_qclip clip) {
    ei_qopts o;
    ei_qopts_default(&o);
    o.clip = clip;
    ei_qtensor q;
    if (ei_qtensor_quantize(&q, "t", w, rows, cols, s, &o)) fail_msg("%s", ei_error_get());
    float *d = malloc((size_t)(rows * cols) * sizeof *d);
    assert_non_null(d);
    assert_int_equal(ei_dequantize_weight(s, rows, cols, q.data, q.scales, d), 0);
    ei_qscheme_info in = ei_qscheme_describe(s);
    double sse = 0, maxe = 0;
    int64_t clipped = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int64_t i = r * cols + c;
            float sc = scale_of(s, q.scales, cols, r, c);
            assert_true(sc > 0.0f && isfinite(sc));
            if (in.scale_type == EI_GT_F32) assert_true(sc >= FLT_MIN); /* never subnormal */
            double e = fabs((double)w[i] - (double)d[i]), lim = (double)in.qmax * sc;
            double ulp = fabs((double)d[i]) * (double)FLT_EPSILON; /* the float product q * s */
            if (fabs((double)w[i]) <= lim) {
                if (e > 0.5 * sc + ulp)
                    fail_msg("%s [%lld,%lld]: w %.9g deq %.9g err %.3g > scale/2 %.3g", ei_qscheme_name(s),
                             (long long)r, (long long)c, (double)w[i], (double)d[i], e, 0.5 * sc);
            } else {
                clipped++;
                /* clipped: exactly the clip value, so the error is |w| - qmax s */
                assert_true(fabs(fabs((double)d[i]) - lim) <= ulp);
                assert_true(e <= fabs((double)w[i]) - lim + ulp);
                assert_true((w[i] > 0) == (d[i] > 0));
            }
            if (clip == EI_QCLIP_MAXABS) assert_true(fabs((double)w[i]) <= lim); /* max-abs never clips */
            sse += e * e;
            if (e > maxe) maxe = e;
        }
    assert_true(q.stats.n == rows * cols);
    assert_true(q.stats.clipped == clipped);
    assert_true(fabs(q.stats.sse - sse) <= 1e-9 * (sse + 1e-300));
    assert_true(q.stats.max_err == maxe);
    free(d);
    double reported = q.stats.sse; /* summed per group as the search compares them */
    ei_qtensor_free(&q);
    return reported;
}

/* Both modes on every quantised scheme whose group fits; the MSE search never loses on MSE. */
static void check_all(const float *w, int64_t rows, int64_t cols) {
    for (int k = 0; k < NQ; k++) {
        if (!ei_qscheme_fits(qschemes[k], cols)) continue;
        double mse = check_roundtrip(w, rows, cols, qschemes[k], EI_QCLIP_MSE);
        double mab = check_roundtrip(w, rows, cols, qschemes[k], EI_QCLIP_MAXABS);
        if (!(mse <= mab)) fail_msg("%s: MSE search sse %.17g > max-abs %.17g", ei_qscheme_name(qschemes[k]), mse, mab);
    }
}

static void test_names(void **state) {
    (void)state;
    for (int s = 0; s < EI_QW_COUNT; s++) {
        ei_qscheme o;
        assert_int_equal(ei_qscheme_parse(ei_qscheme_name((ei_qscheme)s), &o), 0);
        assert_int_equal(o, s);
    }
    ei_qscheme s;
    assert_int_equal(ei_qscheme_parse("w5", &s), -1);
    assert_string_equal(ei_error_get(), "unknown scheme 'w5' (choices: f32, f16, w8, w4g32, w4g64, w4g128)");
    assert_int_equal(ei_qscheme_parse(NULL, &s), -1);
    ei_qact a;
    assert_int_equal(ei_qact_parse("a8s", &a), 0);
    assert_int_equal(a, EI_QA_A8S);
    assert_int_equal(ei_qact_parse("int8", &a), -1);
    expect_error("(choices: float, a16, a8, a8s)");
    ei_qkv kv;
    assert_int_equal(ei_qkv_parse("i8", &kv), 0);
    assert_int_equal(kv, EI_QKV_I8);
    assert_int_equal(ei_qkv_parse("bf16", &kv), -1);
    expect_error("(choices: f32, f16, i8)");
    assert_string_equal(ei_qscheme_name(EI_QW_COUNT), "?");
    assert_string_equal(ei_qact_name(EI_QA_A16), "a16");
    assert_string_equal(ei_qkv_name(EI_QKV_F16), "f16");
}

/* Sizes agree with what the IR stores (ei_gtensor_bytes) for the data and the scales tensors. */
static void test_sizes(void **state) {
    (void)state;
    const int64_t shapes[][2] = {{1, 128}, {3, 256}, {288, 768}, {7, 384}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int s = 0; s < EI_QW_COUNT; s++) {
            int64_t rows = shapes[k][0], cols = shapes[k][1];
            uint64_t d = 0, sc = 0;
            assert_int_equal(ei_qscheme_bytes((ei_qscheme)s, rows, cols, &d, &sc), 0);
            ei_qscheme_info in = ei_qscheme_describe((ei_qscheme)s);
            ei_gtensor t = {.type = in.type, .rank = 2, .shape = {(int32_t)rows, (int32_t)cols}};
            assert_true(ei_gtensor_bytes(&t) == d);
            if (in.scale_type == EI_GT_COUNT) {
                assert_true(sc == 0);
            } else {
                ei_gtensor st = {.type = in.scale_type, .rank = in.group ? 2 : 1,
                                 .shape = {(int32_t)rows, in.group ? (int32_t)(cols / in.group) : 0}};
                assert_true(ei_gtensor_bytes(&st) == sc);
            }
            uint64_t fb = ei_qscheme_file_bytes((ei_qscheme)s, rows, cols);
            assert_true(fb % 64 == 0 && fb >= d + sc && fb < d + sc + 128);
        }
    uint64_t d = 0, sc = 0;
    assert_int_equal(ei_qscheme_bytes(EI_QW_W8, 4, 6, &d, &sc), 0);
    assert_true(d == 24 && sc == 16);
    assert_int_equal(ei_qscheme_bytes(EI_QW_W4G32, 2, 64, &d, &sc), 0);
    assert_true(d == 64 && sc == 2 * 2 * 2);
    /* the group rule: refuse, and say what fits */
    assert_int_equal(ei_qscheme_bytes(EI_QW_W4G128, 4, 288, &d, &sc), -1);
    expect_error("multiple of 128");
    assert_int_equal(ei_qscheme_fit(EI_QW_W4G128, 288), EI_QW_W4G32);
    assert_int_equal(ei_qscheme_fit(EI_QW_W4G128, 192), EI_QW_W4G64);
    assert_int_equal(ei_qscheme_fit(EI_QW_W4G64, 96), EI_QW_W4G32);
    assert_int_equal(ei_qscheme_fit(EI_QW_W4G32, 100), EI_QW_W8);
    assert_int_equal(ei_qscheme_fit(EI_QW_W4G32, 256), EI_QW_W4G32);
    assert_int_equal(ei_qscheme_fit(EI_QW_W8, 7), EI_QW_W8);
    assert_int_equal(ei_qscheme_fit(EI_QW_F16, 7), EI_QW_F16);
    assert_int_equal(ei_qscheme_bytes(EI_QW_W8, 0, 4, &d, &sc), -1);
    assert_int_equal(ei_qscheme_bytes(EI_QW_W8, (int64_t)1 << 30, (int64_t)1 << 20, &d, &sc), -1);
    assert_true(ei_qscheme_file_bytes(EI_QW_W4G64, 4, 100) == 0);
    ei_gquant gq = ei_qscheme_gquant(EI_QW_W4G64, 9);
    assert_true(gq.kind == EI_GQ_GROUP && gq.axis == 1 && gq.group == 64 && gq.scales == 9 && gq.zero_point == 0);
    gq = ei_qscheme_gquant(EI_QW_W8, 3);
    assert_true(gq.kind == EI_GQ_CHANNEL && gq.axis == 0 && gq.scales == 3);
    assert_true(ei_qscheme_gquant(EI_QW_F16, 3).kind == EI_GQ_NONE);
}

static void test_i4_packing(void **state) {
    (void)state;
    /* odd rows end in a pad nibble: [2, 5] takes 3 bytes a row */
    uint8_t buf[6];
    memset(buf, 0xff, sizeof buf);
    int vals[2][5] = {{-8, -1, 0, 1, 7}, {3, -7, 5, -2, 6}};
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 5; c++) ei_qi4_set(buf, 5, r, c, vals[r][c]);
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 5; c++) assert_int_equal(ei_qi4_get(buf, 5, r, c), vals[r][c]);
    assert_int_equal(buf[0], 0xf8); /* lower nibble first: -8 = 0x8, then -1 = 0xf */
    assert_int_equal(buf[3], 0x93); /* 3, then -7 = 0x9 */
    /* the quantiser's own bytes: q = round(w / s) with s = 7 / 7 = 1 */
    float w[64];
    for (int i = 0; i < 64; i++) w[i] = (float)((i % 15) - 7);
    uint8_t data[32];
    uint16_t sc[2];
    ei_qopts o;
    ei_qopts_default(&o);
    o.clip = EI_QCLIP_MAXABS;
    assert_int_equal(ei_quantize_weight("p", w, 1, 64, EI_QW_W4G32, &o, data, sc, NULL), 0);
    assert_true(ei_f16_to_f32(sc[0]) == 1.0f && ei_f16_to_f32(sc[1]) == 1.0f);
    for (int i = 0; i < 64; i++) assert_int_equal(ei_qi4_get(data, 64, 0, i), (i % 15) - 7);
    assert_int_equal(data[0], (uint8_t)((0x9 & 0xf) | (0xa << 4))); /* -7, -6 */
}

static void test_random(void **state) {
    (void)state;
    const int64_t rows = 24, cols = 384;
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    assert_non_null(w);
    for (int dist = 0; dist < 4; dist++) {
        for (int64_t i = 0; i < rows * cols; i++) {
            double u = urand();
            switch (dist) {
            case 0: w[i] = nrand() * 0.02f; break;                        /* like trained weights */
            case 1: w[i] = (float)(2 * u - 1); break;                     /* uniform */
            case 2: w[i] = nrand() * nrand() * nrand(); break;            /* heavy tails */
            default: w[i] = (float)((2 * u - 1) * pow(10.0, (int)(u * 12) - 6)); break; /* many magnitudes */
            }
        }
        check_all(w, rows, cols);
    }
    /* on heavy tails clipping pays: the search is strictly better for int4 */
    for (int64_t i = 0; i < rows * cols; i++) w[i] = nrand() * nrand() * nrand();
    double mse = check_roundtrip(w, rows, cols, EI_QW_W4G128, EI_QCLIP_MSE);
    double mab = check_roundtrip(w, rows, cols, EI_QW_W4G128, EI_QCLIP_MAXABS);
    assert_true(mse < 0.95 * mab);
    free(w);
}

static void test_adversarial(void **state) {
    (void)state;
    const int64_t rows = 8, cols = 256;
    float *w = calloc((size_t)(rows * cols), sizeof *w);
    assert_non_null(w);
    for (int64_t c = 0; c < cols; c++) {
        w[0 * cols + c] = 0.37f;                                   /* constant row */
        w[1 * cols + c] = -3.0e-3f;                                /* constant negative row */
        w[2 * cols + c] = nrand() * 0.01f;                         /* one huge outlier ... */
        w[3 * cols + c] = 0.0f;                                    /* all zero */
        w[4 * cols + c] = (c & 1 ? 1 : -1) * 1e-42f * (float)(c % 7); /* subnormals only */
        w[5 * cols + c] = c & 1 ? -0.0f : 0.0f;                    /* +-0 */
        w[6 * cols + c] = c % 3 ? 1e-41f : nrand();                /* subnormals among normals */
        w[7 * cols + c] = c < 128 ? 0.0f : 65504.0f * (c & 1 ? -1 : 1); /* a zero group, a big one */
    }
    w[2 * cols + 77] = 1e4f; /* ... in row 2 */
    check_all(w, rows, cols);
    /* an all-zero row or group: scale 1, zeros, exact zeros back */
    for (int k = 0; k < NQ; k++) {
        ei_qtensor q;
        assert_int_equal(ei_qtensor_quantize(&q, "z", w + 3 * cols, 1, cols, qschemes[k], NULL), 0);
        assert_true(scale_of(qschemes[k], q.scales, cols, 0, 0) == 1.0f);
        for (uint64_t i = 0; i < q.data_bytes; i++) assert_int_equal(((uint8_t *)q.data)[i], 0);
        assert_true(q.stats.sse == 0.0 && q.stats.max_err == 0.0);
        ei_qtensor_free(&q);
        /* +-0 too */
        assert_int_equal(ei_qtensor_quantize(&q, "z", w + 5 * cols, 1, cols, qschemes[k], NULL), 0);
        assert_true(q.stats.sse == 0.0);
        ei_qtensor_free(&q);
    }
    /* subnormal weights: the scale is clamped (FLT_MIN for w8, 2^-24 for f16 scales), no division by 0 */
    ei_qtensor q;
    assert_int_equal(ei_qtensor_quantize(&q, "d", w + 4 * cols, 1, cols, EI_QW_W8, NULL), 0);
    assert_true(((float *)q.scales)[0] == FLT_MIN);
    ei_qtensor_free(&q);
    assert_int_equal(ei_qtensor_quantize(&q, "d", w + 4 * cols, 1, cols, EI_QW_W4G32, NULL), 0);
    assert_true(ei_f16_to_f32(((uint16_t *)q.scales)[0]) == (float)ldexp(1.0, -24));
    ei_qtensor_free(&q);
    /* a constant row quantises to +-qmax with max-abs and comes back within scale / 2 */
    ei_qopts o;
    ei_qopts_default(&o);
    o.clip = EI_QCLIP_MAXABS;
    assert_int_equal(ei_qtensor_quantize(&q, "c", w, 1, cols, EI_QW_W8, &o), 0);
    for (int64_t c = 0; c < cols; c++) assert_int_equal(((int8_t *)q.data)[c], 127);
    ei_qtensor_free(&q);
    /* the outlier: the w8 row's max-abs scale is set by it; the search may clip it but never loses */
    assert_int_equal(ei_qtensor_quantize(&q, "o", w + 2 * cols, 1, cols, EI_QW_W8, &o), 0);
    assert_true(((float *)q.scales)[0] >= 1e4f / 127);
    ei_qtensor_free(&q);
    free(w);
}

static void test_group_rule(void **state) {
    (void)state;
    const int64_t rows = 3, cols = 288; /* stories15M's dim: 9 x 32, not a multiple of 64 or 128 */
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    assert_non_null(w);
    for (int64_t i = 0; i < rows * cols; i++) w[i] = nrand();
    ei_qtensor q;
    ei_error_clear();
    assert_int_equal(ei_qtensor_quantize(&q, "layers.0.attention.wq", w, rows, cols, EI_QW_W4G128, NULL), -1);
    expect_error("layers.0.attention.wq");
    expect_error("multiple of 128");
    uint8_t data[3 * 144];
    uint16_t sc[3 * 9];
    assert_int_equal(ei_quantize_weight("wq", w, rows, cols, EI_QW_W4G64, NULL, data, sc, NULL), -1);
    expect_error("w4g32 fits");
    ei_qscheme f = ei_qscheme_fit(EI_QW_W4G128, cols);
    assert_int_equal(f, EI_QW_W4G32);
    check_all(w, rows, cols); /* w8 and w4g32 */
    /* odd rows: only w8 takes them (every group is even) */
    check_all(w, 5, 7 * 3);
    assert_int_equal(ei_qtensor_quantize(&q, "odd", w, 5, 21, EI_QW_W4G32, NULL), -1);
    free(w);
}

static void test_bad_values(void **state) {
    (void)state;
    enum { R = 4, C = 128 };
    float w[R * C];
    uint8_t data[R * C * 4], sc[R * 4 * 2];
    for (int i = 0; i < R * C; i++) w[i] = 0.1f * (float)(i % 9);
    for (int s = 0; s < EI_QW_COUNT; s++) {
        w[2 * C + 5] = NAN;
        ei_error_clear();
        assert_int_equal(ei_quantize_weight("blk.3.ffn_down", w, R, C, (ei_qscheme)s, NULL, data, sc, NULL), -1);
        expect_error("tensor 'blk.3.ffn_down'");
        expect_error("[2, 5] is NaN");
        w[2 * C + 5] = -INFINITY;
        assert_int_equal(ei_quantize_weight("emb", w, R, C, (ei_qscheme)s, NULL, data, sc, NULL), -1);
        expect_error("tensor 'emb'");
        expect_error("-inf");
        w[2 * C + 5] = INFINITY;
        assert_int_equal(ei_qtensor_quantize(&(ei_qtensor){0}, "cls", w, R, C, (ei_qscheme)s, NULL), -1);
        expect_error("tensor 'cls': element [2, 5] is +inf");
        w[2 * C + 5] = 0.0f;
    }
    /* values a scheme cannot hold */
    w[7] = 70000.0f;
    assert_int_equal(ei_quantize_weight("big", w, R, C, EI_QW_F16, NULL, data, sc, NULL), -1);
    expect_error("f16 range");
    w[7] = 1e6f;
    assert_int_equal(ei_quantize_weight("big", w, R, C, EI_QW_W4G32, NULL, data, sc, NULL), -1);
    expect_error("use w8");
    assert_int_equal(ei_quantize_weight("big", w, R, C, EI_QW_W8, NULL, data, sc, NULL), 0);
    ei_qopts o = {EI_QCLIP_MSE, 0, 0.5};
    assert_int_equal(ei_quantize_weight("opt", w, R, C, EI_QW_W8, &o, data, sc, NULL), -1);
    expect_error("bad quantisation options");
}

static void test_f16_roundtrip(void **state) {
    (void)state;
    /* every finite half converts back exactly */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        float f = ei_f16_to_f32((uint16_t)h);
        assert_int_equal(ei_f32_to_f16(f), h);
    }
    /* random floats: within half an ulp (2^-11 relative) or 2^-25 absolute below the normals */
    const int n = 4096;
    float *w = malloc((size_t)n * sizeof *w), *d = malloc((size_t)n * sizeof *d);
    uint16_t *h = malloc((size_t)n * sizeof *h);
    assert_true(w && d && h);
    for (int i = 0; i < n; i++) w[i] = (float)((2 * urand() - 1) * pow(2.0, (int)(urand() * 46) - 30));
    w[0] = 0.0f, w[1] = -0.0f, w[2] = 65504.0f, w[3] = -65519.0f, w[4] = 1e-42f, w[5] = 2.9802322e-8f;
    ei_qstats st;
    assert_int_equal(ei_quantize_weight("h", w, 64, 64, EI_QW_F16, NULL, h, NULL, &st), 0);
    assert_int_equal(ei_dequantize_weight(EI_QW_F16, 64, 64, h, NULL, d), 0);
    for (int i = 0; i < n; i++) {
        double e = fabs((double)w[i] - (double)d[i]);
        double lim = fabs((double)w[i]) >= ldexp(1.0, -14) ? fabs((double)w[i]) * ldexp(1.0, -11) : ldexp(1.0, -25);
        if (e > lim) fail_msg("f16 of %.9g is %.9g", (double)w[i], (double)d[i]);
    }
    assert_true(h[0] == 0x0000 && h[1] == 0x8000); /* the sign of zero survives */
    assert_true(d[2] == 65504.0f && d[3] == -65504.0f && d[4] == 0.0f);
    assert_true(st.clipped == 0 && st.n == n);
    /* f32 is a copy */
    assert_int_equal(ei_quantize_weight("f", w, 64, 64, EI_QW_F32, NULL, d, NULL, &st), 0);
    assert_memory_equal(d, w, (size_t)n * sizeof *w);
    assert_true(st.sse == 0.0);
    free(w), free(d), free(h);
}

static void test_search_options(void **state) {
    (void)state;
    const int64_t rows = 16, cols = 128;
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    assert_non_null(w);
    for (int64_t i = 0; i < rows * cols; i++) w[i] = nrand() * nrand();
    /* a finer, wider grid never loses to the default one (its candidates include the default's) */
    ei_qopts a, b = {EI_QCLIP_MSE, 41, 0.5}, one = {EI_QCLIP_MSE, 1, 0.5}, m = {EI_QCLIP_MAXABS, 21, 0.5};
    ei_qopts_default(&a);
    ei_qtensor qa, qb, q1, qm;
    assert_int_equal(ei_qtensor_quantize(&qa, "a", w, rows, cols, EI_QW_W4G32, &a), 0);
    assert_int_equal(ei_qtensor_quantize(&qb, "b", w, rows, cols, EI_QW_W4G32, &b), 0);
    assert_int_equal(ei_qtensor_quantize(&q1, "1", w, rows, cols, EI_QW_W4G32, &one), 0);
    assert_int_equal(ei_qtensor_quantize(&qm, "m", w, rows, cols, EI_QW_W4G32, &m), 0);
    assert_true(qb.stats.sse <= qa.stats.sse && qa.stats.sse <= qm.stats.sse);
    assert_memory_equal(q1.data, qm.data, qm.data_bytes); /* grid 1 is max-abs */
    assert_memory_equal(q1.scales, qm.scales, qm.scale_bytes);
    ei_qtensor_free(&qa), ei_qtensor_free(&qb), ei_qtensor_free(&q1), ei_qtensor_free(&qm);
    free(w);
}

static void test_activations(void **state) {
    (void)state;
    ei_qrange r;
    ei_qrange_init(&r);
    float x[1000];
    for (int i = 0; i < 1000; i++) x[i] = nrand() * 3.0f + 1.0f;
    assert_int_equal(ei_qrange_update(&r, x, 500, "h"), 0);
    assert_int_equal(ei_qrange_update(&r, x + 500, 500, "h"), 0);
    assert_true(r.n == 1000 && r.lo < 0 && r.hi > 0);
    for (int a = EI_QA_A16; a < EI_QA_COUNT; a++) {
        ei_qaparams p;
        assert_int_equal(ei_qact_params((ei_qact)a, r.lo, r.hi, &p), 0);
        assert_true(p.scale > 0 && isfinite(p.scale));
        if (a != EI_QA_A8) assert_int_equal(p.zero_point, 0);
        assert_true(p.zero_point >= p.qmin && p.zero_point <= p.qmax);
        int16_t q[1001];
        float d[1001], z = 0.0f, dz;
        ei_qact_quantize(&p, x, 1000, q);
        ei_qact_dequantize(&p, q, 1000, d);
        for (int i = 0; i < 1000; i++) {
            double lo = (double)(p.qmin - p.zero_point) * p.scale, hi = (double)(p.qmax - p.zero_point) * p.scale;
            /* s / 2, plus the float rounding of x / s and of (q - zp) * s (IR semantics) */
            double lim = 0.5 * p.scale + 2.0 * FLT_EPSILON * fabs((double)x[i]);
            if (x[i] >= lo && x[i] <= hi && fabs((double)x[i] - d[i]) > lim)
                fail_msg("%s: x %.9g deq %.9g scale %g zp %d", ei_qact_name((ei_qact)a), (double)x[i], (double)d[i],
                         (double)p.scale, (int)p.zero_point);
        }
        /* zero (padding, masks) is exact */
        ei_qact_quantize(&p, &z, 1, q);
        ei_qact_dequantize(&p, q, 1, &dz);
        assert_true(dz == 0.0f);
    }
    ei_qaparams p;
    assert_int_equal(ei_qact_params(EI_QA_A8, 0.0f, 0.0f, &p), 0);
    assert_true(p.scale == 1.0f);
    assert_int_equal(ei_qact_params(EI_QA_A8, 0.5f, 2.0f, &p), 0); /* widened to contain 0 */
    assert_int_equal(p.zero_point, -128);
    assert_true(p.type == EI_GT_I8);
    assert_int_equal(ei_qact_params(EI_QA_A16, -1.0f, 1.0f, &p), 0);
    assert_true(p.type == EI_GT_I16 && p.scale == (float)(1.0 / 32767));
    assert_int_equal(ei_qact_params(EI_QA_FLOAT, -1.0f, 1.0f, &p), 0);
    assert_true(p.type == EI_GT_F32);
    assert_int_equal(ei_qact_params(EI_QA_A8, 1.0f, -1.0f, &p), -1);
    assert_int_equal(ei_qact_params(EI_QA_A8, -INFINITY, 1.0f, &p), -1);
    x[3] = NAN;
    assert_int_equal(ei_qrange_update(&r, x, 10, "layers.2.attn_out"), -1);
    expect_error("layers.2.attn_out");
}

/* The quantiser's bytes are what the IR and the cpu backend read: FULLY_CONNECTED with a w8 and a
 * w4g32 weight equals x times the dequantised weights. */
static void test_cpu_backend(void **state) {
    (void)state;
    const int32_t M = 3, K = 96, N = 20;
    float x[3 * 96], *w = malloc(sizeof(float) * (size_t)(N * K)), *d = malloc(sizeof(float) * (size_t)(N * K));
    assert_true(w && d);
    for (int i = 0; i < M * K; i++) x[i] = nrand();
    for (int i = 0; i < N * K; i++) w[i] = nrand() * 0.05f;
    ei_qscheme schemes[] = {EI_QW_W8, EI_QW_W4G32, EI_QW_F16};
    for (int k = 0; k < 3; k++) {
        ei_qtensor q;
        assert_int_equal(ei_qtensor_quantize(&q, "w", w, N, K, schemes[k], NULL), 0);
        assert_int_equal(ei_dequantize_weight(schemes[k], N, K, q.data, q.scales, d), 0);
        uint64_t off_s = (q.data_bytes + 63) & ~(uint64_t)63, blob_size = off_s + q.scale_bytes;
        uint8_t *blob = calloc(1, blob_size);
        assert_non_null(blob);
        memcpy(blob, q.data, q.data_bytes);
        if (q.scale_bytes) memcpy(blob + off_s, q.scales, q.scale_bytes);
        ei_graph *g = ei_graph_new("fc");
        ei_qscheme_info in = ei_qscheme_describe(schemes[k]);
        int32_t xi = ei_graph_add_tensor(g, "x", EI_GT_F32, EI_GK_INPUT, 2, (int32_t[]){M, K});
        int32_t wi = ei_graph_add_tensor(g, "w", in.type, EI_GK_CONST, 2, (int32_t[]){N, K});
        int32_t si = -1;
        if (in.scale_type != EI_GT_COUNT) {
            int32_t ss[2] = {N, in.group ? K / in.group : 0};
            si = ei_graph_add_tensor(g, "w.scales", in.scale_type, EI_GK_CONST, in.group ? 2 : 1, ss);
            g->tensors[si].offset = off_s;
            g->tensors[si].size = q.scale_bytes;
        }
        g->tensors[wi].q = ei_qscheme_gquant(schemes[k], si);
        g->tensors[wi].offset = 0;
        g->tensors[wi].size = q.data_bytes;
        int32_t yi = ei_graph_add_tensor(g, "y", EI_GT_F32, EI_GK_OUTPUT, 2, (int32_t[]){M, N});
        assert_true(ei_graph_add_node(g, EI_OP_FULLY_CONNECTED, 2, (int32_t[]){xi, wi}, yi, NULL) >= 0);
        if (ei_graph_validate(g, blob_size)) fail_msg("%s", ei_error_get());
        ei_backend *b = ei_backend_cpu_new(&(ei_cpu_options){.threads = 1});
        assert_non_null(b);
        ei_backend_exec *ex = b->ops->prepare(b, g, blob, blob_size);
        if (!ex) fail_msg("%s", ei_error_get());
        float y[3 * 20];
        void *bind[8] = {0};
        bind[xi] = x;
        bind[yi] = y;
        assert_int_equal(b->ops->execute(ex, bind), 0);
        /* I4 weights with float input run on x quantised per weight group to int8 (Q8, as llama.cpp;
         * docs/runtime-cpu.md): the reference then uses that x, dequantised */
        float xr[3 * 96];
        memcpy(xr, x, sizeof xr);
        /* (I8 weights: per block of 32, ei_cpu_options.exact_w8 aside) */
        const int qg = in.type == EI_GT_I4 ? in.group : in.type == EI_GT_I8 ? 32 : 0;
        if (qg)
            for (int m = 0; m < M; m++) {
                int8_t q8[96];
                float xs[96];
                ref_q8(x + m * K, K, qg, q8, xs);
                for (int c = 0; c < K; c++) xr[m * K + c] = (float)q8[c] * xs[c / qg];
            }
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double ref = 0, mag = 0;
                for (int c = 0; c < K; c++) {
                    ref += (double)xr[m * K + c] * d[n * K + c];
                    mag += fabs((double)xr[m * K + c] * d[n * K + c]);
                }
                if (fabs(y[m * N + n] - ref) > 1e-5 * mag + 1e-6)
                    fail_msg("%s: y[%d,%d] = %.7g, dequantised reference %.7g", ei_qscheme_name(schemes[k]), m, n,
                             (double)y[m * N + n], ref);
            }
        b->ops->release(ex);
        b->ops->destroy(b);
        ei_graph_free(g);
        free(blob);
        ei_qtensor_free(&q);
    }
    free(w), free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),          cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_i4_packing),     cmocka_unit_test(test_random),
        cmocka_unit_test(test_adversarial),    cmocka_unit_test(test_group_rule),
        cmocka_unit_test(test_bad_values),     cmocka_unit_test(test_f16_roundtrip),
        cmocka_unit_test(test_search_options), cmocka_unit_test(test_activations),
        cmocka_unit_test(test_cpu_backend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
