/*
 * Durations in the syntax of Go's time.ParseDuration, which Argo uses for
 * memoize.maxAge and the retry backoff: a sequence of decimal numbers,
 * each with a unit (ns, us, µs, ms, s, m, h), such as "90m" or "1h30m".
 * There is no day unit, and a number without a unit is an error except
 * for "0".
 */
#ifndef DISTML_WORKFLOW_DURATION_H
#define DISTML_WORKFLOW_DURATION_H

#include <stdint.h>

/* Parse TEXT into *NANOSECONDS. On failure the error message is Go's
 * own, such as `time: unknown unit "d" in duration "1d"`. */
int wf_duration_parse(const char *text, int64_t *nanoseconds);

/* Parse a retry backoff value: a bare number of seconds ("10") or a Go
 * duration ("2m"), into seconds. */
int wf_duration_parse_seconds(const char *text, double *seconds);

#endif
