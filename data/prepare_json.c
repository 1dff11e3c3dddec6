/* JSON field selectors for `ei prepare` (grammar in data/prepare.h). */
#include "data/prepare.h"

#include "core/ei_error.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One step of a path: an object member, or an array index when name is NULL. */
typedef struct {
    char *name;
    long index;
} step;

typedef struct part part;

/* A path, fixed ("a.b[2]": steps) or built per object from other fields' values
 * ("option{gold}": n_tmpl parts, literal text and paths, resolved into steps when evaluated). */
typedef struct {
    step *steps;
    int n;
    char *text; /* the path as written, for messages */
    part *tmpl;
    int n_tmpl;
} path;

/* A format part: literal text, or a path to a value. */
struct part {
    char *lit;
    path p;
};

struct ei_selector {
    char *text;
    int has_array;
    path prefix; /* the array (with "[]") or, without it, empty */
    int is_format;
    path body;
    part *parts;
    int n_parts;
};

static void path_free(path *p) {
    for (int i = 0; i < p->n; i++) free(p->steps[i].name);
    free(p->steps);
    free(p->text);
    for (int i = 0; i < p->n_tmpl; i++) {
        free(p->tmpl[i].lit);
        path_free(&p->tmpl[i].p);
    }
    free(p->tmpl);
    memset(p, 0, sizeof *p);
}

void ei_selector_free(ei_selector *s) {
    if (!s) return;
    path_free(&s->prefix);
    path_free(&s->body);
    for (int i = 0; i < s->n_parts; i++) {
        free(s->parts[i].lit);
        path_free(&s->parts[i].p);
    }
    free(s->parts);
    free(s->text);
    free(s);
}

static int add_step(path *p, const char *name, size_t n, long index) {
    step *ns = realloc(p->steps, sizeof *ns * (size_t)(p->n + 1));
    if (!ns) return -1;
    p->steps = ns;
    ns[p->n].name = NULL;
    ns[p->n].index = index;
    if (name) {
        ns[p->n].name = malloc(n + 1);
        if (!ns[p->n].name) return -1;
        memcpy(ns[p->n].name, name, n);
        ns[p->n].name[n] = '\0';
    }
    p->n++;
    return 0;
}

/* Parses "a.b[2].c" (s, n bytes; may be empty = the value itself). */
static int path_parse_fixed(path *p, const char *s, size_t n, const char *option) {
    p->text = malloc(n + 1);
    if (!p->text) return ei_error_set("out of memory");
    memcpy(p->text, s, n);
    p->text[n] = '\0';
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '.' && s[j] != '[') j++;
        if (j > i && add_step(p, s + i, j - i, 0) != 0) return ei_error_set("out of memory");
        if (j == i && s[j] != '[')
            return ei_error_set("--%s: empty field name in '%.*s'", option, (int)n, s);
        while (j < n && s[j] == '[') {
            char *end = NULL;
            long idx = strtol(s + j + 1, &end, 10);
            if (end == s + j + 1 || (size_t)(end - s) >= n || *end != ']' || idx < 0)
                return ei_error_set("--%s: bad index in '%.*s' (write [N], or [] once to take every element)",
                                    option, (int)n, s);
            if (add_step(p, NULL, 0, idx) != 0) return ei_error_set("out of memory");
            j = (size_t)(end - s) + 1;
        }
        if (j < n && s[j] != '.')
            return ei_error_set("--%s: unexpected '%c' in '%.*s'", option, s[j], (int)n, s);
        i = j < n ? j + 1 : j;
        if (j < n && i == n) return ei_error_set("--%s: '%.*s' ends with '.'", option, (int)n, s);
    }
    return 0;
}

static int path_parse(path *p, const char *s, size_t n, const char *option);

static int tmpl_add(path *p, const char *s, size_t n, int is_path, const char *option) {
    part *np = realloc(p->tmpl, sizeof *np * (size_t)(p->n_tmpl + 1));
    if (!np) return ei_error_set("out of memory");
    p->tmpl = np;
    part *pt = &np[p->n_tmpl++];
    memset(pt, 0, sizeof *pt);
    if (is_path) return path_parse(&pt->p, s, n, option);
    if (!(pt->lit = malloc(n + 1))) return ei_error_set("out of memory");
    memcpy(pt->lit, s, n);
    pt->lit[n] = '\0';
    return 0;
}

/* End of the {...} that opens at s[0] (braces nest), or NULL. */
static const char *brace_end(const char *s, const char *end) {
    int depth = 0;
    for (const char *q = s; q < end; q++) {
        if (*q == '{') depth++;
        else if (*q == '}' && --depth == 0) return q;
    }
    return NULL;
}

/* A path, in which {field} stands for the text of another field's value ("option{gold}",
 * "options[{gold}]"); placeholders nest. The fixed parts are checked now, with every placeholder
 * standing for "0", so a malformed path fails before any input is read. */
static int path_parse(path *p, const char *s, size_t n, const char *option) {
    if (!memchr(s, '{', n) && !memchr(s, '}', n)) return path_parse_fixed(p, s, n, option);
    if (!(p->text = malloc(n + 1))) return ei_error_set("out of memory");
    memcpy(p->text, s, n);
    p->text[n] = '\0';
    char *probe = malloc(n + 1);
    size_t pn = 0, lit = 0;
    if (!probe) return ei_error_set("out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (s[i] == '}') {
            rc = ei_error_set("--%s: unmatched '}' in '%s'", option, p->text);
            break;
        }
        if (s[i] != '{') continue;
        const char *e = brace_end(s + i, s + n);
        if (!e) rc = ei_error_set("--%s: unclosed '{' in '%s'", option, p->text);
        else if (e == s + i + 1) rc = ei_error_set("--%s: empty {} in '%s'", option, p->text);
        if (rc == 0 && i > lit) rc = tmpl_add(p, s + lit, i - lit, 0, option);
        if (rc == 0) rc = tmpl_add(p, s + i + 1, (size_t)(e - s - i - 1), 1, option);
        if (rc != 0) break;
        memcpy(probe + pn, s + lit, i - lit);
        pn += i - lit;
        probe[pn++] = '0';
        i = (size_t)(e - s);
        lit = i + 1;
    }
    if (rc == 0 && lit < n) {
        rc = tmpl_add(p, s + lit, n - lit, 0, option);
        memcpy(probe + pn, s + lit, n - lit);
        pn += n - lit;
    }
    if (rc == 0) {
        /* path_parse_fixed reads indexes with strtol, which stops only at a non-digit: end the text */
        probe[pn] = '\0';
        path check = {0};
        rc = path_parse_fixed(&check, probe, pn, option);
        path_free(&check);
        if (rc != 0) ei_error_prefix("in '%s': ", p->text);
    }
    free(probe);
    return rc;
}

static int add_part(ei_selector *sel, const char *lit, size_t n, int is_path, const char *option) {
    part *np = realloc(sel->parts, sizeof *np * (size_t)(sel->n_parts + 1));
    if (!np) return ei_error_set("out of memory");
    sel->parts = np;
    part *pt = &np[sel->n_parts++];
    memset(pt, 0, sizeof *pt);
    if (is_path) return path_parse(&pt->p, lit, n, option);
    pt->lit = malloc(n + 1);
    if (!pt->lit) return ei_error_set("out of memory");
    memcpy(pt->lit, lit, n);
    pt->lit[n] = '\0';
    return 0;
}

static int format_parse(ei_selector *sel, const char *s, const char *option) {
    char *lit = malloc(strlen(s) + 1);
    size_t ln = 0;
    if (!lit) return ei_error_set("out of memory");
    for (const char *p = s; *p; p++) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            lit[ln++] = *p++;
            continue;
        }
        if (*p != '{') {
            lit[ln++] = *p;
            continue;
        }
        const char *e = brace_end(p, p + strlen(p));
        if (!e) {
            free(lit);
            return ei_error_set("--%s: unclosed '{' in '%s'", option, s);
        }
        if ((ln && add_part(sel, lit, ln, 0, option) != 0) || add_part(sel, p + 1, (size_t)(e - p - 1), 1, option) != 0) {
            free(lit);
            return -1;
        }
        if (e == p + 1) {
            free(lit);
            return ei_error_set("--%s: empty {} in '%s'", option, s);
        }
        ln = 0;
        p = e;
    }
    int rc = ln ? add_part(sel, lit, ln, 0, option) : 0;
    free(lit);
    if (rc == 0) {
        int fields = 0;
        for (int i = 0; i < sel->n_parts; i++) fields += sel->parts[i].lit == NULL;
        if (!fields)
            rc = ei_error_set("--%s: '%s' names no field: write a field path (a.b, list[].x, option{gold}) or a "
                              "format with {field} in it",
                              option, sel->text);
    }
    return rc;
}

/* A selector is a format when it starts with '{' or holds, outside braces, a character no field
 * path has (a space, a newline, ':' ...); otherwise it is one path, whose {field} parts are other
 * fields' values: "question1option{question1_gold_label}" names the field question1option2 when
 * question1_gold_label is 2, where "Q{n}: {text}" is text. */
static int looks_like_format(const char *s) {
    if (*s == '{') return 1;
    int depth = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '{') depth++;
        else if (*p == '}') depth--;
        else if (depth == 0 && !(isalnum(*p) || *p == '_' || *p == '-' || *p == '.' || *p == '[' || *p == ']' ||
                                  *p >= 0x80))
            return 1;
    }
    return 0;
}

ei_selector *ei_selector_parse(const char *text, const char *option) {
    ei_selector *s = calloc(1, sizeof *s);
    if (!s || !(s->text = strdup(text))) {
        free(s);
        ei_error_set("out of memory");
        return NULL;
    }
    const char *brace = strchr(text, '{');
    const char *arr = strstr(text, "[]");
    if (arr && brace && brace < arr) arr = NULL; /* "[]" inside a format is literal text */
    const char *body = text;
    if (arr) {
        const char *again = strstr(arr + 2, "[]");
        if (again && (!brace || again < brace)) {
            ei_error_set("--%s: '%s' has more than one []", option, text);
            goto fail;
        }
        s->has_array = 1;
        if (path_parse(&s->prefix, text, (size_t)(arr - text), option) != 0) goto fail;
        if (s->prefix.n == 0) {
            ei_error_set("--%s: '%s': [] needs a field name before it", option, text);
            goto fail;
        }
        body = arr + 2;
        if (*body == '.') body++;
        else if (*body) {
            ei_error_set("--%s: '%s': expected '.' after []", option, text);
            goto fail;
        }
    }
    if (strchr(body, '{') && looks_like_format(body)) {
        s->is_format = 1;
        if (format_parse(s, body, option) != 0) goto fail;
    } else if (path_parse(&s->body, body, strlen(body), option) != 0) {
        goto fail;
    }
    if (!s->has_array && !s->is_format && s->body.n == 0 && s->body.n_tmpl == 0) {
        ei_error_set("--%s: empty selector", option);
        goto fail;
    }
    return s;
fail:
    ei_selector_free(s);
    return NULL;
}

int ei_selector_is_array(const ei_selector *s) { return s->has_array; }
const char *ei_selector_text(const ei_selector *s) { return s->text; }

void ei_strings_free(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static int scalar_text(const cJSON *v, char **buf, size_t *len, size_t *cap, const char *what);

static const cJSON *walk(const cJSON *j, const path *p, int upto) {
    for (int i = 0; i < upto && j; i++) {
        const step *s = &p->steps[i];
        if (s->name) {
            j = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, s->name) : NULL;
        } else {
            if (!cJSON_IsArray(j)) return NULL;
            const cJSON *c = j->child;
            for (long k = 0; c && k < s->index; k++) c = c->next;
            j = c;
        }
    }
    return j;
}

/* Appends the text of a scalar value to *buf. */
static int scalar_text(const cJSON *v, char **buf, size_t *len, size_t *cap, const char *what) {
    char num[64];
    const char *s;
    if (cJSON_IsString(v)) {
        s = v->valuestring;
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        /* range first: converting a double outside long long's range (1e300) is undefined */
        if (d > -1e15 && d < 1e15 && d == (double)(long long)d) snprintf(num, sizeof num, "%lld", (long long)d);
        else snprintf(num, sizeof num, "%.17g", d);
        s = num;
    } else if (cJSON_IsBool(v)) {
        s = cJSON_IsTrue(v) ? "true" : "false";
    } else {
        return ei_error_set("field '%s' is %s, not text", what,
                            cJSON_IsNull(v) ? "null" : cJSON_IsArray(v) ? "an array (use [])" : "an object");
    }
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *len + n + 1) c *= 2;
        char *nb = realloc(*buf, c);
        if (!nb) return ei_error_set("out of memory");
        *buf = nb;
        *cap = c;
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
    return 0;
}

/* The value at path p in obj: *out is NULL when a field is missing, with *missing (malloc'd) the
 * path that was looked up (p's text, or for a path built from other fields the path they gave).
 * -1 with ei_error set when a field the path is built from is missing or not a scalar. */
static int resolve(const cJSON *obj, const path *p, const cJSON **out, char **missing) {
    *out = NULL;
    *missing = NULL;
    if (p->n_tmpl == 0) {
        if (!(*out = walk(obj, p, p->n)) && !(*missing = strdup(p->text))) return ei_error_set("out of memory");
        return 0;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (int i = 0; i < p->n_tmpl; i++) {
        const part *pt = &p->tmpl[i];
        int rc;
        if (pt->lit) {
            cJSON tmp = {0};
            tmp.type = cJSON_String;
            tmp.valuestring = pt->lit;
            rc = scalar_text(&tmp, &buf, &len, &cap, p->text);
        } else {
            const cJSON *v;
            char *miss;
            rc = resolve(obj, &pt->p, &v, &miss);
            if (rc == 0 && !v) rc = ei_error_set("missing field '%s' (in '%s')", miss, p->text);
            else if (rc == 0) rc = scalar_text(v, &buf, &len, &cap, pt->p.text);
            free(miss);
        }
        if (rc != 0) {
            free(buf);
            return -1;
        }
    }
    path q = {0};
    int rc = path_parse_fixed(&q, buf ? buf : "", len, "selector");
    if (rc != 0) {
        ei_error_set("'%s' gives '%s', which is not a field path", p->text, buf ? buf : "");
    } else if (!(*out = walk(obj, &q, q.n))) {
        size_t n = len + strlen(p->text) + 16;
        if ((*missing = malloc(n))) snprintf(*missing, n, "%s' (from '%s", buf, p->text);
        else rc = ei_error_set("out of memory");
    }
    path_free(&q);
    free(buf);
    return rc;
}

static int eval_body(const ei_selector *s, const cJSON *obj, char **out) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (!s->is_format) {
        const cJSON *v;
        char *miss;
        if (resolve(obj, &s->body, &v, &miss) != 0) return -1;
        if (!v) {
            /* as written: for a path inside list[] elements the element's own path */
            int fixed = s->body.n_tmpl == 0;
            ei_error_set("missing field '%s'", fixed ? s->text : miss);
            free(miss);
            return -1;
        }
        if (scalar_text(v, &buf, &len, &cap, s->text) != 0) return -1;
    } else {
        for (int i = 0; i < s->n_parts; i++) {
            const part *pt = &s->parts[i];
            if (pt->lit) {
                cJSON tmp = {0};
                tmp.type = cJSON_String;
                tmp.valuestring = pt->lit;
                if (scalar_text(&tmp, &buf, &len, &cap, s->text) != 0) goto fail;
                continue;
            }
            const cJSON *v;
            char *miss;
            if (resolve(obj, &pt->p, &v, &miss) != 0) goto fail;
            if (!v) {
                ei_error_set("missing field '%s' (in '%s')", miss, s->text);
                free(miss);
                goto fail;
            }
            if (scalar_text(v, &buf, &len, &cap, pt->p.text) != 0) goto fail;
        }
    }
    if (!buf) buf = calloc(1, 1);
    if (!buf) return ei_error_set("out of memory");
    *out = buf;
    return 0;
fail:
    free(buf);
    return -1;
}

int ei_selector_eval(const ei_selector *s, const void *json, char ***values, size_t *n) {
    const cJSON *root = json;
    *values = NULL;
    *n = 0;
    if (!s->has_array) {
        char **v = malloc(sizeof *v);
        if (!v) return ei_error_set("out of memory");
        if (eval_body(s, root, &v[0]) != 0) {
            free(v);
            return -1;
        }
        *values = v;
        *n = 1;
        return 0;
    }
    const cJSON *arr = walk(root, &s->prefix, s->prefix.n);
    if (!arr) return ei_error_set("missing field '%s'", s->prefix.text);
    if (!cJSON_IsArray(arr)) return ei_error_set("field '%s' is not an array", s->prefix.text);
    size_t cnt = (size_t)cJSON_GetArraySize(arr);
    char **v = calloc(cnt ? cnt : 1, sizeof *v);
    if (!v) return ei_error_set("out of memory");
    size_t k = 0;
    for (const cJSON *e = arr->child; e && k < cnt; e = e->next, k++) {
        if (eval_body(s, e, &v[k]) != 0) {
            ei_error_prefix("element %zu of '%s': ", k, s->prefix.text);
            ei_strings_free(v, k);
            return -1;
        }
    }
    *values = v;
    *n = k;
    return 0;
}
