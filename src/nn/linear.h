/*
 * The matrix part shared by Conv2D (on its im2col matrix) and Dense:
 * Y = act(A W + b) with A (M, K), W (K, N), b (N), Y (M, N), row-major,
 * on OpenBLAS sgemm.
 */
#ifndef DISTML_NN_LINEAR_H
#define DISTML_NN_LINEAR_H

#include "nn/layer.h"

/* LOGITS receives A W + b before the activation when ACT is softmax (the
 * loss needs it); it is unused otherwise and may be NULL. */
void linear_forward(const float *a, const float *w, const float *bias, float *y, float *logits,
                    size_t m, int k, int n, nn_activation act);

/* From DZ = dL/d(A W + b): DW = A^T DZ, DB = column sums of DZ and, when
 * DA is not NULL, DA = DZ W^T. DA may alias A, since A is read first. */
void linear_backward(const float *a, const float *w, const float *dz, float *dw, float *db,
                     float *da, size_t m, int k, int n);

#endif
