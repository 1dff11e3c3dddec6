#include "config/ei_config.h"
#include "core/ei_error.h"
#include "core/ei_io.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define EI_CFG_MAX_INCLUDE_DEPTH 8

/* ---------------------------------------------------------------- schema helpers */

static void *field(const ei_config *c, int i) { return (char *)c->dst + c->keys[i].offset; }

static const char *type_name(const ei_cfg_key *k) {
    switch (k->type) {
    case EI_CFG_INT: case EI_CFG_I64: return "an integer";
    case EI_CFG_FLOAT: return "a number";
    case EI_CFG_BOOL: return "true or false";
    case EI_CFG_STRING: return "a string";
    case EI_CFG_ENUM: return "one of";
    case EI_CFG_STRLIST: return "a list of strings";
    case EI_CFG_FLOATS: return "a list of numbers";
    case EI_CFG_RECORDS: return "a list of mappings";
    }
    return "a value";
}

int ei_config_find(const ei_config *c, const char *key) {
    for (int i = 0; i < c->n_keys; i++)
        if (strcmp(c->keys[i].key, key) == 0) return i;
    return -1;
}

/* 1 if some schema key lies below the dotted prefix (i.e. prefix names a section). */
static int is_section(const ei_config *c, const char *prefix) {
    size_t n = strlen(prefix);
    for (int i = 0; i < c->n_keys; i++)
        if (strncmp(c->keys[i].key, prefix, n) == 0 && c->keys[i].key[n] == '.') return 1;
    return 0;
}

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return SIZE_MAX;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Writes " (did you mean X?)" for a close schema key, "" otherwise. */
static void suggest(const ei_config *c, const char *path, char *buf, size_t n) {
    buf[0] = '\0';
    const char *leaf = strrchr(path, '.');
    leaf = leaf ? leaf + 1 : path;
    size_t best = 3;
    const char *pick = NULL;
    for (int i = 0; i < c->n_keys; i++) {
        const char *k = c->keys[i].key;
        const char *kl = strrchr(k, '.');
        kl = kl ? kl + 1 : k;
        size_t d = strcmp(kl, leaf) == 0 ? 0 : edit_distance(path, k);
        if (d < best || (d == 0 && !pick)) {
            best = d;
            pick = k;
        }
    }
    if (pick) snprintf(buf, n, " (did you mean %s?)", pick);
}

/* ---------------------------------------------------------------- values */

static int is_null_scalar(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = (const char *)n->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

static int is_quoted(const yaml_node_t *n) {
    return n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
           n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
}

static int node_line(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

/* `name` is the key as messages show it: k->key, or "section.list[2].field" inside records. */
static int parse_number(const ei_cfg_key *k, const char *name, const yaml_node_t *n, const char *where, double *out) {
    if (n->type != YAML_SCALAR_NODE || is_quoted(n) || is_null_scalar(n))
        return ei_error_set("%s: %s: expected %s", where, name, "a number");
    const char *v = (const char *)n->data.scalar.value;
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno == ERANGE || !isfinite(x))
        return ei_error_set("%s: %s: expected a finite number, got '%s'", where, name, v);
    if (k->min <= k->max && (x < k->min || x > k->max))
        return ei_error_set("%s: %s: %s is out of range [%g, %g]", where, name, v, k->min, k->max);
    *out = x;
    return 0;
}

static int parse_integer(const ei_cfg_key *k, const char *name, const yaml_node_t *n, const char *where,
                         long long lo, long long hi, long long *out) {
    if (n->type != YAML_SCALAR_NODE || is_quoted(n) || is_null_scalar(n))
        return ei_error_set("%s: %s: expected an integer", where, name);
    const char *v = (const char *)n->data.scalar.value;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno == ERANGE)
        return ei_error_set("%s: %s: expected an integer, got '%s'", where, name, v);
    double mn = k->min, mx = k->max;
    if ((mn <= mx && ((double)x < mn || (double)x > mx)) || x < lo || x > hi) {
        if (mn <= mx)
            return ei_error_set("%s: %s: %s is out of range [%.0f, %.0f]", where, name, v, mn, mx);
        return ei_error_set("%s: %s: %s is out of range", where, name, v);
    }
    *out = x;
    return 0;
}

static int enum_index(const char *choices, const char *v) {
    size_t lv = strlen(v);
    int idx = 0;
    for (const char *p = choices; *p; idx++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == lv && strncmp(p, v, len) == 0) return idx;
        if (!bar) break;
        p = bar + 1;
    }
    return -1;
}

static int enum_name(const char *choices, int idx, char *buf, size_t n) {
    const char *p = choices;
    for (int i = 0; i < idx && p; i++) {
        p = strchr(p, '|');
        if (p) p++;
    }
    if (!p) return -1;
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    snprintf(buf, n, "%.*s", (int)len, p);
    return 0;
}

static void strlist_free(ei_cfg_strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static int parse_records(const ei_cfg_key *k, const char *name, void *f, yaml_document_t *doc, yaml_node_t *n,
                         const char *where, const char *file);

/* Validates node against key k and stores it in the field f. name: the key as messages show it;
 * where: "file:line" or "--set ..."; file: the file name when node lines mean something (records
 * name each item's own line), else NULL. On error the field is unchanged. */
static int store_value(const ei_cfg_key *k, const char *name, void *f, yaml_document_t *doc, yaml_node_t *n,
                       const char *where, const char *file) {
    switch (k->type) {
    case EI_CFG_INT: {
        long long x;
        if (parse_integer(k, name, n, where, INT_MIN, INT_MAX, &x)) return -1;
        *(int *)f = (int)x;
        break;
    }
    case EI_CFG_I64: {
        long long x;
        if (parse_integer(k, name, n, where, LLONG_MIN, LLONG_MAX, &x)) return -1;
        *(int64_t *)f = (int64_t)x;
        break;
    }
    case EI_CFG_FLOAT: {
        double x;
        if (parse_number(k, name, n, where, &x)) return -1;
        *(double *)f = x;
        break;
    }
    case EI_CFG_BOOL: {
        const char *v = n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : "";
        int b = -1;
        if (n->type == YAML_SCALAR_NODE && !is_quoted(n)) {
            if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on")) b = 1;
            if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off")) b = 0;
        }
        if (b < 0) return ei_error_set("%s: %s: expected true or false, got '%s'", where, name, v);
        *(int *)f = b;
        break;
    }
    case EI_CFG_STRING: {
        if (n->type != YAML_SCALAR_NODE) return ei_error_set("%s: %s: expected a string", where, name);
        char *s = NULL;
        if (!is_null_scalar(n)) {
            s = strdup((const char *)n->data.scalar.value);
            if (!s) return ei_error_set("out of memory");
        }
        free(*(char **)f);
        *(char **)f = s;
        break;
    }
    case EI_CFG_ENUM: {
        const char *v = n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : "";
        int idx = n->type == YAML_SCALAR_NODE ? enum_index(k->choices, v) : -1;
        if (idx < 0) return ei_error_set("%s: %s: expected one of %s, got '%s'", where, name, k->choices, v);
        *(int *)f = idx;
        break;
    }
    case EI_CFG_STRLIST: {
        ei_cfg_strlist l = {0};
        yaml_node_item_t *beg = NULL, *end = NULL;
        if (n->type == YAML_SEQUENCE_NODE) {
            beg = n->data.sequence.items.start;
            end = n->data.sequence.items.top;
        } else if (n->type != YAML_SCALAR_NODE || is_null_scalar(n)) {
            return ei_error_set("%s: %s: expected a list of strings", where, name);
        }
        int cnt = n->type == YAML_SCALAR_NODE ? 1 : (int)(end - beg);
        l.items = calloc((size_t)cnt + 1, sizeof(char *));
        if (!l.items) return ei_error_set("out of memory");
        for (int j = 0; j < cnt; j++) {
            yaml_node_t *e = n->type == YAML_SCALAR_NODE ? n : yaml_document_get_node(doc, beg[j]);
            if (!e || e->type != YAML_SCALAR_NODE || is_null_scalar(e)) {
                strlist_free(&l);
                return ei_error_set("%s: %s: element %d: expected a string", where, name, j + 1);
            }
            l.items[l.n] = strdup((const char *)e->data.scalar.value);
            if (!l.items[l.n]) {
                strlist_free(&l);
                return ei_error_set("out of memory");
            }
            l.n++;
        }
        strlist_free((ei_cfg_strlist *)f);
        *(ei_cfg_strlist *)f = l;
        break;
    }
    case EI_CFG_FLOATS: {
        if (n->type != YAML_SEQUENCE_NODE)
            return ei_error_set("%s: %s: expected a list of %d numbers", where, name, k->count);
        yaml_node_item_t *beg = n->data.sequence.items.start, *end = n->data.sequence.items.top;
        if ((int)(end - beg) != k->count)
            return ei_error_set("%s: %s: expected a list of %d numbers, got %d", where, name, k->count,
                                (int)(end - beg));
        double tmp[64];
        if (k->count > 64) return ei_error_set("%s: schema: too many elements", k->key);
        for (int j = 0; j < k->count; j++) {
            yaml_node_t *e = yaml_document_get_node(doc, beg[j]);
            if (!e) return ei_error_set("%s: %s: bad list element", where, name);
            if (parse_number(k, name, e, where, &tmp[j])) return -1;
        }
        memcpy(f, tmp, sizeof(double) * (size_t)k->count);
        break;
    }
    case EI_CFG_RECORDS:
        if (parse_records(k, name, f, doc, n, where, file)) return -1;
        break;
    default: return ei_error_set("%s: schema: unknown type", k->key);
    }
    return 0;
}

/* store_value into key i of c, recording where the value came from. */
static int apply_value(ei_config *c, int i, yaml_document_t *doc, yaml_node_t *n, const char *where,
                       const char *file) {
    if (store_value(&c->keys[i], c->keys[i].key, field(c, i), doc, n, where, file)) return -1;
    char *o = strdup(where);
    if (!o) return ei_error_set("out of memory");
    free(c->origin[i]);
    c->origin[i] = o;
    return 0;
}

/* ---------------------------------------------------------------- documents */

typedef struct {
    yaml_parser_t parser;
    yaml_document_t doc;
    int have_doc;
} yaml_text;

static int yaml_text_load(yaml_text *y, const char *text, size_t len, const char *name) {
    memset(y, 0, sizeof *y);
    if (!yaml_parser_initialize(&y->parser)) return ei_error_set("%s: cannot initialise YAML parser", name);
    yaml_parser_set_input_string(&y->parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&y->parser, &y->doc)) {
        int rc = ei_error_set("%s:%d: YAML syntax error: %s%s%s", name, (int)y->parser.problem_mark.line + 1,
                              y->parser.problem ? y->parser.problem : "unknown problem",
                              y->parser.context ? " " : "", y->parser.context ? y->parser.context : "");
        yaml_parser_delete(&y->parser);
        return rc;
    }
    y->have_doc = 1;
    /* A second document in the same file would be silently ignored; refuse it. */
    yaml_document_t extra;
    if (yaml_document_get_root_node(&y->doc)) {
        if (!yaml_parser_load(&y->parser, &extra)) {
            int rc = ei_error_set("%s:%d: YAML syntax error: %s", name, (int)y->parser.problem_mark.line + 1,
                                  y->parser.problem ? y->parser.problem : "unknown problem");
            yaml_document_delete(&y->doc);
            yaml_parser_delete(&y->parser);
            return rc;
        }
        int more = yaml_document_get_root_node(&extra) != NULL;
        int line = more ? node_line(yaml_document_get_root_node(&extra)) : 0;
        yaml_document_delete(&extra);
        if (more) {
            yaml_document_delete(&y->doc);
            yaml_parser_delete(&y->parser);
            return ei_error_set("%s:%d: only one YAML document per config file", name, line);
        }
    }
    return 0;
}

static void yaml_text_free(yaml_text *y) {
    if (y->have_doc) yaml_document_delete(&y->doc);
    yaml_parser_delete(&y->parser);
}

#include "config/ei_config_records.inc"

static int load_text(ei_config *c, const char *text, size_t len, const char *name, int depth);

static int load_file_depth(ei_config *c, const char *path, int depth) {
    if (depth > EI_CFG_MAX_INCLUDE_DEPTH)
        return ei_error_set("%s: includes nested more than %d deep (an include cycle?)", path,
                            EI_CFG_MAX_INCLUDE_DEPTH);
    char *buf;
    size_t len;
    if (ei_file_read_all(path, &buf, &len)) return -1;
    int rc = load_text(c, buf, len, path, depth);
    free(buf);
    return rc;
}

static int do_includes(ei_config *c, yaml_document_t *doc, yaml_node_t *v, const char *name, int depth) {
    yaml_node_item_t *beg = NULL, *end = NULL;
    if (v->type == YAML_SEQUENCE_NODE) {
        beg = v->data.sequence.items.start;
        end = v->data.sequence.items.top;
    } else if (v->type != YAML_SCALAR_NODE || is_null_scalar(v)) {
        return ei_error_set("%s:%d: include: expected a path or a list of paths", name, node_line(v));
    }
    int cnt = v->type == YAML_SCALAR_NODE ? 1 : (int)(end - beg);
    for (int j = 0; j < cnt; j++) {
        yaml_node_t *e = v->type == YAML_SCALAR_NODE ? v : yaml_document_get_node(doc, beg[j]);
        if (!e || e->type != YAML_SCALAR_NODE || is_null_scalar(e))
            return ei_error_set("%s:%d: include: expected a path", name, node_line(v));
        if (load_file_depth(c, (const char *)e->data.scalar.value, depth + 1))
            return ei_error_prefix("%s:%d: include: ", name, node_line(e));
    }
    return 0;
}

/* Duplicate keys anywhere in the document, found before anything is applied.
 *
 * Each mapping is checked once (seen[] is indexed by node): libyaml resolves an alias to the node
 * of its anchor, so a document of nested aliases shares mappings, and walking the tree they spell
 * out would take 3^depth steps for a 1 KB file of `b: {x: *a, y: *a, z: *a}` lines. Keys are
 * compared through a hash set of the mapping's pairs, so 40k keys cost 40k lookups, not 800M
 * comparisons; the pairs are still visited in document order, so the first duplicate reported is
 * the one a plain scan finds. */
static uint64_t key_hash(const char *s) {
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static const char *pair_key(yaml_document_t *doc, const yaml_node_pair_t *p, yaml_node_t **kn) {
    *kn = yaml_document_get_node(doc, p->key);
    return *kn && (*kn)->type == YAML_SCALAR_NODE ? (const char *)(*kn)->data.scalar.value : NULL;
}

static int check_duplicates(yaml_document_t *doc, yaml_node_t *m, const char *name, const char *prefix, int depth,
                            unsigned char *seen) {
    if (depth > 64) return ei_error_set("%s: mappings nested too deeply", name);
    size_t idx = (size_t)(m - doc->nodes.start);
    if (seen[idx]) return 0;
    seen[idx] = 1;
    yaml_node_pair_t *pairs = m->data.mapping.pairs.start;
    size_t np = (size_t)(m->data.mapping.pairs.top - pairs), cap = 16;
    while (cap < 2 * np) cap <<= 1;
    size_t *slots = calloc(cap, sizeof *slots); /* pair index + 1; 0 = empty */
    if (!slots) return ei_error_set("%s: out of memory", name);
    int rc = 0;
    for (size_t i = 0; i < np && !rc; i++) {
        yaml_node_t *kn, *prev;
        const char *key = pair_key(doc, &pairs[i], &kn);
        if (!key) continue;
        size_t h = (size_t)key_hash(key) & (cap - 1);
        for (; slots[h]; h = (h + 1) & (cap - 1)) {
            const char *other = pair_key(doc, &pairs[slots[h] - 1], &prev);
            if (strcmp(other, key) == 0) {
                rc = ei_error_set("%s:%d: %s%s%s: duplicate key (first at line %d)", name, node_line(kn), prefix,
                                  *prefix ? "." : "", key, node_line(prev));
                break;
            }
        }
        if (rc) break;
        slots[h] = i + 1;
        yaml_node_t *vn = yaml_document_get_node(doc, pairs[i].value);
        if (vn && vn->type == YAML_MAPPING_NODE) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s%s%s", prefix, *prefix ? "." : "", key);
            rc = check_duplicates(doc, vn, name, sub, depth + 1, seen);
        }
    }
    free(slots);
    return rc;
}

static int walk_mapping(ei_config *c, yaml_document_t *doc, yaml_node_t *m, const char *prefix, const char *name,
                        int depth) {
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(doc, p->value);
        if (!kn || !vn) return ei_error_set("%s: malformed YAML document", name);
        int line = node_line(kn);
        if (kn->type != YAML_SCALAR_NODE)
            return ei_error_set("%s:%d: %s%skeys must be plain names", name, line, prefix, *prefix ? ": " : "");
        const char *key = (const char *)kn->data.scalar.value;
        if (!*prefix && strcmp(key, "include") == 0) continue; /* handled before the walk */
        size_t plen = strlen(prefix) + strlen(key) + 2;
        char *path = malloc(plen);
        if (!path) return ei_error_set("out of memory");
        snprintf(path, plen, "%s%s%s", prefix, *prefix ? "." : "", key);
        int rc = 0;
        int idx = ei_config_find(c, path);
        if (idx >= 0) {
            char where[512];
            snprintf(where, sizeof where, "%s:%d", name, line);
            rc = apply_value(c, idx, doc, vn, where, name);
        } else if (is_section(c, path)) {
            if (vn->type == YAML_MAPPING_NODE)
                rc = walk_mapping(c, doc, vn, path, name, depth);
            else if (!is_null_scalar(vn)) /* "section:" with nothing under it is fine */
                rc = ei_error_set("%s:%d: %s: is a section, expected a mapping of keys", name, line, path);
        } else {
            char hint[160];
            suggest(c, path, hint, sizeof hint);
            rc = ei_error_set("%s:%d: %s: unknown key%s", name, line, path, hint);
        }
        free(path);
        if (rc) return rc;
    }
    return 0;
}

static int load_text(ei_config *c, const char *text, size_t len, const char *name, int depth) {
    yaml_text y;
    if (yaml_text_load(&y, text, len, name)) return -1;
    yaml_node_t *root = yaml_document_get_root_node(&y.doc);
    int rc = 0;
    if (!root || is_null_scalar(root)) {
        rc = 0; /* an empty file changes nothing */
    } else if (root->type != YAML_MAPPING_NODE) {
        rc = ei_error_set("%s:%d: expected a mapping of sections (key: value)", name, node_line(root));
    } else {
        /* one flag per node of the document, for check_duplicates */
        unsigned char *seen = calloc((size_t)(y.doc.nodes.top - y.doc.nodes.start) + 1, 1);
        rc = seen ? check_duplicates(&y.doc, root, name, "", 0, seen) : ei_error_set("%s: out of memory", name);
        free(seen);
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top && !rc; p++) {
            yaml_node_t *kn = yaml_document_get_node(&y.doc, p->key);
            if (kn && kn->type == YAML_SCALAR_NODE && strcmp((const char *)kn->data.scalar.value, "include") == 0 &&
                ei_config_find(c, "include") < 0)
                rc = do_includes(c, &y.doc, yaml_document_get_node(&y.doc, p->value), name, depth);
        }
        if (!rc) rc = walk_mapping(c, &y.doc, root, "", name, depth);
    }
    yaml_text_free(&y);
    return rc;
}

int ei_config_load_file(ei_config *c, const char *path) { return load_file_depth(c, path, 0); }

int ei_config_load_string(ei_config *c, const char *text, const char *name) {
    return load_text(c, text, strlen(text), name, 0);
}

/* Parses value as a one-node YAML document and applies it to key idx. */
static int apply_text(ei_config *c, int idx, const char *value, const char *where) {
    yaml_text y;
    if (yaml_text_load(&y, value, strlen(value), where)) return -1;
    yaml_node_t *root = yaml_document_get_root_node(&y.doc);
    int rc;
    if (!root) {
        /* An empty value is YAML null: build it by parsing "~". */
        yaml_text_free(&y);
        if (yaml_text_load(&y, "~", 1, where)) return -1;
        root = yaml_document_get_root_node(&y.doc);
    }
    rc = apply_value(c, idx, &y.doc, root, where, NULL);
    yaml_text_free(&y);
    return rc;
}

int ei_config_set(ei_config *c, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return ei_error_set("--set %s: expected section.key=value", assignment);
    char key[256];
    size_t kl = (size_t)(eq - assignment);
    if (kl >= sizeof key) return ei_error_set("--set %s: key too long", assignment);
    memcpy(key, assignment, kl);
    key[kl] = '\0';
    char where[600];
    snprintf(where, sizeof where, "--set %s", assignment);
    int idx = ei_config_find(c, key);
    if (idx < 0) {
        char hint[160];
        suggest(c, key, hint, sizeof hint);
        return ei_error_set("%s: %s: unknown key%s", where, key, hint);
    }
    return apply_text(c, idx, eq + 1, where);
}

/* ---------------------------------------------------------------- init / release */

int ei_config_init(ei_config *c, const ei_cfg_key *keys, void *dst) {
    memset(c, 0, sizeof *c);
    c->keys = keys;
    c->dst = dst;
    int n = 0;
    while (keys[n].key) n++;
    c->n_keys = n;
    c->origin = calloc((size_t)n + 1, sizeof(char *));
    if (!c->origin) return ei_error_set("out of memory");
    for (int i = 0; i < n; i++) {
        void *f = field(c, i);
        switch (keys[i].type) {
        case EI_CFG_INT: case EI_CFG_BOOL: case EI_CFG_ENUM: *(int *)f = 0; break;
        case EI_CFG_I64: *(int64_t *)f = 0; break;
        case EI_CFG_FLOAT: *(double *)f = 0; break;
        case EI_CFG_STRING: *(char **)f = NULL; break;
        case EI_CFG_STRLIST: memset(f, 0, sizeof(ei_cfg_strlist)); break;
        case EI_CFG_FLOATS: memset(f, 0, sizeof(double) * (size_t)keys[i].count); break;
        case EI_CFG_RECORDS: {
            memset(f, 0, sizeof(ei_cfg_records));
            const ei_cfg_record_spec *spec = records_spec(&keys[i]);
            if (!spec || !spec->fields || !spec->size) {
                ei_config_release(c);
                return ei_error_set("schema: %s: records without a spec (EI_CFG_RECORDS_SPEC)", keys[i].key);
            }
            break;
        }
        default: ei_config_release(c); return ei_error_set("schema: %s: unknown type", keys[i].key);
        }
    }
    for (int i = 0; i < n; i++) {
        /* The dump writes sections as nested mappings; a section split in two would be written
         * twice, which the loader rejects as a duplicate key. */
        const char *dot = strrchr(keys[i].key, '.');
        size_t sl = dot ? (size_t)(dot - keys[i].key) : 0;
        for (int j = 0; j + 1 < i && sl; j++) {
            if (strncmp(keys[j].key, keys[i].key, sl) == 0 && keys[j].key[sl] == '.' &&
                !(strncmp(keys[i - 1].key, keys[i].key, sl) == 0 && keys[i - 1].key[sl] == '.')) {
                ei_config_release(c);
                return ei_error_set("schema: %s: keys of a section must be contiguous", keys[i].key);
            }
        }
        if (!keys[i].def) continue;
        if (apply_text(c, i, keys[i].def, "schema default")) {
            ei_config_release(c);
            return -1;
        }
        free(c->origin[i]);
        c->origin[i] = NULL;
    }
    return 0;
}

void ei_config_release(ei_config *c) {
    if (!c->keys) return;
    for (int i = 0; i < c->n_keys; i++) {
        if (c->origin) free(c->origin[i]);
        if (!c->dst) continue;
        if (c->keys[i].type == EI_CFG_STRING) {
            free(*(char **)field(c, i));
            *(char **)field(c, i) = NULL;
        } else if (c->keys[i].type == EI_CFG_STRLIST) {
            strlist_free((ei_cfg_strlist *)field(c, i));
        } else if (c->keys[i].type == EI_CFG_RECORDS) {
            ei_cfg_records_free((ei_cfg_records *)field(c, i), records_spec(&c->keys[i]));
        }
    }
    free(c->origin);
    memset(c, 0, sizeof *c);
}

int ei_config_check_required(const ei_config *c) {
    for (int i = 0; i < c->n_keys; i++) {
        if (!(c->keys[i].flags & EI_CFG_REQUIRED)) continue;
        int missing = !c->origin[i] && !c->keys[i].def;
        if (c->keys[i].type == EI_CFG_STRING && !*(char **)field(c, i)) missing = 1;
        if (missing)
            return ei_error_set("%s: required key is not set (%s)", c->keys[i].key,
                                c->keys[i].help ? c->keys[i].help : "no help");
    }
    return 0;
}

const char *ei_config_origin(const ei_config *c, const char *key) {
    int i = ei_config_find(c, key);
    if (i < 0) return "unknown key";
    return c->origin[i] ? c->origin[i] : "default";
}

/* ---------------------------------------------------------------- output */

/* Shortest %g form that reads back to the same double. */
static void format_double(double x, char *buf, size_t n) {
    /* Never true for our callers; the test lets gcc 12 (-O3 with -fsanitize=undefined) see that buf is
     * not NULL, where it otherwise reports a false "null destination pointer" format-truncation. */
    if (!buf || !n) return;
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
}

static void format_string(const char *s, char *buf, size_t n) {
    size_t k = 0;
    if (!s) {
        snprintf(buf, n, "~");
        return;
    }
    if (n < 8) {
        if (n) buf[0] = '\0';
        return;
    }
    buf[k++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p && k + 6 < n; p++) {
        if (*p == '"' || *p == '\\') {
            buf[k++] = '\\';
            buf[k++] = (char)*p;
        } else if (*p == '\n') {
            buf[k++] = '\\';
            buf[k++] = 'n';
        } else if (*p == '\t') {
            buf[k++] = '\\';
            buf[k++] = 't';
        } else if (*p < 0x20 || *p == 0x7f) {
            k += (size_t)snprintf(buf + k, n - k, "\\x%02x", *p);
        } else {
            buf[k++] = (char)*p;
        }
    }
    buf[k++] = '"';
    buf[k] = '\0';
}

void ei_config_format_value(const ei_cfg_key *k, const void *dst, char *buf, size_t n) {
    const void *f = (const char *)dst + k->offset;
    buf[0] = '\0';
    switch (k->type) {
    case EI_CFG_RECORDS: {
        char *t = format_alloc(k, dst);
        if (t) snprintf(buf, n, "%s", t);
        free(t);
        break;
    }
    case EI_CFG_INT: snprintf(buf, n, "%d", *(const int *)f); break;
    case EI_CFG_I64: snprintf(buf, n, "%lld", (long long)*(const int64_t *)f); break;
    case EI_CFG_FLOAT: format_double(*(const double *)f, buf, n); break;
    case EI_CFG_BOOL: snprintf(buf, n, "%s", *(const int *)f ? "true" : "false"); break;
    case EI_CFG_STRING: format_string(*(char *const *)f, buf, n); break;
    case EI_CFG_ENUM:
        if (enum_name(k->choices, *(const int *)f, buf, n)) snprintf(buf, n, "%d", *(const int *)f);
        break;
    case EI_CFG_STRLIST: case EI_CFG_FLOATS: {
        size_t used = 0;
        int cnt = k->type == EI_CFG_FLOATS ? k->count : ((const ei_cfg_strlist *)f)->n;
        used += (size_t)snprintf(buf, n, "[");
        for (int j = 0; j < cnt && used < n; j++) {
            char item[1024];
            if (k->type == EI_CFG_FLOATS) format_double(((const double *)f)[j], item, sizeof item);
            else format_string(((const ei_cfg_strlist *)f)->items[j], item, sizeof item);
            used += (size_t)snprintf(buf + used, n - used, "%s%s", j ? ", " : "", item);
        }
        if (used < n) snprintf(buf + used, n - used, "]");
        break;
    }
    }
}

char *ei_config_dump(const ei_config *c) {
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    out[0] = '\0';
    const char *prev = "";
    for (int i = 0; i < c->n_keys; i++) {
        const char *key = c->keys[i].key;
        /* Length of the section prefix shared with the previous key (whole components only). */
        size_t common = 0;
        for (size_t j = 0; key[j] && key[j] == prev[j]; j++)
            if (key[j] == '.') common = j + 1;
        char *val = format_alloc(&c->keys[i], c->dst);
        if (!val) {
            free(out);
            return NULL;
        }
        size_t need = strlen(key) * 4 + strlen(val) + 64;
        if (len + need >= cap) {
            while (len + need >= cap) cap *= 2;
            char *n = realloc(out, cap);
            if (!n) {
                free(val);
                free(out);
                return NULL;
            }
            out = n;
        }
        int depth = 0;
        for (size_t j = 0; j < common; j++) depth += key[j] == '.';
        const char *p = key + common;
        for (;;) {
            const char *dot = strchr(p, '.');
            if (!dot) break;
            len += (size_t)snprintf(out + len, cap - len, "%*s%.*s:\n", depth * 2, "", (int)(dot - p), p);
            depth++;
            p = dot + 1;
        }
        len += (size_t)snprintf(out + len, cap - len, "%*s%s: %s\n", depth * 2, "", p, val);
        free(val);
        prev = key;
    }
    return out;
}

int ei_config_compare(const ei_cfg_key *keys, const void *a, const void *b, int flags_mask, char *buf, size_t n) {
    int diffs = 0;
    size_t used = 0;
    if (buf && n) buf[0] = '\0';
    for (const ei_cfg_key *k = keys; k->key; k++) {
        if (flags_mask && !(k->flags & flags_mask)) continue;
        char va[1024], vb[1024];
        ei_config_format_value(k, a, va, sizeof va);
        ei_config_format_value(k, b, vb, sizeof vb);
        int differ = strcmp(va, vb) != 0;
        if (k->type == EI_CFG_RECORDS) { /* long lists: compare whole, not the truncated texts */
            char *fa = format_alloc(k, a), *fb = format_alloc(k, b);
            differ = !fa || !fb || strcmp(fa, fb) != 0;
            free(fa);
            free(fb);
        }
        if (!differ) continue;
        if (buf && used < n)
            used += (size_t)snprintf(buf + used, n - used, "%s%s: %s -> %s", diffs ? "; " : "", k->key, va, vb);
        diffs++;
    }
    return diffs;
}

void ei_config_print_schema(const ei_cfg_key *keys, FILE *fp) {
    for (const ei_cfg_key *k = keys; k->key; k++) {
        char range[96] = "";
        if ((k->type == EI_CFG_INT || k->type == EI_CFG_I64) && k->min <= k->max)
            snprintf(range, sizeof range, " in [%.0f, %.0f]", k->min, k->max);
        else if ((k->type == EI_CFG_FLOAT || k->type == EI_CFG_FLOATS) && k->min <= k->max)
            snprintf(range, sizeof range, " in [%g, %g]", k->min, k->max);
        char type[512];
        if (k->type == EI_CFG_ENUM) snprintf(type, sizeof type, "%s", k->choices);
        else if (k->type == EI_CFG_RECORDS && records_spec(k)) {
            size_t u = (size_t)snprintf(type, sizeof type, "list of {");
            for (const ei_cfg_key *fk = records_spec(k)->fields; fk->key && u < sizeof type; fk++)
                u += (size_t)snprintf(type + u, sizeof type - u, "%s%s", fk == records_spec(k)->fields ? "" : ", ", fk->key);
            if (u < sizeof type) snprintf(type + u, sizeof type - u, "}");
        }
        else if (k->type == EI_CFG_FLOATS) snprintf(type, sizeof type, "%d numbers", k->count);
        else snprintf(type, sizeof type, "%s", type_name(k) + (strncmp(type_name(k), "an ", 3) == 0 ? 3
                                                               : strncmp(type_name(k), "a ", 2) == 0 ? 2 : 0));
        fprintf(fp, "  %-32s %s%s; default %s%s\n      %s\n", k->key, type, range, k->def ? k->def : "none",
                k->flags & EI_CFG_REQUIRED ? " (required)" : "", k->help ? k->help : "");
        if (k->type == EI_CFG_RECORDS && records_spec(k)) {
            char prefix[300];
            snprintf(prefix, sizeof prefix, "%s[].", k->key);
            for (const ei_cfg_key *fk = records_spec(k)->fields; fk->key; fk++) {
                ei_cfg_key row = *fk;
                char name[400];
                snprintf(name, sizeof name, "%s%s", prefix, fk->key);
                row.key = name;
                ei_config_print_schema((const ei_cfg_key[]){row, {0}}, fp);
            }
        }
    }
}

/* ---------------------------------------------------------------- schemas built at run time */

void ei_cfg_schema_init(ei_cfg_schema *s) { memset(s, 0, sizeof *s); }

/* Room for one more row plus the terminator. */
static int schema_reserve(ei_cfg_schema *s) {
    if (s->n + 2 <= s->cap) return 0;
    int cap = s->cap ? s->cap * 2 : 32;
    ei_cfg_key *k = realloc(s->keys, sizeof *k * (size_t)cap);
    if (!k) return ei_error_set("out of memory");
    s->keys = k;
    s->cap = cap;
    return 0;
}

static int schema_push(ei_cfg_schema *s, const ei_cfg_key *row) {
    if (schema_reserve(s)) return -1;
    s->keys[s->n++] = *row;
    memset(&s->keys[s->n], 0, sizeof s->keys[s->n]);
    return 0;
}

/* Copies str into s (NULL stays NULL); *out gets the copy. */
static int schema_strdup(ei_cfg_schema *s, const char *str, const char **out) {
    *out = NULL;
    if (!str) return 0;
    if (s->n_strings == s->cap_strings) {
        int cap = s->cap_strings ? s->cap_strings * 2 : 64;
        char **n = realloc(s->strings, sizeof *n * (size_t)cap);
        if (!n) return ei_error_set("out of memory");
        s->strings = n;
        s->cap_strings = cap;
    }
    char *c = strdup(str);
    if (!c) return ei_error_set("out of memory");
    s->strings[s->n_strings++] = c;
    *out = c;
    return 0;
}

int ei_cfg_schema_add(ei_cfg_schema *s, const ei_cfg_key *rows) {
    for (const ei_cfg_key *r = rows; r->key; r++)
        if (schema_push(s, r)) return -1;
    return 0;
}

int ei_cfg_schema_add_prefixed(ei_cfg_schema *s, const char *prefix, size_t base, const ei_cfg_key *row) {
    if (!row->key) return ei_error_set("schema: row without a key");
    ei_cfg_key r = *row;
    size_t len = strlen(row->key) + (prefix ? strlen(prefix) : 0) + 2;
    char *key = malloc(len);
    if (!key) return ei_error_set("out of memory");
    snprintf(key, len, "%s%s%s", prefix && *prefix ? prefix : "", prefix && *prefix ? "." : "", row->key);
    int rc = schema_strdup(s, key, &r.key);
    free(key);
    if (rc || schema_strdup(s, row->def, &r.def) || schema_strdup(s, row->help, &r.help)) return -1;
    /* a records spec is a pointer carried in choices: copied as is (it must outlive s) */
    if (row->type != EI_CFG_RECORDS && schema_strdup(s, row->choices, &r.choices)) return -1;
    r.offset = base + row->offset;
    return schema_push(s, &r);
}

void ei_cfg_schema_free(ei_cfg_schema *s) {
    for (int i = 0; i < s->n_strings; i++) free(s->strings[i]);
    free(s->strings);
    free(s->keys);
    memset(s, 0, sizeof *s);
}
