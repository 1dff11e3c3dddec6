/* Base models: loaders and the fast inference path against the independent PyTorch reference
 * (tests/reference/make_llama_ref.py -> tests/data/llama_ref.bin, tiny_qwen2_ref.bin).
 * Tolerance: logits within 1e-4 relative (|a - b| <= 1e-4 * max(1, |b|)), loss within 1e-4 relative. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "kernels/infer_kernels.h"
#include "train/infer.h"
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

/* Logits of all tokens and the mean loss, through ei_infer. */
static void run_all(const ei_model *m, const ref_dump *r, float *logits, double *loss) {
    ei_infer *inf = ei_infer_new(m, 0);
    assert_non_null(inf);
    assert_int_equal(ei_infer_forward(inf, r->tokens, r->n, logits, EI_INFER_ALL), 0);
    assert_int_equal(ei_infer_pos(inf), r->n);
    double s = 0.0;
    int64_t n = 0;
    assert_int_equal(ei_infer_score(inf, r->tokens, r->n, 0, &s, &n), 0);
    assert_int_equal(n, r->n - 1);
    *loss = s / (double)n;
    ei_infer_free(inf);
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
    assert_ptr_equal(m->classifier, m->tok_embeddings);
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
    assert_memory_equal(a->tok_embeddings, b->tok_embeddings, sizeof(float) * 512 * 64);
    assert_memory_equal(a->layers[3].wv, b->layers[3].wv, sizeof(float) * 32 * 64);
    assert_memory_equal(a->layers[4].w_down, b->layers[4].w_down, sizeof(float) * 64 * 172);
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
    assert_non_null(m->layers[1].bk);
    assert_ptr_not_equal(m->classifier, m->tok_embeddings);
    ei_model_free(m);
    check_against_ref(EI_TEST_DATA "/tiny_qwen2", EI_TEST_DATA "/tiny_qwen2_ref.bin");
}

/* Token-by-token decoding with the KV cache, and odd prefill chunk splits, give the logits of one
 * prefill (different kernels: sgemv and per-row attention vs sgemm). */
static void test_incremental_matches_prefill(void **state) {
    (void)state;
    ref_dump r;
    ref_load(&r, EI_TEST_DATA "/llama_ref.bin");
    ei_model *m = load_ok(STORIES_HF);
    size_t V = (size_t)r.vocab;
    float *all = malloc(sizeof(float) * r.n * V), *one = malloc(sizeof(float) * V);
    ei_infer *inf = ei_infer_new(m, 100);
    assert_non_null(inf);
    assert_int_equal(ei_infer_max_ctx(inf), 100);
    assert_int_equal(ei_infer_forward(inf, r.tokens, r.n, all, EI_INFER_ALL), 0);
    ei_infer_reset(inf);
    for (int i = 0; i < r.n; i++) {
        assert_int_equal(ei_infer_forward(inf, r.tokens + i, 1, one, EI_INFER_LAST), 0);
        check_close(one, all + i * V, V, 5e-5, "decode vs prefill");
    }
    /* chunks of 5, 17, 30: the last-token logits of each piece */
    ei_infer_reset(inf);
    int cuts[] = {5, 17, 30};
    int at = 0;
    for (int k = 0; k < 3; k++) {
        assert_int_equal(ei_infer_forward(inf, r.tokens + at, cuts[k], one, EI_INFER_LAST), 0);
        at += cuts[k];
        check_close(one, all + (at - 1) * V, V, 5e-5, "chunked prefill");
    }
    assert_int_equal(ei_infer_forward(inf, r.tokens + at, r.n - at, NULL, EI_INFER_NONE), 0);
    assert_int_equal(ei_infer_pos(inf), r.n);
    ei_infer_free(inf);
    free(all);
    free(one);
    ei_model_free(m);
    ref_free(&r);
}

/* Sliding-window scoring against a brute-force recomputation of its definition: target t is predicted
 * from the window that first contains it, i.e. the tokens [s(t), t) with s(t) the start of that
 * window. */
static void test_sliding_window_score(void **state) {
    (void)state;
    ref_dump r;
    ref_load(&r, EI_TEST_DATA "/llama_ref.bin");
    ei_model *m = load_ok(STORIES_BIN);
    const int ctx = 16, stride = 6;
    ei_infer *inf = ei_infer_new(m, ctx);
    double s = 0.0;
    int64_t n = 0;
    assert_int_equal(ei_infer_score(inf, r.tokens, r.n, stride, &s, &n), 0);
    assert_int_equal(n, r.n - 1);
    double brute = 0.0;
    float *lg = malloc(sizeof(float) * r.vocab);
    for (int t = 1; t < r.n; t++) {
        int start = 0;
        while (start + ctx <= t) start += stride; /* first window [start, start+ctx) holding token t */
        ei_infer_reset(inf);
        assert_int_equal(ei_infer_forward(inf, r.tokens + start, t - start, lg, EI_INFER_LAST), 0);
        float mx = lg[0];
        for (int i = 1; i < r.vocab; i++) mx = fmaxf(mx, lg[i]);
        double z = 0.0;
        for (int i = 0; i < r.vocab; i++) z += exp((double)lg[i] - mx);
        brute += log(z) + mx - lg[r.tokens[t]];
    }
    assert_true(fabs(s - brute) <= 1e-5 * fabs(brute));
    /* whole document inside the context: the reference loss */
    ei_infer *big = ei_infer_new(m, 0);
    double s2 = 0.0;
    int64_t n2 = 0;
    assert_int_equal(ei_infer_score(big, r.tokens, r.n, 0, &s2, &n2), 0);
    assert_true(fabs(s2 / (double)n2 - r.loss) <= 1e-4 * r.loss);
    ei_infer_free(big);
    free(lg);
    ei_infer_free(inf);
    ei_model_free(m);
    ref_free(&r);
}

static void test_infer_errors(void **state) {
    (void)state;
    ei_model *m = load_ok(STORIES_BIN);
    ei_infer *inf = ei_infer_new(m, 8);
    float lg[512];
    int32_t ids[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    assert_int_equal(ei_infer_forward(inf, ids, 9, lg, EI_INFER_LAST), -1);
    assert_non_null(strstr(ei_error_get(), "context"));
    assert_int_equal(ei_infer_pos(inf), 0);
    int32_t bad[2] = {1, 512};
    assert_int_equal(ei_infer_forward(inf, bad, 2, lg, EI_INFER_LAST), -1);
    assert_non_null(strstr(ei_error_get(), "512"));
    assert_int_equal(ei_infer_forward(inf, ids, 8, lg, EI_INFER_LAST), 0);
    assert_int_equal(ei_infer_forward(inf, ids, 1, lg, EI_INFER_LAST), -1);
    assert_null(ei_infer_new(m, 1));
    ei_infer_free(inf);
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
    assert_ptr_not_equal(b->classifier, b->tok_embeddings);
    assert_int_equal(b->n_params, a->n_params + 512 * 64);
    int32_t ids[6] = {1, 400, 12, 99, 7, 300};
    float la[512], lb[512];
    ei_infer *ia = ei_infer_new(a, 16), *ib = ei_infer_new(b, 16);
    assert_int_equal(ei_infer_forward(ia, ids, 6, la, EI_INFER_LAST), 0);
    assert_int_equal(ei_infer_forward(ib, ids, 6, lb, EI_INFER_LAST), 0);
    assert_memory_equal(la, lb, sizeof la);
    ei_infer_free(ia);
    ei_infer_free(ib);
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
static void test_rope_layouts(void **state) {
    (void)state;
    enum { d = 8 };
    float cs[3 * d / 2], sn[3 * d / 2];
    ei_k_rope_table(cs, sn, 3, d, 100.0);
    float x[d], y[d];
    for (int i = 0; i < d; i++) x[i] = y[i] = (float)(i + 1);
    int32_t pos = 2;
    ei_k_rope(x, 1, d, 1, d, &pos, cs, sn, 1);
    ei_k_rope(y, 1, d, 1, d, &pos, cs, sn, 0);
    for (int j = 0; j < d / 2; j++) {
        double a = 2.0 * pow(100.0, -2.0 * j / d);
        double x0 = 2 * j + 1, x1 = 2 * j + 2; /* interleaved pair values */
        assert_true(fabs(x[2 * j] - (x0 * cos(a) - x1 * sin(a))) < 1e-5);
        assert_true(fabs(x[2 * j + 1] - (x0 * sin(a) + x1 * cos(a))) < 1e-5);
        double y0 = j + 1, y1 = j + 1 + d / 2; /* rotate-half pair values */
        assert_true(fabs(y[j] - (y0 * cos(a) - y1 * sin(a))) < 1e-5);
        assert_true(fabs(y[j + d / 2] - (y0 * sin(a) + y1 * cos(a))) < 1e-5);
    }
}

/* ei_k_attention against a direct double-precision evaluation of softmax(q k^T * scale) v with the
 * causal offset and a key mask (GQA 4 query heads on 2 KV heads); ei_k_attention_gemm unmasked. */
static void test_attention_kernels(void **state) {
    (void)state;
    enum { nq = 5, nk = 70, H = 4, Hkv = 2, d = 6 };
    static float q[nq * H * d], k[nk * Hkv * d], v[nk * Hkv * d], out[nq * H * d], out2[nq * H * d],
        scratch[nq * nk];
    uint8_t valid[nk];
    uint64_t x = 88172645463325252ull;
    float *arrs[3] = {q, k, v};
    int lens[3] = {nq * H * d, nk * Hkv * d, nk * Hkv * d};
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < lens[a]; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            arrs[a][i] = (float)((double)(x >> 11) / 9007199254740992.0 * 4.0 - 2.0);
        }
    for (int j = 0; j < nk; j++) valid[j] = (j % 3) != 1;
    const int off = nk - nq - 2; /* rows see keys 0..off+i */
    const float scale = 0.4f;
    for (int masked = 0; masked < 2; masked++) {
        ei_k_attention(out, q, k, v, nq, nk, H, Hkv, d, off, masked ? valid : NULL, scale);
        if (!masked) ei_k_attention_gemm(out2, q, k, v, nq, nk, H, Hkv, d, off, scale, scratch);
        for (int i = 0; i < nq; i++)
            for (int h = 0; h < H; h++) {
                int g = h / (H / Hkv);
                double w[nk], mx = -1e300, z = 0.0;
                for (int j = 0; j <= off + i; j++) {
                    double sdot = 0.0;
                    for (int t = 0; t < d; t++) sdot += (double)q[(i * H + h) * d + t] * k[(j * Hkv + g) * d + t];
                    w[j] = sdot * scale;
                    if (!masked || valid[j]) mx = fmax(mx, w[j]);
                }
                for (int j = 0; j <= off + i; j++) z += (!masked || valid[j]) ? exp(w[j] - mx) : 0.0;
                for (int t = 0; t < d; t++) {
                    double o = 0.0;
                    for (int j = 0; j <= off + i; j++)
                        if (!masked || valid[j]) o += exp(w[j] - mx) / z * v[(j * Hkv + g) * d + t];
                    assert_true(fabs(out[(i * H + h) * d + t] - o) < 1e-5);
                    if (!masked) assert_true(fabs(out2[(i * H + h) * d + t] - o) < 1e-5);
                }
            }
    }
    /* a row with no visible key gives zeros */
    memset(valid, 0, sizeof valid);
    ei_k_attention(out, q, k, v, 1, nk, H, Hkv, d, 0, valid, scale);
    for (int t = 0; t < H * d; t++) assert_true(out[t] == 0.0f);
}

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
        cmocka_unit_test(test_rope_layouts),
        cmocka_unit_test(test_attention_kernels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
