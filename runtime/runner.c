#include "runtime/runner.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "model/segment.h"
#include "runtime/backend.h"
#include "runtime/eig_abi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { G_PREFILL, G_DECODE, G_COMPRESS, G_BASE_PREFILL, G_BASE_DECODE, G_COUNT };
static const char *const graph_names[G_COUNT] = {EI_GRAPH_PREFILL, EI_GRAPH_DECODE, EI_GRAPH_COMPRESS,
                                                 EI_GRAPH_BASE_PREFILL, EI_GRAPH_BASE_DECODE};

/* A prepared graph and the tensor indices the runner binds. */
typedef struct {
    const ei_graph *g;
    ei_backend_exec *x;
    void **bind;
    int n; /* tokens per call */
    int32_t tokens, qpos, kpos, kbias, nbias, memflag, rows, rowmask, logits;
    int32_t *kc, *vc, *M, *z, *knew, *vnew, *Mout, *zout; /* [n_layers] */
} rgraph;

/* K/V caches of one attention state: per layer [slots, Hkv, d] of the graphs' cache element type
 * (f32, f16 or i8: the runner only moves rows of kv_elem-byte elements). */
typedef struct {
    int slots;
    unsigned char **k, **v;
    int64_t pos; /* tokens of the document in this state */
} rcache;

struct ei_runner {
    ei_eig *eig;
    ei_backend *be;
    ei_tokenizer *tok;
    ei_model_config cfg;
    ei_opts o;
    ei_mode mode;
    int N, slots, base_slots, L, S, W, R;
    size_t row; /* elements per K (or V) row: Hkv * d */
    size_t kv_elem; /* bytes per cache element */
    rgraph gr[G_COUNT];
    rcache ei, base; /* ei: the mode's own state (full mode: the only one) */
    float **M[2], **z[2];
    int mcur;
    int64_t limit, expected, doc_pos;
    int on_base;
    int32_t *hist;
    int64_t n_hist;
    /* scratch inputs and outputs */
    int32_t *tokens, *qpos, *kpos, *rows;
    float *kbias, *nbias, *rowmask, *memflag, *logits;
    unsigned char **knew, **vnew;
    ei_runner_stats stats;
    void **allocs; /* every buffer bound to a graph (ralloc) */
    int n_allocs, cap_allocs;
    int nn_mem;    /* the buffers come from NNAPI memory */
};

/* ------------------------------------------------------------------ setup */

/* Buffers bound to graphs: from NNAPI's mapped memory when the backend has it (bound by offset, no
 * copy per execution), else the heap; zeroed either way, all freed by release_buffers. */
static void *ralloc(ei_runner *r, size_t bytes) {
    if (r->n_allocs == r->cap_allocs) {
        int nc = r->cap_allocs ? 2 * r->cap_allocs : 64;
        void **p = realloc(r->allocs, sizeof *p * (size_t)nc);
        if (!p) return NULL;
        r->allocs = p;
        r->cap_allocs = nc;
    }
    if (!bytes) bytes = sizeof(float);
    void *p = r->nn_mem ? ei_backend_nnapi_alloc(r->be, bytes) : calloc(1, bytes);
    if (p && r->nn_mem) memset(p, 0, bytes);
    if (p) r->allocs[r->n_allocs++] = p;
    return p;
}

static void release_buffers(ei_runner *r) {
    for (int i = 0; i < r->n_allocs; i++) {
        void *p = r->allocs[i];
        if (r->nn_mem) ei_backend_nnapi_free(r->be, p);
        else free(p);
    }
    free(r->allocs);
    r->allocs = NULL;
    r->n_allocs = r->cap_allocs = 0;
}

static void **alloc_layers(ei_runner *r, int n_layers, size_t bytes) {
    void **p = calloc((size_t)n_layers, sizeof *p);
    if (!p) return NULL;
    for (int l = 0; l < n_layers; l++)
        if (!(p[l] = ralloc(r, bytes))) {
            free(p);
            return NULL;
        }
    return p;
}

static int32_t find(const ei_graph *g, const char *name, int required) {
    int32_t i = ei_graph_find(g, name);
    if (i < 0 && required) ei_error_set("graph '%s' has no tensor '%s'", g->name, name);
    return i;
}

static int32_t find_layer(const ei_graph *g, const char *fmt, int l, int required) {
    char name[32];
    snprintf(name, sizeof name, fmt, l);
    return find(g, name, required);
}

static int bind_graph(ei_runner *r, int which, const uint8_t *blob, uint64_t blob_size) {
    rgraph *q = &r->gr[which];
    const ei_graph *g = ei_eig_graph_by_name(r->eig, graph_names[which]);
    if (!g) return 0; /* optional graphs */
    const int nl = r->cfg.n_layers;
    q->g = g;
    q->bind = calloc((size_t)g->n_tensors, sizeof *q->bind);
    int32_t **lists[] = {&q->kc, &q->vc, &q->M, &q->z, &q->knew, &q->vnew, &q->Mout, &q->zout};
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) *lists[i] = malloc(sizeof(int32_t) * (size_t)nl);
    if (!q->bind || !q->kc || !q->vc || !q->M || !q->z || !q->knew || !q->vnew || !q->Mout || !q->zout)
        return ei_error_set("runner: out of memory");
    const int compress = which == G_COMPRESS, mem = r->mode == EI_MODE_EDGEINFINITE && which < G_BASE_PREFILL;
    if (compress) {
        if ((q->rows = find(g, EI_IN_ROWS, 1)) < 0 || (q->rowmask = find(g, EI_IN_ROWMASK, 1)) < 0) return -1;
    } else {
        if ((q->tokens = find(g, EI_IN_TOKENS, 1)) < 0 || (q->qpos = find(g, EI_IN_QPOS, 1)) < 0 ||
            (q->kpos = find(g, EI_IN_KPOS, 1)) < 0 || (q->kbias = find(g, EI_IN_KBIAS, 1)) < 0 ||
            (q->nbias = find(g, EI_IN_NBIAS, 1)) < 0 || (q->logits = find(g, EI_OUT_LOGITS, 1)) < 0)
            return -1;
        q->memflag = mem ? find(g, EI_IN_MEMFLAG, 1) : -1;
        if (mem && q->memflag < 0) return -1;
        q->n = g->tensors[q->tokens].shape[0];
    }
    for (int l = 0; l < nl; l++) {
        if ((q->kc[l] = find_layer(g, EI_FMT_KC, l, 1)) < 0 || (q->vc[l] = find_layer(g, EI_FMT_VC, l, 1)) < 0)
            return -1;
        q->M[l] = mem ? find_layer(g, EI_FMT_M, l, 1) : -1;
        q->z[l] = mem ? find_layer(g, EI_FMT_Z, l, 1) : -1;
        if (mem && (q->M[l] < 0 || q->z[l] < 0)) return -1;
        if (compress) {
            if ((q->Mout[l] = find_layer(g, EI_FMT_M_OUT, l, 1)) < 0 || (q->zout[l] = find_layer(g, EI_FMT_Z_OUT, l, 1)) < 0)
                return -1;
        } else if ((q->knew[l] = find_layer(g, EI_FMT_K_NEW, l, 1)) < 0 ||
                   (q->vnew[l] = find_layer(g, EI_FMT_V_NEW, l, 1)) < 0) {
            return -1;
        }
    }
    if (!(q->x = r->be->ops->prepare(r->be, g, blob, blob_size))) return ei_error_prefix("runner: graph '%s': ", g->name);
    return 0;
}

/* The caches' element type: every graph's K/V cache inputs and new-row outputs must agree on it. */
static int cache_types(ei_runner *r) {
    r->kv_elem = 0;
    for (int i = 0; i < G_COUNT; i++) {
        const rgraph *q = &r->gr[i];
        if (!q->g) continue;
        for (int l = 0; l < r->cfg.n_layers; l++) {
            int32_t ids[4] = {q->kc[l], q->vc[l], i == G_COMPRESS ? -1 : q->knew[l], i == G_COMPRESS ? -1 : q->vnew[l]};
            for (int j = 0; j < 4; j++) {
                if (ids[j] < 0) continue;
                const ei_gtensor *t = &q->g->tensors[ids[j]];
                size_t e = ei_gtype_size(t->type);
                if (t->type != EI_GT_F32 && t->type != EI_GT_F16 && t->type != EI_GT_I8)
                    return ei_error_set("graph '%s': cache tensor '%s' is %s (f32, f16 or i8 expected)", q->g->name,
                                        t->name, ei_gtype_name(t->type));
                if (r->kv_elem && e != r->kv_elem)
                    return ei_error_set("graph '%s': cache tensor '%s' is %s, other cache tensors have %zu-byte "
                                        "elements", q->g->name, t->name, ei_gtype_name(t->type), r->kv_elem);
                r->kv_elem = e;
            }
        }
    }
    if (!r->kv_elem) r->kv_elem = sizeof(float);
    return 0;
}

static long scen_int(const ei_eig *e, const char *key, long def) {
    const char *v = ei_eig_kv_get(e, "SCEN", key);
    if (!v) return def;
    char *end;
    long x = strtol(v, &end, 10);
    return *end ? def : x;
}

static void runner_free_graph(rgraph *q) {
    free(q->bind);
    free(q->kc);
    free(q->vc);
    free(q->M);
    free(q->z);
    free(q->knew);
    free(q->vnew);
    free(q->Mout);
    free(q->zout);
}

void ei_runner_close(ei_runner *r) {
    if (!r) return;
    for (int i = 0; i < G_COUNT; i++) {
        if (r->gr[i].x) r->be->ops->release(r->gr[i].x);
        runner_free_graph(&r->gr[i]);
    }
    release_buffers(r); /* before the backend: NNAPI memory belongs to it */
    if (r->be) r->be->ops->destroy(r->be);
    void *lists[] = {r->ei.k, r->ei.v, r->base.k, r->base.v, r->M[0], r->M[1], r->z[0], r->z[1], r->knew, r->vnew};
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) free(lists[i]);
    free(r->hist);
    ei_tokenizer_free(r->tok);
    ei_eig_close(r->eig);
    free(r);
}

ei_runner *ei_runner_open(const char *path, const ei_runner_options *opt) {
    ei_runner_options def = {0};
    if (!opt) opt = &def;
    ei_runner *r = calloc(1, sizeof *r);
    if (!r) {
        ei_error_set("runner: out of memory");
        return NULL;
    }
    if (!(r->eig = ei_eig_open(path))) goto fail;
    r->cfg = *ei_eig_config(r->eig);
    ei_opts_default(&r->o);
    if (ei_eig_opts(r->eig, &r->o) != 0) goto fail;
    const char *mode = ei_eig_kv_get(r->eig, "SCEN", EI_SCEN_MODE);
    if (!mode || ei_mode_parse(mode, &r->mode) != 0) {
        ei_error_set("%s: no valid scenario mode in the file", path);
        goto fail;
    }
    r->N = (int)scen_int(r->eig, EI_SCEN_TOKENS_PER_CALL, 0);
    r->slots = (int)scen_int(r->eig, EI_SCEN_CACHE_SLOTS, 0);
    r->base_slots = (int)scen_int(r->eig, EI_SCEN_BASE_SLOTS, 0);
    r->L = r->o.segment;
    r->S = r->o.sink;
    r->W = r->o.window;
    r->R = r->W + r->L;
    if (r->N < 1 || r->slots < 1 || r->base_slots < 0 ||
        (r->mode != EI_MODE_FULL && (r->slots != r->S + r->R || r->N > r->L))) {
        ei_error_set("%s: inconsistent scenario (tokens per call %d, cache slots %d, S %d, W %d, L %d)", path, r->N,
                     r->slots, r->S, r->W, r->L);
        goto fail;
    }
    if (ei_eig_vocab(r->eig) && !(r->tok = ei_eig_tokenizer(r->eig))) goto fail;
    const char *bname = opt->backend ? opt->backend : "cpu";
    ei_backend_options bo = {0};
    bo.strict = opt->strict;
    bo.cpu = (ei_cpu_options){.threads = opt->threads, .no_fuse = opt->no_fuse};
    ei_runner_nnapi_options(opt, path, r->eig, &bo.nnapi);
    if (!(r->be = ei_backend_open(bname, &bo))) goto fail;
    {
        void *probe = ei_backend_nnapi_alloc(r->be, 64);
        r->nn_mem = probe != NULL;
        if (probe) ei_backend_nnapi_free(r->be, probe);
    }
    uint64_t blob_size;
    const uint8_t *blob = ei_eig_data(r->eig, &blob_size);
    for (int i = 0; i < G_COUNT; i++)
        if (bind_graph(r, i, blob, blob_size) != 0) goto fail;
    if (!r->gr[G_PREFILL].g || !r->gr[G_DECODE].g || (r->mode == EI_MODE_EDGEINFINITE && !r->gr[G_COMPRESS].g) ||
        (r->base_slots > 0 && (!r->gr[G_BASE_PREFILL].g || !r->gr[G_BASE_DECODE].g))) {
        ei_error_set("%s: the graphs of a '%s' scenario are missing", path, mode);
        goto fail;
    }
    const int nl = r->cfg.n_layers, Hkv = r->cfg.n_kv_heads, d = r->cfg.head_dim;
    r->row = (size_t)Hkv * d;
    if (cache_types(r) != 0) goto fail;
    const size_t kvb = r->row * r->kv_elem;
    const int nmax = r->N > 1 ? r->N : 1, smax = r->slots > r->base_slots ? r->slots : r->base_slots;
    r->ei.slots = r->slots;
    r->base.slots = r->base_slots;
    int fail = !(r->ei.k = (unsigned char **)alloc_layers(r, nl, (size_t)r->slots * kvb)) ||
               !(r->ei.v = (unsigned char **)alloc_layers(r, nl, (size_t)r->slots * kvb)) ||
               !(r->knew = (unsigned char **)alloc_layers(r, nl, (size_t)nmax * kvb)) ||
               !(r->vnew = (unsigned char **)alloc_layers(r, nl, (size_t)nmax * kvb));
    if (!fail && r->base_slots > 0)
        fail = !(r->base.k = (unsigned char **)alloc_layers(r, nl, (size_t)r->base_slots * kvb)) ||
               !(r->base.v = (unsigned char **)alloc_layers(r, nl, (size_t)r->base_slots * kvb));
    for (int b = 0; !fail && b < 2 && r->mode == EI_MODE_EDGEINFINITE; b++)
        fail = !(r->M[b] = (float **)alloc_layers(r, nl, r->row * d * sizeof(float))) ||
               !(r->z[b] = (float **)alloc_layers(r, nl, r->row * sizeof(float)));
    r->tokens = ralloc(r, sizeof *r->tokens * (size_t)nmax);
    r->qpos = ralloc(r, sizeof *r->qpos * (size_t)nmax);
    r->kpos = ralloc(r, sizeof *r->kpos * (size_t)smax);
    r->kbias = ralloc(r, sizeof *r->kbias * (size_t)smax);
    r->nbias = ralloc(r, sizeof *r->nbias * (size_t)nmax * nmax);
    r->rows = ralloc(r, sizeof *r->rows * (size_t)r->L);
    r->rowmask = ralloc(r, sizeof *r->rowmask * (size_t)r->L);
    r->memflag = ralloc(r, sizeof *r->memflag);
    r->logits = ralloc(r, sizeof *r->logits * (size_t)nmax * r->cfg.vocab_size);
    r->limit = r->base_slots;
    if (r->limit > 0) r->hist = calloc((size_t)r->limit, sizeof *r->hist);
    if (fail || !r->tokens || !r->qpos || !r->kpos || !r->kbias || !r->nbias || !r->rows || !r->rowmask || !r->memflag ||
        !r->logits || (r->limit > 0 && !r->hist)) {
        ei_error_set("runner: out of memory for the state of %s", path);
        goto fail;
    }
    ei_runner_reset(r);
    return r;
fail:
    ei_error_prefix("%s: ", path);
    ei_runner_close(r);
    return NULL;
}

/* ------------------------------------------------------------------ state */

static void state_reset(ei_runner *r) {
    const int nl = r->cfg.n_layers;
    r->ei.pos = 0;
    r->base.pos = 0;
    /* stale rows are masked by kbias; only the memory must start at zero */
    for (int b = 0; b < 2 && r->M[0]; b++)
        for (int l = 0; l < nl; l++) {
            memset(r->M[b][l], 0, r->row * r->cfg.head_dim * sizeof(float));
            memset(r->z[b][l], 0, r->row * sizeof(float));
        }
    r->mcur = 0;
}

static void start(ei_runner *r, int64_t expected) {
    state_reset(r);
    r->expected = expected;
    r->doc_pos = 0;
    r->n_hist = 0;
    r->on_base = r->mode != EI_MODE_FULL && r->limit > 0 && (expected < 0 || expected <= r->limit);
}

void ei_runner_reset(ei_runner *r) { start(r, -1); }
void ei_runner_begin(ei_runner *r, int64_t total_len) { start(r, total_len); }

/* ------------------------------------------------------------------ calls */

static int run(ei_runner *r, int which) {
    rgraph *q = &r->gr[which];
    double t0 = ei_time_now();
    int rc = r->be->ops->execute(q->x, q->bind);
    r->stats.calls[which]++;
    r->stats.seconds[which] += ei_time_now() - t0;
    return rc ? ei_error_prefix("runner: %s: ", q->g->name) : 0;
}

/* Masks among the call's n graph rows, k of them real: row t sees column u iff u <= t and u < k. */
static void fill_nbias(float *nb, int n, int k) {
    for (int t = 0; t < n; t++)
        for (int u = 0; u < n; u++) nb[(size_t)t * n + u] = u <= t && u < k ? 0.0f : EI_MASKED_BIAS;
}

/* NLL of the real rows and the last row's logits. */
static int take_outputs(ei_runner *r, int k, const int32_t *targets, double *nll, int64_t *count, float *last) {
    const int V = r->cfg.vocab_size;
    for (int t = 0; targets && t < k; t++) {
        if (targets[t] < 0) continue;
        if (targets[t] >= V) return ei_error_set("runner: target id %d outside the vocabulary of %d", targets[t], V);
        const float *row = r->logits + (size_t)t * V;
        double mx = row[0], z = 0;
        for (int j = 1; j < V; j++) mx = row[j] > mx ? row[j] : mx;
        for (int j = 0; j < V; j++) z += exp((double)row[j] - mx);
        if (nll) *nll += mx + log(z) - row[targets[t]];
        if (count) (*count)++;
    }
    if (last) memcpy(last, r->logits + (size_t)(k - 1) * V, (size_t)V * sizeof(float));
    return 0;
}

static int check_ids(const ei_runner *r, const int32_t *ids, int n) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= r->cfg.vocab_size)
            return ei_error_set("runner: token id %d outside the vocabulary of %d", ids[i], r->cfg.vocab_size);
    return 0;
}

/* Binds the per-call inputs and outputs shared by every attention graph. */
static void bind_step(ei_runner *r, rgraph *q, rcache *c) {
    q->bind[q->tokens] = r->tokens;
    q->bind[q->qpos] = r->qpos;
    q->bind[q->kpos] = r->kpos;
    q->bind[q->kbias] = r->kbias;
    q->bind[q->nbias] = r->nbias;
    q->bind[q->logits] = r->logits;
    for (int l = 0; l < r->cfg.n_layers; l++) {
        q->bind[q->kc[l]] = c->k[l];
        q->bind[q->vc[l]] = c->v[l];
        q->bind[q->knew[l]] = r->knew[l];
        q->bind[q->vnew[l]] = r->vnew[l];
        if (q->M[l] >= 0) {
            q->bind[q->M[l]] = r->M[r->mcur][l];
            q->bind[q->z[l]] = r->z[r->mcur][l];
        }
    }
}

/* The call's real K/V rows into their slots. */
static void store_rows(ei_runner *r, rcache *c, int k, int64_t pos0, int ring) {
    const size_t bytes = r->row * r->kv_elem;
    for (int t = 0; t < k; t++) {
        const int64_t j = pos0 + t;
        const int64_t slot = !ring ? j : j < r->S ? j : r->S + (j - r->S) % r->R;
        for (int l = 0; l < r->cfg.n_layers; l++) {
            memcpy(c->k[l] + (size_t)slot * bytes, r->knew[l] + (size_t)t * bytes, bytes);
            memcpy(c->v[l] + (size_t)slot * bytes, r->vnew[l] + (size_t)t * bytes, bytes);
        }
    }
}

/* Full attention (base graphs, or full mode): slot = position. */
static int base_call(ei_runner *r, rcache *c, int gp, int gd, const int32_t *ids, int k, const int32_t *targets,
                     double *nll, int64_t *count, float *last) {
    const int which = k == 1 ? gd : gp;
    rgraph *q = &r->gr[which];
    const int n = q->n;
    for (int t = 0; t < n; t++) {
        r->tokens[t] = t < k ? ids[t] : 0;
        r->qpos[t] = (int32_t)(c->pos + (t < k ? t : k - 1));
    }
    for (int s = 0; s < c->slots; s++) {
        r->kpos[s] = s;
        r->kbias[s] = s < c->pos ? 0.0f : EI_MASKED_BIAS;
    }
    fill_nbias(r->nbias, n, k);
    bind_step(r, q, c);
    if (run(r, which) != 0) return -1;
    r->stats.padded_rows += n - k;
    store_rows(r, c, k, c->pos, 0);
    c->pos += k;
    return take_outputs(r, k, targets, nll, count, last);
}

static int feed_full(ei_runner *r, rcache *c, int gp, int gd, const int32_t *ids, int64_t n, const int32_t *targets,
                     double *nll, int64_t *count, float *last) {
    if (c->pos + n > c->slots)
        return ei_error_set("runner: context full (%lld + %lld tokens, the cache holds %d)", (long long)c->pos,
                            (long long)n, c->slots);
    const int chunk = r->gr[gp].n;
    for (int64_t s = 0; s < n;) {
        int k = (int)(n - s < chunk ? n - s : chunk);
        if (base_call(r, c, gp, gd, ids + s, k, targets ? targets + s : NULL, nll, count, s + k == n ? last : NULL))
            return -1;
        s += k;
    }
    return 0;
}

/* RoPE position and visibility of every cache slot for a call of plan pl (model/segment.h; the
 * slot layout is the runner's, the positions and masks are the segment rule's). */
static void fill_cache_inputs(ei_runner *r, const ei_seg_plan *pl) {
    const int S = r->S, W = r->W, R = r->R, compact = r->o.positions == EI_POS_COMPACT;
    const int64_t pos = r->ei.pos, c = pos - pl->p; /* c: tokens committed before the segment */
    const int32_t base = compact ? pl->sf + pl->wf : S + W;
    for (int s = 0; s < r->slots; s++) {
        int64_t j; /* the token the slot holds */
        if (s < S) {
            j = s < pos ? s : -1;
        } else {
            const int64_t ring = s - S, last = pos - 1 - S;
            j = last < ring ? -1 : S + ring + (last - ring) / R * R;
        }
        int ok = 0;
        int32_t p = 0;
        if (j >= c) { /* the open segment's earlier tokens (sink or ring) */
            ok = 1;
            p = base + (int32_t)(j - c);
        } else if (j >= 0 && j < S) {
            ok = 1;
            p = (int32_t)j;
        } else if (j >= 0 && j >= c - pl->wf) { /* the window as the segment began */
            ok = 1;
            p = compact ? pl->sf + pl->wf - (int32_t)(c - j) : S + W - (int32_t)(c - j);
        }
        r->kpos[s] = ok ? p : 0;
        r->kbias[s] = ok ? 0.0f : EI_MASKED_BIAS;
    }
}

/* The memory update by the tokens leaving the window when the segment ending at committed
 * tokens `c_end` commits. */
static int compress(ei_runner *r, int64_t c_end) {
    const int S = r->S, W = r->W, L = r->L;
    const int64_t c = c_end - L;
    int64_t lo = c - W > S ? c - W : S, hi = c_end - W > S ? c_end - W : S;
    if (hi <= lo) return 0;
    rgraph *q = &r->gr[G_COMPRESS];
    for (int i = 0; i < L; i++) {
        const int64_t j = lo + i;
        r->rows[i] = j < hi ? (int32_t)(S + (j - S) % r->R) : 0;
        r->rowmask[i] = j < hi ? 1.0f : 0.0f;
    }
    q->bind[q->rows] = r->rows;
    q->bind[q->rowmask] = r->rowmask;
    const int nxt = 1 - r->mcur;
    for (int l = 0; l < r->cfg.n_layers; l++) {
        q->bind[q->kc[l]] = r->ei.k[l];
        q->bind[q->vc[l]] = r->ei.v[l];
        q->bind[q->M[l]] = r->M[r->mcur][l];
        q->bind[q->z[l]] = r->z[r->mcur][l];
        q->bind[q->Mout[l]] = r->M[nxt][l];
        q->bind[q->zout[l]] = r->z[nxt][l];
    }
    if (run(r, G_COMPRESS) != 0) return -1;
    r->mcur = nxt;
    return 0;
}

/* One call of the segment rule: at most min(N, rest of the segment) tokens. */
static int seg_call(ei_runner *r, const int32_t *ids, int64_t avail, const int32_t *targets, double *nll,
                    int64_t *count, float *last, int *taken) {
    const int64_t cap = avail < r->N ? avail : r->N;
    const ei_seg_plan pl = ei_seg_plan_at(&r->o, r->mode, r->ei.pos, cap);
    const int k = pl.n, which = k == 1 ? G_DECODE : G_PREFILL;
    rgraph *q = &r->gr[which];
    const int n = q->n;
    const int compact = r->o.positions == EI_POS_COMPACT;
    const int32_t base = compact ? pl.sf + pl.wf : r->S + r->W;
    for (int t = 0; t < n; t++) {
        r->tokens[t] = t < k ? ids[t] : 0;
        r->qpos[t] = base + pl.p + (t < k ? t : k - 1);
    }
    fill_cache_inputs(r, &pl);
    fill_nbias(r->nbias, n, k);
    bind_step(r, q, &r->ei);
    if (q->memflag >= 0) {
        *r->memflag = pl.mem ? 1.0f : 0.0f;
        q->bind[q->memflag] = r->memflag;
    }
    if (run(r, which) != 0) return -1;
    r->stats.padded_rows += n - k;
    store_rows(r, &r->ei, k, r->ei.pos, 1);
    r->ei.pos += k;
    if (pl.commit && r->mode == EI_MODE_EDGEINFINITE && compress(r, r->ei.pos) != 0) return -1;
    *taken = k;
    return take_outputs(r, k, targets, nll, count, last);
}

static int feed_ei(ei_runner *r, const int32_t *ids, int64_t n, const int32_t *targets, double *nll, int64_t *count,
                   float *last) {
    for (int64_t s = 0; s < n;) {
        int k;
        if (seg_call(r, ids + s, n - s, targets ? targets + s : NULL, nll, count, NULL, &k) != 0) return -1;
        s += k;
        if (s == n && last) memcpy(last, r->logits + (size_t)(k - 1) * r->cfg.vocab_size,
                                   (size_t)r->cfg.vocab_size * sizeof(float));
    }
    return 0;
}

int ei_runner_feed(ei_runner *r, const int32_t *ids, int64_t n, const int32_t *targets, double *nll,
                   int64_t *count, float *logits_last) {
    if (n < 1) return ei_error_set("runner: nothing to feed");
    if (n > INT32_MAX || check_ids(r, ids, (int)n) != 0) return n > INT32_MAX ? ei_error_set("runner: too many tokens") : -1;
    if (r->mode == EI_MODE_FULL) {
        if (feed_full(r, &r->ei, G_PREFILL, G_DECODE, ids, n, targets, nll, count, logits_last) != 0) return -1;
        r->doc_pos += n;
        return 0;
    }
    while (n > 0) {
        if (r->on_base) {
            int64_t room = r->expected >= 0 ? n : (r->limit - r->doc_pos < n ? r->limit - r->doc_pos : n);
            /* A call that crosses the threshold and returns only its last row (no targets) switches
             * first: the base model's rows before the threshold would be thrown away unseen and the
             * history re-run anyway, so the result is the same and the prompt is computed once (a
             * 2K-token prompt under a 1,156-token threshold ran 58% more prefill before). */
            if (r->expected < 0 && !targets && room < n) room = 0;
            if (room > 0) {
                if (r->expected < 0) {
                    memcpy(r->hist + r->n_hist, ids, (size_t)room * sizeof *ids);
                    r->n_hist += room;
                }
                if (feed_full(r, &r->base, G_BASE_PREFILL, G_BASE_DECODE, ids, room, targets, nll, count,
                              room == n ? logits_last : NULL) != 0)
                    return -1;
                r->doc_pos += room;
                ids += room;
                n -= room;
                if (targets) targets += room;
                continue;
            }
            /* the document outgrew the threshold: the EdgeInfinite state takes over */
            r->on_base = 0;
            state_reset(r);
            if (r->n_hist > 0 && feed_ei(r, r->hist, r->n_hist, NULL, NULL, NULL, NULL) != 0) return -1;
            r->n_hist = 0;
        }
        if (feed_ei(r, ids, n, targets, nll, count, logits_last) != 0) return -1;
        r->doc_pos += n;
        n = 0;
    }
    return 0;
}

const ei_eig *ei_runner_eig(const ei_runner *r) { return r->eig; }
const ei_model_config *ei_runner_config(const ei_runner *r) { return &r->cfg; }
const ei_opts *ei_runner_opts(const ei_runner *r) { return &r->o; }
ei_mode ei_runner_mode(const ei_runner *r) { return r->mode; }
int ei_runner_tokens_per_call(const ei_runner *r) { return r->N; }
int64_t ei_runner_capacity(const ei_runner *r) { return r->mode == EI_MODE_FULL ? r->slots : -1; }
const ei_tokenizer *ei_runner_tokenizer(const ei_runner *r) { return r->tok; }
const ei_runner_stats *ei_runner_stats_get(const ei_runner *r) { return &r->stats; }
const char *ei_runner_backend(const ei_runner *r) { return r->be->ops->name; }

void ei_runner_nnapi_graphs(const ei_runner *r, int *on_nnapi, int *on_cpu) {
    *on_nnapi = *on_cpu = 0;
    for (int i = 0; i < G_COUNT; i++) {
        ei_nnapi_exec_info info;
        if (r->gr[i].x && ei_backend_nnapi_exec_info(r->gr[i].x, &info) == 0) ++*(info.on_cpu ? on_cpu : on_nnapi);
    }
}
int64_t ei_runner_pos(const ei_runner *r) { return r->doc_pos; }
int ei_runner_on_base(const ei_runner *r) { return r->mode == EI_MODE_FULL || r->on_base; }

/* ------------------------------------------------------------------ document model */

static void dm_begin(void *impl, int64_t total) { ei_runner_begin(impl, total); }

static int dm_feed(void *impl, const int32_t *ids, int64_t n, const int32_t *targets, double *nll, int64_t *count,
                   float *logits_last) {
    return ei_runner_feed(impl, ids, n, targets, nll, count, logits_last);
}

static int dm_score(void *impl, const int32_t *ids, const int32_t *targets, const uint8_t *mask, int64_t n, double *nll,
                    int64_t *count) {
    ei_runner *r = impl;
    int32_t *scratch = malloc(sizeof *scratch * (size_t)(n > 0 ? n : 1));
    if (!scratch) return ei_error_set("runner: out of memory");
    ei_docmodel dm = ei_runner_docmodel(r);
    int rc = ei_docmodel_score_by_feed(&dm, ids, targets, mask, n, scratch, nll, count);
    free(scratch);
    return rc;
}

ei_docmodel ei_runner_docmodel(ei_runner *r) { return (ei_docmodel){r, r->cfg.vocab_size, dm_begin, dm_feed, dm_score}; }
