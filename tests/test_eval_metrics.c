/* The metrics ei-eval and `ei eval --graph` share (eval/metrics.h) on hand-checked cases, and the
 * passkey grid's list parsers. The host must reproduce these numbers, so each rule is pinned here:
 * SQuAD normalisation, whole-word contains, option letters, ROUGE-L over words, quantiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "eval/metrics.h"
#include "eval/passkey_grid.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void check_norm(const char *in, const char *want) {
    char *s = ei_metric_normalize(in);
    assert_non_null(s);
    assert_string_equal(s, want);
    free(s);
}

static void test_normalize(void **state) {
    (void)state;
    check_norm("The Cat, sat!", "cat sat");
    check_norm("  An apple\tand\na pear.  ", "apple and pear");
    check_norm("don't", "dont");           /* punctuation is removed, not a word break */
    check_norm("theory another", "theory another"); /* articles only as whole words */
    check_norm("", "");
    check_norm("...", "");
    check_norm("Caf\xc3\xa9 NA\xc3\x8fVE", "caf\xc3\xa9 na\xc3\x8fve"); /* only ASCII is folded */
}

static void test_exact_contains(void **state) {
    (void)state;
    assert_int_equal(ei_metric_exact("The answer is 42.", "answer is 42"), 1);
    assert_int_equal(ei_metric_exact("42", "43"), 0);
    assert_int_equal(ei_metric_contains("the pass key is 12345.", "12345"), 1);
    assert_int_equal(ei_metric_contains("key 123456", "12345"), 0); /* whole words only */
    assert_int_equal(ei_metric_contains("x 12345", "12345"), 1);
    assert_int_equal(ei_metric_contains("it was in paris france", "Paris, France"), 1);
    assert_int_equal(ei_metric_contains("paris is in france", "paris france"), 0);
    assert_int_equal(ei_metric_contains("", ""), 1);
    assert_int_equal(ei_metric_contains("something", "the"), 0); /* empty after normalising */
}

static void test_answer_line(void **state) {
    (void)state;
    char *s = ei_metric_answer_line("\n  \n  12345. Then more\nsecond line");
    assert_string_equal(s, "12345. Then more");
    free(s);
    s = ei_metric_answer_line("no newline ");
    assert_string_equal(s, "no newline");
    free(s);
    s = ei_metric_answer_line("\n\n");
    assert_string_equal(s, "");
    free(s);
    assert_int_equal(ei_metric_line_complete("  \n\n"), 0);
    assert_int_equal(ei_metric_line_complete("\n 42"), 0);
    assert_int_equal(ei_metric_line_complete("\n 42\n"), 1);
}

static void test_choice(void **state) {
    (void)state;
    assert_int_equal(ei_metric_choice_letter("(B) Their subconscious knew"), 'B');
    assert_int_equal(ei_metric_choice_letter("I think (c) is right"), 'C');
    assert_int_equal(ei_metric_choice_letter(" D. Chelsea"), 'D');
    assert_int_equal(ei_metric_choice_letter("A"), 'A');
    assert_int_equal(ei_metric_choice_letter("Answer: maybe"), 0);
    assert_int_equal(ei_metric_choice("B) because", "(B) Their subconscious"), 1);
    assert_int_equal(ei_metric_choice("(A)", "(B) x"), 0);
    assert_int_equal(ei_metric_choice("none", "none"), 0);
}

static void test_rouge_l(void **state) {
    (void)state;
    /* LCS of [the cat sat on the mat] and [the cat was on the mat] is 5 words of 6 and 6. */
    assert_float_equal(ei_metric_rouge_l("the cat sat on the mat", "The cat was on the mat."), 5.0 / 6.0, 1e-12);
    assert_float_equal(ei_metric_rouge_l("a b c d", "a b c d"), 1.0, 0.0);
    assert_float_equal(ei_metric_rouge_l("x y", "a b"), 0.0, 0.0);
    assert_float_equal(ei_metric_rouge_l("", "a b"), 0.0, 0.0);
    /* LCS("a b c", "a c b c") = 3: P = 1, R = 3/4, F1 = 6/7 */
    assert_float_equal(ei_metric_rouge_l("a b c", "a c b c"), 6.0 / 7.0, 1e-12);
    /* LCS is of words: "b a" against "a b" shares one word */
    assert_float_equal(ei_metric_rouge_l("b a", "a b"), 0.5, 1e-12);
}

static void test_quantile_ppl(void **state) {
    (void)state;
    double v[] = {4, 1, 3, 2};
    assert_float_equal(ei_metric_quantile(v, 4, 0.5), 2.5, 1e-12);
    assert_float_equal(ei_metric_quantile(v, 4, 0.9), 3.7, 1e-12);
    double one = 7;
    assert_float_equal(ei_metric_quantile(&one, 1, 0.9), 7.0, 0.0);
    assert_true(isnan(ei_metric_quantile(NULL, 0, 0.5)));
    assert_float_equal(ei_metric_perplexity(2.0 * 10, 10), exp(2.0), 1e-9);
    assert_true(isnan(ei_metric_perplexity(0.0, 0)));
}

static void test_grid_lists(void **state) {
    (void)state;
    int64_t *l = NULL;
    double *d = NULL;
    int n = 0;
    assert_int_equal(ei_pk_parse_lengths("1k,4K,300", "lengths", &l, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(l[0], 1024);
    assert_int_equal(l[1], 4096);
    assert_int_equal(l[2], 300);
    free(l);
    assert_int_equal(ei_pk_parse_lengths("1k,x", "lengths", &l, &n), -1);
    assert_int_equal(ei_pk_parse_lengths("0", "lengths", &l, &n), -1);
    assert_int_equal(ei_pk_parse_depths("0,25,50,75,100", "depths", &d, &n), 0);
    assert_int_equal(n, 5);
    assert_float_equal(d[1], 0.25, 1e-15);
    assert_float_equal(d[4], 1.0, 1e-15);
    free(d);
    assert_int_equal(ei_pk_parse_depths("0,0.5,1", "depths", &d, &n), 0);
    assert_float_equal(d[1], 0.5, 1e-15);
    free(d);
    assert_int_equal(ei_pk_parse_depths("0%,1%", "depths", &d, &n), 0); /* '%' forces percent */
    assert_float_equal(d[1], 0.01, 1e-15);
    free(d);
    assert_int_equal(ei_pk_parse_depths("50,101", "depths", &d, &n), -1);
    assert_int_equal(ei_pk_parse_depths("", "depths", &d, &n), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),  cmocka_unit_test(test_exact_contains), cmocka_unit_test(test_answer_line),
        cmocka_unit_test(test_choice),     cmocka_unit_test(test_rouge_l),        cmocka_unit_test(test_quantile_ppl),
        cmocka_unit_test(test_grid_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
