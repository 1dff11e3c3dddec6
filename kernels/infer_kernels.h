/* Float32 forward-only kernels for the fast inference path (train/infer.h) and anyone else who needs a
 * plain forward of the Llama building blocks without the autograd engine.
 *
 * Conventions: matrices are row-major; a linear map from n_in to n_out has its weight stored
 * [n_out, n_in] (PyTorch nn.Linear), so y = x W^T + b. Activations are [n_rows, width] with an explicit
 * row stride where a kernel works on a column slice. No kernel allocates: callers pass outputs and
 * scratch. Every kernel computes each output element in a fixed order, so results do not depend on
 * the number of OpenMP threads. */
#ifndef EI_INFER_KERNELS_H
#define EI_INFER_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for n_rows rows of dim floats. out may equal x. */
void ei_k_rmsnorm(float *out, const float *x, const float *w, int n_rows, int dim, float eps);

/* y[n_rows, n_out] = x[n_rows, n_in] W^T (+ b when b != NULL), W is [n_out, n_in].
 * One row uses sgemv, several rows one sgemm. y must not alias x. */
void ei_k_linear(float *y, const float *x, const float *W, const float *b, int n_rows, int n_in, int n_out);

/* Rotary tables for positions 0..n_pos-1: cos_tab/sin_tab are [n_pos, head_dim/2],
 * angle(p, j) = p * theta^(-2j/head_dim), computed in double and rounded once. */
void ei_k_rope_table(float *cos_tab, float *sin_tab, int n_pos, int head_dim, double theta);

/* Applies RoPE in place to n_rows rows; row r holds n_heads heads of head_dim floats starting at
 * x + r * row_stride, and is rotated by the angles of position pos[r] (looked up in the tables, which
 * must cover every pos[r]). interleaved = 1 rotates pairs (x[2j], x[2j+1]) (llama2.c layout),
 * 0 rotates (x[j], x[j + head_dim/2]) (Hugging Face rotate-half layout). */
void ei_k_rope(float *x, int n_rows, size_t row_stride, int n_heads, int head_dim, const int32_t *pos,
               const float *cos_tab, const float *sin_tab, int interleaved);

/* In-place softmax of n floats (max-subtracted). */
void ei_k_softmax(float *x, int n);

/* out[i] = silu(gate[i]) * up[i] for n elements; out may equal gate or up. */
void ei_k_swiglu(float *out, const float *gate, const float *up, size_t n);

/* Dot product with a fixed summation order (vectorised by the compiler through omp simd). */
float ei_k_dot(const float *a, const float *b, int n);

/* Causal grouped-query attention for n_q query rows against n_k cached keys/values.
 *   q:   [n_q, n_heads * head_dim]        (RoPE already applied)
 *   k,v: [n_k, n_kv_heads * head_dim]     (cache rows; k with RoPE applied)
 *   out: [n_q, n_heads * head_dim]
 * Query row i may attend key j iff j <= q_offset + i (q_offset = n_k - n_q for a plain prefix cache)
 * and, when key_valid != NULL, key_valid[j] != 0. Query head h reads KV head h / (n_heads /
 * n_kv_heads). Scores are scaled by `scale` (usually 1/sqrt(head_dim)). A row with no visible key
 * gets zeros. Online softmax (one pass over the keys, no [n_q, n_k] buffer); head_dim must be at most
 * EI_K_MAX_HEAD_DIM. OpenMP over (row, head) pairs. */
#define EI_K_MAX_HEAD_DIM 512
void ei_k_attention(float *out, const float *q, const float *k, const float *v, int n_q, int n_k,
                    int n_heads, int n_kv_heads, int head_dim, int q_offset, const uint8_t *key_valid,
                    float scale);

/* The same causal attention (no key mask) through two sgemm calls per head: scores [n_q, n_k] for
 * one head at a time in scratch (n_q * n_k floats), softmax per row, then scores x V. Faster than
 * ei_k_attention for multi-token prefill; the usual choice when n_q > 1. */
void ei_k_attention_gemm(float *out, const float *q, const float *k, const float *v, int n_q, int n_k,
                         int n_heads, int n_kv_heads, int head_dim, int q_offset, float scale, float *scratch);

/* Row-wise log-sum-exp minus the target's logit: the negative log-likelihood of target under
 * softmax(logits[0..n-1]), accumulated in double. */
double ei_k_nll(const float *logits, int n, int target);

#endif
