#include "workflow/spec_reader.h"

#include "base/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t spec_reader_push_key(spec_reader *r, const char *key)
{
    size_t old = r->path_len;
    int n = snprintf(r->path + old, sizeof r->path - old, "%s%s", old > 0 ? "." : "", key);
    if (n > 0)
        r->path_len = old + (size_t)n < sizeof r->path ? old + (size_t)n : sizeof r->path - 1;
    return old;
}

size_t spec_reader_push_index(spec_reader *r, size_t index)
{
    size_t old = r->path_len;
    int n = snprintf(r->path + old, sizeof r->path - old, "[%zu]", index);
    if (n > 0)
        r->path_len = old + (size_t)n < sizeof r->path ? old + (size_t)n : sizeof r->path - 1;
    return old;
}

void spec_reader_pop(spec_reader *r, size_t length)
{
    r->path_len = length;
    r->path[length] = '\0';
}

int spec_reader_fail(const spec_reader *r, const ydoc_node *node, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    const char *path = r->path_len > 0 ? r->path : "(document)";
    if (node != NULL)
        return dm_fail("%s:%d:%d: %s: %s", r->file, node->line, node->column, path, message);
    return dm_fail("%s: %s: %s", r->file, path, message);
}

int spec_reader_check_fields(spec_reader *r, const ydoc_node *node, const char *const *allowed)
{
    if (node->kind != YDOC_MAP)
        return spec_reader_fail(r, node, "must be a map");
    for (size_t i = 0; i < node->count; i++) {
        bool known = false;
        for (const char *const *a = allowed; *a != NULL; a++)
            known = known || strcmp(*a, node->keys[i]) == 0;
        if (!known) {
            size_t old = spec_reader_push_key(r, node->keys[i]);
            int rc = spec_reader_fail(r, node->items[i], "unsupported field");
            spec_reader_pop(r, old);
            return rc;
        }
    }
    return 0;
}

int spec_reader_string(spec_reader *r, const ydoc_node *map, const char *key, bool required,
                       const char **out)
{
    const ydoc_node *node = ydoc_get(map, key);
    *out = NULL;
    if (node == NULL || ydoc_is_null(node)) {
        if (!required)
            return 0;
        size_t old = spec_reader_push_key(r, key);
        int rc = spec_reader_fail(r, map, "required field is missing");
        spec_reader_pop(r, old);
        return rc;
    }
    if (node->kind != YDOC_SCALAR) {
        size_t old = spec_reader_push_key(r, key);
        int rc = spec_reader_fail(r, node, "must be a string, not a %s",
                                  node->kind == YDOC_MAP ? "map" : "list");
        spec_reader_pop(r, old);
        return rc;
    }
    *out = node->value;
    return 0;
}

int spec_reader_int(spec_reader *r, const ydoc_node *map, const char *key, int64_t min,
                    int64_t max, int64_t *out)
{
    const char *text = NULL;
    if (spec_reader_string(r, map, key, false, &text) != 0)
        return -1;
    if (text == NULL)
        return 0;
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        size_t old = spec_reader_push_key(r, key);
        int rc = spec_reader_fail(r, ydoc_get(map, key),
                                  "invalid value '%s': expected an integer from %lld to %lld", text,
                                  (long long)min, (long long)max);
        spec_reader_pop(r, old);
        return rc;
    }
    *out = value;
    return 0;
}

int spec_reader_bool(spec_reader *r, const ydoc_node *map, const char *key, bool *out)
{
    const char *text = NULL;
    if (spec_reader_string(r, map, key, false, &text) != 0)
        return -1;
    if (text == NULL)
        return 0;
    if (strcmp(text, "true") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(text, "false") == 0) {
        *out = false;
        return 0;
    }
    size_t old = spec_reader_push_key(r, key);
    int rc = spec_reader_fail(r, ydoc_get(map, key), "invalid value '%s': expected true or false",
                              text);
    spec_reader_pop(r, old);
    return rc;
}

int spec_reader_seq(spec_reader *r, const ydoc_node *map, const char *key,
                    const ydoc_node **out)
{
    const ydoc_node *node = ydoc_get(map, key);
    *out = NULL;
    if (node == NULL || ydoc_is_null(node))
        return 0;
    if (node->kind != YDOC_SEQ) {
        size_t old = spec_reader_push_key(r, key);
        int rc = spec_reader_fail(r, node, "must be a list");
        spec_reader_pop(r, old);
        return rc;
    }
    *out = node;
    return 0;
}

int spec_reader_map(spec_reader *r, const ydoc_node *map, const char *key,
                    const ydoc_node **out)
{
    const ydoc_node *node = ydoc_get(map, key);
    *out = NULL;
    if (node == NULL || ydoc_is_null(node))
        return 0;
    if (node->kind != YDOC_MAP) {
        size_t old = spec_reader_push_key(r, key);
        int rc = spec_reader_fail(r, node, "must be a map");
        spec_reader_pop(r, old);
        return rc;
    }
    *out = node;
    return 0;
}

int spec_reader_string_list(spec_reader *r, const ydoc_node *map, const char *key,
                            const char ***out, size_t *count)
{
    const ydoc_node *seq = NULL;
    *out = NULL;
    *count = 0;
    if (spec_reader_seq(r, map, key, &seq) != 0)
        return -1;
    if (seq == NULL || seq->count == 0)
        return 0;
    const char **list = dm_calloc(seq->count, sizeof *list);
    if (list == NULL)
        return -1;
    for (size_t i = 0; i < seq->count; i++) {
        const ydoc_node *item = seq->items[i];
        if (item->kind != YDOC_SCALAR) {
            size_t old = spec_reader_push_key(r, key);
            spec_reader_push_index(r, i);
            int rc = spec_reader_fail(r, item, "must be a string");
            spec_reader_pop(r, old);
            free(list);
            return rc;
        }
        list[i] = item->value;
    }
    *out = list;
    *count = seq->count;
    return 0;
}

bool spec_has_tag(const char *text)
{
    const char *open = text != NULL ? strstr(text, "{{") : NULL;
    return open != NULL && strstr(open, "}}") != NULL;
}
