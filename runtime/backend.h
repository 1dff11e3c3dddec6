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
} ei_cpu_options;

/* The reference backend: every op of the IR, fused kernels for recognised patterns (RMSNorm,
 * attention, SwiGLU), its own blocked GEMM / GEMV with AVX2 (x86-64) and NEON (aarch64) behind
 * portable C that gives the same results for any thread count. */
ei_backend *ei_backend_cpu_new(const ei_cpu_options *o);

#endif
