/*
 * A Keras-style Sequential model: the three Fashion-MNIST CNNs, their
 * variables in two flat buffers (trainable, with a gradient buffer beside
 * it, and non-trainable), and forward/backward over a batch.
 */
#ifndef DISTML_NN_MODEL_H
#define DISTML_NN_MODEL_H

#include "nn/layer.h"

#include <stdio.h>

#define NN_MAX_LAYERS 16
#define NN_MAX_VARIABLES (NN_MAX_LAYERS * NN_MAX_PARAMS)

typedef struct {
    char name[32];       /* Keras model name, "sequential" */
    char model_type[16]; /* "cnn", "dropout" or "batch_norm" */
    nn_shape input;      /* (28, 28, 1) */
    int num_classes;
    bool fuse_relu_pooling; /* hand a Conv2D's ReLU to the next pooling
                             * layer (default on; off for reference runs) */

    nn_layer layers[NN_MAX_LAYERS];
    int num_layers;

    float *trainable;      /* all trainable variables, layer order */
    float *grads;          /* same layout as trainable */
    size_t num_trainable;
    float *non_trainable;  /* BatchNormalization moving statistics */
    size_t num_non_trainable;

    int capacity;                 /* largest batch the buffers below hold */
    float *outputs[NN_MAX_LAYERS]; /* each layer's output (capacity, out) */
    float *grad_a, *grad_b;       /* ping-pong buffers for backward */
    uint64_t *example_ids;        /* dropout ids of the current batch */
} nn_model;

/* The model types distml trains, in the order they are listed in help. */
extern const char *const nn_model_types[3];

/* Build MODEL_TYPE with glorot_uniform kernels drawn from SEED and zero
 * biases, gamma 1, beta 0, moving mean 0, moving variance 1. */
int nn_model_create(nn_model *m, const char *model_type, uint64_t seed);
void nn_model_free(nn_model *m);

/* Build another stack layer by layer, as Keras's Sequential.add does:
 * begin, add layers, then finish allocates and initialises the variables.
 * Each layer takes the previous output shape; Conv2D is 3x3, stride 1,
 * valid padding. The last layer must be Dense with softmax for backward. */
void nn_model_begin(nn_model *m, nn_shape input, int num_classes);
void nn_model_add_conv2d(nn_model *m, int filters, nn_activation act);
void nn_model_add_max_pooling2d(nn_model *m);
void nn_model_add_flatten(nn_model *m);
void nn_model_add_dense(nn_model *m, int units, nn_activation act);
void nn_model_add_batch_normalization(nn_model *m);
void nn_model_add_activation(nn_model *m, nn_activation act);
void nn_model_add_dropout(nn_model *m, float rate);
int nn_model_finish(nn_model *m, uint64_t seed);

/* Make the activation and scratch buffers hold BATCH examples. */
int nn_model_reserve(nn_model *m, int batch);

/* Precompute what inference can reuse from the weights (the Winograd form
 * of conv kernels), so that forward passes with TRAINING false run
 * faster. Call it again after the weights change; until then, inference
 * after a training forward pass runs without it. */
int nn_model_prepare_inference(nn_model *m);

/* Run the layers on X (batch, 28, 28, 1) and return the softmax output
 * (batch, num_classes), valid until the next call. TRAINING selects batch
 * statistics, dropout masks and the buffers backward needs. */
const float *nn_model_forward(nn_model *m, const float *x, int batch, bool training);

/* After a training forward pass, compute the sparse categorical
 * cross-entropy of LABELS from the last layer's logits and write
 * grads = SCALE * d(sum of per-example losses)/d(trainable). SCALE is
 * 1 / batch for one process; workers pass 1 and divide the all-reduced
 * sum by the job's example count.
 * Returns the sum of the per-example losses; *CORRECT (may be NULL)
 * receives the number of argmax hits. */
double nn_model_backward(nn_model *m, const float *x, const int32_t *labels, int batch,
                         float scale, int *correct);

/* Sum of per-example losses of the last forward pass (training or not),
 * and its accuracy count, without touching gradients. */
double nn_model_loss(const nn_model *m, const int32_t *labels, int batch, int *correct);

/* Set the dropout masks' step number and per-example ids for the next
 * training forward pass (IDS may be NULL for 0..batch-1). */
void nn_model_set_dropout_key(nn_model *m, uint64_t seed, uint64_t step, const uint64_t *ids,
                              int batch);

/* The Keras class name of a layer kind, e.g. "MaxPooling2D". */
const char *nn_layer_class_name(nn_layer_kind kind);

/* All variables in layer order, trainable and not. */
int nn_model_variables(nn_model *m, nn_param **vars, int capacity);
nn_param *nn_model_find_variable(nn_model *m, const char *name);

/* Print the Keras 2.11 model.summary() table. */
void nn_model_summary(const nn_model *m, FILE *out);

/* Sparse categorical cross-entropy from logits (batch, classes), computed
 * as logsumexp(z) - z[label]. Writes dz = SCALE * (softmax(z) - onehot)
 * when DZ is not NULL. Returns the loss sum; *CORRECT gets argmax hits. */
double nn_sparse_ce_from_logits(const float *logits, const int32_t *labels, int batch,
                                int classes, float scale, float *dz, int *correct);

#endif
