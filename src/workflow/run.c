/*
 * The entry point of a run: the workflow's name and parameters, the run's
 * record and lock, signals, the root node and podGC at the end. Also the
 * recovery of runs whose runner died.
 */
#include "workflow/engine.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "workflow/process.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

extern char **environ;

int wf_run_dir(const char *data_root, const char *name, char *out, size_t capacity)
{
    int n = snprintf(out, capacity, "%s/workflows/%s", data_root, name);
    if (n < 0 || (size_t)n >= capacity)
        return dm_fail("path too long for workflow %s", name);
    return 0;
}

static int random_bytes(unsigned char *out, size_t n)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dm_fail("cannot open /dev/urandom: %s", strerror(errno));
    size_t done = 0;
    while (done < n) {
        ssize_t got = read(fd, out + done, n - done);
        if (got <= 0) {
            close(fd);
            return dm_fail("cannot read /dev/urandom");
        }
        done += (size_t)got;
    }
    close(fd);
    return 0;
}

/* generateName's suffix: 5 characters from the alphabet that Kubernetes
 * uses for generated names (no vowels, no 0, 1 or 3). */
static int generate_name(const char *prefix, char *out, size_t capacity)
{
    static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
    unsigned char bytes[5];
    if (random_bytes(bytes, sizeof bytes) != 0)
        return -1;
    char suffix[6];
    for (int i = 0; i < 5; i++)
        suffix[i] = alphabet[bytes[i] % (sizeof alphabet - 1)];
    suffix[5] = '\0';
    snprintf(out, capacity, "%s%s", prefix, suffix);
    return 0;
}

static int generate_uid(char *out, size_t capacity)
{
    unsigned char b[16];
    if (random_bytes(b, sizeof b) != 0)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, capacity,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}

/* The workflow's parameters: spec.arguments with the -p overrides, in
 * spec order. Returns malloc'd value copies in VALUES. */
static int resolve_parameters(const wf_spec *spec, const wf_run_options *o, char **values)
{
    for (size_t k = 0; k < o->param_count; k++) {
        bool known = false;
        for (size_t i = 0; i < spec->argument_count; i++)
            known = known || strcmp(spec->arguments[i].name, o->param_names[k]) == 0;
        if (!known) {
            char names[1024] = "";
            for (size_t i = 0; i < spec->argument_count; i++) {
                size_t used = strlen(names);
                snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                         spec->arguments[i].name);
            }
            return dm_fail("unknown parameter '%s': the workflow declares %s", o->param_names[k],
                           names[0] ? names : "no parameters in spec.arguments");
        }
    }
    for (size_t i = 0; i < spec->argument_count; i++) {
        const wf_param *p = &spec->arguments[i];
        const char *value = p->value;
        for (size_t k = 0; k < o->param_count; k++) {
            if (strcmp(o->param_names[k], p->name) == 0)
                value = o->param_values[k];
        }
        if (value == NULL)
            return dm_fail("spec.arguments.parameters.%s has no value: pass -p %s=VALUE",
                           p->name, p->name);
        if (p->enum_count > 0) {
            bool allowed = false;
            for (size_t k = 0; k < p->enum_count; k++)
                allowed = allowed || strcmp(p->enum_values[k], value) == 0;
            if (!allowed)
                return dm_fail("parameter %s: value '%s' is not one of its enum values", p->name,
                               value);
        }
        values[i] = strdup(value);
        if (values[i] == NULL)
            return dm_fail("out of memory");
    }
    return 0;
}

/* The submitted workflow as JSON, for `get`: the file's content with
 * metadata.name set and the arguments as resolved. */
static char *submitted_json(const wf_spec *spec, const char *name, char **values)
{
    cJSON *doc = ydoc_to_json(spec->root);
    if (doc == NULL)
        return NULL;
    cJSON *metadata = cJSON_GetObjectItemCaseSensitive(doc, "metadata");
    if (cJSON_IsObject(metadata)) {
        cJSON_DeleteItemFromObjectCaseSensitive(metadata, "name");
        cJSON_AddStringToObject(metadata, "name", name);
    }
    cJSON *params = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "spec"),
                                         "arguments"),
        "parameters");
    size_t i = 0;
    for (cJSON *p = params != NULL ? params->child : NULL; p != NULL && i < spec->argument_count;
         p = p->next, i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(p, "value");
        cJSON_AddStringToObject(p, "value", values[i]);
    }
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return text;
}

/* The runner's environment with the folder of SELF_EXE first in PATH, so
 * that steps running "distml" find this build. */
static char **environment_with_path(const char *self_exe)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **env = calloc(n + 2, sizeof *env);
    if (env == NULL)
        return NULL;
    char dir[4096] = "";
    if (self_exe != NULL) {
        snprintf(dir, sizeof dir, "%s", self_exe);
        snprintf(dir, sizeof dir, "%s", dirname(dir));
    }
    bool has_path = false;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "PATH=", 5) == 0 && dir[0] != '\0') {
            size_t len = strlen(environ[i]) + strlen(dir) + 2;
            env[i] = malloc(len);
            if (env[i] != NULL)
                snprintf(env[i], len, "PATH=%s:%s", dir, environ[i] + 5);
            has_path = true;
        } else {
            env[i] = strdup(environ[i]);
        }
    }
    if (!has_path && dir[0] != '\0') {
        size_t len = strlen(dir) + 40;
        env[n] = malloc(len);
        if (env[n] != NULL)
            snprintf(env[n], len, "PATH=%s:/usr/local/bin:/usr/bin:/bin", dir);
    }
    return env;
}

static void free_environment(char **env)
{
    for (size_t i = 0; env != NULL && env[i] != NULL; i++)
        free(env[i]);
    free(env);
}

typedef struct {
    wf_engine *e;
    sigset_t set;
} signal_watch;

static void *signal_main(void *arg)
{
    signal_watch *w = arg;
    int sig = 0;
    if (sigwait(&w->set, &sig) == 0) {
        w->e->cancel_signal = sig;
        w->e->cancel = 1;
        DM_WARN("workflow %s: received signal %d, stopping its steps", w->e->name, sig);
    }
    return NULL;
}

static void free_nodes(wf_engine *e)
{
    for (size_t i = 0; i < e->node_count; i++) {
        wf_node *n = e->nodes[i];
        free(n->name);
        free(n->display_name);
        free(n->template_name);
        free(n->boundary_id);
        free(n->message);
        cJSON_Delete(n->inputs);
        cJSON_Delete(n->outputs);
        wf_free_strings(n->children, n->child_count);
        wf_free_strings(n->outbound, n->outbound_count);
        free(n->memo_key);
        free(n->memo_cache);
        free(n);
    }
    free(e->nodes);
    e->nodes = NULL;
    e->node_count = 0;
}

/* Choose the run's name, take its lock and record it. Returns the lock's
 * file descriptor, or -1. */
static int claim_run(wf_engine *e, const wf_spec *spec, char **values, const char *data_root)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        if (spec->name != NULL)
            snprintf(e->name, sizeof e->name, "%s", spec->name);
        else if (generate_name(spec->generate_name, e->name, sizeof e->name) != 0)
            return -1;
        char lock_path[4096 + 32];
        if (wf_run_dir(data_root, e->name, e->run_dir, sizeof e->run_dir) != 0 ||
            fs_mkdir_p(e->run_dir) != 0)
            return -1;
        snprintf(lock_path, sizeof lock_path, "%s/runner.lock", e->run_dir);
        int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return dm_fail("cannot open %s: %s", lock_path, strerror(errno));
        int rc = 1;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            char *spec_json = submitted_json(spec, e->name, values);
            rc = spec_json != NULL ? wf_store_run_insert(e->store, e->name, e->uid, spec->file,
                                                         spec_json, e->created_at, (int)getpid())
                                   : dm_fail("out of memory");
            free(spec_json);
        }
        if (rc == 0)
            return fd;
        close(fd);
        if (rc < 0)
            return -1;
        if (spec->name != NULL)
            return dm_fail("workflow %s already exists: delete it with 'distml workflow delete "
                           "%s', or use metadata.generateName for a new name per run",
                           e->name, e->name);
    }
    return dm_fail("cannot find a free name for generateName %s", spec->generate_name);
}

static int setup_globals(wf_engine *e, const wf_spec *spec, char **values)
{
    char created[32];
    wf_format_time(e->created_at, created, sizeof created);
    wf_scope_init(&e->globals, NULL);
    wf_scope_set(&e->globals, "workflow.name", e->name);
    wf_scope_set(&e->globals, "workflow.namespace", e->namespace_name);
    wf_scope_set(&e->globals, "workflow.uid", e->uid);
    wf_scope_set(&e->globals, "workflow.creationTimestamp", created);
    wf_scope_set(&e->globals, "workflow.mainEntrypoint", spec->entrypoint);
    wf_scope_set(&e->globals, "workflow.serviceAccountName",
                 spec->service_account != NULL ? spec->service_account : "default");
    cJSON *all = cJSON_CreateArray();
    for (size_t i = 0; i < spec->argument_count; i++) {
        wf_scope_setf(&e->globals, values[i], "workflow.parameters.%s", spec->arguments[i].name);
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "name", spec->arguments[i].name);
        cJSON_AddStringToObject(item, "value", values[i]);
        cJSON_AddItemToArray(all, item);
    }
    char *json = cJSON_PrintUnformatted(all);
    cJSON_Delete(all);
    if (json == NULL)
        return dm_fail("out of memory");
    wf_scope_set(&e->globals, "workflow.parameters.json", json);
    free(json);
    return 0;
}

int wf_run(const wf_spec *spec, const wf_run_options *options, wf_run_outcome *outcome)
{
    wf_engine e;
    char **values = NULL;
    int lock_fd = -1;
    int rc = -1;
    bool watching = false;
    pthread_t watcher;
    signal_watch watch;
    sigset_t old_mask;

    memset(&e, 0, sizeof e);
    memset(outcome, 0, sizeof *outcome);
    e.spec = spec;
    e.options = options;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&e.lock, &attr);
    pthread_mutexattr_destroy(&attr);
    wf_slots_init(&e.pods, spec->parallelism);
    e.limit_pods = spec->parallelism > 0;
    e.created_at = dm_wall_seconds();
    snprintf(e.namespace_name, sizeof e.namespace_name, "%s",
             spec->namespace_name != NULL ? spec->namespace_name : "default");
    wf_scope_init(&e.globals, NULL);

    values = calloc(spec->argument_count + 1, sizeof *values);
    if (values == NULL || resolve_parameters(spec, options, values) != 0 ||
        generate_uid(e.uid, sizeof e.uid) != 0 || wf_store_open(options->data_root, &e.store))
        goto out;
    wf_recover(e.store, options->data_root);
    lock_fd = claim_run(&e, spec, values, options->data_root);
    if (lock_fd < 0)
        goto out;
    snprintf(outcome->name, sizeof outcome->name, "%s", e.name);
    snprintf(e.pods_dir, sizeof e.pods_dir, "%s/pods", e.run_dir);
    snprintf(e.logs_dir, sizeof e.logs_dir, "%s/logs", e.run_dir);
    e.env_base = environment_with_path(options->self_exe);
    if (e.env_base == NULL || setup_globals(&e, spec, values) != 0 ||
        fs_mkdir_p(e.pods_dir) != 0 || fs_mkdir_p(e.logs_dir) != 0) {
        wf_store_run_finish(e.store, e.name, "Error", dm_error(), dm_wall_seconds());
        goto out;
    }
    if (spec->active_deadline_seconds != NULL) {
        char *text = NULL;
        if (wf_substitute(spec->active_deadline_seconds, &e.globals, NULL, false, &text) == 0)
            e.deadline = dm_monotonic_seconds() + strtod(text, NULL);
        free(text);
    }

    /* Signals go to one thread, which sets the flag that stops every step. */
    sigemptyset(&watch.set);
    sigaddset(&watch.set, SIGINT);
    sigaddset(&watch.set, SIGTERM);
    sigaddset(&watch.set, SIGHUP);
    watch.e = &e;
    pthread_sigmask(SIG_BLOCK, &watch.set, &old_mask);
    watching = pthread_create(&watcher, NULL, signal_main, &watch) == 0;

    DM_INFO("workflow %s: started from %s (uid %s)", e.name, spec->file, e.uid);
    wf_invocation root = {
        .node_name = e.name,
        .display_name = e.name,
        .tmpl = wf_spec_template(spec, spec->entrypoint),
        .arg_names = NULL,
        .arg_values = NULL,
        .arg_count = spec->argument_count,
        .boundary_id = "",
        .parent_id = "",
        .link_parent = false,
        .boundary_slots = NULL,
        .deadline = e.deadline,
    };
    const char **names = calloc(spec->argument_count + 1, sizeof *names);
    for (size_t i = 0; names != NULL && i < spec->argument_count; i++)
        names[i] = spec->arguments[i].name;
    root.arg_names = names;
    root.arg_values = (const char *const *)values;
    wf_node *node = names != NULL ? wf_execute_template(&e, &root) : NULL;
    free(names);

    const char *phase = node != NULL ? node->phase : "Error";
    const char *message = node != NULL ? node->message : dm_error();
    if (e.cancel != 0)
        message = "Stopped: the runner received a signal to stop";
    else if (node != NULL && e.deadline > 0 && dm_monotonic_seconds() >= e.deadline &&
             wf_phase_failed(phase))
        message = "Step exceeded its deadline";
    snprintf(outcome->phase, sizeof outcome->phase, "%s", phase);
    snprintf(outcome->message, sizeof outcome->message, "%s", message != NULL ? message : "");
    const char *gc = spec->pod_gc_strategy;
    if (gc != NULL && (strcmp(gc, "OnWorkflowCompletion") == 0 ||
                       (strcmp(gc, "OnWorkflowSuccess") == 0 && strcmp(phase, "Succeeded") == 0)))
        wf_pod_collect_all(&e);
    wf_store_run_finish(e.store, e.name, phase, message != NULL ? message : "", dm_wall_seconds());
    DM_INFO("workflow %s: %s%s%s", e.name, phase, message ? ": " : "", message ? message : "");
    rc = 0;
out:
    if (watching) {
        pthread_cancel(watcher);
        pthread_join(watcher, NULL);
    }
    if (watching || lock_fd >= 0)
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    if (lock_fd >= 0)
        close(lock_fd);
    free_nodes(&e);
    for (size_t i = 0; values != NULL && i < spec->argument_count; i++)
        free(values[i]);
    free(values);
    free_environment(e.env_base);
    wf_scope_free(&e.globals);
    wf_store_close(e.store);
    wf_slots_destroy(&e.pods);
    pthread_mutex_destroy(&e.lock);
    return rc;
}

/* ---- recovery ---- */

/* Whether the runner of NAME still holds its lock. */
static bool runner_alive(const char *data_root, const char *name)
{
    char dir[4096], path[4200];
    if (wf_run_dir(data_root, name, dir, sizeof dir) != 0)
        return false;
    snprintf(path, sizeof path, "%s/runner.lock", dir);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool alive = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return alive;
}

static void recover_nodes(wf_store *store, const char *name, double now)
{
    cJSON *rows = NULL;
    if (wf_store_node_list(store, name, &rows) != 0)
        return;
    char when[32];
    wf_format_time(now, when, sizeof when);
    int64_t seq = 0;
    for (cJSON *row = rows->child; row != NULL; row = row->next, seq++) {
        cJSON *status = cJSON_GetObjectItemCaseSensitive(row, "status");
        const cJSON *phase = cJSON_GetObjectItemCaseSensitive(status, "phase");
        if (!cJSON_IsString(phase) || wf_phase_final(phase->valuestring))
            continue;
        const char *id = cJSON_GetObjectItemCaseSensitive(row, "id")->valuestring;
        pid_t pid = (pid_t)cJSON_GetObjectItemCaseSensitive(row, "pid")->valuedouble;
        if (pid > 1) {
            char marker[512];
            snprintf(marker, sizeof marker, "DISTML_WORKFLOW_NODE=%s/%s", name, id);
            int killed = wf_process_kill_marked(pid, marker);
            if (killed > 0)
                DM_WARN("workflow %s: killed %d leftover process%s of node %s", name, killed,
                        killed == 1 ? "" : "es", id);
        }
        cJSON_ReplaceItemInObjectCaseSensitive(status, "phase", cJSON_CreateString("Error"));
        cJSON_DeleteItemFromObjectCaseSensitive(status, "message");
        cJSON_AddStringToObject(status, "message", "the runner stopped before this node finished");
        cJSON_DeleteItemFromObjectCaseSensitive(status, "finishedAt");
        cJSON_AddStringToObject(status, "finishedAt", when);
        char *text = cJSON_PrintUnformatted(status);
        if (text != NULL)
            wf_store_node_put(store, name, id, seq,
                              cJSON_GetObjectItemCaseSensitive(row, "parent")->valuestring, text,
                              0, 0);
        free(text);
    }
    cJSON_Delete(rows);
}

int wf_recover(wf_store *store, const char *data_root)
{
    cJSON *runs = NULL;
    int marked = 0;
    if (wf_store_run_list(store, &runs) != 0)
        return -1;
    for (cJSON *run = runs->child; run != NULL; run = run->next) {
        const char *name = cJSON_GetObjectItemCaseSensitive(run, "name")->valuestring;
        const char *phase = cJSON_GetObjectItemCaseSensitive(run, "phase")->valuestring;
        if (wf_phase_final(phase) || runner_alive(data_root, name))
            continue;
        const double now = dm_wall_seconds();
        recover_nodes(store, name, now);
        char message[256];
        snprintf(message, sizeof message,
                 "the runner (pid %d) stopped before the workflow finished",
                 (int)cJSON_GetObjectItemCaseSensitive(run, "runnerPid")->valuedouble);
        wf_store_run_finish(store, name, "Error", message, now);
        DM_WARN("workflow %s: %s; marked Error", name, message);
        marked++;
    }
    cJSON_Delete(runs);
    return marked;
}
