/* test_relay.c - relay_start that fails half-way leaves nothing behind: the
 * workers already started are stopped and joined, their descriptors closed.
 * Thread creation fails on demand through relay_thread_create. */
#include <check.h>

#include "tests/unit/unit.h"
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lbd/relay.h"

static int creates, fail_at = -1;
static atomic_int running; /* workers started and not yet returned */

struct start {
	void *(*fn)(void *);
	void *arg;
};

/* A worker's whole life: counted from its creation until its function
 * returns (so before pthread_join returns). */
static void *counted(void *p)
{
	struct start st = *(struct start *)p;
	void *ret;

	free(p);
	ret = st.fn(st.arg);
	atomic_fetch_sub(&running, 1);
	return ret;
}

/* pthread_create, except the fail_at-th call (from 0) fails with EAGAIN. */
static int flaky_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
	struct start *st;
	int rc;

	if (creates++ == fail_at)
		return EAGAIN;
	st = malloc(sizeof(*st));
	ck_assert_ptr_nonnull(st);
	*st = (struct start){fn, arg};
	atomic_fetch_add(&running, 1);
	if ((rc = pthread_create(t, a, counted, st)) != 0) {
		atomic_fetch_sub(&running, 1);
		free(st);
	}
	return rc;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* opendir's own descriptor */
}

static void start_failing_at(int at)
{
	struct event_base *base = event_base_new();
	int fds = count_fds();
	char *err = NULL, want[64];

	relay_thread_create = flaky_create;
	creates = 0;
	fail_at = at;
	ck_assert_ptr_null(relay_start(base, 4, &err));
	ck_assert_ptr_nonnull(err);
	snprintf(want, sizeof(want), "cannot start worker thread %d: ", at);
	ck_assert_msg(strstr(err, want), "error: %s", err);
	ck_assert_msg(strstr(err, strerror(EAGAIN)), "error: %s", err);
	free(err);
	ck_assert_int_eq(creates, at + 1);
	int left = atomic_load(&running);
	ck_assert_msg(left == 0, "%d workers still running", left);
	ck_assert_int_eq(count_fds(), fds);
	event_base_free(base);
}

START_TEST(test_first_thread_fails)
{
	start_failing_at(0);
}
END_TEST

START_TEST(test_later_thread_fails)
{
	start_failing_at(2);
}
END_TEST

START_TEST(test_last_thread_fails)
{
	start_failing_at(3);
}
END_TEST

/* The same counts after a start that worked and a stop: the test's measure. */
START_TEST(test_start_stop_leaves_nothing)
{
	struct event_base *base = event_base_new();
	int fds = count_fds();
	char *err = NULL;
	struct relay *r;

	relay_thread_create = flaky_create;
	creates = 0;
	fail_at = -1;
	r = relay_start(base, 4, &err);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(relay_nthreads(r), 4);
	int up = atomic_load(&running);
	ck_assert_int_eq(up, 4);
	relay_stop(r);
	relay_free(r);
	int left = atomic_load(&running);
	ck_assert_msg(left == 0, "%d workers still running", left);
	ck_assert_int_eq(count_fds(), fds);
	event_base_free(base);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("relay");
	TCase *tc = tcase_create("start");

	tcase_add_test(tc, test_first_thread_fails);
	tcase_add_test(tc, test_later_thread_fails);
	tcase_add_test(tc, test_last_thread_fails);
	tcase_add_test(tc, test_start_stop_leaves_nothing);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
