/*
 * Element-wise activations and the Activation layer. Gradients are taken
 * from the activation's output, so backward needs no saved input.
 */
#include "nn/fast_exp.h"
#include "nn/layer.h"
#include "nn/parallel.h"
#include "nn/simd.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* The element-wise loops below take restrict pointers and load every
 * operand unconditionally, so GCC vectorizes them (with
 * -fno-trapping-math, set in CMakeLists.txt). In-place calls (y == z) are
 * fine for these one-pass loops. */
NN_MULTIVERSION
static void relu_forward(const float *z, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = z[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

NN_MULTIVERSION
static void sigmoid_forward(const float *z, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = 1.0f / (1.0f + nn_fast_expf(-z[i]));
}

NN_MULTIVERSION
static void relu_gradient(const float *restrict y, const float *restrict dy, float *restrict dz,
                          size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = dy[i];
        dz[i] = y[i] > 0.0f ? g : 0.0f;
    }
}

NN_MULTIVERSION
static void sigmoid_gradient(const float *restrict y, const float *restrict dy,
                             float *restrict dz, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dz[i] = dy[i] * y[i] * (1.0f - y[i]);
}

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

static void apply_serial(nn_activation act, const float *z, float *y, size_t n, int row)
{
    switch (act) {
    case NN_LINEAR:
        if (y != z)
            memmove(y, z, n * sizeof *y);
        break;
    case NN_RELU:
        relu_forward(z, y, n);
        break;
    case NN_SIGMOID:
        sigmoid_forward(z, y, n);
        break;
    case NN_SOFTMAX:
        softmax_rows(z, y, n, row);
        break;
    }
}

static void gradient_serial(nn_activation act, const float *y, const float *dy, float *dz,
                            size_t n, int row)
{
    switch (act) {
    case NN_LINEAR:
        if (dz != dy)
            memmove(dz, dy, n * sizeof *dz);
        break;
    case NN_RELU:
        relu_gradient(y, dy, dz, n);
        break;
    case NN_SIGMOID:
        sigmoid_gradient(y, dy, dz, n);
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

/* Parts for N values in rows of ROW: one per thread for 64 rows or more.
 * Inside a layer's own parallel part the loop runs serially, because
 * nested OpenMP regions are off by default. */
static int activation_parts(size_t n, int row)
{
    const size_t rows = n / (size_t)row;
    if (rows < 64)
        return 1;
    return nn_parts(rows > INT_MAX ? INT_MAX : (int)rows);
}

void activation_apply(nn_activation act, const float *z, float *y, size_t n, int row)
{
    const long rows = (long)(n / (size_t)row);
    const int parts = activation_parts(n, row);
#pragma omp parallel for schedule(static) if (parts > 1)
    for (int t = 0; t < parts; t++) {
        long r0, r1;
        nn_split(rows, parts, t, &r0, &r1);
        apply_serial(act, z + r0 * row, y + r0 * row, (size_t)(r1 - r0) * row, row);
    }
}

void activation_gradient(nn_activation act, const float *y, const float *dy, float *dz, size_t n,
                         int row)
{
    const long rows = (long)(n / (size_t)row);
    const int parts = activation_parts(n, row);
#pragma omp parallel for schedule(static) if (parts > 1)
    for (int t = 0; t < parts; t++) {
        long r0, r1;
        nn_split(rows, parts, t, &r0, &r1);
        gradient_serial(act, y + r0 * row, dy + r0 * row, dz + r0 * row, (size_t)(r1 - r0) * row,
                        row);
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
