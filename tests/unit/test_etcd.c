/*
 * test_etcd.c - kube/etcd.h's member-health rule, and that the gate's path
 * (gate_etcd_poll + gate_etcd_member_healthy) and the orchestrator's
 * (orch_etcd_poll + kube_etcd_member_healthy) give the same verdict, with
 * the same reason, on the same etcd: a fake JSON gateway on loopback, one
 * listener per member, answering what each scenario says.
 */
#define _GNU_SOURCE
#include <check.h>

#include "tests/unit/unit.h"
#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/text.h"
#include "common/xmalloc.h"
#include "gate/etcd.h"
#include "gate/policy.h"
#include "kube/etcd.h"
#include "upgrade/orchestrator_int.h"

#define CLUSTER_ID "15118495548433857066"
#define MAXM 5

/* ---- a fake etcd: one listener per member ---------------------------------------------- */

struct fake_member {
	const char *name;
	uint64_t id;
	bool learner;
	bool down;	       /* its port refuses connections */
	uint64_t leader;       /* status.leader as it answers */
	const char *unhealthy; /* /health false with this reason */
	int fd, port;
	char url[64];
};

struct fake {
	struct fake_member m[MAXM];
	int n;
	const char *alarm; /* raised on alarm_on, seen by every member */
	uint64_t alarm_on;
	int stop[2];
	pthread_t th;
};

static json_t *id_json(uint64_t id)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%" PRIu64, id);
	return json_string(buf);
}

static json_t *header(const struct fake_member *me)
{
	return json_pack("{s:s,s:o}", "cluster_id", CLUSTER_ID, "member_id", id_json(me->id));
}

/* What member me answers to path: the body and the HTTP status. */
static char *answer(const struct fake *f, const struct fake_member *me, const char *path,
		    int *status)
{
	json_t *out;

	*status = 200;
	if (strcmp(path, "/v3/cluster/member/list") == 0) {
		json_t *arr = json_array();
		for (int i = 0; i < f->n; i++)
			json_array_append_new(
			    arr, json_pack("{s:o,s:s,s:[s],s:b}", "ID", id_json(f->m[i].id), "name",
					   f->m[i].name, "clientURLs", f->m[i].url, "isLearner",
					   f->m[i].learner));
		out = json_pack("{s:o,s:o}", "header", header(me), "members", arr);
	} else if (strcmp(path, "/v3/maintenance/status") == 0) {
		out = json_pack("{s:o,s:s,s:o}", "header", header(me), "version", "3.4.23",
				"leader", id_json(me->leader));
	} else if (strcmp(path, "/v3/maintenance/alarm") == 0) {
		out = f->alarm ? json_pack("{s:o,s:[{s:o,s:s}]}", "header", header(me), "alarms",
					   "memberID", id_json(f->alarm_on), "alarm", f->alarm)
			       : json_pack("{s:o}", "header", header(me));
	} else if (strcmp(path, "/health") == 0) {
		if (me->unhealthy)
			*status = 503;
		out = me->unhealthy
			  ? json_pack("{s:s,s:s}", "health", "false", "reason", me->unhealthy)
			  : json_pack("{s:s}", "health", "true");
	} else {
		*status = 404;
		out = json_pack("{s:s}", "error", "not found");
	}
	char *s = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	return s;
}

static void serve_one(const struct fake *f, const struct fake_member *me, int c)
{
	char req[8192], path[256] = "";
	size_t len = 0;
	ssize_t r;
	char *end = NULL;

	/* Headers, then the body Content-Length says (ignored: GET is a GET). */
	while (len < sizeof(req) - 1 && (r = read(c, req + len, sizeof(req) - 1 - len)) > 0) {
		len += (size_t)r;
		req[len] = '\0';
		if ((end = strstr(req, "\r\n\r\n"))) {
			const char *cl = strcasestr(req, "content-length:");
			size_t want =
			    (size_t)(end + 4 - req) + (cl ? strtoul(cl + 15, NULL, 10) : 0);
			if (len >= want)
				break;
		}
	}
	if (sscanf(req, "%*s %255s", path) != 1)
		return;
	int status;
	char *body = answer(f, me, path, &status);
	char *resp = xasprintf("HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
			       "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			       status, strlen(body), body);
	if (write(c, resp, strlen(resp)) < 0) {
		/* the client gave up: its poll says so */
	}
	free(resp);
	free(body);
}

static void *serve(void *arg)
{
	struct fake *f = arg;
	struct pollfd pf[MAXM + 1];
	int who[MAXM + 1], n = 0;

	pf[n] = (struct pollfd){.fd = f->stop[0], .events = POLLIN};
	who[n++] = -1;
	for (int i = 0; i < f->n; i++)
		if (!f->m[i].down) {
			pf[n] = (struct pollfd){.fd = f->m[i].fd, .events = POLLIN};
			who[n++] = i;
		}
	for (;;) {
		if (poll(pf, (nfds_t)n, -1) < 0)
			continue;
		if (pf[0].revents)
			return NULL;
		for (int i = 1; i < n; i++) {
			if (!pf[i].revents)
				continue;
			int c = accept(pf[i].fd, NULL, NULL);
			if (c < 0)
				continue;
			serve_one(f, &f->m[who[i]], c);
			close(c);
		}
	}
}

/* Member k (0-based) of n: "m1".. with ids 101..; leader m1; all healthy. */
static void fake_init(struct fake *f, int n)
{
	memset(f, 0, sizeof(*f));
	f->n = n;
	for (int i = 0; i < n; i++) {
		static const char *names[] = {"m1", "m2", "m3", "m4", "m5"};
		f->m[i].name = names[i];
		f->m[i].id = 101 + (uint64_t)i;
		f->m[i].leader = 101;
	}
}

static void fake_start(struct fake *f)
{
	for (int i = 0; i < f->n; i++) {
		struct fake_member *m = &f->m[i];
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
		socklen_t al = sizeof(a);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		m->fd = socket(AF_INET, SOCK_STREAM, 0);
		ck_assert_int_ge(m->fd, 0);
		ck_assert_int_eq(bind(m->fd, (struct sockaddr *)&a, sizeof(a)), 0);
		ck_assert_int_eq(getsockname(m->fd, (struct sockaddr *)&a, &al), 0);
		m->port = ntohs(a.sin_port);
		snprintf(m->url, sizeof(m->url), "http://127.0.0.1:%d", m->port);
		if (m->down) {
			/* Bound, never listening: the port refuses, and stays ours. */
			continue;
		}
		ck_assert_int_eq(listen(m->fd, 16), 0);
	}
	ck_assert_int_eq(pipe(f->stop), 0);
	ck_assert_int_eq(pthread_create(&f->th, NULL, serve, f), 0);
}

static void fake_stop(struct fake *f)
{
	ck_assert_int_eq(write(f->stop[1], "x", 1), 1);
	pthread_join(f->th, NULL);
	close(f->stop[0]);
	close(f->stop[1]);
	for (int i = 0; i < f->n; i++)
		close(f->m[i].fd);
}

/* ---- the two paths ---------------------------------------------------------------------- */

/* The verdict on every member, both ways; returns the gate's inputs (caller frees). */
struct verdicts {
	bool healthy[MAXM];
	char *why[MAXM];
	int voters, quorum;
	size_t nviews;
	bool known;
};

static void verdicts_free(struct verdicts *v)
{
	for (int i = 0; i < MAXM; i++)
		free(v->why[i]);
}

/* The configured endpoints: members' URLs (those in which, -1 ends). */
static char **endpoints(const struct fake *f, const int *which, size_t *n)
{
	char **eps = xcalloc(MAXM + 1, sizeof(*eps));
	*n = 0;
	for (; *which >= 0; which++)
		eps[(*n)++] = (char *)f->m[*which].url;
	return eps;
}

static void gate_path(const struct fake *f, char **eps, size_t neps, struct verdicts *out)
{
	struct gate_conf conf = {0};
	struct gate_etcd_in e;

	memset(out, 0, sizeof(*out));
	conf.etcd_endpoints = eps;
	conf.netcd_endpoints = neps;
	gate_etcd_poll(&conf, 1, &e);
	out->known = e.src.known;
	out->nviews = e.nviews;
	for (int i = 0; i < f->n; i++) {
		const char *why = NULL;
		out->healthy[i] = gate_etcd_member_healthy(&e, f->m[i].id, &why);
		out->why[i] = why ? xstrdup(why) : NULL;
	}
	for (size_t i = 0; i < e.nmembers; i++)
		out->voters += !e.members[i].learner;
	out->quorum = gate_quorum(out->voters);
	struct gate_inputs in = {.etcd = e};
	gate_inputs_free(&in);
}

static void orch_path(const struct fake *f, char **eps, size_t neps, struct verdicts *out)
{
	struct plan pl = {0};
	struct orch o = {.plan = &pl};
	struct kube_etcd e;
	char *err = NULL;

	memset(out, 0, sizeof(*out));
	pl.etcd_endpoints = eps;
	pl.netcd_endpoints = neps;
	out->known = orch_etcd_poll(&o, &e, &err) == 0;
	free(err);
	out->nviews = e.nviews;
	for (int i = 0; i < f->n; i++) {
		const char *why = NULL;
		out->healthy[i] = kube_etcd_member_healthy(&e, f->m[i].id, &why);
		out->why[i] = why ? xstrdup(why) : NULL;
	}
	out->voters = kube_etcd_voters(&e);
	out->quorum = kube_etcd_quorum(out->voters);
	kube_etcd_clear(&e);
}

/* Polls f both ways (every member's URL configured unless which says) and
 * checks they agree member by member; g gets the gate's verdicts. */
static void both(struct fake *f, const int *which, struct verdicts *g)
{
	static const int all[] = {0, 1, 2, 3, 4, -1};
	int upto[MAXM + 1];
	struct verdicts o;
	size_t neps;

	if (!which) {
		memcpy(upto, all, sizeof(upto));
		upto[f->n] = -1;
		which = upto;
	}
	fake_start(f);
	char **eps = endpoints(f, which, &neps);
	gate_path(f, eps, neps, g);
	orch_path(f, eps, neps, &o);
	fake_stop(f);
	free(eps);

	ck_assert_int_eq(g->known, o.known);
	ck_assert_uint_eq(g->nviews, o.nviews);
	ck_assert_int_eq(g->voters, o.voters);
	ck_assert_int_eq(g->quorum, o.quorum);
	for (int i = 0; i < f->n; i++) {
		ck_assert_msg(g->healthy[i] == o.healthy[i], "%s: gate %d, orchestrator %d",
			      f->m[i].name, g->healthy[i], o.healthy[i]);
		ck_assert_str_eq(g->why[i] ? g->why[i] : "-", o.why[i] ? o.why[i] : "-");
	}
	verdicts_free(&o);
}

/* ---- scenarios: both paths ------------------------------------------------------------- */

START_TEST(test_paths_all_healthy)
{
	struct fake f;
	struct verdicts g;

	fake_init(&f, 3);
	both(&f, NULL, &g);
	ck_assert(g.known);
	for (int i = 0; i < 3; i++)
		ck_assert_msg(g.healthy[i], "%s: %s", f.m[i].name, g.why[i]);
	ck_assert_int_eq(g.voters, 3);
	ck_assert_int_eq(g.quorum, 2);
	verdicts_free(&g);
}
END_TEST

START_TEST(test_paths_alarm)
{
	struct fake f;
	struct verdicts g;

	/* NOSPACE on m2, seen by every member: the cluster is alarmed, so no
	 * member is healthy (the gate's rule, fail closed); m2's reason names it. */
	fake_init(&f, 3);
	f.alarm = "NOSPACE";
	f.alarm_on = 102;
	both(&f, NULL, &g);
	for (int i = 0; i < 3; i++)
		ck_assert(!g.healthy[i]);
	ck_assert_msg(strstr(g.why[1], "NOSPACE on member 66"), "%s", g.why[1]); /* 102 = 0x66 */
	verdicts_free(&g);

	fake_init(&f, 3);
	f.alarm = "CORRUPT";
	f.alarm_on = 101;
	both(&f, NULL, &g);
	ck_assert(!g.healthy[0] && !g.healthy[1] && !g.healthy[2]);
	ck_assert_msg(strstr(g.why[0], "CORRUPT"), "%s", g.why[0]);
	verdicts_free(&g);
}
END_TEST

START_TEST(test_paths_learner)
{
	struct fake f;
	struct verdicts g;

	fake_init(&f, 3);
	f.m[2].learner = true;
	both(&f, NULL, &g);
	ck_assert(g.healthy[0] && g.healthy[1] && !g.healthy[2]);
	ck_assert_str_eq(g.why[2], "a learner, not a voting member");
	ck_assert_int_eq(g.voters, 2);
	ck_assert_int_eq(g.quorum, 2);
	verdicts_free(&g);
}
END_TEST

START_TEST(test_paths_no_leader)
{
	struct fake f;
	struct verdicts g;

	/* Status says leader 0 but /health still says true (as it may, briefly). */
	fake_init(&f, 3);
	for (int i = 0; i < 3; i++)
		f.m[i].leader = 0;
	both(&f, NULL, &g);
	for (int i = 0; i < 3; i++) {
		ck_assert(!g.healthy[i]);
		ck_assert_msg(strstr(g.why[i], "no leader"), "%s", g.why[i]);
	}
	verdicts_free(&g);

	/* etcd's own /health verdict counts too. */
	fake_init(&f, 3);
	f.m[1].unhealthy = "RAFT NO LEADER";
	both(&f, NULL, &g);
	ck_assert(g.healthy[0] && !g.healthy[1] && g.healthy[2]);
	ck_assert_str_eq(g.why[1], "/health false: RAFT NO LEADER");
	verdicts_free(&g);
}
END_TEST

START_TEST(test_paths_endpoint_fails)
{
	struct fake f;
	struct verdicts g;

	/* m3's endpoint refuses: m3 is unknown (not healthy), with its error. */
	fake_init(&f, 3);
	f.m[2].down = true;
	both(&f, NULL, &g);
	ck_assert(g.known);
	ck_assert(g.healthy[0] && g.healthy[1] && !g.healthy[2]);
	ck_assert_msg(strstr(g.why[2], "/v3/cluster/member/list: "), "%s", g.why[2]);
	verdicts_free(&g);

	/* The first configured endpoint is the one down: the list comes from the next. */
	fake_init(&f, 3);
	f.m[0].down = true;
	both(&f, NULL, &g);
	ck_assert(g.known);
	ck_assert(!g.healthy[0] && g.healthy[1] && g.healthy[2]);
	verdicts_free(&g);

	/* Every endpoint down: unknown, nobody healthy. */
	fake_init(&f, 3);
	for (int i = 0; i < 3; i++)
		f.m[i].down = true;
	both(&f, NULL, &g);
	ck_assert(!g.known);
	ck_assert(!g.healthy[0] && !g.healthy[1] && !g.healthy[2]);
	ck_assert_int_eq(g.voters, 0);
	verdicts_free(&g);
}
END_TEST

START_TEST(test_paths_every_member_asked)
{
	struct fake f;
	struct verdicts g;
	static const int only_m1[] = {0, -1};

	/* One endpoint configured: every other member is still asked at its own
	 * client URL, so a sick m3 is seen, not assumed healthy. */
	fake_init(&f, 3);
	f.m[2].unhealthy = "NOSPACE";
	both(&f, only_m1, &g);
	ck_assert_uint_eq(g.nviews, 3);
	ck_assert(g.healthy[0] && g.healthy[1] && !g.healthy[2]);
	verdicts_free(&g);
}
END_TEST

/* ---- the rule on hand-made input -------------------------------------------------------- */

/* n members 1..n, one ok view each, leader 1; urls http://m<i>. */
static void mk(struct kube_etcd *e, int n)
{
	memset(e, 0, sizeof(*e));
	e->nmembers = e->nviews = (size_t)n;
	e->members = xcalloc((size_t)n + 4, sizeof(*e->members));
	e->views = xcalloc((size_t)n + 4, sizeof(*e->views));
	for (int i = 0; i < n; i++) {
		e->members[i].id = (uint64_t)i + 1;
		e->members[i].name = xasprintf("m%d", i + 1);
		e->members[i].url = xasprintf("http://m%d", i + 1);
		struct kube_etcd_view *v = &e->views[i];
		v->endpoint = xasprintf("http://m%d", i + 1);
		v->ok = v->health = true;
		v->leader = 1;
		v->cluster_id = 0xc1;
		v->member_id = (uint64_t)i + 1;
		v->nmembers = (size_t)n;
		v->members = xcalloc((size_t)n, sizeof(uint64_t));
		for (int j = 0; j < n; j++)
			v->members[j] = (uint64_t)j + 1;
	}
}

/* The gate's struct around the same arrays: its verdict must be the rule's. */
static bool same_verdict(const struct kube_etcd *e, uint64_t id, const char **why)
{
	struct gate_etcd_in g = {
	    .members = e->members, .nmembers = e->nmembers, .views = e->views, .nviews = e->nviews};
	const char *w1 = NULL, *w2 = NULL;
	bool a = kube_etcd_member_healthy(e, id, &w1), b = gate_etcd_member_healthy(&g, id, &w2);
	ck_assert_int_eq(a, b);
	ck_assert_ptr_eq(w1, w2);
	if (why)
		*why = w1;
	return a;
}

START_TEST(test_rule)
{
	struct kube_etcd e;
	const char *why;

	mk(&e, 3);
	for (uint64_t id = 1; id <= 3; id++)
		ck_assert(same_verdict(&e, id, NULL));
	ck_assert(!same_verdict(&e, 9, &why));
	ck_assert_str_eq(why, "not in the member list");

	/* An alarm naming m2, reported by m1's endpoint only: m2 is not healthy
	 * (wherever it is seen), m1 is not (its endpoint reports an alarm), m3 is. */
	struct kube_etcd_view *v = &e.views[0];
	v->nalarms = 1;
	v->alarms = xcalloc(2, sizeof(char *));
	v->alarms[0] = xstrdup("NOSPACE on member 2 (seen by http://m1)");
	v->alarm_members = xcalloc(2, sizeof(uint64_t));
	v->alarm_members[0] = 2;
	ck_assert(!same_verdict(&e, 1, &why));
	ck_assert(!same_verdict(&e, 2, &why));
	ck_assert_str_eq(why, "NOSPACE on member 2 (seen by http://m1)");
	ck_assert(same_verdict(&e, 3, NULL));
	kube_etcd_clear(&e);

	/* A second endpoint for m1 that does not answer: m1 is unknown. */
	mk(&e, 3);
	v = &e.views[e.nviews++];
	v->endpoint = xstrdup("http://m1");
	v->err = xstrdup("/v3/cluster/member/list: Couldn't connect to server");
	ck_assert(!same_verdict(&e, 1, &why));
	ck_assert_str_eq(why, "/v3/cluster/member/list: Couldn't connect to server");
	ck_assert(same_verdict(&e, 2, NULL));
	kube_etcd_clear(&e);

	/* Two endpoints answer for m1 and one says unhealthy: not healthy. */
	mk(&e, 3);
	v = &e.views[e.nviews++];
	*v = e.views[0];
	v->endpoint = xstrdup("http://127.0.0.1:2379");
	v->members = xcalloc(3, sizeof(uint64_t));
	memcpy(v->members, e.views[0].members, 3 * sizeof(uint64_t));
	v->health = false;
	v->health_why = xstrdup("status error: corrupt");
	ck_assert(!same_verdict(&e, 1, &why));
	ck_assert_str_eq(why, "status error: corrupt");
	kube_etcd_clear(&e);

	/* No view for a member (never asked): not healthy. */
	mk(&e, 3);
	e.nviews = 2;
	ck_assert(!same_verdict(&e, 3, &why));
	ck_assert_str_eq(why, "no endpoint reached it");
	e.nviews = 3;
	/* An unstarted member: no name, no URL. */
	free(e.members[2].name);
	e.members[2].name = xstrdup("");
	xfree(&e.members[2].url);
	e.views[2].ok = false;
	ck_assert(!same_verdict(&e, 3, &why));
	ck_assert_str_eq(why, "not started yet (no client URL)");
	/* Leaderless and learner. */
	e.views[1].leaderless = true;
	ck_assert(!same_verdict(&e, 2, &why));
	ck_assert_str_eq(why, "no leader (status.leader is 0)");
	e.members[0].learner = true;
	ck_assert(!same_verdict(&e, 1, &why));
	ck_assert_str_eq(why, "a learner, not a voting member");
	ck_assert_int_eq(kube_etcd_voters(&e), 2);
	kube_etcd_clear(&e);
}
END_TEST

static void collect(void *arg, const char *msg)
{
	(*(int *)arg)++;
	ck_assert(msg && *msg);
}

START_TEST(test_agree)
{
	struct kube_etcd e;
	int said = 0;

	mk(&e, 3);
	ck_assert(kube_etcd_agree(&e, collect, &said));
	ck_assert_int_eq(said, 0);
	e.views[2].cluster_id = 0xdead;
	e.views[1].nmembers = 2;
	ck_assert(!kube_etcd_agree(&e, collect, &said));
	ck_assert_int_eq(said, 2);
	/* A view that did not answer does not take part. */
	e.views[1].ok = e.views[2].ok = false;
	ck_assert(kube_etcd_agree(&e, NULL, NULL));
	kube_etcd_clear(&e);
}
END_TEST

START_TEST(test_quorum)
{
	static const int want[] = {0, 1, 2, 2, 3, 3, 4, 4};
	for (int n = 0; n < 8; n++) {
		ck_assert_int_eq(kube_etcd_quorum(n), want[n]);
		ck_assert_int_eq(gate_quorum(n), kube_etcd_quorum(n));
	}
	ck_assert_int_eq(kube_etcd_quorum(-1), 0);
}
END_TEST

START_TEST(test_dup)
{
	struct kube_etcd e;

	mk(&e, 2);
	e.views[0].nalarms = 1;
	e.views[0].alarms = xcalloc(2, sizeof(char *));
	e.views[0].alarms[0] = xstrdup("NOSPACE on member 1");
	e.views[0].alarm_members = xcalloc(2, sizeof(uint64_t));
	e.views[0].alarm_members[0] = 1;
	struct kube_etcd d = {kube_etcd_members_dup(e.members, e.nmembers), e.nmembers,
			      kube_etcd_views_dup(e.views, e.nviews), e.nviews};
	kube_etcd_clear(&e);
	ck_assert_str_eq(d.members[1].url, "http://m2");
	ck_assert_uint_eq(d.views[0].alarm_members[0], 1);
	ck_assert(!kube_etcd_member_healthy(&d, 1, NULL));
	ck_assert(kube_etcd_member_healthy(&d, 2, NULL));
	kube_etcd_clear(&d);
}
END_TEST

/* An etcd (or what answers in its place) whose member name and URL carry
 * terminal escapes and control bytes (its JSON is valid UTF-8: jansson
 * refuses any other): they come out clean, ready for a message, a journal
 * or JSON. */
static json_t *hostile(void *arg, const char *endpoint, const char *path, const char *body,
		       char **err)
{
	json_t *hdr = json_pack("{s:s,s:s}", "cluster_id", "7", "member_id", "1");
	if (!strcmp(path, "/v3/cluster/member/list"))
		return json_pack("{s:o,s:[{s:s,s:s,s:[s]}]}", "header", hdr, "members", "ID", "1",
				 "name", "m1\x1b[2J\n", "clientURLs", "http://m1:2379/\x07");
	if (!strcmp(path, "/v3/maintenance/status"))
		return json_pack("{s:o,s:s}", "header", hdr, "leader", "1");
	if (!strcmp(path, "/v3/maintenance/alarm"))
		return json_pack("{s:o,s:[]}", "header", hdr, "alarms");
	json_decref(hdr);
	return json_pack("{s:s}", "health", "true");
}

START_TEST(test_member_text_cleaned)
{
	char *eps[] = {"http://m1:2379"};
	struct kube_etcd_conf c = {.endpoints = eps, .nendpoints = 1, .call = hostile};
	struct kube_etcd e;
	char *why = NULL;

	ck_assert_int_eq(kube_etcd_poll(&c, &e, &why), 0);
	free(why);
	ck_assert_uint_eq(e.nmembers, 1);
	ck_assert(!text_is_clean("m1\x1b[2J\n")); /* the check can fail */
	ck_assert(text_is_clean(e.members[0].name));
	ck_assert(text_is_clean(e.members[0].url));
	ck_assert_ptr_nonnull(strstr(e.members[0].name, "m1"));
	kube_etcd_clear(&e);
}
END_TEST

static Suite *etcd_suite(void)
{
	Suite *s = suite_create("etcd");
	TCase *rule = tcase_create("rule"), *paths = tcase_create("paths");

	tcase_add_test(rule, test_rule);
	tcase_add_test(rule, test_agree);
	tcase_add_test(rule, test_quorum);
	tcase_add_test(rule, test_dup);
	tcase_add_test(rule, test_member_text_cleaned);
	tcase_add_test(paths, test_paths_all_healthy);
	tcase_add_test(paths, test_paths_alarm);
	tcase_add_test(paths, test_paths_learner);
	tcase_add_test(paths, test_paths_no_leader);
	tcase_add_test(paths, test_paths_endpoint_fails);
	tcase_add_test(paths, test_paths_every_member_asked);
	suite_add_tcase(s, rule);
	suite_add_tcase(s, paths);
	return s;
}

int main(void)
{
	return unit_run(etcd_suite());
}
