#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static dm_log_level current_level = DM_LOG_INFO;

void dm_log_set_level(dm_log_level level)
{
    current_level = level;
}

dm_log_level dm_log_get_level(void)
{
    return current_level;
}

void dm_log(dm_log_level level, const char *fmt, ...)
{
    static const char marks[] = "DIWE";
    char stamp[32];
    char message[2048];
    struct timeval now;
    struct tm utc;
    va_list ap;

    if (level < current_level)
        return;
    gettimeofday(&now, NULL);
    gmtime_r(&now.tv_sec, &utc);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines from several threads do not interleave. */
    fprintf(stderr, "%s.%03dZ %d %c %s\n", stamp, (int)(now.tv_usec / 1000), (int)getpid(),
            marks[level], message);
}

bool dm_log_budget_charge(dm_log_budget *b, long second)
{
    if (second != b->second) {
        b->second = second;
        b->lines = 0;
    }
    if (b->lines < DM_LOG_LINES_PER_SECOND) {
        b->lines++;
        return true;
    }
    b->suppressed++;
    return false;
}

long dm_log_budget_take_report(dm_log_budget *b, long second, bool final)
{
    if (b->suppressed == 0 || (!final && second == b->second))
        return 0;
    long suppressed = b->suppressed;
    b->suppressed = 0;
    return suppressed;
}
