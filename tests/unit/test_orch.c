/* test_orch.c - the orchestrator without a cluster: the dry run and the lease
 * keeper's table on plans larger than any fixed array (issue 19: a plan of
 * more than 256 nodes crashed the dry run). Nothing here reaches the
 * network: the kubeconfig does not exist and lbd's client is a stub. */
#include <check.h>

#include "tests/unit/unit.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/xmalloc.h"
#include "upgrade/orchestrator_int.h"
#include "upgrade/plan.h"

/* lbd is never there. */
static int no_lbd(void *arg, const char *method, const char *path, json_t *body, long timeout_ms,
		  long *status, json_t **out, char **err)
{
	*err = xstrdup("unreachable (test stub)");
	return -1;
}

/* An upgrade plan of masters + workers nodes, loaded. */
static void big_upgrade(struct plan *p, int masters, int workers)
{
	size_t cap = 512 + (size_t)(masters + workers) * 48, n = 0;
	char *t = xmalloc(cap);
	struct plan_errors e;

	n += (size_t)snprintf(t + n, cap - n,
			      "kind: upgrade\nversion: v1.31.5\n"
			      "kubeconfig: /nonexistent/kubeconfig\n"
			      "lbd: {socket: /nonexistent/admin.sock}\npool: masters\n"
			      "upgrade_command: echo {node}\nnodes:\n");
	for (int i = 0; i < masters; i++)
		n += (size_t)snprintf(t + n, cap - n, "  - {name: m%d, role: master}\n", i);
	for (int i = 0; i < workers; i++)
		n += (size_t)snprintf(t + n, cap - n, "  - {name: w%d, role: worker}\n", i);
	ck_assert_msg(plan_load_string(t, n, "big.yaml", p, &e) == 0, "plan: %s",
		      e.n ? e.msgs[0] : "?");
	free(t);
}

static size_t count_steps(const char *out)
{
	size_t n = 0;
	for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		unsigned num;
		char step[32];
		if (sscanf(l, " %u. %31s", &num, step) == 2)
			n++;
	}
	return n;
}

START_TEST(test_dry_run_300_nodes)
{
	struct plan p;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	big_upgrade(&p, 3, 297);
	struct orch o = {.plan = &p, .call = no_lbd};
	/* The preflight refuses (no kubeconfig, no lbd); every step is printed. */
	ck_assert_int_eq(orch_dry_run(&o, f, false), ORCH_FAILED);
	fclose(f);
	ck_assert_uint_eq(count_steps(buf), 3 * 8 + 297 * 6);
	ck_assert_ptr_nonnull(strstr(buf, "\nw296 (worker)"));
	ck_assert_ptr_nonnull(strstr(buf, "nothing was changed"));
	free(buf);
	plan_free(&p);
}
END_TEST

/* -o json: one JSON object a CI job can read; the same verdict. */
START_TEST(test_dry_run_json)
{
	struct plan p;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	json_error_t je;

	big_upgrade(&p, 3, 5);
	struct orch o = {.plan = &p, .call = no_lbd};
	ck_assert_int_eq(orch_dry_run(&o, f, true), ORCH_FAILED);
	fclose(f);
	json_t *j = json_loads(buf, 0, &je);
	ck_assert_msg(j != NULL, "not JSON: %s: %s", je.text, buf);
	ck_assert(json_is_false(json_object_get(j, "would_start")));
	ck_assert_str_eq(json_string_value(json_object_get(j, "kind")), "upgrade");
	ck_assert_uint_gt(
	    json_array_size(json_object_get(json_object_get(j, "preflight"), "refuse")), 0);
	json_t *nodes = json_object_get(j, "nodes");
	ck_assert_uint_eq(json_array_size(nodes), 8);
	json_t *w = json_array_get(nodes, 7);
	ck_assert_str_eq(json_string_value(json_object_get(w, "name")), "w4");
	ck_assert_uint_eq(json_array_size(json_object_get(w, "steps")), 6);
	json_decref(j);
	free(buf);
	plan_free(&p);
}
END_TEST

/* Every node being worked on keeps its lease renewed: 100 workers at once
 * (workers.concurrency's maximum) and a master. */
START_TEST(test_keeper_holds_every_lease)
{
	struct plan p;
	big_upgrade(&p, 1, 150);
	struct orch o = {.plan = &p, .call = no_lbd};
	char name[16];
	size_t held = 0;

	orch_priv_init(&o);
	orch_keep_lease(&o, "m0", PLAN_MASTER, true);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "w%d", i);
		orch_keep_lease(&o, name, PLAN_WORKER, true);
	}
	orch_keep_lease(&o, "w0", PLAN_WORKER, true); /* again: still one slot */
	for (size_t i = 0; i < o.p->nheld; i++)
		held += o.p->held[i] != NULL;
	ck_assert_uint_eq(held, 101);
	orch_keep_lease(&o, "w99", PLAN_WORKER, false);
	held = 0;
	for (size_t i = 0; i < o.p->nheld; i++)
		held += o.p->held[i] != NULL && strcmp(o.p->held[i], "w99") != 0;
	ck_assert_uint_eq(held, 100);
	orch_priv_free(&o);
	plan_free(&p);
}
END_TEST

static char *meaning_of(const char *text)
{
	struct plan p;
	struct plan_errors e;
	ck_assert_msg(plan_load_string(text, strlen(text), "m.yaml", &p, &e) == 0, "plan: %s",
		      e.n ? e.msgs[0] : "?");
	char *m = plan_meaning(&p);
	plan_free(&p);
	return m;
}

/* A resume takes the fix of a failed run (a command, a timeout, a comment)
 * and refuses what changes what its done steps mean. */
START_TEST(test_plan_meaning)
{
	const char *base = "kind: upgrade\nversion: v1.31.5\nkubeconfig: /k\n"
			   "lbd: {socket: /s}\npool: masters\nupgrade_command: echo {node}\n"
			   "nodes:\n  - {name: m0, role: master}\n  - {name: w0, role: worker}\n"
			   "  - {name: w1, role: worker}\n";
	char *m0 = meaning_of(base), buf[1024];

	snprintf(buf, sizeof(buf), "# a comment\n%s", base);
	char *m = meaning_of(buf);
	ck_assert_str_eq(m, m0);
	free(m);
	snprintf(buf, sizeof(buf), "%stimeouts: {command: 1m}\ndrain: {ignore_daemonsets: true}\n",
		 base);
	char *fixed = xstrdup(buf);
	char *cmd = strstr(fixed, "echo {node}");
	memcpy(cmd, "true {node}", 11);
	m = meaning_of(fixed);
	ck_assert_str_eq(m, m0);
	free(m);
	free(fixed);

	const char *changed[] = {
	    "kind: upgrade\nversion: v1.31.6\nkubeconfig: /k\nlbd: {socket: /s}\npool: masters\n"
	    "upgrade_command: echo\nnodes:\n  - {name: m0, role: master}\n"
	    "  - {name: w0, role: worker}\n  - {name: w1, role: worker}\n",
	    "kind: upgrade\nversion: v1.31.5\nkubeconfig: /k\nlbd: {socket: /s}\npool: masters\n"
	    "upgrade_command: echo\nnodes:\n  - {name: m0, role: master}\n"
	    "  - {name: w1, role: worker}\n  - {name: w0, role: worker}\n",
	    "kind: upgrade\nversion: v1.31.5\nkubeconfig: /k\nlbd: {socket: /s}\npool: other\n"
	    "upgrade_command: echo\nnodes:\n  - {name: m0, role: master}\n"
	    "  - {name: w0, role: worker}\n  - {name: w1, role: worker}\n",
	    "kind: upgrade\nversion: v1.31.5\nkubeconfig: /k\nlbd: {socket: /s}\npool: masters\n"
	    "upgrade_command: echo\nnodes:\n  - {name: m0, role: master}\n"
	    "  - {name: w0, role: master}\n  - {name: w1, role: worker}\n",
	};
	for (size_t i = 0; i < sizeof(changed) / sizeof(*changed); i++) {
		m = meaning_of(changed[i]);
		ck_assert_msg(strcmp(m, m0) != 0, "edit %zu left the meaning alone", i);
		free(m);
	}
	free(m0);
}
END_TEST

START_TEST(test_line_diff)
{
	char *d = orch_line_diff("a\nb\nc\n", "a\nB\nc\nd\n");
	ck_assert_str_eq(d, "- b\n+ B\n+ d\n");
	free(d);
	d = orch_line_diff("same\n", "same\n");
	ck_assert_str_eq(d, "");
	free(d);
	d = orch_line_diff(NULL, "new\n");
	ck_assert_str_eq(d, "+ new\n");
	free(d);
}
END_TEST

/* A gate with one worker slot: grants a lease when no other node holds one,
 * counts the asks per node. */
static pthread_mutex_t fg_mu = PTHREAD_MUTEX_INITIALIZER;
static char fg_holder[32];
static int fg_asks[8];

static int fake_gate(void *arg, const char *method, const char *path, json_t *body, long timeout_ms,
		     long *status, json_t **out, char **err)
{
	pthread_mutex_lock(&fg_mu);
	if (!strcmp(method, "POST")) {
		const char *node = json_string_value(json_object_get(body, "node"));
		fg_asks[node[1] - '0']++;
		if (!fg_holder[0] || !strcmp(fg_holder, node)) {
			snprintf(fg_holder, sizeof(fg_holder), "%s", node);
			*status = 200;
			*out = json_pack("{s:b}", "granted", 1);
		} else {
			*status = 409;
			*out = json_pack("{s:b,s:[s]}", "granted", 0, "reasons",
					 "concurrency: 1 worker lease held");
		}
	} else if (!strcmp(method, "DELETE")) {
		*status = strstr(path, fg_holder) && fg_holder[0] ? 200 : 404;
		fg_holder[0] = 0;
		*out = json_object();
	} else {
		*status = 200;
		*out = json_pack("{s:[]}", "leases");
	}
	pthread_mutex_unlock(&fg_mu);
	return 0;
}

struct lease_try {
	struct orch *o;
	const struct plan_node *n;
	int rc;
	char *msg;
};

static void *lease_thread(void *arg)
{
	struct lease_try *t = arg;
	struct nctx c = {.o = t->o, .n = t->n, .step = "lease", .step_start = mono_ms()};
	t->rc = orch_st_lease(&c, &t->msg);
	free(c.note);
	return NULL;
}

static bool holder_is(const char *node)
{
	pthread_mutex_lock(&fg_mu);
	bool is = !strcmp(fg_holder, node);
	pthread_mutex_unlock(&fg_mu);
	return is;
}

static void release(struct orch *o, const struct plan_node *n)
{
	struct nctx c = {.o = o, .n = n, .step = "release", .step_start = mono_ms()};
	char *msg = NULL;
	ck_assert_int_eq(orch_st_release(&c, &msg), ORCH_OK);
	free(c.note);
}

/* Workers wait for the gate's one slot in plan order, and waiting behind a
 * sibling of the run that holds it is not a gate timeout (timeouts.gate
 * here is 300ms, the wait much longer). */
START_TEST(test_lease_fifo)
{
	struct plan p;
	big_upgrade(&p, 0, 3);
	p.t_gate_ms = 300;
	struct orch o = {.plan = &p, .call = fake_gate};
	struct lease_try t[3] = {{0}};
	pthread_t th[3];

	orch_priv_init(&o);
	for (int i = 0; i < 3; i++)
		t[i] = (struct lease_try){.o = &o, .n = &p.nodes[i], .rc = -1};
	lease_thread(&t[0]); /* w0 holds the slot */
	ck_assert_int_eq(t[0].rc, ORCH_OK);
	pthread_create(&th[2], NULL, lease_thread, &t[2]); /* w2 asks first ... */
	usleep(300 * 1000);
	pthread_create(&th[1], NULL, lease_thread, &t[1]); /* ... w1 comes later */
	usleep(1500 * 1000);
	pthread_mutex_lock(&fg_mu);
	int w2_asks = fg_asks[2];
	pthread_mutex_unlock(&fg_mu);
	release(&o, &p.nodes[0]);
	for (int i = 0; i < 200 && !holder_is("w1") && !holder_is("w2"); i++)
		usleep(20 * 1000);
	ck_assert_msg(holder_is("w1"), "w1 (earlier in plan order) must get the slot first");
	pthread_join(th[1], NULL);
	ck_assert_int_eq(t[1].rc, ORCH_OK);
	/* w2 stopped asking once w1, earlier in order, was waiting too. */
	pthread_mutex_lock(&fg_mu);
	ck_assert_int_le(fg_asks[2], w2_asks + 1);
	pthread_mutex_unlock(&fg_mu);
	release(&o, &p.nodes[1]);
	pthread_join(th[2], NULL);
	ck_assert_msg(t[2].rc == ORCH_OK, "w2: %s", t[2].msg ? t[2].msg : "?");
	orch_keep_lease(&o, "w2", PLAN_WORKER, false);
	orch_priv_free(&o);
	plan_free(&p);
}
END_TEST

/* lbd's gate status for gate-members: 404 (no gate) or a gate without etcd
 * that asks about fg_master under "master". */
static long gs_status;
static const char *gs_master;

static int fake_status(void *arg, const char *method, const char *path, json_t *body,
		       long timeout_ms, long *status, json_t **out, char **err)
{
	ck_assert_str_eq(path, "/v1/gate/status");
	*status = gs_status;
	*out = gs_status == 404
		   ? json_pack("{s:s}", "error", "the gate is not enabled")
		   : json_pack("{s:{},s:[{s:s}]}", "inputs", "master", "node", gs_master);
	return 0;
}

static int gate_members(struct orch *o, const char *node, char **msg)
{
	struct nctx c = {.o = o,
			 .n = plan_node_find(o->plan, node),
			 .step = "gate-members",
			 .step_start = mono_ms()};
	*msg = NULL;
	int rc = orch_st_gate_members(&c, msg);
	free(c.note);
	return rc;
}

/* A migration's new master whose backend is named otherwise needs a members
 * entry in the gate: printed as YAML, and the step refuses until the gate
 * asks about the node by its name. A replacement's new master is checked
 * with the old one's removal; an lbd without a gate passes. */
START_TEST(test_gate_members)
{
	static const char t[] =
	    "kind: migration\nkubeconfig: /nonexistent/kubeconfig\n"
	    "lbd: {socket: /nonexistent/admin.sock}\npool: masters\n"
	    "nodes:\n"
	    "  - {name: k1, role: master, backend: m1}\n"
	    "  - {name: k2, role: master, backend: m2, address: 192.0.2.12:6443}\n"
	    "  - {name: k3, role: master, backend: m3, address: 192.0.2.13:6443}\n"
	    "add: [k2]\nreplace: [{old: k1, new: k3}]\n"
	    "remove_command: echo {node}\njoin_command: echo {node}\n"
	    "etcd: {endpoints: ['http://127.0.0.1:1']}\n";
	struct plan p;
	struct plan_errors e;
	const char *names[ORCH_MAX_STEPS];
	char *msg;
	ck_assert_msg(plan_load_string(t, sizeof(t) - 1, "m.yaml", &p, &e) == 0, "plan: %s",
		      e.n ? e.msgs[0] : "?");
	/* A new master joins under a master lease (issue 15). */
	size_t n = orch_steps_for(&p, plan_node_find(&p, "k2"), names);
	ck_assert_uint_eq(n, 7);
	ck_assert_str_eq(names[0], "lease");
	ck_assert_str_eq(names[1], "join");
	ck_assert_str_eq(names[n - 2], "gate-members");
	ck_assert_str_eq(names[n - 1], "release");
	n = orch_steps_for(&p, plan_node_find(&p, "k3"), names);
	ck_assert_str_eq(names[0], "lease");
	ck_assert_str_eq(names[n - 2], "backend-up");
	ck_assert_str_eq(names[n - 1], "release");
	n = orch_steps_for(&p, plan_node_find(&p, "k1"), names);
	ck_assert_str_eq(names[n - 2], "gate-members");
	ck_assert_str_eq(names[n - 1], "release");

	struct orch o = {.plan = &p, .call = fake_status};
	orch_priv_init(&o);
	gs_status = 200;
	gs_master = "m2";
	ck_assert_int_eq(gate_members(&o, "k2", &msg), ORCH_REFUSED);
	ck_assert_msg(
	    strstr(msg, "  gate:\n    members:\n      k2: {backend: m2, etcd: k2}   # add\n"), "%s",
	    msg);
	ck_assert_ptr_nonnull(strstr(msg, "--resume"));
	free(msg);
	gs_master = "k2";
	ck_assert_int_eq(gate_members(&o, "k2", &msg), ORCH_OK);
	gs_status = 404;
	gs_master = "m2";
	ck_assert_int_eq(gate_members(&o, "k2", &msg), ORCH_OK);
	orch_priv_free(&o);
	plan_free(&p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("orch");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_dry_run_300_nodes);
	tcase_add_test(tc, test_keeper_holds_every_lease);
	tcase_add_test(tc, test_plan_meaning);
	tcase_add_test(tc, test_dry_run_json);
	tcase_add_test(tc, test_lease_fifo);
	tcase_add_test(tc, test_line_diff);
	tcase_add_test(tc, test_gate_members);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
