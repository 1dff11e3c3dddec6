/* What every loaded tokenizer promises (text/tokenizer.h), checked by the tokenizer fuzz targets:
 * ids in [0, vocab), decoding and streaming decoding agree, pieces look up to themselves, and the
 * plain vocabulary exports, passes its own check and rebuilds into a tokenizer that encodes
 * SentencePiece kinds the same way (what `ei compile` and the device rely on). */
#include "tok_check.h"

#include "fuzz.h"

#include "core/ei_error.h"
#include "text/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

static void check_ids(const ei_tokenizer *t, const int32_t *ids, size_t n, const char *what) {
    int v = ei_tokenizer_vocab_size(t);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= v) fz_fail("%s: id %d at %zu outside [0, %d)", what, ids[i], i, v);
}

/* Streaming decode equals whole decode when no control token sits in the middle (after one the
 * streaming decoder drops the dummy prefix again, by design: a new turn starts there). */
static void check_decode(const ei_tokenizer *t, const int32_t *ids, size_t n) {
    char *text = NULL;
    size_t len = 0;
    if (ei_tokenizer_decode(t, ids, n, &text, &len) != 0) fz_fail("decode failed: a valid id sequence");
    if (strlen(text) > len) fz_fail("decode: length %zu but a %zu-byte string", len, strlen(text));
    int plain = 1;
    for (size_t i = 1; i < n && plain; i++) plain = t->types[ids[i]] != EI_PIECE_CONTROL;
    if (plain) {
        size_t cap = 16;
        for (size_t i = 0; i < n; i++) cap += 4 * strlen(ei_tokenizer_piece(t, ids[i])) + 16;
        char *s = malloc(cap), *piece = malloc(cap);
        size_t k = 0;
        int prev = -1;
        for (size_t i = 0; s && piece && i < n; i++) {
            int m = ei_tokenizer_decode_piece(t, prev, ids[i], piece, cap);
            memcpy(s + k, piece, (size_t)m);
            k += (size_t)m;
            prev = ids[i];
        }
        if (s && piece && (k != len || memcmp(s, text, len) != 0))
            fz_fail("streaming decode (%zu bytes) differs from decode (%zu bytes)", k, len);
        free(s);
        free(piece);
    }
    free(text);
}

void fz_check_encode(const ei_tokenizer *t, const ei_tokenizer *rebuilt, const char *s, size_t n) {
    for (int v = 0; v < 4; v++) {
        int32_t *ids = NULL;
        size_t k = 0;
        int rc = v == 3 ? ei_tokenizer_encode_cont(t, s, n, 1, &ids, &k)
                        : ei_tokenizer_encode(t, s, n, v & 1, v >> 1, &ids, &k);
        if (rc != 0) {
            /* a loaded tokenizer encodes any bytes; only memory may run out */
            free(ids);
            continue;
        }
        check_ids(t, ids, k, "encode");
        check_decode(t, ids, k);
        if (rebuilt) {
            int32_t *r = NULL;
            size_t rk = 0;
            int rrc = v == 3 ? ei_tokenizer_encode_cont(rebuilt, s, n, 1, &r, &rk)
                             : ei_tokenizer_encode(rebuilt, s, n, v & 1, v >> 1, &r, &rk);
            if (rrc == 0 && (rk != k || memcmp(r, ids, k * sizeof *ids) != 0))
                fz_fail("the tokenizer rebuilt from its vocabulary encodes %zu bytes differently (%zu vs %zu ids)", n,
                        rk, k);
            free(r);
        }
        free(ids);
    }
}

void fz_check_tokenizer(const ei_tokenizer *t, const uint8_t *extra, size_t extra_len) {
    int v = ei_tokenizer_vocab_size(t);
    if (v < 1) fz_fail("vocabulary size %d", v);
    int bos = ei_tokenizer_bos(t), eos = ei_tokenizer_eos(t);
    if (bos < -1 || bos >= v || eos < -1 || eos >= v) fz_fail("bos/eos %d/%d outside [-1, %d)", bos, eos, v);
    if (!*ei_tokenizer_identity(t)) fz_fail("empty identity");
    ei_tokenizer_vocab_hash(t);
    /* Every piece finds an id holding the same bytes (pieces may hold NUL bytes: compare by length). */
    for (int id = 0; id < v && id < 4096; id++) {
        size_t len, blen;
        const char *p = ei_tok_piece(t, id, &len);
        if (!len) continue;
        int back = ei_tok_map_get(t, p, len);
        const char *q = back >= 0 ? ei_tok_piece(t, back, &blen) : NULL;
        if (!q || blen != len || memcmp(p, q, len) != 0) fz_fail("piece %d '%.40s' looks up to %d", id, p, back);
    }
    /* The vocabulary the .eig writer stores: a loaded tokenizer must export to one its reader
     * accepts, or `ei compile` would write files that never open. */
    ei_tok_vocab tv;
    ei_tokenizer *rebuilt = NULL;
    if (ei_tokenizer_export(t, &tv) == 0) {
        if (ei_tok_vocab_check(&tv, "export") != 0) fz_fail("exported vocabulary fails its check: %s", ei_error_get());
        rebuilt = ei_tokenizer_from_vocab(&tv);
        if (!rebuilt) fz_fail("rebuilding from the exported vocabulary failed: %s", ei_error_get());
        ei_tok_vocab_free(&tv);
    }
    /* Only SentencePiece kinds re-encode after a rebuild (tokenizer.json needs its pre-tokenizer). */
    int32_t *probe = NULL;
    size_t pn = 0;
    int sp = rebuilt && ei_tokenizer_encode(rebuilt, "a", 1, 0, 0, &probe, &pn) == 0;
    free(probe);
    static const char *const texts[] = {"Hello world", "  two  spaces  ", "<s>x</s><|endoftext|>", "\xff\xfe\x80",
                                        "caf\xc3\xa9 \xe6\x95\xb0\xe5\xad\xa6 \xf0\x9f\x98\x80", "\n\t 12345 don't", ""};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        fz_check_encode(t, sp ? rebuilt : NULL, texts[i], strlen(texts[i]));
    if (extra_len) fz_check_encode(t, sp ? rebuilt : NULL, (const char *)extra, extra_len);
    /* Every id decodes, alone and after each other. */
    int32_t all[64];
    size_t na = 0;
    for (int id = 0; id < v && na < 64; id += 1 + v / 64) all[na++] = id;
    check_decode(t, all, na);
    ei_tokenizer_free(rebuilt);
}
