/* Shape ops: concat, slice (a view over the leading axis), reshape (a view), transpose. Forward moves
 * bytes; backward adds, or copies into a gradient it touches first (ag_grad_acquire_overwrite). */
#include "autograd/ag_internal.h"

#include <string.h>

/* dst += src, or dst = src when over (dst is a fresh gradient: its old bytes are garbage). */
static void grad_into(ag_dtype dt, void *dst, const void *src, int64_t n, int over) {
    if (over) {
        memcpy(dst, src, (size_t)n * ag_dtype_size(dt));
    } else if (dt == AG_F32) {
        float *d = dst;
        const float *s = src;
        for (int64_t i = 0; i < n; i++) d[i] += s[i];
    } else {
        double *d = dst;
        const double *s = src;
        for (int64_t i = 0; i < n; i++) d[i] += s[i];
    }
}

/* ------------------------------------------------------------------ concat
 * Per-source extent along the axis read from the source's shape. */

static int concat_forward(ag_node *n) {
    const int64_t outer = n->dim.concat.outer, inner = n->dim.concat.inner, tot = n->dim.concat.total;
    const int ax = n->p.concat.axis;
    const size_t es = ag_dtype_size(n->t.dtype);
    char *y = n->t.data;
#pragma omp parallel for schedule(static) if (n->t.numel > AG_PAR_MIN)
    for (int64_t o = 0; o < outer; o++) {
        int64_t off = 0;
        for (int s = 0; s < n->nsrc; s++) {
            const int64_t e = n->src[s]->t.shape[ax];
            memcpy(y + (size_t)((o * tot + off) * inner) * es, (const char *)n->src[s]->t.data + (size_t)(o * e * inner) * es,
                   (size_t)(e * inner) * es);
            off += e;
        }
    }
    return 0;
}

static void concat_backward(ag_node *n) {
    const int64_t outer = n->dim.concat.outer, inner = n->dim.concat.inner, tot = n->dim.concat.total;
    const int ax = n->p.concat.axis;
    const size_t es = ag_dtype_size(n->t.dtype);
    int64_t off = 0;
    /* one source at a time: a source given twice is copied into at its first place, then added to */
    for (int s = 0; s < n->nsrc; s++) {
        const int64_t e = n->src[s]->t.shape[ax];
        int over;
        char *dx = ag_grad_acquire_overwrite(n->src[s], &over);
        if (dx) {
            const char *dy = n->t.grad;
#pragma omp parallel for schedule(static) if (n->t.numel > AG_PAR_MIN)
            for (int64_t o = 0; o < outer; o++)
                grad_into(n->t.dtype, dx + (size_t)(o * e * inner) * es, dy + (size_t)((o * tot + off) * inner) * es,
                          e * inner, over);
        }
        off += e;
    }
}

static const ag_op op_concat = {AG_OP_CONCAT, concat_forward, concat_backward, 0, 0};

ag_tensor *ag_concat_n(ag_graph *g, int n, ag_tensor *const *ts, int axis) {
    if (n < 1 || n > AG_MAX_SRC) return ag_fail(g, "concat: %d inputs (1..%d supported)", n, AG_MAX_SRC);
    if (ag_check_srcs(g, &op_concat, n, ts)) return NULL;
    const ag_tensor *a = ts[0];
    const int ax = ag_axis(axis, a->ndim);
    char s0[96], si[96];
    ag_shape_str(a, s0, sizeof s0);
    if (ax < 0) return ag_fail(g, "concat: axis %d out of range for %s", axis, s0);
    int64_t tot = 0;
    for (int i = 0; i < n; i++) {
        const ag_tensor *t = ts[i];
        ag_shape_str(t, si, sizeof si);
        if (!ag_is_float(t)) return ag_fail(g, "concat: input %d must be float", i);
        if (t->ndim != a->ndim) return ag_fail(g, "concat: ranks differ: %s, %s", s0, si);
        for (int d = 0; d < a->ndim; d++)
            if (d != ax && t->shape[d] != a->shape[d])
                return ag_fail(g, "concat: shapes differ off axis %d: %s, %s", ax, s0, si);
        tot += t->shape[ax];
    }
    int64_t shape[AG_MAX_DIMS], outer = 1, inner = 1;
    memcpy(shape, a->shape, sizeof shape);
    shape[ax] = tot;
    for (int d = 0; d < a->ndim; d++) {
        if (d < ax) outer *= a->shape[d];
        if (d > ax) inner *= a->shape[d];
    }
    ag_node *nd = ag_node_new(g, &op_concat, a->ndim, shape, n, ts);
    if (!nd) return NULL;
    nd->p.concat.axis = ax;
    nd->dim.concat.outer = outer;
    nd->dim.concat.inner = inner;
    nd->dim.concat.total = tot;
    return &nd->t;
}

ag_tensor *ag_concat(ag_graph *g, ag_tensor *a, ag_tensor *b, int axis) {
    ag_tensor *ts[2] = {a, b};
    return ag_concat_n(g, 2, ts, axis);
}

/* ------------------------------------------------------------------ slice */

static int slice_forward(ag_node *n) {
    const int64_t outer = n->dim.slice.outer, ext = n->dim.slice.extent, inner = n->dim.slice.inner;
    const int64_t st = n->p.slice.start, len = n->p.slice.len;
    const size_t es = ag_dtype_size(n->t.dtype);
    const char *x = n->src[0]->t.data;
    char *y = n->t.data;
#pragma omp parallel for schedule(static) if (n->t.numel > AG_PAR_MIN)
    for (int64_t o = 0; o < outer; o++)
        memcpy(y + (size_t)(o * len * inner) * es, x + (size_t)((o * ext + st) * inner) * es, (size_t)(len * inner) * es);
    return 0;
}

static void slice_backward(ag_node *n) {
    int over;
    char *dx = ag_grad_acquire_overwrite(n->src[0], &over);
    if (!dx) return;
    const int64_t outer = n->dim.slice.outer, ext = n->dim.slice.extent, inner = n->dim.slice.inner;
    const int64_t st = n->p.slice.start, len = n->p.slice.len;
    const size_t es = ag_dtype_size(n->t.dtype);
    const char *dy = n->t.grad;
    /* a fresh gradient gets its zeros outside the slice here, so other slices of the source add */
#pragma omp parallel for schedule(static) if (n->t.numel > AG_PAR_MIN)
    for (int64_t o = 0; o < outer; o++) {
        char *row = dx + (size_t)(o * ext * inner) * es;
        if (over) {
            memset(row, 0, (size_t)(st * inner) * es);
            memset(row + (size_t)((st + len) * inner) * es, 0, (size_t)((ext - st - len) * inner) * es);
        }
        grad_into(n->t.dtype, row + (size_t)(st * inner) * es, dy + (size_t)(o * len * inner) * es, len * inner, over);
    }
}

static const ag_op op_slice = {AG_OP_SLICE, slice_forward, slice_backward, 0, 0};
/* A slice over the leading axis (nothing outside it) is one contiguous run of its source: a view,
 * so the chunked training graphs' per-segment rows of Q, K, V cost neither a copy nor memory. */
static int slice_view_forward(ag_node *n) {
    (void)n;
    return 0;
}
static const ag_op op_slice_view = {AG_OP_SLICE, slice_view_forward, slice_backward, 1, 0};

ag_tensor *ag_slice(ag_graph *g, ag_tensor *a, int axis, int64_t start, int64_t len) {
    if (ag_check_srcs(g, &op_slice, 1, &a)) return NULL;
    char sa[96];
    ag_shape_str(a, sa, sizeof sa);
    const int ax = ag_axis(axis, a->ndim);
    if (ax < 0) return ag_fail(g, "slice: axis %d out of range for %s", axis, sa);
    if (start < 0 || len < 1 || start > a->shape[ax] - len)
        return ag_fail(g, "slice: [%lld, %lld) outside axis %d of %s", (long long)start, (long long)(start + len), ax, sa);
    int64_t shape[AG_MAX_DIMS], outer = 1, inner = 1;
    memcpy(shape, a->shape, sizeof shape);
    shape[ax] = len;
    for (int d = 0; d < a->ndim; d++) {
        if (d < ax) outer *= a->shape[d];
        if (d > ax) inner *= a->shape[d];
    }
    /* a view keeps its source's dtype: masks and positions (uint8, int32) may be sliced that way */
    if (!ag_is_float(a) && outer != 1)
        return ag_fail(g, "slice: input must be float unless sliced along its leading axis (%s, axis %d)", sa, ax);
    ag_node *n = ag_node_new(g, outer == 1 ? &op_slice_view : &op_slice, a->ndim, shape, 1, &a);
    if (!n) return NULL;
    if (outer == 1) {
        n->view_off = (size_t)(start * inner) * ag_dtype_size(a->dtype);
        n->t.data = ag_view_data(n);
    }
    n->p.slice.axis = ax;
    n->p.slice.start = start;
    n->p.slice.len = len;
    n->dim.slice.outer = outer;
    n->dim.slice.extent = a->shape[ax];
    n->dim.slice.inner = inner;
    return &n->t;
}

/* ------------------------------------------------------------------ reshape (view, own gradient) */

static void reshape_backward(ag_node *n) {
    if (n->grad_alias) { /* the bytes already are the source's gradient (pool_plan) */
        n->src[0]->grad_live = 1;
        return;
    }
    int over;
    void *dx = ag_grad_acquire_overwrite(n->src[0], &over);
    if (dx) grad_into(n->t.dtype, dx, n->t.grad, n->t.numel, over);
}

static const ag_op op_reshape = {AG_OP_RESHAPE, NULL, reshape_backward, 1, 0};

ag_tensor *ag_reshape(ag_graph *g, ag_tensor *a, int ndim, const int64_t *shape) {
    if (ag_check_srcs(g, &op_reshape, 1, &a)) return NULL;
    char sa[96], sn[96];
    ag_shape_str(a, sa, sizeof sa);
    if (ndim < 1 || ndim > AG_MAX_DIMS || !shape) return ag_fail(g, "reshape: rank %d not in 1..%d", ndim, AG_MAX_DIMS);
    ag_dims_str(ndim, shape, sn, sizeof sn);
    int64_t s[AG_MAX_DIMS], known = 1;
    int infer = -1;
    for (int d = 0; d < ndim; d++) {
        s[d] = shape[d];
        if (s[d] == -1) {
            if (infer >= 0) return ag_fail(g, "reshape: more than one -1 in %s", sn);
            infer = d;
        } else if (s[d] < 1) {
            return ag_fail(g, "reshape: bad extent in %s", sn);
        } else {
            known *= s[d];
        }
    }
    if (infer >= 0) {
        if (a->numel % known) return ag_fail(g, "reshape: %s cannot become %s", sa, sn);
        s[infer] = a->numel / known;
        known *= s[infer];
    }
    if (known != a->numel) return ag_fail(g, "reshape: element counts differ: %s -> %s", sa, sn);
    ag_node *n = ag_node_new(g, &op_reshape, ndim, s, 1, &a);
    return n ? &n->t : NULL;
}

/* ------------------------------------------------------------------ transpose
 * Output padded to 4 dims; dim.transpose.stride: strides of the source read at output index
 * positions. */

static void transpose_run(ag_node *n, int backward) {
    int64_t os[4];
    const int off = 4 - n->t.ndim;
    for (int d = 0; d < 4; d++) os[d] = d < off ? 1 : n->t.shape[d - off];
    const int64_t *st = n->dim.transpose.stride;
    const size_t es = ag_dtype_size(n->t.dtype);
    int over = 0; /* the backward writes each element of the source's gradient once: a permutation */
    char *x = backward ? ag_grad_acquire_overwrite(n->src[0], &over) : n->src[0]->t.data;
    char *y = backward ? n->t.grad : n->t.data;
    if (!x) return;
    const int f32 = n->t.dtype == AG_F32;
#pragma omp parallel for collapse(3) schedule(static) if (n->t.numel > AG_PAR_MIN)
    for (int64_t i0 = 0; i0 < os[0]; i0++)
        for (int64_t i1 = 0; i1 < os[1]; i1++)
            for (int64_t i2 = 0; i2 < os[2]; i2++) {
                const int64_t ob = ((i0 * os[1] + i1) * os[2] + i2) * os[3];
                const int64_t ib = i0 * st[0] + i1 * st[1] + i2 * st[2];
                if (st[3] == 1) { /* innermost axis kept: whole rows */
                    if (!backward)
                        memcpy(y + (size_t)ob * es, x + (size_t)ib * es, (size_t)os[3] * es);
                    else
                        grad_into(n->t.dtype, x + (size_t)ib * es, y + (size_t)ob * es, os[3], over);
                    continue;
                }
                for (int64_t i3 = 0; i3 < os[3]; i3++) {
                    const int64_t xi = ib + i3 * st[3], yi = ob + i3;
                    if (!backward)
                        memcpy(y + (size_t)yi * es, x + (size_t)xi * es, es);
                    else if (f32) {
                        const float v = ((const float *)y)[yi];
                        ((float *)x)[xi] = over ? v : ((float *)x)[xi] + v;
                    } else {
                        const double v = ((const double *)y)[yi];
                        ((double *)x)[xi] = over ? v : ((double *)x)[xi] + v;
                    }
                }
            }
}

static int transpose_forward(ag_node *n) {
    transpose_run(n, 0);
    return 0;
}
static void transpose_backward(ag_node *n) { transpose_run(n, 1); }

static const ag_op op_transpose = {AG_OP_TRANSPOSE, transpose_forward, transpose_backward, 0, 0};

ag_tensor *ag_transpose(ag_graph *g, ag_tensor *a, int axis0, int axis1) {
    if (ag_check_srcs(g, &op_transpose, 1, &a)) return NULL;
    char sa[96];
    ag_shape_str(a, sa, sizeof sa);
    if (!ag_is_float(a)) return ag_fail(g, "transpose: input must be float");
    const int x0 = ag_axis(axis0, a->ndim), x1 = ag_axis(axis1, a->ndim);
    if (x0 < 0 || x1 < 0) return ag_fail(g, "transpose: axes %d, %d out of range for %s", axis0, axis1, sa);
    int64_t shape[AG_MAX_DIMS], istr[AG_MAX_DIMS], s = 1;
    memcpy(shape, a->shape, sizeof shape);
    shape[x0] = a->shape[x1];
    shape[x1] = a->shape[x0];
    for (int d = a->ndim - 1; d >= 0; d--) {
        istr[d] = s;
        s *= a->shape[d];
    }
    ag_node *n = ag_node_new(g, &op_transpose, a->ndim, shape, 1, &a);
    if (!n) return NULL;
    n->p.transpose.axis0 = x0;
    n->p.transpose.axis1 = x1;
    const int off = 4 - a->ndim;
    for (int d = 0; d < 4; d++) {
        if (d < off) {
            n->dim.transpose.stride[d] = 0;
            continue;
        }
        int sd = d - off; /* output dim sd reads source dim perm(sd) */
        int src_d = sd == x0 ? x1 : sd == x1 ? x0 : sd;
        n->dim.transpose.stride[d] = istr[src_d];
    }
    return &n->t;
}
