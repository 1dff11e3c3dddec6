/* core/ei_rng: splitmix64 and xoshiro256** against values of the reference algorithms (splitmix64
 * from seed 1234567: the values published with Java's SplittableRandom/Vigna's splitmix64.c;
 * xoshiro256** and jump: an independent Python transcription of xoshiro256starstar.c), plus the
 * statistics of the derived samplers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_splitmix(void **state) {
    (void)state;
    static const uint64_t want[] = {6457827717110365317ULL, 3203168211198807973ULL, 9817491932198370423ULL,
                                    4593380528125082431ULL, 16408922859458223821ULL};
    uint64_t s = 1234567;
    for (int i = 0; i < 5; i++) assert_true(ei_splitmix64(&s) == want[i]);
}

static void test_xoshiro_reference(void **state) {
    (void)state;
    static const uint64_t want[] = {11520ULL, 0ULL, 1509978240ULL, 1215971899390074240ULL, 1216172134540287360ULL};
    ei_rng r;
    const uint64_t s0[4] = {1, 2, 3, 4};
    assert_int_equal(ei_rng_set_state(&r, s0), 0);
    for (int i = 0; i < 5; i++) assert_true(ei_rng_next(&r) == want[i]);

    static const uint64_t state42[] = {0xbdd732262feb6e95ULL, 0x28efe333b266f103ULL, 0x47526757130f9f52ULL,
                                       0x581ce1ff0e4ae394ULL};
    static const uint64_t out42[] = {1546998764402558742ULL, 6990951692964543102ULL, 12544586762248559009ULL,
                                     17057574109182124193ULL, 18295552978065317476ULL, 14199186830065750584ULL};
    ei_rng_seed(&r, 42);
    for (int i = 0; i < 4; i++) assert_true(r.s[i] == state42[i]);
    for (int i = 0; i < 6; i++) assert_true(ei_rng_next(&r) == out42[i]);

    static const uint64_t jumped[] = {10122426448480695249ULL, 8079205330032121950ULL, 7289065458748526725ULL,
                                      9477464255293849680ULL};
    assert_int_equal(ei_rng_set_state(&r, s0), 0);
    ei_rng_jump(&r);
    for (int i = 0; i < 4; i++) assert_true(r.s[i] == jumped[i]);
    assert_true(ei_rng_next(&r) == 13534147089533256664ULL);

    const uint64_t zero[4] = {0, 0, 0, 0};
    assert_int_equal(ei_rng_set_state(&r, zero), -1);
}

static void test_save_restore(void **state) {
    (void)state;
    ei_rng a, b;
    ei_rng_seed(&a, 7);
    for (int i = 0; i < 100; i++) ei_rng_next(&a);
    uint64_t saved[4];
    memcpy(saved, a.s, sizeof saved);
    uint64_t x[10];
    for (int i = 0; i < 10; i++) x[i] = ei_rng_next(&a);
    assert_int_equal(ei_rng_set_state(&b, saved), 0);
    for (int i = 0; i < 10; i++) assert_true(ei_rng_next(&b) == x[i]);
}

static void test_samplers(void **state) {
    (void)state;
    ei_rng r;
    ei_rng_seed(&r, 2024);
    /* uniform: range, mean 1/2, variance 1/12 */
    double s = 0, s2 = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double u = ei_rng_uniform(&r);
        assert_true(u >= 0 && u < 1);
        s += u;
        s2 += u * u;
    }
    assert_true(fabs(s / n - 0.5) < 0.005);
    assert_true(fabs(s2 / n - s * s / n / n - 1.0 / 12) < 0.002);
    /* below: every residue about equally often, never out of range */
    int cnt[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint64_t k = ei_rng_below(&r, 7);
        assert_true(k < 7);
        cnt[k]++;
    }
    for (int i = 0; i < 7; i++) assert_true(abs(cnt[i] - 10000) < 500);
    assert_true(ei_rng_below(&r, 1) == 0);
    assert_true(ei_rng_below(&r, 0) == 0);
    /* normal: mean 0, variance 1 */
    s = s2 = 0;
    for (int i = 0; i < n; i++) {
        double z = ei_rng_normal(&r);
        assert_true(isfinite(z));
        s += z;
        s2 += z * z;
    }
    assert_true(fabs(s / n) < 0.01);
    assert_true(fabs(s2 / n - 1) < 0.02);
}

static void test_shuffle(void **state) {
    (void)state;
    int64_t a[50], b[50];
    for (int i = 0; i < 50; i++) a[i] = b[i] = i;
    ei_rng r1, r2;
    ei_rng_seed(&r1, 5);
    ei_rng_seed(&r2, 5);
    ei_rng_shuffle_i64(&r1, a, 50);
    ei_rng_shuffle_i64(&r2, b, 50);
    int seen[50] = {0}, moved = 0;
    for (int i = 0; i < 50; i++) {
        assert_true(a[i] == b[i]); /* deterministic */
        assert_true(a[i] >= 0 && a[i] < 50);
        seen[a[i]]++;
        moved += a[i] != i;
    }
    for (int i = 0; i < 50; i++) assert_int_equal(seen[i], 1); /* a permutation */
    assert_true(moved > 40);
    /* position 0 of a 3-element shuffle is uniform over the three values */
    int first[3] = {0};
    for (int t = 0; t < 30000; t++) {
        int64_t c[3] = {0, 1, 2};
        ei_rng_shuffle_i64(&r1, c, 3);
        first[c[0]]++;
    }
    for (int i = 0; i < 3; i++) assert_true(abs(first[i] - 10000) < 450);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_splitmix),   cmocka_unit_test(test_xoshiro_reference), cmocka_unit_test(test_save_restore),
        cmocka_unit_test(test_samplers),   cmocka_unit_test(test_shuffle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
