/*
 * Request decoding: TensorFlow Serving predict bodies (row and columnar,
 * b64 images and pixel lists) and KServe V2 infer bodies, with the status
 * and message of each error.
 */
#include "check.h"
#include "fixture.h"

#include "serve/request.h"

#include <stdarg.h>

static const srv_signature sig = {"image_bytes", "predictions", 28, 28};

/* Standard base64 of DATA, malloc'd. */
static char *base64(const unsigned char *data, size_t size)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(size / 3 * 4 + 5);
    size_t n = 0;
    for (size_t i = 0; i < size; i += 3) {
        unsigned v = (unsigned)data[i] << 16;
        if (i + 1 < size)
            v |= (unsigned)data[i + 1] << 8;
        if (i + 2 < size)
            v |= data[i + 2];
        out[n++] = alphabet[(v >> 18) & 63];
        out[n++] = alphabet[(v >> 12) & 63];
        out[n++] = i + 1 < size ? alphabet[(v >> 6) & 63] : '=';
        out[n++] = i + 2 < size ? alphabet[v & 63] : '=';
    }
    out[n] = '\0';
    return out;
}

static char *fixture_base64(const char *name)
{
    size_t size = 0;
    unsigned char *data = fixture_read(name, &size);
    char *text = base64(data, size);
    free(data);
    return text;
}

/* A body built with printf-style formatting, malloc'd. */
static char *body_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *body_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *body = malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(body, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return body;
}

/* A JSON list of COUNT copies of VALUE, nested as ROWS x (COUNT / ROWS)
 * when ROWS > 0. */
static char *number_list(int count, const char *value, int rows)
{
    size_t capacity = (size_t)count * (strlen(value) + 4) + 16;
    char *out = malloc(capacity);
    size_t n = (size_t)snprintf(out, capacity, "[");
    for (int i = 0; i < count; i++) {
        if (rows > 0 && i % (count / rows) == 0)
            n += (size_t)snprintf(out + n, capacity - n, "%s[", i > 0 ? "," : "");
        else if (i > 0)
            n += (size_t)snprintf(out + n, capacity - n, ",");
        n += (size_t)snprintf(out + n, capacity - n, "%s", value);
        if (rows > 0 && (i + 1) % (count / rows) == 0)
            n += (size_t)snprintf(out + n, capacity - n, "]");
    }
    snprintf(out + n, capacity - n, "]");
    return out;
}

static int decode(const char *body, srv_input *in, srv_error *err)
{
    err->status = 0;
    err->message[0] = '\0';
    return srv_decode_predict(body, strlen(body), &sig, in, err);
}

static void expect_ok(const char *what, char *body, int batch, srv_input *in)
{
    srv_error err;
    int rc = decode(body, in, &err);
    CHECK_MSG(rc == 0, "%s: %d %s", what, err.status, err.message);
    CHECK_MSG(rc != 0 || in->batch == batch, "%s: batch %d, expected %d", what, in->batch, batch);
    free(body);
}

static void expect_error(const char *what, char *body, int status, const char *text)
{
    srv_input in;
    srv_error err;
    int rc = decode(body, &in, &err);
    CHECK_MSG(rc != 0, "%s was accepted", what);
    CHECK_MSG(err.status == status, "%s: status %d, expected %d (%s)", what, err.status, status,
              err.message);
    CHECK_MSG(strstr(err.message, text) != NULL, "%s: '%s' does not contain '%s'", what,
              err.message, text);
    CHECK(in.x == NULL);
    free(body);
}

static void test_predict_b64_alphabets(void)
{
    char *b = fixture_base64("F1-gray128-baseline-28.jpg");
    CHECK(strchr(b, '+') != NULL);
    CHECK(strchr(b, '/') != NULL);
    char *u = strdup(b);
    for (char *p = u; *p; p++) {
        if (*p == '+')
            *p = '-';
        else if (*p == '/')
            *p = '_';
    }
    srv_input standard, url_safe;
    expect_ok("standard", body_printf("{\"instances\":[{\"image_bytes\":{\"b64\":\"%s\"}}]}", b),
              1, &standard);
    expect_ok("url-safe", body_printf("{\"instances\":[{\"image_bytes\":{\"b64\":\"%s\"}}]}", u),
              1, &url_safe);
    CHECK(standard.x != NULL && url_safe.x != NULL &&
          memcmp(standard.x, url_safe.x, 784 * sizeof(float)) == 0);
    CHECK_NEAR(standard.x != NULL ? standard.x[0] : -1.0f, 128.0f / 255.0f, 0.0);
    CHECK_INT_EQ(standard.format, SRV_FORMAT_ROW);
    srv_input_free(&standard);
    srv_input_free(&url_safe);
    expect_error("missing padding",
                 strdup("{\"instances\":[{\"image_bytes\":{\"b64\":\"QQ\"}}]}"), 400,
                 "element: 0 of 'instances' list. Error: Unable to decode image");
    expect_error("illegal character",
                 strdup("{\"instances\":[{\"image_bytes\":{\"b64\":\"abc$\"}}]}"), 400,
                 "Failed to process element: 0 of 'instances' list. Error: Unable to base64 "
                 "decode: invalid character '$' at position 3");
    expect_error("control character",
                 strdup("{\"instances\":[{\"image_bytes\":{\"b64\":\"\\u0001\\n\"}}]}"), 400,
                 "invalid character '\x01' at position 0");
    expect_error("b64 not a string", strdup("{\"instances\":[{\"b64\":12}]}"), 400,
                 "is not formatted correctly for base64 data");
    free(b);
    free(u);
}

static void test_predict_mixed_instances(void)
{
    char *f1 = fixture_base64("F1-gray128-baseline-28.jpg");
    char *f3 = fixture_base64("F3-stripes1px-56.jpg");
    srv_input in;
    expect_ok("two sizes",
              body_printf("{\"instances\":[{\"image_bytes\":{\"b64\":\"%s\"}},"
                          "{\"image_bytes\":{\"b64\":\"%s\"}}]}",
                          f1, f3),
              2, &in);
    CHECK_NEAR(in.x != NULL ? in.x[784] : -1.0f, 127.5f / 255.0f, 0.0);
    srv_input_free(&in);
    expect_error("wrong key",
                 body_printf("{\"instances\":[{\"image_bytes\":{\"b64\":\"%s\"}},"
                             "{\"image\":{\"b64\":\"%s\"}}]}",
                             f1, f1),
                 400,
                 "Failed to process element: 1 of 'instances' list. Error: JSON object: does not "
                 "have named input: image_bytes");
    char *n784 = number_list(784, "0.5", 0), *n783 = number_list(783, "0.5", 0);
    expect_error("784 and 783 numbers", body_printf("{\"instances\":[%s,%s]}", n784, n783), 400,
                 "element: 1 of 'instances' list. Error: Expecting tensor size: 784 but got: 783");
    free(n784);
    free(n783);
    free(f1);
    free(f3);
}

static void test_predict_pixel_shapes(void)
{
    char *flat = number_list(784, "0.25", 0), *rows = number_list(784, "0.25", 28);
    char *cells = number_list(784, "[0.25]", 28);
    srv_input a, b, c;
    expect_ok("784 numbers", body_printf("{\"instances\":[%s]}", flat), 1, &a);
    expect_ok("28x28", body_printf("{\"instances\":[%s]}", rows), 1, &b);
    expect_ok("28x28x1", body_printf("{\"instances\":[%s]}", cells), 1, &c);
    CHECK(a.x != NULL && b.x != NULL && memcmp(a.x, b.x, 784 * sizeof(float)) == 0);
    CHECK(a.x != NULL && c.x != NULL && memcmp(a.x, c.x, 784 * sizeof(float)) == 0);
    CHECK_NEAR(a.x != NULL ? a.x[783] : -1.0f, 0.25, 0.0);
    srv_input_free(&a);
    srv_input_free(&b);
    srv_input_free(&c);
    char *wide = number_list(784, "0.25", 14);
    expect_error("14x56", body_printf("{\"instances\":[%s]}", wide), 400,
                 "Expecting shape [28,28], [28,28,1] or [784] but got: [14,56]");
    free(wide);
    expect_error("ragged", strdup("{\"instances\":[[[1,2],[3]]]}"), 400,
                 "Encountered list at unexpected size: 1 at dimension 1, expected 2");
    expect_error("string pixel", strdup("{\"instances\":[[\"a\\\"b\"]]}"), 400,
                 "JSON Value: \"a\\\"b\" Type: String is not of expected type: float");
    expect_error("number instance", strdup("{\"instances\":[0.5]}"), 400,
                 "Expecting an image as {\"b64\": \"...\"} or a list of pixel values, but got: 0.5");
    srv_input nan_in;
    char *nans = number_list(784, "NaN", 0);
    expect_ok("NaN pixels", body_printf("{\"instances\":[%s]}", nans), 1, &nan_in);
    CHECK(nan_in.x != NULL && isnan(nan_in.x[0]));
    srv_input_free(&nan_in);
    free(nans);
    free(flat);
    free(rows);
    free(cells);
}

static void test_predict_columnar(void)
{
    char *b = fixture_base64("F1-gray128-baseline-28.jpg");
    char *flat = number_list(784, "0.5", 0);
    srv_input in;
    expect_ok("named list",
              body_printf("{\"inputs\":{\"image_bytes\":[{\"b64\":\"%s\"},{\"b64\":\"%s\"}]}}", b,
                          b),
              2, &in);
    CHECK_INT_EQ(in.format, SRV_FORMAT_COLUMNAR);
    srv_input_free(&in);
    expect_ok("single b64", body_printf("{\"inputs\":{\"b64\":\"%s\"}}", b), 1, &in);
    srv_input_free(&in);
    expect_ok("pixel list", body_printf("{\"inputs\":[%s,%s]}", flat, flat), 2, &in);
    srv_input_free(&in);
    expect_error("missing name", body_printf("{\"inputs\":{\"x\":[%s]}}", flat), 400,
                 "Missing named input: image_bytes in 'inputs' object.");
    expect_error("flat numbers", body_printf("{\"inputs\":%s}", flat), 400,
                 "Failed to process element: 0 of 'inputs' list.");
    free(b);
    free(flat);
}

static void test_predict_request_errors(void)
{
    expect_error("empty body", strdup(""), 400, "JSON Parse error: The document is empty");
    expect_error("not JSON", strdup("instances = [1, 2]"), 400,
                 "JSON Parse error: Invalid value. at offset: 0");
    expect_error("not an object", strdup("[1]"), 400, "JSON Value: [1] Is not object");
    expect_error("no instances", strdup("{\"signature_name\":\"serving_default\"}"), 400,
                 "Missing 'inputs' or 'instances' key");
    expect_error("both keys", strdup("{\"instances\":[1],\"inputs\":[1]}"), 400,
                 "expecting only one of 'inputs' or 'instances' keys to exist");
    expect_error("empty instances", strdup("{\"instances\":[]}"), 400,
                 "No values in 'instances' array");
    expect_error("instances object", strdup("{\"instances\":{}}"), 400,
                 "Expecting 'instances' to be an list/array");
    expect_error("signature number", strdup("{\"signature_name\":1,\"instances\":[1]}"), 400,
                 "'signature_name' key must be a string value.");
    expect_error("other signature", strdup("{\"signature_name\":\"x\\\"y\",\"instances\":[1]}"),
                 400, "Serving signature name: \"x\"y\" not found in signature def");
}

static void test_predict_undecodable_images(void)
{
    size_t size = 0;
    unsigned char *f1 = fixture_read("F1-gray128-baseline-28.jpg", &size);
    char *cut = base64(f1, 200);
    unsigned char raw[784];
    memset(raw, 9, sizeof raw);
    char *raw_b64 = base64(raw, sizeof raw);
    const char *values[] = {"iVBORw0KGgo=", "R0lGODlh", "aGVsbG8gd29ybGQ=", raw_b64, cut};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        expect_error(values[i], body_printf("{\"instances\":[{\"b64\":\"%s\"}]}", values[i]), 400,
                     "Error: Unable to decode image: ");
    free(f1);
    free(cut);
    free(raw_b64);
}

static int decode_infer(const char *body, srv_input *in, srv_error *err)
{
    err->status = 0;
    err->message[0] = '\0';
    return srv_decode_infer(body, strlen(body), &sig, in, err);
}

static void expect_infer_error(const char *what, char *body, const char *text)
{
    srv_input in;
    srv_error err;
    CHECK_MSG(decode_infer(body, &in, &err) != 0, "%s was accepted", what);
    CHECK_MSG(err.status == 400, "%s: status %d", what, err.status);
    CHECK_MSG(strstr(err.message, text) != NULL, "%s: '%s' does not contain '%s'", what,
              err.message, text);
    free(body);
}

static void test_infer_fp32_nested_and_flat(void)
{
    char *rows = number_list(784, "0.75", 28), *flat = number_list(784, "0.75", 0);
    char *short_list = number_list(783, "0.75", 0);
    const char *fmt = "{\"id\":\"r1\",\"inputs\":[{\"name\":\"input-0\",\"shape\":%s,"
                      "\"datatype\":\"%s\",\"data\":%s}]}";
    srv_input nested, flat_in;
    srv_error err;
    char *body = body_printf(fmt, "[1,28,28]", "FP32", rows);
    CHECK_MSG(decode_infer(body, &nested, &err) == 0, "nested: %s", err.message);
    free(body);
    body = body_printf(fmt, "[1,784]", "FP32", flat);
    CHECK_MSG(decode_infer(body, &flat_in, &err) == 0, "flat: %s", err.message);
    free(body);
    CHECK(nested.x != NULL && flat_in.x != NULL &&
          memcmp(nested.x, flat_in.x, 784 * sizeof(float)) == 0);
    CHECK(nested.id != NULL && strcmp(nested.id, "r1") == 0);
    srv_input_free(&nested);
    srv_input_free(&flat_in);
    expect_infer_error("783 values", body_printf(fmt, "[1,28,28]", "FP32", short_list),
                       "Input 'input-0': 'data' has 783 values but its shape needs 784");
    expect_infer_error("INT64", body_printf(fmt, "[1,28,28]", "INT64", flat),
                       "Input 'input-0': unsupported datatype 'INT64'");
    expect_infer_error("string shape", body_printf(fmt, "\"1,28,28\"", "FP32", flat),
                       "Input 'input-0': 'shape' must be a list");
    expect_infer_error("other shape", body_printf(fmt, "[1,27,29]", "FP32", flat),
                       "Input 'input-0': shape [1,27,29] is not supported");
    expect_infer_error("two inputs", strdup("{\"inputs\":[{},{}]}"), "Expected 1 input tensor");
    expect_infer_error("unknown output",
                       body_printf("{\"inputs\":[{\"name\":\"x\",\"shape\":[1,784],\"datatype\":"
                                   "\"FP32\",\"data\":%s}],\"outputs\":[{\"name\":\"logits\"}]}",
                                   flat),
                       "Unknown output 'logits'");
    free(rows);
    free(flat);
    free(short_list);
}

static void test_infer_bytes(void)
{
    char *b = fixture_base64("F1-gray128-baseline-28.jpg");
    srv_input in;
    srv_error err;
    char *body = body_printf("{\"inputs\":[{\"name\":\"image_bytes\",\"shape\":[2],\"datatype\":"
                             "\"BYTES\",\"data\":[\"%s\",{\"b64\":\"%s\"}]}]}",
                             b, b);
    CHECK_MSG(decode_infer(body, &in, &err) == 0, "BYTES: %s", err.message);
    CHECK_INT_EQ(in.batch, 2);
    CHECK_NEAR(in.x != NULL ? in.x[784] : -1.0f, 128.0f / 255.0f, 0.0);
    srv_input_free(&in);
    free(body);
    expect_infer_error("not an image",
                       strdup("{\"inputs\":[{\"name\":\"i\",\"shape\":[1],\"datatype\":\"BYTES\","
                              "\"data\":[\"aGVsbG8=\"]}]}"),
                       "Input 'i': failed to process element 0 of 'data'. Error: Unable to decode "
                       "image");
    free(b);
}

int main(void)
{
    RUN_TEST(test_predict_b64_alphabets);
    RUN_TEST(test_predict_mixed_instances);
    RUN_TEST(test_predict_pixel_shapes);
    RUN_TEST(test_predict_columnar);
    RUN_TEST(test_predict_request_errors);
    RUN_TEST(test_predict_undecodable_images);
    RUN_TEST(test_infer_fp32_nested_and_flat);
    RUN_TEST(test_infer_bytes);
    return check_finish();
}
