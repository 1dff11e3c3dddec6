#include "deploy/lower.h"

#include "core/ei_error.h"
#include "model/recipe.h"
#include "model/segment.h"

#include <stdio.h>
#include <string.h>

int ei_lower_cache_slots(const ei_opts *o) { return o->sink + o->window + o->segment; }

int ei_lower_base_slots(const ei_opts *o, const ei_model_config *cfg, ei_mode mode) {
    return mode == EI_MODE_FULL ? 0 : ei_opts_route_threshold(o, cfg);
}

static ei_val *layer_input(ei_ir_emitter *em, const char *fmt, int l, int rank, const int32_t *shape) {
    char name[32];
    snprintf(name, sizeof name, fmt, l);
    return ei_ir_input(em, name, EI_GT_F32, rank, shape);
}

static ei_val *layer_output(ei_ir_emitter *em, ei_val *v, const char *fmt, int l) {
    char name[32];
    snprintf(name, sizeof name, fmt, l);
    return ei_ir_output(em, v, name);
}

static ei_gtype kv_type(ei_qkv k) { return k == EI_QKV_F16 ? EI_GT_F16 : k == EI_QKV_I8 ? EI_GT_I8 : EI_GT_F32; }

/* Layer l's K (is_v 0) or V (1) cache input in the plan's element type (i8: with its scale). */
static ei_val *cache_raw(ei_ir_emitter *em, const ei_lower_spec *s, int l, int is_v, int32_t slots) {
    const ei_model_config *c = &em->m->cfg;
    const int32_t cs[3] = {slots, c->n_kv_heads, c->head_dim};
    char name[32];
    snprintf(name, sizeof name, is_v ? EI_FMT_VC : EI_FMT_KC, l);
    ei_val *raw = ei_ir_input(em, name, kv_type(s->kv_cache), 3, cs);
    if (s->kv_cache == EI_QKV_I8) {
        ei_qaparams p;
        if (!s->kv_params || s->kv_params(s->kv_ctx, l, is_v, &p) != 0) {
            em->failed = 1;
            snprintf(em->first_error, sizeof em->first_error, "i8 K/V cache of layer %d: %s", l,
                     s->kv_params ? ei_error_get() : "no scales (calibration)");
            return NULL;
        }
        ei_ir_set_quant(em, raw, &p);
    }
    return raw;
}

/* Its float32 view for the attention (a CAST or DEQUANTIZE node; the input itself for f32). */
static ei_val *cache_input(ei_ir_emitter *em, const ei_lower_spec *s, int l, int is_v, int32_t slots) {
    return ei_ir_convert(em, cache_raw(em, s, l, is_v, slots), EI_GT_F32, NULL);
}

/* A call's new K (is_v 0) or V rows, converted to the cache's element type (with the cache's own
 * quantisation for i8), as the output the runner copies into the ring buffer. */
static ei_val *cache_output(ei_ir_emitter *em, const ei_lower_spec *s, ei_val *rows, int l, int is_v) {
    ei_qaparams p, *pp = NULL;
    if (s->kv_cache == EI_QKV_I8) {
        if (s->kv_params(s->kv_ctx, l, is_v, &p) != 0) return NULL;
        pp = &p;
    }
    return layer_output(em, ei_ir_convert(em, rows, kv_type(s->kv_cache), pp), is_v ? EI_FMT_V_NEW : EI_FMT_K_NEW, l);
}

/* Finishes a graph: the emitter's first failure, or the writer's validation. */
static int finish_graph(ei_ir_emitter *em, ei_graph *g, ei_eigw *w, int ok) {
    int rc = 0;
    if (em->failed) rc = ei_error_set("lowering graph '%s': %s", g->name, em->first_error);
    else if (!ok) rc = ei_error_prefix("lowering graph '%s': ", g->name);
    else if (ei_eigw_add_graph(w, g) != 0) rc = ei_error_prefix("lowering graph '%s': ", g->name);
    ei_graph_free(g);
    return rc;
}

/* One call of n tokens against a cache of `slots` slots (the attention graphs). memory: the
 * EdgeInfinite memory read and gate; max_pos bounds every RoPE position. */
static int build_step(ei_ir_emitter *em, const ei_lower_spec *s, ei_eigw *w, const char *name, int n, int slots,
                      int memory, int32_t max_pos) {
    const ei_model_config *c = &em->m->cfg;
    const int32_t Hkv = c->n_kv_heads, d = c->head_dim;
    ei_graph *g = ei_graph_new(name);
    if (!g) return -1;
    ei_ir_emitter_begin(em, g);
    ei_val *tokens = ei_ir_input(em, EI_IN_TOKENS, EI_GT_I32, 1, (const int32_t[]){n});
    ei_val *qpos = ei_ir_input(em, EI_IN_QPOS, EI_GT_I32, 1, (const int32_t[]){n});
    ei_val *kpos = ei_ir_input(em, EI_IN_KPOS, EI_GT_I32, 1, (const int32_t[]){slots});
    ei_val *kbias = ei_ir_input(em, EI_IN_KBIAS, EI_GT_F32, 2, (const int32_t[]){1, slots});
    ei_val *nbias = ei_ir_input(em, EI_IN_NBIAS, EI_GT_F32, 2, (const int32_t[]){n, n});
    ei_val *memflag = memory ? ei_ir_input(em, EI_IN_MEMFLAG, EI_GT_F32, 1, (const int32_t[]){1}) : NULL;
    ei_val *x = ei_recipe_embed(&em->base, tokens);
    int ok = x != NULL;
    for (int l = 0; ok && l < c->n_layers; l++) {
        ei_val *kc = cache_input(em, s, l, 0, slots), *vc = cache_input(em, s, l, 1, slots);
        ei_attn_qkv qkv;
        ok = ei_recipe_qkv(&em->base, l, x, n, &qkv) == 0;
        ei_attn_in a = {0};
        a.n_parts = 2;
        a.k[0] = kc, a.v[0] = vc, a.kpos[0] = kpos, a.valid[0] = kbias;
        a.k[1] = qkv.k, a.v[1] = qkv.v, a.kpos[1] = qpos, a.valid[1] = nbias;
        a.causal_offset = slots; /* the cache precedes every new token; nbias is the causal mask */
        a.qpos = qpos;
        a.max_pos = max_pos;
        if (memory) {
            a.M = layer_input(em, EI_FMT_M, l, 3, (const int32_t[]){Hkv, d, d});
            a.z = layer_input(em, EI_FMT_Z, l, 2, (const int32_t[]){Hkv, d});
            a.gate_scale = memflag;
        }
        if (ok) x = ei_recipe_block(&em->base, l, x, &qkv, &a);
        ok = ok && x && cache_output(em, s, qkv.k, l, 0) && cache_output(em, s, qkv.v, l, 1);
    }
    ok = ok && ei_ir_output(em, ei_recipe_logits(&em->base, x), EI_OUT_LOGITS);
    return finish_graph(em, g, w, ok);
}

/* The memory update by the L rows leaving the window, gathered from the cache by slot. */
static int build_compress(ei_ir_emitter *em, const ei_lower_spec *s, ei_eigw *w, const ei_opts *o, int slots) {
    const ei_model_config *c = &em->m->cfg;
    const int32_t Hkv = c->n_kv_heads, d = c->head_dim, L = o->segment;
    ei_graph *g = ei_graph_new(EI_GRAPH_COMPRESS);
    if (!g) return -1;
    ei_ir_emitter_begin(em, g);
    ei_val *rows = ei_ir_input(em, EI_IN_ROWS, EI_GT_I32, 1, (const int32_t[]){L});
    ei_val *mask = ei_ir_input(em, EI_IN_ROWMASK, EI_GT_F32, 3, (const int32_t[]){L, 1, 1});
    int ok = rows && mask;
    for (int l = 0; ok && l < c->n_layers; l++) {
        ei_val *kc = cache_raw(em, s, l, 0, slots), *vc = cache_raw(em, s, l, 1, slots);
        ei_val *M = layer_input(em, EI_FMT_M, l, 3, (const int32_t[]){Hkv, d, d});
        ei_val *z = layer_input(em, EI_FMT_Z, l, 2, (const int32_t[]){Hkv, d});
        /* only the L leaving rows are converted to float32 */
        ei_val *k = ei_ir_convert(em, ei_ir_gather(em, kc, rows, 0), EI_GT_F32, NULL);
        ei_val *v = ei_ir_convert(em, ei_ir_gather(em, vc, rows, 0), EI_GT_F32, NULL);
        ei_val *Mo, *zo;
        /* nonempty = 1: with M = z = 0 the delta rule's correction is exactly 0 anyway */
        ok = ei_recipe_mem_update(&em->base, o->memory_rule, 1, k, v, mask, M, z, &Mo, &zo) == 0 &&
             layer_output(em, Mo, EI_FMT_M_OUT, l) && layer_output(em, zo, EI_FMT_Z_OUT, l);
    }
    return finish_graph(em, g, w, ok);
}

static int set_int(ei_eigw *w, const char *key, long v) {
    char b[32];
    snprintf(b, sizeof b, "%ld", v);
    return ei_eigw_set_kv(w, "SCEN", key, b);
}

int ei_lower(const ei_lower_spec *s, ei_eigw *w) {
    const ei_model_config *cfg = &s->m->cfg;
    if (ei_opts_validate(&s->o, cfg) != 0) return -1;
    if (s->mode == EI_MODE_EDGEINFINITE && !s->gates) return ei_error_set("lowering: edgeinfinite mode needs gates");
    if (s->tokens_per_call < 1) return ei_error_set("lowering: tokens per call must be >= 1");
    ei_ir_emitter em;
    if (ei_ir_emitter_init(&em, w, s->m, s->mode == EI_MODE_EDGEINFINITE ? s->gates : NULL, s->o.gate) != 0) return -1;
    em.weight_scheme = s->weight_scheme;
    em.weight_scheme_ctx = s->weight_scheme_ctx;
    em.act_params = s->act_params;
    em.act_ctx = s->act_ctx;
    if (s->qopts) em.qopts = *s->qopts;
    const int N = s->tokens_per_call;
    int rc = 0, slots, base = ei_lower_base_slots(&s->o, cfg, s->mode);
    if (s->mode == EI_MODE_FULL) {
        slots = s->context > 0 ? s->context : cfg->max_seq_len;
        rc = build_step(&em, s, w, EI_GRAPH_PREFILL, N, slots, 0, slots);
        if (!rc) rc = build_step(&em, s, w, EI_GRAPH_DECODE, 1, slots, 0, slots);
    } else {
        if (N > s->o.segment)
            rc = ei_error_set("lowering: tokens_per_call %d exceeds the segment length %d (a call never spans "
                              "two segments)",
                              N, s->o.segment);
        slots = ei_lower_cache_slots(&s->o);
        const int mem = s->mode == EI_MODE_EDGEINFINITE;
        const int32_t maxp = ei_seg_max_pos(&s->o);
        if (!rc) rc = build_step(&em, s, w, EI_GRAPH_PREFILL, N, slots, mem, maxp);
        if (!rc) rc = build_step(&em, s, w, EI_GRAPH_DECODE, 1, slots, mem, maxp);
        if (!rc && mem) rc = build_compress(&em, s, w, &s->o, slots);
        if (!rc && base > 0) rc = build_step(&em, s, w, EI_GRAPH_BASE_PREFILL, N < base ? N : base, base, 0, base);
        if (!rc && base > 0) rc = build_step(&em, s, w, EI_GRAPH_BASE_DECODE, 1, base, 0, base);
    }
    if (s->act_count) *s->act_count = em.n_act_quantised;
    ei_ir_emitter_free(&em);
    if (rc) return -1;
    rc = ei_eigw_set_kv(w, "SCEN", EI_SCEN_MODE, ei_mode_name(s->mode)) || set_int(w, EI_SCEN_TOKENS_PER_CALL, N) ||
         set_int(w, EI_SCEN_CACHE_SLOTS, slots) || set_int(w, EI_SCEN_BASE_SLOTS, base);
    for (int i = 0; !rc && i < ei_opts_count(); i++) {
        char v[64];
        ei_opts_get_str(&s->o, i, v, sizeof v);
        rc = ei_eigw_set_kv(w, "OPTS", ei_opt_desc_at(i)->name, v);
    }
    return rc ? -1 : 0;
}
