/*
 * The Workflow validator: walks the YAML tree once, fills wf_spec and
 * rejects every field it does not support. Checks that need the whole
 * spec (template references, DAG cycles, volumes) run after the walk.
 */
#include "workflow/spec.h"

#include "base/error.h"
#include "workflow/duration.h"
#include "workflow/selector.h"
#include "workflow/spec_reader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELDS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Every string scalar is scanned for "{{=", Argo's expression tags,
 * which this runner does not evaluate. */
static int check_expression_tags(spec_reader *r, const ydoc_node *node)
{
    if (node->kind == YDOC_SCALAR) {
        if (strstr(node->value, "{{=") != NULL)
            return spec_reader_fail(r, node,
                                    "expression tags ({{=...}}) are not supported; use simple "
                                    "tags such as {{inputs.parameters.NAME}}");
        return 0;
    }
    for (size_t i = 0; i < node->count; i++) {
        size_t old = node->kind == YDOC_MAP ? spec_reader_push_key(r, node->keys[i])
                                            : spec_reader_push_index(r, i);
        int rc = check_expression_tags(r, node->items[i]);
        spec_reader_pop(r, old);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Argo's rule for template and step names. */
static bool name_valid(const char *name)
{
    if (name == NULL || name[0] == '\0' || strlen(name) > 128)
        return false;
    for (const char *p = name; *p; p++) {
        bool alnum = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9');
        if (!alnum && (p == name || (*p != '-' && *p != '_')))
            return false;
    }
    return true;
}

/* A lowercase RFC 1123 subdomain, as Kubernetes requires of object names. */
static bool object_name_valid(const char *name, size_t max)
{
    size_t n = strlen(name);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' || c == '.'))
            return false;
        if (!alnum && (i == 0 || i == n - 1))
            return false;
    }
    return true;
}

bool wf_memo_key_valid(const char *key)
{
    if (key == NULL || key[0] == '\0')
        return false;
    for (const char *p = key; *p; p++) {
        bool alnum = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9');
        if (!alnum && (p == key || *p != '-'))
            return false;
    }
    return true;
}

const char *wf_template_type_name(wf_template_type type)
{
    switch (type) {
    case WF_TEMPLATE_CONTAINER:
        return "Container";
    case WF_TEMPLATE_SCRIPT:
        return "Script";
    case WF_TEMPLATE_STEPS:
        return "Steps";
    case WF_TEMPLATE_DAG:
        return "DAG";
    case WF_TEMPLATE_RESOURCE:
        return "Resource";
    }
    return "Unknown";
}

/* ---- parameters ---- */

typedef enum { PARAM_ARGUMENT, PARAM_INPUT, PARAM_OUTPUT } param_role;

static int read_param(spec_reader *r, const ydoc_node *node, param_role role, wf_param *p)
{
    static const char *const argument_fields[] = {"name", "value", "enum", "description", NULL};
    static const char *const input_fields[] = {"name", "value", "default", "enum", "description",
                                               NULL};
    static const char *const output_fields[] = {"name", "value", "valueFrom", "description",
                                                NULL};
    const char *const *fields = role == PARAM_ARGUMENT ? argument_fields
                                : role == PARAM_INPUT  ? input_fields
                                                       : output_fields;
    if (spec_reader_check_fields(r, node, fields) != 0)
        return -1;
    if (spec_reader_string(r, node, "name", true, &p->name) != 0 ||
        spec_reader_string(r, node, "value", false, &p->value) != 0)
        return -1;
    if (role == PARAM_INPUT && spec_reader_string(r, node, "default", false, &p->default_value))
        return -1;
    if (role != PARAM_OUTPUT &&
        spec_reader_string_list(r, node, "enum", &p->enum_values, &p->enum_count) != 0)
        return -1;
    if (role == PARAM_OUTPUT) {
        const ydoc_node *from = NULL;
        if (spec_reader_map(r, node, "valueFrom", &from) != 0)
            return -1;
        if (from != NULL) {
            size_t old = spec_reader_push_key(r, "valueFrom");
            int rc = spec_reader_check_fields(r, from, FIELDS("path", "default", "parameter"));
            if (rc == 0)
                rc = spec_reader_string(r, from, "path", false, &p->path);
            if (rc == 0)
                rc = spec_reader_string(r, from, "default", false, &p->from_default);
            if (rc == 0)
                rc = spec_reader_string(r, from, "parameter", false, &p->from_parameter);
            if (rc == 0 && p->path == NULL && p->from_parameter == NULL)
                rc = spec_reader_fail(r, from, "needs path or parameter");
            if (rc == 0 && p->path != NULL && p->path[0] != '/')
                rc = spec_reader_fail(r, from, "path '%s' must be absolute", p->path);
            spec_reader_pop(r, old);
            if (rc != 0)
                return -1;
        } else if (p->value == NULL) {
            return spec_reader_fail(r, node, "output parameter '%s' needs value or valueFrom",
                                    p->name);
        }
    }
    return 0;
}

/* Read MAP[KEY].parameters (MAP[KEY] may hold only "parameters"). */
static int read_params(spec_reader *r, const ydoc_node *map, const char *key, param_role role,
                       wf_param **out, size_t *count)
{
    const ydoc_node *holder = NULL, *list = NULL;
    *out = NULL;
    *count = 0;
    if (spec_reader_map(r, map, key, &holder) != 0)
        return -1;
    if (holder == NULL)
        return 0;
    size_t old = spec_reader_push_key(r, key);
    int rc = spec_reader_check_fields(r, holder, FIELDS("parameters"));
    if (rc == 0)
        rc = spec_reader_seq(r, holder, "parameters", &list);
    if (rc == 0 && list != NULL && list->count > 0) {
        *out = dm_calloc(list->count, sizeof **out);
        rc = *out == NULL ? -1 : 0;
        size_t old_params = spec_reader_push_key(r, "parameters");
        for (size_t i = 0; rc == 0 && i < list->count; i++) {
            size_t old_item = spec_reader_push_index(r, i);
            rc = read_param(r, list->items[i], role, &(*out)[i]);
            for (size_t j = 0; rc == 0 && j < i; j++) {
                if (strcmp((*out)[j].name, (*out)[i].name) == 0)
                    rc = spec_reader_fail(r, list->items[i], "duplicate parameter '%s'",
                                          (*out)[i].name);
            }
            spec_reader_pop(r, old_item);
            *count = i + 1;
        }
        spec_reader_pop(r, old_params);
    }
    spec_reader_pop(r, old);
    return rc;
}

/* ---- container and script ---- */

static int read_container(spec_reader *r, const ydoc_node *node, bool script, wf_container *c)
{
    static const char *const container_fields[] = {"image", "command", "args", "env",
                                                   "volumeMounts", "workingDir", "name", NULL};
    static const char *const script_fields[] = {"image",        "command",    "args", "env",
                                                "volumeMounts", "workingDir", "name", "source",
                                                NULL};
    if (spec_reader_check_fields(r, node, script ? script_fields : container_fields) != 0)
        return -1;
    if (spec_reader_string(r, node, "image", true, &c->image) != 0 ||
        spec_reader_string_list(r, node, "command", &c->command, &c->command_count) != 0 ||
        spec_reader_string_list(r, node, "args", &c->args, &c->args_count) != 0 ||
        spec_reader_string(r, node, "workingDir", false, &c->working_dir) != 0)
        return -1;
    if (script && spec_reader_string(r, node, "source", true, &c->source) != 0)
        return -1;
    if (!script && c->command_count == 0 && c->args_count == 0)
        return spec_reader_fail(r, node,
                                "needs command or args: the image's entrypoint is not known "
                                "without pulling the image");
    if (script && c->command_count == 0)
        return spec_reader_fail(r, node, "script needs command, such as [sh] or [python3]");

    const ydoc_node *env = NULL, *mounts = NULL;
    if (spec_reader_seq(r, node, "env", &env) != 0 ||
        spec_reader_seq(r, node, "volumeMounts", &mounts) != 0)
        return -1;
    if (env != NULL && env->count > 0) {
        size_t old = spec_reader_push_key(r, "env");
        c->env = dm_calloc(env->count, sizeof *c->env);
        int rc = c->env == NULL ? -1 : 0;
        for (size_t i = 0; rc == 0 && i < env->count; i++) {
            size_t old_item = spec_reader_push_index(r, i);
            rc = spec_reader_check_fields(r, env->items[i], FIELDS("name", "value"));
            if (rc == 0)
                rc = spec_reader_string(r, env->items[i], "name", true, &c->env[i].name);
            if (rc == 0)
                rc = spec_reader_string(r, env->items[i], "value", false, &c->env[i].value);
            if (rc == 0 && c->env[i].value == NULL)
                c->env[i].value = "";
            spec_reader_pop(r, old_item);
            c->env_count = i + 1;
        }
        spec_reader_pop(r, old);
        if (rc != 0)
            return -1;
    }
    if (mounts != NULL && mounts->count > 0) {
        size_t old = spec_reader_push_key(r, "volumeMounts");
        c->mounts = dm_calloc(mounts->count, sizeof *c->mounts);
        int rc = c->mounts == NULL ? -1 : 0;
        for (size_t i = 0; rc == 0 && i < mounts->count; i++) {
            const ydoc_node *m = mounts->items[i];
            wf_volume_mount *vm = &c->mounts[i];
            size_t old_item = spec_reader_push_index(r, i);
            rc = spec_reader_check_fields(r, m, FIELDS("name", "mountPath", "readOnly", "subPath"));
            if (rc == 0)
                rc = spec_reader_string(r, m, "name", true, &vm->name);
            if (rc == 0)
                rc = spec_reader_string(r, m, "mountPath", true, &vm->mount_path);
            if (rc == 0)
                rc = spec_reader_string(r, m, "subPath", false, &vm->sub_path);
            if (rc == 0)
                rc = spec_reader_bool(r, m, "readOnly", &vm->read_only);
            if (rc == 0 && vm->mount_path[0] != '/')
                rc = spec_reader_fail(r, m, "mountPath '%s' must be absolute", vm->mount_path);
            if (rc == 0 && vm->sub_path != NULL &&
                (vm->sub_path[0] == '/' || strstr(vm->sub_path, "..") != NULL))
                rc = spec_reader_fail(r, m, "subPath '%s' must be relative, without '..'",
                                      vm->sub_path);
            spec_reader_pop(r, old_item);
            c->mount_count = i + 1;
        }
        spec_reader_pop(r, old);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ---- steps and dag ---- */

static int read_step(spec_reader *r, const ydoc_node *node, bool task, wf_step *s)
{
    static const char *const step_fields[] = {"name",      "template", "arguments", "when",
                                              "continueOn", "withItems", "withParam", NULL};
    static const char *const task_fields[] = {"name",       "template",  "arguments",
                                              "when",       "continueOn", "withItems",
                                              "withParam",  "dependencies", NULL};
    if (spec_reader_check_fields(r, node, task ? task_fields : step_fields) != 0)
        return -1;
    if (spec_reader_string(r, node, "name", true, &s->name) != 0 ||
        spec_reader_string(r, node, "template", true, &s->template_name) != 0 ||
        spec_reader_string(r, node, "when", false, &s->when) != 0 ||
        spec_reader_string(r, node, "withParam", false, &s->with_param) != 0)
        return -1;
    if (!name_valid(s->name))
        return spec_reader_fail(r, node,
                                "invalid name '%s': use letters, digits, '-' and '_', starting "
                                "with a letter or digit",
                                s->name);
    if (read_params(r, node, "arguments", PARAM_ARGUMENT, &s->arguments, &s->argument_count))
        return -1;
    const ydoc_node *items = NULL, *cont = NULL;
    if (spec_reader_seq(r, node, "withItems", &items) != 0 ||
        spec_reader_map(r, node, "continueOn", &cont) != 0)
        return -1;
    s->with_items = items;
    if (items != NULL && s->with_param != NULL)
        return spec_reader_fail(r, node, "withItems and withParam cannot both be set");
    if (cont != NULL) {
        size_t old = spec_reader_push_key(r, "continueOn");
        int rc = spec_reader_check_fields(r, cont, FIELDS("failed", "error"));
        if (rc == 0)
            rc = spec_reader_bool(r, cont, "failed", &s->continue_on_failed);
        if (rc == 0)
            rc = spec_reader_bool(r, cont, "error", &s->continue_on_error);
        spec_reader_pop(r, old);
        if (rc != 0)
            return -1;
    }
    if (task &&
        spec_reader_string_list(r, node, "dependencies", &s->dependencies, &s->dependency_count))
        return -1;
    return 0;
}

static int read_steps(spec_reader *r, const ydoc_node *seq, wf_template *t)
{
    if (seq->count == 0)
        return spec_reader_fail(r, seq, "needs at least one step group");
    t->groups = dm_calloc(seq->count, sizeof *t->groups);
    if (t->groups == NULL)
        return -1;
    t->group_count = seq->count;
    for (size_t i = 0; i < seq->count; i++) {
        const ydoc_node *group = seq->items[i];
        size_t old = spec_reader_push_index(r, i);
        if (group->kind != YDOC_SEQ) {
            int rc = spec_reader_fail(r, group,
                                      "a step group must be a list of steps (\"- - name: ...\")");
            spec_reader_pop(r, old);
            return rc;
        }
        t->groups[i].steps = dm_calloc(group->count ? group->count : 1, sizeof(wf_step));
        if (t->groups[i].steps == NULL)
            return -1;
        for (size_t j = 0; j < group->count; j++) {
            size_t old_step = spec_reader_push_index(r, j);
            int rc = read_step(r, group->items[j], false, &t->groups[i].steps[j]);
            t->groups[i].count = j + 1;
            /* Argo requires step names to be unique within the template. */
            for (size_t gi = 0; rc == 0 && gi <= i; gi++) {
                size_t n = gi == i ? j : t->groups[gi].count;
                for (size_t k = 0; rc == 0 && k < n; k++) {
                    if (strcmp(t->groups[gi].steps[k].name, t->groups[i].steps[j].name) == 0)
                        rc = spec_reader_fail(r, group->items[j], "step name '%s' is not unique",
                                              t->groups[i].steps[j].name);
                }
            }
            spec_reader_pop(r, old_step);
            if (rc != 0)
                return -1;
        }
        spec_reader_pop(r, old);
    }
    return 0;
}

static int read_dag(spec_reader *r, const ydoc_node *node, wf_template *t)
{
    const ydoc_node *tasks = NULL;
    t->fail_fast = true;
    if (spec_reader_check_fields(r, node, FIELDS("tasks", "failFast")) != 0 ||
        spec_reader_bool(r, node, "failFast", &t->fail_fast) != 0 ||
        spec_reader_seq(r, node, "tasks", &tasks) != 0)
        return -1;
    if (tasks == NULL || tasks->count == 0)
        return spec_reader_fail(r, node, "needs at least one task");
    t->tasks = dm_calloc(tasks->count, sizeof *t->tasks);
    if (t->tasks == NULL)
        return -1;
    size_t old = spec_reader_push_key(r, "tasks");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < tasks->count; i++) {
        size_t old_task = spec_reader_push_index(r, i);
        rc = read_step(r, tasks->items[i], true, &t->tasks[i]);
        t->task_count = i + 1;
        for (size_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(t->tasks[j].name, t->tasks[i].name) == 0)
                rc = spec_reader_fail(r, tasks->items[i], "task name '%s' is not unique",
                                      t->tasks[i].name);
        }
        spec_reader_pop(r, old_task);
    }
    spec_reader_pop(r, old);
    return rc;
}

/* Fail when the dependencies of T's tasks name a missing task or form a
 * cycle, found by depth-first search with three colours. */
static int check_dag(spec_reader *r, const wf_template *t, const ydoc_node *node)
{
    for (size_t i = 0; i < t->task_count; i++) {
        for (size_t d = 0; d < t->tasks[i].dependency_count; d++) {
            bool found = false;
            for (size_t j = 0; j < t->task_count; j++)
                found = found || strcmp(t->tasks[j].name, t->tasks[i].dependencies[d]) == 0;
            if (!found)
                return spec_reader_fail(r, node, "task '%s' depends on '%s', which is not a task",
                                        t->tasks[i].name, t->tasks[i].dependencies[d]);
        }
    }
    int *colour = dm_calloc(t->task_count, sizeof *colour);
    size_t *stack = dm_calloc(t->task_count + 1, sizeof *stack);
    size_t *next_dep = dm_calloc(t->task_count + 1, sizeof *next_dep);
    int rc = colour && stack && next_dep ? 0 : -1;
    for (size_t start = 0; rc == 0 && start < t->task_count; start++) {
        if (colour[start] != 0)
            continue;
        size_t depth = 0;
        stack[0] = start;
        next_dep[0] = 0;
        colour[start] = 1;
        while (rc == 0 && depth != (size_t)-1) {
            const wf_step *task = &t->tasks[stack[depth]];
            if (next_dep[depth] == task->dependency_count) {
                colour[stack[depth]] = 2;
                depth--;
                continue;
            }
            const char *dep = task->dependencies[next_dep[depth]++];
            size_t j = 0;
            while (strcmp(t->tasks[j].name, dep) != 0)
                j++;
            if (colour[j] == 1)
                rc = spec_reader_fail(r, node, "dependency cycle through tasks '%s' and '%s'",
                                      task->name, dep);
            else if (colour[j] == 0) {
                colour[j] = 1;
                depth++;
                stack[depth] = j;
                next_dep[depth] = 0;
            }
        }
    }
    free(colour);
    free(stack);
    free(next_dep);
    return rc;
}

/* ---- resource ---- */

static int read_resource(spec_reader *r, const ydoc_node *node, wf_resource *res)
{
    if (spec_reader_check_fields(r, node,
                                 FIELDS("action", "manifest", "successCondition",
                                        "failureCondition", "setOwnerReference")) != 0 ||
        spec_reader_string(r, node, "action", true, &res->action) != 0 ||
        spec_reader_string(r, node, "manifest", true, &res->manifest) != 0 ||
        spec_reader_string(r, node, "successCondition", false, &res->success_condition) != 0 ||
        spec_reader_string(r, node, "failureCondition", false, &res->failure_condition) != 0 ||
        spec_reader_bool(r, node, "setOwnerReference", &res->set_owner_reference) != 0)
        return -1;
    if (strcmp(res->action, "create") != 0) {
        size_t old = spec_reader_push_key(r, "action");
        int rc = spec_reader_fail(r, ydoc_get(node, "action"),
                                  "action '%s' is not supported by the local runner; only "
                                  "create is",
                                  res->action);
        spec_reader_pop(r, old);
        return rc;
    }
    const char *conditions[] = {res->success_condition, res->failure_condition};
    const char *names[] = {"successCondition", "failureCondition"};
    for (int i = 0; i < 2; i++) {
        if (conditions[i] == NULL || spec_has_tag(conditions[i]))
            continue;
        wf_selector *selector = NULL;
        if (wf_selector_parse(conditions[i], &selector) != 0) {
            size_t old = spec_reader_push_key(r, names[i]);
            int rc = spec_reader_fail(r, ydoc_get(node, names[i]), "%s", dm_error());
            spec_reader_pop(r, old);
            return rc;
        }
        wf_selector_free(selector);
    }
    /* The manifest is parsed again when the step runs, after substitution;
     * here its kind is checked when it contains no tags. */
    if (!spec_has_tag(res->manifest)) {
        ydoc_node *manifest = NULL;
        size_t old = spec_reader_push_key(r, "manifest");
        int rc = ydoc_parse(res->manifest, strlen(res->manifest), r->path, &manifest);
        if (rc != 0)
            rc = spec_reader_fail(r, ydoc_get(node, "manifest"), "%s", dm_error());
        const char *api = NULL, *kind = NULL;
        if (rc == 0)
            rc = spec_reader_string(r, manifest, "apiVersion", true, &api);
        if (rc == 0)
            rc = spec_reader_string(r, manifest, "kind", true, &kind);
        if (rc == 0) {
            bool kubeflow = strncmp(api, "kubeflow.org/", 13) == 0 &&
                            (strcmp(kind, "MPIJob") == 0 || strcmp(kind, "TFJob") == 0);
            bool kserve = strncmp(api, "serving.kserve.io/", 18) == 0 &&
                          strcmp(kind, "InferenceService") == 0;
            if (!kubeflow && !kserve)
                rc = spec_reader_fail(r, ydoc_get(node, "manifest"),
                                      "%s %s is not supported by the local runner; it runs "
                                      "kubeflow.org MPIJob and TFJob and serving.kserve.io "
                                      "InferenceService",
                                      api, kind);
        }
        ydoc_free(manifest);
        spec_reader_pop(r, old);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ---- memoize and retryStrategy ---- */

static int read_memoize(spec_reader *r, const ydoc_node *node, wf_memoize *m)
{
    const ydoc_node *cache = NULL, *config_map = NULL;
    if (spec_reader_check_fields(r, node, FIELDS("key", "maxAge", "cache")) != 0 ||
        spec_reader_string(r, node, "key", false, &m->key) != 0 ||
        spec_reader_string(r, node, "maxAge", false, &m->max_age) != 0 ||
        spec_reader_map(r, node, "cache", &cache) != 0)
        return -1;
    if (cache == NULL)
        return spec_reader_fail(r, node, "needs cache.configMap.name");
    size_t old = spec_reader_push_key(r, "cache");
    int rc = spec_reader_check_fields(r, cache, FIELDS("configMap"));
    if (rc == 0)
        rc = spec_reader_map(r, cache, "configMap", &config_map);
    if (rc == 0 && config_map == NULL)
        rc = spec_reader_fail(r, cache, "needs configMap.name");
    if (rc == 0) {
        size_t old_cm = spec_reader_push_key(r, "configMap");
        /* Argo v3 ignores configMap.key and stores entries under
         * memoize.key, and so does this runner. */
        rc = spec_reader_check_fields(r, config_map, FIELDS("name", "key"));
        if (rc == 0)
            rc = spec_reader_string(r, config_map, "name", true, &m->cache_name);
        if (rc == 0 && !spec_has_tag(m->cache_name) && !object_name_valid(m->cache_name, 253))
            rc = spec_reader_fail(r, config_map,
                                  "invalid cache name '%s': use lowercase letters, digits, '-' "
                                  "and '.', as for a ConfigMap",
                                  m->cache_name);
        spec_reader_pop(r, old_cm);
    }
    spec_reader_pop(r, old);
    if (rc != 0)
        return -1;
    if (m->key != NULL && !spec_has_tag(m->key) && !wf_memo_key_valid(m->key)) {
        size_t old_key = spec_reader_push_key(r, "key");
        rc = spec_reader_fail(r, ydoc_get(node, "key"),
                              "invalid cache key '%s': it must match ^[a-zA-Z0-9][-a-zA-Z0-9]*$",
                              m->key);
        spec_reader_pop(r, old_key);
        return rc;
    }
    if (m->max_age != NULL && !spec_has_tag(m->max_age)) {
        int64_t ns = 0;
        if (wf_duration_parse(m->max_age, &ns) != 0) {
            size_t old_age = spec_reader_push_key(r, "maxAge");
            rc = spec_reader_fail(r, ydoc_get(node, "maxAge"),
                                  "invalid maxAge '%s': %s (use Go duration units h, m, s, ms, "
                                  "such as 90m or 1h30m; there is no d)",
                                  m->max_age, dm_error());
            spec_reader_pop(r, old_age);
            return rc;
        }
    }
    return 0;
}

static int read_retry(spec_reader *r, const ydoc_node *node, wf_retry *retry)
{
    const ydoc_node *backoff = NULL;
    if (spec_reader_check_fields(r, node, FIELDS("limit", "retryPolicy", "backoff")) != 0 ||
        spec_reader_string(r, node, "limit", false, &retry->limit) != 0 ||
        spec_reader_string(r, node, "retryPolicy", false, &retry->policy) != 0 ||
        spec_reader_map(r, node, "backoff", &backoff) != 0)
        return -1;
    if (retry->limit != NULL && !spec_has_tag(retry->limit)) {
        int64_t limit = 0;
        if (spec_reader_int(r, node, "limit", 0, 1000000, &limit) != 0)
            return -1;
    }
    if (retry->policy != NULL) {
        static const char *const policies[] = {"Always", "OnFailure", "OnError",
                                               "OnTransientError"};
        bool known = false;
        for (size_t i = 0; i < 4; i++)
            known = known || strcmp(retry->policy, policies[i]) == 0;
        if (!known) {
            size_t old = spec_reader_push_key(r, "retryPolicy");
            int rc = spec_reader_fail(r, ydoc_get(node, "retryPolicy"),
                                      "invalid value '%s': expected Always, OnFailure, OnError or "
                                      "OnTransientError",
                                      retry->policy);
            spec_reader_pop(r, old);
            return rc;
        }
    }
    if (backoff == NULL)
        return 0;
    size_t old = spec_reader_push_key(r, "backoff");
    int rc = spec_reader_check_fields(r, backoff, FIELDS("duration", "factor", "maxDuration"));
    if (rc == 0)
        rc = spec_reader_string(r, backoff, "duration", false, &retry->backoff_duration);
    if (rc == 0)
        rc = spec_reader_string(r, backoff, "factor", false, &retry->backoff_factor);
    if (rc == 0)
        rc = spec_reader_string(r, backoff, "maxDuration", false, &retry->backoff_max_duration);
    const char *durations[] = {retry->backoff_duration, retry->backoff_max_duration};
    const char *keys[] = {"duration", "maxDuration"};
    for (int i = 0; rc == 0 && i < 2; i++) {
        double seconds = 0;
        if (durations[i] != NULL && !spec_has_tag(durations[i]) &&
            wf_duration_parse_seconds(durations[i], &seconds) != 0) {
            size_t old_key = spec_reader_push_key(r, keys[i]);
            rc = spec_reader_fail(r, ydoc_get(backoff, keys[i]), "%s", dm_error());
            spec_reader_pop(r, old_key);
        }
    }
    if (rc == 0 && retry->backoff_factor != NULL && !spec_has_tag(retry->backoff_factor)) {
        int64_t factor = 0;
        rc = spec_reader_int(r, backoff, "factor", 0, 1000, &factor);
    }
    spec_reader_pop(r, old);
    return rc;
}

/* activeDeadlineSeconds: an integer, or a tag resolved at run time. */
static int read_deadline(spec_reader *r, const ydoc_node *map, const char **out)
{
    if (spec_reader_string(r, map, "activeDeadlineSeconds", false, out) != 0)
        return -1;
    if (*out != NULL && !spec_has_tag(*out)) {
        int64_t seconds = 0;
        return spec_reader_int(r, map, "activeDeadlineSeconds", 0, 100000000, &seconds);
    }
    return 0;
}

/* ---- templates ---- */

static int read_template(spec_reader *r, const ydoc_node *node, wf_template *t)
{
    static const char *const fields[] = {
        "name",   "inputs",  "outputs",       "container",   "script",
        "steps",  "dag",     "resource",      "memoize",     "retryStrategy",
        "parallelism", "activeDeadlineSeconds", "serviceAccountName", NULL};
    static const char *const kinds[] = {"container", "script", "steps", "dag", "resource"};
    static const wf_template_type types[] = {WF_TEMPLATE_CONTAINER, WF_TEMPLATE_SCRIPT,
                                             WF_TEMPLATE_STEPS, WF_TEMPLATE_DAG,
                                             WF_TEMPLATE_RESOURCE};
    if (spec_reader_check_fields(r, node, fields) != 0 ||
        spec_reader_string(r, node, "name", true, &t->name) != 0 ||
        spec_reader_string(r, node, "serviceAccountName", false, &t->service_account) != 0 ||
        spec_reader_int(r, node, "parallelism", 1, 1000000, &t->parallelism) != 0 ||
        read_deadline(r, node, &t->active_deadline_seconds) != 0)
        return -1;
    if (!name_valid(t->name) || strchr(t->name, '_') != NULL)
        return spec_reader_fail(r, node,
                                "invalid template name '%s': use letters, digits and '-', "
                                "starting with a letter or digit",
                                t->name);
    const ydoc_node *body = NULL;
    const char *kind = NULL;
    for (size_t i = 0; i < 5; i++) {
        const ydoc_node *candidate = ydoc_get(node, kinds[i]);
        if (candidate == NULL)
            continue;
        if (body != NULL)
            return spec_reader_fail(r, node, "has both %s and %s; a template has exactly one",
                                    kind, kinds[i]);
        body = candidate;
        kind = kinds[i];
        t->type = types[i];
    }
    if (body == NULL)
        return spec_reader_fail(r, node,
                                "template '%s' needs one of container, script, steps, dag or "
                                "resource",
                                t->name);
    if (read_params(r, node, "inputs", PARAM_INPUT, &t->inputs, &t->input_count) != 0 ||
        read_params(r, node, "outputs", PARAM_OUTPUT, &t->outputs, &t->output_count) != 0)
        return -1;

    size_t old = spec_reader_push_key(r, kind);
    int rc = 0;
    switch (t->type) {
    case WF_TEMPLATE_CONTAINER:
    case WF_TEMPLATE_SCRIPT:
        rc = read_container(r, body, t->type == WF_TEMPLATE_SCRIPT, &t->container);
        break;
    case WF_TEMPLATE_STEPS:
        rc = body->kind == YDOC_SEQ ? read_steps(r, body, t)
                                    : spec_reader_fail(r, body, "must be a list of step groups");
        break;
    case WF_TEMPLATE_DAG:
        rc = read_dag(r, body, t);
        if (rc == 0)
            rc = check_dag(r, t, body);
        break;
    case WF_TEMPLATE_RESOURCE:
        rc = read_resource(r, body, &t->resource);
        break;
    }
    spec_reader_pop(r, old);
    if (rc != 0)
        return -1;

    /* Outputs: files belong to processes, parameters to steps and DAGs. */
    bool runs_process = t->type == WF_TEMPLATE_CONTAINER || t->type == WF_TEMPLATE_SCRIPT;
    for (size_t i = 0; i < t->output_count; i++) {
        if (t->outputs[i].path != NULL && !runs_process)
            return spec_reader_fail(r, node,
                                    "output parameter '%s': valueFrom.path needs a container or "
                                    "script template",
                                    t->outputs[i].name);
        if (t->outputs[i].from_parameter != NULL && runs_process)
            return spec_reader_fail(r, node,
                                    "output parameter '%s': valueFrom.parameter needs a steps or "
                                    "dag template",
                                    t->outputs[i].name);
    }

    const ydoc_node *memo = NULL, *retry = NULL;
    if (spec_reader_map(r, node, "memoize", &memo) != 0 ||
        spec_reader_map(r, node, "retryStrategy", &retry) != 0)
        return -1;
    if (memo != NULL) {
        t->memoize = dm_calloc(1, sizeof *t->memoize);
        size_t old_memo = spec_reader_push_key(r, "memoize");
        rc = t->memoize == NULL ? -1 : read_memoize(r, memo, t->memoize);
        spec_reader_pop(r, old_memo);
        if (rc != 0)
            return -1;
    }
    if (retry != NULL) {
        t->retry = dm_calloc(1, sizeof *t->retry);
        size_t old_retry = spec_reader_push_key(r, "retryStrategy");
        rc = t->retry == NULL ? -1 : read_retry(r, retry, t->retry);
        spec_reader_pop(r, old_retry);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ---- the whole workflow ---- */

static int read_metadata(spec_reader *r, const ydoc_node *root, wf_spec *spec)
{
    const ydoc_node *meta = NULL;
    if (spec_reader_map(r, root, "metadata", &meta) != 0)
        return -1;
    if (meta == NULL)
        return spec_reader_fail(r, root, "metadata.name or metadata.generateName is required");
    size_t old = spec_reader_push_key(r, "metadata");
    int rc = spec_reader_check_fields(
        r, meta, FIELDS("name", "generateName", "namespace", "labels", "annotations"));
    if (rc == 0)
        rc = spec_reader_string(r, meta, "name", false, &spec->name);
    if (rc == 0)
        rc = spec_reader_string(r, meta, "generateName", false, &spec->generate_name);
    if (rc == 0)
        rc = spec_reader_string(r, meta, "namespace", false, &spec->namespace_name);
    const char *const keys[] = {"labels", "annotations"};
    for (size_t k = 0; rc == 0 && k < 2; k++) {
        const ydoc_node *map = NULL;
        rc = spec_reader_map(r, meta, keys[k], &map);
        for (size_t i = 0; rc == 0 && map != NULL && i < map->count; i++) {
            if (map->items[i]->kind != YDOC_SCALAR) {
                size_t old_key = spec_reader_push_key(r, keys[k]);
                spec_reader_push_key(r, map->keys[i]);
                rc = spec_reader_fail(r, map->items[i], "must be a string");
                spec_reader_pop(r, old_key);
            }
        }
    }
    if (rc == 0 && spec->name == NULL && spec->generate_name == NULL)
        rc = spec_reader_fail(r, meta, "needs name or generateName");
    if (rc == 0 && spec->name != NULL && !object_name_valid(spec->name, 63))
        rc = spec_reader_fail(r, meta,
                              "invalid name '%s': use at most 63 lowercase letters, digits, '-' "
                              "and '.'",
                              spec->name);
    if (rc == 0 && spec->name == NULL) {
        /* generateName gets 5 random characters appended. */
        char probe[64];
        snprintf(probe, sizeof probe, "%sx", spec->generate_name);
        if (strlen(spec->generate_name) > 57 || !object_name_valid(probe, 63))
            rc = spec_reader_fail(r, meta,
                                  "invalid generateName '%s': use at most 57 lowercase letters, "
                                  "digits, '-' and '.'",
                                  spec->generate_name);
    }
    spec_reader_pop(r, old);
    return rc;
}

static int read_volumes(spec_reader *r, const ydoc_node *spec_node, wf_spec *spec)
{
    const ydoc_node *list = NULL;
    if (spec_reader_seq(r, spec_node, "volumes", &list) != 0)
        return -1;
    if (list == NULL || list->count == 0)
        return 0;
    spec->volumes = dm_calloc(list->count, sizeof *spec->volumes);
    if (spec->volumes == NULL)
        return -1;
    size_t old = spec_reader_push_key(r, "volumes");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < list->count; i++) {
        const ydoc_node *v = list->items[i], *pvc = NULL;
        wf_volume *vol = &spec->volumes[i];
        size_t old_item = spec_reader_push_index(r, i);
        rc = spec_reader_check_fields(r, v, FIELDS("name", "persistentVolumeClaim"));
        if (rc == 0)
            rc = spec_reader_string(r, v, "name", true, &vol->name);
        if (rc == 0)
            rc = spec_reader_map(r, v, "persistentVolumeClaim", &pvc);
        if (rc == 0 && pvc == NULL)
            rc = spec_reader_fail(r, v, "only persistentVolumeClaim volumes are supported");
        if (rc == 0) {
            size_t old_pvc = spec_reader_push_key(r, "persistentVolumeClaim");
            rc = spec_reader_check_fields(r, pvc, FIELDS("claimName", "readOnly"));
            if (rc == 0)
                rc = spec_reader_string(r, pvc, "claimName", true, &vol->claim_name);
            if (rc == 0)
                rc = spec_reader_bool(r, pvc, "readOnly", &vol->read_only);
            if (rc == 0 && !object_name_valid(vol->claim_name, 253))
                rc = spec_reader_fail(r, pvc, "invalid claimName '%s'", vol->claim_name);
            spec_reader_pop(r, old_pvc);
        }
        for (size_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(spec->volumes[j].name, vol->name) == 0)
                rc = spec_reader_fail(r, v, "duplicate volume '%s'", vol->name);
        }
        spec_reader_pop(r, old_item);
        spec->volume_count = i + 1;
    }
    spec_reader_pop(r, old);
    return rc;
}

static int read_spec_body(spec_reader *r, const ydoc_node *node, wf_spec *spec)
{
    static const char *const fields[] = {"entrypoint", "arguments", "templates",
                                         "parallelism", "activeDeadlineSeconds", "podGC",
                                         "volumes", "serviceAccountName", NULL};
    const ydoc_node *templates = NULL, *pod_gc = NULL;
    if (spec_reader_check_fields(r, node, fields) != 0 ||
        spec_reader_string(r, node, "entrypoint", true, &spec->entrypoint) != 0 ||
        spec_reader_string(r, node, "serviceAccountName", false, &spec->service_account) != 0 ||
        spec_reader_int(r, node, "parallelism", 1, 1000000, &spec->parallelism) != 0 ||
        read_deadline(r, node, &spec->active_deadline_seconds) != 0 ||
        read_params(r, node, "arguments", PARAM_ARGUMENT, &spec->arguments,
                    &spec->argument_count) != 0 ||
        read_volumes(r, node, spec) != 0 || spec_reader_map(r, node, "podGC", &pod_gc) != 0 ||
        spec_reader_seq(r, node, "templates", &templates) != 0)
        return -1;
    if (pod_gc != NULL) {
        static const char *const strategies[] = {"OnPodCompletion", "OnPodSuccess",
                                                 "OnWorkflowCompletion", "OnWorkflowSuccess"};
        size_t old = spec_reader_push_key(r, "podGC");
        int rc = spec_reader_check_fields(r, pod_gc, FIELDS("strategy"));
        if (rc == 0)
            rc = spec_reader_string(r, pod_gc, "strategy", false, &spec->pod_gc_strategy);
        bool known = spec->pod_gc_strategy == NULL;
        for (size_t i = 0; rc == 0 && i < 4; i++)
            known = known || strcmp(spec->pod_gc_strategy, strategies[i]) == 0;
        if (rc == 0 && !known)
            rc = spec_reader_fail(r, pod_gc,
                                  "invalid strategy '%s': expected OnPodCompletion, "
                                  "OnPodSuccess, OnWorkflowCompletion or OnWorkflowSuccess",
                                  spec->pod_gc_strategy);
        spec_reader_pop(r, old);
        if (rc != 0)
            return -1;
    }
    if (templates == NULL || templates->count == 0)
        return spec_reader_fail(r, node, "needs at least one template");
    spec->templates = dm_calloc(templates->count, sizeof *spec->templates);
    if (spec->templates == NULL)
        return -1;
    size_t old = spec_reader_push_key(r, "templates");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < templates->count; i++) {
        size_t old_item = spec_reader_push_index(r, i);
        wf_template *t = &spec->templates[i];
        snprintf(t->path, sizeof t->path, "spec.templates[%zu]", i);
        t->node = templates->items[i];
        rc = read_template(r, templates->items[i], t);
        spec->template_count = i + 1;
        for (size_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(spec->templates[j].name, t->name) == 0)
                rc = spec_reader_fail(r, templates->items[i], "duplicate template name '%s'",
                                      t->name);
        }
        spec_reader_pop(r, old_item);
    }
    spec_reader_pop(r, old);
    return rc;
}

/* Checks across templates: references to templates and volumes. */
static int check_references(spec_reader *r, const wf_spec *spec, const ydoc_node *spec_node)
{
    const ydoc_node *templates = ydoc_get(spec_node, "templates");
    if (wf_spec_template(spec, spec->entrypoint) == NULL) {
        size_t old = spec_reader_push_key(r, "entrypoint");
        int rc = spec_reader_fail(r, ydoc_get(spec_node, "entrypoint"),
                                  "template '%s' is not defined", spec->entrypoint);
        spec_reader_pop(r, old);
        return rc;
    }
    for (size_t i = 0; i < spec->template_count; i++) {
        const wf_template *t = &spec->templates[i];
        size_t old = spec_reader_push_key(r, "templates");
        spec_reader_push_index(r, i);
        int rc = 0;
        for (size_t g = 0; rc == 0 && g < t->group_count; g++) {
            for (size_t s = 0; rc == 0 && s < t->groups[g].count; s++) {
                const wf_step *step = &t->groups[g].steps[s];
                if (wf_spec_template(spec, step->template_name) == NULL)
                    rc = spec_reader_fail(r, templates->items[i],
                                          "steps[%zu][%zu] '%s': template '%s' is not defined", g,
                                          s, step->name, step->template_name);
            }
        }
        for (size_t k = 0; rc == 0 && k < t->task_count; k++) {
            if (wf_spec_template(spec, t->tasks[k].template_name) == NULL)
                rc = spec_reader_fail(r, templates->items[i],
                                      "dag task '%s': template '%s' is not defined",
                                      t->tasks[k].name, t->tasks[k].template_name);
        }
        for (size_t m = 0; rc == 0 && m < t->container.mount_count; m++) {
            if (wf_spec_volume(spec, t->container.mounts[m].name) == NULL)
                rc = spec_reader_fail(r, templates->items[i],
                                      "volumeMounts[%zu]: volume '%s' is not in spec.volumes", m,
                                      t->container.mounts[m].name);
        }
        spec_reader_pop(r, old);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int spec_read(spec_reader *r, wf_spec *spec)
{
    const ydoc_node *root = spec->root, *spec_node = NULL;
    const char *api = NULL, *kind = NULL;
    if (check_expression_tags(r, root) != 0 ||
        spec_reader_check_fields(r, root, FIELDS("apiVersion", "kind", "metadata", "spec")) ||
        spec_reader_string(r, root, "apiVersion", true, &api) != 0 ||
        spec_reader_string(r, root, "kind", true, &kind) != 0)
        return -1;
    if (strcmp(api, "argoproj.io/v1alpha1") != 0 || strcmp(kind, "Workflow") != 0)
        return spec_reader_fail(r, root,
                                "%s %s is not supported: expected apiVersion argoproj.io/v1alpha1 "
                                "and kind Workflow",
                                api, kind);
    if (read_metadata(r, root, spec) != 0 || spec_reader_map(r, root, "spec", &spec_node) != 0)
        return -1;
    if (spec_node == NULL)
        return spec_reader_fail(r, root, "spec is required");
    size_t old = spec_reader_push_key(r, "spec");
    int rc = read_spec_body(r, spec_node, spec);
    if (rc == 0)
        rc = check_references(r, spec, spec_node);
    spec_reader_pop(r, old);
    return rc;
}

int wf_spec_parse(const char *text, size_t size, const char *name, wf_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    spec->file = strdup(name);
    if (spec->file == NULL)
        return dm_fail("out of memory");
    if (ydoc_parse(text, size, name, &spec->root) != 0) {
        wf_spec_free(spec);
        return -1;
    }
    spec_reader r = {.file = spec->file};
    if (spec_read(&r, spec) != 0) {
        wf_spec_free(spec);
        return -1;
    }
    return 0;
}

int wf_spec_load(const char *file, wf_spec *spec)
{
    ydoc_node *root = NULL;
    memset(spec, 0, sizeof *spec);
    if (ydoc_load_file(file, &root) != 0)
        return -1;
    spec->file = strdup(file);
    spec->root = root;
    if (spec->file == NULL) {
        wf_spec_free(spec);
        return dm_fail("out of memory");
    }
    spec_reader r = {.file = spec->file};
    if (spec_read(&r, spec) != 0) {
        wf_spec_free(spec);
        return -1;
    }
    return 0;
}

static void free_params(wf_param *params, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(params[i].enum_values);
    free(params);
}

static void free_step(wf_step *s)
{
    free_params(s->arguments, s->argument_count);
    free(s->dependencies);
}

void wf_spec_free(wf_spec *spec)
{
    for (size_t i = 0; i < spec->template_count; i++) {
        wf_template *t = &spec->templates[i];
        free_params(t->inputs, t->input_count);
        free_params(t->outputs, t->output_count);
        free(t->container.command);
        free(t->container.args);
        free(t->container.env);
        free(t->container.mounts);
        for (size_t g = 0; g < t->group_count; g++) {
            for (size_t s = 0; s < t->groups[g].count; s++)
                free_step(&t->groups[g].steps[s]);
            free(t->groups[g].steps);
        }
        free(t->groups);
        for (size_t k = 0; k < t->task_count; k++)
            free_step(&t->tasks[k]);
        free(t->tasks);
        free(t->memoize);
        free(t->retry);
    }
    free(spec->templates);
    free_params(spec->arguments, spec->argument_count);
    free(spec->volumes);
    ydoc_free(spec->root);
    free(spec->file);
    memset(spec, 0, sizeof *spec);
}

const wf_template *wf_spec_template(const wf_spec *spec, const char *name)
{
    for (size_t i = 0; i < spec->template_count; i++) {
        if (strcmp(spec->templates[i].name, name) == 0)
            return &spec->templates[i];
    }
    return NULL;
}

const wf_volume *wf_spec_volume(const wf_spec *spec, const char *name)
{
    for (size_t i = 0; i < spec->volume_count; i++) {
        if (strcmp(spec->volumes[i].name, name) == 0)
            return &spec->volumes[i];
    }
    return NULL;
}
