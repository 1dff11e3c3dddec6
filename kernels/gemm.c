/* Row-major GEMM over OpenBLAS, parallelised by OpenMP rather than by OpenBLAS's own threads.
 *
 * Why: OpenBLAS (Debian's pthreads build) and libgomp each keep a spinning thread pool. Training
 * alternates GEMMs with OpenMP element-wise kernels, so two pools of busy-waiting threads fought
 * over the cores: measured 2.5x slower with 2 threads than with 1 on a 2-core machine. Here
 * OpenBLAS is pinned to one thread and a large GEMM is cut into fixed blocks of rows (or of
 * columns when there are few rows) that the OpenMP team shares. The blocks depend only on the
 * shape, never on the thread count, and every block is one sgemm over the full K (never a split-K
 * sum), so the result is bit-identical for any number of threads. */
#include "kernels/kernels.h"

#include <cblas.h>
#include <omp.h>
#include <dirent.h>
#include <pthread.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Block sizes. A product of one segment (m = L = 128 rows: the segment-by-segment sweeps) is cut
 * by columns. With 256-column blocks a 768-wide product (Q, W_o, the down projection, and the
 * backward of every 768-input weight) made 3 blocks on 2 threads (one thread idle a third of the
 * time) and the 256-wide K/V projections ran on one thread. 128-column blocks give 6 and 2 blocks,
 * 16 for the MLP's 2048 and 250 for a 32000 vocabulary, and single-threaded OpenBLAS was faster
 * per block as well (issue 15, Cooperlake kernels: 159 vs 135 GFLOP/s at n = k = 768, 165 vs 94 at
 * n = 256, m = 128): a 128-column panel of B (k x 128 floats, 384 KiB at k = 768) stays in L2. */
#define GEMM_ROWS 128      /* rows of C per block when m is small (< 2 * GEMM_ROWS) */
#define GEMM_COLS 128      /* columns of C per block when m is small */
#define GEMM_ROWS_MAX 1024 /* at most this many rows per block when m >= 2 * GEMM_ROWS */
#define GEMM_MIN_WORK (1 << 20) /* m*n*k below which one call does it all */

/* OpenBLAS's DYNAMIC_ARCH build picks its kernels from the CPU model number at load time, and
 * 0.3.21 (Debian 12) does not know recent Intel models: on a KVM "Intel Xeon Processor" family 6
 * model 207 (AVX-512 with BF16) it fell back to its Prescott (SSE3) kernels, measured 13 GFLOP/s
 * single-threaded at 128 x 768 x 768 against 60 with its Cooperlake kernels on the same machine,
 * and sgemm_kernel_PRESCOTT was the top of the training profile. When the library reports that
 * fallback and the CPU (and OS, which __builtin_cpu_supports checks through XGETBV) has AVX-512
 * or AVX2, the kernel table is re-initialised for the best core the library has: gotoblas_dynamic_quit
 * and gotoblas_dynamic_init are the functions its constructor runs, and the init reads
 * OPENBLAS_CORETYPE. A user's own OPENBLAS_CORETYPE always wins (set OPENBLAS_CORETYPE=Prescott to
 * keep the fallback). Both symbols are weak: with another BLAS, or an OpenBLAS built for one
 * target, nothing happens. This runs once, before the first GEMM of the process, when no BLAS call
 * is in flight (ei_k_threads_set is normally the first call, from the main thread). */
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));

static const char *better_core(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    if (avx512 && __builtin_cpu_supports("avx512bf16")) return "Cooperlake";
    if (avx512) return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

static void blas_core_fix(void) {
    if (!gotoblas_dynamic_init || !gotoblas_dynamic_quit || getenv("OPENBLAS_CORETYPE")) return;
    const char *core = openblas_get_corename();
    if (!core || strcmp(core, "Prescott") != 0) return; /* the library found a kernel set of its own */
    const char *want = better_core();
    if (!want || setenv("OPENBLAS_CORETYPE", want, 1) != 0) return;
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
}

/* libgomp threads waiting at a barrier or for the next parallel region spin GOMP_SPINCOUNT times
 * (default 300,000 when OMP_WAIT_POLICY is unset) before sleeping on a futex. On a quiet 2-core
 * machine the spinning thread has a core of its own and only hides gaps; on a shared one it burns
 * the time slices the other thread of the team needs to reach the barrier. Measured on the 2-core
 * machine at load 6-10, one 2,048-token training step of the 100M model, Cooperlake kernels,
 * wall / user CPU seconds (medians): default 311 / 111, GOMP_SPINCOUNT=100000 216 / 58,
 * 10000 58 / 20, 1000 45 / 16, OMP_WAIT_POLICY=passive 46 / 14, and 1 thread 45 / 14.
 * On the same machine with nothing else running the other way round (issue 15, the same step,
 * 3 alternating pairs of 5-step runs, steady-state tok/s): 1000 spins 271-320, the default
 * 319-328. A training step runs some 20,000 OpenMP regions, mostly the small ops of the segment
 * recurrence; with 1000 spins (tens of microseconds) the idle thread falls asleep between them and
 * every region pays a futex wake-up, which under KVM is an inter-processor interrupt.
 * So the spin follows the machine's load when the program starts: the libgomp default when no
 * other task is runnable (the team has the cores to itself), 1000 otherwise (ei_k_spin_for_load).
 * The variables are read by libgomp's constructor, before main: setting them later changes nothing,
 * hence the re-exec. A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is left alone. */
const char *ei_k_spin_for_load(int ncpu, int others) {
    /* others: runnable tasks besides this one. On a bigger machine a few of them still leave
     * the team its cores: up to one in 8 CPUs busy. */
    return others >= 0 && (int64_t)others * 8 < ncpu ? EI_K_SPINCOUNT_IDLE : EI_K_SPINCOUNT;
}

/* Threads of this process that are runnable now (state R in proc/self/task/<tid>/stat), or -1. */
static int own_running(const char *proc) {
    char path[512];
    if (snprintf(path, sizeof path, "%s/self/task", proc) >= (int)sizeof path) return -1;
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char sp[1024], buf[512];
        if (snprintf(sp, sizeof sp, "%s/%.255s/stat", path, e->d_name) >= (int)sizeof sp) continue;
        FILE *f = fopen(sp, "r");
        if (!f) continue; /* the thread ended meanwhile */
        const size_t got = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[got] = 0;
        const char *rp = strrchr(buf, ')'); /* "tid (comm) S ...": comm may hold spaces and parens */
        if (rp && rp[1] == ' ' && rp[2] == 'R') n++;
    }
    closedir(d);
    return n;
}

/* Runnable tasks of other processes: procs_running of proc/stat minus this process's runnable
 * threads. Those are the reading thread and OpenBLAS's own pool, which its constructor starts
 * before main and which busy-waits at first. Counting the pool as other work, ei took every start
 * on an idle 2-core machine for a loaded one and ran with the 1,000-spin setting: 2K training 485
 * against 516 tok/s with the default spin (issue 15, 2 alternating pairs of 4-step runs). The
 * fewest of three readings 2 ms apart, so that a task waking for a moment does not count; -1 when
 * the files cannot be read. */
int ei_k_others_running(const char *proc) {
    int best = -1;
    char path[512];
    if (snprintf(path, sizeof path, "%s/stat", proc) >= (int)sizeof path) return -1;
    for (int i = 0; i < 3; i++) {
        if (i) usleep(2000);
        FILE *f = fopen(path, "r");
        if (!f) return -1;
        char line[256];
        int n = -1;
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "procs_running ", 14) == 0) {
                n = atoi(line + 14);
                break;
            }
        fclose(f);
        const int own = own_running(proc);
        if (n < 0 || own < 0) return -1;
        n = n > own ? n - own : 0;
        if (best < 0 || n < best) best = n;
    }
    return best;
}

int ei_k_process_init(char **argv) {
    if (!argv || !argv[0] || getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return 0;
    /* Under valgrind (its preload library is in LD_PRELOAD) an exec would leave the tool: the
     * program would run on natively, unchecked. */
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload")) return 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (setenv("GOMP_SPINCOUNT", ei_k_spin_for_load(ncpu > 0 ? (int)ncpu : 1, ei_k_others_running("/proc")), 1) != 0) return -1;
    execv("/proc/self/exe", argv);
    unsetenv("GOMP_SPINCOUNT"); /* not re-executed: the environment says what really runs */
    return -1;
}

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_single(void) {
    blas_core_fix();
    openblas_set_num_threads(1);
}

void ei_k_blas_init(void) { pthread_once(&blas_once, blas_single); }

void ei_k_threads_set(int n) {
    if (n < 1) n = 1;
    pthread_once(&blas_once, blas_single);
    omp_set_num_threads(n);
}

int ei_k_threads_get(void) { return omp_get_max_threads(); }

/* Block layout of C: by rows when there are enough of them, else by columns.
 *
 * Many rows (a training chunk's 2,047 tokens through every projection and the classifier) are cut
 * into an even number of near-equal blocks of at most GEMM_ROWS_MAX rows: 2 blocks for up to 2,048
 * rows. Each block is one OpenBLAS call, and every call packs all of B (the weight, k x n) again:
 * with the earlier 512-row blocks a 2,047-row product packed its weight four times, and the packing
 * of weights read cold from memory (sgemm_incopy / sgemm_itcopy) was 8.9% of a 2K training step in
 * a perf profile (6.3% with 1,024-row blocks). Measured on a 2-core Xeon VM (Cooperlake kernels,
 * 2 MiB L2 per core, issue 15), 2K steps of the 100M model, 2 alternating pairs of 7-step runs:
 * 512-row blocks 3.118 / 3.119 s per step (linear ops 1.743 / 1.742 s), 1,024-row blocks 3.004 /
 * 2.990 s (1.670 / 1.659 s). Splitting
 * by columns instead packs A again per block, which costs more: A has 2,047 rows against the
 * weight's 256-2,048 columns (2,048 rows x 384 columns: 3.35-3.38 s per step). The even count
 * keeps both threads of a 2-core machine busy to the end. */
static int64_t gemm_blocks(int64_t m, int64_t n, int64_t k, int *by_rows, int64_t *rows) {
    *by_rows = m >= 2 * GEMM_ROWS || n < 2 * GEMM_COLS;
    *rows = GEMM_ROWS;
    if (m >= 2 * GEMM_ROWS) {
        const int64_t nb = 2 * ((m + 2 * GEMM_ROWS_MAX - 1) / (2 * GEMM_ROWS_MAX));
        *rows = ((m + nb - 1) / nb + 15) / 16 * 16; /* whole 16-row strips of the kernels */
    }
    if (m * n * k < GEMM_MIN_WORK) return 1;
    return *by_rows ? (m + *rows - 1) / *rows : (n + GEMM_COLS - 1) / GEMM_COLS;
}

#define GEMM_BODY(REAL, CBLAS)                                                                                    \
    if (m <= 0 || n <= 0) return;                                                                               \
    pthread_once(&blas_once, blas_single);                                                                      \
    if (k <= 0) { /* BLAS would leave C untouched only when beta == 1 */                                         \
        for (int64_t i = 0; i < m; i++)                                                                         \
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];             \
        return;                                                                                                 \
    }                                                                                                           \
    int by_rows = 0;                                                                                            \
    int64_t rows = 0;                                                                                           \
    const int64_t nb = one ? 1 : gemm_blocks(m, n, k, &by_rows, &rows);                                         \
    const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;   \
    if (nb == 1) {                                                                                              \
        CBLAS(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc); \
        return;                                                                                                 \
    }                                                                                                           \
    _Pragma("omp parallel for schedule(dynamic, 1) if (!omp_in_parallel())") for (int64_t blk = 0; blk < nb;   \
                                                                                  blk++) {                      \
        if (by_rows) {                                                                                          \
            const int64_t r0 = blk * rows, rn = m - r0 < rows ? m - r0 : rows;                                  \
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

static void gemm_f32(int one, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    GEMM_BODY(float, cblas_sgemm)
}

static void gemm_f64(int one, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                     const double *a, int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc) {
    GEMM_BODY(double, cblas_dgemm)
}

void ei_k_gemm_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    gemm_f32(0, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void ei_k_gemm_f64(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                   int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc) {
    gemm_f64(0, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void ei_k_gemm_tile_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    gemm_f32(1, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void ei_k_gemm_tile_f64(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                        int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc) {
    gemm_f64(1, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
