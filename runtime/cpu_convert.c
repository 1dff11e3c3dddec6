/* Element types for the cpu backend. Every kernel computes in F32; an input of another type (F16,
 * I32, a quantised integer tensor) is converted into the step scratch first, and an output of
 * another type is computed into scratch and converted after (DESIGN 6.4: "F32 everywhere").
 * Data-movement ops copy elements in their own type and never come here. */
#include "runtime/cpu_internal.h"

#include "core/ei_half.h"

#include <math.h>
#include <string.h>

int ei_cpu_is_f32(const ei_gtensor *t) { return t->type == EI_GT_F32; }

static uint64_t a64(uint64_t v) { return (v + 63) & ~(uint64_t)63; }

static uint64_t f32_bytes(const ei_gtensor *t) { return a64((uint64_t)ei_gtensor_numel(t) * 4); }

uint64_t ei_cpu_step_scratch(const ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_graph *g = x->g;
    const ei_gnode *n = &g->nodes[s->node];
    const ei_gtensor *out = &g->tensors[s->out];
    uint64_t b = 0;
    if (s->view) return 0;
    if (!s->fused) switch (n->op) {
        case EI_OP_GATHER:
        case EI_OP_CONCATENATION:
        case EI_OP_SLICE:
        case EI_OP_TRANSPOSE:
        case EI_OP_RESHAPE:
        case EI_OP_CAST:
        case EI_OP_QUANTIZE:
        case EI_OP_DEQUANTIZE: return 0;
        case EI_OP_SELECT:
            if (g->tensors[n->in[1]].type == out->type && g->tensors[n->in[2]].type == out->type) return 0;
            break;
        case EI_OP_BATCH_MATMUL:
            if (n->p.bmm.adj_x && n->p.bmm.adj_y) b += f32_bytes(&g->tensors[n->in[0]]);
            break;
        default: break;
        }
    for (int32_t i = 0; i < s->n_in; i++) {
        if (!s->fused && n->op == EI_OP_FULLY_CONNECTED && i == 1) continue; /* decoded in the kernel */
        if (!ei_cpu_is_f32(&g->tensors[s->in[i]])) b += f32_bytes(&g->tensors[s->in[i]]);
    }
    if (!ei_cpu_is_f32(out)) b += f32_bytes(out);
    if (!s->fused && n->op == EI_OP_FULLY_CONNECTED) b += ei_cpu_qfc_scratch(x, s); /* Q8 / int16 activations */
    return b;
}

float *ei_cpu_scratch(ei_cpu_exec *x, int64_t nfloats) {
    uint64_t need = a64((uint64_t)nfloats * 4);
    if (x->scratch_used + need > x->scratch_bytes) return NULL;
    float *p = (float *)(void *)(x->scratch + x->scratch_used);
    x->scratch_used += need;
    return p;
}

/* scale of element i of a CHANNEL / GROUP quantised tensor; GROUP runs along the last axis */
static float elem_scale(const ei_cpu_exec *x, const ei_gtensor *t, int64_t i) {
    const ei_gtensor *st = &x->g->tensors[t->q.scales];
    const uint8_t *sp = x->blob + st->offset;
    int64_t si;
    if (t->q.kind == EI_GQ_CHANNEL) {
        int64_t inner = 1;
        for (int d = t->q.axis + 1; d < t->rank; d++) inner *= t->shape[d];
        si = (i / inner) % t->shape[t->q.axis];
    } else {
        int64_t C = t->shape[t->rank - 1];
        si = (i / C) * (C / t->q.group) + (i % C) / t->q.group;
    }
    if (st->type == EI_GT_F16) {
        uint16_t h;
        memcpy(&h, sp + 2 * si, 2);
        return ei_f16_to_f32(h);
    }
    float f;
    memcpy(&f, sp + 4 * si, 4);
    return f;
}

static int32_t int_elem(const ei_gtensor *t, const void *src, int64_t i) {
    switch (t->type) {
    case EI_GT_I8: return ((const int8_t *)src)[i];
    case EI_GT_U8: return ((const uint8_t *)src)[i];
    case EI_GT_I16: return ((const int16_t *)src)[i];
    case EI_GT_I32: return ((const int32_t *)src)[i];
    case EI_GT_I4: {
        int64_t C = t->rank ? t->shape[t->rank - 1] : 1, r = i / C, c = i % C;
        uint8_t b = ((const uint8_t *)src)[r * ((C + 1) / 2) + c / 2];
        int32_t v = c & 1 ? b >> 4 : b & 15;
        return v >= 8 ? v - 16 : v;
    }
    default: return 0;
    }
}

void ei_cpu_load_f32(const ei_cpu_exec *x, const ei_gtensor *t, const void *src, float *dst, int64_t i0, int64_t i1) {
    if (t->type == EI_GT_F32) {
        memcpy(dst, (const float *)src + i0, (size_t)(i1 - i0) * 4);
        return;
    }
    if (t->type == EI_GT_F16) {
        const uint16_t *h = src;
        for (int64_t i = i0; i < i1; i++) dst[i - i0] = ei_f16_to_f32(h[i]);
        return;
    }
    if (t->q.kind == EI_GQ_NONE) {
        for (int64_t i = i0; i < i1; i++) dst[i - i0] = (float)int_elem(t, src, i);
        return;
    }
    if (t->q.kind == EI_GQ_TENSOR) {
        const float sc = t->q.scale;
        const int32_t zp = t->q.zero_point;
        for (int64_t i = i0; i < i1; i++) dst[i - i0] = (float)(int_elem(t, src, i) - zp) * sc;
        return;
    }
    for (int64_t i = i0; i < i1; i++) dst[i - i0] = (float)int_elem(t, src, i) * elem_scale(x, t, i);
}

static void qrange(ei_gtype ty, double *lo, double *hi) {
    switch (ty) {
    case EI_GT_I8: *lo = -128, *hi = 127; break;
    case EI_GT_U8: *lo = 0, *hi = 255; break;
    case EI_GT_I16: *lo = -32768, *hi = 32767; break;
    default: *lo = -2147483648.0, *hi = 2147483647.0; break;
    }
}

void ei_cpu_store_f32(const ei_gtensor *t, const float *src, void *dst, int64_t i0, int64_t i1) {
    switch (t->type) {
    case EI_GT_F32: memcpy((float *)dst + i0, src, (size_t)(i1 - i0) * 4); return;
    case EI_GT_F16:
        for (int64_t i = i0; i < i1; i++) ((uint16_t *)dst)[i] = ei_f32_to_f16(src[i - i0]);
        return;
    case EI_GT_I32:
        /* truncation toward zero; saturating (and NaN -> 0) instead of C's undefined behaviour */
        for (int64_t i = i0; i < i1; i++) {
            const float f = src[i - i0];
            double v = f != f ? 0.0 : trunc((double)f);
            ((int32_t *)dst)[i] = v < -2147483648.0 ? INT32_MIN : v > 2147483647.0 ? INT32_MAX : (int32_t)v;
        }
        return;
    case EI_GT_I8:
    case EI_GT_U8:
    case EI_GT_I16: {
        const int q = t->q.kind == EI_GQ_TENSOR;
        const float sc = q ? t->q.scale : 1.0f;
        const double zp = q ? t->q.zero_point : 0;
        double lo, hi;
        qrange(t->type, &lo, &hi);
        for (int64_t i = i0; i < i1; i++) {
            /* in double, as the conformance library (tests/nnapi/fake_exec.c) divides: a float
             * quotient lands on .5 where the double one lies just below it, and the two backends
             * then differ by one step of the scale (seen: 5% logit differences of a w8a8 graph
             * once its calibration moved with OpenBLAS's kernels) */
            const double r = round((double)src[i - i0] / (double)sc); /* half away from zero */
            double v = r != r ? zp : (double)r + zp;
            v = v < lo ? lo : v > hi ? hi : v;
            if (t->type == EI_GT_I8) ((int8_t *)dst)[i] = (int8_t)v;
            else if (t->type == EI_GT_U8) ((uint8_t *)dst)[i] = (uint8_t)v;
            else ((int16_t *)dst)[i] = (int16_t)v;
        }
        return;
    }
    default: return; /* I4 outputs are refused at prepare */
    }
}

typedef struct {
    const ei_cpu_exec *x;
    const ei_gtensor *t;
    const void *src;
    float *f;
    void *dst;
} conv_ctx;

static void load_range(void *p, int64_t lo, int64_t hi) {
    conv_ctx *c = p;
    ei_cpu_load_f32(c->x, c->t, c->src, c->f + lo, lo, hi);
}

static void store_range(void *p, int64_t lo, int64_t hi) {
    conv_ctx *c = p;
    ei_cpu_store_f32(c->t, c->f + lo, c->dst, lo, hi);
}

const float *ei_cpu_in_f32(ei_cpu_exec *x, int32_t t) {
    const ei_gtensor *tt = ei_cpu_t(x, t);
    if (ei_cpu_is_f32(tt)) return x->ptr[t];
    const int64_t n = ei_gtensor_numel(tt);
    float *f = ei_cpu_scratch(x, n);
    if (!f) return NULL;
    conv_ctx c = {x, tt, x->ptr[t], f, NULL};
    ei_cpu_parallel(x, n, 16, 16384, load_range, &c);
    return f;
}

float *ei_cpu_out_f32(ei_cpu_exec *x, int32_t t) {
    const ei_gtensor *tt = ei_cpu_t(x, t);
    if (ei_cpu_is_f32(tt)) return x->ptr[t];
    return ei_cpu_scratch(x, ei_gtensor_numel(tt));
}

void ei_cpu_out_commit(ei_cpu_exec *x, int32_t t, const float *f) {
    const ei_gtensor *tt = ei_cpu_t(x, t);
    if (ei_cpu_is_f32(tt)) return;
    conv_ctx c = {x, tt, NULL, (float *)(uintptr_t)f, x->ptr[t]};
    ei_cpu_parallel(x, ei_gtensor_numel(tt), 16, 16384, store_range, &c);
}
