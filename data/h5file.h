/* HDF5 plumbing shared by the dataset (data/dataset_*.c) and checkpoint (train/checkpoint.c)
 * readers and writers: library termination that survives a failed close, the sealed file layout
 * (a 512-byte user block holding the whole-file checksum, core/ei_seal.h) and the check every
 * reader runs before libhdf5 sees a byte of the file. */
#ifndef EI_H5FILE_H
#define EI_H5FILE_H

#include <hdf5.h>

/* Call before the first HDF5 call. libhdf5 1.10 leaves a file whose H5Fclose failed (disk full)
 * half-destroyed in its ID table, and its exit handler then crashes on it (SIGSEGV after the
 * error was already reported). The library's own exit handler is therefore replaced by one that
 * runs H5close only when no close failed. Idempotent; a no-op when something else initialised
 * the library first. */
void ei_h5_init(void);
/* Records that an H5Dclose / H5Fclose failed: the process must not terminate the library. */
void ei_h5_mark_broken(void);

/* A file-creation property list reserving the seal's bytes as the HDF5 user block (caller closes
 * it), or -1. */
hid_t ei_h5_sealed_fcpl(void);

/* The check before H5Fopen: 0 when path is sealed as kind and intact, or carries no seal (then a
 * note on stderr says it is parsed unverified; what names the kind of file, "dataset"); -1 with
 * ei_error set naming the file when the seal does not match. */
int ei_h5_check_seal(const char *path, const char *kind, const char *what);

/* The extent of a dataset is only a claim: a chunked dataset with nothing written stores nothing,
 * so a 1 KiB file can declare 2^32 elements and make a reader allocate 16 GiB (found by
 * fuzz_dataset_h5 and fuzz_checkpoint_h5). ei's writers write every element, at worst deflated,
 * and deflate packs at most 1032 bytes into one: more elements of elem bytes than the stored bytes
 * can hold is a corrupt file. 0, or -1 with ei_error set naming path and /name. */
int ei_h5_check_stored(hid_t ds, const char *path, const char *name, unsigned long long n, size_t elem);

#define EI_SEAL_KIND_DATASET "ei-dataset"
#define EI_SEAL_KIND_CHECKPOINT "ei-checkpoint"

#endif
