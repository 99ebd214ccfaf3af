/*
 * orch_lease.c - gate leases: asking for one (the lease step), the keeper thread that
 * renews held leases at a third of their ttl, and giving one back (the
 * release step).
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

#define GATE_RETRY_MS 2000

/* The holder is this run: the journal's start time says which, so a
 * --resume renews its own lease (even a stale one) and a second copy of
 * the plan, with a journal of its own, is refused. */
char *orch_lease_holder(struct orch *o)
{
	return xasprintf("%s run %s",
			 o->plan->kind == PLAN_UPGRADE ? "lbctl upgrade" : "lbctl migrate",
			 o->p->have_j && o->p->j.started ? o->p->j.started : "(no journal)");
}

/* Asks for (or renews) a lease. 1 granted, 0 refused (*why: the reasons), -1 error. */
static int gate_acquire(struct orch *o, const char *node, enum plan_role role, char **why)
{
	char ttl[32], *err = NULL;
	long st = 0;
	json_t *out = NULL, *r;
	size_t i;
	const char *kind = o->plan->kind == PLAN_UPGRADE ? "lbctl upgrade" : "lbctl migrate";
	char *holder = orch_lease_holder(o);
	json_t *body = json_pack(
	    "{s:s,s:s,s:s,s:s,s:s}", "node", node, "role", plan_role_name(role), "reason", kind,
	    "ttl", orch_dur(o->plan->lease_ttl_ms, ttl, sizeof(ttl)), "holder", holder);
	free(holder);
	int rc = orch_lbd(o, "POST", "/v1/gate/leases", body, &st, &out, &err);
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
		    orch_sb_add(&b, "%s%s", i ? "; " : "", json_string_value(r));
		*why = b.s ? b.s : xstrdup("refused");
		json_decref(out);
		return 0;
	}
	*why = xasprintf("gate: %ld %s", st, orch_jerr(out));
	json_decref(out);
	return -1;
}

/* 0 released or not held; -1 with *err. */
static int gate_release(struct orch *o, const char *node, bool *was_held, char **err)
{
	char *path = xasprintf("/v1/gate/leases/%s", node);
	long st = 0;
	json_t *out = NULL;
	int rc = orch_lbd(o, "DELETE", path, NULL, &st, &out, err);
	free(path);
	if (rc == 0 && st != 200 && st != 404) {
		*err = xasprintf("gate: %ld %s", st, orch_jerr(out));
		rc = -1;
	}
	*was_held = st == 200;
	json_decref(out);
	return rc;
}

static bool gate_holds(struct orch *o, const char *node)
{
	long st = 0;
	json_t *out = NULL, *l;
	char *err = NULL;
	size_t i;
	bool held = false;
	if (orch_lbd(o, "GET", "/v1/gate/leases", NULL, &st, &out, &err) < 0) {
		free(err);
		return true; /* unknown: keep renewing */
	}
	json_array_foreach(json_object_get(out, "leases"), i,
			   l) if (!strcmp(orch_jstr(l, "node"), node)) held = true;
	if (st != 200)
		held = true;
	json_decref(out);
	return held;
}

/* ---- the lease keeper: renews held leases at a third of their ttl ----------------------- */

void *orch_keeper_main(void *arg)
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
		for (size_t i = 0; i < p->nheld; i++) {
			if (!p->held[i])
				continue;
			char *node = xstrdup(p->held[i]), *why = NULL;
			enum plan_role role = p->held_role[i];
			pthread_mutex_unlock(&p->kmu);
			if (!gate_holds(o, node)) {
				orch_emit(o, ORCH_EV_INFO, node, "lease", 0,
					  "the gate released the lease itself (the node is back)");
				pthread_mutex_lock(&p->kmu);
				if (p->held[i] && !strcmp(p->held[i], node))
					xfree(&p->held[i]);
			} else {
				int rc = gate_acquire(o, node, role, &why);
				if (rc != 1)
					orch_emit(o, ORCH_EV_INFO, node, "lease", 0,
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

void orch_keep_lease(struct orch *o, const char *node, enum plan_role role, bool on)
{
	struct orch_priv *p = o->p;
	pthread_mutex_lock(&p->kmu);
	for (size_t i = 0; i < p->nheld; i++)
		if (p->held[i] && !strcmp(p->held[i], node))
			xfree(&p->held[i]);
	if (on)
		for (size_t i = 0; i < p->nheld; i++)
			if (!p->held[i]) {
				p->held[i] = xstrdup(node);
				p->held_role[i] = role;
				break;
			}
	pthread_mutex_unlock(&p->kmu);
}

/* ---- the lease step: FIFO among this run's nodes, bounded by timeouts.gate -------------- */

static size_t order_index(struct orch *o, const struct plan_node *n)
{
	for (size_t i = 0; i < o->p->norder; i++)
		if (o->p->order[i] == n)
			return i;
	return o->p->norder;
}

/* Puts ticket in line once (the worker that claims a node does it at once,
 * under the claim's lock, so the line is plan order whatever the threads'
 * timing; the lease step again, for masters). */
void orch_queue_enter(struct orch_priv *p, size_t ticket)
{
	pthread_mutex_lock(&p->qmu);
	bool in = false;
	for (size_t i = 0; i < p->nq && !in; i++)
		in = p->queue[i] == ticket;
	if (!in)
		p->queue[p->nq++] = ticket;
	pthread_mutex_unlock(&p->qmu);
}

/* Takes ticket out of line, if it is there. */
void orch_queue_leave(struct orch_priv *p, size_t ticket)
{
	pthread_mutex_lock(&p->qmu);
	for (size_t i = 0; i < p->nq; i++)
		if (p->queue[i] == ticket) {
			p->queue[i] = p->queue[--p->nq];
			break;
		}
	pthread_cond_broadcast(&p->qcv);
	pthread_mutex_unlock(&p->qmu);
}

/* Whether ticket is first in line. Call with qmu held. */
static bool queue_first(struct orch_priv *p, size_t ticket)
{
	for (size_t i = 0; i < p->nq; i++)
		if (p->queue[i] < ticket)
			return false;
	return true;
}

/* Waits up to ms for a wake-up (a release, the queue moving); returns
 * whether ticket is first in line. Call with qmu held. */
static bool queue_wait(struct orch_priv *p, size_t ticket, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&p->qcv, &p->qmu, &ts);
	return queue_first(p, ticket);
}

/* Whether another node of this run holds a lease now. */
static bool siblings_hold(struct orch_priv *p, const char *me)
{
	bool any = false;
	pthread_mutex_lock(&p->kmu);
	for (size_t i = 0; i < p->nheld && !any; i++)
		any = p->held[i] && strcmp(p->held[i], me);
	pthread_mutex_unlock(&p->kmu);
	return any;
}

/* Asks the gate until it grants, in turn: of this run's nodes waiting for a
 * lease only the first in plan order asks, so a thread that just finished a
 * node cannot take the slot back from a sibling that waited longer. The
 * bound, timeouts.gate, counts only while no other node of this run holds
 * a lease, and again from the run's last release: waiting behind siblings
 * for a slot of the gate's cap is not a failure (their own steps are
 * bounded), and a gate that refuses for any other reason still ends the
 * wait in timeouts.gate. A stopping run (a sibling failed) stops the
 * wait without having changed anything: the step goes back to pending. */
int orch_st_lease(struct nctx *c, char **msg)
{
	struct orch *o = c->o;
	struct orch_priv *p = o->p;
	size_t ticket = order_index(o, c->n);
	int64_t deadline = mono_ms() + o->plan->t_gate_ms;
	char d[32], *why = NULL, *last = NULL;
	unsigned long seen;
	bool first;
	int rc = 0;

	orch_queue_enter(p, ticket);
	pthread_mutex_lock(&p->qmu);
	seen = p->releases;
	first = queue_first(p, ticket);
	pthread_mutex_unlock(&p->qmu);
	for (;;) {
		if (first) {
			rc = gate_acquire(o, c->n->name, c->n->role, &why);
			if (rc == 1) {
				orch_queue_leave(p, ticket);
				orch_keep_lease(o, c->n->name, c->n->role, true);
				free(last);
				free(why);
				c->note = xstrdup("granted");
				return ORCH_OK;
			}
			if (!last || strcmp(last, why)) {
				orch_emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start,
					  "the gate %s: %s",
					  rc == 0 ? "refuses" : "cannot be asked", why);
				free(last);
				last = why;
			} else {
				free(why);
			}
			why = NULL;
		} else if (!last) {
			last = xstrdup("waiting for an earlier node of this run to get its lease");
			orch_emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start, "%s", last);
		}
		if (orch_stopping(o)) {
			orch_queue_leave(p, ticket);
			*msg = xasprintf("%s: not started: the run is stopping", c->n->name);
			free(last);
			return orch_interrupted(o) ? ORCH_FAILED : ORCH_NOT_STARTED;
		}
		if (siblings_hold(p, c->n->name)) /* waiting behind this run is no failure */
			deadline = mono_ms() + o->plan->t_gate_ms;
		if (mono_ms() >= deadline) {
			orch_queue_leave(p, ticket);
			*msg = xasprintf(
			    "%s: the gate %s for %s: %s. Nothing was changed on %s. Next: fix what "
			    "it says (`lbctl gate status`), then run again with --resume",
			    c->n->name, rc == 0 ? "refused a lease" : "could not be asked",
			    orch_dur(mono_ms() - c->step_start, d, sizeof(d)), last, c->n->name);
			free(last);
			return rc == 0 ? ORCH_REFUSED : ORCH_FAILED;
		}
		pthread_mutex_lock(&p->qmu);
		first = queue_wait(p, ticket, first ? GATE_RETRY_MS : 500);
		if (p->releases != seen) { /* the run moved on: a slot may be free */
			seen = p->releases;
			deadline = mono_ms() + o->plan->t_gate_ms;
		}
		pthread_mutex_unlock(&p->qmu);
	}
}

bool orch_run_holds_lease(struct orch *o, const char *node)
{
	struct jstep *l = journal_find(&o->p->j, node, "lease");
	struct jstep *r = journal_find(&o->p->j, node, "release");
	return l && l->state == JS_DONE && r && r->state != JS_DONE;
}

int orch_st_release(struct nctx *c, char **msg)
{
	bool was = false;
	char *err = NULL;
	orch_keep_lease(c->o, c->n->name, c->n->role, false);
	int rc = gate_release(c->o, c->n->name, &was, &err);
	pthread_mutex_lock(&c->o->p->qmu);
	c->o->p->releases++; /* wake the next node waiting for a slot */
	pthread_cond_broadcast(&c->o->p->qcv);
	pthread_mutex_unlock(&c->o->p->qmu);
	if (rc < 0) {
		*msg =
		    xasprintf("%s: releasing the lease: %s. Next: `lbctl gate release --node %s`",
			      c->n->name, err, c->n->name);
		free(err);
		return ORCH_FAILED;
	}
	c->note = xstrdup(was ? "released" : "the gate had released it already (node back)");
	return ORCH_OK;
}
