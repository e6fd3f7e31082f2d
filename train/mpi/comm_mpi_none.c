/* Builds without MPI: the "mpi" communicator is not available. */
#include "comm_impl.h"

int vttt_comm_have_mpi(void) { return 0; }

int comm_mpi_open(vttt_comm *c) {
    vttt_log(&c->log, VTTT_LOG_ERROR, "this vttt was built without MPI; install Open MPI (libopenmpi-dev) and "
             "rebuild to train with mpirun");
    return VTTT_ENOTSUP;
}
