/*
 * orchestrator.c - see orchestrator.h.
 *
 * Layout: helpers that talk to lbd (admin + gate), Kubernetes and etcd;
 * the preflight; the step table (what each step is, in which order, and
 * how it is described in a dry run); one function per step; the node
 * runner (journal before and after each step); the run itself (masters in
 * this thread, workers from a small pool of threads); dry run and status.
 *
 * Every wait polls with a bound from the plan and reports what it waits for
 * (ORCH_EV_WAIT), so the live view always says why nothing moves.
 */
#define _GNU_SOURCE
#include "upgrade/orchestrator.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/xmalloc.h"
#include "gate/http.h"
#include "upgrade/drain.h"
#include "upgrade/exec.h"
#include "upgrade/kube.h"
#include "upgrade/kubeconfig.h"

#define CALL_TIMEOUT_MS 15000
#define GATE_RETRY_MS 2000

struct orch_priv {
	struct kubeconfig kc;
	char *kc_err;
	bool kc_ok;
	struct journal j;
	bool have_j;
	int64_t run_start;
	char date[32];
	pthread_mutex_t ev_mu;

	/* the lease keeper */
	pthread_t keeper;
	bool keeper_on;
	pthread_mutex_t kmu;
	pthread_cond_t kcv;
	bool kstop;
	char *held[64];
	enum plan_role held_role[64];

	/* the first failure stops the run */
	pthread_mutex_t fmu;
	int rc;
	char *fail_msg;
	size_t next_worker;
};

/* A node being worked on, by one thread. */
struct nctx {
	struct orch *o;
	struct kube *k;
	const struct plan_node *n;
	const char *step;
	int64_t step_start;
	bool resumed; /* this step was interrupted before */
	char *note;   /* what the step did, for the journal */
};

/* ---- small helpers -------------------------------------------------------------------- */

static void emit(struct orch *o, enum orch_ev type, const char *node, const char *step,
		 int64_t step_start, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void emit(struct orch *o, enum orch_ev type, const char *node, const char *step,
		 int64_t step_start, const char *fmt, ...)
{
	char *m = NULL;
	va_list ap;
	int64_t now = mono_ms();

	if (fmt) {
		va_start(ap, fmt);
		if (vasprintf(&m, fmt, ap) < 0)
			abort();
		va_end(ap);
	}
	struct orch_event ev = {type,
				node ? node : "-",
				step ? step : "-",
				m ? m : "",
				step_start ? now - step_start : 0,
				now - o->p->run_start};
	pthread_mutex_lock(&o->p->ev_mu);
	if (o->on_event)
		o->on_event(o->ev_arg, &ev);
	pthread_mutex_unlock(&o->p->ev_mu);
	free(m);
}

static bool stopping(struct orch *o)
{
	bool failed;
	pthread_mutex_lock(&o->p->fmu);
	failed = o->p->rc != ORCH_OK;
	pthread_mutex_unlock(&o->p->fmu);
	return failed || (o->stop && *o->stop);
}

static void fail_run(struct orch *o, int rc, const char *msg)
{
	pthread_mutex_lock(&o->p->fmu);
	if (o->p->rc == ORCH_OK) {
		o->p->rc = rc;
		o->p->fail_msg = xstrdup(msg);
	}
	pthread_mutex_unlock(&o->p->fmu);
}

static const char *dur(int64_t ms, char *buf, size_t len)
{
	return duration_format(ms, buf, len);
}

static void sleep_ms(int64_t ms)
{
	usleep((useconds_t)(ms * 1000));
}

struct sbuf {
	char *s;
	size_t n;
};

__attribute__((format(printf, 2, 3))) static void sb_add(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	char *m;
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		abort();
	va_end(ap);
	size_t l = strlen(m);
	b->s = xrealloc(b->s, b->n + l + 1);
	memcpy(b->s + b->n, m, l + 1);
	b->n += l;
	free(m);
}

struct strv {
	char **v;
	size_t n;
};

__attribute__((format(printf, 2, 3))) static void sv_add(struct strv *s, const char *fmt, ...)
{
	va_list ap;
	char *m;
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		abort();
	va_end(ap);
	s->v = xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
	s->v[s->n++] = m;
}

static void sv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	xfree(&s->v);
	s->n = 0;
}

/* ---- versions --------------------------------------------------------------------------- */

/* <0, 0, >0 by major.minor.patch; 0 also when unparsable (caller checks). */
static int vcmp(const char *a, const char *b)
{
	int a1, a2, a3, b1, b2, b3;
	if (plan_version_parse(a, &a1, &a2, &a3) < 0 || plan_version_parse(b, &b1, &b2, &b3) < 0)
		return 0;
	if (a1 != b1)
		return a1 - b1;
	if (a2 != b2)
		return a2 - b2;
	return a3 - b3;
}

/* Whether kubelet version v is the target: the same string, or the same
 * numbers when the target has no build suffix. */
static bool at_target(const char *v, const char *target)
{
	if (!v || !target)
		return false;
	if (!strcmp(v, target))
		return true;
	return !strpbrk(target, "+-") && vcmp(v, target) == 0 &&
	       plan_version_parse(v, &(int){0}, &(int){0}, &(int){0}) == 0;
}

/* ---- lbd: admin and gate ---------------------------------------------------------------- */

static int lbd(struct orch *o, const char *method, const char *path, json_t *body, long *status,
	       json_t **out, char **err)
{
	*out = NULL;
	*err = NULL;
	return o->call(o->call_arg, method, path, body, CALL_TIMEOUT_MS, status, out, err);
}

static const char *jerr(json_t *j)
{
	const char *e = json_string_value(json_object_get(j, "error"));
	return e ? e : "(no error text)";
}

static char *pool_path(struct orch *o, const char *backend)
{
	return backend ? xasprintf("/v1/pools/%s/backends/%s", o->plan->pool, backend)
		       : xasprintf("/v1/pools/%s", o->plan->pool);
}

/* The backend's JSON (caller decrefs) from GET /v1/pools/POOL; NULL with *err. */
static json_t *get_backend(struct orch *o, const char *name, json_t **pool_out, char **err)
{
	char *path = pool_path(o, NULL);
	long st = 0;
	json_t *pool = NULL, *b, *found = NULL;
	size_t i;

	if (lbd(o, "GET", path, NULL, &st, &pool, err) < 0) {
		free(path);
		return NULL;
	}
	free(path);
	if (st != 200 || !pool) {
		*err = xasprintf("lbd: pool %s: %ld %s", o->plan->pool, st, jerr(pool));
		json_decref(pool);
		return NULL;
	}
	json_array_foreach(json_object_get(pool, "backends"), i,
			   b) if (!strcmp(json_string_value(json_object_get(b, "name")) ?: "",
					  name)) found = json_incref(b);
	if (!found)
		*err = xasprintf("lbd: pool %s has no backend %s", o->plan->pool, name);
	if (pool_out)
		*pool_out = pool;
	else
		json_decref(pool);
	return found;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

/* Asks for (or renews) a lease. 1 granted, 0 refused (*why: the reasons), -1 error. */
static int gate_acquire(struct orch *o, const char *node, enum plan_role role, char **why)
{
	char ttl[32], *err = NULL;
	long st = 0;
	json_t *out = NULL, *r;
	size_t i;
	json_t *body =
	    json_pack("{s:s,s:s,s:s,s:s}", "node", node, "role", plan_role_name(role), "reason",
		      o->plan->kind == PLAN_UPGRADE ? "lbctl upgrade" : "lbctl migrate", "ttl",
		      dur(o->plan->lease_ttl_ms, ttl, sizeof(ttl)));
	int rc = lbd(o, "POST", "/v1/gate/leases", body, &st, &out, &err);
	json_decref(body);
	if (rc < 0) {
		*why = err;
		return -1;
	}
	if ((st == 200 || st == 201) && json_is_true(json_object_get(out, "granted"))) {
		json_decref(out);
		return 1;
	}
	if (st == 409 && json_object_get(out, "reasons")) {
		struct sbuf b = {0};
		json_array_foreach(json_object_get(out, "reasons"), i, r)
		    sb_add(&b, "%s%s", i ? "; " : "", json_string_value(r));
		*why = b.s ? b.s : xstrdup("refused");
		json_decref(out);
		return 0;
	}
	*why = xasprintf("gate: %ld %s", st, jerr(out));
	json_decref(out);
	return -1;
}

/* 0 released or not held; -1 with *err. */
static int gate_release(struct orch *o, const char *node, bool *was_held, char **err)
{
	char *path = xasprintf("/v1/gate/leases/%s", node);
	long st = 0;
	json_t *out = NULL;
	int rc = lbd(o, "DELETE", path, NULL, &st, &out, err);
	free(path);
	if (rc == 0 && st != 200 && st != 404) {
		*err = xasprintf("gate: %ld %s", st, jerr(out));
		rc = -1;
	}
	*was_held = st == 200;
	json_decref(out);
	return rc;
}

static json_t *gate_status(struct orch *o, char **err)
{
	long st = 0;
	json_t *out = NULL;
	if (lbd(o, "GET", "/v1/gate/status", NULL, &st, &out, err) < 0)
		return NULL;
	if (st != 200 || !out) {
		*err = st == 404 ? xstrdup("lbd has no gate (no gate: section in its config)")
				 : xasprintf("gate status: %ld %s", st, jerr(out));
		json_decref(out);
		return NULL;
	}
	return out;
}

static bool gate_holds(struct orch *o, const char *node)
{
	long st = 0;
	json_t *out = NULL, *l;
	char *err = NULL;
	size_t i;
	bool held = false;
	if (lbd(o, "GET", "/v1/gate/leases", NULL, &st, &out, &err) < 0) {
		free(err);
		return true; /* unknown: keep renewing */
	}
	json_array_foreach(json_object_get(out, "leases"), i, l) if (!strcmp(jstr(l, "node"), node))
	    held = true;
	if (st != 200)
		held = true;
	json_decref(out);
	return held;
}

/* ---- the lease keeper: renews held leases at a third of their ttl ----------------------- */

static void *keeper_main(void *arg)
{
	struct orch *o = arg;
	struct orch_priv *p = o->p;
	int64_t every = o->plan->lease_ttl_ms / 3;
	if (every < 1000)
		every = 1000;

	pthread_mutex_lock(&p->kmu);
	while (!p->kstop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += every / 1000;
		ts.tv_nsec += (every % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&p->kcv, &p->kmu, &ts);
		if (p->kstop)
			break;
		for (size_t i = 0; i < sizeof(p->held) / sizeof(*p->held); i++) {
			if (!p->held[i])
				continue;
			char *node = xstrdup(p->held[i]), *why = NULL;
			enum plan_role role = p->held_role[i];
			pthread_mutex_unlock(&p->kmu);
			if (!gate_holds(o, node)) {
				emit(o, ORCH_EV_INFO, node, "lease", 0,
				     "the gate released the lease itself (the node is back)");
				pthread_mutex_lock(&p->kmu);
				if (p->held[i] && !strcmp(p->held[i], node))
					xfree(&p->held[i]);
			} else {
				int rc = gate_acquire(o, node, role, &why);
				if (rc != 1)
					emit(o, ORCH_EV_INFO, node, "lease", 0,
					     "could not renew the lease: %s", why ? why : "?");
				free(why);
				pthread_mutex_lock(&p->kmu);
			}
			free(node);
		}
	}
	pthread_mutex_unlock(&p->kmu);
	return NULL;
}

static void keep_lease(struct orch *o, const char *node, enum plan_role role, bool on)
{
	struct orch_priv *p = o->p;
	pthread_mutex_lock(&p->kmu);
	for (size_t i = 0; i < sizeof(p->held) / sizeof(*p->held); i++)
		if (p->held[i] && !strcmp(p->held[i], node))
			xfree(&p->held[i]);
	if (on)
		for (size_t i = 0; i < sizeof(p->held) / sizeof(*p->held); i++)
			if (!p->held[i]) {
				p->held[i] = xstrdup(node);
				p->held_role[i] = role;
				break;
			}
	pthread_mutex_unlock(&p->kmu);
}

/* ---- Kubernetes ------------------------------------------------------------------------ */

static struct kube *kube_for(struct orch *o)
{
	struct kube *k = kube_new(&o->p->kc);
	kube_set_timeout(k, 10000);
	return k;
}

/* A fresh connection: the old one may sit on a backend being drained. */
static void kube_reconnect(struct nctx *c)
{
	kube_free(&c->k);
	c->k = kube_for(c->o);
}

/* GET the node, retrying transport errors briefly (the VIP may be moving). 1 found,
 * 0 not found, -1 error (*err). */
static int node_get(struct kube *k, const char *name, struct kube_node *n, char **err)
{
	struct kube_err e;
	char buf[600];
	for (int i = 0; i < 3; i++) {
		memset(n, 0, sizeof(*n));
		if (kube_node_get(k, name, n, &e) == 0)
			return 1;
		if (e.status == 404)
			return 0;
		if (e.status != 0)
			break;
		sleep_ms(300);
	}
	*err = xstrdup(kube_err_str(&e, buf, sizeof(buf)));
	return -1;
}

static bool node_is_master(const struct kube_node *n)
{
	return n->roles && (strstr(n->roles, "control-plane") || strstr(n->roles, "master"));
}

/* ---- etcd (migrations): its JSON gateway ------------------------------------------------ */

static json_t *etcd_call(struct orch *o, const char *endpoint, const char *path, const char *body,
			 char **err)
{
	const struct plan *pl = o->plan;
	struct gate_http_tls tls = {pl->etcd_ca, pl->etcd_cert, pl->etcd_key};
	char *url = xasprintf("%s%s", endpoint, path);
	long st = 0;
	json_t *out = NULL;
	int rc = gate_http_json(body ? "POST" : "GET", url, body, &tls, 3000, &st, &out, err);
	free(url);
	if (rc < 0)
		return NULL;
	if (st != 200 || !out) {
		*err = xasprintf("%s%s: HTTP %ld %s", endpoint, path, st,
				 out ? jstr(out, "error") : "");
		json_decref(out);
		return NULL;
	}
	return out;
}

/* The member list from the first endpoint that answers (caller decrefs). */
static json_t *etcd_members(struct orch *o, char **err)
{
	struct sbuf why = {0};
	for (size_t i = 0; i < o->plan->netcd_endpoints; i++) {
		char *e = NULL;
		json_t *m =
		    etcd_call(o, o->plan->etcd_endpoints[i], "/v3/cluster/member/list", "{}", &e);
		if (m) {
			free(why.s);
			return m;
		}
		sb_add(&why, "%s%s", why.n ? "; " : "", e);
		free(e);
	}
	*err = why.s ? why.s : xstrdup("no etcd endpoints in the plan");
	return NULL;
}

static bool etcd_member_healthy(struct orch *o, json_t *m, char **why)
{
	const char *url = json_string_value(json_array_get(json_object_get(m, "clientURLs"), 0));
	char *err = NULL;
	if (!url) {
		*why = xstrdup("no client URL (not started yet?)");
		return false;
	}
	json_t *h = etcd_call(o, url, "/health", NULL, &err);
	if (!h) {
		*why = err;
		return false;
	}
	bool ok = !strcmp(jstr(h, "health"), "true");
	if (!ok)
		*why = xasprintf("/health says health=%s%s%s", jstr(h, "health"),
				 *jstr(h, "reason") ? ": " : "", jstr(h, "reason"));
	json_decref(h);
	return ok;
}

static json_t *etcd_find(json_t *list, const char *name)
{
	json_t *m;
	size_t i;
	json_array_foreach(json_object_get(list, "members"), i,
			   m) if (!strcmp(jstr(m, "name"), name)) return m;
	return NULL;
}

/* ---- preflight --------------------------------------------------------------------------- */

static void check_versions(struct orch *o, struct kube *k, struct kube_node_list *nl,
			   struct strv *why)
{
	const struct plan *pl = o->plan;
	int t1, t2, t3;
	char *api = NULL;
	struct kube_err e;

	if (!pl->version || plan_version_parse(pl->version, &t1, &t2, &t3) < 0)
		return;
	for (size_t i = 0; i < nl->n; i++) {
		const struct kube_node *n = &nl->v[i];
		const struct plan_node *pn = plan_node_find(pl, n->name);
		int c1, c2, c3;
		if (!n->kubelet_version ||
		    plan_version_parse(n->kubelet_version, &c1, &c2, &c3) < 0)
			continue;
		if (!pn) {
			/* Not in the plan: a control plane left behind would be older than
			 * the workers we upgrade. */
			if (node_is_master(n) && vcmp(n->kubelet_version, pl->version) < 0)
				sv_add(
				    why,
				    "version skew: control-plane node %s (%s) is not in the plan; "
				    "kubelets at %s would be newer than its apiserver",
				    n->name, n->kubelet_version, pl->version);
			continue;
		}
		if (c1 != t1)
			sv_add(why, "version skew: %s is at %s; %s changes the major version",
			       n->name, n->kubelet_version, pl->version);
		else if (t2 > c2 + 1)
			sv_add(why,
			       "version skew: %s is at %s; %s skips a minor version: upgrade to "
			       "v%d.%d first",
			       n->name, n->kubelet_version, pl->version, t1, c2 + 1);
		else if (vcmp(n->kubelet_version, pl->version) > 0)
			sv_add(why,
			       "version skew: %s is at %s, newer than %s: lbctl does not downgrade",
			       n->name, n->kubelet_version, pl->version);
	}
	if (kube_version(k, &api, &e) == 0) {
		int a1, a2, a3;
		if (plan_version_parse(api, &a1, &a2, &a3) == 0 && (a1 != t1 || t2 > a2 + 1))
			sv_add(why,
			       "version skew: the apiserver is at %s; %s skips a minor version",
			       api, pl->version);
		free(api);
	}
}

static void check_gate(struct orch *o, struct strv *why, struct strv *ok, bool fresh)
{
	char *err = NULL;
	json_t *st = gate_status(o, &err), *v, *l;
	const char *k;
	size_t i;
	if (!st) {
		sv_add(why, "gate: %s", err);
		free(err);
		return;
	}
	int unknown = 0;
	json_object_foreach(json_object_get(st, "inputs"), k,
			    v) if (!json_is_true(json_object_get(v, "known")))
	{
		sv_add(why, "gate: input %s unknown: %s", k, jstr(v, "why"));
		unknown++;
	}
	json_array_foreach(json_object_get(st, "leases"), i, l)
	{
		if (json_is_true(json_object_get(l, "stale")))
			sv_add(
			    why,
			    "gate: %s holds a STALE lease (its holder stopped renewing); free it "
			    "with `lbctl gate release --node %s` once the node is fine",
			    jstr(l, "node"), jstr(l, "node"));
		else if (fresh)
			sv_add(why, "gate: %s holds a lease (%s): finish that first",
			       jstr(l, "node"), jstr(l, "reason"));
	}
	if (!unknown)
		sv_add(ok, "gate reachable, every input known (store %s)", jstr(st, "store"));
	json_decref(st);
}

static void check_pool(struct orch *o, struct strv *why, struct strv *ok, bool fresh)
{
	const struct plan *pl = o->plan;
	int checked = 0;
	char *perr = NULL, *path = pool_path(o, NULL);
	long pst = 0;
	json_t *pj = NULL;
	int prc = lbd(o, "GET", path, NULL, &pst, &pj, &perr);
	free(path);
	if (prc < 0 || pst != 200) {
		sv_add(why, "lbd: %s", prc < 0 ? perr : jerr(pj));
		free(perr);
		json_decref(pj);
		return;
	}
	json_decref(pj);
	if (!fresh) {
		/* A resumed run finds its own node's backend drained: fine. */
		sv_add(ok, "lbd pool %s reachable", pl->pool);
		return;
	}
	for (size_t i = 0; i < pl->nnodes; i++) {
		const struct plan_node *n = &pl->nodes[i];
		char *err = NULL;
		bool is_new = false;
		if (n->role != PLAN_MASTER)
			continue;
		for (size_t r = 0; r < pl->nreplace; r++)
			is_new |= !strcmp(pl->replace[r].new_node, n->name);
		for (size_t a = 0; a < pl->nadd; a++)
			is_new |= !strcmp(pl->add[a], n->name);
		json_t *b = get_backend(o, n->backend, NULL, &err);
		if (is_new) {
			if (b && strcmp(jstr(b, "address"), n->address))
				sv_add(why,
				       "lbd: backend %s exists with address %s, the plan says %s",
				       n->backend, jstr(b, "address"), n->address);
			free(err);
			json_decref(b);
			continue;
		}
		if (!b) {
			sv_add(why, "%s", err);
			free(err);
			continue;
		}
		if (strcmp(jstr(b, "state"), "enabled"))
			sv_add(why, "lbd: backend %s/%s is %s, not enabled", pl->pool, n->backend,
			       jstr(b, "state"));
		else if (strcmp(jstr(b, "health"), "up"))
			sv_add(why, "lbd: backend %s/%s is %s: %s", pl->pool, n->backend,
			       jstr(b, "health"), jstr(json_object_get(b, "check"), "detail"));
		else
			checked++;
		json_decref(b);
	}
	if (checked)
		sv_add(ok, "lbd pool %s: %d master backend(s) enabled and up", pl->pool, checked);
}

static void check_etcd(struct orch *o, struct strv *why, struct strv *ok)
{
	char *err = NULL;
	json_t *list = etcd_members(o, &err), *m;
	size_t i, n = 0;
	if (!list) {
		sv_add(why, "etcd: %s", err);
		free(err);
		return;
	}
	json_array_foreach(json_object_get(list, "members"), i, m)
	{
		char *w = NULL;
		if (!etcd_member_healthy(o, m, &w))
			sv_add(why, "etcd: member %s unhealthy: %s", jstr(m, "name"), w);
		else
			n++;
		free(w);
	}
	sv_add(ok, "etcd: %zu of %zu members healthy", n,
	       json_array_size(json_object_get(list, "members")));
	json_decref(list);
}

static bool is_new_node(const struct plan *pl, const char *name)
{
	for (size_t r = 0; r < pl->nreplace; r++)
		if (!strcmp(pl->replace[r].new_node, name))
			return true;
	for (size_t a = 0; a < pl->nadd; a++)
		if (!strcmp(pl->add[a], name))
			return true;
	return false;
}

/* Every reason not to start in why; what is fine in ok. fresh: not a resume. */
static void preflight(struct orch *o, struct kube *k, bool fresh, struct strv *why, struct strv *ok)
{
	const struct plan *pl = o->plan;
	struct kube_node_list nl = {0};
	struct kube_err e;
	char buf[600];

	if (!o->p->kc_ok) {
		sv_add(why, "kubeconfig: %s", o->p->kc_err);
	} else if (kube_node_list(k, &nl, &e) < 0) {
		sv_add(why, "kubernetes: cannot list nodes: %s",
		       kube_err_str(&e, buf, sizeof(buf)));
	} else {
		int bad = 0;
		for (size_t i = 0; i < pl->nnodes; i++) {
			bool found = false;
			for (size_t j = 0; j < nl.n; j++)
				found |= !strcmp(nl.v[j].name, pl->nodes[i].name);
			if (!found &&
			    !(pl->kind == PLAN_MIGRATION && is_new_node(pl, pl->nodes[i].name))) {
				sv_add(why, "node %s (plan line %d) is not in the cluster",
				       pl->nodes[i].name, pl->nodes[i].line);
				bad++;
			}
		}
		for (size_t j = 0; fresh && j < nl.n; j++) {
			if (!nl.v[j].ready) {
				sv_add(why, "node %s is NotReady (%s)", nl.v[j].name,
				       nl.v[j].ready_reason ? nl.v[j].ready_reason : "no reason");
				bad++;
			}
			if (nl.v[j].unschedulable) {
				sv_add(
				    why,
				    "node %s is cordoned: uncordon it, or finish what cordoned it",
				    nl.v[j].name);
				bad++;
			}
		}
		if (!bad)
			sv_add(ok, "kubernetes: %zu node(s), every one Ready and schedulable",
			       nl.n);
		if (fresh && pl->kind == PLAN_UPGRADE)
			check_versions(o, k, &nl, why);
	}
	kube_node_list_free(&nl);
	check_pool(o, why, ok, fresh);
	check_gate(o, why, ok, fresh);
	/* etcd last, and only when the cluster and lbd answered: a plan copied
	 * from the examples must not send anyone's packets anywhere. */
	if (pl->kind == PLAN_MIGRATION && pl->netcd_endpoints) {
		if (why->n)
			sv_add(why, "etcd: not asked until the reasons above are fixed");
		else
			check_etcd(o, why, ok);
	}
}

static int run_hook(struct orch *o, struct strv *why)
{
	const struct plan *pl = o->plan;
	struct plan_vars v = {.version = pl->version, .date = o->p->date};
	char *err = NULL, *cmd = plan_expand(pl->hook_preflight, &v, &err, NULL);
	struct exec_result r;
	char rs[64];
	int rc;

	if (!cmd) {
		sv_add(why, "hooks.preflight: %s", err);
		free(err);
		return -1;
	}
	emit(o, ORCH_EV_STEP_START, "-", "preflight", 0, "hook: %s", cmd);
	if (o->p->have_j)
		journal_log(&o->p->j, "-", "preflight", "hook: %s", cmd);
	rc = exec_run(cmd, pl->t_command_ms, NULL, NULL, NULL, &r);
	if (o->p->have_j)
		journal_log(&o->p->j, "-", "preflight", "hook %s; output: %s",
			    exec_result_str(&r, rs, sizeof(rs)), r.output);
	if (rc < 0)
		sv_add(why, "hooks.preflight failed (%s): %s\n%s",
		       exec_result_str(&r, rs, sizeof(rs)), cmd, r.output);
	exec_result_free(&r);
	free(cmd);
	return rc;
}

/* ---- the step table --------------------------------------------------------------------- */

typedef int (*step_fn)(struct nctx *c, char **msg);

struct step_def {
	const char *name;
	step_fn fn;
};

static void describe(struct orch *o, const struct plan_node *n, const char *step, char *buf,
		     size_t len);

/* ---- upgrade steps ---------------------------------------------------------------------- */

static int st_lease(struct nctx *c, char **msg)
{
	struct orch *o = c->o;
	int64_t deadline = mono_ms() + o->plan->t_gate_ms;
	char d[32], *why = NULL, *last = NULL;

	for (;;) {
		int rc = gate_acquire(o, c->n->name, c->n->role, &why);
		if (rc == 1) {
			keep_lease(o, c->n->name, c->n->role, true);
			free(last);
			free(why);
			c->note = xstrdup("granted");
			return ORCH_OK;
		}
		if (!last || strcmp(last, why)) {
			emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start, "the gate %s: %s",
			     rc == 0 ? "refuses" : "cannot be asked", why);
			free(last);
			last = why;
		} else {
			free(why);
		}
		why = NULL;
		if (mono_ms() >= deadline || stopping(o)) {
			*msg = xasprintf(
			    "%s: the gate %s for %s: %s. Nothing was changed on %s. Next: fix what "
			    "it says (`lbctl gate status`), then run again with --resume",
			    c->n->name, rc == 0 ? "refused a lease" : "could not be asked",
			    dur(mono_ms() - c->step_start, d, sizeof(d)), last, c->n->name);
			free(last);
			return stopping(o) ? ORCH_FAILED : rc == 0 ? ORCH_REFUSED : ORCH_FAILED;
		}
		sleep_ms(GATE_RETRY_MS);
	}
}

static int st_backend_drain(struct nctx *c, char **msg)
{
	struct orch *o = c->o;
	const char *b = c->n->backend;
	char *err = NULL, *path, d[32];
	json_t *pool = NULL, *be = get_backend(o, b, &pool, &err), *x, *out = NULL;
	long st = 0;
	size_t i;
	int others = 0;

	if (!be) {
		*msg = xasprintf("%s: %s", c->n->name, err);
		free(err);
		json_decref(pool);
		return ORCH_FAILED;
	}
	json_array_foreach(json_object_get(pool, "backends"), i,
			   x) if (strcmp(jstr(x, "name"), b) &&
				  !strcmp(jstr(x, "state"), "enabled") &&
				  !strcmp(jstr(x, "health"), "up")) others++;
	json_decref(pool);
	if (!strcmp(jstr(be, "state"), "enabled")) {
		if (others == 0) {
			json_decref(be);
			*msg =
			    xasprintf("%s: no other backend of pool %s is enabled and up: draining "
				      "%s would take the VIP down. Next: bring another master "
				      "back, then --resume",
				      c->n->name, o->plan->pool, b);
			return ORCH_FAILED;
		}
		path = pool_path(o, b);
		json_t *body = json_pack("{s:s}", "state", "drain");
		int rc = lbd(o, "PATCH", path, body, &st, &out, &err);
		json_decref(body);
		free(path);
		if (rc < 0 || st != 200) {
			*msg = xasprintf("%s: draining backend %s: %s", c->n->name, b,
					 rc < 0 ? err : jerr(out));
			free(err);
			json_decref(out);
			json_decref(be);
			return ORCH_FAILED;
		}
		json_decref(out);
	}
	json_decref(be);
	/* Our own apiserver connection may be one of those the drain waits for. */
	kube_reconnect(c);
	int64_t deadline = mono_ms() + o->plan->t_backend_drain_ms;
	long long last_left = -1;
	for (;;) {
		be = get_backend(o, b, NULL, &err);
		if (!be) {
			*msg = xasprintf("%s: %s", c->n->name, err);
			free(err);
			return ORCH_FAILED;
		}
		char s[32];
		snprintf(s, sizeof(s), "%s", jstr(be, "state"));
		long long left = json_integer_value(
		    json_object_get(json_object_get(be, "drain"), "connections_left"));
		json_decref(be);
		if (!strcmp(s, "disabled")) {
			c->note = xasprintf("backend %s drained", b);
			return ORCH_OK;
		}
		if (strcmp(s, "drain")) {
			*msg = xasprintf("%s: backend %s went back to %s while draining (someone "
					 "enabled it?). Next: check `lbctl pool show %s`, then "
					 "--resume",
					 c->n->name, b, s, o->plan->pool);
			return ORCH_FAILED;
		}
		if (left != last_left) {
			emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start,
			     "backend %s draining: %lld connection(s) left", b, left);
			last_left = left;
		}
		if (mono_ms() >= deadline) {
			*msg = xasprintf("%s: backend %s still has %lld connection(s) after %s. It "
					 "stays draining in lbd. Next: `lbctl pool show %s`, then "
					 "--resume",
					 c->n->name, b, left,
					 dur(o->plan->t_backend_drain_ms, d, sizeof(d)),
					 o->plan->pool);
			return ORCH_TIMEOUT;
		}
		if (stopping(o)) {
			*msg = xasprintf("%s: interrupted while backend %s drains", c->n->name, b);
			return ORCH_FAILED;
		}
		sleep_ms(o->poll_ms);
	}
}

static void on_drain(void *arg, enum drain_event ev, const char *ns, const char *name,
		     const char *m)
{
	struct nctx *c = arg;
	static const char *const what[] = {"cordoned",	   "already cordoned", "warning",
					   "evicting pod", "deleting pod",     "retrying",
					   "evicted",	   "drained"};
	emit(c->o, ORCH_EV_INFO, c->n->name, c->step, c->step_start, "%s%s%s%s%s%s", what[ev],
	     ns ? " " : "", ns ? ns : "", name ? "/" : "", name ? name : "",
	     m ? (m[0] ? ": " : "") : "");
	if (m && m[0])
		journal_log(&c->o->p->j, c->n->name, c->step, "%s: %s", what[ev], m);
}

static int st_drain(struct nctx *c, char **msg)
{
	const struct plan *pl = c->o->plan;
	struct drain_opts d;
	struct drain_result r = {0};
	char t[32];

	drain_opts_init(&d);
	d.ignore_daemonsets = pl->ignore_daemonsets;
	d.delete_emptydir_data = pl->delete_emptydir_data;
	d.force = pl->force;
	d.disable_eviction = pl->disable_eviction;
	d.grace_period_s = pl->grace_period_s;
	d.timeout_ms = pl->drain_timeout_ms;
	d.retry_ms = 2000;
	d.poll_ms = 500;
	int rc = drain_node(c->k, c->n->name, &d, on_drain, c, &r);
	if (rc == DRAIN_OK) {
		c->note = xasprintf("%zu pod(s) evicted, %zu skipped", r.evicted, r.skipped);
		drain_result_free(&r);
		return ORCH_OK;
	}
	struct sbuf left = {0};
	for (size_t i = 0; i < r.nleft; i++)
		sb_add(&left, "%s%s/%s%s", i ? ", " : "", r.left[i].ns, r.left[i].name,
		       r.left[i].pdb_blocked ? " (PodDisruptionBudget)" : "");
	dur(pl->drain_timeout_ms, t, sizeof(t));
	*msg = xasprintf("%s: drain %s%s: %s%s%s. %s stays cordoned, its lease held. Next: deal "
			 "with those pods, then --resume",
			 c->n->name,
			 rc == DRAIN_TIMEOUT   ? "timed out after "
			 : rc == DRAIN_REFUSED ? "refused"
					       : "failed",
			 rc == DRAIN_TIMEOUT ? t : "", r.error ? r.error : "",
			 left.s ? "; pods left: " : "", left.s ? left.s : "", c->n->name);
	free(left.s);
	drain_result_free(&r);
	return rc == DRAIN_TIMEOUT ? ORCH_TIMEOUT : ORCH_FAILED;
}

static void on_line(void *arg, const char *line)
{
	struct nctx *c = arg;
	journal_log(&c->o->p->j, c->n->name, c->step, "| %s", line);
	emit(c->o, ORCH_EV_OUTPUT, c->n->name, c->step, c->step_start, "%s", line);
}

static bool on_tick(void *arg)
{
	struct nctx *c = arg;
	return c->o->stop && *c->o->stop;
}

/* Runs a template for node n with old/new set for migrations. */
static int run_command(struct nctx *c, const char *what, const char *tmpl, const char *old_node,
		       const char *new_node, char **msg)
{
	struct orch *o = c->o;
	struct plan_vars v = {.node = c->n->name,
			      .host = c->n->host,
			      .version = o->plan->version,
			      .date = o->p->date,
			      .old_node = old_node,
			      .new_node = new_node};
	char *err = NULL, *cmd = plan_expand(tmpl, &v, &err, NULL), rs[64];
	struct exec_result r;

	if (!cmd) {
		*msg = xasprintf("%s: %s: %s", c->n->name, what, err);
		free(err);
		return ORCH_FAILED;
	}
	journal_log(&o->p->j, c->n->name, c->step, "run: %s", cmd);
	emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start, "running: %s", cmd);
	int rc = exec_run(cmd, o->plan->t_command_ms, on_line, on_tick, c, &r);
	if (rc == 0) {
		c->note = xasprintf("%s: exit 0 in %s", what, dur(r.elapsed_ms, rs, sizeof(rs)));
		exec_result_free(&r);
		free(cmd);
		return ORCH_OK;
	}
	const char *tail = r.output;
	size_t tl = strlen(tail);
	if (tl > 1500)
		tail += tl - 1500;
	bool leased = !strcmp(c->step, "command") || !strcmp(c->step, "remove-command");
	*msg =
	    xasprintf("%s: %s failed (%s): %s\n--- its last output ---\n%s\n--- %s%s"
		      "Next: look at the node and the output (the plan's .log has all of "
		      "it), fix it by hand, then --resume",
		      c->n->name, what, exec_result_str(&r, rs, sizeof(rs)), cmd, tail,
		      leased ? c->n->name : "", leased ? " stays cordoned, its lease held. " : "");
	int out = r.timed_out ? ORCH_TIMEOUT : ORCH_FAILED;
	exec_result_free(&r);
	free(cmd);
	return out;
}

/* kubelet never newer than the apiservers: every master at (or past) the target. */
static int masters_at_target(struct nctx *c, char **msg)
{
	struct kube_node_list nl = {0};
	struct kube_err e;
	char buf[600];
	if (kube_node_list(c->k, &nl, &e) < 0) {
		*msg = xasprintf("%s: cannot list nodes: %s", c->n->name,
				 kube_err_str(&e, buf, sizeof(buf)));
		return ORCH_FAILED;
	}
	for (size_t i = 0; i < nl.n; i++) {
		const struct plan_node *pn = plan_node_find(c->o->plan, nl.v[i].name);
		bool master = pn ? pn->role == PLAN_MASTER : node_is_master(&nl.v[i]);
		if (master && vcmp(nl.v[i].kubelet_version, c->o->plan->version) < 0) {
			*msg = xasprintf(
			    "%s: master %s is still at %s: a kubelet at %s would be newer "
			    "than its apiserver. Next: upgrade %s first, then --resume",
			    c->n->name, nl.v[i].name, nl.v[i].kubelet_version, c->o->plan->version,
			    nl.v[i].name);
			kube_node_list_free(&nl);
			return ORCH_FAILED;
		}
	}
	kube_node_list_free(&nl);
	return ORCH_OK;
}

static int st_command(struct nctx *c, char **msg)
{
	struct kube_node n;
	char *err = NULL;
	int rc;

	if (c->n->role == PLAN_WORKER && (rc = masters_at_target(c, msg)) != ORCH_OK)
		return rc;
	if ((rc = node_get(c->k, c->n->name, &n, &err)) <= 0) {
		*msg = xasprintf("%s: %s", c->n->name, rc == 0 ? "the node is gone" : err);
		free(err);
		return ORCH_FAILED;
	}
	if (c->resumed) {
		/* Interrupted: did the command get as far as changing the node? */
		struct jstep *s = journal_find(&c->o->p->j, c->n->name, c->step);
		const char *was =
		    s && s->note && !strncmp(s->note, "bootID ", 7) ? s->note + 7 : NULL;
		if (at_target(n.kubelet_version, c->o->plan->version) ||
		    (was && n.boot_id && strcmp(was, n.boot_id))) {
			c->note =
			    xasprintf("not run again: it was interrupted after it took effect "
				      "(kubelet %s, bootID %s)",
				      n.kubelet_version, n.boot_id ? n.boot_id : "?");
			kube_node_clear(&n);
			return ORCH_OK;
		}
	}
	/* Record the bootID before: a resume can tell a reboot happened. */
	struct jstep *s = journal_find(&c->o->p->j, c->n->name, c->step);
	char *bnote = xasprintf("bootID %s", n.boot_id ? n.boot_id : "");
	journal_note(&c->o->p->j, s, bnote, &err);
	free(bnote);
	free(err);
	err = NULL;
	kube_node_clear(&n);
	return run_command(c, "upgrade_command", c->o->plan->upgrade_command, NULL, NULL, msg);
}

/* The etcd member's health as the gate sees it: 1 healthy, 0 not (why), -1 not watched. */
static int gate_etcd_healthy(struct orch *o, const char *member, char **why)
{
	char *err = NULL;
	json_t *st = gate_status(o, &err), *e, *m;
	size_t i;
	int rc = -1;
	if (!st) {
		*why = err;
		return 0;
	}
	e = json_object_get(json_object_get(st, "inputs"), "etcd");
	if (e) {
		rc = 0;
		*why = xasprintf("not a member (yet)");
		json_array_foreach(json_object_get(e, "members"), i,
				   m) if (!strcmp(jstr(m, "name"), member))
		{
			free(*why);
			*why = NULL;
			if (json_is_true(json_object_get(m, "healthy")))
				rc = 1;
			else
				*why = xstrdup(jstr(m, "why"));
		}
		if (!json_is_true(json_object_get(e, "known"))) {
			free(*why);
			*why = xasprintf("the gate's etcd view is unknown: %s", jstr(e, "why"));
			rc = 0;
		}
	}
	json_decref(st);
	return rc;
}

/* One look at the outcomes; missing gets what is not there yet. */
static bool outcomes(struct nctx *c, struct sbuf *missing)
{
	struct orch *o = c->o;
	struct kube_node n;
	char *err = NULL;
	int rc = node_get(c->k, c->n->name, &n, &err);

	if (rc <= 0) {
		sb_add(missing, "the node (%s)", rc == 0 ? "not found" : err);
		free(err);
		return false;
	}
	if (!n.ready)
		sb_add(missing, "%sReady (%s)", missing->n ? ", " : "",
		       n.ready_reason ? n.ready_reason : "NotReady");
	if (o->plan->version && !at_target(n.kubelet_version, o->plan->version))
		sb_add(missing, "%skubelet %s (now %s)", missing->n ? ", " : "", o->plan->version,
		       n.kubelet_version ? n.kubelet_version : "?");
	kube_node_clear(&n);
	if (c->n->role == PLAN_MASTER) {
		json_t *b = get_backend(o, c->n->backend, NULL, &err);
		if (!b) {
			sb_add(missing, "%sbackend %s (%s)", missing->n ? ", " : "", c->n->backend,
			       err);
			free(err);
		} else if (strcmp(jstr(b, "health"), "up")) {
			const char *det = jstr(json_object_get(b, "check"), "detail");
			sb_add(missing, "%s/readyz up in lbd for backend %s (%s%s%s)",
			       missing->n ? ", " : "", c->n->backend, jstr(b, "health"),
			       *det ? ": " : "", det);
		}
		json_decref(b);
		char *why = NULL;
		if (gate_etcd_healthy(o, c->n->etcd, &why) == 0)
			sb_add(missing, "%setcd member %s healthy (%s)", missing->n ? ", " : "",
			       c->n->etcd, why ? why : "?");
		free(why);
	}
	return missing->n == 0;
}

static int st_wait(struct nctx *c, char **msg)
{
	struct orch *o = c->o;
	int64_t deadline = mono_ms() + o->plan->t_node_ready_ms, since = 0;
	char *last = NULL, d[32], d2[32];

	/* A new connection: the VIP's backends moved while the node was down. */
	kube_reconnect(c);
	for (;;) {
		struct sbuf miss = {0};
		bool ok = outcomes(c, &miss);
		int64_t now = mono_ms();
		if (ok) {
			if (!since) {
				since = now;
				emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start,
				     "every outcome holds; soaking %s",
				     dur(o->plan->soak_ms, d, sizeof(d)));
			}
			if (now - since >= o->plan->soak_ms) {
				c->note = xasprintf("back after %s, held for %s",
						    dur(since - c->step_start, d, sizeof(d)),
						    dur(o->plan->soak_ms, d2, sizeof(d2)));
				free(last);
				return ORCH_OK;
			}
		} else {
			if (since)
				emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start,
				     "an outcome was lost during the soak: %s", miss.s);
			since = 0;
			if (!last || strcmp(last, miss.s))
				emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start,
				     "waiting for %s", miss.s);
			free(last);
			last = miss.s;
			miss.s = NULL;
		}
		free(miss.s);
		if (now >= deadline) {
			*msg = xasprintf(
			    "%s never came back within %s: still waiting for %s. %s stays "
			    "cordoned, "
			    "its lease held%s, so nothing else goes down. Next: look at the node "
			    "(journalctl -u k3s / kubelet), then --resume to wait again",
			    c->n->name, dur(o->plan->t_node_ready_ms, d, sizeof(d)),
			    last ? last : "the soak", c->n->name,
			    c->n->role == PLAN_MASTER ? " and its backend drained" : "");
			free(last);
			return ORCH_TIMEOUT;
		}
		if (stopping(o)) {
			*msg = xasprintf("%s: interrupted while waiting for %s", c->n->name,
					 last ? last : "the soak");
			free(last);
			return ORCH_FAILED;
		}
		sleep_ms(o->poll_ms);
	}
}

static int set_backend_state(struct nctx *c, const char *state, char **msg)
{
	char *path = pool_path(c->o, c->n->backend), *err = NULL;
	json_t *body = json_pack("{s:s}", "state", state), *out = NULL;
	long st = 0;
	int rc = lbd(c->o, "PATCH", path, body, &st, &out, &err);
	json_decref(body);
	free(path);
	if (rc < 0 || st != 200) {
		*msg = xasprintf("%s: setting backend %s %s: %s", c->n->name, c->n->backend, state,
				 rc < 0 ? err : jerr(out));
		free(err);
		json_decref(out);
		return ORCH_FAILED;
	}
	json_decref(out);
	return ORCH_OK;
}

static int st_backend_enable(struct nctx *c, char **msg)
{
	return set_backend_state(c, "enabled", msg);
}

static int st_uncordon(struct nctx *c, char **msg)
{
	struct kube_err e;
	bool changed = false;
	char buf[600];
	for (int i = 0; i < 3; i++) {
		if (drain_cordon(c->k, c->n->name, false, &changed, &e) == 0) {
			c->note = xstrdup(changed ? "uncordoned" : "was not cordoned");
			return ORCH_OK;
		}
		sleep_ms(500);
	}
	*msg = xasprintf("%s: uncordon: %s. Next: `lbctl node uncordon %s`, then --resume",
			 c->n->name, kube_err_str(&e, buf, sizeof(buf)), c->n->name);
	return ORCH_FAILED;
}

static int st_release(struct nctx *c, char **msg)
{
	bool was = false;
	char *err = NULL;
	keep_lease(c->o, c->n->name, c->n->role, false);
	if (gate_release(c->o, c->n->name, &was, &err) < 0) {
		*msg =
		    xasprintf("%s: releasing the lease: %s. Next: `lbctl gate release --node %s`",
			      c->n->name, err, c->n->name);
		free(err);
		return ORCH_FAILED;
	}
	c->note = xstrdup(was ? "released" : "the gate had released it already (node back)");
	return ORCH_OK;
}

/* ---- migration steps -------------------------------------------------------------------- */

static int st_join(struct nctx *c, char **msg)
{
	struct kube_node n;
	char *err = NULL;
	int rc = node_get(c->k, c->n->name, &n, &err);
	if (rc < 0) {
		*msg = xasprintf("%s: %s", c->n->name, err);
		free(err);
		return ORCH_FAILED;
	}
	if (rc == 1) {
		kube_node_clear(&n);
		c->note = xstrdup("already in the cluster");
		return ORCH_OK;
	}
	if (!c->o->plan->join_command) {
		*msg = xasprintf("%s is not in the cluster and the plan has no join_command: join "
				 "it (see the runbook), then --resume",
				 c->n->name);
		return ORCH_FAILED;
	}
	return run_command(c, "join_command", c->o->plan->join_command, NULL, c->n->name, msg);
}

/* The new node is in: Ready; a master's etcd member a healthy voter, every member healthy. */
static bool joined(struct nctx *c, struct sbuf *miss)
{
	struct kube_node n;
	char *err = NULL;
	int rc = node_get(c->k, c->n->name, &n, &err);
	if (rc <= 0) {
		sb_add(miss, "node %s in the cluster (%s)", c->n->name, rc == 0 ? "not yet" : err);
		free(err);
		return false;
	}
	if (!n.ready)
		sb_add(miss, "node %s Ready", c->n->name);
	kube_node_clear(&n);
	if (c->n->role != PLAN_MASTER)
		return miss->n == 0;
	json_t *list = etcd_members(c->o, &err), *m, *me;
	size_t i;
	if (!list) {
		sb_add(miss, "%setcd member list (%s)", miss->n ? ", " : "", err);
		free(err);
		return false;
	}
	if (!(me = etcd_find(list, c->n->etcd)))
		sb_add(miss, "%setcd member %s in the member list", miss->n ? ", " : "",
		       c->n->etcd);
	else if (json_is_true(json_object_get(me, "isLearner")))
		sb_add(miss, "%setcd member %s promoted from learner", miss->n ? ", " : "",
		       c->n->etcd);
	json_array_foreach(json_object_get(list, "members"), i, m)
	{
		char *why = NULL;
		if (!etcd_member_healthy(c->o, m, &why))
			sb_add(miss, "%setcd member %s healthy (%s)", miss->n ? ", " : "",
			       jstr(m, "name")[0] ? jstr(m, "name") : "(unstarted)", why);
		free(why);
	}
	if (!miss->n)
		c->note = xasprintf("etcd: %zu members, all healthy",
				    json_array_size(json_object_get(list, "members")));
	json_decref(list);
	return miss->n == 0;
}

typedef bool (*cond_fn)(struct nctx *c, struct sbuf *miss);

static int wait_until(struct nctx *c, cond_fn fn, int64_t timeout_ms, char **msg)
{
	int64_t deadline = mono_ms() + timeout_ms;
	char *last = NULL, d[32];
	for (;;) {
		struct sbuf miss = {0};
		if (fn(c, &miss)) {
			free(miss.s);
			free(last);
			return ORCH_OK;
		}
		if (!last || strcmp(last, miss.s))
			emit(c->o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start,
			     "waiting for %s", miss.s);
		free(last);
		last = miss.s;
		if (mono_ms() >= deadline || stopping(c->o)) {
			*msg = xasprintf("%s: %s after %s: still waiting for %s. Next: look at %s, "
					 "then --resume",
					 c->n->name, stopping(c->o) ? "interrupted" : "timed out",
					 dur(timeout_ms, d, sizeof(d)), last, c->n->name);
			free(last);
			return stopping(c->o) ? ORCH_FAILED : ORCH_TIMEOUT;
		}
		sleep_ms(c->o->poll_ms);
	}
}

static int st_joined(struct nctx *c, char **msg)
{
	return wait_until(c, joined, c->o->plan->t_node_ready_ms, msg);
}

static int st_backend_add(struct nctx *c, char **msg)
{
	char *path = xasprintf("/v1/pools/%s/backends", c->o->plan->pool), *err = NULL;
	json_t *body = json_pack("{s:s,s:s,s:i,s:s}", "name", c->n->backend, "address",
				 c->n->address, "weight", 1, "state", "enabled"),
	       *out = NULL, *b;
	long st = 0;
	int rc = lbd(c->o, "POST", path, body, &st, &out, &err);
	json_decref(body);
	free(path);
	if (rc == 0 && (st == 200 || st == 201)) {
		json_decref(out);
		c->note = xasprintf("backend %s %s added", c->n->backend, c->n->address);
		return ORCH_OK;
	}
	json_decref(out);
	/* Already there from an interrupted run? */
	if ((b = get_backend(c->o, c->n->backend, NULL, &err)) &&
	    !strcmp(jstr(b, "address"), c->n->address)) {
		json_decref(b);
		free(err);
		c->note = xstrdup("the backend was there already");
		return set_backend_state(c, "enabled", msg);
	}
	json_decref(b);
	*msg = xasprintf("%s: adding backend %s (%s) to pool %s: %s", c->n->name, c->n->backend,
			 c->n->address, c->o->plan->pool, rc < 0 ? err : "refused by lbd");
	free(err);
	return ORCH_FAILED;
}

static bool backend_up(struct nctx *c, struct sbuf *miss)
{
	char *err = NULL;
	json_t *b = get_backend(c->o, c->n->backend, NULL, &err);
	if (!b) {
		sb_add(miss, "backend %s (%s)", c->n->backend, err);
		free(err);
		return false;
	}
	if (strcmp(jstr(b, "health"), "up"))
		sb_add(miss, "backend %s /readyz up (%s %s)", c->n->backend, jstr(b, "health"),
		       jstr(json_object_get(b, "check"), "detail"));
	json_decref(b);
	return miss->n == 0;
}

static int st_backend_up(struct nctx *c, char **msg)
{
	return wait_until(c, backend_up, c->o->plan->t_node_ready_ms, msg);
}

/* If the member to remove leads, hand leadership to a healthy voter first, so
 * the removal costs no election (the leader's own endpoint must be asked). */
static void move_leader_off(struct nctx *c, json_t *list, json_t *me)
{
	struct orch *o = c->o;
	const char *url = json_string_value(json_array_get(json_object_get(me, "clientURLs"), 0));
	char *err = NULL;
	json_t *st, *m;
	size_t i;

	if (!url || !(st = etcd_call(o, url, "/v3/maintenance/status", "{}", &err))) {
		free(err);
		return;
	}
	bool leads =
	    !strcmp(jstr(st, "leader"), jstr(json_object_get(st, "header"), "member_id")) &&
	    *jstr(st, "leader");
	json_decref(st);
	if (!leads)
		return;
	json_array_foreach(json_object_get(list, "members"), i, m)
	{
		char *why = NULL;
		if (m == me || json_is_true(json_object_get(m, "isLearner")) ||
		    !etcd_member_healthy(o, m, &why)) {
			free(why);
			continue;
		}
		char *body = xasprintf("{\"targetID\":\"%s\"}", jstr(m, "ID"));
		json_t *out = etcd_call(o, url, "/v3/maintenance/transfer-leadership", body, &err);
		emit(o, ORCH_EV_INFO, c->n->name, c->step, c->step_start,
		     "etcd member %s leads: leadership to %s first: %s", c->n->etcd,
		     jstr(m, "name"), out ? "done" : err);
		journal_log(&o->p->j, c->n->name, c->step, "leadership to %s: %s", jstr(m, "name"),
			    out ? "done" : err);
		json_decref(out);
		free(err);
		free(body);
		return;
	}
}

static int st_etcd_remove(struct nctx *c, char **msg)
{
	struct orch *o = c->o;
	char *err = NULL;
	json_t *list = etcd_members(o, &err), *me, *m;
	size_t i, voters = 0, healthy_others = 0;
	struct sbuf bad = {0};

	if (!list) {
		*msg = xasprintf("%s: etcd: %s", c->n->name, err);
		free(err);
		return ORCH_FAILED;
	}
	if (!(me = etcd_find(list, c->n->etcd))) {
		json_decref(list);
		c->note = xasprintf("etcd member %s is not in the member list (removed already)",
				    c->n->etcd);
		return ORCH_OK;
	}
	json_array_foreach(json_object_get(list, "members"), i, m)
	{
		char *why = NULL;
		if (json_is_true(json_object_get(m, "isLearner")))
			continue;
		voters++;
		if (m == me)
			continue;
		if (etcd_member_healthy(o, m, &why))
			healthy_others++;
		else
			sb_add(&bad, "%s%s: %s", bad.n ? "; " : "", jstr(m, "name"), why);
		free(why);
	}
	size_t quorum_after = (voters - 1) / 2 + 1;
	if (voters < 2 || healthy_others < quorum_after) {
		*msg =
		    xasprintf("%s: removing etcd member %s would lose quorum: %zu voting members, "
			      "%zu healthy without it, %zu needed%s%s. Nothing was removed. "
			      "Next: make the other members healthy, then --resume",
			      c->n->name, c->n->etcd, voters, healthy_others, quorum_after,
			      bad.s ? "; " : "", bad.s ? bad.s : "");
		free(bad.s);
		json_decref(list);
		return ORCH_FAILED;
	}
	free(bad.s);
	move_leader_off(c, list, me);
	json_t *id = json_object_get(me, "ID");
	char *idtxt = json_is_string(id) ? xstrdup(json_string_value(id))
					 : xasprintf("%lld", (long long)json_integer_value(id));
	char *body = xasprintf("{\"ID\":\"%s\"}", idtxt);
	json_decref(list);
	int rc = -1;
	struct sbuf why = {0};
	for (size_t e = 0; e < o->plan->netcd_endpoints && rc < 0; e++) {
		json_t *out = etcd_call(o, o->plan->etcd_endpoints[e], "/v3/cluster/member/remove",
					body, &err);
		if (out) {
			rc = 0;
			json_decref(out);
		} else {
			sb_add(&why, "%s%s", why.n ? "; " : "", err);
			free(err);
		}
	}
	free(body);
	if (rc < 0) {
		*msg = xasprintf("%s: etcd member remove %s (ID %s): %s", c->n->name, c->n->etcd,
				 idtxt, why.s);
		free(why.s);
		free(idtxt);
		return ORCH_FAILED;
	}
	free(why.s);
	/* Verify: the member list must no longer have it (bounded). */
	int64_t until = mono_ms() + 10000;
	for (;;) {
		json_t *l2 = etcd_members(o, &err);
		bool gone = l2 && !etcd_find(l2, c->n->etcd);
		json_decref(l2);
		xfree(&err);
		if (gone)
			break;
		if (mono_ms() >= until) {
			*msg = xasprintf(
			    "%s: etcd accepted the removal of member %s (ID %s) but still "
			    "lists it after 10s. Next: `etcdctl member list`, then --resume",
			    c->n->name, c->n->etcd, idtxt);
			free(idtxt);
			return ORCH_FAILED;
		}
		sleep_ms(o->poll_ms);
	}
	c->note = xasprintf("etcd member %s (ID %s) removed; %zu voters left, %zu healthy",
			    c->n->etcd, idtxt, voters - 1, healthy_others);
	free(idtxt);
	return ORCH_OK;
}

static const char *replaced_by(const struct plan *pl, const char *old_node)
{
	for (size_t r = 0; r < pl->nreplace; r++)
		if (!strcmp(pl->replace[r].old_node, old_node))
			return pl->replace[r].new_node;
	return NULL;
}

static int st_remove_command(struct nctx *c, char **msg)
{
	return run_command(c, "remove_command", c->o->plan->remove_command, c->n->name,
			   replaced_by(c->o->plan, c->n->name), msg);
}

static int st_node_delete(struct nctx *c, char **msg)
{
	char *path = xasprintf("/api/v1/nodes/%s", c->n->name), buf[600];
	struct kube_err e;
	int rc = kube_request(c->k, "DELETE", path, NULL, NULL, NULL, &e);
	free(path);
	if (rc < 0 && e.status != 404) {
		*msg = xasprintf("%s: deleting the node: %s", c->n->name,
				 kube_err_str(&e, buf, sizeof(buf)));
		return ORCH_FAILED;
	}
	c->note = xstrdup(rc == 0 ? "node deleted" : "the node was gone already");
	return ORCH_OK;
}

static int st_backend_remove(struct nctx *c, char **msg)
{
	char *path = pool_path(c->o, c->n->backend), *err = NULL;
	json_t *out = NULL;
	long st = 0;
	int rc = lbd(c->o, "DELETE", path, NULL, &st, &out, &err);
	free(path);
	if (rc < 0 || (st != 200 && st != 202 && st != 404)) {
		*msg = xasprintf("%s: removing backend %s: %s", c->n->name, c->n->backend,
				 rc < 0 ? err : jerr(out));
		free(err);
		json_decref(out);
		return ORCH_FAILED;
	}
	json_decref(out);
	c->note = xstrdup(st == 404 ? "the backend was gone already" : "backend removed");
	return ORCH_OK;
}

/* ---- which steps, in which order --------------------------------------------------------- */

static const struct step_def all_steps[] = {
    {"join", st_join},
    {"joined", st_joined},
    {"backend-add", st_backend_add},
    {"backend-up", st_backend_up},
    {"lease", st_lease},
    {"backend-drain", st_backend_drain},
    {"drain", st_drain},
    {"command", st_command},
    {"wait", st_wait},
    {"backend-enable", st_backend_enable},
    {"uncordon", st_uncordon},
    {"etcd-remove", st_etcd_remove},
    {"remove-command", st_remove_command},
    {"node-delete", st_node_delete},
    {"backend-remove", st_backend_remove},
    {"release", st_release},
    {NULL, NULL},
};

static step_fn step_by_name(const char *name)
{
	for (const struct step_def *d = all_steps; d->name; d++)
		if (!strcmp(d->name, name))
			return d->fn;
	return NULL;
}

/* The step names for node n, in order. */
static size_t steps_for(const struct plan *pl, const struct plan_node *n, const char **out)
{
	size_t k = 0;
	bool m = n->role == PLAN_MASTER;
	if (pl->kind == PLAN_UPGRADE) {
		out[k++] = "lease";
		if (m)
			out[k++] = "backend-drain";
		out[k++] = "drain";
		out[k++] = "command";
		out[k++] = "wait";
		if (m)
			out[k++] = "backend-enable";
		out[k++] = "uncordon";
		out[k++] = "release";
		return k;
	}
	if (is_new_node(pl, n->name)) {
		out[k++] = "join";
		out[k++] = "joined";
		if (m) {
			out[k++] = "backend-add";
			out[k++] = "backend-up";
		}
		return k;
	}
	if (replaced_by(pl, n->name)) {
		out[k++] = "lease";
		if (m)
			out[k++] = "backend-drain";
		out[k++] = "drain";
		if (m)
			out[k++] = "etcd-remove";
		if (pl->remove_command)
			out[k++] = "remove-command";
		out[k++] = "node-delete";
		if (m)
			out[k++] = "backend-remove";
		out[k++] = "release";
	}
	return k;
}

/* Nodes in the order they are worked on: an upgrade's masters then workers (plan
 * order); a migration's new node before the old one it replaces, then the adds. */
static size_t node_order(const struct plan *pl, const struct plan_node **out)
{
	size_t k = 0;
	if (pl->kind == PLAN_UPGRADE) {
		for (int pass = 0; pass < 2; pass++)
			for (size_t i = 0; i < pl->nnodes; i++)
				if ((pl->nodes[i].role == PLAN_MASTER) == (pass == 0))
					out[k++] = &pl->nodes[i];
		return k;
	}
	for (size_t r = 0; r < pl->nreplace; r++) {
		out[k++] = plan_node_find(pl, pl->replace[r].new_node);
		out[k++] = plan_node_find(pl, pl->replace[r].old_node);
	}
	for (size_t a = 0; a < pl->nadd; a++)
		out[k++] = plan_node_find(pl, pl->add[a]);
	return k;
}

static void describe(struct orch *o, const struct plan_node *n, const char *step, char *buf,
		     size_t len)
{
	const struct plan *pl = o->plan;
	char d1[32], d2[32];
	struct plan_vars v = {.node = n->name,
			      .host = n->host,
			      .version = pl->version,
			      .date = o->p->date,
			      .old_node = n->name,
			      .new_node = replaced_by(pl, n->name)};
	char *err = NULL, *cmd = NULL;

	if (!strcmp(step, "lease"))
		snprintf(buf, len,
			 "ask the gate for a %s lease (ttl %s, renewed every %s; wait up "
			 "to %s)",
			 plan_role_name(n->role), dur(pl->lease_ttl_ms, d1, sizeof(d1)),
			 dur(pl->lease_ttl_ms / 3, d2, sizeof(d2)),
			 dur(pl->t_gate_ms, (char[32]){0}, 32));
	else if (!strcmp(step, "backend-drain"))
		snprintf(buf, len, "drain backend %s/%s in lbd, wait until drained (up to %s)",
			 pl->pool, n->backend, dur(pl->t_backend_drain_ms, d1, sizeof(d1)));
	else if (!strcmp(step, "drain"))
		snprintf(buf, len, "cordon and drain %s (%s%s%sgrace %s, timeout %s)", n->name,
			 pl->ignore_daemonsets ? "ignore DaemonSets, " : "",
			 pl->delete_emptydir_data ? "delete emptyDir data, " : "",
			 pl->force ? "force, " : "",
			 pl->grace_period_s < 0
			     ? "per pod"
			     : (snprintf(d2, sizeof(d2), "%ds", pl->grace_period_s), d2),
			 dur(pl->drain_timeout_ms, d1, sizeof(d1)));
	else if (!strcmp(step, "command") || !strcmp(step, "join") ||
		 !strcmp(step, "remove-command")) {
		const char *t = !strcmp(step, "command") ? pl->upgrade_command
				: !strcmp(step, "join")	 ? pl->join_command
							 : pl->remove_command;
		if (!strcmp(step, "join"))
			v.new_node = n->name, v.old_node = NULL;
		cmd = t ? plan_expand(t, &v, &err, NULL) : NULL;
		if (!strcmp(step, "join") && !t)
			snprintf(buf, len, "%s must already be in the cluster (no join_command)",
				 n->name);
		else
			snprintf(buf, len, "run: %s (timeout %s)", cmd ? cmd : err,
				 dur(pl->t_command_ms, d1, sizeof(d1)));
	} else if (!strcmp(step, "wait")) {
		snprintf(
		    buf, len, "wait for Ready, kubelet %s%s%s%s%s%s, then soak %s (within %s)",
		    pl->version ? pl->version : "?", n->role == PLAN_MASTER ? ", backend " : "",
		    n->role == PLAN_MASTER ? n->backend : "",
		    n->role == PLAN_MASTER ? " /readyz up, etcd member " : "",
		    n->role == PLAN_MASTER ? n->etcd : "", n->role == PLAN_MASTER ? " healthy" : "",
		    dur(pl->soak_ms, d1, sizeof(d1)), dur(pl->t_node_ready_ms, d2, sizeof(d2)));
	} else if (!strcmp(step, "backend-enable"))
		snprintf(buf, len, "enable backend %s/%s", pl->pool, n->backend);
	else if (!strcmp(step, "uncordon"))
		snprintf(buf, len, "uncordon %s", n->name);
	else if (!strcmp(step, "release"))
		snprintf(buf, len, "release the gate lease");
	else if (!strcmp(step, "joined"))
		snprintf(buf, len, "wait for %s Ready%s%s%s (within %s)", n->name,
			 n->role == PLAN_MASTER ? ", etcd member " : "",
			 n->role == PLAN_MASTER ? n->etcd : "",
			 n->role == PLAN_MASTER ? " a healthy voter, every member healthy" : "",
			 dur(pl->t_node_ready_ms, d1, sizeof(d1)));
	else if (!strcmp(step, "backend-add"))
		snprintf(buf, len, "add backend %s/%s %s", pl->pool, n->backend,
			 n->address ? n->address : "?");
	else if (!strcmp(step, "backend-up"))
		snprintf(buf, len, "wait for backend %s /readyz up in lbd", n->backend);
	else if (!strcmp(step, "etcd-remove"))
		snprintf(buf, len, "check etcd keeps quorum without member %s, then remove it",
			 n->etcd);
	else if (!strcmp(step, "node-delete"))
		snprintf(buf, len, "delete node %s from Kubernetes", n->name);
	else if (!strcmp(step, "backend-remove"))
		snprintf(buf, len, "remove backend %s/%s from lbd", pl->pool, n->backend);
	else
		snprintf(buf, len, "%s", step);
	free(cmd);
	free(err);
}

/* ---- running a node --------------------------------------------------------------------- */

static int run_node(struct orch *o, struct kube **k, const struct plan_node *n)
{
	struct journal *j = &o->p->j;
	const char *names[16];
	size_t ns = steps_for(o->plan, n, names);
	char desc[1024];

	for (size_t i = 0; i < ns; i++) {
		struct jstep *s = journal_find(j, n->name, names[i]);
		char *msg = NULL, *err = NULL;
		if (!s || s->state == JS_DONE || s->state == JS_SKIPPED)
			continue;
		if (stopping(o))
			return ORCH_FAILED;
		struct nctx c = {
		    .o = o, .k = *k, .n = n, .step = names[i], .step_start = mono_ms()};
		c.resumed = s->state == JS_RUNNING || s->state == JS_FAILED;
		describe(o, n, names[i], desc, sizeof(desc));
		if (journal_mark(j, s, JS_RUNNING, NULL, &err) < 0) {
			fail_run(o, ORCH_FAILED, err);
			free(err);
			return ORCH_FAILED;
		}
		emit(o, ORCH_EV_STEP_START, n->name, names[i], c.step_start, "%s%s", desc,
		     c.resumed ? " (again: it did not finish before)" : "");
		int rc = step_by_name(names[i])(&c, &msg);
		*k = c.k; /* steps may reconnect */
		if (rc == ORCH_OK) {
			if (journal_mark(j, s, JS_DONE, c.note ? c.note : "ok", &err) < 0) {
				fail_run(o, ORCH_FAILED, err);
				free(err);
				free(c.note);
				return ORCH_FAILED;
			}
			emit(o, ORCH_EV_STEP_DONE, n->name, names[i], c.step_start, "%s",
			     c.note ? c.note : "ok");
			free(c.note);
			continue;
		}
		free(c.note);
		if (o->stop && *o->stop && rc == ORCH_FAILED && !msg)
			msg = xasprintf("%s: interrupted", n->name);
		journal_mark(j, s, JS_FAILED, msg, &err);
		free(err);
		emit(o, ORCH_EV_STEP_FAIL, n->name, names[i], c.step_start, "%s", msg);
		fail_run(o, rc, msg);
		free(msg);
		return rc;
	}
	return ORCH_OK;
}

static void *worker_main(void *arg)
{
	struct orch *o = arg;
	const struct plan_node *order[256];
	size_t n = node_order(o->plan, order);
	struct kube *k = kube_for(o);

	for (;;) {
		pthread_mutex_lock(&o->p->fmu);
		size_t i = o->p->next_worker;
		while (i < n && order[i]->role != PLAN_WORKER)
			i++;
		o->p->next_worker = i + 1;
		pthread_mutex_unlock(&o->p->fmu);
		if (i >= n || stopping(o))
			break;
		run_node(o, &k, order[i]);
	}
	kube_free(&k);
	return NULL;
}

/* ---- setup, the run, dry run, status ----------------------------------------------------- */

static void priv_init(struct orch *o)
{
	struct orch_priv *p = o->p = xcalloc(1, sizeof(*o->p));
	pthread_mutex_init(&p->ev_mu, NULL);
	pthread_mutex_init(&p->kmu, NULL);
	pthread_mutex_init(&p->fmu, NULL);
	pthread_cond_init(&p->kcv, NULL);
	p->run_start = mono_ms();
	plan_date(p->date, sizeof(p->date));
	if (!o->poll_ms)
		o->poll_ms = 500;
	p->kc_ok = kubeconfig_load(o->plan->kubeconfig, o->plan->context, &p->kc, &p->kc_err) == 0;
}

static void priv_free(struct orch *o)
{
	struct orch_priv *p = o->p;
	if (p->keeper_on) {
		pthread_mutex_lock(&p->kmu);
		p->kstop = true;
		pthread_cond_broadcast(&p->kcv);
		pthread_mutex_unlock(&p->kmu);
		pthread_join(p->keeper, NULL);
	}
	for (size_t i = 0; i < sizeof(p->held) / sizeof(*p->held); i++)
		free(p->held[i]);
	if (p->have_j)
		journal_close(&p->j);
	kubeconfig_free(&p->kc);
	free(p->kc_err);
	free(p->fail_msg);
	pthread_mutex_destroy(&p->ev_mu);
	pthread_mutex_destroy(&p->kmu);
	pthread_mutex_destroy(&p->fmu);
	pthread_cond_destroy(&p->kcv);
	xfree(&o->p);
}

/* Writes the steps of a fresh run into the journal; nodes at the target are skipped. */
static void plan_steps(struct orch *o, struct kube *k)
{
	const struct plan_node *order[256];
	size_t nn = node_order(o->plan, order);
	for (size_t i = 0; i < nn; i++) {
		const char *names[16];
		size_t ns = steps_for(o->plan, order[i], names);
		struct kube_node kn;
		char *err = NULL, *skip = NULL;
		if (o->plan->kind == PLAN_UPGRADE && node_get(k, order[i]->name, &kn, &err) == 1) {
			if (at_target(kn.kubelet_version, o->plan->version))
				skip = xasprintf("already at %s", kn.kubelet_version);
			kube_node_clear(&kn);
		}
		free(err);
		for (size_t s = 0; s < ns; s++) {
			struct jstep *js = journal_add(&o->p->j, order[i]->name, names[s], skip);
			if (skip)
				js->state = JS_SKIPPED;
		}
		if (skip) {
			journal_log(&o->p->j, order[i]->name, "-", "skipped: %s", skip);
			emit(o, ORCH_EV_STEP_SKIP, order[i]->name, "-", 0, "%s", skip);
		}
		free(skip);
	}
}

static void finish(struct orch *o, int rc)
{
	struct journal *j = &o->p->j;
	char *err = NULL;
	pthread_mutex_lock(&j->mu);
	free(j->status);
	j->status = xstrdup(rc == ORCH_OK ? "done" : (o->stop && *o->stop) ? "stopped" : "failed");
	free(j->message);
	j->message = rc == ORCH_OK ? NULL : xstrdup(o->p->fail_msg ? o->p->fail_msg : "failed");
	if (journal_save(j, &err) < 0)
		emit(o, ORCH_EV_INFO, "-", "journal", 0, "%s", err);
	pthread_mutex_unlock(&j->mu);
	free(err);
	journal_log(j, "-", "run", "%s%s%s", j->status, j->message ? ": " : "",
		    j->message ? j->message : "");
}

int orch_run(struct orch *o, bool resume)
{
	struct strv why = {0}, ok = {0};
	char *err = NULL;
	int rc = ORCH_OK;

	priv_init(o);
	const char *kind = o->plan->kind == PLAN_UPGRADE ? "upgrade" : "migration";
	if (resume) {
		if (journal_load(&o->p->j, o->plan->path, true, &err) < 0) {
			emit(o, ORCH_EV_RUN_END, "-", "resume", 0, "%s", err);
			free(err);
			priv_free(o);
			return ORCH_FAILED;
		}
		o->p->have_j = true;
		char *h = journal_hash_file(o->plan->path);
		if (!h || strcmp(h, o->p->j.plan_hash)) {
			emit(o, ORCH_EV_RUN_END, "-", "resume", 0,
			     "%s changed since the run started (journal %s): --resume continues "
			     "only the same plan; restore it, or move the journal away to start "
			     "afresh",
			     o->plan->path, o->p->j.path);
			free(h);
			priv_free(o);
			return ORCH_FAILED;
		}
		free(h);
		if (!strcmp(o->p->j.status, "done")) {
			emit(o, ORCH_EV_RUN_END, "-", "resume", 0,
			     "nothing to resume: the run is done");
			priv_free(o);
			return ORCH_OK;
		}
		o->p->j.resumes++;
		free(o->p->j.status);
		o->p->j.status = xstrdup("running");
		journal_log(&o->p->j, "-", "run", "resumed (%d)", o->p->j.resumes);
	} else {
		if (journal_exists(o->plan->path)) {
			struct journal old;
			if (journal_load(&old, o->plan->path, false, &err) == 0) {
				bool done = !strcmp(old.status, "done");
				char *jp = xstrdup(old.path);
				journal_close(&old);
				if (!done) {
					emit(
					    o, ORCH_EV_RUN_END, "-", "start", 0,
					    "%s holds an unfinished run: continue it with --resume "
					    "(or move it away to start afresh)",
					    jp);
					free(jp);
					priv_free(o);
					return ORCH_FAILED;
				}
				free(jp);
			}
			free(err);
			err = NULL;
		}
		if (journal_create(&o->p->j, o->plan->path, kind, &err) < 0) {
			emit(o, ORCH_EV_RUN_END, "-", "start", 0, "%s", err);
			free(err);
			priv_free(o);
			return ORCH_FAILED;
		}
		o->p->have_j = true;
		journal_log(&o->p->j, "-", "run", "%s %s started", kind, o->plan->path);
	}

	struct kube *k = o->p->kc_ok ? kube_for(o) : NULL;
	emit(o, ORCH_EV_STEP_START, "-", "preflight", 0, "checking the cluster, lbd and the gate");
	preflight(o, k, !resume, &why, &ok);
	if (!why.n && !resume && o->plan->hook_preflight)
		run_hook(o, &why);
	for (size_t i = 0; i < ok.n; i++)
		journal_log(&o->p->j, "-", "preflight", "ok: %s", ok.v[i]);
	if (why.n) {
		struct sbuf b = {0};
		sb_add(&b, "preflight refused to start (%zu reason%s):", why.n,
		       why.n > 1 ? "s" : "");
		for (size_t i = 0; i < why.n; i++)
			sb_add(&b, "\n  - %s", why.v[i]);
		journal_log(&o->p->j, "-", "preflight", "%s", b.s);
		emit(o, ORCH_EV_STEP_FAIL, "-", "preflight", 0, "%s", b.s);
		fail_run(o, ORCH_FAILED, b.s);
		free(b.s);
		rc = ORCH_FAILED;
		if (!resume) {
			/* Nothing was done: leave no journal that would ask for --resume. */
			unlink(o->p->j.path);
			goto out;
		}
		goto finish;
	}
	emit(o, ORCH_EV_STEP_DONE, "-", "preflight", 0, "%zu check(s) passed", ok.n);
	if (!resume) {
		plan_steps(o, k);
		if (journal_save(&o->p->j, &err) < 0) {
			fail_run(o, ORCH_FAILED, err);
			free(err);
			rc = ORCH_FAILED;
			goto out;
		}
	}
	if (pthread_create(&o->p->keeper, NULL, keeper_main, o) == 0)
		o->p->keeper_on = true;
	/* A resumed lease is held again: keep renewing it. */
	for (size_t i = 0; i < o->p->j.n; i++) {
		struct jstep *s = &o->p->j.steps[i];
		if (!strcmp(s->step, "lease") && s->state == JS_DONE) {
			struct jstep *r = journal_find(&o->p->j, s->node, "release");
			const struct plan_node *pn = plan_node_find(o->plan, s->node);
			if (pn && r && r->state != JS_DONE)
				keep_lease(o, s->node, pn->role, true);
		}
	}

	const struct plan_node *order[256];
	size_t nn = node_order(o->plan, order);
	for (size_t i = 0; i < nn && !stopping(o); i++)
		if (o->plan->kind == PLAN_MIGRATION || order[i]->role == PLAN_MASTER)
			run_node(o, &k, order[i]);
	if (!stopping(o) && o->plan->kind == PLAN_UPGRADE) {
		int nt = o->plan->worker_concurrency;
		pthread_t t[100];
		int started = 0;
		for (int i = 0; i < nt && i < 100; i++)
			if (pthread_create(&t[i], NULL, worker_main, o) == 0)
				started++;
		for (int i = 0; i < started; i++)
			pthread_join(t[i], NULL);
	}
	rc = o->p->rc;
	if (rc == ORCH_OK && o->stop && *o->stop) {
		rc = ORCH_FAILED;
		fail_run(o, rc, "interrupted");
	}
finish:
	finish(o, rc);
out:
	emit(o, ORCH_EV_RUN_END, "-", rc == ORCH_OK ? "done" : "stopped", 0, "%s",
	     rc == ORCH_OK ? "every step done" : (o->p->fail_msg ? o->p->fail_msg : "failed"));
	kube_free(&k);
	sv_free(&why);
	sv_free(&ok);
	priv_free(o);
	return rc;
}

/* The gate's answer for node now, from its status. */
static char *gate_answer(json_t *st, const struct plan_node *n)
{
	json_t *d, *r;
	size_t i, j;
	if (!st)
		return NULL;
	json_array_foreach(
	    json_object_get(st, "leases"), i,
	    d) if (!strcmp(jstr(d, "node"), n->name)) return xstrdup("holds a lease now");
	if (n->role == PLAN_MASTER) {
		json_array_foreach(json_object_get(st, "master"), i,
				   d) if (!strcmp(jstr(d, "node"), n->name))
		{
			if (json_is_true(json_object_get(d, "granted")))
				return xstrdup("would be GRANTED");
			struct sbuf b = {0};
			sb_add(&b, "would be REFUSED");
			json_array_foreach(json_object_get(d, "reasons"), j, r)
			    sb_add(&b, "\n        - %s", json_string_value(r));
			return b.s;
		}
		return xstrdup(
		    "not one of the gate's masters (no backend of that name in its pool)");
	}
	d = json_object_get(st, "worker");
	if (json_is_true(json_object_get(d, "granted")))
		return xstrdup("would be GRANTED (a worker now)");
	struct sbuf b = {0};
	sb_add(&b, "would be REFUSED (a worker now)");
	json_array_foreach(json_object_get(d, "reasons"), j, r)
	    sb_add(&b, "\n        - %s", json_string_value(r));
	return b.s;
}

int orch_dry_run(struct orch *o, FILE *out)
{
	const struct plan *pl = o->plan;
	struct strv why = {0}, ok = {0};
	char d1[32], desc[1024], *err = NULL;
	int rc;

	priv_init(o);
	struct kube *k = o->p->kc_ok ? kube_for(o) : NULL;
	if (pl->kind == PLAN_UPGRADE)
		fprintf(out,
			"upgrade %s to %s: masters one at a time, then workers (%d at a time)\n",
			pl->path, pl->version, pl->worker_concurrency);
	else
		fprintf(out, "migration %s: %zu replacement(s), %zu new master(s)\n", pl->path,
			pl->nreplace, pl->nadd);
	fprintf(out, "lbd: %s, pool %s; soak %s\n\n", pl->lbd_url ? pl->lbd_url : pl->lbd_socket,
		pl->pool, dur(pl->soak_ms, d1, sizeof(d1)));
	preflight(o, k, true, &why, &ok);
	fprintf(out, "PREFLIGHT\n");
	for (size_t i = 0; i < ok.n; i++)
		fprintf(out, "  ok      %s\n", ok.v[i]);
	for (size_t i = 0; i < why.n; i++)
		fprintf(out, "  REFUSE  %s\n", why.v[i]);
	if (pl->hook_preflight) {
		struct plan_vars v = {.version = pl->version, .date = o->p->date};
		char *cmd = plan_expand(pl->hook_preflight, &v, &err, NULL);
		fprintf(out, "  hook    would run: %s\n", cmd ? cmd : err);
		free(cmd);
		xfree(&err);
	}
	json_t *st = gate_status(o, &err);
	xfree(&err);
	fprintf(out, "\nSTEPS\n");
	const struct plan_node *order[256];
	size_t nn = node_order(pl, order), num = 0;
	for (size_t i = 0; i < nn; i++) {
		const struct plan_node *n = order[i];
		const char *names[16];
		size_t ns = steps_for(pl, n, names);
		struct kube_node kn;
		char *ver = NULL, *gate = NULL;
		bool skip = false;
		if (k && node_get(k, n->name, &kn, &err) == 1) {
			ver = xstrdup(kn.kubelet_version ? kn.kubelet_version : "?");
			skip =
			    pl->kind == PLAN_UPGRADE && at_target(kn.kubelet_version, pl->version);
			kube_node_clear(&kn);
		}
		xfree(&err);
		fprintf(out, "%s (%s%s%s)", n->name, plan_role_name(n->role), ver ? ", now " : "",
			ver ? ver : "");
		if (skip) {
			fprintf(out, ": skipped, already at %s\n", pl->version);
			free(ver);
			continue;
		}
		if (ns && !strcmp(names[0], "lease")) {
			gate = gate_answer(st, n);
			fprintf(out, "\n    gate now: %s",
				gate ? gate : "unknown (gate not reachable)");
			free(gate);
		}
		fprintf(out, "\n");
		for (size_t s = 0; s < ns; s++) {
			describe(o, n, names[s], desc, sizeof(desc));
			fprintf(out, "  %3zu. %-14s %s\n", ++num, names[s], desc);
		}
		free(ver);
	}
	json_decref(st);
	rc = why.n ? ORCH_FAILED : ORCH_OK;
	fprintf(out, "\n%s\n",
		rc == ORCH_OK
		    ? "dry run: the preflight passes; nothing was changed"
		    : "dry run: the preflight would refuse to start; nothing was changed");
	kube_free(&k);
	sv_free(&why);
	sv_free(&ok);
	priv_free(o);
	return rc;
}

int orch_status(const char *plan_path, bool json, FILE *out)
{
	struct journal j;
	char *err = NULL;
	if (journal_load(&j, plan_path, false, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		free(err);
		return ORCH_FAILED;
	}
	if (json) {
		FILE *f = fopen(j.path, "r");
		int ch;
		while (f && (ch = getc(f)) != EOF)
			putc(ch, out);
		if (f)
			fclose(f);
		journal_close(&j);
		return ORCH_OK;
	}
	size_t counts[5] = {0};
	for (size_t i = 0; i < j.n; i++)
		counts[j.steps[i].state]++;
	fprintf(out, "%s %s: %s (started %s, updated %s%s)\n", j.kind, plan_path, j.status,
		j.started ? j.started : "?", j.updated ? j.updated : "?",
		j.resumes ? ", resumed" : "");
	fprintf(out, "steps: %zu done, %zu skipped, %zu pending, %zu running, %zu failed\n\n",
		counts[JS_DONE], counts[JS_SKIPPED], counts[JS_PENDING], counts[JS_RUNNING],
		counts[JS_FAILED]);
	const char *cur = NULL;
	for (size_t i = 0; i < j.n; i++) {
		struct jstep *s = &j.steps[i];
		if (!cur || strcmp(cur, s->node))
			fprintf(out, "%s\n", s->node);
		cur = s->node;
		fprintf(out, "  %-14s %-8s %s%s%s\n", s->step, journal_state_name(s->state),
			s->finished ? s->finished : (s->started ? s->started : ""),
			s->note ? "  " : "", s->note ? s->note : "");
	}
	if (j.message)
		fprintf(out, "\n%s\n", j.message);
	fprintf(out, "\nhistory: %s\n", j.log_path);
	journal_close(&j);
	return ORCH_OK;
}
