/* EdgeInfinite on a tiny random Llama model (2 layers, 4 query heads, 2 KV heads, d = 4, q/k/v bias):
 *  - whole-document gradient w.r.t. the gate parameters vs central finite differences in float64
 *    (5 segments; both gate kinds x both memory rules; step 2^-14 on gate values that are multiples
 *    of 2^-10, so the perturbed floats are exact; |g - fd| <= 1e-6 * (max|g| + |g|));
 *  - bptt_segments = number of segments equals full BPTT (1e-13 relative), bptt_segments = 1 differs;
 *  - gate forced to 0 equals window mode (loss and logits within 1e-12 relative);
 *  - S = W = 0 against an independent float64 Infini-attention written here (loss to 1e-10 rel.);
 *  - linear rule: M, z equal the sums of s(k)^T v, s(k) over exactly the tokens that left the window,
 *    and the caches hold the right tokens, for segment sizes 1, 2, 3, 7, 16 (1e-10 relative), with
 *    k, v of layer 0 computed here independently;
 *  - memory ops: round trip (one stored (k, v), q = k gives v * s / (s + eps)), and their gradients
 *    vs finite differences (1e-6 relative);
 *  - frozen tensors: no gradient buffer, weights bit-identical after forward + backward. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "train/edge_session.h"
#include "train/seg_graph.h"
#include "train/ag_emit.h"
#include "train/edge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- tiny model */

typedef struct {
    ei_model m;
    float *pool;
    size_t n_pool;
} tiny_model;

static uint64_t rng_state = 88172645463325252ULL;
static double urand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) / 4503599627370496.0 - 1.0;
}

static tiny_model *tiny_new(void) {
    tiny_model *t = calloc(1, sizeof *t);
    ei_model_config *c = &t->m.cfg;
    *c = (ei_model_config){.dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                           .head_dim = 4, .vocab_size = 32, .max_seq_len = 64, .rope_theta = 10000.f,
                           .norm_eps = 1e-5f, .tie_embeddings = 1, .qkv_bias = 1, .rope_interleaved = 1,
                           .bos_id = 1, .eos_id = 2};
    if (ei_tensor_table_init(&t->m.tensors, c) != 0) fail_msg("%s", ei_error_get());
    for (int i = 0; i < t->m.tensors.n; i++) t->n_pool += (size_t)t->m.tensors.t[i].numel;
    t->pool = malloc(t->n_pool * sizeof(float));
    float *p = t->pool;
    for (int i = 0; i < t->m.tensors.n; i++) {
        ei_tensor *w = &t->m.tensors.t[i];
        const int norm = w->cls == EI_TC_ATTN_NORM || w->cls == EI_TC_FFN_NORM || w->cls == EI_TC_FINAL_NORM;
        for (int64_t j = 0; j < w->numel; j++) p[j] = norm ? (float)(1.0 + 0.1 * urand()) : (float)(0.5 * urand());
        w->data = p;
        p += w->numel;
    }
    return t;
}

static void tiny_free(tiny_model *t) {
    ei_tensor_table_free(&t->m.tensors);
    free(t->pool);
    free(t);
}

/* The weights of one layer under the names the independent reference below uses. */
typedef struct {
    const float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *ffn_norm, *w_gate, *w_up, *w_down;
} layer_view;

static layer_view layer_of(const ei_model *m, int l) {
    return (layer_view){ei_model_weight(m, EI_TC_ATTN_NORM, l), ei_model_weight(m, EI_TC_Q, l),
                        ei_model_weight(m, EI_TC_K, l),         ei_model_weight(m, EI_TC_V, l),
                        ei_model_weight(m, EI_TC_O, l),         ei_model_weight(m, EI_TC_Q_BIAS, l),
                        ei_model_weight(m, EI_TC_K_BIAS, l),    ei_model_weight(m, EI_TC_V_BIAS, l),
                        ei_model_weight(m, EI_TC_FFN_NORM, l),  ei_model_weight(m, EI_TC_GATE, l),
                        ei_model_weight(m, EI_TC_UP, l),        ei_model_weight(m, EI_TC_DOWN, l)};
}

static void make_doc(int n, int V, int32_t *ids, int32_t *targets, uint8_t *mask) {
    for (int i = 0; i <= n; i++) {
        int32_t tok = (int32_t)((urand() + 1.0) * 0.5 * V) % V;
        if (i < n) ids[i] = tok;
        if (i > 0) targets[i - 1] = tok;
    }
    for (int i = 0; mask && i < n; i++) mask[i] = (uint8_t)(i % 5 != 3);
}

/* Gate values on a 2^-10 grid so that +- 2^-14 is exact in float32. */
static void random_gates(ei_gates *g, double scale) {
    for (size_t i = 0; i < g->n; i++) g->data[i] = (float)(round(urand() * scale * 1024.0) / 1024.0);
}

static void opts_small(ei_opts *o, ei_gate_kind gk, ei_mem_rule rule) {
    ei_opts_default(o);
    o->segment = 4;
    o->sink = 2;
    o->window = 3;
    o->gate = gk;
    o->memory_rule = rule;
    o->route_threshold = 0;
}

static ei_edge *edge_ok(const ei_model *m, const ei_opts *o, ei_gates *g, ei_mode mode, ag_dtype dt) {
    ei_edge *e = ei_edge_new(m, o, g, mode, dt);
    if (!e) fail_msg("ei_edge_new: %s", ei_error_get());
    return e;
}

static double doc_loss(ei_edge *e, const int32_t *ids, const int32_t *tg, const uint8_t *mk, int n) {
    ei_doc_result r;
    if (ei_edge_doc_eval(e, ids, tg, mk, n, &r) != 0) fail_msg("doc_eval: %s", ei_error_get());
    return r.loss;
}

/* ---------------------------------------------------------------- whole-model gradient */

static void grad_fd_case(ei_gate_kind gk, ei_mem_rule rule) {
    tiny_model *t = tiny_new();
    ei_opts o;
    opts_small(&o, gk, rule);
    ei_gates *g = ei_gates_new(&t->m.cfg, gk, 0.0);
    random_gates(g, gk == EI_GATE_TOKEN ? 1.0 : 2.0);
    enum { N = 18 }; /* 5 segments of 4 (last one 2) */
    int32_t ids[N], tg[N];
    uint8_t mk[N];
    make_doc(N, t->m.cfg.vocab_size, ids, tg, mk);
    ei_edge *e = edge_ok(&t->m, &o, g, EI_MODE_EDGEINFINITE, AG_F64);
    double *grad = calloc(g->n, sizeof(double));
    ei_doc_result r;
    if (ei_edge_doc_train(e, ids, tg, mk, N, 1.0, &r, grad) != 0) fail_msg("train: %s", ei_error_get());
    assert_int_equal(r.n_segments, 5);
    assert_int_equal(r.routed, 0);
    double gmax = 0;
    for (size_t i = 0; i < g->n; i++) gmax = fmax(gmax, fabs(grad[i]));
    assert_true(gmax > 1e-4); /* the memory path is live */
    const double h = 1.0 / 16384.0;
    double worst = 0;
    for (size_t i = 0; i < g->n; i++) {
        float keep = g->data[i];
        g->data[i] = (float)(keep + h);
        double lp = doc_loss(e, ids, tg, mk, N);
        g->data[i] = (float)(keep - h);
        double lm = doc_loss(e, ids, tg, mk, N);
        g->data[i] = keep;
        double fd = (lp - lm) / (2 * h);
        double err = fabs(fd - grad[i]) / (gmax + fabs(grad[i]));
        worst = fmax(worst, err);
        if (err > 1e-6)
            fail_msg("%s/%s gate %zu: analytic %.10g vs finite difference %.10g", ei_gate_kind_name(gk),
                     ei_mem_rule_name(rule), i, grad[i], fd);
    }
    /* the float32 gradient block saw the same accumulation */
    for (size_t i = 0; i < g->n; i++) assert_true(fabs(g->grad[i] - grad[i]) <= 1e-6 * (gmax + fabs(grad[i])));
    print_message("  %s gate, %s rule: %zu params, max rel err %.2e\n", ei_gate_kind_name(gk),
                  ei_mem_rule_name(rule), g->n, worst);
    free(grad);
    ei_edge_free(e);
    ei_gates_free(g);
    tiny_free(t);
}

static void test_grad_token_linear(void **s) { (void)s; grad_fd_case(EI_GATE_TOKEN, EI_MEM_LINEAR); }
static void test_grad_token_delta(void **s) { (void)s; grad_fd_case(EI_GATE_TOKEN, EI_MEM_DELTA); }
static void test_grad_head_linear(void **s) { (void)s; grad_fd_case(EI_GATE_HEAD, EI_MEM_LINEAR); }
static void test_grad_head_delta(void **s) { (void)s; grad_fd_case(EI_GATE_HEAD, EI_MEM_DELTA); }

static void train_grad(const ei_model *m, const ei_opts *o, ei_gates *g, const int32_t *ids, const int32_t *tg,
                       int n, double *grad) {
    ei_edge *e = edge_ok(m, o, g, EI_MODE_EDGEINFINITE, AG_F64);
    ei_doc_result r;
    memset(grad, 0, g->n * sizeof(double));
    if (ei_edge_doc_train(e, ids, tg, NULL, n, 1.0, &r, grad) != 0) fail_msg("train: %s", ei_error_get());
    ei_edge_free(e);
}

static void test_bptt_truncation(void **s) {
    (void)s;
    tiny_model *t = tiny_new();
    ei_opts o;
    opts_small(&o, EI_GATE_TOKEN, EI_MEM_LINEAR);
    ei_gates *g = ei_gates_new(&t->m.cfg, o.gate, 0.0);
    random_gates(g, 1.0);
    enum { N = 20 }; /* exactly 5 segments */
    int32_t ids[N], tg[N];
    make_doc(N, t->m.cfg.vocab_size, ids, tg, NULL);
    double full[200], k5[200], k1[200];
    assert_true(g->n <= 200);
    train_grad(&t->m, &o, g, ids, tg, N, full);
    o.bptt_segments = 5;
    train_grad(&t->m, &o, g, ids, tg, N, k5);
    o.bptt_segments = 1;
    train_grad(&t->m, &o, g, ids, tg, N, k1);
    double diff1 = 0, gmax = 0;
    for (size_t i = 0; i < g->n; i++) {
        gmax = fmax(gmax, fabs(full[i]));
        assert_true(fabs(full[i] - k5[i]) <= 1e-13 * (fabs(full[i]) + 1e-30) || full[i] == k5[i]);
        diff1 = fmax(diff1, fabs(full[i] - k1[i]));
    }
    assert_true(diff1 > 1e-6 * gmax); /* truncation really cuts something */
    ei_gates_free(g);
    tiny_free(t);
}

/* ---------------------------------------------------------------- gate 0 == window mode */

static void test_gate_zero_is_window(void **s) {
    (void)s;
    tiny_model *t = tiny_new();
    enum { N = 23 };
    int32_t ids[N], tg[N];
    make_doc(N, t->m.cfg.vocab_size, ids, tg, NULL);
    for (int gk = 0; gk < 2; gk++) {
        ei_opts o;
        opts_small(&o, (ei_gate_kind)gk, EI_MEM_DELTA);
        ei_gates *g = ei_gates_new(&t->m.cfg, o.gate, -1e4); /* sigmoid(-1e4) == 0 */
        for (int dt = 0; dt < 2; dt++) {
            ag_dtype dtype = dt ? AG_F64 : AG_F32;
            ei_edge *ee = edge_ok(&t->m, &o, g, EI_MODE_EDGEINFINITE, dtype);
            ei_edge *ew = edge_ok(&t->m, &o, NULL, EI_MODE_WINDOW, dtype);
            double le = doc_loss(ee, ids, tg, NULL, N), lw = doc_loss(ew, ids, tg, NULL, N);
            assert_true(fabs(le - lw) <= 1e-12 * fabs(lw));
            /* streaming with decode steps, logits after each token */
            ei_edge_reset(ee);
            ei_edge_reset(ew);
            float la[32], lb[32];
            assert_int_equal(ei_edge_feed(ee, ids, 9, NULL, NULL, NULL, la), 0);
            assert_int_equal(ei_edge_feed(ew, ids, 9, NULL, NULL, NULL, lb), 0);
            for (int i = 9; i < N; i++) {
                assert_int_equal(ei_edge_feed(ee, ids + i, 1, NULL, NULL, NULL, la), 0);
                assert_int_equal(ei_edge_feed(ew, ids + i, 1, NULL, NULL, NULL, lb), 0);
                for (int j = 0; j < 32; j++) assert_true(fabsf(la[j] - lb[j]) <= 1e-6f * fabsf(lb[j]) + 1e-7f);
            }
            /* and the memory really was filled in edgeinfinite mode */
            const ei_state *st = ei_edge_state(ee);
            const void *z = ei_state_ptr(st, st->data, 0, EI_SC_MEM_Z);
            double z0 = dtype == AG_F64 ? ((const double *)z)[0] : ((const float *)z)[0];
            assert_true(z0 > 0);
            ei_edge_free(ee);
            ei_edge_free(ew);
        }
        ei_gates_free(g);
    }
    tiny_free(t);
}

/* ---------------------------------------------------------------- independent Infini-attention */

static double elu1(double x) { return x > 0 ? x + 1 : exp(x); }
static double sigm(double x) { return 1 / (1 + exp(-x)); }

static void rms(const double *x, const float *w, int D, double eps, double *y) {
    double ss = 0;
    for (int i = 0; i < D; i++) ss += x[i] * x[i];
    double r = 1 / sqrt(ss / D + eps);
    for (int i = 0; i < D; i++) y[i] = x[i] * r * w[i];
}

static void lin(const double *x, const float *W, const float *b, int in, int out, double *y) {
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0;
        for (int i = 0; i < in; i++) s += (double)W[(size_t)o * in + i] * x[i];
        y[o] = s;
    }
}

static void rope1(double *x, int heads, int d, int pos, double theta) {
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < d; i += 2) {
            double f = pow(theta, -(double)i / d), a = pos * f, c = cos(a), s = sin(a);
            double *p = x + h * d + i, x0 = p[0], x1 = p[1];
            p[0] = x0 * c - x1 * s;
            p[1] = x0 * s + x1 * c;
        }
}

/* Infini-attention (S = W = 0): each segment attends causally to itself (positions 0..n-1), reads
 * the memory written by all earlier segments, then writes all its tokens into the memory. */
static double infini_reference(const ei_model *m, const ei_gates *gates, ei_mem_rule rule, int L,
                               const int32_t *ids, const int32_t *tg, int N) {
    const ei_model_config *c = &m->cfg;
    int D = c->dim, H = c->n_heads, Hkv = c->n_kv_heads, d = c->head_dim, F = c->hidden_dim, V = c->vocab_size;
    int rep = H / Hkv;
    double *Mm = calloc((size_t)c->n_layers * Hkv * d * d, sizeof(double));
    double *zz = calloc((size_t)c->n_layers * Hkv * d, sizeof(double));
    double *x = malloc((size_t)L * D * sizeof(double)), *xn = malloc((size_t)L * D * sizeof(double));
    double *q = malloc((size_t)L * H * d * sizeof(double)), *k = malloc((size_t)L * Hkv * d * sizeof(double));
    double *v = malloc((size_t)L * Hkv * d * sizeof(double)), *qr = malloc((size_t)L * H * d * sizeof(double));
    double *kr = malloc((size_t)L * Hkv * d * sizeof(double)), *att = malloc((size_t)H * d * sizeof(double));
    double *tmp = malloc((size_t)(D + 2 * F + V) * sizeof(double));
    double nll = 0;
    int count = 0;
    for (int s0 = 0; s0 < N; s0 += L) {
        int n = N - s0 < L ? N - s0 : L;
        for (int t = 0; t < n; t++)
            for (int i = 0; i < D; i++) x[t * D + i] = ei_model_weight(m, EI_TC_EMBEDDING, -1)[(size_t)ids[s0 + t] * D + i];
        for (int l = 0; l < c->n_layers; l++) {
            const layer_view lv = layer_of(m, l), *w = &lv;
            double *M = Mm + (size_t)l * Hkv * d * d, *z = zz + (size_t)l * Hkv * d;
            int nonempty = s0 > 0;
            for (int t = 0; t < n; t++) {
                rms(x + t * D, w->attn_norm, D, c->norm_eps, xn + t * D);
                lin(xn + t * D, w->wq, w->bq, D, H * d, q + t * H * d);
                lin(xn + t * D, w->wk, w->bk, D, Hkv * d, k + t * Hkv * d);
                lin(xn + t * D, w->wv, w->bv, D, Hkv * d, v + t * Hkv * d);
                memcpy(qr + t * H * d, q + t * H * d, (size_t)H * d * sizeof(double));
                memcpy(kr + t * Hkv * d, k + t * Hkv * d, (size_t)Hkv * d * sizeof(double));
                rope1(qr + t * H * d, H, d, t, c->rope_theta);
                rope1(kr + t * Hkv * d, Hkv, d, t, c->rope_theta);
            }
            double *newx = malloc((size_t)n * D * sizeof(double));
            for (int t = 0; t < n; t++) {
                for (int h = 0; h < H; h++) {
                    int g = h / rep;
                    double sc[64], mx = -1e300, den = 0;
                    for (int j = 0; j <= t; j++) {
                        double dot = 0;
                        for (int i = 0; i < d; i++) dot += qr[t * H * d + h * d + i] * kr[j * Hkv * d + g * d + i];
                        sc[j] = dot / sqrt((double)d);
                        mx = fmax(mx, sc[j]);
                    }
                    for (int j = 0; j <= t; j++) den += (sc[j] = exp(sc[j] - mx));
                    for (int i = 0; i < d; i++) {
                        double a = 0;
                        for (int j = 0; j <= t; j++) a += sc[j] / den * v[j * Hkv * d + g * d + i];
                        att[h * d + i] = a;
                    }
                    if (nonempty) {
                        double gate;
                        if (gates->kind == EI_GATE_TOKEN) {
                            const float *gw = gates->data + ei_gates_w_offset(gates, l) + (size_t)h * D;
                            double a = gates->data[ei_gates_b_offset(gates, l) + h];
                            for (int i = 0; i < D; i++) a += gw[i] * xn[t * D + i];
                            gate = sigm(a);
                        } else {
                            gate = sigm(gates->data[ei_gates_b_offset(gates, l) + h]);
                        }
                        double sq[16], dn = 1e-6;
                        for (int i = 0; i < d; i++) dn += (sq[i] = elu1(q[t * H * d + h * d + i])) * z[g * d + i];
                        for (int i = 0; i < d; i++) {
                            double num = 0;
                            for (int a = 0; a < d; a++) num += sq[a] * M[(size_t)g * d * d + a * d + i];
                            att[h * d + i] = gate * num / dn + (1 - gate) * att[h * d + i];
                        }
                    }
                }
                lin(att, w->wo, NULL, H * d, D, newx + t * D);
                for (int i = 0; i < D; i++) newx[t * D + i] += x[t * D + i];
            }
            /* memory update with every token of the segment (M, z before the update) */
            double *dM = calloc((size_t)Hkv * d * d, sizeof(double));
            for (int t = 0; t < n; t++)
                for (int g = 0; g < Hkv; g++) {
                    double sk[16], upd[16], dn = 1e-6;
                    for (int i = 0; i < d; i++) dn += (sk[i] = elu1(k[t * Hkv * d + g * d + i])) * z[g * d + i];
                    for (int i = 0; i < d; i++) {
                        double ret = 0;
                        for (int a = 0; a < d; a++) ret += sk[a] * M[(size_t)g * d * d + a * d + i];
                        upd[i] = v[t * Hkv * d + g * d + i] - (rule == EI_MEM_DELTA ? ret / dn : 0);
                    }
                    for (int a = 0; a < d; a++)
                        for (int i = 0; i < d; i++) dM[(size_t)g * d * d + a * d + i] += sk[a] * upd[i];
                }
            for (int t = 0; t < n; t++)
                for (int g = 0; g < Hkv; g++)
                    for (int i = 0; i < d; i++) z[g * d + i] += elu1(k[t * Hkv * d + g * d + i]);
            for (size_t i = 0; i < (size_t)Hkv * d * d; i++) M[i] += dM[i];
            free(dM);
            for (int t = 0; t < n; t++) {
                double *xt = newx + t * D, *h1 = tmp + D, *h2 = tmp + D + F;
                rms(xt, w->ffn_norm, D, c->norm_eps, tmp);
                lin(tmp, w->w_gate, NULL, D, F, h1);
                lin(tmp, w->w_up, NULL, D, F, h2);
                for (int i = 0; i < F; i++) h1[i] = h1[i] / (1 + exp(-h1[i])) * h2[i];
                lin(h1, w->w_down, NULL, F, D, tmp);
                for (int i = 0; i < D; i++) x[t * D + i] = xt[i] + tmp[i];
            }
            free(newx);
        }
        for (int t = 0; t < n; t++) {
            double *lg = tmp + D + 2 * F;
            rms(x + t * D, ei_model_weight(m, EI_TC_FINAL_NORM, -1), D, c->norm_eps, tmp);
            lin(tmp, ei_model_weight(m, EI_TC_CLASSIFIER, -1), NULL, D, V, lg);
            double mx = lg[0], se = 0;
            for (int j = 1; j < V; j++) mx = fmax(mx, lg[j]);
            for (int j = 0; j < V; j++) se += exp(lg[j] - mx);
            nll += mx + log(se) - lg[tg[s0 + t]];
            count++;
        }
    }
    free(Mm), free(zz), free(x), free(xn), free(q), free(k), free(v), free(qr), free(kr), free(att), free(tmp);
    return nll / count;
}

static void test_infini_attention(void **s) {
    (void)s;
    tiny_model *t = tiny_new();
    enum { N = 22 };
    int32_t ids[N], tg[N];
    make_doc(N, t->m.cfg.vocab_size, ids, tg, NULL);
    for (int gk = 0; gk < 2; gk++)
        for (int rule = 0; rule < 2; rule++) {
            ei_opts o;
            opts_small(&o, (ei_gate_kind)gk, (ei_mem_rule)rule);
            o.sink = o.window = 0;
            o.segment = 5;
            ei_gates *g = ei_gates_new(&t->m.cfg, o.gate, 0.0);
            random_gates(g, 1.5);
            ei_edge *e = edge_ok(&t->m, &o, g, EI_MODE_EDGEINFINITE, AG_F64);
            double got = doc_loss(e, ids, tg, NULL, N);
            double want = infini_reference(&t->m, g, o.memory_rule, o.segment, ids, tg, N);
            if (fabs(got - want) > 1e-10 * fabs(want))
                fail_msg("gate %d rule %d: loss %.15g, reference %.15g", gk, rule, got, want);
            ei_edge_free(e);
            ei_gates_free(g);
        }
    tiny_free(t);
}

/* ---------------------------------------------------------------- linear memory contents */

/* k and v of layer 0 for one token, computed from the weights directly. */
static void layer0_kv(const ei_model *m, int32_t id, double *k, double *v) {
    const ei_model_config *c = &m->cfg;
    double x[64], xn[64];
    for (int i = 0; i < c->dim; i++) x[i] = ei_model_weight(m, EI_TC_EMBEDDING, -1)[(size_t)id * c->dim + i];
    rms(x, ei_model_weight(m, EI_TC_ATTN_NORM, 0), c->dim, c->norm_eps, xn);
    lin(xn, ei_model_weight(m, EI_TC_K, 0), ei_model_weight(m, EI_TC_K_BIAS, 0), c->dim, c->n_kv_heads * c->head_dim, k);
    lin(xn, ei_model_weight(m, EI_TC_V, 0), ei_model_weight(m, EI_TC_V_BIAS, 0), c->dim, c->n_kv_heads * c->head_dim, v);
}

static void test_linear_memory_contents(void **s) {
    (void)s;
    tiny_model *t = tiny_new();
    const ei_model_config *c = &t->m.cfg;
    int Kd = c->n_kv_heads * c->head_dim, d = c->head_dim, Hkv = c->n_kv_heads;
    enum { N = 23 };
    int32_t ids[N], tg[N];
    make_doc(N, c->vocab_size, ids, tg, NULL);
    double kk[N][8], vv[N][8];
    for (int i = 0; i < N; i++) layer0_kv(&t->m, ids[i], kk[i], vv[i]);
    const int sizes[] = {1, 2, 3, 7, 16};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        ei_opts o;
        opts_small(&o, EI_GATE_HEAD, EI_MEM_LINEAR);
        o.segment = sizes[si];
        o.window = 5;
        ei_gates *g = ei_gates_new(c, o.gate, 0.3);
        ei_edge *e = edge_ok(&t->m, &o, g, EI_MODE_EDGEINFINITE, AG_F64);
        ei_doc_result r;
        assert_int_equal(ei_edge_doc_eval(e, ids, tg, NULL, N, &r), 0);
        const ei_state *st = ei_edge_state(e);
        const double *M = ei_state_ptr(st, st->data, 0, EI_SC_MEM_M), *z = ei_state_ptr(st, st->data, 0, EI_SC_MEM_Z);
        const double *sk = ei_state_ptr(st, st->data, 0, EI_SC_SINK_K), *wv = ei_state_ptr(st, st->data, 0, EI_SC_WIN_V);
        /* only complete segments reach the caches (model/segment.h): of the Nc committed tokens,
         * tokens S .. Nc-W-1 left the window */
        const int Nc = N - N % o.segment;
        for (int g2 = 0; g2 < Hkv; g2++) {
            for (int a = 0; a < d; a++) {
                double zw = 0;
                for (int tk = o.sink; tk < Nc - o.window; tk++) zw += elu1(kk[tk][g2 * d + a]);
                assert_true(fabs(z[g2 * d + a] - zw) <= 1e-10 * fabs(zw));
                for (int b = 0; b < d; b++) {
                    double mw = 0;
                    for (int tk = o.sink; tk < Nc - o.window; tk++) mw += elu1(kk[tk][g2 * d + a]) * vv[tk][g2 * d + b];
                    double got = M[(size_t)g2 * d * d + a * d + b];
                    if (fabs(got - mw) > 1e-10 * (fabs(mw) + 1e-3))
                        fail_msg("L=%d: M[%d][%d][%d] = %.12g, expected %.12g", o.segment, g2, a, b, got, mw);
                }
            }
        }
        for (int i = 0; i < o.sink * Kd; i++) assert_true(fabs(sk[i] - kk[i / Kd][i % Kd]) <= 1e-12);
        for (int i = 0; i < o.window * Kd; i++)
            assert_true(fabs(wv[i] - vv[Nc - o.window + i / Kd][i % Kd]) <= 1e-12);
        assert_int_equal(st->n_seen, N);
        ei_edge_free(e);
        ei_gates_free(g);
    }
    tiny_free(t);
}

/* ---------------------------------------------------------------- memory ops */

/* The recipe's memory ops through the autograd emitter (t supplies only the configuration). */
static int mem_update(ei_ag_emitter *em, ei_mem_rule rule, int nonempty, ag_tensor *k, ag_tensor *v, ag_tensor *M,
                      ag_tensor *z, ag_tensor **M1, ag_tensor **z1) {
    ei_val *a, *b;
    int rc = ei_recipe_mem_update(&em->base, rule, nonempty, ei_val_of(k), ei_val_of(v), NULL, ei_val_of(M),
                                  ei_val_of(z), &a, &b);
    *M1 = ei_ag(a);
    *z1 = ei_ag(b);
    return rc;
}
static ag_tensor *mem_retrieve(ei_ag_emitter *em, ag_tensor *q, ag_tensor *M, ag_tensor *z) {
    return ei_ag(ei_recipe_mem_retrieve(&em->base, ei_val_of(q), ei_val_of(M), ei_val_of(z)));
}

static void test_memory_round_trip(void **s) {
    (void)s;
    tiny_model *t = tiny_new();
    for (int rule = 0; rule < 2; rule++) {
        ag_graph *g = ag_graph_new(AG_F64, 0);
        ei_ag_emitter em;
        assert_int_equal(ei_ag_emitter_init(&em, g, &t->m, NULL, EI_GATE_TOKEN, 0, 0), 0);
        int d = 6;
        ag_tensor *k = ag_input(g, AG_SHAPE(1, 1, d)), *v = ag_input(g, AG_SHAPE(1, 1, d));
        ag_tensor *M = ag_input(g, AG_SHAPE(1, d, d)), *z = ag_input(g, AG_SHAPE(1, d));
        ag_tensor *M1, *z1;
        assert_int_equal(mem_update(&em, (ei_mem_rule)rule, 0, k, v, M, z, &M1, &z1), 0);
        ag_tensor *a = mem_retrieve(&em, k, M1, z1);
        assert_non_null(a);
        assert_int_equal(ag_graph_finalize(g), 0);
        double kd[6] = {0.3, -1.2, 0.8, 2.0, -0.1, 0.0}, vd[6] = {1.5, -2.0, 0.25, 3.0, -0.7, 0.9};
        ag_tensor_set_f64(k, kd);
        ag_tensor_set_f64(v, vd);
        assert_int_equal(ag_graph_forward(g), 0);
        double ss = 0;
        for (int i = 0; i < d; i++) ss += elu1(kd[i]) * elu1(kd[i]);
        for (int i = 0; i < d; i++) {
            double got = ag_tensor_at(a, i);
            assert_true(fabs(got - vd[i] * ss / (ss + 1e-6)) <= 1e-12 * fabs(vd[i]));
            assert_true(fabs(got - vd[i]) <= 1e-5 * fabs(vd[i]));
        }
        ei_ag_emitter_free(&em);
        ag_graph_free(g);
    }
    tiny_free(t);
}

/* Gradients of the memory ops vs central differences: loss = sum(w1 * A_mem) + sum(w2 * M_out) +
 * sum(w3 * z_out) with fixed random weights, over q, k, v, M, z. */
static void test_memory_ops_grad(void **s) {
    (void)s;
    tiny_model *t = tiny_new();
    for (int rule = 0; rule < 2; rule++) {
        int n = 3, H = 4, Hkv = 2, d = 3, c = 2;
        ag_graph *g = ag_graph_new(AG_F64, 0);
        ei_ag_emitter em;
        assert_int_equal(ei_ag_emitter_init(&em, g, &t->m, NULL, EI_GATE_TOKEN, 0, 0), 0);
        ag_tensor *in[5] = {ag_input(g, AG_SHAPE(n, H, d)), ag_input(g, AG_SHAPE(c, Hkv, d)),
                            ag_input(g, AG_SHAPE(c, Hkv, d)), ag_input(g, AG_SHAPE(Hkv, d, d)),
                            ag_input(g, AG_SHAPE(Hkv, d))};
        for (int i = 0; i < 5; i++) ag_tensor_set_requires_grad(in[i], 1);
        ag_tensor *M1, *z1;
        assert_int_equal(mem_update(&em, (ei_mem_rule)rule, 1, in[1], in[2], in[3], in[4], &M1, &z1), 0);
        ag_tensor *a = mem_retrieve(&em, in[0], M1, z1);
        ag_tensor *w1 = ag_const(g, AG_SHAPE(n, H, d)), *w2 = ag_const(g, AG_SHAPE(Hkv, d, d)),
                  *w3 = ag_const(g, AG_SHAPE(Hkv, d));
        ag_tensor *loss = ag_add(g, ag_add(g, ag_sum_all(g, ag_mul(g, a, w1)), ag_sum_all(g, ag_mul(g, M1, w2))),
                                 ag_sum_all(g, ag_mul(g, z1, w3)));
        assert_non_null(loss);
        assert_int_equal(ag_graph_finalize(g), 0);
        ag_tensor *fill[8] = {in[0], in[1], in[2], in[3], in[4], w1, w2, w3};
        for (int i = 0; i < 8; i++) {
            double *p = ag_tensor_data(fill[i]);
            for (int64_t j = 0; j < fill[i]->numel; j++) p[j] = urand();
        }
        double *zp = ag_tensor_data(in[4]);
        for (int64_t j = 0; j < in[4]->numel; j++) zp[j] = 2.0 + zp[j]; /* a plausible normaliser */
        assert_int_equal(ag_graph_forward(g), 0);
        for (int i = 0; i < 5; i++) ag_tensor_zero_grad(in[i]);
        assert_int_equal(ag_graph_backward_scalar(g, loss, 1.0), 0);
        const double h = 1e-5;
        for (int i = 0; i < 5; i++) {
            double *p = ag_tensor_data(in[i]);
            for (int64_t j = 0; j < in[i]->numel; j++) {
                double keep = p[j];
                p[j] = keep + h;
                ag_graph_forward(g);
                double lp = ag_tensor_at(loss, 0);
                p[j] = keep - h;
                ag_graph_forward(g);
                double lm = ag_tensor_at(loss, 0);
                p[j] = keep;
                double fd = (lp - lm) / (2 * h), an = ag_tensor_grad_at(in[i], j);
                if (fabs(fd - an) > 1e-6 * (fabs(an) + 1.0))
                    fail_msg("rule %d input %d [%lld]: analytic %.10g vs fd %.10g", rule, i, (long long)j, an, fd);
            }
        }
        ei_ag_emitter_free(&em);
        ag_graph_free(g);
    }
    tiny_free(t);
}

/* ---------------------------------------------------------------- frozen tensors */

static void test_frozen_untouched(void **s) {
    (void)s;
    tiny_model *t = tiny_new();
    uint64_t h0 = ei_hash_fnv1a(t->pool, t->n_pool * sizeof(float), 0);
    ei_opts o;
    opts_small(&o, EI_GATE_TOKEN, EI_MEM_DELTA);
    ei_gates *g = ei_gates_new(&t->m.cfg, o.gate, 0.5);
    random_gates(g, 1.0);
    /* one steady-state segment graph: memory non-empty, tokens compressed */
    ei_seg_plan plan = ei_seg_plan_at(&o, EI_MODE_EDGEINFINITE, 12, 4);
    assert_true(plan.mem && plan.c > 0 && plan.commit && plan.p == 0);
    ei_seg_graph *sg = ei_seg_graph_build(&t->m, &o, g, plan, EI_MODE_EDGEINFINITE, AG_F32, EI_SEG_TRAIN, 0);
    if (!sg) fail_msg("%s", ei_error_get());
    ei_state *st = ei_state_new(&t->m.cfg, &o, AG_F32);
    for (size_t i = 0; i < st->n; i++) ((float *)st->data)[i] = (float)(0.5 * urand() + 0.5);
    void *gst = calloc(st->n, sizeof(float));
    int32_t *ids = ag_tensor_data(sg->ids), *tg = ag_tensor_data(sg->targets);
    uint8_t *mk = ag_tensor_data(sg->mask);
    for (int i = 0; i < 4; i++) ids[i] = i + 3, tg[i] = i + 4, mk[i] = 1;
    ei_seg_graph_set_positions(sg, &plan);
    assert_int_equal(ei_seg_graph_bind_state(sg, st, st->data, gst), 0);
    assert_int_equal(ag_graph_forward(sg->g), 0);
    assert_int_equal(ag_graph_backward_scalar(sg->g, sg->loss, 1.0), 0);
    int n_const = 0, n_param = 0;
    for (int i = 0; i < ag_graph_node_count(sg->g); i++) {
        ag_tensor *x = ag_graph_node(sg->g, i);
        if (x->kind == AG_LEAF_CONST) {
            n_const++;
            assert_null(x->grad);
        } else if (x->kind == AG_LEAF_PARAM) {
            n_param++;
            assert_non_null(x->grad);
        }
    }
    assert_true(n_const >= 2 * 12);
    assert_int_equal(n_param, 2 * 2); /* w and b per layer */
    double gs = 0;
    for (size_t i = 0; i < g->n; i++) gs += fabs(g->grad[i]);
    assert_true(gs > 0);
    assert_true(ei_hash_fnv1a(t->pool, t->n_pool * sizeof(float), 0) == h0);
    free(gst);
    ei_state_free(st);
    ei_seg_graph_free(sg);
    ei_gates_free(g);
    tiny_free(t);
}

static void test_options(void **s) {
    (void)s;
    ei_opts o;
    ei_opts_default(&o);
    assert_int_equal(ei_opts_set(&o, "gate", "head"), 0);
    assert_int_equal(o.gate, EI_GATE_HEAD);
    assert_int_equal(ei_opts_set(&o, "memory_rule", "delta"), 0);
    assert_int_equal(ei_opts_set(&o, "segment", "64"), 0);
    assert_int_equal(ei_opts_set(&o, "gate_init_bias", "-2.5"), 0);
    assert_true(o.gate_init_bias == -2.5);
    assert_int_equal(ei_opts_set(&o, "gate", "banana"), -1);
    assert_int_equal(ei_opts_set(&o, "segmnet", "3"), -1);
    assert_non_null(strstr(ei_error_get(), "segmnet"));
    assert_int_equal(ei_opts_set(&o, "window", "12x"), -1);
    o.segment = 0;
    assert_int_equal(ei_opts_validate(&o, NULL), -1);
    ei_opts_default(&o);
    ei_model_config c = {.max_seq_len = 300};
    assert_int_equal(ei_opts_route_threshold(&o, &c), 300); /* S + W + L = 388, capped */
    c.max_seq_len = 1000;
    assert_int_equal(ei_opts_route_threshold(&o, &c), 388);
    /* plans: fill levels from the position only (S 4, W 256, L 128) */
    ei_seg_plan p = ei_seg_plan_at(&o, EI_MODE_EDGEINFINITE, 0, 128);
    assert_true(p.sf == 0 && p.take == 4 && p.r == 124 && p.c == 0 && !p.mem && p.commit);
    p = ei_seg_plan_at(&o, EI_MODE_EDGEINFINITE, 256, 128);
    assert_true(p.sf == 4 && p.wf == 252 && p.c == 124 && !p.mem);
    p = ei_seg_plan_at(&o, EI_MODE_EDGEINFINITE, 384, 128);
    assert_true(p.wf == 256 && p.c == 128 && p.mem);
    p = ei_seg_plan_at(&o, EI_MODE_WINDOW, 384, 128);
    assert_true(p.c == 128 && !p.mem);
    /* a call inside a segment continues it and commits only when it completes the segment */
    p = ei_seg_plan_at(&o, EI_MODE_EDGEINFINITE, 400, 500);
    assert_true(p.p == 16 && p.n == 112 && p.commit && p.mem && p.wf == 256);
    p = ei_seg_plan_at(&o, EI_MODE_EDGEINFINITE, 400, 7);
    assert_true(p.p == 16 && p.n == 7 && !p.commit && p.c == 0);
}

static void test_gates_file(void **s) {
    (void)s;
    tiny_model *t = tiny_new();
    ei_gates *g = ei_gates_new(&t->m.cfg, EI_GATE_TOKEN, 0.25);
    assert_true(g->data[ei_gates_b_offset(g, 1) + 2] == 0.25f && g->data[ei_gates_w_offset(g, 1)] == 0.0f);
    random_gates(g, 1.0);
    char path[] = "/tmp/ei_gates_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ei_gates_save(g, path), 0);
    ei_gates *h = ei_gates_new(&t->m.cfg, EI_GATE_TOKEN, 0.0);
    assert_int_equal(ei_gates_load(h, path), 0);
    assert_memory_equal(g->data, h->data, g->n * sizeof(float));
    ei_gates *k = ei_gates_new(&t->m.cfg, EI_GATE_HEAD, 0.0);
    assert_int_equal(ei_gates_load(k, path), -1); /* wrong kind: a clear error */
    assert_non_null(strstr(ei_error_get(), "token"));
    FILE *f = fopen(path, "wb");
    fputs("garbage", f);
    fclose(f);
    assert_int_equal(ei_gates_load(h, path), -1);
    remove(path);
    ei_gates_free(g);
    ei_gates_free(h);
    ei_gates_free(k);
    tiny_free(t);
}

static void test_cli_session(void **s) {
    (void)s;
    tiny_model *t = tiny_new();
    ei_cli_opts c;
    ei_cli_opts_default(&c);
    ei_cli_session ss;
    c.mode = "edgeinfinite";
    c.segment = 4;
    c.window = 3;
    c.gate_init_bias = 1.5;
    assert_int_equal(ei_cli_session_open(&ss, &c, &t->m), 0);
    assert_true(ss.mode == EI_MODE_EDGEINFINITE && ss.gates && ss.gates->data[ei_gates_b_offset(ss.gates, 0)] == 1.5f);
    int32_t ids[14] = {1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
    float lg[32];
    /* 9 tokens stay below the routing threshold (S + W + L = 11): the base model runs them */
    assert_int_equal(ei_edge_feed(ss.edge, ids, 9, NULL, NULL, NULL, lg), 0);
    assert_true(ei_edge_pos(ss.edge) == 9 && ei_edge_on_base(ss.edge));
    /* past it the EdgeInfinite state takes over, from the document start */
    assert_int_equal(ei_edge_feed(ss.edge, ids + 9, 5, NULL, NULL, NULL, lg), 0);
    assert_true(ei_edge_pos(ss.edge) == 14 && !ei_edge_on_base(ss.edge));
    assert_int_equal(ei_edge_state(ss.edge)->n_seen, 14);
    ei_cli_session_close(&ss);
    c.mode = "streaming";
    assert_int_equal(ei_cli_session_open(&ss, &c, &t->m), -1);
    assert_non_null(strstr(ei_error_get(), "--mode"));
    c.mode = "window";
    c.gates_path = "gates.safetensors";
    assert_int_equal(ei_cli_session_open(&ss, &c, &t->m), -1);
    assert_non_null(strstr(ei_error_get(), "--gates"));
    c.mode = "edgeinfinite";
    c.gates_path = "/nonexistent/gates.safetensors";
    assert_int_equal(ei_cli_session_open(&ss, &c, &t->m), -1);
    /* options travel with trained gates: head gates, delta rule, segment 5, sink 1, window 6 */
    ei_opts o;
    ei_opts_default(&o);
    o.gate = EI_GATE_HEAD;
    o.memory_rule = EI_MEM_DELTA;
    o.segment = 5;
    o.sink = 1;
    o.window = 6;
    ei_gates *hg = ei_gates_new(&t->m.cfg, EI_GATE_HEAD, -0.75);
    char path[] = "/tmp/ei_gates_opts_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ei_gates_save_opts(hg, &o, path), 0);
    ei_cli_opts_default(&c);
    c.mode = "edgeinfinite";
    c.gates_path = path;
    c.window = 7; /* explicit options still win */
    assert_int_equal(ei_cli_session_open(&ss, &c, &t->m), 0);
    assert_true(ss.opts.gate == EI_GATE_HEAD && ss.opts.memory_rule == EI_MEM_DELTA && ss.opts.segment == 5 &&
                ss.opts.sink == 1 && ss.opts.window == 7);
    assert_true(ss.gates->data[ei_gates_b_offset(ss.gates, 1) + 3] == -0.75f);
    ei_cli_session_close(&ss);
    o.gate = EI_GATE_TOKEN;
    assert_int_equal(ei_gates_save_opts(hg, &o, path), -1); /* options and parameters disagree */
    remove(path);
    ei_gates_free(hg);
    c.gates_path = NULL;
    c.mode = "edgeinfinite";
    c.gates_path = NULL;
    c.memory_rule = "quadratic";
    assert_int_equal(ei_cli_session_open(&ss, &c, &t->m), -1);
    assert_non_null(strstr(ei_error_get(), "--memory-rule"));
    tiny_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_gates_file),
        cmocka_unit_test(test_cli_session),
        cmocka_unit_test(test_memory_round_trip),
        cmocka_unit_test(test_memory_ops_grad),
        cmocka_unit_test(test_frozen_untouched),
        cmocka_unit_test(test_linear_memory_contents),
        cmocka_unit_test(test_infini_attention),
        cmocka_unit_test(test_gate_zero_is_window),
        cmocka_unit_test(test_bptt_truncation),
        cmocka_unit_test(test_grad_token_linear),
        cmocka_unit_test(test_grad_token_delta),
        cmocka_unit_test(test_grad_head_linear),
        cmocka_unit_test(test_grad_head_delta),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
