/* Fuzz target: tokenised HDF5 datasets through data/dataset_read.c (ei_dataset_open's checks of
 * /tokens, /loss_mask, /offsets, /doc_ids and the /meta attributes; per-sample reads with their id
 * and mask checks; the tokenizer check; the epoch / rank iterator). The input describes the file
 * (h5_common.h explains why it is not raw HDF5 bytes):
 *   per array (tokens, loss_mask, offsets, doc_ids): mode, length, then its elements; offsets are
 *   either raw or built as running sums of small steps (so most inputs reach the sample reads);
 *   /meta: group, absent, or a dataset; then up to 8 attributes (name from a list, mode, value);
 *   iterator options: batch size, rank / world, shuffle, seed, start position.
 * A dataset that opens must read every sample with lengths, ids and mask values as promised. */
#include "h5_common.h"

#include "core/ei_error.h"
#include "core/ei_rng.h"
#include "data/dataset.h"

#include <stdio.h>

#define MAX_LEN 512

static ei_tokenizer *tok;

static void free_tok(void) { ei_tokenizer_free(tok); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_h5_init();
    char p[1024];
    tok = ei_tokenizer_load(fz_fixture(p, sizeof p, "models/stories260K/tok512.model"), 0);
    atexit(free_tok);
    return 0;
}

static const char *const attr_names[] = {"format_version", "vocab_size", "tokenizer", "tokenizer_vocab_hash",
                                         "n_samples", "n_tokens", "template", "kind", "split", "bos_id"};
#define N_ATTR_NAMES (int)(sizeof attr_names / sizeof attr_names[0])

static void write_file(const char *path, fz_bytes *b) {
    hid_t f = fz_h5_create(path);
    static const char *const names[] = {"tokens", "loss_mask", "offsets", "doc_ids"};
    hid_t want[] = {H5T_STD_I32LE, H5T_STD_U8LE, H5T_STD_I64LE, H5T_STD_I64LE};
    hid_t mem[] = {H5T_NATIVE_INT32, H5T_NATIVE_UINT8, H5T_NATIVE_INT64, H5T_NATIVE_INT64};
    size_t elem[] = {4, 1, 8, 8};
    for (int k = 0; k < 4; k++) {
        int mode = (int)fz_below(b, FZ_H5_MODES);
        size_t n = fz_below(b, MAX_LEN + 1);
        uint64_t sparse = fz_u8(b) & 1 ? (uint64_t)1 << fz_below(b, 41) : fz_below(b, 1 << 20);
        uint8_t *raw = calloc(n + 1, elem[k]);
        if (!raw) continue;
        int running = k == 2 && fz_u8(b) < 192; /* offsets as running sums */
        int64_t acc = 0;
        for (size_t i = 0; i < n; i++) {
            if (running) {
                if (i) acc += fz_below(b, 8);
                memcpy(raw + 8 * i, &acc, 8);
            } else if (k == 0) {
                int32_t v = fz_u8(b) & 1 ? (int32_t)fz_u32(b) : (int32_t)fz_below(b, 600);
                memcpy(raw + 4 * i, &v, 4);
            } else if (k == 1) {
                raw[i] = fz_u8(b) & 3 ? (uint8_t)(fz_u8(b) & 1) : fz_u8(b);
            } else {
                int64_t v = (int64_t)fz_u64(b);
                memcpy(raw + 8 * i, &v, 8);
            }
        }
        fz_h5_array(f, names[k], mode, want[k], mem[k], raw, n, sparse);
        free(raw);
    }
    int meta = (int)fz_below(b, 4);
    if (meta == 1) { /* /meta as a dataset, not a group */
        int64_t one = 1;
        fz_h5_array(f, "meta", FZ_H5_RIGHT, H5T_STD_I64LE, H5T_NATIVE_INT64, &one, 1, 0);
    } else if (meta >= 2) {
        hid_t g = H5Gcreate2(f, "meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        /* format_version 1 first in most inputs, so the other attributes matter */
        if (meta == 3) {
            int64_t v = EI_DATASET_FORMAT_VERSION;
            fz_h5_attr(g, "format_version", FZ_H5_RIGHT, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, 8);
        }
        int na = (int)fz_below(b, 9);
        for (int i = 0; g >= 0 && i < na; i++) {
            const char *name = attr_names[fz_below(b, N_ATTR_NAMES)];
            int mode = (int)fz_below(b, FZ_H5_MODES);
            if (H5Aexists(g, name) > 0) continue;
            if (fz_u8(b) & 1) {
                size_t len;
                const uint8_t *s = fz_take(b, 200, &len);
                fz_h5_attr(g, name, mode, H5T_C_S1, H5T_NATIVE_INT64, s, len);
            } else {
                int64_t v = fz_u8(b) & 1 ? (int64_t)fz_u64(b) : (int64_t)fz_below(b, 1024);
                fz_h5_attr(g, name, mode, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, 8);
            }
        }
        if (g >= 0) H5Gclose(g);
    }
    fz_h5_close_sealed(f, path, EI_SEAL_KIND_DATASET);
}

static void read_all(ei_dataset *d, fz_bytes *b) {
    int64_t n = ei_dataset_n_samples(d), total = 0, vocab = ei_dataset_vocab_size(d);
    /* a file of a million empty samples is valid and small; reading each would only be slow */
    for (int64_t i = 0; i < n && i < 4096; i++) {
        int32_t *t = NULL;
        uint8_t *m = NULL;
        int64_t len = ei_dataset_read_alloc(d, i, &t, &m);
        if (len >= 0) {
            if (len != ei_dataset_sample_len(d, i)) fz_fail("sample %lld: length %lld", (long long)i, (long long)len);
            if (len > ei_dataset_max_len(d)) fz_fail("sample %lld longer than max_len", (long long)i);
            for (int64_t k = 0; k < len; k++)
                if (t[k] < 0 || (vocab > 0 && t[k] >= vocab) || m[k] > 1)
                    fz_fail("sample %lld: token %d / mask %u not checked", (long long)i, t[k], m[k]);
            total += len;
        }
        free(t);
        free(m);
        ei_dataset_doc_id(d, i);
    }
    (void)total;
    ei_dataset_sample_len(d, -1);
    ei_dataset_sample_len(d, n);
    static const char *const strs[] = {"tokenizer", "template", "kind", "split", "tokenizer_vocab_hash"};
    for (int i = 0; i < 5; i++) {
        const char *s = ei_dataset_meta_str(d, strs[i]);
        if (s) fz_touch(s, strlen(s) + 1);
    }
    int64_t v;
    ei_dataset_meta_i64(d, "n_samples", &v);
    ei_dataset_meta_i64(d, "bos_id", &v);
    if (tok) ei_dataset_check_tokenizer(d, tok, "tok512.model");
    /* The iterator over whatever this file holds. */
    ei_dataset_iter_opts o = {.seed = fz_u64(b), .shuffle = fz_u8(b) & 1, .batch_size = 1 + fz_below(b, 8),
                              .world = 1 + (int)fz_below(b, 3)};
    o.rank = (int)fz_below(b, (uint32_t)o.world);
    ei_dataset_pos start = {fz_below(b, 3), fz_below(b, 16)};
    ei_dataset_iter *it = ei_dataset_iter_new(d, &o, start);
    for (int i = 0; it && i < 64; i++) {
        ei_dataset_pos pos;
        int64_t s = ei_dataset_iter_next(it, &pos);
        if (s < 0 || s >= n) fz_fail("iterator gave sample %lld of %lld", (long long)s, (long long)n);
        if (i % 7 == 0) {
            ei_dataset_pos p = ei_dataset_iter_pos(it);
            ei_rng r;
            ei_dataset_iter_rng(it, &r);
            ei_dataset_iter *again = ei_dataset_iter_resume(d, &o, p, &r);
            ei_dataset_iter_free(again);
        }
    }
    ei_dataset_iter_free(it);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fz_path(path, sizeof path, "data.h5");
    fz_bytes b = {data, size};
    write_file(path, &b);
    ei_dataset *d = ei_dataset_open(path);
    fz_note("dataset", d != NULL);
    if (d) {
        read_all(d, &b);
        ei_dataset_close(d);
    }
    return 0;
}

