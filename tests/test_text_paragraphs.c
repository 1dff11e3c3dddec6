/* text/paragraphs: the paragraph rule on its edge cases (empty and whitespace-only text, leading and
 * trailing blank lines, whitespace-only separators, no final newline, one paragraph, indentation,
 * CRLF and lone CR, NUL bytes), ei_text_normalize, and random texts against a line-by-line
 * restatement of the rule written here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "text/paragraphs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Splits text[0..len) and checks the spans' bytes against want[0..n_want). */
static void expect_n(const char *text, size_t len, const char *const *want, size_t n_want) {
    ei_span *sp = (ei_span *)1;
    size_t n = 99;
    assert_int_equal(ei_text_paragraphs(text, len, &sp, &n), 0);
    if (n != n_want) fail_msg("%zu paragraphs, expected %zu", n, n_want);
    if (n == 0) assert_null(sp);
    for (size_t i = 0; i < n; i++) {
        assert_true(sp[i].len > 0);
        assert_true(sp[i].start + sp[i].len <= len);
        if (i) assert_true(sp[i].start > sp[i - 1].start + sp[i - 1].len);
        size_t wl = strlen(want[i]);
        if (sp[i].len != wl || memcmp(text + sp[i].start, want[i], wl) != 0)
            fail_msg("paragraph %zu: '%.*s', expected '%s'", i, (int)sp[i].len, text + sp[i].start, want[i]);
    }
    free(sp);
}

#define EXPECT(text, ...)                                                                                   \
    do {                                                                                                    \
        const char *const w_[] = {__VA_ARGS__};                                                             \
        expect_n(text, strlen(text), w_, sizeof w_ / sizeof w_[0]);                                         \
    } while (0)
#define EXPECT_NONE(text) expect_n(text, strlen(text), NULL, 0)

static void test_no_paragraphs(void **state) {
    (void)state;
    EXPECT_NONE("");
    EXPECT_NONE("\n");
    EXPECT_NONE("\n\n\n");
    EXPECT_NONE("   ");
    EXPECT_NONE("  \n\t\n\r\n \f\v\n\r");
}

static void test_single_paragraph(void **state) {
    (void)state;
    EXPECT("one line", "one line");           /* no final newline */
    EXPECT("one line\n", "one line");
    EXPECT("a\nb\nc\n", "a\nb\nc");           /* lines stay joined by LF */
    EXPECT("x", "x");
    EXPECT("a  \nb", "a  \nb");               /* only the end of the paragraph is trimmed */
    EXPECT("last line \t\f\v \n", "last line");
}

static void test_separators(void **state) {
    (void)state;
    EXPECT("a\n\nb", "a", "b");
    EXPECT("a\n\n\n\nb\n", "a", "b");
    EXPECT("a\n \t \nb\n\f\nc\n\v\r\nd", "a", "b", "c", "d"); /* whitespace-only lines separate */
    EXPECT("\n\n  \nfirst\n\n\n\nsecond para\nline 2\n\n  \n", "first", "second para\nline 2");
    EXPECT("   \t\n\nbody\n   ", "body"); /* leading and trailing blank lines */
}

static void test_indentation_kept(void **state) {
    (void)state;
    EXPECT("   indented\n  next  \t\n\nx \t ", "   indented\n  next", "x");
    EXPECT("\n\n\tpoem line one\n\tpoem line two\n", "\tpoem line one\n\tpoem line two");
}

static void test_cr(void **state) {
    (void)state;
    /* CRLF: the same boundaries as LF; the final CR is trimmed, inner ones stay. */
    EXPECT("p1 l1\r\np1 l2\r\n\r\n \r\np2\r\n", "p1 l1\r\np1 l2", "p2");
    EXPECT("a\r\n\r\n\r\nb", "a", "b");
    /* A lone CR does not end a line. */
    EXPECT("a\rb\n\nc", "a\rb", "c");
    char buf[] = "\xEF\xBB\xBFp1 l1\r\np1 l2\r\n\r\np2\r\r\n";
    size_t n = ei_text_normalize(buf, strlen(buf));
    assert_int_equal(n, strlen("p1 l1\np1 l2\n\np2\r\n"));
    assert_string_equal(buf, "p1 l1\np1 l2\n\np2\r\n");
    expect_n(buf, n, (const char *const[]){"p1 l1\np1 l2", "p2"}, 2);
}

static void test_normalize(void **state) {
    (void)state;
    char a[] = "\xEF\xBB\xBF";
    assert_int_equal(ei_text_normalize(a, 3), 0);
    assert_string_equal(a, "");
    char b[] = "no bom\r";
    assert_int_equal(ei_text_normalize(b, strlen(b)), 7); /* a final lone CR stays */
    assert_string_equal(b, "no bom\r");
    char c[] = "x\xEF\xBB\xBFy\r\n";
    assert_int_equal(ei_text_normalize(c, strlen(c)), 6); /* a BOM elsewhere is text */
    assert_memory_equal(c, "x\xEF\xBB\xBFy\n", 7);
    char d[] = "";
    assert_int_equal(ei_text_normalize(d, 0), 0);
}

static void test_nul_bytes(void **state) {
    (void)state;
    const char text[] = "a\0b\n\n\0";
    ei_span *sp;
    size_t n;
    assert_int_equal(ei_text_paragraphs(text, sizeof text - 1, &sp, &n), 0);
    assert_int_equal(n, 2); /* NUL is not whitespace */
    assert_int_equal(sp[0].start, 0);
    assert_int_equal(sp[0].len, 3);
    assert_int_equal(sp[1].start, 5);
    assert_int_equal(sp[1].len, 1);
    free(sp);
}

/* The rule restated line by line: collect non-blank lines, join with LF, trim the end. */
static int blank_char(char c) { return c && strchr(" \t\r\f\v", c) != NULL; }

static size_t reference(const char *text, size_t len, char out[][512], size_t max) {
    size_t n = 0, cl = 0;
    char cur[512];
    int open = 0;
    size_t i = 0;
    for (;;) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        int blank = 1;
        for (size_t k = i; k < e; k++) blank &= blank_char(text[k]);
        if (!blank) {
            if (open) cur[cl++] = '\n';
            memcpy(cur + cl, text + i, e - i);
            cl += e - i;
            open = 1;
        }
        if ((blank || e >= len) && open) {
            while (cl && blank_char(cur[cl - 1])) cl--;
            assert_true(n < max);
            memcpy(out[n], cur, cl);
            out[n][cl] = 0;
            n++;
            cl = 0;
            open = 0;
        }
        if (e >= len) break;
        i = e + 1;
    }
    return n;
}

static void test_random_against_reference(void **state) {
    (void)state;
    static const char alphabet[] = "ab \t\r\n\n\f";
    static char want[256][512];
    uint64_t s = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        char text[200];
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t len = (size_t)(s >> 33) % sizeof text;
        for (size_t k = 0; k < len; k++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            text[k] = alphabet[(s >> 33) % (sizeof alphabet - 1)];
        }
        size_t nw = reference(text, len, want, 256);
        ei_span *sp;
        size_t n;
        assert_int_equal(ei_text_paragraphs(text, len, &sp, &n), 0);
        if (n != nw) fail_msg("iteration %d: %zu paragraphs, reference %zu", iter, n, nw);
        for (size_t i = 0; i < n; i++) {
            if (sp[i].len != strlen(want[i]) || memcmp(text + sp[i].start, want[i], sp[i].len) != 0)
                fail_msg("iteration %d paragraph %zu differs", iter, i);
        }
        free(sp);
    }
}

/* ei_text_cut: only a single space between two non-space characters, the last one. */
static void test_cut_rule(void **state) {
    (void)state;
    assert_int_equal(ei_text_cut("one two three", 13), 7);
    assert_int_equal(ei_text_cut("one  two", 8), 0);   /* a run of spaces: never inside */
    assert_int_equal(ei_text_cut("one\n two", 9), 0);  /* after a newline */
    assert_int_equal(ei_text_cut("one two ", 8), 3);   /* not before the end */
    assert_int_equal(ei_text_cut("onetwo", 6), 0);
    assert_int_equal(ei_text_cut("", 0), 0);
    assert_int_equal(ei_text_cut(" a", 2), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_paragraphs),      cmocka_unit_test(test_single_paragraph),
        cmocka_unit_test(test_separators),         cmocka_unit_test(test_indentation_kept),
        cmocka_unit_test(test_cr),                 cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_nul_bytes),          cmocka_unit_test(test_random_against_reference),
        cmocka_unit_test(test_cut_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
