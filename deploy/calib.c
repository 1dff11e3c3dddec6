#include "deploy/calib.h"

#include "core/ei_error.h"
#include "data/dataset.h"
#include "train/edge.h"
#include "train/seg_graph.h"
#include "train/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int slot(int n_layers, ei_tclass c, int layer) {
    return (int)c * (n_layers + 1) + (ei_tclass_per_layer(c) ? layer : n_layers);
}

const ei_calib_entry *ei_calib_get(const ei_calib *c, ei_tclass cls, int layer) {
    if ((unsigned)cls >= EI_TC_COUNT || (ei_tclass_per_layer(cls) && (layer < 0 || layer >= c->n_layers))) return NULL;
    const ei_calib_entry *e = &c->e[slot(c->n_layers, cls, layer)];
    return e->in.n ? e : NULL;
}

void ei_calib_free(ei_calib *c) {
    free(c->e);
    memset(c, 0, sizeof *c);
}

typedef struct {
    ei_calib *c;
    int rc;
} observer_ctx;

/* Ranges of the real rows (the first n_real) of every linear layer's input and output. */
static void observe(void *ctx, const void *graph, int n_real) {
    observer_ctx *oc = ctx;
    const ei_seg_graph *sg = graph;
    const int nl = oc->c->n_layers;
    for (int cls = 0; oc->rc == 0 && cls < EI_TC_COUNT; cls++) {
        if (!ei_qclass_is_matrix((ei_tclass)cls) && cls != EI_TC_MEMORY_GATE) continue;
        const int per = ei_tclass_per_layer((ei_tclass)cls);
        for (int l = per ? 0 : -1; oc->rc == 0 && l < (per ? nl : 0); l++) {
            const ag_tensor *x = ei_ag_emitter_linear_in(&sg->em, (ei_tclass)cls, l);
            const ag_tensor *y = ei_ag_emitter_linear_out(&sg->em, (ei_tclass)cls, l);
            if (!x || !y || x->dtype != AG_F32) continue;
            ei_calib_entry *e = &oc->c->e[slot(nl, (ei_tclass)cls, l)];
            const int64_t xc = x->shape[x->ndim - 1], yc = y->shape[y->ndim - 1];
            /* the classifier sees only the rows a graph computes logits for: all of them */
            if (ei_qrange_update(&e->in, x->data, (int64_t)n_real * xc, ei_tclass_name((ei_tclass)cls)) ||
                ei_qrange_update(&e->out, y->data, (int64_t)n_real * yc, ei_tclass_name((ei_tclass)cls)))
                oc->rc = -1;
        }
    }
}

/* Scores the first n samples of a dataset on an edge (observer may be set), summing the NLL. */
static int score(ei_edge *edge, const char *dataset, int64_t n_samples, int64_t max_tokens, double *nll,
                 int64_t *count, int64_t *samples) {
    ei_dataset *d = ei_dataset_open(dataset);
    if (!d) return -1;
    int64_t n = ei_dataset_n_samples(d);
    if (n_samples > 0 && n_samples < n) n = n_samples;
    ei_sample_buf b = {0};
    int rc = 0;
    *nll = 0;
    *count = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        int64_t len, cnt;
        ei_doc_result r;
        rc = ei_sample_load(&b, d, i, max_tokens, &len, &cnt);
        if (rc == 0 && len > 0) rc = ei_edge_doc_eval(edge, b.tokens, b.targets, b.pmask, len, &r);
        if (rc == 0 && len > 0) {
            *nll += r.nll_sum;
            *count += r.count;
        }
    }
    if (samples) *samples = n;
    ei_sample_free(&b);
    ei_dataset_close(d);
    if (rc == 0 && *count == 0) rc = ei_error_set("%s: no loss-masked tokens to score", dataset);
    return rc;
}

int ei_calib_run(ei_calib *c, const ei_calib_model *cm, const char *dataset, int64_t n_samples, int64_t max_tokens) {
    memset(c, 0, sizeof *c);
    c->n_layers = cm->m->cfg.n_layers;
    c->e = calloc((size_t)EI_TC_COUNT * ((size_t)c->n_layers + 1), sizeof *c->e);
    if (!c->e) return ei_error_set("calibration: out of memory");
    for (int i = 0; i < EI_TC_COUNT * (c->n_layers + 1); i++) {
        ei_qrange_init(&c->e[i].in);
        ei_qrange_init(&c->e[i].out);
    }
    ei_edge *edge = ei_edge_new(cm->m, &cm->o, (ei_gates *)cm->gates, cm->mode, AG_F32);
    if (!edge) {
        ei_calib_free(c);
        return -1;
    }
    observer_ctx oc = {c, 0};
    ei_edge_set_observer(edge, observe, &oc);
    double nll;
    int rc = score(edge, dataset, n_samples, max_tokens, &nll, &c->tokens, &c->samples);
    if (rc == 0 && oc.rc != 0) rc = -1;
    ei_edge_free(edge);
    if (rc != 0) {
        ei_calib_free(c);
        return ei_error_prefix("calibration on %s: ", dataset);
    }
    return 0;
}

/* A view of m whose tensor table points one weight at other data (the rest shared). */
static int model_view(const ei_model *m, ei_model *view, ei_tclass cls, int layer, const float *data) {
    *view = *m;
    ei_tensor_table *tt = &view->tensors;
    const size_t ni = (size_t)EI_TC_COUNT * ((size_t)m->cfg.n_layers + 1);
    tt->t = malloc(sizeof *tt->t * (size_t)m->tensors.n);
    tt->index = malloc(sizeof *tt->index * ni);
    if (!tt->t || !tt->index) {
        free(tt->t);
        free(tt->index);
        return ei_error_set("sensitivity: out of memory");
    }
    memcpy(tt->t, m->tensors.t, sizeof *tt->t * (size_t)m->tensors.n);
    memcpy(tt->index, m->tensors.index, sizeof *tt->index * ni);
    ei_tensor *t = ei_tensor_table_at(tt, cls, layer);
    if (t) t->data = data;
    return 0;
}

int ei_calib_loss(const ei_calib_model *cm, const char *dataset, int64_t n_samples, int64_t max_tokens, ei_tclass cls,
                  int layer, ei_qscheme s, const ei_qopts *qo, double *loss) {
    const ei_model *m = cm->m;
    ei_model view = *m;
    float *deq = NULL;
    const ei_tensor *t = cls == EI_TC_COUNT ? NULL : ei_tensor_table_get(&m->tensors, cls, layer);
    int rc = 0, own_view = 0;
    if (t && s != EI_QW_F32) {
        ei_qtensor q;
        char name[64];
        snprintf(name, sizeof name, "%s (layer %d)", ei_tclass_name(cls), layer);
        if (ei_qtensor_quantize(&q, name, t->data, t->shape[0], t->shape[1], s, qo) != 0) return -1;
        deq = malloc(sizeof *deq * (size_t)t->numel);
        rc = deq ? ei_dequantize_weight(s, q.rows, q.cols, q.data, q.scales, deq) : ei_error_set("out of memory");
        ei_qtensor_free(&q);
        if (rc == 0) rc = model_view(m, &view, cls, layer, deq);
        own_view = rc == 0;
    }
    ei_edge *edge = rc == 0 ? ei_edge_new(&view, &cm->o, (ei_gates *)cm->gates, cm->mode, AG_F32) : NULL;
    double nll = 0;
    int64_t count = 0;
    if (rc == 0 && !edge) rc = -1;
    if (rc == 0) rc = score(edge, dataset, n_samples, max_tokens, &nll, &count, NULL);
    if (rc == 0) *loss = nll / (double)count;
    ei_edge_free(edge);
    if (own_view) {
        free(view.tensors.t);
        free(view.tensors.index);
    }
    free(deq);
    return rc;
}

int ei_calib_sensitivity(const ei_calib_model *cm, const char *dataset, int64_t n_samples, int64_t max_tokens,
                         const ei_qscheme *cands, int n_cands, const ei_qopts *qo, FILE *out,
                         ei_qbudget_item **items_out, int *n_items, double *base_loss) {
    const ei_model *m = cm->m;
    *items_out = NULL;
    *n_items = 0;
    if (ei_calib_loss(cm, dataset, n_samples, max_tokens, EI_TC_COUNT, -1, EI_QW_F32, qo, base_loss) != 0) return -1;
    ei_qbudget_item *items = calloc((size_t)m->tensors.n, sizeof *items);
    if (!items) return ei_error_set("sensitivity: out of memory");
    int n = 0, rc = 0;
    if (out) {
        fprintf(out, "sensitivity: float32 validation loss %.6f; loss increase when only one tensor is quantised\n",
                *base_loss);
        fprintf(out, "%-12s %5s", "tensor", "layer");
        for (int k = 0; k < n_cands; k++) fprintf(out, " %10s", ei_qscheme_name(cands[k]));
        fputc('\n', out);
    }
    for (int i = 0; rc == 0 && i < m->tensors.n; i++) {
        const ei_tensor *t = &m->tensors.t[i];
        if (!ei_qclass_is_matrix(t->cls)) continue;
        ei_qcand *cand = calloc((size_t)n_cands, sizeof *cand);
        if (!cand) {
            rc = ei_error_set("sensitivity: out of memory");
            break;
        }
        int nc = 0;
        if (out) fprintf(out, "%-12s %5d", ei_tclass_name(t->cls), t->layer);
        for (int k = 0; rc == 0 && k < n_cands; k++) {
            /* the same fallbacks the lowering applies: w4 groups that do not divide the rows, and no
             * int4 in a gathered embedding table */
            ei_qscheme s = ei_qscheme_fit(cands[k], t->shape[1]);
            if (t->cls == EI_TC_EMBEDDING) s = ei_qscheme_gathered(s);
            double loss = *base_loss;
            if (s != EI_QW_F32)
                rc = ei_calib_loss(cm, dataset, n_samples, max_tokens, t->cls, t->layer, s, qo, &loss);
            if (rc) break;
            cand[nc++] = (ei_qcand){s, ei_qscheme_file_bytes(s, t->shape[0], t->shape[1]), loss - *base_loss};
            if (out) fprintf(out, " %+10.5f", loss - *base_loss);
        }
        if (out) {
            fputc('\n', out);
            fflush(out);
        }
        items[n++] = (ei_qbudget_item){t->cls, t->layer, nc, cand};
    }
    if (rc != 0) {
        for (int i = 0; i < n; i++) free((void *)items[i].cand);
        free(items);
        return -1;
    }
    *items_out = items;
    *n_items = n;
    return 0;
}
