/* Fast full-attention inference for a loaded base model: a KV cache and a direct float32 forward
 * (kernels/infer_kernels.h), with no autograd graph. Used by `ei generate`, `ei eval --mode full` and
 * as the reference the EdgeInfinite paths are compared with.
 *
 *   ei_infer *inf = ei_infer_new(model, 0);            // context = model's max_seq_len
 *   ei_infer_forward(inf, prompt, n, logits, EI_INFER_LAST);   // prefill; logits of the last token
 *   while (...) ei_infer_forward(inf, &tok, 1, logits, EI_INFER_LAST);   // decode
 *   ei_infer_reset(inf);                                // next document
 *   ei_infer_free(inf);
 *
 * The model must outlive the ei_infer (weights are borrowed). An ei_infer is not thread-safe; the
 * kernels inside use OpenMP and BLAS threads. */
#ifndef EI_INFER_H
#define EI_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "formats/model.h"

typedef struct ei_infer ei_infer;

typedef enum {
    EI_INFER_NONE = 0, /* logits may be NULL: only fill the cache (and skip the classifier) */
    EI_INFER_LAST = 1, /* logits: [vocab] for the last of the n tokens */
    EI_INFER_ALL = 2,  /* logits: [n, vocab], one row per token */
} ei_infer_logits;

/* max_ctx: positions the cache holds (<= 0: the model's max_seq_len). Returns NULL with ei_error set. */
ei_infer *ei_infer_new(const ei_model *m, int max_ctx);
void ei_infer_free(ei_infer *inf);
/* Forgets the cached tokens (position back to 0); keeps the buffers. */
void ei_infer_reset(ei_infer *inf);
/* Number of tokens in the cache = position of the next token. */
int ei_infer_pos(const ei_infer *inf);
int ei_infer_max_ctx(const ei_infer *inf);
const ei_model *ei_infer_model(const ei_infer *inf);

/* Runs n tokens at positions pos..pos+n-1 (appending their keys/values to the cache); internally in
 * chunks whose linear layers are single sgemm calls. Fails (-1, ei_error set, cache unchanged) when
 * an id is outside the vocabulary or the cache would overflow max_ctx. */
int ei_infer_forward(ei_infer *inf, const int32_t *ids, int n, float *logits, ei_infer_logits which);

/* Negative log-likelihood of a document under the model with full attention, using a sliding window
 * when it is longer than the context: windows of max_ctx tokens, each starting `stride` tokens after
 * the previous one (stride <= 0: max_ctx / 2), scoring in each window only the targets the previous
 * windows did not score, so every token from ids[1] on is predicted exactly once and, after the
 * first window, with at least max_ctx - stride tokens of context. Adds the summed NLL (nats) to
 * *nll_sum and the number of predicted tokens (n - 1) to *n_pred. Resets the cache. */
int ei_infer_score(ei_infer *inf, const int32_t *ids, int n, int stride, double *nll_sum, int64_t *n_pred);

/* Optional progress report from ei_infer_score: called after each window with the number of targets
 * of this document scored so far and in total. fn NULL turns it off. */
typedef void (*ei_infer_progress_fn)(void *ctx, int64_t done, int64_t total);
void ei_infer_set_progress(ei_infer *inf, ei_infer_progress_fn fn, void *ctx);

/* Building blocks of one layer, for code that runs the same model with other attention schemes.
 * All take n rows of activations in row-major [n, width] buffers.
 *   ei_infer_qkv: xn [n, D] (already RMS-normed) -> q [n, H*d], k [n, Hkv*d], v [n, Hkv*d] (biases
 *                 added, RoPE NOT applied).
 *   ei_infer_ffn: x [n, D] += W_down(silu(W_gate xn) * W_up xn), xn = rmsnorm(x; ffn_norm);
 *                 scratch: n * (D + 2 * hidden_dim) floats. */
void ei_infer_qkv(const ei_model *m, int layer, const float *xn, int n, float *q, float *k, float *v);
void ei_infer_ffn(const ei_model *m, int layer, float *x, int n, float *scratch);

#endif
