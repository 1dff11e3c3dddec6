/* Hugging Face folders: config.json + model.safetensors, or shards listed in
 * model.safetensors.index.json. Architectures: LlamaForCausalLM (model_type llama), Mistral, and
 * Qwen2 (q/k/v biases). F32 tensors are used in place from the map when 4-byte aligned; F16, BF16
 * (and F64) tensors are converted to float32 into buffers the model owns. Weights stay in HF layout:
 * q/k rows are in rotate-half order, so the config says rope_interleaved = 0. */
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "formats/model.h"
#include "formats/model_loaders.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int json_int(const cJSON *root, const char *key, int def, int *out, const char *path) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) {
        if (def == INT32_MIN) return ei_error_set("%s: missing \"%s\"", path, key);
        *out = def;
        return 0;
    }
    if (cJSON_IsArray(j) && cJSON_GetArraySize(j) > 0) j = cJSON_GetArrayItem(j, 0); /* eos lists */
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || fabs(j->valuedouble) > 2147483647.0)
        return ei_error_set("%s: \"%s\" must be an integer", path, key);
    *out = (int)j->valuedouble;
    return 0;
}

static int json_float(const cJSON *root, const char *key, float def, float *out, const char *path) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble)) return ei_error_set("%s: \"%s\" must be a number", path, key);
    *out = (float)j->valuedouble;
    return 0;
}

static int json_bool(const cJSON *root, const char *key, int def, int *out, const char *path) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(j)) return ei_error_set("%s: \"%s\" must be true or false", path, key);
    *out = cJSON_IsTrue(j);
    return 0;
}

static int parse_config(ei_model_config *c, const char *path, const char *text) {
    cJSON *r = cJSON_Parse(text);
    if (!r || !cJSON_IsObject(r)) {
        cJSON_Delete(r);
        return ei_error_set("%s: not a JSON object", path);
    }
    int rc = -1, attn_bias = 0, mlp_bias = 0;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(r, "model_type");
    const char *type = cJSON_IsString(mt) ? mt->valuestring : "llama";
    if (strcmp(type, "llama") != 0 && strcmp(type, "mistral") != 0 && strcmp(type, "qwen2") != 0) {
        ei_error_set("%s: model_type \"%s\" is not supported (llama, mistral, qwen2)", path, type);
        goto out;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(r, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0)) {
        ei_error_set("%s: hidden_act must be \"silu\"", path);
        goto out;
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(r, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        ei_error_set("%s: rope_scaling is not supported (only plain RoPE with rope_theta)", path);
        goto out;
    }
    memset(c, 0, sizeof *c);
    if (json_int(r, "hidden_size", INT32_MIN, &c->dim, path) || json_int(r, "intermediate_size", INT32_MIN, &c->hidden_dim, path) ||
        json_int(r, "num_hidden_layers", INT32_MIN, &c->n_layers, path) ||
        json_int(r, "num_attention_heads", INT32_MIN, &c->n_heads, path) ||
        json_int(r, "num_key_value_heads", c->n_heads, &c->n_kv_heads, path) ||
        json_int(r, "vocab_size", INT32_MIN, &c->vocab_size, path) ||
        json_int(r, "max_position_embeddings", 2048, &c->max_seq_len, path) ||
        json_int(r, "bos_token_id", -1, &c->bos_id, path) || json_int(r, "eos_token_id", -1, &c->eos_id, path) ||
        json_float(r, "rms_norm_eps", 1e-6f, &c->norm_eps, path) ||
        json_float(r, "rope_theta", 10000.0f, &c->rope_theta, path) ||
        json_bool(r, "tie_word_embeddings", 0, &c->tie_embeddings, path) ||
        json_bool(r, "attention_bias", 0, &attn_bias, path) || json_bool(r, "mlp_bias", 0, &mlp_bias, path))
        goto out;
    if (c->n_heads <= 0) {
        ei_error_set("%s: num_attention_heads must be positive", path);
        goto out;
    }
    if (json_int(r, "head_dim", c->dim / c->n_heads, &c->head_dim, path)) goto out;
    if (attn_bias || mlp_bias) {
        ei_error_set("%s: attention_bias/mlp_bias on o_proj or the MLP are not supported", path);
        goto out;
    }
    c->qkv_bias = strcmp(type, "qwen2") == 0;
    c->rope_interleaved = 0;
    if (c->bos_id < -1) c->bos_id = -1;
    if (c->eos_id < -1) c->eos_id = -1;
    rc = ei_model_config_validate(c, path);
out:
    cJSON_Delete(r);
    return rc;
}

/* Opens model.safetensors, or every shard named in model.safetensors.index.json. */
static int open_files(ei_model *m, const char *dir) {
    ei_model_storage *s = ei_model_storage_of(m);
    char *single = ei_path_join(dir, "model.safetensors");
    char *index = ei_path_join(dir, "model.safetensors.index.json");
    int rc = -1;
    cJSON *root = NULL;
    char *text = NULL;
    if (!single || !index) {
        ei_error_set("%s: out of memory", dir);
        goto out;
    }
    if (ei_path_exists(index)) {
        size_t len;
        if (ei_file_read_all(index, &text, &len) != 0) goto out;
        root = cJSON_Parse(text);
        const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
        if (!cJSON_IsObject(wm)) {
            ei_error_set("%s: no \"weight_map\" object", index);
            goto out;
        }
        int n = cJSON_GetArraySize(wm);
        s->st = calloc((size_t)n + 1, sizeof *s->st);
        if (!s->st) {
            ei_error_set("%s: out of memory", index);
            goto out;
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, wm) {
            if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || !*e->valuestring) {
                ei_error_set("%s: weight_map entry for '%s' is not a file name in the folder", index, e->string);
                goto out;
            }
            int seen = 0;
            for (int i = 0; i < s->n_st && !seen; i++) {
                const char *p = ei_st_path(s->st[i]);
                const char *base = strrchr(p, '/');
                seen = strcmp(base ? base + 1 : p, e->valuestring) == 0;
            }
            if (seen) continue;
            char *p = ei_path_join(dir, e->valuestring);
            if (!p) goto out;
            s->st[s->n_st] = ei_st_open(p);
            free(p);
            if (!s->st[s->n_st]) goto out;
            s->n_st++;
        }
        if (s->n_st == 0) {
            ei_error_set("%s: weight_map is empty", index);
            goto out;
        }
    } else if (ei_path_exists(single)) {
        s->st = calloc(1, sizeof *s->st);
        if (!s->st || !(s->st[0] = ei_st_open(single))) goto out;
        s->n_st = 1;
    } else {
        ei_error_set("%s: neither model.safetensors nor model.safetensors.index.json found", dir);
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    free(text);
    free(single);
    free(index);
    return rc;
}

/* Finds tensor `name`, checks its shape against (d0[, d1]) and returns float32 data. */
static const float *get_tensor(ei_model *m, const char *dir, const char *name, int64_t d0, int64_t d1) {
    ei_model_storage *s = ei_model_storage_of(m);
    const ei_st_tensor *t = NULL;
    const ei_st_file *f = NULL;
    for (int i = 0; i < s->n_st && !t; i++) {
        t = ei_st_find(s->st[i], name);
        f = s->st[i];
    }
    if (!t) {
        ei_error_set("%s: tensor '%s' is missing", s->n_st == 1 ? ei_st_path(s->st[0]) : dir, name);
        return NULL;
    }
    int nd = d1 > 0 ? 2 : 1;
    if (t->ndim != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
        char got[128] = "";
        for (int i = 0; i < t->ndim && strlen(got) < 100; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (nd == 2)
            ei_error_set("%s: tensor '%s' has shape [%s], the config implies [%lld, %lld]", ei_st_path(f), name, got,
                         (long long)d0, (long long)d1);
        else
            ei_error_set("%s: tensor '%s' has shape [%s], the config implies [%lld]", ei_st_path(f), name, got,
                         (long long)d0);
        return NULL;
    }
    if (t->dtype == EI_ST_F32 && ((uintptr_t)t->data & 3u) == 0) return (const float *)(const void *)t->data;
    if (t->dtype != EI_ST_F32 && t->dtype != EI_ST_F16 && t->dtype != EI_ST_BF16 && t->dtype != EI_ST_F64) {
        ei_error_set("%s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)", ei_st_path(f), name,
                     ei_st_dtype_name(t->dtype));
        return NULL;
    }
    float *buf = ei_model_alloc(m, t->numel * sizeof(float));
    if (!buf || ei_st_to_f32(t, buf) != 0) return NULL;
    return buf;
}

/* Hugging Face names of the tensor classes (model/tensors.h); %d is the layer. */
static const char *const hf_names[EI_TC_COUNT] = {
    [EI_TC_EMBEDDING] = "model.embed_tokens.weight",
    [EI_TC_ATTN_NORM] = "model.layers.%d.input_layernorm.weight",
    [EI_TC_Q] = "model.layers.%d.self_attn.q_proj.weight",
    [EI_TC_K] = "model.layers.%d.self_attn.k_proj.weight",
    [EI_TC_V] = "model.layers.%d.self_attn.v_proj.weight",
    [EI_TC_Q_BIAS] = "model.layers.%d.self_attn.q_proj.bias",
    [EI_TC_K_BIAS] = "model.layers.%d.self_attn.k_proj.bias",
    [EI_TC_V_BIAS] = "model.layers.%d.self_attn.v_proj.bias",
    [EI_TC_O] = "model.layers.%d.self_attn.o_proj.weight",
    [EI_TC_FFN_NORM] = "model.layers.%d.post_attention_layernorm.weight",
    [EI_TC_GATE] = "model.layers.%d.mlp.gate_proj.weight",
    [EI_TC_UP] = "model.layers.%d.mlp.up_proj.weight",
    [EI_TC_DOWN] = "model.layers.%d.mlp.down_proj.weight",
    [EI_TC_FINAL_NORM] = "model.norm.weight",
    [EI_TC_CLASSIFIER] = "lm_head.weight",
    [EI_TC_MEMORY_GATE] = "model.layers.%d.self_attn.memory_gate.weight",
    [EI_TC_MEMORY_GATE_BIAS] = "model.layers.%d.self_attn.memory_gate.bias",
};

const char *ei_model_hf_name(ei_tclass c) { return (unsigned)c < EI_TC_COUNT ? hf_names[c] : NULL; }

/* Tensors of layers beyond num_hidden_layers mean config.json and the weights disagree (a config
 * edited down, or the wrong config): loading the first layers only would silently run another
 * model. Other unused tensors (rotary inv_freq buffers, lm_head of a tied model) stay allowed. */
static int check_extra_layers(ei_model *m, const char *dir) {
    ei_model_storage *s = ei_model_storage_of(m);
    char list[400] = "";
    int n_extra = 0, max_layer = -1;
    for (int i = 0; i < s->n_st; i++)
        for (int j = 0; j < ei_st_count(s->st[i]); j++) {
            const char *name = ei_st_get(s->st[i], j)->name;
            char *end;
            if (strncmp(name, "model.layers.", 13) != 0) continue;
            long l = strtol(name + 13, &end, 10);
            if (end == name + 13 || *end != '.' || l < m->cfg.n_layers) continue;
            if (n_extra < 3)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", n_extra ? ", " : "", name);
            n_extra++;
            if (l > max_layer) max_layer = (int)l;
        }
    if (!n_extra) return 0;
    return ei_error_set("%s: config.json says num_hidden_layers = %d, but the weights hold %d tensor%s of layers "
                        "up to %d: %s%s (wrong or edited config.json?)",
                        dir, m->cfg.n_layers, n_extra, n_extra == 1 ? "" : "s", max_layer, list,
                        n_extra > 3 ? ", ..." : "");
}

ei_model *ei_model_load_hf(const char *dir) {
    ei_model *m = ei_model_new_empty(dir, "hf");
    if (!m) return NULL;
    char *cfg_path = ei_path_join(dir, "config.json");
    char *text = NULL;
    size_t len = 0;
    if (!cfg_path) goto fail;
    if (!ei_path_exists(cfg_path)) {
        ei_error_set("%s: no config.json (not a Hugging Face model folder)", dir);
        goto fail;
    }
    if (ei_file_read_all(cfg_path, &text, &len) != 0 || parse_config(&m->cfg, cfg_path, text) != 0) goto fail;
    if (open_files(m, dir) != 0) goto fail;
    const ei_model_config *c = &m->cfg;
    if (ei_tensor_table_init(&m->tensors, c) != 0) goto fail;
    for (int i = 0; i < m->tensors.n; i++) {
        ei_tensor *t = &m->tensors.t[i];
        char name[256];
        snprintf(name, sizeof name, hf_names[t->cls], t->layer);
        if (!(t->data = get_tensor(m, dir, name, t->shape[0], t->ndim == 2 ? t->shape[1] : 0))) goto fail;
    }
    if (check_extra_layers(m, dir) != 0) goto fail;
    m->n_params = ei_model_config_n_params(c);
    uint64_t h = ei_hash_fnv1a(text, len, 0);
    ei_model_storage *s = ei_model_storage_of(m);
    for (int i = 0; i < s->n_st; i++)
        for (int j = 0; j < ei_st_count(s->st[i]); j++) {
            const ei_st_tensor *t = ei_st_get(s->st[i], j);
            h = ei_hash_fnv1a(t->name, strlen(t->name), h);
            h = ei_hash_fnv1a(&t->nbytes, sizeof t->nbytes, h);
        }
    m->identity = h;
    free(cfg_path);
    free(text);
    return m;
fail:
    free(cfg_path);
    free(text);
    ei_model_free(m);
    return NULL;
}
