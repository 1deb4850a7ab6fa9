/*
 * distml workflow: run an Argo Workflows YAML file as local processes and
 * inspect the runs, node statuses, logs and memoization caches that the
 * data root's distml.db records.
 */
#include "cli/commands.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "cli/flags.h"
#include "data/dataset.h"
#include "workflow/process.h"
#include "workflow/run.h"
#include "workflow/spec.h"
#include "workflow/status.h"
#include "workflow/store.h"
#include "workflow/ydoc.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: distml workflow COMMAND [OPTIONS]\n"
            "\n"
            "Run Argo Workflows (argoproj.io/v1alpha1) files as local processes.\n"
            "\n"
            "commands:\n"
            "  run FILE [-p NAME=VALUE]...   run a workflow and wait for it\n"
            "  lint FILE...                  validate workflow files without running them\n"
            "  list                          list recorded runs\n"
            "  get NAME [-o yaml|json]       show a run and its node statuses\n"
            "  logs NAME [NODE]              print the logs of a run's pods\n"
            "  delete NAME                   delete a finished run and its files\n"
            "  cache list [CACHE]            list memoization cache entries\n"
            "  cache delete CACHE [KEY]      delete a cache or one of its entries\n"
            "  services                      list the model servers that runs started\n"
            "  services stop NAME            stop a model server\n"
            "\n"
            "Every command takes --data_root DIR (or $DISTML_DATA_ROOT) [%s].\n"
            "NAME may be @latest for the most recent run.\n"
            "Run 'distml workflow COMMAND --help' for the options of one command.\n",
            ds_default_data_root());
}

/* Options shared by the subcommands: --data_root, and -o for get. */
typedef struct {
    const char *data_root;
    const char *output;
    const char **param_names;
    const char **param_values;
    size_t param_count;
    bool quiet;
    char absolute_root[4096];
} common_options;

/* Parse ARGV's options into O, leaving the positional arguments in
 * ARGV[optind..]. Returns 0, or the exit status for --help and errors. */
static int parse_options(int argc, char **argv, const char *usage, common_options *o)
{
    enum { OPT_DATA_ROOT = 256, OPT_QUIET };
    static const struct option options[] = {
        {"data_root", required_argument, NULL, OPT_DATA_ROOT},
        {"parameter", required_argument, NULL, 'p'},
        {"output", required_argument, NULL, 'o'},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    o->data_root = ds_default_data_root();
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":hp:o:", options, NULL)) != -1) {
        switch (opt) {
        case OPT_DATA_ROOT:
            o->data_root = optarg;
            break;
        case OPT_QUIET:
            o->quiet = true;
            break;
        case 'o':
            if (strcmp(optarg, "yaml") != 0 && strcmp(optarg, "json") != 0 &&
                strcmp(optarg, "wide") != 0) {
                fprintf(stderr, "distml: error: invalid -o '%s': expected yaml or json\n",
                        optarg);
                return 2;
            }
            o->output = optarg;
            break;
        case 'p': {
            const char *eq = strchr(optarg, '=');
            if (eq == NULL || eq == optarg) {
                fprintf(stderr, "distml: error: invalid -p '%s': expected NAME=VALUE\n", optarg);
                return 2;
            }
            const char **names = realloc(o->param_names, (o->param_count + 1) * sizeof *names);
            const char **values =
                names != NULL ? realloc(o->param_values, (o->param_count + 1) * sizeof *values)
                              : NULL;
            if (names == NULL || values == NULL) {
                fprintf(stderr, "distml: error: out of memory\n");
                return 1;
            }
            o->param_names = names;
            o->param_values = values;
            names[o->param_count] = strndup(optarg, (size_t)(eq - optarg));
            values[o->param_count] = eq + 1;
            o->param_count++;
            break;
        }
        case 'h':
            fputs(usage, stdout);
            return -1;
        default:
            flag_report_getopt(opt, argv);
            fputs(usage, stderr);
            return 2;
        }
    }
    /* Steps run in their own working folders, so a relative data root is
     * made absolute against the directory the command started in. */
    if (o->data_root[0] != '/') {
        char cwd[2048];
        if (getcwd(cwd, sizeof cwd) == NULL) {
            fprintf(stderr, "distml: error: cannot resolve --data_root '%s': %s\n", o->data_root,
                    strerror(errno));
            return 1;
        }
        snprintf(o->absolute_root, sizeof o->absolute_root, "%s/%s", cwd, o->data_root);
        o->data_root = o->absolute_root;
    }
    return 0;
}

static void free_options(common_options *o)
{
    for (size_t i = 0; i < o->param_count; i++)
        free((char *)o->param_names[i]);
    free(o->param_names);
    free(o->param_values);
}

static int open_store(const common_options *o, wf_store **store)
{
    if (wf_store_open(o->data_root, store) != 0) {
        flag_report_error(NULL);
        return -1;
    }
    wf_recover(*store, o->data_root);
    return 0;
}

/* Resolve "@latest" to the newest run's name into OUT. */
static int resolve_name(wf_store *store, const char *name, char *out, size_t capacity)
{
    if (strcmp(name, "@latest") != 0) {
        snprintf(out, capacity, "%s", name);
        return 0;
    }
    cJSON *runs = NULL;
    if (wf_store_run_list(store, &runs) != 0)
        return -1;
    int n = cJSON_GetArraySize(runs);
    if (n == 0) {
        cJSON_Delete(runs);
        return dm_fail("no workflow runs are recorded");
    }
    snprintf(out, capacity, "%s",
             cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(runs, n - 1), "name")
                 ->valuestring);
    cJSON_Delete(runs);
    return 0;
}

/* ---- run ---- */

static const char run_usage[] =
    "usage: distml workflow run FILE [OPTIONS]\n"
    "\n"
    "Validate FILE, then run it to completion as local processes, printing a\n"
    "line per node phase change (on a terminal, a table of nodes that is redrawn)\n"
    "and the node tree at the end. Exits 0 when the workflow Succeeded and 1\n"
    "otherwise.\n"
    "\n"
    "options:\n"
    "  -p, --parameter NAME=VALUE   set a spec.arguments parameter (repeatable)\n"
    "  --data_root DIR              runs, caches, volumes and logs, or $DISTML_DATA_ROOT\n"
    "  --quiet                      print only the final node tree\n"
    "  -h, --help                   print this help\n"
    "\n"
    "Volumes: a persistentVolumeClaim CLAIM is the folder DATA_ROOT/pvc/CLAIM, and\n"
    "its mountPath is replaced by that folder in command, args, env and scripts.\n";

static int cmd_run(int argc, char **argv)
{
    common_options o = {0};
    int status = parse_options(argc, argv, run_usage, &o);
    if (status != 0) {
        free_options(&o);
        return status < 0 ? 0 : status;
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "distml: error: %s\n%s",
                optind == argc ? "missing FILE" : "expected one FILE", run_usage);
        free_options(&o);
        return 2;
    }
    wf_spec spec;
    if (wf_spec_load(argv[optind], &spec) != 0) {
        flag_report_error(NULL);
        free_options(&o);
        return 1;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    wf_run_options options = {
        .data_root = o.data_root,
        .self_exe = n > 0 ? self : NULL,
        .param_names = o.param_names,
        .param_values = o.param_values,
        .param_count = o.param_count,
        .progress = o.quiet ? NULL : stdout,
        .live = !o.quiet && isatty(STDOUT_FILENO),
    };
    wf_run_outcome outcome;
    if (wf_run(&spec, &options, &outcome) != 0) {
        flag_report_error(NULL);
        wf_spec_free(&spec);
        free_options(&o);
        return 1;
    }
    wf_spec_free(&spec);
    wf_store *store = NULL;
    if (wf_store_open(o.data_root, &store) == 0) {
        cJSON *wf = NULL;
        if (wf_status_build(store, outcome.name, &wf) == 0 && wf != NULL) {
            printf("\n");
            wf_status_print(stdout, wf);
        }
        cJSON_Delete(wf);
        wf_store_close(store);
    }
    free_options(&o);
    return strcmp(outcome.phase, "Succeeded") == 0 ? 0 : 1;
}

/* ---- lint ---- */

static int cmd_lint(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *out = argc < 2 ? stderr : stdout;
        fprintf(out, "usage: distml workflow lint FILE...\n"
                     "\n"
                     "Validate each workflow file: YAML syntax, supported fields, template\n"
                     "references, DAG dependencies, memoize keys and maxAge durations.\n");
        return argc < 2 ? 2 : 0;
    }
    int status = 0;
    for (int i = 1; i < argc; i++) {
        wf_spec spec;
        if (wf_spec_load(argv[i], &spec) != 0) {
            flag_report_error(NULL);
            status = 1;
            continue;
        }
        printf("%s: ok\n", argv[i]);
        wf_spec_free(&spec);
    }
    return status;
}

/* ---- list, get, delete ---- */

static void format_age(double seconds, char *out, size_t capacity)
{
    long s = (long)seconds;
    if (s < 120)
        snprintf(out, capacity, "%lds", s);
    else if (s < 7200)
        snprintf(out, capacity, "%ldm", s / 60);
    else if (s < 172800)
        snprintf(out, capacity, "%ldh", s / 3600);
    else
        snprintf(out, capacity, "%ldd", s / 86400);
}

static const char list_usage[] = "usage: distml workflow list [--data_root DIR]\n"
                                 "\n"
                                 "List recorded runs, oldest first.\n";

static int cmd_list(int argc, char **argv)
{
    common_options o = {0};
    int status = parse_options(argc, argv, list_usage, &o);
    wf_store *store = NULL;
    cJSON *runs = NULL;
    if (status != 0 || optind != argc) {
        if (status == 0)
            fprintf(stderr, "distml: error: unexpected argument '%s'\n", argv[optind]);
        free_options(&o);
        return status < 0 ? 0 : 2;
    }
    if (open_store(&o, &store) != 0 || wf_store_run_list(store, &runs) != 0) {
        if (store != NULL)
            flag_report_error(NULL);
        wf_store_close(store);
        free_options(&o);
        return 1;
    }
    printf("%-32s %-10s %-6s %-9s %-9s %s\n", "NAME", "STATUS", "AGE", "DURATION", "PROGRESS",
           "MESSAGE");
    const double now = dm_wall_seconds();
    for (cJSON *run = runs->child; run != NULL; run = run->next) {
        const char *name = cJSON_GetObjectItemCaseSensitive(run, "name")->valuestring;
        double created = cJSON_GetObjectItemCaseSensitive(run, "createdAt")->valuedouble;
        double finished = cJSON_GetObjectItemCaseSensitive(run, "finishedAt")->valuedouble;
        char age[16], duration[16];
        format_age(now - created, age, sizeof age);
        format_age((finished > 0 ? finished : now) - created, duration, sizeof duration);
        cJSON *wf = NULL;
        const char *progress = "";
        if (wf_status_build(store, name, &wf) == 0 && wf != NULL) {
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(wf, "status"), "progress");
            progress = cJSON_IsString(p) ? p->valuestring : "";
        }
        printf("%-32s %-10s %-6s %-9s %-9s %s\n", name,
               cJSON_GetObjectItemCaseSensitive(run, "phase")->valuestring, age, duration,
               progress, cJSON_GetObjectItemCaseSensitive(run, "message")->valuestring);
        cJSON_Delete(wf);
    }
    cJSON_Delete(runs);
    wf_store_close(store);
    free_options(&o);
    return 0;
}

static const char get_usage[] =
    "usage: distml workflow get NAME [-o yaml|json] [--data_root DIR]\n"
    "\n"
    "Show a run. Without -o: a summary and the node tree. With -o yaml or -o json:\n"
    "the Workflow object with its status.nodes, as kubectl get wf NAME -o yaml shows\n"
    "it.\n";

static int cmd_get(int argc, char **argv)
{
    common_options o = {0};
    int status = parse_options(argc, argv, get_usage, &o);
    if (status != 0 || optind + 1 != argc) {
        if (status == 0)
            fprintf(stderr, "distml: error: expected one NAME\n%s", get_usage);
        free_options(&o);
        return status < 0 ? 0 : 2;
    }
    wf_store *store = NULL;
    char name[256];
    cJSON *wf = NULL;
    int rc = 1;
    if (open_store(&o, &store) != 0)
        goto out;
    if (resolve_name(store, argv[optind], name, sizeof name) != 0 ||
        wf_status_build(store, name, &wf) != 0) {
        flag_report_error(NULL);
        goto out;
    }
    if (wf == NULL) {
        fprintf(stderr, "distml: error: workflow %s not found; 'distml workflow list' shows the "
                        "recorded runs\n",
                name);
        goto out;
    }
    if (o.output != NULL && strcmp(o.output, "json") == 0) {
        char *text = cJSON_Print(wf);
        printf("%s\n", text != NULL ? text : "");
        free(text);
    } else if (o.output != NULL && strcmp(o.output, "yaml") == 0) {
        char *text = ydoc_emit_json(wf);
        if (text == NULL) {
            flag_report_error(NULL);
            goto out;
        }
        fputs(text, stdout);
        free(text);
    } else {
        wf_status_print(stdout, wf);
    }
    rc = 0;
out:
    cJSON_Delete(wf);
    wf_store_close(store);
    free_options(&o);
    return rc;
}

static const char delete_usage[] = "usage: distml workflow delete NAME [--data_root DIR]\n"
                                   "\n"
                                   "Delete a finished run: its record, node statuses, logs and\n"
                                   "working folders. Memoization caches are kept.\n";

static int cmd_delete(int argc, char **argv)
{
    common_options o = {0};
    int status = parse_options(argc, argv, delete_usage, &o);
    if (status != 0 || optind + 1 != argc) {
        if (status == 0)
            fprintf(stderr, "distml: error: expected one NAME\n%s", delete_usage);
        free_options(&o);
        return status < 0 ? 0 : 2;
    }
    wf_store *store = NULL;
    cJSON *run = NULL;
    char name[256], dir[4096];
    int rc = 1;
    if (open_store(&o, &store) != 0)
        goto out;
    if (resolve_name(store, argv[optind], name, sizeof name) != 0 ||
        wf_store_run_get(store, name, &run) != 0) {
        flag_report_error(NULL);
        goto out;
    }
    if (run == NULL) {
        fprintf(stderr, "distml: error: workflow %s not found\n", name);
        goto out;
    }
    const char *phase = cJSON_GetObjectItemCaseSensitive(run, "phase")->valuestring;
    if (strcmp(phase, "Running") == 0 || strcmp(phase, "Pending") == 0) {
        fprintf(stderr, "distml: error: workflow %s is still %s; stop its runner first\n", name,
                phase);
        goto out;
    }
    if (wf_run_dir(o.data_root, name, dir, sizeof dir) != 0 || fs_remove_tree(dir) != 0 ||
        wf_store_run_delete(store, name) != 0) {
        flag_report_error(NULL);
        goto out;
    }
    printf("Workflow '%s' deleted\n", name);
    rc = 0;
out:
    cJSON_Delete(run);
    wf_store_close(store);
    free_options(&o);
    return rc;
}

/* ---- logs ---- */

static int print_log(const char *path, const char *prefix)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return dm_fail("no log at %s: %s", path, strerror(errno));
    char line[65536];
    bool at_start = true;
    while (fgets(line, sizeof line, f) != NULL) {
        if (prefix != NULL && at_start)
            printf("%s: ", prefix);
        fputs(line, stdout);
        at_start = strchr(line, '\n') != NULL;
    }
    if (!at_start)
        putchar('\n');
    fclose(f);
    return 0;
}

static const char logs_usage[] =
    "usage: distml workflow logs NAME [NODE] [--data_root DIR]\n"
    "\n"
    "Print the stdout and stderr of the run's pods, each line prefixed with the pod\n"
    "name, in the order the pods were created. NODE (a node ID, name, display name\n"
    "or pod name) limits the output to that node: the log of a Pod node is printed\n"
    "as it is, and for other nodes the logs of the pods under them.\n";

static int cmd_logs(int argc, char **argv)
{
    common_options o = {0};
    int status = parse_options(argc, argv, logs_usage, &o);
    if (status != 0 || optind == argc || argc - optind > 2) {
        if (status == 0)
            fprintf(stderr, "distml: error: expected NAME [NODE]\n%s", logs_usage);
        free_options(&o);
        return status < 0 ? 0 : 2;
    }
    wf_store *store = NULL;
    cJSON *wf = NULL;
    char name[256], dir[4096];
    int rc = 1;
    if (open_store(&o, &store) != 0)
        goto out;
    if (resolve_name(store, argv[optind], name, sizeof name) != 0 ||
        wf_status_build(store, name, &wf) != 0 || wf_run_dir(o.data_root, name, dir, sizeof dir)) {
        flag_report_error(NULL);
        goto out;
    }
    if (wf == NULL) {
        fprintf(stderr, "distml: error: workflow %s not found\n", name);
        goto out;
    }
    const cJSON *selected = NULL;
    if (argc - optind == 2) {
        selected = wf_status_find_node(wf, argv[optind + 1]);
        if (selected == NULL) {
            fprintf(stderr, "distml: error: workflow %s has no node '%s'; 'distml workflow get "
                            "%s' lists them\n",
                    name, argv[optind + 1], name);
            goto out;
        }
    }
    const cJSON *nodes =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(wf, "status"), "nodes");
    const char *prefix_name =
        selected != NULL ? cJSON_GetObjectItemCaseSensitive(selected, "name")->valuestring : NULL;
    const char *selected_type =
        selected != NULL ? cJSON_GetObjectItemCaseSensitive(selected, "type")->valuestring : "";
    rc = 0;
    for (const cJSON *node = nodes->child; node != NULL; node = node->next) {
        const char *type = cJSON_GetObjectItemCaseSensitive(node, "type")->valuestring;
        const char *node_name = cJSON_GetObjectItemCaseSensitive(node, "name")->valuestring;
        if (strcmp(type, "Pod") != 0)
            continue;
        if (prefix_name != NULL && strncmp(node_name, prefix_name, strlen(prefix_name)) != 0)
            continue;
        const cJSON *memo = cJSON_GetObjectItemCaseSensitive(node, "memoizationStatus");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(memo, "hit")))
            continue;
        char pod[512], path[4096 + 600];
        wf_status_pod_name(wf, node, pod, sizeof pod);
        snprintf(path, sizeof path, "%s/logs/%s.log", dir, pod);
        bool raw = selected != NULL && strcmp(selected_type, "Pod") == 0;
        if (!fs_exists(path))
            continue;
        if (print_log(path, raw ? NULL : pod) != 0) {
            flag_report_error(NULL);
            rc = 1;
        }
    }
out:
    cJSON_Delete(wf);
    wf_store_close(store);
    free_options(&o);
    return rc;
}

/* ---- cache ---- */

static const char cache_usage[] =
    "usage: distml workflow cache list [CACHE] [--data_root DIR]\n"
    "       distml workflow cache delete CACHE [KEY] [--data_root DIR]\n"
    "\n"
    "List the memoization caches (memoize.cache.configMap.name) and their entries,\n"
    "or delete a whole cache or one entry. A cache holds at most 1048576 bytes of\n"
    "keys and values, the size limit of a ConfigMap.\n";

static int cmd_cache(int argc, char **argv)
{
    if (argc < 2) {
        fputs(cache_usage, stderr);
        return 2;
    }
    const char *action = argv[1];
    common_options o = {0};
    int status = parse_options(argc - 1, argv + 1, cache_usage, &o);
    int positional = argc - 1 - optind;
    char **args = argv + 1 + optind;
    if (status != 0) {
        free_options(&o);
        return status < 0 ? 0 : status;
    }
    bool list = strcmp(action, "list") == 0, del = strcmp(action, "delete") == 0;
    if ((!list && !del) || (list && positional > 1) || (del && (positional < 1 || positional > 2))) {
        fputs(cache_usage, stderr);
        free_options(&o);
        return 2;
    }
    wf_store *store = NULL;
    int rc = 1;
    if (open_store(&o, &store) != 0)
        goto out;
    if (list) {
        cJSON *entries = NULL;
        if (wf_store_memo_list(store, positional == 1 ? args[0] : NULL, &entries) != 0) {
            flag_report_error(NULL);
            goto out;
        }
        printf("%-24s %-40s %-28s %-20s %-20s %s\n", "CACHE", "KEY", "NODE ID", "CREATED",
               "LAST HIT", "BYTES");
        for (cJSON *e = entries->child; e != NULL; e = e->next) {
            char created[32], hit[32];
            wf_format_time(cJSON_GetObjectItemCaseSensitive(e, "creationTimestamp")->valuedouble,
                           created, sizeof created);
            wf_format_time(cJSON_GetObjectItemCaseSensitive(e, "lastHitTimestamp")->valuedouble,
                           hit, sizeof hit);
            printf("%-24s %-40s %-28s %-20s %-20s %.0f\n",
                   cJSON_GetObjectItemCaseSensitive(e, "cache")->valuestring,
                   cJSON_GetObjectItemCaseSensitive(e, "key")->valuestring,
                   cJSON_GetObjectItemCaseSensitive(e, "nodeID")->valuestring, created, hit,
                   cJSON_GetObjectItemCaseSensitive(e, "bytes")->valuedouble);
        }
        cJSON_Delete(entries);
        rc = 0;
    } else {
        int deleted = 0;
        if (wf_store_memo_delete(store, args[0], positional == 2 ? args[1] : NULL, &deleted)) {
            flag_report_error(NULL);
            goto out;
        }
        if (deleted == 0) {
            fprintf(stderr, "distml: error: cache %s has no %s%s\n", args[0],
                    positional == 2 ? "entry " : "entries", positional == 2 ? args[1] : "");
            goto out;
        }
        printf("deleted %d entr%s from cache %s\n", deleted, deleted == 1 ? "y" : "ies", args[0]);
        rc = 0;
    }
out:
    wf_store_close(store);
    free_options(&o);
    return rc;
}

/* ---- services ---- */

static const char services_usage[] =
    "usage: distml workflow services [--data_root DIR]\n"
    "       distml workflow services stop NAME [--data_root DIR]\n"
    "\n"
    "List the model servers that InferenceService steps started, with their URL,\n"
    "or stop one (SIGTERM, then SIGKILL after 10 seconds).\n";

static bool service_running(const cJSON *row)
{
    pid_t pid = (pid_t)cJSON_GetObjectItemCaseSensitive(row, "pid")->valuedouble;
    int64_t start = (int64_t)cJSON_GetObjectItemCaseSensitive(row, "pidStart")->valuedouble;
    return pid > 1 && start != 0 && wf_process_start_ticks(pid) == start;
}

static int stop_service(wf_store *store, const cJSON *row)
{
    const char *name = cJSON_GetObjectItemCaseSensitive(row, "name")->valuestring;
    pid_t pid = (pid_t)cJSON_GetObjectItemCaseSensitive(row, "pid")->valuedouble;
    int64_t start = (int64_t)cJSON_GetObjectItemCaseSensitive(row, "pidStart")->valuedouble;
    bool running = service_running(row);
    if (running) {
        kill(pid, SIGTERM);
        const double until = dm_monotonic_seconds() + 10.0;
        while (wf_process_start_ticks(pid) == start && dm_monotonic_seconds() < until) {
            struct timespec pause = {0, 100 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
        if (wf_process_start_ticks(pid) == start)
            kill(pid, SIGKILL);
    }
    if (wf_store_service_delete(store, name) != 0) {
        flag_report_error(NULL);
        return 1;
    }
    printf(running ? "stopped %s (pid %d)\n" : "%s (pid %d) was not running; record removed\n",
           name, (int)pid);
    return 0;
}

static int cmd_services(int argc, char **argv)
{
    common_options o = {0};
    int status = parse_options(argc, argv, services_usage, &o);
    int positional = argc - optind;
    if (status != 0) {
        free_options(&o);
        return status < 0 ? 0 : status;
    }
    bool stop = positional == 2 && strcmp(argv[optind], "stop") == 0;
    if (positional != 0 && !stop) {
        fputs(services_usage, stderr);
        free_options(&o);
        return 2;
    }
    wf_store *store = NULL;
    cJSON *rows = NULL;
    int rc = 1;
    if (open_store(&o, &store) != 0)
        goto out;
    if (wf_store_service_list(store, &rows) != 0) {
        flag_report_error(NULL);
        goto out;
    }
    if (stop) {
        const char *name = argv[optind + 1];
        for (const cJSON *row = rows->child; row != NULL; row = row->next) {
            if (strcmp(cJSON_GetObjectItemCaseSensitive(row, "name")->valuestring, name) == 0) {
                rc = stop_service(store, row);
                goto out;
            }
        }
        fprintf(stderr, "distml: error: no service named %s; 'distml workflow services' lists "
                        "them\n",
                name);
        goto out;
    }
    printf("%-24s %-9s %-8s %-24s %-28s %s\n", "NAME", "STATUS", "PID", "URL", "WORKFLOW",
           "MODEL BASE PATH");
    for (const cJSON *row = rows->child; row != NULL; row = row->next) {
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d",
                 (int)cJSON_GetObjectItemCaseSensitive(row, "port")->valuedouble);
        printf("%-24s %-9s %-8d %-24s %-28s %s\n",
               cJSON_GetObjectItemCaseSensitive(row, "name")->valuestring,
               service_running(row) ? "Running" : "Exited",
               (int)cJSON_GetObjectItemCaseSensitive(row, "pid")->valuedouble, url,
               cJSON_GetObjectItemCaseSensitive(row, "workflow")->valuestring,
               cJSON_GetObjectItemCaseSensitive(row, "modelBasePath")->valuestring);
    }
    rc = 0;
out:
    cJSON_Delete(rows);
    wf_store_close(store);
    free_options(&o);
    return rc;
}

int cmd_workflow(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } commands[] = {
        {"run", cmd_run},     {"lint", cmd_lint},     {"list", cmd_list},   {"get", cmd_get},
        {"logs", cmd_logs},   {"delete", cmd_delete}, {"cache", cmd_cache},
        {"services", cmd_services},
    };
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "distml: error: unknown workflow command '%s'\n", argv[1]);
    print_usage(stderr);
    return 2;
}
