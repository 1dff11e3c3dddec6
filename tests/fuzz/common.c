/* Helpers of the fuzz targets (fuzz.h): scratch folder, fixtures, invariant failures, byte reader. */
#include "fuzz.h"

#include "core/ei_error.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef EI_FIXTURES
#define EI_FIXTURES "../shared/fixtures"
#endif
#ifndef EI_SOURCE
#define EI_SOURCE "."
#endif

static char scratch[256];

/* Removes the scratch folder and what the targets left in it (one level of subfolders: the HF
 * folder targets write their files flat, the prepare target its outputs). */
static void remove_tree(const char *dir, int depth) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (unlink(p) != 0 && depth < 2) remove_tree(p, depth + 1);
        }
        closedir(d);
    }
    rmdir(dir);
}

static void cleanup(void) {
    if (scratch[0]) remove_tree(scratch, 0);
}

const char *fz_dir(void) {
    if (scratch[0]) return scratch;
    /* tmpfs when there is one: the readers under test write and fsync files for every input */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(scratch, sizeof scratch, "%s/ei-fuzz-XXXXXX", tmp);
    if (!mkdtemp(scratch)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(cleanup);
    return scratch;
}

char *fz_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", fz_dir(), name);
    return buf;
}

char *fz_write(char *buf, size_t cap, const char *name, const void *data, size_t size) {
    fz_path(buf, cap, name);
    FILE *fp = fopen(buf, "wb");
    if (!fp || (size && fwrite(data, 1, size, fp) != size) || fclose(fp) != 0) {
        perror(buf);
        abort();
    }
    return buf;
}

char *fz_fixture(char *buf, size_t cap, const char *rel) {
    const char *root = getenv("EI_FIXTURES");
    snprintf(buf, cap, "%s/%s", root && *root ? root : EI_FIXTURES, rel);
    return buf;
}

char *fz_source(char *buf, size_t cap, const char *rel) {
    const char *root = getenv("EI_SOURCE_DIR");
    snprintf(buf, cap, "%s/%s", root && *root ? root : EI_SOURCE, rel);
    return buf;
}

void fz_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: invariant broken: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void fz_quiet_stdout(void) {
    fflush(stdout);
    if (!freopen("/dev/null", "w", stdout)) perror("fuzz: /dev/null");
}

uint8_t fz_u8(fz_bytes *b) {
    if (!b->n) return 0;
    b->n--;
    return *b->p++;
}

uint32_t fz_u32(fz_bytes *b) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)fz_u8(b) << (8 * i);
    return v;
}

uint64_t fz_u64(fz_bytes *b) {
    uint64_t lo = fz_u32(b);
    return lo | (uint64_t)fz_u32(b) << 32;
}

uint32_t fz_below(fz_bytes *b, uint32_t n) {
    if (n <= 1) return 0;
    uint32_t v = n <= 256 ? fz_u8(b) : n <= 65536 ? (fz_u8(b) | (uint32_t)fz_u8(b) << 8) : fz_u32(b);
    return v % n;
}

const uint8_t *fz_take(fz_bytes *b, size_t max, size_t *len) {
    size_t n = fz_u8(b) | (size_t)fz_u8(b) << 8;
    if (n > max) n = max;
    if (n > b->n) n = b->n;
    const uint8_t *p = b->p;
    b->p += n;
    b->n -= n;
    *len = n;
    return p;
}

uint64_t fz_touch(const void *p, size_t n) {
    /* volatile: the reads must happen, so that a range past its buffer faults or trips ASan */
    const volatile uint8_t *q = p;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += q[i];
    return s;
}

void fz_note(const char *what, int ok) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("EI_FUZZ_VERBOSE") && *getenv("EI_FUZZ_VERBOSE") == '1';
    if (verbose) fprintf(stderr, "fuzz: %s: %s%s\n", what, ok ? "ok" : "refused: ", ok ? "" : ei_error_get());
}
