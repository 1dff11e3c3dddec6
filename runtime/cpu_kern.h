/* Inner kernels of the cpu backend, one table per instruction set (portable C, AVX2, AVX2 +
 * AVX-VNNI, NEON), all compiled from one source (cpu_kern_body.inc and cpu_kern_int.inc over
 * cpu_v8.h) so that every table gives the same bits as the portable one. The table is picked at run
 * time (ei_cpu_kernels_best): AVX2+FMA+F16C when the x86-64 CPU has them (with AVX-VNNI: the
 * avx2-vnni table, unless EI_CPU_NO_VNNI is set), NEON always on aarch64 (sdot when the compiler
 * targets the dot-product extension), portable otherwise. Kernels are serial; callers split
 * outputs across threads and never a reduction. */
#ifndef EI_RUNTIME_CPU_KERN_H
#define EI_RUNTIME_CPU_KERN_H

#include <stdint.h>

/* A weight matrix [N, K] row-major for FULLY_CONNECTED, read in place (never converted whole):
 *   F32, F16: the value;
 *   I8, I4:   (q - zp) * scale(n, k / group), scale(n, g) = scales[n * scale_row + g]
 *             (zp must be 0 except for EI_CPU_W_I8Z)
 *             (F32 or F16 scales; per-tensor: scale_row 0 and group >= K; per-channel: group >= K).
 * group is a multiple of 8 or >= K. I4 rows are (K + 1) / 2 bytes, the lower nibble first. */
enum { EI_CPU_W_F32 = 0, EI_CPU_W_F16, EI_CPU_W_I8, EI_CPU_W_I4, EI_CPU_W_I8Z /* I8 with zp != 0 */ };

typedef struct {
    int type;
    const void *data;
    int64_t row_bytes;
    int32_t zp;
    int scale_f16;
    const void *scales;
    int64_t scale_row;
    int64_t group;
    float tscale; /* storage for a per-tensor scale (scales may point here) */
} ei_cpu_wmat;

/* Q8 activations: FULLY_CONNECTED with I4 weights and float input quantises each row of x [K] per
 * group of G (the weight's group; G >= K: one group) to int8 (q8_row), then runs integer dot
 * products (fc_q4); runtime/graph.h and docs/runtime-cpu.md give the arithmetic. A row takes
 * ei_cpu_q8_row_bytes(K, G) bytes; with nb = ceil(K / 64) blocks of 64 k and ng groups:
 *   int8  q[nb][64]   block b: the even k = 64 b + 2 p at p, the odd k = 64 b + 2 p + 1 at 32 + p
 *                     (the order in which the nibble pairs of an I4 row split; zeros past K)
 *   int32 c[nb][8]    -8 x the sum of q over lane l's k = 64 b + 8 l .. 64 b + 8 l + 7
 *   int32 idx[nb][8]  lane l's group minus the first group of its chunk of 8 groups
 *   float xsl[nb][8]  lane l's x scale
 *   float xs[ng8]     the x scale of each group (ng rounded up to 8, zero padded).
 * G is a multiple of 8 or >= K (so lanes and 64-blocks never straddle groups or chunks). */
static inline int64_t ei_cpu_q8_row_bytes(int64_t K, int64_t G) {
    const int64_t g = G > 0 && G < K ? G : (K > 0 ? K : 1), nb = (K + 63) / 64, ng8 = ((K + g - 1) / g + 7) / 8 * 8;
    return (nb * 160 + ng8 * 4 + 63) / 64 * 64;
}

/* Q8 blocks for I8 weights with float input (as TFLite's hybrid kernels: the activations are
 * quantised on the fly, the weights read in place): each row of x [K] in nb = ceil(K / 32) blocks
 * of 32 k, block b quantised with its own scale as q8_row quantises a group (amax / 127, round half
 * away, clamp to [-127, 127]; zero: scale 0; a NaN or an infinity: scale NaN). A row takes
 * ei_cpu_q8b_row_bytes(K) bytes:
 *   int8  q[nb][32]   zeros past K
 *   float xs[nb]      the x scale of each block. */
static inline int64_t ei_cpu_q8b_row_bytes(int64_t K) {
    const int64_t nb = (K + 31) / 32;
    return (nb * 36 + 63) / 64 * 64;
}

/* Integer FULLY_CONNECTED (fc_int). x is int16 (the input minus its zero point) in rows of ldx
 * elements laid out for the weight: I8 weights: k at k, zeros up to ldx >= ei_cpu_int_ldx; I4:
 * group g at g * G16 (G16 = G rounded up to 16), zeros between groups. Per output (m, n):
 *   I8: acc = sum_k x[k] (w[n, k] - wzp) + bias[n], exact (int32 lanes widened to int64 every
 *       2048 k), saturated to int32, then ei_cpu_requant(acc, mult[n], shift[n]) + zo, clamped to
 *       [qmin, qmax];
 *   I4: dot_g = sum over group g of x[k] w[n, k] (exact); y = sum over g ascending of
 *       (float)dot_g * (x_scale * w_scale(n, g)), then y + (float)bias[n] * b_scale, then
 *       QUANTIZE's clamp(round_half_away(y / out_scale) + zo). */
typedef struct {
    const int32_t *bias;          /* [N] or NULL */
    const int64_t *xsum;          /* [M]: sum of each x row (I8 weights with a zero point), or NULL */
    int32_t wzp;                  /* I8 per-tensor weight zero point */
    const int32_t *mult, *shift;  /* I8: per output channel */
    float x_scale, b_scale, out_scale; /* I4 */
    int32_t zo, qmin, qmax;
    int otype; /* EI_CPU_OT_*: element type of y */
} ei_cpu_iq;

enum { EI_CPU_OT_I8 = 0, EI_CPU_OT_U8, EI_CPU_OT_I16 };

static inline int64_t ei_cpu_int_ldx(int64_t K, int64_t G, int i4) {
    if (!i4 || G <= 0 || G >= K) return (K + 15) / 16 * 16;
    return (K + G - 1) / G * ((G + 15) / 16 * 16);
}

/* gemmlowp / TFLite fixed point: SaturatingRoundingDoublingHighMul (round half away from zero,
 * INT32_MIN x INT32_MIN saturates), RoundingDivideByPOT (round half away from zero, 0 <= e <= 31)
 * and MultiplyByQuantizedMultiplier with the accumulator saturated to int32 first and the left
 * shift saturating (TFLite leaves both overflows undefined). */
static inline int32_t ei_cpu_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    const int64_t ab = (int64_t)a * b, nudge = ab >= 0 ? (1 << 30) : 1 - (1 << 30);
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31)); /* C division truncates toward zero */
}
static inline int32_t ei_cpu_rdbpot(int32_t x, int e) {
    const int32_t mask = (int32_t)(((int64_t)1 << e) - 1), rem = x & mask, thr = (mask >> 1) + (x < 0);
    const int32_t q = x < 0 ? ~(~x >> e) : x >> e; /* floor(x / 2^e) without shifting a negative */
    return q + (rem > thr);
}
static inline int32_t ei_cpu_requant(int64_t acc, int32_t mult, int32_t shift) {
    int64_t v = acc < INT32_MIN ? INT32_MIN : acc > INT32_MAX ? INT32_MAX : acc;
    const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    v *= (int64_t)1 << left; /* |v| < 2^31, left <= 31: no int64 overflow */
    v = v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : v;
    return ei_cpu_rdbpot(ei_cpu_srdhm((int32_t)v, mult), right);
}

typedef struct {
    const char *name; /* "portable", "avx2", "avx2-vnni", "neon" */
    /* y[m * ldy + n] = sum_k x[m * ldx + k] w(n, k) (+ bias[n]) for m < M, n0 <= n < n1. Each output
     * is one dot product with 8 partial sums (lane l takes k = l mod 8, fused multiply-add; integer
     * weights: per group, then scaled into the total), combined by v8_hsum, then + bias: the same
     * bits whatever M, the tiling or the thread split. Exact float products for every weight type:
     * FULLY_CONNECTED takes it for F32 / F16 weights and for I8 ones with a zero point, group
     * scales or ei_cpu_options.exact_w8; Q8 blocks (fc_q8i8) for other I8 ones, Q8 (fc_q4) for I4. */
    void (*fc)(const float *x, int64_t ldx, int64_t M, const ei_cpu_wmat *w, int64_t K, int64_t n0, int64_t n1,
               const float *bias, float *y, int64_t ldy);
    /* y[i * ldy + j] = sum_k a[i * a_ri + k * a_rk] b[k * ldb + j] for i < M, j < N: one fused
     * multiply-add chain per output, k ascending. */
    void (*mm_nn)(const float *a, int64_t a_ri, int64_t a_rk, int64_t M, const float *b, int64_t ldb, int64_t K,
                  int64_t N, float *y, int64_t ldy);
    float (*sum)(const float *x, int64_t n);           /* 8 partial sums, v8_hsum */
    void (*softmax)(const float *x, float *y, int64_t n, float beta);
    /* y = (x * (1 / sqrtf(sum(x*x) / n + eps))) * w, the same operations as the unfused graph */
    void (*rmsnorm)(const float *x, const float *w, float *y, int64_t n, float eps);
    void (*swiglu)(const float *g, const float *u, float *y, int64_t n); /* (g * logistic(g)) * u */
    void (*exp)(const float *x, float *y, int64_t n);
    void (*logistic)(const float *x, float *y, int64_t n); /* 1 / (1 + exp(-x)) */
    void (*elu)(const float *x, float *y, int64_t n, float alpha);
    /* Q8 activations (layout above): quantises x [K] per group of G into row. */
    void (*q8_row)(const float *x, int64_t K, int64_t G, uint8_t *row);
    /* y[m * ldy + n] for m < M, n0 <= n < n1 from Q8 rows xq + m * ldq and I4 weights w: per lane
     * l (k = 64 b + 8 l .. + 7 of each block b, which lies in one group g), b ascending,
     * acc_l = fma((float)(sum of q4 x q8 over the lane), w_scale(n, g) * x_scale(g), acc_l); then
     * v8_hsum(acc) (+ bias[n]). Integer sums are exact, so every table gives the same bits. */
    void (*fc_q4)(const uint8_t *xq, int64_t ldq, int64_t M, const ei_cpu_wmat *w, int64_t K, int64_t n0, int64_t n1,
                  const float *bias, float *y, int64_t ldy);
    /* Q8 blocks (layout above): quantises x [K] into row. */
    void (*q8b_row)(const float *x, int64_t K, uint8_t *row);
    /* y[m * ldy + n] for m < M, n0 <= n < n1 from Q8 block rows xq + m * ldq and I8 weights w with
     * one scale per row (per channel or per tensor, no zero point): per block b ascending,
     * acc_l = fma((float)(sum of w x q over the lane's 4 k), x_scale(b), acc_l); then
     * v8_hsum(acc) * w_scale(n) (+ bias[n]). Integer sums are exact, so every table gives the same
     * bits. */
    void (*fc_q8i8)(const uint8_t *xq, int64_t ldq, int64_t M, const ei_cpu_wmat *w, int64_t K, int64_t n0,
                    int64_t n1, const float *bias, float *y, int64_t ldy);
    /* Integer FULLY_CONNECTED (ei_cpu_iq above): x int16 rows ldx apart, y of q->otype, ldy apart. */
    void (*fc_int)(const int16_t *x, int64_t ldx, int64_t M, const ei_cpu_wmat *w, int64_t K, int64_t n0, int64_t n1,
                   const ei_cpu_iq *q, void *y, int64_t ldy);
} ei_cpu_kernels;

const ei_cpu_kernels *ei_cpu_kernels_portable(void);
/* The SIMD table for this CPU, or NULL if the build or the CPU has none. */
const ei_cpu_kernels *ei_cpu_kernels_simd(void);
/* ei_cpu_kernels_simd() if not NULL, else the portable table. */
const ei_cpu_kernels *ei_cpu_kernels_best(void);

/* Per-ISA tables (defined only where compiled). */
extern const ei_cpu_kernels ei_cpu_kernels_tab_portable;
#if defined(__x86_64__)
extern const ei_cpu_kernels ei_cpu_kernels_tab_avx2;
/* AVX2 + AVX-VNNI (vpdpbusd in the integer dot products; everything else as avx2), when the
 * compiler can target it. */
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11)
#define EI_CPU_HAVE_AVXVNNI 1
extern const ei_cpu_kernels ei_cpu_kernels_tab_avxvnni;
#endif
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
extern const ei_cpu_kernels ei_cpu_kernels_tab_neon;
#endif

#endif
