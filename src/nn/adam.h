/*
 * Adam with the Keras defaults (learning rate 1e-3, beta_1 0.9,
 * beta_2 0.999, epsilon 1e-7) and Keras's update rule, in which epsilon
 * is added to the uncorrected sqrt(v):
 *   m <- m + (g - m)(1 - beta_1);  v <- v + (g^2 - v)(1 - beta_2)
 *   alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
 *   w <- w - alpha * m / (sqrt(v) + epsilon)
 */
#ifndef DISTML_NN_ADAM_H
#define DISTML_NN_ADAM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float learning_rate, beta_1, beta_2, epsilon;
    int64_t iterations; /* steps taken; t above is iterations + 1 */
    size_t size;
    float *m, *v;
} nn_adam;

int nn_adam_init(nn_adam *opt, size_t size);
void nn_adam_free(nn_adam *opt);
/* One update of the SIZE weights W from the gradients G. */
void nn_adam_step(nn_adam *opt, float *w, const float *g);

#endif
