/* `ei train` end to end through the binary ($EI_BIN): a run killed with SIGKILL and resumed ends
 * with gates bit-identical to an uninterrupted run; a 2-rank MPI run equals the single-process run
 * to float tolerance; only the gates change; resuming with another base model or an incompatible
 * config is refused; `ei export` writes the gates under the documented names; 1 and 2 threads give
 * bit-identical gates; the RNG state in every checkpoint is the data loader's shuffling generator.
 *
 * Data: TinyStories paragraphs with the stories260K tokenizer, EdgeInfinite with tiny segments
 * (L 16, S 2, W 16, so documents of 35+ tokens run the memory path) to keep every step fast. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_io.h"
#include "core/ei_rng.h"
#include "data/dataset.h"
#include "train/checkpoint.h"
#include "formats/safetensors.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[256];
static char data_train[512], data_val[512], cfg_path[512];
static const char *ei_bin;

/* fork + exec; returns the pid (wait = 0) or the exit status (wait = 1, -1 on signal). */
static int run(int wait, const char *const *argv, const char *log) {
    pid_t pid = fork();
    if (pid == 0) {
        if (log) {
            FILE *f = freopen(log, "w", stderr);
            if (f) dup2(fileno(f), 1);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (!wait) return (int)pid;
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void print_log(const char *log) {
    char *buf = NULL;
    size_t n = 0;
    if (ei_file_read_all(log, &buf, &n) == 0) fprintf(stderr, "---- %s\n%s\n----\n", log, buf);
    free(buf);
}

static int setup(void **state) {
    (void)state;
    ei_bin = getenv("EI_BIN");
    if (!ei_bin) {
        fprintf(stderr, "EI_BIN is not set (run through ctest)\n");
        return -1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ei-trainer-test-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    char text[512], tok[512], out[512], log[512];
    snprintf(text, sizeof text, "%s/text/tinystories.txt", EI_FIXTURES);
    snprintf(tok, sizeof tok, "%s/models/stories260K/tok512.bin", EI_FIXTURES);
    snprintf(out, sizeof out, "%s/ds.h5", tmpdir);
    snprintf(log, sizeof log, "%s/prepare.log", tmpdir);
    const char *argv[] = {ei_bin, "prepare", "--tokenizer", tok, "--output", out, "--doc-mode", "paragraphs",
                          "--max-docs", "48", "--min-tokens", "40", "--max-tokens", "96", "--val-fraction",
                          "0.25", "--quiet", text, NULL};
    if (run(1, argv, log) != 0) {
        print_log(log);
        return -1;
    }
    snprintf(data_train, sizeof data_train, "%s/ds.train.h5", tmpdir);
    snprintf(data_val, sizeof data_val, "%s/ds.val.h5", tmpdir);
    snprintf(cfg_path, sizeof cfg_path, "%s/train.yaml", tmpdir);
    FILE *f = fopen(cfg_path, "w");
    if (!f) return -1;
    fprintf(f,
            "model:\n  path: %s/models/stories260K/stories260K.bin\n"
            "edgeinfinite:\n  segment: 16\n  sink: 2\n  window: 16\n  gate: token\n"
            "data:\n  train: %s\n  val: %s\n"
            "train:\n  micro_batch: 1\n  grad_accum: 4\n  lr: 0.01\n  warmup_steps: 2\n  steps: 24\n"
            "  eval_every: 8\n  eval_samples: 4\n  checkpoint_every: 1\n  keep_last: 30\n  seed: 7\n"
            "  threads: 1\n",
            EI_FIXTURES, data_train, data_val);
    fclose(f);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static int train(const char *out, int wait, const char *extra1, const char *extra2, const char *logname) {
    char outset[600], log[600];
    snprintf(outset, sizeof outset, "train.out_dir=%s/%s", tmpdir, out);
    snprintf(log, sizeof log, "%s/%s.log", tmpdir, logname);
    const char *argv[12] = {ei_bin, "train", "--config", cfg_path, "--set", outset, "--quiet"};
    int k = 7;
    if (extra1) argv[k++] = extra1;
    if (extra2) argv[k++] = extra2;
    argv[k] = NULL;
    int rc = run(wait, argv, log);
    if (wait && rc != 0) print_log(log);
    return rc;
}

static void read_ckpt(const char *out, int step, ei_checkpoint *c) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s/ckpt-%d.h5", tmpdir, out, step);
    int rc = ei_ckpt_read(p, 0, c);
    if (rc != 0) fprintf(stderr, "%s\n", p);
    assert_int_equal(rc, 0);
}

static void test_resume_after_sigkill_is_bit_identical(void **state) {
    (void)state;
    assert_int_equal(train("full", 1, NULL, NULL, "full"), 0);

    /* Start the same run, SIGKILL it once checkpoint 5 exists, then resume. */
    char ck[600], last[600];
    snprintf(ck, sizeof ck, "%s/killed/ckpt-5.h5", tmpdir);
    snprintf(last, sizeof last, "%s/killed/ckpt-24.h5", tmpdir);
    pid_t pid = (pid_t)train("killed", 0, NULL, NULL, "killed");
    int st = 0, exited = 0;
    for (int i = 0; i < 120000 && !ei_path_exists(ck); i++) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            exited = 1;
            break;
        }
        usleep(500);
    }
    assert_false(exited);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    assert_true(WIFSIGNALED(st));
    assert_false(ei_path_exists(last)); /* it really was interrupted */
    /* whatever moment the kill hit, every checkpoint under its final name is complete (the
     * writer renames only whole, sealed files; tests/cli_crash_resume.sh kills mid-write too) */
    for (int k = 1; k <= 24; k++) {
        char p[600];
        snprintf(p, sizeof p, "%s/killed/ckpt-%d.h5", tmpdir, k);
        ei_checkpoint c;
        if (ei_path_exists(p) && ei_ckpt_read(p, 0, &c) != 0) fail_msg("%s is incomplete after SIGKILL", p);
        if (ei_path_exists(p)) ei_ckpt_free(&c);
    }

    char dir[600];
    snprintf(dir, sizeof dir, "%s/killed", tmpdir);
    assert_int_equal(train("killed", 1, "--resume", dir, "resumed"), 0);

    ei_checkpoint a, b;
    read_ckpt("full", 24, &a);
    read_ckpt("killed", 24, &b);
    assert_int_equal(a.n_params, b.n_params);
    assert_int_equal(a.step, 24);
    assert_memory_equal(a.params, b.params, a.n_params * sizeof(float));
    assert_memory_equal(a.adam_m, b.adam_m, a.n_params * sizeof(float));
    assert_memory_equal(a.adam_v, b.adam_v, a.n_params * sizeof(float));
    assert_int_equal(a.data_epoch, b.data_epoch);
    assert_int_equal(a.data_index, b.data_index);
    assert_int_equal(b.n_rng, EI_RNG_STATE_WORDS);
    assert_memory_equal(a.rng, b.rng, sizeof(uint64_t) * EI_RNG_STATE_WORDS);
    /* The gates moved away from their initialisation (w = 0, b = 0). */
    double s = 0;
    for (size_t i = 0; i < a.n_params; i++) s += fabs(a.params[i]);
    assert_true(s > 1e-3);
    ei_ckpt_free(&a);
    ei_ckpt_free(&b);

    /* metrics.jsonl of the resumed run has each step exactly once. */
    char mp[600];
    snprintf(mp, sizeof mp, "%s/killed/metrics.jsonl", tmpdir);
    char *buf = NULL;
    size_t n = 0;
    assert_int_equal(ei_file_read_all(mp, &buf, &n), 0);
    int lines = 0, step = 0;
    for (char *p = buf; (p = strstr(p, "{\"step\": ")) != NULL; p++) {
        int st2 = atoi(p + 9);
        assert_int_equal(st2, step + 1);
        step = st2;
        lines++;
    }
    assert_int_equal(lines, 24);
    free(buf);
}

/* Every checkpoint's /rng_state is the state the data loader draws the order of data_epoch from:
 * seed 7's stream after data_epoch epoch shuffles of the training samples (data/dataset.h). */
static void test_checkpoint_rng_is_the_loaders(void **state) {
    (void)state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/full", tmpdir);
    if (!ei_path_exists(dir)) assert_int_equal(train("full", 1, NULL, NULL, "full"), 0);
    ei_dataset *d = ei_dataset_open(data_train);
    assert_non_null(d);
    int64_t n = ei_dataset_n_samples(d);
    ei_dataset_close(d);
    int64_t *scratch = malloc(sizeof *scratch * (size_t)n);
    assert_non_null(scratch);
    int64_t last_epoch = 0;
    for (int step = 1; step <= 24; step++) {
        ei_checkpoint c;
        read_ckpt("full", step, &c);
        assert_int_equal(c.n_rng, EI_RNG_STATE_WORDS);
        ei_rng want;
        ei_rng_seed(&want, 7);
        for (int64_t e = 0; e < c.data_epoch; e++) {
            for (int64_t i = 0; i < n; i++) scratch[i] = i;
            ei_rng_shuffle_i64(&want, scratch, (size_t)n);
        }
        assert_memory_equal(c.rng, want.s, sizeof want.s);
        last_epoch = c.data_epoch;
        ei_ckpt_free(&c);
    }
    assert_true(last_epoch >= 2); /* the run crossed epochs, so the state really moved */
    free(scratch);
}

static void test_resume_refuses_incompatible(void **state) {
    (void)state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/full", tmpdir);
    if (!ei_path_exists(dir)) assert_int_equal(train("full", 1, NULL, NULL, "full"), 0);
    char log[600], *buf = NULL;
    size_t n = 0;
    snprintf(log, sizeof log, "%s/refuse1.log", tmpdir);
    /* another EdgeInfinite window: the trained gates would mean something else */
    char outset[600];
    snprintf(outset, sizeof outset, "train.out_dir=%s/full", tmpdir);
    const char *argv[] = {ei_bin, "train", "--config", cfg_path, "--set", outset, "--set", "edgeinfinite.window=32",
                          "--resume", dir, "--quiet", NULL};
    assert_int_not_equal(run(1, argv, log), 0);
    assert_int_equal(ei_file_read_all(log, &buf, &n), 0);
    assert_non_null(strstr(buf, "window"));
    free(buf);
    /* another base model (the HF copy of the same weights has another identity) */
    char hf[600];
    snprintf(hf, sizeof hf, "model.path=%s/models/stories260K-hf", EI_FIXTURES);
    const char *argv2[] = {ei_bin, "train", "--config", cfg_path, "--set", outset, "--set", hf,
                           "--resume", dir, "--quiet", NULL};
    snprintf(log, sizeof log, "%s/refuse2.log", tmpdir);
    assert_int_not_equal(run(1, argv2, log), 0);
    assert_int_equal(ei_file_read_all(log, &buf, &n), 0);
    assert_non_null(strstr(buf, "model"));
    free(buf);
}

static void test_export_names(void **state) {
    (void)state;
    char dir[600], out[600], log[600];
    snprintf(dir, sizeof dir, "%s/full", tmpdir);
    if (!ei_path_exists(dir)) assert_int_equal(train("full", 1, NULL, NULL, "full"), 0);
    snprintf(out, sizeof out, "%s/gates.safetensors", tmpdir);
    snprintf(log, sizeof log, "%s/export.log", tmpdir);
    const char *argv[] = {ei_bin, "export", dir, "-o", out, NULL};
    assert_int_equal(run(1, argv, log), 0);
    ei_st_file *f = ei_st_open(out);
    assert_non_null(f);
    assert_int_equal(ei_st_count(f), 10);
    const ei_st_tensor *w = ei_st_find(f, "model.layers.4.self_attn.memory_gate.weight");
    const ei_st_tensor *b = ei_st_find(f, "model.layers.0.self_attn.memory_gate.bias");
    assert_non_null(w);
    assert_non_null(b);
    assert_int_equal(w->shape[0], 8);
    assert_int_equal(w->shape[1], 64);
    assert_int_equal(b->shape[0], 8);
    assert_string_equal(ei_st_metadata(f, "window"), "16");
    /* the exported values are the checkpoint's */
    ei_checkpoint c;
    read_ckpt("full", 24, &c);
    float bias[8];
    assert_int_equal(ei_st_to_f32(b, bias), 0);
    assert_memory_equal(bias, c.params + 8 * 64, sizeof bias);
    ei_st_close(f);

    /* Python's reading of the format (json header + numpy), when numpy is installed. */
    if (system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "note: numpy not installed, Python load check skipped\n");
        ei_ckpt_free(&c);
        return;
    }
    char cmd[2400], res[600];
    snprintf(res, sizeof res, "%s/py.out", tmpdir);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import json, struct, sys, numpy as np\n"
             "b = open(sys.argv[1], \"rb\").read(); n = struct.unpack(\"<Q\", b[:8])[0]\n"
             "h = json.loads(b[8:8 + n]); h.pop(\"__metadata__\"); s = 0.0\n"
             "for k, t in h.items():\n"
             "    a = np.frombuffer(b[8 + n + t[\"data_offsets\"][0]:8 + n + t[\"data_offsets\"][1]], \"<f4\")"
             ".reshape(t[\"shape\"])\n"
             "    s += float(a.astype(np.float64).sum())\n"
             "print(len(h), repr(s))' '%s' > '%s'",
             out, res);
    assert_int_equal(system(cmd), 0);
    char *txt = NULL;
    size_t len = 0;
    assert_int_equal(ei_file_read_all(res, &txt, &len), 0);
    int count = 0;
    double pysum = 0;
    assert_int_equal(sscanf(txt, "%d %lf", &count, &pysum), 2);
    free(txt);
    double sum = 0;
    for (size_t i = 0; i < c.n_params; i++) sum += c.params[i];
    assert_int_equal(count, 10);
    assert_true(fabs(pysum - sum) <= 1e-9 * fmax(1.0, fabs(sum)));
    ei_ckpt_free(&c);
}

static void test_mpi_two_ranks_equal_single_process(void **state) {
    (void)state;
    const char *mpi = getenv("EI_MPI"), *mpiexec = getenv("EI_MPIEXEC");
    if (!mpi || strcmp(mpi, "1") != 0 || !mpiexec || !*mpiexec) {
        fprintf(stderr, "skipped: built without MPI or no mpirun\n");
        skip();
    }
    char out1[600], out2[600], log[600];
    snprintf(out1, sizeof out1, "train.out_dir=%s/single", tmpdir);
    snprintf(out2, sizeof out2, "train.out_dir=%s/mpi", tmpdir);
    const char *a1[] = {ei_bin, "train", "--config", cfg_path, "--set", out1, "--set", "train.steps=6", "--quiet", NULL};
    snprintf(log, sizeof log, "%s/single.log", tmpdir);
    assert_int_equal(run(1, a1, log), 0);
    /* OpenMPI's own allocations are not ours to leak-check. */
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    const char *a2[] = {mpiexec, "--oversubscribe", "-np", "2", ei_bin, "train", "--config", cfg_path, "--set",
                        out2, "--set", "train.steps=6", "--quiet", NULL};
    snprintf(log, sizeof log, "%s/mpi.log", tmpdir);
    int rc = run(1, a2, log);
    if (rc != 0) print_log(log);
    assert_int_equal(rc, 0);
    ei_checkpoint a, b;
    read_ckpt("single", 6, &a);
    read_ckpt("mpi", 6, &b);
    assert_int_equal(a.n_params, b.n_params);
    double maxdiff = 0, maxabs = 0;
    for (size_t i = 0; i < a.n_params; i++) {
        maxdiff = fmax(maxdiff, fabs((double)a.params[i] - b.params[i]));
        maxabs = fmax(maxabs, fabs((double)a.params[i]));
    }
    fprintf(stderr, "mpi vs single: max |diff| %.3g, max |param| %.3g\n", maxdiff, maxabs);
    assert_true(maxabs > 1e-3);
    assert_true(maxdiff <= 1e-4 * fmax(1.0, maxabs));
    assert_int_equal(a.data_index, b.data_index);
    ei_ckpt_free(&a);
    ei_ckpt_free(&b);
}

static void test_threads_bit_identical(void **state) {
    (void)state;
    assert_int_equal(train("t1", 1, "--set", "train.steps=6", "t1"), 0);
    char t2[600], log[600];
    snprintf(t2, sizeof t2, "train.out_dir=%s/t2", tmpdir);
    snprintf(log, sizeof log, "%s/t2.log", tmpdir);
    const char *argv[] = {ei_bin, "train", "--config", cfg_path, "--set", t2, "--set", "train.steps=6",
                          "--set", "train.threads=2", "--quiet", NULL};
    assert_int_equal(run(1, argv, log), 0);
    ei_checkpoint a, b;
    read_ckpt("t1", 6, &a);
    read_ckpt("t2", 6, &b);
    assert_int_equal(a.n_params, b.n_params);
    assert_memory_equal(a.params, b.params, a.n_params * sizeof(float));
    assert_memory_equal(a.adam_v, b.adam_v, a.n_params * sizeof(float));
    ei_ckpt_free(&a);
    ei_ckpt_free(&b);
}

static void test_bad_config_is_a_clear_error(void **state) {
    (void)state;
    char log[600], *buf = NULL;
    size_t n = 0;
    snprintf(log, sizeof log, "%s/badcfg.log", tmpdir);
    const char *argv[] = {ei_bin, "train", "--config", cfg_path, "--set", "train.lrr=1", NULL};
    assert_int_equal(run(1, argv, log), 2);
    assert_int_equal(ei_file_read_all(log, &buf, &n), 0);
    assert_non_null(strstr(buf, "train.lrr"));
    free(buf);
    /* a dataset that is not HDF5 */
    char bad[600], set[700];
    snprintf(bad, sizeof bad, "%s/garbage.h5", tmpdir);
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("not an hdf5 file\n", f);
    fclose(f);
    snprintf(set, sizeof set, "data.train=%s", bad);
    const char *argv2[] = {ei_bin, "train", "--config", cfg_path, "--set", set, "--quiet", NULL};
    assert_int_equal(run(1, argv2, log), 1);
    assert_int_equal(ei_file_read_all(log, &buf, &n), 0);
    assert_non_null(strstr(buf, "garbage.h5"));
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_after_sigkill_is_bit_identical),
        cmocka_unit_test(test_checkpoint_rng_is_the_loaders),
        cmocka_unit_test(test_resume_refuses_incompatible),
        cmocka_unit_test(test_export_names),
        cmocka_unit_test(test_mpi_two_ranks_equal_single_process),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_bad_config_is_a_clear_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
