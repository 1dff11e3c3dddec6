/* Fuzz target: Hugging Face tokenizer.json (data/tokenizer_hf.c: vocab, merges, added tokens,
 * normalizers, pre-tokenizers with their regexes, decoder), loaded through ei_tokenizer_load.
 * Input: the tokenizer.json; after a NUL byte, the tokenizer_config.json placed beside it (BOS/EOS
 * names), which the loader reads when present. The loaded tokenizer then encodes fixed texts and
 * the input's own first bytes (tok_check.c). */
#include "fuzz.h"
#include "tok_check.h"

#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t main_len = nul ? (size_t)(nul - data) : size;
    char path[512], cfg[512];
    fz_path(cfg, sizeof cfg, "tokenizer_config.json");
    if (nul) fz_write(cfg, sizeof cfg, "tokenizer_config.json", nul + 1, size - main_len - 1);
    else unlink(cfg);
    fz_write(path, sizeof path, "tokenizer.json", data, main_len);
    ei_tokenizer *t = ei_tokenizer_load(path, 0);
    fz_note("tokenizer.json", t != NULL);
    if (t) fz_check_tokenizer(t, data, main_len < 64 ? main_len : 64);
    ei_tokenizer_free(t);
    return 0;
}
