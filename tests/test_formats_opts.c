/* formats/gates: the EdgeInfinite options travel with the gates. Gate-file metadata and the merged
 * export's edgeinfinite.json both carry every option of model/options.h and read back into an
 * ei_opts identical to the one written (non-default values of every option); unknown option keys
 * are errors naming the key; paths with quotes and beyond any fixed buffer stay valid JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "formats/gates.h"
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[64];

static int setup(void **state) {
    (void)state;
    strcpy(g_dir, "/tmp/ei_fopts_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *tmp_path(const char *name) {
    char *p = ei_path_join(g_dir, name);
    assert_non_null(p);
    return p;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Every option away from its default (head gate, delta rule, design positions among them). */
static void odd_opts(ei_opts *o) {
    ei_opts_default(o);
    assert_int_equal(ei_opts_set(o, "segment", "12"), 0);
    assert_int_equal(ei_opts_set(o, "sink", "3"), 0);
    assert_int_equal(ei_opts_set(o, "window", "20"), 0);
    assert_int_equal(ei_opts_set(o, "gate", "head"), 0);
    assert_int_equal(ei_opts_set(o, "memory_rule", "delta"), 0);
    assert_int_equal(ei_opts_set(o, "route_threshold", "30"), 0);
    assert_int_equal(ei_opts_set(o, "bptt_segments", "2"), 0);
    assert_int_equal(ei_opts_set(o, "positions", "design"), 0);
    o->gate_init_bias = -0.1 - 1.0 / 3.0; /* 17 significant digits to read back */
    ei_opts def;
    ei_opts_default(&def);
    for (int i = 0; i < ei_opts_count(); i++) {
        const ei_opt_desc *d = ei_opt_desc_at(i);
        assert_memory_not_equal((char *)o + d->offset, (char *)&def + d->offset, d->size);
    }
}

/* Field by field, the bytes of every option. */
static void assert_same_opts(const ei_opts *a, const ei_opts *b) {
    for (int i = 0; i < ei_opts_count(); i++) {
        const ei_opt_desc *d = ei_opt_desc_at(i);
        if (memcmp((const char *)a + d->offset, (const char *)b + d->offset, d->size) != 0) {
            char va[64], vb[64];
            ei_opts_get_str(a, i, va, sizeof va);
            ei_opts_get_str(b, i, vb, sizeof vb);
            fail_msg("option %s: %s != %s", d->name, va, vb);
        }
    }
    assert_int_equal(ei_opts_diff(a, b, 0), -1);
}

static const ei_model_config tiny_cfg = {.dim = 8, .n_layers = 2, .n_heads = 2, .head_dim = 4};

static void test_gate_metadata_round_trip(void **s) {
    (void)s;
    ei_opts o, back;
    odd_opts(&o);
    ei_gates *g = ei_gates_new(&tiny_cfg, EI_GATE_HEAD, o.gate_init_bias);
    assert_non_null(g);
    char *path = tmp_path("gates.safetensors");
    assert_int_equal(ei_gates_save_opts(g, &o, path), 0);
    ei_opts_default(&back);
    assert_int_equal(ei_gates_file_opts(path, &back), 0);
    assert_same_opts(&o, &back);
    /* each option is in the metadata under its key, as text that reads back */
    ei_st_file *f = ei_st_open(path);
    assert_non_null(f);
    for (int i = 0; i < ei_opts_count(); i++) {
        char v[64];
        ei_opts_get_str(&o, i, v, sizeof v);
        const char *m = ei_st_metadata(f, ei_opt_desc_at(i)->name);
        assert_non_null(m);
        assert_string_equal(m, v);
    }
    assert_string_equal(ei_st_metadata(f, "format"), "edgeinfinite-gates");
    ei_st_close(f);
    /* a plain save has no options: reading leaves o alone (except the gate kind) */
    assert_int_equal(ei_gates_save(g, path), 0);
    ei_opts_default(&back);
    assert_int_equal(ei_gates_file_opts(path, &back), 0);
    assert_int_equal(back.gate, EI_GATE_HEAD);
    assert_int_equal(back.segment, EI_DEFAULT_SEGMENT);
    /* the options must describe these parameters */
    o.gate = EI_GATE_TOKEN;
    assert_int_equal(ei_gates_save_opts(g, &o, path), -1);
    o.gate = EI_GATE_HEAD;
    o.window = -5;
    assert_int_equal(ei_gates_save_opts(g, &o, path), -1);
    assert_non_null(strstr(ei_error_get(), "window"));
    ei_gates_free(g);
    free(path);
}

/* A gate file with the given metadata (NULL-terminated pairs) and one head-gate tensor per layer. */
static void write_gates_meta(const char *path, const char *const *meta) {
    float beta[2 * 2] = {0};
    ei_st_entry e[2] = {{"model.layers.0.self_attn.memory_gate.beta", EI_ST_F32, 1, {2}, beta},
                        {"model.layers.1.self_attn.memory_gate.beta", EI_ST_F32, 1, {2}, beta + 2}};
    assert_int_equal(ei_st_write(path, e, 2, meta), 0);
}

static void test_gate_metadata_errors(void **s) {
    (void)s;
    char *path = tmp_path("meta.safetensors");
    ei_opts o, before;
    ei_opts_default(&o);
    before = o;
    const char *unknown[] = {"format", "edgeinfinite-gates", "segment", "64", "frobnicate", "3", NULL};
    write_gates_meta(path, unknown);
    assert_int_equal(ei_gates_file_opts(path, &o), -1);
    assert_non_null(strstr(ei_error_get(), "unknown option 'frobnicate'"));
    assert_non_null(strstr(ei_error_get(), path));
    assert_memory_equal(&o, &before, sizeof o); /* nothing half-applied */
    const char *range[] = {"format", "edgeinfinite-gates", "window", "9999999", NULL};
    write_gates_meta(path, range);
    assert_int_equal(ei_gates_file_opts(path, &o), -1);
    assert_non_null(strstr(ei_error_get(), "window: 9999999 is out of range"));
    const char *badenum[] = {"format", "edgeinfinite-gates", "positions", "sideways", NULL};
    write_gates_meta(path, badenum);
    assert_int_equal(ei_gates_file_opts(path, &o), -1);
    assert_non_null(strstr(ei_error_get(), "positions"));
    /* a file from elsewhere (no format of ours): its option keys count, other keys are its own */
    const char *foreign[] = {"format", "pt", "author", "someone", "positions", "design", NULL};
    write_gates_meta(path, foreign);
    assert_int_equal(ei_gates_file_opts(path, &o), 0);
    assert_int_equal(o.positions, EI_POS_DESIGN);
    /* no metadata at all */
    write_gates_meta(path, NULL);
    o = before;
    assert_int_equal(ei_gates_file_opts(path, &o), 0);
    assert_memory_equal(&o, &before, sizeof o);
    free(path);
}

/* A folder name with quotes, backslashes and a newline, nested past 2 KB of path. */
static char *awkward_model_path(void) {
    char *dir = strdup(g_dir);
    assert_non_null(dir);
    for (int i = 0; i < 12; i++) {
        char comp[256];
        snprintf(comp, sizeof comp, "%02d_\"quoted\" \\back\\slash\nnew line %0180d", i, 0);
        char *next = ei_path_join(dir, comp);
        free(dir);
        dir = next;
        assert_non_null(dir);
    }
    assert_int_equal(ei_mkdir_p(dir), 0);
    char *model = ei_path_join(dir, "model \"x\".bin");
    free(dir);
    write_file(model, "not a model, only a path that must survive");
    assert_true(strlen(model) > 2048);
    return model;
}

static void test_merged_json_round_trip(void **s) {
    (void)s;
    ei_opts o, back;
    odd_opts(&o);
    char *model = awkward_model_path();
    ei_merged_info info = {model, "llama2c", 0x0123456789abcdefull, "gates.safetensors", 7, 30};
    char *path = tmp_path("edgeinfinite.json");
    assert_int_equal(ei_merged_json_write(path, &o, &info), 0);
    ei_opts_default(&back);
    char *base = NULL;
    assert_int_equal(ei_opts_from_json_file(path, &back, &base), 0);
    assert_same_opts(&o, &back);
    /* stored absolute: resolves from anywhere, the merged folder included */
    assert_non_null(base);
    assert_int_equal(base[0], '/');
    assert_string_equal(base, model);
    assert_true(ei_path_exists(base));
    free(base);
    /* valid JSON with the documented fields */
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(ei_file_read_all(path, &text, &len), 0);
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(root, "base_model")->valuestring, model);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(root, "base_model_hash")->valuestring, "0123456789abcdef");
    assert_true(cJSON_GetObjectItemCaseSensitive(root, "trained_steps")->valuedouble == 7);
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(root, "options");
    assert_int_equal(cJSON_GetArraySize(opts), ei_opts_count());
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(opts, "positions")->valuestring, "design");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(opts, "memory_rule")->valuestring, "delta");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(opts, "gate")->valuestring, "head");
    assert_true(cJSON_GetObjectItemCaseSensitive(opts, "gate_init_bias")->valuedouble == o.gate_init_bias);
    cJSON_Delete(root);
    free(text);
    free(model);
    free(path);
}

static void test_merged_json_errors(void **s) {
    (void)s;
    char *path = tmp_path("bad.json");
    ei_opts o, before;
    ei_opts_default(&o);
    before = o;
    write_file(path, "{\"format\": \"edgeinfinite\", \"options\": {\"segment\": 64, \"frobnicate\": 1}}");
    assert_int_equal(ei_opts_from_json_file(path, &o, NULL), -1);
    assert_non_null(strstr(ei_error_get(), "unknown option 'frobnicate'"));
    assert_memory_equal(&o, &before, sizeof o);
    write_file(path, "{\"format\": \"edgeinfinite\", \"options\": {\"segment\": 0}}");
    assert_int_equal(ei_opts_from_json_file(path, &o, NULL), -1);
    assert_non_null(strstr(ei_error_get(), "segment: 0 is out of range"));
    write_file(path, "{\"format\": \"edgeinfinite\", \"options\": {\"segment\": 12.5}}");
    assert_int_equal(ei_opts_from_json_file(path, &o, NULL), -1);
    assert_non_null(strstr(ei_error_get(), "segment"));
    write_file(path, "{\"format\": \"edgeinfinite\", \"options\": {\"gate\": 1}}");
    assert_int_equal(ei_opts_from_json_file(path, &o, NULL), -1);
    assert_non_null(strstr(ei_error_get(), "gate: expected one of token|head"));
    write_file(path, "{\"format\": \"edgeinfinite\", \"options\": {\"window\": \"64\"}}");
    assert_int_equal(ei_opts_from_json_file(path, &o, NULL), -1);
    assert_non_null(strstr(ei_error_get(), "window: expected a number"));
    /* the layout before the options table: options at the top level */
    write_file(path, "{\"format\": \"edgeinfinite\", \"segment\": 128}");
    assert_int_equal(ei_opts_from_json_file(path, &o, NULL), -1);
    assert_non_null(strstr(ei_error_get(), "no \"options\""));
    write_file(path, "{\"format\": \"edgeinfinite\", \"memory_eps\": 1e-5, \"options\": {}}");
    assert_int_equal(ei_opts_from_json_file(path, &o, NULL), -1);
    assert_non_null(strstr(ei_error_get(), "memory_eps"));
    write_file(path, "{\"format\": \"edgeinfinite\", \"options\": {");
    assert_int_equal(ei_opts_from_json_file(path, &o, NULL), -1);
    assert_memory_equal(&o, &before, sizeof o);
    /* a hand-edited relative base_model resolves against the file's folder */
    write_file(path, "{\"format\": \"edgeinfinite\", \"base_model\": \"m/model.bin\", \"options\": {\"sink\": 2}}");
    char *base = NULL;
    assert_int_equal(ei_opts_from_json_file(path, &o, &base), 0);
    assert_int_equal(o.sink, 2);
    char want[128];
    snprintf(want, sizeof want, "%s/m/model.bin", g_dir);
    assert_string_equal(base, want);
    free(base);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gate_metadata_round_trip),
        cmocka_unit_test(test_gate_metadata_errors),
        cmocka_unit_test(test_merged_json_round_trip),
        cmocka_unit_test(test_merged_json_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
