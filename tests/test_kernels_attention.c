/* Fused attention kernels against a naive float64 implementation that materialises the full
 * score matrix (softmax computed directly, backward from the textbook formulas).
 * Bounds: float64 kernel within 1e-12 of the reference (only summation order differs); float32
 * kernel within 2e-5 absolute on outputs of magnitude ~1 (float32 rounding over ~100-term sums);
 * float64 backward within 1e-11 (two-pass, one-pass with recomputed scores, one-pass from the
 * forward's probability store); float32 one-pass dK within 1e-4. Also: bit-identical results with
 * 1 and 2 threads (forward, and the float32 one-pass backward). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double urand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static int visible(const ei_k_attn *p, int64_t i, int64_t j) {
    if (p->valid_u8 && !p->valid_u8[j]) return 0;
    if (p->valid_i32 && !p->valid_i32[j]) return 0;
    return p->causal_offset == INT64_MAX || j <= p->causal_offset + i;
}

/* Full-matrix reference: out, and (when dout given) dq, dk, dv. */
static void naive(const ei_k_attn *p, const double *q, const double *k, const double *v, double *out,
                  const double *dout, double *dq, double *dk, double *dv) {
    const int64_t H = p->h, G = p->h / p->hkv, D = p->d, DV = p->dv;
    double *P = calloc((size_t)p->tk, sizeof *P), *dP = calloc((size_t)p->tk, sizeof *dP);
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < p->tq; i++) {
            const int64_t g = h / G;
            const double *qi = q + (i * H + h) * D;
            double m = -INFINITY, s = 0;
            for (int64_t j = 0; j < p->tk; j++) {
                P[j] = -INFINITY;
                if (!visible(p, i, j)) continue;
                double d = 0;
                for (int64_t c = 0; c < D; c++) d += qi[c] * k[(j * p->hkv + g) * D + c];
                P[j] = d * p->scale;
                if (P[j] > m) m = P[j];
            }
            for (int64_t j = 0; j < p->tk; j++) s += (P[j] = P[j] == -INFINITY ? 0 : exp(P[j] - m));
            double *oi = out + (i * H + h) * DV;
            for (int64_t c = 0; c < DV; c++) oi[c] = 0;
            if (s == 0) continue;
            for (int64_t j = 0; j < p->tk; j++) {
                P[j] /= s;
                for (int64_t c = 0; c < DV; c++) oi[c] += P[j] * v[(j * p->hkv + g) * DV + c];
            }
            if (!dout) continue;
            const double *doi = dout + (i * H + h) * DV;
            double dsum = 0;
            for (int64_t j = 0; j < p->tk; j++) {
                dP[j] = 0;
                for (int64_t c = 0; c < DV; c++) {
                    dP[j] += doi[c] * v[(j * p->hkv + g) * DV + c];
                    dv[(j * p->hkv + g) * DV + c] += P[j] * doi[c];
                }
                dsum += P[j] * dP[j];
            }
            for (int64_t j = 0; j < p->tk; j++) {
                const double dS = P[j] * (dP[j] - dsum) * p->scale;
                for (int64_t c = 0; c < D; c++) {
                    dq[(i * H + h) * D + c] += dS * k[(j * p->hkv + g) * D + c];
                    dk[(j * p->hkv + g) * D + c] += dS * qi[c];
                }
            }
        }
    free(P);
    free(dP);
}

typedef struct {
    ei_k_attn p;
    int64_t nq, nk, nv, no;
    double *q, *k, *v, *dout;
} problem;

/* Key parts of the problems that have them (0 = one part): set by run_parts around run_case. */
static int n_parts;
static int64_t part_len[EI_K_ATTN_MAX_PARTS];

static void make(problem *pr, int64_t tq, int64_t tk, int64_t h, int64_t hkv, int64_t d, int64_t dv, int64_t off,
                 const uint8_t *valid, uint64_t seed) {
    memset(pr, 0, sizeof *pr);
    pr->p = (ei_k_attn){.tq = tq, .tk = tk, .h = h, .hkv = hkv, .d = d, .dv = dv, .scale = 1.0 / sqrt((double)d),
                        .causal_offset = off, .valid_u8 = valid, .n_parts = n_parts};
    memcpy(pr->p.part_len, part_len, sizeof part_len);
    pr->nq = tq * h * d;
    pr->nk = tk * hkv * d;
    pr->nv = tk * hkv * dv;
    pr->no = tq * h * dv;
    pr->q = malloc((size_t)pr->nq * 8);
    pr->k = malloc((size_t)pr->nk * 8);
    pr->v = malloc((size_t)pr->nv * 8);
    pr->dout = malloc((size_t)pr->no * 8);
    for (int64_t i = 0; i < pr->nq; i++) pr->q[i] = 2 * urand(&seed);
    for (int64_t i = 0; i < pr->nk; i++) pr->k[i] = 2 * urand(&seed);
    for (int64_t i = 0; i < pr->nv; i++) pr->v[i] = urand(&seed);
    for (int64_t i = 0; i < pr->no; i++) pr->dout[i] = urand(&seed);
}

static void release(problem *pr) {
    free(pr->q);
    free(pr->k);
    free(pr->v);
    free(pr->dout);
}

static float *to_f32(const double *x, int64_t n) {
    float *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}

static void run_case(int64_t tq, int64_t tk, int64_t h, int64_t hkv, int64_t d, int64_t dv, int64_t off,
                     const uint8_t *valid, uint64_t seed) {
    problem pr;
    make(&pr, tq, tk, h, hkv, d, dv, off, valid, seed);
    double *ref = calloc((size_t)pr.no, 8), *got = calloc((size_t)pr.no, 8), *lse = calloc((size_t)(h * tq), 8);
    double *rq = calloc((size_t)pr.nq, 8), *rk = calloc((size_t)pr.nk, 8), *rv = calloc((size_t)pr.nv, 8);
    double *gq = calloc((size_t)pr.nq, 8), *gk = calloc((size_t)pr.nk, 8), *gv = calloc((size_t)pr.nv, 8);
    double *delta = calloc((size_t)(h * tq), 8);
    naive(&pr.p, pr.q, pr.k, pr.v, ref, pr.dout, rq, rk, rv);

    ei_k_attention_forward_f64(&pr.p, pr.q, pr.k, pr.v, got, lse);
    for (int64_t i = 0; i < pr.no; i++) assert_true(fabs(got[i] - ref[i]) < 1e-12);
    ei_k_attention_backward_f64(&pr.p, pr.q, pr.k, pr.v, got, lse, pr.dout, delta, gq, gk, gv);
    for (int64_t i = 0; i < pr.nq; i++) assert_true(fabs(gq[i] - rq[i]) < 1e-11);
    for (int64_t i = 0; i < pr.nk; i++) assert_true(fabs(gk[i] - rk[i]) < 1e-11);
    for (int64_t i = 0; i < pr.nv; i++) assert_true(fabs(gv[i] - rv[i]) < 1e-11);

    /* one-pass backward, scores recomputed (pst NULL) and from the forward's probability store */
    double *ws = malloc((size_t)ei_k_attention_ws_len(&pr.p) * 8), *pst = malloc((size_t)ei_k_attention_p_len(&pr.p) * 8);
    for (int stored = 0; stored < 2; stored++) {
        double *hq = calloc((size_t)pr.nq, 8), *hk = calloc((size_t)pr.nk, 8), *hv = calloc((size_t)pr.nv, 8);
        double *o2 = calloc((size_t)pr.no, 8), *l2 = calloc((size_t)(h * tq), 8);
        ei_k_attention_forward_p_f64(&pr.p, pr.q, pr.k, pr.v, o2, l2, stored ? pst : NULL);
        for (int64_t i = 0; i < pr.no; i++) assert_true(fabs(o2[i] - ref[i]) < 1e-12);
        ei_k_attention_backward_ws_f64(&pr.p, pr.q, pr.k, pr.v, o2, l2, pr.dout, ws, stored ? pst : NULL, hq, hk, hv);
        for (int64_t i = 0; i < pr.nq; i++) assert_true(fabs(hq[i] - rq[i]) < 1e-11);
        for (int64_t i = 0; i < pr.nk; i++) assert_true(fabs(hk[i] - rk[i]) < 1e-11);
        for (int64_t i = 0; i < pr.nv; i++) assert_true(fabs(hv[i] - rv[i]) < 1e-11);
        free(hq), free(hk), free(hv), free(o2), free(l2);
    }
    free(ws), free(pst);

    float *q32 = to_f32(pr.q, pr.nq), *k32 = to_f32(pr.k, pr.nk), *v32 = to_f32(pr.v, pr.nv);
    float *o32 = calloc((size_t)pr.no, 4), *l32 = calloc((size_t)(h * tq), 4), *o32b = calloc((size_t)pr.no, 4);
    ei_k_threads_set(1);
    ei_k_attention_forward_f32(&pr.p, q32, k32, v32, o32, l32);
    double maxerr = 0;
    for (int64_t i = 0; i < pr.no; i++) maxerr = fmax(maxerr, fabs((double)o32[i] - ref[i]));
    assert_true(maxerr < 2e-5);
    ei_k_threads_set(2);
    ei_k_attention_forward_f32(&pr.p, q32, k32, v32, o32b, l32);
    assert_memory_equal(o32, o32b, (size_t)pr.no * 4);
    /* float32 one-pass backward with the store: bit-identical with 1 and 2 threads */
    {
        float *ws32 = malloc((size_t)ei_k_attention_ws_len(&pr.p) * 4), *p32 = malloc((size_t)ei_k_attention_p_len(&pr.p) * 4);
        float *d32 = to_f32(pr.dout, pr.no), *g[2][3];
        for (int t = 0; t < 2; t++) {
            ei_k_threads_set(t + 1);
            g[t][0] = calloc((size_t)pr.nq, 4), g[t][1] = calloc((size_t)pr.nk, 4), g[t][2] = calloc((size_t)pr.nv, 4);
            ei_k_attention_forward_p_f32(&pr.p, q32, k32, v32, o32b, l32, p32);
            ei_k_attention_backward_ws_f32(&pr.p, q32, k32, v32, o32b, l32, d32, ws32, p32, g[t][0], g[t][1], g[t][2]);
        }
        double e = 0;
        for (int64_t i = 0; i < pr.nk; i++) e = fmax(e, fabs((double)g[0][1][i] - rk[i]));
        assert_true(e < 1e-4);
        assert_memory_equal(g[0][0], g[1][0], (size_t)pr.nq * 4);
        assert_memory_equal(g[0][1], g[1][1], (size_t)pr.nk * 4);
        assert_memory_equal(g[0][2], g[1][2], (size_t)pr.nv * 4);
        /* the _parts entry points on separately allocated parts: the same bits as one array cut into
         * the same parts (the same tiles), gradients only for the parts asked for */
        if (pr.p.n_parts > 1) {
            const int np = pr.p.n_parts;
            const float *kp[EI_K_ATTN_MAX_PARTS], *vp[EI_K_ATTN_MAX_PARTS];
            float *kc[EI_K_ATTN_MAX_PARTS], *vc[EI_K_ATTN_MAX_PARTS], *dkc[EI_K_ATTN_MAX_PARTS], *dvc[EI_K_ATTN_MAX_PARTS];
            int64_t j = 0;
            for (int i = 0; i < np; i++) {
                const size_t nk = (size_t)(pr.p.part_len[i] * hkv * d), nv = (size_t)(pr.p.part_len[i] * hkv * dv);
                kc[i] = malloc(nk * 4), vc[i] = malloc(nv * 4);
                memcpy(kc[i], k32 + j * hkv * d, nk * 4);
                memcpy(vc[i], v32 + j * hkv * dv, nv * 4);
                kp[i] = kc[i], vp[i] = vc[i];
                dkc[i] = calloc(nk, 4), dvc[i] = i == 1 ? NULL : calloc(nv, 4); /* no dV for part 1 */
                j += pr.p.part_len[i];
            }
            float *o3 = calloc((size_t)pr.no, 4), *l3 = calloc((size_t)(h * tq), 4), *q3 = calloc((size_t)pr.nq, 4);
            ei_k_attention_forward_parts_f32(&pr.p, q32, kp, vp, o3, l3, p32);
            assert_memory_equal(o3, o32b, (size_t)pr.no * 4);
            ei_k_attention_backward_parts_f32(&pr.p, q32, kp, vp, o3, l3, d32, ws32, p32, q3, dkc, dvc);
            assert_memory_equal(q3, g[1][0], (size_t)pr.nq * 4);
            j = 0;
            for (int i = 0; i < np; i++) {
                assert_memory_equal(dkc[i], g[1][1] + j * hkv * d, (size_t)(pr.p.part_len[i] * hkv * d) * 4);
                if (dvc[i]) assert_memory_equal(dvc[i], g[1][2] + j * hkv * dv, (size_t)(pr.p.part_len[i] * hkv * dv) * 4);
                j += pr.p.part_len[i];
                free(kc[i]), free(vc[i]), free(dkc[i]), free(dvc[i]);
            }
            free(o3), free(l3), free(q3);
        }
        for (int t = 0; t < 2; t++) free(g[t][0]), free(g[t][1]), free(g[t][2]);
        free(ws32), free(p32), free(d32);
    }
    ei_k_threads_set(1);

    free(q32), free(k32), free(v32), free(o32), free(l32), free(o32b);
    free(ref), free(got), free(lse), free(rq), free(rk), free(rv), free(gq), free(gk), free(gv), free(delta);
    release(&pr);
}

static void test_small_gqa_masked(void **state) {
    (void)state;
    const uint8_t valid[9] = {1, 1, 0, 0, 1, 1, 1, 1, 1};
    run_case(4, 9, 4, 2, 8, 8, 5, valid, 1);
}

static void test_segment_after_cache(void **state) {
    (void)state;
    /* sink 4 + window 60 (first 10 unfilled) + segment 70: several key blocks */
    uint8_t valid[134];
    for (int j = 0; j < 134; j++) valid[j] = !(j >= 4 && j < 14);
    run_case(70, 134, 4, 1, 16, 16, 64, valid, 2);
}

static void test_noncausal_and_empty_rows(void **state) {
    (void)state;
    run_case(5, 7, 2, 2, 4, 6, INT64_MAX, NULL, 3);
    run_case(5, 5, 2, 1, 4, 4, -2, NULL, 4); /* queries 0 and 1 see nothing */
}

/* more keys than one tile (256): online rescaling across tiles, one dQ share per key tile */
static void test_several_key_tiles(void **state) {
    (void)state;
    uint8_t valid[600];
    for (int j = 0; j < 600; j++) valid[j] = !(j >= 4 && j < 40) && j != 300;
    run_case(80, 600, 4, 2, 8, 8, 520, valid, 6);
}

/* Keys in parts (sink, window, segment, as the training graphs pass them): every check of
 * run_case, against the same one-array reference, with tiles cut inside each part, including a
 * part longer than a tile and a part of one key. */
static void run_parts(int np, const int64_t *len, int64_t tq, int64_t tk, int64_t h, int64_t hkv, int64_t d,
                      int64_t off, const uint8_t *valid, uint64_t seed) {
    n_parts = np;
    memcpy(part_len, len, (size_t)np * sizeof *len);
    run_case(tq, tk, h, hkv, d, d, off, valid, seed);
    n_parts = 0;
    memset(part_len, 0, sizeof part_len);
}

static void test_key_parts(void **state) {
    (void)state;
    uint8_t valid[134];
    for (int j = 0; j < 134; j++) valid[j] = !(j >= 4 && j < 14);
    run_parts(3, (const int64_t[]){4, 60, 70}, 70, 134, 4, 1, 16, 64, valid, 2);
    uint8_t v2[600];
    for (int j = 0; j < 600; j++) v2[j] = !(j >= 4 && j < 40) && j != 300;
    run_parts(4, (const int64_t[]){4, 300, 1, 295}, 80, 600, 4, 2, 8, 520, v2, 6);
    run_parts(2, (const int64_t[]){3, 6}, 5, 9, 2, 2, 4, INT64_MAX, NULL, 7);
}

/* The first segment of a document: its window part holds no valid key yet, so that tile is skipped
 * by the forward and both backwards (its dK / dV stay 0, its dQ share is 0); 150 queries make two
 * query tiles of the key-tile backward and three of the forward. A second window half-filled. */
static void test_dead_window_tile(void **state) {
    (void)state;
    uint8_t valid[410];
    for (int j = 0; j < 410; j++) valid[j] = j < 4 || j >= 260;
    run_parts(3, (const int64_t[]){4, 256, 150}, 150, 410, 4, 2, 16, 260, valid, 8);
    for (int j = 0; j < 410; j++) valid[j] = j < 4 || j >= 132;
    run_parts(3, (const int64_t[]){4, 256, 150}, 150, 410, 4, 2, 16, 260, valid, 9);
}

static void test_long_f32(void **state) {
    (void)state;
    run_case(256, 256, 2, 1, 32, 32, 0, NULL, 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_gqa_masked),
        cmocka_unit_test(test_segment_after_cache),
        cmocka_unit_test(test_noncausal_and_empty_rows),
        cmocka_unit_test(test_several_key_tiles),
        cmocka_unit_test(test_key_parts),
        cmocka_unit_test(test_dead_window_tile),
        cmocka_unit_test(test_long_f32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
