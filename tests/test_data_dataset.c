/* HDF5 dataset writer and reader: round trip of random samples, the iterator's rules (permutation,
 * determinism by seed, disjoint rank shares covering every global batch, resuming from a position),
 * its shuffling generator (the core/ei_rng stream, the state reported with a position, resuming from
 * it), damaged files (truncated, flipped bytes, bad offsets, wrong types) giving errors, and HDF5's
 * error reporting left as the caller had it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ei_error.h"
#include "core/ei_rng.h"
#include "data/dataset.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VOCAB 1000
#define NS 57

/* HDF5 1.10 loses a few object-header blocks from its internal free lists when it meets some
 * corrupted object headers (test_damaged_bytes flips bytes on purpose). Those blocks are the
 * library's, not ours; LeakSanitizer is told to ignore leaks allocated inside libhdf5 (its frames have no frame
 * pointers, so the site cannot be named more precisely). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5\n"; }

static char path[512];
static int32_t *ref_tok[NS];
static uint8_t *ref_mask[NS];
static size_t ref_len[NS];

static uint64_t rng = 7;
static uint32_t rnd(void) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng >> 33);
}

static int setup(void **state) {
    (void)state;
    snprintf(path, sizeof path, "%s/test_dataset_%ld.h5", EI_BINARY_DIR, (long)getpid());
    ei_dataset_writer *w = ei_dataset_writer_open(path);
    assert_non_null(w);
    for (int i = 0; i < NS; i++) {
        /* One sample crosses the writer's 1 Mi-token flush buffer. */
        ref_len[i] = i == 20 ? (1u << 20) + 17 : 1 + rnd() % 700;
        ref_tok[i] = malloc(ref_len[i] * sizeof(int32_t));
        ref_mask[i] = malloc(ref_len[i]);
        for (size_t k = 0; k < ref_len[i]; k++) {
            ref_tok[i][k] = (int32_t)(rnd() % VOCAB);
            ref_mask[i][k] = (uint8_t)(rnd() & 1);
        }
        assert_int_equal(ei_dataset_writer_add(w, ref_tok[i], ref_mask[i], ref_len[i], i / 3), 0);
    }
    uint8_t badmask = 2;
    int32_t tok = 1;
    assert_int_equal(ei_dataset_writer_add(w, &tok, &badmask, 1, 0), -1);
    assert_int_equal(ei_dataset_writer_attr_i64(w, "vocab_size", VOCAB), 0);
    assert_int_equal(ei_dataset_writer_attr_str(w, "tokenizer", "test:tok"), 0);
    assert_int_equal(ei_dataset_writer_attr_str(w, "tokenizer", "test:tok2"), 0); /* replaces */
    assert_int_equal(ei_dataset_writer_close(w), 0);
    assert_int_equal(access(path, F_OK), 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < NS; i++) {
        free(ref_tok[i]);
        free(ref_mask[i]);
    }
    unlink(path);
    return 0;
}

static void test_round_trip(void **state) {
    (void)state;
    ei_dataset *d = ei_dataset_open(path);
    assert_non_null(d);
    assert_int_equal(ei_dataset_n_samples(d), NS);
    assert_int_equal(ei_dataset_vocab_size(d), VOCAB);
    assert_string_equal(ei_dataset_meta_str(d, "tokenizer"), "test:tok2");
    int64_t v;
    assert_int_equal(ei_dataset_meta_i64(d, "n_samples", &v), 0);
    assert_int_equal(v, NS);
    int64_t total = 0;
    for (int i = 0; i < NS; i++) {
        assert_int_equal(ei_dataset_sample_len(d, i), (int64_t)ref_len[i]);
        assert_int_equal(ei_dataset_doc_id(d, i), i / 3);
        int32_t *t;
        uint8_t *m;
        assert_int_equal(ei_dataset_read_alloc(d, i, &t, &m), (int64_t)ref_len[i]);
        assert_memory_equal(t, ref_tok[i], ref_len[i] * sizeof(int32_t));
        assert_memory_equal(m, ref_mask[i], ref_len[i]);
        free(t);
        free(m);
        total += (int64_t)ref_len[i];
    }
    assert_int_equal(ei_dataset_n_tokens(d), total);
    assert_int_equal(ei_dataset_sample_len(d, NS), -1);
    int32_t one;
    assert_int_equal(ei_dataset_read(d, NS, &one, NULL), -1);
    ei_dataset_close(d);
}

/* An independent statement of the ownership rule in dataset.h. */
static int owner(int64_t p, int64_t b, int world) { return (int)((p % b) % world); }

static void test_iterator_rules(void **state) {
    (void)state;
    ei_dataset *d = ei_dataset_open(path);
    assert_non_null(d);
    const int64_t B = 8;
    const int64_t nb = NS / B;
    int64_t perm0[NS], perm1[NS], again[NS];
    ei_dataset_epoch_order(NS, 99, 0, 1, perm0);
    ei_dataset_epoch_order(NS, 99, 1, 1, perm1);
    ei_dataset_epoch_order(NS, 99, 0, 1, again);
    assert_memory_equal(perm0, again, sizeof perm0);
    assert_memory_not_equal(perm0, perm1, sizeof perm0);
    int seen[NS] = {0};
    for (int i = 0; i < NS; i++) seen[perm0[i]]++;
    for (int i = 0; i < NS; i++) assert_int_equal(seen[i], 1);
    ei_dataset_epoch_order(NS, 100, 0, 1, again);
    assert_memory_not_equal(perm0, again, sizeof perm0);

    for (int world = 1; world <= 3; world++) {
        /* Every rank walks two epochs; gather what each global batch received. */
        int64_t got[2][NS];
        for (int e = 0; e < 2; e++)
            for (int i = 0; i < NS; i++) got[e][i] = -1;
        for (int r = 0; r < world; r++) {
            ei_dataset_iter_opts o = {.seed = 99, .shuffle = 1, .batch_size = B, .rank = r, .world = world};
            ei_dataset_pos start = {0, 0};
            ei_dataset_iter *it = ei_dataset_iter_new(d, &o, start);
            assert_non_null(it);
            assert_int_equal(ei_dataset_iter_batches_per_epoch(it), nb);
            int64_t n_per_epoch = 0;
            for (int64_t b = 0; b < nb; b++) n_per_epoch += ei_dataset_rank_share(B, r, world);
            for (int e = 0; e < 2; e++)
                for (int64_t k = 0; k < n_per_epoch; k++) {
                    ei_dataset_pos p;
                    int64_t s = ei_dataset_iter_next(it, &p);
                    assert_int_equal(p.epoch, e);
                    assert_int_equal(owner(p.index, B, world), r);
                    assert_int_equal(got[e][p.index], -1); /* disjoint */
                    got[e][p.index] = s;
                }
            ei_dataset_pos end = ei_dataset_iter_pos(it);
            assert_int_equal(end.epoch, 2);
            assert_int_equal(end.index, 0);
            ei_dataset_iter_free(it);
        }
        /* Together the ranks cover every position of every full batch, with the epoch's order. */
        for (int64_t p = 0; p < nb * B; p++) {
            assert_int_equal(got[0][p], perm0[p]);
            assert_int_equal(got[1][p], perm1[p]);
        }
        for (int64_t p = nb * B; p < NS; p++) assert_int_equal(got[0][p], -1);
    }
    ei_dataset_close(d);
}

static void test_iterator_resume(void **state) {
    (void)state;
    ei_dataset *d = ei_dataset_open(path);
    assert_non_null(d);
    for (int world = 1; world <= 3; world += 2)
        for (int r = 0; r < world; r++) {
            ei_dataset_iter_opts o = {.seed = 5, .shuffle = 1, .batch_size = 6, .rank = r, .world = world};
            ei_dataset_pos zero = {0, 0};
            ei_dataset_iter *a = ei_dataset_iter_new(d, &o, zero);
            int64_t share = ei_dataset_rank_share(6, r, world);
            /* Stop after 11 global batches (crossing into epoch 1), at a batch boundary. */
            for (int64_t k = 0; k < 11 * share; k++) ei_dataset_iter_next(a, NULL);
            ei_dataset_pos pos = ei_dataset_iter_pos(a);
            assert_int_equal(pos.epoch, 1);
            assert_int_equal(pos.index, (11 - NS / 6) * 6);
            ei_dataset_iter *b = ei_dataset_iter_new(d, &o, pos);
            assert_non_null(b);
            for (int k = 0; k < 40; k++) assert_int_equal(ei_dataset_iter_next(a, NULL), ei_dataset_iter_next(b, NULL));
            ei_dataset_iter_free(a);
            ei_dataset_iter_free(b);
        }
    /* No shuffling: file order. */
    ei_dataset_iter_opts o = {.seed = 5, .shuffle = 0, .batch_size = 1, .rank = 0, .world = 1};
    ei_dataset_pos zero = {0, 0};
    ei_dataset_iter *it = ei_dataset_iter_new(d, &o, zero);
    for (int i = 0; i < NS + 3; i++) assert_int_equal(ei_dataset_iter_next(it, NULL), i % NS);
    ei_dataset_iter_free(it);
    /* Invalid options. */
    o.batch_size = NS + 1;
    assert_null(ei_dataset_iter_new(d, &o, zero));
    o.batch_size = 4;
    o.world = 5;
    o.rank = 0;
    assert_null(ei_dataset_iter_new(d, &o, zero));
    o.world = 2;
    o.rank = 2;
    assert_null(ei_dataset_iter_new(d, &o, zero));
    o.rank = 0;
    ei_dataset_pos far = {0, NS + 10};
    assert_null(ei_dataset_iter_new(d, &o, far));
    ei_dataset_close(d);
}

/* The state of seed's stream after `epochs` epoch orders of n samples: the restatement of the
 * stream rule in dataset.h. */
static void stream_at(uint64_t seed, int64_t epochs, ei_rng *r) {
    int64_t scratch[NS];
    ei_rng_seed(r, seed);
    for (int64_t e = 0; e < epochs; e++) {
        for (int i = 0; i < NS; i++) scratch[i] = i;
        ei_rng_shuffle_i64(r, scratch, NS);
    }
}

static void test_iterator_rng(void **state) {
    (void)state;
    ei_dataset *d = ei_dataset_open(path);
    assert_non_null(d);
    /* Epoch e's order shuffles the identity with the stream where epoch e-1 left it. */
    ei_rng r;
    ei_rng_seed(&r, 99);
    for (int e = 0; e < 3; e++) {
        int64_t want[NS], got[NS];
        for (int i = 0; i < NS; i++) want[i] = i;
        ei_rng_shuffle_i64(&r, want, NS);
        ei_dataset_epoch_order(NS, 99, e, 1, got);
        assert_memory_equal(got, want, sizeof want);
    }

    const int64_t B = 6, nb = NS / B;
    ei_dataset_iter_opts o = {.seed = 5, .shuffle = 1, .batch_size = B, .rank = 0, .world = 1};
    ei_dataset_pos zero = {0, 0};
    ei_dataset_iter *a = ei_dataset_iter_new(d, &o, zero);
    assert_non_null(a);
    ei_rng st, want;
    ei_dataset_iter_rng(a, &st);
    stream_at(5, 0, &want);
    assert_memory_equal(st.s, want.s, sizeof st.s);
    /* Walk into epoch 3. At every position the reported state is the one that position's epoch is
     * drawn from; at every batch boundary (position, state) resumes the identical sequence, with
     * the state given and with it replayed from the seed. */
    for (int64_t k = 0; k < 3 * nb * B + 2 * B; k++) {
        ei_dataset_iter_next(a, NULL);
        ei_dataset_pos pos = ei_dataset_iter_pos(a);
        ei_dataset_iter_rng(a, &st);
        stream_at(5, pos.epoch, &want);
        assert_memory_equal(st.s, want.s, sizeof st.s);
        if (pos.index % B) continue;
        ei_dataset_iter *b = ei_dataset_iter_resume(d, &o, pos, &st), *c = ei_dataset_iter_new(d, &o, pos);
        ei_dataset_iter *ref = ei_dataset_iter_resume(d, &o, zero, NULL);
        assert_non_null(b);
        assert_non_null(c);
        for (int64_t q = 0; q <= k; q++) ei_dataset_iter_next(ref, NULL);
        for (int64_t q = 0; q < nb * B + B; q++) {
            int64_t x = ei_dataset_iter_next(ref, NULL);
            assert_int_equal(ei_dataset_iter_next(b, NULL), x);
            assert_int_equal(ei_dataset_iter_next(c, NULL), x);
        }
        ei_dataset_iter_free(b);
        ei_dataset_iter_free(c);
        ei_dataset_iter_free(ref);
    }
    ei_dataset_iter_free(a);

    /* Starting at the very end of epoch 0 reports (1, 0) and the state epoch 0 left. */
    ei_dataset_pos end0 = {0, nb * B};
    a = ei_dataset_iter_new(d, &o, end0);
    ei_dataset_pos p = ei_dataset_iter_pos(a);
    assert_int_equal(p.epoch, 1);
    assert_int_equal(p.index, 0);
    ei_dataset_iter_rng(a, &st);
    stream_at(5, 1, &want);
    assert_memory_equal(st.s, want.s, sizeof st.s);
    int64_t perm1[NS];
    ei_dataset_epoch_order(NS, 5, 1, 1, perm1);
    assert_int_equal(ei_dataset_iter_next(a, NULL), perm1[0]);
    ei_dataset_iter_free(a);

    /* The given state is what is drawn from: another state, another order (that of its seed). */
    ei_rng other;
    ei_rng_seed(&other, 6);
    a = ei_dataset_iter_resume(d, &o, zero, &other);
    ei_dataset_iter *b = ei_dataset_iter_new(d, &o, zero);
    int64_t perm6[NS];
    ei_dataset_epoch_order(NS, 6, 0, 1, perm6);
    int differ = 0;
    for (int64_t q = 0; q < nb * B; q++) {
        int64_t x = ei_dataset_iter_next(a, NULL);
        assert_int_equal(x, perm6[q]);
        differ |= x != ei_dataset_iter_next(b, NULL);
    }
    assert_true(differ);
    ei_dataset_iter_free(a);
    ei_dataset_iter_free(b);
    ei_rng zero_state;
    memset(&zero_state, 0, sizeof zero_state);
    assert_null(ei_dataset_iter_resume(d, &o, zero, &zero_state));

    /* Ranks report the same state at batch boundaries (each rank draws the same orders). */
    for (int world = 2; world <= 3; world++) {
        ei_rng first;
        for (int rk = 0; rk < world; rk++) {
            ei_dataset_iter_opts ro = o;
            ro.rank = rk;
            ro.world = world;
            ei_dataset_iter *it = ei_dataset_iter_new(d, &ro, zero);
            for (int64_t k = 0; k < (nb + 2) * ei_dataset_rank_share(B, rk, world); k++) ei_dataset_iter_next(it, NULL);
            ei_dataset_iter_rng(it, &st);
            if (rk == 0) first = st;
            assert_memory_equal(st.s, first.s, sizeof st.s);
            stream_at(5, 1, &want);
            assert_memory_equal(st.s, want.s, sizeof st.s);
            ei_dataset_iter_free(it);
        }
    }
    ei_dataset_close(d);
}

/* Counts HDF5's automatic error reports. */
static herr_t count_report(hid_t stack, void *data) {
    (void)stack;
    (*(int *)data)++;
    return 0;
}

static void assert_handler(H5E_auto2_t fn, void *data) {
    H5E_auto2_t f = NULL;
    void *dd = NULL;
    assert_true(H5Eget_auto2(H5E_DEFAULT, &f, &dd) >= 0);
    assert_true(f == fn);
    assert_true(dd == data);
}

/* Every reader and writer function keeps HDF5 quiet while it works, failures included, and leaves
 * the caller's error handler in place. */
static void test_hdf5_error_state_restored(void **state) {
    (void)state;
    H5E_auto2_t saved_fn;
    void *saved_data;
    assert_true(H5Eget_auto2(H5E_DEFAULT, &saved_fn, &saved_data) >= 0);
    int reports = 0;
    H5Eset_auto2(H5E_DEFAULT, count_report, &reports);

    /* A truncated copy of the dataset: HDF5 itself reports errors opening it. */
    char trunc[600], bad_dir[600], out[600];
    snprintf(trunc, sizeof trunc, "%s.trunc.h5", path);
    snprintf(bad_dir, sizeof bad_dir, "%s.no-such-dir/x.h5", path);
    snprintf(out, sizeof out, "%s.quiet.h5", path);
    FILE *in = fopen(path, "rb"), *fp = fopen(trunc, "wb");
    assert_non_null(in);
    assert_non_null(fp);
    char buf[3000];
    size_t got = fread(buf, 1, sizeof buf, in);
    assert_int_equal(fwrite(buf, 1, got, fp), got);
    fclose(in);
    fclose(fp);
    hid_t f = H5Fopen(trunc, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) H5Fclose(f);
    assert_true(f < 0);
    assert_true(reports > 0); /* the handler is live: the checks below can see a leak */
    reports = 0;

    assert_null(ei_dataset_open(trunc));
    assert_handler(count_report, &reports);
    assert_null(ei_dataset_writer_open(bad_dir));
    assert_handler(count_report, &reports);

    ei_dataset *d = ei_dataset_open(path);
    assert_non_null(d);
    assert_handler(count_report, &reports);
    int64_t v;
    assert_int_equal(ei_dataset_meta_i64(d, "no_such_attribute", &v), -1);
    assert_int_equal(ei_dataset_meta_i64(d, "vocab_size", &v), 0);
    int32_t *t;
    uint8_t *m;
    int64_t n = ei_dataset_read_alloc(d, 3, &t, &m);
    assert_true(n > 0);
    assert_int_equal(ei_dataset_read(d, NS, t, m), -1);
    assert_handler(count_report, &reports);
    ei_dataset_close(d);
    assert_handler(count_report, &reports);

    ei_dataset_writer *w = ei_dataset_writer_open(out);
    assert_non_null(w);
    assert_handler(count_report, &reports);
    assert_int_equal(ei_dataset_writer_add(w, t, m, (size_t)n, 0), 0);
    assert_handler(count_report, &reports);
    assert_int_equal(ei_dataset_writer_close(w), 0);
    assert_handler(count_report, &reports);
    w = ei_dataset_writer_open(out);
    assert_non_null(w);
    ei_dataset_writer_abort(w);
    assert_handler(count_report, &reports);
    free(t);
    free(m);

    assert_int_equal(reports, 0);
    H5Eset_auto2(H5E_DEFAULT, saved_fn, saved_data);
    unlink(trunc);
    unlink(out);
}

/* Writes a small file with hand-made datasets. */
static void write_raw(const char *p, const int64_t *offsets, hsize_t n_off, hid_t tok_type, hsize_t n_tok,
                      int with_meta) {
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    int32_t toks[64] = {0};
    uint8_t mask[64] = {0};
    hid_t sp = H5Screate_simple(1, &n_tok, NULL);
    hid_t d = H5Dcreate2(f, "tokens", tok_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, toks);
    H5Dclose(d);
    d = H5Dcreate2(f, "loss_mask", H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, mask);
    H5Dclose(d);
    H5Sclose(sp);
    sp = H5Screate_simple(1, &n_off, NULL);
    d = H5Dcreate2(f, "offsets", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, offsets);
    H5Dclose(d);
    H5Sclose(sp);
    hsize_t nd = n_off - 1;
    int64_t docs[64] = {0};
    sp = H5Screate_simple(1, &nd, NULL);
    d = H5Dcreate2(f, "doc_ids", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, docs);
    H5Dclose(d);
    H5Sclose(sp);
    if (with_meta) {
        hid_t g = H5Gcreate2(f, "meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hid_t s = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(g, "format_version", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
        int64_t v = EI_DATASET_FORMAT_VERSION;
        H5Awrite(a, H5T_NATIVE_INT64, &v);
        H5Aclose(a);
        H5Sclose(s);
        H5Gclose(g);
    }
    H5Fclose(f);
}

static void expect_open_error(const char *p, const char *needle) {
    ei_dataset *d = ei_dataset_open(p);
    if (d) fail_msg("%s opened", p);
    if (!strstr(ei_error_get(), needle)) fail_msg("error '%s' lacks '%s'", ei_error_get(), needle);
    if (!strstr(ei_error_get(), p)) fail_msg("error '%s' does not name the file", ei_error_get());
}

static void test_bad_structure(void **state) {
    (void)state;
    char p[600];
    snprintf(p, sizeof p, "%s.bad.h5", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const int64_t good[3] = {0, 4, 10};
    write_raw(p, good, 3, H5T_STD_I32LE, 10, 1);
    ei_dataset *d = ei_dataset_open(p);
    assert_non_null(d);
    assert_int_equal(ei_dataset_n_samples(d), 2);
    ei_dataset_close(d);
    const int64_t decreasing[3] = {0, 6, 4};
    write_raw(p, decreasing, 3, H5T_STD_I32LE, 4, 1);
    expect_open_error(p, "decreases");
    const int64_t beyond[3] = {0, 4, 12};
    write_raw(p, beyond, 3, H5T_STD_I32LE, 10, 1);
    expect_open_error(p, "offsets");
    const int64_t nonzero[3] = {1, 4, 10};
    write_raw(p, nonzero, 3, H5T_STD_I32LE, 10, 1);
    expect_open_error(p, "start at 0");
    write_raw(p, good, 3, H5T_IEEE_F32LE, 10, 1);
    expect_open_error(p, "/tokens must be");
    write_raw(p, good, 3, H5T_STD_I64LE, 10, 1);
    expect_open_error(p, "/tokens must be");
    write_raw(p, good, 3, H5T_STD_I32LE, 10, 0);
    expect_open_error(p, "/meta");
    unlink(p);
    expect_open_error(p, "cannot open");
}

static void test_damaged_bytes(void **state) {
    (void)state;
    /* A small file made by the writer, then damaged copies of it. */
    char src[600], p[600];
    snprintf(src, sizeof src, "%s.small.h5", path);
    snprintf(p, sizeof p, "%s.dmg.h5", path);
    ei_dataset_writer *w = ei_dataset_writer_open(src);
    for (int i = 0; i < 12; i++) ei_dataset_writer_add(w, ref_tok[i], ref_mask[i], ref_len[i] < 300 ? ref_len[i] : 300, i);
    ei_dataset_writer_attr_i64(w, "vocab_size", VOCAB);
    assert_int_equal(ei_dataset_writer_close(w), 0);
    FILE *fp = fopen(src, "rb");
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)size);
    assert_int_equal(fread(buf, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    int detected = 0, trials = 0;
    for (int k = 0; k < 2; k++) {
        for (long at = 0; at < size; at += k == 0 ? size / 23 + 1 : size / 61 + 1) {
            fp = fopen(p, "wb");
            if (k == 0) {
                fwrite(buf, 1, (size_t)at, fp); /* truncated at `at` */
            } else {
                buf[at] ^= 0xA5;
                fwrite(buf, 1, (size_t)size, fp);
                buf[at] ^= 0xA5;
            }
            fclose(fp);
            trials++;
            ei_dataset *d = ei_dataset_open(p);
            if (!d) {
                detected++;
                continue;
            }
            /* Opened: every read either fails cleanly or returns in-range data. */
            int failed = 0;
            for (int64_t i = 0; i < ei_dataset_n_samples(d); i++) {
                int32_t *t;
                uint8_t *m;
                int64_t n = ei_dataset_read_alloc(d, i, &t, &m);
                if (n < 0) {
                    failed = 1;
                    continue;
                }
                for (int64_t j = 0; j < n; j++) assert_true(t[j] >= 0 && t[j] < VOCAB && m[j] <= 1);
                free(t);
                free(m);
            }
            detected += failed;
            ei_dataset_close(d);
        }
    }
    /* Truncation always, flips mostly (bytes in unused space or the free-space map can be harmless). */
    assert_true(detected >= trials / 2);
    free(buf);
    unlink(src);
    unlink(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_iterator_rules),
        cmocka_unit_test(test_iterator_resume),
        cmocka_unit_test(test_iterator_rng),
        cmocka_unit_test(test_hdf5_error_state_restored),
        cmocka_unit_test(test_bad_structure),
        cmocka_unit_test(test_damaged_bytes),
    };
    if (getenv("EI_TEST_FILTER")) cmocka_set_test_filter(getenv("EI_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
