#include "train/dist.h"
#include "core/ei_error.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef EI_HAVE_MPI
#include <mpi.h>

static int dist_started; /* this module called MPI_Init */
static int dist_rank, dist_size = 1;

static int launched_by_mpi(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

int ei_dist_init(int *argc, char ***argv) {
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (fin) return ei_error_set("MPI was already finalized");
    if (!inited) {
        if (!launched_by_mpi()) return 0;
        if (MPI_Init(argc, argv) != MPI_SUCCESS) return ei_error_set("MPI_Init failed");
        dist_started = 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &dist_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &dist_size);
    return 0;
}

void ei_dist_finalize(void) {
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (dist_started && inited && !fin) MPI_Finalize();
    dist_started = 0;
}

int ei_dist_active(void) {
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    return inited && !fin;
}

int ei_dist_compiled(void) { return 1; }
int ei_dist_rank(void) { return ei_dist_active() ? dist_rank : 0; }
int ei_dist_size(void) { return ei_dist_active() ? dist_size : 1; }

/* MPI counts are int: large buffers go in chunks. */
#define CHUNK ((size_t)1 << 30)

static int allreduce(void *buf, size_t n, size_t elem, MPI_Datatype t, MPI_Op op) {
    if (!ei_dist_active() || n == 0) return 0;
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t c = n - off < CHUNK ? n - off : CHUNK;
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * elem, (int)c, t, op, MPI_COMM_WORLD) != MPI_SUCCESS)
            return ei_error_set("MPI_Allreduce of %zu values failed", n);
    }
    return 0;
}

int ei_dist_allreduce_sum_f32(float *buf, size_t n) { return allreduce(buf, n, sizeof(float), MPI_FLOAT, MPI_SUM); }
int ei_dist_allreduce_sum_f64(double *buf, size_t n) {
    return allreduce(buf, n, sizeof(double), MPI_DOUBLE, MPI_SUM);
}
int ei_dist_allreduce_max_f64(double *buf, size_t n) {
    return allreduce(buf, n, sizeof(double), MPI_DOUBLE, MPI_MAX);
}

int ei_dist_bcast(void *buf, size_t bytes, int root) {
    if (root < 0 || root >= ei_dist_size()) return ei_error_set("broadcast from rank %d of %d", root, ei_dist_size());
    if (!ei_dist_active() || bytes == 0) return 0;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        size_t c = bytes - off < CHUNK ? bytes - off : CHUNK;
        if (MPI_Bcast((char *)buf + off, (int)c, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS)
            return ei_error_set("MPI_Bcast of %zu bytes failed", bytes);
    }
    return 0;
}

int ei_dist_barrier(void) {
    if (!ei_dist_active()) return 0;
    return MPI_Barrier(MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : ei_error_set("MPI_Barrier failed");
}

void ei_dist_abort(int code) {
    if (ei_dist_active() && dist_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

#else /* single process */

int ei_dist_init(int *argc, char ***argv) { return 0; }
void ei_dist_finalize(void) {}
int ei_dist_active(void) { return 0; }
int ei_dist_compiled(void) { return 0; }
int ei_dist_rank(void) { return 0; }
int ei_dist_size(void) { return 1; }
int ei_dist_allreduce_sum_f32(float *buf, size_t n) { return 0; }
int ei_dist_allreduce_sum_f64(double *buf, size_t n) { return 0; }
int ei_dist_allreduce_max_f64(double *buf, size_t n) { return 0; }
int ei_dist_bcast(void *buf, size_t bytes, int root) {
    return root == 0 ? 0 : ei_error_set("broadcast from rank %d of 1", root);
}
int ei_dist_barrier(void) { return 0; }
void ei_dist_abort(int code) {}

#endif
