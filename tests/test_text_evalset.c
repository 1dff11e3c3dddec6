/* The .eis evaluation-set format: round trip of random items, and every kind of damage (truncation
 * at each length, every byte flipped, wrong magic/version/sizes) gives an error, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "text/evalset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng = 42;
static uint32_t rnd(void) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng >> 33);
}

static ei_evalset *random_set(int n_items) {
    ei_evalset *s = ei_evalset_new("sentencepiece:tok512:0123", 512, 1, 2);
    assert_non_null(s);
    for (int i = 0; i < n_items; i++) {
        int32_t prompt[300], ref[20];
        size_t np = rnd() % 300, nr = rnd() % 20;
        for (size_t k = 0; k < np; k++) prompt[k] = (int32_t)(rnd() % 512);
        for (size_t k = 0; k < nr; k++) ref[k] = (int32_t)(rnd() % 512);
        char tag[32], text[64];
        snprintf(tag, sizeof tag, "item:%d", i);
        snprintf(text, sizeof text, "answer %u (%d)", rnd() % 99999, i);
        assert_int_equal(ei_evalset_add(s, i % EI_TASK_COUNT_, tag, prompt, np, i % 3 ? text : NULL, ref, nr), 0);
    }
    return s;
}

static void assert_same(const ei_evalset *a, const ei_evalset *b) {
    assert_string_equal(a->tokenizer, b->tokenizer);
    assert_int_equal(a->vocab_size, b->vocab_size);
    assert_int_equal(a->bos, b->bos);
    assert_int_equal(a->eos, b->eos);
    assert_int_equal(a->n_items, b->n_items);
    for (uint32_t i = 0; i < a->n_items; i++) {
        const ei_eval_item *x = &a->items[i], *y = &b->items[i];
        assert_int_equal(x->type, y->type);
        assert_string_equal(x->tag, y->tag);
        assert_int_equal(x->n_prompt, y->n_prompt);
        assert_memory_equal(x->prompt, y->prompt, 4 * (size_t)x->n_prompt + 0 * 1);
        assert_string_equal(x->ref_text, y->ref_text);
        assert_int_equal(x->ref_text_len, y->ref_text_len);
        assert_int_equal(x->n_ref, y->n_ref);
        if (x->n_ref) assert_memory_equal(x->ref_ids, y->ref_ids, 4 * (size_t)x->n_ref);
    }
}

static void test_round_trip(void **state) {
    (void)state;
    ei_evalset *s = random_set(25);
    char path[512];
    snprintf(path, sizeof path, "%s/test_evalset_%ld.eis", EI_BINARY_DIR, (long)getpid());
    assert_int_equal(ei_evalset_write(s, path), 0);
    ei_evalset *r = ei_evalset_read(path);
    assert_non_null(r);
    assert_same(s, r);
    ei_evalset_free(r);
    unlink(path);
    /* An empty set is valid too. */
    ei_evalset *e = ei_evalset_new("x", 10, -1, -1);
    uint8_t *buf;
    size_t size;
    assert_int_equal(ei_evalset_serialize(e, &buf, &size), 0);
    ei_evalset *er = ei_evalset_parse(buf, size, "empty");
    assert_non_null(er);
    assert_int_equal(er->n_items, 0);
    assert_int_equal(er->bos, -1);
    ei_evalset_free(er);
    ei_evalset_free(e);
    free(buf);
    ei_evalset_free(s);
}

static void test_task_names(void **state) {
    (void)state;
    for (int t = 0; t < EI_TASK_COUNT_; t++) assert_int_equal(ei_task_type_parse(ei_task_type_name(t)), t);
    assert_int_equal(ei_task_type_parse("multiple-choice"), EI_TASK_CHOICE);
    assert_int_equal(ei_task_type_parse("bogus"), -1);
    assert_null(ei_task_type_name(EI_TASK_COUNT_));
}

static void test_add_rejects(void **state) {
    (void)state;
    ei_evalset *s = ei_evalset_new("t", 100, 1, 2);
    int32_t bad[2] = {5, 100};
    assert_int_equal(ei_evalset_add(s, EI_TASK_QA, "a", bad, 2, "x", NULL, 0), -1);
    assert_non_null(strstr(ei_error_get(), "outside"));
    assert_int_equal(ei_evalset_add(s, 99, "a", bad, 1, "x", NULL, 0), -1);
    assert_int_equal(s->n_items, 0);
    ei_evalset_free(s);
}

static void test_corruption(void **state) {
    (void)state;
    ei_evalset *s = random_set(4);
    uint8_t *buf;
    size_t size;
    assert_int_equal(ei_evalset_serialize(s, &buf, &size), 0);
    ei_evalset_free(s);
    ei_evalset *ok = ei_evalset_parse(buf, size, "good");
    assert_non_null(ok);
    ei_evalset_free(ok);
    /* Every truncation. A copy of exactly the kept bytes, so ASan sees any read past them. */
    for (size_t n = 0; n < size; n++) {
        uint8_t *t = malloc(n ? n : 1);
        memcpy(t, buf, n);
        ei_evalset *r = ei_evalset_parse(t, n, "truncated");
        assert_null(r);
        assert_true(strlen(ei_error_get()) > 0);
        free(t);
    }
    /* Every byte flipped. */
    for (size_t i = 0; i < size; i++) {
        buf[i] ^= 0x5A;
        ei_evalset *r = ei_evalset_parse(buf, size, "flipped");
        assert_null(r);
        buf[i] ^= 0x5A;
    }
    /* A wrong count or length with a recomputed checksum still fails the structural checks. */
    uint8_t *c = malloc(size);
    const char *cases[] = {"count", "version", "taglen", "vocab"};
    for (int k = 0; k < 4; k++) {
        memcpy(c, buf, size);
        if (k == 0) c[24] += 1;          /* one more item than present */
        if (k == 1) c[8] = 9;            /* version 9 */
        if (k == 2) c[48 + 28 + 4] = 0xff; /* first item's tag length (after the 28-byte identity) */
        if (k == 3) c[28] = 3, c[29] = 0; /* vocab 3: the ids no longer fit */
        uint64_t h = 1469598103934665603ULL;
        for (size_t i = 0; i < size - 8; i++) h = (h ^ c[i]) * 1099511628211ULL;
        for (int i = 0; i < 8; i++) c[size - 8 + i] = (uint8_t)(h >> (8 * i));
        ei_evalset *r = ei_evalset_parse(c, size, cases[k]);
        if (r) fail_msg("case %s parsed", cases[k]);
    }
    free(c);
    assert_null(ei_evalset_read(EI_BINARY_DIR "/no/such/file.eis"));
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_task_names),
        cmocka_unit_test(test_add_rejects),
        cmocka_unit_test(test_corruption),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
