/*
 * Typed access to a YAML tree for the workflow validator, keeping the
 * path of the current field ("spec.templates[2].container") so that every
 * error names the field and where it is in the file.
 */
#ifndef DISTML_WORKFLOW_SPEC_READER_H
#define DISTML_WORKFLOW_SPEC_READER_H

#include "workflow/ydoc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *file;
    char path[1024];
    size_t path_len;
} spec_reader;

/* Append ".KEY" (or "KEY" at the root) to the path; returns the old
 * length for spec_reader_pop. */
size_t spec_reader_push_key(spec_reader *r, const char *key);
/* Append "[INDEX]". */
size_t spec_reader_push_index(spec_reader *r, size_t index);
void spec_reader_pop(spec_reader *r, size_t length);

/* Fail with "FILE:LINE:COL: PATH: MESSAGE" at NODE (or without a position
 * when NODE is NULL). */
int spec_reader_fail(const spec_reader *r, const ydoc_node *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fail unless NODE is a map whose keys are all in ALLOWED (NULL-ended);
 * the error names the first other key as an unsupported field. */
int spec_reader_check_fields(spec_reader *r, const ydoc_node *node, const char *const *allowed);

/* Read MAP[KEY] as a string into *OUT. A missing key or null leaves
 * *OUT NULL, which fails only when REQUIRED. Plain numbers and booleans
 * are read as their text, as Kubernetes accepts them for strings. */
int spec_reader_string(spec_reader *r, const ydoc_node *map, const char *key, bool required,
                       const char **out);

/* Read MAP[KEY] as an integer in [MIN, MAX]; a missing key keeps *OUT. */
int spec_reader_int(spec_reader *r, const ydoc_node *map, const char *key, int64_t min,
                    int64_t max, int64_t *out);

/* Read MAP[KEY] as true or false; a missing key keeps *OUT. */
int spec_reader_bool(spec_reader *r, const ydoc_node *map, const char *key, bool *out);

/* Read MAP[KEY] as a list of strings into a malloc'd array *OUT of *COUNT
 * (NULL and 0 when missing). */
int spec_reader_string_list(spec_reader *r, const ydoc_node *map, const char *key,
                            const char ***out, size_t *count);

/* MAP[KEY] when it is a sequence, NULL when missing or null; a map or
 * scalar there fails. */
int spec_reader_seq(spec_reader *r, const ydoc_node *map, const char *key,
                    const ydoc_node **out);

/* MAP[KEY] when it is a map, NULL when missing or null. */
int spec_reader_map(spec_reader *r, const ydoc_node *map, const char *key,
                    const ydoc_node **out);

/* True when TEXT contains a {{...}} tag, whose value is known only at run
 * time. */
bool spec_has_tag(const char *text);

#endif
