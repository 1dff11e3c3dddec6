/* Rules of `ei prepare` that hold across tokenizers: the prompt/answer boundary of instruction
 * samples (tokens(prompt) + tokens(answer) = tokens(prompt + answer) for every shipped template and
 * tokenizer kind), continuation encoding, the vocabulary hash that identifies a tokenizer and the
 * dataset check built on it, --piece-docs splits, selectors built from other fields' values, and
 * special-token markers a tokenizer does not know. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "data/dataset.h"
#include "data/prepare.h"
#include "text/paragraphs.h"
#include "text/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[512];

static const char *tmp(const char *name) {
    static char buf[16][800];
    static int k;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s/test_prepare_rules_XXXXXX", EI_BINARY_DIR);
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return 0;
}

/* Every tokenizer kind the project reads: llama2.c tokenizer.bin, SentencePiece tokenizer.model,
 * and byte-level tokenizer.json (Llama 3, Qwen 3). */
static const char *const TOKENIZERS[] = {
    EI_FIXTURES "/models/stories260K/tok512.bin",   EI_FIXTURES "/models/stories260K/tok512.model",
    EI_FIXTURES "/tokenizers/llama2/tokenizer.bin", EI_FIXTURES "/tokenizers/llama2/tokenizer.model",
    EI_FIXTURES "/tokenizers/llama3/tokenizer.json", EI_FIXTURES "/tokenizers/qwen3/tokenizer.json",
};
#define N_TOKENIZERS (sizeof TOKENIZERS / sizeof TOKENIZERS[0])

static ei_tokenizer *load_tok(const char *path) {
    ei_tokenizer *t = ei_tokenizer_load(path, 0);
    if (!t) fail_msg("%s: %s", path, ei_error_get());
    return t;
}

static void encode(const ei_tokenizer *t, const char *s, int bos, int special, int32_t **ids, size_t *n) {
    if (ei_tokenizer_encode(t, s, strlen(s), bos, special, ids, n) != 0) fail_msg("encode: %s", ei_error_get());
}

/* Renders a template by hand, as docs/datasets.md describes it. */
static char *render(const char *tpl, const char *c, const char *i, const char *a) {
    size_t cap = strlen(tpl) + strlen(c) + strlen(i) + strlen(a) + 1, n = 0;
    char *out = malloc(cap);
    for (const char *p = tpl; *p;) {
        const char *v = !strncmp(p, "{context}", 9) ? c : !strncmp(p, "{instruction}", 13) ? i
                        : !strncmp(p, "{answer}", 8)                                       ? a
                                                                                           : NULL;
        if (v) {
            memcpy(out + n, v, strlen(v));
            n += strlen(v);
            p = strchr(p, '}') + 1;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    return out;
}

static void test_boundary_matches_whole_text(void **state) {
    (void)state;
    const char *names[] = {"plain", "llama2-chat", "chatml", NULL};
    const char *texts[] = {"{context}\n{instruction}\n{answer}",
                           "[INST] {context}\n\n{instruction} [/INST] {answer}",
                           "<|im_start|>user\n{context}\n\n{instruction}<|im_end|>\n<|im_start|>assistant\n{answer}"
                           "<|im_end|>",
                           /* the QuALITY example of docs/datasets.md: the prompt ends in "Answer: " */
                           "{context}\n\nQuestion: {instruction}\nAnswer: {answer}"};
    const char *cases[][3] = {
        {"The capital of France is Paris.", "What is the capital of France?", "Paris"},
        {"Tom had 40 apples and got 2 more.", "How many apples?", "42"},
        {"Korvin escaped.", "Why did they leave the door unlocked?", "(B) Their subconscious knew."},
        {"Lily saw a cat.", "Did she see a cat?", "yes, she did"},
    };
    int checked = 0;
    for (size_t k = 0; k < N_TOKENIZERS; k++) {
        ei_tokenizer *tok = load_tok(TOKENIZERS[k]);
        int bos = ei_tokenizer_bos(tok), eos = ei_tokenizer_eos(tok);
        for (int ti = 0; ti < 4; ti++) {
            ei_template *t = names[ti] ? ei_template_builtin(names[ti]) : ei_template_parse(texts[ti], "test");
            assert_non_null(t);
            for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
                const char *ctx = cases[c][0], *ins = cases[c][1], *ans = cases[c][2];
                ei_tokvec out = {0}, prompt = {0}, ref = {0};
                assert_int_equal(ei_prepare_instruct(tok, t, ctx, ins, ans, 0, 0, &out, NULL), EI_SAMPLE_OK);
                assert_int_equal(ei_prepare_instruct(tok, t, ctx, ins, ans, 0, 1, &prompt, &ref), EI_SAMPLE_OK);
                /* tokens(prompt) + tokens(answer) = tokens(prompt + answer), as one text */
                char *whole = render(texts[ti], ctx, ins, ans);
                int32_t *w;
                size_t nw;
                encode(tok, whole, 1, t->parse_special, &w, &nw);
                size_t n_body = out.n - (eos >= 0);
                if (n_body != nw || memcmp(out.ids, w, nw * sizeof *w) != 0) {
                    for (size_t i = 0; i < out.n || i < nw; i++)
                        print_message("%zu: %d %s | %d %s\n", i, i < out.n ? out.ids[i] : -1,
                                      i < out.n ? ei_tokenizer_piece(tok, out.ids[i]) : "", i < nw ? w[i] : -1,
                                      i < nw ? ei_tokenizer_piece(tok, w[i]) : "");
                    fail_msg("%s, template %d, case %zu: the sample is not the whole text's encoding", TOKENIZERS[k],
                             ti, c);
                }
                if (eos >= 0) assert_int_equal(out.ids[out.n - 1], eos);
                /* the evaluation prompt is the unmasked prefix, and the answer's first token is the
                 * first masked one; the reference is the start of the masked run */
                assert_true(prompt.n >= 1 && prompt.n < out.n);
                assert_memory_equal(prompt.ids, out.ids, prompt.n * sizeof(int32_t));
                for (size_t i = 0; i < out.n; i++) assert_int_equal(out.mask[i], i >= prompt.n);
                if (bos >= 0) assert_int_equal(out.ids[0], bos);
                assert_true(ref.n >= 1 && prompt.n + ref.n <= n_body);
                /* (text after {answer} that the tokenizer does not know as special, such as
                 * chatml's <|im_end|> for SentencePiece, may merge with the answer's last piece) */
                if (!*t->after_answer || ei_template_unknown_specials(t, tok, NULL, 0) == 0)
                    assert_memory_equal(ref.ids, out.ids + prompt.n, ref.n * sizeof(int32_t));
                /* no lone space piece at the end of the prompt */
                const char *last = ei_tokenizer_piece(tok, prompt.ids[prompt.n - 1]);
                assert_false(strcmp(last, "\xE2\x96\x81") == 0 || strcmp(last, "\xC4\xA0") == 0 ||
                             strcmp(last, " ") == 0);
                checked++;
                free(whole);
                free(w);
                ei_tokvec_free(&out);
                ei_tokvec_free(&prompt);
                ei_tokvec_free(&ref);
            }
            ei_template_free(t);
        }
        ei_tokenizer_free(tok);
    }
    assert_int_equal(checked, (int)N_TOKENIZERS * 4 * 4);
}

static void test_encode_cont(void **state) {
    (void)state;
    for (size_t k = 0; k < N_TOKENIZERS; k++) {
        ei_tokenizer *tok = load_tok(TOKENIZERS[k]);
        int32_t *a, *b, *w;
        size_t na, nb, nw;
        encode(tok, "Hello", 1, 1, &a, &na);
        assert_int_equal(ei_tokenizer_encode_cont(tok, " world, again", 13, 1, &b, &nb), 0);
        encode(tok, "Hello world, again", 1, 1, &w, &nw);
        assert_int_equal(na + nb, nw);
        assert_memory_equal(a, w, na * sizeof *a);
        assert_memory_equal(b, w + na, nb * sizeof *b);
        free(a);
        free(b);
        free(w);
        ei_tokenizer_free(tok);
    }
}

static void test_vocab_hash(void **state) {
    (void)state;
    ei_tokenizer *t[N_TOKENIZERS];
    for (size_t k = 0; k < N_TOKENIZERS; k++) t[k] = load_tok(TOKENIZERS[k]);
    ei_tokenizer *hf = load_tok(EI_FIXTURES "/models/stories260K-hf/tokenizer.model");
    /* the same vocabulary in another format or folder */
    assert_true(ei_tokenizer_vocab_hash(t[0]) == ei_tokenizer_vocab_hash(t[1]));
    assert_true(ei_tokenizer_vocab_hash(t[1]) == ei_tokenizer_vocab_hash(hf));
    assert_true(ei_tokenizer_vocab_hash(t[2]) == ei_tokenizer_vocab_hash(t[3]));
    assert_string_not_equal(ei_tokenizer_identity(t[0]), ei_tokenizer_identity(t[1]));
    /* different vocabularies */
    for (size_t i = 0; i < N_TOKENIZERS; i++)
        for (size_t j = i + 1; j < N_TOKENIZERS; j++)
            if (i / 2 != j / 2) assert_true(ei_tokenizer_vocab_hash(t[i]) != ei_tokenizer_vocab_hash(t[j]));
    for (size_t k = 0; k < N_TOKENIZERS; k++) ei_tokenizer_free(t[k]);
    ei_tokenizer_free(hf);
}

/* tok512.bin with the bytes of two pieces of equal length exchanged: another tokenizer file and
 * hash, the same vocabulary size. */
static const char *swapped_tokenizer(void) {
    const char *out = tmp("swapped.bin");
    char *b;
    size_t n;
    assert_int_equal(ei_file_read_all(EI_FIXTURES "/models/stories260K/tok512.bin", &b, &n), 0);
    size_t pos = 4, at[512];
    int32_t len[512];
    for (int id = 0; id < 512; id++) {
        memcpy(&len[id], b + pos + 4, 4);
        at[id] = pos + 8;
        pos += 8 + (size_t)len[id];
    }
    int x = -1, y = -1;
    for (int i = 300; i < 512 && y < 0; i++)
        for (int j = i + 1; j < 512; j++)
            if (len[i] == len[j] && memcmp(b + at[i], b + at[j], (size_t)len[i]) != 0) {
                x = i, y = j;
                break;
            }
    assert_true(y > 0);
    char tmpb[64];
    memcpy(tmpb, b + at[x], (size_t)len[x]);
    memcpy(b + at[x], b + at[y], (size_t)len[x]);
    memcpy(b + at[y], tmpb, (size_t)len[x]);
    FILE *fp = fopen(out, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, n, fp), n);
    fclose(fp);
    free(b);
    return out;
}

static void write_text(const char *p, const char *s) {
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    fputs(s, fp);
    fclose(fp);
}

static void test_dataset_tokenizer_check(void **state) {
    (void)state;
    const char *txt = tmp("small.txt");
    write_text(txt, "Once upon a time there was a little cat.\n\nThe cat liked milk.\n");
    const char *in[1] = {txt};
    ei_prepare_opts o = {.inputs = in, .n_inputs = 1, .doc_mode = "paragraphs", .quiet = 1, .seed = 1};
    o.tokenizer_path = EI_FIXTURES "/models/stories260K/tok512.bin";
    o.output = tmp("small.h5");
    assert_int_equal(ei_prepare_run(&o), 0);
    ei_dataset *d = ei_dataset_open(o.output);
    assert_non_null(d);
    assert_non_null(ei_dataset_meta_str(d, "tokenizer_vocab_hash"));
    ei_tokenizer *same = load_tok(EI_FIXTURES "/models/stories260K/tok512.model");
    ei_tokenizer *other = load_tok(EI_FIXTURES "/tokenizers/llama2/tokenizer.model");
    const char *sw = swapped_tokenizer();
    ei_tokenizer *swapped = ei_tokenizer_load(sw, 512);
    assert_non_null(swapped);
    assert_int_equal(ei_tokenizer_vocab_size(swapped), 512);
    assert_int_equal(ei_dataset_check_tokenizer(d, same, "tok512.model"), 0);
    assert_int_equal(ei_dataset_check_tokenizer(d, other, "llama2"), -1);
    assert_non_null(strstr(ei_error_get(), "another tokenizer"));
    assert_int_equal(ei_dataset_check_tokenizer(d, swapped, sw), -1);
    assert_non_null(strstr(ei_error_get(), "tok512.bin")); /* the dataset's */
    assert_non_null(strstr(ei_error_get(), "swapped.bin")); /* the model's */
    ei_dataset_close(d);
    /* Files from before the vocabulary hash: only the same tokenizer file is recognised; nothing
     * recorded, nothing checked. */
    for (int v = 0; v < 3; v++) {
        ei_dataset_writer *w = ei_dataset_writer_open(tmp("legacy.h5"));
        int32_t ids[3] = {1, 5, 2};
        uint8_t mask[3] = {0, 1, 1};
        assert_non_null(w);
        assert_int_equal(ei_dataset_writer_add(w, ids, mask, 3, 0), 0);
        const char *id = ei_tokenizer_identity(v ? same : swapped);
        if (v < 2) assert_int_equal(ei_dataset_writer_attr_str(w, "tokenizer", id), 0);
        assert_int_equal(ei_dataset_writer_close(w), 0);
        d = ei_dataset_open(tmp("legacy.h5"));
        assert_non_null(d);
        assert_int_equal(ei_dataset_check_tokenizer(d, same, "tok512.model"), v == 0 ? -1 : v == 1 ? 0 : 1);
        ei_dataset_close(d);
    }
    ei_tokenizer_free(same);
    ei_tokenizer_free(other);
    ei_tokenizer_free(swapped);
}

static void test_piece_docs(void **state) {
    (void)state;
    const char *in[1] = {EI_FIXTURES "/text/tinystories.txt"};
    ei_prepare_opts o = {.inputs = in, .n_inputs = 1, .quiet = 1, .seed = 7, .val_fraction = 0.1};
    o.tokenizer_path = EI_FIXTURES "/models/stories260K/tok512.bin";
    o.output = tmp("book.h5");
    o.max_tokens = 4096;
    /* One document cannot be split by document. */
    assert_int_equal(ei_prepare_run(&o), -1);
    assert_non_null(strstr(ei_error_get(), "--piece-docs"));
    o.piece_docs = 1;
    if (ei_prepare_run(&o) != 0) fail_msg("%s", ei_error_get());
    ei_dataset *tr = ei_dataset_open(tmp("book.train.h5")), *va = ei_dataset_open(tmp("book.val.h5"));
    assert_non_null(tr);
    assert_non_null(va);
    int64_t nt = ei_dataset_n_samples(tr), nv = ei_dataset_n_samples(va), n = nt + nv;
    assert_true(n >= 20);
    assert_int_equal(nv, (int64_t)(0.1 * (double)n + 0.5));
    /* every piece its own document; the validation pieces one contiguous run */
    int64_t *which = calloc((size_t)n, sizeof *which), *sample = calloc((size_t)n, sizeof *sample);
    for (int64_t i = 0; i < nt; i++) which[ei_dataset_doc_id(tr, i)] = 1, sample[ei_dataset_doc_id(tr, i)] = i;
    for (int64_t i = 0; i < nv; i++) which[ei_dataset_doc_id(va, i)] = 2, sample[ei_dataset_doc_id(va, i)] = i;
    int runs = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(which[i] == 1 || which[i] == 2);
        runs += which[i] == 2 && (i == 0 || which[i - 1] != 2);
    }
    assert_int_equal(runs, 1);
    /* the pieces, in id order, are the whole text: nothing lost, nothing seen twice */
    char *text;
    size_t tl;
    assert_int_equal(ei_file_read_all(in[0], &text, &tl), 0);
    tl = ei_text_normalize(text, tl);
    ei_tokenizer *tok = load_tok(o.tokenizer_path);
    int32_t *ids;
    size_t ni;
    encode(tok, text, 0, 0, &ids, &ni);
    size_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t *t;
        uint8_t *m;
        int64_t len = ei_dataset_read_alloc(which[i] == 1 ? tr : va, sample[i], &t, &m);
        assert_true(len >= 2 && len <= 4096);
        assert_int_equal(t[0], ei_tokenizer_bos(tok));
        int64_t body = len - 1 - (i == n - 1);
        assert_memory_equal(t + 1, ids + at, (size_t)body * sizeof *t);
        at += (size_t)body;
        free(t);
        free(m);
    }
    assert_int_equal(at, ni);
    int64_t v;
    assert_int_equal(ei_dataset_meta_i64(tr, "n_truncated", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(ei_dataset_meta_i64(tr, "n_split", &v), 0);
    assert_int_equal(v, nt);
    ei_dataset_close(tr);
    ei_dataset_close(va);
    /* options it does not go with */
    o.max_tokens = 0;
    assert_int_equal(ei_prepare_run(&o), -1);
    assert_non_null(strstr(ei_error_get(), "--max-tokens"));
    o.max_tokens = 4096;
    o.lm_overflow = "cut";
    assert_int_equal(ei_prepare_run(&o), -1);
    assert_non_null(strstr(ei_error_get(), "split"));
    free(which);
    free(sample);
    free(ids);
    free(text);
    ei_tokenizer_free(tok);
}

static char *eval1(const char *sel, const cJSON *j) {
    ei_selector *s = ei_selector_parse(sel, "answer");
    if (!s) fail_msg("%s: %s", sel, ei_error_get());
    char **v;
    size_t n;
    char *out = NULL;
    if (ei_selector_eval(s, j, &v, &n) == 0) {
        assert_int_equal(n, 1);
        out = strdup(v[0]);
        ei_strings_free(v, n);
    }
    ei_selector_free(s);
    return out;
}

static void test_selector_field_values(void **state) {
    (void)state;
    /* QuALITY's flat layout */
    cJSON *j = cJSON_Parse("{\"question1\": \"Why?\", \"question1option1\": \"because\", \"question1option2\": "
                           "\"no reason\", \"question1_gold_label\": 2, \"opts\": [\"x\", \"y\"], \"g\": 1, "
                           "\"bad\": 7, \"obj\": {\"k\": 1}}");
    assert_non_null(j);
    char *v = eval1("question1option{question1_gold_label}", j);
    assert_string_equal(v, "no reason");
    free(v);
    v = eval1("Q: {question1}\nA: {question1option{question1_gold_label}}", j);
    assert_string_equal(v, "Q: Why?\nA: no reason");
    free(v);
    v = eval1("opts[{g}]", j);
    assert_string_equal(v, "y");
    free(v);
    /* a value that names no field, a missing field to build from, a value that is not text */
    assert_null(eval1("question1option{bad}", j));
    assert_non_null(strstr(ei_error_get(), "missing field 'question1option7'"));
    assert_non_null(strstr(ei_error_get(), "question1option{bad}"));
    assert_null(eval1("question1option{nope}", j));
    assert_non_null(strstr(ei_error_get(), "'nope'"));
    assert_null(eval1("question1option{obj}", j));
    assert_non_null(strstr(ei_error_get(), "object"));
    /* malformed at parse time: a format without any field, unbalanced braces, bad fixed parts */
    assert_null(ei_selector_parse("{{literal}}", "answer"));
    assert_non_null(strstr(ei_error_get(), "names no field"));
    assert_null(ei_selector_parse("option{gold", "answer"));
    assert_non_null(strstr(ei_error_get(), "unclosed"));
    assert_null(ei_selector_parse("a..{b}", "answer"));
    assert_null(ei_selector_parse("a{}", "answer"));
    cJSON_Delete(j);
}

static void test_template_specials(void **state) {
    (void)state;
    ei_tokenizer *sp = load_tok(EI_FIXTURES "/models/stories260K/tok512.bin");
    ei_tokenizer *qw = load_tok(EI_FIXTURES "/tokenizers/qwen3/tokenizer.json");
    ei_template *chatml = ei_template_builtin("chatml"), *plain = ei_template_builtin("plain");
    char m[64];
    assert_int_equal(ei_template_unknown_specials(chatml, sp, m, sizeof m), 4); /* each occurrence */
    assert_string_equal(m, "<|im_start|>");
    assert_int_equal(ei_template_unknown_specials(chatml, qw, m, sizeof m), 0);
    assert_int_equal(ei_template_unknown_specials(plain, sp, m, sizeof m), 0);
    ei_template_free(chatml);
    ei_template_free(plain);
    ei_tokenizer_free(sp);
    ei_tokenizer_free(qw);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boundary_matches_whole_text),
        cmocka_unit_test(test_encode_cont),
        cmocka_unit_test(test_vocab_hash),
        cmocka_unit_test(test_dataset_tokenizer_check),
        cmocka_unit_test(test_piece_docs),
        cmocka_unit_test(test_selector_field_values),
        cmocka_unit_test(test_template_specials),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
