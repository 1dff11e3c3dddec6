/* The runner: loads a .eig file, prepares its graphs on a backend and runs documents through them
 * following the one segment rule and routing of the model (model/segment.h). Device side: libc
 * only; `ei generate --graph`, `ei eval --graph` and `ei-eval` are built on it.
 *
 *   ei_runner *r = ei_runner_open("model.eig", &(ei_runner_options){.backend = "cpu", .threads = 2});
 *   ei_runner_reset(r);                                  // a new document of unknown length
 *   ei_runner_feed(r, prompt, n, NULL, NULL, NULL, logits);   // prefill in chunks of N
 *   while (...) ei_runner_feed(r, &tok, 1, NULL, NULL, NULL, logits);   // decode
 *   ei_runner_close(r);
 *
 * State without copies: the runner owns the caches (per layer K and V of S sink slots and a ring
 * of W + L slots), M and z (two buffers per layer, swapped by the compress graph) and binds them
 * to the graphs as inputs and outputs. Per call the work outside the graphs is writing the call's
 * new K/V rows into their slots and filling the small position / mask inputs (O(cache slots)
 * integers), so a decode step costs the same whatever the document length. A call feeds at most
 * min(N, the rest of the segment) tokens; a shorter last chunk is padded and masked. When a call
 * completes a segment, the rows leaving the window are compressed into the memory by the compress
 * graph (edgeinfinite) or simply overwritten later (window). Documents up to the routing threshold
 * run the base graphs; the first token beyond it re-runs the kept tokens through the EdgeInfinite
 * state (as train/edge.c does), so the runner's outputs equal the eager model's.
 *
 * With the nnapi backend the state and the per-call inputs and outputs live in memory NNAPI maps
 * once (ei_backend_nnapi_alloc), so executions bind them by offset instead of copying them.
 *
 * Ownership: the runner owns the mapped file, the backend and every buffer (ei_runner_close). Not
 * thread-safe. Errors: -1 / NULL with ei_error set. */
#ifndef EI_RUNTIME_RUNNER_H
#define EI_RUNTIME_RUNNER_H

#include "core/ei_args.h"
#include "model/config.h"
#include "model/docmodel.h"
#include "model/options.h"
#include "runtime/backend.h"
#include "runtime/eig.h"
#include "text/tokenizer.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *backend; /* "cpu" (default) or "nnapi" */
    int threads;         /* cpu (and the nnapi fallback): worker threads including the caller; <= 0: 1 */
    int no_fuse;         /* cpu: run every node as written */
    int strict;          /* nnapi: no library, or a graph the device cannot take, is an error (not cpu) */
    const char *nnapi_lib;    /* path of libneuralnetworks.so (NULL: $EI_NNAPI_LIB, else the system's) */
    const char *nnapi_device; /* compile for this device (NULL: the first accelerator) */
    const char *cache_dir;    /* nnapi compilation cache (NULL: none) */
    int relax_f16;            /* nnapi: let the driver compute float32 graphs in float16 */
    int fallback_f16;         /* nnapi: int16 / int4 graphs run in float16 instead of on cpu */
} ei_runner_options;

/* The NNAPI options of every tool that runs graphs (ei-eval, ei generate / eval --graph, ei inspect
 * --nnapi), one table: put EI_RUNNER_NNAPI_ARGS(cli) in the tool's ei_arg list, then
 * ei_runner_cli_apply(&cli, &runner_options) after parsing. */
typedef struct {
    const char *lib, *device, *cache_dir, *fallback;
    int relax_f16;
} ei_runner_nnapi_cli;
#define EI_RUNNER_NNAPI_ARGS(c)                                                                                  \
    {"nnapi-lib", EI_ARG_STR, &(c).lib, "PATH", "nnapi: the library to load [$EI_NNAPI_LIB, else libneuralnetworks.so]"}, \
    {"nnapi-device", EI_ARG_STR, &(c).device, "NAME", "nnapi: compile for this device [the first accelerator]"},       \
    {"nnapi-cache", EI_ARG_STR, &(c).cache_dir, "DIR", "nnapi: compilation cache directory [none]"},                  \
    {"nnapi-relax-f16", EI_ARG_FLAG, &(c).relax_f16, NULL, "nnapi: let the driver compute float32 graphs in float16"}, \
    {"nnapi-fallback", EI_ARG_STR, &(c).fallback, "cpu|f16",                                                           \
     "nnapi: where graphs with int16 / int4 tensors NNAPI cannot take run: the cpu backend, or NNAPI in float16 [cpu]"}
/* Copies the parsed options into o. -1 with ei_error set for a bad --nnapi-fallback value. */
int ei_runner_cli_apply(const ei_runner_nnapi_cli *c, ei_runner_options *o);
/* The backend options the runner gives NNAPI for the .eig at path (opened as e). */
void ei_runner_nnapi_options(const ei_runner_options *o, const char *path, const ei_eig *e, ei_nnapi_options *no);
/* `ei inspect --nnapi` / `ei-eval --report`: for every graph of the file, which NNAPI operations the
 * chosen device would not run and what the lowering did instead (ei_nnapi_report). Returns the
 * number of operations the device does not take (0: all), or -1 (library missing, file unreadable
 * or a graph NNAPI cannot express; printed to out, ei_error set). */
int ei_runner_nnapi_report(const char *path, const ei_runner_options *o, FILE *out);

typedef struct {
    int64_t calls[5];        /* graph runs: prefill, decode, compress, base_prefill, base_decode */
    double seconds[5];       /* time inside them */
    int64_t padded_rows;     /* padding rows computed by prefill calls */
} ei_runner_stats;

typedef struct ei_runner ei_runner;

ei_runner *ei_runner_open(const char *path, const ei_runner_options *o);
void ei_runner_close(ei_runner *r);

const ei_eig *ei_runner_eig(const ei_runner *r);
const ei_model_config *ei_runner_config(const ei_runner *r);
const ei_opts *ei_runner_opts(const ei_runner *r);
ei_mode ei_runner_mode(const ei_runner *r);
int ei_runner_tokens_per_call(const ei_runner *r);
/* Tokens full attention can hold (full mode), or -1 when the document length is unbounded. */
int64_t ei_runner_capacity(const ei_runner *r);
/* The file's tokenizer (decoding, and encoding for SentencePiece kinds), or NULL when the file has
 * no vocabulary. Owned by the runner. */
const ei_tokenizer *ei_runner_tokenizer(const ei_runner *r);
const ei_runner_stats *ei_runner_stats_get(const ei_runner *r);
/* The backend the graphs run on ("cpu", "nnapi") and, for nnapi, how many of the prepared graphs
 * run on NNAPI and how many fell back to the cpu backend. */
const char *ei_runner_backend(const ei_runner *r);
void ei_runner_nnapi_graphs(const ei_runner *r, int *on_nnapi, int *on_cpu);

/* A new document of unknown length (routing follows the length so far) / of total_len tokens. */
void ei_runner_reset(ei_runner *r);
void ei_runner_begin(ei_runner *r, int64_t total_len);
/* Feeds n tokens (as ei_edge_feed): targets may be NULL, else the NLL of positions with a target
 * >= 0 is added to *nll and their number to *count; logits_last (vocab floats, may be NULL) gets
 * the logits after the last token. */
int ei_runner_feed(ei_runner *r, const int32_t *ids, int64_t n, const int32_t *targets, double *nll,
                   int64_t *count, float *logits_last);
int64_t ei_runner_pos(const ei_runner *r);
/* The runner as a document model (model/docmodel.h); valid while r lives. */
ei_docmodel ei_runner_docmodel(ei_runner *r);
int ei_runner_on_base(const ei_runner *r);

#endif
