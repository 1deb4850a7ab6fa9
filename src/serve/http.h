/*
 * The model server's HTTP front end on libmicrohttpd: TensorFlow Serving's
 * REST API under /v1, KServe's V2 inference protocol under /v2, and
 * Prometheus metrics at /metrics. Replies are JSON with TensorFlow
 * Serving's error shape {"error": "..."} and status codes.
 *
 * libmicrohttpd runs a pool of threads, each with its own epoll loop, and
 * calls the handler on the thread that owns the connection, so a
 * prediction runs on that thread. With batching, the handler instead
 * queues the decoded prediction and suspends the connection, and the
 * batch thread that runs it resumes the connection for the reply. Request bodies above the size limit get a 413 as soon as the
 * headers announce them, before any of the body is read.
 *
 * Connections are bounded in total, below the open-file limit, and per
 * client address, and a request whose headers stall is closed after the
 * header timeout, which is shorter than the idle timeout, so idle clients
 * cannot lock others out.
 */
#ifndef DISTML_SERVE_HTTP_H
#define DISTML_SERVE_HTTP_H

#include "serve/batcher.h"
#include "serve/metrics.h"
#include "serve/servable.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *model_name;
    const char *bind_address; /* IPv4 or IPv6 literal */
    int port;                 /* 0 picks a free port */
    int threads;
    int64_t timeout_ms;       /* idle connection timeout, rounded up to seconds */
    /* Idle timeout until a request's headers are complete, rounded up to
     * seconds and at most TIMEOUT_MS. */
    int64_t header_timeout_ms;
    /* Open connections; 0 derives the limit from the open-file limit. */
    int max_connections;
    /* Connections from one client address; 0 for no limit, -1 for half of
     * the maximum. */
    int max_connections_per_ip;
    size_t max_body_bytes;
    int chunk;                /* maximum examples per forward pass without batching */
    srv_manager *manager;
    srv_batcher *batcher;     /* NULL runs each request on its own thread */
    srv_metrics *metrics;
} srv_http_config;

typedef struct srv_http srv_http;

/* Starts listening; returns NULL with dm_error() set on failure, which
 * includes a MAX_CONNECTIONS that the open-file limit cannot hold. CONFIG's
 * pointers must outlive the server. */
srv_http *srv_http_start(const srv_http_config *config);

/* The port the server listens on. */
int srv_http_port(const srv_http *h);

/* The connection limits in effect, after the defaults are resolved. */
int srv_http_max_connections(const srv_http *h);
int srv_http_max_connections_per_ip(const srv_http *h);

/* Stops accepting connections; open connections are still served. */
void srv_http_quiesce(srv_http *h);

/* Requests received whose reply has not been sent yet. */
long srv_http_in_flight(const srv_http *h);

/* Closes every connection, stops the threads and frees H. */
void srv_http_stop(srv_http *h);

#endif
