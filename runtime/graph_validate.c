/* ei_graph_validate (graph.h): structure, quantisation consistency, topological order and the shape
 * and type inference of every op. A graph is untrusted here (it may come from a corrupt .eig), so
 * every index is checked before it is followed and every size is computed without overflow; each
 * message names the graph and the node or tensor so a lowering bug is found on the host, not as
 * wrong numbers on a phone. */
#include "runtime/graph.h"

#include "core/ei_error.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ei_gkind_name(ei_gkind k) {
    static const char *const names[] = {"const", "input", "output", "value"};
    return (unsigned)k < 4 ? names[k] : "?";
}

const char *ei_gquant_name(ei_gquant_kind q) {
    static const char *const names[] = {"none", "tensor", "channel", "group"};
    return (unsigned)q < 4 ? names[q] : "?";
}

char *ei_gshape_str(int32_t rank, const int32_t *shape, char *buf, size_t cap) {
    if (!cap) return buf;
    size_t k = 0;
    buf[0] = '\0';
    int w = snprintf(buf, cap, "[");
    k = w > 0 ? (size_t)w : 0;
    for (int32_t i = 0; i < rank && i < EI_G_MAX_RANK && k < cap; i++) {
        w = snprintf(buf + k, cap - k, i ? ",%d" : "%d", (int)shape[i]);
        k += w > 0 ? (size_t)w : 0;
    }
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* Small strings returned by value, so several can appear in one message (C11 keeps the temporary
 * alive until the end of the full expression). */
typedef struct {
    char s[64];
} sbuf;

static sbuf shp(const ei_gtensor *t) {
    sbuf b;
    ei_gshape_str(t->rank, t->shape, b.s, sizeof b.s);
    return b;
}

static sbuf tdesc(const ei_gtensor *t) {
    sbuf b;
    if (t->q.kind == EI_GQ_NONE) snprintf(b.s, sizeof b.s, "%s", ei_gtype_name(t->type));
    else snprintf(b.s, sizeof b.s, "%s per-%s", ei_gtype_name(t->type), ei_gquant_name(t->q.kind));
    return b;
}

/* Operand classes: what an op accepts is a set of these. U8 without quantisation is the boolean of
 * SELECT conditions and masks. */
enum { C_F32 = 1, C_F16 = 2, C_I32 = 4, C_Q8 = 8, C_Q16 = 16, C_BOOL = 32 };
#define C_FLOAT (C_F32 | C_F16)
#define C_Q (C_Q8 | C_Q16)
#define C_MOVE (C_FLOAT | C_I32 | C_Q | C_BOOL) /* data movement: any element type but I4 */

static int tclass(const ei_gtensor *t) {
    switch (t->type) {
    case EI_GT_F32: return t->q.kind == EI_GQ_NONE ? C_F32 : 0;
    case EI_GT_F16: return t->q.kind == EI_GQ_NONE ? C_F16 : 0;
    case EI_GT_I32: return t->q.kind == EI_GQ_NONE ? C_I32 : 0;
    case EI_GT_I8: return t->q.kind == EI_GQ_TENSOR ? C_Q8 : 0;
    case EI_GT_U8: return t->q.kind == EI_GQ_TENSOR ? C_Q8 : t->q.kind == EI_GQ_NONE ? C_BOOL : 0;
    case EI_GT_I16: return t->q.kind == EI_GQ_TENSOR ? C_Q16 : 0;
    default: return 0;
    }
}

static sbuf cdesc(int mask) {
    static const char *const parts[] = {"f32", "f16", "i32", "per-tensor i8/u8", "per-tensor i16", "u8 (boolean)"};
    sbuf b;
    size_t k = 0;
    int n = 0, total = 0;
    for (int i = 0; i < 6; i++) total += (mask >> i) & 1;
    b.s[0] = '\0';
    for (int i = 0; i < 6; i++) {
        if (!((mask >> i) & 1)) continue;
        const char *sep = n == 0 ? "" : n == total - 1 ? " or " : ", ";
        int w = snprintf(b.s + k, sizeof b.s - k, "%s%s", sep, parts[i]);
        if (w > 0 && (size_t)w < sizeof b.s - k) k += (size_t)w;
        n++;
    }
    return b;
}

/* ------------------------------------------------------------------ per-node context */

typedef struct {
    const ei_graph *g;
    int32_t idx;
    const ei_gnode *n;
    const ei_gtensor *x[EI_G_MAX_IN];
    const ei_gtensor *out;
    int32_t rank, shape[EI_G_MAX_RANK]; /* what the op infers for its output */
} vctx;

static int nerr(const vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int nerr(const vctx *c, const char *fmt, ...) {
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ei_error_set("graph '%s': node %d (%s): %s", c->g->name, (int)c->idx, ei_gop_name(c->n->op), msg);
}

static int gerr(const ei_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int gerr(const ei_graph *g, const char *fmt, ...) {
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ei_error_set("graph '%s': %s", g->name ? g->name : "?", msg);
}

static int want(const vctx *c, int k, int mask) {
    if (tclass(c->x[k]) & mask) return 0;
    return nerr(c, "input %d '%s' is %s, expected %s", k, c->x[k]->name, tdesc(c->x[k]).s, cdesc(mask).s);
}

/* Input k has the element type and class of input 0 (quantisation scales may differ). */
static int same_type(const vctx *c, int k, int ref) {
    const ei_gtensor *a = c->x[ref], *b = c->x[k];
    if (a->type == b->type && tclass(a) == tclass(b)) return 0;
    return nerr(c, "input %d '%s' is %s, expected %s like input %d '%s'", k, b->name, tdesc(b).s, tdesc(a).s, ref,
                a->name);
}

static int same_qparams(const ei_gtensor *a, const ei_gtensor *b) {
    return a->q.kind != EI_GQ_TENSOR || (a->q.scale == b->q.scale && a->q.zero_point == b->q.zero_point);
}

/* The output has input k's element type and class; same_quant: also its scale and zero point (ops
 * that move data without arithmetic cannot requantise). */
static int out_like(const vctx *c, int k, int same_quant) {
    const ei_gtensor *x = c->x[k], *o = c->out;
    if (o->type != x->type || tclass(o) != tclass(x))
        return nerr(c, "output '%s' is %s, expected %s like input %d '%s'", o->name, tdesc(o).s, tdesc(x).s, k,
                    x->name);
    if (same_quant && !same_qparams(x, o))
        return nerr(c, "output '%s' has scale %g zero point %d, expected those of input %d '%s' (scale %g zero point %d)",
                    o->name, (double)o->q.scale, (int)o->q.zero_point, k, x->name, (double)x->q.scale,
                    (int)x->q.zero_point);
    return 0;
}

/* Quantised SOFTMAX and LOGISTIC outputs cover [0, 1) with a fixed scale (NNAPI: 1/256). */
static int out_unit_scale(const vctx *c) {
    const ei_gtensor *o = c->out;
    if (!(tclass(o) & C_Q)) return 0;
    float s = o->type == EI_GT_I16 ? 1.0f / 32768.0f : 1.0f / 256.0f;
    int32_t zp = o->type == EI_GT_I8 ? -128 : 0;
    if (o->q.scale == s && o->q.zero_point == zp) return 0;
    return nerr(c, "output '%s' has scale %g zero point %d; a quantised %s output uses scale %g zero point %d", o->name,
                (double)o->q.scale, (int)o->q.zero_point, ei_gtype_name(o->type), (double)s, (int)zp);
}

static void infer_like(vctx *c, const ei_gtensor *t) {
    c->rank = t->rank;
    memcpy(c->shape, t->shape, sizeof c->shape);
}

static int axis_ok(const vctx *c, int32_t axis, int32_t rank, const char *what) {
    if (axis >= 0 && axis < rank) return 0;
    return nerr(c, "%s %d outside [0, %d) for input 0 '%s' %s", what, (int)axis, (int)rank, c->x[0]->name,
                shp(c->x[0]).s);
}

static int flag_ok(const vctx *c, int32_t v, const char *what) {
    return v == 0 || v == 1 ? 0 : nerr(c, "%s = %d, expected 0 or 1", what, (int)v);
}

static int rank_at_least(const vctx *c, int k, int32_t r) {
    if (c->x[k]->rank >= r) return 0;
    return nerr(c, "input %d '%s' has rank %d, expected at least %d", k, c->x[k]->name, (int)c->x[k]->rank, (int)r);
}

/* ------------------------------------------------------------------ ops */

static int op_gather(vctx *c) {
    const ei_gtensor *x = c->x[0], *idx = c->x[1];
    int32_t ax = c->n->p.gather.axis;
    if (want(c, 0, C_MOVE) || want(c, 1, C_I32) || rank_at_least(c, 0, 1) || axis_ok(c, ax, x->rank, "axis"))
        return -1;
    int32_t r = x->rank - 1 + idx->rank;
    if (r > EI_G_MAX_RANK)
        return nerr(c, "output rank %d (input 0 %s, indices %s) exceeds %d", (int)r, shp(x).s, shp(idx).s, EI_G_MAX_RANK);
    c->rank = 0;
    for (int32_t i = 0; i < ax; i++) c->shape[c->rank++] = x->shape[i];
    for (int32_t i = 0; i < idx->rank; i++) c->shape[c->rank++] = idx->shape[i];
    for (int32_t i = ax + 1; i < x->rank; i++) c->shape[c->rank++] = x->shape[i];
    return out_like(c, 0, 1);
}

static int op_fully_connected(vctx *c) {
    const ei_gtensor *x = c->x[0], *w = c->x[1], *b = c->n->n_in == 3 ? c->x[2] : NULL;
    if (want(c, 0, C_FLOAT | C_Q) || rank_at_least(c, 0, 1)) return -1;
    int xf = (tclass(x) & C_FLOAT) != 0;
    if (w->rank != 2) return nerr(c, "weights '%s' have shape %s, expected [N, K]", w->name, shp(w).s);
    int32_t K = x->shape[x->rank - 1], N = w->shape[0];
    if (w->shape[1] != K)
        return nerr(c, "inner dims differ: x %s w %s (w is [N, K])", shp(x).s, shp(w).s);
    int wfloat = (tclass(w) & C_FLOAT) != 0;
    int w8 = w->type == EI_GT_I8 && (w->q.kind == EI_GQ_TENSOR || (w->q.kind == EI_GQ_CHANNEL && w->q.axis == 0));
    int w4 = w->type == EI_GT_I4 && w->q.kind == EI_GQ_GROUP && w->q.axis == 1;
    if (!(wfloat && xf) && !w8 && !w4) {
        char along[32] = "";
        if (w->q.kind == EI_GQ_CHANNEL || w->q.kind == EI_GQ_GROUP) snprintf(along, sizeof along, " along axis %d", (int)w->q.axis);
        return nerr(c, "weights '%s' are %s%s; with %s input FULLY_CONNECTED takes %si8 per-tensor or per-channel "
                       "(axis 0), or i4 per-group (axis 1)",
                    w->name, tdesc(w).s, along, xf ? "float" : "quantised", xf ? "f32, f16, " : "");
    }
    if (b) {
        if (b->rank != 1 || b->shape[0] != N)
            return nerr(c, "bias '%s' has shape %s, expected [%d]", b->name, shp(b).s, (int)N);
        if (xf) {
            if (!(tclass(b) & (C_F32 | tclass(x))))
                return nerr(c, "bias '%s' is %s, expected f32%s for float input", b->name, tdesc(b).s,
                            x->type == EI_GT_F16 ? " or f16" : "");
        } else {
            int ok = b->type == EI_GT_I32 && (b->q.kind == EI_GQ_NONE || b->q.kind == EI_GQ_TENSOR);
            if (!ok) return nerr(c, "bias '%s' is %s, expected i32 for quantised input", b->name, tdesc(b).s);
            if (b->q.kind == EI_GQ_TENSOR && b->q.zero_point != 0)
                return nerr(c, "bias '%s' has zero point %d, expected 0", b->name, (int)b->q.zero_point);
            if (b->q.kind == EI_GQ_TENSOR && w->q.kind == EI_GQ_TENSOR) {
                double want_s = (double)x->q.scale * (double)w->q.scale;
                if (fabs((double)b->q.scale - want_s) > 1e-5 * want_s)
                    return nerr(c, "bias '%s' has scale %g, expected input scale x weight scale = %g", b->name,
                                (double)b->q.scale, want_s);
            }
        }
    }
    int64_t rows = 1;
    for (int32_t i = 0; i + 1 < x->rank; i++) rows *= x->shape[i];
    if (rows > INT32_MAX) return nerr(c, "input 0 %s flattens to %lld rows (more than int32)", shp(x).s, (long long)rows);
    c->rank = 2;
    c->shape[0] = (int32_t)rows;
    c->shape[1] = N;
    return out_like(c, 0, 0);
}

static int op_batch_matmul(vctx *c) {
    const ei_gtensor *a = c->x[0], *b = c->x[1];
    int32_t ax = c->n->p.bmm.adj_x, ay = c->n->p.bmm.adj_y;
    if (want(c, 0, C_FLOAT | C_Q) || same_type(c, 1, 0) || flag_ok(c, ax, "adj_x") || flag_ok(c, ay, "adj_y"))
        return -1;
    int32_t r = a->rank;
    if (r < 2 || r > 4) return nerr(c, "input 0 '%s' has rank %d, expected 2..4", a->name, (int)r);
    if (b->rank != r) return nerr(c, "ranks differ: a %s b %s", shp(a).s, shp(b).s);
    for (int32_t i = 0; i < r - 2; i++)
        if (a->shape[i] != b->shape[i]) return nerr(c, "batch dims differ: a %s b %s", shp(a).s, shp(b).s);
    int32_t M = ax ? a->shape[r - 1] : a->shape[r - 2], Ka = ax ? a->shape[r - 2] : a->shape[r - 1];
    int32_t Kb = ay ? b->shape[r - 1] : b->shape[r - 2], N = ay ? b->shape[r - 2] : b->shape[r - 1];
    if (Ka != Kb)
        return nerr(c, "inner dims differ: a %s b %s%s", shp(a).s, shp(b).s,
                    ax && ay ? " (adj_x, adj_y)" : ax ? " (adj_x)" : ay ? " (adj_y)" : "");
    infer_like(c, a);
    c->shape[r - 2] = M;
    c->shape[r - 1] = N;
    return out_like(c, 0, 0);
}

static int op_binary(vctx *c) {
    const ei_gtensor *a = c->x[0], *b = c->x[1];
    int mask = c->n->op == EI_OP_DIV ? C_FLOAT | C_I32 : C_FLOAT | C_I32 | C_Q;
    if (want(c, 0, mask) || same_type(c, 1, 0)) return -1;
    c->rank = a->rank > b->rank ? a->rank : b->rank;
    for (int32_t i = 0; i < c->rank; i++) {
        int32_t ea = i < a->rank ? a->shape[a->rank - 1 - i] : 1;
        int32_t eb = i < b->rank ? b->shape[b->rank - 1 - i] : 1;
        if (ea != eb && ea != 1 && eb != 1) return nerr(c, "shapes do not broadcast: a %s b %s", shp(a).s, shp(b).s);
        c->shape[c->rank - 1 - i] = ea > eb ? ea : eb;
    }
    return out_like(c, 0, 0);
}

static int op_unary(vctx *c) {
    ei_gop op = c->n->op;
    int mask = op == EI_OP_RSQRT || op == EI_OP_LOGISTIC ? C_FLOAT | C_Q : C_FLOAT;
    if (want(c, 0, mask)) return -1;
    if (op == EI_OP_ELU && !isfinite(c->n->p.elu.alpha))
        return nerr(c, "alpha %g is not a finite number", (double)c->n->p.elu.alpha);
    infer_like(c, c->x[0]);
    if (out_like(c, 0, 0)) return -1;
    return op == EI_OP_LOGISTIC ? out_unit_scale(c) : 0;
}

static int op_mean(vctx *c) {
    const ei_gtensor *x = c->x[0];
    int32_t ax = c->n->p.mean.axis, keep = c->n->p.mean.keep_dims;
    if (want(c, 0, C_FLOAT | C_Q) || rank_at_least(c, 0, 1) || axis_ok(c, ax, x->rank, "axis") ||
        flag_ok(c, keep, "keep_dims"))
        return -1;
    c->rank = 0;
    for (int32_t i = 0; i < x->rank; i++) {
        if (i != ax) c->shape[c->rank++] = x->shape[i];
        else if (keep) c->shape[c->rank++] = 1;
    }
    return out_like(c, 0, 0);
}

static int op_softmax(vctx *c) {
    const ei_gtensor *x = c->x[0];
    float beta = c->n->p.softmax.beta;
    if (want(c, 0, C_FLOAT | C_Q) || rank_at_least(c, 0, 1) || axis_ok(c, c->n->p.softmax.axis, x->rank, "axis"))
        return -1;
    if (!(beta > 0.0f) || !isfinite(beta)) return nerr(c, "beta %g is not a positive finite number", (double)beta);
    infer_like(c, x);
    return out_like(c, 0, 0) || out_unit_scale(c) ? -1 : 0;
}

static int op_concat(vctx *c) {
    const ei_gtensor *x = c->x[0];
    int32_t ax = c->n->p.concat.axis;
    if (want(c, 0, C_MOVE) || rank_at_least(c, 0, 1) || axis_ok(c, ax, x->rank, "axis")) return -1;
    int64_t sum = 0;
    for (int32_t k = 0; k < c->n->n_in; k++) {
        const ei_gtensor *y = c->x[k];
        if (same_type(c, k, 0)) return -1;
        int ok = y->rank == x->rank;
        for (int32_t i = 0; ok && i < x->rank; i++) ok = i == ax || y->shape[i] == x->shape[i];
        if (!ok)
            return nerr(c, "input %d '%s' has shape %s, input 0 has %s: they may differ only along axis %d", k, y->name,
                        shp(y).s, shp(x).s, (int)ax);
        sum += y->shape[ax];
    }
    if (sum > INT32_MAX) return nerr(c, "concatenated extent %lld exceeds int32", (long long)sum);
    infer_like(c, x);
    c->shape[ax] = (int32_t)sum;
    return out_like(c, 0, 0);
}

static int op_slice(vctx *c) {
    const ei_gtensor *x = c->x[0];
    if (want(c, 0, C_MOVE)) return -1;
    c->rank = x->rank;
    for (int32_t i = 0; i < x->rank; i++) {
        int64_t b = c->n->p.slice.begin[i], s = c->n->p.slice.size[i], e = x->shape[i];
        if (b < 0 || b >= e)
            return nerr(c, "begin[%d] = %lld outside [0, %lld) of input 0 '%s' %s", (int)i, (long long)b, (long long)e,
                        x->name, shp(x).s);
        if (s == -1) s = e - b;
        if (s < 1 || s > e - b)
            return nerr(c, "size[%d] = %lld: begin %lld + size does not fit extent %lld of input 0 '%s' %s", (int)i,
                        (long long)s, (long long)b, (long long)e, x->name, shp(x).s);
        c->shape[i] = (int32_t)s;
    }
    return out_like(c, 0, 1);
}

static int op_reshape(vctx *c) {
    const ei_gtensor *x = c->x[0], *o = c->out;
    if (want(c, 0, C_MOVE)) return -1;
    int64_t nx = ei_gtensor_numel(x), no = ei_gtensor_numel(o);
    if (nx != no)
        return nerr(c, "element counts differ: input 0 '%s' %s has %lld, output '%s' %s has %lld", x->name, shp(x).s,
                    (long long)nx, o->name, shp(o).s, (long long)no);
    infer_like(c, o);
    return out_like(c, 0, 1);
}

static int op_transpose(vctx *c) {
    const ei_gtensor *x = c->x[0];
    const int32_t *perm = c->n->p.transpose.perm;
    if (want(c, 0, C_MOVE)) return -1;
    int seen = 0;
    for (int32_t i = 0; i < x->rank; i++) {
        if (perm[i] < 0 || perm[i] >= x->rank || (seen >> perm[i]) & 1)
            return nerr(c, "perm %s is not a permutation of [0, %d)", ei_gshape_str(x->rank, perm, (char[64]){0}, 64),
                        (int)x->rank);
        seen |= 1 << perm[i];
        c->shape[i] = x->shape[perm[i]];
    }
    c->rank = x->rank;
    return out_like(c, 0, 1);
}

static int op_quantize(vctx *c) {
    if (want(c, 0, C_FLOAT)) return -1;
    if (!(tclass(c->out) & C_Q))
        return nerr(c, "output '%s' is %s, expected per-tensor i8, u8 or i16", c->out->name, tdesc(c->out).s);
    infer_like(c, c->x[0]);
    return 0;
}

static int op_dequantize(vctx *c) {
    const ei_gtensor *x = c->x[0];
    int qt = x->type == EI_GT_I8 || x->type == EI_GT_U8 || x->type == EI_GT_I16 || x->type == EI_GT_I4;
    if (!qt || x->q.kind == EI_GQ_NONE)
        return nerr(c, "input 0 '%s' is %s, expected quantised i8, u8, i16 or i4", x->name, tdesc(x).s);
    if (!(tclass(c->out) & C_FLOAT))
        return nerr(c, "output '%s' is %s, expected f32 or f16", c->out->name, tdesc(c->out).s);
    infer_like(c, x);
    return 0;
}

static int op_cast(vctx *c) {
    int mask = C_FLOAT | C_I32;
    if (want(c, 0, mask)) return -1;
    if (!(tclass(c->out) & mask))
        return nerr(c, "output '%s' is %s, expected %s", c->out->name, tdesc(c->out).s, cdesc(mask).s);
    infer_like(c, c->x[0]);
    return 0;
}

static int op_select(vctx *c) {
    const ei_gtensor *cond = c->x[0], *a = c->x[1], *b = c->x[2];
    if (want(c, 0, C_BOOL) || want(c, 1, C_MOVE) || same_type(c, 2, 1)) return -1;
    if (!same_qparams(a, b))
        return nerr(c, "inputs 1 '%s' and 2 '%s' have different scales or zero points", a->name, b->name);
    int same = cond->rank == a->rank && a->rank == b->rank;
    for (int32_t i = 0; same && i < a->rank; i++) same = cond->shape[i] == a->shape[i] && a->shape[i] == b->shape[i];
    if (!same) return nerr(c, "shapes differ: c %s a %s b %s (SELECT does not broadcast)", shp(cond).s, shp(a).s, shp(b).s);
    infer_like(c, a);
    return out_like(c, 1, 1);
}

typedef struct {
    int min_in, max_in;
    int (*check)(vctx *c);
} op_rule;

static const op_rule rules[EI_OP_COUNT] = {
    [EI_OP_GATHER] = {2, 2, op_gather},
    [EI_OP_FULLY_CONNECTED] = {2, 3, op_fully_connected},
    [EI_OP_BATCH_MATMUL] = {2, 2, op_batch_matmul},
    [EI_OP_ADD] = {2, 2, op_binary},
    [EI_OP_SUB] = {2, 2, op_binary},
    [EI_OP_MUL] = {2, 2, op_binary},
    [EI_OP_DIV] = {2, 2, op_binary},
    [EI_OP_MAXIMUM] = {2, 2, op_binary},
    [EI_OP_RSQRT] = {1, 1, op_unary},
    [EI_OP_LOGISTIC] = {1, 1, op_unary},
    [EI_OP_ELU] = {1, 1, op_unary},
    [EI_OP_EXP] = {1, 1, op_unary},
    [EI_OP_MEAN] = {1, 1, op_mean},
    [EI_OP_SOFTMAX] = {1, 1, op_softmax},
    [EI_OP_CONCATENATION] = {1, EI_G_MAX_IN, op_concat},
    [EI_OP_SLICE] = {1, 1, op_slice},
    [EI_OP_RESHAPE] = {1, 1, op_reshape},
    [EI_OP_TRANSPOSE] = {1, 1, op_transpose},
    [EI_OP_QUANTIZE] = {1, 1, op_quantize},
    [EI_OP_DEQUANTIZE] = {1, 1, op_dequantize},
    [EI_OP_CAST] = {1, 1, op_cast},
    [EI_OP_SELECT] = {3, 3, op_select},
};

/* ------------------------------------------------------------------ tensors */

static int terr(const ei_graph *g, int32_t i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int terr(const ei_graph *g, int32_t i, const char *fmt, ...) {
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *name = g->tensors[i].name ? g->tensors[i].name : "";
    return ei_error_set("graph '%s': tensor %d '%s': %s", g->name, (int)i, name, msg);
}

/* Fields of one tensor that need no other tensor: after this its shape and byte size are safe to
 * compute. */
static int check_tensor_own(const ei_graph *g, int32_t i, uint64_t blob_size) {
    const ei_gtensor *t = &g->tensors[i];
    if (!t->name || !t->name[0]) return terr(g, i, "has no name");
    if ((unsigned)t->type >= EI_GT_COUNT) return terr(g, i, "unknown element type %d", (int)t->type);
    if ((unsigned)t->kind > EI_GK_VALUE) return terr(g, i, "unknown kind %d", (int)t->kind);
    if (t->rank < 0 || t->rank > EI_G_MAX_RANK) return terr(g, i, "rank %d outside [0, %d]", (int)t->rank, EI_G_MAX_RANK);
    int64_t n = 1;
    for (int32_t d = 0; d < t->rank; d++) {
        if (t->shape[d] <= 0) return terr(g, i, "extent %d of shape %s is not positive", (int)d, shp(t).s);
        if (n > EI_G_MAX_NUMEL / t->shape[d])
            return terr(g, i, "shape %s has more than 2^40 elements (its byte size would overflow)", shp(t).s);
        n *= t->shape[d];
    }
    if (t->kind == EI_GK_CONST) {
        uint64_t bytes = ei_gtensor_bytes(t);
        if (t->size != bytes)
            return terr(g, i, "size %llu bytes does not match shape %s x %s (%llu bytes)", (unsigned long long)t->size,
                        shp(t).s, ei_gtype_name(t->type), (unsigned long long)bytes);
        if (t->offset > blob_size || t->size > blob_size - t->offset)
            return terr(g, i, "data at offset %llu, %llu bytes, lies outside the constant blob of %llu bytes",
                        (unsigned long long)t->offset, (unsigned long long)t->size, (unsigned long long)blob_size);
    }
    return 0;
}

static int zp_range(ei_gtype t, int32_t *lo, int32_t *hi) {
    switch (t) {
    case EI_GT_I8: *lo = -128, *hi = 127; return 1;
    case EI_GT_U8: *lo = 0, *hi = 255; return 1;
    case EI_GT_I16: *lo = -32768, *hi = 32767; return 1;
    case EI_GT_I4: *lo = -8, *hi = 7; return 1;
    case EI_GT_I32: *lo = INT32_MIN, *hi = INT32_MAX; return 1;
    default: return 0;
    }
}

static int check_tensor_quant(const ei_graph *g, int32_t i) {
    const ei_gtensor *t = &g->tensors[i];
    const ei_gquant *q = &t->q;
    int32_t lo, hi;
    switch (q->kind) {
    case EI_GQ_NONE: return 0;
    case EI_GQ_TENSOR:
        if (!zp_range(t->type, &lo, &hi))
            return terr(g, i, "per-tensor quantisation on a %s tensor", ei_gtype_name(t->type));
        if (!(q->scale > 0.0f) || !isfinite(q->scale))
            return terr(g, i, "scale %g is not a positive finite number", (double)q->scale);
        if (q->zero_point < lo || q->zero_point > hi)
            return terr(g, i, "zero point %d outside the %s range [%d, %d]", (int)q->zero_point, ei_gtype_name(t->type),
                        (int)lo, (int)hi);
        return 0;
    case EI_GQ_CHANNEL:
    case EI_GQ_GROUP: break;
    default: return terr(g, i, "unknown quantisation kind %d", (int)q->kind);
    }
    const char *qn = ei_gquant_name(q->kind);
    if (t->kind != EI_GK_CONST)
        return terr(g, i, "per-%s quantisation on a %s tensor (only CONST weights may have it)", qn,
                    ei_gkind_name(t->kind));
    if (t->type != EI_GT_I8 && t->type != EI_GT_I16 && t->type != EI_GT_I4)
        return terr(g, i, "per-%s quantisation on a %s tensor (i8, i16 or i4 only)", qn, ei_gtype_name(t->type));
    if (q->zero_point != 0)
        return terr(g, i, "zero point %d; per-%s quantisation is symmetric (0)", (int)q->zero_point, qn);
    if (q->axis < 0 || q->axis >= t->rank)
        return terr(g, i, "quantisation axis %d outside [0, %d)", (int)q->axis, (int)t->rank);
    if (q->scales < 0 || q->scales >= g->n_tensors || q->scales == i)
        return terr(g, i, "scales tensor index %d out of range (or itself)", (int)q->scales);
    const ei_gtensor *s = &g->tensors[q->scales];
    if (s->kind != EI_GK_CONST || (s->type != EI_GT_F32 && s->type != EI_GT_F16) || s->q.kind != EI_GQ_NONE)
        return terr(g, i, "scales tensor '%s' is a %s %s, expected a CONST f32 or f16", s->name,
                    ei_gkind_name(s->kind), tdesc(s).s);
    int32_t want_rank = 1, want_shape[EI_G_MAX_RANK] = {t->shape[q->axis]};
    if (q->kind == EI_GQ_GROUP) {
        if (q->group < 1 || t->shape[q->axis] % q->group != 0)
            return terr(g, i, "group %d does not divide extent %d of axis %d", (int)q->group, (int)t->shape[q->axis],
                        (int)q->axis);
        want_rank = t->rank;
        memcpy(want_shape, t->shape, sizeof want_shape);
        want_shape[q->axis] = t->shape[q->axis] / q->group;
    }
    int ok = s->rank == want_rank;
    for (int32_t d = 0; ok && d < want_rank; d++) ok = s->shape[d] == want_shape[d];
    if (!ok)
        return terr(g, i, "scales tensor '%s' has shape %s, expected %s", s->name, shp(s).s,
                    ei_gshape_str(want_rank, want_shape, (char[64]){0}, 64));
    return 0;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp((*(const ei_gtensor *const *)a)->name, (*(const ei_gtensor *const *)b)->name);
}

static int check_names_unique(const ei_graph *g) {
    if (g->n_tensors < 2) return 0;
    const ei_gtensor **v = malloc((size_t)g->n_tensors * sizeof *v);
    if (!v) return gerr(g, "out of memory checking tensor names");
    for (int32_t i = 0; i < g->n_tensors; i++) v[i] = &g->tensors[i];
    qsort(v, (size_t)g->n_tensors, sizeof *v, name_cmp);
    int rc = 0;
    for (int32_t i = 1; i < g->n_tensors && !rc; i++)
        if (strcmp(v[i - 1]->name, v[i]->name) == 0) {
            int a = (int)(v[i - 1] - g->tensors), b = (int)(v[i] - g->tensors);
            rc = gerr(g, "tensor name '%s' is used by tensors %d and %d", v[i]->name, a < b ? a : b, a < b ? b : a);
        }
    free(v);
    return rc;
}

/* ------------------------------------------------------------------ order */

/* Kahn's algorithm over the node dependency graph: 1 if some nodes lie on a cycle, 0 if the nodes
 * could be reordered topologically, -1 on out of memory. Only run to word an order error. */
static int has_cycle(const ei_graph *g, const int32_t *writer) {
    int32_t nt = g->n_tensors, nn = g->n_nodes;
    int32_t *start = calloc((size_t)nt + 1, sizeof *start), *indeg = calloc((size_t)nn + 1, sizeof *indeg);
    int32_t *cons = NULL, *fill = NULL, *queue = malloc(((size_t)nn + 1) * sizeof *queue);
    size_t edges = 0;
    int rc = -1;
    if (!start || !indeg || !queue) goto done;
    for (int32_t i = 0; i < nn; i++)
        for (int32_t k = 0; k < g->nodes[i].n_in; k++) {
            int32_t t = g->nodes[i].in[k];
            if (writer[t] < 0) continue;
            start[t + 1]++;
            indeg[i]++;
            edges++;
        }
    for (int32_t t = 0; t < nt; t++) start[t + 1] += start[t];
    cons = malloc((edges + 1) * sizeof *cons);
    fill = malloc(((size_t)nt + 1) * sizeof *fill);
    if (!cons || !fill) goto done;
    memcpy(fill, start, (size_t)nt * sizeof *fill);
    for (int32_t i = 0; i < nn; i++)
        for (int32_t k = 0; k < g->nodes[i].n_in; k++) {
            int32_t t = g->nodes[i].in[k];
            if (writer[t] >= 0) cons[fill[t]++] = i;
        }
    int32_t head = 0, tail = 0;
    for (int32_t i = 0; i < nn; i++)
        if (!indeg[i]) queue[tail++] = i;
    while (head < tail) {
        int32_t t = g->nodes[queue[head++]].out;
        for (int32_t e = start[t]; e < start[t + 1]; e++)
            if (--indeg[cons[e]] == 0) queue[tail++] = cons[e];
    }
    rc = tail < nn;
done:
    free(start);
    free(indeg);
    free(cons);
    free(fill);
    free(queue);
    return rc;
}

/* Op code, input count and every index of every node, and who writes each tensor. */
static int check_nodes_structure(const ei_graph *g, int32_t *writer) {
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const ei_gnode *n = &g->nodes[i];
        vctx c = {.g = g, .idx = i, .n = n};
        if (n->op <= 0 || n->op >= EI_OP_COUNT || !rules[n->op].check)
            return gerr(g, "node %d: unknown op code %d", (int)i, (int)n->op);
        const op_rule *r = &rules[n->op];
        if (n->n_in < r->min_in || n->n_in > r->max_in) {
            if (r->min_in == r->max_in) return nerr(&c, "takes %d inputs, has %d", r->min_in, (int)n->n_in);
            return nerr(&c, "takes %d..%d inputs, has %d", r->min_in, r->max_in, (int)n->n_in);
        }
        for (int32_t k = 0; k < n->n_in; k++)
            if (n->in[k] < 0 || n->in[k] >= g->n_tensors)
                return nerr(&c, "input %d: tensor index %d out of range [0, %d)", (int)k, (int)n->in[k],
                            (int)g->n_tensors);
        if (n->out < 0 || n->out >= g->n_tensors)
            return nerr(&c, "output tensor index %d out of range [0, %d)", (int)n->out, (int)g->n_tensors);
        const ei_gtensor *o = &g->tensors[n->out];
        if (o->kind == EI_GK_CONST || o->kind == EI_GK_INPUT)
            return nerr(&c, "writes %s tensor %d '%s'", o->kind == EI_GK_CONST ? "CONST" : "INPUT", (int)n->out, o->name);
        if (writer[n->out] >= 0)
            return nerr(&c, "writes tensor '%s', already written by node %d (%s)", o->name, (int)writer[n->out],
                        ei_gop_name(g->nodes[writer[n->out]].op));
        writer[n->out] = i;
    }
    return 0;
}

static int check_node(const ei_graph *g, int32_t i, const int32_t *writer) {
    const ei_gnode *n = &g->nodes[i];
    vctx c = {.g = g, .idx = i, .n = n, .out = &g->tensors[n->out]};
    for (int32_t k = 0; k < n->n_in; k++) {
        const ei_gtensor *t = &g->tensors[n->in[k]];
        c.x[k] = t;
        if (t->kind == EI_GK_CONST || t->kind == EI_GK_INPUT) continue;
        int32_t w = writer[n->in[k]];
        if (w < 0) return nerr(&c, "reads %s tensor '%s' that no node writes", ei_gkind_name(t->kind), t->name);
        if (w >= i) {
            int cyc = has_cycle(g, writer);
            if (cyc == 1)
                return nerr(&c, "reads '%s', written by node %d (%s): the nodes form a cycle", t->name, (int)w,
                            ei_gop_name(g->nodes[w].op));
            return nerr(&c, "reads '%s' before node %d (%s) writes it (nodes not in topological order)", t->name,
                        (int)w, ei_gop_name(g->nodes[w].op));
        }
    }
    if (rules[n->op].check(&c)) return -1;
    const ei_gtensor *o = c.out;
    int same = o->rank == c.rank;
    for (int32_t d = 0; same && d < c.rank; d++) same = o->shape[d] == c.shape[d];
    if (!same)
        return nerr(&c, "output '%s' has shape %s, the op gives %s", o->name, shp(o).s,
                    ei_gshape_str(c.rank, c.shape, (char[64]){0}, 64));
    return 0;
}

int ei_graph_validate(const ei_graph *g, uint64_t blob_size) {
    if (!g) return ei_error_set("graph: NULL");
    if (!g->name) return ei_error_set("graph: no name");
    if (g->n_tensors < 0 || g->n_nodes < 0 || (g->n_tensors && !g->tensors) || (g->n_nodes && !g->nodes))
        return gerr(g, "bad tensor or node count (%d, %d)", (int)g->n_tensors, (int)g->n_nodes);
    for (int32_t i = 0; i < g->n_tensors; i++)
        if (check_tensor_own(g, i, blob_size)) return -1;
    for (int32_t i = 0; i < g->n_tensors; i++)
        if (check_tensor_quant(g, i)) return -1;
    if (check_names_unique(g)) return -1;
    int32_t *writer = malloc(((size_t)g->n_tensors + 1) * sizeof *writer);
    if (!writer) return gerr(g, "out of memory");
    for (int32_t i = 0; i < g->n_tensors; i++) writer[i] = -1;
    int rc = check_nodes_structure(g, writer);
    for (int32_t i = 0; !rc && i < g->n_nodes; i++) rc = check_node(g, i, writer);
    for (int32_t i = 0; !rc && i < g->n_tensors; i++)
        if (g->tensors[i].kind == EI_GK_OUTPUT && writer[i] < 0)
            rc = gerr(g, "OUTPUT tensor %d '%s' is never written", (int)i, g->tensors[i].name);
    free(writer);
    return rc;
}
