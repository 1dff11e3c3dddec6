/* File access helpers: whole-file reads, read-only memory maps, and atomic writes.
 *
 * Atomic writes follow one rule everywhere: write to "<path>.tmp.<pid>", fflush + fsync, rename over
 * the final name, fsync the directory. A crash mid-write never destroys an existing file. */
#ifndef EI_IO_H
#define EI_IO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Reads a whole file into a malloc'd buffer with a trailing NUL (not counted in *len).
 * The caller owns and frees *buf. */
int ei_file_read_all(const char *path, char **buf, size_t *len);

/* Read-only memory map of a whole file. size may be 0 (data is then NULL). */
typedef struct {
    const uint8_t *data;
    size_t size;
} ei_file_map;
int ei_file_map_open(ei_file_map *m, const char *path);
void ei_file_map_close(ei_file_map *m);

/* 1 if path exists and is a directory, 0 otherwise. */
int ei_path_is_dir(const char *path);
/* 1 if path exists (file or directory). */
int ei_path_exists(const char *path);
/* Joins dir and name with one '/'; malloc'd, caller frees. */
char *ei_path_join(const char *dir, const char *name);
/* mkdir -p. */
int ei_mkdir_p(const char *path);

/* Atomic file writer. ei_atomic_open creates the temporary file; write through f->fp; then either
 * ei_atomic_commit (fsync + rename; returns -1 and removes the temporary on any error) or
 * ei_atomic_abort. Both free the struct's strings. */
typedef struct {
    FILE *fp;
    char *path;
    char *tmp;
} ei_atomic_file;
int ei_atomic_open(ei_atomic_file *f, const char *path);
int ei_atomic_commit(ei_atomic_file *f);
void ei_atomic_abort(ei_atomic_file *f);

/* For files written by a library that opens them itself (HDF5, gnuplot): returns a malloc'd
 * temporary name for path, registered for removal on SIGINT / SIGTERM / SIGHUP (after removing
 * stale temporaries of path left by dead processes); after the library closed the file,
 * ei_atomic_finish fsyncs it and renames it to path, or ei_atomic_discard removes it. Both
 * unregister it. */
char *ei_atomic_tmpname(const char *path);
int ei_atomic_finish(const char *tmp, const char *path);
void ei_atomic_discard(const char *tmp);

/* Refuses to write out when it is one of the inputs: -1 with ei_error set ("<out>: is also an
 * input (<input>) ...") when out exists and has the device and inode of inputs[i] (so another
 * spelling of the path or a hard link counts). An input that is a directory (a Hugging Face model
 * folder) stands for every entry directly inside it. NULL inputs and a missing out are fine. */
int ei_check_not_input(const char *out, const char *const *inputs, int n);

/* 64-bit FNV-1a over a byte range (seed 0: the standard offset basis; pass a previous result to
 * continue a hash across ranges); used for checksums and identities of files, not for security. */
uint64_t ei_hash_fnv1a(const void *data, size_t n, uint64_t seed);

/* Monotonic wall clock in seconds. */
double ei_time_now(void);
/* Peak resident set size of this process in bytes (VmHWM), 0 if unknown. */
size_t ei_peak_rss_bytes(void);

#endif
