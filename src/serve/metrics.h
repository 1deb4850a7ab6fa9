/*
 * Server metrics in the Prometheus text exposition format (version
 * 0.0.4): requests by status code, a request latency histogram, requests
 * in flight, a histogram of the batch sizes the model ran, and the served
 * model version. Updates are lock-free atomic adds, so every request
 * thread records without contention.
 */
#ifndef DISTML_SERVE_METRICS_H
#define DISTML_SERVE_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct srv_metrics srv_metrics;

srv_metrics *srv_metrics_create(void);
void srv_metrics_free(srv_metrics *m);

void srv_metrics_request_started(srv_metrics *m);

/* Counts one finished request with HTTP STATUS that took SECONDS. */
void srv_metrics_request_finished(srv_metrics *m, int status, double seconds);

/* Counts one forward pass over BATCH examples. */
void srv_metrics_batch(srv_metrics *m, int batch);

/* Counts the forward passes that EXAMPLES examples take in passes of at
 * most MAX_PASS examples, as srv_servable_predict runs them. */
void srv_metrics_passes(srv_metrics *m, int examples, int max_pass);

/* Renders every metric; VERSION is the served version or -1. Returns a
 * malloc'd text, or NULL when memory runs out. */
char *srv_metrics_render(srv_metrics *m, const char *model_name, int64_t version,
                         size_t *length);

#endif
