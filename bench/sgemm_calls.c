/* Times every cblas_sgemm call of a program, by shape: an LD_PRELOAD wrapper that answers how fast
 * the single-threaded OpenBLAS blocks of ei_k_gemm run inside a real training step, which the
 * op-level EI_AG_PROFILE cannot split by shape (docs/benchmarks.md, stops 25-26).
 *
 *   LD_PRELOAD=build/libsgemm_calls.so EI_SGEMM_CALLS_OUT=calls.txt build/ei train ...
 *
 * At exit it writes one line per (m, n, k, transposes): calls, seconds summed over the calls and
 * GFLOP/s per call (2 m n k calls / seconds; with calls running on several threads at once this
 * is the rate of one call, not of the machine). Calls below EI_SGEMM_CALLS_MIN (m n k, default
 * 2e7) are passed through untimed: the attention's tile products would flood the table. Output
 * goes to EI_SGEMM_CALLS_OUT, else stderr. Up to 256 shapes; later new shapes are counted in one
 * "other" line. A timed call reads the clock twice and takes a lock once; the calls it times are
 * at least 2e7 multiply-adds, a tenth of a millisecond or more each. */
#define _GNU_SOURCE
#include <cblas.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef void (*sgemm_fn)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE, const enum CBLAS_TRANSPOSE, const int,
                         const int, const int, const float, const float *, const int, const float *, const int,
                         const float, float *, const int);

#define MAX_SHAPES 256
static struct {
    int m, n, k, ta, tb;
    long calls;
    double secs;
} shapes[MAX_SHAPES + 1]; /* the last one: "other" */
static int n_shapes;
static double min_work = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static sgemm_fn real_sgemm;

static void init(void) {
    real_sgemm = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
    const char *e = getenv("EI_SGEMM_CALLS_MIN");
    min_work = e ? atof(e) : 2e7;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta, const enum CBLAS_TRANSPOSE tb,
                 const int m, const int n, const int k, const float alpha, const float *a, const int lda,
                 const float *b, const int ldb, const float beta, float *c, const int ldc) {
    pthread_once(&once, init);
    if (!real_sgemm) {
        fputs("sgemm_calls: no cblas_sgemm after this library (preload it into a program linked with a BLAS)\n", stderr);
        abort();
    }
    if ((double)m * n * k < min_work) {
        real_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const double t0 = now();
    real_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    const double dt = now() - t0;
    const int tra = ta == CblasTrans, trb = tb == CblasTrans;
    pthread_mutex_lock(&lock);
    int i = 0;
    while (i < n_shapes && !(shapes[i].m == m && shapes[i].n == n && shapes[i].k == k && shapes[i].ta == tra &&
                             shapes[i].tb == trb))
        i++;
    if (i == n_shapes) {
        if (n_shapes < MAX_SHAPES) {
            shapes[i].m = m, shapes[i].n = n, shapes[i].k = k, shapes[i].ta = tra, shapes[i].tb = trb;
            n_shapes++;
        } else {
            i = MAX_SHAPES;
        }
    }
    shapes[i].calls++;
    shapes[i].secs += dt;
    pthread_mutex_unlock(&lock);
}

__attribute__((destructor)) static void report(void) {
    if (!n_shapes) return;
    const char *path = getenv("EI_SGEMM_CALLS_OUT");
    FILE *f = path ? fopen(path, "w") : stderr;
    if (!f) {
        fprintf(stderr, "sgemm_calls: cannot write %s\n", path);
        f = stderr;
    }
    fprintf(f, "%6s %6s %6s %3s %3s %8s %10s %14s\n", "m", "n", "k", "tA", "tB", "calls", "seconds", "GFLOP/s/call");
    for (int i = 0; i < n_shapes; i++)
        fprintf(f, "%6d %6d %6d %3d %3d %8ld %10.3f %14.1f\n", shapes[i].m, shapes[i].n, shapes[i].k, shapes[i].ta,
                shapes[i].tb, shapes[i].calls, shapes[i].secs,
                2.0 * shapes[i].m * shapes[i].n * (double)shapes[i].k * (double)shapes[i].calls / shapes[i].secs / 1e9);
    if (shapes[MAX_SHAPES].calls)
        fprintf(f, "other shapes: %ld calls, %.3f s\n", shapes[MAX_SHAPES].calls, shapes[MAX_SHAPES].secs);
    if (f != stderr) fclose(f);
}
