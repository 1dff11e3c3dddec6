/* An EdgeInfinite model over a frozen base model, run eagerly on autograd graphs built from the
 * layer recipe: documents in every mode (full attention, window, edgeinfinite), training with
 * full BPTT by recomputation, streaming prompts and one-token decoding. Segments and routing follow
 * the one segment rule (model/segment.h), whatever the call sizes: feeding 10 + 10 tokens equals
 * feeding 20, and one token at a time equals the whole.
 *
 * Full mode is the base model: the segment rule with full-attention options (ei_opts_full) over a
 * context of ctx tokens (default: the model's trained context). Scoring a longer document in full
 * mode uses a sliding window: windows of ctx tokens, each starting `stride` tokens after the
 * previous one (default ctx / 2), each scoring only the positions the previous windows did not, so
 * every position is scored once and, after the first window, with at least ctx - stride tokens of
 * context. Streaming beyond ctx in full mode fails ("context full").
 *
 * Window and edgeinfinite modes route documents of at most ei_opts_route_threshold tokens to the
 * base model (see model/segment.h for streaming documents of unknown length).
 *
 * Training (ei_edge_doc_train): the document's segments are cut into chunks (ei_edge_set_chunk),
 * each run by one training graph, layer by layer. The forward sweep keeps each chunk's input state
 * (one ei_state block per chunk, ei_edge_saved_state_bytes each); the backward sweep runs from the
 * last chunk, seeding the loss gradient and the gradient of its output state (carried from the
 * later chunk), and reading back the gradient of its input state; inside a chunk the graph
 * carries it. bptt_segments = k > 0 cuts the carried gradient every k segments (chunks end there).
 * Chunks whose training graph fits the activation budget (ei_edge_set_activation_memory) run
 * their training forward in the forward sweep and keep its activations for the backward; the
 * others compute only their output state then and re-run their forward from the saved input state
 * in the backward sweep. Either way a chunk runs the same graph on the same input state: the
 * gradients do not depend on the budget, bit for bit. Beyond the budget activation memory is one
 * chunk graph; attention never builds a T x T buffer. The classifier and loss of a training graph
 * run on the counted positions only.
 *
 * Position t of a document predicts targets[t]; a position counts when targets[t] >= 0 and
 * (mask == NULL or mask[t] != 0). Loss = mean NLL over counted positions.
 *
 * Ownership: ei_edge borrows the model and the gates (both must outlive it); it owns its state,
 * graphs and buffers (ei_edge_free). Not thread-safe. */
#ifndef EI_EDGE_H
#define EI_EDGE_H

#include "autograd/autograd.h"
#include "formats/gates.h"
#include "formats/model.h"
#include "model/docmodel.h"
#include "model/options.h"
#include "model/segment.h"
#include "train/ei_state.h"

#include <stdint.h>

typedef struct ei_edge ei_edge;

typedef struct {
    double loss;      /* mean NLL over counted positions (0 when none) */
    double nll_sum;   /* summed NLL (nats) */
    int64_t count;    /* counted positions */
    int routed;       /* 1: ran the unchanged base model (full attention) */
    int n_segments;   /* segments of the EdgeInfinite / window model (0 when routed) */
    int n_kept;       /* ei_edge_doc_train: segments in kept chunks (before the last chunk, not recomputed) */
} ei_doc_result;

/* mode: EI_MODE_EDGEINFINITE (gates required), EI_MODE_WINDOW (gates unused, may be NULL) or
 * EI_MODE_FULL (base model only). dtype: AG_F32, or AG_F64 for gradient checks (weights copied). */
ei_edge *ei_edge_new(const ei_model *m, const ei_opts *o, ei_gates *gates, ei_mode mode, ag_dtype dtype);
void ei_edge_free(ei_edge *e);
const ei_opts *ei_edge_opts(const ei_edge *e);
ei_mode ei_edge_mode(const ei_edge *e);
/* 1 when a document of total_len tokens runs the base model (ei_route_to_base). */
int ei_edge_routes(const ei_edge *e, int64_t total_len);
/* Bytes of one saved per-segment input state (all layers). */
size_t ei_edge_saved_state_bytes(const ei_edge *e);
/* Full attention's context (<= 0: the model's max_seq_len) and sliding-window stride for longer
 * documents (<= 0: ctx / 2; at most ctx - 1). Applies to full mode; routed documents always use
 * the model's trained context. Resets the current document. */
int ei_edge_set_context(ei_edge *e, int ctx, int stride);
/* Tokens full attention can hold (full mode), or -1 when streaming is unbounded. */
int64_t ei_edge_capacity(const ei_edge *e);

/* Rows the automatic training graph aims at (ei_edge_set_chunk 0): 2,048 rows make the frozen
 * projections of the 100M benchmark model GEMMs near the sgemm peak (docs/benchmarks.md). */
#define EI_EDGE_CHUNK_ROWS 2048
/* Segments per training graph (ei_edge_doc_train): 1 .. EI_SEG_CHUNK_MAX, or 0 for
 * EI_EDGE_CHUNK_ROWS / segment (at least 1, at most EI_SEG_CHUNK_MAX; the default). A chunk of
 * k segments runs as one graph, layer by layer (train/seg_graph.h), with its activations alive
 * from its forward to its backward; the BPTT sweeps then go chunk by chunk. The gradients are the
 * same maths for every k, equal to rounding. Changing it frees the kept graphs. */
int ei_edge_set_chunk(ei_edge *e, int segments);
int ei_edge_chunk(const ei_edge *e);

/* Default of ei_edge_set_activation_memory and of train.activation_memory_mb, MiB: a 2,048-token
 * document of the 100M benchmark model (16 segments of 128) runs as one graph of 3 GiB, nothing
 * recomputed (docs/config.md). */
#define EI_EDGE_ACTIVATION_MB_DEFAULT 4096

/* Bytes of training-graph activations a step may hold (arenas: activations and forward scratch,
 * plus the gradient buffers): the graph running each backward and the graphs kept between the
 * forward and the backward sweep of ei_edge_doc_train. The automatic chunk shrinks to fit it;
 * 0: every chunk is recomputed, one segment per graph (unless ei_edge_set_chunk fixed a size);
 * < 0: no limit. train.activation_memory_mb is this in MiB. The kept graphs stay allocated for the
 * next document (a training loop reuses them); lowering the budget frees what no longer fits.
 * Saved states, one per chunk, are outside the budget. */
void ei_edge_set_activation_memory(ei_edge *e, int64_t bytes);

/* Forward + backward of one document (edgeinfinite mode only). Adds d(weight * loss)/d gates to
 * gates->grad; for float64 edges also to grad64 (gates->n doubles) when non-NULL. Routed documents
 * add nothing (the gates play no part there). */
int ei_edge_doc_train(ei_edge *e, const int32_t *ids, const int32_t *targets, const uint8_t *mask,
                      int64_t n, double weight, ei_doc_result *res, double *grad64);
/* Forward only, same loss (routing included). Leaves the streaming state at the end of the
 * document (as ei_edge_begin(e, n) + ei_edge_feed would). */
int ei_edge_doc_eval(ei_edge *e, const int32_t *ids, const int32_t *targets, const uint8_t *mask,
                     int64_t n, ei_doc_result *res);

/* Streaming. ei_edge_reset starts a document of unknown length (routing follows the length so
 * far); ei_edge_begin starts one of total_len tokens (routing by it, as ei_edge_doc_eval).
 * ei_edge_feed processes n more tokens following the segment rule. targets may be NULL; otherwise
 * the NLL of positions with a target >= 0 is added to *nll_sum and their number to *count (either
 * pointer may be NULL). logits_last (vocab floats, may be NULL) receives the logits after
 * the last token. Decoding = feeding one token at a time. */
void ei_edge_reset(ei_edge *e);
void ei_edge_begin(ei_edge *e, int64_t total_len);
int ei_edge_feed(ei_edge *e, const int32_t *ids, int64_t n, const int32_t *targets, double *nll_sum,
                 int64_t *count, float *logits_last);
/* The same feed returning the logits of every fed position, [n, vocab] (no targets). */
int ei_edge_feed_all(ei_edge *e, const int32_t *ids, int64_t n, float *logits);
/* Tokens of the current document fed so far; 1 while it runs on the base model. */
int64_t ei_edge_pos(const ei_edge *e);
int ei_edge_on_base(const ei_edge *e);

/* Optional progress of ei_edge_doc_eval / ei_edge_doc_train: called after each call of the segment
 * rule with the tokens done and the document length. fn NULL turns it off. */
typedef void (*ei_edge_progress_fn)(void *ctx, int64_t done, int64_t total);
void ei_edge_set_progress(ei_edge *e, ei_edge_progress_fn fn, void *ctx);

/* Optional observer of every forward run (calibration): called with the graph just run and the
 * number of its rows that are real tokens (the rest pad a rounded call). fn NULL turns it off. */
typedef void (*ei_edge_observer_fn)(void *ctx, const void *seg_graph, int n_real);
void ei_edge_set_observer(ei_edge *e, ei_edge_observer_fn fn, void *ctx);

/* The edge as a document model (model/docmodel.h); valid while e lives. */
ei_docmodel ei_edge_docmodel(ei_edge *e);

/* The window / edgeinfinite state of the current document (NULL in full mode, or before the
 * document left the base model). */
const ei_state *ei_edge_state(const ei_edge *e);

#endif
