/* The autograd graph of one call of the segment rule (model/segment.h) through the whole model,
 * built from the layer recipe (model/recipe.h) by the autograd emitter (train/ag_emit.h).
 *
 * A plan fixes the shapes: n tokens of a segment whose first p tokens were fed by earlier calls.
 * Per layer the local keys are [sink S | window W | open segment (p > 0: an L-slot buffer, slots
 * p.. masked) | the call's n tokens], RoPE at the call's positions (ei_seg_positions); the memory
 * is read when the plan says it is non-empty. When the call completes its segment (plan.commit),
 * the graph also computes the output state: the segment's L keys/values (the open rows and the
 * call's) fill the sink, join the window, and the tokens pushed out are compressed (edgeinfinite)
 * or dropped (window mode).
 *
 * Inputs the caller fills before each forward: ids, targets (-1 = no target), mask, and with
 * ei_seg_graph_set_positions kvalid / kpos / qpos; the state st_in[l * EI_SC_COUNT + c] is bound
 * to the caller's state block (ei_seg_graph_bind_state), the open buffer open_in[l * 2 + kv] to
 * the caller's [L, Hkv, d] rows. After forward, st_out[...] holds the new state (commit only; an
 * st_out entry EQUAL to its st_in entry passes through unchanged, and the caller then carries its
 * gradient across itself) and new_kv[l * 2 + kv] the call's pre-RoPE K and V [n, Hkv, d] (for the
 * caller's open buffer when the segment stays open). Zero-length components are NULL.
 *
 * Kinds: EI_SEG_FORWARD forward only (gates const); EI_SEG_TRAIN with gradients to the gates and
 * the input state (edgeinfinite mode, p = 0: training runs whole segments; its classifier runs on
 * the counted rows only, fused with the loss, so it has no logits tensor); EI_SEG_STATE forward
 * computing only the output state (the last layer stops after its K, V; no logits, no loss), what
 * the forward sweep of BPTT needs.
 *
 * Ownership: the graph borrows model and gates (they must outlive it); ei_seg_graph_free frees it. */
#ifndef EI_SEG_GRAPH_H
#define EI_SEG_GRAPH_H

#include "autograd/autograd.h"
#include "formats/gates.h"
#include "formats/model.h"
#include "model/options.h"
#include "model/segment.h"
#include "train/ag_emit.h"
#include "train/ei_state.h"

enum { EI_SEG_FORWARD = 0, EI_SEG_TRAIN = 1, EI_SEG_STATE = 2 };

/* Segments one graph may cover (ei_seg_graph_build_chunk). */
#define EI_SEG_CHUNK_MAX 16

typedef struct {
    ag_graph *g;
    ag_dtype dtype;
    ei_opts o;
    int nseg;                            /* segments of the graph, in document order */
    ei_seg_plan plans[EI_SEG_CHUNK_MAX]; /* their plans */
    int64_t row0[EI_SEG_CHUNK_MAX];      /* first row of each segment in ids, targets, mask */
    int64_t n_rows;                      /* rows of all segments */
    ei_mode mode;
    int train; /* 1: gradients (kind EI_SEG_TRAIN in edgeinfinite mode) */
    int kind;
    int n_layers;
    int open_slots;                  /* L when the keys carry the open-segment buffer, else 0 */
    ag_tensor *ids, *targets, *mask; /* i32 [n_rows], i32 [n_rows], u8 [n_rows] */
    /* per segment j: u8 [T] (T = S + W + open_slots (j = 0) + n), NULL when T == n; i32 [n], [T] */
    ag_tensor *kvalid[EI_SEG_CHUNK_MAX], *qpos[EI_SEG_CHUNK_MAX], *kpos[EI_SEG_CHUNK_MAX];
    ag_tensor *att[EI_SEG_CHUNK_MAX]; /* build scratch: one layer's attention per segment */
    ag_tensor *logits;               /* [n, V]; NULL for EI_SEG_STATE and training graphs */
    ag_tensor *loss;                 /* [1], sum of NLL over counted rows; NULL for EI_SEG_STATE */
    ag_tensor **st_in, **st_out;     /* [n_layers * EI_SC_COUNT] */
    ag_tensor **open_in;             /* [n_layers * 2], NULL entries when open_slots == 0 */
    ag_tensor **new_kv;              /* [n_layers * 2] */
    ei_ag_emitter em;
    const ei_gates *gates;
} ei_seg_graph;

/* mode EI_MODE_FULL: o must be full-attention options (ei_opts_full); plans that would push a token
 * out of its window fail ("longer than the context"). all_params: every weight a param (the
 * end-to-end gradient self-check; training uses 0). */
ei_seg_graph *ei_seg_graph_build(const ei_model *m, const ei_opts *o, const ei_gates *gates, ei_seg_plan plan,
                                 ei_mode mode, ag_dtype dtype, int kind, int all_params);
void ei_seg_graph_free(ei_seg_graph *sg);

/* One graph over nseg consecutive segments of a document (1 <= nseg <= EI_SEG_CHUNK_MAX): every
 * plan but the last commits, and segment j + 1 starts where j ended (only the first may have
 * p > 0). Inputs and outputs are those of a one-segment graph over all n_rows rows: the state
 * inputs before the first segment, the outputs after the last, ids / targets / mask / loss over
 * the rows of all segments in order. The maths is that of nseg one-segment graphs in a row; only
 * the order of the work differs (layer by layer; see build_layer), so results agree to rounding.
 * pool: the op-node gradients in a pool shared with other graphs that never run backward at the
 * same time (ag_graph_share_grads), or NULL for the graph's own. */
ei_seg_graph *ei_seg_graph_build_chunk(const ei_model *m, const ei_opts *o, const ei_gates *gates,
                                       const ei_seg_plan *plans, int nseg, ei_mode mode, ag_dtype dtype, int kind,
                                       int all_params, ag_grad_pool *pool);
/* Positions of every segment from plans[0 .. nseg-1] (as ei_seg_graph_set_positions). */
void ei_seg_graph_set_plans(ei_seg_graph *sg, const ei_seg_plan *plans);
/* Fills kvalid, kpos and qpos for a plan with the same shapes as the one built (fill levels and p
 * of the plan may differ when they only live in the masks). */
void ei_seg_graph_set_positions(ei_seg_graph *sg, const ei_seg_plan *plan);
/* Binds the state inputs to block (data) and grad_block (gradients, train graphs; may be NULL).
 * Both have the layout of st (ei_state). */
int ei_seg_graph_bind_state(ei_seg_graph *sg, const ei_state *st, void *block, void *grad_block);
/* Copies every changed st_out component into block (the next segment's input state). */
int ei_seg_graph_read_state(ei_seg_graph *sg, const ei_state *st, void *block);

#endif
