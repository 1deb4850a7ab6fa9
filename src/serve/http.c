#include "serve/http.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "serve/json.h"
#include "serve/request.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define JSON_TYPE "application/json"
#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The model's only signature, as the reference design exports it. */
#define SIGNATURE_NAME "serving_default"
#define INPUT_NAME "image_bytes"
#define OUTPUT_NAME "predictions"

struct srv_http {
    srv_http_config config;
    struct MHD_Daemon *daemon;
    int port;
    atomic_long in_flight;
};

/* ---- rate-limited error log ---- */

/* At most this many request-error lines per second; the rest are counted
 * and reported in one line when the next second starts. */
enum { ERROR_LINES_PER_SECOND = 10 };

static pthread_mutex_t error_log_lock = PTHREAD_MUTEX_INITIALIZER;
static long error_log_second = -1;
static int error_log_lines;
static long error_log_suppressed;

static void log_request_error(const char *method, const char *url, int status,
                              const char *message)
{
    const long second = (long)dm_monotonic_seconds();
    long suppressed = 0;
    bool print;
    pthread_mutex_lock(&error_log_lock);
    if (second != error_log_second) {
        suppressed = error_log_suppressed;
        error_log_second = second;
        error_log_lines = 0;
        error_log_suppressed = 0;
    }
    print = error_log_lines < ERROR_LINES_PER_SECOND;
    if (print)
        error_log_lines++;
    else
        error_log_suppressed++;
    pthread_mutex_unlock(&error_log_lock);
    if (suppressed > 0)
        DM_WARN("%ld more request errors in the last second were not logged", suppressed);
    if (print) {
        if (status >= 500)
            DM_ERROR("%s %s: %d %s", method, url, status, message);
        else
            DM_WARN("%s %s: %d %s", method, url, status, message);
    }
}

static void log_library_message(void *cls, const char *fmt, va_list ap)
{
    char message[512];
    vsnprintf(message, sizeof message, fmt, ap);
    size_t n = strlen(message);
    while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == '\r'))
        message[--n] = '\0';
    DM_WARN("libmicrohttpd: %s", message);
}

/* ---- one request ---- */

typedef struct {
    srv_http *server;
    srv_buf body;
    bool too_large;
    bool responded; /* a reply was queued before the body was read */
    int status;
    double started;
} request;

static enum MHD_Result send_reply(struct MHD_Connection *c, request *r, int status,
                                  char *body, size_t length, const char *type)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(length, body, MHD_RESPMEM_MUST_FREE);
    if (response == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    r->status = status;
    enum MHD_Result result = MHD_queue_response(c, (unsigned int)status, response);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result send_json(struct MHD_Connection *c, request *r, int status, srv_buf *body)
{
    size_t length = 0;
    char *text = srv_buf_take(body, &length);
    if (text == NULL) {
        static const char fallback[] = "{\"error\": \"Out of memory writing the reply\"}";
        text = strdup(fallback);
        if (text == NULL)
            return MHD_NO;
        length = strlen(text);
        status = 500;
    }
    return send_reply(c, r, status, text, length, JSON_TYPE);
}

static enum MHD_Result send_error(struct MHD_Connection *c, request *r, const char *method,
                                  const char *url, int status, const char *message)
{
    log_request_error(method, url, status, message);
    size_t length = 0;
    char *body = srv_json_error_body(message, &length);
    if (body == NULL)
        return MHD_NO;
    return send_reply(c, r, status, body, length, JSON_TYPE);
}

static enum MHD_Result send_errorf(struct MHD_Connection *c, request *r, const char *method,
                                   const char *url, int status, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static enum MHD_Result send_errorf(struct MHD_Connection *c, request *r, const char *method,
                                   const char *url, int status, const char *fmt, ...)
{
    char message[SRV_ERROR_MAX + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return send_error(c, r, method, url, status, message);
}

/* ---- routes ---- */

/* Consumes LITERAL at *P, ignoring ASCII case. */
static bool eat(const char **p, const char *literal)
{
    size_t n = strlen(literal);
    if (strncasecmp(*p, literal, n) != 0)
        return false;
    *p += n;
    return true;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Consumes a path segment of [^/:]+ at *P into OUT, percent-decoded as
 * TensorFlow Serving unescapes model names and labels. */
static bool take_segment(const char **p, char *out, size_t capacity)
{
    size_t n = 0;
    const char *s = *p;
    while (*s != '\0' && *s != '/' && *s != ':') {
        char c = *s++;
        if (c == '%' && hex_digit(s[0]) >= 0 && hex_digit(s[1]) >= 0) {
            c = (char)(hex_digit(s[0]) * 16 + hex_digit(s[1]));
            s += 2;
            /* A decoded NUL would end the C string early and make
             * "m%00x" match model "m", so such a name matches nothing. */
            if (c == '\0')
                return false;
        }
        if (n + 1 >= capacity)
            return false;
        out[n++] = c;
    }
    if (s == *p)
        return false;
    out[n] = '\0';
    *p = s;
    return true;
}

typedef struct {
    bool has_name;
    char name[512];
    bool has_version;
    bool version_overflow;
    char version_text[64];
    int64_t version;
    bool has_label;
    char label[256];
    bool metadata;
    char verb[16]; /* predict, classify or regress */
} v1_route;

/* Parses "/versions/<digits>" or "/labels/<label>" when present. */
static bool parse_version_or_label(const char **p, v1_route *route)
{
    if (eat(p, "/versions/")) {
        const char *s = *p;
        size_t n = 0;
        while (isdigit((unsigned char)*s)) {
            if (n + 1 < sizeof route->version_text)
                route->version_text[n++] = *s;
            s++;
        }
        if (s == *p)
            return false;
        route->version_text[n] = '\0';
        route->has_version = true;
        errno = 0;
        char *end = NULL;
        long long v = strtoll(route->version_text, &end, 10);
        route->version_overflow = errno == ERANGE || (size_t)(s - *p) >= sizeof route->version_text;
        route->version = v;
        *p = s;
    } else if (eat(p, "/labels/")) {
        if (!take_segment(p, route->label, sizeof route->label))
            return false;
        route->has_label = true;
    }
    return true;
}

/* /v1/models/NAME[/versions/N|/labels/L]:(predict|classify|regress) */
static bool parse_v1_predict(const char *url, v1_route *route)
{
    const char *p = url;
    if (!eat(&p, "/v1/models/") || !take_segment(&p, route->name, sizeof route->name))
        return false;
    route->has_name = true;
    if (!parse_version_or_label(&p, route) || *p != ':')
        return false;
    p++;
    static const char *const verbs[] = {"predict", "classify", "regress"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(p, verbs[i]) == 0) {
            snprintf(route->verb, sizeof route->verb, "%s", verbs[i]);
            return true;
        }
    }
    return false;
}

/* /v1/models[/NAME[/versions/N|/labels/L][/metadata]] */
static bool parse_v1_status(const char *url, v1_route *route)
{
    const char *p = url;
    if (!eat(&p, "/v1/models"))
        return false;
    if (*p == '\0')
        return true;
    if (!eat(&p, "/") || !take_segment(&p, route->name, sizeof route->name))
        return false;
    route->has_name = true;
    if (!parse_version_or_label(&p, route))
        return false;
    if (eat(&p, "/metadata"))
        route->metadata = true;
    return *p == '\0';
}

/* ---- replies ---- */

static void append_probabilities(srv_buf *out, const float *y, int n, int classes,
                                 const char *key)
{
    srv_buf_printf(out, "{\n    \"%s\": [\n", key);
    for (int i = 0; i < n; i++) {
        srv_buf_puts(out, "        [");
        for (int k = 0; k < classes; k++) {
            if (k > 0)
                srv_buf_puts(out, ", ");
            srv_buf_json_float(out, y[(size_t)i * (size_t)classes + (size_t)k]);
        }
        srv_buf_puts(out, i + 1 < n ? "],\n" : "]\n");
    }
    srv_buf_puts(out, "    ]\n}");
}

/* Runs the decoded batch IN on S and writes the probabilities into *Y. */
static int run_model(srv_http *h, srv_servable *s, const srv_input *in, float **y)
{
    const int classes = srv_servable_num_classes(s);
    *y = malloc((size_t)in->batch * (size_t)classes * sizeof **y);
    if (*y == NULL)
        return dm_fail("out of memory for %d predictions", in->batch);
    if (h->config.batcher != NULL)
        return srv_batcher_run(h->config.batcher, s, in->x, in->batch, *y);
    for (int first = 0; first < in->batch; first += h->config.chunk) {
        int count = in->batch - first < h->config.chunk ? in->batch - first : h->config.chunk;
        srv_metrics_batch(h->config.metrics, count);
    }
    return srv_servable_predict(s, in->x, in->batch, h->config.chunk, *y);
}

static srv_signature signature_of(const srv_servable *s)
{
    return (srv_signature){.input_name = INPUT_NAME,
                           .output_name = OUTPUT_NAME,
                           .height = srv_servable_input_height(s),
                           .width = srv_servable_input_width(s)};
}

static enum MHD_Result handle_predict(struct MHD_Connection *c, request *r, const char *url,
                                      const v1_route *route)
{
    srv_http *h = r->server;
    const bool name_matches = strcmp(route->name, h->config.model_name) == 0;
    if (route->has_version && route->version_overflow)
        return send_errorf(c, r, "POST", url, 400, "Failed to convert version: %s to numeric.",
                           route->version_text);
    if (name_matches && route->has_label)
        return send_errorf(c, r, "POST", url, 400, "Unrecognized servable version label: %s",
                           route->label);
    srv_servable *s = name_matches ? srv_manager_acquire(h->config.manager) : NULL;
    if (s == NULL || (route->has_version && route->version != srv_servable_version(s))) {
        srv_servable_release(s);
        if (route->has_version)
            return send_errorf(c, r, "POST", url, 404,
                               "Servable not found for request: Specific(%s, %" PRId64 ")",
                               route->name, route->version);
        return send_errorf(c, r, "POST", url, 404, "Servable not found for request: Latest(%s)",
                           route->name);
    }
    if (strcmp(route->verb, "predict") != 0) {
        srv_servable_release(s);
        return send_errorf(c, r, "POST", url, 400,
                           "Expected %s signature method_name to be tensorflow/serving/%s. Was: "
                           "tensorflow/serving/predict",
                           strcmp(route->verb, "classify") == 0 ? "classification" : "regression",
                           route->verb);
    }

    const srv_signature sig = signature_of(s);
    srv_input in;
    srv_error err;
    if (srv_decode_predict(r->body.data != NULL ? r->body.data : "", r->body.length, &sig, &in,
                           &err) != 0) {
        srv_servable_release(s);
        return send_error(c, r, "POST", url, err.status, err.message);
    }
    float *y = NULL;
    if (run_model(h, s, &in, &y) != 0) {
        free(y);
        srv_input_free(&in);
        srv_servable_release(s);
        return send_errorf(c, r, "POST", url, 500, "Prediction failed: %s", dm_error());
    }
    srv_buf out;
    srv_buf_init(&out);
    append_probabilities(&out, y, in.batch, srv_servable_num_classes(s),
                         in.format == SRV_FORMAT_ROW ? "predictions" : "outputs");
    free(y);
    srv_input_free(&in);
    srv_servable_release(s);
    return send_json(c, r, 200, &out);
}

static enum MHD_Result handle_status(struct MHD_Connection *c, request *r, const char *url,
                                     const v1_route *route)
{
    srv_http *h = r->server;
    if (route->has_version && route->version_overflow)
        return send_errorf(c, r, "GET", url, 400, "Failed to convert version: %s to numeric.",
                           route->version_text);
    if (strcmp(route->name, h->config.model_name) != 0)
        return send_errorf(c, r, "GET", url, 404, "Could not find any versions of model %s",
                           route->name);
    if (route->has_label)
        return send_errorf(c, r, "GET", url, 400, "Unrecognized servable version label: %s",
                           route->label);
    srv_version_status states[16];
    size_t count = srv_manager_status(h->config.manager, states, 16);
    srv_buf out;
    srv_buf_init(&out);
    srv_buf_puts(&out, "{\n \"model_version_status\": [");
    size_t listed = 0;
    for (size_t i = 0; i < count; i++) {
        if (route->has_version && states[i].version != route->version)
            continue;
        srv_buf_printf(&out,
                       "%s\n  {\n   \"version\": \"%" PRId64 "\",\n   \"state\": \"%s\",\n"
                       "   \"status\": {\n    \"error_code\": \"OK\",\n"
                       "    \"error_message\": \"\"\n   }\n  }",
                       listed > 0 ? "," : "", states[i].version, srv_state_name(states[i].state));
        listed++;
    }
    srv_buf_puts(&out, "\n ]\n}\n");
    if (listed == 0) {
        srv_buf_free(&out);
        if (route->has_version)
            return send_errorf(c, r, "GET", url, 404,
                               "Could not find version %" PRId64 " of model %s", route->version,
                               route->name);
        return send_errorf(c, r, "GET", url, 404, "Could not find any versions of model %s",
                           route->name);
    }
    return send_json(c, r, 200, &out);
}

static enum MHD_Result handle_metadata(struct MHD_Connection *c, request *r, const char *url,
                                       const v1_route *route)
{
    srv_http *h = r->server;
    if (route->has_version && route->version_overflow)
        return send_errorf(c, r, "GET", url, 400, "Failed to convert version: %s to numeric.",
                           route->version_text);
    const bool name_matches = strcmp(route->name, h->config.model_name) == 0;
    if (name_matches && route->has_label)
        return send_errorf(c, r, "GET", url, 400, "Unrecognized servable version label: %s",
                           route->label);
    srv_servable *s = name_matches ? srv_manager_acquire(h->config.manager) : NULL;
    if (s == NULL || (route->has_version && route->version != srv_servable_version(s))) {
        srv_servable_release(s);
        if (route->has_version)
            return send_errorf(c, r, "GET", url, 404,
                               "Servable not found for request: Specific(%s, %" PRId64 ")",
                               route->name, route->version);
        return send_errorf(c, r, "GET", url, 404, "Servable not found for request: Latest(%s)",
                           route->name);
    }
    srv_buf out;
    srv_buf_init(&out);
    srv_buf_puts(&out, "{\n    \"model_spec\": {\n        \"name\": ");
    srv_buf_json_string(&out, route->name, strlen(route->name));
    srv_buf_printf(&out,
                   ",\n        \"signature_name\": \"\",\n"
                   "        \"version\": \"%" PRId64 "\"\n    },\n"
                   "    \"metadata\": {\n        \"signature_def\": {\n"
                   "            \"signature_def\": {\n"
                   "                \"" SIGNATURE_NAME "\": {\n"
                   "                    \"inputs\": {\n"
                   "                        \"" INPUT_NAME "\": {\n"
                   "                            \"dtype\": \"DT_STRING\",\n"
                   "                            \"tensor_shape\": {\"dim\": [{\"size\": \"-1\", "
                   "\"name\": \"\"}], \"unknown_rank\": false},\n"
                   "                            \"name\": \"serving_default_" INPUT_NAME
                   ":0\"\n"
                   "                        }\n                    },\n"
                   "                    \"outputs\": {\n"
                   "                        \"" OUTPUT_NAME "\": {\n"
                   "                            \"dtype\": \"DT_FLOAT\",\n"
                   "                            \"tensor_shape\": {\"dim\": [{\"size\": \"-1\", "
                   "\"name\": \"\"}, {\"size\": \"%d\", \"name\": \"\"}], "
                   "\"unknown_rank\": false},\n"
                   "                            \"name\": \"StatefulPartitionedCall:0\"\n"
                   "                        }\n                    },\n"
                   "                    \"method_name\": \"tensorflow/serving/predict\",\n"
                   "                    \"defaults\": {}\n"
                   "                }\n            }\n        }\n    }\n}\n",
                   srv_servable_version(s), srv_servable_num_classes(s));
    srv_servable_release(s);
    return send_json(c, r, 200, &out);
}

static enum MHD_Result handle_v1(struct MHD_Connection *c, request *r, const char *method,
                                 const char *url)
{
    v1_route route;
    memset(&route, 0, sizeof route);
    if (strcmp(method, "POST") == 0 && parse_v1_predict(url, &route))
        return handle_predict(c, r, url, &route);
    memset(&route, 0, sizeof route);
    if ((strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
        parse_v1_status(url, &route)) {
        if (!route.has_name)
            return send_error(c, r, method, url, 400, "Missing model name in request.");
        return route.metadata ? handle_metadata(c, r, url, &route)
                              : handle_status(c, r, url, &route);
    }
    return send_errorf(c, r, method, url, 400, "Malformed request: %s %s", method, url);
}

/* ---- KServe V2 ---- */

static enum MHD_Result send_literal(struct MHD_Connection *c, request *r, int status,
                                    const char *text)
{
    srv_buf out;
    srv_buf_init(&out);
    srv_buf_puts(&out, text);
    return send_json(c, r, status, &out);
}

/* Resolves /v2/models/NAME[/versions/V] for the V2 handlers. On failure
 * the error reply is already queued and *RESULT is the queueing result. */
static srv_servable *v2_servable(struct MHD_Connection *c, request *r, const char *method,
                                 const char *url, const char *name, const char *version,
                                 enum MHD_Result *result)
{
    srv_http *h = r->server;
    srv_servable *s = NULL;
    if (strcmp(name, h->config.model_name) != 0) {
        *result = send_errorf(c, r, method, url, 404, "Model with name %s does not exist.", name);
        return NULL;
    }
    s = srv_manager_acquire(h->config.manager);
    if (s == NULL) {
        *result = send_errorf(c, r, method, url, 503, "Model with name %s is not ready.", name);
        return NULL;
    }
    if (version != NULL) {
        char expected[32];
        snprintf(expected, sizeof expected, "%" PRId64, srv_servable_version(s));
        if (strcmp(version, expected) != 0) {
            srv_servable_release(s);
            *result = send_errorf(c, r, method, url, 404,
                                  "Model with name %s has no loaded version %s; version %s is "
                                  "served",
                                  name, version, expected);
            return NULL;
        }
    }
    return s;
}

static enum MHD_Result handle_v2_metadata(struct MHD_Connection *c, request *r, srv_servable *s,
                                          const char *name)
{
    srv_buf out;
    srv_buf_init(&out);
    srv_buf_puts(&out, "{\"name\": ");
    srv_buf_json_string(&out, name, strlen(name));
    srv_buf_printf(&out,
                   ", \"versions\": [\"%" PRId64 "\"], \"platform\": \"distml\", "
                   "\"inputs\": [{\"name\": \"" INPUT_NAME "\", \"datatype\": \"FP32\", "
                   "\"shape\": [-1, %d, %d]}], "
                   "\"outputs\": [{\"name\": \"" OUTPUT_NAME "\", \"datatype\": \"FP32\", "
                   "\"shape\": [-1, %d]}]}\n",
                   srv_servable_version(s), srv_servable_input_height(s),
                   srv_servable_input_width(s), srv_servable_num_classes(s));
    srv_servable_release(s);
    return send_json(c, r, 200, &out);
}

static enum MHD_Result handle_v2_infer(struct MHD_Connection *c, request *r, const char *url,
                                       srv_servable *s, const char *name)
{
    const srv_signature sig = signature_of(s);
    srv_input in;
    srv_error err;
    if (srv_decode_infer(r->body.data != NULL ? r->body.data : "", r->body.length, &sig, &in,
                         &err) != 0) {
        srv_servable_release(s);
        return send_error(c, r, "POST", url, err.status, err.message);
    }
    float *y = NULL;
    if (run_model(r->server, s, &in, &y) != 0) {
        free(y);
        srv_input_free(&in);
        srv_servable_release(s);
        return send_errorf(c, r, "POST", url, 500, "Inference failed: %s", dm_error());
    }
    const int classes = srv_servable_num_classes(s);
    srv_buf out;
    srv_buf_init(&out);
    srv_buf_puts(&out, "{\"model_name\": ");
    srv_buf_json_string(&out, name, strlen(name));
    srv_buf_printf(&out, ", \"model_version\": \"%" PRId64 "\"", srv_servable_version(s));
    if (in.id != NULL) {
        srv_buf_puts(&out, ", \"id\": ");
        srv_buf_json_string(&out, in.id, strlen(in.id));
    }
    srv_buf_printf(&out,
                   ", \"outputs\": [{\"name\": \"" OUTPUT_NAME "\", \"datatype\": \"FP32\", "
                   "\"shape\": [%d, %d], \"data\": [",
                   in.batch, classes);
    for (size_t i = 0; i < (size_t)in.batch * (size_t)classes; i++) {
        if (i > 0)
            srv_buf_puts(&out, ", ");
        srv_buf_json_float(&out, y[i]);
    }
    srv_buf_puts(&out, "]}]}\n");
    free(y);
    srv_input_free(&in);
    srv_servable_release(s);
    return send_json(c, r, 200, &out);
}

static enum MHD_Result handle_v2(struct MHD_Connection *c, request *r, const char *method,
                                 const char *url)
{
    const bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    const bool post = strcmp(method, "POST") == 0;
    srv_http *h = r->server;
    if (get && (strcmp(url, "/v2") == 0 || strcmp(url, "/v2/") == 0))
        return send_literal(c, r, 200,
                            "{\"name\": \"distml\", \"version\": \"0.1.0\", \"extensions\": []}\n");
    if (get && strcmp(url, "/v2/health/live") == 0)
        return send_literal(c, r, 200, "{\"live\": true}\n");
    if (get && strcmp(url, "/v2/health/ready") == 0) {
        srv_servable *s = srv_manager_acquire(h->config.manager);
        srv_servable_release(s);
        /* The V2 protocol reports "not ready" with a 4xx status. */
        return s != NULL ? send_literal(c, r, 200, "{\"ready\": true}\n")
                         : send_literal(c, r, 400, "{\"ready\": false}\n");
    }

    /* /v2/models/NAME[/versions/V][/ready|/infer] */
    const char *p = url;
    char name[512], version[64], tail[16] = "";
    bool has_version = false;
    if (!eat(&p, "/v2/models/") || !take_segment(&p, name, sizeof name))
        return send_errorf(c, r, method, url, 404, "Not found: %s %s", method, url);
    if (eat(&p, "/versions/")) {
        if (!take_segment(&p, version, sizeof version))
            return send_errorf(c, r, method, url, 404, "Not found: %s %s", method, url);
        has_version = true;
    }
    if (*p != '\0' && (strcmp(p, "/ready") == 0 || strcmp(p, "/infer") == 0))
        snprintf(tail, sizeof tail, "%s", p + 1);
    else if (*p != '\0')
        return send_errorf(c, r, method, url, 404, "Not found: %s %s", method, url);

    const bool infer = strcmp(tail, "infer") == 0;
    if ((infer && !post) || (!infer && !get))
        return send_errorf(c, r, method, url, 405, "Method %s is not allowed on %s; use %s",
                           method, url, infer ? "POST" : "GET");
    enum MHD_Result result = MHD_NO;
    srv_servable *s =
        v2_servable(c, r, method, url, name, has_version ? version : NULL, &result);
    if (s == NULL)
        return result;
    if (strcmp(tail, "ready") == 0) {
        srv_servable_release(s);
        srv_buf out;
        srv_buf_init(&out);
        srv_buf_puts(&out, "{\"name\": ");
        srv_buf_json_string(&out, name, strlen(name));
        srv_buf_puts(&out, ", \"ready\": true}\n");
        return send_json(c, r, 200, &out);
    }
    if (infer)
        return handle_v2_infer(c, r, url, s, name);
    return handle_v2_metadata(c, r, s, name);
}

/* ---- dispatch ---- */

static enum MHD_Result handle_metrics(struct MHD_Connection *c, request *r)
{
    srv_http *h = r->server;
    srv_servable *s = srv_manager_acquire(h->config.manager);
    int64_t version = s != NULL ? srv_servable_version(s) : -1;
    srv_servable_release(s);
    size_t length = 0;
    char *text = srv_metrics_render(h->config.metrics, h->config.model_name, version, &length);
    if (text == NULL)
        return MHD_NO;
    return send_reply(c, r, 200, text, length, METRICS_TYPE);
}

static enum MHD_Result dispatch(struct MHD_Connection *c, request *r, const char *method,
                                const char *url)
{
    if (strncasecmp(url, "/v1/", 4) == 0)
        return handle_v1(c, r, method, url);
    if (strcmp(url, "/v2") == 0 || strncmp(url, "/v2/", 4) == 0)
        return handle_v2(c, r, method, url);
    if (strcmp(url, "/metrics") == 0 &&
        (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0))
        return handle_metrics(c, r);
    return send_errorf(c, r, method, url, 404,
                       "Not found: %s %s; the server answers /v1/models/..., /v2/... and "
                       "/metrics",
                       method, url);
}

/* Parses the Content-Length header; false when it is absent. */
static bool content_length(struct MHD_Connection *c, unsigned long long *length)
{
    const char *text =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (text == NULL)
        return false;
    char *end = NULL;
    errno = 0;
    *length = strtoull(text, &end, 10);
    return errno == 0 && end != text;
}

static enum MHD_Result handle_connection(void *cls, struct MHD_Connection *c, const char *url,
                                         const char *method, const char *version,
                                         const char *upload_data, size_t *upload_size,
                                         void **context)
{
    srv_http *h = cls;
    request *r = *context;
    if (r == NULL) {
        r = calloc(1, sizeof *r);
        if (r == NULL)
            return MHD_NO;
        r->server = h;
        r->started = dm_monotonic_seconds();
        srv_buf_init(&r->body);
        atomic_fetch_add(&h->in_flight, 1);
        srv_metrics_request_started(h->config.metrics);
        *context = r;
        unsigned long long announced = 0;
        if (content_length(c, &announced)) {
            if (announced > h->config.max_body_bytes) {
                r->responded = true;
                return send_errorf(c, r, method, url, 413,
                                   "Request body of %llu bytes is larger than the maximum of %zu "
                                   "bytes (set by --max_body_bytes)",
                                   announced, h->config.max_body_bytes);
            }
            /* Reserve the announced body up front, so appends do not copy,
             * but at most 1 MiB: a client that announces a large body and
             * sends nothing must not pin that much memory. */
            const size_t reserve = announced < 1024 * 1024 ? (size_t)announced : 1024 * 1024;
            srv_buf_append(&r->body, "", 0);
            if (reserve > 0 && !r->body.failed) {
                char *data = realloc(r->body.data, reserve + 1);
                if (data != NULL) {
                    r->body.data = data;
                    r->body.capacity = reserve + 1;
                }
            }
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!r->responded && !r->too_large) {
            if (r->body.length + *upload_size > h->config.max_body_bytes) {
                r->too_large = true;
                srv_buf_free(&r->body);
            } else {
                srv_buf_append(&r->body, upload_data, *upload_size);
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->responded)
        return MHD_YES;
    if (r->too_large)
        return send_errorf(c, r, method, url, 413,
                           "Request body is larger than the maximum of %zu bytes (set by "
                           "--max_body_bytes)",
                           h->config.max_body_bytes);
    if (r->body.failed)
        return send_error(c, r, method, url, 500, "Out of memory reading the request body");
    return dispatch(c, r, method, url);
}

static void request_completed(void *cls, struct MHD_Connection *c, void **context,
                              enum MHD_RequestTerminationCode code)
{
    srv_http *h = cls;
    request *r = *context;
    if (r == NULL)
        return;
    /* 499 is the status TensorFlow Serving maps a cancelled request to. */
    int status = r->status != 0 ? r->status : 499;
    srv_metrics_request_finished(h->config.metrics, status, dm_monotonic_seconds() - r->started);
    srv_buf_free(&r->body);
    free(r);
    *context = NULL;
    atomic_fetch_sub(&h->in_flight, 1);
}

/* Keeps the URL as the client sent it. take_segment decodes names itself,
 * so an escaped '/' or ':' inside a model name cannot change the route. */
static size_t keep_url_escaped(void *cls, struct MHD_Connection *c, char *text)
{
    return strlen(text);
}

srv_http *srv_http_start(const srv_http_config *config)
{
    srv_http *h = calloc(1, sizeof *h);
    if (h == NULL) {
        dm_fail("out of memory starting the HTTP server");
        return NULL;
    }
    h->config = *config;
    atomic_init(&h->in_flight, 0);

    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
    struct sockaddr *address = NULL;
    unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    memset(&v4, 0, sizeof v4);
    memset(&v6, 0, sizeof v6);
    if (inet_pton(AF_INET, config->bind_address, &v4.sin_addr) == 1) {
        v4.sin_family = AF_INET;
        v4.sin_port = htons((uint16_t)config->port);
        address = (struct sockaddr *)&v4;
    } else if (inet_pton(AF_INET6, config->bind_address, &v6.sin6_addr) == 1) {
        v6.sin6_family = AF_INET6;
        v6.sin6_port = htons((uint16_t)config->port);
        address = (struct sockaddr *)&v6;
        flags |= MHD_USE_IPv6;
    } else {
        free(h);
        dm_fail("invalid bind address '%s': expected an IPv4 or IPv6 address such as 127.0.0.1",
                config->bind_address);
        return NULL;
    }
    const unsigned int timeout_s = (unsigned int)((config->timeout_ms + 999) / 1000);
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)config->port, NULL, NULL, handle_connection, h,
        MHD_OPTION_EXTERNAL_LOGGER, log_library_message, NULL, /* first, to catch all */
        MHD_OPTION_SOCK_ADDR, address, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned int)config->threads, MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024), MHD_OPTION_NOTIFY_COMPLETED,
        request_completed, h, MHD_OPTION_UNESCAPE_CALLBACK, keep_url_escaped, NULL,
        MHD_OPTION_END);
    if (h->daemon == NULL) {
        int saved = errno;
        free(h);
        dm_fail("cannot listen on %s port %d: %s", config->bind_address, config->port,
                saved != 0 ? strerror(saved) : "libmicrohttpd failed to start");
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info != NULL ? info->port : config->port;
    return h;
}

int srv_http_port(const srv_http *h)
{
    return h->port;
}

void srv_http_quiesce(srv_http *h)
{
    MHD_socket listener = MHD_quiesce_daemon(h->daemon);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
}

long srv_http_in_flight(const srv_http *h)
{
    return atomic_load(&((srv_http *)h)->in_flight);
}

void srv_http_stop(srv_http *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
