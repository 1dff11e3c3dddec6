/* Hostile datasets end to end through the binary ($EI_BIN): token ids beyond the model's vocabulary
 * (with and without a recorded vocab_size), samples of 0 and 1 tokens, fully masked samples, and
 * non-finite losses injected into training (EI_TEST_NAN_STEP). Each has a defined outcome: `ei
 * train` and `ei eval --data` fail with an error naming the file and the sample, skip and count
 * the steps that have nothing to learn from, or stop with a clear message; never a crash, never
 * "done" without a single update. The datasets are written with the dataset writer, and the one
 * with empty samples (which the writer refuses) with the HDF5 API, as another program would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_io.h"
#include "data/dataset.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[128];
static const char *ei_bin;
#define MODEL EI_FIXTURES "/models/stories260K/stories260K.bin"

static int setup(void **state) {
    (void)state;
    ei_bin = getenv("EI_BIN");
    if (!ei_bin) {
        fprintf(stderr, "EI_BIN is not set (run through ctest)\n");
        return -1;
    }
    strcpy(tmpdir, "/tmp/ei-hostile-data-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A path in the test folder; a ring of buffers, so a test may hold a few at once. */
static char *tpath(const char *name) {
    static char buf[32][512];
    static int k;
    k = (k + 1) % 32;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* Runs argv with env (NAME=VALUE or NULL) and returns the exit status (-1: killed by a signal);
 * stderr and stdout go to log. */
static int run(const char *const *argv, const char *env, const char *log) {
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        if (f) dup2(fileno(f), 1);
        if (env) putenv((char *)env);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *p) {
    char *b = NULL;
    size_t n = 0;
    if (ei_file_read_all(p, &b, &n) != 0) return strdup("");
    return b;
}

static void expect_log(const char *log, const char *needle) {
    char *t = slurp(log);
    if (!strstr(t, needle)) fail_msg("%s lacks '%s':\n%s", log, needle, t);
    free(t);
}

/* A dataset of n samples; sample i has len[i] tokens (ids from a fixed pattern below 512, BOS
 * first), masks all 1 (or all 0 with masked 0), and one planted id when bad_sample >= 0. */
static void write_set(const char *p, int n, const int *len, int masked, int vocab_attr, int bad_sample, int bad_id) {
    ei_dataset_writer *w = ei_dataset_writer_open(p);
    assert_non_null(w);
    for (int i = 0; i < n; i++) {
        int32_t t[256];
        uint8_t m[256];
        for (int k = 0; k < len[i]; k++) {
            t[k] = k == 0 ? 1 : 3 + (i * 37 + k * 11) % 500;
            m[k] = k > 0 && masked;
        }
        if (i == bad_sample) t[len[i] - 1] = bad_id;
        assert_int_equal(ei_dataset_writer_add(w, t, m, (size_t)len[i], i), 0);
    }
    if (vocab_attr > 0) ei_dataset_writer_attr_i64(w, "vocab_size", vocab_attr);
    assert_int_equal(ei_dataset_writer_close(w), 0);
}

static const char *config(const char *name, const char *data, int steps, int max_bad) {
    char *p = tpath(name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f,
            "model:\n  path: %s\nedgeinfinite:\n  segment: 16\n  sink: 2\n  window: 16\n"
            "data:\n  train: %s\ntrain:\n  micro_batch: 1\n  grad_accum: 2\n  steps: %d\n  lr: 0.01\n"
            "  shuffle: false\n  threads: 1\n  max_bad_steps: %d\n  out_dir: %s/run-%s\n",
            MODEL, data, steps, max_bad, tmpdir, name);
    fclose(f);
    return p;
}

static int train(const char *cfg, const char *env, const char *log) {
    const char *argv[] = {ei_bin, "train", "--config", cfg, "--quiet", NULL};
    return run(argv, env, log);
}

static int eval_data(const char *data, const char *log) {
    const char *argv[] = {ei_bin, "eval", "--model", MODEL, "--data", data, "--allow-tokenizer-mismatch", NULL};
    return run(argv, NULL, log);
}

static void test_ids_beyond_the_vocabulary(void **state) {
    (void)state;
    const int len[6] = {40, 40, 40, 40, 40, 40};
    /* no vocab_size recorded: the model's 512 is the limit */
    const char *d1 = strdup(tpath("ids_norecord.h5"));
    write_set(d1, 6, len, 1, 0, 3, 600);
    const char *log = tpath("ids1.log");
    assert_int_equal(train(config("ids1", d1, 4, 10), NULL, log), 1);
    expect_log(log, "sample 3: token 39 has id 600, outside the vocabulary [0, 512) of the model");
    expect_log(log, d1);
    assert_int_equal(eval_data(d1, log), 1);
    expect_log(log, "sample 3: token 39 has id 600");
    /* vocab_size 512 recorded and an id beyond it */
    const char *d2 = strdup(tpath("ids_record.h5"));
    write_set(d2, 6, len, 1, 512, 1, 700);
    assert_int_equal(eval_data(d2, log), 1);
    expect_log(log, "sample 1: token 39 has id 700, outside the vocabulary [0, 512)");
    /* a recorded vocabulary larger than the model's is refused when the dataset opens */
    const char *d3 = strdup(tpath("ids_big.h5"));
    write_set(d3, 6, len, 1, 1000, -1, 0);
    assert_int_equal(train(config("ids3", d3, 4, 10), NULL, log), 1);
    expect_log(log, "dataset vocabulary (1000) is larger than the model's (512)");
    free((void *)d1), free((void *)d2), free((void *)d3);
}

static void test_short_and_masked_samples(void **state) {
    (void)state;
    const char *log = tpath("short.log");
    /* every sample one token (BOS): nothing to predict */
    const int one[4] = {1, 1, 1, 1};
    const char *d1 = strdup(tpath("one.h5"));
    write_set(d1, 4, one, 1, 512, -1, 0);
    assert_int_equal(train(config("one", d1, 4, 10), NULL, log), 1);
    expect_log(log, "every sample has fewer than 2 tokens");
    assert_int_equal(eval_data(d1, log), 1);
    expect_log(log, "no loss-masked tokens to score");
    /* every token masked out: every step is skipped, and that is an error, not "done" */
    const int lens[4] = {30, 30, 30, 30};
    const char *d2 = strdup(tpath("masked.h5"));
    write_set(d2, 4, lens, 0, 512, -1, 0);
    const char *cfg = config("masked", d2, 3, 2);
    assert_int_equal(train(cfg, NULL, log), 1);
    expect_log(log, "no optimizer step was applied in 3 steps (3 had no loss-masked token");
    assert_false(ei_path_exists(tpath("run-masked/gates.safetensors")));
    assert_int_equal(eval_data(d2, log), 1);
    expect_log(log, "no loss-masked tokens to score");
    free((void *)d1), free((void *)d2);
}

/* Samples of 0, 1, 2 and 5 tokens written with the HDF5 API (the writer refuses empty ones), no
 * seal: as another program would write them. */
static void write_raw_short(const char *p) {
    const int32_t toks[8] = {1, 1, 20, 1, 30, 40, 50, 60};
    const uint8_t mask[8] = {0, 0, 1, 0, 1, 1, 1, 1};
    const int64_t off[5] = {0, 0, 1, 3, 8}, docs[4] = {0, 1, 2, 3};
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    hsize_t n = 8, no = 5, nd = 4;
    struct {
        const char *name;
        hid_t ft, mt;
        const void *data;
        hsize_t *n;
    } ds[] = {{"tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, toks, &n},
              {"loss_mask", H5T_STD_U8LE, H5T_NATIVE_UINT8, mask, &n},
              {"offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, off, &no},
              {"doc_ids", H5T_STD_I64LE, H5T_NATIVE_INT64, docs, &nd}};
    for (size_t i = 0; i < 4; i++) {
        hid_t sp = H5Screate_simple(1, ds[i].n, NULL);
        hid_t d = H5Dcreate2(f, ds[i].name, ds[i].ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, ds[i].mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds[i].data);
        H5Dclose(d);
        H5Sclose(sp);
    }
    hid_t g = H5Gcreate2(f, "meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t s = H5Screate(H5S_SCALAR);
    const char *names[] = {"format_version", "vocab_size"};
    const int64_t vals[] = {EI_DATASET_FORMAT_VERSION, 512};
    for (int i = 0; i < 2; i++) {
        hid_t a = H5Acreate2(g, names[i], H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, &vals[i]);
        H5Aclose(a);
    }
    H5Sclose(s);
    H5Gclose(g);
    H5Fclose(f);
}

static void test_empty_samples_are_skipped_and_counted(void **state) {
    (void)state;
    const char *d = strdup(tpath("raw_short.h5"));
    write_raw_short(d);
    const char *log = tpath("raw.log");
    /* in file order: step 1 = samples 0 and 1 (nothing to predict), step 2 = samples 2 and 3 */
    assert_int_equal(train(config("raw", d, 4, 1), NULL, log), 0);
    expect_log(log, "carries no ei checksum"); /* a foreign file is parsed unverified, and says so */
    expect_log(log, "step 1: no loss-masked token in the batch, step skipped");
    char *m = slurp(tpath("run-raw/metrics.jsonl"));
    char *l1 = strstr(m, "{\"step\": 1,"), *l2 = strstr(m, "{\"step\": 2,"), *l3 = strstr(m, "{\"step\": 3,");
    assert_non_null(l1);
    assert_non_null(l2);
    assert_non_null(l3);
    *l2 = '\0';
    assert_non_null(strstr(l1, "\"empty\": true"));
    assert_non_null(strstr(l1, "\"bad_steps\": 0")); /* max_bad_steps 1 would have stopped a bad step */
    l3[-1] = '\0';
    assert_null(strstr(l2 + 1, "skipped"));
    free(m);
    assert_int_equal(eval_data(d, log), 0);
    expect_log(log, "tokens 5"); /* 1 (sample 2) + 4 (sample 3); samples 0 and 1 predict nothing */
    free((void *)d);
}

static void test_non_finite_steps(void **state) {
    (void)state;
    const int lens[6] = {40, 40, 40, 40, 40, 40};
    const char *d = strdup(tpath("normal.h5"));
    write_set(d, 6, lens, 1, 512, -1, 0);
    const char *log = tpath("nan.log");
    /* one non-finite step: skipped and counted, training goes on and ends normally */
    assert_int_equal(train(config("nan1", d, 4, 3), "EI_TEST_NAN_STEP=2", log), 0);
    expect_log(log, "step 2: non-finite loss, step skipped (1 in a row)");
    expect_log(log, "done, gates written");
    char *m = slurp(tpath("run-nan1/metrics.jsonl"));
    char *l2 = strstr(m, "{\"step\": 2,"), *l3 = strstr(m, "{\"step\": 3,");
    assert_non_null(l2);
    assert_non_null(l3);
    *l3 = '\0';
    assert_non_null(strstr(l2, "\"loss\": null"));
    assert_non_null(strstr(l2, "\"skipped\": true"));
    assert_non_null(strstr(l2, "\"bad_steps\": 1"));
    assert_null(strstr(l3 + 1, "skipped"));
    free(m);
    /* max_bad_steps in a row: a clear stop naming the step and the limit */
    assert_int_equal(train(config("nan2", d, 8, 3), "EI_TEST_NAN_STEP=2-100", log), 1);
    expect_log(log, "step 4: 3 consecutive steps with a non-finite loss or gradient (train.max_bad_steps = 3)");
    assert_false(ei_path_exists(tpath("run-nan2/gates.safetensors")));
    /* all steps non-finite but fewer than max_bad_steps: no update was applied, an error */
    assert_int_equal(train(config("nan3", d, 2, 5), "EI_TEST_NAN_STEP=1-2", log), 1);
    expect_log(log, "no optimizer step was applied in 2 steps (0 had no loss-masked token");
    free((void *)d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_beyond_the_vocabulary),
        cmocka_unit_test(test_short_and_masked_samples),
        cmocka_unit_test(test_empty_samples_are_skipped_and_counted),
        cmocka_unit_test(test_non_finite_steps),
    };
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return cmocka_run_group_tests(tests, setup, teardown);
}
