/* Dense: y = act(x W + b) with the Keras kernel layout (in, out). */
#include "nn/layer.h"
#include "nn/linear.h"

void dense_forward(nn_layer *l, const float *x, float *y, int batch, bool training)
{
    (void)training;
    linear_forward(x, l->params[0].value, l->params[1].value, y, l->logits, (size_t)batch,
                   (int)nn_shape_size(l->in), l->units, l->activation);
}

void dense_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                    int batch)
{
    activation_gradient(l->activation, y, dy, l->dz, (size_t)batch * l->units, l->units);
    linear_backward(x, l->params[0].value, l->dz, l->params[0].grad, l->params[1].grad, dx,
                    (size_t)batch, (int)nn_shape_size(l->in), l->units);
}
