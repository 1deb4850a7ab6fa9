/*
 * The model directory: one complete, servable model version, stored as a
 * bundle of format "distml-model" with
 *   model.json             the spec: layers with their configs and output
 *                          shapes, the input name "image_bytes", the
 *                          serving preprocessing and the class names
 *   variables.safetensors  every variable under its Keras name
 *                          ("conv2d/kernel", "batch_normalization/moving_mean")
 * Written through a temporary directory and renamed into place, so a
 * reader never sees half a model.
 */
#ifndef DISTML_MODEL_SAVED_MODEL_H
#define DISTML_MODEL_SAVED_MODEL_H

#include "nn/model.h"

#include <stdbool.h>
#include <stddef.h>

#define SAVED_MODEL_FORMAT "distml-model"
#define SAVED_MODEL_SPEC_FILE "model.json"
#define SAVED_MODEL_VARIABLES_FILE "variables.safetensors"

/* Save M into DIR, replacing an existing model there. */
int saved_model_save(const char *dir, nn_model *m);

/* Save M as a new version under BASE (max + 1, or 1), never replacing
 * one that another process saved meanwhile; DIR receives its path. */
int saved_model_save_version(const char *base, nn_model *m, char *dir, size_t capacity);

/* Verify DIR's checksums, rebuild the layer stack from model.json and load
 * every variable, checking names and shapes. */
int saved_model_load(const char *dir, nn_model *m);

/* The spec of M as a JSON string (malloc'd). */
char *saved_model_spec_json(const nn_model *m);

#endif
