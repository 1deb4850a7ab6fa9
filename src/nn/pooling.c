/*
 * MaxPooling2D (2x2, stride 2, "valid": an odd last row or column is
 * dropped, as Keras does) and Flatten. Flatten of NHWC data is a copy,
 * because Keras flattens in (H, W, C) order too.
 */
#include "nn/layer.h"
#include "nn/parallel.h"
#include "nn/simd.h"

#include <math.h>
#include <string.h>

/* Pool one example's map XB into YB, with CODES the winning window
 * position of each output (4 for none). */
NN_MULTIVERSION
static void max_pool_example(const float *restrict xb, float *restrict yb,
                             int32_t *restrict codes, int iw, int c, int oh, int ow,
                             float floor_value)
{
    for (int oy = 0; oy < oh; oy++) {
        for (int ox = 0; ox < ow; ox++) {
            const size_t o = ((size_t)oy * ow + ox) * c;
            const float *p00 = xb + ((size_t)(2 * oy) * iw + 2 * ox) * c;
            const float *p01 = p00 + c, *p10 = p00 + (size_t)iw * c, *p11 = p10 + c;
            float *restrict yo = yb + o;
            int32_t *restrict code = codes + o;
            /* Arithmetic instead of branches, so the channel loop
             * vectorizes. Ties keep the first position in row-major
             * order; a relu_input window whose max is <= 0 gets code 4
             * (no gradient), as ReLU's gradient at 0 is 0. */
            for (int ch = 0; ch < c; ch++) {
                float v00 = p00[ch], v01 = p01[ch], v10 = p10[ch], v11 = p11[ch];
                float top = v00 >= v01 ? v00 : v01, bottom = v10 >= v11 ? v10 : v11;
                int32_t top_at = v01 > v00, bottom_at = 2 + (v11 > v10);
                float best = top >= bottom ? top : bottom;
                int32_t at = top >= bottom ? top_at : bottom_at;
                yo[ch] = best > floor_value ? best : floor_value;
                code[ch] = best > floor_value ? at : 4;
            }
        }
    }
}

void max_pooling2d_forward(nn_layer *l, const float *x, float *y, int batch, bool training)
{
    (void)training;
    const int ih = l->in.h, iw = l->in.w, c = l->in.c, oh = l->out.h, ow = l->out.w;
    const float floor_value = l->relu_input ? 0.0f : -INFINITY;
    const size_t in_size = (size_t)ih * iw * c, out_size = (size_t)oh * ow * c;

#pragma omp parallel for schedule(static) if (nn_parts(batch) > 1)
    for (int b = 0; b < batch; b++)
        max_pool_example(x + b * in_size, y + b * out_size, l->argmax + b * out_size, iw, c, oh,
                         ow, floor_value);
}

/* Send each of one example's output gradients DYB to the window position
 * that won (CODES). The restrict parameters let the compiler vectorize
 * over channels. */
NN_MULTIVERSION
static void max_pool_backward_example(const float *restrict dyb, const int32_t *restrict codes,
                                      float *restrict dxb, int iw, int c, int oh, int ow)
{
    for (int oy = 0; oy < oh; oy++) {
        for (int ox = 0; ox < ow; ox++) {
            const size_t o = ((size_t)oy * ow + ox) * c;
            float *restrict q00 = dxb + ((size_t)(2 * oy) * iw + 2 * ox) * c;
            float *restrict q01 = q00 + c;
            float *restrict q10 = q00 + (size_t)iw * c;
            float *restrict q11 = q10 + c;
            for (int ch = 0; ch < c; ch++) {
                float gv = dyb[o + ch];
                float at = (float)codes[o + ch];
                q00[ch] = at == 0.0f ? gv : 0.0f;
                q01[ch] = at == 1.0f ? gv : 0.0f;
                q10[ch] = at == 2.0f ? gv : 0.0f;
                q11[ch] = at == 3.0f ? gv : 0.0f;
            }
        }
    }
}

void max_pooling2d_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                            float *dx, int batch)
{
    (void)x;
    (void)y;
    if (dx == NULL)
        return;
    const int ih = l->in.h, iw = l->in.w, c = l->in.c, oh = l->out.h, ow = l->out.w;
    const size_t in_size = (size_t)ih * iw * c, out_size = (size_t)oh * ow * c;

    /* Rows and columns that no window covers get no gradient. */
#pragma omp parallel for schedule(static) if (nn_parts(batch) > 1)
    for (int b = 0; b < batch; b++) {
        float *dxb = dx + b * in_size;
        if (ih != 2 * oh || iw != 2 * ow)
            memset(dxb, 0, in_size * sizeof *dxb);
        max_pool_backward_example(dy + b * out_size, l->argmax + b * out_size, dxb, iw, c, oh,
                                  ow);
    }
}

void flatten_forward(nn_layer *l, const float *x, float *y, int batch, bool training)
{
    (void)training;
    memcpy(y, x, (size_t)batch * nn_shape_size(l->in) * sizeof *y);
}

void flatten_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                      int batch)
{
    (void)x;
    (void)y;
    if (dx != NULL)
        memcpy(dx, dy, (size_t)batch * nn_shape_size(l->in) * sizeof *dx);
}
