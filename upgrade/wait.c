/*
 * wait.c - the waiting steps: wait (Ready, kubelet version, /readyz in lbd, the
 * etcd member as the gate sees it, then the soak), joined and backend-up.
 * Every wait polls with a bound from the plan and reports what it waits for
 * (ORCH_EV_WAIT), so the live view always says why nothing moves.
 */
#define _GNU_SOURCE
#include "upgrade/orchestrator_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/xmalloc.h"
#include "common/http.h"
#include "upgrade/drain.h"
#include "upgrade/exec.h"
#include "kube/kube.h"
#include "kube/kubeconfig.h"

/* The etcd member's health as the gate sees it: 1 healthy, 0 not (why), -1 not watched. */
static int gate_etcd_healthy(struct orch *o, const char *member, char **why)
{
	char *err = NULL;
	json_t *st = orch_gate_status(o, &err), *e, *m;
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
				   m) if (!strcmp(orch_jstr(m, "name"), member))
		{
			free(*why);
			*why = NULL;
			if (json_is_true(json_object_get(m, "healthy")))
				rc = 1;
			else
				*why = xstrdup(orch_jstr(m, "why"));
		}
		if (!json_is_true(json_object_get(e, "known"))) {
			free(*why);
			*why =
			    xasprintf("the gate's etcd view is unknown: %s", orch_jstr(e, "why"));
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
	int rc = orch_node_get(c->k, c->n->name, &n, &err);

	if (rc <= 0) {
		orch_sb_add(missing, "the node (%s)", rc == 0 ? "not found" : err);
		free(err);
		return false;
	}
	if (!n.ready)
		orch_sb_add(missing, "%sReady (%s)", missing->n ? ", " : "",
			    n.ready_reason ? n.ready_reason : "NotReady");
	if (o->plan->version && !orch_at_target(n.kubelet_version, o->plan->version))
		orch_sb_add(missing, "%skubelet %s (now %s)", missing->n ? ", " : "",
			    o->plan->version, n.kubelet_version ? n.kubelet_version : "?");
	kube_node_clear(&n);
	if (c->n->role == PLAN_MASTER) {
		json_t *b = orch_get_backend(o, c->n->backend, NULL, &err);
		if (!b) {
			orch_sb_add(missing, "%sbackend %s (%s)", missing->n ? ", " : "",
				    c->n->backend, err);
			free(err);
		} else if (strcmp(orch_jstr(b, "health"), "up")) {
			const char *det = orch_jstr(json_object_get(b, "check"), "detail");
			orch_sb_add(missing, "%s/readyz up in lbd for backend %s (%s%s%s)",
				    missing->n ? ", " : "", c->n->backend, orch_jstr(b, "health"),
				    *det ? ": " : "", det);
		}
		json_decref(b);
		char *why = NULL;
		if (gate_etcd_healthy(o, c->n->etcd, &why) == 0)
			orch_sb_add(missing, "%setcd member %s healthy (%s)",
				    missing->n ? ", " : "", c->n->etcd, why ? why : "?");
		free(why);
	}
	return missing->n == 0;
}

int orch_st_wait(struct nctx *c, char **msg)
{
	struct orch *o = c->o;
	int64_t deadline = mono_ms() + o->plan->t_node_ready_ms, since = 0;
	char *last = NULL, d[32], d2[32];

	/* A new connection: the VIP's backends moved while the node was down. */
	orch_kube_reconnect(c);
	for (;;) {
		struct sbuf miss = {0};
		bool ok = outcomes(c, &miss);
		int64_t now = mono_ms();
		if (ok) {
			if (!since) {
				since = now;
				orch_emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start,
					  "every outcome holds; soaking %s",
					  orch_dur(o->plan->soak_ms, d, sizeof(d)));
			}
			if (now - since >= o->plan->soak_ms) {
				c->note = xasprintf("back after %s, held for %s",
						    orch_dur(since - c->step_start, d, sizeof(d)),
						    orch_dur(o->plan->soak_ms, d2, sizeof(d2)));
				free(last);
				return ORCH_OK;
			}
		} else {
			if (since)
				orch_emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start,
					  "an outcome was lost during the soak: %s", miss.s);
			since = 0;
			if (!last || strcmp(last, miss.s))
				orch_emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start,
					  "waiting for %s", miss.s);
			free(last);
			last = miss.s;
			miss.s = NULL;
		}
		free(miss.s);
		if (now >= deadline) {
			char *now_s = orch_node_now(c);
			*msg = xasprintf(
			    "%s never came back within %s: still waiting for %s. %s Next: look "
			    "at the node (journalctl -u k3s / kubelet), then --resume to wait "
			    "again",
			    c->n->name, orch_dur(o->plan->t_node_ready_ms, d, sizeof(d)),
			    last ? last : "the soak", now_s);
			free(now_s);
			free(last);
			return ORCH_TIMEOUT;
		}
		if (orch_interrupted(o)) {
			*msg = xasprintf("%s: interrupted while waiting for %s", c->n->name,
					 last ? last : "the soak");
			free(last);
			return ORCH_FAILED;
		}
		orch_sleep_ms(o->poll_ms);
	}
}

/* The new node is in: Ready; a master's etcd member a healthy voter, every member healthy. */
static bool joined(struct nctx *c, struct sbuf *miss)
{
	struct kube_node n;
	char *err = NULL;
	int rc = orch_node_get(c->k, c->n->name, &n, &err);
	if (rc <= 0) {
		orch_sb_add(miss, "node %s in the cluster (%s)", c->n->name,
			    rc == 0 ? "not yet" : err);
		free(err);
		return false;
	}
	if (!n.ready)
		orch_sb_add(miss, "node %s Ready", c->n->name);
	kube_node_clear(&n);
	if (c->n->role != PLAN_MASTER)
		return miss->n == 0;
	struct kube_etcd e;
	const struct kube_etcd_member *me;
	if (orch_etcd_poll(c->o, &e, &err) < 0) {
		orch_sb_add(miss, "%setcd member list (%s)", miss->n ? ", " : "", err);
		free(err);
		kube_etcd_clear(&e);
		return false;
	}
	if (!(me = kube_etcd_find(&e, c->n->etcd)))
		orch_sb_add(miss, "%setcd member %s in the member list", miss->n ? ", " : "",
			    c->n->etcd);
	else if (me->learner)
		orch_sb_add(miss, "%setcd member %s promoted from learner", miss->n ? ", " : "",
			    c->n->etcd);
	for (size_t i = 0; i < e.nmembers; i++) {
		const struct kube_etcd_member *m = &e.members[i];
		const char *why = NULL;
		if (m == me && me->learner)
			continue; /* said above */
		if (!kube_etcd_member_healthy(&e, m->id, &why))
			orch_sb_add(miss, "%setcd member %s healthy (%s)", miss->n ? ", " : "",
				    *m->name ? m->name : "(unstarted)", why);
	}
	if (!miss->n)
		c->note = xasprintf("etcd: %zu members, all healthy", e.nmembers);
	kube_etcd_clear(&e);
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
			orch_emit(c->o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start,
				  "waiting for %s", miss.s);
		free(last);
		last = miss.s;
		if (mono_ms() >= deadline || orch_interrupted(c->o)) {
			*msg = xasprintf("%s: %s after %s: still waiting for %s. Next: look at %s, "
					 "then --resume",
					 c->n->name,
					 orch_interrupted(c->o) ? "interrupted" : "timed out",
					 orch_dur(timeout_ms, d, sizeof(d)), last, c->n->name);
			free(last);
			return orch_interrupted(c->o) ? ORCH_FAILED : ORCH_TIMEOUT;
		}
		orch_sleep_ms(c->o->poll_ms);
	}
}

int orch_st_joined(struct nctx *c, char **msg)
{
	return wait_until(c, joined, c->o->plan->t_node_ready_ms, msg);
}

static bool backend_up(struct nctx *c, struct sbuf *miss)
{
	char *err = NULL;
	json_t *b = orch_get_backend(c->o, c->n->backend, NULL, &err);
	if (!b) {
		orch_sb_add(miss, "backend %s (%s)", c->n->backend, err);
		free(err);
		return false;
	}
	if (strcmp(orch_jstr(b, "health"), "up"))
		orch_sb_add(miss, "backend %s /readyz up (%s %s)", c->n->backend,
			    orch_jstr(b, "health"),
			    orch_jstr(json_object_get(b, "check"), "detail"));
	json_decref(b);
	return miss->n == 0;
}

int orch_st_backend_up(struct nctx *c, char **msg)
{
	return wait_until(c, backend_up, c->o->plan->t_node_ready_ms, msg);
}
