/* Walking a graph through the public API (op kinds, sources, typed parameters), op names, and the
 * build-failure path: ag_graph_fail's message is the one ag_graph_finalize reports, and a NULL
 * source never replaces a first cause. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "autograd/autograd.h"
#include "autograd/gradcheck.h"
#include "core/ei_error.h"

#include <stdio.h>
#include <string.h>

static void check_leaf(const ag_tensor *t) {
    assert_int_equal(ag_tensor_op(t), AG_OP_NONE);
    assert_int_equal(ag_tensor_n_src(t), 0);
    assert_null(ag_tensor_src(t, 0));
    assert_null(ag_tensor_params(t));
}

/* Kind, sources in order, and the params tag agreeing with the kind. */
static const ag_op_params *check_op(const ag_tensor *t, ag_op_kind kind, int nsrc, ...) {
    assert_non_null(t);
    assert_int_equal(ag_tensor_op(t), kind);
    assert_int_equal(ag_tensor_n_src(t), nsrc);
    va_list ap;
    va_start(ap, nsrc);
    for (int i = 0; i < nsrc; i++) assert_ptr_equal(ag_tensor_src(t, i), va_arg(ap, ag_tensor *));
    va_end(ap);
    assert_null(ag_tensor_src(t, nsrc));
    assert_null(ag_tensor_src(t, -1));
    const ag_op_params *p = ag_tensor_params(t);
    assert_non_null(p);
    assert_int_equal(p->kind, kind);
    return p;
}

static void test_walk(void **state) {
    (void)state;
    ag_graph *g = ag_graph_new(AG_F64, 0);
    ag_tensor *x = ag_input(g, AG_SHAPE(2, 3, 4));
    ag_tensor *w = ag_param(g, AG_SHAPE(5, 4));
    ag_tensor *nw = ag_param(g, AG_SHAPE(5));
    ag_tensor *mm = ag_matmul(g, x, w, 0, 1); /* [2,3,5] */
    ag_tensor *rn = ag_rmsnorm(g, mm, NULL, 1e-5);
    ag_tensor *rnw = ag_rmsnorm(g, mm, nw, 1e-6);
    ag_tensor *sl = ag_slice(g, rnw, -1, 1, 3); /* [2,3,3] */
    ag_tensor *sm = ag_sum(g, sl, -1, 1);       /* [2,3,1] */
    ag_tensor *mn = ag_mean(g, sl, 0, 0);       /* [3,3] */
    ag_tensor *tr = ag_transpose(g, sl, -1, 0); /* [3,3,2] */
    ag_tensor *sc = ag_scale(g, rn, 0.5);
    ag_tensor *as = ag_add_scalar(g, sc, -2.0);
    ag_tensor *ad = ag_add(g, as, rn);
    ag_tensor *cc = ag_concat_n(g, 3, (ag_tensor *const[]){sl, sl, sm}, -1); /* [2,3,7] */
    ag_tensor *rs = ag_reshape(g, cc, AG_SHAPE(6, -1));
    ag_tensor *bias = ag_const(g, AG_SHAPE(4));
    ag_tensor *lw = ag_const(g, AG_SHAPE(4, 7));
    ag_tensor *li = ag_linear(g, rs, lw, bias); /* [6,4] */
    ag_tensor *li2 = ag_linear(g, rs, lw, NULL);
    ag_tensor *qkv = ag_reshape(g, li, AG_SHAPE(3, 2, 4));
    ag_tensor *pos = ag_input_i32(g, AG_SHAPE(3));
    ag_tensor *ro = ag_rope_ex(g, qkv, pos, 1e4, AG_ROPE_HALF, 16);
    ag_tensor *ro0 = ag_rope(g, qkv, pos, 500.0, AG_ROPE_INTERLEAVED);
    ag_tensor *valid = ag_input_u8(g, AG_SHAPE(3));
    ag_tensor *at = ag_attention(g, ro, ro0, qkv, valid, 0.125, AG_ATTN_NONCAUSAL);
    ag_tensor *at2 = ag_attention(g, ro, ro0, qkv, NULL, 0.5, -100);
    ag_tensor *tg = ag_input_i32(g, AG_SHAPE(6));
    ag_tensor *ce = ag_cross_entropy(g, li, tg, NULL);
    ag_tensor *sg = ag_stop_grad(g, at2);
    ag_tensor *sa = ag_sum_all(g, ag_silu(g, sg));
    if (!sa || !at || !ce || !li2 || !tr || !mn) fail_msg("build: %s", ei_error_get());

    check_leaf(x);
    check_leaf(w);
    check_leaf(pos);
    check_leaf(NULL);
    assert_null(ag_graph_error(g));

    const ag_op_params *p = check_op(mm, AG_OP_MATMUL, 2, x, w);
    assert_int_equal(p->matmul.trans_a, 0);
    assert_int_equal(p->matmul.trans_b, 1);
    p = check_op(rn, AG_OP_RMSNORM, 1, mm);
    assert_true(p->rmsnorm.eps == 1e-5);
    p = check_op(rnw, AG_OP_RMSNORM, 2, mm, nw);
    assert_true(p->rmsnorm.eps == 1e-6);
    p = check_op(sl, AG_OP_SLICE, 1, rnw);
    assert_int_equal(p->slice.axis, 2); /* normalised from -1 */
    assert_int_equal(p->slice.start, 1);
    assert_int_equal(p->slice.len, 3);
    p = check_op(sm, AG_OP_SUM, 1, sl);
    assert_int_equal(p->sum.axis, 2);
    assert_int_equal(p->sum.keepdim, 1);
    p = check_op(mn, AG_OP_MEAN, 1, sl);
    assert_int_equal(p->mean.axis, 0);
    assert_int_equal(p->mean.keepdim, 0);
    p = check_op(tr, AG_OP_TRANSPOSE, 1, sl);
    assert_int_equal(p->transpose.axis0, 2);
    assert_int_equal(p->transpose.axis1, 0);
    p = check_op(sc, AG_OP_SCALE, 1, rn);
    assert_true(p->scale.s == 0.5);
    p = check_op(as, AG_OP_ADD_SCALAR, 1, sc);
    assert_true(p->add_scalar.c == -2.0);
    check_op(ad, AG_OP_ADD, 2, as, rn);
    p = check_op(cc, AG_OP_CONCAT, 3, sl, sl, sm);
    assert_int_equal(p->concat.axis, 2);
    check_op(rs, AG_OP_RESHAPE, 1, cc);
    assert_int_equal(rs->ndim, 2);
    assert_int_equal(rs->shape[1], 7); /* reshape's parameter is its shape, -1 resolved */
    check_op(li, AG_OP_LINEAR, 3, rs, lw, bias);
    check_op(li2, AG_OP_LINEAR, 2, rs, lw);
    p = check_op(ro, AG_OP_ROPE, 2, qkv, pos);
    assert_true(p->rope.theta == 1e4);
    assert_int_equal(p->rope.layout, AG_ROPE_HALF);
    assert_int_equal(p->rope.max_pos, 16);
    p = check_op(ro0, AG_OP_ROPE, 2, qkv, pos);
    assert_true(p->rope.theta == 500.0);
    assert_int_equal(p->rope.layout, AG_ROPE_INTERLEAVED);
    assert_int_equal(p->rope.max_pos, 0);
    p = check_op(at, AG_OP_ATTENTION, 4, ro, ro0, qkv, valid);
    assert_true(p->attention.scale == 0.125);
    assert_true(p->attention.causal_offset == AG_ATTN_NONCAUSAL);
    p = check_op(at2, AG_OP_ATTENTION, 3, ro, ro0, qkv);
    assert_true(p->attention.causal_offset == -4); /* as applied: raised to -Tq - 1 */
    check_op(ce, AG_OP_CROSS_ENTROPY, 2, li, tg);
    check_op(sg, AG_OP_STOP_GRAD, 1, at2);
    check_op(sa, AG_OP_SUM_ALL, 1, ag_tensor_src(sa, 0));
    assert_int_equal(ag_tensor_op(ag_tensor_src(sa, 0)), AG_OP_SILU);

    /* creation order is a topological order: every source precedes its node */
    const int nn = ag_graph_node_count(g);
    int nops = 0;
    for (int i = 0; i < nn; i++) {
        const ag_tensor *t = ag_graph_node(g, i);
        assert_non_null(ag_op_name(ag_tensor_op(t)));
        assert_int_equal(ag_tensor_op(t) == AG_OP_NONE, t->kind != AG_NODE_OP);
        for (int s = 0; s < ag_tensor_n_src(t); s++) assert_true(ag_tensor_src(t, s)->id < t->id);
        nops += ag_tensor_op(t) != AG_OP_NONE;
    }
    assert_int_equal(nops, 23);

    /* running the graph changes op state (rope tables, attention stores), never the parameters */
    ag_op_params before[2];
    memcpy(&before[0], ag_tensor_params(ro), sizeof before[0]);
    memcpy(&before[1], ag_tensor_params(ro0), sizeof before[1]);
    ag_fill_uniform(x, &(uint64_t){3}, -1, 1);
    int32_t *pv = ag_tensor_data(pos);
    uint8_t *vv = ag_tensor_data(valid);
    int32_t *tv = ag_tensor_data(tg);
    for (int i = 0; i < 3; i++) pv[i] = i + 2, vv[i] = 1;
    for (int i = 0; i < 6; i++) tv[i] = i % 4;
    assert_int_equal(ag_graph_forward(g), 0);
    pv[0] = 7;
    assert_int_equal(ag_graph_forward(g), 0);
    assert_int_equal(ag_graph_backward_scalar(g, ce, 1.0), 0);
    assert_memory_equal(&before[0], ag_tensor_params(ro), sizeof before[0]);
    assert_memory_equal(&before[1], ag_tensor_params(ro0), sizeof before[1]);
    ag_graph_free(g);
}

static void test_op_names(void **state) {
    (void)state;
    for (int k = 0; k < AG_OP_COUNT; k++) {
        const char *nk = ag_op_name((ag_op_kind)k);
        if (!nk) fail_msg("kind %d has no name", k);
        for (int j = 0; j < k; j++)
            if (!strcmp(nk, ag_op_name((ag_op_kind)j))) fail_msg("kinds %d and %d share name %s", j, k, nk);
    }
    assert_string_equal(ag_op_name(AG_OP_NONE), "leaf");
    assert_string_equal(ag_op_name(AG_OP_CROSS_ENTROPY), "cross_entropy");
    assert_null(ag_op_name(AG_OP_COUNT));
    assert_null(ag_op_name((ag_op_kind)-1));

    /* the name is the prefix of the op's own messages */
    ag_graph *g = ag_graph_new(AG_F32, 0);
    ag_tensor *a = ag_input(g, AG_SHAPE(3, 4)), *b = ag_input(g, AG_SHAPE(5, 2));
    assert_null(ag_mul(g, a, b));
    assert_int_equal(strncmp(ei_error_get(), ag_op_name(AG_OP_MUL), 3), 0);
    assert_null(ag_mean(g, a, 5, 0));
    assert_int_equal(strncmp(ei_error_get(), "mean: axis 5", 12), 0);
    ag_graph_free(g);
}

static void test_graph_fail(void **state) {
    (void)state;
    ag_graph *g = ag_graph_new(AG_F32, 0);
    ag_tensor *x = ag_input(g, AG_SHAPE(2, 3));
    assert_null(ag_graph_error(g));
    assert_int_equal(ag_graph_fail(g, "builder: layer %d has no %s", 3, "wq"), -1);
    assert_string_equal(ei_error_get(), "builder: layer 3 has no wq");
    assert_string_equal(ag_graph_error(g), "builder: layer 3 has no wq");
    /* the builder's NULL flows on silently */
    ei_error_clear();
    assert_null(ag_matmul(g, x, NULL, 0, 0));
    assert_string_equal(ei_error_get(), "");
    /* later failures report themselves but do not displace the first */
    assert_null(ag_add(g, x, ag_input(g, AG_SHAPE(4))));
    assert_non_null(strstr(ei_error_get(), "add: shapes do not broadcast"));
    assert_int_equal(ag_graph_fail(g, "builder: second problem"), -1);
    assert_string_equal(ei_error_get(), "builder: second problem");
    assert_string_equal(ag_graph_error(g), "builder: layer 3 has no wq");
    assert_int_equal(ag_graph_finalize(g), -1);
    assert_string_equal(ei_error_get(), "builder: layer 3 has no wq");
    assert_int_equal(ag_graph_forward(g), -1);
    assert_string_equal(ei_error_get(), "builder: layer 3 has no wq");
    ag_graph_free(g);

    /* the pending message may itself be an argument */
    g = ag_graph_new(AG_F32, 0);
    ei_error_set("weights.bin: truncated at %d", 120);
    assert_int_equal(ag_graph_fail(g, "loading: %s", ei_error_get()), -1);
    assert_string_equal(ag_graph_error(g), "loading: weights.bin: truncated at 120");
    ag_graph_free(g);

    assert_int_equal(ag_graph_fail(NULL, "no graph %d", 1), -1);
    assert_string_equal(ei_error_get(), "no graph 1");
    assert_null(ag_graph_error(NULL));
}

/* A NULL from code that only set ei_error: the graph's first cause still carries that message. */
static void test_null_source_keeps_cause(void **state) {
    (void)state;
    ag_graph *g = ag_graph_new(AG_F32, 0);
    ag_tensor *x = ag_input(g, AG_SHAPE(2, 3));
    ei_error_set("tokenizer.json: no vocab");
    assert_null(ag_mul(g, x, NULL));
    assert_non_null(strstr(ag_graph_error(g), "tokenizer.json: no vocab"));
    assert_non_null(strstr(ag_graph_error(g), "mul: source 1 is NULL"));
    assert_null(ag_silu(g, NULL)); /* now the graph has failed: silent */
    assert_int_equal(ag_graph_finalize(g), -1);
    assert_non_null(strstr(ei_error_get(), "tokenizer.json: no vocab"));
    ag_graph_free(g);

    g = ag_graph_new(AG_F32, 0);
    ei_error_clear();
    assert_null(ag_silu(g, NULL));
    assert_string_equal(ag_graph_error(g), "silu: source 0 is NULL");
    ag_graph_free(g);
}

/* ag_fill_uniform keeps the values it always produced: splitmix64 of the state, top 53 bits. */
static void test_fill_uniform_sequence(void **state) {
    (void)state;
    ag_graph *g = ag_graph_new(AG_F64, 0);
    ag_tensor *t = ag_input(g, AG_SHAPE(64));
    uint64_t s = 12345, ref = 12345;
    assert_int_equal(ag_fill_uniform(t, &s, -2.0, 3.0), 0);
    for (int i = 0; i < 64; i++) {
        uint64_t z = (ref += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        const double want = -2.0 + 5.0 * ((double)(z >> 11) / 9007199254740992.0);
        assert_true(ag_tensor_at(t, i) == want);
    }
    assert_true(s == ref);
    ag_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_walk),       cmocka_unit_test(test_op_names),
        cmocka_unit_test(test_graph_fail), cmocka_unit_test(test_null_source_keeps_cause),
        cmocka_unit_test(test_fill_uniform_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
