/* EdgeInfinite options (DESIGN.md section 3): segment length, sink, window, gate kind, memory rule,
 * routing threshold, gate initialisation, BPTT truncation and RoPE positions. Plain values, no
 * ownership.
 *
 * EI_OPTS_TABLE below is the only place an option is defined. Everything else is generated from it:
 * the ei_opts fields, defaults, range checks, parsing and formatting here; the `edgeinfinite.*` rows
 * of the YAML config schema (train/train_config.c); the --segment ... --positions options of
 * `ei eval` and `ei generate` (train/edge_session.h); the gate-file metadata and the merged export's
 * edgeinfinite.json (formats/gates.c). Adding a row adds the option everywhere.
 *
 * Device side: libc only. */
#ifndef EI_OPTIONS_H
#define EI_OPTIONS_H

#include "model/config.h"

#include <stddef.h>

/* Enum options are X-lists of (constant, name) in value order, so the C enum, its names and the
 * config choices cannot drift apart. */
#define EI_GATE_KINDS(X) X(EI_GATE_TOKEN, "token") X(EI_GATE_HEAD, "head")
#define EI_MEM_RULES(X) X(EI_MEM_LINEAR, "linear") X(EI_MEM_DELTA, "delta")
/* RoPE positions of the local attention keys (sf sink slots and wf window slots filled):
 *   design  (DESIGN 3.1) sink slot i -> i, window slot j (right-aligned) -> S + j, segment token t
 *           (0-based) -> S + W + t; while the window fills there is a gap of W - wf positions
 *           between the sink and the oldest cached token;
 *   compact (default) the occupied slots are numbered contiguously: sink slot i -> i, the wf filled
 *           window slots -> sf .. sf + wf - 1, segment token t -> sf + wf + t. Equal to design once
 *           the window is full, and to the base model's absolute positions until it first
 *           overflows. */
#define EI_POSITIONS_LIST(X) X(EI_POS_COMPACT, "compact") X(EI_POS_DESIGN, "design")
/* full: base model; window: sink + window only (StreamingLLM, nothing compressed);
 * edgeinfinite: the whole method. Not an option of the table: it picks the runner, not the maths of
 * one (and gate files are only meaningful for edgeinfinite). */
#define EI_MODES(X) X(EI_MODE_FULL, "full") X(EI_MODE_WINDOW, "window") X(EI_MODE_EDGEINFINITE, "edgeinfinite")

#define EI_OPT_ENUM_CONST_(id, str) id,
typedef enum { EI_GATE_KINDS(EI_OPT_ENUM_CONST_) } ei_gate_kind;
typedef enum { EI_MEM_RULES(EI_OPT_ENUM_CONST_) } ei_mem_rule;
typedef enum { EI_POSITIONS_LIST(EI_OPT_ENUM_CONST_) } ei_positions;
typedef enum { EI_MODES(EI_OPT_ENUM_CONST_) } ei_mode;

/* Defaults used for the measurements of the issue (segment 128, window 256, sink 4). */
#define EI_DEFAULT_SEGMENT 128
#define EI_DEFAULT_SINK 4
#define EI_DEFAULT_WINDOW 256
/* Retrieval denominator: A_mem = s(Q) M / (s(Q) . z + EI_MEM_EPS). */
#define EI_MEM_EPS 1e-6

/* Flags of an option. */
enum {
    /* Changes the computation: a run must use the value its gates were trained with, and a
     * checkpoint must not resume under another value (EI_CFG_FIXED in the config schema). */
    EI_OPT_MATHS = 1 << 0,
};

/* The table, one row per option in ei_opts field order:
 *
 *   X(a, name, TYPE, ctype, def, min, max, CHOICES, flags, CLI, cli, metavar, help)
 *
 *   a        the consumer's own argument, passed through (e.g. the struct a row points into)
 *   name     the ei_opts field; also the config key, the gate-file metadata key and the JSON key
 *   TYPE     INT (ctype int), FLOAT (double) or ENUM (ctype an enum, values 0 .. n-1)
 *   def      default; min, max: inclusive range (ENUM: unused, the choices are the range)
 *   CHOICES  ENUM: the enum's X-list; otherwise EI_OPT_NO_CHOICES
 *   flags    EI_OPT_* bits
 *   CLI      CLI: offered by `ei eval/generate` as --<cli>; NOCLI: not (cli is then NULL)
 *   metavar  for --help (ENUM: unused, the choices are shown)
 *   help     one line, shown by --help, the config schema and docs/config.md
 *
 * route_threshold stays off the command line: -1 is one of its values, so it has no "unset"
 * value there, and the gate file carries the one the gates were trained with. */
#define EI_OPT_NO_CHOICES(X)
#define EI_OPTS_TABLE(X, a)                                                                                 \
    X(a, segment, INT, int, EI_DEFAULT_SEGMENT, 1, 1 << 20, EI_OPT_NO_CHOICES, EI_OPT_MATHS, CLI, "segment", \
      "L", "segment length L (tokens per segment)")                                                       \
    X(a, sink, INT, int, EI_DEFAULT_SINK, 0, 1 << 20, EI_OPT_NO_CHOICES, EI_OPT_MATHS, CLI, "sink", "S",    \
      "sink tokens S kept from the start of the document")                                                \
    X(a, window, INT, int, EI_DEFAULT_WINDOW, 0, 1 << 20, EI_OPT_NO_CHOICES, EI_OPT_MATHS, CLI, "window",   \
      "W", "window W of recent tokens kept uncompressed")                                                 \
    X(a, gate, ENUM, ei_gate_kind, EI_GATE_TOKEN, 0, 0, EI_GATE_KINDS, EI_OPT_MATHS, CLI, "gate", NULL,     \
      "memory gate: per token (sigmoid(x w + b)) or per head (sigmoid(beta))")                            \
    X(a, memory_rule, ENUM, ei_mem_rule, EI_MEM_LINEAR, 0, 0, EI_MEM_RULES, EI_OPT_MATHS, CLI,              \
      "memory-rule", NULL, "compressive memory update rule")                                              \
    X(a, route_threshold, INT, int, -1, -1, 1 << 30, EI_OPT_NO_CHOICES, EI_OPT_MATHS, NOCLI, NULL, "N",     \
      "documents up to this length run the base model unchanged (capped at the model context); "          \
      "-1: S + W + L; 0: never")                                                                          \
    X(a, gate_init_bias, FLOAT, double, 0.0, -30, 30, EI_OPT_NO_CHOICES, EI_OPT_MATHS, CLI,                 \
      "gate-init-bias", "B", "initial gate bias b (the gate starts at sigmoid(b))")                       \
    X(a, bptt_segments, INT, int, 0, 0, 1 << 20, EI_OPT_NO_CHOICES, 0, NOCLI, NULL, "K",                    \
      "truncate backpropagation through the state every k segments; 0: full BPTT")                        \
    X(a, positions, ENUM, ei_positions, EI_POS_COMPACT, 0, 0, EI_POSITIONS_LIST, EI_OPT_MATHS, CLI,         \
      "positions", NULL,                                                                                  \
      "RoPE positions of cached keys while the window fills: compact (occupied slots numbered "           \
      "contiguously) or design (DESIGN 3.1: window slots right-aligned)")

#define EI_OPT_FIELD_(a, name, TYPE, ctype, ...) ctype name;
typedef struct {
    EI_OPTS_TABLE(EI_OPT_FIELD_, ~)
} ei_opts;

/* Index of each option: EI_OPT_segment, EI_OPT_sink, ...; EI_OPTS_COUNT options in all. */
#define EI_OPT_INDEX_(a, name, ...) EI_OPT_##name,
enum { EI_OPTS_TABLE(EI_OPT_INDEX_, ~) EI_OPTS_COUNT };

typedef enum { EI_OPT_INT, EI_OPT_FLOAT, EI_OPT_ENUM } ei_opt_type;

/* One row of the table as data, for code that walks the options. */
typedef struct {
    const char *name;         /* config / metadata / JSON key */
    const char *cli;          /* command-line name without dashes; NULL: not on the command line */
    ei_opt_type type;
    double def;               /* default (ENUM: its value) */
    double min, max;          /* inclusive (ENUM: 0 .. n_names - 1) */
    const char *choices;      /* ENUM: "token|head"; otherwise NULL */
    const char *const *names; /* ENUM: name of each value; otherwise NULL */
    int n_names;
    int flags;                /* EI_OPT_* */
    size_t offset, size;      /* of the field in ei_opts */
    const char *metavar;      /* ENUM: the choices */
    const char *help;
} ei_opt_desc;

int ei_opts_count(void);
/* NULL when i is out of range. */
const ei_opt_desc *ei_opt_desc_at(int i);
/* Index of the option with this config key, -1 if none (no error set). */
int ei_opt_find(const char *name);

void ei_opts_default(ei_opts *o);
/* Checks every option against its range; cfg may be NULL (then model-dependent checks are skipped).
 * -1 + ei_error naming the option. */
int ei_opts_validate(const ei_opts *o, const ei_model_config *cfg);
/* The effective routing threshold for this model: documents of at most this many tokens run the
 * base model unchanged. */
int ei_opts_route_threshold(const ei_opts *o, const ei_model_config *cfg);

/* Sets one option by its config key from a string ("segment", "128"), range-checked. -1 + ei_error
 * naming the key on an unknown key or a bad or out-of-range value; o is then unchanged. */
int ei_opts_set(ei_opts *o, const char *key, const char *value);
/* The same by index. */
int ei_opts_set_str(ei_opts *o, int i, const char *value);
/* Sets option i from a number (ENUM: the value), range-checked; integers must be whole. */
int ei_opts_set_num(ei_opts *o, int i, double v);
/* Value of option i as a number (ENUM: the value). */
double ei_opts_get_num(const ei_opts *o, int i);
/* Value of option i as text that ei_opts_set_str reads back to the same value (floats to the bit).
 * Returns the length the text needs (as snprintf; the text is complete when < n), -1 for a bad i. */
int ei_opts_get_str(const ei_opts *o, int i, char *buf, size_t n);
/* Index of the first option whose flags include any bit of flags_mask (every option when 0) and
 * whose value differs between a and b; -1 if none differs. */
int ei_opts_diff(const ei_opts *a, const ei_opts *b, int flags_mask);

int ei_gate_kind_parse(const char *s, ei_gate_kind *out);
int ei_mem_rule_parse(const char *s, ei_mem_rule *out);
int ei_mode_parse(const char *s, ei_mode *out);
int ei_positions_parse(const char *s, ei_positions *out);
const char *ei_gate_kind_name(ei_gate_kind k);
const char *ei_mem_rule_name(ei_mem_rule r);
const char *ei_mode_name(ei_mode m);
const char *ei_positions_name(ei_positions p);

#endif
