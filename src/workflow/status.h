/*
 * A recorded run as Argo shows it: the Workflow object that
 * `kubectl get wf NAME -o yaml` prints (metadata, spec, status with the
 * nodes map), and a tree of nodes like `argo get` prints.
 */
#ifndef DISTML_WORKFLOW_STATUS_H
#define DISTML_WORKFLOW_STATUS_H

#include "workflow/store.h"

#include <cjson/cJSON.h>
#include <stdio.h>

/* Build the Workflow object of run NAME into *OUT; *OUT is NULL when there
 * is no such run. */
int wf_status_build(wf_store *store, const char *name, cJSON **out);

/* Print WORKFLOW (from wf_status_build) as a summary and a node tree. */
void wf_status_print(FILE *out, const cJSON *workflow);

/* Find the node of WORKFLOW whose id, name, displayName or pod name is
 * KEY, or NULL. */
const cJSON *wf_status_find_node(const cJSON *workflow, const char *key);

/* The pod name of a Pod node of WORKFLOW. */
void wf_status_pod_name(const cJSON *workflow, const cJSON *node, char *out, size_t capacity);

#endif
