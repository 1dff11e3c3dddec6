#include "deploy/ir_emit.h"

#include "core/ei_error.h"
#include "core/ei_half.h"
#include "deploy/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ei_ir_const {
    char key[96];
    uint64_t offset, size;
};

#define E(em) ((ei_ir_emitter *)(void *)(em))
#define IDX(v) ei_ir_index(v)
#define VAL(i) ei_ir_val(i)

static int record(ei_ir_emitter *e, const char *msg) {
    ei_error_set("%s", msg);
    if (!e->failed) {
        e->failed = 1;
        snprintf(e->first_error, sizeof e->first_error, "%s", msg);
    }
    return -1;
}

static int fail_op(ei_emitter *em, const char *msg) { return record(E(em), msg); }

/* The tensor of a handle. The pointer is only valid until the next tensor is added (node() may
 * grow the array): read what is needed before emitting. */
static const ei_gtensor *T(ei_ir_emitter *e, ei_val *v) { return &e->g->tensors[IDX(v)]; }

/* A new VALUE tensor written by one node. */
static ei_val *node(ei_ir_emitter *e, ei_gop op, int nin, const int32_t *in, ei_gtype type, int rank,
                    const int32_t *shape, const ei_gparams *p) {
    char name[32];
    snprintf(name, sizeof name, "v%d", e->counter++);
    int32_t t = ei_graph_add_tensor(e->g, name, type, EI_GK_VALUE, rank, shape);
    if (t < 0 || ei_graph_add_node(e->g, op, nin, in, t, p) < 0) {
        record(e, ei_error_get());
        return NULL;
    }
    return VAL(t);
}

static ei_val *unary_node(ei_ir_emitter *e, ei_gop op, ei_val *x, const ei_gparams *p) {
    if (!x) return NULL;
    const ei_gtensor *t = T(e, x);
    int32_t in = IDX(x), shape[4];
    memcpy(shape, t->shape, sizeof shape);
    return node(e, op, 1, &in, t->type, t->rank, shape, p);
}

/* ------------------------------------------------------------------ constants */

/* The shared offset of constant `key` (added to the writer on first use). */
static int const_offset(ei_ir_emitter *e, const char *key, const void *data, uint64_t size, uint64_t *off) {
    for (int i = 0; i < e->n_consts; i++)
        if (strcmp(e->consts[i].key, key) == 0 && e->consts[i].size == size) {
            *off = e->consts[i].offset;
            return 0;
        }
    if (e->n_consts == e->cap_consts) {
        int nc = e->cap_consts ? 2 * e->cap_consts : 256;
        ei_ir_const *p = realloc(e->consts, (size_t)nc * sizeof *p);
        if (!p) return record(e, "lowering: out of memory");
        e->consts = p;
        e->cap_consts = nc;
    }
    if (ei_eigw_add_data(e->w, data, size, off) != 0) return record(e, ei_error_get());
    ei_ir_const *c = &e->consts[e->n_consts++];
    snprintf(c->key, sizeof c->key, "%s", key);
    c->offset = *off;
    c->size = size;
    return 0;
}

/* A CONST tensor of this graph named name over the shared data of key (made once per graph; two
 * tensors may view the same data with other quantisation parameters). */
static ei_val *const_view(ei_ir_emitter *e, const char *key, const char *name, ei_gtype type, int rank,
                          const int32_t *shape, const void *data, uint64_t size) {
    int32_t t = ei_graph_find(e->g, name);
    if (t >= 0) return VAL(t);
    uint64_t off;
    if (const_offset(e, key, data, size, &off) != 0) return NULL;
    if ((t = ei_graph_add_tensor(e->g, name, type, EI_GK_CONST, rank, shape)) < 0) {
        record(e, ei_error_get());
        return NULL;
    }
    e->g->tensors[t].offset = off;
    e->g->tensors[t].size = size;
    return VAL(t);
}

static ei_val *const_tensor(ei_ir_emitter *e, const char *key, ei_gtype type, int rank, const int32_t *shape,
                            const void *data, uint64_t size) {
    return const_view(e, key, key, type, rank, shape, data, size);
}

ei_val *ei_ir_const_f32(ei_ir_emitter *e, const char *key, const float *data, int rank, const int32_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= shape[i];
    return const_tensor(e, key, EI_GT_F32, rank, shape, data, (uint64_t)n * 4);
}

static ei_val *scalar(ei_ir_emitter *e, float v) {
    char key[48];
    uint32_t bits;
    memcpy(&bits, &v, 4);
    snprintf(key, sizeof key, "c.%08x", bits);
    return ei_ir_const_f32(e, key, &v, 1, (const int32_t[]){1});
}

/* ------------------------------------------------------------------ leaves */

static int leaf_slot(const ei_ir_emitter *e, ei_tclass c, int layer) {
    const int nl = e->m->cfg.n_layers;
    return (int)c * (nl + 1) + (ei_tclass_per_layer(c) ? layer : nl);
}

/* A quantised weight: the data tensor (quant parameters pointing at its scales tensor) over
 * shared constants. as_table: the gather form of a w8 embedding (per-tensor scale 1: the integers
 * themselves; the per-row scales are applied after the gather). */
static ei_val *quant_tensor(ei_ir_emitter *e, const char *key, const ei_qtensor *q, ei_qscheme s, int as_table,
                            int32_t *scales_out) {
    const ei_qscheme_info qi = ei_qscheme_describe(s);
    const int32_t sh[2] = {(int32_t)q->rows, (int32_t)q->cols};
    char sk[112], dk[112];
    snprintf(sk, sizeof sk, "%s.scales", key);
    snprintf(dk, sizeof dk, "%s%s", key, as_table ? ".table" : "");
    int32_t ss[2] = {(int32_t)q->rows, qi.kind == EI_GQ_GROUP ? (int32_t)(q->cols / qi.group) : 1};
    ei_val *sc = const_tensor(e, sk, qi.scale_type, qi.kind == EI_GQ_GROUP ? 2 : 1, ss, q->scales, q->scale_bytes);
    if (!sc) return NULL;
    int32_t t = ei_graph_find(e->g, dk);
    if (t < 0) {
        ei_val *d = const_view(e, key, dk, qi.type, 2, sh, q->data, q->data_bytes);
        if (!d) return NULL;
        t = IDX(d);
        e->g->tensors[t].q = as_table ? (ei_gquant){EI_GQ_TENSOR, 1.0f, 0, 0, 0, -1} : ei_qscheme_gquant(s, IDX(sc));
    }
    if (scales_out) *scales_out = IDX(sc);
    return VAL(t);
}

/* The scheme the plan gives class c of layer l, as stored (a gathered embedding holds no I4). */
static ei_qscheme stored_scheme(const ei_ir_emitter *e, ei_tclass c, int l, int64_t cols) {
    const ei_qscheme s = e->weight_scheme ? e->weight_scheme(e->weight_scheme_ctx, c, l, cols) : EI_QW_F32;
    return c == EI_TC_EMBEDDING ? ei_qscheme_gathered(s) : s;
}

static ei_val *weight(ei_emitter *em, ei_tclass c, int l) {
    ei_ir_emitter *e = E(em);
    if (ei_tclass_per_layer(c) && (l < 0 || l >= e->m->cfg.n_layers)) return NULL;
    int s = leaf_slot(e, c, l);
    if (e->leaf[s] >= 0) return VAL(e->leaf[s]);
    int64_t shape[2];
    int nd = ei_tclass_shape(&e->m->cfg, em->gate, c, shape);
    const int tied = !nd && c == EI_TC_CLASSIFIER && e->m->cfg.tie_embeddings;
    if (tied) nd = ei_tclass_shape(&e->m->cfg, em->gate, EI_TC_EMBEDDING, shape);
    if (!nd) return NULL; /* absent (biases of a model without them, head-gate weights) */
    const ei_tclass src_cls = tied ? EI_TC_EMBEDDING : c;
    const int is_gate = c == EI_TC_MEMORY_GATE || c == EI_TC_MEMORY_GATE_BIAS;
    const float *src;
    if (is_gate) {
        if (!e->gates) {
            record(e, "lowering: the memory gate needs gate parameters");
            return NULL;
        }
        src = e->gates->data + (c == EI_TC_MEMORY_GATE ? ei_gates_w_offset(e->gates, l) : ei_gates_b_offset(e->gates, l));
    } else {
        src = ei_model_weight(e->m, src_cls, l);
    }
    if (!src) return NULL;
    const int64_t rows = shape[0], cols = nd == 2 ? shape[1] : 1, numel = rows * cols;
    /* the memory path and the gate stay float32 (DESIGN 6.1); norms and biases too: they are tiny */
    /* A tied classifier takes the classifier's scheme (its rule, else the default): it is the
     * largest product of a decode step, and the gathered embedding table can hold no I4. Equal
     * schemes give one constant (the key below: the embedding's); different ones a second copy of
     * the table named as the classifier, e.g. w4g32 weights: the embedding in w8, the classifier in
     * w4g32 (100M benchmark model: +13.8 MB of file, decode 159 -> 191 tokens/s in 4 alternating
     * runs, docs/benchmarks.md). */
    const ei_qscheme sch = !is_gate && nd == 2 ? stored_scheme(e, c, l, cols) : EI_QW_F32;
    const char *kname = ei_tclass_name(src_cls);
    if (tied && stored_scheme(e, EI_TC_EMBEDDING, l, cols) != sch) kname = ei_tclass_name(EI_TC_CLASSIFIER);
    char key[64];
    snprintf(key, sizeof key, "w.%s.%d.%s", kname, l, ei_qscheme_name(sch));
    const int32_t sh[2] = {(int32_t)rows, (int32_t)cols};
    ei_val *v = NULL;
    if (sch == EI_QW_F32) {
        for (int64_t i = 0; i < numel; i++)
            if (!isfinite(src[i])) {
                char msg[160];
                snprintf(msg, sizeof msg, "lowering: tensor %s of layer %d holds a non-finite value at %lld",
                         ei_tclass_name(c), l, (long long)i);
                record(e, msg);
                return NULL;
            }
        v = const_tensor(e, key, EI_GT_F32, nd, sh, src, (uint64_t)numel * 4);
    } else {
        /* quantise once per file (the constant cache keeps it); graphs after the first find it */
        int32_t have = -1;
        for (int i = 0; i < e->n_consts; i++)
            if (strcmp(e->consts[i].key, key) == 0) have = i;
        ei_qtensor q = {0};
        char name[64];
        snprintf(name, sizeof name, "%s (layer %d)", kname, l);
        if (have < 0 || sch == EI_QW_F16) {
            if (ei_qtensor_quantize(&q, name, src, rows, cols, sch, &e->qopts) != 0) {
                record(e, ei_error_get());
                return NULL;
            }
            if (have < 0) {
                e->q_sse += q.stats.sse;
                e->q_sum_sq += q.stats.sum_sq;
            }
        } else {
            /* sizes only: const_tensor finds the data by key */
            q.scheme = sch, q.rows = rows, q.cols = cols;
            ei_qscheme_bytes(sch, rows, cols, &q.data_bytes, &q.scale_bytes);
        }
        if (sch == EI_QW_F16) {
            v = const_tensor(e, key, EI_GT_F16, nd, sh, q.data, q.data_bytes);
        } else {
            const int table = c == EI_TC_EMBEDDING;
            int32_t scales = -1;
            v = quant_tensor(e, key, &q, sch, table, &scales);
            if (v && table) e->emb_scales = scales;
        }
        ei_qtensor_free(&q);
    }
    if (v) e->leaf[s] = IDX(v);
    return v;
}

/* ------------------------------------------------------------------ ops */

static ei_val *reshape(ei_emitter *em, ei_val *x, int nd, const int64_t *s) {
    ei_ir_emitter *e = E(em);
    if (!x) return NULL;
    int32_t shape[4];
    int64_t n = 1, known = 1, infer = -1;
    for (int i = 0; i < nd; i++) {
        if (s[i] < 0) infer = i;
        else known *= s[i];
    }
    const ei_gtensor *t = T(e, x);
    n = ei_gtensor_numel(t);
    for (int i = 0; i < nd; i++) shape[i] = (int32_t)(i == infer ? (known ? n / known : 0) : s[i]);
    int32_t in = IDX(x);
    return node(e, EI_OP_RESHAPE, 1, &in, t->type, nd, shape, NULL);
}

static ei_val *reshape32(ei_ir_emitter *e, ei_val *x, int nd, const int32_t *s) {
    int64_t s64[4];
    for (int i = 0; i < nd; i++) s64[i] = s[i];
    return reshape(&e->base, x, nd, s64);
}

static ei_val *transpose_perm(ei_ir_emitter *e, ei_val *x, const int32_t *perm) {
    if (!x) return NULL;
    const ei_gtensor *t = T(e, x);
    ei_gparams p = {0};
    int32_t shape[4], in = IDX(x);
    for (int i = 0; i < t->rank; i++) {
        p.transpose.perm[i] = perm[i];
        shape[i] = t->shape[perm[i]];
    }
    return node(e, EI_OP_TRANSPOSE, 1, &in, t->type, t->rank, shape, &p);
}

static ei_val *transpose(ei_emitter *em, ei_val *x, int a0, int a1) {
    ei_ir_emitter *e = E(em);
    if (!x) return NULL;
    int32_t perm[4] = {0, 1, 2, 3};
    const int r = T(e, x)->rank;
    a0 = a0 < 0 ? a0 + r : a0;
    a1 = a1 < 0 ? a1 + r : a1;
    perm[a0] = a1;
    perm[a1] = a0;
    return transpose_perm(e, x, perm);
}

static ei_val *binary_op(ei_ir_emitter *e, ei_gop op, ei_val *a, ei_val *b) {
    if (!a || !b) return NULL;
    const ei_gtensor *ta = T(e, a), *tb = T(e, b);
    const int r = ta->rank > tb->rank ? ta->rank : tb->rank;
    int32_t shape[4];
    for (int i = 0; i < r; i++) {
        int ia = i - (r - ta->rank), ib = i - (r - tb->rank);
        int32_t da = ia >= 0 ? ta->shape[ia] : 1, db = ib >= 0 ? tb->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char msg[128];
            snprintf(msg, sizeof msg, "lowering: %s: shapes do not broadcast", ei_gop_name(op));
            record(e, msg);
            return NULL;
        }
        shape[i] = da == 1 ? db : da;
    }
    int32_t in[2] = {IDX(a), IDX(b)};
    return node(e, op, 2, in, ta->type, r, shape, NULL);
}

static ei_val *binary(ei_emitter *em, ei_binop op, ei_val *a, ei_val *b) {
    static const ei_gop ops[] = {EI_OP_ADD, EI_OP_SUB, EI_OP_MUL, EI_OP_DIV};
    return binary_op(E(em), ops[op], a, b);
}

static ei_val *add_scalar(ei_emitter *em, ei_val *a, double c) {
    return binary_op(E(em), EI_OP_ADD, a, scalar(E(em), (float)c));
}

static ei_val *unary(ei_emitter *em, ei_unop op, ei_val *x) {
    ei_ir_emitter *e = E(em);
    if (op == EI_UN_SIGMOID) return unary_node(e, EI_OP_LOGISTIC, x, NULL);
    ei_gparams p = {.elu = {1.0f}};
    return binary_op(e, EI_OP_ADD, unary_node(e, EI_OP_ELU, x, &p), scalar(e, 1.0f));
}

static ei_val *swiglu(ei_emitter *em, ei_val *g, ei_val *u) {
    ei_ir_emitter *e = E(em);
    ei_val *s = unary_node(e, EI_OP_LOGISTIC, g, NULL);
    return binary_op(e, EI_OP_MUL, binary_op(e, EI_OP_MUL, g, s), u);
}

static ei_val *mean(ei_ir_emitter *e, ei_val *x, int axis, int keep) {
    if (!x) return NULL;
    const ei_gtensor *t = T(e, x);
    int32_t shape[4], r = 0, in = IDX(x);
    for (int i = 0; i < t->rank; i++)
        if (i != axis) shape[r++] = t->shape[i];
        else if (keep) shape[r++] = 1;
    ei_gparams p = {.mean = {axis, keep}};
    return node(e, EI_OP_MEAN, 1, &in, t->type, r, shape, &p);
}

static ei_val *sum(ei_emitter *em, ei_val *x, int axis) {
    ei_ir_emitter *e = E(em);
    if (!x) return NULL;
    const int r = T(e, x)->rank;
    axis = axis < 0 ? axis + r : axis;
    const float n = (float)T(e, x)->shape[axis];
    return binary_op(e, EI_OP_MUL, mean(e, x, axis, 0), scalar(e, n));
}

static ei_val *rmsnorm(ei_emitter *em, ei_val *x, ei_val *w, double eps) {
    ei_ir_emitter *e = E(em);
    if (!x || !w) return NULL;
    ei_val *ms = mean(e, binary_op(e, EI_OP_MUL, x, x), T(e, x)->rank - 1, 1);
    ei_val *r = unary_node(e, EI_OP_RSQRT, binary_op(e, EI_OP_ADD, ms, scalar(e, (float)eps)), NULL);
    return binary_op(e, EI_OP_MUL, binary_op(e, EI_OP_MUL, x, r), w);
}

/* The (class, layer) whose weight tensor is w in the current graph; 0 when w is no weight leaf. */
static int weight_of(const ei_ir_emitter *e, ei_val *w, ei_tclass *c, int *layer) {
    const int nl = e->m->cfg.n_layers;
    for (int s = 0; s < EI_TC_COUNT * (nl + 1); s++)
        if (e->leaf[s] == IDX(w)) {
            *c = (ei_tclass)(s / (nl + 1));
            *layer = s % (nl + 1) == nl ? -1 : s % (nl + 1);
            return 1;
        }
    return 0;
}

static ei_val *quant_node(ei_ir_emitter *e, ei_gop op, ei_val *x, ei_gtype type, const ei_qaparams *p) {
    const ei_gtensor *t = T(e, x);
    int32_t in = IDX(x), shape[4];
    memcpy(shape, t->shape, sizeof shape);
    ei_val *v = node(e, op, 1, &in, type, t->rank, shape, NULL);
    if (v && p) e->g->tensors[IDX(v)].q = (ei_gquant){EI_GQ_TENSOR, p->scale, p->zero_point, 0, 0, -1};
    return v;
}

/* x [.., K] float -> QUANTIZE -> integer FULLY_CONNECTED -> DEQUANTIZE [M, N] float (+ float bias). */
static ei_val *linear_int(ei_ir_emitter *e, ei_val *x, ei_val *w, ei_val *b, const ei_qaparams *pin,
                          const ei_qaparams *pout, int32_t M, int32_t N) {
    ei_val *xq = quant_node(e, EI_OP_QUANTIZE, x, pin->type, pin);
    if (!xq) return NULL;
    int32_t in[2] = {IDX(xq), IDX(w)}, shape[2] = {M, N};
    ei_val *yq = node(e, EI_OP_FULLY_CONNECTED, 2, in, pout->type, 2, shape, NULL);
    if (!yq) return NULL;
    e->g->tensors[IDX(yq)].q = (ei_gquant){EI_GQ_TENSOR, pout->scale, pout->zero_point, 0, 0, -1};
    ei_val *y = quant_node(e, EI_OP_DEQUANTIZE, yq, EI_GT_F32, NULL);
    return b && y ? binary_op(e, EI_OP_ADD, y, b) : y;
}

static ei_val *linear(ei_emitter *em, ei_val *x, ei_val *w, ei_val *b) {
    ei_ir_emitter *e = E(em);
    if (!x || !w) return NULL;
    ei_tclass wc;
    int wl;
    ei_qaparams pin, pout;
    const ei_gtype wt = T(e, w)->type;
    const int qact = e->act_params && (wt == EI_GT_I8 || wt == EI_GT_I4) && weight_of(e, w, &wc, &wl) &&
                     e->act_params(e->act_ctx, wc, wl, &pin, &pout);
    /* tensor pointers do not survive node(): the tensor array may move */
    const ei_gtensor *tx = T(e, x);
    const int rank = tx->rank;
    int32_t os[4];
    memcpy(os, tx->shape, sizeof os);
    const int32_t K = os[rank - 1], N = T(e, w)->shape[0];
    const int32_t M = (int32_t)(ei_gtensor_numel(tx) / (K ? K : 1));
    int32_t in[3] = {IDX(x), IDX(w), b ? IDX(b) : -1}, shape[2] = {M, N};
    ei_val *y;
    if (qact) {
        if (rank != 2 && !(x = reshape32(e, x, 2, (const int32_t[]){M, K}))) return NULL;
        y = linear_int(e, x, w, b, &pin, &pout, M, N);
        e->n_act_quantised++;
    } else {
        y = node(e, EI_OP_FULLY_CONNECTED, b ? 3 : 2, in, EI_GT_F32, 2, shape, NULL);
    }
    if (rank == 2 || !y) return y;
    os[rank - 1] = N;
    return reshape32(e, y, rank, os);
}

ei_val *ei_ir_gather(ei_ir_emitter *e, ei_val *x, ei_val *idx, int axis) {
    if (!x || !idx) return NULL;
    const ei_gtensor *tx = T(e, x), *ti = T(e, idx);
    int32_t shape[4], r = 0, in[2] = {IDX(x), IDX(idx)};
    for (int i = 0; i < axis; i++) shape[r++] = tx->shape[i];
    for (int i = 0; i < ti->rank; i++) shape[r++] = ti->shape[i];
    for (int i = axis + 1; i < tx->rank; i++) shape[r++] = tx->shape[i];
    if (r > EI_G_MAX_RANK) {
        record(e, "lowering: gather result above rank 4");
        return NULL;
    }
    ei_gparams p = {.gather = {axis}};
    const ei_gquant q = tx->q; /* a gather moves data: the output keeps the table's quantisation */
    ei_val *v = node(e, EI_OP_GATHER, 2, in, tx->type, r, shape, &p);
    if (v && q.kind == EI_GQ_TENSOR) e->g->tensors[IDX(v)].q = q;
    return v;
}

static ei_val *embedding(ei_emitter *em, ei_val *table, ei_val *ids) {
    ei_ir_emitter *e = E(em);
    ei_val *x = ei_ir_gather(e, table, ids, 0);
    if (!x || T(e, x)->type == EI_GT_F32) return x;
    if (T(e, x)->type == EI_GT_I8) { /* w8 table: the gathered integers times their rows' scales */
        const ei_gtensor *t = T(e, x);
        int32_t in = IDX(x), shape[4], n = t->shape[0];
        memcpy(shape, t->shape, sizeof shape);
        ei_val *f = node(e, EI_OP_DEQUANTIZE, 1, &in, EI_GT_F32, t->rank, shape, NULL);
        const ei_gtensor *st = &e->g->tensors[e->emb_scales];
        ei_val *sc = reshape32(e, VAL(e->emb_scales), 2, (const int32_t[]){st->shape[0], 1});
        ei_val *rs = ei_ir_gather(e, sc, ids, 0); /* [n, 1] */
        (void)n;
        return binary_op(e, EI_OP_MUL, f, rs);
    }
    /* a half-precision table: the activations stay float32 */
    const ei_gtensor *t = T(e, x);
    int32_t in = IDX(x), shape[4];
    memcpy(shape, t->shape, sizeof shape);
    return node(e, EI_OP_CAST, 1, &in, EI_GT_F32, t->rank, shape, NULL);
}

static ei_val *slice(ei_ir_emitter *e, ei_val *x, const int32_t *begin, const int32_t *size) {
    if (!x) return NULL;
    const ei_gtensor *t = T(e, x);
    ei_gparams p = {0};
    int32_t in = IDX(x);
    for (int i = 0; i < t->rank; i++) {
        p.slice.begin[i] = begin[i];
        p.slice.size[i] = size[i];
    }
    return node(e, EI_OP_SLICE, 1, &in, t->type, t->rank, size, &p);
}

static ei_val *concat(ei_ir_emitter *e, int n, ei_val *const *xs, int axis) {
    int32_t in[EI_G_MAX_IN], shape[4];
    for (int i = 0; i < n; i++) {
        if (!xs[i]) return NULL;
        in[i] = IDX(xs[i]);
    }
    const ei_gtensor *t0 = T(e, xs[0]);
    memcpy(shape, t0->shape, sizeof shape);
    shape[axis] = 0;
    for (int i = 0; i < n; i++) shape[axis] += T(e, xs[i])->shape[axis];
    ei_gparams p = {.concat = {axis}};
    return node(e, EI_OP_CONCATENATION, n, in, t0->type, t0->rank, shape, &p);
}

/* cos / sin of every position below max_pos for each pair: [max_pos, d/2], computed as
 * kernels/norm_rope_impl.inc's table (angles in double, rounded once). */
static int rope_tables(ei_ir_emitter *e, double theta, int d, int32_t max_pos, ei_val **c, ei_val **s) {
    const int half = d / 2;
    char kc[64], ks[64];
    snprintf(kc, sizeof kc, "rope.cos.%d.%d.%.17g", d, (int)max_pos, theta);
    snprintf(ks, sizeof ks, "rope.sin.%d.%d.%.17g", d, (int)max_pos, theta);
    float *tc = malloc(sizeof(float) * (size_t)max_pos * half), *ts = malloc(sizeof(float) * (size_t)max_pos * half);
    if (!tc || !ts) {
        free(tc);
        free(ts);
        return record(e, "lowering: out of memory");
    }
    for (int i = 0; i < half; i++) {
        const double inv = pow(theta, -2.0 * (double)i / (double)d);
        for (int32_t p = 0; p < max_pos; p++) {
            const double a = (double)p * inv;
            tc[(size_t)p * half + i] = (float)cos(a);
            ts[(size_t)p * half + i] = (float)sin(a);
        }
    }
    const int32_t sh[2] = {max_pos, half};
    *c = ei_ir_const_f32(e, kc, tc, 2, sh);
    *s = ei_ir_const_f32(e, ks, ts, 2, sh);
    free(tc);
    free(ts);
    return *c && *s ? 0 : -1;
}

static ei_val *rope(ei_emitter *em, ei_val *x, ei_val *pos, double theta, ei_rope_layout layout, int32_t max_pos) {
    ei_ir_emitter *e = E(em);
    if (!x || !pos) return NULL;
    const ei_gtensor *tx = T(e, x);
    if (tx->rank != 3) {
        record(e, "lowering: rope needs [T, heads, d]");
        return NULL;
    }
    const int32_t Tn = tx->shape[0], h = tx->shape[1], d = tx->shape[2], half = d / 2;
    ei_val *ct = NULL, *st = NULL;
    if (rope_tables(e, theta, d, max_pos, &ct, &st) != 0) return NULL;
    ei_val *c = ei_ir_gather(e, ct, pos, 0), *s = ei_ir_gather(e, st, pos, 0); /* [T, d/2] */
    ei_val *a, *b;
    if (layout == EI_ROPE_HALF) {
        c = reshape32(e, c, 3, (const int32_t[]){Tn, 1, half});
        s = reshape32(e, s, 3, (const int32_t[]){Tn, 1, half});
        a = slice(e, x, (const int32_t[]){0, 0, 0}, (const int32_t[]){Tn, h, half});
        b = slice(e, x, (const int32_t[]){0, 0, half}, (const int32_t[]){Tn, h, half});
    } else {
        c = reshape32(e, c, 4, (const int32_t[]){Tn, 1, half, 1});
        s = reshape32(e, s, 4, (const int32_t[]){Tn, 1, half, 1});
        ei_val *xr = reshape32(e, x, 4, (const int32_t[]){Tn, h, half, 2});
        a = slice(e, xr, (const int32_t[]){0, 0, 0, 0}, (const int32_t[]){Tn, h, half, 1});
        b = slice(e, xr, (const int32_t[]){0, 0, 0, 1}, (const int32_t[]){Tn, h, half, 1});
    }
    /* (a, b) -> (a cos - b sin, a sin + b cos) */
    ei_val *ya = binary_op(e, EI_OP_SUB, binary_op(e, EI_OP_MUL, a, c), binary_op(e, EI_OP_MUL, b, s));
    ei_val *yb = binary_op(e, EI_OP_ADD, binary_op(e, EI_OP_MUL, a, s), binary_op(e, EI_OP_MUL, b, c));
    ei_val *parts[2] = {ya, yb};
    ei_val *y = concat(e, 2, parts, layout == EI_ROPE_HALF ? 2 : 3);
    return layout == EI_ROPE_HALF ? y : reshape32(e, y, 3, (const int32_t[]){Tn, h, d});
}

static ei_val *bmm(ei_ir_emitter *e, ei_val *a, ei_val *b, int adj_x, int adj_y) {
    if (!a || !b) return NULL;
    const ei_gtensor *ta = T(e, a), *tb = T(e, b);
    const int r = ta->rank;
    int32_t shape[4], in[2] = {IDX(a), IDX(b)};
    memcpy(shape, ta->shape, sizeof shape);
    shape[r - 2] = adj_x ? ta->shape[r - 1] : ta->shape[r - 2];
    shape[r - 1] = adj_y ? tb->shape[tb->rank - 2] : tb->shape[tb->rank - 1];
    ei_gparams p = {.bmm = {adj_x, adj_y}};
    return node(e, EI_OP_BATCH_MATMUL, 2, in, ta->type, r, shape, &p);
}

static ei_val *matmul(ei_emitter *em, ei_val *a, ei_val *b, int ta, int tb) { return bmm(E(em), a, b, ta, tb); }

static ei_val *attention(ei_emitter *em, ei_val *q, int n_parts, ei_val *const *k, ei_val *const *v,
                         ei_val *const *valid, double scale, int64_t causal_offset) {
    ei_ir_emitter *e = E(em);
    if (!q || n_parts < 1 || n_parts > EI_G_MAX_IN) return NULL;
    const ei_gtensor *tq = T(e, q);
    const int32_t n = tq->shape[0], H = tq->shape[1], d = tq->shape[2];
    int64_t total = 0;
    for (int i = 0; i < n_parts; i++) {
        if (!k[i] || !v[i]) return NULL;
        total += T(e, k[i])->shape[0];
    }
    /* fixed-shape graphs carry causality in the last part's mask: with a causal restriction that
     * hides keys, that mask must be there */
    if (causal_offset < total - 1 && !valid[n_parts - 1]) {
        record(e, "lowering: causal attention needs the new tokens' mask as an input");
        return NULL;
    }
    const int32_t Hkv = T(e, k[0])->shape[1], G = H / Hkv;
    /* q [n, H, d] -> [Hkv, G*n, d]: the query heads that share a KV head in one batch entry */
    ei_val *qh = reshape32(e, q, 4, (const int32_t[]){n, Hkv, G, d});
    qh = transpose_perm(e, qh, (const int32_t[]){1, 2, 0, 3});
    qh = reshape32(e, qh, 3, (const int32_t[]){Hkv, G * n, d});
    ei_val *scores[EI_G_MAX_IN], *vh[EI_G_MAX_IN];
    int32_t len[EI_G_MAX_IN];
    for (int i = 0; i < n_parts; i++) {
        len[i] = T(e, k[i])->shape[0];
        ei_val *kh = transpose_perm(e, k[i], (const int32_t[]){1, 0, 2}); /* [Hkv, T_i, d] */
        vh[i] = transpose_perm(e, v[i], (const int32_t[]){1, 0, 2});
        ei_val *s = binary_op(e, EI_OP_MUL, bmm(e, qh, kh, 0, 1), scalar(e, (float)scale));
        s = reshape32(e, s, 4, (const int32_t[]){Hkv, G, n, len[i]});
        if (valid[i]) s = binary_op(e, EI_OP_ADD, s, valid[i]);
        scores[i] = s;
    }
    ei_val *all = n_parts == 1 ? scores[0] : concat(e, n_parts, scores, 3);
    ei_gparams sp = {.softmax = {1.0f, 3}};
    ei_val *p = unary_node(e, EI_OP_SOFTMAX, all, &sp);
    ei_val *out = NULL;
    int32_t off = 0;
    for (int i = 0; i < n_parts; i++) {
        ei_val *pi = n_parts == 1 ? p
                                  : slice(e, p, (const int32_t[]){0, 0, 0, off},
                                          (const int32_t[]){Hkv, G, n, len[i]});
        off += len[i];
        pi = reshape32(e, pi, 3, (const int32_t[]){Hkv, G * n, len[i]});
        ei_val *oi = bmm(e, pi, vh[i], 0, 0); /* [Hkv, G*n, d] */
        out = out ? binary_op(e, EI_OP_ADD, out, oi) : oi;
    }
    out = reshape32(e, out, 4, (const int32_t[]){Hkv, G, n, d});
    out = transpose_perm(e, out, (const int32_t[]){2, 0, 1, 3}); /* [n, Hkv, G, d] */
    return reshape32(e, out, 3, (const int32_t[]){n, H, d});
}

static int shape(ei_emitter *em, ei_val *x, int64_t *s) {
    if (!x) return 0;
    const ei_gtensor *t = T(E(em), x);
    for (int i = 0; i < t->rank; i++) s[i] = t->shape[i];
    return t->rank;
}

static const ei_emitter_ops ir_ops = {weight, embedding, linear, rmsnorm, rope,      attention, matmul, binary,
                                      add_scalar, unary, swiglu, sum, reshape, transpose, shape,     fail_op};

/* ------------------------------------------------------------------ public */

int ei_ir_emitter_init(ei_ir_emitter *e, ei_eigw *w, const ei_model *m, const ei_gates *gates, ei_gate_kind kind) {
    memset(e, 0, sizeof *e);
    e->base.ops = &ir_ops;
    e->base.cfg = &m->cfg;
    e->base.gate = kind;
    e->w = w;
    e->m = m;
    e->gates = gates;
    ei_qopts_default(&e->qopts);
    e->leaf = malloc(sizeof(int32_t) * EI_TC_COUNT * ((size_t)m->cfg.n_layers + 1));
    return e->leaf ? 0 : ei_error_set("lowering: out of memory");
}

void ei_ir_emitter_free(ei_ir_emitter *e) {
    free(e->consts);
    free(e->leaf);
    e->consts = NULL;
    e->leaf = NULL;
}

void ei_ir_emitter_begin(ei_ir_emitter *e, ei_graph *g) {
    e->g = g;
    e->counter = 0;
    e->emb_scales = -1;
    for (size_t i = 0; i < EI_TC_COUNT * ((size_t)e->m->cfg.n_layers + 1); i++) e->leaf[i] = -1;
}

ei_val *ei_ir_input(ei_ir_emitter *e, const char *name, ei_gtype type, int rank, const int32_t *shape) {
    int32_t t = ei_graph_add_tensor(e->g, name, type, EI_GK_INPUT, rank, shape);
    if (t < 0) record(e, ei_error_get());
    return VAL(t);
}

ei_val *ei_ir_output(ei_ir_emitter *e, ei_val *v, const char *name) {
    if (!v) return NULL;
    const ei_gtensor *t = T(e, v);
    if (t->kind != EI_GK_VALUE) { /* an input or constant passed through: copy it */
        int32_t sh[4];
        memcpy(sh, t->shape, sizeof sh);
        v = reshape32(e, v, t->rank, sh);
        if (!v) return NULL;
    }
    ei_gtensor *o = &e->g->tensors[IDX(v)];
    free(o->name);
    if (!(o->name = strdup(name))) {
        record(e, "lowering: out of memory");
        return NULL;
    }
    o->kind = EI_GK_OUTPUT;
    return v;
}

ei_val *ei_ir_convert(ei_ir_emitter *e, ei_val *x, ei_gtype to, const ei_qaparams *q) {
    if (!x) return NULL;
    const ei_gtype from = T(e, x)->type;
    if (from == to) return x;
    if (from == EI_GT_F32 && to == EI_GT_F16) return quant_node(e, EI_OP_CAST, x, EI_GT_F16, NULL);
    if (from == EI_GT_F16 && to == EI_GT_F32) return quant_node(e, EI_OP_CAST, x, EI_GT_F32, NULL);
    if (from == EI_GT_F32 && (to == EI_GT_I8 || to == EI_GT_I16) && q) return quant_node(e, EI_OP_QUANTIZE, x, to, q);
    if ((from == EI_GT_I8 || from == EI_GT_I16) && to == EI_GT_F32) return quant_node(e, EI_OP_DEQUANTIZE, x, EI_GT_F32, NULL);
    record(e, "lowering: no conversion between these element types");
    return NULL;
}

void ei_ir_set_quant(ei_ir_emitter *e, ei_val *v, const ei_qaparams *q) {
    if (v && q) e->g->tensors[IDX(v)].q = (ei_gquant){EI_GQ_TENSOR, q->scale, q->zero_point, 0, 0, -1};
}
