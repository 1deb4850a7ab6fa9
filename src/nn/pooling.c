/*
 * MaxPooling2D (2x2, stride 2, "valid": an odd last row or column is
 * dropped, as Keras does) and Flatten. Flatten of NHWC data is a copy,
 * because Keras flattens in (H, W, C) order too.
 */
#include "nn/layer.h"
#include "nn/parallel.h"

#include <math.h>
#include <string.h>

void max_pooling2d_forward(nn_layer *l, const float *x, float *y, int batch, bool training)
{
    (void)training;
    const int ih = l->in.h, iw = l->in.w, c = l->in.c, oh = l->out.h, ow = l->out.w;
    const float floor_value = l->relu_input ? 0.0f : -INFINITY;

#pragma omp parallel for schedule(static) if (nn_parts(batch) > 1)
    for (int b = 0; b < batch; b++) {
        const float *xb = x + (size_t)b * ih * iw * c;
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                const size_t o = (((size_t)b * oh + oy) * ow + ox) * c;
                const float *p00 = xb + ((size_t)(2 * oy) * iw + 2 * ox) * c;
                const float *p01 = p00 + c, *p10 = p00 + (size_t)iw * c, *p11 = p10 + c;
                float *restrict yo = y + o;
                int32_t *restrict code = l->argmax + o;
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
}

/* Send each output gradient to the window position that won; the
 * restrict parameters let the compiler vectorize over channels. */
static void route_gradient(const float *restrict g, const int32_t *restrict code,
                           float *restrict q00, float *restrict q01, float *restrict q10,
                           float *restrict q11, int c)
{
    for (int ch = 0; ch < c; ch++) {
        float gv = g[ch];
        float at = (float)code[ch];
        q00[ch] = at == 0.0f ? gv : 0.0f;
        q01[ch] = at == 1.0f ? gv : 0.0f;
        q10[ch] = at == 2.0f ? gv : 0.0f;
        q11[ch] = at == 3.0f ? gv : 0.0f;
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

    /* Rows and columns that no window covers get no gradient. */
#pragma omp parallel for schedule(static) if (nn_parts(batch) > 1)
    for (int b = 0; b < batch; b++) {
        float *dxb = dx + (size_t)b * ih * iw * c;
        if (ih != 2 * oh || iw != 2 * ow)
            memset(dxb, 0, (size_t)ih * iw * c * sizeof *dxb);
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                const size_t o = (((size_t)b * oh + oy) * ow + ox) * c;
                float *q00 = dxb + ((size_t)(2 * oy) * iw + 2 * ox) * c;
                float *q01 = q00 + c, *q10 = q00 + (size_t)iw * c, *q11 = q10 + c;
                route_gradient(dy + o, l->argmax + o, q00, q01, q10, q11, c);
            }
        }
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
