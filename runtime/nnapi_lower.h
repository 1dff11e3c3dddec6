/* The lowering context shared by nnapi_lower.c (operands, constants, types, the model's inputs
 * and outputs, the cache token) and nnapi_lower_ops.c (one IR op at a time). Not installed. */
#ifndef EI_RUNTIME_NNAPI_LOWER_H
#define EI_RUNTIME_NNAPI_LOWER_H

#include "runtime/nnapi_internal.h"

/* An NNAPI operand type as the lowering builds it (dims owned here, unlike the API struct). */
typedef struct {
    int32_t type;
    uint32_t rank;
    uint32_t dims[EI_G_MAX_RANK];
    float scale;
    int32_t zp;
    int32_t pc_axis; /* TENSOR_QUANT8_SYMM_PER_CHANNEL: the channel dimension */
} nl_ty;

typedef struct {
    uint64_t h[4];
} nl_hash;

typedef struct {
    const ei_nn_api *api;
    const ei_graph *g;
    const uint8_t *blob;
    uint64_t blob_size;
    const ei_nn_lower_opts *o;
    ei_nn_lowered *L;
    int fl;       /* target feature level */
    int f16;      /* fallback_f16 in force: f32 / i16 / i4 tensors are f16 */
    int64_t *map; /* IR tensor -> its operand in the general form, -1 until made */
    uint32_t n_operands;
    int32_t node; /* IR node being lowered, -1 outside the node loop */
    int refused;
    nl_hash h;
    /* constants made by nl_i32 / nl_fill, shared by every operation that needs the same one */
    struct {
        nl_ty ty;
        double v;
        int64_t idx;
    } shared[128];
    int n_shared;
} nl_ctx;

/* ---- errors. Both return -1. refuse: the graph cannot be expressed (sets c->refused). */
int nl_refuse(nl_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int nl_api_fail(nl_ctx *c, const char *call, int rc);
/* Refuses unless the target level is at least level. */
int nl_need(nl_ctx *c, int level, const char *what);
/* Records what the current node became ("decomposed: ..."), for the support report. */
void nl_note(nl_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- types */
int nl_ty_of(nl_ctx *c, int32_t t, nl_ty *ty); /* the general mapping of IR tensor t */
int nl_type_level(int32_t type);               /* feature level that introduced an operand type */
int nl_is_float(const nl_ty *t);
int nl_is_q8(const nl_ty *t); /* TENSOR_QUANT8_ASYMM(_SIGNED) */
int nl_same_dims(const nl_ty *a, const nl_ty *b);
nl_ty nl_ty_dims(const nl_ty *base, uint32_t rank, const uint32_t *dims);
nl_ty nl_ty_scalar(int32_t type);
uint64_t nl_ty_bytes(const nl_ty *t);

/* ---- operands. All return the operand index or -1. */
int64_t nl_operand(nl_ctx *c, const nl_ty *ty);
int64_t nl_tmp(nl_ctx *c, const nl_ty *ty); /* a temporary (same as nl_operand; reads better) */
int64_t nl_tensor(nl_ctx *c, int32_t t);    /* IR tensor t in the general form (constants get data) */
/* A constant of type ty with n bytes of data. Longer than 128 bytes, data is referenced, not
 * copied: inside the blob it becomes (offset, length) into the mapped file when there is one,
 * elsewhere it must live as long as the model (nl_alloc). */
int64_t nl_const(nl_ctx *c, const nl_ty *ty, const void *data, uint64_t n);
/* IR constant t (i8 per-channel) as a TENSOR_QUANT8_SYMM_PER_CHANNEL operand of type ty (its dims
 * may regroup t's, e.g. [N, 1, 1, K] for [N, K]) with t's scales. */
int64_t nl_const_pc(nl_ctx *c, int32_t t, const nl_ty *ty);
int64_t nl_i32(nl_ctx *c, int32_t v);
int64_t nl_f32(nl_ctx *c, float v);
int64_t nl_f16(nl_ctx *c, float v);
int64_t nl_bool(nl_ctx *c, int v);
int64_t nl_i32v(nl_ctx *c, uint32_t n, const int32_t *v); /* TENSOR_INT32 [n] */
/* A constant tensor of ty's shape and type with every element equal to v (real value; quantised
 * types store round(v / scale) + zp). */
int64_t nl_fill(nl_ctx *c, const nl_ty *ty, double v);
void *nl_alloc(nl_ctx *c, uint64_t bytes); /* owned by the lowered model; NULL + error on OOM */
/* IR constant t dequantised to floats (any type and quantisation); NULL + error. Owned. */
float *nl_const_real(nl_ctx *c, int32_t t);
/* Per-channel / per-group scale i of a quantised IR tensor (its scales tensor). */
float nl_scale(nl_ctx *c, const ei_gtensor *t, int64_t i);

/* ---- operations */
int nl_op(nl_ctx *c, int32_t code, uint32_t nin, const uint32_t *in, uint32_t nout, const uint32_t *out);
/* The operand the current node writes for IR tensor t (its model output operand for OUTPUT). */
int64_t nl_out(nl_ctx *c, int32_t t);
/* IR tensor t is operand src (of type ty): no operation for a VALUE, an identity for an OUTPUT. */
int nl_alias(nl_ctx *c, int32_t t, int64_t src, const nl_ty *ty);
/* RESHAPE src (type ty) into dst, or into a new temporary of dims when dst < 0; returns dst. */
int64_t nl_reshape(nl_ctx *c, int64_t src, const nl_ty *ty, uint32_t rank, const uint32_t *dims, int64_t dst);

/* ---- per op (nnapi_lower_ops.c) */
int nl_lower_node(nl_ctx *c, int32_t i);

#endif
