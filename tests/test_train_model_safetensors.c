/* safetensors writer/reader and the half-precision conversions.
 * Expected bit patterns come from the IEEE 754 binary16 / bfloat16 definitions (e.g. 1.0 = 0x3C00,
 * the largest half 65504 = 0x7BFF, the smallest subnormal 2^-24 = 0x0001), not from the code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "train/edge.h"
#include "formats/model.h"
#include "formats/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STORIES_HF EI_FIXTURES "/models/stories260K-hf"

static void test_half_conversions(void **state) {
    (void)state;
    static const struct {
        float f;
        uint16_t h;
    } f16[] = {{1.0f, 0x3C00},       {-2.0f, 0xC000},        {65504.0f, 0x7BFF},    {0.5f, 0x3800},
               {5.9604645e-8f, 0x0001}, {6.1035156e-5f, 0x0400}, {0.0f, 0x0000},        {-0.0f, 0x8000},
               {0.333251953125f, 0x3555}, {1e6f, 0x7C00},      {3.0517578e-5f, 0x0200}};
    for (size_t i = 0; i < sizeof f16 / sizeof f16[0]; i++) {
        assert_int_equal(ei_f32_to_f16(f16[i].f), f16[i].h);
        if (f16[i].h != 0x7C00) assert_true(ei_f16_to_f32(f16[i].h) == f16[i].f);
    }
    assert_true(isinf(ei_f16_to_f32(0x7C00)));
    assert_true(isnan(ei_f16_to_f32(0x7E00)));
    /* ties round to even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 */
    assert_int_equal(ei_f32_to_f16(1.0f + 0x1p-11f), 0x3C00);
    assert_int_equal(ei_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);
    static const struct {
        float f;
        uint16_t b;
    } bf[] = {{1.0f, 0x3F80}, {-2.0f, 0xC000}, {3.14159265f, 0x4049}, {0.0f, 0x0000}, {1e-40f, 0x0001}};
    for (size_t i = 0; i < sizeof bf / sizeof bf[0]; i++) assert_int_equal(ei_f32_to_bf16(bf[i].f), bf[i].b);
    assert_true(ei_bf16_to_f32(0x4049) == 3.140625f);
    assert_true(ei_bf16_to_f32(0xBF80) == -1.0f);
    /* every finite half survives f16 -> f32 -> f16 */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7C00) == 0x7C00) continue;
        assert_int_equal(ei_f32_to_f16(ei_f16_to_f32((uint16_t)h)), h);
    }
}

static void test_roundtrip(void **state) {
    (void)state;
    char dir[] = "/tmp/ei_st_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = ei_path_join(dir, "t.safetensors");
    float a[6] = {1, -2, 3.5f, 0.25f, -1e-3f, 1e4f};
    uint16_t h[3] = {0x3C00, 0xC000, 0x3555};
    int32_t ids[2] = {7, -9};
    uint8_t odd[3] = {1, 2, 3};
    ei_st_entry e[] = {
        {"odd", EI_ST_U8, 1, {3}, odd},
        {"a", EI_ST_F32, 2, {2, 3}, a},
        {"h", EI_ST_F16, 1, {3}, h},
        {"ids", EI_ST_I32, 1, {2}, ids},
        {"empty", EI_ST_F32, 2, {0, 4}, NULL},
    };
    const char *meta[] = {"format", "pt", "note", "written by a test", NULL};
    assert_int_equal(ei_st_write(path, e, 5, meta), 0);
    ei_st_file *f = ei_st_open(path);
    if (!f) fail_msg("%s", ei_error_get());
    assert_int_equal(ei_st_count(f), 5);
    assert_string_equal(ei_st_metadata(f, "note"), "written by a test");
    assert_null(ei_st_metadata(f, "absent"));
    assert_null(ei_st_find(f, "absent"));
    const ei_st_tensor *t = ei_st_find(f, "a");
    assert_non_null(t);
    assert_int_equal(t->dtype, EI_ST_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[1], 3);
    float got[6];
    assert_int_equal(ei_st_to_f32(t, got), 0);
    assert_memory_equal(got, a, sizeof a);
    t = ei_st_find(f, "h");
    assert_int_equal(ei_st_to_f32(t, got), 0);
    assert_true(got[0] == 1.0f && got[1] == -2.0f && got[2] == 0.333251953125f);
    t = ei_st_find(f, "ids");
    assert_memory_equal(t->data, ids, sizeof ids);
    assert_int_equal(ei_st_to_f32(t, got), -1);
    assert_int_equal(ei_st_find(f, "empty")->numel, 0);
    assert_int_equal(ei_st_find(f, "odd")->nbytes, 3);
    ei_st_close(f);
    /* the data block starts 8-byte aligned */
    char *raw;
    size_t len;
    assert_int_equal(ei_file_read_all(path, &raw, &len), 0);
    uint64_t hl;
    memcpy(&hl, raw, 8);
    assert_int_equal(hl % 8, 0);
    assert_int_equal(len, 8 + hl + 3 + 24 + 6 + 8);
    free(raw);
    unlink(path);
    rmdir(dir);
    free(path);
}

/* Rewrites the stories260K HF model with the writer: (1) all tensors F32 in one file, reordered
 * -> bit-identical logits; (2) every tensor BF16 -> logits equal those of the F32 model whose
 * weights were rounded to bfloat16 first. */
static void test_rewrite_model(void **state) {
    (void)state;
    ei_st_file *src = ei_st_open(STORIES_HF "/model.safetensors");
    assert_non_null(src);
    int n = ei_st_count(src);
    char dir[] = "/tmp/ei_st_model_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *d32 = ei_path_join(dir, "f32"), *d16 = ei_path_join(dir, "bf16"), *dr = ei_path_join(dir, "rounded");
    ei_st_entry *e32 = calloc((size_t)n, sizeof *e32), *e16 = calloc((size_t)n, sizeof *e16),
                *er = calloc((size_t)n, sizeof *er);
    float **fbuf = calloc((size_t)n, sizeof *fbuf), **rbuf = calloc((size_t)n, sizeof *rbuf);
    uint16_t **hbuf = calloc((size_t)n, sizeof *hbuf);
    for (int i = 0; i < n; i++) {
        const ei_st_tensor *t = ei_st_get(src, n - 1 - i); /* reversed order */
        fbuf[i] = malloc(t->numel * 4);
        rbuf[i] = malloc(t->numel * 4);
        hbuf[i] = malloc(t->numel * 2);
        assert_int_equal(ei_st_to_f32(t, fbuf[i]), 0);
        for (size_t k = 0; k < t->numel; k++) {
            hbuf[i][k] = ei_f32_to_bf16(fbuf[i][k]);
            rbuf[i][k] = ei_bf16_to_f32(hbuf[i][k]);
        }
        ei_st_entry base = {t->name, EI_ST_F32, t->ndim, {0}, fbuf[i]};
        for (int k = 0; k < t->ndim; k++) base.shape[k] = t->shape[k];
        e32[i] = base;
        e16[i] = base;
        e16[i].dtype = EI_ST_BF16;
        e16[i].data = hbuf[i];
        er[i] = base;
        er[i].data = rbuf[i];
    }
    char *cfg;
    size_t cfg_len;
    assert_int_equal(ei_file_read_all(STORIES_HF "/config.json", &cfg, &cfg_len), 0);
    const char *dirs[3] = {d32, d16, dr};
    ei_st_entry *sets[3] = {e32, e16, er};
    for (int s = 0; s < 3; s++) {
        assert_int_equal(ei_mkdir_p(dirs[s]), 0);
        char *p = ei_path_join(dirs[s], "model.safetensors");
        assert_int_equal(ei_st_write(p, sets[s], n, NULL), 0);
        free(p);
        p = ei_path_join(dirs[s], "config.json");
        FILE *fp = fopen(p, "wb");
        assert_int_equal(fwrite(cfg, 1, cfg_len, fp), cfg_len);
        fclose(fp);
        free(p);
    }
    int32_t ids[12] = {1, 403, 261, 378, 10, 301, 282, 264, 45, 7, 496, 2};
    float lg[4][12 * 512];
    const char *paths[4] = {STORIES_HF, d32, d16, dr};
    for (int s = 0; s < 4; s++) {
        ei_model *m = ei_model_load(paths[s]);
        if (!m) fail_msg("%s", ei_error_get());
        ei_opts o;
        ei_opts_default(&o);
        ei_edge *e = ei_edge_new(m, &o, NULL, EI_MODE_FULL, AG_F32);
        assert_non_null(e);
        assert_int_equal(ei_edge_feed_all(e, ids, 12, lg[s]), 0);
        ei_edge_free(e);
        ei_model_free(m);
    }
    assert_memory_equal(lg[0], lg[1], sizeof lg[0]);
    assert_memory_equal(lg[2], lg[3], sizeof lg[0]);
    double diff = 0.0; /* bf16 rounding must change the logits, a little */
    for (int i = 0; i < 12 * 512; i++) diff = fmax(diff, fabs(lg[0][i] - lg[2][i]));
    assert_true(diff > 1e-4 && diff < 1.0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < n; i++) {
        free(fbuf[i]);
        free(rbuf[i]);
        free(hbuf[i]);
    }
    free(fbuf);
    free(rbuf);
    free(hbuf);
    free(e32);
    free(e16);
    free(er);
    free(cfg);
    free(d32);
    free(d16);
    free(dr);
    ei_st_close(src);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_rewrite_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
