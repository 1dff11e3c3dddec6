/* Data-movement and conversion ops of the cpu backend: GATHER, CONCATENATION, SLICE, TRANSPOSE,
 * RESHAPE (when it cannot be a view), CAST, QUANTIZE, DEQUANTIZE. Movement copies elements in their
 * own type (any element size), in contiguous runs wherever the layout allows. */
#include "runtime/cpu_internal.h"

#include <string.h>

static int same_types(const ei_cpu_exec *x, const ei_cpu_step *s, const ei_gnode *n, int32_t n_data) {
    const ei_gtype ty = ei_cpu_t(x, n->out)->type;
    for (int32_t i = 0; i < n_data; i++)
        if (ei_cpu_t(x, n->in[i])->type != ty)
            return ei_cpu_fail(x, s, "input %d is %s, output %s: the cpu backend moves one type", i,
                               ei_gtype_name(ei_cpu_t(x, n->in[i])->type), ei_gtype_name(ty));
    return 0;
}

static int64_t prod(const ei_gtensor *t, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= t->shape[i];
    return p;
}

/* ---------------------------------------------------------------- GATHER */
typedef struct {
    const uint8_t *src;
    uint8_t *dst;
    const int32_t *idx;
    int64_t nidx, nx, inner; /* inner in bytes */
} gather_ctx;

static void gather_range(void *p, int64_t lo, int64_t hi) {
    const gather_ctx *c = p;
    for (int64_t r = lo; r < hi; r++) {
        int64_t o = r / c->nidx, j = r % c->nidx;
        memcpy(c->dst + r * c->inner, c->src + (o * c->nx + c->idx[j]) * c->inner, (size_t)c->inner);
    }
}

int ei_cpu_op_gather(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->node];
    if (same_types(x, s, n, 1)) return -1;
    const ei_gtensor *tx = ei_cpu_t(x, n->in[0]), *ti = ei_cpu_t(x, n->in[1]);
    const int32_t ax = ei_cpu_axis(n->p.gather.axis, tx->rank);
    gather_ctx c = {x->ptr[n->in[0]], x->ptr[n->out], x->ptr[n->in[1]], ei_gtensor_numel(ti), tx->shape[ax],
                    prod(tx, ax + 1, tx->rank) * (int64_t)ei_gtype_size(tx->type)};
    for (int64_t j = 0; j < c.nidx; j++)
        if (c.idx[j] < 0 || c.idx[j] >= c.nx)
            return ei_cpu_fail(x, s, "index %d at position %lld of %s outside [0, %lld) along axis %d of %s", c.idx[j],
                               (long long)j, ti->name, (long long)c.nx, ax, tx->name);
    ei_cpu_parallel(x, prod(tx, 0, ax) * c.nidx, 1, 1 + 65536 / (c.inner > 0 ? c.inner : 1), gather_range, &c);
    return 0;
}

/* ---------------------------------------------------------------- CONCATENATION */
typedef struct {
    const ei_cpu_exec *x;
    const ei_gnode *n;
    int64_t outer_bytes; /* bytes of one outer slice of the output */
    int64_t chunk[EI_G_MAX_IN];
} concat_ctx;

static void concat_range(void *p, int64_t lo, int64_t hi) {
    const concat_ctx *c = p;
    uint8_t *dst = c->x->ptr[c->n->out];
    /* Two 4-byte pieces per outer index (the halves of RoPE pairs): plain stores, not two memcpy
     * calls per element. */
    if (c->n->n_in == 2 && c->chunk[0] == 4 && c->chunk[1] == 4) {
        const uint32_t *a = c->x->ptr[c->n->in[0]], *b = c->x->ptr[c->n->in[1]];
        uint32_t *d = (uint32_t *)(void *)dst;
        for (int64_t o = lo; o < hi; o++) d[2 * o] = a[o], d[2 * o + 1] = b[o];
        return;
    }
    for (int64_t o = lo; o < hi; o++) {
        uint8_t *d = dst + o * c->outer_bytes;
        for (int32_t i = 0; i < c->n->n_in; i++) {
            memcpy(d, (const uint8_t *)c->x->ptr[c->n->in[i]] + o * c->chunk[i], (size_t)c->chunk[i]);
            d += c->chunk[i];
        }
    }
}

int ei_cpu_op_concat(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->node];
    if (same_types(x, s, n, n->n_in)) return -1;
    const ei_gtensor *to = ei_cpu_t(x, n->out);
    const int32_t ax = ei_cpu_axis(n->p.concat.axis, to->rank);
    const int64_t es = (int64_t)ei_gtype_size(to->type), inner = prod(to, ax + 1, to->rank) * es;
    concat_ctx c = {x, n, to->shape[ax] * inner, {0}};
    for (int32_t i = 0; i < n->n_in; i++) c.chunk[i] = ei_cpu_t(x, n->in[i])->shape[ax] * inner;
    ei_cpu_parallel(x, prod(to, 0, ax), 1, 1 + 65536 / c.outer_bytes, concat_range, &c);
    return 0;
}

/* ---------------------------------------------------------------- SLICE */
typedef struct {
    const uint8_t *src;
    uint8_t *dst;
    int64_t din[4], dout[4], beg[4], es;
} slice_ctx;

static void slice_range(void *p, int64_t lo, int64_t hi) {
    const slice_ctx *c = p;
    const int64_t run = c->dout[3] * c->es, step = c->din[3] * c->es;
    int64_t i2 = lo % c->dout[2], i1 = (lo / c->dout[2]) % c->dout[1], i0 = lo / (c->dout[2] * c->dout[1]);
    for (int64_t r = lo; r < hi;) {
        /* a run of rows along axis 2: consecutive rows of the input are din[3] elements apart */
        const int64_t n = c->dout[2] - i2 < hi - r ? c->dout[2] - i2 : hi - r;
        const int64_t off =
            (((c->beg[0] + i0) * c->din[1] + c->beg[1] + i1) * c->din[2] + c->beg[2] + i2) * c->din[3] + c->beg[3];
        const uint8_t *src = c->src + off * c->es;
        uint8_t *dst = c->dst + r * run;
        if (run == 4) { /* one float per row (a half of the RoPE pairs): a fixed-size copy the compiler inlines */
            for (int64_t j = 0; j < n; j++) memcpy(dst + 4 * j, src + j * step, 4);
        } else {
            for (int64_t j = 0; j < n; j++) memcpy(dst + j * run, src + j * step, (size_t)run);
        }
        r += n, i2 += n;
        if (i2 == c->dout[2]) {
            i2 = 0;
            if (++i1 == c->dout[1]) i1 = 0, i0++;
        }
    }
}

int ei_cpu_op_slice(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->node];
    if (same_types(x, s, n, 1)) return -1;
    const ei_gtensor *ti = ei_cpu_t(x, n->in[0]), *to = ei_cpu_t(x, n->out);
    slice_ctx c = {x->ptr[n->in[0]], x->ptr[n->out], {1, 1, 1, 1}, {1, 1, 1, 1}, {0, 0, 0, 0}, (int64_t)ei_gtype_size(to->type)};
    const int pad = 4 - ti->rank;
    for (int i = 0; i < ti->rank; i++) {
        c.din[pad + i] = ti->shape[i];
        c.dout[pad + i] = to->shape[i];
        c.beg[pad + i] = n->p.slice.begin[i];
    }
    /* Axis i folds into axis i + 1 when axis i + 1 is taken whole (the rows of axis i are then
     * contiguous runs of axis i + 1): [388, 4, 32, 2] -> [388, 4, 32, 1] becomes one run of 49,664
     * rows two elements apart, not 12,416 runs of 4 rows (measured: the index arithmetic per 4-byte
     * row made each RoPE slice of a 100M model's decode step cost 0.27 ms). Axis 3 stays innermost. */
    for (int i = 1; i >= 0; i--) {
        if (c.din[i + 1] != c.dout[i + 1] || c.beg[i + 1] != 0) continue;
        c.beg[i + 1] = c.beg[i] * c.din[i + 1];
        c.din[i + 1] *= c.din[i], c.dout[i + 1] *= c.dout[i];
        c.din[i] = c.dout[i] = 1, c.beg[i] = 0;
    }
    const int64_t rows = c.dout[0] * c.dout[1] * c.dout[2];
    ei_cpu_parallel(x, rows, 1, 1 + 65536 / (c.dout[3] * c.es), slice_range, &c);
    return 0;
}

/* ---------------------------------------------------------------- TRANSPOSE */
typedef struct {
    const uint8_t *src;
    uint8_t *dst;
    int64_t dout[4], st[4]; /* st[i]: input stride (elements) of output axis i */
    int64_t es;
} tr_ctx;

static void tr_range(void *p, int64_t lo, int64_t hi) {
    const tr_ctx *c = p;
    const int64_t n3 = c->dout[3], s3 = c->st[3];
    for (int64_t r = lo; r < hi; r++) {
        int64_t i2 = r % c->dout[2], i1 = (r / c->dout[2]) % c->dout[1], i0 = r / (c->dout[2] * c->dout[1]);
        int64_t off = i0 * c->st[0] + i1 * c->st[1] + i2 * c->st[2];
        uint8_t *d = c->dst + r * n3 * c->es;
        if (s3 == 1) {
            memcpy(d, c->src + off * c->es, (size_t)(n3 * c->es));
        } else if (c->es == 4) {
            const uint32_t *sp = (const uint32_t *)(const void *)c->src + off;
            for (int64_t j = 0; j < n3; j++) ((uint32_t *)(void *)d)[j] = sp[j * s3];
        } else if (c->es == 2) {
            const uint16_t *sp = (const uint16_t *)(const void *)c->src + off;
            for (int64_t j = 0; j < n3; j++) ((uint16_t *)(void *)d)[j] = sp[j * s3];
        } else {
            const uint8_t *sp = c->src + off;
            for (int64_t j = 0; j < n3; j++) d[j] = sp[j * s3];
        }
    }
}

int ei_cpu_op_transpose(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->node];
    if (same_types(x, s, n, 1)) return -1;
    const ei_gtensor *ti = ei_cpu_t(x, n->in[0]), *to = ei_cpu_t(x, n->out);
    tr_ctx c = {x->ptr[n->in[0]], x->ptr[n->out], {1, 1, 1, 1}, {0, 0, 0, 0}, (int64_t)ei_gtype_size(to->type)};
    const int r = ti->rank, pad = 4 - r;
    int64_t stin[EI_G_MAX_RANK], acc = 1;
    for (int i = r - 1; i >= 0; i--) stin[i] = acc, acc *= ti->shape[i];
    for (int i = 0; i < r; i++) {
        c.dout[pad + i] = to->shape[i];
        c.st[pad + i] = stin[n->p.transpose.perm[i]];
    }
    const int64_t rows = c.dout[0] * c.dout[1] * c.dout[2];
    ei_cpu_parallel(x, rows, 1, 1 + 16384 / c.dout[3], tr_range, &c);
    return 0;
}

/* ---------------------------------------------------------------- RESHAPE copy */
typedef struct {
    const uint8_t *src;
    uint8_t *dst;
} copy_ctx;

static void copy_range(void *p, int64_t lo, int64_t hi) {
    const copy_ctx *c = p;
    memcpy(c->dst + lo, c->src + lo, (size_t)(hi - lo));
}

int ei_cpu_op_copy(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->node];
    if (same_types(x, s, n, 1)) return -1;
    copy_ctx c = {x->ptr[n->in[0]], x->ptr[n->out]};
    ei_cpu_parallel(x, (int64_t)ei_gtensor_bytes(ei_cpu_t(x, n->out)), 64, 1 << 18, copy_range, &c);
    return 0;
}

/* ---------------------------------------------------------------- CAST, QUANTIZE, DEQUANTIZE */
typedef struct {
    const ei_cpu_exec *x;
    const ei_gtensor *ti, *to;
    const void *src;
    void *dst;
} conv_ctx;

static void conv_range(void *p, int64_t lo, int64_t hi) {
    const conv_ctx *c = p;
    float buf[1024];
    for (int64_t i = lo; i < hi; i += 1024) {
        int64_t e = i + 1024 < hi ? i + 1024 : hi;
        ei_cpu_load_f32(c->x, c->ti, c->src, buf, i, e);
        ei_cpu_store_f32(c->to, buf, c->dst, i, e);
    }
}

int ei_cpu_op_convert(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->node];
    const ei_gtensor *ti = ei_cpu_t(x, n->in[0]), *to = ei_cpu_t(x, n->out);
    if (to->type == EI_GT_I4) return ei_cpu_fail(x, s, "i4 output not supported");
    if (ti->q.kind == EI_GQ_GROUP && (ti->q.axis != ti->rank - 1 || ti->q.group <= 0))
        return ei_cpu_fail(x, s, "group quantisation of %s along axis %d: only the last axis is supported", ti->name,
                           ti->q.axis);
    if (n->op == EI_OP_CAST && ti->type == to->type) return ei_cpu_op_copy(x, s);
    conv_ctx c = {x, ti, to, x->ptr[n->in[0]], x->ptr[n->out]};
    ei_cpu_parallel(x, ei_gtensor_numel(to), 64, 16384, conv_range, &c);
    return 0;
}
