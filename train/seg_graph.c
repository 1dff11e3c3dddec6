#include "train/seg_graph.h"

#include "core/ei_error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ag_graph *g;
    const ei_model *m;
    ag_dtype dt;
    int n, S, W, H, Hkv, d;
} builder;

/* A frozen weight: bound in place for float32 graphs (no arena memory, no copy), copied and
 * converted for float64 twins. */
static ag_tensor *weight(builder *b, const float *src, int ndim, const int64_t *shape) {
    if (!src) return NULL;
    ag_tensor *t = ag_const(b->g, ndim, shape);
    if (!t) return NULL;
    int rc = b->dt == AG_F32 ? ag_tensor_bind_const(t, src) : ag_tensor_set_f32(t, src);
    return rc == 0 ? t : NULL;
}

static ag_tensor *slice0(builder *b, ag_tensor *t, int64_t start, int64_t len) {
    if (!t) return NULL;
    if (start == 0 && len == t->shape[0]) return t;
    return ag_slice(b->g, t, 0, start, len);
}

/* Concatenation along axis 0 of the non-NULL pieces. */
static ag_tensor *cat0(builder *b, int n, ag_tensor **ts) {
    ag_tensor *list[4];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (ts[i]) list[k++] = ts[i];
    if (k == 1) return list[0];
    return k ? ag_concat_n(b->g, k, list, 0) : NULL;
}

ag_tensor *ei_graph_mem_retrieve(ag_graph *g, ag_tensor *q, ag_tensor *M, ag_tensor *z) {
    if (!q || !M || !z) return NULL;
    int64_t n = q->shape[0], H = q->shape[1], d = q->shape[2], Hkv = M->shape[0];
    if (q->ndim != 3 || M->ndim != 3 || Hkv < 1 || H % Hkv || M->shape[1] != d || M->shape[2] != d ||
        z->numel != Hkv * d) {
        ei_error_set("memory retrieval: shapes do not fit (q [n,H,d], M [Hkv,d,d], z [Hkv,d])");
        return NULL;
    }
    int64_t rep = H / Hkv;
    ag_tensor *sq = ag_elu1(g, q);
    sq = ag_reshape(g, sq, AG_SHAPE(n, Hkv, rep, d));
    sq = ag_transpose(g, sq, 0, 1); /* [Hkv, n, rep, d]: the query heads sharing M_g side by side */
    sq = ag_reshape(g, sq, AG_SHAPE(Hkv, n * rep, d));
    ag_tensor *num = ag_matmul(g, sq, M, 0, 0); /* [Hkv, n*rep, d] */
    ag_tensor *zc = ag_reshape(g, z, AG_SHAPE(Hkv, d, 1));
    ag_tensor *den = ag_add_scalar(g, ag_matmul(g, sq, zc, 0, 0), EI_MEM_EPS); /* [Hkv, n*rep, 1] */
    ag_tensor *a = ag_div(g, num, den);
    a = ag_reshape(g, a, AG_SHAPE(Hkv, n, rep, d));
    a = ag_transpose(g, a, 0, 1);
    return ag_reshape(g, a, AG_SHAPE(n, H, d));
}

int ei_graph_mem_update(ag_graph *g, ei_mem_rule rule, int mem_nonempty, ag_tensor *k, ag_tensor *v,
                        ag_tensor *M, ag_tensor *z, ag_tensor **M_out, ag_tensor **z_out) {
    *M_out = *z_out = NULL;
    if (!k || !v || !M || !z) return -1;
    int64_t Hkv = M->shape[0], d = M->shape[1];
    if (k->ndim != 3 || k->shape[1] != Hkv || k->shape[2] != d || v->ndim != 3 ||
        v->shape[0] != k->shape[0] || v->shape[1] != Hkv || v->shape[2] != d || z->numel != Hkv * d)
        return ei_error_set("memory update: shapes do not fit (k, v [c,Hkv,d], M [Hkv,d,d], z [Hkv,d])");
    ag_tensor *sk = ag_transpose(g, ag_elu1(g, k), 0, 1); /* [Hkv, c, d] */
    ag_tensor *vv = ag_transpose(g, v, 0, 1);
    if (rule == EI_MEM_DELTA && mem_nonempty) {
        ag_tensor *zc = ag_reshape(g, z, AG_SHAPE(Hkv, d, 1));
        ag_tensor *den = ag_add_scalar(g, ag_matmul(g, sk, zc, 0, 0), EI_MEM_EPS);
        vv = ag_sub(g, vv, ag_div(g, ag_matmul(g, sk, M, 0, 0), den));
    }
    *M_out = ag_add(g, M, ag_matmul(g, sk, vv, 1, 0));
    *z_out = ag_add(g, z, ag_reshape(g, ag_sum(g, sk, 1, 0), AG_SHAPE(Hkv, d)));
    return *M_out && *z_out ? 0 : -1;
}

static ag_tensor *gate_leaf(builder *b, int train, const float *src, float *grad, int ndim,
                            const int64_t *shape) {
    if (!train) return weight(b, src, ndim, shape);
    ag_tensor *t = ag_param(b->g, ndim, shape);
    if (!t) return NULL;
    int rc = b->dt == AG_F32 ? ag_tensor_bind(t, (void *)src, grad) : ag_tensor_set_f32(t, src);
    return rc == 0 ? t : NULL;
}

static ag_tensor *state_leaf(builder *b, int train, int64_t rows, int64_t cols, int64_t inner) {
    if (rows == 0) return NULL;
    ag_tensor *t = ag_input(b->g, AG_SHAPE(rows, cols, inner));
    if (t && train && ag_tensor_set_requires_grad(t, 1) != 0) return NULL;
    return t;
}

/* Attention (local + memory + gate), W_o, residual and MLP of layer l: updates *xp. */
static void build_tail(builder *b, ei_seg_graph *sg, const ei_opts *o, int l, ag_tensor **xp, ag_tensor *xn,
                       ag_tensor *k, ag_tensor *v, ag_tensor *qpos, ag_tensor *kpos) {
    ag_graph *g = b->g;
    const ei_model_config *cfg = &b->m->cfg;
    const ei_layer_weights *lw = &b->m->layers[l];
    const ei_seg_plan *p = &sg->plan;
    int64_t D = cfg->dim, H = b->H, d = b->d, F = cfg->hidden_dim, n = b->n;
    ag_tensor **in = sg->st_in + (size_t)l * EI_SC_COUNT;
    ag_tensor *q = ag_linear(g, xn, weight(b, lw->wq, AG_SHAPE(H * d, D)),
                             lw->bq ? weight(b, lw->bq, AG_SHAPE(H * d)) : NULL);
    q = ag_reshape(g, q, AG_SHAPE(n, H, d));

    /* local attention over [sink | window | segment]; caches hold pre-RoPE K */
    ag_rope_layout lay = cfg->rope_interleaved ? AG_ROPE_INTERLEAVED : AG_ROPE_HALF;
    ag_tensor *kp[3] = {in[EI_SC_SINK_K], in[EI_SC_WIN_K], k};
    ag_tensor *vp[3] = {in[EI_SC_SINK_V], in[EI_SC_WIN_V], v};
    const int32_t maxp = (int32_t)(b->S + b->W + n - 1); /* no position reaches S + W + n in either numbering */
    ag_tensor *kall = ag_rope_ex(g, cat0(b, 3, kp), kpos, cfg->rope_theta, lay, maxp);
    ag_tensor *vall = cat0(b, 3, vp);
    ag_tensor *qr = ag_rope_ex(g, q, qpos, cfg->rope_theta, lay, maxp);
    ag_tensor *a = ag_attention(g, qr, kall, vall, sg->kvalid, 1.0 / sqrt((double)d), b->S + b->W);

    if (p->mem) {
        ag_tensor *amem = ei_graph_mem_retrieve(g, q, in[EI_SC_MEM_M], in[EI_SC_MEM_Z]);
        ag_tensor *gate;
        if (o->gate == EI_GATE_TOKEN) {
            gate = ag_sigmoid(g, ag_linear(g, xn, sg->gate_w[l], sg->gate_b[l]));
            gate = ag_reshape(g, gate, AG_SHAPE(n, H, 1));
        } else {
            gate = ag_reshape(g, ag_sigmoid(g, sg->gate_b[l]), AG_SHAPE(H, 1));
        }
        /* g A_mem + (1 - g) A_loc, written so that g = 0 returns A_loc exactly */
        a = ag_add(g, a, ag_mul(g, ag_sub(g, amem, a), gate));
    }
    a = ag_reshape(g, a, AG_SHAPE(n, H * d));
    ag_tensor *x = ag_add(g, *xp, ag_linear(g, a, weight(b, lw->wo, AG_SHAPE(D, H * d)), NULL));
    ag_tensor *xn2 = ag_rmsnorm(g, x, weight(b, lw->ffn_norm, AG_SHAPE(D)), cfg->norm_eps);
    ag_tensor *hg = ag_linear(g, xn2, weight(b, lw->w_gate, AG_SHAPE(F, D)), NULL);
    ag_tensor *hu = ag_linear(g, xn2, weight(b, lw->w_up, AG_SHAPE(F, D)), NULL);
    x = ag_add(g, x, ag_linear(g, ag_swiglu(g, hg, hu), weight(b, lw->w_down, AG_SHAPE(D, F)), NULL));
    *xp = x;
}

/* Output state of layer l from the segment's pre-RoPE k, v. */
static void build_update(builder *b, ei_seg_graph *sg, const ei_opts *o, int l, ag_tensor *k, ag_tensor *v) {
    ag_graph *g = b->g;
    const ei_seg_plan *p = &sg->plan;
    ag_tensor **in = sg->st_in + (size_t)l * EI_SC_COUNT, **out = sg->st_out + (size_t)l * EI_SC_COUNT;

    /* cache update: the first S tokens of the document fill the sink; tokens pushed out of the
     * window (oldest first) are compressed into memory */
    ag_tensor *gone[2] = {NULL, NULL};
    for (int kv = 0; kv < 2; kv++) {
        ag_tensor *seg = kv ? v : k;
        ei_state_comp sc = kv ? EI_SC_SINK_V : EI_SC_SINK_K, wc = kv ? EI_SC_WIN_V : EI_SC_WIN_K;
        if (p->take > 0) {
            ag_tensor *pc[3] = {p->sf > 0 ? slice0(b, in[sc], 0, p->sf) : NULL, slice0(b, seg, 0, p->take),
                                p->sf + p->take < b->S
                                    ? slice0(b, in[sc], p->sf + p->take, b->S - p->sf - p->take)
                                    : NULL};
            out[sc] = cat0(b, 3, pc);
        }
        ag_tensor *rest = p->r > 0 ? slice0(b, seg, p->take, p->r) : NULL;
        ag_tensor *all = rest; /* [window slots | joining tokens] */
        if (b->W > 0 && rest) {
            ag_tensor *pc[2] = {in[wc], rest};
            all = cat0(b, 2, pc);
            out[wc] = slice0(b, all, p->r, b->W);
        }
        if (p->c > 0 && sg->mode == EI_MODE_EDGEINFINITE) gone[kv] = slice0(b, all, b->W - p->wf, p->c);
    }
    if (gone[0])
        ei_graph_mem_update(g, o->memory_rule, p->mem, gone[0], gone[1], in[EI_SC_MEM_M], in[EI_SC_MEM_Z],
                            &out[EI_SC_MEM_M], &out[EI_SC_MEM_Z]);
}

/* One layer: updates *xp and writes the layer's output state. tail = 0: only what the output state
 * needs (K, V projections and the cache update). */
static void build_layer(builder *b, ei_seg_graph *sg, const ei_opts *o, int l, ag_tensor **xp,
                        ag_tensor *qpos, ag_tensor *kpos, int tail) {
    ag_graph *g = b->g;
    const ei_model_config *cfg = &b->m->cfg;
    const ei_layer_weights *lw = &b->m->layers[l];
    int64_t D = cfg->dim, Hkv = b->Hkv, d = b->d, n = b->n;
    ag_tensor **in = sg->st_in + (size_t)l * EI_SC_COUNT, **out = sg->st_out + (size_t)l * EI_SC_COUNT;
    in[EI_SC_SINK_K] = state_leaf(b, sg->train, b->S, Hkv, d);
    in[EI_SC_SINK_V] = state_leaf(b, sg->train, b->S, Hkv, d);
    in[EI_SC_WIN_K] = state_leaf(b, sg->train, b->W, Hkv, d);
    in[EI_SC_WIN_V] = state_leaf(b, sg->train, b->W, Hkv, d);
    in[EI_SC_MEM_M] = state_leaf(b, sg->train, Hkv, d, d);
    in[EI_SC_MEM_Z] = ag_input(g, AG_SHAPE(Hkv, d));
    if (in[EI_SC_MEM_Z] && sg->train) ag_tensor_set_requires_grad(in[EI_SC_MEM_Z], 1);
    for (int c = 0; c < EI_SC_COUNT; c++) out[c] = in[c];

    ag_tensor *x = *xp;
    ag_tensor *xn = ag_rmsnorm(g, x, weight(b, lw->attn_norm, AG_SHAPE(D)), cfg->norm_eps);
    ag_tensor *k = ag_linear(g, xn, weight(b, lw->wk, AG_SHAPE(Hkv * d, D)),
                             lw->bk ? weight(b, lw->bk, AG_SHAPE(Hkv * d)) : NULL);
    ag_tensor *v = ag_linear(g, xn, weight(b, lw->wv, AG_SHAPE(Hkv * d, D)),
                             lw->bv ? weight(b, lw->bv, AG_SHAPE(Hkv * d)) : NULL);
    k = ag_reshape(g, k, AG_SHAPE(n, Hkv, d));
    v = ag_reshape(g, v, AG_SHAPE(n, Hkv, d));
    if (tail) build_tail(b, sg, o, l, xp, xn, k, v, qpos, kpos);
    build_update(b, sg, o, l, k, v);
}

ei_seg_graph *ei_seg_graph_build(const ei_model *m, const ei_opts *o, const ei_gates *gates,
                                 ei_seg_plan plan, ei_mode mode, ag_dtype dtype, int kind) {
    const ei_model_config *cfg = &m->cfg;
    if (mode == EI_MODE_FULL) {
        ei_error_set("edgeinfinite graph: full mode runs the base model, not a segment graph");
        return NULL;
    }
    if (plan.n < 1 || (gates && (gates->n_layers != cfg->n_layers || gates->kind != o->gate ||
                                 gates->n_heads != cfg->n_heads || gates->dim != cfg->dim))) {
        ei_error_set("edgeinfinite graph: gates or plan do not match the model");
        return NULL;
    }
    if (!gates && mode == EI_MODE_EDGEINFINITE) {
        ei_error_set("edgeinfinite graph: edgeinfinite mode needs gate parameters");
        return NULL;
    }
    ei_seg_graph *sg = calloc(1, sizeof *sg);
    size_t nst = (size_t)cfg->n_layers * EI_SC_COUNT;
    if (sg) {
        sg->st_in = calloc(nst, sizeof(ag_tensor *));
        sg->st_out = calloc(nst, sizeof(ag_tensor *));
        sg->gate_w = calloc((size_t)cfg->n_layers, sizeof(ag_tensor *));
        sg->gate_b = calloc((size_t)cfg->n_layers, sizeof(ag_tensor *));
        sg->g = ag_graph_new(dtype, 0);
    }
    if (!sg || !sg->st_in || !sg->st_out || !sg->gate_w || !sg->gate_b || !sg->g) {
        ei_seg_graph_free(sg);
        ei_error_set("edgeinfinite graph: out of memory");
        return NULL;
    }
    sg->dtype = dtype;
    sg->plan = plan;
    sg->mode = mode;
    sg->train = kind == EI_SEG_TRAIN && mode == EI_MODE_EDGEINFINITE;
    sg->kind = kind;
    sg->n_layers = cfg->n_layers;
    sg->gates = gates;
    builder b = {sg->g, m, dtype, plan.n, o->sink, o->window, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim};
    ag_graph *g = sg->g;
    int64_t n = plan.n, T = (int64_t)o->sink + o->window + n;

    sg->ids = ag_input_i32(g, AG_SHAPE(n));
    sg->targets = ag_input_i32(g, AG_SHAPE(n));
    sg->mask = ag_input_u8(g, AG_SHAPE(n));
    if (o->sink + o->window > 0) sg->kvalid = ag_input_u8(g, AG_SHAPE(T));
    ag_tensor *qpos = sg->qpos = ag_input_i32(g, AG_SHAPE(n));
    ag_tensor *kpos = sg->kpos = ag_input_i32(g, AG_SHAPE(T));
    sg->positions = o->positions;
    if (gates && mode == EI_MODE_EDGEINFINITE) {
        for (int l = 0; l < cfg->n_layers; l++) {
            int64_t H = cfg->n_heads, D = cfg->dim;
            if (o->gate == EI_GATE_TOKEN)
                sg->gate_w[l] = gate_leaf(&b, sg->train, gates->data + ei_gates_w_offset(gates, l),
                                          gates->grad + ei_gates_w_offset(gates, l), AG_SHAPE(H, D));
            sg->gate_b[l] = gate_leaf(&b, sg->train, gates->data + ei_gates_b_offset(gates, l),
                                      gates->grad + ei_gates_b_offset(gates, l), AG_SHAPE(H));
        }
    }
    ag_tensor *emb = weight(&b, m->tok_embeddings, AG_SHAPE(cfg->vocab_size, cfg->dim));
    ag_tensor *x = ag_embedding(g, emb, sg->ids);
    const int state_only = kind == EI_SEG_STATE;
    for (int l = 0; l < cfg->n_layers; l++)
        build_layer(&b, sg, o, l, &x, qpos, kpos, !(state_only && l == cfg->n_layers - 1));
    if (!state_only) {
        x = ag_rmsnorm(g, x, weight(&b, m->final_norm, AG_SHAPE(cfg->dim)), cfg->norm_eps);
        ag_tensor *cls = m->classifier == m->tok_embeddings
                             ? emb
                             : weight(&b, m->classifier, AG_SHAPE(cfg->vocab_size, cfg->dim));
        sg->logits = ag_linear(g, x, cls, NULL);
        sg->loss = ag_cross_entropy(g, sg->logits, sg->targets, sg->mask);
    }
    if ((!state_only && !sg->loss) || ag_graph_finalize(g) != 0) {
        ei_error_prefix("edgeinfinite graph (segment of %d tokens): ", plan.n);
        ei_seg_graph_free(sg);
        return NULL;
    }
    return sg;
}

void ei_seg_graph_free(ei_seg_graph *sg) {
    if (!sg) return;
    ag_graph_free(sg->g);
    free(sg->st_in);
    free(sg->st_out);
    free(sg->gate_w);
    free(sg->gate_b);
    free(sg);
}

void ei_seg_graph_set_valid(ei_seg_graph *sg, int sink, int window) {
    const ei_seg_plan *p = &sg->plan;
    const int64_t T = (int64_t)sink + window + p->n;
    uint8_t *v = sg->kvalid ? ag_tensor_data(sg->kvalid) : NULL;
    int32_t *kp = ag_tensor_data(sg->kpos), *qp = ag_tensor_data(sg->qpos);
    /* design: slot index is the position; compact: occupied slots numbered contiguously (unfilled
     * slots are masked, their positions only have to stay in range) */
    const int compact = sg->positions == EI_POS_COMPACT;
    for (int64_t i = 0; i < T; i++) {
        int ok;
        int64_t pos = i;
        if (i < sink) {
            ok = i < p->sf;
        } else if (i < sink + window) {
            ok = i - sink >= window - p->wf;
            if (compact) pos = ok ? p->sf + (i - sink - (window - p->wf)) : p->sf;
        } else {
            ok = 1;
            if (compact) pos = p->sf + p->wf + (i - sink - window);
        }
        if (v) v[i] = (uint8_t)ok;
        kp[i] = (int32_t)pos;
    }
    for (int64_t t = 0; t < p->n; t++) qp[t] = (int32_t)(compact ? p->sf + p->wf + t : sink + window + t);
}

int ei_seg_graph_bind_state(ei_seg_graph *sg, const ei_state *st, void *block, void *grad_block) {
    for (int l = 0; l < sg->n_layers; l++)
        for (int c = 0; c < EI_SC_COUNT; c++) {
            ag_tensor *t = sg->st_in[(size_t)l * EI_SC_COUNT + c];
            if (!t) continue;
            void *gp = sg->train && grad_block ? ei_state_ptr(st, grad_block, l, c) : NULL;
            if (ag_tensor_bind(t, ei_state_ptr(st, block, l, c), gp) != 0) return -1;
        }
    return 0;
}

int ei_seg_graph_read_state(ei_seg_graph *sg, const ei_state *st, void *block) {
    for (int l = 0; l < sg->n_layers; l++)
        for (int c = 0; c < EI_SC_COUNT; c++) {
            size_t i = (size_t)l * EI_SC_COUNT + c;
            ag_tensor *o = sg->st_out[i];
            if (!o || o == sg->st_in[i]) continue;
            if (ag_tensor_get(o, ei_state_ptr(st, block, l, c), st->dtype) != 0) return -1;
        }
    return 0;
}

int ei_seg_graph_sync_gates(ei_seg_graph *sg) {
    if (sg->dtype == AG_F32 || !sg->gates) return 0;
    for (int l = 0; l < sg->n_layers; l++) {
        if (sg->gate_w[l] && ag_tensor_set_f32(sg->gate_w[l], sg->gates->data + ei_gates_w_offset(sg->gates, l)))
            return -1;
        if (sg->gate_b[l] && ag_tensor_set_f32(sg->gate_b[l], sg->gates->data + ei_gates_b_offset(sg->gates, l)))
            return -1;
    }
    return 0;
}

void ei_seg_graph_zero_gate_grads(ei_seg_graph *sg) {
    if (sg->dtype == AG_F32 || !sg->train) return;
    for (int l = 0; l < sg->n_layers; l++) {
        if (sg->gate_w[l]) ag_tensor_zero_grad(sg->gate_w[l]);
        if (sg->gate_b[l]) ag_tensor_zero_grad(sg->gate_b[l]);
    }
}

static void add_grad(const ag_tensor *t, float *dst, double *acc) {
    for (int64_t i = 0; i < t->numel; i++) {
        double v = ag_tensor_grad_at(t, i);
        dst[i] += (float)v;
        if (acc) acc[i] += v;
    }
}

void ei_seg_graph_take_grads(ei_seg_graph *sg, ei_gates *gates, double *acc) {
    if (sg->dtype == AG_F32 || !sg->train) return;
    for (int l = 0; l < sg->n_layers; l++) {
        size_t wo = ei_gates_w_offset(gates, l), bo = ei_gates_b_offset(gates, l);
        if (sg->gate_w[l]) add_grad(sg->gate_w[l], gates->grad + wo, acc ? acc + wo : NULL);
        if (sg->gate_b[l]) add_grad(sg->gate_b[l], gates->grad + bo, acc ? acc + bo : NULL);
    }
}
