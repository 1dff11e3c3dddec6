/* `ei export` through the binary ($EI_BIN): a run trained with every EdgeInfinite option away from
 * its default (head gate, delta rule, design positions, ...) exports gates whose metadata, and a
 * merged folder whose edgeinfinite.json, read back into exactly the options of the checkpoint's
 * config, field by field; the merged folder names the base model by a path that resolves from
 * anywhere although the run gave it relative to its own directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "formats/gates.h"
#include "train/checkpoint.h"
#include "train/train_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];
static const char *ei_bin;

/* fork + exec in dir; the exit status, -1 on a signal. */
static int run(const char *dir, const char *const *argv, const char *log) {
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        if (f) dup2(fileno(f), 1);
        if (dir && chdir(dir) != 0) _exit(126);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run_ok(const char *dir, const char *const *argv, const char *name) {
    char log[512];
    snprintf(log, sizeof log, "%s/%s.log", tmpdir, name);
    int rc = run(dir, argv, log);
    if (rc != 0) {
        char *buf = NULL;
        size_t n = 0;
        if (ei_file_read_all(log, &buf, &n) == 0) fprintf(stderr, "---- %s\n%s\n----\n", log, buf);
        free(buf);
    }
    return rc;
}

static int setup(void **state) {
    (void)state;
    ei_bin = getenv("EI_BIN");
    if (!ei_bin) {
        fprintf(stderr, "EI_BIN is not set (run through ctest)\n");
        return -1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ei-export-test-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Non-default values of every option; documents of 40+ tokens pass the routing threshold 30 and
 * fill the window, so the memory path runs. */
static const char *const odd_yaml =
    "edgeinfinite:\n  segment: 12\n  sink: 3\n  window: 20\n  gate: head\n  memory_rule: delta\n"
    "  route_threshold: 30\n  gate_init_bias: -0.43333333333333335\n  bptt_segments: 2\n  positions: design\n";

static void expect_same(const ei_opts *a, const ei_opts *b, const char *what) {
    for (int i = 0; i < ei_opts_count(); i++) {
        const ei_opt_desc *d = ei_opt_desc_at(i);
        if (memcmp((const char *)a + d->offset, (const char *)b + d->offset, d->size) != 0) {
            char va[64], vb[64];
            ei_opts_get_str(a, i, va, sizeof va);
            ei_opts_get_str(b, i, vb, sizeof vb);
            fail_msg("%s: option %s: %s != %s", what, d->name, va, vb);
        }
    }
}

static void test_export_carries_every_option(void **state) {
    (void)state;
    char text[512], tok[512], ds[512], train_ds[512], cfg[512], out[512];
    snprintf(text, sizeof text, "%s/text/tinystories.txt", EI_FIXTURES);
    snprintf(tok, sizeof tok, "%s/models/stories260K/tok512.bin", EI_FIXTURES);
    snprintf(ds, sizeof ds, "%s/ds.h5", tmpdir);
    snprintf(train_ds, sizeof train_ds, "%s/ds.train.h5", tmpdir);
    const char *prep[] = {ei_bin, "prepare", "--tokenizer", tok, "--output", ds, "--doc-mode", "paragraphs",
                          "--max-docs", "6", "--min-tokens", "40", "--max-tokens", "64", "--val-fraction", "0.25",
                          "--quiet", text, NULL};
    assert_int_equal(run_ok(NULL, prep, "prepare"), 0);

    /* The model path is relative to the run's directory (the fixtures' models folder). */
    char models[512];
    snprintf(models, sizeof models, "%s/models", EI_FIXTURES);
    snprintf(cfg, sizeof cfg, "%s/train.yaml", tmpdir);
    snprintf(out, sizeof out, "%s/run", tmpdir);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fprintf(f, "model:\n  path: stories260K/stories260K.bin\n%sdata:\n  train: %s\n"
               "train:\n  steps: 1\n  lr: 0.01\n  seed: 3\n  threads: 1\n  out_dir: %s\n",
            odd_yaml, train_ds, out);
    fclose(f);
    const char *train[] = {ei_bin, "train", "--config", cfg, "--quiet", NULL};
    assert_int_equal(run_ok(models, train, "train"), 0);

    char ckpt[600], gates[600], merged[600];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt-1.h5", out);
    snprintf(gates, sizeof gates, "%s/exported.safetensors", tmpdir);
    snprintf(merged, sizeof merged, "%s/merged", tmpdir);
    const char *exp1[] = {ei_bin, "export", ckpt, "-o", gates, NULL};
    const char *exp2[] = {ei_bin, "export", ckpt, "--merged", merged, NULL};
    assert_int_equal(run_ok(models, exp1, "export"), 0);
    assert_int_equal(run_ok(models, exp2, "export-merged"), 0);

    /* What the run was configured with, as the checkpoint recorded it. */
    ei_checkpoint c;
    assert_int_equal(ei_ckpt_read(ckpt, 0, &c), 0);
    ei_train_config tc;
    if (ei_train_config_from_text(&tc, c.config_yaml, ckpt)) fail_msg("%s", ei_error_get());
    ei_opts want;
    ei_train_config_opts(&tc, &want);
    ei_train_config_free(&tc);
    ei_ckpt_free(&c);
    ei_opts def;
    ei_opts_default(&def);
    for (int i = 0; i < ei_opts_count(); i++) {
        const ei_opt_desc *d = ei_opt_desc_at(i);
        if (memcmp((char *)&want + d->offset, (char *)&def + d->offset, d->size) == 0)
            fail_msg("option %s is at its default: the test would not see it dropped", d->name);
    }
    assert_int_equal(want.gate, EI_GATE_HEAD);
    assert_int_equal(want.memory_rule, EI_MEM_DELTA);
    assert_int_equal(want.positions, EI_POS_DESIGN);

    char mg[700], mj[700];
    snprintf(mg, sizeof mg, "%s/gates.safetensors", merged);
    snprintf(mj, sizeof mj, "%s/edgeinfinite.json", merged);
    const char *gate_files[] = {gates, mg};
    for (int k = 0; k < 2; k++) {
        ei_opts got;
        ei_opts_default(&got);
        if (ei_gates_file_opts(gate_files[k], &got)) fail_msg("%s", ei_error_get());
        expect_same(&want, &got, gate_files[k]);
    }
    ei_opts got;
    ei_opts_default(&got);
    char *base = NULL;
    if (ei_opts_from_json_file(mj, &got, &base)) fail_msg("%s", ei_error_get());
    expect_same(&want, &got, mj);
    /* absolute, and the model the run used */
    assert_non_null(base);
    assert_int_equal(base[0], '/');
    assert_true(ei_path_exists(base));
    assert_non_null(strstr(base, "/stories260K/stories260K.bin"));
    free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_carries_every_option),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
