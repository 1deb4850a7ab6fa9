/*
 * The training loop, as Keras's model.fit runs the reference design, on one
 * process or as N synchronous data-parallel workers:
 * Adam, sparse categorical cross-entropy, a piecewise-constant
 * learning-rate schedule by epoch (the reference design's by default:
 * 1e-3 for epochs 0-2, 1e-4 for 3-6, 1e-5 after), a progress bar, a
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

/* Keras's PiecewiseConstantDecay counted in epochs: values[0] before
 * boundaries[0], values[i] from boundaries[i-1], values[count] from the
 * last boundary on. */
#define FIT_MAX_LR_BOUNDARIES 15
typedef struct {
    int count;
    int boundaries[FIT_MAX_LR_BOUNDARIES];
    float values[FIT_MAX_LR_BOUNDARIES + 1];
} fit_schedule;

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
    fit_schedule schedule;
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

/* Set SCHEDULE to the reference design's: boundaries 3 and 7, values
 * 1e-3, 1e-4 and 1e-5. */
void fit_schedule_default(fit_schedule *schedule);

/* Parse BOUNDARIES ("3,7": increasing epochs, at least 1) and VALUES
 * ("0.001,0.0001,0.00001": one more positive number than boundaries) into
 * SCHEDULE. Returns 0, or -1 with the error naming the bad element. */
int fit_schedule_parse(const char *boundaries, const char *values, fit_schedule *schedule);

/* Return the learning rate of 0-based EPOCH under SCHEDULE. */
float fit_learning_rate(const fit_schedule *schedule, int epoch);

int fit_run(const fit_config *cfg, const ds_split *train, fit_result *result);

/* Loss and accuracy of the model in DIR on SPLIT, printed as Keras's
 * evaluate does when PROGRESS is not NULL. */
int fit_evaluate_dir(const char *dir, const ds_split *split, int batch_size, FILE *progress,
                     double *loss, double *accuracy);

#endif
