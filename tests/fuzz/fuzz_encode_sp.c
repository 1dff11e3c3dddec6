/* Fuzz target: the SentencePiece-style encoder (text/tokenizer.c literal splitting and BPE engine,
 * text/tokenizer_sp.c normaliser, merges, byte fallback) on arbitrary bytes, for tok512.model,
 * tok512.bin and Llama 2's tokenizer.model. Input: one byte picks the tokenizer, the rest is text.
 * Ids must be in range, decoding must agree with streaming decoding, and the tokenizer rebuilt from
 * the exported vocabulary (what a .eig holds) must encode identically. */
#include "encode_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_load_tok("models/stories260K/tok512.model", 1, 1);
    fz_load_tok("models/stories260K/tok512.bin", 1, 1);
    fz_load_tok("tokenizers/llama2/tokenizer.model", 1, 1);
    atexit(fz_free_toks);
    return 0;
}
