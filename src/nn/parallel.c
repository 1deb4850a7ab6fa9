#include "nn/parallel.h"

#include <cblas.h>
#include <omp.h>

static int engine_threads = 1;

void nn_set_threads(int threads)
{
    engine_threads = threads > 0 ? threads : 1;
    omp_set_num_threads(engine_threads);
    openblas_set_num_threads(1);
}

int nn_threads(void)
{
    return engine_threads;
}

int nn_parts(int batch)
{
    if (batch < 1)
        return 1;
    return batch < engine_threads ? batch : engine_threads;
}
