/* Model ops: RMSNorm, RoPE, fused GQA attention, embedding lookup. The heavy loops are the kernels
 * in kernels/kernels.h. */
#include "autograd/ag_internal.h"
#include "kernels/kernels.h"

#include <string.h>

/* ------------------------------------------------------------------ rmsnorm
 * src: x, [w]; scratch: rstd per row */

static int rmsnorm_forward(ag_node *n) {
    const void *w = n->nsrc == 2 ? n->src[1]->t.data : NULL;
    if (n->t.dtype == AG_F32)
        ei_k_rmsnorm_forward_f32(n->dim.rmsnorm.rows, n->dim.rmsnorm.dim, n->src[0]->t.data, w, n->p.rmsnorm.eps,
                                 n->t.data, n->scratch);
    else
        ei_k_rmsnorm_forward_f64(n->dim.rmsnorm.rows, n->dim.rmsnorm.dim, n->src[0]->t.data, w, n->p.rmsnorm.eps,
                                 n->t.data, n->scratch);
    return 0;
}

static void rmsnorm_backward(ag_node *n) {
    const void *w = n->nsrc == 2 ? n->src[1]->t.data : NULL;
    /* dx is written once per element (no zeroing pass when fresh); dw, one row of dim sums, is
     * zeroed and accumulated as before. The kernel writes dx before dw, for rmsnorm(x, x). */
    int fx;
    void *dx = ag_grad_acquire_overwrite(n->src[0], &fx), *dw = n->nsrc == 2 ? ag_grad_acquire(n->src[1]) : NULL;
    if (!dx && !dw) return;
    if (n->t.dtype == AG_F32)
        ei_k_rmsnorm_backward_f32(n->dim.rmsnorm.rows, n->dim.rmsnorm.dim, n->src[0]->t.data, w, n->scratch,
                                  n->t.grad, dx, fx, dw);
    else
        ei_k_rmsnorm_backward_f64(n->dim.rmsnorm.rows, n->dim.rmsnorm.dim, n->src[0]->t.data, w, n->scratch,
                                  n->t.grad, dx, fx, dw);
}

static const ag_op op_rmsnorm = {AG_OP_RMSNORM, rmsnorm_forward, rmsnorm_backward, 0, 0};

ag_tensor *ag_rmsnorm(ag_graph *g, ag_tensor *x, ag_tensor *w, double eps) {
    ag_tensor *src[2] = {x, w};
    const int ns = w ? 2 : 1;
    if (ag_check_srcs(g, &op_rmsnorm, ns, src)) return NULL;
    char sx[96], sw[96];
    if (!ag_is_float(x) || (w && !ag_is_float(w))) return ag_fail(g, "rmsnorm: operands must be float");
    const int64_t D = x->shape[x->ndim - 1];
    if (w && (w->ndim != 1 || w->shape[0] != D))
        return ag_fail(g, "rmsnorm: weight %s does not match x %s", ag_shape_str(w, sw, sizeof sw),
                       ag_shape_str(x, sx, sizeof sx));
    if (!(eps >= 0)) return ag_fail(g, "rmsnorm: eps must be >= 0");
    ag_node *n = ag_node_new(g, &op_rmsnorm, x->ndim, x->shape, ns, src);
    if (!n) return NULL;
    n->p.rmsnorm.eps = eps;
    n->dim.rmsnorm.rows = x->numel / D;
    n->dim.rmsnorm.dim = D;
    n->scratch = ag_arena_alloc(g, (size_t)n->dim.rmsnorm.rows * ag_dtype_size(g->dtype));
    return n->scratch ? &n->t : ag_fail(g, "rmsnorm: out of memory");
}

/* ------------------------------------------------------------------ rope
 * src: x, pos; scratch: (cos, sin) table, [T, d/2, 2] per row (the node's own), or
 * [max_pos + 1, d/2, 2] per position (built with the node, shared with the graph's other rope nodes
 * of the same theta, head dim and max_pos: g->rope); scratch2: the positions a per-row table was
 * computed for (recomputed when they change); table_valid: scratch holds a per-row table at all
 * (arena memory starts zeroed, not as a table) */

/* The (cos, sin) table of t positions (pos, or 0 .. t-1 when NULL) in the graph's dtype. */
static void rope_angles(ag_dtype dt, int64_t t, int64_t d, const int32_t *pos, double theta, void *cs) {
    if (dt == AG_F32)
        ei_k_rope_angles_f32(t, d, pos, theta, cs);
    else
        ei_k_rope_angles_f64(t, d, pos, theta, cs);
}

static int rope_table(ag_node *n, const void **cs, const int32_t **idx) {
    const int64_t T = n->dim.rope.t, d = n->dim.rope.d, maxp = n->p.rope.max_pos;
    const double theta = n->p.rope.theta;
    const int32_t *pos = n->src[1]->t.data;
    if (maxp > 0) {
        for (int64_t r = 0; r < T; r++)
            if (pos[r] < 0 || pos[r] > maxp)
                return ei_error_set("rope: position %d of row %lld outside [0, %lld]", pos[r], (long long)r,
                                    (long long)maxp);
        *idx = pos;
    } else {
        if (!n->table_valid || memcmp(pos, n->scratch2, (size_t)T * sizeof(int32_t)) != 0) {
            rope_angles(n->t.dtype, T, d, pos, theta, n->scratch);
            memcpy(n->scratch2, pos, (size_t)T * sizeof(int32_t));
            n->table_valid = 1;
        }
        *idx = NULL;
    }
    *cs = n->scratch;
    return 0;
}

static int rope_forward(ag_node *n) {
    const void *cs;
    const int32_t *idx;
    if (rope_table(n, &cs, &idx)) return -1;
    if (n->t.dtype == AG_F32)
        ei_k_rope_tab_f32(n->dim.rope.t, n->dim.rope.h, n->dim.rope.d, cs, idx, (int)n->p.rope.layout, 0, 0,
                          n->src[0]->t.data, n->t.data);
    else
        ei_k_rope_tab_f64(n->dim.rope.t, n->dim.rope.h, n->dim.rope.d, cs, idx, (int)n->p.rope.layout, 0, 0,
                          n->src[0]->t.data, n->t.data);
    return 0;
}

static void rope_backward(ag_node *n) {
    int over; /* the rotation writes every element once: a fresh dx needs no zeroing */
    void *dx = ag_grad_acquire_overwrite(n->src[0], &over);
    const void *cs;
    const int32_t *idx;
    if (!dx || rope_table(n, &cs, &idx)) return; /* positions were checked by the forward */
    if (n->t.dtype == AG_F32)
        ei_k_rope_tab_f32(n->dim.rope.t, n->dim.rope.h, n->dim.rope.d, cs, idx, (int)n->p.rope.layout, 1, !over,
                          n->t.grad, dx);
    else
        ei_k_rope_tab_f64(n->dim.rope.t, n->dim.rope.h, n->dim.rope.d, cs, idx, (int)n->p.rope.layout, 1, !over,
                          n->t.grad, dx);
}

static const ag_op op_rope = {AG_OP_ROPE, rope_forward, rope_backward, 0, 0};

ag_tensor *ag_rope(ag_graph *g, ag_tensor *x, ag_tensor *pos, double theta, ag_rope_layout layout) {
    return ag_rope_ex(g, x, pos, theta, layout, 0);
}

ag_tensor *ag_rope_ex(ag_graph *g, ag_tensor *x, ag_tensor *pos, double theta, ag_rope_layout layout,
                      int32_t max_pos) {
    ag_tensor *src[2] = {x, pos};
    if (ag_check_srcs(g, &op_rope, 2, src)) return NULL;
    char sx[96], sp[96];
    ag_shape_str(x, sx, sizeof sx);
    ag_shape_str(pos, sp, sizeof sp);
    if (!ag_is_float(x)) return ag_fail(g, "rope: x must be float");
    if (pos->dtype != AG_I32) return ag_fail(g, "rope: positions must be int32");
    if (x->ndim != 2 && x->ndim != 3) return ag_fail(g, "rope: x must be [T, H, d] or [T, d], got %s", sx);
    const int64_t T = x->shape[0], d = x->shape[x->ndim - 1], H = x->ndim == 3 ? x->shape[1] : 1;
    if (d % 2) return ag_fail(g, "rope: head dim %lld of %s is odd", (long long)d, sx);
    if (pos->numel != T) return ag_fail(g, "rope: %s positions for x %s (one per row expected)", sp, sx);
    if (layout != AG_ROPE_INTERLEAVED && layout != AG_ROPE_HALF) return ag_fail(g, "rope: unknown layout %d", (int)layout);
    if (!(theta > 0)) return ag_fail(g, "rope: theta must be > 0");
    if (max_pos < 0) return ag_fail(g, "rope: max_pos %d is negative", (int)max_pos);
    ag_node *n = ag_node_new(g, &op_rope, x->ndim, x->shape, 2, src);
    if (!n) return NULL;
    n->p.rope.theta = theta;
    n->p.rope.layout = layout;
    n->p.rope.max_pos = max_pos;
    n->dim.rope.t = T;
    n->dim.rope.h = H;
    n->dim.rope.d = d;
    if (max_pos > 0) {
        if (!g->rope.tab || g->rope.theta != theta || g->rope.d != d || g->rope.max_pos != max_pos) {
            void *tab = ag_arena_alloc(g, (size_t)((max_pos + 1) * (d / 2) * 2) * ag_dtype_size(g->dtype));
            if (!tab) return ag_fail(g, "rope: out of memory");
            rope_angles(g->dtype, max_pos + 1, d, NULL, theta, tab);
            g->rope.tab = tab;
            g->rope.theta = theta;
            g->rope.d = d;
            g->rope.max_pos = max_pos;
        }
        n->scratch = g->rope.tab;
        return &n->t;
    }
    n->scratch = ag_arena_alloc(g, (size_t)(T * (d / 2) * 2) * ag_dtype_size(g->dtype));
    n->scratch2 = ag_arena_alloc(g, (size_t)T * sizeof(int32_t));
    return n->scratch && n->scratch2 ? &n->t : ag_fail(g, "rope: out of memory");
}

/* ------------------------------------------------------------------ attention
 * src: q, k, v, [valid]; scratch: lse [H, Tq]; bwd_scratch: the one-pass backward's workspace
 * (delta and dQ shares); keep (dim.attention.store_probs): the probability store */

/* Largest H * Tq * Tk whose probabilities are kept from the forward (64 MiB of float): one segment
 * with its caches; anything longer recomputes the scores in the backward. */
#define AG_ATTN_STORE_MAX ((int64_t)1 << 24)

/* The probability store, or NULL (forward-only graphs, or too large). */
static void *attn_store(const ag_node *n) {
    return n->dim.attention.store_probs ? n->keep : NULL;
}

static void attn_problem(const ag_node *n, ei_k_attn *p) {
    memset(p, 0, sizeof *p);
    const int np = n->p.attention.n_parts;
    p->tq = n->dim.attention.tq;
    p->tk = n->dim.attention.tk;
    p->h = n->dim.attention.h;
    p->hkv = n->dim.attention.hkv;
    p->d = n->dim.attention.d;
    p->dv = n->dim.attention.dv;
    p->causal_offset = n->p.attention.causal_offset;
    p->scale = n->p.attention.scale;
    p->n_parts = np;
    for (int i = 0; i < np; i++) p->part_len[i] = n->src[1 + i]->t.shape[0];
    if (!n->p.attention.masked) return;
    if (np == 1) { /* the mask as it is */
        const ag_node *m = n->src[3];
        if (m->t.dtype == AG_U8)
            p->valid_u8 = m->t.data;
        else
            p->valid_i32 = m->t.data;
        return;
    }
    p->valid_u8 = n->scratch2; /* the parts' masks joined by attn_join_masks */
}

/* The one mask over all keys the kernel reads, from the parts' masks (a part without one: all
 * valid), into scratch2: a few hundred bytes per call. */
static void attn_join_masks(ag_node *n) {
    const int np = n->p.attention.n_parts;
    uint8_t *all = n->scratch2;
    int s = 1 + 2 * np;
    for (int i = 0; i < np; i++) {
        const int64_t len = n->src[1 + i]->t.shape[0];
        if (n->p.attention.masked >> i & 1) {
            const ag_node *m = n->src[s++];
            if (m->t.dtype == AG_U8)
                memcpy(all, m->t.data, (size_t)len);
            else
                for (int64_t j = 0; j < len; j++) all[j] = ((const int32_t *)m->t.data)[j] != 0;
        } else {
            memset(all, 1, (size_t)len);
        }
        all += len;
    }
}

static int attention_forward(ag_node *n) {
    if (n->p.attention.masked && n->p.attention.n_parts > 1) attn_join_masks(n);
    ei_k_attn p;
    attn_problem(n, &p);
    const int np = p.n_parts;
    void *pst = attn_store(n);
    const void *k[EI_K_ATTN_MAX_PARTS], *v[EI_K_ATTN_MAX_PARTS];
    for (int i = 0; i < np; i++) k[i] = n->src[1 + i]->t.data, v[i] = n->src[1 + np + i]->t.data;
    if (n->t.dtype == AG_F32)
        ei_k_attention_forward_parts_f32(&p, n->src[0]->t.data, (const float *const *)k, (const float *const *)v,
                                         n->t.data, n->scratch, pst);
    else
        ei_k_attention_forward_parts_f64(&p, n->src[0]->t.data, (const double *const *)k, (const double *const *)v,
                                         n->t.data, n->scratch, pst);
    return 0;
}

static void attention_backward(ag_node *n) {
    const int np = n->p.attention.n_parts;
    void *dq = ag_grad_acquire(n->src[0]), *dk[EI_K_ATTN_MAX_PARTS], *dv[EI_K_ATTN_MAX_PARTS];
    const void *k[EI_K_ATTN_MAX_PARTS], *v[EI_K_ATTN_MAX_PARTS];
    int any = dq != NULL;
    for (int i = 0; i < np; i++) {
        dk[i] = ag_grad_acquire(n->src[1 + i]);
        dv[i] = ag_grad_acquire(n->src[1 + np + i]);
        k[i] = n->src[1 + i]->t.data;
        v[i] = n->src[1 + np + i]->t.data;
        any |= dk[i] || dv[i];
    }
    if (!any) return;
    ei_k_attn p;
    attn_problem(n, &p);
    const void *pst = attn_store(n);
    if (n->t.dtype == AG_F32)
        ei_k_attention_backward_parts_f32(&p, n->src[0]->t.data, (const float *const *)k, (const float *const *)v,
                                          n->t.data, n->scratch, n->t.grad, n->bwd_scratch, pst, dq,
                                          (float *const *)dk, (float *const *)dv);
    else
        ei_k_attention_backward_parts_f64(&p, n->src[0]->t.data, (const double *const *)k, (const double *const *)v,
                                          n->t.data, n->scratch, n->t.grad, n->bwd_scratch, pst, dq,
                                          (double *const *)dk, (double *const *)dv);
}

static const ag_op op_attention = {AG_OP_ATTENTION, attention_forward, attention_backward, 0, 0};

ag_tensor *ag_attention(ag_graph *g, ag_tensor *q, ag_tensor *k, ag_tensor *v, ag_tensor *valid, double scale,
                        int64_t causal_offset) {
    return ag_attention_parts(g, q, 1, &k, &v, &valid, scale, causal_offset);
}

ag_tensor *ag_attention_parts(ag_graph *g, ag_tensor *q, int n_parts, ag_tensor *const *kp, ag_tensor *const *vp,
                              ag_tensor *const *valid, double scale, int64_t causal_offset) {
    if (n_parts < 1 || n_parts > EI_K_ATTN_MAX_PARTS || !kp || !vp)
        return ag_fail(g, "attention: %d key parts (1..%d supported)", n_parts, EI_K_ATTN_MAX_PARTS);
    ag_tensor *src[1 + 3 * EI_K_ATTN_MAX_PARTS]; /* q, keys, values, masks */
    int ns = 0;
    src[ns++] = q;
    for (int i = 0; i < n_parts; i++) src[ns++] = kp[i];
    for (int i = 0; i < n_parts; i++) src[ns++] = vp[i];
    unsigned masked = 0;
    for (int i = 0; valid && i < n_parts; i++)
        if (valid[i]) {
            src[ns++] = valid[i];
            masked |= 1u << i;
        }
    if (ag_check_srcs(g, &op_attention, ns, src)) return NULL;
    /* the key-tile tasks of the backward write the parts' gradients in parallel: a tensor may be
     * the keys and the values of one part, never of two */
    for (int i = 0; i < n_parts; i++)
        for (int j = 0; j < i; j++)
            if (kp[i] == kp[j] || vp[i] == vp[j] || kp[i] == vp[j] || vp[i] == kp[j])
                return ag_fail(g, "attention: key / value parts %d and %d share a tensor", j, i);
    char sq[96], sk[96], sv[96];
    ag_shape_str(q, sq, sizeof sq);
    ag_shape_str(kp[0], sk, sizeof sk);
    ag_shape_str(vp[0], sv, sizeof sv);
    if (!ag_is_float(q)) return ag_fail(g, "attention: q, k, v must be float");
    if (q->ndim != 3) return ag_fail(g, "attention: q, k, v must be [T, heads, d]: q %s, k %s, v %s", sq, sk, sv);
    const int64_t Tq = q->shape[0], H = q->shape[1], d = q->shape[2];
    const int64_t Hkv = kp[0]->shape[1], dvv = vp[0]->shape[2];
    int64_t Tk = 0;
    for (int i = 0; i < n_parts; i++) {
        ag_tensor *k = kp[i], *v = vp[i];
        ag_shape_str(k, sk, sizeof sk);
        ag_shape_str(v, sv, sizeof sv);
        if (!ag_is_float(k) || !ag_is_float(v)) return ag_fail(g, "attention: q, k, v must be float");
        if (k->ndim != 3 || v->ndim != 3)
            return ag_fail(g, "attention: q, k, v must be [T, heads, d]: q %s, k %s, v %s", sq, sk, sv);
        if (k->shape[2] != d) return ag_fail(g, "attention: head dims differ: q %s, k %s", sq, sk);
        if (v->shape[0] != k->shape[0] || v->shape[1] != k->shape[1])
            return ag_fail(g, "attention: k %s and v %s differ", sk, sv);
        if (k->shape[1] != Hkv || v->shape[2] != dvv)
            return ag_fail(g, "attention: key part %d (k %s, v %s) differs from part 0 off the rows", i, sk, sv);
        Tk += k->shape[0];
    }
    if (H % Hkv) return ag_fail(g, "attention: %lld query heads not a multiple of %lld kv heads: q %s, k %s",
                                (long long)H, (long long)Hkv, sq, sk);
    for (int i = 0; valid && i < n_parts; i++) {
        if (!valid[i]) continue;
        if (valid[i]->dtype != AG_U8 && valid[i]->dtype != AG_I32)
            return ag_fail(g, "attention: valid mask must be uint8 or int32");
        if (valid[i]->numel != kp[i]->shape[0])
            return ag_fail(g, "attention: valid mask has %lld entries for %lld keys", (long long)valid[i]->numel,
                           (long long)kp[i]->shape[0]);
    }
    if (!(scale == scale)) return ag_fail(g, "attention: scale is NaN");
    ei_k_attn kp_;
    if (causal_offset < -Tq - 1) causal_offset = -Tq - 1; /* no query sees a key; keeps index math in range */
    const int64_t shape[3] = {Tq, H, dvv};
    ag_node *n = ag_node_new(g, &op_attention, 3, shape, ns, src);
    if (!n) return NULL;
    n->p.attention.scale = scale;
    n->p.attention.causal_offset = causal_offset;
    n->p.attention.n_parts = n_parts;
    n->p.attention.masked = masked;
    n->dim.attention.tq = Tq;
    n->dim.attention.tk = Tk;
    n->dim.attention.h = H;
    n->dim.attention.hkv = Hkv;
    n->dim.attention.d = d;
    n->dim.attention.dv = dvv;
    n->dim.attention.store_probs = H * Tq * Tk <= AG_ATTN_STORE_MAX;
    n->scratch = ag_arena_alloc(g, (size_t)(H * Tq) * ag_dtype_size(g->dtype));
    if (masked && n_parts > 1 && !(n->scratch2 = ag_arena_alloc(g, (size_t)Tk)))
        return ag_fail(g, "attention: out of memory");
    attn_problem(n, &kp_);
    /* the workspace lives in the backward only (a shared gradient pool may hold it); the
     * probabilities are written by the forward */
    n->bwd_bytes = (size_t)ei_k_attention_ws_len(&kp_) * ag_dtype_size(g->dtype);
    n->bwd_shared = 1;
    n->keep_bytes = n->dim.attention.store_probs ? (size_t)ei_k_attention_p_len(&kp_) * ag_dtype_size(g->dtype) : 0;
    return n->scratch ? &n->t : ag_fail(g, "attention: out of memory");
}

/* ------------------------------------------------------------------ embedding
 * src: table [V, D], ids */

static int embedding_forward(ag_node *n) {
    const int64_t V = n->dim.embedding.vocab, D = n->dim.embedding.dim, N = n->dim.embedding.count;
    const int32_t *ids = n->src[1]->t.data;
    const size_t row = (size_t)D * ag_dtype_size(n->t.dtype);
    for (int64_t i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return ei_error_set("embedding: id %d at %lld outside [0, %lld)", ids[i], (long long)i, (long long)V);
    const char *tab = n->src[0]->t.data;
    char *y = n->t.data;
#pragma omp parallel for schedule(static) if (N * D > AG_PAR_MIN)
    for (int64_t i = 0; i < N; i++) memcpy(y + (size_t)i * row, tab + (size_t)ids[i] * row, row);
    return 0;
}

static void embedding_backward(ag_node *n) {
    void *dt = ag_grad_acquire(n->src[0]);
    if (!dt) return;
    const int64_t D = n->dim.embedding.dim, N = n->dim.embedding.count, cb = 64, nblk = (D + cb - 1) / cb;
    const int32_t *ids = n->src[1]->t.data;
    /* column blocks per thread, ids in order: a row hit twice is summed in a fixed order */
#pragma omp parallel for schedule(static) if (N * D > AG_PAR_MIN)
    for (int64_t b = 0; b < nblk; b++) {
        const int64_t c0 = b * cb, c1 = c0 + cb < D ? c0 + cb : D;
        for (int64_t i = 0; i < N; i++) {
            if (n->t.dtype == AG_F32) {
                float *o = (float *)dt + (int64_t)ids[i] * D;
                const float *s = (const float *)n->t.grad + i * D;
                for (int64_t c = c0; c < c1; c++) o[c] += s[c];
            } else {
                double *o = (double *)dt + (int64_t)ids[i] * D;
                const double *s = (const double *)n->t.grad + i * D;
                for (int64_t c = c0; c < c1; c++) o[c] += s[c];
            }
        }
    }
}

static const ag_op op_embedding = {AG_OP_EMBEDDING, embedding_forward, embedding_backward, 0, 0};

ag_tensor *ag_embedding(ag_graph *g, ag_tensor *table, ag_tensor *ids) {
    ag_tensor *src[2] = {table, ids};
    if (ag_check_srcs(g, &op_embedding, 2, src)) return NULL;
    char st[96], si[96];
    ag_shape_str(table, st, sizeof st);
    ag_shape_str(ids, si, sizeof si);
    if (!ag_is_float(table) || table->ndim != 2) return ag_fail(g, "embedding: table must be float [V, D], got %s", st);
    if (ids->dtype != AG_I32) return ag_fail(g, "embedding: ids must be int32");
    if (ids->ndim + 1 > AG_MAX_DIMS) return ag_fail(g, "embedding: ids %s have too many dims", si);
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof shape);
    shape[ids->ndim] = table->shape[1];
    ag_node *n = ag_node_new(g, &op_embedding, ids->ndim + 1, shape, 2, src);
    if (!n) return NULL;
    n->dim.embedding.vocab = table->shape[0];
    n->dim.embedding.dim = table->shape[1];
    n->dim.embedding.count = ids->numel;
    return &n->t;
}
