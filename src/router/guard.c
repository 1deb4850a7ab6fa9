/*
 * The guard watches the input buffer of each client connection's socket
 * bufferevent through an evbuffer callback, which libevent runs as soon as
 * a read adds bytes and before evhttp's read callback parses them.
 *
 * It frames requests as libevent 2.1's evhttp does, so that the two agree
 * on where each request ends. Only POST, PUT and PATCH have a body.
 * "Transfer-Encoding: chunked" (the first such header, the whole value)
 * wins over Content-Length, and a request without Content-Length has no
 * body. Chunk sizes are parsed with strtoll in base 16, and empty lines
 * between chunks are skipped.
 *
 * Bytes of a body stay where they are. A header block or a chunk line is
 * moved out of the input until it is complete, so that evhttp never sees
 * part of one, and moved back once the guard has checked it.
 *
 * The guard holds a reference on its bufferevent. When evhttp frees the
 * connection, libevent clears the callbacks, and rtr_guard_sweep then
 * drops the reference, which closes the socket. Until then the guard reads
 * and drops whatever the client still sends, so that closing a socket with
 * unread input (a rejected body) does not reset the connection before the
 * client has read the reply.
 */
#include "router/guard.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum {
    FRAME_HEADERS,    /* reading a request line and its header block */
    FRAME_BODY,       /* passing `remaining` bytes of a Content-Length body */
    FRAME_CHUNK_SIZE, /* reading a chunk size line */
    FRAME_CHUNK_DATA, /* passing `remaining` bytes of one chunk */
    FRAME_TRAILER,    /* reading the trailer lines after the last chunk */
    FRAME_DISCARD,    /* after a rejection: drop everything */
    FRAME_PASS,       /* malformed framing: pass everything, evhttp rejects it */
} frame_state;

typedef struct guard {
    rtr_guard_set *set;
    struct bufferevent *bev;   /* the connection's socket bufferevent */
    struct evbuffer_cb_entry *watch;
    struct evbuffer *held;     /* bytes after the framed ones, until they are complete */
    size_t framed_bytes;       /* bytes at the front of the input that evhttp may read */
    struct guard *next;        /* in the set's hash chain */
    frame_state state;
    uint64_t remaining;
    uint64_t chunked_total; /* body bytes of the current chunked request */
    uint64_t framed;        /* requests handed to evhttp */
    uint64_t handled;       /* requests that rtr_guard_verdict counted */
    uint64_t rejected;      /* ordinal of the rejected request, 0 for none */
    rtr_guard_result rejection;
    uint64_t rejected_length;
} guard;

struct rtr_guard_set {
    size_t max_body_bytes;
    size_t max_header_bytes;
    guard **buckets; /* hash chains keyed by the bufferevent */
    size_t bucket_count;
    size_t count;
};

/* The request evhttp reads in place of a rejected one. It has no body, so
 * evhttp reads nothing more before it calls the handler. */
static const char STAND_IN[] = "GET / HTTP/1.1\r\nHost: distml-router\r\n\r\n";

/* The end of a chunked body, for a request cut at a chunk boundary. */
static const char LAST_CHUNK[] = "0\r\n\r\n";

enum { LINE_PREFIX = 128 };

static size_t bucket_of(const rtr_guard_set *set, const struct bufferevent *bev)
{
    uintptr_t key = (uintptr_t)bev >> 4;
    key *= (uintptr_t)0x9E3779B97F4A7C15ULL;
    return (size_t)(key % set->bucket_count);
}

static int set_grow(rtr_guard_set *set)
{
    size_t count = set->bucket_count * 2;
    guard **buckets = calloc(count, sizeof *buckets);
    if (buckets == NULL)
        return -1;
    guard **old = set->buckets;
    size_t old_count = set->bucket_count;
    set->buckets = buckets;
    set->bucket_count = count;
    for (size_t i = 0; i < old_count; i++) {
        for (guard *g = old[i], *next; g != NULL; g = next) {
            next = g->next;
            size_t b = bucket_of(set, g->bev);
            g->next = buckets[b];
            buckets[b] = g;
        }
    }
    free(old);
    return 0;
}

static guard *set_find(const rtr_guard_set *set, const struct bufferevent *bev)
{
    for (guard *g = set->buckets[bucket_of(set, bev)]; g != NULL; g = g->next) {
        if (g->bev == bev)
            return g;
    }
    return NULL;
}

rtr_guard_set *rtr_guard_set_create(size_t max_body_bytes, size_t max_header_bytes)
{
    rtr_guard_set *set = calloc(1, sizeof *set);
    if (set == NULL)
        return NULL;
    set->max_body_bytes = max_body_bytes;
    set->max_header_bytes = max_header_bytes;
    set->bucket_count = 64;
    set->buckets = calloc(set->bucket_count, sizeof *set->buckets);
    if (set->buckets == NULL) {
        free(set);
        return NULL;
    }
    return set;
}

static void guard_release(guard *g)
{
    evbuffer_remove_cb_entry(bufferevent_get_input(g->bev), g->watch);
    evbuffer_free(g->held);
    bufferevent_decref(g->bev);
    free(g);
}

void rtr_guard_set_free(rtr_guard_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->bucket_count; i++) {
        for (guard *g = set->buckets[i], *next; g != NULL; g = next) {
            next = g->next;
            guard_release(g);
        }
    }
    free(set->buckets);
    free(set);
}

static bool is_closed(const guard *g)
{
    bufferevent_event_cb event_callback = NULL;
    bufferevent_getcb(g->bev, NULL, NULL, &event_callback, NULL);
    return event_callback == NULL;
}

void rtr_guard_sweep(rtr_guard_set *set)
{
    for (size_t i = 0; i < set->bucket_count; i++) {
        guard **link = &set->buckets[i];
        while (*link != NULL) {
            guard *g = *link;
            if (is_closed(g)) {
                *link = g->next;
                set->count--;
                guard_release(g);
            } else {
                link = &g->next;
            }
        }
    }
}

/* Copies up to LINE_PREFIX - 1 bytes of the LENGTH-byte line at START into
 * TEXT as a C string. */
static void copy_line(struct evbuffer *src, struct evbuffer_ptr *start, size_t length,
                      char text[LINE_PREFIX])
{
    size_t n = length < LINE_PREFIX - 1 ? length : LINE_PREFIX - 1;
    ev_ssize_t copied = evbuffer_copyout_from(src, start, text, n);
    text[copied > 0 ? copied : 0] = '\0';
}

/* Returns the value of header NAME in the header line TEXT with leading
 * spaces skipped, or NULL when the line is another header. */
static const char *header_value(const char *text, const char *name)
{
    size_t length = strlen(name);
    if (strncasecmp(text, name, length) != 0 || text[length] != ':')
        return NULL;
    const char *value = text + length + 1;
    while (*value == ' ')
        value++;
    return value;
}

/* Trims trailing spaces and tabs, as evhttp does to header values. */
static void trim_right(char *text)
{
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\t'))
        text[--n] = '\0';
}

/* Marks the request evhttp gets next, or the one it is reading, as
 * rejected and drops the rest of the connection's input from SRC on. */
static void reject(guard *g, struct evbuffer *src, rtr_guard_result result, uint64_t length)
{
    g->rejected = g->framed;
    g->rejection = result;
    g->rejected_length = length;
    g->state = FRAME_DISCARD;
    evbuffer_drain(src, evbuffer_get_length(src));
}

/* Hands evhttp the stand-in for a request it has not seen any byte of. */
static void reject_with_stand_in(guard *g, struct evbuffer *src, struct evbuffer *dst,
                                 rtr_guard_result result, uint64_t length)
{
    g->framed++;
    evbuffer_add(dst, STAND_IN, sizeof STAND_IN - 1);
    reject(g, src, result, length);
}

typedef enum { STEP_MORE, STEP_DONE } step_result;

/* Finds the end of the header block at the start of SRC. When it is there,
 * moves the block to DST (or replaces the request) and picks the framing
 * of the body. */
static step_result frame_headers(guard *g, struct evbuffer *src, struct evbuffer *dst)
{
    const size_t available = evbuffer_get_length(src);
    struct evbuffer_ptr at;
    evbuffer_ptr_set(src, &at, 0, EVBUFFER_PTR_SET);
    bool first = true, has_body = false, chunked = false, has_length = false;
    bool bad_length = false;
    uint64_t content_length = 0;
    size_t block = 0;

    for (;;) {
        size_t eol_length = 0;
        struct evbuffer_ptr eol = evbuffer_search_eol(src, &at, &eol_length, EVBUFFER_EOL_CRLF);
        if (eol.pos < 0) {
            if (available > g->set->max_header_bytes) {
                reject_with_stand_in(g, src, dst, RTR_GUARD_HEADERS_TOO_LARGE, 0);
                return STEP_DONE;
            }
            return STEP_MORE;
        }
        const size_t line_length = (size_t)(eol.pos - at.pos);
        char text[LINE_PREFIX];
        copy_line(src, &at, line_length, text);
        if (first) {
            if (line_length == 0) {
                /* evhttp rejects a request that starts with an empty line. */
                g->state = FRAME_PASS;
                return STEP_DONE;
            }
            has_body = strncmp(text, "POST ", 5) == 0 || strncmp(text, "PUT ", 4) == 0 ||
                       strncmp(text, "PATCH ", 6) == 0;
            first = false;
        } else if (line_length == 0) {
            block = (size_t)eol.pos + eol_length;
            break;
        } else {
            const char *value;
            if (!chunked && (value = header_value(text, "Transfer-Encoding")) != NULL) {
                char copy[LINE_PREFIX];
                snprintf(copy, sizeof copy, "%s", value);
                trim_right(copy);
                chunked = strcasecmp(copy, "chunked") == 0;
            } else if (!has_length && (value = header_value(text, "Content-Length")) != NULL) {
                char copy[LINE_PREFIX], *end = NULL;
                snprintf(copy, sizeof copy, "%s", value);
                trim_right(copy);
                errno = 0;
                long long parsed = strtoll(copy, &end, 10);
                has_length = true;
                bad_length = copy[0] == '\0' || *end != '\0' || parsed < 0 || errno != 0;
                content_length = bad_length ? 0 : (uint64_t)parsed;
            }
        }
        evbuffer_ptr_set(src, &at, (size_t)eol.pos + eol_length, EVBUFFER_PTR_SET);
    }

    if (block > g->set->max_header_bytes) {
        reject_with_stand_in(g, src, dst, RTR_GUARD_HEADERS_TOO_LARGE, 0);
        return STEP_DONE;
    }
    if (has_body && !chunked && has_length && !bad_length &&
        content_length > g->set->max_body_bytes) {
        reject_with_stand_in(g, src, dst, RTR_GUARD_BODY_TOO_LARGE, content_length);
        return STEP_DONE;
    }
    g->framed++;
    evbuffer_remove_buffer(src, dst, block);
    if (!has_body) {
        g->state = FRAME_HEADERS;
    } else if (chunked) {
        g->state = FRAME_CHUNK_SIZE;
        g->chunked_total = 0;
    } else if (bad_length) {
        g->state = FRAME_PASS;
    } else if (content_length > 0) {
        g->state = FRAME_BODY;
        g->remaining = content_length;
    }
    return STEP_DONE;
}

/* Reads one chunk size line at the start of SRC. */
static step_result frame_chunk_size(guard *g, struct evbuffer *src, struct evbuffer *dst)
{
    size_t eol_length = 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(src, NULL, &eol_length, EVBUFFER_EOL_CRLF);
    if (eol.pos < 0) {
        if (evbuffer_get_length(src) > LINE_PREFIX)
            g->state = FRAME_PASS;
        return STEP_MORE;
    }
    const size_t line_length = (size_t)eol.pos;
    const size_t total = line_length + eol_length;
    if (line_length == 0) {
        evbuffer_remove_buffer(src, dst, total);
        return STEP_DONE;
    }
    if (line_length >= LINE_PREFIX) {
        g->state = FRAME_PASS;
        return STEP_DONE;
    }
    char text[LINE_PREFIX], *end = NULL;
    struct evbuffer_ptr start;
    evbuffer_ptr_set(src, &start, 0, EVBUFFER_PTR_SET);
    copy_line(src, &start, line_length, text);
    errno = 0;
    long long size = strtoll(text, &end, 16);
    if ((*end != '\0' && *end != ' ') || size < 0 || errno != 0) {
        g->state = FRAME_PASS;
        return STEP_DONE;
    }
    if (size == 0) {
        evbuffer_remove_buffer(src, dst, total);
        g->state = FRAME_TRAILER;
        return STEP_DONE;
    }
    if ((uint64_t)size > g->set->max_body_bytes - g->chunked_total) {
        /* End the body here, at a chunk boundary, so evhttp hands the
         * request to the handler, which rejects it. */
        evbuffer_add(dst, LAST_CHUNK, sizeof LAST_CHUNK - 1);
        reject(g, src, RTR_GUARD_BODY_TOO_LARGE, 0);
        return STEP_DONE;
    }
    g->chunked_total += (uint64_t)size;
    g->remaining = (uint64_t)size;
    g->state = FRAME_CHUNK_DATA;
    evbuffer_remove_buffer(src, dst, total);
    return STEP_DONE;
}

/* Passes trailer lines up to the empty line that ends the request. */
static step_result frame_trailer(guard *g, struct evbuffer *src, struct evbuffer *dst)
{
    size_t eol_length = 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(src, NULL, &eol_length, EVBUFFER_EOL_CRLF);
    if (eol.pos < 0) {
        if (evbuffer_get_length(src) > g->set->max_header_bytes)
            g->state = FRAME_PASS;
        return STEP_MORE;
    }
    if (eol.pos == 0)
        g->state = FRAME_HEADERS;
    evbuffer_remove_buffer(src, dst, (size_t)eol.pos + eol_length);
    return STEP_DONE;
}

/* Moves up to `remaining` bytes and switches to state AFTER once they are
 * all through. */
static void pass_counted(guard *g, struct evbuffer *src, struct evbuffer *dst, frame_state after)
{
    size_t available = evbuffer_get_length(src);
    size_t n = g->remaining < available ? (size_t)g->remaining : available;
    evbuffer_remove_buffer(src, dst, n);
    g->remaining -= n;
    if (g->remaining == 0)
        g->state = after;
}

/* Runs the framing over SRC, the bytes not framed yet, and appends what
 * evhttp may read to DST. Leaves an incomplete line or header block in
 * SRC. */
static void frame_bytes(guard *g, struct evbuffer *src, struct evbuffer *dst)
{
    step_result step = STEP_DONE;
    while (step == STEP_DONE && evbuffer_get_length(src) > 0) {
        switch (g->state) {
        case FRAME_HEADERS:
            step = frame_headers(g, src, dst);
            break;
        case FRAME_BODY:
            pass_counted(g, src, dst, FRAME_HEADERS);
            break;
        case FRAME_CHUNK_SIZE:
            step = frame_chunk_size(g, src, dst);
            break;
        case FRAME_CHUNK_DATA:
            pass_counted(g, src, dst, FRAME_CHUNK_SIZE);
            break;
        case FRAME_TRAILER:
            step = frame_trailer(g, src, dst);
            break;
        case FRAME_DISCARD:
            evbuffer_drain(src, evbuffer_get_length(src));
            break;
        case FRAME_PASS:
            evbuffer_remove_buffer(src, dst, evbuffer_get_length(src));
            break;
        }
    }
}

/* Moves the input's bytes after the first KEEP into TAIL. */
static void take_tail(struct evbuffer *input, size_t keep, struct evbuffer *tail)
{
    if (keep == 0) {
        evbuffer_add_buffer(tail, input);
        return;
    }
    struct evbuffer *front = evbuffer_new();
    if (front == NULL)
        return;
    evbuffer_remove_buffer(input, front, keep);
    evbuffer_add_buffer(tail, input);
    evbuffer_add_buffer(input, front);
    evbuffer_free(front);
}

/* Frames the bytes a read has just added after the framed ones. */
static void frame_new_bytes(guard *g, struct evbuffer *input)
{
    const size_t unframed = evbuffer_get_length(input) - g->framed_bytes;
    const bool counted = g->state == FRAME_BODY || g->state == FRAME_CHUNK_DATA;
    if (evbuffer_get_length(g->held) == 0 && (g->state == FRAME_PASS || counted)) {
        /* The common case: body bytes pass where they are. */
        size_t n = unframed;
        if (counted && g->remaining < n)
            n = (size_t)g->remaining;
        g->framed_bytes += n;
        if (counted) {
            g->remaining -= n;
            if (g->remaining == 0)
                g->state = g->state == FRAME_BODY ? FRAME_HEADERS : FRAME_CHUNK_SIZE;
        }
        if (n == unframed)
            return;
    }
    struct evbuffer *out = evbuffer_new();
    if (out == NULL)
        return;
    take_tail(input, g->framed_bytes, g->held);
    frame_bytes(g, g->held, out);
    g->framed_bytes += evbuffer_get_length(out);
    evbuffer_add_buffer(input, out);
    evbuffer_free(out);
}

static void on_input_changed(struct evbuffer *input, const struct evbuffer_cb_info *info,
                             void *context)
{
    guard *g = context;
    g->framed_bytes -= info->n_deleted < g->framed_bytes ? info->n_deleted : g->framed_bytes;
    if (info->n_added == 0)
        return;
    /* The guard's own moves must not call it again. */
    evbuffer_cb_clear_flags(input, g->watch, EVBUFFER_CB_ENABLED);
    if (is_closed(g))
        evbuffer_drain(input, evbuffer_get_length(input));
    else
        frame_new_bytes(g, input);
    evbuffer_cb_set_flags(input, g->watch, EVBUFFER_CB_ENABLED);
}

struct bufferevent *rtr_guard_bufferevent(struct event_base *base, void *arg)
{
    rtr_guard_set *set = arg;
    if (set->count >= 2 * set->bucket_count && set_grow(set) != 0)
        return NULL;
    guard *g = calloc(1, sizeof *g);
    struct evbuffer *held = g != NULL ? evbuffer_new() : NULL;
    struct bufferevent *bev =
        held != NULL ? bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE) : NULL;
    struct evbuffer_cb_entry *watch =
        bev != NULL ? evbuffer_add_cb(bufferevent_get_input(bev), on_input_changed, g) : NULL;
    if (watch == NULL) {
        if (bev != NULL)
            bufferevent_free(bev);
        if (held != NULL)
            evbuffer_free(held);
        free(g);
        return NULL;
    }
    g->set = set;
    g->bev = bev;
    g->watch = watch;
    g->held = held;
    g->state = FRAME_HEADERS;
    bufferevent_incref(bev);
    size_t b = bucket_of(set, bev);
    g->next = set->buckets[b];
    set->buckets[b] = g;
    set->count++;
    return bev;
}

rtr_guard_result rtr_guard_verdict(rtr_guard_set *set, struct evhttp_request *request,
                                   uint64_t *length)
{
    struct evhttp_connection *connection = evhttp_request_get_connection(request);
    if (connection == NULL)
        return RTR_GUARD_PASS;
    guard *g = set_find(set, evhttp_connection_get_bufferevent(connection));
    if (g == NULL)
        return RTR_GUARD_PASS;
    g->handled++;
    if (g->rejected == 0 || g->handled != g->rejected)
        return RTR_GUARD_PASS;
    *length = g->rejected_length;
    return g->rejection;
}
