/*
 * Threads of the engine. Each layer splits its batch into one part per
 * thread with OpenMP and runs single-threaded sgemm calls on the parts, so
 * the element-wise loops around the GEMMs (im2col, pooling, activations,
 * batch statistics) run in parallel too, and small GEMMs avoid the cost of
 * OpenBLAS's own threading. OpenBLAS is therefore kept at one thread.
 */
#ifndef DISTML_NN_PARALLEL_H
#define DISTML_NN_PARALLEL_H

/* Use THREADS threads (at least 1) for all later engine calls. */
void nn_set_threads(int threads);
int nn_threads(void);

/* Parts to split BATCH examples into: one per thread, at most one per
 * example. */
int nn_parts(int batch);

/* The [*BEGIN, *END) range of part INDEX when TOTAL items are split into
 * PARTS nearly equal parts. */
static inline void nn_split(long total, int parts, int index, long *begin, long *end)
{
    long base = total / parts, extra = total % parts;
    *begin = index * base + (index < extra ? index : extra);
    *end = *begin + base + (index < extra ? 1 : 0);
}

#endif
