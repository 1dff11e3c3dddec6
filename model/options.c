#include "model/options.h"

#include "core/ei_error.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the table as data */

/* The generic code reads and writes fields through typed switches below, never through offsets,
 * but the YAML schema stores enum keys through an int pointer (config/ei_config.h), so every field
 * must have the size its TYPE promises. */
#define CHECK_INT(name, ctype) _Static_assert(_Generic(((ei_opts *)0)->name, int: 1, default: 0), #name " must be int");
#define CHECK_FLOAT(name, ctype)                                                                      \
    _Static_assert(_Generic(((ei_opts *)0)->name, double: 1, default: 0), #name " must be double");
#define CHECK_ENUM(name, ctype) _Static_assert(sizeof(ctype) == sizeof(int), #name ": enum must be int-sized");
#define CHECK_(a, name, TYPE, ctype, ...) CHECK_##TYPE(name, ctype)
EI_OPTS_TABLE(CHECK_, ~)

#define NAME_(id, str) str,
#define BAR_(id, str) "|" str
#define NAMES_INT(name, CH)
#define NAMES_FLOAT(name, CH)
#define NAMES_ENUM(name, CH) static const char *const names_##name[] = {CH(NAME_)};
#define NAMES_(a, name, TYPE, ctype, def, mn, mx, CH, ...) NAMES_##TYPE(name, CH)
EI_OPTS_TABLE(NAMES_, ~)

#define N_NAMES(name) ((int)(sizeof names_##name / sizeof names_##name[0]))
#define RANGE_INT(name, mn, mx) (double)(mn), (double)(mx)
#define RANGE_FLOAT(name, mn, mx) (double)(mn), (double)(mx)
#define RANGE_ENUM(name, mn, mx) 0.0, (double)(N_NAMES(name) - 1)
/* "|a|b" + 1 is "a|b": a constant address, so the joined choices need no code. */
#define CHOICES_INT(name, CH) NULL, NULL, 0
#define CHOICES_FLOAT(name, CH) NULL, NULL, 0
#define CHOICES_ENUM(name, CH) ("" CH(BAR_)) + 1, names_##name, N_NAMES(name)
#define META_INT(mv, CH) mv
#define META_FLOAT(mv, CH) mv
#define META_ENUM(mv, CH) ("" CH(BAR_)) + 1
#define DESC_(a, name, TYPE, ctype, def, mn, mx, CH, fl, CLI, cli, mv, help)                          \
    {#name, cli, EI_OPT_##TYPE, (double)(def), RANGE_##TYPE(name, mn, mx), CHOICES_##TYPE(name, CH), fl, \
     offsetof(ei_opts, name), sizeof(((ei_opts *)0)->name), META_##TYPE(mv, CH), help},

static const ei_opt_desc descs[EI_OPTS_COUNT] = {EI_OPTS_TABLE(DESC_, ~)};

#define KEY_(a, name, ...) ", " #name
static const char known_keys[] = "" EI_OPTS_TABLE(KEY_, ~);

int ei_opts_count(void) { return EI_OPTS_COUNT; }

const ei_opt_desc *ei_opt_desc_at(int i) { return i >= 0 && i < EI_OPTS_COUNT ? &descs[i] : NULL; }

int ei_opt_find(const char *name) {
    for (int i = 0; name && i < EI_OPTS_COUNT; i++)
        if (strcmp(descs[i].name, name) == 0) return i;
    return -1;
}

double ei_opts_get_num(const ei_opts *o, int i) {
    switch (i) {
#define GET_(a, name, ...) case EI_OPT_##name: return (double)o->name;
        EI_OPTS_TABLE(GET_, ~)
    }
    return NAN;
}

/* v already checked against the option's type and range. */
static void put_num(ei_opts *o, int i, double v) {
    switch (i) {
#define PUT_(a, name, TYPE, ctype, ...) case EI_OPT_##name: o->name = (ctype)v; break;
        EI_OPTS_TABLE(PUT_, ~)
    }
}

/* ---------------------------------------------------------------- checks */

static void format_double(double x, char *buf, size_t n) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
}

static void format_bound(const ei_opt_desc *d, double x, char *buf, size_t n) {
    if (d->type == EI_OPT_FLOAT) format_double(x, buf, n);
    else snprintf(buf, n, "%.0f", x);
}

/* 0 if v is a valid value of option d; otherwise -1 with an error naming the option. */
static int check_value(const ei_opt_desc *d, double v) {
    char got[40], lo[40], hi[40];
    format_bound(d, v, got, sizeof got);
    if (d->type != EI_OPT_FLOAT && isfinite(v) && v != floor(v)) format_double(v, got, sizeof got);
    if (d->type == EI_OPT_ENUM) {
        if (!(v >= 0 && v < d->n_names && v == floor(v)))
            return ei_error_set("edgeinfinite: %s: %s is not one of %s", d->name, got, d->choices);
        return 0;
    }
    if (!isfinite(v)) return ei_error_set("edgeinfinite: %s: %s is not a finite number", d->name, got);
    if (d->type == EI_OPT_INT && v != floor(v))
        return ei_error_set("edgeinfinite: %s: %s is not an integer", d->name, got);
    if (v < d->min || v > d->max) {
        format_bound(d, d->min, lo, sizeof lo);
        format_bound(d, d->max, hi, sizeof hi);
        return ei_error_set("edgeinfinite: %s: %s is out of range [%s, %s]", d->name, got, lo, hi);
    }
    return 0;
}

void ei_opts_default(ei_opts *o) {
    memset(o, 0, sizeof *o);
    for (int i = 0; i < EI_OPTS_COUNT; i++) put_num(o, i, descs[i].def);
}

int ei_opts_validate(const ei_opts *o, const ei_model_config *cfg) {
    for (int i = 0; i < EI_OPTS_COUNT; i++)
        if (check_value(&descs[i], ei_opts_get_num(o, i)) != 0) return -1;
    if (cfg && cfg->head_dim % 2)
        return ei_error_set("edgeinfinite: head_dim %d is odd (RoPE needs pairs)", cfg->head_dim);
    return 0;
}

int ei_opts_route_threshold(const ei_opts *o, const ei_model_config *cfg) {
    long t = o->route_threshold < 0 ? (long)o->sink + o->window + o->segment : o->route_threshold;
    if (cfg && t > cfg->max_seq_len) t = cfg->max_seq_len;
    return (int)t;
}

/* ---------------------------------------------------------------- set / get */

int ei_opts_set_num(ei_opts *o, int i, double v) {
    const ei_opt_desc *d = ei_opt_desc_at(i);
    if (!d) return ei_error_set("edgeinfinite: no option %d", i);
    if (check_value(d, v) != 0) return -1;
    put_num(o, i, v);
    return 0;
}

static int enum_index(const ei_opt_desc *d, const char *s) {
    for (int k = 0; k < d->n_names; k++)
        if (strcmp(d->names[k], s) == 0) return k;
    return -1;
}

int ei_opts_set_str(ei_opts *o, int i, const char *value) {
    const ei_opt_desc *d = ei_opt_desc_at(i);
    if (!d) return ei_error_set("edgeinfinite: no option %d", i);
    if (!value) return ei_error_set("edgeinfinite: %s: value required", d->name);
    char *end = NULL;
    errno = 0;
    switch (d->type) {
    case EI_OPT_INT: {
        long x = strtol(value, &end, 10);
        /* The long range is wider than any option's, so a clamped ERANGE value still fails the
         * range check below with the text the user wrote. */
        if (end == value || *end || (errno && errno != ERANGE))
            return ei_error_set("edgeinfinite: %s: '%s' is not an integer", d->name, value);
        if (errno == ERANGE || x < d->min || x > d->max) {
            char lo[40], hi[40];
            format_bound(d, d->min, lo, sizeof lo);
            format_bound(d, d->max, hi, sizeof hi);
            return ei_error_set("edgeinfinite: %s: %s is out of range [%s, %s]", d->name, value, lo, hi);
        }
        return ei_opts_set_num(o, i, (double)x);
    }
    case EI_OPT_FLOAT: {
        double x = strtod(value, &end);
        if (end == value || *end || errno || !isfinite(x))
            return ei_error_set("edgeinfinite: %s: '%s' is not a finite number", d->name, value);
        return ei_opts_set_num(o, i, x);
    }
    case EI_OPT_ENUM: {
        int k = enum_index(d, value);
        if (k < 0) return ei_error_set("edgeinfinite: %s: expected one of %s, got '%s'", d->name, d->choices, value);
        return ei_opts_set_num(o, i, k);
    }
    }
    return ei_error_set("edgeinfinite: %s: bad option type", d->name);
}

int ei_opts_set(ei_opts *o, const char *key, const char *value) {
    if (!key || !value) return ei_error_set("edgeinfinite: option key and value required");
    int i = ei_opt_find(key);
    if (i < 0) return ei_error_set("edgeinfinite: unknown option '%s' (known: %s)", key, known_keys + 2);
    return ei_opts_set_str(o, i, value);
}

int ei_opts_get_str(const ei_opts *o, int i, char *buf, size_t n) {
    const ei_opt_desc *d = ei_opt_desc_at(i);
    if (!d) return -1;
    double v = ei_opts_get_num(o, i);
    char tmp[40];
    switch (d->type) {
    case EI_OPT_INT: return snprintf(buf, n, "%.0f", v);
    case EI_OPT_FLOAT: format_double(v, tmp, sizeof tmp); return snprintf(buf, n, "%s", tmp);
    case EI_OPT_ENUM:
        if (v >= 0 && v < d->n_names) return snprintf(buf, n, "%s", d->names[(int)v]);
        return snprintf(buf, n, "%.0f", v); /* invalid, but visible in messages */
    }
    return -1;
}

int ei_opts_diff(const ei_opts *a, const ei_opts *b, int flags_mask) {
    for (int i = 0; i < EI_OPTS_COUNT; i++) {
        if (flags_mask && !(descs[i].flags & flags_mask)) continue;
        /* Bytes, not ==: a float option is "the same" only if it is the same bits (-0 vs 0, NaN). */
        if (memcmp((const char *)a + descs[i].offset, (const char *)b + descs[i].offset, descs[i].size) != 0)
            return i;
    }
    return -1;
}

/* ---------------------------------------------------------------- enum names */

static int parse_enum(int i, const char *s, int *out) {
    int k = s ? enum_index(&descs[i], s) : -1;
    if (k < 0)
        return ei_error_set("edgeinfinite: %s: expected one of %s, got '%s'", descs[i].name, descs[i].choices,
                            s ? s : "");
    *out = k;
    return 0;
}

static const char *enum_name(int i, int v) {
    return v >= 0 && v < descs[i].n_names ? descs[i].names[v] : "invalid";
}

int ei_gate_kind_parse(const char *s, ei_gate_kind *out) {
    int k;
    if (parse_enum(EI_OPT_gate, s, &k)) return -1;
    *out = (ei_gate_kind)k;
    return 0;
}

int ei_mem_rule_parse(const char *s, ei_mem_rule *out) {
    int k;
    if (parse_enum(EI_OPT_memory_rule, s, &k)) return -1;
    *out = (ei_mem_rule)k;
    return 0;
}

int ei_positions_parse(const char *s, ei_positions *out) {
    int k;
    if (parse_enum(EI_OPT_positions, s, &k)) return -1;
    *out = (ei_positions)k;
    return 0;
}

const char *ei_gate_kind_name(ei_gate_kind k) { return enum_name(EI_OPT_gate, (int)k); }
const char *ei_mem_rule_name(ei_mem_rule r) { return enum_name(EI_OPT_memory_rule, (int)r); }
const char *ei_positions_name(ei_positions p) { return enum_name(EI_OPT_positions, (int)p); }

static const char *const mode_names[] = {EI_MODES(NAME_)};
#define N_MODES ((int)(sizeof mode_names / sizeof mode_names[0]))

int ei_mode_parse(const char *s, ei_mode *out) {
    for (int k = 0; s && k < N_MODES; k++)
        if (strcmp(mode_names[k], s) == 0) {
            *out = (ei_mode)k;
            return 0;
        }
    return ei_error_set("mode must be one of %s, got '%s'", ("" EI_MODES(BAR_)) + 1, s ? s : "");
}

const char *ei_mode_name(ei_mode m) { return (int)m >= 0 && (int)m < N_MODES ? mode_names[m] : "invalid"; }
