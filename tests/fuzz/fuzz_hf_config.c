/* Fuzz target: Hugging Face config.json (formats/model_hf.c: model type, integer / float / bool
 * fields, head_dim, biases, validation against model/config.c) in two folders: a tiny llama model
 * with one model.safetensors, and the sharded tiny Qwen2 model of tests/data. The config decides
 * the shapes the loader then looks for in the tensors. */
#include "hf_common.h"

#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_make_llama_folder();
    fz_make_qwen2_folder("qwen2", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char p[512];
    fz_write(p, sizeof p, "llama/config.json", data, size);
    fz_load_folder("llama");
    fz_write(p, sizeof p, "qwen2/config.json", data, size);
    fz_load_folder("qwen2");
    return 0;
}
