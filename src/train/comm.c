#include "train/comm.h"

#include "base/error.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

int comm_init(train_comm *comm, int *argc, char ***argv)
{
    comm->rank = 0;
    comm->size = 1;
    comm->mpi = false;
    const char *world = getenv("OMPI_COMM_WORLD_SIZE");
    if (world == NULL || world[0] == '\0')
        return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS)
        return dm_fail("MPI_Init failed");
    comm->mpi = true;
    /* A failed collective returns an error code instead of aborting, so the
     * caller can report it; mpirun still ends the other workers. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &comm->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &comm->size);
    return 0;
}

void comm_finalize(train_comm *comm)
{
    if (comm->mpi)
        MPI_Finalize();
    comm->mpi = false;
}

static int mpi_error(const char *what, int code)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    return dm_fail("%s failed: %s", what, text);
}

int comm_allreduce_sum(const train_comm *comm, float *data, size_t n)
{
    if (!comm->mpi || comm->size == 1)
        return 0;
    if (n > INT_MAX)
        return dm_fail("all-reduce of %zu floats is larger than MPI's int count", n);
    int rc = MPI_Allreduce(MPI_IN_PLACE, data, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_error("MPI_Allreduce", rc);
}

int comm_broadcast(const train_comm *comm, void *data, size_t size, int root)
{
    if (!comm->mpi || comm->size == 1)
        return 0;
    if (size > INT_MAX)
        return dm_fail("broadcast of %zu bytes is larger than MPI's int count", size);
    int rc = MPI_Bcast(data, (int)size, MPI_BYTE, root, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_error("MPI_Bcast", rc);
}

void comm_abort(const train_comm *comm, int code)
{
    if (comm->mpi)
        MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}
