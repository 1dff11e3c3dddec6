/* The autograd graph of one EdgeInfinite segment through the whole model: embedding, per layer
 * RMSNorm, q/k/v projections (+ bias), cache-relative RoPE, local attention over
 * [sink | window | segment], memory retrieval, gate, frozen W_o, residual, RMSNorm, SwiGLU MLP; final
 * norm, classifier and masked cross-entropy; plus the cache/memory update that produces the output
 * state. Shapes are fixed by an ei_seg_plan, so a graph is built once per plan and reused.
 *
 * Inputs the caller fills before each forward: ids, targets (-1 = no target), mask, kvalid and the
 * RoPE positions (both via ei_seg_graph_set_valid), and the state: st_in[l * EI_SC_COUNT + c] is bound to the caller's state
 * block with ei_seg_graph_bind_state. After forward, st_out[...] holds the new state; an st_out
 * entry EQUAL to its st_in entry means the component passes through unchanged (the caller then
 * carries its gradient across itself). Zero-length components (S = 0 or W = 0) are NULL.
 *
 * Weights: frozen const leaves. float32 graphs bind the model's weights and the gate block without
 * copying (gate gradients accumulate straight into gates->grad); float64 graphs hold copies
 * (ei_seg_graph_sync_gates before forward, ei_seg_graph_take_grads after backward).
 * kind EI_SEG_FORWARD (0) builds a forward-only graph: gates are constants and no gradient buffers
 * exist. EI_SEG_TRAIN (1) adds gradients. EI_SEG_STATE (2) is a forward-only graph that computes
 * only the output state: the last layer stops after its K, V projections and there are no logits
 * and no loss (logits and loss are NULL). It is what the forward sweep of BPTT needs, since the
 * backward sweep recomputes every segment (loss included) anyway.
 *
 * Ownership: the graph borrows model and gates (they must outlive it); ei_seg_graph_free frees it. */
#ifndef EI_GRAPH_H
#define EI_GRAPH_H

#include "autograd/autograd.h"
#include "formats/gates.h"
#include "model/options.h"
#include "train/ei_state.h"
#include "formats/model.h"

enum { EI_SEG_FORWARD = 0, EI_SEG_TRAIN = 1, EI_SEG_STATE = 2 };

typedef struct {
    ag_graph *g;
    ag_dtype dtype;
    ei_seg_plan plan;
    ei_mode mode;
    int train;  /* 1: gradients (kind EI_SEG_TRAIN in edgeinfinite mode) */
    int kind;   /* EI_SEG_* as built */
    int n_layers;
    ag_tensor *ids, *targets, *mask; /* i32 [n], i32 [n], u8 [n] */
    ag_tensor *kvalid;               /* u8 [S + W + n] or NULL when S = W = 0 */
    ag_tensor *qpos, *kpos;          /* i32 [n], [S + W + n]: RoPE positions (ei_opts.positions) */
    ei_positions positions;
    ag_tensor *logits;               /* [n, V]; NULL for EI_SEG_STATE */
    ag_tensor *loss;                 /* [1], sum of NLL over counted rows; NULL for EI_SEG_STATE */
    ag_tensor **st_in, **st_out;     /* [n_layers * EI_SC_COUNT] */
    ag_tensor **gate_w, **gate_b;    /* [n_layers]; gate_w NULL for head gates (gate_b = beta) */
    const ei_gates *gates;
} ei_seg_graph;

ei_seg_graph *ei_seg_graph_build(const ei_model *m, const ei_opts *o, const ei_gates *gates,
                                 ei_seg_plan plan, ei_mode mode, ag_dtype dtype, int kind);
void ei_seg_graph_free(ei_seg_graph *sg);

/* Fills kvalid and the RoPE positions for the plan's sink/window fill levels (sg->plan; the window
 * fill may change between runs of a cached graph). */
void ei_seg_graph_set_valid(ei_seg_graph *sg, int sink, int window);
/* Binds the state inputs to block (data) and grad_block (gradients, train graphs; may be NULL). Both
 * have the layout of st (ei_state). */
int ei_seg_graph_bind_state(ei_seg_graph *sg, const ei_state *st, void *block, void *grad_block);
/* Copies every st_out component into block (the next segment's input state); pass-through entries
 * are skipped because they already are there. */
int ei_seg_graph_read_state(ei_seg_graph *sg, const ei_state *st, void *block);
/* float64 graphs: copy the gate block in (before forward) / zero the gate gradients (before
 * backward) / add the gate gradients to gates->grad and to acc (if non-NULL, gates->n doubles)
 * after backward. No-ops for float32 graphs, whose gates are bound. */
int ei_seg_graph_sync_gates(ei_seg_graph *sg);
void ei_seg_graph_zero_gate_grads(ei_seg_graph *sg);
void ei_seg_graph_take_grads(ei_seg_graph *sg, ei_gates *gates, double *acc);

/* The memory ops, built from engine ops (also used on their own by tests):
 *   retrieval  A_mem = s(q) M_g / (s(q) . z_g + EI_MEM_EPS), q [n, H, d] pre-RoPE, M [Hkv, d, d],
 *              z [Hkv, d], query head h reads KV head h / (H / Hkv) -> [n, H, d];
 *   update     k, v [c, Hkv, d] (the tokens leaving the window): z_out = z + sum s(k);
 *              linear M_out = M + s(k)^T v; delta M_out = M + s(k)^T (v - s(k) M / (s(k) z + eps)),
 *              with M, z before the update (mem_nonempty = 0 skips the correction, which is then
 *              exactly 0). Returns -1 on a build failure. */
ag_tensor *ei_graph_mem_retrieve(ag_graph *g, ag_tensor *q, ag_tensor *M, ag_tensor *z);
int ei_graph_mem_update(ag_graph *g, ei_mem_rule rule, int mem_nonempty, ag_tensor *k, ag_tensor *v,
                        ag_tensor *M, ag_tensor *z, ag_tensor **M_out, ag_tensor **z_out);

#endif
