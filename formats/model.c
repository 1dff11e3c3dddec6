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

/* Index of the first non-finite float of p[0..n), or -1. Tested by the exponent bits, which
 * vectorises (a scan of every weight at load costs about what reading them costs). */
static int64_t first_non_finite(const float *p, int64_t n) {
    const int64_t B = 4096;
    for (int64_t s = 0; s < n; s += B) {
        int64_t e = s + B < n ? s + B : n;
        uint32_t any = 0;
        for (int64_t i = s; i < e; i++) {
            uint32_t u;
            memcpy(&u, p + i, 4);
            any |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (any)
            for (int64_t i = s; i < e; i++)
                if (!isfinite(p[i])) return i;
    }
    return -1;
}

int ei_check_finite(const float *p, int64_t n, const char *what, const char *name, int64_t cols) {
    int64_t i = first_non_finite(p, n);
    if (i < 0) return 0;
    char where[96];
    if (cols > 1) snprintf(where, sizeof where, "element %lld (row %lld, column %lld)", (long long)i,
                           (long long)(i / cols), (long long)(i % cols));
    else snprintf(where, sizeof where, "element %lld", (long long)i);
    return ei_error_set("%s: tensor %s holds a non-finite value (%s) at %s; the file is damaged or the model diverged",
                        what, name, isnan(p[i]) ? "NaN" : p[i] > 0 ? "+inf" : "-inf", where);
}

/* Every weight must be finite: one NaN makes every logit NaN, which no later stage can recover from. */
static int check_weights(const ei_model *m) {
    int hf = strcmp(m->format, "hf") == 0;
    for (int i = 0; i < m->tensors.n; i++) {
        const ei_tensor *t = &m->tensors.t[i];
        char name[160];
        if (hf) snprintf(name, sizeof name, ei_model_hf_name(t->cls), t->layer);
        else if (t->layer >= 0) snprintf(name, sizeof name, "'%s' of layer %d", ei_tclass_name(t->cls), t->layer);
        else snprintf(name, sizeof name, "'%s'", ei_tclass_name(t->cls));
        if (ei_check_finite(t->data, t->numel, m->path, name, t->ndim == 2 ? t->shape[1] : 0) != 0) return -1;
    }
    return 0;
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
    if (m && check_weights(m) != 0) {
        ei_model_free(m);
        return NULL;
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
