/*
 * BatchNormalization over the channel axis of NHWC data (Keras axis=-1).
 * Training normalises with the batch's statistics (over B*H*W values per
 * channel) and updates the moving averages; inference uses the moving
 * averages. Variables: gamma, beta (trainable), moving_mean,
 * moving_variance (non-trainable), in Keras's order.
 */
#include "nn/layer.h"

#include <math.h>
#include <string.h>

void batch_norm_forward(nn_layer *l, const float *x, float *y, int batch, bool training)
{
    const int c = l->out.c;
    const size_t n = (size_t)batch * l->out.h * l->out.w;
    const float *gamma = l->params[0].value, *beta = l->params[1].value;
    float *moving_mean = l->params[2].value, *moving_var = l->params[3].value;

    if (!training) {
        for (int ch = 0; ch < c; ch++) {
            float scale = gamma[ch] / sqrtf(moving_var[ch] + l->epsilon);
            l->batch_invstd[ch] = scale; /* reused as the per-channel scale */
            l->batch_mean[ch] = beta[ch] - moving_mean[ch] * scale;
        }
        for (size_t i = 0; i < n; i++)
            for (int ch = 0; ch < c; ch++)
                y[i * c + ch] = x[i * c + ch] * l->batch_invstd[ch] + l->batch_mean[ch];
        return;
    }

    double sum[c], sum_sq[c];
    memset(sum, 0, sizeof sum);
    memset(sum_sq, 0, sizeof sum_sq);
    for (size_t i = 0; i < n; i++) {
        for (int ch = 0; ch < c; ch++) {
            double v = x[i * c + ch];
            sum[ch] += v;
            sum_sq[ch] += v * v;
        }
    }
    for (int ch = 0; ch < c; ch++) {
        double mean = sum[ch] / (double)n;
        double var = sum_sq[ch] / (double)n - mean * mean;
        if (var < 0.0)
            var = 0.0;
        l->batch_mean[ch] = (float)mean;
        l->batch_invstd[ch] = (float)(1.0 / sqrt(var + l->epsilon));
        /* NOTE: the moving variance takes the unbiased batch variance
         * (n / (n - 1)), as TensorFlow's fused batch-norm kernel does. */
        double unbiased = n > 1 ? var * (double)n / (double)(n - 1) : var;
        moving_mean[ch] = moving_mean[ch] * l->momentum + (float)mean * (1.0f - l->momentum);
        moving_var[ch] = moving_var[ch] * l->momentum + (float)unbiased * (1.0f - l->momentum);
    }
    for (size_t i = 0; i < n; i++) {
        for (int ch = 0; ch < c; ch++) {
            float xh = (x[i * c + ch] - l->batch_mean[ch]) * l->batch_invstd[ch];
            l->xhat[i * c + ch] = xh;
            y[i * c + ch] = gamma[ch] * xh + beta[ch];
        }
    }
}

void batch_norm_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                         int batch)
{
    (void)x;
    (void)y;
    const int c = l->out.c;
    const size_t n = (size_t)batch * l->out.h * l->out.w;
    const float *gamma = l->params[0].value;
    float *dgamma = l->params[0].grad, *dbeta = l->params[1].grad;

    double sum_dy[c], sum_dy_xhat[c];
    memset(sum_dy, 0, sizeof sum_dy);
    memset(sum_dy_xhat, 0, sizeof sum_dy_xhat);
    for (size_t i = 0; i < n; i++) {
        for (int ch = 0; ch < c; ch++) {
            sum_dy[ch] += dy[i * c + ch];
            sum_dy_xhat[ch] += (double)dy[i * c + ch] * l->xhat[i * c + ch];
        }
    }
    for (int ch = 0; ch < c; ch++) {
        dbeta[ch] = (float)sum_dy[ch];
        dgamma[ch] = (float)sum_dy_xhat[ch];
    }
    if (dx == NULL)
        return;
    /* dx = gamma * invstd / n * (n * dy - sum(dy) - xhat * sum(dy * xhat)) */
    float k[c], mean_dy[c], mean_dy_xhat[c];
    for (int ch = 0; ch < c; ch++) {
        k[ch] = gamma[ch] * l->batch_invstd[ch];
        mean_dy[ch] = (float)(sum_dy[ch] / (double)n);
        mean_dy_xhat[ch] = (float)(sum_dy_xhat[ch] / (double)n);
    }
    for (size_t i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            dx[i * c + ch] = k[ch] * (dy[i * c + ch] - mean_dy[ch] -
                                      l->xhat[i * c + ch] * mean_dy_xhat[ch]);
}
