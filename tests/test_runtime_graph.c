/* ei_graph_validate: one valid graph per op (the inferred output shape is checked by giving the
 * output a wrong shape and reading the shape the op gives back), and broken graphs for every rule,
 * each rejected with a message that names the node or tensor at fault. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "runtime/graph.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define BLOB ((uint64_t)1 << 32)
#define S(...) ((const int32_t[]){__VA_ARGS__})
#define R(...) (int32_t)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t)), S(__VA_ARGS__)

enum { F32 = EI_GT_F32, F16 = EI_GT_F16, I32 = EI_GT_I32, I8 = EI_GT_I8, U8 = EI_GT_U8, I16 = EI_GT_I16, I4 = EI_GT_I4 };
enum { CONST = EI_GK_CONST, IN = EI_GK_INPUT, OUT = EI_GK_OUTPUT, VAL = EI_GK_VALUE };

static uint64_t blob_cursor;

static ei_graph *G(const char *name) {
    blob_cursor = 0;
    ei_graph *g = ei_graph_new(name);
    assert_non_null(g);
    return g;
}

/* CONST tensors get consecutive 64-byte aligned places in the blob. */
static int32_t T(ei_graph *g, const char *name, int type, int kind, int32_t rank, const int32_t *shape) {
    int32_t i = ei_graph_add_tensor(g, name, (ei_gtype)type, (ei_gkind)kind, rank, shape);
    assert_true(i >= 0);
    if (kind == CONST) {
        ei_gtensor *t = &g->tensors[i];
        t->offset = blob_cursor;
        t->size = ei_gtensor_bytes(t);
        blob_cursor += (t->size + 63) & ~(uint64_t)63;
    }
    return i;
}

static int32_t Nd(ei_graph *g, ei_gop op, const ei_gparams *p, int32_t out, int32_t n_in, const int32_t *in) {
    int32_t i = ei_graph_add_node(g, op, n_in, in, out, p);
    assert_true(i >= 0);
    return i;
}
#define NODE(g, op, p, out, ...) Nd(g, op, p, out, (int32_t)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t)), S(__VA_ARGS__))
#define P(...) (&(ei_gparams){__VA_ARGS__})

static void qt(ei_graph *g, int32_t t, float scale, int32_t zp) {
    g->tensors[t].q = (ei_gquant){.kind = EI_GQ_TENSOR, .scale = scale, .zero_point = zp, .scales = -1};
}
static void qc(ei_graph *g, int32_t t, int32_t axis, int32_t scales) {
    g->tensors[t].q = (ei_gquant){.kind = EI_GQ_CHANNEL, .axis = axis, .scales = scales};
}
static void qg(ei_graph *g, int32_t t, int32_t axis, int32_t group, int32_t scales) {
    g->tensors[t].q = (ei_gquant){.kind = EI_GQ_GROUP, .axis = axis, .group = group, .scales = scales};
}

static void ok_(const ei_graph *g, int line) {
    if (ei_graph_validate(g, BLOB) != 0) {
        print_message("line %d: unexpected error: %s\n", line, ei_error_get());
        fail();
    }
}
#define OK(g) ok_(g, __LINE__)

static void err_(const ei_graph *g, uint64_t blob, const char *a, const char *b, int line) {
    ei_error_clear();
    int rc = ei_graph_validate(g, blob);
    const char *m = ei_error_get();
    if (rc != -1 || !strstr(m, a) || (b && !strstr(m, b))) {
        print_message("line %d: rc %d, message [%s], wanted [%s] and [%s]\n", line, rc, m, a, b ? b : "");
        fail();
    }
}
#define ERR(g, a, b) err_(g, BLOB, a, b, __LINE__)
/* Sets an lvalue, expects the given error, restores it. */
#define TRY(g, lv, val, a, b)                                                                                          \
    do {                                                                                                               \
        __typeof__(lv) save_ = (lv);                                                                                   \
        (lv) = (val);                                                                                                  \
        ERR(g, a, b);                                                                                                  \
        (lv) = save_;                                                                                                  \
    } while (0)

/* Same for a CONST tensor whose shape or type changes: its size follows, so the rule under test is
 * the one that fails. */
#define TRYC(g, t, lv, val, a, b)                                                                                      \
    do {                                                                                                               \
        uint64_t size_ = (g)->tensors[t].size;                                                                         \
        __typeof__(lv) save_ = (lv);                                                                                   \
        (lv) = (val);                                                                                                  \
        (g)->tensors[t].size = ei_gtensor_bytes(&(g)->tensors[t]);                                                     \
        ERR(g, a, b);                                                                                                  \
        (lv) = save_;                                                                                                  \
        (g)->tensors[t].size = size_;                                                                                  \
    } while (0)

/* The graph validates; with a wrong output shape it fails and names the shape the op infers. */
static void infer_(ei_graph *g, int32_t out, const char *want, const char *node, int line) {
    ok_(g, line);
    ei_gtensor *t = &g->tensors[out];
    int32_t rank = t->rank, s0 = t->shape[0];
    if (rank == 0) {
        t->rank = 1;
        t->shape[0] = 2;
    } else {
        t->shape[0] = s0 + 1;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "the op gives %s", want);
    err_(g, BLOB, msg, node, line);
    t->rank = rank;
    t->shape[0] = s0;
    ok_(g, line);
}
#define INFER(g, out, want, node) infer_(g, out, want, node, __LINE__)

/* ------------------------------------------------------------------ ops */

static void test_gather(void **s) {
    (void)s;
    ei_graph *g = G("g");
    int32_t x = T(g, "emb", F32, CONST, R(16, 8)), idx = T(g, "tok", I32, IN, R(2, 3));
    int32_t y = T(g, "y", F32, OUT, R(2, 3, 8));
    NODE(g, EI_OP_GATHER, P(.gather = {0}), y, x, idx);
    INFER(g, y, "[2,3,8]", "node 0 (GATHER)");
    TRY(g, g->nodes[0].p.gather.axis, 2, "node 0 (GATHER)", "axis 2 outside [0, 2)");
    TRY(g, g->nodes[0].p.gather.axis, -1, "node 0 (GATHER)", "axis -1 outside");
    TRY(g, g->tensors[idx].type, EI_GT_F32, "node 0 (GATHER)", "input 1 'tok' is f32, expected i32");
    TRY(g, g->tensors[y].type, EI_GT_F16, "node 0 (GATHER)", "output 'y' is f16, expected f32");
    TRY(g, g->nodes[0].n_in, 1, "node 0 (GATHER)", "takes 2 inputs, has 1");
    ei_graph_free(g);

    g = G("g"); /* axis 1, scalar index, per-tensor quantised table */
    x = T(g, "x", I8, IN, R(4, 16, 8));
    idx = T(g, "i", I32, IN, 0, NULL);
    y = T(g, "y", I8, OUT, R(4, 8));
    qt(g, x, 0.5f, 1);
    qt(g, y, 0.5f, 1);
    NODE(g, EI_OP_GATHER, P(.gather = {1}), y, x, idx);
    INFER(g, y, "[4,8]", "node 0 (GATHER)");
    TRY(g, g->tensors[y].q.scale, 0.25f, "node 0 (GATHER)", "output 'y' has scale 0.25 zero point 1, expected those");
    TRY(g, g->tensors[x].q.kind, EI_GQ_NONE, "node 0 (GATHER)", "input 0 'x' is i8, expected");
    ei_graph_free(g);

    g = G("g"); /* rank 4 table, rank 2 indices: rank 5 */
    x = T(g, "x", F32, IN, R(2, 2, 2, 2));
    idx = T(g, "i", I32, IN, R(3, 3));
    y = T(g, "y", F32, OUT, R(3, 3, 2, 2));
    NODE(g, EI_OP_GATHER, P(.gather = {0}), y, x, idx);
    ERR(g, "node 0 (GATHER)", "output rank 5");
    ei_graph_free(g);
}

static void test_fully_connected(void **s) {
    (void)s;
    ei_graph *g = G("g");
    int32_t x = T(g, "x", F32, IN, R(2, 3, 16)), w = T(g, "w", F32, CONST, R(8, 16)), b = T(g, "b", F32, CONST, R(8));
    int32_t y = T(g, "y", F32, OUT, R(6, 8));
    NODE(g, EI_OP_FULLY_CONNECTED, NULL, y, x, w, b);
    INFER(g, y, "[6,8]", "node 0 (FULLY_CONNECTED)");
    TRY(g, g->tensors[x].shape[2], 15, "node 0 (FULLY_CONNECTED)", "inner dims differ: x [2,3,15] w [8,16]");
    TRY(g, g->tensors[x].type, EI_GT_I32, "node 0 (FULLY_CONNECTED)", "input 0 'x' is i32, expected");
    TRYC(g, b, g->tensors[b].shape[0], 7, "node 0 (FULLY_CONNECTED)", "bias 'b' has shape [7], expected [8]");
    ei_graph_free(g);

    g = G("g"); /* no bias, f16 activations, f16 weights, f16 output */
    x = T(g, "x", F16, IN, R(16));
    w = T(g, "w", F16, CONST, R(8, 16));
    y = T(g, "y", F16, OUT, R(1, 8));
    NODE(g, EI_OP_FULLY_CONNECTED, NULL, y, x, w);
    INFER(g, y, "[1,8]", "node 0 (FULLY_CONNECTED)");
    TRY(g, g->tensors[y].type, EI_GT_F32, "node 0 (FULLY_CONNECTED)", "output 'y' is f32, expected f16");
    TRY(g, g->nodes[0].n_in, 4, "node 0 (FULLY_CONNECTED)", "takes 2..3 inputs, has 4");
    ei_graph_free(g);

    g = G("g"); /* quantised input, per-channel int8 weights, i32 bias */
    x = T(g, "x", I8, IN, R(4, 16));
    w = T(g, "w", I8, CONST, R(16, 16));
    int32_t ws = T(g, "w.scales", F32, CONST, R(16));
    b = T(g, "b", I32, CONST, R(16));
    y = T(g, "y", I8, OUT, R(4, 16));
    qt(g, x, 0.1f, -3);
    qc(g, w, 0, ws);
    qt(g, y, 0.2f, 0);
    NODE(g, EI_OP_FULLY_CONNECTED, NULL, y, x, w, b);
    INFER(g, y, "[4,16]", "node 0 (FULLY_CONNECTED)");
    TRY(g, g->tensors[w].q.axis, 1, "node 0 (FULLY_CONNECTED)", "weights 'w' are i8 per-channel along axis 1");
    TRY(g, g->tensors[b].type, EI_GT_F32, "node 0 (FULLY_CONNECTED)", "bias 'b' is f32, expected i32");
    TRY(g, g->tensors[y].q.kind, EI_GQ_NONE, "node 0 (FULLY_CONNECTED)", "output 'y' is i8, expected i8 per-tensor");
    /* per-tensor weights: a quantised bias scale must be input scale x weight scale */
    qt(g, w, 0.05f, 0);
    qt(g, b, 0.1f * 0.05f, 0);
    OK(g);
    TRY(g, g->tensors[b].q.scale, 0.01f, "node 0 (FULLY_CONNECTED)", "bias 'b' has scale 0.01, expected");
    TRY(g, g->tensors[b].q.zero_point, 2, "node 0 (FULLY_CONNECTED)", "bias 'b' has zero point 2");
    ei_graph_free(g);

    g = G("g"); /* float input, int4 weights grouped along K, f16 scales */
    x = T(g, "x", F32, IN, R(2, 16));
    w = T(g, "w", I4, CONST, R(8, 16));
    ws = T(g, "w.scales", F16, CONST, R(8, 4));
    y = T(g, "y", F32, OUT, R(2, 8));
    qg(g, w, 1, 4, ws);
    NODE(g, EI_OP_FULLY_CONNECTED, NULL, y, x, w);
    INFER(g, y, "[2,8]", "node 0 (FULLY_CONNECTED)");
    TRY(g, g->tensors[w].q.axis, 0, "tensor 1 'w'", "scales tensor 'w.scales' has shape [8,4], expected [2,16]");
    TRY(g, g->tensors[x].type, EI_GT_I8, "node 0 (FULLY_CONNECTED)", "input 0 'x' is i8, expected");
    ei_graph_free(g);

    g = G("g"); /* float weights with quantised input; weights of rank 3 */
    x = T(g, "x", U8, IN, R(2, 16));
    w = T(g, "w", F32, CONST, R(8, 16));
    int32_t w3 = T(g, "w3", F32, CONST, R(2, 8, 16));
    y = T(g, "y", U8, OUT, R(2, 8));
    qt(g, x, 0.1f, 128);
    qt(g, y, 0.1f, 128);
    NODE(g, EI_OP_FULLY_CONNECTED, NULL, y, x, w);
    ERR(g, "node 0 (FULLY_CONNECTED)", "weights 'w' are f32; with quantised input");
    g->nodes[0].in[1] = w3;
    ERR(g, "node 0 (FULLY_CONNECTED)", "weights 'w3' have shape [2,8,16], expected [N, K]");
    ei_graph_free(g);
}

static void test_batch_matmul(void **s) {
    (void)s;
    ei_graph *g = G("g");
    int32_t a = T(g, "q", F32, IN, R(4, 32, 64)), b = T(g, "k", F32, IN, R(4, 48, 64));
    int32_t y = T(g, "att", F32, OUT, R(4, 32, 48));
    NODE(g, EI_OP_BATCH_MATMUL, P(.bmm = {0, 1}), y, a, b);
    INFER(g, y, "[4,32,48]", "node 0 (BATCH_MATMUL)");
    TRY(g, g->nodes[0].p.bmm.adj_y, 0, "node 0 (BATCH_MATMUL)", "inner dims differ: a [4,32,64] b [4,48,64]");
    TRY(g, g->nodes[0].p.bmm.adj_y, 2, "node 0 (BATCH_MATMUL)", "adj_y = 2, expected 0 or 1");
    TRY(g, g->tensors[b].shape[0], 3, "node 0 (BATCH_MATMUL)", "batch dims differ: a [4,32,64] b [3,48,64]");
    TRY(g, g->tensors[b].rank, 2, "node 0 (BATCH_MATMUL)", "ranks differ");
    TRY(g, g->tensors[b].type, EI_GT_F16, "node 0 (BATCH_MATMUL)", "input 1 'k' is f16, expected f32 like input 0");
    ei_graph_free(g);

    g = G("g"); /* adj_x, rank 2, int16 quantised */
    a = T(g, "a", I16, IN, R(64, 32));
    b = T(g, "b", I16, IN, R(64, 48));
    y = T(g, "y", I16, OUT, R(32, 48));
    qt(g, a, 0.01f, 0);
    qt(g, b, 0.02f, 0);
    qt(g, y, 0.5f, 0);
    NODE(g, EI_OP_BATCH_MATMUL, P(.bmm = {1, 0}), y, a, b);
    INFER(g, y, "[32,48]", "node 0 (BATCH_MATMUL)");
    TRY(g, g->tensors[a].rank, 1, "node 0 (BATCH_MATMUL)", "input 0 'a' has rank 1, expected 2..4");
    ei_graph_free(g);

    /* The message format of the design brief: graph, node index, op, shapes and flags. */
    g = G("decode");
    int32_t prev = T(g, "x0", F32, IN, R(1));
    for (int i = 1; i <= 12; i++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", i);
        int32_t t = T(g, name, F32, VAL, R(1));
        NODE(g, EI_OP_EXP, NULL, t, prev);
        prev = t;
    }
    a = T(g, "a", F32, IN, R(4, 32, 64));
    b = T(g, "b", F32, IN, R(4, 64, 48));
    y = T(g, "y", F32, OUT, R(4, 32, 48));
    NODE(g, EI_OP_BATCH_MATMUL, P(.bmm = {0, 1}), y, a, b);
    assert_int_equal(ei_graph_validate(g, BLOB), -1);
    assert_string_equal(ei_error_get(),
                        "graph 'decode': node 12 (BATCH_MATMUL): inner dims differ: a [4,32,64] b [4,64,48] (adj_y)");
    ei_graph_free(g);
}

static void test_binary(void **s) {
    (void)s;
    static const ei_gop ops[] = {EI_OP_ADD, EI_OP_SUB, EI_OP_MUL, EI_OP_DIV, EI_OP_MAXIMUM};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        ei_graph *g = G("g");
        int32_t a = T(g, "a", F32, IN, R(2, 1, 8)), b = T(g, "b", F32, CONST, R(3, 1));
        int32_t y = T(g, "y", F32, OUT, R(2, 3, 8));
        NODE(g, ops[k], NULL, y, a, b);
        char node[48];
        snprintf(node, sizeof node, "node 0 (%s)", ei_gop_name(ops[k]));
        INFER(g, y, "[2,3,8]", node);
        TRYC(g, b, g->tensors[b].shape[1], 4, node, "shapes do not broadcast: a [2,1,8] b [3,4]");
        TRY(g, g->tensors[a].type, EI_GT_I32, node, "input 1 'b' is f32, expected i32 like input 0");
        ei_graph_free(g);

        g = G("g"); /* scalar broadcast, i32 */
        a = T(g, "a", I32, IN, R(4));
        b = T(g, "b", I32, IN, 0, NULL);
        y = T(g, "y", I32, OUT, R(4));
        NODE(g, ops[k], NULL, y, b, a);
        INFER(g, y, "[4]", node);
        ei_graph_free(g);

        g = G("g"); /* quantised: allowed except for DIV */
        a = T(g, "a", I8, IN, R(4));
        b = T(g, "b", I8, IN, R(4));
        y = T(g, "y", I8, OUT, R(4));
        qt(g, a, 0.1f, 0);
        qt(g, b, 0.2f, 0);
        qt(g, y, 0.3f, 0);
        NODE(g, ops[k], NULL, y, a, b);
        if (ops[k] == EI_OP_DIV) ERR(g, node, "input 0 'a' is i8 per-tensor, expected f32, f16 or i32");
        else OK(g);
        ei_graph_free(g);
    }
}

static void test_unary(void **s) {
    (void)s;
    static const ei_gop ops[] = {EI_OP_RSQRT, EI_OP_LOGISTIC, EI_OP_EXP, EI_OP_ELU};
    for (size_t k = 0; k < 4; k++) {
        ei_graph *g = G("g");
        int32_t x = T(g, "x", F16, IN, R(2, 8)), y = T(g, "y", F16, OUT, R(2, 8));
        NODE(g, ops[k], P(.elu = {1.0f}), y, x);
        char node[48];
        snprintf(node, sizeof node, "node 0 (%s)", ei_gop_name(ops[k]));
        INFER(g, y, "[2,8]", node);
        TRY(g, g->tensors[x].type, EI_GT_I32, node, "input 0 'x' is i32, expected f32");
        ei_graph_free(g);

        g = G("g"); /* quantised: RSQRT and LOGISTIC only; LOGISTIC has a fixed output scale */
        x = T(g, "x", U8, IN, R(8));
        y = T(g, "y", U8, OUT, R(8));
        qt(g, x, 0.05f, 128);
        qt(g, y, 1.0f / 256.0f, 0);
        NODE(g, ops[k], P(.elu = {1.0f}), y, x);
        if (ops[k] == EI_OP_RSQRT || ops[k] == EI_OP_LOGISTIC) OK(g);
        else ERR(g, node, "input 0 'x' is u8 per-tensor, expected f32 or f16");
        if (ops[k] == EI_OP_LOGISTIC)
            TRY(g, g->tensors[y].q.scale, 0.01f, node, "a quantised u8 output uses scale 0.00390625 zero point 0");
        ei_graph_free(g);
    }
    ei_graph *g = G("g");
    int32_t x = T(g, "x", F32, IN, R(3)), y = T(g, "y", F32, OUT, R(3));
    NODE(g, EI_OP_ELU, P(.elu = {INFINITY}), y, x);
    ERR(g, "node 0 (ELU)", "alpha inf is not a finite number");
    ei_graph_free(g);
}

static void test_mean_softmax(void **s) {
    (void)s;
    ei_graph *g = G("g");
    int32_t x = T(g, "x", F32, IN, R(2, 3, 8)), y = T(g, "y", F32, OUT, R(2, 3, 1)), z = T(g, "z", F32, OUT, R(2, 8));
    NODE(g, EI_OP_MEAN, P(.mean = {2, 1}), y, x);
    NODE(g, EI_OP_MEAN, P(.mean = {1, 0}), z, x);
    INFER(g, y, "[2,3,1]", "node 0 (MEAN)");
    INFER(g, z, "[2,8]", "node 1 (MEAN)");
    TRY(g, g->nodes[0].p.mean.axis, 3, "node 0 (MEAN)", "axis 3 outside [0, 3) for input 0 'x' [2,3,8]");
    TRY(g, g->nodes[0].p.mean.keep_dims, 2, "node 0 (MEAN)", "keep_dims = 2");
    ei_graph_free(g);

    g = G("g");
    x = T(g, "x", F32, IN, R(2, 8));
    y = T(g, "p", F32, OUT, R(2, 8));
    NODE(g, EI_OP_SOFTMAX, P(.softmax = {1.0f, 1}), y, x);
    INFER(g, y, "[2,8]", "node 0 (SOFTMAX)");
    TRY(g, g->nodes[0].p.softmax.beta, 0.0f, "node 0 (SOFTMAX)", "beta 0 is not a positive finite number");
    TRY(g, g->nodes[0].p.softmax.axis, 2, "node 0 (SOFTMAX)", "axis 2 outside [0, 2)");
    ei_graph_free(g);

    g = G("g"); /* quantised softmax: output scale 1/256, zero point -128 for i8 */
    x = T(g, "x", I8, IN, R(8));
    y = T(g, "p", I8, OUT, R(8));
    qt(g, x, 0.1f, 0);
    qt(g, y, 1.0f / 256.0f, -128);
    NODE(g, EI_OP_SOFTMAX, P(.softmax = {1.0f, 0}), y, x);
    OK(g);
    TRY(g, g->tensors[y].q.zero_point, 0, "node 0 (SOFTMAX)", "output 'p' has scale 0.00390625 zero point 0; a quantised i8");
    ei_graph_free(g);
}

static void test_concat_slice(void **s) {
    (void)s;
    ei_graph *g = G("g");
    int32_t a = T(g, "a", F32, IN, R(2, 3)), b = T(g, "b", F32, CONST, R(2, 5)), c = T(g, "c", F32, IN, R(2, 1));
    int32_t y = T(g, "y", F32, OUT, R(2, 9));
    NODE(g, EI_OP_CONCATENATION, P(.concat = {1}), y, a, b, c);
    INFER(g, y, "[2,9]", "node 0 (CONCATENATION)");
    TRY(g, g->tensors[c].shape[0], 3, "node 0 (CONCATENATION)", "input 2 'c' has shape [3,1], input 0 has [2,3]");
    TRY(g, g->tensors[c].type, EI_GT_F16, "node 0 (CONCATENATION)", "input 2 'c' is f16, expected f32 like input 0");
    TRY(g, g->nodes[0].p.concat.axis, 2, "node 0 (CONCATENATION)", "axis 2 outside [0, 2)");
    TRY(g, g->tensors[c].rank, 1, "node 0 (CONCATENATION)", "input 2 'c' has shape [2]");
    ei_graph_free(g);

    g = G("g");
    int32_t x = T(g, "x", F32, IN, R(4, 8));
    y = T(g, "y", F32, OUT, R(2, 6));
    NODE(g, EI_OP_SLICE, P(.slice = {{1, 2}, {2, -1}}), y, x);
    INFER(g, y, "[2,6]", "node 0 (SLICE)");
    TRY(g, g->nodes[0].p.slice.begin[1], 8, "node 0 (SLICE)", "begin[1] = 8 outside [0, 8) of input 0 'x' [4,8]");
    TRY(g, g->nodes[0].p.slice.begin[0], -1, "node 0 (SLICE)", "begin[0] = -1 outside");
    TRY(g, g->nodes[0].p.slice.size[0], 4, "node 0 (SLICE)", "size[0] = 4: begin 1 + size does not fit extent 4");
    TRY(g, g->nodes[0].p.slice.size[0], 0, "node 0 (SLICE)", "size[0] = 0");
    TRY(g, g->nodes[0].p.slice.size[1], -2, "node 0 (SLICE)", "size[1] = -2");
    ei_graph_free(g);
}

static void test_reshape_transpose(void **s) {
    (void)s;
    ei_graph *g = G("g");
    int32_t x = T(g, "x", U8, IN, R(2, 3, 4)), y = T(g, "y", U8, OUT, R(6, 4)), z = T(g, "z", U8, OUT, R(4, 2, 3));
    qt(g, x, 0.5f, 7);
    qt(g, y, 0.5f, 7);
    qt(g, z, 0.5f, 7);
    NODE(g, EI_OP_RESHAPE, NULL, y, x);
    NODE(g, EI_OP_TRANSPOSE, P(.transpose = {{2, 0, 1}}), z, x);
    OK(g);
    TRY(g, g->tensors[y].shape[0], 5, "node 0 (RESHAPE)", "element counts differ: input 0 'x' [2,3,4] has 24, output 'y' [5,4] has 20");
    TRY(g, g->tensors[y].q.zero_point, 8, "node 0 (RESHAPE)", "expected those of input 0 'x'");
    INFER(g, z, "[4,2,3]", "node 1 (TRANSPOSE)");
    TRY(g, g->nodes[1].p.transpose.perm[1], 2, "node 1 (TRANSPOSE)", "perm [2,2,1] is not a permutation of [0, 3)");
    TRY(g, g->nodes[1].p.transpose.perm[0], 3, "node 1 (TRANSPOSE)", "perm [3,0,1] is not a permutation");
    ei_graph_free(g);
}

static void test_quantize_cast(void **s) {
    (void)s;
    ei_graph *g = G("g");
    int32_t x = T(g, "x", F32, IN, R(4, 2)), q = T(g, "q", I16, VAL, R(4, 2)), d = T(g, "d", F16, OUT, R(4, 2));
    int32_t i = T(g, "i", I32, OUT, R(4, 2));
    qt(g, q, 0.001f, 0);
    NODE(g, EI_OP_QUANTIZE, NULL, q, x);
    NODE(g, EI_OP_DEQUANTIZE, NULL, d, q);
    NODE(g, EI_OP_CAST, NULL, i, x);
    INFER(g, q, "[4,2]", "node 0 (QUANTIZE)");
    INFER(g, i, "[4,2]", "node 2 (CAST)");
    TRY(g, g->tensors[q].q.kind, EI_GQ_NONE, "node 0 (QUANTIZE)", "output 'q' is i16, expected per-tensor i8, u8 or i16");
    TRY(g, g->tensors[x].type, EI_GT_I32, "node 0 (QUANTIZE)", "input 0 'x' is i32, expected f32 or f16");
    TRY(g, g->tensors[d].type, EI_GT_I32, "node 1 (DEQUANTIZE)", "output 'd' is i32, expected f32 or f16");
    TRY(g, g->tensors[i].type, EI_GT_U8, "node 2 (CAST)", "output 'i' is u8, expected f32, f16 or i32");
    ei_graph_free(g);

    g = G("g"); /* dequantise a grouped int4 constant */
    int32_t w = T(g, "w", I4, CONST, R(4, 7)), ws = T(g, "ws", F32, CONST, R(4, 1));
    int32_t f = T(g, "f", F32, OUT, R(4, 7));
    qg(g, w, 1, 7, ws);
    NODE(g, EI_OP_DEQUANTIZE, NULL, f, w);
    INFER(g, f, "[4,7]", "node 0 (DEQUANTIZE)");
    assert_int_equal(g->tensors[w].size, 16); /* rows of 7 nibbles padded to 4 bytes */
    ei_graph_free(g);

    g = G("g");
    x = T(g, "x", F32, IN, R(3));
    d = T(g, "d", F32, OUT, R(3));
    NODE(g, EI_OP_DEQUANTIZE, NULL, d, x);
    ERR(g, "node 0 (DEQUANTIZE)", "input 0 'x' is f32, expected quantised");
    ei_graph_free(g);
}

static void test_select(void **s) {
    (void)s;
    ei_graph *g = G("g");
    int32_t c = T(g, "mask", U8, IN, R(2, 4)), a = T(g, "a", F32, IN, R(2, 4)), b = T(g, "b", F32, CONST, R(2, 4));
    int32_t y = T(g, "y", F32, OUT, R(2, 4));
    NODE(g, EI_OP_SELECT, NULL, y, c, a, b);
    INFER(g, y, "[2,4]", "node 0 (SELECT)");
    TRY(g, g->tensors[c].type, EI_GT_F32, "node 0 (SELECT)", "input 0 'mask' is f32, expected u8 (boolean)");
    TRYC(g, b, g->tensors[b].shape[1], 1, "node 0 (SELECT)", "shapes differ: c [2,4] a [2,4] b [2,1]");
    TRYC(g, b, g->tensors[b].type, EI_GT_F16, "node 0 (SELECT)", "input 2 'b' is f16, expected f32 like input 1");
    TRY(g, g->nodes[0].n_in, 2, "node 0 (SELECT)", "takes 3 inputs, has 2");
    ei_graph_free(g);
}

/* ------------------------------------------------------------------ structure */

/* x -> EXP -> v -> LOGISTIC -> y, plus a constant added: the base of the structural cases. */
static ei_graph *chain(void) {
    ei_graph *g = G("chain");
    int32_t x = T(g, "x", F32, IN, R(4)), v = T(g, "v", F32, VAL, R(4)), w = T(g, "w", F32, VAL, R(4));
    int32_t c = T(g, "c", F32, CONST, R(4)), y = T(g, "y", F32, OUT, R(4));
    NODE(g, EI_OP_EXP, NULL, v, x);
    NODE(g, EI_OP_LOGISTIC, NULL, w, v);
    NODE(g, EI_OP_ADD, NULL, y, w, c);
    return g;
}

static void test_structure(void **s) {
    (void)s;
    ei_graph *g = chain();
    OK(g);
    TRY(g, g->nodes[1].op, (ei_gop)0, "graph 'chain': node 1", "unknown op code 0");
    TRY(g, g->nodes[1].op, (ei_gop)99, "graph 'chain': node 1", "unknown op code 99");
    TRY(g, g->nodes[1].op, EI_OP_COUNT, "node 1", "unknown op code");
    TRY(g, g->nodes[1].n_in, 0, "node 1 (LOGISTIC)", "takes 1 inputs, has 0");
    TRY(g, g->nodes[1].n_in, 9, "node 1 (LOGISTIC)", "takes 1 inputs, has 9");
    TRY(g, g->nodes[1].in[0], 5, "node 1 (LOGISTIC)", "input 0: tensor index 5 out of range [0, 5)");
    TRY(g, g->nodes[1].in[0], -1, "node 1 (LOGISTIC)", "tensor index -1 out of range");
    TRY(g, g->nodes[2].out, 17, "node 2 (ADD)", "output tensor index 17 out of range");
    TRY(g, g->nodes[1].out, 0, "node 1 (LOGISTIC)", "writes INPUT tensor 0 'x'");
    TRY(g, g->nodes[1].out, 3, "node 1 (LOGISTIC)", "writes CONST tensor 3 'c'");
    TRY(g, g->nodes[1].out, 1, "node 1 (LOGISTIC)", "writes tensor 'v', already written by node 0 (EXP)");
    TRY(g, g->nodes[2].out, 2, "node 2 (ADD)", "writes tensor 'w', already written by node 1");
    TRY(g, g->tensors[1].kind, EI_GK_INPUT, "node 0 (EXP)", "writes INPUT tensor 1 'v'");
    ei_graph_free(g);

    g = chain();
    int32_t extra = T(g, "never", F32, OUT, R(4));
    (void)extra;
    ERR(g, "graph 'chain': OUTPUT tensor 5 'never' is never written", NULL);
    g->tensors[extra].kind = EI_GK_VALUE; /* an unused VALUE is harmless */
    OK(g);
    g->nodes[1].in[0] = extra;
    ERR(g, "node 1 (LOGISTIC)", "reads value tensor 'never' that no node writes");
    ei_graph_free(g);

    /* swapped nodes: not topological, but no cycle */
    g = chain();
    ei_gnode n0 = g->nodes[0];
    g->nodes[0] = g->nodes[1];
    g->nodes[1] = n0;
    ERR(g, "node 0 (LOGISTIC)", "reads 'v' before node 1 (EXP) writes it (nodes not in topological order)");
    ei_graph_free(g);

    /* cycle v -> w -> v; and a node reading its own output */
    g = chain();
    g->nodes[0].in[0] = 2;
    ERR(g, "node 0 (EXP)", "reads 'w', written by node 1 (LOGISTIC): the nodes form a cycle");
    g->nodes[0].in[0] = 1;
    ERR(g, "node 0 (EXP)", "reads 'v', written by node 0 (EXP): the nodes form a cycle");
    ei_graph_free(g);

    /* tensor-level rules */
    g = chain();
    TRY(g, g->tensors[1].rank, 5, "graph 'chain': tensor 1 'v'", "rank 5 outside [0, 4]");
    TRY(g, g->tensors[1].rank, -1, "tensor 1 'v'", "rank -1 outside");
    TRY(g, g->tensors[1].shape[0], 0, "tensor 1 'v'", "extent 0 of shape [0] is not positive");
    TRY(g, g->tensors[1].shape[0], -3, "tensor 1 'v'", "extent 0 of shape [-3] is not positive");
    TRY(g, g->tensors[1].type, (ei_gtype)7, "tensor 1 'v'", "unknown element type 7");
    TRY(g, g->tensors[1].kind, (ei_gkind)4, "tensor 1 'v'", "unknown kind 4");
    TRY(g, g->tensors[1].name, "x", "tensor name 'x' is used by tensors 0 and 1", NULL);
    TRY(g, g->tensors[1].name, "", "tensor 1 ''", "has no name");
    TRY(g, g->tensors[3].size, 12, "tensor 3 'c'", "size 12 bytes does not match shape [4] x f32 (16 bytes)");
    TRY(g, g->tensors[3].offset, BLOB - 8, "tensor 3 'c'", "lies outside the constant blob");
    TRY(g, g->tensors[3].offset, UINT64_MAX - 4, "tensor 3 'c'", "lies outside the constant blob");
    err_(g, 15, "tensor 3 'c'", "outside the constant blob of 15 bytes", __LINE__);
    g->tensors[1].rank = 4;
    memcpy(g->tensors[1].shape, S(INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX), 16);
    ERR(g, "tensor 1 'v'", "has more than 2^40 elements");
    g->tensors[1].rank = 1;
    g->tensors[1].shape[0] = 4;
    OK(g);
    g->tensors[3].rank = 4; /* a constant whose byte size would overflow: caught before sizing */
    memcpy(g->tensors[3].shape, S(1 << 20, 1 << 20, 1 << 20, 1 << 20), 16);
    ERR(g, "tensor 3 'c'", "shape [1048576,1048576,1048576,1048576] has more than 2^40 elements");
    ei_graph_free(g);
}

static void test_quant_rules(void **s) {
    (void)s;
    ei_graph *g = G("q");
    int32_t w = T(g, "w", I8, CONST, R(8, 16)), ws = T(g, "ws", F32, CONST, R(8));
    int32_t v = T(g, "v", I8, IN, R(4)), f = T(g, "f", F32, IN, R(4)), u = T(g, "u", U8, IN, R(4));
    int32_t h = T(g, "h", I16, IN, R(4)), n4 = T(g, "n4", I4, IN, R(4));
    int32_t g4 = T(g, "g4", I4, CONST, R(8, 16)), g4s = T(g, "g4s", F16, CONST, R(8, 2));
    qc(g, w, 0, ws);
    qt(g, v, 0.1f, -128);
    qt(g, u, 0.1f, 255);
    qt(g, h, 0.1f, 0);
    qt(g, n4, 0.1f, -8);
    qg(g, g4, 1, 8, g4s);
    OK(g);
    TRY(g, g->tensors[f].q.kind, EI_GQ_TENSOR, "tensor 3 'f'", "per-tensor quantisation on a f32 tensor");
    TRY(g, g->tensors[v].q.scale, 0.0f, "tensor 2 'v'", "scale 0 is not a positive finite number");
    TRY(g, g->tensors[v].q.scale, -1.0f, "tensor 2 'v'", "scale -1 is not a positive");
    TRY(g, g->tensors[v].q.scale, NAN, "tensor 2 'v'", "is not a positive finite number");
    TRY(g, g->tensors[v].q.scale, INFINITY, "tensor 2 'v'", "is not a positive finite number");
    TRY(g, g->tensors[v].q.zero_point, 200, "tensor 2 'v'", "zero point 200 outside the i8 range [-128, 127]");
    TRY(g, g->tensors[u].q.zero_point, -1, "tensor 4 'u'", "zero point -1 outside the u8 range [0, 255]");
    TRY(g, g->tensors[h].q.zero_point, 40000, "tensor 5 'h'", "outside the i16 range");
    TRY(g, g->tensors[n4].q.zero_point, 8, "tensor 6 'n4'", "outside the i4 range [-8, 7]");
    TRY(g, g->tensors[v].q.kind, (ei_gquant_kind)9, "tensor 2 'v'", "unknown quantisation kind 9");
    /* per-channel / per-group: constants only, integer types, symmetric, axis, scales tensor */
    TRY(g, g->tensors[w].kind, EI_GK_INPUT, "tensor 0 'w'", "per-channel quantisation on a input tensor (only CONST");
    TRY(g, g->tensors[w].type, EI_GT_U8, "tensor 0 'w'", "per-channel quantisation on a u8 tensor");
    TRY(g, g->tensors[w].q.zero_point, 1, "tensor 0 'w'", "zero point 1; per-channel quantisation is symmetric");
    TRY(g, g->tensors[w].q.axis, 2, "tensor 0 'w'", "quantisation axis 2 outside [0, 2)");
    TRY(g, g->tensors[w].q.scales, 99, "tensor 0 'w'", "scales tensor index 99 out of range");
    TRY(g, g->tensors[w].q.scales, 0, "tensor 0 'w'", "scales tensor index 0 out of range (or itself)");
    TRY(g, g->tensors[w].q.scales, f, "tensor 0 'w'", "scales tensor 'f' is a input f32, expected a CONST f32 or f16");
    TRY(g, g->tensors[ws].type, EI_GT_I32, "tensor 0 'w'", "scales tensor 'ws' is a const i32");
    TRY(g, g->tensors[w].q.axis, 1, "tensor 0 'w'", "scales tensor 'ws' has shape [8], expected [16]");
    TRY(g, g->tensors[g4].q.group, 3, "tensor 7 'g4'", "group 3 does not divide extent 16 of axis 1");
    TRY(g, g->tensors[g4].q.group, 0, "tensor 7 'g4'", "group 0 does not divide");
    TRY(g, g->tensors[g4].q.group, 4, "tensor 7 'g4'", "scales tensor 'g4s' has shape [8,2], expected [8,4]");
    ei_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather),          cmocka_unit_test(test_fully_connected),
        cmocka_unit_test(test_batch_matmul),    cmocka_unit_test(test_binary),
        cmocka_unit_test(test_unary),           cmocka_unit_test(test_mean_softmax),
        cmocka_unit_test(test_concat_slice),    cmocka_unit_test(test_reshape_transpose),
        cmocka_unit_test(test_quantize_cast),   cmocka_unit_test(test_select),
        cmocka_unit_test(test_structure),       cmocka_unit_test(test_quant_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
