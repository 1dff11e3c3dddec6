/* Prepare-time fusion for the cpu backend: recognises node patterns and replaces each by one step
 * that runs a fused kernel, as TFLite/XNNPACK delegates do. A pattern fuses only when each of its
 * intermediates is a VALUE read by nothing but the pattern's next node (so it is never needed, and
 * never an OUTPUT), and every tensor is F32.
 *   RMSNorm  t1 = MUL(x, x); t2 = MEAN(t1, last axis, keep_dims); t3 = ADD(t2, eps[1]);
 *            t4 = RSQRT(t3); t5 = MUL(x, t4); y = MUL(t5, w[D])       (operands in either order)
 *   SwiGLU   s = LOGISTIC(g); a = MUL(g, s); y = MUL(a, u)           (g, u, y of one shape)
 *   RoPE     a = SLICE(X, last axis [0, w)); b = SLICE(X, last axis [w, 2w)) (a, b read only here);
 *            y = CONCAT(SUB(MUL(a, c), MUL(b, s)), ADD(MUL(a, s), MUL(b, c)), last axis), with
 *            X [T, H, ..., 2w] and c, s [T, 1, ...] (deploy/ir_emit.c's rope, both layouts)
 *   BATCH_MATMUL of a transposed operand  y = BATCH_MATMUL(a, TRANSPOSE(X, perm {1, 0, 2})), not
 *            adj_x: the kernel reads X [T, B, d] in place with strides (deploy/ir_emit.c's attention
 *            over the K and V caches, which would otherwise be copied whole per call)
 *   scaled BATCH_MATMUL  y = MUL(BATCH_MATMUL(..), alpha) (either order; the BATCH_MATMUL plain or
 *            the step above, not both adj flags), alpha a CONST scalar (attention's 1/sqrt(d))
 * The fused step sits where y was computed: x, w, g and u were all computed before it. Fusing
 * saves 5 (RMSNorm), 2 (SwiGLU) or 8 (RoPE) passes over the activations and their buffers, or the
 * copy of the transposed operand; the fused kernels do the same IEEE operations per element, so
 * the results are the same bits. */
#include "runtime/cpu_internal.h"

#include "core/ei_half.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const ei_graph *g;
    int32_t *readers; /* [n_tensors] */
    int32_t *prod;    /* [n_tensors]: producing node or -1 */
    uint8_t *used;    /* [n_nodes]: already part of a pattern */
} fctx;

static int f32(const ei_gtensor *t) { return t->type == EI_GT_F32 && t->q.kind == EI_GQ_NONE; }

/* The producer of t, if t is a pattern-internal F32 VALUE made by op; else -1. */
static int32_t inner(const fctx *c, int32_t t, ei_gop op) {
    const ei_gtensor *tt = &c->g->tensors[t];
    int32_t p = c->prod[t];
    if (tt->kind != EI_GK_VALUE || c->readers[t] != 1 || p < 0 || c->used[p] || !f32(tt)) return -1;
    return c->g->nodes[p].op == op ? p : -1;
}

static int same_shape(const ei_gtensor *a, const ei_gtensor *b) {
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

static int read_scalar(const ei_graph *g, const uint8_t *blob, int32_t t, float *v) {
    const ei_gtensor *e = &g->tensors[t];
    if (e->kind != EI_GK_CONST || ei_gtensor_numel(e) != 1 || e->q.kind != EI_GQ_NONE || !blob) return 0;
    if (e->type == EI_GT_F32) {
        memcpy(v, blob + e->offset, 4);
        return 1;
    }
    if (e->type == EI_GT_F16) {
        uint16_t h;
        memcpy(&h, blob + e->offset, 2);
        *v = ei_f16_to_f32(h);
        return 1;
    }
    return 0;
}

/* y = MUL(t5, w) ... as above; fills the step and marks the nodes. */
static int match_rmsnorm(fctx *c, const uint8_t *blob, int32_t ny, ei_cpu_step *s) {
    const ei_graph *g = c->g;
    const ei_gnode *y = &g->nodes[ny];
    for (int o = 0; o < 2; o++) {
        int32_t t5 = y->in[o], w = y->in[1 - o];
        int32_t n5 = inner(c, t5, EI_OP_MUL);
        if (n5 < 0) continue;
        for (int o2 = 0; o2 < 2; o2++) {
            int32_t xt = g->nodes[n5].in[o2], t4 = g->nodes[n5].in[1 - o2];
            int32_t n4 = inner(c, t4, EI_OP_RSQRT);
            if (n4 < 0) continue;
            int32_t n3 = inner(c, g->nodes[n4].in[0], EI_OP_ADD);
            if (n3 < 0) continue;
            for (int o3 = 0; o3 < 2; o3++) {
                int32_t t2 = g->nodes[n3].in[o3], e = g->nodes[n3].in[1 - o3];
                float eps;
                int32_t n2 = inner(c, t2, EI_OP_MEAN);
                if (n2 < 0 || !read_scalar(g, blob, e, &eps)) continue;
                const ei_gtensor *xx = &g->tensors[xt];
                const ei_gnode *mean = &g->nodes[n2];
                if (xx->rank < 1 || !mean->p.mean.keep_dims || ei_cpu_axis(mean->p.mean.axis, xx->rank) != xx->rank - 1)
                    continue;
                int32_t n1 = inner(c, mean->in[0], EI_OP_MUL);
                if (n1 < 0 || g->nodes[n1].in[0] != xt || g->nodes[n1].in[1] != xt) continue;
                const ei_gtensor *wt = &g->tensors[w], *yt = &g->tensors[y->out];
                const int32_t D = xx->shape[xx->rank - 1];
                if (!f32(xx) || !f32(wt) || !f32(yt) || !same_shape(xx, yt) || wt->rank < 1 || wt->rank > xx->rank ||
                    wt->shape[wt->rank - 1] != D || ei_gtensor_numel(wt) != D)
                    continue;
                c->used[n1] = c->used[n2] = c->used[n3] = c->used[n4] = c->used[n5] = c->used[ny] = 1;
                s->fused = EI_CPU_FUSE_RMSNORM;
                s->first = n1;
                s->n_in = 2;
                s->in[0] = xt;
                s->in[1] = w;
                s->eps = eps;
                return 1;
            }
        }
    }
    return 0;
}

static int match_swiglu(fctx *c, int32_t ny, ei_cpu_step *s) {
    const ei_graph *g = c->g;
    const ei_gnode *y = &g->nodes[ny];
    for (int o = 0; o < 2; o++) {
        int32_t a = y->in[o], u = y->in[1 - o];
        int32_t na = inner(c, a, EI_OP_MUL);
        if (na < 0) continue;
        for (int o2 = 0; o2 < 2; o2++) {
            int32_t gt = g->nodes[na].in[o2], st = g->nodes[na].in[1 - o2];
            int32_t ns = inner(c, st, EI_OP_LOGISTIC);
            if (ns < 0 || g->nodes[ns].in[0] != gt) continue;
            const ei_gtensor *gg = &g->tensors[gt], *ut = &g->tensors[u], *yt = &g->tensors[y->out];
            if (!f32(gg) || !f32(ut) || !f32(yt) || !same_shape(gg, yt) || !same_shape(ut, yt)) continue;
            c->used[ns] = c->used[na] = c->used[ny] = 1;
            s->fused = EI_CPU_FUSE_SWIGLU;
            s->first = ns;
            s->n_in = 2;
            s->in[0] = gt;
            s->in[1] = u;
            return 1;
        }
    }
    return 0;
}

/* The two halves of a RoPE pair: SLICEs of one X along its last axis, read by two MULs each. */
static int32_t rope_half(const fctx *c, int32_t t, int32_t *x, int32_t *begin, int32_t *width) {
    const ei_graph *g = c->g;
    const ei_gtensor *tt = &g->tensors[t];
    const int32_t p = c->prod[t];
    if (tt->kind != EI_GK_VALUE || c->readers[t] != 2 || p < 0 || c->used[p] || !f32(tt)) return -1;
    const ei_gnode *n = &g->nodes[p];
    if (n->op != EI_OP_SLICE) return -1;
    const ei_gtensor *tx = &g->tensors[n->in[0]];
    const int r = tx->rank;
    if (!f32(tx) || r < 3 || tt->rank != r) return -1;
    for (int i = 0; i < r - 1; i++)
        if (n->p.slice.begin[i] != 0 || tt->shape[i] != tx->shape[i]) return -1;
    *x = n->in[0];
    *begin = n->p.slice.begin[r - 1];
    *width = tt->shape[r - 1];
    return p;
}

static int mul_of(const ei_gnode *n, int32_t u, int32_t v) {
    return (n->in[0] == u && n->in[1] == v) || (n->in[0] == v && n->in[1] == u);
}

static int match_rope(fctx *c, int32_t ny, ei_cpu_step *s) {
    const ei_graph *g = c->g;
    const ei_gnode *y = &g->nodes[ny];
    const ei_gtensor *yt = &g->tensors[y->out];
    if (y->n_in != 2 || !f32(yt) || ei_cpu_axis(y->p.concat.axis, yt->rank) != yt->rank - 1) return 0;
    const int32_t nsub = inner(c, y->in[0], EI_OP_SUB), nadd = inner(c, y->in[1], EI_OP_ADD);
    if (nsub < 0 || nadd < 0) return 0;
    const int32_t n1 = inner(c, g->nodes[nsub].in[0], EI_OP_MUL), n2 = inner(c, g->nodes[nsub].in[1], EI_OP_MUL);
    const int32_t n3 = inner(c, g->nodes[nadd].in[0], EI_OP_MUL), n4 = inner(c, g->nodes[nadd].in[1], EI_OP_MUL);
    if (n1 < 0 || n2 < 0 || n3 < 0 || n4 < 0) return 0;
    /* n1 = a c, n2 = b s: find a (begin 0) and b (begin w) among their operands */
    for (int o1 = 0; o1 < 2; o1++)
        for (int o2 = 0; o2 < 2; o2++) {
            const int32_t a = g->nodes[n1].in[o1], ct = g->nodes[n1].in[1 - o1];
            const int32_t b = g->nodes[n2].in[o2], st = g->nodes[n2].in[1 - o2];
            int32_t xa, xb, ba, bb, wa, wb;
            const int32_t na = rope_half(c, a, &xa, &ba, &wa), nb = rope_half(c, b, &xb, &bb, &wb);
            if (na < 0 || nb < 0 || na == nb || xa != xb || ba != 0 || bb != wa || wb != wa) continue;
            const ei_gtensor *tx = &g->tensors[xa], *tc = &g->tensors[ct], *ts = &g->tensors[st], *ta = &g->tensors[a];
            const int r = tx->rank;
            if (tx->shape[r - 1] != 2 * wa || !same_shape(tx, yt) || !f32(tc) || !f32(ts) || !same_shape(tc, ts) ||
                tc->rank != r || tc->shape[0] != ta->shape[0] || tc->shape[1] != 1)
                continue;
            int ok = 1;
            for (int i = 2; i < r; i++) ok &= tc->shape[i] == ta->shape[i];
            /* the ADD takes a s and b c (in either order) */
            if (!ok || !((mul_of(&g->nodes[n3], a, st) && mul_of(&g->nodes[n4], b, ct)) ||
                         (mul_of(&g->nodes[n4], a, st) && mul_of(&g->nodes[n3], b, ct))))
                continue;
            const int32_t nodes[] = {na, nb, n1, n2, n3, n4, nsub, nadd, ny};
            int32_t first = ny;
            for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
                c->used[nodes[i]] = 1;
                if (nodes[i] < first) first = nodes[i];
            }
            s->fused = EI_CPU_FUSE_ROPE;
            s->first = first;
            s->n_in = 3;
            s->in[0] = xa;
            s->in[1] = ct;
            s->in[2] = st;
            return 1;
        }
    return 0;
}

/* y = BATCH_MATMUL(a, t), t = TRANSPOSE(X, {1, 0, 2}) read only here: the step reads X. The
 * transpose keeps the element type and quantisation, so X converts to F32 exactly as t would. */
static int match_bmm_t(fctx *c, int32_t ny, ei_cpu_step *s) {
    const ei_graph *g = c->g;
    const ei_gnode *y = &g->nodes[ny];
    if (y->n_in != 2 || y->p.bmm.adj_x) return 0;
    const int32_t t = y->in[1], p = c->prod[t];
    const ei_gtensor *tt = &g->tensors[t];
    if (tt->kind != EI_GK_VALUE || c->readers[t] != 1 || p < 0 || c->used[p] || tt->rank != 3) return 0;
    const ei_gnode *tr = &g->nodes[p];
    if (tr->op != EI_OP_TRANSPOSE || tr->p.transpose.perm[0] != 1 || tr->p.transpose.perm[1] != 0 ||
        tr->p.transpose.perm[2] != 2 || g->tensors[y->in[0]].rank != 3)
        return 0;
    c->used[p] = c->used[ny] = 1;
    s->fused = EI_CPU_FUSE_BMM_T;
    s->bmm = ny;
    s->first = p;
    s->n_in = 2;
    s->in[0] = y->in[0];
    s->in[1] = tr->in[0];
    return 1;
}

/* y = MUL(t, alpha) (either order), t = BATCH_MATMUL(...) (plain, or the fused step above) read
 * only here, alpha a CONST scalar: one step that scales each output row right after computing it
 * (the same IEEE product as the MUL), which saves a pass over, and a buffer of, attention's scores. */
static int match_bmm_scale(fctx *c, const uint8_t *blob, int32_t ny, ei_cpu_step *fused) {
    const ei_graph *g = c->g;
    const ei_gnode *y = &g->nodes[ny];
    if (y->n_in != 2 || !f32(&g->tensors[y->out])) return 0;
    for (int o = 0; o < 2; o++) {
        const int32_t t = y->in[o], p = c->prod[t];
        const ei_gtensor *tt = &g->tensors[t];
        float alpha;
        if (p < 0 || tt->kind != EI_GK_VALUE || c->readers[t] != 1 || !f32(tt) || !same_shape(tt, &g->tensors[y->out]) ||
            !read_scalar(g, blob, y->in[1 - o], &alpha))
            continue;
        const ei_gnode *b = &g->nodes[p];
        const int bt = fused[p].fused == EI_CPU_FUSE_BMM_T;
        if (b->op != EI_OP_BATCH_MATMUL || (c->used[p] && !bt) || b->n_in != 2 || (b->p.bmm.adj_x && b->p.bmm.adj_y))
            continue;
        ei_cpu_step *s = &fused[ny];
        if (bt) {
            *s = fused[p];
            fused[p].fused = EI_CPU_FUSE_NONE; /* absorbed: its nodes stay used */
        } else {
            memset(s, 0, sizeof *s);
            s->fused = EI_CPU_FUSE_BMM;
            s->first = p;
            s->n_in = 2;
            memcpy(s->in, b->in, 2 * sizeof *s->in);
            s->bmm = p;
        }
        s->scaled = 1;
        s->alpha = alpha;
        c->used[p] = c->used[ny] = 1;
        return 1;
    }
    return 0;
}

int32_t ei_cpu_fuse(const ei_graph *g, const uint8_t *blob, int enable, ei_cpu_step *steps) {
    const int32_t nn = g->n_nodes;
    fctx c = {g, NULL, NULL, NULL};
    ei_cpu_step *fused = NULL; /* per node: the fused step ending there */
    if (enable && nn > 0) {
        c.readers = calloc((size_t)g->n_tensors, sizeof *c.readers);
        c.prod = malloc((size_t)g->n_tensors * sizeof *c.prod);
        c.used = calloc((size_t)nn, 1);
        fused = calloc((size_t)nn, sizeof *fused);
        if (!c.readers || !c.prod || !c.used || !fused) enable = 0; /* out of memory: run unfused */
    }
    if (enable && nn > 0) {
        for (int32_t t = 0; t < g->n_tensors; t++) c.prod[t] = -1;
        for (int32_t i = 0; i < nn; i++) {
            for (int32_t j = 0; j < g->nodes[i].n_in; j++) c.readers[g->nodes[i].in[j]]++;
            c.prod[g->nodes[i].out] = i;
        }
        for (int32_t i = 0; i < nn; i++) {
            if (g->nodes[i].op != EI_OP_MUL || g->nodes[i].n_in != 2 || c.used[i]) continue;
            if (!match_rmsnorm(&c, blob, i, &fused[i])) match_swiglu(&c, i, &fused[i]);
        }
        for (int32_t i = 0; i < nn; i++)
            if (g->nodes[i].op == EI_OP_CONCATENATION && !c.used[i]) match_rope(&c, i, &fused[i]);
        for (int32_t i = 0; i < nn; i++)
            if (g->nodes[i].op == EI_OP_BATCH_MATMUL && !c.used[i]) match_bmm_t(&c, i, &fused[i]);
        for (int32_t i = 0; i < nn; i++)
            if (g->nodes[i].op == EI_OP_MUL && !c.used[i]) match_bmm_scale(&c, blob, i, fused);
    }
    int32_t ns = 0;
    for (int32_t i = 0; i < nn; i++) {
        const ei_gnode *n = &g->nodes[i];
        ei_cpu_step *s = &steps[ns];
        if (enable && c.used[i] && !fused[i].fused) continue; /* absorbed into a later step */
        if (enable && fused[i].fused) {
            *s = fused[i];
        } else {
            memset(s, 0, sizeof *s);
            s->n_in = n->n_in;
            memcpy(s->in, n->in, sizeof s->in);
        }
        s->node = i;
        if (!s->fused) s->first = i;
        s->out = n->out;
        ns++;
    }
    free(c.readers);
    free(c.prod);
    free(c.used);
    free(fused);
    return ns;
}
