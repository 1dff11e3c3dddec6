/* Shared internals of the tokenizer implementation (data/tokenizer*.c only; not a public header).
 *
 * Every format is loaded into one representation: a piece table (id -> bytes, score, type), a hash
 * map piece -> id, the special ids, and either the SentencePiece-style encoder (score-driven merges on
 * the whole normalised text, byte fallback) or the Hugging Face byte-level encoder (regex
 * pre-tokenizer, rank-driven merges). The tokenizer owns every buffer below; ei_tokenizer_free
 * releases them. */
#ifndef EI_TOKENIZER_INTERNAL_H
#define EI_TOKENIZER_INTERNAL_H

#include "text/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

/* Piece types, numbered as SentencePiece's ModelProto.SentencePiece.Type. */
enum {
    EI_PIECE_NORMAL = 1,
    EI_PIECE_UNKNOWN = 2,
    EI_PIECE_CONTROL = 3,
    EI_PIECE_USER = 4,
    EI_PIECE_UNUSED = 5,
    EI_PIECE_BYTE = 6,
};

enum {
    EI_TOK_SP = 1,        /* SentencePiece BPE semantics (tokenizer.model, tokenizer.bin) */
    EI_TOK_HF = 2,        /* Hugging Face tokenizer.json BPE (byte-level or Metaspace-like) */
};

/* Open-addressing map from byte strings to ids; the strings are the pieces themselves (or the
 * added-token contents), so a slot only stores an id. */
typedef struct {
    int32_t *slots; /* -1 empty */
    size_t mask;
} ei_tok_map;

/* Map (left id, right id) -> merge rank and merged id, for rank-driven BPE. */
typedef struct {
    uint64_t key; /* (left << 32 | right) + 1; 0 = empty */
    int32_t rank;
    int32_t id;
} ei_tok_merge;

/* A literal token matched in the text before any normalisation (added tokens, control pieces). */
typedef struct {
    const char *str; /* points into the piece arena */
    uint32_t len;
    int32_t id;
    uint8_t special; /* matched only when parse_special */
    uint8_t lstrip, rstrip;
} ei_tok_literal;

typedef struct ei_tok_hf ei_tok_hf; /* byte-level / HF specifics, see data/tokenizer_hf.c */
typedef struct ei_tok_hf_ops ei_tok_hf_ops;

struct ei_tokenizer {
    int kind;
    int vocab_size;
    char *arena;           /* all piece bytes, each NUL-terminated */
    size_t arena_len, arena_cap;
    uint32_t *piece_off;   /* [vocab_size] offset into arena */
    uint32_t *piece_len;   /* [vocab_size] */
    float *scores;         /* [vocab_size] */
    uint8_t *types;        /* [vocab_size] */
    ei_tok_map map;        /* piece -> id over every piece */
    int bos, eos, unk;
    int byte_ids[256];     /* id of <0xXX>, or -1 */

    /* SentencePiece normaliser options */
    int add_dummy_prefix;
    int remove_extra_ws;
    int byte_fallback;
    int strip_leading_space; /* decoding drops one leading space (dummy prefix) */

    ei_tok_literal *literals; /* sorted by length, longest first */
    int n_literals;
    int32_t lit_first[257];   /* literal index ranges by first byte: [lit_first[b], lit_first[b+1]) after
                                 sorting by (first byte, -length) */

    ei_tok_hf *hf;
    const ei_tok_hf_ops *hf_ops; /* set by the tokenizer.json loader (host side); NULL otherwise */
    char identity[160];
};

/* ---- tokenizer.c: shared helpers */
uint64_t ei_tok_hash(const char *s, size_t n);
int ei_tok_alloc_pieces(ei_tokenizer *t, int n);
/* Appends a piece's bytes to the arena for id. */
int ei_tok_set_piece(ei_tokenizer *t, int id, const char *s, size_t n, float score, int type);
const char *ei_tok_piece(const ei_tokenizer *t, int id, size_t *len);
/* Builds the piece map (later ids do not replace earlier equal pieces), byte_ids and the
 * literal list (control/user pieces + extra literals already pushed). */
int ei_tok_finish(ei_tokenizer *t, const char *path);
int ei_tok_map_get(const ei_tokenizer *t, const char *s, size_t n);
int ei_tok_add_literal(ei_tokenizer *t, int id, int special, int lstrip, int rstrip);
void ei_tok_set_identity(ei_tokenizer *t, const char *kind, const char *path, const void *data, size_t n);

/* Growable id vector. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} ei_tok_ids;
int ei_tok_ids_push(ei_tok_ids *a, int32_t id);

/* Symbols and merges shared by both BPE flavours: symbols are spans of buf; merge candidates are
 * ranked by a key (higher first, leftmost on ties). */
typedef struct {
    uint32_t start, len;
    int32_t prev, next;
    int32_t id;
} ei_tok_sym;
/* mode 0: SentencePiece (candidate = merged span found in the piece map, key = its score);
 * mode 1: rank table (candidate = (left id, right id) in t->hf merges, key = -rank). */
int ei_tok_bpe(const ei_tokenizer *t, int mode, const char *buf, ei_tok_sym *sym, int n);

/* UTF-8 helpers */
int ei_utf8_len(unsigned char c); /* length of a sequence from its lead byte (1 for invalid bytes) */
/* Length of the valid UTF-8 character at s (1..4), or 0 when the bytes there are not valid. */
int ei_utf8_valid_at(const unsigned char *s, size_t avail);

/* `first` of a fragment that continues an earlier text (ei_tokenizer_encode_cont): no dummy prefix,
 * no prefix space, leading spaces kept. */
#define EI_TOK_FIRST_CONT (-1)

/* ---- tokenizer_sp.c */
int ei_tok_load_llama2c(ei_tokenizer *t, const char *path, int vocab_hint);
int ei_tok_load_spm(ei_tokenizer *t, const char *path);
/* Encodes one fragment of text (between literal tokens) and appends the ids. `first` says where the
 * fragment stands: 1 at the start of the text, 2 right after a control token, 0 otherwise,
 * EI_TOK_FIRST_CONT when the text continues an earlier one. */
int ei_tok_sp_encode_text(const ei_tokenizer *t, const char *text, size_t len, int first, ei_tok_ids *out);

/* ---- data/tokenizer_hf.c (host side: cJSON, PCRE2). The shared code above reaches it only through
 * these hooks, so the text/ library builds without the host libraries. */
struct ei_tok_hf_ops {
    void (*free)(ei_tok_hf *hf);
    int (*encode_text)(const ei_tokenizer *t, const char *text, size_t len, int first, ei_tok_ids *out);
    /* Bytes of one token for decoding (byte-level mapping undone); returns length written to out (cap
     * >= 4 * piece length + 1). */
    size_t (*piece_bytes)(const ei_tokenizer *t, int id, char *out);
    int (*is_bytelevel)(const ei_tokenizer *t);
    /* Merged id of the pair (a, b) and its rank, or -1 when the merges do not contain it. */
    int (*merge)(const ei_tokenizer *t, int a, int b, int *rank);
};
int ei_tok_load_hf(ei_tokenizer *t, const char *path);

/* ---- tokenizer_nfc.c */
/* NFC-normalises UTF-8 text (invalid bytes pass through). *out malloc'd, caller frees. Returns 0 on
 * success; sets *out = NULL when the input is already NFC (fast path). */
int ei_utf8_nfc(const char *s, size_t n, char **out, size_t *out_len);

#endif
