/*
 * drain.c - kubectl drain, in C.
 *
 * kubectl lists the node's pods once, then runs one goroutine per pod:
 * evict, retry a 429 every 5 s, then poll until the pod is gone, all under
 * one global timeout. Here workers (threads, up to DRAIN_MAX_PARALLEL, each
 * with its own kube client, as a struct kube serves one thread) take the
 * listed pods one by one and do the same; progress callbacks are serialized
 * so a caller never sees two at once.
 */
#define _GNU_SOURCE /* strptime, timegm */
#include "upgrade/drain.h"

#include <errno.h>
#include <pthread.h>
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
	o->dry_run = DRAIN_DRY_NONE;
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

/* ------------------------------------------------------------------ the drain */

enum dpod_state { DP_EVICT, DP_WAIT, DP_DONE, DP_FAILED };

struct dpod {
	char *ns, *name, *uid;
	enum dpod_state state;
	bool pdb;
	char *why;
};

struct dctx {
	struct kube *k; /* the caller's client (a clone of it for a server dry run) */
	const char *node;
	const struct drain_opts *o;
	drain_progress_fn cb;
	void *arg;
	struct drain_result *r;
	struct dpod *pods;
	size_t n;
	bool use_delete;
	int64_t deadline;   /* monotonic ms; 0: none */
	const char *dry;    /* "(dry run)", "(server dry run)" or NULL */
	pthread_mutex_t mu; /* progress callbacks, r's counters, next */
	size_t next;	    /* the next pod a worker takes */
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

/* Sleeps ms, or until the deadline if that comes first. */
static void nap(const struct dctx *c, int64_t ms)
{
	int64_t now = now_ms();

	if (c->deadline && now + ms > c->deadline)
		ms = c->deadline - now;
	sleep_ms(ms);
}

static bool expired(const struct dctx *c)
{
	return c->deadline && now_ms() >= c->deadline;
}

/* Progress from any worker: callbacks never run at the same time. */
static void emit(struct dctx *c, enum drain_event ev, const char *ns, const char *name,
		 const char *msg)
{
	if (!c->cb)
		return;
	pthread_mutex_lock(&c->mu);
	c->cb(c->arg, ev, ns, name, msg);
	pthread_mutex_unlock(&c->mu);
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

/* Seconds since an RFC 3339 UTC time ("2026-01-02T03:04:05Z"); -1 if unreadable. */
static int64_t seconds_since(const char *ts)
{
	struct tm tm = {0};
	const char *end = ts ? strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;

	if (!end)
		return -1;
	return (int64_t)time(NULL) - (int64_t)timegm(&tm);
}

/* kubectl's skipDeletedFilter and its wait: a pod terminating for longer than
 * --skip-wait-for-delete-timeout is left to finish on its own. */
static bool deleted_long_ago(const struct dctx *c, const struct kube_pod *p)
{
	int64_t s = c->o->skip_wait_for_delete_timeout_s;

	return s > 0 && p->deleting && seconds_since(p->deletion_ts) > s;
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
 * Runs the filters over the one listing the drain makes (as kubectl: a pod
 * that arrives on the node afterwards is left alone). Returns 0, or -1 if
 * some pods were refused (r->error says which). Warnings are grouped as
 * kubectl groups them.
 */
static int filter_pods(struct dctx *c, const struct kube_pod_list *l)
{
	char *errs[DRAIN_F_COUNT] = {0}, *warns[DRAIN_F_COUNT] = {0};
	const char *errmsg[DRAIN_F_COUNT] = {0}, *warnmsg[DRAIN_F_COUNT] = {0};
	char *all = NULL;
	int rc = 0;

	for (size_t i = 0; i < l->n; i++) {
		const struct kube_pod *p = &l->v[i];
		struct drain_decision d;

		if (deleted_long_ago(c, p)) {
			c->r->skipped++;
			continue;
		}
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
		else
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
	}
	/* Warnings only once nothing is refused, and in one line joined with
	 * "; ", as kubectl prints them. */
	char *warning = NULL;
	for (int f = 0; f < DRAIN_F_COUNT && rc == 0; f++) {
		if (warns[f]) {
			char *s = xasprintf("%s%s%s: %s", warning ? warning : "",
					    warning ? "; " : "", warnmsg[f], warns[f]);
			free(warning);
			warning = s;
		}
	}
	if (warning)
		emit(c, DRAIN_EV_WARNING, NULL, NULL, warning);
	free(warning);
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

static void pod_done(struct dctx *c, struct dpod *d)
{
	d->state = DP_DONE;
	pthread_mutex_lock(&c->mu);
	c->r->evicted++;
	pthread_mutex_unlock(&c->mu);
	emit(c, DRAIN_EV_GONE, d->ns, d->name, c->use_delete ? "deleted" : "evicted");
}

/*
 * Evicts one pod as kubectl's per-pod goroutine does: a 429 (a disruption
 * budget, or Priority and Fairness) is retried after its Retry-After, else
 * after retry_ms (kubectl: 5 s); 404 means it is already gone. Returns true
 * once the eviction (or deletion) is accepted.
 */
static bool evict_one(struct dctx *c, struct kube *k, struct dpod *d)
{
	while (!expired(c)) {
		struct kube_err e;
		int rc;

		emit(c, c->use_delete ? DRAIN_EV_DELETING : DRAIN_EV_EVICTING, d->ns, d->name,
		     c->dry);
		if (c->o->dry_run == DRAIN_DRY_CLIENT)
			return true;
		if (c->use_delete)
			rc = kube_pod_delete(k, d->ns, d->name, c->o->grace_period_s, &e);
		else
			rc = kube_pod_evict(k, d->ns, d->name, c->o->grace_period_s, &e);
		if (rc == 0) {
			d->pdb = false;
			set_why(d, "waiting for the pod to terminate");
			return true;
		}
		if (e.status == 404) {
			pod_done(c, d);
			return false;
		}
		if (e.status == 429 && !c->use_delete) {
			int64_t wait =
			    e.retry_after_s > 0 ? (int64_t)e.retry_after_s * 1000 : c->o->retry_ms;
			char *msg = xasprintf("(will retry after %llds): %s",
					      (long long)((wait + 999) / 1000), e.message);
			d->pdb = strcmp(e.cause, "DisruptionBudget") == 0 ||
				 strstr(e.message, "disruption budget") != NULL;
			set_why(d, e.message);
			emit(c, DRAIN_EV_RETRY, d->ns, d->name, msg);
			free(msg);
			nap(c, wait);
			continue;
		}
		char buf[600];
		set_why(d, kube_err_str(&e, buf, sizeof(buf)));
		d->state = DP_FAILED;
		return false;
	}
	return false; /* the deadline: left in DP_EVICT */
}

/* Is the pod gone? 404, or the name now belongs to a new pod (new UID), or
 * it has been terminating longer than --skip-wait-for-delete-timeout. */
static bool gone(struct dctx *c, struct kube *k, struct dpod *d)
{
	struct kube_pod p;
	struct kube_err e;
	bool done;

	if (kube_pod_get(k, d->ns, d->name, &p, &e) < 0)
		return e.status == 404; /* transient errors: ask again at the next poll */
	done = strcmp(p.uid, d->uid) != 0 || deleted_long_ago(c, &p);
	kube_pod_clear(&p);
	return done;
}

static void drain_pod(struct dctx *c, struct kube *k, struct dpod *d)
{
	if (!evict_one(c, k, d))
		return;
	if (c->o->dry_run != DRAIN_DRY_NONE) {
		d->state = DP_DONE; /* nothing was deleted: nothing to wait for */
		return;
	}
	d->state = DP_WAIT;
	for (;;) {
		if (gone(c, k, d)) {
			pod_done(c, d);
			return;
		}
		if (expired(c))
			return;
		nap(c, c->o->poll_ms);
	}
}

/* One worker: its own client, the next pod until none is left. */
static void *drain_worker(void *arg)
{
	struct dctx *c = arg;
	struct kube *k = kube_clone(c->k);

	for (;;) {
		size_t i;

		pthread_mutex_lock(&c->mu);
		i = c->next++;
		pthread_mutex_unlock(&c->mu);
		if (i >= c->n)
			break;
		drain_pod(c, k, &c->pods[i]);
	}
	kube_free(&k);
	return NULL;
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

static int list_pods(struct dctx *c)
{
	struct kube_pod_list l;
	struct kube_err e;
	int rc;

	if (kube_pods_on_node_sel(c->k, c->node, c->o->pod_selector, &l, &e) < 0) {
		char buf[600];
		c->r->status = DRAIN_FAILED;
		c->r->error = xasprintf("listing pods on node \"%s\": %s", c->node,
					kube_err_str(&e, buf, sizeof(buf)));
		return -1;
	}
	rc = filter_pods(c, &l);
	kube_pod_list_free(&l);
	return rc;
}

/* Every pod in parallel (up to DRAIN_MAX_PARALLEL at once), then the verdict. */
static int evict_all(struct dctx *c)
{
	size_t nth = c->n < DRAIN_MAX_PARALLEL ? c->n : DRAIN_MAX_PARALLEL, started = 0;
	pthread_t *th = xcalloc(nth ? nth : 1, sizeof(*th));
	size_t open = 0, failed = 0;

	for (size_t i = 0; i < nth; i++) {
		if (pthread_create(&th[started], NULL, drain_worker, c) == 0)
			started++;
	}
	if (started == 0 && c->n > 0)
		drain_worker(c); /* no thread to be had: one after another, here */
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	free(th);
	for (size_t i = 0; i < c->n; i++) {
		if (c->pods[i].state == DP_EVICT || c->pods[i].state == DP_WAIT)
			open++;
		if (c->pods[i].state == DP_FAILED)
			failed++;
	}
	if (failed) {
		c->r->status = DRAIN_FAILED;
		report_left(c, "eviction failed");
		return -1;
	}
	if (open) {
		c->r->status = DRAIN_TIMEOUT;
		report_left(c, "global timeout reached");
		return -1;
	}
	return 0;
}

static const char *dry_text(const struct drain_opts *o)
{
	return o->dry_run == DRAIN_DRY_CLIENT	? "(dry run)"
	       : o->dry_run == DRAIN_DRY_SERVER ? "(server dry run)"
						: NULL;
}

/* Cordons (or, in a client dry run, only says what cordon would do); k is
 * already in server dry-run mode when that is asked for. */
static int cordon(struct kube *k, const char *node, const struct drain_opts *o, bool *changed,
		  struct kube_err *e)
{
	struct kube_node n;

	if (o->dry_run != DRAIN_DRY_CLIENT)
		return drain_cordon(k, node, true, changed, e);
	if (kube_node_get(k, node, &n, e) < 0)
		return -1;
	*changed = !n.unschedulable;
	kube_node_clear(&n);
	return 0;
}

int drain_cordon_node(struct kube *k, const char *node, const struct drain_opts *o,
		      drain_progress_fn cb, void *arg, char **err)
{
	struct kube *kk = k;
	struct kube_err e;
	char buf[600];
	bool changed;
	int rc;

	if (o->dry_run == DRAIN_DRY_SERVER) {
		kk = kube_clone(k);
		kube_set_dry_run(kk, true);
	}
	rc = cordon(kk, node, o, &changed, &e);
	if (kk != k)
		kube_free(&kk);
	if (rc < 0) {
		*err = xasprintf("cordon %s: %s", node, kube_err_str(&e, buf, sizeof(buf)));
		return -1;
	}
	if (cb)
		cb(arg, changed ? DRAIN_EV_CORDONED : DRAIN_EV_ALREADY_CORDONED, NULL, node,
		   dry_text(o));
	return 0;
}

int drain_node(struct kube *k, const char *node, const struct drain_opts *o, drain_progress_fn cb,
	       void *arg, struct drain_result *r)
{
	struct dctx c = {.k = k, .node = node, .o = o, .cb = cb, .arg = arg, .r = r};
	struct kube_err e;
	char buf[600];
	bool ok = true;

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&c.mu, NULL);
	c.deadline = o->timeout_ms > 0 ? now_ms() + o->timeout_ms : 0;
	c.dry = dry_text(o);
	if (!o->cordoned && drain_cordon_node(k, node, o, cb, arg, &r->error) < 0) {
		r->status = DRAIN_FAILED;
		goto out;
	}
	if (o->dry_run == DRAIN_DRY_SERVER) {
		c.k = kube_clone(k);
		kube_set_dry_run(c.k, true);
	}
	if (!o->disable_eviction && kube_eviction_supported(c.k, &ok, &e) < 0) {
		r->status = DRAIN_FAILED;
		r->error = xasprintf("discovery: %s", kube_err_str(&e, buf, sizeof(buf)));
		goto out;
	}
	c.use_delete = o->disable_eviction || !ok;
	if (list_pods(&c) == 0 && evict_all(&c) == 0) {
		r->status = DRAIN_OK;
		emit(&c, DRAIN_EV_DRAINED, NULL, node, c.dry);
	}
out:
	for (size_t i = 0; i < c.n; i++) {
		free(c.pods[i].ns);
		free(c.pods[i].name);
		free(c.pods[i].uid);
		free(c.pods[i].why);
	}
	free(c.pods);
	if (c.k != k)
		kube_free(&c.k);
	pthread_mutex_destroy(&c.mu);
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
