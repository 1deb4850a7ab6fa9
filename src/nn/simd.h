/*
 * NN_MULTIVERSION compiles an element-wise kernel three times: for AVX-512
 * (x86-64-v4), for AVX2 (x86-64-v3) and for the baseline x86-64 that the
 * rest of the build targets. The loader picks one by the CPU when the
 * program starts, so a portable binary still uses wide vectors. The kernels it marks
 * are element-wise or sum each channel in its own lane, and the build does
 * not contract a * b + c into FMA (ISO C mode), so every version computes
 * the same bits.
 */
#ifndef DISTML_NN_SIMD_H
#define DISTML_NN_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(DISTML_NO_MULTIVERSION)
#define NN_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NN_MULTIVERSION
#endif

#endif
