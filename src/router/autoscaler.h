/*
 * The router's autoscaler: the decision rule of the Knative Pod Autoscaler
 * as a function of a window of per-second samples, the number of ready
 * replicas and the time. The sources are knative/serving's
 * pkg/autoscaler/scaling/autoscaler.go (the decision),
 * pkg/autoscaler/aggregation/bucketing.go (the window averages) and
 * pkg/reconciler/autoscaling/resources/target.go (the target).
 *
 * Each second the caller records one sample: the average number of requests
 * in flight or queued over that second (concurrency), or the requests that
 * arrived in it (rps). Every tick it calls rtr_autoscaler_decide. Nothing here reads
 * a clock or touches a process, so tests drive it with synthetic series.
 *
 * Left out, because the router never needs them: scale to zero and the
 * activator, activation scale, target burst capacity and the weighted
 * exponential aggregation.
 */
#ifndef DISTML_ROUTER_AUTOSCALER_H
#define DISTML_ROUTER_AUTOSCALER_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    RTR_METRIC_CONCURRENCY = 0, /* requests in flight or queued, averaged over each second */
    RTR_METRIC_RPS = 1,         /* requests per second */
} rtr_metric;

/* The autoscaler's settings, with Knative's names in the comments. */
typedef struct {
    rtr_metric metric;
    double target;                     /* target per replica (autoscaling.knative.dev/target) */
    double target_utilization;         /* fraction of the target aimed for, in (0, 1] */
    int stable_window_s;               /* stable-window, 6 to 3600 */
    double panic_window_percentage;    /* panic-window-percentage, 1 to 100 */
    double panic_threshold_percentage; /* panic-threshold-percentage, 110 to 1000 */
    double max_scale_up_rate;          /* max-scale-up-rate, > 1 */
    double max_scale_down_rate;        /* max-scale-down-rate, > 1 */
    int scale_down_delay_s;            /* scale-down-delay, 0 to 3600 */
    int tick_s;                        /* seconds between decisions */
    int min_replicas;                  /* >= 1: the router never scales to zero */
    int max_replicas;                  /* >= min_replicas */
} rtr_scale_config;

/* Knative's defaults for a target of 100 concurrent requests per replica
 * (container-concurrency-target-default), 1 to 10 replicas. */
void rtr_scale_config_defaults(rtr_scale_config *config);

/* Checks every field against Knative's ranges. Returns 0, or -1 with
 * dm_error() naming the field and its valid range. */
int rtr_scale_config_check(const rtr_scale_config *config);

/* The panic window in whole seconds: the stable window times the panic
 * window percentage, rounded, at least 1. */
int rtr_panic_window_s(const rtr_scale_config *config);

/* TargetValue: the target times the utilization, at least 1. */
double rtr_target_value(const rtr_scale_config *config);

typedef struct {
    bool valid;              /* false until a sample exists; keep the current count */
    int desired;             /* replicas to run: the unbounded count within min and max */
    int unbounded;           /* Knative's DesiredPodCount, before min and max */
    int desired_stable;      /* ceil(stable / TargetValue) within the rate limits */
    int desired_panic;       /* ceil(panic / TargetValue) within the rate limits */
    double stable_value;     /* the metric averaged over the stable window */
    double panic_value;      /* the metric averaged over the panic window */
    bool panic;              /* in panic mode after this decision */
    bool entered_panic;      /* this decision started panic mode */
    bool left_panic;         /* this decision ended panic mode */
} rtr_scale_decision;

typedef struct rtr_autoscaler rtr_autoscaler;

/* Creates an autoscaler at second NOW with READY replicas serving. With
 * more than one ready replica it starts in panic mode, held at READY, as
 * Knative does, so that a restart with an empty window does not shrink a
 * loaded deployment before a stable window of samples exists. CONFIG must
 * pass rtr_scale_config_check. Returns NULL with dm_error() set when memory
 * runs out. */
rtr_autoscaler *rtr_autoscaler_create(const rtr_scale_config *config, int ready, int64_t now);
void rtr_autoscaler_free(rtr_autoscaler *a);

/* Adds VALUE to the sample of SECOND. A SECOND before the newest sample's
 * counts as the newest one. Seconds skipped between two calls inside a window count as samples of 0, and a
 * gap of a whole window or more starts that window's average over. */
void rtr_autoscaler_record(rtr_autoscaler *a, int64_t second, double value);

/* The averages over the stable and the panic window that end with second
 * NOW: the sum of the samples divided by the window length, or by the
 * seconds since the window's first sample when that is fewer, and 0 when
 * no sample lies in the window. Rounded to 6 decimal places, as Knative
 * rounds them. */
double rtr_autoscaler_stable_average(const rtr_autoscaler *a, int64_t now);
double rtr_autoscaler_panic_average(const rtr_autoscaler *a, int64_t now);

/* Decides the replica count at second NOW with READY replicas ready to
 * serve (0 counts as 1). Updates the panic state and the scale-down delay
 * window. */
rtr_scale_decision rtr_autoscaler_decide(rtr_autoscaler *a, int64_t now, int ready);

#endif
