/*
 * Node statuses of a run: creation with Argo's names and IDs, phase
 * changes, children and outbound links, and their JSON form, which is
 * written to the store on every change.
 */
#include "workflow/engine.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void wf_slots_init(wf_slots *slots, int64_t count)
{
    pthread_mutex_init(&slots->lock, NULL);
    pthread_cond_init(&slots->changed, NULL);
    slots->free_slots = count;
}

void wf_slots_destroy(wf_slots *slots)
{
    pthread_mutex_destroy(&slots->lock);
    pthread_cond_destroy(&slots->changed);
}

/* 32-bit FNV-1a, which Argo uses for node IDs and pod names. */
static uint32_t fnv32a(const char *text)
{
    uint32_t hash = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        hash ^= *p;
        hash *= 16777619u;
    }
    return hash;
}

void wf_node_id(const char *workflow, const char *node_name, char *out, size_t capacity)
{
    if (strcmp(workflow, node_name) == 0)
        snprintf(out, capacity, "%s", workflow);
    else
        snprintf(out, capacity, "%s-%u", workflow, fnv32a(node_name));
}

void wf_pod_name(const char *workflow, const char *template_name, const char *node_name,
                 char *out, size_t capacity)
{
    if (strcmp(workflow, node_name) == 0) {
        snprintf(out, capacity, "%s", workflow);
        return;
    }
    /* Argo cuts the "<workflow>-<template>" prefix to 242 characters so
     * that the name stays within Kubernetes' 253. */
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s-%s", workflow, template_name);
    if (strlen(prefix) > 242)
        prefix[242] = '\0';
    snprintf(out, capacity, "%s-%u", prefix, fnv32a(node_name));
}

bool wf_phase_final(const char *phase)
{
    return strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0 ||
           strcmp(phase, "Error") == 0 || strcmp(phase, "Skipped") == 0 ||
           strcmp(phase, "Omitted") == 0;
}

bool wf_phase_failed(const char *phase)
{
    return strcmp(phase, "Failed") == 0 || strcmp(phase, "Error") == 0;
}

void wf_free_strings(char **strings, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(strings[i]);
    free(strings);
}

static char *copy_or_null(const char *text)
{
    return text != NULL && text[0] != '\0' ? strdup(text) : NULL;
}

static void add_time(cJSON *object, const char *key, double epoch)
{
    if (epoch <= 0) {
        cJSON_AddNullToObject(object, key);
        return;
    }
    char text[32];
    wf_format_time(epoch, text, sizeof text);
    cJSON_AddStringToObject(object, key, text);
}

cJSON *wf_node_to_json(const wf_engine *e, const wf_node *node)
{
    cJSON *json = cJSON_CreateObject();
    char scope[320];
    cJSON_AddStringToObject(json, "id", node->id);
    cJSON_AddStringToObject(json, "name", node->name);
    cJSON_AddStringToObject(json, "displayName", node->display_name);
    cJSON_AddStringToObject(json, "type", node->type);
    if (node->template_name != NULL) {
        cJSON_AddStringToObject(json, "templateName", node->template_name);
        snprintf(scope, sizeof scope, "local/%s", e->name);
        cJSON_AddStringToObject(json, "templateScope", scope);
    }
    cJSON_AddStringToObject(json, "phase", node->phase);
    if (node->boundary_id != NULL)
        cJSON_AddStringToObject(json, "boundaryID", node->boundary_id);
    if (node->message != NULL)
        cJSON_AddStringToObject(json, "message", node->message);
    add_time(json, "startedAt", node->started_at);
    add_time(json, "finishedAt", node->finished_at);
    if (node->inputs != NULL)
        cJSON_AddItemToObject(json, "inputs", cJSON_Duplicate(node->inputs, 1));
    if (node->outputs != NULL)
        cJSON_AddItemToObject(json, "outputs", cJSON_Duplicate(node->outputs, 1));
    if (node->child_count > 0) {
        cJSON *children = cJSON_AddArrayToObject(json, "children");
        for (size_t i = 0; i < node->child_count; i++)
            cJSON_AddItemToArray(children, cJSON_CreateString(node->children[i]));
    }
    if (node->outbound_count > 0) {
        cJSON *outbound = cJSON_AddArrayToObject(json, "outboundNodes");
        for (size_t i = 0; i < node->outbound_count; i++)
            cJSON_AddItemToArray(outbound, cJSON_CreateString(node->outbound[i]));
    }
    if (strcmp(node->type, "Pod") == 0)
        cJSON_AddStringToObject(json, "hostNodeName", "localhost");
    if (node->memoized) {
        cJSON *memo = cJSON_AddObjectToObject(json, "memoizationStatus");
        cJSON_AddBoolToObject(memo, "hit", node->memo_hit);
        cJSON_AddStringToObject(memo, "key", node->memo_key != NULL ? node->memo_key : "");
        cJSON_AddStringToObject(memo, "cacheName", node->memo_cache != NULL ? node->memo_cache : "");
    }
    return json;
}

void wf_node_save_locked(wf_engine *e, wf_node *node)
{
    cJSON *json = wf_node_to_json(e, node);
    char *text = json != NULL ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (text == NULL ||
        wf_store_node_put(e->store, e->name, node->id, node->seq, node->parent, text, node->pid,
                          node->pid_start) != 0)
        DM_ERROR("workflow %s: cannot record node %s: %s", e->name, node->name,
                 text == NULL ? "out of memory" : dm_error());
    free(text);
}

/* Redraw the table of nodes over the previous one: name, type, phase,
 * duration and memoization, one line per node except step and task
 * groups, indented by depth. The caller holds the lock. */
static void draw_live_table(wf_engine *e)
{
    FILE *out = e->options->progress;
    if (e->live_lines > 0)
        fprintf(out, "\033[%dA", e->live_lines);
    int lines = 0;
    fprintf(out, "\033[2K%-60s %-9s %-10s %9s  %s\n", "NODE", "TYPE", "PHASE", "DURATION", "MEMO");
    lines++;
    const double now = dm_wall_seconds();
    for (size_t i = 0; i < e->node_count; i++) {
        const wf_node *n = e->nodes[i];
        if (strcmp(n->type, "StepGroup") == 0 || strcmp(n->type, "TaskGroup") == 0)
            continue;
        int depth = 0;
        for (const char *p = n->name; *p; p++)
            depth += *p == '.' || *p == '(';
        char label[256];
        snprintf(label, sizeof label, "%*s%s", 2 * (depth < 10 ? depth : 10), "",
                 n->display_name);
        double end = n->finished_at > 0 ? n->finished_at : now;
        const char *memo = "";
        if (n->memoized)
            memo = n->memo_hit ? "hit" : "miss";
        fprintf(out, "\033[2K%-60.60s %-9s %-10s %8.1fs  %s\n", label, n->type, n->phase,
                end - n->started_at, memo);
        lines++;
    }
    e->live_lines = lines;
    fflush(out);
}

static void print_progress(wf_engine *e, const wf_node *node)
{
    FILE *out = e->options->progress;
    if (out == NULL)
        return;
    if (e->options->live) {
        draw_live_table(e);
        return;
    }
    if (strcmp(node->type, "StepGroup") == 0 || strcmp(node->type, "TaskGroup") == 0)
        return;
    char stamp[32];
    time_t now = time(NULL);
    struct tm utc;
    gmtime_r(&now, &utc);
    strftime(stamp, sizeof stamp, "%H:%M:%S", &utc);
    char duration[32] = "";
    if (node->finished_at > 0)
        snprintf(duration, sizeof duration, " %.1fs", node->finished_at - node->started_at);
    fprintf(out, "%s %-9s %s (%s)%s%s%s%s\n", stamp, node->phase, node->name, node->type,
            duration, node->memo_hit ? " memoized" : "", node->message ? ": " : "",
            node->message ? node->message : "");
    fflush(out);
}

wf_node *wf_node_create(wf_engine *e, const char *name, const char *display_name,
                        const char *type, const char *template_name, const char *boundary_id,
                        const char *parent_id, bool link, const char *phase)
{
    wf_node *node = dm_calloc(1, sizeof *node);
    if (node == NULL)
        return NULL;
    wf_node_id(e->name, name, node->id, sizeof node->id);
    node->name = strdup(name);
    node->display_name = strdup(display_name);
    node->type = type;
    node->template_name = copy_or_null(template_name);
    node->boundary_id = copy_or_null(boundary_id);
    snprintf(node->phase, sizeof node->phase, "%s", phase);
    snprintf(node->parent, sizeof node->parent, "%s", parent_id != NULL ? parent_id : "");
    node->started_at = dm_wall_seconds();
    if (node->name == NULL || node->display_name == NULL) {
        free(node->name);
        free(node->display_name);
        free(node);
        dm_fail("out of memory");
        return NULL;
    }
    wf_engine_lock(e);
    if (e->node_count == e->node_capacity) {
        size_t capacity = e->node_capacity ? e->node_capacity * 2 : 64;
        wf_node **nodes = realloc(e->nodes, capacity * sizeof *nodes);
        if (nodes == NULL) {
            wf_engine_unlock(e);
            free(node);
            dm_fail("out of memory");
            return NULL;
        }
        e->nodes = nodes;
        e->node_capacity = capacity;
    }
    e->nodes[e->node_count++] = node;
    node->seq = e->next_seq++;
    if (wf_phase_final(phase))
        node->finished_at = node->started_at;
    wf_node_save_locked(e, node);
    if (link && parent_id != NULL && parent_id[0] != '\0') {
        wf_node *parent = NULL;
        for (size_t i = 0; i < e->node_count; i++) {
            if (strcmp(e->nodes[i]->id, parent_id) == 0)
                parent = e->nodes[i];
        }
        if (parent != NULL) {
            char **children =
                realloc(parent->children, (parent->child_count + 1) * sizeof *children);
            if (children != NULL) {
                parent->children = children;
                parent->children[parent->child_count++] = strdup(node->id);
                wf_node_save_locked(e, parent);
            }
        }
    }
    /* A node created in its final phase (a memoization hit, a skipped
     * step) is printed when the caller finishes it. */
    if (!wf_phase_final(phase))
        print_progress(e, node);
    wf_engine_unlock(e);
    return node;
}

wf_node *wf_node_find(wf_engine *e, const char *id)
{
    wf_node *found = NULL;
    wf_engine_lock(e);
    for (size_t i = 0; i < e->node_count && found == NULL; i++) {
        if (strcmp(e->nodes[i]->id, id) == 0)
            found = e->nodes[i];
    }
    wf_engine_unlock(e);
    return found;
}

void wf_node_finish(wf_engine *e, wf_node *node, const char *phase, const char *message)
{
    wf_engine_lock(e);
    snprintf(node->phase, sizeof node->phase, "%s", phase);
    if (message != NULL) {
        free(node->message);
        node->message = copy_or_null(message);
    }
    if (wf_phase_final(phase) && node->finished_at <= 0)
        node->finished_at = dm_wall_seconds();
    node->pid = 0;
    node->pid_start = 0;
    wf_node_save_locked(e, node);
    print_progress(e, node);
    wf_engine_unlock(e);
}

void wf_node_set_phase(wf_engine *e, wf_node *node, const char *phase)
{
    wf_engine_lock(e);
    snprintf(node->phase, sizeof node->phase, "%s", phase);
    wf_node_save_locked(e, node);
    print_progress(e, node);
    wf_engine_unlock(e);
}

void wf_node_add_child(wf_engine *e, wf_node *parent, const char *child_id)
{
    wf_engine_lock(e);
    bool present = false;
    for (size_t i = 0; i < parent->child_count; i++)
        present = present || strcmp(parent->children[i], child_id) == 0;
    if (!present) {
        char **children = realloc(parent->children, (parent->child_count + 1) * sizeof *children);
        if (children != NULL) {
            parent->children = children;
            parent->children[parent->child_count++] = strdup(child_id);
            wf_node_save_locked(e, parent);
        }
    }
    wf_engine_unlock(e);
}

void wf_node_set_outputs(wf_engine *e, wf_node *node, cJSON *outputs)
{
    wf_engine_lock(e);
    cJSON_Delete(node->outputs);
    node->outputs = outputs;
    wf_node_save_locked(e, node);
    wf_engine_unlock(e);
}

void wf_node_set_inputs(wf_engine *e, wf_node *node, cJSON *inputs)
{
    wf_engine_lock(e);
    cJSON_Delete(node->inputs);
    node->inputs = inputs;
    wf_node_save_locked(e, node);
    wf_engine_unlock(e);
}

void wf_node_set_message(wf_engine *e, wf_node *node, const char *message)
{
    wf_engine_lock(e);
    free(node->message);
    node->message = copy_or_null(message);
    wf_node_save_locked(e, node);
    wf_engine_unlock(e);
}

void wf_node_set_outbound(wf_engine *e, wf_node *node, char **ids, size_t count)
{
    wf_engine_lock(e);
    wf_free_strings(node->outbound, node->outbound_count);
    node->outbound = count > 0 ? calloc(count, sizeof *node->outbound) : NULL;
    node->outbound_count = node->outbound != NULL ? count : 0;
    for (size_t i = 0; i < node->outbound_count; i++)
        node->outbound[i] = strdup(ids[i]);
    wf_node_save_locked(e, node);
    wf_engine_unlock(e);
}

void wf_node_set_memo(wf_engine *e, wf_node *node, bool hit, const char *key, const char *cache)
{
    wf_engine_lock(e);
    node->memoized = true;
    node->memo_hit = hit;
    free(node->memo_key);
    free(node->memo_cache);
    node->memo_key = strdup(key);
    node->memo_cache = strdup(cache);
    wf_node_save_locked(e, node);
    wf_engine_unlock(e);
}

void wf_node_set_process(wf_engine *e, wf_node *node, pid_t pid, int64_t pid_start)
{
    wf_engine_lock(e);
    node->pid = pid;
    node->pid_start = pid_start;
    wf_node_save_locked(e, node);
    wf_engine_unlock(e);
}

/* Append ID to a growing list unless it is there. */
static void append_unique(char ***list, size_t *count, const char *id)
{
    for (size_t i = 0; i < *count; i++) {
        if (strcmp((*list)[i], id) == 0)
            return;
    }
    char **grown = realloc(*list, (*count + 1) * sizeof **list);
    if (grown == NULL)
        return;
    *list = grown;
    (*list)[(*count)++] = strdup(id);
}

static void collect_outbound(wf_engine *e, const char *id, char ***list, size_t *count, int depth)
{
    wf_node *node = NULL;
    for (size_t i = 0; i < e->node_count && node == NULL; i++) {
        if (strcmp(e->nodes[i]->id, id) == 0)
            node = e->nodes[i];
    }
    if (node == NULL || depth > 64)
        return;
    const char *type = node->type;
    if (strcmp(type, "Pod") == 0 || strcmp(type, "Skipped") == 0) {
        append_unique(list, count, node->id);
        return;
    }
    if (strcmp(type, "Retry") == 0 && node->child_count > 0) {
        append_unique(list, count, node->children[node->child_count - 1]);
        return;
    }
    if (strcmp(type, "TaskGroup") == 0 && node->child_count == 0) {
        append_unique(list, count, node->id);
        return;
    }
    if (strcmp(type, "TaskGroup") == 0) {
        for (size_t i = 0; i < node->child_count; i++)
            collect_outbound(e, node->children[i], list, count, depth + 1);
        return;
    }
    /* A steps or DAG node that ran nothing, such as a memoization hit,
     * is its own outbound node, so the next step group still links. */
    if (node->outbound_count == 0) {
        append_unique(list, count, node->id);
        return;
    }
    for (size_t i = 0; i < node->outbound_count; i++)
        collect_outbound(e, node->outbound[i], list, count, depth + 1);
}

char **wf_node_outbound_of(wf_engine *e, const char *id, size_t *count)
{
    char **list = NULL;
    *count = 0;
    wf_engine_lock(e);
    collect_outbound(e, id, &list, count, 0);
    wf_engine_unlock(e);
    return list;
}
