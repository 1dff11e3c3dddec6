/* .eig reader (eig.h, docs/eig-format.md). The file is untrusted: every length, count and offset is
 * checked against the bytes that remain before it is used, every allocation is bounded by what the
 * file could hold, and the graphs go through ei_graph_validate, so a corrupt or hostile file gives
 * one clear message and never a crash. Device side: libc only. */
#include "runtime/eig.h"

#include "core/ei_error.h"
#include "core/ei_io.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A new field in ei_model_config must be added to the CONF section (and the format version). */
_Static_assert(sizeof(ei_model_config) == EI_EIG_CONF_FIELDS * 4, "ei_model_config changed: update the .eig CONF section");

#define MAX_PAIRS 4096 /* per key/value section: far above need, keeps the duplicate check cheap */

typedef struct {
    int n;
    char **key, **value;
} kv_section;

struct ei_eig {
    ei_file_map map;
    int mapped;
    const uint8_t *base;
    size_t size;
    const char *what; /* path for messages, valid while opening only */
    uint32_t version;
    ei_model_config cfg;
    kv_section opts, scen;
    int has_vocab;
    ei_tok_vocab vocab;
    ei_tok_vocab_piece *pieces;
    ei_tok_vocab_merge *merges;
    char *identity;
    int n_graphs;
    ei_graph **graphs;
    const uint8_t *data;
    uint64_t data_size, data_checksum;
};

/* ------------------------------------------------------------------ bytes */

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static float rdf32(const uint8_t *p) {
    uint32_t u = rd32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint64_t pad_to(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

/* Cursor over one section payload. */
typedef struct {
    const uint8_t *p;
    uint64_t n, pos;
} cur;

static const uint8_t *take(cur *c, uint64_t k) {
    if (k > c->n - c->pos) return NULL;
    const uint8_t *q = c->p + c->pos;
    c->pos += k;
    return q;
}

/* len bytes followed by zero padding to a multiple of align: NULL when they run past the end or the
 * padding is not zero (*bad_pad set). */
static const uint8_t *take_padded(cur *c, uint64_t len, uint64_t align, int *bad_pad) {
    *bad_pad = 0;
    if (len > c->n - c->pos) return NULL;
    uint64_t total = pad_to(len, align);
    if (total > c->n - c->pos) return NULL;
    const uint8_t *q = take(c, total);
    for (uint64_t i = len; i < total; i++)
        if (q[i]) {
            *bad_pad = 1;
            return NULL;
        }
    return q;
}

static int ferr(const ei_eig *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ferr(const ei_eig *e, const char *fmt, ...) {
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ei_error_set("%s: %s", e->what, msg);
}

typedef struct {
    char s[24];
} tagbuf;

static tagbuf tagstr(uint32_t tag) {
    tagbuf b;
    int printable = 1;
    for (int i = 0; i < 4; i++) {
        unsigned c = (tag >> (8 * i)) & 0xFF;
        if (c < 0x20 || c > 0x7E) printable = 0;
    }
    if (printable)
        snprintf(b.s, sizeof b.s, "%c%c%c%c", (char)(tag & 0xFF), (char)((tag >> 8) & 0xFF), (char)((tag >> 16) & 0xFF),
                 (char)(tag >> 24));
    else snprintf(b.s, sizeof b.s, "0x%08x", (unsigned)tag);
    return b;
}

static char *dup_str(const uint8_t *p, size_t n) {
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* ------------------------------------------------------------------ op parameters */

static uint32_t f32bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bitsf32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void ei_eig_params_encode(ei_gop op, const ei_gparams *p, uint32_t w[EI_EIG_PARAM_WORDS]) {
    memset(w, 0, EI_EIG_PARAM_WORDS * sizeof *w);
    switch (op) {
    case EI_OP_GATHER: w[0] = (uint32_t)p->gather.axis; break;
    case EI_OP_BATCH_MATMUL: w[0] = (uint32_t)p->bmm.adj_x, w[1] = (uint32_t)p->bmm.adj_y; break;
    case EI_OP_MEAN: w[0] = (uint32_t)p->mean.axis, w[1] = (uint32_t)p->mean.keep_dims; break;
    case EI_OP_SOFTMAX: w[0] = f32bits(p->softmax.beta), w[1] = (uint32_t)p->softmax.axis; break;
    case EI_OP_ELU: w[0] = f32bits(p->elu.alpha); break;
    case EI_OP_CONCATENATION: w[0] = (uint32_t)p->concat.axis; break;
    case EI_OP_SLICE:
        for (int i = 0; i < EI_G_MAX_RANK; i++) {
            w[i] = (uint32_t)p->slice.begin[i];
            w[EI_G_MAX_RANK + i] = (uint32_t)p->slice.size[i];
        }
        break;
    case EI_OP_TRANSPOSE:
        for (int i = 0; i < EI_G_MAX_RANK; i++) w[i] = (uint32_t)p->transpose.perm[i];
        break;
    default: break;
    }
}

int ei_eig_params_decode(ei_gop op, const uint32_t w[EI_EIG_PARAM_WORDS], ei_gparams *p) {
    memset(p, 0, sizeof *p);
    int used = 0;
    switch (op) {
    case EI_OP_GATHER: p->gather.axis = (int32_t)w[0], used = 1; break;
    case EI_OP_BATCH_MATMUL: p->bmm.adj_x = (int32_t)w[0], p->bmm.adj_y = (int32_t)w[1], used = 2; break;
    case EI_OP_MEAN: p->mean.axis = (int32_t)w[0], p->mean.keep_dims = (int32_t)w[1], used = 2; break;
    case EI_OP_SOFTMAX: p->softmax.beta = bitsf32(w[0]), p->softmax.axis = (int32_t)w[1], used = 2; break;
    case EI_OP_ELU: p->elu.alpha = bitsf32(w[0]), used = 1; break;
    case EI_OP_CONCATENATION: p->concat.axis = (int32_t)w[0], used = 1; break;
    case EI_OP_SLICE:
        for (int i = 0; i < EI_G_MAX_RANK; i++) {
            p->slice.begin[i] = (int32_t)w[i];
            p->slice.size[i] = (int32_t)w[EI_G_MAX_RANK + i];
        }
        used = 8;
        break;
    case EI_OP_TRANSPOSE:
        for (int i = 0; i < EI_G_MAX_RANK; i++) p->transpose.perm[i] = (int32_t)w[i];
        used = 4;
        break;
    default: break;
    }
    for (int i = used; i < EI_EIG_PARAM_WORDS; i++)
        if (w[i]) return -1;
    return 0;
}

/* ------------------------------------------------------------------ sections */

static int parse_conf(ei_eig *e, const uint8_t *p, uint64_t n) {
    if (n != 4 + 4 * EI_EIG_CONF_FIELDS || rd32(p) != EI_EIG_CONF_FIELDS)
        return ferr(e, "CONF section: %llu bytes with %u fields, expected %d bytes with %d fields",
                    (unsigned long long)n, n >= 4 ? (unsigned)rd32(p) : 0u, 4 + 4 * EI_EIG_CONF_FIELDS, EI_EIG_CONF_FIELDS);
    const uint8_t *f = p + 4;
    int32_t v[EI_EIG_CONF_FIELDS];
    for (int i = 0; i < EI_EIG_CONF_FIELDS; i++) v[i] = (int32_t)rd32(f + 4 * i);
    ei_model_config *c = &e->cfg;
    c->dim = v[0], c->hidden_dim = v[1], c->n_layers = v[2], c->n_heads = v[3], c->n_kv_heads = v[4];
    c->head_dim = v[5], c->vocab_size = v[6], c->max_seq_len = v[7];
    c->rope_theta = rdf32(f + 32), c->norm_eps = rdf32(f + 36);
    c->tie_embeddings = v[10], c->qkv_bias = v[11], c->rope_interleaved = v[12], c->bos_id = v[13], c->eos_id = v[14];
    if (ei_model_config_validate(c, "model config")) return ei_error_prefix("%s: ", e->what);
    if ((unsigned)c->tie_embeddings > 1 || (unsigned)c->qkv_bias > 1 || (unsigned)c->rope_interleaved > 1)
        return ferr(e, "model config: tie_embeddings / qkv_bias / rope_interleaved must be 0 or 1");
    return 0;
}

static int parse_kv(ei_eig *e, kv_section *s, const char *tag, const uint8_t *p, uint64_t n) {
    cur c = {p, n, 0};
    const uint8_t *h = take(&c, 4);
    if (!h) return ferr(e, "%s section: %llu bytes, too short for its pair count", tag, (unsigned long long)n);
    uint32_t count = rd32(h);
    if (count > MAX_PAIRS || count > (n - 4) / 8)
        return ferr(e, "%s section: %u pairs cannot fit in %llu bytes (or exceed %d)", tag, (unsigned)count,
                    (unsigned long long)n, MAX_PAIRS);
    s->key = calloc(count ? count : 1, sizeof *s->key);
    s->value = calloc(count ? count : 1, sizeof *s->value);
    if (!s->key || !s->value) return ferr(e, "out of memory");
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *lens = take(&c, 8);
        if (!lens) return ferr(e, "%s section: pair %u runs past the end of the section", tag, (unsigned)i);
        uint32_t kl = rd32(lens), vl = rd32(lens + 4);
        if (kl < 1 || kl > EI_EIG_MAX_KEY || vl > EI_EIG_MAX_VALUE)
            return ferr(e, "%s section: pair %u: key length %u or value length %u out of range", tag, (unsigned)i,
                        (unsigned)kl, (unsigned)vl);
        int bad;
        const uint8_t *kv = take_padded(&c, (uint64_t)kl + vl, 4, &bad);
        if (!kv)
            return ferr(e, "%s section: pair %u %s", tag, (unsigned)i,
                        bad ? "has non-zero padding" : "runs past the end of the section");
        if (memchr(kv, 0, kl) || memchr(kv, '=', kl) || memchr(kv + kl, 0, vl))
            return ferr(e, "%s section: pair %u: key contains NUL or '=', or value contains NUL", tag, (unsigned)i);
        s->key[i] = dup_str(kv, kl);
        s->value[i] = dup_str(kv + kl, vl);
        s->n = (int)i + 1;
        if (!s->key[i] || !s->value[i]) return ferr(e, "out of memory");
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(s->key[j], s->key[i]) == 0) return ferr(e, "%s section: duplicate key '%s'", tag, s->key[i]);
    }
    if (c.pos != c.n)
        return ferr(e, "%s section: %llu unexpected bytes after the last pair", tag, (unsigned long long)(c.n - c.pos));
    return 0;
}

static int parse_vocab(ei_eig *e, const uint8_t *p, uint64_t n) {
    cur c = {p, n, 0};
    const uint8_t *h = take(&c, 32);
    if (!h) return ferr(e, "VOCB section: %llu bytes, too short for its header", (unsigned long long)n);
    uint32_t np = rd32(h + 20), nm = rd32(h + 24), il = rd32(h + 28);
    uint64_t rest = n - 32;
    /* Each piece needs at least 10 bytes (score, length, type, literal flags), each merge 16: a
     * count beyond that is corrupt and must not drive an allocation. */
    if (il > EI_EIG_MAX_IDENTITY || np < 1 || np > EI_TOKV_MAX_PIECES || nm > EI_TOKV_MAX_MERGES ||
        (uint64_t)np * 10 + (uint64_t)nm * 16 + il > rest)
        return ferr(e, "VOCB section: %u pieces, %u merges, identity of %u bytes cannot fit in %llu bytes", (unsigned)np,
                    (unsigned)nm, (unsigned)il, (unsigned long long)n);
    int bad;
    const uint8_t *ident = take_padded(&c, il, 4, &bad);
    const uint8_t *scores = ident ? take(&c, 4 * (uint64_t)np) : NULL;
    const uint8_t *lens = scores ? take(&c, 4 * (uint64_t)np) : NULL;
    const uint8_t *tl = lens ? take_padded(&c, 2 * (uint64_t)np, 4, &bad) : NULL;
    if (!tl) return ferr(e, "VOCB section: piece tables %s", bad ? "have non-zero padding" : "run past the end");
    if (memchr(ident, 0, il)) return ferr(e, "VOCB section: identity contains a NUL byte");
    uint64_t total = 0;
    for (uint32_t i = 0; i < np; i++) total += rd32(lens + 4 * (uint64_t)i);
    const uint8_t *bytes = take_padded(&c, total, 4, &bad);
    const uint8_t *merges = bytes ? take(&c, 16 * (uint64_t)nm) : NULL;
    if (!merges)
        return ferr(e, "VOCB section: %llu bytes of pieces or the merges %s", (unsigned long long)total,
                    bad ? "have non-zero padding" : "run past the end of the section");
    if (c.pos != c.n) return ferr(e, "VOCB section: %llu unexpected bytes at the end", (unsigned long long)(c.n - c.pos));
    e->pieces = calloc(np, sizeof *e->pieces);
    e->merges = calloc(nm ? nm : 1, sizeof *e->merges);
    e->identity = dup_str(ident, il);
    if (!e->pieces || !e->merges || !e->identity) return ferr(e, "out of memory");
    uint64_t off = 0;
    for (uint32_t i = 0; i < np; i++) {
        ei_tok_vocab_piece *q = &e->pieces[i];
        q->len = rd32(lens + 4 * (uint64_t)i);
        q->bytes = (const char *)bytes + off;
        off += q->len;
        q->score = rdf32(scores + 4 * (uint64_t)i);
        q->type = tl[i];
        q->literal = tl[np + i];
    }
    for (uint32_t i = 0; i < nm; i++) {
        const uint8_t *m = merges + 16 * (uint64_t)i;
        e->merges[i] = (ei_tok_vocab_merge){(int32_t)rd32(m), (int32_t)rd32(m + 4), (int32_t)rd32(m + 8),
                                            (int32_t)rd32(m + 12)};
    }
    ei_tok_vocab *v = &e->vocab;
    v->kind = (int)rd32(h);
    v->flags = rd32(h + 4);
    v->bos = (int32_t)rd32(h + 8);
    v->eos = (int32_t)rd32(h + 12);
    v->unk = (int32_t)rd32(h + 16);
    v->n_pieces = (int32_t)np;
    v->pieces = e->pieces;
    v->n_merges = (int32_t)nm;
    v->merges = e->merges;
    v->identity = e->identity;
    if (ei_tok_vocab_check(v, "vocabulary")) return ei_error_prefix("%s: ", e->what);
    e->has_vocab = 1;
    return 0;
}

static int graph_err(const ei_eig *e, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int graph_err(const ei_eig *e, const char *name, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ferr(e, "graph '%s': %s", name, msg);
}

/* Tensor records, node records and the tensor names of one GRPH section into g. */
static int parse_graph_body(ei_eig *e, ei_graph *g, cur *c, uint32_t nt, uint32_t nn) {
    const char *gn = g->name;
    const uint8_t *tr = take(c, (uint64_t)nt * EI_EIG_TENSOR_RECORD);
    const uint8_t *nr = tr ? take(c, (uint64_t)nn * EI_EIG_NODE_RECORD) : NULL;
    if (!nr) return graph_err(e, gn, "tensor and node records run past the end of the section");
    uint64_t names = 0;
    for (uint32_t i = 0; i < nt; i++) {
        uint32_t l = rd32(tr + (uint64_t)i * EI_EIG_TENSOR_RECORD);
        if (l < 1 || l > EI_EIG_MAX_TENSOR_NAME)
            return graph_err(e, gn, "tensor %u: name length %u outside [1, %d]", (unsigned)i, (unsigned)l,
                             EI_EIG_MAX_TENSOR_NAME);
        names += l;
    }
    int bad;
    const uint8_t *nb = take_padded(c, names, 8, &bad);
    if (!nb) return graph_err(e, gn, "tensor names %s", bad ? "have non-zero padding" : "run past the end of the section");
    if (c->pos != c->n)
        return graph_err(e, gn, "%llu unexpected bytes at the end of the section", (unsigned long long)(c->n - c->pos));
    g->tensors = calloc(nt ? nt : 1, sizeof *g->tensors);
    g->nodes = calloc(nn ? nn : 1, sizeof *g->nodes);
    if (!g->tensors || !g->nodes) return ferr(e, "out of memory");
    g->cap_tensors = (int32_t)(nt ? nt : 1);
    g->cap_nodes = (int32_t)(nn ? nn : 1);
    uint64_t noff = 0;
    for (uint32_t i = 0; i < nt; i++) {
        const uint8_t *r = tr + (uint64_t)i * EI_EIG_TENSOR_RECORD;
        ei_gtensor *t = &g->tensors[i];
        uint32_t l = rd32(r);
        if (memchr(nb + noff, 0, l)) return graph_err(e, gn, "tensor %u: name contains a NUL byte", (unsigned)i);
        t->name = dup_str(nb + noff, l);
        g->n_tensors = (int32_t)i + 1;
        if (!t->name) return ferr(e, "out of memory");
        noff += l;
        t->type = (ei_gtype)rd32(r + 4);
        t->kind = (ei_gkind)rd32(r + 8);
        t->rank = (int32_t)rd32(r + 12);
        for (int d = 0; d < EI_G_MAX_RANK; d++) t->shape[d] = (int32_t)rd32(r + 16 + 4 * d);
        t->q.kind = (ei_gquant_kind)rd32(r + 32);
        t->q.scale = rdf32(r + 36);
        t->q.zero_point = (int32_t)rd32(r + 40);
        t->q.axis = (int32_t)rd32(r + 44);
        t->q.group = (int32_t)rd32(r + 48);
        t->q.scales = (int32_t)rd32(r + 52);
        t->offset = rd64(r + 56);
        t->size = rd64(r + 64);
        if (t->kind != EI_GK_CONST && (t->offset || t->size))
            return graph_err(e, gn, "tensor %u '%s': a %s tensor with data offset %llu size %llu (must be 0)",
                             (unsigned)i, t->name, ei_gkind_name(t->kind), (unsigned long long)t->offset,
                             (unsigned long long)t->size);
        const char *unused = NULL;
        switch (t->q.kind) { /* fields the scheme does not use are canonical (eig-format.md) */
        case EI_GQ_NONE:
            if (t->q.scale != 0.0f || t->q.zero_point || t->q.axis || t->q.group || t->q.scales != -1) unused = "none";
            break;
        case EI_GQ_TENSOR:
            if (t->q.axis || t->q.group || t->q.scales != -1) unused = "tensor";
            break;
        case EI_GQ_CHANNEL:
            if (t->q.scale != 0.0f || t->q.group) unused = "channel";
            break;
        case EI_GQ_GROUP:
            if (t->q.scale != 0.0f) unused = "group";
            break;
        default: break; /* ei_graph_validate names the unknown scheme */
        }
        if (unused)
            return graph_err(e, gn, "tensor %u '%s': a quantisation field that scheme '%s' does not use is not in its "
                                    "canonical state (0, scales -1)",
                             (unsigned)i, t->name, unused);
        for (int32_t d = t->rank; d >= 0 && d < EI_G_MAX_RANK; d++)
            if (t->shape[d] != 1)
                return graph_err(e, gn, "tensor %u '%s': shape entry %d beyond rank %d is %d (must be 1)", (unsigned)i,
                                 t->name, (int)d, (int)t->rank, (int)t->shape[d]);
    }
    for (uint32_t i = 0; i < nn; i++) {
        const uint8_t *r = nr + (uint64_t)i * EI_EIG_NODE_RECORD;
        ei_gnode *n = &g->nodes[i];
        n->op = (ei_gop)rd32(r);
        n->n_in = (int32_t)rd32(r + 4);
        for (int k = 0; k < EI_G_MAX_IN; k++) {
            n->in[k] = (int32_t)rd32(r + 8 + 4 * k);
            if (n->n_in >= 0 && k >= n->n_in && n->in[k] != -1)
                return graph_err(e, gn, "node %u: unused input slot %d holds %d (must be -1)", (unsigned)i, k,
                                 (int)n->in[k]);
        }
        n->out = (int32_t)rd32(r + 40);
        uint32_t w[EI_EIG_PARAM_WORDS];
        for (int k = 0; k < EI_EIG_PARAM_WORDS; k++) w[k] = rd32(r + 48 + 4 * k);
        g->n_nodes = (int32_t)i + 1;
        if (rd32(r + 44)) return graph_err(e, gn, "node %u: reserved word is not 0", (unsigned)i);
        if (ei_eig_params_decode(n->op, w, &n->p))
            return graph_err(e, gn, "node %u (%s): a parameter word the op does not use is not 0", (unsigned)i,
                             ei_gop_name(n->op));
    }
    if (ei_graph_validate(g, e->data_size)) return ei_error_prefix("%s: ", e->what);
    return 0;
}

static int parse_graph(ei_eig *e, const uint8_t *p, uint64_t n) {
    cur c = {p, n, 0};
    const uint8_t *h = take(&c, 16);
    if (!h) return ferr(e, "graph section %d: too short for its header", e->n_graphs);
    uint32_t nl = rd32(h), nt = rd32(h + 4), nn = rd32(h + 8);
    if (rd32(h + 12)) return ferr(e, "graph section %d: reserved word is not 0", e->n_graphs);
    if (nl < 1 || nl > EI_EIG_MAX_GRAPH_NAME)
        return ferr(e, "graph section %d: name length %u outside [1, %d]", e->n_graphs, (unsigned)nl,
                    EI_EIG_MAX_GRAPH_NAME);
    if (nt > INT32_MAX || nn > INT32_MAX ||
        (uint64_t)nt * (EI_EIG_TENSOR_RECORD + 1) + (uint64_t)nn * EI_EIG_NODE_RECORD > n - 16)
        return ferr(e, "graph section %d: %u tensors and %u nodes cannot fit in %llu bytes", e->n_graphs, (unsigned)nt,
                    (unsigned)nn, (unsigned long long)n);
    int bad;
    const uint8_t *name = take_padded(&c, nl, 8, &bad);
    if (!name) return ferr(e, "graph section %d: name %s", e->n_graphs, bad ? "has non-zero padding" : "runs past the end");
    if (memchr(name, 0, nl)) return ferr(e, "graph section %d: name contains a NUL byte", e->n_graphs);
    char *nm = dup_str(name, nl);
    if (!nm) return ferr(e, "out of memory");
    for (int i = 0; i < e->n_graphs; i++)
        if (strcmp(e->graphs[i]->name, nm) == 0) {
            ferr(e, "two graphs are named '%s'", nm);
            free(nm);
            return -1;
        }
    ei_graph *g = ei_graph_new(nm);
    free(nm);
    ei_graph **gs = g ? realloc(e->graphs, (size_t)(e->n_graphs + 1) * sizeof *gs) : NULL;
    if (!gs) {
        ei_graph_free(g);
        return ferr(e, "out of memory");
    }
    e->graphs = gs;
    e->graphs[e->n_graphs++] = g;
    return parse_graph_body(e, g, &c, nt, nn);
}

/* ------------------------------------------------------------------ whole file */

typedef struct {
    uint64_t off, size;
    int32_t graph, tensor;
} const_range;

static int range_cmp(const void *a, const void *b) {
    const const_range *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return x->size < y->size ? -1 : x->size > y->size;
}

/* Constants are 64-byte aligned and either identical (one copy shared by several tensors or graphs)
 * or disjoint: a partial overlap is a writer bug or corruption. */
static int check_constants(ei_eig *e) {
    size_t n = 0;
    for (int i = 0; i < e->n_graphs; i++)
        for (int32_t k = 0; k < e->graphs[i]->n_tensors; k++) n += e->graphs[i]->tensors[k].kind == EI_GK_CONST;
    const_range *r = malloc((n ? n : 1) * sizeof *r);
    if (!r) return ferr(e, "out of memory");
    n = 0;
    for (int i = 0; i < e->n_graphs; i++)
        for (int32_t k = 0; k < e->graphs[i]->n_tensors; k++) {
            const ei_gtensor *t = &e->graphs[i]->tensors[k];
            if (t->kind != EI_GK_CONST) continue;
            if (t->offset % EI_EIG_ALIGN) {
                free(r);
                return graph_err(e, e->graphs[i]->name, "tensor %d '%s': data offset %llu is not a multiple of %d",
                                 (int)k, t->name, (unsigned long long)t->offset, EI_EIG_ALIGN);
            }
            r[n++] = (const_range){t->offset, t->size, i, k};
        }
    if (n) qsort(r, n, sizeof *r, range_cmp);
    int rc = 0;
    for (size_t i = 1; i < n && !rc; i++) {
        const const_range *a = &r[i - 1], *b = &r[i];
        if ((a->off == b->off && a->size == b->size) || a->off + a->size <= b->off) continue;
        const ei_graph *ga = e->graphs[a->graph], *gb = e->graphs[b->graph];
        rc = ferr(e, "constant data overlaps: graph '%s' tensor '%s' [%llu, +%llu) and graph '%s' tensor '%s' [%llu, +%llu)",
                  ga->name, ga->tensors[a->tensor].name, (unsigned long long)a->off, (unsigned long long)a->size,
                  gb->name, gb->tensors[b->tensor].name, (unsigned long long)b->off, (unsigned long long)b->size);
    }
    free(r);
    return rc;
}

static int parse_sections(ei_eig *e, uint64_t mo, uint64_t ms, uint32_t n_sections) {
    cur c = {e->base + mo, ms, 0};
    uint32_t count = 0;
    int have_conf = 0, have_opts = 0, have_scen = 0, have_vocb = 0;
    while (c.pos < c.n) {
        uint64_t at = c.pos;
        const uint8_t *h = take(&c, EI_EIG_SECTION_HEAD);
        if (!h)
            return ferr(e, "section %u at metadata byte %llu: header runs past the end of the metadata block",
                        (unsigned)count, (unsigned long long)at);
        uint32_t tag = rd32(h), flags = rd32(h + 4);
        uint64_t size = rd64(h + 8);
        tagbuf tb = tagstr(tag);
        const char *tname = tb.s;
        if (flags & ~EI_EIG_SEC_OPTIONAL) return ferr(e, "section %u ('%s'): unknown flags 0x%x", (unsigned)count, tname, (unsigned)flags);
        int bad;
        const uint8_t *p = take_padded(&c, size, 8, &bad);
        if (!p)
            return ferr(e, "section %u ('%s') at metadata byte %llu, %llu bytes, %s", (unsigned)count, tname,
                        (unsigned long long)at, (unsigned long long)size,
                        bad ? "has non-zero padding" : "runs past the end of the metadata block");
        int rc = 0;
        if (tag == EI_EIG_TAG_CONF) rc = have_conf++ ? ferr(e, "two CONF sections") : parse_conf(e, p, size);
        else if (tag == EI_EIG_TAG_OPTS) rc = have_opts++ ? ferr(e, "two OPTS sections") : parse_kv(e, &e->opts, "OPTS", p, size);
        else if (tag == EI_EIG_TAG_SCEN) rc = have_scen++ ? ferr(e, "two SCEN sections") : parse_kv(e, &e->scen, "SCEN", p, size);
        else if (tag == EI_EIG_TAG_VOCB) rc = have_vocb++ ? ferr(e, "two VOCB sections") : parse_vocab(e, p, size);
        else if (tag == EI_EIG_TAG_GRPH) rc = parse_graph(e, p, size);
        else if (!(flags & EI_EIG_SEC_OPTIONAL))
            rc = ferr(e, "unknown section '%s' (written by a newer version?)", tname);
        if (rc) return -1;
        count++;
    }
    if (count != n_sections)
        return ferr(e, "the header says %u sections, the metadata block holds %u", (unsigned)n_sections, (unsigned)count);
    if (!have_conf) return ferr(e, "no model config (CONF section)");
    if (!e->n_graphs) return ferr(e, "no graphs");
    return check_constants(e);
}

static int overlaps(uint64_t a, uint64_t an, uint64_t b, uint64_t bn) { return an && bn && a < b + bn && b < a + an; }

static int parse_file(ei_eig *e) {
    const uint8_t *b = e->base;
    size_t n = e->size;
    static const char magic[8] = {'E', 'I', 'G', 'R', 'A', 'P', 'H', '\0'};
    if (n >= 8 && memcmp(b, magic, 8) != 0) return ferr(e, "not an .eig file (bad magic)");
    if (n < EI_EIG_HEADER_SIZE)
        return ferr(e, "truncated: %zu bytes, the header alone needs %d", n, EI_EIG_HEADER_SIZE);
    e->version = rd32(b + 8);
    if (e->version != EI_EIG_VERSION)
        return ferr(e, "format version %u, this build reads version %d", (unsigned)e->version, EI_EIG_VERSION);
    if (rd32(b + 12) != EI_EIG_HEADER_SIZE)
        return ferr(e, "header size %u, expected %d", (unsigned)rd32(b + 12), EI_EIG_HEADER_SIZE);
    if (rd64(b + 120) != ei_hash_fnv1a(b, 120, 0)) return ferr(e, "header checksum mismatch (the file is corrupt)");
    uint64_t fsize = rd64(b + 16), mo = rd64(b + 24), ms = rd64(b + 32), dof = rd64(b + 40), ds = rd64(b + 48);
    if (fsize != (uint64_t)n)
        return ferr(e, "file is %zu bytes but its header says %llu (truncated or padded)", n, (unsigned long long)fsize);
    if (rd32(b + 72)) return ferr(e, "unknown header flags 0x%x", (unsigned)rd32(b + 72));
    for (int i = 80; i < 120; i++)
        if (b[i]) return ferr(e, "reserved header byte %d is not 0", i);
    if (mo > n || ms > n - mo)
        return ferr(e, "metadata block [%llu, +%llu) runs past the end of the file (%zu bytes)", (unsigned long long)mo,
                    (unsigned long long)ms, n);
    if (dof > n || ds > n - dof)
        return ferr(e, "data block [%llu, +%llu) runs past the end of the file (%zu bytes)", (unsigned long long)dof,
                    (unsigned long long)ds, n);
    if (mo % 8 || ms % 8) return ferr(e, "metadata block offset %llu or size %llu is not a multiple of 8",
                                      (unsigned long long)mo, (unsigned long long)ms);
    if (dof % EI_EIG_ALIGN)
        return ferr(e, "data block offset %llu is not a multiple of %d", (unsigned long long)dof, EI_EIG_ALIGN);
    if (mo < EI_EIG_HEADER_SIZE || dof < EI_EIG_HEADER_SIZE)
        return ferr(e, "metadata block at %llu or data block at %llu overlaps the header", (unsigned long long)mo,
                    (unsigned long long)dof);
    if (overlaps(mo, ms, dof, ds))
        return ferr(e, "data block [%llu, +%llu) overlaps the metadata block [%llu, +%llu)", (unsigned long long)dof,
                    (unsigned long long)ds, (unsigned long long)mo, (unsigned long long)ms);
    uint32_t n_sections = rd32(b + 76);
    if (n_sections > ms / EI_EIG_SECTION_HEAD)
        return ferr(e, "%u sections cannot fit in a metadata block of %llu bytes", (unsigned)n_sections,
                    (unsigned long long)ms);
    if (rd64(b + 56) != ei_hash_fnv1a(b + mo, (size_t)ms, 0)) return ferr(e, "metadata checksum mismatch (the file is corrupt)");
    e->data = b + dof;
    e->data_size = ds;
    e->data_checksum = rd64(b + 64);
    return parse_sections(e, mo, ms, n_sections);
}

static ei_eig *open_common(ei_eig *e, const char *what) {
    e->what = what;
    if (parse_file(e)) {
        ei_eig_close(e);
        return NULL;
    }
    e->what = NULL;
    return e;
}

ei_eig *ei_eig_open(const char *path) {
    ei_eig *e = calloc(1, sizeof *e);
    if (!e) {
        ei_error_set("%s: out of memory", path);
        return NULL;
    }
    if (ei_file_map_open(&e->map, path)) {
        free(e);
        return NULL;
    }
    e->mapped = 1;
    e->base = e->map.data;
    e->size = e->map.size;
    return open_common(e, path);
}

ei_eig *ei_eig_open_memory(const void *buf, size_t n) {
    ei_eig *e = calloc(1, sizeof *e);
    if (!e) {
        ei_error_set("<memory>: out of memory");
        return NULL;
    }
    e->base = buf;
    e->size = buf ? n : 0;
    return open_common(e, "<memory>");
}

static void kv_free(kv_section *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->key[i]);
        free(s->value[i]);
    }
    free(s->key);
    free(s->value);
}

void ei_eig_close(ei_eig *e) {
    if (!e) return;
    for (int i = 0; i < e->n_graphs; i++) ei_graph_free(e->graphs[i]);
    free(e->graphs);
    kv_free(&e->opts);
    kv_free(&e->scen);
    free(e->pieces);
    free(e->merges);
    free(e->identity);
    if (e->mapped) ei_file_map_close(&e->map);
    free(e);
}

/* ------------------------------------------------------------------ accessors */

uint32_t ei_eig_version(const ei_eig *e) { return e->version; }
uint64_t ei_eig_file_size(const ei_eig *e) { return (uint64_t)e->size; }
const ei_model_config *ei_eig_config(const ei_eig *e) { return &e->cfg; }

static const kv_section *kv_of(const ei_eig *e, const char *section) {
    if (!section) return NULL;
    if (strcmp(section, "OPTS") == 0) return &e->opts;
    if (strcmp(section, "SCEN") == 0) return &e->scen;
    return NULL;
}

int ei_eig_kv_count(const ei_eig *e, const char *section) {
    const kv_section *s = kv_of(e, section);
    return s ? s->n : 0;
}

int ei_eig_kv_at(const ei_eig *e, const char *section, int i, const char **key, const char **value) {
    const kv_section *s = kv_of(e, section);
    if (!s || i < 0 || i >= s->n) return -1;
    if (key) *key = s->key[i];
    if (value) *value = s->value[i];
    return 0;
}

const char *ei_eig_kv_get(const ei_eig *e, const char *section, const char *key) {
    const kv_section *s = kv_of(e, section);
    for (int i = 0; s && key && i < s->n; i++)
        if (strcmp(s->key[i], key) == 0) return s->value[i];
    return NULL;
}

int ei_eig_opts(const ei_eig *e, ei_opts *o) {
    ei_opts_default(o);
    for (int i = 0; i < e->opts.n; i++)
        if (ei_opts_set(o, e->opts.key[i], e->opts.value[i])) return ei_error_prefix("OPTS: ");
    return ei_opts_validate(o, &e->cfg) ? ei_error_prefix("OPTS: ") : 0;
}

const ei_tok_vocab *ei_eig_vocab(const ei_eig *e) { return e->has_vocab ? &e->vocab : NULL; }

ei_tokenizer *ei_eig_tokenizer(const ei_eig *e) {
    if (!e->has_vocab) {
        ei_error_set(".eig: the file has no tokenizer vocabulary");
        return NULL;
    }
    return ei_tokenizer_from_vocab(&e->vocab);
}

int ei_eig_n_graphs(const ei_eig *e) { return e->n_graphs; }

const ei_graph *ei_eig_graph(const ei_eig *e, int i) { return i >= 0 && i < e->n_graphs ? e->graphs[i] : NULL; }

const ei_graph *ei_eig_graph_by_name(const ei_eig *e, const char *name) {
    for (int i = 0; name && i < e->n_graphs; i++)
        if (strcmp(e->graphs[i]->name, name) == 0) return e->graphs[i];
    return NULL;
}

const uint8_t *ei_eig_data(const ei_eig *e, uint64_t *size) {
    if (size) *size = e->data_size;
    return e->data;
}

int ei_eig_verify_data(const ei_eig *e) {
    if (ei_hash_fnv1a(e->data, (size_t)e->data_size, 0) != e->data_checksum)
        return ei_error_set(".eig: data block checksum mismatch (the constant data is corrupt)");
    return 0;
}

uint64_t ei_eig_data_offset(const ei_eig *e) { return e->data ? (uint64_t)(e->data - e->base) : 0; }

uint64_t ei_eig_data_checksum(const ei_eig *e) { return e->data_checksum; }
