/* train/train_config: the shipped configs load and point at real files, the schema's errors name
 * file:line: key or the override, cross-key checks, dump/reload round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "train/train_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Configs use paths relative to the repository root; run from there. */
static int goto_repo_root(void **state) {
    (void)state;
    static const char suffix[] = "/tests/data";
    char root[4096];
    snprintf(root, sizeof root, "%s", EI_TEST_DATA);
    size_t n = strlen(root), k = sizeof suffix - 1;
    if (n > k && strcmp(root + n - k, suffix) == 0) root[n - k] = '\0';
    return chdir(root) == 0 ? 0 : -1;
}

static void test_shipped_configs(void **state) {
    (void)state;
    const char *names[] = {"configs/train/stories_lm.yaml", "configs/train/stories_passkey.yaml"};
    for (int i = 0; i < 2; i++) {
        ei_train_config c;
        if (ei_train_config_load(&c, &names[i], 1, NULL, 0)) fail_msg("%s", ei_error_get());
        assert_int_equal(c.ei.segment, 128);
        assert_int_equal(c.ei.window, 256);
        assert_int_equal(c.ei.sink, 4);
        assert_int_equal(c.ei.gate, EI_GATE_TOKEN);
        assert_int_equal(c.ei.memory_rule, EI_MEM_LINEAR);
        assert_true(c.train.lr >= 1e-3 && c.train.lr <= 1e-2);
        assert_true(c.train.weight_decay == 0);
        /* the model comes from configs/model/stories260K.yaml through include */
        assert_non_null(c.model.path);
        assert_non_null(strstr(c.model.path, "stories260K.bin"));
        /* and the relative paths resolve from the repository root */
        assert_true(ei_path_exists(c.model.path));
        assert_true(ei_path_exists(c.model.tokenizer));
        ei_opts o;
        ei_train_config_opts(&c, &o);
        assert_int_equal(o.segment, 128);
        assert_int_equal(o.route_threshold, -1);
        ei_train_config_free(&c);
    }
}

static void test_overrides_and_errors(void **state) {
    (void)state;
    const char *file = "configs/train/stories_lm.yaml";
    const char *sets[] = {"train.lr=1e-3", "edgeinfinite.gate=head", "train.betas=[0.8, 0.95]"};
    ei_train_config c;
    assert_int_equal(ei_train_config_load(&c, &file, 1, sets, 3), 0);
    assert_true(c.train.lr == 1e-3);
    assert_int_equal(c.ei.gate, EI_GATE_HEAD);
    assert_true(c.train.betas[0] == 0.8 && c.train.betas[1] == 0.95);
    ei_train_config_free(&c);

    const char *bad1[] = {"train.lr=-1"};
    assert_int_equal(ei_train_config_load(&c, &file, 1, bad1, 1), -1);
    assert_non_null(strstr(ei_error_get(), "--set train.lr=-1: train.lr: -1 is out of range"));
    const char *bad2[] = {"edgeinfinite.memory_rule=quadratic"};
    assert_int_equal(ei_train_config_load(&c, &file, 1, bad2, 1), -1);
    assert_non_null(strstr(ei_error_get(), "expected one of linear|delta"));
    const char *bad3[] = {"train.warmup_steps=500"}; /* more than train.steps (200) */
    assert_int_equal(ei_train_config_load(&c, &file, 1, bad3, 1), -1);
    assert_non_null(strstr(ei_error_get(), "--set train.warmup_steps=500: train.warmup_steps: 500 exceeds train.steps"));
    const char *bad4[] = {"train.steps=0", "train.epochs=0"};
    assert_int_equal(ei_train_config_load(&c, &file, 1, bad4, 2), -1);
    assert_non_null(strstr(ei_error_get(), "train.epochs"));

    /* required keys */
    assert_int_equal(ei_train_config_load(&c, NULL, 0, NULL, 0), -1);
    assert_non_null(strstr(ei_error_get(), "model.path: required"));

    /* a wrong type in a file names file:line: key */
    char tmp[] = "/tmp/ei_tcfg_XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    const char *text = "include: configs/model/stories260K.yaml\ndata:\n  train: x.h5\ntrain:\n  steps: ten\n";
    assert_true(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    const char *tf = tmp;
    assert_int_equal(ei_train_config_load(&c, &tf, 1, NULL, 0), -1);
    char want[128];
    snprintf(want, sizeof want, "%s:5: train.steps: expected an integer", tmp);
    assert_non_null(strstr(ei_error_get(), want));
    unlink(tmp);
}

static void test_dump_reload(void **state) {
    (void)state;
    const char *file = "configs/train/stories_passkey.yaml";
    const char *sets[] = {"train.lr=0.0033", "data.val=", "train.eval_generate=false"};
    ei_train_config a, b;
    assert_int_equal(ei_train_config_load(&a, &file, 1, sets, 3), 0);
    char *text = ei_train_config_dump(&a);
    assert_non_null(text);
    assert_non_null(strstr(text, "edgeinfinite:\n  segment: 128\n"));
    assert_non_null(strstr(text, "  lr: 0.0033\n"));
    assert_non_null(strstr(text, "  val: ~\n"));
    assert_int_equal(ei_train_config_from_text(&b, text, "dump"), 0);
    char diff[256];
    assert_int_equal(ei_config_compare(ei_train_config_schema(), &a, &b, 0, diff, sizeof diff), 0);
    assert_int_equal(ei_train_config_check_resume(&a, &b), 0);
    b.ei.window = 64;
    b.train.steps = 5;
    assert_int_equal(ei_train_config_check_resume(&a, &b), -1);
    assert_non_null(strstr(ei_error_get(), "1 key that must not change"));
    assert_non_null(strstr(ei_error_get(), "edgeinfinite.window: 256 -> 64"));
    free(text);
    ei_train_config_free(&a);
    ei_train_config_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_configs),
        cmocka_unit_test(test_overrides_and_errors),
        cmocka_unit_test(test_dump_reload),
    };
    return cmocka_run_group_tests(tests, goto_repo_root, NULL);
}
