/*
 * Finite-difference checks of every layer's backward pass, and of the
 * whole model's loss gradient. Each layer is checked on the objective
 * f = sum(y * r) for a fixed random R, so dy = r; the numeric derivative
 * is a central difference with f accumulated in double.
 */
#include "check.h"

#include "base/error.h"
#include "base/rng.h"
#include "nn/layer.h"
#include "nn/model.h"

typedef void (*forward_fn)(nn_layer *, const float *, float *, int, bool);
typedef void (*backward_fn)(nn_layer *, const float *, const float *, const float *, float *,
                            int);

enum { BATCH = 3 };

static void fill_uniform(float *v, size_t n, float lo, float hi, uint64_t stream)
{
    dm_rng rng;
    dm_rng_seed(&rng, 99, stream);
    for (size_t i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * dm_rng_uniform(&rng);
}

static double objective(nn_layer *l, forward_fn forward, const float *x, float *y,
                        const float *r, size_t out_n)
{
    forward(l, x, y, BATCH, true);
    double f = 0.0;
    for (size_t i = 0; i < out_n; i++)
        f += (double)y[i] * r[i];
    return f;
}

static bool close_enough(double analytic, double numeric, double tolerance)
{
    double scale = fabs(analytic) > fabs(numeric) ? fabs(analytic) : fabs(numeric);
    return fabs(analytic - numeric) <= tolerance * (1.0 + scale);
}

/* Compare analytic and numeric derivatives for X and each trainable
 * variable of the model's first layer. Returns the number of mismatches. */
static int check_layer(nn_model *m, forward_fn forward, backward_fn backward, float *x,
                       float eps, double tolerance, const char *label)
{
    nn_layer *l = &m->layers[0];
    const size_t in_n = BATCH * nn_shape_size(l->in), out_n = BATCH * nn_shape_size(l->out);
    float *y = m->outputs[0];
    float *r = malloc(out_n * sizeof *r), *dx = malloc(in_n * sizeof *dx);
    int mismatches = 0;

    fill_uniform(r, out_n, -1.0f, 1.0f, 7);
    forward(l, x, y, BATCH, true);
    backward(l, x, y, r, dx, BATCH);

    for (size_t i = 0; i < in_n; i++) {
        float saved = x[i];
        x[i] = saved + eps;
        double up = objective(l, forward, x, y, r, out_n);
        x[i] = saved - eps;
        double down = objective(l, forward, x, y, r, out_n);
        x[i] = saved;
        double numeric = (up - down) / (2.0 * eps);
        if (!close_enough(dx[i], numeric, tolerance)) {
            if (mismatches++ < 5)
                fprintf(stderr, "%s: dx[%zu] analytic %.6g numeric %.6g\n", label, i, dx[i],
                        numeric);
        }
    }
    /* The parameter gradients from the single backward call above. */
    float *grads = malloc(m->num_trainable * sizeof *grads);
    memcpy(grads, m->grads, m->num_trainable * sizeof *grads);
    for (size_t i = 0; i < m->num_trainable; i++) {
        float saved = m->trainable[i];
        m->trainable[i] = saved + eps;
        double up = objective(l, forward, x, y, r, out_n);
        m->trainable[i] = saved - eps;
        double down = objective(l, forward, x, y, r, out_n);
        m->trainable[i] = saved;
        double numeric = (up - down) / (2.0 * eps);
        if (!close_enough(grads[i], numeric, tolerance)) {
            if (mismatches++ < 5)
                fprintf(stderr, "%s: dparam[%zu] analytic %.6g numeric %.6g\n", label, i,
                        grads[i], numeric);
        }
    }
    free(grads);
    free(r);
    free(dx);
    return mismatches;
}

static float *make_input(nn_model *m, float lo, float hi)
{
    size_t n = BATCH * nn_shape_size(m->input);
    float *x = malloc(n * sizeof *x);
    fill_uniform(x, n, lo, hi, 3);
    return x;
}

static void finish(nn_model *m)
{
    /* A trailing softmax Dense makes the stack a valid model; only the
     * first layer is checked. */
    nn_model_add_flatten(m);
    nn_model_add_dense(m, 2, NN_SOFTMAX);
    if (nn_model_finish(m, 5) != 0 || nn_model_reserve(m, BATCH) != 0) {
        fprintf(stderr, "model setup failed: %s\n", dm_error());
        exit(2);
    }
    /* Non-zero biases, so the bias gradients are exercised off zero. */
    fill_uniform(m->trainable, m->num_trainable, -0.5f, 0.5f, 11);
}

static void test_conv2d_linear_gradient(void)
{
    nn_model m;
    nn_model_begin(&m, (nn_shape){3, 5, 6, 2}, 2);
    nn_model_add_conv2d(&m, 3, NN_LINEAR);
    finish(&m);
    float *x = make_input(&m, -1.0f, 1.0f);
    CHECK_INT_EQ(check_layer(&m, conv2d_forward, conv2d_backward, x, 1e-2f, 2e-3, "conv2d"), 0);
    free(x);
    nn_model_free(&m);
}

static void test_conv2d_sigmoid_gradient(void)
{
    nn_model m;
    nn_model_begin(&m, (nn_shape){3, 4, 4, 3}, 2);
    nn_model_add_conv2d(&m, 2, NN_SIGMOID);
    finish(&m);
    float *x = make_input(&m, -1.0f, 1.0f);
    CHECK_INT_EQ(check_layer(&m, conv2d_forward, conv2d_backward, x, 1e-2f, 2e-3, "conv2d"), 0);
    free(x);
    nn_model_free(&m);
}

static void test_dense_sigmoid_gradient(void)
{
    nn_model m;
    nn_model_begin(&m, (nn_shape){1, 1, 1, 7}, 2);
    nn_model_add_dense(&m, 4, NN_SIGMOID);
    finish(&m);
    float *x = make_input(&m, -1.0f, 1.0f);
    CHECK_INT_EQ(check_layer(&m, dense_forward, dense_backward, x, 1e-2f, 2e-3, "dense"), 0);
    free(x);
    nn_model_free(&m);
}

static void test_dense_softmax_gradient(void)
{
    nn_model m;
    nn_model_begin(&m, (nn_shape){1, 1, 1, 6}, 2);
    nn_model_add_dense(&m, 5, NN_SOFTMAX);
    finish(&m);
    float *x = make_input(&m, -1.0f, 1.0f);
    CHECK_INT_EQ(check_layer(&m, dense_forward, dense_backward, x, 1e-2f, 2e-3, "softmax"), 0);
    free(x);
    nn_model_free(&m);
}

static void test_relu_gradient(void)
{
    nn_model m;
    nn_model_begin(&m, (nn_shape){3, 3, 3, 2}, 2);
    nn_model_add_activation(&m, NN_RELU);
    finish(&m);
    float *x = make_input(&m, 0.1f, 1.0f);
    /* Keep every input at least 0.1 away from the kink at zero. */
    for (size_t i = 0; i < BATCH * nn_shape_size(m.input); i += 2)
        x[i] = -x[i];
    CHECK_INT_EQ(check_layer(&m, activation_layer_forward, activation_layer_backward, x, 1e-2f,
                             2e-3, "relu"),
                 0);
    free(x);
    nn_model_free(&m);
}

static void test_sigmoid_gradient(void)
{
    nn_model m;
    nn_model_begin(&m, (nn_shape){3, 3, 3, 2}, 2);
    nn_model_add_activation(&m, NN_SIGMOID);
    finish(&m);
    float *x = make_input(&m, -3.0f, 3.0f);
    CHECK_INT_EQ(check_layer(&m, activation_layer_forward, activation_layer_backward, x, 1e-2f,
                             2e-3, "sigmoid"),
                 0);
    free(x);
    nn_model_free(&m);
}

static void test_max_pooling2d_gradient(void)
{
    nn_model m;
    nn_model_begin(&m, (nn_shape){3, 5, 4, 2}, 2);
    nn_model_add_max_pooling2d(&m);
    finish(&m);
    size_t n = BATCH * nn_shape_size(m.input);
    float *x = malloc(n * sizeof *x);
    /* Distinct values 0.05 apart, so a 1e-3 step never changes a max. */
    dm_rng rng;
    dm_rng_seed(&rng, 1, 2);
    for (size_t i = 0; i < n; i++)
        x[i] = 0.05f * (float)i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = dm_rng_below(&rng, i + 1);
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
    CHECK_INT_EQ(check_layer(&m, max_pooling2d_forward, max_pooling2d_backward, x, 1e-3f, 2e-3,
                             "max_pooling2d"),
                 0);
    CHECK_INT_EQ(m.layers[0].out.h, 2); /* an odd last row is dropped */
    free(x);
    nn_model_free(&m);
}

static void test_batch_norm_gradient(void)
{
    nn_model m;
    nn_model_begin(&m, (nn_shape){3, 3, 2, 3}, 2);
    nn_model_add_batch_normalization(&m);
    finish(&m);
    float *x = make_input(&m, -2.0f, 2.0f);
    CHECK_INT_EQ(check_layer(&m, batch_norm_forward, batch_norm_backward, x, 1e-2f, 3e-3,
                             "batch_norm"),
                 0);
    free(x);
    nn_model_free(&m);
}

static void test_dropout_gradient(void)
{
    nn_model m;
    nn_model_begin(&m, (nn_shape){3, 2, 2, 4}, 2);
    nn_model_add_dropout(&m, 0.5f);
    finish(&m);
    nn_model_set_dropout_key(&m, 42, 3, NULL, BATCH);
    float *x = make_input(&m, -1.0f, 1.0f);
    CHECK_INT_EQ(check_layer(&m, dropout_forward, dropout_backward, x, 1e-2f, 2e-3, "dropout"),
                 0);
    /* Inverted dropout: kept units are scaled by 2, dropped ones are 0. */
    int kept = 0, dropped = 0;
    for (size_t i = 0; i < BATCH * nn_shape_size(m.input); i++) {
        float y = m.outputs[0][i];
        kept += fabsf(y - 2.0f * x[i]) < 1e-6f;
        dropped += y == 0.0f;
    }
    CHECK_INT_EQ(kept + dropped, (int)(BATCH * nn_shape_size(m.input)));
    CHECK(kept > 0);
    CHECK(dropped > 0);
    free(x);
    nn_model_free(&m);
}

static void test_dropout_mask_depends_on_example_id(void)
{
    nn_model m;
    nn_model_begin(&m, (nn_shape){1, 1, 1, 64}, 2);
    nn_model_add_dropout(&m, 0.5f);
    finish(&m);
    float x[2 * 64];
    for (int i = 0; i < 128; i++)
        x[i] = 1.0f;
    uint64_t ids_a[2] = {4, 9}, ids_b[2] = {9, 4};
    nn_model_set_dropout_key(&m, 42, 3, ids_a, 2);
    dropout_forward(&m.layers[0], x, m.outputs[0], 2, true);
    float first[128];
    memcpy(first, m.outputs[0], sizeof first);
    nn_model_set_dropout_key(&m, 42, 3, ids_b, 2);
    dropout_forward(&m.layers[0], x, m.outputs[0], 2, true);
    /* Swapping the ids swaps the two examples' masks. */
    CHECK(memcmp(first, m.outputs[0] + 64, 64 * sizeof(float)) == 0);
    CHECK(memcmp(first + 64, m.outputs[0], 64 * sizeof(float)) == 0);
    dropout_forward(&m.layers[0], x, m.outputs[0], 2, false);
    CHECK(m.outputs[0][0] == 1.0f && m.outputs[0][127] == 1.0f);
    nn_model_free(&m);
}

/* The whole batch_norm model's loss gradient against finite differences on
 * a sample of variables. ReLU kinks and max-pool switches can make a
 * handful of central differences wrong, so a few misses are tolerated. */
static void test_model_loss_gradient(void)
{
    nn_model m;
    CHECK(nn_model_create(&m, "batch_norm", 17) == 0);
    CHECK(nn_model_reserve(&m, 2) == 0);
    float x[2 * 784];
    fill_uniform(x, 2 * 784, 0.0f, 1.0f, 21);
    int32_t labels[2] = {3, 7};
    const float scale = 0.5f;

    nn_model_forward(&m, x, 2, true);
    nn_model_backward(&m, x, labels, 2, scale, NULL);
    float *grads = malloc(m.num_trainable * sizeof *grads);
    memcpy(grads, m.grads, m.num_trainable * sizeof *grads);

    dm_rng rng;
    dm_rng_seed(&rng, 5, 5);
    int checked = 0, misses = 0;
    const float eps = 1e-3f;
    for (int t = 0; t < 200; t++) {
        size_t i = dm_rng_below(&rng, m.num_trainable);
        float saved = m.trainable[i];
        m.trainable[i] = saved + eps;
        nn_model_forward(&m, x, 2, true);
        double up = scale * nn_model_loss(&m, labels, 2, NULL);
        m.trainable[i] = saved - eps;
        nn_model_forward(&m, x, 2, true);
        double down = scale * nn_model_loss(&m, labels, 2, NULL);
        m.trainable[i] = saved;
        double numeric = (up - down) / (2.0 * eps);
        checked++;
        if (fabs(numeric - grads[i]) > 2e-3 * (1.0 + fabs(numeric)))
            misses++;
    }
    CHECK_MSG(misses <= checked / 50, "%d of %d sampled gradients differ", misses, checked);
    free(grads);
    nn_model_free(&m);
}

int main(void)
{
    RUN_TEST(test_conv2d_linear_gradient);
    RUN_TEST(test_conv2d_sigmoid_gradient);
    RUN_TEST(test_dense_sigmoid_gradient);
    RUN_TEST(test_dense_softmax_gradient);
    RUN_TEST(test_relu_gradient);
    RUN_TEST(test_sigmoid_gradient);
    RUN_TEST(test_max_pooling2d_gradient);
    RUN_TEST(test_batch_norm_gradient);
    RUN_TEST(test_dropout_gradient);
    RUN_TEST(test_dropout_mask_depends_on_example_id);
    RUN_TEST(test_model_loss_gradient);
    return check_finish();
}
