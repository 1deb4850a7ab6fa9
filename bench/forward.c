/*
 * Time the engine's inference forward pass per example at several batch
 * sizes on one thread, for each model type, with the weights a fresh model
 * starts from (speed does not depend on their values), prepared for
 * inference as a loaded model is. Prints one JSON object per model type
 * and batch size: {"model": ..., "batch": N, "us_per_image": T}.
 */
#include "nn/model.h"
#include "nn/parallel.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    const int examples = argc > 1 ? atoi(argv[1]) : 20000;
    const int batches[] = {1, 8, 32, 64, 256};
    const int max_batch = 256, num_batches = (int)(sizeof batches / sizeof batches[0]);
    float *x = malloc(sizeof *x * 784 * max_batch);
    if (x == NULL || examples < max_batch)
        return 2;
    for (int i = 0; i < 784 * max_batch; i++)
        x[i] = (float)(i % 255) / 255.0f;
    nn_set_threads(1);
    for (int t = 0; t < 3; t++) {
        nn_model m;
        if (nn_model_create(&m, nn_model_types[t], 1) != 0 || nn_model_prepare_inference(&m) != 0)
            return 1;
        for (int b = 0; b < num_batches; b++) {
            const int batch = batches[b], passes = examples / batch;
            if (nn_model_reserve(&m, batch) != 0)
                return 1;
            for (int i = 0; i < 10; i++)
                nn_model_forward(&m, x, batch, false);
            double start = now_seconds();
            for (int i = 0; i < passes; i++)
                nn_model_forward(&m, x, batch, false);
            double us = (now_seconds() - start) / ((double)passes * batch) * 1e6;
            printf("{\"model\": \"%s\", \"batch\": %d, \"us_per_image\": %.2f}\n",
                   nn_model_types[t], batch, us);
        }
        nn_model_free(&m);
    }
    free(x);
    return 0;
}
