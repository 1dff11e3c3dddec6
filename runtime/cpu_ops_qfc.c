/* FULLY_CONNECTED's quantised paths (runtime/graph.h gives the arithmetic, docs/runtime-cpu.md the
 * reasons): integer activations (int32 dot products, TFLite / NNAPI requantisation; I4 weights
 * through a float sum of group dots) and I4 weights with float activations (Q8: x quantised per
 * group to int8 once per call, integer dot products). The kernels are ei_cpu_kernels' q8_row,
 * fc_q4 and fc_int; this file prepares their inputs and splits outputs across threads (never a
 * sum, so any thread count gives the same bits). */
#include "runtime/cpu_internal.h"

#include "core/ei_half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* TFLite's QuantizeMultiplier: m = mult 2^(shift - 31), mult a Q31 mantissa in [2^30, 2^31)
 * rounded half away from zero; multipliers below ~2^-31 flush to 0 (as TFLite). Above 2^31 (a
 * scale ratio no calibration produces) the shift stops at 31: any non-zero accumulator then
 * saturates, as the exact product would. */
void ei_cpu_quantize_multiplier(double m, int32_t *mult, int32_t *shift) {
    *mult = 0, *shift = 0;
    if (!(m > 0.0) || !isfinite(m)) return;
    int e;
    int64_t q = (int64_t)round(frexp(m, &e) * 2147483648.0);
    if (q == ((int64_t)1 << 31)) q /= 2, e++;
    if (e < -31) return;
    if (e > 31) q = INT32_MAX, e = 31;
    *mult = (int32_t)q, *shift = e;
}

static int qtype(const ei_gtensor *t) {
    return t->q.kind == EI_GQ_TENSOR && (t->type == EI_GT_I8 || t->type == EI_GT_U8 || t->type == EI_GT_I16);
}

int ei_cpu_qfc_prepare(const ei_cpu_exec *x, ei_cpu_step *s, char *why, int nwhy) {
    const ei_graph *g = x->g;
    const ei_gnode *n = &g->nodes[s->node];
    const ei_gtensor *tx = &g->tensors[n->in[0]], *tw = &g->tensors[n->in[1]], *to = &g->tensors[n->out];
    const ei_gtensor *tb = n->n_in > 2 ? &g->tensors[n->in[2]] : NULL;
    s->qpath = EI_CPU_QFC_FLOAT;
    if (tx->q.kind == EI_GQ_NONE && (tx->type == EI_GT_F32 || tx->type == EI_GT_F16)) {
        if (s->w.type == EI_CPU_W_I4) s->qpath = EI_CPU_QFC_Q8;
        if (s->w.type == EI_CPU_W_I8 && s->w.group >= tw->shape[1] && !x->be->opt.exact_w8) s->qpath = EI_CPU_QFC_Q8B;
        return 0;
    }
    /* int16 x minus its zero point must fit int16: I16 only when symmetric (a16); otherwise the
     * float fallback of ei_cpu_op_fc */
    const int xok = qtype(tx) && !(tx->type == EI_GT_I16 && tx->q.zero_point != 0);
    const int wok = s->w.type == EI_CPU_W_I8 || s->w.type == EI_CPU_W_I8Z || s->w.type == EI_CPU_W_I4;
    const int bok = !tb || (tb->type == EI_GT_I32 && (tb->q.kind == EI_GQ_NONE || tb->q.kind == EI_GQ_TENSOR));
    if (!xok || !qtype(to) || !wok || !bok) return 0;
    s->qpath = EI_CPU_QFC_INT;
    if (s->w.type == EI_CPU_W_I4) return 0;
    const int64_t N = tw->shape[0];
    s->qmult = malloc((size_t)(2 * N) * sizeof *s->qmult);
    if (!s->qmult) return snprintf(why, (size_t)nwhy, "out of memory"), -1;
    for (int64_t i = 0; i < N; i++) {
        float ws = tw->q.kind == EI_GQ_TENSOR ? tw->q.scale : 1.0f;
        if (tw->q.kind == EI_GQ_CHANNEL)
            ws = s->w.scale_f16 ? ei_f16_to_f32(((const uint16_t *)s->w.scales)[i]) : ((const float *)s->w.scales)[i];
        /* in double, as TFLite's per-channel path (NNAPI forms x_scale * w_scale in float) */
        ei_cpu_quantize_multiplier((double)tx->q.scale * (double)ws / (double)to->q.scale, &s->qmult[i],
                                   &s->qmult[N + i]);
    }
    return 0;
}

static uint64_t a64(uint64_t v) { return (v + 63) & ~(uint64_t)63; }

uint64_t ei_cpu_qfc_scratch(const ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_graph *g = x->g;
    const ei_gnode *n = &g->nodes[s->node];
    const ei_gtensor *tw = &g->tensors[n->in[1]];
    const int64_t K = tw->shape[1], M = ei_gtensor_numel(&g->tensors[n->in[0]]) / (K > 0 ? K : 1);
    if (s->qpath == EI_CPU_QFC_Q8) return a64((uint64_t)(M * ei_cpu_q8_row_bytes(K, s->w.group)));
    if (s->qpath == EI_CPU_QFC_Q8B) return a64((uint64_t)(M * ei_cpu_q8b_row_bytes(K)));
    if (s->qpath == EI_CPU_QFC_INT)
        return a64((uint64_t)(M * ei_cpu_int_ldx(K, s->w.group, s->w.type == EI_CPU_W_I4) * 2)) + a64((uint64_t)M * 8);
    return 0;
}

/* ---------------------------------------------------------------- shared */
typedef struct {
    const ei_cpu_kernels *k;
    ei_cpu_wmat w;
    int64_t M, K, N;
    int by_rows;
    /* Q8: the kernel (fc_q4 or fc_q8i8) and x in its Q8 form */
    void (*fcq)(const uint8_t *xq, int64_t ldq, int64_t M, const ei_cpu_wmat *w, int64_t K, int64_t n0, int64_t n1,
                const float *bias, float *y, int64_t ldy);
    const uint8_t *xq;
    int64_t ldq;
    const float *bias;
    float *yf;
    /* integer */
    const int16_t *xi;
    int64_t ldx, osz;
    void *yi;
    ei_cpu_iq q;
} qfc_ctx;

static void split(ei_cpu_exec *x, qfc_ctx *c, ei_cpu_range_fn fn) {
    /* as ei_cpu_op_fc: ~32K weights per thread at least; rows when there are few outputs */
    const int64_t min_rows = 1 + 32768 / (c->K > 0 ? c->K : 1);
    c->by_rows = c->M > 1 && c->N < 12 * x->nth && c->M >= 4 * x->nth;
    if (c->by_rows) ei_cpu_parallel(x, c->M, 4, 1 + min_rows / (c->N > 0 ? c->N : 1), fn, c);
    else ei_cpu_parallel(x, c->N, c->M == 1 ? 4 : 2, c->M == 1 ? min_rows : 1 + min_rows / c->M, fn, c);
}

static int setup(ei_cpu_exec *x, const ei_cpu_step *s, qfc_ctx *c) {
    const ei_gnode *n = &x->g->nodes[s->node];
    const ei_gtensor *tx = ei_cpu_t(x, n->in[0]), *tw = ei_cpu_t(x, n->in[1]);
    memset(c, 0, sizeof *c);
    c->k = x->k;
    c->w = s->w;
    c->K = tw->shape[1];
    c->N = tw->shape[0];
    c->M = ei_gtensor_numel(tx) / c->K;
    if (!c->w.data) c->w.data = x->ptr[n->in[1]];
    if (!c->w.scales) c->w.scales = &c->w.tscale;
    return 0;
}

/* ---------------------------------------------------------------- Q8: I4 weights, float x */
typedef struct {
    const ei_cpu_kernels *k;
    const float *x;
    uint8_t *xq;
    int64_t K, G, ldq;
} q8_ctx;

static void q8_range(void *p, int64_t lo, int64_t hi) {
    const q8_ctx *c = p;
    for (int64_t m = lo; m < hi; m++) c->k->q8_row(c->x + m * c->K, c->K, c->G, c->xq + m * c->ldq);
}

static void q8fc_range(void *p, int64_t lo, int64_t hi) {
    const qfc_ctx *c = p;
    if (c->by_rows) c->fcq(c->xq + lo * c->ldq, c->ldq, hi - lo, &c->w, c->K, 0, c->N, c->bias, c->yf + lo * c->N, c->N);
    else c->fcq(c->xq, c->ldq, c->M, &c->w, c->K, lo, hi, c->bias, c->yf, c->N);
}

static void q8b_range(void *p, int64_t lo, int64_t hi) {
    const q8_ctx *c = p;
    for (int64_t m = lo; m < hi; m++) c->k->q8b_row(c->x + m * c->K, c->K, c->xq + m * c->ldq);
}

/* EI_CPU_QFC_Q8 (I4 weights) and EI_CPU_QFC_Q8B (I8 weights, one scale per row): x quantised once
 * per call, then integer dot products against the weights in place. */
int ei_cpu_op_fc_q8(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->node];
    const int blocks = s->qpath == EI_CPU_QFC_Q8B;
    qfc_ctx c;
    setup(x, s, &c);
    const float *xf = ei_cpu_in_f32(x, n->in[0]);
    c.ldq = blocks ? ei_cpu_q8b_row_bytes(c.K) : ei_cpu_q8_row_bytes(c.K, c.w.group);
    c.xq = (uint8_t *)ei_cpu_scratch(x, c.M * c.ldq / 4);
    c.bias = n->n_in > 2 ? ei_cpu_in_f32(x, n->in[2]) : NULL;
    c.yf = ei_cpu_out_f32(x, n->out);
    if (!xf || !c.xq || !c.yf || (n->n_in > 2 && !c.bias)) return ei_cpu_fail(x, s, "internal: step scratch exhausted");
    q8_ctx qc = {x->k, xf, (uint8_t *)(uintptr_t)c.xq, c.K, c.w.group, c.ldq};
    ei_cpu_parallel(x, c.M, 1, 1 + 16384 / c.K, blocks ? q8b_range : q8_range, &qc);
    c.fcq = blocks ? x->k->fc_q8i8 : x->k->fc_q4;
    split(x, &c, q8fc_range);
    ei_cpu_out_commit(x, n->out, c.yf);
    return 0;
}

/* ---------------------------------------------------------------- integer activations */
typedef struct {
    const ei_gtensor *t;
    const void *src;
    int16_t *dst;
    int64_t *xsum;
    int64_t K, G, G16, ldx;
    int i4;
} xprep_ctx;

/* x - zp into int16 rows laid out for the kernel (cpu_kern.h, ei_cpu_int_ldx), with row sums for
 * a weight zero point */
static void xprep_range(void *p, int64_t lo, int64_t hi) {
    const xprep_ctx *c = p;
    const int32_t zp = c->t->q.zero_point;
    for (int64_t m = lo; m < hi; m++) {
        int16_t *d = c->dst + m * c->ldx;
        memset(d, 0, (size_t)c->ldx * sizeof *d);
        int64_t sum = 0;
        for (int64_t k = 0; k < c->K; k++) {
            const int64_t i = m * c->K + k;
            int32_t v = c->t->type == EI_GT_I8 ? ((const int8_t *)c->src)[i]
                        : c->t->type == EI_GT_U8 ? ((const uint8_t *)c->src)[i]
                                                  : ((const int16_t *)c->src)[i];
            v -= zp;
            d[c->i4 ? k / c->G * c->G16 + k % c->G : k] = (int16_t)v;
            sum += v;
        }
        if (c->xsum) c->xsum[m] = sum;
    }
}

static void int_range(void *p, int64_t lo, int64_t hi) {
    const qfc_ctx *c = p;
    if (c->by_rows) {
        ei_cpu_iq q = c->q;
        if (q.xsum) q.xsum += lo;
        c->k->fc_int(c->xi + lo * c->ldx, c->ldx, hi - lo, &c->w, c->K, 0, c->N, &q, (char *)c->yi + lo * c->N * c->osz,
                     c->N);
    } else {
        c->k->fc_int(c->xi, c->ldx, c->M, &c->w, c->K, lo, hi, &c->q, c->yi, c->N);
    }
}

int ei_cpu_op_fc_int(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->node];
    const ei_gtensor *tx = ei_cpu_t(x, n->in[0]), *to = ei_cpu_t(x, n->out);
    const ei_gtensor *tb = n->n_in > 2 ? ei_cpu_t(x, n->in[2]) : NULL;
    qfc_ctx c;
    setup(x, s, &c);
    const int i4 = c.w.type == EI_CPU_W_I4;
    const int64_t G = i4 && c.w.group > 0 && c.w.group < c.K ? c.w.group : c.K;
    c.ldx = ei_cpu_int_ldx(c.K, c.w.group, i4);
    int16_t *xi = (int16_t *)(void *)ei_cpu_scratch(x, (c.M * c.ldx + 1) / 2);
    int64_t *xsum = c.w.type == EI_CPU_W_I8Z ? (int64_t *)(void *)ei_cpu_scratch(x, 2 * c.M) : NULL;
    if (!xi || (c.w.type == EI_CPU_W_I8Z && !xsum)) return ei_cpu_fail(x, s, "internal: step scratch exhausted");
    xprep_ctx xc = {tx, x->ptr[n->in[0]], xi, xsum, c.K, G, (G + 15) / 16 * 16, c.ldx, i4};
    ei_cpu_parallel(x, c.M, 1, 1 + 16384 / c.K, xprep_range, &xc);
    c.xi = xi;
    c.yi = x->ptr[n->out];
    c.osz = (int64_t)ei_gtype_size(to->type);
    ei_cpu_iq *q = &c.q;
    q->bias = tb ? x->ptr[n->in[2]] : NULL;
    q->xsum = xsum;
    q->wzp = c.w.zp;
    q->mult = s->qmult;
    q->shift = s->qmult ? s->qmult + c.N : NULL;
    q->x_scale = tx->q.scale;
    q->out_scale = to->q.scale;
    /* I4 has no single weight scale: an I32 bias carries its own (per-tensor) scale, else x_scale */
    q->b_scale = tb && tb->q.kind == EI_GQ_TENSOR ? tb->q.scale : tx->q.scale;
    q->zo = to->q.zero_point;
    q->otype = to->type == EI_GT_I8 ? EI_CPU_OT_I8 : to->type == EI_GT_U8 ? EI_CPU_OT_U8 : EI_CPU_OT_I16;
    q->qmin = to->type == EI_GT_I8 ? -128 : to->type == EI_GT_U8 ? 0 : -32768;
    q->qmax = to->type == EI_GT_I8 ? 127 : to->type == EI_GT_U8 ? 255 : 32767;
    split(x, &c, int_range);
    return 0;
}
