/*
 * Error reporting for library code: a failing function stores one message
 * in a thread-local buffer and returns -1; the caller prints dm_error() or
 * adds context with dm_fail() again. Only src/cli/ decides to exit.
 */
#ifndef DISTML_BASE_ERROR_H
#define DISTML_BASE_ERROR_H

#include <stddef.h>

#if defined(__GNUC__)
#define DM_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define DM_PRINTF(fmt, args)
#endif

/* Store a formatted message as this thread's last error and return -1. */
int dm_fail(const char *fmt, ...) DM_PRINTF(1, 2);

/* Store "PREFIX: <previous message>" and return -1, to add context. */
int dm_fail_context(const char *fmt, ...) DM_PRINTF(1, 2);

/* The last message stored by this thread ("" when none). */
const char *dm_error(void);

/* Forget the last message. */
void dm_error_clear(void);

/* Allocation helpers that store an error message instead of returning NULL
 * silently; they return NULL on failure like malloc. */
void *dm_malloc(size_t size);
void *dm_calloc(size_t count, size_t size);

#endif
