/* The .eis evaluation-set format. Kept free of HDF5 and cJSON: the on-device binary compiles this
 * file alone. */
#include "text/evalset.h"

#include "core/ei_error.h"
#include "core/ei_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char EIS_MAGIC[8] = {'E', 'I', 'E', 'V', 'S', 'E', 'T', '\0'};
#define EIS_HEADER_SIZE 48u
#define EIS_ITEM_HEAD 20u
/* Upper bound on any single length field, so sums of a few of them never overflow size_t math on
 * 32-bit devices either. */
#define EIS_MAX_LEN 0x3fffffffu

static const char *const task_names[EI_TASK_COUNT_] = {"qa", "choice", "summary", "lm", "passkey"};

const char *ei_task_type_name(int type) {
    return type >= 0 && type < EI_TASK_COUNT_ ? task_names[type] : NULL;
}

int ei_task_type_parse(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < EI_TASK_COUNT_; i++)
        if (strcmp(name, task_names[i]) == 0) return i;
    if (strcmp(name, "multiple-choice") == 0 || strcmp(name, "mc") == 0) return EI_TASK_CHOICE;
    return -1;
}

ei_evalset *ei_evalset_new(const char *tokenizer_identity, int32_t vocab_size, int32_t bos, int32_t eos) {
    ei_evalset *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->tokenizer = strdup(tokenizer_identity ? tokenizer_identity : "");
    if (!s->tokenizer) {
        free(s);
        return NULL;
    }
    s->vocab_size = vocab_size;
    s->bos = bos;
    s->eos = eos;
    return s;
}

static void item_free(ei_eval_item *it) {
    free(it->tag);
    free(it->prompt);
    free(it->ref_text);
    free(it->ref_ids);
}

void ei_evalset_free(ei_evalset *s) {
    if (!s) return;
    for (uint32_t i = 0; i < s->n_items; i++) item_free(&s->items[i]);
    free(s->items);
    free(s->tokenizer);
    free(s);
}

static int ids_in_range(const int32_t *ids, size_t n, int32_t vocab) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (vocab > 0 && ids[i] >= vocab)) return 0;
    return 1;
}

static void *dup_bytes(const void *p, size_t n, size_t extra) {
    uint8_t *d = malloc(n + extra ? n + extra : 1);
    if (!d) return NULL;
    if (n) memcpy(d, p, n);
    memset(d + n, 0, extra);
    return d;
}

int ei_evalset_add(ei_evalset *s, int type, const char *tag, const int32_t *prompt, size_t n_prompt,
                   const char *ref_text, const int32_t *ref_ids, size_t n_ref) {
    if (!ei_task_type_name(type)) return ei_error_set("evaluation set: unknown task type %d", type);
    if (!tag) tag = "";
    if (!ref_text) ref_text = "";
    size_t tl = strlen(tag), rl = strlen(ref_text);
    if (n_prompt > EIS_MAX_LEN / 4 || n_ref > EIS_MAX_LEN / 4 || tl > EIS_MAX_LEN || rl > EIS_MAX_LEN)
        return ei_error_set("evaluation set: item '%s' too large", tag);
    if (!ids_in_range(prompt, n_prompt, s->vocab_size) || !ids_in_range(ref_ids, n_ref, s->vocab_size))
        return ei_error_set("evaluation set: item '%s' has a token id outside [0, %d)", tag, s->vocab_size);
    if (s->n_items == s->cap_) {
        if (s->n_items >= EIS_MAX_LEN) return ei_error_set("evaluation set: too many items");
        uint32_t cap = s->cap_ ? s->cap_ * 2 : 16;
        ei_eval_item *n = realloc(s->items, sizeof *n * cap);
        if (!n) return ei_error_set("evaluation set: out of memory");
        s->items = n;
        s->cap_ = cap;
    }
    ei_eval_item it = {0};
    it.type = type;
    it.tag = dup_bytes(tag, tl, 1);
    it.prompt = dup_bytes(prompt, n_prompt * sizeof(int32_t), 0);
    it.n_prompt = (uint32_t)n_prompt;
    it.ref_text = dup_bytes(ref_text, rl, 1);
    it.ref_text_len = (uint32_t)rl;
    it.ref_ids = dup_bytes(ref_ids, n_ref * sizeof(int32_t), 0);
    it.n_ref = (uint32_t)n_ref;
    if (!it.tag || !it.prompt || !it.ref_text || !it.ref_ids) {
        item_free(&it);
        return ei_error_set("evaluation set: out of memory");
    }
    s->items[s->n_items++] = it;
    return 0;
}

/* ------------------------------------------------------------------ serialisation */

static size_t pad4(size_t n) { return (n + 3u) & ~(size_t)3u; }

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static size_t put_ids(uint8_t *p, const int32_t *ids, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) put_u32(p + 4 * (size_t)i, (uint32_t)ids[i]);
    return 4 * (size_t)n;
}

int ei_evalset_serialize(const ei_evalset *s, uint8_t **out, size_t *out_size) {
    size_t tok_len = strlen(s->tokenizer);
    size_t size = EIS_HEADER_SIZE + pad4(tok_len) + 8;
    for (uint32_t i = 0; i < s->n_items; i++) {
        const ei_eval_item *it = &s->items[i];
        size += EIS_ITEM_HEAD + pad4(strlen(it->tag)) + 4 * (size_t)it->n_prompt + pad4(it->ref_text_len) +
                4 * (size_t)it->n_ref;
    }
    uint8_t *b = calloc(1, size);
    if (!b) return ei_error_set("evaluation set: out of memory (%zu bytes)", size);
    memcpy(b, EIS_MAGIC, 8);
    put_u32(b + 8, EI_EVALSET_VERSION);
    put_u32(b + 12, EIS_HEADER_SIZE);
    put_u64(b + 16, (uint64_t)size);
    put_u32(b + 24, s->n_items);
    put_u32(b + 28, (uint32_t)s->vocab_size);
    put_u32(b + 32, (uint32_t)s->bos);
    put_u32(b + 36, (uint32_t)s->eos);
    put_u32(b + 40, (uint32_t)tok_len);
    size_t p = EIS_HEADER_SIZE;
    memcpy(b + p, s->tokenizer, tok_len);
    p += pad4(tok_len);
    for (uint32_t i = 0; i < s->n_items; i++) {
        const ei_eval_item *it = &s->items[i];
        size_t tl = strlen(it->tag);
        put_u32(b + p, (uint32_t)it->type);
        put_u32(b + p + 4, (uint32_t)tl);
        put_u32(b + p + 8, it->n_prompt);
        put_u32(b + p + 12, it->ref_text_len);
        put_u32(b + p + 16, it->n_ref);
        p += EIS_ITEM_HEAD;
        memcpy(b + p, it->tag, tl);
        p += pad4(tl);
        p += put_ids(b + p, it->prompt, it->n_prompt);
        memcpy(b + p, it->ref_text, it->ref_text_len);
        p += pad4(it->ref_text_len);
        p += put_ids(b + p, it->ref_ids, it->n_ref);
    }
    put_u64(b + p, ei_hash_fnv1a(b, p, 0));
    *out = b;
    *out_size = size;
    return 0;
}

int ei_evalset_write(const ei_evalset *s, const char *path) {
    uint8_t *buf;
    size_t size;
    if (ei_evalset_serialize(s, &buf, &size) != 0) return ei_error_prefix("%s: ", path);
    ei_atomic_file f;
    if (ei_atomic_open(&f, path) != 0) {
        free(buf);
        return -1;
    }
    if (fwrite(buf, 1, size, f.fp) != size) {
        ei_atomic_abort(&f);
        free(buf);
        return ei_error_set("%s: write failed", path);
    }
    free(buf);
    return ei_atomic_commit(&f);
}

/* ------------------------------------------------------------------ parsing */

/* Cursor over the file body; every take checks the bytes that remain. */
typedef struct {
    const uint8_t *b;
    size_t pos, end;
} cursor;

static const uint8_t *take(cursor *c, size_t n) {
    if (n > c->end - c->pos) return NULL;
    const uint8_t *p = c->b + c->pos;
    c->pos += n;
    return p;
}

static int read_ids(cursor *c, uint32_t n, int32_t vocab, int32_t **out) {
    const uint8_t *p = take(c, 4 * (size_t)n);
    if (!p) return -1;
    int32_t *ids = malloc(n ? 4 * (size_t)n : 1);
    if (!ids) return -2;
    for (uint32_t i = 0; i < n; i++) ids[i] = (int32_t)get_u32(p + 4 * (size_t)i);
    *out = ids;
    if (!ids_in_range(ids, n, vocab)) return -3;
    return 0;
}

static char *read_str(cursor *c, uint32_t n) {
    const uint8_t *p = take(c, pad4(n));
    if (!p) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

ei_evalset *ei_evalset_parse(const uint8_t *buf, size_t size, const char *name) {
    if (size < EIS_HEADER_SIZE + 8) {
        ei_error_set("%s: not an evaluation set (%zu bytes, too short)", name, size);
        return NULL;
    }
    if (memcmp(buf, EIS_MAGIC, 8) != 0) {
        ei_error_set("%s: not an evaluation set (bad magic)", name);
        return NULL;
    }
    uint32_t version = get_u32(buf + 8), hsize = get_u32(buf + 12);
    if (version != EI_EVALSET_VERSION) {
        ei_error_set("%s: evaluation set version %u, this build reads version %d", name, version,
                     EI_EVALSET_VERSION);
        return NULL;
    }
    if (hsize != EIS_HEADER_SIZE) {
        ei_error_set("%s: bad header size %u", name, hsize);
        return NULL;
    }
    uint64_t fsize = get_u64(buf + 16);
    if (fsize != (uint64_t)size) {
        ei_error_set("%s: file is %zu bytes but its header says %llu (truncated or padded)", name, size,
                     (unsigned long long)fsize);
        return NULL;
    }
    uint64_t stored = get_u64(buf + size - 8);
    if (stored != ei_hash_fnv1a(buf, size - 8, 0)) {
        ei_error_set("%s: checksum mismatch (the file is corrupt)", name);
        return NULL;
    }
    uint32_t n_items = get_u32(buf + 24), tok_len = get_u32(buf + 40);
    cursor c = {buf, EIS_HEADER_SIZE, size - 8};
    /* Every item takes at least EIS_ITEM_HEAD bytes: a count beyond that cannot be right, and
     * checking first keeps a corrupt count from driving a huge allocation. */
    if (tok_len > EIS_MAX_LEN || n_items > (c.end - c.pos) / EIS_ITEM_HEAD) {
        ei_error_set("%s: header counts exceed the file size", name);
        return NULL;
    }
    char *tok = read_str(&c, tok_len);
    if (!tok) {
        ei_error_set("%s: tokenizer identity runs past the end of the file", name);
        return NULL;
    }
    ei_evalset *s = ei_evalset_new(tok, (int32_t)get_u32(buf + 28), (int32_t)get_u32(buf + 32),
                                   (int32_t)get_u32(buf + 36));
    free(tok);
    if (!s) {
        ei_error_set("%s: out of memory", name);
        return NULL;
    }
    s->items = calloc(n_items ? n_items : 1, sizeof *s->items);
    if (!s->items) {
        ei_evalset_free(s);
        ei_error_set("%s: out of memory", name);
        return NULL;
    }
    s->cap_ = n_items ? n_items : 1;
    for (uint32_t i = 0; i < n_items; i++) {
        const uint8_t *h = take(&c, EIS_ITEM_HEAD);
        if (!h) {
            ei_error_set("%s: item %u: header runs past the end of the file", name, i);
            goto fail;
        }
        ei_eval_item *it = &s->items[i];
        s->n_items = i + 1;
        it->type = (int)get_u32(h);
        uint32_t tl = get_u32(h + 4);
        it->n_prompt = get_u32(h + 8);
        it->ref_text_len = get_u32(h + 12);
        it->n_ref = get_u32(h + 16);
        if (!ei_task_type_name(it->type)) {
            ei_error_set("%s: item %u: unknown task type %d", name, i, it->type);
            goto fail;
        }
        if (tl > EIS_MAX_LEN || it->n_prompt > EIS_MAX_LEN / 4 || it->ref_text_len > EIS_MAX_LEN ||
            it->n_ref > EIS_MAX_LEN / 4) {
            ei_error_set("%s: item %u: length fields out of range", name, i);
            goto fail;
        }
        const char *what = "tag";
        if (!(it->tag = read_str(&c, tl))) goto runs_past;
        what = "prompt";
        int rc = read_ids(&c, it->n_prompt, s->vocab_size, &it->prompt);
        if (rc == 0) {
            what = "reference text";
            if (!(it->ref_text = read_str(&c, it->ref_text_len))) goto runs_past;
            what = "reference ids";
            rc = read_ids(&c, it->n_ref, s->vocab_size, &it->ref_ids);
        }
        if (rc == -3) {
            ei_error_set("%s: item %u: %s has a token id outside [0, %d)", name, i, what, s->vocab_size);
            goto fail;
        }
        if (rc != 0) goto runs_past;
        if (memchr(it->tag, 0, tl) || memchr(it->ref_text, 0, it->ref_text_len)) {
            ei_error_set("%s: item %u: text contains a NUL byte", name, i);
            goto fail;
        }
        continue;
    runs_past:
        ei_error_set("%s: item %u: %s runs past the end of the file", name, i, what);
        goto fail;
    }
    if (c.pos != c.end) {
        ei_error_set("%s: %zu unexpected bytes after the last item", name, c.end - c.pos);
        goto fail;
    }
    return s;
fail:
    ei_evalset_free(s);
    return NULL;
}

ei_evalset *ei_evalset_read(const char *path) {
    ei_file_map m;
    if (ei_file_map_open(&m, path) != 0) return NULL;
    ei_evalset *s = ei_evalset_parse(m.data, m.size, path);
    ei_file_map_close(&m);
    return s;
}
