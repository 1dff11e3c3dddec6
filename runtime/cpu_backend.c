/* The cpu backend: the vtable, prepare (validate, fuse, plan memory) and the execute loop. The op
 * kernels are cpu_ops_*.c, the inner loops cpu_kern_*.c. */
#include "runtime/cpu_internal.h"

#include "core/ei_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Names of the fused steps, indexed by EI_CPU_FUSE_* - 1 (profile lines and error messages). */
static const char *const fused_name[] = {"RMSNorm", "SwiGLU", "RoPE", "BATCH_MATMUL(TRANSPOSE)", "BATCH_MATMUL(scaled)"};

/* ---------------------------------------------------------------- profile */
/* EI_CPU_PROFILE=N in the environment: each graph's N slowest steps (op, output shape, share of
 * the graph's time) are printed to stderr when the graph is released. For finding what a decode
 * or prefill call spends its time on without a profiler on the device. */
static int profile_top(void) {
    const char *v = getenv("EI_CPU_PROFILE");
    return v && *v ? atoi(v) : 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void profile_print(const ei_cpu_exec *x) {
    int top = profile_top();
    if (!x->prof || !x->prof_runs || top <= 0) return;
    double total = 0;
    for (int32_t i = 0; i < x->n_steps; i++) total += x->prof[i];
    fprintf(stderr, "cpu profile: graph %s, %lld runs, %.3f ms per run; arena %.2f MB, scratch %.2f MB\n", x->g->name,
            (long long)x->prof_runs, 1e3 * total / (double)x->prof_runs, (double)x->arena_bytes / 1048576.0,
            (double)x->scratch_bytes / 1048576.0);
    enum { NF = (int)(sizeof fused_name / sizeof fused_name[0]) };
    double by_op[EI_OP_COUNT + NF] = {0}; /* + the fused steps */
    for (int32_t i = 0; i < x->n_steps; i++) {
        const ei_cpu_step *s = &x->steps[i];
        int k = s->fused ? EI_OP_COUNT + s->fused - 1 : (int)x->g->nodes[s->node].op;
        if (k >= 0 && k < EI_OP_COUNT + NF) by_op[k] += x->prof[i];
    }
    fprintf(stderr, "  by op:");
    for (int k = 0; k < EI_OP_COUNT + NF; k++)
        if (by_op[k] > 0.005 * total)
            fprintf(stderr, " %s %.1f%%", k >= EI_OP_COUNT ? fused_name[k - EI_OP_COUNT] : ei_gop_name((ei_gop)k),
                    100 * by_op[k] / total);
    fprintf(stderr, "\n");
    uint8_t *done = calloc((size_t)x->n_steps + 1, 1);
    for (int k = 0; done && k < top; k++) {
        int32_t best = -1;
        for (int32_t i = 0; i < x->n_steps; i++)
            if (!done[i] && (best < 0 || x->prof[i] > x->prof[best])) best = i;
        if (best < 0 || x->prof[best] <= 0) break;
        done[best] = 1;
        const ei_cpu_step *s = &x->steps[best];
        const ei_gnode *n = &x->g->nodes[s->node];
        const ei_gtensor *o = &x->g->tensors[n->out];
        char shape[96] = "";
        for (int d = 0, at = 0; d < o->rank && at < (int)sizeof shape - 12; d++)
            at += snprintf(shape + at, sizeof shape - (size_t)at, "%s%lld", d ? "x" : "", (long long)o->shape[d]);
        fprintf(stderr, "  %5.1f%% %8.3f ms  node %5d %-16s %-14s %s\n", 100 * x->prof[best] / (total > 0 ? total : 1),
                1e3 * x->prof[best] / (double)x->prof_runs, s->node,
                s->fused ? fused_name[s->fused - 1] : ei_gop_name(n->op),
                shape, o->name);
    }
    free(done);
}

/* ---------------------------------------------------------------- parallel helpers */
typedef struct {
    ei_cpu_range_fn fn;
    ei_cpu_range_tid_fn fn_tid;
    void *ctx;
    int64_t n, align;
} par_ctx;

static void par_tramp(void *p, int tid, int nth) {
    const par_ctx *c = p;
    int64_t lo, hi;
    ei_tp_range(c->n, tid, nth, c->align, &lo, &hi);
    if (lo >= hi) return;
    if (c->fn) c->fn(c->ctx, lo, hi);
    else c->fn_tid(c->ctx, tid, lo, hi);
}

static void par_run(ei_cpu_exec *x, par_ctx *c, int64_t min_chunk) {
    if (c->n <= 0) return;
    int64_t want = min_chunk > 0 ? c->n / min_chunk : c->n;
    int nth = want < x->nth ? (int)(want < 1 ? 1 : want) : x->nth;
    ei_tp_run_n(x->be->tp, nth, par_tramp, c);
}

void ei_cpu_parallel(ei_cpu_exec *x, int64_t n, int64_t align, int64_t min_chunk, ei_cpu_range_fn fn, void *ctx) {
    par_ctx c = {fn, NULL, ctx, n, align};
    par_run(x, &c, min_chunk);
}

void ei_cpu_parallel_tid(ei_cpu_exec *x, int64_t n, int64_t align, int64_t min_chunk, ei_cpu_range_tid_fn fn,
                         void *ctx) {
    par_ctx c = {NULL, fn, ctx, n, align};
    par_run(x, &c, min_chunk);
}

int ei_cpu_fail(const ei_cpu_exec *x, const ei_cpu_step *s, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const ei_gnode *n = &x->g->nodes[s->node];
    if (s->fused)
        return ei_error_set("graph '%s': nodes %d..%d (%s, fused %s): %s", x->g->name, s->first, s->node,
                            ei_gop_name(n->op),
                            fused_name[s->fused - 1], msg);
    return ei_error_set("graph '%s': node %d (%s): %s", x->g->name, s->node, ei_gop_name(n->op), msg);
}

/* ---------------------------------------------------------------- prepare */
static void exec_free(ei_cpu_exec *x) {
    if (!x) return;
    profile_print(x);
    free(x->prof);
    x->magic = 0;
    for (int32_t i = 0; x->steps && i < x->n_steps; i++) free(x->steps[i].qmult);
    free(x->tplan);
    free(x->steps);
    free(x->arena);
    free(x->scratch);
    free(x->tscratch);
    free(x->ptr);
    free(x);
}

static void *alloc64(uint64_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (size_t)(bytes ? bytes : 64)) != 0) return NULL;
    return p;
}

/* Per-step checks and constant set-up that would otherwise fail at every execute. */
static int prepare_step(ei_cpu_exec *x, ei_cpu_step *s) {
    const ei_graph *g = x->g;
    const ei_gnode *n = &g->nodes[s->node];
    if (s->fused) return 0;
    if (n->op == EI_OP_FULLY_CONNECTED) {
        char why[200];
        if (ei_cpu_wmat_init(g, x->blob, n->in[1], &s->w, why, sizeof why)) return ei_cpu_fail(x, s, "%s", why);
        if (ei_cpu_qfc_prepare(x, s, why, sizeof why)) return ei_cpu_fail(x, s, "%s", why);
        const ei_gtensor *out = &g->tensors[n->out];
        if (out->type == EI_GT_I4) return ei_cpu_fail(x, s, "i4 output not supported");
    }
    if (n->op == EI_OP_SOFTMAX) {
        const ei_gtensor *t = &g->tensors[n->in[0]];
        int32_t ax = ei_cpu_axis(n->p.softmax.axis, t->rank);
        if (t->rank > 0 && ax != t->rank - 1 && t->shape[ax] > x->tscratch_n) x->tscratch_n = t->shape[ax];
    }
    /* Data-movement ops copy elements of one size; I4 packs two per byte, so only the ops that
     * decode it take it. */
    if (n->op != EI_OP_FULLY_CONNECTED && n->op != EI_OP_DEQUANTIZE) {
        for (int32_t i = 0; i < n->n_in; i++)
            if (g->tensors[n->in[i]].type == EI_GT_I4 && !(n->op == EI_OP_RESHAPE && s->view))
                return ei_cpu_fail(x, s, "i4 input %d (%s) is only supported by FULLY_CONNECTED and DEQUANTIZE", i,
                                   g->tensors[n->in[i]].name);
    }
    return 0;
}

static ei_backend_exec *cpu_prepare(ei_backend *b, const ei_graph *g, const uint8_t *blob, uint64_t blob_size) {
    ei_cpu_backend *be = (ei_cpu_backend *)b;
    if (!g) {
        ei_error_set("cpu backend: no graph");
        return NULL;
    }
    if (ei_graph_validate(g, blob_size)) return NULL;
    if (blob_size && !blob) {
        ei_error_set("graph %s: cpu backend: constant blob of %llu bytes is NULL", g->name,
                     (unsigned long long)blob_size);
        return NULL;
    }
    ei_cpu_exec *x = calloc(1, sizeof *x);
    if (!x) goto oom;
    x->magic = EI_CPU_EXEC_MAGIC;
    x->be = be;
    x->g = g;
    x->blob = blob;
    x->blob_size = blob_size;
    x->k = be->k;
    x->nth = ei_tp_threads(be->tp);
    x->steps = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *x->steps);
    x->ptr = calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof *x->ptr);
    if (!x->steps || !x->ptr) goto oom;
    x->n_steps = ei_cpu_fuse(g, blob, !be->opt.no_fuse, x->steps);
    if (ei_cpu_plan(x)) goto fail;
    for (int32_t i = 0; i < x->n_steps; i++) {
        if (prepare_step(x, &x->steps[i])) goto fail;
        x->steps[i].scratch = ei_cpu_step_scratch(x, &x->steps[i]);
        if (x->steps[i].scratch > x->scratch_bytes) x->scratch_bytes = x->steps[i].scratch;
    }
    x->arena = alloc64(x->arena_bytes);
    x->scratch = alloc64(x->scratch_bytes);
    x->tscratch = malloc((size_t)(x->nth * (x->tscratch_n ? x->tscratch_n : 1)) * sizeof *x->tscratch);
    if (!x->arena || !x->scratch || !x->tscratch) goto oom;
    if (profile_top() > 0 && !(x->prof = calloc((size_t)x->n_steps + 1, sizeof *x->prof))) goto oom;
    return (ei_backend_exec *)x;
oom:
    ei_error_set("graph %s: cpu backend: out of memory", g->name);
fail:
    exec_free(x);
    return NULL;
}

/* ---------------------------------------------------------------- execute */
static int run_step(ei_cpu_exec *x, const ei_cpu_step *s) {
    if (s->fused == EI_CPU_FUSE_RMSNORM) return ei_cpu_op_rmsnorm(x, s);
    if (s->fused == EI_CPU_FUSE_SWIGLU) return ei_cpu_op_swiglu(x, s);
    if (s->fused == EI_CPU_FUSE_ROPE) return ei_cpu_op_rope(x, s);
    if (s->fused == EI_CPU_FUSE_BMM_T || s->fused == EI_CPU_FUSE_BMM) return ei_cpu_op_bmm(x, s);
    switch (x->g->nodes[s->node].op) {
    case EI_OP_GATHER: return ei_cpu_op_gather(x, s);
    case EI_OP_FULLY_CONNECTED: return ei_cpu_op_fc(x, s);
    case EI_OP_BATCH_MATMUL: return ei_cpu_op_bmm(x, s);
    case EI_OP_ADD:
    case EI_OP_SUB:
    case EI_OP_MUL:
    case EI_OP_DIV:
    case EI_OP_MAXIMUM: return ei_cpu_op_binary(x, s);
    case EI_OP_RSQRT:
    case EI_OP_LOGISTIC:
    case EI_OP_ELU:
    case EI_OP_EXP: return ei_cpu_op_unary(x, s);
    case EI_OP_MEAN: return ei_cpu_op_mean(x, s);
    case EI_OP_SOFTMAX: return ei_cpu_op_softmax(x, s);
    case EI_OP_CONCATENATION: return ei_cpu_op_concat(x, s);
    case EI_OP_SLICE: return ei_cpu_op_slice(x, s);
    case EI_OP_RESHAPE: return ei_cpu_op_copy(x, s);
    case EI_OP_TRANSPOSE: return ei_cpu_op_transpose(x, s);
    case EI_OP_QUANTIZE:
    case EI_OP_DEQUANTIZE:
    case EI_OP_CAST: return ei_cpu_op_convert(x, s);
    case EI_OP_SELECT: return ei_cpu_op_select(x, s);
    default: return ei_cpu_fail(x, s, "op not implemented by the cpu backend");
    }
}

static int cpu_execute(ei_backend_exec *xe, void *const *bind) {
    ei_cpu_exec *x = (ei_cpu_exec *)xe;
    const ei_graph *g = x->g;
    for (int32_t i = 0; i < g->n_tensors; i++) {
        const ei_gtensor *t = &g->tensors[i];
        const ei_cpu_tplan *p = &x->tplan[i];
        switch (p->kind) {
        case EI_CPU_ST_CONST: x->ptr[i] = (void *)(uintptr_t)(x->blob + t->offset); break;
        case EI_CPU_ST_BIND:
            if (!bind || !bind[i])
                return ei_error_set("graph %s: %s tensor %d (%s) is not bound", g->name,
                                    t->kind == EI_GK_INPUT ? "input" : "output", i, t->name);
            x->ptr[i] = bind[i];
            break;
        case EI_CPU_ST_ARENA: x->ptr[i] = x->arena + p->off; break;
        default: x->ptr[i] = NULL; break;
        }
    }
    for (int32_t i = 0; i < g->n_tensors; i++)
        if (x->tplan[i].kind == EI_CPU_ST_VIEW) x->ptr[i] = x->ptr[x->tplan[i].root];
    for (int32_t i = 0; i < x->n_steps; i++) {
        const ei_cpu_step *s = &x->steps[i];
        if (s->view) continue;
        x->scratch_used = 0;
        const double t0 = x->prof ? now_s() : 0;
        if (run_step(x, s)) return -1;
        if (x->prof) x->prof[i] += now_s() - t0;
    }
    x->prof_runs += x->prof != NULL;
    return 0;
}

static void cpu_release(ei_backend_exec *xe) { exec_free((ei_cpu_exec *)xe); }

int ei_backend_cpu_exec_info(const ei_backend_exec *xe, ei_cpu_exec_info *info) {
    const ei_cpu_exec *x = (const ei_cpu_exec *)xe;
    if (!x || x->magic != EI_CPU_EXEC_MAGIC) return -1;
    memset(info, 0, sizeof *info);
    for (int32_t i = 0; i < x->n_steps; i++) {
        info->steps += !x->steps[i].view;
        info->fused += x->steps[i].fused != EI_CPU_FUSE_NONE;
    }
    info->arena_bytes = x->arena_bytes;
    info->scratch_bytes = x->scratch_bytes;
    return 0;
}

static void cpu_destroy(ei_backend *b) {
    ei_cpu_backend *be = (ei_cpu_backend *)b;
    if (!be) return;
    ei_tp_free(be->tp);
    free(be);
}

static const ei_backend_ops cpu_ops = {"cpu", cpu_prepare, cpu_execute, cpu_release, cpu_destroy};

ei_backend *ei_backend_cpu_new(const ei_cpu_options *o) {
    ei_cpu_backend *be = calloc(1, sizeof *be);
    if (!be) {
        ei_error_set("cpu backend: out of memory");
        return NULL;
    }
    if (o) be->opt = *o;
    if (be->opt.threads < 1) be->opt.threads = 1;
    const char *ex = getenv("EI_CPU_EXACT_W8");
    if (ex && ex[0] && strcmp(ex, "0") != 0) be->opt.exact_w8 = 1;
    be->base.ops = &cpu_ops;
    be->k = be->opt.portable ? ei_cpu_kernels_portable() : ei_cpu_kernels_best();
    be->tp = ei_tp_new(be->opt.threads);
    if (!be->tp) {
        free(be);
        return NULL;
    }
    return &be->base;
}

const char *ei_backend_cpu_kernels(const ei_backend *b) {
    return b && b->ops == &cpu_ops ? ((const ei_cpu_backend *)b)->k->name : NULL;
}
