/* Inner kernels of the cpu backend, one table per instruction set (portable C, AVX2, NEON), all
 * compiled from one source (cpu_kern_body.inc over cpu_v8.h) so that every table gives the same
 * bits as the portable one. The table is picked at run time (ei_cpu_kernels_best): AVX2+FMA+F16C
 * when the x86-64 CPU has them, NEON always on aarch64, portable otherwise. Kernels are serial;
 * callers split outputs across threads and never a reduction. */
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

typedef struct {
    const char *name; /* "portable", "avx2", "neon" */
    /* y[m * ldy + n] = sum_k x[m * ldx + k] w(n, k) (+ bias[n]) for m < M, n0 <= n < n1. Each output
     * is one dot product with 8 partial sums (lane l takes k = l mod 8, fused multiply-add; integer
     * weights: per group, then scaled into the total), combined by v8_hsum, then + bias: the same
     * bits whatever M, the tiling or the thread split. */
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
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
extern const ei_cpu_kernels ei_cpu_kernels_tab_neon;
#endif

#endif
