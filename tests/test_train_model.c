/* Base models: loaders and full attention (the EdgeInfinite model in full mode, train/edge.h) against
 * the independent PyTorch reference
 * (tests/reference/make_llama_ref.py -> tests/data/llama_ref.bin, tiny_qwen2_ref.bin).
 * Tolerance: logits within 1e-4 relative (|a - b| <= 1e-4 * max(1, |b|)), loss within 1e-4 relative. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "train/edge.h"
#include "formats/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STORIES_BIN EI_FIXTURES "/models/stories260K/stories260K.bin"
#define STORIES_HF EI_FIXTURES "/models/stories260K-hf"

typedef struct {
    int n, vocab;
    int32_t *tokens;
    float *logits;
    double loss;
} ref_dump;

static void ref_load(ref_dump *r, const char *path) {
    char *buf;
    size_t len;
    assert_int_equal(ei_file_read_all(path, &buf, &len), 0);
    assert_true(len >= 24);
    assert_memory_equal(buf, "EIREFLM1", 8);
    uint32_t h[4];
    memcpy(h, buf + 8, sizeof h);
    assert_int_equal(h[0], 1);
    r->n = (int)h[1];
    r->vocab = (int)h[2];
    size_t need = 24 + 4 * (size_t)r->n + 4 * (size_t)r->n * r->vocab + 8;
    assert_int_equal(len, need);
    r->tokens = malloc(4 * (size_t)r->n);
    r->logits = malloc(4 * (size_t)r->n * r->vocab);
    memcpy(r->tokens, buf + 24, 4 * (size_t)r->n);
    memcpy(r->logits, buf + 24 + 4 * (size_t)r->n, 4 * (size_t)r->n * r->vocab);
    memcpy(&r->loss, buf + need - 8, 8);
    free(buf);
}

static void ref_free(ref_dump *r) {
    free(r->tokens);
    free(r->logits);
}

static ei_model *load_ok(const char *path) {
    ei_model *m = ei_model_load(path);
    if (!m) fail_msg("loading %s: %s", path, ei_error_get());
    return m;
}

static void check_close(const float *a, const float *b, size_t n, double rel, const char *what) {
    double worst = 0.0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / fmax(1.0, fabs(b[i]));
        if (!(e <= worst)) {
            worst = e;
            wi = i;
        }
    }
    if (!(worst <= rel)) fail_msg("%s: element %zu: %.7g vs %.7g (relative error %.3g > %.3g)", what, wi, a[wi], b[wi], worst, rel);
}

/* A full-attention edge over a context of ctx tokens (0: the model's). */
static ei_edge *full_edge(const ei_model *m, int ctx, int stride) {
    ei_opts o;
    ei_opts_default(&o);
    ei_edge *e = ei_edge_new(m, &o, NULL, EI_MODE_FULL, AG_F32);
    if (!e || ei_edge_set_context(e, ctx, stride) != 0) fail_msg("full_edge: %s", ei_error_get());
    return e;
}

/* Logits of all tokens and the mean loss. */
static void run_all(const ei_model *m, const ref_dump *r, float *logits, double *loss) {
    ei_edge *e = full_edge(m, 0, 0);
    ei_edge_reset(e);
    assert_int_equal(ei_edge_feed_all(e, r->tokens, r->n, logits), 0);
    assert_int_equal(ei_edge_pos(e), r->n);
    ei_doc_result res;
    assert_int_equal(ei_edge_doc_eval(e, r->tokens, r->tokens + 1, NULL, r->n - 1, &res), 0);
    assert_int_equal(res.count, r->n - 1);
    *loss = res.loss;
    ei_edge_free(e);
}

static void check_against_ref(const char *model_path, const char *ref_path) {
    ref_dump r;
    ref_load(&r, ref_path);
    ei_model *m = load_ok(model_path);
    assert_int_equal(m->cfg.vocab_size, r.vocab);
    float *logits = malloc(sizeof(float) * (size_t)r.n * r.vocab);
    double loss;
    run_all(m, &r, logits, &loss);
    check_close(logits, r.logits, (size_t)r.n * r.vocab, 1e-4, model_path);
    if (!(fabs(loss - r.loss) <= 1e-4 * fabs(r.loss))) fail_msg("%s: loss %.8f vs reference %.8f", model_path, loss, r.loss);
    free(logits);
    ei_model_free(m);
    ref_free(&r);
}

static void test_llama2c_config(void **state) {
    (void)state;
    ei_model *m = load_ok(STORIES_BIN);
    /* Values from the fixture's documentation (train.py arguments). */
    const ei_model_config *c = &m->cfg;
    assert_int_equal(c->dim, 64);
    assert_int_equal(c->hidden_dim, 172);
    assert_int_equal(c->n_layers, 5);
    assert_int_equal(c->n_heads, 8);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->vocab_size, 512);
    assert_int_equal(c->max_seq_len, 512);
    assert_true(c->tie_embeddings);
    assert_true(c->rope_interleaved);
    assert_int_equal(c->bos_id, 1);
    assert_int_equal(c->eos_id, 2);
    assert_ptr_equal(ei_model_weight(m, EI_TC_CLASSIFIER, -1), ei_model_weight(m, EI_TC_EMBEDDING, -1));
    assert_null(ei_model_weight(m, EI_TC_Q_BIAS, 0));
    assert_string_equal(m->format, "llama2c");
    /* (file size - 28-byte header) / 4 floats minus the two 512 x 4 RoPE tables. */
    assert_int_equal(m->n_params, (1056540 - 28) / 4 - 2 * 512 * 4);
    ei_model_free(m);
}

static void test_hf_config(void **state) {
    (void)state;
    ei_model *a = load_ok(STORIES_BIN), *b = load_ok(STORIES_HF);
    assert_string_equal(b->format, "hf");
    assert_int_equal(b->cfg.rope_interleaved, 0);
    assert_int_equal(b->cfg.dim, a->cfg.dim);
    assert_int_equal(b->cfg.n_kv_heads, a->cfg.n_kv_heads);
    assert_int_equal(b->cfg.hidden_dim, a->cfg.hidden_dim);
    assert_int_equal(b->n_params, a->n_params);
    assert_true(b->cfg.tie_embeddings);
    assert_true(fabsf(b->cfg.norm_eps - 1e-5f) < 1e-12f);
    /* Unpermuted tensors are bit-identical between the two layouts. */
    assert_memory_equal(ei_model_weight(a, EI_TC_EMBEDDING, -1), ei_model_weight(b, EI_TC_EMBEDDING, -1),
                        sizeof(float) * 512 * 64);
    assert_memory_equal(ei_model_weight(a, EI_TC_V, 3), ei_model_weight(b, EI_TC_V, 3), sizeof(float) * 32 * 64);
    assert_memory_equal(ei_model_weight(a, EI_TC_DOWN, 4), ei_model_weight(b, EI_TC_DOWN, 4), sizeof(float) * 64 * 172);
    assert_true(a->identity != b->identity);
    ei_model_free(a);
    ei_model_free(b);
}

static void test_llama2c_vs_torch(void **state) {
    (void)state;
    check_against_ref(STORIES_BIN, EI_TEST_DATA "/llama_ref.bin");
}

static void test_hf_vs_torch(void **state) {
    (void)state;
    check_against_ref(STORIES_HF, EI_TEST_DATA "/llama_ref.bin");
}

/* GQA + q/k/v bias + untied classifier + head_dim != dim/heads + rope_theta 1e6 + eps 1e-6 + F16/BF16
 * tensors + two shards. */
static void test_tiny_qwen2_vs_torch(void **state) {
    (void)state;
    ei_model *m = load_ok(EI_TEST_DATA "/tiny_qwen2");
    assert_int_equal(m->cfg.head_dim, 12);
    assert_int_equal(m->cfg.qkv_bias, 1);
    assert_int_equal(m->cfg.tie_embeddings, 0);
    assert_int_equal(m->cfg.eos_id, 2);
    assert_non_null(ei_model_weight(m, EI_TC_K_BIAS, 1));
    assert_ptr_not_equal(ei_model_weight(m, EI_TC_CLASSIFIER, -1), ei_model_weight(m, EI_TC_EMBEDDING, -1));
    ei_model_free(m);
    check_against_ref(EI_TEST_DATA "/tiny_qwen2", EI_TEST_DATA "/tiny_qwen2_ref.bin");
}

/* Token-by-token decoding and odd chunk splits give the logits of one whole feed (the segment
 * rule continues open segments; different graphs and masks). */
static void test_incremental_matches_prefill(void **state) {
    (void)state;
    ref_dump r;
    ref_load(&r, EI_TEST_DATA "/llama_ref.bin");
    ei_model *m = load_ok(STORIES_HF);
    size_t V = (size_t)r.vocab;
    float *all = malloc(sizeof(float) * r.n * V), *one = malloc(sizeof(float) * V);
    ei_edge *e = full_edge(m, 100, 0);
    assert_int_equal(ei_edge_capacity(e), 100);
    ei_edge_reset(e);
    assert_int_equal(ei_edge_feed_all(e, r.tokens, r.n, all), 0);
    ei_edge_reset(e);
    for (int i = 0; i < r.n; i++) {
        assert_int_equal(ei_edge_feed(e, r.tokens + i, 1, NULL, NULL, NULL, one), 0);
        check_close(one, all + i * V, V, 5e-5, "decode vs prefill");
    }
    /* chunks of 5, 17, 30: the last-token logits of each piece */
    ei_edge_reset(e);
    int cuts[] = {5, 17, 30};
    int at = 0;
    for (int k = 0; k < 3; k++) {
        assert_int_equal(ei_edge_feed(e, r.tokens + at, cuts[k], NULL, NULL, NULL, one), 0);
        at += cuts[k];
        check_close(one, all + (at - 1) * V, V, 5e-5, "chunked prefill");
    }
    assert_int_equal(ei_edge_feed(e, r.tokens + at, r.n - at, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(ei_edge_pos(e), r.n);
    ei_edge_free(e);
    free(all);
    free(one);
    ei_model_free(m);
    ref_free(&r);
}

/* Sliding-window scoring against a brute-force recomputation of its definition: position t is
 * scored in the first window [s, s + ctx) that contains it, from the tokens [s, t]. */
static void test_sliding_window_score(void **state) {
    (void)state;
    ref_dump r;
    ref_load(&r, EI_TEST_DATA "/llama_ref.bin");
    ei_model *m = load_ok(STORIES_BIN);
    const int ctx = 16, stride = 6;
    ei_edge *e = full_edge(m, ctx, stride);
    ei_doc_result res;
    assert_int_equal(ei_edge_doc_eval(e, r.tokens, r.tokens + 1, NULL, r.n - 1, &res), 0);
    assert_int_equal(res.count, r.n - 1);
    double brute = 0.0;
    float *lg = malloc(sizeof(float) * r.vocab);
    for (int t = 0; t < r.n - 1; t++) {
        int start = 0;
        while (start + ctx <= t) start += stride; /* first window [start, start+ctx) holding position t */
        ei_edge_reset(e);
        assert_int_equal(ei_edge_feed(e, r.tokens + start, t - start + 1, NULL, NULL, NULL, lg), 0);
        float mx = lg[0];
        for (int i = 1; i < r.vocab; i++) mx = fmaxf(mx, lg[i]);
        double z = 0.0;
        for (int i = 0; i < r.vocab; i++) z += exp((double)lg[i] - mx);
        brute += log(z) + mx - lg[r.tokens[t + 1]];
    }
    assert_true(fabs(res.nll_sum - brute) <= 1e-5 * fabs(brute));
    /* whole document inside the context: the reference loss */
    ei_edge *big = full_edge(m, 0, 0);
    assert_int_equal(ei_edge_doc_eval(big, r.tokens, r.tokens + 1, NULL, r.n - 1, &res), 0);
    assert_true(fabs(res.loss - r.loss) <= 1e-4 * r.loss);
    ei_edge_free(big);
    free(lg);
    ei_edge_free(e);
    ei_model_free(m);
    ref_free(&r);
}

static void test_infer_errors(void **state) {
    (void)state;
    ei_model *m = load_ok(STORIES_BIN);
    ei_edge *e = full_edge(m, 8, 0);
    float lg[512];
    int32_t ids[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    ei_edge_reset(e);
    assert_int_equal(ei_edge_feed(e, ids, 9, NULL, NULL, NULL, lg), -1);
    assert_non_null(strstr(ei_error_get(), "context"));
    assert_int_equal(ei_edge_pos(e), 0);
    int32_t bad[2] = {1, 512};
    assert_int_equal(ei_edge_feed(e, bad, 2, NULL, NULL, NULL, lg), -1);
    assert_non_null(strstr(ei_error_get(), "512"));
    ei_edge_reset(e);
    assert_int_equal(ei_edge_feed(e, ids, 8, NULL, NULL, NULL, lg), 0);
    assert_int_equal(ei_edge_feed(e, ids, 1, NULL, NULL, NULL, lg), -1);
    assert_int_equal(ei_edge_set_context(e, 1, 0), -1);
    ei_edge_free(e);
    ei_model_free(m);
}

static char *make_tmpdir(void) {
    char tmpl[] = "/tmp/ei_model_test_XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* A llama2.c file with a negative vocab (own classifier) holding a copy of the embedding gives the
 * tied model's logits. */
static void test_llama2c_untied(void **state) {
    (void)state;
    char *buf;
    size_t len;
    assert_int_equal(ei_file_read_all(STORIES_BIN, &buf, &len), 0);
    size_t emb = 512 * 64 * 4;
    char *nb = malloc(len + emb);
    memcpy(nb, buf, len);
    memcpy(nb + len, buf + 28, emb);
    int32_t v = -512;
    memcpy(nb + 20, &v, 4);
    char *dir = make_tmpdir();
    char *p = ei_path_join(dir, "untied.bin");
    write_file(p, nb, len + emb);
    ei_model *a = load_ok(STORIES_BIN), *b = load_ok(p);
    assert_int_equal(b->cfg.tie_embeddings, 0);
    assert_int_equal(b->cfg.vocab_size, 512);
    assert_ptr_not_equal(ei_model_weight(b, EI_TC_CLASSIFIER, -1), ei_model_weight(b, EI_TC_EMBEDDING, -1));
    assert_int_equal(b->n_params, a->n_params + 512 * 64);
    int32_t ids[6] = {1, 400, 12, 99, 7, 300};
    float la[512], lb[512];
    ei_edge *ia = full_edge(a, 16, 0), *ib = full_edge(b, 16, 0);
    assert_int_equal(ei_edge_feed(ia, ids, 6, NULL, NULL, NULL, la), 0);
    assert_int_equal(ei_edge_feed(ib, ids, 6, NULL, NULL, NULL, lb), 0);
    assert_memory_equal(la, lb, sizeof la);
    ei_edge_free(ia);
    ei_edge_free(ib);
    ei_model_free(a);
    ei_model_free(b);
    unlink(p);
    rmdir(dir);
    free(p);
    free(dir);
    free(buf);
    free(nb);
}

static void test_default_tokenizer(void **state) {
    (void)state;
    char *t = ei_model_default_tokenizer(STORIES_BIN, 512);
    assert_non_null(t);
    assert_non_null(strstr(t, "/tok512.bin"));
    free(t);
    t = ei_model_default_tokenizer(STORIES_HF, 512);
    assert_non_null(t);
    assert_non_null(strstr(t, "stories260K-hf/tokenizer.model"));
    free(t);
    assert_null(ei_model_default_tokenizer(EI_TEST_DATA "/tiny_qwen2", 96));
}

/* Kernel-level check of both RoPE layouts against the rotation written out by hand. */
int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2c_config),
        cmocka_unit_test(test_hf_config),
        cmocka_unit_test(test_llama2c_vs_torch),
        cmocka_unit_test(test_hf_vs_torch),
        cmocka_unit_test(test_tiny_qwen2_vs_torch),
        cmocka_unit_test(test_incremental_matches_prefill),
        cmocka_unit_test(test_sliding_window_score),
        cmocka_unit_test(test_infer_errors),
        cmocka_unit_test(test_llama2c_untied),
        cmocka_unit_test(test_default_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
