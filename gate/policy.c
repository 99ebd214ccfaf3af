/*
 * policy.c - see policy.h. Every rule appends a line to the arithmetic (what
 * it saw and computed) and, when it says no, a reason an operator can act
 * on. Rules never stop at the first failure: the operator should see all
 * of them at once rather than fix one and be refused for the next.
 */
#define _GNU_SOURCE
#include "gate/policy.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/xmalloc.h"
#include "gate/tz.h"

void gate_text_add(struct gate_text *t, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	BUG_ON(!s);
	t->v = xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
	t->v[t->n++] = s;
}

void gate_text_free(struct gate_text *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i]);
	xfree(&t->v);
	t->n = 0;
}

void gate_decision_free(struct gate_decision *d)
{
	gate_text_free(&d->reasons);
	gate_text_free(&d->arithmetic);
}

int gate_quorum(int n)
{
	return kube_etcd_quorum(n);
}

static const struct gate_member *member_of(const struct gate_conf *conf, const char *node)
{
	for (size_t i = 0; i < conf->nmembers; i++)
		if (strcmp(conf->members[i].node, node) == 0)
			return &conf->members[i];
	return NULL;
}

const char *gate_node_backend(const struct gate_conf *conf, const char *node)
{
	const struct gate_member *m = member_of(conf, node);
	return m && m->backend ? m->backend : node;
}

const char *gate_node_etcd(const struct gate_conf *conf, const char *node)
{
	const struct gate_member *m = member_of(conf, node);
	return m && m->etcd ? m->etcd : node;
}

/* A refusal is also a line of arithmetic, so status shows it in place. */
static void refuse(struct gate_decision *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void refuse(struct gate_decision *d, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	BUG_ON(!s);
	gate_text_add(&d->reasons, "%s", s);
	gate_text_add(&d->arithmetic, "NO: %s", s);
	free(s);
}

/* Known and fresh? Otherwise refuses, naming the input. */
static bool source_ok(const struct gate_source *s, const struct gate_inputs *in, const char *what,
		      struct gate_decision *d)
{
	if (!s->known) {
		refuse(d, "%s: unknown (%s); the gate fails closed until it answers", what,
		       s->why ? s->why : "no answer yet");
		return false;
	}
	if (in->max_age_ms > 0 && in->now_ms - s->at_ms > in->max_age_ms) {
		refuse(d,
		       "%s: last answer %" PRId64 "s ago, older than %" PRId64
		       "s; the gate fails closed until it answers",
		       what, (in->now_ms - s->at_ms) / 1000, in->max_age_ms / 1000);
		return false;
	}
	return true;
}

/* Known and answered within max_age (older answers count as unknown). */
static bool fresh(const struct gate_source *s, const struct gate_inputs *in)
{
	return s->known && !(in->max_age_ms > 0 && in->now_ms - s->at_ms > in->max_age_ms);
}

/* ---- lease holders -------------------------------------------------------------------- */

static bool holds_any(const struct lease_table *t, const char *name)
{
	return lease_table_find_const(t, name) != NULL;
}

/* ---- concurrency ---------------------------------------------------------------------- */

static void describe_holders(const struct lease_table *t, enum gate_role role, const char *except,
			     int64_t now_ms, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < t->n && off < len; i++) {
		const struct gate_lease *l = &t->v[i];
		char slot[32];
		if (l->role != role || strcmp(l->node, except) == 0)
			continue;
		off += (size_t)snprintf(
		    buf + off, len - off, "%s%s held by %s (fence %" PRIu64 "%s)", off ? ", " : "",
		    gate_slot_name(role, l->slot, slot, sizeof(slot)), l->node, l->fence,
		    gate_lease_stale(l, now_ms) ? ", STALE: holder stopped renewing" : "");
	}
}

static const struct gate_node_in *node_in(const struct gate_inputs *in, const char *name)
{
	for (size_t i = 0; i < in->nodes.n; i++)
		if (strcmp(in->nodes.v[i].name, name) == 0)
			return &in->nodes.v[i];
	return NULL;
}

static const char *node_label(const struct gate_node_in *n, const char *key)
{
	for (size_t i = 0; n && i < n->nlabels; i++)
		if (strcmp(n->labels[i].key, key) == 0)
			return n->labels[i].value;
	return NULL;
}

static void rule_concurrency(const struct gate_conf *conf, const struct gate_inputs *in,
			     const struct lease_table *t, const struct gate_request *req,
			     bool kube_ok, struct gate_decision *d)
{
	int max = req->role == GATE_ROLE_MASTER ? conf->conc_masters : conf->conc_workers;
	const char *rn = gate_role_name(req->role);
	size_t used = 0;
	char held[1024];

	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].role == req->role && strcmp(t->v[i].node, req->node) != 0)
			used++;
	d->slot = lease_table_free_slot(t, req->role, max);
	/* A reload that lowers the cap leaves leases in slots past it: a free
	 * low slot is not room then. */
	if (used >= (size_t)max)
		d->slot = -1;
	describe_holders(t, req->role, req->node, in->now_ms, held, sizeof(held));
	if (d->slot < 0)
		refuse(d,
		       "concurrency: %zu of %d %s slot(s) taken (%s); wait for it to be released",
		       used, max, rn, held);
	else
		gate_text_add(&d->arithmetic, "concurrency: %zu of %d %s slot(s) taken%s%s%s", used,
			      max, rn, used ? " (" : "", held, used ? ")" : "");

	for (size_t c = 0; c < conf->nper_label; c++) {
		const struct gate_label_cap *cap = &conf->per_label[c];
		const struct gate_node_in *n;
		const char *v;
		size_t same = 0;

		if (!conf->kubeconfig) {
			refuse(
			    d,
			    "concurrency per %s: needs node labels, but gate.kubeconfig is not set",
			    cap->label);
			continue;
		}
		if (!kube_ok)
			continue; /* already refused as unknown */
		if (!(n = node_in(in, req->node)))
			continue; /* refused by the nodes rule */
		v = node_label(n, cap->label);
		if (!v)
			v = "";
		for (size_t i = 0; i < t->n; i++) {
			const char *lv = gate_lease_label(&t->v[i], cap->label);
			if (strcmp(t->v[i].node, req->node) != 0 && strcmp(lv ? lv : "", v) == 0)
				same++;
		}
		if ((int)same >= cap->max)
			refuse(d, "concurrency per %s: %zu of %d lease(s) already held where %s=%s",
			       cap->label, same, cap->max, cap->label, *v ? v : "(unset)");
		else
			gate_text_add(&d->arithmetic, "concurrency per %s: %zu of %d where %s=%s",
				      cap->label, same, cap->max, cap->label, *v ? v : "(unset)");
	}
}

/* ---- windows -------------------------------------------------------------------------- */

static int day_index(const char *s)
{
	static const char *const days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
	for (int i = 0; i < 7; i++)
		if (strcmp(days[i], s) == 0)
			return i;
	return -1;
}

static int hhmm(const char *s)
{
	int h, m;
	if (!s || sscanf(s, "%d:%d", &h, &m) != 2)
		return -1;
	return h * 60 + m;
}

static bool has_day(const struct gate_window *w, int wday)
{
	for (size_t i = 0; i < w->ndays; i++)
		if (day_index(w->days[i]) == wday)
			return true;
	return false;
}

static void window_text(const struct gate_window *w, char *buf, size_t len)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < w->ndays && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "", w->days[i]);
	if (off < len)
		snprintf(buf + off, len - off, " %s-%s %s", w->start, w->end,
			 w->tz ? w->tz : "UTC");
}

bool gate_window_open(const struct gate_conf *conf, int64_t now_ms, char **which)
{
	static const char *const dn[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	struct gate_text why = {0};
	bool open = false;

	*which = NULL;
	if (conf->nwindows == 0) {
		*which = xstrdup("no windows configured: always open");
		return true;
	}
	for (size_t i = 0; i < conf->nwindows && !open; i++) {
		const struct gate_window *w = &conf->windows[i];
		const char *zone = w->tz ? w->tz : "UTC", *err = NULL;
		struct tm tm;
		char wt[128];
		int start = hhmm(w->start), end = hhmm(w->end), now;

		window_text(w, wt, sizeof(wt));
		if (tz_localtime(zone, now_ms / 1000, &tm, &err) < 0) {
			gate_text_add(&why, "window %s: time zone %s: %s", wt, zone, err);
			continue;
		}
		now = tm.tm_hour * 60 + tm.tm_min;
		if (start == end) /* a whole day */
			open = has_day(w, tm.tm_wday);
		else if (start < end)
			open = has_day(w, tm.tm_wday) && now >= start && now < end;
		else /* past midnight: belongs to the day it started */
			open = (has_day(w, tm.tm_wday) && now >= start) ||
			       (has_day(w, (tm.tm_wday + 6) % 7) && now < end);
		if (open)
			*which = xasprintf("inside window %s (now %s %02d:%02d %s)", wt,
					   dn[tm.tm_wday], tm.tm_hour, tm.tm_min, zone);
		else
			gate_text_add(&why, "%s (now %s %02d:%02d there)", wt, dn[tm.tm_wday],
				      tm.tm_hour, tm.tm_min);
	}
	if (!open) {
		size_t len = 64, off;
		for (size_t i = 0; i < why.n; i++)
			len += strlen(why.v[i]) + 2;
		*which = xmalloc(len);
		off = (size_t)snprintf(*which, len, "outside every maintenance window: ");
		for (size_t i = 0; i < why.n; i++)
			off += (size_t)snprintf(*which + off, len - off, "%s%s", i ? "; " : "",
						why.v[i]);
	}
	gate_text_free(&why);
	return open;
}

/* ---- nodes and alerts ----------------------------------------------------------------- */

static void rule_nodes(const struct gate_conf *conf, const struct gate_inputs *in,
		       const struct lease_table *t, const struct gate_request *req, bool kube_ok,
		       struct gate_decision *d)
{
	size_t bad = 0;

	if (!conf->kubeconfig) {
		if (conf->require_all_nodes_ready)
			refuse(d,
			       "nodes: require_all_nodes_ready is set but gate.kubeconfig is not");
		return;
	}
	if (!kube_ok)
		return;
	if (!req->hypothetical && !node_in(in, req->node)) {
		if (!req->stricter)
			refuse(d,
			       "nodes: %s is not a node of the cluster (check the name: it must "
			       "match the Kubernetes node name)",
			       req->node);
		else if (req->release_on_outcomes)
			/* gate_lease_back would take it for deleted and release it at once. */
			refuse(d,
			       "nodes: %s is not a node of the cluster yet, so a lease released on "
			       "outcomes would be released at once; leave release_on_outcomes out "
			       "and release it once the node has joined",
			       req->node);
		else
			gate_text_add(&d->arithmetic,
				      "nodes: %s is not a node of the cluster yet: a master lease "
				      "while it joins",
				      req->node);
	}
	if (!conf->require_all_nodes_ready) {
		gate_text_add(&d->arithmetic,
			      "nodes: %zu in the cluster (require_all_nodes_ready off)",
			      in->nodes.n);
		return;
	}
	for (size_t i = 0; i < in->nodes.n; i++) {
		const struct gate_node_in *n = &in->nodes.v[i];
		if (strcmp(n->name, req->node) == 0 || holds_any(t, n->name))
			continue;
		if (!n->ready) {
			refuse(d, "nodes: %s is NotReady; every other node must be Ready", n->name);
			bad++;
		}
		if (n->unschedulable) {
			refuse(d,
			       "nodes: %s is cordoned; uncordon it or wait for its work to finish",
			       n->name);
			bad++;
		}
	}
	if (!bad)
		gate_text_add(&d->arithmetic,
			      "nodes: every other node Ready and schedulable (%zu nodes, lease "
			      "holders excepted)",
			      in->nodes.n);
}

static void rule_alerts(const struct gate_conf *conf, const struct gate_inputs *in,
			struct gate_decision *d)
{
	if (!conf->alerts_prometheus_url)
		return;
	if (!source_ok(&in->alerts.src, in, "alerts (Prometheus)", d))
		return;
	for (size_t i = 0; i < in->alerts.n; i++)
		refuse(d, "alerts: %s is firing (filter %s)", in->alerts.firing[i],
		       conf->alerts_filter ? conf->alerts_filter : "none");
	if (in->alerts.n == 0)
		gate_text_add(&d->arithmetic, "alerts: none firing (filter %s)",
			      conf->alerts_filter ? conf->alerts_filter : "none");
}

/* ---- quorum: pool --------------------------------------------------------------------- */

static const struct gate_backend_in *backend_in(const struct gate_inputs *in, const char *name)
{
	for (size_t i = 0; i < in->pool.n; i++)
		if (strcmp(in->pool.v[i].name, name) == 0)
			return &in->pool.v[i];
	return NULL;
}

/* Is name (a backend or an etcd member, as node_to maps nodes to them)
 * going down by agreement: req's node, or another master holding a lease? */
static bool leaving(const struct gate_conf *conf, const struct lease_table *t, const char *req_node,
		    const char *name,
		    const char *(*node_to)(const struct gate_conf *, const char *))
{
	if (strcmp(node_to(conf, req_node), name) == 0)
		return true;
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].role == GATE_ROLE_MASTER && strcmp(t->v[i].node, req_node) != 0 &&
		    strcmp(node_to(conf, t->v[i].node), name) == 0)
			return true;
	return false;
}

static void rule_pool(const struct gate_conf *conf, const struct gate_inputs *in,
		      const struct lease_table *t, const struct gate_request *req,
		      struct gate_decision *d)
{
	char what[160], down[1024];
	int n = (int)in->pool.n, up = 0, after = 0, q = gate_quorum(n);
	size_t off = 0;

	snprintf(what, sizeof(what), "pool %s", conf->quorum_pool);
	if (!source_ok(&in->pool.src, in, what, d))
		return;
	down[0] = '\0';
	for (size_t i = 0; i < in->pool.n; i++) {
		const struct gate_backend_in *b = &in->pool.v[i];
		/* A leaving backend counts as lost even if it is down already: an
		 * unhealthy member plus a lease on it leaves no margin either. */
		if (leaving(conf, t, req->node, b->name, gate_node_backend))
			after--;
		if (b->up && b->serving) {
			up++;
			after++;
		} else if (off < sizeof(down) && !b->serving) {
			off +=
			    (size_t)snprintf(down + off, sizeof(down) - off,
					     "; %s takes no traffic (drained, disabled or weight "
					     "0): counted as lost",
					     b->name);
		} else if (off < sizeof(down)) {
			off += (size_t)snprintf(down + off, sizeof(down) - off, "; %s down: %s",
						b->name,
						b->detail ? b->detail : "no check passed yet");
		}
	}
	if (n == 0) {
		refuse(d, "%s: has no backends, so there is no quorum to keep", what);
		return;
	}
	if (after < q)
		refuse(d,
		       "%s: %d of %d apiservers up, quorum %d: granting a master lease would "
		       "leave %d%s",
		       what, up, n, q, after, down);
	else
		gate_text_add(&d->arithmetic,
			      "%s: %d of %d apiservers up, quorum %d: a master lease leaves %d%s",
			      what, up, n, q, after, down);
	if (!backend_in(in, gate_node_backend(conf, req->node)))
		gate_text_add(&d->arithmetic, "%s: note: %s has no backend named %s", what,
			      req->node, gate_node_backend(conf, req->node));
}

/* ---- quorum: etcd --------------------------------------------------------------------- */

bool gate_etcd_member_healthy(const struct gate_etcd_in *e, uint64_t id, const char **why)
{
	struct kube_etcd c = gate_etcd_cluster(e);
	return kube_etcd_member_healthy(&c, id, why);
}

static void refuse_etcd(void *d, const char *msg)
{
	refuse(d, "etcd: %s", msg);
}

static void rule_etcd(const struct gate_conf *conf, const struct gate_inputs *in,
		      const struct lease_table *t, const struct gate_request *req,
		      struct gate_decision *d)
{
	const struct gate_etcd_in *e = &in->etcd;
	struct kube_etcd c = gate_etcd_cluster(e);
	int n = 0, healthy = 0, after = 0, learners = 0;
	char sick[1024];
	size_t off = 0;
	bool mine = false;

	if (!source_ok(&e->src, in, "etcd", d))
		return;
	/* Endpoints that answered must agree on the cluster ID and member list. */
	if (!kube_etcd_agree(&c, refuse_etcd, d))
		return;
	for (size_t i = 0; i < e->nviews; i++)
		for (size_t a = 0; a < e->views[i].nalarms; a++)
			refuse(d, "etcd: alarm %s; disarm it (etcdctl alarm disarm) once fixed",
			       e->views[i].alarms[a]);
	sick[0] = '\0';
	for (size_t i = 0; i < e->nmembers; i++) {
		const struct kube_etcd_member *m = &e->members[i];
		const char *why = NULL, *name = m->name && *m->name ? m->name : "(unstarted)";
		if (m->learner) {
			learners++;
			continue;
		}
		n++;
		if (strcmp(name, gate_node_etcd(conf, req->node)) == 0)
			mine = true;
		if (leaving(conf, t, req->node, name, gate_node_etcd))
			after--; /* lost while leased, healthy now or not (see rule_pool) */
		if (gate_etcd_member_healthy(e, m->id, &why)) {
			healthy++;
			after++;
		} else if (off < sizeof(sick)) {
			off += (size_t)snprintf(sick + off, sizeof(sick) - off,
						"; %s unhealthy: %s", name, why);
		}
	}
	int q = gate_quorum(n);
	char lt[48] = "";
	if (learners)
		snprintf(lt, sizeof(lt), " (%d learner(s) not counted)", learners);
	if (n == 0)
		refuse(d, "etcd: no voting members in the member list");
	else if (after < q)
		refuse(d,
		       "etcd: %d of %d voting members healthy, quorum %d: granting a master lease "
		       "would leave %d%s%s",
		       healthy, n, q, after, lt, sick);
	else
		gate_text_add(&d->arithmetic,
			      "etcd: %d of %d voting members healthy, quorum %d: a master lease "
			      "leaves %d%s%s",
			      healthy, n, q, after, lt, sick);
	if (!mine)
		gate_text_add(&d->arithmetic, "etcd: note: %s is not a voting member named %s",
			      req->node, gate_node_etcd(conf, req->node));
}

/* A worker lease for a node that is a quorum member would bypass the quorum rules. */
static void rule_role(const struct gate_conf *conf, const struct gate_inputs *in,
		      const struct gate_request *req, struct gate_decision *d)
{
	if (req->role != GATE_ROLE_WORKER)
		return;
	if (conf->quorum_pool && in->pool.src.known &&
	    backend_in(in, gate_node_backend(conf, req->node)))
		refuse(d, "role: %s is backend %s of pool %s; ask for a master lease", req->node,
		       gate_node_backend(conf, req->node), conf->quorum_pool);
	if (conf->netcd_endpoints && in->etcd.src.known) {
		for (size_t i = 0; i < in->etcd.nmembers; i++) {
			const struct gate_etcd_member *m = &in->etcd.members[i];
			if (m->name && strcmp(m->name, gate_node_etcd(conf, req->node)) == 0)
				refuse(d, "role: %s is etcd member %s; ask for a master lease",
				       req->node, m->name);
		}
	}
}

void gate_decide(const struct gate_conf *conf, const struct gate_inputs *in,
		 const struct lease_table *leases, const struct gate_request *req,
		 struct gate_decision *d)
{
	bool kube_ok = false;
	char *win = NULL;

	memset(d, 0, sizeof(*d));
	d->slot = -1;
	if (conf->kubeconfig)
		kube_ok = source_ok(&in->nodes.src, in, "kubernetes nodes", d);
	rule_concurrency(conf, in, leases, req, kube_ok, d);
	if (gate_window_open(conf, in->now_ms, &win))
		gate_text_add(&d->arithmetic, "window: %s", win);
	else
		refuse(d, "window: %s", win);
	free(win);
	rule_alerts(conf, in, d);
	rule_nodes(conf, in, leases, req, kube_ok, d);
	rule_role(conf, in, req, d);
	if (req->stricter)
		gate_text_add(
		    &d->arithmetic,
		    "role: %s asked for a master lease where the gate counts a worker (or "
		    "cannot tell): the master rules decide",
		    req->node);
	if (req->role == GATE_ROLE_MASTER) {
		if (!conf->quorum_pool && !conf->netcd_endpoints)
			gate_text_add(&d->arithmetic,
				      "quorum: no quorum.pool or quorum.etcd "
				      "configured; only concurrency limits masters");
		if (conf->quorum_pool)
			rule_pool(conf, in, leases, req, d);
		if (conf->netcd_endpoints)
			rule_etcd(conf, in, leases, req, d);
	}
	d->granted = d->reasons.n == 0;
	if (!d->granted)
		d->slot = -1;
}

/* ---- roles and holders ---------------------------------------------------------------- */

static bool is_etcd_member(const struct gate_conf *conf, const struct gate_inputs *in,
			   const char *node)
{
	for (size_t i = 0; i < in->etcd.nmembers; i++)
		if (in->etcd.members[i].name &&
		    strcmp(in->etcd.members[i].name, gate_node_etcd(conf, node)) == 0)
			return true;
	return false;
}

/* A source the role needs that did not answer, or answered longer ago than
 * max_age: "etcd unknown (why)", "pool apiservers stale (last answer 60s
 * ago)". Stale is unknown, as everywhere in the policy: a node added to etcd
 * since the last answer is a master the gate would not see. NULL if fresh. */
static char *role_source_unknown(const struct gate_source *s, const struct gate_inputs *in,
				 const char *what)
{
	if (!s->known)
		return xasprintf("%s unknown (%s)", what, s->why ? s->why : "no answer");
	if (in->max_age_ms > 0 && in->now_ms - s->at_ms > in->max_age_ms)
		return xasprintf("%s stale (last answer %" PRId64 "s ago)", what,
				 (in->now_ms - s->at_ms) / 1000);
	return NULL;
}

int gate_node_role(const struct gate_conf *conf, const struct gate_inputs *in, const char *node,
		   enum gate_role *role, char **why)
{
	struct gate_text unknown = {0};
	const struct gate_node_in *n;
	char what[160], *u;

	*role = GATE_ROLE_MASTER;
	/* Named in members: the operator said it is a master. */
	const struct gate_member *m = member_of(conf, node);
	if (m && (m->backend || m->etcd))
		return 0;
	/* Evidence of a master counts even from a stale answer (a stale answer
	 * never makes a worker: the master rules then refuse as unknown). */
	if (conf->quorum_pool) {
		snprintf(what, sizeof(what), "pool %s", conf->quorum_pool);
		if (in->pool.src.known && backend_in(in, gate_node_backend(conf, node)))
			goto master;
		if ((u = role_source_unknown(&in->pool.src, in, what))) {
			gate_text_add(&unknown, "%s", u);
			free(u);
		}
	}
	if (conf->netcd_endpoints) {
		if (in->etcd.src.known && is_etcd_member(conf, in, node))
			goto master;
		if ((u = role_source_unknown(&in->etcd.src, in, "etcd"))) {
			gate_text_add(&unknown, "%s", u);
			free(u);
		}
	}
	if (conf->kubeconfig) {
		if (in->nodes.src.known && (n = node_in(in, node)) &&
		    (node_label(n, "node-role.kubernetes.io/control-plane") ||
		     node_label(n, "node-role.kubernetes.io/master")))
			goto master;
		if ((u = role_source_unknown(&in->nodes.src, in, "kubernetes nodes"))) {
			gate_text_add(&unknown, "%s", u);
			free(u);
		}
	}
	if (unknown.n > 0) {
		size_t len = 64 + strlen(node), off;
		for (size_t i = 0; i < unknown.n; i++)
			len += strlen(unknown.v[i]) + 2;
		*why = xmalloc(len);
		off =
		    (size_t)snprintf(*why, len, "role: cannot tell whether %s is a master: ", node);
		for (size_t i = 0; i < unknown.n; i++)
			off += (size_t)snprintf(*why + off, len - off, "%s%s", i ? "; " : "",
						unknown.v[i]);
		gate_text_free(&unknown);
		return -1;
	}
	*role = GATE_ROLE_WORKER;
	return 0;
master: /* an earlier source may have been unknown: one master's word is enough */
	gate_text_free(&unknown);
	return 0;
}

int gate_request_role(const struct gate_conf *conf, const struct gate_inputs *in, const char *node,
		      const char *asked, bool admin, struct gate_request *req, char **why)
{
	enum gate_role judged;
	char *unsure = NULL;
	int placed = gate_node_role(conf, in, node, &judged, &unsure);

	req->node = node;
	req->stricter = false;
	if (placed == 0 && (!asked || strcmp(asked, gate_role_name(judged)) == 0)) {
		req->role = judged;
		return 0;
	}
	if (!asked || strcmp(asked, gate_role_name(GATE_ROLE_MASTER)) != 0) {
		if (placed < 0) {
			*why = unsure;
			return -1;
		}
		*why =
		    xasprintf("role: %s is a %s, by what the gate knows of the cluster; it asked "
			      "for a %s lease",
			      node, gate_role_name(judged), asked);
		return -1;
	}
	/* Asked master: only an admin (lbctl migrate) may. A node's own token
	 * could otherwise take the one master slot for a name no source counts
	 * (a worker not yet registered, or one deleted with its token left in
	 * tokens_file), and no outcome would ever give it back; a running
	 * worker's would get past concurrency.workers by the master slot. */
	if (!admin) {
		if (placed < 0) {
			*why = unsure;
			return -1;
		}
		*why =
		    xasprintf("role: %s is a %s, by what the gate knows of the cluster; it asked "
			      "for a master lease, which only an admin gives to a node the gate "
			      "does not count as a master (a master about to join: lbctl migrate)",
			      node, gate_role_name(judged));
		return -1;
	}
	free(unsure);
	req->role = GATE_ROLE_MASTER;
	req->stricter = true;
	return 0;
}

enum gate_hold gate_hold_check(const struct lease_table *t, const char *node, const char *holder,
			       bool admin, char **why)
{
	const struct gate_lease *l = lease_table_find_const(t, node);
	char since[32];

	if (!l)
		return GATE_HOLD_NEW;
	if (admin || (l->holder && strcmp(l->holder, holder) == 0))
		return GATE_HOLD_RENEW;
	time_t sec = (time_t)(l->created_ms / 1000);
	struct tm tm;
	gmtime_r(&sec, &tm);
	strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
	*why = xasprintf("%s is held by %s since %s (fence %" PRIu64 "); only its holder or an "
			 "admin may renew or release it",
			 node, l->holder ? l->holder : "admin", since, l->fence);
	return GATE_HOLD_REFUSED;
}

/* ---- outcomes ------------------------------------------------------------------------- */

bool gate_lease_back(const struct gate_conf *conf, const struct gate_inputs *in,
		     const struct gate_lease *l, bool *gone, char **why)
{
	const struct gate_node_in *n;
	struct gate_text miss = {0};
	bool back;

	*gone = false;
	*why = NULL;
	if (!conf->kubeconfig) {
		*why = xstrdup("no kubeconfig: only the holder or an admin can release it");
		return false;
	}
	if (!fresh(&in->nodes.src, in)) {
		*why = xstrdup("kubernetes nodes unknown");
		return false;
	}
	if (!(n = node_in(in, l->node))) {
		*gone = true;
		*why = xstrdup("node deleted from the cluster");
		return false;
	}
	if (!l->boot_id || !n->boot_id)
		gate_text_add(&miss, "bootID unknown");
	else if (strcmp(l->boot_id, n->boot_id) == 0)
		gate_text_add(&miss, "not rebooted yet (bootID unchanged)");
	if (!n->ready)
		gate_text_add(&miss, "NotReady");
	if (l->role == GATE_ROLE_MASTER && conf->quorum_pool) {
		const struct gate_backend_in *b = backend_in(in, gate_node_backend(conf, l->node));
		if (!fresh(&in->pool.src, in))
			gate_text_add(&miss, "pool unknown");
		else if (b && !b->up)
			gate_text_add(&miss, "backend %s not up (%s)", b->name,
				      b->detail ? b->detail : "no check passed yet");
		else if (b && !b->serving)
			gate_text_add(&miss,
				      "backend %s takes no traffic yet (drained, disabled "
				      "or weight 0)",
				      b->name);
	}
	if (l->role == GATE_ROLE_MASTER && conf->netcd_endpoints) {
		const char *name = gate_node_etcd(conf, l->node), *w = NULL;
		if (!fresh(&in->etcd.src, in)) {
			gate_text_add(&miss, "etcd unknown");
		} else {
			for (size_t i = 0; i < in->etcd.nmembers; i++)
				if (in->etcd.members[i].name &&
				    strcmp(in->etcd.members[i].name, name) == 0 &&
				    !gate_etcd_member_healthy(&in->etcd, in->etcd.members[i].id,
							      &w))
					gate_text_add(&miss, "etcd member %s unhealthy (%s)", name,
						      w);
		}
	}
	back = miss.n == 0;
	if (!back) {
		size_t len = 1, off = 0;
		for (size_t i = 0; i < miss.n; i++)
			len += strlen(miss.v[i]) + 2;
		*why = xmalloc(len);
		(*why)[0] = '\0';
		for (size_t i = 0; i < miss.n; i++)
			off += (size_t)snprintf(*why + off, len - off, "%s%s", i ? ", " : "",
						miss.v[i]);
	}
	gate_text_free(&miss);
	return back;
}

void gate_outcomes(const struct gate_conf *conf, const struct gate_inputs *in,
		   struct lease_table *t, struct gate_text *nodes, struct gate_text *why)
{
	for (size_t i = 0; i < t->n; i++) {
		struct gate_lease *l = &t->v[i];
		bool gone = false;
		char *miss = NULL;

		if (!l->release_on_outcomes)
			continue; /* its holder releases it (the orchestrator, FleetLock) */
		if (gate_lease_back(conf, in, l, &gone, &miss)) {
			if (!l->back_since_ms)
				l->back_since_ms = in->now_ms;
			if (in->now_ms - l->back_since_ms >= conf->soak_ms) {
				gate_text_add(nodes, "%s", l->node);
				gate_text_add(
				    why, "%s is back (new bootID, Ready%s) for %" PRId64 "s",
				    l->node,
				    l->role == GATE_ROLE_MASTER ? ", backend up, etcd healthy" : "",
				    (in->now_ms - l->back_since_ms) / 1000);
			}
		} else {
			l->back_since_ms = 0;
			if (gone) {
				gate_text_add(nodes, "%s", l->node);
				gate_text_add(why, "%s was deleted from the cluster", l->node);
			}
		}
		free(miss);
	}
}

/* ---- inputs lifetime ------------------------------------------------------------------ */

static void source_free(struct gate_source *s)
{
	xfree(&s->why);
}

static void labels_free(struct gate_label *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(l[i].key);
		free(l[i].value);
	}
	free(l);
}

void gate_inputs_free(struct gate_inputs *in)
{
	source_free(&in->pool.src);
	for (size_t i = 0; i < in->pool.n; i++) {
		free(in->pool.v[i].name);
		free(in->pool.v[i].detail);
	}
	free(in->pool.v);
	source_free(&in->etcd.src);
	kube_etcd_members_free(in->etcd.members, in->etcd.nmembers);
	kube_etcd_views_free(in->etcd.views, in->etcd.nviews);
	source_free(&in->nodes.src);
	for (size_t i = 0; i < in->nodes.n; i++) {
		free(in->nodes.v[i].name);
		free(in->nodes.v[i].boot_id);
		labels_free(in->nodes.v[i].labels, in->nodes.v[i].nlabels);
	}
	free(in->nodes.v);
	source_free(&in->alerts.src);
	for (size_t i = 0; i < in->alerts.n; i++)
		free(in->alerts.firing[i]);
	free(in->alerts.firing);
	memset(in, 0, sizeof(*in));
}

static char *dup0(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void source_copy(struct gate_source *d, const struct gate_source *s)
{
	*d = *s;
	d->why = dup0(s->why);
}

void gate_inputs_copy(struct gate_inputs *dst, const struct gate_inputs *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->now_ms = src->now_ms;
	dst->max_age_ms = src->max_age_ms;

	source_copy(&dst->pool.src, &src->pool.src);
	dst->pool.n = src->pool.n;
	dst->pool.v = xcalloc(src->pool.n + 1, sizeof(*dst->pool.v));
	for (size_t i = 0; i < src->pool.n; i++) {
		dst->pool.v[i].name = dup0(src->pool.v[i].name);
		dst->pool.v[i].up = src->pool.v[i].up;
		dst->pool.v[i].serving = src->pool.v[i].serving;
		dst->pool.v[i].detail = dup0(src->pool.v[i].detail);
	}

	source_copy(&dst->etcd.src, &src->etcd.src);
	dst->etcd.nmembers = src->etcd.nmembers;
	dst->etcd.members = kube_etcd_members_dup(src->etcd.members, src->etcd.nmembers);
	dst->etcd.nviews = src->etcd.nviews;
	dst->etcd.views = kube_etcd_views_dup(src->etcd.views, src->etcd.nviews);

	source_copy(&dst->nodes.src, &src->nodes.src);
	dst->nodes.n = src->nodes.n;
	dst->nodes.v = xcalloc(src->nodes.n + 1, sizeof(*dst->nodes.v));
	for (size_t i = 0; i < src->nodes.n; i++) {
		const struct gate_node_in *s = &src->nodes.v[i];
		struct gate_node_in *d = &dst->nodes.v[i];
		*d = *s;
		d->name = dup0(s->name);
		d->boot_id = dup0(s->boot_id);
		d->labels = xcalloc(s->nlabels + 1, sizeof(*d->labels));
		for (size_t l = 0; l < s->nlabels; l++) {
			d->labels[l].key = xstrdup(s->labels[l].key);
			d->labels[l].value = xstrdup(s->labels[l].value);
		}
	}

	source_copy(&dst->alerts.src, &src->alerts.src);
	dst->alerts.n = src->alerts.n;
	dst->alerts.firing = xcalloc(src->alerts.n + 1, sizeof(*dst->alerts.firing));
	for (size_t i = 0; i < src->alerts.n; i++)
		dst->alerts.firing[i] = xstrdup(src->alerts.firing[i]);
}
