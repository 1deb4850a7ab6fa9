/*
 * Model directories: a saved and reloaded model gives the same outputs as
 * the original, for all three model types, and damaged directories are
 * rejected.
 */
#include "check.h"

#include "base/error.h"
#include "base/rng.h"
#include "model/bundle.h"
#include "model/saved_model.h"
#include "train/fit.h"
#include "nn/adam.h"

#include <stdio.h>

enum { N = 8 };

static void fill_batch(float *x, int32_t *y)
{
    dm_rng rng;
    dm_rng_seed(&rng, 8, 8);
    for (int i = 0; i < N * 784; i++)
        x[i] = dm_rng_uniform(&rng);
    for (int i = 0; i < N; i++)
        y[i] = (int32_t)(i % 10);
}

/* A few training steps, so BatchNormalization's moving statistics and all
 * weights are away from their initial values. */
static void train_a_little(nn_model *m, const float *x, const int32_t *y)
{
    nn_adam opt;
    nn_adam_init(&opt, m->num_trainable);
    for (int step = 0; step < 5; step++) {
        nn_model_set_dropout_key(m, 1, (uint64_t)step, NULL, N);
        nn_model_forward(m, x, N, true);
        nn_model_backward(m, x, y, N, 1.0f / N, NULL);
        nn_adam_step(&opt, m->trainable, m->grads);
    }
    nn_adam_free(&opt);
}

static void test_save_load_identical_outputs(void)
{
    const char *dir = check_tmpdir("saved_model");
    float x[N * 784], before[N * 10];
    int32_t y[N];
    fill_batch(x, y);
    for (int t = 0; t < 3; t++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, nn_model_types[t]);
        nn_model m, loaded;
        CHECK(nn_model_create(&m, nn_model_types[t], 3) == 0);
        CHECK(nn_model_reserve(&m, N) == 0);
        train_a_little(&m, x, y);
        /* saved_model_load prepares the model for inference, so the
         * original takes the same route for bit-identical outputs. */
        CHECK(nn_model_prepare_inference(&m) == 0);
        memcpy(before, nn_model_forward(&m, x, N, false), sizeof before);
        CHECK_MSG(saved_model_save(path, &m) == 0, "%s", dm_error());
        CHECK_MSG(saved_model_load(path, &loaded) == 0, "%s", dm_error());
        CHECK_INT_EQ(loaded.num_layers, m.num_layers);
        CHECK_INT_EQ(loaded.num_trainable, m.num_trainable);
        CHECK_INT_EQ(loaded.num_non_trainable, m.num_non_trainable);
        CHECK(strcmp(loaded.model_type, nn_model_types[t]) == 0);
        CHECK(nn_model_reserve(&loaded, N) == 0);
        const float *after = nn_model_forward(&loaded, x, N, false);
        CHECK_MSG(memcmp(before, after, sizeof before) == 0, "%s: outputs differ",
                  nn_model_types[t]);
        nn_model_free(&m);
        nn_model_free(&loaded);
    }
}

/* Single-image and batched inference of a batch_norm model agree, because
 * inference uses the moving statistics, not the batch's. */
static void test_batch_norm_inference_per_image(void)
{
    float x[N * 784], batched[N * 10];
    int32_t y[N];
    fill_batch(x, y);
    nn_model m;
    CHECK(nn_model_create(&m, "batch_norm", 5) == 0);
    CHECK(nn_model_reserve(&m, N) == 0);
    train_a_little(&m, x, y);
    memcpy(batched, nn_model_forward(&m, x, N, false), sizeof batched);
    double max_diff = 0.0;
    for (int i = 0; i < N; i++) {
        const float *single = nn_model_forward(&m, x + i * 784, 1, false);
        for (int j = 0; j < 10; j++)
            max_diff = fmax(max_diff, fabs(single[j] - batched[i * 10 + j]));
    }
    CHECK_NEAR(max_diff, 0.0, 1e-6);
    nn_model_free(&m);
}

static void flip_byte(const char *path, long offset)
{
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fseek(f, offset, SEEK_SET);
    int c = fgetc(f);
    fseek(f, offset, SEEK_SET);
    fputc(c ^ 0x01, f);
    fclose(f);
}

static void test_damaged_model_rejected(void)
{
    const char *dir = check_tmpdir("saved_model_damaged");
    char model_dir[4096], path[4200];
    nn_model m, loaded;
    snprintf(model_dir, sizeof model_dir, "%s/1", dir);
    CHECK(nn_model_create(&m, "cnn", 1) == 0);
    CHECK(saved_model_save(model_dir, &m) == 0);

    snprintf(path, sizeof path, "%s/%s", model_dir, SAVED_MODEL_VARIABLES_FILE);
    flip_byte(path, 4000);
    CHECK(saved_model_load(model_dir, &loaded) != 0);
    CHECK_STR_CONTAINS(dm_error(), SAVED_MODEL_VARIABLES_FILE);
    flip_byte(path, 4000);
    CHECK_MSG(saved_model_load(model_dir, &loaded) == 0, "%s", dm_error());
    nn_model_free(&loaded);

    snprintf(path, sizeof path, "%s/manifest.json", model_dir);
    CHECK(remove(path) == 0);
    CHECK(saved_model_load(model_dir, &loaded) != 0);
    CHECK_STR_CONTAINS(dm_error(), "incomplete");

    snprintf(path, sizeof path, "%s/missing", dir);
    CHECK(saved_model_load(path, &loaded) != 0);
    nn_model_free(&m);
}

static void test_spec_names_input_and_layers(void)
{
    nn_model m;
    CHECK(nn_model_create(&m, "dropout", 1) == 0);
    char *spec = saved_model_spec_json(&m);
    CHECK(spec != NULL);
    CHECK_STR_CONTAINS(spec, "\"name\":\t\"image_bytes\"");
    CHECK_STR_CONTAINS(spec, "\"class_name\":\t\"Dropout\"");
    CHECK_STR_CONTAINS(spec, "\"half_pixel_centers\":\ttrue");
    CHECK_STR_CONTAINS(spec, "\"Ankle boot\"");
    free(spec);
    nn_model_free(&m);
}

/* Write a copy of the model in SRC to DST with FIND replaced by REPLACE in
 * model.json, as a consistent bundle, so only the spec check can reject it. */
static int write_edited_copy(const char *src, const char *dst, const char *find,
                             const char *replace)
{
    unsigned char *spec = NULL, *vars = NULL;
    size_t spec_size = 0, vars_size = 0;
    if (bundle_read_file(src, SAVED_MODEL_SPEC_FILE, &spec, &spec_size) != 0 ||
        bundle_read_file(src, SAVED_MODEL_VARIABLES_FILE, &vars, &vars_size) != 0)
        return -1;
    char *at = strstr((char *)spec, find);
    if (at == NULL) {
        free(spec);
        free(vars);
        return -1;
    }
    size_t edited_size = spec_size - strlen(find) + strlen(replace);
    char *edited = malloc(edited_size + 1);
    size_t head = (size_t)(at - (char *)spec);
    memcpy(edited, spec, head);
    memcpy(edited + head, replace, strlen(replace));
    strcpy(edited + head + strlen(replace), at + strlen(find));
    bundle_writer *w = bundle_begin(dst, SAVED_MODEL_FORMAT);
    int rc = w == NULL || bundle_add_file(w, SAVED_MODEL_SPEC_FILE, edited, edited_size) != 0 ||
                     bundle_add_file(w, SAVED_MODEL_VARIABLES_FILE, vars, vars_size) != 0 ||
                     bundle_commit(w, true) != 0
                 ? -1
                 : 0;
    free(spec);
    free(vars);
    free(edited);
    return rc;
}

static void test_spec_rejects_unsupported_configs(void)
{
    static const struct {
        const char *model_type, *find, *replace, *message;
    } cases[] = {
        {"cnn", "\"kernel_size\":\t[3, 3]", "\"kernel_size\":\t[5, 5]", "kernel_size"},
        {"cnn", "\"padding\":\t\"valid\"", "\"padding\":\t\"same\"", "padding"},
        {"cnn", "\"filters\":\t32", "\"filters\":\t32.7", "filters"},
        {"cnn", "\"filters\":\t32", "\"filters\":\t1000000000", "filters"},
        {"cnn", "\"units\":\t64", "\"units\":\t-1", "units"},
        {"cnn", "\"format_version\":\t1", "\"format_version\":\t99", "format_version"},
        {"batch_norm", "\"epsilon\":\t", "\"epsilon\":\t-1, \"x\":\t", "epsilon"},
    };
    const char *dir = check_tmpdir("saved_model_spec");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char src[4096], dst[4096];
        nn_model m, loaded;
        snprintf(src, sizeof src, "%s/src-%s", dir, cases[i].model_type);
        snprintf(dst, sizeof dst, "%s/edited-%zu", dir, i);
        CHECK(nn_model_create(&m, cases[i].model_type, 1) == 0);
        CHECK(saved_model_save(src, &m) == 0);
        nn_model_free(&m);
        CHECK_MSG(write_edited_copy(src, dst, cases[i].find, cases[i].replace) == 0,
                  "case %zu: cannot edit model.json", i);
        CHECK_MSG(saved_model_load(dst, &loaded) != 0, "case %zu (%s) was accepted", i,
                  cases[i].replace);
        CHECK_STR_CONTAINS(dm_error(), cases[i].message);
    }
}

/* A model whose output has 1 class cannot be scored on labels 0-9. */
static void test_evaluate_rejects_class_mismatch(void)
{
    const char *dir = check_tmpdir("saved_model_classes");
    nn_model m;
    nn_model_begin(&m, (nn_shape){3, 28, 28, 1}, 1);
    nn_model_add_flatten(&m);
    nn_model_add_dense(&m, 1, NN_SOFTMAX);
    CHECK(nn_model_finish(&m, 1) == 0);
    CHECK(saved_model_save(dir, &m) == 0);
    nn_model_free(&m);
    uint8_t images[2 * 784] = {0}, labels[2] = {9, 3};
    ds_split split = {.count = 2, .rows = 28, .cols = 28, .images = images, .labels = labels};
    double loss = 0.0, accuracy = 0.0;
    CHECK(fit_evaluate_dir(dir, &split, 2, NULL, &loss, &accuracy) != 0);
    CHECK_STR_CONTAINS(dm_error(), "1 classes");
}

int main(void)
{
    RUN_TEST(test_save_load_identical_outputs);
    RUN_TEST(test_batch_norm_inference_per_image);
    RUN_TEST(test_damaged_model_rejected);
    RUN_TEST(test_spec_names_input_and_layers);
    RUN_TEST(test_spec_rejects_unsupported_configs);
    RUN_TEST(test_evaluate_rejects_class_mismatch);
    return check_finish();
}
