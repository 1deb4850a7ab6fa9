/*
 * The three reference models: their summary tables, that the fused
 * ReLU-pooling path matches the plain one, and that training overfits a
 * fixed small batch.
 */
#include "check.h"

#include "base/rng.h"
#include "nn/adam.h"
#include "nn/model.h"
#include "nn/parallel.h"

static char *summary_text(const char *type)
{
    nn_model m;
    char *text = NULL;
    size_t size = 0;
    if (nn_model_create(&m, type, 1) != 0)
        return NULL;
    FILE *out = open_memstream(&text, &size);
    nn_model_summary(&m, out);
    fclose(out);
    nn_model_free(&m);
    return text;
}

static void test_summary_totals(void)
{
    char *cnn = summary_text("cnn");
    char *dropout = summary_text("dropout");
    char *batch_norm = summary_text("batch_norm");
    CHECK_STR_CONTAINS(cnn, "Total params: 93,322\nTrainable params: 93,322\n"
                            "Non-trainable params: 0\n");
    CHECK_STR_CONTAINS(dropout, "Total params: 93,322\nTrainable params: 93,322\n"
                                "Non-trainable params: 0\n");
    CHECK_STR_CONTAINS(dropout, " dropout (Dropout)           (None, 5, 5, 64)          0");
    CHECK_STR_CONTAINS(batch_norm, "Total params: 93,706\nTrainable params: 93,514\n"
                                   "Non-trainable params: 192\n");
    CHECK_STR_CONTAINS(batch_norm, " batch_normalization_1 (Batc  (None, 11, 11, 64)       256");
    free(cnn);
    free(dropout);
    free(batch_norm);
}

/* The cnn table, row for row as Keras 2.11 prints it. */
static void test_summary_cnn_table(void)
{
    static const char expected[] =
        "Model: \"sequential\"\n"
        "_________________________________________________________________\n"
        " Layer (type)                Output Shape              Param #   \n"
        "=================================================================\n"
        " conv2d (Conv2D)             (None, 26, 26, 32)        320       \n"
        "                                                                 \n"
        " max_pooling2d (MaxPooling2D  (None, 13, 13, 32)       0         \n"
        " )                                                               \n"
        "                                                                 \n"
        " conv2d_1 (Conv2D)           (None, 11, 11, 64)        18496     \n"
        "                                                                 \n"
        " max_pooling2d_1 (MaxPooling  (None, 5, 5, 64)         0         \n"
        " 2D)                                                             \n"
        "                                                                 \n"
        " conv2d_2 (Conv2D)           (None, 3, 3, 64)          36928     \n"
        "                                                                 \n"
        " flatten (Flatten)           (None, 576)               0         \n"
        "                                                                 \n"
        " dense (Dense)               (None, 64)                36928     \n"
        "                                                                 \n"
        " dense_1 (Dense)             (None, 10)                650       \n"
        "=================================================================\n"
        "Total params: 93,322\n"
        "Trainable params: 93,322\n"
        "Non-trainable params: 0\n"
        "_________________________________________________________________\n";
    char *text = summary_text("cnn");
    CHECK_MSG(strcmp(text, expected) == 0, "got:\n%s", text);
    free(text);
}

static void fill_batch(float *x, int32_t *y, int n, uint64_t stream)
{
    dm_rng rng;
    dm_rng_seed(&rng, 3, stream);
    for (int i = 0; i < n * 784; i++)
        x[i] = dm_rng_uniform(&rng);
    for (int i = 0; i < n; i++)
        y[i] = (int32_t)(i % 10);
}

/* With the fusion off, Conv2D applies its own ReLU and pooling routes the
 * gradient; both paths must give the same outputs and gradients. */
static void test_fused_relu_pooling_matches_plain(void)
{
    enum { N = 4 };
    nn_model fused, plain;
    float x[N * 784];
    int32_t y[N];
    fill_batch(x, y, N, 1);

    CHECK(nn_model_create(&fused, "cnn", 9) == 0);
    nn_model_begin(&plain, (nn_shape){3, 28, 28, 1}, 10);
    plain.fuse_relu_pooling = false;
    nn_model_add_conv2d(&plain, 32, NN_RELU);
    nn_model_add_max_pooling2d(&plain);
    nn_model_add_conv2d(&plain, 64, NN_RELU);
    nn_model_add_max_pooling2d(&plain);
    nn_model_add_conv2d(&plain, 64, NN_RELU);
    nn_model_add_flatten(&plain);
    nn_model_add_dense(&plain, 64, NN_RELU);
    nn_model_add_dense(&plain, 10, NN_SOFTMAX);
    CHECK(nn_model_finish(&plain, 9) == 0);
    CHECK(fused.layers[0].relu_to_next);
    CHECK(!plain.layers[0].relu_to_next);
    CHECK_INT_EQ(fused.num_trainable, plain.num_trainable);
    memcpy(plain.trainable, fused.trainable, fused.num_trainable * sizeof(float));
    CHECK(nn_model_reserve(&fused, N) == 0);
    CHECK(nn_model_reserve(&plain, N) == 0);

    const float *pf = nn_model_forward(&fused, x, N, true);
    const float *pp = nn_model_forward(&plain, x, N, true);
    double max_diff = 0.0;
    for (int i = 0; i < N * 10; i++)
        max_diff = fmax(max_diff, fabs(pf[i] - pp[i]));
    CHECK_NEAR(max_diff, 0.0, 1e-6);
    nn_model_backward(&fused, x, y, N, 1.0f / N, NULL);
    nn_model_backward(&plain, x, y, N, 1.0f / N, NULL);
    max_diff = 0.0;
    for (size_t i = 0; i < fused.num_trainable; i++)
        max_diff = fmax(max_diff, fabs(fused.grads[i] - plain.grads[i]));
    CHECK_NEAR(max_diff, 0.0, 1e-6);
    nn_model_free(&fused);
    nn_model_free(&plain);
}

/* 100 Adam steps on one fixed batch of 16 drive the training loss of each
 * model type far below its starting value of about ln(10) = 2.3. The loss
 * is measured in training mode, because after 100 steps BatchNormalization's
 * moving averages (momentum 0.99) are still far from the batch statistics. */
static void test_overfit_fixed_batch(void)
{
    enum { N = 16 };
    float x[N * 784];
    int32_t y[N];
    fill_batch(x, y, N, 2);
    for (int t = 0; t < 3; t++) {
        nn_model m;
        nn_adam opt;
        CHECK(nn_model_create(&m, nn_model_types[t], 4) == 0);
        CHECK(nn_model_reserve(&m, N) == 0);
        CHECK(nn_adam_init(&opt, m.num_trainable) == 0);
        double first = 0.0, last = 0.0;
        int correct = 0;
        for (int step = 0; step < 100; step++) {
            nn_model_set_dropout_key(&m, 4, (uint64_t)step, NULL, N);
            nn_model_forward(&m, x, N, true);
            double loss = nn_model_backward(&m, x, y, N, 1.0f / N, NULL) / N;
            nn_adam_step(&opt, m.trainable, m.grads);
            if (step == 0)
                first = loss;
        }
        nn_model_set_dropout_key(&m, 4, 1000, NULL, N);
        nn_model_forward(&m, x, N, true);
        last = nn_model_loss(&m, y, N, &correct) / N;
        CHECK_MSG(first > 2.0, "%s: first loss %.4f", nn_model_types[t], first);
        CHECK_MSG(last < 0.15, "%s: loss after 100 steps %.4f", nn_model_types[t], last);
        CHECK_MSG(correct == N, "%s: %d of %d correct", nn_model_types[t], correct, N);
        nn_adam_free(&opt);
        nn_model_free(&m);
    }
}

/* Keras's Adam on a single weight, computed by hand for two steps. */
static void test_adam_update_rule(void)
{
    nn_adam opt;
    float w = 1.0f, g = 0.5f;
    CHECK(nn_adam_init(&opt, 1) == 0);
    nn_adam_step(&opt, &w, &g);
    /* m = 0.05, v = 0.00025, alpha = 1e-3 * sqrt(0.001) / 0.1 */
    double alpha = 1e-3 * sqrt(1 - 0.999) / (1 - 0.9);
    double expected = 1.0 - alpha * 0.05 / (sqrt(0.00025) + 1e-7);
    CHECK_NEAR(w, expected, 1e-7);
    CHECK_INT_EQ(opt.iterations, 1);
    nn_adam_free(&opt);
}

static void test_glorot_uniform_limits(void)
{
    nn_model m;
    CHECK(nn_model_create(&m, "cnn", 11) == 0);
    nn_param *kernel = nn_model_find_variable(&m, "conv2d_1/kernel");
    nn_param *bias = nn_model_find_variable(&m, "conv2d_1/bias");
    CHECK(kernel != NULL && bias != NULL);
    /* fan_in = 3*3*32, fan_out = 3*3*64 */
    double limit = sqrt(6.0 / (288.0 + 576.0)), max = 0.0, sum = 0.0;
    for (size_t i = 0; i < kernel->size; i++) {
        max = fmax(max, fabs(kernel->value[i]));
        sum += kernel->value[i];
    }
    CHECK(max <= limit);
    CHECK(max > 0.95 * limit);
    CHECK_NEAR(sum / (double)kernel->size, 0.0, 0.01);
    float bias_max = 0.0f;
    for (size_t i = 0; i < bias->size; i++)
        bias_max = fmaxf(bias_max, fabsf(bias->value[i]));
    CHECK(bias_max == 0.0f);
    nn_model_free(&m);
}

/* Splitting the batch across threads changes only the order of float
 * sums: outputs, gradients and moving statistics agree with one thread. */
static void test_threads_match_one_thread(void)
{
    enum { N = 7 }; /* odd, so the parts are uneven */
    float x[N * 784];
    int32_t y[N];
    fill_batch(x, y, N, 5);
    for (int t = 0; t < 3; t++) {
        nn_model a, b;
        CHECK(nn_model_create(&a, nn_model_types[t], 6) == 0);
        CHECK(nn_model_create(&b, nn_model_types[t], 6) == 0);
        CHECK(nn_model_reserve(&a, N) == 0);
        CHECK(nn_model_reserve(&b, N) == 0);
        nn_model_set_dropout_key(&a, 1, 1, NULL, N);
        nn_model_set_dropout_key(&b, 1, 1, NULL, N);
        nn_set_threads(1);
        float pa[N * 10];
        memcpy(pa, nn_model_forward(&a, x, N, true), sizeof pa);
        nn_model_backward(&a, x, y, N, 1.0f / N, NULL);
        nn_set_threads(3);
        const float *pb = nn_model_forward(&b, x, N, true);
        nn_model_backward(&b, x, y, N, 1.0f / N, NULL);
        nn_set_threads(1);
        double out_diff = 0.0, grad_diff = 0.0, grad_max = 0.0, state_diff = 0.0;
        for (int i = 0; i < N * 10; i++)
            out_diff = fmax(out_diff, fabs(pa[i] - pb[i]));
        for (size_t i = 0; i < a.num_trainable; i++) {
            grad_diff = fmax(grad_diff, fabs(a.grads[i] - b.grads[i]));
            grad_max = fmax(grad_max, fabs(a.grads[i]));
        }
        for (size_t i = 0; i < a.num_non_trainable; i++)
            state_diff = fmax(state_diff, fabs(a.non_trainable[i] - b.non_trainable[i]));
        CHECK_MSG(out_diff < 1e-6, "%s: outputs differ by %g", nn_model_types[t], out_diff);
        CHECK_MSG(grad_diff <= 1e-5 * grad_max, "%s: gradients differ by %g (max %g)",
                  nn_model_types[t], grad_diff, grad_max);
        CHECK_MSG(state_diff < 1e-6, "%s: moving statistics differ by %g", nn_model_types[t],
                  state_diff);
        nn_model_free(&a);
        nn_model_free(&b);
    }
}

int main(void)
{
    RUN_TEST(test_summary_totals);
    RUN_TEST(test_summary_cnn_table);
    RUN_TEST(test_fused_relu_pooling_matches_plain);
    RUN_TEST(test_overfit_fixed_batch);
    RUN_TEST(test_adam_update_rule);
    RUN_TEST(test_glorot_uniform_limits);
    RUN_TEST(test_threads_match_one_thread);
    return check_finish();
}
