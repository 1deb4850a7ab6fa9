#include "serve/request.h"

#include "serve/base64.h"
#include "serve/image.h"
#include "serve/json.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Maximum bytes of a request value quoted in an error message. */
enum { EXCERPT_BYTES = 80, MAX_RANK = 8 };

int srv_error_set(srv_error *err, int status, const char *fmt, ...)
{
    va_list ap;
    err->status = status;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

void srv_input_free(srv_input *in)
{
    free(in->x);
    free(in->id);
    memset(in, 0, sizeof *in);
}

/* Writes "PREFIX<excerpt of V>SUFFIX" into MSG and returns -1. */
static int fail_with_value(char *msg, const char *prefix, const srv_json *v, const char *suffix)
{
    srv_buf buf;
    srv_buf_init(&buf);
    srv_buf_puts(&buf, prefix);
    srv_buf_json_excerpt(&buf, v, EXCERPT_BYTES);
    srv_buf_puts(&buf, suffix);
    snprintf(msg, SRV_ERROR_MAX, "%s", buf.failed || buf.data == NULL ? prefix : buf.data);
    srv_buf_free(&buf);
    return -1;
}

static bool is_b64_object(const srv_json *v)
{
    return v->type == SRV_JSON_OBJECT && srv_json_get(v, "b64") != NULL;
}

/* ---- one example ---- */

static int decode_b64_image(const srv_json *object, const srv_signature *sig, float *dst,
                            char *msg)
{
    const srv_json *text = srv_json_get(object, "b64");
    if (object->count != 1 || text->type != SRV_JSON_STRING)
        return fail_with_value(msg, "JSON object: ", object,
                               " is not formatted correctly for base64 data: expected "
                               "{\"b64\": \"<base64 string>\"}");
    uint8_t *bytes = malloc(srv_base64_decoded_max(text->length));
    if (bytes == NULL) {
        snprintf(msg, SRV_ERROR_MAX, "Out of memory decoding base64 of %zu characters",
                 text->length);
        return -1;
    }
    size_t size = 0, position = 0;
    if (srv_base64_decode(text->string, text->length, bytes, &size, &position) != 0) {
        /* An ASCII character is quoted as it is; the reply's JSON string
         * escaping turns control characters into \u00XX. */
        char shown[8];
        unsigned char c = (unsigned char)text->string[position];
        if (c != '\0' && c < 0x80)
            snprintf(shown, sizeof shown, "'%c'", c);
        else
            snprintf(shown, sizeof shown, "0x%02X", c);
        snprintf(msg, SRV_ERROR_MAX,
                 "Unable to base64 decode: invalid character %s at position %zu of %zu",
                 shown, position, text->length);
        free(bytes);
        return -1;
    }
    int rc = srv_image_to_input(bytes, size, dst, sig->width, sig->height, msg, SRV_ERROR_MAX);
    free(bytes);
    return rc;
}

/* Flattens the regular nested list V of shape DIMS[0..RANK) into DST,
 * writing at most CAPACITY values and counting all of them in *COUNT. */
static int flatten_numbers(const srv_json *v, const int *dims, int rank, int depth, float *dst,
                           size_t capacity, size_t *count, char *msg)
{
    if (depth == rank) {
        if (v->type != SRV_JSON_NUMBER) {
            if (v->type == SRV_JSON_ARRAY)
                return fail_with_value(msg, "Encountered list at unexpected level: ", v,
                                       " where a number was expected");
            char suffix[64];
            snprintf(suffix, sizeof suffix, " Type: %s is not of expected type: float",
                     srv_json_type_name(v->type));
            return fail_with_value(msg, "JSON Value: ", v, suffix);
        }
        if (*count < capacity)
            dst[*count] = (float)v->number;
        (*count)++;
        return 0;
    }
    if (v->type != SRV_JSON_ARRAY) {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "Expecting a list at dimension %d but got: ", depth);
        return fail_with_value(msg, prefix, v, "");
    }
    if (v->count != (size_t)dims[depth]) {
        snprintf(msg, SRV_ERROR_MAX,
                 "Encountered list at unexpected size: %zu at dimension %d, expected %d",
                 v->count, depth, dims[depth]);
        return -1;
    }
    for (size_t i = 0; i < v->count; i++)
        if (flatten_numbers(v->items[i], dims, rank, depth + 1, dst, capacity, count, msg) != 0)
            return -1;
    return 0;
}

static void format_shape(char *out, size_t capacity, const int *dims, int rank)
{
    size_t used = (size_t)snprintf(out, capacity, "[");
    for (int d = 0; d < rank && used < capacity; d++)
        used += (size_t)snprintf(out + used, capacity - used, d ? ",%d" : "%d", dims[d]);
    if (used < capacity)
        snprintf(out + used, capacity - used, "]");
}

/* Decodes a list of pixel values shaped (H, W), (H, W, 1) or (H * W). */
static int decode_pixels(const srv_json *v, const srv_signature *sig, float *dst, char *msg)
{
    int dims[MAX_RANK];
    int rank = 0;
    for (const srv_json *p = v; p->type == SRV_JSON_ARRAY; p = p->items[0]) {
        if (rank == MAX_RANK) {
            snprintf(msg, SRV_ERROR_MAX, "Pixel lists nest deeper than %d levels", MAX_RANK);
            return -1;
        }
        dims[rank++] = (int)p->count;
        if (p->count == 0)
            break;
    }
    const size_t expected = (size_t)sig->height * (size_t)sig->width;
    size_t count = 0;
    if (flatten_numbers(v, dims, rank, 0, dst, expected, &count, msg) != 0)
        return -1;
    if (count != expected) {
        snprintf(msg, SRV_ERROR_MAX, "Expecting tensor size: %zu but got: %zu", expected, count);
        return -1;
    }
    bool image_shape = (rank == 2 || (rank == 3 && dims[2] == 1)) && dims[0] == sig->height &&
                       dims[1] == sig->width;
    if (!image_shape && rank != 1) {
        char shape[96];
        format_shape(shape, sizeof shape, dims, rank);
        snprintf(msg, SRV_ERROR_MAX,
                 "Expecting shape [%d,%d], [%d,%d,1] or [%zu] but got: %s", sig->height,
                 sig->width, sig->height, sig->width, expected, shape);
        return -1;
    }
    return 0;
}

/* Decodes one example: a b64 object, a pixel list or, when NAMED_OK, an
 * object whose only member is the input name. */
static int decode_example(const srv_json *v, const srv_signature *sig, bool named_ok, float *dst,
                          char *msg)
{
    if (is_b64_object(v))
        return decode_b64_image(v, sig, dst, msg);
    if (v->type == SRV_JSON_ARRAY)
        return decode_pixels(v, sig, dst, msg);
    if (v->type == SRV_JSON_OBJECT && named_ok) {
        const srv_json *named = srv_json_get(v, sig->input_name);
        if (named == NULL) {
            snprintf(msg, SRV_ERROR_MAX, "JSON object: does not have named input: %s",
                     sig->input_name);
            return -1;
        }
        if (v->count != 1) {
            for (size_t i = 0; i < v->count; i++) {
                if (v->items[i] != named) {
                    snprintf(msg, SRV_ERROR_MAX,
                             "JSON object: has the unexpected key '%s': the only input is %s",
                             v->items[i]->key, sig->input_name);
                    return -1;
                }
            }
        }
        return decode_example(named, sig, false, dst, msg);
    }
    return fail_with_value(msg, "Expecting an image as {\"b64\": \"...\"} or a list of pixel "
                                "values, but got: ",
                           v, "");
}

/* ---- predict ---- */

static int alloc_batch(srv_input *in, size_t batch, const srv_signature *sig, srv_error *err)
{
    if (batch > SRV_MAX_BATCH)
        return srv_error_set(err, 400, "The request has %zu examples, more than the maximum of %d",
                             batch, SRV_MAX_BATCH);
    in->batch = (int)batch;
    in->x = malloc(batch * (size_t)sig->height * (size_t)sig->width * sizeof *in->x);
    if (in->x == NULL)
        return srv_error_set(err, 500, "Out of memory for a batch of %zu examples", batch);
    return 0;
}

/* Decodes the list ITEMS (called LIST in messages) of examples into IN. */
static int decode_example_list(const srv_json *items, const char *list, bool named_ok,
                               const srv_signature *sig, srv_input *in, srv_error *err)
{
    if (items->count == 0)
        return srv_error_set(err, 400, "No values in '%s' array", list);
    if (alloc_batch(in, items->count, sig, err) != 0)
        return -1;
    const size_t example_size = (size_t)sig->height * (size_t)sig->width;
    for (size_t i = 0; i < items->count; i++) {
        char msg[SRV_ERROR_MAX];
        if (decode_example(items->items[i], sig, named_ok, in->x + i * example_size, msg) != 0)
            return srv_error_set(err, 400, "Failed to process element: %zu of '%s' list. Error: %s",
                                 i, list, msg);
    }
    return 0;
}

static int decode_columnar(const srv_json *inputs, const srv_signature *sig, srv_input *in,
                           srv_error *err)
{
    in->format = SRV_FORMAT_COLUMNAR;
    const srv_json *value = inputs;
    if (inputs->type == SRV_JSON_OBJECT && !is_b64_object(inputs)) {
        value = srv_json_get(inputs, sig->input_name);
        if (value == NULL)
            return srv_error_set(err, 400, "Missing named input: %s in 'inputs' object.",
                                 sig->input_name);
        for (size_t i = 0; i < inputs->count; i++)
            if (inputs->items[i] != value)
                return srv_error_set(err, 400,
                                     "Unexpected named input: %s in 'inputs' object: the only "
                                     "input is %s",
                                     inputs->items[i]->key, sig->input_name);
    }
    if (is_b64_object(value)) {
        char msg[SRV_ERROR_MAX];
        if (alloc_batch(in, 1, sig, err) != 0)
            return -1;
        if (decode_b64_image(value, sig, in->x, msg) != 0)
            return srv_error_set(err, 400, "Failed to process 'inputs'. Error: %s", msg);
        return 0;
    }
    if (value->type != SRV_JSON_ARRAY) {
        char msg[SRV_ERROR_MAX];
        fail_with_value(msg, "Expecting 'inputs' to be a list of examples or a b64 object, but "
                             "got: ",
                        value, "");
        return srv_error_set(err, 400, "%s", msg);
    }
    return decode_example_list(value, "inputs", false, sig, in, err);
}

int srv_decode_predict(const char *body, size_t size, const srv_signature *sig, srv_input *in,
                       srv_error *err)
{
    char parse_error[256];
    memset(in, 0, sizeof *in);
    srv_json_doc *doc = srv_json_parse(body, size, parse_error, sizeof parse_error);
    if (doc == NULL)
        return srv_error_set(err, 400, "%s", parse_error);
    const srv_json *root = srv_json_root(doc);
    int rc = -1;
    if (root->type != SRV_JSON_OBJECT) {
        char msg[SRV_ERROR_MAX];
        fail_with_value(msg, "JSON Value: ", root, " Is not object");
        srv_error_set(err, 400, "%s", msg);
        goto out;
    }
    const srv_json *signature = srv_json_get(root, "signature_name");
    if (signature != NULL) {
        if (signature->type != SRV_JSON_STRING) {
            srv_error_set(err, 400, "'signature_name' key must be a string value.");
            goto out;
        }
        if (strcmp(signature->string, "serving_default") != 0 ||
            signature->length != strlen("serving_default")) {
            srv_buf name;
            srv_buf_init(&name);
            srv_buf_append(&name, signature->string, signature->length);
            srv_error_set(err, 400, "Serving signature name: \"%s\" not found in signature def",
                          name.data != NULL ? name.data : "");
            srv_buf_free(&name);
            goto out;
        }
    }
    const srv_json *instances = srv_json_get(root, "instances");
    const srv_json *inputs = srv_json_get(root, "inputs");
    if (instances != NULL && inputs != NULL) {
        srv_error_set(err, 400,
                      "JSON Value: Not formatted correctly expecting only one of 'inputs' or "
                      "'instances' keys to exist");
    } else if (instances == NULL && inputs == NULL) {
        srv_error_set(err, 400, "Missing 'inputs' or 'instances' key");
    } else if (inputs != NULL) {
        rc = decode_columnar(inputs, sig, in, err);
    } else if (instances->type != SRV_JSON_ARRAY) {
        srv_error_set(err, 400, "Expecting 'instances' to be an list/array");
    } else {
        in->format = SRV_FORMAT_ROW;
        rc = decode_example_list(instances, "instances", true, sig, in, err);
    }
out:
    srv_json_free(doc);
    if (rc != 0)
        srv_input_free(in);
    return rc;
}

/* ---- KServe V2 infer ---- */

/* Flattens every number under V (any nesting) into DST, writing at most
 * CAPACITY values and counting all in *COUNT. */
static int flatten_any(const srv_json *v, float *dst, size_t capacity, size_t *count,
                       const char *name, srv_error *err)
{
    if (v->type == SRV_JSON_ARRAY) {
        for (size_t i = 0; i < v->count; i++)
            if (flatten_any(v->items[i], dst, capacity, count, name, err) != 0)
                return -1;
        return 0;
    }
    if (v->type != SRV_JSON_NUMBER) {
        char msg[SRV_ERROR_MAX];
        char prefix[160];
        snprintf(prefix, sizeof prefix, "Input '%s': element %zu of 'data' is not a number: ",
                 name, *count);
        fail_with_value(msg, prefix, v, "");
        return srv_error_set(err, 400, "%s", msg);
    }
    if (*count < capacity)
        dst[*count] = (float)v->number;
    (*count)++;
    return 0;
}

/* Collects the BYTES elements under V (any nesting) into ITEMS. */
static int collect_strings(const srv_json *v, const srv_json **items, size_t capacity,
                           size_t *count, const char *name, srv_error *err)
{
    if (v->type == SRV_JSON_ARRAY) {
        for (size_t i = 0; i < v->count; i++)
            if (collect_strings(v->items[i], items, capacity, count, name, err) != 0)
                return -1;
        return 0;
    }
    if (v->type != SRV_JSON_STRING && !is_b64_object(v)) {
        char msg[SRV_ERROR_MAX];
        char prefix[200];
        snprintf(prefix, sizeof prefix,
                 "Input '%s': element %zu of 'data' is not a base64 string of an image: ", name,
                 *count);
        fail_with_value(msg, prefix, v, "");
        return srv_error_set(err, 400, "%s", msg);
    }
    if (*count < capacity)
        items[*count] = v;
    (*count)++;
    return 0;
}

static int decode_infer_bytes(const srv_json *data, const int64_t *shape, int rank,
                              const char *name, const srv_signature *sig, srv_input *in,
                              srv_error *err)
{
    if (rank != 1 && !(rank == 2 && shape[1] == 1))
        return srv_error_set(err, 400,
                             "Input '%s': BYTES input must have shape [N] (one encoded image per "
                             "element)",
                             name);
    if (alloc_batch(in, (size_t)shape[0], sig, err) != 0)
        return -1;
    const srv_json **items = malloc((size_t)shape[0] * sizeof *items);
    if (items == NULL)
        return srv_error_set(err, 500, "Out of memory for %lld images", (long long)shape[0]);
    size_t count = 0;
    int rc = collect_strings(data, items, (size_t)shape[0], &count, name, err);
    if (rc == 0 && count != (size_t)shape[0])
        rc = srv_error_set(err, 400, "Input '%s': 'data' has %zu elements but shape [%lld] needs %lld",
                           name, count, (long long)shape[0], (long long)shape[0]);
    const size_t example_size = (size_t)sig->height * (size_t)sig->width;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        char msg[SRV_ERROR_MAX];
        int decoded;
        if (items[i]->type == SRV_JSON_STRING) {
            /* A bare string is the base64 text itself. */
            srv_json wrapper = {.type = SRV_JSON_OBJECT, .count = 1};
            srv_json text = *items[i];
            srv_json *members[1] = {&text};
            text.key = "b64";
            text.key_length = 3;
            wrapper.items = members;
            decoded = decode_b64_image(&wrapper, sig, in->x + i * example_size, msg);
        } else {
            decoded = decode_b64_image(items[i], sig, in->x + i * example_size, msg);
        }
        if (decoded != 0)
            rc = srv_error_set(err, 400, "Input '%s': failed to process element %zu of 'data'. "
                                         "Error: %s",
                               name, i, msg);
    }
    free(items);
    return rc;
}

static int decode_infer_fp32(const srv_json *data, const int64_t *shape, int rank,
                             const char *name, const srv_signature *sig, srv_input *in,
                             srv_error *err)
{
    const int64_t h = sig->height, w = sig->width;
    bool supported = (rank == 3 && shape[1] == h && shape[2] == w) ||
                     (rank == 4 && shape[1] == h && shape[2] == w && shape[3] == 1) ||
                     (rank == 2 && shape[1] == h * w);
    if (!supported) {
        char text[128];
        int dims[MAX_RANK];
        for (int d = 0; d < rank; d++)
            dims[d] = shape[d] > 1000000000 ? -1 : (int)shape[d];
        format_shape(text, sizeof text, dims, rank);
        return srv_error_set(err, 400,
                             "Input '%s': shape %s is not supported; expected [N,%lld,%lld], "
                             "[N,%lld,%lld,1] or [N,%lld]",
                             name, text, (long long)h, (long long)w, (long long)h, (long long)w,
                             (long long)(h * w));
    }
    if (alloc_batch(in, (size_t)shape[0], sig, err) != 0)
        return -1;
    const size_t expected = (size_t)shape[0] * (size_t)(h * w);
    size_t count = 0;
    if (flatten_any(data, in->x, expected, &count, name, err) != 0)
        return -1;
    if (count != expected)
        return srv_error_set(err, 400,
                             "Input '%s': 'data' has %zu values but its shape needs %zu",
                             name, count, expected);
    return 0;
}

/* Reads the V2 "shape" list into SHAPE, checking each dimension. */
static int read_infer_shape(const srv_json *v, int64_t *shape, int *rank, const char *name,
                            srv_error *err)
{
    bool valid = v != NULL && v->type == SRV_JSON_ARRAY && v->count >= 1 && v->count <= MAX_RANK;
    for (size_t d = 0; valid && d < v->count; d++) {
        const srv_json *dim = v->items[d];
        valid = dim->type == SRV_JSON_NUMBER && dim->number >= 0 && dim->number <= 1e12 &&
                dim->number == (double)(int64_t)dim->number;
        if (valid)
            shape[d] = (int64_t)dim->number;
    }
    if (!valid) {
        char msg[SRV_ERROR_MAX];
        char prefix[160];
        snprintf(prefix, sizeof prefix,
                 "Input '%s': 'shape' must be a list of 1 to %d non-negative integers, but got: ",
                 name, MAX_RANK);
        if (v == NULL)
            snprintf(msg, sizeof msg, "Input '%s': 'shape' is missing", name);
        else
            fail_with_value(msg, prefix, v, "");
        return srv_error_set(err, 400, "%s", msg);
    }
    *rank = (int)v->count;
    if (shape[0] == 0)
        return srv_error_set(err, 400, "Input '%s': the batch dimension of 'shape' is 0", name);
    if (shape[0] > SRV_MAX_BATCH)
        return srv_error_set(err, 400, "Input '%s': batch of %lld is more than the maximum of %d",
                             name, (long long)shape[0], SRV_MAX_BATCH);
    return 0;
}

static int decode_infer_input(const srv_json *input, const srv_signature *sig, srv_input *in,
                              srv_error *err)
{
    char name[128];
    const srv_json *name_value = srv_json_get(input, "name");
    if (input->type != SRV_JSON_OBJECT || name_value == NULL ||
        name_value->type != SRV_JSON_STRING)
        return srv_error_set(err, 400, "Input 0 must be an object with a string 'name'");
    snprintf(name, sizeof name, "%s", name_value->string);

    int64_t shape[MAX_RANK];
    int rank = 0;
    if (read_infer_shape(srv_json_get(input, "shape"), shape, &rank, name, err) != 0)
        return -1;
    const srv_json *datatype = srv_json_get(input, "datatype");
    if (datatype == NULL || datatype->type != SRV_JSON_STRING)
        return srv_error_set(err, 400, "Input '%s': 'datatype' must be a string such as \"FP32\"",
                             name);
    const srv_json *data = srv_json_get(input, "data");
    if (data == NULL)
        return srv_error_set(err, 400, "Input '%s': 'data' is missing", name);
    if (strcmp(datatype->string, "FP32") == 0)
        return decode_infer_fp32(data, shape, rank, name, sig, in, err);
    if (strcmp(datatype->string, "BYTES") == 0)
        return decode_infer_bytes(data, shape, rank, name, sig, in, err);
    char shown[64];
    snprintf(shown, sizeof shown, "%s", datatype->string);
    return srv_error_set(err, 400,
                         "Input '%s': unsupported datatype '%s'; expected FP32 (pixels in [0, 1]) "
                         "or BYTES (base64 of a JPEG or PNG file)",
                         name, shown);
}

/* Checks the optional "outputs" list: only the model's output may be
 * requested. */
static int check_infer_outputs(const srv_json *outputs, const srv_signature *sig, srv_error *err)
{
    if (outputs == NULL)
        return 0;
    if (outputs->type != SRV_JSON_ARRAY)
        return srv_error_set(err, 400, "'outputs' must be a list of objects with a 'name'");
    for (size_t i = 0; i < outputs->count; i++) {
        const srv_json *name = srv_json_get(outputs->items[i], "name");
        if (name == NULL || name->type != SRV_JSON_STRING)
            return srv_error_set(err, 400, "Output %zu must be an object with a string 'name'", i);
        if (strcmp(name->string, sig->output_name) != 0) {
            char shown[128];
            snprintf(shown, sizeof shown, "%s", name->string);
            return srv_error_set(err, 400, "Unknown output '%s': the model's only output is %s",
                                 shown, sig->output_name);
        }
    }
    return 0;
}

int srv_decode_infer(const char *body, size_t size, const srv_signature *sig, srv_input *in,
                     srv_error *err)
{
    char parse_error[256];
    memset(in, 0, sizeof *in);
    in->format = SRV_FORMAT_COLUMNAR;
    srv_json_doc *doc = srv_json_parse(body, size, parse_error, sizeof parse_error);
    if (doc == NULL)
        return srv_error_set(err, 400, "%s", parse_error);
    const srv_json *root = srv_json_root(doc);
    const srv_json *inputs = srv_json_get(root, "inputs");
    const srv_json *id = srv_json_get(root, "id");
    int rc = -1;
    if (root->type != SRV_JSON_OBJECT) {
        srv_error_set(err, 400, "The inference request must be a JSON object");
    } else if (id != NULL && id->type != SRV_JSON_STRING) {
        srv_error_set(err, 400, "'id' must be a string");
    } else if (inputs == NULL || inputs->type != SRV_JSON_ARRAY) {
        srv_error_set(err, 400, "Missing 'inputs' list in the inference request");
    } else if (inputs->count != 1) {
        srv_error_set(err, 400, "Expected 1 input tensor, but the request has %zu",
                      inputs->count);
    } else if (check_infer_outputs(srv_json_get(root, "outputs"), sig, err) == 0 &&
               decode_infer_input(inputs->items[0], sig, in, err) == 0) {
        rc = 0;
        if (id != NULL) {
            in->id = malloc(id->length + 1);
            if (in->id == NULL) {
                rc = srv_error_set(err, 500, "Out of memory");
            } else {
                memcpy(in->id, id->string, id->length + 1);
            }
        }
    }
    srv_json_free(doc);
    if (rc != 0)
        srv_input_free(in);
    return rc;
}
