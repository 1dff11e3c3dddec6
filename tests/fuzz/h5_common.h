/* Structured HDF5 inputs for the dataset and checkpoint fuzz targets.
 *
 * libhdf5 is not hardened against crafted files (over-reads inside libhdf5 1.10.8 on corrupt
 * object headers), and the files ei writes carry a whole-file seal (core/ei_seal.h) that readers
 * check before libhdf5 parses a byte. So these targets do not mutate HDF5 bytes: the input
 * DESCRIBES a file (which datasets and attributes exist, their classes, sizes, signs, ranks, extents
 * and contents), the harness writes it with the HDF5 API into a sealed file as the project's
 * writers do, and the readers get a well-formed file that passes the seal. What is fuzzed is
 * everything the project's readers do after libhdf5 has parsed the file: type and shape checks,
 * element counts, attribute shapes, offsets, ids, checksums and the allocations they size. */
#ifndef EI_FUZZ_H5_COMMON_H
#define EI_FUZZ_H5_COMMON_H

#include "fuzz.h"

#include "core/ei_error.h"
#include "core/ei_seal.h"
#include "data/h5file.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

/* How an array or attribute is written. */
enum {
    FZ_H5_ABSENT = 0,
    FZ_H5_RIGHT,      /* the type the reader wants */
    FZ_H5_FLOAT,      /* wrong class */
    FZ_H5_NARROW,     /* integer of another size */
    FZ_H5_SIGN,       /* integer of the other signedness */
    FZ_H5_RANK2,      /* [n, 1] */
    FZ_H5_STRING,     /* fixed-length string elements */
    FZ_H5_SPARSE,     /* the right type, chunked, a huge extent with nothing written (fill values) */
    FZ_H5_SCALAR,     /* rank 0 */
    FZ_H5_VLSTRING,   /* variable-length strings */
    FZ_H5_MODES
};

static inline void fz_h5_init(void) {
    ei_h5_init(); /* before any HDF5 call, as the project's readers and writers do */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the harness's own failures are expected and quiet */
}

/* A new file with the seal's user block reserved, as data/dataset_write.c makes them. */
static inline hid_t fz_h5_create(const char *path) {
    hid_t fcpl = ei_h5_sealed_fcpl();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (f < 0) fz_fail("cannot create %s", path);
    return f;
}

/* Closes f and seals the file as kind. */
static inline void fz_h5_close_sealed(hid_t f, const char *path, const char *kind) {
    if (H5Fclose(f) < 0) fz_fail("cannot close %s", path);
    if (ei_seal_file(path, kind) != 0) fz_fail("cannot seal %s: %s", path, ei_error_get());
}

/* A file type for mode and the wanted integer / float type `want` (size, sign, class). */
static inline hid_t fz_h5_type(int mode, hid_t want, size_t str_len) {
    switch (mode) {
    case FZ_H5_FLOAT: return H5Tcopy(H5T_IEEE_F64LE);
    case FZ_H5_NARROW: return H5Tcopy(H5Tget_size(want) == 2 ? H5T_STD_I32LE : H5T_STD_I16LE);
    case FZ_H5_SIGN: {
        hid_t t = H5Tcopy(want);
        if (H5Tget_class(t) == H5T_INTEGER) H5Tset_sign(t, H5Tget_sign(t) == H5T_SGN_NONE ? H5T_SGN_2 : H5T_SGN_NONE);
        return t;
    }
    case FZ_H5_STRING: {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, str_len ? str_len : 1);
        return t;
    }
    case FZ_H5_VLSTRING: {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        return t;
    }
    default: return H5Tcopy(want);
    }
}

/* Writes `name` under loc as described: n elements (extent `sparse_n` in FZ_H5_SPARSE mode) of
 * `want` from raw (n * elem bytes in the memory type `mem`, converted by HDF5; string modes write
 * the bytes as text). Failures are ignored: the reader then sees a file without that object. */
static inline void fz_h5_array(hid_t loc, const char *name, int mode, hid_t want, hid_t mem, const void *raw, size_t n,
                        uint64_t sparse_n) {
    if (mode == FZ_H5_ABSENT) return;
    hsize_t dims[2] = {(hsize_t)n, 1};
    hid_t sp, dcpl = H5P_DEFAULT;
    if (mode == FZ_H5_SCALAR) sp = H5Screate(H5S_SCALAR);
    else if (mode == FZ_H5_RANK2) sp = H5Screate_simple(2, dims, NULL);
    else if (mode == FZ_H5_SPARSE) {
        hsize_t big = (hsize_t)(sparse_n ? sparse_n : 1), chunk = 1024;
        sp = H5Screate_simple(1, &big, NULL);
        dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(dcpl, 1, &chunk);
    } else sp = H5Screate_simple(1, dims, NULL);
    size_t elem = H5Tget_size(mem);
    hid_t ft = fz_h5_type(mode, want, elem);
    hid_t ds = H5Dcreate2(loc, name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds >= 0 && mode != FZ_H5_SPARSE && (n || mode == FZ_H5_SCALAR)) {
        if (mode == FZ_H5_STRING) {
            H5Dwrite(ds, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
        } else if (mode == FZ_H5_VLSTRING) {
            /* one NUL-terminated string per element, all the same text */
            size_t cnt = mode == FZ_H5_SCALAR ? 1 : n;
            char *s = malloc(elem * n + 1);
            const char **v = malloc(sizeof *v * (cnt ? cnt : 1));
            if (s && v) {
                memcpy(s, raw, elem * n);
                s[elem * n] = '\0';
                for (size_t i = 0; i < cnt; i++) v[i] = s;
                H5Dwrite(ds, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
            }
            free(s);
            free(v);
        } else {
            H5Dwrite(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
        }
    }
    if (ds >= 0) H5Dclose(ds);
    H5Tclose(ft);
    if (dcpl != H5P_DEFAULT) H5Pclose(dcpl);
    H5Sclose(sp);
}

/* An attribute: modes as for arrays (FZ_H5_RANK2 and FZ_H5_SPARSE give n-element arrays; the
 * readers want one element). For strings, raw holds the text (n bytes). */
static inline void fz_h5_attr(hid_t loc, const char *name, int mode, hid_t want, hid_t mem, const void *raw, size_t n) {
    if (mode == FZ_H5_ABSENT) return;
    int is_str = H5Tget_class(want) == H5T_STRING;
    hsize_t cnt = mode == FZ_H5_RANK2 || mode == FZ_H5_SPARSE ? (hsize_t)(n ? n : 1) : 1;
    hid_t sp = cnt > 1 ? H5Screate_simple(1, &cnt, NULL) : H5Screate(H5S_SCALAR);
    hid_t ft;
    if (is_str && mode != FZ_H5_FLOAT && mode != FZ_H5_NARROW) {
        ft = H5Tcopy(H5T_C_S1);
        if (mode == FZ_H5_VLSTRING) H5Tset_size(ft, H5T_VARIABLE);
        else H5Tset_size(ft, n ? n : 1);
    } else {
        ft = fz_h5_type(mode == FZ_H5_RANK2 || mode == FZ_H5_SPARSE ? FZ_H5_RIGHT : mode, is_str ? H5T_STD_I64LE : want,
                        H5Tget_size(mem));
    }
    hid_t a = H5Acreate2(loc, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        size_t esz = H5Tget_class(ft) == H5T_STRING && !H5Tis_variable_str(ft) ? H5Tget_size(ft) : 8;
        uint8_t *buf = calloc((size_t)cnt, esz + 8);
        if (buf) {
            if (H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft)) {
                char *s = malloc(n + 1);
                if (s) {
                    memcpy(s, raw, n);
                    s[n] = '\0';
                    const char **v = (const char **)(void *)buf;
                    for (hsize_t i = 0; i < cnt; i++) v[i] = s;
                    H5Awrite(a, ft, buf);
                    free(s);
                }
            } else if (H5Tget_class(ft) == H5T_STRING) {
                for (hsize_t i = 0; i < cnt; i++) memcpy(buf + i * esz, raw, n < esz ? n : esz);
                H5Awrite(a, ft, buf);
            } else { /* a number; for text given a numeric mode, its first bytes */
                size_t k = is_str && n < 8 ? n : 8;
                for (hsize_t i = 0; i < cnt; i++) memcpy(buf + i * 8, raw, k);
                H5Awrite(a, is_str ? H5T_NATIVE_INT64 : mem, buf);
            }
            free(buf);
        }
        H5Aclose(a);
    }
    H5Tclose(ft);
    H5Sclose(sp);
}

#endif
