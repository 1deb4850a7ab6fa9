/*
 * Client requests: the guard's verdict, the router's own paths, the queue,
 * forwarding to the least-loaded ready replica, one retry on another
 * replica when a replica fails before it replies, and the request timeout.
 * Every error the router itself sends is JSON, {"error": "..."}.
 */
#include "router/internal.h"

#include "base/clock.h"
#include "base/log.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Warnings about single requests (rejected, timed out, failed) share one
 * budget, so that an overload logs a count instead of a line per request. */
static dm_log_budget request_log_budget = DM_LOG_BUDGET_INIT;

static void report_suppressed(long suppressed)
{
    if (suppressed > 0)
        DM_WARN("%ld more request warnings were not logged (at most %d are logged per second)",
                suppressed, DM_LOG_LINES_PER_SECOND);
}

static void warn_request(const char *fmt, ...) DM_PRINTF(1, 2);
static void warn_request(const char *fmt, ...)
{
    const long second = (long)dm_monotonic_seconds();
    report_suppressed(dm_log_budget_take_report(&request_log_budget, second, false));
    if (!dm_log_budget_charge(&request_log_budget, second))
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    DM_WARN("%s", line);
}

void proxy_flush_log(void)
{
    report_suppressed(dm_log_budget_take_report(&request_log_budget, 0, true));
}

/* Hop-by-hop headers, which describe one connection and not the request,
 * and the headers the router sets itself. */
static bool is_hop_header(const char *name)
{
    static const char *const names[] = {
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
        "TE",         "Trailer",    "Transfer-Encoding",  "Upgrade",             "Expect",
        "Host",       "Content-Length",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(name, names[i]) == 0)
            return true;
    }
    return false;
}

static const char *method_name(enum evhttp_cmd_type command)
{
    switch (command) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "?";
}

static const char *request_error_name(enum evhttp_request_error error)
{
    switch (error) {
    case EVREQ_HTTP_TIMEOUT:
        return "timed out";
    case EVREQ_HTTP_EOF:
        return "the connection closed before a reply";
    case EVREQ_HTTP_INVALID_HEADER:
        return "invalid reply headers";
    case EVREQ_HTTP_BUFFER_ERROR:
        return "socket error";
    case EVREQ_HTTP_REQUEST_CANCEL:
        return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG:
        return "reply too large";
    }
    return "unknown error";
}

void proxy_reply_error(struct evhttp_request *request, int status, bool close, const char *fmt,
                       ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);

    struct evkeyvalq *headers = evhttp_request_get_output_headers(request);
    evhttp_add_header(headers, "Content-Type", "application/json");
    if (close)
        evhttp_add_header(headers, "Connection", "close");
    cJSON *body = cJSON_CreateObject();
    char *text = NULL;
    if (body != NULL && cJSON_AddStringToObject(body, "error", message) != NULL)
        text = cJSON_PrintUnformatted(body);
    struct evbuffer *out = evhttp_request_get_output_buffer(request);
    if (text != NULL)
        evbuffer_add_printf(out, "%s\n", text);
    else
        evbuffer_add_printf(out, "{\"error\": \"out of memory\"}\n");
    cJSON_free(text);
    cJSON_Delete(body);
    evhttp_send_reply(request, status, NULL, NULL);
}

static void count_reply(rtr_router *router, int status, double seconds)
{
    static const double bounds[RTR_LATENCY_BUCKETS] = {
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};
    rtr_counters *c = &router->counters;
    if (status >= 100 && status <= 599)
        c->by_status[status - 100]++;
    int bucket = 0;
    while (bucket < RTR_LATENCY_BUCKETS && seconds > bounds[bucket])
        bucket++;
    c->latency[bucket]++;
    c->latency_sum += seconds;
}

/* Ends a pending request whose reply has been sent with STATUS. */
static void finish(rtr_pending *p, int status)
{
    rtr_router *router = p->router;
    count_reply(router, status, dm_monotonic_seconds() - p->arrived);
    if (p->all_prev != NULL)
        p->all_prev->all_next = p->all_next;
    else
        router->all = p->all_next;
    if (p->all_next != NULL)
        p->all_next->all_prev = p->all_prev;
    event_free(p->deadline);
    free(p);
    router_load_change(router, -1);
    if (router->stopping)
        router_check_stopped(router);
}

/* Sends a JSON error with STATUS for a pending request and ends it. */
static void fail_pending(rtr_pending *p, int status, const char *message)
{
    proxy_reply_error(p->front, status, false, "%s", message);
    finish(p, status);
}

static void queue_push(rtr_router *router, rtr_pending *p, bool at_front)
{
    p->in_queue = true;
    if (at_front) {
        p->queue_prev = NULL;
        p->queue_next = router->queue_head;
        if (router->queue_head != NULL)
            router->queue_head->queue_prev = p;
        else
            router->queue_tail = p;
        router->queue_head = p;
    } else {
        p->queue_next = NULL;
        p->queue_prev = router->queue_tail;
        if (router->queue_tail != NULL)
            router->queue_tail->queue_next = p;
        else
            router->queue_head = p;
        router->queue_tail = p;
    }
    router->queued++;
}

static void queue_remove(rtr_router *router, rtr_pending *p)
{
    if (p->queue_prev != NULL)
        p->queue_prev->queue_next = p->queue_next;
    else
        router->queue_head = p->queue_next;
    if (p->queue_next != NULL)
        p->queue_next->queue_prev = p->queue_prev;
    else
        router->queue_tail = p->queue_prev;
    p->in_queue = false;
    p->queue_prev = p->queue_next = NULL;
    router->queued--;
}

/* Returns the ready replica with room for a request and the fewest in
 * flight, preferring any other replica to number AVOID. Ties go to the replica
 * after the previous choice, so equal replicas take turns. */
static rtr_replica *pick_replica(rtr_router *router, int avoid)
{
    const int limit = router->config.container_concurrency;
    int count = 0;
    for (rtr_replica *r = router->replicas; r != NULL; r = r->next)
        count++;
    if (count == 0)
        return NULL;
    const int start = (int)(router->rotation % (unsigned)count);
    rtr_replica *best = NULL, *fallback = NULL;
    for (int pass = 0; pass < 2; pass++) {
        int index = 0;
        for (rtr_replica *r = router->replicas; r != NULL; r = r->next, index++) {
            if ((pass == 0) != (index >= start))
                continue;
            if (r->state != RTR_REPLICA_READY || (limit > 0 && r->in_flight >= limit))
                continue;
            if (r->number == avoid) {
                fallback = r;
                continue;
            }
            if (best == NULL || r->in_flight < best->in_flight)
                best = r;
        }
    }
    router->rotation++;
    return best != NULL ? best : fallback;
}

/* Gives the replica back its slot and the connection. */
static void release(rtr_pending *p, bool reusable)
{
    rtr_replica *r = p->replica;
    if (r == NULL)
        return;
    p->replica = NULL;
    r->in_flight--;
    p->router->forwarded--;
    replica_connection_put(r, p->connection, p->generation, reusable);
    p->connection = NULL;
    replica_released(r);
}

static void forward(rtr_pending *p, rtr_replica *r);

/* Sends P to a replica, or queues it. A retry goes to the front of the
 * queue and is never rejected for a full queue. */
static void dispatch(rtr_pending *p, bool retry)
{
    rtr_router *router = p->router;
    rtr_replica *r = NULL;
    if (retry || router->queue_head == NULL)
        r = pick_replica(router, p->failed);
    if (r != NULL) {
        forward(p, r);
        return;
    }
    if (!retry && router->queued >= router->config.max_queued) {
        router->counters.queue_full++;
        router->rejections++;
        warn_request("rejected %s %s: the queue is full with %d requests",
                method_name(evhttp_request_get_command(p->front)),
                evhttp_request_get_uri(p->front), router->queued);
        char message[256];
        snprintf(message, sizeof message,
                 "The request queue is full: %d requests are waiting for a replica "
                 "(--max_queued_requests)",
                 router->queued);
        fail_pending(p, 503, message);
        return;
    }
    queue_push(router, p, retry);
}

/* Ends the attempt of P on replica R, which failed before it replied:
 * retries P once on another replica, or replies 502. R may be freed by
 * the release, so its name is copied first. */
static void attempt_failed(rtr_pending *p, rtr_replica *r, const char *reason)
{
    rtr_router *router = p->router;
    router->counters.upstream_failures++;
    char name[sizeof r->name];
    snprintf(name, sizeof name, "%s", r->name);
    p->failed = r->number;
    replica_suspect(r);
    release(p, false);

    const char *method = method_name(evhttp_request_get_command(p->front));
    const char *uri = evhttp_request_get_uri(p->front);
    if (p->attempts < 2 && !router->stopping) {
        warn_request("%s %s failed on %s (%s); retrying on another replica", method, uri, name,
                     reason);
        router->counters.retries++;
        dispatch(p, true);
        return;
    }
    warn_request("%s %s failed on %s (%s) after %d attempts", method, uri, name, reason,
                 p->attempts);
    char message[512];
    snprintf(message, sizeof message, "%s failed before it replied (%s), after %d attempts",
             name, reason, p->attempts);
    fail_pending(p, 502, message);
}

static void on_upstream_error(enum evhttp_request_error error, void *arg)
{
    rtr_pending *p = arg;
    p->upstream_error = error;
    p->has_upstream_error = true;
}

/* Copies the replica's reply to the client. */
static void relay_reply(rtr_pending *p, struct evhttp_request *reply)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(reply);
    struct evkeyvalq *out = evhttp_request_get_output_headers(p->front);
    for (struct evkeyval *h = in->tqh_first; h != NULL; h = h->next.tqe_next) {
        if (!is_hop_header(h->key))
            evhttp_add_header(out, h->key, h->value);
    }
    evbuffer_add_buffer(evhttp_request_get_output_buffer(p->front),
                        evhttp_request_get_input_buffer(reply));
    evhttp_send_reply(p->front, evhttp_request_get_response_code(reply),
                      evhttp_request_get_response_code_line(reply), NULL);
}

static void on_upstream_done(struct evhttp_request *reply, void *arg)
{
    rtr_pending *p = arg;
    rtr_replica *r = p->replica;
    p->upstream = NULL;
    if (reply == NULL || evhttp_request_get_response_code(reply) == 0) {
        const char *reason =
            p->has_upstream_error ? request_error_name(p->upstream_error) : "no reply";
        p->has_upstream_error = false;
        attempt_failed(p, r, reason);
        return;
    }
    const int status = evhttp_request_get_response_code(reply);
    relay_reply(p, reply);
    release(p, true);
    finish(p, status);
}

static void forward(rtr_pending *p, rtr_replica *r)
{
    rtr_router *router = p->router;
    struct evhttp_connection *connection = replica_connection_get(r);
    struct evhttp_request *up =
        connection != NULL ? evhttp_request_new(on_upstream_done, p) : NULL;
    p->attempts++;
    p->replica = r;
    p->generation = r->generation;
    p->connection = connection;
    r->in_flight++;
    router->forwarded++;
    if (up == NULL) {
        attempt_failed(p, r, "out of memory");
        return;
    }
    evhttp_request_set_error_cb(up, on_upstream_error);

    struct evkeyvalq *in = evhttp_request_get_input_headers(p->front);
    struct evkeyvalq *out = evhttp_request_get_output_headers(up);
    for (struct evkeyval *h = in->tqh_first; h != NULL; h = h->next.tqe_next) {
        if (!is_hop_header(h->key))
            evhttp_add_header(out, h->key, h->value);
    }
    char host[32];
    snprintf(host, sizeof host, "127.0.0.1:%d", r->port);
    evhttp_add_header(out, "Host", host);
    struct evbuffer *body = evhttp_request_get_input_buffer(p->front);
    const size_t length = evbuffer_get_length(body);
    const enum evhttp_cmd_type command = evhttp_request_get_command(p->front);
    if (length > 0 || command == EVHTTP_REQ_POST || command == EVHTTP_REQ_PUT ||
        command == EVHTTP_REQ_PATCH) {
        char text[32];
        snprintf(text, sizeof text, "%zu", length);
        evhttp_add_header(out, "Content-Length", text);
    }
    /* A reference, not a copy, and the client's body stays intact for a
     * retry. */
    if (length > 0)
        evbuffer_add_buffer_reference(evhttp_request_get_output_buffer(up), body);

    p->upstream = up;
    if (evhttp_make_request(connection, up, command, evhttp_request_get_uri(p->front)) != 0) {
        p->upstream = NULL;
        attempt_failed(p, r, "the request could not be sent");
    }
}

static void on_deadline(evutil_socket_t fd, short events, void *arg)
{
    rtr_pending *p = arg;
    rtr_router *router = p->router;
    const long long limit = (long long)router->config.request_timeout_ms;
    const char *method = method_name(evhttp_request_get_command(p->front));
    const char *uri = evhttp_request_get_uri(p->front);
    if (p->in_queue || p->upstream == NULL) {
        if (p->in_queue)
            queue_remove(router, p);
        router->counters.queue_timeouts++;
        warn_request("%s %s timed out after %lld ms waiting for a ready replica", method, uri,
                     limit);
        char message[256];
        snprintf(message, sizeof message,
                 "No replica was ready to serve the request within %lld ms "
                 "(--request_timeout_ms)",
                 limit);
        fail_pending(p, 503, message);
        return;
    }
    rtr_replica *r = p->replica;
    struct evhttp_request *up = p->upstream;
    p->upstream = NULL;
    /* Cancelling runs the error callback but not the reply callback. */
    evhttp_cancel_request(up);
    router->counters.upstream_timeouts++;
    warn_request("%s %s timed out after %lld ms on %s", method, uri, limit, r->name);
    char message[256];
    snprintf(message, sizeof message, "%s did not reply within %lld ms (--request_timeout_ms)",
             r->name, limit);
    release(p, false);
    fail_pending(p, 504, message);
}

void proxy_drain_queue(rtr_router *router)
{
    while (router->queue_head != NULL) {
        rtr_pending *p = router->queue_head;
        rtr_replica *r = pick_replica(router, p->failed);
        if (r == NULL)
            return;
        queue_remove(router, p);
        forward(p, r);
    }
}

void proxy_abort_all(rtr_router *router, const char *reason)
{
    while (router->all != NULL) {
        rtr_pending *p = router->all;
        if (p->in_queue)
            queue_remove(router, p);
        if (p->upstream != NULL) {
            struct evhttp_request *up = p->upstream;
            p->upstream = NULL;
            evhttp_cancel_request(up);
        }
        release(p, false);
        fail_pending(p, 503, reason);
    }
}

/* Replies to a request that the guard replaced. */
static void reply_rejected(rtr_router *router, struct evhttp_request *request,
                           rtr_guard_result verdict, uint64_t length)
{
    const size_t limit = router->config.max_body_bytes;
    int status = 413;
    if (verdict == RTR_GUARD_HEADERS_TOO_LARGE) {
        status = 431;
        proxy_reply_error(request, status, true,
                          "Request header block is larger than the maximum of %d bytes",
                          RTR_MAX_HEADER_BYTES);
    } else if (length > 0) {
        proxy_reply_error(request, status, true,
                          "Request body of %llu bytes is larger than the maximum of %zu bytes "
                          "(set by --max_body_bytes)",
                          (unsigned long long)length, limit);
    } else {
        proxy_reply_error(request, status, true,
                          "Request body is larger than the maximum of %zu bytes (set by "
                          "--max_body_bytes)",
                          limit);
    }
    DM_INFO("rejected a request with status %d: %s", status,
            verdict == RTR_GUARD_HEADERS_TOO_LARGE ? "header block too large"
                                                   : "body too large");
    count_reply(router, status, 0.0);
}

/* Returns the path of URI without its query, in PATH. */
static void uri_path(const char *uri, char *path, size_t size)
{
    size_t n = strcspn(uri, "?");
    if (n >= size)
        n = size - 1;
    memcpy(path, uri, n);
    path[n] = '\0';
}

void proxy_handle(struct evhttp_request *request, void *arg)
{
    rtr_router *router = arg;
    uint64_t length = 0;
    rtr_guard_result verdict = rtr_guard_verdict(router->guards, request, &length);
    if (verdict != RTR_GUARD_PASS) {
        reply_rejected(router, request, verdict, length);
        return;
    }

    const enum evhttp_cmd_type command = evhttp_request_get_command(request);
    const bool get = command == EVHTTP_REQ_GET || command == EVHTTP_REQ_HEAD;
    char path[256];
    uri_path(evhttp_request_get_uri(request), path, sizeof path);
    const bool replicas = strcmp(path, "/replicas") == 0;
    if (replicas || strcmp(path, "/metrics") == 0) {
        if (!get) {
            proxy_reply_error(request, 405, false, "Method %s is not allowed on %s; use GET",
                              method_name(command), path);
            count_reply(router, 405, 0.0);
            return;
        }
        if (replicas)
            router_reply_replicas(router, request);
        else
            router_reply_metrics(router, request);
        count_reply(router, 200, 0.0);
        return;
    }
    if (router->stopping) {
        proxy_reply_error(request, 503, true, "The router is shutting down");
        count_reply(router, 503, 0.0);
        return;
    }

    rtr_pending *p = calloc(1, sizeof *p);
    struct event *deadline = p != NULL ? evtimer_new(router->base, on_deadline, p) : NULL;
    if (deadline == NULL) {
        free(p);
        DM_ERROR("out of memory for a request");
        proxy_reply_error(request, 503, true, "The router is out of memory");
        count_reply(router, 503, 0.0);
        return;
    }
    p->router = router;
    p->front = request;
    p->arrived = dm_monotonic_seconds();
    p->deadline = deadline;
    p->all_next = router->all;
    if (router->all != NULL)
        router->all->all_prev = p;
    router->all = p;
    const int64_t ms = router->config.request_timeout_ms;
    struct timeval limit = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(deadline, &limit);
    router->arrivals++;
    router_load_change(router, +1);
    dispatch(p, false);
}
