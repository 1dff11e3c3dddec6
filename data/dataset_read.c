/* HDF5 dataset reader: validation on open, per-sample reads, and the epoch/rank iterator. */
#include "data/dataset.h"

#include "core/ei_error.h"
#include "core/ei_rng.h"
#include "data/h5file.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name, *value;
} str_attr;

struct ei_dataset {
    char *path;
    hid_t file, d_tokens, d_mask;
    int64_t n_samples, n_tokens, max_len;
    int64_t *offsets, *doc_ids;
    int vocab_size;
    int vocab_limit; /* ids must be below this (the smaller of vocab_size and the consumer's model), 0: none */
    str_attr *strs;
    int n_strs;
};

/* HDF5 prints its error stack to stderr by default; our messages say what is wrong instead. Every
 * public function below that calls HDF5 silences it for its own duration and then restores the
 * caller's handler, so the process's HDF5 error reporting is never changed behind its back. */
typedef struct {
    H5E_auto2_t fn;
    void *data;
    int saved; /* 0: the handler could not be read, so it is left alone */
} h5_quiet;

static void quiet_on(h5_quiet *q) {
    q->saved = H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data) >= 0;
    if (q->saved) H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}
static void quiet_off(const h5_quiet *q) {
    if (q->saved) H5Eset_auto2(H5E_DEFAULT, q->fn, q->data);
}

static void close_impl(ei_dataset *d) {
    if (!d) return;
    if (d->d_tokens >= 0) H5Dclose(d->d_tokens);
    if (d->d_mask >= 0) H5Dclose(d->d_mask);
    if (d->file >= 0) H5Fclose(d->file);
    for (int i = 0; i < d->n_strs; i++) {
        free(d->strs[i].name);
        free(d->strs[i].value);
    }
    free(d->strs);
    free(d->offsets);
    free(d->doc_ids);
    free(d->path);
    free(d);
}

void ei_dataset_close(ei_dataset *d) {
    h5_quiet q;
    quiet_on(&q);
    close_impl(d);
    quiet_off(&q);
}

/* Opens a rank-1 integer dataset and checks its element class, size and signedness. Returns the
 * dataset id and its length, or -1 with ei_error set. */
static hid_t open_checked(ei_dataset *d, const char *name, size_t elem, H5T_sign_t sign, int64_t *len) {
    if (H5Lexists(d->file, name, H5P_DEFAULT) <= 0) {
        ei_error_set("%s: missing dataset /%s (not an ei dataset?)", d->path, name);
        return -1;
    }
    hid_t ds = H5Dopen2(d->file, name, H5P_DEFAULT);
    if (ds < 0) {
        ei_error_set("%s: cannot open /%s (corrupt file?)", d->path, name);
        return -1;
    }
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    int ok = t >= 0 && sp >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == elem &&
             H5Tget_sign(t) == sign && H5Sget_simple_extent_ndims(sp) == 1;
    hsize_t dims = 0;
    if (ok) ok = H5Sget_simple_extent_dims(sp, &dims, NULL) == 1;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (!ok) {
        ei_error_set("%s: /%s must be a 1-D %s%zu-bit integer dataset", d->path, name,
                     sign == H5T_SGN_NONE ? "unsigned " : "", elem * 8);
        H5Dclose(ds);
        return -1;
    }
    if (ei_h5_check_stored(ds, d->path, name, (unsigned long long)dims, elem) != 0) {
        H5Dclose(ds);
        return -1;
    }
    *len = (int64_t)dims;
    return ds;
}

static int read_all_i64(ei_dataset *d, const char *name, int64_t expect, int64_t **out) {
    int64_t len;
    hid_t ds = open_checked(d, name, 8, H5T_SGN_2, &len);
    if (ds < 0) return -1;
    if (len != expect) {
        H5Dclose(ds);
        return ei_error_set("%s: /%s has %lld elements, expected %lld", d->path, name, (long long)len,
                            (long long)expect);
    }
    int64_t *buf = malloc(sizeof(int64_t) * (size_t)(len ? len : 1));
    if (!buf) {
        H5Dclose(ds);
        return ei_error_set("%s: out of memory reading /%s", d->path, name);
    }
    herr_t st = len ? H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : 0;
    H5Dclose(ds);
    if (st < 0) {
        free(buf);
        return ei_error_set("%s: reading /%s failed (corrupt file?)", d->path, name);
    }
    *out = buf;
    return 0;
}

/* One element: H5Aread writes the whole attribute, and the buffers below hold one value. */
static int attr_is_single(hid_t a) {
    hid_t sp = H5Aget_space(a);
    int ok = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1;
    if (sp >= 0) H5Sclose(sp);
    return ok;
}

static herr_t collect_attr(hid_t loc, const char *name, const H5A_info_t *info, void *op) {
    (void)info;
    ei_dataset *d = op;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    herr_t rc = 0;
    if (H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t) && !attr_is_single(a)) {
        rc = -1; /* an array of strings is no attribute our writer makes */
    } else if (H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t)) {
        size_t sz = H5Tget_size(t);
        char *v = calloc(1, sz + 1);
        hid_t mt = H5Tcopy(t);
        str_attr *n = realloc(d->strs, sizeof *n * (size_t)(d->n_strs + 1));
        if (n) d->strs = n;
        if (!v || !n || H5Aread(a, mt, v) < 0) {
            free(v);
            rc = -1;
        } else {
            d->strs[d->n_strs].name = strdup(name);
            d->strs[d->n_strs].value = v;
            d->n_strs++;
        }
        H5Tclose(mt);
    }
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

static int meta_i64_impl(const ei_dataset *d, const char *name, int64_t *out) {
    if (H5Lexists(d->file, "meta", H5P_DEFAULT) <= 0 || H5Aexists_by_name(d->file, "meta", name, H5P_DEFAULT) <= 0)
        return ei_error_set("%s: /meta has no attribute %s", d->path, name);
    hid_t a = H5Aopen_by_name(d->file, "meta", name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return ei_error_set("%s: cannot open /meta attribute %s", d->path, name);
    hid_t t = H5Aget_type(a);
    int ok = t >= 0 && H5Tget_class(t) == H5T_INTEGER && attr_is_single(a);
    herr_t st = ok ? H5Aread(a, H5T_NATIVE_INT64, out) : -1;
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    if (st < 0) return ei_error_set("%s: /meta attribute %s is not a readable integer", d->path, name);
    return 0;
}

int ei_dataset_meta_i64(const ei_dataset *d, const char *name, int64_t *out) {
    h5_quiet q;
    quiet_on(&q);
    int rc = meta_i64_impl(d, name, out);
    quiet_off(&q);
    return rc;
}

const char *ei_dataset_meta_str(const ei_dataset *d, const char *name) {
    for (int i = 0; i < d->n_strs; i++)
        if (strcmp(d->strs[i].name, name) == 0) return d->strs[i].value;
    return NULL;
}

/* The hash at the end of an identity "kind:name:hash" (the file's bytes), or "" */
static const char *identity_hash(const char *id) {
    const char *c = id ? strrchr(id, ':') : NULL;
    return c ? c + 1 : "";
}

int ei_dataset_check_tokenizer(const ei_dataset *d, const ei_tokenizer *t, const char *tok_name) {
    const char *rec_id = ei_dataset_meta_str(d, "tokenizer");
    const char *rec_hash = ei_dataset_meta_str(d, "tokenizer_vocab_hash");
    const char *id = ei_tokenizer_identity(t);
    if (rec_hash && *rec_hash) {
        char h[24];
        snprintf(h, sizeof h, "%016llx", (unsigned long long)ei_tokenizer_vocab_hash(t));
        if (strcmp(h, rec_hash) == 0) return 0;
        return ei_error_set("%s: tokenised with another tokenizer than the model's: the dataset's is %s (vocabulary "
                            "hash %s), the model's %s is %s (vocabulary hash %s)",
                            d->path, rec_id ? rec_id : "?", rec_hash, tok_name, id, h);
    }
    if (!rec_id || !*rec_id) return 1;
    /* Written before vocabulary hashes: only the same tokenizer file can be recognised. */
    if (*identity_hash(rec_id) && strcmp(identity_hash(rec_id), identity_hash(id)) == 0) return 0;
    return ei_error_set("%s: tokenised with %s, which is not the model's tokenizer %s (%s); the dataset predates "
                        "vocabulary hashes, so only the same file is recognised: re-run ei prepare to record one",
                        d->path, rec_id, tok_name, id);
}

static ei_dataset *open_impl(const char *path) {
    ei_dataset *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) {
        free(d);
        ei_error_set("%s: out of memory", path);
        return NULL;
    }
    d->file = d->d_tokens = d->d_mask = -1;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        ei_error_set("%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    fclose(fp);
    /* The seal first: a damaged or truncated file never reaches libhdf5. */
    if (ei_h5_check_seal(path, EI_SEAL_KIND_DATASET, "dataset") != 0) goto fail;
    if (H5Fis_hdf5(path) <= 0) {
        ei_error_set("%s: not an HDF5 file (or truncated/corrupt)", path);
        goto fail;
    }
    d->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (d->file < 0) {
        ei_error_set("%s: cannot open as HDF5 (truncated or corrupt)", path);
        goto fail;
    }
    int64_t n_mask, n_off;
    if ((d->d_tokens = open_checked(d, "tokens", 4, H5T_SGN_2, &d->n_tokens)) < 0) goto fail;
    if ((d->d_mask = open_checked(d, "loss_mask", 1, H5T_SGN_NONE, &n_mask)) < 0) goto fail;
    if (n_mask != d->n_tokens) {
        ei_error_set("%s: /loss_mask has %lld elements but /tokens has %lld", path, (long long)n_mask,
                     (long long)d->n_tokens);
        goto fail;
    }
    hid_t od = open_checked(d, "offsets", 8, H5T_SGN_2, &n_off);
    if (od < 0) goto fail;
    H5Dclose(od);
    if (n_off < 1) {
        ei_error_set("%s: /offsets is empty (needs n_samples + 1 elements)", path);
        goto fail;
    }
    d->n_samples = n_off - 1;
    if (read_all_i64(d, "offsets", n_off, &d->offsets) != 0) goto fail;
    if (read_all_i64(d, "doc_ids", d->n_samples, &d->doc_ids) != 0) goto fail;
    if (d->offsets[0] != 0 || d->offsets[d->n_samples] != d->n_tokens) {
        ei_error_set("%s: /offsets must start at 0 and end at the token count %lld (found %lld .. %lld)", path,
                     (long long)d->n_tokens, (long long)d->offsets[0], (long long)d->offsets[d->n_samples]);
        goto fail;
    }
    for (int64_t i = 0; i < d->n_samples; i++) {
        int64_t len = d->offsets[i + 1] - d->offsets[i];
        if (len < 0) {
            ei_error_set("%s: /offsets decreases at sample %lld", path, (long long)i);
            goto fail;
        }
        if (len > d->max_len) d->max_len = len;
    }
    if (H5Lexists(d->file, "meta", H5P_DEFAULT) <= 0) {
        ei_error_set("%s: missing group /meta", path);
        goto fail;
    }
    hsize_t idx = 0;
    if (H5Aiterate_by_name(d->file, "meta", H5_INDEX_NAME, H5_ITER_NATIVE, &idx, collect_attr, d, H5P_DEFAULT) < 0) {
        ei_error_set("%s: cannot read the attributes of /meta (corrupt file?)", path);
        goto fail;
    }
    int64_t v;
    if (meta_i64_impl(d, "format_version", &v) != 0) goto fail;
    if (v != EI_DATASET_FORMAT_VERSION) {
        ei_error_set("%s: dataset format version %lld, this build reads version %d", path, (long long)v,
                     EI_DATASET_FORMAT_VERSION);
        goto fail;
    }
    if (meta_i64_impl(d, "vocab_size", &v) == 0) {
        if (v < 0 || v > (1 << 30)) {
            ei_error_set("%s: /meta vocab_size %lld out of range", path, (long long)v);
            goto fail;
        }
        d->vocab_size = (int)v;
        d->vocab_limit = (int)v;
    }
    ei_error_clear();
    return d;
fail:
    close_impl(d);
    return NULL;
}

ei_dataset *ei_dataset_open(const char *path) {
    ei_h5_init();
    h5_quiet q;
    quiet_on(&q);
    ei_dataset *d = open_impl(path);
    quiet_off(&q);
    return d;
}

int64_t ei_dataset_n_samples(const ei_dataset *d) { return d->n_samples; }
int64_t ei_dataset_n_tokens(const ei_dataset *d) { return d->n_tokens; }
int64_t ei_dataset_max_len(const ei_dataset *d) { return d->max_len; }
int ei_dataset_vocab_size(const ei_dataset *d) { return d->vocab_size; }

void ei_dataset_limit_vocab(ei_dataset *d, int vocab) {
    if (vocab > 0 && (d->vocab_limit == 0 || vocab < d->vocab_limit)) d->vocab_limit = vocab;
}
const char *ei_dataset_path(const ei_dataset *d) { return d->path; }

int64_t ei_dataset_sample_len(const ei_dataset *d, int64_t i) {
    return i < 0 || i >= d->n_samples ? -1 : d->offsets[i + 1] - d->offsets[i];
}

int64_t ei_dataset_doc_id(const ei_dataset *d, int64_t i) {
    return i < 0 || i >= d->n_samples ? -1 : d->doc_ids[i];
}

static int read_range(hid_t ds, hid_t memtype, int64_t start, int64_t n, void *buf) {
    if (n == 0) return 0;
    hsize_t st = (hsize_t)start, cnt = (hsize_t)n;
    hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(1, &cnt, NULL);
    herr_t rc = -1;
    if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, &st, NULL, &cnt, NULL) >= 0)
        rc = H5Dread(ds, memtype, ms, fs, H5P_DEFAULT, buf);
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc < 0 ? -1 : 0;
}

static int64_t read_impl(ei_dataset *d, int64_t i, int32_t *tokens, uint8_t *mask) {
    if (i < 0 || i >= d->n_samples)
        return ei_error_set("%s: sample %lld out of range (%lld samples)", d->path, (long long)i,
                            (long long)d->n_samples);
    int64_t start = d->offsets[i], n = d->offsets[i + 1] - start;
    if (read_range(d->d_tokens, H5T_NATIVE_INT32, start, n, tokens) != 0)
        return ei_error_set("%s: reading tokens of sample %lld failed (corrupt file?)", d->path, (long long)i);
    for (int64_t k = 0; k < n; k++)
        if (tokens[k] < 0 || (d->vocab_limit > 0 && tokens[k] >= d->vocab_limit))
            return ei_error_set("%s: sample %lld: token %lld has id %d, outside the vocabulary [0, %d)%s", d->path,
                                (long long)i, (long long)k, tokens[k], d->vocab_limit,
                                d->vocab_limit < d->vocab_size || !d->vocab_size ? " of the model" : "");
    if (mask) {
        if (read_range(d->d_mask, H5T_NATIVE_UINT8, start, n, mask) != 0)
            return ei_error_set("%s: reading the loss mask of sample %lld failed (corrupt file?)", d->path,
                                (long long)i);
        for (int64_t k = 0; k < n; k++)
            if (mask[k] > 1)
                return ei_error_set("%s: sample %lld: loss mask value %u is not 0 or 1", d->path, (long long)i,
                                    mask[k]);
    }
    return n;
}

int64_t ei_dataset_read(ei_dataset *d, int64_t i, int32_t *tokens, uint8_t *mask) {
    h5_quiet q;
    quiet_on(&q);
    int64_t n = read_impl(d, i, tokens, mask);
    quiet_off(&q);
    return n;
}

int64_t ei_dataset_read_alloc(ei_dataset *d, int64_t i, int32_t **tokens, uint8_t **mask) {
    *tokens = NULL;
    if (mask) *mask = NULL;
    int64_t n = ei_dataset_sample_len(d, i);
    if (n < 0)
        return ei_error_set("%s: sample %lld out of range (%lld samples)", d->path, (long long)i,
                            (long long)d->n_samples);
    int32_t *t = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    uint8_t *m = mask ? malloc((size_t)(n ? n : 1)) : NULL;
    if (!t || (mask && !m)) {
        free(t);
        free(m);
        return ei_error_set("%s: out of memory for sample %lld", d->path, (long long)i);
    }
    if (ei_dataset_read(d, i, t, m) < 0) {
        free(t);
        free(m);
        return -1;
    }
    *tokens = t;
    if (mask) *mask = m;
    return n;
}

/* ------------------------------------------------------------------ iterator */

/* Epoch orders are drawn one after another from a single core/ei_rng stream: the generator state
 * at the start of an epoch is then all a checkpoint needs to redraw that epoch's order, and the
 * state the trainer saves is the one the loader really draws from. */
static void draw_order(ei_rng *r, int64_t n, int shuffle, int64_t *perm) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    if (shuffle) ei_rng_shuffle_i64(r, perm, (size_t)n);
}

void ei_dataset_epoch_order(int64_t n, uint64_t seed, int64_t epoch, int shuffle, int64_t *perm) {
    ei_rng r;
    ei_rng_seed(&r, seed);
    /* Without shuffling nothing is drawn and every epoch is the identity. */
    int64_t e = shuffle ? 0 : epoch;
    do draw_order(&r, n, shuffle, perm);
    while (e++ < epoch);
}

struct ei_dataset_iter {
    ei_dataset *d;
    ei_dataset_iter_opts o;
    int64_t n_batches, epoch, p;
    int64_t *perm;    /* the order of epoch `epoch` */
    ei_rng rng_epoch; /* the state perm was drawn from */
    ei_rng rng;       /* the state after it, which the next epoch's order is drawn from */
};

int64_t ei_dataset_rank_share(int64_t b, int rank, int world) {
    return b / world + (rank < b % world ? 1 : 0);
}

ei_dataset_iter *ei_dataset_iter_resume(ei_dataset *d, const ei_dataset_iter_opts *o, ei_dataset_pos start,
                                        const ei_rng *rng) {
    if (o->batch_size < 1 || o->world < 1 || o->rank < 0 || o->rank >= o->world) {
        ei_error_set("%s: invalid iterator options (batch %lld, rank %d of %d)", d->path, (long long)o->batch_size,
                     o->rank, o->world);
        return NULL;
    }
    if (o->batch_size < o->world) {
        ei_error_set("%s: global batch size %lld is smaller than the number of ranks %d", d->path,
                     (long long)o->batch_size, o->world);
        return NULL;
    }
    if (d->n_samples < o->batch_size) {
        ei_error_set("%s: %lld samples, fewer than one global batch of %lld", d->path, (long long)d->n_samples,
                     (long long)o->batch_size);
        return NULL;
    }
    int64_t nb = d->n_samples / o->batch_size;
    if (start.epoch < 0 || start.index < 0 || start.index > nb * o->batch_size) {
        ei_error_set("%s: start position (epoch %lld, index %lld) out of range (%lld positions per epoch)", d->path,
                     (long long)start.epoch, (long long)start.index, (long long)(nb * o->batch_size));
        return NULL;
    }
    if (rng && !(rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3])) {
        ei_error_set("%s: the shuffling generator's saved state is all zero (not a valid state)", d->path);
        return NULL;
    }
    ei_dataset_iter *it = calloc(1, sizeof *it);
    if (it) it->perm = malloc(sizeof(int64_t) * (size_t)d->n_samples);
    if (!it || !it->perm) {
        free(it);
        ei_error_set("%s: out of memory for the sample order", d->path);
        return NULL;
    }
    it->d = d;
    it->o = *o;
    it->n_batches = nb;
    it->epoch = start.epoch;
    it->p = start.index;
    if (rng) {
        it->rng = *rng;
    } else {
        /* Replay the orders of the epochs before start; O(start.epoch x N), which is why the
         * trainer resumes from the saved state instead. */
        ei_rng_seed(&it->rng, o->seed);
        for (int64_t e = 0; o->shuffle && e < start.epoch; e++) draw_order(&it->rng, d->n_samples, 1, it->perm);
    }
    it->rng_epoch = it->rng;
    draw_order(&it->rng, d->n_samples, o->shuffle, it->perm);
    return it;
}

ei_dataset_iter *ei_dataset_iter_new(ei_dataset *d, const ei_dataset_iter_opts *o, ei_dataset_pos start) {
    return ei_dataset_iter_resume(d, o, start, NULL);
}

void ei_dataset_iter_free(ei_dataset_iter *it) {
    if (!it) return;
    free(it->perm);
    free(it);
}

int64_t ei_dataset_iter_batches_per_epoch(const ei_dataset_iter *it) { return it->n_batches; }

static int owns(const ei_dataset_iter *it, int64_t p) {
    return (p % it->o.batch_size) % it->o.world == it->o.rank;
}

int64_t ei_dataset_iter_next(ei_dataset_iter *it, ei_dataset_pos *pos_out) {
    int64_t end = it->n_batches * it->o.batch_size;
    for (;;) {
        if (it->p >= end) {
            it->epoch++;
            it->p = 0;
            it->rng_epoch = it->rng;
            draw_order(&it->rng, it->d->n_samples, it->o.shuffle, it->perm);
        }
        if (owns(it, it->p)) break;
        it->p++;
    }
    if (pos_out) {
        pos_out->epoch = it->epoch;
        pos_out->index = it->p;
    }
    return it->perm[it->p++];
}

ei_dataset_pos ei_dataset_iter_pos(const ei_dataset_iter *it) {
    ei_dataset_pos r = {it->epoch, it->p};
    int64_t b = it->o.batch_size;
    /* Past this rank's last position in the current batch: report the batch end, the same value
     * on every rank. */
    if (r.index % b != 0) {
        int64_t batch_start = r.index - r.index % b;
        int64_t q = r.index;
        while (q < batch_start + b && !owns(it, q)) q++;
        if (q == batch_start + b) r.index = q;
    }
    if (r.index >= it->n_batches * b) {
        r.epoch++;
        r.index = 0;
    }
    return r;
}

void ei_dataset_iter_rng(const ei_dataset_iter *it, ei_rng *out) {
    /* The reported position is in the current epoch or, at its very end, at the start of the next,
     * whose order has not been drawn yet. */
    *out = ei_dataset_iter_pos(it).epoch == it->epoch ? it->rng_epoch : it->rng;
}
