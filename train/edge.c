#include "train/edge.h"

#include "core/ei_error.h"
#include "train/seg_graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Graphs are cached per shape (see key_of, ckey_of) and kind. A document touches a handful of
 * shapes (whole segments, the last partial one rounded up, a few while the caches fill); decoding
 * uses three (the first token of a segment, the middle ones, the one completing it), since fill
 * levels and the open-segment length live in masks. Training graphs (a chunk of segments each) are
 * kept one at a time here: beyond the kept graphs of the budget, the activations and gradients of
 * one chunk are the whole activation memory of a document's forward + backward. */
#define EI_GRAPH_CACHE 24

typedef struct {
    int kind, open_slots, n, commit, mem;
    int p, sf, take, c, wf; /* commit only: they shape the cache update */
} gkey;

/* A graph's shapes: those of each of its segments (unused entries zero). */
typedef struct {
    int nseg;
    gkey seg[EI_SEG_CHUNK_MAX];
} ckey;

typedef struct {
    ckey key;
    ei_seg_graph *sg;
    uint64_t last_use;
} cache_entry;

/* A training graph kept with its activations from the forward sweep to the backward sweep. */
typedef struct {
    ckey key;
    ei_seg_graph *sg;
    size_t bytes; /* its arena */
    int used;     /* assigned to a chunk of the current document */
} kept_graph;

/* One run of the segment rule: options, mode, the cache / memory state, the open segment's K/V
 * rows and the graphs. */
typedef struct {
    ei_opts o;
    ei_mode mode;
    ei_state *st;
    void *open;      /* [n_layers][2][L][Hkv][d] in the state's dtype */
    size_t open_layer; /* elements of one layer's K (or V) rows */
    int64_t pos;     /* tokens of the document processed */
    int64_t cap;     /* full attention: tokens the context holds; -1 unbounded */
    cache_entry cache[EI_GRAPH_CACHE];
    uint64_t tick;
} track;

struct ei_edge {
    const ei_model *m;
    ei_opts o;
    ei_gates *gates;
    ei_mode mode;
    ag_dtype dtype;
    track main; /* the mode's own rule; in full mode full attention over ctx */
    track *base; /* full attention for routed documents (window / edgeinfinite), created on first use */
    int ctx, stride;
    int64_t limit;    /* routing threshold */
    int64_t expected; /* length of the current document, -1 when unknown */
    int on_base;
    int64_t doc_pos;
    int32_t *hist;    /* tokens fed to the base model, for the switch to the EdgeInfinite state */
    int64_t n_hist, cap_hist;
    uint8_t *mask_buf; /* sliding-window scoring */
    int64_t mask_cap;
    /* BPTT buffers, kept across documents so a training loop does not fault in fresh pages for
     * every document: saved input states, state gradients in / out, per-chunk losses and the
     * chunks (chunk u: segments chunk0[u] .. chunk0[u + 1] - 1) */
    char *saved;
    size_t saved_cap;
    void *gin, *gout;
    double *seg_nll;
    int64_t *chunk0;
    int64_t seg_cap;
    int chunk_segs;        /* segments per training graph (ei_edge_set_chunk) */
    int chunk_auto;        /* chunk_segs follows the rows and the budget (ei_edge_set_chunk 0) */
    size_t seg_bytes;      /* arena bytes per segment of the largest training graph built so far */
    ag_grad_pool *tpool;   /* the gradients of the track's training graph */
    /* kept training graphs (see keep_plan): the pool, survives documents within the budget */
    kept_graph *kept;
    int n_kept, cap_kept;
    int *kept_of;       /* [seg_cap] pool index of each chunk's graph, -1: recomputed */
    size_t kept_bytes;  /* arena bytes of the pool */
    size_t kept_est;    /* arena bytes of the largest training graph built so far (0: none yet) */
    size_t act_budget;  /* bytes the pool may hold; SIZE_MAX: no limit */
    ag_grad_pool *gpool; /* the kept graphs' one set of op-node gradients */
    ei_edge_progress_fn progress;
    void *progress_ctx;
    ei_edge_observer_fn observer;
    void *observer_ctx;
};

/* ------------------------------------------------------------------ tracks */

/* ctx: the context of a full-attention track (ignored otherwise). */
static int track_init(track *t, const ei_model *m, const ei_opts *o, ei_mode mode, ag_dtype dt, int ctx) {
    memset(t, 0, sizeof *t);
    t->o = *o;
    t->mode = mode;
    t->cap = mode == EI_MODE_FULL ? ctx : -1;
    if (!(t->st = ei_state_new(&m->cfg, o, dt))) return -1;
    t->open_layer = (size_t)o->segment * m->cfg.n_kv_heads * m->cfg.head_dim;
    t->open = calloc(t->open_layer * 2 * (size_t)m->cfg.n_layers, t->st->elem);
    return t->open ? 0 : ei_error_set("edgeinfinite: out of memory for a %d-token segment buffer", o->segment);
}

static void track_free(track *t) {
    for (int i = 0; i < EI_GRAPH_CACHE; i++) ei_seg_graph_free(t->cache[i].sg);
    ei_state_free(t->st);
    free(t->open);
    memset(t, 0, sizeof *t);
}

static void track_reset(track *t) {
    ei_state_reset(t->st);
    t->pos = 0;
}

static gkey key_of(const ei_seg_plan *p, int kind, int L) {
    gkey k = {kind, p->p > 0 ? L : 0, p->n, p->commit, p->mem, 0, 0, 0, 0, 0};
    if (p->commit) {
        k.p = p->p;
        k.take = p->take;
        k.sf = p->take > 0 ? p->sf : 0;
        k.c = p->c;
        k.wf = p->c > 0 ? p->wf : 0;
    }
    return k;
}

static ckey ckey_of(const ei_seg_plan *plans, int nseg, int kind, int L) {
    ckey k;
    memset(&k, 0, sizeof k);
    k.nseg = nseg;
    for (int j = 0; j < nseg; j++) k.seg[j] = key_of(&plans[j], kind, L);
    return k;
}

/* What a training graph costs per segment: the automatic chunk size and the budget of kept graphs
 * count the graph that runs the backward with it. */
static void note_train_graph(ei_edge *e, const ei_seg_graph *sg) {
    const size_t per = ag_graph_arena_bytes(sg->g) / (size_t)sg->nseg;
    if (per > e->seg_bytes) e->seg_bytes = per;
}

static ei_seg_graph *graph_for(ei_edge *e, track *t, const ei_seg_plan *plans, int nseg, int kind) {
    ckey key = ckey_of(plans, nseg, kind, t->o.segment);
    int lru = 0;
    for (int i = 0; i < EI_GRAPH_CACHE; i++) {
        cache_entry *c = &t->cache[i];
        if (c->sg && memcmp(&c->key, &key, sizeof key) == 0) {
            c->last_use = ++t->tick;
            return c->sg;
        }
        if (!c->sg || (t->cache[lru].sg && c->last_use < t->cache[lru].last_use)) lru = i;
    }
    if (kind == EI_SEG_TRAIN)
        for (int i = 0; i < EI_GRAPH_CACHE; i++)
            if (t->cache[i].sg && t->cache[i].key.seg[0].kind == EI_SEG_TRAIN) {
                ei_seg_graph_free(t->cache[i].sg);
                t->cache[i] = (cache_entry){0};
                lru = i;
            }
    /* the training graph's gradients are planned in a pool of their own (what is live at once,
     * not one buffer per node) */
    if (kind == EI_SEG_TRAIN && !e->tpool && !(e->tpool = ag_grad_pool_new())) return NULL;
    ei_seg_graph *sg = ei_seg_graph_build_chunk(e->m, &t->o, e->gates, plans, nseg, t->mode, e->dtype, kind, 0,
                                                kind == EI_SEG_TRAIN ? e->tpool : NULL);
    if (!sg) return NULL;
    if (kind == EI_SEG_TRAIN) note_train_graph(e, sg);
    ei_seg_graph_free(t->cache[lru].sg);
    t->cache[lru] = (cache_entry){key, sg, ++t->tick};
    return sg;
}

/* Fills the per-call inputs of n real tokens and n_pad - n padding rows; NULL targets mean "no
 * target" (-1). */
static void set_inputs(ei_seg_graph *sg, const int32_t *ids, const int32_t *targets, const uint8_t *mask, int n,
                       int n_pad) {
    int32_t *id = ag_tensor_data(sg->ids), *t = ag_tensor_data(sg->targets);
    uint8_t *mk = ag_tensor_data(sg->mask);
    memcpy(id, ids, (size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        mk[i] = (uint8_t)(targets && targets[i] >= 0 && (!mask || mask[i]));
        t[i] = mk[i] ? targets[i] : -1;
    }
    for (int i = n; i < n_pad; i++) id[i] = 0, t[i] = -1, mk[i] = 0;
}

static int bind_open(ei_seg_graph *sg, track *t) {
    if (!sg->open_slots) return 0;
    for (int l = 0; l < sg->n_layers; l++)
        for (int kv = 0; kv < 2; kv++) {
            char *p = (char *)t->open + ((size_t)l * 2 + kv) * t->open_layer * t->st->elem;
            if (ag_tensor_bind(sg->open_in[(size_t)l * 2 + kv], p, NULL) != 0) return -1;
        }
    return 0;
}

/* The call's K/V rows join the open segment buffer at rows p .. p+n-1. */
static int store_open(ei_seg_graph *sg, track *t, int p) {
    const size_t row = t->open_layer / (size_t)t->o.segment;
    for (int l = 0; l < sg->n_layers; l++)
        for (int kv = 0; kv < 2; kv++) {
            char *dst = (char *)t->open + (((size_t)l * 2 + kv) * t->open_layer + (size_t)p * row) * t->st->elem;
            if (ag_tensor_get(sg->new_kv[(size_t)l * 2 + kv], dst, t->st->dtype) != 0) return -1;
        }
    return 0;
}

/* Runs one call of the segment rule on the track's current state and leaves the new state there.
 * kind EI_SEG_STATE computes the state only (nll, count and logits must then be NULL). logits
 * receives the call's last row, or with all_rows every row [n, V]. */
static int track_step(ei_edge *e, track *t, const ei_seg_plan *pl, const int32_t *ids, const int32_t *targets,
                      const uint8_t *mask, int kind, double *nll, int64_t *count, float *logits, int all_rows) {
    ei_state *st = t->st;
    ei_seg_plan fixed = *pl;
    const ei_seg_plan *plan = &fixed;
    /* full attention pushes nothing out before its context is full, and nothing follows then */
    if (t->mode == EI_MODE_FULL && fixed.c > 0) fixed.commit = 0;
    /* A call that leaves its segment open runs on a graph of a rounded size (a power of two up to
     * 16, then a multiple of 16, at most the rest of the segment), the extra rows padding after
     * the real ones: causal attention keeps them out of the real rows, their targets are -1, and
     * their K/V rows land in open slots the masks ignore until real tokens overwrite them. Documents
     * of every length then share a few graphs instead of building one per length (scoring the
     * 1,230 paragraphs of tinystories.txt: 26 s -> 5 s). */
    const int n_real = fixed.n;
    if (kind == EI_SEG_FORWARD && !fixed.commit) {
        int b = 1;
        while (b < n_real && b < 16) b <<= 1;
        if (b < n_real) b = (n_real + 15) / 16 * 16;
        fixed.n = b < t->o.segment - fixed.p ? b : t->o.segment - fixed.p;
    }
    ei_seg_graph *sg = graph_for(e, t, plan, 1, kind);
    if (!sg) return -1;
    set_inputs(sg, ids, targets, mask, n_real, plan->n);
    ei_seg_graph_set_positions(sg, plan);
    if (ei_seg_graph_bind_state(sg, st, st->data, NULL) != 0 || bind_open(sg, t) != 0 ||
        ei_ag_emitter_sync_gates(&sg->em) != 0 || ag_graph_forward(sg->g) != 0)
        return -1;
    if (e->observer) e->observer(e->observer_ctx, sg, n_real);
    if (plan->commit ? ei_seg_graph_read_state(sg, st, st->data) : store_open(sg, t, plan->p)) return -1;
    t->pos += n_real;
    st->n_seen = t->pos;
    if (!sg->loss) return 0;
    if (nll) *nll += ag_tensor_at(sg->loss, 0);
    if (count) *count += (int64_t)(ag_cross_entropy_count(sg->loss) + 0.5);
    if (logits) {
        const int V = e->m->cfg.vocab_size;
        const int64_t off = all_rows ? 0 : (int64_t)(n_real - 1) * V, len = (all_rows ? n_real : 1) * (int64_t)V;
        if (sg->logits->dtype == AG_F32) memcpy(logits, (const float *)sg->logits->data + off, (size_t)len * 4);
        else
            for (int64_t j = 0; j < len; j++) logits[j] = (float)((const double *)sg->logits->data)[off + j];
    }
    return 0;
}

/* logits: the last row (all_rows 0) or every row [n, V]; may be NULL. */
static int track_feed(ei_edge *e, track *t, const int32_t *ids, int64_t n, const int32_t *targets,
                      const uint8_t *mask, double *nll, int64_t *count, float *logits, int all_rows) {
    if (t->cap > 0 && t->pos + n > t->cap)
        return ei_error_set("full attention: context full (%lld + %lld tokens, the context holds %lld)",
                            (long long)t->pos, (long long)n, (long long)t->cap);
    for (int64_t s = 0; s < n;) {
        ei_seg_plan plan = ei_seg_plan_at(&t->o, t->mode, t->pos, n - s);
        const int last = s + plan.n == n;
        float *lg = !logits ? NULL : all_rows ? logits + s * (int64_t)e->m->cfg.vocab_size : last ? logits : NULL;
        if (track_step(e, t, &plan, ids + s, targets ? targets + s : NULL, mask ? mask + s : NULL, EI_SEG_FORWARD,
                       nll, count, lg, all_rows) != 0)
            return -1;
        s += plan.n;
    }
    return 0;
}

/* ------------------------------------------------------------------ edge */

void ei_edge_set_observer(ei_edge *e, ei_edge_observer_fn fn, void *ctx) {
    e->observer = fn;
    e->observer_ctx = ctx;
}

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
    if (gates && (gates->kind != o->gate || gates->n_layers != m->cfg.n_layers || gates->n_heads != m->cfg.n_heads ||
                  gates->dim != m->cfg.dim)) {
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
    e->gates = mode == EI_MODE_EDGEINFINITE ? gates : NULL;
    e->mode = mode;
    e->dtype = dtype;
    e->ctx = m->cfg.max_seq_len;
    e->stride = e->ctx / 2;
    e->limit = mode == EI_MODE_FULL ? 0 : ei_opts_route_threshold(o, &m->cfg);
    ei_edge_set_activation_memory(e, (int64_t)EI_EDGE_ACTIVATION_MB_DEFAULT << 20);
    ei_edge_set_chunk(e, 0);
    ei_opts mo = mode == EI_MODE_FULL ? ei_opts_full(&m->cfg, e->ctx) : *o;
    if (track_init(&e->main, m, &mo, mode, dtype, e->ctx) != 0) {
        ei_edge_free(e);
        return NULL;
    }
    ei_edge_reset(e);
    return e;
}

void ei_edge_free(ei_edge *e) {
    if (!e) return;
    track_free(&e->main);
    if (e->base) track_free(e->base);
    free(e->base);
    free(e->hist);
    free(e->mask_buf);
    free(e->saved);
    free(e->gin);
    free(e->gout);
    free(e->seg_nll);
    free(e->chunk0);
    ag_grad_pool_free(e->tpool);
    for (int i = 0; i < e->n_kept; i++) ei_seg_graph_free(e->kept[i].sg);
    free(e->kept);
    free(e->kept_of);
    ag_grad_pool_free(e->gpool);
    free(e);
}

const ei_opts *ei_edge_opts(const ei_edge *e) { return &e->o; }
ei_mode ei_edge_mode(const ei_edge *e) { return e->mode; }
const ei_state *ei_edge_state(const ei_edge *e) { return e->mode == EI_MODE_FULL ? NULL : e->main.st; }
int64_t ei_edge_pos(const ei_edge *e) { return e->doc_pos; }
int ei_edge_on_base(const ei_edge *e) { return e->mode == EI_MODE_FULL || e->on_base; }

int ei_edge_routes(const ei_edge *e, int64_t total_len) {
    return ei_route_to_base(&e->o, &e->m->cfg, e->mode, total_len);
}

size_t ei_edge_saved_state_bytes(const ei_edge *e) { return ei_state_bytes(e->main.st); }

int64_t ei_edge_capacity(const ei_edge *e) { return e->mode == EI_MODE_FULL ? e->ctx : -1; }

int ei_edge_set_context(ei_edge *e, int ctx, int stride) {
    if (ctx <= 0) ctx = e->m->cfg.max_seq_len;
    if (ctx < 2) return ei_error_set("full attention: the context must hold at least 2 tokens (got %d)", ctx);
    if (stride <= 0) stride = ctx / 2;
    if (stride > ctx - 1) stride = ctx - 1; /* larger strides would leave positions unscored */
    e->stride = stride;
    if (e->mode == EI_MODE_FULL && ctx != e->ctx) {
        ei_opts f = ei_opts_full(&e->m->cfg, ctx);
        track nt;
        if (track_init(&nt, e->m, &f, EI_MODE_FULL, e->dtype, ctx) != 0) {
            track_free(&nt);
            return -1;
        }
        track_free(&e->main);
        e->main = nt;
    }
    e->ctx = ctx;
    ei_edge_reset(e);
    return 0;
}

static int ensure_base(ei_edge *e) {
    if (e->base) return 0;
    ei_opts f = ei_opts_full(&e->m->cfg, 0);
    if (!(e->base = calloc(1, sizeof *e->base))) return ei_error_set("edgeinfinite: out of memory");
    if (track_init(e->base, e->m, &f, EI_MODE_FULL, e->dtype, e->m->cfg.max_seq_len) != 0) {
        track_free(e->base);
        free(e->base);
        e->base = NULL;
        return -1;
    }
    return 0;
}

static void start(ei_edge *e, int64_t expected) {
    e->expected = expected;
    e->doc_pos = 0;
    e->n_hist = 0;
    track_reset(&e->main);
    if (e->base) track_reset(e->base);
    e->on_base = e->mode != EI_MODE_FULL && e->limit > 0 && (expected < 0 || expected <= e->limit);
}

void ei_edge_reset(ei_edge *e) { start(e, -1); }
void ei_edge_begin(ei_edge *e, int64_t total_len) { start(e, total_len); }

/* Streaming with routing (see model/segment.h): while the document is on the base model its
 * tokens run there (and are kept); when the length so far passes the threshold the kept tokens
 * are re-run through the EdgeInfinite state and the document stays there. */
static int feed_doc(ei_edge *e, const int32_t *ids, int64_t n, const int32_t *targets, const uint8_t *mask,
                    double *nll, int64_t *count, float *logits, int all_rows) {
    const int64_t V = e->m->cfg.vocab_size;
    if (n < 1) return ei_error_set("edgeinfinite: nothing to feed");
    if (e->mode == EI_MODE_FULL) {
        if (track_feed(e, &e->main, ids, n, targets, mask, nll, count, logits, all_rows) != 0) return -1;
        e->doc_pos += n;
        return 0;
    }
    while (n > 0) {
        if (e->on_base) {
            int64_t room = e->expected >= 0 ? n : (e->limit - e->doc_pos < n ? e->limit - e->doc_pos : n);
            if (room > 0) {
                if (ensure_base(e) != 0) return -1;
                if (e->expected < 0) {
                    if (e->n_hist + room > e->cap_hist) {
                        int32_t *h = realloc(e->hist, (size_t)e->limit * sizeof *h);
                        if (!h) return ei_error_set("edgeinfinite: out of memory");
                        e->hist = h;
                        e->cap_hist = e->limit;
                    }
                    memcpy(e->hist + e->n_hist, ids, (size_t)room * sizeof *ids);
                    e->n_hist += room;
                }
                float *lg = all_rows ? logits : room == n ? logits : NULL;
                if (track_feed(e, e->base, ids, room, targets, mask, nll, count, lg, all_rows) != 0) return -1;
                e->doc_pos += room;
                ids += room;
                n -= room;
                if (all_rows && logits) logits += room * V;
                if (targets) targets += room;
                if (mask) mask += room;
                continue;
            }
            /* the document just outgrew the threshold: the EdgeInfinite state takes over */
            e->on_base = 0;
            track_reset(&e->main);
            if (e->n_hist > 0 && track_feed(e, &e->main, e->hist, e->n_hist, NULL, NULL, NULL, NULL, NULL, 0) != 0)
                return -1;
            e->n_hist = 0;
        }
        if (track_feed(e, &e->main, ids, n, targets, mask, nll, count, logits, all_rows) != 0) return -1;
        e->doc_pos += n;
        n = 0;
    }
    return 0;
}

int ei_edge_feed(ei_edge *e, const int32_t *ids, int64_t n, const int32_t *targets, double *nll_sum,
                 int64_t *count, float *logits_last) {
    return feed_doc(e, ids, n, targets, NULL, nll_sum, count, logits_last, 0);
}

int ei_edge_feed_all(ei_edge *e, const int32_t *ids, int64_t n, float *logits) {
    return feed_doc(e, ids, n, NULL, NULL, NULL, NULL, logits, 1);
}

static void finish(ei_doc_result *res, double nll, int64_t count, int routed, int nseg) {
    res->n_kept = 0;
    res->nll_sum = nll;
    res->count = count;
    res->loss = count ? nll / (double)count : 0.0;
    res->routed = routed;
    res->n_segments = nseg;
}

/* Full attention over a document longer than the context: windows of ctx tokens every `stride`,
 * each scoring the positions no earlier window scored. */
static int score_sliding(ei_edge *e, const int32_t *ids, const int32_t *targets, const uint8_t *mask, int64_t n,
                         double *nll, int64_t *count) {
    if (e->mask_cap < e->ctx) {
        uint8_t *p = realloc(e->mask_buf, (size_t)e->ctx);
        if (!p) return ei_error_set("edgeinfinite: out of memory");
        e->mask_buf = p;
        e->mask_cap = e->ctx;
    }
    int64_t scored = 0; /* positions 0 .. scored-1 are done */
    for (int64_t s = 0;; s += e->stride) {
        int64_t end = s + e->ctx < n ? s + e->ctx : n;
        for (int64_t t = s; t < end; t++) e->mask_buf[t - s] = (uint8_t)(t >= scored && (!mask || mask[t]));
        start(e, -1);
        if (track_feed(e, &e->main, ids + s, end - s, targets + s, e->mask_buf, nll, count, NULL, 0) != 0) return -1;
        e->doc_pos = end - s;
        scored = end;
        if (e->progress) e->progress(e->progress_ctx, end, n);
        if (end == n) return 0;
    }
}

int ei_edge_doc_eval(ei_edge *e, const int32_t *ids, const int32_t *targets, const uint8_t *mask, int64_t n,
                     ei_doc_result *res) {
    double nll = 0;
    int64_t count = 0;
    if (n < 1) return ei_error_set("edgeinfinite: empty document");
    if (e->mode == EI_MODE_FULL && n > e->ctx) {
        if (!targets) return ei_error_set("full attention: a document longer than the context needs targets");
        if (score_sliding(e, ids, targets, mask, n, &nll, &count) != 0) return -1;
        finish(res, nll, count, 1, 0);
        return 0;
    }
    ei_edge_begin(e, n);
    const int routed = ei_edge_on_base(e);
    /* in steps of one segment, for the progress report */
    const int64_t step = routed ? n : e->o.segment;
    for (int64_t s = 0; s < n; s += step) {
        int64_t k = n - s < step ? n - s : step;
        if (feed_doc(e, ids + s, k, targets ? targets + s : NULL, mask ? mask + s : NULL, &nll, &count, NULL, 0) != 0)
            return -1;
        if (e->progress) e->progress(e->progress_ctx, s + k, n);
    }
    finish(res, nll, count, routed, routed ? 0 : (int)((n + e->o.segment - 1) / e->o.segment));
    return 0;
}

/* ------------------------------------------------------------------ training */

static void add_block(ag_dtype dt, void *dst, const void *src, size_t n) {
    if (dt == AG_F64)
        for (size_t i = 0; i < n; i++) ((double *)dst)[i] += ((const double *)src)[i];
    else
        for (size_t i = 0; i < n; i++) ((float *)dst)[i] += ((const float *)src)[i];
}

/* The plans of chunk u's segments (in plans[]), returning their count. */
static int chunk_plans(const ei_edge *e, int64_t n, int64_t u, ei_seg_plan *plans) {
    const track *t = &e->main;
    const int L = t->o.segment;
    const int64_t s0 = e->chunk0[u];
    const int k = (int)(e->chunk0[u + 1] - s0);
    for (int j = 0; j < k; j++) plans[j] = ei_seg_plan_at(&t->o, t->mode, (s0 + j) * L, n - (s0 + j) * L);
    return k;
}

/* Splits the nseg segments of a document into chunks of at most e->chunk_segs segments, one graph
 * each. bptt_segments = k cuts the carried gradient before every segment s with s % k == 0; a
 * chunk's graph carries its gradient inside itself, so chunks end at those cuts. Returns the
 * number of chunks. */
static int64_t plan_chunks(ei_edge *e, int64_t nseg) {
    const int64_t k = e->o.bptt_segments;
    int64_t u = 0;
    for (int64_t s = 0; s < nseg; u++) {
        e->chunk0[u] = s;
        int64_t end = s + e->chunk_segs < nseg ? s + e->chunk_segs : nseg;
        if (k > 0 && (s / k + 1) * k < end) end = (s / k + 1) * k;
        s = end;
    }
    e->chunk0[u] = nseg;
    return u;
}

/* Forward of a training graph for the chunk of plans from the input state `saved` (bound in
 * place: a kept graph's backward reads it again). */
static int train_forward(ei_edge *e, ei_seg_graph *sg, const ei_seg_plan *plans, const int32_t *ids,
                         const int32_t *targets, const uint8_t *mask, void *saved, double *nll) {
    set_inputs(sg, ids, targets, mask, (int)sg->n_rows, (int)sg->n_rows);
    ei_seg_graph_set_plans(sg, plans);
    if (ei_seg_graph_bind_state(sg, e->main.st, saved, NULL) != 0 || ei_ag_emitter_sync_gates(&sg->em) != 0 ||
        ag_graph_forward(sg->g) != 0)
        return -1;
    *nll = ag_tensor_at(sg->loss, 0);
    return 0;
}

/* Segments per state-only graph of the forward sweep. A forward graph keeps every activation
 * until it is freed (it sits in the graph cache), so these are shorter than training chunks:
 * 512 rows already give GEMMs near the 2,048-row rate (bench_sgemm), at a quarter of the memory. */
#define EI_EDGE_STATE_CHUNK 4

/* The forward sweep's state-only run of a chunk (EI_SEG_STATE graphs of at most
 * EI_EDGE_STATE_CHUNK segments): the track's state moves past it. */
static int chunk_state(ei_edge *e, const ei_seg_plan *plans, int k, const int32_t *ids) {
    track *t = &e->main;
    for (int j = 0; j < k;) {
        const int kk = k - j < EI_EDGE_STATE_CHUNK ? k - j : EI_EDGE_STATE_CHUNK;
        ei_seg_graph *sg = graph_for(e, t, plans + j, kk, EI_SEG_STATE);
        if (!sg) return -1;
        set_inputs(sg, ids, NULL, NULL, (int)sg->n_rows, (int)sg->n_rows);
        ei_seg_graph_set_plans(sg, plans + j);
        if (ei_seg_graph_bind_state(sg, t->st, t->st->data, NULL) != 0 || ei_ag_emitter_sync_gates(&sg->em) != 0 ||
            ag_graph_forward(sg->g) != 0 || ei_seg_graph_read_state(sg, t->st, t->st->data) != 0)
            return -1;
        ids += sg->n_rows;
        j += kk;
    }
    return 0;
}

/* Backward of a chunk from its saved input state: gin receives d/d(input state); gout holds
 * d/d(output state) from the later chunk. kept: the chunk's graph still holding the activations
 * of its forward (its NLL is already in *nll), or NULL to recompute the forward on the track's
 * training graph, *nll then receiving the chunk's summed NLL. */
static int chunk_backward(ei_edge *e, const ei_seg_plan *plans, int nplans, ei_seg_graph *kept, const int32_t *ids,
                          const int32_t *targets, const uint8_t *mask, void *saved, void *gin, void *gout,
                          double seed, double *grad64, double *nll) {
    ei_state *st = e->main.st;
    ei_seg_graph *sg = kept ? kept : graph_for(e, &e->main, plans, nplans, EI_SEG_TRAIN);
    if (!sg) return -1;
    if (!kept && train_forward(e, sg, plans, ids, targets, mask, saved, nll) != 0) return -1;
    memset(gin, 0, ei_state_bytes(st));
    if (ei_seg_graph_bind_state(sg, st, saved, gin) != 0) return -1;
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
    ei_ag_emitter_zero_gate_grads(&sg->em);
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
    ei_ag_emitter_take_grads(&sg->em, e->gates, grad64);
    return 0;
}

/* Grows the BPTT buffers for nseg segments (at most nseg chunks). */
static int bptt_buffers(ei_edge *e, int64_t nseg) {
    size_t sb = ei_state_bytes(e->main.st);
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
        int *k = realloc(e->kept_of, (size_t)nseg * sizeof *k);
        if (!k) return ei_error_set("edgeinfinite: out of memory");
        e->kept_of = k;
        int64_t *c = realloc(e->chunk0, ((size_t)nseg + 1) * sizeof *c);
        if (!c) return ei_error_set("edgeinfinite: out of memory");
        e->chunk0 = c;
        e->seg_cap = nseg;
    }
    if (!e->gin) e->gin = malloc(sb);
    if (!e->gout) e->gout = malloc(sb);
    if (!e->gin || !e->gout) return ei_error_set("edgeinfinite: out of memory");
    return 0;
}

/* Arenas of the kept graphs and their shared gradients. */
static size_t kept_total(const ei_edge *e) { return e->kept_bytes + ag_grad_pool_bytes(e->gpool); }
/* The graph that runs each backward (a chunk, as far as known): it shares the budget with the
 * kept ones, so that the budget bounds the activation memory of a step. */
static size_t run_bytes(const ei_edge *e) {
    return e->seg_bytes * (size_t)e->chunk_segs + ag_grad_pool_bytes(e->tpool);
}

/* Frees kept graphs from the end of the pool until it holds at most limit bytes (0: all of it,
 * with the shared gradients). */
static void kept_trim(ei_edge *e, size_t limit) {
    while (e->n_kept > 0 && kept_total(e) > limit) {
        kept_graph *k = &e->kept[--e->n_kept];
        e->kept_bytes -= k->bytes;
        ei_seg_graph_free(k->sg);
    }
    if (e->n_kept == 0) {
        ag_grad_pool_free(e->gpool);
        e->gpool = NULL;
    }
}

void ei_edge_set_activation_memory(ei_edge *e, int64_t bytes) {
    e->act_budget = bytes < 0 || (uint64_t)bytes >= SIZE_MAX / 2 ? SIZE_MAX : (size_t)bytes;
    kept_trim(e, e->act_budget); /* a smaller budget frees what no longer fits (all of it for 0) */
}

/* The automatic chunk: EI_EDGE_CHUNK_ROWS rows, but no larger than the activation budget holds
 * (once a training graph has shown what a segment costs), and one segment for a budget of 0. */
static int auto_chunk(const ei_edge *e) {
    const int by_rows = EI_EDGE_CHUNK_ROWS / e->o.segment;
    int k = by_rows < 1 ? 1 : by_rows > EI_SEG_CHUNK_MAX ? EI_SEG_CHUNK_MAX : by_rows;
    if (e->act_budget == 0) return 1;
    if (e->seg_bytes > 0 && e->act_budget / e->seg_bytes < (size_t)k)
        k = e->act_budget / e->seg_bytes < 1 ? 1 : (int)(e->act_budget / e->seg_bytes);
    return k;
}

static void chunk_resize(ei_edge *e, int segments) {
    if (segments != e->chunk_segs) { /* kept graphs of the old size can serve no document */
        e->chunk_segs = segments;
        kept_trim(e, 0);
        e->kept_est = 0;
    }
}

int ei_edge_set_chunk(ei_edge *e, int segments) {
    if (segments < 0 || segments > EI_SEG_CHUNK_MAX)
        return ei_error_set("edgeinfinite: %d segments per training graph (0 = automatic, at most %d)", segments,
                            EI_SEG_CHUNK_MAX);
    e->chunk_auto = segments == 0;
    chunk_resize(e, segments ? segments : auto_chunk(e));
    return 0;
}

int ei_edge_chunk(const ei_edge *e) { return e->chunk_segs; }

static void kept_drop(ei_edge *e, int i) {
    e->kept_bytes -= e->kept[i].bytes;
    ei_seg_graph_free(e->kept[i].sg);
    e->kept[i] = e->kept[--e->n_kept];
}

/* Which of the first nch - 1 chunks keep their training graph from the forward sweep to the
 * backward sweep, instead of a state-only forward now and a recomputation later: a prefix
 * 0 .. K-1 whose graphs fit the budget (the last chunk's backward follows its forward directly
 * either way). Graphs of earlier documents are reused by plans (shapes); those no chunk of this
 * document can use are freed first, so the pool always serves the current document. Sets
 * e->kept_of[u] for every chunk and returns K (0 on any failure to build: recomputation is
 * always possible). Kept or recomputed, a chunk runs the same graph on the same input state, so
 * the gradients are bit-identical (tests/test_train_keep.c). */
static int64_t keep_plan(ei_edge *e, int64_t n, int64_t nch) {
    const track *t = &e->main;
    const int L = t->o.segment;
    ei_seg_plan plans[EI_SEG_CHUNK_MAX];
    for (int64_t u = 0; u < nch; u++) e->kept_of[u] = -1;
    for (int i = 0; i < e->n_kept; i++) e->kept[i].used = 0;
    if (e->act_budget == 0) return 0;
    const int64_t want = nch - 1;
    /* pass 1: reuse graphs of earlier documents */
    for (int64_t u = 0; u < want; u++) {
        const int k = chunk_plans(e, n, u, plans);
        ckey key = ckey_of(plans, k, EI_SEG_TRAIN, L);
        for (int i = 0; i < e->n_kept; i++)
            if (!e->kept[i].used && memcmp(&e->kept[i].key, &key, sizeof key) == 0) {
                e->kept[i].used = 1;
                e->kept_of[u] = i;
                break;
            }
    }
    /* unused now, or (the first time a chunk's cost is known) beyond the budget: freed, from the
     * end of the document (kept_drop moves the last entry to i) */
    size_t total = kept_total(e);
    for (int64_t u = want - 1; u >= 0; u--)
        if (e->kept_of[u] >= 0 && total + run_bytes(e) > e->act_budget) {
            total -= e->kept[e->kept_of[u]].bytes;
            e->kept[e->kept_of[u]].used = 0;
            e->kept_of[u] = -1;
        }
    for (int i = e->n_kept - 1; i >= 0; i--)
        if (!e->kept[i].used) {
            const int last = e->n_kept - 1;
            kept_drop(e, i);
            for (int64_t u = 0; u < want && i != last; u++)
                if (e->kept_of[u] == last) e->kept_of[u] = i;
        }
    /* pass 2: build what is missing, in document order, while it fits */
    int64_t u = 0;
    for (; u < want; u++) {
        if (e->kept_of[u] >= 0) continue;
        if (e->kept_est && kept_total(e) + e->kept_est + run_bytes(e) > e->act_budget) break;
        if (e->n_kept == e->cap_kept) {
            int cap = e->cap_kept ? 2 * e->cap_kept : 16;
            kept_graph *p = realloc(e->kept, (size_t)cap * sizeof *p);
            if (!p) break;
            e->kept = p;
            e->cap_kept = cap;
        }
        if (!e->gpool && !(e->gpool = ag_grad_pool_new())) break;
        const int k = chunk_plans(e, n, u, plans);
        ei_seg_graph *sg =
            ei_seg_graph_build_chunk(e->m, &t->o, e->gates, plans, k, t->mode, e->dtype, EI_SEG_TRAIN, 0, e->gpool);
        if (!sg) {
            ei_error_clear();
            break;
        }
        note_train_graph(e, sg);
        const size_t bytes = ag_graph_arena_bytes(sg->g);
        if (bytes > e->kept_est) e->kept_est = bytes;
        if (kept_total(e) + bytes + run_bytes(e) > e->act_budget) { /* kept_total counts the pool as it grew */
            ei_seg_graph_free(sg);
            break;
        }
        e->kept[e->n_kept] = (kept_graph){ckey_of(plans, k, EI_SEG_TRAIN, L), sg, bytes, 1};
        e->kept_bytes += bytes;
        e->kept_of[u] = e->n_kept++;
    }
    for (int64_t v = u; v < nch; v++) e->kept_of[v] = -1; /* graphs matched past the prefix wait, unused */
    /* with nothing kept (a budget below one graph) the shared gradients are not needed either */
    kept_trim(e, SIZE_MAX);
    if (getenv("EI_KEEP_DEBUG"))
        fprintf(stderr,
                "keep_plan: %lld of %lld chunks of up to %d segments kept (segments 0..%lld kept, %lld..%lld "
                "state-only, the last graph from %lld), arenas %zu bytes, grad pool %zu, est %zu\n",
                (long long)u, (long long)nch, e->chunk_segs, (long long)e->chunk0[u] - 1, (long long)e->chunk0[u],
                (long long)e->chunk0[nch - 1] - 1, (long long)e->chunk0[nch - 1], e->kept_bytes,
                ag_grad_pool_bytes(e->gpool), e->kept_est);
    return u;
}

static int64_t count_targets(const int32_t *targets, const uint8_t *mask, int64_t n) {
    int64_t c = 0;
    for (int64_t i = 0; targets && i < n; i++) c += targets[i] >= 0 && (!mask || mask[i]);
    return c;
}

int ei_edge_doc_train(ei_edge *e, const int32_t *ids, const int32_t *targets, const uint8_t *mask, int64_t n,
                      double weight, ei_doc_result *res, double *grad64) {
    if (e->mode != EI_MODE_EDGEINFINITE) return ei_error_set("edgeinfinite: training needs edgeinfinite mode");
    if (n < 1 || !targets) return ei_error_set("edgeinfinite: empty document or no targets");
    if (ei_edge_routes(e, n)) return ei_edge_doc_eval(e, ids, targets, mask, n, res);
    int64_t count = count_targets(targets, mask, n);
    track *t = &e->main;
    ei_state *st = t->st;
    const int L = t->o.segment;
    const int64_t nseg = (n + L - 1) / L;
    const size_t sb = ei_state_bytes(st);
    if (bptt_buffers(e, nseg) != 0) return -1;
    if (e->chunk_auto) chunk_resize(e, auto_chunk(e));
    const int64_t nch = plan_chunks(e, nseg);
    char *saved = e->saved;
    void *gin = e->gin, *gout = e->gout;
    memset(gout, 0, sb);
    int rc = 0;
    ei_seg_plan plans[EI_SEG_CHUNK_MAX];
    /* forward sweep: the input state of every chunk. Chunks with a kept graph run their training
     * forward now (loss included) and keep its activations; the others compute states only and
     * are recomputed with their loss in the backward sweep. The last chunk is left to the
     * backward sweep, which starts with it. */
    const int64_t nkeep = count > 0 ? keep_plan(e, n, nch) : 0;
    start(e, n);
    e->on_base = 0;
    for (int64_t u = 0; rc == 0 && u < nch; u++) {
        char *in = saved + (size_t)u * sb;
        memcpy(in, st->data, sb);
        e->seg_nll[u] = 0;
        if (u == nch - 1) break;
        const int k = chunk_plans(e, n, u, plans);
        const int64_t r0 = e->chunk0[u] * L;
        if (u < nkeep) {
            ei_seg_graph *sg = e->kept[e->kept_of[u]].sg;
            rc = train_forward(e, sg, plans, ids + r0, targets + r0, mask ? mask + r0 : NULL, in, &e->seg_nll[u]);
            if (rc == 0) rc = ei_seg_graph_read_state(sg, st, st->data);
        } else {
            rc = chunk_state(e, plans, k, ids + r0);
        }
        t->pos = e->chunk0[u + 1] * L;
        st->n_seen = t->pos;
        if (rc == 0 && e->progress) e->progress(e->progress_ctx, t->pos, n);
    }
    const double seed = count ? weight / (double)count : 0.0;
    for (int64_t u = nch - 1; rc == 0 && u >= 0 && count > 0; u--) {
        const int k = chunk_plans(e, n, u, plans);
        const int64_t r0 = e->chunk0[u] * L;
        ei_seg_graph *kept = u < nkeep ? e->kept[e->kept_of[u]].sg : NULL;
        rc = chunk_backward(e, plans, k, kept, ids + r0, targets + r0, mask ? mask + r0 : NULL, saved + (size_t)u * sb,
                            gin, gout, seed, grad64, &e->seg_nll[u]);
        void *tmp = gin;
        gin = gout;
        gout = tmp;
        if (e->o.bptt_segments > 0 && e->chunk0[u] % e->o.bptt_segments == 0) memset(gout, 0, sb);
    }
    start(e, -1); /* the sweeps left the state mid-document */
    if (rc != 0) return -1;
    double nll = 0;
    for (int64_t u = 0; u < nch; u++) nll += e->seg_nll[u]; /* document order, as ei_edge_doc_eval */
    finish(res, nll, count, 0, (int)nseg);
    res->n_kept = nkeep > 0 ? (int)e->chunk0[nkeep] : 0;
    return 0;
}

/* ------------------------------------------------------------------ document model */

static void dm_begin(void *impl, int64_t total) { ei_edge_begin(impl, total); }

static int dm_feed(void *impl, const int32_t *ids, int64_t n, const int32_t *targets, double *nll, int64_t *count,
                   float *logits_last) {
    return ei_edge_feed(impl, ids, n, targets, nll, count, logits_last);
}

static int dm_score(void *impl, const int32_t *ids, const int32_t *targets, const uint8_t *mask, int64_t n, double *nll,
                    int64_t *count) {
    ei_doc_result r;
    if (ei_edge_doc_eval(impl, ids, targets, mask, n, &r) != 0) return -1;
    *nll += r.nll_sum;
    *count += r.count;
    return 0;
}

ei_docmodel ei_edge_docmodel(ei_edge *e) {
    return (ei_docmodel){e, e->m->cfg.vocab_size, dm_begin, dm_feed, dm_score};
}
