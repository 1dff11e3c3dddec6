/* A composite graph for the autograd engine's own tests (determinism across thread counts, arenas,
 * repeated runs, gradients of chains of every op family). It strings the ops together the way a
 * transformer segment does, with every weight a param and the state inputs requiring gradients, so
 * one graph exercises them all. It is test data for the engine, not the model: the model is
 * defined once, in model/recipe.c, and checked end to end by train/selfcheck.c. */
#ifndef EI_TESTS_AG_COMPOSITE_H
#define EI_TESTS_AG_COMPOSITE_H

#include "autograd/autograd.h"
#include "autograd/gradcheck.h"
#include "core/ei_error.h"

#include <math.h>
#include <string.h>

typedef struct {
    int vocab, dim, hidden, layers, heads, kv_heads, head_dim, seq, cache;
    ag_rope_layout layout;
} ag_tiny_cfg;

#define AG_TINY_MAX_LAYERS 4

typedef struct {
    ag_tensor *loss;                 /* [1], masked CE sum */
    ag_tensor *logits;               /* [seq, vocab] */
    ag_tensor *params[16 * AG_TINY_MAX_LAYERS + 4];
    int nparams;
    ag_tensor *state[4 * AG_TINY_MAX_LAYERS]; /* requires-grad inputs: cache K, cache V, M, z per layer */
    int nstate;
    ag_tensor *frozen[3 * AG_TINY_MAX_LAYERS + 1]; /* const weights: embedding, wk, wv */
    int nfrozen;
    ag_tensor *layer_out[AG_TINY_MAX_LAYERS]; /* residual stream after each layer [seq, dim] */
} ag_tiny_model;

/* Builds the composite into g (either dtype) and fills every leaf deterministically from seed.
 * Returns -1 with ei_error set if building failed. */


static ag_tensor *leaf(ag_graph *g, ag_kind kind, uint64_t *s, double lo, double hi, int nd, const int64_t *shape) {
    ag_tensor *t = kind == AG_LEAF_PARAM ? ag_param(g, nd, shape) : kind == AG_LEAF_CONST ? ag_const(g, nd, shape)
                                                                                         : ag_input(g, nd, shape);
    if (!t) return NULL;
    if (kind == AG_LEAF_INPUT && ag_tensor_set_requires_grad(t, 1)) return NULL;
    return ag_fill_uniform(t, s, lo, hi) ? NULL : t;
}


static int ag_tiny_build(ag_graph *g, const ag_tiny_cfg *c, uint64_t seed, ag_tiny_model *m) {
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


#endif
