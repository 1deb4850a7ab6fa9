/*
 * Control flow of a run, after Argo's controller: template inputs,
 * memoization, retries, steps (groups in order, the steps of a group in
 * parallel threads), DAGs (a task starts when its dependencies are done),
 * withItems/withParam expansion and `when`.
 *
 * Memoization follows Argo 3.5 and later: any template can be memoized,
 * including steps and dag templates, and only Succeeded nodes are saved.
 * A hit creates the node already Succeeded with the cached outputs and
 * equal start and finish times, and runs nothing. Where memoize.key is
 * left out, the key is "<template>-<hash>", a SHA-256 of the template
 * after substitution together with its input values, so that any change
 * of command, args, env or inputs is a different key. A save that would
 * take the cache past a ConfigMap's 1 MiB is not written. The node stays
 * Succeeded, and its message and a warning give the reason.
 */
#include "workflow/engine.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "base/sha256.h"
#include "workflow/duration.h"
#include "workflow/when.h"

#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Thread stack for steps and tasks: pods keep a few path buffers and a
 * 64 KiB read buffer on the stack, and nesting adds a thread per level. */
#define FLOW_STACK_BYTES (1024 * 1024)

void wf_engine_lock(wf_engine *e)
{
    pthread_mutex_lock(&e->lock);
}

void wf_engine_unlock(wf_engine *e)
{
    pthread_mutex_unlock(&e->lock);
}

bool wf_engine_stopping(const wf_engine *e, double deadline)
{
    return e->cancel != 0 || (deadline > 0 && dm_monotonic_seconds() >= deadline);
}

const char *wf_engine_stop_message(const wf_engine *e, double deadline)
{
    if (e->cancel != 0)
        return "Stopped: the runner received a signal to stop";
    (void)deadline;
    return "Step exceeded its deadline";
}

static const char *node_type_of(const wf_template *t)
{
    switch (t->type) {
    case WF_TEMPLATE_STEPS:
        return "Steps";
    case WF_TEMPLATE_DAG:
        return "DAG";
    default:
        return "Pod";
    }
}

/* ---- inputs ---- */

/* Resolve the template's input parameters from the invocation's arguments
 * into SCOPE ("inputs.parameters.NAME") and *JSON (the node's inputs). */
static int resolve_inputs(wf_engine *e, const wf_invocation *inv, wf_scope *scope, cJSON **json)
{
    const wf_template *t = inv->tmpl;
    *json = NULL;
    if (t->input_count == 0)
        return 0;
    cJSON *inputs = cJSON_CreateObject();
    cJSON *params = cJSON_AddArrayToObject(inputs, "parameters");
    cJSON *all = cJSON_CreateArray();
    *json = inputs;
    for (size_t i = 0; i < t->input_count; i++) {
        const wf_param *p = &t->inputs[i];
        const char *supplied = NULL;
        for (size_t a = 0; a < inv->arg_count; a++) {
            if (strcmp(inv->arg_names[a], p->name) == 0)
                supplied = inv->arg_values[a];
        }
        char *value = NULL;
        /* A value in the template itself wins over an argument. */
        const char *source = p->value != NULL ? p->value : supplied;
        if (source == NULL)
            source = p->default_value;
        if (source == NULL) {
            cJSON_Delete(all);
            return dm_fail("inputs.parameters.%s was not supplied", p->name);
        }
        if (wf_substitute(source, &e->globals, NULL, false, &value) != 0) {
            cJSON_Delete(all);
            return -1;
        }
        if (p->enum_count > 0) {
            bool allowed = false;
            for (size_t k = 0; k < p->enum_count; k++)
                allowed = allowed || strcmp(p->enum_values[k], value) == 0;
            if (!allowed) {
                int rc = dm_fail("inputs.parameters.%s: value '%s' is not one of its enum values",
                                 p->name, value);
                free(value);
                cJSON_Delete(all);
                return rc;
            }
        }
        wf_scope_setf(scope, value, "inputs.parameters.%s", p->name);
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "name", p->name);
        cJSON_AddStringToObject(item, "value", value);
        cJSON_AddItemToArray(params, item);
        cJSON_AddItemToArray(all, cJSON_Duplicate(item, 1));
        free(value);
    }
    char *text = cJSON_PrintUnformatted(all);
    wf_scope_set(scope, "inputs.parameters", text != NULL ? text : "[]");
    free(text);
    cJSON_Delete(all);
    return 0;
}

/* ---- memoization ---- */

typedef struct {
    bool enabled;
    char *key;
    char *cache;
    double max_age; /* seconds, or -1 for no limit */
} memo_plan;

static void memo_plan_free(memo_plan *m)
{
    free(m->key);
    free(m->cache);
    memset(m, 0, sizeof *m);
}

/* The key used when memoize.key is left out: the template name and a
 * SHA-256 of the template's YAML after substitution and its inputs. */
static int memo_default_key(const wf_template *t, const wf_scope *scope, char **key)
{
    cJSON *json = ydoc_to_json(t->node);
    char *text = json != NULL ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    char *resolved = NULL;
    if (text == NULL || wf_substitute(text, scope, NULL, true, &resolved) != 0) {
        free(text);
        return dm_fail("cannot compute the memoization key of template %s", t->name);
    }
    free(text);
    sha256_ctx *ctx = sha256_begin();
    char hex[SHA256_HEX_SIZE];
    int rc = ctx != NULL ? 0 : -1;
    if (rc == 0)
        rc = sha256_update(ctx, resolved, strlen(resolved));
    for (size_t i = 0; rc == 0 && i < t->input_count; i++) {
        char name[512];
        snprintf(name, sizeof name, "inputs.parameters.%s", t->inputs[i].name);
        const char *value = wf_scope_get(scope, name);
        rc = sha256_update(ctx, "\n", 1);
        if (rc == 0)
            rc = sha256_update(ctx, name, strlen(name));
        if (rc == 0)
            rc = sha256_update(ctx, "=", 1);
        if (rc == 0 && value != NULL)
            rc = sha256_update(ctx, value, strlen(value));
    }
    if (rc == 0)
        rc = sha256_finish(ctx, hex);
    else
        sha256_free(ctx);
    free(resolved);
    if (rc != 0)
        return -1;
    size_t n = strlen(t->name) + 34;
    *key = malloc(n);
    if (*key == NULL)
        return dm_fail("out of memory");
    snprintf(*key, n, "%s-%.32s", t->name, hex);
    return 0;
}

static int memo_prepare(const wf_template *t, const wf_scope *scope, memo_plan *m)
{
    memset(m, 0, sizeof *m);
    m->max_age = -1;
    if (t->memoize == NULL)
        return 0;
    m->enabled = true;
    if (wf_substitute(t->memoize->cache_name, scope, NULL, false, &m->cache) != 0)
        return -1;
    if (t->memoize->key != NULL) {
        if (wf_substitute(t->memoize->key, scope, NULL, false, &m->key) != 0)
            return -1;
    } else if (memo_default_key(t, scope, &m->key) != 0) {
        return -1;
    }
    if (!wf_memo_key_valid(m->key))
        return dm_fail("invalid cache key: %s", m->key);
    if (t->memoize->max_age != NULL) {
        char *text = NULL;
        int64_t ns = 0;
        if (wf_substitute(t->memoize->max_age, scope, NULL, false, &text) != 0)
            return -1;
        int rc = wf_duration_parse(text, &ns);
        free(text);
        if (rc != 0)
            return dm_fail("invalid maxAge: %s", dm_error());
        m->max_age = (double)ns / 1e9;
    }
    return 0;
}

/* Look the key up; returns 1 and fills *OUTPUTS (may be NULL) on a hit
 * that is within maxAge. */
static int memo_lookup(wf_engine *e, const memo_plan *m, cJSON **outputs)
{
    wf_memo_entry entry;
    const double now = dm_wall_seconds();
    int found = wf_store_memo_get(e->store, m->cache, m->key, now, &entry);
    *outputs = NULL;
    if (found <= 0)
        return found;
    bool fresh = entry.node_id[0] != '\0' &&
                 (m->max_age < 0 || now - entry.creation_timestamp <= m->max_age);
    if (fresh) {
        cJSON *parsed = cJSON_Parse(entry.outputs_json);
        if (parsed != NULL && cJSON_IsNull(parsed)) {
            cJSON_Delete(parsed);
            parsed = NULL;
        }
        *outputs = parsed;
    } else {
        DM_INFO("workflow %s: cache %s entry %s is %.0f s old, older than maxAge %.0f s; it is a "
                "miss",
                e->name, m->cache, m->key, now - entry.creation_timestamp, m->max_age);
    }
    wf_memo_entry_free(&entry);
    return fresh ? 1 : 0;
}

static void memo_save(wf_engine *e, wf_node *node, const memo_plan *m)
{
    char *outputs = NULL;
    wf_engine_lock(e);
    outputs = node->outputs != NULL ? cJSON_PrintUnformatted(node->outputs) : strdup("null");
    wf_engine_unlock(e);
    bool refused = false;
    char reason[512] = "";
    if (outputs == NULL ||
        wf_store_memo_put(e->store, m->cache, m->key, node->id, outputs, dm_wall_seconds(),
                          &refused, reason, sizeof reason) != 0) {
        DM_WARN("workflow %s: node %s: cannot save cache entry %s in %s: %s", e->name, node->name,
                m->key, m->cache, outputs == NULL ? "out of memory" : dm_error());
    } else if (refused) {
        char message[768];
        snprintf(message, sizeof message, "memoization entry not saved: %s", reason);
        DM_WARN("workflow %s: node %s: %s", e->name, node->name, message);
        wf_node_set_message(e, node, message);
    }
    free(outputs);
}

/* ---- helpers for children ---- */

typedef struct child_job {
    wf_engine *e;
    wf_invocation inv;
    char *node_name;
    char *display_name;
    char **arg_names;
    char **arg_values;
    size_t arg_count;
    const wf_step *step;
    wf_node *result;
    pthread_t thread;
    bool started;
    /* DAG bookkeeping: set under the DAG's lock when the job ends. */
    pthread_mutex_t *done_lock;
    pthread_cond_t *done_cond;
    bool done;
} child_job;

static void job_free(child_job *job)
{
    free(job->node_name);
    free(job->display_name);
    wf_free_strings(job->arg_names, job->arg_count);
    wf_free_strings(job->arg_values, job->arg_count);
    memset(job, 0, sizeof *job);
}

static void *job_main(void *arg)
{
    child_job *job = arg;
    job->result = wf_execute_template(job->e, &job->inv);
    if (job->done_lock != NULL) {
        pthread_mutex_lock(job->done_lock);
        job->done = true;
        pthread_cond_broadcast(job->done_cond);
        pthread_mutex_unlock(job->done_lock);
    }
    return NULL;
}

static int job_start(child_job *job)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, FLOW_STACK_BYTES);
    int rc = pthread_create(&job->thread, &attr, job_main, job);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return dm_fail("cannot start a thread: %s", strerror(rc));
    job->started = true;
    return 0;
}

/* Fill JOB for STEP: substitute its arguments with SCOPE. */
static int job_prepare(wf_engine *e, child_job *job, const wf_step *step, const wf_scope *scope,
                       const char *node_name, const char *display_name, const char *boundary_id,
                       const char *parent_id, bool link, wf_slots *slots, double deadline)
{
    memset(job, 0, sizeof *job);
    job->e = e;
    job->step = step;
    job->node_name = strdup(node_name);
    job->display_name = strdup(display_name);
    job->arg_names = calloc(step->argument_count + 1, sizeof *job->arg_names);
    job->arg_values = calloc(step->argument_count + 1, sizeof *job->arg_values);
    if (job->node_name == NULL || job->display_name == NULL || job->arg_names == NULL ||
        job->arg_values == NULL)
        return dm_fail("out of memory");
    for (size_t i = 0; i < step->argument_count; i++) {
        const wf_param *a = &step->arguments[i];
        if (a->value == NULL)
            return dm_fail("arguments.parameters.%s.value is required", a->name);
        job->arg_names[i] = strdup(a->name);
        job->arg_count = i + 1;
        if (job->arg_names[i] == NULL ||
            wf_substitute(a->value, scope, NULL, false, &job->arg_values[i]) != 0)
            return -1;
        if (a->enum_count > 0) {
            bool allowed = false;
            for (size_t k = 0; k < a->enum_count; k++)
                allowed = allowed || strcmp(a->enum_values[k], job->arg_values[i]) == 0;
            if (!allowed)
                return dm_fail("arguments.parameters.%s: value '%s' is not one of its enum values",
                               a->name, job->arg_values[i]);
        }
    }
    job->inv.node_name = job->node_name;
    job->inv.display_name = job->display_name;
    job->inv.tmpl = wf_spec_template(e->spec, step->template_name);
    job->inv.arg_names = (const char *const *)job->arg_names;
    job->inv.arg_values = (const char *const *)job->arg_values;
    job->inv.arg_count = job->arg_count;
    job->inv.boundary_id = boundary_id;
    job->inv.parent_id = parent_id;
    job->inv.link_parent = link;
    job->inv.boundary_slots = slots;
    job->inv.deadline = deadline;
    return job->inv.tmpl != NULL ? 0 : dm_fail("template %s is not defined", step->template_name);
}

/* The items of STEP's withItems or withParam as a JSON array, or *ITEMS
 * NULL when it has neither. */
static int expand_items(const wf_step *step, const wf_scope *scope, cJSON **items)
{
    *items = NULL;
    if (step->with_items != NULL) {
        cJSON *list = ydoc_to_json(step->with_items);
        if (list == NULL)
            return dm_fail("out of memory");
        for (cJSON *item = list->child; item != NULL; item = item->next) {
            if (!cJSON_IsString(item))
                continue;
            char *value = NULL;
            if (wf_substitute(item->valuestring, scope, "item", false, &value) != 0) {
                cJSON_Delete(list);
                return -1;
            }
            cJSON_SetValuestring(item, value);
            free(value);
        }
        *items = list;
        return 0;
    }
    if (step->with_param != NULL) {
        char *text = NULL;
        if (wf_substitute(step->with_param, scope, NULL, false, &text) != 0)
            return -1;
        cJSON *list = cJSON_Parse(text);
        if (list == NULL || !cJSON_IsArray(list)) {
            int rc = dm_fail("withParam value could not be parsed as a JSON list: %s", text);
            cJSON_Delete(list);
            free(text);
            return rc;
        }
        free(text);
        *items = list;
    }
    return 0;
}

static char *item_text(const cJSON *item)
{
    if (cJSON_IsString(item))
        return strdup(item->valuestring);
    if (cJSON_IsNumber(item)) {
        char number[64];
        double d = item->valuedouble;
        if (d == floor(d) && fabs(d) < 9.0e15)
            snprintf(number, sizeof number, "%.0f", d);
        else
            snprintf(number, sizeof number, "%.17g", d);
        return strdup(number);
    }
    return cJSON_PrintUnformatted(item);
}

/* ITEM in SCOPE as {{item}} and, for a map, {{item.KEY}}; and the
 * description Argo puts in the node name: the value, or "k:v,k:v" with
 * sorted keys for a map. */
static int item_bind(const cJSON *item, wf_scope *scope, char *description, size_t capacity)
{
    char *text = item_text(item);
    if (text == NULL)
        return dm_fail("out of memory");
    wf_scope_set(scope, "item", text);
    snprintf(description, capacity, "%s", text);
    free(text);
    if (!cJSON_IsObject(item))
        return 0;
    size_t count = (size_t)cJSON_GetArraySize(item);
    char **pairs = calloc(count + 1, sizeof *pairs);
    size_t n = 0;
    for (const cJSON *field = item->child; pairs != NULL && field != NULL; field = field->next) {
        char *value = item_text(field);
        wf_scope_setf(scope, value != NULL ? value : "", "item.%s", field->string);
        size_t len = strlen(field->string) + (value ? strlen(value) : 0) + 2;
        pairs[n] = malloc(len);
        if (pairs[n] != NULL)
            snprintf(pairs[n++], len, "%s:%s", field->string, value ? value : "");
        free(value);
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            if (strcmp(pairs[j], pairs[i]) < 0) {
                char *swap = pairs[i];
                pairs[i] = pairs[j];
                pairs[j] = swap;
            }
        }
    }
    description[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(description);
        snprintf(description + used, capacity - used, "%s%s", i > 0 ? "," : "", pairs[i]);
    }
    wf_free_strings(pairs, n);
    return 0;
}

/* Add a finished node's outputs to SCOPE under PREFIX ("steps.NAME"), as
 * Argo's buildLocalScope does; a Retry node's come from its last child. */
static void scope_add_node(wf_engine *e, wf_scope *scope, const char *prefix, wf_node *node)
{
    wf_engine_lock(e);
    if (strcmp(node->type, "Retry") == 0 && node->child_count > 0) {
        const char *last = node->children[node->child_count - 1];
        for (size_t i = 0; i < e->node_count; i++) {
            if (strcmp(e->nodes[i]->id, last) == 0)
                node = e->nodes[i];
        }
    }
    char when[32];
    wf_scope_setf(scope, node->id, "%s.id", prefix);
    wf_scope_setf(scope, node->phase, "%s.status", prefix);
    wf_format_time(node->started_at, when, sizeof when);
    wf_scope_setf(scope, when, "%s.startedAt", prefix);
    if (node->finished_at > 0) {
        wf_format_time(node->finished_at, when, sizeof when);
        wf_scope_setf(scope, when, "%s.finishedAt", prefix);
    }
    const cJSON *outputs = node->outputs;
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(outputs, "result");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(outputs, "exitCode");
    if (cJSON_IsString(result))
        wf_scope_setf(scope, result->valuestring, "%s.outputs.result", prefix);
    if (cJSON_IsString(code))
        wf_scope_setf(scope, code->valuestring, "%s.exitCode", prefix);
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(outputs, "parameters");
    for (const cJSON *p = params != NULL ? params->child : NULL; p != NULL; p = p->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(p, "name");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(p, "value");
        if (cJSON_IsString(name) && cJSON_IsString(value))
            wf_scope_setf(scope, value->valuestring, "%s.outputs.parameters.%s", prefix,
                          name->valuestring);
    }
    wf_engine_unlock(e);
}

/* The aggregate outputs of expanded nodes, as JSON lists, as Argo's
 * processAggregateNodeOutputs builds them from the Succeeded ones. */
static void scope_add_aggregate(wf_engine *e, wf_scope *scope, const char *prefix,
                                wf_node **nodes, size_t count)
{
    cJSON *results = cJSON_CreateArray();
    cJSON *param_maps = cJSON_CreateArray();
    cJSON *by_name = cJSON_CreateObject();
    bool any_result = false;
    wf_engine_lock(e);
    for (size_t i = 0; i < count; i++) {
        const wf_node *node = nodes[i];
        if (node == NULL || node->outputs == NULL || strcmp(node->phase, "Succeeded") != 0)
            continue;
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(node->outputs, "parameters");
        if (cJSON_GetArraySize(params) > 0) {
            cJSON *map = cJSON_CreateObject();
            for (const cJSON *p = params->child; p != NULL; p = p->next) {
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(p, "name");
                const cJSON *value = cJSON_GetObjectItemCaseSensitive(p, "value");
                if (!cJSON_IsString(name) || !cJSON_IsString(value))
                    continue;
                cJSON_AddStringToObject(map, name->valuestring, value->valuestring);
                cJSON *list = cJSON_GetObjectItemCaseSensitive(by_name, name->valuestring);
                if (list == NULL)
                    list = cJSON_AddArrayToObject(by_name, name->valuestring);
                cJSON_AddItemToArray(list, cJSON_CreateString(value->valuestring));
            }
            cJSON_AddItemToArray(param_maps, map);
        }
        const cJSON *result = cJSON_GetObjectItemCaseSensitive(node->outputs, "result");
        if (cJSON_IsString(result)) {
            /* A result that is JSON joins the list as JSON, as Argo's Item. */
            cJSON *parsed = cJSON_Parse(result->valuestring);
            cJSON_AddItemToArray(results,
                                 parsed != NULL ? parsed : cJSON_CreateString(result->valuestring));
            any_result = true;
        }
    }
    wf_engine_unlock(e);
    char *text = cJSON_PrintUnformatted(results);
    if (text != NULL && (any_result || count > 0))
        wf_scope_setf(scope, text, "%s.outputs.result", prefix);
    free(text);
    text = cJSON_PrintUnformatted(param_maps);
    if (text != NULL)
        wf_scope_setf(scope, text, "%s.outputs.parameters", prefix);
    free(text);
    for (const cJSON *list = by_name->child; list != NULL; list = list->next) {
        text = cJSON_PrintUnformatted(list);
        if (text != NULL)
            wf_scope_setf(scope, text, "%s.outputs.parameters.%s", prefix, list->string);
        free(text);
    }
    cJSON_Delete(results);
    cJSON_Delete(param_maps);
    cJSON_Delete(by_name);
}

/* Outputs of a steps or dag template, resolved in its SCOPE. */
static int template_outputs(const wf_template *t, const wf_scope *scope, cJSON **out)
{
    *out = NULL;
    if (t->output_count == 0)
        return 0;
    cJSON *outputs = cJSON_CreateObject();
    cJSON *params = cJSON_AddArrayToObject(outputs, "parameters");
    *out = outputs;
    for (size_t i = 0; i < t->output_count; i++) {
        const wf_param *p = &t->outputs[i];
        const char *source = p->from_parameter != NULL ? p->from_parameter : p->value;
        char *value = NULL;
        if (wf_substitute(source, scope, NULL, false, &value) != 0) {
            if (p->from_default == NULL)
                return dm_fail("output parameter %s: %s", p->name, dm_error());
            value = strdup(p->from_default);
        }
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "name", p->name);
        cJSON_AddStringToObject(item, "value", value != NULL ? value : "");
        if (p->from_parameter != NULL) {
            cJSON *from = cJSON_AddObjectToObject(item, "valueFrom");
            cJSON_AddStringToObject(from, "parameter", p->from_parameter);
        }
        cJSON_AddItemToArray(params, item);
        free(value);
    }
    return 0;
}

/* A Skipped or Error node for a step that did not run. */
static wf_node *settle_step(wf_engine *e, const char *name, const char *display,
                            const wf_step *step, const char *boundary_id, const char *parent_id,
                            bool link, const char *phase, const char *message)
{
    wf_node *node = wf_node_create(e, name, display, "Skipped", step->template_name, boundary_id,
                                   parent_id, link, phase);
    if (node != NULL)
        wf_node_finish(e, node, phase, message);
    return node;
}

/* Check STEP's `when` in SCOPE. Returns 1 to run, 0 to skip (MESSAGE
 * gets the reason), -1 on an error. */
static int step_should_run(const wf_step *step, const wf_scope *scope, char *message,
                           size_t capacity)
{
    if (step->when == NULL)
        return 1;
    char *when = NULL;
    bool proceed = false;
    if (wf_substitute(step->when, scope, NULL, false, &when) != 0)
        return -1;
    int rc = wf_when_evaluate(when, &proceed);
    if (rc == 0 && !proceed)
        snprintf(message, capacity, "when '%s' evaluated false", when);
    free(when);
    if (rc != 0)
        return -1;
    return proceed ? 1 : 0;
}

/* ---- steps ---- */

typedef struct {
    child_job *items;
    size_t count;
    size_t capacity;
} job_list;

static child_job *job_list_add(job_list *list)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 8;
        child_job *items = realloc(list->items, capacity * sizeof *items);
        if (items == NULL)
            return NULL;
        list->items = items;
        list->capacity = capacity;
    }
    child_job *job = &list->items[list->count++];
    memset(job, 0, sizeof *job);
    return job;
}

static void job_list_join(job_list *list)
{
    for (size_t i = 0; i < list->count; i++) {
        if (list->items[i].started)
            pthread_join(list->items[i].thread, NULL);
    }
}

static void job_list_free(job_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        job_free(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

/* One step of a group: expand it, check `when`, and start a job per
 * item. FAILED gets a message when the group errs. */
static int start_step(wf_engine *e, const wf_step *step, wf_node *group, wf_node *steps_node,
                      wf_scope *scope, wf_slots *slots, double deadline, job_list *jobs,
                      char *failed, size_t failed_capacity)
{
    char name[2048], display[1024], message[1024];
    snprintf(name, sizeof name, "%s.%s", group->name, step->name);
    cJSON *items = NULL;
    if (expand_items(step, scope, &items) != 0) {
        snprintf(failed, failed_capacity, "%s", dm_error());
        settle_step(e, name, step->name, step, steps_node->id, group->id, true, "Error", failed);
        return -1;
    }
    size_t count = items != NULL ? (size_t)cJSON_GetArraySize(items) : 1;
    if (items != NULL && count == 0) {
        settle_step(e, name, step->name, step, steps_node->id, group->id, true, "Skipped",
                    "Skipped, empty params");
        cJSON_Delete(items);
        return 0;
    }
    for (size_t i = 0; i < count; i++) {
        wf_scope item_scope;
        wf_scope_init(&item_scope, scope);
        snprintf(name, sizeof name, "%s.%s", group->name, step->name);
        snprintf(display, sizeof display, "%s", step->name);
        if (items != NULL) {
            char description[512];
            item_bind(cJSON_GetArrayItem(items, (int)i), &item_scope, description,
                      sizeof description);
            snprintf(name, sizeof name, "%s.%s(%zu:%s)", group->name, step->name, i, description);
            snprintf(display, sizeof display, "%s(%zu:%s)", step->name, i, description);
        }
        int run = step_should_run(step, &item_scope, message, sizeof message);
        if (run < 0) {
            snprintf(failed, failed_capacity, "%s", dm_error());
            settle_step(e, name, display, step, steps_node->id, group->id, true, "Error", failed);
            wf_scope_free(&item_scope);
            cJSON_Delete(items);
            return -1;
        }
        if (run == 0) {
            settle_step(e, name, display, step, steps_node->id, group->id, true, "Skipped", message);
            wf_scope_free(&item_scope);
            continue;
        }
        child_job *job = job_list_add(jobs);
        int rc = job != NULL ? job_prepare(e, job, step, &item_scope, name, display,
                                           steps_node->id, group->id, true, slots, deadline)
                             : dm_fail("out of memory");
        wf_scope_free(&item_scope);
        if (rc == 0)
            rc = job_start(job);
        if (rc != 0) {
            snprintf(failed, failed_capacity, "%s", dm_error());
            settle_step(e, name, display, step, steps_node->id, group->id, true, "Error", failed);
            cJSON_Delete(items);
            return -1;
        }
    }
    cJSON_Delete(items);
    return 0;
}

/* Link GROUP as a child of the outbound nodes of PREVIOUS's children. */
static void link_group(wf_engine *e, wf_node *previous, wf_node *group)
{
    wf_engine_lock(e);
    size_t child_count = previous->child_count;
    char **children = calloc(child_count + 1, sizeof *children);
    for (size_t i = 0; children != NULL && i < child_count; i++)
        children[i] = strdup(previous->children[i]);
    wf_engine_unlock(e);
    if (children == NULL)
        return;
    if (child_count == 0)
        wf_node_add_child(e, previous, group->id);
    for (size_t i = 0; i < child_count; i++) {
        size_t n = 0;
        char **outbound = wf_node_outbound_of(e, children[i], &n);
        for (size_t k = 0; k < n; k++) {
            wf_node *out = wf_node_find(e, outbound[k]);
            if (out != NULL)
                wf_node_add_child(e, out, group->id);
        }
        wf_free_strings(outbound, n);
    }
    wf_free_strings(children, child_count);
}

/* Set NODE's outboundNodes from the outbound nodes of GROUP's children. */
static void set_outbound_from(wf_engine *e, wf_node *node, char **ids, size_t id_count)
{
    char **all = NULL;
    size_t all_count = 0;
    for (size_t i = 0; i < id_count; i++) {
        size_t n = 0;
        char **outbound = wf_node_outbound_of(e, ids[i], &n);
        char **grown = realloc(all, (all_count + n + 1) * sizeof *all);
        if (grown != NULL) {
            all = grown;
            for (size_t k = 0; k < n; k++)
                all[all_count++] = outbound[k];
            free(outbound);
        } else {
            wf_free_strings(outbound, n);
        }
    }
    wf_node_set_outbound(e, node, all, all_count);
    wf_free_strings(all, all_count);
}

static char **copy_children(wf_engine *e, wf_node *node, size_t *count)
{
    wf_engine_lock(e);
    *count = node->child_count;
    char **ids = calloc(*count + 1, sizeof *ids);
    for (size_t i = 0; ids != NULL && i < *count; i++)
        ids[i] = strdup(node->children[i]);
    wf_engine_unlock(e);
    if (ids == NULL)
        *count = 0;
    return ids;
}

static void run_steps(wf_engine *e, const wf_invocation *inv, wf_node *node, wf_scope *inputs,
                      double deadline)
{
    const wf_template *t = inv->tmpl;
    wf_scope scope;
    wf_scope_init(&scope, inputs);
    wf_slots slots;
    wf_slots_init(&slots, t->parallelism);
    wf_slots *limit = t->parallelism > 0 ? &slots : NULL;
    wf_node *previous = NULL;
    const char *phase = "Succeeded";
    char message[1024] = "";

    for (size_t g = 0; g < t->group_count; g++) {
        const wf_step_group *group_spec = &t->groups[g];
        char group_name[2048], group_display[32];
        snprintf(group_name, sizeof group_name, "%s[%zu]", node->name, g);
        snprintf(group_display, sizeof group_display, "[%zu]", g);
        if (wf_engine_stopping(e, deadline)) {
            phase = "Failed";
            snprintf(message, sizeof message, "%s", wf_engine_stop_message(e, deadline));
            break;
        }
        wf_node *group = wf_node_create(e, group_name, group_display, "StepGroup", NULL, node->id,
                                        node->id, g == 0, "Running");
        if (group == NULL) {
            phase = "Error";
            snprintf(message, sizeof message, "%s", dm_error());
            break;
        }
        if (previous != NULL)
            link_group(e, previous, group);

        job_list jobs = {0};
        char failed[1024] = "";
        bool errored = false;
        for (size_t s = 0; s < group_spec->count && !errored; s++)
            errored = start_step(e, &group_spec->steps[s], group, node, &scope, limit, deadline,
                                 &jobs, failed, sizeof failed) != 0;
        job_list_join(&jobs);

        /* The group fails on the first child that failed and does not
         * continue on failure. */
        const char *group_phase = errored ? "Error" : "Succeeded";
        char group_message[1024] = "";
        if (errored)
            snprintf(group_message, sizeof group_message, "%s", failed);
        size_t child_count = 0;
        char **children = copy_children(e, group, &child_count);
        for (size_t c = 0; !errored && c < child_count; c++) {
            wf_node *child = wf_node_find(e, children[c]);
            if (child == NULL || !wf_phase_failed(child->phase))
                continue;
            const wf_step *step = NULL;
            for (size_t j = 0; j < jobs.count; j++) {
                if (jobs.items[j].result == child)
                    step = jobs.items[j].step;
            }
            bool continues = step != NULL && ((strcmp(child->phase, "Failed") == 0 &&
                                               step->continue_on_failed) ||
                                              (strcmp(child->phase, "Error") == 0 &&
                                               step->continue_on_error));
            if (!continues) {
                group_phase = "Failed";
                snprintf(group_message, sizeof group_message, "child '%s' failed", child->id);
                break;
            }
        }
        wf_free_strings(children, child_count);

        /* Outputs of the group's steps, aggregated for expanded ones. */
        for (size_t s = 0; s < group_spec->count; s++) {
            const wf_step *step = &group_spec->steps[s];
            char prefix[1024];
            snprintf(prefix, sizeof prefix, "steps.%s", step->name);
            wf_node **expanded = calloc(jobs.count + 1, sizeof *expanded);
            size_t n = 0;
            bool plain = step->with_items == NULL && step->with_param == NULL;
            for (size_t j = 0; expanded != NULL && j < jobs.count; j++) {
                if (jobs.items[j].step == step && jobs.items[j].result != NULL)
                    expanded[n++] = jobs.items[j].result;
            }
            if (plain && n == 1) {
                scope_add_node(e, &scope, prefix, expanded[0]);
            } else if (plain) {
                char skipped_id[256], skipped_name[2048];
                snprintf(skipped_name, sizeof skipped_name, "%s.%s", group_name, step->name);
                wf_node_id(e->name, skipped_name, skipped_id, sizeof skipped_id);
                wf_node *skipped = wf_node_find(e, skipped_id);
                if (skipped != NULL)
                    scope_add_node(e, &scope, prefix, skipped);
            } else {
                scope_add_aggregate(e, &scope, prefix, expanded, n);
            }
            free(expanded);
        }
        job_list_free(&jobs);
        wf_node_finish(e, group, group_phase, group_message[0] ? group_message : NULL);
        previous = group;
        if (strcmp(group_phase, "Succeeded") != 0) {
            phase = "Failed";
            snprintf(message, sizeof message, "%s", group_message);
            break;
        }
    }
    if (previous != NULL) {
        size_t count = 0;
        char **ids = copy_children(e, previous, &count);
        set_outbound_from(e, node, ids, count);
        wf_free_strings(ids, count);
    }
    if (strcmp(phase, "Succeeded") == 0) {
        cJSON *outputs = NULL;
        if (template_outputs(t, &scope, &outputs) != 0) {
            phase = "Error";
            snprintf(message, sizeof message, "%s", dm_error());
        }
        wf_node_set_outputs(e, node, outputs);
    }
    wf_node_finish(e, node, phase, message[0] ? message : NULL);
    wf_slots_destroy(&slots);
    wf_scope_free(&scope);
}

/* ---- dag ---- */

typedef enum { TASK_WAITING, TASK_RUNNING, TASK_DONE, TASK_UNREACHABLE } task_state;

typedef struct {
    wf_engine *e;
    const wf_step *task;
    wf_node *dag_node;
    wf_scope *scope; /* the DAG's; read only while the task starts */
    wf_slots *slots;
    double deadline;
    job_list jobs;      /* one job, or one per item under a TaskGroup */
    wf_node *node;      /* the task's node once done */
    bool expanded;
    cJSON *items;
    pthread_t thread;
    bool started;
    pthread_mutex_t *done_lock;
    pthread_cond_t *done_cond;
    bool done;
} dag_task;

/* Run an expanded task: a TaskGroup node whose children are the items. */
static void *task_group_main(void *arg)
{
    dag_task *dt = arg;
    wf_engine *e = dt->e;
    char name[2048];
    snprintf(name, sizeof name, "%s.%s", dt->dag_node->name, dt->task->name);
    wf_node *group = wf_node_create(e, name, dt->task->name, "TaskGroup", dt->task->template_name,
                                    dt->dag_node->id, dt->dag_node->id, false, "Running");
    const char *phase = "Succeeded";
    char message[1024] = "";
    for (size_t i = 0; group != NULL && i < dt->jobs.count; i++) {
        dt->jobs.items[i].inv.parent_id = group->id;
        if (job_start(&dt->jobs.items[i]) != 0) {
            phase = "Error";
            snprintf(message, sizeof message, "%s", dm_error());
            break;
        }
    }
    job_list_join(&dt->jobs);
    for (size_t i = 0; group != NULL && i < dt->jobs.count && strcmp(phase, "Succeeded") == 0;
         i++) {
        wf_node *child = dt->jobs.items[i].result;
        if (child != NULL && wf_phase_failed(child->phase)) {
            phase = "Failed";
            snprintf(message, sizeof message, "child '%s' failed", child->id);
        }
    }
    if (group != NULL)
        wf_node_finish(e, group, phase, message[0] ? message : NULL);
    pthread_mutex_lock(dt->done_lock);
    dt->node = group;
    dt->done = true;
    pthread_cond_broadcast(dt->done_cond);
    pthread_mutex_unlock(dt->done_lock);
    return NULL;
}

static void *task_main(void *arg)
{
    dag_task *dt = arg;
    wf_node *node = wf_execute_template(dt->e, &dt->jobs.items[0].inv);
    pthread_mutex_lock(dt->done_lock);
    dt->node = node;
    dt->done = true;
    pthread_cond_broadcast(dt->done_cond);
    pthread_mutex_unlock(dt->done_lock);
    return NULL;
}

/* Whether a finished dependency lets dependents run: it Succeeded or was
 * Skipped, or it failed with continueOn for that phase. */
static bool dependency_ok(const dag_task *dep)
{
    if (dep->node == NULL)
        return false;
    const char *phase = dep->node->phase;
    if (!wf_phase_failed(phase))
        return true;
    if (strcmp(phase, "Failed") == 0)
        return dep->task->continue_on_failed;
    return dep->task->continue_on_error;
}

/* Link the task's node under the DAG or its dependencies' outbound nodes. */
static void link_task(wf_engine *e, dag_task *tasks, size_t count, size_t index, const char *id)
{
    const wf_step *task = tasks[index].task;
    if (task->dependency_count == 0) {
        wf_node_add_child(e, tasks[index].dag_node, id);
        return;
    }
    for (size_t d = 0; d < task->dependency_count; d++) {
        for (size_t j = 0; j < count; j++) {
            if (strcmp(tasks[j].task->name, task->dependencies[d]) != 0 || tasks[j].node == NULL)
                continue;
            size_t n = 0;
            char **outbound = wf_node_outbound_of(e, tasks[j].node->id, &n);
            for (size_t k = 0; k < n; k++) {
                wf_node *out = wf_node_find(e, outbound[k]);
                if (out != NULL)
                    wf_node_add_child(e, out, id);
            }
            wf_free_strings(outbound, n);
        }
    }
}

/* Start task INDEX: `when`, expansion, then its thread. Returns 0 when it
 * is running or settled (Skipped), -1 when it errs (its node is Error). */
static int start_task(wf_engine *e, dag_task *tasks, size_t count, size_t index)
{
    dag_task *dt = &tasks[index];
    const wf_step *task = dt->task;
    char name[2048], display[1024], message[1024];
    snprintf(name, sizeof name, "%s.%s", dt->dag_node->name, task->name);
    char id[256];
    wf_node_id(e->name, name, id, sizeof id);
    cJSON *items = NULL;
    int run = expand_items(task, dt->scope, &items) == 0 ? 1 : -1;
    if (run > 0 && items == NULL)
        run = step_should_run(task, dt->scope, message, sizeof message);
    if (run <= 0) {
        link_task(e, tasks, count, index, id);
        dt->node = settle_step(e, name, task->name, task, dt->dag_node->id,
                               dt->dag_node->id, false, run < 0 ? "Error" : "Skipped", run < 0 ? dm_error() : message);
        cJSON_Delete(items);
        dt->done = true;
        return run < 0 ? -1 : 0;
    }
    link_task(e, tasks, count, index, id);
    if (items == NULL) {
        child_job *job = job_list_add(&dt->jobs);
        if (job == NULL || job_prepare(e, job, task, dt->scope, name, task->name,
                                       dt->dag_node->id, dt->dag_node->id, false, dt->slots,
                                       dt->deadline) != 0) {
            dt->node = settle_step(e, name, task->name, task, dt->dag_node->id, dt->dag_node->id,
                                   false, "Error", dm_error());
            dt->done = true;
            return -1;
        }
    } else {
        dt->expanded = true;
        size_t n = (size_t)cJSON_GetArraySize(items);
        for (size_t i = 0; i < n; i++) {
            wf_scope item_scope;
            wf_scope_init(&item_scope, dt->scope);
            char description[512];
            item_bind(cJSON_GetArrayItem(items, (int)i), &item_scope, description,
                      sizeof description);
            snprintf(name, sizeof name, "%s.%s(%zu:%s)", dt->dag_node->name, task->name, i,
                     description);
            snprintf(display, sizeof display, "%s(%zu:%s)", task->name, i, description);
            int skip = step_should_run(task, &item_scope, message, sizeof message);
            child_job *job = skip > 0 ? job_list_add(&dt->jobs) : NULL;
            int rc = skip < 0 ? -1 : 0;
            if (job != NULL)
                rc = job_prepare(e, job, task, &item_scope, name, display, dt->dag_node->id,
                                 "", true, dt->slots, dt->deadline);
            wf_scope_free(&item_scope);
            if (rc != 0) {
                cJSON_Delete(items);
                dt->node = settle_step(e, name, display, task, dt->dag_node->id,
                                       dt->dag_node->id, false, "Error", dm_error());
                dt->done = true;
                return -1;
            }
        }
        cJSON_Delete(items);
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, FLOW_STACK_BYTES);
    int rc = pthread_create(&dt->thread, &attr, dt->expanded ? task_group_main : task_main, dt);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        dt->node = settle_step(e, name, task->name, task, dt->dag_node->id, dt->dag_node->id,
                               false, "Error", "cannot start a thread");
        dt->done = true;
        return -1;
    }
    dt->started = true;
    return 0;
}

static void run_dag(wf_engine *e, const wf_invocation *inv, wf_node *node, wf_scope *inputs,
                    double deadline)
{
    const wf_template *t = inv->tmpl;
    const size_t count = t->task_count;
    wf_scope scope;
    wf_scope_init(&scope, inputs);
    wf_slots slots;
    wf_slots_init(&slots, t->parallelism);
    pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
    dag_task *tasks = calloc(count, sizeof *tasks);
    task_state *state = calloc(count, sizeof *state);
    const char *phase = "Succeeded";
    char message[1024] = "";
    bool failed = false;

    if (tasks == NULL || state == NULL) {
        wf_node_finish(e, node, "Error", "out of memory");
        free(tasks);
        free(state);
        wf_scope_free(&scope);
        wf_slots_destroy(&slots);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        tasks[i].e = e;
        tasks[i].task = &t->tasks[i];
        tasks[i].dag_node = node;
        tasks[i].scope = &scope;
        tasks[i].slots = t->parallelism > 0 ? &slots : NULL;
        tasks[i].deadline = deadline;
        tasks[i].done_lock = &done_lock;
        tasks[i].done_cond = &done_cond;
    }
    for (;;) {
        /* Start every task whose dependencies are done. */
        bool progressed = true;
        while (progressed) {
            progressed = false;
            for (size_t i = 0; i < count; i++) {
                if (state[i] != TASK_WAITING)
                    continue;
                bool ready = true, blocked = false;
                for (size_t d = 0; d < t->tasks[i].dependency_count; d++) {
                    for (size_t j = 0; j < count; j++) {
                        if (strcmp(t->tasks[j].name, t->tasks[i].dependencies[d]) != 0)
                            continue;
                        if (state[j] == TASK_UNREACHABLE)
                            blocked = true;
                        else if (state[j] != TASK_DONE)
                            ready = false;
                        else if (!dependency_ok(&tasks[j]))
                            blocked = true;
                    }
                }
                if (blocked || ((failed && t->fail_fast) && ready) ||
                    (ready && wf_engine_stopping(e, deadline))) {
                    state[i] = TASK_UNREACHABLE;
                    progressed = true;
                    continue;
                }
                if (!ready)
                    continue;
                state[i] = TASK_RUNNING;
                progressed = true;
                if (start_task(e, tasks, count, i) != 0)
                    failed = true;
                if (tasks[i].done && !tasks[i].started)
                    state[i] = TASK_DONE;
            }
        }
        /* Wait for a running task to finish. */
        bool running = false;
        for (size_t i = 0; i < count; i++)
            running = running || state[i] == TASK_RUNNING;
        if (!running)
            break;
        pthread_mutex_lock(&done_lock);
        bool finished = false;
        while (!finished) {
            for (size_t i = 0; i < count; i++)
                finished = finished || (state[i] == TASK_RUNNING && tasks[i].done);
            if (!finished)
                pthread_cond_wait(&done_cond, &done_lock);
        }
        pthread_mutex_unlock(&done_lock);
        for (size_t i = 0; i < count; i++) {
            if (state[i] != TASK_RUNNING || !tasks[i].done)
                continue;
            if (tasks[i].started)
                pthread_join(tasks[i].thread, NULL);
            state[i] = TASK_DONE;
            char prefix[1024];
            snprintf(prefix, sizeof prefix, "tasks.%s", t->tasks[i].name);
            if (tasks[i].expanded) {
                wf_node **nodes = calloc(tasks[i].jobs.count + 1, sizeof *nodes);
                for (size_t j = 0; nodes != NULL && j < tasks[i].jobs.count; j++)
                    nodes[j] = tasks[i].jobs.items[j].result;
                scope_add_aggregate(e, &scope, prefix, nodes, tasks[i].jobs.count);
                free(nodes);
            } else if (tasks[i].node != NULL) {
                scope_add_node(e, &scope, prefix, tasks[i].node);
            }
            if (!dependency_ok(&tasks[i]))
                failed = true;
        }
    }
    /* The phase: Failed when a task failed without continueOn or could
     * not run because of a failure. */
    for (size_t i = 0; i < count && strcmp(phase, "Succeeded") == 0; i++) {
        if (state[i] == TASK_DONE && !dependency_ok(&tasks[i])) {
            phase = "Failed";
            snprintf(message, sizeof message, "child '%s' failed",
                     tasks[i].node != NULL ? tasks[i].node->id : t->tasks[i].name);
        } else if (state[i] == TASK_UNREACHABLE) {
            phase = "Failed";
            snprintf(message, sizeof message, "%s",
                     wf_engine_stopping(e, deadline) ? wf_engine_stop_message(e, deadline)
                                                     : "a dependency failed");
        }
    }
    /* Outbound nodes: those of the tasks that no other task depends on. */
    char **leaves = calloc(count + 1, sizeof *leaves);
    size_t leaf_count = 0;
    for (size_t i = 0; leaves != NULL && i < count; i++) {
        bool depended = false;
        for (size_t j = 0; j < count; j++) {
            for (size_t d = 0; d < t->tasks[j].dependency_count; d++)
                depended = depended || strcmp(t->tasks[j].dependencies[d], t->tasks[i].name) == 0;
        }
        if (!depended && tasks[i].node != NULL)
            leaves[leaf_count++] = strdup(tasks[i].node->id);
    }
    set_outbound_from(e, node, leaves, leaf_count);
    wf_free_strings(leaves, leaf_count);
    if (strcmp(phase, "Succeeded") == 0) {
        cJSON *outputs = NULL;
        if (template_outputs(t, &scope, &outputs) != 0) {
            phase = "Error";
            snprintf(message, sizeof message, "%s", dm_error());
        }
        wf_node_set_outputs(e, node, outputs);
    }
    wf_node_finish(e, node, phase, message[0] ? message : NULL);
    for (size_t i = 0; i < count; i++)
        job_list_free(&tasks[i].jobs);
    free(tasks);
    free(state);
    pthread_mutex_destroy(&done_lock);
    pthread_cond_destroy(&done_cond);
    wf_slots_destroy(&slots);
    wf_scope_free(&scope);
}

/* ---- one attempt and retries ---- */

/* Run the template's body as node NAME (a retry attempt when RETRY >= 0). */
static wf_node *run_body(wf_engine *e, const wf_invocation *inv, wf_scope *scope, cJSON *inputs,
                         const memo_plan *memo, int retry)
{
    const wf_template *t = inv->tmpl;
    double deadline = inv->deadline;
    if (t->active_deadline_seconds != NULL && t->type != WF_TEMPLATE_CONTAINER &&
        t->type != WF_TEMPLATE_SCRIPT) {
        char *text = NULL;
        if (wf_substitute(t->active_deadline_seconds, scope, NULL, false, &text) == 0) {
            double own = dm_monotonic_seconds() + strtod(text, NULL);
            deadline = deadline > 0 && deadline < own ? deadline : own;
        }
        free(text);
    }
    wf_node *node = NULL;
    switch (t->type) {
    case WF_TEMPLATE_CONTAINER:
    case WF_TEMPLATE_SCRIPT:
    case WF_TEMPLATE_RESOURCE: {
        wf_invocation pod = *inv;
        pod.deadline = deadline;
        node = t->type == WF_TEMPLATE_RESOURCE ? wf_resource_execute(e, &pod, scope, retry)
                                               : wf_pod_execute(e, &pod, scope, retry);
        if (node != NULL && inputs != NULL)
            wf_node_set_inputs(e, node, cJSON_Duplicate(inputs, 1));
        if (node != NULL && memo != NULL && memo->enabled)
            wf_node_set_memo(e, node, false, memo->key, memo->cache);
        return node;
    }
    case WF_TEMPLATE_STEPS:
    case WF_TEMPLATE_DAG:
        node = wf_node_create(e, inv->node_name, inv->display_name, node_type_of(t), t->name,
                              inv->boundary_id, inv->parent_id, inv->link_parent, "Running");
        if (node == NULL)
            return NULL;
        if (inputs != NULL)
            wf_node_set_inputs(e, node, cJSON_Duplicate(inputs, 1));
        if (memo != NULL && memo->enabled)
            wf_node_set_memo(e, node, false, memo->key, memo->cache);
        if (t->type == WF_TEMPLATE_STEPS)
            run_steps(e, inv, node, scope, deadline);
        else
            run_dag(e, inv, node, scope, deadline);
        return node;
    }
    return NULL;
}

/* Humanized seconds for "Backoff for ...": "1 second", "2 minutes 5 seconds". */
static void humanize(double seconds, char *out, size_t capacity)
{
    long total = (long)llround(seconds);
    long minutes = total / 60, rest = total % 60;
    if (minutes == 0)
        snprintf(out, capacity, "%ld second%s", rest, rest == 1 ? "" : "s");
    else if (rest == 0)
        snprintf(out, capacity, "%ld minute%s", minutes, minutes == 1 ? "" : "s");
    else
        snprintf(out, capacity, "%ld minute%s %ld second%s", minutes, minutes == 1 ? "" : "s",
                 rest, rest == 1 ? "" : "s");
}

/* Whether POLICY retries an attempt that ended in PHASE with MESSAGE. */
static bool policy_retries(const char *policy, const char *phase, const char *message)
{
    bool failed = strcmp(phase, "Failed") == 0, errored = strcmp(phase, "Error") == 0;
    if (policy == NULL || strcmp(policy, "OnFailure") == 0)
        return failed;
    if (strcmp(policy, "Always") == 0)
        return failed || errored;
    if (strcmp(policy, "OnError") == 0)
        return errored;
    /* OnTransientError: errors whose message matches the pattern in
     * TRANSIENT_ERROR_PATTERN, as Argo's controller reads it. */
    const char *pattern = getenv("TRANSIENT_ERROR_PATTERN");
    if (!errored || pattern == NULL || pattern[0] == '\0' || message == NULL)
        return false;
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
        return false;
    bool matched = regexec(&re, message, 0, NULL, 0) == 0;
    regfree(&re);
    return matched;
}

static wf_node *run_retries(wf_engine *e, const wf_invocation *inv, wf_scope *scope,
                            cJSON *inputs, const memo_plan *memo)
{
    const wf_template *t = inv->tmpl;
    const wf_retry *r = t->retry;
    wf_node *node = wf_node_create(e, inv->node_name, inv->display_name, "Retry", t->name,
                                   inv->boundary_id, inv->parent_id, inv->link_parent, "Running");
    if (node == NULL)
        return NULL;
    if (inputs != NULL)
        wf_node_set_inputs(e, node, cJSON_Duplicate(inputs, 1));
    if (memo->enabled)
        wf_node_set_memo(e, node, false, memo->key, memo->cache);

    long long limit = 0;
    double duration = 0, max_duration = -1;
    long long factor = 1;
    char *text = NULL;
    const char *fields[] = {r->limit, r->backoff_duration, r->backoff_factor,
                            r->backoff_max_duration};
    for (int i = 0; i < 4; i++) {
        if (fields[i] == NULL)
            continue;
        if (wf_substitute(fields[i], scope, NULL, false, &text) != 0) {
            wf_node_finish(e, node, "Error", dm_error());
            return node;
        }
        int rc = 0;
        if (i == 0)
            limit = strtoll(text, NULL, 10);
        else if (i == 1)
            rc = wf_duration_parse_seconds(text, &duration);
        else if (i == 2)
            factor = strtoll(text, NULL, 10);
        else
            rc = wf_duration_parse_seconds(text, &max_duration);
        free(text);
        text = NULL;
        if (rc != 0) {
            wf_node_finish(e, node, "Error", dm_error());
            return node;
        }
    }
    const double first_start = dm_monotonic_seconds();
    wf_node *last = NULL;
    const char *message = NULL;
    char buffer[256];
    for (long long attempt = 0; attempt <= limit; attempt++) {
        char name[2048], display[1024];
        snprintf(name, sizeof name, "%s(%lld)", inv->node_name, attempt);
        snprintf(display, sizeof display, "%s(%lld)", inv->display_name, attempt);
        wf_invocation child = *inv;
        child.node_name = name;
        child.display_name = display;
        child.parent_id = node->id;
        child.link_parent = true;
        last = run_body(e, &child, scope, inputs, NULL, (int)attempt);
        if (last == NULL || !wf_phase_failed(last->phase) || wf_engine_stopping(e, inv->deadline))
            break;
        if (!policy_retries(r->policy, last->phase, last->message)) {
            message = last->message;
            break;
        }
        if (attempt == limit) {
            message = "No more retries left";
            break;
        }
        double wait = duration * pow((double)(factor > 0 ? factor : 1), (double)attempt);
        double elapsed = dm_monotonic_seconds() - first_start;
        if (max_duration >= 0 && elapsed > max_duration) {
            message = "Max duration limit exceeded";
            break;
        }
        if (max_duration >= 0 && elapsed + wait > max_duration) {
            message = "Backoff would exceed max duration limit";
            break;
        }
        if (wait > 0) {
            char human[64];
            humanize(wait, human, sizeof human);
            snprintf(buffer, sizeof buffer, "Backoff for %s", human);
            wf_node_set_message(e, node, buffer);
            const double until = dm_monotonic_seconds() + wait;
            while (dm_monotonic_seconds() < until && !wf_engine_stopping(e, inv->deadline)) {
                struct timespec pause = {0, 50 * 1000 * 1000};
                nanosleep(&pause, NULL);
            }
            wf_node_set_message(e, node, NULL);
        }
    }
    if (last == NULL) {
        wf_node_finish(e, node, "Error", dm_error());
        return node;
    }
    wf_engine_lock(e);
    cJSON *outputs = last->outputs != NULL ? cJSON_Duplicate(last->outputs, 1) : NULL;
    char phase[16], last_message[1024];
    snprintf(phase, sizeof phase, "%s", last->phase);
    snprintf(last_message, sizeof last_message, "%s", last->message ? last->message : "");
    wf_engine_unlock(e);
    wf_node_set_outputs(e, node, outputs);
    if (message == NULL && wf_phase_failed(phase))
        message = last_message;
    wf_node_finish(e, node, phase, message);
    return node;
}

wf_node *wf_execute_template(wf_engine *e, const wf_invocation *inv)
{
    const wf_template *t = inv->tmpl;
    wf_scope scope;
    wf_scope_init(&scope, &e->globals);
    cJSON *inputs = NULL;
    memo_plan memo = {0};
    wf_node *node = NULL;

    if (resolve_inputs(e, inv, &scope, &inputs) != 0 || memo_prepare(t, &scope, &memo) != 0) {
        node = wf_node_create(e, inv->node_name, inv->display_name,
                              t->retry != NULL ? "Retry" : node_type_of(t), t->name,
                              inv->boundary_id, inv->parent_id, inv->link_parent, "Pending");
        if (node != NULL) {
            char message[1024];
            snprintf(message, sizeof message, "%s", dm_error());
            DM_WARN("workflow %s: node %s: %s", e->name, inv->node_name, message);
            if (inputs != NULL)
                wf_node_set_inputs(e, node, cJSON_Duplicate(inputs, 1));
            wf_node_finish(e, node, "Error", message);
        }
        goto out;
    }
    if (memo.enabled) {
        cJSON *cached = NULL;
        int hit = memo_lookup(e, &memo, &cached);
        if (hit < 0)
            DM_WARN("workflow %s: node %s: cache lookup failed, running it: %s", e->name,
                    inv->node_name, dm_error());
        if (hit > 0) {
            /* A hit is Succeeded from the start, so its start and finish
             * times are equal, and nothing runs. */
            node = wf_node_create(e, inv->node_name, inv->display_name,
                                  t->retry != NULL ? "Retry" : node_type_of(t), t->name,
                                  inv->boundary_id, inv->parent_id, inv->link_parent,
                                  "Succeeded");
            if (node != NULL) {
                if (inputs != NULL)
                    wf_node_set_inputs(e, node, cJSON_Duplicate(inputs, 1));
                wf_node_set_outputs(e, node, cached);
                wf_node_set_memo(e, node, true, memo.key, memo.cache);
                wf_node_finish(e, node, "Succeeded", NULL);
            } else {
                cJSON_Delete(cached);
            }
            goto out;
        }
    }
    node = t->retry != NULL ? run_retries(e, inv, &scope, inputs, &memo)
                            : run_body(e, inv, &scope, inputs, &memo, -1);
    if (node != NULL && memo.enabled && strcmp(node->phase, "Succeeded") == 0)
        memo_save(e, node, &memo);
out:
    cJSON_Delete(inputs);
    memo_plan_free(&memo);
    wf_scope_free(&scope);
    return node;
}
