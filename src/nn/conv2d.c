/*
 * Conv2D: square kernel, stride 1, "valid" padding, fused activation.
 * The batch is lowered, a tile of images at a time, to an im2col matrix
 * (images*OH*OW, kh*kw*cin + 1) whose column order (ky, kx, ci) matches
 * the Keras kernel layout and whose last column is 1. The kernel (kh*kw*cin, cout) and the bias (cout) are
 * adjacent in the model's variable buffer, so together they form one
 * (kh*kw*cin + 1, cout) matrix, and a single sgemm computes x * W + b in
 * forward and both gradients in backward.
 */
#include "nn/layer.h"
#include "nn/linear.h"
#include "nn/parallel.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* With NHWC and stride 1, the kw*cin inputs under one kernel row are
 * contiguous, so each output pixel copies kh runs of kw*cin floats. */
static void im2col(const float *x, float *col, int batch, int ih, int iw, int cin, int k, int oh,
                   int ow)
{
    const size_t run = (size_t)k * cin, width = run * k + 1;
    for (int b = 0; b < batch; b++) {
        const float *xb = x + (size_t)b * ih * iw * cin;
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                float *row = col + (((size_t)b * oh + oy) * ow + ox) * width;
                for (int ky = 0; ky < k; ky++)
                    memcpy(row + ky * run, xb + ((size_t)(oy + ky) * iw + ox) * cin,
                           run * sizeof *row);
                row[width - 1] = 1.0f;
            }
        }
    }
}

/* Sum the column gradients (rows of width kh*kw*cin + 1; the last column
 * belongs to the bias and is skipped) back onto the input positions. */
static void col2im(const float *col, float *dx, int batch, int ih, int iw, int cin, int k, int oh,
                   int ow)
{
    const size_t run = (size_t)k * cin, width = run * k + 1;
    memset(dx, 0, (size_t)batch * ih * iw * cin * sizeof *dx);
    for (int b = 0; b < batch; b++) {
        float *dxb = dx + (size_t)b * ih * iw * cin;
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                const float *row = col + (((size_t)b * oh + oy) * ow + ox) * width;
                for (int ky = 0; ky < k; ky++) {
                    float *dst = dxb + ((size_t)(oy + ky) * iw + ox) * cin;
                    const float *src = row + ky * run;
                    for (size_t i = 0; i < run; i++)
                        dst[i] += src[i];
                }
            }
        }
    }
}

/* Images per im2col tile: about TILE_FLOATS floats (1 MiB), so a tile
 * stays in cache between im2col, the GEMM that reads it and, in
 * backward, col2im. */
#define TILE_FLOATS (256 * 1024)

int conv2d_tile_images(const nn_layer *l)
{
    const size_t per_image = (size_t)l->out.h * l->out.w * (l->kernel * l->kernel * l->in.c + 1);
    size_t images = TILE_FLOATS / per_image;
    return images > 0 ? (int)images : 1;
}

/* Make l->col hold one tile per part; on failure fall back to fewer
 * parts (reserve always leaves room for one). Returns the parts to use. */
static int reserve_tiles(nn_layer *l, int parts)
{
    if (l->col_parts >= parts)
        return parts;
    const size_t tile = (size_t)conv2d_tile_images(l) * l->out.h * l->out.w *
                        (l->kernel * l->kernel * l->in.c + 1);
    float *grown = realloc(l->col, (size_t)parts * tile * sizeof(float));
    if (grown == NULL)
        return l->col_parts;
    l->col = grown;
    l->col_parts = parts;
    return parts;
}

/* Room for one partial kernel gradient per part after the first. */
static int reserve_partials(nn_layer *l, int parts, size_t size)
{
    if (l->partial_parts >= parts)
        return 0;
    float *grown = realloc(l->partial, (size_t)(parts - 1) * size * sizeof(float));
    if (grown == NULL)
        return -1;
    l->partial = grown;
    l->partial_parts = parts;
    return 0;
}

void conv2d_forward(nn_layer *l, const float *x, float *y, int batch, bool training)
{
    (void)training;
    const int k = l->kernel, cin = l->in.c, n = l->out.c;
    const int width = k * k * cin + 1;
    const size_t pixels = (size_t)l->out.h * l->out.w, in_size = nn_shape_size(l->in);
    const int tile_images = conv2d_tile_images(l);
    const int parts = reserve_tiles(l, nn_parts(batch));

#pragma omp parallel for schedule(static) if (parts > 1)
    for (int t = 0; t < parts; t++) {
        long b0, b1;
        nn_split(batch, parts, t, &b0, &b1);
        float *col = l->col + (size_t)t * tile_images * pixels * width;
        for (long b = b0; b < b1; b += tile_images) {
            const int images = (int)(b1 - b < tile_images ? b1 - b : tile_images);
            const size_t rows = (size_t)images * pixels;
            float *out = y + (size_t)b * pixels * n;
            im2col(x + (size_t)b * in_size, col, images, l->in.h, l->in.w, cin, k, l->out.h,
                   l->out.w);
            /* params[0] (kernel) is followed by params[1] (bias) in memory. */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, n, width, 1.0f,
                        col, width, l->params[0].value, n, 0.0f, out, n);
            if (!l->relu_to_next)
                activation_apply(l->activation, out, out, rows * n, n);
        }
    }
}

void conv2d_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                     int batch)
{
    const int k = l->kernel, cin = l->in.c, n = l->out.c;
    const int width = k * k * cin + 1;
    const size_t pixels = (size_t)l->out.h * l->out.w, in_size = nn_shape_size(l->in);
    const size_t grad_size = (size_t)width * n;
    const int tile_images = conv2d_tile_images(l);
    int parts = reserve_tiles(l, nn_parts(batch));
    if (parts > 1 && reserve_partials(l, parts, grad_size) != 0)
        parts = 1; /* out of memory for the partial sums: run serially */

#pragma omp parallel for schedule(static) if (parts > 1)
    for (int t = 0; t < parts; t++) {
        long b0, b1;
        nn_split(batch, parts, t, &b0, &b1);
        float *col = l->col + (size_t)t * tile_images * pixels * width;
        /* d[kernel; bias] = col^T dz, written to the adjacent gradients;
         * parts after the first write partial sums, added below. */
        float *grad = t == 0 ? l->params[0].grad : l->partial + (size_t)(t - 1) * grad_size;
        if (b0 == b1)
            memset(grad, 0, grad_size * sizeof *grad);
        for (long b = b0; b < b1; b += tile_images) {
            const int images = (int)(b1 - b < tile_images ? b1 - b : tile_images);
            const size_t row0 = (size_t)b * pixels, rows = (size_t)images * pixels;
            const float *dz = dy + row0 * n;
            if (!l->relu_to_next) {
                activation_gradient(l->activation, y + row0 * n, dz, l->dz + row0 * n, rows * n,
                                    n);
                dz = l->dz + row0 * n;
            }
            /* Forward did not keep the im2col matrix, so it is rebuilt
             * here, one tile at a time. */
            im2col(x + (size_t)b * in_size, col, images, l->in.h, l->in.w, cin, k, l->out.h,
                   l->out.w);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, width, n, (int)rows, 1.0f, col,
                        width, dz, n, b == b0 ? 0.0f : 1.0f, grad, n);
            if (dx == NULL)
                continue;
            /* The tile's im2col rows are no longer needed, so they receive
             * dz W^T before col2im sums them onto dx. */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, width - 1, n, 1.0f,
                        dz, n, l->params[0].value, n, 0.0f, col, width);
            col2im(col, dx + (size_t)b * in_size, images, l->in.h, l->in.w, cin, k, l->out.h,
                   l->out.w);
        }
    }
    float *grad = l->params[0].grad;
    for (int t = 1; t < parts; t++) {
        const float *partial = l->partial + (size_t)(t - 1) * grad_size;
        for (size_t i = 0; i < grad_size; i++)
            grad[i] += partial[i];
    }
}
