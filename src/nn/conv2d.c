/*
 * Conv2D: square kernel, stride 1, "valid" padding, fused activation.
 * The batch is lowered to one im2col matrix (B*OH*OW, kh*kw*cin + 1) whose
 * column order (ky, kx, ci) matches the Keras kernel layout and whose last
 * column is 1. The kernel (kh*kw*cin, cout) and the bias (cout) are
 * adjacent in the model's variable buffer, so together they form one
 * (kh*kw*cin + 1, cout) matrix, and a single sgemm computes x * W + b in
 * forward and both gradients in backward.
 */
#include "nn/layer.h"
#include "nn/linear.h"

#include <cblas.h>
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

void conv2d_forward(nn_layer *l, const float *x, float *y, int batch, bool training)
{
    (void)training;
    const int k = l->kernel, cin = l->in.c, n = l->out.c;
    const int width = k * k * cin + 1;
    const size_t m = (size_t)batch * l->out.h * l->out.w;

    im2col(x, l->col, batch, l->in.h, l->in.w, cin, k, l->out.h, l->out.w);
    /* params[0] (kernel) is followed by params[1] (bias) in memory. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, n, width, 1.0f, l->col, width,
                l->params[0].value, n, 0.0f, y, n);
    if (!l->relu_to_next)
        activation_apply(l->activation, y, y, m * n, n);
}

void conv2d_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                     int batch)
{
    (void)x;
    const int k = l->kernel, cin = l->in.c, n = l->out.c;
    const int width = k * k * cin + 1;
    const size_t m = (size_t)batch * l->out.h * l->out.w;
    const float *dz = dy;

    if (!l->relu_to_next) {
        activation_gradient(l->activation, y, dy, l->dz, m * n, n);
        dz = l->dz;
    }
    /* d[kernel; bias] = col^T dz, written to the adjacent gradients. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, width, n, (int)m, 1.0f, l->col, width,
                dz, n, 0.0f, l->params[0].grad, n);
    if (dx == NULL)
        return;
    /* The im2col matrix is no longer needed, so it receives dz W^T. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, width - 1, n, 1.0f, dz, n,
                l->params[0].value, n, 0.0f, l->col, width);
    col2im(l->col, dx, batch, l->in.h, l->in.w, cin, k, l->out.h, l->out.w);
}
