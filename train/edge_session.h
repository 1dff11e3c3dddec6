/* Command-line glue for the EdgeInfinite inference modes, shared by `ei eval` and `ei generate`:
 * the options (--mode, --gates, --segment, --sink, --window, --gate, --gate-init-bias,
 * --memory-rule, --positions) as ei_args rows, and opening an ei_edge for the chosen mode.
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

/* Unset values (NULL strings, -1 integers) come from the --gates file's metadata when it has them
 * (ei_gates_save_opts), else from ei_opts_default. */
typedef struct {
    const char *mode;         /* full | window | edgeinfinite */
    const char *gates_path;   /* NULL: gates at their initialisation (w = 0, b = gate_init_bias) */
    const char *gate;         /* token | head */
    const char *memory_rule;  /* linear | delta */
    const char *positions;    /* compact | design */
    int segment, sink, window;
    double gate_init_bias;
} ei_cli_opts;

void ei_cli_opts_default(ei_cli_opts *c);

/* --mode (commands that already have a --mode option set ei_cli_opts.mode themselves). */
#define EI_CLI_ARG_MODE(c)                                                                              \
    {"mode", EI_ARG_STR, &(c)->mode, "MODE",                                                            \
     "attention: full (base model), window (sink + window, nothing compressed), edgeinfinite"}

/* The EdgeInfinite options; defaults are the values in c when the table is parsed. */
#define EI_CLI_ARG_ROWS(c)                                                                              \
    {"gates", EI_ARG_STR, &(c)->gates_path, "FILE", "trained gate parameters (safetensors, ei export)"}, \
    {"segment", EI_ARG_INT, &(c)->segment, "L", "tokens per segment (-1: from --gates, else 128)"},     \
    {"sink", EI_ARG_INT, &(c)->sink, "S", "sink tokens from the document start (-1: --gates, else 4)"}, \
    {"window", EI_ARG_INT, &(c)->window, "W", "recent tokens cached (-1: from --gates, else 256)"},     \
    {"gate", EI_ARG_STR, &(c)->gate, "token|head", "memory gate kind (default: --gates, else token)"},  \
    {"gate-init-bias", EI_ARG_FLOAT, &(c)->gate_init_bias, "B", "gate bias when no --gates are given"}, \
    {"memory-rule", EI_ARG_STR, &(c)->memory_rule, "linear|delta",                                      \
     "compressive memory update rule (default: from --gates, else linear)"},                            \
    {"positions", EI_ARG_STR, &(c)->positions, "compact|design",                                        \
     "RoPE positions of cached keys: compact numbers occupied slots contiguously, design leaves the "   \
     "gap of DESIGN 3.1 while the window fills (default: from --gates, else compact)"}

typedef struct {
    ei_mode mode;
    ei_opts opts;
    ei_gates *gates; /* owned; NULL in full and window modes */
    ei_edge *edge;   /* owned */
} ei_cli_session;

/* Validates the options against the model, loads --gates (edgeinfinite mode) and opens the edge.
 * -1 with ei_error set (naming the option) on failure. */
int ei_cli_session_open(ei_cli_session *s, const ei_cli_opts *c, const ei_model *m);
void ei_cli_session_close(ei_cli_session *s);

#endif
