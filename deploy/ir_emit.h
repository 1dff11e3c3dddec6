/* The graph-IR implementation of the layer-recipe emitter (model/recipe.h): the recipe's ops become
 * nodes of the fixed-shape op set (runtime/graph.h), so `ei compile` lowers exactly the maths the
 * training code runs. Composite ops are decomposed here:
 *   rmsnorm    MUL(x, x) -> MEAN(last axis, keep) -> ADD(eps) -> RSQRT -> MUL(x, .) -> MUL(., w)
 *   rope       GATHER of constant cos / sin tables [max_pos, d/2] by the position input, then the
 *              pair rotation with SLICE / MUL / SUB / ADD / CONCATENATION (both layouts)
 *   attention  per key part: TRANSPOSE to [Hkv, T, d], BATCH_MATMUL q k^T, MUL by the scale, ADD of
 *              the part's additive mask; CONCATENATION of the parts' scores, SOFTMAX, SLICE per
 *              part, BATCH_MATMUL with v, ADD of the parts
 *   silu / swiglu  LOGISTIC(g) -> MUL(g, .) -> MUL(., u);  elu1  ELU -> ADD(1);  sum  MEAN * n
 * (the CPU backend fuses RMSNorm and SwiGLU back into one kernel each at prepare time).
 *
 * Attention masks: an attention part's `valid` is an additive F32 bias broadcastable to [n, T_i]
 * (0 for visible keys, EI_IR_MASKED for hidden ones); causality among the new tokens must come as
 * such a bias too (fixed-shape graphs take their masks as small inputs), so causal_offset is only
 * checked for being consistent with that.
 *
 * Weights and constants are added once to the .eig writer and shared by every graph of the file
 * (a cache keyed by tensor class, layer and scheme, and by value for small constants). Weight
 * schemes come from `weight_scheme` (a precision plan; float32 by default): f16, w8 (I8 rows with
 * per-row F32 scales: CHANNEL on axis 0) and w4gG (packed I4 with F16 scales per group of G input
 * channels: GROUP on axis 1) are quantised here (deploy/quant.h: MSE-searched scales) and stored
 * as the .eig constants. The memory-gate parameters come from `gates`.
 *
 * Ownership: the emitter borrows the writer, the model and the gates; it owns the shared constant
 * cache (ei_ir_emitter_free). A graph being built is set with ei_ir_emitter_begin and stays the
 * caller's. */
#ifndef EI_DEPLOY_IR_EMIT_H
#define EI_DEPLOY_IR_EMIT_H

#include "deploy/eig_write.h"
#include "deploy/quant.h"
#include "formats/gates.h"
#include "formats/model.h"
#include "model/recipe.h"
#include "runtime/eig_abi.h"
#include "runtime/graph.h"

/* Score bias of a masked key: exp of it underflows to 0 in float32 and float16 alike, and adding a
 * real score to it stays finite (unlike -inf, whose sums can turn into NaN). */
#define EI_IR_MASKED EI_MASKED_BIAS

/* Scheme of the weight matrix of (class, layer) with rows of cols elements (a precision plan,
 * deploy/quant_plan.h); NULL hook: float32. Norms, biases and the memory gate stay float32; the
 * embedding table is gathered, so it takes at most w8 (per-row scales gathered with it), and a tied
 * classifier shares its data. */
typedef ei_qscheme (*ei_ir_weight_scheme_fn)(void *ctx, ei_tclass c, int layer, int64_t cols);

/* Static quantisation of the activations around the linear layer of (class, layer) with integer
 * weights (a8 / a16 plans, scales from calibration ranges): fills the parameters of its input and
 * of its output and returns 1; 0 (or a NULL hook): float activations. The layer then lowers to
 * QUANTIZE(x) -> FULLY_CONNECTED with integer arithmetic (int32 accumulation, requantisation to
 * the output scale) -> DEQUANTIZE, a float bias added after. */
typedef int (*ei_ir_act_fn)(void *ctx, ei_tclass c, int layer, ei_qaparams *in, ei_qaparams *out);

typedef struct ei_ir_const ei_ir_const; /* shared constant cache entry */

typedef struct {
    ei_emitter base;
    ei_graph *g;       /* the graph being built (ei_ir_emitter_begin) */
    ei_eigw *w;
    const ei_model *m;
    const ei_gates *gates;
    ei_ir_weight_scheme_fn weight_scheme;
    void *weight_scheme_ctx;
    ei_ir_act_fn act_params;
    void *act_ctx;
    int n_act_quantised;       /* linear layers lowered with integer activations (all graphs) */
    ei_qopts qopts;            /* scale search of the quantiser */
    double q_sse, q_sum_sq;    /* quantisation error energy of every weight so far */
    ei_ir_const *consts; /* shared across graphs */
    int n_consts, cap_consts;
    int32_t *leaf;       /* per graph: [EI_TC_COUNT * (n_layers + 1)] tensor index of a weight, or -1 */
    int32_t emb_scales;  /* per graph: the per-row scales of a quantised embedding table, or -1 */
    int counter;         /* unique names */
    int failed;
    char first_error[256];
} ei_ir_emitter;

int ei_ir_emitter_init(ei_ir_emitter *e, ei_eigw *w, const ei_model *m, const ei_gates *gates, ei_gate_kind kind);
void ei_ir_emitter_free(ei_ir_emitter *e);
/* Starts emitting into g (per-graph weight handles are forgotten). */
void ei_ir_emitter_begin(ei_ir_emitter *e, ei_graph *g);

/* Helpers for the lowering: a new INPUT tensor; make a value an OUTPUT under a name (a RESHAPE copy
 * when the value already has a producer whose output must stay a value); a constant. All return the
 * handle, NULL on failure (recorded). */
ei_val *ei_ir_input(ei_ir_emitter *e, const char *name, ei_gtype type, int rank, const int32_t *shape);
ei_val *ei_ir_output(ei_ir_emitter *e, ei_val *v, const char *name);
/* x converted to element type `to`: CAST between f32 and f16, QUANTIZE f32 -> i8 / i16 with q's
 * per-tensor parameters, DEQUANTIZE back to f32 (x itself when the types agree). */
ei_val *ei_ir_convert(ei_ir_emitter *e, ei_val *x, ei_gtype to, const ei_qaparams *q);
/* Gives a tensor (an input, typically) per-tensor quantisation parameters. */
void ei_ir_set_quant(ei_ir_emitter *e, ei_val *v, const ei_qaparams *q);
ei_val *ei_ir_const_f32(ei_ir_emitter *e, const char *key, const float *data, int rank, const int32_t *shape);
/* GATHER along axis of x by the indices idx. */
ei_val *ei_ir_gather(ei_ir_emitter *e, ei_val *x, ei_val *idx, int axis);

static inline int32_t ei_ir_index(ei_val *v) { return (int32_t)((intptr_t)(void *)v - 1); }
static inline ei_val *ei_ir_val(int32_t i) { return i < 0 ? NULL : (ei_val *)(void *)(intptr_t)(i + 1); }

#endif
