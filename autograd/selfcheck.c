/* Tiny transformer builder and the per-family gradient self-check (see selfcheck.h). */
#include "autograd/selfcheck.h"
#include "core/ei_error.h"

#include <math.h>
#include <string.h>

static ag_tensor *leaf(ag_graph *g, ag_kind kind, uint64_t *s, double lo, double hi, int nd, const int64_t *shape) {
    ag_tensor *t = kind == AG_LEAF_PARAM ? ag_param(g, nd, shape) : kind == AG_LEAF_CONST ? ag_const(g, nd, shape)
                                                                                         : ag_input(g, nd, shape);
    if (!t) return NULL;
    if (kind == AG_LEAF_INPUT && ag_tensor_set_requires_grad(t, 1)) return NULL;
    return ag_fill_uniform(t, s, lo, hi) ? NULL : t;
}

int ag_tiny_build(ag_graph *g, const ag_tiny_cfg *c, uint64_t seed, ag_tiny_model *m) {
    memset(m, 0, sizeof *m);
    if (c->layers < 1 || c->layers > AG_TINY_MAX_LAYERS) return ei_error_set("tiny: 1..%d layers", AG_TINY_MAX_LAYERS);
    const int64_t T = c->seq, C = c->cache, D = c->dim, H = c->heads, HK = c->kv_heads, HD = c->head_dim;
    const int64_t G = H / HK, F = c->hidden, V = c->vocab, TK = C + T;
    uint64_t s = seed;
    const double ws = 1.0 / sqrt((double)D), hs = 1.0 / sqrt((double)F), os = 1.0 / sqrt((double)(H * HD));
#define PARAM(lo, hi, ...) (m->params[m->nparams++] = leaf(g, AG_LEAF_PARAM, &s, lo, hi, AG_SHAPE(__VA_ARGS__)))
#define FROZEN(lo, hi, ...) (m->frozen[m->nfrozen++] = leaf(g, AG_LEAF_CONST, &s, lo, hi, AG_SHAPE(__VA_ARGS__)))
#define STATE(lo, hi, ...) (m->state[m->nstate++] = leaf(g, AG_LEAF_INPUT, &s, lo, hi, AG_SHAPE(__VA_ARGS__)))

    /* integer inputs: tokens, targets (one ignored), loss mask, positions, slot validity */
    ag_tensor *tok = ag_input_i32(g, AG_SHAPE(T)), *tgt = ag_input_i32(g, AG_SHAPE(T));
    ag_tensor *lmask = ag_input_u8(g, AG_SHAPE(T)), *qpos = ag_input_i32(g, AG_SHAPE(T));
    ag_tensor *kpos = ag_input_i32(g, AG_SHAPE(TK)), *valid = ag_input_u8(g, AG_SHAPE(TK));
    if (!tok || !tgt || !lmask || !qpos || !kpos || !valid) return -1;
    int32_t *tk = ag_tensor_data(tok), *tg = ag_tensor_data(tgt), *qp = ag_tensor_data(qpos), *kp = ag_tensor_data(kpos);
    uint8_t *lm = ag_tensor_data(lmask), *vd = ag_tensor_data(valid);
    for (int64_t t = 0; t < T; t++) {
        tk[t] = (int32_t)((t * 7 + 3) % V);
        tg[t] = t == 1 ? -1 : (int32_t)((t * 5 + 1) % V);
        lm[t] = t != T - 1;
        qp[t] = (int32_t)(C + t);
    }
    for (int64_t j = 0; j < TK; j++) {
        kp[j] = (int32_t)j;
        vd[j] = !(C > 1 && j == 1); /* one unfilled cache slot */
    }

    ag_tensor *emb = FROZEN(-1, 1, V, D);
    ag_tensor *x = ag_embedding(g, emb, tok);
    for (int l = 0; l < c->layers; l++) {
        ag_tensor *an = PARAM(0.5, 1.5, D), *wq = PARAM(-ws, ws, H * HD, D);
        ag_tensor *wk = FROZEN(-ws, ws, HK * HD, D), *wv = FROZEN(-ws, ws, HK * HD, D);
        ag_tensor *wo = PARAM(-os, os, D, H * HD), *fn = PARAM(0.5, 1.5, D);
        ag_tensor *w1 = PARAM(-ws, ws, F, D), *w3 = PARAM(-ws, ws, F, D), *w2 = PARAM(-hs, hs, D, F);
        ag_tensor *wg = PARAM(-ws, ws, H, D), *bg = PARAM(-0.5, 0.5, H);
        ag_tensor *ck = STATE(-1, 1, C, HK, HD), *cv = STATE(-1, 1, C, HK, HD);
        ag_tensor *M = STATE(-0.5, 0.5, HK, HD, HD), *z = STATE(0.5, 1.5, HK, 1, HD);

        ag_tensor *xn = ag_rmsnorm(g, x, an, 1e-5);
        ag_tensor *q = ag_reshape(g, ag_linear(g, xn, wq, NULL), AG_SHAPE(T, H, HD));
        ag_tensor *k = ag_reshape(g, ag_linear(g, xn, wk, NULL), AG_SHAPE(T, HK, HD));
        ag_tensor *v = ag_reshape(g, ag_linear(g, xn, wv, NULL), AG_SHAPE(T, HK, HD));
        ag_tensor *kall = ag_rope(g, ag_concat(g, ck, k, 0), kpos, 10000.0, c->layout);
        ag_tensor *vall = ag_concat(g, cv, v, 0);
        ag_tensor *aloc = ag_attention(g, ag_rope(g, q, qpos, 10000.0, c->layout), kall, vall, valid,
                                       1.0 / sqrt((double)HD), C);
        /* memory read-out per kv head: [T,H,HD] -> [H,T,HD] -> [HK, G*T, HD] */
        ag_tensor *sq = ag_reshape(g, ag_transpose(g, ag_elu1(g, q), 0, 1), AG_SHAPE(HK, G * T, HD));
        ag_tensor *num = ag_matmul(g, sq, M, 0, 0);
        ag_tensor *den = ag_add_scalar(g, ag_matmul(g, sq, z, 0, 1), 1e-6);
        ag_tensor *amem = ag_transpose(g, ag_reshape(g, ag_div(g, num, den), AG_SHAPE(H, T, HD)), 0, 1);
        ag_tensor *gate = ag_reshape(g, ag_sigmoid(g, ag_linear(g, xn, wg, bg)), AG_SHAPE(T, H, 1));
        ag_tensor *one_minus = ag_add_scalar(g, ag_scale(g, gate, -1.0), 1.0);
        ag_tensor *a = ag_add(g, ag_mul(g, gate, amem), ag_mul(g, one_minus, aloc));
        x = ag_add(g, x, ag_linear(g, ag_reshape(g, a, AG_SHAPE(T, H * HD)), wo, NULL));
        ag_tensor *h = ag_rmsnorm(g, x, fn, 1e-5);
        x = ag_add(g, x, ag_linear(g, ag_swiglu(g, ag_linear(g, h, w1, NULL), ag_linear(g, h, w3, NULL)), w2, NULL));
        m->layer_out[l] = x;
    }
    ag_tensor *fnorm = PARAM(0.5, 1.5, D), *cls = PARAM(-ws, ws, V, D);
    m->logits = ag_linear(g, ag_rmsnorm(g, x, fnorm, 1e-5), cls, NULL);
    m->loss = ag_cross_entropy(g, m->logits, tgt, lmask);
#undef PARAM
#undef FROZEN
#undef STATE
    if (!m->loss) return -1;
    return ag_graph_finalize(g);
}

/* ------------------------------------------------------------------ families */

typedef struct {
    ag_graph *g;
    uint64_t s;
    ag_tensor *wrt[16];
    int n;
} fam;

static ag_tensor *P(fam *f, double lo, double hi, int nd, const int64_t *shape) {
    ag_tensor *t = leaf(f->g, AG_LEAF_PARAM, &f->s, lo, hi, nd, shape);
    if (t && f->n < 16) f->wrt[f->n++] = t;
    return t;
}

static ag_tensor *I32(fam *f, int64_t n, int32_t mod, int32_t add) {
    ag_tensor *t = ag_input_i32(f->g, AG_SHAPE(n));
    if (!t) return NULL;
    int32_t *d = ag_tensor_data(t);
    for (int64_t i = 0; i < n; i++) d[i] = (int32_t)((i * 5 + add) % mod);
    return t;
}

/* Adds the random-projection loss of every output to one scalar. */
static ag_tensor *total(fam *f, int n, ag_tensor **outs) {
    ag_tensor *l = NULL;
    for (int i = 0; i < n; i++) {
        ag_tensor *li = ag_gradcheck_loss(f->g, outs[i], f->s + (uint64_t)i * 31 + 1);
        l = l ? ag_add(f->g, l, li) : li;
    }
    return l;
}

static ag_tensor *fam_matmul(fam *f) {
    ag_tensor *a = P(f, -1, 1, AG_SHAPE(2, 3, 4)), *b = P(f, -1, 1, AG_SHAPE(2, 5, 4)), *w = P(f, -1, 1, AG_SHAPE(3, 4));
    ag_tensor *bias = P(f, -1, 1, AG_SHAPE(3));
    ag_tensor *o[3] = {ag_matmul(f->g, a, b, 0, 1), ag_matmul(f->g, a, w, 1, 0), ag_linear(f->g, a, w, bias)};
    return total(f, 3, o);
}

static ag_tensor *fam_elementwise(fam *f) {
    ag_tensor *a = P(f, -2, 2, AG_SHAPE(3, 4)), *b = P(f, 0.5, 1.5, AG_SHAPE(4)), *c = P(f, 0.1, 2, AG_SHAPE(3, 1));
    ag_tensor *o[8] = {ag_add(f->g, a, b),   ag_sub(f->g, c, a),     ag_mul(f->g, a, c),     ag_div(f->g, a, b),
                       ag_silu(f->g, a),     ag_sigmoid(f->g, a),   ag_exp(f->g, a),       ag_swiglu(f->g, a, ag_scale(f->g, a, 0.3))};
    ag_tensor *l = total(f, 8, o);
    ag_tensor *e = ag_elu1(f->g, ag_concat(f->g, c, ag_scale(f->g, c, -1.0), 1));
    return ag_add(f->g, l, ag_gradcheck_loss(f->g, e, 99));
}

static ag_tensor *fam_reduce(fam *f) {
    ag_tensor *a = P(f, -2, 2, AG_SHAPE(2, 3, 5));
    ag_tensor *o[4] = {ag_sum(f->g, a, 1, 0), ag_mean(f->g, a, -1, 1), ag_softmax(f->g, a), ag_sum_all(f->g, a)};
    return total(f, 4, o);
}

static ag_tensor *fam_norm_rope(fam *f) {
    ag_tensor *x = P(f, -1, 1, AG_SHAPE(4, 2, 6)), *w = P(f, 0.5, 1.5, AG_SHAPE(6));
    ag_tensor *pos = I32(f, 4, 100, 3);
    ag_tensor *o[3] = {ag_rmsnorm(f->g, x, w, 1e-5), ag_rope(f->g, x, pos, 10000.0, AG_ROPE_INTERLEAVED),
                       ag_rope(f->g, x, pos, 10000.0, AG_ROPE_HALF)};
    return total(f, 3, o);
}

static ag_tensor *fam_attention(fam *f) {
    ag_tensor *q = P(f, -1, 1, AG_SHAPE(3, 4, 4)), *k = P(f, -1, 1, AG_SHAPE(6, 2, 4)), *v = P(f, -1, 1, AG_SHAPE(6, 2, 5));
    ag_tensor *valid = ag_input_u8(f->g, AG_SHAPE(6));
    if (!valid) return NULL;
    uint8_t *vd = ag_tensor_data(valid);
    for (int j = 0; j < 6; j++) vd[j] = j != 1;
    ag_tensor *o[2] = {ag_attention(f->g, q, k, v, valid, 0.5, 3), ag_attention(f->g, q, k, v, NULL, 0.7, AG_ATTN_NONCAUSAL)};
    return total(f, 2, o);
}

static ag_tensor *fam_embed_ce(fam *f) {
    ag_tensor *tab = P(f, -1, 1, AG_SHAPE(7, 4)), *l = P(f, -2, 2, AG_SHAPE(5, 7));
    ag_tensor *e = ag_embedding(f->g, tab, I32(f, 6, 7, 2));
    ag_tensor *ce = ag_cross_entropy(f->g, l, I32(f, 5, 7, 1), NULL);
    return ag_add(f->g, ag_gradcheck_loss(f->g, e, 5), ce);
}

static ag_tensor *fam_shape(fam *f) {
    ag_tensor *a = P(f, -1, 1, AG_SHAPE(2, 3, 4)), *b = P(f, -1, 1, AG_SHAPE(2, 2, 4));
    ag_tensor *o[4] = {ag_concat(f->g, a, b, 1), ag_slice(f->g, a, 2, 1, 2), ag_transpose(f->g, a, 0, 2),
                       ag_mul(f->g, ag_reshape(f->g, a, AG_SHAPE(6, 4)), ag_reshape(f->g, ag_transpose(f->g, a, 0, 1), AG_SHAPE(6, 4)))};
    return total(f, 4, o);
}

static int check_one(const char *name, ag_tensor *(*build)(fam *), ag_selfcheck_row *row, uint64_t seed) {
    fam f = {ag_graph_new(AG_F64, 0), seed, {0}, 0};
    if (!f.g) return -1;
    ag_tensor *loss = build(&f);
    ag_gradcheck_result r;
    int rc = loss ? ag_gradcheck(f.g, loss, f.n, f.wrt, 1e-5, 0, &r) : (ag_graph_finalize(f.g), -1);
    ag_graph_free(f.g);
    if (rc) return ei_error_prefix("selfcheck %s: ", name);
    *row = (ag_selfcheck_row){name, r.max_rel_err, r.max_abs_grad, r.n_checked};
    return 0;
}

int ag_selfcheck_run(ag_selfcheck_row *rows, int max, uint64_t seed) {
    static const struct {
        const char *name;
        ag_tensor *(*build)(fam *);
    } fams[] = {
        {"matmul/linear", fam_matmul},      {"elementwise", fam_elementwise}, {"sum/mean/softmax", fam_reduce},
        {"rmsnorm/rope", fam_norm_rope},    {"attention", fam_attention},     {"embedding/xent", fam_embed_ce},
        {"concat/slice/reshape/transpose", fam_shape},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof fams / sizeof fams[0] && n < max; i++, n++)
        if (check_one(fams[i].name, fams[i].build, &rows[n], seed + i)) return -1;
    if (n >= max) return n;
    /* end to end: the tiny 2-layer transformer, every param and state input */
    ag_graph *g = ag_graph_new(AG_F64, 0);
    ag_tiny_cfg cfg = {11, 8, 12, 2, 4, 2, 4, 5, 3, AG_ROPE_HALF};
    ag_tiny_model m;
    if (!g) return -1;
    if (ag_tiny_build(g, &cfg, seed, &m)) {
        ag_graph_free(g);
        return ei_error_prefix("selfcheck transformer: ");
    }
    ag_tensor *wrt[16 * AG_TINY_MAX_LAYERS + 4 + 4 * AG_TINY_MAX_LAYERS];
    int nw = 0;
    for (int i = 0; i < m.nparams; i++) wrt[nw++] = m.params[i];
    for (int i = 0; i < m.nstate; i++) wrt[nw++] = m.state[i];
    ag_gradcheck_result r;
    int rc = ag_gradcheck(g, m.loss, nw, wrt, 1e-5, 0, &r);
    ag_graph_free(g);
    if (rc) return ei_error_prefix("selfcheck transformer: ");
    rows[n++] = (ag_selfcheck_row){"2-layer transformer", r.max_rel_err, r.max_abs_grad, r.n_checked};
    return n;
}
