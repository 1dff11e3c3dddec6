/* CPU kernels used by the autograd engine (and usable by any other module): a row-major GEMM
 * wrapper over OpenBLAS, fused causal GQA attention (forward / backward), RMSNorm and RoPE.
 *
 * Every function exists for float (_f32) and double (_f64). Buffers are caller-owned, row-major and
 * contiguous; nothing here allocates. Backward kernels ADD into their gradient outputs (+=), so
 * gradients from several consumers can accumulate; pass NULL for a gradient that is not wanted.
 *
 * Threads: one pool only. Every kernel, GEMM included, runs on the OpenMP team; OpenBLAS is pinned
 * to one thread (ei_k_threads_set / the first GEMM do that), and ei_k_gemm_* cuts large products
 * into fixed blocks shared by the team. Two spinning pools (OpenBLAS pthreads + libgomp) alternating
 * on 2 cores ran 2.5x slower than one thread. Work is partitioned so that every output element is
 * reduced in one fixed order: results are bit-identical for any thread count. Calling these
 * kernels from inside an OpenMP parallel region is allowed (they then run on the calling thread). */
#ifndef EI_KERNELS_H
#define EI_KERNELS_H

#include <stdint.h>

/* Work (elements touched) below which a kernel stays single-threaded: waking a team costs more
 * than it saves on tiny tensors, and far more when the cores are shared. */
#define EI_KERNELS_PAR_MIN 32768

/* Sets the OpenMP thread count (n >= 1) used by every kernel; OpenBLAS stays at one thread. */
void ei_k_threads_set(int n);
int ei_k_threads_get(void);
/* Pins OpenBLAS to one thread (idempotent, thread-safe). Every kernel that calls BLAS does it. */
void ei_k_blas_init(void);

/* C = alpha * op(A) op(B) + beta * C, row-major. op(A) is M x K, op(B) is K x N; lda/ldb/ldc are
 * the row strides of A, B, C as stored. */
void ei_k_gemm_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
void ei_k_gemm_f64(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                   int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc);

/* Attention problem: q [tq, h, d], k [tk, hkv, d], v [tk, hkv, dv], out [tq, h, dv],
 * lse [h, tq] (per-row logsumexp of the scaled, masked scores; -INFINITY for a row that sees no
 * key, whose output is 0). Query head hh uses KV head hh / (h / hkv). Query i sees key j iff
 * j <= causal_offset + i (INT64_MAX: all keys) and the key is valid (valid_u8 / valid_i32 both
 * NULL: all valid; otherwise the non-NULL one, [tk], nonzero = valid). */
typedef struct {
    int64_t tq, tk, h, hkv, d, dv;
    double scale;
    int64_t causal_offset;
    const uint8_t *valid_u8;
    const int32_t *valid_i32;
} ei_k_attn;

/* Online softmax over key blocks; no tq x tk buffer. */
void ei_k_attention_forward_f32(const ei_k_attn *p, const float *q, const float *k, const float *v, float *out,
                                float *lse);
void ei_k_attention_forward_f64(const ei_k_attn *p, const double *q, const double *k, const double *v,
                                double *out, double *lse);
/* Recomputes the scores. delta is scratch of h * tq values (overwritten). dq, dk, dv: += . */
void ei_k_attention_backward_f32(const ei_k_attn *p, const float *q, const float *k, const float *v,
                                 const float *out, const float *lse, const float *dout, float *delta, float *dq,
                                 float *dk, float *dv);
void ei_k_attention_backward_f64(const ei_k_attn *p, const double *q, const double *k, const double *v,
                                 const double *out, const double *lse, const double *dout, double *delta,
                                 double *dq, double *dk, double *dv);

/* RMSNorm over rows of length dim: y = x * rstd * w (w NULL = 1), rstd[r] = 1/sqrt(mean(x^2)+eps)
 * is stored for the backward. */
void ei_k_rmsnorm_forward_f32(int64_t rows, int64_t dim, const float *x, const float *w, double eps, float *y,
                              float *rstd);
void ei_k_rmsnorm_forward_f64(int64_t rows, int64_t dim, const double *x, const double *w, double eps, double *y,
                              double *rstd);
/* dx += , dw += (dw reduced over rows in a fixed order). */
void ei_k_rmsnorm_backward_f32(int64_t rows, int64_t dim, const float *x, const float *w, const float *rstd,
                               const float *dy, float *dx, float *dw);
void ei_k_rmsnorm_backward_f64(int64_t rows, int64_t dim, const double *x, const double *w, const double *rstd,
                               const double *dy, double *dx, double *dw);

/* RoPE on x [t, h, d] with positions pos [t]; layout 0 = interleaved pairs (2i, 2i+1),
 * 1 = rotate-half pairs (i, i + d/2). Angle of pair i: pos * theta^(-2i/d). inverse = 1 rotates by
 * the negative angle and ADDS into y (this is the backward: dx += R^T dy); inverse = 0 writes y. */
void ei_k_rope_f32(int64_t t, int64_t h, int64_t d, const int32_t *pos, double theta, int layout, int inverse,
                   const float *x, float *y);
void ei_k_rope_f64(int64_t t, int64_t h, int64_t d, const int32_t *pos, double theta, int layout, int inverse,
                   const double *x, double *y);

#endif
