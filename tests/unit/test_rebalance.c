/* test_rebalance.c - the rebalance planner (pure): when the spread is off,
 * and which backends give up how many connections. */
#include <check.h>

#include "tests/unit/unit.h"
#include <stdlib.h>

#include "lbd/closerate.h"
#include "lbd/rebalance.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

START_TEST(test_spread_ok)
{
	struct rebalance_be even[] = {{100, 1, 0}, {100, 1, 0}, {100, 1, 0}};
	struct rebalance_be back[] = {{150, 1, 0}, {150, 1, 0}, {0, 1, 0}};
	struct rebalance_be near[] = {{110, 1, 0}, {110, 1, 0}, {80, 1, 0}}; /* 20% of 100 */
	struct rebalance_be weighted[] = {{200, 2, 0}, {100, 1, 0}};
	struct rebalance_be tiny[] = {{1, 1, 0}, {1, 1, 0}, {0, 1, 0}}; /* one of slack */

	ck_assert(rebalance_spread_ok(even, N(even), 20));
	ck_assert(!rebalance_spread_ok(back, N(back), 20));
	ck_assert(rebalance_spread_ok(near, N(near), 20));
	ck_assert(!rebalance_spread_ok(near, N(near), 10));
	ck_assert(rebalance_spread_ok(weighted, N(weighted), 5));
	ck_assert(rebalance_spread_ok(tiny, N(tiny), 20));
	ck_assert(rebalance_spread_ok(back, 1, 20)); /* one backend: nothing to spread */
}
END_TEST

START_TEST(test_plan_takes_from_the_most_loaded)
{
	struct rebalance_be be[] = {{150, 1, 100}, {140, 1, 100}, {0, 1, 100}};
	size_t close[3];

	/* 150 is above 140: it goes first, then they alternate. */
	ck_assert_uint_eq(rebalance_plan(be, 3, 1, close), 1);
	ck_assert_uint_eq(close[0], 1);
	ck_assert_uint_eq(rebalance_plan(be, 3, 20, close), 20);
	ck_assert_uint_eq(close[0], 15);
	ck_assert_uint_eq(close[1], 5);
	ck_assert_uint_eq(close[2], 0);
}
END_TEST

START_TEST(test_plan_respects_quota_and_fair_share)
{
	struct rebalance_be be[] = {{150, 1, 10}, {150, 1, 100}, {0, 1, 100}};
	size_t close[3];

	/* At most 10 from the first (its share this round); no backend goes
	 * below its fair share (100): 10 + 50 at most. */
	ck_assert_uint_eq(rebalance_plan(be, 3, 1000, close), 60);
	ck_assert_uint_eq(close[0], 10);
	ck_assert_uint_eq(close[1], 50);
	ck_assert_uint_eq(close[2], 0);
}
END_TEST

START_TEST(test_plan_weights)
{
	/* Fair: 200 and 100; the weight-2 backend at 220 is 110 per weight,
	 * the other at 80 is below. */
	struct rebalance_be be[] = {{220, 2, 100}, {80, 1, 100}};
	size_t close[2];

	ck_assert_uint_eq(rebalance_plan(be, 2, 1000, close), 20);
	ck_assert_uint_eq(close[0], 20);
	ck_assert_uint_eq(close[1], 0);
}
END_TEST

/* The one close-rate bucket (closerate.h): rate per second with the loop
 * ticking, rate + 1 at most after a stall, nothing saved when not spent. */
START_TEST(test_close_rate)
{
	struct close_rate r;
	size_t total = 0;

	close_rate_start(&r, 0);
	ck_assert_uint_eq(close_rate_allowed(&r, 10, 0), 1); /* the first one goes now */
	close_rate_spend(&r, 1);
	for (int64_t t = 100; t <= 1000; t += 100) { /* ticking: 10 in a second */
		size_t n = close_rate_allowed(&r, 10, t);
		close_rate_spend(&r, n);
		total += n;
	}
	ck_assert_uint_eq(total, 10);
	ck_assert_uint_eq(close_rate_allowed(&r, 10, 6000), 11); /* a 5 s stall saves 11 */
	close_rate_spend(&r, 0);				 /* none wanted now ... */
	ck_assert_uint_eq(close_rate_allowed(&r, 10, 6000), 1);	 /* ... and none saved */
	close_rate_start(&r, 0);
	ck_assert_uint_eq(close_rate_allowed(&r, 0, 1000), 2); /* rate 0 counts as 1 */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("rebalance");
	TCase *tc = tcase_create("plan");

	tcase_add_test(tc, test_spread_ok);
	tcase_add_test(tc, test_plan_takes_from_the_most_loaded);
	tcase_add_test(tc, test_plan_respects_quota_and_fair_share);
	tcase_add_test(tc, test_plan_weights);
	tcase_add_test(tc, test_close_rate);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
