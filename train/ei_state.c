#include "train/ei_state.h"

#include "core/ei_error.h"

#include <stdlib.h>
#include <string.h>

ei_state *ei_state_new(const ei_model_config *cfg, const ei_opts *o, ag_dtype dtype) {
    if (dtype != AG_F32 && dtype != AG_F64) {
        ei_error_set("edgeinfinite state: dtype must be f32 or f64");
        return NULL;
    }
    ei_state *s = calloc(1, sizeof *s);
    if (!s) {
        ei_error_set("edgeinfinite state: out of memory");
        return NULL;
    }
    s->n_layers = cfg->n_layers;
    s->n_kv_heads = cfg->n_kv_heads;
    s->head_dim = cfg->head_dim;
    s->sink = o->sink;
    s->window = o->window;
    s->dtype = dtype;
    s->elem = dtype == AG_F64 ? sizeof(double) : sizeof(float);
    size_t kd = (size_t)cfg->n_kv_heads * cfg->head_dim;
    s->comp_len[EI_SC_SINK_K] = s->comp_len[EI_SC_SINK_V] = (size_t)o->sink * kd;
    s->comp_len[EI_SC_WIN_K] = s->comp_len[EI_SC_WIN_V] = (size_t)o->window * kd;
    s->comp_len[EI_SC_MEM_M] = kd * cfg->head_dim;
    s->comp_len[EI_SC_MEM_Z] = kd;
    size_t off = 0;
    for (int c = 0; c < EI_SC_COUNT; c++) {
        s->comp_off[c] = off;
        off += s->comp_len[c];
    }
    s->per_layer = off;
    s->n = off * cfg->n_layers;
    s->data = calloc(s->n ? s->n : 1, s->elem);
    if (!s->data) {
        free(s);
        ei_error_set("edgeinfinite state: out of memory");
        return NULL;
    }
    return s;
}

void ei_state_free(ei_state *s) {
    if (!s) return;
    free(s->data);
    free(s);
}

void ei_state_reset(ei_state *s) {
    memset(s->data, 0, s->n * s->elem);
    s->n_seen = 0;
}

size_t ei_state_bytes(const ei_state *s) { return s->n * s->elem; }

void *ei_state_ptr(const ei_state *s, void *block, int layer, ei_state_comp c) {
    return (char *)block + ((size_t)layer * s->per_layer + s->comp_off[c]) * s->elem;
}
