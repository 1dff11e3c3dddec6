/* Fuzz target: `.eis` evaluation sets (text/evalset.c: header, counts against the bytes that
 * remain, items, token ids against the vocabulary). Each input is parsed as given (the checks up
 * to the checksum), then with its file-size field and FNV-1a trailer recomputed, so the fuzzer gets
 * past the checksum to the structure behind it. A set that parses must serialise to bytes that
 * parse back and serialise identically. */
#include "fuzz.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "text/evalset.h"

#include <stdlib.h>
#include <string.h>

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void parse_and_check(const uint8_t *buf, size_t n) {
    ei_evalset *s = ei_evalset_parse(buf, n, "input.eis");
    fz_note(".eis", s != NULL);
    if (!s) return;
    uint8_t *out = NULL;
    size_t on = 0;
    if (ei_evalset_serialize(s, &out, &on) != 0) fz_fail("a parsed set does not serialise: %s", ei_error_get());
    ei_evalset *back = ei_evalset_parse(out, on, "reserialised");
    if (!back) fz_fail("a reserialised set does not parse: %s", ei_error_get());
    uint8_t *out2 = NULL;
    size_t on2 = 0;
    if (ei_evalset_serialize(back, &out2, &on2) != 0 || on2 != on || memcmp(out, out2, on) != 0)
        fz_fail("serialising is not stable");
    free(out);
    free(out2);
    ei_evalset_free(back);
    ei_evalset_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    parse_and_check(data, size); /* as given: the checks before the checksum */
    if (size < 56) return 0;
    uint8_t *buf = malloc(size);
    if (!buf) return 0;
    memcpy(buf, data, size);
    put_u64(buf + 16, (uint64_t)size);
    put_u64(buf + size - 8, ei_hash_fnv1a(buf, size - 8, 0));
    parse_and_check(buf, size);
    free(buf);
    return 0;
}
