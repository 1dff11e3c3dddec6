#include "train/checkpoint.h"
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "core/ei_seal.h"
#include "data/h5file.h"
#include "formats/model.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONFIG_MAX_BYTES (1u << 20)
#define STRING_ATTR_MAX 65536

/* HDF5 prints its error stack to stderr by default; our messages say what is wrong instead. */
typedef struct {
    H5E_auto2_t fn;
    void *data;
} h5_quiet;

static void quiet_on(h5_quiet *q) {
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}
static void quiet_off(const h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->fn, q->data); }

static uint64_t ckpt_checksum(const ei_checkpoint *c) {
    size_t nb = c->n_params * sizeof(float);
    uint64_t h = ei_hash_fnv1a(c->params, nb, 0);
    h = ei_hash_fnv1a(c->adam_m, nb, h);
    h = ei_hash_fnv1a(c->adam_v, nb, h);
    h = ei_hash_fnv1a(c->rng, c->n_rng * sizeof(uint64_t), h);
    h = ei_hash_fnv1a(c->config_yaml ? c->config_yaml : "", c->config_yaml ? strlen(c->config_yaml) : 0, h);
    return h;
}

/* ---------------------------------------------------------------- writing */

static int write_array(hid_t f, const char *name, hid_t file_type, hid_t mem_type, const void *data, size_t n) {
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    if (sp < 0) return -1;
    hid_t ds = H5Dcreate2(f, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = ds < 0 ? -1 : 0;
    if (!rc && n && H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) rc = -1;
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    return rc;
}

static int write_attr(hid_t f, const char *name, hid_t file_type, hid_t mem_type, const void *v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    if (sp < 0) return -1;
    hid_t a = H5Acreate2(f, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, mem_type, v) < 0 ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

static hid_t string_type(size_t len) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    if (H5Tset_size(t, len + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static int write_string_attr(hid_t f, const char *name, const char *s) {
    hid_t t = string_type(strlen(s));
    if (t < 0) return -1;
    int rc = write_attr(f, name, t, t, s);
    H5Tclose(t);
    return rc;
}

static int write_string_dataset(hid_t f, const char *name, const char *s) {
    hid_t t = string_type(strlen(s));
    if (t < 0) return -1;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t ds = sp < 0 ? -1 : H5Dcreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = ds < 0 || H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) < 0 ? -1 : 0;
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

/* Test hook (tests/cli_crash_resume.sh, tests/test_train_trainer.c): EI_TEST_KILL_IN_CHECKPOINT=<step>
 * makes the writer of the checkpoint of that step raise SIGKILL when half of its temporary file is
 * on disk, the worst moment for a crash. */
static int kill_in_checkpoint(int64_t step) {
    const char *v = getenv("EI_TEST_KILL_IN_CHECKPOINT");
    return v && *v && strtoll(v, NULL, 10) == step;
}

/* The HDF5 file is built in memory (core driver, no backing store) and written out through
 * ei_atomic_*: a full disk then fails in an ordinary write with an error naming the checkpoint,
 * never inside libhdf5 (whose failed H5Fclose leaves the library unusable), and the whole image is
 * at hand to seal. */
static int build_image(const char *path, const ei_checkpoint *c, uint8_t **out, size_t *out_n) {
    *out = NULL;
    const int version = EI_CKPT_VERSION;
    const uint64_t sum = ckpt_checksum(c);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = ei_h5_sealed_fcpl(), f = -1;
    if (fapl >= 0 && fcpl >= 0 && H5Pset_fapl_core(fapl, 1 << 20, 0) >= 0)
        f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (f < 0) return ei_error_set("%s: cannot create the HDF5 image in memory", path);
    int rc = 0;
    rc |= write_array(f, "params", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, c->params, c->n_params);
    rc |= write_array(f, "adam_m", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, c->adam_m, c->n_params);
    rc |= write_array(f, "adam_v", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, c->adam_v, c->n_params);
    rc |= write_array(f, "rng_state", H5T_STD_U64LE, H5T_NATIVE_UINT64, c->rng, c->n_rng);
    rc |= write_string_dataset(f, "config", c->config_yaml ? c->config_yaml : "");
    rc |= write_attr(f, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT, &version);
    rc |= write_attr(f, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &c->step);
    rc |= write_attr(f, "adam_t", H5T_STD_I64LE, H5T_NATIVE_INT64, &c->adam_t);
    rc |= write_attr(f, "data_epoch", H5T_STD_I64LE, H5T_NATIVE_INT64, &c->data_epoch);
    rc |= write_attr(f, "data_index", H5T_STD_I64LE, H5T_NATIVE_INT64, &c->data_index);
    rc |= write_string_attr(f, "model_path", c->model_path ? c->model_path : "");
    rc |= write_attr(f, "model_size", H5T_STD_U64LE, H5T_NATIVE_UINT64, &c->model_size);
    rc |= write_attr(f, "model_hash", H5T_STD_U64LE, H5T_NATIVE_UINT64, &c->model_hash);
    rc |= write_attr(f, "checksum", H5T_STD_U64LE, H5T_NATIVE_UINT64, &sum);
    if (rc == 0 && H5Fflush(f, H5F_SCOPE_LOCAL) < 0) rc = -1;
    ssize_t n = rc == 0 ? H5Fget_file_image(f, NULL, 0) : -1;
    uint8_t *buf = n > 0 ? malloc(EI_SEAL_BYTES + (size_t)n) : NULL;
    /* The image starts at the superblock; its addresses count from the user block's end. */
    if (!buf || H5Fget_file_image(f, buf + EI_SEAL_BYTES, (size_t)n) != n) rc = -1;
    if (H5Fclose(f) < 0) ei_h5_mark_broken();
    if (rc != 0) {
        free(buf);
        return ei_error_set("%s: building the checkpoint in memory failed (out of memory?)", path);
    }
    ei_seal_buffer(buf, EI_SEAL_BYTES + (size_t)n, EI_SEAL_KIND_CHECKPOINT);
    *out = buf;
    *out_n = EI_SEAL_BYTES + (size_t)n;
    return 0;
}

int ei_ckpt_write(const char *path, const ei_checkpoint *c) {
    if (!c->n_params || !c->params || !c->adam_m || !c->adam_v)
        return ei_error_set("%s: checkpoint has no parameters", path);
    if (c->n_rng > EI_CKPT_MAX_RNG_WORDS) return ei_error_set("%s: too many RNG state words", path);
    if (c->step < 0 || c->adam_t < 0 || c->adam_t > c->step || c->data_epoch < 0 || c->data_index < 0)
        return ei_error_set("%s: implausible counters (step %lld, adam_t %lld, epoch %lld, index %lld)", path,
                            (long long)c->step, (long long)c->adam_t, (long long)c->data_epoch,
                            (long long)c->data_index);
    ei_h5_init();
    h5_quiet q;
    quiet_on(&q);
    uint8_t *img = NULL;
    size_t n = 0;
    int rc = build_image(path, c, &img, &n);
    quiet_off(&q);
    if (rc != 0) return -1;
    ei_atomic_file af;
    if (ei_atomic_open(&af, path) != 0) {
        free(img);
        return -1;
    }
    if (kill_in_checkpoint(c->step)) {
        fwrite(img, 1, n / 2, af.fp);
        fflush(af.fp);
        fsync(fileno(af.fp));
        raise(SIGKILL);
    }
    if (fwrite(img, 1, n, af.fp) != n) {
        int e = errno;
        ei_atomic_abort(&af);
        free(img);
        return ei_error_set("%s: writing the checkpoint failed: %s", path, strerror(e));
    }
    free(img);
    if (ei_atomic_commit(&af) != 0) return ei_error_prefix("writing the checkpoint: ");
    return 0;
}

/* ---------------------------------------------------------------- reading */

/* Opens attribute name of f after checking it exists, is scalar (or one element) and of class cls. */
static hid_t open_attr(hid_t f, const char *path, const char *name, H5T_class_t cls) {
    if (H5Aexists(f, name) <= 0) return ei_error_set("%s: missing attribute '%s' (not an ei checkpoint?)", path, name);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return ei_error_set("%s: cannot open attribute '%s'", path, name);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int ok = t >= 0 && sp >= 0 && H5Tget_class(t) == cls && H5Sget_simple_extent_npoints(sp) == 1;
    if (ok && cls == H5T_STRING) ok = H5Tis_variable_str(t) == 0;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (!ok) {
        H5Aclose(a);
        return ei_error_set("%s: attribute '%s' has the wrong type or shape", path, name);
    }
    return a;
}

static int read_attr_int(hid_t f, const char *path, const char *name, hid_t mem_type, void *out) {
    hid_t a = open_attr(f, path, name, H5T_INTEGER);
    if (a < 0) return -1;
    int rc = H5Aread(a, mem_type, out) < 0 ? ei_error_set("%s: cannot read attribute '%s'", path, name) : 0;
    H5Aclose(a);
    return rc;
}

static char *read_attr_string(hid_t f, const char *path, const char *name) {
    hid_t a = open_attr(f, path, name, H5T_STRING);
    if (a < 0) return NULL;
    hid_t t = H5Aget_type(a);
    size_t len = H5Tget_size(t);
    char *s = NULL;
    if (len == 0 || len > STRING_ATTR_MAX) {
        ei_error_set("%s: attribute '%s' has an implausible size %zu", path, name, len);
    } else if ((s = calloc(len + 1, 1)) != NULL) {
        hid_t mt = H5Tcopy(t);
        if (H5Aread(a, mt, s) < 0) {
            free(s);
            s = NULL;
            ei_error_set("%s: cannot read attribute '%s'", path, name);
        }
        H5Tclose(mt);
    } else {
        ei_error_set("out of memory");
    }
    H5Tclose(t);
    H5Aclose(a);
    return s;
}

/* Opens dataset name, checking class, element size and rank 1; *n receives the length. */
static hid_t open_array(hid_t f, const char *path, const char *name, H5T_class_t cls, size_t elem, size_t *n) {
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return ei_error_set("%s: missing dataset '/%s'", path, name);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return ei_error_set("%s: cannot open dataset '/%s'", path, name);
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    hsize_t dims[1] = {0};
    int ok = t >= 0 && sp >= 0 && H5Tget_class(t) == cls && H5Tget_size(t) == elem &&
             H5Sget_simple_extent_ndims(sp) == 1 && H5Sget_simple_extent_dims(sp, dims, NULL) == 1;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (!ok) {
        H5Dclose(ds);
        return ei_error_set("%s: dataset '/%s' has the wrong type or shape (expected a 1-D array of %zu-byte %s)", path,
                            name, elem, cls == H5T_FLOAT ? "floats" : "integers");
    }
    if (ei_h5_check_stored(ds, path, name, (unsigned long long)dims[0], elem) != 0) {
        H5Dclose(ds);
        return -1;
    }
    *n = (size_t)dims[0];
    return ds;
}

static float *read_f32(hid_t f, const char *path, const char *name, size_t expect) {
    size_t n = 0;
    hid_t ds = open_array(f, path, name, H5T_FLOAT, 4, &n);
    if (ds < 0) return NULL;
    float *buf = NULL;
    if (n != expect) {
        ei_error_set("%s: dataset '/%s' has %zu elements, expected %zu", path, name, n, expect);
    } else if (!(buf = malloc(n * sizeof(float)))) {
        ei_error_set("out of memory");
    } else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        buf = NULL;
        ei_error_set("%s: cannot read dataset '/%s' (truncated or corrupt file)", path, name);
    }
    H5Dclose(ds);
    return buf;
}

static int read_body(hid_t f, const char *path, size_t expect_n, ei_checkpoint *c) {
    int version = 0;
    if (read_attr_int(f, path, "format_version", H5T_NATIVE_INT, &version)) return -1;
    c->format_version = version;
    if (version != EI_CKPT_VERSION)
        return ei_error_set("%s: checkpoint format version %d, this build reads version %d", path, version,
                            EI_CKPT_VERSION);
    if (read_attr_int(f, path, "step", H5T_NATIVE_INT64, &c->step) ||
        read_attr_int(f, path, "adam_t", H5T_NATIVE_INT64, &c->adam_t) ||
        read_attr_int(f, path, "data_epoch", H5T_NATIVE_INT64, &c->data_epoch) ||
        read_attr_int(f, path, "data_index", H5T_NATIVE_INT64, &c->data_index) ||
        read_attr_int(f, path, "model_size", H5T_NATIVE_UINT64, &c->model_size) ||
        read_attr_int(f, path, "model_hash", H5T_NATIVE_UINT64, &c->model_hash))
        return -1;
    if (c->step < 0 || c->adam_t < 0 || c->adam_t > c->step || c->data_epoch < 0 || c->data_index < 0)
        return ei_error_set("%s: implausible counters (step %lld, adam_t %lld, epoch %lld, index %lld)", path,
                            (long long)c->step, (long long)c->adam_t, (long long)c->data_epoch,
                            (long long)c->data_index);
    uint64_t stored_sum = 0;
    if (read_attr_int(f, path, "checksum", H5T_NATIVE_UINT64, &stored_sum)) return -1;
    if (!(c->model_path = read_attr_string(f, path, "model_path"))) return -1;

    size_t n = 0;
    hid_t ds = open_array(f, path, "params", H5T_FLOAT, 4, &n);
    if (ds < 0) return -1;
    H5Dclose(ds);
    if (n == 0) return ei_error_set("%s: dataset '/params' is empty", path);
    if (expect_n && n != expect_n)
        return ei_error_set("%s: checkpoint has %zu trainable parameters, the model needs %zu (different gate "
                            "shape or base model)",
                            path, n, expect_n);
    c->n_params = n;
    if (!(c->params = read_f32(f, path, "params", n)) || !(c->adam_m = read_f32(f, path, "adam_m", n)) ||
        !(c->adam_v = read_f32(f, path, "adam_v", n)))
        return -1;

    size_t nr = 0;
    ds = open_array(f, path, "rng_state", H5T_INTEGER, 8, &nr);
    if (ds < 0) return -1;
    if (nr > EI_CKPT_MAX_RNG_WORDS) {
        H5Dclose(ds);
        return ei_error_set("%s: dataset '/rng_state' has %zu words, at most %d allowed", path, nr,
                            EI_CKPT_MAX_RNG_WORDS);
    }
    int bad = nr && H5Dread(ds, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->rng) < 0;
    H5Dclose(ds);
    if (bad) return ei_error_set("%s: cannot read dataset '/rng_state'", path);
    c->n_rng = nr;

    if (H5Lexists(f, "config", H5P_DEFAULT) <= 0) return ei_error_set("%s: missing dataset '/config'", path);
    ds = H5Dopen2(f, "config", H5P_DEFAULT);
    if (ds < 0) return ei_error_set("%s: cannot open dataset '/config'", path);
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    size_t len = t >= 0 ? H5Tget_size(t) : 0;
    int ok = t >= 0 && sp >= 0 && H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) == 0 &&
             H5Sget_simple_extent_npoints(sp) == 1 && len > 0 && len <= CONFIG_MAX_BYTES;
    if (ok && (c->config_yaml = calloc(len + 1, 1)) != NULL)
        ok = H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->config_yaml) >= 0;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    if (!ok || !c->config_yaml) return ei_error_set("%s: dataset '/config' is not a readable string", path);

    if (ckpt_checksum(c) != stored_sum)
        return ei_error_set("%s: checksum mismatch: the parameters, moments or config are corrupt", path);
    /* The trainer never applies a non-finite update, so a NaN here comes from elsewhere. */
    if (ei_check_finite(c->params, (int64_t)c->n_params, path, "'/params' (the gates)", 0) ||
        ei_check_finite(c->adam_m, (int64_t)c->n_params, path, "'/adam_m'", 0) ||
        ei_check_finite(c->adam_v, (int64_t)c->n_params, path, "'/adam_v'", 0))
        return -1;
    return 0;
}

int ei_ckpt_read(const char *path, size_t expect_n_params, ei_checkpoint *c) {
    memset(c, 0, sizeof *c);
    if (!ei_path_exists(path)) return ei_error_set("%s: no such checkpoint", path);
    ei_h5_init();
    /* The seal first: a damaged or truncated file never reaches libhdf5. */
    if (ei_h5_check_seal(path, EI_SEAL_KIND_CHECKPOINT, "checkpoint") != 0) return -1;
    h5_quiet q;
    quiet_on(&q);
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        quiet_off(&q);
        return ei_error_set("%s: not an HDF5 file (truncated or corrupt checkpoint)", path);
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        quiet_off(&q);
        return ei_error_set("%s: cannot open as HDF5 (truncated or corrupt checkpoint)", path);
    }
    int rc = read_body(f, path, expect_n_params, c);
    H5Fclose(f);
    quiet_off(&q);
    if (rc) ei_ckpt_free(c);
    return rc;
}

void ei_ckpt_free(ei_checkpoint *c) {
    free(c->params);
    free(c->adam_m);
    free(c->adam_v);
    free(c->config_yaml);
    free(c->model_path);
    memset(c, 0, sizeof *c);
}

/* ---------------------------------------------------------------- directories */

/* Step number of "ckpt-<step>.h5", -1 for any other name. */
static long long ckpt_name_step(const char *name) {
    if (strncmp(name, "ckpt-", 5) != 0) return -1;
    char *end = NULL;
    errno = 0;
    long long s = strtoll(name + 5, &end, 10);
    if (end == name + 5 || errno || s < 0 || strcmp(end, ".h5") != 0 || name[5] == '-' || name[5] == '+') return -1;
    return s;
}

static int cmp_desc(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Steps of the checkpoints in dir, newest first (malloc'd). */
static int list_steps(const char *dir, long long **steps, size_t *n) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return ei_error_set("%s: cannot open checkpoint folder: %s", dir, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long long s = ckpt_name_step(e->d_name);
        if (s < 0) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            long long *g = realloc(*steps, cap * sizeof **steps);
            if (!g) {
                closedir(d);
                free(*steps);
                *steps = NULL;
                return ei_error_set("out of memory");
            }
            *steps = g;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    if (*n) qsort(*steps, *n, sizeof **steps, cmp_desc);
    return 0;
}

static char *ckpt_path(const char *dir, long long step) {
    char name[64];
    snprintf(name, sizeof name, "ckpt-%lld.h5", step);
    return ei_path_join(dir, name);
}

/* Removes "ckpt-*.h5.tmp.<pid>" files whose writer no longer runs (a crash mid-write). */
static void remove_stale_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *t = strstr(e->d_name, ".h5.tmp.");
        if (strncmp(e->d_name, "ckpt-", 5) != 0 || !t) continue;
        char *end = NULL;
        long pid = strtol(t + 8, &end, 10);
        if (end == t + 8 || *end || pid <= 0) continue;
        if (pid == (long)getpid() || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)) {
            char *p = ei_path_join(dir, e->d_name);
            if (p) unlink(p);
            free(p);
        }
    }
    closedir(d);
}

int ei_ckpt_save(const char *dir, const ei_checkpoint *c, int keep_last, char **written) {
    if (written) *written = NULL;
    if (ei_mkdir_p(dir)) return -1;
    remove_stale_temporaries(dir);
    char *path = ckpt_path(dir, (long long)c->step);
    if (!path) return ei_error_set("out of memory");
    if (ei_ckpt_write(path, c)) {
        free(path);
        return -1;
    }
    if (keep_last > 0) {
        long long *steps;
        size_t n;
        if (list_steps(dir, &steps, &n) == 0) {
            for (size_t i = (size_t)keep_last; i < n; i++) {
                if (steps[i] == (long long)c->step) continue; /* never delete what was just written */
                char *old = ckpt_path(dir, steps[i]);
                if (old && unlink(old) != 0 && errno != ENOENT)
                    fprintf(stderr, "warning: cannot remove old checkpoint %s: %s\n", old, strerror(errno));
                free(old);
            }
            free(steps);
        }
    }
    if (written) *written = path;
    else free(path);
    return 0;
}

char *ei_ckpt_latest(const char *dir, size_t expect_n_params) {
    long long *steps;
    size_t n;
    if (list_steps(dir, &steps, &n)) return NULL;
    for (size_t i = 0; i < n; i++) {
        char *p = ckpt_path(dir, steps[i]);
        if (!p) break;
        ei_checkpoint c;
        if (ei_ckpt_read(p, expect_n_params, &c) == 0) {
            ei_ckpt_free(&c);
            free(steps);
            return p;
        }
        fprintf(stderr, "warning: skipping checkpoint: %s\n", ei_error_get());
        free(p);
    }
    free(steps);
    ei_error_set("%s: no valid checkpoint (ckpt-<step>.h5) found", dir);
    return NULL;
}

int ei_ckpt_check_resume(const ei_checkpoint *c, const ei_train_config *now, uint64_t model_size,
                         uint64_t model_hash, const char *model_path) {
    if (c->model_size != model_size || c->model_hash != model_hash)
        return ei_error_set("the base model differs: the checkpoint was trained on %s (size %llu, "
                            "hash %016llx), the config now gives %s (size %llu, hash %016llx)",
                            c->model_path && *c->model_path ? c->model_path : "?",
                            (unsigned long long)c->model_size, (unsigned long long)c->model_hash,
                            model_path ? model_path : "?", (unsigned long long)model_size,
                            (unsigned long long)model_hash);
    ei_train_config saved;
    /* No "cannot resume" here: the caller says what could not be done (and names the file). */
    if (ei_train_config_from_text(&saved, c->config_yaml ? c->config_yaml : "", "checkpoint config")) return -1;
    int rc = ei_train_config_check_resume(&saved, now);
    ei_train_config_free(&saved);
    return rc ? -1 : 0;
}
