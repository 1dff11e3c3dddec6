/* llama2.c checkpoints, version 0 ("legacy" export of karpathy/llama2.c): a header of 7 int32
 * (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative: untied classifier),
 * seq_len), then float32 tensors: token_embedding [V,D], rms_att [L,D], wq [L,D,D], wk [L,KV,D],
 * wv [L,KV,D], wo [L,D,D], rms_ffn [L,D], w1 [L,F,D], w2 [L,D,F], w3 [L,F,D], rms_final [D],
 * freq_cis_real and freq_cis_imag [seq_len, head_size/2] each (ignored; we compute RoPE), and
 * wcls [V,D] when untied. Each per-layer tensor is stored for all layers at once. The file is mapped
 * and the weights point into it (the 28-byte header keeps them 4-byte aligned). */
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "formats/model.h"
#include "formats/model_loaders.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_BYTES 28

ei_model *ei_model_load_llama2c(const char *path) {
    ei_model *m = ei_model_new_empty(path, "llama2c");
    if (!m) return NULL;
    ei_model_storage *s = ei_model_storage_of(m);
    if (ei_file_map_open(&s->map, path) != 0) goto fail;
    const uint8_t *base = s->map.data;
    size_t size = s->map.size;
    if (size < HEADER_BYTES) {
        ei_error_set("%s: %zu bytes, too short for a llama2.c checkpoint header (%d bytes)", path, size, HEADER_BYTES);
        goto fail;
    }
    int32_t h[7];
    memcpy(h, base, sizeof h);
    ei_model_config *c = &m->cfg;
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->tie_embeddings = h[5] > 0;
    c->vocab_size = h[5] == INT32_MIN ? 0 : abs(h[5]);
    c->max_seq_len = h[6];
    c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->qkv_bias = 0;
    c->rope_interleaved = 1;
    c->bos_id = 1;
    c->eos_id = 2;
    if (c->n_heads > 0 && c->dim % c->n_heads != 0) {
        ei_error_set("%s: llama2.c header: dim (%d) is not a multiple of n_heads (%d)", path, c->dim, c->n_heads);
        goto fail;
    }
    char what[4096];
    snprintf(what, sizeof what, "%s: llama2.c header", path);
    if (ei_model_config_validate(c, what) != 0) goto fail;
    /* Expected size, counted in floats (validated dims keep this far from overflow in size_t). */
    size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim, L = (size_t)c->n_layers, V = (size_t)c->vocab_size;
    size_t KV = (size_t)c->n_kv_heads * c->head_dim, hs = (size_t)c->head_dim;
    size_t n_floats = V * D + L * (D + D * D + 2 * KV * D + D * D + D + 3 * F * D) + D +
                      2 * (size_t)c->max_seq_len * hs / 2 + (c->tie_embeddings ? 0 : V * D);
    size_t expect = HEADER_BYTES + 4 * n_floats;
    if (size != expect) {
        ei_error_set("%s: file is %zu bytes but a llama2.c v0 checkpoint with dim %d, hidden %d, %d layers, "
                     "%d/%d heads, vocab %d (%s), seq_len %d must be %zu bytes",
                     path, size, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
                     c->tie_embeddings ? "shared classifier" : "own classifier", c->max_seq_len, expect);
        goto fail;
    }
    const float *p = (const float *)(base + HEADER_BYTES);
    m->layers = ei_model_alloc(m, sizeof(ei_layer_weights) * L);
    if (!m->layers) goto fail;
    m->tok_embeddings = p;
    p += V * D;
    /* Per-layer tensors are stacked over layers: take layer l's slice of each. */
#define STACKED(field, per_layer)                                                                              \
    for (size_t l = 0; l < L; l++) m->layers[l].field = p + l * (per_layer);                                   \
    p += L * (per_layer);
    STACKED(attn_norm, D)
    STACKED(wq, D * D)
    STACKED(wk, KV * D)
    STACKED(wv, KV * D)
    STACKED(wo, D * D)
    STACKED(ffn_norm, D)
    STACKED(w_gate, F * D)
    STACKED(w_down, D * F)
    STACKED(w_up, F * D)
#undef STACKED
    m->final_norm = p;
    p += D;
    p += 2 * (size_t)c->max_seq_len * hs / 2; /* freq_cis_real, freq_cis_imag */
    m->classifier = c->tie_embeddings ? m->tok_embeddings : p;
    m->n_params = ei_model_config_n_params(c);
    m->identity = ei_hash_fnv1a(base, HEADER_BYTES, ei_hash_fnv1a(&size, sizeof size, 0));
    return m;
fail:
    ei_model_free(m);
    return NULL;
}
