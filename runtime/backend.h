/* Backends execute validated graphs (runtime/graph.h) behind one small vtable (DESIGN 6.4):
 *
 *   ei_backend *b = ei_backend_cpu_new(&(ei_cpu_options){.threads = 2});
 *   ei_backend_exec *x = b->ops->prepare(b, graph, blob, blob_size);   // plans memory, fuses
 *   void *bind[graph->n_tensors] = {0};  bind[i] = caller memory of INPUT / OUTPUT tensor i;
 *   b->ops->execute(x, bind);            // as often as needed; bindings may change per call
 *   b->ops->release(x);  b->ops->destroy(b);
 *
 * prepare validates the graph (ei_graph_validate) before anything else and keeps pointers into the
 * constant blob (which must outlive the exec) and a reference to the graph (which must outlive it
 * too). execute reads INPUT tensors and writes OUTPUT tensors through bind (every INPUT and OUTPUT
 * entry must be non-NULL, laid out row-major with the tensor's type; an INPUT may not alias an
 * OUTPUT); CONST and VALUE entries of bind are ignored. Both return NULL / -1 with ei_error set
 * (naming the graph, node and op) on failure. Device side: libc only. */
#ifndef EI_RUNTIME_BACKEND_H
#define EI_RUNTIME_BACKEND_H

#include "runtime/graph.h"

#include <stdint.h>
#include <stdio.h>

typedef struct ei_backend ei_backend;
typedef struct ei_backend_exec ei_backend_exec;

typedef struct {
    const char *name; /* "cpu", "nnapi" */
    ei_backend_exec *(*prepare)(ei_backend *b, const ei_graph *g, const uint8_t *blob, uint64_t blob_size);
    int (*execute)(ei_backend_exec *x, void *const *bind);
    void (*release)(ei_backend_exec *x);
    void (*destroy)(ei_backend *b);
} ei_backend_ops;

struct ei_backend {
    const ei_backend_ops *ops;
};

typedef struct {
    int threads; /* worker threads including the caller; <= 0: 1 */
    int no_fuse; /* 1: run every node as written (the fusion test compares against this) */
    int portable; /* 1: portable C kernels even where AVX2 / NEON exist (they give the same bits) */
    /* 1: FULLY_CONNECTED with float input and I8 weights multiplies every weight in float, as with
     * F32 weights; 0 (default): quantises the input per block of 32 first and runs integer dot
     * products, as TFLite's hybrid kernels (docs/runtime-cpu.md). EI_CPU_EXACT_W8=1 in the
     * environment sets it too. */
    int exact_w8;
} ei_cpu_options;

/* The reference backend: every op of the IR, fused kernels for recognised patterns (RMSNorm,
 * SwiGLU, RoPE, attention's products with the transposed K / V caches), its own blocked GEMM / GEMV with AVX2 (x86-64) and NEON (aarch64) behind
 * portable C that gives the same results for any thread count. */
ei_backend *ei_backend_cpu_new(const ei_cpu_options *o);
/* Name of the kernel set a cpu backend uses ("avx2", "neon", "portable"); NULL if b is not one. */
const char *ei_backend_cpu_kernels(const ei_backend *b);
/* What prepare made of a graph (tests, tuning): steps run per execute (a fused pattern counts once,
 * a RESHAPE turned into a view not at all), fused patterns, bytes of the VALUE arena and of the
 * per-step conversion scratch. Returns -1 if x is not a cpu exec. */
typedef struct {
    int32_t steps, fused;
    uint64_t arena_bytes, scratch_bytes;
} ei_cpu_exec_info;
int ei_backend_cpu_exec_info(const ei_backend_exec *x, ei_cpu_exec_info *info);

/* ---- nnapi (runtime/nnapi_*.c, docs/nnapi.md). Loads libneuralnetworks.so at run time, lowers each
 * graph to an ANeuralNetworksModel, compiles it for the accelerator and runs it. A graph NNAPI
 * cannot take (a rule of the API, the device's feature level, an unsupported operation) runs on an
 * internal cpu backend after a one-line notice, unless strict. */
typedef struct {
    const char *lib;         /* path of libneuralnetworks.so; NULL: $EI_NNAPI_LIB, else the system's */
    const char *device;      /* compile for this device (by name); NULL: the first accelerator, if any */
    const char *cache_dir;   /* compilation cache directory (feature level >= 3); NULL: no caching */
    const char *blob_path;   /* the file holding the constant blob (the .eig): constants longer than
                                128 bytes are mapped from it by NNAPI, not copied; NULL: by pointer */
    uint64_t blob_offset;    /* where the blob starts in blob_path (ei_eig_data_offset) */
    uint64_t blob_hash;      /* hash of the blob for the cache token (ei_eig_data_checksum); 0: hashed */
    int relax_f16;           /* let the driver compute float32 graphs in float16 */
    int fallback_f16;        /* graphs with int16 / int4 tensors run in float16 instead of on cpu */
    int strict;              /* errors instead of the cpu fallback */
    int partition;           /* a graph the chosen device takes only in part is split by NNAPI across
                                its devices, instead of running on cpu */
    int no_burst;            /* plain executions even where bursts exist */
    int max_feature_level;   /* 1..8: use nothing above this NNAPI feature level; 0: no cap */
    int report_no_header;    /* ei_nnapi_report: leave out the library and device lines (for the
                                second and later graphs of one report) */
    ei_cpu_options cpu;      /* the fallback cpu backend */
    FILE *log;               /* notices; NULL: stderr */
} ei_nnapi_options;

/* NULL with ei_error set when the library cannot be loaded or the device is absent. */
ei_backend *ei_backend_nnapi_new(const ei_nnapi_options *o);
/* Memory NNAPI maps once (an fd-backed ANeuralNetworksMemory): an INPUT / OUTPUT bound to bytes
 * inside it is passed by (memory, offset) instead of copied per execution, so the runner's state
 * buffers (caches, M, z) should come from here. Any graph of this backend may use it; it must be
 * freed before the backend is destroyed. NULL if b is not an nnapi backend (use malloc then). */
void *ei_backend_nnapi_alloc(ei_backend *b, uint64_t bytes);
void ei_backend_nnapi_free(ei_backend *b, void *p);

typedef struct {
    int on_cpu;              /* the graph fell back to the cpu backend */
    int feature_level;       /* the level the graph was lowered for */
    const char *device;      /* the device compiled for; NULL: the runtime's choice */
    int32_t nnapi_ops;       /* NNAPI operations in the model */
    int relaxed, f16_mode, i8_emulated, burst, reusable;
    int64_t consts_from_memory, consts_copied, consts_by_pointer;
    int64_t inputs_from_memory, outputs_from_memory; /* bindings by (memory, offset), last execute */
} ei_nnapi_exec_info;
/* -1 if x is not an nnapi exec. */
int ei_backend_nnapi_exec_info(const ei_backend_exec *x, ei_nnapi_exec_info *info);

/* Which operations of graph g would not run on the accelerator, and what the lowering did instead
 * of a one-to-one translation (decompositions, emulated types, refusals), printed to out. Returns
 * the number of NNAPI operations the device does not take (0: all), or -1 when the library is
 * missing or the graph cannot be lowered (also printed). */
int ei_nnapi_report(const ei_graph *g, const uint8_t *blob, uint64_t blob_size, const ei_nnapi_options *o, FILE *out);

/* ---- choosing a backend (runtime/backend_open.c) */
typedef struct {
    int strict;              /* "nnapi" that cannot load is an error, not the cpu backend */
    FILE *log;               /* notices; NULL: stderr */
    ei_cpu_options cpu;
    ei_nnapi_options nnapi;  /* its strict, log and cpu are replaced by the fields above */
} ei_backend_options;
/* name "cpu" or "nnapi". An nnapi backend that cannot be created gives one notice line and the cpu
 * backend (NULL with ei_error set when strict). o may be NULL. */
ei_backend *ei_backend_open(const char *name, const ei_backend_options *o);

#endif
