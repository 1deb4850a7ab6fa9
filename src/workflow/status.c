#define _GNU_SOURCE /* strptime, timegm */
#include "workflow/status.h"

#include "base/clock.h"
#include "base/error.h"
#include "workflow/run.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *string_of(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* The string at KEY, or "" for printing. */
static const char *text_of(const cJSON *object, const char *key)
{
    const char *text = string_of(object, key);
    return text != NULL ? text : "";
}

static bool is_final(const char *phase)
{
    return phase != NULL &&
           (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0 ||
            strcmp(phase, "Error") == 0 || strcmp(phase, "Skipped") == 0 ||
            strcmp(phase, "Omitted") == 0);
}

/* Pods under node INDEX (by creation parent), and how many Succeeded. */
static void count_pods(cJSON *rows, int index, int *done, int *total, int depth)
{
    cJSON *row = cJSON_GetArrayItem(rows, index);
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(row, "status");
    const char *type = string_of(status, "type");
    const char *id = string_of(row, "id");
    if (type != NULL && strcmp(type, "Pod") == 0) {
        (*total)++;
        const char *phase = string_of(status, "phase");
        if (phase != NULL && strcmp(phase, "Succeeded") == 0)
            (*done)++;
    }
    if (depth > 256)
        return;
    int i = 0;
    for (cJSON *other = rows->child; other != NULL; other = other->next, i++) {
        const char *parent = string_of(other, "parent");
        if (parent != NULL && id != NULL && strcmp(parent, id) == 0)
            count_pods(rows, i, done, total, depth + 1);
    }
}

int wf_status_build(wf_store *store, const char *name, cJSON **out)
{
    cJSON *run = NULL, *rows = NULL;
    *out = NULL;
    if (wf_store_run_get(store, name, &run) != 0)
        return -1;
    if (run == NULL)
        return 0;
    if (wf_store_node_list(store, name, &rows) != 0) {
        cJSON_Delete(run);
        return -1;
    }
    cJSON *submitted = cJSON_Parse(string_of(run, "spec"));
    cJSON *wf = cJSON_CreateObject();
    cJSON_AddStringToObject(wf, "apiVersion", "argoproj.io/v1alpha1");
    cJSON_AddStringToObject(wf, "kind", "Workflow");

    const char *phase = string_of(run, "phase");
    char created[32], finished[32];
    wf_format_time(cJSON_GetObjectItemCaseSensitive(run, "createdAt")->valuedouble, created,
                   sizeof created);
    double finished_at = cJSON_GetObjectItemCaseSensitive(run, "finishedAt")->valuedouble;
    wf_format_time(finished_at, finished, sizeof finished);

    cJSON *metadata = cJSON_AddObjectToObject(wf, "metadata");
    const cJSON *submitted_metadata = cJSON_GetObjectItemCaseSensitive(submitted, "metadata");
    cJSON_AddStringToObject(metadata, "name", name);
    if (string_of(submitted_metadata, "generateName") != NULL)
        cJSON_AddStringToObject(metadata, "generateName", string_of(submitted_metadata, "generateName"));
    cJSON_AddStringToObject(metadata, "namespace",
                            string_of(submitted_metadata, "namespace") ? string_of(submitted_metadata, "namespace")
                                                          : "default");
    cJSON_AddStringToObject(metadata, "uid", string_of(run, "uid"));
    cJSON_AddStringToObject(metadata, "creationTimestamp", created);
    cJSON *labels = cJSON_GetObjectItemCaseSensitive(submitted_metadata, "labels");
    labels = labels != NULL ? cJSON_Duplicate(labels, 1) : cJSON_CreateObject();
    if (is_final(phase))
        cJSON_AddStringToObject(labels, "workflows.argoproj.io/completed", "true");
    cJSON_AddStringToObject(labels, "workflows.argoproj.io/phase", phase);
    cJSON_AddItemToObject(metadata, "labels", labels);
    const cJSON *annotations = cJSON_GetObjectItemCaseSensitive(submitted_metadata, "annotations");
    if (annotations != NULL)
        cJSON_AddItemToObject(metadata, "annotations", cJSON_Duplicate(annotations, 1));
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(submitted, "spec");
    cJSON_AddItemToObject(wf, "spec", spec != NULL ? cJSON_Duplicate(spec, 1) : cJSON_CreateObject());

    cJSON *status = cJSON_AddObjectToObject(wf, "status");
    cJSON_AddStringToObject(status, "phase", phase);
    cJSON_AddStringToObject(status, "startedAt", created);
    if (is_final(phase))
        cJSON_AddStringToObject(status, "finishedAt", finished);
    else
        cJSON_AddNullToObject(status, "finishedAt");
    int done = 0, total = 0;
    cJSON *nodes = cJSON_CreateObject();
    int i = 0;
    for (cJSON *row = rows->child; row != NULL; row = row->next, i++) {
        cJSON *node = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(row, "status"), 1);
        int node_done = 0, node_total = 0;
        count_pods(rows, i, &node_done, &node_total, 0);
        if (node_total > 0) {
            char progress[32];
            snprintf(progress, sizeof progress, "%d/%d", node_done, node_total);
            cJSON_AddStringToObject(node, "progress", progress);
        }
        const char *type = string_of(node, "type");
        if (type != NULL && strcmp(type, "Pod") == 0) {
            total++;
            if (strcmp(string_of(node, "phase"), "Succeeded") == 0)
                done++;
        }
        cJSON_AddItemToObject(nodes, string_of(row, "id"), node);
    }
    char progress[32];
    snprintf(progress, sizeof progress, "%d/%d", done, total);
    cJSON_AddStringToObject(status, "progress", progress);
    const char *message = string_of(run, "message");
    if (message != NULL && message[0] != '\0')
        cJSON_AddStringToObject(status, "message", message);
    cJSON_AddItemToObject(status, "nodes", nodes);
    cJSON *conditions = cJSON_AddArrayToObject(status, "conditions");
    cJSON *running = cJSON_CreateObject();
    cJSON_AddStringToObject(running, "type", "PodRunning");
    cJSON_AddStringToObject(running, "status", is_final(phase) ? "False" : "True");
    cJSON_AddItemToArray(conditions, running);
    if (is_final(phase)) {
        cJSON *completed = cJSON_CreateObject();
        cJSON_AddStringToObject(completed, "type", "Completed");
        cJSON_AddStringToObject(completed, "status", "True");
        cJSON_AddItemToArray(conditions, completed);
    }
    cJSON_Delete(submitted);
    cJSON_Delete(rows);
    cJSON_Delete(run);
    *out = wf;
    return 0;
}

void wf_status_pod_name(const cJSON *workflow, const cJSON *node, char *out, size_t capacity)
{
    const char *wf_name = string_of(cJSON_GetObjectItemCaseSensitive(workflow, "metadata"), "name");
    const char *tmpl = string_of(node, "templateName");
    wf_pod_name(wf_name != NULL ? wf_name : "", tmpl != NULL ? tmpl : "", string_of(node, "name"),
                out, capacity);
}

const cJSON *wf_status_find_node(const cJSON *workflow, const char *key)
{
    const cJSON *nodes =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(workflow, "status"),
                                         "nodes");
    const char *fields[] = {"id", "name", "displayName"};
    for (int f = 0; f < 3; f++) {
        for (const cJSON *node = nodes != NULL ? nodes->child : NULL; node != NULL;
             node = node->next) {
            const char *value = string_of(node, fields[f]);
            if (value != NULL && strcmp(value, key) == 0)
                return node;
        }
    }
    for (const cJSON *node = nodes != NULL ? nodes->child : NULL; node != NULL; node = node->next) {
        char pod[512];
        wf_status_pod_name(workflow, node, pod, sizeof pod);
        const char *type = string_of(node, "type");
        if (type != NULL && strcmp(type, "Pod") == 0 && strcmp(pod, key) == 0)
            return node;
    }
    return NULL;
}

/* ---- the tree view ---- */

static time_t parse_time(const char *text)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (text == NULL || strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm) == NULL)
        return 0;
    return timegm(&tm);
}

static void format_duration(long seconds, char *out, size_t capacity)
{
    if (seconds < 60)
        snprintf(out, capacity, "%lds", seconds);
    else if (seconds < 3600)
        snprintf(out, capacity, "%ldm%lds", seconds / 60, seconds % 60);
    else
        snprintf(out, capacity, "%ldh%ldm", seconds / 3600, (seconds % 3600) / 60);
}

static const char *phase_mark(const char *phase)
{
    if (phase == NULL)
        return "?";
    if (strcmp(phase, "Succeeded") == 0)
        return "\u2714";
    if (strcmp(phase, "Failed") == 0)
        return "\u2716";
    if (strcmp(phase, "Error") == 0)
        return "\u26a0";
    if (strcmp(phase, "Skipped") == 0 || strcmp(phase, "Omitted") == 0)
        return "\u25cb";
    return "\u25f7";
}

/* Whether a node is shown in the tree: step and task groups are left out
 * and their children shown under the group's parent, as `argo get` does. */
static bool shown(const cJSON *node)
{
    const char *type = string_of(node, "type");
    return type == NULL || (strcmp(type, "StepGroup") != 0 && strcmp(type, "TaskGroup") != 0);
}

static bool lists_child(const cJSON *node, const char *id)
{
    const cJSON *children = cJSON_GetObjectItemCaseSensitive(node, "children");
    for (const cJSON *c = children != NULL ? children->child : NULL; c != NULL; c = c->next) {
        if (cJSON_IsString(c) && strcmp(c->valuestring, id) == 0)
            return true;
    }
    return false;
}

/* The node's parent in the tree. Children lists also link each step
 * group to the outbound nodes of the previous group, and each DAG task to
 * its dependencies. So the tree parent is found from the node's kind: a
 * retry attempt's Retry node, a step's group, a group's boundary. */
static const char *tree_parent(const cJSON *nodes, const cJSON *node)
{
    const char *id = string_of(node, "id");
    const char *boundary = string_of(node, "boundaryID");
    const char *type = string_of(node, "type");
    for (const cJSON *other = nodes->child; other != NULL; other = other->next) {
        const char *other_type = string_of(other, "type");
        if (other_type != NULL && strcmp(other_type, "Retry") == 0 && lists_child(other, id))
            return string_of(other, "id");
    }
    if (type != NULL && strcmp(type, "StepGroup") == 0)
        return boundary;
    for (const cJSON *other = nodes->child; other != NULL; other = other->next) {
        const char *other_type = string_of(other, "type");
        const char *other_boundary = string_of(other, "boundaryID");
        bool group = other_type != NULL && (strcmp(other_type, "StepGroup") == 0 ||
                                            strcmp(other_type, "TaskGroup") == 0);
        if (group && other_boundary != NULL && boundary != NULL &&
            strcmp(other_boundary, boundary) == 0 && lists_child(other, id))
            return string_of(other, "id");
    }
    return boundary;
}

/* The shown children of node ID in creation order; the children of a
 * hidden group node are lifted to its parent. */
static size_t shown_children(const cJSON *nodes, const char *id, const cJSON **out, size_t max)
{
    size_t n = 0;
    for (const cJSON *node = nodes->child; node != NULL && n < max; node = node->next) {
        const char *parent = tree_parent(nodes, node);
        if (parent == NULL || strcmp(parent, id) != 0 || strcmp(string_of(node, "id"), id) == 0)
            continue;
        if (shown(node))
            out[n++] = node;
        else
            n += shown_children(nodes, string_of(node, "id"), out + n, max - n);
    }
    return n;
}

static void print_tree(FILE *out, const cJSON *workflow, const cJSON *nodes, const cJSON *node,
                       const char *prefix, bool last, bool root, int depth)
{
    const char *phase = string_of(node, "phase");
    char label[512], pod[512] = "", duration[32] = "";
    const char *type = string_of(node, "type");
    snprintf(label, sizeof label, "%s%s%s %s", prefix, root ? "" : (last ? "\u2514\u2500" : "\u251c\u2500"),
             phase_mark(phase), text_of(node, "displayName"));
    const cJSON *memo = cJSON_GetObjectItemCaseSensitive(node, "memoizationStatus");
    bool hit = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(memo, "hit"));
    bool pod_ran = type != NULL && strcmp(type, "Pod") == 0 && !hit;
    if (pod_ran)
        wf_status_pod_name(workflow, node, pod, sizeof pod);
    time_t started = parse_time(string_of(node, "startedAt"));
    time_t finished = parse_time(string_of(node, "finishedAt"));
    if (pod_ran && started > 0)
        format_duration((long)((finished > 0 ? finished : time(NULL)) - started), duration,
                        sizeof duration);
    char message[1024];
    snprintf(message, sizeof message, "%s%s",
             hit ? "(memoized) " : "",
             string_of(node, "message") ? string_of(node, "message") : "");
    const char *tmpl = string_of(node, "templateName");
    /* Box-drawing characters take 3 bytes but one column. */
    int extra = 0;
    for (const char *p = label; *p; p++)
        extra += ((unsigned char)*p & 0xC0) == 0x80;
    fprintf(out, "%-*s %-24s %-44s %-9s %s\n", 40 + extra, label, tmpl ? tmpl : "", pod, duration,
            message);
    if (depth > 64)
        return;
    const cJSON *children[512];
    size_t n = shown_children(nodes, string_of(node, "id"), children, 512);
    char next_prefix[512];
    snprintf(next_prefix, sizeof next_prefix, "%s%s", prefix, root ? "" : (last ? "  " : "\u2502 "));
    for (size_t i = 0; i < n; i++)
        print_tree(out, workflow, nodes, children[i], next_prefix, i + 1 == n, false, depth + 1);
}

void wf_status_print(FILE *out, const cJSON *workflow)
{
    const cJSON *metadata = cJSON_GetObjectItemCaseSensitive(workflow, "metadata");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(workflow, "status");
    const char *name = string_of(metadata, "name");
    fprintf(out, "Name:                %s\n", name != NULL ? name : "");
    fprintf(out, "Namespace:           %s\n", text_of(metadata, "namespace"));
    fprintf(out, "Status:              %s\n", text_of(status, "phase"));
    if (string_of(status, "message") != NULL)
        fprintf(out, "Message:             %s\n", string_of(status, "message"));
    fprintf(out, "Created:             %s\n", text_of(metadata, "creationTimestamp"));
    if (string_of(status, "finishedAt") != NULL) {
        char duration[32];
        format_duration((long)(parse_time(string_of(status, "finishedAt")) -
                               parse_time(string_of(status, "startedAt"))),
                        duration, sizeof duration);
        fprintf(out, "Finished:            %s\n", string_of(status, "finishedAt"));
        fprintf(out, "Duration:            %s\n", duration);
    }
    fprintf(out, "Progress:            %s\n", text_of(status, "progress"));
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(workflow, "spec"),
                                         "arguments"),
        "parameters");
    if (cJSON_GetArraySize(params) > 0) {
        fprintf(out, "Parameters:\n");
        for (const cJSON *p = params->child; p != NULL; p = p->next)
            fprintf(out, "  %s: %s\n", text_of(p, "name"), text_of(p, "value"));
    }
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(status, "nodes");
    const cJSON *root = name != NULL ? cJSON_GetObjectItemCaseSensitive(nodes, name) : NULL;
    if (root == NULL)
        return;
    fprintf(out, "\n%-40s %-24s %-44s %-9s %s\n", "STEP", "TEMPLATE", "PODNAME", "DURATION",
            "MESSAGE");
    print_tree(out, workflow, nodes, root, " ", true, true, 0);
}
