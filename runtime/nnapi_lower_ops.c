/* Lowering one IR node into NNAPI operations (nnapi_lower.h). Each op is a direct translation when
 * NNAPI has the operation at the target feature level and for the operand types involved;
 * otherwise it is a documented decomposition (docs/nnapi.md) or a refusal naming the op, the
 * tensor and the level it would need. The rules come from the NNAPI operation reference:
 *   FULLY_CONNECTED takes weights of the input's type (per-tensor); per-channel int8 weights go
 *   through a 1x1 CONV_2D on NHWC with TENSOR_QUANT8_SYMM_PER_CHANNEL filters; quantised biases
 *   are TENSOR_INT32 with scale input x weight and zero point 0 (0 for per-channel filters, whose
 *   bias scale is implied per channel); quantised FULLY_CONNECTED / CONV_2D / MUL outputs need a
 *   scale above the product of the input scales (FULLY_CONNECTED / CONV_2D only below level 3);
 *   BATCH_MATMUL exists from level 6; SOFTMAX over any axis and rank from level 3; and so on. */
#include "runtime/nnapi_lower.h"

#include "core/ei_error.h"
#include "core/ei_half.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U(x) ((uint32_t)(x))

static const ei_gtensor *T(const nl_ctx *c, int32_t t) { return &c->g->tensors[t]; }

static int max_i(int a, int b) { return a > b ? a : b; }

/* Level of an operation for one tensor type: the op's own level, raised for f16 (3), int8 signed
 * (4) and whatever else the caller adds. */
static int type_op_level(const nl_ty *t, int base) {
    if (t->type == ANEURALNETWORKS_TENSOR_FLOAT16) return max_i(base, 3);
    if (t->type == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED) return max_i(base, 4);
    return base;
}

static int need_op(nl_ctx *c, int level, int32_t code, const nl_ty *t) {
    char what[96];
    snprintf(what, sizeof what, "NNAPI %s on %s", ei_nn_op_name(code), ei_nn_type_name(t->type));
    return nl_need(c, level, what);
}

static int op1(nl_ctx *c, int32_t code, int64_t a, int64_t out) {
    if (a < 0 || out < 0) return -1;
    uint32_t in = U(a), o = U(out);
    return nl_op(c, code, 1, &in, 1, &o);
}

static int op2(nl_ctx *c, int32_t code, int64_t a, int64_t b, int64_t out) {
    if (a < 0 || b < 0 || out < 0) return -1;
    uint32_t in[2] = {U(a), U(b)}, o = U(out);
    return nl_op(c, code, 2, in, 1, &o);
}

static int op3(nl_ctx *c, int32_t code, int64_t a, int64_t b, int64_t d, int64_t out) {
    if (a < 0 || b < 0 || d < 0 || out < 0) return -1;
    uint32_t in[3] = {U(a), U(b), U(d)}, o = U(out);
    return nl_op(c, code, 3, in, 1, &o);
}

/* ADD / SUB / MUL / DIV with the fused-activation operand NNAPI wants (always NONE here). */
static int arith(nl_ctx *c, int32_t code, int64_t a, int64_t b, int64_t out) {
    return op3(c, code, a, b, nl_i32(c, ANEURALNETWORKS_FUSED_NONE), out);
}

static nl_ty ty1(const nl_ty *base, uint32_t d0) { return nl_ty_dims(base, 1, &d0); }

static nl_ty ty2(const nl_ty *base, uint32_t d0, uint32_t d1) { return nl_ty_dims(base, 2, (uint32_t[]){d0, d1}); }

/* ---------------------------------------------------------------- element-wise */
static int low_binary(nl_ctx *c, const ei_gnode *n) {
    nl_ty a, b, o;
    if (nl_ty_of(c, n->in[0], &a) || nl_ty_of(c, n->in[1], &b) || nl_ty_of(c, n->out, &o)) return -1;
    static const int32_t codes[] = {[EI_OP_ADD] = ANEURALNETWORKS_ADD, [EI_OP_SUB] = ANEURALNETWORKS_SUB,
                                    [EI_OP_MUL] = ANEURALNETWORKS_MUL, [EI_OP_DIV] = ANEURALNETWORKS_DIV,
                                    [EI_OP_MAXIMUM] = ANEURALNETWORKS_MAXIMUM};
    int32_t code = codes[n->op];
    int lv = n->op == EI_OP_SUB || n->op == EI_OP_DIV ? 2 : n->op == EI_OP_MAXIMUM ? 3 : 1;
    lv = type_op_level(&a, lv);
    if (a.type == ANEURALNETWORKS_TENSOR_INT32) lv = max_i(lv, n->op == EI_OP_MAXIMUM ? 3 : 4);
    if (a.type == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM && n->op == EI_OP_SUB) lv = max_i(lv, 3);
    if (need_op(c, lv, code, &a)) return -1;
    if (n->op == EI_OP_MUL && nl_is_q8(&a) && !(o.scale > a.scale * b.scale))
        return nl_refuse(c, "quantised MUL needs an output scale above the product of the input scales (%g <= %g x %g)",
                         (double)o.scale, (double)a.scale, (double)b.scale);
    int64_t ia = nl_tensor(c, n->in[0]), ib = nl_tensor(c, n->in[1]), out = nl_out(c, n->out);
    if (n->op == EI_OP_MAXIMUM) return op2(c, code, ia, ib, out);
    return arith(c, code, ia, ib, out);
}

/* ELU below level 4: max(x, 0) + alpha (exp(min(x, 0)) - 1), exact for either sign of x. */
static int elu_decomposed(nl_ctx *c, const ei_gnode *n, const nl_ty *x) {
    if (nl_need(c, 3, "ELU (decomposed into MAXIMUM, MINIMUM, EXP, SUB, MUL, ADD)")) return -1;
    nl_ty s = ty1(x, 1);
    int64_t xi = nl_tensor(c, n->in[0]), zero = nl_fill(c, &s, 0), one = nl_fill(c, &s, 1);
    int64_t al = nl_fill(c, &s, n->p.elu.alpha);
    int64_t pos = nl_tmp(c, x), neg = nl_tmp(c, x), e = nl_tmp(c, x), em1 = nl_tmp(c, x), sc = nl_tmp(c, x);
    if (op2(c, ANEURALNETWORKS_MAXIMUM, xi, zero, pos) || op2(c, ANEURALNETWORKS_MINIMUM, xi, zero, neg) ||
        op1(c, ANEURALNETWORKS_EXP, neg, e) || arith(c, ANEURALNETWORKS_SUB, e, one, em1) ||
        arith(c, ANEURALNETWORKS_MUL, em1, al, sc) || arith(c, ANEURALNETWORKS_ADD, pos, sc, nl_out(c, n->out)))
        return -1;
    nl_note(c, "ELU as max(x,0) + alpha*(exp(min(x,0)) - 1) (feature level %d < 4)", c->fl);
    return 0;
}

static int low_unary(nl_ctx *c, const ei_gnode *n) {
    nl_ty x, o;
    if (nl_ty_of(c, n->in[0], &x) || nl_ty_of(c, n->out, &o)) return -1;
    int64_t out;
    switch (n->op) {
    case EI_OP_LOGISTIC:
        if (need_op(c, type_op_level(&x, 1), ANEURALNETWORKS_LOGISTIC, &x)) return -1;
        return op1(c, ANEURALNETWORKS_LOGISTIC, nl_tensor(c, n->in[0]), nl_out(c, n->out));
    case EI_OP_EXP:
        if (need_op(c, 3, ANEURALNETWORKS_EXP, &x)) return -1;
        return op1(c, ANEURALNETWORKS_EXP, nl_tensor(c, n->in[0]), nl_out(c, n->out));
    case EI_OP_RSQRT:
        if (nl_is_float(&x) || c->fl >= 7) {
            if (need_op(c, nl_is_float(&x) ? 3 : 7, ANEURALNETWORKS_RSQRT, &x)) return -1;
            return op1(c, ANEURALNETWORKS_RSQRT, nl_tensor(c, n->in[0]), nl_out(c, n->out));
        } else {
            /* quantised RSQRT arrived at level 7: run it in float between DEQUANTIZE and QUANTIZE */
            if (nl_need(c, 3, "quantised RSQRT (as DEQUANTIZE + RSQRT + QUANTIZE)")) return -1;
            nl_ty f = nl_ty_dims(&x, x.rank, x.dims);
            f.type = ANEURALNETWORKS_TENSOR_FLOAT32, f.scale = 0, f.zp = 0;
            int64_t d = nl_tmp(c, &f), r = nl_tmp(c, &f);
            if (op1(c, ANEURALNETWORKS_DEQUANTIZE, nl_tensor(c, n->in[0]), d) || op1(c, ANEURALNETWORKS_RSQRT, d, r) ||
                op1(c, ANEURALNETWORKS_QUANTIZE, r, nl_out(c, n->out)))
                return -1;
            nl_note(c, "quantised RSQRT as DEQUANTIZE + RSQRT + QUANTIZE (feature level %d < 7)", c->fl);
            return 0;
        }
    default: /* ELU */
        if (c->fl < 4) return elu_decomposed(c, n, &x);
        out = nl_out(c, n->out);
        int64_t al = x.type == ANEURALNETWORKS_TENSOR_FLOAT16 ? nl_f16(c, n->p.elu.alpha) : nl_f32(c, n->p.elu.alpha);
        return op2(c, ANEURALNETWORKS_ELU, nl_tensor(c, n->in[0]), al, out);
    }
}

static int low_mean(nl_ctx *c, const ei_gnode *n) {
    nl_ty x;
    if (nl_ty_of(c, n->in[0], &x)) return -1;
    if (need_op(c, type_op_level(&x, 2), ANEURALNETWORKS_MEAN, &x)) return -1;
    int32_t axis = n->p.mean.axis;
    /* a rank-1 input reduced without keep_dims is a scalar in the IR, [1] here: keep the axis */
    int32_t keep = n->p.mean.keep_dims || T(c, n->in[0])->rank == 1;
    return op3(c, ANEURALNETWORKS_MEAN, nl_tensor(c, n->in[0]), nl_i32v(c, 1, &axis), nl_i32(c, keep),
               nl_out(c, n->out));
}

static int low_softmax(nl_ctx *c, const ei_gnode *n) {
    nl_ty x;
    if (nl_ty_of(c, n->in[0], &x)) return -1;
    if (need_op(c, type_op_level(&x, 1), ANEURALNETWORKS_SOFTMAX, &x)) return -1;
    float beta = n->p.softmax.beta;
    int32_t axis = n->p.softmax.axis, r = (int32_t)x.rank;
    int64_t xi = nl_tensor(c, n->in[0]), out = nl_out(c, n->out);
    int64_t b = x.type == ANEURALNETWORKS_TENSOR_FLOAT16 ? nl_f16(c, beta) : nl_f32(c, beta);
    if (c->fl >= 3) return op3(c, ANEURALNETWORKS_SOFTMAX, xi, b, nl_i32(c, axis), out);
    /* levels 1-2: the last axis of a rank-2 or rank-4 tensor only */
    if (axis != r - 1) return nl_need(c, 3, "SOFTMAX over an axis other than the last");
    if (r == 2 || r == 4) return op2(c, ANEURALNETWORKS_SOFTMAX, xi, b, out);
    uint64_t numel = 1;
    for (int32_t i = 0; i < r; i++) numel *= x.dims[i];
    uint32_t rows = (uint32_t)(numel / x.dims[r - 1]);
    nl_ty f = ty2(&x, rows, x.dims[r - 1]), so = f;
    nl_ty o;
    if (nl_ty_of(c, n->out, &o)) return -1;
    so.scale = o.scale, so.zp = o.zp;
    int64_t x2 = nl_reshape(c, xi, &x, 2, f.dims, -1), y2 = nl_tmp(c, &so);
    if (x2 < 0 || op2(c, ANEURALNETWORKS_SOFTMAX, x2, b, y2)) return -1;
    nl_note(c, "SOFTMAX of rank %d through a [%u, %u] reshape (feature level %d < 3)", r, rows, f.dims[1], c->fl);
    return nl_reshape(c, y2, &so, o.rank, o.dims, out) < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------- FULLY_CONNECTED */
/* Operand of IR tensor t as type want (a float type): itself, a converted constant, or a CAST /
 * DEQUANTIZE of it. */
static int64_t as_float(nl_ctx *c, int32_t t, const nl_ty *want) {
    nl_ty ty;
    if (nl_ty_of(c, t, &ty)) return -1;
    if (ty.type == want->type) return nl_tensor(c, t);
    const ei_gtensor *x = T(c, t);
    nl_ty w = nl_ty_dims(want, ty.rank, ty.dims);
    if (x->kind == EI_GK_CONST && (x->type == EI_GT_F32 || x->type == EI_GT_F16)) {
        float *f = nl_const_real(c, t);
        uint64_t n = nl_ty_bytes(&w);
        void *p = f ? nl_alloc(c, n) : NULL;
        if (!p) return -1;
        for (uint64_t i = 0; i < n / (want->type == ANEURALNETWORKS_TENSOR_FLOAT16 ? 2 : 4); i++) {
            if (want->type == ANEURALNETWORKS_TENSOR_FLOAT16) ((uint16_t *)p)[i] = ei_f32_to_f16(f[i]);
            else ((float *)p)[i] = f[i];
        }
        return nl_const(c, &w, p, n);
    }
    int64_t d = nl_tmp(c, &w);
    if (nl_is_float(&ty)) {
        if (nl_need(c, 3, "CAST between float types")) return -1;
        return op1(c, ANEURALNETWORKS_CAST, nl_tensor(c, t), d) ? -1 : d;
    }
    int lv = ty.type == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM && want->type == ANEURALNETWORKS_TENSOR_FLOAT32 ? 1 : 3;
    if (nl_need(c, lv, "DEQUANTIZE of these weights")) return -1;
    return op1(c, ANEURALNETWORKS_DEQUANTIZE, nl_tensor(c, t), d) ? -1 : d;
}

/* The bias of a float FULLY_CONNECTED as type x: zeros, the IR bias converted, or, when the IR
 * input is quantised (int16 run as f16), its int32 bias scaled to real values. */
static int64_t float_bias(nl_ctx *c, const ei_gnode *n, const nl_ty *x, uint32_t N) {
    nl_ty bt = ty1(x, N);
    if (n->n_in < 3) return nl_fill(c, &bt, 0);
    const ei_gtensor *tb = T(c, n->in[2]), *tx = T(c, n->in[0]), *tw = T(c, n->in[1]);
    if (tb->type != EI_GT_I32) return as_float(c, n->in[2], &bt);
    if (tb->kind != EI_GK_CONST) return nl_refuse(c, "an int32 bias that is not a constant cannot run in float16");
    uint16_t *h = nl_alloc(c, 2ull * N);
    if (!h) return -1;
    for (uint32_t i = 0; i < N; i++) {
        int32_t q;
        memcpy(&q, c->blob + tb->offset + 4ull * i, 4);
        double ws = tw->q.kind == EI_GQ_CHANNEL ? nl_scale(c, tw, i) : tw->q.kind == EI_GQ_TENSOR ? tw->q.scale : 1.0;
        h[i] = ei_f32_to_f16((float)(q * (double)tx->q.scale * ws));
    }
    return nl_const(c, &bt, h, 2ull * N);
}

/* TENSOR_INT32 bias [N] with the given scale (input x weight, or 0 for per-channel filters). */
static int64_t int_bias(nl_ctx *c, const ei_gnode *n, uint32_t N, float scale) {
    nl_ty bt = nl_ty_scalar(ANEURALNETWORKS_TENSOR_INT32);
    bt.rank = 1, bt.dims[0] = N, bt.scale = scale;
    if (n->n_in < 3) return nl_fill(c, &bt, 0);
    const ei_gtensor *tb = T(c, n->in[2]);
    if (tb->kind == EI_GK_CONST) return nl_const(c, &bt, c->blob + tb->offset, 4ull * N);
    return nl_refuse(c, "the int32 bias '%s' is not a constant (NNAPI needs its scale fixed)", tb->name);
}

/* Weights of a quantised FULLY_CONNECTED in the input's type (NNAPI wants them equal): a u8 input
 * with i8 weights gets the weights flipped to uint8, zero point + 128. */
static int64_t q_weights(nl_ctx *c, int32_t t, const nl_ty *x, nl_ty *w) {
    if (nl_ty_of(c, t, w)) return -1;
    if (w->type == x->type) return nl_tensor(c, t);
    const ei_gtensor *tw = T(c, t);
    if (tw->kind != EI_GK_CONST || x->type != ANEURALNETWORKS_TENSOR_QUANT8_ASYMM)
        return nl_refuse(c, "weights '%s' are %s and the input %s: NNAPI needs one type", tw->name,
                         ei_nn_type_name(w->type), ei_nn_type_name(x->type));
    uint64_t nb = nl_ty_bytes(w);
    uint8_t *p = nl_alloc(c, nb);
    if (!p) return -1;
    for (uint64_t i = 0; i < nb; i++) p[i] = c->blob[tw->offset + i] ^ 0x80u;
    w->type = ANEURALNETWORKS_TENSOR_QUANT8_ASYMM, w->zp += 128;
    return nl_const(c, w, p, nb);
}

static int low_fc(nl_ctx *c, const ei_gnode *n) {
    const ei_gtensor *tx = T(c, n->in[0]), *tw = T(c, n->in[1]);
    nl_ty x, o;
    if (nl_ty_of(c, n->in[0], &x) || nl_ty_of(c, n->out, &o)) return -1;
    uint32_t K = (uint32_t)tw->shape[1], N = (uint32_t)tw->shape[0], M = (uint32_t)(ei_gtensor_numel(tx) / K);
    if (need_op(c, type_op_level(&x, 1), ANEURALNETWORKS_FULLY_CONNECTED, &x)) return -1;
    int64_t xi = nl_tensor(c, n->in[0]), out = nl_out(c, n->out), fuse = nl_i32(c, ANEURALNETWORKS_FUSED_NONE);
    if (xi < 0 || out < 0 || fuse < 0) return -1;
    if (x.rank == 1) xi = nl_reshape(c, xi, &x, 2, (uint32_t[]){1, K}, -1); /* NNAPI wants rank >= 2 */
    if (nl_is_float(&x)) {
        nl_ty wt = ty2(&x, N, K);
        int64_t w = as_float(c, n->in[1], &wt), b = float_bias(c, n, &x, N);
        if (xi < 0 || w < 0 || b < 0) return -1;
        if (tw->type == EI_GT_I8 && tw->kind == EI_GK_CONST && !(c->f16 && tx->type == EI_GT_I16))
            nl_note(c, "int8 weights with float input: DEQUANTIZE + FULLY_CONNECTED");
        uint32_t in[4] = {U(xi), U(w), U(b), U(fuse)}, ot = U(out);
        return nl_op(c, ANEURALNETWORKS_FULLY_CONNECTED, 4, in, 1, &ot);
    }
    if (tw->type == EI_GT_I8 && tw->q.kind == EI_GQ_TENSOR) {
        nl_ty w;
        int64_t wi = q_weights(c, n->in[1], &x, &w);
        float bs = x.scale * w.scale;
        if (!(o.scale > bs) && nl_need(c, 3, "quantised FULLY_CONNECTED with output scale <= input x weight scale"))
            return -1;
        int64_t b = int_bias(c, n, N, bs);
        if (xi < 0 || wi < 0 || b < 0) return -1;
        uint32_t in[4] = {U(xi), U(wi), U(b), U(fuse)}, ot = U(out);
        return nl_op(c, ANEURALNETWORKS_FULLY_CONNECTED, 4, in, 1, &ot);
    }
    if (tw->type != EI_GT_I8 || tw->q.kind != EI_GQ_CHANNEL)
        return nl_refuse(c, "weights '%s' are %s per-%s with a quantised input: NNAPI has no such FULLY_CONNECTED",
                         tw->name, ei_gtype_name(tw->type), ei_gquant_name(tw->q.kind));
    /* FULLY_CONNECTED takes per-tensor weights only: per-channel int8 is a 1x1 CONV_2D on NHWC
     * [1, 1, M, K] with a [N, 1, 1, K] filter (the same bytes) and a per-channel bias scale */
    if (nl_need(c, 3, "per-channel int8 weights (CONV_2D with TENSOR_QUANT8_SYMM_PER_CHANNEL)")) return -1;
    nl_ty ft = nl_ty_scalar(ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL);
    ft.rank = 4, ft.dims[0] = N, ft.dims[1] = 1, ft.dims[2] = 1, ft.dims[3] = K, ft.pc_axis = 0;
    nl_ty o4 = nl_ty_dims(&o, 4, (uint32_t[]){1, 1, M, N});
    int64_t x4 = nl_reshape(c, xi, &x, 4, (uint32_t[]){1, 1, M, K}, -1), f = nl_const_pc(c, n->in[1], &ft);
    int64_t b = int_bias(c, n, N, 0.0f), z = nl_i32(c, 0), one = nl_i32(c, 1), y4 = nl_tmp(c, &o4);
    if (x4 < 0 || f < 0 || b < 0 || z < 0 || one < 0 || y4 < 0) return -1;
    uint32_t in[10] = {U(x4), U(f), U(b), U(z), U(z), U(z), U(z), U(one), U(one), U(fuse)}, ot = U(y4);
    if (nl_op(c, ANEURALNETWORKS_CONV_2D, 10, in, 1, &ot)) return -1;
    nl_note(c, "per-channel int8 FULLY_CONNECTED as a 1x1 CONV_2D on NHWC [1,1,%u,%u]", M, K);
    return nl_reshape(c, y4, &o4, o.rank, o.dims, out) < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------- BATCH_MATMUL */
/* y [P, Q] -> y^T [Q, P] at level 1, which has no TRANSPOSE: FULLY_CONNECTED(I_Q, y) = I y^T.
 * Exact in float (each output is one product by 1 plus products by 0). */
static int64_t transpose_fc(nl_ctx *c, int64_t y, const nl_ty *ty, uint32_t P, uint32_t Q) {
    nl_ty et = ty2(ty, Q, Q), zt = ty1(ty, P), rt = ty2(ty, Q, P);
    float *eye = nl_alloc(c, 4ull * Q * Q);
    if (!eye) return -1;
    for (uint32_t i = 0; i < Q; i++) eye[(uint64_t)i * Q + i] = 1.0f;
    int64_t e = nl_const(c, &et, eye, 4ull * Q * Q), z = nl_fill(c, &zt, 0), r = nl_tmp(c, &rt);
    int64_t fuse = nl_i32(c, ANEURALNETWORKS_FUSED_NONE);
    if (e < 0 || z < 0 || r < 0 || fuse < 0) return -1;
    uint32_t in[4] = {U(e), U(y), U(z), U(fuse)}, ot = U(r);
    return nl_op(c, ANEURALNETWORKS_FULLY_CONNECTED, 4, in, 1, &ot) ? -1 : r;
}

static int64_t transpose_last2(nl_ctx *c, int64_t src, nl_ty *ty) {
    int32_t perm[EI_G_MAX_RANK];
    uint32_t r = ty->rank, d[EI_G_MAX_RANK];
    for (uint32_t i = 0; i < r; i++) perm[i] = (int32_t)i, d[i] = ty->dims[i];
    perm[r - 2] = (int32_t)r - 1, perm[r - 1] = (int32_t)r - 2;
    d[r - 2] = ty->dims[r - 1], d[r - 1] = ty->dims[r - 2];
    *ty = nl_ty_dims(ty, r, d);
    int64_t dst = nl_tmp(c, ty);
    return op2(c, ANEURALNETWORKS_TRANSPOSE, src, nl_i32v(c, r, perm), dst) ? -1 : dst;
}

/* Batch b of x3 [B, P, Q] as a [P, Q] operand: SPLIT outputs (level 3) or EMBEDDING_LOOKUP. */
static int64_t batch_slice(nl_ctx *c, int64_t x3, const nl_ty *t3, uint32_t b, const int64_t *parts) {
    nl_ty t1 = nl_ty_dims(t3, 3, (uint32_t[]){1, t3->dims[1], t3->dims[2]});
    int64_t one = parts ? parts[b] : nl_tmp(c, &t1);
    if (!parts) {
        int32_t idx = (int32_t)b;
        if (op2(c, ANEURALNETWORKS_EMBEDDING_LOOKUP, nl_i32v(c, 1, &idx), x3, one)) return -1;
    }
    return nl_reshape(c, one, &t1, 2, t3->dims + 1, -1);
}

static int split3(nl_ctx *c, int64_t x3, const nl_ty *t3, int64_t *parts) {
    nl_ty t1 = nl_ty_dims(t3, 3, (uint32_t[]){1, t3->dims[1], t3->dims[2]});
    uint32_t B = t3->dims[0], *out = malloc(4ull * B);
    int64_t ax = nl_i32(c, 0), ns = nl_i32(c, (int32_t)B);
    int rc = out && ax >= 0 && ns >= 0 ? 0 : -1;
    if (!out) ei_error_set("nnapi: out of memory");
    for (uint32_t b = 0; b < B && !rc; b++) rc = (parts[b] = nl_tmp(c, &t1)) < 0 ? -1 : (out[b] = U(parts[b]), 0);
    uint32_t in[3] = {U(x3), U(ax), U(ns)};
    if (!rc) rc = nl_op(c, ANEURALNETWORKS_SPLIT, 3, in, B, out);
    free(out);
    return rc;
}

static int low_bmm(nl_ctx *c, const ei_gnode *n) {
    const ei_gtensor *ta = T(c, n->in[0]);
    nl_ty a, b, o;
    if (nl_ty_of(c, n->in[0], &a) || nl_ty_of(c, n->in[1], &b) || nl_ty_of(c, n->out, &o)) return -1;
    int adj_x = n->p.bmm.adj_x, adj_y = n->p.bmm.adj_y;
    int64_t ai = nl_tensor(c, n->in[0]), bi = nl_tensor(c, n->in[1]), out = nl_out(c, n->out);
    if (ai < 0 || bi < 0 || out < 0) return -1;
    if (c->fl >= 6 && a.type != ANEURALNETWORKS_TENSOR_QUANT8_ASYMM) {
        int64_t fx = nl_bool(c, adj_x), fy = nl_bool(c, adj_y);
        if (fx < 0 || fy < 0) return -1;
        uint32_t in[4] = {U(ai), U(bi), U(fx), U(fy)}, ot = U(out);
        return nl_op(c, ANEURALNETWORKS_BATCH_MATMUL, 4, in, 1, &ot);
    }
    /* below level 6 (or for uint8, which BATCH_MATMUL lacks): per batch FULLY_CONNECTED(a_b, w_b)
     * with w_b = b_b^T, the batches cut by SPLIT (level 3) or EMBEDDING_LOOKUP, joined by
     * CONCATENATION; the transposes by TRANSPOSE (level 2) or, at level 1, FULLY_CONNECTED with an
     * identity (float only) */
    int r = ta->rank, quant = nl_is_q8(&a);
    uint32_t M = a.dims[r - (adj_x ? 1 : 2)], K = a.dims[r - (adj_x ? 2 : 1)], N = b.dims[r - (adj_y ? 2 : 1)];
    uint32_t B = (uint32_t)(ei_gtensor_numel(ta) / ((int64_t)M * K));
    if (quant && nl_need(c, 3, "a quantised BATCH_MATMUL decomposition")) return -1;
    int late_x = adj_x, late_y = !adj_y; /* transposes still to do per batch (level 1) */
    if (c->fl >= 2) {
        if (adj_x && (ai = transpose_last2(c, ai, &a)) < 0) return -1;
        if (!adj_y && (bi = transpose_last2(c, bi, &b)) < 0) return -1;
        late_x = late_y = 0;
    }
    uint32_t ad[2] = {late_x ? K : M, late_x ? M : K}, bd[2] = {late_y ? K : N, late_y ? N : K};
    nl_ty a3 = nl_ty_dims(&a, 3, (uint32_t[]){B, ad[0], ad[1]}), b3 = nl_ty_dims(&b, 3, (uint32_t[]){B, bd[0], bd[1]});
    int64_t *pa = NULL, *pb = NULL, *ys = calloc(B, sizeof *ys);
    int rc = ys ? 0 : ei_error_set("nnapi: out of memory");
    int64_t a3i = -1, b3i = -1;
    if (!rc && B > 1) {
        a3i = nl_reshape(c, ai, &a, 3, a3.dims, -1), b3i = nl_reshape(c, bi, &b, 3, b3.dims, -1);
        rc = a3i < 0 || b3i < 0 ? -1 : 0;
        if (!rc && c->fl >= 3) {
            pa = calloc(B, sizeof *pa), pb = calloc(B, sizeof *pb);
            rc = !pa || !pb ? ei_error_set("nnapi: out of memory") : split3(c, a3i, &a3, pa) || split3(c, b3i, &b3, pb);
        }
    }
    nl_ty yt = ty2(&o, M, N);
    int direct = B == 1 && nl_same_dims(&yt, &o); /* the one FULLY_CONNECTED writes the output */
    float bscale = quant ? a.scale * b.scale : 0.0f;
    for (uint32_t bt = 0; bt < B && !rc; bt++) {
        int64_t a2 = B > 1 ? batch_slice(c, a3i, &a3, bt, pa) : a.rank == 2 ? ai : nl_reshape(c, ai, &a, 2, ad, -1);
        int64_t b2 = B > 1 ? batch_slice(c, b3i, &b3, bt, pb) : b.rank == 2 ? bi : nl_reshape(c, bi, &b, 2, bd, -1);
        if (a2 >= 0 && late_x) a2 = transpose_fc(c, a2, &a, K, M);
        if (b2 >= 0 && late_y) b2 = transpose_fc(c, b2, &b, K, N);
        nl_ty zt = quant ? nl_ty_scalar(ANEURALNETWORKS_TENSOR_INT32) : ty1(&a, N);
        zt.rank = 1, zt.dims[0] = N, zt.scale = bscale;
        int64_t z = nl_fill(c, &zt, 0), fuse = nl_i32(c, ANEURALNETWORKS_FUSED_NONE);
        ys[bt] = direct ? out : nl_tmp(c, &yt);
        if (a2 < 0 || b2 < 0 || z < 0 || fuse < 0 || ys[bt] < 0) rc = -1;
        else {
            uint32_t in[4] = {U(a2), U(b2), U(z), U(fuse)}, ot = U(ys[bt]);
            rc = nl_op(c, ANEURALNETWORKS_FULLY_CONNECTED, 4, in, 1, &ot);
        }
    }
    int64_t y = B == 1 && !rc ? ys[0] : -1;
    if (!rc && B > 1) {
        nl_ty ct = ty2(&o, B * M, N);
        uint32_t *in = malloc(4ull * (B + 1)), ot;
        y = nl_tmp(c, &ct);
        int64_t ax = nl_i32(c, 0);
        if (!in || y < 0 || ax < 0) rc = in ? -1 : ei_error_set("nnapi: out of memory");
        for (uint32_t bt = 0; !rc && bt < B; bt++) in[bt] = U(ys[bt]);
        if (!rc) in[B] = U(ax), ot = U(y), rc = nl_op(c, ANEURALNETWORKS_CONCATENATION, B + 1, in, 1, &ot);
        free(in);
    }
    free(pa);
    free(pb);
    free(ys);
    if (rc) return -1;
    const char *tr = !adj_x && adj_y ? "" : c->fl >= 2 ? " after TRANSPOSE" : " with identity FULLY_CONNECTED transposes";
    nl_note(c, "BATCH_MATMUL as %s%u x FULLY_CONNECTED%s%s (feature level %d%s)",
            B > 1 ? (c->fl >= 3 ? "SPLIT + " : "EMBEDDING_LOOKUP + ") : "", B, B > 1 ? " + CONCATENATION" : "", tr, c->fl,
            c->fl >= 6 ? ", uint8" : " < 6");
    if (direct) return 0;
    return nl_reshape(c, y, &yt, o.rank, o.dims, out) < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------- data movement */
static int low_concat(nl_ctx *c, const ei_gnode *n) {
    nl_ty x, o;
    if (nl_ty_of(c, n->in[0], &x) || nl_ty_of(c, n->out, &o)) return -1;
    if (n->n_in == 1) return nl_alias(c, n->out, nl_tensor(c, n->in[0]), &x);
    if (x.type == ANEURALNETWORKS_TENSOR_INT32) return nl_refuse(c, "NNAPI CONCATENATION takes no int32 tensors");
    if (need_op(c, type_op_level(&x, 1), ANEURALNETWORKS_CONCATENATION, &x)) return -1;
    uint32_t in[EI_G_MAX_IN + 1], ot;
    for (int32_t k = 0; k < n->n_in; k++) {
        nl_ty t;
        if (nl_ty_of(c, n->in[k], &t)) return -1;
        if (nl_is_q8(&t) && (t.scale != o.scale || t.zp != o.zp) &&
            nl_need(c, 3, "CONCATENATION of inputs whose scale differs from the output's"))
            return -1;
        int64_t i = nl_tensor(c, n->in[k]);
        if (i < 0) return -1;
        in[k] = U(i);
    }
    int64_t ax = nl_i32(c, n->p.concat.axis), out = nl_out(c, n->out);
    if (ax < 0 || out < 0) return -1;
    in[n->n_in] = U(ax), ot = U(out);
    return nl_op(c, ANEURALNETWORKS_CONCATENATION, U(n->n_in + 1), in, 1, &ot);
}

static int low_slice(nl_ctx *c, const ei_gnode *n) {
    const ei_gtensor *tx = T(c, n->in[0]);
    nl_ty x;
    if (nl_ty_of(c, n->in[0], &x) || need_op(c, type_op_level(&x, 3), ANEURALNETWORKS_SLICE, &x)) return -1;
    int32_t b[EI_G_MAX_RANK], s[EI_G_MAX_RANK];
    for (uint32_t i = 0; i < x.rank; i++) {
        b[i] = tx->rank ? n->p.slice.begin[i] : 0;
        s[i] = !tx->rank ? 1 : n->p.slice.size[i] == -1 ? tx->shape[i] - b[i] : n->p.slice.size[i];
    }
    return op3(c, ANEURALNETWORKS_SLICE, nl_tensor(c, n->in[0]), nl_i32v(c, x.rank, b), nl_i32v(c, x.rank, s),
               nl_out(c, n->out));
}

static int low_reshape(nl_ctx *c, const ei_gnode *n) {
    nl_ty x, o;
    if (nl_ty_of(c, n->in[0], &x) || nl_ty_of(c, n->out, &o)) return -1;
    int64_t xi = nl_tensor(c, n->in[0]);
    if (nl_same_dims(&x, &o)) return nl_alias(c, n->out, xi, &x);
    if (xi < 0 || need_op(c, type_op_level(&x, 1), ANEURALNETWORKS_RESHAPE, &x)) return -1;
    return nl_reshape(c, xi, &x, o.rank, o.dims, nl_out(c, n->out)) < 0 ? -1 : 0;
}

static int low_transpose(nl_ctx *c, const ei_gnode *n) {
    const ei_gtensor *tx = T(c, n->in[0]);
    nl_ty x;
    if (nl_ty_of(c, n->in[0], &x)) return -1;
    if (tx->rank <= 1) return nl_alias(c, n->out, nl_tensor(c, n->in[0]), &x);
    if (x.type == ANEURALNETWORKS_TENSOR_INT32) return nl_refuse(c, "NNAPI TRANSPOSE takes no int32 tensors");
    if (need_op(c, type_op_level(&x, 2), ANEURALNETWORKS_TRANSPOSE, &x)) return -1;
    return op2(c, ANEURALNETWORKS_TRANSPOSE, nl_tensor(c, n->in[0]), nl_i32v(c, x.rank, n->p.transpose.perm),
               nl_out(c, n->out));
}

static int low_convert(nl_ctx *c, const ei_gnode *n) {
    nl_ty x, o;
    if (nl_ty_of(c, n->in[0], &x) || nl_ty_of(c, n->out, &o)) return -1;
    int64_t xi = nl_tensor(c, n->in[0]);
    if (x.type == o.type && (!nl_is_q8(&x) || (x.scale == o.scale && x.zp == o.zp))) {
        /* f32 <-> f16 casts, int16 (de)quantisation under fallback_f16: the values are unchanged */
        if (n->op != EI_OP_CAST) nl_note(c, "%s is an identity in float16", ei_gop_name(n->op));
        return nl_alias(c, n->out, xi, &x);
    }
    int32_t code = n->op == EI_OP_QUANTIZE ? ANEURALNETWORKS_QUANTIZE
                   : n->op == EI_OP_DEQUANTIZE ? ANEURALNETWORKS_DEQUANTIZE : ANEURALNETWORKS_CAST;
    int lv = code == ANEURALNETWORKS_DEQUANTIZE && x.type == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM &&
                     o.type == ANEURALNETWORKS_TENSOR_FLOAT32 ? 1 : 3;
    if (need_op(c, lv, code, &x)) return -1;
    return op1(c, code, xi, nl_out(c, n->out));
}

static int low_gather(nl_ctx *c, const ei_gnode *n) {
    const ei_gtensor *ti = T(c, n->in[1]);
    nl_ty x, idx, o;
    if (nl_ty_of(c, n->in[0], &x) || nl_ty_of(c, n->in[1], &idx) || nl_ty_of(c, n->out, &o)) return -1;
    int32_t axis = n->p.gather.axis;
    int64_t xi = nl_tensor(c, n->in[0]), ii = nl_tensor(c, n->in[1]);
    if (xi < 0 || ii < 0) return -1;
    /* what NNAPI produces (scalar indices are [1] here), reshaped to the IR's shape if it differs */
    uint32_t nd[EI_G_MAX_RANK + 1], nr = 0;
    if (c->fl >= 3) {
        if (need_op(c, type_op_level(&x, 3), ANEURALNETWORKS_GATHER, &x)) return -1;
        for (int32_t i = 0; i < axis; i++) nd[nr++] = x.dims[i];
        for (uint32_t i = 0; i < idx.rank; i++) nd[nr++] = idx.dims[i];
        for (uint32_t i = (uint32_t)axis + 1; i < x.rank; i++) nd[nr++] = x.dims[i];
        nl_ty nt = nl_ty_dims(&x, nr, nd);
        int same = nl_same_dims(&nt, &o);
        int64_t y = same ? nl_out(c, n->out) : nl_tmp(c, &nt);
        if (op3(c, ANEURALNETWORKS_GATHER, xi, nl_i32(c, axis), ii, y)) return -1;
        return same ? 0 : nl_reshape(c, y, &nt, o.rank, o.dims, nl_out(c, n->out)) < 0 ? -1 : 0;
    }
    /* levels 1-2: EMBEDDING_LOOKUP (rows of a float32 table by a 1-D index) */
    if (axis != 0 || x.type != ANEURALNETWORKS_TENSOR_FLOAT32)
        return nl_need(c, 3, "GATHER other than float32 rows along axis 0");
    if (idx.rank != 1) {
        if (ti->kind != EI_GK_CONST) return nl_need(c, 3, "GATHER with multi-dimensional computed indices");
        nl_ty flat = ty1(&idx, (uint32_t)ei_gtensor_numel(ti));
        if ((ii = nl_const(c, &flat, c->blob + ti->offset, nl_ty_bytes(&flat))) < 0) return -1;
        idx = flat;
    }
    nl_ty t2 = x;
    if (x.rank == 1) { /* the table needs rank >= 2 */
        t2 = ty2(&x, x.dims[0], 1);
        if ((xi = nl_reshape(c, xi, &x, 2, t2.dims, -1)) < 0) return -1;
    }
    nd[nr++] = idx.dims[0];
    for (uint32_t i = 1; i < t2.rank; i++) nd[nr++] = t2.dims[i];
    nl_ty nt = nl_ty_dims(&x, nr, nd);
    int same = nl_same_dims(&nt, &o);
    int64_t y = same ? nl_out(c, n->out) : nl_tmp(c, &nt);
    if (op2(c, ANEURALNETWORKS_EMBEDDING_LOOKUP, ii, xi, y)) return -1;
    nl_note(c, "GATHER as EMBEDDING_LOOKUP (feature level %d < 3)", c->fl);
    return same ? 0 : nl_reshape(c, y, &nt, o.rank, o.dims, nl_out(c, n->out)) < 0 ? -1 : 0;
}

static int low_select(nl_ctx *c, const ei_gnode *n) {
    nl_ty cond, a;
    if (nl_ty_of(c, n->in[0], &cond) || nl_ty_of(c, n->in[1], &a)) return -1;
    if (need_op(c, type_op_level(&a, 3), ANEURALNETWORKS_SELECT, &a)) return -1;
    /* the IR's u8 condition (0 = false) becomes TENSOR_BOOL8 through NOT_EQUAL with 0 */
    nl_ty bt = nl_ty_dims(&cond, cond.rank, cond.dims), zt = ty1(&cond, 1);
    bt.type = ANEURALNETWORKS_TENSOR_BOOL8, bt.scale = 0, bt.zp = 0;
    int64_t zero = nl_fill(c, &zt, 0), bc = nl_tmp(c, &bt);
    if (op2(c, ANEURALNETWORKS_NOT_EQUAL, nl_tensor(c, n->in[0]), zero, bc)) return -1;
    return op3(c, ANEURALNETWORKS_SELECT, bc, nl_tensor(c, n->in[1]), nl_tensor(c, n->in[2]), nl_out(c, n->out));
}

int nl_lower_node(nl_ctx *c, int32_t i) {
    const ei_gnode *n = &c->g->nodes[i];
    switch (n->op) {
    case EI_OP_ADD:
    case EI_OP_SUB:
    case EI_OP_MUL:
    case EI_OP_DIV:
    case EI_OP_MAXIMUM: return low_binary(c, n);
    case EI_OP_RSQRT:
    case EI_OP_LOGISTIC:
    case EI_OP_ELU:
    case EI_OP_EXP: return low_unary(c, n);
    case EI_OP_MEAN: return low_mean(c, n);
    case EI_OP_SOFTMAX: return low_softmax(c, n);
    case EI_OP_FULLY_CONNECTED: return low_fc(c, n);
    case EI_OP_BATCH_MATMUL: return low_bmm(c, n);
    case EI_OP_CONCATENATION: return low_concat(c, n);
    case EI_OP_SLICE: return low_slice(c, n);
    case EI_OP_RESHAPE: return low_reshape(c, n);
    case EI_OP_TRANSPOSE: return low_transpose(c, n);
    case EI_OP_QUANTIZE:
    case EI_OP_DEQUANTIZE:
    case EI_OP_CAST: return low_convert(c, n);
    case EI_OP_GATHER: return low_gather(c, n);
    case EI_OP_SELECT: return low_select(c, n);
    default: return nl_refuse(c, "op code %d has no NNAPI lowering", (int)n->op);
    }
}
