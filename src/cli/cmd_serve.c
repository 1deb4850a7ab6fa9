/*
 * distml serve: a model server that TensorFlow Serving and KServe clients
 * can use unchanged. The flags carry tensorflow_model_server's names and
 * defaults where it has the same flag; --bind_address, --max_body_bytes,
 * --header_timeout_in_ms and the connection limits are distml's own. Port
 * 0 picks a free port, which the start log line names
 * (tensorflow_model_server reads 0 as "REST disabled" instead).
 *
 * The main thread handles the signals and polls for new versions, and
 * libmicrohttpd's threads handle the requests. SIGTERM or SIGINT stops accepting connections,
 * lets the requests in flight finish (up to --rest_api_timeout_in_ms) and
 * exits 0.
 */
#include "cli/commands.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "cli/flags.h"
#include "data/dataset.h"
#include "serve/batcher.h"
#include "serve/http.h"
#include "serve/metrics.h"
#include "serve/servable.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *model_name;
    char base[4096];
    const char *bind_address;
    int64_t port;
    int64_t timeout_ms;
    int64_t header_timeout_ms;
    bool header_timeout_given; /* set by the flag; a default follows a lower timeout_ms */
    int64_t max_connections;        /* 0 derives it from the open-file limit */
    int64_t max_connections_per_ip; /* -1 for half of max_connections */
    int64_t poll_seconds;
    bool batching;
    int64_t max_batch_size;
    int64_t batch_timeout_us;
    int64_t batch_threads;
    int64_t http_threads;
    int64_t max_body_bytes;
} serve_options;

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void print_usage(FILE *out)
{
    int cpus = online_cpus();
    fprintf(out,
            "usage: distml serve [OPTIONS]\n"
            "\n"
            "Serve the highest complete model version under the base path over HTTP with\n"
            "TensorFlow Serving's REST API (/v1), KServe's V2 protocol (/v2) and Prometheus\n"
            "metrics (/metrics). New versions are loaded as they appear.\n"
            "\n"
            "options:\n"
            "  --model_name NAME                   model name in request paths [default]\n"
            "  --model_base_path DIR               folder of numbered model versions\n"
            "                                      [DATA_ROOT/saved_model_versions]\n"
            "  --data_root DIR                     prepared data, or $DISTML_DATA_ROOT [%s]\n"
            "  --rest_api_port N                   HTTP port; 0 picks a free one [8501]\n"
            "  --bind_address ADDR                 IPv4 or IPv6 address to listen on [127.0.0.1]\n"
            "  --rest_api_num_threads N            HTTP threads [4 per CPU: %d]\n"
            "  --rest_api_timeout_in_ms N          idle connection timeout, rounded up to whole\n"
            "                                      seconds, and the drain limit at shutdown [30000]\n"
            "  --header_timeout_in_ms N            idle timeout while a request's headers arrive,\n"
            "                                      rounded up to whole seconds; at most\n"
            "                                      --rest_api_timeout_in_ms [10000, or that\n"
            "                                      timeout when it is lower]\n"
            "  --max_connections N                 open connections; more wait to be accepted\n"
            "                                      [the open-file limit minus the server's own files]\n"
            "  --max_connections_per_ip N          connections from one client address; more are\n"
            "                                      closed at once; 0 = no limit\n"
            "                                      [half of --max_connections]\n"
            "  --max_body_bytes N                  largest request body; larger ones get 413\n"
            "                                      [33554432 (32 MiB)]\n"
            "  --file_system_poll_wait_seconds N   seconds between polls of the base path;\n"
            "                                      0 = load once, never poll again [1]\n"
            "  --enable_batching[=true|false]      merge concurrent requests into one forward\n"
            "                                      pass [false]\n"
            "  --max_batch_size N                  most examples in a merged batch [32]\n"
            "  --batch_timeout_micros N            longest wait for a batch to fill, in\n"
            "                                      microseconds [1000]\n"
            "  --num_batch_threads N               threads running merged batches [%d]\n"
            "  -h, --help                          print this help\n",
            ds_default_data_root(), 4 * cpus, cpus);
}

static bool parse_bool(const char *name, const char *text, bool *out)
{
    if (text == NULL || strcmp(text, "true") == 0 || strcmp(text, "1") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0) {
        *out = false;
        return true;
    }
    fprintf(stderr, "distml: error: invalid --%s '%s': expected true or false\n", name, text);
    return false;
}

/* Returns -1 to go on, or the exit status to stop with. */
static int parse_options(int argc, char **argv, serve_options *o)
{
    enum {
        OPT_NAME = 256,
        OPT_BASE,
        OPT_DATA_ROOT,
        OPT_PORT,
        OPT_BIND,
        OPT_HTTP_THREADS,
        OPT_TIMEOUT,
        OPT_HEADER_TIMEOUT,
        OPT_MAX_CONNECTIONS,
        OPT_MAX_CONNECTIONS_PER_IP,
        OPT_MAX_BODY,
        OPT_POLL,
        OPT_BATCHING,
        OPT_MAX_BATCH,
        OPT_BATCH_TIMEOUT,
        OPT_BATCH_THREADS,
    };
    static const struct option options[] = {
        {"model_name", required_argument, NULL, OPT_NAME},
        {"model_base_path", required_argument, NULL, OPT_BASE},
        {"data_root", required_argument, NULL, OPT_DATA_ROOT},
        {"rest_api_port", required_argument, NULL, OPT_PORT},
        {"bind_address", required_argument, NULL, OPT_BIND},
        {"rest_api_num_threads", required_argument, NULL, OPT_HTTP_THREADS},
        {"rest_api_timeout_in_ms", required_argument, NULL, OPT_TIMEOUT},
        {"header_timeout_in_ms", required_argument, NULL, OPT_HEADER_TIMEOUT},
        {"max_connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
        {"max_connections_per_ip", required_argument, NULL, OPT_MAX_CONNECTIONS_PER_IP},
        {"max_body_bytes", required_argument, NULL, OPT_MAX_BODY},
        {"file_system_poll_wait_seconds", required_argument, NULL, OPT_POLL},
        {"enable_batching", optional_argument, NULL, OPT_BATCHING},
        {"max_batch_size", required_argument, NULL, OPT_MAX_BATCH},
        {"batch_timeout_micros", required_argument, NULL, OPT_BATCH_TIMEOUT},
        {"num_batch_threads", required_argument, NULL, OPT_BATCH_THREADS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *base = NULL, *data_root = ds_default_data_root();
    int opt;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        bool ok = true;
        switch (opt) {
        case OPT_NAME:
            o->model_name = optarg;
            break;
        case OPT_BASE:
            base = optarg;
            break;
        case OPT_DATA_ROOT:
            data_root = optarg;
            break;
        case OPT_PORT:
            ok = flag_parse_int("rest_api_port", optarg, 0, 65535, &o->port);
            break;
        case OPT_BIND:
            o->bind_address = optarg;
            break;
        case OPT_HTTP_THREADS:
            ok = flag_parse_int("rest_api_num_threads", optarg, 1, 1024, &o->http_threads);
            break;
        case OPT_TIMEOUT:
            ok = flag_parse_int("rest_api_timeout_in_ms", optarg, 1, 86400000, &o->timeout_ms);
            break;
        case OPT_HEADER_TIMEOUT:
            ok = flag_parse_int("header_timeout_in_ms", optarg, 1, 86400000,
                                &o->header_timeout_ms);
            o->header_timeout_given = true;
            break;
        case OPT_MAX_CONNECTIONS:
            ok = flag_parse_int("max_connections", optarg, 1, 1000000, &o->max_connections);
            break;
        case OPT_MAX_CONNECTIONS_PER_IP:
            ok = flag_parse_int("max_connections_per_ip", optarg, 0, 1000000,
                                &o->max_connections_per_ip);
            break;
        case OPT_MAX_BODY:
            ok = flag_parse_int("max_body_bytes", optarg, 1, (int64_t)1 << 40,
                                &o->max_body_bytes);
            break;
        case OPT_POLL:
            ok = flag_parse_int("file_system_poll_wait_seconds", optarg, 0, 86400,
                                &o->poll_seconds);
            break;
        case OPT_BATCHING:
            ok = parse_bool("enable_batching", optarg, &o->batching);
            break;
        case OPT_MAX_BATCH:
            ok = flag_parse_int("max_batch_size", optarg, 1, 4096, &o->max_batch_size);
            break;
        case OPT_BATCH_TIMEOUT:
            ok = flag_parse_int("batch_timeout_micros", optarg, 0, 10000000, &o->batch_timeout_us);
            break;
        case OPT_BATCH_THREADS:
            ok = flag_parse_int("num_batch_threads", optarg, 1, 1024, &o->batch_threads);
            break;
        case 'h':
            print_usage(stdout);
            return 0;
        default:
            flag_report_getopt(opt, argv);
            print_usage(stderr);
            return 2;
        }
        if (!ok)
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "distml: error: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o->header_timeout_given && o->header_timeout_ms > o->timeout_ms) {
        fprintf(stderr,
                "distml: error: invalid --header_timeout_in_ms %lld: the idle timeout "
                "--rest_api_timeout_in_ms (%lld) also bounds the headers, so set it at most "
                "that, or raise --rest_api_timeout_in_ms\n",
                (long long)o->header_timeout_ms, (long long)o->timeout_ms);
        return 2;
    }
    if (o->max_connections > 0 && o->max_connections_per_ip > o->max_connections) {
        fprintf(stderr,
                "distml: error: invalid --max_connections_per_ip %lld: more than "
                "--max_connections (%lld); set it at most that, or 0 for no per-address "
                "limit\n",
                (long long)o->max_connections_per_ip, (long long)o->max_connections);
        return 2;
    }
    if (o->model_name[0] == '\0' || strpbrk(o->model_name, "/:") != NULL) {
        fprintf(stderr,
                "distml: error: invalid --model_name '%s': expected a non-empty name without "
                "'/' or ':'\n",
                o->model_name);
        return 2;
    }
    int n = base != NULL ? snprintf(o->base, sizeof o->base, "%s", base)
                         : snprintf(o->base, sizeof o->base, "%s/saved_model_versions", data_root);
    if (n < 0 || (size_t)n >= sizeof o->base) {
        flag_report_error("the model base path is too long");
        return 2;
    }
    return -1;
}

/* The self-pipe that the signal handler writes the signal number to.
 * Blocking the signals in every thread instead does not work, because
 * OpenBLAS starts its worker threads in a library constructor, before main
 * can block anything, and the kernel may deliver SIGTERM to one of them. */
static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    unsigned char number = (unsigned char)sig;
    int saved = errno;
    if (write(signal_pipe[1], &number, 1) < 0) {
        /* The pipe is full only when many signals came at once, and one
         * of them is enough to stop. */
    }
    errno = saved;
}

static int install_signal_handlers(void)
{
    if (pipe(signal_pipe) != 0)
        return dm_fail("cannot create the signal pipe: %s", strerror(errno));
    fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    if (sigaction(SIGTERM, &action, NULL) != 0 || sigaction(SIGINT, &action, NULL) != 0)
        return dm_fail("cannot install the signal handlers: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* Waits for SIGTERM or SIGINT, polling the base path every POLL_SECONDS
 * (never when 0). Returns the signal. */
static int wait_for_signal(srv_manager *manager, int64_t poll_seconds)
{
    double next_poll = dm_monotonic_seconds() + (double)poll_seconds;
    for (;;) {
        int timeout_ms = -1;
        if (poll_seconds > 0) {
            double left = next_poll - dm_monotonic_seconds();
            timeout_ms = left > 0 ? (int)(left * 1e3) + 1 : 0;
        }
        struct pollfd pending = {.fd = signal_pipe[0], .events = POLLIN};
        int ready = poll(&pending, 1, timeout_ms);
        if (ready > 0) {
            unsigned char number = 0;
            if (read(signal_pipe[0], &number, 1) == 1)
                return number;
        } else if (ready == 0) {
            srv_manager_poll(manager);
            next_poll = dm_monotonic_seconds() + (double)poll_seconds;
        } else if (errno != EINTR) {
            DM_ERROR("cannot wait for signals: %s", strerror(errno));
            return SIGTERM;
        }
    }
}

/* Stops accepting and waits up to TIMEOUT_MS for requests in flight. */
static void drain(srv_http *http, int64_t timeout_ms)
{
    srv_http_quiesce(http);
    const double deadline = dm_monotonic_seconds() + (double)timeout_ms / 1e3;
    long in_flight = srv_http_in_flight(http);
    if (in_flight > 0)
        DM_INFO("waiting for %ld requests in flight", in_flight);
    while ((in_flight = srv_http_in_flight(http)) > 0 && dm_monotonic_seconds() < deadline) {
        struct timespec pause = {.tv_nsec = 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (in_flight > 0)
        DM_WARN("closing %ld requests still in flight after %lld ms", in_flight,
                (long long)timeout_ms);
}

int cmd_serve(int argc, char **argv)
{
    const int cpus = online_cpus();
    serve_options o = {
        .model_name = "default",
        .bind_address = "127.0.0.1",
        .port = 8501,
        .timeout_ms = 30000,
        .header_timeout_ms = 10000,
        .max_connections_per_ip = -1,
        .poll_seconds = 1,
        .max_batch_size = 32,
        .batch_timeout_us = 1000,
        .batch_threads = cpus,
        .http_threads = 0, /* set below unless given */
        .max_body_bytes = 32 * 1024 * 1024,
    };
    int status = parse_options(argc, argv, &o);
    if (status >= 0)
        return status;
    if (o.http_threads == 0)
        o.http_threads = 4 * cpus > 1024 ? 1024 : 4 * cpus;

    /* Requests run in parallel on their own threads, so each forward pass
     * uses one BLAS thread. */
    openblas_set_num_threads(1);
    if (install_signal_handlers() != 0) {
        flag_report_error(NULL);
        return 1;
    }

    const int replicas = (int)(o.batching ? o.batch_threads : o.http_threads);
    const int chunk = o.batching ? (int)o.max_batch_size : 64;
    srv_metrics *metrics = srv_metrics_create();
    /* Without batching a replica starts with buffers for one example and
     * grows them, up to CHUNK examples, when a larger request comes. */
    srv_manager *manager =
        srv_manager_create(o.model_name, o.base, replicas, o.batching ? chunk : 1);
    if (metrics == NULL || manager == NULL) {
        flag_report_error("out of memory");
        srv_metrics_free(metrics);
        srv_manager_free(manager);
        return 1;
    }
    srv_manager_poll(manager);

    srv_batcher *batcher = NULL;
    if (o.batching) {
        batcher = srv_batcher_create((int)o.max_batch_size, o.batch_timeout_us,
                                     (int)o.batch_threads, metrics);
        if (batcher == NULL) {
            flag_report_error(NULL);
            srv_manager_free(manager);
            srv_metrics_free(metrics);
            return 1;
        }
    }
    srv_http_config config = {
        .model_name = o.model_name,
        .bind_address = o.bind_address,
        .port = (int)o.port,
        .threads = (int)o.http_threads,
        .timeout_ms = o.timeout_ms,
        .header_timeout_ms = o.header_timeout_ms,
        .max_connections = (int)o.max_connections,
        .max_connections_per_ip = (int)o.max_connections_per_ip,
        .max_body_bytes = (size_t)o.max_body_bytes,
        .chunk = chunk,
        .manager = manager,
        .batcher = batcher,
        .metrics = metrics,
    };
    srv_http *http = srv_http_start(&config);
    if (http == NULL) {
        flag_report_error(NULL);
        srv_batcher_free(batcher);
        srv_manager_free(manager);
        srv_metrics_free(metrics);
        return 1;
    }
    const bool v6 = strchr(o.bind_address, ':') != NULL;
    if (o.batching)
        DM_INFO("listening on http://%s%s%s:%d for model %s from %s: %lld HTTP threads, "
                "batching up to %lld examples within %lld us on %lld threads",
                v6 ? "[" : "", o.bind_address, v6 ? "]" : "", srv_http_port(http), o.model_name,
                o.base, (long long)o.http_threads, (long long)o.max_batch_size,
                (long long)o.batch_timeout_us, (long long)o.batch_threads);
    else
        DM_INFO("listening on http://%s%s%s:%d for model %s from %s: %lld HTTP threads, "
                "no batching",
                v6 ? "[" : "", o.bind_address, v6 ? "]" : "", srv_http_port(http), o.model_name,
                o.base, (long long)o.http_threads);
    DM_INFO("accepting at most %d connections, %d per client address (0 = no limit); header "
            "timeout %lld ms, idle timeout %lld ms",
            srv_http_max_connections(http), srv_http_max_connections_per_ip(http),
            (long long)(o.header_timeout_ms < o.timeout_ms ? o.header_timeout_ms : o.timeout_ms),
            (long long)o.timeout_ms);

    int sig = wait_for_signal(manager, o.poll_seconds);
    DM_INFO("stopping on %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    drain(http, o.timeout_ms);
    /* The batcher runs its queued batches first, because their connections
     * are suspended and libmicrohttpd aborts when it stops with suspended
     * connections. The server's HTTP threads may still submit requests
     * after that, which then run on those threads, so the batcher is freed
     * only after the server has stopped. */
    srv_batcher_stop(batcher);
    srv_http_stop(http);
    srv_batcher_free(batcher);
    srv_manager_free(manager);
    srv_metrics_free(metrics);
    DM_INFO("stopped");
    return 0;
}
