/* matmul and linear: OpenBLAS GEMM forward, two GEMMs backward. */
#include "autograd/ag_internal.h"
#include "kernels/kernels.h"

#include <omp.h>
#include <string.h>

static void gemm(ag_dtype dt, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                 const void *b, int64_t ldb, double beta, void *c, int64_t ldc) {
    if (dt == AG_F32)
        ei_k_gemm_f32(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, (float)beta, c, ldc);
    else
        ei_k_gemm_f64(ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc);
}

static int matmul_forward(ag_node *n) {
    const int ta = n->p.matmul.trans_a, tb = n->p.matmul.trans_b;
    const int64_t B = n->dim.matmul.batch, M = n->dim.matmul.m, N = n->dim.matmul.n, K = n->dim.matmul.k;
    const int shared = n->dim.matmul.shared;
    const size_t es = ag_dtype_size(n->t.dtype);
    const char *a = n->src[0]->t.data, *b = n->src[1]->t.data;
    char *c = n->t.data;
    const int64_t lda = ta ? M : K, ldb = tb ? K : N;
    if (shared && !ta) { /* batch folds into rows: one GEMM */
        gemm(n->t.dtype, 0, tb, B * M, N, K, a, lda, b, ldb, 0.0, c, N);
        return 0;
    }
    /* one task per batch entry (EdgeInfinite's memory products: a kv head each, 4 x [384, 64] x
     * [64, 64]); each entry's product runs as ei_k_gemm cuts it, nested on one thread, so the bits
     * do not depend on the thread count */
#pragma omp parallel for schedule(dynamic, 1) if (B > 1 && B * M * N * K > AG_PAR_MIN && !omp_in_parallel())
    for (int64_t i = 0; i < B; i++)
        gemm(n->t.dtype, ta, tb, M, N, K, a + (size_t)(i * M * K) * es, lda, b + (shared ? 0 : (size_t)(i * K * N) * es),
             ldb, 0.0, c + (size_t)(i * M * N) * es, N);
    return 0;
}

static void matmul_backward(ag_node *n) {
    const int ta = n->p.matmul.trans_a, tb = n->p.matmul.trans_b;
    const int64_t B = n->dim.matmul.batch, M = n->dim.matmul.m, N = n->dim.matmul.n, K = n->dim.matmul.k;
    const int shared = n->dim.matmul.shared;
    const ag_dtype dt = n->t.dtype;
    const size_t es = ag_dtype_size(dt);
    const char *a = n->src[0]->t.data, *b = n->src[1]->t.data, *dc = n->t.grad;
    /* a first touch is written with beta 0 (no zeroing pass). In matmul(x, x) only da is fresh, and
     * each block of it is written before db adds to the same block. */
    int fa, fb;
    char *da = ag_grad_acquire_overwrite(n->src[0], &fa), *db = ag_grad_acquire_overwrite(n->src[1], &fb);
    const double beta_a = fa ? 0.0 : 1.0;
    const int64_t lda = ta ? M : K, ldb = tb ? K : N;
    if (shared && !ta) {
        const double beta_b = fb ? 0.0 : 1.0;
        if (da) gemm(dt, 0, !tb, B * M, K, N, dc, N, b, ldb, beta_a, da, K);
        if (db) {
            if (!tb)
                gemm(dt, 1, 0, K, N, B * M, a, lda, dc, N, beta_b, db, N);
            else
                gemm(dt, 1, 0, N, K, B * M, dc, N, a, lda, beta_b, db, K);
        }
        return;
    }
    /* batch entries in parallel as in the forward, except when b is shared (transposed a): its
     * gradient sums over the entries in order. matmul(x, x) shares one gradient between da and db,
     * whose entry i block both write, still inside one task. */
    const int par = B > 1 && !shared && B * M * N * K > AG_PAR_MIN;
#pragma omp parallel for schedule(dynamic, 1) if (par && !omp_in_parallel())
    for (int64_t i = 0; i < B; i++) {
        const char *ai = a + (size_t)(i * M * K) * es, *bi = b + (shared ? 0 : (size_t)(i * K * N) * es);
        const char *dci = dc + (size_t)(i * M * N) * es;
        if (da) {
            char *dai = da + (size_t)(i * M * K) * es;
            if (!ta)
                gemm(dt, 0, !tb, M, K, N, dci, N, bi, ldb, beta_a, dai, K);
            else
                gemm(dt, tb, 1, K, M, N, bi, ldb, dci, N, beta_a, dai, M);
        }
        if (db) {
            /* a shared b sums every batch entry into one block: only the first is written */
            char *dbi = db + (shared ? 0 : (size_t)(i * K * N) * es);
            const double beta_b = fb && (!shared || i == 0) ? 0.0 : 1.0;
            if (!tb)
                gemm(dt, !ta, 0, K, N, M, ai, lda, dci, N, beta_b, dbi, N);
            else
                gemm(dt, 1, ta, N, K, M, dci, N, ai, lda, beta_b, dbi, K);
        }
    }
}

static const ag_op op_matmul = {AG_OP_MATMUL, matmul_forward, matmul_backward, 0, 0};

ag_tensor *ag_matmul(ag_graph *g, ag_tensor *a, ag_tensor *b, int trans_a, int trans_b) {
    ag_tensor *src[2] = {a, b};
    if (ag_check_srcs(g, &op_matmul, 2, src)) return NULL;
    char sa[96], sb[96];
    ag_shape_str(a, sa, sizeof sa);
    ag_shape_str(b, sb, sizeof sb);
    if (!ag_is_float(a) || !ag_is_float(b)) return ag_fail(g, "matmul: operands must be float: %s x %s", sa, sb);
    if (a->ndim < 2 || b->ndim < 2) return ag_fail(g, "matmul: operands need rank >= 2: %s x %s", sa, sb);
    const int64_t M = trans_a ? a->shape[a->ndim - 1] : a->shape[a->ndim - 2];
    const int64_t Ka = trans_a ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
    const int64_t Kb = trans_b ? b->shape[b->ndim - 1] : b->shape[b->ndim - 2];
    const int64_t N = trans_b ? b->shape[b->ndim - 2] : b->shape[b->ndim - 1];
    if (Ka != Kb) return ag_fail(g, "matmul: inner dims differ: %s x %s", sa, sb);
    int64_t batch = 1;
    for (int i = 0; i < a->ndim - 2; i++) batch *= a->shape[i];
    const int shared = b->ndim == 2;
    if (!shared) {
        if (b->ndim != a->ndim) return ag_fail(g, "matmul: batch dims differ: %s x %s", sa, sb);
        for (int i = 0; i < a->ndim - 2; i++)
            if (a->shape[i] != b->shape[i]) return ag_fail(g, "matmul: batch dims differ: %s x %s", sa, sb);
    }
    if (M > 0x7fffffff || N > 0x7fffffff || Ka > 0x7fffffff || batch * M > 0x7fffffff)
        return ag_fail(g, "matmul: dims too large for BLAS: %s x %s", sa, sb);
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[a->ndim - 2] = M;
    shape[a->ndim - 1] = N;
    ag_node *n = ag_node_new(g, &op_matmul, a->ndim, shape, 2, src);
    if (!n) return NULL;
    n->p.matmul.trans_a = trans_a ? 1 : 0;
    n->p.matmul.trans_b = trans_b ? 1 : 0;
    n->dim.matmul.batch = batch;
    n->dim.matmul.m = M;
    n->dim.matmul.n = N;
    n->dim.matmul.k = Ka;
    n->dim.matmul.shared = shared;
    return &n->t;
}

/* ------------------------------------------------------------------ linear
 * x [R, in] (rows flattened), W [out, in], bias [out]: y [R, out] = x W^T + bias. */

static int linear_forward(ag_node *n) {
    const int64_t R = n->dim.linear.rows, I = n->dim.linear.in, O = n->dim.linear.out;
    const ag_dtype dt = n->t.dtype;
    gemm(dt, 0, 1, R, O, I, n->src[0]->t.data, I, n->src[1]->t.data, I, 0.0, n->t.data, O);
    if (n->nsrc == 3) {
        if (dt == AG_F32) {
            float *y = n->t.data;
            const float *bias = n->src[2]->t.data;
#pragma omp parallel for schedule(static) if (R * O > AG_PAR_MIN)
            for (int64_t r = 0; r < R; r++)
                for (int64_t o = 0; o < O; o++) y[r * O + o] += bias[o];
        } else {
            double *y = n->t.data;
            const double *bias = n->src[2]->t.data;
#pragma omp parallel for schedule(static) if (R * O > AG_PAR_MIN)
            for (int64_t r = 0; r < R; r++)
                for (int64_t o = 0; o < O; o++) y[r * O + o] += bias[o];
        }
    }
    return 0;
}

static void linear_backward(ag_node *n) {
    const int64_t R = n->dim.linear.rows, I = n->dim.linear.in, O = n->dim.linear.out;
    const ag_dtype dt = n->t.dtype;
    int fx, fw; /* a first touch is written with beta 0: no zeroing pass over the buffer */
    void *dx = ag_grad_acquire_overwrite(n->src[0], &fx), *dw = ag_grad_acquire_overwrite(n->src[1], &fw);
    if (dx) gemm(dt, 0, 0, R, I, O, n->t.grad, O, n->src[1]->t.data, I, fx ? 0.0 : 1.0, dx, I);
    if (dw) gemm(dt, 1, 0, O, I, R, n->t.grad, O, n->src[0]->t.data, I, fw ? 0.0 : 1.0, dw, I);
    int fb;
    void *db = n->nsrc == 3 ? ag_grad_acquire_overwrite(n->src[2], &fb) : NULL;
    if (!db) return;
    /* columns split across threads, rows summed in order inside each */
    if (dt == AG_F32) {
        const float *dy = n->t.grad;
        float *b = db;
#pragma omp parallel for schedule(static) if (R * O > AG_PAR_MIN)
        for (int64_t o = 0; o < O; o++) {
            float s = 0;
            for (int64_t r = 0; r < R; r++) s += dy[r * O + o];
            b[o] = fb ? s : b[o] + s;
        }
    } else {
        const double *dy = n->t.grad;
        double *b = db;
#pragma omp parallel for schedule(static) if (R * O > AG_PAR_MIN)
        for (int64_t o = 0; o < O; o++) {
            double s = 0;
            for (int64_t r = 0; r < R; r++) s += dy[r * O + o];
            b[o] = fb ? s : b[o] + s;
        }
    }
}

static const ag_op op_linear = {AG_OP_LINEAR, linear_forward, linear_backward, 0, 0};

ag_tensor *ag_linear(ag_graph *g, ag_tensor *x, ag_tensor *w, ag_tensor *bias) {
    ag_tensor *src[3] = {x, w, bias};
    const int ns = bias ? 3 : 2;
    if (ag_check_srcs(g, &op_linear, ns, src)) return NULL;
    char sx[96], sw[96], sb[96];
    ag_shape_str(x, sx, sizeof sx);
    ag_shape_str(w, sw, sizeof sw);
    if (!ag_is_float(x) || !ag_is_float(w) || (bias && !ag_is_float(bias)))
        return ag_fail(g, "linear: operands must be float");
    if (w->ndim != 2) return ag_fail(g, "linear: weight must be [out, in], got %s", sw);
    const int64_t I = w->shape[1], O = w->shape[0];
    if (x->shape[x->ndim - 1] != I) return ag_fail(g, "linear: inner dims differ: x %s, W %s (W is [out, in])", sx, sw);
    if (bias && (bias->ndim != 1 || bias->shape[0] != O))
        return ag_fail(g, "linear: bias %s does not match W %s", ag_shape_str(bias, sb, sizeof sb), sw);
    const int64_t R = x->numel / I;
    if (R > 0x7fffffff || I > 0x7fffffff || O > 0x7fffffff) return ag_fail(g, "linear: dims too large for BLAS");
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = O;
    ag_node *n = ag_node_new(g, &op_linear, x->ndim, shape, ns, src);
    if (!n) return NULL;
    n->dim.linear.rows = R;
    n->dim.linear.in = I;
    n->dim.linear.out = O;
    return &n->t;
}
