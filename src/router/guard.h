/*
 * The request guard: a watch on each client connection's input that
 * rejects oversized request bodies and header blocks before evhttp, or
 * anything else, reads them.
 *
 * libevent 2.1's evhttp replies to a body over its limit with an HTML page,
 * and offers no hook to change it. So the guard follows the HTTP/1.1
 * message framing itself (Content-Length and chunked bodies), and when a
 * request is over a limit it hands evhttp an empty GET in its place (or
 * ends a chunked body early) and drops every later byte of the
 * connection. The request handler asks rtr_guard_verdict whether the
 * request it got is such a stand-in, and answers it with a JSON error and
 * "Connection: close".
 *
 * Malformed framing (an unparsable Content-Length or chunk size) is passed
 * through unchanged, so evhttp rejects it in its own way.
 */
#ifndef DISTML_ROUTER_GUARD_H
#define DISTML_ROUTER_GUARD_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include <stddef.h>
#include <stdint.h>

typedef struct rtr_guard_set rtr_guard_set;

/* Creates the set of guards for one evhttp server with its limits. */
rtr_guard_set *rtr_guard_set_create(size_t max_body_bytes, size_t max_header_bytes);

/* Frees the set and drops its references on the connections, which closes
 * those that evhttp has freed. Call it after evhttp_free. */
void rtr_guard_set_free(rtr_guard_set *set);

/* Creates a guarded bufferevent for a new client connection. Pass this
 * with the set to evhttp_set_bevcb. */
struct bufferevent *rtr_guard_bufferevent(struct event_base *base, void *set);

/* Closes the sockets of the connections that evhttp has freed since the
 * last sweep. Call it every second or so. */
void rtr_guard_sweep(rtr_guard_set *set);

typedef enum {
    RTR_GUARD_PASS = 0,          /* a request as the client sent it */
    RTR_GUARD_BODY_TOO_LARGE,    /* its body is over max_body_bytes */
    RTR_GUARD_HEADERS_TOO_LARGE, /* its header block is over max_header_bytes */
} rtr_guard_result;

/* Counts REQUEST as the next request of its connection and returns
 * whether the guard replaced it. For RTR_GUARD_BODY_TOO_LARGE, *LENGTH is
 * the announced Content-Length, or 0 for a chunked body. Call it once for
 * each request evhttp hands to the server's callback. */
rtr_guard_result rtr_guard_verdict(rtr_guard_set *set, struct evhttp_request *request,
                                   uint64_t *length);

#endif
