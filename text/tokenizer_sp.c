/* SentencePiece-style tokenizers: llama2.c tokenizer.bin and SentencePiece tokenizer.model (read with
 * a small bounds-checked protobuf reader), and their encoder (normalise, split into characters,
 * merge by piece score, byte fallback), which follows SentencePiece's bpe_model.cc. */
#include "text/tokenizer_internal.h"

#include "core/ei_error.h"
#include "core/ei_io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WS_SYMBOL "\xE2\x96\x81" /* U+2581, SentencePiece's visible space */

/* ------------------------------------------------------------------ llama2.c tokenizer.bin */

static int is_byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'))) return 0;
    }
    return 1;
}

int ei_tok_load_llama2c(ei_tokenizer *t, const char *path, int vocab_hint) {
    char *buf;
    size_t size;
    if (ei_file_read_all(path, &buf, &size)) return -1;
    int rc = -1;
    const unsigned char *p = (const unsigned char *)buf;
    size_t pos = 4;
    int32_t maxlen;
    if (size < 4) {
        ei_error_set("%s: truncated tokenizer.bin (%zu bytes, no header)", path, size);
        goto done;
    }
    memcpy(&maxlen, p, 4);
    if (maxlen <= 0 || maxlen > (1 << 20)) {
        ei_error_set("%s: not a llama2.c tokenizer (max_token_length %d)", path, (int)maxlen);
        goto done;
    }
    if (vocab_hint < 0) {
        ei_error_set("%s: negative vocabulary size %d", path, vocab_hint);
        goto done;
    }
    /* First pass: count and validate entries, so the piece table can be sized. */
    int count = 0;
    while (pos < size && (vocab_hint == 0 || count < vocab_hint)) {
        int32_t len;
        if (size - pos < 8) {
            ei_error_set("%s: truncated at byte %zu (entry %d: score and length need 8 bytes)", path, pos, count);
            goto done;
        }
        memcpy(&len, p + pos + 4, 4);
        if (len < 0 || len > maxlen || (size_t)len > size - pos - 8) {
            ei_error_set("%s: entry %d at byte %zu: length %d %s", path, count, pos, (int)len,
                         len < 0 || len > maxlen ? "out of range" : "runs past the end of the file (truncated)");
            goto done;
        }
        pos += 8 + (size_t)len;
        count++;
    }
    if (vocab_hint > 0 && pos < size) {
        /* More entries than the model has tokens: ids past the vocabulary would be silently dropped. */
        int more = 0;
        while (pos + 8 <= size) {
            int32_t len;
            memcpy(&len, p + pos + 4, 4);
            if (len < 0 || (size_t)len > size - pos - 8) break;
            pos += 8 + (size_t)len;
            more++;
        }
        ei_error_set("%s: vocabulary size mismatch: the tokenizer has %s%d pieces but the model's vocabulary has %d "
                     "(a tokenizer for another model?)",
                     path, pos == size ? "" : "more than ", count + more, vocab_hint);
        goto done;
    }
    if (vocab_hint > 0 && count < vocab_hint) {
        /* The file ended at an entry boundary: a smaller vocabulary, not a cut file. */
        ei_error_set("%s: vocabulary size mismatch: the tokenizer has %d pieces but the model's vocabulary has %d "
                     "(a tokenizer for another model?)",
                     path, count, vocab_hint);
        goto done;
    }
    if (count < 3) {
        ei_error_set("%s: only %d pieces (need <unk>, <s>, </s>)", path, count);
        goto done;
    }
    if (ei_tok_alloc_pieces(t, count)) {
        ei_error_set("%s: out of memory", path);
        goto done;
    }
    pos = 4;
    char *tmp = malloc((size_t)maxlen * 3 + 8);
    if (!tmp) {
        ei_error_set("%s: out of memory", path);
        goto done;
    }
    for (int id = 0; id < count; id++) {
        float score;
        int32_t len;
        memcpy(&score, p + pos, 4);
        memcpy(&len, p + pos + 4, 4);
        /* A NaN score breaks the merge order, and the vocabulary could not be stored in a .eig (its
         * reader refuses non-finite scores): refuse the file here, with the piece named. */
        if (!isfinite(score)) {
            free(tmp);
            ei_error_set("%s: entry %d: score is not a finite number", path, id);
            goto done;
        }
        const char *s = buf + pos + 8;
        pos += 8 + (size_t)len;
        int type = EI_PIECE_NORMAL;
        size_t n = 0;
        /* llama2.c's export wrote <s> / </s> as "\n<s>\n" and SentencePiece's "▁" as ' ': undo both
         * so every format shares the same piece strings. */
        if (id == 0) {
            type = EI_PIECE_UNKNOWN;
            memcpy(tmp, s, (size_t)len);
            n = (size_t)len;
        } else if (id <= 2) {
            type = EI_PIECE_CONTROL;
            const char *name = id == 1 ? "<s>" : "</s>";
            n = strlen(name);
            memcpy(tmp, name, n);
        } else if (is_byte_piece(s, (size_t)len)) {
            type = EI_PIECE_BYTE;
            memcpy(tmp, s, 6);
            n = 6;
        } else {
            for (int32_t i = 0; i < len; i++) {
                if (s[i] == ' ') {
                    memcpy(tmp + n, WS_SYMBOL, 3);
                    n += 3;
                } else {
                    tmp[n++] = s[i];
                }
            }
        }
        if (ei_tok_set_piece(t, id, tmp, n, score, type)) {
            free(tmp);
            ei_error_set("%s: out of memory", path);
            goto done;
        }
    }
    free(tmp);
    t->kind = EI_TOK_SP;
    t->unk = 0;
    t->bos = 1;
    t->eos = 2;
    t->add_dummy_prefix = 1; /* llama2.c's encode: dummy prefix, no whitespace cleanup */
    t->remove_extra_ws = 0;
    t->byte_fallback = 1;
    t->strip_leading_space = 1;
    if (ei_tok_add_literal(t, 1, 1, 0, 0) || ei_tok_add_literal(t, 2, 1, 0, 0)) {
        ei_error_set("%s: out of memory", path);
        goto done;
    }
    if (ei_tok_finish(t, path)) goto done;
    ei_tok_set_identity(t, "llama2c", path, buf, size);
    rc = 0;
done:
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------ protobuf reader */

typedef struct {
    const uint8_t *p, *end;
} pb_reader;

static int pb_varint(pb_reader *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) return -1;
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Reads one field header and its payload: varints in *v, fixed32/64 in *v, length-delimited as a
 * sub-reader in *sub. */
static int pb_field(pb_reader *r, int *field, int *wire, uint64_t *v, pb_reader *sub) {
    uint64_t key;
    if (pb_varint(r, &key)) return -1;
    *field = (int)(key >> 3);
    *wire = (int)(key & 7);
    if (*field == 0 || key >> 32) return -1;
    switch (*wire) {
    case 0:
        return pb_varint(r, v);
    case 1:
        if (r->end - r->p < 8) return -1;
        memcpy(v, r->p, 8);
        r->p += 8;
        return 0;
    case 5: {
        if (r->end - r->p < 4) return -1;
        uint32_t x;
        memcpy(&x, r->p, 4);
        *v = x;
        r->p += 4;
        return 0;
    }
    case 2: {
        uint64_t n;
        if (pb_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return -1;
        sub->p = r->p;
        sub->end = r->p + n;
        r->p += n;
        return 0;
    }
    default:
        return -1;
    }
}

typedef struct {
    int model_type, byte_fallback, unk_id, bos_id, eos_id, ws_suffix;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    char norm_name[32];
    size_t charsmap_len;
} spm_spec;

static int parse_trainer(pb_reader r, spm_spec *s) {
    int f, w;
    uint64_t v;
    pb_reader sub;
    while (r.p < r.end) {
        if (pb_field(&r, &f, &w, &v, &sub)) return -1;
        if (w != 0) continue;
        int32_t iv = (int32_t)(uint32_t)v; /* int32 fields: negative values are sign-extended varints */
        if (f == 3) s->model_type = iv;
        else if (f == 35) s->byte_fallback = v != 0;
        else if (f == 40) s->unk_id = iv;
        else if (f == 41) s->bos_id = iv;
        else if (f == 42) s->eos_id = iv;
        else if (f == 24) s->ws_suffix = v != 0;
    }
    return 0;
}

static int parse_normalizer(pb_reader r, spm_spec *s) {
    int f, w;
    uint64_t v;
    pb_reader sub;
    while (r.p < r.end) {
        if (pb_field(&r, &f, &w, &v, &sub)) return -1;
        if (f == 1 && w == 2) {
            size_t n = (size_t)(sub.end - sub.p);
            if (n >= sizeof s->norm_name) n = sizeof s->norm_name - 1;
            memcpy(s->norm_name, sub.p, n);
            s->norm_name[n] = '\0';
        } else if (f == 2 && w == 2) {
            s->charsmap_len = (size_t)(sub.end - sub.p);
        } else if (w == 0) {
            if (f == 3) s->add_dummy_prefix = v != 0;
            else if (f == 4) s->remove_extra_ws = v != 0;
            else if (f == 5) s->escape_ws = v != 0;
        }
    }
    return 0;
}

/* One ModelProto.SentencePiece: piece (1), score (2, float), type (3). */
static int parse_piece(pb_reader r, const uint8_t **s, size_t *n, float *score, int *type) {
    int f, w;
    uint64_t v;
    pb_reader sub;
    *s = NULL;
    *n = 0;
    *score = 0;
    *type = EI_PIECE_NORMAL;
    while (r.p < r.end) {
        if (pb_field(&r, &f, &w, &v, &sub)) return -1;
        if (f == 1 && w == 2) {
            *s = sub.p;
            *n = (size_t)(sub.end - sub.p);
        } else if (f == 2 && w == 5) {
            uint32_t x = (uint32_t)v;
            memcpy(score, &x, 4);
        } else if (f == 3 && w == 0) {
            *type = (int)v;
        }
    }
    if (*type < EI_PIECE_NORMAL || *type > EI_PIECE_BYTE) return -1;
    return 0;
}

int ei_tok_load_spm(ei_tokenizer *t, const char *path) {
    ei_file_map m;
    if (ei_file_map_open(&m, path)) return -1;
    /* an empty file maps to NULL, and NULL + 0 below is undefined */
    if (!m.size) return ei_error_set("%s: empty file (not a SentencePiece model)", path);
    int rc = -1;
    spm_spec spec = {.model_type = 1, .unk_id = 0, .bos_id = 1, .eos_id = 2, .add_dummy_prefix = 1,
                     .remove_extra_ws = 1, .escape_ws = 1};
    pb_reader r = {m.data, m.data + m.size}, sub;
    int f, w, count = 0;
    uint64_t v;
    while (r.p < r.end) {
        size_t at = (size_t)(r.p - m.data);
        if (pb_field(&r, &f, &w, &v, &sub)) {
            ei_error_set("%s: corrupt protobuf at byte %zu (bad field header or length past the end)", path, at);
            goto done;
        }
        if (f == 1 && w == 2) {
            const uint8_t *s;
            size_t n;
            float sc;
            int ty;
            if (parse_piece(sub, &s, &n, &sc, &ty)) {
                ei_error_set("%s: corrupt piece %d at byte %zu", path, count, at);
                goto done;
            }
            if (!isfinite(sc)) { /* as for tokenizer.bin above */
                ei_error_set("%s: piece %d: score is not a finite number", path, count);
                goto done;
            }
            count++;
        } else if (f == 2 && w == 2) {
            if (parse_trainer(sub, &spec)) {
                ei_error_set("%s: corrupt trainer_spec at byte %zu", path, at);
                goto done;
            }
        } else if (f == 3 && w == 2) {
            if (parse_normalizer(sub, &spec)) {
                ei_error_set("%s: corrupt normalizer_spec at byte %zu", path, at);
                goto done;
            }
        }
    }
    if (count == 0) {
        ei_error_set("%s: not a SentencePiece model (no pieces)", path);
        goto done;
    }
    if (spec.model_type != 2) {
        ei_error_set("%s: SentencePiece model type %d is not BPE (2); only BPE models are supported", path,
                     spec.model_type);
        goto done;
    }
    if (spec.norm_name[0] && strcmp(spec.norm_name, "identity") != 0 && spec.charsmap_len > 0) {
        ei_error_set("%s: normalizer '%s' with a precompiled character map is not supported (identity only)", path,
                     spec.norm_name);
        goto done;
    }
    if (spec.ws_suffix || !spec.escape_ws) {
        ei_error_set("%s: unsupported normalizer options (whitespace as suffix / unescaped whitespace)", path);
        goto done;
    }
    if (ei_tok_alloc_pieces(t, count)) {
        ei_error_set("%s: out of memory", path);
        goto done;
    }
    r = (pb_reader){m.data, m.data + m.size};
    int id = 0;
    while (r.p < r.end) {
        if (pb_field(&r, &f, &w, &v, &sub)) goto done; /* validated above */
        if (f != 1 || w != 2) continue;
        const uint8_t *s;
        size_t n;
        float sc;
        int ty;
        if (parse_piece(sub, &s, &n, &sc, &ty)) goto done;
        if (ty == EI_PIECE_BYTE && !is_byte_piece((const char *)s, n)) {
            ei_error_set("%s: byte piece %d is not of the form <0xXX>", path, id);
            goto done;
        }
        if (ei_tok_set_piece(t, id, (const char *)(s ? s : (const uint8_t *)""), n, sc, ty)) {
            ei_error_set("%s: out of memory", path);
            goto done;
        }
        if (ty == EI_PIECE_CONTROL || ty == EI_PIECE_USER) {
            if (ei_tok_add_literal(t, id, ty == EI_PIECE_CONTROL, 0, 0)) {
                ei_error_set("%s: out of memory", path);
                goto done;
            }
        }
        if (ty == EI_PIECE_UNKNOWN && t->unk < 0) t->unk = id;
        id++;
    }
    t->kind = EI_TOK_SP;
    if (spec.unk_id >= 0 && spec.unk_id < count) t->unk = spec.unk_id;
    t->bos = spec.bos_id >= 0 && spec.bos_id < count ? spec.bos_id : -1;
    t->eos = spec.eos_id >= 0 && spec.eos_id < count ? spec.eos_id : -1;
    t->add_dummy_prefix = spec.add_dummy_prefix;
    t->remove_extra_ws = spec.remove_extra_ws;
    t->byte_fallback = spec.byte_fallback;
    t->strip_leading_space = spec.add_dummy_prefix;
    if (ei_tok_finish(t, path)) goto done;
    ei_tok_set_identity(t, "sentencepiece", path, m.data, m.size);
    rc = 0;
done:
    ei_file_map_close(&m);
    return rc;
}

/* ------------------------------------------------------------------ encoding */

/* SentencePiece normalisation with the identity rule: optional whitespace cleanup (leading and
 * trailing spaces dropped, runs collapsed), dummy prefix, spaces escaped as U+2581. Whitespace-only
 * input that is cleaned away produces nothing, not a lone dummy prefix. */
static char *sp_normalize(const ei_tokenizer *t, const char *s, size_t n, int first, size_t *out_len) {
    char *out = malloc(3 * n + 4);
    if (!out) return NULL;
    size_t i = 0, end = n, k = 0;
    int dummy = first > 0;
    if (t->remove_extra_ws) {
        /* Only the whole text's leading spaces go: a continuation's are inside the whole. */
        if (first != EI_TOK_FIRST_CONT)
            while (i < end && s[i] == ' ') i++;
        while (end > i && s[end - 1] == ' ') end--;
    }
    if (i == end) {
        *out_len = 0;
        return out;
    }
    if (dummy && t->add_dummy_prefix) {
        memcpy(out, WS_SYMBOL, 3);
        k = 3;
    }
    for (; i < end; i++) {
        if (s[i] == ' ') {
            if (t->remove_extra_ws && i > 0 && s[i - 1] == ' ') continue;
            memcpy(out + k, WS_SYMBOL, 3);
            k += 3;
        } else {
            out[k++] = s[i];
        }
    }
    *out_len = k;
    return out;
}

static int sp_char_id(const ei_tokenizer *t, const char *s, size_t n) {
    int id = ei_tok_map_get(t, s, n);
    if (id < 0) return -1;
    int ty = t->types[id];
    return ty == EI_PIECE_NORMAL || ty == EI_PIECE_USER ? id : -1;
}

int ei_tok_sp_encode_text(const ei_tokenizer *t, const char *text, size_t len, int first, ei_tok_ids *out) {
    size_t n;
    char *buf = sp_normalize(t, text, len, first, &n);
    if (!buf) return -1;
    if (n == 0) {
        free(buf);
        return 0;
    }
    if (n > (size_t)INT32_MAX / 2) {
        free(buf);
        return ei_error_set("tokenizer: text too long (%zu bytes)", len);
    }
    ei_tok_sym *sym = malloc(n * sizeof *sym);
    if (!sym) {
        free(buf);
        return -1;
    }
    int ns = 0;
    for (size_t i = 0; i < n;) {
        int cl = ei_utf8_valid_at((const unsigned char *)buf + i, n - i);
        if (!cl) cl = 1; /* an invalid byte is its own symbol and falls back to <0xXX> */
        sym[ns] = (ei_tok_sym){.start = (uint32_t)i, .len = (uint32_t)cl, .prev = ns - 1, .next = ns + 1,
                               .id = sp_char_id(t, buf + i, (size_t)cl)};
        ns++;
        i += (size_t)cl;
    }
    sym[ns - 1].next = -1;
    int rc = ei_tok_bpe(t, 0, buf, sym, ns);
    for (int i = 0; !rc && i >= 0 && i < ns; i = sym[i].next) {
        if (sym[i].id >= 0) {
            rc = ei_tok_ids_push(out, sym[i].id);
        } else if (t->byte_fallback) {
            for (uint32_t b = 0; b < sym[i].len && !rc; b++) {
                int bid = t->byte_ids[(unsigned char)buf[sym[i].start + b]];
                rc = ei_tok_ids_push(out, bid >= 0 ? bid : t->unk);
            }
        } else if (t->unk >= 0) {
            rc = ei_tok_ids_push(out, t->unk);
        }
    }
    free(sym);
    free(buf);
    return rc;
}
