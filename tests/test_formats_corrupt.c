/* Corrupt and inconsistent model files: every case must fail with a clear message (checked by a
 * substring) and no crash or leak under ASan. The files are derived from the fixtures into a fresh
 * temporary folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "formats/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STORIES_BIN EI_FIXTURES "/models/stories260K/stories260K.bin"
#define STORIES_HF EI_FIXTURES "/models/stories260K-hf"

static char g_dir[64];
static char *g_bin, *g_st, *g_cfg;
static size_t g_bin_len, g_st_len, g_cfg_len;

static int setup(void **state) {
    (void)state;
    strcpy(g_dir, "/tmp/ei_corrupt_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    if (ei_file_read_all(STORIES_BIN, &g_bin, &g_bin_len) || ei_file_read_all(STORIES_HF "/model.safetensors", &g_st, &g_st_len) ||
        ei_file_read_all(STORIES_HF "/config.json", &g_cfg, &g_cfg_len))
        return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    free(g_bin);
    free(g_st);
    free(g_cfg);
    return system(cmd) == 0 ? 0 : -1;
}

static char *tmp_path(const char *name) {
    char *p = ei_path_join(g_dir, name);
    assert_non_null(p);
    return p;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void expect_fail(const char *path, const char *needle) {
    ei_error_clear();
    ei_model *m = ei_model_load(path);
    if (m) {
        ei_model_free(m);
        fail_msg("%s: loaded, expected an error containing '%s'", path, needle);
    }
    const char *e = ei_error_get();
    if (!strstr(e, needle)) fail_msg("%s: error '%s' lacks '%s'", path, e, needle);
}

/* ---------------------------------------------------------------- llama2.c */

static void bin_case(const char *name, size_t len, int field, int32_t value, const char *needle) {
    char *buf = malloc(len > g_bin_len ? len : g_bin_len);
    memcpy(buf, g_bin, g_bin_len);
    if (len > g_bin_len) memset(buf + g_bin_len, 0, len - g_bin_len);
    if (field >= 0 && len >= 28) memcpy(buf + 4 * field, &value, 4);
    char *p = tmp_path(name);
    write_file(p, buf, len);
    expect_fail(p, needle);
    free(p);
    free(buf);
}

static void test_llama2c_corrupt(void **state) {
    (void)state;
    bin_case("empty.bin", 0, -1, 0, "too short");
    bin_case("header27.bin", 27, -1, 0, "too short");
    bin_case("trunc.bin", g_bin_len - 1, -1, 0, "1056540 bytes");
    bin_case("half.bin", g_bin_len / 2, -1, 0, "must be");
    bin_case("long.bin", g_bin_len + 4, -1, 0, "must be 1056540");
    bin_case("dim0.bin", g_bin_len, 0, 0, "dim");
    bin_case("dimneg.bin", g_bin_len, 0, -64, "dim");
    bin_case("heads0.bin", g_bin_len, 3, 0, "n_heads");
    bin_case("kv3.bin", g_bin_len, 4, 3, "not a multiple of n_kv_heads");
    bin_case("kv0.bin", g_bin_len, 4, 0, "n_kv_heads");
    bin_case("layers.bin", g_bin_len, 2, 100000, "n_layers");
    bin_case("hidden.bin", g_bin_len, 1, 2147483647, "hidden_dim");
    bin_case("vocab.bin", g_bin_len, 5, INT32_MIN, "vocab_size");
    bin_case("seq.bin", g_bin_len, 6, -1, "max_seq_len");
    bin_case("seqbig.bin", g_bin_len, 6, 513, "must be");
    bin_case("untied.bin", g_bin_len, 5, -512, "own classifier");
    bin_case("dimheads.bin", g_bin_len, 0, 60, "multiple of n_heads");
    expect_fail(EI_FIXTURES "/models/stories260K/no_such.bin", "no such file");
}

/* ---------------------------------------------------------------- safetensors */

/* A copy of the HF fixture folder with model.safetensors (and config.json) replaced. */
static char *hf_case(const char *name, const void *st, size_t st_len, const char *cfg) {
    char *d = tmp_path(name);
    assert_int_equal(ei_mkdir_p(d), 0);
    char *p = ei_path_join(d, "config.json");
    write_file(p, cfg ? cfg : g_cfg, cfg ? strlen(cfg) : g_cfg_len);
    free(p);
    if (st) {
        p = ei_path_join(d, "model.safetensors");
        write_file(p, st, st_len);
        free(p);
    }
    return d;
}

/* The fixture's safetensors with the first occurrence of `from` in the header replaced by `to`
 * (same length, so offsets stay put unless the test means to move them). */
static void st_edit_case(const char *name, const char *from, const char *to, const char *needle) {
    assert_int_equal(strlen(from), strlen(to));
    char *buf = malloc(g_st_len);
    memcpy(buf, g_st, g_st_len);
    size_t hl = 4848;
    char *hit = memmem(buf + 8, hl, from, strlen(from));
    assert_non_null(hit);
    memcpy(hit, to, strlen(to));
    char *d = hf_case(name, buf, g_st_len, NULL);
    expect_fail(d, needle);
    free(d);
    free(buf);
}

static void test_safetensors_corrupt(void **state) {
    (void)state;
    char *d;
    uint64_t hl;
    memcpy(&hl, g_st, 8);
    assert_int_equal(hl, 4848); /* the edits below assume the fixture's header */

    d = hf_case("st_empty", g_st, 0, NULL);
    expect_fail(d, "too short");
    free(d);
    d = hf_case("st_7", g_st, 7, NULL);
    expect_fail(d, "too short");
    free(d);
    d = hf_case("st_hdr_trunc", g_st, 8 + 100, NULL);
    expect_fail(d, "invalid header length");
    free(d);
    d = hf_case("st_data_trunc", g_st, g_st_len - 1, NULL);
    expect_fail(d, "truncated");
    free(d);
    {
        char *buf = malloc(g_st_len);
        memcpy(buf, g_st, g_st_len);
        uint64_t huge = 0xffffffffffffff00ull;
        memcpy(buf, &huge, 8);
        d = hf_case("st_hdr_huge", buf, g_st_len, NULL);
        expect_fail(d, "invalid header length");
        free(d);
        uint64_t one = 1;
        memcpy(buf, &one, 8);
        d = hf_case("st_hdr_1", buf, g_st_len, NULL);
        expect_fail(d, "invalid header length");
        free(d);
        free(buf);
    }
    st_edit_case("st_garbled", "{\"model.embed", "[\"model.embed", "not a JSON object");
    st_edit_case("st_badjson", "\"dtype\":\"F32\"", "\"dtype\"=\"F32\"", "not a JSON object");
    st_edit_case("st_dtype_unknown", "\"F32\"", "\"Q32\"", "unsupported dtype");
    st_edit_case("st_dtype_int", "\"F32\"", "\"I32\"", "dtype I32");
    st_edit_case("st_dtype_size", "\"F32\"", "\"F16\"", "need");
    st_edit_case("st_shape_bytes", "[512,64]", "[512,65]", "need");
    st_edit_case("st_shape_cfg", "[512,64]", "[256,128", "shape");
    st_edit_case("st_shape_cfg2", "\"shape\":[512,64]", "\"shape\":[64,512]", "config implies [512, 64]");
    st_edit_case("st_missing", "model.norm.weight", "model.nurm.weight", "'model.norm.weight' is missing");
    st_edit_case("st_missing_layer", "model.layers.4.mlp.up_proj", "model.layers.4.mlp.upXproj", "model.layers.4.mlp.up_proj.weight");
    st_edit_case("st_overlap", "[131072,131328]", "[131070,131326]", "overlap");
    st_edit_case("st_offsets_rev", "[131072,131328]", "[131328,131072]", "data_offsets");
    st_edit_case("st_offsets_neg", "[131072,131328]", "[-131072,13132]", "data_offsets");
    st_edit_case("st_offsets_past", "[996096,1040128]", "[996096,1040132]", "past the end");
    st_edit_case("st_dup", "model.layers.1.input_layernorm", "model.layers.0.input_layernorm", "twice");
}

/* ---------------------------------------------------------------- config.json and folders */

static char *cfg_with(const char *from, const char *to) {
    const char *hit = strstr(g_cfg, from);
    assert_non_null(hit);
    size_t a = (size_t)(hit - g_cfg), fl = strlen(from), tl = strlen(to);
    char *s = malloc(g_cfg_len - fl + tl + 1);
    memcpy(s, g_cfg, a);
    memcpy(s + a, to, tl);
    strcpy(s + a + tl, hit + fl);
    return s;
}

static void cfg_case(const char *name, const char *from, const char *to, const char *needle) {
    char *cfg = cfg_with(from, to);
    char *d = hf_case(name, g_st, g_st_len, cfg);
    expect_fail(d, needle);
    free(d);
    free(cfg);
}

static void test_config_corrupt(void **state) {
    (void)state;
    cfg_case("cfg_notjson", "{", "[", "not a JSON object");
    cfg_case("cfg_nohidden", "\"hidden_size\"", "\"hidden_sizeX\"", "missing \"hidden_size\"");
    cfg_case("cfg_kv", "\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3", "not a multiple of n_kv_heads");
    cfg_case("cfg_heads0", "\"num_attention_heads\": 8", "\"num_attention_heads\": 0", "num_attention_heads");
    cfg_case("cfg_type", "\"hidden_size\": 64", "\"hidden_size\": \"64\"", "must be an integer");
    cfg_case("cfg_frac", "\"hidden_size\": 64", "\"hidden_size\": 64.5", "must be an integer");
    cfg_case("cfg_model_type", "\"model_type\": \"llama\"", "\"model_type\": \"gpt2\"", "not supported");
    cfg_case("cfg_eps", "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": -1", "rms_norm_eps");
    cfg_case("cfg_theta", "\"rope_theta\": 10000.0", "\"rope_theta\": 0", "rope_theta");
    cfg_case("cfg_tie", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false", "lm_head.weight");
    cfg_case("cfg_bos", "\"bos_token_id\": 1", "\"bos_token_id\": 9999", "outside the vocabulary");
    cfg_case("cfg_dim", "\"hidden_size\": 64", "\"hidden_size\": 32", "shape");
    cfg_case("cfg_vocab", "\"vocab_size\": 512", "\"vocab_size\": 500", "config implies [500, 64]");
    cfg_case("cfg_qwen", "\"model_type\": \"llama\"", "\"model_type\": \"qwen2\"", "q_proj.bias' is missing");
    cfg_case("cfg_scaling", "\"rope_theta\"", "\"rope_scaling\": {\"type\": \"llama3\"}, \"rope_theta\"", "rope_scaling");
    cfg_case("cfg_act", "\"silu\"", "\"gelu\"", "hidden_act");

    char *d = hf_case("no_weights", NULL, 0, NULL);
    expect_fail(d, "neither model.safetensors nor model.safetensors.index.json");
    /* sharded: index naming a missing shard, or a path outside the folder */
    char *idx = ei_path_join(d, "model.safetensors.index.json");
    const char *bad1 = "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\"}}";
    write_file(idx, bad1, strlen(bad1));
    expect_fail(d, "model-00001-of-00002.safetensors: cannot open");
    const char *bad2 = "{\"weight_map\": {\"model.norm.weight\": \"../model.safetensors\"}}";
    write_file(idx, bad2, strlen(bad2));
    expect_fail(d, "not a file name in the folder");
    const char *bad3 = "{\"metadata\": {}}";
    write_file(idx, bad3, strlen(bad3));
    expect_fail(d, "weight_map");
    free(idx);
    free(d);

    d = tmp_path("empty_dir");
    assert_int_equal(ei_mkdir_p(d), 0);
    expect_fail(d, "no config.json");
    free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2c_corrupt),
        cmocka_unit_test(test_safetensors_corrupt),
        cmocka_unit_test(test_config_corrupt),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
