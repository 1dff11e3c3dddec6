#include "formats/gates.h"

#include "core/ei_error.h"
#include "formats/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ei_gates *ei_gates_new(const ei_model_config *cfg, ei_gate_kind kind, double init_bias) {
    if (!cfg || cfg->n_layers < 1 || cfg->n_heads < 1 || cfg->dim < 1) {
        ei_error_set("gates: bad model config");
        return NULL;
    }
    ei_gates *g = calloc(1, sizeof *g);
    if (!g) {
        ei_error_set("gates: out of memory");
        return NULL;
    }
    g->kind = kind;
    g->n_layers = cfg->n_layers;
    g->n_heads = cfg->n_heads;
    g->dim = cfg->dim;
    g->per_layer = kind == EI_GATE_TOKEN ? (size_t)cfg->n_heads * cfg->dim + cfg->n_heads
                                         : (size_t)cfg->n_heads;
    g->n = g->per_layer * cfg->n_layers;
    g->data = calloc(g->n, sizeof(float));
    g->grad = calloc(g->n, sizeof(float));
    if (!g->data || !g->grad) {
        ei_error_set("gates: out of memory (%zu floats)", g->n);
        ei_gates_free(g);
        return NULL;
    }
    for (int l = 0; l < g->n_layers; l++) {
        float *b = g->data + ei_gates_b_offset(g, l);
        for (int h = 0; h < g->n_heads; h++) b[h] = (float)init_bias;
    }
    return g;
}

void ei_gates_free(ei_gates *g) {
    if (!g) return;
    free(g->data);
    free(g->grad);
    free(g);
}

void ei_gates_zero_grad(ei_gates *g) { memset(g->grad, 0, g->n * sizeof(float)); }

size_t ei_gates_w_offset(const ei_gates *g, int layer) { return (size_t)layer * g->per_layer; }

size_t ei_gates_b_offset(const ei_gates *g, int layer) {
    return (size_t)layer * g->per_layer +
           (g->kind == EI_GATE_TOKEN ? (size_t)g->n_heads * g->dim : 0);
}

/* extra: NULL-terminated key/value pairs added to the metadata. */
static int save_with_meta(const ei_gates *g, const char *path, const char *const *extra) {
    int per = g->kind == EI_GATE_TOKEN ? 2 : 1;
    int n = per * g->n_layers;
    ei_st_entry *e = calloc((size_t)n, sizeof *e);
    char (*names)[64] = calloc((size_t)n, sizeof *names);
    if (!e || !names) {
        free(e);
        free(names);
        return ei_error_set("%s: out of memory", path);
    }
    for (int l = 0, i = 0; l < g->n_layers; l++) {
        if (g->kind == EI_GATE_TOKEN) {
            snprintf(names[i], 64, "model.layers.%d.self_attn.memory_gate.weight", l);
            e[i] = (ei_st_entry){names[i], EI_ST_F32, 2, {g->n_heads, g->dim},
                                 g->data + ei_gates_w_offset(g, l)};
            i++;
            snprintf(names[i], 64, "model.layers.%d.self_attn.memory_gate.bias", l);
        } else {
            snprintf(names[i], 64, "model.layers.%d.self_attn.memory_gate.beta", l);
        }
        e[i] = (ei_st_entry){names[i], EI_ST_F32, 1, {g->n_heads}, g->data + ei_gates_b_offset(g, l)};
        i++;
    }
    char nl[32];
    snprintf(nl, sizeof nl, "%d", g->n_layers);
    const char *meta[32] = {"format", "edgeinfinite-gates", "gate", ei_gate_kind_name(g->kind), "n_layers", nl};
    int k = 6;
    for (int i = 0; extra && extra[i] && k < 30; i++) meta[k++] = extra[i];
    meta[k] = NULL;
    int rc = ei_st_write(path, e, n, meta);
    free(e);
    free(names);
    return rc;
}

int ei_gates_save(const ei_gates *g, const char *path) { return save_with_meta(g, path, NULL); }

int ei_gates_save_opts(const ei_gates *g, const ei_opts *o, const char *path) {
    if (o->gate != g->kind)
        return ei_error_set("%s: options say '%s' gates but the parameters are '%s' gates", path,
                            ei_gate_kind_name(o->gate), ei_gate_kind_name(g->kind));
    char v[5][32];
    snprintf(v[0], 32, "%d", o->segment);
    snprintf(v[1], 32, "%d", o->sink);
    snprintf(v[2], 32, "%d", o->window);
    snprintf(v[3], 32, "%.17g", o->gate_init_bias);
    snprintf(v[4], 32, "%d", o->route_threshold);
    char bp[32];
    snprintf(bp, sizeof bp, "%d", o->bptt_segments);
    const char *extra[] = {"segment", v[0], "sink", v[1], "window", v[2], "memory_rule",
                           ei_mem_rule_name(o->memory_rule), "gate_init_bias", v[3], "route_threshold", v[4],
                           "bptt_segments", bp, "positions", ei_positions_name(o->positions), NULL};
    return save_with_meta(g, path, extra);
}

int ei_gates_file_opts(const char *path, ei_opts *o) {
    ei_st_file *f = ei_st_open(path);
    if (!f) return -1;
    static const char *const keys[] = {"gate", "segment", "sink", "window", "memory_rule", "gate_init_bias",
                                       "route_threshold", "bptt_segments", "positions"};
    ei_opts t = *o;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = ei_st_metadata(f, keys[i]);
        if (v && ei_opts_set(&t, keys[i], v) != 0) rc = ei_error_prefix("%s: metadata: ", path);
    }
    ei_st_close(f);
    if (rc == 0) *o = t;
    return rc;
}

static int load_tensor(ei_st_file *f, const char *path, const char *name, int ndim, int64_t d0,
                       int64_t d1, float *dst) {
    const ei_st_tensor *t = ei_st_find(f, name);
    if (!t) return ei_error_set("%s: missing tensor %s", path, name);
    int ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (!ok)
        return ei_error_set("%s: %s has the wrong shape (expected [%lld%s%lld])", path, name,
                            (long long)d0, ndim == 2 ? "," : "", ndim == 2 ? (long long)d1 : 0LL);
    if (ei_st_to_f32(t, dst) != 0) return ei_error_set("%s: %s: not a float tensor", path, name);
    return 0;
}

int ei_gates_load(ei_gates *g, const char *path) {
    ei_st_file *f = ei_st_open(path);
    if (!f) return -1;
    int rc = 0;
    const char *kind = ei_st_metadata(f, "gate");
    const char *nl = ei_st_metadata(f, "n_layers");
    if (kind && strcmp(kind, ei_gate_kind_name(g->kind)) != 0) {
        rc = ei_error_set("%s: holds '%s' gates but the model is configured with '%s' gates", path,
                          kind, ei_gate_kind_name(g->kind));
    } else if (nl && atoi(nl) != g->n_layers) {
        rc = ei_error_set("%s: gates for %s layers, the model has %d", path, nl, g->n_layers);
    }
    float *tmp = rc == 0 ? malloc(g->n * sizeof(float)) : NULL;
    if (rc == 0 && !tmp) rc = ei_error_set("%s: out of memory", path);
    for (int l = 0; rc == 0 && l < g->n_layers; l++) {
        char name[64];
        if (g->kind == EI_GATE_TOKEN) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.memory_gate.weight", l);
            rc = load_tensor(f, path, name, 2, g->n_heads, g->dim, tmp + ei_gates_w_offset(g, l));
            if (rc) break;
            snprintf(name, sizeof name, "model.layers.%d.self_attn.memory_gate.bias", l);
        } else {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.memory_gate.beta", l);
        }
        rc = load_tensor(f, path, name, 1, g->n_heads, 0, tmp + ei_gates_b_offset(g, l));
    }
    if (rc == 0) memcpy(g->data, tmp, g->n * sizeof(float));
    free(tmp);
    ei_st_close(f);
    return rc;
}
