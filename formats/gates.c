#include "formats/gates.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "formats/model.h"
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
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

/* Metadata of a gate file: format, n_layers, gate kind, then (with o) every other option. The
 * array is sized from the table, so no option can fall off its end. */
static int save_with_meta(const ei_gates *g, const ei_opts *o, const char *path) {
    int per = g->kind == EI_GATE_TOKEN ? 2 : 1;
    int n = per * g->n_layers;
    ei_st_entry *e = calloc((size_t)n, sizeof *e);
    char (*names)[64] = calloc((size_t)n, sizeof *names);
    const char **meta = calloc(2 * (3 + (size_t)EI_OPTS_COUNT) + 1, sizeof *meta);
    char **vals = calloc((size_t)EI_OPTS_COUNT, sizeof *vals);
    int rc = 0;
    if (!e || !names || !meta || !vals) rc = ei_error_set("%s: out of memory", path);
    for (int l = 0, i = 0; rc == 0 && l < g->n_layers; l++) {
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
    int k = 0;
    if (rc == 0) {
        const char *base[] = {"format", "edgeinfinite-gates", "n_layers", nl, "gate", ei_gate_kind_name(g->kind)};
        for (size_t j = 0; j < sizeof base / sizeof base[0]; j++) meta[k++] = base[j];
    }
    for (int i = 0; rc == 0 && o && i < EI_OPTS_COUNT; i++) {
        if (i == EI_OPT_gate) continue; /* written above; the caller checked it equals g->kind */
        int len = ei_opts_get_str(o, i, NULL, 0);
        if (len < 0 || !(vals[i] = malloc((size_t)len + 1))) {
            rc = ei_error_set("%s: out of memory", path);
            break;
        }
        ei_opts_get_str(o, i, vals[i], (size_t)len + 1);
        meta[k++] = ei_opt_desc_at(i)->name;
        meta[k++] = vals[i];
    }
    if (rc == 0) rc = ei_st_write(path, e, n, meta);
    for (int i = 0; vals && i < EI_OPTS_COUNT; i++) free(vals[i]);
    free(vals);
    free(meta);
    free(e);
    free(names);
    return rc;
}

int ei_gates_save(const ei_gates *g, const char *path) { return save_with_meta(g, NULL, path); }

int ei_gates_save_opts(const ei_gates *g, const ei_opts *o, const char *path) {
    if (o->gate != g->kind)
        return ei_error_set("%s: options say '%s' gates but the parameters are '%s' gates", path,
                            ei_gate_kind_name(o->gate), ei_gate_kind_name(g->kind));
    if (ei_opts_validate(o, NULL) != 0) return ei_error_prefix("%s: ", path);
    return save_with_meta(g, o, path);
}

/* The "__metadata__" object of a safetensors file (already validated by ei_st_open), parsed
 * again here because formats/safetensors.h looks metadata up by key and cannot list it. Returns
 * the whole header (caller deletes) and sets *meta (NULL when the file has no metadata). */
static cJSON *read_metadata(const char *path, const cJSON **meta) {
    *meta = NULL;
    ei_file_map map;
    if (ei_file_map_open(&map, path) != 0) return NULL;
    uint64_t hl = 0;
    for (int i = 0; i < 8 && map.size >= 8; i++) hl |= (uint64_t)map.data[i] << (8 * i);
    cJSON *root = NULL;
    if (map.size < 8 || hl > map.size - 8)
        ei_error_set("%s: bad safetensors header", path);
    else if (!(root = cJSON_ParseWithLength((const char *)map.data + 8, (size_t)hl)))
        ei_error_set("%s: safetensors header is not JSON", path);
    ei_file_map_close(&map);
    if (root) *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    return root;
}

int ei_gates_file_opts(const char *path, ei_opts *o) {
    ei_st_file *f = ei_st_open(path);
    if (!f) return -1;
    ei_st_close(f);
    const cJSON *meta = NULL;
    cJSON *root = read_metadata(path, &meta);
    if (!root) return -1;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(meta, "format");
    int ours = cJSON_IsString(fmt) && strcmp(fmt->valuestring, "edgeinfinite-gates") == 0;
    ei_opts t = *o;
    int rc = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, meta) {
        if (strcmp(m->string, "format") == 0 || strcmp(m->string, "n_layers") == 0) continue;
        int i = ei_opt_find(m->string);
        if (i < 0) {
            if (!ours) continue;
            rc = ei_error_set("%s: metadata: unknown option '%s' (not an option of this build)", path, m->string);
        } else if (!cJSON_IsString(m)) {
            rc = ei_error_set("%s: metadata: %s: not a string", path, m->string);
        } else if (ei_opts_set_str(&t, i, m->valuestring) != 0) {
            rc = ei_error_prefix("%s: metadata: ", path);
        }
        if (rc) break;
    }
    cJSON_Delete(root);
    if (rc == 0) *o = t;
    return rc;
}

/* ---------------------------------------------------------------- edgeinfinite.json */

int ei_merged_json_write(const char *path, const ei_opts *o, const ei_merged_info *info) {
    if (ei_opts_validate(o, NULL) != 0) return ei_error_prefix("%s: ", path);
    char *base = realpath(info->base_model, NULL);
    if (!base) return ei_error_set("%s: base model %s: %s", path, info->base_model, strerror(errno));
    char hash[32];
    snprintf(hash, sizeof hash, "%016" PRIx64, info->base_model_hash);
    cJSON *root = cJSON_CreateObject();
    cJSON *opts = NULL;
    int ok = root && cJSON_AddStringToObject(root, "format", "edgeinfinite") &&
             cJSON_AddNumberToObject(root, "format_version", 2) &&
             cJSON_AddStringToObject(root, "base_model", base) &&
             cJSON_AddStringToObject(root, "base_model_format", info->base_model_format) &&
             cJSON_AddStringToObject(root, "base_model_hash", hash) &&
             cJSON_AddStringToObject(root, "gates", info->gates) &&
             cJSON_AddNumberToObject(root, "trained_steps", (double)info->trained_steps) &&
             cJSON_AddNumberToObject(root, "route_threshold_effective", info->route_threshold_effective) &&
             cJSON_AddNumberToObject(root, "memory_eps", EI_MEM_EPS) &&
             (opts = cJSON_AddObjectToObject(root, "options"));
    free(base);
    for (int i = 0; ok && i < EI_OPTS_COUNT; i++) {
        const ei_opt_desc *d = ei_opt_desc_at(i);
        if (d->type == EI_OPT_ENUM) {
            char v[64];
            ei_opts_get_str(o, i, v, sizeof v);
            ok = cJSON_AddStringToObject(opts, d->name, v) != NULL;
        } else {
            /* cJSON prints a double with 17 digits whenever 15 do not read back to it. */
            ok = cJSON_AddNumberToObject(opts, d->name, ei_opts_get_num(o, i)) != NULL;
        }
    }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return ei_error_set("%s: out of memory", path);
    ei_atomic_file af;
    int rc = ei_atomic_open(&af, path);
    if (rc == 0) {
        fputs(text, af.fp);
        fputc('\n', af.fp);
        rc = ei_atomic_commit(&af);
    }
    free(text);
    return rc;
}

/* A relative path in the file resolves against the file's folder, not the current directory. */
static char *resolve_beside(const char *json_path, const char *p) {
    if (p[0] == '/') return strdup(p);
    const char *slash = strrchr(json_path, '/');
    if (!slash) return strdup(p);
    size_t dl = (size_t)(slash - json_path);
    char *dir = malloc(dl + 1);
    if (!dir) return NULL;
    memcpy(dir, json_path, dl);
    dir[dl] = '\0';
    char *r = ei_path_join(dl ? dir : "/", p);
    free(dir);
    return r;
}

int ei_opts_from_json_file(const char *path, ei_opts *o, char **base_model) {
    if (base_model) *base_model = NULL;
    char *text = NULL;
    size_t len = 0;
    if (ei_file_read_all(path, &text, &len) != 0) return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    int rc = 0;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(root, "options");
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "memory_eps");
    const cJSON *bm = cJSON_GetObjectItemCaseSensitive(root, "base_model");
    if (!cJSON_IsObject(root))
        rc = ei_error_set("%s: not a JSON object", path);
    else if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "edgeinfinite") != 0)
        rc = ei_error_set("%s: \"format\" is not \"edgeinfinite\"", path);
    else if (!cJSON_IsObject(opts))
        rc = ei_error_set("%s: no \"options\" object (written by an older ei export? export again)", path);
    else if (eps && (!cJSON_IsNumber(eps) || eps->valuedouble != EI_MEM_EPS))
        rc = ei_error_set("%s: memory_eps differs from this build's %g", path, EI_MEM_EPS);
    else if (base_model && !cJSON_IsString(bm))
        rc = ei_error_set("%s: \"base_model\" must be a string", path);
    ei_opts t = *o;
    const cJSON *m;
    if (rc == 0) {
        cJSON_ArrayForEach(m, opts) {
            int i = ei_opt_find(m->string);
            const ei_opt_desc *d = ei_opt_desc_at(i);
            if (!d)
                rc = ei_error_set("%s: options: unknown option '%s'", path, m->string);
            else if (d->type == EI_OPT_ENUM && !cJSON_IsString(m))
                rc = ei_error_set("%s: options: %s: expected one of %s", path, m->string, d->choices);
            else if (d->type != EI_OPT_ENUM && !cJSON_IsNumber(m))
                rc = ei_error_set("%s: options: %s: expected a number", path, m->string);
            else if (d->type == EI_OPT_ENUM ? ei_opts_set_str(&t, i, m->valuestring) : ei_opts_set_num(&t, i, m->valuedouble))
                rc = ei_error_prefix("%s: options: ", path);
            if (rc) break;
        }
    }
    if (rc == 0 && base_model && !(*base_model = resolve_beside(path, bm->valuestring)))
        rc = ei_error_set("%s: out of memory", path);
    cJSON_Delete(root);
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
    /* A NaN gate makes every output of its layer NaN in edgeinfinite mode. */
    return ei_check_finite(dst, (int64_t)t->numel, path, name, ndim == 2 ? d1 : 0);
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
