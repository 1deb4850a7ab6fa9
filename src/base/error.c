#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DM_ERROR_CAPACITY 1024

static _Thread_local char last_error[DM_ERROR_CAPACITY];

int dm_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return -1;
}

int dm_fail_context(const char *fmt, ...)
{
    char previous[DM_ERROR_CAPACITY];
    char prefix[DM_ERROR_CAPACITY];
    va_list ap;

    memcpy(previous, last_error, sizeof previous);
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (previous[0] == '\0')
        snprintf(last_error, sizeof last_error, "%s", prefix);
    else
        snprintf(last_error, sizeof last_error, "%s: %s", prefix, previous);
    return -1;
}

const char *dm_error(void)
{
    return last_error;
}

void dm_error_clear(void)
{
    last_error[0] = '\0';
}

void *dm_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        dm_fail("out of memory allocating %zu bytes", size);
    return p;
}

void *dm_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        dm_fail("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}
