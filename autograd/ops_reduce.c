/* Reductions (sum, mean, sum_all), softmax, the fused masked cross-entropy and the classifier fused
 * with it (linear_cross_entropy). */
#include "autograd/ag_internal.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

#define SUM_CHUNK 4096

#define REAL float
#define SFX(name) name##_f32
#define EXPNP ei_k_exp_nonpos_f32 /* vectorisable, about 1 ulp; arguments here are <= 0 */
#define LOGR logf
#include "autograd/ops_reduce_impl.inc"
#undef REAL
#undef SFX
#undef EXPNP
#undef LOGR
#define REAL double
#define SFX(name) name##_f64
#define EXPNP exp
#define LOGR log
#include "autograd/ops_reduce_impl.inc"
#undef REAL
#undef SFX
#undef EXPNP
#undef LOGR

/* ------------------------------------------------------------------ sum / mean over an axis */

static int sum_forward(ag_node *n) {
    const int64_t outer = n->dim.reduce.outer, len = n->dim.reduce.n, inner = n->dim.reduce.inner;
    if (n->t.dtype == AG_F32)
        sum_forward_f32(outer, len, inner, n->src[0]->t.data, n->t.data, (float)n->dim.reduce.coef);
    else
        sum_forward_f64(outer, len, inner, n->src[0]->t.data, n->t.data, n->dim.reduce.coef);
    return 0;
}

static void sum_backward(ag_node *n) {
    int over;
    void *da = ag_grad_acquire_overwrite(n->src[0], &over);
    if (!da) return;
    const int64_t outer = n->dim.reduce.outer, len = n->dim.reduce.n, inner = n->dim.reduce.inner;
    if (n->t.dtype == AG_F32)
        sum_backward_f32(outer, len, inner, n->t.grad, da, (float)n->dim.reduce.coef, over);
    else
        sum_backward_f64(outer, len, inner, n->t.grad, da, n->dim.reduce.coef, over);
}

static const ag_op op_sum = {AG_OP_SUM, sum_forward, sum_backward, 0, 0};
static const ag_op op_mean = {AG_OP_MEAN, sum_forward, sum_backward, 0, 0};

static ag_tensor *reduce_axis(ag_graph *g, const ag_op *op, ag_tensor *a, int axis, int keepdim) {
    const char *name = ag_op_name(op->kind);
    if (ag_check_srcs(g, op, 1, &a)) return NULL;
    if (!ag_is_float(a)) return ag_fail(g, "%s: operand must be float", name);
    const int ax = ag_axis(axis, a->ndim);
    char sa[96];
    if (ax < 0) return ag_fail(g, "%s: axis %d out of range for %s", name, axis, ag_shape_str(a, sa, sizeof sa));
    int64_t outer = 1, inner = 1, shape[AG_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < a->ndim; d++) {
        if (d < ax) outer *= a->shape[d];
        if (d > ax) inner *= a->shape[d];
        if (d != ax)
            shape[nd++] = a->shape[d];
        else if (keepdim)
            shape[nd++] = 1;
    }
    if (nd == 0) shape[nd++] = 1;
    ag_node *n = ag_node_new(g, op, nd, shape, 1, &a);
    if (!n) return NULL;
    /* sum and mean share the parameter layout, so either member serves both */
    n->p.sum.axis = ax;
    n->p.sum.keepdim = keepdim ? 1 : 0;
    n->dim.reduce.outer = outer;
    n->dim.reduce.n = a->shape[ax];
    n->dim.reduce.inner = inner;
    n->dim.reduce.coef = op->kind == AG_OP_MEAN ? 1.0 / (double)a->shape[ax] : 1.0;
    return &n->t;
}

ag_tensor *ag_sum(ag_graph *g, ag_tensor *a, int axis, int keepdim) {
    return reduce_axis(g, &op_sum, a, axis, keepdim);
}
ag_tensor *ag_mean(ag_graph *g, ag_tensor *a, int axis, int keepdim) {
    return reduce_axis(g, &op_mean, a, axis, keepdim);
}

/* ------------------------------------------------------------------ sum_all (scratch: chunk sums) */

static int sum_all_forward(ag_node *n) {
    const ag_tensor *a = &n->src[0]->t;
    if (n->t.dtype == AG_F32)
        ((float *)n->t.data)[0] = sum_all_f32(a->numel, a->data, n->scratch);
    else
        ((double *)n->t.data)[0] = sum_all_f64(a->numel, a->data, n->scratch);
    return 0;
}

static void sum_all_backward(ag_node *n) {
    int over;
    void *da = ag_grad_acquire_overwrite(n->src[0], &over);
    if (!da) return;
    if (n->t.dtype == AG_F32)
        sum_backward_f32(1, n->src[0]->t.numel, 1, n->t.grad, da, 1.0f, over);
    else
        sum_backward_f64(1, n->src[0]->t.numel, 1, n->t.grad, da, 1.0, over);
}

static const ag_op op_sum_all = {AG_OP_SUM_ALL, sum_all_forward, sum_all_backward, 0, 0};

ag_tensor *ag_sum_all(ag_graph *g, ag_tensor *a) {
    if (ag_check_srcs(g, &op_sum_all, 1, &a)) return NULL;
    if (!ag_is_float(a)) return ag_fail(g, "sum_all: operand must be float");
    ag_node *n = ag_node_new(g, &op_sum_all, AG_SHAPE(1), 1, &a);
    if (!n) return NULL;
    n->scratch = ag_arena_alloc(g, (size_t)((a->numel + SUM_CHUNK - 1) / SUM_CHUNK) * ag_dtype_size(g->dtype));
    return n->scratch ? &n->t : ag_fail(g, "sum_all: out of memory");
}

/* ------------------------------------------------------------------ softmax (last axis) */

static int softmax_forward(ag_node *n) {
    const int64_t v = n->t.shape[n->t.ndim - 1], rows = n->t.numel / v;
    if (n->t.dtype == AG_F32)
        softmax_forward_f32(rows, v, n->src[0]->t.data, n->t.data);
    else
        softmax_forward_f64(rows, v, n->src[0]->t.data, n->t.data);
    return 0;
}

static void softmax_backward(ag_node *n) {
    int over;
    void *dx = ag_grad_acquire_overwrite(n->src[0], &over);
    if (!dx) return;
    const int64_t v = n->t.shape[n->t.ndim - 1], rows = n->t.numel / v;
    if (n->t.dtype == AG_F32)
        softmax_backward_f32(rows, v, n->t.data, n->t.grad, dx, over);
    else
        softmax_backward_f64(rows, v, n->t.data, n->t.grad, dx, over);
}

static const ag_op op_softmax = {AG_OP_SOFTMAX, softmax_forward, softmax_backward, 0, 0};

ag_tensor *ag_softmax(ag_graph *g, ag_tensor *x) {
    if (ag_check_srcs(g, &op_softmax, 1, &x)) return NULL;
    if (!ag_is_float(x)) return ag_fail(g, "softmax: operand must be float");
    ag_node *n = ag_node_new(g, &op_softmax, x->ndim, x->shape, 1, &x);
    return n ? &n->t : NULL;
}

/* ------------------------------------------------------------------ cross-entropy
 * src: logits, targets, [mask]; scratch: per-row lse, scratch2: row losses; ce_count: count of
 * the last forward. */

static int ce_forward(ag_node *n) {
    const int64_t R = n->dim.ce.rows, V = n->dim.ce.vocab;
    const void *mask = n->nsrc == 3 ? n->src[2]->t.data : NULL;
    const int mdt = n->nsrc == 3 ? (int)n->src[2]->t.dtype : -1;
    const int32_t *tg = n->src[1]->t.data;
    int64_t bad;
    if (n->t.dtype == AG_F32)
        bad = ce_forward_f32(R, V, n->src[0]->t.data, tg, mask, mdt, n->scratch, n->scratch2, n->t.data, &n->ce_count, NULL);
    else
        bad = ce_forward_f64(R, V, n->src[0]->t.data, tg, mask, mdt, n->scratch, n->scratch2, n->t.data, &n->ce_count, NULL);
    if (bad >= 0)
        return ei_error_set("cross_entropy: target %d of row %lld outside [0, %lld)", tg[bad], (long long)bad,
                            (long long)V);
    return 0;
}

static void ce_backward(ag_node *n) {
    int over;
    void *dx = ag_grad_acquire_overwrite(n->src[0], &over);
    if (!dx) return;
    const int64_t R = n->dim.ce.rows, V = n->dim.ce.vocab;
    const void *mask = n->nsrc == 3 ? n->src[2]->t.data : NULL;
    const int mdt = n->nsrc == 3 ? (int)n->src[2]->t.dtype : -1;
    if (n->t.dtype == AG_F32)
        ce_backward_f32(R, V, n->src[0]->t.data, n->src[1]->t.data, mask, mdt, n->scratch, ((float *)n->t.grad)[0], dx,
                        over);
    else
        ce_backward_f64(R, V, n->src[0]->t.data, n->src[1]->t.data, mask, mdt, n->scratch, ((double *)n->t.grad)[0],
                        dx, over);
}

static const ag_op op_ce = {AG_OP_CROSS_ENTROPY, ce_forward, ce_backward, 0, 0};

ag_tensor *ag_cross_entropy(ag_graph *g, ag_tensor *logits, ag_tensor *targets, ag_tensor *mask) {
    ag_tensor *src[3] = {logits, targets, mask};
    const int ns = mask ? 3 : 2;
    if (ag_check_srcs(g, &op_ce, ns, src)) return NULL;
    char sl[96], st[96], sm[96];
    ag_shape_str(logits, sl, sizeof sl);
    ag_shape_str(targets, st, sizeof st);
    if (!ag_is_float(logits)) return ag_fail(g, "cross_entropy: logits must be float");
    if (targets->dtype != AG_I32) return ag_fail(g, "cross_entropy: targets must be int32");
    const int64_t V = logits->shape[logits->ndim - 1], R = logits->numel / V;
    if (targets->numel != R)
        return ag_fail(g, "cross_entropy: %lld targets %s for %lld rows of logits %s", (long long)targets->numel, st,
                       (long long)R, sl);
    if (mask) {
        ag_shape_str(mask, sm, sizeof sm);
        if (mask->dtype != AG_U8 && mask->dtype != g->dtype)
            return ag_fail(g, "cross_entropy: mask must be uint8 or the graph's float dtype");
        if (mask->numel != R) return ag_fail(g, "cross_entropy: mask %s for %lld rows of logits %s", sm, (long long)R, sl);
    }
    ag_node *n = ag_node_new(g, &op_ce, AG_SHAPE(1), ns, src);
    if (!n) return NULL;
    n->dim.ce.rows = R;
    n->dim.ce.vocab = V;
    n->scratch = ag_arena_alloc(g, (size_t)R * ag_dtype_size(g->dtype));
    n->scratch2 = ag_arena_alloc(g, (size_t)R * ag_dtype_size(g->dtype));
    return n->scratch && n->scratch2 ? &n->t : ag_fail(g, "cross_entropy: out of memory");
}

/* ------------------------------------------------------------------ linear + cross-entropy
 * The classifier fused with the loss, on the counted rows only (instruction data counts a few
 * answer tokens of a long context, and the vocabulary GEMM is the largest product per token).
 * src: x [.., D] (R rows), w [V, D], targets, [mask]. scratch: int64 rows [R] (the counted rows in
 * order), then the gathered targets [R] (int32) and weights [R]; scratch2: the gathered x [R, D],
 * logits [R, V] (turned into dlogits in place by the forward when a gradient is to come), lse [R], row losses [R];
 * bwd_scratch: dx rows [R, D]. Only the first m (counted) rows of each are used. When every row counts, x is used in place and every
 * GEMM is the one ag_linear + ag_cross_entropy run, so the results are bit-identical to that pair;
 * otherwise a row's logits come from a GEMM with fewer rows, which BLAS kernels may round
 * differently in the last bit. */

typedef struct {
    int64_t *rows;
    int32_t *tg;
    void *w, *xg, *logits, *lse, *loss;
} lce_bufs;

static lce_bufs lce_layout(const ag_node *n) {
    const int64_t R = n->dim.lce.rows, V = n->dim.lce.vocab, D = n->dim.lce.dim;
    const size_t es = ag_dtype_size(n->t.dtype);
    lce_bufs b;
    b.rows = n->scratch;
    b.tg = (int32_t *)(b.rows + R);
    b.w = b.tg + R + (R & 1); /* keeps 8-byte alignment for double weights */
    char *p = n->scratch2;
    b.xg = p;
    b.logits = p + (size_t)(R * D) * es;
    b.lse = (char *)b.logits + (size_t)(R * V) * es;
    b.loss = (char *)b.lse + (size_t)R * es;
    return b;
}

static int lce_forward(ag_node *n) {
    const int64_t R = n->dim.lce.rows, V = n->dim.lce.vocab, D = n->dim.lce.dim;
    const ag_dtype dt = n->t.dtype;
    const size_t es = ag_dtype_size(dt);
    const void *mask = n->nsrc == 4 ? n->src[3]->t.data : NULL;
    const int mdt = n->nsrc == 4 ? (int)n->src[3]->t.dtype : -1;
    const int32_t *tg = n->src[2]->t.data;
    const char *x = n->src[0]->t.data;
    lce_bufs b = lce_layout(n);
    int64_t m = 0;
    for (int64_t r = 0; r < R; r++) {
        const double w = dt == AG_F32 ? (double)ce_weight_f32(mask, mdt, tg, r) : ce_weight_f64(mask, mdt, tg, r);
        if (w == 0) continue;
        b.rows[m] = r;
        b.tg[m] = tg[r];
        if (dt == AG_F32)
            ((float *)b.w)[m] = (float)w;
        else
            ((double *)b.w)[m] = w;
        m++;
    }
    n->lce_m = m;
    n->ce_count = 0;
    memset(n->t.data, 0, es);
    if (m == 0) return 0;
    const char *xs = x;
    if (m < R) {
        for (int64_t i = 0; i < m; i++)
            memcpy((char *)b.xg + (size_t)(i * D) * es, x + (size_t)(b.rows[i] * D) * es, (size_t)D * es);
        xs = b.xg;
    }
    /* with a gradient to come, the logits become the dlogits of an upstream gradient of 1 in place,
     * row by row while a row is in cache, and the backward scales by the real one in its GEMMs: one
     * pass fewer over the [m, V] buffer than a backward that reads the logits again (262 MB at
     * 2,048 rows of a 32,000 vocabulary; about 0.1 s of a 4.2 s training step of the 100M model,
     * issue 15). Upstream gradient 1 (the loss seed) gives the bits of the separate pass. */
    void *dl = n->t.requires_grad ? b.logits : NULL;
    int64_t bad;
    if (dt == AG_F32) {
        ei_k_gemm_f32(0, 1, m, V, D, 1.0f, (const float *)xs, D, n->src[1]->t.data, D, 0.0f, b.logits, V);
        bad = ce_forward_f32(m, V, b.logits, b.tg, b.w, AG_F32, b.lse, b.loss, n->t.data, &n->ce_count, dl);
    } else {
        ei_k_gemm_f64(0, 1, m, V, D, 1.0, (const double *)xs, D, n->src[1]->t.data, D, 0.0, b.logits, V);
        bad = ce_forward_f64(m, V, b.logits, b.tg, b.w, AG_F64, b.lse, b.loss, n->t.data, &n->ce_count, dl);
    }
    if (bad >= 0)
        return ei_error_set("linear_cross_entropy: target %d of row %lld outside [0, %lld)", b.tg[bad],
                            (long long)b.rows[bad], (long long)V);
    return 0;
}

static void lce_backward(ag_node *n) {
    const int64_t R = n->dim.lce.rows, V = n->dim.lce.vocab, D = n->dim.lce.dim, m = n->lce_m;
    const ag_dtype dt = n->t.dtype;
    const size_t es = ag_dtype_size(dt);
    int fx, fw;
    char *dx = ag_grad_acquire_overwrite(n->src[0], &fx);
    char *dw = ag_grad_acquire_overwrite(n->src[1], &fw);
    if (!dx && !dw) return;
    lce_bufs b = lce_layout(n);
    if (m == 0) { /* nothing counted: a zero gradient, written when this is its first touch */
        if (dx && fx) memset(dx, 0, (size_t)(R * D) * es);
        if (dw && fw) memset(dw, 0, (size_t)(V * D) * es);
        return;
    }
    /* the forward left the dlogits of an upstream gradient of 1 (lce_forward); they stay valid for
     * a second backward */
    const char *dl = b.logits;
    char *dxg = n->bwd_scratch;
    const void *w = n->src[1]->t.data;
    const int all = m == R;
    const double dy = dt == AG_F32 ? (double)((float *)n->t.grad)[0] : ((double *)n->t.grad)[0];
    if (dx) {
        /* all rows: straight into dx as ag_linear's backward; else the m rows, then scattered */
        char *dst = all ? dx : dxg;
        const int over = all ? fx : 1;
        if (dt == AG_F32)
            ei_k_gemm_f32(0, 0, m, D, V, (float)dy, (const float *)dl, V, w, D, over ? 0.0f : 1.0f, (float *)dst, D);
        else
            ei_k_gemm_f64(0, 0, m, D, V, dy, (const double *)dl, V, w, D, over ? 0.0 : 1.0, (double *)dst, D);
        if (!all) {
            if (fx) memset(dx, 0, (size_t)(R * D) * es);
            for (int64_t i = 0; i < m; i++) {
                char *o = dx + (size_t)(b.rows[i] * D) * es, *s = dxg + (size_t)(i * D) * es;
                if (dt == AG_F32)
                    for (int64_t j = 0; j < D; j++) ((float *)o)[j] += ((const float *)s)[j];
                else
                    for (int64_t j = 0; j < D; j++) ((double *)o)[j] += ((const double *)s)[j];
            }
        }
    }
    if (dw) {
        const void *xs = all ? n->src[0]->t.data : b.xg;
        if (dt == AG_F32)
            ei_k_gemm_f32(1, 0, V, D, m, (float)dy, (const float *)dl, V, xs, D, fw ? 0.0f : 1.0f, (float *)dw, D);
        else
            ei_k_gemm_f64(1, 0, V, D, m, dy, (const double *)dl, V, xs, D, fw ? 0.0 : 1.0, (double *)dw, D);
    }
}

static const ag_op op_lce = {AG_OP_LINEAR_CE, lce_forward, lce_backward, 0, 0};

ag_tensor *ag_linear_cross_entropy(ag_graph *g, ag_tensor *x, ag_tensor *w, ag_tensor *targets, ag_tensor *mask) {
    ag_tensor *src[4] = {x, w, targets, mask};
    const int ns = mask ? 4 : 3;
    if (ag_check_srcs(g, &op_lce, ns, src)) return NULL;
    char sx[96], sw[96], st[96];
    ag_shape_str(x, sx, sizeof sx);
    ag_shape_str(w, sw, sizeof sw);
    ag_shape_str(targets, st, sizeof st);
    if (!ag_is_float(x) || !ag_is_float(w)) return ag_fail(g, "linear_cross_entropy: x and W must be float");
    if (w->ndim != 2) return ag_fail(g, "linear_cross_entropy: W must be [vocab, dim], got %s", sw);
    const int64_t V = w->shape[0], D = w->shape[1];
    if (x->shape[x->ndim - 1] != D)
        return ag_fail(g, "linear_cross_entropy: inner dims differ: x %s, W %s (W is [vocab, dim])", sx, sw);
    const int64_t R = x->numel / D;
    if (targets->dtype != AG_I32) return ag_fail(g, "linear_cross_entropy: targets must be int32");
    if (targets->numel != R)
        return ag_fail(g, "linear_cross_entropy: %lld targets %s for %lld rows of x %s", (long long)targets->numel, st,
                       (long long)R, sx);
    if (mask) {
        char sm[96];
        ag_shape_str(mask, sm, sizeof sm);
        if (mask->dtype != AG_U8 && mask->dtype != g->dtype)
            return ag_fail(g, "linear_cross_entropy: mask must be uint8 or the graph's float dtype");
        if (mask->numel != R)
            return ag_fail(g, "linear_cross_entropy: mask %s for %lld rows of x %s", sm, (long long)R, sx);
    }
    if (R > 0x7fffffff || V > 0x7fffffff || D > 0x7fffffff) return ag_fail(g, "linear_cross_entropy: dims too large for BLAS");
    ag_node *n = ag_node_new(g, &op_lce, AG_SHAPE(1), ns, src);
    if (!n) return NULL;
    const size_t es = ag_dtype_size(g->dtype);
    n->dim.lce.rows = R;
    n->dim.lce.vocab = V;
    n->dim.lce.dim = D;
    n->scratch = ag_arena_alloc(g, (size_t)R * (8 + 4) + 8 + (size_t)R * es);
    n->scratch2 = ag_arena_alloc(g, ((size_t)(R * D) + (size_t)(R * V) + 2 * (size_t)R) * es);
    n->bwd_bytes = (size_t)(R * D) * es;
    n->bwd_shared = 1; /* the dx rows: written and read inside the backward only */
    return n->scratch && n->scratch2 ? &n->t : ag_fail(g, "linear_cross_entropy: out of memory");
}

double ag_cross_entropy_count(const ag_tensor *loss) {
    const ag_node *n = (const ag_node *)loss;
    return n && (n->op == &op_ce || n->op == &op_lce) ? n->ce_count : 0.0;
}
