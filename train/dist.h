/* Data parallelism over MPI (DESIGN 4). Built with EI_HAVE_MPI (cmake -DEI_MPI=ON, the default when
 * MPI is found) these wrap MPI_COMM_WORLD; without it, or when the process was not started by
 * mpirun/mpiexec, they are single-process no-ops (rank 0 of 1; reductions leave the data as is).
 *
 * Not starting MPI outside a launcher is deliberate: a singleton MPI_Init would start a runtime
 * daemon for nothing and fails in some containers. Launchers are recognised by their environment
 * (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, MPI_LOCALNRANKS).
 *
 * Convention: rank 0 logs, writes metrics and checkpoints; the others stay quiet. */
#ifndef EI_DIST_H
#define EI_DIST_H

#include <stddef.h>

/* Starts MPI when launched by an MPI launcher (argc/argv may be NULL). Idempotent. */
int ei_dist_init(int *argc, char ***argv);
/* Finalizes MPI if ei_dist_init started it. Safe to call at any time, also twice. */
void ei_dist_finalize(void);

int ei_dist_rank(void);
int ei_dist_size(void);
static inline int ei_dist_is_root(void) { return ei_dist_rank() == 0; }
/* 1 when MPI is running with this process (even with one rank), 0 otherwise. */
int ei_dist_active(void);
/* 1 when the binary was built with MPI support. */
int ei_dist_compiled(void);

/* In-place sums over all ranks (every rank ends with the same result). */
int ei_dist_allreduce_sum_f32(float *buf, size_t n);
int ei_dist_allreduce_sum_f64(double *buf, size_t n);
/* In-place maximum, e.g. for "any rank saw a non-finite gradient". */
int ei_dist_allreduce_max_f64(double *buf, size_t n);
/* Copies root's bytes to every rank. */
int ei_dist_bcast(void *buf, size_t bytes, int root);
int ei_dist_barrier(void);
/* Aborts every rank (MPI_Abort) after a fatal error on one; a plain return without MPI. Ranks
 * blocked in a collective would otherwise wait forever. */
void ei_dist_abort(int code);

#endif
