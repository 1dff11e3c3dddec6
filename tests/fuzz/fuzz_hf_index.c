/* Fuzz target: sharded Hugging Face models, model.safetensors.index.json (formats/model_hf.c:
 * weight_map, shard names that must stay inside the folder, shards opened once each) over the two
 * shards of the tiny Qwen2 model in tests/data; the shards' own headers are the safetensors target's
 * job. */
#include "hf_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_make_qwen2_folder("sharded", 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char p[512];
    fz_write(p, sizeof p, "sharded/model.safetensors.index.json", data, size);
    fz_load_folder("sharded");
    return 0;
}
