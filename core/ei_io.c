#include "core/ei_io.h"
#include "core/ei_error.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
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

char *ei_atomic_tmpname(const char *path) {
    size_t n = strlen(path) + 32;
    char *t = malloc(n);
    if (t) snprintf(t, n, "%s.tmp.%ld", path, (long)getpid());
    return t;
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
    if (fd < 0) return ei_error_set("%s: cannot reopen temporary file: %s", tmp, strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return ei_error_set("%s: fsync failed: %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ei_error_set("%s: cannot rename into place: %s", path, strerror(e));
    }
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
    if (rc != 0) unlink(f->tmp);
    else fsync_parent_dir(f->path);
    free(f->path);
    free(f->tmp);
    f->path = f->tmp = NULL;
    return rc;
}

void ei_atomic_abort(ei_atomic_file *f) {
    if (f->fp) fclose(f->fp);
    if (f->tmp) unlink(f->tmp);
    free(f->path);
    free(f->tmp);
    f->fp = NULL;
    f->path = f->tmp = NULL;
}

uint64_t ei_hash_fnv1a(const void *data, size_t n, uint64_t seed) {
    const uint8_t *p = data;
    uint64_t h = seed ? seed : 1469598103934665603ULL;
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
