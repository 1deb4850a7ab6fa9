#include "nn/adam.h"

#include "base/error.h"

#include <math.h>
#include <stdlib.h>

int nn_adam_init(nn_adam *opt, size_t size)
{
    opt->learning_rate = 1e-3f;
    opt->beta_1 = 0.9f;
    opt->beta_2 = 0.999f;
    opt->epsilon = 1e-7f;
    opt->iterations = 0;
    opt->size = size;
    opt->m = dm_calloc(size, sizeof(float));
    opt->v = dm_calloc(size, sizeof(float));
    if (opt->m == NULL || opt->v == NULL) {
        nn_adam_free(opt);
        return -1;
    }
    return 0;
}

void nn_adam_free(nn_adam *opt)
{
    free(opt->m);
    free(opt->v);
    opt->m = opt->v = NULL;
}

void nn_adam_step(nn_adam *opt, float *w, const float *g)
{
    const double t = (double)(opt->iterations + 1);
    const float alpha = (float)(opt->learning_rate * sqrt(1.0 - pow(opt->beta_2, t)) /
                                (1.0 - pow(opt->beta_1, t)));
    const float one_minus_b1 = 1.0f - opt->beta_1, one_minus_b2 = 1.0f - opt->beta_2;
    float *m = opt->m, *v = opt->v;

    for (size_t i = 0; i < opt->size; i++) {
        m[i] += (g[i] - m[i]) * one_minus_b1;
        v[i] += (g[i] * g[i] - v[i]) * one_minus_b2;
        w[i] -= alpha * m[i] / (sqrtf(v[i]) + opt->epsilon);
    }
    opt->iterations++;
}
