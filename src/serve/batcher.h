/*
 * Dynamic batching: requests that arrive while the model is busy are
 * merged into one forward pass, up to a maximum batch size, waiting at
 * most a timeout after the first queued request for others to join.
 * Examples are independent in inference, so each request gets the
 * probabilities it would get alone; only requests for the same servable
 * (model version) are merged.
 */
#ifndef DISTML_SERVE_BATCHER_H
#define DISTML_SERVE_BATCHER_H

#include "serve/metrics.h"
#include "serve/servable.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct srv_batcher srv_batcher;

/* Starts THREADS batch threads. A merged batch has at most MAX_BATCH
 * examples, and a request larger than that runs alone in chunks of
 * MAX_BATCH. A batch runs before the timeout when it is full, when
 * MAX_PRODUCERS requests (the threads that can submit; 0 if unknown) are
 * already queued, or when every announced request is queued, because no
 * other request can join it then. METRICS (may be NULL) counts the batch
 * sizes. */
srv_batcher *srv_batcher_create(int max_batch, int64_t timeout_us, int threads,
                                int max_producers, srv_metrics *metrics);

/* Announces a request that is on its way to srv_batcher_run (its body is
 * still arriving or being decoded), so that a batch does not run without
 * it before the timeout. Each announcement ends with a srv_batcher_run
 * call that passes ANNOUNCED true, or with srv_batcher_withdraw. Without
 * announcements a batch waits for the timeout unless it fills up. */
void srv_batcher_announce(srv_batcher *b);
void srv_batcher_withdraw(srv_batcher *b);

/* Queues the N examples X for servable S and waits until their
 * probabilities are written to Y (N, classes). ANNOUNCED: the request was
 * announced with srv_batcher_announce. */
int srv_batcher_run(srv_batcher *b, srv_servable *s, const float *x, int n, float *y,
                    bool announced);

/* Runs what is queued, stops the threads and frees B (NULL is ignored). */
void srv_batcher_free(srv_batcher *b);

#endif
