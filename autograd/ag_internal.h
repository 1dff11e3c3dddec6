/* Private structures of the autograd engine, shared by graph.c and the op files. */
#ifndef EI_AG_INTERNAL_H
#define EI_AG_INTERNAL_H

#include "autograd/autograd.h"
#include "core/ei_error.h"

#include <stddef.h>
#include <stdint.h>

#define AG_MAX_SRC 8 /* ag_concat_n takes at most this many inputs */
/* Elements below which an op runs single-threaded (see EI_KERNELS_PAR_MIN). */
#define AG_PAR_MIN 32768

typedef struct ag_node ag_node;

/* One op: forward computes n->t.data from the sources (returns -1 with ei_error on bad runtime
 * data); backward adds n->t.grad's contribution into the gradient of every source that has one,
 * acquiring it first with ag_grad_acquire. view: the node's data aliases its first source. */
typedef struct {
    const char *name;
    int (*forward)(ag_node *n);
    void (*backward)(ag_node *n);
    int view;
    int no_grad; /* never propagates a gradient (stop_grad) */
} ag_op;

struct ag_node {
    ag_tensor t; /* first member: an ag_tensor * is an ag_node * */
    ag_graph *g;
    const ag_op *op; /* NULL for leaves */
    ag_node *src[AG_MAX_SRC];
    int nsrc;
    int64_t ip[8];       /* integer op params */
    double fp[4];        /* float op params */
    void *scratch;       /* op state kept from forward for backward (arena) */
    void *scratch2;
    size_t bwd_bytes;    /* scratch only the backward needs: finalize allocates it into bwd_scratch
                            when the node takes a gradient, so forward-only graphs never pay for it */
    void *bwd_scratch;
    double aux;          /* op result besides the tensor (cross-entropy count) */
    int bound_data;      /* leaf data points to caller memory */
    int bound_grad;
    int read_only;       /* bound with ag_tensor_bind_const */
    int grad_live;       /* gradient touched in the current backward */
};

typedef struct ag_block ag_block;

struct ag_graph {
    ag_dtype dtype;
    ag_node **nodes;
    int n, cap;
    ag_block *blocks;
    size_t block_size, arena_used;
    int finalized;
    int failed;
    char first_error[512];
};

static inline ag_node *ag_n(ag_tensor *t) { return (ag_node *)t; }
static inline size_t ag_dtype_size(ag_dtype d) {
    return d == AG_F64 ? 8 : d == AG_U8 ? 1 : 4;
}

/* Zeroed, 64-byte aligned memory from the graph's arena (build / finalize time only). */
void *ag_arena_alloc(ag_graph *g, size_t bytes);
/* A new op node of the graph's dtype with the given shape and sources; allocates its data unless
 * the op is a view. NULL (and the graph marked failed) on error. */
ag_node *ag_node_new(ag_graph *g, const ag_op *op, int ndim, const int64_t *shape, int nsrc, ag_tensor *const *src);
/* Records a build failure: sets ei_error, remembers the first message, returns NULL. */
void *ag_fail(ag_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The gradient buffer of a source, zeroed on first touch in this backward (leaves: never zeroed,
 * they accumulate). NULL if the source takes no gradient. */
void *ag_grad_acquire(ag_node *src);
/* The same for a caller that overwrites the whole buffer when *fresh is set (first touch of an op
 * node's gradient in this backward: not zeroed, e.g. a GEMM with beta 0) and adds otherwise. */
void *ag_grad_acquire_overwrite(ag_node *src, int *fresh);
/* Checks common to every op constructor: graph finalized, sources non-NULL and of this graph.
 * Returns 0 when the op may be built; -1 when it must return NULL (message set if needed). */
int ag_check_srcs(ag_graph *g, const char *op, int nsrc, ag_tensor *const *src);
/* Normalises a possibly negative axis; -1 when out of range. */
int ag_axis(int axis, int ndim);
/* Shape "[a,b,c]" into buf. */
const char *ag_dims_str(int ndim, const int64_t *shape, char *buf, size_t n);
int ag_is_float(const ag_tensor *t);

#endif
