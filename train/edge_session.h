/* Command-line glue for the EdgeInfinite inference modes, shared by `ei eval` and `ei generate`:
 * the options (--mode, --gates, and --segment, --sink, --window, --gate, --memory-rule,
 * --gate-init-bias, --positions generated from the options table of model/options.h) as ei_args
 * rows, and opening an ei_edge for the chosen mode.
 *
 *   ei_cli_opts eo;  ei_cli_opts_default(&eo);
 *   ei_arg opts[] = { ...command options..., EI_CLI_ARG_MODE(&eo), EI_CLI_ARG_ROWS(&eo), {0} };
 *   ... parse, load the model ...
 *   ei_cli_session s;
 *   if (ei_cli_session_open(&s, &eo, model) != 0) error;   // validates, loads --gates
 *   window / edgeinfinite:  ei_edge_doc_eval(s.edge, ...)  or  ei_edge_feed(s.edge, ...)
 *   ei_cli_session_close(&s);
 * In full mode s.edge runs the base model (ei_infer) so callers may keep their own full path. */
#ifndef EI_CLI_GLUE_H
#define EI_CLI_GLUE_H

#include "core/ei_args.h"
#include "train/edge.h"

/* The inference options, one field per option of the table in model/options.h whose CLI column is
 * CLI (segment, sink, window, gate, memory_rule, gate_init_bias, positions), generated from it:
 * integers are int, floats double, enums the name (const char *). Unset values (-1 integers, NaN
 * floats, NULL names) come from the --gates file's metadata when it has them (ei_gates_save_opts),
 * else from ei_opts_default; set values win over the file. */
#define EI_CLI_FIELD_CLI_INT(name) int name;
#define EI_CLI_FIELD_CLI_FLOAT(name) double name;
#define EI_CLI_FIELD_CLI_ENUM(name) const char *name;
#define EI_CLI_FIELD_NOCLI_INT(name)
#define EI_CLI_FIELD_NOCLI_FLOAT(name)
#define EI_CLI_FIELD_NOCLI_ENUM(name)
#define EI_CLI_FIELD_(a, name, TYPE, ctype, def, mn, mx, CH, fl, CLI, ...) EI_CLI_FIELD_##CLI##_##TYPE(name)
typedef struct {
    const char *mode;       /* full | window | edgeinfinite */
    const char *gates_path; /* NULL: gates at their initialisation (w = 0, b = gate_init_bias) */
    const char *who;        /* command name for warnings ("ei eval"); NULL: "ei" */
    EI_OPTS_TABLE(EI_CLI_FIELD_, ~)
} ei_cli_opts;

/* The "unset" value of an integer option on the command line; out of range for every CLI integer
 * option (checked in edge_session.c), so it cannot be mistaken for a value. */
#define EI_CLI_UNSET_INT (-1)

void ei_cli_opts_default(ei_cli_opts *c);
/* 1 when any EdgeInfinite option was given on the command line (not --mode / --gates). */
int ei_cli_opts_any_set(const ei_cli_opts *c);

/* --mode (commands that already have a --mode option set ei_cli_opts.mode themselves). */
#define EI_CLI_ARG_MODE(c)                                                                              \
    {"mode", EI_ARG_STR, &(c)->mode, "MODE",                                                            \
     "attention: full (base model), window (sink + window, nothing compressed), edgeinfinite"}

/* --gates and one row per CLI option of the table. Name, metavar, help and range come from the
 * table (ei_cli_opt_help adds where an unset value comes from), so the rows are expressions, which
 * an ei_arg array in a function accepts. Defaults are the values in c when the table is parsed; the
 * range row rejects a given -1 (the "unset" value) like any other value outside the range. */
#define EI_CLI_KIND_INT EI_ARG_INT
#define EI_CLI_KIND_FLOAT EI_ARG_FLOAT
#define EI_CLI_KIND_ENUM EI_ARG_STR
#define EI_CLI_ROW_CLI(c, name, TYPE, mn, mx)                                                           \
    , {ei_opt_desc_at(EI_OPT_##name)->cli, EI_CLI_KIND_##TYPE, &(c)->name,                              \
       ei_opt_desc_at(EI_OPT_##name)->metavar, ei_cli_opt_help(EI_OPT_##name)}, EI_ARG_RANGE(mn, mx)
#define EI_CLI_ROW_NOCLI(c, name, TYPE, mn, mx)
#define EI_CLI_ROW_(c, name, TYPE, ctype, def, mn, mx, CH, fl, CLI, ...) EI_CLI_ROW_##CLI(c, name, TYPE, mn, mx)
#define EI_CLI_ARG_ROWS(c)                                                                              \
    {"gates", EI_ARG_STR, &(c)->gates_path, "FILE", "trained gate parameters (safetensors, ei export)"} \
    EI_OPTS_TABLE(EI_CLI_ROW_, c)

/* Help line of option i on the command line: the table's help plus where an unset value comes
 * from. Static storage, built on first use; never NULL. */
const char *ei_cli_opt_help(int i);

/* The one check that the local attention stays inside the positions the base model was trained on:
 * keys and queries take RoPE positions up to sink + window + segment - 1, so S + W + L must not
 * exceed the model's trained context (max_seq_len). Returns 1 and writes a message naming the three
 * numbers, their sum and the context into msg (cap bytes) when it does, 0 when it fits. Every
 * command that runs window or edgeinfinite attention calls it through ei_opts_warn_context: ei train,
 * ei eval, ei generate (via ei_cli_session_open) and ei compile. */
int ei_opts_context_check(const ei_opts *o, const ei_model_config *cfg, char *msg, size_t cap);
/* Prints "<who>: warning: <message>" on stderr when ei_opts_context_check finds a problem. */
void ei_opts_warn_context(const char *who, const ei_opts *o, const ei_model_config *cfg);

typedef struct {
    ei_mode mode;
    ei_opts opts;
    ei_gates *gates; /* owned; NULL in full and window modes */
    ei_edge *edge;   /* owned */
} ei_cli_session;

/* Validates the options against the model, loads --gates (edgeinfinite mode) and opens the edge;
 * window and edgeinfinite modes warn on stderr (ei_opts_warn_context) when the options reach beyond
 * the model's trained context. -1 with ei_error set (naming the option) on failure. */
int ei_cli_session_open(ei_cli_session *s, const ei_cli_opts *c, const ei_model *m);
void ei_cli_session_close(ei_cli_session *s);

#endif
