#include "train/seg_graph.h"

#include "core/ei_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ag_graph *g;
    const ei_model_config *cfg;
    int64_t S, W, L, Hkv, d;
} builder;

static ag_tensor *slice0(builder *b, ag_tensor *t, int64_t start, int64_t len) {
    if (!t || len <= 0) return NULL;
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

static ag_tensor *state_leaf(builder *b, int train, int64_t rows, int64_t cols, int64_t inner) {
    if (rows == 0) return NULL;
    ag_tensor *t = ag_input(b->g, AG_SHAPE(rows, cols, inner));
    if (t && train && ag_tensor_set_requires_grad(t, 1) != 0) return NULL;
    return t;
}

/* Rows of a layer's window as runs of rows of the tensors they were cut from: a segment's keys and
 * values are rows of the chunk's K / V, so once the window holds only rows of this chunk it is one
 * run, and a view of K / V (a slice along the leading axis costs neither a copy nor memory) instead
 * of a concatenation of the old window and the segment's rows, with its copy forward and its split
 * backward. */
#define EI_WIN_RUNS 8
typedef struct {
    ag_tensor *src;
    int64_t r0, len;
} row_run;
typedef struct {
    int n;
    row_run r[EI_WIN_RUNS + 1];
} row_runs;

static void runs_append(row_runs *a, ag_tensor *src, int64_t r0, int64_t len) {
    if (len <= 0) return;
    row_run *last = a->n ? &a->r[a->n - 1] : NULL;
    if (last && last->src == src && last->r0 + last->len == r0) {
        last->len += len;
        return;
    }
    a->r[a->n++] = (row_run){src, r0, len};
}

/* Rows [start, start + len) of a. */
static row_runs runs_slice(const row_runs *a, int64_t start, int64_t len) {
    row_runs out = {0};
    int64_t at = 0;
    for (int i = 0; i < a->n && len > 0; i++) {
        const row_run *r = &a->r[i];
        if (start < at + r->len) {
            const int64_t off = start > at ? start - at : 0, take = r->len - off < len ? r->len - off : len;
            runs_append(&out, r->src, r->r0 + off, take);
            start += take;
            len -= take;
        }
        at += r->len;
    }
    return out;
}

/* The runs as one tensor: a view for one run, else their concatenation. The runs keep their
 * sources (so that the window becomes a view once its older rows have left it), unless there are
 * more than half of EI_WIN_RUNS: then they become the concatenation, so that appending never
 * overflows (short segments against a long window). */
static ag_tensor *runs_tensor(builder *b, row_runs *a) {
    if (a->n == 0) return NULL;
    if (a->n == 1) return slice0(b, a->r[0].src, a->r[0].r0, a->r[0].len);
    ag_tensor *pc[EI_WIN_RUNS + 1];
    int64_t rows = 0;
    for (int i = 0; i < a->n; i++) {
        if (!(pc[i] = slice0(b, a->r[i].src, a->r[i].r0, a->r[i].len))) return NULL;
        rows += a->r[i].len;
    }
    ag_tensor *t = ag_concat_n(b->g, a->n, pc, 0);
    if (t && a->n > EI_WIN_RUNS / 2) *a = (row_runs){1, {{t, 0, rows}}};
    return t;
}

/* The state of one layer after a segment's commit, from its L pre-RoPE keys/values: st holds the
 * layer's state before the segment and receives the state after it; win holds the rows of its
 * window (K, V) and follows. The segment's rows are rows seg_r0 .. of seg_src[kv]. */
static int build_update(builder *b, ei_seg_graph *sg, const ei_seg_plan *p, ag_tensor **st, row_runs *win,
                        ag_tensor *const *seg_src, int64_t seg_r0) {
    ag_tensor *in[EI_SC_COUNT];
    memcpy(in, st, sizeof in);
    ag_tensor *gone[2] = {NULL, NULL};
    for (int kv = 0; kv < 2; kv++) {
        ei_state_comp sc = kv ? EI_SC_SINK_V : EI_SC_SINK_K, wc = kv ? EI_SC_WIN_V : EI_SC_WIN_K;
        if (p->take > 0) {
            ag_tensor *pc[3] = {slice0(b, in[sc], 0, p->sf), slice0(b, seg_src[kv], seg_r0, p->take),
                                slice0(b, in[sc], p->sf + p->take, b->S - p->sf - p->take)};
            st[sc] = cat0(b, 3, pc);
        }
        if (p->r <= 0) continue; /* nothing joins the window, nothing leaves it */
        /* all = [window slots | joining tokens] */
        row_runs all = b->W > 0 ? win[kv] : (row_runs){0};
        runs_append(&all, seg_src[kv], seg_r0 + p->take, p->r);
        if (b->W > 0) {
            win[kv] = runs_slice(&all, p->r, b->W);
            if (!(st[wc] = runs_tensor(b, &win[kv]))) return -1;
        }
        if (p->c > 0 && sg->mode == EI_MODE_EDGEINFINITE) {
            row_runs g = runs_slice(&all, b->W - p->wf, p->c);
            if (!(gone[kv] = runs_tensor(b, &g))) return -1;
        }
    }
    if (!gone[0]) return 0;
    ei_val *mo = NULL, *zo = NULL;
    int rc = ei_recipe_mem_update(&sg->em.base, sg->o.memory_rule, p->mem, ei_val_of(gone[0]), ei_val_of(gone[1]),
                                  NULL, ei_val_of(in[EI_SC_MEM_M]), ei_val_of(in[EI_SC_MEM_Z]), &mo, &zo);
    st[EI_SC_MEM_M] = ei_ag(mo);
    st[EI_SC_MEM_Z] = ei_ag(zo);
    return rc;
}

/* Layer l over every segment of the graph: updates *xp (unless kv_only) and, through the commits,
 * the layer's state. The row-wise products (norms, Q/K/V, W_o, MLP) run once over all rows: the
 * recurrence of EdgeInfinite is per layer (a layer's cache and memory after segment j depend only
 * on the layer's own input rows up to j), so only attention and the cache / memory updates go
 * segment by segment. With 16 segments of 128 tokens the frozen projections become 2,048-row
 * GEMMs instead of 128-row ones. */
static int build_layer(builder *b, ei_seg_graph *sg, int l, ag_tensor **xp, int kv_only) {
    ag_graph *g = b->g;
    ag_tensor **in = sg->st_in + (size_t)l * EI_SC_COUNT, **out = sg->st_out + (size_t)l * EI_SC_COUNT;
    /* Layer 0's state is made of keys and values of the frozen embeddings only: no parameter
     * before it, so its gradient would reach nothing (unless every weight trains). Without it, layer
     * 0's attention backward, memory retrieval backward and cache updates drop out of the sweep. */
    const int st_grad = sg->train && (l > 0 || sg->em.all_params);
    in[EI_SC_SINK_K] = state_leaf(b, st_grad, b->S, b->Hkv, b->d);
    in[EI_SC_SINK_V] = state_leaf(b, st_grad, b->S, b->Hkv, b->d);
    in[EI_SC_WIN_K] = state_leaf(b, st_grad, b->W, b->Hkv, b->d);
    in[EI_SC_WIN_V] = state_leaf(b, st_grad, b->W, b->Hkv, b->d);
    if (sg->mode == EI_MODE_EDGEINFINITE) {
        in[EI_SC_MEM_M] = state_leaf(b, st_grad, b->Hkv, b->d, b->d);
        in[EI_SC_MEM_Z] = ag_input(g, AG_SHAPE(b->Hkv, b->d));
        if (in[EI_SC_MEM_Z] && st_grad && ag_tensor_set_requires_grad(in[EI_SC_MEM_Z], 1)) return -1;
    }
    ag_tensor *cur[EI_SC_COUNT];
    memcpy(cur, in, sizeof cur);
    row_runs win[2] = {{0}, {0}};
    for (int kv = 0; kv < 2; kv++)
        if (b->W > 0) runs_append(&win[kv], in[kv ? EI_SC_WIN_V : EI_SC_WIN_K], 0, b->W);
    ag_tensor **open = sg->open_in + (size_t)l * 2;
    if (sg->open_slots) {
        open[0] = ag_input(g, AG_SHAPE(b->L, b->Hkv, b->d));
        open[1] = ag_input(g, AG_SHAPE(b->L, b->Hkv, b->d));
    }

    ei_attn_qkv qkv;
    if (ei_recipe_qkv(&sg->em.base, l, ei_val_of(*xp), sg->n_rows, &qkv) != 0) return -1;
    ag_tensor *q = ei_ag(qkv.q), *k = ei_ag(qkv.k), *v = ei_ag(qkv.v), *xn = ei_ag(qkv.xn);
    sg->new_kv[(size_t)l * 2] = k;
    sg->new_kv[(size_t)l * 2 + 1] = v;
    for (int j = 0; j < sg->nseg; j++) {
        const ei_seg_plan *p = &sg->plans[j];
        const int64_t r0 = sg->row0[j];
        ag_tensor *kj = slice0(b, k, r0, p->n), *vj = slice0(b, v, r0, p->n);
        ag_tensor *oj[2] = {j == 0 ? open[0] : NULL, j == 0 ? open[1] : NULL};
        if (!kv_only) {
            ei_attn_qkv qj = {ei_val_of(slice0(b, xn, r0, p->n)), ei_val_of(slice0(b, q, r0, p->n)), ei_val_of(kj),
                              ei_val_of(vj)};
            /* the key parts as they are (sink, window, open rows, the segment), not concatenated:
             * the attention reads them in place, and their positions and masks are views of the
             * segment's position and mask rows */
            ag_tensor *kp[4] = {cur[EI_SC_SINK_K], cur[EI_SC_WIN_K], oj[0], kj};
            ag_tensor *vp[4] = {cur[EI_SC_SINK_V], cur[EI_SC_WIN_V], oj[1], vj};
            ei_attn_in a = {0};
            int64_t at = 0;
            for (int i = 0; i < 4; i++) {
                if (!kp[i]) continue;
                const int64_t len = kp[i]->shape[0];
                a.k[a.n_parts] = ei_val_of(kp[i]);
                a.v[a.n_parts] = ei_val_of(vp[i]);
                a.kpos[a.n_parts] = ei_val_of(slice0(b, sg->kpos[j], at, len));
                a.valid[a.n_parts] = sg->kvalid[j] ? ei_val_of(slice0(b, sg->kvalid[j], at, len)) : NULL;
                a.n_parts++;
                at += len;
            }
            a.causal_offset = b->S + b->W + (j == 0 ? sg->open_slots : 0);
            a.qpos = ei_val_of(sg->qpos[j]);
            a.max_pos = ei_seg_max_pos(&sg->o);
            if (p->mem) {
                a.M = ei_val_of(cur[EI_SC_MEM_M]);
                a.z = ei_val_of(cur[EI_SC_MEM_Z]);
            }
            if (!(sg->att[j] = ei_ag(ei_recipe_attend(&sg->em.base, l, &qj, &a)))) return -1;
        }
        if (!p->commit) continue;
        ag_tensor *src[2] = {k, v}; /* the segment's rows: rows src_r0 .. of src */
        int64_t src_r0 = r0;
        if (p->p > 0) { /* the segment's earlier rows come from the open buffer */
            ag_tensor *kk[2] = {slice0(b, oj[0], 0, p->p), kj}, *vv[2] = {slice0(b, oj[1], 0, p->p), vj};
            src[0] = cat0(b, 2, kk);
            src[1] = cat0(b, 2, vv);
            src_r0 = 0;
        }
        if (!src[0] || !src[1] || build_update(b, sg, p, cur, win, src, src_r0) != 0) return -1;
    }
    memcpy(out, cur, sizeof cur);
    if (kv_only) return 0;
    ag_tensor *att = sg->nseg == 1 ? sg->att[0] : ag_concat_n(g, sg->nseg, sg->att, 0);
    *xp = ei_ag(ei_recipe_block_out(&sg->em.base, l, ei_val_of(*xp), ei_val_of(att)));
    return *xp ? 0 : -1;
}

/* The loss of a training graph: ei_recipe_logits (final norm, classifier) and the cross-entropy,
 * with the classifier fused into the loss so that its GEMMs run over the counted rows only
 * (ag_linear_cross_entropy). Instruction data counts the answer tokens of a long context, and the
 * vocabulary GEMM is a quarter of the forward FLOPs of the 100M benchmark model (and the same
 * again in backward). This must stay the maths of ei_recipe_logits; the training tests compare
 * its loss with the evaluation graphs', which use the recipe itself. */
static ag_tensor *masked_loss(ei_seg_graph *sg, ag_tensor *x) {
    ei_emitter *em = &sg->em.base;
    ag_tensor *nw = ei_ag(em->ops->weight(em, EI_TC_FINAL_NORM, -1));
    ag_tensor *cls = ei_ag(em->ops->weight(em, EI_TC_CLASSIFIER, -1));
    if (!x || !nw || !cls) return NULL;
    ag_tensor *xn = ei_ag(em->ops->rmsnorm(em, ei_val_of(x), ei_val_of(nw), em->cfg->norm_eps));
    return xn ? ag_linear_cross_entropy(sg->g, xn, cls, sg->targets, sg->mask) : NULL;
}

static int fail_build(ei_seg_graph *sg, const char *why) {
    ei_error_set("edgeinfinite graph (call of %lld tokens at position %lld): %s", (long long)sg->n_rows,
                 (long long)sg->plans[0].pos, why);
    ei_seg_graph_free(sg);
    return -1;
}

ei_seg_graph *ei_seg_graph_build(const ei_model *m, const ei_opts *o, const ei_gates *gates, ei_seg_plan plan,
                                 ei_mode mode, ag_dtype dtype, int kind, int all_params) {
    return ei_seg_graph_build_chunk(m, o, gates, &plan, 1, mode, dtype, kind, all_params, NULL);
}

static int check_plans(const ei_opts *o, const ei_seg_plan *plans, int nseg, ei_mode mode) {
    if (nseg < 1 || nseg > EI_SEG_CHUNK_MAX)
        return ei_error_set("edgeinfinite graph: %d segments in one graph (1 to %d)", nseg, EI_SEG_CHUNK_MAX);
    for (int j = 0; j < nseg; j++) {
        const ei_seg_plan *p = &plans[j];
        if (p->n < 1 || p->p < 0 || p->p + p->n > o->segment)
            return ei_error_set("edgeinfinite graph: plan of %d tokens after %d does not fit a segment of %d", p->n,
                                p->p, o->segment);
        if (j > 0 && (p->p != 0 || !plans[j - 1].commit || p->pos != plans[j - 1].pos + plans[j - 1].n))
            return ei_error_set("edgeinfinite graph: segment %d of a graph does not start where segment %d ended", j,
                                j - 1);
        if (mode == EI_MODE_FULL && p->commit && p->c > 0)
            return ei_error_set("full attention: the document is longer than the context (%d tokens)",
                                o->window + o->segment);
    }
    return 0;
}

ei_seg_graph *ei_seg_graph_build_chunk(const ei_model *m, const ei_opts *o, const ei_gates *gates,
                                       const ei_seg_plan *plans, int nseg, ei_mode mode, ag_dtype dtype, int kind,
                                       int all_params, ag_grad_pool *pool) {
    const ei_model_config *cfg = &m->cfg;
    if (check_plans(o, plans, nseg, mode) != 0) return NULL;
    if (mode == EI_MODE_EDGEINFINITE && !gates) {
        ei_error_set("edgeinfinite graph: edgeinfinite mode needs gate parameters");
        return NULL;
    }
    ei_seg_graph *sg = calloc(1, sizeof *sg);
    size_t nst = (size_t)cfg->n_layers * EI_SC_COUNT;
    if (sg) {
        sg->st_in = calloc(nst, sizeof(ag_tensor *));
        sg->st_out = calloc(nst, sizeof(ag_tensor *));
        sg->open_in = calloc((size_t)cfg->n_layers * 2, sizeof(ag_tensor *));
        sg->new_kv = calloc((size_t)cfg->n_layers * 2, sizeof(ag_tensor *));
        sg->g = ag_graph_new(dtype, 0);
    }
    if (sg && sg->g && pool && ag_graph_share_grads(sg->g, pool) != 0) {
        ei_seg_graph_free(sg);
        return NULL;
    }
    if (!sg || !sg->st_in || !sg->st_out || !sg->open_in || !sg->new_kv || !sg->g) {
        ei_seg_graph_free(sg);
        ei_error_set("edgeinfinite graph: out of memory");
        return NULL;
    }
    sg->dtype = dtype;
    sg->o = *o;
    sg->nseg = nseg;
    memcpy(sg->plans, plans, (size_t)nseg * sizeof *plans);
    sg->mode = mode;
    sg->train = kind == EI_SEG_TRAIN && mode == EI_MODE_EDGEINFINITE;
    sg->kind = kind;
    sg->n_layers = cfg->n_layers;
    sg->gates = gates;
    sg->open_slots = plans[0].p > 0 ? o->segment : 0;
    if (ei_ag_emitter_init(&sg->em, sg->g, m, mode == EI_MODE_EDGEINFINITE ? gates : NULL, o->gate, sg->train,
                           all_params) != 0) {
        ei_seg_graph_free(sg);
        return NULL;
    }
    ag_graph *g = sg->g;
    builder b = {g, cfg, o->sink, o->window, o->segment, cfg->n_kv_heads, cfg->head_dim};
    for (int j = 0; j < nseg; j++) {
        sg->row0[j] = sg->n_rows;
        sg->n_rows += plans[j].n;
    }
    const int64_t n = sg->n_rows;
    sg->ids = ag_input_i32(g, AG_SHAPE(n));
    sg->targets = ag_input_i32(g, AG_SHAPE(n));
    sg->mask = ag_input_u8(g, AG_SHAPE(n));
    for (int j = 0; j < nseg; j++) {
        const int64_t nj = plans[j].n, T = b.S + b.W + (j == 0 ? sg->open_slots : 0) + nj;
        if (T > nj) sg->kvalid[j] = ag_input_u8(g, AG_SHAPE(T));
        sg->qpos[j] = ag_input_i32(g, AG_SHAPE(nj));
        sg->kpos[j] = ag_input_i32(g, AG_SHAPE(T));
    }
    ag_tensor *x = ei_ag(ei_recipe_embed(&sg->em.base, ei_val_of(sg->ids)));
    const int state_only = kind == EI_SEG_STATE;
    int rc = x ? 0 : -1;
    for (int l = 0; rc == 0 && l < cfg->n_layers; l++)
        rc = build_layer(&b, sg, l, &x, state_only && l == cfg->n_layers - 1);
    if (rc == 0 && sg->train) {
        sg->loss = masked_loss(sg, x);
        if (!sg->loss) rc = -1;
    } else if (rc == 0 && !state_only) {
        sg->logits = ei_ag(ei_recipe_logits(&sg->em.base, ei_val_of(x)));
        sg->loss = ag_cross_entropy(g, sg->logits, sg->targets, sg->mask);
        if (!sg->loss) rc = -1;
    }
    /* what a backward may seed: the loss and the changed state (the pooled gradients are planned
     * around them) */
    if (rc == 0 && sg->train) {
        rc = ag_graph_mark_output(g, sg->loss);
        for (size_t i = 0; rc == 0 && i < nst; i++)
            if (sg->st_out[i] && sg->st_out[i] != sg->st_in[i]) rc = ag_graph_mark_output(g, sg->st_out[i]);
    }
    if (sg->em.failed) return fail_build(sg, sg->em.first_error), NULL;
    if (rc != 0 || ag_graph_finalize(g) != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", ei_error_get());
        return fail_build(sg, why), NULL;
    }
    ei_seg_graph_set_plans(sg, plans);
    return sg;
}

void ei_seg_graph_free(ei_seg_graph *sg) {
    if (!sg) return;
    ei_ag_emitter_free(&sg->em);
    ag_graph_free(sg->g);
    free(sg->st_in);
    free(sg->st_out);
    free(sg->open_in);
    free(sg->new_kv);
    free(sg);
}

void ei_seg_graph_set_plans(ei_seg_graph *sg, const ei_seg_plan *plans) {
    for (int j = 0; j < sg->nseg; j++) {
        sg->plans[j] = plans[j];
        ei_seg_positions(&sg->o, &plans[j], j == 0 ? sg->open_slots : 0,
                         sg->kvalid[j] ? ag_tensor_data(sg->kvalid[j]) : NULL, ag_tensor_data(sg->kpos[j]),
                         ag_tensor_data(sg->qpos[j]));
    }
}

void ei_seg_graph_set_positions(ei_seg_graph *sg, const ei_seg_plan *plan) { ei_seg_graph_set_plans(sg, plan); }

int ei_seg_graph_bind_state(ei_seg_graph *sg, const ei_state *st, void *block, void *grad_block) {
    for (int l = 0; l < sg->n_layers; l++)
        for (int c = 0; c < EI_SC_COUNT; c++) {
            ag_tensor *t = sg->st_in[(size_t)l * EI_SC_COUNT + c];
            if (!t) continue;
            /* layer 0's state takes no gradient (build_layer): its share of grad_block stays as it is */
            void *gp = t->requires_grad && grad_block ? ei_state_ptr(st, grad_block, l, (ei_state_comp)c) : NULL;
            if (ag_tensor_bind(t, ei_state_ptr(st, block, l, (ei_state_comp)c), gp) != 0) return -1;
        }
    return 0;
}

int ei_seg_graph_read_state(ei_seg_graph *sg, const ei_state *st, void *block) {
    for (int l = 0; l < sg->n_layers; l++)
        for (int c = 0; c < EI_SC_COUNT; c++) {
            size_t i = (size_t)l * EI_SC_COUNT + c;
            ag_tensor *o = sg->st_out[i];
            if (!o || o == sg->st_in[i]) continue;
            if (ag_tensor_get(o, ei_state_ptr(st, block, l, (ei_state_comp)c), st->dtype) != 0) return -1;
        }
    return 0;
}
