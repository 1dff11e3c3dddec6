#include "formats/safetensors.h"

#include "core/ei_error.h"
#include "core/ei_io.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A header larger than this is not a real model file (the biggest real headers are a few MB). */
#define EI_ST_MAX_HEADER (100u << 20)

struct ei_st_file {
    char *path;
    ei_file_map map;
    ei_st_tensor *t;
    int n;
    char **meta; /* key, value pairs */
    int n_meta;
};

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {{"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I32", 4}, {"I64", 8}, {"U8", 1}, {"I8", 1}};

const char *ei_st_dtype_name(ei_st_dtype d) { return dtype_info[d].name; }
size_t ei_st_dtype_size(ei_st_dtype d) { return dtype_info[d].size; }

static int dtype_parse(const char *s, ei_st_dtype *d) {
    for (size_t i = 0; i < sizeof dtype_info / sizeof dtype_info[0]; i++)
        if (strcmp(s, dtype_info[i].name) == 0) {
            *d = (ei_st_dtype)i;
            return 0;
        }
    return -1;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!(v >= 0.0) || v > 9007199254740992.0 || floor(v) != v) return -1;
    *out = (uint64_t)v;
    return 0;
}

static int cmp_by_offset(const void *a, const void *b) {
    const ei_st_tensor *x = *(const ei_st_tensor *const *)a, *y = *(const ei_st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp((*(const ei_st_tensor *const *)a)->name, (*(const ei_st_tensor *const *)b)->name);
}

static int parse_entry(ei_st_file *f, const cJSON *it, const uint8_t *data, size_t data_len, ei_st_tensor *t) {
    const char *path = f->path;
    if (!cJSON_IsObject(it)) return ei_error_set("%s: header entry '%s' is not an object", path, it->string);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo))
        return ei_error_set("%s: tensor '%s' lacks dtype, shape or data_offsets", path, it->string);
    if (dtype_parse(jd->valuestring, &t->dtype) != 0)
        return ei_error_set("%s: tensor '%s' has unsupported dtype '%s'", path, it->string, jd->valuestring);
    int nd = cJSON_GetArraySize(js);
    if (nd > EI_ST_MAX_DIMS)
        return ei_error_set("%s: tensor '%s' has %d dimensions (at most %d)", path, it->string, nd, EI_ST_MAX_DIMS);
    t->ndim = nd;
    size_t numel = 1;
    for (int i = 0; i < nd; i++) {
        uint64_t v;
        if (json_uint(cJSON_GetArrayItem(js, i), &v) != 0 || v > (1ull << 40))
            return ei_error_set("%s: tensor '%s' has an invalid shape", path, it->string);
        t->shape[i] = (int64_t)v;
        if (v && numel > SIZE_MAX / v) return ei_error_set("%s: tensor '%s' is too large", path, it->string);
        numel *= (size_t)v;
    }
    t->numel = numel;
    uint64_t b, e;
    if (cJSON_GetArraySize(jo) != 2 || json_uint(cJSON_GetArrayItem(jo, 0), &b) != 0 ||
        json_uint(cJSON_GetArrayItem(jo, 1), &e) != 0 || b > e)
        return ei_error_set("%s: tensor '%s' has invalid data_offsets", path, it->string);
    if (e > data_len)
        return ei_error_set("%s: tensor '%s' data [%llu, %llu) extends past the end of the file (data block is "
                            "%zu bytes): truncated?",
                            path, it->string, (unsigned long long)b, (unsigned long long)e, data_len);
    size_t es = ei_st_dtype_size(t->dtype);
    if (numel > SIZE_MAX / es || e - b != numel * es)
        return ei_error_set("%s: tensor '%s' has %llu bytes but shape and dtype %s need %zu", path, it->string,
                            (unsigned long long)(e - b), jd->valuestring, numel * es);
    t->data = data + b;
    t->nbytes = (size_t)(e - b);
    t->name = strdup(it->string);
    if (!t->name) return ei_error_set("%s: out of memory", path);
    return 0;
}

static int parse_metadata(ei_st_file *f, const cJSON *it) {
    if (!cJSON_IsObject(it)) return ei_error_set("%s: __metadata__ is not an object", f->path);
    /* cJSON keeps repeated keys: a second object would replace (and overflow) the first's table */
    if (f->meta) return ei_error_set("%s: __metadata__ appears twice", f->path);
    int n = cJSON_GetArraySize(it);
    f->meta = calloc((size_t)n * 2 + 1, sizeof(char *));
    if (!f->meta) return ei_error_set("%s: out of memory", f->path);
    const cJSON *m;
    cJSON_ArrayForEach(m, it) {
        if (!cJSON_IsString(m)) return ei_error_set("%s: __metadata__ value '%s' is not a string", f->path, m->string);
        f->meta[2 * f->n_meta] = strdup(m->string);
        f->meta[2 * f->n_meta + 1] = strdup(m->valuestring);
        f->n_meta++;
        if (!f->meta[2 * f->n_meta - 2] || !f->meta[2 * f->n_meta - 1]) return ei_error_set("%s: out of memory", f->path);
    }
    return 0;
}

static int parse_header(ei_st_file *f) {
    const uint8_t *p = f->map.data;
    size_t size = f->map.size;
    if (size < 8) return ei_error_set("%s: %zu bytes, too short for a safetensors file", f->path, size);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | p[i];
    if (hl < 2 || hl > EI_ST_MAX_HEADER || hl > size - 8)
        return ei_error_set("%s: invalid header length %llu (file is %zu bytes)", f->path, (unsigned long long)hl, size);
    char *js = malloc((size_t)hl + 1);
    if (!js) return ei_error_set("%s: out of memory", f->path);
    memcpy(js, p + 8, (size_t)hl);
    js[hl] = '\0';
    if (strlen(js) != (size_t)hl) {
        free(js);
        return ei_error_set("%s: header contains a NUL byte", f->path);
    }
    cJSON *root = cJSON_Parse(js);
    free(js);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ei_error_set("%s: header is not a JSON object", f->path);
    }
    const uint8_t *data = p + 8 + hl;
    size_t data_len = size - 8 - (size_t)hl;
    int n = cJSON_GetArraySize(root);
    f->t = calloc((size_t)n + 1, sizeof *f->t);
    if (!f->t) {
        cJSON_Delete(root);
        return ei_error_set("%s: out of memory", f->path);
    }
    const cJSON *it;
    int rc = 0;
    cJSON_ArrayForEach(it, root) {
        if (strcmp(it->string, "__metadata__") == 0) rc = parse_metadata(f, it);
        else if ((rc = parse_entry(f, it, data, data_len, &f->t[f->n])) == 0) f->n++;
        if (rc) break;
    }
    cJSON_Delete(root);
    if (rc) return -1;
    /* Overlapping ranges mean a corrupted (or hostile) header. */
    ei_st_tensor **order = malloc(sizeof *order * (size_t)(f->n + 1));
    if (!order) return ei_error_set("%s: out of memory", f->path);
    for (int i = 0; i < f->n; i++) order[i] = &f->t[i];
    qsort(order, (size_t)f->n, sizeof *order, cmp_by_offset);
    for (int i = 1; i < f->n; i++)
        if (order[i]->nbytes && order[i - 1]->data + order[i - 1]->nbytes > order[i]->data) {
            rc = ei_error_set("%s: tensors '%s' and '%s' overlap", f->path, order[i - 1]->name, order[i]->name);
            break;
        }
    /* Repeated names, by sorting rather than comparing every pair: a 3 MB header of 60 000 empty
     * tensors took minutes pairwise. */
    qsort(order, (size_t)f->n, sizeof *order, cmp_by_name);
    for (int i = 1; i < f->n && !rc; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0)
            rc = ei_error_set("%s: tensor '%s' appears twice", f->path, order[i]->name);
    free(order);
    return rc;
}

ei_st_file *ei_st_open(const char *path) {
    ei_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        ei_error_set("%s: out of memory", path);
        return NULL;
    }
    if (ei_file_map_open(&f->map, path) != 0 || parse_header(f) != 0) {
        ei_st_close(f);
        return NULL;
    }
    return f;
}

void ei_st_close(ei_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->meta);
    ei_file_map_close(&f->map);
    free(f->path);
    free(f);
}

const char *ei_st_path(const ei_st_file *f) { return f->path; }
int ei_st_count(const ei_st_file *f) { return f->n; }
const ei_st_tensor *ei_st_get(const ei_st_file *f, int i) { return i >= 0 && i < f->n ? &f->t[i] : NULL; }

const ei_st_tensor *ei_st_find(const ei_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

const char *ei_st_metadata(const ei_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

int ei_st_to_f32(const ei_st_tensor *t, float *dst) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case EI_ST_F32: memcpy(dst, p, t->numel * 4); return 0;
    case EI_ST_F16:
    case EI_ST_BF16:
        for (size_t i = 0; i < t->numel; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            dst[i] = t->dtype == EI_ST_F16 ? ei_f16_to_f32(h) : ei_bf16_to_f32(h);
        }
        return 0;
    case EI_ST_F64:
        for (size_t i = 0; i < t->numel; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default: return ei_error_set("%s: dtype %s is not a float type", t->name, ei_st_dtype_name(t->dtype));
    }
}

int ei_st_write(const char *path, const ei_st_entry *entries, int n, const char *const *metadata) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return ei_error_set("%s: out of memory", path);
    if (metadata && metadata[0]) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; m && metadata[i] && metadata[i + 1]; i += 2) cJSON_AddStringToObject(m, metadata[i], metadata[i + 1]);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const ei_st_entry *e = &entries[i];
        if (e->ndim < 0 || e->ndim > EI_ST_MAX_DIMS || !e->name) {
            cJSON_Delete(root);
            return ei_error_set("%s: tensor %d has an invalid description", path, i);
        }
        uint64_t numel = 1;
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        cJSON_AddStringToObject(t, "dtype", ei_st_dtype_name(e->dtype));
        for (int d = 0; d < e->ndim; d++) {
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
            numel *= (uint64_t)e->shape[d];
        }
        uint64_t nb = numel * ei_st_dtype_size(e->dtype);
        cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + nb)));
        off += nb;
    }
    char *js = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!js) return ei_error_set("%s: out of memory", path);
    size_t jl = strlen(js), padded = (jl + 7) / 8 * 8;
    ei_atomic_file af;
    if (ei_atomic_open(&af, path) != 0) {
        free(js);
        return -1;
    }
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int ok = fwrite(lenb, 1, 8, af.fp) == 8 && fwrite(js, 1, jl, af.fp) == jl;
    for (size_t i = jl; ok && i < padded; i++) ok = fputc(' ', af.fp) != EOF;
    free(js);
    for (int i = 0; ok && i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < entries[i].ndim; d++) numel *= (size_t)entries[i].shape[d];
        size_t nb = numel * ei_st_dtype_size(entries[i].dtype);
        ok = nb == 0 || fwrite(entries[i].data, 1, nb, af.fp) == nb;
    }
    if (!ok) {
        ei_atomic_abort(&af);
        return ei_error_set("%s: write error", path);
    }
    return ei_atomic_commit(&af);
}
