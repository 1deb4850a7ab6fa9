/*
 * Dropout, inverted: in training each unit is kept with probability
 * 1 - rate and scaled by 1 / (1 - rate); outside training it is the
 * identity. The keep decision for (example, unit) is a hash of the seed,
 * the step and the example's id, not a running RNG, so the mask does not
 * depend on how a global batch is split across workers.
 */
#include "nn/layer.h"
#include "nn/parallel.h"

#include <string.h>

/* GCC builds an AVX2 copy of the mask loop beside the baseline one and
 * picks at load time, because 32-bit vector multiplies need SSE4.1 or
 * later. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define DROPOUT_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DROPOUT_CLONES
#endif

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* murmur3's 32-bit finalizer: a cheap hash with good avalanche. */
static inline uint32_t fmix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    return h ^ (h >> 16);
}

/* Keep (scale) or drop (0) each of UNITS values of one example, from the
 * example's 32-bit KEY, and apply the mask to X. */
DROPOUT_CLONES
static void example_mask(uint32_t key, float rate, float scale, size_t units,
                         const float *restrict x, float *restrict y, float *restrict mask)
{
    for (size_t u = 0; u < units; u++) {
        uint32_t h = fmix32(key ^ ((uint32_t)u * 0x9e3779b9u));
        float uniform = (float)(h >> 8) * (1.0f / 16777216.0f);
        mask[u] = uniform >= rate ? scale : 0.0f;
        y[u] = x[u] * mask[u];
    }
}

void dropout_forward(nn_layer *l, const float *x, float *y, int batch, bool training)
{
    const size_t units = nn_shape_size(l->out);

    if (!training || l->rate <= 0.0f) {
        memcpy(y, x, (size_t)batch * units * sizeof *y);
        if (training)
            for (size_t i = 0; i < (size_t)batch * units; i++)
                l->mask[i] = 1.0f;
        return;
    }
    const float scale = 1.0f / (1.0f - l->rate);
    const uint64_t step = mix64(l->dropout_step + 0x9e3779b97f4a7c15ULL);
    const uint64_t step_key = mix64(l->dropout_seed ^ step);
#pragma omp parallel for schedule(static) if (nn_parts(batch) > 1)
    for (int b = 0; b < batch; b++) {
        uint64_t id = l->example_ids != NULL ? l->example_ids[b] : (uint64_t)b;
        uint64_t key = mix64(step_key ^ (id * 0xd6e8feb86659fd93ULL + 1));
        const size_t offset = (size_t)b * units;
        example_mask((uint32_t)(key ^ (key >> 32)), l->rate, scale, units, x + offset,
                     y + offset, l->mask + offset);
    }
}

void dropout_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                      int batch)
{
    (void)x;
    (void)y;
    if (dx == NULL)
        return;
    for (size_t i = 0; i < (size_t)batch * nn_shape_size(l->out); i++)
        dx[i] = dy[i] * l->mask[i];
}
