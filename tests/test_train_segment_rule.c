/* The one segment rule and routing (model/segment.h) through every path of the eager model: the
 * same document fed whole, in pieces of 1, of 7 and of L gives the same logits at every position;
 * at the routing boundary (threshold - 1, threshold, threshold + 1 tokens) scoring a document,
 * streaming it with its length known and streaming it with its length unknown agree with each other
 * and, for routed documents, with full attention. On the real stories260K model, window and
 * edgeinfinite modes, both position schemes. Tolerance 1e-5 relative to the largest logit of the
 * position (different call shapes sum in different orders; in float64 the paths agree to 1e-12). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "formats/model.h"
#include "train/edge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define STORIES_BIN EI_FIXTURES "/models/stories260K/stories260K.bin"

static ei_model *g_model;
enum { V = 512, NMAX = 64 };

static int32_t doc[NMAX + 1];

static void make_doc(void) {
    /* a fixed pseudo-random token sequence (any ids work for logits comparisons) */
    uint32_t x = 12345;
    doc[0] = 1;
    for (int i = 1; i <= NMAX; i++) {
        x = x * 1103515245u + 12345u;
        doc[i] = (int32_t)(3 + (x >> 16) % (V - 3));
    }
}

/* |a - b| <= 1e-5 max(1, max |b|) over one position's logits */
static void close_enough(const float *a, const float *b, int64_t n, const char *what, int pos) {
    float scale = 1.0f;
    for (int64_t i = 0; i < n; i++) scale = fmaxf(scale, fabsf(b[i]));
    for (int64_t i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > 1e-5f * scale)
            fail_msg("%s: position %d logit %lld: %.7g vs %.7g (scale %.3g)", what, pos, (long long)(i % V), a[i],
                     b[i], scale);
}

static void opts_for(ei_opts *o, ei_positions pos) {
    ei_opts_default(o);
    o->segment = 8;
    o->sink = 2;
    o->window = 8;
    o->positions = pos;
}

static ei_edge *open_edge(const ei_opts *o, ei_mode mode, ei_gates **g) {
    *g = NULL;
    if (mode == EI_MODE_EDGEINFINITE) {
        *g = ei_gates_new(&g_model->cfg, o->gate, 0.0);
        for (size_t i = 0; i < (*g)->n; i++) (*g)->data[i] = (float)(0.7 * sin(0.37 * (double)i) - 0.2);
    }
    ei_edge *e = ei_edge_new(g_model, o, *g, mode, AG_F32);
    if (!e) fail_msg("%s", ei_error_get());
    return e;
}

/* Logits of every position of doc[0..n) fed in pieces of `piece` tokens (0: whole), the document's
 * length known (begin) or not (reset). */
static void feed_pieces(ei_edge *e, int n, int piece, int known, float *out) {
    if (known) ei_edge_begin(e, n);
    else ei_edge_reset(e);
    for (int s = 0; s < n;) {
        int k = piece ? (n - s < piece ? n - s : piece) : n;
        if (ei_edge_feed_all(e, doc + s, k, out + (int64_t)s * V) != 0) fail_msg("feed: %s", ei_error_get());
        s += k;
    }
}

/* Whole vs pieces of 1, 7 and L, with the length known and unknown, no routing. */
static void test_pieces_equal_whole(void **s) {
    (void)s;
    for (int mode = EI_MODE_WINDOW; mode <= EI_MODE_EDGEINFINITE; mode++)
        for (int pos = 0; pos < 2; pos++) {
            ei_opts o;
            opts_for(&o, (ei_positions)pos);
            o.route_threshold = 0; /* never route: the segment rule alone */
            ei_gates *g;
            ei_edge *e = open_edge(&o, (ei_mode)mode, &g);
            const int n = 3 * o.segment + 5 + o.sink + o.window; /* several compressions, an open tail */
            float *whole = malloc(sizeof(float) * V * n), *part = malloc(sizeof(float) * V * n);
            feed_pieces(e, n, 0, 1, whole);
            const int pieces[] = {1, 7, o.segment};
            for (int pi = 0; pi < 3; pi++)
                for (int known = 0; known < 2; known++) {
                    feed_pieces(e, n, pieces[pi], known, part);
                    for (int t = 0; t < n; t++) close_enough(part + (int64_t)t * V, whole + (int64_t)t * V, V, "pieces", t);
                }
            /* scoring the document gives the summed NLL of those logits */
            ei_doc_result r;
            assert_int_equal(ei_edge_doc_eval(e, doc, doc + 1, NULL, n, &r), 0);
            double nll = 0;
            for (int t = 0; t < n; t++) {
                const float *row = whole + (int64_t)t * V;
                double mx = row[0], z = 0;
                for (int j = 1; j < V; j++) mx = fmax(mx, row[j]);
                for (int j = 0; j < V; j++) z += exp(row[j] - mx);
                nll += mx + log(z) - row[doc[t + 1]];
            }
            assert_true(fabs(r.nll_sum - nll) <= 1e-5 * nll);
            free(whole);
            free(part);
            ei_edge_free(e);
            ei_gates_free(g);
        }
}

/* At threshold - 1, threshold and threshold + 1 tokens. */
static void test_routing_boundary(void **s) {
    (void)s;
    ei_opts full;
    ei_opts_default(&full);
    ei_edge *fe = ei_edge_new(g_model, &full, NULL, EI_MODE_FULL, AG_F32);
    assert_non_null(fe);
    for (int mode = EI_MODE_WINDOW; mode <= EI_MODE_EDGEINFINITE; mode++) {
        ei_opts o;
        opts_for(&o, EI_POS_COMPACT);
        ei_gates *g;
        ei_edge *e = open_edge(&o, (ei_mode)mode, &g);
        const int T = ei_opts_route_threshold(&o, &g_model->cfg);
        assert_int_equal(T, o.sink + o.window + o.segment);
        float *a = malloc(sizeof(float) * V * (T + 1)), *b = malloc(sizeof(float) * V * (T + 1));
        for (int n = T - 1; n <= T + 1; n++) {
            const int routed = n <= T;
            assert_int_equal(ei_edge_routes(e, n), routed);
            /* scoring = streaming with the length known, in any pieces */
            ei_doc_result r, rs;
            assert_int_equal(ei_edge_doc_eval(e, doc, doc + 1, NULL, n, &r), 0);
            assert_int_equal(r.routed, routed);
            double nll = 0;
            int64_t cnt = 0;
            ei_edge_begin(e, n);
            for (int t = 0; t < n; t += 7)
                assert_int_equal(ei_edge_feed(e, doc + t, n - t < 7 ? n - t : 7, doc + 1 + t, &nll, &cnt, NULL), 0);
            assert_int_equal(cnt, n);
            assert_true(fabs(nll - r.nll_sum) <= 1e-5 * r.nll_sum);
            (void)rs;
            feed_pieces(e, n, 0, 1, a);
            feed_pieces(e, n, 1, 1, b);
            for (int t = 0; t < n; t++) close_enough(b + (int64_t)t * V, a + (int64_t)t * V, V, "known length", t);
            /* a routed document is the base model */
            if (routed) {
                feed_pieces(fe, n, 0, 1, b);
                for (int t = 0; t < n; t++) close_enough(a + (int64_t)t * V, b + (int64_t)t * V, V, "routed vs full", t);
            }
            /* length unknown: the prediction after the last token is that of the whole document */
            feed_pieces(e, n, 1, 0, b);
            close_enough(b + (int64_t)(n - 1) * V, a + (int64_t)(n - 1) * V, V, "unknown length", n - 1);
            assert_int_equal(ei_edge_on_base(e), routed);
            assert_int_equal(ei_edge_pos(e), n);
        }
        free(a);
        free(b);
        ei_edge_free(e);
        ei_gates_free(g);
    }
    ei_edge_free(fe);
}

/* Streaming with the length unknown: every prediction equals that of the prefix scored as a whole
 * document, across the switch from the base model to the EdgeInfinite state. */
static void test_prefix_consistency(void **s) {
    (void)s;
    ei_opts o;
    opts_for(&o, EI_POS_DESIGN);
    ei_gates *g;
    ei_edge *e = open_edge(&o, EI_MODE_EDGEINFINITE, &g);
    const int T = ei_opts_route_threshold(&o, &g_model->cfg), n = T + 12;
    float *stream = malloc(sizeof(float) * V * n), *whole = malloc(sizeof(float) * V * n);
    feed_pieces(e, n, 5, 0, stream);
    for (int len = T - 2; len <= n; len += 3) {
        feed_pieces(e, len, 0, 1, whole);
        close_enough(stream + (int64_t)(len - 1) * V, whole + (int64_t)(len - 1) * V, V, "prefix", len - 1);
    }
    free(stream);
    free(whole);
    ei_edge_free(e);
    ei_gates_free(g);
}

static int setup(void **s) {
    (void)s;
    g_model = ei_model_load(STORIES_BIN);
    make_doc();
    return g_model ? 0 : -1;
}

static int teardown(void **s) {
    (void)s;
    ei_model_free(g_model);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pieces_equal_whole),
        cmocka_unit_test(test_routing_boundary),
        cmocka_unit_test(test_prefix_consistency),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
