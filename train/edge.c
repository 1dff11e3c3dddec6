#include "train/edge.h"

#include "core/ei_error.h"
#include "train/seg_graph.h"
#include "train/infer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Graphs are cached per plan and kind (EI_SEG_*). A document touches a handful of plans (filling
 * segments, the steady state, a short last segment); decoding while the window fills reuses one
 * plan because unfilled slots are masked, so a small cache suffices. Forward-only and state-only
 * graphs are cached freely (they are about a third of a training graph's size); training graphs
 * one at a time. */
#define EI_GRAPH_CACHE 12

typedef struct {
    ei_seg_plan key;
    int kind;
    ei_seg_graph *sg;
    uint64_t last_use;
} cache_entry;

struct ei_edge {
    const ei_model *m;
    ei_opts o;
    ei_gates *gates;
    ei_mode mode;
    ag_dtype dtype;
    ei_state *state;  /* streaming / current state; NULL in full mode */
    ei_infer *inf;    /* base model (full mode and routing), created on first use */
    cache_entry cache[EI_GRAPH_CACHE];
    uint64_t tick;
    float *logit_buf; /* chunk logits for routed scoring */
    /* BPTT buffers, kept across documents so a training loop does not fault in fresh pages for
     * every document: saved input states, state gradients in / out, per-segment losses */
    char *saved;
    size_t saved_cap;
    void *gin, *gout;
    double *seg_nll;
    int64_t seg_cap;
    ei_edge_progress_fn progress;
    void *progress_ctx;
};

void ei_edge_set_progress(ei_edge *e, ei_edge_progress_fn fn, void *ctx) {
    e->progress = fn;
    e->progress_ctx = ctx;
}

ei_edge *ei_edge_new(const ei_model *m, const ei_opts *o, ei_gates *gates, ei_mode mode, ag_dtype dtype) {
    if (ei_opts_validate(o, &m->cfg) != 0) return NULL;
    if (mode == EI_MODE_EDGEINFINITE && !gates) {
        ei_error_set("edgeinfinite: gate parameters required in edgeinfinite mode");
        return NULL;
    }
    if (gates && (gates->kind != o->gate || gates->n_layers != m->cfg.n_layers ||
                  gates->n_heads != m->cfg.n_heads || gates->dim != m->cfg.dim)) {
        ei_error_set("edgeinfinite: gate parameters do not match the model / gate kind");
        return NULL;
    }
    ei_edge *e = calloc(1, sizeof *e);
    if (!e) {
        ei_error_set("edgeinfinite: out of memory");
        return NULL;
    }
    e->m = m;
    e->o = *o;
    e->gates = gates;
    e->mode = mode;
    e->dtype = dtype;
    if (mode != EI_MODE_FULL && !(e->state = ei_state_new(&m->cfg, o, dtype))) {
        free(e);
        return NULL;
    }
    return e;
}

void ei_edge_free(ei_edge *e) {
    if (!e) return;
    for (int i = 0; i < EI_GRAPH_CACHE; i++) ei_seg_graph_free(e->cache[i].sg);
    ei_state_free(e->state);
    ei_infer_free(e->inf);
    free(e->logit_buf);
    free(e->saved);
    free(e->gin);
    free(e->gout);
    free(e->seg_nll);
    free(e);
}

const ei_opts *ei_edge_opts(const ei_edge *e) { return &e->o; }
ei_mode ei_edge_mode(const ei_edge *e) { return e->mode; }
const ei_state *ei_edge_state(const ei_edge *e) { return e->state; }

int ei_edge_routes(const ei_edge *e, int64_t total_len) {
    return e->mode == EI_MODE_FULL || total_len <= ei_opts_route_threshold(&e->o, &e->m->cfg);
}

size_t ei_edge_saved_state_bytes(const ei_edge *e) { return e->state ? ei_state_bytes(e->state) : 0; }

static int same_key(const ei_seg_plan *a, const ei_seg_plan *b) {
    /* wf only shapes the graph when tokens are compressed; otherwise it lives in the kvalid mask */
    return a->n == b->n && a->sf == b->sf && a->take == b->take && a->c == b->c && a->mem == b->mem &&
           (a->c == 0 || a->wf == b->wf);
}

static ei_seg_graph *graph_for(ei_edge *e, ei_seg_plan plan, int kind) {
    int lru = 0;
    for (int i = 0; i < EI_GRAPH_CACHE; i++) {
        cache_entry *c = &e->cache[i];
        if (c->sg && c->kind == kind && same_key(&c->key, &plan)) {
            c->last_use = ++e->tick;
            c->sg->plan = plan; /* wf may differ (mask only) */
            return c->sg;
        }
        if (!c->sg || (e->cache[lru].sg && c->last_use < e->cache[lru].last_use)) lru = i;
    }
    if (kind == EI_SEG_TRAIN) {
        /* at most one training graph alive: the activations and gradients of one segment are the
         * whole activation memory of a document's forward + backward. Plans change only near the
         * start and the end of a document, so this costs a few rebuilds per document. */
        for (int i = 0; i < EI_GRAPH_CACHE; i++)
            if (e->cache[i].sg && e->cache[i].kind == EI_SEG_TRAIN) {
                ei_seg_graph_free(e->cache[i].sg);
                e->cache[i] = (cache_entry){0};
                lru = i;
            }
    }
    ei_seg_graph *sg = ei_seg_graph_build(e->m, &e->o, e->gates, plan, e->mode, e->dtype, kind);
    if (!sg) return NULL;
    ei_seg_graph_free(e->cache[lru].sg);
    e->cache[lru] = (cache_entry){plan, kind, sg, ++e->tick};
    return sg;
}

/* Fills the per-segment inputs; NULL targets mean "no target" (-1). */
static void set_inputs(ei_seg_graph *sg, const int32_t *ids, const int32_t *targets, const uint8_t *mask,
                       int n) {
    memcpy(ag_tensor_data(sg->ids), ids, (size_t)n * sizeof(int32_t));
    int32_t *t = ag_tensor_data(sg->targets);
    uint8_t *mk = ag_tensor_data(sg->mask);
    for (int i = 0; i < n; i++) {
        t[i] = targets ? targets[i] : -1;
        mk[i] = (uint8_t)(targets && targets[i] >= 0 && (!mask || mask[i]));
        if (!mk[i]) t[i] = -1;
    }
}

static int64_t count_targets(const int32_t *targets, const uint8_t *mask, int64_t n) {
    int64_t c = 0;
    for (int64_t i = 0; targets && i < n; i++) c += targets[i] >= 0 && (!mask || mask[i]);
    return c;
}

static int ensure_infer(ei_edge *e) {
    if (!e->inf && !(e->inf = ei_infer_new(e->m, 0))) return -1;
    if (!e->logit_buf && !(e->logit_buf = malloc((size_t)64 * e->m->cfg.vocab_size * sizeof(float))))
        return ei_error_set("edgeinfinite: out of memory");
    return 0;
}

/* Log-softmax NLL of one row, in double. */
static double row_nll(const float *logits, int V, int target) {
    double mx = logits[0];
    for (int j = 1; j < V; j++) mx = logits[j] > mx ? logits[j] : mx;
    double s = 0;
    for (int j = 0; j < V; j++) s += exp((double)logits[j] - mx);
    return mx + log(s) - logits[target];
}

/* Base model over n more tokens (full mode or a routed document), in chunks of 64 tokens. */
static int base_feed(ei_edge *e, const int32_t *ids, int64_t n, const int32_t *targets, const uint8_t *mask,
                     double *nll, int64_t *count, float *logits_last) {
    if (ensure_infer(e) != 0) return -1;
    int V = e->m->cfg.vocab_size;
    for (int64_t s = 0; s < n; s += 64) {
        int k = (int)(n - s < 64 ? n - s : 64);
        int need = targets != NULL || (logits_last && s + k == n);
        if (ei_infer_forward(e->inf, ids + s, k, e->logit_buf, need ? EI_INFER_ALL : EI_INFER_NONE) != 0)
            return -1;
        for (int i = 0; targets && i < k; i++) {
            int32_t t = targets[s + i];
            if (t < 0 || (mask && !mask[s + i])) continue;
            if (t >= V) return ei_error_set("edgeinfinite: target id %d outside the vocabulary", t);
            if (nll) *nll += row_nll(e->logit_buf + (size_t)i * V, V, t);
            if (count) (*count)++;
        }
        if (logits_last && s + k == n)
            memcpy(logits_last, e->logit_buf + (size_t)(k - 1) * V, (size_t)V * sizeof(float));
    }
    return 0;
}

/* Runs the forward of one segment on the current state (state->data), leaving the new state there.
 * kind EI_SEG_STATE computes the state only (nll, count and logits_last must then be NULL). */
static int segment_step(ei_edge *e, const int32_t *ids, int n, const int32_t *targets, const uint8_t *mask,
                        int kind, double *nll, int64_t *count, float *logits_last) {
    ei_state *st = e->state;
    ei_seg_plan plan = ei_seg_plan_make(e->o.sink, e->o.window, st->n_seen, n, e->mode);
    ei_seg_graph *sg = graph_for(e, plan, kind);
    if (!sg) return -1;
    set_inputs(sg, ids, targets, mask, n);
    ei_seg_graph_set_valid(sg, e->o.sink, e->o.window);
    if (ei_seg_graph_bind_state(sg, st, st->data, NULL) != 0 || ei_seg_graph_sync_gates(sg) != 0 ||
        ag_graph_forward(sg->g) != 0 || ei_seg_graph_read_state(sg, st, st->data) != 0)
        return -1;
    st->n_seen += n;
    if (!sg->loss) return 0;
    if (nll) *nll += ag_tensor_at(sg->loss, 0);
    if (count) *count += (int64_t)(ag_cross_entropy_count(sg->loss) + 0.5);
    if (logits_last) {
        int V = e->m->cfg.vocab_size;
        for (int j = 0; j < V; j++) logits_last[j] = (float)ag_tensor_at(sg->logits, (int64_t)(n - 1) * V + j);
    }
    return 0;
}

void ei_edge_reset(ei_edge *e) {
    if (e->state) ei_state_reset(e->state);
    if (e->inf) ei_infer_reset(e->inf);
}

int ei_edge_feed(ei_edge *e, const int32_t *ids, int64_t n, const int32_t *targets, double *nll_sum,
                 int64_t *count, float *logits_last) {
    if (n < 1) return ei_error_set("edgeinfinite: nothing to feed");
    if (e->mode == EI_MODE_FULL) return base_feed(e, ids, n, targets, NULL, nll_sum, count, logits_last);
    int L = e->o.segment;
    for (int64_t s = 0; s < n; s += L) {
        int k = (int)(n - s < L ? n - s : L);
        if (segment_step(e, ids + s, k, targets ? targets + s : NULL, NULL, EI_SEG_FORWARD, nll_sum, count,
                         s + k == n ? logits_last : NULL) != 0)
            return -1;
    }
    return 0;
}

static void finish(ei_doc_result *res, double nll, int64_t count, int routed, int nseg) {
    res->nll_sum = nll;
    res->count = count;
    res->loss = count ? nll / (double)count : 0.0;
    res->routed = routed;
    res->n_segments = nseg;
}

int ei_edge_doc_eval(ei_edge *e, const int32_t *ids, const int32_t *targets, const uint8_t *mask,
                     int64_t n, ei_doc_result *res) {
    double nll = 0;
    int64_t count = 0;
    ei_edge_reset(e);
    if (ei_edge_routes(e, n)) {
        if (base_feed(e, ids, n, targets, mask, &nll, &count, NULL) != 0) return -1;
        if (e->inf) ei_infer_reset(e->inf);
        finish(res, nll, count, 1, 0);
        return 0;
    }
    int L = e->o.segment, nseg = 0;
    for (int64_t s = 0; s < n; s += L, nseg++) {
        int k = (int)(n - s < L ? n - s : L);
        if (segment_step(e, ids + s, k, targets ? targets + s : NULL, mask ? mask + s : NULL, EI_SEG_FORWARD, &nll,
                         &count, NULL) != 0)
            return -1;
        if (e->progress) e->progress(e->progress_ctx, s + k, n);
    }
    finish(res, nll, count, 0, nseg);
    return 0;
}

static void add_block(ag_dtype dt, void *dst, const void *src, size_t n) {
    if (dt == AG_F64)
        for (size_t i = 0; i < n; i++) ((double *)dst)[i] += ((const double *)src)[i];
    else
        for (size_t i = 0; i < n; i++) ((float *)dst)[i] += ((const float *)src)[i];
}

/* Backward of segment s from its saved input state: gin receives d/d(input state); gout holds
 * d/d(output state) from the later segment. *nll receives the segment's summed NLL (from the
 * recomputed forward). */
static int segment_backward(ei_edge *e, const int32_t *ids, int n, const int32_t *targets, const uint8_t *mask,
                            void *saved, int64_t n_seen, void *gin, void *gout, double seed, double *grad64,
                            double *nll) {
    ei_state *st = e->state;
    ei_seg_plan plan = ei_seg_plan_make(e->o.sink, e->o.window, n_seen, n, e->mode);
    ei_seg_graph *sg = graph_for(e, plan, EI_SEG_TRAIN);
    if (!sg) return -1;
    set_inputs(sg, ids, targets, mask, n);
    ei_seg_graph_set_valid(sg, e->o.sink, e->o.window);
    memset(gin, 0, ei_state_bytes(st));
    if (ei_seg_graph_bind_state(sg, st, saved, gin) != 0 || ei_seg_graph_sync_gates(sg) != 0 ||
        ag_graph_forward(sg->g) != 0)
        return -1;
    *nll = ag_tensor_at(sg->loss, 0);
    int nst = sg->n_layers * EI_SC_COUNT, k = 0;
    ag_tensor **outs = malloc(((size_t)nst + 1) * sizeof *outs);
    const void **seeds = malloc(((size_t)nst + 1) * sizeof *seeds);
    double seed64 = seed;
    float seed32 = (float)seed;
    if (!outs || !seeds) {
        free(outs);
        free(seeds);
        return ei_error_set("edgeinfinite: out of memory");
    }
    outs[k] = sg->loss;
    seeds[k++] = e->dtype == AG_F64 ? (const void *)&seed64 : (const void *)&seed32;
    for (int l = 0; l < sg->n_layers; l++)
        for (int c = 0; c < EI_SC_COUNT; c++) {
            int i = l * EI_SC_COUNT + c;
            if (!sg->st_out[i] || sg->st_out[i] == sg->st_in[i]) continue;
            outs[k] = sg->st_out[i];
            seeds[k++] = ei_state_ptr(st, gout, l, (ei_state_comp)c);
        }
    ei_seg_graph_zero_gate_grads(sg);
    int rc = ag_graph_backward(sg->g, k, outs, seeds);
    free(outs);
    free(seeds);
    if (rc != 0) return -1;
    /* components passing through unchanged carry their later gradient straight across */
    for (int l = 0; l < sg->n_layers; l++)
        for (int c = 0; c < EI_SC_COUNT; c++) {
            int i = l * EI_SC_COUNT + c;
            if (sg->st_in[i] && sg->st_out[i] == sg->st_in[i])
                add_block(st->dtype, ei_state_ptr(st, gin, l, (ei_state_comp)c),
                          ei_state_ptr(st, gout, l, (ei_state_comp)c), st->comp_len[c]);
        }
    ei_seg_graph_take_grads(sg, e->gates, grad64);
    return 0;
}

/* Grows the BPTT buffers for nseg segments. */
static int bptt_buffers(ei_edge *e, int64_t nseg) {
    size_t sb = ei_state_bytes(e->state);
    if ((size_t)nseg * sb > e->saved_cap) {
        char *p = realloc(e->saved, (size_t)nseg * sb);
        if (!p) return ei_error_set("edgeinfinite: out of memory saving %lld states of %zu bytes", (long long)nseg, sb);
        e->saved = p;
        e->saved_cap = (size_t)nseg * sb;
    }
    if (nseg > e->seg_cap) {
        double *p = realloc(e->seg_nll, (size_t)nseg * sizeof *p);
        if (!p) return ei_error_set("edgeinfinite: out of memory");
        e->seg_nll = p;
        e->seg_cap = nseg;
    }
    if (!e->gin) e->gin = malloc(sb);
    if (!e->gout) e->gout = malloc(sb);
    if (!e->gin || !e->gout) return ei_error_set("edgeinfinite: out of memory");
    return 0;
}

int ei_edge_doc_train(ei_edge *e, const int32_t *ids, const int32_t *targets, const uint8_t *mask,
                      int64_t n, double weight, ei_doc_result *res, double *grad64) {
    if (e->mode != EI_MODE_EDGEINFINITE)
        return ei_error_set("edgeinfinite: training needs edgeinfinite mode");
    if (n < 1 || !targets) return ei_error_set("edgeinfinite: empty document or no targets");
    int64_t count = count_targets(targets, mask, n);
    if (ei_edge_routes(e, n)) return ei_edge_doc_eval(e, ids, targets, mask, n, res);
    ei_state *st = e->state;
    int L = e->o.segment;
    int64_t nseg = (n + L - 1) / L;
    size_t sb = ei_state_bytes(st);
    if (bptt_buffers(e, nseg) != 0) return -1;
    char *saved = e->saved;
    void *gin = e->gin, *gout = e->gout;
    memset(gout, 0, sb);
    int rc = 0;
    /* forward sweep: states only; the backward sweep recomputes each segment with its loss */
    ei_state_reset(st);
    for (int64_t s = 0; rc == 0 && s < nseg; s++) {
        int k = (int)(n - s * L < L ? n - s * L : L);
        memcpy(saved + (size_t)s * sb, st->data, sb);
        e->seg_nll[s] = 0;
        rc = segment_step(e, ids + s * L, k, targets + s * L, mask ? mask + s * L : NULL, EI_SEG_STATE, NULL, NULL,
                          NULL);
        if (rc == 0 && e->progress) e->progress(e->progress_ctx, s * L + k, n);
    }
    double seed = count ? weight / (double)count : 0.0;
    for (int64_t s = nseg - 1; rc == 0 && s >= 0 && count > 0; s--) {
        int k = (int)(n - s * L < L ? n - s * L : L);
        rc = segment_backward(e, ids + s * L, k, targets + s * L, mask ? mask + s * L : NULL,
                              saved + (size_t)s * sb, s * L, gin, gout, seed, grad64, &e->seg_nll[s]);
        void *t = gin;
        gin = gout;
        gout = t;
        if (e->o.bptt_segments > 0 && s % e->o.bptt_segments == 0) memset(gout, 0, sb);
    }
    if (rc != 0) return -1;
    double nll = 0;
    for (int64_t s = 0; s < nseg; s++) nll += e->seg_nll[s]; /* document order, as ei_edge_doc_eval */
    finish(res, nll, count, 0, (int)nseg);
    return 0;
}
