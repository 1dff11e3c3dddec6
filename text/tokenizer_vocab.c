/* Plain vocabulary export and rebuild (tokenizer.h, ei_tok_vocab). The device has no tokenizer
 * files, only what the .eig stores: this is the bridge between the loaded representation
 * (tokenizer_internal.h) and that flat description. libc only; tokenizer.json kinds are rebuilt with
 * hooks of their own (decoding, merges), since data/tokenizer_hf.c is host-side. */
#include "text/tokenizer_internal.h"

#include "core/ei_error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

_Static_assert((int)EI_TOKV_NORMAL == (int)EI_PIECE_NORMAL && (int)EI_TOKV_BYTE == (int)EI_PIECE_BYTE &&
                   (int)EI_TOKV_CONTROL == (int)EI_PIECE_CONTROL && (int)EI_TOKV_USER == (int)EI_PIECE_USER,
               "vocabulary piece types are the internal ones");
_Static_assert((int)EI_TOKV_SENTENCEPIECE == (int)EI_TOK_SP && (int)EI_TOKV_HF == (int)EI_TOK_HF,
               "vocabulary kinds are the internal ones");

#define KNOWN_FLAGS (EI_TOKV_ADD_DUMMY_PREFIX | EI_TOKV_REMOVE_EXTRA_WS | EI_TOKV_BYTE_FALLBACK | \
                     EI_TOKV_STRIP_LEADING_SPACE | EI_TOKV_BYTE_LEVEL)
#define KNOWN_LIT (EI_TOKV_LITERAL | EI_TOKV_LIT_SPECIAL | EI_TOKV_LIT_LSTRIP | EI_TOKV_LIT_RSTRIP)

/* ------------------------------------------------------------------ export */

static int merge_rank_cmp(const void *a, const void *b) {
    const ei_tok_vocab_merge *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    return x->left < y->left ? -1 : x->left > y->left;
}

/* The merges table of a rank-driven tokenizer can only be queried by pair, so it is recovered from
 * the pieces: a merge (a, b) produces the piece a+b, hence splitting every piece at every byte and
 * asking for the pair finds each merge exactly once. */
static int export_merges(const ei_tokenizer *t, ei_tok_vocab_merge **out, int32_t *n_out) {
    size_t n = 0, cap = 0;
    ei_tok_vocab_merge *m = NULL;
    for (int c = 0; c < t->vocab_size; c++) {
        size_t len;
        const char *p = ei_tok_piece(t, c, &len);
        if (len < 2 || ei_tok_map_get(t, p, len) != c) continue;
        for (size_t k = 1; k < len; k++) {
            int a = ei_tok_map_get(t, p, k), b = a >= 0 ? ei_tok_map_get(t, p + k, len - k) : -1, rank;
            if (b < 0 || t->hf_ops->merge(t, a, b, &rank) != c) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                ei_tok_vocab_merge *nm = realloc(m, cap * sizeof *nm);
                if (!nm) {
                    free(m);
                    return ei_error_set("tokenizer export: out of memory");
                }
                m = nm;
            }
            m[n++] = (ei_tok_vocab_merge){a, b, c, rank};
        }
    }
    if (n > EI_TOKV_MAX_MERGES) {
        free(m);
        return ei_error_set("tokenizer export: %zu merges (more than %d)", n, EI_TOKV_MAX_MERGES);
    }
    if (n) qsort(m, n, sizeof *m, merge_rank_cmp);
    *out = m;
    *n_out = (int32_t)n;
    return 0;
}

int ei_tokenizer_export(const ei_tokenizer *t, ei_tok_vocab *out) {
    memset(out, 0, sizeof *out);
    if (!t || t->vocab_size < 1 || t->vocab_size > EI_TOKV_MAX_PIECES)
        return ei_error_set("tokenizer export: no tokenizer or bad vocabulary size");
    ei_tok_vocab_piece *p = calloc((size_t)t->vocab_size, sizeof *p);
    if (!p) return ei_error_set("tokenizer export: out of memory");
    for (int i = 0; i < t->vocab_size; i++) {
        size_t len;
        p[i].bytes = ei_tok_piece(t, i, &len);
        p[i].len = (uint32_t)len;
        p[i].score = t->scores[i];
        p[i].type = t->types[i];
    }
    for (int k = 0; k < t->n_literals; k++) {
        const ei_tok_literal *l = &t->literals[k];
        p[l->id].literal = (uint8_t)(EI_TOKV_LITERAL | (l->special ? EI_TOKV_LIT_SPECIAL : 0) |
                                     (l->lstrip ? EI_TOKV_LIT_LSTRIP : 0) | (l->rstrip ? EI_TOKV_LIT_RSTRIP : 0));
    }
    out->kind = t->kind;
    out->flags = (t->add_dummy_prefix ? EI_TOKV_ADD_DUMMY_PREFIX : 0) | (t->remove_extra_ws ? EI_TOKV_REMOVE_EXTRA_WS : 0) |
                 (t->byte_fallback ? EI_TOKV_BYTE_FALLBACK : 0) |
                 (t->strip_leading_space ? EI_TOKV_STRIP_LEADING_SPACE : 0);
    out->bos = t->bos;
    out->eos = t->eos;
    out->unk = t->unk;
    out->n_pieces = t->vocab_size;
    out->pieces = p;
    out->identity = t->identity;
    if (t->kind == EI_TOK_HF && t->hf_ops) {
        if (t->hf_ops->is_bytelevel(t)) out->flags |= EI_TOKV_BYTE_LEVEL;
        ei_tok_vocab_merge *m = NULL;
        if (export_merges(t, &m, &out->n_merges)) {
            ei_tok_vocab_free(out);
            return -1;
        }
        out->merges = m;
    }
    return 0;
}

void ei_tok_vocab_free(ei_tok_vocab *v) {
    if (!v) return;
    free((void *)v->pieces);
    free((void *)v->merges);
    memset(v, 0, sizeof *v);
}

/* ------------------------------------------------------------------ check */

static int hex_digit(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); }

int ei_tok_vocab_check(const ei_tok_vocab *v, const char *what) {
    if (!what) what = "vocabulary";
    if (!v) return ei_error_set("%s: missing", what);
    if (v->kind != EI_TOKV_SENTENCEPIECE && v->kind != EI_TOKV_HF) return ei_error_set("%s: unknown kind %d", what, v->kind);
    if (v->flags & ~(uint32_t)KNOWN_FLAGS) return ei_error_set("%s: unknown flags 0x%x", what, (unsigned)v->flags);
    if ((v->flags & EI_TOKV_BYTE_LEVEL) && v->kind != EI_TOKV_HF)
        return ei_error_set("%s: byte-level flag on a SentencePiece vocabulary", what);
    if (v->n_pieces < 1 || v->n_pieces > EI_TOKV_MAX_PIECES || !v->pieces)
        return ei_error_set("%s: %d pieces (1..%d)", what, (int)v->n_pieces, EI_TOKV_MAX_PIECES);
    uint64_t total = 0;
    for (int32_t i = 0; i < v->n_pieces; i++) {
        const ei_tok_vocab_piece *p = &v->pieces[i];
        if (p->len > EI_TOKV_MAX_PIECE_LEN || (p->len && !p->bytes))
            return ei_error_set("%s: piece %d: length %u out of range", what, (int)i, (unsigned)p->len);
        if (p->type < EI_TOKV_NORMAL || p->type > EI_TOKV_BYTE)
            return ei_error_set("%s: piece %d: unknown type %u", what, (int)i, (unsigned)p->type);
        if (p->literal & ~KNOWN_LIT || (p->literal && !(p->literal & EI_TOKV_LITERAL)) || (p->literal && !p->len))
            return ei_error_set("%s: piece %d: bad literal flags 0x%x", what, (int)i, (unsigned)p->literal);
        if (!isfinite(p->score)) return ei_error_set("%s: piece %d: score is not finite", what, (int)i);
        if (p->type == EI_TOKV_BYTE) {
            const char *b = p->bytes;
            int ok = p->len == 6 && memcmp(b, "<0x", 3) == 0 && b[5] == '>';
            if (ok && v->kind == EI_TOKV_SENTENCEPIECE) ok = hex_digit(b[3]) && hex_digit(b[4]);
            if (!ok) return ei_error_set("%s: piece %d: byte piece is not of the form <0xXX>", what, (int)i);
        }
        total += (uint64_t)p->len + 1;
    }
    if (total + 1 > UINT32_MAX) return ei_error_set("%s: %llu bytes of pieces (too many)", what, (unsigned long long)total);
    int32_t n = v->n_pieces;
    if (v->bos < -1 || v->bos >= n || v->eos < -1 || v->eos >= n || v->unk < -1 || v->unk >= n)
        return ei_error_set("%s: bos/eos/unk %d/%d/%d outside the %d pieces", what, (int)v->bos, (int)v->eos,
                            (int)v->unk, (int)n);
    if (v->n_merges < 0 || v->n_merges > EI_TOKV_MAX_MERGES || (v->n_merges && !v->merges))
        return ei_error_set("%s: %d merges", what, (int)v->n_merges);
    if (v->n_merges && v->kind != EI_TOKV_HF) return ei_error_set("%s: merges on a SentencePiece vocabulary", what);
    for (int32_t i = 0; i < v->n_merges; i++) {
        const ei_tok_vocab_merge *m = &v->merges[i];
        if (m->left < 0 || m->left >= n || m->right < 0 || m->right >= n || m->merged < 0 || m->merged >= n ||
            m->rank < 0)
            return ei_error_set("%s: merge %d (%d + %d -> %d, rank %d) refers to pieces outside [0, %d)", what, (int)i,
                                (int)m->left, (int)m->right, (int)m->merged, (int)m->rank, (int)n);
    }
    return 0;
}

/* ------------------------------------------------------------------ rebuild */

/* What a rebuilt tokenizer.json kind keeps: the byte-level mapping for decoding and the merges.
 * Stored behind t->hf and reached only through the hooks below. */
typedef struct {
    int bytelevel;
    int16_t cp_byte[512]; /* code point -> byte of GPT-2's byte-level alphabet, -1 if none */
    ei_tok_merge *merges;
    size_t mask;
} vocab_hf;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static void vh_free(ei_tok_hf *hf) {
    vocab_hf *h = (vocab_hf *)(void *)hf;
    if (!h) return;
    free(h->merges);
    free(h);
}

static int vh_encode_text(const ei_tokenizer *t, const char *text, size_t len, int first, ei_tok_ids *out) {
    (void)text, (void)len, (void)first, (void)out;
    return ei_error_set("tokenizer %s: this tokenizer.json vocabulary was rebuilt from a model file and only "
                        "decodes; encoding text needs its pre-tokenizer, which only the host tool has",
                        t->identity);
}

static int vh_is_bytelevel(const ei_tokenizer *t) { return ((const vocab_hf *)(const void *)t->hf)->bytelevel; }

/* Bytes of a byte-level piece: each character of GPT-2's alphabet stands for one byte (added tokens
 * are plain text), as data/tokenizer_hf.c decodes them. */
static size_t vh_piece_bytes(const ei_tokenizer *t, int id, char *out) {
    const vocab_hf *h = (const vocab_hf *)(const void *)t->hf;
    size_t n;
    const char *p = ei_tok_piece(t, id, &n);
    if (t->types[id] == EI_PIECE_USER) {
        memcpy(out, p, n);
        return n;
    }
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int cl = ei_utf8_valid_at((const unsigned char *)p + i, n - i);
        uint32_t cp = (unsigned char)p[i];
        if (cl == 2) cp = ((cp & 0x1F) << 6) | ((unsigned char)p[i + 1] & 0x3F);
        if (cl && cl <= 2 && cp < 512 && h->cp_byte[cp] >= 0) {
            out[k++] = (char)h->cp_byte[cp];
        } else {
            int m = cl ? cl : 1;
            memcpy(out + k, p + i, (size_t)m);
            k += (size_t)m;
        }
        i += (size_t)(cl ? cl : 1);
    }
    return k;
}

static int vh_merge(const ei_tokenizer *t, int a, int b, int *rank) {
    const vocab_hf *h = (const vocab_hf *)(const void *)t->hf;
    if (!h->merges) return -1;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (size_t i = (size_t)mix64(key) & h->mask;; i = (i + 1) & h->mask) {
        const ei_tok_merge *m = &h->merges[i];
        if (!m->key) return -1;
        if (m->key == key) {
            *rank = m->rank;
            return m->id;
        }
    }
}

static const ei_tok_hf_ops vocab_hf_ops = {vh_free, vh_encode_text, vh_piece_bytes, vh_is_bytelevel, vh_merge};

static vocab_hf *vh_new(const ei_tok_vocab *v) {
    vocab_hf *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->bytelevel = (v->flags & EI_TOKV_BYTE_LEVEL) != 0;
    /* GPT-2's table: printable Latin-1 bytes stand for themselves, the others map to U+0100.. */
    for (int i = 0; i < 512; i++) h->cp_byte[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        h->cp_byte[keep ? b : 256 + extra++] = (int16_t)b;
    }
    if (v->n_merges) {
        size_t cap = 16;
        while (cap < (size_t)v->n_merges * 2) cap <<= 1;
        h->merges = calloc(cap, sizeof *h->merges);
        if (!h->merges) {
            free(h);
            return NULL;
        }
        h->mask = cap - 1;
        for (int32_t i = 0; i < v->n_merges; i++) {
            const ei_tok_vocab_merge *m = &v->merges[i];
            uint64_t key = (((uint64_t)(uint32_t)m->left << 32) | (uint32_t)m->right) + 1;
            size_t j = (size_t)mix64(key) & h->mask;
            while (h->merges[j].key && h->merges[j].key != key) j = (j + 1) & h->mask;
            if (!h->merges[j].key) h->merges[j] = (ei_tok_merge){.key = key, .rank = m->rank, .id = m->merged};
        }
    }
    return h;
}

ei_tokenizer *ei_tokenizer_from_vocab(const ei_tok_vocab *v) {
    if (ei_tok_vocab_check(v, "vocabulary")) return NULL;
    ei_tokenizer *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    t->bos = t->eos = t->unk = -1;
    if (ei_tok_alloc_pieces(t, v->n_pieces)) goto oom;
    for (int32_t i = 0; i < v->n_pieces; i++) {
        const ei_tok_vocab_piece *p = &v->pieces[i];
        if (p->len) {
            if (ei_tok_set_piece(t, i, p->bytes, p->len, p->score, p->type)) goto oom;
        } else { /* ids without a piece keep offset 0, the shared empty string */
            t->scores[i] = p->score;
            t->types[i] = p->type;
        }
        if (p->literal &&
            ei_tok_add_literal(t, i, (p->literal & EI_TOKV_LIT_SPECIAL) != 0, (p->literal & EI_TOKV_LIT_LSTRIP) != 0,
                               (p->literal & EI_TOKV_LIT_RSTRIP) != 0))
            goto oom;
    }
    t->kind = v->kind;
    t->add_dummy_prefix = (v->flags & EI_TOKV_ADD_DUMMY_PREFIX) != 0;
    t->remove_extra_ws = (v->flags & EI_TOKV_REMOVE_EXTRA_WS) != 0;
    t->byte_fallback = (v->flags & EI_TOKV_BYTE_FALLBACK) != 0;
    t->strip_leading_space = (v->flags & EI_TOKV_STRIP_LEADING_SPACE) != 0;
    t->bos = v->bos;
    t->eos = v->eos;
    t->unk = v->unk;
    if (v->kind == EI_TOKV_HF) {
        vocab_hf *h = vh_new(v);
        if (!h) goto oom;
        t->hf = (ei_tok_hf *)(void *)h;
        t->hf_ops = &vocab_hf_ops;
    }
    if (ei_tok_finish(t, "vocabulary")) {
        ei_tokenizer_free(t);
        return NULL;
    }
    size_t il = v->identity ? strlen(v->identity) : 0;
    if (il >= sizeof t->identity) il = sizeof t->identity - 1;
    if (il) memcpy(t->identity, v->identity, il);
    t->identity[il] = '\0';
    return t;
oom:
    ei_tokenizer_free(t);
    ei_error_set("vocabulary: out of memory rebuilding a tokenizer of %d pieces", (int)v->n_pieces);
    return NULL;
}
