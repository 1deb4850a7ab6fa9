/*
 * The router's life cycle (start, graceful stop), SIGCHLD, the per-second
 * load sample and the scaling decision every tick. Also the two paths that
 * the router serves itself: /replicas (JSON) and /metrics (Prometheus text
 * format 0.0.4).
 */
#include "router/internal.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

/* ---- load sampling and scaling ---- */

void router_load_change(rtr_router *router, int delta)
{
    const double now = dm_monotonic_seconds();
    router->load_area += (double)router->load * (now - router->load_changed);
    router->load_changed = now;
    router->load += delta;
}

int router_ready_count(const rtr_router *router)
{
    int ready = 0;
    for (const rtr_replica *r = router->replicas; r != NULL; r = r->next)
        ready += r->state == RTR_REPLICA_READY;
    return ready;
}

/* Replicas that count toward the desired number: not being removed. */
static int active_count(const rtr_router *router)
{
    int active = 0;
    for (const rtr_replica *r = router->replicas; r != NULL; r = r->next)
        active += !r->removed;
    return active;
}

/* Returns the replica to remove first. That is one in backoff, which runs
 * no process, else one that is not ready yet, else the ready one with the
 * fewest requests in flight. Ties go to the newest. */
static rtr_replica *pick_victim(rtr_router *router)
{
    static const int rank[] = {
        [RTR_REPLICA_BACKOFF] = 0,
        [RTR_REPLICA_STARTING] = 1,
        [RTR_REPLICA_READY] = 2,
        [RTR_REPLICA_DRAINING] = 3,
        [RTR_REPLICA_STOPPING] = 3,
    };
    rtr_replica *best = NULL;
    for (rtr_replica *r = router->replicas; r != NULL; r = r->next) {
        if (r->removed)
            continue;
        if (best == NULL || rank[r->state] < rank[best->state] ||
            (rank[r->state] == rank[best->state] &&
             (r->in_flight < best->in_flight ||
              (r->in_flight == best->in_flight && r->number > best->number))))
            best = r;
    }
    return best;
}

/* Starts or retires replicas until the desired number are active. */
static void reconcile(rtr_router *router)
{
    int active = active_count(router);
    for (; active < router->desired; active++) {
        if (replica_create(router) == NULL) {
            DM_ERROR("cannot create a replica: out of memory");
            break;
        }
    }
    for (; active > router->desired; active--) {
        rtr_replica *victim = pick_victim(router);
        if (victim == NULL)
            break;
        replica_retire(victim);
    }
}

static const char *metric_name(rtr_metric metric)
{
    return metric == RTR_METRIC_RPS ? "rps" : "concurrency";
}

static void decide(rtr_router *router)
{
    const rtr_scale_config *c = &router->config.scale;
    const int ready = router_ready_count(router);
    rtr_scale_decision d = rtr_autoscaler_decide(router->autoscaler, router->second, ready);
    if (!d.valid)
        return;
    router->decision = d;
    router->counters.scale_decisions++;
    const char *metric = metric_name(c->metric);
    if (d.entered_panic)
        DM_INFO("entering panic mode: panic %s %.2f needs %d replicas, at least %g%% of %d "
                "ready",
                metric, d.panic_value, d.desired_panic, c->panic_threshold_percentage, ready);
    if (d.left_panic)
        DM_INFO("leaving panic mode: panic %s %.2f needs %d replicas with %d ready", metric,
                d.panic_value, d.desired_panic, ready);
    if (d.desired != router->desired) {
        DM_INFO("scaling from %d to %d replicas: stable %s %.2f over %d s, panic %.2f over "
                "%d s, target %.2f per replica, %d ready, %s mode",
                router->desired, d.desired, metric, d.stable_value, c->stable_window_s,
                d.panic_value, rtr_panic_window_s(c), rtr_target_value(c), ready,
                d.panic ? "panic" : "stable");
        router->desired = d.desired;
    }
    reconcile(router);
}

/* Closes the one-second sample: records the load into the autoscaler and
 * decides every tick. A second without any request records nothing, as
 * Knative records no stats for a revision without traffic, so an idle
 * gap of a whole window starts that window's average over. */
static void on_sample(evutil_socket_t fd, short events, void *arg)
{
    rtr_router *router = arg;
    const double now = dm_monotonic_seconds();
    router_load_change(router, 0);
    const double elapsed = now - router->sample_started;
    const bool active = router->load_area > 0 || router->arrivals > 0 || router->rejections > 0;
    router->second++;
    if (active && elapsed > 0) {
        /* A rejected request counts as one that waited the whole second,
         * so that overload still raises the observed concurrency. */
        double value = router->config.scale.metric == RTR_METRIC_RPS
                           ? (double)router->arrivals / elapsed
                           : router->load_area / elapsed + (double)router->rejections;
        rtr_autoscaler_record(router->autoscaler, router->second, value);
    }
    router->load_area = 0;
    router->arrivals = 0;
    router->rejections = 0;
    router->sample_started = now;
    rtr_guard_sweep(router->guards);
    if (!router->stopping && router->second % router->config.scale.tick_s == 0)
        decide(router);
}

/* ---- child processes and connections ---- */

static void on_sigchld(evutil_socket_t fd, short events, void *arg)
{
    rtr_router *router = arg;
    for (;;) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            break;
        rtr_replica *r = router->replicas;
        while (r != NULL && r->pid != pid)
            r = r->next;
        if (r != NULL)
            replica_exited(r, status);
    }
}

static void on_graveyard(evutil_socket_t fd, short events, void *arg)
{
    rtr_router *router = arg;
    for (int i = 0; i < router->graveyard_count; i++)
        evhttp_connection_free(router->graveyard[i]);
    router->graveyard_count = 0;
}

/* Frees CONNECTION on the next turn of the loop, because it may be the one
 * whose callback is running now. */
void router_discard_connection(rtr_router *router, struct evhttp_connection *connection)
{
    if (router->graveyard_count == router->graveyard_capacity) {
        int capacity = router->graveyard_capacity > 0 ? router->graveyard_capacity * 2 : 16;
        struct evhttp_connection **grown =
            realloc(router->graveyard, (size_t)capacity * sizeof *grown);
        if (grown == NULL) {
            /* NOTE: leaks the connection rather than free it inside its
             * own callback. */
            DM_ERROR("out of memory: a replica connection is not freed");
            return;
        }
        router->graveyard = grown;
        router->graveyard_capacity = capacity;
    }
    router->graveyard[router->graveyard_count++] = connection;
    event_active(router->graveyard_event, EV_TIMEOUT, 0);
}

void router_replica_ready(rtr_router *router)
{
    proxy_drain_queue(router);
}

/* ---- stopping ---- */

void router_check_stopped(rtr_router *router)
{
    if (!router->stopping || router->load > 0)
        return;
    if (!router->replicas_stopping) {
        router->replicas_stopping = true;
        event_del(router->stop_timer);
        DM_INFO("no requests left; stopping %d replicas", active_count(router));
        /* Each retire may free the replica, so restart the walk each time. */
        for (;;) {
            rtr_replica *r = router->replicas;
            while (r != NULL && r->removed)
                r = r->next;
            if (r == NULL)
                break;
            replica_retire(r);
        }
    }
    if (router->replicas == NULL) {
        proxy_flush_log();
        event_base_loopexit(router->base, NULL);
    }
}

static void on_stop_timeout(evutil_socket_t fd, short events, void *arg)
{
    rtr_router *router = arg;
    DM_WARN("stopping with %d requests still pending after %lld ms", router->load,
            (long long)router->config.idle_timeout_ms);
    proxy_abort_all(router, "The router stopped before the request was served");
    router_check_stopped(router);
}

void rtr_router_shutdown(rtr_router *router)
{
    if (router->stopping)
        return;
    router->stopping = true;
    DM_INFO("stopping: %d requests in flight, %d queued", router->forwarded, router->queued);
    if (router->socket != NULL) {
        evhttp_del_accept_socket(router->http, router->socket);
        router->socket = NULL;
    }
    event_del(router->sampler);
    const int64_t ms = router->config.idle_timeout_ms;
    struct timeval limit = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(router->stop_timer, &limit);
    router_check_stopped(router);
}

/* ---- start and free ---- */

static int build_child_argv(rtr_router *router)
{
    const rtr_config *c = &router->config;
    const int count = 2 + c->serve_arg_count + 4 + 1;
    router->child_argv = calloc((size_t)count, sizeof *router->child_argv);
    if (router->child_argv == NULL)
        return dm_fail("out of memory");
    int n = 0;
    router->child_argv[n++] = (char *)c->program;
    router->child_argv[n++] = "serve";
    for (int i = 0; i < c->serve_arg_count; i++)
        router->child_argv[n++] = c->serve_args[i];
    router->child_argv[n++] = "--rest_api_port";
    router->child_argv[n++] = "0";
    router->child_argv[n++] = "--bind_address";
    router->child_argv[n++] = "127.0.0.1";
    router->child_argv[n] = NULL;
    return 0;
}

/* Binds the listening socket itself, so that the port is known and an
 * error names its cause. */
static int bind_listener(rtr_router *router)
{
    const rtr_config *c = &router->config;
    struct sockaddr_storage address;
    socklen_t length = 0;
    memset(&address, 0, sizeof address);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&address;
    if (inet_pton(AF_INET, c->bind_address, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)c->port);
        length = sizeof *v4;
    } else if (inet_pton(AF_INET6, c->bind_address, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)c->port);
        length = sizeof *v6;
    } else {
        return dm_fail("invalid bind address '%s': expected an IPv4 or IPv6 address such as "
                       "127.0.0.1",
                       c->bind_address);
    }
    evutil_socket_t fd = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return dm_fail("cannot create a socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&address, length) != 0 || listen(fd, 1024) != 0) {
        int saved = errno;
        evutil_closesocket(fd);
        return dm_fail("cannot listen on %s port %d: %s", c->bind_address, c->port,
                       strerror(saved));
    }
    router->socket = evhttp_accept_socket_with_handle(router->http, fd);
    if (router->socket == NULL) {
        evutil_closesocket(fd);
        return dm_fail("cannot accept connections on %s port %d", c->bind_address, c->port);
    }
    struct sockaddr_storage bound;
    socklen_t bound_length = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &bound_length);
    router->port = bound.ss_family == AF_INET6
                       ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                       : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

rtr_router *rtr_router_start(struct event_base *base, const rtr_config *config)
{
    if (rtr_scale_config_check(&config->scale) != 0)
        return NULL;
    rtr_router *router = calloc(1, sizeof *router);
    if (router == NULL) {
        dm_fail("out of memory");
        return NULL;
    }
    router->config = *config;
    router->base = base;
    router->http = evhttp_new(base);
    router->guards = rtr_guard_set_create(config->max_body_bytes, RTR_MAX_HEADER_BYTES);
    router->autoscaler = rtr_autoscaler_create(&config->scale, 0, 0);
    router->sigchld = evsignal_new(base, SIGCHLD, on_sigchld, router);
    router->sampler = event_new(base, -1, EV_PERSIST, on_sample, router);
    router->graveyard_event = event_new(base, -1, 0, on_graveyard, router);
    router->stop_timer = evtimer_new(base, on_stop_timeout, router);
    if (router->http == NULL || router->guards == NULL || router->autoscaler == NULL ||
        router->sigchld == NULL || router->sampler == NULL || router->graveyard_event == NULL ||
        router->stop_timer == NULL || build_child_argv(router) != 0) {
        dm_fail("out of memory starting the router");
        rtr_router_free(router);
        return NULL;
    }
    evhttp_set_bevcb(router->http, rtr_guard_bufferevent, router->guards);
    evhttp_set_gencb(router->http, proxy_handle, router);
    evhttp_set_allowed_methods(router->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                                 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                                 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    /* The guard enforces both limits with JSON errors first; these only
     * back it up. */
    evhttp_set_max_body_size(router->http, (ev_ssize_t)config->max_body_bytes);
    evhttp_set_max_headers_size(router->http, 2 * RTR_MAX_HEADER_BYTES);
    evhttp_set_timeout(router->http, (int)((config->idle_timeout_ms + 999) / 1000));
    if (bind_listener(router) != 0) {
        rtr_router_free(router);
        return NULL;
    }
    signal(SIGPIPE, SIG_IGN);
    evsignal_add(router->sigchld, NULL);
    struct timeval second = {.tv_sec = 1};
    evtimer_add(router->sampler, &second);
    const double now = dm_monotonic_seconds();
    router->load_changed = now;
    router->sample_started = now;
    router->desired = config->scale.min_replicas;
    reconcile(router);
    return router;
}

int rtr_router_port(const rtr_router *router)
{
    return router->port;
}

void rtr_router_free(rtr_router *router)
{
    if (router == NULL)
        return;
    while (router->replicas != NULL) {
        rtr_replica *r = router->replicas;
        router->replicas = r->next;
        if (r->pid != 0)
            kill(r->pid, SIGKILL);
        if (r->log != NULL)
            bufferevent_free(r->log);
        for (int i = 0; i < r->idle_count; i++)
            evhttp_connection_free(r->idle[i]);
        if (r->probe != NULL)
            evhttp_connection_free(r->probe);
        free(r->idle);
        event_free(r->timer);
        free(r);
    }
    if (router->graveyard_event != NULL)
        on_graveyard(-1, 0, router);
    free(router->graveyard);
    if (router->http != NULL)
        evhttp_free(router->http);
    rtr_guard_set_free(router->guards);
    rtr_autoscaler_free(router->autoscaler);
    if (router->sigchld != NULL)
        event_free(router->sigchld);
    if (router->sampler != NULL)
        event_free(router->sampler);
    if (router->graveyard_event != NULL)
        event_free(router->graveyard_event);
    if (router->stop_timer != NULL)
        event_free(router->stop_timer);
    free(router->child_argv);
    free(router);
}

/* ---- /replicas and /metrics ---- */

static void send_text(struct evhttp_request *request, const char *type, const char *text)
{
    evhttp_add_header(evhttp_request_get_output_headers(request), "Content-Type", type);
    evbuffer_add(evhttp_request_get_output_buffer(request), text, strlen(text));
    evhttp_send_reply(request, 200, NULL, NULL);
}

void router_reply_replicas(rtr_router *router, struct evhttp_request *request)
{
    const double now = dm_monotonic_seconds();
    const rtr_scale_decision *d = &router->decision;
    cJSON *root = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(root, "replicas");
    for (const rtr_replica *r = router->replicas; r != NULL; r = r->next) {
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "name", r->name);
        cJSON_AddStringToObject(item, "state", replica_state_name(r->state));
        cJSON_AddNumberToObject(item, "pid", (double)r->pid);
        cJSON_AddNumberToObject(item, "port", (double)r->port);
        cJSON_AddNumberToObject(item, "in_flight", (double)r->in_flight);
        cJSON_AddNumberToObject(item, "age_seconds", round((now - r->created) * 10) / 10);
        cJSON_AddNumberToObject(item, "restarts", (double)r->restarts);
        cJSON_AddItemToArray(list, item);
    }
    cJSON_AddNumberToObject(root, "desired_replicas", (double)router->desired);
    cJSON_AddNumberToObject(root, "ready_replicas", (double)router_ready_count(router));
    cJSON_AddNumberToObject(root, "requests_in_flight", (double)router->forwarded);
    cJSON_AddNumberToObject(root, "requests_queued", (double)router->queued);
    cJSON *scaler = cJSON_AddObjectToObject(root, "autoscaler");
    cJSON_AddStringToObject(scaler, "metric", metric_name(router->config.scale.metric));
    cJSON_AddNumberToObject(scaler, "target", rtr_target_value(&router->config.scale));
    cJSON_AddNumberToObject(scaler, "stable_value", d->stable_value);
    cJSON_AddNumberToObject(scaler, "panic_value", d->panic_value);
    cJSON_AddBoolToObject(scaler, "panic", d->panic);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (text == NULL) {
        proxy_reply_error(request, 500, false, "Out of memory rendering /replicas");
        return;
    }
    send_text(request, "application/json", text);
    cJSON_free(text);
}

void router_reply_metrics(rtr_router *router, struct evhttp_request *request)
{
    static const double bounds[RTR_LATENCY_BUCKETS] = {
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};
    const rtr_counters *c = &router->counters;
    struct evbuffer *out = evhttp_request_get_output_buffer(request);

    evbuffer_add_printf(out, "# HELP distml_router_requests_total Requests the router "
                             "answered, by status code.\n"
                             "# TYPE distml_router_requests_total counter\n");
    for (int i = 0; i < 500; i++) {
        if (c->by_status[i] > 0)
            evbuffer_add_printf(out, "distml_router_requests_total{code=\"%d\"} %llu\n", i + 100,
                                (unsigned long long)c->by_status[i]);
    }
    evbuffer_add_printf(out, "# HELP distml_router_request_duration_seconds Time from a "
                             "request's arrival at the router to its reply.\n"
                             "# TYPE distml_router_request_duration_seconds histogram\n");
    uint64_t cumulative = 0;
    for (int b = 0; b <= RTR_LATENCY_BUCKETS; b++) {
        cumulative += c->latency[b];
        if (b < RTR_LATENCY_BUCKETS)
            evbuffer_add_printf(out, "distml_router_request_duration_seconds_bucket{le=\"%g\"} "
                                     "%llu\n",
                                bounds[b], (unsigned long long)cumulative);
        else
            evbuffer_add_printf(out, "distml_router_request_duration_seconds_bucket{le=\"+Inf\"} "
                                     "%llu\n",
                                (unsigned long long)cumulative);
    }
    evbuffer_add_printf(out, "distml_router_request_duration_seconds_sum %.6f\n",
                        c->latency_sum);
    evbuffer_add_printf(out, "distml_router_request_duration_seconds_count %llu\n",
                        (unsigned long long)cumulative);

    struct {
        const char *name, *help;
        uint64_t value;
    } counters[] = {
        {"distml_router_retries_total", "Requests sent again after a replica failed.",
         c->retries},
        {"distml_router_queue_full_total", "Requests rejected because the queue was full.",
         c->queue_full},
        {"distml_router_queue_timeouts_total",
         "Requests that timed out waiting for a ready replica.", c->queue_timeouts},
        {"distml_router_upstream_timeouts_total",
         "Requests that timed out at a replica.", c->upstream_timeouts},
        {"distml_router_upstream_failures_total",
         "Attempts that failed at a replica before a reply.", c->upstream_failures},
        {"distml_router_replica_starts_total", "Replica processes started.", c->replica_starts},
        {"distml_router_replica_crashes_total", "Replica processes that exited unasked.",
         c->replica_crashes},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counters[i].name,
                            counters[i].help, counters[i].name, counters[i].name,
                            (unsigned long long)counters[i].value);

    evbuffer_add_printf(out, "# HELP distml_router_requests_in_flight Requests at replicas.\n"
                             "# TYPE distml_router_requests_in_flight gauge\n"
                             "distml_router_requests_in_flight %d\n",
                        router->forwarded);
    evbuffer_add_printf(out, "# HELP distml_router_requests_queued Requests waiting for a "
                             "replica.\n"
                             "# TYPE distml_router_requests_queued gauge\n"
                             "distml_router_requests_queued %d\n",
                        router->queued);
    evbuffer_add_printf(out, "# HELP distml_router_replicas Replicas by state.\n"
                             "# TYPE distml_router_replicas gauge\n");
    for (int s = RTR_REPLICA_STARTING; s <= RTR_REPLICA_BACKOFF; s++) {
        int count = 0;
        for (const rtr_replica *r = router->replicas; r != NULL; r = r->next)
            count += (int)r->state == s;
        evbuffer_add_printf(out, "distml_router_replicas{state=\"%s\"} %d\n",
                            replica_state_name((rtr_replica_state)s), count);
    }
    evbuffer_add_printf(out, "# HELP distml_router_replica_in_flight Requests in flight at "
                             "each replica.\n"
                             "# TYPE distml_router_replica_in_flight gauge\n");
    for (const rtr_replica *r = router->replicas; r != NULL; r = r->next)
        evbuffer_add_printf(out, "distml_router_replica_in_flight{replica=\"%s\"} %d\n", r->name,
                            r->in_flight);
    const rtr_scale_decision *d = &router->decision;
    const char *metric = metric_name(router->config.scale.metric);
    evbuffer_add_printf(out,
                        "# HELP distml_router_desired_replicas Replicas the autoscaler asks "
                        "for.\n"
                        "# TYPE distml_router_desired_replicas gauge\n"
                        "distml_router_desired_replicas %d\n"
                        "# HELP distml_router_stable_value The scaling metric averaged over "
                        "the stable window.\n"
                        "# TYPE distml_router_stable_value gauge\n"
                        "distml_router_stable_value{metric=\"%s\"} %g\n"
                        "# HELP distml_router_panic_value The scaling metric averaged over "
                        "the panic window.\n"
                        "# TYPE distml_router_panic_value gauge\n"
                        "distml_router_panic_value{metric=\"%s\"} %g\n"
                        "# HELP distml_router_panic_mode 1 while the autoscaler is in panic "
                        "mode.\n"
                        "# TYPE distml_router_panic_mode gauge\n"
                        "distml_router_panic_mode %d\n",
                        router->desired, metric, d->stable_value, metric, d->panic_value,
                        d->panic ? 1 : 0);
    evhttp_add_header(evhttp_request_get_output_headers(request), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(request, 200, NULL, NULL);
}
