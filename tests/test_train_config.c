/* train/train_config: the shipped configs load and point at real files, the schema's errors name
 * file:line: key or the override, cross-key checks, dump/reload round trip; the edgeinfinite.* rows
 * are the options table of model/options.h, also when embedded in another config. */
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

/* The edgeinfinite.* rows of the YAML schema are the options table: same keys in the same order,
 * types, ranges, defaults, choices, help, and FIXED exactly for the options that change the maths.
 * So the two cannot disagree again. */
static void test_schema_is_the_options_table(void **state) {
    (void)state;
    const ei_cfg_key *keys = ei_train_config_schema();
    assert_non_null(keys);
    int first = -1, n_ei = 0;
    for (int k = 0; keys[k].key; k++)
        if (strncmp(keys[k].key, "edgeinfinite.", 13) == 0) {
            if (first < 0) first = k;
            n_ei++;
        }
    assert_int_equal(n_ei, ei_opts_count());
    ei_opts def;
    ei_opts_default(&def);
    for (int i = 0; i < ei_opts_count(); i++) {
        const ei_opt_desc *d = ei_opt_desc_at(i);
        const ei_cfg_key *k = &keys[first + i];
        char want[64];
        snprintf(want, sizeof want, "edgeinfinite.%s", d->name);
        assert_string_equal(k->key, want);
        assert_int_equal(k->offset, offsetof(ei_train_config, ei) + d->offset);
        assert_string_equal(k->help, d->help);
        assert_int_equal(!!(k->flags & EI_CFG_FIXED), !!(d->flags & EI_OPT_MATHS));
        assert_false(k->flags & EI_CFG_REQUIRED);
        char dtext[64];
        ei_opts_get_str(&def, i, dtext, sizeof dtext);
        assert_string_equal(k->def, dtext);
        switch (d->type) {
        case EI_OPT_INT:
        case EI_OPT_FLOAT:
            assert_int_equal(k->type, d->type == EI_OPT_INT ? EI_CFG_INT : EI_CFG_FLOAT);
            assert_true(k->min == d->min && k->max == d->max);
            break;
        case EI_OPT_ENUM:
            assert_int_equal(k->type, EI_CFG_ENUM);
            assert_string_equal(k->choices, d->choices);
            break;
        }
    }
    assert_false(keys[first + EI_OPT_bptt_segments].flags & EI_CFG_FIXED);

    /* Loaded defaults are ei_opts_default, byte for byte. */
    const char *sets[] = {"model.path=m.bin", "data.train=d.h5"};
    ei_train_config c;
    assert_int_equal(ei_train_config_load(&c, NULL, 0, sets, 2), 0);
    assert_memory_equal(&c.ei, &def, sizeof def);
    /* Each end of each numeric range is accepted, one past it refused, naming the key. */
    for (int i = 0; i < ei_opts_count(); i++) {
        const ei_opt_desc *d = ei_opt_desc_at(i);
        if (d->type == EI_OPT_ENUM) continue;
        double step = d->type == EI_OPT_INT ? 1 : 1e-9;
        double vals[4] = {d->min, d->max, d->min - step, d->max + step};
        for (int j = 0; j < 4; j++) {
            char set[128];
            snprintf(set, sizeof set, "edgeinfinite.%s=%.17g", d->name, vals[j]);
            const char *all[] = {sets[0], sets[1], set};
            ei_train_config t;
            int rc = ei_train_config_load(&t, NULL, 0, all, 3);
            if (j < 2) {
                if (rc) fail_msg("%s: %s", set, ei_error_get());
                assert_true(ei_opts_get_num(&t.ei, i) == vals[j]);
                ei_train_config_free(&t);
            } else {
                assert_int_equal(rc, -1);
                char want[96];
                snprintf(want, sizeof want, "edgeinfinite.%s: ", d->name);
                assert_non_null(strstr(ei_error_get(), want));
                assert_non_null(strstr(ei_error_get(), "out of range"));
            }
        }
    }
    /* Every option round-trips through the YAML dump. */
    const char *odd[] = {sets[0], sets[1], "edgeinfinite.gate=head", "edgeinfinite.memory_rule=delta",
                         "edgeinfinite.positions=design", "edgeinfinite.gate_init_bias=-0.43333333333333335",
                         "edgeinfinite.bptt_segments=3", "edgeinfinite.route_threshold=0"};
    ei_train_config_free(&c);
    assert_int_equal(ei_train_config_load(&c, NULL, 0, odd, 8), 0);
    char *text = ei_train_config_dump(&c);
    ei_train_config b;
    assert_int_equal(ei_train_config_from_text(&b, text, "dump"), 0);
    assert_memory_equal(&b.ei, &c.ei, sizeof c.ei);
    ei_opts o;
    ei_train_config_opts(&c, &o);
    assert_memory_equal(&o, &c.ei, sizeof o);
    assert_int_equal(o.positions, EI_POS_DESIGN);
    free(text);
    ei_train_config_free(&b);
    ei_train_config_free(&c);
}

/* A second config embedding the options (as deployment scenarios will) gets the same rows under
 * its own section and offset. */
typedef struct {
    char *name;
    ei_opts opts;
    int budget;
} scenario;

static void test_options_in_another_config(void **state) {
    (void)state;
    static const ei_cfg_key head[] = {
        {"scenario.name", EI_CFG_STRING, offsetof(scenario, name), 1, 0, NULL, NULL, 0, 0, "name"}, {0}};
    static const ei_cfg_key tail[] = {
        {"scenario.budget", EI_CFG_INT, offsetof(scenario, budget), 0, 100, "5", NULL, 0, 0, "budget"}, {0}};
    ei_cfg_schema s;
    ei_cfg_schema_init(&s);
    assert_int_equal(ei_cfg_schema_add(&s, head), 0);
    assert_int_equal(ei_opts_schema_append(&s, "scenario.model", offsetof(scenario, opts)), 0);
    assert_int_equal(ei_cfg_schema_add(&s, tail), 0);
    assert_int_equal(s.n, 2 + ei_opts_count());
    assert_null(s.keys[s.n].key);
    scenario sc;
    ei_config c;
    assert_int_equal(ei_config_init(&c, s.keys, &sc), 0);
    ei_opts def;
    ei_opts_default(&def);
    assert_memory_equal(&sc.opts, &def, sizeof def);
    assert_int_equal(ei_config_load_string(&c, "scenario:\n  name: phone\n  model:\n    window: 64\n"
                                               "    positions: design\n  budget: 7\n", "sc.yaml"), 0);
    assert_int_equal(sc.opts.window, 64);
    assert_int_equal(sc.opts.positions, EI_POS_DESIGN);
    assert_int_equal(sc.budget, 7);
    assert_int_equal(ei_config_load_string(&c, "scenario:\n  model:\n    windw: 64\n", "sc.yaml"), -1);
    assert_non_null(strstr(ei_error_get(), "sc.yaml:3: scenario.model.windw: unknown key"));
    ei_config_release(&c);
    ei_cfg_schema_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_configs),
        cmocka_unit_test(test_overrides_and_errors),
        cmocka_unit_test(test_dump_reload),
        cmocka_unit_test(test_schema_is_the_options_table),
        cmocka_unit_test(test_options_in_another_config),
    };
    return cmocka_run_group_tests(tests, goto_repo_root, NULL);
}
