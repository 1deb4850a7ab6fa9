/*
 * One-line logging to stderr: "2026-12-04T15:21:46.123Z 4242 I message".
 * The level is checked before the message is formatted.
 */
#ifndef DISTML_BASE_LOG_H
#define DISTML_BASE_LOG_H

#include "base/error.h"

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

#endif
