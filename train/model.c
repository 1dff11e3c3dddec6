#include "train/model.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "train/model_loaders.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Limits far above any model this tool targets, low enough that products cannot overflow. */
#define EI_MAX_DIM (1 << 16)
#define EI_MAX_HIDDEN (1 << 18)
#define EI_MAX_LAYERS 1024
#define EI_MAX_HEADS 1024
#define EI_MAX_HEAD_DIM 512
#define EI_MAX_VOCAB (1 << 22)
#define EI_MAX_CTX (1 << 24)

ei_model *ei_model_new_empty(const char *path, const char *format) {
    ei_model *m = calloc(1, sizeof *m);
    ei_model_storage *s = calloc(1, sizeof *s);
    if (m) m->path = strdup(path);
    if (m) m->format = strdup(format);
    if (!m || !s || !m->path || !m->format) {
        if (m) {
            free(m->path);
            free(m->format);
        }
        free(m);
        free(s);
        ei_error_set("%s: out of memory", path);
        return NULL;
    }
    m->priv = s;
    return m;
}

ei_model_storage *ei_model_storage_of(ei_model *m) { return m->priv; }

void *ei_model_alloc(ei_model *m, size_t n) {
    ei_model_storage *s = m->priv;
    if (s->n_bufs == s->cap_bufs) {
        int cap = s->cap_bufs ? 2 * s->cap_bufs : 16;
        void **nb = realloc(s->bufs, sizeof *nb * (size_t)cap);
        if (!nb) goto oom;
        s->bufs = nb;
        s->cap_bufs = cap;
    }
    void *p = calloc(1, n ? n : 1);
    if (!p) goto oom;
    s->bufs[s->n_bufs++] = p;
    return p;
oom:
    ei_error_set("%s: out of memory (%zu bytes)", m->path, n);
    return NULL;
}

void ei_model_free(ei_model *m) {
    if (!m) return;
    ei_model_storage *s = m->priv;
    if (s) {
        ei_file_map_close(&s->map);
        for (int i = 0; i < s->n_st; i++) ei_st_close(s->st[i]);
        free(s->st);
        for (int i = 0; i < s->n_bufs; i++) free(s->bufs[i]);
        free(s->bufs);
        free(s);
    }
    free(m->path);
    free(m->format);
    free(m);
}

int ei_model_config_validate(const ei_model_config *c, const char *what) {
#define CHECK_RANGE(field, lo, hi)                                                                             \
    if (c->field < (lo) || c->field > (hi))                                                                     \
        return ei_error_set("%s: %s = %d is out of range [%d, %d]", what, #field, c->field, (int)(lo), (int)(hi));
    CHECK_RANGE(dim, 1, EI_MAX_DIM)
    CHECK_RANGE(hidden_dim, 1, EI_MAX_HIDDEN)
    CHECK_RANGE(n_layers, 1, EI_MAX_LAYERS)
    CHECK_RANGE(n_heads, 1, EI_MAX_HEADS)
    CHECK_RANGE(n_kv_heads, 1, EI_MAX_HEADS)
    CHECK_RANGE(head_dim, 2, EI_MAX_HEAD_DIM)
    CHECK_RANGE(vocab_size, 1, EI_MAX_VOCAB)
    CHECK_RANGE(max_seq_len, 1, EI_MAX_CTX)
#undef CHECK_RANGE
    if (c->n_heads % c->n_kv_heads != 0)
        return ei_error_set("%s: n_heads (%d) is not a multiple of n_kv_heads (%d)", what, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0) return ei_error_set("%s: head_dim (%d) must be even for RoPE", what, c->head_dim);
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
        return ei_error_set("%s: rope_theta must be a positive number", what);
    if (!(c->norm_eps > 0.0f) || !(c->norm_eps < 1.0f))
        return ei_error_set("%s: rms_norm_eps must be in (0, 1)", what);
    if (c->bos_id >= c->vocab_size || c->eos_id >= c->vocab_size)
        return ei_error_set("%s: bos/eos id (%d/%d) outside the vocabulary of %d", what, c->bos_id, c->eos_id,
                            c->vocab_size);
    return 0;
}

size_t ei_model_config_n_params(const ei_model_config *c) {
    size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim, qd = (size_t)c->n_heads * c->head_dim,
           kvd = (size_t)c->n_kv_heads * c->head_dim, V = (size_t)c->vocab_size;
    size_t layer = 2 * D + qd * D + 2 * kvd * D + D * qd + 3 * F * D;
    if (c->qkv_bias) layer += qd + 2 * kvd;
    return V * D + (size_t)c->n_layers * layer + D + (c->tie_embeddings ? 0 : V * D);
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

ei_model *ei_model_load(const char *path) {
    if (!path || !*path) {
        ei_error_set("no model path given");
        return NULL;
    }
    if (!ei_path_exists(path)) {
        ei_error_set("%s: no such file or folder", path);
        return NULL;
    }
    ei_model *m = NULL;
    if (ei_path_is_dir(path)) {
        m = ei_model_load_hf(path);
    } else if (has_suffix(path, ".safetensors") || has_suffix(path, "config.json") ||
               has_suffix(path, ".safetensors.index.json")) {
        /* A file inside a Hugging Face folder: load the folder. */
        char *dir = strdup(path);
        if (!dir) {
            ei_error_set("%s: out of memory", path);
            return NULL;
        }
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        else strcpy(dir, ".");
        m = ei_model_load_hf(dir);
        free(dir);
    } else {
        m = ei_model_load_llama2c(path);
    }
    return m;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 2);
    if (!d) return NULL;
    if (n == 0) strcpy(d, "/");
    else {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

char *ei_model_default_tokenizer(const char *model_path, int vocab_size) {
    if (!model_path) return NULL;
    char *dir = ei_path_is_dir(model_path) ? strdup(model_path) : dir_of(model_path);
    if (!dir) return NULL;
    static const char *const hf_names[] = {"tokenizer.json", "tokenizer.model"};
    char tokv[32];
    snprintf(tokv, sizeof tokv, "tok%d.bin", vocab_size);
    const char *bin_names[] = {"tokenizer.bin", tokv, "tokenizer.model"};
    const char *const *names = ei_path_is_dir(model_path) ? hf_names : bin_names;
    int nn = ei_path_is_dir(model_path) ? 2 : 3;
    for (int i = 0; i < nn; i++) {
        char *p = ei_path_join(dir, names[i]);
        if (p && ei_path_exists(p) && !ei_path_is_dir(p)) {
            free(dir);
            return p;
        }
        free(p);
    }
    free(dir);
    return NULL;
}
