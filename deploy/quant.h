/* Post-training quantisation, the numeric core (DESIGN 6.1; formulas and bounds in
 * docs/quantisation.md). Host side, but libc + libm only (core/ei_half, core/ei_error), so the
 * same code could run anywhere; the plans and their YAML are in deploy/quant_plan.h.
 *
 * Weight schemes, for a weight W [rows, cols] = [out, in] (PyTorch nn.Linear layout, y = W x):
 *   f32     the float32 values, unchanged;
 *   f16     IEEE binary16 (round to nearest even);
 *   w8      int8 symmetric per output channel: one f32 scale per row, zero point 0,
 *           q in [-127, 127] (-128 is never produced, so negation never overflows);
 *   w4gG    int4 symmetric per group of G = 32, 64 or 128 consecutive input channels of a row:
 *           f16 scales [rows, cols / G], zero point 0, q in [-7, 7] (-8 never produced: symmetric).
 * Element q of a scheme dequantises to (float)q * scale (the scale as stored, f16 widened to f32).
 *
 * Output bytes are exactly what the graph IR (runtime/graph.h) stores for the CONST tensors:
 *   w8:   data I8 [rows, cols] row-major; scales F32 [rows]         (CHANNEL, axis 0)
 *   w4gG: data I4 [rows, cols], two per byte, the lower nibble first (two's complement), rows of
 *         (cols + 1) / 2 bytes (an odd row ends in a zero nibble); scales F16 [rows, cols / G]
 *         (GROUP, axis 1, group G)
 *   f16:  F16 [rows, cols] as uint16_t; f32: F32 [rows, cols].
 * Group rule: the IR has no partial groups, so w4gG needs cols to be a multiple of G; otherwise
 * ei_quantize_weight refuses (naming the tensor) and ei_qscheme_fit gives the scheme to use
 * instead (the largest smaller group that divides cols, else w8).
 *
 * Scale selection (per row for w8, per group for w4): max-abs m = max |w|; candidates
 *   s_k = up(c_k m / qmax),  c_k = 1 - k (1 - clip_min) / (grid - 1),  k = 0 .. grid-1
 * where up() rounds to the smallest value of the scale's storage type (f32 / f16) that is >= its
 * argument, so c_0 = 1 (max-abs) never clips. EI_QCLIP_MSE picks the candidate of least squared
 * error sum((w - deq)^2) (ties: the larger scale); EI_QCLIP_MAXABS takes s_0. An all-zero row or
 * group gets scale 1 and zeros. f32 scales are never below FLT_MIN (devices may flush subnormal
 * scales to zero), f16 scales never below 2^-24 (its smallest subnormal, converted exactly).
 * Rounding: q = clamp(round_half_away(w * (1 / s)), -qmax, qmax), evaluated in double.
 * Bounds (tests/test_deploy_quant.c): for |w| <= qmax s, |w - deq| <= s / 2 (plus the rounding
 * of the float product (float)q * s, half an ulp of deq); clipped elements dequantise to
 * sign(w) qmax s exactly.
 *
 * Every function returns 0, or -1 with ei_error set; messages name the tensor. A NaN or an
 * infinity in a weight is an error, as is a value f16 cannot hold (|w| >= 65520) under f16. */
#ifndef EI_DEPLOY_QUANT_H
#define EI_DEPLOY_QUANT_H

#include "runtime/graph.h"

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- names */

typedef enum { EI_QW_F32 = 0, EI_QW_F16, EI_QW_W8, EI_QW_W4G32, EI_QW_W4G64, EI_QW_W4G128, EI_QW_COUNT } ei_qscheme;
/* Activations between ops: float, a16 (int16 symmetric, zero point 0), a8 (int8 asymmetric, with
 * a zero point), a8s (int8 symmetric, zero point 0); static per-tensor scales from calibration. */
typedef enum { EI_QA_FLOAT = 0, EI_QA_A16, EI_QA_A8, EI_QA_A8S, EI_QA_COUNT } ei_qact;
/* Precision of the K/V caches (a name only: the lowering decides what it means). */
typedef enum { EI_QKV_F32 = 0, EI_QKV_F16, EI_QKV_I8, EI_QKV_COUNT } ei_qkv;

/* The names in enum order, as EI_CFG_ENUM choices. */
#define EI_QSCHEME_CHOICES "f32|f16|w8|w4g32|w4g64|w4g128"
#define EI_QACT_CHOICES "float|a16|a8|a8s"
#define EI_QKV_CHOICES "f32|f16|i8"

/* Names ("w4g32"); "?" out of range. Parsing an unknown name is an error listing the choices:
 * "unknown scheme 'w5' (choices: f32, f16, w8, w4g32, w4g64, w4g128)". */
const char *ei_qscheme_name(ei_qscheme s);
const char *ei_qact_name(ei_qact a);
const char *ei_qkv_name(ei_qkv k);
int ei_qscheme_parse(const char *s, ei_qscheme *out);
int ei_qact_parse(const char *s, ei_qact *out);
int ei_qkv_parse(const char *s, ei_qkv *out);

/* ---------------------------------------------------------------- what a scheme stores */

typedef struct {
    ei_gtype type;        /* data: F32, F16, I8, I4 */
    ei_gtype scale_type;  /* F32 (w8), F16 (w4), EI_GT_COUNT: no scales */
    ei_gquant_kind kind;  /* NONE, CHANNEL (axis 0), GROUP (axis 1) */
    int32_t group;        /* w4: G; else 0 */
    int32_t qmax;         /* 127, 7; 0 for float schemes */
} ei_qscheme_info;

ei_qscheme_info ei_qscheme_describe(ei_qscheme s);
/* The IR quantisation parameters of a weight under s whose scales are tensor scales_index. */
ei_gquant ei_qscheme_gquant(ei_qscheme s, int32_t scales_index);
/* 1 when s can store a weight with rows of cols elements (w4gG: G divides cols). */
int ei_qscheme_fits(ei_qscheme s, int64_t cols);
/* s when it fits; else, for w4gG, the w4 scheme of the largest smaller group dividing cols, else w8. */
ei_qscheme ei_qscheme_fit(ei_qscheme s, int64_t cols);
/* What a gathered table (the embedding) stores for s: no backend gathers int4, so w4gG -> w8. */
ei_qscheme ei_qscheme_gathered(ei_qscheme s);

/* Bytes of the data and of the scales of a [rows, cols] weight under s (for ei inspect and the
 * budget). -1 when s does not fit cols or the shape is not positive / too large (2^40 elements). */
int ei_qscheme_bytes(ei_qscheme s, int64_t rows, int64_t cols, uint64_t *data, uint64_t *scales);
/* data + scales as a .eig file stores them: each constant padded to 64 bytes. 0 when invalid. */
uint64_t ei_qscheme_file_bytes(ei_qscheme s, int64_t rows, int64_t cols);

/* ---------------------------------------------------------------- weights */

typedef enum { EI_QCLIP_MSE = 0, EI_QCLIP_MAXABS = 1 } ei_qclip;

typedef struct {
    ei_qclip clip;
    int grid;        /* candidates of the MSE search, >= 1 (1: max-abs only) */
    double clip_min; /* smallest clip ratio c, in (0, 1] */
} ei_qopts;

/* MSE search over 21 ratios 1.0, 0.975, ..., 0.5. */
void ei_qopts_default(ei_qopts *o);

typedef struct {
    int64_t n;       /* elements */
    int64_t clipped; /* elements with |w| > qmax * scale */
    double sse;      /* sum of (w - deq)^2 */
    double sum_sq;   /* sum of w^2 (sse / sum_sq: relative error energy) */
    double max_err;  /* max |w - deq| */
} ei_qstats;

/* Quantises w [rows, cols] (row-major float32) under s into data and scales (sizes from
 * ei_qscheme_bytes; scales unused and may be NULL for f32 / f16). name names the tensor in errors.
 * opts NULL: ei_qopts_default. stats (may be NULL) describes the result. */
int ei_quantize_weight(const char *name, const float *w, int64_t rows, int64_t cols, ei_qscheme s,
                       const ei_qopts *opts, void *data, void *scales, ei_qstats *stats);
/* The float32 values a backend computes with: out [rows, cols]. */
int ei_dequantize_weight(ei_qscheme s, int64_t rows, int64_t cols, const void *data, const void *scales, float *out);

/* A quantised weight with its own buffers. */
typedef struct {
    ei_qscheme scheme;
    int64_t rows, cols;
    void *data, *scales; /* malloc'd; scales NULL for f32 / f16 */
    uint64_t data_bytes, scale_bytes;
    ei_qstats stats;
} ei_qtensor;

int ei_qtensor_quantize(ei_qtensor *q, const char *name, const float *w, int64_t rows, int64_t cols, ei_qscheme s,
                        const ei_qopts *opts);
void ei_qtensor_free(ei_qtensor *q);

/* Element (r, c) of a w4 data block (rows of (cols + 1) / 2 bytes) and its packing. */
int ei_qi4_get(const uint8_t *data, int64_t cols, int64_t r, int64_t c);
void ei_qi4_set(uint8_t *data, int64_t cols, int64_t r, int64_t c, int q);

/* ---------------------------------------------------------------- activations */

/* Calibration range of one activation tensor (n == 0: nothing seen yet). */
typedef struct {
    float lo, hi;
    int64_t n;
} ei_qrange;

void ei_qrange_init(ei_qrange *r);
/* Widens r by x[0..n-1]; a NaN or infinity is an error naming the tensor. */
int ei_qrange_update(ei_qrange *r, const float *x, int64_t n, const char *name);

/* Per-tensor parameters of an activation (IR TENSOR quantisation). type EI_GT_F32 for float. */
typedef struct {
    ei_gtype type;      /* I16 (a16), I8 (a8, a8s), F32 (float) */
    float scale;        /* > 0 and finite; 0 for float */
    int32_t zero_point; /* a8 only; 0 otherwise */
    int32_t qmin, qmax; /* range QUANTIZE clamps to (the type's) */
} ei_qaparams;

/* Parameters for a calibration range [lo, hi] (widened to contain 0, so that zero and padding are
 * exact): a16 scale = max(|lo|, |hi|) / 32767; a8s the same over 127; a8 scale = (hi - lo) / 255,
 * zero point = clamp(round(-128 - lo / scale), -128, 127). An empty range gets scale 1. */
int ei_qact_params(ei_qact a, float lo, float hi, ei_qaparams *p);
/* QUANTIZE / DEQUANTIZE as the IR defines them: q = clamp(roundf(x / scale) + zp, qmin, qmax)
 * (round half away from zero; int16_t or int8_t elements), x = (float)(q - zp) * scale. */
void ei_qact_quantize(const ei_qaparams *p, const float *x, int64_t n, void *q);
void ei_qact_dequantize(const ei_qaparams *p, const void *q, int64_t n, float *x);

#endif
