/* Tokenizers: llama2.c tokenizer.bin, SentencePiece tokenizer.model (BPE with byte fallback), and
 * Hugging Face tokenizer.json (byte-level BPE as in Llama 3 / Qwen, or SentencePiece-style BPE).
 * One opaque type behind one interface; the format is detected from the path.
 *
 * tokenizer.model encodes exactly as SentencePiece does with the normaliser options the file
 * records (dummy prefix, remove_extra_whitespaces: leading/trailing spaces dropped, runs of spaces
 * collapsed to one). tokenizer.bin has no normaliser options and is encoded as llama2.c's own
 * encoder does: dummy prefix, every space kept, so "a  b" has one more "\xE2\x96\x81" piece than
 * with the tok512.model of the same vocabulary (which collapses runs). Both hold the same pieces,
 * and ei_tokenizer_vocab_hash treats them as the same vocabulary. */
#ifndef EI_TOKENIZER_H
#define EI_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct ei_tokenizer ei_tokenizer;

/* path: a tokenizer.bin, tokenizer.model or tokenizer.json file, or a folder holding one of them
 * (tokenizer.json preferred, then tokenizer.model, then tokenizer.bin / tok*.bin). vocab_hint: the
 * model's vocabulary size for formats whose file does not record it (llama2.c tokenizer.bin), or 0.
 * (Ignored by the other formats; a model's embedding table may be larger than its vocabulary.)
 * tokenizer.json: BOS/EOS come from tokenizer_config.json beside it when present. Thread safety: a
 * loaded tokenizer is read-only; encode/decode may run concurrently on it.
 * Returns NULL with ei_error set (naming the file and the problem) on failure. Caller frees with
 * ei_tokenizer_free. */
ei_tokenizer *ei_tokenizer_load(const char *path, int vocab_hint);
void ei_tokenizer_free(ei_tokenizer *t);

int ei_tokenizer_vocab_size(const ei_tokenizer *t);
int ei_tokenizer_bos(const ei_tokenizer *t); /* -1 if the tokenizer has none */
int ei_tokenizer_eos(const ei_tokenizer *t); /* -1 if the tokenizer has none */
/* Short stable identity for dataset metadata, e.g. "sentencepiece:tok512.model:<hash>": the format,
 * the file name and a hash of the file's bytes. It names the file a dataset was made with; two files
 * holding the same vocabulary (tok512.bin and tok512.model) have different identities. */
const char *ei_tokenizer_identity(const ei_tokenizer *t);
/* Hash of what the token ids mean: the vocabulary size, BOS and EOS ids and every piece's bytes as
 * stored (SentencePiece "\xE2\x96\x81" spaces, "<0x0A>" byte pieces, byte-level characters), in id
 * order. Scores, merges, piece types and the file's format and location do not enter it, so the
 * same vocabulary as llama2.c tokenizer.bin and as SentencePiece tokenizer.model (or in another
 * folder) hashes equal; a different vocabulary of the same size does not. `ei prepare` records it
 * (/meta tokenizer_vocab_hash) and `ei train` / `ei eval --data` compare it with the model's. */
uint64_t ei_tokenizer_vocab_hash(const ei_tokenizer *t);

/* Encodes len bytes of UTF-8 text. add_bos prepends BOS when the tokenizer has one. Special/added
 * tokens written literally in the text (e.g. "<|im_start|>") are recognised when parse_special is 1.
 * *ids is malloc'd (caller frees), *n its length. */
int ei_tokenizer_encode(const ei_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                        int32_t **ids, size_t *n);

/* Encodes text that continues an earlier text, as it is encoded in the middle of the whole: no BOS,
 * no dummy prefix or Metaspace / byte-level prefix space, and leading spaces are kept (collapsed to
 * one where the tokenizer collapses runs of spaces). When the earlier text ends with a character
 * that is not a space and no piece spans the boundary (true at a word boundary for SentencePiece
 * vocabularies and by construction for byte-level pre-tokenizers, whose words start at a space),
 * encode(a) + encode_cont(b) equals encode(a + b). `ei prepare` encodes the answer of an instruction
 * sample this way after its prompt (data/prepare.h). */
int ei_tokenizer_encode_cont(const ei_tokenizer *t, const char *text, size_t len, int parse_special, int32_t **ids,
                             size_t *n);

/* Decodes ids to UTF-8 text (BOS/EOS and other control tokens dropped). *text malloc'd, NUL-ended. */
int ei_tokenizer_decode(const ei_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len);

/* Streaming decode for generation: the bytes that token `id` adds after token `prev` (-1 at start),
 * written to buf (cap bytes, NUL-terminated). Returns the number of bytes. The SentencePiece dummy
 * prefix is dropped after BOS (or another control token, or at the start); a byte-fallback piece
 * <0xXX> (and a byte-level piece ending inside a character) yields its raw bytes, so writing the
 * pieces one after another reproduces ei_tokenizer_decode's UTF-8 exactly. Control tokens yield "". */
int ei_tokenizer_decode_piece(const ei_tokenizer *t, int prev, int id, char *buf, size_t cap);

/* Id of an exact piece/added token, or -1. */
int ei_tokenizer_piece_id(const ei_tokenizer *t, const char *piece);

/* The stored piece of id as written in the vocabulary (SentencePiece "\xE2\x96\x81" for spaces,
 * "<0x0A>" for byte pieces, byte-level characters for tokenizer.json), "" for an unknown id. Owned by
 * the tokenizer. */
const char *ei_tokenizer_piece(const ei_tokenizer *t, int id);

/* Overrides BOS/EOS (e.g. from a model's config.json); -1 means none. Ids outside the vocabulary
 * are ignored. */
void ei_tokenizer_set_special(ei_tokenizer *t, int bos, int eos);

/* ---- Plain vocabulary (text/tokenizer_vocab.c): everything a device needs to rebuild a tokenizer
 * without its original files; the .eig writer stores it and the reader hands it back (DESIGN 6.3).
 * A tokenizer rebuilt from a vocabulary decodes every kind, and encodes the SentencePiece /
 * llama2.c kind exactly like the original. Hugging Face tokenizer.json kinds need their regex
 * pre-tokenizer and normaliser, which live host-side (data/tokenizer_hf.c): a rebuilt one decodes,
 * and refuses to encode text with a clear error (literal special tokens still encode). */
enum { EI_TOKV_SENTENCEPIECE = 1, EI_TOKV_HF = 2 }; /* ei_tok_vocab.kind */
enum {                                              /* ei_tok_vocab.flags */
    EI_TOKV_ADD_DUMMY_PREFIX = 1,    /* encoding prepends U+2581 to the text */
    EI_TOKV_REMOVE_EXTRA_WS = 2,     /* encoding trims and collapses spaces */
    EI_TOKV_BYTE_FALLBACK = 4,       /* unknown characters become <0xXX> pieces */
    EI_TOKV_STRIP_LEADING_SPACE = 8, /* decoding drops the dummy prefix's space */
    EI_TOKV_BYTE_LEVEL = 16,         /* GPT-2 byte-level pieces (tokenizer.json kinds only) */
};
/* Piece types, numbered as SentencePiece's ModelProto.SentencePiece.Type. */
enum { EI_TOKV_NORMAL = 1, EI_TOKV_UNKNOWN = 2, EI_TOKV_CONTROL = 3, EI_TOKV_USER = 4, EI_TOKV_UNUSED = 5,
       EI_TOKV_BYTE = 6 };
/* ei_tok_vocab_piece.literal: the piece is matched verbatim in the text before normalisation
 * (control pieces, user pieces, added tokens); SPECIAL ones only when encoding with parse_special;
 * LSTRIP / RSTRIP swallow whitespace on that side. */
enum { EI_TOKV_LITERAL = 1, EI_TOKV_LIT_SPECIAL = 2, EI_TOKV_LIT_LSTRIP = 4, EI_TOKV_LIT_RSTRIP = 8 };

typedef struct {
    const char *bytes; /* len bytes as stored in the vocabulary (not NUL-terminated) */
    uint32_t len;
    float score;     /* SentencePiece merge priority (higher first); 0 for tokenizer.json kinds */
    uint8_t type;    /* EI_TOKV_NORMAL .. EI_TOKV_BYTE */
    uint8_t literal; /* EI_TOKV_LITERAL | EI_TOKV_LIT_*, or 0 */
} ei_tok_vocab_piece;

typedef struct {
    int32_t left, right, merged, rank; /* pieces (left, right) merge into `merged`; lower rank first */
} ei_tok_vocab_merge;

typedef struct {
    int kind;       /* EI_TOKV_SENTENCEPIECE or EI_TOKV_HF */
    uint32_t flags; /* EI_TOKV_* flags */
    int32_t bos, eos, unk; /* -1 if none */
    int32_t n_pieces;
    const ei_tok_vocab_piece *pieces; /* [n_pieces], by id */
    int32_t n_merges;
    const ei_tok_vocab_merge *merges; /* [n_merges] by rank: byte-level / tokenizer.json BPE only */
    const char *identity;             /* ei_tokenizer_identity of the original tokenizer */
} ei_tok_vocab;

#define EI_TOKV_MAX_PIECES (1 << 24)
#define EI_TOKV_MAX_PIECE_LEN 0xFFFFFF
#define EI_TOKV_MAX_MERGES (1 << 24)

/* Describes t. The pieces and merges arrays are allocated (release them with ei_tok_vocab_free);
 * piece bytes and the identity BORROW the tokenizer's storage, so t must outlive *out. */
int ei_tokenizer_export(const ei_tokenizer *t, ei_tok_vocab *out);
void ei_tok_vocab_free(ei_tok_vocab *v);
/* Checks a vocabulary (from a file: every count, length, type, flag and id). -1 with ei_error set
 * ("<what>: piece 12: ...") on the first problem. */
int ei_tok_vocab_check(const ei_tok_vocab *v, const char *what);
/* A tokenizer rebuilt from v, which it COPIES (v may be freed after). NULL with ei_error set if v
 * fails ei_tok_vocab_check or memory runs out. Free with ei_tokenizer_free. */
ei_tokenizer *ei_tokenizer_from_vocab(const ei_tok_vocab *v);

#endif
