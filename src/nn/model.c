/*
 * Sequential model: building the three reference CNNs, laying out their
 * variables, and running forward and backward passes over the layers.
 */
#include "nn/model.h"

#include "base/error.h"
#include "base/rng.h"
#include "nn/linear.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const nn_model_types[3] = {"cnn", "dropout", "batch_norm"};

typedef void (*forward_fn)(nn_layer *, const float *, float *, int, bool);
typedef void (*backward_fn)(nn_layer *, const float *, const float *, const float *, float *,
                            int);

static const struct {
    const char *class_name; /* Keras class, for names and the summary */
    const char *base_name;  /* Keras default layer name before "_N" */
    forward_fn forward;
    backward_fn backward;
} kinds[] = {
    [NN_CONV2D] = {"Conv2D", "conv2d", conv2d_forward, conv2d_backward},
    [NN_MAX_POOLING2D] = {"MaxPooling2D", "max_pooling2d", max_pooling2d_forward,
                          max_pooling2d_backward},
    [NN_FLATTEN] = {"Flatten", "flatten", flatten_forward, flatten_backward},
    [NN_DENSE] = {"Dense", "dense", dense_forward, dense_backward},
    [NN_ACTIVATION] = {"Activation", "activation", activation_layer_forward,
                       activation_layer_backward},
    [NN_BATCH_NORMALIZATION] = {"BatchNormalization", "batch_normalization", batch_norm_forward,
                                batch_norm_backward},
    [NN_DROPOUT] = {"Dropout", "dropout", dropout_forward, dropout_backward},
};

const char *nn_layer_class_name(nn_layer_kind kind)
{
    return kinds[kind].class_name;
}

static nn_shape shape3(int h, int w, int c)
{
    return (nn_shape){.rank = 3, .h = h, .w = w, .c = c};
}

static nn_shape shape1(int c)
{
    return (nn_shape){.rank = 1, .h = 1, .w = 1, .c = c};
}

static nn_shape last_shape(const nn_model *m)
{
    return m->num_layers == 0 ? m->input : m->layers[m->num_layers - 1].out;
}

/* Append a layer named as Keras names it: the first of a class gets the
 * base name, later ones "_1", "_2", ... */
static nn_layer *add_layer(nn_model *m, nn_layer_kind kind)
{
    int same = 0;
    if (m->num_layers >= NN_MAX_LAYERS)
        abort(); /* the builders below are only called with fixed stacks */
    for (int i = 0; i < m->num_layers; i++)
        same += m->layers[i].kind == kind;
    nn_layer *l = &m->layers[m->num_layers];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->in = last_shape(m);
    l->out = l->in;
    if (same == 0)
        snprintf(l->name, sizeof l->name, "%s", kinds[kind].base_name);
    else
        snprintf(l->name, sizeof l->name, "%s_%d", kinds[kind].base_name, same);
    m->num_layers++;
    return l;
}

static void add_variable(nn_layer *l, const char *suffix, int ndim, const int *shape,
                         bool trainable)
{
    nn_param *p = &l->params[l->num_params++];
    snprintf(p->name, sizeof p->name, "%s/%s", l->name, suffix);
    p->ndim = ndim;
    p->size = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->size *= (size_t)shape[i];
    }
    p->trainable = trainable;
}

void nn_model_add_conv2d(nn_model *m, int filters, nn_activation act)
{
    nn_layer *l = add_layer(m, NN_CONV2D);
    l->filters = filters;
    l->kernel = 3;
    l->activation = act;
    l->out = shape3(l->in.h - 2, l->in.w - 2, filters);
    add_variable(l, "kernel", 4, (int[]){3, 3, l->in.c, filters}, true);
    add_variable(l, "bias", 1, (int[]){filters}, true);
}

void nn_model_add_max_pooling2d(nn_model *m)
{
    nn_layer *l = add_layer(m, NN_MAX_POOLING2D);
    l->out = shape3(l->in.h / 2, l->in.w / 2, l->in.c);
}

void nn_model_add_flatten(nn_model *m)
{
    nn_layer *l = add_layer(m, NN_FLATTEN);
    l->out = shape1((int)nn_shape_size(l->in));
}

void nn_model_add_dense(nn_model *m, int units, nn_activation act)
{
    nn_layer *l = add_layer(m, NN_DENSE);
    l->units = units;
    l->activation = act;
    l->out = shape1(units);
    add_variable(l, "kernel", 2, (int[]){(int)nn_shape_size(l->in), units}, true);
    add_variable(l, "bias", 1, (int[]){units}, true);
}

void nn_model_add_batch_normalization(nn_model *m)
{
    nn_layer *l = add_layer(m, NN_BATCH_NORMALIZATION);
    l->momentum = 0.99f;
    l->epsilon = 1e-3f;
    int c = l->in.c;
    add_variable(l, "gamma", 1, &c, true);
    add_variable(l, "beta", 1, &c, true);
    add_variable(l, "moving_mean", 1, &c, false);
    add_variable(l, "moving_variance", 1, &c, false);
}

void nn_model_add_activation(nn_model *m, nn_activation act)
{
    nn_layer *l = add_layer(m, NN_ACTIVATION);
    l->activation = act;
}

void nn_model_add_dropout(nn_model *m, float rate)
{
    nn_layer *l = add_layer(m, NN_DROPOUT);
    l->rate = rate;
}

/* The layer stacks of the reference design's three models. */
static int build_layers(nn_model *m, const char *model_type)
{
    bool batch_norm = strcmp(model_type, "batch_norm") == 0;
    bool dropout = strcmp(model_type, "dropout") == 0;

    if (!batch_norm && !dropout && strcmp(model_type, "cnn") != 0)
        return dm_fail("unknown model type '%s': expected cnn, dropout or batch_norm",
                       model_type);
    nn_model_add_conv2d(m, 32, NN_RELU);
    if (batch_norm) {
        nn_model_add_batch_normalization(m);
        nn_model_add_activation(m, NN_SIGMOID);
    }
    nn_model_add_max_pooling2d(m);
    nn_model_add_conv2d(m, 64, NN_RELU);
    if (batch_norm) {
        nn_model_add_batch_normalization(m);
        nn_model_add_activation(m, NN_SIGMOID);
    }
    nn_model_add_max_pooling2d(m);
    if (dropout)
        nn_model_add_dropout(m, 0.5f);
    nn_model_add_conv2d(m, 64, NN_RELU);
    nn_model_add_flatten(m);
    nn_model_add_dense(m, 64, NN_RELU);
    nn_model_add_dense(m, m->num_classes, NN_SOFTMAX);
    return 0;
}

/* glorot_uniform: U(-L, L) with L = sqrt(6 / (fan_in + fan_out)), where a
 * conv kernel's fans count its receptive field (kh * kw * cin, kh * kw *
 * cout). */
static void glorot_uniform(nn_param *p, dm_rng *rng)
{
    double receptive = 1.0;
    for (int i = 0; i + 2 < p->ndim; i++)
        receptive *= p->shape[i];
    double fan_in = receptive * p->shape[p->ndim - 2];
    double fan_out = receptive * p->shape[p->ndim - 1];
    float limit = (float)sqrt(6.0 / (fan_in + fan_out));
    for (size_t i = 0; i < p->size; i++)
        p->value[i] = (2.0f * dm_rng_uniform(rng) - 1.0f) * limit;
}

static void initialize_variables(nn_model *m, uint64_t seed)
{
    for (int i = 0; i < m->num_layers; i++) {
        nn_layer *l = &m->layers[i];
        for (int j = 0; j < l->num_params; j++) {
            nn_param *p = &l->params[j];
            const char *suffix = strrchr(p->name, '/') + 1;
            if (strcmp(suffix, "kernel") == 0) {
                dm_rng rng;
                dm_rng_seed(&rng, seed, (uint64_t)i);
                glorot_uniform(p, &rng);
            } else {
                float v = strcmp(suffix, "gamma") == 0 || strcmp(suffix, "moving_variance") == 0
                              ? 1.0f
                              : 0.0f;
                for (size_t k = 0; k < p->size; k++)
                    p->value[k] = v;
            }
        }
    }
}

static int allocate_variables(nn_model *m)
{
    m->num_trainable = m->num_non_trainable = 0;
    for (int i = 0; i < m->num_layers; i++) {
        for (int j = 0; j < m->layers[i].num_params; j++) {
            nn_param *p = &m->layers[i].params[j];
            size_t *count = p->trainable ? &m->num_trainable : &m->num_non_trainable;
            p->offset = *count;
            *count += p->size;
        }
    }
    m->trainable = dm_calloc(m->num_trainable, sizeof(float));
    m->grads = dm_calloc(m->num_trainable, sizeof(float));
    m->non_trainable = dm_calloc(m->num_non_trainable, sizeof(float));
    if (m->trainable == NULL || m->grads == NULL || m->non_trainable == NULL)
        return -1;
    for (int i = 0; i < m->num_layers; i++) {
        for (int j = 0; j < m->layers[i].num_params; j++) {
            nn_param *p = &m->layers[i].params[j];
            p->value = (p->trainable ? m->trainable : m->non_trainable) + p->offset;
            p->grad = p->trainable ? m->grads + p->offset : NULL;
        }
    }
    return 0;
}

void nn_model_begin(nn_model *m, nn_shape input, int num_classes)
{
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "sequential");
    m->input = input;
    m->num_classes = num_classes;
    m->fuse_relu_pooling = true;
}

int nn_model_finish(nn_model *m, uint64_t seed)
{
    if (m->num_layers == 0)
        return dm_fail("model %s has no layers", m->name);
    if (allocate_variables(m) != 0) {
        nn_model_free(m);
        return -1;
    }
    initialize_variables(m, seed);
    for (int i = 0; i + 1 < m->num_layers; i++) {
        nn_layer *l = &m->layers[i], *next = &m->layers[i + 1];
        if (l->kind == NN_CONV2D && l->activation == NN_RELU && next->kind == NN_MAX_POOLING2D &&
            m->fuse_relu_pooling) {
            l->relu_to_next = true;
            next->relu_input = true;
        }
    }
    return 0;
}

int nn_model_create(nn_model *m, const char *model_type, uint64_t seed)
{
    nn_model_begin(m, shape3(28, 28, 1), 10);
    snprintf(m->model_type, sizeof m->model_type, "%s", model_type);
    if (build_layers(m, model_type) != 0)
        return -1;
    return nn_model_finish(m, seed);
}

static void free_scratch(nn_model *m)
{
    for (int i = 0; i < m->num_layers; i++) {
        nn_layer *l = &m->layers[i];
        free(m->outputs[i]);
        free(l->col);
        free(l->dz);
        free(l->argmax);
        free(l->mask);
        free(l->xhat);
        free(l->batch_mean);
        free(l->batch_invstd);
        free(l->logits);
        free(l->partial);
        l->partial = NULL;
        l->partial_parts = 0;
        l->col_parts = 0;
        m->outputs[i] = NULL;
        l->col = l->dz = l->mask = l->xhat = l->batch_mean = l->batch_invstd = l->logits = NULL;
        l->argmax = NULL;
    }
    free(m->grad_a);
    free(m->grad_b);
    free(m->example_ids);
    m->grad_a = m->grad_b = NULL;
    m->example_ids = NULL;
    m->capacity = 0;
}

void nn_model_free(nn_model *m)
{
    free_scratch(m);
    for (int i = 0; i < m->num_layers; i++) {
        free(m->layers[i].winograd);
        m->layers[i].winograd = NULL;
    }
    free(m->trainable);
    free(m->grads);
    free(m->non_trainable);
    m->trainable = m->grads = m->non_trainable = NULL;
}

static int reserve_layer(nn_layer *l, int batch)
{
    const size_t out = (size_t)batch * nn_shape_size(l->out);
    bool ok = true;

    switch (l->kind) {
    case NN_CONV2D: {
        /* One part's scratch; conv2d_forward grows it to one per thread. */
        ok = (l->col = dm_malloc(conv2d_part_floats(l) * sizeof(float))) &&
             (l->dz = dm_malloc(out * sizeof(float)));
        l->col_parts = ok ? 1 : 0;
        break;
    }
    case NN_DENSE:
        ok = (l->dz = dm_malloc(out * sizeof(float))) != NULL;
        break;
    case NN_MAX_POOLING2D:
        ok = (l->argmax = dm_malloc(out * sizeof(int32_t))) != NULL;
        break;
    case NN_DROPOUT:
        ok = (l->mask = dm_malloc(out * sizeof(float))) != NULL;
        break;
    case NN_BATCH_NORMALIZATION:
        ok = (l->xhat = dm_malloc(out * sizeof(float))) &&
             (l->batch_mean = dm_malloc((size_t)l->out.c * sizeof(float))) &&
             (l->batch_invstd = dm_malloc((size_t)l->out.c * sizeof(float)));
        break;
    default:
        break;
    }
    if (ok && l->activation == NN_SOFTMAX && l->kind != NN_ACTIVATION)
        ok = (l->logits = dm_malloc(out * sizeof(float))) != NULL;
    return ok ? 0 : -1;
}

int nn_model_reserve(nn_model *m, int batch)
{
    if (batch <= 0)
        return dm_fail("invalid batch size %d: must be at least 1", batch);
    if (batch <= m->capacity)
        return 0;
    free_scratch(m);
    size_t widest = nn_shape_size(m->input);
    for (int i = 0; i < m->num_layers; i++) {
        nn_layer *l = &m->layers[i];
        size_t out = nn_shape_size(l->out);
        widest = out > widest ? out : widest;
        m->outputs[i] = dm_malloc((size_t)batch * out * sizeof(float));
        if (m->outputs[i] == NULL || reserve_layer(l, batch) != 0) {
            free_scratch(m);
            return -1;
        }
    }
    m->grad_a = dm_malloc((size_t)batch * widest * sizeof(float));
    m->grad_b = dm_malloc((size_t)batch * widest * sizeof(float));
    m->example_ids = dm_malloc((size_t)batch * sizeof(uint64_t));
    if (m->grad_a == NULL || m->grad_b == NULL || m->example_ids == NULL) {
        free_scratch(m);
        return -1;
    }
    for (int b = 0; b < batch; b++)
        m->example_ids[b] = (uint64_t)b;
    m->capacity = batch;
    return 0;
}

void nn_model_set_dropout_key(nn_model *m, uint64_t seed, uint64_t step, const uint64_t *ids,
                              int batch)
{
    for (int b = 0; b < batch && b < m->capacity; b++)
        m->example_ids[b] = ids != NULL ? ids[b] : (uint64_t)b;
    for (int i = 0; i < m->num_layers; i++) {
        m->layers[i].dropout_seed = seed;
        m->layers[i].dropout_step = step;
        m->layers[i].example_ids = m->example_ids;
    }
}

int nn_model_prepare_inference(nn_model *m)
{
    for (int i = 0; i < m->num_layers; i++)
        if (m->layers[i].kind == NN_CONV2D && conv2d_prepare_inference(&m->layers[i]) != 0)
            return dm_fail("out of memory preparing layer %s for inference", m->layers[i].name);
    return 0;
}

/* Examples per pass through the layers in inference, so that a layer's
 * outputs stay in the L2 cache until the next layer reads them. Without
 * chunks bench/forward measured the cnn at 35 us per image at batch 64
 * and 46 us at batch 256, against 31 us at batch 8 to 32; with chunks of
 * 16, 33 and 35 us. */
#define INFERENCE_CHUNK 16

/* Runs the layers on examples [FIRST, FIRST + N) of X, writing each
 * layer's outputs at the same examples of its buffers. */
static void forward_layers(nn_model *m, const float *x, int first, int n, bool training)
{
    const float *in = x + (size_t)first * nn_shape_size(m->input);
    for (int i = 0; i < m->num_layers; i++) {
        nn_layer *l = &m->layers[i];
        const size_t offset = (size_t)first * nn_shape_size(l->out);
        float *out = m->outputs[i] + offset;
        /* A softmax layer keeps its logits for the loss, at the same
         * examples as its outputs. */
        float *logits = l->logits;
        if (logits != NULL)
            l->logits = logits + offset;
        kinds[l->kind].forward(l, in, out, n, training);
        l->logits = logits;
        in = out;
    }
}

const float *nn_model_forward(nn_model *m, const float *x, int batch, bool training)
{
    /* Training runs the whole batch through each layer, because batch
     * normalization needs the statistics of all of it. */
    const int chunk = training ? batch : INFERENCE_CHUNK;
    for (int first = 0; first < batch; first += chunk)
        forward_layers(m, x, first, batch - first < chunk ? batch - first : chunk, training);
    return m->outputs[m->num_layers - 1];
}

double nn_sparse_ce_from_logits(const float *logits, const int32_t *labels, int batch,
                                int classes, float scale, float *dz, int *correct)
{
    double total = 0.0;
    int hits = 0;
    for (int b = 0; b < batch; b++) {
        const float *z = logits + (size_t)b * classes;
        int best = 0;
        for (int j = 1; j < classes; j++)
            best = z[j] > z[best] ? j : best;
        double sum = 0.0;
        for (int j = 0; j < classes; j++)
            sum += exp((double)z[j] - z[best]);
        double log_sum = log(sum) + z[best];
        total += log_sum - z[labels[b]];
        hits += best == labels[b];
        if (dz != NULL) {
            float *d = dz + (size_t)b * classes;
            for (int j = 0; j < classes; j++) {
                double p = exp((double)z[j] - log_sum);
                d[j] = (float)(scale * (p - (j == labels[b] ? 1.0 : 0.0)));
            }
        }
    }
    if (correct != NULL)
        *correct = hits;
    return total;
}

double nn_model_loss(const nn_model *m, const int32_t *labels, int batch, int *correct)
{
    const nn_layer *last = &m->layers[m->num_layers - 1];
    return nn_sparse_ce_from_logits(last->logits, labels, batch, m->num_classes, 0.0f, NULL,
                                    correct);
}

double nn_model_backward(nn_model *m, const float *x, const int32_t *labels, int batch,
                         float scale, int *correct)
{
    nn_layer *last = &m->layers[m->num_layers - 1];
    const int n = m->num_layers;

    /* The loss comes from the logits, so the softmax of the last Dense
     * layer is folded into dz = scale * (p - onehot). */
    double loss = nn_sparse_ce_from_logits(last->logits, labels, batch, m->num_classes, scale,
                                           last->dz, correct);
    const float *last_in = n > 1 ? m->outputs[n - 2] : x;
    float *dy = m->grad_a, *dx = m->grad_b;
    linear_backward(last_in, last->params[0].value, last->dz, last->params[0].grad,
                    last->params[1].grad, n > 1 ? dy : NULL, (size_t)batch,
                    (int)nn_shape_size(last->in), last->units);
    for (int i = n - 2; i >= 0; i--) {
        nn_layer *l = &m->layers[i];
        const float *in = i > 0 ? m->outputs[i - 1] : x;
        kinds[l->kind].backward(l, in, m->outputs[i], dy, i > 0 ? dx : NULL, batch);
        float *t = dy;
        dy = dx;
        dx = t;
    }
    return loss;
}

int nn_model_variables(nn_model *m, nn_param **vars, int capacity)
{
    int count = 0;
    for (int i = 0; i < m->num_layers; i++)
        for (int j = 0; j < m->layers[i].num_params; j++)
            if (count < capacity)
                vars[count++] = &m->layers[i].params[j];
    return count;
}

nn_param *nn_model_find_variable(nn_model *m, const char *name)
{
    for (int i = 0; i < m->num_layers; i++)
        for (int j = 0; j < m->layers[i].num_params; j++)
            if (strcmp(m->layers[i].params[j].name, name) == 0)
                return &m->layers[i].params[j];
    return NULL;
}
