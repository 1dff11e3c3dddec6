/* Deployment scenarios (DESIGN 6.2): configs/scenarios/NAME.yaml fix what the fixed-shape graphs are
 * sized for: tokens per call N (the prefill chunk; decoding uses 1), the EdgeInfinite segment,
 * sink and window (the `edgeinfinite.*` keys of the one options table, model/options.h), the
 * attention mode, the context of full-attention graphs, the precision plan and the maximum number
 * of generated tokens. Parsed with the project's schema machinery (config/ei_config.h): unknown
 * keys, wrong types and ranges are errors naming file:line: key. Host side.
 *
 *   scenario:   name, mode (edgeinfinite | window | full), tokens_per_call, max_new_tokens,
 *               context (full mode: tokens the cache holds; 0: the model's trained context)
 *   precision:  weights (default scheme: f32 | f16 | w8 | w4g32 | w4g64 | w4g128), activations,
 *               kv_cache, plan (rules such as {layers: 0-3, class: down, scheme: w8}; deploy/quant_plan.h)
 *   edgeinfinite: segment, sink, window, ... (every key of model/options.h)
 *
 * Options the scenario does not set come from the gate file (its metadata) or the defaults;
 * options that change the maths (gate, memory_rule, positions) must agree with the gate file. */
#ifndef EI_DEPLOY_SCENARIO_H
#define EI_DEPLOY_SCENARIO_H

#include "deploy/quant_plan.h"
#include "model/options.h"

typedef struct {
    char *name;
    int mode;            /* ei_mode; "edgeinfinite|window|full" stored as 2, 1, 0 via ei_scenario_mode */
    int tokens_per_call; /* N */
    int max_new_tokens;
    int context;         /* full mode cache size; 0: the model's max_seq_len */
    ei_qprecision_cfg precision; /* as parsed */
    ei_qplan plan;       /* resolved from it */
    ei_qopts qopts;      /* how scales are chosen (MSE search by default) */
    ei_opts ei;
    unsigned set_mask;   /* bit i: option i of the table was set by the scenario file */
    char *path;          /* the file it came from */
} ei_scenario;

/* Loads path (then "key=value" overrides, as `--set`). -1 with ei_error set (file:line: key). The
 * strings are owned by the scenario (ei_scenario_free). */
int ei_scenario_load(ei_scenario *s, const char *path, const char *const *overrides, int n_overrides);
void ei_scenario_free(ei_scenario *s);
ei_mode ei_scenario_mode(const ei_scenario *s);
const char *ei_scenario_weights_name(const ei_scenario *s); /* the default scheme */
/* Merges the scenario's options into o (which holds the gate file's or the default options):
 * options the file set replace o's; a maths option that differs from a gate file's is an error. */
int ei_scenario_apply_opts(const ei_scenario *s, ei_opts *o, int gates_given);

#endif
