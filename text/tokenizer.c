/* Tokenizer front end: format detection, the shared piece table and hash map, the BPE merge engine
 * shared by the SentencePiece and Hugging Face encoders, literal (added/special) token splitting,
 * and decoding. */
#include "text/tokenizer_internal.h"

#include "core/ei_error.h"
#include "core/ei_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ utf-8 */

int ei_utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

int ei_utf8_valid_at(const unsigned char *s, size_t avail) {
    if (!avail) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int n = ei_utf8_len((unsigned char)c);
    if (n == 1 || (size_t)n > avail) return 0;
    uint32_t cp = c & (0x7F >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

/* ------------------------------------------------------------------ piece table and map */

uint64_t ei_tok_hash(const char *s, size_t n) {
    uint64_t h = ei_hash_fnv1a(s, n, 0);
    return h ^ (h >> 29);
}

int ei_tok_alloc_pieces(ei_tokenizer *t, int n) {
    t->vocab_size = n;
    t->piece_off = calloc((size_t)n + 1, sizeof *t->piece_off);
    t->piece_len = calloc((size_t)n + 1, sizeof *t->piece_len);
    t->scores = calloc((size_t)n + 1, sizeof *t->scores);
    t->types = calloc((size_t)n + 1, 1);
    t->arena_cap = (size_t)n * 8 + 64;
    t->arena = malloc(t->arena_cap);
    if (!t->piece_off || !t->piece_len || !t->scores || !t->types || !t->arena) return -1;
    t->arena[0] = '\0';
    t->arena_len = 1; /* offset 0 is the empty string of ids without a piece */
    for (int i = 0; i < n; i++) t->types[i] = EI_PIECE_UNUSED;
    return 0;
}

int ei_tok_set_piece(ei_tokenizer *t, int id, const char *s, size_t n, float score, int type) {
    if (id < 0 || id >= t->vocab_size || n > 0xFFFFFF || t->arena_len + n + 1 > UINT32_MAX) return -1;
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t cap = t->arena_cap * 2;
        while (cap < t->arena_len + n + 1) cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a) return -1;
        t->arena = a;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = '\0';
    t->piece_off[id] = (uint32_t)t->arena_len;
    t->piece_len[id] = (uint32_t)n;
    t->arena_len += n + 1;
    t->scores[id] = score;
    t->types[id] = (uint8_t)type;
    return 0;
}

const char *ei_tok_piece(const ei_tokenizer *t, int id, size_t *len) {
    if (id < 0 || id >= t->vocab_size) {
        if (len) *len = 0;
        return "";
    }
    if (len) *len = t->piece_len[id];
    return t->arena + t->piece_off[id];
}

int ei_tok_map_get(const ei_tokenizer *t, const char *s, size_t n) {
    if (!t->map.slots) return -1;
    size_t i = (size_t)ei_tok_hash(s, n) & t->map.mask;
    for (;;) {
        int32_t id = t->map.slots[i];
        if (id < 0) return -1;
        if (t->piece_len[id] == n && memcmp(t->arena + t->piece_off[id], s, n) == 0) return id;
        i = (i + 1) & t->map.mask;
    }
}

static int map_build(ei_tokenizer *t) {
    size_t cap = 16;
    while (cap < (size_t)t->vocab_size * 2) cap <<= 1;
    t->map.slots = malloc(cap * sizeof *t->map.slots);
    if (!t->map.slots) return -1;
    memset(t->map.slots, 0xFF, cap * sizeof *t->map.slots);
    t->map.mask = cap - 1;
    for (int id = 0; id < t->vocab_size; id++) {
        if (!t->piece_len[id]) continue;
        const char *s = t->arena + t->piece_off[id];
        size_t n = t->piece_len[id];
        size_t i = (size_t)ei_tok_hash(s, n) & t->map.mask;
        int dup = 0;
        while (t->map.slots[i] >= 0) {
            int32_t o = t->map.slots[i];
            if (t->piece_len[o] == n && memcmp(t->arena + t->piece_off[o], s, n) == 0) {
                dup = 1;
                break;
            }
            i = (i + 1) & t->map.mask;
        }
        if (!dup) t->map.slots[i] = id;
    }
    return 0;
}

int ei_tok_add_literal(ei_tokenizer *t, int id, int special, int lstrip, int rstrip) {
    if (id < 0 || id >= t->vocab_size || !t->piece_len[id]) return 0;
    ei_tok_literal *l = realloc(t->literals, (size_t)(t->n_literals + 1) * sizeof *l);
    if (!l) return -1;
    t->literals = l;
    l[t->n_literals++] = (ei_tok_literal){.str = NULL, .len = t->piece_len[id], .id = id,
                                          .special = (uint8_t)special, .lstrip = (uint8_t)lstrip,
                                          .rstrip = (uint8_t)rstrip};
    return 0;
}

/* Literals point into the arena when sorted (ei_tok_finish), so their first byte is at hand. */
static int literal_cmp(const void *a, const void *b) {
    const ei_tok_literal *x = a, *y = b;
    unsigned char cx = (unsigned char)x->str[0], cy = (unsigned char)y->str[0];
    if (cx != cy) return cx < cy ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1; /* longest match first */
    return x->id < y->id ? -1 : x->id > y->id;
}

int ei_tok_finish(ei_tokenizer *t, const char *path) {
    if (map_build(t)) return ei_error_set("%s: out of memory building the vocabulary map", path);
    for (int b = 0; b < 256; b++) t->byte_ids[b] = -1;
    for (int id = 0; id < t->vocab_size; id++) {
        if (t->types[id] != EI_PIECE_BYTE) continue;
        const char *p = t->arena + t->piece_off[id];
        unsigned v;
        char tail;
        if (t->piece_len[id] == 6 && sscanf(p, "<0x%2X%c", &v, &tail) == 2 && tail == '>' && v < 256 &&
            t->byte_ids[v] < 0)
            t->byte_ids[v] = id;
    }
    /* The arena no longer moves: point literals at it and index them by first byte. */
    for (int i = 0; i < t->n_literals; i++) t->literals[i].str = t->arena + t->piece_off[t->literals[i].id];
    if (t->n_literals) qsort(t->literals, (size_t)t->n_literals, sizeof *t->literals, literal_cmp);
    int k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < t->n_literals && (unsigned char)t->literals[k].str[0] < b) k++;
        t->lit_first[b] = k;
    }
    return 0;
}

uint64_t ei_tokenizer_vocab_hash(const ei_tokenizer *t) {
    int32_t head[3] = {t->vocab_size, t->bos, t->eos};
    uint64_t h = ei_hash_fnv1a(head, sizeof head, 0);
    for (int id = 0; id < t->vocab_size; id++) {
        uint32_t n = t->piece_len[id]; /* the length first, so "ab" + "c" differs from "a" + "bc" */
        h = ei_hash_fnv1a(&n, sizeof n, h);
        h = ei_hash_fnv1a(t->arena + t->piece_off[id], n, h);
    }
    return h;
}

void ei_tok_set_identity(ei_tokenizer *t, const char *kind, const char *path, const void *data, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(t->identity, sizeof t->identity, "%s:%.100s:%016llx", kind, base,
             (unsigned long long)ei_hash_fnv1a(data, n, 0));
}

int ei_tok_ids_push(ei_tok_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

/* ------------------------------------------------------------------ BPE merge engine */

typedef struct {
    float key;
    int32_t left, right;
    uint32_t len; /* merged length when queued: detects stale entries */
    int32_t id;
} bpe_cand;

static int cand_better(const bpe_cand *a, const bpe_cand *b) {
    if (a->key != b->key) return a->key > b->key;
    return a->left < b->left;
}

typedef struct {
    bpe_cand *v;
    size_t n, cap;
} bpe_heap;

static int heap_push(bpe_heap *h, bpe_cand c) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        bpe_cand *v = realloc(h->v, cap * sizeof *v);
        if (!v) return -1;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_better(&c, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = c;
    return 0;
}

static bpe_cand heap_pop(bpe_heap *h) {
    bpe_cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const bpe_cand *best = &last;
        if (l < h->n && cand_better(&h->v[l], best)) m = l, best = &h->v[l];
        if (r < h->n && cand_better(&h->v[r], best)) m = r;
        if (m == i) break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* Looks up the merge of sym[l] and sym[r] (adjacent) and queues it when the model has it. */
static int bpe_try(const ei_tokenizer *t, int mode, const char *buf, ei_tok_sym *sym, int l, int r,
                   bpe_heap *h) {
    if (l < 0 || r < 0) return 0;
    bpe_cand c = {.left = l, .right = r, .len = sym[l].len + sym[r].len};
    if (mode == 0) {
        int id = ei_tok_map_get(t, buf + sym[l].start, c.len);
        if (id < 0) return 0;
        int ty = t->types[id];
        if (ty != EI_PIECE_NORMAL && ty != EI_PIECE_USER && ty != EI_PIECE_UNUSED) return 0;
        c.key = t->scores[id];
        c.id = id;
    } else {
        int rank;
        if (sym[l].id < 0 || sym[r].id < 0) return 0;
        int id = t->hf_ops->merge(t, sym[l].id, sym[r].id, &rank);
        if (id < 0) return 0;
        c.key = -(float)rank;
        c.id = id;
    }
    return heap_push(h, c);
}

int ei_tok_bpe(const ei_tokenizer *t, int mode, const char *buf, ei_tok_sym *sym, int n) {
    bpe_heap h = {0};
    int rc = 0;
    for (int i = 0; i + 1 < n && !rc; i++) rc = bpe_try(t, mode, buf, sym, i, i + 1, &h);
    while (!rc && h.n) {
        bpe_cand c = heap_pop(&h);
        ei_tok_sym *L = &sym[c.left], *R = &sym[c.right];
        if (!L->len || !R->len || L->next != c.right || L->len + R->len != c.len) continue;
        L->len += R->len;
        L->id = c.id;
        L->next = R->next;
        if (R->next >= 0) sym[R->next].prev = c.left;
        R->len = 0;
        rc = bpe_try(t, mode, buf, sym, L->prev, c.left, &h);
        if (!rc) rc = bpe_try(t, mode, buf, sym, c.left, L->next, &h);
    }
    free(h.v);
    return rc ? -1 : 0;
}

/* ------------------------------------------------------------------ loading */

void ei_tokenizer_free(ei_tokenizer *t) {
    if (!t) return;
    if (t->hf && t->hf_ops) t->hf_ops->free(t->hf);
    free(t->arena);
    free(t->piece_off);
    free(t->piece_len);
    free(t->scores);
    free(t->types);
    free(t->map.slots);
    free(t->literals);
    free(t);
}

int ei_tokenizer_vocab_size(const ei_tokenizer *t) { return t->vocab_size; }
int ei_tokenizer_bos(const ei_tokenizer *t) { return t->bos; }
int ei_tokenizer_eos(const ei_tokenizer *t) { return t->eos; }
const char *ei_tokenizer_identity(const ei_tokenizer *t) { return t->identity; }

const char *ei_tokenizer_piece(const ei_tokenizer *t, int id) { return ei_tok_piece(t, id, NULL); }

void ei_tokenizer_set_special(ei_tokenizer *t, int bos, int eos) {
    if (bos >= -1 && bos < t->vocab_size) t->bos = bos;
    if (eos >= -1 && eos < t->vocab_size) t->eos = eos;
}

int ei_tokenizer_piece_id(const ei_tokenizer *t, const char *piece) {
    if (!piece) return -1;
    return ei_tok_map_get(t, piece, strlen(piece));
}

/* ------------------------------------------------------------------ encoding */

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Finds the literal token starting at s (longest first), or -1. */
static int match_literal(const ei_tokenizer *t, const char *s, size_t avail, int parse_special) {
    unsigned char b = (unsigned char)s[0];
    for (int k = t->lit_first[b]; k < t->lit_first[b + 1]; k++) {
        const ei_tok_literal *l = &t->literals[k];
        if (l->special && !parse_special) continue;
        if (l->len <= avail && memcmp(s, l->str, l->len) == 0) return k;
    }
    return -1;
}

static int encode_fragment(const ei_tokenizer *t, const char *s, size_t n, int first, ei_tok_ids *out) {
    if (t->kind == EI_TOK_HF) return t->hf_ops->encode_text(t, s, n, first, out);
    return ei_tok_sp_encode_text(t, s, n, first, out);
}

/* first: where the text stands, as for the fragments below (EI_TOK_FIRST_CONT: continuing an
 * earlier text). */
static int encode_impl(const ei_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special, int first,
                       int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    ei_tok_ids out = {0};
    int rc = 0;
    if (add_bos && t->bos >= 0) rc = ei_tok_ids_push(&out, t->bos);
    size_t frag = 0, i = 0;
    /* Where a fragment stands: 1 at the start of the text, 2 after a control token, 0 after a user
     * piece. SentencePiece-style encoders add the dummy prefix for 1 and 2 (as Hugging Face's legacy
     * Llama tokenizer and llama.cpp do); Metaspace's "first" scheme only for 1. */
    while (!rc && i < len) {
        int k = t->n_literals ? match_literal(t, text + i, len - i, parse_special) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        const ei_tok_literal *l = &t->literals[k];
        size_t end = i;
        if (l->lstrip)
            while (end > frag && is_ws(text[end - 1])) end--;
        if (end > frag) rc = encode_fragment(t, text + frag, end - frag, first, &out);
        if (!rc) rc = ei_tok_ids_push(&out, l->id);
        first = t->types[l->id] == EI_PIECE_CONTROL ? 2 : 0;
        i += l->len;
        if (l->rstrip)
            while (i < len && is_ws(text[i])) i++;
        frag = i;
    }
    if (!rc && frag < len) rc = encode_fragment(t, text + frag, len - frag, first, &out);
    if (rc) {
        free(out.v);
        if (!*ei_error_get()) ei_error_set("tokenizer: out of memory while encoding");
        return -1;
    }
    if (!out.v) out.v = malloc(sizeof(int32_t)); /* callers may free(ids) unconditionally */
    *ids = out.v;
    *n = out.n;
    return 0;
}

int ei_tokenizer_encode(const ei_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                        int32_t **ids, size_t *n) {
    return encode_impl(t, text, len, add_bos, parse_special, 1, ids, n);
}

int ei_tokenizer_encode_cont(const ei_tokenizer *t, const char *text, size_t len, int parse_special, int32_t **ids,
                             size_t *n) {
    return encode_impl(t, text, len, 0, parse_special, EI_TOK_FIRST_CONT, ids, n);
}

/* ------------------------------------------------------------------ decoding */

static int is_hidden(const ei_tokenizer *t, int id) {
    return id < 0 || id >= t->vocab_size || t->types[id] == EI_PIECE_CONTROL;
}

/* Bytes of one piece as text: "▁" -> " ", <0xXX> -> the byte, unknown -> " ⁇ ". out needs
 * 3 * piece length + 8 bytes. */
static size_t piece_text(const ei_tokenizer *t, int id, char *out) {
    if (is_hidden(t, id)) return 0;
    if (t->kind == EI_TOK_HF && t->hf_ops->is_bytelevel(t)) return t->hf_ops->piece_bytes(t, id, out);
    int ty = t->types[id];
    size_t n;
    const char *p = ei_tok_piece(t, id, &n);
    if (ty == EI_PIECE_BYTE && n == 6) { /* "<0xXX>", validated when loading */
        out[0] = (char)strtol(p + 3, NULL, 16);
        return 1;
    }
    if (ty == EI_PIECE_UNKNOWN && t->kind == EI_TOK_SP) {
        memcpy(out, " \xE2\x81\x87 ", 5);
        return 5;
    }
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && memcmp(p + i, "\xE2\x96\x81", 3) == 0) {
            out[k++] = ' ';
            i += 3;
        } else {
            out[k++] = p[i++];
        }
    }
    return k;
}

static size_t piece_cap(const ei_tokenizer *t, int id) {
    size_t n = 0;
    ei_tok_piece(t, id, &n);
    return 4 * n + 16;
}

int ei_tokenizer_decode(const ei_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len) {
    size_t cap = 16;
    for (size_t i = 0; i < n; i++) cap += piece_cap(t, ids[i]);
    char *out = malloc(cap);
    if (!out) return ei_error_set("tokenizer: out of memory decoding %zu ids", n);
    size_t k = 0;
    int at_start = 1;
    for (size_t i = 0; i < n; i++) {
        if (is_hidden(t, ids[i])) continue;
        size_t m = piece_text(t, ids[i], out + k);
        if (at_start && t->strip_leading_space && m && out[k] == ' ') {
            memmove(out + k, out + k + 1, m - 1);
            m--;
        }
        at_start = 0; /* only the first piece carries the dummy prefix, even when it is a lone space */
        k += m;
    }
    out[k] = '\0';
    *text = out;
    if (len) *len = k;
    return 0;
}

int ei_tokenizer_decode_piece(const ei_tokenizer *t, int prev, int id, char *buf, size_t cap) {
    if (!buf || !cap) return 0;
    buf[0] = '\0';
    if (is_hidden(t, id)) return 0;
    size_t need = piece_cap(t, id);
    char small[256];
    char *tmp = need <= sizeof small ? small : malloc(need);
    if (!tmp) return 0;
    size_t m = piece_text(t, id, tmp);
    const char *p = tmp;
    /* The dummy prefix of the first word is not part of the text. BOS counts as the start only when
     * it is hidden (a control piece, as in every real vocabulary): a BOS id that is an ordinary
     * piece (a tokenizer.json whose "<s>" is no special token) is text, and decoding keeps the
     * space after it, so streaming must too. */
    if (t->strip_leading_space && m && p[0] == ' ' && (prev < 0 || is_hidden(t, prev))) {
        p++;
        m--;
    }
    if (m >= cap) m = cap - 1;
    memcpy(buf, p, m);
    buf[m] = '\0';
    if (tmp != small) free(tmp);
    return (int)m;
}
