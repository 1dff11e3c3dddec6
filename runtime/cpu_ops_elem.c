/* Element-wise ops of the cpu backend: ADD, SUB, MUL, DIV, MAXIMUM with NumPy broadcasting,
 * RSQRT, LOGISTIC, EXP, ELU, SELECT. Outputs are split across threads; every element is computed
 * by one IEEE operation (exp-based ones by the shared v8 kernels), so any split gives the same bits.
 *
 * Broadcasting runs as rows of the output's last axis: per row, each operand is either a run of
 * contiguous elements or one repeated value. That covers same-shape (one long row), a broadcast row
 * (bias [D] over [N, D]) and a broadcast column ([N, 1] over [N, D]) at full speed without a
 * per-element index computation. */
#include "runtime/cpu_internal.h"

#include <math.h>
#include <string.h>

typedef struct {
    int64_t rows, cols;      /* output as [rows, cols] */
    int64_t ext[3];          /* output extents of the 3 leading (padded) axes */
    int64_t sa[3], sb[3];    /* element strides of a and b along them (0: broadcast) */
    int64_t ia, ib;          /* inner stride (1 or 0) */
} bcast;

static void pad4(const ei_gtensor *t, int64_t d[4]) {
    for (int i = 0; i < 4; i++) d[i] = 1;
    for (int i = 0; i < t->rank; i++) d[4 - t->rank + i] = t->shape[i];
}

static void bcast_init(bcast *bc, const ei_gtensor *a, const ei_gtensor *b, const ei_gtensor *o) {
    int64_t da[4], db[4], dout[4];
    pad4(a, da), pad4(b, db), pad4(o, dout);
    const int64_t na = ei_gtensor_numel(a), nb = ei_gtensor_numel(b), no = ei_gtensor_numel(o);
    memset(bc, 0, sizeof *bc);
    if ((na == no || na == 1) && (nb == no || nb == 1)) { /* same shape or scalars: one row */
        bc->rows = 1, bc->cols = no;
        bc->ext[0] = bc->ext[1] = bc->ext[2] = 1;
        bc->ia = na == no && no > 1, bc->ib = nb == no && no > 1;
        return;
    }
    /* Collapse the axes first: drop the output's size-1 axes, and merge neighbours along which
     * each operand is broadcast in the same way (both axes broadcast, or both not). Otherwise a
     * trailing axis of 1 (RoPE of the cache rows, [slots, heads, half, 1] x [slots, 1, half, 1])
     * made rows of one element, and every element paid an index computation: measured 0.29 ms for
     * 50K elements, half of a 100M model's decode step. Same operations per element either way. */
    int64_t ce[4], cba[4], cbb[4]; /* collapsed extents, broadcast flags of a and b */
    int nc = 0;
    for (int i = 0; i < 4; i++) {
        if (dout[i] == 1) continue;
        const int ba = da[i] == 1, bb = db[i] == 1;
        if (nc > 0 && cba[nc - 1] == ba && cbb[nc - 1] == bb) {
            ce[nc - 1] *= dout[i];
            continue;
        }
        ce[nc] = dout[i], cba[nc] = ba, cbb[nc] = bb;
        nc++;
    }
    int64_t e4[4] = {1, 1, 1, 1}, ba4[4] = {1, 1, 1, 1}, bb4[4] = {1, 1, 1, 1};
    for (int i = 0; i < nc; i++) e4[4 - nc + i] = ce[i], ba4[4 - nc + i] = cba[i], bb4[4 - nc + i] = cbb[i];
    int64_t stra = 1, strb = 1;
    int64_t sta[4], stb[4];
    for (int i = 3; i >= 0; i--) {
        sta[i] = ba4[i] ? 0 : stra;
        stb[i] = bb4[i] ? 0 : strb;
        stra *= ba4[i] ? 1 : e4[i], strb *= bb4[i] ? 1 : e4[i];
    }
    bc->cols = e4[3];
    bc->rows = no / e4[3];
    for (int i = 0; i < 3; i++) bc->ext[i] = e4[i], bc->sa[i] = sta[i], bc->sb[i] = stb[i];
    bc->ia = sta[3], bc->ib = stb[3];
}

static void bcast_row(const bcast *bc, int64_t r, int64_t *oa, int64_t *ob) {
    int64_t i2 = r % bc->ext[2], i1 = (r / bc->ext[2]) % bc->ext[1], i0 = r / (bc->ext[2] * bc->ext[1]);
    *oa = i0 * bc->sa[0] + i1 * bc->sa[1] + i2 * bc->sa[2];
    *ob = i0 * bc->sb[0] + i1 * bc->sb[1] + i2 * bc->sb[2];
}

#define BIN_LOOP(E)                                                          \
    do {                                                                     \
        if (sa && sb)                                                        \
            for (int64_t i = 0; i < n; i++) { A_ = a[i], B_ = b[i]; o[i] = (E); } \
        else if (sa) {                                                       \
            B_ = b[0];                                                       \
            for (int64_t i = 0; i < n; i++) { A_ = a[i]; o[i] = (E); }       \
        } else if (sb) {                                                     \
            A_ = a[0];                                                       \
            for (int64_t i = 0; i < n; i++) { B_ = b[i]; o[i] = (E); }       \
        } else {                                                             \
            A_ = a[0], B_ = b[0];                                            \
            for (int64_t i = 0; i < n; i++) o[i] = (E);                      \
        }                                                                    \
    } while (0)

static void bin_f32(ei_gop op, const float *a, int64_t sa, const float *b, int64_t sb, float *o, int64_t n) {
    float A_, B_;
    switch (op) {
    case EI_OP_ADD: BIN_LOOP(A_ + B_); break;
    case EI_OP_SUB: BIN_LOOP(A_ - B_); break;
    case EI_OP_MUL: BIN_LOOP(A_ * B_); break;
    case EI_OP_DIV: BIN_LOOP(A_ / B_); break;
    default: BIN_LOOP(A_ > B_ ? A_ : B_); break;
    }
}

/* int32: wrap-around add / sub / mul (no undefined overflow), division truncates (by zero: 0,
 * reported by the caller's check first) */
static void bin_i32(ei_gop op, const int32_t *a, int64_t sa, const int32_t *b, int64_t sb, int32_t *o, int64_t n) {
    int32_t A_, B_;
    switch (op) {
    case EI_OP_ADD: BIN_LOOP((int32_t)((uint32_t)A_ + (uint32_t)B_)); break;
    case EI_OP_SUB: BIN_LOOP((int32_t)((uint32_t)A_ - (uint32_t)B_)); break;
    case EI_OP_MUL: BIN_LOOP((int32_t)((uint32_t)A_ * (uint32_t)B_)); break;
    case EI_OP_DIV: BIN_LOOP(B_ == 0 ? 0 : (A_ == INT32_MIN && B_ == -1) ? INT32_MIN : A_ / B_); break;
    default: BIN_LOOP(A_ > B_ ? A_ : B_); break;
    }
}
#undef BIN_LOOP

typedef struct {
    ei_gop op;
    bcast bc;
    const void *a, *b;
    void *o;
    int i32;
} bin_ctx;

static void bin_range(void *p, int64_t lo, int64_t hi) {
    const bin_ctx *c = p;
    const bcast *bc = &c->bc;
    if (bc->rows == 1) { /* one row split by elements */
        int64_t oa = bc->ia * lo, ob = bc->ib * lo;
        if (c->i32)
            bin_i32(c->op, (const int32_t *)c->a + oa, bc->ia, (const int32_t *)c->b + ob, bc->ib, (int32_t *)c->o + lo, hi - lo);
        else
            bin_f32(c->op, (const float *)c->a + oa, bc->ia, (const float *)c->b + ob, bc->ib, (float *)c->o + lo, hi - lo);
        return;
    }
    for (int64_t r = lo; r < hi; r++) {
        int64_t oa, ob;
        bcast_row(bc, r, &oa, &ob);
        if (c->i32)
            bin_i32(c->op, (const int32_t *)c->a + oa, bc->ia, (const int32_t *)c->b + ob, bc->ib,
                    (int32_t *)c->o + r * bc->cols, bc->cols);
        else
            bin_f32(c->op, (const float *)c->a + oa, bc->ia, (const float *)c->b + ob, bc->ib,
                    (float *)c->o + r * bc->cols, bc->cols);
    }
}

int ei_cpu_op_binary(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->node];
    const ei_gtensor *ta = ei_cpu_t(x, n->in[0]), *tb = ei_cpu_t(x, n->in[1]), *to = ei_cpu_t(x, n->out);
    bin_ctx c = {.op = n->op};
    bcast_init(&c.bc, ta, tb, to);
    if (ta->type == EI_GT_I32 && tb->type == EI_GT_I32 && to->type == EI_GT_I32) {
        c.i32 = 1;
        c.a = x->ptr[n->in[0]], c.b = x->ptr[n->in[1]], c.o = x->ptr[n->out];
        if (n->op == EI_OP_DIV) {
            const int32_t *b = c.b;
            for (int64_t i = 0, nb = ei_gtensor_numel(tb); i < nb; i++)
                if (b[i] == 0) return ei_cpu_fail(x, s, "integer division by zero (element %lld of %s)", (long long)i, tb->name);
        }
    } else {
        c.a = ei_cpu_in_f32(x, n->in[0]);
        c.b = ei_cpu_in_f32(x, n->in[1]);
        c.o = ei_cpu_out_f32(x, n->out);
        if (!c.a || !c.b || !c.o) return ei_cpu_fail(x, s, "internal: step scratch exhausted");
    }
    if (c.bc.rows == 1) ei_cpu_parallel(x, c.bc.cols, 16, 16384, bin_range, &c);
    else ei_cpu_parallel(x, c.bc.rows, 1, 16384 / (c.bc.cols > 0 ? c.bc.cols : 1) + 1, bin_range, &c);
    if (!c.i32) ei_cpu_out_commit(x, n->out, c.o);
    return 0;
}

/* ---------------------------------------------------------------- unary */
typedef struct {
    ei_gop op;
    float alpha;
    const ei_cpu_kernels *k;
    const float *a;
    float *o;
} un_ctx;

static void un_range(void *p, int64_t lo, int64_t hi) {
    const un_ctx *c = p;
    const float *a = c->a + lo;
    float *o = c->o + lo;
    const int64_t n = hi - lo;
    switch (c->op) {
    case EI_OP_RSQRT:
        for (int64_t i = 0; i < n; i++) o[i] = 1.0f / sqrtf(a[i]);
        break;
    case EI_OP_EXP: c->k->exp(a, o, n); break;
    case EI_OP_LOGISTIC: c->k->logistic(a, o, n); break;
    default: c->k->elu(a, o, n, c->alpha); break;
    }
}

int ei_cpu_op_unary(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->node];
    un_ctx c = {n->op, n->p.elu.alpha, x->k, ei_cpu_in_f32(x, n->in[0]), ei_cpu_out_f32(x, n->out)};
    if (!c.a || !c.o) return ei_cpu_fail(x, s, "internal: step scratch exhausted");
    ei_cpu_parallel(x, ei_gtensor_numel(ei_cpu_t(x, n->out)), 16, 8192, un_range, &c);
    ei_cpu_out_commit(x, n->out, c.o);
    return 0;
}

/* ---------------------------------------------------------------- select */
typedef struct {
    const uint8_t *c;
    const void *a, *b;
    void *o;
    size_t es; /* element size; 0: floats */
} sel_ctx;

static void sel_range(void *p, int64_t lo, int64_t hi) {
    const sel_ctx *c = p;
    switch (c->es) {
    case 4:
        for (int64_t i = lo; i < hi; i++)
            ((uint32_t *)c->o)[i] = c->c[i] ? ((const uint32_t *)c->a)[i] : ((const uint32_t *)c->b)[i];
        break;
    case 2:
        for (int64_t i = lo; i < hi; i++)
            ((uint16_t *)c->o)[i] = c->c[i] ? ((const uint16_t *)c->a)[i] : ((const uint16_t *)c->b)[i];
        break;
    default:
        for (int64_t i = lo; i < hi; i++)
            ((uint8_t *)c->o)[i] = c->c[i] ? ((const uint8_t *)c->a)[i] : ((const uint8_t *)c->b)[i];
        break;
    }
}

int ei_cpu_op_select(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->node];
    const ei_gtensor *ta = ei_cpu_t(x, n->in[1]), *tb = ei_cpu_t(x, n->in[2]), *to = ei_cpu_t(x, n->out);
    sel_ctx c = {x->ptr[n->in[0]], x->ptr[n->in[1]], x->ptr[n->in[2]], x->ptr[n->out], ei_gtype_size(to->type)};
    const int conv = ta->type != to->type || tb->type != to->type;
    if (conv) { /* mixed types: select in float, convert once */
        c.a = ei_cpu_in_f32(x, n->in[1]);
        c.b = ei_cpu_in_f32(x, n->in[2]);
        c.o = ei_cpu_out_f32(x, n->out);
        c.es = 4;
        if (!c.a || !c.b || !c.o) return ei_cpu_fail(x, s, "internal: step scratch exhausted");
    }
    ei_cpu_parallel(x, ei_gtensor_numel(to), 64, 32768, sel_range, &c);
    if (conv) ei_cpu_out_commit(x, n->out, c.o);
    return 0;
}
