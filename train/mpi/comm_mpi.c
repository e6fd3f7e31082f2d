/*
 * The MPI communicator: collectives on a duplicate of MPI_COMM_WORLD, with
 * errors returned rather than fatal. Sums use MPI_Allreduce; Open MPI's
 * algorithms give every rank the same bytes (one reduced copy is
 * distributed), which keeps the replicas' weights identical.
 */
#include <limits.h>
#include <stdlib.h>

#include <mpi.h>

#include "comm_impl.h"

typedef struct {
    MPI_Comm comm;
    int finalize;   /* we initialised MPI, so we finalise it */
} mpi_impl;

/* Largest element count passed to one MPI call (MPI counts are int). */
#define MPI_CHUNK (1 << 28)

int vttt_comm_have_mpi(void) { return 1; }

static int mpi_fail(vttt_comm *c, const char *what, int rc) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = '\0';
    vttt_log(&c->log, VTTT_LOG_ERROR, "MPI %s failed on rank %d: %s", what, c->rank, msg);
    return VTTT_EIO;
}

static int reduce_chunks(vttt_comm *c, void *x, size_t n, size_t elem, MPI_Datatype type) {
    mpi_impl *m = c->impl;
    for (size_t i = 0; i < n; i += MPI_CHUNK) {
        int k = (int)(n - i < MPI_CHUNK ? n - i : MPI_CHUNK);
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)x + i * elem, k, type, MPI_SUM, m->comm);
        if (rc != MPI_SUCCESS) return mpi_fail(c, "allreduce", rc);
    }
    return VTTT_OK;
}

static int mpi_sum(vttt_comm *c, float *x, size_t n) { return reduce_chunks(c, x, n, sizeof(float), MPI_FLOAT); }

static int mpi_sum_f64(vttt_comm *c, double *x, size_t n) {
    return reduce_chunks(c, x, n, sizeof(double), MPI_DOUBLE);
}

static int mpi_bcast(vttt_comm *c, void *buf, size_t bytes, int root) {
    mpi_impl *m = c->impl;
    for (size_t i = 0; i < bytes; i += MPI_CHUNK) {
        int k = (int)(bytes - i < MPI_CHUNK ? bytes - i : MPI_CHUNK);
        int rc = MPI_Bcast((char *)buf + i, k, MPI_BYTE, root, m->comm);
        if (rc != MPI_SUCCESS) return mpi_fail(c, "broadcast", rc);
    }
    return VTTT_OK;
}

static int mpi_barrier(vttt_comm *c) {
    int rc = MPI_Barrier(((mpi_impl *)c->impl)->comm);
    return rc == MPI_SUCCESS ? VTTT_OK : mpi_fail(c, "barrier", rc);
}

static void mpi_close(vttt_comm *c) {
    mpi_impl *m = c->impl;
    if (!m) return;
    MPI_Comm_free(&m->comm);
    if (m->finalize) MPI_Finalize();
    free(m);
    c->impl = NULL;
}

static const comm_ops mpi_ops = {"mpi", mpi_sum, mpi_sum_f64, mpi_bcast, mpi_barrier, mpi_close};

int comm_mpi_open(vttt_comm *c) {
    mpi_impl *m = calloc(1, sizeof *m);
    if (!m) return VTTT_ENOMEM;
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        /* only the main thread calls MPI; OpenMP workers never do */
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            vttt_log(&c->log, VTTT_LOG_ERROR, "MPI initialisation failed");
            free(m);
            return VTTT_EIO;
        }
        m->finalize = 1;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &m->comm);
    MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(m->comm, &c->rank);
    MPI_Comm_size(m->comm, &c->size);
    c->ops = &mpi_ops;
    c->impl = m;
    return VTTT_OK;
}
