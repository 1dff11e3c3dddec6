/* An 8-lane float vector with exactly specified lane-wise semantics, implemented three times:
 *   EI_V8_IMPL 0  portable C (a struct of 8 floats, fmaf for the fused multiply-add),
 *   EI_V8_IMPL 1  AVX2 + FMA + F16C (__m256),
 *   EI_V8_IMPL 2  NEON (two float32x4_t).
 * The kernels (cpu_kern_body.inc) are written once against these operations and compiled once per
 * implementation, so the SIMD kernels and their portable twin run the same sequence of IEEE
 * operations on every lane, and give bit-identical results by construction: every op below is
 * either exactly rounded (add, sub, mul, div, fma, conversions) or exact (select, max as a > b ? a :
 * b, round to nearest even, integer bit tricks), and horizontal sums use one fixed tree.
 *
 * Include this header once per translation unit after defining EI_V8_IMPL (and, for 1, after
 * enabling the avx2/fma/f16c target). Everything is static inline. */
#ifndef EI_V8_IMPL
#error "define EI_V8_IMPL before including cpu_v8.h"
#endif

#include <stdint.h>
#include <string.h>

#if defined(__clang__)
/* clang contracts a * b + c into an FMA by default; the twins must not differ by that. */
#pragma STDC FP_CONTRACT OFF
#endif

#if EI_V8_IMPL == 0
#include "core/ei_half.h"
#include <math.h>

typedef struct {
    float v[8];
} v8;
typedef struct {
    int32_t v[8];
} v8i;

#define V8_MAP(expr)                                  \
    v8 r;                                             \
    for (int l = 0; l < 8; l++) r.v[l] = (expr);      \
    return r

static inline v8 v8_zero(void) { V8_MAP(0.0f); }
static inline v8 v8_set1(float x) { V8_MAP(x); }
static inline v8 v8_load(const float *p) { V8_MAP(p[l]); }
static inline void v8_store(float *p, v8 a) { memcpy(p, a.v, sizeof a.v); }
static inline v8 v8_add(v8 a, v8 b) { V8_MAP(a.v[l] + b.v[l]); }
static inline v8 v8_sub(v8 a, v8 b) { V8_MAP(a.v[l] - b.v[l]); }
static inline v8 v8_mul(v8 a, v8 b) { V8_MAP(a.v[l] * b.v[l]); }
static inline v8 v8_div(v8 a, v8 b) { V8_MAP(a.v[l] / b.v[l]); }
static inline v8 v8_fma(v8 a, v8 b, v8 c) { V8_MAP(fmaf(a.v[l], b.v[l], c.v[l])); }
static inline v8 v8_max(v8 a, v8 b) { V8_MAP(a.v[l] > b.v[l] ? a.v[l] : b.v[l]); }
static inline v8 v8_min(v8 a, v8 b) { V8_MAP(a.v[l] < b.v[l] ? a.v[l] : b.v[l]); }
/* a < b ? x : y */
static inline v8 v8_sel_lt(v8 a, v8 b, v8 x, v8 y) { V8_MAP(a.v[l] < b.v[l] ? x.v[l] : y.v[l]); }
/* round to nearest, ties to even (the default rounding mode) */
static inline v8 v8_round(v8 a) { V8_MAP(nearbyintf(a.v[l])); }
/* 2^n for integral n in [-126, 127] */
static inline v8 v8_pow2i(v8 n) {
    v8 r;
    for (int l = 0; l < 8; l++) {
        uint32_t bits = (uint32_t)((int32_t)n.v[l] + 127) << 23;
        memcpy(&r.v[l], &bits, 4);
    }
    return r;
}
static inline v8 v8_load_f16(const uint16_t *p) { V8_MAP(ei_f16_to_f32(p[l])); }
static inline v8 v8_load_i8(const int8_t *p) { V8_MAP((float)p[l]); }
/* 8 signed nibbles from 4 bytes, the lower nibble first */
static inline v8 v8_load_i4(const uint8_t *p) {
    uint32_t w;
    memcpy(&w, p, 4);
    v8 r;
    for (int l = 0; l < 8; l++) r.v[l] = (float)((int32_t)(w << (28 - 4 * l)) >> 28);
    return r;
}
/* one f16 -> f32 (exact; FULLY_CONNECTED group scales) */
static inline float s_f16(uint16_t h) { return ei_f16_to_f32(h); }
#undef V8_MAP

#elif EI_V8_IMPL == 1
#include <immintrin.h>

typedef __m256 v8;

static inline v8 v8_zero(void) { return _mm256_setzero_ps(); }
static inline v8 v8_set1(float x) { return _mm256_set1_ps(x); }
static inline v8 v8_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void v8_store(float *p, v8 a) { _mm256_storeu_ps(p, a); }
static inline v8 v8_add(v8 a, v8 b) { return _mm256_add_ps(a, b); }
static inline v8 v8_sub(v8 a, v8 b) { return _mm256_sub_ps(a, b); }
static inline v8 v8_mul(v8 a, v8 b) { return _mm256_mul_ps(a, b); }
static inline v8 v8_div(v8 a, v8 b) { return _mm256_div_ps(a, b); }
static inline v8 v8_fma(v8 a, v8 b, v8 c) { return _mm256_fmadd_ps(a, b, c); }
/* maxps / minps return the second operand unless the comparison holds: a > b ? a : b. */
static inline v8 v8_max(v8 a, v8 b) { return _mm256_max_ps(a, b); }
static inline v8 v8_min(v8 a, v8 b) { return _mm256_min_ps(a, b); }
static inline v8 v8_sel_lt(v8 a, v8 b, v8 x, v8 y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ)); }
static inline v8 v8_round(v8 a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline v8 v8_pow2i(v8 n) {
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
static inline v8 v8_load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline v8 v8_load_i8(const int8_t *p) {
    int64_t w;
    memcpy(&w, p, 8);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(w)));
}
static inline v8 v8_load_i4(const uint8_t *p) {
    int32_t w;
    memcpy(&w, p, 4);
    __m256i s = _mm256_sllv_epi32(_mm256_set1_epi32(w), _mm256_setr_epi32(28, 24, 20, 16, 12, 8, 4, 0));
    return _mm256_cvtepi32_ps(_mm256_srai_epi32(s, 28));
}
static inline float s_f16(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

#elif EI_V8_IMPL == 2
#include <arm_neon.h>

typedef struct {
    float32x4_t lo, hi;
} v8;

#define V8_2(f) return (v8){f(a.lo, b.lo), f(a.hi, b.hi)}
static inline v8 v8_zero(void) { return (v8){vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
static inline v8 v8_set1(float x) { return (v8){vdupq_n_f32(x), vdupq_n_f32(x)}; }
static inline v8 v8_load(const float *p) { return (v8){vld1q_f32(p), vld1q_f32(p + 4)}; }
static inline void v8_store(float *p, v8 a) { vst1q_f32(p, a.lo), vst1q_f32(p + 4, a.hi); }
static inline v8 v8_add(v8 a, v8 b) { V8_2(vaddq_f32); }
static inline v8 v8_sub(v8 a, v8 b) { V8_2(vsubq_f32); }
static inline v8 v8_mul(v8 a, v8 b) { V8_2(vmulq_f32); }
static inline v8 v8_div(v8 a, v8 b) { V8_2(vdivq_f32); }
static inline v8 v8_fma(v8 a, v8 b, v8 c) { return (v8){vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi)}; }
/* vmaxq treats -0 < +0 and propagates NaN; select keeps the a > b ? a : b definition. */
static inline float32x4_t max4(float32x4_t a, float32x4_t b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
static inline float32x4_t min4(float32x4_t a, float32x4_t b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
static inline v8 v8_max(v8 a, v8 b) { V8_2(max4); }
static inline v8 v8_min(v8 a, v8 b) { V8_2(min4); }
static inline v8 v8_sel_lt(v8 a, v8 b, v8 x, v8 y) {
    return (v8){vbslq_f32(vcltq_f32(a.lo, b.lo), x.lo, y.lo), vbslq_f32(vcltq_f32(a.hi, b.hi), x.hi, y.hi)};
}
static inline v8 v8_round(v8 a) { return (v8){vrndnq_f32(a.lo), vrndnq_f32(a.hi)}; }
static inline float32x4_t pow2i4(float32x4_t n) {
    return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23));
}
static inline v8 v8_pow2i(v8 n) { return (v8){pow2i4(n.lo), pow2i4(n.hi)}; }
static inline v8 v8_load_f16(const uint16_t *p) {
    float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(p));
    return (v8){vcvt_f32_f16(vget_low_f16(h)), vcvt_f32_f16(vget_high_f16(h))};
}
static inline v8 v8_load_i8(const int8_t *p) {
    int16x8_t s = vmovl_s8(vld1_s8(p));
    return (v8){vcvtq_f32_s32(vmovl_s16(vget_low_s16(s))), vcvtq_f32_s32(vmovl_s16(vget_high_s16(s)))};
}
static inline v8 v8_load_i4(const uint8_t *p) {
    int32_t w;
    memcpy(&w, p, 4);
    int32x4_t b = vdupq_n_s32(w);
    const int32_t sl[4] = {28, 24, 20, 16}, sh[4] = {12, 8, 4, 0};
    int32x4_t lo = vshrq_n_s32(vshlq_s32(b, vld1q_s32(sl)), 28), hi = vshrq_n_s32(vshlq_s32(b, vld1q_s32(sh)), 28);
    return (v8){vcvtq_f32_s32(lo), vcvtq_f32_s32(hi)};
}
static inline float s_f16(uint16_t h) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0); }
#undef V8_2
#else
#error "EI_V8_IMPL must be 0, 1 or 2"
#endif

/* ---- shared on top of the primitives ---- */

/* Fixed reduction tree: t[j] = v[j] + v[j+4]; u[j] = t[j] + t[j+2]; u[0] + u[1]. */
static inline float v8_hsum(v8 a) {
#if EI_V8_IMPL == 1
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
#elif EI_V8_IMPL == 2
    float32x4_t t = vaddq_f32(a.lo, a.hi);
    float32x2_t u = vadd_f32(vget_low_f32(t), vget_high_f32(t));
    return vget_lane_f32(u, 0) + vget_lane_f32(u, 1);
#else
    float t[4], u[2];
    for (int j = 0; j < 4; j++) t[j] = a.v[j] + a.v[j + 4];
    for (int j = 0; j < 2; j++) u[j] = t[j] + t[j + 2];
    return u[0] + u[1];
#endif
}

/* Same tree with max (exact, so only the a > b ? a : b tie rule matters). */
static inline float v8_hmax(v8 a) {
    float l[8];
    v8_store(l, a);
    float t[4], u[2];
    for (int j = 0; j < 4; j++) t[j] = l[j] > l[j + 4] ? l[j] : l[j + 4];
    for (int j = 0; j < 2; j++) u[j] = t[j] > t[j + 2] ? t[j] : t[j + 2];
    return u[0] > u[1] ? u[0] : u[1];
}

/* Partial loads / stores of n < 8 lanes through a stack buffer (never touching memory past n);
 * missing lanes take fill. */
static inline v8 v8_loadn(const float *p, int64_t n, float fill) {
    float t[8];
    for (int l = 0; l < 8; l++) t[l] = l < n ? p[l] : fill;
    return v8_load(t);
}
static inline void v8_storen(float *p, v8 a, int64_t n) {
    float t[8];
    v8_store(t, a);
    memcpy(p, t, (size_t)n * sizeof *p);
}
static inline v8 v8_loadn_f16(const uint16_t *p, int64_t n) {
    uint16_t t[8] = {0};
    memcpy(t, p, (size_t)n * sizeof *p);
    return v8_load_f16(t);
}
static inline v8 v8_loadn_i8(const int8_t *p, int64_t n) {
    int8_t t[8] = {0};
    memcpy(t, p, (size_t)n);
    return v8_load_i8(t);
}
/* n nibbles (the first at the low half of p[0]); the rest zero */
static inline v8 v8_loadn_i4(const uint8_t *p, int64_t n) {
    uint8_t t[4] = {0};
    memcpy(t, p, (size_t)(n + 1) / 2);
    if (n & 1) t[n / 2] &= 0x0f;
    return v8_load_i4(t);
}

/* Shared argument reduction of exp / expm1: x = n ln2 + r, |r| <= ln2 / 2, returns
 * expm1(r) = r + r^2 p(r) and n. */
static inline v8 v8_exp_reduce(v8 xc, v8 *n_out) {
    v8 n = v8_round(v8_mul(xc, v8_set1(1.44269504088896341f)));
    n = v8_min(n, v8_set1(127.0f));
    v8 r = v8_fma(n, v8_set1(-0.693359375f), xc);
    r = v8_fma(n, v8_set1(2.12194440e-4f), r);
    v8 p = v8_set1(1.9875691500e-4f);
    p = v8_fma(p, r, v8_set1(1.3981999507e-3f));
    p = v8_fma(p, r, v8_set1(8.3334519073e-3f));
    p = v8_fma(p, r, v8_set1(4.1665795894e-2f));
    p = v8_fma(p, r, v8_set1(1.6666665459e-1f));
    p = v8_fma(p, r, v8_set1(5.0000001201e-1f));
    *n_out = n;
    return v8_fma(p, v8_mul(r, r), r);
}

/* exp(x): Cody-Waite range reduction by ln 2 and a degree-5 polynomial (Cephes expf), ~1 ulp.
 * Below -87.3 the result is 0, above 88.7 +inf (NaN input: not specified). */
static inline v8 v8_exp(v8 x) {
    const v8 lo = v8_set1(-87.33654f), hi = v8_set1(88.72283f);
    v8 xc = v8_min(v8_max(x, lo), hi), n;
    v8 y = v8_add(v8_exp_reduce(xc, &n), v8_set1(1.0f));
    y = v8_mul(y, v8_pow2i(n));
    y = v8_sel_lt(x, lo, v8_zero(), y);
    return v8_sel_lt(hi, x, v8_set1(__builtin_inff()), y);
}

/* exp(x) - 1 without the cancellation of exp(x) - 1 near 0 (ELU): 2^n expm1(r) + (2^n - 1), exact
 * for n = 0 (|x| < 0.35). Defined for x <= 88.7 (ELU uses it for x <= 0 only). */
static inline v8 v8_expm1(v8 x) {
    v8 xc = v8_min(v8_max(x, v8_set1(-87.33654f)), v8_set1(88.72283f)), n;
    v8 e = v8_exp_reduce(xc, &n), p2 = v8_pow2i(n);
    return v8_fma(e, p2, v8_sub(p2, v8_set1(1.0f)));
}
