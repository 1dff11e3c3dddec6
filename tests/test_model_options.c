/* model/options: the options table and what is generated from it: defaults, range checks that
 * name the key, text round trips (floats to the bit), the iterator, enum names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "model/options.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void expect_error(int rc, const char *a, const char *b) {
    assert_int_equal(rc, -1);
    if (a && !strstr(ei_error_get(), a)) fail_msg("error '%s' lacks '%s'", ei_error_get(), a);
    if (b && !strstr(ei_error_get(), b)) fail_msg("error '%s' lacks '%s'", ei_error_get(), b);
}

static void test_table(void **s) {
    (void)s;
    static const char *const names[] = {"segment", "sink", "window", "gate", "memory_rule", "route_threshold",
                                        "gate_init_bias", "bptt_segments", "positions"};
    assert_int_equal(ei_opts_count(), 9);
    assert_int_equal(EI_OPTS_COUNT, 9);
    assert_null(ei_opt_desc_at(-1));
    assert_null(ei_opt_desc_at(9));
    size_t covered = 0;
    for (int i = 0; i < ei_opts_count(); i++) {
        const ei_opt_desc *d = ei_opt_desc_at(i);
        assert_string_equal(d->name, names[i]);
        assert_int_equal(ei_opt_find(d->name), i);
        assert_non_null(d->help);
        assert_non_null(d->metavar);
        /* everything but bptt_segments changes the maths */
        assert_int_equal(!!(d->flags & EI_OPT_MATHS), strcmp(d->name, "bptt_segments") != 0);
        assert_true(d->min <= d->def && d->def <= d->max);
        if (d->type == EI_OPT_ENUM) {
            assert_true(d->n_names >= 2 && d->max == d->n_names - 1);
            assert_string_equal(d->metavar, d->choices);
        }
        covered += d->size;
    }
    /* the fields are the options and nothing else, not even padding, so comparing two ei_opts
     * byte for byte compares exactly their options */
    assert_int_equal(covered, sizeof(ei_opts));
    assert_int_equal(ei_opt_find("segmnet"), -1);
    assert_string_equal(ei_opt_desc_at(EI_OPT_gate)->choices, "token|head");
    assert_string_equal(ei_opt_desc_at(EI_OPT_memory_rule)->choices, "linear|delta");
    assert_string_equal(ei_opt_desc_at(EI_OPT_positions)->choices, "compact|design");
    assert_string_equal(ei_opt_desc_at(EI_OPT_memory_rule)->cli, "memory-rule");
    assert_null(ei_opt_desc_at(EI_OPT_bptt_segments)->cli);
}

static void test_defaults(void **s) {
    (void)s;
    ei_opts o;
    memset(&o, 0x5a, sizeof o);
    ei_opts_default(&o);
    assert_int_equal(o.segment, EI_DEFAULT_SEGMENT);
    assert_int_equal(o.sink, EI_DEFAULT_SINK);
    assert_int_equal(o.window, EI_DEFAULT_WINDOW);
    assert_int_equal(o.gate, EI_GATE_TOKEN);
    assert_int_equal(o.memory_rule, EI_MEM_LINEAR);
    assert_int_equal(o.route_threshold, -1);
    assert_true(o.gate_init_bias == 0.0);
    assert_int_equal(o.bptt_segments, 0);
    assert_int_equal(o.positions, EI_POS_COMPACT);
    assert_int_equal(ei_opts_validate(&o, NULL), 0);
    for (int i = 0; i < ei_opts_count(); i++) assert_true(ei_opts_get_num(&o, i) == ei_opt_desc_at(i)->def);
}

/* Every numeric option: one past each end is refused with the key named, o unchanged. */
static void test_ranges_name_the_key(void **s) {
    (void)s;
    for (int i = 0; i < ei_opts_count(); i++) {
        const ei_opt_desc *d = ei_opt_desc_at(i);
        ei_opts o, before;
        ei_opts_default(&o);
        before = o;
        char key[64], v[64];
        snprintf(key, sizeof key, "edgeinfinite: %s:", d->name);
        if (d->type == EI_OPT_ENUM) {
            expect_error(ei_opts_set(&o, d->name, "banana"), key, d->choices);
            expect_error(ei_opts_set_num(&o, i, d->n_names), key, NULL);
        } else {
            double step = d->type == EI_OPT_INT ? 1 : 1e-9;
            snprintf(v, sizeof v, "%.17g", d->max + step);
            expect_error(ei_opts_set(&o, d->name, v), key, "out of range");
            snprintf(v, sizeof v, "%.17g", d->min - step);
            expect_error(ei_opts_set(&o, d->name, v), key, "out of range");
            expect_error(ei_opts_set_num(&o, i, d->max + step), key, "out of range");
            expect_error(ei_opts_set(&o, d->name, "12x"), key, NULL);
            expect_error(ei_opts_set(&o, d->name, ""), key, NULL);
            expect_error(ei_opts_set_num(&o, i, NAN), key, NULL);
            if (d->type == EI_OPT_INT) {
                expect_error(ei_opts_set(&o, d->name, "2.5"), key, NULL);
                expect_error(ei_opts_set_num(&o, i, 2.5), key, "not an integer");
                expect_error(ei_opts_set(&o, d->name, "99999999999999999999"), key, "out of range");
            }
            /* both ends themselves are fine */
            snprintf(v, sizeof v, "%.17g", d->max);
            assert_int_equal(ei_opts_set(&o, d->name, v), 0);
            snprintf(v, sizeof v, "%.17g", d->min);
            assert_int_equal(ei_opts_set(&o, d->name, v), 0);
            o = before;
        }
        assert_memory_equal(&o, &before, sizeof o);
        /* a struct filled by hand is checked as strictly */
        ei_opts bad = before;
        double out = d->type == EI_OPT_ENUM ? d->n_names : d->max + 1;
        if (d->type == EI_OPT_INT || d->type == EI_OPT_ENUM) *(int *)((char *)&bad + d->offset) = (int)out;
        else *(double *)((char *)&bad + d->offset) = out;
        expect_error(ei_opts_validate(&bad, NULL), key, NULL);
    }
    ei_opts o;
    ei_opts_default(&o);
    expect_error(ei_opts_set(&o, "segmnet", "3"), "unknown option 'segmnet'", "known: segment, sink, window");
    expect_error(ei_opts_set(&o, "window", "2000000"), "window: 2000000 is out of range [0, 1048576]", NULL);
    expect_error(ei_opts_set(&o, "gate_init_bias", "inf"), "gate_init_bias", NULL);
    expect_error(ei_opts_set(&o, NULL, "1"), NULL, NULL);
    ei_model_config c = {.head_dim = 7};
    expect_error(ei_opts_validate(&o, &c), "head_dim 7 is odd", NULL);
}

static void test_text_round_trip(void **s) {
    (void)s;
    ei_opts o;
    ei_opts_default(&o);
    assert_int_equal(ei_opts_set(&o, "segment", "12"), 0);
    assert_int_equal(ei_opts_set(&o, "sink", "3"), 0);
    assert_int_equal(ei_opts_set(&o, "window", "20"), 0);
    assert_int_equal(ei_opts_set(&o, "gate", "head"), 0);
    assert_int_equal(ei_opts_set(&o, "memory_rule", "delta"), 0);
    assert_int_equal(ei_opts_set(&o, "route_threshold", "0"), 0);
    assert_int_equal(ei_opts_set(&o, "bptt_segments", "2"), 0);
    assert_int_equal(ei_opts_set(&o, "positions", "design"), 0);
    o.gate_init_bias = -1.0 / 3.0; /* needs all 17 digits */
    assert_int_equal(o.gate, EI_GATE_HEAD);
    assert_int_equal(o.memory_rule, EI_MEM_DELTA);
    assert_int_equal(o.positions, EI_POS_DESIGN);
    ei_opts def, back;
    ei_opts_default(&def);
    ei_opts_default(&back);
    assert_int_equal(ei_opts_diff(&o, &def, 0), EI_OPT_segment);
    for (int i = 0; i < ei_opts_count(); i++) {
        char buf[64];
        int n = ei_opts_get_str(&o, i, buf, sizeof buf);
        assert_true(n > 0 && (size_t)n < sizeof buf);
        assert_int_equal(ei_opts_get_str(&o, i, NULL, 0), n); /* length query, as snprintf */
        assert_int_equal(ei_opts_set_str(&back, i, buf), 0);
        const ei_opt_desc *d = ei_opt_desc_at(i);
        /* each option differs from its default, so the round trip really carries it */
        assert_memory_not_equal((char *)&o + d->offset, (char *)&def + d->offset, d->size);
    }
    assert_int_equal(ei_opts_diff(&o, &back, 0), -1);
    assert_memory_equal(&o, &back, sizeof o);
    char buf[8];
    assert_int_equal(ei_opts_get_str(&o, EI_OPT_positions, buf, sizeof buf), 6);
    assert_string_equal(buf, "design");
    assert_int_equal(ei_opts_get_str(&o, 99, buf, sizeof buf), -1);
    /* diff with a mask only looks at those options */
    back.bptt_segments = 7;
    assert_int_equal(ei_opts_diff(&o, &back, EI_OPT_MATHS), -1);
    assert_int_equal(ei_opts_diff(&o, &back, 0), EI_OPT_bptt_segments);
}

static void test_enum_names(void **s) {
    (void)s;
    ei_gate_kind g;
    ei_mem_rule r;
    ei_positions p;
    ei_mode m;
    assert_int_equal(ei_gate_kind_parse("head", &g), 0);
    assert_int_equal(g, EI_GATE_HEAD);
    assert_int_equal(ei_mem_rule_parse("delta", &r), 0);
    assert_int_equal(r, EI_MEM_DELTA);
    assert_int_equal(ei_positions_parse("design", &p), 0);
    assert_int_equal(p, EI_POS_DESIGN);
    assert_int_equal(ei_mode_parse("window", &m), 0);
    assert_int_equal(m, EI_MODE_WINDOW);
    expect_error(ei_gate_kind_parse("banana", &g), "gate", "token|head");
    expect_error(ei_mem_rule_parse(NULL, &r), "memory_rule", NULL);
    expect_error(ei_mode_parse("streaming", &m), "full|window|edgeinfinite", NULL);
    assert_string_equal(ei_gate_kind_name(EI_GATE_TOKEN), "token");
    assert_string_equal(ei_mem_rule_name(EI_MEM_DELTA), "delta");
    assert_string_equal(ei_positions_name(EI_POS_COMPACT), "compact");
    assert_string_equal(ei_mode_name(EI_MODE_EDGEINFINITE), "edgeinfinite");
    assert_string_equal(ei_gate_kind_name((ei_gate_kind)5), "invalid");
}

static void test_route_threshold(void **s) {
    (void)s;
    ei_opts o;
    ei_opts_default(&o);
    ei_model_config c = {.max_seq_len = 300};
    assert_int_equal(ei_opts_route_threshold(&o, &c), 300); /* S + W + L = 388, capped */
    c.max_seq_len = 1000;
    assert_int_equal(ei_opts_route_threshold(&o, &c), 388);
    o.route_threshold = 0;
    assert_int_equal(ei_opts_route_threshold(&o, &c), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_ranges_name_the_key),
        cmocka_unit_test(test_text_round_trip),
        cmocka_unit_test(test_enum_names),
        cmocka_unit_test(test_route_threshold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
