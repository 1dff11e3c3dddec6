/* core/ei_io: FNV-1a 64 against the published test vectors, and chaining through the seed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_io.h"

#include <string.h>

static void test_fnv1a_vectors(void **state) {
    (void)state;
    /* http://www.isthe.com/chongo/tech/comp/fnv/ (offset basis; "a"; "foobar") */
    assert_true(ei_hash_fnv1a("", 0, 0) == 0xcbf29ce484222325ULL);
    assert_true(ei_hash_fnv1a("a", 1, 0) == 0xaf63dc4c8601ec8cULL);
    assert_true(ei_hash_fnv1a("foobar", 6, 0) == 0x85944171f73967e8ULL);
    /* the seed continues a hash: foo then bar equals foobar */
    assert_true(ei_hash_fnv1a("bar", 3, ei_hash_fnv1a("foo", 3, 0)) == 0x85944171f73967e8ULL);
    assert_true(ei_hash_fnv1a("foobaR", 6, 0) != 0x85944171f73967e8ULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fnv1a_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
