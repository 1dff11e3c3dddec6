/* main() of the fuzz targets when they are not built with libFuzzer (-DEI_FUZZ=OFF, any compiler):
 * runs LLVMFuzzerTestOneInput on every regular file named on the command line or found (sorted by
 * name, one level deep) in a directory given there. Each input is copied into a buffer of exactly
 * its size, so AddressSanitizer catches a read one byte past the end, as libFuzzer would.
 *
 *   fuzz_eis tests/fuzz/corpus/eis tests/fuzz/regressions/eis
 *
 * EI_FUZZ_TIMEOUT (seconds, default 60) bounds each input: a reader that hangs fails the replay
 * with the input's name instead of stalling ctest until its own timeout. */
#include "fuzz.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Defined by the targets that need set-up; NULL otherwise. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char *current = "";

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "fuzz replay: timeout on input ";
    /* async-signal-safe output only */
    if (write(2, msg, sizeof msg - 1) < 0 || write(2, current, strlen(current)) < 0 || write(2, "\n", 1) < 0) _exit(3);
    _exit(3);
}

static int run_file(const char *path, unsigned timeout) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        perror(path);
        return -1;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) {
        perror(path);
        fclose(fp);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || (n && fread(buf, 1, n, fp) != n)) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(buf);
        fclose(fp);
        return -1;
    }
    fclose(fp);
    current = path;
    alarm(timeout);
    LLVMFuzzerTestOneInput(buf, n);
    alarm(0);
    free(buf);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int run_dir(const char *dir, unsigned timeout, int *count) {
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) abort();
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(p, timeout) != 0) rc = -1;
            else (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR|FILE...   (replays fuzz inputs; built without libFuzzer)\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    const char *t = getenv("EI_FUZZ_TIMEOUT");
    unsigned timeout = t && atoi(t) > 0 ? (unsigned)atoi(t) : 60;
    signal(SIGALRM, on_alarm);
    int count = 0, rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            /* an absent regression folder is fine: a target may have none yet */
            continue;
        }
        if (S_ISDIR(st.st_mode)) rc |= run_dir(argv[i], timeout, &count);
        else if (run_file(argv[i], timeout) == 0) count++;
        else rc = -1;
    }
    const char *name = strrchr(argv[0], '/');
    fprintf(stderr, "%s: replayed %d inputs\n", name ? name + 1 : argv[0], count);
    return rc ? 1 : 0;
}
