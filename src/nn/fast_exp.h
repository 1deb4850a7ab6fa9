/*
 * A vectorizable expf for the element-wise activations: exp(x) =
 * 2^n * e^r with n = round(x / ln 2) and |r| <= ln(2) / 2, e^r by a
 * degree-6 Taylor polynomial and 2^n built in the exponent bits. The
 * relative error is below 2e-7 over [-87, 88]; inputs outside are clamped,
 * so the result stays finite and positive. libm's expf is not used here
 * because, without -ffast-math, GCC calls it one element at a time.
 */
#ifndef DISTML_NN_FAST_EXP_H
#define DISTML_NN_FAST_EXP_H

#include <stdint.h>
#include <string.h>

static inline float nn_fast_expf(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* Round to nearest with the 1.5 * 2^23 trick, valid for |x| < 2^22. */
    const float shifter = 12582912.0f;
    float n = (x * 1.44269504f + shifter) - shifter;
    /* Cody-Waite: ln 2 split so n * ln2_hi is exact. */
    float r = x - n * 0.693145752f;
    r = r - n * 1.42860677e-6f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
