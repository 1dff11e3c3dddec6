/* Truncated and corrupted tokenizer files: every reader must fail with a message naming the file,
 * never crash (this program matters most in the sanitizer build), and never accept a file that is
 * cut short. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "text/tokenizer.h"

#define FIX EI_FIXTURES

static char g_dir[256];

static int setup(void **s) {
    (void)s;
    snprintf(g_dir, sizeof g_dir, "%s/tok_corrupt_XXXXXX", EI_BINARY_DIR);
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **s) {
    (void)s;
    char p[512];
    static const char *names[] = {"t.bin", "t.model", "tokenizer.json", "x.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, names[i]);
        unlink(p);
    }
    rmdir(g_dir);
    return 0;
}

static char *tmp_path(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (n) assert_int_equal(fwrite(data, 1, n, fp), n);
    fclose(fp);
}

/* Loads path; expects failure with an error that names the file. */
static void expect_fail(const char *path, int vocab_hint) {
    ei_tokenizer *t = ei_tokenizer_load(path, vocab_hint);
    if (t) {
        ei_tokenizer_free(t);
        fail_msg("%s loaded but should have failed", path);
    }
    if (!strstr(ei_error_get(), path)) fail_msg("error does not name the file: %s", ei_error_get());
}

/* Loads path; failing is fine (with the file named), loading is fine: exercise the encoder then. */
static int load_or_fail(const char *path) {
    ei_tokenizer *t = ei_tokenizer_load(path, 0);
    if (!t) {
        if (!strstr(ei_error_get(), path)) fail_msg("error does not name the file: %s", ei_error_get());
        return 0;
    }
    int32_t *ids;
    size_t n;
    const char *text = "Hello, world! 123 \xE4\xBD\xA0\xE5\xA5\xBD <s>";
    assert_int_equal(ei_tokenizer_encode(t, text, strlen(text), 1, 1, &ids, &n), 0);
    char *dec;
    assert_int_equal(ei_tokenizer_decode(t, ids, n, &dec, NULL), 0);
    free(dec);
    free(ids);
    ei_tokenizer_free(t);
    return 1;
}

static uint32_t rng_next(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*s >> 33);
}

static void test_bin_truncated(void **s) {
    (void)s;
    char *buf;
    size_t n;
    assert_int_equal(ei_file_read_all(FIX "/models/stories260K/tok512.bin", &buf, &n), 0);
    const char *p = tmp_path("t.bin");
    /* With the vocabulary size known, any cut is an error; without it, a cut inside an entry is. */
    size_t cuts[] = {0, 1, 3, 4, 5, 8, 11, 12, 13, 100, n / 2, n - 7, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_file(p, buf, cuts[i]);
        expect_fail(p, 512);
    }
    for (size_t cut = 0; cut < n; cut += 37) {
        write_file(p, buf, cut);
        load_or_fail(p);
    }
    write_file(p, buf, n - 1);
    expect_fail(p, 0);
    write_file(p, buf, n);
    expect_fail(p, 513); /* the model claims more pieces than the file has */
    assert_non_null(strstr(ei_error_get(), "vocabulary size mismatch: the tokenizer has 512 pieces"));
    expect_fail(p, 100); /* or fewer */
    assert_non_null(strstr(ei_error_get(), "vocabulary size mismatch: the tokenizer has 512 pieces"));
    assert_non_null(strstr(ei_error_get(), "vocabulary has 100"));
    /* a file that ends at an entry boundary is a smaller vocabulary, not a cut file */
    size_t at = 4;
    for (int id = 0; id < 105; id++) {
        int32_t len;
        memcpy(&len, buf + at + 4, 4);
        at += 8 + (size_t)len;
    }
    write_file(p, buf, at);
    expect_fail(p, 512);
    assert_non_null(strstr(ei_error_get(), "vocabulary size mismatch: the tokenizer has 105 pieces"));
    assert_null(strstr(ei_error_get(), "truncated"));
    /* corrupt header and lengths */
    int32_t bad = -5;
    memcpy(buf, &bad, 4);
    write_file(p, buf, n);
    expect_fail(p, 0);
    free(buf);
    assert_int_equal(ei_file_read_all(FIX "/models/stories260K/tok512.bin", &buf, &n), 0);
    int32_t huge = 0x7fffffff;
    memcpy(buf + 4 + 4, &huge, 4); /* first entry's length */
    write_file(p, buf, n);
    expect_fail(p, 0);
    int32_t neg = -1;
    memcpy(buf + 4 + 4, &neg, 4);
    write_file(p, buf, n);
    expect_fail(p, 0);
    free(buf);
}

static void test_model_truncated(void **s) {
    (void)s;
    char *buf;
    size_t n;
    assert_int_equal(ei_file_read_all(FIX "/models/stories260K/tok512.model", &buf, &n), 0);
    const char *p = tmp_path("t.model");
    /* Pieces come first and the BPE trainer spec last: every cut loses the model type or a field. */
    for (size_t cut = 1; cut < n; cut += 13) {
        write_file(p, buf, cut);
        expect_fail(p, 0);
    }
    free(buf);
}

static void test_model_corrupt(void **s) {
    (void)s;
    char *buf;
    size_t n;
    assert_int_equal(ei_file_read_all(FIX "/models/stories260K/tok512.model", &buf, &n), 0);
    const char *p = tmp_path("t.model");
    /* hand-made broken headers */
    static const unsigned char heads[][12] = {
        {0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F},                               /* length far past the end */
        {0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, /* overlong varint */
        {0x0F, 0x00},                                                       /* wire type 7 */
        {0x02, 0x00},                                                       /* field number 0 */
        {0x0A, 0x04, 0x1A, 0x02, 0x08, 0x09},                               /* piece type 9 (invalid) */
    };
    static const size_t head_len[] = {6, 12, 2, 2, 6};
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        write_file(p, heads[i], head_len[i]);
        expect_fail(p, 0);
    }
    /* random byte corruption: anything may happen except a crash or an unnamed error */
    uint64_t seed = 12345;
    int loaded = 0;
    for (int k = 0; k < 150; k++) {
        char *c = malloc(n);
        memcpy(c, buf, n);
        int flips = 1 + (int)(rng_next(&seed) % 4);
        for (int f = 0; f < flips; f++) c[rng_next(&seed) % n] = (char)rng_next(&seed);
        write_file(p, c, n);
        loaded += load_or_fail(p);
        free(c);
    }
    printf("# %d of 150 corrupted tok512.model copies still loaded (flipped bytes inside strings/scores)\n", loaded);
    free(buf);
}

static void test_bin_random(void **s) {
    (void)s;
    char *buf;
    size_t n;
    assert_int_equal(ei_file_read_all(FIX "/models/stories260K/tok512.bin", &buf, &n), 0);
    const char *p = tmp_path("t.bin");
    uint64_t seed = 777;
    for (int k = 0; k < 100; k++) {
        char *c = malloc(n);
        memcpy(c, buf, n);
        for (int f = 0; f < 3; f++) c[rng_next(&seed) % n] = (char)rng_next(&seed);
        write_file(p, c, n);
        load_or_fail(p);
        free(c);
    }
    free(buf);
}

static void test_json_malformed(void **s) {
    (void)s;
    const char *p = tmp_path("x.json");
    static const char *bad[] = {
        "",
        "{",
        "[1,2,3]",
        "{\"model\": 5}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"ab\"]}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"a\"]]}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": 3}}",
        "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": 1}]}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
        "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
        "{\"type\": \"BertPreTokenizer\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": \"NFKD\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": 7}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(p, bad[i], strlen(bad[i]));
        expect_fail(p, 0);
    }
    /* A tiny valid one loads and encodes with its merges. */
    const char *ok = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"c\": 3}, "
                     "\"merges\": [\"a b\"]}, \"added_tokens\": [{\"id\": 4, \"content\": \"<x>\", \"special\": true}]}";
    write_file(p, ok, strlen(ok));
    ei_tokenizer *t = ei_tokenizer_load(p, 0);
    assert_non_null(t);
    int32_t *ids;
    size_t n;
    assert_int_equal(ei_tokenizer_encode(t, "abc<x>ab", 8, 0, 1, &ids, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 3);
    assert_int_equal(ids[2], 4);
    assert_int_equal(ids[3], 2);
    free(ids);
    ei_tokenizer_free(t);
}

static void test_json_truncated_real(void **s) {
    (void)s;
    char *buf;
    size_t n;
    assert_int_equal(ei_file_read_all(FIX "/tokenizers/qwen3/tokenizer.json", &buf, &n), 0);
    const char *p = tmp_path("tokenizer.json");
    size_t cuts[] = {10, n / 3, n - 2};
    for (size_t i = 0; i < 3; i++) {
        write_file(p, buf, cuts[i]);
        expect_fail(p, 0);
    }
    /* a folder whose tokenizer.json is broken reports that file */
    ei_tokenizer *t = ei_tokenizer_load(g_dir, 0);
    assert_null(t);
    assert_non_null(strstr(ei_error_get(), "tokenizer.json"));
    free(buf);
    assert_null(ei_tokenizer_load(tmp_path("missing.model"), 0));
    assert_non_null(strstr(ei_error_get(), "missing.model"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bin_truncated),   cmocka_unit_test(test_model_truncated),
        cmocka_unit_test(test_model_corrupt),   cmocka_unit_test(test_bin_random),
        cmocka_unit_test(test_json_malformed),  cmocka_unit_test(test_json_truncated_real),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
