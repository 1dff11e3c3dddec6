/* Fuzz target: training checkpoints through train/checkpoint.c (ei_ckpt_read: the attributes'
 * classes and shapes, the parameter and moment arrays, /rng_state, the /config string, counters,
 * the checksum) and ei_ckpt_check_resume, which parses the stored config. The input describes the
 * file (h5_common.h: not raw HDF5 bytes):
 *   params / adam_m / adam_v / rng_state: mode, length, elements;
 *   config: mode and YAML text;
 *   each root attribute: mode and value (format_version 1 and plausible counters in most inputs);
 *   whether the checksum attribute is the right one (then the whole read passes), the expected
 *   parameter count (0 or the file's). */
#include "h5_common.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "train/checkpoint.h"
#include "train/train_config.h"

#include <stdio.h>

#define MAX_N 256

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_h5_init();
    return 0;
}

typedef struct {
    int mode;
    size_t n;
    uint8_t *raw;
} arr;

static void make_array(fz_bytes *b, arr *a, size_t elem, size_t max) {
    a->mode = fz_u8(b) < 160 ? FZ_H5_RIGHT : (int)fz_below(b, FZ_H5_MODES);
    a->n = fz_below(b, (uint32_t)max + 1);
    a->raw = calloc(a->n + 1, elem);
    for (size_t i = 0; a->raw && i < a->n * elem; i++) a->raw[i] = fz_u8(b);
}

/* ckpt_checksum of train/checkpoint.c, over what the reader will hold. */
static uint64_t checksum(const arr *p, const arr *m, const arr *v, size_t n, const arr *rng, const char *cfg) {
    uint64_t h = ei_hash_fnv1a(p->raw, n * 4, 0);
    h = ei_hash_fnv1a(m->raw, n * 4, h);
    h = ei_hash_fnv1a(v->raw, n * 4, h);
    h = ei_hash_fnv1a(rng->raw, rng->n * 8, h);
    return ei_hash_fnv1a(cfg, strlen(cfg), h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_bytes b = {data, size};
    char path[512];
    fz_path(path, sizeof path, "ckpt-1.h5");
    hid_t f = fz_h5_create(path);
    arr p, m, v, rng;
    make_array(&b, &p, 4, MAX_N);
    make_array(&b, &m, 4, MAX_N);
    make_array(&b, &v, 4, MAX_N);
    make_array(&b, &rng, 8, 80);
    uint64_t sparse = (uint64_t)1 << fz_below(&b, 41);
    fz_h5_array(f, "params", p.mode, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, p.raw, p.n, sparse);
    fz_h5_array(f, "adam_m", m.mode, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, m.raw, m.n, sparse);
    fz_h5_array(f, "adam_v", v.mode, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, v.raw, v.n, sparse);
    fz_h5_array(f, "rng_state", rng.mode, H5T_STD_U64LE, H5T_NATIVE_UINT64, rng.raw, rng.n, sparse);
    /* /config: a scalar fixed-length string in most inputs (what the writer makes) */
    int cmode = fz_u8(&b) < 192 ? FZ_H5_SCALAR : (int)fz_below(&b, FZ_H5_MODES);
    size_t cl;
    const uint8_t *ctext = fz_take(&b, 4096, &cl);
    char *cfg = calloc(cl + 2, 1);
    if (cfg) memcpy(cfg, ctext, cl);
    if (cmode == FZ_H5_SCALAR) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, cl + 1);
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t ds = H5Dcreate2(f, "config", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (ds >= 0) {
            H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, cfg);
            H5Dclose(ds);
        }
        H5Sclose(sp);
        H5Tclose(t);
    } else if (cfg) {
        fz_h5_array(f, "config", cmode, H5T_C_S1, H5T_NATIVE_UCHAR, cfg, cl, 4);
    }
    /* root attributes */
    static const char *const ints[] = {"format_version", "step", "adam_t", "data_epoch", "data_index", "model_size",
                                       "model_hash"};
    for (int i = 0; i < 7; i++) {
        int mode = fz_u8(&b) < 200 ? FZ_H5_RIGHT : (int)fz_below(&b, FZ_H5_MODES);
        int64_t val = i == 0 ? EI_CKPT_VERSION : (int64_t)fz_below(&b, 100);
        if (fz_u8(&b) > 240) val = (int64_t)fz_u64(&b);
        fz_h5_attr(f, ints[i], mode, i == 0 ? H5T_STD_I32LE : H5T_STD_I64LE, H5T_NATIVE_INT64, &val, 8);
    }
    size_t pl;
    const uint8_t *mp = fz_take(&b, 300, &pl);
    fz_h5_attr(f, "model_path", fz_u8(&b) < 200 ? FZ_H5_RIGHT : (int)fz_below(&b, FZ_H5_MODES), H5T_C_S1,
               H5T_NATIVE_INT64, mp, pl);
    /* The reader sees the string up to its first NUL. */
    int same = p.n == m.n && p.n == v.n && p.raw && m.raw && v.raw && rng.raw && cfg;
    uint64_t sum = fz_u8(&b) < 128 && same ? checksum(&p, &m, &v, p.n, &rng, cfg) : fz_u64(&b);
    fz_h5_attr(f, "checksum", fz_u8(&b) < 220 ? FZ_H5_RIGHT : (int)fz_below(&b, FZ_H5_MODES), H5T_STD_U64LE,
               H5T_NATIVE_UINT64, &sum, 8);
    size_t expect = fz_u8(&b) & 1 ? p.n : 0;
    fz_h5_close_sealed(f, path, EI_SEAL_KIND_CHECKPOINT);

    ei_checkpoint c;
    int rc = ei_ckpt_read(path, expect, &c);
    fz_note("checkpoint", rc == 0);
    if (rc == 0) {
        if (!c.params || !c.adam_m || !c.adam_v || !c.config_yaml || !c.model_path || c.n_params == 0 ||
            c.n_rng > EI_CKPT_MAX_RNG_WORDS)
            fz_fail("a checkpoint read with missing parts");
        fz_touch(c.params, c.n_params * 4);
        fz_touch(c.adam_m, c.n_params * 4);
        fz_touch(c.adam_v, c.n_params * 4);
        ei_train_config now;
        if (ei_train_config_from_text(&now, "model:\n  path: m.bin\ndata:\n  train: t.h5\n", "now") == 0) {
            ei_ckpt_check_resume(&c, &now, c.model_size, c.model_hash, "m.bin");
            ei_train_config_free(&now);
        }
        ei_ckpt_free(&c);
    }
    free(p.raw);
    free(m.raw);
    free(v.raw);
    free(rng.raw);
    free(cfg);
    return 0;
}
