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

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
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
    const uint64_t step_key = mix64(l->dropout_seed ^ mix64(l->dropout_step + 0x9e3779b97f4a7c15ULL));
#pragma omp parallel for schedule(static) if (nn_parts(batch) > 1)
    for (int b = 0; b < batch; b++) {
        uint64_t id = l->example_ids != NULL ? l->example_ids[b] : (uint64_t)b;
        uint64_t key = mix64(step_key ^ (id * 0xd6e8feb86659fd93ULL + 1));
        float *mask = l->mask + (size_t)b * units;
        for (size_t u = 0; u < units; u++) {
            uint64_t h = mix64(key + u * 0x9e3779b97f4a7c15ULL);
            float uniform = (float)(h >> 40) * (1.0f / 16777216.0f);
            mask[u] = uniform >= l->rate ? scale : 0.0f;
        }
    }
    for (size_t i = 0; i < (size_t)batch * units; i++)
        y[i] = x[i] * l->mask[i];
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
