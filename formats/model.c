#include "formats/model.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "formats/model_loaders.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

const float *ei_model_weight(const ei_model *m, ei_tclass c, int layer) {
    const ei_tensor *t = ei_tensor_table_get(&m->tensors, c, layer);
    return t ? t->data : NULL;
}

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
    ei_tensor_table_free(&m->tensors);
    free(m->path);
    free(m->format);
    free(m);
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
