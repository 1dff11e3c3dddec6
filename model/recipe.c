#include "model/recipe.h"

#include <math.h>

#define OPS(em) ((em)->ops)
#define SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

static ei_val *W(ei_emitter *em, ei_tclass c, int l) { return OPS(em)->weight(em, c, l); }

static ei_val *reshape(ei_emitter *em, ei_val *x, int nd, const int64_t *s) {
    return x ? OPS(em)->reshape(em, x, nd, s) : NULL;
}
static ei_val *bin(ei_emitter *em, ei_binop op, ei_val *a, ei_val *b) {
    return a && b ? OPS(em)->binary(em, op, a, b) : NULL;
}

ei_val *ei_recipe_embed(ei_emitter *em, ei_val *ids) {
    ei_val *t = W(em, EI_TC_EMBEDDING, -1);
    return t && ids ? OPS(em)->embedding(em, t, ids) : NULL;
}

ei_val *ei_recipe_logits(ei_emitter *em, ei_val *x) {
    ei_val *w = W(em, EI_TC_FINAL_NORM, -1), *cls = W(em, EI_TC_CLASSIFIER, -1);
    if (!x || !w || !cls) return NULL;
    ei_val *xn = OPS(em)->rmsnorm(em, x, w, em->cfg->norm_eps);
    return xn ? OPS(em)->linear(em, xn, cls, NULL) : NULL;
}

static ei_val *linear(ei_emitter *em, ei_val *x, ei_tclass wc, ei_tclass bc, int l) {
    ei_val *w = W(em, wc, l);
    if (!x || !w) return NULL;
    ei_val *b = em->cfg->qkv_bias && bc != EI_TC_COUNT ? W(em, bc, l) : NULL;
    return OPS(em)->linear(em, x, w, b);
}

int ei_recipe_qkv(ei_emitter *em, int l, ei_val *x, int64_t n, ei_attn_qkv *out) {
    const ei_model_config *c = em->cfg;
    const int64_t H = c->n_heads, Hkv = c->n_kv_heads, d = c->head_dim;
    ei_val *nw = W(em, EI_TC_ATTN_NORM, l);
    out->xn = x && nw ? OPS(em)->rmsnorm(em, x, nw, c->norm_eps) : NULL;
    out->q = reshape(em, linear(em, out->xn, EI_TC_Q, EI_TC_Q_BIAS, l), SHAPE(n, H, d));
    out->k = reshape(em, linear(em, out->xn, EI_TC_K, EI_TC_K_BIAS, l), SHAPE(n, Hkv, d));
    out->v = reshape(em, linear(em, out->xn, EI_TC_V, EI_TC_V_BIAS, l), SHAPE(n, Hkv, d));
    return out->q && out->k && out->v ? 0 : -1;
}

ei_val *ei_recipe_mem_retrieve(ei_emitter *em, ei_val *q, ei_val *M, ei_val *z) {
    if (!q || !M || !z) return NULL;
    int64_t qs[4], ms[4];
    if (OPS(em)->shape(em, q, qs) != 3 || OPS(em)->shape(em, M, ms) != 3 || ms[0] < 1 || qs[1] % ms[0] ||
        ms[1] != qs[2] || ms[2] != qs[2]) {
        OPS(em)->fail(em, "memory retrieval: shapes do not fit (q [n,H,d], M [Hkv,d,d], z [Hkv,d])");
        return NULL;
    }
    const int64_t n = qs[0], H = qs[1], d = qs[2], Hkv = ms[0], rep = H / Hkv;
    ei_val *sq = OPS(em)->unary(em, EI_UN_ELU1, q);
    sq = reshape(em, sq, SHAPE(n, Hkv, rep, d));
    /* [Hkv, n, rep, d]: the query heads that share M_g side by side, one batched product per head */
    sq = sq ? OPS(em)->transpose(em, sq, 0, 1) : NULL;
    sq = reshape(em, sq, SHAPE(Hkv, n * rep, d));
    ei_val *num = sq ? OPS(em)->matmul(em, sq, M, 0, 0) : NULL; /* [Hkv, n*rep, d] */
    ei_val *zc = reshape(em, z, SHAPE(Hkv, d, 1));
    ei_val *den = sq && zc ? OPS(em)->matmul(em, sq, zc, 0, 0) : NULL;
    den = den ? OPS(em)->add_scalar(em, den, EI_MEM_EPS) : NULL; /* [Hkv, n*rep, 1] */
    ei_val *a = reshape(em, bin(em, EI_BIN_DIV, num, den), SHAPE(Hkv, n, rep, d));
    a = a ? OPS(em)->transpose(em, a, 0, 1) : NULL;
    return reshape(em, a, SHAPE(n, H, d));
}

int ei_recipe_mem_update(ei_emitter *em, ei_mem_rule rule, int nonempty, ei_val *k, ei_val *v, ei_val *rowmask,
                         ei_val *M, ei_val *z, ei_val **M_out, ei_val **z_out) {
    *M_out = *z_out = NULL;
    if (!k || !v || !M || !z) return -1;
    int64_t ks[4], vs[4], ms[4];
    if (OPS(em)->shape(em, k, ks) != 3 || OPS(em)->shape(em, v, vs) != 3 || OPS(em)->shape(em, M, ms) != 3 ||
        ks[1] != ms[0] || ks[2] != ms[1] || vs[0] != ks[0] || vs[1] != ks[1] || vs[2] != ks[2])
        return OPS(em)->fail(em, "memory update: shapes do not fit (k, v [c,Hkv,d], M [Hkv,d,d], z [Hkv,d])");
    const int64_t Hkv = ms[0], d = ms[1];
    ei_val *sk = OPS(em)->unary(em, EI_UN_ELU1, k);
    if (rowmask) sk = bin(em, EI_BIN_MUL, sk, rowmask);
    sk = sk ? OPS(em)->transpose(em, sk, 0, 1) : NULL; /* [Hkv, c, d] */
    ei_val *vv = OPS(em)->transpose(em, v, 0, 1);
    if (rule == EI_MEM_DELTA && nonempty) {
        ei_val *zc = reshape(em, z, SHAPE(Hkv, d, 1));
        ei_val *den = sk && zc ? OPS(em)->matmul(em, sk, zc, 0, 0) : NULL;
        den = den ? OPS(em)->add_scalar(em, den, EI_MEM_EPS) : NULL;
        ei_val *ret = sk ? OPS(em)->matmul(em, sk, M, 0, 0) : NULL;
        vv = bin(em, EI_BIN_SUB, vv, bin(em, EI_BIN_DIV, ret, den));
    }
    ei_val *upd = sk && vv ? OPS(em)->matmul(em, sk, vv, 1, 0) : NULL; /* [Hkv, d, d] */
    *M_out = bin(em, EI_BIN_ADD, M, upd);
    ei_val *zs = sk ? OPS(em)->sum(em, sk, 1) : NULL; /* [Hkv, d] */
    *z_out = bin(em, EI_BIN_ADD, z, reshape(em, zs, SHAPE(Hkv, d)));
    return *M_out && *z_out ? 0 : -1;
}

/* g [n, H, 1] (token gate) or [H, 1] (head gate), broadcast over [n, H, d]. */
static ei_val *gate(ei_emitter *em, int l, ei_val *xn, int64_t n) {
    const int64_t H = em->cfg->n_heads;
    ei_val *b = W(em, EI_TC_MEMORY_GATE_BIAS, l);
    if (!b) return NULL;
    if (em->gate == EI_GATE_TOKEN) {
        ei_val *w = W(em, EI_TC_MEMORY_GATE, l);
        ei_val *g = w && xn ? OPS(em)->linear(em, xn, w, b) : NULL;
        g = g ? OPS(em)->unary(em, EI_UN_SIGMOID, g) : NULL;
        return reshape(em, g, SHAPE(n, H, 1));
    }
    return reshape(em, OPS(em)->unary(em, EI_UN_SIGMOID, b), SHAPE(H, 1));
}

ei_val *ei_recipe_attend(ei_emitter *em, int l, const ei_attn_qkv *qkv, const ei_attn_in *a) {
    const ei_model_config *c = em->cfg;
    const int64_t H = c->n_heads, d = c->head_dim;
    int64_t qs[4];
    if (!qkv->q || OPS(em)->shape(em, qkv->q, qs) != 3) return NULL;
    const int64_t n = qs[0];
    const ei_rope_layout lay = c->rope_interleaved ? EI_ROPE_INTERLEAVED : EI_ROPE_HALF;

    /* local attention over the key parts; RoPE is applied at use, with the positions of this call */
    ei_val *kr[4], *vp[4], *mk[4];
    if (a->n_parts < 1 || a->n_parts > 4) {
        OPS(em)->fail(em, "attention: 1 to 4 key parts");
        return NULL;
    }
    for (int i = 0; i < a->n_parts; i++) {
        kr[i] = a->k[i] && a->kpos[i] ? OPS(em)->rope(em, a->k[i], a->kpos[i], c->rope_theta, lay, a->max_pos) : NULL;
        vp[i] = a->v[i];
        mk[i] = a->valid[i];
        if (!kr[i] || !vp[i]) return NULL;
    }
    ei_val *qr = a->qpos ? OPS(em)->rope(em, qkv->q, a->qpos, c->rope_theta, lay, a->max_pos) : NULL;
    ei_val *att = qr ? OPS(em)->attention(em, qr, a->n_parts, kr, vp, mk, 1.0 / sqrt((double)d), a->causal_offset)
                     : NULL;

    if (a->M && a->z) {
        ei_val *amem = ei_recipe_mem_retrieve(em, qkv->q, a->M, a->z);
        ei_val *g = gate(em, l, qkv->xn, n);
        if (a->gate_scale) g = bin(em, EI_BIN_MUL, g, a->gate_scale);
        /* g A_mem + (1 - g) A_loc, written so that g = 0 returns A_loc exactly */
        att = bin(em, EI_BIN_ADD, att, bin(em, EI_BIN_MUL, bin(em, EI_BIN_SUB, amem, att), g));
    }
    return reshape(em, att, SHAPE(n, H * d));
}

ei_val *ei_recipe_block_out(ei_emitter *em, int l, ei_val *x, ei_val *att) {
    const ei_model_config *c = em->cfg;
    ei_val *wo = W(em, EI_TC_O, l);
    x = bin(em, EI_BIN_ADD, x, att && wo ? OPS(em)->linear(em, att, wo, NULL) : NULL);

    ei_val *fw = W(em, EI_TC_FFN_NORM, l);
    ei_val *xn2 = x && fw ? OPS(em)->rmsnorm(em, x, fw, c->norm_eps) : NULL;
    ei_val *hg = linear(em, xn2, EI_TC_GATE, EI_TC_COUNT, l), *hu = linear(em, xn2, EI_TC_UP, EI_TC_COUNT, l);
    ei_val *h = hg && hu ? OPS(em)->swiglu(em, hg, hu) : NULL;
    return bin(em, EI_BIN_ADD, x, linear(em, h, EI_TC_DOWN, EI_TC_COUNT, l));
}

ei_val *ei_recipe_block(ei_emitter *em, int l, ei_val *x, const ei_attn_qkv *qkv, const ei_attn_in *a) {
    if (!x) return NULL;
    return ei_recipe_block_out(em, l, x, ei_recipe_attend(em, l, qkv, a));
}
