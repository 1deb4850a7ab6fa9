/*
 * The training loop, as Keras's model.fit runs the reference design, on one
 * process or as N synchronous data-parallel workers:
 * Adam, sparse categorical cross-entropy, the learning-rate schedule
 * (1e-3 for epochs 0-2, 1e-4 for 3-6, 1e-5 after), a progress bar, a
 * checkpoint after every epoch, TensorBoard scalars and, at the end, the
 * saved model.
 */
#ifndef DISTML_TRAIN_FIT_H
#define DISTML_TRAIN_FIT_H

#include "data/dataset.h"
#include "train/comm.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *model_type;
    int epochs;
    int64_t steps_per_epoch; /* 0: one full pass over the (sharded) data */
    int batch_size_per_replica;
    uint64_t seed;
    uint32_t shuffle_buffer;
    const char *saved_model_dir; /* save here, replacing what is there */
    const char *saved_model_base; /* else a new version under this folder;
                                   * both NULL: do not save */
    const char *checkpoint_dir;  /* NULL: no checkpoints */
    int keep_checkpoints;        /* keep the N newest; 0 keeps all, as Keras */
    const char *log_dir;         /* NULL: no TensorBoard events */
    int64_t log_steps;           /* batch_loss every N steps; 0 = never */
    bool resume;                 /* continue from the newest checkpoint */
    FILE *progress;              /* progress output, NULL for none */
    /* The job's workers; NULL for one process. Every worker trains on its
     * own shard and all-reduces gradients; only the chief (rank 0) prints
     * progress and writes checkpoints, TensorBoard events and the model. */
    const train_comm *comm;
} fit_config;

typedef struct {
    int start_epoch;     /* 0-based epoch the run started at */
    int epochs_run;
    int64_t global_step; /* optimizer steps after the run */
    double final_loss, final_accuracy;
    char saved_model_dir[4096]; /* where the model was saved ("" if not) */
} fit_result;

void fit_config_default(fit_config *cfg);

/* Learning rate for 0-based EPOCH under the reference schedule. */
float fit_learning_rate(int epoch);

int fit_run(const fit_config *cfg, const ds_split *train, fit_result *result);

/* Loss and accuracy of the model in DIR on SPLIT, printed as Keras's
 * evaluate does when PROGRESS is not NULL. */
int fit_evaluate_dir(const char *dir, const ds_split *split, int batch_size, FILE *progress,
                     double *loss, double *accuracy);

#endif
