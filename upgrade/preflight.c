/*
 * preflight.c - the preflight: every reason a run must not start (nodes, versions,
 * lbd's pool, the gate, etcd), and the plan's preflight hook.
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
			if (orch_node_is_master(n) &&
			    orch_vcmp(n->kubelet_version, pl->version) < 0)
				orch_sv_add(
				    why,
				    "version skew: control-plane node %s (%s) is not in the plan; "
				    "kubelets at %s would be newer than its apiserver",
				    n->name, n->kubelet_version, pl->version);
			continue;
		}
		if (c1 != t1)
			orch_sv_add(why, "version skew: %s is at %s; %s changes the major version",
				    n->name, n->kubelet_version, pl->version);
		else if (t2 > c2 + 1)
			orch_sv_add(
			    why,
			    "version skew: %s is at %s; %s skips a minor version: upgrade to "
			    "v%d.%d first",
			    n->name, n->kubelet_version, pl->version, t1, c2 + 1);
		else if (c2 > t2)
			/* Kubernetes' skew policy counts minor versions: a newer patch
			 * of the target minor is fine (the node is skipped). */
			orch_sv_add(
			    why,
			    "version skew: %s is at %s, a newer minor than %s: lbctl does not "
			    "downgrade",
			    n->name, n->kubelet_version, pl->version);
	}
	if (kube_version(k, &api, &e) == 0) {
		int a1, a2, a3;
		if (plan_version_parse(api, &a1, &a2, &a3) == 0 && (a1 != t1 || t2 > a2 + 1))
			orch_sv_add(
			    why, "version skew: the apiserver is at %s; %s skips a minor version",
			    api, pl->version);
		free(api);
	}
}

static void check_gate(struct orch *o, struct strv *why, struct strv *ok, bool fresh)
{
	char *err = NULL;
	json_t *st = orch_gate_status(o, &err), *v, *l;
	const char *k;
	size_t i;
	if (!st) {
		orch_sv_add(why, "gate: %s", err);
		free(err);
		return;
	}
	int unknown = 0;
	json_object_foreach(json_object_get(st, "inputs"), k,
			    v) if (!json_is_true(json_object_get(v, "known")))
	{
		orch_sv_add(why, "gate: input %s unknown: %s", k, orch_jstr(v, "why"));
		unknown++;
	}
	char *mine = orch_lease_holder(o);
	json_array_foreach(json_object_get(st, "leases"), i, l)
	{
		/* On --resume, a lease of this run's is its own to renew, stale or not. */
		if (!fresh && !strcmp(orch_jstr(l, "holder"), mine))
			orch_sv_add(ok,
				    "gate: %s holds a%s lease of this run's: renewed as it resumes",
				    orch_jstr(l, "node"),
				    json_is_true(json_object_get(l, "stale")) ? " STALE" : "");
		else if (json_is_true(json_object_get(l, "stale")))
			orch_sv_add(
			    why,
			    "gate: %s holds a STALE lease (its holder stopped renewing); free it "
			    "with `lbctl gate release --node %s` once the node is fine",
			    orch_jstr(l, "node"), orch_jstr(l, "node"));
		else if (fresh)
			orch_sv_add(why, "gate: %s holds a lease (%s): finish that first",
				    orch_jstr(l, "node"), orch_jstr(l, "reason"));
	}
	free(mine);
	if (!unknown)
		orch_sv_add(ok, "gate reachable, every input known (store %s)",
			    orch_jstr(st, "store"));
	json_decref(st);
}

static void answer_reasons(struct sbuf *b, json_t *d, const char *sep)
{
	json_t *r;
	size_t j;
	json_array_foreach(json_object_get(d, "reasons"), j, r)
	    orch_sb_add(b, "%s%s", sep, json_string_value(r));
}

char *orch_gate_answer(json_t *st, const struct plan_node *n, bool joining, int *verdict)
{
	json_t *d;
	size_t i;
	int v = ORCH_GATE_REFUSED;
	struct sbuf b = {0};
	if (!verdict)
		verdict = &v;
	if (!st)
		return NULL;
	json_array_foreach(json_object_get(st, "leases"), i, d)
	{
		if (!strcmp(orch_jstr(d, "node"), n->name)) {
			*verdict = ORCH_GATE_HELD;
			return xstrdup("holds a lease now");
		}
	}
	json_array_foreach(json_object_get(st, "master"), i, d)
	{
		if (strcmp(orch_jstr(d, "node"), n->name))
			continue;
		bool ok = json_is_true(json_object_get(d, "granted"));
		*verdict = ok ? ORCH_GATE_GRANTED : ORCH_GATE_REFUSED;
		orch_sb_add(&b, "would be %s%s", ok ? "GRANTED" : "REFUSED",
			    n->role == PLAN_MASTER ? "" : " (the gate counts it as a master)");
		answer_reasons(&b, d, "\n        - ");
		return b.s;
	}
	if (n->role == PLAN_MASTER && joining &&
	    (d = json_object_get(st, "joining_master"))) { /* an lbd since issue 15 */
		bool ok = json_is_true(json_object_get(d, "granted"));
		*verdict = ok ? ORCH_GATE_GRANTED : ORCH_GATE_REFUSED;
		orch_sb_add(&b, "would be %s (asked before it joins, by the master rules)",
			    ok ? "GRANTED" : "REFUSED");
		answer_reasons(&b, d, "\n        - ");
		return b.s;
	}
	if (n->role == PLAN_MASTER && joining) {
		/* No source counts it yet, and this gate's status says nothing of it. */
		json_t *c = json_object_get(st, "concurrency");
		int taken = 0;
		json_array_foreach(json_object_get(st, "leases"), i, d) taken +=
		    !strcmp(orch_jstr(d, "role"), "master");
		*verdict = ORCH_GATE_JOINING;
		return xasprintf("asked before it joins, for a master lease decided by the master "
				 "rules (%d of %lld master slot(s) taken now)",
				 taken, json_integer_value(json_object_get(c, "masters")));
	}
	if (n->role == PLAN_MASTER) {
		*verdict = ORCH_GATE_NOT_MASTER;
		return xstrdup(
		    "not one of the gate's masters (no backend of that name in its pool)");
	}
	d = json_object_get(st, "worker");
	bool ok = json_is_true(json_object_get(d, "granted"));
	*verdict = ok ? ORCH_GATE_GRANTED : ORCH_GATE_REFUSED;
	orch_sb_add(&b, "would be %s (a worker now)", ok ? "GRANTED" : "REFUSED");
	answer_reasons(&b, d, "\n        - ");
	return b.s;
}

/* What the run will ask the gate, asked now: each node that takes a lease, in
 * the plan's order, by the role the gate gives it. A node the gate refuses now
 * would be refused then (the run only takes capacity away), and a role the
 * plan has wrong is refused by the gate. Concurrency against the gate's caps. */
static void check_gate_nodes(struct orch *o, struct kube *k, struct strv *why, struct strv *ok)
{
	const struct plan *pl = o->plan;
	char *err = NULL;
	json_t *st = orch_gate_status(o, &err);
	int asked = 0;
	if (!st) {
		free(err);
		return; /* check_gate said why */
	}
	for (size_t i = 0; i < o->p->norder; i++) {
		const struct plan_node *n = o->p->order[i];
		const char *names[ORCH_MAX_STEPS];
		struct kube_node kn;
		int verdict;
		if (!orch_steps_for(pl, n, names) || strcmp(names[0], "lease"))
			continue;
		if (pl->kind == PLAN_UPGRADE && k && orch_node_get(k, n->name, &kn, &err) == 1) {
			bool done = orch_at_target(kn.kubelet_version, pl->version) ||
				    orch_vcmp(kn.kubelet_version, pl->version) > 0;
			kube_node_clear(&kn);
			if (done)
				continue; /* skipped: never asks */
		}
		xfree(&err);
		char *a = orch_gate_answer(
		    st, n, pl->kind == PLAN_MIGRATION && orch_is_new_node(pl, n->name), &verdict);
		asked++;
		if (verdict == ORCH_GATE_REFUSED) {
			/* its reasons, one line: "would be REFUSED\n        - r1..." */
			struct sbuf b = {0};
			for (const char *r = a ? strstr(a, "\n        - ") : NULL; r;) {
				const char *next = strstr(r + 11, "\n        - ");
				int len = next ? (int)(next - r - 11) : (int)strlen(r + 11);
				orch_sb_add(&b, "%s%.*s", b.s ? "; " : ": ", len, r + 11);
				r = next;
			}
			orch_sv_add(why, "gate: %s (%s in the plan) would be REFUSED now%s",
				    n->name, plan_role_name(n->role), b.s ? b.s : "");
			free(b.s);
		} else if (verdict == ORCH_GATE_NOT_MASTER) {
			orch_sv_add(why,
				    "gate: %s is a master in the plan, but not one of the gate's "
				    "masters (no backend %s in its pool): it would be refused",
				    n->name, n->backend ? n->backend : n->name);
		} else if (verdict == ORCH_GATE_GRANTED && n->role == PLAN_WORKER && a &&
			   strstr(a, "counts it as a master")) {
			orch_sv_add(why,
				    "gate: %s is a worker in the plan, but the gate counts it as a "
				    "master (its backend is in the gate's pool): fix its role",
				    n->name);
		}
		free(a);
	}
	if (asked)
		orch_sv_add(ok, "gate: asked now for each of the %d node(s) in plan order", asked);
	json_t *c = json_object_get(st, "concurrency");
	long long cap = json_integer_value(json_object_get(c, "workers"));
	if (pl->kind == PLAN_UPGRADE && cap > 0 && pl->worker_concurrency > cap)
		orch_sv_add(ok,
			    "concurrency: workers.concurrency %d is above the gate's cap of %lld: "
			    "at most %lld worker(s) at a time; the others wait their turn, in "
			    "order",
			    pl->worker_concurrency, cap, cap);
	json_decref(st);
}

static void check_pool(struct orch *o, struct strv *why, struct strv *ok, bool fresh)
{
	const struct plan *pl = o->plan;
	int checked = 0;
	char *perr = NULL, *path = orch_pool_path(o, NULL);
	long pst = 0;
	json_t *pj = NULL;
	int prc = orch_lbd(o, "GET", path, NULL, &pst, &pj, &perr);
	free(path);
	if (prc < 0 || pst != 200) {
		orch_sv_add(why, "lbd: %s", prc < 0 ? perr : orch_jerr(pj));
		free(perr);
		json_decref(pj);
		return;
	}
	json_decref(pj);
	if (!fresh) {
		/* A resumed run finds its own node's backend drained: fine. */
		orch_sv_add(ok, "lbd pool %s reachable", pl->pool);
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
		json_t *b = orch_get_backend(o, n->backend, NULL, &err);
		if (is_new) {
			if (b && strcmp(orch_jstr(b, "address"), n->address))
				orch_sv_add(
				    why, "lbd: backend %s exists with address %s, the plan says %s",
				    n->backend, orch_jstr(b, "address"), n->address);
			free(err);
			json_decref(b);
			continue;
		}
		if (!b) {
			orch_sv_add(why, "%s", err);
			free(err);
			continue;
		}
		if (strcmp(orch_jstr(b, "state"), "enabled"))
			orch_sv_add(why, "lbd: backend %s/%s is %s, not enabled", pl->pool,
				    n->backend, orch_jstr(b, "state"));
		else if (strcmp(orch_jstr(b, "health"), "up"))
			orch_sv_add(why, "lbd: backend %s/%s is %s: %s", pl->pool, n->backend,
				    orch_jstr(b, "health"),
				    orch_jstr(json_object_get(b, "check"), "detail"));
		else
			checked++;
		json_decref(b);
	}
	if (checked)
		orch_sv_add(ok, "lbd pool %s: %d master backend(s) enabled and up", pl->pool,
			    checked);
}

/* Every member healthy by the gate's rule (kube/etcd.h): alarms, learners and a
 * missing leader all count, and every member is asked, not one endpoint. */
/* On --resume: is etcd member name that of a node this run holds the lease
 * for (taken, not yet given back)? Its member may be down by this run's own
 * doing: the node is rebooting, or leaving. */
static bool member_under_our_lease(struct orch *o, bool fresh, const char *name)
{
	if (fresh || !o->p->have_j || !*name)
		return false;
	for (size_t i = 0; i < o->plan->nnodes; i++) {
		const struct plan_node *n = &o->plan->nodes[i];
		if (n->etcd && !strcmp(n->etcd, name))
			return orch_run_holds_lease(o, n->name);
	}
	return false;
}

static void check_etcd(struct orch *o, bool fresh, struct strv *why, struct strv *ok)
{
	struct kube_etcd e;
	char *err = NULL;
	int n = 0;

	if (orch_etcd_poll(o, &e, &err) < 0) {
		orch_sv_add(why, "etcd: %s", err);
		free(err);
		kube_etcd_clear(&e);
		return;
	}
	for (size_t i = 0; i < e.nmembers; i++) {
		const struct kube_etcd_member *m = &e.members[i];
		const char *w = NULL;
		if (kube_etcd_member_healthy(&e, m->id, &w))
			n++;
		else if (member_under_our_lease(o, fresh, m->name))
			orch_sv_add(ok,
				    "etcd: member %s unhealthy (%s): its node is under this run's "
				    "lease",
				    m->name, w);
		else
			orch_sv_add(why, "etcd: member %s unhealthy: %s",
				    *m->name ? m->name : "(unstarted)", w);
	}
	int voters = kube_etcd_voters(&e);
	if (n < kube_etcd_quorum(voters))
		orch_sv_add(why, "etcd: %d of %d voting members healthy, below quorum %d", n,
			    voters, kube_etcd_quorum(voters));
	orch_sv_add(ok, "etcd: %d of %d voting members healthy, quorum %d", n, voters,
		    kube_etcd_quorum(voters));
	kube_etcd_clear(&e);
}

bool orch_is_new_node(const struct plan *pl, const char *name)
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
void orch_preflight(struct orch *o, struct kube *k, bool fresh, struct strv *why, struct strv *ok)
{
	const struct plan *pl = o->plan;
	struct kube_node_list nl = {0};
	struct kube_err e;
	char buf[600];

	if (!o->p->kc_ok) {
		orch_sv_add(why, "kubeconfig: %s", o->p->kc_err);
	} else if (kube_node_list(k, &nl, &e) < 0) {
		orch_sv_add(why, "kubernetes: cannot list nodes: %s",
			    kube_err_str(&e, buf, sizeof(buf)));
	} else {
		int bad = 0;
		for (size_t i = 0; i < pl->nnodes; i++) {
			bool found = false;
			for (size_t j = 0; j < nl.n; j++)
				found |= !strcmp(nl.v[j].name, pl->nodes[i].name);
			/* A resumed migration's old node, once this run holds its
			 * lease, may be gone: deleted by its node-delete step (or
			 * while it was stopped), by the cloud once remove_command
			 * took the machine away, or by hand. Its remaining steps
			 * each take "gone already" as done. */
			struct jstep *lease =
			    !fresh && pl->kind == PLAN_MIGRATION && o->p->have_j
				? journal_find(&o->p->j, pl->nodes[i].name, "lease")
				: NULL;
			if (!found && !(lease && lease->state == JS_DONE) &&
			    !(pl->kind == PLAN_MIGRATION &&
			      orch_is_new_node(pl, pl->nodes[i].name))) {
				orch_sv_add(why, "node %s (plan line %d) is not in the cluster",
					    pl->nodes[i].name, pl->nodes[i].line);
				bad++;
			}
		}
		for (size_t j = 0; fresh && j < nl.n; j++) {
			if (!nl.v[j].ready) {
				orch_sv_add(why, "node %s is NotReady (%s)", nl.v[j].name,
					    nl.v[j].ready_reason ? nl.v[j].ready_reason
								 : "no reason");
				bad++;
			}
			if (nl.v[j].unschedulable) {
				orch_sv_add(
				    why,
				    "node %s is cordoned: uncordon it, or finish what cordoned it",
				    nl.v[j].name);
				bad++;
			}
		}
		if (!bad)
			orch_sv_add(ok, "kubernetes: %zu node(s), every one Ready and schedulable",
				    nl.n);
		if (fresh && pl->kind == PLAN_UPGRADE)
			check_versions(o, k, &nl, why);
	}
	kube_node_list_free(&nl);
	check_pool(o, why, ok, fresh);
	check_gate(o, why, ok, fresh);
	if (fresh)
		check_gate_nodes(o, k, why, ok);
	/* etcd last, and only when the cluster and lbd answered: a plan copied
	 * from the examples must not send anyone's packets anywhere. */
	if (pl->netcd_endpoints) {
		if (why->n)
			orch_sv_add(why, "etcd: not asked until the reasons above are fixed");
		else
			check_etcd(o, fresh, why, ok);
	}
}

int orch_run_hook(struct orch *o, struct strv *why)
{
	const struct plan *pl = o->plan;
	struct plan_vars v = {.version = pl->version, .date = o->p->date};
	char *err = NULL, *cmd = plan_expand(pl->hook_preflight, &v, &err, NULL);
	struct exec_result r;
	char rs[64];
	int rc;

	if (!cmd) {
		orch_sv_add(why, "hooks.preflight: %s", err);
		free(err);
		return -1;
	}
	orch_emit(o, ORCH_EV_STEP_START, "-", "preflight", 0, "hook: %s", cmd);
	if (o->p->have_j)
		journal_log(&o->p->j, "-", "preflight", "hook: %s", cmd);
	rc = exec_run(cmd, pl->t_command_ms, NULL, NULL, NULL, &r);
	if (o->p->have_j)
		journal_log(&o->p->j, "-", "preflight", "hook %s; output: %s",
			    exec_result_str(&r, rs, sizeof(rs)), r.output);
	if (rc < 0)
		orch_sv_add(why, "hooks.preflight failed (%s): %s\n%s",
			    exec_result_str(&r, rs, sizeof(rs)), cmd, r.output);
	exec_result_free(&r);
	free(cmd);
	return rc;
}
