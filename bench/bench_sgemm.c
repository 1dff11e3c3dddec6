/* Measured cblas_sgemm throughput on this machine, the peak a training run can be compared with
 * (bench/bench_train.py prints it next to the achieved GFLOP/s; docs/benchmarks.md). Calls OpenBLAS
 * directly (not the project's GEMM wrapper), row-major, C = A B with A [m, k] and B [k, n], for each
 * shape with 1 and 2 OpenBLAS threads (openblas_set_num_threads). Prints the OpenBLAS build and the
 * kernel it picked (openblas_get_config, openblas_get_corename), then one JSON line per (shape,
 * threads): the median over --repeat timed runs of GFLOP/s = 2 m n k / seconds.
 *
 *   build-bench/bench_sgemm                 # default shapes
 *   build-bench/bench_sgemm --repeat 9 --threads 1,2
 *
 * Default shapes: 768x768x768; the projections of one 128-token segment of the benchmark model
 * (128x768x768, 128x768x2048, 128x2048x768, classifier 128x768x32000); the same on 2048 rows
 * (2048x768x2048, 2048x2048x768). Inputs are filled with small pseudo-random values. */
#include <cblas.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* OpenBLAS extensions (declared in Debian's cblas.h too; repeated here for other headers). */
extern void openblas_set_num_threads(int num_threads);
extern char *openblas_get_config(void);
extern char *openblas_get_corename(void);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *filled(size_t n, uint64_t seed) {
    float *p = malloc(n * sizeof *p);
    if (!p) return NULL;
    uint64_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = (float)((double)(x >> 40) / (double)(1ULL << 24) - 0.5);
    }
    return p;
}

int main(int argc, char **argv) {
    int repeat = 7;
    int threads[8] = {1, 2}, n_threads = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            repeat = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            n_threads = 0;
            for (char *s = strtok(argv[++i], ","); s && n_threads < 8; s = strtok(NULL, ",")) threads[n_threads++] = atoi(s);
        } else {
            fprintf(stderr,
                    "usage: bench_sgemm [--repeat N] [--threads 1,2]\n"
                    "Times cblas_sgemm (row-major, no transposes) on the benchmark model's shapes; one JSON line "
                    "per shape and thread count (median GFLOP/s over N runs).\n");
            return strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ? 0 : 2;
        }
    }
    if (repeat < 1 || repeat > 1000 || n_threads < 1) {
        fprintf(stderr, "bench_sgemm: error: --repeat must be in [1, 1000] and --threads a list of counts\n");
        return 2;
    }
    static const int shapes[][3] = {{768, 768, 768},  {128, 768, 768},   {128, 768, 2048},  {128, 2048, 768},
                                    {128, 768, 32000}, {2048, 768, 2048}, {2048, 2048, 768}};
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    printf("{\"openblas_config\": \"%s\", \"openblas_core\": \"%s\"}\n", openblas_get_config(), openblas_get_corename());
    double *t = malloc((size_t)repeat * sizeof *t);
    if (!t) return 1;
    for (int ti = 0; ti < n_threads; ti++) {
        openblas_set_num_threads(threads[ti]);
        for (int s = 0; s < n_shapes; s++) {
            const int m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
            float *a = filled((size_t)m * k, 1), *b = filled((size_t)k * n, 2), *c = calloc((size_t)m * n, sizeof(float));
            if (!a || !b || !c) {
                fprintf(stderr, "bench_sgemm: error: out of memory\n");
                return 1;
            }
            const double flop = 2.0 * m * n * k;
            /* each timed run lasts at least ~50 ms: small shapes repeat the call */
            int calls = (int)(5e9 / flop) + 1;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n); /* warm */
            for (int r = 0; r < repeat; r++) {
                double t0 = now();
                for (int i = 0; i < calls; i++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
                t[r] = (now() - t0) / calls;
            }
            qsort(t, (size_t)repeat, sizeof *t, cmp_double);
            const double med = repeat % 2 ? t[repeat / 2] : 0.5 * (t[repeat / 2 - 1] + t[repeat / 2]);
            printf("{\"m\": %d, \"k\": %d, \"n\": %d, \"threads\": %d, \"repeat\": %d, \"gflops\": %.2f, "
                   "\"best_gflops\": %.2f}\n",
                   m, k, n, threads[ti], repeat, flop / med / 1e9, flop / t[0] / 1e9);
            fflush(stdout);
            free(a);
            free(b);
            free(c);
        }
    }
    free(t);
    return 0;
}
