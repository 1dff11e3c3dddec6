/* GEMM wrapper, RMSNorm and RoPE kernels against naive float64 loops, and bit-identical results
 * for 1 and 2 threads. Bounds: float64 results within 1e-12 (relative to the magnitude of the
 * terms), float32 within 1e-5 relative (float32 rounding over <= 300-term sums). */
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

static double *rnd(int64_t n, uint64_t seed) {
    double *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = urand(&seed);
    return x;
}

static float *f32(const double *x, int64_t n) {
    float *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}

/* C = op(A) op(B) + beta C0 with A stored [m,k] or [k,m], B [k,n] or [n,k]. */
static void gemm_case(int ta, int tb, int64_t m, int64_t n, int64_t k) {
    double *a = rnd(m * k, 1), *b = rnd(k * n, 2), *c0 = rnd(m * n, 3);
    double *ref = malloc((size_t)(m * n) * 8), *c = malloc((size_t)(m * n) * 8);
    const int64_t lda = ta ? m : k, ldb = tb ? k : n;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0.5 * c0[i * n + j];
            for (int64_t p = 0; p < k; p++) s += 2.0 * (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
            ref[i * n + j] = s;
        }
    memcpy(c, c0, (size_t)(m * n) * 8);
    ei_k_gemm_f64(ta, tb, m, n, k, 2.0, a, lda, b, ldb, 0.5, c, n);
    for (int64_t i = 0; i < m * n; i++) assert_true(fabs(c[i] - ref[i]) < 1e-12 * (double)k);
    float *a32 = f32(a, m * k), *b32 = f32(b, k * n), *c1 = f32(c0, m * n), *c2 = f32(c0, m * n);
    ei_k_threads_set(1);
    ei_k_gemm_f32(ta, tb, m, n, k, 2.0f, a32, lda, b32, ldb, 0.5f, c1, n);
    ei_k_threads_set(2);
    ei_k_gemm_f32(ta, tb, m, n, k, 2.0f, a32, lda, b32, ldb, 0.5f, c2, n);
    ei_k_threads_set(1);
    assert_memory_equal(c1, c2, (size_t)(m * n) * 4);
    for (int64_t i = 0; i < m * n; i++) assert_true(fabs(c1[i] - ref[i]) < 1e-5 * (double)k);
    free(a), free(b), free(c0), free(ref), free(c), free(a32), free(b32), free(c1), free(c2);
}

static void test_gemm(void **state) {
    (void)state;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            gemm_case(ta, tb, 3, 5, 4);       /* one call */
            gemm_case(ta, tb, 300, 70, 64);   /* two row blocks, the second shorter */
            gemm_case(ta, tb, 2100, 20, 30);  /* four row blocks (more than 2 x GEMM_ROWS_MAX rows) */
            gemm_case(ta, tb, 40, 600, 50);   /* column blocks */
        }
    /* k = 0: C = beta C */
    double c[4] = {1, 2, 3, 4};
    ei_k_gemm_f64(0, 0, 2, 2, 0, 1.0, NULL, 1, NULL, 2, 0.5, c, 2);
    assert_true(c[0] == 0.5 && c[3] == 2.0);
}

static void test_rmsnorm(void **state) {
    (void)state;
    const int64_t R = 70, D = 300;
    double *x = rnd(R * D, 4), *w = rnd(D, 5), *y = malloc((size_t)(R * D) * 8), *rs = malloc((size_t)R * 8);
    ei_k_rmsnorm_forward_f64(R, D, x, w, 1e-5, y, rs);
    float *x32 = f32(x, R * D), *w32 = f32(w, D), *y32 = malloc((size_t)(R * D) * 4), *rs32 = malloc((size_t)R * 4);
    ei_k_rmsnorm_forward_f32(R, D, x32, w32, 1e-5, y32, rs32);
    for (int64_t r = 0; r < R; r++) {
        double ss = 0;
        for (int64_t c = 0; c < D; c++) ss += x[r * D + c] * x[r * D + c];
        const double inv = 1.0 / sqrt(ss / (double)D + 1e-5);
        for (int64_t c = 0; c < D; c++) {
            const double want = x[r * D + c] * inv * w[c];
            assert_true(fabs(y[r * D + c] - want) < 1e-12);
            assert_true(fabs(y32[r * D + c] - want) < 1e-5 * (1 + fabs(want)));
        }
    }
    /* backward bit-identical across thread counts (dw reduces over rows) */
    double *dy = rnd(R * D, 6);
    float *dy32 = f32(dy, R * D), *dx1 = calloc((size_t)(R * D), 4), *dx2 = calloc((size_t)(R * D), 4);
    float *dw1 = calloc((size_t)D, 4), *dw2 = calloc((size_t)D, 4);
    ei_k_threads_set(1);
    ei_k_rmsnorm_backward_f32(R, D, x32, w32, rs32, dy32, dx1, 0, dw1);
    ei_k_threads_set(2);
    ei_k_rmsnorm_backward_f32(R, D, x32, w32, rs32, dy32, dx2, 0, dw2);
    ei_k_threads_set(1);
    assert_memory_equal(dx1, dx2, (size_t)(R * D) * 4);
    assert_memory_equal(dw1, dw2, (size_t)D * 4);
    /* overwrite: dx written over garbage equals dx added to zeros */
    for (int64_t i = 0; i < R * D; i++) dx2[i] = NAN;
    ei_k_rmsnorm_backward_f32(R, D, x32, w32, rs32, dy32, dx2, 1, NULL);
    assert_memory_equal(dx1, dx2, (size_t)(R * D) * 4);
    free(x), free(w), free(y), free(rs), free(x32), free(w32), free(y32), free(rs32), free(dy), free(dy32);
    free(dx1), free(dx2), free(dw1), free(dw2);
}

/* RoPE against the definition, both layouts, positions up to 100000 (angles computed in double). */
static void test_rope(void **state) {
    (void)state;
    const int64_t T = 5, H = 3, D = 16;
    const int32_t pos[5] = {0, 1, 17, 4095, 100000};
    double *x = rnd(T * H * D, 7), *y = malloc((size_t)(T * H * D) * 8), *back = calloc((size_t)(T * H * D), 8);
    float *x32 = f32(x, T * H * D), *y32 = malloc((size_t)(T * H * D) * 4);
    /* the one table generator: (cos, sin) per position and pair, applied by row index */
    double *cs = malloc((size_t)(T * D) * 8);
    float *cs32 = malloc((size_t)(T * D) * 4);
    ei_k_rope_angles_f64(T, D, pos, 500000.0, cs);
    ei_k_rope_angles_f32(T, D, pos, 500000.0, cs32);
    for (int layout = 0; layout < 2; layout++) {
        ei_k_rope_tab_f64(T, H, D, cs, NULL, layout, 0, 0, x, y);
        ei_k_rope_tab_f32(T, H, D, cs32, NULL, layout, 0, 0, x32, y32);
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < D / 2; i++) {
                    const double ang = pos[t] / pow(500000.0, 2.0 * (double)i / (double)D);
                    const int64_t ia = layout ? i : 2 * i, ib = layout ? i + D / 2 : 2 * i + 1, o = (t * H + h) * D;
                    const double a = x[o + ia], b = x[o + ib];
                    const double wa = a * cos(ang) - b * sin(ang), wb = a * sin(ang) + b * cos(ang);
                    assert_true(fabs(y[o + ia] - wa) < 1e-12 && fabs(y[o + ib] - wb) < 1e-12);
                    assert_true(fabs(y32[o + ia] - wa) < 1e-5 && fabs(y32[o + ib] - wb) < 1e-5);
                }
        /* the inverse rotation undoes the forward one, added to zeros or written over garbage */
        memset(back, 0, (size_t)(T * H * D) * 8);
        ei_k_rope_tab_f64(T, H, D, cs, NULL, layout, 1, 1, y, back);
        for (int64_t i = 0; i < T * H * D; i++) assert_true(fabs(back[i] - x[i]) < 1e-12);
        for (int64_t i = 0; i < T * H * D; i++) back[i] = NAN;
        ei_k_rope_tab_f64(T, H, D, cs, NULL, layout, 1, 0, y, back);
        for (int64_t i = 0; i < T * H * D; i++) assert_true(fabs(back[i] - x[i]) < 1e-12);
    }
    free(x), free(y), free(back), free(x32), free(y32), free(cs), free(cs32);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
