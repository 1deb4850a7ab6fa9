/*
 * The model server's HTTP front end on libmicrohttpd: TensorFlow Serving's
 * REST API under /v1, KServe's V2 inference protocol under /v2, and
 * Prometheus metrics at /metrics. Replies are JSON with TensorFlow
 * Serving's error shape {"error": "..."} and status codes.
 *
 * libmicrohttpd runs a pool of threads, each with its own epoll loop, and
 * calls the handler on the thread that owns the connection, so a
 * prediction runs on that thread unless batching hands it to a batch
 * thread. Request bodies above the size limit get a 413 as soon as the
 * headers announce them, before any of the body is read.
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
    size_t max_body_bytes;
    int chunk;                /* maximum examples per forward pass without batching */
    srv_manager *manager;
    srv_batcher *batcher;     /* NULL runs each request on its own thread */
    srv_metrics *metrics;
} srv_http_config;

typedef struct srv_http srv_http;

/* Starts listening; returns NULL with dm_error() set on failure. CONFIG's
 * pointers must outlive the server. */
srv_http *srv_http_start(const srv_http_config *config);

/* The port the server listens on. */
int srv_http_port(const srv_http *h);

/* Stops accepting connections; open connections are still served. */
void srv_http_quiesce(srv_http *h);

/* Requests received whose reply has not been sent yet. */
long srv_http_in_flight(const srv_http *h);

/* Closes every connection, stops the threads and frees H. */
void srv_http_stop(srv_http *h);

#endif
