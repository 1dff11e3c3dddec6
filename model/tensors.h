/* The tensor table of a Llama-family model: every weight's class, layer and shape, derived from
 * the configuration in ONE place (ei_tclass_shape). The loaders (formats/) fill the data pointers
 * by walking the table, the graph builders and the lowering ask it for weights by (class, layer),
 * and quantisation plans name tensors by class and layer range. libc only.
 *
 * Shapes follow PyTorch nn.Linear: a projection from n_in to n_out is [n_out, n_in] (y = W x).
 * Classes and shapes (D = dim, F = hidden_dim, V = vocab, H / Hkv heads of d = head_dim):
 *   embedding [V, D]; final_norm [D]; classifier [V, D] (absent when tied: the embedding serves);
 *   per layer: attn_norm [D], q [H d, D], k [Hkv d, D], v [Hkv d, D], q_bias [H d], k_bias /
 *   v_bias [Hkv d] (only with qkv_bias), o [D, H d], ffn_norm [D], gate [F, D], up [F, D],
 *   down [D, F];
 *   EdgeInfinite memory gate, per layer (trainable, kept in ei_gates, not in model files):
 *   memory_gate [H, D] (token gate weight; absent for head gates), memory_gate_bias [H] (token-gate
 *   bias b, or the head gate's beta). */
#ifndef EI_MODEL_TENSORS_H
#define EI_MODEL_TENSORS_H

#include "model/config.h"
#include "model/options.h"

#include <stdint.h>

typedef enum {
    EI_TC_EMBEDDING = 0,
    EI_TC_ATTN_NORM,
    EI_TC_Q,
    EI_TC_K,
    EI_TC_V,
    EI_TC_Q_BIAS,
    EI_TC_K_BIAS,
    EI_TC_V_BIAS,
    EI_TC_O,
    EI_TC_FFN_NORM,
    EI_TC_GATE,
    EI_TC_UP,
    EI_TC_DOWN,
    EI_TC_FINAL_NORM,
    EI_TC_CLASSIFIER,
    EI_TC_MEMORY_GATE,
    EI_TC_MEMORY_GATE_BIAS,
    EI_TC_COUNT
} ei_tclass;

/* "embedding", "attn_norm", "q", ..., "memory_gate_bias"; "?" out of range. */
const char *ei_tclass_name(ei_tclass c);
/* -1 + ei_error listing the names on an unknown name. */
int ei_tclass_parse(const char *s, ei_tclass *out);
/* 1 for classes with one tensor per layer. */
int ei_tclass_per_layer(ei_tclass c);
/* Shape of class c under cfg (gate: the memory gate kind); returns the rank (1 or 2), or 0 when the
 * model has no such tensor (biases without qkv_bias, a tied classifier, memory_gate of head gates). */
int ei_tclass_shape(const ei_model_config *cfg, ei_gate_kind gate, ei_tclass c, int64_t shape[2]);

typedef struct {
    ei_tclass cls;
    int layer; /* -1 for embedding, final_norm, classifier */
    int ndim;
    int64_t shape[2];
    int64_t numel;
    const float *data; /* float32, row-major; owned by whoever filled the table */
} ei_tensor;

typedef struct {
    int n;          /* entries, in canonical order */
    ei_tensor *t;   /* [n] */
    int n_layers;
    int *index;     /* [EI_TC_COUNT * (n_layers + 1)]: entry of (class, layer), -1 when absent */
} ei_tensor_table;

/* The base-model tensors of cfg (no memory gates) in canonical order: embedding, per layer
 * attn_norm q k v [q_bias k_bias v_bias] o ffn_norm gate up down, final_norm, classifier (untied
 * only). Data pointers start NULL. -1 + ei_error on allocation failure. */
int ei_tensor_table_init(ei_tensor_table *tt, const ei_model_config *cfg);
void ei_tensor_table_free(ei_tensor_table *tt);
/* The entry of (class, layer) (layer ignored for global classes), NULL when absent; a tied
 * model's classifier resolves to the embedding. */
const ei_tensor *ei_tensor_table_get(const ei_tensor_table *tt, ei_tclass c, int layer);
ei_tensor *ei_tensor_table_at(ei_tensor_table *tt, ei_tclass c, int layer);

#endif
