/* Fuzz target: llama2.c tokenizer.bin (text/tokenizer_sp.c: max_token_length, then score / length /
 * bytes entries), loaded through ei_tokenizer_load with no vocabulary hint and with the hint the
 * first byte gives (the model's vocabulary size must then match the entry count exactly), then the
 * tokenizer invariants of tok_check.c. */
#include "fuzz.h"
#include "tok_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fz_write(path, sizeof path, "tokenizer.bin", data, size);
    ei_tokenizer *t = ei_tokenizer_load(path, 0);
    fz_note("tokenizer.bin", t != NULL);
    if (t) {
        int v = ei_tokenizer_vocab_size(t);
        fz_check_tokenizer(t, data + size / 2, size - size / 2 < 32 ? size - size / 2 : 32);
        ei_tokenizer_free(t);
        /* the same file with its own size as the hint loads; one more is a mismatch */
        t = ei_tokenizer_load(path, v);
        if (!t) fz_fail("tokenizer.bin of %d pieces refused with vocab hint %d", v, v);
        ei_tokenizer_free(t);
        t = ei_tokenizer_load(path, v + 1);
        if (t) fz_fail("tokenizer.bin of %d pieces accepted with vocab hint %d", v, v + 1);
    }
    ei_tokenizer_free(t);
    return 0;
}
