/* Tokenizers: llama2.c tokenizer.bin, SentencePiece tokenizer.model (BPE with byte fallback), and
 * Hugging Face tokenizer.json (byte-level BPE as in Llama 3 / Qwen, or SentencePiece-style BPE).
 * One opaque type behind one interface; the format is detected from the path. */
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
/* Short stable identity for dataset metadata, e.g. "sentencepiece:tok512.model:<hash>". */
const char *ei_tokenizer_identity(const ei_tokenizer *t);

/* Encodes len bytes of UTF-8 text. add_bos prepends BOS when the tokenizer has one. Special/added
 * tokens written literally in the text (e.g. "<|im_start|>") are recognised when parse_special is 1.
 * *ids is malloc'd (caller frees), *n its length. */
int ei_tokenizer_encode(const ei_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                        int32_t **ids, size_t *n);

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

#endif
