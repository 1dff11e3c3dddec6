/* The .eig graph file (DESIGN 6.3): one memory-mappable file holding the model config, the
 * scenario and EdgeInfinite options, the tokenizer vocabulary, the fixed-shape graphs and the
 * constant data they share. The byte layout is docs/eig-format.md; the host-side writer is
 * deploy/eig_write.h. Device side: libc only.
 *
 *   ei_eig *e = ei_eig_open("model.eig");          // maps and validates everything, or NULL
 *   const ei_graph *g = ei_eig_graph_by_name(e, "decode");
 *   uint64_t n; const uint8_t *blob = ei_eig_data(e, &n);
 *   backend->ops->prepare(backend, g, blob, n);
 *   ei_eig_close(e);                                // after every exec made from it is released
 *
 * ei_eig_open checks every offset, size and count against the file length before using it, the
 * metadata checksum, every string (bounded, no NUL bytes), the config, the vocabulary
 * (ei_tok_vocab_check), each graph (ei_graph_validate against the data block) and the placement of
 * constants (64-byte aligned, inside the data block, never partially overlapping). A file that
 * opens can be handed to any backend. Everything returned points into the ei_eig and lives until
 * ei_eig_close. An ei_eig is read-only after opening: any number of threads may use it. */
#ifndef EI_RUNTIME_EIG_H
#define EI_RUNTIME_EIG_H

#include "model/config.h"
#include "model/options.h"
#include "runtime/graph.h"
#include "text/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

/* ---- format constants, shared with the writer */
#define EI_EIG_VERSION 1
#define EI_EIG_HEADER_SIZE 128
#define EI_EIG_ALIGN 64          /* data block and every constant tensor */
#define EI_EIG_SECTION_HEAD 16   /* u32 tag, u32 flags, u64 payload size */
#define EI_EIG_SEC_OPTIONAL 1u   /* section flag: a reader that does not know the tag skips it */
#define EI_EIG_TENSOR_RECORD 72
#define EI_EIG_NODE_RECORD 80
#define EI_EIG_PARAM_WORDS 8
#define EI_EIG_CONF_FIELDS 15
#define EI_EIG_MAX_GRAPH_NAME 255
#define EI_EIG_MAX_TENSOR_NAME 1024
#define EI_EIG_MAX_KEY 255
#define EI_EIG_MAX_VALUE 65535
#define EI_EIG_MAX_IDENTITY 159 /* ei_tokenizer_identity is at most this long */

/* Section tags: four ASCII characters, the first in the lowest byte (the file reads "CONF"). */
#define EI_EIG_TAG(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define EI_EIG_TAG_CONF EI_EIG_TAG('C', 'O', 'N', 'F')
#define EI_EIG_TAG_OPTS EI_EIG_TAG('O', 'P', 'T', 'S')
#define EI_EIG_TAG_SCEN EI_EIG_TAG('S', 'C', 'E', 'N')
#define EI_EIG_TAG_VOCB EI_EIG_TAG('V', 'O', 'C', 'B')
#define EI_EIG_TAG_GRPH EI_EIG_TAG('G', 'R', 'P', 'H')

/* Op parameters as the file stores them: EI_EIG_PARAM_WORDS little-endian 32-bit words per node,
 * meaning per op (docs/eig-format.md); words an op does not use are 0. decode returns -1 when such
 * a word is not 0. Ops without parameters and unknown op codes use none. */
void ei_eig_params_encode(ei_gop op, const ei_gparams *p, uint32_t w[EI_EIG_PARAM_WORDS]);
int ei_eig_params_decode(ei_gop op, const uint32_t w[EI_EIG_PARAM_WORDS], ei_gparams *p);

/* ---- reader */
typedef struct ei_eig ei_eig;

/* Maps path read-only and validates it. NULL with ei_error set ("<path>: <problem>") on failure. */
ei_eig *ei_eig_open(const char *path);
/* The same over n bytes in memory (tests, fuzzing). No copy: buf must outlive the ei_eig. */
ei_eig *ei_eig_open_memory(const void *buf, size_t n);
void ei_eig_close(ei_eig *e);

uint32_t ei_eig_version(const ei_eig *e);
uint64_t ei_eig_file_size(const ei_eig *e);
const ei_model_config *ei_eig_config(const ei_eig *e);

/* Key/value sections: section is "OPTS" (EdgeInfinite options, ei_opts_set keys) or "SCEN" (the
 * scenario: tokens per call, segment, sink, window, plan, ...). Pairs keep the writer's order.
 * count: 0 for an absent or unknown section. at: 0, or -1 when i is out of range. get: the value,
 * NULL when absent. Keys and values are NUL-terminated copies owned by the ei_eig. */
int ei_eig_kv_count(const ei_eig *e, const char *section);
int ei_eig_kv_at(const ei_eig *e, const char *section, int i, const char **key, const char **value);
const char *ei_eig_kv_get(const ei_eig *e, const char *section, const char *key);
/* ei_opts_default, then every OPTS pair through ei_opts_set, then ei_opts_validate. */
int ei_eig_opts(const ei_eig *e, ei_opts *o);

/* The tokenizer vocabulary, NULL when the file has none. Piece bytes point into the file. */
const ei_tok_vocab *ei_eig_vocab(const ei_eig *e);
/* ei_tokenizer_from_vocab of it (the caller frees the tokenizer); NULL with ei_error set. */
ei_tokenizer *ei_eig_tokenizer(const ei_eig *e);

int ei_eig_n_graphs(const ei_eig *e);
const ei_graph *ei_eig_graph(const ei_eig *e, int i); /* NULL when out of range */
const ei_graph *ei_eig_graph_by_name(const ei_eig *e, const char *name);

/* The constant data block shared by every graph (64-byte aligned in the file; the pointer is
 * 64-byte aligned when the file is mapped, or when open_memory's buffer is). */
const uint8_t *ei_eig_data(const ei_eig *e, uint64_t *size);
/* Checks the data block against its checksum (reads every byte, so not done at open). */
int ei_eig_verify_data(const ei_eig *e);
/* Where the data block starts in the file (the nnapi backend maps the constants from the file at
 * this offset: ei_nnapi_options.blob_offset), and the checksum the file stores for it (a cheap
 * identity of the weights: ei_nnapi_options.blob_hash for the compilation cache token). */
uint64_t ei_eig_data_offset(const ei_eig *e);
uint64_t ei_eig_data_checksum(const ei_eig *e);

#endif
