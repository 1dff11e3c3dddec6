/* `ei prepare` end to end on the fixtures: every text and long-document file becomes a dataset that
 * is read back and compared, token for token and mask for mask, with a tokenisation done here from
 * the raw files (own paragraph splitting, own JSON walking and prompt rendering); the documents of
 * --doc-mode paragraphs are exactly text/paragraphs.h's; truncation, the split, evaluation sets,
 * passkey samples and bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "data/dataset.h"
#include "text/evalset.h"
#include "text/paragraphs.h"
#include "text/passkey.h"
#include "data/prepare.h"
#include "text/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[512];
static ei_tokenizer *tok;

static const char *tmp(const char *name) {
    static char buf[32][800];
    static int k;
    k = (k + 1) % 32;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s/test_prepare_XXXXXX", EI_BINARY_DIR);
    assert_non_null(mkdtemp(dir));
    tok = ei_tokenizer_load(EI_FIXTURES "/models/stories260K/tok512.bin", 512);
    if (!tok) fail_msg("tokenizer: %s", ei_error_get());
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ei_tokenizer_free(tok);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return 0;
}

static ei_prepare_opts base_opts(const char *tokenizer_path) {
    ei_prepare_opts o = {0};
    o.tokenizer_path = tokenizer_path;
    o.seed = 1234;
    o.quiet = 1;
    return o;
}

/* Expected sample: [BOS] ids(a) (mask ma) ids(b) (mask mb) [EOS mask 1]. */
typedef struct {
    int32_t *t;
    uint8_t *m;
    size_t n, cap;
} seq;

static void seq_push(seq *s, const int32_t *ids, size_t n, uint8_t m) {
    if (s->n + n > s->cap) {
        s->cap = (s->n + n) * 2 + 16;
        s->t = realloc(s->t, s->cap * sizeof *s->t);
        s->m = realloc(s->m, s->cap);
    }
    memcpy(s->t + s->n, ids, n * sizeof *ids);
    memset(s->m + s->n, m, n);
    s->n += n;
}

static void seq_enc(const ei_tokenizer *tk, seq *s, const char *text, uint8_t m, int special) {
    int32_t *ids;
    size_t n;
    assert_int_equal(ei_tokenizer_encode(tk, text, strlen(text), 0, special, &ids, &n), 0);
    seq_push(s, ids, n, m);
    free(ids);
}

/* The continuation of an earlier text (how prepare encodes an answer after its prompt). */
static void seq_enc_cont(const ei_tokenizer *tk, seq *s, const char *text, uint8_t m, int special) {
    int32_t *ids;
    size_t n;
    assert_int_equal(ei_tokenizer_encode_cont(tk, text, strlen(text), special, &ids, &n), 0);
    seq_push(s, ids, n, m);
    free(ids);
}

static void seq_id(seq *s, int id, uint8_t m) {
    int32_t x = id;
    if (id >= 0) seq_push(s, &x, 1, m);
}

static void assert_sample(ei_dataset *d, int64_t i, const seq *e) {
    int32_t *t;
    uint8_t *m;
    int64_t n = ei_dataset_read_alloc(d, i, &t, &m);
    if (n != (int64_t)e->n) fail_msg("sample %lld: %lld tokens, expected %zu", (long long)i, (long long)n, e->n);
    for (int64_t k = 0; k < n; k++)
        if (t[k] != e->t[k] || m[k] != e->m[k])
            fail_msg("sample %lld token %lld: got %d/%u, expected %d/%u", (long long)i, (long long)k, t[k], m[k],
                     e->t[k], e->m[k]);
    free(t);
    free(m);
}

/* Reads a file, drops a BOM and CRs before LF: the documented normalisation. */
static char *load(const char *path) {
    char *b;
    size_t n;
    assert_int_equal(ei_file_read_all(path, &b, &n), 0);
    size_t r = 0, w = 0;
    if (n >= 3 && !memcmp(b, "\xEF\xBB\xBF", 3)) r = 3;
    for (; r < n; r++)
        if (!(b[r] == '\r' && r + 1 < n && b[r + 1] == '\n')) b[w++] = b[r];
    b[w] = 0;
    return b;
}

static int is_blank(const char *l) {
    for (; *l; l++)
        if (!strchr(" \t\r\f\v", *l)) return 0;
    return 1;
}

/* Paragraphs: maximal runs of non-blank lines joined with "\n", trailing whitespace dropped. */
static char **paragraphs(char *text, int *n_out) {
    char **out = NULL;
    int n = 0;
    char *cur = NULL;
    size_t cl = 0;
    char *line = text;
    for (;;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        int blank = is_blank(line);
        if (!blank) {
            size_t ll = strlen(line);
            cur = realloc(cur, cl + ll + 2);
            if (cl) cur[cl++] = '\n';
            memcpy(cur + cl, line, ll + 1);
            cl += ll;
        }
        if ((blank || !nl) && cur) {
            while (cl && strchr(" \t\r\f\v\n", cur[cl - 1])) cur[--cl] = 0;
            out = realloc(out, sizeof *out * (size_t)(n + 1));
            out[n++] = cur;
            cur = NULL;
            cl = 0;
        }
        if (!nl) break;
        line = nl + 1;
    }
    *n_out = n;
    return out;
}

static void check_text_file(const char *name, int64_t max_docs) {
    char path[600];
    snprintf(path, sizeof path, "%s/text/%s", EI_FIXTURES, name);
    const char *out = tmp("text.h5");
    ei_prepare_opts o = base_opts(EI_FIXTURES "/models/stories260K/tok512.bin");
    const char *in[1] = {path};
    o.inputs = in;
    o.n_inputs = 1;
    o.doc_mode = "paragraphs";
    o.max_docs = max_docs;
    o.output = out;
    if (ei_prepare_run(&o) != 0) fail_msg("%s: %s", name, ei_error_get());
    char *text = load(path);
    int np;
    char **pars = paragraphs(text, &np);
    ei_dataset *d = ei_dataset_open(out);
    assert_non_null(d);
    int64_t want = max_docs && max_docs < np ? max_docs : np;
    if (ei_dataset_n_samples(d) != want)
        fail_msg("%s: %lld samples, expected %lld paragraphs", name, (long long)ei_dataset_n_samples(d), (long long)want);
    assert_string_equal(ei_dataset_meta_str(d, "kind"), "lm");
    assert_string_equal(ei_dataset_meta_str(d, "tokenizer"), ei_tokenizer_identity(tok));
    for (int64_t i = 0; i < want; i++) {
        seq e = {0};
        seq_id(&e, ei_tokenizer_bos(tok), 0);
        seq_enc(tok, &e, pars[i], 1, 0);
        seq_id(&e, ei_tokenizer_eos(tok), 1);
        assert_sample(d, i, &e);
        assert_int_equal(ei_dataset_doc_id(d, i), i);
        free(e.t);
        free(e.m);
    }
    ei_dataset_close(d);
    for (int i = 0; i < np; i++) free(pars[i]);
    free(pars);
    free(text);
}

static void test_text_fixtures(void **state) {
    (void)state;
    check_text_file("tinystories.txt", 0);
    check_text_file("sherlock_holmes.txt", 60);
    check_text_file("mobydick_pg2701.txt", 60);
    check_text_file("tinyshakespeare.txt", 80);
}

static void write_file(const char *p, const char *s, size_t n);

/* Runs prepare --doc-mode paragraphs on path and checks that its samples are the paragraphs
 * ei_text_paragraphs finds in the normalised file, in order, each [BOS] text [EOS]. Returns the
 * number of documents. */
static int64_t check_splitter_docs(const char *path, int64_t max_docs) {
    const char *out = tmp("par.h5");
    ei_prepare_opts o = base_opts(EI_FIXTURES "/models/stories260K/tok512.bin");
    const char *in[1] = {path};
    o.inputs = in;
    o.n_inputs = 1;
    o.doc_mode = "paragraphs";
    o.max_docs = max_docs;
    o.output = out;
    if (ei_prepare_run(&o) != 0) fail_msg("%s: %s", path, ei_error_get());
    char *text;
    size_t len;
    assert_int_equal(ei_file_read_all(path, &text, &len), 0);
    len = ei_text_normalize(text, len);
    ei_span *sp;
    size_t np;
    assert_int_equal(ei_text_paragraphs(text, len, &sp, &np), 0);
    int64_t want = max_docs && max_docs < (int64_t)np ? max_docs : (int64_t)np;
    ei_dataset *d = ei_dataset_open(out);
    assert_non_null(d);
    if (ei_dataset_n_samples(d) != want)
        fail_msg("%s: %lld samples, the splitter gives %lld paragraphs", path, (long long)ei_dataset_n_samples(d),
                 (long long)want);
    for (int64_t i = 0; i < want; i++) {
        int32_t *ids;
        size_t n;
        assert_int_equal(ei_tokenizer_encode(tok, text + sp[i].start, sp[i].len, 0, 0, &ids, &n), 0);
        seq e = {0};
        seq_id(&e, ei_tokenizer_bos(tok), 0);
        seq_push(&e, ids, n, 1);
        seq_id(&e, ei_tokenizer_eos(tok), 1);
        assert_sample(d, i, &e);
        assert_int_equal(ei_dataset_doc_id(d, i), i);
        free(ids);
        free(e.t);
        free(e.m);
    }
    ei_dataset_close(d);
    free(sp);
    free(text);
    return want;
}

static void test_paragraphs_are_the_splitters(void **state) {
    (void)state;
    /* CRLF fixtures with indented paragraphs (a table of contents, letters, verse). */
    assert_int_equal(check_splitter_docs(EI_FIXTURES "/text/sherlock_holmes.txt", 150), 150);
    assert_int_equal(check_splitter_docs(EI_FIXTURES "/text/mobydick_pg2701.txt", 150), 150);
    assert_true(check_splitter_docs(EI_FIXTURES "/text/tinyshakespeare.txt", 0) > 7000);
    /* Edge cases: BOM, CRLF, blank lines of spaces, tabs and form feeds, leading and trailing blank
     * lines, indentation, trailing whitespace, a lone CR, no final newline. */
    const char *edge = "\xEF\xBB\xBF\r\n  \r\n  indented first\r\nsecond line \t\r\n\t\r\n\f\r\n"
                       "next\rwith a lone CR\n\n\n tail without newline \t";
    const char *p = tmp("edge.txt");
    write_file(p, edge, strlen(edge));
    assert_int_equal(check_splitter_docs(p, 0), 3);
    /* Whitespace only: no documents at all, which is an error naming the output (a dataset with no
     * samples would only fail later, in ei train), and nothing is written. */
    write_file(p, " \r\n\t\n\n", 6);
    const char *in[1] = {p};
    ei_prepare_opts o = base_opts(EI_FIXTURES "/models/stories260K/tok512.bin");
    o.inputs = in;
    o.n_inputs = 1;
    o.doc_mode = "paragraphs";
    o.output = tmp("empty.h5");
    assert_int_equal(ei_prepare_run(&o), -1);
    assert_non_null(strstr(ei_error_get(), "no samples to write"));
    assert_non_null(strstr(ei_error_get(), o.output));
    assert_false(ei_path_exists(o.output));
}

static void test_lm_whole_split_and_cut(void **state) {
    (void)state;
    const char *in[1] = {EI_FIXTURES "/text/tinystories.txt"};
    ei_prepare_opts o = base_opts(EI_FIXTURES "/models/stories260K/tok512.bin");
    o.inputs = in;
    o.n_inputs = 1;
    o.doc_mode = "whole";
    o.max_tokens = 1000;
    o.output = tmp("whole.h5");
    assert_int_equal(ei_prepare_run(&o), 0);
    char *text = load(in[0]);
    size_t tl = strlen(text);
    int32_t *ids;
    size_t n;
    assert_int_equal(ei_tokenizer_encode(tok, text, tl, 0, 0, &ids, &n), 0);
    ei_dataset *d = ei_dataset_open(o.output);
    assert_non_null(d);
    /* Pieces of 999 body tokens after BOS; EOS only at the very end. */
    int64_t pieces = (int64_t)((n + 1 + 998) / 999);
    assert_int_equal(ei_dataset_n_samples(d), pieces);
    size_t at = 0;
    for (int64_t i = 0; i < pieces; i++) {
        seq e = {0};
        seq_id(&e, ei_tokenizer_bos(tok), 0);
        size_t take = n - at < 999 ? n - at : 999;
        seq_push(&e, ids + at, take, 1);
        at += take;
        if (i == pieces - 1) seq_id(&e, ei_tokenizer_eos(tok), 1);
        assert_sample(d, i, &e);
        assert_int_equal(ei_dataset_doc_id(d, i), 0);
        free(e.t);
        free(e.m);
    }
    ei_dataset_close(d);
    o.lm_overflow = "cut";
    assert_int_equal(ei_prepare_run(&o), 0);
    d = ei_dataset_open(o.output);
    assert_int_equal(ei_dataset_n_samples(d), 1);
    seq e = {0};
    seq_id(&e, ei_tokenizer_bos(tok), 0);
    seq_push(&e, ids, 499, 1);
    seq_push(&e, ids + n - 499, 499, 1);
    seq_id(&e, ei_tokenizer_eos(tok), 1);
    assert_sample(d, 0, &e);
    int64_t v;
    assert_int_equal(ei_dataset_meta_i64(d, "n_truncated", &v), 0);
    assert_int_equal(v, 1);
    ei_dataset_close(d);
    free(e.t);
    free(e.m);
    free(ids);
    free(text);
}

/* QMSum through the plain template, checked against prompts rendered here. */
static void check_qmsum(ei_tokenizer *tk, const char *tok_path, int64_t max_docs) {
    const char *in[1] = {EI_FIXTURES "/longdoc/qmsum_val.jsonl"};
    ei_prepare_opts o = base_opts(tok_path);
    o.inputs = in;
    o.n_inputs = 1;
    o.context = "meeting_transcripts[].{speaker}: {content}";
    o.instruction = "general_query_list[].query";
    o.answer = "general_query_list[].answer";
    o.max_docs = max_docs;
    o.output = tmp("qmsum.h5");
    if (ei_prepare_run(&o) != 0) fail_msg("qmsum: %s", ei_error_get());
    ei_dataset *d = ei_dataset_open(o.output);
    assert_non_null(d);
    assert_string_equal(ei_dataset_meta_str(d, "kind"), "instruct");
    assert_string_equal(ei_dataset_meta_str(d, "template"), "plain");
    char *all = load(in[0]);
    int64_t sample = 0;
    char *save = NULL;
    int64_t doc = 0;
    for (char *line = strtok_r(all, "\n", &save); line && doc < max_docs; line = strtok_r(NULL, "\n", &save), doc++) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        size_t cap = 1 << 16, len = 0;
        char *ctx = malloc(cap);
        ctx[0] = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(j, "meeting_transcripts")) {
            const char *sp = cJSON_GetObjectItem(m, "speaker")->valuestring;
            const char *ct = cJSON_GetObjectItem(m, "content")->valuestring;
            size_t need = len + strlen(sp) + strlen(ct) + 4;
            if (need > cap) ctx = realloc(ctx, cap = need * 2);
            len += (size_t)sprintf(ctx + len, "%s%s: %s", len ? "\n" : "", sp, ct);
        }
        const cJSON *q;
        cJSON_ArrayForEach(q, cJSON_GetObjectItem(j, "general_query_list")) {
            const char *query = cJSON_GetObjectItem(q, "query")->valuestring;
            const char *ans = cJSON_GetObjectItem(q, "answer")->valuestring;
            char *prompt = malloc(len + strlen(query) + 3);
            sprintf(prompt, "%s\n%s\n", ctx, query);
            seq e = {0};
            seq_id(&e, ei_tokenizer_bos(tk), 0);
            seq_enc(tk, &e, prompt, 0, 1);
            seq_enc_cont(tk, &e, ans, 1, 1);
            seq_id(&e, ei_tokenizer_eos(tk), 1);
            assert_sample(d, sample, &e);
            assert_int_equal(ei_dataset_doc_id(d, sample), doc);
            sample++;
            free(prompt);
            free(e.t);
            free(e.m);
        }
        free(ctx);
        cJSON_Delete(j);
    }
    assert_int_equal(ei_dataset_n_samples(d), sample);
    assert_true(sample >= max_docs);
    ei_dataset_close(d);
    free(all);
}

static void test_qmsum(void **state) {
    (void)state;
    check_qmsum(tok, EI_FIXTURES "/models/stories260K/tok512.bin", 4);
}

/* QuALITY: one sample per question, custom template, context cut in the middle at 2048 tokens. */
static void test_leval_truncation_and_evalset(void **state) {
    (void)state;
    const char *in[1] = {EI_FIXTURES "/longdoc/leval_quality.jsonl"};
    ei_prepare_opts o = base_opts(EI_FIXTURES "/models/stories260K/tok512.bin");
    o.inputs = in;
    o.n_inputs = 1;
    o.context = "input";
    o.instruction = "instructions[]";
    o.answer = "outputs[]";
    o.template_string = "{context}\n\nQuestion: {instruction}\nAnswer: {answer}";
    o.max_tokens = 2048;
    o.max_docs = 2;
    o.output = tmp("leval.h5");
    o.eval_set = tmp("leval.eis");
    o.task = "choice";
    if (ei_prepare_run(&o) != 0) fail_msg("leval: %s", ei_error_get());
    ei_dataset *d = ei_dataset_open(o.output);
    ei_evalset *es = ei_evalset_read(o.eval_set);
    assert_non_null(d);
    assert_non_null(es);
    char *all = load(in[0]);
    char *save = NULL;
    int64_t sample = 0;
    int doc = 0;
    for (char *line = strtok_r(all, "\n", &save); line && doc < 2; line = strtok_r(NULL, "\n", &save), doc++) {
        cJSON *j = cJSON_Parse(line);
        const char *ctx = cJSON_GetObjectItem(j, "input")->valuestring;
        int32_t *c;
        size_t nc, cl = strlen(ctx), sp = 0;
        while (sp < cl && ctx[cl - 1 - sp] == ' ') sp++; /* the context's trailing spaces go to the text after it */
        assert_int_equal(ei_tokenizer_encode(tok, ctx, cl - sp, 0, 1, &c, &nc), 0);
        const cJSON *ins = cJSON_GetObjectItem(j, "instructions"), *outs = cJSON_GetObjectItem(j, "outputs");
        assert_int_equal(cJSON_GetArraySize(ins), cJSON_GetArraySize(outs));
        for (int k = 0; k < cJSON_GetArraySize(ins); k++, sample++) {
            const char *q = cJSON_GetArrayItem(ins, k)->valuestring, *a = cJSON_GetArrayItem(outs, k)->valuestring;
            char *after = malloc(strlen(q) + sp + 32), *sa = malloc(strlen(a) + 2);
            sprintf(after, "%*s\n\nQuestion: %s\nAnswer:", (int)sp, "", q); /* its trailing space starts the answer */
            sprintf(sa, " %s", a);
            seq fa = {0}, ans = {0};
            seq_enc_cont(tok, &fa, after, 0, 1);
            seq_enc_cont(tok, &ans, sa, 1, 1);
            free(sa);
            /* Training sample: the context's head and tail fill what is left of 2048. */
            size_t keep = 2048 - (1 + fa.n + ans.n + 1);
            seq e = {0};
            seq_id(&e, ei_tokenizer_bos(tok), 0);
            seq_push(&e, c, keep - keep / 2, 0);
            seq_push(&e, c + nc - keep / 2, keep / 2, 0);
            seq_push(&e, fa.t, fa.n, 0);
            seq_push(&e, ans.t, ans.n, 1);
            seq_id(&e, ei_tokenizer_eos(tok), 1);
            assert_int_equal(e.n, 2048);
            assert_sample(d, sample, &e);
            /* Evaluation prompt: the same rule on [BOS] prompt alone; reference = the answer. */
            const ei_eval_item *it = &es->items[sample];
            assert_int_equal(it->type, EI_TASK_CHOICE);
            assert_string_equal(it->ref_text, a);
            assert_int_equal(it->n_ref, ans.n);
            assert_memory_equal(it->ref_ids, ans.t, ans.n * sizeof(int32_t));
            size_t pkeep = 2048 - (1 + fa.n);
            assert_int_equal(it->n_prompt, 2048);
            assert_int_equal(it->prompt[0], ei_tokenizer_bos(tok));
            assert_memory_equal(it->prompt + 1, c, (pkeep - pkeep / 2) * sizeof(int32_t));
            assert_memory_equal(it->prompt + 1 + pkeep - pkeep / 2, c + nc - pkeep / 2, (pkeep / 2) * sizeof(int32_t));
            assert_memory_equal(it->prompt + 2048 - fa.n, fa.t, fa.n * sizeof(int32_t));
            free(after);
            free(fa.t);
            free(fa.m);
            free(ans.t);
            free(ans.m);
            free(e.t);
            free(e.m);
        }
        free(c);
        cJSON_Delete(j);
    }
    assert_int_equal(ei_dataset_n_samples(d), sample);
    assert_int_equal(es->n_items, (uint32_t)sample);
    int64_t v;
    assert_int_equal(ei_dataset_meta_i64(d, "n_truncated", &v), 0);
    assert_int_equal(v, sample);
    ei_dataset_close(d);
    ei_evalset_free(es);
    free(all);
}

static void test_templates(void **state) {
    (void)state;
    /* Built-ins render as documented: check against the literal strings. */
    const char *names[3] = {"plain", "llama2-chat", "chatml"};
    /* The prompt's trailing space starts the answer, which continues the prompt's text. */
    const char *pre[3] = {"C\nI\n", "[INST] C\n\nI [/INST]", "<|im_start|>user\nC\n\nI<|im_end|>\n<|im_start|>assistant\n"};
    const char *post[3] = {"A", " A", "A<|im_end|>"};
    for (int k = 0; k < 3; k++) {
        ei_template *t = ei_template_builtin(names[k]);
        assert_non_null(t);
        ei_tokvec out = {0};
        assert_int_equal(ei_prepare_instruct(tok, t, "C", "I", "A", 0, 0, &out, NULL), EI_SAMPLE_OK);
        seq e = {0};
        seq_id(&e, ei_tokenizer_bos(tok), 0);
        seq_enc(tok, &e, pre[k], 0, 1);
        seq_enc_cont(tok, &e, post[k], 1, 1);
        seq_id(&e, ei_tokenizer_eos(tok), 1);
        assert_int_equal(out.n, e.n);
        assert_memory_equal(out.ids, e.t, e.n * sizeof(int32_t));
        assert_memory_equal(out.mask, e.m, e.n);
        ei_tokvec_free(&out);
        free(e.t);
        free(e.m);
        ei_template_free(t);
    }
    assert_null(ei_template_builtin("nope"));
    assert_null(ei_template_parse("{context} {bogus} {answer}", "t"));
    assert_non_null(strstr(ei_error_get(), "{bogus}"));
    assert_null(ei_template_parse("{context}", "t"));
    assert_null(ei_template_parse("{answer} {context}", "t"));
    assert_null(ei_template_parse("{context} {context} {answer}", "t"));
    ei_template *t = ei_template_parse("{{x}} {instruction}: {answer}!", "t");
    assert_non_null(t);
    char *txt = ei_template_text(t);
    assert_string_equal(txt, "{{x}} {instruction}: {answer}!");
    free(txt);
    ei_tokvec out = {0};
    /* Too long even without context: dropped. */
    assert_int_equal(ei_prepare_instruct(tok, t, "ctx", "a long question here", "x", 3, 0, &out, NULL), EI_SAMPLE_TOO_LONG);
    ei_tokvec_free(&out);
    ei_template_free(t);
}

static void test_split(void **state) {
    (void)state;
    const char *in[1] = {EI_FIXTURES "/text/tinystories.txt"};
    ei_prepare_opts o = base_opts(EI_FIXTURES "/models/stories260K/tok512.bin");
    o.inputs = in;
    o.n_inputs = 1;
    o.doc_mode = "paragraphs";
    o.max_docs = 200;
    o.val_fraction = 0.1;
    o.output = tmp("split.h5");
    int64_t first_val[64];
    for (int run = 0; run < 3; run++) {
        o.seed = run == 2 ? 99 : 1234;
        assert_int_equal(ei_prepare_run(&o), 0);
        ei_dataset *tr = ei_dataset_open(tmp("split.train.h5")), *va = ei_dataset_open(tmp("split.val.h5"));
        assert_non_null(tr);
        assert_non_null(va);
        assert_string_equal(ei_dataset_meta_str(tr, "split"), "train");
        assert_string_equal(ei_dataset_meta_str(va, "split"), "val");
        int seen[200] = {0};
        for (int64_t i = 0; i < ei_dataset_n_samples(tr); i++) seen[ei_dataset_doc_id(tr, i)] |= 1;
        for (int64_t i = 0; i < ei_dataset_n_samples(va); i++) seen[ei_dataset_doc_id(va, i)] |= 2;
        for (int i = 0; i < 200; i++) assert_true(seen[i] == 1 || seen[i] == 2); /* each document in one side */
        assert_int_equal(ei_dataset_n_samples(va), 20);
        if (run == 0)
            for (int i = 0; i < 20; i++) first_val[i] = ei_dataset_doc_id(va, i);
        int same = 1;
        for (int i = 0; i < 20; i++) same &= first_val[i] == ei_dataset_doc_id(va, i);
        assert_int_equal(same, run < 2); /* same seed, same split; another seed, another split */
        ei_dataset_close(tr);
        ei_dataset_close(va);
    }
}

static void test_passkey(void **state) {
    (void)state;
    ei_prepare_opts o = base_opts(EI_FIXTURES "/models/stories260K/tok512.bin");
    o.passkey = 1;
    o.filler = EI_FIXTURES "/text/sherlock_holmes.txt";
    o.lengths = "300,700";
    o.depths = "0,0.5,1";
    o.per_cell = 2;
    o.output = tmp("pk.h5");
    o.eval_set = tmp("pk.eis");
    assert_int_equal(ei_prepare_run(&o), 0);
    ei_evalset *es = ei_evalset_read(o.eval_set);
    ei_dataset *d = ei_dataset_open(o.output);
    assert_non_null(es);
    assert_non_null(d);
    assert_int_equal(es->n_items, 12);
    assert_int_equal(ei_dataset_n_samples(d), 12);
    int keys[12];
    for (uint32_t i = 0; i < es->n_items; i++) {
        const ei_eval_item *it = &es->items[i];
        assert_int_equal(it->type, EI_TASK_PASSKEY);
        assert_int_equal(it->n_prompt, i < 6 ? 300 : 700);
        int key = atoi(it->ref_text);
        keys[i] = key;
        assert_true(key >= 10000 && key <= 99999);
        char *text;
        size_t len;
        assert_int_equal(ei_tokenizer_decode(tok, it->prompt, it->n_prompt, &text, &len), 0);
        char want[128];
        snprintf(want, sizeof want, "The pass key is %d. Remember it. %d is the pass key.", key, key);
        const char *at = strstr(text, want);
        assert_non_null(at);
        assert_non_null(strstr(text, "What is the pass key? The pass key is"));
        /* The key sentence's tokens start at 1 + round(depth x filler tokens). */
        double depth = ((i % 6) / 2) * 0.5;
        seq ks = {0}, qs = {0};
        seq_enc(tok, &ks, want, 0, 0);
        seq_enc(tok, &qs, "What is the pass key? The pass key is", 0, 0);
        size_t nf = it->n_prompt - 1 - ks.n - qs.n;
        size_t kat = 1 + (size_t)(depth * (double)nf + 0.5);
        assert_memory_equal(it->prompt + kat, ks.t, ks.n * sizeof(int32_t));
        assert_memory_equal(it->prompt + it->n_prompt - qs.n, qs.t, qs.n * sizeof(int32_t));
        free(ks.t);
        free(ks.m);
        free(qs.t);
        free(qs.m);
        free(text);
        assert_int_equal(ei_tokenizer_decode(tok, it->ref_ids, it->n_ref, &text, &len), 0);
        assert_non_null(strstr(text, it->ref_text));
        free(text);
        /* Training sample: the same prompt, then answer + EOS under the loss. */
        int32_t *t;
        uint8_t *m;
        int64_t n = ei_dataset_read_alloc(d, i, &t, &m);
        assert_int_equal(n, (int64_t)(it->n_prompt + it->n_ref + 1));
        assert_memory_equal(t, it->prompt, it->n_prompt * sizeof(int32_t));
        assert_memory_equal(t + it->n_prompt, it->ref_ids, it->n_ref * sizeof(int32_t));
        for (int64_t k = 0; k < n; k++) assert_int_equal(m[k], k >= (int64_t)it->n_prompt);
        assert_int_equal(t[n - 1], ei_tokenizer_eos(tok));
        free(t);
        free(m);
    }
    int distinct = 0;
    for (int i = 0; i < 12; i++) distinct += keys[i] != keys[(i + 1) % 12];
    assert_true(distinct >= 10);
    ei_evalset_free(es);
    ei_dataset_close(d);
    /* Same seed, same keys. */
    assert_int_equal(ei_prepare_run(&o), 0);
    es = ei_evalset_read(o.eval_set);
    for (int i = 0; i < 12; i++) assert_int_equal(atoi(es->items[i].ref_text), keys[i]);
    ei_evalset_free(es);
    o.lengths = "10";
    assert_int_equal(ei_prepare_run(&o), -1);
    assert_non_null(strstr(ei_error_get(), "too short"));
}

static void write_file(const char *p, const char *s, size_t n) {
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(s, 1, n, fp), n);
    fclose(fp);
}

static void test_bad_input(void **state) {
    (void)state;
    const char *jl = tmp("bad.jsonl");
    const char *lines = "{\"c\": \"one\", \"q\": \"q1\", \"a\": \"a1\"}\n"
                        "{\"c\": \"two\", \"q\": \"q2\" \"a\": \"a2\"}\n"
                        "\n"
                        "{\"c\": \"three\", \"q\": \"q3\"}\n"
                        "{\"c\": \"four\", \"q\": \"q4\", \"a\": \"a4\"}\n";
    write_file(jl, lines, strlen(lines));
    const char *in[1] = {jl};
    ei_prepare_opts o = base_opts(EI_FIXTURES "/models/stories260K/tok512.bin");
    o.inputs = in;
    o.n_inputs = 1;
    o.context = "c";
    o.instruction = "q";
    o.answer = "a";
    o.output = tmp("bad.h5");
    assert_int_equal(ei_prepare_run(&o), -1);
    char want[900];
    snprintf(want, sizeof want, "%s:2: malformed JSON", jl);
    if (!strstr(ei_error_get(), want)) fail_msg("error: %s", ei_error_get());
    assert_int_equal(access(o.output, F_OK), -1); /* nothing half-written left in place */
    o.skip_bad = 1;
    assert_int_equal(ei_prepare_run(&o), 0);
    ei_dataset *d = ei_dataset_open(o.output);
    assert_int_equal(ei_dataset_n_samples(d), 2);
    int64_t v;
    assert_int_equal(ei_dataset_meta_i64(d, "n_bad_lines", &v), 0);
    assert_int_equal(v, 2);
    ei_dataset_close(d);
    /* Missing field: names the field and the line. */
    const char *l2 = "{\"c\": \"x\", \"q\": \"q\", \"a\": \"a\"}\n{\"c\": \"x\", \"q\": \"q\"}\n";
    write_file(jl, l2, strlen(l2));
    o.skip_bad = 0;
    assert_int_equal(ei_prepare_run(&o), -1);
    snprintf(want, sizeof want, "%s:2: missing field 'a'", jl);
    if (!strstr(ei_error_get(), want)) fail_msg("error: %s", ei_error_get());
    /* Mismatched array lengths. */
    const char *l3 = "{\"c\": \"x\", \"q\": [\"1\", \"2\"], \"a\": [\"1\", \"2\", \"3\"]}\n";
    write_file(jl, l3, strlen(l3));
    o.instruction = "q[]";
    o.answer = "a[]";
    assert_int_equal(ei_prepare_run(&o), -1);
    assert_non_null(strstr(ei_error_get(), "pair up"));
    /* Bad selector. */
    o.answer = "a[][]";
    assert_int_equal(ei_prepare_run(&o), -1);
    assert_non_null(strstr(ei_error_get(), "--answer"));
    /* Non-UTF-8 text. */
    const char *bin = tmp("latin1.txt");
    write_file(bin, "caf\xe9\nok\n", 8);
    ei_prepare_opts t = base_opts(EI_FIXTURES "/models/stories260K/tok512.bin");
    const char *tin[1] = {bin};
    t.inputs = tin;
    t.n_inputs = 1;
    t.output = tmp("latin1.h5");
    assert_int_equal(ei_prepare_run(&t), -1);
    snprintf(want, sizeof want, "%s:1: not valid UTF-8", bin);
    if (!strstr(ei_error_get(), want)) fail_msg("error: %s", ei_error_get());
    tin[0] = tmp("missing.txt");
    assert_int_equal(ei_prepare_run(&t), -1);
    assert_non_null(strstr(ei_error_get(), "missing.txt"));
}

static void test_selectors(void **state) {
    (void)state;
    cJSON *j = cJSON_Parse("{\"a\": {\"b\": [{\"x\": 1, \"y\": \"p\"}, {\"x\": 2.5, \"y\": \"q\"}]}, \"s\": \"hi\"}");
    char **v;
    size_t n;
    ei_selector *s = ei_selector_parse("a.b[].{y}={x}", "context");
    assert_non_null(s);
    assert_int_equal(ei_selector_eval(s, j, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0], "p=1");
    assert_string_equal(v[1], "q=2.5");
    ei_strings_free(v, n);
    ei_selector_free(s);
    s = ei_selector_parse("a.b[1].y", "context");
    assert_int_equal(ei_selector_eval(s, j, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0], "q");
    ei_strings_free(v, n);
    ei_selector_free(s);
    s = ei_selector_parse("{s}: {{literal}}", "context");
    assert_int_equal(ei_selector_eval(s, j, &v, &n), 0);
    assert_string_equal(v[0], "hi: {literal}");
    ei_strings_free(v, n);
    ei_selector_free(s);
    s = ei_selector_parse("a.b[].z", "answer");
    assert_int_equal(ei_selector_eval(s, j, &v, &n), -1);
    assert_non_null(strstr(ei_error_get(), "'a.b[].z'"));
    ei_selector_free(s);
    s = ei_selector_parse("a", "answer");
    assert_int_equal(ei_selector_eval(s, j, &v, &n), -1);
    assert_non_null(strstr(ei_error_get(), "object"));
    ei_selector_free(s);
    assert_null(ei_selector_parse("a..b", "context"));
    assert_null(ei_selector_parse("a[x]", "context"));
    assert_null(ei_selector_parse("", "context"));
    cJSON_Delete(j);
}

/* The Llama 3 tokenizer.json, when the tokenizer module can load it. */
static void test_llama3(void **state) {
    (void)state;
    const char *p = EI_FIXTURES "/tokenizers/llama3/tokenizer.json";
    ei_tokenizer *t3 = ei_tokenizer_load(p, 0);
    if (!t3) {
        print_message("skipping: the Llama 3 tokenizer.json does not load: %s\n", ei_error_get());
        skip();
    }
    check_qmsum(t3, p, 2);
    /* A text fixture, paragraphs, against direct encoding. */
    ei_prepare_opts o = base_opts(p);
    const char *in[1] = {EI_FIXTURES "/text/sherlock_holmes.txt"};
    o.inputs = in;
    o.n_inputs = 1;
    o.doc_mode = "paragraphs";
    o.max_docs = 20;
    o.output = tmp("l3.h5");
    assert_int_equal(ei_prepare_run(&o), 0);
    char *text = load(in[0]);
    int np;
    char **pars = paragraphs(text, &np);
    ei_dataset *d = ei_dataset_open(o.output);
    assert_int_equal(ei_dataset_n_samples(d), 20);
    assert_int_equal(ei_dataset_vocab_size(d), ei_tokenizer_vocab_size(t3));
    for (int i = 0; i < 20; i++) {
        seq e = {0};
        seq_id(&e, ei_tokenizer_bos(t3), 0);
        seq_enc(t3, &e, pars[i], 1, 0);
        seq_id(&e, ei_tokenizer_eos(t3), 1);
        assert_sample(d, i, &e);
        free(e.t);
        free(e.m);
    }
    ei_dataset_close(d);
    for (int i = 0; i < np; i++) free(pars[i]);
    free(pars);
    free(text);
    ei_tokenizer_free(t3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selectors),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_text_fixtures),
        cmocka_unit_test(test_paragraphs_are_the_splitters),
        cmocka_unit_test(test_lm_whole_split_and_cut),
        cmocka_unit_test(test_qmsum),
        cmocka_unit_test(test_leval_truncation_and_evalset),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_passkey),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_llama3),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
