/* Fuzz target: SentencePiece tokenizer.model (text/tokenizer_sp.c: the bounds-checked protobuf
 * reader, pieces, trainer and normalizer specs), loaded through ei_tokenizer_load, then the
 * tokenizer invariants of tok_check.c. */
#include "fuzz.h"
#include "tok_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fz_write(path, sizeof path, "tokenizer.model", data, size);
    ei_tokenizer *t = ei_tokenizer_load(path, 0);
    fz_note("tokenizer.model", t != NULL);
    if (t) fz_check_tokenizer(t, data + size / 2, size - size / 2 < 32 ? size - size / 2 : 32);
    ei_tokenizer_free(t);
    return 0;
}
