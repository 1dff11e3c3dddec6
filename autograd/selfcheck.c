/* The per-op-family gradient self-check (see selfcheck.h). */
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
    return n;
}
