/* Random models and model writers (see formats/model.h): what tests, the self-check and the
 * benchmarks use to get a model of any size, in either layout, without a download. */
#include "formats/model.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "core/ei_rng.h"
#include "formats/model_loaders.h"
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ei_model *ei_model_random(const ei_model_config *cfg, uint64_t seed) {
    if (ei_model_config_validate(cfg, "random model") != 0) return NULL;
    ei_model *m = ei_model_new_empty("random", "random");
    if (!m) return NULL;
    m->cfg = *cfg;
    if (ei_tensor_table_init(&m->tensors, cfg) != 0) goto fail;
    ei_rng r;
    ei_rng_seed(&r, seed);
    for (int i = 0; i < m->tensors.n; i++) {
        ei_tensor *t = &m->tensors.t[i];
        float *p = ei_model_alloc(m, (size_t)t->numel * sizeof(float));
        if (!p) goto fail;
        const int norm = t->ndim == 1 && (t->cls == EI_TC_ATTN_NORM || t->cls == EI_TC_FFN_NORM ||
                                          t->cls == EI_TC_FINAL_NORM);
        /* uniform with the variance of 1/fan_in keeps activations of a deep random stack in range */
        const double a = t->ndim == 2 ? sqrt(3.0 / (double)t->shape[1]) : 0.1;
        for (int64_t j = 0; j < t->numel; j++) {
            double u = 2.0 * ei_rng_uniform(&r) - 1.0;
            p[j] = (float)(norm ? 1.0 + 0.1 * u : (t->cls == EI_TC_EMBEDDING ? 0.5 : a) * u);
        }
        t->data = p;
    }
    m->n_params = ei_model_config_n_params(cfg);
    m->identity = ei_hash_fnv1a(cfg, sizeof *cfg, seed);
    return m;
fail:
    ei_model_free(m);
    return NULL;
}

/* q/k rows of one head between the interleaved layout (pairs (2i, 2i+1), llama2.c) and rotate-half
 * (pairs (i, i + d/2), Hugging Face), as the Hugging Face conversion permutes them: to_half = 1
 * moves row 2i + c to c d/2 + i. */
static void permute_rows(const float *src, float *dst, int heads, int d, int64_t cols, int to_half) {
    const int half = d / 2;
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < half; i++)
            for (int c = 0; c < 2; c++) {
                int64_t inter = (int64_t)h * d + 2 * i + c, rh = (int64_t)h * d + c * half + i;
                int64_t from = to_half ? inter : rh, to = to_half ? rh : inter;
                memcpy(dst + to * cols, src + from * cols, (size_t)cols * sizeof(float));
            }
}

/* A tensor's data in the target RoPE layout (q, k and their biases permuted when the layouts
 * differ); *tmp holds a malloc'd copy when one was needed. */
static const float *in_layout(const ei_model *m, const ei_tensor *t, int target_interleaved, float **tmp) {
    *tmp = NULL;
    const ei_model_config *c = &m->cfg;
    const int qk = t->cls == EI_TC_Q || t->cls == EI_TC_K || t->cls == EI_TC_Q_BIAS || t->cls == EI_TC_K_BIAS;
    if (!qk || c->rope_interleaved == target_interleaved) return t->data;
    if (!(*tmp = malloc((size_t)t->numel * sizeof(float)))) return NULL;
    const int heads = t->cls == EI_TC_Q || t->cls == EI_TC_Q_BIAS ? c->n_heads : c->n_kv_heads;
    permute_rows(t->data, *tmp, heads, c->head_dim, t->ndim == 2 ? t->shape[1] : 1, !target_interleaved);
    return *tmp;
}

int ei_model_save_llama2c(const ei_model *m, const char *path) {
    const ei_model_config *c = &m->cfg;
    if (c->qkv_bias || c->head_dim * c->n_heads != c->dim || c->rope_theta != 10000.0f)
        return ei_error_set("%s: the llama2.c format has no q/k/v biases, needs head_dim * n_heads == dim and "
                            "rope_theta 10000",
                            path);
    ei_atomic_file f;
    if (ei_atomic_open(&f, path) != 0) return -1;
    int32_t h[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                    c->tie_embeddings ? c->vocab_size : -c->vocab_size, c->max_seq_len};
    int ok = fwrite(h, sizeof h, 1, f.fp) == 1;
    static const ei_tclass stacked[] = {EI_TC_ATTN_NORM, EI_TC_Q, EI_TC_K,    EI_TC_V, EI_TC_O,
                                        EI_TC_FFN_NORM,  EI_TC_GATE, EI_TC_DOWN, EI_TC_UP};
    const ei_tensor *emb = ei_tensor_table_get(&m->tensors, EI_TC_EMBEDDING, -1);
    ok = ok && fwrite(emb->data, sizeof(float), (size_t)emb->numel, f.fp) == (size_t)emb->numel;
    for (size_t k = 0; ok && k < sizeof stacked / sizeof stacked[0]; k++)
        for (int l = 0; ok && l < c->n_layers; l++) {
            const ei_tensor *t = ei_tensor_table_get(&m->tensors, stacked[k], l);
            float *tmp;
            const float *d = in_layout(m, t, 1, &tmp);
            ok = d && fwrite(d, sizeof(float), (size_t)t->numel, f.fp) == (size_t)t->numel;
            free(tmp);
        }
    const ei_tensor *fn = ei_tensor_table_get(&m->tensors, EI_TC_FINAL_NORM, -1);
    ok = ok && fwrite(fn->data, sizeof(float), (size_t)fn->numel, f.fp) == (size_t)fn->numel;
    /* freq_cis_real, freq_cis_imag [seq_len, head_dim / 2], as llama2.c's legacy export writes them */
    for (int part = 0; ok && part < 2; part++)
        for (int p = 0; ok && p < c->max_seq_len; p++)
            for (int i = 0; ok && i < c->head_dim / 2; i++) {
                double a = p * pow(10000.0, -2.0 * i / c->head_dim);
                float v = (float)(part ? sin(a) : cos(a));
                ok = fwrite(&v, sizeof v, 1, f.fp) == 1;
            }
    if (ok && !c->tie_embeddings) {
        const ei_tensor *cl = ei_tensor_table_get(&m->tensors, EI_TC_CLASSIFIER, -1);
        ok = fwrite(cl->data, sizeof(float), (size_t)cl->numel, f.fp) == (size_t)cl->numel;
    }
    if (!ok) {
        ei_atomic_abort(&f);
        return ei_error_set("%s: write failed", path);
    }
    return ei_atomic_commit(&f);
}

static int write_hf_config(const ei_model *m, const char *path) {
    const ei_model_config *c = &m->cfg;
    cJSON *o = cJSON_CreateObject();
    if (!o) return ei_error_set("out of memory");
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    if (arch) cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddStringToObject(o, "model_type", "llama");
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddNumberToObject(o, "hidden_size", c->dim);
    cJSON_AddNumberToObject(o, "intermediate_size", c->hidden_dim);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_seq_len);
    cJSON_AddNumberToObject(o, "rms_norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_embeddings);
    cJSON_AddBoolToObject(o, "attention_bias", c->qkv_bias);
    if (c->bos_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", c->bos_id);
    if (c->eos_id >= 0) cJSON_AddNumberToObject(o, "eos_token_id", c->eos_id);
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return ei_error_set("out of memory");
    ei_atomic_file f;
    int rc = ei_atomic_open(&f, path);
    if (rc == 0) {
        if (fputs(text, f.fp) < 0 || fputc('\n', f.fp) == EOF) {
            ei_atomic_abort(&f);
            rc = ei_error_set("%s: write failed", path);
        } else {
            rc = ei_atomic_commit(&f);
        }
    }
    cJSON_free(text);
    return rc;
}

int ei_model_save_hf(const ei_model *m, const char *dir) {
    if (ei_mkdir_p(dir) != 0) return -1;
    const int n = m->tensors.n;
    ei_st_entry *e = calloc((size_t)n, sizeof *e);
    char (*names)[96] = calloc((size_t)n, sizeof *names);
    float **tmp = calloc((size_t)n, sizeof *tmp);
    int rc = e && names && tmp ? 0 : ei_error_set("%s: out of memory", dir);
    for (int i = 0; rc == 0 && i < n; i++) {
        const ei_tensor *t = &m->tensors.t[i];
        snprintf(names[i], sizeof names[i], ei_model_hf_name(t->cls), t->layer);
        const float *d = in_layout(m, t, 0, &tmp[i]);
        if (!d) rc = ei_error_set("%s: out of memory", dir);
        e[i] = (ei_st_entry){names[i], EI_ST_F32, t->ndim, {t->shape[0], t->ndim == 2 ? t->shape[1] : 0}, d};
    }
    char *st = rc == 0 ? ei_path_join(dir, "model.safetensors") : NULL;
    char *cj = rc == 0 ? ei_path_join(dir, "config.json") : NULL;
    if (rc == 0 && (!st || !cj)) rc = ei_error_set("%s: out of memory", dir);
    if (rc == 0) rc = ei_st_write(st, e, n, NULL);
    if (rc == 0) rc = write_hf_config(m, cj);
    for (int i = 0; tmp && i < n; i++) free(tmp[i]);
    free(tmp);
    free(names);
    free(e);
    free(st);
    free(cj);
    return rc;
}
