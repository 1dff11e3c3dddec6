#include "model/tensors.h"

#include "core/ei_error.h"

#include <stdlib.h>
#include <string.h>

static const char *const names[EI_TC_COUNT] = {
    "embedding", "attn_norm", "q", "k", "v", "q_bias", "k_bias", "v_bias", "o",
    "ffn_norm", "gate", "up", "down", "final_norm", "classifier", "memory_gate", "memory_gate_bias",
};

const char *ei_tclass_name(ei_tclass c) { return (unsigned)c < EI_TC_COUNT ? names[c] : "?"; }

int ei_tclass_parse(const char *s, ei_tclass *out) {
    for (int i = 0; i < EI_TC_COUNT; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = (ei_tclass)i;
            return 0;
        }
    return ei_error_set("unknown tensor class '%s' (known: embedding, attn_norm, q, k, v, q_bias, k_bias, v_bias, "
                        "o, ffn_norm, gate, up, down, final_norm, classifier, memory_gate, memory_gate_bias)",
                        s ? s : "");
}

int ei_tclass_per_layer(ei_tclass c) {
    return c != EI_TC_EMBEDDING && c != EI_TC_FINAL_NORM && c != EI_TC_CLASSIFIER && (unsigned)c < EI_TC_COUNT;
}

int ei_tclass_shape(const ei_model_config *cfg, ei_gate_kind gate, ei_tclass c, int64_t shape[2]) {
    const int64_t D = cfg->dim, F = cfg->hidden_dim, V = cfg->vocab_size, H = cfg->n_heads;
    const int64_t qd = H * cfg->head_dim, kvd = (int64_t)cfg->n_kv_heads * cfg->head_dim;
#define S2(a, b) return (shape[0] = (a), shape[1] = (b), 2)
#define S1(a) return (shape[0] = (a), shape[1] = 1, 1)
    switch (c) {
    case EI_TC_EMBEDDING: S2(V, D);
    case EI_TC_ATTN_NORM:
    case EI_TC_FFN_NORM:
    case EI_TC_FINAL_NORM: S1(D);
    case EI_TC_Q: S2(qd, D);
    case EI_TC_K:
    case EI_TC_V: S2(kvd, D);
    case EI_TC_Q_BIAS:
        if (!cfg->qkv_bias) return 0;
        S1(qd);
    case EI_TC_K_BIAS:
    case EI_TC_V_BIAS:
        if (!cfg->qkv_bias) return 0;
        S1(kvd);
    case EI_TC_O: S2(D, qd);
    case EI_TC_GATE:
    case EI_TC_UP: S2(F, D);
    case EI_TC_DOWN: S2(D, F);
    case EI_TC_CLASSIFIER:
        if (cfg->tie_embeddings) return 0;
        S2(V, D);
    case EI_TC_MEMORY_GATE:
        if (gate != EI_GATE_TOKEN) return 0;
        S2(H, D);
    case EI_TC_MEMORY_GATE_BIAS: S1(H);
    default: return 0;
    }
#undef S1
#undef S2
}

static const ei_tclass layer_order[] = {EI_TC_ATTN_NORM, EI_TC_Q,        EI_TC_K,    EI_TC_V,  EI_TC_Q_BIAS,
                                        EI_TC_K_BIAS,    EI_TC_V_BIAS,   EI_TC_O,    EI_TC_FFN_NORM,
                                        EI_TC_GATE,      EI_TC_UP,       EI_TC_DOWN};

static int slot(const ei_tensor_table *tt, ei_tclass c, int layer) {
    return (int)c * (tt->n_layers + 1) + (ei_tclass_per_layer(c) ? layer : tt->n_layers);
}

static void add(ei_tensor_table *tt, const ei_model_config *cfg, ei_tclass c, int layer) {
    int64_t shape[2];
    int nd = ei_tclass_shape(cfg, EI_GATE_TOKEN, c, shape);
    if (!nd) return;
    ei_tensor *t = &tt->t[tt->n];
    *t = (ei_tensor){c, layer, nd, {shape[0], shape[1]}, shape[0] * shape[1], NULL};
    tt->index[slot(tt, c, layer)] = tt->n++;
}

int ei_tensor_table_init(ei_tensor_table *tt, const ei_model_config *cfg) {
    memset(tt, 0, sizeof *tt);
    const int nl = (int)(sizeof layer_order / sizeof layer_order[0]);
    tt->n_layers = cfg->n_layers;
    tt->t = calloc((size_t)cfg->n_layers * nl + 3, sizeof *tt->t);
    tt->index = malloc(sizeof(int) * EI_TC_COUNT * ((size_t)cfg->n_layers + 1));
    if (!tt->t || !tt->index) {
        ei_tensor_table_free(tt);
        return ei_error_set("tensor table: out of memory");
    }
    for (size_t i = 0; i < EI_TC_COUNT * ((size_t)cfg->n_layers + 1); i++) tt->index[i] = -1;
    add(tt, cfg, EI_TC_EMBEDDING, -1);
    for (int l = 0; l < cfg->n_layers; l++)
        for (int i = 0; i < nl; i++) add(tt, cfg, layer_order[i], l);
    add(tt, cfg, EI_TC_FINAL_NORM, -1);
    add(tt, cfg, EI_TC_CLASSIFIER, -1);
    return 0;
}

void ei_tensor_table_free(ei_tensor_table *tt) {
    free(tt->t);
    free(tt->index);
    memset(tt, 0, sizeof *tt);
}

ei_tensor *ei_tensor_table_at(ei_tensor_table *tt, ei_tclass c, int layer) {
    if ((unsigned)c >= EI_TC_COUNT || !tt->index) return NULL;
    if (ei_tclass_per_layer(c) && (layer < 0 || layer >= tt->n_layers)) return NULL;
    int i = tt->index[slot(tt, c, layer)];
    if (i < 0 && c == EI_TC_CLASSIFIER) i = tt->index[slot(tt, EI_TC_EMBEDDING, -1)];
    return i < 0 ? NULL : &tt->t[i];
}

const ei_tensor *ei_tensor_table_get(const ei_tensor_table *tt, ei_tclass c, int layer) {
    return ei_tensor_table_at((ei_tensor_table *)tt, c, layer);
}
