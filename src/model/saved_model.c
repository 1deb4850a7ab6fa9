#include "model/saved_model.h"

#include "base/error.h"
#include "base/fsutil.h"
#include "model/bundle.h"
#include "model/safetensors.h"
#include "model/versions.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* Fashion-MNIST label names, indexed by class id. */
static const char *const class_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                            "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                            "Bag",         "Ankle boot"};

static cJSON *shape_json(nn_shape s)
{
    if (s.rank == 1)
        return cJSON_CreateIntArray((int[]){s.c}, 1);
    return cJSON_CreateIntArray((int[]){s.h, s.w, s.c}, 3);
}

static cJSON *layer_json(const nn_layer *l)
{
    cJSON *layer = cJSON_CreateObject();
    cJSON *config = cJSON_CreateObject();
    cJSON_AddStringToObject(layer, "class_name", nn_layer_class_name(l->kind));
    cJSON_AddStringToObject(layer, "name", l->name);
    switch (l->kind) {
    case NN_CONV2D:
        cJSON_AddNumberToObject(config, "filters", l->filters);
        cJSON_AddItemToObject(config, "kernel_size", cJSON_CreateIntArray((int[]){3, 3}, 2));
        cJSON_AddStringToObject(config, "padding", "valid");
        cJSON_AddStringToObject(config, "activation", activation_name(l->activation));
        break;
    case NN_MAX_POOLING2D:
        cJSON_AddItemToObject(config, "pool_size", cJSON_CreateIntArray((int[]){2, 2}, 2));
        break;
    case NN_DENSE:
        cJSON_AddNumberToObject(config, "units", l->units);
        cJSON_AddStringToObject(config, "activation", activation_name(l->activation));
        break;
    case NN_ACTIVATION:
        cJSON_AddStringToObject(config, "activation", activation_name(l->activation));
        break;
    case NN_BATCH_NORMALIZATION:
        cJSON_AddNumberToObject(config, "momentum", l->momentum);
        cJSON_AddNumberToObject(config, "epsilon", l->epsilon);
        break;
    case NN_DROPOUT:
        cJSON_AddNumberToObject(config, "rate", l->rate);
        break;
    case NN_FLATTEN:
        break;
    }
    cJSON_AddItemToObject(layer, "config", config);
    cJSON_AddItemToObject(layer, "output_shape", shape_json(l->out));
    return layer;
}

char *saved_model_spec_json(const nn_model *m)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", SAVED_MODEL_FORMAT);
    cJSON_AddNumberToObject(root, "format_version", 1);
    cJSON_AddStringToObject(root, "name", m->name);
    cJSON_AddStringToObject(root, "model_type", m->model_type);

    cJSON *input = cJSON_AddObjectToObject(root, "input");
    cJSON_AddStringToObject(input, "name", "image_bytes");
    cJSON_AddStringToObject(input, "dtype", "float32");
    cJSON_AddItemToObject(input, "shape", shape_json(m->input));

    cJSON *output = cJSON_AddObjectToObject(root, "output");
    cJSON_AddStringToObject(output, "name", "predictions");
    cJSON_AddStringToObject(output, "dtype", "float32");
    cJSON_AddItemToObject(output, "shape", cJSON_CreateIntArray((int[]){m->num_classes}, 1));

    /* How a server turns an encoded image into the input tensor; training
     * scaled pixels the same way. */
    cJSON *pre = cJSON_AddObjectToObject(root, "preprocessing");
    cJSON_AddStringToObject(pre, "decode", "grayscale");
    cJSON_AddStringToObject(pre, "resize", "bilinear");
    cJSON_AddBoolToObject(pre, "half_pixel_centers", 1);
    cJSON_AddBoolToObject(pre, "antialias", 0);
    cJSON_AddNumberToObject(pre, "scale", 1.0 / 255.0);

    cJSON_AddItemToObject(root, "class_names", cJSON_CreateStringArray(class_names, 10));
    cJSON *layers = cJSON_AddArrayToObject(root, "layers");
    for (int i = 0; i < m->num_layers; i++)
        cJSON_AddItemToArray(layers, layer_json(&m->layers[i]));

    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (text == NULL)
        dm_fail("out of memory formatting the model spec");
    return text;
}

static int save_model(const char *dir, nn_model *m, bool replace)
{
    nn_param *vars[NN_MAX_VARIABLES];
    st_tensor tensors[NN_MAX_VARIABLES];
    int count = nn_model_variables(m, vars, NN_MAX_VARIABLES);

    memset(tensors, 0, sizeof tensors);
    for (int i = 0; i < count; i++) {
        snprintf(tensors[i].name, sizeof tensors[i].name, "%s", vars[i]->name);
        tensors[i].dtype = ST_F32;
        tensors[i].ndim = vars[i]->ndim;
        for (int d = 0; d < vars[i]->ndim; d++)
            tensors[i].shape[d] = vars[i]->shape[d];
        tensors[i].data = vars[i]->value;
    }
    char *spec = saved_model_spec_json(m);
    if (spec == NULL)
        return -1;
    bundle_writer *w = bundle_begin(dir, SAVED_MODEL_FORMAT);
    if (w == NULL) {
        free(spec);
        return -1;
    }
    const char *const metadata[] = {"model_type", m->model_type, NULL};
    int rc = bundle_add_file(w, SAVED_MODEL_SPEC_FILE, spec, strlen(spec));
    free(spec);
    if (rc == 0)
        rc = bundle_add_safetensors(w, SAVED_MODEL_VARIABLES_FILE, tensors, (size_t)count,
                                    metadata);
    if (rc != 0) {
        bundle_abort(w);
        return dm_fail_context("cannot save model to %s", dir);
    }
    if (bundle_commit(w, replace) != 0)
        return dm_fail_context("cannot save model to %s", dir);
    return 0;
}

int saved_model_save(const char *dir, nn_model *m)
{
    return save_model(dir, m, true);
}

int saved_model_save_version(const char *base, nn_model *m, char *dir, size_t capacity)
{
    /* Another process may commit the same number between versions_next
     * and the rename; the rename then fails on the non-empty folder, and
     * the next number is tried. */
    for (int attempt = 0; attempt < 100; attempt++) {
        int64_t next = 0;
        if (versions_next(base, &next) != 0 || versions_path(dir, capacity, base, next) != 0)
            return -1;
        if (save_model(dir, m, false) == 0)
            return 0;
        if (!fs_exists(dir))
            return -1;
    }
    return dm_fail("cannot save model under %s: 100 version numbers were taken by other "
                   "writers meanwhile",
                   base);
}

/* Read KEY as a whole number in [MIN, MAX]; 32.7 or 1e9 filters are
 * errors, not silently truncated or allocated. */
static int json_int(const cJSON *obj, const char *key, int min, int max, int *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(item) || item->valuedouble != (double)(int)item->valuedouble ||
        item->valuedouble < min || item->valuedouble > max)
        return -1;
    *out = (int)item->valuedouble;
    return 0;
}

/* The engine implements 3x3 "valid" convolutions and 2x2 pooling only, so
 * any other kernel_size, pool_size or padding in model.json is rejected. */
static int json_check_pair(const cJSON *config, const char *key, int expected)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(config, key);
    if (item == NULL)
        return 0;
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2)
        return -1;
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetArrayItem(item, i);
        if (!cJSON_IsNumber(v) || v->valuedouble != expected)
            return -1;
    }
    return 0;
}

static int json_activation(const cJSON *config, nn_activation *act)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(config, "activation");
    if (!cJSON_IsString(item) || activation_parse(item->valuestring, act) != 0)
        return -1;
    return 0;
}

/* Append the layer described by one entry of model.json's "layers". */
static int add_layer_from_json(nn_model *m, const cJSON *layer, int index)
{
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(layer, "class_name");
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(layer, "config");
    nn_activation act = NN_LINEAR;
    int units = 0;

    if (!cJSON_IsString(cls) || !cJSON_IsObject(config))
        return dm_fail("layer %d has no class_name or config", index);
    if (m->num_layers >= NN_MAX_LAYERS)
        return dm_fail("more than %d layers", NN_MAX_LAYERS);
    const char *name = cls->valuestring;
    if (strcmp(name, "Conv2D") == 0) {
        const cJSON *padding = cJSON_GetObjectItemCaseSensitive(config, "padding");
        if (json_int(config, "filters", 1, 4096, &units) != 0 ||
            json_activation(config, &act) != 0)
            return dm_fail("layer %d (Conv2D) has an invalid filters (expected 1 to 4096) or "
                           "activation",
                           index);
        if (json_check_pair(config, "kernel_size", 3) != 0 ||
            (padding != NULL &&
             (!cJSON_IsString(padding) || strcmp(padding->valuestring, "valid") != 0)))
            return dm_fail("layer %d (Conv2D): only kernel_size [3, 3] with padding \"valid\" "
                           "is supported",
                           index);
        if (m->num_layers > 0 ? m->layers[m->num_layers - 1].out.rank != 3 : m->input.rank != 3)
            return dm_fail("layer %d (Conv2D) needs a rank-3 input", index);
        nn_model_add_conv2d(m, units, act);
    } else if (strcmp(name, "MaxPooling2D") == 0) {
        if (json_check_pair(config, "pool_size", 2) != 0)
            return dm_fail("layer %d (MaxPooling2D): only pool_size [2, 2] is supported", index);
        nn_model_add_max_pooling2d(m);
    } else if (strcmp(name, "Flatten") == 0) {
        nn_model_add_flatten(m);
    } else if (strcmp(name, "Dense") == 0) {
        if (json_int(config, "units", 1, 65536, &units) != 0 ||
            json_activation(config, &act) != 0)
            return dm_fail("layer %d (Dense) has an invalid units (expected 1 to 65536) or "
                           "activation",
                           index);
        nn_model_add_dense(m, units, act);
    } else if (strcmp(name, "Activation") == 0) {
        if (json_activation(config, &act) != 0)
            return dm_fail("layer %d (Activation) has an invalid activation", index);
        nn_model_add_activation(m, act);
    } else if (strcmp(name, "BatchNormalization") == 0) {
        nn_model_add_batch_normalization(m);
        const cJSON *eps = cJSON_GetObjectItemCaseSensitive(config, "epsilon");
        const cJSON *momentum = cJSON_GetObjectItemCaseSensitive(config, "momentum");
        if (eps != NULL && (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0.0)))
            return dm_fail("layer %d (BatchNormalization) has an invalid epsilon: expected a "
                           "number above 0",
                           index);
        if (momentum != NULL && (!cJSON_IsNumber(momentum) || !(momentum->valuedouble >= 0.0) ||
                                 !(momentum->valuedouble < 1.0)))
            return dm_fail("layer %d (BatchNormalization) has an invalid momentum: expected a "
                           "number in [0, 1)",
                           index);
        if (eps != NULL)
            m->layers[m->num_layers - 1].epsilon = (float)eps->valuedouble;
        if (momentum != NULL)
            m->layers[m->num_layers - 1].momentum = (float)momentum->valuedouble;
    } else if (strcmp(name, "Dropout") == 0) {
        const cJSON *rate = cJSON_GetObjectItemCaseSensitive(config, "rate");
        if (!cJSON_IsNumber(rate) || rate->valuedouble < 0.0 || rate->valuedouble >= 1.0)
            return dm_fail("layer %d (Dropout) has an invalid rate", index);
        nn_model_add_dropout(m, (float)rate->valuedouble);
    } else {
        return dm_fail("layer %d has unsupported class_name '%s'", index, name);
    }
    const nn_shape out = m->layers[m->num_layers - 1].out;
    if (out.h <= 0 || out.w <= 0 || out.c <= 0)
        return dm_fail("layer %d (%s) has an empty output", index, name);
    return 0;
}

static int build_from_spec(nn_model *m, const char *spec_text)
{
    cJSON *root = cJSON_Parse(spec_text);
    if (root == NULL)
        return dm_fail("%s is not valid JSON", SAVED_MODEL_SPEC_FILE);
    int rc = -1;
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "format_version");
    if (!cJSON_IsNumber(version) || version->valuedouble != 1.0) {
        dm_fail("%s has format_version %g, but this distml reads version 1 only",
                SAVED_MODEL_SPEC_FILE, cJSON_IsNumber(version) ? version->valuedouble : 0.0);
        goto out;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(root, "input");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(input, "shape");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 3 || !cJSON_IsArray(layers)) {
        dm_fail("%s has no input shape [h, w, c] or no layers", SAVED_MODEL_SPEC_FILE);
        goto out;
    }
    int dims[3];
    for (int i = 0; i < 3; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        dims[i] = cJSON_IsNumber(d) ? d->valueint : 0;
        if (dims[i] <= 0 || dims[i] > 4096) {
            dm_fail("%s has an invalid input shape", SAVED_MODEL_SPEC_FILE);
            goto out;
        }
    }
    nn_model_begin(m, (nn_shape){3, dims[0], dims[1], dims[2]}, 0);
    if (cJSON_IsString(type))
        snprintf(m->model_type, sizeof m->model_type, "%s", type->valuestring);
    int index = 0;
    const cJSON *layer;
    cJSON_ArrayForEach(layer, layers)
    {
        if (add_layer_from_json(m, layer, index++) != 0)
            goto out;
    }
    const nn_layer *last = m->num_layers > 0 ? &m->layers[m->num_layers - 1] : NULL;
    if (last == NULL || last->kind != NN_DENSE || last->activation != NN_SOFTMAX) {
        dm_fail("%s must end with a Dense layer with softmax", SAVED_MODEL_SPEC_FILE);
        goto out;
    }
    m->num_classes = last->units;
    rc = nn_model_finish(m, 0);
out:
    cJSON_Delete(root);
    return rc;
}

static int load_variables(nn_model *m, const st_tensor *tensors, size_t count)
{
    nn_param *vars[NN_MAX_VARIABLES];
    int n = nn_model_variables(m, vars, NN_MAX_VARIABLES);
    if ((size_t)n != count)
        return dm_fail("%s holds %zu tensors but the model has %d variables",
                       SAVED_MODEL_VARIABLES_FILE, count, n);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_find(tensors, count, vars[i]->name);
        if (t == NULL)
            return dm_fail("%s has no tensor '%s'", SAVED_MODEL_VARIABLES_FILE, vars[i]->name);
        bool same = t->dtype == ST_F32 && t->ndim == vars[i]->ndim;
        for (int d = 0; same && d < t->ndim; d++)
            same = t->shape[d] == vars[i]->shape[d];
        if (!same)
            return dm_fail("tensor '%s' in %s has a different dtype or shape than the model",
                           vars[i]->name, SAVED_MODEL_VARIABLES_FILE);
        memcpy(vars[i]->value, t->data, vars[i]->size * sizeof(float));
    }
    return 0;
}

int saved_model_load(const char *dir, nn_model *m)
{
    char format[64];
    unsigned char *spec = NULL;
    size_t spec_size = 0;
    st_tensor *tensors = NULL;
    size_t count = 0;
    char path[4096];

    memset(m, 0, sizeof *m);
    int status = bundle_verify(dir, format, sizeof format);
    if (status == BUNDLE_INCOMPLETE)
        return dm_fail_context("model %s is incomplete (no manifest.json)", dir);
    if (status != BUNDLE_OK)
        return dm_fail_context("cannot load model %s", dir);
    if (strcmp(format, SAVED_MODEL_FORMAT) != 0)
        return dm_fail("%s is a '%s' bundle, not a model (%s)", dir, format, SAVED_MODEL_FORMAT);
    if (bundle_read_file(dir, SAVED_MODEL_SPEC_FILE, &spec, &spec_size) != 0)
        return dm_fail_context("cannot load model %s", dir);
    int rc = build_from_spec(m, (const char *)spec);
    free(spec);
    if (rc != 0)
        return dm_fail_context("cannot load model %s", dir);
    snprintf(path, sizeof path, "%s/%s", dir, SAVED_MODEL_VARIABLES_FILE);
    if (st_read(path, &tensors, &count) != 0 || load_variables(m, tensors, count) != 0 ||
        nn_model_prepare_inference(m) != 0) {
        st_free(tensors, count);
        nn_model_free(m);
        return dm_fail_context("cannot load model %s", dir);
    }
    st_free(tensors, count);
    return 0;
}
