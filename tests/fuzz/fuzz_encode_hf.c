/* Fuzz target: the tokenizer.json encoder (data/tokenizer_hf.c normalisers, regex pre-tokenizers,
 * byte-level mapping, Metaspace, rank-driven BPE; text/tokenizer.c literals) on arbitrary bytes, for
 * the Llama 3 and Qwen 3 byte-level tokenizers and the two SentencePiece-style tok512 exports of
 * tests/tokenizer. Input: one byte picks the tokenizer, the rest is text. */
#include "encode_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_load_tok("tokenizers/llama3/tokenizer.json", 1, 0);
    fz_load_tok("tokenizers/qwen3/tokenizer.json", 1, 0);
    fz_load_tok("tests/tokenizer/tok512_hf/tokenizer.json", 0, 0);
    fz_load_tok("tests/tokenizer/tok512_hf_metaspace/tokenizer.json", 0, 0);
    atexit(fz_free_toks);
    return 0;
}
