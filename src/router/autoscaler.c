#include "router/autoscaler.h"

#include "base/error.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The maximum number of replicas, because each is a process with its own
 * copy of the model. */
#define RTR_REPLICAS_MAX 1000

/* Per-second samples over one window, as a ring indexed by second modulo
 * its length. Knative keeps one such set of buckets per window, so a gap
 * longer than the panic window restarts the panic average even while the
 * stable average still spans it. */
typedef struct {
    double *samples;
    int length;
    int64_t first; /* second of the first sample since the last restart */
    int64_t last;  /* second of the newest sample */
    bool empty;
} sample_window;

struct rtr_autoscaler {
    rtr_scale_config config;
    double target_value;
    sample_window stable;
    sample_window panic;

    bool panicking;
    int64_t panic_time; /* the last decision that was over the panic threshold */
    int max_panic;      /* the highest count asked for during this panic */

    /* The scale-down delay window: the maximum decision of each tick
     * interval, for the intervals that overlap the delay. Empty without a
     * delay. */
    int delay_slots;
    int64_t *delay_interval;
    int *delay_value;
};

void rtr_scale_config_defaults(rtr_scale_config *config)
{
    *config = (rtr_scale_config){
        .metric = RTR_METRIC_CONCURRENCY,
        .target = 100.0,
        .target_utilization = 0.7,
        .stable_window_s = 60,
        .panic_window_percentage = 10.0,
        .panic_threshold_percentage = 200.0,
        .max_scale_up_rate = 1000.0,
        .max_scale_down_rate = 2.0,
        .scale_down_delay_s = 0,
        .tick_s = 2,
        .min_replicas = 1,
        .max_replicas = 10,
    };
}

int rtr_scale_config_check(const rtr_scale_config *c)
{
    if (c->metric != RTR_METRIC_CONCURRENCY && c->metric != RTR_METRIC_RPS)
        return dm_fail("invalid scale metric %d: expected concurrency or rps", (int)c->metric);
    if (!(c->target >= 0.01))
        return dm_fail("invalid scale target %g: expected at least 0.01", c->target);
    if (!(c->target_utilization >= 0.01 && c->target_utilization <= 1.0))
        return dm_fail("invalid target utilization %g%%: expected 1 to 100",
                       c->target_utilization * 100.0);
    if (c->stable_window_s < 6 || c->stable_window_s > 3600)
        return dm_fail("invalid stable window %d s: expected 6 s to 1 h", c->stable_window_s);
    if (!(c->panic_window_percentage >= 1.0 && c->panic_window_percentage <= 100.0))
        return dm_fail("invalid panic window percentage %g: expected 1 to 100",
                       c->panic_window_percentage);
    if (!(c->panic_threshold_percentage >= 110.0 && c->panic_threshold_percentage <= 1000.0))
        return dm_fail("invalid panic threshold percentage %g: expected 110 to 1000",
                       c->panic_threshold_percentage);
    if (!(c->max_scale_up_rate > 1.0) || isinf(c->max_scale_up_rate))
        return dm_fail("invalid max scale up rate %g: expected a number above 1",
                       c->max_scale_up_rate);
    if (!(c->max_scale_down_rate > 1.0) || isinf(c->max_scale_down_rate))
        return dm_fail("invalid max scale down rate %g: expected a number above 1",
                       c->max_scale_down_rate);
    if (c->scale_down_delay_s < 0 || c->scale_down_delay_s > 3600)
        return dm_fail("invalid scale down delay %d s: expected 0 s to 1 h",
                       c->scale_down_delay_s);
    if (c->tick_s < 1)
        return dm_fail("invalid tick interval %d s: expected at least 1 s", c->tick_s);
    if (c->min_replicas < 1 || c->min_replicas > RTR_REPLICAS_MAX)
        return dm_fail("invalid minimum of %d replicas: expected 1 to %d", c->min_replicas,
                       RTR_REPLICAS_MAX);
    if (c->max_replicas < c->min_replicas || c->max_replicas > RTR_REPLICAS_MAX)
        return dm_fail("invalid maximum of %d replicas: expected %d (the minimum) to %d",
                       c->max_replicas, c->min_replicas, RTR_REPLICAS_MAX);
    return 0;
}

int rtr_panic_window_s(const rtr_scale_config *config)
{
    long seconds = lround((double)config->stable_window_s * config->panic_window_percentage / 100.0);
    return seconds < 1 ? 1 : (int)seconds;
}

double rtr_target_value(const rtr_scale_config *config)
{
    double value = config->target * config->target_utilization;
    return value < 1.0 ? 1.0 : value;
}

rtr_autoscaler *rtr_autoscaler_create(const rtr_scale_config *config, int ready, int64_t now)
{
    rtr_autoscaler *a = dm_calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->config = *config;
    a->target_value = rtr_target_value(config);
    a->stable.length = config->stable_window_s;
    a->stable.samples = dm_calloc((size_t)a->stable.length, sizeof(double));
    a->stable.empty = true;
    a->panic.length = rtr_panic_window_s(config);
    a->panic.samples = dm_calloc((size_t)a->panic.length, sizeof(double));
    a->panic.empty = true;
    if (config->scale_down_delay_s > 0) {
        a->delay_slots = (config->scale_down_delay_s + config->tick_s - 1) / config->tick_s;
        a->delay_interval = dm_calloc((size_t)a->delay_slots, sizeof *a->delay_interval);
        a->delay_value = dm_calloc((size_t)a->delay_slots, sizeof *a->delay_value);
    }
    if (a->stable.samples == NULL || a->panic.samples == NULL ||
        (a->delay_slots > 0 && (a->delay_interval == NULL || a->delay_value == NULL))) {
        rtr_autoscaler_free(a);
        return NULL;
    }
    for (int i = 0; i < a->delay_slots; i++)
        a->delay_interval[i] = INT64_MIN;
    if (ready > 1) {
        a->panicking = true;
        a->panic_time = now;
        a->max_panic = ready;
    }
    return a;
}

void rtr_autoscaler_free(rtr_autoscaler *a)
{
    if (a == NULL)
        return;
    free(a->stable.samples);
    free(a->panic.samples);
    free(a->delay_interval);
    free(a->delay_value);
    free(a);
}

static double *sample_at(const sample_window *w, int64_t second)
{
    int64_t index = second % w->length;
    if (index < 0)
        index += w->length;
    return &w->samples[index];
}

static void window_record(sample_window *w, int64_t second, double value)
{
    if (!w->empty && second < w->last)
        second = w->last;
    if (w->empty || second - w->last >= w->length) {
        /* No sample for a whole window: the average starts over here. */
        memset(w->samples, 0, (size_t)w->length * sizeof *w->samples);
        w->first = second;
        w->empty = false;
    } else {
        for (int64_t s = w->last + 1; s <= second; s++)
            *sample_at(w, s) = 0.0;
    }
    w->last = second;
    *sample_at(w, second) += value;
}

static double window_average(const sample_window *w, int64_t now)
{
    if (w->empty)
        return 0.0;
    if (now < w->last)
        now = w->last;
    if (now - w->last >= w->length)
        return 0.0;
    int64_t from = now - w->length + 1;
    if (from < w->first)
        from = w->first;
    double total = 0.0;
    for (int64_t s = from; s <= w->last; s++)
        total += *sample_at(w, s);
    int64_t span = now - w->first + 1;
    double buckets = (double)(span < w->length ? span : w->length);
    return round(total / buckets * 1e6) / 1e6;
}

void rtr_autoscaler_record(rtr_autoscaler *a, int64_t second, double value)
{
    window_record(&a->stable, second, value);
    window_record(&a->panic, second, value);
}

double rtr_autoscaler_stable_average(const rtr_autoscaler *a, int64_t now)
{
    return window_average(&a->stable, now);
}

double rtr_autoscaler_panic_average(const rtr_autoscaler *a, int64_t now)
{
    return window_average(&a->panic, now);
}

/* Records DESIRED for the tick interval of NOW and returns the maximum over
 * the delay window. */
static int delay_scale_down(rtr_autoscaler *a, int64_t now, int desired)
{
    if (a->delay_slots == 0)
        return desired;
    int64_t interval = now / a->config.tick_s;
    int slot = (int)(interval % a->delay_slots);
    if (a->delay_interval[slot] != interval) {
        a->delay_interval[slot] = interval;
        a->delay_value[slot] = desired;
    } else if (desired > a->delay_value[slot]) {
        a->delay_value[slot] = desired;
    }
    int highest = desired;
    for (int i = 0; i < a->delay_slots; i++) {
        if (a->delay_interval[i] > interval - a->delay_slots && a->delay_value[i] > highest)
            highest = a->delay_value[i];
    }
    return highest;
}

static double clamp(double value, double low, double high)
{
    if (value < low)
        return low;
    if (value > high)
        return high;
    return value;
}

rtr_scale_decision rtr_autoscaler_decide(rtr_autoscaler *a, int64_t now, int ready)
{
    rtr_scale_decision d = {0};
    if (a->stable.empty)
        return d;
    const rtr_scale_config *c = &a->config;
    const double ready_pods = ready > 1 ? (double)ready : 1.0;
    /* Knative counts in floats; the replica maximum keeps them in int range. */
    const double max_up = fmin(ceil(c->max_scale_up_rate * ready_pods), (double)INT_MAX);
    const double max_down = floor(ready_pods / c->max_scale_down_rate);

    d.valid = true;
    d.stable_value = window_average(&a->stable, now);
    d.panic_value = window_average(&a->panic, now);
    const double stable_count = ceil(d.stable_value / a->target_value);
    const double panic_count = ceil(d.panic_value / a->target_value);
    d.desired_stable = (int)clamp(stable_count, max_down, max_up);
    d.desired_panic = (int)clamp(panic_count, max_down, max_up);

    const bool over_threshold = panic_count / ready_pods >= c->panic_threshold_percentage / 100.0;
    if (!a->panicking && over_threshold) {
        a->panicking = true;
        a->panic_time = now;
        d.entered_panic = true;
    } else if (over_threshold) {
        a->panic_time = now;
    } else if (a->panicking && a->panic_time + c->stable_window_s < now) {
        /* The burst has been in the stable window for a whole window. */
        a->panicking = false;
        a->max_panic = 0;
        d.left_panic = true;
    }

    int desired = d.desired_stable;
    if (a->panicking) {
        /* Provision for the larger of the two, and never scale down while
         * panicking. */
        if (d.desired_panic > desired)
            desired = d.desired_panic;
        if (desired > a->max_panic)
            a->max_panic = desired;
        desired = a->max_panic;
    }
    d.panic = a->panicking;
    d.unbounded = delay_scale_down(a, now, desired);
    d.desired = (int)clamp(d.unbounded, c->min_replicas, c->max_replicas);
    return d;
}
