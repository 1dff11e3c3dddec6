/* Invariants of a loaded tokenizer, shared by the tokenizer fuzz targets (tok_check.c). */
#ifndef EI_FUZZ_TOK_CHECK_H
#define EI_FUZZ_TOK_CHECK_H

#include "text/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

/* Encodes a few fixed texts and extra (may be empty) every way, decodes, looks pieces up, exports
 * and rebuilds; fz_fail on any broken promise. */
void fz_check_tokenizer(const ei_tokenizer *t, const uint8_t *extra, size_t extra_len);

/* Encodes s (n bytes) with and without BOS, with and without special tokens, and as a
 * continuation; checks the ids and decoding. rebuilt (may be NULL): the tokenizer rebuilt from t's
 * exported vocabulary, which must give the same ids (SentencePiece kinds). */
void fz_check_encode(const ei_tokenizer *t, const ei_tokenizer *rebuilt, const char *s, size_t n);

#endif
