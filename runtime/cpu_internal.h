/* Internals shared by the files of the cpu backend (cpu_backend.c and cpu_*.c). Not installed. */
#ifndef EI_RUNTIME_CPU_INTERNAL_H
#define EI_RUNTIME_CPU_INTERNAL_H

#include "runtime/backend.h"
#include "runtime/cpu_kern.h"
#include "runtime/graph.h"
#include "runtime/threadpool.h"

#include <stdint.h>

/* Where a tensor's bytes live during execute. */
enum {
    EI_CPU_ST_NONE = 0, /* never materialised (absorbed into a fused step) */
    EI_CPU_ST_CONST,    /* blob + offset */
    EI_CPU_ST_BIND,     /* caller memory (INPUT / OUTPUT) */
    EI_CPU_ST_ARENA,    /* arena + off */
    EI_CPU_ST_VIEW      /* the bytes of tensor root (a RESHAPE) */
};

typedef struct {
    int kind;
    int32_t root; /* EI_CPU_ST_VIEW: the tensor whose bytes these are (never itself a view) */
    uint64_t off; /* EI_CPU_ST_ARENA */
} ei_cpu_tplan;

enum { EI_CPU_FUSE_NONE = 0, EI_CPU_FUSE_RMSNORM, EI_CPU_FUSE_SWIGLU, EI_CPU_FUSE_ROPE, EI_CPU_FUSE_BMM_T, EI_CPU_FUSE_BMM };

/* How a FULLY_CONNECTED runs: float kernels (F32 / F16 weights, I8 weights with a zero point or
 * group scales, and the float fallback for quantised input), Q8 activations (I4 weights with float
 * input), Q8 blocks (I8 weights with one scale per row and float input), integer. */
enum { EI_CPU_QFC_FLOAT = 0, EI_CPU_QFC_Q8, EI_CPU_QFC_Q8B, EI_CPU_QFC_INT };

typedef struct {
    int32_t node;  /* graph node run (fused: the pattern's last node) */
    int32_t first; /* fused: the pattern's first node (for messages); else node */
    int fused;
    int view; /* a RESHAPE turned into a view: nothing to do */
    int32_t n_in, in[EI_G_MAX_IN];
    int32_t out;
    float eps;          /* EI_CPU_FUSE_RMSNORM */
    int32_t bmm;        /* EI_CPU_FUSE_BMM_T, _BMM: the BATCH_MATMUL node (its parameters) */
    int scaled;         /* ... whose result the step multiplies by alpha (a MUL by a constant) */
    float alpha;
    ei_cpu_wmat w;      /* FULLY_CONNECTED: the weight, data resolved at execute when not CONST */
    int qpath;          /* FULLY_CONNECTED: EI_CPU_QFC_* (cpu_ops_qfc.c) */
    int32_t *qmult;     /* EI_CPU_QFC_INT with I8 weights: [2 N] multipliers then shifts (owned) */
    uint64_t scratch;   /* bytes of step scratch this step may use */
} ei_cpu_step;

typedef struct {
    ei_backend base;
    ei_cpu_options opt;
    ei_tp *tp;
    const ei_cpu_kernels *k;
} ei_cpu_backend;

#define EI_CPU_EXEC_MAGIC 0x45494370u /* "EICp" */

typedef struct {
    uint32_t magic;
    ei_cpu_backend *be;
    const ei_graph *g;
    const uint8_t *blob;
    uint64_t blob_size;
    const ei_cpu_kernels *k;
    int nth;
    ei_cpu_tplan *tplan; /* [n_tensors] */
    ei_cpu_step *steps;
    int32_t n_steps;
    uint8_t *arena;
    uint64_t arena_bytes;
    uint8_t *scratch; /* per-step conversions and transposes */
    uint64_t scratch_bytes, scratch_used;
    float *tscratch;  /* per-thread rows: nth x tscratch_n floats */
    int64_t tscratch_n;
    void **ptr; /* [n_tensors]: resolved for the current execute */
    double *prof; /* [n_steps] seconds per step, summed over executes; NULL unless EI_CPU_PROFILE */
    int64_t prof_runs;
} ei_cpu_exec;

/* ---- cpu_backend.c */
/* Runs fn over [0, n) split statically into ranges aligned to align, on at most
 * n / min_chunk threads. */
typedef void (*ei_cpu_range_fn)(void *ctx, int64_t lo, int64_t hi);
void ei_cpu_parallel(ei_cpu_exec *x, int64_t n, int64_t align, int64_t min_chunk, ei_cpu_range_fn fn, void *ctx);
/* Same with the thread id (for per-thread scratch). */
typedef void (*ei_cpu_range_tid_fn)(void *ctx, int tid, int64_t lo, int64_t hi);
void ei_cpu_parallel_tid(ei_cpu_exec *x, int64_t n, int64_t align, int64_t min_chunk, ei_cpu_range_tid_fn fn,
                         void *ctx);
/* ei_error_set with "graph G: node N (OP): " in front; returns -1. */
int ei_cpu_fail(const ei_cpu_exec *x, const ei_cpu_step *s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- cpu_fuse.c: fills steps (one per node, fused patterns collapsed); returns the count. */
int32_t ei_cpu_fuse(const ei_graph *g, const uint8_t *blob, int enable, ei_cpu_step *steps);

/* ---- cpu_plan.c: tensor storage, views and the arena layout; sets x->tplan, x->arena_bytes. */
int ei_cpu_plan(ei_cpu_exec *x);

/* ---- cpu_convert.c */
/* Bytes of step scratch a step may need (conversions of inputs/outputs, transposes). */
uint64_t ei_cpu_step_scratch(const ei_cpu_exec *x, const ei_cpu_step *s);
/* Bump allocation from the step scratch (reset before each step); NULL if exhausted. */
float *ei_cpu_scratch(ei_cpu_exec *x, int64_t nfloats);
/* Whether tensor t reads as float without conversion (F32, no quantisation). */
int ei_cpu_is_f32(const ei_gtensor *t);
/* Tensor t (pointer p) as F32: p itself, or converted into step scratch. NULL if out of scratch. */
const float *ei_cpu_in_f32(ei_cpu_exec *x, int32_t t);
/* Where to compute tensor t as F32: its own storage if F32, else scratch; ei_cpu_out_commit then
 * converts the floats into t's type. */
float *ei_cpu_out_f32(ei_cpu_exec *x, int32_t t);
void ei_cpu_out_commit(ei_cpu_exec *x, int32_t t, const float *f);
/* Element conversions of [i0, i1) of tensor t (type, quantisation) from / to float; the float side
 * is dst[i - i0] / src[i - i0], the typed side indexed by i. */
void ei_cpu_load_f32(const ei_cpu_exec *x, const ei_gtensor *t, const void *src, float *dst, int64_t i0, int64_t i1);
void ei_cpu_store_f32(const ei_gtensor *t, const float *src, void *dst, int64_t i0, int64_t i1);

/* ---- op kernels: 0 or -1 with ei_error set. cpu_ops_elem.c */
int ei_cpu_op_binary(ei_cpu_exec *x, const ei_cpu_step *s);
int ei_cpu_op_unary(ei_cpu_exec *x, const ei_cpu_step *s);
int ei_cpu_op_select(ei_cpu_exec *x, const ei_cpu_step *s);
/* cpu_ops_data.c */
int ei_cpu_op_gather(ei_cpu_exec *x, const ei_cpu_step *s);
int ei_cpu_op_concat(ei_cpu_exec *x, const ei_cpu_step *s);
int ei_cpu_op_slice(ei_cpu_exec *x, const ei_cpu_step *s);
int ei_cpu_op_transpose(ei_cpu_exec *x, const ei_cpu_step *s);
int ei_cpu_op_copy(ei_cpu_exec *x, const ei_cpu_step *s); /* RESHAPE that is not a view */
int ei_cpu_op_convert(ei_cpu_exec *x, const ei_cpu_step *s); /* CAST, QUANTIZE, DEQUANTIZE */
/* cpu_ops_math.c */
int ei_cpu_wmat_init(const ei_graph *g, const uint8_t *blob, int32_t wt, ei_cpu_wmat *w, char *why, int nwhy);
int ei_cpu_op_fc(ei_cpu_exec *x, const ei_cpu_step *s);
/* cpu_ops_qfc.c: picks s->qpath and sets up the requantisation (after ei_cpu_wmat_init); the
 * step scratch those paths need; the two paths; TFLite's QuantizeMultiplier. */
int ei_cpu_qfc_prepare(const ei_cpu_exec *x, ei_cpu_step *s, char *why, int nwhy);
uint64_t ei_cpu_qfc_scratch(const ei_cpu_exec *x, const ei_cpu_step *s);
int ei_cpu_op_fc_q8(ei_cpu_exec *x, const ei_cpu_step *s);
int ei_cpu_op_fc_int(ei_cpu_exec *x, const ei_cpu_step *s);
void ei_cpu_quantize_multiplier(double m, int32_t *mult, int32_t *shift);
int ei_cpu_op_bmm(ei_cpu_exec *x, const ei_cpu_step *s);
int ei_cpu_op_mean(ei_cpu_exec *x, const ei_cpu_step *s);
int ei_cpu_op_softmax(ei_cpu_exec *x, const ei_cpu_step *s);
int ei_cpu_op_rmsnorm(ei_cpu_exec *x, const ei_cpu_step *s);
int ei_cpu_op_swiglu(ei_cpu_exec *x, const ei_cpu_step *s);
int ei_cpu_op_rope(ei_cpu_exec *x, const ei_cpu_step *s);

/* Normalised axis (negative counts from the end). */
static inline int32_t ei_cpu_axis(int32_t axis, int32_t rank) { return axis < 0 ? axis + rank : axis; }
static inline const ei_gtensor *ei_cpu_t(const ei_cpu_exec *x, int32_t t) { return &x->g->tensors[t]; }

#endif
