/* Lowering an EdgeInfinite model into the fixed-shape graphs of a .eig file (DESIGN 6.2): every
 * graph is built from the layer recipe (model/recipe.h) through the graph-IR emitter, so the
 * deployed maths is the trained maths. The graph names, inputs and outputs are the ABI in
 * runtime/eig_abi.h, which the runner binds. All graphs share one copy of the weights.
 *
 * Graphs by mode:
 *   edgeinfinite  prefill (N tokens), decode (1), compress, and base_prefill / base_decode when
 *                 documents up to the routing threshold run the base model;
 *   window        prefill, decode (no memory), and the base graphs;
 *   full          prefill, decode with a cache of `context` slots (no segments, no routing).
 * The cache of an EdgeInfinite graph has C = S + W + L slots: the sink, then a ring of W + L slots
 * holding the window and the open segment (the runner never moves a row once written). */
#ifndef EI_DEPLOY_LOWER_H
#define EI_DEPLOY_LOWER_H

#include "deploy/eig_write.h"
#include "deploy/ir_emit.h"
#include "formats/gates.h"
#include "formats/model.h"
#include "model/options.h"

/* i8 K/V caches: the static per-tensor parameters of layer l's K (is_v = 0) or V (1) cache. 0, or
 * -1 with ei_error set. */
typedef int (*ei_lower_kv_fn)(void *ctx, int layer, int is_v, ei_qaparams *p);

typedef struct {
    const ei_model *m;
    const ei_gates *gates; /* edgeinfinite mode */
    ei_mode mode;
    ei_opts o;
    int tokens_per_call;   /* N */
    int context;           /* full mode cache slots (0: the model's max_seq_len) */
    ei_ir_weight_scheme_fn weight_scheme; /* NULL: float32 */
    void *weight_scheme_ctx;
    const ei_qopts *qopts;  /* scale selection of quantised weights (NULL: the MSE search) */
    ei_ir_act_fn act_params; /* integer activations around linear layers (NULL: float) */
    void *act_ctx;
    int *act_count;          /* receives how many linear layers got integer activations (may be NULL) */
    ei_qkv kv_cache;         /* element type of the K/V caches: f32 (default), f16, i8 */
    ei_lower_kv_fn kv_params; /* i8 caches: their scales (required then) */
    void *kv_ctx;
} ei_lower_spec;

/* Adds the constants and graphs of spec to w (the caller sets config, keys and vocabulary). The
 * SCEN keys the runner needs (mode, tokens per call, cache slots, ...) and every option (OPTS) are
 * set here. -1 with ei_error set, naming the graph on a build failure. */
int ei_lower(const ei_lower_spec *spec, ei_eigw *w);

/* Cache slots of the EdgeInfinite graphs (S + W + L) and of the base graphs (the routing
 * threshold, 0 when nothing routes). */
int ei_lower_cache_slots(const ei_opts *o);
int ei_lower_base_slots(const ei_opts *o, const ei_model_config *cfg, ei_mode mode);

#endif
