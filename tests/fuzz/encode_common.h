/* The two encoder targets (fuzz_encode_sp.c, fuzz_encode_hf.c): a fixed set of tokenizers loaded
 * once, arbitrary bytes encoded by the one the first input byte picks. */
#ifndef EI_FUZZ_ENCODE_COMMON_H
#define EI_FUZZ_ENCODE_COMMON_H

#include "fuzz.h"
#include "tok_check.h"

#include "core/ei_error.h"

#include <stdio.h>
#include <stdlib.h>

#define FZ_MAX_TOKENIZERS 8

static ei_tokenizer *fz_toks[FZ_MAX_TOKENIZERS], *fz_rebuilt[FZ_MAX_TOKENIZERS];
static int fz_n_toks;

/* Loads path (relative to the fixtures when fixture is 1, to the source tree otherwise) and, when
 * rebuild is 1, the tokenizer rebuilt from its exported vocabulary. A missing file is fatal: the
 * corpus was made for these tokenizers. */
static inline void fz_load_tok(const char *rel, int fixture, int rebuild) {
    char p[1024];
    if (fixture) fz_fixture(p, sizeof p, rel);
    else fz_source(p, sizeof p, rel);
    ei_tokenizer *t = ei_tokenizer_load(p, 0);
    if (!t) {
        fprintf(stderr, "fuzz: %s\n", ei_error_get());
        exit(1);
    }
    ei_tokenizer *r = NULL;
    if (rebuild) {
        ei_tok_vocab v;
        if (ei_tokenizer_export(t, &v) != 0 || !(r = ei_tokenizer_from_vocab(&v))) {
            fprintf(stderr, "fuzz: %s: %s\n", p, ei_error_get());
            exit(1);
        }
        ei_tok_vocab_free(&v);
    }
    fz_toks[fz_n_toks] = t;
    fz_rebuilt[fz_n_toks] = r;
    fz_n_toks++;
}

static inline void fz_free_toks(void) {
    for (int i = 0; i < fz_n_toks; i++) {
        ei_tokenizer_free(fz_toks[i]);
        ei_tokenizer_free(fz_rebuilt[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size || !fz_n_toks) return 0;
    int k = data[0] % fz_n_toks;
    fz_check_encode(fz_toks[k], fz_rebuilt[k], (const char *)data + 1, size - 1);
    return 0;
}

#endif
