#include "train/ag_emit.h"

#include "core/ei_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define E(em) ((ei_ag_emitter *)(void *)(em))
#define T(v) ei_ag(v)
#define V(t) ei_val_of(t)

static int slot(const ei_ag_emitter *e, ei_tclass c, int layer) {
    const int nl = e->m->cfg.n_layers;
    return (int)c * (nl + 1) + (ei_tclass_per_layer(c) ? layer : nl);
}

static int record(ei_ag_emitter *e, const char *msg) {
    ei_error_set("%s", msg);
    if (!e->failed) {
        e->failed = 1;
        snprintf(e->first_error, sizeof e->first_error, "%s", msg);
    }
    return -1;
}

static int fail_op(ei_emitter *em, const char *msg) { return record(E(em), msg); }

/* A gate parameter of layer l: (w or b) inside the gate block. */
static const float *gate_src(const ei_gates *g, ei_tclass c, int l, float **grad) {
    size_t off = c == EI_TC_MEMORY_GATE ? ei_gates_w_offset(g, l) : ei_gates_b_offset(g, l);
    *grad = g->grad + off;
    return g->data + off;
}

static ei_val *weight(ei_emitter *em, ei_tclass c, int l) {
    ei_ag_emitter *e = E(em);
    if (ei_tclass_per_layer(c) && (l < 0 || l >= e->m->cfg.n_layers)) return NULL;
    int s = slot(e, c, l);
    if (e->leaf[s]) return V(e->leaf[s]);
    int64_t shape[2];
    int nd = ei_tclass_shape(&e->m->cfg, em->gate, c, shape);
    const int is_gate = c == EI_TC_MEMORY_GATE || c == EI_TC_MEMORY_GATE_BIAS;
    if (!nd) {
        if (c == EI_TC_CLASSIFIER) return weight(em, EI_TC_EMBEDDING, -1); /* tied */
        return NULL;
    }
    const float *src = NULL;
    float *grad = NULL;
    if (is_gate) {
        if (!e->gates) {
            record(e, "edgeinfinite graph: the memory gate needs gate parameters");
            return NULL;
        }
        src = gate_src(e->gates, c, l, &grad);
    } else {
        src = ei_model_weight(e->m, c, l);
    }
    if (!src) return NULL;
    const int param = is_gate ? e->train : e->all_params;
    ag_tensor *t = param ? ag_param(e->g, nd, shape) : ag_const(e->g, nd, shape);
    if (!t) return NULL;
    int rc;
    if (e->dt == AG_F32 && !param) rc = ag_tensor_bind_const(t, src); /* frozen: no copy */
    else if (e->dt == AG_F32 && is_gate) rc = ag_tensor_bind(t, (void *)src, grad);
    else rc = ag_tensor_set_f32(t, src);
    if (rc != 0) return NULL;
    e->leaf[s] = t;
    return V(t);
}

static ei_val *embedding(ei_emitter *em, ei_val *table, ei_val *ids) {
    return V(ag_embedding(E(em)->g, T(table), T(ids)));
}
static ei_val *linear(ei_emitter *em, ei_val *x, ei_val *w, ei_val *b) {
    ei_ag_emitter *e = E(em);
    ag_tensor *y = ag_linear(e->g, T(x), T(w), T(b));
    const int n = EI_TC_COUNT * (e->m->cfg.n_layers + 1);
    for (int s = 0; y && s < n; s++)
        if (e->leaf[s] == T(w)) {
            e->lin_in[s] = T(x);
            e->lin_out[s] = y;
        }
    return V(y);
}
static ei_val *rmsnorm(ei_emitter *em, ei_val *x, ei_val *w, double eps) {
    return V(ag_rmsnorm(E(em)->g, T(x), T(w), eps));
}
static ei_val *rope(ei_emitter *em, ei_val *x, ei_val *pos, double theta, ei_rope_layout layout, int32_t max_pos) {
    /* ag_rope_ex's bound is inclusive; one table over [0, max_pos) serves every call of the graph */
    return V(ag_rope_ex(E(em)->g, T(x), T(pos), theta, layout == EI_ROPE_HALF ? AG_ROPE_HALF : AG_ROPE_INTERLEAVED,
                        max_pos > 0 ? max_pos - 1 : 0));
}

static ei_val *attention(ei_emitter *em, ei_val *q, int n_parts, ei_val *const *k, ei_val *const *v,
                         ei_val *const *valid, double scale, int64_t causal_offset) {
    ei_ag_emitter *e = E(em);
    if (n_parts < 1 || n_parts > 4) {
        record(e, "autograd emitter: 1 to 4 key parts");
        return NULL;
    }
    /* the parts are read in place (ag_attention_parts), each with its own mask */
    ag_tensor *ks[4], *vs[4], *ms[4];
    for (int i = 0; i < n_parts; i++) {
        ks[i] = T(k[i]);
        vs[i] = T(v[i]);
        ms[i] = T(valid[i]);
    }
    return V(ag_attention_parts(e->g, T(q), n_parts, ks, vs, ms, scale, causal_offset));
}

static ei_val *matmul(ei_emitter *em, ei_val *a, ei_val *b, int ta, int tb) {
    return V(ag_matmul(E(em)->g, T(a), T(b), ta, tb));
}

static ei_val *binary(ei_emitter *em, ei_binop op, ei_val *a, ei_val *b) {
    ag_graph *g = E(em)->g;
    switch (op) {
    case EI_BIN_ADD: return V(ag_add(g, T(a), T(b)));
    case EI_BIN_SUB: return V(ag_sub(g, T(a), T(b)));
    case EI_BIN_MUL: return V(ag_mul(g, T(a), T(b)));
    case EI_BIN_DIV: return V(ag_div(g, T(a), T(b)));
    }
    return NULL;
}

static ei_val *add_scalar(ei_emitter *em, ei_val *a, double c) { return V(ag_add_scalar(E(em)->g, T(a), c)); }

static ei_val *unary(ei_emitter *em, ei_unop op, ei_val *x) {
    return V(op == EI_UN_SIGMOID ? ag_sigmoid(E(em)->g, T(x)) : ag_elu1(E(em)->g, T(x)));
}

static ei_val *swiglu(ei_emitter *em, ei_val *g, ei_val *u) { return V(ag_swiglu(E(em)->g, T(g), T(u))); }
static ei_val *sum(ei_emitter *em, ei_val *x, int axis) { return V(ag_sum(E(em)->g, T(x), axis, 0)); }
static ei_val *reshape(ei_emitter *em, ei_val *x, int nd, const int64_t *s) {
    return V(ag_reshape(E(em)->g, T(x), nd, s));
}
static ei_val *transpose(ei_emitter *em, ei_val *x, int a0, int a1) {
    return V(ag_transpose(E(em)->g, T(x), a0, a1));
}

static int shape(ei_emitter *em, ei_val *x, int64_t *s) {
    (void)em;
    if (!x) return 0;
    const ag_tensor *t = T(x);
    for (int i = 0; i < t->ndim; i++) s[i] = t->shape[i];
    return t->ndim;
}

static const ei_emitter_ops ag_ops = {weight, embedding, linear, rmsnorm, rope,      attention, matmul, binary,
                                      add_scalar, unary, swiglu, sum, reshape, transpose, shape,     fail_op};

int ei_ag_emitter_init(ei_ag_emitter *e, ag_graph *g, const ei_model *m, const ei_gates *gates, ei_gate_kind kind,
                       int train, int all_params) {
    memset(e, 0, sizeof *e);
    e->base.ops = &ag_ops;
    e->base.cfg = &m->cfg;
    e->base.gate = kind;
    e->g = g;
    e->m = m;
    e->gates = gates;
    e->dt = ag_graph_dtype(g);
    e->train = train;
    e->all_params = all_params;
    const size_t n = (size_t)EI_TC_COUNT * ((size_t)m->cfg.n_layers + 1);
    e->leaf = calloc(n, sizeof *e->leaf);
    e->lin_in = calloc(n, sizeof *e->lin_in);
    e->lin_out = calloc(n, sizeof *e->lin_out);
    if (!e->leaf || !e->lin_in || !e->lin_out) {
        ei_ag_emitter_free(e);
        return ei_error_set("edgeinfinite graph: out of memory");
    }
    return 0;
}

void ei_ag_emitter_free(ei_ag_emitter *e) {
    free(e->leaf);
    free(e->lin_in);
    free(e->lin_out);
    e->leaf = NULL;
    e->lin_in = e->lin_out = NULL;
}

ag_tensor *ei_ag_emitter_linear_in(const ei_ag_emitter *e, ei_tclass c, int layer) {
    if (ei_tclass_per_layer(c) && (layer < 0 || layer >= e->m->cfg.n_layers)) return NULL;
    return e->lin_in[slot(e, c, layer)];
}

ag_tensor *ei_ag_emitter_linear_out(const ei_ag_emitter *e, ei_tclass c, int layer) {
    if (ei_tclass_per_layer(c) && (layer < 0 || layer >= e->m->cfg.n_layers)) return NULL;
    return e->lin_out[slot(e, c, layer)];
}

ag_tensor *ei_ag_emitter_leaf(const ei_ag_emitter *e, ei_tclass c, int layer) {
    if (ei_tclass_per_layer(c) && (layer < 0 || layer >= e->m->cfg.n_layers)) return NULL;
    return e->leaf[slot(e, c, layer)];
}

/* float32 graphs bind the gate block in place; float64 graphs hold copies that must follow it (the
 * gradient checks perturb the block between runs of cached graphs) */
static int gate_copy(const ei_ag_emitter *e) { return e->dt == AG_F64 && e->gates; }

int ei_ag_emitter_sync_gates(ei_ag_emitter *e) {
    if (!gate_copy(e)) return 0;
    for (int l = 0; l < e->m->cfg.n_layers; l++)
        for (ei_tclass c = EI_TC_MEMORY_GATE; c <= EI_TC_MEMORY_GATE_BIAS; c++) {
            ag_tensor *t = ei_ag_emitter_leaf(e, c, l);
            float *grad;
            if (t && ag_tensor_set_f32(t, gate_src(e->gates, c, l, &grad)) != 0) return -1;
        }
    return 0;
}

void ei_ag_emitter_zero_gate_grads(ei_ag_emitter *e) {
    if (!gate_copy(e) || !e->train) return;
    for (int l = 0; l < e->m->cfg.n_layers; l++)
        for (ei_tclass c = EI_TC_MEMORY_GATE; c <= EI_TC_MEMORY_GATE_BIAS; c++) {
            ag_tensor *t = ei_ag_emitter_leaf(e, c, l);
            if (t) ag_tensor_zero_grad(t);
        }
}

void ei_ag_emitter_take_grads(ei_ag_emitter *e, ei_gates *gates, double *acc) {
    if (!gate_copy(e) || !e->train) return;
    for (int l = 0; l < e->m->cfg.n_layers; l++)
        for (ei_tclass c = EI_TC_MEMORY_GATE; c <= EI_TC_MEMORY_GATE_BIAS; c++) {
            ag_tensor *t = ei_ag_emitter_leaf(e, c, l);
            if (!t) continue;
            size_t off = c == EI_TC_MEMORY_GATE ? ei_gates_w_offset(gates, l) : ei_gates_b_offset(gates, l);
            for (int64_t i = 0; i < t->numel; i++) {
                double v = ag_tensor_grad_at(t, i);
                gates->grad[off + (size_t)i] += (float)v;
                if (acc) acc[off + (size_t)i] += v;
            }
        }
}
