/*
 * Winograd F(4x4, 3x3): a 3x3, stride-1, "valid" convolution with about a
 * quarter of the direct method's multiplications, for forward passes. Layouts
 * are the engine's: NHWC maps, the Keras kernel (3, 3, cin, cout).
 */
#ifndef DISTML_NN_WINOGRAD_H
#define DISTML_NN_WINOGRAD_H

#include <stddef.h>

/* Floats of the transformed kernel U of a CIN -> COUT convolution. */
size_t winograd_kernel_floats(int cin, int cout);

/* U from KERNEL (3, 3, cin, cout); recompute it whenever KERNEL changes. */
void winograd_transform_kernel(const float *kernel, int cin, int cout, float *u);

/* Floats of SCRATCH that winograd_conv needs per image. */
size_t winograd_floats_per_image(int out_h, int out_w, int cin, int cout);

/* Floats of WORK that winograd_conv needs, whatever the batch. */
size_t winograd_work_floats(int cin, int cout);

/* Y = conv(X, kernel) + BIAS for IMAGES maps of IH x IW x CIN, with U from
 * winograd_transform_kernel; Y is (IH-2) x (IW-2) x COUT per image. */
void winograd_conv(const float *u, const float *bias, const float *x, float *y, int images, int ih,
                   int iw, int cin, int cout, float *scratch, float *work);

#endif
