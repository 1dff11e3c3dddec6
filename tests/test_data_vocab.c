/* Tokenizer vocabulary export / rebuild (text/tokenizer_vocab.c): a tokenizer rebuilt from its plain
 * vocabulary encodes (SentencePiece / llama2.c kinds) and decodes (every kind) exactly like the one
 * loaded from the original file. Lives in the data module because loading tokenizer.json (and the
 * format detection of ei_tokenizer_load) is host-side. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "text/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX EI_FIXTURES
#define TOKDIR EI_TEST_DATA "/../tokenizer"

static ei_tokenizer *load(const char *path) {
    ei_tokenizer *t = ei_tokenizer_load(path, 0);
    if (!t) print_message("%s\n", ei_error_get());
    assert_non_null(t);
    return t;
}

/* A few lines of TinyStories plus the awkward cases: leading/repeated spaces, special tokens
 * written literally, non-ASCII, invalid UTF-8, empty. */
static int samples(char ***out) {
    static const char *extra[] = {"", " ", "  Once  upon a   time ", "<s>Hello</s> world", "\xE6\x95\xB0\xE5\xAD\xA6 I'm caf\xC3\xA9",
                                  "bad \xFF\xFE bytes\n\nnew\tline", "<|im_start|>user\nHi!<|im_end|>", "1234567 + 89 = ?"};
    char *buf;
    size_t len;
    assert_int_equal(ei_file_read_all(FIX "/text/tinystories.txt", &buf, &len), 0);
    int n = 0, cap = 64;
    char **v = malloc((size_t)cap * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) v[n++] = strdup(extra[i]);
    char *line = buf;
    while (n < 40 && line && *line) {
        char *nl = strchr(line, '\n');
        size_t l = nl ? (size_t)(nl - line) : strlen(line);
        if (l) {
            v[n] = malloc(l + 1);
            memcpy(v[n], line, l);
            v[n++][l] = '\0';
        }
        line = nl ? nl + 1 : NULL;
    }
    free(buf);
    *out = v;
    return n;
}

static void free_samples(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static void same_decode(const ei_tokenizer *a, const ei_tokenizer *b, const int32_t *ids, size_t n) {
    char *ta, *tb;
    size_t la, lb;
    assert_int_equal(ei_tokenizer_decode(a, ids, n, &ta, &la), 0);
    assert_int_equal(ei_tokenizer_decode(b, ids, n, &tb, &lb), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(ta, tb, la + 1);
    free(ta);
    free(tb);
    int prev = -1;
    for (size_t i = 0; i < n; i++) {
        char pa[512], pb[512];
        int ka = ei_tokenizer_decode_piece(a, prev, ids[i], pa, sizeof pa);
        int kb = ei_tokenizer_decode_piece(b, prev, ids[i], pb, sizeof pb);
        assert_int_equal(ka, kb);
        assert_memory_equal(pa, pb, (size_t)ka + 1);
        prev = ids[i];
    }
}

static void same_vocab(const ei_tok_vocab *x, const ei_tok_vocab *y) {
    assert_int_equal(x->kind, y->kind);
    assert_int_equal(x->flags, y->flags);
    assert_int_equal(x->bos, y->bos);
    assert_int_equal(x->eos, y->eos);
    assert_int_equal(x->unk, y->unk);
    assert_int_equal(x->n_pieces, y->n_pieces);
    assert_string_equal(x->identity, y->identity);
    for (int32_t i = 0; i < x->n_pieces; i++) {
        const ei_tok_vocab_piece *p = &x->pieces[i], *q = &y->pieces[i];
        assert_int_equal(p->len, q->len);
        if (p->len) assert_memory_equal(p->bytes, q->bytes, p->len);
        assert_true(p->score == q->score);
        assert_int_equal(p->type, q->type);
        assert_int_equal(p->literal, q->literal);
    }
    assert_int_equal(x->n_merges, y->n_merges);
    if (x->n_merges) assert_memory_equal(x->merges, y->merges, (size_t)x->n_merges * sizeof *x->merges);
}

/* export -> rebuild -> export again gives the same description; returns the rebuilt tokenizer. */
static ei_tokenizer *rebuild(const ei_tokenizer *t) {
    ei_tok_vocab v, w;
    assert_int_equal(ei_tokenizer_export(t, &v), 0);
    assert_int_equal(ei_tok_vocab_check(&v, "export"), 0);
    ei_tokenizer *r = ei_tokenizer_from_vocab(&v);
    if (!r) print_message("%s\n", ei_error_get());
    assert_non_null(r);
    ei_tok_vocab_free(&v); /* the rebuilt tokenizer owns copies */
    assert_int_equal(ei_tokenizer_export(t, &v), 0);
    assert_int_equal(ei_tokenizer_export(r, &w), 0);
    same_vocab(&v, &w);
    ei_tok_vocab_free(&v);
    ei_tok_vocab_free(&w);
    assert_int_equal(ei_tokenizer_vocab_size(r), ei_tokenizer_vocab_size(t));
    assert_int_equal(ei_tokenizer_bos(r), ei_tokenizer_bos(t));
    assert_int_equal(ei_tokenizer_eos(r), ei_tokenizer_eos(t));
    assert_string_equal(ei_tokenizer_identity(r), ei_tokenizer_identity(t));
    return r;
}

static void check_sentencepiece(const char *path) {
    ei_tokenizer *t = load(path), *r = rebuild(t);
    char **s;
    int n = samples(&s);
    for (int i = 0; i < n; i++)
        for (int mode = 0; mode < 4; mode++) {
            int32_t *a, *b;
            size_t na, nb;
            size_t len = strlen(s[i]);
            assert_int_equal(ei_tokenizer_encode(t, s[i], len, mode & 1, mode >> 1, &a, &na), 0);
            assert_int_equal(ei_tokenizer_encode(r, s[i], len, mode & 1, mode >> 1, &b, &nb), 0);
            if (na != nb || (na && memcmp(a, b, na * sizeof *a) != 0)) {
                print_message("%s: sample %d mode %d: ids differ\n", path, i, mode);
                fail();
            }
            same_decode(t, r, a, na);
            free(a);
            free(b);
        }
    int32_t all[600];
    int nv = ei_tokenizer_vocab_size(t) < 600 ? ei_tokenizer_vocab_size(t) : 600;
    for (int i = 0; i < nv; i++) all[i] = (int32_t)((i * 7919) % ei_tokenizer_vocab_size(t));
    same_decode(t, r, all, (size_t)nv);
    for (int i = 0; i < ei_tokenizer_vocab_size(t); i += 97) {
        assert_string_equal(ei_tokenizer_piece(r, i), ei_tokenizer_piece(t, i));
        assert_int_equal(ei_tokenizer_piece_id(r, ei_tokenizer_piece(t, i)), ei_tokenizer_piece_id(t, ei_tokenizer_piece(t, i)));
    }
    free_samples(s, n);
    ei_tokenizer_free(t);
    ei_tokenizer_free(r);
}

static void test_tok512_bin(void **st) {
    (void)st;
    check_sentencepiece(FIX "/models/stories260K/tok512.bin");
}
static void test_tok512_model(void **st) {
    (void)st;
    check_sentencepiece(FIX "/models/stories260K/tok512.model");
}
static void test_llama2_model(void **st) {
    (void)st;
    check_sentencepiece(FIX "/tokenizers/llama2/tokenizer.model");
}

/* tokenizer.json kinds: identical decoding of what the original encodes; encoding text is refused. */
static void check_hf(const char *path, int bytelevel) {
    ei_tokenizer *t = load(path), *r = rebuild(t);
    ei_tok_vocab v;
    assert_int_equal(ei_tokenizer_export(t, &v), 0);
    assert_int_equal((v.flags & EI_TOKV_BYTE_LEVEL) != 0, bytelevel);
    assert_int_equal(v.kind, EI_TOKV_HF);
    assert_true(v.n_merges > 0);
    for (int32_t i = 1; i < v.n_merges; i++) assert_true(v.merges[i - 1].rank < v.merges[i].rank);
    ei_tok_vocab_free(&v);
    char **s;
    int n = samples(&s);
    for (int i = 0; i < n; i++) {
        int32_t *a;
        size_t na;
        assert_int_equal(ei_tokenizer_encode(t, s[i], strlen(s[i]), 1, 1, &a, &na), 0);
        same_decode(t, r, a, na);
        free(a);
    }
    int32_t *b = NULL;
    size_t nb;
    ei_error_clear();
    assert_int_equal(ei_tokenizer_encode(r, "Hello world", 11, 0, 1, &b, &nb), -1);
    assert_non_null(strstr(ei_error_get(), "only decodes"));
    assert_null(b);
    free_samples(s, n);
    ei_tokenizer_free(t);
    ei_tokenizer_free(r);
}

static void test_hf_spm_style(void **st) {
    (void)st;
    check_hf(TOKDIR "/tok512_hf/tokenizer.json", 0);
    check_hf(TOKDIR "/tok512_hf_metaspace/tokenizer.json", 0);
}
static void test_hf_bytelevel(void **st) {
    (void)st;
    check_hf(FIX "/tokenizers/qwen3/tokenizer.json", 1);
    check_hf(FIX "/tokenizers/llama3/tokenizer.json", 1);
}

/* Vocabularies read from a file are untrusted: every field is checked. */
static void test_check_rejects(void **st) {
    (void)st;
    ei_tokenizer *t = load(FIX "/models/stories260K/tok512.model");
    ei_tok_vocab v;
    assert_int_equal(ei_tokenizer_export(t, &v), 0);
    ei_tok_vocab_piece *p = (ei_tok_vocab_piece *)v.pieces;
    int byte_id = -1;
    for (int i = 0; i < v.n_pieces && byte_id < 0; i++)
        if (p[i].type == EI_TOKV_BYTE) byte_id = i;
    assert_true(byte_id > 0);
    ei_tok_vocab w;
#define REJECT(stmt, msg)                                                                                              \
    do {                                                                                                               \
        w = v;                                                                                                         \
        ei_tok_vocab_piece saved = p[7], savedb = p[byte_id];                                                          \
        stmt;                                                                                                          \
        ei_error_clear();                                                                                              \
        assert_int_equal(ei_tok_vocab_check(&w, "v.eig"), -1);                                                         \
        if (!strstr(ei_error_get(), msg)) {                                                                            \
            print_message("message [%s], wanted [%s]\n", ei_error_get(), msg);                                         \
            fail();                                                                                                    \
        }                                                                                                              \
        assert_null(ei_tokenizer_from_vocab(&w));                                                                      \
        p[7] = saved;                                                                                                  \
        p[byte_id] = savedb;                                                                                           \
    } while (0)
    REJECT(w.kind = 3, "v.eig: unknown kind 3");
    REJECT(w.flags = 0x100, "unknown flags 0x100");
    REJECT(w.flags = EI_TOKV_BYTE_LEVEL, "byte-level flag on a SentencePiece");
    REJECT(w.n_pieces = 0, "0 pieces");
    REJECT(w.bos = 512, "bos/eos/unk 512/2/0 outside the 512 pieces");
    REJECT(w.unk = -2, "bos/eos/unk");
    REJECT(p[7].type = 9, "v.eig: piece 7: unknown type 9");
    REJECT(p[7].len = 0x1000000, "piece 7: length 16777216 out of range");
    REJECT(p[7].bytes = NULL, "piece 7: length");
    REJECT(p[7].literal = EI_TOKV_LIT_SPECIAL, "piece 7: bad literal flags 0x2");
    REJECT(p[byte_id].bytes = "<0xZZ>", "byte piece is not of the form <0xXX>");
    REJECT(p[byte_id].len = 5, "byte piece is not of the form");
    ei_tok_vocab_merge m = {1, 2, 3, 0};
    REJECT((w.n_merges = 1, w.merges = &m), "merges on a SentencePiece vocabulary");
    REJECT((w.kind = EI_TOKV_HF, w.n_merges = 1, w.merges = &m, m.merged = 600), "merge 0 (1 + 2 -> 600, rank 0)");
    assert_int_equal(ei_tok_vocab_check(&v, "v.eig"), 0);
    ei_tok_vocab_free(&v);
    ei_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tok512_bin),   cmocka_unit_test(test_tok512_model), cmocka_unit_test(test_llama2_model),
        cmocka_unit_test(test_hf_spm_style), cmocka_unit_test(test_hf_bytelevel), cmocka_unit_test(test_check_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
