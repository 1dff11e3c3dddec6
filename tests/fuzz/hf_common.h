/* Hugging Face folders for the config.json and index fuzz targets: a llama folder written from a
 * tiny random model (config.json + model.safetensors) and a copy of the sharded tiny Qwen2 folder of
 * tests/data, built once in the scratch folder; each input then replaces one file of them. */
#ifndef EI_FUZZ_HF_COMMON_H
#define EI_FUZZ_HF_COMMON_H

#include "fuzz.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "formats/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Copies src_dir/name to fz_dir()/sub/name. */
static inline void fz_copy_into(const char *sub, const char *name, const char *src_dir) {
    char src[1200], rel[512], dst[1024];
    snprintf(src, sizeof src, "%s/%s", src_dir, name);
    char *buf;
    size_t len;
    if (ei_file_read_all(src, &buf, &len) != 0) {
        fprintf(stderr, "fuzz: %s\n", ei_error_get());
        exit(1);
    }
    snprintf(rel, sizeof rel, "%s/%s", sub, name);
    fz_write(dst, sizeof dst, rel, buf, len);
    free(buf);
}

/* fz_dir()/llama: dim 8, 2 layers, 2 heads (1 KV head), vocab 32, tied embeddings. */
static inline void fz_make_llama_folder(void) {
    ei_model_config cfg = {.dim = 8, .hidden_dim = 16, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1, .head_dim = 4,
                           .vocab_size = 32, .max_seq_len = 64, .tie_embeddings = 1, .rope_theta = 10000.0f,
                           .norm_eps = 1e-5f, .bos_id = 1, .eos_id = 2};
    char dir[512];
    fz_path(dir, sizeof dir, "llama");
    ei_model *m = ei_model_random(&cfg, 1);
    if (!m || ei_model_save_hf(m, dir) != 0) {
        fprintf(stderr, "fuzz: writing %s: %s\n", dir, ei_error_get());
        exit(1);
    }
    ei_model_free(m);
}

/* fz_dir()/<name>: config.json and the two shards of tests/data/tiny_qwen2 (and its index when
 * with_index is 1). */
static inline void fz_make_qwen2_folder(const char *name, int with_index) {
    char dir[512], src[1024];
    fz_path(dir, sizeof dir, name);
    mkdir(dir, 0755);
    fz_source(src, sizeof src, "tests/data/tiny_qwen2");
    fz_copy_into(name, "config.json", src);
    fz_copy_into(name, "model-00001-of-00002.safetensors", src);
    fz_copy_into(name, "model-00002-of-00002.safetensors", src);
    if (with_index) fz_copy_into(name, "model.safetensors.index.json", src);
}

/* Loads the folder and reads every weight (a pointer past its tensor faults or trips ASan). */
static inline void fz_load_folder(const char *name) {
    char dir[512];
    fz_path(dir, sizeof dir, name);
    ei_model *m = ei_model_load(dir);
    fz_note(name, m != NULL);
    if (!m) return;
    for (int i = 0; i < m->tensors.n; i++) {
        const ei_tensor *t = &m->tensors.t[i];
        if (!t->data) fz_fail("tensor %d has no data", i);
        fz_touch(t->data, 4 * (size_t)t->numel);
    }
    ei_model_free(m);
}

#endif
