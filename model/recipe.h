/* The layer recipe: the Llama block and the EdgeInfinite attention (DESIGN 2 and 3), written ONCE
 * against a small emitter interface. Every consumer builds the model from these functions:
 *   - train/ag_emit.c implements the emitter with autograd ops (training, evaluation, streaming
 *     inference in every mode, the float64 gradient-check twin);
 *   - deploy/ implements it with graph-IR nodes (the fixed-shape prefill / decode / compress
 *     graphs of a .eig file).
 * The callers only decide where keys, values and memory come from (slices of a per-plan state in
 * autograd, ring buffers bound as graph inputs in deploy); the maths lives here. libc only.
 *
 * Shapes: x [n, D]; q [n, H, d]; k, v [T, Hkv, d] with query head h reading KV head h / (H / Hkv);
 * memory M [Hkv, d, d], z [Hkv, d]. Values are the emitter's handles; every function returns NULL
 * (or -1) when a handle it needs is NULL, so a whole block is built and checked once at the end
 * (emitters record the first failure). */
#ifndef EI_MODEL_RECIPE_H
#define EI_MODEL_RECIPE_H

#include "model/config.h"
#include "model/options.h"
#include "model/tensors.h"

#include <stdint.h>

typedef struct ei_val ei_val; /* an emitter's tensor (ag_tensor, a graph-IR tensor index, ...) */
typedef struct ei_emitter ei_emitter;

typedef enum { EI_BIN_ADD = 0, EI_BIN_SUB, EI_BIN_MUL, EI_BIN_DIV } ei_binop;
typedef enum { EI_UN_SIGMOID = 0, EI_UN_ELU1 } ei_unop; /* elu1(x) = ELU(x) + 1 */
typedef enum { EI_ROPE_INTERLEAVED = 0, EI_ROPE_HALF = 1 } ei_rope_layout;

typedef struct {
    /* a frozen weight (or a memory-gate parameter) by class and layer; NULL when absent */
    ei_val *(*weight)(ei_emitter *e, ei_tclass c, int layer);
    /* table [V, D], ids [n] int32 -> [n, D] */
    ei_val *(*embedding)(ei_emitter *e, ei_val *table, ei_val *ids);
    /* x [.., in], w [out, in], b [out] or NULL -> [.., out] */
    ei_val *(*linear)(ei_emitter *e, ei_val *x, ei_val *w, ei_val *b);
    /* x / sqrt(mean(x^2, last axis) + eps) * w */
    ei_val *(*rmsnorm)(ei_emitter *e, ei_val *x, ei_val *w, double eps);
    /* x [T, heads, d] rotated by pos [T] (int32, each in [0, max_pos)) */
    ei_val *(*rope)(ei_emitter *e, ei_val *x, ei_val *pos, double theta, ei_rope_layout layout, int32_t max_pos);
    /* softmax(q k^T scale + mask) v over the concatenation of n_parts key/value parts: q [n, H, d],
     * k[i], v[i] [T_i, Hkv, d]; valid[i] NULL or a [T_i] key mask; query t sees key j (index into
     * the concatenation) iff j <= causal_offset + t -> [n, H, d] */
    ei_val *(*attention)(ei_emitter *e, ei_val *q, int n_parts, ei_val *const *k, ei_val *const *v,
                         ei_val *const *valid, double scale, int64_t causal_offset);
    /* batched matmul: a [.., M, K] (ta: [.., K, M]), b [K, N] or [.., K, N] (tb: transposed) */
    ei_val *(*matmul)(ei_emitter *e, ei_val *a, ei_val *b, int ta, int tb);
    ei_val *(*binary)(ei_emitter *e, ei_binop op, ei_val *a, ei_val *b); /* NumPy broadcasting */
    ei_val *(*add_scalar)(ei_emitter *e, ei_val *a, double c);
    ei_val *(*unary)(ei_emitter *e, ei_unop op, ei_val *x);
    ei_val *(*swiglu)(ei_emitter *e, ei_val *g, ei_val *u); /* silu(g) * u */
    ei_val *(*sum)(ei_emitter *e, ei_val *x, int axis);     /* drops the axis */
    ei_val *(*reshape)(ei_emitter *e, ei_val *x, int ndim, const int64_t *shape);
    ei_val *(*transpose)(ei_emitter *e, ei_val *x, int axis0, int axis1);
    /* shape of x into shape[4]; returns the rank (0 for NULL) */
    int (*shape)(ei_emitter *e, ei_val *x, int64_t *shape);
    /* records a build failure (first one wins); returns -1 */
    int (*fail)(ei_emitter *e, const char *msg);
} ei_emitter_ops;

struct ei_emitter {
    const ei_emitter_ops *ops;
    const ei_model_config *cfg;
    ei_gate_kind gate;
};

/* x = embedding[ids]. */
ei_val *ei_recipe_embed(ei_emitter *em, ei_val *ids);
/* logits = final_norm(x) classifier^T: [n, V]. */
ei_val *ei_recipe_logits(ei_emitter *em, ei_val *x);

/* Attention inputs of layer l: xn = rmsnorm(x; attn_norm), q [n, H, d], k, v [n, Hkv, d] (biases
 * added, RoPE not applied: caches hold pre-RoPE keys). */
typedef struct {
    ei_val *xn, *q, *k, *v;
} ei_attn_qkv;
int ei_recipe_qkv(ei_emitter *em, int l, ei_val *x, int64_t n, ei_attn_qkv *out);

/* What layer l's attention reads besides its own q: the local keys/values as parts in key order
 * (pre-RoPE, with their positions and masks), and the memory. */
typedef struct {
    int n_parts;
    ei_val *k[4], *v[4], *kpos[4], *valid[4];
    int64_t causal_offset; /* see ei_emitter_ops.attention */
    ei_val *qpos;          /* [n] positions of the queries */
    int32_t max_pos;       /* every position is below this */
    ei_val *M, *z;         /* memory; NULL when it is empty (no retrieval, no gate) */
    ei_val *gate_scale;    /* NULL, or a value multiplying the gate (a 0/1 "memory non-empty" flag
                              for graphs whose shapes cannot depend on it) */
} ei_attn_in;

/* The rest of layer l after ei_recipe_qkv: local attention, memory retrieval and gate
 * (A = A_loc + g (A_mem - A_loc), so g = 0 is A_loc exactly), W_o, residual, RMSNorm, SwiGLU MLP,
 * residual. Returns the layer's output x [n, D]. */
ei_val *ei_recipe_block(ei_emitter *em, int l, ei_val *x, const ei_attn_qkv *qkv, const ei_attn_in *a);
/* ei_recipe_block in two halves, for graphs that run the row-wise half of a layer over several
 * segments at once (train/seg_graph.c): the attention of one segment, A [n, H*d] (local attention,
 * memory retrieval and gate), and the rest, which is the same function of every row:
 * x + W_o A, then the SwiGLU MLP with its residual. ei_recipe_block is exactly the two in turn. */
ei_val *ei_recipe_attend(ei_emitter *em, int l, const ei_attn_qkv *qkv, const ei_attn_in *a);
ei_val *ei_recipe_block_out(ei_emitter *em, int l, ei_val *x, ei_val *att);

/* A_mem = s(q) M_g / (s(q) . z_g + EI_MEM_EPS), s = ELU + 1: q [n, H, d] pre-RoPE -> [n, H, d]. */
ei_val *ei_recipe_mem_retrieve(ei_emitter *em, ei_val *q, ei_val *M, ei_val *z);
/* The memory update by the tokens leaving the window, k, v [c, Hkv, d] (pre-RoPE), rows weighted
 * by rowmask [c, 1, 1] (NULL: all rows; a 0 row contributes exactly nothing):
 *   z' = z + sum s(k);  linear: M' = M + s(k)^T v;  delta: M' = M + s(k)^T (v - s(k) M / (s(k) z + eps)),
 * with M, z before the update (nonempty = 0: the delta correction is known to be 0 and skipped). */
int ei_recipe_mem_update(ei_emitter *em, ei_mem_rule rule, int nonempty, ei_val *k, ei_val *v, ei_val *rowmask,
                         ei_val *M, ei_val *z, ei_val **M_out, ei_val **z_out);

#endif
