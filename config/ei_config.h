/* YAML configuration files checked against a schema.
 *
 * A schema is a table of keys ("section.key", any depth) describing a C struct: each key has a
 * type, the offset of its field, a range, a default (written as YAML text) and a help line. A file
 * is a nested YAML mapping whose leaves are those keys:
 *
 *   train:
 *     lr: 5.0e-3
 *     betas: [0.9, 0.999]
 *
 * Loading applies, in order: the schema defaults, each file (later files override earlier ones),
 * and `--set section.key=value` overrides (the value is parsed as YAML, so lists work:
 * `--set train.betas=[0.9,0.95]`). Unknown keys, wrong types, out-of-range values and duplicate
 * keys are errors naming "file:line: key" (or the override) via ei_error_set.
 *
 * A file may start with `include: path` (or a list of paths): those files are loaded first, so the
 * including file overrides them. Relative paths in configs, includes among them, resolve against
 * the current directory (scripts run from the repository root), never against the file's folder.
 *
 * Field types (what the struct field must be):
 *   EI_CFG_INT     int           range checked against [min, max] (and the int range)
 *   EI_CFG_I64     int64_t       range checked against [min, max]
 *   EI_CFG_FLOAT   double        finite, range checked
 *   EI_CFG_BOOL    int           true/false, yes/no, on/off
 *   EI_CFG_STRING  char *        malloc'd, owned by the struct; YAML null (~ or empty) gives NULL
 *   EI_CFG_ENUM    int           index into `choices` ("token|head" -> 0 or 1)
 *   EI_CFG_STRLIST ei_cfg_strlist  malloc'd array of malloc'd strings
 *   EI_CFG_FLOATS  double[count] a YAML list of exactly `count` numbers, each range checked
 *   EI_CFG_RECORDS ei_cfg_records  a YAML list of mappings ("records"), each checked against a
 *                  nested schema (ei_cfg_record_spec, given through `choices` with
 *                  EI_CFG_RECORDS_SPEC); see below
 * ei_config_release frees every string the loader put in the struct. */
#ifndef EI_CONFIG_H
#define EI_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    EI_CFG_INT = 1,
    EI_CFG_I64,
    EI_CFG_FLOAT,
    EI_CFG_BOOL,
    EI_CFG_STRING,
    EI_CFG_ENUM,
    EI_CFG_STRLIST,
    EI_CFG_FLOATS,
    EI_CFG_RECORDS,
} ei_cfg_type;

/* Key flags. */
enum {
    EI_CFG_REQUIRED = 1 << 0, /* must be set by a file or an override (strings: non-NULL) */
    EI_CFG_FIXED = 1 << 1,    /* must not change when training resumes (see ei_config_compare) */
};

typedef struct {
    char **items;
    int n;
} ei_cfg_strlist;

typedef struct {
    const char *key;     /* dotted path, e.g. "train.lr"; NULL ends the table */
    ei_cfg_type type;
    size_t offset;       /* offsetof(struct, field) */
    double min, max;     /* inclusive range for numbers; no check when min > max */
    const char *def;     /* default as YAML scalar/flow text ("1e-3", "[0.9, 0.999]"); NULL: none */
    const char *choices; /* EI_CFG_ENUM: "a|b|c"; EI_CFG_RECORDS: EI_CFG_RECORDS_SPEC(&spec) */
    int count;           /* EI_CFG_FLOATS: number of elements */
    int flags;
    const char *help;
} ei_cfg_key;

/* ---- lists of records (EI_CFG_RECORDS)
 *
 *   precision:
 *     plan:
 *       - {layers: 0-3, class: down, scheme: w8}
 *       - layers: 4
 *         scheme: w4g32
 *
 * The value of a records key is a YAML list (block or flow; null or [] for none) whose items are
 * mappings. Each item is one C struct of `size` bytes described by `fields`: rows like the
 * top-level ones, but with plain names (no dots) and offsets into the item struct. For each item
 * the loader sets the fields' defaults, applies the item's keys (unknown and duplicate keys, wrong
 * types and ranges are errors), checks its EI_CFG_REQUIRED fields, then calls `check` (optional),
 * which may validate across fields and fill fields of the struct that are not in `fields` (parsed
 * forms of strings, say). Errors name the item and its field with the field's own line:
 *   scenario.yaml:12: precision.plan[2].scheme: unknown scheme 'w5' (choices: ...)
 * Items are numbered from 0. A later file or `--set` replaces the whole list; a failed load leaves
 * the previous list in place. The dump writes a records value as a flow list of flow mappings,
 * every field in schema order, which loads back to the same records.
 *
 * The spec travels in the key's `choices` (ei_cfg_key cannot grow: positional tables would miss an
 * initializer): {"precision.plan", EI_CFG_RECORDS, off, 1, 0, "[]", EI_CFG_RECORDS_SPEC(&spec), ...}.
 * Records may nest (a field of type EI_CFG_RECORDS). ei_cfg_schema_add_prefixed copies the spec
 * pointer, not the spec: it must outlive the schema. */
typedef struct ei_cfg_record_ctx ei_cfg_record_ctx; /* the item being checked: for messages */

typedef struct {
    const ei_cfg_key *fields; /* {0}-terminated */
    size_t size;              /* bytes of one item */
    /* Called once per item after its fields; returns 0, or -1 with an error from
     * ei_cfg_record_error. NULL: no check. */
    int (*check)(void *item, const ei_cfg_record_ctx *rc);
    /* Frees what check allocated (fields of the schema are freed by the loader); also called for
     * items whose check did not run (items start zeroed). NULL: nothing. */
    void (*release)(void *item);
} ei_cfg_record_spec;

typedef struct {
    void *items; /* n items of spec->size bytes, malloc'd; NULL when n == 0 */
    int n;
} ei_cfg_records;

#define EI_CFG_RECORDS_SPEC(spec) ((const char *)(const void *)(spec))

/* Sets ei_error to "<where>: <path>[.field]: <message>" for the item being checked, with the line
 * of that field (of the item when field is NULL or absent from the item), and returns -1. */
int ei_cfg_record_error(const ei_cfg_record_ctx *rc, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Index of the item being checked in its list, and its path ("precision.plan[2]"). */
int ei_cfg_record_index(const ei_cfg_record_ctx *rc);
const char *ei_cfg_record_path(const ei_cfg_record_ctx *rc);
/* Frees every item (strings, lists, nested records, spec->release) and empties the list. */
void ei_cfg_records_free(ei_cfg_records *r, const ei_cfg_record_spec *spec);

/* A config being built: the schema, the destination struct and where each key got its value. */
typedef struct {
    const ei_cfg_key *keys; /* borrowed, must outlive the config */
    void *dst;              /* borrowed */
    char **origin;          /* per key: "file:line", "--set k=v" or NULL (default); owned */
    int n_keys;
} ei_config;

/* Sets every key's field in dst to its default (keys without a default get 0 / NULL); fields of dst
 * that are not in the schema are left alone. Returns -1 if the schema itself is invalid (a default
 * that fails its own validation, or a section whose keys are not contiguous). */
int ei_config_init(ei_config *c, const ei_cfg_key *keys, void *dst);
/* Frees the origins and every string/list owned by dst. dst itself is the caller's. */
void ei_config_release(ei_config *c);

/* Applies a YAML file / a YAML text (name is used in messages) on top of the current values. */
int ei_config_load_file(ei_config *c, const char *path);
int ei_config_load_string(ei_config *c, const char *text, const char *name);
/* Applies "section.key=value". */
int ei_config_set(ei_config *c, const char *assignment);
/* Checks EI_CFG_REQUIRED keys. Call after all files and overrides. */
int ei_config_check_required(const ei_config *c);

/* Index of a key in the schema, -1 if unknown. */
int ei_config_find(const ei_config *c, const char *key);
/* Where a key's value came from: "file:line", "--set ...", or "default". */
const char *ei_config_origin(const ei_config *c, const char *key);

/* The resolved config as YAML text, every key in schema order, numbers printed so that loading the
 * text back gives bit-identical values. malloc'd; caller frees. NULL on allocation failure. */
char *ei_config_dump(const ei_config *c);
/* Value of one key as YAML text (as in the dump) into buf. */
void ei_config_format_value(const ei_cfg_key *k, const void *dst, char *buf, size_t n);

/* Compares the keys whose flags include any bit of flags_mask (all keys when 0) between two
 * structs of the same schema. Returns the number of differing keys; when buf is given, writes
 * "key: a -> b; ..." into it (truncated to n). */
int ei_config_compare(const ei_cfg_key *keys, const void *a, const void *b, int flags_mask, char *buf,
                      size_t n);

/* Prints every key with type, default, range and help (for --help and docs). */
void ei_config_print_schema(const ei_cfg_key *keys, FILE *fp);

/* A schema assembled at run time, for rows shared by several configs under different sections
 * (e.g. the EdgeInfinite options, generated from model/options.h, in the training config and in
 * deployment scenarios). The builder owns the rows and every string it copied; `keys` is always
 * terminated by a {0} row once something was added, so it can be passed to ei_config_init. */
typedef struct {
    ei_cfg_key *keys; /* n rows + terminator; NULL while empty */
    int n, cap;
    char **strings;   /* strings copied by ei_cfg_schema_add_prefixed, freed with the schema */
    int n_strings, cap_strings;
} ei_cfg_schema;

void ei_cfg_schema_init(ei_cfg_schema *s);
/* Appends rows up to their {0} terminator as they are (their strings stay the caller's and must
 * outlive s). */
int ei_cfg_schema_add(ei_cfg_schema *s, const ei_cfg_key *rows);
/* Appends one row with key "<prefix>.<row->key>" (just row->key when prefix is empty or NULL) and
 * offset base + row->offset. key, def, choices and help are copied, so row may be temporary. */
int ei_cfg_schema_add_prefixed(ei_cfg_schema *s, const char *prefix, size_t base, const ei_cfg_key *row);
void ei_cfg_schema_free(ei_cfg_schema *s);

#endif
