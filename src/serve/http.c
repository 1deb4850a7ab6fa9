#include "serve/http.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "serve/json.h"
#include "serve/request.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
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
#include <sys/resource.h>
#include <unistd.h>

#define JSON_TYPE "application/json"
#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The model's only signature, as the reference design exports it. */
#define SIGNATURE_NAME "serving_default"
#define INPUT_NAME "image_bytes"
#define OUTPUT_NAME "predictions"

/* ---- rate-limited logs ---- */

/* Request errors share one budget, because a flood of bad requests is one
 * event to the operator. */
static pthread_mutex_t error_log_lock = PTHREAD_MUTEX_INITIALIZER;
static dm_log_budget error_log_budget = DM_LOG_BUDGET_INIT;

static void report_suppressed_request_errors(long suppressed)
{
    if (suppressed > 0)
        DM_WARN("%ld more request errors were not logged (at most %d are logged per second)",
                suppressed, DM_LOG_LINES_PER_SECOND);
}

static void log_request_error(const char *method, const char *url, int status,
                              const char *message)
{
    const long second = (long)dm_monotonic_seconds();
    pthread_mutex_lock(&error_log_lock);
    long suppressed = dm_log_budget_take_report(&error_log_budget, second, false);
    bool print = dm_log_budget_charge(&error_log_budget, second);
    pthread_mutex_unlock(&error_log_lock);
    report_suppressed_request_errors(suppressed);
    if (print) {
        if (status >= 500)
            DM_ERROR("%s %s: %d %s", method, url, status, message);
        else
            DM_WARN("%s %s: %d %s", method, url, status, message);
    }
}

static void flush_request_error_log(void)
{
    pthread_mutex_lock(&error_log_lock);
    long suppressed = dm_log_budget_take_report(&error_log_budget, 0, true);
    pthread_mutex_unlock(&error_log_lock);
    report_suppressed_request_errors(suppressed);
}

/* libmicrohttpd passes each kind of message with the same format string
 * from one call site, so the string's address identifies the kind. Kinds
 * beyond the first LIBRARY_MESSAGE_KINDS - 1 share the table's last entry. */
enum { LIBRARY_MESSAGE_KINDS = 32, LIBRARY_SAMPLE_CHARS = 120 };

typedef struct {
    const char *format;
    char sample[LIBRARY_SAMPLE_CHARS]; /* the first message, named in reports */
    dm_log_budget budget;
} library_message_kind;

typedef struct {
    long suppressed;
    char sample[LIBRARY_SAMPLE_CHARS];
} library_report;

struct srv_http {
    srv_http_config config;
    struct MHD_Daemon *daemon;
    int port;
    unsigned int timeout_s;
    unsigned int header_timeout_s;
    int max_connections;
    int max_connections_per_ip; /* 0 for no limit */
    atomic_long in_flight;
    pthread_mutex_t library_log_lock;
    library_message_kind library_kinds[LIBRARY_MESSAGE_KINDS];
};

/* Moves the reportable suppressed counts of H's message kinds into
 * REPORTS, which has room for every kind, and returns how many it wrote.
 * The caller holds library_log_lock. */
static int take_library_reports(srv_http *h, long second, bool final, library_report *reports)
{
    int count = 0;
    for (int i = 0; i < LIBRARY_MESSAGE_KINDS; i++) {
        library_message_kind *kind = &h->library_kinds[i];
        long suppressed = dm_log_budget_take_report(&kind->budget, second, final);
        if (suppressed > 0) {
            reports[count].suppressed = suppressed;
            memcpy(reports[count].sample, kind->sample, sizeof kind->sample);
            count++;
        }
    }
    return count;
}

static void log_library_reports(const library_report *reports, int count)
{
    for (int i = 0; i < count; i++)
        DM_WARN("libmicrohttpd: %ld more messages like \"%s\" were not logged (at most %d of "
                "each kind are logged per second)",
                reports[i].suppressed, reports[i].sample, DM_LOG_LINES_PER_SECOND);
}

static library_message_kind *find_library_kind(srv_http *h, const char *format,
                                               const char *message)
{
    for (int i = 0; i < LIBRARY_MESSAGE_KINDS - 1; i++) {
        library_message_kind *kind = &h->library_kinds[i];
        if (kind->format == format)
            return kind;
        if (kind->format == NULL) {
            kind->format = format;
            kind->budget = (dm_log_budget)DM_LOG_BUDGET_INIT;
            snprintf(kind->sample, sizeof kind->sample, "%s", message);
            return kind;
        }
    }
    return &h->library_kinds[LIBRARY_MESSAGE_KINDS - 1];
}

static void log_library_message(void *cls, const char *fmt, va_list ap)
{
    srv_http *h = cls;
    char message[512];
    vsnprintf(message, sizeof message, fmt, ap);
    size_t n = strlen(message);
    while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == '\r'))
        message[--n] = '\0';

    const long second = (long)dm_monotonic_seconds();
    library_report reports[LIBRARY_MESSAGE_KINDS];
    pthread_mutex_lock(&h->library_log_lock);
    int count = take_library_reports(h, second, false, reports);
    bool print = dm_log_budget_charge(&find_library_kind(h, fmt, message)->budget, second);
    pthread_mutex_unlock(&h->library_log_lock);
    log_library_reports(reports, count);
    if (print)
        DM_WARN("libmicrohttpd: %s", message);
}

static void flush_library_log(srv_http *h)
{
    library_report reports[LIBRARY_MESSAGE_KINDS];
    pthread_mutex_lock(&h->library_log_lock);
    int count = take_library_reports(h, 0, true, reports);
    pthread_mutex_unlock(&h->library_log_lock);
    log_library_reports(reports, count);
}

/* ---- one request ---- */

/* A prediction between decoding and its reply. With batching it waits in
 * the batcher while its connection is suspended. */
typedef struct {
    bool v2;                /* reply in KServe V2's shape, else TensorFlow Serving's */
    srv_servable *servable; /* a reference, released with the inference */
    srv_input input;
    float *y; /* probabilities (input.batch, classes) */
    int rc;
    char error[SRV_ERROR_MAX]; /* why the batch failed, when RC is -1 */
    atomic_bool done;          /* set by the batch thread before it resumes */
} inference;

typedef struct {
    srv_http *server;
    struct MHD_Connection *connection;
    srv_buf body;
    bool too_large;
    bool responded; /* a reply was queued before the body was read */
    int status;
    const char *allow; /* the Allow header of a 405 reply */
    double started;
    bool announced;  /* to the batcher, which expects it until it is run */
    inference *work; /* a batched prediction, until its reply is queued */
} request;

static void free_inference(inference *work)
{
    if (work == NULL)
        return;
    srv_servable_release(work->servable);
    srv_input_free(&work->input);
    free(work->y);
    free(work);
}

/* Tells the batcher that R will not join a batch after all. */
static void withdraw_announcement(request *r)
{
    if (r->announced) {
        srv_batcher_withdraw(r->server->config.batcher);
        r->announced = false;
    }
}

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
    if (status == 405 && r->allow != NULL)
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, r->allow);
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

static void append_infer_reply(srv_buf *out, const char *name, int64_t version,
                               const srv_input *in, const float *y, int classes)
{
    srv_buf_puts(out, "{\"model_name\": ");
    srv_buf_json_string(out, name, strlen(name));
    srv_buf_printf(out, ", \"model_version\": \"%" PRId64 "\"", version);
    if (in->id != NULL) {
        srv_buf_puts(out, ", \"id\": ");
        srv_buf_json_string(out, in->id, strlen(in->id));
    }
    srv_buf_printf(out,
                   ", \"outputs\": [{\"name\": \"" OUTPUT_NAME "\", \"datatype\": \"FP32\", "
                   "\"shape\": [%d, %d], \"data\": [",
                   in->batch, classes);
    for (size_t i = 0; i < (size_t)in->batch * (size_t)classes; i++) {
        if (i > 0)
            srv_buf_puts(out, ", ");
        srv_buf_json_float(out, y[i]);
    }
    srv_buf_puts(out, "]}]}\n");
}

/* Queues the reply to the finished inference WORK of request R (a 500 if
 * the model failed) and frees WORK. */
static enum MHD_Result reply_inference(struct MHD_Connection *c, request *r, const char *url,
                                       inference *work)
{
    srv_servable *s = work->servable;
    enum MHD_Result result;
    if (work->rc != 0) {
        result = send_errorf(c, r, "POST", url, 500, "%s failed: %s",
                             work->v2 ? "Inference" : "Prediction", work->error);
    } else {
        const int classes = srv_servable_num_classes(s);
        srv_buf out;
        srv_buf_init(&out);
        if (work->v2)
            append_infer_reply(&out, r->server->config.model_name, srv_servable_version(s),
                               &work->input, work->y, classes);
        else
            append_probabilities(&out, work->y, work->input.batch, classes,
                                 work->input.format == SRV_FORMAT_ROW ? "predictions"
                                                                      : "outputs");
        result = send_json(c, r, 200, &out);
    }
    free_inference(work);
    return result;
}

/* Runs on a batch thread: records the outcome and resumes the suspended
 * connection, whose handler then queues the reply. */
static void inference_finished(void *context, int rc)
{
    request *r = context;
    r->work->rc = rc;
    if (rc != 0)
        snprintf(r->work->error, sizeof r->work->error, "%s", dm_error());
    atomic_store_explicit(&r->work->done, true, memory_order_release);
    MHD_resume_connection(r->connection);
}

/* Runs the model on WORK's decoded input, which request R's handler owns
 * from here on. Without batching the model runs here and the reply is
 * queued at once. With batching the connection is suspended until a
 * batch thread has run it. */
static enum MHD_Result run_inference(struct MHD_Connection *c, request *r, const char *url,
                                     inference *work)
{
    srv_http *h = r->server;
    const srv_input *in = &work->input;
    work->y = malloc((size_t)in->batch * (size_t)srv_servable_num_classes(work->servable) *
                     sizeof *work->y);
    if (work->y == NULL) {
        work->rc = -1;
        snprintf(work->error, sizeof work->error, "out of memory for %d predictions", in->batch);
        return reply_inference(c, r, url, work);
    }
    if (h->config.batcher == NULL) {
        srv_metrics_passes(h->config.metrics, in->batch, h->config.chunk);
        work->rc = srv_servable_predict(work->servable, in->x, in->batch, h->config.chunk,
                                        work->y);
        if (work->rc != 0)
            snprintf(work->error, sizeof work->error, "%s", dm_error());
        return reply_inference(c, r, url, work);
    }
    /* Suspend before submitting, because the batch may finish, and resume
     * the connection, before srv_batcher_submit returns. */
    r->work = work;
    MHD_suspend_connection(c);
    const bool announced = r->announced;
    r->announced = false;
    if (srv_batcher_submit(h->config.batcher, work->servable, in->x, in->batch, work->y,
                           announced, inference_finished, r) != 0)
        inference_finished(r, -1);
    return MHD_YES;
}

static srv_signature signature_of(const srv_servable *s)
{
    return (srv_signature){.input_name = INPUT_NAME,
                           .output_name = OUTPUT_NAME,
                           .height = srv_servable_input_height(s),
                           .width = srv_servable_input_width(s)};
}

/* Decodes request R's body for servable S (a reference that the request
 * takes over) as a TensorFlow Serving predict or, when V2 is set, a KServe
 * V2 infer request, and runs the model on it. */
static enum MHD_Result decode_and_run(struct MHD_Connection *c, request *r, const char *url,
                                      srv_servable *s, bool v2)
{
    const srv_signature sig = signature_of(s);
    const char *body = r->body.data != NULL ? r->body.data : "";
    inference *work = calloc(1, sizeof *work);
    if (work == NULL) {
        srv_servable_release(s);
        return send_error(c, r, "POST", url, 500, "Out of memory decoding the request");
    }
    work->v2 = v2;
    work->servable = s;
    srv_error err;
    int rc = v2 ? srv_decode_infer(body, r->body.length, &sig, &work->input, &err)
                : srv_decode_predict(body, r->body.length, &sig, &work->input, &err);
    if (rc != 0) {
        srv_servable_release(s);
        free(work);
        return send_error(c, r, "POST", url, err.status, err.message);
    }
    return run_inference(c, r, url, work);
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

    return decode_and_run(c, r, url, s, false);
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

static enum MHD_Result handle_v2(struct MHD_Connection *c, request *r, const char *method,
                                 const char *url)
{
    const bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    const bool post = strcmp(method, "POST") == 0;
    srv_http *h = r->server;
    const bool server_path = strcmp(url, "/v2") == 0 || strcmp(url, "/v2/") == 0 ||
                             strcmp(url, "/v2/health/live") == 0 ||
                             strcmp(url, "/v2/health/ready") == 0;
    if (server_path && !get) {
        r->allow = "GET, HEAD";
        return send_errorf(c, r, method, url, 405, "Method %s is not allowed on %s; use GET",
                           method, url);
    }
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
    if ((infer && !post) || (!infer && !get)) {
        r->allow = infer ? "POST" : "GET, HEAD";
        return send_errorf(c, r, method, url, 405, "Method %s is not allowed on %s; use %s",
                           method, url, infer ? "POST" : "GET");
    }
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
        return decode_and_run(c, r, url, s, true);
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
    if (strcmp(url, "/metrics") == 0) {
        if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
            return handle_metrics(c, r);
        r->allow = "GET, HEAD";
        return send_errorf(c, r, method, url, 405, "Method %s is not allowed on /metrics; use GET",
                           method);
    }
    return send_errorf(c, r, method, url, 404,
                       "Not found: %s %s; the server answers /v1/models/..., /v2/... and "
                       "/metrics",
                       method, url);
}

/* ---- request heads ---- */

/* Whether METHOD is one of RFC 9110's methods or PATCH (RFC 5789). Method
 * names are case-sensitive, so "get" is not GET. */
static bool is_standard_method(const char *method)
{
    static const char *const methods[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                          "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (strcmp(method, methods[i]) == 0)
            return true;
    }
    return false;
}

typedef struct {
    const char *first;
    bool conflict;
} content_length_headers;

static enum MHD_Result compare_content_length(void *cls, enum MHD_ValueKind kind,
                                              const char *key, const char *value)
{
    content_length_headers *seen = cls;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) != 0)
        return MHD_YES;
    if (seen->first == NULL)
        seen->first = value;
    else if (strcmp(seen->first, value) != 0)
        seen->conflict = true;
    return MHD_YES;
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

/* Whether the Transfer-Encoding list CODINGS ends with chunked, which
 * RFC 9112 section 6.3 requires of a request body. */
static bool ends_with_chunked(const char *codings)
{
    const char *last = strrchr(codings, ',');
    last = last != NULL ? last + 1 : codings;
    while (*last == ' ' || *last == '\t')
        last++;
    size_t n = strlen(last);
    while (n > 0 && (last[n - 1] == ' ' || last[n - 1] == '\t'))
        n--;
    return n == strlen("chunked") && strncasecmp(last, "chunked", n) == 0;
}

/* NOTE: libmicrohttpd 0.9.75 replies to the requests below itself, before
 * handle_connection runs, with an HTML page the application cannot replace:
 *   - a malformed request line or header line: 400, and no reply at all to
 *     a request line without a space;
 *   - a request line or headers over the 32 KiB connection memory: 414 or 431;
 *   - an HTTP version other than 1.x: 505;
 *   - a Content-Length that does not parse (400, with its status line and
 *     headers sent twice) or that overflows 64 bits (413);
 *   - bad chunked framing: 400, or 413 for a chunk size over 64 bits. */

/* Queues the error reply for a request whose head the server rejects
 * before reading the body, and returns whether it did. *RESULT is the
 * queueing result. libmicrohttpd 0.9.75 closes the connection after a
 * reply queued this early. */
static bool reject_head(struct MHD_Connection *c, request *r, const char *method,
                        const char *url, enum MHD_Result *result)
{
    srv_http *h = r->server;
    /* RFC 9110 section 15.6.2: 501 for a method the server does not
     * recognize. The routes send 405 for a standard method that the
     * resource does not allow. */
    if (!is_standard_method(method)) {
        *result = send_errorf(c, r, method, url, 501,
                              "Method %s is not implemented; the server answers GET, HEAD and "
                              "POST",
                              method);
        return true;
    }
    /* libmicrohttpd decodes only "chunked" alone and reads a body in any
     * other coding until the client closes. RFC 9112 requires a 400 when
     * chunked is not the last coding, because the body's end is unknown
     * (section 6.3), and recommends a 501 for a coding the server does not
     * implement (section 6.1). */
    const char *codings =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (codings != NULL && strcasecmp(codings, "chunked") != 0) {
        if (!ends_with_chunked(codings))
            *result = send_errorf(c, r, method, url, 400,
                                  "Transfer-Encoding '%s' does not end with chunked, so the end "
                                  "of the body is unknown; send the body with Content-Length or "
                                  "Transfer-Encoding: chunked",
                                  codings);
        else
            *result = send_errorf(c, r, method, url, 501,
                                  "Transfer-Encoding '%s' is not supported; send the body with "
                                  "Content-Length or Transfer-Encoding: chunked",
                                  codings);
        return true;
    }
    /* libmicrohttpd reads the body by the first Content-Length, and a proxy
     * in front may use another, so differing values are invalid framing
     * (RFC 9112 section 6.3). */
    content_length_headers lengths = {0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, compare_content_length, &lengths);
    if (lengths.conflict) {
        *result = send_error(c, r, method, url, 400,
                             "Request has Content-Length headers with different values");
        return true;
    }
    unsigned long long announced = 0;
    if (content_length(c, &announced) && announced > h->config.max_body_bytes) {
        *result = send_errorf(c, r, method, url, 413,
                              "Request body of %llu bytes is larger than the maximum of %zu "
                              "bytes (set by --max_body_bytes)",
                              announced, h->config.max_body_bytes);
        return true;
    }
    return false;
}

/* Reserves the announced body up front, so appends do not copy, but at
 * most 1 MiB: a client that announces a large body and sends nothing must
 * not pin that much memory. */
static void reserve_body(struct MHD_Connection *c, request *r)
{
    unsigned long long announced = 0;
    if (!content_length(c, &announced))
        return;
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
        r->connection = c;
        r->started = dm_monotonic_seconds();
        srv_buf_init(&r->body);
        atomic_fetch_add(&h->in_flight, 1);
        srv_metrics_request_started(h->config.metrics);
        *context = r;
        /* The headers are complete, so the body and the reply get the
         * full idle timeout. */
        if (h->header_timeout_s != h->timeout_s)
            MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, h->timeout_s);
        enum MHD_Result result = MHD_YES;
        if (reject_head(c, r, method, url, &result)) {
            r->responded = true;
            return result;
        }
        reserve_body(c, r);
        /* A POST may be a predict on its way to the batcher. */
        if (h->config.batcher != NULL && strcmp(method, "POST") == 0) {
            srv_batcher_announce(h->config.batcher);
            r->announced = true;
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!r->responded && !r->too_large) {
            if (r->body.length + *upload_size > h->config.max_body_bytes) {
                /* NOTE: a chunked body announces no length, and
                 * libmicrohttpd 0.9.75 rejects a reply queued while the
                 * body is read, so the 413 waits for the last chunk and the
                 * rest of the body is read and dropped. */
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
    if (r->work != NULL) {
        /* Resumed by inference_finished: the batch has run. */
        inference *work = r->work;
        if (!atomic_load_explicit(&work->done, memory_order_acquire))
            return MHD_YES;
        r->work = NULL;
        return reply_inference(c, r, url, work);
    }
    if (r->body.failed)
        return send_error(c, r, method, url, 500, "Out of memory reading the request body");
    enum MHD_Result result = dispatch(c, r, method, url);
    withdraw_announcement(r);
    return result;
}

static void request_completed(void *cls, struct MHD_Connection *c, void **context,
                              enum MHD_RequestTerminationCode code)
{
    srv_http *h = cls;
    request *r = *context;
    if (r == NULL)
        return;
    /* 499 is the status TensorFlow Serving maps a cancelled request to. */
    withdraw_announcement(r);
    /* NOTE: only a connection that is not suspended can end, so a batched
     * prediction has finished by now if it ever started. */
    free_inference(r->work);
    int status = r->status != 0 ? r->status : 499;
    srv_metrics_request_finished(h->config.metrics, status, dm_monotonic_seconds() - r->started);
    srv_buf_free(&r->body);
    free(r);
    *context = NULL;
    atomic_fetch_sub(&h->in_flight, 1);
}

static void free_server(srv_http *h)
{
    pthread_mutex_destroy(&h->library_log_lock);
    free(h);
}

/* ---- connection limits and timeouts ---- */

/* Open files kept free of client connections for loading new model
 * versions and for the log. */
enum { SPARE_DESCRIPTORS = 32 };

/* Each connection's buffers, which hold the request line and headers:
 * 32 KiB, as nginx allows for a request's headers by default.
 * libmicrohttpd 0.9.75 zeroes the whole buffer for every request, so a
 * larger one costs time on every request, not only memory. */
#define CONNECTION_MEMORY ((size_t)32 * 1024)

/* The default connection limit when the open-file limit allows more,
 * because each connection may use CONNECTION_MEMORY, 2 GiB at this limit. */
enum { DEFAULT_MAX_CONNECTIONS = 65536 };

/* Counts the file descriptors open now, from /proc/self/fd. */
static long open_descriptors(void)
{
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return -1;
    long count = 0;
    const struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] != '.')
            count++;
    }
    closedir(dir);
    return count - 1; /* the descriptor of DIR itself */
}

/* Sets H's connection limits from CONFIG. The connections must fit under
 * the open-file limit beside the descriptors open now, libmicrohttpd's
 * listening socket, an epoll descriptor and an eventfd per thread and
 * SPARE_DESCRIPTORS, because libmicrohttpd stops accepting until a
 * connection closes when accept() fails with EMFILE. */
static int set_connection_limits(srv_http *h, const srv_http_config *config)
{
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) != 0)
        return dm_fail("cannot read the open-file limit: %s", strerror(errno));
    long open_now = open_descriptors();
    if (open_now < 0)
        return dm_fail("cannot count the open files in /proc/self/fd: %s", strerror(errno));
    const long reserved = open_now + 1 + 2L * (config->threads + 1) + SPARE_DESCRIPTORS;
    long available = DEFAULT_MAX_CONNECTIONS;
    if (files.rlim_cur != RLIM_INFINITY &&
        files.rlim_cur < (rlim_t)(DEFAULT_MAX_CONNECTIONS + reserved))
        available = (long)files.rlim_cur - reserved;

    if (config->max_connections == 0) {
        if (available < config->threads)
            return dm_fail("the open-file limit of %ld leaves room for %ld connections, fewer than "
                           "the %d HTTP threads; raise it with `ulimit -n`",
                           (long)files.rlim_cur, available > 0 ? available : 0, config->threads);
        h->max_connections = (int)available;
    } else if (config->max_connections > available) {
        return dm_fail("--max_connections %d needs that many open files beside the %ld the "
                       "server keeps for itself, but the open-file limit is %ld; raise it with "
                       "`ulimit -n` or lower --max_connections",
                       config->max_connections, reserved, (long)files.rlim_cur);
    } else if (config->max_connections < config->threads) {
        /* libmicrohttpd splits the limit between its threads. */
        return dm_fail("--max_connections %d is less than the %d HTTP threads; raise it or lower "
                       "--rest_api_num_threads",
                       config->max_connections, config->threads);
    } else {
        h->max_connections = config->max_connections;
    }
    if (config->max_connections_per_ip < 0)
        h->max_connections_per_ip = h->max_connections / 2 > 0 ? h->max_connections / 2 : 1;
    else
        h->max_connections_per_ip = config->max_connections_per_ip;
    return 0;
}

/* Keeps the URL as the client sent it. take_segment decodes names itself,
 * so an escaped '/' or ':' inside a model name cannot change the route. */
static size_t keep_url_escaped(void *cls, struct MHD_Connection *c, char *text)
{
    return strlen(text);
}

/* Starts the header timeout on a new connection. handle_connection sets
 * the full timeout back once a request's headers are complete.
 * NOTE: libmicrohttpd's timeouts count idle time, so a client that sends a
 * byte of its headers within every header timeout keeps the connection
 * until the headers fill the 32 KiB connection memory. The per-IP limit
 * bounds how many such connections one address holds. */
static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
    srv_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED && h->header_timeout_s != h->timeout_s)
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, h->header_timeout_s);
}

/* Starts the header timeout again for a later request on a kept-alive
 * connection. libmicrohttpd calls this with the request line, before the
 * headers, and passes the NULL it returns to handle_connection as the
 * request context. */
static void *start_header_timeout(void *cls, const char *uri, struct MHD_Connection *c)
{
    srv_http *h = cls;
    /* NOTE: between requests a kept-alive connection waits with the full
     * timeout, so that pooled client connections are not closed early.
     * libmicrohttpd reports no partial request line, so a client that
     * sends part of a later request line and stops keeps the connection
     * for the full timeout. */
    if (h->header_timeout_s != h->timeout_s)
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, h->header_timeout_s);
    return NULL;
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
    pthread_mutex_init(&h->library_log_lock, NULL);
    library_message_kind *other = &h->library_kinds[LIBRARY_MESSAGE_KINDS - 1];
    other->budget = (dm_log_budget)DM_LOG_BUDGET_INIT;
    snprintf(other->sample, sizeof other->sample, "(any other kind)");

    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
    struct sockaddr *address = NULL;
    unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    /* Batched predictions suspend their connections while they wait. */
    if (config->batcher != NULL)
        flags |= MHD_ALLOW_SUSPEND_RESUME;
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
        dm_fail("invalid bind address '%s': expected an IPv4 or IPv6 address such as 127.0.0.1",
                config->bind_address);
        free_server(h);
        return NULL;
    }
    if (set_connection_limits(h, config) != 0) {
        free_server(h);
        return NULL;
    }
    h->timeout_s = (unsigned int)((config->timeout_ms + 999) / 1000);
    h->header_timeout_s = (unsigned int)((config->header_timeout_ms + 999) / 1000);
    if (h->header_timeout_s == 0 || h->header_timeout_s > h->timeout_s)
        h->header_timeout_s = h->timeout_s;
    /* NOTE: at MAX_CONNECTIONS libmicrohttpd 0.9.75 stops accepting, so new
     * clients wait in the listen backlog until a connection closes, at the
     * latest after the header timeout for one that stalls. Over the per-IP
     * limit it closes the new connection at once, without a reply. */
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)config->port, NULL, NULL, handle_connection, h,
        MHD_OPTION_EXTERNAL_LOGGER, log_library_message, h, /* first, to catch all */
        MHD_OPTION_SOCK_ADDR, address, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned int)config->threads, MHD_OPTION_CONNECTION_TIMEOUT, h->timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)h->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)h->max_connections_per_ip,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONNECTION_MEMORY, MHD_OPTION_NOTIFY_COMPLETED,
        request_completed, h, MHD_OPTION_NOTIFY_CONNECTION, notify_connection, h,
        MHD_OPTION_URI_LOG_CALLBACK, start_header_timeout, h, MHD_OPTION_UNESCAPE_CALLBACK,
        keep_url_escaped, NULL, MHD_OPTION_END);
    if (h->daemon == NULL) {
        int saved = errno;
        dm_fail("cannot listen on %s port %d: %s", config->bind_address, config->port,
                saved != 0 ? strerror(saved) : "libmicrohttpd failed to start");
        free_server(h);
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

int srv_http_max_connections(const srv_http *h)
{
    return h->max_connections;
}

int srv_http_max_connections_per_ip(const srv_http *h)
{
    return h->max_connections_per_ip;
}

void srv_http_stop(srv_http *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    flush_library_log(h);
    flush_request_error_log();
    free_server(h);
}
