/* test_lease.c - the lease table (fencing, slots, staleness, renewals) and the file store. */
#include <check.h>
#include <time.h>

#include "tests/unit/unit.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/xmalloc.h"
#include "gate/lease.h"
#include "gate/store.h"

static struct gate_lease mk(const char *node, enum gate_role role, int slot)
{
	struct gate_lease l = {0};
	l.node = (char *)node;
	l.role = role;
	l.slot = slot;
	l.reason = (char *)"kernel update";
	l.ttl_ms = 60000;
	return l;
}

START_TEST(test_fencing_only_grows)
{
	struct lease_table t;
	struct gate_lease l = mk("a", GATE_ROLE_MASTER, 0);
	uint64_t last = 0;

	lease_table_init(&t);
	for (int i = 0; i < 10; i++) {
		struct gate_lease *nl = lease_table_add(&t, &l, 1000);
		ck_assert(nl->fence > last);
		last = nl->fence;
		ck_assert_int_eq(lease_table_remove(&t, "a"), 0);
	}
	ck_assert_int_eq(lease_table_remove(&t, "a"), -1);
	/* A store that saw a larger fence (the other lbd of a pair) raises it. */
	l.fence = 100;
	ck_assert(lease_table_add(&t, &l, 1000)->fence == 100);
	lease_table_remove(&t, "a");
	l.fence = 0;
	ck_assert(lease_table_add(&t, &l, 1000)->fence == 101);
	lease_table_free(&t);
}
END_TEST

START_TEST(test_slots)
{
	struct lease_table t;
	struct gate_lease a = mk("a", GATE_ROLE_WORKER, 0), b = mk("b", GATE_ROLE_WORKER, 1);
	enum gate_role r;
	int slot;
	char buf[32];

	lease_table_init(&t);
	ck_assert_int_eq(lease_table_free_slot(&t, GATE_ROLE_WORKER, 2), 0);
	lease_table_add(&t, &a, 1);
	lease_table_add(&t, &b, 1);
	ck_assert_int_eq(lease_table_free_slot(&t, GATE_ROLE_WORKER, 2), -1);
	ck_assert_int_eq(lease_table_free_slot(&t, GATE_ROLE_WORKER, 3), 2);
	ck_assert_int_eq(lease_table_free_slot(&t, GATE_ROLE_MASTER, 1), 0);
	lease_table_remove(&t, "a");
	ck_assert_int_eq(lease_table_free_slot(&t, GATE_ROLE_WORKER, 2), 0);
	ck_assert_uint_eq(lease_table_count(&t, GATE_ROLE_WORKER), 1);
	lease_table_free(&t);

	ck_assert_str_eq(gate_slot_name(GATE_ROLE_MASTER, 2, buf, sizeof(buf)), "master-2");
	ck_assert_int_eq(gate_slot_parse("worker-12", &r, &slot), 0);
	ck_assert(r == GATE_ROLE_WORKER && slot == 12);
	ck_assert_int_eq(gate_slot_parse("worker-", &r, &slot), -1);
	ck_assert_int_eq(gate_slot_parse("boss-1", &r, &slot), -1);
	ck_assert_int_eq(gate_slot_parse("master-1x", &r, &slot), -1);
	ck_assert_int_eq(gate_slot_parse(NULL, &r, &slot), -1);
}
END_TEST

START_TEST(test_renew_and_stale)
{
	struct lease_table t;
	struct gate_lease l = mk("a", GATE_ROLE_WORKER, 0);

	lease_table_init(&t);
	struct gate_lease *nl = lease_table_add(&t, &l, 1000);
	uint64_t fence = nl->fence;
	ck_assert(!gate_lease_stale(nl, 1000 + 60000));
	ck_assert(gate_lease_stale(nl, 1000 + 60001));
	/* Renewing (asking again) keeps the fence and the slot; only times move. */
	nl = lease_table_renew(&t, "a", 50000, 0, NULL);
	ck_assert(nl && nl->fence == fence && nl->slot == 0);
	ck_assert(nl->created_ms == 1000 && nl->renewed_ms == 50000);
	ck_assert(!gate_lease_stale(nl, 100000));
	nl = lease_table_renew(&t, "a", 60000, 5000, "still patching");
	ck_assert_str_eq(nl->reason, "still patching");
	ck_assert(gate_lease_stale(nl, 65001));
	ck_assert(lease_table_renew(&t, "b", 1, 0, NULL) == NULL);
	ck_assert_uint_eq(t.n, 1);
	lease_table_free(&t);
}
END_TEST

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/test_lease.XXXXXX";
	ck_assert(mkdtemp(tmpl) != NULL);
	return xstrdup(tmpl);
}

START_TEST(test_file_store_roundtrip)
{
	char *dir = tmpdir(), *err = NULL, *path;
	struct gate_store *s = gate_store_file_new(dir, false, &err);
	struct lease_table t, back;
	struct gate_lease a = mk("a", GATE_ROLE_MASTER, 0), b = mk("b", GATE_ROLE_WORKER, 1);
	struct gate_label lab = {.key = (char *)"zone", .value = (char *)"z1"};
	uint64_t fence;

	ck_assert_msg(s != NULL, "%s", err);
	lease_table_init(&t);
	lease_table_init(&back);
	ck_assert_int_eq(gate_store_load(s, &t, &err), 0); /* no file yet: empty */
	ck_assert_uint_eq(t.n, 0);
	b.labels = &lab;
	b.nlabels = 1;
	b.boot_id = (char *)"boot-b";
	ck_assert_int_eq(gate_store_next_fence(s, &t, &fence, &err), 0);
	a.fence = fence;
	ck_assert_int_eq(gate_store_put(s, &t, lease_table_add(&t, &a, 1000), &err), 0);
	ck_assert_int_eq(gate_store_put(s, &t, lease_table_add(&t, &b, 2000), &err), 0);
	ck_assert_int_eq(gate_store_load(s, &back, &err), 0);
	ck_assert_uint_eq(back.n, 2);
	ck_assert_str_eq(back.v[1].node, "b");
	ck_assert_int_eq(back.v[1].role, GATE_ROLE_WORKER);
	ck_assert_int_eq(back.v[1].slot, 1);
	ck_assert_str_eq(back.v[1].boot_id, "boot-b");
	ck_assert_str_eq(gate_lease_label(&back.v[1], "zone"), "z1");
	ck_assert(back.v[1].created_ms == 2000);
	ck_assert(back.last_fence == 2);

	/* A released lease's fence is still never handed out again after a restart. */
	lease_table_remove(&t, "b");
	ck_assert_int_eq(gate_store_del(s, &t, &b, &err), 0);
	ck_assert_int_eq(gate_store_load(s, &back, &err), 0);
	ck_assert_uint_eq(back.n, 1);
	ck_assert(back.last_fence == 2);
	ck_assert_int_eq(gate_store_next_fence(s, &back, &fence, &err), 0);
	ck_assert(fence == 3);

	/* A corrupt file is an error with the place, not an empty table. */
	path = xasprintf("%s/gate-leases.json", dir);
	FILE *f = fopen(path, "w");
	fputs("{\"leases\": [{\"node\": \"x\", \"role\": \"boss\"}]}", f);
	fclose(f);
	ck_assert_int_eq(gate_store_load(s, &back, &err), -1);
	ck_assert_msg(strstr(err, "role is not master or worker"), "%s", err);
	free(err);
	err = NULL;
	f = fopen(path, "w");
	fputs("{not json", f);
	fclose(f);
	ck_assert_int_eq(gate_store_load(s, &back, &err), -1);
	ck_assert_msg(strstr(err, "-F"), "the error names -F: %s", err);
	free(err);
	unlink(path);
	free(path);

	lease_table_free(&t);
	lease_table_free(&back);
	gate_store_free(&s);
	ck_assert(s == NULL);
	rmdir(dir);
	free(dir);

	ck_assert(gate_store_file_new("/nonexistent/dir", false, &err) == NULL);
	free(err);
}
END_TEST

/* Writes text as dir's lease file, loads it with -F, and returns the next fence. */
static uint64_t fence_after_set_aside(const char *dir, const char *text)
{
	char *err = NULL, *path = xasprintf("%s/gate-leases.json", dir);
	struct gate_store *s = gate_store_file_new(dir, true, &err);
	struct lease_table t;
	uint64_t fence = 0;
	FILE *f = fopen(path, "w");

	ck_assert(f != NULL);
	fputs(text, f);
	fclose(f);
	lease_table_init(&t);
	ck_assert_msg(gate_store_load(s, &t, &err) == 0, "%s", err ? err : "");
	ck_assert_uint_eq(t.n, 0);
	ck_assert_int_eq(gate_store_next_fence(s, &t, &fence, &err), 0);
	lease_table_free(&t);
	/* The new file keeps the high-water mark: a restart without a grant in
	 * between must not hand out a lower fence. */
	lease_table_init(&t);
	ck_assert_int_eq(gate_store_load(s, &t, &err), 0);
	ck_assert(t.last_fence + 1 == fence);
	lease_table_free(&t);
	gate_store_free(&s);
	free(path);
	return fence;
}

START_TEST(test_file_store_set_aside)
{
	char *dir = tmpdir();
	int64_t now_ms = (int64_t)time(NULL) * 1000;

	/* Truncated mid-write: the fences still show, the next is above them. */
	ck_assert(fence_after_set_aside(dir, "{\"last_fence\": 41, \"leases\": [{\"fence\": 57, "
					     "\"node\": \"m1\", \"ro") == 58);
	/* Nothing readable: fences start from the clock, above any count of grants. */
	ck_assert((int64_t)fence_after_set_aside(dir, "\x01\xff garbage") > now_ms);
	/* Both unreadable files are kept, under two names, for a human. */
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "test $(ls %s | grep -c '^gate-leases.json.corrupt-') -eq 2",
		 dir);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
	free(dir);
}
END_TEST

START_TEST(test_json_roundtrip)
{
	struct gate_lease a = mk("n1", GATE_ROLE_MASTER, 3), back;
	const char *why = NULL;

	a.created_ms = 1700000000123;
	a.renewed_ms = 1700000001123;
	a.fence = 42;
	json_t *o = gate_lease_to_json(&a, 1700000000000 + 120000);
	ck_assert(json_is_true(json_object_get(o, "stale")));
	ck_assert_str_eq(json_string_value(json_object_get(o, "slot")), "master-3");
	ck_assert_str_eq(json_string_value(json_object_get(o, "ttl")), "1m");
	ck_assert_int_eq(gate_lease_from_json(o, &back, &why), 0);
	ck_assert_str_eq(back.node, "n1");
	ck_assert(back.fence == 42 && back.slot == 3 && back.renewed_ms == a.renewed_ms);
	gate_lease_clear(&back);
	json_object_set_new(o, "slot", json_string("worker-3"));
	ck_assert_int_eq(gate_lease_from_json(o, &back, &why), -1);
	gate_lease_clear(&back);
	json_decref(o);
}
END_TEST

static Suite *lease_suite(void)
{
	Suite *s = suite_create("lease");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_fencing_only_grows);
	tcase_add_test(tc, test_slots);
	tcase_add_test(tc, test_renew_and_stale);
	tcase_add_test(tc, test_file_store_roundtrip);
	tcase_add_test(tc, test_file_store_set_aside);
	tcase_add_test(tc, test_json_roundtrip);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(lease_suite());
}
