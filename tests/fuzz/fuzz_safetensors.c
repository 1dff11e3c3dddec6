/* Fuzz target: single safetensors files (formats/safetensors.c: header length, JSON header, dtypes,
 * shapes, data offsets against the file) and the gate-file readers on top of them
 * (formats/gates.c: ei_gates_load, ei_gates_file_opts). A file that opens must describe tensors
 * that lie inside it, do not overlap and have nbytes = numel * dtype size. */
#include "fuzz.h"

#include "formats/gates.h"
#include "formats/safetensors.h"
#include "model/config.h"
#include "model/options.h"

#include <stdlib.h>
#include <string.h>

static int by_data(const void *a, const void *b) {
    const ei_st_tensor *x = *(const ei_st_tensor *const *)a, *y = *(const ei_st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

/* The reader maps the file itself, so its bounds are checked by reading every tensor's bytes
 * (past the map they fault) and by the layout: sizes from shape and dtype, no overlaps. */
static void check_tensors(const ei_st_file *f) {
    int n = ei_st_count(f);
    const ei_st_tensor **order = malloc(sizeof *order * (size_t)(n + 1));
    if (!order) return;
    for (int i = 0; i < n; i++) order[i] = ei_st_get(f, i);
    qsort(order, (size_t)n, sizeof *order, by_data);
    for (int i = 1; i < n; i++)
        if (order[i]->nbytes && order[i - 1]->data + order[i - 1]->nbytes > order[i]->data)
            fz_fail("tensors '%s' and '%s' overlap", order[i - 1]->name, order[i]->name);
    free(order);
    for (int i = 0; i < ei_st_count(f); i++) {
        const ei_st_tensor *t = ei_st_get(f, i);
        if (!t || !t->name) fz_fail("tensor %d has no name", i);
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
        if (numel != t->numel || t->nbytes != numel * ei_st_dtype_size(t->dtype))
            fz_fail("tensor '%s': numel %zu / nbytes %zu do not match its shape and dtype", t->name, t->numel,
                    t->nbytes);
        /* (ei_st_find is a linear search: only for files of ordinary size) */
        if (n <= 1024 && ei_st_find(f, t->name) != t) fz_fail("tensor '%s' is not found by name", t->name);
        fz_touch(t->data, t->nbytes);
        if (t->numel <= (1u << 20) &&
            (t->dtype == EI_ST_F32 || t->dtype == EI_ST_F16 || t->dtype == EI_ST_BF16 || t->dtype == EI_ST_F64)) {
            float *dst = malloc((t->numel ? t->numel : 1) * sizeof *dst);
            if (dst && ei_st_to_f32(t, dst) != 0) fz_fail("tensor '%s': float conversion failed", t->name);
            free(dst);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fz_write(path, sizeof path, "gates.safetensors", data, size);
    ei_st_file *f = ei_st_open(path);
    fz_note("safetensors", f != NULL);
    if (f) {
        check_tensors(f);
        ei_st_metadata(f, "format");
        ei_st_close(f);
    }
    /* Gate files: options from the metadata, then the parameters for a 2-layer, 2-head, dim-8 model
     * of each gate kind (the shapes the seeds were written for). */
    ei_opts o;
    ei_opts_default(&o);
    ei_gates_file_opts(path, &o);
    ei_model_config cfg = {.dim = 8, .hidden_dim = 16, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1, .head_dim = 4,
                           .vocab_size = 32, .max_seq_len = 64, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                           .bos_id = 1, .eos_id = 2};
    for (int k = 0; k < 2; k++) {
        ei_gates *g = ei_gates_new(&cfg, k == 0 ? EI_GATE_TOKEN : EI_GATE_HEAD, 0.0);
        if (g) ei_gates_load(g, path);
        ei_gates_free(g);
    }
    return 0;
}
