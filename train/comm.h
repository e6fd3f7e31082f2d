/*
 * train/comm.h — the collective operations data-parallel training needs,
 * behind one small interface: a table of functions per implementation
 * (train/comm_impl.h). "single" is one process (every call a no-op);
 * "mpi" runs over MPI_COMM_WORLD (Open MPI; built where CMake finds MPI).
 * An NCCL implementation for GPUs fills the same table.
 *
 * Every rank calls the collectives in the same order with the same sizes.
 * Functions return 0 or a negative VTTT_E* code (logged).
 */
#ifndef VTTT_COMM_H
#define VTTT_COMM_H

#include <stddef.h>

#include "ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    VTTT_COMM_AUTO = 0,   /* MPI when started by an MPI launcher (mpirun), else single */
    VTTT_COMM_SINGLE = 1, /* one process */
    VTTT_COMM_MPI = 2,    /* MPI; VTTT_ENOTSUP when this build has no MPI */
} vttt_comm_kind;

typedef struct vttt_comm vttt_comm;

/* Opens a communicator. MPI is initialised here (and finalised by close)
 * unless the program did it already; MPI allows that once per process.
 * VTTT_ENOTSUP (logged) for MPI in a build without it, or under an MPI
 * launcher with several ranks in such a build. */
int vttt_comm_open(vttt_comm **out, vttt_comm_kind kind, const vttt_logger *lg);
void vttt_comm_close(vttt_comm **c);
/* "auto", "single", "mpi" -> kind; VTTT_EINVAL for another name. */
int vttt_comm_kind_parse(const char *name, vttt_comm_kind *kind);
/* Whether this build has the MPI implementation. */
int vttt_comm_have_mpi(void);

const char *vttt_comm_name(const vttt_comm *c);   /* "single", "mpi" */
int vttt_comm_rank(const vttt_comm *c);
int vttt_comm_size(const vttt_comm *c);
/* x (n) = the sum over ranks of x, in place; every rank gets the same
 * values. */
int vttt_comm_allreduce_sum(vttt_comm *c, float *x, size_t n);
int vttt_comm_allreduce_sum_f64(vttt_comm *c, double *x, size_t n);
/* buf (bytes) = root's buf on every rank. */
int vttt_comm_broadcast(vttt_comm *c, void *buf, size_t bytes, int root);
int vttt_comm_barrier(vttt_comm *c);

#ifdef __cplusplus
}
#endif
#endif
