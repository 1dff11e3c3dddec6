/* train/checkpoint: HDF5 round trip, validation of damaged files (truncated, wrong sizes, missing
 * dataset, wrong type, wrong version, flipped data bytes, not HDF5), ckpt-<step>.h5 rotation and
 * the `latest` lookup that skips a corrupt newest file, and the resume compatibility check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "core/ei_rng.h"
#include "core/ei_seal.h"
#include "train/checkpoint.h"

#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NP 1000

static const char *base_yaml = "model:\n  path: some/model.bin\ndata:\n  train: d.h5\n";

typedef struct {
    char dir[64];
    ei_checkpoint c;
    float params[NP], m[NP], v[NP];
    char *yaml;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->dir, "/tmp/ei_ckpt_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    ei_rng r;
    ei_rng_seed(&r, 99);
    for (int i = 0; i < NP; i++) {
        f->params[i] = (float)ei_rng_normal(&r);
        f->m[i] = (float)ei_rng_normal(&r) * 1e-3f;
        f->v[i] = (float)ei_rng_uniform(&r) * 1e-5f;
    }
    ei_train_config cfg;
    assert_int_equal(ei_train_config_from_text(&cfg, base_yaml, "t"), 0);
    f->yaml = ei_train_config_dump(&cfg);
    ei_train_config_free(&cfg);
    assert_non_null(f->yaml);
    ei_checkpoint *c = &f->c;
    c->step = 120;
    c->adam_t = 118;
    c->data_epoch = 2;
    c->data_index = 37;
    c->n_params = NP;
    c->params = f->params;
    c->adam_m = f->m;
    c->adam_v = f->v;
    c->n_rng = EI_RNG_STATE_WORDS;
    memcpy(c->rng, r.s, sizeof r.s);
    c->config_yaml = f->yaml;
    c->model_path = "some/model.bin";
    c->model_size = 1056512;
    c->model_hash = 0x0123456789abcdefULL;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    DIR *d = opendir(f->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char *p = ei_path_join(f->dir, e->d_name);
            unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f->yaml);
    free(f);
    return 0;
}

static char *path_in(fixture *f, const char *name) { return ei_path_join(f->dir, name); }

static void expect_read_error(const char *path, size_t expect_n, const char *frag) {
    ei_checkpoint r;
    ei_error_clear();
    assert_int_equal(ei_ckpt_read(path, expect_n, &r), -1);
    if (!strstr(ei_error_get(), frag)) fail_msg("error '%s' lacks '%s'", ei_error_get(), frag);
    if (!strstr(ei_error_get(), path)) fail_msg("error '%s' does not name the file", ei_error_get());
    assert_null(r.params);
}

static int count_files(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strstr(e->d_name, needle)) n++;
    if (d) closedir(d);
    return n;
}

static void test_round_trip(void **state) {
    fixture *f = *state;
    char *p = path_in(f, "a.h5");
    assert_int_equal(ei_ckpt_write(p, &f->c), 0);
    assert_int_equal(count_files(f->dir, ".tmp."), 0); /* the temporary was renamed */
    ei_checkpoint r;
    if (ei_ckpt_read(p, NP, &r)) fail_msg("%s", ei_error_get());
    assert_int_equal(r.format_version, EI_CKPT_VERSION);
    assert_true(r.step == 120 && r.adam_t == 118 && r.data_epoch == 2 && r.data_index == 37);
    assert_true(r.n_params == NP);
    assert_memory_equal(r.params, f->params, sizeof f->params);
    assert_memory_equal(r.adam_m, f->m, sizeof f->m);
    assert_memory_equal(r.adam_v, f->v, sizeof f->v);
    assert_true(r.n_rng == 4);
    assert_memory_equal(r.rng, f->c.rng, 4 * sizeof(uint64_t));
    assert_string_equal(r.config_yaml, f->yaml);
    assert_string_equal(r.model_path, "some/model.bin");
    assert_true(r.model_size == 1056512 && r.model_hash == 0x0123456789abcdefULL);
    ei_ckpt_free(&r);
    /* expect 0: any count accepted */
    assert_int_equal(ei_ckpt_read(p, 0, &r), 0);
    ei_ckpt_free(&r);
    expect_read_error(p, 999, "has 1000 trainable parameters, the model needs 999");
    free(p);
}

static void test_truncated_and_garbage(void **state) {
    fixture *f = *state;
    char *p = path_in(f, "t.h5");
    assert_int_equal(ei_ckpt_write(p, &f->c), 0);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    long sizes[] = {(long)st.st_size - 100, (long)st.st_size / 2, 800, 10, 0};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        assert_int_equal(truncate(p, sizes[i]), 0);
        expect_read_error(p, NP, "");
    }
    FILE *fp = fopen(p, "wb");
    fputs("this is not a checkpoint\n", fp);
    fclose(fp);
    expect_read_error(p, NP, "not an HDF5 file");
    char *missing = path_in(f, "none.h5");
    expect_read_error(missing, NP, "no such checkpoint");
    free(missing);
    free(p);
}

/* Opens a written checkpoint for editing with the HDF5 API. */
static hid_t edit(const char *p) {
    hid_t h = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(h >= 0);
    return h;
}

/* Closes an edit and drops the seal (the whole-file checksum no longer matches an edited file), so
 * the file reads as one from another program and the checks behind the seal are exercised. */
static void done_editing(hid_t h, const char *p) {
    H5Fclose(h);
    FILE *fp = fopen(p, "r+b");
    assert_non_null(fp);
    static const char zero[8] = {0};
    fwrite(zero, 1, 8, fp);
    fclose(fp);
}

static void put_f32(hid_t h, const char *name, size_t n) {
    float *z = calloc(n, sizeof(float));
    hsize_t d[1] = {n};
    hid_t sp = H5Screate_simple(1, d, NULL);
    hid_t ds = H5Dcreate2(h, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(ds >= 0);
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, z);
    H5Dclose(ds);
    H5Sclose(sp);
    free(z);
}

static void test_damaged_contents(void **state) {
    fixture *f = *state;
    char *p = path_in(f, "d.h5");

    /* wrong size of one moment array */
    assert_int_equal(ei_ckpt_write(p, &f->c), 0);
    hid_t h = edit(p);
    H5Ldelete(h, "adam_m", H5P_DEFAULT);
    put_f32(h, "adam_m", NP - 1);
    done_editing(h, p);
    expect_read_error(p, NP, "dataset '/adam_m' has 999 elements, expected 1000");

    /* missing dataset */
    assert_int_equal(ei_ckpt_write(p, &f->c), 0);
    h = edit(p);
    H5Ldelete(h, "adam_v", H5P_DEFAULT);
    done_editing(h, p);
    expect_read_error(p, NP, "missing dataset '/adam_v'");

    /* wrong element type (float64 parameters) */
    assert_int_equal(ei_ckpt_write(p, &f->c), 0);
    h = edit(p);
    H5Ldelete(h, "params", H5P_DEFAULT);
    {
        hsize_t d[1] = {NP};
        hid_t sp = H5Screate_simple(1, d, NULL);
        hid_t ds = H5Dcreate2(h, "params", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dclose(ds);
        H5Sclose(sp);
    }
    done_editing(h, p);
    expect_read_error(p, NP, "dataset '/params' has the wrong type or shape");

    /* wrong format version */
    assert_int_equal(ei_ckpt_write(p, &f->c), 0);
    h = edit(p);
    {
        int v = 99;
        hid_t a = H5Aopen(h, "format_version", H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT, &v);
        H5Aclose(a);
    }
    done_editing(h, p);
    expect_read_error(p, NP, "checkpoint format version 99, this build reads version 1");

    /* missing attribute */
    assert_int_equal(ei_ckpt_write(p, &f->c), 0);
    h = edit(p);
    H5Adelete(h, "data_index");
    done_editing(h, p);
    expect_read_error(p, NP, "missing attribute 'data_index'");

    /* a flipped byte inside the raw parameter data: HDF5 cannot see it, the whole-file checksum
     * does before HDF5 reads anything, and without a seal the checkpoint's own checksum does */
    for (int sealed = 1; sealed >= 0; sealed--) {
        assert_int_equal(ei_ckpt_write(p, &f->c), 0);
        h = edit(p);
        hid_t ds = H5Dopen2(h, "params", H5P_DEFAULT);
        haddr_t off = H5Dget_offset(ds) + 512; /* HDF5 addresses count from the end of the user block */
        H5Dclose(ds);
        H5Fclose(h);
        assert_true(off != HADDR_UNDEF);
        FILE *fp = fopen(p, "r+b");
        if (!sealed) fwrite("\0\0\0\0\0\0\0\0", 1, 8, fp);
        fseek(fp, (long)off + 4 * 500 + 1, SEEK_SET);
        int byte = fgetc(fp);
        fseek(fp, (long)off + 4 * 500 + 1, SEEK_SET);
        fputc(byte ^ 0x40, fp);
        fclose(fp);
        expect_read_error(p, NP, sealed ? "whole-file checksum mismatch" : "checksum mismatch: the parameters");
    }

    /* finite checks: a NaN parameter (written consistently, checksums and all) is refused */
    assert_int_equal(ei_ckpt_write(p, &f->c), 0);
    float saved = f->params[7];
    f->params[7] = NAN;
    assert_int_equal(ei_ckpt_write(p, &f->c), 0);
    f->params[7] = saved;
    expect_read_error(p, NP, "non-finite value (NaN) at element 7");

    /* a checkpoint's seal says what it is: a dataset's reader refuses it, and the reverse */
    assert_int_equal(ei_ckpt_write(p, &f->c), 0);
    assert_int_equal(ei_seal_check(p, "ei-checkpoint"), 1);
    assert_int_equal(ei_seal_check(p, "ei-dataset"), -1);
    assert_non_null(strstr(ei_error_get(), "not an ei-dataset"));
    free(p);
}

static void test_save_rotation_and_latest(void **state) {
    fixture *f = *state;
    char sub[128];
    snprintf(sub, sizeof sub, "%s/run", f->dir); /* created by ei_ckpt_save */

    ei_error_clear();
    assert_null(ei_ckpt_latest(f->dir, NP)); /* empty folder */
    assert_non_null(strstr(ei_error_get(), "no valid checkpoint"));

    /* a temporary left by a writer that died (a reaped child: its pid is free) is cleaned up */
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);
    assert_int_equal(ei_mkdir_p(sub), 0);
    char stale[256];
    snprintf(stale, sizeof stale, "%s/ckpt-5.h5.tmp.%ld", sub, (long)pid);
    fclose(fopen(stale, "wb"));
    char other[256];
    snprintf(other, sizeof other, "%s/ckpt-abc.h5", sub);
    fclose(fopen(other, "wb")); /* not a checkpoint name: ignored, never deleted */

    for (int64_t s = 10; s <= 40; s += 10) {
        f->c.step = s;
        f->c.adam_t = s - 2;
        f->params[0] = (float)s;
        char *w = NULL;
        assert_int_equal(ei_ckpt_save(sub, &f->c, 2, &w), 0);
        char want[256];
        snprintf(want, sizeof want, "%s/ckpt-%lld.h5", sub, (long long)s);
        assert_string_equal(w, want);
        free(w);
    }
    assert_false(ei_path_exists(stale));
    assert_true(ei_path_exists(other));
    assert_int_equal(count_files(sub, ".h5"), 3); /* ckpt-30, ckpt-40 and ckpt-abc */
    char p30[256], p40[256];
    snprintf(p30, sizeof p30, "%s/ckpt-30.h5", sub);
    snprintf(p40, sizeof p40, "%s/ckpt-40.h5", sub);
    assert_true(ei_path_exists(p30) && ei_path_exists(p40));

    char *latest = ei_ckpt_latest(sub, NP);
    assert_non_null(latest);
    assert_string_equal(latest, p40);
    free(latest);

    /* newest one half-written: skipped with a warning, the previous one is used */
    struct stat st;
    stat(p40, &st);
    assert_int_equal(truncate(p40, st.st_size / 2), 0);
    latest = ei_ckpt_latest(sub, NP);
    assert_non_null(latest);
    assert_string_equal(latest, p30);
    ei_checkpoint r;
    assert_int_equal(ei_ckpt_read(latest, NP, &r), 0);
    assert_true(r.step == 30 && r.params[0] == 30.0f);
    ei_ckpt_free(&r);
    free(latest);

    /* the writer refuses what the reader would reject */
    f->c.adam_t = f->c.step + 1;
    assert_int_equal(ei_ckpt_save(sub, &f->c, 2, NULL), -1);
    assert_non_null(strstr(ei_error_get(), "implausible counters"));

    /* a wrong parameter count makes every file unusable */
    assert_null(ei_ckpt_latest(sub, NP + 1));
    unlink(other);
    unlink(p30);
    unlink(p40);
    rmdir(sub);
}

static void test_resume_check(void **state) {
    fixture *f = *state;
    ei_train_config now;
    assert_int_equal(ei_train_config_from_text(&now, base_yaml, "now"), 0);
    assert_int_equal(ei_ckpt_check_resume(&f->c, &now, 1056512, 0x0123456789abcdefULL, "moved/model.bin"), 0);

    assert_int_equal(ei_ckpt_check_resume(&f->c, &now, 1056512, 0x1111ULL, "other.bin"), -1);
    assert_non_null(strstr(ei_error_get(), "base model differs"));
    assert_non_null(strstr(ei_error_get(), "some/model.bin"));
    assert_non_null(strstr(ei_error_get(), "other.bin"));
    ei_train_config_free(&now);

    /* keys that may change: run length, schedule, cadence */
    const char *ok = "model:\n  path: some/model.bin\ndata:\n  train: d.h5\n"
                     "train:\n  steps: 999\n  lr: 1e-2\n  eval_every: 7\n  out_dir: elsewhere\n";
    assert_int_equal(ei_train_config_from_text(&now, ok, "now"), 0);
    assert_int_equal(ei_ckpt_check_resume(&f->c, &now, 1056512, 0x0123456789abcdefULL, NULL), 0);
    ei_train_config_free(&now);

    /* keys that must not: EdgeInfinite options, data layout */
    const char *bad = "model:\n  path: some/model.bin\ndata:\n  train: d.h5\n"
                      "edgeinfinite:\n  window: 128\n  gate: head\ntrain:\n  micro_batch: 2\n";
    assert_int_equal(ei_train_config_from_text(&now, bad, "now"), 0);
    assert_int_equal(ei_ckpt_check_resume(&f->c, &now, 1056512, 0x0123456789abcdefULL, NULL), -1);
    const char *msg = ei_error_get();
    assert_null(strstr(msg, "cannot resume")); /* the trainer says it, once, with the file name */
    assert_non_null(strstr(msg, "3 keys"));
    assert_non_null(strstr(msg, "edgeinfinite.window: 256 -> 128"));
    assert_non_null(strstr(msg, "edgeinfinite.gate: token -> head"));
    assert_non_null(strstr(msg, "train.micro_batch: 1 -> 2"));
    ei_train_config_free(&now);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_and_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_contents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_rotation_and_latest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_check, setup, teardown),
    };
    /* The damaged-file edits above provoke HDF5 errors on purpose; keep its stack traces quiet. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
