/* Reliability pieces of core/ (ei_seal, ei_io, ei_args, ei_error): XXH64 against the specification's
 * vectors; seals (round trip, truncation, extra bytes, a flipped byte anywhere, a damaged header,
 * the kind); the output-is-an-input guard (same path, another spelling, hard link, symlink, a file
 * inside an input folder); temporaries removed on SIGTERM / SIGINT (exit status unchanged) and
 * stale ones of dead processes removed by the next writer; numeric option ranges; JSON depth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_args.h"
#include "core/ei_error.h"
#include "core/ei_io.h"
#include "core/ei_seal.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];


static int setup(void **state) {
    (void)state;
    strcpy(dir, "/tmp/ei_core_rel_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *in_dir(const char *name) { return ei_path_join(dir, name); }

static void write_bytes(const char *p, const void *b, size_t n) {
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, n, fp), n);
    fclose(fp);
}

static int count_tmp(const char *d) {
    DIR *dd = opendir(d);
    int n = 0;
    struct dirent *e;
    while (dd && (e = readdir(dd)) != NULL) n += strstr(e->d_name, ".tmp.") != NULL;
    if (dd) closedir(dd);
    return n;
}

static void test_xxh64_vectors(void **state) {
    (void)state;
    assert_true(ei_xxh64("", 0, 0) == 0xEF46DB3751D8E999ULL);
    assert_true(ei_xxh64("a", 1, 0) == 0xD24EC4F1A98C6E5BULL);
    assert_true(ei_xxh64("abc", 3, 0) == 0x44BC2CF5AD770999ULL);
    /* streaming in uneven pieces equals one shot, across the 32-byte stripes */
    uint8_t buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (uint8_t)(i * 31 + 7);
    uint64_t whole = ei_xxh64(buf, sizeof buf, 0);
    ei_xxh64_state s;
    ei_xxh64_reset(&s, 0);
    for (size_t at = 0, k = 1; at < sizeof buf; at += k, k = k * 3 % 97 + 1)
        ei_xxh64_update(&s, buf + at, at + k <= sizeof buf ? k : sizeof buf - at);
    assert_true(ei_xxh64_digest(&s) == whole);
    assert_true(ei_xxh64(buf, sizeof buf, 1) != whole);
}

static void test_seal(void **state) {
    (void)state;
    char *p = in_dir("sealed.bin");
    size_t n = EI_SEAL_BYTES + 5000;
    uint8_t *b = calloc(1, n);
    for (size_t i = EI_SEAL_BYTES; i < n; i++) b[i] = (uint8_t)(i * 13);
    write_bytes(p, b, n);
    assert_int_equal(ei_seal_check(p, "ei-test"), 0); /* reserved but not sealed yet: no seal */
    assert_int_equal(ei_seal_file(p, "ei-test"), 0);
    assert_int_equal(ei_seal_check(p, "ei-test"), 1);
    assert_int_equal(ei_seal_check(p, NULL), 1);
    /* the file and the buffer sealing agree */
    ei_seal_buffer(b, n, "ei-test");
    char *q = in_dir("buffer.bin");
    write_bytes(q, b, n);
    char *fb = NULL, *bb = NULL;
    size_t fl, bl;
    assert_int_equal(ei_file_read_all(p, &fb, &fl), 0);
    assert_int_equal(ei_file_read_all(q, &bb, &bl), 0);
    assert_true(fl == n && bl == n);
    assert_memory_equal(fb, bb, n);
    free(fb);
    free(bb);

    assert_int_equal(ei_seal_check(p, "ei-other"), -1);
    assert_non_null(strstr(ei_error_get(), "not an ei-other"));
    /* a flipped byte anywhere is caught: payload, header fields, kind */
    for (size_t at = 0; at < n; at += at < 64 ? 7 : 397) {
        if (at < 8) continue; /* the magic: the file then reads as unsealed (checked below) */
        b[at] ^= 0x10;
        write_bytes(q, b, n);
        b[at] ^= 0x10;
        if (at >= 56 && at < EI_SEAL_BYTES) { /* zero padding of the header is not covered */
            continue;
        }
        if (ei_seal_check(q, "ei-test") != -1) fail_msg("a flipped byte at %zu was not detected", at);
        assert_non_null(strstr(ei_error_get(), q));
    }
    /* truncated, extended, header alone truncated */
    write_bytes(q, b, n - 1);
    assert_int_equal(ei_seal_check(q, "ei-test"), -1);
    assert_non_null(strstr(ei_error_get(), "truncated"));
    uint8_t *big = calloc(1, n + 3);
    memcpy(big, b, n);
    write_bytes(q, big, n + 3);
    assert_int_equal(ei_seal_check(q, "ei-test"), -1);
    assert_non_null(strstr(ei_error_get(), "extra bytes"));
    write_bytes(q, b, 100);
    assert_int_equal(ei_seal_check(q, "ei-test"), -1);
    assert_non_null(strstr(ei_error_get(), "truncated"));
    /* no magic: a foreign file (an HDF5 file from h5py starts with the HDF5 signature) */
    b[0] = 0x89, b[1] = 'H', b[2] = 'D', b[3] = 'F';
    write_bytes(q, b, n);
    assert_int_equal(ei_seal_check(q, "ei-test"), 0);
    write_bytes(q, "", 0);
    assert_int_equal(ei_seal_check(q, "ei-test"), 0);
    /* a short file cannot be sealed */
    assert_int_equal(ei_seal_file(q, "ei-test"), -1);
    free(big);
    free(b);
    free(p);
    free(q);
}

static void test_not_input(void **state) {
    (void)state;
    char *a = in_dir("a.txt"), *b = in_dir("b.txt"), *hl = in_dir("hard.txt"), *sl = in_dir("soft.txt");
    char *sub = in_dir("model"), *cfg = in_dir("model/config.json"), *other = in_dir("other.txt");
    write_bytes(a, "a", 1);
    write_bytes(b, "b", 1);
    assert_int_equal(link(a, hl), 0);
    assert_int_equal(symlink(a, sl), 0);
    assert_int_equal(ei_mkdir_p(sub), 0);
    write_bytes(cfg, "{}", 2);
    const char *in[] = {NULL, a, sub};
    assert_int_equal(ei_check_not_input(b, in, 3), 0);
    assert_int_equal(ei_check_not_input(other, in, 3), 0); /* does not exist yet */
    assert_int_equal(ei_check_not_input(NULL, in, 3), 0);
    assert_int_equal(ei_check_not_input(a, in, 3), -1);
    assert_non_null(strstr(ei_error_get(), "refusing to overwrite"));
    assert_int_equal(ei_check_not_input(hl, in, 3), -1); /* a hard link is the same file */
    assert_non_null(strstr(ei_error_get(), a));
    assert_int_equal(ei_check_not_input(sl, in, 3), -1);
    char spelled[256];
    snprintf(spelled, sizeof spelled, "%s/./model/../a.txt", dir);
    assert_int_equal(ei_check_not_input(spelled, in, 3), -1);
    assert_int_equal(ei_check_not_input(cfg, in, 3), -1); /* a file of an input folder */
    assert_non_null(strstr(ei_error_get(), "part of the input"));
    free(a), free(b), free(hl), free(sl), free(sub), free(cfg), free(other);
}

/* A child that opens an atomic file and waits; the parent signals it. */
static void signal_removes_temporary(int sig) {
    char *p = in_dir("sig.out");
    pid_t pid = fork();
    if (pid == 0) {
        ei_atomic_file f;
        if (ei_atomic_open(&f, p) != 0) _exit(3);
        fputs("partial", f.fp);
        fflush(f.fp);
        for (;;) pause();
    }
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)pid);
    for (int i = 0; i < 5000 && !ei_path_exists(tmp); i++) usleep(1000);
    assert_true(ei_path_exists(tmp));
    usleep(20000); /* the handlers are installed before the file is created */
    kill(pid, sig);
    int st = 0;
    waitpid(pid, &st, 0);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == sig); /* the exit status is the signal's */
    assert_false(ei_path_exists(tmp));
    assert_false(ei_path_exists(p));
    free(p);
}

static void test_signal_cleanup(void **state) {
    (void)state;
    signal_removes_temporary(SIGTERM);
    signal_removes_temporary(SIGINT);
    assert_int_equal(count_tmp(dir), 0);
}

static void test_stale_temporaries(void **state) {
    (void)state;
    char *p = in_dir("out.h5");
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    char stale[256], live[256], other[256];
    snprintf(stale, sizeof stale, "%s.tmp.%ld", p, (long)dead);
    snprintf(live, sizeof live, "%s.tmp.%ld", p, (long)getppid()); /* a running process */
    snprintf(other, sizeof other, "%s/unrelated.h5.tmp.%ld", dir, (long)dead);
    write_bytes(stale, "x", 1);
    write_bytes(live, "x", 1);
    write_bytes(other, "x", 1);
    ei_atomic_file f;
    assert_int_equal(ei_atomic_open(&f, p), 0);
    fputs("done", f.fp);
    assert_int_equal(ei_atomic_commit(&f), 0);
    assert_false(ei_path_exists(stale));
    assert_true(ei_path_exists(live));  /* may still be writing */
    assert_true(ei_path_exists(other)); /* another output's: not this writer's business */
    unlink(live);
    unlink(other);
    /* ei_atomic_discard removes and forgets */
    char *t = ei_atomic_tmpname(p);
    write_bytes(t, "x", 1);
    ei_atomic_discard(t);
    assert_false(ei_path_exists(t));
    free(t);
    free(p);
}

static void test_arg_ranges(void **state) {
    (void)state;
    int threads = 2, seedless = 0;
    int64_t big = 0;
    double frac = 0.5;
    const char *s = NULL;
    ei_arg opts[] = {{"threads", EI_ARG_INT, &threads, "N", "threads"},
                     EI_ARG_RANGE(1, 256),
                     {"big", EI_ARG_I64, &big, "N", "big"},
                     EI_ARG_RANGE(0, 1e15),
                     {"frac", EI_ARG_FLOAT, &frac, "F", "fraction"},
                     EI_ARG_RANGE(0, 0.999),
                     {"free", EI_ARG_INT, &seedless, "N", "no range"},
                     {"name", EI_ARG_STR, &s, "S", "a string"},
                     {0}};
    struct {
        const char *a, *b;
        int rc;
    } cases[] = {{"--threads", "0", -1},   {"--threads", "-1", -1},  {"--threads", "257", -1},
                 {"--threads", "1e9", -1}, {"--threads", "abc", -1}, {"--threads", "99999999999", -1},
                 {"--threads", "4", 0},    {"--big", "-1", -1},      {"--big", "1000000000000000", 0},
                 {"--big", "1000000000000001", -1}, {"--frac", "1", -1}, {"--frac", "nan", -1},
                 {"--frac", "0.25", 0},    {"--free", "-7", 0},      {"--name", "x", 0},
                 {"--", "x", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[] = {"prog", (char *)cases[i].a, (char *)cases[i].b, NULL};
        int rc = ei_args_parse(3, argv, "prog", "d", opts, NULL, NULL);
        if (rc != cases[i].rc) fail_msg("%s %s: rc %d, expected %d", cases[i].a, cases[i].b, rc, cases[i].rc);
    }
    assert_int_equal(threads, 4);
    assert_true(big == 1000000000000000LL);
    assert_true(frac == 0.25);
    assert_int_equal(seedless, -7);
    /* the range row is not an option itself */
    char *argv[] = {"prog", "--=3", NULL};
    assert_int_equal(ei_args_parse(2, argv, "prog", "d", opts, NULL, NULL), -1);
}

static void test_json_depth(void **state) {
    (void)state;
    assert_int_equal(ei_json_depth("{\"a\": [1, {\"b\": 2}]}", 20), 3);
    assert_int_equal(ei_json_depth("[\"[[[\\\"[[\"]", 11), 1); /* brackets in strings do not count */
    assert_int_equal(ei_json_depth("", 0), 0);
    char deep[3000];
    memset(deep, '[', sizeof deep);
    assert_int_equal(ei_json_depth(deep, sizeof deep), sizeof deep);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xxh64_vectors),
        cmocka_unit_test(test_seal),
        cmocka_unit_test(test_not_input),
        cmocka_unit_test(test_signal_cleanup),
        cmocka_unit_test(test_stale_temporaries),
        cmocka_unit_test(test_arg_ranges),
        cmocka_unit_test(test_json_depth),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
