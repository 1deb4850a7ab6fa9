/*
 * One-line logging to stderr: "2026-12-04T15:21:46.123Z 4242 I message".
 * The level is checked before the message is formatted.
 */
#ifndef DISTML_BASE_LOG_H
#define DISTML_BASE_LOG_H

#include "base/error.h"

#include <stdbool.h>

typedef enum {
    DM_LOG_DEBUG = 0,
    DM_LOG_INFO = 1,
    DM_LOG_WARN = 2,
    DM_LOG_ERROR = 3,
} dm_log_level;

void dm_log_set_level(dm_log_level level);
dm_log_level dm_log_get_level(void);
void dm_log(dm_log_level level, const char *fmt, ...) DM_PRINTF(2, 3);

#define DM_DEBUG(...) dm_log(DM_LOG_DEBUG, __VA_ARGS__)
#define DM_INFO(...) dm_log(DM_LOG_INFO, __VA_ARGS__)
#define DM_WARN(...) dm_log(DM_LOG_WARN, __VA_ARGS__)
#define DM_ERROR(...) dm_log(DM_LOG_ERROR, __VA_ARGS__)

/* A rate limit for one kind of log line: at most DM_LOG_LINES_PER_SECOND
 * lines per second. The rest are counted, so that the count can be logged
 * with the next line in a later second, or when the program stops. The
 * caller serializes access to one budget. */
enum { DM_LOG_LINES_PER_SECOND = 10 };

typedef struct {
    long second;     /* of the last line charged */
    int lines;       /* logged in SECOND */
    long suppressed; /* not logged and not yet reported */
} dm_log_budget;

#define DM_LOG_BUDGET_INIT {.second = -1}

/* Charge one line at SECOND to B and return whether to log it. */
bool dm_log_budget_charge(dm_log_budget *b, long second);

/* Return and clear B's suppressed count once SECOND is past the second it
 * was counted in, or at once when FINAL. */
long dm_log_budget_take_report(dm_log_budget *b, long second, bool final);

#endif
