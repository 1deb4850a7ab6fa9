/*
 * Layers of the engine. Activations are NHWC float32, batch first: a
 * feature map of shape (H, W, C) for B examples is B*H*W*C floats with C
 * fastest, as Keras stores them. Kernels keep the Keras layouts too:
 * Conv2D (kh, kw, cin, cout) and Dense (in, out), both row-major.
 *
 * Each layer kind has a forward and a backward function in one file:
 *   <kind>_forward(layer, x, y, batch, training)
 *   <kind>_backward(layer, x, y, dy, dx, batch)
 * backward overwrites the layer's parameter gradients (it does not add to
 * them) and writes dx unless dx is NULL, which the first layer passes
 * because nothing needs the gradient of the input images.
 */
#ifndef DISTML_NN_LAYER_H
#define DISTML_NN_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NN_MAX_PARAMS 4

typedef enum {
    NN_CONV2D,
    NN_MAX_POOLING2D,
    NN_FLATTEN,
    NN_DENSE,
    NN_ACTIVATION,
    NN_BATCH_NORMALIZATION,
    NN_DROPOUT,
} nn_layer_kind;

typedef enum {
    NN_LINEAR,
    NN_RELU,
    NN_SIGMOID,
    NN_SOFTMAX,
} nn_activation;

/* Shape of one example: rank 3 (H, W, C) or rank 1 (C, with H = W = 1). */
typedef struct {
    int rank;
    int h, w, c;
} nn_shape;

/* One named variable of a layer. VALUE and GRAD point into the model's
 * flat buffers, so the optimizer and the all-reduce see one array each. */
typedef struct {
    char name[64]; /* Keras variable name, e.g. "conv2d_1/kernel" */
    int ndim;
    int shape[4];
    size_t size;
    bool trainable;
    size_t offset; /* into the model's trainable or non-trainable buffer */
    float *value;
    float *grad; /* NULL for non-trainable variables */
} nn_param;

typedef struct nn_layer {
    nn_layer_kind kind;
    char name[32]; /* Keras layer name, e.g. "max_pooling2d_1" */
    nn_shape in, out;
    nn_activation activation; /* Conv2D, Dense and Activation */
    int filters;              /* Conv2D */
    int kernel;               /* Conv2D kernel height and width (3) */
    int units;                /* Dense */
    float rate;               /* Dropout */
    float momentum, epsilon;  /* BatchNormalization */

    nn_param params[NN_MAX_PARAMS];
    int num_params;

    /* A Conv2D with ReLU followed by MaxPooling2D hands its ReLU to the
     * pooling layer, because relu(max(z)) = max(relu(z)): the conv layer
     * then outputs z, and the pooling layer's backward already returns
     * dL/dz. The model sets both flags (relu_to_next on the conv,
     * relu_input on the pooling layer). */
    bool relu_to_next;
    bool relu_input;

    /* Scratch sized for the model's maximum batch (see nn_model_reserve). */
    float *col;      /* Conv2D im2col tiles, one per thread part, each
                      * (images*OH*OW, kh*kw*cin + 1): the last column is 1,
                      * so the bias row that follows the kernel in memory is
                      * added by the same sgemm */
    int col_parts;   /* tiles that col has room for */
    float *dz;       /* gradient before the fused activation (B, out) */
    int32_t *argmax; /* MaxPooling2D: which of the 4 window positions won,
                      * or 4 when relu_input zeroed the output */
    float *mask;     /* Dropout: 0 or 1/(1-rate) per output */
    float *xhat;     /* BatchNormalization: normalised input (B, out) */
    float *batch_mean, *batch_invstd; /* BatchNormalization: per channel */
    float *logits;   /* Dense with softmax: pre-activation outputs */
    float *partial;  /* Conv2D: kernel gradients of the batch parts after
                      * the first, summed at the end of backward */
    int partial_parts;

    /* Conv2D: the kernel in Winograd form, or NULL. A training forward pass
     * transforms the kernel anew for itself. winograd_ready is true while
     * the buffer contains the current kernel for inference: only
     * conv2d_prepare_inference sets it, because training changes the
     * weights after each step. */
    float *winograd;
    bool winograd_ready;

    /* Dropout masks are a function of (seed, step, example id, unit), so a
     * batch split across workers draws the same mask per example as one
     * worker running the whole batch. The model sets these before a
     * training forward pass. */
    uint64_t dropout_seed;
    uint64_t dropout_step;
    const uint64_t *example_ids; /* one per example; NULL means 0..B-1 */
} nn_layer;

static inline size_t nn_shape_size(nn_shape s)
{
    return (size_t)s.h * (size_t)s.w * (size_t)s.c;
}

/* Images per im2col tile of a Conv2D layer, and the scratch floats that
 * each thread's part of the batch needs. */
int conv2d_tile_images(const nn_layer *l);
size_t conv2d_part_floats(const nn_layer *l);
/* Transform the kernel for Winograd inference where that pays; call again
 * after the kernel changes. Returns -1 when out of memory. */
int conv2d_prepare_inference(nn_layer *l);
void conv2d_forward(nn_layer *l, const float *x, float *y, int batch, bool training);
void conv2d_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                     int batch);
void max_pooling2d_forward(nn_layer *l, const float *x, float *y, int batch, bool training);
void max_pooling2d_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                            float *dx, int batch);
void flatten_forward(nn_layer *l, const float *x, float *y, int batch, bool training);
void flatten_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                      int batch);
void dense_forward(nn_layer *l, const float *x, float *y, int batch, bool training);
void dense_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                    int batch);
void activation_layer_forward(nn_layer *l, const float *x, float *y, int batch, bool training);
void activation_layer_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                               float *dx, int batch);
void batch_norm_forward(nn_layer *l, const float *x, float *y, int batch, bool training);
void batch_norm_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                         float *dx, int batch);
void dropout_forward(nn_layer *l, const float *x, float *y, int batch, bool training);
void dropout_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                      int batch);

/* Element-wise activations over N values (activation.c). Softmax works on
 * rows of ROW values; the others ignore ROW. */
void activation_apply(nn_activation act, const float *z, float *y, size_t n, int row);
/* dz = dy * act'(y), from the activation's output Y. */
void activation_gradient(nn_activation act, const float *y, const float *dy, float *dz, size_t n,
                         int row);
const char *activation_name(nn_activation act);
int activation_parse(const char *name, nn_activation *act);

#endif
