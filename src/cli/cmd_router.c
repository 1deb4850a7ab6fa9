/*
 * distml router: replicated model serving with concurrency autoscaling on
 * one machine. The router listens on --port, starts `distml serve`
 * replicas on loopback ports with the model options it was given, and
 * adds or removes replicas with the Knative Pod Autoscaler's rule, with
 * KServe's and Knative's names and defaults for the scaling options.
 *
 * SIGTERM or SIGINT stops accepting connections, finishes the requests in
 * flight and queued (for up to --rest_api_timeout_in_ms), stops every
 * replica and exits 0.
 */
#include "cli/commands.h"

#include "base/error.h"
#include "base/log.h"
#include "cli/flags.h"
#include "data/dataset.h"
#include "router/router.h"

#include <event2/event.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The maximum number of arguments the router passes on to `distml serve`,
 * counting each option and its value. */
#define SERVE_ARGS_MAX 32

typedef struct {
    rtr_config config;
    const char *data_root;
    const char *base;
    bool target_given;
    char *serve_args[SERVE_ARGS_MAX];
    bool serve_arg_owned[SERVE_ARGS_MAX]; /* malloc'd by the router, not from argv */
    int serve_arg_count;
    char program[4096];
} router_options;

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: distml router [OPTIONS]\n"
            "\n"
            "Serve a model through replicas of `distml serve` that the router starts on\n"
            "loopback ports and scales with the Knative Pod Autoscaler's rule. Requests go to\n"
            "the ready replica with the fewest in flight. GET /replicas lists the replicas and\n"
            "GET /metrics gives the router's Prometheus metrics.\n"
            "\n"
            "router options:\n"
            "  --port N                          HTTP port; 0 picks a free one [8080]\n"
            "  --bind_address ADDR               IPv4 or IPv6 address to listen on [127.0.0.1]\n"
            "  --max_queued_requests N           requests that may wait for a replica; more\n"
            "                                    get 503 [10000]\n"
            "  --request_timeout_ms N            maximum time from a request's arrival to its\n"
            "                                    reply: 503 while queued, 504 at a replica\n"
            "                                    [300000]\n"
            "  --container_concurrency N         requests one replica serves at once, the\n"
            "                                    rest wait in the queue; 0 = no limit [0]\n"
            "\n"
            "autoscaling options (Knative's defaults):\n"
            "  --scale_metric concurrency|rps    what the target counts [concurrency]\n"
            "  --scale_target X                  target per replica: concurrent requests or\n"
            "                                    requests per second [100 or 200]\n"
            "  --target_utilization_percentage X share of the target to aim for; the\n"
            "                                    effective target is at least 1 [70]\n"
            "  --min_replicas N                  minimum number of replicas, at least 1 [1]\n"
            "  --max_replicas N                  maximum number of replicas [10]\n"
            "  --stable_window DURATION          averaging window, 6s to 1h [60s]\n"
            "  --panic_window_percentage X       panic window as a share of the stable\n"
            "                                    window, 1 to 100 [10]\n"
            "  --panic_threshold_percentage X    panic when the panic window needs this share\n"
            "                                    of the ready replicas, 110 to 1000 [200]\n"
            "  --max_scale_up_rate X             maximum growth per decision, as a factor of\n"
            "                                    the ready replicas [1000]\n"
            "  --max_scale_down_rate X           maximum shrinkage per decision, as a divisor\n"
            "                                    of the ready replicas [2]\n"
            "  --scale_down_delay DURATION       keep the highest count of this long before\n"
            "                                    scaling down, 0s to 1h [0s]\n"
            "\n"
            "replica options, passed to each `distml serve` (see distml serve --help):\n"
            "  --model_name NAME (also the readiness probe's GET /v1/models/NAME [default])\n"
            "  --model_base_path DIR  --data_root DIR\n"
            "  --rest_api_num_threads N  --rest_api_timeout_in_ms N (also the router's idle\n"
            "  connection timeout and drain limit [30000])  --max_body_bytes N (also the\n"
            "  router's limit [33554432])  --file_system_poll_wait_seconds N\n"
            "  --enable_batching[=true|false]  --max_batch_size N  --batch_timeout_micros N\n"
            "  --num_batch_threads N\n"
            "\n"
            "  -h, --help                        print this help\n"
            "\n"
            "DURATION is a whole number with the unit s, m or h (60s, 1m); a bare number is\n"
            "seconds.\n");
}

/* Parses a duration of whole seconds such as "60s", "1m", "2h" or "90". */
static bool parse_duration(const char *name, const char *text, int64_t *seconds)
{
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    long long unit = 0;
    if (errno == 0 && end != text && value >= 0) {
        if (*end == '\0' || strcmp(end, "s") == 0)
            unit = 1;
        else if (strcmp(end, "m") == 0)
            unit = 60;
        else if (strcmp(end, "h") == 0)
            unit = 3600;
    }
    if (unit == 0 || value > INT_MAX / unit) {
        fprintf(stderr,
                "distml: error: invalid --%s '%s': expected whole seconds, minutes or hours "
                "such as 60s, 1m or 1h\n",
                name, text);
        return false;
    }
    *seconds = value * unit;
    return true;
}

static bool parse_number(const char *name, const char *text, double *out)
{
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(value) || value < 0) {
        fprintf(stderr, "distml: error: invalid --%s '%s': expected a non-negative number\n",
                name, text);
        return false;
    }
    *out = value;
    return true;
}

/* Adds "--NAME VALUE" (or "--NAME" when VALUE is NULL) to the replicas'
 * options. */
static bool pass_on(router_options *o, const char *name, const char *value)
{
    if (o->serve_arg_count + 2 > SERVE_ARGS_MAX) {
        flag_report_error("too many replica options");
        return false;
    }
    char *option = malloc(strlen(name) + 3);
    if (option == NULL) {
        flag_report_error("out of memory");
        return false;
    }
    sprintf(option, "--%s", name);
    o->serve_arg_owned[o->serve_arg_count] = true;
    o->serve_args[o->serve_arg_count++] = option;
    if (value != NULL)
        o->serve_args[o->serve_arg_count++] = (char *)value;
    return true;
}

static void free_options(router_options *o)
{
    for (int i = 0; i < o->serve_arg_count; i++) {
        if (o->serve_arg_owned[i])
            free(o->serve_args[i]);
    }
}

enum {
    OPT_PORT = 256,
    OPT_BIND,
    OPT_QUEUE,
    OPT_REQUEST_TIMEOUT,
    OPT_CONCURRENCY,
    OPT_METRIC,
    OPT_TARGET,
    OPT_UTILIZATION,
    OPT_MIN,
    OPT_MAX,
    OPT_STABLE,
    OPT_PANIC_WINDOW,
    OPT_PANIC_THRESHOLD,
    OPT_UP_RATE,
    OPT_DOWN_RATE,
    OPT_DOWN_DELAY,
    OPT_NAME,
    OPT_BASE,
    OPT_DATA_ROOT,
    OPT_HTTP_THREADS,
    OPT_TIMEOUT,
    OPT_MAX_BODY,
    OPT_POLL,
    OPT_BATCHING,
    OPT_MAX_BATCH,
    OPT_BATCH_TIMEOUT,
    OPT_BATCH_THREADS,
};

static const struct option options[] = {
    {"port", required_argument, NULL, OPT_PORT},
    {"bind_address", required_argument, NULL, OPT_BIND},
    {"max_queued_requests", required_argument, NULL, OPT_QUEUE},
    {"request_timeout_ms", required_argument, NULL, OPT_REQUEST_TIMEOUT},
    {"container_concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"scale_metric", required_argument, NULL, OPT_METRIC},
    {"scale_target", required_argument, NULL, OPT_TARGET},
    {"target_utilization_percentage", required_argument, NULL, OPT_UTILIZATION},
    {"min_replicas", required_argument, NULL, OPT_MIN},
    {"max_replicas", required_argument, NULL, OPT_MAX},
    {"stable_window", required_argument, NULL, OPT_STABLE},
    {"panic_window_percentage", required_argument, NULL, OPT_PANIC_WINDOW},
    {"panic_threshold_percentage", required_argument, NULL, OPT_PANIC_THRESHOLD},
    {"max_scale_up_rate", required_argument, NULL, OPT_UP_RATE},
    {"max_scale_down_rate", required_argument, NULL, OPT_DOWN_RATE},
    {"scale_down_delay", required_argument, NULL, OPT_DOWN_DELAY},
    {"model_name", required_argument, NULL, OPT_NAME},
    {"model_base_path", required_argument, NULL, OPT_BASE},
    {"data_root", required_argument, NULL, OPT_DATA_ROOT},
    {"rest_api_num_threads", required_argument, NULL, OPT_HTTP_THREADS},
    {"rest_api_timeout_in_ms", required_argument, NULL, OPT_TIMEOUT},
    {"max_body_bytes", required_argument, NULL, OPT_MAX_BODY},
    {"file_system_poll_wait_seconds", required_argument, NULL, OPT_POLL},
    {"enable_batching", optional_argument, NULL, OPT_BATCHING},
    {"max_batch_size", required_argument, NULL, OPT_MAX_BATCH},
    {"batch_timeout_micros", required_argument, NULL, OPT_BATCH_TIMEOUT},
    {"num_batch_threads", required_argument, NULL, OPT_BATCH_THREADS},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Handles one replica option: checks it as `distml serve` would, then
 * passes it on. */
static bool parse_serve_option(router_options *o, int opt, const char *name, const char *value)
{
    rtr_config *c = &o->config;
    int64_t number = 0;
    bool ok = true;
    switch (opt) {
    case OPT_NAME:
        if (value[0] == '\0' || strpbrk(value, "/:") != NULL) {
            fprintf(stderr,
                    "distml: error: invalid --model_name '%s': expected a non-empty name "
                    "without '/' or ':'\n",
                    value);
            return false;
        }
        c->model_name = value;
        return true; /* passed on after parsing */
    case OPT_BASE:
        o->base = value;
        return true; /* passed on after parsing, with the data root */
    case OPT_DATA_ROOT:
        o->data_root = value;
        return true;
    case OPT_HTTP_THREADS:
        ok = flag_parse_int(name, value, 1, 1024, &number);
        break;
    case OPT_TIMEOUT:
        ok = flag_parse_int(name, value, 1, 86400000, &number);
        c->idle_timeout_ms = number;
        break;
    case OPT_MAX_BODY:
        ok = flag_parse_int(name, value, 1, (int64_t)1 << 40, &number);
        c->max_body_bytes = (size_t)number;
        break;
    case OPT_POLL:
        ok = flag_parse_int(name, value, 0, 86400, &number);
        break;
    case OPT_BATCHING:
        if (value != NULL && strcmp(value, "true") != 0 && strcmp(value, "false") != 0 &&
            strcmp(value, "1") != 0 && strcmp(value, "0") != 0) {
            fprintf(stderr, "distml: error: invalid --%s '%s': expected true or false\n", name,
                    value);
            return false;
        }
        break;
    case OPT_MAX_BATCH:
        ok = flag_parse_int(name, value, 1, 4096, &number);
        break;
    case OPT_BATCH_TIMEOUT:
        ok = flag_parse_int(name, value, 0, 10000000, &number);
        break;
    case OPT_BATCH_THREADS:
        ok = flag_parse_int(name, value, 1, 1024, &number);
        break;
    }
    if (!ok)
        return false;
    if (opt == OPT_BATCHING && value != NULL) {
        char *joined = malloc(strlen(name) + strlen(value) + 4);
        if (joined == NULL) {
            flag_report_error("out of memory");
            return false;
        }
        sprintf(joined, "--%s=%s", name, value);
        if (o->serve_arg_count + 1 > SERVE_ARGS_MAX) {
            free(joined);
            flag_report_error("too many replica options");
            return false;
        }
        o->serve_arg_owned[o->serve_arg_count] = true;
        o->serve_args[o->serve_arg_count++] = joined;
        return true;
    }
    return pass_on(o, name, value);
}

/* Handles one router or autoscaling option. */
static bool parse_router_option(router_options *o, int opt, const char *name, const char *value)
{
    rtr_config *c = &o->config;
    rtr_scale_config *s = &c->scale;
    int64_t number = 0;
    double real = 0;
    bool ok = true;
    switch (opt) {
    case OPT_PORT:
        ok = flag_parse_int(name, value, 0, 65535, &number);
        c->port = (int)number;
        break;
    case OPT_BIND:
        c->bind_address = value;
        break;
    case OPT_QUEUE:
        ok = flag_parse_int(name, value, 0, 1000000, &number);
        c->max_queued = (int)number;
        break;
    case OPT_REQUEST_TIMEOUT:
        ok = flag_parse_int(name, value, 1, 86400000, &number);
        c->request_timeout_ms = number;
        break;
    case OPT_CONCURRENCY:
        ok = flag_parse_int(name, value, 0, 1000000, &number);
        c->container_concurrency = (int)number;
        break;
    case OPT_METRIC:
        if (strcmp(value, "concurrency") == 0) {
            s->metric = RTR_METRIC_CONCURRENCY;
        } else if (strcmp(value, "rps") == 0) {
            s->metric = RTR_METRIC_RPS;
        } else {
            fprintf(stderr,
                    "distml: error: invalid --scale_metric '%s': expected concurrency or rps\n",
                    value);
            return false;
        }
        break;
    case OPT_TARGET:
        ok = parse_number(name, value, &s->target);
        o->target_given = true;
        break;
    case OPT_UTILIZATION:
        ok = parse_number(name, value, &real);
        s->target_utilization = real / 100.0;
        break;
    case OPT_MIN:
        ok = flag_parse_int(name, value, 1, 1000, &number);
        s->min_replicas = (int)number;
        break;
    case OPT_MAX:
        ok = flag_parse_int(name, value, 1, 1000, &number);
        s->max_replicas = (int)number;
        break;
    case OPT_STABLE:
        ok = parse_duration(name, value, &number);
        s->stable_window_s = (int)number;
        break;
    case OPT_PANIC_WINDOW:
        ok = parse_number(name, value, &s->panic_window_percentage);
        break;
    case OPT_PANIC_THRESHOLD:
        ok = parse_number(name, value, &s->panic_threshold_percentage);
        break;
    case OPT_UP_RATE:
        ok = parse_number(name, value, &s->max_scale_up_rate);
        break;
    case OPT_DOWN_RATE:
        ok = parse_number(name, value, &s->max_scale_down_rate);
        break;
    case OPT_DOWN_DELAY:
        ok = parse_duration(name, value, &number);
        s->scale_down_delay_s = (int)number;
        break;
    default:
        return parse_serve_option(o, opt, name, value);
    }
    return ok;
}

/* Returns -1 to go on, or the exit status to stop with. */
static int parse_options(int argc, char **argv, router_options *o)
{
    int opt, index = 0;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", options, &index)) != -1) {
        if (opt == 'h') {
            print_usage(stdout);
            return 0;
        }
        if (opt == '?' || opt == ':') {
            flag_report_getopt(opt, argv);
            print_usage(stderr);
            return 2;
        }
        if (!parse_router_option(o, opt, options[index].name, optarg))
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "distml: error: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    rtr_scale_config *s = &o->config.scale;
    if (!o->target_given)
        s->target = s->metric == RTR_METRIC_RPS ? 200.0 : 100.0;
    if (rtr_scale_config_check(s) != 0) {
        flag_report_error(NULL);
        return 2;
    }
    /* The replicas take the model from the same place the router names. */
    if (o->base != NULL && !pass_on(o, "model_base_path", o->base))
        return 2;
    if (o->base == NULL && !pass_on(o, "data_root", o->data_root))
        return 2;
    if (!pass_on(o, "model_name", o->config.model_name))
        return 2;
    return -1;
}

static void on_stop_signal(evutil_socket_t sig, short events, void *arg)
{
    DM_INFO("stopping on %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    rtr_router_shutdown(arg);
}

int cmd_router(int argc, char **argv)
{
    router_options o;
    memset(&o, 0, sizeof o);
    rtr_scale_config_defaults(&o.config.scale);
    o.config.bind_address = "127.0.0.1";
    o.config.port = 8080;
    o.config.model_name = "default";
    o.config.max_body_bytes = 32 * 1024 * 1024;
    o.config.idle_timeout_ms = 30000;
    o.config.request_timeout_ms = 300000;
    o.config.max_queued = 10000;
    o.data_root = ds_default_data_root();

    int status = parse_options(argc, argv, &o);
    if (status >= 0) {
        free_options(&o);
        return status;
    }
    ssize_t n = readlink("/proc/self/exe", o.program, sizeof o.program - 1);
    if (n <= 0) {
        fprintf(stderr, "distml: error: cannot find the distml binary: %s\n", strerror(errno));
        free_options(&o);
        return 1;
    }
    o.program[n] = '\0';
    o.config.program = o.program;
    o.config.serve_args = o.serve_args;
    o.config.serve_arg_count = o.serve_arg_count;

    /* With the changelist, libevent applies the epoll changes of one loop
     * pass together, so a socket that evhttp turns off and on again in
     * that pass costs no epoll_ctl calls. */
    struct event_config *event_options = event_config_new();
    struct event_base *base = NULL;
    if (event_options != NULL) {
        event_config_set_flag(event_options, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        base = event_base_new_with_config(event_options);
        event_config_free(event_options);
    }
    if (base == NULL) {
        flag_report_error("cannot create the event loop");
        free_options(&o);
        return 1;
    }
    rtr_router *router = rtr_router_start(base, &o.config);
    if (router == NULL) {
        flag_report_error(NULL);
        event_base_free(base);
        free_options(&o);
        return 1;
    }
    struct event *term = evsignal_new(base, SIGTERM, on_stop_signal, router);
    struct event *interrupt = evsignal_new(base, SIGINT, on_stop_signal, router);
    if (term == NULL || interrupt == NULL || evsignal_add(term, NULL) != 0 ||
        evsignal_add(interrupt, NULL) != 0) {
        flag_report_error("cannot install the signal handlers");
        rtr_router_free(router);
        event_base_free(base);
        free_options(&o);
        return 1;
    }
    const rtr_scale_config *s = &o.config.scale;
    const bool v6 = strchr(o.config.bind_address, ':') != NULL;
    DM_INFO("listening on http://%s%s%s:%d for model %s with %d to %d replicas: %s target "
            "%g per replica (effective %g), stable window %d s, panic window %d s",
            v6 ? "[" : "", o.config.bind_address, v6 ? "]" : "", rtr_router_port(router),
            o.config.model_name, s->min_replicas, s->max_replicas,
            s->metric == RTR_METRIC_RPS ? "rps" : "concurrency", s->target, rtr_target_value(s),
            s->stable_window_s, rtr_panic_window_s(s));

    event_base_dispatch(base);
    DM_INFO("stopped");
    event_free(term);
    event_free(interrupt);
    rtr_router_free(router);
    event_base_free(base);
    free_options(&o);
    return 0;
}
