/*
 * distml's router: a reverse proxy in front of `distml serve` replicas that
 * it starts, supervises and scales with the Knative Pod Autoscaler's rule.
 *
 * One libevent loop runs everything. It serves the clients (evhttp), keeps
 * an evhttp client connection pool per replica, probes readiness, reads
 * the replicas' log pipes and SIGCHLD, and runs the timers that sample the
 * load every second and decide the replica count every tick. Nothing
 * blocks, so the router is single-threaded.
 *
 * Requests go to the ready replica with the fewest requests in flight.
 * When no replica can take one (none is ready, or all are at the
 * per-replica concurrency limit), it waits in a bounded FIFO queue. The
 * router answers /replicas and /metrics itself and proxies every other
 * path.
 */
#ifndef DISTML_ROUTER_ROUTER_H
#define DISTML_ROUTER_ROUTER_H

#include "router/autoscaler.h"

#include <event2/event.h>

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *bind_address; /* IPv4 or IPv6 literal */
    int port;                 /* 0 picks a free port */
    const char *program;      /* the distml binary the replicas run */
    const char *model_name;   /* for the readiness probe GET /v1/models/NAME */
    char **serve_args;        /* options for each `distml serve`, after "serve" */
    int serve_arg_count;
    size_t max_body_bytes;      /* larger request bodies get 413 without being read */
    int64_t idle_timeout_ms;    /* client connections idle or stalled this long are closed */
    int64_t request_timeout_ms; /* maximum time from arrival to reply */
    int max_queued;             /* requests that may wait for a replica */
    int container_concurrency;  /* requests per replica at once; 0 for no limit */
    rtr_scale_config scale;
} rtr_config;

typedef struct rtr_router rtr_router;

/* Listens on the configured address and starts the minimum number of
 * replicas. CONFIG's strings must outlive the router. Returns NULL with
 * dm_error() set on failure. */
rtr_router *rtr_router_start(struct event_base *base, const rtr_config *config);

/* The port the router listens on. */
int rtr_router_port(const rtr_router *router);

/* Starts a graceful stop. The router accepts no new connections and
 * finishes the requests in flight and queued, for up to idle_timeout_ms,
 * then sends every replica SIGTERM. The event loop exits when the last
 * replica has exited. */
void rtr_router_shutdown(rtr_router *router);

/* Frees the router after its event loop has returned. */
void rtr_router_free(rtr_router *router);

#endif
