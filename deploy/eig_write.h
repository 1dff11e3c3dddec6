/* Writer of .eig graph files (runtime/eig.h, docs/eig-format.md). Host side.
 *
 *   ei_eigw *w = ei_eigw_new();
 *   ei_eigw_set_config(w, &cfg);
 *   ei_eigw_set_kv(w, "SCEN", "tokens_per_call", "64");  ei_eigw_set_kv(w, "OPTS", "window", "256");
 *   ei_eigw_set_tokenizer(w, tok);                        // or ei_eigw_set_vocab
 *   uint64_t off; ei_eigw_add_data(w, wq, bytes, &off);   // once per constant, shared by all graphs
 *   g->tensors[i].offset = off; ...
 *   ei_eigw_add_graph(w, prefill); ei_eigw_add_graph(w, decode);
 *   ei_eigw_write(w, "model.eig");                         // temp file, fsync, rename
 *   ei_eigw_free(w);
 *
 * The writer refuses what the reader would refuse: each graph must pass ei_graph_validate against
 * the data added so far (add constants before the graphs that use them), constants must sit at the
 * offsets add_data returned (64-byte aligned) and never partially overlap, names must fit the
 * format's bounds. Everything given is copied; the caller keeps ownership of its arguments. All
 * functions return 0 / a pointer, or -1 / NULL with ei_error set. */
#ifndef EI_DEPLOY_EIG_WRITE_H
#define EI_DEPLOY_EIG_WRITE_H

#include "model/config.h"
#include "runtime/graph.h"
#include "text/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ei_eigw ei_eigw;

ei_eigw *ei_eigw_new(void);
void ei_eigw_free(ei_eigw *w);

/* The model config (required; checked with ei_model_config_validate). */
int ei_eigw_set_config(ei_eigw *w, const ei_model_config *cfg);
/* Sets key=value in section "OPTS" or "SCEN" (replacing an earlier value of the key; pairs keep the
 * order of first insertion). Keys: 1..255 bytes without '='; values up to 65535 bytes. */
int ei_eigw_set_kv(ei_eigw *w, const char *section, const char *key, const char *value);
/* The tokenizer vocabulary (optional): copied from v, or exported from t. */
int ei_eigw_set_vocab(ei_eigw *w, const ei_tok_vocab *v);
int ei_eigw_set_tokenizer(ei_eigw *w, const ei_tokenizer *t);

/* Appends n bytes of constant data at the next 64-byte aligned offset of the data block and returns
 * that offset. Add each constant once and give its offset to every tensor (in any graph) using it. */
int ei_eigw_add_data(ei_eigw *w, const void *data, uint64_t n, uint64_t *offset);
/* The same, but returns zeroed space for the caller to fill (e.g. the quantiser writing in place).
 * The pointer is valid until the next add_data / alloc_data call. */
void *ei_eigw_alloc_data(ei_eigw *w, uint64_t n, uint64_t *offset);
uint64_t ei_eigw_data_size(const ei_eigw *w);

/* Validates g against the data added so far and stores a serialised copy. Graph names are unique. */
int ei_eigw_add_graph(ei_eigw *w, const ei_graph *g);

/* The whole file in a malloc'd buffer (caller frees), e.g. for ei_eig_open_memory. */
int ei_eigw_serialize(const ei_eigw *w, uint8_t **buf, size_t *size);
/* Writes the file atomically: a temporary beside path, fsync, rename. On failure path is untouched. */
int ei_eigw_write(const ei_eigw *w, const char *path);

#endif
