/*
 * Numbered model versions under a base path, in the TensorFlow Serving
 * layout: BASE/1, BASE/2, BASE/10, ... with each version folder a bundle.
 *
 * A folder counts as a version only when its name is the canonical decimal
 * form of a non-negative int64: digits only, no sign, no leading zero
 * except "0" itself. So "0.1", "v1", "11.partial", "tmp", "1e3", "+1",
 * "-1", "007" and "" are ignored, and every version maps back to exactly
 * one path.
 */
#ifndef DISTML_MODEL_VERSIONS_H
#define DISTML_MODEL_VERSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses NAME as a version number, returning false when it is not one. */
bool versions_parse(const char *name, int64_t *version);

/* Lists the version folders under BASE in ascending numeric order into a
 * malloc'd array (NULL when *COUNT is 0). A missing BASE is an error. */
int versions_list(const char *base, int64_t **versions, size_t *count);

/*
 * Finds the highest version whose bundle verifies, trying versions from the
 * highest down. Each skipped incomplete or corrupt folder gets one DM_WARN
 * line with the reason on every call, so a caller that polls repeats them.
 * Sets *VERSION to -1 and returns 0 when no version is complete.
 */
int versions_latest_complete(const char *base, int64_t *version);

/* Sets *NEXT to the highest version plus one, or 1 when there is none or
 * BASE does not exist yet. */
int versions_next(const char *base, int64_t *next);

/* Writes "BASE/VERSION" into OUT. */
int versions_path(char *out, size_t capacity, const char *base, int64_t version);

#endif
