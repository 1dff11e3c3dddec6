/* Precision plans (DESIGN 6.1): which weight scheme each tensor of a model gets, plus the activation
 * and KV-cache precisions; their YAML form in a scenario; and the size-budget solver behind
 * `ei compile --budget-mb`. Host side (the YAML half uses config/ei_config.h). Syntax and
 * semantics in docs/quantisation.md.
 *
 *   precision:
 *     weights: w4g32            # the default scheme of every weight matrix
 *     activations: float       # float | a16 | a8 | a8s
 *     kv_cache: f32            # f32 | f16 | i8
 *     plan:                    # rules, applied in order: a later rule overrides an earlier one
 *       - {class: [embedding, classifier], scheme: w8}
 *       - {layers: 0-3, class: down, scheme: w8}
 *       - {layers: 5, scheme: f16}            # every class of layer 5
 *
 * A rule: `layers` is "a-b" (inclusive), a single index, "all" or omitted (all, and the global
 * classes embedding / classifier too); `class` a class name of model/tensors.h or a list of them,
 * "all" or omitted; `scheme` (required) one of EI_QSCHEME_CHOICES.
 * What a plan covers: the weight matrices embedding, q, k, v, o, gate, up, down, classifier and
 * memory_gate. Norm weights and biases are not quantised (always f32; naming them is an error).
 * The memory gate stays f32 unless a rule names the class memory_gate explicitly (DESIGN 6.1: the
 * memory path and the gate stay float32 by default), so neither `weights:` nor a rule without a
 * class changes it. A rule with a layer range cannot name embedding or classifier (no layers). */
#ifndef EI_DEPLOY_QUANT_PLAN_H
#define EI_DEPLOY_QUANT_PLAN_H

#include "config/ei_config.h"
#include "deploy/quant.h"
#include "model/tensors.h"

#include <stdint.h>

/* ---------------------------------------------------------------- plans */

#define EI_QLAYERS_ALL (-1) /* layer_lo of a rule without a layer range */

typedef struct {
    int layer_lo, layer_hi; /* inclusive; layer_lo EI_QLAYERS_ALL: every layer and the global classes */
    uint32_t classes;       /* bit 1 << ei_tclass; 0: every weight matrix except memory_gate */
    ei_qscheme scheme;
} ei_qrule;

typedef struct {
    ei_qscheme weights; /* default scheme */
    ei_qact activations;
    ei_qkv kv_cache;
    int n_rules, cap_rules;
    ei_qrule *rules; /* owned */
} ei_qplan;

/* f32 weights, float activations, f32 cache, no rules. */
void ei_qplan_init(ei_qplan *p);
void ei_qplan_free(ei_qplan *p);
int ei_qplan_copy(ei_qplan *dst, const ei_qplan *src);
/* Appends a rule (checked as the YAML is: classes that are weight matrices, lo <= hi, no layer
 * range with a global class). lo = EI_QLAYERS_ALL for all layers (hi ignored). */
int ei_qplan_add_rule(ei_qplan *p, int lo, int hi, uint32_t classes, ei_qscheme s);

/* 1 for the classes a plan covers (2-D weight matrices). */
int ei_qclass_is_matrix(ei_tclass c);
/* The scheme of (class, layer) (layer ignored for embedding and classifier): the last matching
 * rule's, else the default (f32 for memory_gate and for classes that are not matrices). */
ei_qscheme ei_qplan_resolve(const ei_qplan *p, ei_tclass c, int layer);
/* ei_qplan_resolve followed by ei_qscheme_fit for rows of cols elements; *changed (may be NULL)
 * is set to 1 when the group rule replaced the planned scheme (the lowering should say so). */
ei_qscheme ei_qplan_resolve_fit(const ei_qplan *p, ei_tclass c, int layer, int64_t cols, int *changed);
/* Checks the rules against a model of n_layers layers: a range reaching past the last layer is an
 * error naming the rule (precision.plan[i]). */
int ei_qplan_check(const ei_qplan *p, int n_layers);

/* Builds the shortest plan the compactor finds that resolves like table: table[c * (n_layers + 1)
 * + (ei_tclass_per_layer(c) ? layer : n_layers)] (the ei_tensor_table index) holds the scheme of
 * every matrix tensor, EI_QW_COUNT for "absent / any". The default is the most frequent scheme;
 * runs of consecutive layers become ranges, and equal ranges of several classes share a rule. p is
 * initialised here (activations and kv_cache at their defaults). */
int ei_qplan_from_table(ei_qplan *p, int n_layers, const ei_qscheme *table);

/* ---------------------------------------------------------------- YAML */

/* One item of precision.plan as the config machinery parses it (the strings are kept so that a
 * dump shows what was written); `rule` is filled by the item check. */
typedef struct {
    char *layers;
    ei_cfg_strlist classes; /* key "class": a name or a list */
    char *scheme;
    ei_qrule rule;
} ei_qrule_cfg;

/* The precision section as config fields; ei_qplan_from_cfg turns it into a plan. */
typedef struct {
    int weights;     /* ei_qscheme (EI_CFG_ENUM over EI_QSCHEME_CHOICES) */
    int activations; /* ei_qact */
    int kv_cache;    /* ei_qkv */
    ei_cfg_records plan; /* of ei_qrule_cfg */
} ei_qprecision_cfg;

/* The record spec of precision.plan items (for schemas built by hand). */
extern const ei_cfg_record_spec ei_qrule_cfg_spec;
/* Appends the rows <section>.weights, .activations, .kv_cache and .plan (offsets base + field of
 * ei_qprecision_cfg) to a schema being assembled, e.g. the scenario's with section "precision". */
int ei_qprecision_schema_append(ei_cfg_schema *s, const char *section, size_t base);
int ei_qplan_from_cfg(ei_qplan *p, const ei_qprecision_cfg *c);
/* Frees the plan records (for owners that do not call ei_config_release). */
void ei_qprecision_cfg_free(ei_qprecision_cfg *c);

/* Reads a plan from YAML text / a file holding only a `precision:` section (tests, tools). Errors
 * name name:line: key. p is initialised here. */
int ei_qplan_load_string(ei_qplan *p, const char *yaml, const char *name);
int ei_qplan_load_file(ei_qplan *p, const char *path);

/* The plan as YAML text a user can edit and load back (block section, one flow mapping per rule):
 * "<section>:\n  weights: w8\n  ...\n  plan:\n    - {layers: 0-3, class: down, scheme: w8}\n".
 * malloc'd; NULL (ei_error set) on allocation failure. */
char *ei_qplan_to_yaml(const ei_qplan *p, const char *section);

/* ---------------------------------------------------------------- size budget */

typedef struct {
    ei_qscheme scheme;
    uint64_t bytes; /* the tensor's size under the scheme (e.g. ei_qscheme_file_bytes) */
    double loss;    /* the loss increase measured for it (any finite value) */
} ei_qcand;

typedef struct {
    ei_tclass cls;
    int layer;
    int n_cand;            /* 1..255 */
    const ei_qcand *cand;
} ei_qbudget_item;

typedef struct {
    uint64_t bytes; /* total size of the choice */
    double loss;    /* total loss increase */
    uint64_t unit;  /* size unit of the dynamic programme */
    int exact;      /* 1: the minimum over every choice within the budget */
} ei_qbudget_result;

/* Most size units the solver's table takes (memory: n_items x units bytes). */
#define EI_QBUDGET_MAX_UNITS 65536

/* Picks one candidate per item (choice[i] indexes items[i].cand) minimising the summed loss with
 * the summed bytes <= budget: a multiple-choice knapsack, solved by dynamic programming over size
 * in units of the greatest common divisor of all sizes. When budget / gcd exceeds
 * EI_QBUDGET_MAX_UNITS, sizes are rounded up to a coarser unit u = ceil(budget / MAX_UNITS) (the
 * choice stays within the budget, and its loss is at most the optimum for budget - n u), then a
 * greedy pass spends the rounding slack on single-tensor upgrades. -1 when even the smallest
 * candidates exceed the budget, or on bad input. */
int ei_qbudget_solve(const ei_qbudget_item *items, int n_items, uint64_t budget, int *choice, ei_qbudget_result *res);

#endif
