#include "train/selfcheck.h"

#include "autograd/gradcheck.h"
#include "core/ei_error.h"
#include "core/ei_rng.h"
#include "train/edge.h"
#include "train/seg_graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const ei_model_config tiny_cfg = {.dim = 8, .hidden_dim = 12, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                                         .head_dim = 2, .vocab_size = 11, .max_seq_len = 64, .rope_theta = 10000.f,
                                         .norm_eps = 1e-5f, .tie_embeddings = 0, .qkv_bias = 1,
                                         .rope_interleaved = 0, .bos_id = 1, .eos_id = 2};

static void tiny_opts(ei_opts *o, ei_gate_kind gate, ei_mem_rule rule) {
    ei_opts_default(o);
    o->segment = 3;
    o->sink = 1;
    o->window = 2;
    o->gate = gate;
    o->memory_rule = rule;
    o->route_threshold = 0;
}

static void random_gates(ei_gates *g, ei_rng *r) {
    for (size_t i = 0; i < g->n; i++) g->data[i] = (float)(ei_rng_uniform(r) - 0.5);
}

/* One segment graph, every weight and state input. */
static int check_segment(ag_selfcheck_row *row, uint64_t seed) {
    ei_model *m = ei_model_random(&tiny_cfg, seed);
    ei_opts o;
    tiny_opts(&o, EI_GATE_TOKEN, EI_MEM_DELTA);
    ei_gates *g = m ? ei_gates_new(&m->cfg, o.gate, 0.0) : NULL;
    ei_seg_graph *sg = NULL;
    ag_tensor **wrt = NULL;
    int rc = -1;
    if (!g) goto out;
    ei_rng r;
    ei_rng_seed(&r, seed ^ 0x5eed);
    random_gates(g, &r);
    /* a steady-state segment: memory non-empty, the commit compresses tokens */
    ei_seg_plan plan = ei_seg_plan_at(&o, EI_MODE_EDGEINFINITE, 6, 3);
    if (!(sg = ei_seg_graph_build(m, &o, g, plan, EI_MODE_EDGEINFINITE, AG_F64, EI_SEG_TRAIN, 1))) goto out;
    int32_t *ids = ag_tensor_data(sg->ids), *tg = ag_tensor_data(sg->targets);
    uint8_t *mk = ag_tensor_data(sg->mask);
    for (int t = 0; t < plan.n; t++) {
        ids[t] = (int32_t)ei_rng_below(&r, (uint64_t)tiny_cfg.vocab_size);
        tg[t] = (int32_t)ei_rng_below(&r, (uint64_t)tiny_cfg.vocab_size);
        mk[t] = 1;
    }
    if (ei_ag_emitter_sync_gates(&sg->em) != 0) goto out;
    const int nn = ag_graph_node_count(sg->g);
    wrt = malloc(sizeof *wrt * (size_t)nn);
    if (!wrt) goto out;
    int nw = 0;
    for (int i = 0; i < nn; i++) {
        ag_tensor *t = ag_graph_node(sg->g, i);
        if (t->kind == AG_LEAF_PARAM) wrt[nw++] = t;
    }
    for (int i = 0; i < sg->n_layers * EI_SC_COUNT; i++) {
        ag_tensor *t = sg->st_in[i];
        if (!t) continue;
        double *d = ag_tensor_data(t);
        const int z = i % EI_SC_COUNT == EI_SC_MEM_Z;
        for (int64_t j = 0; j < t->numel; j++) d[j] = z ? 1.0 + ei_rng_uniform(&r) : ei_rng_uniform(&r) - 0.5;
        wrt[nw++] = t;
    }
    ag_gradcheck_result res;
    if (ag_gradcheck(sg->g, sg->loss, nw, wrt, 1e-5, 0, &res) != 0) goto out;
    *row = (ag_selfcheck_row){"model segment (all weights, state)", res.max_rel_err, res.max_abs_grad, res.n_checked};
    rc = 0;
out:
    if (rc) ei_error_prefix("selfcheck model segment: ");
    free(wrt);
    ei_seg_graph_free(sg);
    ei_gates_free(g);
    ei_model_free(m);
    return rc;
}

/* A document of several segments: gate gradients through BPTT against finite differences. */
static int check_document(ag_selfcheck_row *row, ei_gate_kind gate, ei_mem_rule rule, uint64_t seed) {
    static char names[4][48];
    ei_model *m = ei_model_random(&tiny_cfg, seed);
    ei_opts o;
    tiny_opts(&o, gate, rule);
    ei_gates *g = m ? ei_gates_new(&m->cfg, o.gate, 0.0) : NULL;
    ei_edge *e = g ? ei_edge_new(m, &o, g, EI_MODE_EDGEINFINITE, AG_F64) : NULL;
    double *grad = g ? calloc(g->n, sizeof *grad) : NULL;
    int rc = -1;
    enum { N = 11 };
    if (!e || !grad) goto out;
    ei_rng r;
    ei_rng_seed(&r, seed ^ 0xd0c);
    random_gates(g, &r);
    int32_t ids[N], tg[N];
    for (int t = 0; t < N; t++) {
        ids[t] = (int32_t)ei_rng_below(&r, (uint64_t)tiny_cfg.vocab_size);
        tg[t] = (int32_t)ei_rng_below(&r, (uint64_t)tiny_cfg.vocab_size);
    }
    ei_doc_result res;
    ei_gates_zero_grad(g);
    if (ei_edge_doc_train(e, ids, tg, NULL, N, 1.0, &res, grad) != 0) goto out;
    double err = 0, gmax = 0;
    const double h = 1e-5;
    for (size_t i = 0; i < g->n; i++) {
        float keep = g->data[i];
        ei_doc_result a, b;
        g->data[i] = (float)(keep + h);
        double hp = (double)g->data[i] - keep;
        if (ei_edge_doc_eval(e, ids, tg, NULL, N, &a) != 0) goto out;
        g->data[i] = (float)(keep - h);
        double hm = keep - (double)g->data[i];
        if (ei_edge_doc_eval(e, ids, tg, NULL, N, &b) != 0) goto out;
        g->data[i] = keep;
        double fd = (a.loss - b.loss) / (hp + hm);
        err = fmax(err, fabs(fd - grad[i]));
        gmax = fmax(gmax, fabs(fd));
    }
    snprintf(names[gate * 2 + rule], sizeof names[0], "model document, %s gate, %s rule", ei_gate_kind_name(gate),
             ei_mem_rule_name(rule));
    *row = (ag_selfcheck_row){names[gate * 2 + rule], err / fmax(gmax, 1e-8), gmax, (int64_t)g->n};
    rc = 0;
out:
    if (rc) ei_error_prefix("selfcheck model document: ");
    free(grad);
    ei_edge_free(e);
    ei_gates_free(g);
    ei_model_free(m);
    return rc;
}

int ei_selfcheck_model(ag_selfcheck_row *rows, int max, uint64_t seed) {
    int n = 0;
    if (n < max && check_segment(&rows[n++], seed) != 0) return -1;
    for (int gk = 0; gk < 2; gk++)
        for (int rule = 0; rule < 2; rule++)
            if (n < max && check_document(&rows[n++], (ei_gate_kind)gk, (ei_mem_rule)rule, seed + 1) != 0) return -1;
    return n;
}
