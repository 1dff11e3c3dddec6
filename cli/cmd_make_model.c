/* `ei make-model`: a Llama model of any size with deterministic random weights, written in the
 * llama2.c layout (a .bin file) or the Hugging Face layout (a folder), for benchmarks and tests
 * that need a realistic size without a download. Both layouts of one seed hold the same model. */
#include "cli/commands.h"
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "formats/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ei_cmd_make_model(int argc, char **argv) {
    ei_model_config c = {.dim = 768, .hidden_dim = 2048, .n_layers = 12, .n_heads = 12, .n_kv_heads = 4,
                         .vocab_size = 32000, .max_seq_len = 2048, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                         .tie_embeddings = 1, .rope_interleaved = 1, .bos_id = 1, .eos_id = 2};
    const char *out = NULL, *layout = "llama2c";
    int64_t seed = 1;
    int untied = 0;
    ei_arg opts[] = {
        {"dim", EI_ARG_INT, &c.dim, "D", "hidden size"},
        EI_ARG_RANGE(1, 1 << 16),
        {"hidden", EI_ARG_INT, &c.hidden_dim, "F", "MLP inner size"},
        EI_ARG_RANGE(1, 1 << 18),
        {"layers", EI_ARG_INT, &c.n_layers, "N", "transformer blocks"},
        EI_ARG_RANGE(1, 1024),
        {"heads", EI_ARG_INT, &c.n_heads, "H", "query heads (head_dim = dim / heads)"},
        EI_ARG_RANGE(1, 1024),
        {"kv-heads", EI_ARG_INT, &c.n_kv_heads, "H", "key/value heads (grouped-query attention)"},
        EI_ARG_RANGE(1, 1024),
        {"vocab", EI_ARG_INT, &c.vocab_size, "V", "vocabulary size"},
        EI_ARG_RANGE(1, 1 << 22),
        {"seq-len", EI_ARG_INT, &c.max_seq_len, "N", "trained context the model claims"},
        EI_ARG_RANGE(1, 1 << 24),
        {"untied", EI_ARG_FLAG, &untied, NULL, "own classifier instead of the shared embedding"},
        {"layout", EI_ARG_STR, &layout, "llama2c|hf", "llama2.c checkpoint file or Hugging Face folder"},
        {"seed", EI_ARG_I64, &seed, "S", "seed of the weights"},
        EI_ARG_RANGE(0, 9007199254740992.0),
        {"o", EI_ARG_STR, &out, "PATH", "file (llama2c) or folder (hf) to write (required)"},
        {"output", EI_ARG_STR, &out, "PATH", "same as -o"},
        {0}};
    int rc = ei_args_parse(argc, argv, "ei make-model",
                           "Writes a Llama-family model with deterministic random weights (default: the ~100M "
                           "parameter benchmark model, dim 768, 12 layers, 12 heads, 4 KV heads, hidden 2048, "
                           "vocab 32000).",
                           opts, NULL, NULL);
    if (rc) return rc < 0 ? 2 : 0;
    if (!out) {
        fprintf(stderr, "ei make-model: error: --output PATH is required (see --help)\n");
        return 2;
    }
    if (strcmp(layout, "llama2c") != 0 && strcmp(layout, "hf") != 0) {
        fprintf(stderr, "ei make-model: error: --layout must be llama2c or hf, got '%s'\n", layout);
        return 2;
    }
    c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
    c.tie_embeddings = !untied;
    if (c.n_heads > 0 && c.dim % c.n_heads) {
        fprintf(stderr, "ei make-model: error: --dim %d is not a multiple of --heads %d\n", c.dim, c.n_heads);
        return 2;
    }
    ei_model *m = ei_model_random(&c, (uint64_t)seed);
    int ok = m && (strcmp(layout, "hf") == 0 ? ei_model_save_hf(m, out) : ei_model_save_llama2c(m, out)) == 0;
    if (ok)
        fprintf(stderr, "make-model: %s (%s): %zu parameters, %.1f MB of float32\n", out, layout, m->n_params,
                (double)m->n_params * 4 / 1e6);
    else
        ei_error_print("make-model");
    ei_model_free(m);
    return ok ? 0 : 1;
}
