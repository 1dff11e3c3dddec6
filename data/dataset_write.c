/* HDF5 dataset writer: streams samples into extendible, chunked, compressed datasets. The file
 * reserves a user block for the seal (data/h5file.h), written once libhdf5 has closed the file. */
#include "data/dataset.h"

#include "core/ei_error.h"
#include "core/ei_io.h"
#include "core/ei_seal.h"
#include "data/h5file.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 64 Ki elements per chunk: large enough for deflate to work well, small enough that reading one
 * short sample decompresses little. */
#define CHUNK_ELEMS 65536
#define FLUSH_ELEMS (1 << 20)

typedef struct {
    char *name;
    int kind; /* 0 string, 1 int64, 2 double */
    char *s;
    int64_t i;
    double f;
} meta_attr;

struct ei_dataset_writer {
    char *path, *tmp;
    hid_t file, d_tokens, d_mask;
    int32_t *tok_buf;
    uint8_t *mask_buf;
    size_t n_buf;
    int64_t n_written; /* tokens already in the file */
    int64_t *offsets;  /* n_samples + 1 */
    int64_t *doc_ids;
    int64_t n_samples, cap;
    meta_attr *attrs;
    int n_attrs;
};

/* The library's own error printing would interleave with ours; every failure is reported through
 * ei_error_set instead. Each public function that calls HDF5 silences it only for its own duration
 * and restores the caller's handler, so no global HDF5 state is left changed. */
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

static hid_t create_extendible(hid_t file, const char *name, hid_t type) {
    hsize_t dims = 0, maxdims = H5S_UNLIMITED, chunk = CHUNK_ELEMS;
    hid_t space = H5Screate_simple(1, &dims, &maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = -1;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 1, &chunk) >= 0 && H5Pset_shuffle(dcpl) >= 0 &&
        H5Pset_deflate(dcpl, 4) >= 0 && H5Pset_fletcher32(dcpl) >= 0)
        d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return d;
}

static int write_fixed(hid_t file, const char *name, hid_t type, const void *data, hsize_t n) {
    hsize_t chunk = n < CHUNK_ELEMS ? (n ? n : 1) : CHUNK_ELEMS;
    hsize_t maxdims = n ? n : 1;
    hid_t space = H5Screate_simple(1, &n, &maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = -1;
    herr_t st = -1;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 1, &chunk) >= 0 && H5Pset_deflate(dcpl, 4) >= 0 &&
        H5Pset_fletcher32(dcpl) >= 0)
        d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d >= 0) st = n ? H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : 0;
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return st < 0 ? -1 : 0;
}

static void writer_free(ei_dataset_writer *w) {
    if (!w) return;
    if (w->d_tokens >= 0 && H5Dclose(w->d_tokens) < 0) ei_h5_mark_broken();
    if (w->d_mask >= 0 && H5Dclose(w->d_mask) < 0) ei_h5_mark_broken();
    if (w->file >= 0 && H5Fclose(w->file) < 0) ei_h5_mark_broken();
    for (int i = 0; i < w->n_attrs; i++) {
        free(w->attrs[i].name);
        free(w->attrs[i].s);
    }
    free(w->attrs);
    free(w->tok_buf);
    free(w->mask_buf);
    free(w->offsets);
    free(w->doc_ids);
    free(w->path);
    free(w->tmp);
    free(w);
}

void ei_dataset_writer_abort(ei_dataset_writer *w) {
    if (!w) return;
    h5_quiet q;
    quiet_on(&q);
    char *tmp = w->tmp;
    w->tmp = NULL;
    writer_free(w);
    ei_atomic_discard(tmp);
    free(tmp);
    quiet_off(&q);
}

static ei_dataset_writer *open_impl(const char *path) {
    ei_dataset_writer *w = calloc(1, sizeof *w);
    if (!w) {
        ei_error_set("%s: out of memory", path);
        return NULL;
    }
    w->file = w->d_tokens = w->d_mask = -1;
    w->path = strdup(path);
    w->tmp = ei_atomic_tmpname(path);
    w->tok_buf = malloc(sizeof(int32_t) * FLUSH_ELEMS);
    w->mask_buf = malloc(FLUSH_ELEMS);
    w->cap = 1024;
    w->offsets = calloc((size_t)w->cap + 1, sizeof(int64_t));
    w->doc_ids = calloc((size_t)w->cap, sizeof(int64_t));
    if (!w->path || !w->tmp || !w->tok_buf || !w->mask_buf || !w->offsets || !w->doc_ids) {
        ei_error_set("%s: out of memory", path);
        writer_free(w);
        return NULL;
    }
    /* Format 1.8+ object headers carry checksums, so corrupt metadata is detected on read. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = ei_h5_sealed_fcpl();
    if (fapl >= 0 && fcpl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) >= 0)
        w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (w->file < 0) {
        ei_error_set("%s: cannot create HDF5 file", w->tmp);
        ei_dataset_writer_abort(w);
        return NULL;
    }
    w->d_tokens = create_extendible(w->file, "tokens", H5T_STD_I32LE);
    w->d_mask = create_extendible(w->file, "loss_mask", H5T_STD_U8LE);
    if (w->d_tokens < 0 || w->d_mask < 0) {
        ei_error_set("%s: cannot create the token datasets", w->tmp);
        ei_dataset_writer_abort(w);
        return NULL;
    }
    return w;
}

ei_dataset_writer *ei_dataset_writer_open(const char *path) {
    ei_h5_init();
    h5_quiet q;
    quiet_on(&q);
    ei_dataset_writer *w = open_impl(path);
    quiet_off(&q);
    return w;
}

static int append(hid_t d, hid_t memtype, const void *data, int64_t at, size_t n) {
    hsize_t newsize = (hsize_t)at + n, start = (hsize_t)at, count = n;
    if (H5Dset_extent(d, &newsize) < 0) return -1;
    hid_t fs = H5Dget_space(d);
    hid_t ms = H5Screate_simple(1, &count, NULL);
    herr_t st = -1;
    if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL) >= 0)
        st = H5Dwrite(d, memtype, ms, fs, H5P_DEFAULT, data);
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return st < 0 ? -1 : 0;
}

static int flush(ei_dataset_writer *w) {
    if (!w->n_buf) return 0;
    if (append(w->d_tokens, H5T_NATIVE_INT32, w->tok_buf, w->n_written, w->n_buf) != 0 ||
        append(w->d_mask, H5T_NATIVE_UINT8, w->mask_buf, w->n_written, w->n_buf) != 0)
        return ei_error_set("%s: writing tokens failed (disk full?)", w->tmp);
    w->n_written += (int64_t)w->n_buf;
    w->n_buf = 0;
    return 0;
}

static int add_impl(ei_dataset_writer *w, const int32_t *tokens, const uint8_t *mask, size_t n, int64_t doc_id) {
    if (n == 0) return ei_error_set("%s: empty sample", w->path);
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0) return ei_error_set("%s: negative token id %d", w->path, tokens[i]);
        if (mask[i] > 1) return ei_error_set("%s: loss mask value %u is not 0 or 1", w->path, mask[i]);
    }
    if (w->n_samples == w->cap) {
        int64_t cap = w->cap * 2;
        int64_t *o = realloc(w->offsets, sizeof(int64_t) * (size_t)(cap + 1));
        if (!o) return ei_error_set("%s: out of memory", w->path);
        w->offsets = o;
        int64_t *di = realloc(w->doc_ids, sizeof(int64_t) * (size_t)cap);
        if (!di) return ei_error_set("%s: out of memory", w->path);
        w->doc_ids = di;
        w->cap = cap;
    }
    size_t done = 0;
    while (done < n) {
        size_t k = FLUSH_ELEMS - w->n_buf;
        if (k > n - done) k = n - done;
        memcpy(w->tok_buf + w->n_buf, tokens + done, k * sizeof(int32_t));
        memcpy(w->mask_buf + w->n_buf, mask + done, k);
        w->n_buf += k;
        done += k;
        if (w->n_buf == FLUSH_ELEMS && flush(w) != 0) return -1;
    }
    w->doc_ids[w->n_samples] = doc_id;
    w->offsets[w->n_samples + 1] = w->offsets[w->n_samples] + (int64_t)n;
    w->n_samples++;
    return 0;
}

int ei_dataset_writer_add(ei_dataset_writer *w, const int32_t *tokens, const uint8_t *mask, size_t n,
                          int64_t doc_id) {
    h5_quiet q;
    quiet_on(&q);
    int rc = add_impl(w, tokens, mask, n, doc_id);
    quiet_off(&q);
    return rc;
}

int64_t ei_dataset_writer_n_samples(const ei_dataset_writer *w) { return w->n_samples; }
int64_t ei_dataset_writer_n_tokens(const ei_dataset_writer *w) { return w->offsets[w->n_samples]; }

static meta_attr *attr_slot(ei_dataset_writer *w, const char *name) {
    for (int i = 0; i < w->n_attrs; i++)
        if (strcmp(w->attrs[i].name, name) == 0) {
            free(w->attrs[i].s);
            w->attrs[i].s = NULL;
            return &w->attrs[i];
        }
    meta_attr *a = realloc(w->attrs, sizeof *a * (size_t)(w->n_attrs + 1));
    if (!a) return NULL;
    w->attrs = a;
    meta_attr *s = &a[w->n_attrs];
    memset(s, 0, sizeof *s);
    s->name = strdup(name);
    if (!s->name) return NULL;
    w->n_attrs++;
    return s;
}

int ei_dataset_writer_attr_str(ei_dataset_writer *w, const char *name, const char *value) {
    meta_attr *a = attr_slot(w, name);
    if (!a || !(a->s = strdup(value ? value : ""))) return ei_error_set("%s: out of memory", w->path);
    a->kind = 0;
    return 0;
}

int ei_dataset_writer_attr_i64(ei_dataset_writer *w, const char *name, int64_t value) {
    meta_attr *a = attr_slot(w, name);
    if (!a) return ei_error_set("%s: out of memory", w->path);
    a->kind = 1;
    a->i = value;
    return 0;
}

int ei_dataset_writer_attr_f64(ei_dataset_writer *w, const char *name, double value) {
    meta_attr *a = attr_slot(w, name);
    if (!a) return ei_error_set("%s: out of memory", w->path);
    a->kind = 2;
    a->f = value;
    return 0;
}

static int write_attr(hid_t g, const meta_attr *a) {
    hid_t space = H5Screate(H5S_SCALAR), type = -1, at = -1;
    herr_t st = -1;
    if (a->kind == 0) {
        type = H5Tcopy(H5T_C_S1);
        size_t len = strlen(a->s);
        H5Tset_size(type, len ? len : 1);
        H5Tset_strpad(type, H5T_STR_NULLTERM);
        H5Tset_cset(type, H5T_CSET_UTF8);
        at = H5Acreate2(g, a->name, type, space, H5P_DEFAULT, H5P_DEFAULT);
        if (at >= 0) st = H5Awrite(at, type, len ? a->s : "");
    } else if (a->kind == 1) {
        at = H5Acreate2(g, a->name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
        if (at >= 0) st = H5Awrite(at, H5T_NATIVE_INT64, &a->i);
    } else {
        at = H5Acreate2(g, a->name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
        if (at >= 0) st = H5Awrite(at, H5T_NATIVE_DOUBLE, &a->f);
    }
    if (at >= 0) H5Aclose(at);
    if (type >= 0) H5Tclose(type);
    H5Sclose(space);
    return st < 0 ? -1 : 0;
}

static int close_impl(ei_dataset_writer *w) {
    int rc = flush(w);
    if (rc == 0 && (ei_dataset_writer_attr_i64(w, "format_version", EI_DATASET_FORMAT_VERSION) != 0 ||
                    ei_dataset_writer_attr_i64(w, "n_samples", w->n_samples) != 0 ||
                    ei_dataset_writer_attr_i64(w, "n_tokens", w->offsets[w->n_samples]) != 0))
        rc = -1;
    if (rc == 0 &&
        (write_fixed(w->file, "offsets", H5T_STD_I64LE, w->offsets, (hsize_t)w->n_samples + 1) != 0 ||
         write_fixed(w->file, "doc_ids", H5T_STD_I64LE, w->doc_ids, (hsize_t)w->n_samples) != 0))
        rc = ei_error_set("%s: writing offsets failed", w->tmp);
    if (rc == 0) {
        hid_t g = H5Gcreate2(w->file, "meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) rc = ei_error_set("%s: cannot create /meta", w->tmp);
        for (int i = 0; rc == 0 && i < w->n_attrs; i++)
            if (write_attr(g, &w->attrs[i]) != 0) rc = ei_error_set("%s: cannot write attribute %s", w->tmp, w->attrs[i].name);
        if (g >= 0) H5Gclose(g);
    }
    /* Closing flushes the chunk cache: on a full disk these are the calls that fail. */
    herr_t cst = H5Dclose(w->d_tokens) < 0 ? -1 : 0;
    if (H5Dclose(w->d_mask) < 0) cst = -1;
    w->d_tokens = w->d_mask = -1;
    if (H5Fclose(w->file) < 0) cst = -1;
    w->file = -1;
    if (cst < 0) ei_h5_mark_broken();
    if (rc == 0 && cst < 0) rc = ei_error_set("%s: writing the dataset failed (disk full?)", w->path);
    if (rc == 0 && ei_seal_file(w->tmp, EI_SEAL_KIND_DATASET) != 0) rc = ei_error_prefix("%s: ", w->path);
    if (rc != 0) {
        ei_dataset_writer_abort(w);
        return -1;
    }
    rc = ei_atomic_finish(w->tmp, w->path);
    writer_free(w);
    return rc;
}

int ei_dataset_writer_close(ei_dataset_writer *w) {
    h5_quiet q;
    quiet_on(&q);
    int rc = close_impl(w);
    quiet_off(&q);
    return rc;
}
