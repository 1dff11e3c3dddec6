/* core/ei_config: YAML against a schema: defaults, types, ranges, errors naming file:line: key,
 * --set overrides, includes, dump/reload round trip, comparison of fixed keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/ei_config.h"
#include "core/ei_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *name;
    int count;
    int64_t big;
    double rate;
    int flag;
    int mode;
    ei_cfg_strlist tags;
    double pair[2];
    char *opt;
    int deep;
} demo_cfg;

#define OFF(f) offsetof(demo_cfg, f)
static const ei_cfg_key demo_schema[] = {
    {"run.name", EI_CFG_STRING, OFF(name), 1, 0, "\"demo\"", NULL, 0, EI_CFG_FIXED, "name"},
    {"run.count", EI_CFG_INT, OFF(count), 1, 100, "10", NULL, 0, 0, "count"},
    {"run.big", EI_CFG_I64, OFF(big), 0, 1e15, "0", NULL, 0, 0, "big"},
    {"opt.rate", EI_CFG_FLOAT, OFF(rate), 0, 1, "1e-3", NULL, 0, 0, "rate"},
    {"opt.flag", EI_CFG_BOOL, OFF(flag), 1, 0, "false", NULL, 0, 0, "flag"},
    {"opt.mode", EI_CFG_ENUM, OFF(mode), 1, 0, "fast", "fast|slow|exact", 0, EI_CFG_FIXED, "mode"},
    {"opt.tags", EI_CFG_STRLIST, OFF(tags), 1, 0, "[]", NULL, 0, 0, "tags"},
    {"opt.pair", EI_CFG_FLOATS, OFF(pair), 0, 1, "[0.9, 0.999]", NULL, 2, 0, "pair"},
    {"opt.nested.deep", EI_CFG_INT, OFF(deep), 1, 0, "7", NULL, 0, 0, "a key two levels down"},
    {"misc.opt", EI_CFG_STRING, OFF(opt), 1, 0, NULL, NULL, 0, EI_CFG_REQUIRED, "required string"},
    {0},
};

typedef struct {
    demo_cfg d;
    ei_config c;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(ei_config_init(&f->c, demo_schema, &f->d), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    ei_config_release(&f->c);
    free(f);
    return 0;
}

/* Asserts that loading text fails with an error containing every fragment. */
static void expect_error(ei_config *c, const char *text, ...) {
    ei_error_clear();
    assert_int_equal(ei_config_load_string(c, text, "t.yaml"), -1);
    const char *msg = ei_error_get();
    va_list ap;
    va_start(ap, text);
    for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;) {
        if (!strstr(msg, frag)) fail_msg("error '%s' lacks '%s'", msg, frag);
    }
    va_end(ap);
}

static void test_defaults(void **state) {
    fixture *f = *state;
    assert_string_equal(f->d.name, "demo");
    assert_int_equal(f->d.count, 10);
    assert_true(f->d.rate == 1e-3);
    assert_int_equal(f->d.flag, 0);
    assert_int_equal(f->d.mode, 0);
    assert_int_equal(f->d.tags.n, 0);
    assert_true(f->d.pair[0] == 0.9 && f->d.pair[1] == 0.999);
    assert_int_equal(f->d.deep, 7);
    assert_null(f->d.opt);
    assert_string_equal(ei_config_origin(&f->c, "run.count"), "default");
    /* misc.opt is required and unset */
    assert_int_equal(ei_config_check_required(&f->c), -1);
    assert_non_null(strstr(ei_error_get(), "misc.opt"));
}

static void test_load_values(void **state) {
    fixture *f = *state;
    const char *text = "# comment\n"
                       "run:\n"
                       "  name: 'it''s here'\n"
                       "  count: 42\n"
                       "  big: 123456789012\n"
                       "opt:\n"
                       "  rate: 2.5e-1\n"
                       "  flag: yes\n"
                       "  mode: exact\n"
                       "  tags:\n"
                       "    - a\n"
                       "    - \"b c\"\n"
                       "  pair: [0.5, 0.25]\n"
                       "  nested:\n"
                       "    deep: -3\n"
                       "misc:\n"
                       "  opt: x\n";
    assert_int_equal(ei_config_load_string(&f->c, text, "t.yaml"), 0);
    assert_string_equal(f->d.name, "it's here");
    assert_int_equal(f->d.count, 42);
    assert_true(f->d.big == 123456789012LL);
    assert_true(f->d.rate == 0.25);
    assert_int_equal(f->d.flag, 1);
    assert_int_equal(f->d.mode, 2);
    assert_int_equal(f->d.tags.n, 2);
    assert_string_equal(f->d.tags.items[0], "a");
    assert_string_equal(f->d.tags.items[1], "b c");
    assert_true(f->d.pair[0] == 0.5 && f->d.pair[1] == 0.25);
    assert_int_equal(f->d.deep, -3);
    assert_string_equal(ei_config_origin(&f->c, "run.count"), "t.yaml:4");
    assert_string_equal(ei_config_origin(&f->c, "opt.nested.deep"), "t.yaml:15");
    assert_int_equal(ei_config_check_required(&f->c), 0);
}

static void test_errors(void **state) {
    fixture *f = *state;
    expect_error(&f->c, "run:\n  cuont: 3\n", "t.yaml:2: run.cuont: unknown key", "did you mean run.count", NULL);
    expect_error(&f->c, "bogus:\n  x: 1\n", "t.yaml:1: bogus: unknown key", NULL);
    expect_error(&f->c, "run:\n  count: many\n", "t.yaml:2: run.count: expected an integer", NULL);
    expect_error(&f->c, "run:\n  count: 1.5\n", "t.yaml:2: run.count", NULL);
    expect_error(&f->c, "run:\n  count: \"5\"\n", "t.yaml:2: run.count: expected an integer", NULL);
    expect_error(&f->c, "run:\n  count: 101\n", "t.yaml:2: run.count: 101 is out of range [1, 100]", NULL);
    expect_error(&f->c, "run:\n  count: 0\n", "out of range", NULL);
    expect_error(&f->c, "run:\n  count: 99999999999\n", "run.count", NULL);
    expect_error(&f->c, "opt:\n  rate: 1.5\n", "t.yaml:2: opt.rate: 1.5 is out of range", NULL);
    expect_error(&f->c, "opt:\n  rate: .nan\n", "opt.rate: expected a finite number", NULL);
    expect_error(&f->c, "opt:\n  rate: inf\n", "opt.rate", NULL);
    expect_error(&f->c, "opt:\n  flag: maybe\n", "t.yaml:2: opt.flag: expected true or false", NULL);
    expect_error(&f->c, "opt:\n  mode: quick\n", "opt.mode: expected one of fast|slow|exact, got 'quick'", NULL);
    expect_error(&f->c, "opt:\n  pair: [0.5]\n", "opt.pair: expected a list of 2 numbers, got 1", NULL);
    expect_error(&f->c, "opt:\n  pair: 0.5\n", "opt.pair: expected a list of 2 numbers", NULL);
    expect_error(&f->c, "opt:\n  pair: [0.5, 2]\n", "opt.pair: 2 is out of range", NULL);
    expect_error(&f->c, "opt:\n  tags: {a: 1}\n", "opt.tags: expected a list of strings", NULL);
    expect_error(&f->c, "run:\n  count: [1, 2]\n", "run.count: expected an integer", NULL);
    expect_error(&f->c, "run: 5\n", "t.yaml:1: run: is a section", NULL);
    expect_error(&f->c, "run:\n  count: 3\n  count: 4\n", "t.yaml:3: run.count: duplicate key (first at line 2)", NULL);
    expect_error(&f->c, "run:\n  count: 3\n   name: x\n", "t.yaml:3: YAML syntax error", NULL);
    expect_error(&f->c, "- a\n- b\n", "t.yaml:1: expected a mapping", NULL);
    expect_error(&f->c, "run:\n  count: 3\n---\nrun:\n  count: 4\n", "only one YAML document", NULL);
    expect_error(&f->c, "opt:\n  nested: 3\n", "opt.nested: is a section", NULL);
    /* A failed load leaves earlier valid values alone. */
    assert_int_equal(f->d.count, 10);
    /* An empty document and an empty section are fine. */
    assert_int_equal(ei_config_load_string(&f->c, "", "empty.yaml"), 0);
    assert_int_equal(ei_config_load_string(&f->c, "run:\n", "empty.yaml"), 0);
}

static void test_set(void **state) {
    fixture *f = *state;
    assert_int_equal(ei_config_set(&f->c, "run.count=7"), 0);
    assert_int_equal(f->d.count, 7);
    assert_string_equal(ei_config_origin(&f->c, "run.count"), "--set run.count=7");
    assert_int_equal(ei_config_set(&f->c, "opt.pair=[0.1,0.2]"), 0);
    assert_true(f->d.pair[0] == 0.1 && f->d.pair[1] == 0.2);
    assert_int_equal(ei_config_set(&f->c, "opt.tags=single"), 0);
    assert_int_equal(f->d.tags.n, 1);
    assert_string_equal(f->d.tags.items[0], "single");
    assert_int_equal(ei_config_set(&f->c, "run.name=a=b"), 0); /* only the first '=' splits */
    assert_string_equal(f->d.name, "a=b");
    assert_int_equal(ei_config_set(&f->c, "misc.opt="), 0); /* empty value = null string */
    assert_null(f->d.opt);

    assert_int_equal(ei_config_set(&f->c, "run.count=abc"), -1);
    assert_non_null(strstr(ei_error_get(), "--set run.count=abc: run.count: expected an integer"));
    assert_int_equal(ei_config_set(&f->c, "run.count=500"), -1);
    assert_non_null(strstr(ei_error_get(), "--set run.count=500: run.count: 500 is out of range"));
    assert_int_equal(ei_config_set(&f->c, "run.cnt=5"), -1);
    assert_non_null(strstr(ei_error_get(), "run.cnt: unknown key"));
    assert_int_equal(ei_config_set(&f->c, "run=5"), -1);
    assert_non_null(strstr(ei_error_get(), "unknown key"));
    assert_int_equal(ei_config_set(&f->c, "noequals"), -1);
    assert_int_equal(f->d.count, 7);
}

static void test_dump_round_trip(void **state) {
    fixture *f = *state;
    assert_int_equal(ei_config_load_string(&f->c,
                                           "run:\n  name: \"quote \\\" back\\\\slash\\nnewline\"\n  big: 12\n"
                                           "opt:\n  rate: 0.1\n  tags: [x, 'y z', \"\\\"q\\\"\"]\n"
                                           "  pair: [0.30000000000000004, 1e-300]\n",
                                           "t.yaml"),
                     0);
    char *text = ei_config_dump(&f->c);
    assert_non_null(text);
    demo_cfg d2;
    ei_config c2;
    assert_int_equal(ei_config_init(&c2, demo_schema, &d2), 0);
    if (ei_config_load_string(&c2, text, "dump")) {
        fprintf(stderr, "%s\n", text);
        fail_msg("reload failed: %s", ei_error_get());
    }
    /* Every key, compared through its own formatting and directly for the tricky ones. */
    char diff[512];
    assert_int_equal(ei_config_compare(demo_schema, &f->d, &d2, 0, diff, sizeof diff), 0);
    assert_string_equal(d2.name, "quote \" back\\slash\nnewline");
    assert_true(d2.rate == 0.1);
    assert_true(d2.pair[0] == 0.30000000000000004 && d2.pair[1] == 1e-300);
    assert_int_equal(d2.tags.n, 3);
    assert_string_equal(d2.tags.items[2], "\"q\"");
    assert_true(d2.big == 12);
    /* Nested sections are written as nested mappings. */
    assert_non_null(strstr(text, "opt:\n"));
    assert_non_null(strstr(text, "  nested:\n    deep: 7\n"));
    assert_non_null(strstr(text, "misc:\n  opt: ~\n"));
    free(text);
    ei_config_release(&c2);
}

static void test_compare(void **state) {
    fixture *f = *state;
    demo_cfg d2;
    ei_config c2;
    assert_int_equal(ei_config_init(&c2, demo_schema, &d2), 0);
    assert_int_equal(ei_config_set(&c2, "run.count=50"), 0); /* not fixed */
    char diff[512];
    assert_int_equal(ei_config_compare(demo_schema, &f->d, &d2, EI_CFG_FIXED, diff, sizeof diff), 0);
    assert_int_equal(ei_config_compare(demo_schema, &f->d, &d2, 0, diff, sizeof diff), 1);
    assert_string_equal(diff, "run.count: 10 -> 50");
    assert_int_equal(ei_config_set(&c2, "opt.mode=slow"), 0);
    assert_int_equal(ei_config_set(&c2, "run.name=other"), 0);
    assert_int_equal(ei_config_compare(demo_schema, &f->d, &d2, EI_CFG_FIXED, diff, sizeof diff), 2);
    assert_non_null(strstr(diff, "run.name: \"demo\" -> \"other\""));
    assert_non_null(strstr(diff, "opt.mode: fast -> slow"));
    ei_config_release(&c2);
}

static char *write_temp(const char *dir, const char *name, const char *text) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return p;
}

static void test_files_and_includes(void **state) {
    fixture *f = *state;
    char dir[] = "/tmp/ei_cfg_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *base = write_temp(dir, "base.yaml", "run:\n  count: 20\n  big: 9\n");
    char inc[512];
    snprintf(inc, sizeof inc, "include: %s\nrun:\n  count: 30\n", base);
    char *top = write_temp(dir, "top.yaml", inc);
    assert_int_equal(ei_config_load_file(&f->c, top), 0);
    assert_int_equal(f->d.count, 30); /* the including file wins */
    assert_true(f->d.big == 9);       /* the included file's own keys arrive */
    char want[600];
    snprintf(want, sizeof want, "%s:3", base);
    assert_string_equal(ei_config_origin(&f->c, "run.big"), want);

    /* Errors inside an included file name that file and the include line. */
    char *bad = write_temp(dir, "bad.yaml", "run:\n  count: nope\n");
    snprintf(inc, sizeof inc, "include: [%s]\n", bad);
    char *top2 = write_temp(dir, "top2.yaml", inc);
    assert_int_equal(ei_config_load_file(&f->c, top2), -1);
    assert_non_null(strstr(ei_error_get(), "top2.yaml:1: include: "));
    assert_non_null(strstr(ei_error_get(), "bad.yaml:2: run.count"));

    /* A cycle is caught. */
    char *cyc = malloc(strlen(dir) + 16);
    sprintf(cyc, "%s/cyc.yaml", dir);
    snprintf(inc, sizeof inc, "include: %s\n", cyc);
    free(write_temp(dir, "cyc.yaml", inc));
    assert_int_equal(ei_config_load_file(&f->c, cyc), -1);
    assert_non_null(strstr(ei_error_get(), "nested more than"));

    assert_int_equal(ei_config_load_file(&f->c, "/nonexistent/x.yaml"), -1);
    assert_non_null(strstr(ei_error_get(), "/nonexistent/x.yaml"));

    const char *files[] = {base, top, bad, top2, cyc};
    for (size_t i = 0; i < 5; i++) {
        unlink(files[i]);
        free((void *)files[i]);
    }
    rmdir(dir);
}

static void test_bad_schema(void **state) {
    (void)state;
    static const ei_cfg_key bad_default[] = {
        {"a.x", EI_CFG_INT, 0, 0, 5, "9", NULL, 0, 0, "default out of its range"}, {0}};
    static const ei_cfg_key split[] = {{"a.x", EI_CFG_INT, 0, 1, 0, "1", NULL, 0, 0, ""},
                                       {"b.y", EI_CFG_INT, sizeof(int), 1, 0, "1", NULL, 0, 0, ""},
                                       {"a.z", EI_CFG_INT, 2 * sizeof(int), 1, 0, "1", NULL, 0, 0, ""},
                                       {0}};
    int buf[4];
    ei_config c;
    assert_int_equal(ei_config_init(&c, bad_default, buf), -1);
    assert_non_null(strstr(ei_error_get(), "a.x"));
    assert_int_equal(ei_config_init(&c, split, buf), -1);
    assert_non_null(strstr(ei_error_get(), "contiguous"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_and_includes, setup, teardown),
        cmocka_unit_test(test_bad_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
