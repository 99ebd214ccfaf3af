/* test_log.c - log_limit: one line per period, and the count of the rest;
 * log_kv: structured fields beside msg in JSON lines. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/unit.h"

#include "common/log.h"

/* What one log call wrote to stderr. */
static char *captured(enum log_format fmt, void (*emit)(void))
{
	char path[] = "/tmp/test_log.XXXXXX";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	static char buf[8192];
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	unlink(path);
	dup2(fd, STDERR_FILENO);
	log_setup(fmt, LOG_LVL_DEBUG, "test");
	emit();
	dup2(saved, STDERR_FILENO);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void emit_down(void)
{
	log_kv(LOG_LVL_WARN,
	       LOG_KV("pool", "masters", "backend", "m1", "node", NULL, "reason",
		      "readyz 503: \"etcd\"\nfailed"),
	       "backend %s/%s is DOWN", "masters", "m1");
}

/* Issue 18: JSON lines carried only ts, level, msg. */
START_TEST(json_lines_carry_the_fields)
{
	char *line = captured(LOG_FMT_JSON, emit_down);
	json_error_t e;
	json_t *j = json_loads(line, 0, &e);

	ck_assert_msg(j != NULL, "not JSON: %s (%s)", line, e.text);
	ck_assert_int_eq(strchr(line, '\n') - line, (long)strlen(line) - 1); /* one line */
	ck_assert_str_eq(json_string_value(json_object_get(j, "level")), "warn");
	ck_assert_str_eq(json_string_value(json_object_get(j, "msg")),
			 "backend masters/m1 is DOWN");
	ck_assert_str_eq(json_string_value(json_object_get(j, "pool")), "masters");
	ck_assert_str_eq(json_string_value(json_object_get(j, "backend")), "m1");
	ck_assert_ptr_null(json_object_get(j, "node")); /* NULL: left out */
	const char *reason = json_string_value(json_object_get(j, "reason"));
	ck_assert_ptr_nonnull(reason);
	ck_assert_ptr_nonnull(strstr(reason, "readyz 503: \"etcd\""));
	ck_assert_ptr_null(strchr(reason, '\n')); /* cleaned like the message */
	json_decref(j);

	line = captured(LOG_FMT_TEXT, emit_down);
	ck_assert_ptr_nonnull(strstr(line, "warn: backend masters/m1 is DOWN\n"));
	ck_assert_ptr_null(strstr(line, "readyz"));
}
END_TEST

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
	tcase_add_test(tc, json_lines_carry_the_fields);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
