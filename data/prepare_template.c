/* Prompt templates, the sample construction rule with its truncation policy, and UTF-8 checks. */
#include "data/prepare.h"

#include "core/ei_error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ templates */

void ei_template_free(ei_template *t) {
    if (!t) return;
    free(t->name);
    free(t->before_ctx);
    free(t->after_ctx);
    free(t->after_answer);
    free(t);
}

static char *dupn(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

ei_template *ei_template_parse(const char *text, const char *where) {
    const char *ctx = NULL, *ans = NULL, *ins = NULL;
    for (const char *p = text; *p; p++) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            p++;
            continue;
        }
        if (*p != '{') continue;
        const char *e = strchr(p, '}');
        if (!e) {
            ei_error_set("%s: unclosed '{' in template", where);
            return NULL;
        }
        size_t n = (size_t)(e - p - 1);
        const char **slot = n == 7 && !strncmp(p + 1, "context", 7)       ? &ctx
                            : n == 11 && !strncmp(p + 1, "instruction", 11) ? &ins
                            : n == 6 && !strncmp(p + 1, "answer", 6)        ? &ans
                                                                            : NULL;
        if (!slot) {
            ei_error_set("%s: unknown placeholder {%.*s} in template (use {context}, {instruction}, {answer}; "
                         "{{ and }} for braces)",
                         where, (int)n, p + 1);
            return NULL;
        }
        if (*slot) {
            ei_error_set("%s: placeholder {%.*s} appears twice in template", where, (int)n, p + 1);
            return NULL;
        }
        *slot = p;
        p = e;
    }
    if (!ans) {
        ei_error_set("%s: template needs an {answer} placeholder", where);
        return NULL;
    }
    if ((ctx && ctx > ans) || (ins && ins > ans)) {
        ei_error_set("%s: {answer} must come after {context} and {instruction} in the template", where);
        return NULL;
    }
    ei_template *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->has_context = ctx != NULL;
    const char *cut = ctx ? ctx : ans;
    t->before_ctx = dupn(text, (size_t)(cut - text));
    t->after_ctx = ctx ? dupn(ctx + 9, (size_t)(ans - ctx - 9)) : dupn("", 0);
    t->after_answer = strdup(ans + 8);
    t->name = strdup("custom");
    t->parse_special = 1;
    if (!t->before_ctx || !t->after_ctx || !t->after_answer || !t->name) {
        ei_template_free(t);
        ei_error_set("out of memory");
        return NULL;
    }
    return t;
}

static const struct {
    const char *name, *text;
} builtins[] = {
    {"plain", "{context}\n{instruction}\n{answer}"},
    {"llama2-chat", "[INST] {context}\n\n{instruction} [/INST] {answer}"},
    {"chatml", "<|im_start|>user\n{context}\n\n{instruction}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>"},
};

int ei_template_unknown_specials(const ei_template *t, const ei_tokenizer *tok, char *marker, size_t cap) {
    const char *parts[3] = {t->before_ctx, t->after_ctx, t->after_answer};
    int unknown = 0;
    if (cap) marker[0] = '\0';
    for (int k = 0; k < 3; k++) {
        for (const char *p = strstr(parts[k], "<|"); p; p = strstr(p + 2, "<|")) {
            const char *e = strstr(p + 2, "|>");
            if (!e || e - p > 64 || memchr(p, ' ', (size_t)(e - p)) || memchr(p, '\n', (size_t)(e - p))) continue;
            size_t n = (size_t)(e + 2 - p);
            int32_t *ids = NULL;
            size_t ni = 0;
            if (ei_tokenizer_encode(tok, p, n, 0, 1, &ids, &ni) != 0) return -1;
            free(ids);
            if (ni == 1) continue;
            if (unknown++ == 0 && cap) snprintf(marker, cap, "%.*s", (int)n, p);
        }
    }
    return unknown;
}

ei_template *ei_template_builtin(const char *name) {
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        if (strcmp(name, builtins[i].name) != 0) continue;
        ei_template *t = ei_template_parse(builtins[i].text, name);
        if (t) {
            free(t->name);
            t->name = strdup(name);
            if (!t->name) {
                ei_template_free(t);
                return NULL;
            }
        }
        return t;
    }
    ei_error_set("unknown template '%s' (plain, llama2-chat, chatml, or --template-string)", name);
    return NULL;
}

/* Growing string. */
typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (n >= SIZE_MAX / 2 - b->n) { /* cannot happen; also tells the compiler the sizes are sane */
        b->oom = 1;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

/* Fills {instruction} (and {context} when given) and unescapes braces. */
static void fill(sbuf *b, const char *tpl, const char *context, const char *instruction) {
    for (const char *p = tpl; *p; p++) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            sb_add(b, p, 1);
            p++;
        } else if (!strncmp(p, "{instruction}", 13)) {
            sb_add(b, instruction, strlen(instruction));
            p += 12;
        } else if (!strncmp(p, "{context}", 9)) {
            sb_add(b, context, strlen(context));
            p += 8;
        } else {
            sb_add(b, p, 1);
        }
    }
    sb_add(b, "", 0);
}

char *ei_template_text(const ei_template *t) {
    sbuf b = {0};
    /* The stored parts hold escaped braces already; rebuild by concatenation. */
    sb_add(&b, t->before_ctx, strlen(t->before_ctx));
    if (t->has_context) sb_add(&b, "{context}", 9);
    sb_add(&b, t->after_ctx, strlen(t->after_ctx));
    sb_add(&b, "{answer}", 8);
    sb_add(&b, t->after_answer, strlen(t->after_answer));
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* Encodes s (no BOS) and appends with the given mask value: as the start of a text, or (cont) as
 * the continuation of the text before it. */
static int enc_push(const ei_tokenizer *tok, const char *s, size_t n, int special, int cont, ei_tokvec *v,
                    uint8_t mask) {
    if (n == 0) return 0;
    int32_t *ids = NULL;
    size_t k = 0;
    int rc = cont ? ei_tokenizer_encode_cont(tok, s, n, special, &ids, &k)
                  : ei_tokenizer_encode(tok, s, n, 0, special, &ids, &k);
    if (rc != 0) return -1;
    rc = ei_tokvec_push(v, ids, k, mask);
    free(ids);
    return rc;
}

static int push1(ei_tokvec *v, int32_t id, uint8_t mask) { return ei_tokvec_push(v, &id, 1, mask); }

/* Moves the trailing spaces of a to the front of b. Every shipped tokenizer attaches a space to the
 * word after it ("\xE2\x96\x81Paris", " Paris"), so a text cut after a space would end in a lone
 * space piece that the whole text never has. */
static void move_spaces(sbuf *a, sbuf *b) {
    size_t k = 0;
    while (k < a->n && a->s[a->n - 1 - k] == ' ') k++;
    if (!k || a->oom || b->oom) return;
    char *t = malloc(k + b->n + 1);
    if (!t) {
        b->oom = 1;
        return;
    }
    memset(t, ' ', k);
    if (b->n) memcpy(t + k, b->s, b->n);
    t[k + b->n] = '\0';
    free(b->s);
    b->s = t;
    b->n += k;
    b->cap = b->n + 1;
    a->n -= k;
    a->s[a->n] = '\0';
}

int ei_prepare_instruct(const ei_tokenizer *tok, const ei_template *t, const char *context,
                        const char *instruction, const char *answer, int64_t max_tokens, int eval_prompt,
                        ei_tokvec *out, ei_tokvec *ref) {
    out->n = 0;
    if (!context) context = "";
    if (!instruction) instruction = "";
    if (!answer) answer = "";
    int bos = ei_tokenizer_bos(tok), eos = ei_tokenizer_eos(tok);
    int sp = t->parse_special;
    sbuf before = {0}, ctx = {0}, after = {0}, prompt = {0}, ans = {0}, ref_text = {0};
    ei_tokvec a = {0}, c = {0};
    int rc = -1;
    fill(&before, t->before_ctx, "", instruction);
    fill(&after, t->after_ctx, "", instruction);
    if (t->has_context) sb_add(&ctx, context, strlen(context));
    sb_add(&ctx, "", 0);
    sb_add(&prompt, before.s, before.n);
    sb_add(&prompt, ctx.s, ctx.n);
    sb_add(&prompt, after.s, after.n);
    /* The answer text starts with the prompt's trailing spaces, and is encoded as the continuation
     * of the prompt: [BOS] encode(P) encode(A) is then the encoding of P + A as one text (tested for
     * every template and tokenizer kind), and the prompt [BOS] encode(P), the same with or without
     * an answer, is what generation starts from. */
    sb_add(&ans, "", 0);
    sb_add(&ref_text, "", 0);
    move_spaces(&prompt, &ans);
    sb_add(&ref_text, ans.s, ans.n);
    sb_add(&ans, answer, strlen(answer));
    sb_add(&ref_text, answer, strlen(answer));
    fill(&ans, t->after_answer, "", "");
    if (before.oom || ctx.oom || after.oom || prompt.oom || ans.oom || ref_text.oom) {
        ei_error_set("out of memory");
        goto done;
    }
    int cont = prompt.n > 0; /* an empty prompt: the answer starts the text */
    if (eval_prompt) {
        ref->n = 0;
        if (enc_push(tok, ref_text.s, ref_text.n, 0, cont, ref, 1) != 0) goto done;
    } else if (enc_push(tok, ans.s, ans.n, sp, cont, &a, 1) != 0 || (eos >= 0 && push1(&a, eos, 1) != 0)) {
        goto done;
    }
    if (bos >= 0 && push1(out, bos, 0) != 0) goto done;
    if (enc_push(tok, prompt.s, prompt.n, sp, 0, out, 0) != 0) goto done;
    rc = EI_SAMPLE_OK;
    if (max_tokens > 0 && (int64_t)(out->n + a.n) > max_tokens) {
        /* Too long: rebuild the prompt around a context cut in its middle. The three parts are
         * consecutive pieces of the prompt text, so each after the first continues the one before,
         * and spaces move forward as between prompt and answer. */
        move_spaces(&before, &ctx);
        move_spaces(&ctx, &after);
        sbuf rest = {0};
        move_spaces(&after, &rest); /* the answer has them already */
        free(rest.s);
        if (before.oom || ctx.oom || after.oom) goto oom;
        out->n = 0;
        if (bos >= 0 && push1(out, bos, 0) != 0) goto fail;
        if (enc_push(tok, before.s, before.n, sp, 0, out, 0) != 0) goto fail;
        if (ctx.n && enc_push(tok, ctx.s, ctx.n, sp, before.n > 0, &c, 0) != 0) goto fail;
        size_t fixed_n = out->n;
        ei_tokvec f = {0};
        if (enc_push(tok, after.s, after.n, sp, before.n + ctx.n > 0, &f, 0) != 0) {
            ei_tokvec_free(&f);
            goto fail;
        }
        int64_t fixed = (int64_t)(fixed_n + f.n + a.n);
        int64_t keep = max_tokens - fixed;
        if (keep < 1 || (size_t)keep > c.n) {
            ei_tokvec_free(&f);
            rc = EI_SAMPLE_TOO_LONG;
            goto done;
        }
        size_t tail = (size_t)keep / 2, head = (size_t)keep - tail;
        if (ei_tokvec_push(out, c.ids, head, 0) != 0 || ei_tokvec_push(out, c.ids + c.n - tail, tail, 0) != 0 ||
            ei_tokvec_push(out, f.ids, f.n, 0) != 0) {
            ei_tokvec_free(&f);
            goto fail;
        }
        ei_tokvec_free(&f);
        rc = EI_SAMPLE_TRUNCATED;
    }
    if (ei_tokvec_push(out, a.ids, a.n, 1) != 0) goto fail;
    goto done;
oom:
    ei_error_set("out of memory");
fail:
    rc = -1;
done:
    free(before.s);
    free(ctx.s);
    free(after.s);
    free(prompt.s);
    free(ans.s);
    free(ref_text.s);
    ei_tokvec_free(&a);
    ei_tokvec_free(&c);
    return rc;
}

/* ------------------------------------------------------------------ UTF-8 */

int ei_utf8_check(const char *buf, size_t len, size_t *bad_offset) {
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            min = 0x80;
            c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            min = 0x800;
            c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            min = 0x10000;
            c &= 0x07;
        } else {
            *bad_offset = i;
            return -1;
        }
        if (len - i <= n) {
            *bad_offset = i;
            return -1;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                *bad_offset = i;
                return -1;
            }
            c = (c << 6) | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
            *bad_offset = i;
            return -1;
        }
        i += n + 1;
    }
    return 0;
}
