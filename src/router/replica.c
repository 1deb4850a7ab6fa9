/*
 * Replicas: `distml serve` child processes on loopback ports that they pick
 * themselves (--rest_api_port 0). The router reads each one's stderr
 * through a pipe, takes the port from its "listening on" line, and logs
 * its lines again under the replica's name. A readiness probe, GET
 * /v1/models/NAME, marks it ready once a version is AVAILABLE.
 *
 * A replica that exits without being asked to is restarted after a
 * backoff that doubles from 1 s up to 30 s, and falls back to 1 s once a
 * process has stayed ready for a minute. Each child gets SIGTERM when the
 * router dies (PR_SET_PDEATHSIG), so no replica outlives a killed router.
 */
#define _GNU_SOURCE /* close_range, pipe2 */

#include "router/internal.h"

#include "base/clock.h"
#include "base/log.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define BACKOFF_INITIAL_S 1.0
#define BACKOFF_MAX_S 30.0
#define BACKOFF_RESET_S 60.0
#define PROBE_STARTING_S 0.1 /* between probes until the replica is ready */
#define PROBE_SLOW_AFTER_S 10.0 /* of not being ready, after which probes
                                 * come every PROBE_READY_S (no model yet) */
#define PROBE_READY_S 1.0    /* between probes of a ready replica */
#define PROBE_TIMEOUT_S 2
#define PROBE_FAILURES 3 /* consecutive failures that make a ready replica not ready */
#define IDLE_CONNECTIONS_MAX 256

const char *replica_state_name(rtr_replica_state state)
{
    switch (state) {
    case RTR_REPLICA_STARTING:
        return "starting";
    case RTR_REPLICA_READY:
        return "ready";
    case RTR_REPLICA_DRAINING:
        return "draining";
    case RTR_REPLICA_STOPPING:
        return "stopping";
    case RTR_REPLICA_BACKOFF:
        return "backoff";
    }
    return "unknown";
}

static void schedule(rtr_replica *r, double seconds)
{
    struct timeval tv = {.tv_sec = (time_t)seconds,
                         .tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    evtimer_add(r->timer, &tv);
}

/* Frees the replica once nothing refers to it: it was removed, its
 * process has exited, its log pipe is closed and no request uses it. */
static void maybe_free(rtr_replica *r)
{
    if (!r->removed || r->pid != 0 || r->log != NULL || r->in_flight > 0)
        return;
    rtr_router *router = r->router;
    rtr_replica **link = &router->replicas;
    while (*link != NULL && *link != r)
        link = &(*link)->next;
    if (*link == r)
        *link = r->next;
    for (int i = 0; i < r->idle_count; i++)
        router_discard_connection(router, r->idle[i]);
    free(r->idle);
    if (r->probe != NULL)
        router_discard_connection(router, r->probe);
    event_free(r->timer);
    free(r);
    router_check_stopped(router);
}

/* Drops the connections to the current process, which has exited. */
static void drop_connections(rtr_replica *r)
{
    for (int i = 0; i < r->idle_count; i++)
        router_discard_connection(r->router, r->idle[i]);
    r->idle_count = 0;
    if (r->probe != NULL) {
        router_discard_connection(r->router, r->probe);
        r->probe = NULL;
    }
    r->probing = false;
}

/* ---- log lines ---- */

static dm_log_level level_of_mark(char mark)
{
    switch (mark) {
    case 'D':
        return DM_LOG_DEBUG;
    case 'W':
        return DM_LOG_WARN;
    case 'E':
        return DM_LOG_ERROR;
    default:
        return DM_LOG_INFO;
    }
}

/* Logs LINE of the replica's stderr again under its name, at the level of
 * its "TIMESTAMP PID LEVEL message" format when it has one. */
static void relay_log_line(rtr_replica *r, const char *line)
{
    char stamp[40], mark = 0;
    int pid = 0, consumed = 0;
    if (sscanf(line, "%39s %d %c %n", stamp, &pid, &mark, &consumed) == 3 && consumed > 0 &&
        strchr("DIWE", mark) != NULL)
        dm_log(level_of_mark(mark), "%s (pid %d): %s", r->name, pid, line + consumed);
    else
        DM_INFO("%s: %s", r->name, line);
}

static void start_probe_soon(rtr_replica *r);

static void on_log_readable(struct bufferevent *bev, void *arg)
{
    rtr_replica *r = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char *line;
    size_t length;
    while ((line = evbuffer_readln(in, &length, EVBUFFER_EOL_CRLF)) != NULL) {
        const char *marker = "listening on http://127.0.0.1:";
        const char *at = r->port == 0 ? strstr(line, marker) : NULL;
        if (at != NULL) {
            int port = atoi(at + strlen(marker));
            if (port > 0 && port < 65536) {
                r->port = port;
                start_probe_soon(r);
            }
        }
        relay_log_line(r, line);
        free(line);
    }
}

static void on_log_event(struct bufferevent *bev, short events, void *arg)
{
    rtr_replica *r = arg;
    if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (evbuffer_get_length(in) > 0) {
        evbuffer_add(in, "\n", 1);
        on_log_readable(bev, r);
    }
    bufferevent_free(bev);
    r->log = NULL;
    maybe_free(r);
}

/* ---- processes ---- */

static void on_timer(evutil_socket_t fd, short events, void *arg);

/* Starts the replica's process. Returns 0, or -1 after logging the error. */
static int spawn(rtr_replica *r)
{
    rtr_router *router = r->router;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        DM_ERROR("cannot start %s: pipe failed: %s", r->name, strerror(errno));
        return -1;
    }
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        DM_ERROR("cannot start %s: fork failed: %s", r->name, strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        /* The child runs only async-signal-safe calls until exec, because
         * the router has other threads (OpenBLAS starts some). */
        dup2(fds[1], STDERR_FILENO);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        close_range(3, ~0U, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execv(router->config.program, router->child_argv);
        static const char message[] = "distml router: exec of the replica failed\n";
        ssize_t ignored = write(STDERR_FILENO, message, sizeof message - 1);
        (void)ignored;
        _exit(127);
    }
    close(fds[1]);
    evutil_make_socket_nonblocking(fds[0]);
    r->log = bufferevent_socket_new(router->base, fds[0], BEV_OPT_CLOSE_ON_FREE);
    if (r->log == NULL) {
        close(fds[0]);
        DM_WARN("%s: cannot read the log of pid %d", r->name, (int)pid);
    } else {
        bufferevent_setcb(r->log, on_log_readable, NULL, on_log_event, r);
        bufferevent_enable(r->log, EV_READ);
    }
    r->pid = pid;
    r->port = 0;
    r->generation++;
    r->state = RTR_REPLICA_STARTING;
    r->started = dm_monotonic_seconds();
    r->probe_failures = 0;
    router->counters.replica_starts++;
    DM_INFO("%s started: pid %d", r->name, (int)pid);
    return 0;
}

rtr_replica *replica_create(rtr_router *router)
{
    rtr_replica *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->timer = evtimer_new(router->base, on_timer, r);
    if (r->timer == NULL) {
        free(r);
        return NULL;
    }
    r->router = router;
    r->number = ++router->next_number;
    snprintf(r->name, sizeof r->name, "replica-%d", r->number);
    r->created = dm_monotonic_seconds();
    r->backoff_s = BACKOFF_INITIAL_S;
    rtr_replica **link = &router->replicas;
    while (*link != NULL)
        link = &(*link)->next;
    *link = r;
    if (spawn(r) != 0) {
        /* Retried like a crash, after the backoff. */
        r->state = RTR_REPLICA_BACKOFF;
        schedule(r, r->backoff_s);
    }
    return r;
}

static void stop_process(rtr_replica *r)
{
    r->state = RTR_REPLICA_STOPPING;
    evtimer_del(r->timer);
    if (r->pid == 0) {
        maybe_free(r);
        return;
    }
    DM_INFO("%s stopping: SIGTERM to pid %d", r->name, (int)r->pid);
    kill(r->pid, SIGTERM);
    /* serve waits up to its --rest_api_timeout_in_ms for requests in
     * flight; give it that and 5 s more before SIGKILL. */
    schedule(r, (double)r->router->config.idle_timeout_ms / 1e3 + 5.0);
}

void replica_retire(rtr_replica *r)
{
    r->removed = true;
    switch (r->state) {
    case RTR_REPLICA_READY:
        r->state = RTR_REPLICA_DRAINING;
        DM_INFO("%s draining: %d requests in flight", r->name, r->in_flight);
        if (r->in_flight == 0)
            stop_process(r);
        break;
    case RTR_REPLICA_STARTING:
    case RTR_REPLICA_BACKOFF:
        stop_process(r);
        break;
    case RTR_REPLICA_DRAINING:
    case RTR_REPLICA_STOPPING:
        break;
    }
}

void replica_released(rtr_replica *r)
{
    rtr_router *router = r->router;
    if (r->state == RTR_REPLICA_DRAINING && r->in_flight == 0)
        stop_process(r);
    else
        maybe_free(r);
    /* R may be freed now. */
    proxy_drain_queue(router);
}

static void describe_status(int status, char *text, size_t size)
{
    if (WIFEXITED(status))
        snprintf(text, size, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(text, size, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(text, size, "wait status %d", status);
}

void replica_exited(rtr_replica *r, int status)
{
    rtr_router *router = r->router;
    char how[96];
    describe_status(status, how, sizeof how);
    const double now = dm_monotonic_seconds();
    const int pid = (int)r->pid;
    const bool was_ready = r->state == RTR_REPLICA_READY || r->state == RTR_REPLICA_DRAINING;
    r->pid = 0;
    r->port = 0;
    drop_connections(r);
    evtimer_del(r->timer);

    if (r->state == RTR_REPLICA_STOPPING || r->removed || router->stopping) {
        DM_INFO("%s stopped: pid %d, %s", r->name, pid, how);
        r->removed = true;
        r->state = RTR_REPLICA_STOPPING;
        maybe_free(r);
        return;
    }
    router->counters.replica_crashes++;
    if (was_ready && now - r->ready_since >= BACKOFF_RESET_S)
        r->backoff_s = BACKOFF_INITIAL_S;
    const double delay = r->backoff_s;
    r->backoff_s = r->backoff_s * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : r->backoff_s * 2;
    r->state = RTR_REPLICA_BACKOFF;
    DM_WARN("%s crashed: pid %d, %s after %.1f s; restarting in %.1f s (restart %d)", r->name,
            pid, how, now - r->started, delay, r->restarts + 1);
    schedule(r, delay);
}

/* ---- readiness probe ---- */

/* Returns whether BODY, a /v1/models/NAME status reply, lists an
 * AVAILABLE version. */
static bool has_available_version(struct evbuffer *body)
{
    size_t length = evbuffer_get_length(body);
    const char *text = (const char *)evbuffer_pullup(body, -1);
    cJSON *root = text != NULL ? cJSON_ParseWithLength(text, length) : NULL;
    bool available = false;
    const cJSON *versions = cJSON_GetObjectItemCaseSensitive(root, "model_version_status");
    const cJSON *version;
    cJSON_ArrayForEach(version, versions)
    {
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(version, "state");
        if (cJSON_IsString(state) && strcmp(state->valuestring, "AVAILABLE") == 0)
            available = true;
    }
    cJSON_Delete(root);
    return available;
}

static void on_probe_done(struct evhttp_request *reply, void *arg)
{
    rtr_replica *r = arg;
    r->probing = false;
    int status = reply != NULL ? evhttp_request_get_response_code(reply) : 0;
    bool ok = status == 200 && has_available_version(evhttp_request_get_input_buffer(reply));
    const double now = dm_monotonic_seconds();

    if (r->state == RTR_REPLICA_STARTING) {
        if (ok) {
            r->state = RTR_REPLICA_READY;
            r->ready_since = now;
            r->probe_failures = 0;
            DM_INFO("%s ready: port %d, %.2f s after its start", r->name, r->port,
                    now - r->started);
            router_replica_ready(r->router);
            schedule(r, PROBE_READY_S);
        } else {
            schedule(r, now - r->started < PROBE_SLOW_AFTER_S ? PROBE_STARTING_S : PROBE_READY_S);
        }
        return;
    }
    if (r->state != RTR_REPLICA_READY)
        return;
    if (ok) {
        r->probe_failures = 0;
    } else if (++r->probe_failures >= PROBE_FAILURES) {
        DM_WARN("%s not ready: %d readiness probes failed, the last with status %d", r->name,
                r->probe_failures, status);
        r->state = RTR_REPLICA_STARTING;
        schedule(r, PROBE_STARTING_S);
        return;
    }
    schedule(r, PROBE_READY_S);
}

static void send_probe(rtr_replica *r)
{
    rtr_router *router = r->router;
    if (r->port == 0 || r->probing)
        return;
    if (r->probe == NULL) {
        r->probe = evhttp_connection_base_new(router->base, NULL, "127.0.0.1", (uint16_t)r->port);
        if (r->probe == NULL) {
            schedule(r, PROBE_READY_S);
            return;
        }
        evhttp_connection_set_timeout(r->probe, PROBE_TIMEOUT_S);
    }
    struct evhttp_request *request = evhttp_request_new(on_probe_done, r);
    char *name = evhttp_uriencode(router->config.model_name, -1, 0);
    char path[600];
    snprintf(path, sizeof path, "/v1/models/%s", name != NULL ? name : "");
    free(name);
    char host[32];
    snprintf(host, sizeof host, "127.0.0.1:%d", r->port);
    if (request != NULL)
        evhttp_add_header(evhttp_request_get_output_headers(request), "Host", host);
    if (request == NULL || evhttp_make_request(r->probe, request, EVHTTP_REQ_GET, path) != 0) {
        schedule(r, PROBE_READY_S);
        return;
    }
    r->probing = true;
}

static void start_probe_soon(rtr_replica *r)
{
    evtimer_del(r->timer);
    schedule(r, 0.0);
}

void replica_suspect(rtr_replica *r)
{
    if (r->state == RTR_REPLICA_READY && !r->probing)
        start_probe_soon(r);
}

/* Runs the replica's next probe, restart or SIGKILL. */
static void on_timer(evutil_socket_t fd, short events, void *arg)
{
    rtr_replica *r = arg;
    switch (r->state) {
    case RTR_REPLICA_STARTING:
    case RTR_REPLICA_READY:
        send_probe(r);
        break;
    case RTR_REPLICA_BACKOFF:
        if (r->router->stopping)
            break;
        r->restarts++;
        DM_INFO("%s restarting (restart %d)", r->name, r->restarts);
        if (spawn(r) != 0) {
            r->state = RTR_REPLICA_BACKOFF;
            schedule(r, r->backoff_s);
        }
        break;
    case RTR_REPLICA_STOPPING:
    case RTR_REPLICA_DRAINING:
        if (r->pid != 0) {
            DM_WARN("%s did not stop after SIGTERM: SIGKILL to pid %d", r->name, (int)r->pid);
            kill(r->pid, SIGKILL);
        }
        break;
    }
}

/* ---- connection pool ---- */

struct evhttp_connection *replica_connection_get(rtr_replica *r)
{
    if (r->idle_count > 0)
        return r->idle[--r->idle_count];
    struct evhttp_connection *c =
        evhttp_connection_base_new(r->router->base, NULL, "127.0.0.1", (uint16_t)r->port);
    if (c == NULL)
        return NULL;
    /* The router's own deadline ends slow requests; evhttp's default
     * timeout of 50 s must not end them first. */
    int64_t seconds = (r->router->config.request_timeout_ms + 999) / 1000 + 1;
    evhttp_connection_set_timeout(c, (int)seconds);
    return c;
}

void replica_connection_put(rtr_replica *r, struct evhttp_connection *c, int generation,
                            bool reusable)
{
    if (c == NULL)
        return;
    const bool keep = reusable && generation == r->generation && r->pid != 0 &&
                      (r->state == RTR_REPLICA_READY || r->state == RTR_REPLICA_DRAINING);
    if (keep && r->idle_count == r->idle_capacity && r->idle_capacity < IDLE_CONNECTIONS_MAX) {
        int capacity = r->idle_capacity > 0 ? r->idle_capacity * 2 : 8;
        struct evhttp_connection **grown = realloc(r->idle, (size_t)capacity * sizeof *grown);
        if (grown != NULL) {
            r->idle = grown;
            r->idle_capacity = capacity;
        }
    }
    if (keep && r->idle_count < r->idle_capacity)
        r->idle[r->idle_count++] = c;
    else
        router_discard_connection(r->router, c);
}
