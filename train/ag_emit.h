/* The autograd implementation of the layer-recipe emitter (model/recipe.h): every recipe op becomes
 * one autograd op of graph g, so the training graph, eager evaluation, streaming inference and the
 * float64 gradient-check twin are all built from the recipe.
 *
 * Weights come from the model's tensor table: const leaves bound in place for float32 graphs (no
 * copy), copied and converted for float64 graphs. Memory-gate parameters come from `gates`: const
 * leaves, or with train = 1 params bound to gates->data / gates->grad (float32; gradients
 * accumulate straight into the gate block); float64 graphs hold copies (ei_ag_emitter_sync_gates
 * before every forward, ei_ag_emitter_take_grads after a backward). all_params = 1 makes every base weight a
 * param too (its own copy), for the end-to-end gradient self-check.
 *
 * Ownership: the emitter borrows g, the model and the gates; ei_ag_emitter_free releases its own
 * bookkeeping only (the leaves belong to g). */
#ifndef EI_AG_EMIT_H
#define EI_AG_EMIT_H

#include "autograd/autograd.h"
#include "formats/gates.h"
#include "formats/model.h"
#include "model/recipe.h"

typedef struct {
    ei_emitter base;
    ag_graph *g;
    const ei_model *m;
    const ei_gates *gates;
    ag_dtype dt;
    int train, all_params;
    ag_tensor **leaf; /* [EI_TC_COUNT * (n_layers + 1)] leaves made so far */
    /* the input and output of the linear op of each weight (same slots): what calibration reads */
    ag_tensor **lin_in, **lin_out;
    int failed;
    char first_error[256];
} ei_ag_emitter;

int ei_ag_emitter_init(ei_ag_emitter *e, ag_graph *g, const ei_model *m, const ei_gates *gates, ei_gate_kind kind,
                       int train, int all_params);
void ei_ag_emitter_free(ei_ag_emitter *e);
/* The input / output of the linear op applying the weight of (class, layer) (x [.., in] and y
 * [.., out]), or NULL when the graph has none. */
ag_tensor *ei_ag_emitter_linear_in(const ei_ag_emitter *e, ei_tclass c, int layer);
ag_tensor *ei_ag_emitter_linear_out(const ei_ag_emitter *e, ei_tclass c, int layer);
/* The leaf of (class, layer) if the recipe asked for it, else NULL. */
ag_tensor *ei_ag_emitter_leaf(const ei_ag_emitter *e, ei_tclass c, int layer);
/* float64 graphs: copy the gate block into the gate leaves; with train = 1 also zero their
 * gradients / add them to gates->grad and to acc (gates->n doubles, may be NULL). No-ops for
 * float32 graphs. */
int ei_ag_emitter_sync_gates(ei_ag_emitter *e);
void ei_ag_emitter_zero_gate_grads(ei_ag_emitter *e);
void ei_ag_emitter_take_grads(ei_ag_emitter *e, ei_gates *gates, double *acc);

static inline ag_tensor *ei_ag(ei_val *v) { return (ag_tensor *)(void *)v; }
static inline ei_val *ei_val_of(ag_tensor *t) { return (ei_val *)(void *)t; }

#endif
