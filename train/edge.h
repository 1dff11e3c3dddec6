/* EdgeInfinite over a whole document: segment-by-segment forward, full BPTT by recomputation,
 * routing of short documents to the base model, and streaming inference (window / edgeinfinite
 * modes, prompts and one-token decoding).
 *
 * Training (ei_edge_doc_train): the forward sweep keeps only each segment's input state (one
 * ei_state block per segment, ei_edge_saved_state_bytes each); the backward sweep runs from the
 * last segment, re-running its forward from the saved input state, seeding the loss gradient and
 * the gradient of its output state (carried from the later segment), and reading back the gradient
 * of its input state. bptt_segments = k > 0 cuts the carried gradient every k segments. Peak
 * activation memory is one segment graph; attention never builds a T x T buffer.
 *
 * Position t of a document predicts targets[t]; a position counts when targets[t] >= 0 and
 * (mask == NULL or mask[t] != 0). Loss = mean NLL over counted positions.
 *
 * Ownership: ei_edge borrows the model and the gates (both must outlive it); it owns its state,
 * graphs and buffers (ei_edge_free). Not thread-safe. */
#ifndef EI_EDGE_MODEL_H
#define EI_EDGE_MODEL_H

#include "autograd/autograd.h"
#include "formats/gates.h"
#include "model/options.h"
#include "train/ei_state.h"
#include "formats/model.h"

#include <stdint.h>

typedef struct ei_edge ei_edge;

typedef struct {
    double loss;      /* mean NLL over counted positions (0 when none) */
    double nll_sum;   /* summed NLL (nats) */
    int64_t count;    /* counted positions */
    int routed;       /* 1: ran the unchanged base model (full attention) */
    int n_segments;   /* segments processed (0 when routed) */
} ei_doc_result;

/* mode: EI_MODE_EDGEINFINITE (gates required), EI_MODE_WINDOW (gates unused, may be NULL) or
 * EI_MODE_FULL (base model only). dtype: AG_F32, or AG_F64 for gradient checks (weights copied). */
ei_edge *ei_edge_new(const ei_model *m, const ei_opts *o, ei_gates *gates, ei_mode mode, ag_dtype dtype);
void ei_edge_free(ei_edge *e);
const ei_opts *ei_edge_opts(const ei_edge *e);
ei_mode ei_edge_mode(const ei_edge *e);
/* 1 when a document of total_len tokens runs the base model instead (routing). */
int ei_edge_routes(const ei_edge *e, int64_t total_len);
/* Bytes of one saved per-segment input state (all layers). */
size_t ei_edge_saved_state_bytes(const ei_edge *e);

/* Forward + backward of one document (edgeinfinite mode only). Adds d(weight * loss)/d gates to
 * gates->grad; for float64 edges also to grad64 (gates->n doubles) when non-NULL. Routed documents
 * add nothing (the gates play no part there). */
int ei_edge_doc_train(ei_edge *e, const int32_t *ids, const int32_t *targets, const uint8_t *mask,
                      int64_t n, double weight, ei_doc_result *res, double *grad64);
/* Forward only, same loss (routing included). Leaves the streaming state at the end of the
 * document. */
int ei_edge_doc_eval(ei_edge *e, const int32_t *ids, const int32_t *targets, const uint8_t *mask,
                     int64_t n, ei_doc_result *res);

/* Streaming: ei_edge_reset starts a document; ei_edge_feed processes n more tokens in segments of
 * at most L (in full mode through the base model's KV cache, limited to max_seq_len). targets may
 * be NULL; otherwise their NLL is added to *nll_sum and the counted positions to *count (either
 * pointer may be NULL). logits_last (vocab floats, may be NULL) receives the logits after the last
 * token. Decoding = feeding one token at a time; memory keeps absorbing tokens that leave the
 * window. */
void ei_edge_reset(ei_edge *e);
int ei_edge_feed(ei_edge *e, const int32_t *ids, int64_t n, const int32_t *targets, double *nll_sum,
                 int64_t *count, float *logits_last);
/* Optional progress of ei_edge_doc_eval / ei_edge_doc_train: called after each segment with the
 * tokens done and the document length. fn NULL turns it off. */
typedef void (*ei_edge_progress_fn)(void *ctx, int64_t done, int64_t total);
void ei_edge_set_progress(ei_edge *e, ei_edge_progress_fn fn, void *ctx);

/* The streaming state (valid for window / edgeinfinite modes; NULL in full mode). */
const ei_state *ei_edge_state(const ei_edge *e);

#endif
