/* test_policy.c - the gate's pure policy: quorum arithmetic, concurrency, windows, unknowns. */
#include <check.h>

#include "tests/unit/unit.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "gate/policy.h"
#include "gate/tz.h"

/* 2024-01-15 is a Monday. */
#define T_2024_01_15_0000 1705276800LL
#define NOW_MS ((T_2024_01_15_0000 + 12 * 3600) * 1000) /* Monday noon UTC */

struct fixture {
	struct gate_conf conf;
	struct gate_inputs in;
	struct lease_table t;
	char *endpoints[5];
	char pool_name[16];
};

static void fx_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->conf.enabled = true;
	f->conf.conc_masters = 1;
	f->conf.conc_workers = 1;
	f->conf.lease_ttl_ms = 30 * 60 * 1000;
	f->in.now_ms = NOW_MS;
	f->in.max_age_ms = 5000;
	lease_table_init(&f->t);
}

static void fx_free(struct fixture *f)
{
	gate_inputs_free(&f->in);
	lease_table_free(&f->t);
}

/* n etcd members m1..mn, one endpoint each, all healthy; learner k (1-based) if k > 0. */
static void fx_etcd(struct fixture *f, int n, int learner)
{
	static char *eps[] = {"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3",
			      "http://127.0.0.1:4", "http://127.0.0.1:5", "http://127.0.0.1:6"};
	struct gate_etcd_in *e = &f->in.etcd;

	f->conf.etcd_endpoints = eps;
	f->conf.netcd_endpoints = (size_t)n;
	e->src.known = true;
	e->src.at_ms = f->in.now_ms - 1000;
	e->nmembers = (size_t)n;
	e->members = xcalloc((size_t)n, sizeof(*e->members));
	e->nviews = (size_t)n;
	e->views = xcalloc((size_t)n, sizeof(*e->views));
	for (int i = 0; i < n; i++) {
		e->members[i].id = (uint64_t)(i + 1);
		e->members[i].name = xasprintf("m%d", i + 1);
		e->members[i].learner = learner == i + 1;
		e->views[i].endpoint = xstrdup(eps[i]);
		e->views[i].ok = true;
		e->views[i].health = true;
		e->views[i].cluster_id = 0xc1;
		e->views[i].member_id = (uint64_t)(i + 1);
		e->views[i].nmembers = (size_t)n;
		e->views[i].members = xcalloc((size_t)n, sizeof(uint64_t));
		for (int j = 0; j < n; j++)
			e->views[i].members[j] = (uint64_t)(j + 1);
	}
}

static void etcd_down(struct fixture *f, int k)
{
	struct gate_etcd_view *v = &f->in.etcd.views[k - 1];
	v->ok = false;
	v->health = false;
	v->err = xstrdup("connect refused");
}

static void fx_pool(struct fixture *f, int n)
{
	snprintf(f->pool_name, sizeof(f->pool_name), "apiservers");
	f->conf.quorum_pool = f->pool_name;
	f->in.pool.src.known = true;
	f->in.pool.src.at_ms = f->in.now_ms;
	f->in.pool.n = (size_t)n;
	f->in.pool.v = xcalloc((size_t)n, sizeof(*f->in.pool.v));
	for (int i = 0; i < n; i++) {
		f->in.pool.v[i].name = xasprintf("m%d", i + 1);
		f->in.pool.v[i].up = true;
		f->in.pool.v[i].serving = true;
	}
}

static void fx_nodes(struct fixture *f, int n, const char *zone_label)
{
	static char kc[] = "/etc/kubeconfig";
	f->conf.kubeconfig = kc;
	f->in.nodes.src.known = true;
	f->in.nodes.src.at_ms = f->in.now_ms;
	f->in.nodes.n = (size_t)n;
	f->in.nodes.v = xcalloc((size_t)n, sizeof(*f->in.nodes.v));
	for (int i = 0; i < n; i++) {
		struct gate_node_in *nd = &f->in.nodes.v[i];
		nd->name = xasprintf("w%d", i + 1);
		nd->ready = true;
		nd->boot_id = xasprintf("boot-%d", i + 1);
		if (zone_label) {
			nd->nlabels = 1;
			nd->labels = xcalloc(1, sizeof(*nd->labels));
			nd->labels[0].key = xstrdup(zone_label);
			nd->labels[0].value = xstrdup(i % 2 ? "b" : "a");
		}
	}
}

static void hold(struct fixture *f, const char *node, enum gate_role role, int slot)
{
	struct gate_lease l = {0};
	l.node = (char *)node;
	l.role = role;
	l.slot = slot;
	l.ttl_ms = 60000;
	lease_table_add(&f->t, &l, f->in.now_ms);
}

static struct gate_decision decide(struct fixture *f, const char *node, enum gate_role role)
{
	struct gate_decision d;
	struct gate_request r = {.node = node, .role = role};
	gate_decide(&f->conf, &f->in, &f->t, &r, &d);
	return d;
}

static bool has_reason(const struct gate_decision *d, const char *needle)
{
	for (size_t i = 0; i < d->reasons.n; i++)
		if (strstr(d->reasons.v[i], needle))
			return true;
	return false;
}

static void dump(const struct gate_decision *d)
{
	for (size_t i = 0; i < d->reasons.n; i++)
		fprintf(stderr, "  reason: %s\n", d->reasons.v[i]);
}

START_TEST(test_quorum_numbers)
{
	ck_assert_int_eq(gate_quorum(0), 0);
	ck_assert_int_eq(gate_quorum(1), 1);
	ck_assert_int_eq(gate_quorum(2), 2);
	ck_assert_int_eq(gate_quorum(3), 2);
	ck_assert_int_eq(gate_quorum(4), 3);
	ck_assert_int_eq(gate_quorum(5), 3);
}
END_TEST

/* All healthy, n = 1..5: a master may go only if n-1 >= quorum(n). */
START_TEST(test_etcd_all_healthy)
{
	static const bool want[] = {false, false, false, true, true, true};
	int n = _i;
	struct fixture f;

	fx_init(&f);
	fx_etcd(&f, n, 0);
	struct gate_decision d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert_msg(d.granted == want[n], "n=%d granted=%d", n, d.granted);
	if (!d.granted) {
		char exp[128];
		snprintf(exp, sizeof(exp),
			 "etcd: %d of %d voting members healthy, quorum %d: granting a master "
			 "lease would leave %d",
			 n, n, gate_quorum(n), n - 1);
		ck_assert_msg(has_reason(&d, exp), "want '%s'", exp);
		ck_assert_int_eq(d.slot, -1);
	} else {
		ck_assert_int_eq(d.slot, 0);
	}
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

/* One other member down, n = 1..5. */
START_TEST(test_etcd_one_down)
{
	static const bool want[] = {false, false, false, false, false, true};
	int n = _i;
	struct fixture f;

	fx_init(&f);
	fx_etcd(&f, n, 0);
	etcd_down(&f, n); /* the last member; with n == 1 that is the asker itself */
	struct gate_decision d = decide(&f, n == 1 ? "m9" : "m1", GATE_ROLE_MASTER);
	ck_assert_msg(d.granted == want[n], "n=%d", n);
	if (n == 3)
		ck_assert(has_reason(&d, "etcd: 2 of 3 voting members healthy, quorum 2: granting "
					 "a master lease would leave 1; m3 unhealthy"));
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

START_TEST(test_etcd_asker_already_down)
{
	struct fixture f;

	/* The asker's own member is down: it still counts as leaving, so the
	 * cluster would have no margin; refused until it is healthy again. */
	fx_init(&f);
	fx_etcd(&f, 3, 0);
	etcd_down(&f, 1);
	struct gate_decision d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "etcd: 2 of 3 voting members healthy, quorum 2: granting a "
				 "master lease would leave 1; m1 unhealthy"));
	gate_decision_free(&d);
	fx_free(&f);

	/* Five members, the asker down: 4 healthy, 4 - 1 = 3 >= 3. */
	fx_init(&f);
	fx_etcd(&f, 5, 0);
	etcd_down(&f, 1);
	d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(d.granted);
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

START_TEST(test_etcd_learners)
{
	struct fixture f;

	/* 3 voters + 1 learner: the learner does not count either way. */
	fx_init(&f);
	fx_etcd(&f, 4, 4);
	struct gate_decision d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(d.granted);
	bool seen = false;
	for (size_t i = 0; i < d.arithmetic.n; i++)
		seen |= strstr(d.arithmetic.v[i],
			       "3 of 3 voting members healthy, quorum 2: a "
			       "master lease leaves 2 (1 learner(s) not counted)") != NULL;
	ck_assert(seen);
	gate_decision_free(&d);
	fx_free(&f);

	/* 2 voters + 1 healthy learner: would be 3 members, but only 2 vote. */
	fx_init(&f);
	fx_etcd(&f, 3, 3);
	d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "1 of 2") || has_reason(&d, "2 of 2 voting members healthy, "
							     "quorum 2"));
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

START_TEST(test_unknown_inputs)
{
	struct fixture f;

	/* etcd never answered. */
	fx_init(&f);
	fx_etcd(&f, 3, 0);
	f.in.etcd.src.known = false;
	f.in.etcd.src.why = xstrdup("timeout after 2s on every endpoint");
	struct gate_decision d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "etcd: unknown (timeout after 2s on every endpoint)"));
	gate_decision_free(&d);
	/* A worker does not need etcd. */
	d = decide(&f, "w1", GATE_ROLE_WORKER);
	ck_assert(d.granted);
	gate_decision_free(&d);
	fx_free(&f);

	/* etcd answered, but too long ago. */
	fx_init(&f);
	fx_etcd(&f, 3, 0);
	f.in.etcd.src.at_ms = f.in.now_ms - 60000;
	d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "etcd: last answer 60s ago, older than 5s"));
	gate_decision_free(&d);
	fx_free(&f);

	/* An unreachable kube API blocks every lease, workers too. */
	fx_init(&f);
	fx_nodes(&f, 2, NULL);
	f.in.nodes.src.known = false;
	f.in.nodes.src.why = xstrdup("connect refused");
	d = decide(&f, "w1", GATE_ROLE_WORKER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "kubernetes nodes: unknown (connect refused)"));
	gate_decision_free(&d);
	fx_free(&f);

	/* Prometheus that cannot be asked counts as an alert. */
	fx_init(&f);
	f.conf.alerts_prometheus_url = (char *)"http://127.0.0.1:9";
	d = decide(&f, "w1", GATE_ROLE_WORKER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "alerts (Prometheus): unknown"));
	gate_decision_free(&d);
	fx_free(&f);

	/* The pool not yet published. */
	fx_init(&f);
	fx_pool(&f, 3);
	f.in.pool.src.known = false;
	d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "pool apiservers: unknown"));
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

START_TEST(test_etcd_disagree_and_alarm)
{
	struct fixture f;

	fx_init(&f);
	fx_etcd(&f, 3, 0);
	f.in.etcd.views[2].cluster_id = 0xdead;
	struct gate_decision d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "not one cluster"));
	gate_decision_free(&d);
	fx_free(&f);

	fx_init(&f);
	fx_etcd(&f, 3, 0);
	f.in.etcd.views[1].nmembers = 2;
	d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "disagree on the member list"));
	gate_decision_free(&d);
	fx_free(&f);

	fx_init(&f);
	fx_etcd(&f, 3, 0);
	f.in.etcd.views[0].nalarms = 1;
	f.in.etcd.views[0].alarms = xcalloc(1, sizeof(char *));
	f.in.etcd.views[0].alarms[0] = xstrdup("NOSPACE on member 1");
	d = decide(&f, "m2", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "etcd: alarm NOSPACE on member 1"));
	/* The alarmed member is not healthy: 2 of 3, and m2 leaving leaves 1. */
	ck_assert(has_reason(&d, "2 of 3 voting members healthy"));
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

START_TEST(test_pool)
{
	struct fixture f;

	fx_init(&f);
	fx_pool(&f, 3);
	f.in.pool.v[2].up = false;
	f.in.pool.v[2].detail = xstrdup("readyz 503: [-]etcd failed");
	struct gate_decision d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d,
			     "pool apiservers: 2 of 3 apiservers up, quorum 2: granting a "
			     "master lease would leave 1; m3 down: readyz 503: [-]etcd failed"));
	gate_decision_free(&d);
	/* A worker is not a pool member: granted. */
	d = decide(&f, "w1", GATE_ROLE_WORKER);
	ck_assert(d.granted);
	gate_decision_free(&d);
	/* A master asking as a worker is told to ask as a master. */
	d = decide(&f, "m2", GATE_ROLE_WORKER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "ask for a master lease"));
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

START_TEST(test_concurrency_per_role)
{
	struct fixture f;

	fx_init(&f);
	fx_etcd(&f, 3, 0);
	hold(&f, "m1", GATE_ROLE_MASTER, 0);
	struct gate_decision d = decide(&f, "m2", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "concurrency: 1 of 1 master slot(s) taken (master-0 held by m1"));
	/* Quorum counts the holder as gone too. */
	ck_assert(has_reason(&d, "granting a master lease would leave 1"));
	gate_decision_free(&d);
	d = decide(&f, "w1", GATE_ROLE_WORKER);
	ck_assert(d.granted);
	ck_assert_int_eq(d.slot, 0);
	gate_decision_free(&d);
	fx_free(&f);

	/* Two master slots on five members: two may go, a third may not. */
	fx_init(&f);
	f.conf.conc_masters = 3;
	fx_etcd(&f, 5, 0);
	hold(&f, "m1", GATE_ROLE_MASTER, 0);
	d = decide(&f, "m2", GATE_ROLE_MASTER);
	ck_assert(d.granted);
	ck_assert_int_eq(d.slot, 1);
	gate_decision_free(&d);
	hold(&f, "m2", GATE_ROLE_MASTER, 1);
	d = decide(&f, "m3", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "5 of 5 voting members healthy, quorum 3: granting a master "
				 "lease would leave 2"));
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

START_TEST(test_per_label)
{
	struct fixture f;
	struct gate_label_cap cap = {.label = (char *)"zone", .max = 1};

	fx_init(&f);
	f.conf.conc_workers = 5;
	f.conf.per_label = &cap;
	f.conf.nper_label = 1;
	fx_nodes(&f, 4, "zone"); /* w1 a, w2 b, w3 a, w4 b */
	struct gate_lease l = {0};
	struct gate_label lab = {.key = (char *)"zone", .value = (char *)"a"};
	l.node = (char *)"w1";
	l.role = GATE_ROLE_WORKER;
	l.labels = &lab;
	l.nlabels = 1;
	lease_table_add(&f.t, &l, f.in.now_ms);

	struct gate_decision d = decide(&f, "w3", GATE_ROLE_WORKER);
	ck_assert(!d.granted);
	ck_assert(
	    has_reason(&d, "concurrency per zone: 1 of 1 lease(s) already held where zone=a"));
	gate_decision_free(&d);
	d = decide(&f, "w2", GATE_ROLE_WORKER);
	ck_assert(d.granted);
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

START_TEST(test_nodes_ready)
{
	struct fixture f;

	fx_init(&f);
	f.conf.conc_workers = 3;
	f.conf.require_all_nodes_ready = true;
	fx_nodes(&f, 3, NULL);
	f.in.nodes.v[1].ready = false;
	f.in.nodes.v[2].unschedulable = true;
	struct gate_decision d = decide(&f, "w1", GATE_ROLE_WORKER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "nodes: w2 is NotReady"));
	ck_assert(has_reason(&d, "nodes: w3 is cordoned"));
	gate_decision_free(&d);
	/* Holders are down by agreement: they do not block. */
	hold(&f, "w2", GATE_ROLE_WORKER, 0);
	hold(&f, "w3", GATE_ROLE_WORKER, 1);
	d = decide(&f, "w1", GATE_ROLE_WORKER);
	ck_assert(d.granted);
	ck_assert_int_eq(d.slot, 2);
	gate_decision_free(&d);
	/* A name that is not a node is refused. */
	d = decide(&f, "nosuch", GATE_ROLE_WORKER);
	ck_assert(has_reason(&d, "nosuch is not a node of the cluster"));
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

START_TEST(test_alerts)
{
	struct fixture f;

	fx_init(&f);
	f.conf.alerts_prometheus_url = (char *)"http://127.0.0.1:9090";
	f.conf.alerts_filter = (char *)"severity=\"critical\"";
	f.in.alerts.src.known = true;
	f.in.alerts.src.at_ms = f.in.now_ms;
	f.in.alerts.n = 1;
	f.in.alerts.firing = xcalloc(1, sizeof(char *));
	f.in.alerts.firing[0] = xstrdup("KubeAPIDown (severity=critical)");
	struct gate_decision d = decide(&f, "w1", GATE_ROLE_WORKER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "alerts: KubeAPIDown (severity=critical) is firing"));
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

START_TEST(test_every_reason)
{
	struct fixture f;
	struct gate_window w = {0};
	char *days[] = {(char *)"sat", (char *)"sun"};

	fx_init(&f);
	fx_etcd(&f, 3, 0);
	fx_pool(&f, 3);
	etcd_down(&f, 3);
	f.in.pool.v[2].up = false;
	w.days = days;
	w.ndays = 2;
	w.start = (char *)"01:00";
	w.end = (char *)"05:00";
	w.tz = (char *)"UTC";
	f.conf.windows = &w;
	f.conf.nwindows = 1;
	hold(&f, "m2", GATE_ROLE_MASTER, 0);
	struct gate_decision d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "concurrency:"));
	ck_assert(has_reason(&d, "window: outside every maintenance window: sat,sun 01:00-05:00 "
				 "UTC (now Mon 12:00 there)"));
	ck_assert(has_reason(&d, "pool apiservers:"));
	ck_assert(has_reason(&d, "etcd:"));
	if (d.reasons.n != 4)
		dump(&d);
	ck_assert_int_eq(d.reasons.n, 4);
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

static bool window_at(struct gate_window *w, int64_t unix_s)
{
	struct gate_conf c = {0};
	char *which = NULL;
	c.windows = w;
	c.nwindows = 1;
	bool open = gate_window_open(&c, unix_s * 1000, &which);
	free(which);
	return open;
}

START_TEST(test_windows_tz)
{
	char *mon[] = {(char *)"mon"};
	struct gate_window w = {.days = mon,
				.ndays = 1,
				.start = (char *)"22:00",
				.end = (char *)"04:00",
				.tz = (char *)"Europe/Berlin"};
	const int64_t mon_jan = T_2024_01_15_0000; /* Mon 2024-01-15 00:00 UTC */
	const int64_t mon_jul = 1721001600;	   /* Mon 2024-07-15 00:00 UTC */
	const int64_t mon_2040 = 2226009600;	   /* Mon 2040-07-16 00:00 UTC */

	/* Winter: CET = UTC+1, so 22:00 local is 21:00 UTC. */
	ck_assert(!window_at(&w, mon_jan + 20 * 3600 + 30 * 60));
	ck_assert(window_at(&w, mon_jan + 21 * 3600 + 30 * 60));
	/* Past midnight into Tuesday, still the Monday window; 04:00 local closes it. */
	ck_assert(window_at(&w, mon_jan + 24 * 3600 + 2 * 3600));
	ck_assert(!window_at(&w, mon_jan + 24 * 3600 + 3 * 3600 + 30 * 60));
	/* Summer: CEST = UTC+2. */
	ck_assert(!window_at(&w, mon_jul + 19 * 3600 + 30 * 60));
	ck_assert(window_at(&w, mon_jul + 20 * 3600 + 30 * 60));
	/* Past the last transition in the file: the footer rule decides. */
	ck_assert(!window_at(&w, mon_2040 + 19 * 3600 + 30 * 60));
	ck_assert(window_at(&w, mon_2040 + 20 * 3600 + 30 * 60));
	/* Sunday evening is not Monday's window. */
	ck_assert(!window_at(&w, mon_jan - 3600));

	/* An unknown zone never opens, and says why. */
	struct gate_conf c = {0};
	char *which = NULL;
	w.tz = (char *)"Mars/Olympus";
	c.windows = &w;
	c.nwindows = 1;
	ck_assert(!gate_window_open(&c, (mon_jan + 21 * 3600 + 1800) * 1000, &which));
	ck_assert_msg(strstr(which, "unknown time zone"), "%s", which);
	free(which);
	w.tz = (char *)"../../etc/passwd";
	ck_assert(!window_at(&w, mon_jan + 21 * 3600 + 1800));
}
END_TEST

START_TEST(test_tz_offsets)
{
	long off = 0;
	const char *why = NULL;

	ck_assert_int_eq(tz_offset("Europe/Berlin", 1705276800, &off, &why), 0);
	ck_assert_int_eq(off, 3600);
	ck_assert_int_eq(tz_offset("Europe/Berlin", 1721001600, &off, &why), 0);
	ck_assert_int_eq(off, 7200);
	ck_assert_int_eq(tz_offset("Europe/Berlin", 2225836800, &off, &why), 0);
	ck_assert_int_eq(off, 7200);
	ck_assert_int_eq(tz_offset("Europe/Berlin", 2210112000, &off, &why), 0); /* Jan 2040 */
	ck_assert_int_eq(off, 3600);
	ck_assert_int_eq(tz_offset("America/New_York", 2225836800, &off, &why), 0);
	ck_assert_int_eq(off, -4 * 3600);
	/* Southern hemisphere: summer is January. */
	ck_assert_int_eq(tz_offset("Australia/Sydney", 2210112000, &off, &why), 0);
	ck_assert_int_eq(off, 11 * 3600);
	ck_assert_int_eq(tz_offset("Australia/Sydney", 2225836800, &off, &why), 0);
	ck_assert_int_eq(off, 10 * 3600);
	ck_assert_int_eq(tz_offset("Asia/Kolkata", 1705276800, &off, &why), 0);
	ck_assert_int_eq(off, 5 * 3600 + 1800);
	ck_assert_int_eq(tz_offset("UTC", 1705276800, &off, &why), 0);
	ck_assert_int_eq(off, 0);
	ck_assert_int_eq(tz_offset("No/Such_Zone", 1705276800, &off, &why), -1);
}
END_TEST

START_TEST(test_outcomes)
{
	struct fixture f;
	struct gate_text nodes = {0}, why = {0};
	struct gate_lease l = {0};

	fx_init(&f);
	f.conf.soak_ms = 60000;
	fx_nodes(&f, 2, NULL);
	l.node = (char *)"w1";
	l.role = GATE_ROLE_WORKER;
	l.boot_id = (char *)"boot-1";
	l.release_on_outcomes = true; /* lbctl gate watch's lease */
	lease_table_add(&f.t, &l, f.in.now_ms);

	/* Same boot: not back. */
	gate_outcomes(&f.conf, &f.in, &f.t, &nodes, &why);
	ck_assert_int_eq(nodes.n, 0);
	ck_assert_int_eq(f.t.v[0].back_since_ms, 0);
	/* Rebooted, NotReady: not back. */
	free(f.in.nodes.v[0].boot_id);
	f.in.nodes.v[0].boot_id = xstrdup("boot-1b");
	f.in.nodes.v[0].ready = false;
	gate_outcomes(&f.conf, &f.in, &f.t, &nodes, &why);
	ck_assert_int_eq(nodes.n, 0);
	/* Ready: back, but soaking. */
	f.in.nodes.v[0].ready = true;
	gate_outcomes(&f.conf, &f.in, &f.t, &nodes, &why);
	ck_assert_int_eq(nodes.n, 0);
	ck_assert(f.t.v[0].back_since_ms == f.in.now_ms);
	/* A blip resets the soak. */
	f.in.now_ms += 30000;
	f.in.nodes.src.at_ms = f.in.now_ms;
	f.in.nodes.v[0].ready = false;
	gate_outcomes(&f.conf, &f.in, &f.t, &nodes, &why);
	ck_assert_int_eq(f.t.v[0].back_since_ms, 0);
	f.in.nodes.v[0].ready = true;
	gate_outcomes(&f.conf, &f.in, &f.t, &nodes, &why);
	f.in.now_ms += 59000;
	f.in.nodes.src.at_ms = f.in.now_ms;
	gate_outcomes(&f.conf, &f.in, &f.t, &nodes, &why);
	ck_assert_int_eq(nodes.n, 0);
	f.in.now_ms += 1000;
	f.in.nodes.src.at_ms = f.in.now_ms;
	gate_outcomes(&f.conf, &f.in, &f.t, &nodes, &why);
	ck_assert_int_eq(nodes.n, 1);
	ck_assert_str_eq(nodes.v[0], "w1");
	gate_text_free(&nodes);
	gate_text_free(&why);

	/* Deleted from the cluster: released at once. */
	l.node = (char *)"gone";
	l.slot = 1;
	lease_table_add(&f.t, &l, f.in.now_ms);
	gate_outcomes(&f.conf, &f.in, &f.t, &nodes, &why);
	ck_assert_int_eq(nodes.n, 2);
	ck_assert_str_eq(nodes.v[1], "gone");
	ck_assert(strstr(why.v[1], "deleted"));
	gate_text_free(&nodes);
	gate_text_free(&why);
	fx_free(&f);
}
END_TEST

START_TEST(test_outcomes_master)
{
	struct fixture f;
	struct gate_lease l = {0};
	bool gone;
	char *why = NULL;

	fx_init(&f);
	fx_nodes(&f, 1, NULL);
	free(f.in.nodes.v[0].name);
	f.in.nodes.v[0].name = xstrdup("m1");
	fx_pool(&f, 3);
	fx_etcd(&f, 3, 0);
	l.node = (char *)"m1";
	l.role = GATE_ROLE_MASTER;
	l.boot_id = (char *)"old";
	f.in.pool.v[0].up = false;
	f.in.pool.v[0].detail = xstrdup("connect refused");
	etcd_down(&f, 1);
	ck_assert(!gate_lease_back(&f.conf, &f.in, &l, &gone, &why));
	ck_assert_msg(strstr(why, "backend m1 not up (connect refused)"), "%s", why);
	ck_assert_msg(strstr(why, "etcd member m1 unhealthy"), "%s", why);
	free(why);
	f.in.pool.v[0].up = true;
	f.in.etcd.views[0].ok = true;
	f.in.etcd.views[0].health = true;
	ck_assert(gate_lease_back(&f.conf, &f.in, &l, &gone, &why));
	ck_assert(why == NULL);
	fx_free(&f);
}
END_TEST

/* Issue 14 case 1: the role is the cluster's; unknown means no. */
START_TEST(test_node_role)
{
	struct fixture f;
	enum gate_role role;
	char *why = NULL;

	fx_init(&f);
	fx_pool(&f, 3);
	fx_etcd(&f, 3, 0);
	fx_nodes(&f, 2, NULL);
	/* A pool backend is a master; so is an etcd member. */
	ck_assert_int_eq(gate_node_role(&f.conf, &f.in, "m1", &role, &why), 0);
	ck_assert_int_eq(role, GATE_ROLE_MASTER);
	f.in.pool.n = 2; /* m3 is only an etcd member now */
	ck_assert_int_eq(gate_node_role(&f.conf, &f.in, "m3", &role, &why), 0);
	ck_assert_int_eq(role, GATE_ROLE_MASTER);
	f.in.pool.n = 3;
	/* Every source known, none says master: a worker. */
	ck_assert_int_eq(gate_node_role(&f.conf, &f.in, "w1", &role, &why), 0);
	ck_assert_int_eq(role, GATE_ROLE_WORKER);
	/* etcd unknown: a node the pool does not know cannot be called a worker. */
	f.in.etcd.src.known = false;
	ck_assert_int_eq(gate_node_role(&f.conf, &f.in, "w1", &role, &why), -1);
	ck_assert_msg(strstr(why, "etcd unknown"), "%s", why);
	free(why);
	why = NULL;
	/* ... but the pool's word is enough for a master. */
	ck_assert_int_eq(gate_node_role(&f.conf, &f.in, "m2", &role, &why), 0);
	ck_assert_int_eq(role, GATE_ROLE_MASTER);
	f.in.etcd.src.known = true;
	/* The control-plane label says master too. */
	f.in.nodes.v[1].nlabels = 1;
	f.in.nodes.v[1].labels = xcalloc(1, sizeof(*f.in.nodes.v[1].labels));
	f.in.nodes.v[1].labels[0].key = xstrdup("node-role.kubernetes.io/control-plane");
	f.in.nodes.v[1].labels[0].value = xstrdup("");
	ck_assert_int_eq(gate_node_role(&f.conf, &f.in, "w2", &role, &why), 0);
	ck_assert_int_eq(role, GATE_ROLE_MASTER);
	fx_free(&f);
}
END_TEST

/*
 * Stale is unknown for the role and for outcomes too (found by
 * test_gate_prop): an answer older than max_age may miss a node added to
 * etcd or the pool since, so it cannot make a worker; and it cannot say a
 * master is back.
 */
START_TEST(test_stale_is_unknown)
{
	struct fixture f;
	struct gate_lease l = {0};
	enum gate_role role;
	char *why = NULL;
	bool gone;

	fx_init(&f);
	fx_pool(&f, 3);
	fx_etcd(&f, 3, 0);
	fx_nodes(&f, 2, NULL);
	ck_assert_int_eq(gate_node_role(&f.conf, &f.in, "w1", &role, &why), 0);
	ck_assert_int_eq(role, GATE_ROLE_WORKER);
	f.in.etcd.src.at_ms = f.in.now_ms - 60000;
	ck_assert_int_eq(gate_node_role(&f.conf, &f.in, "w1", &role, &why), -1);
	ck_assert_msg(strstr(why, "role: cannot tell whether w1 is a master: etcd stale (last "
				  "answer 60s ago)"),
		      "%s", why);
	xfree(&why);
	/* A stale answer that names a master is still evidence of one. */
	ck_assert_int_eq(gate_node_role(&f.conf, &f.in, "m1", &role, &why), 0);
	ck_assert_int_eq(role, GATE_ROLE_MASTER);
	/* One source unknown, a later one says master: a master (and, under
	 * ASan, the list of unknown sources is not leaked). */
	f.in.pool.src.known = false;
	f.in.etcd.src.at_ms = f.in.now_ms;
	ck_assert_int_eq(gate_node_role(&f.conf, &f.in, "m1", &role, &why), 0);
	ck_assert_int_eq(role, GATE_ROLE_MASTER);
	ck_assert(why == NULL);
	f.in.pool.src.known = true;
	f.in.etcd.src.at_ms = f.in.now_ms;
	f.in.pool.src.at_ms = f.in.now_ms - 60000;
	f.in.nodes.src.at_ms = f.in.now_ms - 60000;
	ck_assert_int_eq(gate_node_role(&f.conf, &f.in, "w1", &role, &why), -1);
	ck_assert_msg(strstr(why, "pool apiservers stale") && strstr(why, "kubernetes nodes stale"),
		      "%s", why);
	xfree(&why);
	fx_free(&f);

	/* Outcomes: a master is not back by a stale pool or etcd. */
	fx_init(&f);
	fx_nodes(&f, 1, NULL);
	free(f.in.nodes.v[0].name);
	f.in.nodes.v[0].name = xstrdup("m1");
	fx_pool(&f, 3);
	fx_etcd(&f, 3, 0);
	l.node = (char *)"m1";
	l.role = GATE_ROLE_MASTER;
	l.boot_id = (char *)"old";
	ck_assert(gate_lease_back(&f.conf, &f.in, &l, &gone, &why));
	f.in.pool.src.at_ms = f.in.now_ms - 60000;
	ck_assert(!gate_lease_back(&f.conf, &f.in, &l, &gone, &why));
	ck_assert_msg(strstr(why, "pool unknown"), "%s", why);
	xfree(&why);
	f.in.pool.src.at_ms = f.in.now_ms;
	f.in.etcd.src.at_ms = f.in.now_ms - 60000;
	ck_assert(!gate_lease_back(&f.conf, &f.in, &l, &gone, &why));
	ck_assert_msg(strstr(why, "etcd unknown"), "%s", why);
	xfree(&why);
	fx_free(&f);
}
END_TEST

/* Issue 14 case 3: a lease is its holder's. */
START_TEST(test_holders)
{
	struct fixture f;
	char *why = NULL;

	fx_init(&f);
	struct gate_lease l = {.node = (char *)"w1",
			       .role = GATE_ROLE_WORKER,
			       .ttl_ms = 60000,
			       .holder = (char *)"lbctl upgrade run 2026-01-01T00:00:00Z"};
	lease_table_add(&f.t, &l, f.in.now_ms);
	ck_assert_int_eq(gate_hold_check(&f.t, "w2", "node/w2", false, &why), GATE_HOLD_NEW);
	ck_assert_int_eq(
	    gate_hold_check(&f.t, "w1", "lbctl upgrade run 2026-01-01T00:00:00Z", false, &why),
	    GATE_HOLD_RENEW);
	/* Stale or not, the same run renews its own lease (--resume). */
	f.in.now_ms += 3600 * 1000;
	ck_assert_int_eq(
	    gate_hold_check(&f.t, "w1", "lbctl upgrade run 2026-01-01T00:00:00Z", false, &why),
	    GATE_HOLD_RENEW);
	ck_assert_int_eq(gate_hold_check(&f.t, "w1", "node/w1", false, &why), GATE_HOLD_REFUSED);
	ck_assert_msg(strstr(why, "held by lbctl upgrade run") && strstr(why, "fence 1"), "%s",
		      why);
	free(why);
	/* An admin may. */
	ck_assert_int_eq(gate_hold_check(&f.t, "w1", "admin", true, &why), GATE_HOLD_RENEW);
	fx_free(&f);
}
END_TEST

/* Issue 14 case 4: a backend that takes no traffic is lost to the quorum. */
START_TEST(test_drained_is_lost)
{
	struct fixture f;
	struct gate_decision d;

	fx_init(&f);
	fx_pool(&f, 3);
	f.in.pool.v[2].serving = false; /* drained or disabled, its check still passes */
	d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert_msg(strstr(d.reasons.v[0], "takes no traffic"), "%s", d.reasons.v[0]);
	gate_decision_free(&d);
	f.in.pool.v[2].serving = true;
	d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(d.granted);
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

/* Issue 14 case 4: only leases that asked for it are released on outcomes. */
START_TEST(test_outcomes_only_when_asked)
{
	struct fixture f;
	struct gate_text nodes = {0}, why = {0};
	struct gate_lease l = {0};

	fx_init(&f);
	fx_nodes(&f, 2, NULL);
	l.node = (char *)"w1";
	l.role = GATE_ROLE_WORKER;
	l.boot_id = (char *)"boot-0"; /* rebooted since: w1's bootID is boot-1 now */
	lease_table_add(&f.t, &l, f.in.now_ms);
	gate_outcomes(&f.conf, &f.in, &f.t, &nodes, &why);
	ck_assert_int_eq(nodes.n, 0); /* back, but its holder releases it */
	f.t.v[0].release_on_outcomes = true;
	gate_outcomes(&f.conf, &f.in, &f.t, &nodes, &why);
	ck_assert_int_eq(nodes.n, 1);
	gate_text_free(&nodes);
	gate_text_free(&why);
	fx_free(&f);
}
END_TEST

/* Issue 15: a request may name the stricter role. m4 is about to join a
 * one-master cluster (in no source yet): asked master, the master rules
 * decide and the lease is a master lease, so another master's request waits
 * for it. A worker running in the cluster needs an admin for that; asking
 * worker for a master stays refused. */
static struct gate_decision decide_req(struct fixture *f, struct gate_request *r)
{
	struct gate_decision d;
	gate_decide(&f->conf, &f->in, &f->t, r, &d);
	return d;
}

START_TEST(test_stricter_role)
{
	struct fixture f;
	struct gate_request r = {0};
	struct gate_decision d;
	char *why = NULL;

	fx_init(&f);
	fx_pool(&f, 1);
	fx_etcd(&f, 1, 0);
	fx_nodes(&f, 2, NULL);
	/* No role asked, or the gate's own: as before. */
	ck_assert_int_eq(gate_request_role(&f.conf, &f.in, "w1", NULL, false, &r, &why), 0);
	ck_assert_int_eq(r.role, GATE_ROLE_WORKER);
	ck_assert(!r.stricter);
	ck_assert_int_eq(gate_request_role(&f.conf, &f.in, "m1", "master", false, &r, &why), 0);
	ck_assert(r.role == GATE_ROLE_MASTER && !r.stricter);
	/* Never weaker. */
	ck_assert_int_eq(gate_request_role(&f.conf, &f.in, "m1", "worker", true, &r, &why), -1);
	ck_assert_msg(strstr(why, "role: m1 is a master, by what the gate knows of the cluster; "
				  "it asked for a worker lease"),
		      "%s", why);
	xfree(&why);

	/* A node about to join asks master, through an admin (lbctl migrate):
	 * decided by the master rules. Its own token may not: it would take the
	 * one master slot for a name no source counts, and nothing gives it
	 * back. */
	ck_assert_int_eq(gate_request_role(&f.conf, &f.in, "m4", "master", false, &r, &why), -1);
	ck_assert_msg(strstr(why, "which only an admin gives"), "%s", why);
	xfree(&why);
	ck_assert_int_eq(gate_request_role(&f.conf, &f.in, "m4", "master", true, &r, &why), 0);
	ck_assert(r.role == GATE_ROLE_MASTER && r.stricter);
	d = decide_req(&f, &r);
	dump(&d);
	ck_assert(d.granted);
	ck_assert_int_eq(d.slot, 0);
	bool noted = false;
	for (size_t i = 0; i < d.arithmetic.n; i++)
		noted |= strstr(d.arithmetic.v[i], "m4 is not a node of the cluster yet") != NULL;
	ck_assert(noted);
	gate_decision_free(&d);
	/* ... not one to be released on outcomes: absent, it would look deleted. */
	r.release_on_outcomes = true;
	d = decide_req(&f, &r);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "released at once"));
	gate_decision_free(&d);
	r.release_on_outcomes = false;
	/* Held, it takes the one master slot: m1 must wait for it. */
	hold(&f, "m4", GATE_ROLE_MASTER, 0);
	d = decide(&f, "m1", GATE_ROLE_MASTER);
	ck_assert(!d.granted);
	ck_assert_msg(has_reason(&d, "concurrency: 1 of 1 master slot(s) taken (master-0 held by "
				     "m4"),
		      "%s", d.reasons.n ? d.reasons.v[0] : "");
	gate_decision_free(&d);
	/* Outcomes never end it: its holder releases it. */
	struct gate_text nodes = {0}, whyo = {0};
	gate_outcomes(&f.conf, &f.in, &f.t, &nodes, &whyo);
	ck_assert_int_eq(nodes.n, 0);
	lease_table_remove(&f.t, "m4");

	/* Status' joining_master: the same rules for no node in particular. */
	struct gate_request jr = {.node = "(a joining master)",
				  .role = GATE_ROLE_MASTER,
				  .hypothetical = true,
				  .stricter = true};
	d = decide_req(&f, &jr);
	ck_assert(d.granted);
	gate_decision_free(&d);
	etcd_down(&f, 1); /* one member of one down: a joiner adds none healthy */
	d = decide_req(&f, &jr);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "etcd: 0 of 1 voting members healthy"));
	gate_decision_free(&d);
	f.in.etcd.views[0].ok = f.in.etcd.views[0].health = true;

	/* The master rules still say no when they must: etcd unknown. */
	f.in.etcd.src.known = false;
	ck_assert_int_eq(gate_request_role(&f.conf, &f.in, "m4", "master", true, &r, &why), 0);
	d = decide_req(&f, &r);
	ck_assert(!d.granted);
	ck_assert(has_reason(&d, "etcd: unknown"));
	gate_decision_free(&d);
	f.in.etcd.src.known = true;

	/* A worker running in the cluster: only an admin makes it a master. */
	ck_assert_int_eq(gate_request_role(&f.conf, &f.in, "w1", "master", false, &r, &why), -1);
	ck_assert_msg(strstr(why, "role: w1 is a worker, by what the gate knows of the cluster; "
				  "it asked for a master lease, which only an admin gives"),
		      "%s", why);
	xfree(&why);
	ck_assert_int_eq(gate_request_role(&f.conf, &f.in, "w1", "master", true, &r, &why), 0);
	ck_assert(r.role == GATE_ROLE_MASTER && r.stricter);
	/* Without a node list: the same, an admin only. */
	f.conf.kubeconfig = NULL;
	ck_assert_int_eq(gate_request_role(&f.conf, &f.in, "m4", "master", false, &r, &why), -1);
	xfree(&why);
	ck_assert_int_eq(gate_request_role(&f.conf, &f.in, "m4", "master", true, &r, &why), 0);
	d = decide_req(&f, &r);
	ck_assert(d.granted);
	gate_decision_free(&d);
	fx_free(&f);
}
END_TEST

static Suite *policy_suite(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_quorum_numbers);
	tcase_add_loop_test(tc, test_etcd_all_healthy, 1, 6);
	tcase_add_loop_test(tc, test_etcd_one_down, 1, 6);
	tcase_add_test(tc, test_etcd_asker_already_down);
	tcase_add_test(tc, test_etcd_learners);
	tcase_add_test(tc, test_unknown_inputs);
	tcase_add_test(tc, test_etcd_disagree_and_alarm);
	tcase_add_test(tc, test_pool);
	tcase_add_test(tc, test_concurrency_per_role);
	tcase_add_test(tc, test_per_label);
	tcase_add_test(tc, test_nodes_ready);
	tcase_add_test(tc, test_alerts);
	tcase_add_test(tc, test_every_reason);
	tcase_add_test(tc, test_windows_tz);
	tcase_add_test(tc, test_tz_offsets);
	tcase_add_test(tc, test_outcomes);
	tcase_add_test(tc, test_outcomes_master);
	tcase_add_test(tc, test_node_role);
	tcase_add_test(tc, test_stale_is_unknown);
	tcase_add_test(tc, test_holders);
	tcase_add_test(tc, test_drained_is_lost);
	tcase_add_test(tc, test_outcomes_only_when_asked);
	tcase_add_test(tc, test_stricter_role);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(policy_suite());
}
