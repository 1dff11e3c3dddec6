/* Reductions (sum, mean, sum_all), softmax and the fused masked cross-entropy. */
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
    void *da = ag_grad_acquire(n->src[0]);
    if (!da) return;
    const int64_t outer = n->dim.reduce.outer, len = n->dim.reduce.n, inner = n->dim.reduce.inner;
    if (n->t.dtype == AG_F32)
        sum_backward_f32(outer, len, inner, n->t.grad, da, (float)n->dim.reduce.coef);
    else
        sum_backward_f64(outer, len, inner, n->t.grad, da, n->dim.reduce.coef);
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
    void *da = ag_grad_acquire(n->src[0]);
    if (!da) return;
    if (n->t.dtype == AG_F32)
        sum_backward_f32(1, n->src[0]->t.numel, 1, n->t.grad, da, 1.0f);
    else
        sum_backward_f64(1, n->src[0]->t.numel, 1, n->t.grad, da, 1.0);
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
    void *dx = ag_grad_acquire(n->src[0]);
    if (!dx) return;
    const int64_t v = n->t.shape[n->t.ndim - 1], rows = n->t.numel / v;
    if (n->t.dtype == AG_F32)
        softmax_backward_f32(rows, v, n->t.data, n->t.grad, dx);
    else
        softmax_backward_f64(rows, v, n->t.data, n->t.grad, dx);
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
        bad = ce_forward_f32(R, V, n->src[0]->t.data, tg, mask, mdt, n->scratch, n->scratch2, n->t.data, &n->ce_count);
    else
        bad = ce_forward_f64(R, V, n->src[0]->t.data, tg, mask, mdt, n->scratch, n->scratch2, n->t.data, &n->ce_count);
    if (bad >= 0)
        return ei_error_set("cross_entropy: target %d of row %lld outside [0, %lld)", tg[bad], (long long)bad,
                            (long long)V);
    return 0;
}

static void ce_backward(ag_node *n) {
    void *dx = ag_grad_acquire(n->src[0]);
    if (!dx) return;
    const int64_t R = n->dim.ce.rows, V = n->dim.ce.vocab;
    const void *mask = n->nsrc == 3 ? n->src[2]->t.data : NULL;
    const int mdt = n->nsrc == 3 ? (int)n->src[2]->t.dtype : -1;
    if (n->t.dtype == AG_F32)
        ce_backward_f32(R, V, n->src[0]->t.data, n->src[1]->t.data, mask, mdt, n->scratch, ((float *)n->t.grad)[0], dx);
    else
        ce_backward_f64(R, V, n->src[0]->t.data, n->src[1]->t.data, mask, mdt, n->scratch, ((double *)n->t.grad)[0],
                        dx);
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

double ag_cross_entropy_count(const ag_tensor *loss) {
    const ag_node *n = (const ag_node *)loss;
    return n && n->op == &op_ce ? n->ce_count : 0.0;
}
