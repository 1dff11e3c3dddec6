/* Llama-family model configuration (DESIGN 2): the sizes and options a base model is described by,
 * shared by the host loaders (formats/), the training code and the on-device runtime (the .eig
 * metadata carries one). Plain values, no ownership; libc only. */
#ifndef EI_MODEL_CONFIG_H
#define EI_MODEL_CONFIG_H

#include <stddef.h>

typedef struct {
    int dim;          /* hidden size D */
    int hidden_dim;   /* MLP inner size */
    int n_layers;
    int n_heads;      /* query heads H */
    int n_kv_heads;   /* key/value heads H_kv (H % H_kv == 0) */
    int head_dim;     /* d; may differ from dim / n_heads */
    int vocab_size;
    int max_seq_len;  /* trained context */
    float rope_theta;
    float norm_eps;
    int tie_embeddings;   /* classifier == token embedding */
    int qkv_bias;         /* q/k/v projections have biases (Qwen2) */
    int rope_interleaved; /* 1: pairs (x[2i], x[2i+1]) as llama2.c; 0: rotate-half (x[i], x[i+d/2]) as HF */
    int bos_id, eos_id;   /* -1 if unknown */
} ei_model_config;

/* Checks a configuration for consistency (positive, sane sizes; n_heads % n_kv_heads == 0; even
 * head_dim; finite positive rope_theta and norm_eps; token ids inside the vocabulary). what names the
 * source in the error ("<what>: ..."). */
int ei_model_config_validate(const ei_model_config *c, const char *what);

/* Number of parameters implied by a configuration (classifier counted only when untied). */
size_t ei_model_config_n_params(const ei_model_config *c);

#endif
