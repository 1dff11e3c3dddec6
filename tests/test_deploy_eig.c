/* The .eig graph file: writer -> reader round trip of everything (config, scenario, options,
 * vocabulary, two graphs sharing weights, data), atomic writes, the writer's refusals, every kind
 * of damage rejected with a clear message and no crash (truncation at every header byte and many
 * points after, bad header fields, corrupt sections, graphs made invalid inside the file, every
 * metadata byte flipped), and `ei inspect` run on a written file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "deploy/eig_write.h"
#include "runtime/eig.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define S(...) ((const int32_t[]){__VA_ARGS__})
#define R(...) (int32_t)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t)), S(__VA_ARGS__)

static char g_dir[64];
static ei_tokenizer *g_tok;

static const ei_model_config CFG = {.dim = 64, .hidden_dim = 172, .n_layers = 5, .n_heads = 8, .n_kv_heads = 4,
                                    .head_dim = 8, .vocab_size = 512, .max_seq_len = 512, .rope_theta = 10000.0f,
                                    .norm_eps = 1e-5f, .tie_embeddings = 1, .qkv_bias = 0, .rope_interleaved = 1,
                                    .bos_id = 1, .eos_id = 2};

/* Offsets of the shared constants. */
typedef struct {
    uint64_t emb, w8, w8s, b8, w4, w4s;
} weights;

static uint64_t put(ei_eigw *w, uint64_t n, uint32_t seed) {
    uint64_t off;
    uint8_t *p = ei_eigw_alloc_data(w, n, &off);
    assert_non_null(p);
    for (uint64_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
    return off;
}

static int32_t T(ei_graph *g, const char *name, ei_gtype type, ei_gkind kind, int32_t rank, const int32_t *shape,
                 uint64_t off) {
    int32_t i = ei_graph_add_tensor(g, name, type, kind, rank, shape);
    assert_true(i >= 0);
    if (kind == EI_GK_CONST) {
        g->tensors[i].offset = off;
        g->tensors[i].size = ei_gtensor_bytes(&g->tensors[i]);
    }
    return i;
}
#define NODE(g, op, p, out, ...) \
    assert_true(ei_graph_add_node(g, op, (int32_t)(sizeof((int32_t[]){__VA_ARGS__}) / 4), S(__VA_ARGS__), out, p) >= 0)

/* A small model step with N tokens: embedding gather, a per-channel int8 projection with bias, an
 * int4 grouped projection, SiLU, tied classifier, and a state input updated into a state output. */
static ei_graph *model_graph(const char *name, int32_t N, const weights *wt) {
    ei_graph *g = ei_graph_new(name);
    assert_non_null(g);
    int32_t tok = T(g, "tokens", EI_GT_I32, EI_GK_INPUT, R(N), 0);
    int32_t emb = T(g, "tok_embeddings", EI_GT_F32, EI_GK_CONST, R(512, 64), wt->emb);
    int32_t w8 = T(g, "layers.0.wq", EI_GT_I8, EI_GK_CONST, R(64, 64), wt->w8);
    int32_t w8s = T(g, "layers.0.wq.scales", EI_GT_F32, EI_GK_CONST, R(64), wt->w8s);
    int32_t b8 = T(g, "layers.0.bq", EI_GT_F32, EI_GK_CONST, R(64), wt->b8);
    int32_t w4 = T(g, "layers.0.w1", EI_GT_I4, EI_GK_CONST, R(64, 64), wt->w4);
    int32_t w4s = T(g, "layers.0.w1.scales", EI_GT_F16, EI_GK_CONST, R(64, 2), wt->w4s);
    g->tensors[w8].q = (ei_gquant){.kind = EI_GQ_CHANNEL, .axis = 0, .scales = w8s};
    g->tensors[w4].q = (ei_gquant){.kind = EI_GQ_GROUP, .axis = 1, .group = 32, .scales = w4s};
    int32_t state = T(g, "state_in", EI_GT_F32, EI_GK_INPUT, R(1, 64), 0);
    int32_t x = T(g, "x", EI_GT_F32, EI_GK_VALUE, R(N, 64), 0), a = T(g, "a", EI_GT_F32, EI_GK_VALUE, R(N, 64), 0);
    int32_t c = T(g, "c", EI_GT_F32, EI_GK_VALUE, R(N, 64), 0), s = T(g, "s", EI_GT_F32, EI_GK_VALUE, R(N, 64), 0);
    int32_t y = T(g, "y", EI_GT_F32, EI_GK_VALUE, R(N, 64), 0), m = T(g, "m", EI_GT_F32, EI_GK_VALUE, R(1, 64), 0);
    int32_t logits = T(g, "logits", EI_GT_F32, EI_GK_OUTPUT, R(N, 512), 0);
    int32_t sout = T(g, "state_out", EI_GT_F32, EI_GK_OUTPUT, R(1, 64), 0);
    NODE(g, EI_OP_GATHER, &(ei_gparams){.gather = {0}}, x, emb, tok);
    NODE(g, EI_OP_FULLY_CONNECTED, NULL, a, x, w8, b8);
    NODE(g, EI_OP_FULLY_CONNECTED, NULL, c, a, w4);
    NODE(g, EI_OP_LOGISTIC, NULL, s, c);
    NODE(g, EI_OP_MUL, NULL, y, c, s);
    NODE(g, EI_OP_FULLY_CONNECTED, NULL, logits, y, emb);
    ei_gparams mean = {.mean = {.axis = 0, .keep_dims = 1}};
    NODE(g, EI_OP_MEAN, &mean, m, y);
    NODE(g, EI_OP_ADD, NULL, sout, state, m);
    if (ei_graph_validate(g, 1 << 30)) print_message("%s\n", ei_error_get());
    return g;
}

static ei_eigw *make_writer(ei_graph **prefill, ei_graph **decode) {
    ei_eigw *w = ei_eigw_new();
    assert_non_null(w);
    assert_int_equal(ei_eigw_set_config(w, &CFG), 0);
    assert_int_equal(ei_eigw_set_kv(w, "SCEN", "tokens_per_call", "4"), 0);
    assert_int_equal(ei_eigw_set_kv(w, "SCEN", "plan", "w8 q,k,v; w4g32 mlp"), 0);
    assert_int_equal(ei_eigw_set_kv(w, "SCEN", "max_new_tokens", "128"), 0);
    assert_int_equal(ei_eigw_set_kv(w, "SCEN", "tokens_per_call", "4"), 0); /* replaces, keeps position */
    assert_int_equal(ei_eigw_set_kv(w, "OPTS", "segment", "128"), 0);
    assert_int_equal(ei_eigw_set_kv(w, "OPTS", "sink", "4"), 0);
    assert_int_equal(ei_eigw_set_kv(w, "OPTS", "window", "256"), 0);
    assert_int_equal(ei_eigw_set_kv(w, "OPTS", "gate", "head"), 0);
    assert_int_equal(ei_eigw_set_tokenizer(w, g_tok), 0);
    weights wt;
    wt.emb = put(w, 512 * 64 * 4, 1);
    wt.w8 = put(w, 64 * 64, 2);
    wt.w8s = put(w, 64 * 4, 3);
    wt.b8 = put(w, 64 * 4, 4);
    wt.w4 = put(w, 64 * 32, 5);
    wt.w4s = put(w, 64 * 2 * 2, 6);
    *prefill = model_graph("prefill", 4, &wt);
    *decode = model_graph("decode", 1, &wt);
    assert_int_equal(ei_eigw_add_graph(w, *prefill), 0);
    assert_int_equal(ei_eigw_add_graph(w, *decode), 0);
    return w;
}

static uint8_t *make_file(size_t *n, ei_graph **pg, ei_graph **dg) {
    ei_graph *p, *d;
    ei_eigw *w = make_writer(&p, &d);
    uint8_t *buf;
    assert_int_equal(ei_eigw_serialize(w, &buf, n), 0);
    ei_eigw_free(w);
    if (pg) *pg = p;
    else ei_graph_free(p);
    if (dg) *dg = d;
    else ei_graph_free(d);
    return buf;
}

/* ------------------------------------------------------------------ round trip */

static void same_graph(const ei_graph *a, const ei_graph *b) {
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->n_tensors, b->n_tensors);
    assert_int_equal(a->n_nodes, b->n_nodes);
    for (int32_t i = 0; i < a->n_tensors; i++) {
        const ei_gtensor *x = &a->tensors[i], *y = &b->tensors[i];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->kind, y->kind);
        assert_int_equal(x->rank, y->rank);
        assert_memory_equal(x->shape, y->shape, sizeof x->shape);
        assert_int_equal(x->q.kind, y->q.kind);
        assert_true(x->q.scale == y->q.scale);
        assert_int_equal(x->q.zero_point, y->q.zero_point);
        assert_int_equal(x->q.axis, y->q.axis);
        assert_int_equal(x->q.group, y->q.group);
        assert_int_equal(x->q.scales, y->q.scales);
        assert_int_equal(x->offset, y->offset);
        assert_int_equal(x->size, y->size);
    }
    for (int32_t i = 0; i < a->n_nodes; i++) {
        const ei_gnode *x = &a->nodes[i], *y = &b->nodes[i];
        assert_int_equal(x->op, y->op);
        assert_int_equal(x->n_in, y->n_in);
        assert_memory_equal(x->in, y->in, (size_t)x->n_in * sizeof x->in[0]);
        assert_int_equal(x->out, y->out);
        uint32_t wx[EI_EIG_PARAM_WORDS], wy[EI_EIG_PARAM_WORDS];
        ei_eig_params_encode(x->op, &x->p, wx);
        ei_eig_params_encode(y->op, &y->p, wy);
        assert_memory_equal(wx, wy, sizeof wx);
    }
}

static void check_contents(const ei_eig *e, const ei_graph *p, const ei_graph *d, const uint8_t *file) {
    assert_int_equal(ei_eig_version(e), EI_EIG_VERSION);
    assert_memory_equal(ei_eig_config(e), &CFG, sizeof CFG);
    assert_int_equal(ei_eig_kv_count(e, "SCEN"), 3);
    assert_int_equal(ei_eig_kv_count(e, "OPTS"), 4);
    assert_int_equal(ei_eig_kv_count(e, "NOPE"), 0);
    const char *k, *v;
    assert_int_equal(ei_eig_kv_at(e, "SCEN", 0, &k, &v), 0);
    assert_string_equal(k, "tokens_per_call");
    assert_string_equal(v, "4");
    assert_int_equal(ei_eig_kv_at(e, "SCEN", 2, &k, &v), 0);
    assert_string_equal(k, "max_new_tokens");
    assert_int_equal(ei_eig_kv_at(e, "SCEN", 3, &k, &v), -1);
    assert_string_equal(ei_eig_kv_get(e, "SCEN", "plan"), "w8 q,k,v; w4g32 mlp");
    assert_string_equal(ei_eig_kv_get(e, "OPTS", "window"), "256");
    assert_null(ei_eig_kv_get(e, "OPTS", "plan"));
    ei_opts o;
    assert_int_equal(ei_eig_opts(e, &o), 0);
    assert_int_equal(o.segment, 128);
    assert_int_equal(o.window, 256);
    assert_int_equal(o.gate, EI_GATE_HEAD);
    /* vocabulary: field by field against a fresh export */
    ei_tok_vocab x;
    assert_int_equal(ei_tokenizer_export(g_tok, &x), 0);
    const ei_tok_vocab *y = ei_eig_vocab(e);
    assert_non_null(y);
    assert_int_equal(y->kind, x.kind);
    assert_int_equal(y->flags, x.flags);
    assert_int_equal(y->bos, x.bos);
    assert_int_equal(y->eos, x.eos);
    assert_int_equal(y->unk, x.unk);
    assert_string_equal(y->identity, x.identity);
    assert_int_equal(y->n_pieces, x.n_pieces);
    for (int32_t i = 0; i < x.n_pieces; i++) {
        assert_int_equal(y->pieces[i].len, x.pieces[i].len);
        assert_memory_equal(y->pieces[i].bytes, x.pieces[i].bytes, x.pieces[i].len);
        assert_true(y->pieces[i].score == x.pieces[i].score);
        assert_int_equal(y->pieces[i].type, x.pieces[i].type);
        assert_int_equal(y->pieces[i].literal, x.pieces[i].literal);
    }
    ei_tok_vocab_free(&x);
    ei_tokenizer *t = ei_eig_tokenizer(e);
    assert_non_null(t);
    int32_t *ia, *ib;
    size_t na, nb;
    const char *text = "Once upon a time, there was a little dog named Spot.";
    assert_int_equal(ei_tokenizer_encode(g_tok, text, strlen(text), 1, 1, &ia, &na), 0);
    assert_int_equal(ei_tokenizer_encode(t, text, strlen(text), 1, 1, &ib, &nb), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(ia, ib, na * sizeof *ia);
    free(ia);
    free(ib);
    ei_tokenizer_free(t);
    /* graphs and data */
    assert_int_equal(ei_eig_n_graphs(e), 2);
    same_graph(ei_eig_graph(e, 0), p);
    same_graph(ei_eig_graph_by_name(e, "decode"), d);
    assert_ptr_equal(ei_eig_graph_by_name(e, "prefill"), ei_eig_graph(e, 0));
    assert_null(ei_eig_graph_by_name(e, "nope"));
    assert_null(ei_eig_graph(e, 2));
    uint64_t ds;
    const uint8_t *data = ei_eig_data(e, &ds);
    assert_true(ds >= 512 * 64 * 4);
    assert_int_equal((file ? (uintptr_t)(data - file) : (uintptr_t)data) % EI_EIG_ALIGN, 0);
    const ei_gtensor *w8 = &p->tensors[ei_graph_find(p, "layers.0.wq")];
    for (uint64_t i = 0; i < w8->size; i++) assert_int_equal(data[w8->offset + i], (uint8_t)((i * 2654435761u + 2) >> 13));
    assert_int_equal(ei_eig_verify_data(e), 0);
}

static void test_round_trip_memory(void **s) {
    (void)s;
    ei_graph *p, *d;
    size_t n;
    uint8_t *buf = make_file(&n, &p, &d);
    ei_eig *e = ei_eig_open_memory(buf, n);
    if (!e) print_message("%s\n", ei_error_get());
    assert_non_null(e);
    assert_int_equal(ei_eig_file_size(e), n);
    check_contents(e, p, d, buf);
    ei_eig_close(e);
    free(buf);
    ei_graph_free(p);
    ei_graph_free(d);
}

static int count_files(const char *dir) {
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dp)))
        if (de->d_name[0] != '.') n++;
    closedir(dp);
    return n;
}

static void test_round_trip_file(void **s) {
    (void)s;
    ei_graph *p, *d;
    ei_eigw *w = make_writer(&p, &d);
    char path[128];
    snprintf(path, sizeof path, "%s/model.eig", g_dir);
    assert_int_equal(ei_eigw_write(w, path), 0);
    assert_int_equal(count_files(g_dir), 1); /* no temporary left behind */
    ei_eig *e = ei_eig_open(path);
    if (!e) print_message("%s\n", ei_error_get());
    assert_non_null(e);
    const uint8_t *data = ei_eig_data(e, NULL);
    assert_int_equal((uintptr_t)data % EI_EIG_ALIGN, 0); /* mapped: aligned in memory too */
    check_contents(e, p, d, NULL);
    ei_eig_close(e);
    /* the bytes on disk are what serialize gives */
    uint8_t *buf;
    size_t n;
    assert_int_equal(ei_eigw_serialize(w, &buf, &n), 0);
    char *disk;
    size_t dn;
    assert_int_equal(ei_file_read_all(path, &disk, &dn), 0);
    assert_int_equal(dn, n);
    assert_memory_equal(disk, buf, n);
    free(disk);
    free(buf);
    /* a failing write leaves neither a temporary nor a changed file */
    char bad[160];
    snprintf(bad, sizeof bad, "%s/no/such/dir/model.eig", g_dir);
    assert_int_equal(ei_eigw_write(w, bad), -1);
    ei_eigw *empty = ei_eigw_new();
    assert_int_equal(ei_eigw_set_config(empty, &CFG), 0);
    assert_int_equal(ei_eigw_write(empty, path), -1);
    assert_non_null(strstr(ei_error_get(), "no graphs"));
    ei_eigw_free(empty);
    assert_int_equal(count_files(g_dir), 1);
    e = ei_eig_open(path);
    assert_non_null(e);
    ei_eig_close(e);
    ei_eigw_free(w);
    ei_graph_free(p);
    ei_graph_free(d);
}

static void expect_msg(int rc, const char *want, int line) {
    if (rc != -1 || !strstr(ei_error_get(), want)) {
        print_message("line %d: rc %d message [%s], wanted [%s]\n", line, rc, ei_error_get(), want);
        fail();
    }
}
#define EXPECT(rc, want) expect_msg(rc, want, __LINE__)

static void test_writer_refuses(void **s) {
    (void)s;
    ei_graph *p, *d;
    ei_eigw *w = make_writer(&p, &d);
    EXPECT(ei_eigw_add_graph(w, p), "a graph 'prefill' was already added");
    EXPECT(ei_eigw_set_kv(w, "XXXX", "a", "b"), "unknown key/value section 'XXXX'");
    EXPECT(ei_eigw_set_kv(w, "OPTS", "a=b", "c"), "without '='");
    EXPECT(ei_eigw_set_kv(w, "OPTS", "", "c"), "must be 1..255 bytes");
    ei_model_config bad = CFG;
    bad.n_kv_heads = 3;
    EXPECT(ei_eigw_set_config(w, &bad), "n_heads (8) is not a multiple of n_kv_heads (3)");
    ei_graph *g = ei_graph_new("other");
    int32_t x = ei_graph_add_tensor(g, "x", EI_GT_F32, EI_GK_CONST, R(4));
    int32_t y = ei_graph_add_tensor(g, "y", EI_GT_F32, EI_GK_OUTPUT, R(4));
    g->tensors[x].size = 16;
    g->tensors[x].offset = 8; /* misaligned */
    assert_true(ei_graph_add_node(g, EI_OP_EXP, 1, S(x), y, NULL) >= 0);
    EXPECT(ei_eigw_add_graph(w, g), "graph 'other': tensor 0 'x': data offset 8 is not a multiple of 64");
    g->tensors[x].offset = 64; /* inside the embedding table: a partial overlap */
    EXPECT(ei_eigw_add_graph(w, g), "constant data [64, +16) partially overlaps [0, +131072)");
    g->tensors[x].offset = ei_eigw_data_size(w) + 64; /* beyond the data added so far */
    EXPECT(ei_eigw_add_graph(w, g), "eig writer: graph 'other': tensor 0 'x'");
    g->tensors[x].offset = 0;
    g->tensors[x].size = 12;
    EXPECT(ei_eigw_add_graph(w, g), "size 12 bytes does not match shape [4] x f32");
    /* fields a quantisation scheme does not use are written canonically */
    g->tensors[x].size = 16;
    assert_int_equal(ei_eigw_add_data(w, (float[4]){1, 2, 3, 4}, 16, &g->tensors[x].offset), 0);
    g->tensors[y].q.scale = 5.0f;
    g->tensors[y].q.scales = 3;
    assert_int_equal(ei_eigw_add_graph(w, g), 0);
    uint8_t *file;
    size_t fn;
    assert_int_equal(ei_eigw_serialize(w, &file, &fn), 0);
    ei_eig *e = ei_eig_open_memory(file, fn);
    assert_non_null(e);
    const ei_gtensor *ry = &ei_eig_graph_by_name(e, "other")->tensors[y];
    assert_true(ry->q.scale == 0.0f);
    assert_int_equal(ry->q.scales, -1);
    ei_eig_close(e);
    free(file);
    ei_graph_free(g);
    ei_eigw *n = ei_eigw_new();
    uint8_t *buf;
    size_t len;
    EXPECT(ei_eigw_serialize(n, &buf, &len), "no model config");
    ei_eigw_free(n);
    ei_eigw_free(w);
    ei_graph_free(p);
    ei_graph_free(d);
}

/* ------------------------------------------------------------------ corruption */

static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd64((const uint8_t[8]){p[0], p[1], p[2], p[3]}); }
static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Recomputes both checksums so a change reaches the check it is meant for (the metadata one only
 * while the header's metadata block lies inside the n bytes of b). */
static size_t g_n;
static void reseal(uint8_t *b) {
    uint64_t mo = rd64(b + 24), ms = rd64(b + 32);
    if (mo <= g_n && ms <= g_n - mo) wr64(b + 56, ei_hash_fnv1a(b + mo, (size_t)ms, 0));
    wr64(b + 120, ei_hash_fnv1a(b, 120, 0));
}

static void reject(const uint8_t *b, size_t n, const char *want, int line) {
    ei_error_clear();
    ei_eig *e = ei_eig_open_memory(b, n);
    if (e || !strstr(ei_error_get(), want)) {
        print_message("line %d: %s, message [%s], wanted [%s]\n", line, e ? "opened" : "rejected", ei_error_get(), want);
        ei_eig_close(e);
        fail();
    }
}
#define REJECT(b, n, want) reject(b, n, want, __LINE__)

/* Offset of the payload of the k-th section with this tag (walking the format independently). */
static size_t section(const uint8_t *b, uint32_t tag, int k, uint64_t *size) {
    size_t pos = (size_t)rd64(b + 24), end = pos + (size_t)rd64(b + 32);
    while (pos < end) {
        uint64_t sz = rd64(b + pos + 8);
        if (rd32(b + pos) == tag && k-- == 0) {
            if (size) *size = sz;
            return pos + 16;
        }
        pos += 16 + (size_t)((sz + 7) / 8 * 8);
    }
    fail_msg("section not found");
    return 0;
}

static size_t tensor_rec(const uint8_t *b, int graph, int i) {
    size_t g = section(b, EI_EIG_TAG_GRPH, graph, NULL);
    return g + 16 + (rd32(b + g) + 7) / 8 * 8 + (size_t)EI_EIG_TENSOR_RECORD * (size_t)i;
}

static size_t node_rec(const uint8_t *b, int graph, int i) {
    size_t g = section(b, EI_EIG_TAG_GRPH, graph, NULL);
    return g + 16 + (rd32(b + g) + 7) / 8 * 8 + (size_t)EI_EIG_TENSOR_RECORD * rd32(b + g + 4) +
           (size_t)EI_EIG_NODE_RECORD * (size_t)i;
}

static void test_truncated(void **s) {
    (void)s;
    size_t n;
    uint8_t *full = make_file(&n, NULL, NULL);
    g_n = n;
    for (size_t len = 0; len < n; len += len < 4096 ? 1 : len < 65536 ? 61 : 4093) {
        uint8_t *b = malloc(len ? len : 1); /* exact size, so ASan sees any read past the end */
        memcpy(b, full, len);
        const char *want = len < 8 ? "truncated" : len < EI_EIG_HEADER_SIZE ? "truncated: " : "truncated or padded";
        REJECT(len ? b : NULL, len, want);
        free(b);
    }
    /* a file that claims to be shorter, with a header resealed to match, still fails cleanly */
    uint8_t *b = malloc(n);
    memcpy(b, full, n);
    wr64(b + 16, n - 64);
    reseal(b);
    REJECT(b, n - 64, "data block");
    free(b);
    free(full);
}

static void test_bad_header(void **s) {
    (void)s;
    size_t n;
    uint8_t *full = make_file(&n, NULL, NULL);
    g_n = n;
    uint8_t *b = malloc(n + 256);
#define FRESH() memcpy(b, full, n)
    FRESH();
    b[0] = 'X';
    REJECT(b, n, "<memory>: not an .eig file (bad magic)");
    FRESH();
    wr32(b + 8, 2);
    REJECT(b, n, "format version 2, this build reads version 1");
    FRESH();
    wr32(b + 12, 64);
    REJECT(b, n, "header size 64, expected 128");
    FRESH();
    b[100] = 1;
    REJECT(b, n, "header checksum mismatch");
    FRESH();
    b[100] = 1;
    reseal(b);
    REJECT(b, n, "reserved header byte 100 is not 0");
    FRESH();
    wr32(b + 72, 4);
    reseal(b);
    REJECT(b, n, "unknown header flags");
    FRESH();
    memset(b + n, 0, 256);
    REJECT(b, n + 64, "file is"); /* padded */
    FRESH();
    wr64(b + 32, (uint64_t)n); /* metadata past the end */
    reseal(b);
    REJECT(b, n, "metadata block [128, +");
    FRESH();
    wr64(b + 32, UINT64_MAX - 64); /* sizes that would overflow an addition */
    reseal(b);
    REJECT(b, n, "runs past the end of the file");
    FRESH();
    wr64(b + 48, rd64(b + 48) + 64); /* data past the end */
    reseal(b);
    REJECT(b, n, "data block [");
    FRESH();
    wr64(b + 40, rd64(b + 40) + 8); /* misaligned data, still inside the file */
    wr64(b + 48, rd64(b + 48) - 8);
    reseal(b);
    REJECT(b, n, "data block offset");
    FRESH();
    wr64(b + 40, rd64(b + 40) - 64 * ((rd64(b + 40) - 128) / 64)); /* data over the metadata */
    reseal(b);
    REJECT(b, n, "overlaps the metadata block");
    FRESH();
    wr64(b + 40, 64);
    reseal(b);
    REJECT(b, n, "overlaps the header");
    FRESH();
    wr64(b + 24, 136); /* metadata starts inside itself: first section header is garbage */
    wr64(b + 32, rd64(b + 32) - 8);
    reseal(b);
    REJECT(b, n, "<memory>: ");
    FRESH();
    wr32(b + 76, 1000000);
    reseal(b);
    REJECT(b, n, "sections cannot fit");
    FRESH();
    wr32(b + 76, rd32(b + 76) - 1);
    reseal(b);
    REJECT(b, n, "the header says 5 sections, the metadata block holds 6");
    FRESH();
    b[rd64(b + 24) + 40] ^= 1; /* any metadata byte, checksum not updated */
    REJECT(b, n, "metadata checksum mismatch (the file is corrupt)");
    /* data corruption is found by verify, not at open */
    FRESH();
    b[n - 1] ^= 0x55;
    ei_eig *e = ei_eig_open_memory(b, n);
    assert_non_null(e);
    EXPECT(ei_eig_verify_data(e), "data block checksum mismatch");
    ei_eig_close(e);
#undef FRESH
    free(b);
    free(full);
}

static void test_bad_sections(void **s) {
    (void)s;
    size_t n;
    uint8_t *full = make_file(&n, NULL, NULL);
    g_n = n;
    uint8_t *b = malloc(n);
#define FRESH() memcpy(b, full, n)
    size_t mo = (size_t)rd64(full + 24);
    FRESH();
    wr64(b + mo + 8, 1 << 30); /* first section's size past the block */
    reseal(b);
    REJECT(b, n, "section 0 ('CONF') at metadata byte 0, 1073741824 bytes, runs past the end of the metadata block");
    FRESH();
    wr32(b + mo, EI_EIG_TAG('Z', 'Z', 'Z', 'Z'));
    reseal(b);
    REJECT(b, n, "unknown section 'ZZZZ'");
    FRESH();
    wr32(b + mo + 4, EI_EIG_SEC_OPTIONAL); /* an optional unknown section is skipped */
    wr32(b + mo, EI_EIG_TAG('Z', 'Z', 'Z', 'Z'));
    reseal(b);
    REJECT(b, n, "no model config (CONF section)");
    FRESH();
    wr32(b + mo + 4, 2);
    reseal(b);
    REJECT(b, n, "section 0 ('CONF'): unknown flags 0x2");
    FRESH();
    wr32(b + mo + 16 + 4 * 4, 3); /* n_heads 8 -> 3 */
    reseal(b);
    REJECT(b, n, "model config: n_heads (3) is not a multiple of n_kv_heads (4)");
    FRESH();
    wr32(b + mo + 16, 14);
    reseal(b);
    REJECT(b, n, "CONF section: 64 bytes with 14 fields");
    size_t sc = section(full, EI_EIG_TAG_SCEN, 0, NULL);
    FRESH();
    wr32(b + sc, 0x7fffffff);
    reseal(b);
    REJECT(b, n, "SCEN section: 2147483647 pairs cannot fit");
    FRESH();
    wr32(b + sc + 4, 300);
    reseal(b);
    REJECT(b, n, "SCEN section: pair 0: key length 300");
    FRESH();
    wr32(b + sc + 8, 60000);
    reseal(b);
    REJECT(b, n, "SCEN section: pair 0 runs past the end of the section");
    FRESH();
    b[sc + 12] = '='; /* the key "tokens_per_call" */
    reseal(b);
    REJECT(b, n, "key contains NUL or '='");
    size_t op = section(full, EI_EIG_TAG_OPTS, 0, NULL);
    FRESH();
    uint8_t *gate = memmem(b + op, 128, "gate", 4); /* "gate" -> "sink": a duplicate key */
    assert_non_null(gate);
    memcpy(gate, "sink", 4);
    reseal(b);
    REJECT(b, n, "OPTS section: duplicate key 'sink'");
    FRESH();
    memcpy(gate, "gatf", 4); /* an unknown option opens; ei_eig_opts names it */
    reseal(b);
    ei_eig *e = ei_eig_open_memory(b, n);
    assert_non_null(e);
    ei_opts o;
    EXPECT(ei_eig_opts(e, &o), "OPTS: ");
    ei_eig_close(e);
    size_t vb = section(full, EI_EIG_TAG_VOCB, 0, NULL);
    FRESH();
    wr32(b + vb + 20, 0x00ffffff); /* n_pieces */
    reseal(b);
    REJECT(b, n, "VOCB section: 16777215 pieces");
    FRESH();
    wr32(b + vb + 8, 999); /* bos */
    reseal(b);
    REJECT(b, n, "<memory>: vocabulary: bos/eos/unk 999/2/0 outside the 512 pieces");
    FRESH();
    wr32(b + vb + 28, 200); /* identity length */
    reseal(b);
    REJECT(b, n, "VOCB section");
    size_t id_len = rd32(full + vb + 28), types = vb + 32 + (id_len + 3) / 4 * 4 + 8 * 512;
    FRESH();
    b[types + 5] = 9;
    reseal(b);
    REJECT(b, n, "vocabulary: piece 5: unknown type 9");
    FRESH();
    wr32(b + types - 4 * 512 + 4 * 7, 100000); /* piece 7's length */
    reseal(b);
    REJECT(b, n, "VOCB section:");
#undef FRESH
    free(b);
    free(full);
}

static void test_bad_graphs(void **s) {
    (void)s;
    size_t n;
    uint8_t *full = make_file(&n, NULL, NULL);
    g_n = n;
    uint8_t *b = malloc(n);
#define FRESH() memcpy(b, full, n)
    size_t g1 = section(full, EI_EIG_TAG_GRPH, 1, NULL);
    FRESH();
    wr32(b + g1 + 4, 0xffffffffu);
    reseal(b);
    REJECT(b, n, "graph section 1: 4294967295 tensors and 8 nodes cannot fit");
    FRESH();
    memcpy(b + g1 + 16, "prefil", 6); /* "decode" -> "prefil": fine; then make it a duplicate */
    reseal(b);
    ei_eig *e = ei_eig_open_memory(b, n);
    assert_non_null(e);
    ei_eig_close(e);
    FRESH();
    wr32(b + g1, 7);
    memcpy(b + g1 + 16, "prefill", 7);
    reseal(b);
    REJECT(b, n, "two graphs are named 'prefill'");
    /* tensor records */
    size_t emb = tensor_rec(full, 0, 1), val = tensor_rec(full, 0, 8);
    FRESH();
    wr32(b + emb + 16, 0x7fffffff); /* shape [2^31-1, 64] as f32: more than 2^40 elements */
    wr32(b + emb + 20, 0x7fffffff);
    reseal(b);
    REJECT(b, n, "graph 'prefill': tensor 1 'tok_embeddings': shape [2147483647,2147483647] has more than 2^40 elements");
    FRESH();
    wr32(b + val + 12, 5);
    reseal(b);
    REJECT(b, n, "graph 'prefill': tensor 8 'x': rank 5 outside [0, 4]");
    FRESH();
    wr32(b + val + 24, 3); /* shape entry beyond the rank */
    reseal(b);
    REJECT(b, n, "tensor 8 'x': shape entry 2 beyond rank 2 is 3 (must be 1)");
    FRESH();
    wr32(b + val + 36, 0x3f800000); /* scale 1.0 on an unquantised tensor */
    reseal(b);
    REJECT(b, n, "tensor 8 'x': a quantisation field that scheme 'none' does not use is not in its canonical state");
    FRESH();
    wr64(b + val + 56, 64); /* a VALUE with a data offset */
    reseal(b);
    REJECT(b, n, "tensor 8 'x': a value tensor with data offset 64");
    FRESH();
    wr64(b + emb + 56, 8);
    reseal(b);
    REJECT(b, n, "graph 'prefill': tensor 1 'tok_embeddings': data offset 8 is not a multiple of 64");
    FRESH();
    wr64(b + tensor_rec(full, 1, 2) + 56, 64); /* decode's wq inside prefill's embedding */
    reseal(b);
    REJECT(b, n, "tensor 'tok_embeddings' [0, +131072) and graph 'decode' tensor 'layers.0.wq' [64, +4096)");
    FRESH();
    wr64(b + emb + 56, rd64(full + 48)); /* past the data block */
    reseal(b);
    REJECT(b, n, "lies outside the constant blob");
    FRESH();
    wr64(b + emb + 64, 12);
    reseal(b);
    REJECT(b, n, "size 12 bytes does not match shape [512,64] x f32");
    FRESH();
    wr32(b + emb, 0);
    reseal(b);
    REJECT(b, n, "graph 'prefill': tensor 1: name length 0 outside [1, 1024]");
    FRESH();
    wr32(b + emb, 100000);
    reseal(b);
    REJECT(b, n, "name length 100000");
    /* node records */
    size_t n0 = node_rec(full, 0, 0), n5 = node_rec(full, 0, 5), n3 = node_rec(full, 0, 3);
    FRESH();
    wr32(b + n5, 99);
    reseal(b);
    REJECT(b, n, "graph 'prefill': node 5: unknown op code 99");
    FRESH();
    wr32(b + n5 + 8, 9999);
    reseal(b);
    REJECT(b, n, "graph 'prefill': node 5 (FULLY_CONNECTED): input 0: tensor index 9999 out of range [0, 16)");
    FRESH();
    wr32(b + n3 + 8, 12); /* LOGISTIC reads y, written later by MUL which reads LOGISTIC's output */
    reseal(b);
    REJECT(b, n, "graph 'prefill': node 3 (LOGISTIC): reads 'y', written by node 4 (MUL): the nodes form a cycle");
    FRESH();
    wr32(b + n0 + 48 + 4, 1); /* GATHER uses one parameter word */
    reseal(b);
    REJECT(b, n, "node 0 (GATHER): a parameter word the op does not use is not 0");
    FRESH();
    wr32(b + n0 + 48, 5);
    reseal(b);
    REJECT(b, n, "graph 'prefill': node 0 (GATHER): axis 5 outside [0, 2)");
    FRESH();
    wr32(b + n0 + 8 + 4 * 3, 0);
    reseal(b);
    REJECT(b, n, "node 0: unused input slot 3 holds 0 (must be -1)");
    FRESH();
    wr32(b + n0 + 44, 1);
    reseal(b);
    REJECT(b, n, "node 0: reserved word is not 0");
    FRESH();
    wr32(b + n0 + 40, 0); /* writes the INPUT tokens */
    reseal(b);
    REJECT(b, n, "node 0 (GATHER): writes INPUT tensor 0 'tokens'");
#undef FRESH
    free(b);
    free(full);
}

/* Every metadata byte changed (checksums resealed so the parsers see it): open must fail with a
 * message or succeed, never crash or read out of bounds. */
static void test_flip_every_byte(void **s) {
    (void)s;
    size_t n;
    uint8_t *full = make_file(&n, NULL, NULL);
    g_n = n;
    uint8_t *b = malloc(n);
    memcpy(b, full, n);
    size_t mo = (size_t)rd64(full + 24), me = mo + (size_t)rd64(full + 32);
    int rejected = 0, opened = 0;
    for (size_t i = mo; i < me; i++)
        for (int k = 0; k < 2; k++) {
            b[i] = k ? (uint8_t)(full[i] ^ 0x80) : (uint8_t)(full[i] + 1);
            reseal(b);
            ei_error_clear();
            ei_eig *e = ei_eig_open_memory(b, n);
            if (e) opened++;
            else {
                rejected++;
                assert_true(strncmp(ei_error_get(), "<memory>: ", 10) == 0);
            }
            ei_eig_close(e);
            b[i] = full[i];
        }
    print_message("# %d corrupted files rejected, %d still valid (scores, names, data values)\n", rejected, opened);
    assert_true(rejected > opened);
    free(b);
    free(full);
}

/* ------------------------------------------------------------------ ei inspect */

static int run(const char *cmd, char *out, size_t cap) {
    FILE *fp = popen(cmd, "r");
    assert_non_null(fp);
    size_t n = fread(out, 1, cap - 1, fp);
    out[n] = '\0';
    int st = pclose(fp);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_inspect(void **s) {
    (void)s;
    const char *bin = getenv("EI_BIN");
    char fallback[512];
    if (!bin) {
        snprintf(fallback, sizeof fallback, "%s/ei", EI_BINARY_DIR);
        bin = fallback;
    }
    if (access(bin, X_OK) != 0) {
        print_message("# %s not built, skipping\n", bin);
        skip();
    }
    ei_graph *p, *d;
    ei_eigw *w = make_writer(&p, &d);
    char path[128], cmd[1024];
    snprintf(path, sizeof path, "%s/inspect.eig", g_dir);
    assert_int_equal(ei_eigw_write(w, path), 0);
    static char out[1 << 16];
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s' --verify 2>&1", bin, path);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    static const char *want[] = {
        "format version 1", "data checksum ok", "dim 64, hidden_dim 172, n_layers 5, n_heads 8, n_kv_heads 4",
        "rope_theta 10000, norm_eps 1e-05", "tokenizer: sentencepiece, 512 pieces", "scenario (SCEN)",
        "tokens_per_call = 4", "plan = w8 q,k,v; w4g32 mlp", "options (OPTS)", "window = 256",
        "graph 'prefill': 16 tensors, 8 nodes", "graph 'decode': 16 tensors, 8 nodes", "tokens", "[4]", "[1,512]",
        "GATHER 1, FULLY_CONNECTED 3, ADD 1, MUL 1, MEAN 1, LOGISTIC 1", "const 6, input 2, output 2, value 6",
        "i8 per-channel", "i4 per-group", "f16", "totals: 2 graphs, 16 nodes", "constants (each stored once)",
        "file size"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(out, want[i])) {
            print_message("missing [%s] in:\n%s\n", want[i], out);
            fail();
        }
    /* shared weights are counted once in the totals: 131072 + 4096 + ... */
    uint64_t unique = 512 * 64 * 4 + 64 * 64 + 64 * 4 + 64 * 4 + 64 * 32 + 64 * 2 * 2;
    char line[64];
    snprintf(line, sizeof line, "%12llu bytes in 6 tensors", (unsigned long long)unique);
    assert_non_null(strstr(strstr(out, "totals:"), line));
    /* errors: a corrupt file names itself; usage */
    char *buf;
    size_t n;
    assert_int_equal(ei_file_read_all(path, &buf, &n), 0);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fwrite(buf, 1, n / 2, fp);
    fclose(fp);
    free(buf);
    assert_int_equal(run(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, "ei inspect: error: "));
    assert_non_null(strstr(out, "inspect.eig: file is"));
    snprintf(cmd, sizeof cmd, "'%s' inspect --help 2>&1", bin);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "ei inspect FILE.eig"));
    snprintf(cmd, sizeof cmd, "'%s' inspect 2>&1", bin);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    ei_eigw_free(w);
    ei_graph_free(p);
    ei_graph_free(d);
}

static int setup(void **s) {
    (void)s;
    strcpy(g_dir, "/tmp/ei_eig_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    g_tok = ei_tokenizer_load(EI_FIXTURES "/models/stories260K/tok512.model", 0);
    return g_tok ? 0 : -1;
}

static int teardown(void **s) {
    (void)s;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) return -1;
    ei_tokenizer_free(g_tok);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_memory), cmocka_unit_test(test_round_trip_file),
        cmocka_unit_test(test_writer_refuses),    cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_bad_header),        cmocka_unit_test(test_bad_sections),
        cmocka_unit_test(test_bad_graphs),        cmocka_unit_test(test_flip_every_byte),
        cmocka_unit_test(test_inspect),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
