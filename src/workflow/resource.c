/*
 * Resource templates with action create, run locally in place of the
 * operator that would act on the manifest in a cluster:
 *
 *   kubeflow.org MPIJob: the Launcher container's command runs on this
 *     machine. A command that starts with mpirun runs as it is; any other
 *     runs as "mpirun -np N COMMAND", N being the Worker replicas times
 *     slotsPerWorker. The ranks run here instead of on worker pods, so the
 *     Worker container (sshd in the MPI Operator's examples) is not run.
 *   kubeflow.org TFJob: "mpirun -np N COMMAND" with the Worker replicas
 *     and the Worker container's command. TF_CONFIG is not set, because
 *     distml's workers find each other through MPI.
 *   serving.kserve.io InferenceService: "distml router" for the
 *     predictor's pvc:// storageUri (model.storageUri, or STORAGE_URI in a
 *     custom predictor's container). The predictor's scaleMetric,
 *     scaleTarget, minReplicas, maxReplicas, containerConcurrency and
 *     timeout become the router's flags. The router runs detached in its
 *     own session and is recorded in the store, so that
 *     `distml workflow services` lists it and `services stop NAME` stops
 *     it and its replicas. The router listens on 127.0.0.1 on the first
 *     free port from 8501 up. A custom container's own command, port and
 *     bind address apply only on a cluster.
 *
 * Volumes, mountPath rewriting and the "distml" command word work as in
 * pod.c, with the volumes and volumeMounts of the manifest's pod template.
 * Images, resources, scheduling and restart policies in the manifest apply
 * only on a cluster.
 *
 * successCondition and failureCondition are Kubernetes label selectors
 * over a status object that this file writes the way the operators do:
 * replicaStatuses and conditions for jobs, modelStatus, url and
 * conditions for the InferenceService. As in Argo, a matching failure
 * condition fails the step and success needs every success requirement.
 * NOTE: a job's conditions are evaluated once, on its final status after
 * mpirun exits, so a condition that a cluster would meet while the job
 * runs (such as Launcher active = 1) is met only if the final status
 * meets it. A job template without conditions succeeds when mpirun exits
 * 0, where Argo would succeed as soon as the job is created.
 */
#define _GNU_SOURCE /* pipe2 */
#include "workflow/engine.h"
#include "workflow/path_map.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "workflow/process.h"
#include "workflow/selector.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The first port tried for an InferenceService's REST API: TensorFlow
 * Serving's usual REST port. */
#define SERVICE_FIRST_PORT 8501
#define SERVICE_PORT_TRIES 100

/* How often the model status of a starting service is polled. */
#define SERVICE_POLL_SECONDS 0.5

/* ---- manifest access ---- */

static const ydoc_node *path_get(const ydoc_node *node, const char *const *keys)
{
    for (const char *const *k = keys; node != NULL && *k != NULL; k++)
        node = ydoc_get(node, *k);
    return node;
}

static const char *scalar_at(const ydoc_node *node, const char *const *keys)
{
    const ydoc_node *n = path_get(node, keys);
    return n != NULL && n->kind == YDOC_SCALAR ? n->value : NULL;
}

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

static long long int_at(const ydoc_node *node, const char *const *keys, long long fallback)
{
    const char *text = scalar_at(node, keys);
    return text != NULL ? strtoll(text, NULL, 10) : fallback;
}

/* The command of CONTAINER (command then args) as a NULL-ended array of
 * copies, or NULL when it has none. */
static char **container_argv(const ydoc_node *container, size_t *count)
{
    const ydoc_node *parts[] = {ydoc_get(container, "command"), ydoc_get(container, "args")};
    size_t n = 0;
    for (int i = 0; i < 2; i++)
        n += parts[i] != NULL && parts[i]->kind == YDOC_SEQ ? parts[i]->count : 0;
    *count = n;
    if (n == 0)
        return NULL;
    char **argv = calloc(n + 1, sizeof *argv);
    size_t k = 0;
    for (int i = 0; argv != NULL && i < 2; i++) {
        if (parts[i] == NULL || parts[i]->kind != YDOC_SEQ)
            continue;
        for (size_t j = 0; j < parts[i]->count; j++)
            argv[k++] = strdup(parts[i]->items[j]->kind == YDOC_SCALAR ? parts[i]->items[j]->value
                                                                       : "");
    }
    return argv;
}

/* ---- paths, as in pod.c, for a manifest's pod template ---- */

/* Map the volumeMounts of CONTAINER, whose pod spec is POD_SPEC, to claim
 * folders in MAP. */
static int plan_mounts(wf_engine *e, const ydoc_node *pod_spec, const ydoc_node *container,
                       path_map *map)
{
    const ydoc_node *mounts = ydoc_get(container, "volumeMounts");
    const ydoc_node *volumes = ydoc_get(pod_spec, "volumes");
    if (mounts == NULL || mounts->kind != YDOC_SEQ)
        return 0;
    for (size_t i = 0; i < mounts->count; i++) {
        const char *name = scalar_at(mounts->items[i], KEYS("name"));
        const char *mount_path = scalar_at(mounts->items[i], KEYS("mountPath"));
        const char *sub_path = scalar_at(mounts->items[i], KEYS("subPath"));
        const char *claim = NULL;
        for (size_t v = 0; volumes != NULL && volumes->kind == YDOC_SEQ && v < volumes->count;
             v++) {
            const char *volume = scalar_at(volumes->items[v], KEYS("name"));
            if (volume != NULL && name != NULL && strcmp(volume, name) == 0)
                claim = scalar_at(volumes->items[v],
                                  KEYS("persistentVolumeClaim", "claimName"));
        }
        if (mount_path == NULL || claim == NULL)
            return dm_fail("volumeMount %s: only persistentVolumeClaim volumes can be mapped to "
                           "a folder here",
                           name != NULL ? name : "(unnamed)");
        char dir[4096];
        if (wf_claim_dir(e, claim, sub_path, dir, sizeof dir) != 0)
            return -1;
        if (wf_path_map_add(map, mount_path, dir, false) != 0)
            return -1;
    }
    return 0;
}

/* The process environment: the runner's, the container's env (mapped),
 * and the extra entries EXTRA (NULL-ended). Returns malloc'd entries. */
static char **job_environment(wf_engine *e, const ydoc_node *container, const path_map *map,
                              const char *const *extra)
{
    const ydoc_node *env = ydoc_get(container, "env");
    size_t base = 0, own = env != NULL && env->kind == YDOC_SEQ ? env->count : 0, more = 0;
    while (e->env_base[base] != NULL)
        base++;
    while (extra != NULL && extra[more] != NULL)
        more++;
    char **out = calloc(base + own + more + 1, sizeof *out);
    if (out == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < own; i++) {
        const char *name = scalar_at(env->items[i], KEYS("name"));
        const char *value = scalar_at(env->items[i], KEYS("value"));
        if (name == NULL)
            continue;
        char *mapped = wf_path_map_apply(map, value != NULL ? value : "");
        size_t len = strlen(name) + (mapped ? strlen(mapped) : 0) + 2;
        out[n] = malloc(len);
        if (out[n] != NULL)
            snprintf(out[n++], len, "%s=%s", name, mapped ? mapped : "");
        free(mapped);
    }
    for (size_t i = 0; i < more; i++)
        out[n++] = strdup(extra[i]);
    for (size_t i = 0; i < base; i++) {
        const char *eq = strchr(e->env_base[i], '=');
        size_t len = eq != NULL ? (size_t)(eq - e->env_base[i]) + 1 : strlen(e->env_base[i]);
        bool overridden = false;
        for (size_t j = 0; j < n && !overridden; j++)
            overridden = out[j] != NULL && strncmp(out[j], e->env_base[i], len) == 0;
        if (!overridden)
            out[n++] = strdup(e->env_base[i]);
    }
    return out;
}

static void free_argv(char **argv)
{
    for (size_t i = 0; argv != NULL && argv[i] != NULL; i++)
        free(argv[i]);
    free(argv);
}

/* Replace "distml" words that do not exist here with this binary, and
 * map volume paths, in ARGV. */
static void map_argv(wf_engine *e, char **argv, const path_map *map)
{
    for (size_t i = 0; argv[i] != NULL; i++) {
        const char *base = strrchr(argv[i], '/');
        base = base != NULL ? base + 1 : argv[i];
        if (strcmp(base, "distml") == 0 && e->options->self_exe != NULL &&
            !(strchr(argv[i], '/') != NULL && access(argv[i], X_OK) == 0)) {
            free(argv[i]);
            argv[i] = strdup(e->options->self_exe);
            continue;
        }
        char *mapped = wf_path_map_apply(map, argv[i]);
        if (mapped != NULL) {
            free(argv[i]);
            argv[i] = mapped;
        }
    }
}

/* ---- conditions ---- */

/* Evaluate the template's conditions on OBJECT as Argo's executor does.
 * Returns 1 for success, -1 for failure (MESSAGE names the requirement),
 * and 0 when neither matched. */
static int check_conditions(const wf_resource *r, const wf_scope *scope, const cJSON *object,
                            char *message, size_t capacity)
{
    const char *texts[] = {r->failure_condition, r->success_condition};
    wf_selector *selectors[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        char *text = NULL;
        if (texts[i] == NULL)
            continue;
        if (wf_substitute(texts[i], scope, NULL, false, &text) != 0 ||
            wf_selector_parse(text, &selectors[i]) != 0) {
            snprintf(message, capacity, "%s", dm_error());
            free(text);
            wf_selector_free(selectors[0]);
            return -1;
        }
        free(text);
    }
    int verdict = 0;
    for (size_t k = 0; selectors[0] != NULL && k < wf_selector_count(selectors[0]); k++) {
        if (wf_selector_matches(selectors[0], k, object)) {
            snprintf(message, capacity, "failure condition '%s' evaluated true",
                     wf_selector_text(selectors[0], k));
            verdict = -1;
            break;
        }
    }
    if (verdict == 0 && selectors[1] != NULL) {
        size_t matched = 0, total = wf_selector_count(selectors[1]);
        for (size_t k = 0; k < total; k++)
            matched += wf_selector_matches(selectors[1], k, object) ? 1 : 0;
        if (matched == total)
            verdict = 1;
        else
            snprintf(message, capacity, "%zu/%zu success conditions matched", matched, total);
    }
    wf_selector_free(selectors[0]);
    wf_selector_free(selectors[1]);
    return verdict;
}

/* The manifest with a synthesized status, as JSON for the conditions. */
static cJSON *object_with_status(const ydoc_node *manifest, const char *name, cJSON *status)
{
    cJSON *object = ydoc_to_json(manifest);
    if (object == NULL) {
        cJSON_Delete(status);
        return NULL;
    }
    cJSON *metadata = cJSON_GetObjectItemCaseSensitive(object, "metadata");
    if (cJSON_IsObject(metadata) && cJSON_GetObjectItemCaseSensitive(metadata, "name") == NULL)
        cJSON_AddStringToObject(metadata, "name", name);
    cJSON_DeleteItemFromObjectCaseSensitive(object, "status");
    cJSON_AddItemToObject(object, "status", status);
    return object;
}

static void add_condition(cJSON *conditions, const char *type, const char *reason,
                          const char *message, double when)
{
    char stamp[32];
    wf_format_time(when, stamp, sizeof stamp);
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "type", type);
    cJSON_AddStringToObject(c, "status", "True");
    cJSON_AddStringToObject(c, "reason", reason);
    cJSON_AddStringToObject(c, "message", message);
    cJSON_AddStringToObject(c, "lastUpdateTime", stamp);
    cJSON_AddStringToObject(c, "lastTransitionTime", stamp);
    cJSON_AddItemToArray(conditions, c);
}

static cJSON *replica_status(long long active, long long succeeded, long long failed)
{
    cJSON *r = cJSON_CreateObject();
    if (active > 0)
        cJSON_AddNumberToObject(r, "active", (double)active);
    if (succeeded > 0)
        cJSON_AddNumberToObject(r, "succeeded", (double)succeeded);
    if (failed > 0)
        cJSON_AddNumberToObject(r, "failed", (double)failed);
    return r;
}

/* The final status of a job, as the MPI Operator (v2beta1) and the
 * training operator (TFJob) report it: the launcher's or workers'
 * succeeded and failed counts, and Created, Running and Succeeded or
 * Failed conditions. */
static cJSON *job_status(bool mpi, const char *namespace_name, const char *name, long long workers,
                         int exit_code, double started, double finished)
{
    cJSON *status = cJSON_CreateObject();
    cJSON *conditions = cJSON_AddArrayToObject(status, "conditions");
    const char *kind = mpi ? "MPIJob" : "TFJob";
    char message[512], reason[64];
    snprintf(reason, sizeof reason, "%sCreated", kind);
    snprintf(message, sizeof message, "%s %s/%s is created.", kind, namespace_name, name);
    add_condition(conditions, "Created", reason, message, started);
    snprintf(reason, sizeof reason, "%sRunning", kind);
    snprintf(message, sizeof message, "%s %s/%s is running.", kind, namespace_name, name);
    add_condition(conditions, "Running", reason, message, started);
    bool ok = exit_code == 0;
    snprintf(reason, sizeof reason, "%s%s", kind, ok ? "Succeeded" : "Failed");
    if (ok)
        snprintf(message, sizeof message, "%s %s/%s successfully completed.", kind,
                 namespace_name, name);
    else
        snprintf(message, sizeof message, "%s %s/%s has failed: mpirun exited with status %d.",
                 kind, namespace_name, name, exit_code);
    add_condition(conditions, ok ? "Succeeded" : "Failed", reason, message, finished);
    cJSON *replicas = cJSON_AddObjectToObject(status, "replicaStatuses");
    if (mpi)
        cJSON_AddItemToObject(replicas, "Launcher", replica_status(0, ok ? 1 : 0, ok ? 0 : 1));
    /* NOTE: on a cluster an MPIJob's workers run sshd and are not counted
     * as succeeded. Here every rank ran to the end, so all workers are. */
    cJSON_AddItemToObject(replicas, "Worker", replica_status(0, ok ? workers : 0, ok ? 0 : 1));
    char stamp[32];
    wf_format_time(started, stamp, sizeof stamp);
    cJSON_AddStringToObject(status, "startTime", stamp);
    wf_format_time(finished, stamp, sizeof stamp);
    cJSON_AddStringToObject(status, "completionTime", stamp);
    return status;
}

/* ---- jobs ---- */

typedef struct {
    wf_engine *e;
    wf_node *node;
} job_start_context;

static void on_job_start(void *context, pid_t pid, int64_t start_ticks)
{
    job_start_context *c = context;
    wf_node_set_process(c->e, c->node, pid, start_ticks);
    wf_node_set_phase(c->e, c->node, "Running");
}

static bool is_mpirun(const char *word)
{
    const char *base = strrchr(word, '/');
    base = base != NULL ? base + 1 : word;
    return strcmp(base, "mpirun") == 0 || strcmp(base, "mpiexec") == 0 ||
           strcmp(base, "orterun") == 0;
}

static int run_job(wf_engine *e, const wf_invocation *inv, const wf_scope *scope, wf_node *node,
                   const ydoc_node *manifest, bool mpi, const char *name, char *message,
                   size_t capacity)
{
    const char *const replica_key = mpi ? "mpiReplicaSpecs" : "tfReplicaSpecs";
    const ydoc_node *specs = path_get(manifest, KEYS("spec", replica_key));
    const ydoc_node *runner = mpi ? ydoc_get(specs, "Launcher") : ydoc_get(specs, "Worker");
    const ydoc_node *pod_spec = path_get(runner, KEYS("template", "spec"));
    const ydoc_node *containers = ydoc_get(pod_spec, "containers");
    if (containers == NULL || containers->kind != YDOC_SEQ || containers->count == 0) {
        snprintf(message, capacity, "%s: spec.%s.%s.template.spec.containers is missing",
                 mpi ? "MPIJob" : "TFJob", replica_key, mpi ? "Launcher" : "Worker");
        return -1;
    }
    const ydoc_node *container = containers->items[0];
    long long workers = int_at(specs, KEYS("Worker", "replicas"), mpi ? 0 : 1);
    long long slots = mpi ? int_at(manifest, KEYS("spec", "slotsPerWorker"), 1) : 1;
    long long ranks = workers * (slots > 0 ? slots : 1);
    if (ydoc_get(specs, "Chief") != NULL || ydoc_get(specs, "PS") != NULL ||
        ydoc_get(specs, "Master") != NULL || ydoc_get(specs, "Evaluator") != NULL)
        DM_WARN("workflow %s: %s %s: only the Worker replicas run here; Chief, Master, PS and "
                "Evaluator replicas are not started",
                e->name, mpi ? "MPIJob" : "TFJob", name);
    size_t argc = 0;
    char **command = container_argv(container, &argc);
    if (command == NULL) {
        snprintf(message, capacity, "%s %s: the %s container has no command", mpi ? "MPIJob" : "TFJob",
                 name, mpi ? "Launcher" : "Worker");
        return -1;
    }
    char **argv = NULL;
    if (is_mpirun(command[0])) {
        argv = command;
    } else {
        if (ranks < 1) {
            snprintf(message, capacity, "%s %s: Worker replicas must be at least 1",
                     mpi ? "MPIJob" : "TFJob", name);
            free_argv(command);
            return -1;
        }
        argv = calloc(argc + 4, sizeof *argv);
        char np[32];
        snprintf(np, sizeof np, "%lld", ranks);
        argv[0] = strdup("mpirun");
        argv[1] = strdup("-np");
        argv[2] = strdup(np);
        for (size_t i = 0; i < argc; i++)
            argv[i + 3] = command[i];
        free(command);
    }
    path_map map = {0};
    char pod_name[512], pod_dir[4600], log_path[4600], marker[512];
    wf_pod_name(e->name, inv->tmpl->name, inv->node_name, pod_name, sizeof pod_name);
    snprintf(pod_dir, sizeof pod_dir, "%s/%s", e->pods_dir, pod_name);
    snprintf(log_path, sizeof log_path, "%s/%s.log", e->logs_dir, pod_name);
    snprintf(marker, sizeof marker, "DISTML_WORKFLOW_NODE=%s/%s", e->name, node->id);
    if (plan_mounts(e, pod_spec, container, &map) != 0 || fs_mkdir_p(pod_dir) != 0 ||
        fs_mkdir_p(e->logs_dir) != 0) {
        snprintf(message, capacity, "%s", dm_error());
        free_argv(argv);
        wf_path_map_free(&map);
        return -1;
    }
    map_argv(e, argv, &map);
    /* The ranks share this machine, which may have fewer cores than ranks. */
    const char *extra[] = {marker, "OMPI_MCA_rmaps_base_oversubscribe=1", NULL};
    char **envp = job_environment(e, container, &map, extra);
    const char *working_dir = scalar_at(container, KEYS("workingDir"));
    char *cwd = working_dir != NULL ? wf_path_map_apply(&map, working_dir) : NULL;
    DM_INFO("workflow %s: %s %s runs %lld rank%s here: %s ...", e->name, mpi ? "MPIJob" : "TFJob",
            name, ranks, ranks == 1 ? "" : "s", argv[0]);
    job_start_context sc = {e, node};
    wf_process_spec ps = {
        .argv = argv,
        .envp = envp,
        .cwd = cwd != NULL ? cwd : pod_dir,
        .log_path = log_path,
        .stdout_keep = 4096,
        .deadline = inv->deadline,
        .cancel = &e->cancel,
        .on_start = on_job_start,
        .context = &sc,
    };
    wf_process_result result;
    const double started = dm_wall_seconds();
    int rc = wf_process_run(&ps, &result);
    const double finished = dm_wall_seconds();
    free_argv(argv);
    free_argv(envp);
    free(cwd);
    wf_path_map_free(&map);
    if (rc != 0 || result.start_failed) {
        snprintf(message, capacity, "%s", rc != 0 ? dm_error() : result.error);
        wf_process_result_free(&result);
        return -1;
    }
    if (result.cancelled || result.timed_out) {
        snprintf(message, capacity, "%s",
                 result.cancelled ? wf_engine_stop_message(e, inv->deadline)
                                  : "Step exceeded its deadline");
        wf_process_result_free(&result);
        return -2;
    }
    const int exit_code = result.exit_code;
    wf_process_result_free(&result);
    const char *namespace_name = scalar_at(manifest, KEYS("metadata", "namespace"));
    cJSON *object = object_with_status(
        manifest, name,
        job_status(mpi, namespace_name != NULL ? namespace_name : e->namespace_name, name,
                   workers, exit_code, started, finished));
    const wf_resource *r = &inv->tmpl->resource;
    int verdict;
    if (r->success_condition == NULL && r->failure_condition == NULL) {
        verdict = exit_code == 0 ? 1 : -1;
        if (verdict < 0)
            snprintf(message, capacity, "mpirun exited with status %d", exit_code);
    } else {
        verdict = check_conditions(r, scope, object, message, capacity);
        if (verdict == 0) {
            char partial[256];
            snprintf(partial, sizeof partial, "%s", message);
            snprintf(message, capacity,
                     "the job ended (mpirun status %d) and neither the success nor the failure "
                     "condition matched its status: %s",
                     exit_code, partial);
            verdict = -1;
        }
    }
    cJSON_Delete(object);
    return verdict > 0 ? 0 : -2;
}

/* ---- InferenceService ---- */

/* A free TCP port on 127.0.0.1 from SERVICE_FIRST_PORT up, or 0. */
static int free_port(void)
{
    for (int port = SERVICE_FIRST_PORT; port < SERVICE_FIRST_PORT + SERVICE_PORT_TRIES; port++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return 0;
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
        close(fd);
        if (ok)
            return port;
    }
    return 0;
}

/* GET PATH from 127.0.0.1:PORT. Returns the HTTP status (0 when there is
 * no response) and the body in a malloc'd *BODY. */
static int http_get(int port, const char *path, char **body)
{
    *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return 0;
    }
    char request[1024];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path,
                     port);
    if (write(fd, request, (size_t)n) != n) {
        close(fd);
        return 0;
    }
    size_t capacity = 8192, size = 0;
    char *data = malloc(capacity);
    const double until = dm_monotonic_seconds() + 5.0;
    while (data != NULL && dm_monotonic_seconds() < until) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0)
            continue;
        if (size + 4096 > capacity) {
            char *grown = realloc(data, capacity * 2);
            if (grown == NULL)
                break;
            data = grown;
            capacity *= 2;
        }
        ssize_t got = read(fd, data + size, capacity - size - 1);
        if (got <= 0)
            break;
        size += (size_t)got;
    }
    close(fd);
    if (data == NULL)
        return 0;
    data[size] = '\0';
    int status = 0;
    if (sscanf(data, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
    const char *start = strstr(data, "\r\n\r\n");
    *body = strdup(start != NULL ? start + 4 : "");
    free(data);
    return status;
}

/* Start the service's process detached, in its own session, with its output in
 * LOG. Returns its pid, or -1. */
static pid_t start_service(wf_engine *e, char *const *argv, const char *log, const char *marker)
{
    size_t base = 0;
    while (e->env_base[base] != NULL)
        base++;
    char **envp = calloc(base + 2, sizeof *envp);
    if (envp == NULL)
        return -1;
    for (size_t i = 0; i < base; i++)
        envp[i] = e->env_base[i];
    envp[base] = (char *)marker;
    int pipe_fd[2];
    if (pipe2(pipe_fd, O_CLOEXEC) != 0) {
        free(envp);
        return -1;
    }
    pid_t child = fork();
    if (child == 0) {
        /* The intermediate child exits at once, so the server is adopted
         * by init and outlives the runner. */
        setsid();
        pid_t server = fork();
        if (server == 0) {
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, NULL);
            int null_fd = open("/dev/null", O_RDONLY);
            int log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (null_fd >= 0)
                dup2(null_fd, STDIN_FILENO);
            if (log_fd >= 0) {
                dup2(log_fd, STDOUT_FILENO);
                dup2(log_fd, STDERR_FILENO);
            }
            execve(argv[0], argv, envp);
            _exit(127);
        }
        ssize_t ignored = write(pipe_fd[1], &server, sizeof server);
        (void)ignored;
        _exit(server > 0 ? 0 : 1);
    }
    close(pipe_fd[1]);
    pid_t server = -1;
    if (child > 0) {
        if (read(pipe_fd[0], &server, sizeof server) != (ssize_t)sizeof server)
            server = -1;
        waitpid(child, NULL, 0);
    }
    close(pipe_fd[0]);
    free(envp);
    return server;
}

static bool service_alive(pid_t pid, int64_t start_ticks)
{
    return pid > 1 && start_ticks != 0 && wf_process_start_ticks(pid) == start_ticks;
}

/* The InferenceService status, as KServe reports it, from the model's
 * TF Serving status: Loaded and UpToDate once a version is AVAILABLE. */
static cJSON *service_status(const char *name, int port, bool running, const char *body,
                             double now)
{
    bool available = body != NULL && strstr(body, "\"AVAILABLE\"") != NULL;
    cJSON *status = cJSON_CreateObject();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    cJSON_AddStringToObject(status, "url", url);
    cJSON *address = cJSON_AddObjectToObject(status, "address");
    cJSON_AddStringToObject(address, "url", url);
    cJSON *states = cJSON_AddObjectToObject(cJSON_AddObjectToObject(status, "modelStatus"),
                                            "states");
    const char *active = "FailedToLoad", *target = "FailedToLoad";
    const char *transition = "BlockedByFailedLoad";
    if (available) {
        active = "Loaded";
        target = "Loaded";
        transition = "UpToDate";
    } else if (running) {
        active = "Pending";
        target = "Loading";
        transition = "InProgress";
    }
    cJSON_AddStringToObject(states, "activeModelState", active);
    cJSON_AddStringToObject(states, "targetModelState", target);
    cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(status, "modelStatus"),
                            "transitionStatus", transition);
    cJSON_AddStringToObject(states, "transitionStatus", transition);
    cJSON *conditions = cJSON_AddArrayToObject(status, "conditions");
    char stamp[32];
    wf_format_time(now, stamp, sizeof stamp);
    const char *types[] = {"PredictorReady", "Ready"};
    for (int i = 0; i < 2; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "type", types[i]);
        cJSON_AddStringToObject(c, "status", available ? "True" : "False");
        cJSON_AddStringToObject(c, "lastTransitionTime", stamp);
        cJSON_AddItemToArray(conditions, c);
    }
    (void)name;
    return status;
}

/* Read the predictor's integer field KEY into *OUT, FALLBACK when it is
 * absent; false when it is not a whole decimal number. */
static bool whole_field(const ydoc_node *predictor, const char *key, long long fallback,
                        long long *out)
{
    const char *text = scalar_at(predictor, KEYS(key));
    if (text == NULL) {
        *out = fallback;
        return true;
    }
    char *end;
    errno = 0;
    *out = strtoll(text, &end, 10);
    return end != text && *end == '\0' && errno == 0;
}

/* Write the router's flags for the predictor's fields into ARGS: metric,
 * target, min and max replicas, container concurrency and request timeout
 * in ms, with KServe's defaults and checks. */
static int router_flags(wf_engine *e, const ydoc_node *predictor, const char *name,
                        char args[6][32], char *message, size_t capacity)
{
    const char *metric = scalar_at(predictor, KEYS("scaleMetric"));
    const char *fields[] = {"scaleTarget", "minReplicas", "maxReplicas", "containerConcurrency",
                            "timeout"};
    const long long fallbacks[] = {0, 1, 0, 0, 300};
    long long values[5];
    for (int i = 0; i < 5; i++) {
        if (!whole_field(predictor, fields[i], fallbacks[i], &values[i])) {
            snprintf(message, capacity,
                     "InferenceService %s: spec.predictor.%s must be a whole number (got '%s')",
                     name, fields[i], scalar_at(predictor, KEYS(fields[i])));
            return -1;
        }
    }
    const bool has_target = scalar_at(predictor, KEYS("scaleTarget")) != NULL;
    long long target = values[0], min = values[1], max = values[2];
    const long long concurrency = values[3], timeout = values[4];
    if (metric == NULL)
        metric = "concurrency";
    const char *problem = NULL;
    if (strcmp(metric, "concurrency") != 0 && strcmp(metric, "rps") != 0)
        problem = "spec.predictor.scaleMetric must be concurrency or rps here (cpu and memory "
                  "need the Kubernetes HPA)";
    else if (min < 0)
        problem = "'MinReplicas' cannot be less than 0";
    else if (max < 0)
        problem = "'MaxReplicas' cannot be less than 0";
    else if (max != 0 && min > max)
        problem = "'MinReplicas' cannot be greater than MaxReplicas";
    else if (has_target && target < 1)
        problem = "spec.predictor.scaleTarget must be at least 1";
    else if (concurrency < 0)
        problem = "spec.predictor.containerConcurrency cannot be less than 0";
    else if (timeout < 1)
        problem = "spec.predictor.timeout must be at least 1 second";
    else if (min > 1000 || max > 1000)
        problem = "minReplicas and maxReplicas must be at most 1000 on one machine";
    else if (target > 1000000 || concurrency > 1000000 || timeout > 86400)
        problem = "scaleTarget and containerConcurrency must be at most 1000000 and timeout at "
                  "most 86400 seconds";
    if (problem != NULL) {
        snprintf(message, capacity, "InferenceService %s: %s", name, problem);
        return -1;
    }
    if (min == 0) {
        /* NOTE: the local router keeps at least one replica, where
         * Knative would scale to zero. */
        DM_WARN("workflow %s: InferenceService %s: minReplicas 0 (scale to zero) runs with "
                "one replica here",
                e->name, name);
        min = 1;
    }
    /* maxReplicas 0 is "no explicit maximum"; the router's default bounds
     * it on one machine. */
    if (max == 0)
        max = min > 10 ? min : 10;
    if (!has_target)
        target = strcmp(metric, "rps") == 0 ? 200 : 100;
    snprintf(args[0], 32, "%s", metric);
    snprintf(args[1], 32, "%lld", target);
    snprintf(args[2], 32, "%lld", min);
    snprintf(args[3], 32, "%lld", max);
    snprintf(args[4], 32, "%lld", concurrency);
    snprintf(args[5], 32, "%lld", timeout * 1000);
    return 0;
}

static int run_service(wf_engine *e, const wf_invocation *inv, const wf_scope *scope,
                       wf_node *node, const ydoc_node *manifest, const char *name, char *message,
                       size_t capacity)
{
    const ydoc_node *predictor = path_get(manifest, KEYS("spec", "predictor"));
    const char *uri = scalar_at(predictor, KEYS("model", "storageUri"));
    if (uri == NULL)
        uri = scalar_at(predictor, KEYS("tensorflow", "storageUri"));
    /* A custom predictor names its model in STORAGE_URI. */
    const ydoc_node *containers = ydoc_get(predictor, "containers");
    const ydoc_node *env = containers != NULL && containers->kind == YDOC_SEQ && containers->count
                               ? ydoc_get(containers->items[0], "env")
                               : NULL;
    for (size_t i = 0; uri == NULL && env != NULL && env->kind == YDOC_SEQ && i < env->count; i++) {
        const char *env_name = scalar_at(env->items[i], KEYS("name"));
        if (env_name != NULL && strcmp(env_name, "STORAGE_URI") == 0)
            uri = scalar_at(env->items[i], KEYS("value"));
    }
    if (uri == NULL || strncmp(uri, "pvc://", 6) != 0) {
        snprintf(message, capacity,
                 "InferenceService %s: spec.predictor.model.storageUri, or STORAGE_URI in the "
                 "predictor's container, must be pvc://CLAIM/PATH to be served here (got %s)",
                 name, uri != NULL ? uri : "none");
        return -1;
    }
    char claim[256], base_path[4096];
    const char *slash = strchr(uri + 6, '/');
    size_t claim_len = slash != NULL ? (size_t)(slash - uri - 6) : strlen(uri + 6);
    snprintf(claim, sizeof claim, "%.*s", (int)claim_len, uri + 6);
    if (wf_claim_dir(e, claim, slash != NULL && slash[1] != '\0' ? slash + 1 : NULL, base_path,
                     sizeof base_path) != 0) {
        snprintf(message, capacity, "%s", dm_error());
        return -1;
    }
    cJSON *existing = NULL;
    if (wf_store_service_list(e->store, &existing) == 0) {
        for (cJSON *s = existing->child; s != NULL; s = s->next) {
            const char *other = cJSON_GetObjectItemCaseSensitive(s, "name")->valuestring;
            pid_t pid = (pid_t)cJSON_GetObjectItemCaseSensitive(s, "pid")->valuedouble;
            int64_t ticks = (int64_t)cJSON_GetObjectItemCaseSensitive(s, "pidStart")->valuedouble;
            if (strcmp(other, name) == 0 && service_alive(pid, ticks)) {
                snprintf(message, capacity,
                         "inferenceservices.serving.kserve.io \"%s\" already exists: stop it "
                         "with 'distml workflow services stop %s'",
                         name, name);
                cJSON_Delete(existing);
                return -1;
            }
        }
        cJSON_Delete(existing);
    }
    int port = free_port();
    if (port == 0 || e->options->self_exe == NULL) {
        snprintf(message, capacity, "InferenceService %s: %s", name,
                 port == 0 ? "no free port on 127.0.0.1" : "the distml binary is unknown");
        return -1;
    }
    char services_dir[4096], log[4400], port_text[16], marker[512];
    snprintf(services_dir, sizeof services_dir, "%s/services", e->options->data_root);
    snprintf(log, sizeof log, "%s/%s.log", services_dir, name);
    snprintf(port_text, sizeof port_text, "%d", port);
    snprintf(marker, sizeof marker, "DISTML_SERVICE=%s", name);
    if (fs_mkdir_p(services_dir) != 0) {
        snprintf(message, capacity, "%s", dm_error());
        return -1;
    }
    char router_args[6][32];
    if (router_flags(e, predictor, name, router_args, message, capacity) != 0)
        return -1;
    char *argv[] = {(char *)e->options->self_exe, "router", "--port", port_text,
                    "--model_name", (char *)name, "--model_base_path", base_path,
                    "--scale_metric", router_args[0], "--scale_target", router_args[1],
                    "--min_replicas", router_args[2], "--max_replicas", router_args[3],
                    "--container_concurrency", router_args[4],
                    "--request_timeout_ms", router_args[5], NULL};
    pid_t pid = start_service(e, argv, log, marker);
    int64_t ticks = pid > 0 ? wf_process_start_ticks(pid) : 0;
    if (pid <= 0 || ticks == 0) {
        snprintf(message, capacity, "InferenceService %s: cannot start distml router; see %s",
                 name, log);
        return -1;
    }
    wf_store_service_put(e->store, name, e->name, node->id, pid, ticks, port, base_path, log,
                         dm_wall_seconds());
    wf_node_set_phase(e, node, "Running");
    DM_INFO("workflow %s: InferenceService %s: distml router (pid %d) on http://127.0.0.1:%d "
            "for %s, %s replicas, %s target %s",
            e->name, name, (int)pid, port, base_path, router_args[2], router_args[0],
            router_args[1]);

    const wf_resource *r = &inv->tmpl->resource;
    if (r->success_condition == NULL && r->failure_condition == NULL)
        return 0;
    char path[512];
    snprintf(path, sizeof path, "/v1/models/%s", name);
    for (;;) {
        bool running = service_alive(pid, ticks);
        char *body = NULL;
        if (running)
            http_get(port, path, &body);
        cJSON *object =
            object_with_status(manifest, name, service_status(name, port, running, body,
                                                              dm_wall_seconds()));
        free(body);
        int verdict = check_conditions(r, scope, object, message, capacity);
        cJSON_Delete(object);
        if (verdict != 0)
            return verdict > 0 ? 0 : -2;
        if (!running) {
            char partial[256];
            snprintf(partial, sizeof partial, "%s", message);
            snprintf(message, capacity,
                     "InferenceService %s: distml router exited before the success condition "
                     "matched (%s); see %s",
                     name, partial, log);
            return -2;
        }
        if (wf_engine_stopping(e, inv->deadline)) {
            snprintf(message, capacity, "%s", wf_engine_stop_message(e, inv->deadline));
            return -2;
        }
        struct timespec pause = {0, (long)(SERVICE_POLL_SECONDS * 1e9)};
        nanosleep(&pause, NULL);
    }
}

wf_node *wf_resource_execute(wf_engine *e, const wf_invocation *inv, const wf_scope *scope,
                             int retry)
{
    const wf_template *t = inv->tmpl;
    wf_node *node = wf_node_create(e, inv->node_name, inv->display_name, "Pod", t->name,
                                   inv->boundary_id, inv->parent_id, inv->link_parent, "Pending");
    if (node == NULL)
        return NULL;
    wf_scope pod_scope;
    wf_scope_init(&pod_scope, scope);
    char pod_name[512], retries[16];
    wf_pod_name(e->name, t->name, inv->node_name, pod_name, sizeof pod_name);
    snprintf(retries, sizeof retries, "%d", retry < 0 ? 0 : retry);
    wf_scope_set(&pod_scope, "pod.name", pod_name);
    wf_scope_set(&pod_scope, "retries", retries);

    char message[1024] = "";
    const char *phase = "Error";
    char *text = NULL;
    ydoc_node *manifest = NULL;
    if (wf_substitute(t->resource.manifest, &pod_scope, NULL, false, &text) != 0 ||
        ydoc_parse(text, strlen(text), "manifest", &manifest) != 0) {
        snprintf(message, sizeof message, "%s", dm_error());
        goto done;
    }
    const char *api = scalar_at(manifest, KEYS("apiVersion"));
    const char *kind = scalar_at(manifest, KEYS("kind"));
    const char *name = scalar_at(manifest, KEYS("metadata", "name"));
    const char *generate = scalar_at(manifest, KEYS("metadata", "generateName"));
    char generated[256];
    if (name == NULL && generate != NULL) {
        /* The suffix is derived from the node ID so that it is stable
         * within a run. */
        snprintf(generated, sizeof generated, "%s%s", generate, node->id + strlen(e->name) + 1);
        name = generated;
    }
    if (api == NULL || kind == NULL || name == NULL) {
        snprintf(message, sizeof message,
                 "the manifest needs apiVersion, kind and metadata.name or generateName");
        goto done;
    }
    int rc;
    if (strncmp(api, "kubeflow.org/", 13) == 0 &&
        (strcmp(kind, "MPIJob") == 0 || strcmp(kind, "TFJob") == 0))
        rc = run_job(e, inv, &pod_scope, node, manifest, strcmp(kind, "MPIJob") == 0, name,
                     message, sizeof message);
    else if (strncmp(api, "serving.kserve.io/", 18) == 0 &&
             strcmp(kind, "InferenceService") == 0)
        rc = run_service(e, inv, &pod_scope, node, manifest, name, message, sizeof message);
    else {
        snprintf(message, sizeof message, "%s %s is not supported by the local runner", api,
                 kind);
        rc = -1;
    }
    /* run_job and run_service return -2 when the resource failed and -1
     * when it could not be run at all. */
    if (rc == 0)
        phase = "Succeeded";
    else if (rc == -2)
        phase = "Failed";
    if (rc == 0)
        message[0] = '\0';
done:
    if (strcmp(phase, "Succeeded") != 0)
        DM_WARN("workflow %s: node %s (%s): %s", e->name, node->name, node->id, message);
    wf_node_finish(e, node, phase, message[0] != '\0' ? message : NULL);
    wf_pod_collect(e, node);
    ydoc_free(manifest);
    free(text);
    wf_scope_free(&pod_scope);
    return node;
}
