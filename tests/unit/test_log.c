/* test_log.c - log_limit: one line per period, and the count of the rest. */
#include <check.h>

#include "tests/unit/unit.h"

#include "common/log.h"

START_TEST(one_line_per_period_with_the_count)
{
	struct log_limit l = {0};
	uint64_t skipped = 99;
	int lines = 0;

	ck_assert(log_limit_due(&l, 10000, 5000, &skipped));
	ck_assert_uint_eq(skipped, 0);
	/* 200 more within the period: counted, none logged. */
	for (int i = 0; i < 200; i++)
		lines += log_limit_due(&l, 10000, 5001 + i, &skipped);
	ck_assert_int_eq(lines, 0);
	ck_assert(!log_limit_due(&l, 10000, 14999, &skipped));
	/* The period is over: one line, saying how many were not logged. */
	ck_assert(log_limit_due(&l, 10000, 15000, &skipped));
	ck_assert_uint_eq(skipped, 201);
	ck_assert(!log_limit_due(&l, 10000, 15001, &skipped));
	ck_assert(log_limit_due(&l, 10000, 99999, &skipped));
	ck_assert_uint_eq(skipped, 1);
}
END_TEST

START_TEST(a_clock_at_zero_still_limits)
{
	struct log_limit l = {0};
	uint64_t skipped;

	ck_assert(log_limit_due(&l, 1000, 0, &skipped));
	ck_assert(!log_limit_due(&l, 1000, 0, &skipped));
	ck_assert(!log_limit_due(&l, 1000, 999, &skipped));
	ck_assert(log_limit_due(&l, 1000, 1001, &skipped));
	ck_assert_uint_eq(skipped, 2);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("limit");

	tcase_add_test(tc, one_line_per_period_with_the_count);
	tcase_add_test(tc, a_clock_at_zero_still_limits);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
