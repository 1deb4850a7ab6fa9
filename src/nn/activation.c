/*
 * Element-wise activations and the Activation layer. Gradients are taken
 * from the activation's output, so backward needs no saved input.
 */
#include "nn/layer.h"

#include <math.h>
#include <string.h>

static void softmax_rows(const float *z, float *y, size_t n, int row)
{
    for (size_t r = 0; r < n / (size_t)row; r++) {
        const float *zr = z + r * row;
        float *yr = y + r * row;
        float max = zr[0];
        for (int i = 1; i < row; i++)
            max = zr[i] > max ? zr[i] : max;
        float sum = 0.0f;
        for (int i = 0; i < row; i++) {
            yr[i] = expf(zr[i] - max);
            sum += yr[i];
        }
        float inv = 1.0f / sum;
        for (int i = 0; i < row; i++)
            yr[i] *= inv;
    }
}

void activation_apply(nn_activation act, const float *z, float *y, size_t n, int row)
{
    switch (act) {
    case NN_LINEAR:
        if (y != z)
            memmove(y, z, n * sizeof *y);
        break;
    case NN_RELU:
        for (size_t i = 0; i < n; i++)
            y[i] = z[i] > 0.0f ? z[i] : 0.0f;
        break;
    case NN_SIGMOID:
        for (size_t i = 0; i < n; i++)
            y[i] = 1.0f / (1.0f + expf(-z[i]));
        break;
    case NN_SOFTMAX:
        softmax_rows(z, y, n, row);
        break;
    }
}

void activation_gradient(nn_activation act, const float *y, const float *dy, float *dz, size_t n,
                         int row)
{
    switch (act) {
    case NN_LINEAR:
        if (dz != dy)
            memmove(dz, dy, n * sizeof *dz);
        break;
    case NN_RELU:
        for (size_t i = 0; i < n; i++)
            dz[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case NN_SIGMOID:
        for (size_t i = 0; i < n; i++)
            dz[i] = dy[i] * y[i] * (1.0f - y[i]);
        break;
    case NN_SOFTMAX:
        /* Jacobian-vector product of softmax: dz = y * (dy - <dy, y>). */
        for (size_t r = 0; r < n / (size_t)row; r++) {
            const float *yr = y + r * row;
            const float *dyr = dy + r * row;
            float dot = 0.0f;
            for (int i = 0; i < row; i++)
                dot += dyr[i] * yr[i];
            for (int i = 0; i < row; i++)
                dz[r * row + i] = yr[i] * (dyr[i] - dot);
        }
        break;
    }
}

const char *activation_name(nn_activation act)
{
    switch (act) {
    case NN_LINEAR:
        return "linear";
    case NN_RELU:
        return "relu";
    case NN_SIGMOID:
        return "sigmoid";
    case NN_SOFTMAX:
        return "softmax";
    }
    return "linear";
}

int activation_parse(const char *name, nn_activation *act)
{
    static const nn_activation all[] = {NN_LINEAR, NN_RELU, NN_SIGMOID, NN_SOFTMAX};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(name, activation_name(all[i])) == 0) {
            *act = all[i];
            return 0;
        }
    }
    return -1;
}

void activation_layer_forward(nn_layer *l, const float *x, float *y, int batch, bool training)
{
    (void)training;
    activation_apply(l->activation, x, y, (size_t)batch * nn_shape_size(l->out), l->out.c);
}

void activation_layer_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                               float *dx, int batch)
{
    (void)x;
    if (dx != NULL)
        activation_gradient(l->activation, y, dy, dx, (size_t)batch * nn_shape_size(l->out),
                            l->out.c);
}
