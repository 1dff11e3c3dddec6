/* Element-wise ops: broadcasting add/sub/mul/div, scale, add_scalar, SiLU, sigmoid, ELU+1, exp,
 * SwiGLU and stop_grad. */
#include "autograd/ag_internal.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

/* The typed bodies switch on the op kind itself, so a node carries no second op code. */
enum { BIN_ADD = AG_OP_ADD, BIN_SUB = AG_OP_SUB, BIN_MUL = AG_OP_MUL, BIN_DIV = AG_OP_DIV };
enum {
    UN_SILU = AG_OP_SILU,
    UN_SIGMOID = AG_OP_SIGMOID,
    UN_ELU1 = AG_OP_ELU1,
    UN_EXP = AG_OP_EXP,
    UN_SCALE = AG_OP_SCALE,
    UN_ADDC = AG_OP_ADD_SCALAR
};

/* float: sigmoid and exp of non-positive arguments through the vectorisable exp of kernels.h
 * (about 1 ulp; libm's expf is a call per element); double keeps libm for the gradient checks. */
static inline float sigmoid_f32(float v) {
    const float e = ei_k_exp_nonpos_f32(-__builtin_fabsf(v)), r = 1.0f / (1.0f + e);
    return ei_k_select_f32(v >= 0.0f, r, e * r);
}

/* for i < n (the caller's n, which the pragma names): dst[i] = v when over (the gradient's first
 * touch in this backward: its bytes are garbage), else dst[i] += v; pre declares what v needs (may
 * be empty). The choice sits outside the loop: GCC keeps a loop with a conditional float add
 * scalar (under -ftrapping-math it is not if-converted) and unswitches only small bodies. */
#define GRAD_LOOP(over, dst, pre, v)                                                                          \
    do {                                                                                                      \
        if (over) {                                                                                           \
            _Pragma("omp parallel for schedule(static) if (n > AG_PAR_MIN)") for (int64_t i = 0; i < n; i++) { \
                pre;                                                                                          \
                dst[i] = (v);                                                                                 \
            }                                                                                                 \
        } else {                                                                                              \
            _Pragma("omp parallel for schedule(static) if (n > AG_PAR_MIN)") for (int64_t i = 0; i < n; i++) { \
                pre;                                                                                          \
                dst[i] += (v);                                                                                \
            }                                                                                                 \
        }                                                                                                     \
    } while (0)

#define REAL float
#define SFX(name) name##_f32
#define EXPR expf
#define EXPNP ei_k_exp_nonpos_f32
#define SIGMR sigmoid_f32
#define SELR ei_k_select_f32
#include "autograd/ops_elementwise_impl.inc"
#undef REAL
#undef SFX
#undef EXPR
#undef EXPNP
#undef SIGMR
#undef SELR
#define REAL double
#define SFX(name) name##_f64
#define EXPR exp
#define EXPNP exp
#define SIGMR(v) (1 / (1 + exp(-(v))))
#define SELR(c, a, b) ((c) ? (a) : (b))
#include "autograd/ops_elementwise_impl.inc"
#undef REAL
#undef SFX
#undef EXPR
#undef EXPNP
#undef SIGMR
#undef SELR

/* ------------------------------------------------------------------ broadcasting binary ops
 * Shapes padded to 4 dims are recomputed from the tensors each call (cheap). */

static void pad4(const ag_tensor *t, int64_t *s) {
    const int off = 4 - t->ndim;
    for (int d = 0; d < 4; d++) s[d] = d < off ? 1 : t->shape[d - off];
}

/* Strides of x (padded shape xs) when read at output positions: 0 on broadcast dims. */
static void bstrides(const int64_t *xs, int64_t *st) {
    int64_t s = 1;
    for (int d = 3; d >= 0; d--) {
        st[d] = xs[d] == 1 ? 0 : s;
        s *= xs[d];
    }
}

/* Padded 4-D shapes of a binary op's output and sources, and the sources' broadcast strides. */
static void bin_shapes(const ag_node *n, int64_t *os, int64_t *as, int64_t *bs, int64_t *sta, int64_t *stb) {
    pad4(&n->t, os);
    pad4(&n->src[0]->t, as);
    pad4(&n->src[1]->t, bs);
    bstrides(as, sta);
    bstrides(bs, stb);
}

static int bin_forward(ag_node *n) {
    const int op = (int)n->op->kind;
    int64_t os[4], as[4], bs[4], sta[4], stb[4];
    bin_shapes(n, os, as, bs, sta, stb);
    if (n->t.dtype == AG_F32)
        bin_forward_f32(op, os, n->src[0]->t.data, sta, n->src[1]->t.data, stb, n->t.data);
    else
        bin_forward_f64(op, os, n->src[0]->t.data, sta, n->src[1]->t.data, stb, n->t.data);
    return 0;
}

static void bin_backward(ag_node *n) {
    const int op = (int)n->op->kind;
    int64_t os[4], as[4], bs[4], sta[4], stb[4];
    bin_shapes(n, os, as, bs, sta, stb);
    const int flat = !memcmp(os, as, sizeof os) && !memcmp(os, bs, sizeof os);
    /* acquired one operand at a time: in add(x, x) the second sees the first's write and adds */
    for (int w = 0; w < 2; w++) {
        int over;
        void *dx = ag_grad_acquire_overwrite(n->src[w], &over);
        if (!dx) continue;
        if (flat && n->t.dtype == AG_F32)
            bin_backward_flat_f32(op, w, n->t.numel, n->t.grad, n->src[0]->t.data, n->src[1]->t.data, dx, over);
        else if (flat)
            bin_backward_flat_f64(op, w, n->t.numel, n->t.grad, n->src[0]->t.data, n->src[1]->t.data, dx, over);
        else if (!memcmp(os, w ? bs : as, sizeof os) && n->t.dtype == AG_F32)
            bin_backward_full_f32(op, w, os, n->t.grad, n->src[0]->t.data, sta, n->src[1]->t.data, stb, dx, over);
        else if (!memcmp(os, w ? bs : as, sizeof os))
            bin_backward_full_f64(op, w, os, n->t.grad, n->src[0]->t.data, sta, n->src[1]->t.data, stb, dx, over);
        else if (n->t.dtype == AG_F32)
            bin_backward_f32(op, w, os, w ? bs : as, n->t.grad, n->src[0]->t.data, sta, n->src[1]->t.data,
                             stb, dx, over);
        else
            bin_backward_f64(op, w, os, w ? bs : as, n->t.grad, n->src[0]->t.data, sta, n->src[1]->t.data,
                             stb, dx, over);
    }
}

static const ag_op op_add = {AG_OP_ADD, bin_forward, bin_backward, 0, 0};
static const ag_op op_sub = {AG_OP_SUB, bin_forward, bin_backward, 0, 0};
static const ag_op op_mul = {AG_OP_MUL, bin_forward, bin_backward, 0, 0};
static const ag_op op_div = {AG_OP_DIV, bin_forward, bin_backward, 0, 0};

static ag_tensor *binary(ag_graph *g, const ag_op *op, ag_tensor *a, ag_tensor *b) {
    const char *name = ag_op_name(op->kind);
    ag_tensor *src[2] = {a, b};
    if (ag_check_srcs(g, op, 2, src)) return NULL;
    char sa[96], sb[96];
    ag_shape_str(a, sa, sizeof sa);
    ag_shape_str(b, sb, sizeof sb);
    if (!ag_is_float(a) || !ag_is_float(b)) return ag_fail(g, "%s: operands must be float: %s, %s", name, sa, sb);
    const int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t as[4], bs[4], shape[AG_MAX_DIMS];
    pad4(a, as);
    pad4(b, bs);
    for (int d = 0; d < nd; d++) {
        const int64_t x = as[4 - nd + d], y = bs[4 - nd + d];
        if (x != y && x != 1 && y != 1) return ag_fail(g, "%s: shapes do not broadcast: %s, %s", name, sa, sb);
        shape[d] = x > y ? x : y;
    }
    ag_node *n = ag_node_new(g, op, nd, shape, 2, src);
    return n ? &n->t : NULL;
}

ag_tensor *ag_add(ag_graph *g, ag_tensor *a, ag_tensor *b) { return binary(g, &op_add, a, b); }
ag_tensor *ag_sub(ag_graph *g, ag_tensor *a, ag_tensor *b) { return binary(g, &op_sub, a, b); }
ag_tensor *ag_mul(ag_graph *g, ag_tensor *a, ag_tensor *b) { return binary(g, &op_mul, a, b); }
ag_tensor *ag_div(ag_graph *g, ag_tensor *a, ag_tensor *b) { return binary(g, &op_div, a, b); }

/* ------------------------------------------------------------------ unary ops */

/* The scalar operand of scale / add_scalar (unused by the others). */
static double un_arg(const ag_node *n) {
    return n->p.kind == AG_OP_SCALE ? n->p.scale.s : n->p.kind == AG_OP_ADD_SCALAR ? n->p.add_scalar.c : 0.0;
}

static int un_forward(ag_node *n) {
    if (n->t.dtype == AG_F32)
        unary_forward_f32((int)n->op->kind, n->t.numel, n->src[0]->t.data, n->t.data, (float)un_arg(n));
    else
        unary_forward_f64((int)n->op->kind, n->t.numel, n->src[0]->t.data, n->t.data, un_arg(n));
    return 0;
}

static void un_backward(ag_node *n) {
    int over;
    void *dx = ag_grad_acquire_overwrite(n->src[0], &over);
    if (!dx) return;
    if (n->t.dtype == AG_F32)
        unary_backward_f32((int)n->op->kind, n->t.numel, n->src[0]->t.data, n->t.data, n->t.grad, dx,
                           (float)un_arg(n), over);
    else
        unary_backward_f64((int)n->op->kind, n->t.numel, n->src[0]->t.data, n->t.data, n->t.grad, dx, un_arg(n),
                           over);
}

static const ag_op op_silu = {AG_OP_SILU, un_forward, un_backward, 0, 0};
static const ag_op op_sigmoid = {AG_OP_SIGMOID, un_forward, un_backward, 0, 0};
static const ag_op op_elu1 = {AG_OP_ELU1, un_forward, un_backward, 0, 0};
static const ag_op op_exp = {AG_OP_EXP, un_forward, un_backward, 0, 0};
static const ag_op op_scale = {AG_OP_SCALE, un_forward, un_backward, 0, 0};
static const ag_op op_add_scalar = {AG_OP_ADD_SCALAR, un_forward, un_backward, 0, 0};

static ag_node *unary(ag_graph *g, const ag_op *op, ag_tensor *x) {
    if (ag_check_srcs(g, op, 1, &x)) return NULL;
    if (!ag_is_float(x)) return ag_fail(g, "%s: operand must be float", ag_op_name(op->kind));
    return ag_node_new(g, op, x->ndim, x->shape, 1, &x);
}

static ag_tensor *unary_t(ag_graph *g, const ag_op *op, ag_tensor *x) {
    ag_node *n = unary(g, op, x);
    return n ? &n->t : NULL;
}

ag_tensor *ag_silu(ag_graph *g, ag_tensor *x) { return unary_t(g, &op_silu, x); }
ag_tensor *ag_sigmoid(ag_graph *g, ag_tensor *x) { return unary_t(g, &op_sigmoid, x); }
ag_tensor *ag_elu1(ag_graph *g, ag_tensor *x) { return unary_t(g, &op_elu1, x); }
ag_tensor *ag_exp(ag_graph *g, ag_tensor *x) { return unary_t(g, &op_exp, x); }

ag_tensor *ag_scale(ag_graph *g, ag_tensor *x, double s) {
    ag_node *n = unary(g, &op_scale, x);
    if (!n) return NULL;
    n->p.scale.s = s;
    return &n->t;
}

ag_tensor *ag_add_scalar(ag_graph *g, ag_tensor *x, double c) {
    ag_node *n = unary(g, &op_add_scalar, x);
    if (!n) return NULL;
    n->p.add_scalar.c = c;
    return &n->t;
}

/* ------------------------------------------------------------------ swiglu */

static int swiglu_forward(ag_node *n) {
    if (n->t.dtype == AG_F32)
        swiglu_forward_f32(n->t.numel, n->src[0]->t.data, n->src[1]->t.data, n->t.data);
    else
        swiglu_forward_f64(n->t.numel, n->src[0]->t.data, n->src[1]->t.data, n->t.data);
    return 0;
}

static void swiglu_backward(ag_node *n) {
    int oa, ob;
    void *da = ag_grad_acquire_overwrite(n->src[0], &oa), *db = ag_grad_acquire_overwrite(n->src[1], &ob);
    if (!da && !db) return;
    if (n->t.dtype == AG_F32)
        swiglu_backward_f32(n->t.numel, n->src[0]->t.data, n->src[1]->t.data, n->t.grad, da, oa, db, ob);
    else
        swiglu_backward_f64(n->t.numel, n->src[0]->t.data, n->src[1]->t.data, n->t.grad, da, oa, db, ob);
}

static const ag_op op_swiglu = {AG_OP_SWIGLU, swiglu_forward, swiglu_backward, 0, 0};

ag_tensor *ag_swiglu(ag_graph *g, ag_tensor *a, ag_tensor *b) {
    ag_tensor *src[2] = {a, b};
    if (ag_check_srcs(g, &op_swiglu, 2, src)) return NULL;
    char sa[96], sb[96];
    if (!ag_is_float(a) || !ag_is_float(b)) return ag_fail(g, "swiglu: operands must be float");
    if (a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof a->shape))
        return ag_fail(g, "swiglu: shapes differ: %s, %s", ag_shape_str(a, sa, sizeof sa), ag_shape_str(b, sb, sizeof sb));
    ag_node *n = ag_node_new(g, &op_swiglu, a->ndim, a->shape, 2, src);
    return n ? &n->t : NULL;
}

/* ------------------------------------------------------------------ stop_grad (a view) */

static const ag_op op_stop_grad = {AG_OP_STOP_GRAD, NULL, NULL, 1, 1};

ag_tensor *ag_stop_grad(ag_graph *g, ag_tensor *x) {
    if (ag_check_srcs(g, &op_stop_grad, 1, &x)) return NULL;
    ag_node *n = ag_node_new(g, &op_stop_grad, x->ndim, x->shape, 1, &x);
    return n ? &n->t : NULL;
}
