/*
 * Variables for Argo's simple template tags, {{NAME}}: a scope maps names
 * such as "inputs.parameters.message" or "steps.gen.outputs.result" to
 * values. Scopes chain to a parent, which is searched when a name is not
 * found, so a template's inputs sit in front of the workflow's globals.
 */
#ifndef DISTML_WORKFLOW_SCOPE_H
#define DISTML_WORKFLOW_SCOPE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct wf_scope {
    const struct wf_scope *parent;
    char **names;
    char **values;
    size_t count;
    size_t capacity;
} wf_scope;

void wf_scope_init(wf_scope *scope, const wf_scope *parent);
void wf_scope_free(wf_scope *scope);

/* Set NAME to a copy of VALUE, replacing an earlier value in this scope. */
int wf_scope_set(wf_scope *scope, const char *name, const char *value);

/* Printf-style name; the value is copied. */
int wf_scope_setf(wf_scope *scope, const char *value, const char *name_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The value of NAME here or in a parent, or NULL. */
const char *wf_scope_get(const wf_scope *scope, const char *name);

/*
 * Replace every {{NAME}} in TEXT with its value from SCOPE into a malloc'd
 * *OUT. Spaces inside the braces are ignored. A tag whose name is not
 * found is kept as it is; when KEEP_PREFIX is non-NULL, tags that start
 * with it (such as "item") are kept silently, and any other unresolved tag
 * is an error "failed to resolve {{NAME}}" unless ALLOW_UNRESOLVED.
 */
int wf_substitute(const char *text, const wf_scope *scope, const char *keep_prefix,
                  bool allow_unresolved, char **out);

#endif
