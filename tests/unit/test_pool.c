/* test_pool.c - balancing: weights, least connections, source hash, tiers. */
#include <arpa/inet.h>
#include <check.h>

#include "tests/unit/unit.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "config/config.h"
#include "lbd/pool.h"

/* A pool of n backends "b0".."bn-1" with the given weights, no checks. */
static struct pool *make_pool(enum balance bal, const int *weights, size_t n)
{
	struct pool_conf pc = {0};
	struct pool *p;

	pc.name = "p";
	pc.balance = bal;
	pc.health.rise = 2;
	pc.health.fall = 3;
	pc.health.path = "/readyz";
	pc.backends = xcalloc(n, sizeof(*pc.backends));
	pc.nbackends = n;
	for (size_t i = 0; i < n; i++) {
		char name[16], addr[32];
		const char *why;
		snprintf(name, sizeof(name), "b%zu", i);
		snprintf(addr, sizeof(addr), "127.0.0.1:%zu", 10000 + i);
		pc.backends[i].name = xstrdup(name);
		pc.backends[i].weight = weights[i];
		ck_assert_int_eq(sockaddr_conf_parse(addr, &pc.backends[i].addr, &why), 0);
	}
	p = pool_new(&pc, NULL, NULL);
	for (size_t i = 0; i < n; i++)
		backend_conf_free(&pc.backends[i]);
	free(pc.backends);
	return p;
}

/* pool_pick for a test: the reference it takes is dropped at once (the
 * pool still holds the backend). */
static struct backend *pick(struct pool *p, const struct sockaddr *src,
			    struct backend *const *tried, size_t ntried)
{
	struct backend *b = pool_pick(p, src, tried, ntried);
	if (b)
		backend_unref(b);
	return b;
}

static void set_up(struct pool *p, size_t i, bool up)
{
	struct backend *b = p->be[i];
	check_health_init(&b->health, 2, 3);
	check_health_update(&b->health, up);
	b->last.tcp_ok = up;
	b->last_tcp_ok = up;
	pool_recheck(p);
}

static void all_up(struct pool *p)
{
	for (size_t i = 0; i < p->nbe; i++)
		set_up(p, i, true);
}

static size_t index_of(const struct pool *p, const struct backend *b)
{
	for (size_t i = 0; i < p->nbe; i++)
		if (p->be[i] == b)
			return i;
	ck_abort_msg("picked backend not in pool");
	return 0;
}

START_TEST(round_robin_follows_weights)
{
	int w[] = {5, 1, 1};
	struct pool *p = make_pool(BAL_ROUND_ROBIN, w, 3);
	size_t count[3] = {0};
	char seq[8] = {0};

	all_up(p);
	for (int i = 0; i < 700; i++) {
		size_t k = index_of(p, pick(p, NULL, NULL, 0));
		count[k]++;
		if (i < 7)
			seq[i] = (char)('a' + k);
	}
	ck_assert_uint_eq(count[0], 500);
	ck_assert_uint_eq(count[1], 100);
	ck_assert_uint_eq(count[2], 100);
	/* Smooth: the heavy backend is interleaved, not picked 5 in a row. */
	ck_assert_str_eq(seq, "aabacaa");
	pool_free(p);
}
END_TEST

START_TEST(least_conn_balances_active_by_weight)
{
	int w[] = {1, 2, 1};
	struct pool *p = make_pool(BAL_LEAST_CONN, w, 3);

	all_up(p);
	/* Open 400 connections that all stay: actives end up 1:2:1. */
	for (int i = 0; i < 400; i++)
		pick(p, NULL, NULL, 0)->active++;
	ck_assert_uint_eq(p->be[0]->active, 100);
	ck_assert_uint_eq(p->be[1]->active, 200);
	ck_assert_uint_eq(p->be[2]->active, 100);
	/* The least loaded (per weight) gets the next one. */
	p->be[2]->active = 10;
	ck_assert_ptr_eq(pick(p, NULL, NULL, 0), p->be[2]);
	pool_free(p);
}
END_TEST

START_TEST(least_conn_spreads_ties)
{
	int w[] = {1, 1, 1};
	struct pool *p = make_pool(BAL_LEAST_CONN, w, 3);
	size_t count[3] = {0};

	all_up(p);
	/* Short connections (closed before the next): ties must rotate. */
	for (int i = 0; i < 300; i++)
		count[index_of(p, pick(p, NULL, NULL, 0))]++;
	ck_assert_uint_eq(count[0], 100);
	ck_assert_uint_eq(count[1], 100);
	ck_assert_uint_eq(count[2], 100);
	pool_free(p);
}
END_TEST

static struct sockaddr_in client(int n)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(0x0a000000u + (uint32_t)n);
	return sin;
}

START_TEST(source_hash_is_sticky_and_weighted)
{
	int w[] = {1, 1, 2};
	struct pool *p = make_pool(BAL_SOURCE_HASH, w, 3);
	size_t count[3] = {0}, moved = 0, first[3000];

	all_up(p);
	for (int i = 0; i < 3000; i++) {
		struct sockaddr_in c = client(i);
		struct backend *b = pick(p, (struct sockaddr *)&c, NULL, 0);
		first[i] = index_of(p, b);
		count[first[i]]++;
		/* Same client, same backend. */
		ck_assert_ptr_eq(pick(p, (struct sockaddr *)&c, NULL, 0), b);
	}
	/* Weight 2 gets about half. */
	ck_assert_msg(count[2] > 1300 && count[2] < 1700, "weight-2 share %zu", count[2]);
	/* Take b0 down: only its clients move. */
	set_up(p, 0, false);
	for (int i = 0; i < 3000; i++) {
		struct sockaddr_in c = client(i);
		size_t k = index_of(p, pick(p, (struct sockaddr *)&c, NULL, 0));
		if (first[i] != 0)
			ck_assert_uint_eq(k, first[i]);
		else
			moved++;
	}
	ck_assert_uint_eq(moved, count[0]);
	pool_free(p);
}
END_TEST

START_TEST(down_drain_disabled_and_zero_weight_get_nothing)
{
	int w[] = {1, 1, 1, 0, 1};
	struct pool *p = make_pool(BAL_ROUND_ROBIN, w, 5);

	all_up(p);
	set_up(p, 0, false);
	backend_set_state(p->be[1], BE_DRAIN);
	backend_set_state(p->be[2], BE_DISABLED);
	for (int i = 0; i < 50; i++)
		ck_assert_ptr_eq(pick(p, NULL, NULL, 0), p->be[4]);
	pool_free(p);
}
END_TEST

START_TEST(fail_safe_prefers_live_backends)
{
	int w[] = {1, 1, 1};
	struct pool *p = make_pool(BAL_ROUND_ROBIN, w, 3);

	for (size_t i = 0; i < 3; i++)
		set_up(p, i, false);
	ck_assert(p->fail_safe);
	/* b1 fails /readyz but still accepts TCP: it gets the traffic. */
	p->be[1]->last.tcp_ok = true;
	pool_recheck(p);
	for (int i = 0; i < 10; i++)
		ck_assert_ptr_eq(pick(p, NULL, NULL, 0), p->be[1]);
	/* Nobody live: still try someone enabled rather than no one. */
	p->be[1]->last.tcp_ok = false;
	pool_recheck(p);
	ck_assert_ptr_nonnull(pick(p, NULL, NULL, 0));
	set_up(p, 2, true);
	ck_assert(!p->fail_safe);
	ck_assert_ptr_eq(pick(p, NULL, NULL, 0), p->be[2]);
	pool_free(p);
}
END_TEST

START_TEST(tried_backends_are_skipped)
{
	int w[] = {1, 1, 1};
	struct pool *p = make_pool(BAL_LEAST_CONN, w, 3);
	struct backend *tried[3];

	all_up(p);
	tried[0] = p->be[0];
	tried[1] = p->be[2];
	for (int i = 0; i < 10; i++)
		ck_assert_ptr_eq(pick(p, NULL, tried, 2), p->be[1]);
	tried[2] = p->be[1];
	ck_assert_ptr_null(pick(p, NULL, tried, 3));
	pool_free(p);
}
END_TEST

START_TEST(update_keeps_state_and_replaces_moved)
{
	int w[] = {1, 1, 1};
	struct pool *p = make_pool(BAL_LEAST_CONN, w, 3);
	struct pool_conf pc = {0};
	const char *why;

	all_up(p);
	backend_set_state(p->be[0], BE_DRAIN);
	struct backend *b0 = p->be[0];
	pc.name = "p";
	pc.health = p->conf.health;
	pc.nbackends = 3;
	pc.backends = xcalloc(3, sizeof(*pc.backends));
	pc.backends[0] = (struct backend_conf){.name = "b0", .weight = 3};
	sockaddr_conf_parse("127.0.0.1:10000", &pc.backends[0].addr, &why);
	pc.backends[1] = (struct backend_conf){.name = "b1", .weight = 1};
	sockaddr_conf_parse("127.0.0.1:19999", &pc.backends[1].addr, &why); /* moved */
	pc.backends[2] = (struct backend_conf){.name = "b9", .weight = 1};  /* new */
	sockaddr_conf_parse("127.0.0.1:10009", &pc.backends[2].addr, &why);
	pool_update(p, &pc);
	ck_assert_uint_eq(p->nbe, 3);
	ck_assert_ptr_eq(pool_find(p, "b0"), b0);
	ck_assert_int_eq(b0->state, BE_DRAIN);
	ck_assert_int_eq(b0->conf.weight, 3);
	ck_assert_ptr_null(pool_find(p, "b2"));
	ck_assert(!pool_find(p, "b1")->health.known); /* replaced: fresh */
	ck_assert_ptr_nonnull(pool_find(p, "b9"));
	for (size_t i = 0; i < 3; i++)
		sockaddr_conf_free(&pc.backends[i].addr);
	free(pc.backends);
	pool_free(p);
}
END_TEST

START_TEST(failed_connect_makes_a_backend_suspect_until_a_good_check)
{
	int w[] = {1, 1};
	struct pool *p = make_pool(BAL_ROUND_ROBIN, w, 2);
	struct backend *tried[1];

	all_up(p);
	/* b0 drops connects silently: the first client tries it, retries b1. */
	struct backend *first = pick(p, NULL, NULL, 0);
	tried[0] = first;
	struct backend *retry = pick(p, NULL, tried, 1);
	ck_assert_ptr_ne(first, retry);
	backend_connect_failed(first);
	/* Every next client goes straight to the other one... */
	for (int i = 0; i < 10; i++)
		ck_assert_ptr_eq(pick(p, NULL, NULL, 0), retry);
	/* ...unless it is the only one left: the fail-safe tiers keep it. */
	backend_connect_failed(retry);
	ck_assert_ptr_nonnull(pick(p, NULL, NULL, 0));
	/* What a good check does (on_check): the mark goes. */
	atomic_store(&first->suspect_until_ms, 0);
	atomic_store(&retry->suspect_until_ms, 0);
	size_t seen0 = 0;
	for (int i = 0; i < 10; i++)
		seen0 += pick(p, NULL, NULL, 0) == p->be[0];
	ck_assert_uint_eq(seen0, 5);
	pool_free(p);
}
END_TEST

/* Connect times land in the first bucket whose bound they do not exceed;
 * the sum and count follow; a slot past the workers' is slot 0. */
START_TEST(connect_time_buckets_and_sums)
{
	const int w[] = {1};
	struct pool *p = make_pool(BAL_ROUND_ROBIN, w, 1);
	struct backend *b = p->be[0];
	struct backend_counts n;

	ck_assert_int_eq(b->nwc, 1);	     /* no epoch: one reader */
	backend_connect_time(b, 0, 500);     /* 0.5 ms: le 0.0005 */
	backend_connect_time(b, 0, 501);     /* just above: le 0.001 */
	backend_connect_time(b, 7, 1000000); /* 1 s: le 1 (slot 7 is slot 0) */
	backend_connect_time(b, 0, 3000000); /* past 2.5 s: +Inf */
	backend_connect_time(b, 0, -5);	     /* a clock oddity counts as 0 */
	backend_wcount_add(&backend_wcount(b, 0)->bytes_in, 10);
	backend_wcount_add(&backend_wcount(b, 0)->bytes_in, 5);
	backend_counts_read(b, &n);
	ck_assert_uint_eq(n.connects, 5);
	ck_assert_uint_eq(n.connect_hist[0], 2);
	ck_assert_uint_eq(n.connect_hist[1], 1);
	ck_assert_double_eq(pool_connect_hist_le[10], 1.0);
	ck_assert_uint_eq(n.connect_hist[10], 1);
	ck_assert_uint_eq(n.connect_hist[CONNECT_HIST_BUCKETS], 1);
	ck_assert_uint_eq(n.connect_usec_sum, 500 + 501 + 1000000 + 3000000);
	ck_assert_uint_eq(n.bytes_in, 15);
	ck_assert_uint_eq(n.bytes_out, 0);
	pool_free(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("balance");

	log_setup(LOG_FMT_TEXT, LOG_LVL_ERR, "test_pool");
	tcase_add_test(tc, round_robin_follows_weights);
	tcase_add_test(tc, least_conn_balances_active_by_weight);
	tcase_add_test(tc, least_conn_spreads_ties);
	tcase_add_test(tc, source_hash_is_sticky_and_weighted);
	tcase_add_test(tc, down_drain_disabled_and_zero_weight_get_nothing);
	tcase_add_test(tc, fail_safe_prefers_live_backends);
	tcase_add_test(tc, tried_backends_are_skipped);
	tcase_add_test(tc, update_keeps_state_and_replaces_moved);
	tcase_add_test(tc, failed_connect_makes_a_backend_suspect_until_a_good_check);
	tcase_add_test(tc, connect_time_buckets_and_sums);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
