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

/* Tokenizer files given where a model is expected fail the header checks with nonsense numbers
 * ("n_heads (1802401084)"), so they are recognised first: a llama2.c tokenizer.bin is an int32
 * max_token_length and then (float score, int32 length, bytes) entries that end exactly at the end
 * of the file; a tokenizer.json starts with '{' and a quote or a space; a SentencePiece
 * tokenizer.model is a protobuf whose first field is a piece (0x0A) holding a string (0x0A again).
 * A checkpoint's header (7 dimensions, then floats) fails the walk within a few entries. */
static const char *tokenizer_kind(const uint8_t *p, size_t size) {
    if (size >= 2 && p[0] == '{' && (p[1] == '"' || p[1] == '\n' || p[1] == ' ' || p[1] == '\r'))
        return "a JSON file (tokenizer.json?)";
    if (size >= 3 && p[0] == 0x0A && p[2] == 0x0A) return "a SentencePiece tokenizer.model";
    if (size < 4 + 3 * 8) return NULL;
    int32_t maxlen;
    memcpy(&maxlen, p, 4);
    if (maxlen <= 0 || maxlen > 1024) return NULL;
    size_t pos = 4;
    long count = 0;
    while (pos < size) {
        int32_t len;
        if (size - pos < 8) return NULL;
        memcpy(&len, p + pos + 4, 4);
        if (len < 0 || len > maxlen || (size_t)len > size - pos - 8) return NULL;
        pos += 8 + (size_t)len;
        count++;
    }
    return count >= 3 ? "a llama2.c tokenizer.bin" : NULL;
}

ei_model *ei_model_load_llama2c(const char *path) {
    ei_model *m = ei_model_new_empty(path, "llama2c");
    if (!m) return NULL;
    ei_model_storage *s = ei_model_storage_of(m);
    if (ei_file_map_open(&s->map, path) != 0) goto fail;
    const uint8_t *base = s->map.data;
    size_t size = s->map.size;
    const char *tok = tokenizer_kind(base, size);
    if (tok) {
        ei_error_set("%s: this is %s, not a model (pass it as --tokenizer; --model takes a llama2.c .bin "
                     "checkpoint or a Hugging Face folder)",
                     path, tok);
        goto fail;
    }
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
    if (ei_tensor_table_init(&m->tensors, c) != 0) goto fail;
    /* The file stores the embedding, then each per-layer class for all layers at once, in this
     * order, then the final norm, the RoPE tables (ignored: computed) and an untied classifier.
     * Sizes come from the tensor table, so the shapes are stated in one place. */
    static const ei_tclass stacked[] = {EI_TC_ATTN_NORM, EI_TC_Q,        EI_TC_K,    EI_TC_V,   EI_TC_O,
                                        EI_TC_FFN_NORM,  EI_TC_GATE,     EI_TC_DOWN, EI_TC_UP};
    const size_t freq = (size_t)c->max_seq_len * (size_t)c->head_dim; /* freq_cis real + imag */
    size_t n_floats = freq;
    for (int i = 0; i < m->tensors.n; i++) n_floats += (size_t)m->tensors.t[i].numel;
    size_t expect = HEADER_BYTES + 4 * n_floats;
    if (size != expect) {
        ei_error_set("%s: file is %zu bytes but a llama2.c v0 checkpoint with dim %d, hidden %d, %d layers, "
                     "%d/%d heads, vocab %d (%s), seq_len %d must be %zu bytes",
                     path, size, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
                     c->tie_embeddings ? "shared classifier" : "own classifier", c->max_seq_len, expect);
        goto fail;
    }
    const float *p = (const float *)(base + HEADER_BYTES);
    ei_tensor *t = ei_tensor_table_at(&m->tensors, EI_TC_EMBEDDING, -1);
    t->data = p;
    p += t->numel;
    for (size_t k = 0; k < sizeof stacked / sizeof stacked[0]; k++)
        for (int l = 0; l < c->n_layers; l++) {
            t = ei_tensor_table_at(&m->tensors, stacked[k], l);
            t->data = p;
            p += t->numel;
        }
    t = ei_tensor_table_at(&m->tensors, EI_TC_FINAL_NORM, -1);
    t->data = p;
    p += t->numel + freq;
    if (!c->tie_embeddings) ei_tensor_table_at(&m->tensors, EI_TC_CLASSIFIER, -1)->data = p;
    m->n_params = ei_model_config_n_params(c);
    m->identity = ei_hash_fnv1a(base, HEADER_BYTES, ei_hash_fnv1a(&size, sizeof size, 0));
    return m;
fail:
    ei_model_free(m);
    return NULL;
}
