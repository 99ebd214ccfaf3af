/*
 * test_steps.c - the step machine against fake clients, stopped at every
 * point and resumed.
 *
 * The world is one JSON object (nodes, pods, lbd's backends, the gate's
 * leases, etcd's members, the node commands and how often each started).
 * Four fakes read and change it: the apiserver (kube_set_transport), lbd's
 * admin and gate API (orch_call_fn), etcd's JSON gateway and the node
 * commands (struct orch_exec). Each fake call is a point, before and after
 * its effect.
 *
 * A run is first made whole, counting its points. Then, for every point, a
 * fresh world and run is stopped there as a kill -9 would stop it: the
 * world and the journal file as they were at that instant are kept, the
 * rest of that run is thrown away. lbctl then runs again on them (--resume
 * if a journal was written, afresh if not) and must finish: every node at
 * the target, uncordoned, backends enabled, no lease held, the journal
 * done, and every node command started exactly once over both runs.
 */
#define _GNU_SOURCE
#include <check.h>

#include "tests/unit/unit.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/xmalloc.h"
#include "upgrade/orchestrator_int.h"
#include "upgrade/plan.h"

#define TARGET "v1.31.5"
#define OLD "v1.30.9"

/* ---- the world ------------------------------------------------------------------------ */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static json_t *world;
static char dir[64], plan_path[128], journal_path[160];

/* the points of this run, and where it is stopped */
static int points, stop_at;
static json_t *snap_world;
static char *snap_journal; /* NULL: there was none */
static volatile sig_atomic_t stop_flag;
static struct strv unexpected; /* calls no fake knows */

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *s = NULL;
	size_t n = 0;
	if (!f)
		return NULL;
	FILE *m = open_memstream(&s, &n);
	int ch;
	while ((ch = fgetc(f)) != EOF)
		fputc(ch, m);
	fclose(m);
	fclose(f);
	return s;
}

/* A point: at stop_at, the world and the journal are kept as they are now,
 * and the run is told to stop (its later work is thrown away). mu held. */
static void point(void)
{
	if (++points != stop_at)
		return;
	snap_world = json_deep_copy(world);
	snap_journal = slurp(journal_path);
	stop_flag = 1;
}

static json_t *wget(const char *a, const char *b)
{
	return b ? json_object_get(json_object_get(world, a), b) : json_object_get(world, a);
}

static void add_node(const char *name, bool master, const char *version)
{
	json_object_set_new(wget("nodes", NULL), name,
			    json_pack("{s:s,s:b,s:b,s:s,s:b}", "version", version, "master", master,
				      "unschedulable", 0, "boot", "boot-1", "ready", 1));
}

static void add_backend(const char *name)
{
	json_object_set_new(wget("backends", NULL), name,
			    json_pack("{s:s,s:s,s:s}", "state", "enabled", "health", "up",
				      "address", "127.0.0.1:6443"));
}

static void add_member(const char *name, int id)
{
	json_array_append_new(wget("etcd", NULL), json_pack("{s:s,s:i}", "name", name, "id", id));
}

/* ---- the apiserver --------------------------------------------------------------------- */

static json_t *node_json(const char *name, json_t *n)
{
	json_t *labels = json_object();
	if (json_is_true(json_object_get(n, "master")))
		json_object_set_new(labels, "node-role.kubernetes.io/control-plane",
				    json_string(""));
	return json_pack("{s:{s:s,s:o},s:{s:b},s:{s:{s:s,s:s},s:[{s:s,s:s}]}}", "metadata", "name",
			 name, "labels", labels, "spec", "unschedulable",
			 json_is_true(json_object_get(n, "unschedulable")), "status", "nodeInfo",
			 "kubeletVersion", json_string_value(json_object_get(n, "version")),
			 "bootID", json_string_value(json_object_get(n, "boot")), "conditions",
			 "type", "Ready", "status",
			 json_is_true(json_object_get(n, "ready")) ? "True" : "False");
}

static json_t *pod_json(json_t *p)
{
	return json_pack("{s:{s:s,s:s,s:s,s:[{s:s,s:s,s:b}]},s:{s:s},s:{s:s,s:[{s:s,s:s}]}}",
			 "metadata", "namespace", "default", "name",
			 json_string_value(json_object_get(p, "name")), "uid",
			 json_string_value(json_object_get(p, "name")), "ownerReferences", "kind",
			 "ReplicaSet", "name", "app", "controller", 1, "spec", "nodeName",
			 json_string_value(json_object_get(p, "node")), "status", "phase",
			 "Running", "conditions", "type", "Ready", "status", "True");
}

static json_t *status(const char *msg)
{
	return json_pack("{s:s,s:s,s:s}", "kind", "Status", "message", msg, "reason", "NotFound");
}

static int kube_answer(const char *method, const char *path, json_t *body, json_t **out)
{
	char name[64];
	json_t *n, *p;
	size_t i;

	if (!strcmp(path, "/version")) {
		*out = json_pack("{s:s}", "gitVersion", OLD);
		return 200;
	}
	if (!strcmp(path, "/api/v1")) {
		*out = json_pack("{s:[{s:s,s:s,s:s,s:s}]}", "resources", "name", "pods/eviction",
				 "kind", "Eviction", "group", "policy", "version", "v1");
		return 200;
	}
	if (!strncmp(path, "/api/v1/nodes?", 14)) {
		const char *k;
		json_t *items = json_array();
		json_object_foreach(wget("nodes", NULL), k, n)
		    json_array_append_new(items, node_json(k, n));
		*out = json_pack("{s:o,s:{}}", "items", items, "metadata");
		return 200;
	}
	if (sscanf(path, "/api/v1/nodes/%63[^/?]", name) == 1) {
		if (!(n = wget("nodes", name))) {
			*out = status("node not found");
			return 404;
		}
		if (!strcmp(method, "DELETE")) {
			json_object_del(wget("nodes", NULL), name);
			return 200;
		}
		if (!strcmp(method, "PATCH"))
			json_object_set(n, "unschedulable",
					json_is_true(json_object_get(json_object_get(body, "spec"),
								     "unschedulable"))
					    ? json_true()
					    : json_false());
		*out = node_json(name, n);
		return 200;
	}
	if (!strncmp(path, "/api/v1/pods?", 13)) {
		json_t *items = json_array();
		const char *sel = strstr(path, "spec.nodeName%3D");
		snprintf(name, sizeof(name), "%s", sel ? sel + 16 : "");
		name[strcspn(name, "&")] = '\0';
		json_array_foreach(wget("pods", NULL), i, p)
		{
			if (!strcmp(json_string_value(json_object_get(p, "node")), name))
				json_array_append_new(items, pod_json(p));
		}
		*out = json_pack("{s:o,s:{}}", "items", items, "metadata");
		return 200;
	}
	if (sscanf(path, "/api/v1/namespaces/default/pods/%63[^/?]", name) == 1) {
		json_array_foreach(wget("pods", NULL), i, p)
		{
			if (strcmp(json_string_value(json_object_get(p, "name")), name))
				continue;
			if (strstr(path, "/eviction") || !strcmp(method, "DELETE")) {
				json_array_remove(wget("pods", NULL), i);
				*out = json_pack("{s:s}", "kind", "Status");
				return 201;
			}
			*out = pod_json(p);
			return 200;
		}
		*out = status("pod not found");
		return 404;
	}
	return -1;
}

static int fake_kube(void *arg, const char *method, const char *path, json_t *body, json_t **out,
		     char **err)
{
	pthread_mutex_lock(&mu);
	point();
	int st = kube_answer(method, path, body, out);
	if (st < 0) {
		orch_sv_add(&unexpected, "kube %s %s", method, path);
		*out = status("no such route in the fake");
		st = 404;
	}
	point();
	pthread_mutex_unlock(&mu);
	return st;
}

/* ---- lbd: pools and the gate ----------------------------------------------------------- */

static json_t *leases_json(void)
{
	json_t *a = json_array(), *h;
	const char *k;
	json_object_foreach(wget("leases", NULL), k, h) json_array_append_new(
	    a, json_pack("{s:s,s:O,s:s}", "node", k, "holder", h, "reason", "lbctl"));
	return a;
}

static json_t *gate_status(void)
{
	json_t *masters = json_array(), *members = json_array(), *b, *m;
	const char *k;
	size_t i;
	bool master_held = false;
	json_object_foreach(wget("leases", NULL), k, b)
	{
		json_t *n = wget("nodes", k);
		master_held |= !n || json_is_true(json_object_get(n, "master"));
	}
	json_object_foreach(wget("backends", NULL), k, b) json_array_append_new(
	    masters, json_pack("{s:s,s:b,s:[]}", "node", k, "granted", !master_held, "reasons"));
	json_array_foreach(wget("etcd", NULL), i, m)
	{
		json_t *n = wget("nodes", json_string_value(json_object_get(m, "name")));
		bool up = n && json_is_true(json_object_get(n, "ready"));
		json_array_append_new(members,
				      json_pack("{s:O,s:b,s:s}", "name", json_object_get(m, "name"),
						"healthy", up, "why", up ? "" : "down"));
	}
	return json_pack("{s:{s:{s:b},s:{s:b,s:o}},s:o,s:o,s:{s:b,s:[]},s:{s:b,s:[]},s:{s:i},s:s}",
			 "inputs", "pool", "known", 1, "etcd", "known", 1, "members", members,
			 "leases", leases_json(), "master", masters, "joining_master", "granted",
			 !master_held, "reasons", "worker", "granted", 1, "reasons", "concurrency",
			 "workers", 1, "store", "file");
}

static int gate_lease(json_t *body, json_t **out)
{
	const char *node = json_string_value(json_object_get(body, "node"));
	const char *holder = json_string_value(json_object_get(body, "holder"));
	json_t *have = wget("leases", node), *h;
	const char *k;
	if (have && strcmp(json_string_value(have), holder)) {
		*out = json_pack("{s:b,s:[s]}", "granted", 0, "reasons", "held by another");
		return 409;
	}
	json_object_foreach(wget("leases", NULL), k, h) if (strcmp(k, node))
	{
		*out = json_pack("{s:b,s:[s]}", "granted", 0, "reasons", "one node at a time");
		return 409;
	}
	json_object_set_new(wget("leases", NULL), node, json_string(holder));
	*out = json_pack("{s:b}", "granted", 1);
	return 200;
}

static int lbd_answer(const char *method, const char *path, json_t *body, json_t **out)
{
	char name[64];
	json_t *b;

	if (!strcmp(path, "/v1/pools/masters") && !strcmp(method, "GET")) {
		json_t *a = json_array();
		const char *k;
		json_object_foreach(wget("backends", NULL), k, b)
		{
			/* lbd turns drain into disabled once no connection is left */
			if (!strcmp(json_string_value(json_object_get(b, "state")), "drain"))
				json_object_set_new(b, "state", json_string("disabled"));
			json_t *o = json_deep_copy(b);
			json_object_set_new(o, "name", json_string(k));
			json_object_set_new(o, "drain", json_pack("{s:i}", "connections_left", 0));
			json_array_append_new(a, o);
		}
		*out = json_pack("{s:s,s:o}", "name", "masters", "backends", a);
		return 200;
	}
	if (!strcmp(path, "/v1/pools/masters/backends") && !strcmp(method, "POST")) {
		const char *n = json_string_value(json_object_get(body, "name"));
		if (wget("backends", n)) {
			*out = json_pack("{s:s}", "error", "exists");
			return 409;
		}
		add_backend(n);
		*out = json_object();
		return 201;
	}
	if (sscanf(path, "/v1/pools/masters/backends/%63s", name) == 1) {
		if (!(b = wget("backends", name))) {
			*out = json_pack("{s:s}", "error", "no such backend");
			return 404;
		}
		if (!strcmp(method, "DELETE"))
			json_object_del(wget("backends", NULL), name);
		else
			json_object_set(b, "state", json_object_get(body, "state"));
		*out = json_object();
		return 200;
	}
	if (!strcmp(path, "/v1/gate/status")) {
		*out = gate_status();
		return 200;
	}
	if (!strcmp(path, "/v1/gate/leases") && !strcmp(method, "GET")) {
		*out = json_pack("{s:o}", "leases", leases_json());
		return 200;
	}
	if (!strcmp(path, "/v1/gate/leases") && !strcmp(method, "POST"))
		return gate_lease(body, out);
	if (sscanf(path, "/v1/gate/leases/%63s", name) == 1 && !strcmp(method, "DELETE")) {
		bool had = wget("leases", name) != NULL;
		json_object_del(wget("leases", NULL), name);
		*out = json_object();
		return had ? 200 : 404;
	}
	return -1;
}

static int fake_lbd(void *arg, const char *method, const char *path, json_t *body, long timeout_ms,
		    long *st, json_t **out, char **err)
{
	pthread_mutex_lock(&mu);
	point();
	int s = lbd_answer(method, path, body, out);
	if (s < 0) {
		orch_sv_add(&unexpected, "lbd %s %s", method, path);
		*out = json_pack("{s:s}", "error", "no such route in the fake");
		s = 404;
	}
	*st = s;
	point();
	pthread_mutex_unlock(&mu);
	return 0;
}

/* ---- etcd's gateway: every member at http://NAME.test:2379 ------------------------------- */

static json_t *etcd_answer(const char *endpoint, const char *path, const char *body, char **err)
{
	char name[64];
	json_t *m, *me = NULL, *list = json_array();
	size_t i;

	sscanf(endpoint, "http://%63[^.]", name);
	json_array_foreach(wget("etcd", NULL), i, m)
	{
		char id[24];
		const char *n = json_string_value(json_object_get(m, "name"));
		snprintf(id, sizeof(id), "%lld", json_integer_value(json_object_get(m, "id")));
		if (!strcmp(n, name))
			me = m;
		json_array_append_new(list, json_pack("{s:s,s:s,s:[s++]}", "ID", id, "name", n,
						      "clientURLs", "http://", n, ".test:2379"));
	}
	json_t *node = wget("nodes", name);
	if (!me || !node || !json_is_true(json_object_get(node, "ready"))) {
		json_decref(list);
		*err = xasprintf("%s%s: connection refused", endpoint, path);
		return NULL;
	}
	char myid[24];
	snprintf(myid, sizeof(myid), "%lld", json_integer_value(json_object_get(me, "id")));
	json_t *hdr = json_pack("{s:s,s:s}", "cluster_id", "7", "member_id", myid);
	if (!strcmp(path, "/v3/cluster/member/list"))
		return json_pack("{s:o,s:o}", "header", hdr, "members", list);
	json_decref(list);
	if (!strcmp(path, "/v3/maintenance/status"))
		return json_pack("{s:o,s:I}", "header", hdr, "leader",
				 json_integer_value(wget("leader", NULL)));
	if (!strcmp(path, "/v3/maintenance/alarm"))
		return json_pack("{s:o,s:[]}", "header", hdr, "alarms");
	if (!strcmp(path, "/health")) {
		json_decref(hdr);
		return json_pack("{s:s}", "health", "true");
	}
	if (!strcmp(path, "/v3/maintenance/transfer-leadership")) {
		json_t *req = json_loads(body, 0, NULL);
		const char *id = json_string_value(json_object_get(req, "targetID"));
		json_object_set_new(world, "leader", json_integer(id ? atoll(id) : 0));
		json_decref(req);
		return json_pack("{s:o}", "header", hdr);
	}
	if (!strcmp(path, "/v3/cluster/member/remove")) {
		json_t *req = json_loads(body, 0, NULL);
		const char *id = json_string_value(json_object_get(req, "ID"));
		json_array_foreach(wget("etcd", NULL), i, m)
		{
			if (id && json_integer_value(json_object_get(m, "id")) == atoll(id)) {
				json_array_remove(wget("etcd", NULL), i);
				break;
			}
		}
		json_decref(req);
		return json_pack("{s:o,s:[]}", "header", hdr, "members");
	}
	json_decref(hdr);
	orch_sv_add(&unexpected, "etcd %s", path);
	*err = xasprintf("%s: no such route in the fake", path);
	return NULL;
}

static json_t *fake_etcd(void *arg, const char *endpoint, const char *path, const char *body,
			 char **err)
{
	pthread_mutex_lock(&mu);
	point();
	json_t *out = etcd_answer(endpoint, path, body, err);
	point();
	pthread_mutex_unlock(&mu);
	return out;
}

/* ---- node commands: "upgrade NODE", "join NODE", "remove NODE" ---------------------------- */

/* What the command does to the world, once it has run. */
static void command_effect(const char *cmd)
{
	char verb[16], node[64];
	if (sscanf(cmd, "%15s %63s", verb, node) != 2)
		return;
	json_t *n = wget("nodes", node);
	if (!strcmp(verb, "upgrade") && n) {
		json_object_set_new(n, "version", json_string(TARGET));
	} else if (!strcmp(verb, "join")) {
		bool master = !strncmp(node, "m", 1);
		add_node(node, master, TARGET);
		if (master)
			add_member(node, 100 + (int)json_array_size(wget("etcd", NULL)));
	} else if (!strcmp(verb, "remove") && n) {
		json_object_set_new(n, "ready", json_false());
	}
}

static int job_end(const struct exec_job *job, struct exec_result *r)
{
	json_t *j = wget("jobs", job->marker);
	memset(r, 0, sizeof(*r));
	if (json_is_true(json_object_get(j, "running"))) {
		command_effect(job->cmd);
		json_object_set_new(j, "running", json_false());
	}
	return 0;
}

static int fake_job_run(struct exec_job *job, int64_t timeout_ms, exec_started_fn started,
			exec_line_fn on_line, exec_tick_fn tick, void *arg, struct exec_result *r)
{
	pthread_mutex_lock(&mu);
	point();
	job->pid = 4242;
	job->start = 1;
	pthread_mutex_unlock(&mu);
	if (started(arg, job) < 0) { /* journaled first, or never started */
		memset(r, 0, sizeof(*r));
		r->status = 1;
		return -1;
	}
	pthread_mutex_lock(&mu);
	char node[64] = "";
	sscanf(job->cmd, "%*s %63s", node);
	json_t *runs = wget("runs", NULL);
	json_object_set_new(runs, node,
			    json_integer(json_integer_value(json_object_get(runs, node)) + 1));
	json_object_set_new(wget("jobs", NULL), job->marker,
			    json_pack("{s:s,s:b}", "cmd", job->cmd, "running", 1));
	point();
	int rc = job_end(job, r);
	point();
	pthread_mutex_unlock(&mu);
	return rc;
}

static int fake_job_follow(const struct exec_job *job, int64_t timeout_ms, exec_line_fn on_line,
			   exec_tick_fn tick, void *arg, struct exec_result *r)
{
	pthread_mutex_lock(&mu);
	point();
	int rc = job_end(job, r);
	point();
	pthread_mutex_unlock(&mu);
	return rc;
}

static enum exec_fate fake_job_fate(const struct exec_job *job, struct exec_result *r)
{
	pthread_mutex_lock(&mu);
	json_t *j = wget("jobs", job->marker);
	enum exec_fate f = !j						 ? EXEC_NOT_STARTED
			   : json_is_true(json_object_get(j, "running")) ? EXEC_RUNNING
									 : EXEC_ENDED;
	memset(r, 0, sizeof(*r));
	pthread_mutex_unlock(&mu);
	return f;
}

static const struct orch_exec fake_exec = {fake_job_run, fake_job_follow, fake_job_fate};

/* ---- runs ------------------------------------------------------------------------------- */

static void quiet(void *arg, const struct orch_event *ev)
{
	if (getenv("LBD_TEST_VERBOSE"))
		fprintf(stderr, "%s %s %s\n", ev->node, ev->step ? ev->step : "-",
			ev->msg ? ev->msg : "");
}

static int run(bool resume)
{
	struct plan p;
	struct plan_errors e;
	ck_assert_msg(plan_load(plan_path, &p, &e) == 0, "plan: %s", e.n ? e.msgs[0] : "?");
	struct orch o = {.plan = &p,
			 .call = fake_lbd,
			 .on_event = quiet,
			 .stop = &stop_flag,
			 .poll_ms = 1,
			 .kube_fake = fake_kube,
			 .etcd_fake = fake_etcd,
			 .exec = &fake_exec};
	int rc = orch_run(&o, resume);
	plan_free(&p);
	return rc;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static void setup_dir(const char *plan_text)
{
	char kc[160];
	/* in memory if it can be: hundreds of runs, each journal write an fsync */
	snprintf(dir, sizeof(dir), "%s/lbd-steps-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(kc, sizeof(kc), "%s/kubeconfig", dir);
	write_file(kc, "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
		       "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
		       "users: [{name: u, user: {token: t}}]\n"
		       "contexts: [{name: c, context: {cluster: c, user: u}}]\n");
	snprintf(plan_path, sizeof(plan_path), "%s/plan.yaml", dir);
	snprintf(journal_path, sizeof(journal_path), "%s.journal", plan_path);
	char *t = xasprintf("kubeconfig: %s\n%s", kc, plan_text);
	write_file(plan_path, t);
	free(t);
}

/* Throws away the journal, its log, lock and command directory (the fake
 * commands write nothing there) of the last run. */
static void clear_run(void)
{
	static const char *const sfx[] = {"journal", "log", "lock", "cmd"};
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		char *f = journal_path_for(plan_path, sfx[i]);
		if (unlink(f) < 0 && errno == EISDIR)
			ck_assert_msg(rmdir(f) == 0, "%s: %s", f, strerror(errno));
		free(f);
	}
}

static void cleanup_dir(void)
{
	char *f = xasprintf("%s/kubeconfig", dir);
	clear_run();
	unlink(plan_path);
	unlink(f);
	free(f);
	ck_assert_msg(rmdir(dir) == 0, "%s: %s", dir, strerror(errno));
}

typedef void (*world_fn)(void);
typedef void (*judge_fn)(const char *when);

/* The end every run must reach: the journal done, no unknown call. */
static void judge_common(const char *when)
{
	char *j = slurp(journal_path);
	ck_assert_msg(j && strstr(j, "\"status\": \"done\""), "%s: journal not done:\n%s", when,
		      j ? j : "(none)");
	free(j);
	ck_assert_msg(unexpected.n == 0, "%s: a call no fake knows: %s", when,
		      unexpected.n ? unexpected.v[0] : "");
	ck_assert_msg(json_object_size(wget("leases", NULL)) == 0, "%s: a lease is still held",
		      when);
}

static void runs_once(const char *when, const char *const *nodes)
{
	for (const char *const *n = nodes; *n; n++)
		ck_assert_msg(json_integer_value(wget("runs", *n)) == 1,
			      "%s: %s's command started %lld times", when, *n,
			      json_integer_value(wget("runs", *n)));
}

/*
 * The whole run, then a run stopped at each of its points and resumed. The
 * count of points of an undisturbed run is the same for every run (one
 * thread works at a time; the lease keeper's first renewal is an hour
 * away), so point k is the same moment each time.
 */
static void every_point(world_fn make_world, judge_fn judge)
{
	char when[64];

	make_world();
	stop_at = -1;
	points = 0;
	ck_assert_int_eq(run(false), ORCH_OK);
	judge("undisturbed");
	int total = points;
	ck_assert_int_gt(total, 20);
	json_decref(world);
	clear_run();

	/* LBD_STEPS_POINT=k: only that point (with LBD_TEST_VERBOSE=1, to see it) */
	int only = getenv("LBD_STEPS_POINT") ? atoi(getenv("LBD_STEPS_POINT")) : 0;
	for (int k = only ? only : 1; k <= (only ? only : total); k++) {
		make_world();
		points = 0;
		stop_at = k;
		stop_flag = 0;
		run(false);
		ck_assert_msg(snap_world, "point %d of %d never came", k, total);
		/* kill -9 at point k: the world and the journal of that instant */
		json_decref(world);
		world = snap_world, snap_world = NULL;
		clear_run();
		if (snap_journal)
			write_file(journal_path, snap_journal);
		bool resume = snap_journal != NULL;
		xfree(&snap_journal);
		stop_at = -1;
		stop_flag = 0;
		snprintf(when, sizeof(when), "stopped at point %d of %d, %s", k, total,
			 resume ? "resumed" : "run afresh");
		int rc = run(resume);
		ck_assert_msg(rc == ORCH_OK, "%s: exit %d", when, rc);
		judge(when);
		json_decref(world);
		clear_run();
	}
}

/* ---- an upgrade: two masters and a worker with a pod -------------------------------------- */

static const char upgrade_plan[] =
    "kind: upgrade\nversion: " TARGET "\n"
    "lbd: {socket: /nonexistent/admin.sock}\npool: masters\n"
    "upgrade_command: upgrade {node}\n"
    "soak: 0s\nlease_ttl: 1h\n"
    "timeouts: {node_ready: 5s, backend_drain: 5s, command: 5s, gate: 5s}\n"
    "drain: {ignore_daemonsets: true}\n"
    "nodes:\n"
    "  - {name: m1, role: master}\n"
    "  - {name: m2, role: master}\n"
    "  - {name: w1, role: worker}\n";

static void upgrade_world(void)
{
	world = json_pack("{s:{},s:[],s:{},s:{},s:[],s:{},s:{},s:i}", "nodes", "pods", "backends",
			  "leases", "etcd", "jobs", "runs", "leader", 1);
	add_node("m1", true, OLD);
	add_node("m2", true, OLD);
	add_node("w1", false, OLD);
	add_backend("m1");
	add_backend("m2");
	add_member("m1", 1);
	add_member("m2", 2);
	json_array_append_new(wget("pods", NULL),
			      json_pack("{s:s,s:s}", "name", "app-1", "node", "w1"));
}

static void judge_upgrade(const char *when)
{
	static const char *const nodes[] = {"m1", "m2", "w1", NULL};
	const char *k;
	json_t *v;
	judge_common(when);
	runs_once(when, nodes);
	json_object_foreach(wget("nodes", NULL), k, v)
	{
		ck_assert_msg(!strcmp(json_string_value(json_object_get(v, "version")), TARGET),
			      "%s: %s not upgraded", when, k);
		ck_assert_msg(!json_is_true(json_object_get(v, "unschedulable")),
			      "%s: %s left cordoned", when, k);
	}
	json_object_foreach(wget("backends", NULL), k, v) ck_assert_msg(
	    !strcmp(json_string_value(json_object_get(v, "state")), "enabled"),
	    "%s: backend %s left %s", when, k, json_string_value(json_object_get(v, "state")));
}

START_TEST(test_upgrade_every_point)
{
	setup_dir(upgrade_plan);
	every_point(upgrade_world, judge_upgrade);
	cleanup_dir();
}
END_TEST

/* ---- a migration: master m1 replaced by m3 ------------------------------------------------ */

static const char migrate_plan[] =
    "kind: migration\n"
    "lbd: {socket: /nonexistent/admin.sock}\npool: masters\n"
    "join_command: join {node}\nremove_command: remove {node}\n"
    "lease_ttl: 1h\n"
    "timeouts: {node_ready: 5s, backend_drain: 5s, command: 5s, gate: 5s}\n"
    "etcd: {endpoints: ['http://m1.test:2379', 'http://m2.test:2379']}\n"
    "nodes:\n"
    "  - {name: m1, role: master}\n"
    "  - {name: m2, role: master}\n"
    "  - {name: m3, role: master, address: '127.0.0.1:6443'}\n"
    "replace: [{old: m1, new: m3}]\n";

static void migrate_world(void)
{
	upgrade_world();
	json_array_clear(wget("pods", NULL));
}

static void judge_migrate(const char *when)
{
	static const char *const nodes[] = {"m1", "m3", NULL};
	judge_common(when);
	runs_once(when, nodes);
	ck_assert_msg(!wget("nodes", "m1"), "%s: m1 not deleted", when);
	ck_assert_msg(wget("nodes", "m3"), "%s: m3 not joined", when);
	ck_assert_msg(!wget("backends", "m1") && wget("backends", "m3"), "%s: backends wrong",
		      when);
	ck_assert_int_eq(json_array_size(wget("etcd", NULL)), 2);
}

START_TEST(test_migrate_every_point)
{
	setup_dir(migrate_plan);
	every_point(migrate_world, judge_migrate);
	cleanup_dir();
}
END_TEST

/* ---- the table's guards ----------------------------------------------------------------- */

/* The state of node's step in a journal's text ("" if none). */
static const char *step_state(const char *journal, const char *node, const char *step)
{
	static char st[16];
	json_t *j = journal ? json_loads(journal, 0, NULL) : NULL, *s;
	size_t i;
	st[0] = '\0';
	json_array_foreach(json_object_get(j, "steps"), i, s)
	{
		if (!strcmp(json_string_value(json_object_get(s, "node")), node) &&
		    !strcmp(json_string_value(json_object_get(s, "step")), step))
			snprintf(st, sizeof(st), "%s",
				 json_string_value(json_object_get(s, "state")));
	}
	json_decref(j);
	return st;
}

/* A resume an hour later finds the lease gone (an admin released it): the
 * next step that takes something down refuses, changes nothing, and says so. */
START_TEST(test_precondition_lease_gone)
{
	setup_dir(upgrade_plan);
	/* stopped at the first moment m1's lease step is done in the journal */
	for (int k = 1;; k++) {
		upgrade_world();
		points = 0;
		stop_at = k;
		stop_flag = 0;
		run(false);
		json_decref(world);
		clear_run();
		ck_assert_msg(snap_world, "m1's lease was never journaled done");
		if (!strcmp(step_state(snap_journal, "m1", "lease"), "done"))
			break;
		json_decref(snap_world);
		snap_world = NULL;
		xfree(&snap_journal);
	}
	world = snap_world, snap_world = NULL;
	write_file(journal_path, snap_journal);
	xfree(&snap_journal);
	json_object_clear(wget("leases", NULL)); /* the admin's release */
	stop_at = -1;
	stop_flag = 0;
	int rc = run(true);
	char *j = slurp(journal_path);
	ck_assert_int_eq(rc, ORCH_FAILED);
	ck_assert_str_eq(step_state(j, "m1", "backend-drain"), "failed");
	ck_assert_msg(strstr(j, "no longer holds its gate lease") &&
			  strstr(j, "Nothing was done in step backend-drain"),
		      "%s", j);
	ck_assert_str_eq(json_string_value(json_object_get(wget("backends", "m1"), "state")),
			 "enabled");
	ck_assert(!json_is_true(json_object_get(wget("nodes", "m1"), "unschedulable")));
	free(j);
	json_decref(world);
	cleanup_dir();
}
END_TEST

/* Stops a fresh run at the first point where node's step is journaled in
 * state; the world and journal of that moment become the current ones. */
static void stop_when(world_fn make_world, const char *node, const char *step, const char *state)
{
	for (int k = 1;; k++) {
		make_world();
		points = 0;
		stop_at = k;
		stop_flag = 0;
		run(false);
		json_decref(world);
		clear_run();
		ck_assert_msg(snap_world, "%s's %s was never journaled %s", node, step, state);
		if (!strcmp(step_state(snap_journal, node, step), state))
			break;
		json_decref(snap_world);
		snap_world = NULL;
		xfree(&snap_journal);
	}
	world = snap_world, snap_world = NULL;
	write_file(journal_path, snap_journal);
	xfree(&snap_journal);
	stop_at = -1;
	stop_flag = 0;
}

/* A migration stopped while the old master leaves, whose Node then goes
 * away by other hands (the cloud, once remove_command took the machine,
 * or kubectl delete node): the resume takes it as gone and finishes. It
 * refused before: "node m1 is not in the cluster". Gone before its drain
 * too: nothing to drain. */
START_TEST(test_old_node_gone_on_resume)
{
	static const char *const after[] = {"backend-drain", "drain"};
	setup_dir(migrate_plan);
	for (size_t i = 0; i < 2; i++) {
		stop_when(migrate_world, "m1", after[i], "running");
		json_object_del(wget("nodes", NULL), "m1");
		int rc = run(true);
		char *j = slurp(journal_path);
		ck_assert_msg(rc == ORCH_OK, "after %s: exit %d: %.3000s", after[i], rc,
			      strstr(j, "\"message\"") ? strstr(j, "\"message\"") : j);
		free(j);
		judge_common(after[i]);
		ck_assert(!wget("nodes", "m1") && wget("nodes", "m3"));
		json_decref(world);
		clear_run();
	}
	cleanup_dir();
}
END_TEST

/* Every step of every kind of node is in the table, in an order every kind shares. */
START_TEST(test_table_orders)
{
	struct plan p;
	struct plan_errors e;
	const char *names[ORCH_MAX_STEPS];
	char *t = xasprintf("kubeconfig: /nonexistent\n%s", upgrade_plan);
	ck_assert_int_eq(plan_load_string(t, strlen(t), "u.yaml", &p, &e), 0);
	free(t);
	size_t n = orch_steps_for(&p, plan_node_find(&p, "m1"), names);
	const char *m[] = {"lease", "backend-drain",  "drain",	  "command",
			   "wait",  "backend-enable", "uncordon", "release"};
	ck_assert_uint_eq(n, 8);
	for (size_t i = 0; i < n; i++)
		ck_assert_str_eq(names[i], m[i]);
	n = orch_steps_for(&p, plan_node_find(&p, "w1"), names);
	ck_assert_uint_eq(n, 6);
	ck_assert_str_eq(names[1], "drain");
	plan_free(&p);

	t = xasprintf("kubeconfig: /nonexistent\n%s", migrate_plan);
	ck_assert_int_eq(plan_load_string(t, strlen(t), "m.yaml", &p, &e), 0);
	free(t);
	const char *joining[] = {"lease", "join", "joined", "backend-add", "backend-up", "release"};
	n = orch_steps_for(&p, plan_node_find(&p, "m3"), names);
	ck_assert_uint_eq(n, 6);
	for (size_t i = 0; i < n; i++)
		ck_assert_str_eq(names[i], joining[i]);
	const char *leaving[] = {"lease",	   "backend-drain",  "drain",
				 "etcd-remove",	   "remove-command", "node-delete",
				 "backend-remove", "gate-members",   "release"};
	n = orch_steps_for(&p, plan_node_find(&p, "m1"), names);
	ck_assert_uint_eq(n, 9);
	for (size_t i = 0; i < n; i++)
		ck_assert_str_eq(names[i], leaving[i]);
	plan_free(&p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("steps");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_table_orders);
	tcase_add_test(tc, test_precondition_lease_gone);
	tcase_add_test(tc, test_old_node_gone_on_resume);
	tcase_add_test(tc, test_upgrade_every_point);
	tcase_add_test(tc, test_migrate_every_point);
	tcase_set_timeout(tc, 240);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
