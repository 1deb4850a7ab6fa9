/*
 * Dynamic batching: requests that arrive while the model is busy are
 * merged into one forward pass, up to a maximum batch size, waiting at
 * most a timeout after the first queued request for others to join.
 * Examples are independent in inference, so each request gets the
 * probabilities it would get alone, up to rounding: a larger batch can
 * take other sgemm kernels and convolution routes, which changes the last
 * bits (about 1e-7 relative). Only requests for the same servable (model
 * version) are merged.
 *
 * Submission does not block: batch threads run the merged batches and
 * call each request's completion function, so the HTTP threads go on
 * reading and decoding other requests while a batch runs.
 */
#ifndef DISTML_SERVE_BATCHER_H
#define DISTML_SERVE_BATCHER_H

#include "serve/metrics.h"
#include "serve/servable.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct srv_batcher srv_batcher;

/* Called on a batch thread once a submitted request's probabilities are
 * in its Y, or its batch failed (RC -1, with dm_error() set on that
 * thread). */
typedef void (*srv_batch_done_fn)(void *context, int rc);

/* Starts THREADS batch threads. A merged batch has at most MAX_BATCH
 * examples, and a request larger than that runs alone in chunks of
 * MAX_BATCH. A batch runs before the timeout when it is full, or when
 * every announced request is queued, because no other request can join
 * it then. METRICS (may be NULL) counts the batch sizes. */
srv_batcher *srv_batcher_create(int max_batch, int64_t timeout_us, int threads,
                                srv_metrics *metrics);

/* Announces a request that is on its way to srv_batcher_submit (its body
 * is still arriving or being decoded), so that a batch does not run
 * without it before the timeout. Each announcement ends with a submission
 * that passes ANNOUNCED true, or with srv_batcher_withdraw. Without
 * announcements a batch waits for the timeout unless it fills up. */
void srv_batcher_announce(srv_batcher *b);
void srv_batcher_withdraw(srv_batcher *b);

/* Queues the N examples X for servable S and returns at once. A batch
 * thread writes their probabilities to Y (N, classes) and then calls
 * DONE(CONTEXT, rc). X and Y must stay valid until DONE is called.
 * Returns -1 (and calls nothing) when out of memory. */
int srv_batcher_submit(srv_batcher *b, srv_servable *s, const float *x, int n, float *y,
                       bool announced, srv_batch_done_fn done, void *context);

/* Runs what is queued and stops the batch threads. Requests submitted
 * later run alone on the submitting thread before srv_batcher_submit
 * returns, so a server can stop B while its HTTP threads still submit.
 * NULL is ignored. */
void srv_batcher_stop(srv_batcher *b);

/* Stops B if needed and frees it, once nothing can call it any more (NULL
 * is ignored). */
void srv_batcher_free(srv_batcher *b);

#endif
