/*
 * Communicator dispatch (train/comm.h) and the single-process
 * implementation, whose collectives have nothing to do.
 */
#include <stdlib.h>
#include <string.h>

#include "comm_impl.h"

static int single_sum(vttt_comm *c, float *x, size_t n) { return VTTT_OK; }
static int single_sum_f64(vttt_comm *c, double *x, size_t n) { return VTTT_OK; }
static int single_bcast(vttt_comm *c, void *buf, size_t bytes, int root) { return VTTT_OK; }
static int single_barrier(vttt_comm *c) { return VTTT_OK; }
static void single_close(vttt_comm *c) {}

static const comm_ops single_ops = {"single", single_sum, single_sum_f64, single_bcast, single_barrier, single_close};

int comm_launcher_size(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return getenv("PMIX_RANK") || getenv("PMI_RANK") ? 1 : 0;
}

int vttt_comm_kind_parse(const char *name, vttt_comm_kind *kind) {
    static const char *names[] = {"auto", "single", "mpi"};
    for (int i = 0; name && i < 3; i++) {
        if (!strcmp(name, names[i])) {
            *kind = (vttt_comm_kind)i;
            return VTTT_OK;
        }
    }
    return VTTT_EINVAL;
}

int vttt_comm_open(vttt_comm **out, vttt_comm_kind kind, const vttt_logger *lg) {
    if (!out) return VTTT_EINVAL;
    *out = NULL;
    vttt_comm *c = calloc(1, sizeof *c);
    if (!c) return VTTT_ENOMEM;
    if (lg) c->log = *lg;
    int launched = comm_launcher_size();
    if (kind == VTTT_COMM_AUTO) kind = launched > 0 && vttt_comm_have_mpi() ? VTTT_COMM_MPI : VTTT_COMM_SINGLE;
    if (kind == VTTT_COMM_SINGLE && launched > 1) {
        vttt_log(lg, VTTT_LOG_ERROR, "started by an MPI launcher with %d ranks, but %s; every rank would train "
                 "alone", launched, vttt_comm_have_mpi() ? "a single-process run was asked for"
                                                          : "this vttt was built without MPI (install "
                                                            "libopenmpi-dev and rebuild)");
        free(c);
        return VTTT_ENOTSUP;
    }
    int err = VTTT_OK;
    if (kind == VTTT_COMM_MPI) {
        err = comm_mpi_open(c);
    } else {
        c->ops = &single_ops;
        c->rank = 0, c->size = 1;
    }
    if (err) {
        free(c);
        return err;
    }
    *out = c;
    return VTTT_OK;
}

void vttt_comm_close(vttt_comm **cp) {
    if (!cp || !*cp) return;
    (*cp)->ops->close(*cp);
    free(*cp);
    *cp = NULL;
}

const char *vttt_comm_name(const vttt_comm *c) { return c->ops->name; }
int vttt_comm_rank(const vttt_comm *c) { return c->rank; }
int vttt_comm_size(const vttt_comm *c) { return c->size; }
int vttt_comm_allreduce_sum(vttt_comm *c, float *x, size_t n) { return c->ops->allreduce_sum(c, x, n); }
int vttt_comm_allreduce_sum_f64(vttt_comm *c, double *x, size_t n) { return c->ops->allreduce_sum_f64(c, x, n); }
int vttt_comm_broadcast(vttt_comm *c, void *buf, size_t bytes, int root) {
    return c->ops->broadcast(c, buf, bytes, root);
}
int vttt_comm_barrier(vttt_comm *c) { return c->ops->barrier(c); }
