/* Arithmetic ops of the cpu backend: FULLY_CONNECTED (F32 / F16 / I8 / I4 weights read in place),
 * BATCH_MATMUL, MEAN, SOFTMAX and the fused RMSNorm / SwiGLU steps. Threads split outputs (rows or
 * output channels), never a sum, so results do not depend on the thread count. */
#include "runtime/cpu_internal.h"

#include "core/ei_half.h"

#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- weights */
int ei_cpu_wmat_init(const ei_graph *g, const uint8_t *blob, int32_t wt, ei_cpu_wmat *w, char *why, int nwhy) {
    const ei_gtensor *t = &g->tensors[wt];
    memset(w, 0, sizeof *w);
    if (t->rank != 2) return snprintf(why, (size_t)nwhy, "weight %s of rank %d, expected [N, K]", t->name, t->rank), -1;
    const int64_t K = t->shape[1];
    w->group = K;
    w->tscale = 1.0f;
    w->data = t->kind == EI_GK_CONST ? blob + t->offset : NULL;
    switch (t->type) {
    case EI_GT_F32: w->type = EI_CPU_W_F32, w->row_bytes = K * 4; return 0;
    case EI_GT_F16: w->type = EI_CPU_W_F16, w->row_bytes = K * 2; return 0;
    case EI_GT_I8: w->type = EI_CPU_W_I8, w->row_bytes = K; break;
    case EI_GT_I4: w->type = EI_CPU_W_I4, w->row_bytes = (K + 1) / 2; break;
    default: return snprintf(why, (size_t)nwhy, "weight %s of type %s", t->name, ei_gtype_name(t->type)), -1;
    }
    const ei_gquant *q = &t->q;
    if (q->kind == EI_GQ_NONE || q->kind == EI_GQ_TENSOR) {
        if (q->kind == EI_GQ_TENSOR) w->tscale = q->scale, w->zp = q->zero_point;
        if (w->zp != 0) {
            if (w->type != EI_CPU_W_I8)
                return snprintf(why, (size_t)nwhy, "weight %s: i4 with a zero point", t->name), -1;
            w->type = EI_CPU_W_I8Z;
        }
        return 0; /* scales -> tscale, set per execute (the step may be copied) */
    }
    if (q->scales < 0 || q->scales >= g->n_tensors || g->tensors[q->scales].kind != EI_GK_CONST)
        return snprintf(why, (size_t)nwhy, "weight %s: scales are not a constant", t->name), -1;
    const ei_gtensor *st = &g->tensors[q->scales];
    if (st->type != EI_GT_F32 && st->type != EI_GT_F16)
        return snprintf(why, (size_t)nwhy, "weight %s: scales of type %s", t->name, ei_gtype_name(st->type)), -1;
    w->scales = blob + st->offset;
    w->scale_f16 = st->type == EI_GT_F16;
    if (q->kind == EI_GQ_CHANNEL) {
        if (q->axis != 0)
            return snprintf(why, (size_t)nwhy, "weight %s: per-channel scales along axis %d, expected 0", t->name, q->axis), -1;
        w->scale_row = 1;
        return 0;
    }
    if (q->axis != 1 || q->group <= 0 || (q->group % 8 != 0 && q->group < K))
        return snprintf(why, (size_t)nwhy, "weight %s: group quantisation (axis %d, group %d) needs axis 1 and a group that is a multiple of 8",
                        t->name, q->axis, q->group), -1;
    w->group = q->group;
    w->scale_row = st->rank == 2 ? st->shape[1] : (K + q->group - 1) / q->group;
    return 0;
}

/* ---------------------------------------------------------------- FULLY_CONNECTED */
typedef struct {
    const ei_cpu_kernels *k;
    const float *x, *bias;
    float *y;
    ei_cpu_wmat w;
    int64_t M, K, N;
    int by_rows; /* split M instead of N */
} fc_ctx;

static void fc_range(void *p, int64_t lo, int64_t hi) {
    const fc_ctx *c = p;
    if (c->by_rows) c->k->fc(c->x + lo * c->K, c->K, hi - lo, &c->w, c->K, 0, c->N, c->bias, c->y + lo * c->N, c->N);
    else c->k->fc(c->x, c->K, c->M, &c->w, c->K, lo, hi, c->bias, c->y, c->N);
}

int ei_cpu_op_fc(ei_cpu_exec *x, const ei_cpu_step *s) {
    if (s->qpath == EI_CPU_QFC_Q8 || s->qpath == EI_CPU_QFC_Q8B) return ei_cpu_op_fc_q8(x, s);
    if (s->qpath == EI_CPU_QFC_INT) return ei_cpu_op_fc_int(x, s);
    const ei_gnode *n = &x->g->nodes[s->node];
    const ei_gtensor *tx = ei_cpu_t(x, n->in[0]), *tw = ei_cpu_t(x, n->in[1]);
    fc_ctx c = {.k = x->k, .w = s->w};
    c.K = tw->shape[1];
    c.N = tw->shape[0];
    c.M = ei_gtensor_numel(tx) / c.K;
    if (!c.w.data) c.w.data = x->ptr[n->in[1]];
    if (c.w.type >= EI_CPU_W_I8 && !c.w.scales) c.w.scales = &c.w.tscale;
    /* Quantised activations reach this float path only where the integer path cannot take them
     * (cpu_ops_qfc.c: I16 input with a zero point, whose x - zp may leave int16): dequantised in,
     * requantised out. */
    c.x = ei_cpu_in_f32(x, n->in[0]);
    c.y = ei_cpu_out_f32(x, n->out);
    if (n->n_in > 2) {
        const ei_gtensor *tb = ei_cpu_t(x, n->in[2]);
        if (tb->type == EI_GT_I32 && tb->q.kind == EI_GQ_NONE && tx->q.kind == EI_GQ_TENSOR) {
            /* NNAPI's int32 bias has scale x_scale * w_scale */
            float *b = ei_cpu_scratch(x, c.N);
            if (!b) return ei_cpu_fail(x, s, "internal: step scratch exhausted");
            const int32_t *bi = x->ptr[n->in[2]];
            for (int64_t i = 0; i < c.N; i++) {
                float ws = c.w.tscale;
                if (tw->q.kind == EI_GQ_CHANNEL)
                    ws = c.w.scale_f16 ? ei_f16_to_f32(((const uint16_t *)c.w.scales)[i]) : ((const float *)c.w.scales)[i];
                b[i] = (float)bi[i] * (tx->q.scale * ws);
            }
            c.bias = b;
        } else {
            c.bias = ei_cpu_in_f32(x, n->in[2]);
        }
        if (!c.bias) return ei_cpu_fail(x, s, "internal: step scratch exhausted");
    }
    if (!c.x || !c.y) return ei_cpu_fail(x, s, "internal: step scratch exhausted");
    /* ~32K weights per thread at least: below that a wake-up costs more than it saves */
    const int64_t min_rows = 1 + 32768 / (c.K > 0 ? c.K : 1);
    c.by_rows = c.M > 1 && c.N < 12 * x->nth && c.M >= 4 * x->nth;
    if (c.by_rows) ei_cpu_parallel(x, c.M, 4, 1 + min_rows / (c.N > 0 ? c.N : 1), fc_range, &c);
    else ei_cpu_parallel(x, c.N, c.M == 1 ? 4 : 12, c.M == 1 ? min_rows : 1 + min_rows / c.M, fc_range, &c);
    ei_cpu_out_commit(x, n->out, c.y);
    return 0;
}

/* ---------------------------------------------------------------- BATCH_MATMUL */
typedef struct {
    const ei_cpu_kernels *k;
    const float *a, *b;
    float *y;
    int64_t M, K, N;
    int64_t b_batch, b_row; /* b: elements between batch entries and between rows */
    int adj_x, adj_y;
    int scaled; /* then y *= alpha, row by row as computed */
    float alpha;
} bmm_ctx;

static void bmm_range(void *p, int64_t lo, int64_t hi) {
    const bmm_ctx *c = p;
    for (int64_t bt = lo / c->M; bt * c->M < hi; bt++) {
        int64_t m0 = lo - bt * c->M, m1 = hi - bt * c->M;
        if (m0 < 0) m0 = 0;
        if (m1 > c->M) m1 = c->M;
        const float *a = c->a + bt * c->M * c->K, *b = c->b + bt * c->b_batch;
        float *y = c->y + bt * c->M * c->N + m0 * c->N;
        if (c->adj_y) { /* b is [N, K]: dot products, the FULLY_CONNECTED kernel (a already [M, K]) */
            ei_cpu_wmat w = {.type = EI_CPU_W_F32, .data = b, .row_bytes = c->b_row * 4, .group = c->K, .tscale = 1.0f};
            c->k->fc(a + m0 * c->K, c->K, m1 - m0, &w, c->K, 0, c->N, NULL, y, c->N);
        } else if (c->adj_x) { /* a is [K, M] */
            c->k->mm_nn(a + m0, 1, c->M, m1 - m0, b, c->b_row, c->K, c->N, y, c->N);
        } else {
            c->k->mm_nn(a + m0 * c->K, c->K, 1, m1 - m0, b, c->b_row, c->K, c->N, y, c->N);
        }
        if (c->scaled)
            for (int64_t i = 0; i < (m1 - m0) * c->N; i++) y[i] = y[i] * c->alpha;
    }
}

typedef struct {
    const float *src;
    float *dst;
    int64_t M, K;
} tr_ctx;

static void tr_range(void *p, int64_t lo, int64_t hi) { /* [B, K, M] -> [B, M, K], by rows of the result */
    const tr_ctx *c = p;
    for (int64_t r = lo; r < hi; r++) {
        int64_t bt = r / c->M, m = r % c->M;
        const float *s = c->src + bt * c->M * c->K + m;
        float *d = c->dst + r * c->K;
        for (int64_t k = 0; k < c->K; k++) d[k] = s[k * c->M];
    }
}

/* Also the fused steps: EI_CPU_FUSE_BMM_T, whose b is X [T, B, d] of b = TRANSPOSE(X, {1, 0, 2}),
 * read in place (batch entries d apart, rows B * d apart), and either of them scaled (a MUL by a
 * constant folded in). */
int ei_cpu_op_bmm(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->fused ? s->bmm : s->node];
    const ei_gtensor *ta = ei_cpu_t(x, s->in[0]), *tb = ei_cpu_t(x, s->in[1]);
    const int r = ta->rank, bt = s->fused == EI_CPU_FUSE_BMM_T;
    /* b's last two axes as the op sees them */
    const int64_t b_rows = bt ? tb->shape[0] : tb->shape[tb->rank - 2], b_cols = tb->shape[tb->rank - 1];
    bmm_ctx c = {.k = x->k, .adj_x = n->p.bmm.adj_x != 0, .adj_y = n->p.bmm.adj_y != 0, .scaled = s->scaled,
                 .alpha = s->alpha};
    c.M = c.adj_x ? ta->shape[r - 1] : ta->shape[r - 2];
    c.K = c.adj_x ? ta->shape[r - 2] : ta->shape[r - 1];
    c.N = c.adj_y ? b_rows : b_cols;
    c.b_batch = bt ? b_cols : b_rows * b_cols;
    c.b_row = bt ? tb->shape[1] * b_cols : b_cols;
    const int64_t batch = ei_gtensor_numel(ta) / (c.M * c.K);
    c.a = ei_cpu_in_f32(x, s->in[0]);
    c.b = ei_cpu_in_f32(x, s->in[1]);
    c.y = ei_cpu_out_f32(x, s->out);
    if (!c.a || !c.b || !c.y) return ei_cpu_fail(x, s, "internal: step scratch exhausted");
    if (c.adj_x && c.adj_y) {
        float *t = ei_cpu_scratch(x, batch * c.M * c.K);
        if (!t) return ei_cpu_fail(x, s, "internal: step scratch exhausted");
        tr_ctx tc = {c.a, t, c.M, c.K};
        ei_cpu_parallel(x, batch * c.M, 1, 1 + 16384 / c.K, tr_range, &tc);
        c.a = t;
        c.adj_x = 0;
    }
    ei_cpu_parallel(x, batch * c.M, 1, 1 + 16384 / (c.N * c.K), bmm_range, &c);
    ei_cpu_out_commit(x, s->out, c.y);
    return 0;
}

/* ---------------------------------------------------------------- MEAN */
typedef struct {
    const ei_cpu_kernels *k;
    const float *x;
    float *y;
    int64_t n, inner;
} mean_ctx;

static void mean_range(void *p, int64_t lo, int64_t hi) {
    const mean_ctx *c = p;
    const float dn = (float)c->n;
    if (c->inner == 1) {
        for (int64_t o = lo; o < hi; o++) c->y[o] = c->k->sum(c->x + o * c->n, c->n) / dn;
        return;
    }
    /* other axes: each output is a sum over j in order; runs of one outer slice share the loop */
    for (int64_t e = lo; e < hi;) {
        const int64_t o = e / c->inner, i0 = e % c->inner;
        const int64_t i1 = (hi - o * c->inner) < c->inner ? hi - o * c->inner : c->inner;
        float *y = c->y + o * c->inner;
        const float *xo = c->x + o * c->n * c->inner;
        for (int64_t i = i0; i < i1; i++) y[i] = 0.0f;
        for (int64_t j = 0; j < c->n; j++)
            for (int64_t i = i0; i < i1; i++) y[i] += xo[j * c->inner + i];
        for (int64_t i = i0; i < i1; i++) y[i] /= dn;
        e = o * c->inner + i1;
    }
}

int ei_cpu_op_mean(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->node];
    const ei_gtensor *tx = ei_cpu_t(x, n->in[0]);
    const int32_t ax = ei_cpu_axis(n->p.mean.axis, tx->rank);
    mean_ctx c = {x->k, ei_cpu_in_f32(x, n->in[0]), ei_cpu_out_f32(x, n->out), tx->shape[ax], 1};
    if (!c.x || !c.y) return ei_cpu_fail(x, s, "internal: step scratch exhausted");
    for (int i = ax + 1; i < tx->rank; i++) c.inner *= tx->shape[i];
    const int64_t nout = ei_gtensor_numel(tx) / c.n;
    ei_cpu_parallel(x, nout, c.inner == 1 ? 1 : 8, 1 + 16384 / c.n, mean_range, &c);
    ei_cpu_out_commit(x, n->out, c.y);
    return 0;
}

/* ---------------------------------------------------------------- SOFTMAX */
typedef struct {
    ei_cpu_exec *ex;
    const float *x;
    float *y;
    int64_t n, inner;
    float beta;
} sm_ctx;

static void sm_range(void *p, int tid, int64_t lo, int64_t hi) {
    const sm_ctx *c = p;
    const ei_cpu_kernels *k = c->ex->k;
    if (c->inner == 1) {
        for (int64_t r = lo; r < hi; r++) k->softmax(c->x + r * c->n, c->y + r * c->n, c->n, c->beta);
        return;
    }
    float *row = c->ex->tscratch + tid * c->ex->tscratch_n; /* a strided row, gathered */
    for (int64_t r = lo; r < hi; r++) {
        const int64_t o = r / c->inner, i = r % c->inner, base = o * c->n * c->inner + i;
        for (int64_t j = 0; j < c->n; j++) row[j] = c->x[base + j * c->inner];
        k->softmax(row, row, c->n, c->beta);
        for (int64_t j = 0; j < c->n; j++) c->y[base + j * c->inner] = row[j];
    }
}

int ei_cpu_op_softmax(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gnode *n = &x->g->nodes[s->node];
    const ei_gtensor *tx = ei_cpu_t(x, n->in[0]);
    const int32_t ax = tx->rank ? ei_cpu_axis(n->p.softmax.axis, tx->rank) : 0;
    sm_ctx c = {x, ei_cpu_in_f32(x, n->in[0]), ei_cpu_out_f32(x, n->out), tx->rank ? tx->shape[ax] : 1, 1,
                n->p.softmax.beta};
    if (!c.x || !c.y) return ei_cpu_fail(x, s, "internal: step scratch exhausted");
    for (int i = ax + 1; i < tx->rank; i++) c.inner *= tx->shape[i];
    ei_cpu_parallel_tid(x, ei_gtensor_numel(tx) / c.n, 1, 1 + 8192 / c.n, sm_range, &c);
    ei_cpu_out_commit(x, n->out, c.y);
    return 0;
}

/* ---------------------------------------------------------------- fused */
typedef struct {
    const ei_cpu_kernels *k;
    const float *a, *b;
    float *y;
    int64_t d;
    float eps;
} fused_ctx;

static void rms_range(void *p, int64_t lo, int64_t hi) {
    const fused_ctx *c = p;
    for (int64_t r = lo; r < hi; r++) c->k->rmsnorm(c->a + r * c->d, c->b, c->y + r * c->d, c->d, c->eps);
}

int ei_cpu_op_rmsnorm(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gtensor *tx = ei_cpu_t(x, s->in[0]);
    fused_ctx c = {x->k, x->ptr[s->in[0]], x->ptr[s->in[1]], x->ptr[s->out], tx->shape[tx->rank - 1], s->eps};
    ei_cpu_parallel(x, ei_gtensor_numel(tx) / c.d, 1, 1 + 8192 / c.d, rms_range, &c);
    return 0;
}

static void swiglu_range(void *p, int64_t lo, int64_t hi) {
    const fused_ctx *c = p;
    c->k->swiglu(c->a + lo, c->b + lo, c->y + lo, hi - lo);
}

int ei_cpu_op_swiglu(ei_cpu_exec *x, const ei_cpu_step *s) {
    fused_ctx c = {x->k, x->ptr[s->in[0]], x->ptr[s->in[1]], x->ptr[s->out], 0, 0.0f};
    ei_cpu_parallel(x, ei_gtensor_numel(ei_cpu_t(x, s->out)), 16, 8192, swiglu_range, &c);
    return 0;
}

/* ---------------------------------------------------------------- fused RoPE (cpu_fuse.c)
 * y[t, h, r, j] = a c - b s, y[t, h, r, w + j] = a s + b c with a = X[t, h, r, j], b = X[t, h, r, w + j],
 * c = C[t, r, j], s = S[t, r, j]: each an IEEE product, then the difference or sum, as the unfused
 * MUL, SUB and ADD compute them (the build contracts no a * b - c into an FMA: -std=c11). */
typedef struct {
    const float *x, *c, *s;
    float *y;
    int64_t H, R, w;
} rope_ctx;

/* One (t, h) row: x, y [R][2w], c, s [R][w]. */
static void rope_row(const float *xr, const float *cc, const float *ss, float *yr, int64_t R, int64_t w) {
    if (w == 1) { /* interleaved pairs: one loop over the row, which the compiler vectorises
                   * (an AVX2 kernel with permutes measured the same: the step streams the cache) */
        for (int64_t r = 0; r < R; r++) {
            const float a = xr[2 * r], b = xr[2 * r + 1], cj = cc[r], sj = ss[r];
            const float ac = a * cj, bs = b * sj, as = a * sj, bc = b * cj;
            yr[2 * r] = ac - bs;
            yr[2 * r + 1] = as + bc;
        }
        return;
    }
    for (int64_t r = 0; r < R; r++) {
        const float *xa = xr + r * 2 * w, *xb = xa + w, *cr = cc + r * w, *sr = ss + r * w;
        float *ya = yr + r * 2 * w, *yb = ya + w;
        for (int64_t j = 0; j < w; j++) {
            const float a = xa[j], b = xb[j], cj = cr[j], sj = sr[j];
            const float ac = a * cj, bs = b * sj, as = a * sj, bc = b * cj;
            ya[j] = ac - bs;
            yb[j] = as + bc;
        }
    }
}

static void rope_range(void *p, int64_t lo, int64_t hi) {
    const rope_ctx *c = p;
    const int64_t d = c->R * 2 * c->w;
    for (int64_t row = lo; row < hi; row++) { /* row = t * H + h */
        const int64_t t = row / c->H;
        rope_row(c->x + row * d, c->c + t * c->R * c->w, c->s + t * c->R * c->w, c->y + row * d, c->R, c->w);
    }
}

int ei_cpu_op_rope(ei_cpu_exec *x, const ei_cpu_step *s) {
    const ei_gtensor *tx = ei_cpu_t(x, s->in[0]);
    const int64_t T = tx->shape[0], H = tx->shape[1], w = tx->shape[tx->rank - 1] / 2;
    const int64_t R = ei_gtensor_numel(tx) / (T * H * 2 * w);
    rope_ctx c = {x->ptr[s->in[0]], x->ptr[s->in[1]], x->ptr[s->in[2]], x->ptr[s->out], H, R, w};
    ei_cpu_parallel(x, T * H, 1, 1 + 16384 / (R * 2 * w), rope_range, &c);
    return 0;
}
