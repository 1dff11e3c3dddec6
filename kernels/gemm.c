/* Row-major GEMM over OpenBLAS, parallelised by OpenMP rather than by OpenBLAS's own threads.
 *
 * Why: OpenBLAS (Debian's pthreads build) and libgomp each keep a spinning thread pool. Training
 * alternates GEMMs with OpenMP element-wise kernels, so two pools of busy-waiting threads fought
 * over the cores: measured 2.5x slower with 2 threads than with 1 on a 2-core machine. Here
 * OpenBLAS is pinned to one thread and a large GEMM is cut into fixed blocks of rows (or of
 * columns when there are few rows) that the OpenMP team shares. The blocks depend only on the
 * shape, never on the thread count, so the result is bit-identical for any number of threads. */
#include "kernels/kernels.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>

#define GEMM_ROWS 128     /* rows of C per block */
#define GEMM_COLS 256     /* columns of C per block when m is small */
#define GEMM_MIN_WORK (1 << 20) /* m*n*k below which one call does it all */

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_single(void) { openblas_set_num_threads(1); }

void ei_k_blas_init(void) { pthread_once(&blas_once, blas_single); }

void ei_k_threads_set(int n) {
    if (n < 1) n = 1;
    pthread_once(&blas_once, blas_single);
    omp_set_num_threads(n);
}

int ei_k_threads_get(void) { return omp_get_max_threads(); }

/* Block layout of C: by rows when there are enough of them, else by columns. */
static int64_t gemm_blocks(int64_t m, int64_t n, int64_t k, int *by_rows) {
    *by_rows = m >= 2 * GEMM_ROWS || n < 2 * GEMM_COLS;
    if (m * n * k < GEMM_MIN_WORK) return 1;
    return *by_rows ? (m + GEMM_ROWS - 1) / GEMM_ROWS : (n + GEMM_COLS - 1) / GEMM_COLS;
}

#define GEMM_BODY(REAL, CBLAS)                                                                                    \
    if (m <= 0 || n <= 0) return;                                                                               \
    pthread_once(&blas_once, blas_single);                                                                      \
    if (k <= 0) { /* BLAS would leave C untouched only when beta == 1 */                                         \
        for (int64_t i = 0; i < m; i++)                                                                         \
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];             \
        return;                                                                                                 \
    }                                                                                                           \
    int by_rows;                                                                                                \
    const int64_t nb = gemm_blocks(m, n, k, &by_rows);                                                          \
    const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;   \
    if (nb == 1) {                                                                                              \
        CBLAS(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc); \
        return;                                                                                                 \
    }                                                                                                           \
    _Pragma("omp parallel for schedule(dynamic, 1) if (!omp_in_parallel())") for (int64_t blk = 0; blk < nb;   \
                                                                                  blk++) {                      \
        if (by_rows) {                                                                                          \
            const int64_t r0 = blk * GEMM_ROWS, rn = m - r0 < GEMM_ROWS ? m - r0 : GEMM_ROWS;                   \
            /* rows r0.. of op(A): row offset in A, or column offset when A is stored transposed */            \
            const REAL *ab = trans_a ? a + r0 : a + r0 * lda;                                                   \
            CBLAS(CblasRowMajor, ta, tb, (int)rn, (int)n, (int)k, alpha, ab, (int)lda, b, (int)ldb, beta,      \
                  c + r0 * ldc, (int)ldc);                                                                      \
        } else {                                                                                                \
            const int64_t c0 = blk * GEMM_COLS, cn = n - c0 < GEMM_COLS ? n - c0 : GEMM_COLS;                   \
            const REAL *bb = trans_b ? b + c0 * ldb : b + c0;                                                   \
            CBLAS(CblasRowMajor, ta, tb, (int)m, (int)cn, (int)k, alpha, a, (int)lda, bb, (int)ldb, beta,      \
                  c + c0, (int)ldc);                                                                            \
        }                                                                                                       \
    }

void ei_k_gemm_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    GEMM_BODY(float, cblas_sgemm)
}

void ei_k_gemm_f64(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                   int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc) {
    GEMM_BODY(double, cblas_dgemm)
}
