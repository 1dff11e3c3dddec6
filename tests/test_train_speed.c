/* The GEMM set-up that training speed rests on (kernels/gemm.c, issue 15):
 *  - the products of a training segment of the 100M benchmark model (m = 128 rows; n = 256, 768,
 *    2048 and a vocabulary slice; k = 768, 2048) give the same bits on 1 and 2 threads (column
 *    blocks of 128, each one sgemm over the full K) and match a double-precision reference;
 *  - OpenBLAS's generic Prescott kernels, which 0.3.21 falls back to on CPUs it does not know, are
 *    replaced by the AVX-512 / AVX2 set the CPU runs unless OPENBLAS_CORETYPE was set;
 *  - ei_k_process_init leaves a user's OMP_WAIT_POLICY / GOMP_SPINCOUNT alone, and a process
 *    started through it runs with GOMP_SPINCOUNT set (re-executed, as libgomp needs), long only
 *    when no other task is running (ei_k_spin_for_load);
 *  - "other tasks" leaves out this process's own threads (ei_k_others_running, on a proc tree
 *    written by the test): OpenBLAS's spinning pool made every start look loaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kernels/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char *initial_coretype; /* OPENBLAS_CORETYPE before anything ran, or NULL */

static uint64_t rng = 42;
static float urand(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (float)((double)((rng * 2685821657736338717ULL) >> 11) / 4503599627370496.0 - 1.0);
}

static void shape_case(int64_t m, int64_t n, int64_t k, int tb) {
    float *a = malloc(sizeof(float) * (size_t)(m * k)), *b = malloc(sizeof(float) * (size_t)(k * n));
    float *c1 = malloc(sizeof(float) * (size_t)(m * n)), *c2 = malloc(sizeof(float) * (size_t)(m * n));
    for (int64_t i = 0; i < m * k; i++) a[i] = urand();
    for (int64_t i = 0; i < k * n; i++) b[i] = urand();
    const int64_t ldb = tb ? k : n;
    ei_k_threads_set(1);
    ei_k_gemm_f32(0, tb, m, n, k, 1.0f, a, k, b, ldb, 0.0f, c1, n);
    ei_k_threads_set(2);
    ei_k_gemm_f32(0, tb, m, n, k, 1.0f, a, k, b, ldb, 0.0f, c2, n);
    ei_k_threads_set(1);
    if (memcmp(c1, c2, sizeof(float) * (size_t)(m * n)) != 0)
        fail_msg("%lld x %lld x %lld: 1 and 2 threads differ", (long long)m, (long long)n, (long long)k);
    for (int64_t s = 0; s < 257; s++) { /* spot checks against float64, every column block hit */
        const int64_t i = (s * 37) % m, j = (s * 131 + s / 7) % n;
        double r = 0, mag = 0;
        for (int64_t p = 0; p < k; p++) {
            const double t = (double)a[i * k + p] * (tb ? b[j * k + p] : b[p * n + j]);
            r += t;
            mag += fabs(t);
        }
        assert_true(fabs(c1[i * n + j] - r) <= 1e-5 * mag);
    }
    free(a), free(b), free(c1), free(c2);
}

static void test_model_shapes(void **state) {
    (void)state;
    shape_case(128, 256, 768, 1);  /* K, V projections: 2 blocks */
    shape_case(128, 768, 768, 1);  /* Q, W_o: 6 blocks */
    shape_case(128, 2048, 768, 1); /* gate / up */
    shape_case(128, 768, 2048, 1); /* down */
    shape_case(128, 768, 2048, 0); /* backward of gate / up: dx = dy W */
    shape_case(100, 1000, 768, 1); /* a vocabulary slice with a partial last block, fewer rows */
}

static void test_blas_core(void **state) {
    (void)state;
    ei_k_blas_init();
    const char *core = openblas_get_corename();
    print_message("  OpenBLAS kernels: %s (OPENBLAS_CORETYPE was %s)\n", core,
                  initial_coretype ? initial_coretype : "unset");
    if (initial_coretype) {
        assert_string_equal(getenv("OPENBLAS_CORETYPE"), initial_coretype); /* left alone */
        return;
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        if (strcmp(core, "Prescott") == 0) fail_msg("an AVX2 CPU still runs OpenBLAS's Prescott kernels");
#endif
}

/* ./test_train_speed --spin prints GOMP_SPINCOUNT as the process sees it after ei_k_process_init */
static int spin_child(char **argv) {
    ei_k_process_init(argv);
    const char *v = getenv("GOMP_SPINCOUNT");
    printf("%s\n", v ? v : "unset");
    return 0;
}

static char self_path[4096];

static void run_child(const char *env_name, const char *env_val, char *out, size_t cap) {
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        unsetenv("OMP_WAIT_POLICY");
        unsetenv("GOMP_SPINCOUNT");
        if (env_name) setenv(env_name, env_val, 1);
        execl(self_path, self_path, "--spin", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], out, cap - 1);
    out[got > 0 ? got : 0] = 0;
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* The spin follows the load: long only while the team has the cores to itself. */
static void test_spin_for_load(void **state) {
    (void)state;
    assert_string_equal(ei_k_spin_for_load(2, 0), EI_K_SPINCOUNT_IDLE);
    assert_string_equal(ei_k_spin_for_load(2, 1), EI_K_SPINCOUNT);
    assert_string_equal(ei_k_spin_for_load(2, -1), EI_K_SPINCOUNT); /* load unknown */
    assert_string_equal(ei_k_spin_for_load(1, 0), EI_K_SPINCOUNT_IDLE);
    assert_string_equal(ei_k_spin_for_load(16, 1), EI_K_SPINCOUNT_IDLE);
    assert_string_equal(ei_k_spin_for_load(16, 2), EI_K_SPINCOUNT);
    assert_string_equal(ei_k_spin_for_load(64, 7), EI_K_SPINCOUNT_IDLE);
    assert_string_equal(ei_k_spin_for_load(64, 8), EI_K_SPINCOUNT);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Other processes' runnable tasks: procs_running less this process's runnable threads, read from
 * a proc tree made here (4 running, 2 of them threads of "self", one of whose names holds a
 * parenthesis and spaces; a sleeping thread does not count). */
static void test_others_running(void **state) {
    (void)state;
    char root[] = "/tmp/ei_test_procXXXXXX", path[256];
    assert_non_null(mkdtemp(root));
    const char *dirs[] = {"self", "self/task", "self/task/10", "self/task/11", "self/task/12"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", root, dirs[i]);
        assert_int_equal(mkdir(path, 0700), 0);
    }
    snprintf(path, sizeof path, "%s/stat", root);
    write_file(path, "cpu  1 2 3 4\nctxt 5\nprocs_running 4\nprocs_blocked 0\n");
    const char *stats[] = {"10 (ei) R 1 10 10 0", "11 (odd) R name) S 1 10", "12 (blas) S 1 10 10 0"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/self/task/%d/stat", root, 10 + i);
        write_file(path, stats[i]);
    }
    /* 11's state is the field after the last ')': S, so only 10 is running: 4 - 1 */
    assert_int_equal(ei_k_others_running(root), 3);
    snprintf(path, sizeof path, "%s/self/task/11/stat", root);
    write_file(path, "11 (odd) S name) R 1 10");
    assert_int_equal(ei_k_others_running(root), 2);
    snprintf(path, sizeof path, "%s/stat", root);
    write_file(path, "procs_running 1\n"); /* the threads outnumber the reading: none other */
    assert_int_equal(ei_k_others_running(root), 0);
    snprintf(path, sizeof path, "%s/stat", root);
    unlink(path);
    assert_int_equal(ei_k_others_running(root), -1);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/self/task/%d/stat", root, 10 + i);
        unlink(path);
    }
    for (int i = 4; i >= 0; i--) {
        snprintf(path, sizeof path, "%s/%s", root, dirs[i]);
        rmdir(path);
    }
    rmdir(root);
    /* the real one: this process's own threads never count, so a reading exists and is >= 0 */
    assert_true(ei_k_others_running("/proc") >= 0);
}

static void test_process_init(void **state) {
    (void)state;
    char out[256];
    run_child(NULL, NULL, out, sizeof out); /* either value, as the load was when the child started */
    if (strcmp(out, EI_K_SPINCOUNT "\n") != 0) assert_string_equal(out, EI_K_SPINCOUNT_IDLE "\n");
    run_child("GOMP_SPINCOUNT", "77", out, sizeof out);
    assert_string_equal(out, "77\n");
    run_child("OMP_WAIT_POLICY", "passive", out, sizeof out);
    assert_string_equal(out, "unset\n");
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--spin") == 0) return spin_child(argv);
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0) return 1;
    self_path[n] = 0;
    const char *ct = getenv("OPENBLAS_CORETYPE");
    initial_coretype = ct ? strdup(ct) : NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blas_core),
        cmocka_unit_test(test_model_shapes),
        cmocka_unit_test(test_spin_for_load),
        cmocka_unit_test(test_others_running),
        cmocka_unit_test(test_process_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
