#include "core/ei_io.h"
#include "core/ei_error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int ei_file_read_all(const char *path, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return ei_error_set("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return ei_error_set("%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *b = malloc(n + 1);
    if (!b) {
        fclose(fp);
        return ei_error_set("%s: out of memory reading %zu bytes", path, n);
    }
    if (n && fread(b, 1, n, fp) != n) {
        free(b);
        fclose(fp);
        return ei_error_set("%s: read error", path);
    }
    fclose(fp);
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

int ei_file_map_open(ei_file_map *m, const char *path) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ei_error_set("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ei_error_set("%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return ei_error_set("%s: mmap failed: %s", path, strerror(errno));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

void ei_file_map_close(ei_file_map *m) {
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

int ei_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int ei_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

char *ei_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *out = malloc(a + b + 2);
    if (!out) return NULL;
    memcpy(out, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') out[k++] = '/';
    memcpy(out + k, name, b + 1);
    return out;
}

int ei_mkdir_p(const char *path) {
    char *p = strdup(path);
    if (!p) return ei_error_set("out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            return ei_error_set("%s: cannot create directory: %s", path, strerror(e));
        }
        *s = '/';
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
        int e = errno;
        free(p);
        return ei_error_set("%s: cannot create directory: %s", path, strerror(e));
    }
    free(p);
    if (!ei_path_is_dir(path)) return ei_error_set("%s: exists and is not a directory", path);
    return 0;
}

/* ---------------------------------------------------------------- live temporaries
 * A fixed table, so the signal handler touches nothing but static memory and unlink(2). A slot is
 * 0 free, 1 being changed, 2 live; the handler only reads live slots. */
#define TMP_SLOTS 64
#define TMP_NAME_MAX 4096
static char tmp_names[TMP_SLOTS][TMP_NAME_MAX];
static atomic_int tmp_state[TMP_SLOTS];
static atomic_int handlers_installed;

static void on_fatal_signal(int sig) {
    int saved = errno;
    for (int i = 0; i < TMP_SLOTS; i++)
        if (atomic_load(&tmp_state[i]) == 2) unlink(tmp_names[i]);
    /* Blocked while the handler runs: delivered with the default action as it returns. */
    signal(sig, SIG_DFL);
    raise(sig);
    errno = saved;
}

static void install_handlers(void) {
    int expect = 0;
    if (!atomic_compare_exchange_strong(&handlers_installed, &expect, 1)) return;
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old, sa;
        /* A program (or MPI) that handles the signal itself keeps its handler. */
        if (sigaction(sigs[i], NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

static void tmp_register(const char *tmp) {
    if (strlen(tmp) >= TMP_NAME_MAX) return;
    install_handlers();
    for (int i = 0; i < TMP_SLOTS; i++) {
        int expect = 0;
        if (!atomic_compare_exchange_strong(&tmp_state[i], &expect, 1)) continue;
        strcpy(tmp_names[i], tmp);
        atomic_store(&tmp_state[i], 2);
        return;
    }
}

static void tmp_unregister(const char *tmp) {
    for (int i = 0; i < TMP_SLOTS; i++) {
        if (atomic_load(&tmp_state[i]) != 2 || strcmp(tmp_names[i], tmp) != 0) continue;
        int expect = 2;
        if (atomic_compare_exchange_strong(&tmp_state[i], &expect, 1)) {
            tmp_names[i][0] = '\0';
            atomic_store(&tmp_state[i], 0);
            return;
        }
    }
}

/* Removes "<path>.tmp.<pid>" files whose writer is gone (killed with SIGKILL, or the machine
 * stopped). A pid that exists, or that cannot be probed, keeps its file: it may still be writing. */
static void remove_stale_temporaries(const char *path) {
    char *c1 = strdup(path), *c2 = strdup(path);
    DIR *d = NULL;
    if (!c1 || !c2) goto out;
    const char *dir = dirname(c1), *base = basename(c2);
    size_t bl = strlen(base);
    if (!(d = opendir(dir))) goto out;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, base, bl) != 0 || strncmp(e->d_name + bl, ".tmp.", 5) != 0) continue;
        const char *num = e->d_name + bl + 5;
        char *end = NULL;
        errno = 0;
        long pid = strtol(num, &end, 10);
        if (end == num || *end || errno || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char *p = ei_path_join(dir, e->d_name);
        if (p) unlink(p);
        free(p);
    }
out:
    if (d) closedir(d);
    free(c1);
    free(c2);
}

char *ei_atomic_tmpname(const char *path) {
    size_t n = strlen(path) + 32;
    char *t = malloc(n);
    if (!t) return NULL;
    snprintf(t, n, "%s.tmp.%ld", path, (long)getpid());
    remove_stale_temporaries(path);
    tmp_register(t);
    return t;
}

void ei_atomic_discard(const char *tmp) {
    if (!tmp) return;
    unlink(tmp);
    tmp_unregister(tmp);
}

static void fsync_parent_dir(const char *path) {
    char *c = strdup(path);
    if (!c) return;
    int fd = open(dirname(c), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(c);
}

int ei_atomic_finish(const char *tmp, const char *path) {
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        tmp_unregister(tmp);
        return ei_error_set("%s: cannot reopen temporary file: %s", tmp, strerror(e));
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        ei_atomic_discard(tmp);
        return ei_error_set("%s: fsync failed: %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        ei_atomic_discard(tmp);
        return ei_error_set("%s: cannot rename into place: %s", path, strerror(e));
    }
    tmp_unregister(tmp);
    fsync_parent_dir(path);
    return 0;
}

int ei_atomic_open(ei_atomic_file *f, const char *path) {
    f->fp = NULL;
    f->path = strdup(path);
    f->tmp = ei_atomic_tmpname(path);
    if (!f->path || !f->tmp) {
        free(f->path);
        free(f->tmp);
        f->path = f->tmp = NULL;
        return ei_error_set("out of memory");
    }
    f->fp = fopen(f->tmp, "wb");
    if (!f->fp) {
        ei_error_set("%s: cannot create: %s", f->tmp, strerror(errno));
        tmp_unregister(f->tmp);
        free(f->path);
        free(f->tmp);
        f->path = f->tmp = NULL;
        return -1;
    }
    return 0;
}

int ei_atomic_commit(ei_atomic_file *f) {
    int rc = 0;
    if (fflush(f->fp) != 0 || ferror(f->fp)) rc = ei_error_set("%s: write failed: %s", f->path, strerror(errno));
    if (rc == 0 && fsync(fileno(f->fp)) != 0) rc = ei_error_set("%s: fsync failed: %s", f->path, strerror(errno));
    if (fclose(f->fp) != 0 && rc == 0) rc = ei_error_set("%s: close failed: %s", f->path, strerror(errno));
    f->fp = NULL;
    if (rc == 0 && rename(f->tmp, f->path) != 0) rc = ei_error_set("%s: rename failed: %s", f->path, strerror(errno));
    if (rc != 0) ei_atomic_discard(f->tmp);
    else {
        tmp_unregister(f->tmp);
        fsync_parent_dir(f->path);
    }
    free(f->path);
    free(f->tmp);
    f->path = f->tmp = NULL;
    return rc;
}

void ei_atomic_abort(ei_atomic_file *f) {
    if (f->fp) fclose(f->fp);
    ei_atomic_discard(f->tmp);
    free(f->path);
    free(f->tmp);
    f->fp = NULL;
    f->path = f->tmp = NULL;
}

static int same_file(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

int ei_check_not_input(const char *out, const char *const *inputs, int n) {
    struct stat so, si;
    if (!out || stat(out, &so) != 0) return 0;
    for (int i = 0; i < n; i++) {
        if (!inputs[i] || stat(inputs[i], &si) != 0) continue;
        if (same_file(&so, &si))
            return ei_error_set("%s: this output is the input %s (the same file); refusing to overwrite an input, "
                                "choose another output",
                                out, inputs[i]);
        if (!S_ISDIR(si.st_mode) || S_ISDIR(so.st_mode)) continue;
        DIR *d = opendir(inputs[i]);
        struct dirent *e;
        int hit = 0;
        while (d && !hit && (e = readdir(d)) != NULL) {
            char *p = ei_path_join(inputs[i], e->d_name);
            struct stat se;
            hit = p && stat(p, &se) == 0 && S_ISREG(se.st_mode) && same_file(&so, &se);
            if (hit) ei_error_set("%s: this output is %s, part of the input %s; refusing to overwrite an input, "
                                  "choose another output",
                                  out, p, inputs[i]);
            free(p);
        }
        if (d) closedir(d);
        if (hit) return -1;
    }
    return 0;
}

uint64_t ei_hash_fnv1a(const void *data, size_t n, uint64_t seed) {
    const uint8_t *p = data;
    uint64_t h = seed ? seed : 14695981039346656037ULL; /* the FNV-1a 64 offset basis */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

double ei_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t ei_peak_rss_bytes(void) {
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, fp)) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = (size_t)strtoull(line + 6, NULL, 10);
            break;
        }
    }
    fclose(fp);
    return kb * 1024;
}
