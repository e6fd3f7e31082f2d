/*
 * train/comm_impl.h — internal to train/comm*.c: the table an
 * implementation of train/comm.h fills.
 */
#ifndef VTTT_COMM_IMPL_H
#define VTTT_COMM_IMPL_H

#include "comm.h"

typedef struct comm_ops {
    const char *name;
    int (*allreduce_sum)(vttt_comm *c, float *x, size_t n);
    int (*allreduce_sum_f64)(vttt_comm *c, double *x, size_t n);
    int (*broadcast)(vttt_comm *c, void *buf, size_t bytes, int root);
    int (*barrier)(vttt_comm *c);
    void (*close)(vttt_comm *c);   /* frees impl */
} comm_ops;

struct vttt_comm {
    const comm_ops *ops;
    int rank, size;
    vttt_logger log;
    void *impl;   /* the implementation's own state */
};

/* Opens the MPI implementation into c (ops, rank, size, impl);
 * VTTT_ENOTSUP in a build without MPI (train/mpi/comm_mpi_none.c). */
int comm_mpi_open(vttt_comm *c);
/* The rank count an MPI launcher announced in the environment (Open MPI,
 * MPICH/PMI, PMIx), or 0 when the process was not started by one. */
int comm_launcher_size(void);

#endif
