/*
 * Container and script templates as local processes. The image is
 * recorded, not pulled: the command runs on this machine with the
 * runner's environment, PATH extended by the folder of this distml
 * binary, and the template's env.
 *
 * A pod has its own filesystem and a local process does not, so paths are
 * mapped before the process starts:
 *   - a volumeMount of a persistentVolumeClaim volume maps its mountPath to
 *     DATA_ROOT/pvc/CLAIM (plus subPath). Where the mountPath starts a path
 *     in command, args, env values, workingDir or the script source (at the
 *     start of the text or after a space, quote, '=', ':' or similar, and
 *     followed by '/', the end or such a character), it is replaced by that
 *     folder, so "/data/x" becomes "DATA_ROOT/pvc/CLAIM/x" but "/database"
 *     stays;
 *   - the path of an output parameter (valueFrom.path) outside every volume
 *     maps to a file in the node's working folder, and every exact
 *     occurrence of the path in those strings is replaced by it, so two
 *     pods writing /tmp/out.txt at once do not collide;
 *   - a command word "distml" or ".../distml" that does not exist here
 *     runs this distml binary.
 * Other paths are the machine's own: a step that writes /tmp/x writes this
 * machine's /tmp/x. A path that a script builds at run time from parts is
 * not seen by the mapping.
 */
#include "workflow/engine.h"
#include "workflow/path_map.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "workflow/process.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Bytes of stdout kept as a script's result: the last 256 KiB, as the Argo
 * executor keeps for outputs.result. */
#define POD_RESULT_KEEP (256 * 1024)

/* Maximum size of an output parameter file read into a parameter value. */
#define POD_PARAM_MAX (64 * 1024 * 1024)

int wf_claim_dir(wf_engine *e, const char *claim, const char *sub_path, char *out,
                 size_t capacity)
{
    int n = sub_path != NULL && sub_path[0] != '\0'
                ? snprintf(out, capacity, "%s/pvc/%s/%s", e->options->data_root, claim, sub_path)
                : snprintf(out, capacity, "%s/pvc/%s", e->options->data_root, claim);
    if (n < 0 || (size_t)n >= capacity)
        return dm_fail("path too long for claim %s", claim);
    return fs_mkdir_p(out);
}

/* The strings of one process, before and after substitution. */
typedef struct {
    char **argv;
    size_t argc;
    char **env; /* NAME=value of the template's env */
    size_t env_count;
    char *working_dir;
    char *source;
} pod_command;

static void pod_command_free(pod_command *c)
{
    wf_free_strings(c->argv, c->argc);
    wf_free_strings(c->env, c->env_count);
    free(c->working_dir);
    free(c->source);
    memset(c, 0, sizeof *c);
}

/* Substitute the container's strings with SCOPE into C. */
static int substitute_container(const wf_container *k, const wf_scope *scope, pod_command *c)
{
    size_t argc = k->command_count + k->args_count + (k->source != NULL ? 1 : 0);
    c->argv = calloc(argc + 1, sizeof *c->argv);
    c->env = calloc(k->env_count + 1, sizeof *c->env);
    if (c->argv == NULL || c->env == NULL)
        return dm_fail("out of memory");
    for (size_t i = 0; i < k->command_count; i++) {
        if (wf_substitute(k->command[i], scope, NULL, false, &c->argv[c->argc]) != 0)
            return -1;
        c->argc++;
    }
    if (k->source != NULL) {
        /* The script file's path is filled in once the folder exists. */
        c->argv[c->argc++] = strdup("");
        if (wf_substitute(k->source, scope, NULL, false, &c->source) != 0)
            return -1;
    }
    for (size_t i = 0; i < k->args_count; i++) {
        if (wf_substitute(k->args[i], scope, NULL, false, &c->argv[c->argc]) != 0)
            return -1;
        c->argc++;
    }
    for (size_t i = 0; i < k->env_count; i++) {
        char *value = NULL;
        if (wf_substitute(k->env[i].value, scope, NULL, false, &value) != 0)
            return -1;
        size_t n = strlen(k->env[i].name) + strlen(value) + 2;
        c->env[i] = malloc(n);
        if (c->env[i] == NULL) {
            free(value);
            return dm_fail("out of memory");
        }
        snprintf(c->env[i], n, "%s=%s", k->env[i].name, value);
        free(value);
        c->env_count = i + 1;
    }
    if (k->working_dir != NULL &&
        wf_substitute(k->working_dir, scope, NULL, false, &c->working_dir) != 0)
        return -1;
    return 0;
}

/* Replace each string of C through MAP. */
static int map_command(const path_map *map, pod_command *c)
{
    char **fields[] = {&c->working_dir, &c->source};
    for (size_t i = 0; i < c->argc; i++) {
        char *mapped = wf_path_map_apply(map, c->argv[i]);
        if (mapped == NULL)
            return dm_fail("out of memory");
        free(c->argv[i]);
        c->argv[i] = mapped;
    }
    for (size_t i = 0; i < c->env_count; i++) {
        char *eq = strchr(c->env[i], '=');
        char *mapped = wf_path_map_apply(map, eq + 1);
        if (mapped == NULL)
            return dm_fail("out of memory");
        size_t n = (size_t)(eq - c->env[i]) + strlen(mapped) + 2;
        char *entry = malloc(n);
        if (entry == NULL) {
            free(mapped);
            return dm_fail("out of memory");
        }
        snprintf(entry, n, "%.*s=%s", (int)(eq - c->env[i]), c->env[i], mapped);
        free(mapped);
        free(c->env[i]);
        c->env[i] = entry;
    }
    for (size_t i = 0; i < 2; i++) {
        if (*fields[i] == NULL)
            continue;
        char *mapped = wf_path_map_apply(map, *fields[i]);
        if (mapped == NULL)
            return dm_fail("out of memory");
        free(*fields[i]);
        *fields[i] = mapped;
    }
    return 0;
}

/* Replace command words "distml" and ".../distml" that do not exist on
 * this machine with this binary, so an image's /usr/local/bin/distml runs
 * the local build. */
static int map_distml(wf_engine *e, pod_command *c)
{
    if (e->options->self_exe == NULL)
        return 0;
    for (size_t i = 0; i < c->argc; i++) {
        const char *base = strrchr(c->argv[i], '/');
        base = base != NULL ? base + 1 : c->argv[i];
        if (strcmp(base, "distml") != 0)
            continue;
        if (strchr(c->argv[i], '/') != NULL && access(c->argv[i], X_OK) == 0)
            continue;
        free(c->argv[i]);
        c->argv[i] = strdup(e->options->self_exe);
        if (c->argv[i] == NULL)
            return dm_fail("out of memory");
    }
    return 0;
}

/* The environment of the process: the runner's (with PATH extended), the
 * template's env, and the node marker that recovery looks for. */
static char **build_environment(wf_engine *e, const pod_command *c, const char *marker)
{
    size_t base = 0;
    while (e->env_base[base] != NULL)
        base++;
    char **env = calloc(base + c->env_count + 2, sizeof *env);
    if (env == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < base; i++) {
        const char *eq = strchr(e->env_base[i], '=');
        size_t name_len = eq != NULL ? (size_t)(eq - e->env_base[i]) : strlen(e->env_base[i]);
        bool overridden = false;
        for (size_t j = 0; j < c->env_count && !overridden; j++)
            overridden = strncmp(c->env[j], e->env_base[i], name_len + 1) == 0;
        if (!overridden)
            env[n++] = e->env_base[i];
    }
    for (size_t j = 0; j < c->env_count; j++)
        env[n++] = c->env[j];
    env[n++] = (char *)marker;
    env[n] = NULL;
    return env;
}

/* Read an output parameter file, trimming one trailing newline as the
 * Argo executor does. */
static int read_param_file(const char *path, const char *shown, char **value)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return dm_fail("open %s: %s", shown, strerror(errno));
    if (st.st_size > POD_PARAM_MAX)
        return dm_fail("output parameter file %s is %lld bytes, over the %d-byte limit", shown,
                       (long long)st.st_size, POD_PARAM_MAX);
    unsigned char *data = NULL;
    size_t size = 0;
    if (fs_read_file(path, &data, &size) != 0)
        return -1;
    if (size > 0 && data[size - 1] == '\n')
        data[size - 1] = '\0';
    *value = (char *)data;
    return 0;
}

typedef struct {
    wf_engine *e;
    wf_node *node;
} start_context;

static void on_process_start(void *context, pid_t pid, int64_t start_ticks)
{
    start_context *sc = context;
    wf_node_set_process(sc->e, sc->node, pid, start_ticks);
    wf_node_set_phase(sc->e, sc->node, "Running");
}

/* Wait for a free slot in SLOTS (NULL: no limit); false when the run is
 * stopping first. */
static bool slots_acquire(wf_engine *e, wf_slots *slots, double deadline)
{
    if (slots == NULL)
        return true;
    pthread_mutex_lock(&slots->lock);
    while (slots->free_slots <= 0 && !wf_engine_stopping(e, deadline)) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 200 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&slots->changed, &slots->lock, &until);
    }
    bool acquired = slots->free_slots > 0 && !wf_engine_stopping(e, deadline);
    if (acquired)
        slots->free_slots--;
    pthread_mutex_unlock(&slots->lock);
    return acquired;
}

static void slots_release(wf_slots *slots)
{
    if (slots == NULL)
        return;
    pthread_mutex_lock(&slots->lock);
    slots->free_slots++;
    pthread_cond_broadcast(&slots->changed);
    pthread_mutex_unlock(&slots->lock);
}

/* Map the template's volume mounts and output files into MAP, creating
 * the folders, and record where each output parameter's file is. */
static int plan_paths(wf_engine *e, const wf_template *t, const wf_scope *scope,
                      const char *pod_dir, path_map *map, char **output_files)
{
    const wf_container *k = &t->container;
    for (size_t i = 0; i < k->mount_count; i++) {
        const wf_volume *v = wf_spec_volume(e->spec, k->mounts[i].name);
        char dir[4096];
        if (v == NULL)
            return dm_fail("volume %s is not in spec.volumes", k->mounts[i].name);
        if (wf_claim_dir(e, v->claim_name, k->mounts[i].sub_path, dir, sizeof dir) != 0 ||
            wf_path_map_add(map, k->mounts[i].mount_path, dir, false) != 0)
            return -1;
    }
    for (size_t i = 0; i < t->output_count; i++) {
        output_files[i] = NULL;
        if (t->outputs[i].path == NULL)
            continue;
        char *path = NULL;
        if (wf_substitute(t->outputs[i].path, scope, NULL, false, &path) != 0)
            return -1;
        char *mapped = wf_path_map_apply(map, path);
        if (mapped != NULL && strcmp(mapped, path) != 0) {
            /* The file is on a volume: it is where the mount puts it. */
            output_files[i] = mapped;
            free(path);
            continue;
        }
        free(mapped);
        char private_path[8192];
        snprintf(private_path, sizeof private_path, "%s/fs%s", pod_dir, path);
        char parent[8192];
        snprintf(parent, sizeof parent, "%s", private_path);
        char *slash = strrchr(parent, '/');
        if (slash != NULL)
            *slash = '\0';
        int rc = fs_mkdir_p(parent);
        if (rc == 0)
            rc = wf_path_map_add(map, path, private_path, true);
        free(path);
        if (rc != 0)
            return -1;
        output_files[i] = strdup(private_path);
    }
    return 0;
}

/* Build the node's outputs after the process exited with EXIT_CODE. */
static int collect_outputs(const wf_template *t, const wf_scope *scope, char **output_files,
                           const wf_process_result *result, cJSON **out)
{
    cJSON *outputs = cJSON_CreateObject();
    *out = outputs;
    if (t->output_count > 0) {
        cJSON *params = cJSON_AddArrayToObject(outputs, "parameters");
        for (size_t i = 0; i < t->output_count; i++) {
            const wf_param *p = &t->outputs[i];
            char *value = NULL;
            if (p->path != NULL) {
                char *shown = NULL;
                wf_substitute(p->path, scope, NULL, true, &shown);
                if (read_param_file(output_files[i], shown ? shown : p->path, &value) != 0) {
                    if (p->from_default == NULL) {
                        free(shown);
                        return -1;
                    }
                    value = strdup(p->from_default);
                }
                cJSON *item = cJSON_CreateObject();
                cJSON_AddStringToObject(item, "name", p->name);
                cJSON_AddStringToObject(item, "value", value != NULL ? value : "");
                cJSON *from = cJSON_AddObjectToObject(item, "valueFrom");
                cJSON_AddStringToObject(from, "path", shown ? shown : p->path);
                cJSON_AddItemToArray(params, item);
                free(shown);
            } else {
                if (wf_substitute(p->value, scope, NULL, false, &value) != 0)
                    return -1;
                cJSON *item = cJSON_CreateObject();
                cJSON_AddStringToObject(item, "name", p->name);
                cJSON_AddStringToObject(item, "value", value);
                cJSON_AddItemToArray(params, item);
            }
            free(value);
        }
    }
    if (t->type == WF_TEMPLATE_SCRIPT || result->stdout_size > 0) {
        /* The executor trims one trailing newline from the result. */
        size_t n = result->stdout_size;
        char *text = strndup(result->stdout_tail, n);
        if (text != NULL && n > 0 && text[n - 1] == '\n')
            text[n - 1] = '\0';
        cJSON_AddStringToObject(outputs, "result", text != NULL ? text : "");
        free(text);
    }
    char code[16];
    snprintf(code, sizeof code, "%d", result->exit_code);
    cJSON_AddStringToObject(outputs, "exitCode", code);
    return 0;
}

static void log_failure(wf_engine *e, const wf_node *node, const char *what)
{
    DM_WARN("workflow %s: node %s (%s): %s", e->name, node->name, node->id, what);
}

wf_node *wf_pod_execute(wf_engine *e, const wf_invocation *inv, const wf_scope *scope, int retry)
{
    const wf_template *t = inv->tmpl;
    char pod_name[512], pod_dir[4096 + 600], log_path[4096 + 600], marker[512];
    wf_pod_name(e->name, t->name, inv->node_name, pod_name, sizeof pod_name);
    snprintf(pod_dir, sizeof pod_dir, "%s/%s", e->pods_dir, pod_name);
    snprintf(log_path, sizeof log_path, "%s/%s.log", e->logs_dir, pod_name);

    wf_node *node = wf_node_create(e, inv->node_name, inv->display_name, "Pod", t->name,
                                   inv->boundary_id, inv->parent_id, inv->link_parent, "Pending");
    if (node == NULL)
        return NULL;
    snprintf(marker, sizeof marker, "DISTML_WORKFLOW_NODE=%s/%s", e->name, node->id);

    wf_scope pod_scope;
    wf_scope_init(&pod_scope, scope);
    char retries[16];
    snprintf(retries, sizeof retries, "%d", retry < 0 ? 0 : retry);
    wf_scope_set(&pod_scope, "pod.name", pod_name);
    wf_scope_set(&pod_scope, "retries", retries);
    wf_scope_set(&pod_scope, "node.name", inv->node_name);

    pod_command cmd = {0};
    path_map map = {0};
    char **output_files = calloc(t->output_count + 1, sizeof *output_files);
    char **envp = NULL;
    bool got_slot = false, got_pod = false;
    wf_process_result result = {0};
    char message[1024] = "";
    const char *phase = "Error";

    double deadline = inv->deadline;
    if (t->active_deadline_seconds != NULL) {
        char *text = NULL;
        long long seconds = -1;
        if (wf_substitute(t->active_deadline_seconds, &pod_scope, NULL, false, &text) == 0)
            seconds = strtoll(text, NULL, 10);
        free(text);
        if (seconds >= 0) {
            double own = dm_monotonic_seconds() + (double)seconds;
            deadline = deadline > 0 && deadline < own ? deadline : own;
        }
    }

    got_slot = slots_acquire(e, inv->boundary_slots, deadline);
    got_pod = got_slot && slots_acquire(e, e->limit_pods ? &e->pods : NULL, deadline);
    if (!got_slot || !got_pod) {
        phase = "Failed";
        snprintf(message, sizeof message, "%s", wf_engine_stop_message(e, deadline));
        goto done;
    }
    if (output_files == NULL || substitute_container(&t->container, &pod_scope, &cmd) != 0 ||
        fs_mkdir_p(pod_dir) != 0 || fs_mkdir_p(e->logs_dir) != 0 ||
        plan_paths(e, t, &pod_scope, pod_dir, &map, output_files) != 0 ||
        map_command(&map, &cmd) != 0 || map_distml(e, &cmd) != 0) {
        snprintf(message, sizeof message, "%s", dm_error());
        goto done;
    }
    if (cmd.source != NULL) {
        char script[4096 + 700];
        snprintf(script, sizeof script, "%s/script", pod_dir);
        if (fs_write_file_atomic(script, cmd.source, strlen(cmd.source)) != 0 ||
            chmod(script, 0755) != 0) {
            snprintf(message, sizeof message, "%s", dm_error());
            goto done;
        }
        free(cmd.argv[t->container.command_count]);
        cmd.argv[t->container.command_count] = strdup(script);
    }
    envp = build_environment(e, &cmd, marker);
    if (envp == NULL) {
        snprintf(message, sizeof message, "out of memory");
        goto done;
    }

    start_context sc = {e, node};
    wf_process_spec ps = {
        .argv = cmd.argv,
        .envp = envp,
        .cwd = cmd.working_dir != NULL ? cmd.working_dir : pod_dir,
        .log_path = log_path,
        .stdout_keep = POD_RESULT_KEEP,
        .deadline = deadline,
        .cancel = &e->cancel,
        .on_start = on_process_start,
        .context = &sc,
    };
    if (cmd.working_dir != NULL && fs_mkdir_p(cmd.working_dir) != 0) {
        snprintf(message, sizeof message, "%s", dm_error());
        goto done;
    }
    DM_DEBUG("workflow %s: node %s runs %s (image %s)", e->name, node->name, cmd.argv[0],
             t->container.image);
    if (wf_process_run(&ps, &result) != 0) {
        snprintf(message, sizeof message, "%s", dm_error());
        goto done;
    }
    if (result.start_failed) {
        snprintf(message, sizeof message, "%s", result.error);
        goto done;
    }

    cJSON *outputs = NULL;
    if (result.cancelled || (result.timed_out && e->cancel)) {
        phase = "Failed";
        snprintf(message, sizeof message, "%s", wf_engine_stop_message(e, deadline));
    } else if (result.timed_out) {
        phase = "Failed";
        snprintf(message, sizeof message, "Step exceeded its deadline");
    } else if (result.exit_code != 0) {
        phase = "Failed";
        snprintf(message, sizeof message, "Error (exit code %d)", result.exit_code);
    } else {
        phase = "Succeeded";
    }
    if (collect_outputs(t, &pod_scope, output_files, &result, &outputs) != 0) {
        if (strcmp(phase, "Succeeded") == 0) {
            phase = "Error";
            snprintf(message, sizeof message, "%s", dm_error());
        }
        /* A failed process keeps its exit code even when its outputs are
         * incomplete. */
        cJSON_DeleteItemFromObject(outputs, "parameters");
    }
    wf_node_set_outputs(e, node, outputs);

done:
    if (got_pod)
        slots_release(e->limit_pods ? &e->pods : NULL);
    if (got_slot)
        slots_release(inv->boundary_slots);
    if (strcmp(phase, "Succeeded") != 0)
        log_failure(e, node, message);
    wf_node_finish(e, node, phase, message[0] != '\0' ? message : NULL);
    wf_pod_collect(e, node);
    wf_process_result_free(&result);
    free(envp);
    if (output_files != NULL)
        wf_free_strings(output_files, t->output_count);
    wf_path_map_free(&map);
    pod_command_free(&cmd);
    wf_scope_free(&pod_scope);
    return node;
}

/* The working folder of a Pod node. */
static void pod_dir_of(wf_engine *e, const wf_node *node, char *out, size_t capacity)
{
    char pod_name[512];
    wf_pod_name(e->name, node->template_name != NULL ? node->template_name : "", node->name,
                pod_name, sizeof pod_name);
    snprintf(out, capacity, "%s/%s", e->pods_dir, pod_name);
}

void wf_pod_collect(wf_engine *e, const wf_node *node)
{
    const char *strategy = e->spec->pod_gc_strategy;
    if (strategy == NULL || strcmp(node->type, "Pod") != 0)
        return;
    bool remove = strcmp(strategy, "OnPodCompletion") == 0 ||
                  (strcmp(strategy, "OnPodSuccess") == 0 && strcmp(node->phase, "Succeeded") == 0);
    if (!remove)
        return;
    char dir[8192];
    pod_dir_of(e, node, dir, sizeof dir);
    if (fs_remove_tree(dir) != 0)
        DM_WARN("workflow %s: podGC cannot remove %s: %s", e->name, dir, dm_error());
}

void wf_pod_collect_all(wf_engine *e)
{
    wf_engine_lock(e);
    for (size_t i = 0; i < e->node_count; i++) {
        if (strcmp(e->nodes[i]->type, "Pod") != 0)
            continue;
        char dir[8192];
        pod_dir_of(e, e->nodes[i], dir, sizeof dir);
        if (fs_remove_tree(dir) != 0)
            DM_WARN("workflow %s: podGC cannot remove %s: %s", e->name, dir, dm_error());
    }
    wf_engine_unlock(e);
}
