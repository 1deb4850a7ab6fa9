/*
 * Collectives between the workers of one synchronous data-parallel job,
 * over Open MPI. A process started without mpirun (no OMPI_COMM_WORLD_SIZE
 * in its environment) does not initialise MPI at all and is a job of one,
 * in which every collective is a no-op.
 */
#ifndef DISTML_TRAIN_COMM_H
#define DISTML_TRAIN_COMM_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    int rank; /* 0 is the chief */
    int size;
    bool mpi; /* MPI was initialised by comm_init */
} train_comm;

/* Initialise MPI when the process was started by mpirun. */
int comm_init(train_comm *comm, int *argc, char ***argv);
void comm_finalize(train_comm *comm);

/* Sum N floats across all workers, in place. */
int comm_allreduce_sum(const train_comm *comm, float *data, size_t n);
/* Copy SIZE bytes from ROOT's buffer into every worker's. */
int comm_broadcast(const train_comm *comm, void *data, size_t size, int root);
/* Stop every worker of the job with exit status CODE. */
void comm_abort(const train_comm *comm, int code);

#endif
