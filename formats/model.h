/* Llama-family base models: configuration, weights, loading (llama2.c v0 and Hugging Face folders).
 *
 * Weights are float32, row-major, PyTorch nn.Linear convention: a projection from n_in to n_out is
 * stored as [n_out, n_in] (y = W x); shapes come from the tensor table (model/tensors.h). The model owns its weights (either a malloc'd block or a
 * read-only memory map of an F32 file); ei_model_free releases everything. Weights are never
 * written after loading: the base model is frozen. */
#ifndef EI_MODEL_H
#define EI_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "model/tensors.h"


typedef struct ei_model {
    ei_model_config cfg;
    ei_tensor_table tensors;     /* every weight by (class, layer); data owned by the model */
    char *path;                  /* as given to ei_model_load */
    char *format;                /* "llama2c" or "hf" */
    uint64_t identity;           /* hash of header/config and file size: checkpoints refer to it */
    size_t n_params;             /* number of base-model parameters */
    void *priv;                  /* loader-owned storage (maps, buffers) */
} ei_model;

/* Weight of (class, layer) as float32 (model/tensors.h), NULL when the model has none (biases
 * without qkv_bias); a tied classifier is the embedding. */
const float *ei_model_weight(const ei_model *m, ei_tclass c, int layer);

/* Loads a llama2.c .bin file or a Hugging Face folder (config.json + safetensors). The format is
 * detected from the path. Every weight must be finite (a NaN or inf is an error naming the tensor
 * and the element). Returns NULL with ei_error set on failure. */
ei_model *ei_model_load(const char *path);

/* 0 when p[0..n) is finite; else -1 with ei_error "<what>: tensor <name> holds a non-finite value
 * (NaN) at element i (row r, column c)" (rows of cols elements; cols <= 1: no row/column). */
int ei_check_finite(const float *p, int64_t n, const char *what, const char *name, int64_t cols);
void ei_model_free(ei_model *m);

/* Tokenizer path that belongs to a model path: a folder's own tokenizer files, or for a llama2.c
 * .bin the tokenizer.bin / tok<V>.bin beside it. malloc'd, NULL when none is found. */
char *ei_model_default_tokenizer(const char *model_path, int vocab_size);

/* The format-specific loaders behind ei_model_load (same ownership rules). path is the .bin file for
 * llama2.c and the folder holding config.json for Hugging Face. */
ei_model *ei_model_load_llama2c(const char *path);
ei_model *ei_model_load_hf(const char *dir);


/* Hugging Face tensor name of a class, with %d for the layer ("model.layers.%d.mlp.up_proj.weight"). */
const char *ei_model_hf_name(ei_tclass c);

/* A model of configuration cfg with deterministic random weights (seed): uniform with variance
 * 1/fan_in for projections, 1 +- 0.1 for norms. For tests, the self-check and benchmarks. Owned by
 * the caller (ei_model_free). */
ei_model *ei_model_random(const ei_model_config *cfg, uint64_t seed);
/* Writers, atomically. llama2.c v0 (needs no biases, head_dim * heads == dim, rope_theta 10000);
 * Hugging Face folder (config.json + model.safetensors, F32). q/k rows are permuted between the
 * RoPE layouts as the Hugging Face conversion does, so either file loads to the same logits. */
int ei_model_save_llama2c(const ei_model *m, const char *path);
int ei_model_save_hf(const ei_model *m, const char *dir);

#endif
