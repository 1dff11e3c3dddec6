/* Precision plans and their YAML (deploy/quant_plan.h, docs/quantisation.md). */
#include "deploy/quant_plan.h"

#include "core/ei_error.h"

#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYER (1 << 20) /* far above any model; keeps a-b arithmetic in int */

/* ---------------------------------------------------------------- plans */

int ei_qclass_is_matrix(ei_tclass c) {
    switch (c) {
    case EI_TC_EMBEDDING: case EI_TC_Q: case EI_TC_K: case EI_TC_V: case EI_TC_O: case EI_TC_GATE: case EI_TC_UP:
    case EI_TC_DOWN: case EI_TC_CLASSIFIER: case EI_TC_MEMORY_GATE: return 1;
    default: return 0;
    }
}

static const char *matrix_choices(void) {
    return "embedding, q, k, v, o, gate, up, down, classifier, memory_gate, all";
}

void ei_qplan_init(ei_qplan *p) { *p = (ei_qplan){EI_QW_F32, EI_QA_FLOAT, EI_QKV_F32, 0, 0, NULL}; }

void ei_qplan_free(ei_qplan *p) {
    free(p->rules);
    ei_qplan_init(p);
}

int ei_qplan_copy(ei_qplan *dst, const ei_qplan *src) {
    ei_qplan t = *src;
    t.rules = NULL;
    t.cap_rules = src->n_rules;
    if (src->n_rules) {
        t.rules = malloc(sizeof *t.rules * (size_t)src->n_rules);
        if (!t.rules) return ei_error_set("precision plan: out of memory");
        memcpy(t.rules, src->rules, sizeof *t.rules * (size_t)src->n_rules);
    }
    *dst = t;
    return 0;
}

/* The problem with a rule, or NULL. field: which YAML field the problem belongs to. */
static const char *rule_problem(int lo, int hi, uint32_t classes, ei_qscheme s, const char **field, char *buf, size_t n) {
    *field = "scheme";
    if ((unsigned)s >= EI_QW_COUNT) return "unknown scheme";
    *field = "class";
    for (int c = 0; c < 32; c++)
        if ((classes >> c) & 1u && (c >= EI_TC_COUNT || !ei_qclass_is_matrix((ei_tclass)c))) {
            snprintf(buf, n, "%s is not a weight matrix (norms and biases stay f32); choices: %s",
                     ei_tclass_name((ei_tclass)c), matrix_choices());
            return buf;
        }
    *field = "layers";
    if (lo == EI_QLAYERS_ALL) return NULL;
    if (lo < 0 || hi < lo || hi > MAX_LAYER) {
        snprintf(buf, n, "bad layer range %d-%d", lo, hi);
        return buf;
    }
    const ei_tclass globals[] = {EI_TC_EMBEDDING, EI_TC_CLASSIFIER};
    for (int i = 0; i < 2; i++)
        if ((classes >> globals[i]) & 1u) {
            snprintf(buf, n, "class %s has no layers: omit layers (or write all)", ei_tclass_name(globals[i]));
            return buf;
        }
    return NULL;
}

int ei_qplan_add_rule(ei_qplan *p, int lo, int hi, uint32_t classes, ei_qscheme s) {
    char buf[256];
    const char *field, *why = rule_problem(lo, hi, classes, s, &field, buf, sizeof buf);
    if (why) return ei_error_set("precision plan rule %d: %s: %s", p->n_rules, field, why);
    if (p->n_rules == p->cap_rules) {
        int cap = p->cap_rules ? 2 * p->cap_rules : 8;
        ei_qrule *r = realloc(p->rules, sizeof *r * (size_t)cap);
        if (!r) return ei_error_set("precision plan: out of memory");
        p->rules = r;
        p->cap_rules = cap;
    }
    p->rules[p->n_rules++] = (ei_qrule){lo, lo == EI_QLAYERS_ALL ? EI_QLAYERS_ALL : hi, classes, s};
    return 0;
}

static int rule_matches(const ei_qrule *r, ei_tclass c, int layer) {
    if (r->classes ? !((r->classes >> c) & 1u) : c == EI_TC_MEMORY_GATE) return 0;
    if (r->layer_lo == EI_QLAYERS_ALL) return 1;
    return ei_tclass_per_layer(c) && layer >= r->layer_lo && layer <= r->layer_hi;
}

ei_qscheme ei_qplan_resolve(const ei_qplan *p, ei_tclass c, int layer) {
    if ((unsigned)c >= EI_TC_COUNT || !ei_qclass_is_matrix(c)) return EI_QW_F32;
    ei_qscheme s = c == EI_TC_MEMORY_GATE ? EI_QW_F32 : p->weights;
    for (int i = 0; i < p->n_rules; i++)
        if (rule_matches(&p->rules[i], c, layer)) s = p->rules[i].scheme;
    return s;
}

ei_qscheme ei_qplan_resolve_fit(const ei_qplan *p, ei_tclass c, int layer, int64_t cols, int *changed) {
    ei_qscheme s = ei_qplan_resolve(p, c, layer), f = ei_qscheme_fit(s, cols);
    if (changed) *changed = f != s;
    return f;
}

int ei_qplan_check(const ei_qplan *p, int n_layers) {
    for (int i = 0; i < p->n_rules; i++) {
        const ei_qrule *r = &p->rules[i];
        if (r->layer_lo != EI_QLAYERS_ALL && r->layer_hi >= n_layers)
            return ei_error_set("precision.plan[%d]: layers %d-%d reach past the model's last layer (%d layers: 0-%d)", i,
                                r->layer_lo, r->layer_hi, n_layers, n_layers - 1);
    }
    return 0;
}

/* ---------------------------------------------------------------- compaction */

static int table_at(int n_layers, ei_tclass c, int layer) {
    return (int)c * (n_layers + 1) + (ei_tclass_per_layer(c) ? layer : n_layers);
}

/* A candidate rule for one class: a run of layers [lo, hi] (or the global slot) with scheme s. */
typedef struct {
    int lo, hi;
    ei_qscheme s;
    uint32_t classes;
} run;

int ei_qplan_from_table(ei_qplan *p, int n_layers, const ei_qscheme *table) {
    ei_qplan_init(p);
    if (n_layers < 0 || n_layers > MAX_LAYER) return ei_error_set("precision plan: bad layer count %d", n_layers);
    int64_t count[EI_QW_COUNT] = {0};
    for (int c = 0; c < EI_TC_COUNT; c++) {
        if (!ei_qclass_is_matrix((ei_tclass)c) || c == EI_TC_MEMORY_GATE) continue;
        int nl = ei_tclass_per_layer((ei_tclass)c) ? n_layers : 1;
        for (int l = 0; l < nl; l++) {
            ei_qscheme s = table[table_at(n_layers, (ei_tclass)c, l)];
            if ((unsigned)s < EI_QW_COUNT) count[s]++;
        }
    }
    for (int s = 1; s < EI_QW_COUNT; s++)
        if (count[s] > count[p->weights]) p->weights = (ei_qscheme)s;
    /* runs per class, against what the class resolves to without rules */
    run *runs = NULL;
    int n_runs = 0, cap = 0;
    for (int c = 0; c < EI_TC_COUNT; c++) {
        if (!ei_qclass_is_matrix((ei_tclass)c)) continue;
        ei_qscheme base = c == EI_TC_MEMORY_GATE ? EI_QW_F32 : p->weights;
        int per = ei_tclass_per_layer((ei_tclass)c), nl = per ? n_layers : 1;
        for (int l = 0; l < nl;) {
            ei_qscheme s = table[table_at(n_layers, (ei_tclass)c, l)];
            if ((unsigned)s >= EI_QW_COUNT || s == base) {
                l++;
                continue;
            }
            int e = l + 1; /* "any" entries extend a run: whatever they resolve to is fine */
            while (e < nl) {
                ei_qscheme t = table[table_at(n_layers, (ei_tclass)c, e)];
                if ((unsigned)t < EI_QW_COUNT && t != s) break;
                e++;
            }
            while (e - 1 > l && (unsigned)table[table_at(n_layers, (ei_tclass)c, e - 1)] >= EI_QW_COUNT) e--;
            if (n_runs == cap) {
                cap = cap ? 2 * cap : 32;
                run *nr = realloc(runs, sizeof *nr * (size_t)cap);
                if (!nr) {
                    free(runs);
                    return ei_error_set("precision plan: out of memory");
                }
                runs = nr;
            }
            runs[n_runs++] = (run){per ? l : EI_QLAYERS_ALL, per ? e - 1 : EI_QLAYERS_ALL, s, 1u << c};
            l = e;
        }
    }
    /* equal ranges and schemes of several classes share one rule (rules of different classes
     * never interact, so merging and the order are free) */
    int rc = 0;
    for (int i = 0; i < n_runs && !rc; i++) {
        if (!runs[i].classes) continue;
        for (int j = i + 1; j < n_runs; j++)
            if (runs[j].classes && runs[j].lo == runs[i].lo && runs[j].hi == runs[i].hi && runs[j].s == runs[i].s) {
                runs[i].classes |= runs[j].classes;
                runs[j].classes = 0;
            }
        rc = ei_qplan_add_rule(p, runs[i].lo, runs[i].hi, runs[i].classes, runs[i].s);
    }
    free(runs);
    if (rc) ei_qplan_free(p);
    return rc;
}

/* ---------------------------------------------------------------- YAML */

/* "a-b", "a" or "all" (NULL: all). -1 when malformed. */
static int parse_layers(const char *s, int *lo, int *hi) {
    if (!s || strcmp(s, "all") == 0) {
        *lo = *hi = EI_QLAYERS_ALL;
        return 0;
    }
    long v[2] = {0, 0};
    int nv = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ') p++;
        if (!isdigit((unsigned char)*p)) return -1;
        long x = 0;
        while (isdigit((unsigned char)*p) && x <= MAX_LAYER) x = x * 10 + (*p++ - '0');
        if (x > MAX_LAYER) return -1;
        v[nv++] = x;
        while (*p == ' ') p++;
        if (nv == 2 || *p != '-') break;
        p++;
    }
    if (*p) return -1;
    *lo = (int)v[0];
    *hi = (int)(nv == 2 ? v[1] : v[0]);
    return 0;
}

static int parse_classes(const ei_cfg_strlist *l, uint32_t *mask) {
    *mask = 0;
    for (int i = 0; i < l->n; i++) {
        ei_tclass c;
        if (strcmp(l->items[i], "all") == 0) {
            if (l->n > 1) return ei_error_set("'all' cannot be combined with other classes");
            return 0;
        }
        if (ei_tclass_parse(l->items[i], &c))
            return ei_error_set("unknown class '%s' (choices: %s)", l->items[i], matrix_choices());
        *mask |= 1u << c;
    }
    return 0;
}

static int rule_check(void *item, const ei_cfg_record_ctx *rc) {
    ei_qrule_cfg *r = item;
    int lo = 0, hi = 0;
    uint32_t classes = 0;
    ei_qscheme s = EI_QW_F32;
    if (ei_qscheme_parse(r->scheme, &s)) return ei_cfg_record_error(rc, "scheme", "%s", ei_error_get());
    if (r->classes.items && r->classes.n == 0) /* an explicit [] reading as "all" would surprise */
        return ei_cfg_record_error(rc, "class", "empty list (omit class, or write all, for every class)");
    if (parse_classes(&r->classes, &classes)) return ei_cfg_record_error(rc, "class", "%s", ei_error_get());
    if (parse_layers(r->layers, &lo, &hi))
        return ei_cfg_record_error(rc, "layers", "expected a layer index, a range a-b or all, got '%s'", r->layers);
    if (lo != EI_QLAYERS_ALL && hi < lo)
        return ei_cfg_record_error(rc, "layers", "range %d-%d is empty (write the lower index first)", lo, hi);
    char buf[256];
    const char *field, *why = rule_problem(lo, hi, classes, s, &field, buf, sizeof buf);
    if (why) return ei_cfg_record_error(rc, field, "%s", why);
    r->rule = (ei_qrule){lo, hi, classes, s};
    return 0;
}

static const ei_cfg_key rule_fields[] = {
    {"layers", EI_CFG_STRING, offsetof(ei_qrule_cfg, layers), 1, 0, NULL, NULL, 0, 0,
     "layers the rule covers: a-b (inclusive), one index, or all (the default; also embedding / classifier)"},
    {"class", EI_CFG_STRLIST, offsetof(ei_qrule_cfg, classes), 1, 0, NULL, NULL, 0, 0,
     "tensor class or list of classes (default all: every weight matrix but memory_gate)"},
    {"scheme", EI_CFG_STRING, offsetof(ei_qrule_cfg, scheme), 1, 0, NULL, NULL, 0, EI_CFG_REQUIRED,
     "weight scheme: f32, f16, w8, w4g32, w4g64 or w4g128"},
    {0},
};

const ei_cfg_record_spec ei_qrule_cfg_spec = {rule_fields, sizeof(ei_qrule_cfg), rule_check, NULL};

#define POFF(f) offsetof(ei_qprecision_cfg, f)
static const ei_cfg_key precision_rows[] = {
    {"weights", EI_CFG_ENUM, POFF(weights), 1, 0, "f32", EI_QSCHEME_CHOICES, 0, 0,
     "default scheme of the weight matrices (the memory gate stays f32 unless a rule names it)"},
    {"activations", EI_CFG_ENUM, POFF(activations), 1, 0, "float", EI_QACT_CHOICES, 0, 0,
     "activations between ops: float, int16 symmetric (a16), int8 asymmetric (a8) or symmetric (a8s)"},
    {"kv_cache", EI_CFG_ENUM, POFF(kv_cache), 1, 0, "f32", EI_QKV_CHOICES, 0, 0, "element type of the K/V caches"},
    {"plan", EI_CFG_RECORDS, POFF(plan), 1, 0, "[]", EI_CFG_RECORDS_SPEC(&ei_qrule_cfg_spec), 0, 0,
     "rules {layers, class, scheme}, later ones overriding earlier ones"},
    {0},
};

int ei_qprecision_schema_append(ei_cfg_schema *s, const char *section, size_t base) {
    for (const ei_cfg_key *k = precision_rows; k->key; k++)
        if (ei_cfg_schema_add_prefixed(s, section, base, k)) return -1;
    return 0;
}

int ei_qplan_from_cfg(ei_qplan *p, const ei_qprecision_cfg *c) {
    ei_qplan_init(p);
    if ((unsigned)c->weights >= EI_QW_COUNT || (unsigned)c->activations >= EI_QA_COUNT ||
        (unsigned)c->kv_cache >= EI_QKV_COUNT)
        return ei_error_set("precision: value out of range");
    p->weights = (ei_qscheme)c->weights;
    p->activations = (ei_qact)c->activations;
    p->kv_cache = (ei_qkv)c->kv_cache;
    for (int i = 0; i < c->plan.n; i++) {
        const ei_qrule *r = &((const ei_qrule_cfg *)c->plan.items)[i].rule;
        if (ei_qplan_add_rule(p, r->layer_lo, r->layer_hi, r->classes, r->scheme)) {
            ei_qplan_free(p);
            return -1;
        }
    }
    return 0;
}

void ei_qprecision_cfg_free(ei_qprecision_cfg *c) { ei_cfg_records_free(&c->plan, &ei_qrule_cfg_spec); }

/* Loads the text yaml, or the file path when yaml is NULL. */
static int load_plan(ei_qplan *p, const char *yaml, const char *name) {
    ei_qplan_init(p);
    ei_cfg_schema schema;
    ei_cfg_schema_init(&schema);
    ei_qprecision_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    ei_config c;
    int rc = ei_qprecision_schema_append(&schema, "precision", 0);
    if (!rc) rc = ei_config_init(&c, schema.keys, &cfg);
    if (rc) {
        ei_cfg_schema_free(&schema);
        return -1;
    }
    rc = yaml ? ei_config_load_string(&c, yaml, name) : ei_config_load_file(&c, name);
    if (!rc) rc = ei_qplan_from_cfg(p, &cfg);
    ei_config_release(&c);
    ei_cfg_schema_free(&schema);
    return rc;
}

int ei_qplan_load_string(ei_qplan *p, const char *yaml, const char *name) {
    return load_plan(p, yaml ? yaml : "", name);
}

int ei_qplan_load_file(ei_qplan *p, const char *path) { return load_plan(p, NULL, path); }

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} sbuild;

static void sb_printf(sbuild *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuild *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 512;
        while (cap <= b->len + (size_t)n) cap *= 2;
        char *t = realloc(b->s, cap);
        if (!t) {
            b->oom = 1;
            return;
        }
        b->s = t;
        b->cap = cap;
    }
}

char *ei_qplan_to_yaml(const ei_qplan *p, const char *section) {
    sbuild b = {0};
    sb_printf(&b, "%s:\n  weights: %s\n  activations: %s\n  kv_cache: %s\n", section ? section : "precision",
              ei_qscheme_name(p->weights), ei_qact_name(p->activations), ei_qkv_name(p->kv_cache));
    sb_printf(&b, "  plan:%s\n", p->n_rules ? "" : " []");
    for (int i = 0; i < p->n_rules; i++) {
        const ei_qrule *r = &p->rules[i];
        const char *sep = "";
        sb_printf(&b, "    - {");
        if (r->layer_lo != EI_QLAYERS_ALL) {
            if (r->layer_lo == r->layer_hi) sb_printf(&b, "layers: %d", r->layer_lo);
            else sb_printf(&b, "layers: %d-%d", r->layer_lo, r->layer_hi);
            sep = ", ";
        }
        int nc = 0;
        for (int c = 0; c < EI_TC_COUNT; c++) nc += (r->classes >> c) & 1u;
        if (nc) {
            sb_printf(&b, "%sclass: %s", sep, nc > 1 ? "[" : "");
            for (int c = 0, k = 0; c < EI_TC_COUNT; c++)
                if ((r->classes >> c) & 1u) sb_printf(&b, "%s%s", k++ ? ", " : "", ei_tclass_name((ei_tclass)c));
            sb_printf(&b, "%s", nc > 1 ? "]" : "");
            sep = ", ";
        }
        sb_printf(&b, "%sscheme: %s}\n", sep, ei_qscheme_name(r->scheme));
    }
    if (b.oom) {
        free(b.s);
        ei_error_set("precision plan: out of memory writing YAML");
        return NULL;
    }
    return b.s;
}
