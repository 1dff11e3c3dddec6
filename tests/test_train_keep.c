/* Kept segment activations (ei_edge_set_activation_memory, train.activation_memory_mb), issue 15:
 * a segment whose training graph fits the budget runs its training forward in the forward sweep
 * and keeps its activations for the backward; the rest are recomputed. Checked on a tiny random
 * model with 9 segments whose plans differ (sink and window filling, memory empty then not, a
 * partial last segment), with and without a loss mask, bptt_segments 0, 2 and 3, float32 and
 * float64, with training graphs of one segment and of several (ei_edge_set_chunk):
 *  - budget 0 (recompute all), unlimited (keep every graph before the last) and a budget holding
 *    only some give bit-identical losses and gate gradients (float32 block and float64 accumulator);
 *  - graphs of 1, 2, 3, 5 and 9 segments agree to rounding (float64, 1e-10 of the largest gradient);
 *  - the graphs kept for one document serve the next ones: documents of other lengths and the
 *    first one again give the same bits as a fresh recomputing edge; lowering the budget frees;
 *  - the shared gradient pool of autograd (ag_graph_share_grads): two graphs, the second larger so
 *    the pool moves after the first was finalized, give the gradients of unshared twins;
 *  - train.activation_memory_mb: default, range, and the conversion to bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "autograd/autograd.h"
#include "core/ei_error.h"
#include "train/edge.h"
#include "train/train_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ULL;
static double urand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ULL) >> 11) / 4503599627370496.0 - 1.0;
}

typedef struct {
    ei_model m;
    float *pool;
} tiny;

static tiny *tiny_new(void) {
    tiny *t = calloc(1, sizeof *t);
    t->m.cfg = (ei_model_config){.dim = 16, .hidden_dim = 24, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                                 .head_dim = 4, .vocab_size = 48, .max_seq_len = 64, .rope_theta = 10000.f,
                                 .norm_eps = 1e-5f, .tie_embeddings = 1, .qkv_bias = 1, .rope_interleaved = 1,
                                 .bos_id = 1, .eos_id = 2};
    if (ei_tensor_table_init(&t->m.tensors, &t->m.cfg) != 0) fail_msg("%s", ei_error_get());
    size_t n = 0;
    for (int i = 0; i < t->m.tensors.n; i++) n += (size_t)t->m.tensors.t[i].numel;
    float *p = t->pool = malloc(n * sizeof(float));
    for (int i = 0; i < t->m.tensors.n; i++) {
        ei_tensor *w = &t->m.tensors.t[i];
        const int norm = w->cls == EI_TC_ATTN_NORM || w->cls == EI_TC_FFN_NORM || w->cls == EI_TC_FINAL_NORM;
        for (int64_t j = 0; j < w->numel; j++) p[j] = norm ? (float)(1.0 + 0.1 * urand()) : (float)(0.5 * urand());
        w->data = p;
        p += w->numel;
    }
    return t;
}

static void tiny_free(tiny *t) {
    ei_tensor_table_free(&t->m.tensors);
    free(t->pool);
    free(t);
}

enum { NMAX = 40, L = 4 };

typedef struct {
    int32_t ids[NMAX], tg[NMAX];
    uint8_t mk[NMAX];
} doc;

static void make_doc(doc *d, int V) {
    for (int i = 0; i < NMAX; i++) {
        d->ids[i] = (int32_t)((urand() + 1) * 0.5 * V) % V;
        d->tg[i] = (int32_t)((urand() + 1) * 0.5 * V) % V;
        d->mk[i] = (uint8_t)(i % 3 != 2);
    }
}

typedef struct {
    double loss;
    float g32[512];
    double g64[512];
    int kept;
} result;

static result train(ei_edge *e, ei_gates *g, const doc *d, int n, int masked) {
    result r;
    memset(&r, 0, sizeof r);
    assert_true(g->n <= 512);
    memset(g->grad, 0, g->n * sizeof(float));
    ei_doc_result res;
    if (ei_edge_doc_train(e, d->ids, d->tg, masked ? d->mk : NULL, n, 1.0, &res, r.g64) != 0)
        fail_msg("doc_train: %s", ei_error_get());
    assert_int_equal(res.n_segments, (n + L - 1) / L);
    r.loss = res.loss;
    r.kept = res.n_kept;
    memcpy(r.g32, g->grad, g->n * sizeof(float));
    return r;
}

static void same(const result *a, const result *b, size_t n, ag_dtype dt) {
    assert_memory_equal(&a->loss, &b->loss, sizeof a->loss);
    assert_memory_equal(a->g32, b->g32, n * sizeof(float));
    if (dt == AG_F64) assert_memory_equal(a->g64, b->g64, n * sizeof(double));
    double gmax = 0;
    for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(a->g32[i]));
    if (!(gmax > 1e-4)) fail_msg("no gradient (max %g), loss %g, kept %d / %d (%s)", gmax, a->loss, a->kept, b->kept, dt == AG_F64 ? "f64" : "f32");
}

/* Segments before the last training graph of a document of nseg segments: chunks of `chunk`
 * segments that also end before every segment s with s % bptt == 0 (ei_edge_set_chunk). */
static int kept_all(int nseg, int chunk, int bptt) {
    int last = 0;
    for (int s = 0; s < nseg;) {
        last = s;
        int end = s + chunk < nseg ? s + chunk : nseg;
        if (bptt > 0 && (s / bptt + 1) * bptt < end) end = (s / bptt + 1) * bptt;
        s = end;
    }
    return last;
}

static ei_edge *edge_new(tiny *t, const ei_opts *o, ei_gates *g, ag_dtype dt, int chunk) {
    ei_edge *e = ei_edge_new(&t->m, o, g, EI_MODE_EDGEINFINITE, dt);
    if (!e || ei_edge_set_chunk(e, chunk) != 0) fail_msg("%s", ei_error_get());
    assert_int_equal(ei_edge_chunk(e), chunk);
    return e;
}

/* Options with 9 differing plans for a 35-token document, random gates and the document. */
static ei_gates *case_setup(tiny *t, ei_opts *o, int bptt, doc *d) {
    ei_opts_default(o);
    o->segment = L;
    o->sink = 2;
    o->window = 3;
    o->route_threshold = 0;
    o->bptt_segments = bptt;
    ei_gates *g = ei_gates_new(&t->m.cfg, o->gate, 0.0);
    for (size_t i = 0; i < g->n; i++) g->data[i] = (float)(0.5 * urand());
    make_doc(d, t->m.cfg.vocab_size);
    return g;
}

static void keep_case(ag_dtype dt, int masked, int bptt, int chunk) {
    tiny *t = tiny_new();
    ei_opts o;
    doc d;
    ei_gates *g = case_setup(t, &o, bptt, &d);
    const int n = 35; /* 9 segments, the last of 3 tokens */
    ei_edge *e0 = edge_new(t, &o, g, dt, chunk), *e1 = edge_new(t, &o, g, dt, chunk);
    ei_edge_set_activation_memory(e0, 0);
    ei_edge_set_activation_memory(e1, -1);
    result r0 = train(e0, g, &d, n, masked), r1 = train(e1, g, &d, n, masked);
    assert_int_equal(r0.kept, 0);
    const int all = kept_all(9, chunk, bptt);
    assert_true(all > 0);
    assert_int_equal(r1.kept, all);
    same(&r0, &r1, g->n, dt);

    /* a budget of about three graphs keeps a prefix of them, the rest is recomputed */
    ei_edge *e2 = edge_new(t, &o, g, dt, chunk);
    ei_edge_set_activation_memory(e2, -1);
    train(e2, g, &d, n, masked);
    ei_edge_free(e2);
    e2 = edge_new(t, &o, g, dt, chunk);
    ei_edge_set_activation_memory(e2, 1); /* 1 byte: nothing fits */
    result r2 = train(e2, g, &d, n, masked);
    assert_int_equal(r2.kept, 0);
    same(&r0, &r2, g->n, dt);
    /* grow the budget step by step until some but not all segments are kept */
    int partial = 0;
    for (int64_t b = 4096; b < ((int64_t)1 << 30) && !partial; b += b / 4) {
        ei_edge_set_activation_memory(e2, b);
        result rp = train(e2, g, &d, n, masked);
        same(&r0, &rp, g->n, dt);
        partial = rp.kept > 0 && rp.kept < all;
    }
    assert_true(partial);

    /* the pool serves other documents and then the first one again */
    const int lens[4] = {13, 22, 35, 4 * L};
    for (int k = 0; k < 4; k++) {
        result a = train(e0, g, &d, lens[k], masked), b = train(e1, g, &d, lens[k], masked);
        same(&a, &b, g->n, dt);
        assert_int_equal(b.kept, kept_all((lens[k] + L - 1) / L, chunk, bptt));
    }
    /* lowering the budget frees graphs and keeps the results */
    ei_edge_set_activation_memory(e1, 0);
    result r3 = train(e1, g, &d, n, masked);
    assert_int_equal(r3.kept, 0);
    same(&r0, &r3, g->n, dt);
    ei_edge_free(e0);
    ei_edge_free(e1);
    ei_edge_free(e2);
    ei_gates_free(g);
    tiny_free(t);
}

/* chunk 1: one graph per segment; 3: graphs of three segments (layer by layer) */
static void test_keep_f32(void **s) {
    (void)s;
    keep_case(AG_F32, 0, 0, 1);
    keep_case(AG_F32, 1, 0, 1);
    keep_case(AG_F32, 1, 0, 3);
}
static void test_keep_f64(void **s) {
    (void)s;
    keep_case(AG_F64, 1, 0, 1);
    keep_case(AG_F64, 1, 0, 3);
}
static void test_keep_bptt(void **s) {
    (void)s;
    keep_case(AG_F32, 1, 2, 1);
    keep_case(AG_F32, 1, 2, 3);
    keep_case(AG_F32, 1, 3, 2);
}

/* The same document trained with graphs of 1, 2, 3, 5 and 9 segments (float64): every chunking is
 * the maths of the segment rule in a row, so the losses and gate gradients agree to rounding,
 * with bptt_segments 0 and 2; chunks of the same size give the same bits twice. */
static void chunk_case(int bptt) {
    tiny *t = tiny_new();
    ei_opts o;
    doc d;
    ei_gates *g = case_setup(t, &o, bptt, &d);
    const int n = 35, sizes[5] = {1, 2, 3, 5, 9};
    result r[5];
    for (int k = 0; k < 5; k++) {
        ei_edge *e = edge_new(t, &o, g, AG_F64, sizes[k]);
        r[k] = train(e, g, &d, n, 1);
        result again = train(e, g, &d, n, 1);
        same(&r[k], &again, g->n, AG_F64);
        ei_edge_free(e);
    }
    double gmax = 0;
    for (size_t i = 0; i < g->n; i++) gmax = fmax(gmax, fabs(r[0].g64[i]));
    for (int k = 1; k < 5; k++) {
        assert_true(fabs(r[k].loss - r[0].loss) <= 1e-12 * fabs(r[0].loss));
        for (size_t i = 0; i < g->n; i++)
            if (!(fabs(r[k].g64[i] - r[0].g64[i]) <= 1e-10 * gmax))
                fail_msg("chunk %d, gradient %zu: %.17g vs %.17g (one segment per graph)", sizes[k], i, r[k].g64[i],
                         r[0].g64[i]);
    }
    ei_gates_free(g);
    tiny_free(t);
}

static void test_chunks_agree(void **s) {
    (void)s;
    chunk_case(0);
    chunk_case(2);
}

/* ---------------------------------------------------------------- shared gradient pool */

typedef struct {
    ag_graph *g;
    ag_tensor *w, *x, *y;
} mlp;

static mlp mlp_new(ag_grad_pool *p, int n, int h) {
    mlp m;
    m.g = ag_graph_new(AG_F64, 0);
    if (p) assert_int_equal(ag_graph_share_grads(m.g, p), 0);
    m.w = ag_param(m.g, AG_SHAPE(h, 6));
    m.x = ag_input(m.g, AG_SHAPE(n, 6));
    assert_int_equal(ag_tensor_set_requires_grad(m.x, 1), 0);
    ag_tensor *hdn = ag_silu(m.g, ag_linear(m.g, m.x, m.w, NULL));
    m.y = ag_sum_all(m.g, ag_mul(m.g, hdn, hdn));
    assert_int_equal(ag_graph_finalize(m.g), 0);
    double *w = ag_tensor_data(m.w), *x = ag_tensor_data(m.x);
    for (int64_t i = 0; i < m.w->numel; i++) w[i] = urand();
    for (int64_t i = 0; i < m.x->numel; i++) x[i] = urand();
    return m;
}

static void test_grad_pool(void **s) {
    (void)s;
    ag_grad_pool *p = ag_grad_pool_new();
    rng = 5;
    mlp a = mlp_new(p, 3, 4);
    const size_t small = ag_grad_pool_bytes(p);
    const void *first = a.y->grad; /* in the pool as it was */
    mlp b = mlp_new(p, 50, 8); /* larger: the pool moves */
    assert_true(ag_grad_pool_bytes(p) > small);
    rng = 5;
    mlp a2 = mlp_new(NULL, 3, 4), b2 = mlp_new(NULL, 50, 8);
    assert_true(ag_graph_arena_bytes(a.g) < ag_graph_arena_bytes(a2.g)); /* gradients live in the pool */
    /* forward both, then backward in the order of a training sweep: the later graph first */
    mlp *pooled[2] = {&a, &b}, *own[2] = {&a2, &b2};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(ag_graph_forward(pooled[k]->g), 0);
        assert_int_equal(ag_graph_forward(own[k]->g), 0);
    }
    for (int k = 1; k >= 0; k--) {
        assert_int_equal(ag_graph_backward_scalar(pooled[k]->g, pooled[k]->y, 1.0), 0);
        assert_int_equal(ag_graph_backward_scalar(own[k]->g, own[k]->y, 1.0), 0);
    }
    assert_ptr_not_equal(a.y->grad, first); /* the backward followed the pool to its new place */
    for (int k = 0; k < 2; k++) {
        assert_memory_equal(pooled[k]->w->grad, own[k]->w->grad, (size_t)own[k]->w->numel * sizeof(double));
        assert_memory_equal(pooled[k]->x->grad, own[k]->x->grad, (size_t)own[k]->x->numel * sizeof(double));
        ag_graph_free(pooled[k]->g);
        ag_graph_free(own[k]->g);
    }
    ag_grad_pool_free(p);
    /* attaching after finalize is refused */
    ag_graph *g = ag_graph_new(AG_F32, 0);
    ag_grad_pool *q = ag_grad_pool_new();
    ag_input(g, AG_SHAPE(2));
    assert_int_equal(ag_graph_finalize(g), 0);
    assert_int_equal(ag_graph_share_grads(g, q), -1);
    ag_graph_free(g);
    ag_grad_pool_free(q);
}

/* ---------------------------------------------------------------- config key */

static void test_config_key(void **s) {
    (void)s;
    ei_train_config c;
    const char *ov[3] = {"model.path=m.bin", "data.train=d.h5", "train.activation_memory_mb=0"};
    assert_int_equal(ei_train_config_load(&c, NULL, 0, ov, 2), 0);
    assert_int_equal(c.train.activation_memory_mb, EI_EDGE_ACTIVATION_MB_DEFAULT);
    assert_true(ei_train_config_activation_bytes(&c) == (int64_t)EI_EDGE_ACTIVATION_MB_DEFAULT << 20);
    ei_train_config_free(&c);
    assert_int_equal(ei_train_config_load(&c, NULL, 0, ov, 3), 0);
    assert_int_equal(ei_train_config_activation_bytes(&c), 0);
    ei_train_config_free(&c);
    ov[2] = "train.activation_memory_mb=-1";
    assert_int_equal(ei_train_config_load(&c, NULL, 0, ov, 3), 0);
    assert_int_equal(ei_train_config_activation_bytes(&c), -1);
    char *dump = ei_train_config_dump(&c);
    assert_non_null(strstr(dump, "activation_memory_mb: -1"));
    free(dump);
    ei_train_config_free(&c);
    ov[2] = "train.activation_memory_mb=-2";
    assert_int_equal(ei_train_config_load(&c, NULL, 0, ov, 3), -1);
    assert_non_null(strstr(ei_error_get(), "train.activation_memory_mb"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_pool),     cmocka_unit_test(test_config_key), cmocka_unit_test(test_keep_f32),
        cmocka_unit_test(test_keep_f64),      cmocka_unit_test(test_keep_bptt), cmocka_unit_test(test_chunks_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
