/* Hugging Face tokenizer.json: model BPE (merges by rank) with either the byte-level pre-tokenizer
 * (GPT-2 / Llama 3 / Qwen: regex split with PCRE2, bytes mapped to printable characters) or the
 * SentencePiece-style pipeline of Llama 2 exports (Prepend/Replace normaliser or Metaspace, byte
 * fallback). Parsed with cJSON; vocabulary and merges go into hash tables. */
#include "text/tokenizer_internal.h"

#include "core/ei_error.h"
#include "core/ei_io.h"

#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

static void ei_tok_hf_free(ei_tok_hf *hf);
static int ei_tok_hf_encode_text(const ei_tokenizer *t, const char *text, size_t len, int first, ei_tok_ids *out);
static size_t ei_tok_hf_piece_bytes(const ei_tokenizer *t, int id, char *out);
static int ei_tok_hf_is_bytelevel(const ei_tokenizer *t);
static int ei_tok_hf_merge(const ei_tokenizer *t, int a, int b, int *rank);
static const ei_tok_hf_ops hf_ops;

#define MAX_STEPS 8

enum { NORM_NFC = 1, NORM_PREPEND, NORM_REPLACE };

typedef struct {
    int kind;
    char *a, *b; /* prepend: a; replace: a -> b */
} hf_norm;

struct ei_tok_hf {
    hf_norm norm[MAX_STEPS];
    int n_norm;
    pcre2_code *re[MAX_STEPS]; /* regex splits, applied in order (Isolated behaviour) */
    int n_re;
    int bytelevel;        /* bytes mapped to GPT-2's printable characters */
    int bl_prefix_space;  /* ByteLevel add_prefix_space */
    int metaspace;        /* Metaspace pre-tokenizer: ' ' -> replacement, prepend scheme */
    int ms_prepend;       /* 0 never, 1 first, 2 always */
    int ms_split;
    char ms_repl[8];
    ei_tok_merge *merges;
    size_t merge_mask;
    int ignore_merges;
    int byte_fallback;
    int unk;
    char byte_char[256][3]; /* UTF-8 of the character standing for each byte (2 bytes max) */
    uint8_t byte_char_len[256];
    int16_t cp_byte[512];   /* code point -> byte, -1 if none */
    char *path;             /* the tokenizer.json, for errors found while encoding */
};

static const char *GPT2_PATTERN =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static void ei_tok_hf_free(ei_tok_hf *hf) {
    if (!hf) return;
    for (int i = 0; i < hf->n_norm; i++) {
        free(hf->norm[i].a);
        free(hf->norm[i].b);
    }
    for (int i = 0; i < hf->n_re; i++) pcre2_code_free(hf->re[i]);
    free(hf->merges);
    free(hf->path);
    free(hf);
}

static int ei_tok_hf_is_bytelevel(const ei_tokenizer *t) { return t->hf && t->hf->bytelevel; }

/* ------------------------------------------------------------------ merges table */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static int ei_tok_hf_merge(const ei_tokenizer *t, int a, int b, int *rank) {
    const ei_tok_hf *hf = t->hf;
    if (!hf || !hf->merges) return -1;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = (size_t)mix64(key) & hf->merge_mask;
    for (;;) {
        const ei_tok_merge *m = &hf->merges[i];
        if (!m->key) return -1;
        if (m->key == key) {
            *rank = m->rank;
            return m->id;
        }
        i = (i + 1) & hf->merge_mask;
    }
}

static void merge_put(ei_tok_hf *hf, int a, int b, int rank, int id) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = (size_t)mix64(key) & hf->merge_mask;
    while (hf->merges[i].key) {
        if (hf->merges[i].key == key) return; /* first (best) rank wins */
        i = (i + 1) & hf->merge_mask;
    }
    hf->merges[i] = (ei_tok_merge){.key = key, .rank = rank, .id = id};
}

/* ------------------------------------------------------------------ loading */

static void bytes_to_unicode(ei_tok_hf *hf) {
    /* GPT-2's table: printable Latin-1 bytes stand for themselves, the rest map to U+0100.. */
    int n = 0;
    for (int i = 0; i < 512; i++) hf->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        int cp = keep ? b : 256 + n++;
        hf->cp_byte[cp] = (int16_t)b;
        if (cp < 0x80) {
            hf->byte_char[b][0] = (char)cp;
            hf->byte_char_len[b] = 1;
        } else {
            hf->byte_char[b][0] = (char)(0xC0 | (cp >> 6));
            hf->byte_char[b][1] = (char)(0x80 | (cp & 0x3F));
            hf->byte_char_len[b] = 2;
        }
    }
}

static int add_regex(ei_tok_hf *hf, const char *pattern, const char *path) {
    if (hf->n_re >= MAX_STEPS) return ei_error_set("%s: too many pre-tokenizer splits", path);
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return ei_error_set("%s: pre-tokenizer regex does not compile at offset %zu: %s", path, (size_t)off,
                            (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional speed-up; interpreted matching otherwise */
    hf->re[hf->n_re++] = re;
    return 0;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static int parse_normalizer(ei_tok_hf *hf, const cJSON *n, const char *path) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *type = jstr(n, "type");
    if (!type) return ei_error_set("%s: normalizer without a type", path);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *e;
        cJSON_ArrayForEach(e, list) if (parse_normalizer(hf, e, path)) return -1;
        return 0;
    }
    if (hf->n_norm >= MAX_STEPS) return ei_error_set("%s: too many normalizers", path);
    hf_norm *s = &hf->norm[hf->n_norm];
    if (strcmp(type, "NFC") == 0) {
        s->kind = NORM_NFC;
    } else if (strcmp(type, "Prepend") == 0 && jstr(n, "prepend")) {
        s->kind = NORM_PREPEND;
        s->a = strdup(jstr(n, "prepend"));
    } else if (strcmp(type, "Replace") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *from = jstr(pat, "String"), *to = jstr(n, "content");
        if (!from || !to || !*from)
            return ei_error_set("%s: Replace normalizer: only literal String patterns are supported", path);
        s->kind = NORM_REPLACE;
        s->a = strdup(from);
        s->b = strdup(to);
    } else {
        return ei_error_set("%s: normalizer type '%s' is not supported (NFC, Prepend, Replace, Sequence)", path, type);
    }
    hf->n_norm++;
    return 0;
}

static int parse_pretok(ei_tok_hf *hf, const cJSON *p, const char *path) {
    if (!p || cJSON_IsNull(p)) return 0;
    const char *type = jstr(p, "type");
    if (!type) return ei_error_set("%s: pre_tokenizer without a type", path);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"), *e;
        cJSON_ArrayForEach(e, list) if (parse_pretok(hf, e, path)) return -1;
        return 0;
    }
    if (strcmp(type, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const char *re = jstr(pat, "Regex"), *behavior = jstr(p, "behavior");
        if (!re || (behavior && strcmp(behavior, "Isolated") != 0) || jbool(p, "invert", 0))
            return ei_error_set("%s: Split pre-tokenizer: only Regex patterns with Isolated behaviour are supported",
                                path);
        return add_regex(hf, re, path);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        hf->bytelevel = 1;
        hf->bl_prefix_space = jbool(p, "add_prefix_space", 0);
        if (jbool(p, "use_regex", 1)) return add_regex(hf, GPT2_PATTERN, path);
        return 0;
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *repl = jstr(p, "replacement"), *scheme = jstr(p, "prepend_scheme");
        hf->metaspace = 1;
        snprintf(hf->ms_repl, sizeof hf->ms_repl, "%s", repl ? repl : "\xE2\x96\x81");
        hf->ms_prepend = scheme ? (strcmp(scheme, "always") == 0 ? 2 : strcmp(scheme, "first") == 0 ? 1 : 0)
                                : jbool(p, "add_prefix_space", 1) * 2;
        hf->ms_split = jbool(p, "split", 1);
        return 0;
    }
    return ei_error_set("%s: pre-tokenizer type '%s' is not supported (Split, ByteLevel, Metaspace, Sequence)", path,
                        type);
}

/* Decoder: only what decoding needs to know, i.e. whether one leading space is stripped. */
static void parse_decoder(ei_tokenizer *t, const cJSON *d) {
    const char *type = jstr(d, "type");
    if (!type) return;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(d, "decoders")) parse_decoder(t, e);
    } else if (strcmp(type, "Strip") == 0) {
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(d, "start");
        const char *content = jstr(d, "content");
        if (cJSON_IsNumber(start) && start->valueint > 0 && content && strcmp(content, " ") == 0)
            t->strip_leading_space = 1;
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *scheme = jstr(d, "prepend_scheme");
        t->strip_leading_space = scheme ? strcmp(scheme, "never") != 0 : jbool(d, "add_prefix_space", 1);
    }
}

/* bos/eos from tokenizer_config.json beside the file ("bos_token": "<s>" or {"content": "<s>"}). */
static int config_token(const ei_tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v)) return -1;
    return ei_tok_map_get(t, v->valuestring, strlen(v->valuestring));
}

static void find_special_ids(ei_tokenizer *t, const char *path) {
    char *dir = strdup(path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    char *cfgpath = dir ? (slash ? (*slash = '\0', ei_path_join(dir, "tokenizer_config.json"))
                                 : strdup("tokenizer_config.json"))
                        : NULL;
    free(dir);
    char *buf = NULL;
    size_t n;
    int have_cfg = 0;
    if (cfgpath && ei_path_exists(cfgpath) && ei_file_read_all(cfgpath, &buf, &n) == 0) {
        cJSON *cfg = cJSON_ParseWithLength(buf, n);
        if (cfg) {
            have_cfg = 1;
            t->bos = config_token(t, cfg, "bos_token");
            t->eos = config_token(t, cfg, "eos_token");
            cJSON_Delete(cfg);
        }
    }
    ei_error_clear();
    free(buf);
    free(cfgpath);
    if (have_cfg) return;
    static const char *bos_names[] = {"<s>", "<|begin_of_text|>"};
    static const char *eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>"};
    for (size_t i = 0; i < 2 && t->bos < 0; i++) t->bos = ei_tokenizer_piece_id(t, bos_names[i]);
    for (size_t i = 0; i < 3 && t->eos < 0; i++) t->eos = ei_tokenizer_piece_id(t, eos_names[i]);
}

static int load_merges(ei_tokenizer *t, const cJSON *merges, const char *path) {
    ei_tok_hf *hf = t->hf;
    int count = cJSON_GetArraySize(merges);
    size_t cap = 16;
    while (cap < (size_t)count * 2) cap <<= 1;
    hf->merges = calloc(cap, sizeof *hf->merges);
    if (!hf->merges) return ei_error_set("%s: out of memory for %d merges", path, count);
    hf->merge_mask = cap - 1;
    char *tmp = NULL;
    size_t tmp_cap = 0;
    int rank = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(m)) {
            /* "left right": pieces never contain a plain space in these vocabularies */
            a = m->valuestring;
            const char *sp = strchr(a + (a[0] == ' '), ' ');
            if (!sp) {
                free(tmp);
                return ei_error_set("%s: merge %d is not \"left right\"", path, rank);
            }
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            a = cJSON_GetArrayItem(m, 0)->valuestring;
            b = cJSON_GetArrayItem(m, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        } else {
            free(tmp);
            return ei_error_set("%s: merge %d is neither a string nor a pair of strings", path, rank);
        }
        int ia = ei_tok_map_get(t, a, la), ib = ei_tok_map_get(t, b, lb);
        if (la + lb > tmp_cap) {
            tmp_cap = (la + lb) * 2 + 16;
            char *nt = realloc(tmp, tmp_cap);
            if (!nt) {
                free(tmp);
                return ei_error_set("%s: out of memory", path);
            }
            tmp = nt;
        }
        memcpy(tmp, a, la);
        memcpy(tmp + la, b, lb);
        int id = ei_tok_map_get(t, tmp, la + lb);
        if (ia < 0 || ib < 0 || id < 0) {
            free(tmp);
            return ei_error_set("%s: merge %d (\"%.*s\" + \"%.*s\") refers to pieces missing from the vocabulary",
                                path, rank, (int)la, a, (int)lb, b);
        }
        merge_put(hf, ia, ib, rank, id);
        rank++;
    }
    free(tmp);
    return 0;
}

static int load_json(ei_tokenizer *t, const cJSON *root, const char *path) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *mtype = jstr(model, "type");
    if (!cJSON_IsObject(model)) return ei_error_set("%s: no \"model\" object (not a tokenizer.json?)", path);
    if (mtype && strcmp(mtype, "BPE") != 0)
        return ei_error_set("%s: model type '%s' is not supported (BPE only)", path, mtype);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) return ei_error_set("%s: model.vocab is missing or not an object", path);
    if (!cJSON_IsArray(merges)) return ei_error_set("%s: model.merges is missing or not an array", path);
    if (added && !cJSON_IsArray(added)) return ei_error_set("%s: added_tokens is not an array", path);

    double max_id = -1;
    const cJSON *e, *max_e = NULL;
    int n_entries = cJSON_GetArraySize(vocab) + (added ? cJSON_GetArraySize(added) : 0);
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e8 || e->valuedouble != (int)e->valuedouble)
            return ei_error_set("%s: vocab entry \"%.40s\" has no valid id", path, e->string ? e->string : "");
        if (e->valuedouble > max_id) {
            max_id = e->valuedouble;
            max_e = e;
        }
    }
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e8 || !jstr(e, "content"))
            return ei_error_set("%s: added_tokens entry without a valid id and content", path);
        if (id->valuedouble > max_id) {
            max_id = id->valuedouble;
            max_e = NULL;
        }
    }
    if (max_id < 0) return ei_error_set("%s: empty vocabulary", path);
    /* Ids index the piece table: one id far beyond the entries would allocate for all the ids below
     * it (a 10 KB file claiming id 5e7 asked for 586 MB). Real vocabularies number their pieces
     * densely, so the largest id is below the number of entries. */
    if (max_id >= n_entries)
        return ei_error_set("%s: %s id %.0f is not below the number of vocabulary entries (%d); ids must number the "
                            "pieces from 0",
                            path, max_e ? "vocab" : "added_tokens", max_id, n_entries);
    if (ei_tok_alloc_pieces(t, (int)max_id + 1)) return ei_error_set("%s: out of memory", path);
    t->hf->byte_fallback = jbool(model, "byte_fallback", 0);
    t->hf->ignore_merges = jbool(model, "ignore_merges", 0);
    cJSON_ArrayForEach(e, vocab) {
        int type = EI_PIECE_NORMAL;
        size_t n = strlen(e->string);
        if (t->hf->byte_fallback && n == 6 && strncmp(e->string, "<0x", 3) == 0 && e->string[5] == '>')
            type = EI_PIECE_BYTE;
        if (ei_tok_set_piece(t, (int)e->valuedouble, e->string, n, 0.0f, type))
            return ei_error_set("%s: out of memory", path);
    }
    cJSON_ArrayForEach(e, added) {
        int id = (int)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        const char *content = jstr(e, "content");
        int special = jbool(e, "special", 0);
        if (!*content) continue;
        if (ei_tok_set_piece(t, id, content, strlen(content), 0.0f, special ? EI_PIECE_CONTROL : EI_PIECE_USER) ||
            ei_tok_add_literal(t, id, special, jbool(e, "lstrip", 0), jbool(e, "rstrip", 0)))
            return ei_error_set("%s: out of memory", path);
    }
    if (parse_normalizer(t->hf, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), path)) return -1;
    if (parse_pretok(t->hf, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), path)) return -1;
    parse_decoder(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    if (ei_tok_finish(t, path)) return -1;
    if (load_merges(t, merges, path)) return -1;
    const char *unk = jstr(model, "unk_token");
    t->hf->unk = t->unk = unk ? ei_tok_map_get(t, unk, strlen(unk)) : -1;
    t->byte_fallback = t->hf->byte_fallback;
    find_special_ids(t, path);
    return 0;
}

int ei_tok_load_hf(ei_tokenizer *t, const char *path) {
    char *buf;
    size_t n;
    if (ei_file_read_all(path, &buf, &n)) return -1;
    t->kind = EI_TOK_HF;
    t->hf_ops = &hf_ops;
    t->hf = calloc(1, sizeof *t->hf);
    if (!t->hf) {
        free(buf);
        return ei_error_set("%s: out of memory", path);
    }
    bytes_to_unicode(t->hf);
    if (!(t->hf->path = strdup(path))) {
        free(buf);
        return ei_error_set("%s: out of memory", path);
    }
    cJSON *root = cJSON_ParseWithLength(buf, n);
    int rc;
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= buf && at <= buf + n ? (size_t)(at - buf) : 0;
        if (ei_json_depth(buf, off + 1 < n ? off + 1 : n) >= CJSON_NESTING_LIMIT)
            rc = ei_error_set("%s: JSON nested deeper than %d levels (near byte %zu)", path, CJSON_NESTING_LIMIT, off);
        else
            rc = ei_error_set("%s: malformed JSON near byte %zu", path, off);
    } else {
        rc = load_json(t, root, path);
        cJSON_Delete(root);
    }
    if (!rc) ei_tok_set_identity(t, "hf", path, buf, n);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------ encoding */

typedef struct {
    char *s;
    size_t n, cap;
} strbuf;

static int sb_put(strbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) return -1;
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
    return 0;
}

static int replace_all(strbuf *b, const char *from, const char *to) {
    size_t lf = strlen(from), lt = strlen(to);
    strbuf o = {0};
    size_t i = 0;
    int rc = sb_put(&o, "", 0);
    while (!rc && i < b->n) {
        if (i + lf <= b->n && memcmp(b->s + i, from, lf) == 0) {
            rc = sb_put(&o, to, lt);
            i += lf;
        } else {
            rc = sb_put(&o, b->s + i, 1);
            i++;
        }
    }
    free(b->s);
    *b = o;
    return rc;
}

static int normalize(const ei_tok_hf *hf, const char *s, size_t n, int first, strbuf *out) {
    if (sb_put(out, s, n)) return -1;
    for (int k = 0; k < hf->n_norm; k++) {
        const hf_norm *st = &hf->norm[k];
        if (st->kind == NORM_NFC) {
            char *r;
            size_t rn;
            if (ei_utf8_nfc(out->s, out->n, &r, &rn)) return -1;
            if (r) {
                out->n = 0;
                int rc = sb_put(out, r, rn);
                free(r);
                if (rc) return -1;
            }
        } else if (st->kind == NORM_PREPEND) {
            if (!out->n || first == EI_TOK_FIRST_CONT) continue; /* the whole text got it once, at its start */
            strbuf o = {0};
            if (sb_put(&o, st->a, strlen(st->a)) || sb_put(&o, out->s, out->n)) {
                free(o.s);
                return -1;
            }
            free(out->s);
            *out = o;
        } else if (replace_all(out, st->a, st->b)) {
            return -1;
        }
    }
    if (hf->metaspace) {
        if (replace_all(out, " ", hf->ms_repl)) return -1;
        size_t rl = strlen(hf->ms_repl);
        int want = hf->ms_prepend == 2 || (hf->ms_prepend == 1 && first == 1);
        if (want && out->n && !(out->n >= rl && memcmp(out->s, hf->ms_repl, rl) == 0)) {
            strbuf o = {0};
            if (sb_put(&o, hf->ms_repl, rl) || sb_put(&o, out->s, out->n)) {
                free(o.s);
                return -1;
            }
            free(out->s);
            *out = o;
        }
    }
    return 0;
}

/* BPE on one pre-tokenized word (already byte-level mapped where that applies). */
static int bpe_word(const ei_tokenizer *t, const char *w, size_t n, ei_tok_ids *out) {
    const ei_tok_hf *hf = t->hf;
    if (!n) return 0;
    if (hf->ignore_merges) {
        int id = ei_tok_map_get(t, w, n);
        if (id >= 0) return ei_tok_ids_push(out, id);
    }
    ei_tok_sym small[64];
    ei_tok_sym *sym = n <= 64 ? small : malloc(n * sizeof *sym);
    if (!sym) return -1;
    int ns = 0;
    for (size_t i = 0; i < n;) {
        int cl = ei_utf8_valid_at((const unsigned char *)w + i, n - i);
        if (!cl) cl = 1;
        int id = ei_tok_map_get(t, w + i, (size_t)cl);
        if (id >= 0 || !hf->byte_fallback) {
            sym[ns] = (ei_tok_sym){(uint32_t)i, (uint32_t)cl, ns - 1, ns + 1, id};
            ns++;
        } else {
            for (int b = 0; b < cl; b++, ns++)
                sym[ns] = (ei_tok_sym){(uint32_t)i + (uint32_t)b, 1, ns - 1, ns + 1,
                                       t->byte_ids[(unsigned char)w[i + (size_t)b]]};
        }
        i += (size_t)cl;
    }
    sym[ns - 1].next = -1;
    int rc = ei_tok_bpe(t, 1, w, sym, ns);
    for (int i = 0; !rc && i >= 0; i = sym[i].next) {
        int id = sym[i].id >= 0 ? sym[i].id : hf->unk;
        if (id >= 0) rc = ei_tok_ids_push(out, id);
    }
    if (sym != small) free(sym);
    return rc;
}

static int encode_word(const ei_tokenizer *t, const char *w, size_t n, ei_tok_ids *out) {
    const ei_tok_hf *hf = t->hf;
    if (!hf->bytelevel || !n) return bpe_word(t, w, n, out);
    char small[512];
    size_t cap = 2 * n + 2;
    char *m = cap <= sizeof small ? small : malloc(cap);
    if (!m) return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)w[i];
        memcpy(m + k, hf->byte_char[b], hf->byte_char_len[b]);
        k += hf->byte_char_len[b];
    }
    int rc = bpe_word(t, m, k, out);
    if (m != small) free(m);
    return rc;
}

/* Applies regex split `level` (Isolated: matches and the gaps between them are both words) and
 * recurses into the next level, encoding the final words. */
static int split_level(const ei_tokenizer *t, int level, const char *s, size_t n, pcre2_match_data **md,
                       ei_tok_ids *out) {
    const ei_tok_hf *hf = t->hf;
    if (level == hf->n_re) return encode_word(t, s, n, out);
    size_t pos = 0, last = 0;
    while (pos < n) {
        int rc = pcre2_match(hf->re[level], (PCRE2_SPTR)s, n, pos, 0, md[level], NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            /* e.g. the match limit on a pattern that backtracks catastrophically on this text */
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return ei_error_set("%s: pre-tokenizer regex %d failed at byte %zu of a %zu-byte word: %s (PCRE2 error %d)",
                                hf->path ? hf->path : "tokenizer.json", level + 1, pos, n, (const char *)msg, rc);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md[level]);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* empty match: step over one character */
            int cl = ei_utf8_valid_at((const unsigned char *)s + ms, n - ms);
            pos = ms + (size_t)(cl ? cl : 1);
            continue;
        }
        if (ms > last && split_level(t, level + 1, s + last, ms - last, md, out)) return -1;
        if (split_level(t, level + 1, s + ms, me - ms, md, out)) return -1;
        last = pos = me;
    }
    if (last < n) return split_level(t, level + 1, s + last, n - last, md, out);
    return 0;
}

/* Metaspace with split: words start at each replacement character. */
static int metaspace_split(const ei_tokenizer *t, const char *s, size_t n, pcre2_match_data **md, ei_tok_ids *out) {
    const char *r = t->hf->ms_repl;
    size_t rl = strlen(r), start = 0;
    for (size_t i = 1; i + rl <= n; i++) {
        if (memcmp(s + i, r, rl) != 0) continue;
        if (split_level(t, 0, s + start, i - start, md, out)) return -1;
        start = i;
    }
    return split_level(t, 0, s + start, n - start, md, out);
}

static int ei_tok_hf_encode_text(const ei_tokenizer *t, const char *text, size_t len, int first, ei_tok_ids *out) {
    const ei_tok_hf *hf = t->hf;
    strbuf nb = {0};
    pcre2_match_data *md[MAX_STEPS] = {0};
    int rc = normalize(hf, text, len, first, &nb);
    if (!rc && hf->bytelevel && hf->bl_prefix_space && first != EI_TOK_FIRST_CONT && nb.n && nb.s[0] != ' ') {
        strbuf o = {0};
        rc = sb_put(&o, " ", 1) || sb_put(&o, nb.s, nb.n);
        free(nb.s);
        nb = o;
    }
    for (int i = 0; !rc && i < hf->n_re; i++)
        if (!(md[i] = pcre2_match_data_create_from_pattern(hf->re[i], NULL))) rc = -1;
    if (!rc && nb.n) rc = hf->metaspace && hf->ms_split ? metaspace_split(t, nb.s, nb.n, md, out)
                                                        : split_level(t, 0, nb.s, nb.n, md, out);
    for (int i = 0; i < hf->n_re; i++) pcre2_match_data_free(md[i]);
    free(nb.s);
    return rc;
}

static size_t ei_tok_hf_piece_bytes(const ei_tokenizer *t, int id, char *out) {
    size_t n;
    const char *p = ei_tok_piece(t, id, &n);
    if (t->types[id] == EI_PIECE_USER) { /* added tokens are stored as plain text */
        memcpy(out, p, n);
        return n;
    }
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int cl = ei_utf8_valid_at((const unsigned char *)p + i, n - i);
        uint32_t cp = (unsigned char)p[i];
        if (cl == 2) cp = ((cp & 0x1F) << 6) | ((unsigned char)p[i + 1] & 0x3F);
        if (cl && cl <= 2 && cp < 512 && t->hf->cp_byte[cp] >= 0) {
            out[k++] = (char)t->hf->cp_byte[cp];
        } else { /* not a byte-level character: keep it as text */
            int m = cl ? cl : 1;
            memcpy(out + k, p + i, (size_t)m);
            k += (size_t)m;
        }
        i += (size_t)(cl ? cl : 1);
    }
    return k;
}

static const ei_tok_hf_ops hf_ops = {ei_tok_hf_free, ei_tok_hf_encode_text, ei_tok_hf_piece_bytes, ei_tok_hf_is_bytelevel,
                                     ei_tok_hf_merge};
