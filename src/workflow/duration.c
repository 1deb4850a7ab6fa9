#include "workflow/duration.h"

#include "base/error.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    uint64_t nanoseconds;
} duration_unit;

/* The units of Go's time package; "µs" appears in both of its Unicode
 * spellings (micro sign U+00B5 and Greek mu U+03BC). */
static const duration_unit units[] = {
    {"ns", 1ULL},
    {"us", 1000ULL},
    {"\xc2\xb5s", 1000ULL},
    {"\xce\xbcs", 1000ULL},
    {"ms", 1000000ULL},
    {"s", 1000000000ULL},
    {"m", 60ULL * 1000000000ULL},
    {"h", 3600ULL * 1000000000ULL},
};

static int invalid(const char *text)
{
    return dm_fail("time: invalid duration \"%s\"", text);
}

int wf_duration_parse(const char *text, int64_t *nanoseconds)
{
    const char *s = text;
    bool negative = false;
    double total = 0.0;

    if (*s == '-' || *s == '+') {
        negative = *s == '-';
        s++;
    }
    if (strcmp(s, "0") == 0) {
        *nanoseconds = 0;
        return 0;
    }
    if (*s == '\0')
        return invalid(text);
    while (*s != '\0') {
        /* The number: digits, optionally a fraction; at least one digit. */
        const char *start = s;
        while (*s >= '0' && *s <= '9')
            s++;
        bool has_digits = s > start;
        if (*s == '.') {
            s++;
            const char *fraction = s;
            while (*s >= '0' && *s <= '9')
                s++;
            has_digits = has_digits || s > fraction;
        }
        if (!has_digits)
            return invalid(text);
        double value = strtod(start, NULL);

        /* The unit runs to the next digit or '.', as in Go. */
        const char *unit_start = s;
        while (*s != '\0' && *s != '.' && !(*s >= '0' && *s <= '9'))
            s++;
        size_t unit_len = (size_t)(s - unit_start);
        if (unit_len == 0)
            return dm_fail("time: missing unit in duration \"%s\"", text);
        const duration_unit *unit = NULL;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            if (strlen(units[i].name) == unit_len &&
                memcmp(units[i].name, unit_start, unit_len) == 0)
                unit = &units[i];
        }
        if (unit == NULL)
            return dm_fail("time: unknown unit \"%.*s\" in duration \"%s\"", (int)unit_len,
                           unit_start, text);
        total += value * (double)unit->nanoseconds;
        if (total > 9.2e18)
            return invalid(text);
    }
    *nanoseconds = (int64_t)(negative ? -total : total);
    return 0;
}

int wf_duration_parse_seconds(const char *text, double *seconds)
{
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (end != text && *end == '\0' && errno == 0) {
        if (value < 0)
            return dm_fail("invalid duration \"%s\": must not be negative", text);
        *seconds = value;
        return 0;
    }
    int64_t ns = 0;
    if (wf_duration_parse(text, &ns) != 0)
        return -1;
    if (ns < 0)
        return dm_fail("invalid duration \"%s\": must not be negative", text);
    *seconds = (double)ns / 1e9;
    return 0;
}
