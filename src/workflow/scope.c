#include "workflow/scope.h"

#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wf_scope_init(wf_scope *scope, const wf_scope *parent)
{
    memset(scope, 0, sizeof *scope);
    scope->parent = parent;
}

void wf_scope_free(wf_scope *scope)
{
    for (size_t i = 0; i < scope->count; i++) {
        free(scope->names[i]);
        free(scope->values[i]);
    }
    free(scope->names);
    free(scope->values);
    memset(scope, 0, sizeof *scope);
}

int wf_scope_set(wf_scope *scope, const char *name, const char *value)
{
    char *copy = strdup(value != NULL ? value : "");
    if (copy == NULL)
        return dm_fail("out of memory");
    for (size_t i = 0; i < scope->count; i++) {
        if (strcmp(scope->names[i], name) == 0) {
            free(scope->values[i]);
            scope->values[i] = copy;
            return 0;
        }
    }
    if (scope->count == scope->capacity) {
        size_t capacity = scope->capacity ? scope->capacity * 2 : 16;
        char **names = realloc(scope->names, capacity * sizeof *names);
        if (names != NULL)
            scope->names = names;
        char **values = realloc(scope->values, capacity * sizeof *values);
        if (values != NULL)
            scope->values = values;
        if (names == NULL || values == NULL) {
            free(copy);
            return dm_fail("out of memory");
        }
        scope->capacity = capacity;
    }
    scope->names[scope->count] = strdup(name);
    if (scope->names[scope->count] == NULL) {
        free(copy);
        return dm_fail("out of memory");
    }
    scope->values[scope->count] = copy;
    scope->count++;
    return 0;
}

int wf_scope_setf(wf_scope *scope, const char *value, const char *name_fmt, ...)
{
    char name[1024];
    va_list ap;
    va_start(ap, name_fmt);
    vsnprintf(name, sizeof name, name_fmt, ap);
    va_end(ap);
    return wf_scope_set(scope, name, value);
}

const char *wf_scope_get(const wf_scope *scope, const char *name)
{
    for (const wf_scope *s = scope; s != NULL; s = s->parent) {
        for (size_t i = 0; i < s->count; i++) {
            if (strcmp(s->names[i], name) == 0)
                return s->values[i];
        }
    }
    return NULL;
}

typedef struct {
    char *data;
    size_t size;
    size_t capacity;
} text_buffer;

static int buffer_append(text_buffer *b, const char *s, size_t n)
{
    if (b->size + n + 1 > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 256;
        while (capacity < b->size + n + 1)
            capacity *= 2;
        char *data = realloc(b->data, capacity);
        if (data == NULL)
            return dm_fail("out of memory");
        b->data = data;
        b->capacity = capacity;
    }
    memcpy(b->data + b->size, s, n);
    b->size += n;
    b->data[b->size] = '\0';
    return 0;
}

int wf_substitute(const char *text, const wf_scope *scope, const char *keep_prefix,
                  bool allow_unresolved, char **out)
{
    text_buffer b = {0};
    const char *s = text != NULL ? text : "";
    *out = NULL;
    if (buffer_append(&b, "", 0) != 0)
        return -1;
    while (*s != '\0') {
        const char *open = strstr(s, "{{");
        const char *close = open != NULL ? strstr(open + 2, "}}") : NULL;
        if (open == NULL || close == NULL) {
            if (buffer_append(&b, s, strlen(s)) != 0)
                goto fail;
            break;
        }
        if (buffer_append(&b, s, (size_t)(open - s)) != 0)
            goto fail;
        const char *start = open + 2, *end = close;
        while (start < end && (*start == ' ' || *start == '\t'))
            start++;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        char name[512];
        size_t n = (size_t)(end - start);
        const char *value = NULL;
        if (n < sizeof name) {
            memcpy(name, start, n);
            name[n] = '\0';
            value = wf_scope_get(scope, name);
        } else {
            name[0] = '\0';
        }
        if (value != NULL) {
            if (buffer_append(&b, value, strlen(value)) != 0)
                goto fail;
        } else {
            bool kept = keep_prefix != NULL && strncmp(name, keep_prefix, strlen(keep_prefix)) == 0;
            if (!kept && !allow_unresolved) {
                dm_fail("failed to resolve {{%.*s}}", (int)(close - open - 2), open + 2);
                goto fail;
            }
            if (buffer_append(&b, open, (size_t)(close + 2 - open)) != 0)
                goto fail;
        }
        s = close + 2;
    }
    *out = b.data;
    return 0;
fail:
    free(b.data);
    return -1;
}
