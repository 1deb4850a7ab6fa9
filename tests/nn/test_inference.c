/*
 * The inference routes of Conv2D (the direct method for few input
 * channels, Winograd F(4x4, 3x3) once the kernel is prepared) against the
 * convolution's definition computed in double precision, and whole models
 * with and without nn_model_prepare_inference.
 */
#include "check.h"

#include "base/rng.h"
#include "nn/model.h"
#include "nn/parallel.h"

static void fill_uniform(float *v, size_t n, float low, float high, uint64_t stream)
{
    dm_rng rng;
    dm_rng_seed(&rng, 17, stream);
    for (size_t i = 0; i < n; i++)
        v[i] = low + (high - low) * dm_rng_uniform(&rng);
}

/* Largest |conv2d_forward - definition| over BATCH images, relative to the
 * largest output, for the only layer of M (a Conv2D without activation). */
static double conv_error(nn_model *m, int batch)
{
    nn_layer *l = &m->layers[0];
    const int ih = l->in.h, iw = l->in.w, cin = l->in.c, oh = l->out.h, ow = l->out.w;
    const int cout = l->out.c;
    const size_t in_size = nn_shape_size(l->in), out_size = nn_shape_size(l->out);
    float *x = malloc((size_t)batch * in_size * sizeof *x);
    fill_uniform(x, (size_t)batch * in_size, 0.0f, 1.0f, 2);
    if (x == NULL || nn_model_reserve(m, batch) != 0)
        return INFINITY;
    const float *y = nn_model_forward(m, x, batch, false);
    const float *w = l->params[0].value, *bias = l->params[1].value;
    double worst = 0.0, largest = 0.0;
    for (int b = 0; b < batch; b++) {
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                for (int co = 0; co < cout; co++) {
                    double sum = bias[co];
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++)
                            for (int ci = 0; ci < cin; ci++)
                                sum += (double)x[b * in_size +
                                                 ((size_t)(oy + ky) * iw + ox + kx) * cin + ci] *
                                       w[((size_t)(ky * 3 + kx) * cin + ci) * cout + co];
                    double got = y[b * out_size + ((size_t)oy * ow + ox) * cout + co];
                    worst = fmax(worst, fabs(got - sum));
                    largest = fmax(largest, fabs(sum));
                }
            }
        }
    }
    (void)ih;
    free(x);
    return worst / largest;
}

/* A model of one linear Conv2D with random weights and biases, prepared
 * for inference when PREPARE is set. */
static int make_conv(nn_model *m, int h, int w, int cin, int filters, bool prepare)
{
    nn_model_begin(m, (nn_shape){3, h, w, cin}, 10);
    nn_model_add_conv2d(m, filters, NN_LINEAR);
    if (nn_model_finish(m, 5) != 0)
        return -1;
    fill_uniform(m->layers[0].params[1].value, (size_t)filters, -0.5f, 0.5f, 3);
    return prepare ? nn_model_prepare_inference(m) : 0;
}

/* Each shape exercises one route. 28x28x1 takes the direct method.
 * 13x13x32 and the rectangular 10x13x8 take Winograd with partial tiles on
 * both sides. 5x5x64 is a single tile, so one image takes im2col and
 * several take Winograd. 6x6x1 with 8 filters takes im2col, because 8
 * filters do not fill the vector lanes. */
static void test_conv_routes_match_definition(void)
{
    static const struct {
        int h, w, cin, filters, batch;
    } cases[] = {
        {28, 28, 1, 32, 3}, {13, 13, 32, 64, 1}, {13, 13, 32, 64, 9}, {10, 13, 8, 16, 2},
        {5, 5, 64, 64, 1},  {5, 5, 64, 64, 6},   {6, 6, 1, 8, 2},
    };
    for (int threads = 1; threads <= 2; threads++) {
        nn_set_threads(threads);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            for (int prepare = 0; prepare <= 1; prepare++) {
                nn_model m;
                CHECK(make_conv(&m, cases[i].h, cases[i].w, cases[i].cin, cases[i].filters,
                                prepare) == 0);
                CHECK(prepare == m.layers[0].winograd_ready || cases[i].cin < 8);
                double error = conv_error(&m, cases[i].batch);
                CHECK_MSG(error < 1e-5,
                          "%dx%dx%d to %d filters, batch %d, %d threads, %s: "
                          "relative error %.3g",
                          cases[i].h, cases[i].w, cases[i].cin, cases[i].filters, cases[i].batch,
                          threads, prepare ? "prepared" : "unprepared", error);
                nn_model_free(&m);
            }
        }
    }
    nn_set_threads(1);
}

/* The three reference models give the same probabilities with and without
 * preparation, at batch sizes that fill and that leave partial tiles and
 * thread parts. */
static void test_prepared_models_match(void)
{
    enum { MAX_BATCH = 11 };
    static const int batches[] = {1, 2, MAX_BATCH};
    float *x = malloc(MAX_BATCH * 784 * sizeof *x);
    fill_uniform(x, MAX_BATCH * 784, 0.0f, 1.0f, 4);
    for (int t = 0; t < 3; t++) {
        nn_model plain, fast;
        CHECK(nn_model_create(&plain, nn_model_types[t], 21) == 0);
        CHECK(nn_model_create(&fast, nn_model_types[t], 21) == 0);
        CHECK(nn_model_prepare_inference(&fast) == 0);
        CHECK(nn_model_reserve(&plain, MAX_BATCH) == 0);
        CHECK(nn_model_reserve(&fast, MAX_BATCH) == 0);
        for (int threads = 1; threads <= 2; threads++) {
            nn_set_threads(threads);
            for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
                const int n = batches[b];
                const float *p = nn_model_forward(&plain, x, n, false);
                const float *q = nn_model_forward(&fast, x, n, false);
                double worst = 0.0;
                for (int i = 0; i < n * 10; i++)
                    worst = fmax(worst, fabs(p[i] - q[i]));
                CHECK_MSG(worst < 1e-5, "%s, batch %d, %d threads: probabilities differ by %.3g",
                          nn_model_types[t], n, threads, worst);
            }
        }
        nn_set_threads(1);
        nn_model_free(&plain);
        nn_model_free(&fast);
    }
    free(x);
}

/* A batch larger than one pass of inference runs in chunks. Each example's
 * probabilities and its share of the loss, which comes from the kept
 * logits, must match a forward pass of that example alone. */
static void test_chunked_batch_matches_examples(void)
{
    enum { N = 37 };
    float *x = malloc(N * 784 * sizeof *x);
    int32_t labels[N];
    fill_uniform(x, N * 784, 0.0f, 1.0f, 6);
    for (int i = 0; i < N; i++)
        labels[i] = i % 10;
    for (int t = 0; t < 3; t++) {
        nn_model m;
        CHECK(nn_model_create(&m, nn_model_types[t], 23) == 0);
        CHECK(nn_model_prepare_inference(&m) == 0);
        CHECK(nn_model_reserve(&m, N) == 0);
        float together[N * 10];
        memcpy(together, nn_model_forward(&m, x, N, false), sizeof together);
        const double batch_loss = nn_model_loss(&m, labels, N, NULL);
        double worst = 0.0, loss_sum = 0.0;
        for (int i = 0; i < N; i++) {
            const float *alone = nn_model_forward(&m, x + i * 784, 1, false);
            for (int k = 0; k < 10; k++)
                worst = fmax(worst, fabs(alone[k] - together[i * 10 + k]));
            loss_sum += nn_model_loss(&m, &labels[i], 1, NULL);
        }
        CHECK_MSG(worst < 1e-5, "%s: probabilities differ by %.3g", nn_model_types[t], worst);
        CHECK_MSG(fabs(batch_loss - loss_sum) <= 1e-4 * fabs(loss_sum),
                  "%s: loss of the batch %.9g, sum over the examples %.9g", nn_model_types[t],
                  batch_loss, loss_sum);
        nn_model_free(&m);
    }
    free(x);
}

/* A training pass changes the weights, so inference must stop using the
 * prepared Winograd kernels, and an inference pass after it uses the new
 * weights. */
static void test_training_drops_prepared_kernels(void)
{
    enum { N = 4 };
    float x[N * 784];
    fill_uniform(x, N * 784, 0.0f, 1.0f, 5);
    nn_model m;
    CHECK(nn_model_create(&m, "cnn", 8) == 0);
    CHECK(nn_model_prepare_inference(&m) == 0);
    CHECK(nn_model_reserve(&m, N) == 0);
    nn_param *kernel = nn_model_find_variable(&m, "conv2d_1/kernel");
    CHECK(m.layers[2].winograd_ready);
    CHECK(kernel != NULL);
    nn_model_forward(&m, x, N, true);
    CHECK(!m.layers[2].winograd_ready);
    for (size_t i = 0; i < kernel->size; i++)
        kernel->value[i] *= -1.0f;
    float before[N * 10];
    memcpy(before, nn_model_forward(&m, x, N, false), sizeof before);
    CHECK(nn_model_prepare_inference(&m) == 0);
    const float *after = nn_model_forward(&m, x, N, false);
    double worst = 0.0;
    for (int i = 0; i < N * 10; i++)
        worst = fmax(worst, fabs(before[i] - after[i]));
    CHECK_NEAR(worst, 0.0, 1e-5);
    nn_model_free(&m);
}

int main(void)
{
    nn_set_threads(1);
    RUN_TEST(test_conv_routes_match_definition);
    RUN_TEST(test_prepared_models_match);
    RUN_TEST(test_chunked_batch_matches_examples);
    RUN_TEST(test_training_drops_prepared_kernels);
    return check_finish();
}
