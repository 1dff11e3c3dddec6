/* deploy/quant_plan: rule resolution (order, classes, layers, the memory gate, non-matrices), the
 * precision section in YAML with file:line: key errors for every field of every rule, the writer
 * round trip, compaction of a per-tensor table into rules, and the budget solver against brute
 * force on small instances. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "deploy/quant_plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIT(c) (1u << (c))

static void expect_load_error(const char *yaml, const char *want) {
    ei_qplan p;
    ei_error_clear();
    if (ei_qplan_load_string(&p, yaml, "scenario.yaml") == 0) fail_msg("loaded: %s", yaml);
    if (!strstr(ei_error_get(), want)) fail_msg("error '%s' lacks '%s'", ei_error_get(), want);
    ei_qplan_free(&p);
}

static void test_resolve(void **state) {
    (void)state;
    ei_qplan p;
    ei_qplan_init(&p);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_Q, 0), EI_QW_F32);
    p.weights = EI_QW_W4G32;
    assert_int_equal(ei_qplan_add_rule(&p, EI_QLAYERS_ALL, 0, BIT(EI_TC_EMBEDDING) | BIT(EI_TC_CLASSIFIER), EI_QW_W8), 0);
    assert_int_equal(ei_qplan_add_rule(&p, 0, 3, BIT(EI_TC_DOWN), EI_QW_W8), 0);
    assert_int_equal(ei_qplan_add_rule(&p, 2, 2, 0, EI_QW_F16), 0);             /* every class of layer 2 */
    assert_int_equal(ei_qplan_add_rule(&p, 3, 5, BIT(EI_TC_DOWN), EI_QW_W4G64), 0); /* overrides layer 3 */
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_Q, 0), EI_QW_W4G32);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_DOWN, 0), EI_QW_W8);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_DOWN, 2), EI_QW_F16);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_DOWN, 3), EI_QW_W4G64);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_DOWN, 6), EI_QW_W4G32);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_UP, 2), EI_QW_F16);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_EMBEDDING, -1), EI_QW_W8);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_CLASSIFIER, -1), EI_QW_W8);
    /* the memory gate: f32 unless named, even by a rule without classes */
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_MEMORY_GATE, 2), EI_QW_F32);
    assert_int_equal(ei_qplan_add_rule(&p, 1, 1, BIT(EI_TC_MEMORY_GATE), EI_QW_F16), 0);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_MEMORY_GATE, 1), EI_QW_F16);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_MEMORY_GATE, 0), EI_QW_F32);
    /* norms and biases are not quantised, whatever the plan */
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_ATTN_NORM, 2), EI_QW_F32);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_Q_BIAS, 0), EI_QW_F32);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_FINAL_NORM, -1), EI_QW_F32);
    /* bad rules */
    assert_int_equal(ei_qplan_add_rule(&p, 0, 3, BIT(EI_TC_EMBEDDING), EI_QW_W8), -1);
    assert_non_null(strstr(ei_error_get(), "has no layers"));
    assert_int_equal(ei_qplan_add_rule(&p, EI_QLAYERS_ALL, 0, BIT(EI_TC_FFN_NORM), EI_QW_W8), -1);
    assert_non_null(strstr(ei_error_get(), "ffn_norm is not a weight matrix"));
    assert_int_equal(ei_qplan_add_rule(&p, 4, 3, 0, EI_QW_W8), -1);
    assert_int_equal(ei_qplan_add_rule(&p, 0, 1, 0, EI_QW_COUNT), -1);
    /* the group rule at resolution time */
    int changed = 0;
    assert_int_equal(ei_qplan_resolve_fit(&p, EI_TC_Q, 0, 288, &changed), EI_QW_W4G32);
    assert_int_equal(changed, 0);
    assert_int_equal(ei_qplan_resolve_fit(&p, EI_TC_DOWN, 3, 288, &changed), EI_QW_W4G32);
    assert_int_equal(changed, 1);
    assert_int_equal(ei_qplan_check(&p, 6), 0);
    assert_int_equal(ei_qplan_check(&p, 5), -1);
    assert_non_null(strstr(ei_error_get(), "precision.plan[3]: layers 3-5"));
    ei_qplan q;
    assert_int_equal(ei_qplan_copy(&q, &p), 0);
    assert_int_equal(q.n_rules, p.n_rules);
    assert_memory_equal(q.rules, p.rules, sizeof *p.rules * (size_t)p.n_rules);
    ei_qplan_free(&q);
    ei_qplan_free(&p);
}

static void test_yaml(void **state) {
    (void)state;
    const char *text = "precision:\n"                                         /* 1 */
                       "  weights: w4g32\n"                                   /* 2 */
                       "  activations: a16\n"                                 /* 3 */
                       "  kv_cache: f16\n"                                    /* 4 */
                       "  plan:\n"                                            /* 5 */
                       "    - {class: [embedding, classifier], scheme: w8}\n" /* 6 */
                       "    - {layers: 0-3, class: down, scheme: w8}\n"       /* 7 */
                       "    - layers: 5\n"                                    /* 8 */
                       "      scheme: f16\n"                                  /* 9 */
                       "    - {layers: all, class: memory_gate, scheme: f16}\n"
                       "    - {layers: ' 1 - 2 ', class: [q, k, v], scheme: w4g128}\n";
    ei_qplan p;
    if (ei_qplan_load_string(&p, text, "scenario.yaml")) fail_msg("%s", ei_error_get());
    assert_int_equal(p.weights, EI_QW_W4G32);
    assert_int_equal(p.activations, EI_QA_A16);
    assert_int_equal(p.kv_cache, EI_QKV_F16);
    assert_int_equal(p.n_rules, 5);
    assert_true(p.rules[0].layer_lo == EI_QLAYERS_ALL && p.rules[0].classes == (BIT(EI_TC_EMBEDDING) | BIT(EI_TC_CLASSIFIER)));
    assert_true(p.rules[1].layer_lo == 0 && p.rules[1].layer_hi == 3 && p.rules[1].classes == BIT(EI_TC_DOWN));
    assert_true(p.rules[2].layer_lo == 5 && p.rules[2].layer_hi == 5 && p.rules[2].classes == 0);
    assert_true(p.rules[4].layer_lo == 1 && p.rules[4].layer_hi == 2 && p.rules[4].scheme == EI_QW_W4G128);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_K, 2), EI_QW_W4G128);
    assert_int_equal(ei_qplan_resolve(&p, EI_TC_MEMORY_GATE, 0), EI_QW_F16);
    /* the writer's text loads back to the same plan */
    char *y = ei_qplan_to_yaml(&p, "precision");
    assert_non_null(y);
    assert_non_null(strstr(y, "    - {layers: 0-3, class: down, scheme: w8}\n"));
    assert_non_null(strstr(y, "    - {class: [embedding, classifier], scheme: w8}\n"));
    assert_non_null(strstr(y, "    - {layers: 5, scheme: f16}\n"));
    ei_qplan b;
    if (ei_qplan_load_string(&b, y, "dump.yaml")) fail_msg("%s\n%s", ei_error_get(), y);
    assert_true(b.weights == p.weights && b.activations == p.activations && b.kv_cache == p.kv_cache);
    assert_int_equal(b.n_rules, 5);
    assert_non_null(strstr(y, "    - {class: memory_gate, scheme: f16}\n")); /* layers: all is the default */
    assert_int_equal(ei_qplan_resolve(&b, EI_TC_MEMORY_GATE, 3), EI_QW_F16);
    for (int c = 0; c < EI_TC_COUNT; c++)
        for (int l = 0; l < 8; l++) assert_int_equal(ei_qplan_resolve(&b, (ei_tclass)c, l), ei_qplan_resolve(&p, (ei_tclass)c, l));
    ei_qplan_free(&b);
    free(y);
    ei_qplan_free(&p);
    /* an empty plan and its text */
    ei_qplan_init(&p);
    y = ei_qplan_to_yaml(&p, NULL);
    assert_string_equal(y, "precision:\n  weights: f32\n  activations: float\n  kv_cache: f32\n  plan: []\n");
    assert_int_equal(ei_qplan_load_string(&b, y, "e.yaml"), 0);
    assert_int_equal(b.n_rules, 0);
    free(y);
    ei_qplan_free(&b);
    assert_int_equal(ei_qplan_load_string(&b, "precision:\n  plan:\n", "n.yaml"), 0); /* null list */
    assert_true(b.n_rules == 0 && b.weights == EI_QW_F32);
    ei_qplan_free(&b);
    /* a file */
    char path[] = "/tmp/ei_qplan_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("precision:\n  weights: w8\n  plan: [{layers: 1, scheme: f16}]\n", f);
    fclose(f);
    assert_int_equal(ei_qplan_load_file(&b, path), 0);
    assert_int_equal(ei_qplan_resolve(&b, EI_TC_O, 1), EI_QW_F16);
    ei_qplan_free(&b);
    remove(path);
}

static void test_yaml_errors(void **state) {
    (void)state;
    const char *head = "precision:\n  weights: w8\n  plan:\n    - {scheme: w8}\n    - {layers: 1, scheme: f16}\n";
    char buf[512];
#define RULE(r) (snprintf(buf, sizeof buf, "%s    - %s\n", head, r), buf)
    expect_load_error(RULE("{layers: 0-3, class: down, scheme: w5}"),
                      "scenario.yaml:6: precision.plan[2].scheme: unknown scheme 'w5' (choices: f32, f16, w8, w4g32, "
                      "w4g64, w4g128)");
    expect_load_error(RULE("{class: dwn, scheme: w8}"),
                      "scenario.yaml:6: precision.plan[2].class: unknown class 'dwn' (choices: embedding, q, k, v, o, "
                      "gate, up, down, classifier, memory_gate, all)");
    expect_load_error(RULE("{class: [q, attn_norm], scheme: w8}"),
                      "scenario.yaml:6: precision.plan[2].class: attn_norm is not a weight matrix");
    expect_load_error(RULE("{class: [all, q], scheme: w8}"), "precision.plan[2].class: 'all' cannot be combined");
    expect_load_error(RULE("{class: [], scheme: w8}"), "scenario.yaml:6: precision.plan[2].class: empty list");
    expect_load_error(RULE("{layers: 3-1, scheme: w8}"), "scenario.yaml:6: precision.plan[2].layers: range 3-1 is empty");
    expect_load_error(RULE("{layers: x, scheme: w8}"),
                      "precision.plan[2].layers: expected a layer index, a range a-b or all, got 'x'");
    expect_load_error(RULE("{layers: 1-2-3, scheme: w8}"), "got '1-2-3'");
    expect_load_error(RULE("{layers: -1, scheme: w8}"), "got '-1'");
    expect_load_error(RULE("{layers: 0-3, class: embedding, scheme: w8}"),
                      "scenario.yaml:6: precision.plan[2].layers: class embedding has no layers");
    expect_load_error(RULE("{layers: 0-3, sceme: w8}"),
                      "scenario.yaml:6: precision.plan[2].sceme: unknown key (did you mean scheme?)");
    expect_load_error(RULE("{layers: 0-3}"), "scenario.yaml:6: precision.plan[2]: scheme: required key is not set");
    expect_load_error(RULE("{scheme: w8, scheme: f16}"), "precision.plan[2].scheme: duplicate key");
    expect_load_error(RULE("w8"), "scenario.yaml:6: precision.plan[2]: expected a mapping of keys");
    expect_load_error(RULE("{scheme: [w8]}"), "scenario.yaml:6: precision.plan[2].scheme: expected a string");
    /* block style: each field has its own line */
    expect_load_error("precision:\n  plan:\n    - layers: 0-3\n      class: down\n      scheme: w9\n",
                      "scenario.yaml:5: precision.plan[0].scheme: unknown scheme 'w9'");
    expect_load_error("precision:\n  plan:\n    - layers: 0-3\n      class: dowm\n      scheme: w8\n",
                      "scenario.yaml:4: precision.plan[0].class: unknown class 'dowm'");
    expect_load_error("precision:\n  plan: w8\n", "scenario.yaml:2: precision.plan: expected a list of mappings");
    expect_load_error("precision:\n  weights: w5\n", "scenario.yaml:2: precision.weights: expected one of");
    expect_load_error("precision:\n  kv_cache: bf16\n", "precision.kv_cache: expected one of f32|f16|i8");
    expect_load_error("precision:\n  activations: a4\n", "precision.activations: expected one of float|a16|a8|a8s");
    expect_load_error("precision:\n  plans: []\n", "precision.plans: unknown key (did you mean precision.plan?)");
#undef RULE
}

static void test_from_table(void **state) {
    (void)state;
    const int nl = 6;
    ei_qscheme *t = malloc(sizeof *t * EI_TC_COUNT * (nl + 1));
    assert_non_null(t);
    uint64_t seed = 12345;
    for (int trial = 0; trial < 300; trial++) {
        for (int i = 0; i < EI_TC_COUNT * (nl + 1); i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            int r = (int)((seed >> 33) % 16);
            /* mostly one scheme, some others, some "absent" */
            t[i] = r < 8 ? EI_QW_W4G32 : r < 14 ? (ei_qscheme)(r % EI_QW_COUNT) : EI_QW_COUNT;
            if (trial % 3 == 0) t[i] = r < 14 ? EI_QW_W8 : EI_QW_W4G64; /* long runs */
        }
        ei_qplan p;
        assert_int_equal(ei_qplan_from_table(&p, nl, t), 0);
        for (int c = 0; c < EI_TC_COUNT; c++) {
            if (!ei_qclass_is_matrix((ei_tclass)c)) continue;
            int per = ei_tclass_per_layer((ei_tclass)c);
            for (int l = 0; l < (per ? nl : 1); l++) {
                ei_qscheme want = t[c * (nl + 1) + (per ? l : nl)];
                if (want == EI_QW_COUNT) continue;
                if (ei_qplan_resolve(&p, (ei_tclass)c, per ? l : -1) != want)
                    fail_msg("trial %d: %s layer %d resolves to %s, table says %s", trial, ei_tclass_name((ei_tclass)c),
                             l, ei_qscheme_name(ei_qplan_resolve(&p, (ei_tclass)c, l)), ei_qscheme_name(want));
            }
        }
        /* and so does its YAML */
        char *y = ei_qplan_to_yaml(&p, "precision");
        ei_qplan b;
        if (ei_qplan_load_string(&b, y, "t.yaml")) fail_msg("%s\n%s", ei_error_get(), y);
        for (int c = 0; c < EI_TC_COUNT; c++)
            for (int l = 0; l < nl; l++)
                assert_int_equal(ei_qplan_resolve(&b, (ei_tclass)c, l), ei_qplan_resolve(&p, (ei_tclass)c, l));
        ei_qplan_free(&b);
        free(y);
        ei_qplan_free(&p);
    }
    /* a uniform table needs no rules; one exception needs one */
    for (int i = 0; i < EI_TC_COUNT * (nl + 1); i++) t[i] = EI_QW_W8;
    for (int l = 0; l <= nl; l++) t[EI_TC_MEMORY_GATE * (nl + 1) + l] = EI_QW_F32;
    ei_qplan p;
    assert_int_equal(ei_qplan_from_table(&p, nl, t), 0);
    assert_true(p.weights == EI_QW_W8 && p.n_rules == 0);
    ei_qplan_free(&p);
    for (int l = 2; l <= 4; l++) t[EI_TC_Q * (nl + 1) + l] = t[EI_TC_K * (nl + 1) + l] = EI_QW_F16;
    assert_int_equal(ei_qplan_from_table(&p, nl, t), 0);
    assert_int_equal(p.n_rules, 1);
    assert_true(p.rules[0].layer_lo == 2 && p.rules[0].layer_hi == 4 && p.rules[0].classes == (BIT(EI_TC_Q) | BIT(EI_TC_K)));
    ei_qplan_free(&p);
    free(t);
}

/* ---------------------------------------------------------------- budget */

static uint64_t lcg = 88172645463325252ull;
static uint64_t rnd(uint64_t n) {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (lcg >> 33) % n;
}

/* The least loss over every choice with bytes <= budget (INFINITY: none). */
static double brute(const ei_qbudget_item *it, int n, uint64_t budget) {
    int idx[8] = {0};
    double best = INFINITY;
    for (;;) {
        uint64_t b = 0;
        double l = 0;
        for (int i = 0; i < n; i++) b += it[i].cand[idx[i]].bytes, l += it[i].cand[idx[i]].loss;
        if (b <= budget && l < best) best = l;
        int i = 0;
        while (i < n && ++idx[i] == it[i].n_cand) idx[i++] = 0;
        if (i == n) break;
    }
    return best;
}

static void make_instance(ei_qbudget_item *it, ei_qcand (*cand)[6], int n, uint64_t scale) {
    for (int i = 0; i < n; i++) {
        int k = 1 + (int)rnd(5);
        for (int c = 0; c < k; c++)
            cand[i][c] = (ei_qcand){(ei_qscheme)(c % EI_QW_COUNT), (1 + rnd(40)) * scale, (double)rnd(1000) / 7.0 - 20};
        it[i] = (ei_qbudget_item){EI_TC_Q, i, k, cand[i]};
    }
}

static void check_choice(const ei_qbudget_item *it, int n, uint64_t budget, const int *choice, const ei_qbudget_result *r) {
    uint64_t b = 0;
    double l = 0;
    for (int i = 0; i < n; i++) {
        assert_true(choice[i] >= 0 && choice[i] < it[i].n_cand);
        b += it[i].cand[choice[i]].bytes;
        l += it[i].cand[choice[i]].loss;
    }
    assert_true(b <= budget && b == r->bytes);
    assert_true(fabs(l - r->loss) <= 1e-9 * (1 + fabs(l)));
}

static void test_budget_exact(void **state) {
    (void)state;
    ei_qbudget_item it[7];
    ei_qcand cand[7][6];
    int choice[7];
    for (int trial = 0; trial < 400; trial++) {
        int n = 1 + (int)rnd(7);
        make_instance(it, cand, n, trial % 2 ? 1 : 4096 * 3); /* small sizes, and sizes with a big gcd */
        uint64_t lo = 0, hi = 0;
        for (int i = 0; i < n; i++) {
            uint64_t mn = UINT64_MAX, mx = 0;
            for (int c = 0; c < it[i].n_cand; c++) {
                mn = it[i].cand[c].bytes < mn ? it[i].cand[c].bytes : mn;
                mx = it[i].cand[c].bytes > mx ? it[i].cand[c].bytes : mx;
            }
            lo += mn, hi += mx;
        }
        uint64_t budget = lo + rnd(hi - lo + 2);
        ei_qbudget_result r;
        if (ei_qbudget_solve(it, n, budget, choice, &r)) fail_msg("%s", ei_error_get());
        assert_int_equal(r.exact, 1);
        check_choice(it, n, budget, choice, &r);
        double want = brute(it, n, budget);
        if (fabs(r.loss - want) > 1e-9 * (1 + fabs(want)))
            fail_msg("trial %d: loss %.17g, brute force %.17g", trial, r.loss, want);
        /* below the smallest plan: an error */
        if (lo > 0) {
            assert_int_equal(ei_qbudget_solve(it, n, lo - 1, choice, &r), -1);
            assert_non_null(strstr(ei_error_get(), "below the smallest plan"));
        }
    }
}

/* Sizes without a useful gcd and a budget far above EI_QBUDGET_MAX_UNITS: the coarse unit keeps the
 * choice within the budget and no worse than the optimum for budget - n unit. */
static void test_budget_rounded(void **state) {
    (void)state;
    ei_qbudget_item it[7];
    ei_qcand cand[7][6];
    int choice[7];
    for (int trial = 0; trial < 200; trial++) {
        int n = 1 + (int)rnd(7);
        make_instance(it, cand, n, 1000003);
        for (int i = 0; i < n; i++)
            for (int c = 0; c < it[i].n_cand; c++) cand[i][c].bytes += rnd(997); /* gcd 1 */
        uint64_t budget = (uint64_t)n * 20 * 1000003 + rnd(1000000);
        ei_qbudget_result r;
        if (ei_qbudget_solve(it, n, budget, choice, &r)) {
            assert_non_null(strstr(ei_error_get(), "below the smallest plan"));
            continue;
        }
        check_choice(it, n, budget, choice, &r);
        double exact = brute(it, n, budget), slack = brute(it, n, budget - (uint64_t)n * r.unit);
        assert_true(r.unit > 1 && r.loss >= exact - 1e-9 * (1 + fabs(exact)));
        if (r.exact) assert_true(fabs(r.loss - exact) <= 1e-9 * (1 + fabs(exact)));
        else if (isfinite(slack)) assert_true(r.loss <= slack + 1e-9 * (1 + fabs(slack)));
    }
    /* a model-sized instance runs and stays within the budget */
    enum { NI = 160 };
    ei_qbudget_item *big = malloc(sizeof *big * NI);
    ei_qcand(*bc)[6] = malloc(sizeof *bc * NI);
    int *ch = malloc(sizeof *ch * NI);
    assert_true(big && bc && ch);
    const ei_qscheme sch[] = {EI_QW_F32, EI_QW_F16, EI_QW_W8, EI_QW_W4G32, EI_QW_W4G64, EI_QW_W4G128};
    uint64_t full = 0;
    for (int i = 0; i < NI; i++) {
        int64_t rows = 256 + 64 * (i % 5), cols = 768;
        for (int c = 0; c < 6; c++)
            bc[i][c] = (ei_qcand){sch[c], ei_qscheme_file_bytes(sch[c], rows, cols), c < 2 ? 0.0 : (c - 1) * 1e-3 * (1 + i % 7)};
        big[i] = (ei_qbudget_item){EI_TC_UP, i, 6, bc[i]};
        full += bc[i][2].bytes;
    }
    ei_qbudget_result r;
    assert_int_equal(ei_qbudget_solve(big, NI, full, ch, &r), 0); /* the size of all-w8 */
    check_choice(big, NI, full, ch, &r);
    assert_true(r.loss <= NI * 1e-3 * 7); /* no worse than all-w8 by more than rounding */
    free(big), free(bc), free(ch);
    /* bad input */
    ei_qcand nanc = {EI_QW_W8, 10, NAN};
    ei_qbudget_item bad = {EI_TC_Q, 0, 1, &nanc};
    assert_int_equal(ei_qbudget_solve(&bad, 1, 100, choice, &r), -1);
    bad = (ei_qbudget_item){EI_TC_Q, 0, 0, &nanc};
    assert_int_equal(ei_qbudget_solve(&bad, 1, 100, choice, &r), -1);
    assert_int_equal(ei_qbudget_solve(NULL, 0, 0, NULL, &r), 0);
    assert_true(r.bytes == 0 && r.loss == 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve),      cmocka_unit_test(test_yaml),
        cmocka_unit_test(test_yaml_errors),  cmocka_unit_test(test_from_table),
        cmocka_unit_test(test_budget_exact), cmocka_unit_test(test_budget_rounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
