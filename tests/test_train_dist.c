/* train/dist: single-process semantics without a launcher, and (when built with MPI and mpirun is
 * found) a real 2-rank run: this program starts itself under `mpirun --oversubscribe -np 2` and
 * every rank checks allreduce sums (against the closed-form sum over ranks), max, broadcast and
 * barrier. Skipped cleanly without MPI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "train/dist.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NF 3000

/* Runs on every rank under mpirun. Returns the process exit code. */
static int mpi_child(int argc, char **argv) {
    if (ei_dist_init(&argc, &argv)) return 3;
    int r = ei_dist_rank(), p = ei_dist_size(), bad = 0;
    if (!ei_dist_active() || p < 2) {
        fprintf(stderr, "rank %d: MPI not active (size %d)\n", r, p);
        return 4;
    }
    float *a = malloc(NF * sizeof(float));
    for (int i = 0; i < NF; i++) a[i] = (float)(r + 1) + 0.5f * (float)(i % 7);
    if (ei_dist_allreduce_sum_f32(a, NF)) bad++;
    for (int i = 0; i < NF; i++) {
        /* sum over ranks of (r + 1) + c = P(P+1)/2 + P c, exact in float for these values */
        float want = (float)(p * (p + 1) / 2) + (float)p * 0.5f * (float)(i % 7);
        if (a[i] != want) {
            if (bad < 3) fprintf(stderr, "rank %d: a[%d] = %g, want %g\n", r, i, a[i], want);
            bad++;
        }
    }
    free(a);
    double d[2] = {1e-3 * (r + 1), -(double)r};
    if (ei_dist_allreduce_sum_f64(d, 2) || fabs(d[0] - 1e-3 * p * (p + 1) / 2) > 1e-15 ||
        d[1] != -(double)(p * (p - 1) / 2))
        bad++;
    double mx = (double)r * 10;
    if (ei_dist_allreduce_max_f64(&mx, 1) || mx != (double)(p - 1) * 10) bad++;
    char msg[32];
    snprintf(msg, sizeof msg, "from rank %d", p - 1);
    char buf[32] = "";
    if (r == p - 1) memcpy(buf, msg, sizeof msg);
    if (ei_dist_bcast(buf, sizeof buf, p - 1) || strcmp(buf, msg) != 0) bad++;
    if (ei_dist_barrier()) bad++;
    printf("rank %d of %d: %s\n", r, p, bad ? "FAILED" : "ok");
    fflush(stdout);
    ei_dist_finalize();
    return bad ? 1 : 0;
}

static void test_single_process(void **state) {
    (void)state;
    assert_int_equal(ei_dist_init(NULL, NULL), 0); /* not launched by mpirun: no MPI */
    assert_int_equal(ei_dist_rank(), 0);
    assert_int_equal(ei_dist_size(), 1);
    assert_true(ei_dist_is_root());
    assert_int_equal(ei_dist_active(), 0);
    float a[3] = {1.5f, -2, 3};
    assert_int_equal(ei_dist_allreduce_sum_f32(a, 3), 0);
    assert_true(a[0] == 1.5f && a[1] == -2 && a[2] == 3);
    double d = 4;
    assert_int_equal(ei_dist_allreduce_sum_f64(&d, 1), 0);
    assert_true(d == 4);
    assert_int_equal(ei_dist_allreduce_max_f64(&d, 1), 0);
    assert_true(d == 4);
    char b[4] = "abc";
    assert_int_equal(ei_dist_bcast(b, 4, 0), 0);
    assert_string_equal(b, "abc");
    assert_int_equal(ei_dist_bcast(b, 4, 1), -1);
    assert_int_equal(ei_dist_barrier(), 0);
    ei_dist_finalize();
    ei_dist_finalize();
}

static char *find_mpirun(void) {
    const char *e = getenv("EI_MPIEXEC");
    if (e && *e && access(e, X_OK) == 0) return strdup(e);
    const char *path = getenv("PATH");
    if (!path) return NULL;
    char *copy = strdup(path), *save = NULL;
    for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char cand[4096];
        snprintf(cand, sizeof cand, "%s/mpirun", d);
        if (access(cand, X_OK) == 0) {
            free(copy);
            return strdup(cand);
        }
    }
    free(copy);
    return NULL;
}

static void test_two_ranks(void **state) {
    (void)state;
    if (!ei_dist_compiled()) {
        fprintf(stderr, "built without MPI: 2-rank test skipped\n");
        skip();
    }
    char *mpirun = find_mpirun();
    if (!mpirun) {
        fprintf(stderr, "mpirun not found: 2-rank test skipped\n");
        skip();
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = '\0';
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        setenv("OMPI_MCA_btl", "self,vader", 0); /* shared memory only: no network probing */
        /* Open MPI's own allocations are not ours to leak-check. */
        setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
        execl(mpirun, mpirun, "--oversubscribe", "-np", "2", self, "--mpi-child", (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    char out[8192];
    size_t used = 0;
    ssize_t k;
    while (used + 1 < sizeof out && (k = read(pipefd[0], out + used, sizeof out - 1 - used)) > 0) used += (size_t)k;
    out[used] = '\0';
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    free(mpirun);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("mpirun failed (status %d):\n%s", status, out);
    if (!strstr(out, "rank 0 of 2: ok") || !strstr(out, "rank 1 of 2: ok")) fail_msg("unexpected output:\n%s", out);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--mpi-child") == 0) return mpi_child(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_process),
        cmocka_unit_test(test_two_ranks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
