/*
 * The router's shared state, for its three source files: router.c (start,
 * stop, load sampling, scaling decisions, /replicas and /metrics), proxy.c
 * (client requests, the queue, forwarding, retries and timeouts) and
 * replica.c (child processes, their logs, readiness probes and connection
 * pools). Everything runs on the router's one event loop thread.
 */
#ifndef DISTML_ROUTER_INTERNAL_H
#define DISTML_ROUTER_INTERNAL_H

#include "router/autoscaler.h"
#include "router/guard.h"
#include "router/router.h"

#include <event2/event.h>
#include <event2/http.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum {
    RTR_REPLICA_STARTING = 0, /* the process runs, but its readiness probe has not passed */
    RTR_REPLICA_READY,        /* receives requests */
    RTR_REPLICA_DRAINING,     /* chosen for removal: no new requests, waiting for its own */
    RTR_REPLICA_STOPPING,     /* SIGTERM sent, waiting for the process to exit */
    RTR_REPLICA_BACKOFF,      /* crashed, waiting to be restarted */
} rtr_replica_state;

typedef struct rtr_replica rtr_replica;
typedef struct rtr_pending rtr_pending;

struct rtr_replica {
    rtr_router *router;
    rtr_replica *next; /* in the router's list, in start order */
    int number;
    char name[32];
    rtr_replica_state state;
    pid_t pid;      /* 0 when no process runs */
    int port;       /* 0 until the process logs the port it listens on */
    int generation; /* counts process starts, to retire connections to old ones */
    int in_flight;  /* requests forwarded and not yet replied to */
    double created; /* monotonic seconds, for the age in /replicas */
    double started; /* when the current process started */
    double ready_since;
    int restarts;
    double backoff_s; /* the wait before the next restart after a crash */
    bool removed;     /* scaled down or stopping: freed once the process and requests end */
    struct event *timer; /* the next probe, restart or SIGKILL */
    struct bufferevent *log;
    struct evhttp_connection *probe;
    bool probing;
    int probe_failures;
    struct evhttp_connection **idle; /* keep-alive connections to the replica */
    int idle_count;
    int idle_capacity;
};

/* One client request from arrival to reply. */
struct rtr_pending {
    rtr_router *router;
    struct evhttp_request *front; /* the client's request */
    double arrived;
    struct event *deadline;
    int attempts;
    rtr_replica *replica;   /* serving it now, or NULL */
    int failed;             /* number of the replica whose attempt failed, or 0 */
    int generation;         /* of the replica process serving it */
    struct evhttp_connection *connection;
    struct evhttp_request *upstream; /* the request to the replica, while it runs */
    enum evhttp_request_error upstream_error;
    bool has_upstream_error;
    bool in_queue;
    rtr_pending *queue_prev, *queue_next;
    rtr_pending *all_prev, *all_next;
};

/* The largest request header block the guard lets through. */
#define RTR_MAX_HEADER_BYTES (64 * 1024)

/* Latency histogram bounds in seconds; the last bucket is +Inf. */
#define RTR_LATENCY_BUCKETS 14

typedef struct {
    uint64_t by_status[500]; /* replies by status code 100 to 599 */
    uint64_t latency[RTR_LATENCY_BUCKETS + 1];
    double latency_sum;
    uint64_t retries;
    uint64_t queue_full;
    uint64_t queue_timeouts;
    uint64_t upstream_timeouts;
    uint64_t upstream_failures;
    uint64_t replica_starts;
    uint64_t replica_crashes;
    uint64_t scale_decisions;
} rtr_counters;

struct rtr_router {
    rtr_config config;
    char **child_argv; /* the replicas' argv, NULL-terminated */
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *socket;
    int port;
    rtr_guard_set *guards;
    struct event *sigchld;
    struct event *sampler;
    struct event *graveyard_event;
    struct evhttp_connection **graveyard; /* connections to free on the next loop turn */
    int graveyard_count;
    int graveyard_capacity;

    rtr_autoscaler *autoscaler;
    rtr_scale_decision decision;
    int desired;
    rtr_replica *replicas;
    int next_number;
    unsigned rotation; /* where the least-loaded search starts, to spread ties */

    rtr_pending *queue_head, *queue_tail;
    int queued;
    int forwarded;     /* requests at replicas */
    rtr_pending *all;  /* every pending request */

    /* The load of the current one-second sample: requests queued or at a
     * replica, integrated over time, and the arrivals and rejections. */
    int load;
    double load_area;
    double load_changed;
    double sample_started;
    int arrivals;
    int rejections;
    int64_t second;

    bool stopping;
    bool replicas_stopping;
    struct event *stop_timer;
    rtr_counters counters;
};

/* router.c */
void router_load_change(rtr_router *router, int delta);
void router_replica_ready(rtr_router *router);
void router_check_stopped(rtr_router *router);
void router_discard_connection(rtr_router *router, struct evhttp_connection *connection);
void router_reply_replicas(rtr_router *router, struct evhttp_request *request);
void router_reply_metrics(rtr_router *router, struct evhttp_request *request);
int router_ready_count(const rtr_router *router);

/* proxy.c */
void proxy_handle(struct evhttp_request *request, void *router);
void proxy_drain_queue(rtr_router *router);
void proxy_abort_all(rtr_router *router, const char *reason);
/* Log how many request warnings the rate limit held back. */
void proxy_flush_log(void);
void proxy_reply_error(struct evhttp_request *request, int status, bool close,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* replica.c */
rtr_replica *replica_create(rtr_router *router);
void replica_retire(rtr_replica *replica);
void replica_exited(rtr_replica *replica, int status);
void replica_released(rtr_replica *replica);
void replica_suspect(rtr_replica *replica);
struct evhttp_connection *replica_connection_get(rtr_replica *replica);
void replica_connection_put(rtr_replica *replica, struct evhttp_connection *connection,
                            int generation, bool reusable);
const char *replica_state_name(rtr_replica_state state);

#endif
