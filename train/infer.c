#include "train/infer.h"

#include "core/ei_error.h"
#include "kernels/infer_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tokens per internal chunk: large enough for sgemm to pay off, small enough that activation
 * buffers stay in cache for small models. */
#define EI_INFER_CHUNK 128

struct ei_infer {
    const ei_model *m;
    int max_ctx, pos, chunk;
    size_t qd, kvd;
    float *kc, *vc;           /* [n_layers, max_ctx, kvd]: keys (RoPE applied) and values */
    float *cos_tab, *sin_tab; /* [max_ctx, head_dim / 2] */
    float *x, *xn, *q, *att;  /* [chunk, D], [chunk, D], [chunk, qd], [chunk, qd] */
    float *ffn;               /* [chunk, D + 2F] */
    float *logits;            /* [chunk, V] for ei_infer_score */
    float *scores;            /* [chunk, max_ctx]: one head's attention scores during prefill */
    int32_t *posbuf;          /* [chunk] */
    ei_infer_progress_fn progress;
    void *progress_ctx;
};

static void *xcalloc(size_t n, size_t sz, int *fail) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) *fail = 1;
    return p;
}

ei_infer *ei_infer_new(const ei_model *m, int max_ctx) {
    const ei_model_config *c = &m->cfg;
    if (max_ctx <= 0) max_ctx = c->max_seq_len;
    if (max_ctx < 2) {
        ei_error_set("inference context must hold at least 2 tokens (got %d)", max_ctx);
        return NULL;
    }
    if (c->head_dim > EI_K_MAX_HEAD_DIM) {
        ei_error_set("%s: head_dim %d exceeds the inference kernels' limit of %d", m->path, c->head_dim,
                     EI_K_MAX_HEAD_DIM);
        return NULL;
    }
    ei_infer *inf = calloc(1, sizeof *inf);
    if (!inf) {
        ei_error_set("out of memory");
        return NULL;
    }
    int fail = 0;
    inf->m = m;
    inf->max_ctx = max_ctx;
    inf->chunk = max_ctx < EI_INFER_CHUNK ? max_ctx : EI_INFER_CHUNK;
    inf->qd = (size_t)c->n_heads * c->head_dim;
    inf->kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t C = (size_t)inf->chunk, D = (size_t)c->dim;
    inf->kc = xcalloc((size_t)c->n_layers * max_ctx * inf->kvd, sizeof(float), &fail);
    inf->vc = xcalloc((size_t)c->n_layers * max_ctx * inf->kvd, sizeof(float), &fail);
    inf->cos_tab = xcalloc((size_t)max_ctx * (c->head_dim / 2), sizeof(float), &fail);
    inf->sin_tab = xcalloc((size_t)max_ctx * (c->head_dim / 2), sizeof(float), &fail);
    inf->x = xcalloc(C * D, sizeof(float), &fail);
    inf->xn = xcalloc(C * D, sizeof(float), &fail);
    inf->q = xcalloc(C * inf->qd, sizeof(float), &fail);
    inf->att = xcalloc(C * inf->qd, sizeof(float), &fail);
    inf->ffn = xcalloc(C * (D + 2 * (size_t)c->hidden_dim), sizeof(float), &fail);
    inf->posbuf = xcalloc(C, sizeof(int32_t), &fail);
    inf->scores = xcalloc(C * (size_t)max_ctx, sizeof(float), &fail);
    if (fail) {
        ei_infer_free(inf);
        ei_error_set("out of memory allocating a %d-token KV cache", max_ctx);
        return NULL;
    }
    ei_k_rope_table(inf->cos_tab, inf->sin_tab, max_ctx, c->head_dim, c->rope_theta);
    return inf;
}

void ei_infer_free(ei_infer *inf) {
    if (!inf) return;
    free(inf->kc);
    free(inf->vc);
    free(inf->cos_tab);
    free(inf->sin_tab);
    free(inf->x);
    free(inf->xn);
    free(inf->q);
    free(inf->att);
    free(inf->ffn);
    free(inf->logits);
    free(inf->posbuf);
    free(inf->scores);
    free(inf);
}

void ei_infer_reset(ei_infer *inf) { inf->pos = 0; }
int ei_infer_pos(const ei_infer *inf) { return inf->pos; }
int ei_infer_max_ctx(const ei_infer *inf) { return inf->max_ctx; }
const ei_model *ei_infer_model(const ei_infer *inf) { return inf->m; }

void ei_infer_set_progress(ei_infer *inf, ei_infer_progress_fn fn, void *ctx) {
    inf->progress = fn;
    inf->progress_ctx = ctx;
}

void ei_infer_qkv(const ei_model *m, int layer, const float *xn, int n, float *q, float *k, float *v) {
    const ei_model_config *c = &m->cfg;
    const ei_layer_weights *w = &m->layers[layer];
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    ei_k_linear(q, xn, w->wq, w->bq, n, c->dim, qd);
    ei_k_linear(k, xn, w->wk, w->bk, n, c->dim, kvd);
    ei_k_linear(v, xn, w->wv, w->bv, n, c->dim, kvd);
}

void ei_infer_ffn(const ei_model *m, int layer, float *x, int n, float *scratch) {
    const ei_model_config *c = &m->cfg;
    const ei_layer_weights *w = &m->layers[layer];
    size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim;
    float *xn = scratch, *g = scratch + (size_t)n * D, *u = g + (size_t)n * F;
    ei_k_rmsnorm(xn, x, w->ffn_norm, n, c->dim, c->norm_eps);
    ei_k_linear(g, xn, w->w_gate, NULL, n, c->dim, c->hidden_dim);
    ei_k_linear(u, xn, w->w_up, NULL, n, c->dim, c->hidden_dim);
    ei_k_swiglu(g, g, u, (size_t)n * F);
    ei_k_linear(xn, g, w->w_down, NULL, n, c->hidden_dim, c->dim);
    for (size_t i = 0; i < (size_t)n * D; i++) x[i] += xn[i];
}

/* n <= chunk tokens at inf->pos; logits rows as requested. */
static void forward_chunk(ei_infer *inf, const int32_t *ids, int n, float *logits, ei_infer_logits which) {
    const ei_model *m = inf->m;
    const ei_model_config *c = &m->cfg;
    size_t D = (size_t)c->dim, kvd = inf->kvd;
    for (int i = 0; i < n; i++) {
        memcpy(inf->x + i * D, m->tok_embeddings + (size_t)ids[i] * D, D * sizeof(float));
        inf->posbuf[i] = inf->pos + i;
    }
    float scale = 1.0f / sqrtf((float)c->head_dim);
    for (int l = 0; l < c->n_layers; l++) {
        const ei_layer_weights *w = &m->layers[l];
        float *kl = inf->kc + (size_t)l * inf->max_ctx * kvd, *vl = inf->vc + (size_t)l * inf->max_ctx * kvd;
        ei_k_rmsnorm(inf->xn, inf->x, w->attn_norm, n, c->dim, c->norm_eps);
        ei_infer_qkv(m, l, inf->xn, n, inf->q, kl + (size_t)inf->pos * kvd, vl + (size_t)inf->pos * kvd);
        ei_k_rope(inf->q, n, inf->qd, c->n_heads, c->head_dim, inf->posbuf, inf->cos_tab, inf->sin_tab,
                  c->rope_interleaved);
        ei_k_rope(kl + (size_t)inf->pos * kvd, n, kvd, c->n_kv_heads, c->head_dim, inf->posbuf, inf->cos_tab,
                  inf->sin_tab, c->rope_interleaved);
        if (n == 1)
            ei_k_attention(inf->att, inf->q, kl, vl, n, inf->pos + n, c->n_heads, c->n_kv_heads, c->head_dim,
                           inf->pos, NULL, scale);
        else
            ei_k_attention_gemm(inf->att, inf->q, kl, vl, n, inf->pos + n, c->n_heads, c->n_kv_heads, c->head_dim,
                                inf->pos, scale, inf->scores);
        ei_k_linear(inf->xn, inf->att, w->wo, NULL, n, (int)inf->qd, c->dim);
        for (size_t i = 0; i < (size_t)n * D; i++) inf->x[i] += inf->xn[i];
        ei_infer_ffn(m, l, inf->x, n, inf->ffn);
    }
    inf->pos += n;
    if (which == EI_INFER_NONE) return;
    int first = which == EI_INFER_LAST ? n - 1 : 0;
    ei_k_rmsnorm(inf->xn, inf->x + first * D, m->final_norm, n - first, c->dim, c->norm_eps);
    ei_k_linear(logits, inf->xn, m->classifier, NULL, n - first, c->dim, c->vocab_size);
}

int ei_infer_forward(ei_infer *inf, const int32_t *ids, int n, float *logits, ei_infer_logits which) {
    const ei_model_config *c = &inf->m->cfg;
    if (n <= 0) return ei_error_set("inference: no tokens to run");
    if (which != EI_INFER_NONE && !logits) return ei_error_set("inference: no logits buffer");
    if (n > inf->max_ctx - inf->pos)
        return ei_error_set("inference: %d more tokens do not fit the context (%d of %d used)", n, inf->pos,
                            inf->max_ctx);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return ei_error_set("inference: token id %d outside the vocabulary of %d", ids[i], c->vocab_size);
    for (int s = 0; s < n; s += inf->chunk) {
        int len = n - s < inf->chunk ? n - s : inf->chunk;
        ei_infer_logits w = which;
        float *out = logits;
        if (which == EI_INFER_LAST && s + len < n) w = EI_INFER_NONE;
        if (which == EI_INFER_ALL) out = logits + (size_t)s * c->vocab_size;
        forward_chunk(inf, ids + s, len, out, w);
    }
    return 0;
}

int ei_infer_score(ei_infer *inf, const int32_t *ids, int n, int stride, double *nll_sum, int64_t *n_pred) {
    const ei_model_config *c = &inf->m->cfg;
    int ctx = inf->max_ctx;
    if (stride <= 0) stride = ctx / 2;
    if (stride > ctx - 1) stride = ctx - 1; /* larger strides would leave targets unscored */
    if (n < 2) return 0;
    if (!inf->logits) {
        inf->logits = malloc((size_t)inf->chunk * c->vocab_size * sizeof(float));
        if (!inf->logits) return ei_error_set("inference: out of memory for logits");
    }
    double sum = 0.0;
    int scored = 0; /* targets ids[1..scored] are done */
    for (int s = 0;; s += stride) {
        int e = s + ctx < n ? s + ctx : n;
        ei_infer_reset(inf);
        for (int cs = s; cs < e; cs += inf->chunk) {
            int len = e - cs < inf->chunk ? e - cs : inf->chunk;
            /* row r predicts ids[cs + r + 1]; only targets beyond `scored` and inside the window count */
            int need = cs + len > scored && cs + 1 < e;
            if (ei_infer_forward(inf, ids + cs, len, inf->logits, need ? EI_INFER_ALL : EI_INFER_NONE) != 0) return -1;
            if (!need) continue;
            for (int r = 0; r < len; r++) {
                int t = cs + r + 1;
                if (t <= scored || t >= e) continue;
                sum += ei_k_nll(inf->logits + (size_t)r * c->vocab_size, c->vocab_size, ids[t]);
            }
        }
        scored = e - 1;
        if (inf->progress) inf->progress(inf->progress_ctx, scored, n - 1);
        if (e == n) break;
    }
    ei_infer_reset(inf);
    *nll_sum += sum;
    *n_pred += n - 1;
    return 0;
}
