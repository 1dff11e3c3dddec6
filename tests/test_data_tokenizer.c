/* Tokenizers against independent references: llama.cpp's Llama 2 vectors (both tokenizer.model and
 * tokenizer.bin), SentencePiece (WebAssembly build) vectors for the Llama 2 and tok512 models, and
 * transformers.js vectors for the Llama 3 and Qwen3 tokenizer.json files (tests/tokenizer/, made by
 * gen_vectors.mjs). Also decoding, streaming decoding, special tokens and NFC. Corrupt inputs are in
 * test_data_tokenizer_corrupt.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "text/paragraphs.h"
#include "text/tokenizer.h"

#define FIX EI_FIXTURES
#define VEC EI_TEST_DATA "/../tokenizer/"

static ei_tokenizer *load(const char *path) {
    ei_tokenizer *t = ei_tokenizer_load(path, 0);
    if (!t) fail_msg("loading %s: %s", path, ei_error_get());
    return t;
}

static char *ids_str(const int32_t *ids, size_t n) {
    char *s = malloc(n * 12 + 2);
    size_t k = 0;
    s[0] = '\0';
    for (size_t i = 0; i < n; i++) k += (size_t)sprintf(s + k, " %d", ids[i]);
    return s;
}

/* Concatenation of decode_piece over the ids must equal the full decode. */
static void check_streaming(const ei_tokenizer *t, const int32_t *ids, size_t n, const char *full) {
    size_t cap = strlen(full) + 64, k = 0;
    char *acc = calloc(cap + 64, 1), buf[512];
    int prev = -1;
    for (size_t i = 0; i < n; i++) {
        int m = ei_tokenizer_decode_piece(t, prev, ids[i], buf, sizeof buf);
        size_t mm = m > 0 ? (size_t)m : 0;
        assert_true(m >= 0 && mm == strlen(buf));
        assert_true(k + mm <= cap);
        memcpy(acc + k, buf, mm);
        k += mm;
        prev = ids[i];
    }
    acc[k] = '\0';
    if (strcmp(acc, full) != 0) fail_msg("streaming decode [%s] != decode [%s]", acc, full);
    free(acc);
}

/* ------------------------------------------------------------------ llama.cpp vectors */

static void run_ggml_vectors(const char *tokpath) {
    ei_tokenizer *t = load(tokpath);
    char *inp, *out;
    size_t li, lo;
    assert_int_equal(ei_file_read_all(FIX "/tokenizers/llama2/test-vectors.inp", &inp, &li), 0);
    assert_int_equal(ei_file_read_all(FIX "/tokenizers/llama2/test-vectors.out", &out, &lo), 0);
    const char *sep = "\n__ggml_vocab_test__\n";
    char *p = inp, *ol = out;
    int count = 0;
    for (;;) {
        char *q = strstr(p, sep);
        if (!q) break;
        *q = '\0';
        char *oe = strchr(ol, '\n');
        assert_non_null(oe);
        *oe = '\0';
        int32_t *ids;
        size_t n;
        assert_int_equal(ei_tokenizer_encode(t, p, strlen(p), 0, 0, &ids, &n), 0);
        char *got = ids_str(ids, n);
        if (strcmp(got, ol) != 0) fail_msg("%s: [%s]\n got%s\n want%s", tokpath, p, got, ol);
        /* Identity normaliser without whitespace cleanup: decoding gives the text back. */
        char *txt;
        assert_int_equal(ei_tokenizer_decode(t, ids, n, &txt, NULL), 0);
        assert_string_equal(txt, p);
        check_streaming(t, ids, n, txt);
        free(txt);
        free(got);
        free(ids);
        count++;
        p = q + strlen(sep);
        ol = oe + 1;
    }
    assert_int_equal(count, 46); /* every vector of the fixture (46 separator-terminated strings) */
    free(inp);
    free(out);
    ei_tokenizer_free(t);
}

static void test_llama2_model_ggml(void **s) {
    (void)s;
    run_ggml_vectors(FIX "/tokenizers/llama2/tokenizer.model");
}

static void test_llama2_bin_ggml(void **s) {
    (void)s;
    run_ggml_vectors(FIX "/tokenizers/llama2/tokenizer.bin");
}

/* ------------------------------------------------------------------ JSON-lines vectors */

typedef struct {
    int special;        /* parse_special for encoding */
    int check_decoded;  /* compare decode with the reference's "decoded" */
    int roundtrip;      /* decode(encode(text)) == text (unless the text has specials or denormal forms) */
} vec_opts;

static int run_json_vectors(ei_tokenizer *t, const char *vecpath, vec_opts o) {
    char *buf;
    size_t len;
    assert_int_equal(ei_file_read_all(vecpath, &buf, &len), 0);
    int count = 0;
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        const char *text = cJSON_GetObjectItem(j, "text")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(j, "ids");
        int32_t *ids;
        size_t n;
        assert_int_equal(ei_tokenizer_encode(t, text, strlen(text), 0, o.special, &ids, &n), 0);
        int ok = (size_t)cJSON_GetArraySize(want) == n;
        for (size_t i = 0; ok && i < n; i++) ok = cJSON_GetArrayItem(want, (int)i)->valueint == ids[i];
        if (!ok) {
            char *got = ids_str(ids, n), *w = cJSON_PrintUnformatted(want);
            fail_msg("%s: [%s]\n got%s\n want %s", vecpath, text, got, w);
        }
        char *dec;
        assert_int_equal(ei_tokenizer_decode(t, ids, n, &dec, NULL), 0);
        if (o.check_decoded) assert_string_equal(dec, cJSON_GetObjectItem(j, "decoded")->valuestring);
        if (o.roundtrip && !strstr(text, "<|") && !strstr(text, "decomposed") && !strstr(text, "jamo"))
            assert_string_equal(dec, text);
        check_streaming(t, ids, n, dec);
        free(dec);
        free(ids);
        cJSON_Delete(j);
        count++;
        line = nl ? nl + 1 : NULL;
    }
    free(buf);
    return count;
}

static void test_llama2_spm_vectors(void **s) {
    (void)s;
    ei_tokenizer *t = load(FIX "/tokenizers/llama2/tokenizer.model");
    assert_true(run_json_vectors(t, VEC "llama2_spm.vectors", (vec_opts){0, 1, 0}) >= 30);
    ei_tokenizer_free(t);
    /* The same vectors hold for llama2.c's tokenizer.bin (same pieces and scores, same whitespace
     * handling). */
    t = load(FIX "/tokenizers/llama2/tokenizer.bin");
    assert_true(run_json_vectors(t, VEC "llama2_spm.vectors", (vec_opts){0, 1, 0}) >= 30);
    ei_tokenizer_free(t);
}

static void test_tok512_spm_vectors(void **s) {
    (void)s;
    ei_tokenizer *t = load(FIX "/models/stories260K/tok512.model");
    assert_int_equal(ei_tokenizer_vocab_size(t), 512);
    assert_true(run_json_vectors(t, VEC "tok512_spm.vectors", (vec_opts){0, 1, 0}) >= 30);
    ei_tokenizer_free(t);
}

/* tok512.bin is the llama2.c export of tok512.model: same ids wherever the model's whitespace
 * cleanup (remove_extra_whitespaces, which llama2.c's encoder does not do) has nothing to remove. */
static void test_tok512_bin_matches_model(void **s) {
    (void)s;
    ei_tokenizer *tb = load(FIX "/models/stories260K/tok512.bin");
    ei_tokenizer *tm = load(FIX "/models/stories260K/tok512.model");
    assert_int_equal(ei_tokenizer_vocab_size(tb), 512);
    char *buf;
    size_t len;
    assert_int_equal(ei_file_read_all(VEC "tok512_spm.vectors", &buf, &len), 0);
    int compared = 0;
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        cJSON *j = cJSON_Parse(line);
        const char *text = cJSON_GetObjectItem(j, "text")->valuestring;
        size_t n = strlen(text);
        if (n && text[0] != ' ' && text[n - 1] != ' ' && !strstr(text, "  ")) {
            int32_t *a, *b;
            size_t na, nb;
            assert_int_equal(ei_tokenizer_encode(tb, text, n, 1, 0, &a, &na), 0);
            assert_int_equal(ei_tokenizer_encode(tm, text, n, 1, 0, &b, &nb), 0);
            assert_int_equal(na, nb);
            assert_memory_equal(a, b, na * sizeof *a);
            free(a);
            free(b);
            compared++;
        }
        cJSON_Delete(j);
        line = nl ? nl + 1 : NULL;
    }
    assert_true(compared >= 20);
    free(buf);
    ei_tokenizer_free(tb);
    ei_tokenizer_free(tm);
}

/* SentencePiece-style tokenizer.json (Llama 2 HF layout: Prepend/Replace normaliser, byte fallback,
 * rank-ordered merges), converted from tok512.model by spm_to_hf.py; reference: transformers.js. */
static void test_tok512_hf_vectors(void **s) {
    (void)s;
    ei_tokenizer *t = load(EI_TEST_DATA "/../tokenizer/tok512_hf/tokenizer.json");
    assert_int_equal(ei_tokenizer_vocab_size(t), 512);
    assert_int_equal(ei_tokenizer_bos(t), 1);
    assert_int_equal(ei_tokenizer_eos(t), 2);
    assert_true(run_json_vectors(t, VEC "tok512_hf.vectors", (vec_opts){1, 1, 0}) >= 30);
    ei_tokenizer_free(t);
    /* The newer layout: Metaspace pre-tokenizer (prepend_scheme "first") instead of the normaliser. */
    t = load(EI_TEST_DATA "/../tokenizer/tok512_hf_metaspace/tokenizer.json");
    assert_true(run_json_vectors(t, VEC "tok512_hf_metaspace.vectors", (vec_opts){1, 1, 0}) >= 30);
    ei_tokenizer_free(t);
}

static void test_llama3_vectors(void **s) {
    (void)s;
    double t0 = ei_time_now();
    ei_tokenizer *t = load(FIX "/tokenizers/llama3/tokenizer.json");
    printf("# llama3 tokenizer.json loaded in %.3f s\n", ei_time_now() - t0);
    assert_int_equal(ei_tokenizer_vocab_size(t), 128256);
    assert_true(run_json_vectors(t, VEC "llama3.vectors", (vec_opts){1, 0, 1}) >= 30);
    ei_tokenizer_free(t);
}

static void test_qwen3_vectors(void **s) {
    (void)s;
    double t0 = ei_time_now();
    ei_tokenizer *t = load(FIX "/tokenizers/qwen3");
    printf("# qwen3 tokenizer.json loaded in %.3f s\n", ei_time_now() - t0);
    assert_true(run_json_vectors(t, VEC "qwen3.vectors", (vec_opts){1, 0, 1}) >= 30);
    ei_tokenizer_free(t);
}

/* ------------------------------------------------------------------ special tokens, folders */

static void test_special_ids(void **s) {
    (void)s;
    ei_tokenizer *t = load(FIX "/tokenizers/llama2/tokenizer.model");
    assert_int_equal(ei_tokenizer_bos(t), 1);
    assert_int_equal(ei_tokenizer_eos(t), 2);
    assert_int_equal(ei_tokenizer_piece_id(t, "<s>"), 1);
    assert_int_equal(ei_tokenizer_piece_id(t, "\xE2\x96\x81Hello"), 15043);
    int32_t *ids;
    size_t n;
    /* Control pieces are text unless parse_special; with it they become ids. */
    assert_int_equal(ei_tokenizer_encode(t, "<s>Hi</s>", 9, 1, 1, &ids, &n), 0);
    assert_true(n >= 4);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 1);
    assert_int_equal(ids[n - 1], 2);
    free(ids);
    assert_int_equal(ei_tokenizer_encode(t, "<s>Hi</s>", 9, 0, 0, &ids, &n), 0);
    for (size_t i = 0; i < n; i++) assert_true(ids[i] != 1 && ids[i] != 2);
    free(ids);
    ei_tokenizer_free(t);

    t = load(FIX "/tokenizers/llama2/tokenizer.bin");
    assert_int_equal(ei_tokenizer_bos(t), 1);
    assert_int_equal(ei_tokenizer_piece_id(t, "</s>"), 2);
    assert_int_equal(ei_tokenizer_vocab_size(t), 32000);
    ei_tokenizer_free(t);

    t = load(FIX "/tokenizers/llama3/tokenizer.json");
    assert_int_equal(ei_tokenizer_bos(t), 128000); /* from tokenizer_config.json beside it */
    assert_int_equal(ei_tokenizer_eos(t), 128001);
    assert_int_equal(ei_tokenizer_encode(t, "Hi", 2, 1, 0, &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 128000);
    free(ids);
    ei_tokenizer_free(t);

    t = load(FIX "/tokenizers/qwen3/tokenizer.json");
    assert_int_equal(ei_tokenizer_bos(t), -1);
    assert_int_equal(ei_tokenizer_eos(t), 151645);
    const char *chat = "<|im_start|>user";
    assert_int_equal(ei_tokenizer_encode(t, chat, strlen(chat), 1, 0, &ids, &n), 0); /* no BOS to add */
    assert_true(n > 2);
    for (size_t i = 0; i < n; i++) assert_true(ids[i] != 151644);
    char *dec;
    assert_int_equal(ei_tokenizer_decode(t, ids, n, &dec, NULL), 0);
    assert_string_equal(dec, chat); /* literal text survives without parse_special */
    free(dec);
    free(ids);
    assert_int_equal(ei_tokenizer_encode(t, chat, strlen(chat), 0, 1, &ids, &n), 0);
    assert_int_equal(ids[0], 151644);
    assert_int_equal(ei_tokenizer_decode(t, ids, n, &dec, NULL), 0);
    assert_string_equal(dec, "user"); /* control tokens are dropped when decoding */
    free(dec);
    free(ids);
    ei_tokenizer_free(t);
}

static void test_folders_and_identity(void **s) {
    (void)s;
    ei_tokenizer *t = load(FIX "/models/stories260K");
    assert_true(strncmp(ei_tokenizer_identity(t), "llama2c:tok512.bin:", 19) == 0);
    ei_tokenizer_free(t);
    t = load(FIX "/models/stories260K-hf");
    assert_true(strncmp(ei_tokenizer_identity(t), "sentencepiece:tokenizer.model:", 30) == 0);
    ei_tokenizer *t2 = load(FIX "/models/stories260K/tok512.model");
    /* same bytes, same hash part of the identity */
    assert_string_equal(strrchr(ei_tokenizer_identity(t), ':'), strrchr(ei_tokenizer_identity(t2), ':'));
    ei_tokenizer_free(t2);
    ei_tokenizer_free(t);
    t = load(FIX "/tokenizers/llama3");
    assert_true(strncmp(ei_tokenizer_identity(t), "hf:tokenizer.json:", 18) == 0);
    ei_tokenizer_free(t);
    assert_null(ei_tokenizer_load(FIX "/text", 0));
    assert_non_null(strstr(ei_error_get(), "/text"));
}

/* ------------------------------------------------------------------ streaming decode */

static void test_streaming_bos_and_bytes(void **s) {
    (void)s;
    ei_tokenizer *t = load(FIX "/models/stories260K/tok512.bin");
    /* tok512 has no CJK pieces: every character falls back to <0xXX> pieces, one byte each. */
    const char *text = "Lily saw 猫 and \xF0\x9F\x90\xB1.";
    int32_t *ids;
    size_t n;
    assert_int_equal(ei_tokenizer_encode(t, text, strlen(text), 1, 0, &ids, &n), 0);
    assert_int_equal(ids[0], 1);
    char acc[256] = "", buf[64];
    int bytes = 0;
    for (size_t i = 1; i < n; i++) {
        int m = ei_tokenizer_decode_piece(t, ids[i - 1], ids[i], buf, sizeof buf);
        if (ids[i] >= 3 && ids[i] < 259) {
            assert_int_equal(m, 1); /* a byte piece adds exactly its byte */
            assert_int_equal((unsigned char)buf[0], ids[i] - 3);
            bytes++;
        }
        strcat(acc, buf);
    }
    assert_int_equal(bytes, 3 + 4);
    assert_string_equal(acc, text); /* the dummy-prefix space after BOS is not printed */
    /* small buffers truncate and stay NUL-terminated */
    int m = ei_tokenizer_decode_piece(t, -1, ids[2], buf, 2);
    assert_true(m <= 1 && buf[m] == '\0');
    assert_int_equal(ei_tokenizer_decode_piece(t, -1, 1, buf, sizeof buf), 0); /* BOS prints nothing */
    assert_int_equal(ei_tokenizer_decode_piece(t, -1, 99999, buf, sizeof buf), 0);
    free(ids);
    ei_tokenizer_free(t);
}

/* ------------------------------------------------------------------ NFC (Qwen's normaliser) */

static void test_nfc(void **s) {
    (void)s;
    ei_tokenizer *t = load(FIX "/tokenizers/qwen3/tokenizer.json");
    /* Pairs (input, NFC form computed with Python's unicodedata.normalize): the ids of the input
     * must equal the ids of its NFC form. */
    static const char *pairs[][2] = {
        {"cafe\xCC\x81", "caf\xC3\xA9"},
        {"\xE2\x84\xAB", "\xC3\x85"},                               /* U+212B -> U+00C5 */
        {"\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81"},   /* jamo -> U+AC01 */
        {"a\xCC\xA3\xCC\x82", "\xE1\xBA\xAD"},                      /* a + 0323 + 0302 -> U+1EAD */
        {"a\xCC\x82\xCC\xA3", "\xE1\xBA\xAD"},                      /* reordered marks */
        {"q\xCC\x87\xCC\xA3", "q\xCC\xA3\xCC\x87"},                 /* no composite: only reordering */
        {"\xE1\xB8\x8B\xCC\xA3", "\xE1\xB8\x8D\xCC\x87"},           /* U+1E0B U+0323 -> U+1E0D U+0307 */
        {"A\xCC\x8A\xCC\x81", "\xC7\xBA"},                          /* -> U+01FA */
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        int32_t *a, *b;
        size_t na, nb;
        assert_int_equal(ei_tokenizer_encode(t, pairs[i][0], strlen(pairs[i][0]), 0, 0, &a, &na), 0);
        assert_int_equal(ei_tokenizer_encode(t, pairs[i][1], strlen(pairs[i][1]), 0, 0, &b, &nb), 0);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof *a);
        char *dec;
        assert_int_equal(ei_tokenizer_decode(t, a, na, &dec, NULL), 0);
        assert_string_equal(dec, pairs[i][1]);
        free(dec);
        free(a);
        free(b);
    }
    ei_tokenizer_free(t);
}

/* Invalid UTF-8 must encode (byte fallback / byte-level) and decode back to the same bytes. */
static void test_invalid_utf8(void **s) {
    (void)s;
    const char *paths[] = {FIX "/tokenizers/llama2/tokenizer.model", FIX "/tokenizers/llama3/tokenizer.json",
                           FIX "/tokenizers/qwen3/tokenizer.json"};
    const char text[] = "ok \xFF\xC3 bad \xE6\x95 end \xCC\x81";
    for (size_t k = 0; k < 3; k++) {
        ei_tokenizer *t = load(paths[k]);
        int32_t *ids;
        size_t n;
        assert_int_equal(ei_tokenizer_encode(t, text, sizeof text - 1, 0, 0, &ids, &n), 0);
        char *dec;
        size_t dl;
        assert_int_equal(ei_tokenizer_decode(t, ids, n, &dec, &dl), 0);
        assert_int_equal(dl, sizeof text - 1);
        assert_memory_equal(dec, text, dl);
        free(dec);
        free(ids);
        ei_tokenizer_free(t);
    }
}

/* A whole book through each encoder: linear-time merging, and a sanity bound on the ratio. */
static void test_long_text(void **s) {
    (void)s;
    char *text;
    size_t len;
    assert_int_equal(ei_file_read_all(FIX "/text/tinystories.txt", &text, &len), 0);
    const char *paths[] = {FIX "/tokenizers/llama2/tokenizer.model", FIX "/tokenizers/qwen3/tokenizer.json"};
    for (size_t k = 0; k < 2; k++) {
        ei_tokenizer *t = load(paths[k]);
        int32_t *ids;
        size_t n;
        double t0 = ei_time_now();
        assert_int_equal(ei_tokenizer_encode(t, text, len, 1, 0, &ids, &n), 0);
        double dt = ei_time_now() - t0;
        printf("# %s: %zu bytes -> %zu tokens in %.3f s (%.1f MB/s)\n", ei_tokenizer_identity(t), len, n, dt,
               (double)len / 1e6 / (dt > 0 ? dt : 1e-9));
        assert_true(n > len / 8 && n < len / 2);
        char *dec;
        size_t dl;
        size_t skip = ei_tokenizer_bos(t) >= 0; /* BOS decodes to nothing anyway; check it is there */
        if (skip) assert_int_equal(ids[0], ei_tokenizer_bos(t));
        assert_int_equal(ei_tokenizer_decode(t, ids + skip, n - skip, &dec, &dl), 0);
        assert_int_equal(dl, len);
        assert_memory_equal(dec, text, len);
        free(dec);
        free(ids);
        ei_tokenizer_free(t);
    }
    free(text);
}

/* Pieces cut by the rule and encoded as a start plus continuations give the whole text's tokens:
 * what `ei eval --ppl` relies on to stream long files. */
static void cut_encodes_as_whole(const char *tok_path, const char *text_path) {
    ei_tokenizer *t = ei_tokenizer_load(tok_path, 0);
    assert_non_null(t);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(ei_file_read_all(text_path, &text, &len), 0);
    if (len > 120000) len = 120000;
    len = ei_text_normalize(text, len);
    int32_t *whole = NULL, *ids = NULL;
    size_t nw = 0, n = 0;
    assert_int_equal(ei_tokenizer_encode(t, text, len, 1, 0, &whole, &nw), 0);
    int32_t *got = malloc(sizeof *got * (nw + 16));
    size_t ng = 0, at = 0;
    for (int first = 1; at < len; first = 0) {
        size_t want = 1 + (at * 7919 + 3001) % 6000; /* pieces of varying length */
        size_t k = at + want < len ? ei_text_cut(text + at, want) : len - at;
        if (k == 0) k = len - at; /* no cut point in this window: take the rest */
        int rc = first ? ei_tokenizer_encode(t, text + at, k, 1, 0, &ids, &n)
                       : ei_tokenizer_encode_cont(t, text + at, k, 0, &ids, &n);
        assert_int_equal(rc, 0);
        assert_true(ng + n <= nw + 16);
        memcpy(got + ng, ids, n * sizeof *ids);
        ng += n;
        free(ids);
        at += k;
    }
    if (ng != nw) fail_msg("%s on %s: %zu tokens in pieces, %zu whole", tok_path, text_path, ng, nw);
    assert_memory_equal(got, whole, nw * sizeof *whole);
    free(got);
    free(whole);
    free(text);
    ei_tokenizer_free(t);
}

static void test_cut_encodes_as_whole(void **state) {
    (void)state;
    cut_encodes_as_whole(EI_FIXTURES "/models/stories260K/tok512.bin", EI_FIXTURES "/text/tinystories.txt");
    cut_encodes_as_whole(EI_FIXTURES "/models/stories260K/tok512.model", EI_FIXTURES "/text/sherlock_holmes.txt");
    cut_encodes_as_whole(EI_FIXTURES "/models/stories260K/tok512.bin", EI_FIXTURES "/text/mobydick_pg2701.txt");
    cut_encodes_as_whole(EI_SOURCE "/tests/tokenizer/tok512_hf/tokenizer.json", EI_FIXTURES "/text/tinyshakespeare.txt");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2_model_ggml),
        cmocka_unit_test(test_llama2_bin_ggml),
        cmocka_unit_test(test_llama2_spm_vectors),
        cmocka_unit_test(test_tok512_spm_vectors),
        cmocka_unit_test(test_tok512_bin_matches_model),
        cmocka_unit_test(test_tok512_hf_vectors),
        cmocka_unit_test(test_llama3_vectors),
        cmocka_unit_test(test_qwen3_vectors),
        cmocka_unit_test(test_special_ids),
        cmocka_unit_test(test_folders_and_identity),
        cmocka_unit_test(test_streaming_bos_and_bytes),
        cmocka_unit_test(test_nfc),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_cut_encodes_as_whole),
        cmocka_unit_test(test_long_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
