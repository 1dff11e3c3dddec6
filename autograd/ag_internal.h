/* Private structures of the autograd engine, shared by graph.c and the op files. */
#ifndef EI_AG_INTERNAL_H
#define EI_AG_INTERNAL_H

#include "autograd/autograd.h"
#include "core/ei_error.h"
#include "kernels/kernels.h"

#include <stddef.h>
#include <stdint.h>

#define AG_MAX_SRC 16 /* ag_concat_n takes at most this many inputs (a training graph: one per segment) */
#define AG_ERROR_CAP 1024 /* bytes kept of a graph's first error */
/* Elements below which an op runs single-threaded (see EI_KERNELS_PAR_MIN). */
#define AG_PAR_MIN EI_KERNELS_PAR_MIN

typedef struct ag_node ag_node;

/* One op: forward computes n->t.data from the sources (returns -1 with ei_error on bad runtime
 * data); backward adds n->t.grad's contribution into the gradient of every source that has one,
 * acquiring it first with ag_grad_acquire, or with ag_grad_acquire_overwrite when it writes every
 * element (then a first touch is written, not zeroed and added to). view: the node's data aliases
 * its first source. The op's name is ag_op_name(kind), so messages and dumps cannot disagree with
 * the enum. */
typedef struct {
    ag_op_kind kind;
    int (*forward)(ag_node *n);
    void (*backward)(ag_node *n);
    int view;
    int no_grad; /* never propagates a gradient (stop_grad) */
} ag_op;

/* Extents the kernels need, derived from the source shapes at build time and fixed afterwards
 * (recomputing them per call would repeat the constructor's shape logic in every op). */
typedef union {
    struct {
        int64_t batch, m, n, k;
        int shared; /* b is 2-D, reused by every batch entry */
    } matmul;
    struct {
        int64_t rows, in, out; /* x flattened to [rows, in] */
    } linear;
    struct {
        int64_t outer, n, inner;
        double coef; /* 1 (sum) or 1 / n (mean) */
    } reduce;
    struct {
        int64_t rows, dim;
    } rmsnorm;
    struct {
        int64_t t, h, d;
    } rope;
    struct {
        int64_t tq, tk, h, hkv, d, dv;
        int store_probs; /* the forward keeps the probabilities in bwd_scratch for the backward */
    } attention;
    struct {
        int64_t vocab, dim, count;
    } embedding;
    struct {
        int64_t outer, inner, total; /* total: output extent along the axis */
    } concat;
    struct {
        int64_t outer, extent, inner; /* extent: the source's extent along the axis */
    } slice;
    struct {
        int64_t stride[4]; /* source strides read at each (4-D padded) output index position */
    } transpose;
    struct {
        int64_t rows, vocab;
    } ce;
    struct {
        int64_t rows, vocab, dim;
    } lce;
} ag_op_dims;

struct ag_node {
    ag_tensor t; /* first member: an ag_tensor * is an ag_node * */
    ag_graph *g;
    const ag_op *op; /* NULL for leaves */
    ag_node *src[AG_MAX_SRC];
    int nsrc;
    ag_op_params p;   /* what ag_tensor_params shows; never written after the constructor */
    ag_op_dims dim;
    void *scratch;    /* op buffers (arena): what forward keeps for backward, or caches */
    void *scratch2;
    size_t bwd_bytes; /* scratch only the backward needs: finalize allocates it into bwd_scratch
                         when the node takes a gradient, so forward-only graphs never pay for it */
    void *bwd_scratch;
    size_t keep_bytes; /* what the forward writes for the backward only when the node takes a
                          gradient: finalize allocates it (arena) into keep */
    void *keep;
    /* Mutable op state, rewritten while the graph runs (kept apart from p so the parameters
     * describe the graph, not its history). */
    int table_valid;  /* rope: scratch holds the (cos, sin) table for scratch2's / all positions */
    double ce_count;  /* cross-entropy: sum of the counted rows' weights in the last forward */
    int64_t lce_m;    /* linear_cross_entropy: counted rows in the last forward */
    int bound_data;   /* leaf data points to caller memory */
    int bound_grad;
    int read_only;    /* bound with ag_tensor_bind_const */
    int grad_live;    /* gradient touched in the current backward */
    int bwd_shared;   /* bwd_scratch is used by the backward only (never written by the forward), so
                         a graph sharing its gradient memory (ag_graph_share_grads) puts it there */
    size_t grad_off, bwd_off; /* offsets in the shared gradient memory */
    int may_seed;     /* may be seeded as a backward output (ag_graph_mark_output, or no consumer
                         taking a gradient): a pooled gradient is then live from the sweep's start */
    size_t view_off;  /* views: byte offset of the data in the first source's (a leading slice) */
    int grad_alias;   /* a reshape whose gradient buffer is its source's (pool_plan): its backward
                         only marks the source's gradient live */
};

/* A view's data: its first source's, from view_off on (NULL while the source has none). */
static inline void *ag_view_data(const ag_node *n) {
    char *d = n->src[0]->t.data;
    return d ? d + n->view_off : NULL;
}

typedef struct ag_block ag_block;

struct ag_graph {
    ag_dtype dtype;
    ag_node **nodes;
    int n, cap;
    ag_block *blocks;
    size_t block_size, arena_used;
    int finalized;
    int failed;
    ag_grad_pool *gpool; /* op-node gradients live there (ag_graph_share_grads) */
    size_t pool_need;    /* bytes of gpool this graph uses: the peak of its live gradients */
    /* The (cos, sin) table of rope nodes over positions [0, max_pos] (ag_rope_ex, max_pos > 0): it
     * depends on nothing but these keys, so the last one built serves every later node that
     * matches (a 16-segment training chunk has 768 rope nodes: 76 MiB of identical tables, and
     * their sincos rebuilt whenever such a graph is, 0.2-0.4 s of an 8K-token step). */
    struct {
        void *tab;
        double theta;
        int64_t d;
        int32_t max_pos;
    } rope;
    char first_error[AG_ERROR_CAP];
};

static inline ag_node *ag_n(ag_tensor *t) { return (ag_node *)t; }
static inline size_t ag_dtype_size(ag_dtype d) {
    return d == AG_F64 ? 8 : d == AG_U8 ? 1 : 4;
}

/* Zeroed, 64-byte aligned memory from the graph's arena (build / finalize time only). */
void *ag_arena_alloc(ag_graph *g, size_t bytes);
/* A new op node of the graph's dtype with the given shape and sources; allocates its data unless
 * the op is a view, and sets p.kind (the caller fills the rest of p). NULL (and the graph marked
 * failed) on error. */
ag_node *ag_node_new(ag_graph *g, const ag_op *op, int ndim, const int64_t *shape, int nsrc, ag_tensor *const *src);
/* Records a build failure like ag_graph_fail and returns NULL, for `return ag_fail(...)` in
 * constructors. */
void *ag_fail(ag_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The gradient buffer of a source, zeroed on first touch in this backward (leaves: never zeroed,
 * they accumulate). NULL if the source takes no gradient. */
void *ag_grad_acquire(ag_node *src);
/* The same for a caller that overwrites the whole buffer when *fresh is set (first touch of an op
 * node's gradient in this backward: not zeroed, e.g. a GEMM with beta 0) and adds otherwise. */
void *ag_grad_acquire_overwrite(ag_node *src, int *fresh);
/* Checks common to every op constructor: graph not finalized, sources non-NULL and of this graph.
 * Returns 0 when the op may be built; -1 when it must return NULL. A NULL source leaves the
 * graph's first error (and, on a failed graph, ei_error) as it is. */
int ag_check_srcs(ag_graph *g, const ag_op *op, int nsrc, ag_tensor *const *src);
/* Normalises a possibly negative axis; -1 when out of range. */
int ag_axis(int axis, int ndim);
/* Shape "[a,b,c]" into buf. */
const char *ag_dims_str(int ndim, const int64_t *shape, char *buf, size_t n);
int ag_is_float(const ag_tensor *t);

#endif
