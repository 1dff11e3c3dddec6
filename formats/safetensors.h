/* safetensors files: a validating, memory-mapped reader and an atomic writer.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON {"name": {"dtype": "F32", "shape":
 * [..], "data_offsets": [begin, end]}, ..., "__metadata__": {string: string}}, then the data block;
 * offsets are relative to the data block. The reader checks the header length, the JSON, every
 * tensor's dtype, shape and offsets against the file length (size == product(shape) * dtype size,
 * ranges inside the file and not overlapping) before exposing anything. */
#ifndef EI_SAFETENSORS_H
#define EI_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/ei_half.h"

typedef enum { EI_ST_F32 = 0, EI_ST_F16, EI_ST_BF16, EI_ST_F64, EI_ST_I32, EI_ST_I64, EI_ST_U8, EI_ST_I8 } ei_st_dtype;

#define EI_ST_MAX_DIMS 8

typedef struct {
    char *name;
    ei_st_dtype dtype;
    int ndim;
    int64_t shape[EI_ST_MAX_DIMS];
    size_t numel;
    const uint8_t *data; /* into the map; not necessarily aligned */
    size_t nbytes;
} ei_st_tensor;

typedef struct ei_st_file ei_st_file;

/* Opens and validates path (memory-mapped). NULL with ei_error set ("<path>: ...") on failure.
 * The file owns its tensors; pointers stay valid until ei_st_close. */
ei_st_file *ei_st_open(const char *path);
void ei_st_close(ei_st_file *f);
const char *ei_st_path(const ei_st_file *f);
int ei_st_count(const ei_st_file *f);
const ei_st_tensor *ei_st_get(const ei_st_file *f, int i);
/* NULL when absent (no error set). */
const ei_st_tensor *ei_st_find(const ei_st_file *f, const char *name);
/* Value of a "__metadata__" string entry, or NULL. */
const char *ei_st_metadata(const ei_st_file *f, const char *key);

const char *ei_st_dtype_name(ei_st_dtype d);
size_t ei_st_dtype_size(ei_st_dtype d);

/* Converts a float tensor (F32, F16, BF16, F64) to float32 into dst (t->numel floats). -1 for other
 * dtypes. */
int ei_st_to_f32(const ei_st_tensor *t, float *dst);


/* One tensor to write: data holds numel * dtype size bytes in the given dtype (little-endian). */
typedef struct {
    const char *name;
    ei_st_dtype dtype;
    int ndim;
    int64_t shape[EI_ST_MAX_DIMS];
    const void *data;
} ei_st_entry;

/* Writes the tensors (in the given order) atomically to path. metadata: NULL or pairs of strings
 * {key0, value0, key1, value1, ..., NULL} stored under "__metadata__". The data block starts on an
 * 8-byte boundary (the header is padded with spaces), so F32 tensors map aligned. */
int ei_st_write(const char *path, const ei_st_entry *entries, int n, const char *const *metadata);

#endif
