#include "serve/metrics.h"

#include "serve/json.h"

#include <stdatomic.h>
#include <stdlib.h>

static const double latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
static const int batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

enum {
    NUM_LATENCY = sizeof latency_bounds / sizeof latency_bounds[0],
    NUM_BATCH = sizeof batch_bounds / sizeof batch_bounds[0],
    MIN_STATUS = 100,
    MAX_STATUS = 599,
};

struct srv_metrics {
    atomic_long in_flight;
    atomic_ulong by_status[MAX_STATUS - MIN_STATUS + 1];
    /* Histogram buckets count their own range only; rendering sums them
     * into Prometheus's cumulative "le" buckets. The last one is +Inf. */
    atomic_ulong latency[NUM_LATENCY + 1];
    atomic_ulong latency_sum_us;
    atomic_ulong batch[NUM_BATCH + 1];
    atomic_ulong batch_sum;
};

srv_metrics *srv_metrics_create(void)
{
    /* calloc'd atomics start at zero, which is a valid state for them. */
    return calloc(1, sizeof(srv_metrics));
}

void srv_metrics_free(srv_metrics *m)
{
    free(m);
}

void srv_metrics_request_started(srv_metrics *m)
{
    atomic_fetch_add(&m->in_flight, 1);
}

void srv_metrics_request_finished(srv_metrics *m, int status, double seconds)
{
    atomic_fetch_sub(&m->in_flight, 1);
    if (status >= MIN_STATUS && status <= MAX_STATUS)
        atomic_fetch_add(&m->by_status[status - MIN_STATUS], 1);
    int bucket = 0;
    while (bucket < NUM_LATENCY && seconds > latency_bounds[bucket])
        bucket++;
    atomic_fetch_add(&m->latency[bucket], 1);
    atomic_fetch_add(&m->latency_sum_us, (unsigned long)(seconds * 1e6 + 0.5));
}

void srv_metrics_batch(srv_metrics *m, int batch)
{
    int bucket = 0;
    while (bucket < NUM_BATCH && batch > batch_bounds[bucket])
        bucket++;
    atomic_fetch_add(&m->batch[bucket], 1);
    atomic_fetch_add(&m->batch_sum, (unsigned long)batch);
}

void srv_metrics_passes(srv_metrics *m, int examples, int max_pass)
{
    for (int first = 0; first < examples; first += max_pass)
        srv_metrics_batch(m, examples - first < max_pass ? examples - first : max_pass);
}

char *srv_metrics_render(srv_metrics *m, const char *model_name, int64_t version,
                         size_t *length)
{
    srv_buf out;
    srv_buf_init(&out);

    srv_buf_puts(&out, "# HELP distml_requests_total HTTP requests answered, by status code.\n"
                       "# TYPE distml_requests_total counter\n");
    for (int s = MIN_STATUS; s <= MAX_STATUS; s++) {
        unsigned long n = atomic_load(&m->by_status[s - MIN_STATUS]);
        if (n > 0)
            srv_buf_printf(&out, "distml_requests_total{code=\"%d\"} %lu\n", s, n);
    }

    srv_buf_puts(&out, "# HELP distml_request_duration_seconds Time from the request headers "
                       "to the last byte of the reply.\n"
                       "# TYPE distml_request_duration_seconds histogram\n");
    unsigned long cumulative = 0;
    for (int b = 0; b <= NUM_LATENCY; b++) {
        cumulative += atomic_load(&m->latency[b]);
        if (b < NUM_LATENCY)
            srv_buf_printf(&out, "distml_request_duration_seconds_bucket{le=\"%g\"} %lu\n",
                           latency_bounds[b], cumulative);
        else
            srv_buf_printf(&out, "distml_request_duration_seconds_bucket{le=\"+Inf\"} %lu\n",
                           cumulative);
    }
    srv_buf_printf(&out, "distml_request_duration_seconds_sum %.6f\n",
                   (double)atomic_load(&m->latency_sum_us) / 1e6);
    srv_buf_printf(&out, "distml_request_duration_seconds_count %lu\n", cumulative);

    srv_buf_printf(&out,
                   "# HELP distml_requests_in_flight Requests received and not yet answered.\n"
                   "# TYPE distml_requests_in_flight gauge\n"
                   "distml_requests_in_flight %ld\n",
                   atomic_load(&m->in_flight));

    srv_buf_puts(&out, "# HELP distml_batch_size Examples per forward pass of the model.\n"
                       "# TYPE distml_batch_size histogram\n");
    cumulative = 0;
    for (int b = 0; b <= NUM_BATCH; b++) {
        cumulative += atomic_load(&m->batch[b]);
        if (b < NUM_BATCH)
            srv_buf_printf(&out, "distml_batch_size_bucket{le=\"%d\"} %lu\n", batch_bounds[b],
                           cumulative);
        else
            srv_buf_printf(&out, "distml_batch_size_bucket{le=\"+Inf\"} %lu\n", cumulative);
    }
    srv_buf_printf(&out, "distml_batch_size_sum %lu\n", atomic_load(&m->batch_sum));
    srv_buf_printf(&out, "distml_batch_size_count %lu\n", cumulative);

    /* Prometheus label values escape '\\', '"' and newlines. */
    srv_buf_puts(&out, "# HELP distml_model_version The model version being served; -1 before "
                       "the first load.\n"
                       "# TYPE distml_model_version gauge\n"
                       "distml_model_version{model=\"");
    for (const char *p = model_name; *p; p++) {
        if (*p == '\\' || *p == '"')
            srv_buf_printf(&out, "\\%c", *p);
        else if (*p == '\n')
            srv_buf_puts(&out, "\\n");
        else
            srv_buf_append(&out, p, 1);
    }
    srv_buf_printf(&out, "\"} %lld\n", (long long)version);
    return srv_buf_take(&out, length);
}
