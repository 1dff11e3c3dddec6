#include "core/ei_seal.h"

#include "core/ei_error.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- XXH64 */

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* Little-endian reads whatever the host, so a file's seal is the same on every machine. */
static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t xround(uint64_t acc, uint64_t in) { return rotl(acc + in * P2, 31) * P1; }
static uint64_t xmerge(uint64_t h, uint64_t v) { return (h ^ xround(0, v)) * P1 + P4; }

void ei_xxh64_reset(ei_xxh64_state *s, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->seed = seed;
    s->v[0] = seed + P1 + P2;
    s->v[1] = seed + P2;
    s->v[2] = seed;
    s->v[3] = seed - P1;
}

static void stripe(ei_xxh64_state *s, const uint8_t *p) {
    for (int i = 0; i < 4; i++) s->v[i] = xround(s->v[i], rd64(p + 8 * i));
}

void ei_xxh64_update(ei_xxh64_state *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->total += n;
    if (s->memsize + n < 32) {
        memcpy(s->mem + s->memsize, p, n);
        s->memsize += (uint32_t)n;
        return;
    }
    if (s->memsize) {
        size_t k = 32 - s->memsize;
        memcpy(s->mem + s->memsize, p, k);
        stripe(s, s->mem);
        p += k;
        n -= k;
        s->memsize = 0;
    }
    for (; n >= 32; p += 32, n -= 32) stripe(s, p);
    memcpy(s->mem, p, n);
    s->memsize = (uint32_t)n;
}

uint64_t ei_xxh64_digest(const ei_xxh64_state *s) {
    uint64_t h;
    if (s->total >= 32) {
        h = rotl(s->v[0], 1) + rotl(s->v[1], 7) + rotl(s->v[2], 12) + rotl(s->v[3], 18);
        for (int i = 0; i < 4; i++) h = xmerge(h, s->v[i]);
    } else {
        h = s->seed + P5;
    }
    h += s->total;
    const uint8_t *p = s->mem;
    size_t n = s->memsize;
    for (; n >= 8; p += 8, n -= 8) h = rotl(h ^ xround(0, rd64(p)), 27) * P1 + P4;
    if (n >= 4) {
        h = rotl(h ^ (uint64_t)rd32(p) * P1, 23) * P2 + P3;
        p += 4;
        n -= 4;
    }
    for (; n > 0; p++, n--) h = rotl(h ^ *p * P5, 11) * P1;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

uint64_t ei_xxh64(const void *data, size_t n, uint64_t seed) {
    ei_xxh64_state s;
    ei_xxh64_reset(&s, seed);
    ei_xxh64_update(&s, data, n);
    return ei_xxh64_digest(&s);
}

/* ---------------------------------------------------------------- seals */

static const uint8_t MAGIC[8] = {0x89, 'E', 'I', 'S', 'E', 'A', 'L', '\n'};
#define KIND_BYTES 16

static void make_header(uint8_t *h, uint64_t payload_size, uint64_t payload_hash, const char *kind) {
    memset(h, 0, EI_SEAL_BYTES);
    memcpy(h, MAGIC, 8);
    wr32(h + 8, EI_SEAL_VERSION);
    wr32(h + 12, EI_SEAL_BYTES);
    wr64(h + 16, payload_size);
    wr64(h + 24, payload_hash);
    strncpy((char *)h + 32, kind, KIND_BYTES - 1);
    wr64(h + 48, ei_xxh64(h, 48, 0));
}

void ei_seal_buffer(uint8_t *buf, size_t n, const char *kind) {
    uint64_t sz = n > EI_SEAL_BYTES ? n - EI_SEAL_BYTES : 0;
    make_header(buf, sz, ei_xxh64(buf + EI_SEAL_BYTES, (size_t)sz, 0), kind);
}

/* XXH64 of bytes [EI_SEAL_BYTES, end) of fd, read in 1 MiB pieces (memory stays flat). */
static int hash_payload(int fd, const char *path, uint64_t *hash, uint64_t *size) {
    enum { CHUNK = 1 << 20 };
    uint8_t *b = malloc(CHUNK);
    if (!b) return ei_error_set("%s: out of memory", path);
    ei_xxh64_state s;
    ei_xxh64_reset(&s, 0);
    off_t at = EI_SEAL_BYTES;
    for (;;) {
        ssize_t r = pread(fd, b, CHUNK, at);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(b);
            return ei_error_set("%s: read error: %s", path, strerror(e));
        }
        if (r == 0) break;
        ei_xxh64_update(&s, b, (size_t)r);
        at += r;
    }
    free(b);
    *hash = ei_xxh64_digest(&s);
    *size = (uint64_t)at - EI_SEAL_BYTES;
    return 0;
}

int ei_seal_file(const char *path, const char *kind) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return ei_error_set("%s: cannot open to seal: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < EI_SEAL_BYTES) {
        close(fd);
        return ei_error_set("%s: too short to seal (no reserved header)", path);
    }
    uint64_t hash, size;
    if (hash_payload(fd, path, &hash, &size) != 0) {
        close(fd);
        return -1;
    }
    uint8_t h[EI_SEAL_BYTES];
    make_header(h, size, hash, kind);
    ssize_t w = pwrite(fd, h, sizeof h, 0);
    int e = errno;
    if (close(fd) != 0 && w == (ssize_t)sizeof h) return ei_error_set("%s: close failed: %s", path, strerror(errno));
    if (w != (ssize_t)sizeof h) return ei_error_set("%s: cannot write the seal: %s", path, strerror(e));
    return 0;
}

int ei_seal_check(const char *path, const char *kind) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ei_error_set("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    uint8_t h[EI_SEAL_BYTES];
    ssize_t got = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? pread(fd, h, sizeof h, 0) : -1;
    int rc = 0;
    if (got < 8 || memcmp(h, MAGIC, 8) != 0) goto out; /* no seal */
    if (got < EI_SEAL_BYTES) {
        rc = ei_error_set("%s: truncated: %lld bytes, less than its %d-byte checksum header", path,
                          (long long)st.st_size, EI_SEAL_BYTES);
        goto out;
    }
    if (rd64(h + 48) != ei_xxh64(h, 48, 0)) {
        rc = ei_error_set("%s: the checksum header is corrupt", path);
        goto out;
    }
    if (rd32(h + 8) != EI_SEAL_VERSION || rd32(h + 12) != EI_SEAL_BYTES) {
        rc = ei_error_set("%s: checksum header version %u (size %u); this build reads version %d", path, rd32(h + 8),
                          rd32(h + 12), EI_SEAL_VERSION);
        goto out;
    }
    char k[KIND_BYTES + 1] = {0};
    memcpy(k, h + 32, KIND_BYTES);
    if (kind && strcmp(k, kind) != 0) {
        rc = ei_error_set("%s: this is an %s file, not an %s", path, k, kind);
        goto out;
    }
    uint64_t want = rd64(h + 16), have = (uint64_t)st.st_size - EI_SEAL_BYTES;
    if (want != have) {
        rc = ei_error_set("%s: %s: the checksum header says %llu bytes follow it, the file has %llu", path,
                          have < want ? "truncated" : "has extra bytes", (unsigned long long)want,
                          (unsigned long long)have);
        goto out;
    }
    uint64_t hash, size;
    if (hash_payload(fd, path, &hash, &size) != 0) {
        rc = -1;
        goto out;
    }
    if (hash != rd64(h + 24)) {
        rc = ei_error_set("%s: whole-file checksum mismatch (XXH64 %016llx, the header says %016llx): the file is "
                          "corrupt or was changed after ei wrote it",
                          path, (unsigned long long)hash, (unsigned long long)rd64(h + 24));
        goto out;
    }
    rc = 1;
out:
    close(fd);
    return rc;
}

void ei_seal_note_unverified(const char *path, const char *what) {
    /* Once per path: a checkpoint is read more than once (the newest valid one, then to resume). */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static uint64_t seen[64];
    static int n_seen;
    uint64_t id = ei_xxh64(path, strlen(path), 0);
    pthread_mutex_lock(&mu);
    int dup = 0;
    for (int i = 0; i < n_seen && !dup; i++) dup = seen[i] == id;
    if (!dup && n_seen < 64) seen[n_seen++] = id;
    pthread_mutex_unlock(&mu);
    if (!dup)
        fprintf(stderr,
                "note: %s carries no ei checksum (written by another program or an older ei), so this %s is parsed "
                "by libhdf5 unverified\n",
                path, what);
}
