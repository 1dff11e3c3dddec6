/* train/metrics: metrics.jsonl lines parsed back with cJSON (an independent JSON parser), null for
 * non-finite numbers, truncation on resume (later lines and a partial last line dropped), the
 * progress line and duration formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "train/metrics.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    assert_non_null(v);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void test_format(void **state) {
    (void)state;
    double gm[3] = {0.5, 0.25, 0.125}, gs[3] = {0.01, 0.02, NAN};
    ei_metrics_row r = {.step = 7, .loss = 2.345678912, .lr = 5e-3, .grad_norm = 0.75, .tokens_per_s = 1234.5,
                        .tokens = 512, .n_layers = 3, .gate_mean = gm, .gate_std = gs, .has_val = 1,
                        .val_loss = 2.5, .val_exact = 0.25};
    char buf[1024];
    int n = ei_metrics_format(&r, buf, sizeof buf);
    assert_int_equal(n, (int)strlen(buf));
    assert_null(strchr(buf, '\n'));
    cJSON *o = cJSON_Parse(buf);
    if (!o) fail_msg("not JSON: %s", buf);
    assert_true(num(o, "step") == 7);
    assert_true(fabs(num(o, "loss") - 2.345678912) < 1e-8);
    assert_true(num(o, "lr") == 5e-3);
    assert_true(num(o, "grad_norm") == 0.75);
    assert_true(num(o, "tokens_per_s") == 1234.5);
    assert_true(num(o, "tokens") == 512);
    assert_true(num(o, "val_loss") == 2.5);
    assert_true(num(o, "val_exact") == 0.25);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "gate_mean");
    assert_true(cJSON_IsArray(a) && cJSON_GetArraySize(a) == 3);
    assert_true(cJSON_GetArrayItem(a, 2)->valuedouble == 0.125);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "gate_std");
    assert_true(cJSON_IsNull(cJSON_GetArrayItem(s, 2)));
    cJSON_Delete(o);

    /* a skipped step: non-finite loss written as null, no val fields, no gate arrays */
    ei_metrics_row b = {.step = 8, .loss = NAN, .lr = 1e-3, .grad_norm = INFINITY, .skipped = 1, .bad_steps = 2};
    ei_metrics_format(&b, buf, sizeof buf);
    o = cJSON_Parse(buf);
    if (!o) fail_msg("not JSON: %s", buf);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "loss")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "grad_norm")));
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "val_loss"));
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "gate_mean"));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "skipped")));
    assert_true(num(o, "bad_steps") == 2);
    cJSON_Delete(o);

    /* a too small buffer reports the size it needed and stays terminated */
    char tiny[16];
    int need = ei_metrics_format(&r, tiny, sizeof tiny);
    assert_int_equal(need, n);
    assert_true(strlen(tiny) < sizeof tiny);
}

static int count_lines(const char *path, int64_t *last_step) {
    char *t;
    size_t len;
    assert_int_equal(ei_file_read_all(path, &t, &len), 0);
    int n = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        if (!o) fail_msg("line %d is not JSON: %s", n + 1, line);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "step");
        if (s) *last_step = (int64_t)s->valuedouble;
        cJSON_Delete(o);
        n++;
    }
    free(t);
    return n;
}

static void test_file_and_resume(void **state) {
    (void)state;
    char path[] = "/tmp/ei_metrics_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    ei_metrics *m = ei_metrics_open(path, -1);
    assert_non_null(m);
    for (int s = 1; s <= 6; s++) {
        ei_metrics_row r = {.step = s, .loss = 3.0 - 0.1 * s, .lr = 1e-3, .grad_norm = 1, .tokens_per_s = 100};
        assert_int_equal(ei_metrics_write(m, &r), 0);
        int64_t last = 0;
        assert_int_equal(count_lines(path, &last), s); /* flushed per line */
        assert_true(last == s);
    }
    ei_metrics_close(m);
    /* the run died while writing a line */
    FILE *fp = fopen(path, "ab");
    fputs("{\"step\": 7, \"lo", fp);
    fclose(fp);

    /* resume from the checkpoint of step 4: lines 5, 6 and the partial one go */
    m = ei_metrics_open(path, 4);
    assert_non_null(m);
    int64_t last = 0;
    assert_int_equal(count_lines(path, &last), 4);
    assert_true(last == 4);
    ei_metrics_row r = {.step = 5, .loss = 1, .lr = 1, .grad_norm = 1, .tokens_per_s = 1};
    assert_int_equal(ei_metrics_write(m, &r), 0);
    assert_int_equal(ei_metrics_write_raw(m, "{\"summary\": true}"), 0);
    ei_metrics_close(m);
    assert_int_equal(count_lines(path, &last), 6);
    assert_true(last == 5);

    /* a new run truncates */
    m = ei_metrics_open(path, -1);
    ei_metrics_close(m);
    char *t;
    size_t len;
    assert_int_equal(ei_file_read_all(path, &t, &len), 0);
    assert_int_equal(len, 0);
    free(t);
    unlink(path);

    assert_null(ei_metrics_open("/nonexistent/dir/metrics.jsonl", -1));
    assert_non_null(strstr(ei_error_get(), "/nonexistent/dir/metrics.jsonl"));
}

static void test_durations_and_progress(void **state) {
    (void)state;
    char b[32];
    ei_format_duration(45, b, sizeof b);
    assert_string_equal(b, "45s");
    ei_format_duration(185, b, sizeof b);
    assert_string_equal(b, "3m05s");
    ei_format_duration(2 * 3600 + 7 * 60 + 20, b, sizeof b);
    assert_string_equal(b, "2h07m");
    ei_format_duration(3 * 86400 + 4 * 3600 + 59, b, sizeof b);
    assert_string_equal(b, "3d04h");
    ei_format_duration(-1, b, sizeof b);
    assert_string_equal(b, "?");
    ei_format_duration(NAN, b, sizeof b);
    assert_string_equal(b, "?");

    FILE *fp = tmpfile();
    assert_non_null(fp);
    ei_progress p;
    ei_progress_init(&p, fp, 0, 10);
    p.min_interval = 0;
    ei_metrics_row r = {.step = 5, .loss = 2.5, .lr = 4.5e-3, .grad_norm = 0.42, .tokens_per_s = 5120};
    ei_progress_report(&p, &r);
    r.step = 10;
    r.has_val = 1;
    r.val_loss = 2.75;
    ei_progress_report(&p, &r);
    ei_progress_done(&p);
    rewind(fp);
    char text[512] = "";
    size_t k = fread(text, 1, sizeof text - 1, fp);
    text[k] = '\0';
    fclose(fp);
    assert_non_null(strstr(text, "step  5/10  loss 2.5000  lr 4.50e-03  |g| 0.42  5.1k tok/s  ETA "));
    assert_non_null(strstr(text, "step 10/10  loss 2.5000  val 2.7500"));
    assert_non_null(strstr(text, "ETA 0s"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_file_and_resume),
        cmocka_unit_test(test_durations_and_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
