/* `ei compile`: an EdgeInfinite model (base model + trained gates + options) and a scenario become
 * the fixed-shape graphs of one .eig file (deploy/lower.h), with the model config, the options,
 * the scenario and the tokenizer's vocabulary in its metadata. */
#include "cli/commands.h"
#include "core/ei_args.h"
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "deploy/calib.h"
#include "deploy/eig_write.h"
#include "deploy/lower.h"
#include "deploy/scenario.h"
#include "formats/gates.h"
#include "formats/model.h"
#include "text/tokenizer.h"
#include "train/edge_session.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The plan's scheme for a weight; a w4 group that does not divide the rows falls back, noted once
 * per tensor (every graph asks again for the weights it shares). */
typedef struct {
    const ei_scenario *sc;
    uint64_t noted[EI_TC_COUNT][16]; /* bit per layer (layers >= 1024 share the last bits) */
} scheme_ctx;

static ei_qscheme weight_scheme(void *ctx, ei_tclass c, int layer, int64_t cols) {
    scheme_ctx *x = ctx;
    int changed = 0;
    ei_qscheme s = ei_qplan_resolve_fit(&x->sc->plan, c, layer, cols, &changed);
    const unsigned li = (unsigned)(layer + 1) % 1024u;
    uint64_t *w = &x->noted[c][li / 64], bit = (uint64_t)1 << (li % 64);
    if (changed && !(*w & bit))
        fprintf(stderr, "compile: note: %s of layer %d (%lld columns) stored as %s: the plan's scheme %s does not fit\n",
                ei_tclass_name(c), layer, (long long)cols, ei_qscheme_name(s),
                ei_qscheme_name(ei_qplan_resolve(&x->sc->plan, c, layer)));
    if (changed) *w |= bit;
    return s;
}

/* a8 / a16 plans: the static scales of a linear layer's input and output from the calibration
 * ranges. Linear layers of the blocks only: the classifier's logits need more range than 8 bits
 * give, and the memory gate is float32 (DESIGN 6.1). */
typedef struct {
    const ei_calib *cal;
    ei_qact act;
} act_ctx;

static int act_params(void *ctx, ei_tclass c, int layer, ei_qaparams *in, ei_qaparams *out) {
    const act_ctx *a = ctx;
    if (layer < 0 || c == EI_TC_CLASSIFIER || c == EI_TC_MEMORY_GATE) return 0;
    const ei_calib_entry *r = ei_calib_get(a->cal, c, layer);
    if (!r || r->in.n == 0 || r->out.n == 0) return 0;
    return ei_qact_params(a->act, r->in.lo, r->in.hi, in) == 0 && ei_qact_params(a->act, r->out.lo, r->out.hi, out) == 0;
}

/* i8 K/V caches: symmetric int8 per layer and tensor from the calibrated range of the K / V
 * projections' outputs. K is cached after RoPE, which rotates pairs of elements: an element can grow
 * to sqrt(2) times the largest one before it, so K's range is widened by that. */
static int kv_params(void *ctx, int layer, int is_v, ei_qaparams *p) {
    const ei_calib *cal = ctx;
    const ei_calib_entry *r = ei_calib_get(cal, is_v ? EI_TC_V : EI_TC_K, layer);
    if (!r || r->out.n == 0) return ei_error_set("no calibration range for the %s projection of layer %d", is_v ? "v" : "k", layer);
    const float a = fmaxf(fabsf(r->out.lo), fabsf(r->out.hi)) * (is_v ? 1.0f : 1.41421356f);
    return ei_qact_params(EI_QA_A8S, -a, a, p);
}

/* --sensitivity / --budget-mb: the table, and with a budget the plan it picks (written as YAML and
 * put into sc->plan). */
static int plan_budget(const ei_calib_model *cm, ei_scenario *sc, const char *val, int samples, int tokens,
                       const char *cands_str, double budget_mb, const char *plan_out, const char *out) {
    ei_qscheme cands[EI_QW_COUNT + 1];
    int nc = 0;
    cands[nc++] = EI_QW_F32;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", cands_str);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        ei_qscheme q;
        if (ei_qscheme_parse(tok, &q) != 0) return ei_error_prefix("--candidates: ");
        int dup = 0;
        for (int i = 0; i < nc; i++) dup |= cands[i] == q;
        if (!dup && nc < EI_QW_COUNT) cands[nc++] = q;
    }
    ei_qbudget_item *items = NULL;
    int n = 0, rc;
    double base;
    rc = ei_calib_sensitivity(cm, val, samples, tokens, cands, nc, &sc->qopts, stdout, &items, &n, &base);
    if (rc == 0 && budget_mb > 0) {
        const int nl = cm->m->cfg.n_layers;
        int *choice = calloc((size_t)n, sizeof *choice);
        ei_qscheme *table = malloc(sizeof *table * EI_TC_COUNT * ((size_t)nl + 1));
        ei_qbudget_result res;
        rc = choice && table ? 0 : ei_error_set("out of memory");
        if (rc == 0) rc = ei_qbudget_solve(items, n, (uint64_t)(budget_mb * 1e6), choice, &res);
        if (rc == 0) {
            for (int i = 0; i < EI_TC_COUNT * (nl + 1); i++) table[i] = EI_QW_COUNT;
            for (int i = 0; i < n; i++) {
                const ei_qbudget_item *it = &items[i];
                table[it->cls * (nl + 1) + (ei_tclass_per_layer(it->cls) ? it->layer : nl)] = it->cand[choice[i]].scheme;
            }
            /* a tied classifier is the embedding's table: the sensitivity measured both uses of it
             * at once and the budget counted one copy, so the plan keeps them together */
            if (cm->m->cfg.tie_embeddings)
                table[EI_TC_CLASSIFIER * (nl + 1) + nl] = table[EI_TC_EMBEDDING * (nl + 1) + nl];
            ei_qplan p;
            rc = ei_qplan_from_table(&p, nl, table);
            if (rc == 0) {
                p.activations = sc->plan.activations;
                p.kv_cache = sc->plan.kv_cache;
                ei_qplan_free(&sc->plan);
                sc->plan = p;
            }
        }
        char *yaml = rc == 0 ? ei_qplan_to_yaml(&sc->plan, "precision") : NULL;
        char def[4096];
        if (!plan_out) {
            snprintf(def, sizeof def, "%s.plan.yaml", out);
            plan_out = def;
        }
        if (rc == 0 && !yaml) rc = -1;
        if (rc == 0) {
            ei_atomic_file f;
            rc = ei_atomic_open(&f, plan_out);
            if (rc == 0) {
                fprintf(f.fp, "# chosen by ei compile --budget-mb %g: %.3f MB of weights, loss increase %.5f over "
                              "float32 (%.5f) on %s\n# use it as the precision section of a scenario\n%s",
                        budget_mb, (double)res.bytes / 1e6, res.loss, base, val, yaml);
                rc = ei_atomic_commit(&f);
            }
        }
        if (rc == 0)
            fprintf(stderr, "compile: budget %.3f MB: weights %.3f MB, predicted loss increase %.5f; plan in %s\n",
                    budget_mb, (double)res.bytes / 1e6, res.loss, plan_out);
        free(yaml);
        free(choice);
        free(table);
    }
    for (int i = 0; i < n; i++) free((void *)items[i].cand);
    free(items);
    return rc;
}

int ei_cmd_compile(int argc, char **argv) {
    const char *model_path = NULL, *gates_path = NULL, *scen_path = NULL, *out = NULL, *tok_path = NULL;
    ei_arg_list sets = {0};
    int untrained = 0, sensitivity = 0, max_abs = 0, calib_samples = 8, calib_tokens = 2048;
    const char *calib_path = NULL, *val_path = NULL, *plan_out = NULL, *cands_str = "f16,w8,w4g32,w4g64,w4g128";
    double budget_mb = 0;
    ei_arg opts[] = {
        {"model", EI_ARG_STR, &model_path, "PATH", "llama2.c .bin file or Hugging Face folder (required)"},
        {"gates", EI_ARG_STR, &gates_path, "FILE",
         "trained gate parameters (ei export); required for edgeinfinite scenarios"},
        {"untrained-gates", EI_ARG_FLAG, &untrained, NULL,
         "edgeinfinite without --gates: gates at their initialisation (w = 0, b = gate_init_bias); for benchmarks"},
        {"scenario", EI_ARG_STR, &scen_path, "FILE.yaml", "deployment scenario (configs/scenarios/NAME.yaml, required)"},
        {"set", EI_ARG_LIST, &sets, "KEY=VALUE", "override a scenario key (e.g. scenario.tokens_per_call=64)"},
        {"tokenizer", EI_ARG_STR, &tok_path, "PATH", "tokenizer stored in the file (default: the model's own)"},
        {"calib", EI_ARG_STR, &calib_path, "DATA.h5",
         "calibration data (ei prepare): the float model runs on it and records activation ranges"},
        {"calib-samples", EI_ARG_INT, &calib_samples, "N", "samples of --calib (and of --val) used"},
        EI_ARG_RANGE(1, 2147483647),
        {"calib-tokens", EI_ARG_INT, &calib_tokens, "N", "tokens per sample of --calib / --val (0: whole)"},
        EI_ARG_RANGE(0, 2147483647),
        {"sensitivity", EI_ARG_FLAG, &sensitivity, NULL,
         "print, per layer and tensor class, the validation loss increase of quantising only that tensor "
         "to each candidate scheme"},
        {"val", EI_ARG_STR, &val_path, "DATA.h5", "validation data of --sensitivity / --budget-mb (default: --calib)"},
        {"candidates", EI_ARG_STR, &cands_str, "S,S,...", "schemes --sensitivity / --budget-mb try"},
        {"budget-mb", EI_ARG_FLOAT, &budget_mb, "X",
         "pick a scheme per tensor with the least total loss increase whose weights fit in X MB; writes the plan"},
        EI_ARG_RANGE(0, 1e9),
        {"plan-out", EI_ARG_STR, &plan_out, "FILE.yaml",
         "--budget-mb: where the chosen plan goes as a scenario YAML (default: OUTPUT.plan.yaml)"},
        {"max-abs", EI_ARG_FLAG, &max_abs, NULL, "plain max-abs scales instead of the MSE clipping search"},
        {"output", EI_ARG_STR, &out, "FILE.eig", "graph file to write (required); also -o"},
        {0}};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-o") == 0) argv[i] = "--output";
    int rc = ei_args_parse(argc, argv, "ei compile",
                           "Lowers the model into the fixed-shape prefill / decode graphs of a scenario (and the "
                           "compress and routing graphs it needs) and writes them, with one copy of the weights, "
                           "the model config, the options and the tokenizer, to a .eig file. `ei inspect` shows "
                           "what it holds; `ei generate --graph` and `ei-eval` run it.",
                           opts, NULL, NULL);
    if (rc) return rc < 0 ? 2 : 0;
    if (calib_samples < 1 || calib_tokens < 0 || budget_mb < 0) {
        fprintf(stderr, "ei compile: error: need --calib-samples >= 1, --calib-tokens >= 0, --budget-mb >= 0\n");
        free(sets.items);
        return 2;
    }
    if ((sensitivity || budget_mb > 0) && !calib_path && !val_path) {
        fprintf(stderr, "ei compile: error: --sensitivity and --budget-mb need --val (or --calib) data\n");
        free(sets.items);
        return 2;
    }
    if (!model_path || !scen_path || !out) {
        fprintf(stderr, "ei compile: error: --model, --scenario and --output are required (see --help)\n");
        free(sets.items);
        return 2;
    }
    int status = 1;
    ei_model *m = NULL;
    ei_gates *g = NULL;
    ei_tokenizer *tok = NULL;
    ei_eigw *w = NULL;
    char *def_tok = NULL;
    ei_scenario sc;
    memset(&sc, 0, sizeof sc);
    ei_calib cal;
    int have_cal = 0;
    {
        /* No output may be an input (`-o model.bin` would replace the model). */
        const char *in[] = {model_path, gates_path, scen_path, tok_path, calib_path, val_path};
        char def_plan[4096];
        snprintf(def_plan, sizeof def_plan, "%s.plan.yaml", out);
        if (ei_check_not_input(out, in, 6) != 0 ||
            ei_check_not_input(plan_out ? plan_out : budget_mb > 0 ? def_plan : NULL, in, 6) != 0)
            goto fail;
    }
    if (ei_scenario_load(&sc, scen_path, sets.items, sets.n) != 0) goto fail;
    const ei_mode mode = ei_scenario_mode(&sc);
    if (mode == EI_MODE_EDGEINFINITE && !gates_path && !untrained) {
        ei_error_set("%s: an edgeinfinite scenario needs --gates (or --untrained-gates, or scenario.mode: window)",
                     scen_path);
        goto fail;
    }
    if (gates_path && untrained) {
        ei_error_set("--gates and --untrained-gates exclude each other");
        goto fail;
    }
    if (mode != EI_MODE_EDGEINFINITE && gates_path) {
        ei_error_set("--gates is only used by edgeinfinite scenarios (%s is '%s')", scen_path, ei_mode_name(mode));
        goto fail;
    }
    if (!(m = ei_model_load(model_path))) goto fail;
    ei_opts o;
    ei_opts_default(&o);
    if (gates_path && ei_gates_file_opts(gates_path, &o) != 0) goto fail;
    if (ei_scenario_apply_opts(&sc, &o, gates_path != NULL) != 0 || ei_opts_validate(&o, &m->cfg) != 0) goto fail;
    if (mode != EI_MODE_FULL) ei_opts_warn_context("ei compile", &o, &m->cfg); /* the one context check */
    if (mode == EI_MODE_EDGEINFINITE) {
        if (!(g = ei_gates_new(&m->cfg, o.gate, o.gate_init_bias))) goto fail;
        if (gates_path && ei_gates_load(g, gates_path) != 0) goto fail;
    }
    if (!tok_path) tok_path = def_tok = ei_model_default_tokenizer(model_path, m->cfg.vocab_size);
    if (tok_path && !(tok = ei_tokenizer_load(tok_path, m->cfg.vocab_size))) goto fail;
    if (!tok) fprintf(stderr, "compile: warning: no tokenizer found beside the model; the file will hold no vocabulary\n");
    if (!(w = ei_eigw_new()) || ei_eigw_set_config(w, &m->cfg) != 0) goto fail;
    if (tok && ei_eigw_set_tokenizer(w, tok) != 0) goto fail;
    char num[32];
    snprintf(num, sizeof num, "%d", sc.max_new_tokens);
    if (ei_eigw_set_kv(w, "SCEN", EI_SCEN_NAME, sc.name ? sc.name : "scenario") != 0 ||
        ei_eigw_set_kv(w, "SCEN", EI_SCEN_MAX_NEW_TOKENS, num) != 0 ||
        ei_eigw_set_kv(w, "SCEN", EI_SCEN_WEIGHTS, ei_scenario_weights_name(&sc)) != 0 ||
        ei_eigw_set_kv(w, "SCEN", EI_SCEN_ACTIVATIONS, ei_qact_name(sc.plan.activations)) != 0 ||
        ei_eigw_set_kv(w, "SCEN", EI_SCEN_KV_CACHE, ei_qkv_name(sc.plan.kv_cache)) != 0)
        goto fail;
    if (sc.plan.kv_cache == EI_QKV_I8 && !calib_path) {
        ei_error_set("%s: precision.kv_cache i8 needs calibration data for the caches' scales: --calib DATA.h5",
                     scen_path);
        goto fail;
    }
    if (sc.plan.activations != EI_QA_FLOAT && !calib_path) {
        ei_error_set("%s: precision.activations %s needs calibration data for its static scales: --calib DATA.h5",
                     scen_path, ei_qact_name(sc.plan.activations));
        goto fail;
    }
    if (ei_qplan_check(&sc.plan, m->cfg.n_layers) != 0) goto fail;
    if (max_abs) sc.qopts.clip = EI_QCLIP_MAXABS;
    ei_calib_model cm = {m, g, o, mode};
    if (calib_path) {
        double t0 = ei_time_now();
        if (ei_calib_run(&cal, &cm, calib_path, calib_samples, calib_tokens) != 0) goto fail;
        fprintf(stderr, "compile: calibrated on %lld samples (%lld tokens) of %s in %.1f s\n", (long long)cal.samples,
                (long long)cal.tokens, calib_path, ei_time_now() - t0);
        have_cal = 1;
    }
    if (sensitivity || budget_mb > 0) {
        if (plan_budget(&cm, &sc, val_path ? val_path : calib_path, calib_samples, calib_tokens, cands_str, budget_mb,
                        plan_out, out) != 0)
            goto fail;
        if (sensitivity && budget_mb <= 0) {
            status = 0;
            goto done;
        }
    }
    scheme_ctx sx = {.sc = &sc};
    act_ctx ax = {&cal, sc.plan.activations};
    int n_int = 0;
    ei_lower_spec spec = {.m = m,
                          .gates = g,
                          .mode = mode,
                          .o = o,
                          .tokens_per_call = sc.tokens_per_call,
                          .context = sc.context,
                          .weight_scheme = weight_scheme,
                          .weight_scheme_ctx = &sx,
                          .qopts = &sc.qopts,
                          .act_params = sc.plan.activations != EI_QA_FLOAT ? act_params : NULL,
                          .act_ctx = &ax,
                          .act_count = &n_int,
                          .kv_cache = sc.plan.kv_cache,
                          .kv_params = kv_params,
                          .kv_ctx = &cal};
    if (ei_lower(&spec, w) != 0) goto fail;
    if (sc.plan.activations != EI_QA_FLOAT && n_int == 0) {
        ei_error_set("%s: precision.activations %s quantises the activations of layers with integer weights "
                     "(w8, w4gG), and this plan has none",
                     scen_path, ei_qact_name(sc.plan.activations));
        goto fail;
    }
    if (ei_eigw_write(w, out) != 0) goto fail;
    fprintf(stderr, "compile: %s: scenario '%s' (%s, N = %d, %s weights, %s activations), %.1f MB of constants\n",
            out, sc.name ? sc.name : "", ei_mode_name(mode), sc.tokens_per_call, ei_scenario_weights_name(&sc),
            ei_qact_name(sc.plan.activations), (double)ei_eigw_data_size(w) / 1e6);
    status = 0;
    goto done;
fail:
    ei_error_print("compile");
done:
    if (have_cal) ei_calib_free(&cal);
    ei_eigw_free(w);
    ei_tokenizer_free(tok);
    free(def_tok);
    ei_gates_free(g);
    ei_model_free(m);
    ei_scenario_free(&sc);
    free(sets.items);
    return status;
}
