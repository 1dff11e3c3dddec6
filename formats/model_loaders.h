/* Private to the model loaders (train/model*.c): the storage an ei_model owns behind m->priv. */
#ifndef EI_MODEL_LOADERS_H
#define EI_MODEL_LOADERS_H

#include "core/ei_io.h"
#include "formats/model.h"
#include "formats/safetensors.h"

typedef struct {
    ei_file_map map;   /* llama2.c: the whole .bin, weights point into it */
    ei_st_file **st;   /* Hugging Face: open safetensors files (shards) */
    int n_st;
    void **bufs;       /* malloc'd blocks (converted tensors, layer table) */
    int n_bufs, cap_bufs;
} ei_model_storage;

/* A zeroed model with its storage, path and format set; NULL with ei_error set on OOM. */
ei_model *ei_model_new_empty(const char *path, const char *format);
ei_model_storage *ei_model_storage_of(ei_model *m);
/* malloc's n bytes owned by the model (freed with it); NULL with ei_error set. */
void *ei_model_alloc(ei_model *m, size_t n);

#endif
