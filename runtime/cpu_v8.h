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
 * v8i, 8 int32 lanes (also seen as 32 bytes), carries the integer kernels (cpu_kern_int.inc):
 * integer sums are exact, so only which products a lane receives is specified (v8i_dpbusd: bytes
 * 4 l .. 4 l + 3; the int16 dot products: any two of the 16, only their total is used), and the
 * implementations may reach them differently: vpmaddubsw + vpmaddwd or AVX-VNNI's vpdpbusd
 * (EI_V8_VNNI), NEON sdot (__ARM_FEATURE_DOTPROD) or widening multiplies.
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
/* ---- integer lanes (cpu_kern_int.inc) ---- */
static inline v8 v8_trunc(v8 a) { V8_MAP(truncf(a.v[l])); }
static inline v8 v8_abs(v8 a) { V8_MAP(fabsf(a.v[l])); }
static inline v8 v8_perm(v8 a, v8i idx) { V8_MAP(a.v[idx.v[l] & 7]); }
/* lanes p[off[l]] (built in registers: a stack array loaded as a vector stalls on store forwarding) */
static inline v8 v8_gather(const float *p, const int64_t *off) { V8_MAP(p[off[l]]); }
static inline v8 v8_gather_f16(const uint16_t *p, const int64_t *off) { V8_MAP(ei_f16_to_f32(p[off[l]])); }
/* even lanes of a then of b, odd lanes of a then of b */
static inline void v8_deinterleave(v8 a, v8 b, v8 *ev, v8 *od) {
    for (int l = 0; l < 4; l++) {
        ev->v[l] = a.v[2 * l], ev->v[4 + l] = b.v[2 * l];
        od->v[l] = a.v[2 * l + 1], od->v[4 + l] = b.v[2 * l + 1];
    }
}
/* integral lanes in [-128, 127] as 8 bytes */
static inline void v8_store_i8(int8_t *p, v8 a) {
    for (int l = 0; l < 8; l++) p[l] = (int8_t)a.v[l];
}
static inline v8 v8i_cvt(v8i a) { V8_MAP((float)a.v[l]); }
static inline v8i v8_cvt_i(v8 a) {
    v8i r;
    for (int l = 0; l < 8; l++) r.v[l] = (int32_t)a.v[l];
    return r;
}
static inline v8i v8i_zero(void) {
    v8i r;
    memset(&r, 0, sizeof r);
    return r;
}
static inline v8i v8i_load(const void *p) {
    v8i r;
    memcpy(r.v, p, 32);
    return r;
}
static inline void v8i_store(void *p, v8i a) { memcpy(p, a.v, 32); }
static inline v8i v8i_add(v8i a, v8i b) {
    for (int l = 0; l < 8; l++) a.v[l] = (int32_t)((uint32_t)a.v[l] + (uint32_t)b.v[l]);
    return a;
}
static inline v8i v8i_sub(v8i a, v8i b) {
    for (int l = 0; l < 8; l++) a.v[l] = (int32_t)((uint32_t)a.v[l] - (uint32_t)b.v[l]);
    return a;
}
static inline v8i v8i_set1_u8(uint8_t b) {
    v8i r;
    memset(r.v, b, 32);
    return r;
}
static inline void v8i_u4split(v8i w, v8i *lo, v8i *hi) {
    uint8_t b[32], l8[32], h8[32];
    memcpy(b, w.v, 32);
    for (int i = 0; i < 32; i++) l8[i] = (uint8_t)((b[i] ^ 0x88) & 15), h8[i] = (uint8_t)((b[i] ^ 0x88) >> 4);
    memcpy(lo->v, l8, 32), memcpy(hi->v, h8, 32);
}
/* signed x signed bytes, four per lane: acc_l + sum_j a[4 l + j] b[4 l + j]; exact for any a and
 * for b in [-127, 127] (which the AVX2 form needs) */
static inline v8i v8i_dot_s8(v8i acc, v8i a, v8i b) {
    int8_t ab[32], bb[32];
    memcpy(ab, a.v, 32), memcpy(bb, b.v, 32);
    for (int l = 0; l < 8; l++) {
        int32_t t = 0;
        for (int j = 0; j < 4; j++) t += (int32_t)ab[4 * l + j] * bb[4 * l + j];
        acc.v[l] += t;
    }
    return acc;
}
static inline v8i v8i_dpbusd(v8i acc, v8i u, v8i s) {
    uint8_t ub[32];
    int8_t sb[32];
    memcpy(ub, u.v, 32), memcpy(sb, s.v, 32);
    for (int l = 0; l < 8; l++) {
        int32_t t = 0;
        for (int j = 0; j < 4; j++) t += (int32_t)ub[4 * l + j] * sb[4 * l + j];
        acc.v[l] += t;
    }
    return acc;
}
static inline v8i v8i_madd_i16i8(v8i acc, const int16_t *x, const int8_t *w) {
    for (int l = 0; l < 8; l++) acc.v[l] += (int32_t)x[2 * l] * w[2 * l] + (int32_t)x[2 * l + 1] * w[2 * l + 1];
    return acc;
}
static inline v8i v8i_madd_i16i4(v8i acc, const int16_t *x, const uint8_t *w) {
    for (int l = 0; l < 8; l++) {
        const int32_t lo = (int32_t)((uint32_t)w[l] << 28) >> 28, hi = (int32_t)((uint32_t)w[l] << 24) >> 28;
        acc.v[l] += x[2 * l] * lo + x[2 * l + 1] * hi;
    }
    return acc;
}
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
/* ---- integer lanes (cpu_kern_int.inc) ---- */
typedef __m256i v8i;
static inline v8 v8_trunc(v8 a) { return _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC); }
static inline v8 v8_abs(v8 a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline v8 v8_perm(v8 a, v8i idx) { return _mm256_permutevar8x32_ps(a, idx); }
static inline v8 v8_gather(const float *p, const int64_t *off) {
    return _mm256_setr_ps(p[off[0]], p[off[1]], p[off[2]], p[off[3]], p[off[4]], p[off[5]], p[off[6]], p[off[7]]);
}
static inline v8 v8_gather_f16(const uint16_t *p, const int64_t *off) {
    return _mm256_cvtph_ps(_mm_setr_epi16((short)p[off[0]], (short)p[off[1]], (short)p[off[2]], (short)p[off[3]],
                                          (short)p[off[4]], (short)p[off[5]], (short)p[off[6]], (short)p[off[7]]));
}
static inline void v8_deinterleave(v8 a, v8 b, v8 *ev, v8 *od) {
    *ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xd8));
    *od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xdd)), 0xd8));
}
static inline void v8_store_i8(int8_t *p, v8 a) {
    const __m256i i = _mm256_cvttps_epi32(a), w = _mm256_packs_epi32(i, i), b = _mm256_packs_epi16(w, w);
    const __m256i lo = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
    _mm_storel_epi64((__m128i *)p, _mm256_castsi256_si128(lo)); /* bytes 0-3 of each 128-bit half */
}
static inline v8 v8i_cvt(v8i a) { return _mm256_cvtepi32_ps(a); }
static inline v8i v8_cvt_i(v8 a) { return _mm256_cvttps_epi32(a); }
static inline v8i v8i_zero(void) { return _mm256_setzero_si256(); }
static inline v8i v8i_load(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline void v8i_store(void *p, v8i a) { _mm256_storeu_si256((__m256i *)p, a); }
static inline v8i v8i_add(v8i a, v8i b) { return _mm256_add_epi32(a, b); }
static inline v8i v8i_sub(v8i a, v8i b) { return _mm256_sub_epi32(a, b); }
static inline v8i v8i_set1_u8(uint8_t b) { return _mm256_set1_epi8((char)b); }
static inline void v8i_u4split(v8i w, v8i *lo, v8i *hi) {
    const __m256i m = _mm256_set1_epi8(0x0f), t = _mm256_xor_si256(w, _mm256_set1_epi8((char)0x88));
    *lo = _mm256_and_si256(t, m);
    *hi = _mm256_and_si256(_mm256_srli_epi16(t, 4), m);
}
/* u8 x s8, four per lane. vpmaddubsw saturates pairs to int16, which u <= 127 rules out (2 x 127 x
 * 128 < 32768), so it equals AVX-VNNI's vpdpbusd, which does not saturate. */
static inline v8i v8i_dpbusd(v8i acc, v8i u, v8i s) {
#if defined(EI_V8_VNNI)
    return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}
/* |a| as u8 (128 for -128) times b with a's sign: vpsignb(b, a) keeps b in [-127, 127] exact,
 * and the vpmaddubsw pairs stay below 2 x 128 x 127 < 32768 */
static inline v8i v8i_dot_s8(v8i acc, v8i a, v8i b) {
    return v8i_dpbusd(acc, _mm256_abs_epi8(a), _mm256_sign_epi8(b, a));
}
static inline v8i v8i_madd_i16i8(v8i acc, const int16_t *x, const int8_t *w) {
    __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x), wv));
}
/* 16 nibbles: byte j into lane j, a copy 12 bits up puts the high nibble at bit 16, and shifting
 * each 16-bit half up by 12 and back (arithmetic) sign-extends the low / high nibble in place. */
static inline v8i v8i_madd_i16i4(v8i acc, const int16_t *x, const uint8_t *w) {
    int64_t b;
    memcpy(&b, w, 8);
    __m256i v = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(b));
    v = _mm256_or_si256(v, _mm256_slli_epi32(v, 12));
    v = _mm256_srai_epi16(_mm256_slli_epi16(v, 12), 12);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x), v));
}

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
/* ---- integer lanes (cpu_kern_int.inc) ---- */
typedef struct {
    int32x4_t lo, hi;
} v8i;
static inline v8 v8_trunc(v8 a) { return (v8){vrndq_f32(a.lo), vrndq_f32(a.hi)}; }
static inline v8 v8_abs(v8 a) { return (v8){vabsq_f32(a.lo), vabsq_f32(a.hi)}; }
static inline float32x4_t perm4(uint8x16x2_t t, int32x4_t idx) { /* bytes 4 i .. 4 i + 3 of the pair */
    uint32x4_t b = vmlaq_n_u32(vdupq_n_u32(0x03020100u), vandq_u32(vreinterpretq_u32_s32(idx), vdupq_n_u32(7)),
                               0x04040404u);
    return vreinterpretq_f32_u8(vqtbl2q_u8(t, vreinterpretq_u8_u32(b)));
}
static inline v8 v8_perm(v8 a, v8i idx) {
    uint8x16x2_t t = {{vreinterpretq_u8_f32(a.lo), vreinterpretq_u8_f32(a.hi)}};
    return (v8){perm4(t, idx.lo), perm4(t, idx.hi)};
}
static inline v8 v8_gather(const float *p, const int64_t *off) {
    float32x4_t lo = vdupq_n_f32(p[off[0]]), hi = vdupq_n_f32(p[off[4]]);
    lo = vsetq_lane_f32(p[off[1]], lo, 1), lo = vsetq_lane_f32(p[off[2]], lo, 2), lo = vsetq_lane_f32(p[off[3]], lo, 3);
    hi = vsetq_lane_f32(p[off[5]], hi, 1), hi = vsetq_lane_f32(p[off[6]], hi, 2), hi = vsetq_lane_f32(p[off[7]], hi, 3);
    return (v8){lo, hi};
}
static inline v8 v8_gather_f16(const uint16_t *p, const int64_t *off) {
    uint16x8_t h = vdupq_n_u16(p[off[0]]);
    h = vsetq_lane_u16(p[off[1]], h, 1), h = vsetq_lane_u16(p[off[2]], h, 2), h = vsetq_lane_u16(p[off[3]], h, 3);
    h = vsetq_lane_u16(p[off[4]], h, 4), h = vsetq_lane_u16(p[off[5]], h, 5), h = vsetq_lane_u16(p[off[6]], h, 6);
    h = vsetq_lane_u16(p[off[7]], h, 7);
    float16x8_t f = vreinterpretq_f16_u16(h);
    return (v8){vcvt_f32_f16(vget_low_f16(f)), vcvt_f32_f16(vget_high_f16(f))};
}
static inline void v8_deinterleave(v8 a, v8 b, v8 *ev, v8 *od) {
    *ev = (v8){vuzp1q_f32(a.lo, a.hi), vuzp1q_f32(b.lo, b.hi)};
    *od = (v8){vuzp2q_f32(a.lo, a.hi), vuzp2q_f32(b.lo, b.hi)};
}
static inline void v8_store_i8(int8_t *p, v8 a) {
    int16x8_t w = vcombine_s16(vmovn_s32(vcvtq_s32_f32(a.lo)), vmovn_s32(vcvtq_s32_f32(a.hi)));
    vst1_s8(p, vmovn_s16(w));
}
static inline v8 v8i_cvt(v8i a) { return (v8){vcvtq_f32_s32(a.lo), vcvtq_f32_s32(a.hi)}; }
static inline v8i v8_cvt_i(v8 a) { return (v8i){vcvtq_s32_f32(a.lo), vcvtq_s32_f32(a.hi)}; }
static inline v8i v8i_zero(void) { return (v8i){vdupq_n_s32(0), vdupq_n_s32(0)}; }
static inline v8i v8i_load(const void *p) {
    const uint8_t *b = p;
    return (v8i){vreinterpretq_s32_u8(vld1q_u8(b)), vreinterpretq_s32_u8(vld1q_u8(b + 16))};
}
static inline void v8i_store(void *p, v8i a) {
    uint8_t *b = p;
    vst1q_u8(b, vreinterpretq_u8_s32(a.lo)), vst1q_u8(b + 16, vreinterpretq_u8_s32(a.hi));
}
static inline v8i v8i_add(v8i a, v8i b) { return (v8i){vaddq_s32(a.lo, b.lo), vaddq_s32(a.hi, b.hi)}; }
static inline v8i v8i_sub(v8i a, v8i b) { return (v8i){vsubq_s32(a.lo, b.lo), vsubq_s32(a.hi, b.hi)}; }
static inline v8i v8i_set1_u8(uint8_t b) {
    int32x4_t v = vreinterpretq_s32_u8(vdupq_n_u8(b));
    return (v8i){v, v};
}
static inline int32x4_t u4lo(int32x4_t w) {
    return vreinterpretq_s32_u8(vandq_u8(veorq_u8(vreinterpretq_u8_s32(w), vdupq_n_u8(0x88)), vdupq_n_u8(15)));
}
static inline int32x4_t u4hi(int32x4_t w) {
    return vreinterpretq_s32_u8(vshrq_n_u8(veorq_u8(vreinterpretq_u8_s32(w), vdupq_n_u8(0x88)), 4));
}
static inline void v8i_u4split(v8i w, v8i *lo, v8i *hi) {
    *lo = (v8i){u4lo(w.lo), u4lo(w.hi)};
    *hi = (v8i){u4hi(w.lo), u4hi(w.hi)};
}
/* sdot where the compiler targets it (-march=armv8.2-a+dotprod, __ARM_FEATURE_DOTPROD); otherwise
 * widening products, pairs added in int16 (|2 x 127 x 128| < 32768) and pairs of pairs in int32:
 * lane l gets bytes 4 l .. 4 l + 3 either way. */
static inline int32x4_t dot4(int32x4_t acc, int32x4_t u, int32x4_t s) {
    int8x16_t a = vreinterpretq_s8_s32(u), b = vreinterpretq_s8_s32(s);
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b)), q = vmull_high_s8(a, b);
    return vpadalq_s16(acc, vpaddq_s16(p, q));
#endif
}
static inline v8i v8i_dpbusd(v8i acc, v8i u, v8i s) { return (v8i){dot4(acc.lo, u.lo, s.lo), dot4(acc.hi, u.hi, s.hi)}; }
/* dot4 is a signed x signed dot product already */
static inline v8i v8i_dot_s8(v8i acc, v8i a, v8i b) { return (v8i){dot4(acc.lo, a.lo, b.lo), dot4(acc.hi, a.hi, b.hi)}; }
static inline v8i madd16(v8i acc, const int16_t *x, int16x8_t wl, int16x8_t wh) {
    int16x8_t x0 = vld1q_s16(x), x1 = vld1q_s16(x + 8);
    acc.lo = vmlal_high_s16(vmlal_s16(acc.lo, vget_low_s16(x0), vget_low_s16(wl)), x0, wl);
    acc.hi = vmlal_high_s16(vmlal_s16(acc.hi, vget_low_s16(x1), vget_low_s16(wh)), x1, wh);
    return acc;
}
static inline v8i v8i_madd_i16i8(v8i acc, const int16_t *x, const int8_t *w) {
    int8x16_t b = vld1q_s8(w);
    return madd16(acc, x, vmovl_s8(vget_low_s8(b)), vmovl_high_s8(b));
}
static inline v8i v8i_madd_i16i4(v8i acc, const int16_t *x, const uint8_t *w) {
    int16x8_t b = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(w)));
    int16x8x2_t z = vzipq_s16(vshrq_n_s16(vshlq_n_s16(b, 12), 12), vshrq_n_s16(vshlq_n_s16(b, 8), 12));
    return madd16(acc, x, z.val[0], z.val[1]);
}
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

/* Lane e of the result: the sum of the 8 lanes of a[e] (each sum below 2^31 in magnitude). */
static inline v8i v8i_hsum8(const v8i *a) {
#if EI_V8_IMPL == 1
    const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
    const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[4], a[5]), _mm256_hadd_epi32(a[6], a[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
#elif EI_V8_IMPL == 2
    int32x4_t p[8];
    for (int e = 0; e < 8; e++) p[e] = vpaddq_s32(a[e].lo, a[e].hi);
    return (v8i){vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3])),
                 vpaddq_s32(vpaddq_s32(p[4], p[5]), vpaddq_s32(p[6], p[7]))};
#else
    v8i r;
    for (int e = 0; e < 8; e++) {
        int64_t s = 0;
        for (int l = 0; l < 8; l++) s += a[e].v[l];
        r.v[e] = (int32_t)s;
    }
    return r;
#endif
}

/* The exact int64 sum of the 8 int32 lanes. */
static inline int64_t v8i_hsum64(v8i a) {
    int32_t t[8];
    v8i_store(t, a);
    int64_t s = 0;
    for (int l = 0; l < 8; l++) s += t[l];
    return s;
}

/* Round half away from zero (C's roundf), exactly: trunc(a) +- 1 when the fraction a - trunc(a)
 * (exact for |a| < 2^23; 0 above, where a is integral) reaches one half. */
static inline v8 v8_round_away(v8 a) {
    const v8 t = v8_trunc(a), f = v8_sub(a, t), z = v8_zero();
    const v8 up = v8_sel_lt(f, v8_set1(0.5f), z, v8_set1(1.0f)), dn = v8_sel_lt(v8_set1(-0.5f), f, z, v8_set1(-1.0f));
    return v8_add(v8_add(t, up), dn);
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
