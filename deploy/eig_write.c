/* .eig writer (eig_write.h). Metadata is serialised field by field in little-endian order, so the
 * file is the same on every host; graphs are serialised when added, so the caller may free or
 * change them afterwards. The layout is docs/eig-format.md, mirrored by runtime/eig.c. */
#include "deploy/eig_write.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "runtime/eig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} buf_t;

static void b_reserve(buf_t *b, size_t k) {
    if (b->oom || b->n + k <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + k) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}
static void b_put(buf_t *b, const void *src, size_t k) {
    b_reserve(b, k);
    if (b->oom) return;
    if (k) memcpy(b->p + b->n, src, k);
    b->n += k;
}
static void b_u32(buf_t *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    b_put(b, x, 4);
}
static void b_u64(buf_t *b, uint64_t v) {
    b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
}
static void b_f32(buf_t *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    b_u32(b, u);
}
static void b_pad(buf_t *b, size_t align) {
    static const uint8_t zero[64] = {0};
    size_t k = (align - b->n % align) % align;
    b_put(b, zero, k);
}
static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

typedef struct {
    int n, cap;
    char **key, **value;
} kv_list;

typedef struct {
    char *name;
    buf_t sec;
} graph_rec;

typedef struct {
    uint64_t off, size;
} range;

struct ei_eigw {
    int have_cfg;
    ei_model_config cfg;
    kv_list opts, scen;
    int have_vocab;
    buf_t vocab;
    uint8_t *data;
    uint64_t data_size, data_cap;
    int n_graphs;
    graph_rec *graphs;
    range *ranges;
    size_t n_ranges;
};

ei_eigw *ei_eigw_new(void) {
    ei_eigw *w = calloc(1, sizeof *w);
    if (!w) ei_error_set("eig writer: out of memory");
    return w;
}

static void kv_free(kv_list *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->key[i]);
        free(l->value[i]);
    }
    free(l->key);
    free(l->value);
}

void ei_eigw_free(ei_eigw *w) {
    if (!w) return;
    kv_free(&w->opts);
    kv_free(&w->scen);
    free(w->vocab.p);
    free(w->data);
    for (int i = 0; i < w->n_graphs; i++) {
        free(w->graphs[i].name);
        free(w->graphs[i].sec.p);
    }
    free(w->graphs);
    free(w->ranges);
    free(w);
}

int ei_eigw_set_config(ei_eigw *w, const ei_model_config *cfg) {
    if (ei_model_config_validate(cfg, "eig writer: model config")) return -1;
    if ((unsigned)cfg->tie_embeddings > 1 || (unsigned)cfg->qkv_bias > 1 || (unsigned)cfg->rope_interleaved > 1)
        return ei_error_set("eig writer: model config: tie_embeddings / qkv_bias / rope_interleaved must be 0 or 1");
    w->cfg = *cfg;
    w->have_cfg = 1;
    return 0;
}

int ei_eigw_set_kv(ei_eigw *w, const char *section, const char *key, const char *value) {
    kv_list *l = !section ? NULL : strcmp(section, "OPTS") == 0 ? &w->opts : strcmp(section, "SCEN") == 0 ? &w->scen : NULL;
    if (!l) return ei_error_set("eig writer: unknown key/value section '%s' (OPTS or SCEN)", section ? section : "");
    if (!key || !value) return ei_error_set("eig writer: %s: NULL key or value", section);
    size_t kl = strlen(key), vl = strlen(value);
    if (kl < 1 || kl > EI_EIG_MAX_KEY || strchr(key, '=') || vl > EI_EIG_MAX_VALUE)
        return ei_error_set("eig writer: %s: key '%.40s' must be 1..%d bytes without '=', its value at most %d bytes",
                            section, key, EI_EIG_MAX_KEY, EI_EIG_MAX_VALUE);
    char *v = strdup(value);
    if (!v) return ei_error_set("eig writer: out of memory");
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->key[i], key) == 0) {
            free(l->value[i]);
            l->value[i] = v;
            return 0;
        }
    if (l->n >= 4096) {
        free(v);
        return ei_error_set("eig writer: %s: more than 4096 pairs", section);
    }
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        char **nk = realloc(l->key, (size_t)cap * sizeof *nk);
        if (nk) l->key = nk;
        char **nv = nk ? realloc(l->value, (size_t)cap * sizeof *nv) : NULL;
        if (nv) l->value = nv;
        if (!nk || !nv) {
            free(v);
            return ei_error_set("eig writer: out of memory");
        }
        l->cap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return ei_error_set("eig writer: out of memory");
    }
    l->key[l->n] = k;
    l->value[l->n++] = v;
    return 0;
}

int ei_eigw_set_vocab(ei_eigw *w, const ei_tok_vocab *v) {
    if (ei_tok_vocab_check(v, "eig writer: vocabulary")) return -1;
    const char *id = v->identity ? v->identity : "";
    size_t il = strlen(id);
    if (il > EI_EIG_MAX_IDENTITY) return ei_error_set("eig writer: vocabulary identity longer than %d bytes", EI_EIG_MAX_IDENTITY);
    buf_t b = {0};
    b_u32(&b, (uint32_t)v->kind);
    b_u32(&b, v->flags);
    b_u32(&b, (uint32_t)v->bos);
    b_u32(&b, (uint32_t)v->eos);
    b_u32(&b, (uint32_t)v->unk);
    b_u32(&b, (uint32_t)v->n_pieces);
    b_u32(&b, (uint32_t)v->n_merges);
    b_u32(&b, (uint32_t)il);
    b_put(&b, id, il);
    b_pad(&b, 4);
    for (int32_t i = 0; i < v->n_pieces; i++) b_f32(&b, v->pieces[i].score);
    for (int32_t i = 0; i < v->n_pieces; i++) b_u32(&b, v->pieces[i].len);
    for (int32_t i = 0; i < v->n_pieces; i++) b_put(&b, &v->pieces[i].type, 1);
    for (int32_t i = 0; i < v->n_pieces; i++) b_put(&b, &v->pieces[i].literal, 1);
    b_pad(&b, 4);
    for (int32_t i = 0; i < v->n_pieces; i++) b_put(&b, v->pieces[i].bytes, v->pieces[i].len);
    b_pad(&b, 4);
    for (int32_t i = 0; i < v->n_merges; i++) {
        const ei_tok_vocab_merge *m = &v->merges[i];
        b_u32(&b, (uint32_t)m->left);
        b_u32(&b, (uint32_t)m->right);
        b_u32(&b, (uint32_t)m->merged);
        b_u32(&b, (uint32_t)m->rank);
    }
    if (b.oom) {
        free(b.p);
        return ei_error_set("eig writer: out of memory serialising the vocabulary");
    }
    free(w->vocab.p);
    w->vocab = b;
    w->have_vocab = 1;
    return 0;
}

int ei_eigw_set_tokenizer(ei_eigw *w, const ei_tokenizer *t) {
    ei_tok_vocab v;
    if (ei_tokenizer_export(t, &v)) return -1;
    int rc = ei_eigw_set_vocab(w, &v);
    ei_tok_vocab_free(&v);
    return rc;
}

void *ei_eigw_alloc_data(ei_eigw *w, uint64_t n, uint64_t *offset) {
    uint64_t off = (w->data_size + EI_EIG_ALIGN - 1) / EI_EIG_ALIGN * EI_EIG_ALIGN;
    if (n > (uint64_t)SIZE_MAX / 2 || off > (uint64_t)SIZE_MAX / 2 - n) {
        ei_error_set("eig writer: constant data of %llu bytes is too large", (unsigned long long)n);
        return NULL;
    }
    if (off + n > w->data_cap) {
        uint64_t cap = w->data_cap ? w->data_cap : 4096;
        while (cap < off + n) cap *= 2;
        uint8_t *p = realloc(w->data, (size_t)cap);
        if (!p) {
            ei_error_set("eig writer: out of memory for %llu bytes of constant data", (unsigned long long)(off + n));
            return NULL;
        }
        w->data = p;
        w->data_cap = cap;
    }
    memset(w->data + w->data_size, 0, (size_t)(off + n - w->data_size));
    w->data_size = off + n;
    if (offset) *offset = off;
    return w->data + off;
}

int ei_eigw_add_data(ei_eigw *w, const void *data, uint64_t n, uint64_t *offset) {
    void *p = ei_eigw_alloc_data(w, n, offset);
    if (!p) return -1;
    if (n) memcpy(p, data, (size_t)n);
    return 0;
}

uint64_t ei_eigw_data_size(const ei_eigw *w) { return w->data_size; }

static int range_cmp(const void *a, const void *b) {
    const range *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return x->size < y->size ? -1 : x->size > y->size;
}

/* The constants of g at aligned offsets and, together with those already added, identical or
 * disjoint (the rule the reader enforces). */
static int add_ranges(ei_eigw *w, const ei_graph *g) {
    size_t add = 0;
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const ei_gtensor *t = &g->tensors[i];
        if (t->kind != EI_GK_CONST) continue;
        if (t->offset % EI_EIG_ALIGN)
            return ei_error_set("eig writer: graph '%s': tensor %d '%s': data offset %llu is not a multiple of %d "
                                "(use the offset ei_eigw_add_data returned)",
                                g->name, (int)i, t->name, (unsigned long long)t->offset, EI_EIG_ALIGN);
        add++;
    }
    range *r = malloc((w->n_ranges + add + 1) * sizeof *r);
    if (!r) return ei_error_set("eig writer: out of memory");
    size_t n = w->n_ranges;
    if (n) memcpy(r, w->ranges, n * sizeof *r);
    for (int32_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].kind == EI_GK_CONST) r[n++] = (range){g->tensors[i].offset, g->tensors[i].size};
    qsort(r, n, sizeof *r, range_cmp);
    size_t k = 0; /* keep one copy of each distinct range */
    for (size_t i = 0; i < n; i++) {
        if (k && r[k - 1].off == r[i].off && r[k - 1].size == r[i].size) continue;
        if (k && r[k - 1].off + r[k - 1].size > r[i].off) {
            int rc = ei_error_set("eig writer: graph '%s': constant data [%llu, +%llu) partially overlaps [%llu, +%llu)",
                                  g->name, (unsigned long long)r[i].off, (unsigned long long)r[i].size,
                                  (unsigned long long)r[k - 1].off, (unsigned long long)r[k - 1].size);
            free(r);
            return rc;
        }
        r[k++] = r[i];
    }
    free(w->ranges);
    w->ranges = r;
    w->n_ranges = k;
    return 0;
}

static void put_graph(buf_t *b, const ei_graph *g) {
    size_t nl = strlen(g->name);
    b_u32(b, (uint32_t)nl);
    b_u32(b, (uint32_t)g->n_tensors);
    b_u32(b, (uint32_t)g->n_nodes);
    b_u32(b, 0);
    b_put(b, g->name, nl);
    b_pad(b, 8);
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const ei_gtensor *t = &g->tensors[i];
        int c = t->kind == EI_GK_CONST;
        b_u32(b, (uint32_t)strlen(t->name));
        b_u32(b, (uint32_t)t->type);
        b_u32(b, (uint32_t)t->kind);
        b_u32(b, (uint32_t)t->rank);
        for (int d = 0; d < EI_G_MAX_RANK; d++) b_u32(b, d < t->rank ? (uint32_t)t->shape[d] : 1u);
        /* Fields the scheme does not use are written canonically, so the reader can insist on it. */
        ei_gquant_kind qk = t->q.kind;
        int per_tensor = qk == EI_GQ_TENSOR, has_axis = qk == EI_GQ_CHANNEL || qk == EI_GQ_GROUP;
        b_u32(b, (uint32_t)qk);
        b_f32(b, per_tensor ? t->q.scale : 0.0f);
        b_u32(b, per_tensor || has_axis ? (uint32_t)t->q.zero_point : 0u);
        b_u32(b, has_axis ? (uint32_t)t->q.axis : 0u);
        b_u32(b, qk == EI_GQ_GROUP ? (uint32_t)t->q.group : 0u);
        b_u32(b, has_axis ? (uint32_t)t->q.scales : UINT32_MAX);
        b_u64(b, c ? t->offset : 0);
        b_u64(b, c ? t->size : 0);
    }
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const ei_gnode *n = &g->nodes[i];
        b_u32(b, (uint32_t)n->op);
        b_u32(b, (uint32_t)n->n_in);
        for (int k = 0; k < EI_G_MAX_IN; k++) b_u32(b, k < n->n_in ? (uint32_t)n->in[k] : UINT32_MAX);
        b_u32(b, (uint32_t)n->out);
        b_u32(b, 0);
        uint32_t words[EI_EIG_PARAM_WORDS];
        ei_eig_params_encode(n->op, &n->p, words);
        for (int k = 0; k < EI_EIG_PARAM_WORDS; k++) b_u32(b, words[k]);
    }
    for (int32_t i = 0; i < g->n_tensors; i++) b_put(b, g->tensors[i].name, strlen(g->tensors[i].name));
    b_pad(b, 8);
}

int ei_eigw_add_graph(ei_eigw *w, const ei_graph *g) {
    if (ei_graph_validate(g, w->data_size)) return ei_error_prefix("eig writer: ");
    size_t nl = strlen(g->name);
    if (nl < 1 || nl > EI_EIG_MAX_GRAPH_NAME)
        return ei_error_set("eig writer: graph name '%.40s' must be 1..%d bytes", g->name, EI_EIG_MAX_GRAPH_NAME);
    for (int i = 0; i < w->n_graphs; i++)
        if (strcmp(w->graphs[i].name, g->name) == 0) return ei_error_set("eig writer: a graph '%s' was already added", g->name);
    for (int32_t i = 0; i < g->n_tensors; i++)
        if (strlen(g->tensors[i].name) > EI_EIG_MAX_TENSOR_NAME)
            return ei_error_set("eig writer: graph '%s': tensor %d name longer than %d bytes", g->name, (int)i,
                                EI_EIG_MAX_TENSOR_NAME);
    graph_rec *gr = realloc(w->graphs, (size_t)(w->n_graphs + 1) * sizeof *gr);
    if (!gr) return ei_error_set("eig writer: out of memory");
    w->graphs = gr;
    graph_rec rec = {strdup(g->name), {0}};
    put_graph(&rec.sec, g);
    if (!rec.name || rec.sec.oom) {
        free(rec.name);
        free(rec.sec.p);
        return ei_error_set("eig writer: out of memory serialising graph '%s'", g->name);
    }
    if (add_ranges(w, g)) {
        free(rec.name);
        free(rec.sec.p);
        return -1;
    }
    w->graphs[w->n_graphs++] = rec;
    return 0;
}

/* ------------------------------------------------------------------ file */

static void put_section(buf_t *m, uint32_t tag, const void *payload, size_t n) {
    b_u32(m, tag);
    b_u32(m, 0);
    b_u64(m, (uint64_t)n);
    b_put(m, payload, n);
    b_pad(m, 8);
}

static void put_kv(buf_t *m, uint32_t tag, const kv_list *l) {
    buf_t b = {0};
    b_u32(&b, (uint32_t)l->n);
    for (int i = 0; i < l->n; i++) {
        size_t kl = strlen(l->key[i]), vl = strlen(l->value[i]);
        b_u32(&b, (uint32_t)kl);
        b_u32(&b, (uint32_t)vl);
        b_put(&b, l->key[i], kl);
        b_put(&b, l->value[i], vl);
        b_pad(&b, 4);
    }
    if (b.oom) m->oom = 1;
    else put_section(m, tag, b.p, b.n);
    free(b.p);
}

/* Header and metadata block; *data_off is where the data block goes. */
static int build_head(const ei_eigw *w, buf_t *m, uint64_t *data_off) {
    if (!w->have_cfg) return ei_error_set("eig writer: no model config (ei_eigw_set_config)");
    if (!w->n_graphs) return ei_error_set("eig writer: no graphs (ei_eigw_add_graph)");
    uint8_t zero[EI_EIG_HEADER_SIZE] = {0};
    b_put(m, zero, sizeof zero);
    const ei_model_config *c = &w->cfg;
    buf_t conf = {0};
    b_u32(&conf, EI_EIG_CONF_FIELDS);
    int32_t ints[8] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size, c->max_seq_len};
    for (int i = 0; i < 8; i++) b_u32(&conf, (uint32_t)ints[i]);
    b_f32(&conf, c->rope_theta);
    b_f32(&conf, c->norm_eps);
    int32_t tail[5] = {c->tie_embeddings, c->qkv_bias, c->rope_interleaved, c->bos_id, c->eos_id};
    for (int i = 0; i < 5; i++) b_u32(&conf, (uint32_t)tail[i]);
    uint32_t n_sections = 3;
    if (!conf.oom) put_section(m, EI_EIG_TAG_CONF, conf.p, conf.n);
    free(conf.p);
    put_kv(m, EI_EIG_TAG_SCEN, &w->scen);
    put_kv(m, EI_EIG_TAG_OPTS, &w->opts);
    if (w->have_vocab) {
        put_section(m, EI_EIG_TAG_VOCB, w->vocab.p, w->vocab.n);
        n_sections++;
    }
    for (int i = 0; i < w->n_graphs; i++) put_section(m, EI_EIG_TAG_GRPH, w->graphs[i].sec.p, w->graphs[i].sec.n);
    n_sections += (uint32_t)w->n_graphs;
    if (conf.oom || m->oom) return ei_error_set("eig writer: out of memory building the metadata");
    uint64_t ms = m->n - EI_EIG_HEADER_SIZE;
    uint64_t dof = (m->n + EI_EIG_ALIGN - 1) / EI_EIG_ALIGN * EI_EIG_ALIGN;
    uint8_t *h = m->p;
    memcpy(h, "EIGRAPH\0", 8);
    wr32(h + 8, EI_EIG_VERSION);
    wr32(h + 12, EI_EIG_HEADER_SIZE);
    wr64(h + 16, dof + w->data_size);
    wr64(h + 24, EI_EIG_HEADER_SIZE);
    wr64(h + 32, ms);
    wr64(h + 40, dof);
    wr64(h + 48, w->data_size);
    wr64(h + 56, ei_hash_fnv1a(h + EI_EIG_HEADER_SIZE, (size_t)ms, 0));
    wr64(h + 64, ei_hash_fnv1a(w->data, (size_t)w->data_size, 0));
    wr32(h + 72, 0);
    wr32(h + 76, n_sections);
    wr64(h + 120, ei_hash_fnv1a(h, 120, 0));
    *data_off = dof;
    return 0;
}

int ei_eigw_serialize(const ei_eigw *w, uint8_t **out, size_t *size) {
    buf_t m = {0};
    uint64_t dof;
    if (build_head(w, &m, &dof)) {
        free(m.p);
        return -1;
    }
    size_t total = (size_t)(dof + w->data_size);
    uint8_t *p = calloc(1, total);
    if (!p) {
        free(m.p);
        return ei_error_set("eig writer: out of memory (%zu bytes)", total);
    }
    memcpy(p, m.p, m.n);
    if (w->data_size) memcpy(p + dof, w->data, (size_t)w->data_size);
    free(m.p);
    *out = p;
    *size = total;
    return 0;
}

int ei_eigw_write(const ei_eigw *w, const char *path) {
    buf_t m = {0};
    uint64_t dof;
    if (build_head(w, &m, &dof)) {
        free(m.p);
        return ei_error_prefix("%s: ", path);
    }
    ei_atomic_file f;
    if (ei_atomic_open(&f, path)) {
        free(m.p);
        return -1;
    }
    static const uint8_t zero[EI_EIG_ALIGN] = {0};
    size_t gap = (size_t)(dof - m.n);
    int ok = fwrite(m.p, 1, m.n, f.fp) == m.n && fwrite(zero, 1, gap, f.fp) == gap &&
             (!w->data_size || fwrite(w->data, 1, (size_t)w->data_size, f.fp) == (size_t)w->data_size);
    free(m.p);
    if (!ok) {
        ei_atomic_abort(&f);
        return ei_error_set("%s: write failed (disk full?)", path);
    }
    return ei_atomic_commit(&f);
}
