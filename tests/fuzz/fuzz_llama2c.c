/* Fuzz target: llama2.c v0 checkpoints (formats/model_llama2c.c) through ei_model_load, which picks
 * the loader from the path (a .bin file). A model that loads must have every weight inside the file
 * it maps and the parameter count its config implies. */
#include "fuzz.h"

#include "formats/model.h"
#include "formats/model_loaders.h"
#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fz_write(path, sizeof path, "model.bin", data, size);
    ei_model *m = ei_model_load(path);
    fz_note("llama2c", m != NULL);
    if (!m) return 0;
    const ei_file_map *map = &ei_model_storage_of(m)->map;
    for (int i = 0; i < m->tensors.n; i++) {
        const ei_tensor *t = &m->tensors.t[i];
        const uint8_t *b = (const uint8_t *)t->data, *e = b + 4 * (size_t)t->numel;
        if (!t->data || b < map->data || e > map->data + map->size)
            fz_fail("tensor %d (%s) [%p, %p) outside the file [%p, +%zu)", i, ei_tclass_name(t->cls), (void *)b,
                    (void *)e, (const void *)map->data, map->size);
        fz_touch(b, 4 * (size_t)t->numel);
    }
    if (ei_model_config_n_params(&m->cfg) != m->n_params) fz_fail("n_params differs from the config's");
    ei_model_free(m);
    return 0;
}
