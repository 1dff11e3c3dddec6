/* Graph, arena, leaves and the forward / backward drivers. Op implementations live in ops_*.c. */
#include "autograd/ag_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ag_block {
    ag_block *next;
    size_t size, used;
    unsigned char *mem;
};

#define AG_ALIGN 64

/* Freed arena blocks are kept for the next graph (up to AG_POOL_BYTES): a training loop frees
 * and rebuilds segment graphs of a few plans per document, and fresh memory costs a page fault
 * per 4 KiB on first touch, which measured more than the rebuild itself. Sanitizer builds free
 * blocks at once so use-after-free of a graph's memory is still caught; they have no pool arrays
 * at all (zero-length ones draw array-bounds warnings from gcc 12 at -O2 and above). */
#if defined(__SANITIZE_ADDRESS__)
#define AG_NO_POOL 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AG_NO_POOL 1
#endif
#endif

#ifdef AG_NO_POOL
static unsigned char *pool_take(size_t sz, size_t *got) { return NULL; }
static void pool_give(unsigned char *m, size_t sz) { free(m); }
#else
#define AG_POOL_BLOCKS 64
#define AG_POOL_BYTES ((size_t)64 << 20)

static struct {
    pthread_mutex_t mu;
    unsigned char *mem[AG_POOL_BLOCKS];
    size_t size[AG_POOL_BLOCKS];
    int n;
    size_t bytes;
} pool = {PTHREAD_MUTEX_INITIALIZER, {0}, {0}, 0, 0};

/* A pooled block of at least sz bytes (and at most twice that, so a small request does not pin a
 * large block), or NULL. *got receives its size. */
static unsigned char *pool_take(size_t sz, size_t *got) {
    unsigned char *m = NULL;
    pthread_mutex_lock(&pool.mu);
    int best = -1;
    for (int i = 0; i < pool.n; i++)
        if (pool.size[i] >= sz && pool.size[i] / 2 <= sz && (best < 0 || pool.size[i] < pool.size[best])) best = i;
    if (best >= 0) {
        m = pool.mem[best];
        *got = pool.size[best];
        pool.bytes -= pool.size[best];
        pool.mem[best] = pool.mem[--pool.n];
        pool.size[best] = pool.size[pool.n];
    }
    pthread_mutex_unlock(&pool.mu);
    return m;
}

static void pool_give(unsigned char *m, size_t sz) {
    pthread_mutex_lock(&pool.mu);
    if (pool.n < AG_POOL_BLOCKS && pool.bytes + sz <= AG_POOL_BYTES) {
        pool.mem[pool.n] = m;
        pool.size[pool.n++] = sz;
        pool.bytes += sz;
        m = NULL;
    }
    pthread_mutex_unlock(&pool.mu);
    free(m);
}
#endif

/* zero = 0 leaves the bytes as they are: for op outputs, which every forward writes in full. */
static void *arena_alloc(ag_graph *g, size_t bytes, int zero) {
    bytes = (bytes + AG_ALIGN - 1) & ~(size_t)(AG_ALIGN - 1);
    if (bytes == 0) bytes = AG_ALIGN;
    ag_block *b = g->blocks;
    if (!b || b->size - b->used < bytes) {
        size_t sz = bytes > g->block_size ? bytes : g->block_size;
        b = calloc(1, sizeof *b);
        if (!b) return NULL;
        size_t got = sz;
        b->mem = pool_take(sz, &got);
        if (!b->mem) b->mem = aligned_alloc(AG_ALIGN, sz);
        if (!b->mem) {
            free(b);
            return NULL;
        }
        b->size = got;
        b->next = g->blocks;
        g->blocks = b;
    }
    void *p = b->mem + b->used;
    b->used += bytes;
    g->arena_used += bytes;
    if (zero) memset(p, 0, bytes);
    return p;
}

void *ag_arena_alloc(ag_graph *g, size_t bytes) { return arena_alloc(g, bytes, 1); }

/* Formatted into a local buffer first: callers may pass ei_error_get() itself as an argument
 * (re-recording a pending message), and ei_error_vset would then read the buffer it writes. */
static void graph_vfail(ag_graph *g, const char *fmt, va_list ap) {
    char msg[AG_ERROR_CAP];
    vsnprintf(msg, sizeof msg, fmt, ap);
    ei_error_set("%s", msg);
    if (g && !g->failed) {
        g->failed = 1;
        memcpy(g->first_error, msg, sizeof msg);
    }
}

void *ag_fail(ag_graph *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    graph_vfail(g, fmt, ap);
    va_end(ap);
    return NULL;
}

int ag_graph_fail(ag_graph *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    graph_vfail(g, fmt, ap);
    va_end(ap);
    return -1;
}

const char *ag_graph_error(const ag_graph *g) { return g && g->failed ? g->first_error : NULL; }

const char *ag_dims_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "[");
    for (int i = 0; i < ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (off < n) snprintf(buf + off, n - off, "]");
    return buf;
}

const char *ag_shape_str(const ag_tensor *t, char *buf, size_t n) { return ag_dims_str(t->ndim, t->shape, buf, n); }

int ag_is_float(const ag_tensor *t) { return t->dtype == AG_F32 || t->dtype == AG_F64; }

int ag_axis(int axis, int ndim) {
    if (axis < 0) axis += ndim;
    return axis < 0 || axis >= ndim ? -1 : axis;
}

/* ------------------------------------------------------------------ graph */

ag_graph *ag_graph_new(ag_dtype dtype, size_t arena_bytes_hint) {
    if (dtype != AG_F32 && dtype != AG_F64) {
        ei_error_set("ag_graph_new: dtype must be AG_F32 or AG_F64");
        return NULL;
    }
    ag_graph *g = calloc(1, sizeof *g);
    if (!g) {
        ei_error_set("ag_graph_new: out of memory");
        return NULL;
    }
    g->dtype = dtype;
    g->block_size = arena_bytes_hint ? arena_bytes_hint : (size_t)1 << 20;
    return g;
}

void ag_graph_free(ag_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) free(g->nodes[i]);
    free(g->nodes);
    for (ag_block *b = g->blocks, *nx; b; b = nx) {
        nx = b->next;
        pool_give(b->mem, b->size);
        free(b);
    }
    free(g);
}

ag_dtype ag_graph_dtype(const ag_graph *g) { return g->dtype; }
size_t ag_graph_arena_bytes(const ag_graph *g) { return g->arena_used; }
int ag_graph_node_count(const ag_graph *g) { return g->n; }
ag_tensor *ag_graph_node(const ag_graph *g, int id) { return id >= 0 && id < g->n ? &g->nodes[id]->t : NULL; }

static ag_node *node_alloc(ag_graph *g, ag_dtype dtype, ag_kind kind, int ndim, const int64_t *shape,
                           const char *what) {
    char buf[96];
    if (g->finalized) return ag_fail(g, "%s: graph is already finalized (build everything before forward)", what);
    if (ndim < 1 || ndim > AG_MAX_DIMS || !shape) return ag_fail(g, "%s: rank %d not in 1..%d", what, ndim, AG_MAX_DIMS);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1 || shape[i] > ((int64_t)1 << 40))
            return ag_fail(g, "%s: bad shape %s", what, ag_dims_str(ndim, shape, buf, sizeof buf));
        numel *= shape[i];
        if (numel > ((int64_t)1 << 40)) return ag_fail(g, "%s: shape %s too large", what, ag_dims_str(ndim, shape, buf, sizeof buf));
    }
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        ag_node **nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return ag_fail(g, "%s: out of memory", what);
        g->nodes = nn;
        g->cap = cap;
    }
    ag_node *n = calloc(1, sizeof *n);
    if (!n) return ag_fail(g, "%s: out of memory", what);
    n->g = g;
    n->t.dtype = dtype;
    n->t.kind = kind;
    n->t.ndim = ndim;
    for (int i = 0; i < AG_MAX_DIMS; i++) n->t.shape[i] = i < ndim ? shape[i] : 1;
    n->t.numel = numel;
    n->t.id = g->n;
    g->nodes[g->n++] = n;
    return n;
}

int ag_check_srcs(ag_graph *g, const ag_op *op, int nsrc, ag_tensor *const *src) {
    const char *name = ag_op_name(op->kind);
    if (!g) return ei_error_set("%s: graph is NULL", name);
    for (int i = 0; i < nsrc; i++) {
        if (!src[i]) {
            /* On a failed graph the NULL is that failure propagating and its message stands.
             * Otherwise it comes from code that reported through ei_error alone (or not at all):
             * the graph's first cause must still carry that message, not just name this op. */
            if (!g->failed) {
                const char *last = ei_error_get();
                if (last[0])
                    ag_fail(g, "%s: source %d is NULL (last error: %s)", name, i, last);
                else
                    ag_fail(g, "%s: source %d is NULL", name, i);
            }
            return -1;
        }
        if (ag_n(src[i])->g != g) {
            ag_fail(g, "%s: source %d belongs to another graph", name, i);
            return -1;
        }
    }
    if (g->finalized) {
        ag_fail(g, "%s: graph is already finalized (build everything before forward)", name);
        return -1;
    }
    return 0;
}

ag_node *ag_node_new(ag_graph *g, const ag_op *op, int ndim, const int64_t *shape, int nsrc, ag_tensor *const *src) {
    const char *name = ag_op_name(op->kind);
    /* views keep their source's dtype (a reshaped id tensor stays int32) */
    ag_node *n = node_alloc(g, op->view ? src[0]->dtype : g->dtype, AG_NODE_OP, ndim, shape, name);
    if (!n) return NULL;
    n->op = op;
    n->p.kind = op->kind;
    n->nsrc = nsrc;
    for (int i = 0; i < nsrc; i++) n->src[i] = ag_n(src[i]);
    if (op->view) {
        n->t.data = src[0]->data;
    } else {
        n->t.data = arena_alloc(g, (size_t)n->t.numel * ag_dtype_size(g->dtype), 0);
        if (!n->t.data) return ag_fail(g, "%s: out of memory for [%lld] values", name, (long long)n->t.numel);
    }
    return n;
}

/* ------------------------------------------------------------------ walking */

static const char *const op_names[AG_OP_COUNT] = {
    [AG_OP_NONE] = "leaf",
    [AG_OP_MATMUL] = "matmul",
    [AG_OP_LINEAR] = "linear",
    [AG_OP_ADD] = "add",
    [AG_OP_SUB] = "sub",
    [AG_OP_MUL] = "mul",
    [AG_OP_DIV] = "div",
    [AG_OP_SCALE] = "scale",
    [AG_OP_ADD_SCALAR] = "add_scalar",
    [AG_OP_SUM] = "sum",
    [AG_OP_MEAN] = "mean",
    [AG_OP_SUM_ALL] = "sum_all",
    [AG_OP_SILU] = "silu",
    [AG_OP_SIGMOID] = "sigmoid",
    [AG_OP_ELU1] = "elu1",
    [AG_OP_EXP] = "exp",
    [AG_OP_SWIGLU] = "swiglu",
    [AG_OP_SOFTMAX] = "softmax",
    [AG_OP_STOP_GRAD] = "stop_grad",
    [AG_OP_RMSNORM] = "rmsnorm",
    [AG_OP_ROPE] = "rope",
    [AG_OP_ATTENTION] = "attention",
    [AG_OP_EMBEDDING] = "embedding",
    [AG_OP_CONCAT] = "concat",
    [AG_OP_SLICE] = "slice",
    [AG_OP_RESHAPE] = "reshape",
    [AG_OP_TRANSPOSE] = "transpose",
    [AG_OP_CROSS_ENTROPY] = "cross_entropy",
    [AG_OP_LINEAR_CE] = "linear_cross_entropy",
};

const char *ag_op_name(ag_op_kind kind) { return (unsigned)kind < AG_OP_COUNT ? op_names[kind] : NULL; }

static const ag_node *op_node(const ag_tensor *t) {
    return t && ((const ag_node *)t)->op ? (const ag_node *)t : NULL;
}

ag_op_kind ag_tensor_op(const ag_tensor *t) {
    const ag_node *n = op_node(t);
    return n ? n->op->kind : AG_OP_NONE;
}

int ag_tensor_n_src(const ag_tensor *t) {
    const ag_node *n = op_node(t);
    return n ? n->nsrc : 0;
}

ag_tensor *ag_tensor_src(const ag_tensor *t, int i) {
    const ag_node *n = op_node(t);
    return n && i >= 0 && i < n->nsrc ? &n->src[i]->t : NULL;
}

const ag_op_params *ag_tensor_params(const ag_tensor *t) {
    const ag_node *n = op_node(t);
    return n ? &n->p : NULL;
}

/* ------------------------------------------------------------------ leaves */

static ag_tensor *leaf_new(ag_graph *g, ag_dtype dt, ag_kind kind, int ndim, const int64_t *shape, const char *what) {
    if (!g) {
        ei_error_set("%s: graph is NULL", what);
        return NULL;
    }
    ag_node *n = node_alloc(g, dt, kind, ndim, shape, what);
    return n ? &n->t : NULL;
}

ag_tensor *ag_input(ag_graph *g, int ndim, const int64_t *shape) {
    return leaf_new(g, g ? g->dtype : AG_F32, AG_LEAF_INPUT, ndim, shape, "ag_input");
}
ag_tensor *ag_param(ag_graph *g, int ndim, const int64_t *shape) {
    ag_tensor *t = leaf_new(g, g ? g->dtype : AG_F32, AG_LEAF_PARAM, ndim, shape, "ag_param");
    if (t) t->requires_grad = 1;
    return t;
}
ag_tensor *ag_const(ag_graph *g, int ndim, const int64_t *shape) {
    return leaf_new(g, g ? g->dtype : AG_F32, AG_LEAF_CONST, ndim, shape, "ag_const");
}
ag_tensor *ag_input_i32(ag_graph *g, int ndim, const int64_t *shape) {
    return leaf_new(g, AG_I32, AG_LEAF_INPUT, ndim, shape, "ag_input_i32");
}
ag_tensor *ag_input_u8(ag_graph *g, int ndim, const int64_t *shape) {
    return leaf_new(g, AG_U8, AG_LEAF_INPUT, ndim, shape, "ag_input_u8");
}

int ag_tensor_set_requires_grad(ag_tensor *t, int on) {
    if (!t) return ei_error_set("ag_tensor_set_requires_grad: tensor is NULL");
    ag_node *n = ag_n(t);
    if (t->kind != AG_LEAF_INPUT || !ag_is_float(t))
        return ei_error_set("ag_tensor_set_requires_grad: only float inputs can require a gradient");
    if (n->g->finalized) return ei_error_set("ag_tensor_set_requires_grad: graph is already finalized");
    t->requires_grad = on ? 1 : 0;
    return 0;
}

int ag_tensor_bind(ag_tensor *t, void *data, void *grad) {
    if (!t) return ei_error_set("ag_tensor_bind: tensor is NULL");
    ag_node *n = ag_n(t);
    if (t->kind == AG_NODE_OP) return ei_error_set("ag_tensor_bind: only leaves can be bound (node %d is an op)", t->id);
    if (grad && !t->requires_grad)
        return ei_error_set("ag_tensor_bind: node %d takes no gradient (only params and requires-grad inputs)", t->id);
    if (data) {
        t->data = data;
        n->bound_data = 1;
        n->read_only = 0;
    }
    if (grad) {
        t->grad = grad;
        n->bound_grad = 1;
    }
    return 0;
}

int ag_tensor_bind_const(ag_tensor *t, const void *data) {
    if (!t || !data) return ei_error_set("ag_tensor_bind_const: tensor or data is NULL");
    if (t->kind != AG_LEAF_CONST) return ei_error_set("ag_tensor_bind_const: node %d is not a const leaf", t->id);
    /* The engine never writes const data, so dropping the qualifier is safe here. */
    t->data = (void *)(uintptr_t)data;
    ag_n(t)->bound_data = 1;
    ag_n(t)->read_only = 1;
    return 0;
}

void ag_tensor_set_name(ag_tensor *t, const char *name) {
    if (t) t->name = name;
}

void *ag_tensor_data(ag_tensor *t) {
    if (!t) return NULL;
    ag_node *n = ag_n(t);
    if (n->op && n->op->view) {
        ag_tensor_data(&n->src[0]->t);
        t->data = ag_view_data(n);
    }
    if (!t->data && !n->op) {
        t->data = ag_arena_alloc(n->g, (size_t)t->numel * ag_dtype_size(t->dtype));
        if (!t->data) ei_error_set("ag_tensor_data: out of memory");
    }
    return t->data;
}

int ag_tensor_set(ag_tensor *t, const void *src, ag_dtype sd) {
    if (!t || !src) return ei_error_set("ag_tensor_set: tensor or source is NULL");
    if (ag_n(t)->read_only) return ei_error_set("ag_tensor_set: node %d is bound to read-only memory", t->id);
    void *d = ag_tensor_data(t);
    if (!d) return -1;
    const int64_t n = t->numel;
    if (!ag_is_float(t) || (sd != AG_F32 && sd != AG_F64)) {
        if (sd != t->dtype) return ei_error_set("ag_tensor_set: source dtype does not match node %d", t->id);
        memcpy(d, src, (size_t)n * ag_dtype_size(sd));
        return 0;
    }
    if (t->dtype == sd) {
        memcpy(d, src, (size_t)n * ag_dtype_size(sd));
    } else if (t->dtype == AG_F64) {
        const float *s = src;
        double *o = d;
        for (int64_t i = 0; i < n; i++) o[i] = s[i];
    } else {
        const double *s = src;
        float *o = d;
        for (int64_t i = 0; i < n; i++) o[i] = (float)s[i];
    }
    return 0;
}

int ag_tensor_set_f32(ag_tensor *t, const float *src) { return ag_tensor_set(t, src, AG_F32); }
int ag_tensor_set_f64(ag_tensor *t, const double *src) { return ag_tensor_set(t, src, AG_F64); }

static int copy_out(const ag_tensor *t, const void *buf, void *dst, ag_dtype dd, const char *what) {
    if (!t || !dst) return ei_error_set("%s: tensor or destination is NULL", what);
    if (!buf) return ei_error_set("%s: node %d has no such buffer", what, t->id);
    const int64_t n = t->numel;
    if (t->dtype == dd) {
        memcpy(dst, buf, (size_t)n * ag_dtype_size(dd));
        return 0;
    }
    if (dd != AG_F32 && dd != AG_F64) return ei_error_set("%s: destination dtype must be AG_F32 or AG_F64", what);
    for (int64_t i = 0; i < n; i++) {
        double v;
        switch (t->dtype) {
        case AG_F32: v = ((const float *)buf)[i]; break;
        case AG_F64: v = ((const double *)buf)[i]; break;
        case AG_I32: v = ((const int32_t *)buf)[i]; break;
        default: v = ((const uint8_t *)buf)[i]; break;
        }
        if (dd == AG_F32)
            ((float *)dst)[i] = (float)v;
        else
            ((double *)dst)[i] = v;
    }
    return 0;
}

int ag_tensor_get(const ag_tensor *t, void *dst, ag_dtype dd) {
    return copy_out(t, t ? t->data : NULL, dst, dd, "ag_tensor_get");
}
int ag_tensor_get_grad(const ag_tensor *t, void *dst, ag_dtype dd) {
    return copy_out(t, t ? t->grad : NULL, dst, dd, "ag_tensor_get_grad");
}

static double at(const void *buf, ag_dtype dt, int64_t i) {
    switch (dt) {
    case AG_F32: return ((const float *)buf)[i];
    case AG_F64: return ((const double *)buf)[i];
    case AG_I32: return ((const int32_t *)buf)[i];
    default: return ((const uint8_t *)buf)[i];
    }
}

double ag_tensor_at(const ag_tensor *t, int64_t i) {
    return t && t->data && i >= 0 && i < t->numel ? at(t->data, t->dtype, i) : NAN;
}
double ag_tensor_grad_at(const ag_tensor *t, int64_t i) {
    return t && t->grad && i >= 0 && i < t->numel ? at(t->grad, t->dtype, i) : 0.0;
}

void ag_tensor_zero_grad(ag_tensor *t) {
    if (t && t->grad) memset(t->grad, 0, (size_t)t->numel * ag_dtype_size(t->dtype));
}

/* ------------------------------------------------------------------ execution */

/* ------------------------------------------------------------------ shared gradient memory */

struct ag_grad_pool {
    unsigned char *mem;
    size_t size;
};

ag_grad_pool *ag_grad_pool_new(void) {
    ag_grad_pool *p = calloc(1, sizeof *p);
    if (!p) ei_error_set("ag_grad_pool_new: out of memory");
    return p;
}

void ag_grad_pool_free(ag_grad_pool *p) {
    if (!p) return;
    free(p->mem);
    free(p);
}

size_t ag_grad_pool_bytes(const ag_grad_pool *p) { return p ? p->size : 0; }

int ag_graph_share_grads(ag_graph *g, ag_grad_pool *p) {
    if (!g || !p) return ei_error_set("ag_graph_share_grads: graph or pool is NULL");
    if (g->finalized) return ei_error_set("ag_graph_share_grads: graph is already finalized");
    g->gpool = p;
    return 0;
}

/* Old contents need not survive a move: nothing in the pool is live between backward passes. */
static int pool_reserve(ag_grad_pool *p, size_t bytes) {
    if (bytes <= p->size) return 0;
    unsigned char *m = aligned_alloc(AG_ALIGN, bytes);
    if (!m) return ei_error_set("ag_graph_finalize: out of memory for %zu bytes of shared gradients", bytes);
    free(p->mem);
    p->mem = m;
    p->size = bytes;
    return 0;
}

/* Points the pooled buffers of g into its pool (which another graph's finalize may have moved). */
static void pool_bind(ag_graph *g) {
    for (int i = 0; i < g->n; i++) {
        ag_node *n = g->nodes[i];
        if (!n->op) continue;
        if (n->t.requires_grad) n->t.grad = g->gpool->mem + n->grad_off;
        if (n->t.requires_grad && n->bwd_shared && n->bwd_bytes) n->bwd_scratch = g->gpool->mem + n->bwd_off;
    }
}

int ag_graph_mark_output(ag_graph *g, ag_tensor *t) {
    if (!g || !t || ag_n(t)->g != g) return ei_error_set("ag_graph_mark_output: graph or tensor is NULL or foreign");
    ag_node *n = ag_n(t);
    if (g->finalized && !n->may_seed && n->op)
        return ei_error_set("ag_graph_mark_output: graph is already finalized (node %d)", t->id);
    n->may_seed = 1;
    return 0;
}

/* Offsets are planned by replaying the reverse sweep, so two buffers share bytes only when no
 * backward can see both. A free list of (off, len) sorted by offset whose last entry is the
 * unbounded space past everything handed out (len SIZE_MAX); first fit, coalescing on release. */
typedef struct {
    size_t off, len;
} pool_span;

typedef struct {
    pool_span *fl;
    int nfl;
    size_t peak;
} pool_plan_state;

static size_t pool_round(size_t bytes) { return (bytes + AG_ALIGN - 1) & ~(size_t)(AG_ALIGN - 1); }

static size_t plan_take(pool_plan_state *st, size_t bytes) {
    const size_t len = pool_round(bytes);
    int k = 0;
    while (st->fl[k].len < len) k++; /* the unbounded tail always fits */
    const size_t off = st->fl[k].off;
    st->fl[k].off += len;
    if (st->fl[k].len != SIZE_MAX && (st->fl[k].len -= len) == 0) {
        memmove(st->fl + k, st->fl + k + 1, (size_t)(st->nfl - k - 1) * sizeof *st->fl);
        st->nfl--;
    }
    if (off + len > st->peak) st->peak = off + len;
    return off;
}

static void plan_give(pool_plan_state *st, size_t off, size_t bytes) {
    const size_t len = pool_round(bytes);
    int k = 0;
    while (st->fl[k].off < off) k++; /* stops at the latest at the tail, which starts past every block */
    const int left = k > 0 && st->fl[k - 1].off + st->fl[k - 1].len == off;
    const int right = off + len == st->fl[k].off;
    if (left && right) {
        st->fl[k - 1].len = st->fl[k].len == SIZE_MAX ? SIZE_MAX : st->fl[k - 1].len + len + st->fl[k].len;
        memmove(st->fl + k, st->fl + k + 1, (size_t)(st->nfl - k - 1) * sizeof *st->fl);
        st->nfl--;
    } else if (left) {
        st->fl[k - 1].len += len;
    } else if (right) {
        st->fl[k].off = off;
        if (st->fl[k].len != SIZE_MAX) st->fl[k].len += len;
    } else {
        memmove(st->fl + k + 1, st->fl + k, (size_t)(st->nfl - k) * sizeof *st->fl);
        st->fl[k] = (pool_span){off, len};
        st->nfl++;
    }
}

static int pooled_grad(const ag_node *n) { return n->op && n->t.requires_grad; }

/* A reshape whose source has no other consumer taking a gradient can hand that source its own
 * gradient buffer: the bytes are the same in either shape, so its backward copies nothing (a
 * 16-segment training chunk has 1,236 such copies per backward: 0.03 s of a 2K-token step, 0.29 s
 * of an 8K one). Chains of reshapes share one buffer. */
static int grad_alias_ok(const ag_node *n, const int *consumers) {
    const ag_node *src = n->src[0];
    return n->op->kind == AG_OP_RESHAPE && pooled_grad(src) && !src->may_seed &&
           consumers[src->t.id] == 1;
}

/* Lifetimes in sweep time: a pooled gradient is first written by the backward of its highest
 * consumer (every backward only touches its own gradient and its direct sources', see ops_*.c),
 * or by seed_add before the sweep when the node may be an output, and last read by its own
 * backward. A shared backward scratch lives inside its node's backward only. Sets grad_off /
 * bwd_off and g->pool_need (the peak). */
static int pool_plan(ag_graph *g) {
    const size_t es = ag_dtype_size(g->dtype);
    int *last = malloc((size_t)(g->n ? g->n : 1) * sizeof *last);
    int *consumers = malloc((size_t)(g->n ? g->n : 1) * sizeof *consumers);
    /* live blocks never exceed the pooled nodes plus one scratch, and free spans the live blocks + 1 */
    pool_plan_state st = {malloc(((size_t)g->n + 4) * sizeof(pool_span)), 1, 0};
    if (!last || !consumers || !st.fl) {
        free(last);
        free(consumers);
        free(st.fl);
        return ei_error_set("ag_graph_finalize: out of memory planning shared gradients");
    }
    st.fl[0] = (pool_span){0, SIZE_MAX};
    for (int i = 0; i < g->n; i++) last[i] = -1, consumers[i] = 0;
    for (int j = 0; j < g->n; j++)
        if (pooled_grad(g->nodes[j]))
            for (int s = 0; s < g->nodes[j]->nsrc; s++) {
                last[g->nodes[j]->src[s]->t.id] = j;
                consumers[g->nodes[j]->src[s]->t.id]++;
            }
    for (int i = 0; i < g->n; i++) {
        ag_node *n = g->nodes[i];
        if (!pooled_grad(n)) continue;
        if (last[i] < 0) n->may_seed = 1; /* nothing propagates into it: only a seed can reach it */
        if (n->may_seed) n->grad_off = plan_take(&st, (size_t)n->t.numel * es);
    }
    for (int j = g->n - 1; j >= 0; j--) {
        ag_node *n = g->nodes[j];
        if (!pooled_grad(n)) continue;
        n->grad_alias = grad_alias_ok(n, consumers);
        if (n->grad_alias) { /* the block passes to the source, which gives it back in its turn */
            n->src[0]->grad_off = n->grad_off;
            last[n->src[0]->t.id] = -2;
            continue;
        }
        for (int s = 0; s < n->nsrc; s++) {
            ag_node *src = n->src[s];
            if (!pooled_grad(src) || src->may_seed || last[src->t.id] != j) continue;
            src->grad_off = plan_take(&st, (size_t)src->t.numel * es);
            last[src->t.id] = -2; /* a source repeated in this node is placed once */
        }
        if (n->bwd_shared && n->bwd_bytes) {
            n->bwd_off = plan_take(&st, n->bwd_bytes);
            plan_give(&st, n->bwd_off, n->bwd_bytes);
        }
        plan_give(&st, n->grad_off, (size_t)n->t.numel * es);
    }
    g->pool_need = st.peak;
    free(last);
    free(consumers);
    free(st.fl);
    return 0;
}

static int prof_on(void);

/* EI_AG_PROFILE: what the forward activations of a large graph (over 64 MiB of arena) are, by op
 * kind, printed when it is finalized: the memory side of the per-op times. */
static void arena_profile(const ag_graph *g) {
    if (g->arena_used < ((size_t)64 << 20) || !prof_on()) return;
    double by[AG_OP_COUNT] = {0};
    const size_t es = ag_dtype_size(g->dtype);
    for (int i = 0; i < g->n; i++) {
        const ag_node *n = g->nodes[i];
        if (!n->op) continue;
        double b = n->op->view ? 0 : (double)n->t.numel * (double)es;
        if (n->bwd_scratch && !(g->gpool && n->bwd_shared)) b += (double)n->bwd_bytes;
        if (n->keep) b += (double)n->keep_bytes;
        by[n->op->kind] += b;
    }
    fprintf(stderr, "EI_AG_PROFILE graph of %d nodes: arena %.1f MiB; outputs and backward scratch by op (MiB):",
            g->n, (double)g->arena_used / 1048576.0);
    for (int k = 0; k < AG_OP_COUNT; k++)
        if (by[k] > 0) fprintf(stderr, " %s %.1f", ag_op_name((ag_op_kind)k), by[k] / 1048576.0);
    fputc('\n', stderr);
}

int ag_graph_finalize(ag_graph *g) {
    if (!g) return ei_error_set("ag_graph_finalize: graph is NULL");
    if (g->failed) return ei_error_set("%s", g->first_error);
    if (g->finalized) return 0;
    const size_t es = ag_dtype_size(g->dtype);
    for (int i = 0; i < g->n; i++) {
        ag_node *n = g->nodes[i];
        if (n->op) {
            int rg = 0;
            if (!n->op->no_grad)
                for (int s = 0; s < n->nsrc; s++) rg |= n->src[s]->t.requires_grad;
            n->t.requires_grad = rg;
        } else {
            if (!n->t.data && !ag_tensor_data(&n->t)) return -1;
        }
        if (n->op && n->op->view) n->t.data = ag_view_data(n);
        if (n->t.requires_grad && !n->t.grad && !(n->op && g->gpool)) {
            n->t.grad = ag_arena_alloc(g, (size_t)n->t.numel * es);
            if (!n->t.grad) return ei_error_set("ag_graph_finalize: out of memory for gradients");
        }
        if (n->t.requires_grad && n->keep_bytes && !n->keep) {
            n->keep = ag_arena_alloc(g, n->keep_bytes);
            if (!n->keep) return ei_error_set("ag_graph_finalize: out of memory for saved forward values");
        }
        if (n->t.requires_grad && n->bwd_bytes && !n->bwd_scratch && !(g->gpool && n->bwd_shared)) {
            n->bwd_scratch = ag_arena_alloc(g, n->bwd_bytes);
            if (!n->bwd_scratch) return ei_error_set("ag_graph_finalize: out of memory for backward scratch");
        }
    }
    if (g->gpool) {
        if (pool_plan(g) != 0 || pool_reserve(g->gpool, g->pool_need) != 0) return -1;
        pool_bind(g);
    }
    g->finalized = 1;
    arena_profile(g);
    return 0;
}

/* EI_AG_PROFILE=1: wall time per op kind, forward and backward, printed to stderr by
 * ag_profile_flush (the trainer: every step) and at exit (the non-GEMM share of a training step
 * that a sampling profile spreads over libgomp and kernels). */
static struct {
    int on; /* -1 unread */
    double fwd[AG_OP_COUNT], bwd[AG_OP_COUNT];
    long nf[AG_OP_COUNT], nb[AG_OP_COUNT];
} prof = {-1, {0}, {0}, {0}, {0}};

static double prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void prof_print(void);

void ag_profile_flush(const char *label) {
    if (prof.on <= 0) return;
    if (label) fprintf(stderr, "EI_AG_PROFILE %s\n", label);
    prof_print();
    memset(prof.fwd, 0, sizeof prof.fwd);
    memset(prof.bwd, 0, sizeof prof.bwd);
    memset(prof.nf, 0, sizeof prof.nf);
    memset(prof.nb, 0, sizeof prof.nb);
}

static void prof_print(void) {
    double tot = 0;
    for (int k = 0; k < AG_OP_COUNT; k++) tot += prof.fwd[k] + prof.bwd[k];
    fprintf(stderr, "EI_AG_PROFILE: %.3f s in ops\n%-22s %10s %6s %10s %6s %8s %8s\n", tot, "op", "fwd s", "%", "bwd s",
            "%", "fwd n", "bwd n");
    for (int k = 0; k < AG_OP_COUNT; k++)
        if (prof.nf[k] || prof.nb[k])
            fprintf(stderr, "%-22s %10.3f %6.1f %10.3f %6.1f %8ld %8ld\n", ag_op_name((ag_op_kind)k), prof.fwd[k],
                    tot > 0 ? 100 * prof.fwd[k] / tot : 0, prof.bwd[k], tot > 0 ? 100 * prof.bwd[k] / tot : 0,
                    prof.nf[k], prof.nb[k]);
}

static int prof_on(void) {
    if (prof.on < 0) {
        const char *v = getenv("EI_AG_PROFILE");
        prof.on = v && *v && strcmp(v, "0") != 0;
        if (prof.on) atexit(prof_print);
    }
    return prof.on;
}

int ag_graph_forward(ag_graph *g) {
    if (ag_graph_finalize(g)) return -1;
    prof_on();
    for (int i = 0; i < g->n; i++) {
        ag_node *n = g->nodes[i];
        if (!n->op) continue;
        if (n->op->view) {
            n->t.data = ag_view_data(n);
            continue;
        }
        const double t0 = prof.on > 0 ? prof_now() : 0;
        const int frc = n->op->forward(n);
        if (prof.on > 0) {
            prof.fwd[n->op->kind] += prof_now() - t0;
            prof.nf[n->op->kind]++;
        }
        if (frc) {
            ei_error_prefix("forward, node %d (%s%s%s): ", n->t.id, ag_op_name(n->op->kind), n->t.name ? " " : "",
                            n->t.name ? n->t.name : "");
            return -1;
        }
    }
    return 0;
}

void *ag_grad_acquire(ag_node *s) {
    if (!s->t.grad) return NULL;
    if (!s->grad_live) {
        if (s->op) memset(s->t.grad, 0, (size_t)s->t.numel * ag_dtype_size(s->t.dtype));
        s->grad_live = 1;
    }
    return s->t.grad;
}

void *ag_grad_acquire_overwrite(ag_node *s, int *fresh) {
    *fresh = 0;
    if (!s->t.grad) return NULL;
    if (!s->grad_live) {
        *fresh = s->op != NULL; /* leaves accumulate across backward calls */
        s->grad_live = 1;
    }
    return s->t.grad;
}

/* Reverse sweep over the nodes whose gradient was touched (seeded or propagated into). */
static void sweep(ag_graph *g) {
    for (int i = g->n - 1; i >= 0; i--) {
        ag_node *n = g->nodes[i];
        if (n->op && n->grad_live && n->op->backward && !n->op->no_grad) {
            const double t0 = prof.on > 0 ? prof_now() : 0;
            n->op->backward(n);
            if (prof.on > 0) {
                prof.bwd[n->op->kind] += prof_now() - t0;
                prof.nb[n->op->kind]++;
            }
        }
    }
}

/* Adds numel copies of seed (sd NULL) or the buffer sd to t's gradient. */
static void seed_add(ag_graph *g, ag_tensor *t, const void *sd, double seed) {
    void *gp = ag_grad_acquire(ag_n(t));
    if (g->dtype == AG_F32) {
        float *o = gp;
        for (int64_t i = 0; i < t->numel; i++) o[i] += sd ? ((const float *)sd)[i] : (float)seed;
    } else {
        double *o = gp;
        for (int64_t i = 0; i < t->numel; i++) o[i] += sd ? ((const double *)sd)[i] : seed;
    }
}

/* A pooled gradient seeded but planned to come alive later would overlap buffers still in use. */
static int check_seedable(const ag_graph *g, const ag_tensor *t, const char *what) {
    const ag_node *n = ag_n((ag_tensor *)t);
    if (g->gpool && pooled_grad(n) && !n->may_seed)
        return ei_error_set("%s: node %d (%s%s%s) has consumers and was not marked with ag_graph_mark_output before "
                            "finalize, so its shared gradient cannot be seeded",
                            what, t->id, ag_op_name(n->op->kind), t->name ? " " : "", t->name ? t->name : "");
    return 0;
}

int ag_graph_backward(ag_graph *g, int nout, ag_tensor *const *outputs, const void *const *seeds) {
    if (ag_graph_finalize(g)) return -1;
    for (int k = 0; k < nout; k++) {
        if (!outputs || !outputs[k] || ag_n(outputs[k])->g != g)
            return ei_error_set("ag_graph_backward: output %d is NULL or of another graph", k);
        if (check_seedable(g, outputs[k], "ag_graph_backward")) return -1;
    }
    if (g->gpool) pool_bind(g);
    for (int i = 0; i < g->n; i++) g->nodes[i]->grad_live = 0;
    for (int k = 0; k < nout; k++)
        if (outputs[k]->grad) seed_add(g, outputs[k], seeds ? seeds[k] : NULL, 1.0);
    sweep(g);
    return 0;
}

int ag_graph_backward_scalar(ag_graph *g, ag_tensor *loss, double seed) {
    if (!g || !loss || ag_n(loss)->g != g) return ei_error_set("ag_graph_backward_scalar: graph or loss is NULL or foreign");
    if (ag_graph_finalize(g) || check_seedable(g, loss, "ag_graph_backward_scalar")) return -1;
    if (g->gpool) pool_bind(g);
    for (int i = 0; i < g->n; i++) g->nodes[i]->grad_live = 0;
    if (loss->grad) seed_add(g, loss, NULL, seed);
    sweep(g);
    return 0;
}

void ag_graph_zero_grads(ag_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++)
        if (!g->nodes[i]->op) ag_tensor_zero_grad(&g->nodes[i]->t);
}
