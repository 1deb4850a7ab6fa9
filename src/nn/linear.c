#include "nn/linear.h"

#include <cblas.h>
#include <string.h>

void linear_forward(const float *a, const float *w, const float *bias, float *y, float *logits,
                    size_t m, int k, int n, nn_activation act)
{
    float *z = act == NN_SOFTMAX ? logits : y;

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, n, k, 1.0f, a, k, w, n, 0.0f,
                z, n);
    /* Bias and activation in one pass over Z while it is still in cache. */
    for (size_t r = 0; r < m; r++) {
        float *zr = z + r * n;
        switch (act) {
        case NN_RELU:
            for (int j = 0; j < n; j++) {
                float v = zr[j] + bias[j];
                zr[j] = v > 0.0f ? v : 0.0f;
            }
            break;
        default:
            for (int j = 0; j < n; j++)
                zr[j] += bias[j];
            break;
        }
    }
    if (act == NN_SIGMOID || act == NN_SOFTMAX)
        activation_apply(act, z, y, m * (size_t)n, n);
}

void linear_backward(const float *a, const float *w, const float *dz, float *dw, float *db,
                     float *da, size_t m, int k, int n)
{
    memset(db, 0, (size_t)n * sizeof *db);
    for (size_t r = 0; r < m; r++) {
        const float *dzr = dz + r * n;
        for (int j = 0; j < n; j++)
            db[j] += dzr[j];
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, n, (int)m, 1.0f, a, k, dz, n, 0.0f, dw,
                n);
    if (da != NULL)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, k, n, 1.0f, dz, n, w, n, 0.0f,
                    da, k);
}
