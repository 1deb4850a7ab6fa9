/*
 * The learning-rate schedule: the reference design's default, and
 * --lr_boundaries / --lr_values parsed into Keras's piecewise-constant
 * rule, with errors that name the bad element.
 */
#include "base/error.h"
#include "check.h"
#include "train/fit.h"

static void test_reference_schedule(void)
{
    fit_schedule s;
    fit_schedule_default(&s);
    const float expected[] = {1e-3f, 1e-3f, 1e-3f, 1e-4f, 1e-4f, 1e-4f, 1e-4f, 1e-5f, 1e-5f};
    for (int epoch = 0; epoch < 9; epoch++)
        CHECK_NEAR(fit_learning_rate(&s, epoch), expected[epoch], 1e-9);
    CHECK_NEAR(fit_learning_rate(&s, 1000), 1e-5, 1e-9);
}

static void test_parsed_schedule(void)
{
    fit_schedule s;
    CHECK_INT_EQ(fit_schedule_parse("10", "0.001,0.0001", &s), 0);
    CHECK_INT_EQ(s.count, 1);
    CHECK_NEAR(fit_learning_rate(&s, 9), 1e-3, 1e-9);
    CHECK_NEAR(fit_learning_rate(&s, 10), 1e-4, 1e-9);

    /* Spaces around the items are ignored. */
    CHECK_INT_EQ(fit_schedule_parse(" 3 , 7 ", "0.1, 0.01 ,0.001 ", &s), 0);
    CHECK_INT_EQ(s.boundaries[1], 7);
    CHECK_NEAR(s.values[2], 1e-3, 1e-9);

    /* No boundaries: one constant rate. */
    CHECK_INT_EQ(fit_schedule_parse("", "0.002", &s), 0);
    CHECK_INT_EQ(s.count, 0);
    CHECK_NEAR(fit_learning_rate(&s, 0), 2e-3, 1e-9);
    CHECK_NEAR(fit_learning_rate(&s, 50), 2e-3, 1e-9);
}

static void expect_error(const char *boundaries, const char *values, const char *message)
{
    fit_schedule s;
    CHECK_INT_EQ(fit_schedule_parse(boundaries, values, &s), -1);
    CHECK_STR_CONTAINS(dm_error(), message);
}

static void test_bad_schedules(void)
{
    expect_error("3,7", "0.001,0.0001", "invalid --lr_values '0.001,0.0001': expected 3");
    expect_error("3,3", "0.1,0.1,0.1", "element 1 '3': expected an epoch above 3");
    expect_error("0", "0.1,0.1", "element 0 '0': expected an epoch above 0");
    expect_error("2x", "0.1,0.1", "element 0 '2x'");
    expect_error("3,,7", "0.1,0.1,0.1,0.1", "invalid --lr_boundaries '3,,7'");
    expect_error("3", "0.1,-1", "--lr_values element 1 '-1': expected a rate above 0");
    expect_error("3", "0.1,nan", "--lr_values element 1 'nan'");
    expect_error("3", "0.1,2", "--lr_values element 1 '2'");
    expect_error("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", "0.1", "expected up to 15");
    expect_error(" ", "0.1", "invalid --lr_boundaries ' '");
    expect_error("+3", "0.1,0.1", "element 0 '+3'");
}

int main(void)
{
    RUN_TEST(test_reference_schedule);
    RUN_TEST(test_parsed_schedule);
    RUN_TEST(test_bad_schedules);
    return check_finish();
}
