/* The fixed-shape graph IR (DESIGN 6.2): what `ei compile` lowers a model into, what a `.eig` file
 * stores and what the backends execute. Device side: libc only.
 *
 * A graph is a list of tensors and a list of nodes in topological order. Every tensor has a static
 * shape (rank 0..4), an element type and quantisation parameters. Tensors are
 *   CONST   data in the weight blob shared by every graph of a file (offset, size);
 *   INPUT   bound by the caller before each run (tokens, positions, masks, state in);
 *   OUTPUT  written by the graph into caller memory (logits, new K/V rows, state out);
 *   VALUE   intermediate, owned by the backend.
 * A node has one op from the set below, 1..EI_G_MAX_IN inputs, exactly one output and typed
 * parameters. Shapes and types of outputs are written by the builder and checked by
 * ei_graph_validate, which infers them from the inputs and the parameters: a graph that validates
 * runs on every backend.
 *
 * Op semantics (NNAPI-compatible, DESIGN 6.4; "x" = first input, shapes row-major):
 *   GATHER(x, idx)          axis: out = x.take(idx, axis); idx I32 of any rank; out shape
 *                           x[:axis] + idx.shape + x[axis+1:]. Indices outside [0, x.shape[axis])
 *                           fail the run.
 *   FULLY_CONNECTED(x, w[, b])  x [.., K] (flattened to [M, K]), w [N, K], b [N]; out [M, N].
 *                           w may be F32, F16, I8 (per-channel or per-tensor) or I4 (per group of
 *                           the K axis); x and out float, or quantised per tensor (I8/U8/I16).
 *                           Arithmetic (the cpu backend; docs/runtime-cpu.md), per output (m, n):
 *                           float x, F32 / F16 w, I8 w with a zero point or group scales (and any I8 w
 *                             with ei_cpu_options.exact_w8): the float sum of x[k] w(n, k), w = (q - zp) scale.
 *                           float x, I8 w with one scale per row, no zero point ("Q8 blocks", as TFLite's
 *                             hybrid kernels and llama.cpp's Q8_0): each row of x quantised per block b
 *                             of 32 k by the rule below (xs_b); per block, acc_l = fma((float)(the exact
 *                             sum of q q8 over lane l's 4 k), xs_b, acc_l); y = the 8-lane tree of acc
 *                             times w_scale(n) (+ b[n]).
 *                           float x, I4 w of group G ("Q8", as llama.cpp's Q4_0 x Q8_0): each row of
 *                             x is quantised per group g of G (the weight's groups): amax = max |x|,
 *                             xs_g = amax / 127, q8 = clamp(round_half_away(x (127 / amax)), -127, 127)
 *                             (0 if amax is 0; xs_g NaN if the group holds a NaN or an infinity);
 *                             then, for the lanes l of 8 consecutive k (k = 64 b + 8 l .. + 7, inside
 *                             one group g), blocks b ascending, acc_l = fma((float)(the exact integer
 *                             sum of q4 q8 over the lane), w_scale(n, g) * xs_g, acc_l), y = the fixed
 *                             8-lane tree of acc (+ b[n]). Error against exact float products: about
 *                             0.4% (x uniform) to 0.6% (x normal) of the output norm, ~2% with 1% of
 *                             x 20x larger (tests/test_runtime_cpu_int.c).
 *                           quantised x (I8 / U8 with a zero point, I16 symmetric), I8 w (per tensor,
 *                             with a zero point, or per channel, symmetric), b I32 in units of
 *                             x_scale w_scale[n] (NNAPI): acc = sum (x - zx)(w - zw) + b[n], exact, then
 *                             saturated to int32 (NNAPI's int32 accumulator would wrap); out = clamp(zo +
 *                             MultiplyByQuantizedMultiplier(acc, M_n, s_n)) with M_n 2^(s_n - 31) =
 *                             x_scale w_scale[n] / out_scale as TFLite's QuantizeMultiplier (Q31
 *                             mantissa, SaturatingRoundingDoublingHighMul, RoundingDivideByPOT).
 *                           quantised x, I4 w (no NNAPI equivalent): dot_g = sum over group g of
 *                             (x - zx) w (exact); y = sum over g ascending of (float)dot_g (x_scale
 *                             w_scale(n, g)) in float, + (float)b[n] b_scale (the bias's per-tensor
 *                             scale, else x_scale); out = QUANTIZE's clamp(round_half_away(y /
 *                             out_scale) + zo).
 *                           I16 x with a non-zero zero point (x - zx may leave int16): dequantised,
 *                             the float product, requantised.
 *   BATCH_MATMUL(a, b)      adj_x, adj_y: a [.., M, K] (adj_x: [.., K, M]), b [.., K, N] (adj_y:
 *                           [.., N, K]), equal batch dims, rank 2..4; out [.., M, N].
 *   ADD, SUB, MUL, DIV, MAXIMUM(a, b)   element-wise with NumPy broadcasting (right-aligned,
 *                           extents equal or 1); out has the broadcast shape.
 *   RSQRT, LOGISTIC, EXP(x) element-wise; ELU(x) alpha: x > 0 ? x : alpha (exp(x) - 1).
 *   MEAN(x)                 over one axis; keep_dims keeps it as extent 1.
 *   SOFTMAX(x)              exp(beta (x - max)) / sum, over axis.
 *   CONCATENATION(x0..xn-1) along axis; all other extents equal.
 *   SLICE(x)                begin[r], size[r] per dimension (size -1: to the end).
 *   RESHAPE(x)              same element count; the output tensor gives the shape.
 *   TRANSPOSE(x)            perm: out.shape[i] = x.shape[perm[i]].
 *   QUANTIZE(x)             float -> I8/U8/I16 with the output's per-tensor scale and zero point:
 *                           q = clamp(round_half_away(x / scale) + zp).
 *   DEQUANTIZE(x)           I8/U8/I16/I4 (any quantisation) -> float: (q - zp) * scale.
 *   CAST(x)                 between F32, F16 and I32 (float -> int truncates toward zero).
 *   SELECT(c, a, b)         c U8 (0 = false), a, b, out of one shape: c ? a : b.
 *
 * Element types: F32, F16 (IEEE binary16), I32, I8, U8, I16, I4 (signed 4-bit, two per byte, the
 * lower nibble first, rows padded to whole bytes).
 * Quantisation (ei_gquant): NONE; TENSOR (one scale and zero point); CHANNEL (a scale per index of
 * `axis`, zero point 0, symmetric); GROUP (a scale per `group` consecutive elements along `axis`,
 * for each index of the other axes, zero point 0). CHANNEL/GROUP scales are the CONST tensor
 * `scales` (F32 or F16): CHANNEL [shape[axis]], GROUP [rows, shape[axis] / group] for a 2-D weight
 * grouped along axis 1.
 *
 * Ownership: a graph owns its tensor and node arrays and its names; constant data lives outside
 * (the blob passed to the backend, e.g. the mmapped .eig). ei_graph_free releases the graph. */
#ifndef EI_RUNTIME_GRAPH_H
#define EI_RUNTIME_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#define EI_G_MAX_RANK 4
#define EI_G_MAX_IN 8

typedef enum {
    EI_GT_F32 = 0,
    EI_GT_F16 = 1,
    EI_GT_I32 = 2,
    EI_GT_I8 = 3,
    EI_GT_U8 = 4,
    EI_GT_I16 = 5,
    EI_GT_I4 = 6,
    EI_GT_COUNT
} ei_gtype;

typedef enum { EI_GQ_NONE = 0, EI_GQ_TENSOR = 1, EI_GQ_CHANNEL = 2, EI_GQ_GROUP = 3 } ei_gquant_kind;

typedef struct {
    ei_gquant_kind kind;
    float scale;        /* TENSOR */
    int32_t zero_point; /* TENSOR */
    int32_t axis;       /* CHANNEL, GROUP */
    int32_t group;      /* GROUP: elements per group along axis */
    int32_t scales;     /* CHANNEL, GROUP: index of the CONST scales tensor in the same graph */
} ei_gquant;

typedef enum { EI_GK_CONST = 0, EI_GK_INPUT = 1, EI_GK_OUTPUT = 2, EI_GK_VALUE = 3 } ei_gkind;

typedef struct {
    char *name; /* owned; unique within the graph */
    ei_gtype type;
    ei_gkind kind;
    int32_t rank;
    int32_t shape[EI_G_MAX_RANK];
    ei_gquant q;
    uint64_t offset, size; /* CONST: bytes of the shared constant blob */
} ei_gtensor;

/* Numbered from 1; the numbers are stored in .eig files: append, never renumber. */
typedef enum {
    EI_OP_GATHER = 1,
    EI_OP_FULLY_CONNECTED,
    EI_OP_BATCH_MATMUL,
    EI_OP_ADD,
    EI_OP_SUB,
    EI_OP_MUL,
    EI_OP_DIV,
    EI_OP_RSQRT,
    EI_OP_MEAN,
    EI_OP_SOFTMAX,
    EI_OP_LOGISTIC,
    EI_OP_ELU,
    EI_OP_EXP,
    EI_OP_CONCATENATION,
    EI_OP_SLICE,
    EI_OP_RESHAPE,
    EI_OP_TRANSPOSE,
    EI_OP_QUANTIZE,
    EI_OP_DEQUANTIZE,
    EI_OP_CAST,
    EI_OP_MAXIMUM,
    EI_OP_SELECT,
    EI_OP_COUNT /* one past the last */
} ei_gop;

typedef union {
    struct { int32_t axis; } gather;
    struct { int32_t adj_x, adj_y; } bmm;
    struct { int32_t axis, keep_dims; } mean;
    struct { float beta; int32_t axis; } softmax;
    struct { float alpha; } elu;
    struct { int32_t axis; } concat;
    struct { int32_t begin[EI_G_MAX_RANK], size[EI_G_MAX_RANK]; } slice;
    struct { int32_t perm[EI_G_MAX_RANK]; } transpose;
} ei_gparams;

typedef struct {
    ei_gop op;
    int32_t n_in;
    int32_t in[EI_G_MAX_IN]; /* tensor indices */
    int32_t out;             /* tensor index */
    ei_gparams p;
} ei_gnode;

typedef struct {
    char *name; /* owned: "prefill", "decode", ... */
    int32_t n_tensors, cap_tensors;
    ei_gtensor *tensors;
    int32_t n_nodes, cap_nodes;
    ei_gnode *nodes;
} ei_graph;

/* Name of an op ("FULLY_CONNECTED"), of a type ("f32"); "?" when out of range. Bytes per element
 * of a type (I4: 0; use ei_gtensor_bytes). */
const char *ei_gop_name(ei_gop op);
const char *ei_gtype_name(ei_gtype t);
size_t ei_gtype_size(ei_gtype t);
/* Element count and byte size of a tensor (I4 rows padded to whole bytes along the last axis). */
int64_t ei_gtensor_numel(const ei_gtensor *t);
uint64_t ei_gtensor_bytes(const ei_gtensor *t);

/* Names of a tensor kind ("const", "input", "output", "value") and a quantisation scheme ("none",
 * "tensor", "channel", "group"); "?" when out of range. Writes a shape as "[4,32,64]" ("[]" for a
 * scalar) into buf (cap bytes, truncated, NUL-terminated) and returns buf. */
const char *ei_gkind_name(ei_gkind k);
const char *ei_gquant_name(ei_gquant_kind q);
char *ei_gshape_str(int32_t rank, const int32_t *shape, char *buf, size_t cap);

/* Largest element count ei_graph_validate accepts for one tensor: far above any model, small
 * enough that element counts and byte sizes never overflow 64-bit arithmetic. */
#define EI_G_MAX_NUMEL ((int64_t)1 << 40)

/* ---- builder. All return -1 with ei_error set on failure (out of memory, bad argument). */
ei_graph *ei_graph_new(const char *name);
void ei_graph_free(ei_graph *g);
/* Adds a tensor; returns its index or -1. shape has rank entries (rank 0: a scalar). The quant
 * parameters start as NONE (set g->tensors[i].q after). */
int32_t ei_graph_add_tensor(ei_graph *g, const char *name, ei_gtype type, ei_gkind kind, int32_t rank,
                            const int32_t *shape);
/* Adds a node reading in[0..n_in-1] and writing out; returns its index or -1. */
int32_t ei_graph_add_node(ei_graph *g, ei_gop op, int32_t n_in, const int32_t *in, int32_t out,
                          const ei_gparams *p);
/* Index of a tensor by name, -1 if absent. */
int32_t ei_graph_find(const ei_graph *g, const char *name);

/* Checks a whole graph before it runs: tensor indices in range, names unique, ranks and shapes
 * positive and within EI_G_MAX_RANK, CONST tensors inside a blob of blob_size bytes with a size
 * equal to their shape x type, quantisation parameters consistent with the type (scales tensor a
 * CONST float of the right shape), every node's op known and its input count, input types and
 * parameters valid for the op, the output's shape and type equal to what the op infers, nodes in
 * topological order (every input is a CONST, an INPUT or written by an earlier node; no tensor
 * written twice; no cycle), INPUT tensors never written, every OUTPUT written exactly once.
 * Returns 0, or -1 with ei_error naming the graph, the node index, its op and the problem. */
int ei_graph_validate(const ei_graph *g, uint64_t blob_size);

#endif
