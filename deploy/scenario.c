#include "deploy/scenario.h"

#include "config/ei_config.h"
#include "core/ei_error.h"
#include "train/train_config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define OFF(f) offsetof(ei_scenario, f)

/* Enum indices follow the choices strings; mode's order is reversed against ei_mode so that the
 * first (default) choice is edgeinfinite. */
static const ei_cfg_key head_rows[] = {
    {"scenario.name", EI_CFG_STRING, OFF(name), 1, 0, "scenario", NULL, 0, 0, "name shown by ei inspect and ei-eval"},
    {"scenario.mode", EI_CFG_ENUM, OFF(mode), 1, 0, "edgeinfinite", "edgeinfinite|window|full", 0, 0,
     "attention of the graphs: EdgeInfinite (needs --gates), sink + window only, or full attention"},
    {"scenario.tokens_per_call", EI_CFG_INT, OFF(tokens_per_call), 1, 4096, "32", NULL, 0, 0,
     "N: tokens per prefill call (the prompt goes in chunks of N; decoding feeds 1)"},
    {"scenario.max_new_tokens", EI_CFG_INT, OFF(max_new_tokens), 0, 1 << 20, "256", NULL, 0, 0,
     "most tokens a generation may produce"},
    {"scenario.context", EI_CFG_INT, OFF(context), 0, 1 << 20, "0", NULL, 0, 0,
     "full mode: tokens the KV cache holds (0: the model's trained context)"},
    {0},
};


ei_mode ei_scenario_mode(const ei_scenario *s) {
    return s->mode == 0 ? EI_MODE_EDGEINFINITE : s->mode == 1 ? EI_MODE_WINDOW : EI_MODE_FULL;
}

const char *ei_scenario_weights_name(const ei_scenario *s) { return ei_qscheme_name(s->plan.weights); }

int ei_scenario_load(ei_scenario *s, const char *path, const char *const *overrides, int n_overrides) {
    memset(s, 0, sizeof *s);
    ei_cfg_schema schema;
    ei_cfg_schema_init(&schema);
    ei_config c;
    int rc = ei_cfg_schema_add(&schema, head_rows) || ei_qprecision_schema_append(&schema, "precision", OFF(precision)) ||
             ei_opts_schema_append(&schema, "edgeinfinite", OFF(ei));
    if (!rc) rc = ei_config_init(&c, schema.keys, s);
    if (rc) {
        ei_cfg_schema_free(&schema);
        return -1;
    }
    rc = ei_config_load_file(&c, path);
    for (int i = 0; i < n_overrides && !rc; i++) rc = ei_config_set(&c, overrides[i]);
    if (!rc) rc = ei_opts_validate(&s->ei, NULL);
    ei_qplan_init(&s->plan);
    if (!rc) rc = ei_qplan_from_cfg(&s->plan, &s->precision);
    for (int i = 0; !rc && i < ei_opts_count(); i++) {
        char key[96];
        snprintf(key, sizeof key, "edgeinfinite.%s", ei_opt_desc_at(i)->name);
        const char *origin = ei_config_origin(&c, key);
        if (origin && strcmp(origin, "default") != 0) s->set_mask |= 1u << i;
    }
    if (rc) {
        ei_qplan_free(&s->plan);
        ei_config_release(&c);
        ei_cfg_schema_free(&schema);
        memset(s, 0, sizeof *s);
        return -1;
    }
    for (int i = 0; i < c.n_keys; i++) free(c.origin[i]);
    free(c.origin);
    ei_cfg_schema_free(&schema);
    ei_qopts_default(&s->qopts);
    if (!(s->path = strdup(path))) return ei_error_set("out of memory");
    return 0;
}

void ei_scenario_free(ei_scenario *s) {
    ei_qplan_free(&s->plan);
    ei_qprecision_cfg_free(&s->precision);
    free(s->name);
    free(s->path);
    memset(s, 0, sizeof *s);
}

int ei_scenario_apply_opts(const ei_scenario *s, ei_opts *o, int gates_given) {
    for (int i = 0; i < ei_opts_count(); i++) {
        if (!(s->set_mask & (1u << i))) continue;
        const ei_opt_desc *d = ei_opt_desc_at(i);
        double want = ei_opts_get_num(&s->ei, i), have = ei_opts_get_num(o, i);
        /* the gate parameters were trained for these maths: a scenario cannot change them */
        const int fixed = d->flags & EI_OPT_MATHS && d->type == EI_OPT_ENUM;
        if (gates_given && fixed && want != have) {
            char a[64], b[64];
            ei_opts_get_str(&s->ei, i, a, sizeof a);
            ei_opts_get_str(o, i, b, sizeof b);
            return ei_error_set("%s: edgeinfinite.%s is '%s' but the gates were trained with '%s'", s->path, d->name, a,
                                b);
        }
        if (ei_opts_set_num(o, i, want) != 0) return ei_error_prefix("%s: ", s->path);
    }
    return ei_opts_validate(o, NULL);
}
