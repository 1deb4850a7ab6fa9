/*
 * Argo's resource conditions: Kubernetes label-selector requirements
 * evaluated against JSON paths of an object, as in
 *   "status.replicaStatuses.Worker.succeeded = 2, status.phase != Failed".
 * Requirements are joined by commas, which mean AND. Operators: =, ==,
 * !=, in (a, b), notin (a, b), > and < (integers), KEY (exists) and !KEY
 * (does not exist). A path is a dotted list of object keys or array
 * indexes, read like gjson reads it; its value is compared as text.
 */
#ifndef DISTML_WORKFLOW_SELECTOR_H
#define DISTML_WORKFLOW_SELECTOR_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct wf_selector wf_selector;

/* Parse TEXT; the error names the requirement that does not parse. */
int wf_selector_parse(const char *text, wf_selector **out);

void wf_selector_free(wf_selector *selector);

size_t wf_selector_count(const wf_selector *selector);

/* The text of requirement I, as written. */
const char *wf_selector_text(const wf_selector *selector, size_t i);

/* Whether requirement I holds for OBJECT, with Kubernetes semantics: =
 * and in need the path to exist, != and notin hold when it is missing,
 * and > and < need an integer value. */
bool wf_selector_matches(const wf_selector *selector, size_t i, const cJSON *object);

/* The value at dotted PATH in OBJECT, or NULL when there is none. */
const cJSON *wf_json_path(const cJSON *object, const char *path);

#endif
