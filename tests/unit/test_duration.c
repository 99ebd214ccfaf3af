/* test_duration.c - duration_parse / duration_format. */
#include <check.h>

#include "tests/unit/unit.h"
#include <stdint.h>
#include <stdlib.h>

#include "common/duration.h"

static int64_t parse_ok(const char *s)
{
	int64_t ms = -12345;

	ck_assert_msg(duration_parse(s, &ms) == 0, "'%s' should parse", s);
	return ms;
}

START_TEST(test_good)
{
	ck_assert_int_eq(parse_ok("0s"), 0);
	ck_assert_int_eq(parse_ok("500ms"), 500);
	ck_assert_int_eq(parse_ok("2s"), 2000);
	ck_assert_int_eq(parse_ok("5m"), 300000);
	ck_assert_int_eq(parse_ok("1h"), 3600000);
	ck_assert_int_eq(parse_ok("1m30s"), 90000);
	ck_assert_int_eq(parse_ok("1h2m3s4ms"), 3723004);
	ck_assert_int_eq(parse_ok("100ms"), 100);
}
END_TEST

START_TEST(test_bad)
{
	static const char *const bad[] = {"",	  "5",	 "fast", "1x",	"s",	"-1s",
					  "1.5s", " 1s", "1s ",	 "1 s", "ms",	"1s2",
					  "1sm",  "2ss", "1H",	 "+1s", "0x10s"};
	int64_t ms = 42;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(duration_parse(bad[i], &ms) == -1, "'%s' should not parse", bad[i]);
	ck_assert_int_eq(ms, 42); /* untouched on error */
	ck_assert_int_eq(duration_parse(NULL, &ms), -1);
}
END_TEST

START_TEST(test_overflow)
{
	int64_t ms = 0;

	/* Huge values parse; past INT64_MAX (in digits, in units or in the sum) they do not. */
	ck_assert_int_eq(duration_parse("922337203685477580ms", &ms), 0);
	ck_assert(ms == INT64_MAX / 10);
	ck_assert_int_eq(duration_parse("2562047788015h", &ms), 0);
	ck_assert(ms == 2562047788015LL * 3600000);
	ck_assert_int_eq(duration_parse("2562047788016h", &ms), -1);
	ck_assert_int_eq(duration_parse("9223372036854775808ms", &ms), -1);
	ck_assert_int_eq(duration_parse("99999999999999999999999999ms", &ms), -1);
	ck_assert_int_eq(duration_parse("9223372036854775807s", &ms), -1);
	ck_assert_int_eq(duration_parse("3000000000000h", &ms), -1);
	ck_assert_int_eq(
	    duration_parse(
		"922337203685477580ms922337203685477580ms922337203685477580ms922337203685477580ms92"
		"2337203685477580ms922337203685477580ms922337203685477580ms922337203685477580ms9223"
		"37203685477580ms922337203685477580ms922337203685477580ms",
		&ms),
	    -1);
}
END_TEST

START_TEST(test_format)
{
	char buf[64];

	ck_assert_str_eq(duration_format(0, buf, sizeof(buf)), "0s");
	ck_assert_str_eq(duration_format(500, buf, sizeof(buf)), "500ms");
	ck_assert_str_eq(duration_format(90000, buf, sizeof(buf)), "1m30s");
	ck_assert_str_eq(duration_format(3600000, buf, sizeof(buf)), "1h");
	/* format then parse gives the same value back */
	for (int64_t v = 1; v < INT64_MAX / 3; v = v * 3 + 7) {
		int64_t back = -1;
		ck_assert_int_eq(duration_parse(duration_format(v, buf, sizeof(buf)), &back), 0);
		ck_assert(back == v);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("duration");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_good);
	tcase_add_test(tc, test_bad);
	tcase_add_test(tc, test_overflow);
	tcase_add_test(tc, test_format);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
