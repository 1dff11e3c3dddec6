/* File seals: a whole-file checksum in a fixed 512-byte header, checked before any parser (libhdf5
 * in particular) reads the file. The HDF5 files ei writes (datasets, checkpoints) reserve their
 * first 512 bytes as an HDF5 user block, which libhdf5 skips, and the seal lives there; the format
 * is in docs/reliability.md ("Checksums") and scripts/seal_check.py verifies it without HDF5.
 *
 * Layout, little-endian:
 *   0   8  magic "\x89EISEAL\n"
 *   8   4  seal version (1)
 *   12  4  header size H = 512: the sealed payload is bytes [H, end of file)
 *   16  8  payload size in bytes
 *   24  8  XXH64 of the payload, seed 0
 *   32 16  kind, NUL-padded ("ei-dataset", "ei-checkpoint")
 *   48  8  XXH64 of bytes [0, 48), seed 0 (the header's own check)
 *   56     zeros up to H
 *
 * A seal detects truncation, corruption and edits by other tools; it is not a signature: anyone can
 * compute it, so a crafted file from someone else can carry a valid one (README: files from others
 * are parsed by libhdf5). */
#ifndef EI_SEAL_H
#define EI_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define EI_SEAL_BYTES 512
#define EI_SEAL_VERSION 1

/* XXH64 (the xxHash specification), one shot and streaming. */
typedef struct {
    uint64_t total, v[4], seed;
    uint8_t mem[32];
    uint32_t memsize;
} ei_xxh64_state;
void ei_xxh64_reset(ei_xxh64_state *s, uint64_t seed);
void ei_xxh64_update(ei_xxh64_state *s, const void *data, size_t n);
uint64_t ei_xxh64_digest(const ei_xxh64_state *s);
uint64_t ei_xxh64(const void *data, size_t n, uint64_t seed);

/* Fills the first EI_SEAL_BYTES of buf (reserved by the writer) with the seal of buf[512..n). */
void ei_seal_buffer(uint8_t *buf, size_t n, const char *kind);
/* Seals a file whose first EI_SEAL_BYTES the writer reserved (HDF5 user block), in place. The
 * caller fsyncs and renames (ei_atomic_finish). -1 with ei_error set on I/O failure. */
int ei_seal_file(const char *path, const char *kind);

/* Checks path's seal before anything parses it: 1 sealed and intact (and of this kind); 0 no seal
 * (a file from another program or an older ei: readers go on, with a note); -1 with ei_error set
 * naming the file when the seal is present and the file does not match it (truncated, corrupt,
 * edited), or the file is sealed as another kind (e.g. a checkpoint given as a dataset). */
int ei_seal_check(const char *path, const char *kind);

/* Prints "note: <path> carries no ei checksum ..." on stderr, once per path per process. */
void ei_seal_note_unverified(const char *path, const char *what);

#endif
