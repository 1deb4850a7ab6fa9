/*
 * The autoscaler against synthetic metric series: window averages, the
 * target, the first decision after a burst, panic mode, rate limits, the
 * start after a restart, the scale-down delay, the rps metric and bounds.
 * Time is in whole seconds, with one sample per second and a decision
 * every 2 s, as the router runs it.
 */
#include "check.h"

#include "base/error.h"
#include "router/autoscaler.h"

#include <stdint.h>

static rtr_scale_config config_for_target(double target, int max_replicas)
{
    rtr_scale_config c;
    rtr_scale_config_defaults(&c);
    c.target = target;
    c.max_replicas = max_replicas;
    return c;
}

static void test_defaults_are_knative(void)
{
    rtr_scale_config c;
    rtr_scale_config_defaults(&c);
    CHECK(c.metric == RTR_METRIC_CONCURRENCY);
    CHECK_NEAR(c.target, 100.0, 0);
    CHECK_NEAR(c.target_utilization, 0.7, 0);
    CHECK_INT_EQ(c.stable_window_s, 60);
    CHECK_NEAR(c.panic_window_percentage, 10.0, 0);
    CHECK_NEAR(c.panic_threshold_percentage, 200.0, 0);
    CHECK_NEAR(c.max_scale_up_rate, 1000.0, 0);
    CHECK_NEAR(c.max_scale_down_rate, 2.0, 0);
    CHECK_INT_EQ(c.scale_down_delay_s, 0);
    CHECK_INT_EQ(c.tick_s, 2);
    CHECK_INT_EQ(rtr_panic_window_s(&c), 6);
    CHECK_INT_EQ(rtr_scale_config_check(&c), 0);
}

static void test_target_value(void)
{
    rtr_scale_config c = config_for_target(1, 10);
    /* 1 x 0.7 is below the floor of 1. */
    CHECK_NEAR(rtr_target_value(&c), 1.0, 0);
    c.target = 10;
    CHECK_NEAR(rtr_target_value(&c), 7.0, 1e-12);
    c.target_utilization = 1.0;
    CHECK_NEAR(rtr_target_value(&c), 10.0, 0);
}

static void test_panic_window_rounding(void)
{
    rtr_scale_config c = config_for_target(1, 10);
    c.stable_window_s = 6;
    CHECK_INT_EQ(rtr_panic_window_s(&c), 1); /* 0.6 s rounds to 1 s */
    c.stable_window_s = 25;
    CHECK_INT_EQ(rtr_panic_window_s(&c), 3); /* 2.5 s rounds up */
    c.stable_window_s = 10;
    c.panic_window_percentage = 1;
    CHECK_INT_EQ(rtr_panic_window_s(&c), 1); /* never under 1 s */
    c.panic_window_percentage = 100;
    CHECK_INT_EQ(rtr_panic_window_s(&c), 10);
}

static void test_config_check_rejects(void)
{
    rtr_scale_config c = config_for_target(1, 10);

    c.target = 0;
    CHECK(rtr_scale_config_check(&c) != 0);
    CHECK_STR_CONTAINS(dm_error(), "invalid scale target 0");
    c = config_for_target(1, 10);
    c.stable_window_s = 5;
    CHECK(rtr_scale_config_check(&c) != 0);
    CHECK_STR_CONTAINS(dm_error(), "invalid stable window 5 s: expected 6 s to 1 h");
    c = config_for_target(1, 10);
    c.panic_threshold_percentage = 100;
    CHECK(rtr_scale_config_check(&c) != 0);
    CHECK_STR_CONTAINS(dm_error(), "panic threshold percentage 100: expected 110 to 1000");
    c = config_for_target(1, 10);
    c.panic_window_percentage = 0.5;
    CHECK(rtr_scale_config_check(&c) != 0);
    CHECK_STR_CONTAINS(dm_error(), "panic window percentage 0.5");
    c = config_for_target(1, 10);
    c.max_scale_up_rate = 1;
    CHECK(rtr_scale_config_check(&c) != 0);
    CHECK_STR_CONTAINS(dm_error(), "max scale up rate 1: expected a number above 1");
    c = config_for_target(1, 10);
    c.max_scale_down_rate = 0.5;
    CHECK(rtr_scale_config_check(&c) != 0);
    CHECK_STR_CONTAINS(dm_error(), "max scale down rate 0.5");
    c = config_for_target(1, 10);
    c.target_utilization = 1.5;
    CHECK(rtr_scale_config_check(&c) != 0);
    CHECK_STR_CONTAINS(dm_error(), "target utilization 150%: expected 1 to 100");
    c = config_for_target(1, 10);
    c.scale_down_delay_s = 3601;
    CHECK(rtr_scale_config_check(&c) != 0);
    CHECK_STR_CONTAINS(dm_error(), "scale down delay 3601 s");
    c = config_for_target(1, 10);
    c.min_replicas = 0;
    CHECK(rtr_scale_config_check(&c) != 0);
    CHECK_STR_CONTAINS(dm_error(), "minimum of 0 replicas: expected 1 to 1000");
    c = config_for_target(1, 10);
    c.min_replicas = 4;
    c.max_replicas = 3;
    CHECK(rtr_scale_config_check(&c) != 0);
    CHECK_STR_CONTAINS(dm_error(), "maximum of 3 replicas: expected 4 (the minimum) to 1000");
}

static void test_window_average(void)
{
    rtr_scale_config c = config_for_target(1, 10);
    c.stable_window_s = 10;
    c.panic_window_percentage = 20; /* a panic window of 2 s */
    rtr_autoscaler *a = rtr_autoscaler_create(&c, 1, 0);
    CHECK(a != NULL);
    if (a == NULL)
        return;
    CHECK_NEAR(rtr_autoscaler_stable_average(a, 0), 0.0, 0); /* nothing recorded */
    CHECK(!rtr_autoscaler_decide(a, 0, 1).valid);

    rtr_autoscaler_record(a, 100, 4.0);
    CHECK_NEAR(rtr_autoscaler_stable_average(a, 100), 4.0, 0);
    /* Two samples: the average divides by the 2 s since the first one,
     * not by the window. */
    rtr_autoscaler_record(a, 101, 2.0);
    CHECK_NEAR(rtr_autoscaler_stable_average(a, 101), 3.0, 0);
    CHECK_NEAR(rtr_autoscaler_panic_average(a, 101), 3.0, 0);
    /* A skipped second counts as 0, and two samples of one second add. */
    rtr_autoscaler_record(a, 103, 6.0);
    rtr_autoscaler_record(a, 103, 6.0);
    CHECK_NEAR(rtr_autoscaler_stable_average(a, 103), 4.5, 0);
    CHECK_NEAR(rtr_autoscaler_stable_average(a, 105), 3.0, 0);
    /* The panic average covers only the last 2 s. */
    CHECK_NEAR(rtr_autoscaler_panic_average(a, 104), 6.0, 0);
    CHECK_NEAR(rtr_autoscaler_panic_average(a, 105), 0.0, 0);

    /* Samples older than the window drop out. */
    for (int64_t s = 104; s <= 115; s++)
        rtr_autoscaler_record(a, s, 1.0);
    CHECK_NEAR(rtr_autoscaler_stable_average(a, 115), 1.0, 0);
    CHECK_NEAR(rtr_autoscaler_stable_average(a, 119), 0.6, 1e-12);
    /* Nothing for a whole window reads 0. */
    CHECK_NEAR(rtr_autoscaler_stable_average(a, 125), 0.0, 0);

    /* A gap of a whole window or more starts the average over. */
    rtr_autoscaler_record(a, 200, 8.0);
    CHECK_NEAR(rtr_autoscaler_stable_average(a, 200), 8.0, 0);
    CHECK_NEAR(rtr_autoscaler_stable_average(a, 201), 4.0, 0);
    /* A gap of 3 s restarts only the 2 s panic window. */
    rtr_autoscaler_record(a, 203, 2.0);
    CHECK_NEAR(rtr_autoscaler_stable_average(a, 203), 2.5, 0);
    CHECK_NEAR(rtr_autoscaler_panic_average(a, 203), 2.0, 0);
    CHECK_NEAR(rtr_autoscaler_panic_average(a, 204), 1.0, 0);
    /* Six decimal places, so that 8/3 cannot round up to a whole replica. */
    rtr_autoscaler_record(a, 205, 0.0);
    CHECK_NEAR(rtr_autoscaler_stable_average(a, 205), 1.666667, 0);
    rtr_autoscaler_free(a);
}

/* The first decision after a burst of 10 concurrent requests with target 1
 * asks for all 10 replicas at once, both from a fresh window and after a
 * minute without requests, when the router records no samples. */
static void test_first_decision_after_burst(void)
{
    rtr_scale_config c = config_for_target(1, 10);
    rtr_autoscaler *a = rtr_autoscaler_create(&c, 1, 0);
    rtr_autoscaler_record(a, 0, 10.0);
    rtr_autoscaler_record(a, 1, 10.0);
    rtr_scale_decision d = rtr_autoscaler_decide(a, 1, 1);
    CHECK(d.valid);
    CHECK_INT_EQ(d.desired, 10);
    CHECK_INT_EQ(d.desired_stable, 10);
    CHECK(d.panic);
    CHECK(d.entered_panic);
    rtr_autoscaler_free(a);

    a = rtr_autoscaler_create(&c, 1, 0);
    for (int64_t s = 0; s < 20; s++)
        rtr_autoscaler_record(a, s, 1.0);
    CHECK_INT_EQ(rtr_autoscaler_decide(a, 19, 1).desired, 1);
    rtr_autoscaler_record(a, 80, 10.0);
    rtr_autoscaler_record(a, 81, 10.0);
    d = rtr_autoscaler_decide(a, 81, 1);
    CHECK_INT_EQ(d.desired_panic, 10);
    CHECK_INT_EQ(d.desired, 10);
    CHECK(d.panic);
    /* While the replicas start, the decisions hold at 10 and never creep. */
    for (int64_t s = 82; s < 100; s++) {
        rtr_autoscaler_record(a, s, 10.0);
        if (s % 2 == 1) {
            int ready = s < 90 ? 1 : 10;
            CHECK_INT_EQ(rtr_autoscaler_decide(a, s, ready).desired, 10);
        }
    }
    rtr_autoscaler_free(a);

    /* After 40 s of light load the stable average is low, but the panic
     * window has restarted after 6 s without samples. */
    a = rtr_autoscaler_create(&c, 1, 0);
    for (int64_t s = 0; s < 40; s++)
        rtr_autoscaler_record(a, s, 0.5);
    rtr_autoscaler_record(a, 50, 10.0);
    rtr_autoscaler_record(a, 51, 10.0);
    d = rtr_autoscaler_decide(a, 51, 1);
    CHECK_INT_EQ(d.desired_stable, 1); /* 40 / 52 s */
    CHECK_INT_EQ(d.desired, 10);
    rtr_autoscaler_free(a);

    /* The target is scaled by the utilization: 70 / (10 x 0.7) = 10. */
    c = config_for_target(10, 20);
    a = rtr_autoscaler_create(&c, 1, 0);
    rtr_autoscaler_record(a, 0, 70.0);
    CHECK_INT_EQ(rtr_autoscaler_decide(a, 0, 1).desired, 10);
    rtr_autoscaler_free(a);
}

/* 40 concurrent requests for 120 s, target 1, max 50, and new replicas
 * that take 30 s to become ready. */
static void test_panic_holds_through_burst(void)
{
    rtr_scale_config c = config_for_target(1, 50);
    rtr_autoscaler *a = rtr_autoscaler_create(&c, 1, 0);
    int64_t requested[51];
    requested[1] = -1000; /* the first replica is ready from the start */
    int replicas = 1, previous = 1;
    bool panicked = false, left_panic = false, drop_under_load = false;
    bool panic_decrease = false, too_fast_down = false;
    int desired_when_leaving = 0, first_desired = 0;

    for (int64_t t = 0; t <= 400; t++) {
        rtr_autoscaler_record(a, t, t < 120 ? 40.0 : 0.0);
        if (t % 2 != 1)
            continue;
        int ready = 0;
        for (int k = 1; k <= replicas; k++)
            ready += requested[k] + 30 <= t;
        rtr_scale_decision d = rtr_autoscaler_decide(a, t, ready);
        if (first_desired == 0)
            first_desired = d.desired;
        panicked |= d.panic;
        if (d.panic && d.desired < previous)
            panic_decrease = true;
        if (d.left_panic) {
            left_panic = true;
            desired_when_leaving = d.desired;
        }
        if (t < 120 && d.desired < 40)
            drop_under_load = true;
        if (d.desired < ready / 2)
            too_fast_down = true;
        for (int k = replicas + 1; k <= d.desired; k++)
            requested[k] = t;
        replicas = d.desired;
        previous = d.desired;
    }
    CHECK_INT_EQ(first_desired, 40);
    CHECK(panicked);
    CHECK(!panic_decrease);
    CHECK(!drop_under_load);
    CHECK(left_panic);
    /* Panic ends a stable window after the last tick over the threshold,
     * while the load is still there, and the stable figure is ~40. */
    CHECK_INT_EQ(desired_when_leaving, 40);
    CHECK(!too_fast_down);
    CHECK_INT_EQ(replicas, 1);
    rtr_autoscaler_free(a);
}

/* After the load ends, each decision removes at most half of the ready
 * replicas (max scale down rate 2), and only once the stable average has
 * fallen. */
static void test_scale_down_halves_at_most(void)
{
    rtr_scale_config c = config_for_target(1, 50);
    c.stable_window_s = 10;
    /* Start from 32 replicas that are all busy, out of panic mode. */
    rtr_autoscaler *a = rtr_autoscaler_create(&c, 1, 0);
    int replicas = 32;
    int sequence[16] = {0}, decisions = 0;
    for (int64_t t = 0; t < 60; t++) {
        rtr_autoscaler_record(a, t, t < 20 ? 32.0 : 0.0);
        if (t % 2 != 1)
            continue;
        rtr_scale_decision d = rtr_autoscaler_decide(a, t, replicas);
        if (t < 20)
            CHECK_INT_EQ(d.desired, 32);
        if (d.desired != replicas && decisions < 16)
            sequence[decisions++] = d.desired;
        CHECK_MSG(d.desired >= replicas / 2, "at %lld s: %d replicas to %d", (long long)t,
                  replicas, d.desired);
        replicas = d.desired;
    }
    CHECK_INT_EQ(replicas, 1);
    /* The stable average falls by 3.2 per second, so the count steps down
     * with the window and then halves: never a jump from 32 to 1. */
    CHECK(decisions >= 4);
    CHECK_MSG(sequence[0] >= 16, "the first step down went to %d replicas", sequence[0]);
    rtr_autoscaler_free(a);
}

/* A restart with 7 ready replicas under a steady load of 7 starts in panic
 * mode and keeps 7, even when the first samples after the restart are
 * lower than the real load. */
static void test_restart_keeps_current_count(void)
{
    rtr_scale_config c = config_for_target(1, 10);
    rtr_autoscaler *a = rtr_autoscaler_create(&c, 7, 1000);
    rtr_autoscaler_record(a, 1000, 1.0);
    rtr_autoscaler_record(a, 1001, 1.5);
    rtr_scale_decision d = rtr_autoscaler_decide(a, 1001, 7);
    CHECK(d.panic);
    CHECK_INT_EQ(d.desired_stable, 3); /* the halving floor: 7 / 2 */
    CHECK_INT_EQ(d.desired, 7);
    for (int64_t t = 1002; t < 1100; t++) {
        rtr_autoscaler_record(a, t, 7.0);
        if (t % 2 == 1)
            CHECK_INT_EQ(rtr_autoscaler_decide(a, t, 7).desired, 7);
    }
    rtr_autoscaler_free(a);

    /* Without load it still waits a whole stable window, then scales down
     * by halving. */
    a = rtr_autoscaler_create(&c, 7, 0);
    int replicas = 7, left_at = -1;
    for (int64_t t = 0; t < 80; t++) {
        rtr_autoscaler_record(a, t, 0.0);
        if (t % 2 != 1)
            continue;
        d = rtr_autoscaler_decide(a, t, replicas);
        if (t <= 60)
            CHECK_INT_EQ(d.desired, 7);
        if (d.left_panic)
            left_at = (int)t;
        replicas = d.desired;
    }
    CHECK_INT_EQ(left_at, 61);
    CHECK_INT_EQ(replicas, 1);
    rtr_autoscaler_free(a);

    /* One ready replica: no panic at the start. */
    a = rtr_autoscaler_create(&c, 1, 0);
    rtr_autoscaler_record(a, 0, 1.0);
    d = rtr_autoscaler_decide(a, 0, 1);
    CHECK(!d.panic);
    CHECK_INT_EQ(d.desired, 1);
    rtr_autoscaler_free(a);
}

/* Returns the last decision time that asked for 4 replicas, after 10 s
 * of 4 concurrent requests and then none. */
static int last_decision_of_four(int delay_s)
{
    rtr_scale_config c = config_for_target(1, 10);
    c.stable_window_s = 6;
    c.scale_down_delay_s = delay_s;
    rtr_autoscaler *a = rtr_autoscaler_create(&c, 1, 0);
    int replicas = 1, last_at_four = -1;
    for (int64_t t = 0; t < 40; t++) {
        rtr_autoscaler_record(a, t, t < 10 ? 4.0 : 0.0);
        if (t % 2 != 1)
            continue;
        rtr_scale_decision d = rtr_autoscaler_decide(a, t, replicas);
        if (d.desired == 4)
            last_at_four = (int)t;
        replicas = d.desired;
    }
    CHECK_INT_EQ(replicas, 1);
    rtr_autoscaler_free(a);
    return last_at_four;
}

static void test_scale_down_delay(void)
{
    /* Panic mode ends at 9 s, and the next decision already asks for 3. */
    CHECK_INT_EQ(last_decision_of_four(0), 9);
    /* A 10 s delay keeps the maximum of the last 5 decisions. */
    CHECK_INT_EQ(last_decision_of_four(10), 17);
}

static void test_rps_metric(void)
{
    rtr_scale_config c = config_for_target(200, 20);
    c.metric = RTR_METRIC_RPS;
    rtr_autoscaler *a = rtr_autoscaler_create(&c, 1, 0);
    CHECK_NEAR(rtr_target_value(&c), 140.0, 1e-9);
    for (int64_t t = 0; t < 4; t++)
        rtr_autoscaler_record(a, t, 1400.0);
    CHECK_INT_EQ(rtr_autoscaler_decide(a, 3, 1).desired, 10);
    rtr_autoscaler_free(a);
}

static void test_bounds_and_rates(void)
{
    rtr_scale_config c = config_for_target(1, 10);
    c.min_replicas = 2;
    rtr_autoscaler *a = rtr_autoscaler_create(&c, 1, 0);
    rtr_autoscaler_record(a, 0, 0.0);
    rtr_scale_decision d = rtr_autoscaler_decide(a, 0, 1);
    CHECK_INT_EQ(d.unbounded, 0);
    CHECK_INT_EQ(d.desired, 2);
    rtr_autoscaler_record(a, 1, 200.0);
    d = rtr_autoscaler_decide(a, 1, 2);
    CHECK_INT_EQ(d.unbounded, 100);
    CHECK_INT_EQ(d.desired, 10);
    rtr_autoscaler_free(a);

    /* A max scale up rate of 2 lets 1 ready replica grow to 2 per decision. */
    c = config_for_target(1, 10);
    c.max_scale_up_rate = 2;
    a = rtr_autoscaler_create(&c, 1, 0);
    rtr_autoscaler_record(a, 0, 10.0);
    CHECK_INT_EQ(rtr_autoscaler_decide(a, 0, 1).desired, 2);
    CHECK_INT_EQ(rtr_autoscaler_decide(a, 0, 2).desired, 4);
    rtr_autoscaler_free(a);
}

int main(void)
{
    RUN_TEST(test_defaults_are_knative);
    RUN_TEST(test_target_value);
    RUN_TEST(test_panic_window_rounding);
    RUN_TEST(test_config_check_rejects);
    RUN_TEST(test_window_average);
    RUN_TEST(test_first_decision_after_burst);
    RUN_TEST(test_panic_holds_through_burst);
    RUN_TEST(test_scale_down_halves_at_most);
    RUN_TEST(test_restart_keeps_current_count);
    RUN_TEST(test_scale_down_delay);
    RUN_TEST(test_rps_metric);
    RUN_TEST(test_bounds_and_rates);
    return check_finish();
}
