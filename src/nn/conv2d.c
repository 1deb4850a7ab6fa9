/*
 * Conv2D: square kernel, stride 1, "valid" padding, fused activation.
 * The batch is lowered, a tile of images at a time, to an im2col matrix
 * (images*OH*OW, kh*kw*cin + 1) whose column order (ky, kx, ci) matches
 * the Keras kernel layout and whose last column is 1. The kernel (kh*kw*cin, cout) and the bias (cout) are
 * adjacent in the model's variable buffer, so together they form one
 * (kh*kw*cin + 1, cout) matrix, and a single sgemm computes x * W + b in
 * forward and both gradients in backward.
 *
 * The forward pass takes two faster routes where they apply: Winograd
 * F(4x4, 3x3) (nn/winograd.c) for layers with several input channels, and
 * the direct method for layers with few, whose im2col rows are too short
 * for sgemm to run well. Training transforms the kernel for Winograd in
 * every forward pass; inference uses the transform that
 * nn_model_prepare_inference made, and im2col without one. Backward always
 * works on im2col.
 */
#include "nn/layer.h"
#include "nn/linear.h"
#include "nn/parallel.h"
#include "nn/simd.h"
#include "nn/winograd.h"

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
 * backward, col2im. Winograd's chunks hold as many images. */
#define TILE_FLOATS (256 * 1024)

int conv2d_tile_images(const nn_layer *l)
{
    const size_t per_image = (size_t)l->out.h * l->out.w * (l->kernel * l->kernel * l->in.c + 1);
    size_t images = TILE_FLOATS / per_image;
    return images > 0 ? (int)images : 1;
}

/* Scratch floats of one thread's part: an im2col tile or, when larger,
 * Winograd's transformed tiles and work area for as many images. */
size_t conv2d_part_floats(const nn_layer *l)
{
    const size_t images = (size_t)conv2d_tile_images(l);
    const size_t im2col = images * l->out.h * l->out.w * (l->kernel * l->kernel * l->in.c + 1);
    size_t winograd = 0;
    if (l->kernel == 3)
        winograd = images * winograd_floats_per_image(l->out.h, l->out.w, l->in.c, l->out.c) +
                   winograd_work_floats(l->in.c, l->out.c);
    return im2col > winograd ? im2col : winograd;
}

/* Make l->col hold one part's scratch per part; on failure fall back to
 * fewer parts (reserve always leaves room for one). Returns the parts to
 * use. */
static int reserve_tiles(nn_layer *l, int parts)
{
    if (l->col_parts >= parts)
        return parts;
    float *grown = realloc(l->col, (size_t)parts * conv2d_part_floats(l) * sizeof(float));
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

/* Direct convolution of one image, output channels in the vector lanes:
 * BLOCK pixels of a row share each kernel load. COUT is a multiple of
 * LANES. */
typedef float lanes_t __attribute__((vector_size(64), aligned(4)));
enum { LANES = 16, BLOCK = 8 };

/* ACC[0..PIXELS) += the kernel rows' taps over the PIXELS inputs from X
 * onwards, for output channels C0..C0+LANES. */
static inline void direct_conv_pixels(lanes_t *acc, int pixels, const float *x,
                                      const float *w, int iw, int cin, int cout, int c0)
{
    const int row_taps = 3 * cin;
    for (int ky = 0; ky < 3; ky++) {
        const float *xr = x + (size_t)ky * iw * cin;
        const float *wr = w + (size_t)ky * row_taps * cout + c0;
        for (int t = 0; t < row_taps; t++) {
            const lanes_t wv = *(const lanes_t *)(wr + (size_t)t * cout);
            for (int p = 0; p < pixels; p++)
                acc[p] += xr[(size_t)p * cin + t] * wv;
        }
    }
}

NN_MULTIVERSION
static void direct_conv_image(const float *restrict x, const float *restrict w,
                              const float *restrict bias, float *restrict y, int iw, int cin,
                              int oh, int ow, int cout)
{
    for (int oy = 0; oy < oh; oy++) {
        const float *xr = x + (size_t)oy * iw * cin;
        float *yr = y + (size_t)oy * ow * cout;
        for (int c0 = 0; c0 < cout; c0 += LANES) {
            const lanes_t b = *(const lanes_t *)(bias + c0);
            int ox = 0;
            for (; ox + BLOCK <= ow; ox += BLOCK) {
                lanes_t acc[BLOCK];
                for (int p = 0; p < BLOCK; p++)
                    acc[p] = b;
                direct_conv_pixels(acc, BLOCK, xr + (size_t)ox * cin, w, iw, cin, cout, c0);
                for (int p = 0; p < BLOCK; p++)
                    *(lanes_t *)(yr + (size_t)(ox + p) * cout + c0) = acc[p];
            }
            for (; ox < ow; ox++) {
                lanes_t acc = b;
                direct_conv_pixels(&acc, 1, xr + (size_t)ox * cin, w, iw, cin, cout, c0);
                *(lanes_t *)(yr + (size_t)ox * cout + c0) = acc;
            }
        }
    }
}

/* The direct method beats im2col and sgemm when the kernel spans few
 * input channels (3x3x1 on the first layer). */
static bool use_direct(const nn_layer *l)
{
    return l->kernel == 3 && l->in.c <= 2 && l->out.c % LANES == 0;
}

/* Winograd pays for layers with several input channels. */
static bool winograd_suits(const nn_layer *l)
{
    return l->kernel == 3 && l->in.c >= 8;
}

/* Winograd also needs several tiles per call: a map of 3x3 outputs is a
 * single tile, whose matrix products are too small for sgemm to run well. */
static bool use_winograd(const nn_layer *l, int batch)
{
    const int tiles = ((l->out.h + 3) / 4) * ((l->out.w + 3) / 4);
    return winograd_suits(l) && (long)tiles * batch >= 4;
}

/* Writes the Winograd form of the current kernel into l->winograd.
 * Returns -1 when out of memory. */
static int transform_kernel(nn_layer *l)
{
    if (l->winograd == NULL)
        l->winograd = malloc(winograd_kernel_floats(l->in.c, l->out.c) * sizeof(float));
    if (l->winograd == NULL)
        return -1;
    winograd_transform_kernel(l->params[0].value, l->in.c, l->out.c, l->winograd);
    return 0;
}

int conv2d_prepare_inference(nn_layer *l)
{
    l->winograd_ready = false;
    if (!winograd_suits(l))
        return 0;
    if (transform_kernel(l) != 0)
        return -1;
    l->winograd_ready = true;
    return 0;
}

/* The route of one forward pass; see the file comment. */
typedef enum { ROUTE_IM2COL, ROUTE_DIRECT, ROUTE_WINOGRAD } conv_route;

static conv_route choose_route(nn_layer *l, int batch, bool training)
{
    if (use_direct(l))
        return ROUTE_DIRECT;
    if (!use_winograd(l, batch))
        return ROUTE_IM2COL;
    if (!training)
        return l->winograd_ready ? ROUTE_WINOGRAD : ROUTE_IM2COL;
    /* Training changes the kernel after this pass, so the transform is
     * fresh for this pass only. Without memory for it, im2col still works. */
    l->winograd_ready = false;
    return transform_kernel(l) == 0 ? ROUTE_WINOGRAD : ROUTE_IM2COL;
}

void conv2d_forward(nn_layer *l, const float *x, float *y, int batch, bool training)
{
    const int k = l->kernel, cin = l->in.c, n = l->out.c;
    const int width = k * k * cin + 1;
    const size_t pixels = (size_t)l->out.h * l->out.w, in_size = nn_shape_size(l->in);
    const int tile_images = conv2d_tile_images(l);
    const int parts = reserve_tiles(l, nn_parts(batch));
    const conv_route route = choose_route(l, batch, training);

#pragma omp parallel for schedule(static) if (parts > 1)
    for (int t = 0; t < parts; t++) {
        long b0, b1;
        nn_split(batch, parts, t, &b0, &b1);
        float *col = l->col + (size_t)t * conv2d_part_floats(l);
        for (long b = b0; b < b1; b += tile_images) {
            const int images = (int)(b1 - b < tile_images ? b1 - b : tile_images);
            const size_t rows = (size_t)images * pixels;
            const float *in = x + (size_t)b * in_size;
            float *out = y + (size_t)b * pixels * n;
            switch (route) {
            case ROUTE_DIRECT:
                for (int i = 0; i < images; i++)
                    direct_conv_image(in + i * in_size, l->params[0].value, l->params[1].value,
                                      out + i * pixels * n, l->in.w, cin, l->out.h, l->out.w, n);
                break;
            case ROUTE_WINOGRAD: {
                const size_t scratch = (size_t)images * winograd_floats_per_image(
                                                            l->out.h, l->out.w, cin, n);
                winograd_conv(l->winograd, l->params[1].value, in, out, images, l->in.h,
                              l->in.w, cin, n, col, col + scratch);
                break;
            }
            case ROUTE_IM2COL:
                im2col(in, col, images, l->in.h, l->in.w, cin, k, l->out.h, l->out.w);
                /* params[0] (kernel) is followed by params[1] (bias) in memory. */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, n, width, 1.0f,
                            col, width, l->params[0].value, n, 0.0f, out, n);
                break;
            }
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
        float *col = l->col + (size_t)t * conv2d_part_floats(l);
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
