/*
 * Winograd F(4x4, 3x3) convolution, the forward pass of training and
 * inference (Lavin and Gray, "Fast Algorithms for Convolutional Neural
 * Networks", arXiv:1509.09308). Each 6x6 input tile d and 3x3 kernel g
 * give a 4x4 output tile
 *     Y = A^T [(G g G^T) . (B^T d B)] A,
 * so the 36 products per tile and channel pair replace 144 of the direct
 * convolution. Across channels the element-wise product becomes 36
 * independent matrix products, one per tile position xi:
 *     M[xi] (tiles, cout) = V[xi] (tiles, cin) * U[xi] (cin, cout),
 * which run on OpenBLAS sgemm. Tiles past the output's edge read zeros
 * and their extra outputs are dropped.
 *
 * The transforms work on NHWC data one tile at a time, with the channel
 * loop innermost so that it vectorizes.
 */
#include "nn/winograd.h"

#include "nn/simd.h"

#include <cblas.h>
#include <string.h>

#define ALPHA 6            /* input tile side: 4 outputs + 3 - 1 */
#define TRANSFORM_BLOCK 64 /* output channels per pass of the kernel transform */
#define POINTS (ALPHA * ALPHA)

static int tiles_along(int out)
{
    return (out + 3) / 4;
}

size_t winograd_kernel_floats(int cin, int cout)
{
    return (size_t)POINTS * cin * cout;
}

size_t winograd_floats_per_image(int out_h, int out_w, int cin, int cout)
{
    const size_t tiles = (size_t)tiles_along(out_h) * tiles_along(out_w);
    return (size_t)POINTS * tiles * ((size_t)cin + cout);
}

/* U = G g G^T for every (ci, co), from the Keras layout (3, 3, cin, cout)
 * to U[xi][ci][co]. The loops over co run along the kernel's rows, so
 * they vectorize. Training transforms the kernel in every step. */
NN_MULTIVERSION
void winograd_transform_kernel(const float *restrict kernel, int cin, int cout, float *restrict u)
{
    static const float g[ALPHA][3] = {
        {1.0f / 4, 0, 0},
        {-1.0f / 6, -1.0f / 6, -1.0f / 6},
        {-1.0f / 6, 1.0f / 6, -1.0f / 6},
        {1.0f / 24, 1.0f / 12, 1.0f / 6},
        {1.0f / 24, -1.0f / 12, 1.0f / 6},
        {0, 0, 1},
    };
    const size_t plane = (size_t)cin * cout;
    for (int ci = 0; ci < cin; ci++) {
        /* The kernel's taps w[ky][kx] for this input channel, rows of cout. */
        const float *w[3][3];
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++)
                w[ky][kx] = kernel + ((size_t)(ky * 3 + kx) * cin + ci) * cout;
        for (int i = 0; i < ALPHA; i++) {
            /* Row i of G g, then its products with the rows of G. */
            for (int co0 = 0; co0 < cout; co0 += TRANSFORM_BLOCK) {
                const int count = cout - co0 < TRANSFORM_BLOCK ? cout - co0 : TRANSFORM_BLOCK;
                float gw[3][TRANSFORM_BLOCK];
                for (int kx = 0; kx < 3; kx++)
                    for (int co = 0; co < count; co++)
                        gw[kx][co] = g[i][0] * w[0][kx][co0 + co] + g[i][1] * w[1][kx][co0 + co] +
                                     g[i][2] * w[2][kx][co0 + co];
                for (int j = 0; j < ALPHA; j++) {
                    float *out = u + (size_t)(i * ALPHA + j) * plane + (size_t)ci * cout + co0;
                    for (int co = 0; co < count; co++)
                        out[co] = gw[0][co] * g[j][0] + gw[1][co] * g[j][1] + gw[2][co] * g[j][2];
                }
            }
        }
    }
}

/* B^T applied to six rows s0..s5 of C channels each, giving r0..r5. */
static inline void input_rows(const float *restrict s0, const float *restrict s1,
                              const float *restrict s2, const float *restrict s3,
                              const float *restrict s4, const float *restrict s5,
                              float *restrict r0, float *restrict r1, float *restrict r2,
                              float *restrict r3, float *restrict r4, float *restrict r5, int c)
{
    for (int ch = 0; ch < c; ch++) {
        float d0 = s0[ch], d1 = s1[ch], d2 = s2[ch], d3 = s3[ch], d4 = s4[ch], d5 = s5[ch];
        r0[ch] = 4.0f * d0 - 5.0f * d2 + d4;
        r1[ch] = -4.0f * (d1 + d2) + d3 + d4;
        r2[ch] = 4.0f * (d1 - d2) - d3 + d4;
        r3[ch] = 2.0f * (d3 - d1) - d2 + d4;
        r4[ch] = 2.0f * (d1 - d3) - d2 + d4;
        r5[ch] = 4.0f * d1 - 5.0f * d3 + d5;
    }
}

/* V[xi][tile] = B^T d B for one tile whose top-left input pixel is (y0,
 * x0). Pixels outside the IH x IW map read as zero. */
NN_MULTIVERSION
static void transform_input_tile(const float *restrict xb, int ih, int iw, int c, int y0, int x0,
                                 float *restrict v, size_t point_stride, float *restrict work)
{
    /* work: B^T d (36 x c), then one pixel of zeros (c). */
    float *rows = work, *zeros = work + (size_t)POINTS * c;
    memset(zeros, 0, (size_t)c * sizeof *zeros);
    /* Columns first, read in place: rows[i][j] = sum_k B^T[i][k] d[k][j]. */
    for (int j = 0; j < ALPHA; j++) {
        const float *d[ALPHA];
        for (int k = 0; k < ALPHA; k++) {
            const int y = y0 + k, x = x0 + j;
            d[k] = y < ih && x < iw ? xb + ((size_t)y * iw + x) * c : zeros;
        }
        const size_t row = (size_t)ALPHA * c;
        float *r = rows + (size_t)j * c;
        input_rows(d[0], d[1], d[2], d[3], d[4], d[5], r, r + row, r + 2 * row, r + 3 * row,
                   r + 4 * row, r + 5 * row, c);
    }
    /* Then along each row: V[i][j] = sum_k rows[i][k] B[k][j]. */
    for (int i = 0; i < ALPHA; i++) {
        const float *t = rows + (size_t)i * ALPHA * c;
        const size_t s = point_stride;
        float *r = v + (size_t)i * ALPHA * s;
        input_rows(t, t + c, t + 2 * (size_t)c, t + 3 * (size_t)c, t + 4 * (size_t)c,
                   t + 5 * (size_t)c, r, r + s, r + 2 * s, r + 3 * s, r + 4 * s, r + 5 * s, c);
    }
}

/* A^T applied to six rows m0..m5 of N values each, giving o0..o3. */
static inline void output_rows(const float *restrict m0, const float *restrict m1,
                               const float *restrict m2, const float *restrict m3,
                               const float *restrict m4, const float *restrict m5,
                               float *restrict o0, float *restrict o1, float *restrict o2,
                               float *restrict o3, int n)
{
    for (int ch = 0; ch < n; ch++) {
        float a = m1[ch] + m2[ch], b = m1[ch] - m2[ch];
        float p = m3[ch] + m4[ch], q = m3[ch] - m4[ch];
        o0[ch] = m0[ch] + a + p;
        o1[ch] = b + 2.0f * q;
        o2[ch] = a + 4.0f * p;
        o3[ch] = b + 8.0f * q + m5[ch];
    }
}

/* Y = A^T M A + bias for one tile, stored where it falls inside the
 * OH x OW output. */
NN_MULTIVERSION
static void transform_output_tile(const float *restrict m, size_t point_stride,
                                  const float *restrict bias, float *restrict yb, int oh, int ow,
                                  int n, int y0, int x0, float *restrict work)
{
    /* work: A^T M (4 x 6 x n), then the 4 x 4 result. */
    float *rows = work, *out = work + (size_t)4 * ALPHA * n;
    for (int j = 0; j < ALPHA; j++) {
        const float *t = m + (size_t)j * point_stride;
        const size_t row = (size_t)ALPHA * point_stride;
        const size_t s = (size_t)ALPHA * n;
        float *o = rows + (size_t)j * n;
        output_rows(t, t + row, t + 2 * row, t + 3 * row, t + 4 * row, t + 5 * row, o, o + s,
                    o + 2 * s, o + 3 * s, n);
    }
    for (int i = 0; i < 4; i++) {
        const float *t = rows + (size_t)i * ALPHA * n;
        float *o = out + (size_t)i * 4 * n;
        output_rows(t, t + n, t + 2 * (size_t)n, t + 3 * (size_t)n, t + 4 * (size_t)n,
                    t + 5 * (size_t)n, o, o + n, o + 2 * (size_t)n, o + 3 * (size_t)n, n);
    }
    for (int i = 0; i < 4 && y0 + i < oh; i++) {
        for (int j = 0; j < 4 && x0 + j < ow; j++) {
            const float *src = out + (size_t)(i * 4 + j) * n;
            float *dst = yb + ((size_t)(y0 + i) * ow + x0 + j) * n;
            for (int ch = 0; ch < n; ch++)
                dst[ch] = src[ch] + bias[ch];
        }
    }
}

void winograd_conv(const float *u, const float *bias, const float *x, float *y, int images, int ih,
                   int iw, int cin, int cout, float *scratch, float *work)
{
    const int oh = ih - 2, ow = iw - 2, th = tiles_along(oh), tw = tiles_along(ow);
    const size_t tiles = (size_t)images * th * tw;
    float *v = scratch, *m = scratch + (size_t)POINTS * tiles * cin;
    const size_t in_size = (size_t)ih * iw * cin, out_size = (size_t)oh * ow * cout;

    for (int b = 0, t = 0; b < images; b++)
        for (int ty = 0; ty < th; ty++)
            for (int tx = 0; tx < tw; tx++, t++)
                transform_input_tile(x + b * in_size, ih, iw, cin, 4 * ty, 4 * tx,
                                     v + (size_t)t * cin, tiles * cin, work);
    for (int p = 0; p < POINTS; p++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)tiles, cout, cin, 1.0f,
                    v + (size_t)p * tiles * cin, cin, u + (size_t)p * cin * cout, cout, 0.0f,
                    m + (size_t)p * tiles * cout, cout);
    for (int b = 0, t = 0; b < images; b++)
        for (int ty = 0; ty < th; ty++)
            for (int tx = 0; tx < tw; tx++, t++)
                transform_output_tile(m + (size_t)t * cout, tiles * cout, bias, y + b * out_size,
                                      oh, ow, cout, 4 * ty, 4 * tx, work);
}

size_t winograd_work_floats(int cin, int cout)
{
    size_t in = (size_t)(POINTS + 1) * cin, out = (size_t)(4 * ALPHA + 16) * cout;
    return in > out ? in : out;
}
