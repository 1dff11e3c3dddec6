/* Reverse-mode automatic differentiation over a static graph (ggml / KANN style).
 *
 * A graph is built once (leaves, then ops in topological order: every op's sources exist before
 * it), then executed many times: the caller fills inputs, calls ag_graph_forward, seeds the
 * gradients of one or more outputs and calls ag_graph_backward.
 *
 * Dtype. A whole graph computes in one float dtype, AG_F32 or AG_F64, fixed by ag_graph_new. The
 * same builder code can therefore produce a float64 twin of a model for gradient checks. Index
 * tensors (token ids, targets, positions, masks) are AG_I32 or AG_U8 leaves; they never carry
 * gradients.
 *
 * Shapes. 1 to 4 dimensions, row-major, contiguous. Shapes are int64_t arrays; AG_SHAPE(...) passes
 * (ndim, array) to the constructors: ag_input(g, AG_SHAPE(T, D)).
 *
 * Leaves.
 *   input  (ag_input*)  data the caller fills before each forward. ag_tensor_set_requires_grad(t, 1)
 *          gives it a gradient buffer that is read after backward (e.g. recurrent state coming from
 *          a previous segment).
 *   param  (ag_param)   trainable. Its gradient buffer ACCUMULATES over backward calls (BPTT over
 *          segments, gradient accumulation) until ag_graph_zero_grads / ag_tensor_zero_grad.
 *   const  (ag_const)   frozen weight: no gradient buffer ever, but gradients still flow through the
 *          ops that use it to their other sources. Its data is never written by the engine.
 * A leaf's data lives in the graph's arena unless it is bound to caller memory with ag_tensor_bind
 * (no copy; dtype must be the graph's). Unbound leaf buffers are allocated on first use of
 * ag_tensor_data / ag_tensor_set_* or at ag_graph_finalize, whichever comes first, so binding a
 * frozen weight never costs arena memory. Leaf gradients (params, requires-grad inputs) also
 * accumulate for inputs; zero them yourself between uses if you want fresh values.
 *
 * Gradients. ag_graph_finalize (called implicitly by the first forward/backward) marks the nodes
 * that need a gradient (those that depend on a param or a requires-grad input) and gives only those
 * a gradient buffer. No graph construction is allowed after finalize. Every backward first zeroes
 * the gradients of all non-leaf nodes, then adds the seeds, then sweeps the nodes in reverse order;
 * nodes whose gradient was never touched are skipped.
 *
 * Memory. One arena per graph holds activations, gradients and op scratch, all allocated while
 * building / finalizing (arena_bytes_hint sizes the first block; more blocks are added at build
 * time if needed). ag_graph_forward and ag_graph_backward never call malloc. Views (ag_reshape)
 * share their source's data; their data pointer is refreshed at every forward, so rebinding a
 * leaf between forwards is safe.
 *
 * Errors. Constructors return NULL and set ei_error ("matmul: inner dims differ: [3,4] x [5,2]").
 * The graph remembers its first failure (ag_graph_error) and ag_graph_finalize fails with it. Any
 * op given a NULL source on a failed graph returns NULL without touching the message, so a whole
 * block can be built and checked once at the end. Code that builds graphs reports its own
 * failures with ag_graph_fail, which makes them the graph's first cause; a NULL reaching a graph
 * that has not failed becomes its first failure, quoting the pending ei_error message. Forward
 * returns -1 on bad runtime data (a target id out of range, an embedding id out of range) with a
 * message naming the op.
 *
 * Walking. Every op node records its kind (ag_tensor_op), its sources in constructor argument
 * order with omitted optional ones left out (ag_tensor_src), and the constructor's non-shape
 * arguments as typed values (ag_tensor_params), so a graph can be inspected or serialised by
 * visiting ag_graph_node(g, 0 .. n-1), which is already a topological order.
 *
 * Threads. Everything runs on one OpenMP team (ei_k_threads_set in kernels/kernels.h sets its
 * size); OpenBLAS is kept single-threaded and large GEMMs are split into fixed blocks over the team,
 * so two spinning thread pools never compete for the cores. Results are bit-identical for any
 * thread count: no reduction's order depends on the partition.
 *
 * Ownership. The graph owns every tensor and every arena buffer; ag_graph_free releases them.
 * Bound caller memory is never freed by the graph and must outlive its use. */
#ifndef EI_AUTOGRAD_H
#define EI_AUTOGRAD_H

#include <stddef.h>
#include <stdint.h>

#define AG_MAX_DIMS 4

typedef enum {
    AG_F32 = 0,
    AG_F64 = 1,
    AG_I32 = 2, /* index leaves only */
    AG_U8 = 3,  /* mask leaves only */
} ag_dtype;

typedef enum {
    AG_LEAF_INPUT = 0,
    AG_LEAF_PARAM = 1,
    AG_LEAF_CONST = 2,
    AG_NODE_OP = 3, /* result of an op */
} ag_kind;

/* RoPE layouts: which element pairs are rotated together. */
typedef enum {
    AG_ROPE_INTERLEAVED = 0, /* (x[2i], x[2i+1]), llama2.c checkpoints */
    AG_ROPE_HALF = 1,        /* (x[i], x[i + d/2]), Hugging Face Llama ("rotate_half") */
} ag_rope_layout;

/* One kind per op constructor (ag_rope_ex is AG_OP_ROPE with max_pos > 0, ag_concat_n is
 * AG_OP_CONCAT). The values are part of the serialised form of a graph: append, never renumber. */
typedef enum {
    AG_OP_NONE = 0, /* a leaf: input, param or const (see ag_kind) */
    AG_OP_MATMUL,
    AG_OP_LINEAR,
    AG_OP_ADD,
    AG_OP_SUB,
    AG_OP_MUL,
    AG_OP_DIV,
    AG_OP_SCALE,
    AG_OP_ADD_SCALAR,
    AG_OP_SUM,
    AG_OP_MEAN,
    AG_OP_SUM_ALL,
    AG_OP_SILU,
    AG_OP_SIGMOID,
    AG_OP_ELU1,
    AG_OP_EXP,
    AG_OP_SWIGLU,
    AG_OP_SOFTMAX,
    AG_OP_STOP_GRAD,
    AG_OP_RMSNORM,
    AG_OP_ROPE,
    AG_OP_ATTENTION,
    AG_OP_EMBEDDING,
    AG_OP_CONCAT,
    AG_OP_SLICE,
    AG_OP_RESHAPE,
    AG_OP_TRANSPOSE,
    AG_OP_CROSS_ENTROPY,
    AG_OP_LINEAR_CE, /* ag_linear_cross_entropy */
    AG_OP_COUNT
} ag_op_kind;

/* Typed op parameters: the constructor's arguments that are not tensors and not implied by the
 * result's shape (reshape's target shape is the node's shape). Axes are stored normalised to
 * 0..ndim-1 of the source. Ops without an entry (linear, add, silu, embedding, cross_entropy, ...)
 * have nothing beyond their sources and shape. */
typedef struct {
    int trans_a, trans_b; /* 0 / 1 */
} ag_matmul_params;
typedef struct {
    double eps;
} ag_rmsnorm_params;
typedef struct {
    double theta;
    ag_rope_layout layout;
    int32_t max_pos; /* 0: ag_rope (per-row table) */
} ag_rope_params;
typedef struct {
    double scale;
    int64_t causal_offset; /* as applied: AG_ATTN_NONCAUSAL, or raised to -Tq - 1 if below */
    int n_parts;           /* key / value parts (ag_attention_parts); 1 for ag_attention */
    unsigned masked;       /* bit i: part i has a valid mask (a source after the value parts) */
} ag_attention_params;
typedef struct {
    int axis, keepdim;
} ag_reduce_params; /* sum, mean */
typedef struct {
    int axis;
    int64_t start, len;
} ag_slice_params;
typedef struct {
    int axis;
} ag_concat_params;
typedef struct {
    int axis0, axis1;
} ag_transpose_params;
typedef struct {
    double s;
} ag_scale_params;
typedef struct {
    double c;
} ag_add_scalar_params;

/* Tagged union: the member named after `kind` is the one set (sum and mean share a layout). */
typedef struct {
    ag_op_kind kind;
    union {
        ag_matmul_params matmul;
        ag_rmsnorm_params rmsnorm;
        ag_rope_params rope;
        ag_attention_params attention;
        ag_reduce_params sum;
        ag_reduce_params mean;
        ag_slice_params slice;
        ag_concat_params concat;
        ag_transpose_params transpose;
        ag_scale_params scale;
        ag_add_scalar_params add_scalar;
    };
} ag_op_params;

typedef struct ag_graph ag_graph;
typedef struct ag_grad_pool ag_grad_pool;

/* Fields are readable by callers; treat them as read-only and change them only via the API. */
typedef struct ag_tensor {
    ag_dtype dtype;
    ag_kind kind;
    int ndim;
    int64_t shape[AG_MAX_DIMS]; /* unused trailing entries are 1 */
    int64_t numel;
    void *data;       /* float/double/int32/uint8 per dtype; NULL until allocated or bound */
    void *grad;       /* same dtype as data; NULL when this tensor needs no gradient */
    int requires_grad; /* set by finalize for op nodes; by the API for leaves */
    const char *name;  /* optional label for error messages and dumps (not copied) */
    int id;            /* index in the graph, in creation order */
} ag_tensor;

/* (ndim, const int64_t *shape) from a list of 1 to 4 extents. */
#define AG_SHAPE(...) \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

/* Sentinel for ag_attention: no causal restriction. */
#define AG_ATTN_NONCAUSAL INT64_MAX

/* ------------------------------------------------------------------ graph */

/* dtype: AG_F32 or AG_F64. arena_bytes_hint: size of the first arena block (0 = 1 MiB). */
ag_graph *ag_graph_new(ag_dtype dtype, size_t arena_bytes_hint);
void ag_graph_free(ag_graph *g);
ag_dtype ag_graph_dtype(const ag_graph *g);
/* Marks the nodes needing gradients and allocates gradient buffers and unbound leaves.
 * Idempotent. Returns -1 if any build step failed (the message of the first failure). */
int ag_graph_finalize(ag_graph *g);
/* Runs every node in creation order. */
int ag_graph_forward(ag_graph *g);
/* Backward pass. outputs[i] gets seed seeds[i] (a buffer of outputs[i]->numel values in the
 * graph's dtype; NULL means all ones) added to its gradient after the non-leaf gradients were
 * zeroed. Outputs that need no gradient are ignored. Param and requires-grad-input gradients are
 * accumulated into. */
int ag_graph_backward(ag_graph *g, int n, ag_tensor *const *outputs, const void *const *seeds);
/* Convenience for a scalar loss: seeds every element of `loss` with `seed` (e.g. 1/count). */
int ag_graph_backward_scalar(ag_graph *g, ag_tensor *loss, double seed);
/* Zeroes the gradient buffers of all params and requires-grad inputs. */
void ag_graph_zero_grads(ag_graph *g);

/* Gradient memory shared by graphs that are kept alive together but never run backward at the same
 * time (segment graphs kept with their activations from a forward sweep to a backward sweep). An
 * op node's gradient, and backward-only scratch, is live only inside one backward: every backward
 * zeroes (or overwrites) it at first touch. So graphs attached to one pool hold their activations
 * each but one set of gradient buffers between them, sized for the largest. Within a graph the
 * buffers are also placed by liveness: an op node's gradient occupies its bytes from the backward
 * of its last consumer (or from the seeding, for an output) to the end of its own backward, so a
 * graph needs the peak of what is live at once during its reverse sweep, not the sum over its
 * nodes. Consequently the op-node gradients of a pooled graph hold nothing meaningful after a
 * backward; read leaf gradients only. An op node seeded in ag_graph_backward(_scalar) must have no
 * consumers or be marked with ag_graph_mark_output (otherwise the backward fails). Leaf
 * gradients (params, requires-grad inputs) accumulate and always stay the graph's own. A pool must
 * outlive its graphs and is not thread-safe. */
typedef struct ag_grad_pool ag_grad_pool;
ag_grad_pool *ag_grad_pool_new(void);
void ag_grad_pool_free(ag_grad_pool *p);
/* Bytes the pool holds. */
size_t ag_grad_pool_bytes(const ag_grad_pool *p);
/* Before finalize: g's op-node gradients and backward-only scratch go to p (reserved at
 * finalize, which grows p as needed; ag_graph_arena_bytes then excludes them). */
int ag_graph_share_grads(ag_graph *g, ag_grad_pool *p);
/* Before finalize: t (a node of g) may be passed as an output to ag_graph_backward /
 * ag_graph_backward_scalar. Needed only for op nodes of a pooled graph that other nodes consume
 * (their gradient must then be live from the start of the sweep); nodes without consumers count
 * as outputs anyway. Takes no ownership and allocates nothing. After finalize it succeeds only if
 * t already counts as an output. */
int ag_graph_mark_output(ag_graph *g, ag_tensor *t);
/* Bytes reserved in the arena so far (activations, gradients, scratch, unbound leaves). */
size_t ag_graph_arena_bytes(const ag_graph *g);
int ag_graph_node_count(const ag_graph *g);
ag_tensor *ag_graph_node(const ag_graph *g, int id);
/* Records a build failure found by code that builds g (a model builder's own check): sets
 * ei_error, marks g failed and keeps the message as g's first error unless it already has one.
 * Later ops given NULL then stay silent, and ag_graph_finalize fails with this cause. Returns -1.
 * g NULL only sets ei_error. */
int ag_graph_fail(ag_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The first build failure of g, or NULL if building has not failed. Valid until g is freed. */
const char *ag_graph_error(const ag_graph *g);

/* ------------------------------------------------------------------ walking a graph
 * All accept NULL (and leaves) and then report "no op": AG_OP_NONE, 0 sources, NULL. */

ag_op_kind ag_tensor_op(const ag_tensor *t);
int ag_tensor_n_src(const ag_tensor *t);
/* Source i (0 .. n_src-1) in constructor argument order; NULL when out of range. */
ag_tensor *ag_tensor_src(const ag_tensor *t, int i);
/* Read-only parameters of an op node (kind set even for ops without parameters); NULL for leaves. */
const ag_op_params *ag_tensor_params(const ag_tensor *t);
/* "matmul", "rope", ... (the prefix of the op's messages); "leaf" for AG_OP_NONE; NULL for a value
 * outside the enum. */
const char *ag_op_name(ag_op_kind kind);
/* EI_AG_PROFILE=1 in the environment times every op's forward and backward per op kind; this
 * prints the totals so far to stderr (after label when non-NULL) and starts again. Without the
 * variable it does nothing. What remains at exit is printed then. */
void ag_profile_flush(const char *label);

/* ------------------------------------------------------------------ leaves */

/* Float leaves in the graph's dtype. */
ag_tensor *ag_input(ag_graph *g, int ndim, const int64_t *shape);
ag_tensor *ag_param(ag_graph *g, int ndim, const int64_t *shape);
ag_tensor *ag_const(ag_graph *g, int ndim, const int64_t *shape);
/* Index / mask inputs (never differentiable). */
ag_tensor *ag_input_i32(ag_graph *g, int ndim, const int64_t *shape);
ag_tensor *ag_input_u8(ag_graph *g, int ndim, const int64_t *shape);

/* Inputs only (and only before finalize): give it a gradient buffer. */
int ag_tensor_set_requires_grad(ag_tensor *t, int on);
/* Leaves only. data / grad non-NULL replace the buffer pointer (no copy; must hold numel values of
 * the tensor's dtype and outlive the graph's use); NULL keeps the current (or future arena) buffer.
 * grad is only accepted for params and requires-grad inputs (call ag_tensor_set_requires_grad
 * first). Allowed at any time, also between forwards: a model can keep all trainable parameters
 * and their gradients in one contiguous block and point the params into it. */
int ag_tensor_bind(ag_tensor *t, void *data, void *grad);
/* Frozen weights in read-only memory (e.g. an mmap'd model file). Const leaves only. */
int ag_tensor_bind_const(ag_tensor *t, const void *data);
void ag_tensor_set_name(ag_tensor *t, const char *name);

/* The data buffer; for an unbound leaf it is allocated in the arena (zeroed) on first call. */
void *ag_tensor_data(ag_tensor *t);
/* Copy numel values in, converting to the tensor's dtype (works for f32 data into an f64 graph).
 * src_dtype AG_F32 / AG_F64 for float tensors, AG_I32 / AG_U8 must equal the tensor's. */
int ag_tensor_set(ag_tensor *t, const void *src, ag_dtype src_dtype);
int ag_tensor_set_f32(ag_tensor *t, const float *src);
int ag_tensor_set_f64(ag_tensor *t, const double *src);
/* Copy numel values of the data / gradient out, converting to dst_dtype (AG_F32 or AG_F64). */
int ag_tensor_get(const ag_tensor *t, void *dst, ag_dtype dst_dtype);
int ag_tensor_get_grad(const ag_tensor *t, void *dst, ag_dtype dst_dtype);
/* Element i (flat index) as double; grad variant returns 0 when there is no gradient. */
double ag_tensor_at(const ag_tensor *t, int64_t i);
double ag_tensor_grad_at(const ag_tensor *t, int64_t i);
void ag_tensor_zero_grad(ag_tensor *t);
/* "[3,4]" into buf (for messages). Returns buf. */
const char *ag_shape_str(const ag_tensor *t, char *buf, size_t n);

/* ------------------------------------------------------------------ ops
 * All return a new node (or NULL with ei_error set). Shapes in comments use [..] for leading dims.
 * Axis arguments may be negative (counted from the end). */

/* a [.., M, K] (or [.., K, M] when trans_a), b [K, N] (or [N, K] when trans_b) or with the same
 * leading batch dims as a -> [.., M, N]. A 2-D b is shared by every batch entry. */
ag_tensor *ag_matmul(ag_graph *g, ag_tensor *a, ag_tensor *b, int trans_a, int trans_b);
/* y = x W^T + bias: x [.., in], W [out, in], bias [out] or NULL -> [.., out]. */
ag_tensor *ag_linear(ag_graph *g, ag_tensor *x, ag_tensor *w, ag_tensor *bias);

/* Element-wise with NumPy broadcasting (right-aligned; extents equal or 1). */
ag_tensor *ag_add(ag_graph *g, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_sub(ag_graph *g, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_mul(ag_graph *g, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_div(ag_graph *g, ag_tensor *a, ag_tensor *b);
/* a * s and a + c. */
ag_tensor *ag_scale(ag_graph *g, ag_tensor *a, double s);
ag_tensor *ag_add_scalar(ag_graph *g, ag_tensor *a, double c);

/* Reductions over one axis; keepdim keeps it as extent 1 (a 1-D input reduces to shape [1]). */
ag_tensor *ag_sum(ag_graph *g, ag_tensor *a, int axis, int keepdim);
ag_tensor *ag_mean(ag_graph *g, ag_tensor *a, int axis, int keepdim);
/* Sum of all elements -> [1]. */
ag_tensor *ag_sum_all(ag_graph *g, ag_tensor *a);

/* Unary element-wise. elu1(x) = ELU(x) + 1 = x + 1 (x > 0), exp(x) (x <= 0). */
ag_tensor *ag_silu(ag_graph *g, ag_tensor *x);
ag_tensor *ag_sigmoid(ag_graph *g, ag_tensor *x);
ag_tensor *ag_elu1(ag_graph *g, ag_tensor *x);
ag_tensor *ag_exp(ag_graph *g, ag_tensor *x);
/* silu(a) * b, same shapes. */
ag_tensor *ag_swiglu(ag_graph *g, ag_tensor *a, ag_tensor *b);
/* Softmax over the last axis. */
ag_tensor *ag_softmax(ag_graph *g, ag_tensor *x);
/* Identity forward; no gradient flows back (truncated BPTT). Shares the source's data. */
ag_tensor *ag_stop_grad(ag_graph *g, ag_tensor *x);

/* y = x / sqrt(mean(x^2, last axis) + eps) * w: x [.., D], w [D] or NULL. */
ag_tensor *ag_rmsnorm(ag_graph *g, ag_tensor *x, ag_tensor *w, double eps);
/* Rotary embedding. x [T, H, d] or [T, d] (d even), pos int32 [T] (position of each row, any
 * values, e.g. cache-relative). Frequencies theta^(-2i/d), i = 0..d/2-1, pair i rotated by
 * pos * freq_i; which elements form pair i depends on layout. */
ag_tensor *ag_rope(ag_graph *g, ag_tensor *x, ag_tensor *pos, double theta, ag_rope_layout layout);
/* The same with every position known to lie in [0, max_pos]: one (cos, sin) table over those
 * positions is computed at the first forward and reused whatever positions later runs use (ag_rope
 * recomputes its per-row table whenever the positions change). A position outside the range fails
 * the forward. max_pos 0 behaves as ag_rope. */
ag_tensor *ag_rope_ex(ag_graph *g, ag_tensor *x, ag_tensor *pos, double theta, ag_rope_layout layout,
                      int32_t max_pos);

/* Fused scaled-dot-product attention with grouped-query heads.
 *   q [Tq, H, d], k [Tk, Hkv, d], v [Tk, Hkv, dv], H a multiple of Hkv; query head h uses KV head
 *   h / (H / Hkv). Output [Tq, H, dv].
 *   valid: NULL or an AG_U8 / AG_I32 input [Tk]; keys with valid[j] == 0 are masked (unfilled
 *   cache slots).
 *   Query i may see key j iff j <= causal_offset + i (causal_offset = Tk - Tq for a segment that
 *   follows Tk - Tq cached keys); AG_ATTN_NONCAUSAL disables the restriction.
 * Online softmax over key blocks: only the per-row logsumexp [H, Tq] is kept, never Tq x Tk;
 * backward recomputes the scores. A row with no visible key outputs 0 (and passes no gradient). */
ag_tensor *ag_attention(ag_graph *g, ag_tensor *q, ag_tensor *k, ag_tensor *v, ag_tensor *valid,
                        double scale, int64_t causal_offset);
/* The same with the keys and values in 1 to 4 parts, as if concatenated along the rows in order
 * (k[i] [Tk_i, Hkv, d], v[i] [Tk_i, Hkv, dv]; the causal rule indexes the concatenation), without
 * building the concatenation: a segment's sink, window and own keys are read where they are and
 * their gradients written there. valid: NULL, or n_parts masks, each NULL (all keys of the part
 * valid) or AG_U8 / AG_I32 [Tk_i]. Sources: q, the key parts, the value parts, the non-NULL masks
 * (params.masked says whose). No two parts may share a tensor (k[i] == v[i] may). Rounding differs
 * from one concatenated part by how the softmax is blocked (key tiles never span two parts). */
ag_tensor *ag_attention_parts(ag_graph *g, ag_tensor *q, int n_parts, ag_tensor *const *k, ag_tensor *const *v,
                              ag_tensor *const *valid, double scale, int64_t causal_offset);

/* Row gather: table [V, D], ids AG_I32 of any shape [..] -> [.., D]. Backward scatter-adds into
 * the table's gradient. Ids outside [0, V) fail the forward. */
ag_tensor *ag_embedding(ag_graph *g, ag_tensor *table, ag_tensor *ids);

/* Concatenation along axis of 1 to 16 tensors; all other extents equal. */
ag_tensor *ag_concat(ag_graph *g, ag_tensor *a, ag_tensor *b, int axis);
ag_tensor *ag_concat_n(ag_graph *g, int n, ag_tensor *const *ts, int axis);
/* Elements [start, start + len) along axis. */
ag_tensor *ag_slice(ag_graph *g, ag_tensor *a, int axis, int64_t start, int64_t len);
/* Same numel, new shape (one extent may be -1 = inferred). A view: no copy. */
ag_tensor *ag_reshape(ag_graph *g, ag_tensor *a, int ndim, const int64_t *shape);
/* Swap two axes (copies into a contiguous result). */
ag_tensor *ag_transpose(ag_graph *g, ag_tensor *a, int axis0, int axis1);

/* Masked cross-entropy fused with log-softmax. logits [N, V] (or [.., V], rows flattened),
 * targets AG_I32 [N], mask NULL, AG_U8 [N] (0/1) or a float input [N] (per-row weights).
 * Output [1]: sum over rows of weight * -log softmax(logits)[target]. Rows with weight 0 or target
 * -1 are skipped; any other target outside [0, V) fails the forward. Divide by
 * ag_cross_entropy_count (valid after forward: sum of weights of counted rows) to get the mean,
 * e.g. ag_graph_backward_scalar(g, loss, 1.0 / count). */
ag_tensor *ag_cross_entropy(ag_graph *g, ag_tensor *logits, ag_tensor *targets, ag_tensor *mask);
double ag_cross_entropy_count(const ag_tensor *loss);
/* The classifier fused with that loss, computed on the counted rows only: the same value as
 * ag_cross_entropy(ag_linear(x, w, NULL), targets, mask), with x [.., D] (rows flattened), w
 * [V, D], and the logits GEMM, the log-softmax and, in backward, both GEMMs of the gradient run
 * over the rows with a non-zero weight and a target only (instruction data masks most of a long
 * context). Output [1]; no logits tensor is exposed. Bit-identical to the unfused pair when every
 * row counts; otherwise a row's logits may differ from the unfused pair's in the last bit (a GEMM
 * over fewer rows). ag_cross_entropy_count works on it too. */
ag_tensor *ag_linear_cross_entropy(ag_graph *g, ag_tensor *x, ag_tensor *w, ag_tensor *targets, ag_tensor *mask);

#endif
