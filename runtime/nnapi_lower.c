/* Lowering an IR graph to an ANeuralNetworksModel, the frame: how IR tensors map to NNAPI operand
 * types, constants (referenced from the mapped .eig through ANeuralNetworksMemory when longer than
 * the 128 bytes NNAPI copies), the model's inputs and outputs, relaxation, the compilation-cache
 * token, and the error messages. The ops themselves are nnapi_lower_ops.c; the rules are listed
 * in docs/nnapi.md.
 *
 * Type mapping (the general form of an IR tensor; an op may ask for another form of a constant):
 *   f32 -> TENSOR_FLOAT32 (TENSOR_FLOAT16 under fallback_f16), f16 -> TENSOR_FLOAT16 (level 3),
 *   i32 -> TENSOR_INT32, u8 per-tensor -> TENSOR_QUANT8_ASYMM, u8 boolean -> TENSOR_QUANT8_ASYMM
 *   with scale 1 (SELECT turns it into TENSOR_BOOL8 with NOT_EQUAL), i8 per-tensor ->
 *   TENSOR_QUANT8_ASYMM_SIGNED at level 4+, below it TENSOR_QUANT8_ASYMM with zero point + 128 and
 *   the bytes flipped (exact: the real values are unchanged), i8 per-channel constants ->
 *   TENSOR_QUANT8_SYMM_PER_CHANNEL (level 3), i16 / i4 / i8 per-group -> refused, or f16 real
 *   values under fallback_f16. Rank 0 becomes [1]: NNAPI operations want tensors of rank >= 1. */
#include "runtime/nnapi_lower.h"

#include "core/ei_error.h"
#include "core/ei_half.h"
#include "core/ei_io.h"

#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- cache token */
/* Four independent FNV-style lanes over every argument the lowering passes to NNAPI: not
 * cryptographic, but any change of structure, parameters or (through the blob hash) weights
 * changes the token, which is all a compilation cache key needs. */
static void hash_bytes(nl_hash *h, const void *p, size_t n) {
    static const uint64_t prime[4] = {0x100000001b3ull, 0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full,
                                      0x165667b19e3779f9ull};
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++) h->h[k] = (h->h[k] ^ b[i]) * prime[k];
}

static void hash_u64(nl_hash *h, uint64_t v) { hash_bytes(h, &v, sizeof v); }

static void hash_final(const nl_hash *h, uint8_t out[32]) {
    for (int k = 0; k < 4; k++) {
        uint64_t z = h->h[k] + 0x9e3779b97f4a7c15ull * (uint64_t)(k + 1);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        for (int i = 0; i < 8; i++) out[8 * k + i] = (uint8_t)(z >> (8 * i));
    }
}

/* ---------------------------------------------------------------- errors and notes */
static void prefix(const nl_ctx *c, char *buf, size_t n) {
    if (c->node >= 0)
        snprintf(buf, n, "graph '%s': node %d (%s): ", c->g->name, (int)c->node, ei_gop_name(c->g->nodes[c->node].op));
    else
        snprintf(buf, n, "graph '%s': ", c->g->name);
}

int nl_refuse(nl_ctx *c, const char *fmt, ...) {
    char pre[160], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    prefix(c, pre, sizeof pre);
    c->refused = 1;
    return ei_error_set("%s%s", pre, msg);
}

static int api_fail_op(nl_ctx *c, const char *call, int rc, int32_t nnop, int32_t code) {
    char pre[160];
    prefix(c, pre, sizeof pre);
    if (nnop >= 0)
        return ei_error_set("%sNNAPI operation %d (%s): %s failed: %s (%d)", pre, (int)nnop, ei_nn_op_name(code), call,
                            ei_nn_result_name(rc), rc);
    return ei_error_set("%s%s failed: %s (%d)", pre, call, ei_nn_result_name(rc), rc);
}

int nl_api_fail(nl_ctx *c, const char *call, int rc) {
    /* a call made while lowering a node belongs to the operation about to be added */
    if (c->node >= 0) {
        char pre[160];
        prefix(c, pre, sizeof pre);
        return ei_error_set("%sbefore NNAPI operation %d: %s failed: %s (%d)", pre, (int)c->L->n_ops, call,
                            ei_nn_result_name(rc), rc);
    }
    return api_fail_op(c, call, rc, -1, 0);
}

int nl_need(nl_ctx *c, int level, const char *what) {
    if (c->fl >= level) return 0;
    return nl_refuse(c, "%s needs NNAPI feature level %d; the target has level %d", what, level, c->fl);
}

void nl_note(nl_ctx *c, const char *fmt, ...) {
    if (c->node < 0) return;
    char *dst = c->L->note[c->node];
    size_t k = strlen(dst);
    if (k + 3 >= sizeof(ei_nn_note)) return;
    if (k) dst[k++] = ';', dst[k++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst + k, sizeof(ei_nn_note) - k, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- types */
int nl_type_level(int32_t type) {
    switch (type) {
    case ANEURALNETWORKS_BOOL:
    case ANEURALNETWORKS_TENSOR_QUANT16_SYMM:
    case ANEURALNETWORKS_TENSOR_FLOAT16:
    case ANEURALNETWORKS_TENSOR_BOOL8:
    case ANEURALNETWORKS_FLOAT16:
    case ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL:
    case ANEURALNETWORKS_TENSOR_QUANT16_ASYMM:
    case ANEURALNETWORKS_TENSOR_QUANT8_SYMM: return 3;
    case ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED: return 4;
    default: return 1;
    }
}

int nl_is_float(const nl_ty *t) {
    return t->type == ANEURALNETWORKS_TENSOR_FLOAT32 || t->type == ANEURALNETWORKS_TENSOR_FLOAT16;
}

int nl_is_q8(const nl_ty *t) {
    return t->type == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM || t->type == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED;
}

static int is_scalar(int32_t type) {
    return type == ANEURALNETWORKS_FLOAT32 || type == ANEURALNETWORKS_INT32 || type == ANEURALNETWORKS_UINT32 ||
           type == ANEURALNETWORKS_BOOL || type == ANEURALNETWORKS_FLOAT16;
}

static uint64_t elem_bytes(int32_t type) {
    switch (type) {
    case ANEURALNETWORKS_FLOAT32:
    case ANEURALNETWORKS_INT32:
    case ANEURALNETWORKS_UINT32:
    case ANEURALNETWORKS_TENSOR_FLOAT32:
    case ANEURALNETWORKS_TENSOR_INT32: return 4;
    case ANEURALNETWORKS_FLOAT16:
    case ANEURALNETWORKS_TENSOR_FLOAT16:
    case ANEURALNETWORKS_TENSOR_QUANT16_SYMM:
    case ANEURALNETWORKS_TENSOR_QUANT16_ASYMM: return 2;
    default: return 1;
    }
}

uint64_t nl_ty_bytes(const nl_ty *t) {
    uint64_t n = elem_bytes(t->type);
    if (!is_scalar(t->type))
        for (uint32_t i = 0; i < t->rank; i++) n *= t->dims[i];
    return n;
}

int nl_same_dims(const nl_ty *a, const nl_ty *b) {
    if (a->rank != b->rank) return 0;
    for (uint32_t i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return 1;
}

nl_ty nl_ty_dims(const nl_ty *base, uint32_t rank, const uint32_t *dims) {
    nl_ty t = *base;
    t.rank = rank;
    for (uint32_t i = 0; i < EI_G_MAX_RANK; i++) t.dims[i] = i < rank ? dims[i] : 0;
    return t;
}

nl_ty nl_ty_scalar(int32_t type) {
    nl_ty t;
    memset(&t, 0, sizeof t);
    t.type = type;
    return t;
}

int nl_ty_of(nl_ctx *c, int32_t t, nl_ty *ty) {
    const ei_gtensor *x = &c->g->tensors[t];
    memset(ty, 0, sizeof *ty);
    ty->rank = x->rank ? (uint32_t)x->rank : 1;
    for (int32_t i = 0; i < (int32_t)ty->rank; i++) ty->dims[i] = x->rank ? (uint32_t)x->shape[i] : 1;
    const char *hint = "--nnapi-fallback f16 (fallback_f16) runs this graph in float16; else it runs on the cpu backend";
    switch (x->type) {
    case EI_GT_F32: ty->type = c->f16 ? ANEURALNETWORKS_TENSOR_FLOAT16 : ANEURALNETWORKS_TENSOR_FLOAT32; break;
    case EI_GT_F16: ty->type = ANEURALNETWORKS_TENSOR_FLOAT16; break;
    case EI_GT_I32: ty->type = ANEURALNETWORKS_TENSOR_INT32; break;
    case EI_GT_U8:
        ty->type = ANEURALNETWORKS_TENSOR_QUANT8_ASYMM;
        ty->scale = x->q.kind == EI_GQ_TENSOR ? x->q.scale : 1.0f;
        ty->zp = x->q.kind == EI_GQ_TENSOR ? x->q.zero_point : 0;
        break;
    case EI_GT_I8:
        if (x->q.kind == EI_GQ_TENSOR) {
            ty->type = c->fl >= 4 ? ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED : ANEURALNETWORKS_TENSOR_QUANT8_ASYMM;
            ty->scale = x->q.scale;
            ty->zp = x->q.zero_point + (c->fl >= 4 ? 0 : 128);
        } else if (x->q.kind == EI_GQ_CHANNEL) {
            ty->type = ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL;
            ty->pc_axis = x->q.axis;
        } else if (c->f16) {
            ty->type = ANEURALNETWORKS_TENSOR_FLOAT16;
        } else {
            return nl_refuse(c, "tensor %d '%s' is i8 per-%s: NNAPI has no such type (%s)", (int)t, x->name,
                             ei_gquant_name(x->q.kind), hint);
        }
        break;
    case EI_GT_I16:
    case EI_GT_I4:
        if (!c->f16)
            return nl_refuse(c, "tensor %d '%s' is %s: NNAPI general operations take no %s tensors (%s)", (int)t,
                             x->name, ei_gtype_name(x->type), x->type == EI_GT_I16 ? "int16" : "int4", hint);
        ty->type = ANEURALNETWORKS_TENSOR_FLOAT16;
        break;
    default: return nl_refuse(c, "tensor %d '%s' has an unknown type", (int)t, x->name);
    }
    int lv = nl_type_level(ty->type);
    if (lv > c->fl)
        return nl_refuse(c, "tensor %d '%s' (%s) needs %s, introduced at NNAPI feature level %d; the target has level %d",
                         (int)t, x->name, ei_gtype_name(x->type), ei_nn_type_name(ty->type), lv, c->fl);
    return 0;
}

/* How an INPUT / OUTPUT tensor's bytes differ between the caller and NNAPI. */
static int io_conv(const ei_gtensor *x, const nl_ty *ty) {
    if (x->type == EI_GT_I8 && ty->type == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM) return EI_NN_CONV_FLIP;
    if (x->type == EI_GT_F32 && ty->type == ANEURALNETWORKS_TENSOR_FLOAT16) return EI_NN_CONV_F32_F16;
    if (x->type == EI_GT_I16 && ty->type == ANEURALNETWORKS_TENSOR_FLOAT16) return EI_NN_CONV_Q16_F16;
    return EI_NN_CONV_NONE;
}

/* ---------------------------------------------------------------- operands and constants */
void *nl_alloc(nl_ctx *c, uint64_t bytes) {
    ei_nn_lowered *L = c->L;
    if (L->n_owned == L->cap_owned) {
        int32_t cap = L->cap_owned ? 2 * L->cap_owned : 64;
        void **p = realloc(L->owned, (size_t)cap * sizeof *p);
        if (!p) return ei_error_set("nnapi: out of memory"), NULL;
        L->owned = p, L->cap_owned = cap;
    }
    void *p = calloc(1, (size_t)(bytes ? bytes : 1));
    if (!p) return ei_error_set("nnapi: out of memory (%llu bytes)", (unsigned long long)bytes), NULL;
    L->owned[L->n_owned++] = p;
    return p;
}

int64_t nl_operand(nl_ctx *c, const nl_ty *ty) {
    int sc = is_scalar(ty->type);
    ANeuralNetworksOperandType t = {ty->type, sc ? 0 : ty->rank, sc ? NULL : ty->dims, ty->scale, ty->zp};
    int rc = c->api->Model_addOperand(c->L->model, &t);
    if (rc != ANEURALNETWORKS_NO_ERROR) return nl_api_fail(c, "ANeuralNetworksModel_addOperand", rc);
    hash_u64(&c->h, 1), hash_u64(&c->h, (uint64_t)ty->type), hash_u64(&c->h, t.dimensionCount);
    hash_bytes(&c->h, ty->dims, sizeof(uint32_t) * t.dimensionCount);
    hash_bytes(&c->h, &ty->scale, sizeof ty->scale), hash_u64(&c->h, (uint64_t)(int64_t)ty->zp);
    return (int64_t)c->n_operands++;
}

int64_t nl_tmp(nl_ctx *c, const nl_ty *ty) { return nl_operand(c, ty); }

static int set_value(nl_ctx *c, int64_t idx, const void *data, uint64_t n) {
    const ei_nn_api *a = c->api;
    const uint8_t *p = data;
    int rc;
    if (n > ANEURALNETWORKS_MAX_SIZE_OF_IMMEDIATELY_COPIED_VALUES && c->L->blob_mem && c->blob && p >= c->blob &&
        p + n <= c->blob + c->blob_size) {
        uint64_t off = c->o->blob_offset + (uint64_t)(p - c->blob);
        rc = a->Model_setOperandValueFromMemory(c->L->model, (int32_t)idx, c->L->blob_mem, (size_t)off, (size_t)n);
        if (rc != ANEURALNETWORKS_NO_ERROR) return nl_api_fail(c, "ANeuralNetworksModel_setOperandValueFromMemory", rc);
        hash_u64(&c->h, 2), hash_u64(&c->h, off), hash_u64(&c->h, n);
        c->L->consts_from_memory++;
        return 0;
    }
    /* up to 128 bytes NNAPI copies; longer values stay referenced, and live as long as the model */
    rc = a->Model_setOperandValue(c->L->model, (int32_t)idx, data, (size_t)n);
    if (rc != ANEURALNETWORKS_NO_ERROR) return nl_api_fail(c, "ANeuralNetworksModel_setOperandValue", rc);
    hash_u64(&c->h, 3), hash_u64(&c->h, n);
    if (n <= ANEURALNETWORKS_MAX_SIZE_OF_IMMEDIATELY_COPIED_VALUES) {
        hash_bytes(&c->h, data, (size_t)n);
        c->L->consts_copied++;
    } else {
        c->L->consts_by_pointer++;
    }
    return 0;
}

int64_t nl_const(nl_ctx *c, const nl_ty *ty, const void *data, uint64_t n) {
    if (n != nl_ty_bytes(ty)) {
        return nl_refuse(c, "internal: constant of %llu bytes for an operand of %llu", (unsigned long long)n,
                         (unsigned long long)nl_ty_bytes(ty));
    }
    int64_t idx = nl_operand(c, ty);
    if (idx < 0) return -1;
    return set_value(c, idx, data, n) ? -1 : idx;
}

/* A constant made before with the same type and value (operations may share constant operands). */
static int64_t shared_find(const nl_ctx *c, const nl_ty *ty, double v) {
    for (int i = 0; i < c->n_shared; i++)
        if (c->shared[i].v == v && !memcmp(&c->shared[i].ty, ty, sizeof *ty)) return c->shared[i].idx;
    return -1;
}

static int64_t shared_keep(nl_ctx *c, const nl_ty *ty, double v, int64_t idx) {
    if (idx >= 0 && c->n_shared < (int)(sizeof c->shared / sizeof c->shared[0])) {
        c->shared[c->n_shared].ty = *ty, c->shared[c->n_shared].v = v, c->shared[c->n_shared].idx = idx;
        c->n_shared++;
    }
    return idx;
}

int64_t nl_i32(nl_ctx *c, int32_t v) {
    nl_ty t = nl_ty_scalar(ANEURALNETWORKS_INT32);
    int64_t idx = shared_find(c, &t, v);
    return idx >= 0 ? idx : shared_keep(c, &t, v, nl_const(c, &t, &v, 4));
}

int64_t nl_f32(nl_ctx *c, float v) {
    nl_ty t = nl_ty_scalar(ANEURALNETWORKS_FLOAT32);
    return nl_const(c, &t, &v, 4);
}

int64_t nl_f16(nl_ctx *c, float v) {
    nl_ty t = nl_ty_scalar(ANEURALNETWORKS_FLOAT16);
    uint16_t h = ei_f32_to_f16(v);
    return nl_const(c, &t, &h, 2);
}

int64_t nl_bool(nl_ctx *c, int v) {
    nl_ty t = nl_ty_scalar(ANEURALNETWORKS_BOOL);
    uint8_t b = v != 0;
    return nl_const(c, &t, &b, 1);
}

int64_t nl_i32v(nl_ctx *c, uint32_t n, const int32_t *v) {
    nl_ty t = nl_ty_scalar(ANEURALNETWORKS_TENSOR_INT32);
    t.rank = 1, t.dims[0] = n;
    if (4ull * n <= ANEURALNETWORKS_MAX_SIZE_OF_IMMEDIATELY_COPIED_VALUES) return nl_const(c, &t, v, 4ull * n);
    int32_t *p = nl_alloc(c, 4ull * n); /* referenced, not copied: must live as long as the model */
    if (!p) return -1;
    memcpy(p, v, 4ull * n);
    return nl_const(c, &t, p, 4ull * n);
}

static int32_t qround(double v, double lo, double hi) {
    double r = v != v ? 0.0 : v < 0 ? -floor(-v + 0.5) : floor(v + 0.5); /* half away from zero */
    return (int32_t)(r < lo ? lo : r > hi ? hi : r);
}

int64_t nl_fill(nl_ctx *c, const nl_ty *ty, double v) {
    nl_ty key;
    memset(&key, 0, sizeof key); /* compared bytewise: no stale padding or unused extents */
    key.type = ty->type, key.rank = ty->rank, key.scale = ty->scale, key.zp = ty->zp, key.pc_axis = ty->pc_axis;
    memcpy(key.dims, ty->dims, sizeof(uint32_t) * ty->rank);
    int64_t idx = shared_find(c, &key, v);
    if (idx >= 0) return idx;
    uint64_t n = nl_ty_bytes(ty), es = elem_bytes(ty->type), cnt = n / es;
    uint8_t *p = nl_alloc(c, n);
    if (!p) return -1;
    for (uint64_t i = 0; i < cnt; i++) {
        switch (ty->type) {
        case ANEURALNETWORKS_TENSOR_FLOAT32: ((float *)(void *)p)[i] = (float)v; break;
        case ANEURALNETWORKS_TENSOR_FLOAT16: ((uint16_t *)(void *)p)[i] = ei_f32_to_f16((float)v); break;
        case ANEURALNETWORKS_TENSOR_INT32: ((int32_t *)(void *)p)[i] = (int32_t)v; break;
        case ANEURALNETWORKS_TENSOR_QUANT8_ASYMM: p[i] = (uint8_t)qround(v / ty->scale + ty->zp, 0, 255); break;
        case ANEURALNETWORKS_TENSOR_QUANT8_ASYMM_SIGNED:
            p[i] = (uint8_t)(int8_t)qround(v / ty->scale + ty->zp, -128, 127);
            break;
        default: p[i] = v != 0; break;
        }
    }
    return shared_keep(c, &key, v, nl_const(c, ty, p, n));
}

float nl_scale(nl_ctx *c, const ei_gtensor *t, int64_t i) {
    const ei_gtensor *s = &c->g->tensors[t->q.scales];
    const uint8_t *p = c->blob + s->offset;
    if (s->type == EI_GT_F16) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return ei_f16_to_f32(h);
    }
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
}

/* Integer element i (row-major) of a constant; i4 rows are packed along the last axis. */
static int32_t int_elem(const ei_gtensor *t, const uint8_t *p, int64_t i) {
    switch (t->type) {
    case EI_GT_I8: return (int8_t)p[i];
    case EI_GT_U8: return p[i];
    case EI_GT_I16: {
        int16_t v;
        memcpy(&v, p + 2 * i, 2);
        return v;
    }
    case EI_GT_I32: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    default: { /* I4 */
        int64_t C = t->rank ? t->shape[t->rank - 1] : 1, r = i / C, col = i % C;
        uint8_t b = p[r * ((C + 1) / 2) + col / 2];
        int32_t v = col & 1 ? b >> 4 : b & 15;
        return v >= 8 ? v - 16 : v;
    }
    }
}

float *nl_const_real(nl_ctx *c, int32_t t) {
    const ei_gtensor *x = &c->g->tensors[t];
    int64_t n = ei_gtensor_numel(x);
    float *f = nl_alloc(c, (uint64_t)n * 4);
    if (!f) return NULL;
    const uint8_t *p = c->blob + x->offset;
    int64_t st[EI_G_MAX_RANK] = {0}, sst[EI_G_MAX_RANK] = {0}, a = 1, b = 1;
    for (int32_t d = x->rank - 1; d >= 0; d--) { /* strides of x and of a per-group scales tensor */
        st[d] = a, a *= x->shape[d];
        sst[d] = b, b *= d == x->q.axis && x->q.kind == EI_GQ_GROUP ? x->shape[d] / x->q.group : x->shape[d];
    }
    for (int64_t i = 0; i < n; i++) {
        if (x->type == EI_GT_F32) {
            memcpy(&f[i], p + 4 * i, 4);
            continue;
        }
        if (x->type == EI_GT_F16) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            f[i] = ei_f16_to_f32(h);
            continue;
        }
        double q = int_elem(x, p, i);
        switch (x->q.kind) {
        case EI_GQ_TENSOR: f[i] = (float)((q - x->q.zero_point) * x->q.scale); break;
        case EI_GQ_CHANNEL: f[i] = (float)(q * nl_scale(c, x, (i / st[x->q.axis]) % x->shape[x->q.axis])); break;
        case EI_GQ_GROUP: {
            int64_t si = 0;
            for (int32_t d = 0; d < x->rank; d++) {
                int64_t co = (i / st[d]) % x->shape[d];
                si += (d == x->q.axis ? co / x->q.group : co) * sst[d];
            }
            f[i] = (float)(q * nl_scale(c, x, si));
            break;
        }
        default: f[i] = (float)q; break;
        }
    }
    return f;
}

/* A constant IR tensor in its general form: the file's bytes where NNAPI reads them as they are,
 * else a converted copy owned by the model. */
int64_t nl_const_pc(nl_ctx *c, int32_t t, const nl_ty *ty) {
    const ei_gtensor *x = &c->g->tensors[t];
    const uint8_t *src = c->blob + x->offset;
    uint64_t n = nl_ty_bytes(ty);
    {
        int64_t idx = nl_operand(c, ty);
        if (idx < 0) return -1;
        float *sc = nl_alloc(c, 4ull * ty->dims[ty->pc_axis]);
        if (!sc) return -1;
        for (uint32_t i = 0; i < ty->dims[ty->pc_axis]; i++) sc[i] = nl_scale(c, x, i);
        ANeuralNetworksSymmPerChannelQuantParams pq = {(uint32_t)ty->pc_axis, ty->dims[ty->pc_axis], sc};
        int rc = c->api->Model_setOperandSymmPerChannelQuantParams(c->L->model, (int32_t)idx, &pq);
        if (rc != ANEURALNETWORKS_NO_ERROR)
            return nl_api_fail(c, "ANeuralNetworksModel_setOperandSymmPerChannelQuantParams", rc);
        hash_bytes(&c->h, sc, 4ull * pq.scaleCount);
        return set_value(c, idx, src, n) ? -1 : idx;
    }
}

static int64_t const_tensor(nl_ctx *c, int32_t t, const nl_ty *ty) {
    const ei_gtensor *x = &c->g->tensors[t];
    const uint8_t *src = c->blob + x->offset;
    uint64_t n = nl_ty_bytes(ty);
    if (ty->type == ANEURALNETWORKS_TENSOR_QUANT8_SYMM_PER_CHANNEL) return nl_const_pc(c, t, ty);
    if (x->type == EI_GT_I8 && ty->type == ANEURALNETWORKS_TENSOR_QUANT8_ASYMM) { /* emulated signed */
        uint8_t *p = nl_alloc(c, n);
        if (!p) return -1;
        for (uint64_t i = 0; i < n; i++) p[i] = src[i] ^ 0x80u;
        return nl_const(c, ty, p, n);
    }
    if (ty->type == ANEURALNETWORKS_TENSOR_FLOAT16 && x->type != EI_GT_F16) {
        const float *f = x->type == EI_GT_F32 ? NULL : nl_const_real(c, t);
        uint16_t *h = nl_alloc(c, n);
        if (!h || (x->type != EI_GT_F32 && !f)) return -1;
        for (uint64_t i = 0; i < n / 2; i++) {
            float v;
            if (f) v = f[i];
            else memcpy(&v, src + 4 * i, 4);
            h[i] = ei_f32_to_f16(v);
        }
        return nl_const(c, ty, h, n);
    }
    return nl_const(c, ty, src, n);
}

int64_t nl_tensor(nl_ctx *c, int32_t t) {
    if (c->map[t] >= 0) return c->map[t];
    const ei_gtensor *x = &c->g->tensors[t];
    if (x->kind != EI_GK_CONST)
        return nl_refuse(c, "internal: tensor %d '%s' is read before an operand exists for it", (int)t, x->name);
    nl_ty ty;
    if (nl_ty_of(c, t, &ty)) return -1;
    int64_t idx = const_tensor(c, t, &ty);
    if (idx >= 0) c->map[t] = idx;
    return idx;
}

/* ---------------------------------------------------------------- operations */
int nl_op(nl_ctx *c, int32_t code, uint32_t nin, const uint32_t *in, uint32_t nout, const uint32_t *out) {
    ei_nn_lowered *L = c->L;
    if (L->n_ops == L->cap_ops) {
        int32_t cap = L->cap_ops ? 2 * L->cap_ops : 64;
        int32_t *a = realloc(L->op_node, (size_t)cap * sizeof *a);
        if (a) L->op_node = a;
        int32_t *b = a ? realloc(L->op_code, (size_t)cap * sizeof *b) : NULL;
        if (!a || !b) return ei_error_set("nnapi: out of memory");
        L->op_code = b, L->cap_ops = cap;
    }
    int rc = c->api->Model_addOperation(L->model, code, nin, in, nout, out);
    if (rc != ANEURALNETWORKS_NO_ERROR) return api_fail_op(c, "ANeuralNetworksModel_addOperation", rc, L->n_ops, code);
    hash_u64(&c->h, 4), hash_u64(&c->h, (uint64_t)code), hash_u64(&c->h, nin), hash_u64(&c->h, nout);
    hash_bytes(&c->h, in, 4ull * nin), hash_bytes(&c->h, out, 4ull * nout);
    L->op_node[L->n_ops] = c->node;
    L->op_code[L->n_ops] = code;
    L->n_ops++;
    return 0;
}

int64_t nl_out(nl_ctx *c, int32_t t) {
    if (c->map[t] >= 0) return c->map[t];
    nl_ty ty;
    if (nl_ty_of(c, t, &ty)) return -1;
    int64_t idx = nl_operand(c, &ty);
    if (idx >= 0) c->map[t] = idx;
    return idx;
}

int64_t nl_reshape(nl_ctx *c, int64_t src, const nl_ty *ty, uint32_t rank, const uint32_t *dims, int64_t dst) {
    if (ty->type == ANEURALNETWORKS_TENSOR_INT32 && nl_need(c, 6, "RESHAPE of an int32 tensor")) return -1;
    int32_t shape[EI_G_MAX_RANK];
    for (uint32_t i = 0; i < rank; i++) shape[i] = (int32_t)dims[i];
    int64_t s = nl_i32v(c, rank, shape);
    if (s < 0) return -1;
    if (dst < 0) {
        nl_ty t = nl_ty_dims(ty, rank, dims);
        if ((dst = nl_tmp(c, &t)) < 0) return -1;
    }
    uint32_t in[2] = {(uint32_t)src, (uint32_t)s}, out = (uint32_t)dst;
    return nl_op(c, ANEURALNETWORKS_RESHAPE, 2, in, 1, &out) ? -1 : dst;
}

int nl_alias(nl_ctx *c, int32_t t, int64_t src, const nl_ty *ty) {
    if (src < 0) return -1;
    if (c->g->tensors[t].kind == EI_GK_VALUE && c->map[t] < 0) {
        c->map[t] = src;
        return 0;
    }
    int64_t dst = nl_out(c, t);
    if (dst < 0) return -1;
    if (ty->type == ANEURALNETWORKS_TENSOR_INT32 && c->fl < 6) { /* RESHAPE takes int32 from level 6 */
        if (nl_need(c, 3, "an identity on an int32 tensor (CAST)")) return -1;
        uint32_t in = (uint32_t)src, out = (uint32_t)dst;
        return nl_op(c, ANEURALNETWORKS_CAST, 1, &in, 1, &out);
    }
    return nl_reshape(c, src, ty, ty->rank, ty->dims, dst) < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------- the whole graph */
static int graph_needs_f16(const ei_graph *g) {
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const ei_gtensor *t = &g->tensors[i];
        if (t->type == EI_GT_I16 || t->type == EI_GT_I4 || (t->type == EI_GT_I8 && t->q.kind == EI_GQ_GROUP)) return 1;
    }
    return 0;
}

/* The file holding the constants, mapped once by NNAPI: a constant longer than 128 bytes is then
 * an (offset, length) into it instead of a copy. A cheap check that the file really holds the
 * blob catches a wrong path or offset before it becomes wrong numbers. */
static int open_blob(nl_ctx *c) {
    const ei_nn_lower_opts *o = c->o;
    int need = 0;
    for (int32_t i = 0; i < c->g->n_tensors && !need; i++)
        need = c->g->tensors[i].kind == EI_GK_CONST &&
               c->g->tensors[i].size > ANEURALNETWORKS_MAX_SIZE_OF_IMMEDIATELY_COPIED_VALUES;
    if (!o->blob_path || !need || !c->blob_size) return 0;
    int fd = open(o->blob_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ei_error_set("nnapi: cannot open the constant file %s", o->blob_path);
    c->L->blob_fd = fd;
    struct stat st;
    if (fstat(fd, &st) || st.st_size < 0 || (uint64_t)st.st_size < o->blob_offset ||
        (uint64_t)st.st_size - o->blob_offset < c->blob_size)
        return ei_error_set("nnapi: %s is too short to hold the %llu-byte constant blob at offset %llu", o->blob_path,
                            (unsigned long long)c->blob_size, (unsigned long long)o->blob_offset);
    uint8_t buf[4096];
    size_t k = c->blob_size < sizeof buf ? (size_t)c->blob_size : sizeof buf;
    uint64_t at[2] = {0, c->blob_size - k};
    for (int j = 0; j < 2; j++)
        if (pread(fd, buf, k, (off_t)(o->blob_offset + at[j])) != (ssize_t)k || memcmp(buf, c->blob + at[j], k))
            return ei_error_set("nnapi: %s at offset %llu does not hold the constant blob (its bytes differ)",
                                o->blob_path, (unsigned long long)o->blob_offset);
    int rc = c->api->Memory_createFromFd((size_t)st.st_size, PROT_READ, fd, 0, &c->L->blob_mem);
    if (rc != ANEURALNETWORKS_NO_ERROR) return nl_api_fail(c, "ANeuralNetworksMemory_createFromFd", rc);
    return 0;
}

static uint64_t blob_hash(const nl_ctx *c) {
    if (c->o->blob_hash) return c->o->blob_hash;
    uint64_t h = 0;
    for (int32_t i = 0; i < c->g->n_tensors; i++) {
        const ei_gtensor *t = &c->g->tensors[i];
        if (t->kind == EI_GK_CONST) h = ei_hash_fnv1a(c->blob + t->offset, (size_t)t->size, h);
    }
    return h;
}

static int setup_io(nl_ctx *c) {
    const ei_graph *g = c->g;
    ei_nn_lowered *L = c->L;
    uint8_t *used = calloc((size_t)g->n_tensors + 1, 1);
    L->in = calloc((size_t)g->n_tensors + 1, sizeof *L->in);
    L->out = calloc((size_t)g->n_tensors + 1, sizeof *L->out);
    if (!used || !L->in || !L->out) {
        free(used);
        return ei_error_set("nnapi: out of memory");
    }
    for (int32_t i = 0; i < g->n_nodes; i++)
        for (int32_t k = 0; k < g->nodes[i].n_in; k++) used[g->nodes[i].in[k]] = 1;
    int rc = 0;
    for (int32_t t = 0; t < g->n_tensors && !rc; t++) {
        const ei_gtensor *x = &g->tensors[t];
        int is_in = x->kind == EI_GK_INPUT && used[t];
        if (!is_in && x->kind != EI_GK_OUTPUT) continue;
        nl_ty ty;
        if (nl_ty_of(c, t, &ty)) rc = -1;
        else if (x->type == EI_GT_I4 || (x->type == EI_GT_I8 && x->q.kind != EI_GQ_TENSOR))
            rc = nl_refuse(c, "%s tensor %d '%s' is %s per-%s: only constants may be", is_in ? "input" : "output",
                           (int)t, x->name, ei_gtype_name(x->type), ei_gquant_name(x->q.kind));
        else if ((c->map[t] = nl_operand(c, &ty)) < 0) rc = -1;
        else {
            ei_nn_io io = {t, (uint32_t)c->map[t], io_conv(x, &ty), nl_ty_bytes(&ty), 0};
            if (is_in) L->in[L->n_in++] = io;
            else L->out[L->n_out++] = io;
        }
    }
    free(used);
    return rc;
}

static int identify(nl_ctx *c) {
    ei_nn_lowered *L = c->L;
    uint32_t *in = malloc(((size_t)L->n_in + 1) * 4), *out = malloc(((size_t)L->n_out + 1) * 4);
    int rc = -1;
    if (!in || !out) ei_error_set("nnapi: out of memory");
    else {
        for (int32_t i = 0; i < L->n_in; i++) in[i] = L->in[i].operand;
        for (int32_t i = 0; i < L->n_out; i++) out[i] = L->out[i].operand;
        int r = c->api->Model_identifyInputsAndOutputs(L->model, (uint32_t)L->n_in, in, (uint32_t)L->n_out, out);
        rc = r == ANEURALNETWORKS_NO_ERROR ? 0 : nl_api_fail(c, "ANeuralNetworksModel_identifyInputsAndOutputs", r);
        hash_u64(&c->h, 5), hash_bytes(&c->h, in, 4ull * L->n_in), hash_bytes(&c->h, out, 4ull * L->n_out);
    }
    free(in);
    free(out);
    return rc;
}

int ei_nn_lower(const ei_nn_api *api, const ei_graph *g, const uint8_t *blob, uint64_t blob_size,
                const ei_nn_lower_opts *o, ei_nn_lowered *L, int *refused) {
    memset(L, 0, sizeof *L);
    L->blob_fd = -1;
    L->fl = o->fl;
    nl_ctx c = {.api = api, .g = g, .blob = blob, .blob_size = blob_size, .o = o, .L = L, .fl = o->fl, .node = -1};
    for (int k = 0; k < 4; k++) c.h.h[k] = 0xcbf29ce484222325ull ^ (0x5bd1e995ull * (uint64_t)k);
    *refused = 0;
    c.f16 = o->fallback_f16 && graph_needs_f16(g);
    L->f16_mode = c.f16;
    if (c.f16 && nl_need(&c, 3, "running an int16 / int4 graph in float16 (fallback_f16)")) goto refuse;
    c.map = malloc(((size_t)g->n_tensors + 1) * sizeof *c.map);
    L->note = calloc((size_t)g->n_nodes + 1, sizeof *L->note);
    if (!c.map || !L->note) {
        ei_error_set("nnapi: out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < g->n_tensors; i++) {
        c.map[i] = -1;
        const ei_gtensor *t = &g->tensors[i];
        if (t->type == EI_GT_I8 && t->q.kind == EI_GQ_TENSOR && c.fl < 4) L->i8_emulated = 1;
    }
    hash_bytes(&c.h, "ei-nnapi-token-1", 16);
    hash_u64(&c.h, (uint64_t)c.fl), hash_u64(&c.h, (uint64_t)c.f16), hash_u64(&c.h, (uint64_t)o->relax_f16);
    if (o->device_id) hash_bytes(&c.h, o->device_id, strlen(o->device_id));
    if (o->want_token) hash_u64(&c.h, blob_hash(&c));
    int rc = api->Model_create(&L->model);
    if (rc != ANEURALNETWORKS_NO_ERROR) {
        L->model = NULL;
        nl_api_fail(&c, "ANeuralNetworksModel_create", rc);
        goto fail;
    }
    if (open_blob(&c) || setup_io(&c)) goto done;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        c.node = i;
        if (nl_lower_node(&c, i)) goto done;
    }
    c.node = -1;
    if (identify(&c)) goto done;
    int has_f32 = 0;
    for (int32_t i = 0; i < g->n_tensors && !has_f32; i++) has_f32 = g->tensors[i].type == EI_GT_F32;
    if (o->relax_f16 && has_f32 && !c.f16 && api->Model_relaxComputationFloat32toFloat16) {
        rc = api->Model_relaxComputationFloat32toFloat16(L->model, true);
        if (rc != ANEURALNETWORKS_NO_ERROR) {
            nl_api_fail(&c, "ANeuralNetworksModel_relaxComputationFloat32toFloat16", rc);
            goto done;
        }
        L->relaxed = 1;
        hash_u64(&c.h, 6);
    }
    rc = api->Model_finish(L->model);
    if (rc != ANEURALNETWORKS_NO_ERROR) {
        char call[96];
        snprintf(call, sizeof call, "ANeuralNetworksModel_finish (model of %d NNAPI operations)", (int)L->n_ops);
        nl_api_fail(&c, call, rc);
        goto done;
    }
    hash_final(&c.h, L->token);
    free(c.map);
    return 0;
done:
    if (c.refused) goto refuse;
fail:
    free(c.map);
    return -1;
refuse:
    free(c.map);
    *refused = 1;
    return -1;
}

void ei_nn_lowered_free(const ei_nn_api *api, ei_nn_lowered *L) {
    if (L->model) api->Model_free(L->model);
    if (L->blob_mem) api->Memory_free(L->blob_mem);
    if (L->blob_fd >= 0) close(L->blob_fd);
    for (int32_t i = 0; i < L->n_owned; i++) free(L->owned[i]);
    free(L->owned);
    free(L->op_node);
    free(L->op_code);
    free(L->note);
    free(L->in);
    free(L->out);
    memset(L, 0, sizeof *L);
    L->blob_fd = -1;
}
