/*
 * drain.c - kubectl drain, in C.
 *
 * kubectl runs one goroutine per pod (evict, retry on 429, then poll until
 * gone). Here one loop walks a table of pods, each with a state (to evict,
 * waiting for it to go, done) and the time of its next attempt, so a single
 * thread gives the same behaviour and the whole wait has one deadline.
 */
#include "upgrade/drain.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/xmalloc.h"

/*
 * kubectl's texts (k8s.io/kubectl/pkg/drain/filters.go). The unmanaged one
 * changed between versions (1.28: "cannot delete Pods declare no controller",
 * 1.33 prints "cannot delete cannot delete Pods that declare no controller");
 * we print the grammatical middle.
 */
static const char DS_FATAL[] = "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to "
			       "ignore)";
static const char DS_WARNING[] = "ignoring DaemonSet-managed Pods";
static const char DS_MISSING_FATAL[] = "cannot delete Pods whose DaemonSet is missing (use "
				       "--force to override)";
static const char DS_MISSING_WARNING[] = "deleting Pods whose DaemonSet is missing";
static const char LOCAL_FATAL[] = "cannot delete Pods with local storage (use "
				  "--delete-emptydir-data to override)";
static const char LOCAL_WARNING[] = "deleting Pods with local storage";
static const char UNMANAGED_FATAL[] =
    "cannot delete Pods that declare no controller (use --force to "
    "override)";
static const char UNMANAGED_WARNING[] = "deleting Pods that declare no controller";

void drain_opts_init(struct drain_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->grace_period_s = -1;
	o->retry_ms = 5000;
	o->poll_ms = 1000;
}

static bool pod_finished(const struct kube_pod *p)
{
	return p->phase && (strcmp(p->phase, "Succeeded") == 0 || strcmp(p->phase, "Failed") == 0);
}

static struct drain_decision decide(enum drain_verdict v, enum drain_filter f, const char *m)
{
	struct drain_decision d = {v, f, m};
	return d;
}

/*
 * Each filter sees the pod in turn while the verdict is "delete"; as in
 * kubectl, the last filter's status is the one kept, so a warning from an
 * earlier filter (local storage, say) is dropped when a later one is simply
 * okay. Matching kubectl here keeps the printed warnings identical.
 */
static struct drain_decision filter_daemonset(const struct kube_pod *p, const struct drain_opts *o,
					      enum drain_owner ds)
{
	if (!p->owner_kind || strcmp(p->owner_kind, "DaemonSet") != 0 || pod_finished(p))
		return decide(DRAIN_POD_DELETE, DRAIN_F_NONE, NULL);
	if (ds == DRAIN_OWNER_MISSING) {
		if (o->force)
			return decide(DRAIN_POD_DELETE, DRAIN_F_DAEMONSET_MISSING,
				      DS_MISSING_WARNING);
		return decide(DRAIN_POD_REFUSE, DRAIN_F_DAEMONSET_MISSING, DS_MISSING_FATAL);
	}
	if (!o->ignore_daemonsets)
		return decide(DRAIN_POD_REFUSE, DRAIN_F_DAEMONSET, DS_FATAL);
	return decide(DRAIN_POD_SKIP, DRAIN_F_DAEMONSET, DS_WARNING);
}

/* mirror pods cannot be deleted through the API: skipped silently */
static struct drain_decision filter_mirror(const struct kube_pod *p)
{
	if (p->mirror)
		return decide(DRAIN_POD_SKIP, DRAIN_F_MIRROR, NULL);
	return decide(DRAIN_POD_DELETE, DRAIN_F_NONE, NULL);
}

/* local storage: an emptyDir's data dies with the pod */
static struct drain_decision filter_local_storage(const struct kube_pod *p,
						  const struct drain_opts *o)
{
	if (!p->empty_dir || pod_finished(p))
		return decide(DRAIN_POD_DELETE, DRAIN_F_NONE, NULL);
	if (!o->delete_emptydir_data)
		return decide(DRAIN_POD_REFUSE, DRAIN_F_LOCAL_STORAGE, LOCAL_FATAL);
	return decide(DRAIN_POD_DELETE, DRAIN_F_LOCAL_STORAGE, LOCAL_WARNING);
}

/* unmanaged: nothing would re-create it */
static struct drain_decision filter_unmanaged(const struct kube_pod *p, const struct drain_opts *o)
{
	if (p->owner_kind || pod_finished(p))
		return decide(DRAIN_POD_DELETE, DRAIN_F_NONE, NULL);
	if (!o->force)
		return decide(DRAIN_POD_REFUSE, DRAIN_F_UNMANAGED, UNMANAGED_FATAL);
	return decide(DRAIN_POD_DELETE, DRAIN_F_UNMANAGED, UNMANAGED_WARNING);
}

struct drain_decision drain_filter_pod(const struct kube_pod *p, const struct drain_opts *o,
				       enum drain_owner ds)
{
	struct drain_decision d = filter_daemonset(p, o, ds);

	if (d.verdict != DRAIN_POD_DELETE)
		return d;
	d = filter_mirror(p);
	if (d.verdict != DRAIN_POD_DELETE)
		return d;
	d = filter_local_storage(p, o);
	if (d.verdict != DRAIN_POD_DELETE)
		return d;
	return filter_unmanaged(p, o);
}

/* ------------------------------------------------------------------ cordon */

int drain_cordon(struct kube *k, const char *node, bool on, bool *changed, struct kube_err *e)
{
	struct kube_node n;

	*changed = false;
	if (kube_node_get(k, node, &n, e) < 0)
		return -1;
	if (n.unschedulable != on) {
		if (kube_node_set_unschedulable(k, node, on, e) < 0) {
			kube_node_clear(&n);
			return -1;
		}
		*changed = true;
	}
	kube_node_clear(&n);
	return 0;
}

/* ------------------------------------------------------------------ the loop */

enum dpod_state { DP_EVICT, DP_WAIT, DP_DONE, DP_FAILED };

struct dpod {
	char *ns, *name, *uid;
	enum dpod_state state;
	int64_t next_ms; /* next eviction attempt */
	bool pdb;
	char *why;
};

struct dctx {
	struct kube *k;
	const char *node;
	const struct drain_opts *o;
	drain_progress_fn cb;
	void *arg;
	struct drain_result *r;
	struct dpod *pods;
	size_t n;
	bool use_delete;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	while (ms > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void emit(struct dctx *c, enum drain_event ev, const char *ns, const char *name,
		 const char *msg)
{
	if (c->cb)
		c->cb(c->arg, ev, ns, name, msg);
}

/* Appends "ns/name" to a ", "-separated list. */
static void list_add(char **list, const struct kube_pod *p)
{
	char *s = xasprintf("%s%s%s/%s", *list ? *list : "", *list ? ", " : "", p->ns, p->name);

	free(*list);
	*list = s;
}

static enum drain_owner ds_owner(struct dctx *c, const struct kube_pod *p)
{
	struct kube_err e;

	if (!p->owner_kind || strcmp(p->owner_kind, "DaemonSet") != 0 || !p->owner_name)
		return DRAIN_OWNER_EXISTS;
	if (kube_daemonset_exists(c->k, p->ns, p->owner_name, &e) < 0 && e.status == 404)
		return DRAIN_OWNER_MISSING;
	return DRAIN_OWNER_EXISTS; /* other errors: treat as present (refused/skipped) */
}

static bool known(struct dctx *c, const char *uid)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->pods[i].uid, uid) == 0)
			return true;
	return false;
}

static void track(struct dctx *c, const struct kube_pod *p)
{
	struct dpod *d;

	c->pods = xrealloc(c->pods, (c->n + 1) * sizeof(*c->pods));
	d = &c->pods[c->n++];
	memset(d, 0, sizeof(*d));
	d->ns = xstrdup(p->ns);
	d->name = xstrdup(p->name);
	d->uid = xstrdup(p->uid);
	d->state = DP_EVICT;
}

/*
 * Runs the filters over a listing. Pods to delete that are not yet tracked
 * are added. Returns 0, or -1 if some pods were refused (r->error says which).
 * Warnings are emitted once per listing, grouped as kubectl groups them.
 */
static int filter_pods(struct dctx *c, const struct kube_pod_list *l, bool first)
{
	char *errs[DRAIN_F_COUNT] = {0}, *warns[DRAIN_F_COUNT] = {0};
	const char *errmsg[DRAIN_F_COUNT] = {0}, *warnmsg[DRAIN_F_COUNT] = {0};
	char *all = NULL;
	int rc = 0;

	for (size_t i = 0; i < l->n; i++) {
		const struct kube_pod *p = &l->v[i];
		struct drain_decision d;

		if (known(c, p->uid))
			continue;
		/* DaemonSet pods were judged on the first listing; don't GET their owner again. */
		if (!first && p->owner_kind && strcmp(p->owner_kind, "DaemonSet") == 0)
			continue;
		d = drain_filter_pod(p, c->o, ds_owner(c, p));
		if (d.verdict == DRAIN_POD_REFUSE) {
			list_add(&errs[d.filter], p);
			errmsg[d.filter] = d.message;
			continue;
		}
		if (d.message) {
			list_add(&warns[d.filter], p);
			warnmsg[d.filter] = d.message;
		}
		if (d.verdict == DRAIN_POD_DELETE)
			track(c, p);
		else if (first)
			c->r->skipped++;
	}
	for (int f = 0; f < DRAIN_F_COUNT; f++) {
		if (errs[f]) {
			char *s = xasprintf("%s%s%s: %s", all ? all : "", all ? "; " : "",
					    errmsg[f], errs[f]);
			free(all);
			all = s;
			rc = -1;
		}
		/* Warnings only once nothing is refused: kubectl prints them then. */
	}
	for (int f = 0; f < DRAIN_F_COUNT && rc == 0; f++) {
		if (warns[f] && (first || f != DRAIN_F_DAEMONSET)) {
			char *s = xasprintf("%s: %s", warnmsg[f], warns[f]);
			emit(c, DRAIN_EV_WARNING, NULL, NULL, s);
			free(s);
		}
	}
	for (int f = 0; f < DRAIN_F_COUNT; f++) {
		free(errs[f]);
		free(warns[f]);
	}
	if (rc < 0) {
		c->r->error = xasprintf("unable to drain node \"%s\": %s", c->node, all);
		c->r->status = DRAIN_REFUSED;
	}
	free(all);
	return rc;
}

static void set_why(struct dpod *d, const char *why)
{
	free(d->why);
	d->why = xstrdup(why);
}

static void attempt(struct dctx *c, struct dpod *d, int64_t now)
{
	struct kube_err e;
	int rc;

	emit(c, c->use_delete ? DRAIN_EV_DELETING : DRAIN_EV_EVICTING, d->ns, d->name, NULL);
	if (c->use_delete)
		rc = kube_pod_delete(c->k, d->ns, d->name, c->o->grace_period_s, &e);
	else
		rc = kube_pod_evict(c->k, d->ns, d->name, c->o->grace_period_s, &e);
	if (rc == 0) {
		d->state = DP_WAIT;
		d->pdb = false;
		set_why(d, "waiting for the pod to terminate");
		return;
	}
	if (e.status == 404) {
		d->state = DP_DONE;
		c->r->evicted++;
		emit(c, DRAIN_EV_GONE, d->ns, d->name, c->use_delete ? "deleted" : "evicted");
		return;
	}
	if (e.status == 429 && !c->use_delete) {
		d->pdb = strcmp(e.cause, "DisruptionBudget") == 0 ||
			 strstr(e.message, "disruption budget") != NULL;
		set_why(d, e.message);
		d->next_ms = now + c->o->retry_ms;
		emit(c, DRAIN_EV_RETRY, d->ns, d->name, e.message);
		return;
	}
	{
		char buf[600];
		set_why(d, kube_err_str(&e, buf, sizeof(buf)));
		d->state = DP_FAILED;
	}
}

/* Is the pod gone? 404, or the name now belongs to a new pod (new UID). */
static void check_gone(struct dctx *c, struct dpod *d)
{
	struct kube_pod p;
	struct kube_err e;

	if (kube_pod_get(c->k, d->ns, d->name, &p, &e) < 0) {
		if (e.status == 404) {
			d->state = DP_DONE;
			c->r->evicted++;
			emit(c, DRAIN_EV_GONE, d->ns, d->name,
			     c->use_delete ? "deleted" : "evicted");
		}
		return; /* transient errors: try again at the next poll */
	}
	if (strcmp(p.uid, d->uid) != 0) {
		d->state = DP_DONE;
		c->r->evicted++;
		emit(c, DRAIN_EV_GONE, d->ns, d->name, c->use_delete ? "deleted" : "evicted");
	}
	kube_pod_clear(&p);
}

static void report_left(struct dctx *c, const char *what)
{
	char *list = NULL;

	for (size_t i = 0; i < c->n; i++) {
		struct dpod *d = &c->pods[i];
		struct drain_left *l;
		char *s;

		if (d->state == DP_DONE)
			continue;
		c->r->left = xrealloc(c->r->left, (c->r->nleft + 1) * sizeof(*c->r->left));
		l = &c->r->left[c->r->nleft++];
		l->ns = xstrdup(d->ns);
		l->name = xstrdup(d->name);
		l->pdb_blocked = d->pdb && d->state == DP_EVICT;
		l->why = xstrdup(d->why ? d->why : "not evicted yet");
		s = xasprintf("%s%s%s/%s (%s%s)", list ? list : "", list ? ", " : "", d->ns,
			      d->name, l->pdb_blocked ? "blocked by a PodDisruptionBudget: " : "",
			      l->why);
		free(list);
		list = s;
	}
	c->r->error =
	    xasprintf("%s; pods left on node \"%s\": %s", what, c->node, list ? list : "(none)");
	free(list);
}

static int relist(struct dctx *c, bool first)
{
	struct kube_pod_list l;
	struct kube_err e;
	int rc;

	if (kube_pods_on_node(c->k, c->node, &l, &e) < 0) {
		char buf[600];
		if (first) {
			c->r->status = DRAIN_FAILED;
			c->r->error = xasprintf("listing pods on node \"%s\": %s", c->node,
						kube_err_str(&e, buf, sizeof(buf)));
			return -1;
		}
		return 0; /* a failed re-list is retried at the next poll */
	}
	rc = filter_pods(c, &l, first);
	if (rc < 0 && !first) {
		/* A refused pod appeared while draining: report it, keep going. */
		emit(c, DRAIN_EV_WARNING, NULL, NULL, c->r->error);
		xfree(&c->r->error);
		c->r->status = DRAIN_OK;
		rc = 0;
	}
	kube_pod_list_free(&l);
	return rc;
}

static int drain_loop(struct dctx *c, int64_t deadline)
{
	int64_t next_poll = now_ms() + c->o->poll_ms;

	for (;;) {
		int64_t now = now_ms(), wake;
		size_t open = 0, failed = 0;

		for (size_t i = 0; i < c->n; i++)
			if (c->pods[i].state == DP_EVICT && c->pods[i].next_ms <= now)
				attempt(c, &c->pods[i], now);
		if (now >= next_poll) {
			for (size_t i = 0; i < c->n; i++)
				if (c->pods[i].state == DP_WAIT)
					check_gone(c, &c->pods[i]);
			relist(c, false);
			next_poll = now_ms() + c->o->poll_ms;
		}
		for (size_t i = 0; i < c->n; i++) {
			if (c->pods[i].state == DP_EVICT || c->pods[i].state == DP_WAIT)
				open++;
			if (c->pods[i].state == DP_FAILED)
				failed++;
		}
		if (open == 0) {
			if (failed) {
				c->r->status = DRAIN_FAILED;
				report_left(c, "eviction failed");
				return -1;
			}
			return 0;
		}
		now = now_ms();
		if (deadline && now >= deadline) {
			c->r->status = DRAIN_TIMEOUT;
			report_left(c, "global timeout reached");
			return -1;
		}
		wake = next_poll;
		for (size_t i = 0; i < c->n; i++)
			if (c->pods[i].state == DP_EVICT && c->pods[i].next_ms < wake)
				wake = c->pods[i].next_ms;
		if (deadline && deadline < wake)
			wake = deadline;
		if (wake > now)
			sleep_ms(wake - now);
	}
}

int drain_node(struct kube *k, const char *node, const struct drain_opts *o, drain_progress_fn cb,
	       void *arg, struct drain_result *r)
{
	struct dctx c = {.k = k, .node = node, .o = o, .cb = cb, .arg = arg, .r = r};
	int64_t deadline = o->timeout_ms > 0 ? now_ms() + o->timeout_ms : 0;
	struct kube_err e;
	char buf[600];
	bool changed, ok = true;

	memset(r, 0, sizeof(*r));
	if (drain_cordon(k, node, true, &changed, &e) < 0) {
		r->status = DRAIN_FAILED;
		r->error = xasprintf("cordon %s: %s", node, kube_err_str(&e, buf, sizeof(buf)));
		return r->status;
	}
	emit(&c, changed ? DRAIN_EV_CORDONED : DRAIN_EV_ALREADY_CORDONED, NULL, node, NULL);
	if (!o->disable_eviction && kube_eviction_supported(k, &ok, &e) < 0) {
		r->status = DRAIN_FAILED;
		r->error = xasprintf("discovery: %s", kube_err_str(&e, buf, sizeof(buf)));
		return r->status;
	}
	c.use_delete = o->disable_eviction || !ok;
	if (relist(&c, true) == 0 && drain_loop(&c, deadline) == 0) {
		r->status = DRAIN_OK;
		emit(&c, DRAIN_EV_DRAINED, NULL, node, NULL);
	}
	for (size_t i = 0; i < c.n; i++) {
		free(c.pods[i].ns);
		free(c.pods[i].name);
		free(c.pods[i].uid);
		free(c.pods[i].why);
	}
	free(c.pods);
	return r->status;
}

void drain_result_free(struct drain_result *r)
{
	for (size_t i = 0; i < r->nleft; i++) {
		free(r->left[i].ns);
		free(r->left[i].name);
		free(r->left[i].why);
	}
	xfree(&r->left);
	r->nleft = 0;
	xfree(&r->error);
}
