/* test_state.c - the runtime overlay: put, reconcile, effective, the file. */
#include <check.h>

#include "tests/unit/unit.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/xmalloc.h"
#include "config/config.h"
#include "lbd/state.h"

static const char *yaml = "state_dir: /tmp/unused\n"
			  "frontends:\n"
			  "  - name: vip\n"
			  "    listen: [\"127.0.0.1:16443\"]\n"
			  "    pool: vip\n"
			  "pools:\n"
			  "  - name: vip\n"
			  "    backends:\n"
			  "      - {name: m1, address: \"10.0.0.1:6443\"}\n"
			  "      - {name: m2, address: \"10.0.0.2:6443\", weight: 2}\n";

static struct config *load(const char *text)
{
	struct config_errors errs = {0};
	struct config *cfg = config_load_string("t.yaml", text, strlen(text), &errs);

	if (!cfg)
		ck_abort_msg("config: %s", errs.n ? errs.msgs[0] : "?");
	return cfg;
}

static const struct backend_conf *fb(const struct config *cfg, const char *name)
{
	const struct pool_conf *p = config_pool(cfg, "vip");
	for (size_t i = 0; i < p->nbackends; i++)
		if (!strcmp(p->backends[i].name, name))
			return &p->backends[i];
	return NULL;
}

START_TEST(put_stores_only_differences)
{
	struct config *cfg = load(yaml);
	struct lbd_state st = {0};
	struct state_backend w = {"10.0.0.1:6443", 1, BE_ENABLED, false};

	/* The same as the file: nothing stored. */
	state_put(&st, "vip", "m1", fb(cfg, "m1"), &w);
	ck_assert_uint_eq(st.n, 0);
	/* A state override only. */
	w.state = BE_DRAIN;
	state_put(&st, "vip", "m1", fb(cfg, "m1"), &w);
	ck_assert_uint_eq(st.n, 1);
	ck_assert(st.e[0].has_state && !st.e[0].has_weight && !st.e[0].address);
	/* Back to the file's: dropped. */
	w.state = BE_ENABLED;
	state_put(&st, "vip", "m1", fb(cfg, "m1"), &w);
	ck_assert_uint_eq(st.n, 0);
	/* A new backend: all of it. */
	struct state_backend n = {"10.0.0.3:6443", 3, BE_ENABLED, false};
	state_put(&st, "vip", "m3", NULL, &n);
	ck_assert_uint_eq(st.n, 1);
	ck_assert_str_eq(st.e[0].address, "10.0.0.3:6443");
	ck_assert(st.e[0].has_weight && st.e[0].weight == 3);
	/* Removing it leaves nothing; removing a file backend leaves a mark. */
	state_put(&st, "vip", "m3", NULL, NULL);
	ck_assert_uint_eq(st.n, 0);
	state_put(&st, "vip", "m2", fb(cfg, "m2"), NULL);
	ck_assert_uint_eq(st.n, 1);
	ck_assert(st.e[0].removed);
	state_free(&st);
	config_free(cfg);
}
END_TEST

START_TEST(effective_is_file_plus_overlay)
{
	struct config *cfg = load(yaml);
	struct lbd_state st = {0};
	struct state_backend add = {"10.0.0.3:6443", 1, BE_DISABLED, false};
	struct state_backend m1 = {"10.0.0.1:6443", 5, BE_DRAIN, true};
	struct state_eff *e;

	state_put(&st, "vip", "m3", NULL, &add);
	state_put(&st, "vip", "m1", fb(cfg, "m1"), &m1);
	state_put(&st, "vip", "m2", fb(cfg, "m2"), NULL);
	size_t n = state_effective(&st, config_pool(cfg, "vip"), &e);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(e[0].conf.name, "m1");
	ck_assert_int_eq(e[0].conf.weight, 5);
	ck_assert_int_eq(e[0].state, BE_DRAIN);
	ck_assert(e[0].remove_when_drained && e[0].runtime);
	ck_assert_str_eq(e[1].conf.name, "m3");
	ck_assert_int_eq(e[1].state, BE_DISABLED);
	state_eff_free(e, n);
	state_free(&st);
	config_free(cfg);
}
END_TEST

START_TEST(reconcile_drops_what_the_file_agrees_with)
{
	struct config *cfg = load(yaml);
	struct lbd_state st = {0};
	struct state_backend m3 = {"10.0.0.3:6443", 1, BE_ENABLED, false};
	struct state_backend m4 = {"10.0.0.4:6443", 1, BE_DISABLED, false};

	state_put(&st, "vip", "m3", NULL, &m3);
	state_put(&st, "vip", "m4", NULL, &m4);
	state_put(&st, "vip", "m2", fb(cfg, "m2"), NULL);
	state_put(&st, "gone", "x", NULL, &m3);
	ck_assert_uint_eq(st.n, 4);
	/* New file: m3 and m4 in it, m2 gone from it, pool "gone" absent. */
	const char *y2 = "state_dir: /tmp/unused\n"
			 "frontends:\n"
			 "  - {name: vip, listen: [\"127.0.0.1:16443\"], pool: vip}\n"
			 "pools:\n"
			 "  - name: vip\n"
			 "    backends:\n"
			 "      - {name: m1, address: \"10.0.0.1:6443\"}\n"
			 "      - {name: m3, address: \"10.0.0.3:6443\"}\n"
			 "      - {name: m4, address: \"10.0.0.4:6443\"}\n";
	struct config *cfg2 = load(y2);
	ck_assert_uint_gt(state_reconcile(&st, cfg2), 0);
	/* Left: m4's state (the file cannot say disabled). */
	ck_assert_uint_eq(st.n, 1);
	ck_assert_str_eq(st.e[0].name, "m4");
	ck_assert(st.e[0].has_state && !st.e[0].address && !st.e[0].has_weight);
	ck_assert_uint_eq(state_reconcile(&st, cfg2), 0);
	state_free(&st);
	config_free(cfg);
	config_free(cfg2);
}
END_TEST

START_TEST(serialize_parse_round_trip)
{
	struct lbd_state st = {0}, back = {0};
	struct state_backend a = {"[::1]:6443", 7, BE_DRAIN, true};
	char *err = NULL;

	state_put(&st, "vip", "m9", NULL, &a);
	state_put(&st, "vip", "m1", NULL, NULL);
	char *text = state_serialize(&st);
	ck_assert_int_eq(state_parse(&back, "x", text, strlen(text), &err), 0);
	char *again = state_serialize(&back);
	ck_assert_str_eq(text, again);
	free(text);
	free(again);
	state_free(&st);
	state_free(&back);
}
END_TEST

START_TEST(parse_refuses_what_it_cannot_trust)
{
	static const char *bad[][2] = {
	    {"{", "not valid JSON"},
	    {"[]", "not a JSON object"},
	    {"{\"version\": 2, \"backends\": []}", "'version' must be 1"},
	    {"{\"version\": 1}", "'backends' must be an array"},
	    {"{\"version\": 1, \"backends\": [], \"x\": 1}", "unknown key 'x'"},
	    {"{\"version\": 1, \"backends\": [{\"pool\": \"p\"}]}", "required"},
	    {"{\"version\": 1, \"backends\": [{\"pool\": \"p\", \"name\": \"n\", \"address\": "
	     "\"1.2.3:4\"}]}",
	     "bad address"},
	    {"{\"version\": 1, \"backends\": [{\"pool\": \"p\", \"name\": \"n\", \"weight\": "
	     "300}]}",
	     "weight"},
	    {"{\"version\": 1, \"backends\": [{\"pool\": \"p\", \"name\": \"n\", \"state\": "
	     "\"x\"}]}",
	     "state"},
	    {"{\"version\": 1, \"backends\": [{\"pool\": \"p\", \"name\": \"n\", \"removed\": "
	     "true, "
	     "\"weight\": 1}]}",
	     "removed"},
	    {"{\"version\": 1, \"backends\": [{\"pool\": \"p\", \"name\": \"n\"}, {\"pool\": "
	     "\"p\", "
	     "\"name\": \"n\"}]}",
	     "twice"},
	    {"{\"version\": 1, \"backends\": [{\"pool\": \"p\", \"name\": \"n\", "
	     "\"remove_when_drained\": true}]}",
	     "needs state drain"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lbd_state st = {0};
		char *err = NULL;
		ck_assert_int_eq(state_parse(&st, "f.json", bad[i][0], strlen(bad[i][0]), &err),
				 -1);
		ck_assert_msg(strstr(err, bad[i][1]) && strstr(err, "f.json"), "%s: %s", bad[i][0],
			      err);
		ck_assert_uint_eq(st.n, 0);
		free(err);
	}
}
END_TEST

START_TEST(save_and_open)
{
	char dir[] = "/tmp/lbd-test-state-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char *sub = xasprintf("%s/a/b", dir);
	struct lbd_state st, back;
	struct state_backend a = {"10.0.0.9:6443", 2, BE_ENABLED, false};
	char *err = NULL;
	int eno = 0;

	ck_assert_int_eq(state_open(&st, sub, &err), 0); /* creates the dirs */
	ck_assert_uint_eq(st.n, 0);
	state_put(&st, "vip", "m9", NULL, &a);
	ck_assert_int_eq(state_save(&st, &err, &eno), 0);
	ck_assert_int_eq(state_open(&back, sub, &err), 0);
	ck_assert_uint_eq(back.n, 1);
	ck_assert_str_eq(back.e[0].address, "10.0.0.9:6443");
	struct stat sb;
	ck_assert_int_eq(stat(back.path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0600);
	/* A failed write leaves the old file whole and says why. */
	char *tmp = xasprintf("%s.tmp", st.path);
	ck_assert_int_eq(mkdir(tmp, 0700), 0);
	state_put(&st, "vip", "m9", NULL, NULL);
	ck_assert_int_eq(state_save(&st, &err, &eno), -1);
	ck_assert_ptr_nonnull(strstr(err, "pools.json.tmp"));
	free(err);
	rmdir(tmp);
	state_free(&back);
	ck_assert_int_eq(state_open(&back, sub, &err), 0);
	ck_assert_uint_eq(back.n, 1);
	/* A corrupt file is an error naming it. */
	FILE *f = fopen(back.path, "w");
	fputs("{\"version\": 1, \"backends\": [", f);
	fclose(f);
	state_free(&back);
	ck_assert_int_eq(state_open(&back, sub, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "pools.json"));
	free(err);
	state_free(&back);
	state_free(&st);
	unlink(tmp);
	free(tmp);
	char *cmd = xasprintf("rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	free(sub);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("state");
	TCase *tc = tcase_create("state");

	tcase_add_test(tc, put_stores_only_differences);
	tcase_add_test(tc, effective_is_file_plus_overlay);
	tcase_add_test(tc, reconcile_drops_what_the_file_agrees_with);
	tcase_add_test(tc, serialize_parse_round_trip);
	tcase_add_test(tc, parse_refuses_what_it_cannot_trust);
	tcase_add_test(tc, save_and_open);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
