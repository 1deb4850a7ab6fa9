/*
 * BatchNormalization over the channel axis of NHWC data (Keras axis=-1).
 * Training normalises with the batch's statistics (over B*H*W values per
 * channel) and updates the moving averages; inference uses the moving
 * averages. Variables: gamma, beta (trainable), moving_mean,
 * moving_variance (non-trainable), in Keras's order.
 */
#include "nn/layer.h"
#include "nn/parallel.h"
#include "nn/simd.h"

#include <math.h>
#include <string.h>

/* Rows summed in float before being added to the double totals: short
 * enough to keep float rounding small, long enough to vectorize. */
#define BLOCK_ROWS 64

/* Per-channel sums of A and A * B over N rows of C channels (B may be A);
 * the channel loop is innermost and contiguous, so it vectorizes. */
NN_MULTIVERSION
static void channel_sums(const float *restrict a, const float *restrict b, size_t n, int c,
                         double *restrict sum_a, double *restrict sum_ab)
{
    float block_a[c], block_ab[c];
    for (int ch = 0; ch < c; ch++)
        sum_a[ch] = sum_ab[ch] = 0.0;
    for (size_t start = 0; start < n; start += BLOCK_ROWS) {
        size_t end = start + BLOCK_ROWS < n ? start + BLOCK_ROWS : n;
        for (int ch = 0; ch < c; ch++)
            block_a[ch] = block_ab[ch] = 0.0f;
        for (size_t i = start; i < end; i++) {
            const float *ar = a + i * c, *br = b + i * c;
            for (int ch = 0; ch < c; ch++) {
                block_a[ch] += ar[ch];
                block_ab[ch] += ar[ch] * br[ch];
            }
        }
        for (int ch = 0; ch < c; ch++) {
            sum_a[ch] += block_a[ch];
            sum_ab[ch] += block_ab[ch];
        }
    }
}

/* Parts for N rows: one per thread from 1024 rows on. */
static int row_parts(size_t n)
{
    return n >= 1024 ? nn_threads() : 1;
}

/* channel_sums over one part of the rows per thread, then added up. */
static void channel_sums_parallel(const float *a, const float *b, size_t n, int c, double *sum_a,
                                  double *sum_ab)
{
    const int parts = row_parts(n);
    double part_a[parts][c], part_ab[parts][c];
#pragma omp parallel for schedule(static) if (parts > 1)
    for (int t = 0; t < parts; t++) {
        long r0, r1;
        nn_split((long)n, parts, t, &r0, &r1);
        channel_sums(a + r0 * c, b + r0 * c, (size_t)(r1 - r0), c, part_a[t], part_ab[t]);
    }
    for (int ch = 0; ch < c; ch++) {
        sum_a[ch] = sum_ab[ch] = 0.0;
        for (int t = 0; t < parts; t++) {
            sum_a[ch] += part_a[t][ch];
            sum_ab[ch] += part_ab[t][ch];
        }
    }
}

/* Per channel, over rows [R0, R1): xhat = (x - mean) * invstd and
 * y = gamma * xhat + beta. */
NN_MULTIVERSION
static void normalize_part(const float *restrict x, float *restrict y, float *restrict xhat,
                           long r0, long r1, int c, const float *restrict mean,
                           const float *restrict invstd, const float *restrict gamma,
                           const float *restrict beta)
{
    for (long i = r0; i < r1; i++) {
        const float *xr = x + i * c;
        float *yr = y + i * c, *hr = xhat + i * c;
        for (int ch = 0; ch < c; ch++) {
            float h = (xr[ch] - mean[ch]) * invstd[ch];
            hr[ch] = h;
            yr[ch] = gamma[ch] * h + beta[ch];
        }
    }
}

static void normalize_rows(const float *x, float *y, float *xhat, size_t n, int c,
                           const float *mean, const float *invstd, const float *gamma,
                           const float *beta)
{
    const int parts = row_parts(n);
#pragma omp parallel for schedule(static) if (parts > 1)
    for (int t = 0; t < parts; t++) {
        long r0, r1;
        nn_split((long)n, parts, t, &r0, &r1);
        normalize_part(x, y, xhat, r0, r1, c, mean, invstd, gamma, beta);
    }
}

/* Per channel, over rows [R0, R1): y = x * scale + shift. */
NN_MULTIVERSION
static void scale_shift_part(const float *restrict x, float *restrict y, long r0, long r1, int c,
                             const float *restrict scale, const float *restrict shift)
{
    for (long i = r0; i < r1; i++)
        for (int ch = 0; ch < c; ch++)
            y[i * c + ch] = x[i * c + ch] * scale[ch] + shift[ch];
}

static void scale_shift_rows(const float *x, float *y, size_t n, int c, const float *scale,
                             const float *shift)
{
    const int parts = row_parts(n);
#pragma omp parallel for schedule(static) if (parts > 1)
    for (int t = 0; t < parts; t++) {
        long r0, r1;
        nn_split((long)n, parts, t, &r0, &r1);
        scale_shift_part(x, y, r0, r1, c, scale, shift);
    }
}

NN_MULTIVERSION
static void input_gradient_part(const float *restrict dy, const float *restrict xhat,
                                float *restrict dx, long r0, long r1, int c,
                                const float *restrict k, const float *restrict mean_dy,
                                const float *restrict mean_dy_xhat)
{
    for (long i = r0; i < r1; i++)
        for (int ch = 0; ch < c; ch++)
            dx[i * c + ch] = k[ch] * (dy[i * c + ch] - mean_dy[ch] -
                                      xhat[i * c + ch] * mean_dy_xhat[ch]);
}

static void input_gradient(const float *dy, const float *xhat, float *dx, size_t n, int c,
                           const float *k, const float *mean_dy, const float *mean_dy_xhat)
{
    const int parts = row_parts(n);
#pragma omp parallel for schedule(static) if (parts > 1)
    for (int t = 0; t < parts; t++) {
        long r0, r1;
        nn_split((long)n, parts, t, &r0, &r1);
        input_gradient_part(dy, xhat, dx, r0, r1, c, k, mean_dy, mean_dy_xhat);
    }
}

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
        scale_shift_rows(x, y, n, c, l->batch_invstd, l->batch_mean);
        return;
    }

    double sum[c], sum_sq[c];
    channel_sums_parallel(x, x, n, c, sum, sum_sq);
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
    normalize_rows(x, y, l->xhat, n, c, l->batch_mean, l->batch_invstd, gamma, beta);
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
    channel_sums_parallel(dy, l->xhat, n, c, sum_dy, sum_dy_xhat);
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
    input_gradient(dy, l->xhat, dx, n, c, k, mean_dy, mean_dy_xhat);
}
