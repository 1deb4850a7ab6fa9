/*
 * Training checkpoints: DIR/ckpt_<epoch>, epochs numbered from 1 as Keras
 * ModelCheckpoint formats "ckpt_{epoch}". Each checkpoint is a bundle of
 * format "distml-checkpoint" with two files:
 *   tensors.safetensors  any named tensors (weights, Adam m and v,
 *                        BatchNorm moving statistics, ...)
 *   state.json           a JSON object supplied by the caller (epoch,
 *                        global step, optimizer iterations, RNG state, ...)
 * Saving goes through a temporary directory, so a crash leaves either the
 * previous set of checkpoints or a leftover that ckpt_latest skips.
 */
#ifndef DISTML_MODEL_CHECKPOINT_H
#define DISTML_MODEL_CHECKPOINT_H

#include "model/safetensors.h"

#include <stddef.h>

#define CKPT_FORMAT "distml-checkpoint"
#define CKPT_TENSORS_FILE "tensors.safetensors"
#define CKPT_STATE_FILE "state.json"

/* Saves checkpoint EPOCH (>= 1) under DIR, creating DIR when missing and
 * replacing an existing checkpoint of the same epoch. STATE_JSON must be a
 * JSON object. */
int ckpt_save(const char *dir, int epoch, const st_tensor *tensors, size_t count,
              const char *state_json);

/*
 * Finds the newest complete checkpoint under DIR and stores its epoch in
 * *EPOCH, or 0 when there is none or DIR does not exist. Incomplete or
 * corrupt ckpt_<n> folders newer than the one found, and leftovers of
 * interrupted saves ("ckpt_<n>.tmp.<pid>"), are skipped with one DM_WARN
 * line each.
 */
int ckpt_latest(const char *dir, int *epoch);

/*
 * Verifies and loads checkpoint EPOCH: the tensors into a malloc'd array
 * (free with st_free) and state.json into a malloc'd NUL-terminated string
 * (free with free). STATE_JSON may be NULL when the caller does not need it.
 */
int ckpt_load(const char *dir, int epoch, st_tensor **tensors, size_t *count, char **state_json);

/* Removes every ckpt_<n> folder older than the KEEP (>= 1) newest complete
 * checkpoints, complete or not. Folders newer than the oldest kept one are
 * left alone. */
int ckpt_prune(const char *dir, int keep);

/* Writes "DIR/ckpt_<EPOCH>" into OUT. */
int ckpt_path(char *out, size_t capacity, const char *dir, int epoch);

#endif
