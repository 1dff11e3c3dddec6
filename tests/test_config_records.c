/* config/ei_config: lists of records (EI_CFG_RECORDS): items checked against a nested schema with
 * defaults, required fields and an item check; errors naming file:line: key[i].field with each
 * field's own line; --set and later files replacing the list; a failed load keeping the old one;
 * nested records; dump / reload / compare; schemas assembled at run time; the schema printout. */
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

typedef struct {
    char *name;
    int x;
} sub_item;

typedef struct {
    char *name;
    int count;
    double rate;
    int mode;
    int flag;
    ei_cfg_strlist tags;
    double pair[2];
    ei_cfg_records subs; /* of sub_item */
    int derived;         /* filled by the check: not a field */
    char *owned;         /* allocated by the check, freed by release */
} item;

typedef struct {
    int top;
    ei_cfg_records items; /* of item */
    int after;
} demo;

static const ei_cfg_key sub_fields[] = {
    {"name", EI_CFG_STRING, offsetof(sub_item, name), 1, 0, NULL, NULL, 0, EI_CFG_REQUIRED, "sub name"},
    {"x", EI_CFG_INT, offsetof(sub_item, x), 0, 9, "1", NULL, 0, 0, "small int"},
    {0},
};
static const ei_cfg_record_spec sub_spec = {sub_fields, sizeof(sub_item), NULL, NULL};

static int n_checked, n_released;

static int item_check(void *p, const ei_cfg_record_ctx *rc) {
    item *it = p;
    n_checked++;
    if (it->count == 13) return ei_cfg_record_error(rc, "count", "13 is unlucky (item %d)", ei_cfg_record_index(rc));
    if (it->flag && it->mode == 0) return ei_cfg_record_error(rc, NULL, "flag needs mode slow or exact");
    it->derived = it->count * 10 + it->mode;
    it->owned = strdup(ei_cfg_record_path(rc));
    return it->owned ? 0 : ei_cfg_record_error(rc, NULL, "out of memory");
}

static void item_release(void *p) {
    item *it = p;
    if (it->owned) n_released++;
    free(it->owned);
    it->owned = NULL;
}

#define IOFF(f) offsetof(item, f)
static const ei_cfg_key item_fields[] = {
    {"name", EI_CFG_STRING, IOFF(name), 1, 0, NULL, NULL, 0, EI_CFG_REQUIRED, "item name"},
    {"count", EI_CFG_INT, IOFF(count), 0, 100, "5", NULL, 0, 0, "count"},
    {"rate", EI_CFG_FLOAT, IOFF(rate), 0, 1, "0.25", NULL, 0, 0, "rate"},
    {"mode", EI_CFG_ENUM, IOFF(mode), 1, 0, "fast", "fast|slow|exact", 0, 0, "mode"},
    {"flag", EI_CFG_BOOL, IOFF(flag), 1, 0, "false", NULL, 0, 0, "flag"},
    {"tags", EI_CFG_STRLIST, IOFF(tags), 1, 0, "[]", NULL, 0, 0, "tags"},
    {"pair", EI_CFG_FLOATS, IOFF(pair), 0, 10, "[1, 2]", NULL, 2, 0, "pair"},
    {"subs", EI_CFG_RECORDS, IOFF(subs), 1, 0, "[]", EI_CFG_RECORDS_SPEC(&sub_spec), 0, 0, "nested records"},
    {0},
};
static const ei_cfg_record_spec item_spec = {item_fields, sizeof(item), item_check, item_release};

static const ei_cfg_key demo_schema[] = {
    {"sec.top", EI_CFG_INT, offsetof(demo, top), 0, 10, "1", NULL, 0, 0, "top"},
    {"sec.items", EI_CFG_RECORDS, offsetof(demo, items), 1, 0, "[]", EI_CFG_RECORDS_SPEC(&item_spec), 0, EI_CFG_FIXED,
     "a list of items"},
    {"sec.after", EI_CFG_INT, offsetof(demo, after), 0, 10, "2", NULL, 0, 0, "after"},
    {0},
};

typedef struct {
    demo d;
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

static item *at(demo *d, int i) { return &((item *)d->items.items)[i]; }

static void expect_error(ei_config *c, const char *text, const char *want) {
    ei_error_clear();
    if (ei_config_load_string(c, text, "s.yaml") == 0) fail_msg("loaded:\n%s", text);
    if (!strstr(ei_error_get(), want)) fail_msg("error '%s' lacks '%s'", ei_error_get(), want);
}

static const char *good = "sec:\n"                                                /* 1 */
                          "  top: 3\n"                                            /* 2 */
                          "  items:\n"                                            /* 3 */
                          "    - name: a\n"                                       /* 4 */
                          "      count: 7\n"                                      /* 5 */
                          "      mode: exact\n"                                   /* 6 */
                          "      tags: [x, \"y z\"]\n"                            /* 7 */
                          "      subs:\n"                                         /* 8 */
                          "        - {name: s0}\n"                                /* 9 */
                          "        - {name: s1, x: 4}\n"                          /* 10 */
                          "    - {name: b, rate: 0.5, pair: [3, 4], flag: on, mode: slow}\n"
                          "  after: 4\n";

static void test_load(void **state) {
    fixture *f = *state;
    assert_int_equal(f->d.items.n, 0);
    n_checked = 0;
    if (ei_config_load_string(&f->c, good, "s.yaml")) fail_msg("%s", ei_error_get());
    assert_int_equal(n_checked, 2);
    assert_int_equal(f->d.top, 3);
    assert_int_equal(f->d.after, 4);
    assert_int_equal(f->d.items.n, 2);
    item *a = at(&f->d, 0), *b = at(&f->d, 1);
    assert_string_equal(a->name, "a");
    assert_int_equal(a->count, 7);
    assert_true(a->rate == 0.25); /* field default */
    assert_int_equal(a->mode, 2);
    assert_int_equal(a->tags.n, 2);
    assert_string_equal(a->tags.items[1], "y z");
    assert_true(a->pair[0] == 1 && a->pair[1] == 2);
    assert_int_equal(a->subs.n, 2);
    assert_string_equal(((sub_item *)a->subs.items)[1].name, "s1");
    assert_int_equal(((sub_item *)a->subs.items)[0].x, 1);
    assert_int_equal(((sub_item *)a->subs.items)[1].x, 4);
    assert_int_equal(a->derived, 72);
    assert_string_equal(a->owned, "sec.items[0]");
    assert_string_equal(b->name, "b");
    assert_int_equal(b->count, 5);
    assert_true(b->rate == 0.5 && b->pair[0] == 3 && b->pair[1] == 4 && b->flag == 1);
    assert_int_equal(b->subs.n, 0);
    assert_string_equal(ei_config_origin(&f->c, "sec.items"), "s.yaml:3");
    /* a later file replaces the whole list; release ran for the old items */
    n_released = 0;
    assert_int_equal(ei_config_load_string(&f->c, "sec:\n  items: [{name: c}]\n", "t.yaml"), 0);
    assert_int_equal(n_released, 2);
    assert_int_equal(f->d.items.n, 1);
    assert_string_equal(at(&f->d, 0)->name, "c");
    assert_int_equal(f->d.top, 3);
    /* a failed load leaves the list as it was */
    expect_error(&f->c, "sec:\n  items: [{name: d}, {name: e, count: 101}]\n", "s.yaml:2: sec.items[1].count: 101 is out of range");
    assert_int_equal(f->d.items.n, 1);
    assert_string_equal(at(&f->d, 0)->name, "c");
    /* null and [] empty it */
    assert_int_equal(ei_config_load_string(&f->c, "sec:\n  items:\n", "u.yaml"), 0);
    assert_int_equal(f->d.items.n, 0);
    assert_null(f->d.items.items);
    assert_int_equal(ei_config_load_string(&f->c, "sec:\n  items: [{name: c}]\n", "t.yaml"), 0);
    assert_int_equal(ei_config_load_string(&f->c, "sec:\n  items: []\n", "u.yaml"), 0);
    assert_int_equal(f->d.items.n, 0);
}

static void test_errors(void **state) {
    fixture *f = *state;
    expect_error(&f->c, "sec:\n  items:\n    - name: a\n      cuont: 3\n",
                 "s.yaml:4: sec.items[0].cuont: unknown key (did you mean count?)");
    expect_error(&f->c, "sec:\n  items:\n    - {name: a}\n    - name: b\n      count: x\n",
                 "s.yaml:5: sec.items[1].count: expected an integer, got 'x'");
    expect_error(&f->c, "sec:\n  items:\n    - name: a\n      rate: 2\n", "s.yaml:4: sec.items[0].rate: 2 is out of range [0, 1]");
    expect_error(&f->c, "sec:\n  items:\n    - name: a\n      mode: quick\n",
                 "s.yaml:4: sec.items[0].mode: expected one of fast|slow|exact, got 'quick'");
    expect_error(&f->c, "sec:\n  items:\n    - name: a\n      flag: 2\n", "s.yaml:4: sec.items[0].flag: expected true or false");
    expect_error(&f->c, "sec:\n  items:\n    - name: a\n      pair: [1]\n",
                 "s.yaml:4: sec.items[0].pair: expected a list of 2 numbers, got 1");
    expect_error(&f->c, "sec:\n  items:\n    - name: a\n      tags: {a: b}\n", "s.yaml:4: sec.items[0].tags: expected a list of strings");
    expect_error(&f->c, "sec:\n  items:\n    - count: 3\n", "s.yaml:3: sec.items[0]: name: required key is not set (item name)");
    expect_error(&f->c, "sec:\n  items:\n    - name: a\n      name: b\n", "s.yaml:4: sec.items[0].name: duplicate key (first at line 3)");
    expect_error(&f->c, "sec:\n  items:\n    - name: a\n    - 5\n", "s.yaml:4: sec.items[1]: expected a mapping of keys");
    expect_error(&f->c, "sec:\n  items:\n    - [a]\n", "s.yaml:3: sec.items[0]: expected a mapping of keys");
    expect_error(&f->c, "sec:\n  items: a\n", "s.yaml:2: sec.items: expected a list of mappings");
    expect_error(&f->c, "sec:\n  items: {name: a}\n", "s.yaml:2: sec.items: expected a list of mappings");
    /* the item check, with the line of the field it names, or of the item */
    expect_error(&f->c, "sec:\n  items:\n    - name: a\n    - name: b\n\n      count: 13\n",
                 "s.yaml:6: sec.items[1].count: 13 is unlucky (item 1)");
    expect_error(&f->c, "sec:\n  items:\n    - name: a\n      flag: yes\n", "s.yaml:3: sec.items[0]: flag needs mode slow or exact");
    /* nested records name the whole path */
    expect_error(&f->c, "sec:\n  items:\n    - name: a\n      subs:\n        - {name: s}\n        - {x: 3}\n",
                 "s.yaml:6: sec.items[0].subs[1]: name: required key is not set");
    expect_error(&f->c, "sec:\n  items:\n    - name: a\n      subs:\n        - name: s\n          x: 10\n",
                 "s.yaml:6: sec.items[0].subs[0].x: 10 is out of range [0, 9]");
    assert_int_equal(f->d.items.n, 0); /* nothing of the failed loads stayed */
}

static void test_set_dump_compare(void **state) {
    fixture *f = *state;
    assert_int_equal(ei_config_set(&f->c, "sec.items=[{name: o, count: 9, subs: [{name: z, x: 2}]}]"), 0);
    assert_int_equal(f->d.items.n, 1);
    assert_int_equal(at(&f->d, 0)->count, 9);
    ei_error_clear();
    assert_int_equal(ei_config_set(&f->c, "sec.items=[{name: o, count: 13}]"), -1);
    assert_string_equal(ei_error_get(), "--set sec.items=[{name: o, count: 13}]: sec.items[0].count: 13 is unlucky (item 0)");
    assert_int_equal(ei_config_set(&f->c, "sec.items=[{nam: o}]"), -1);
    assert_non_null(strstr(ei_error_get(), "--set sec.items=[{nam: o}]: sec.items[0].nam: unknown key (did you mean name?)"));
    assert_int_equal(at(&f->d, 0)->count, 9);
    assert_string_equal(ei_config_origin(&f->c, "sec.items"), "--set sec.items=[{name: o, count: 9, subs: [{name: z, x: 2}]}]");

    assert_int_equal(ei_config_load_string(&f->c, good, "s.yaml"), 0);
    char *dump = ei_config_dump(&f->c);
    assert_non_null(dump);
    assert_non_null(strstr(dump, "  items: [{name: \"a\", count: 7, rate: 0.25, mode: exact, flag: false, tags: [\"x\", \"y z\"], "
                                 "pair: [1, 2], subs: [{name: \"s0\", x: 1}, {name: \"s1\", x: 4}]}, {name: \"b\""));
    /* the dump loads back into an equal config */
    demo d2;
    ei_config c2;
    assert_int_equal(ei_config_init(&c2, demo_schema, &d2), 0);
    if (ei_config_load_string(&c2, dump, "dump.yaml")) fail_msg("%s\n%s", ei_error_get(), dump);
    char diff[256];
    assert_int_equal(ei_config_compare(demo_schema, &f->d, &d2, 0, diff, sizeof diff), 0);
    assert_int_equal(at(&d2, 1)->derived, at(&f->d, 1)->derived); /* the check ran on reload */
    char *dump2 = ei_config_dump(&c2);
    assert_string_equal(dump, dump2);
    free(dump2);
    /* a differing item shows up in the comparison of fixed keys */
    at(&d2, 1)->count = 6;
    assert_int_equal(ei_config_compare(demo_schema, &f->d, &d2, EI_CFG_FIXED, diff, sizeof diff), 1);
    assert_non_null(strstr(diff, "sec.items: "));
    ei_config_release(&c2);
    free(dump);
    /* a long list dumps whole (more than any fixed buffer) */
    char *text = malloc(200000);
    assert_non_null(text);
    size_t k = (size_t)sprintf(text, "sec:\n  items:\n");
    for (int i = 0; i < 2000; i++) k += (size_t)sprintf(text + k, "    - {name: item%d, count: %d}\n", i, i % 12);
    assert_int_equal(ei_config_load_string(&f->c, text, "long.yaml"), 0);
    assert_int_equal(f->d.items.n, 2000);
    dump = ei_config_dump(&f->c);
    assert_non_null(dump);
    assert_int_equal(ei_config_init(&c2, demo_schema, &d2), 0);
    assert_int_equal(ei_config_load_string(&c2, dump, "dump.yaml"), 0);
    assert_int_equal(d2.items.n, 2000);
    assert_string_equal(at(&d2, 1999)->name, "item1999");
    assert_int_equal(ei_config_compare(demo_schema, &f->d, &d2, 0, NULL, 0), 0);
    at(&d2, 1999)->count = 1; /* beyond what a fixed-size text would show */
    assert_int_equal(ei_config_compare(demo_schema, &f->d, &d2, 0, NULL, 0), 1);
    ei_config_release(&c2);
    free(dump);
    free(text);
}

static void test_schema_assembly(void **state) {
    (void)state;
    /* rows added with a prefix keep the spec pointer; the printout lists the item fields */
    ei_cfg_schema s;
    ei_cfg_schema_init(&s);
    const ei_cfg_key row = {"items", EI_CFG_RECORDS, offsetof(demo, items), 1, 0, "[{name: dflt}]",
                            EI_CFG_RECORDS_SPEC(&item_spec), 0, 0, "items"};
    assert_int_equal(ei_cfg_schema_add_prefixed(&s, "outer", 0, &row), 0);
    demo d;
    ei_config c;
    assert_int_equal(ei_config_init(&c, s.keys, &d), 0);
    assert_int_equal(d.items.n, 1); /* the default is a list too */
    assert_string_equal(at(&d, 0)->name, "dflt");
    assert_int_equal(ei_config_load_string(&c, "outer:\n  items: [{name: q, count: 2}]\n", "o.yaml"), 0);
    assert_int_equal(at(&d, 0)->count, 2);
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    ei_config_print_schema(s.keys, fp);
    fclose(fp);
    assert_non_null(strstr(buf, "outer.items"));
    assert_non_null(strstr(buf, "list of {name, count, rate, mode, flag, tags, pair, subs}"));
    assert_non_null(strstr(buf, "outer.items[].count"));
    assert_non_null(strstr(buf, "outer.items[].subs[].x"));
    free(buf);
    ei_config_release(&c);
    ei_cfg_schema_free(&s);
    /* a records key without a spec is a schema error */
    const ei_cfg_key bad[] = {{"a.b", EI_CFG_RECORDS, 0, 1, 0, NULL, NULL, 0, 0, "no spec"}, {0}};
    assert_int_equal(ei_config_init(&c, bad, &d), -1);
    assert_non_null(strstr(ei_error_get(), "records without a spec"));
    /* a bad default in an item field is reported on use */
    static const ei_cfg_key badf[] = {{"n", EI_CFG_INT, 0, 0, 1, "7", NULL, 0, 0, "bad default"}, {0}};
    static const ei_cfg_record_spec bads = {badf, sizeof(int), NULL, NULL};
    const ei_cfg_key sch[] = {{"a.b", EI_CFG_RECORDS, 0, 1, 0, "[]", EI_CFG_RECORDS_SPEC(&bads), 0, 0, "x"}, {0}};
    ei_cfg_records r;
    assert_int_equal(ei_config_init(&c, sch, &r), 0);
    assert_int_equal(ei_config_load_string(&c, "a:\n  b: [{}]\n", "d.yaml"), -1);
    assert_non_null(strstr(ei_error_get(), "schema default: a.b[0].n: 7 is out of range"));
    ei_config_release(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_dump_compare, setup, teardown),
        cmocka_unit_test(test_schema_assembly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
