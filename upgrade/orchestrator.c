/*
 * orchestrator.c - see orchestrator.h.
 *
 * The step machine: the step table (what each step is, in which order, and
 * how it is described in a dry run); the node runner (journal before and
 * after each step); the run itself, fresh or resumed (masters in this
 * thread, workers from a small pool of threads). The steps themselves and
 * the helpers they share are in the files orchestrator_int.h lists.
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

/* ---- the step table ---------------------------------------------------------------------- */

typedef int (*step_fn)(struct nctx *c, char **msg);

/* Which nodes a step is for: an upgrade's, a migration's new ones (joining)
 * and old ones (leaving), by role. */
enum {
	UPG_MASTER = 1 << 0,
	UPG_WORKER = 1 << 1,
	NEW_MASTER = 1 << 2,
	NEW_WORKER = 1 << 3,
	OLD_MASTER = 1 << 4,
	OLD_WORKER = 1 << 5,
	UPG = UPG_MASTER | UPG_WORKER,
	NEW = NEW_MASTER | NEW_WORKER,
	OLD = OLD_MASTER | OLD_WORKER,
};

/*
 * A step: for which nodes (and, if also is set, only when it says so); pre,
 * whether it may start now (NULL: always); action, what it does (an
 * orch_st_* function); done, whether its outcome is there (NULL: the action
 * is its own check). step_work says how they are used.
 */
struct step_def {
	const char *name;
	unsigned nodes;
	bool (*also)(const struct plan *pl, const struct plan_node *n);
	step_fn pre;
	step_fn action;
	step_fn done;
};

static bool has_remove_command(const struct plan *pl, const struct plan_node *n)
{
	return pl->remove_command != NULL;
}

/* A new master joining as a replacement is checked once, after the old one left. */
static bool gate_members_here(const struct plan *pl, const struct plan_node *n)
{
	for (size_t r = 0; r < pl->nreplace; r++)
		if (!strcmp(pl->replace[r].new_node, n->name))
			return false;
	return true;
}

/* In the order a node goes through them. A joining master holds a master
 * lease from before its join to after it is counted (quorum changes
 * meanwhile); a joining worker takes nothing away and needs none. */
static const struct step_def steps[] = {
    /* name		nodes			also		pre		action / done */
    {"lease", UPG | OLD | NEW_MASTER, NULL, NULL, orch_st_lease, orch_chk_leased},
    {"join", NEW, NULL, orch_pre_leased, orch_st_join, NULL},
    {"joined", NEW, NULL, NULL, orch_st_joined, NULL},
    {"backend-add", NEW_MASTER, NULL, NULL, orch_st_backend_add, orch_chk_backend_present},
    {"backend-up", NEW_MASTER, NULL, NULL, orch_st_backend_up, NULL},
    {"backend-drain", UPG_MASTER | OLD_MASTER, NULL, orch_pre_leased, orch_st_backend_drain,
     orch_chk_backend_disabled},
    {"drain", UPG | OLD, NULL, orch_pre_leased, orch_st_drain, NULL},
    {"command", UPG, NULL, orch_pre_drained, orch_st_command, NULL},
    {"wait", UPG, NULL, NULL, orch_st_wait, NULL},
    {"backend-enable", UPG_MASTER, NULL, NULL, orch_st_backend_enable, orch_chk_backend_enabled},
    {"uncordon", UPG, NULL, NULL, orch_st_uncordon, orch_chk_uncordoned},
    {"etcd-remove", OLD_MASTER, NULL, orch_pre_leased, orch_st_etcd_remove, NULL},
    {"remove-command", OLD, has_remove_command, orch_pre_leased, orch_st_remove_command, NULL},
    {"node-delete", OLD, NULL, orch_pre_leased, orch_st_node_delete, orch_chk_node_gone},
    {"backend-remove", OLD_MASTER, NULL, orch_pre_leased, orch_st_backend_remove,
     orch_chk_backend_absent},
    {"gate-members", NEW_MASTER | OLD_MASTER, gate_members_here, NULL, orch_st_gate_members, NULL},
    {"release", UPG | OLD | NEW_MASTER, NULL, NULL, orch_st_release, orch_chk_released},
};

_Static_assert(sizeof(steps) / sizeof(steps[0]) == ORCH_MAX_STEPS, "ORCH_MAX_STEPS is the table");

static const struct step_def *step_by_name(const char *name)
{
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		if (!strcmp(steps[i].name, name))
			return &steps[i];
	return NULL;
}

/* Node n's place in the table's columns. */
static unsigned node_kind(const struct plan *pl, const struct plan_node *n)
{
	bool m = n->role == PLAN_MASTER;
	if (pl->kind == PLAN_UPGRADE)
		return m ? UPG_MASTER : UPG_WORKER;
	if (orch_is_new_node(pl, n->name))
		return m ? NEW_MASTER : NEW_WORKER;
	if (orch_replaced_by(pl, n->name))
		return m ? OLD_MASTER : OLD_WORKER;
	return 0;
}

/* The step names for node n, in order (at most ORCH_MAX_STEPS). */
size_t orch_steps_for(const struct plan *pl, const struct plan_node *n, const char **out)
{
	unsigned kind = node_kind(pl, n);
	size_t k = 0;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		if ((steps[i].nodes & kind) && (!steps[i].also || steps[i].also(pl, n)))
			out[k++] = steps[i].name;
	return k;
}

/* Nodes in the order they are worked on: an upgrade's masters then workers (plan
 * order); a migration's new node before the old one it replaces, then the adds. */
const struct plan_node **orch_node_order(const struct plan *pl, size_t *n)
{
	size_t k = 0, cap = pl->kind == PLAN_UPGRADE ? pl->nnodes : 2 * pl->nreplace + pl->nadd;
	const struct plan_node **out = xcalloc(cap + 1, sizeof(*out));
	if (pl->kind == PLAN_UPGRADE) {
		for (int pass = 0; pass < 2; pass++)
			for (size_t i = 0; i < pl->nnodes; i++)
				if ((pl->nodes[i].role == PLAN_MASTER) == (pass == 0))
					out[k++] = &pl->nodes[i];
	} else {
		for (size_t r = 0; r < pl->nreplace; r++) {
			out[k++] = plan_node_find(pl, pl->replace[r].new_node);
			out[k++] = plan_node_find(pl, pl->replace[r].old_node);
		}
		for (size_t a = 0; a < pl->nadd; a++)
			out[k++] = plan_node_find(pl, pl->add[a]);
	}
	*n = k;
	return out;
}

void orch_describe(struct orch *o, const struct plan_node *n, const char *step, char *buf,
		   size_t len)
{
	const struct plan *pl = o->plan;
	char d1[32], d2[32];
	struct plan_vars v = {.node = n->name,
			      .host = n->host,
			      .version = pl->version,
			      .date = o->p->date,
			      .old_node = n->name,
			      .new_node = orch_replaced_by(pl, n->name)};
	char *err = NULL, *cmd = NULL;

	if (!strcmp(step, "lease"))
		snprintf(buf, len,
			 "ask the gate for a %s lease%s (ttl %s, renewed every %s; wait up "
			 "to %s)",
			 plan_role_name(n->role),
			 pl->kind == PLAN_MIGRATION && orch_is_new_node(pl, n->name)
			     ? " before it joins: no other master goes down meanwhile"
			     : "",
			 orch_dur(pl->lease_ttl_ms, d1, sizeof(d1)),
			 orch_dur(pl->lease_ttl_ms / 3, d2, sizeof(d2)),
			 orch_dur(pl->t_gate_ms, (char[32]){0}, 32));
	else if (!strcmp(step, "backend-drain"))
		snprintf(buf, len, "drain backend %s/%s in lbd, wait until drained (up to %s)",
			 pl->pool, n->backend, orch_dur(pl->t_backend_drain_ms, d1, sizeof(d1)));
	else if (!strcmp(step, "drain"))
		snprintf(buf, len, "cordon and drain %s (%s%s%sgrace %s, timeout %s)", n->name,
			 pl->ignore_daemonsets ? "ignore DaemonSets, " : "",
			 pl->delete_emptydir_data ? "delete emptyDir data, " : "",
			 pl->force ? "force, " : "",
			 pl->grace_period_s < 0
			     ? "per pod"
			     : (snprintf(d2, sizeof(d2), "%ds", pl->grace_period_s), d2),
			 orch_dur(pl->drain_timeout_ms, d1, sizeof(d1)));
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
				 orch_dur(pl->t_command_ms, d1, sizeof(d1)));
	} else if (!strcmp(step, "wait")) {
		snprintf(
		    buf, len, "wait for Ready, kubelet %s%s%s%s%s%s, then soak %s (within %s)",
		    pl->version ? pl->version : "?", n->role == PLAN_MASTER ? ", backend " : "",
		    n->role == PLAN_MASTER ? n->backend : "",
		    n->role == PLAN_MASTER ? " /readyz up, etcd member " : "",
		    n->role == PLAN_MASTER ? n->etcd : "", n->role == PLAN_MASTER ? " healthy" : "",
		    orch_dur(pl->soak_ms, d1, sizeof(d1)),
		    orch_dur(pl->t_node_ready_ms, d2, sizeof(d2)));
	} else if (!strcmp(step, "backend-enable"))
		snprintf(buf, len, "enable backend %s/%s", pl->pool, n->backend);
	else if (!strcmp(step, "uncordon"))
		snprintf(buf, len, "uncordon %s", n->name);
	else if (!strcmp(step, "release"))
		snprintf(buf, len, "release the gate lease");
	else if (!strcmp(step, "gate-members"))
		snprintf(buf, len,
			 "check the gate's etcd endpoints and members follow the cluster "
			 "(else print the config edit and stop)");
	else if (!strcmp(step, "joined"))
		snprintf(buf, len, "wait for %s Ready%s%s%s (within %s)", n->name,
			 n->role == PLAN_MASTER ? ", etcd member " : "",
			 n->role == PLAN_MASTER ? n->etcd : "",
			 n->role == PLAN_MASTER ? " a healthy voter, every member healthy" : "",
			 orch_dur(pl->t_node_ready_ms, d1, sizeof(d1)));
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

/*
 * A step's work: its precondition (skipped when a command the step started
 * before is still running or has ended: that command is followed, not
 * judged again), its action, then its outcome check. Every action is
 * idempotent, so a step interrupted before simply runs again and finds
 * what it did (a drained backend, a deleted node, a command's marker).
 */
static int step_work(struct nctx *c, const struct step_def *d, char **msg)
{
	char *why = NULL;
	int fate = c->resumed ? orch_cmd_fate(c) : -1;
	bool following = fate == EXEC_RUNNING || fate == EXEC_ENDED;

	if (d->pre && !following && d->pre(c, &why) != ORCH_OK) {
		char *now = orch_node_now(c);
		*msg = xasprintf("%s.\nNothing was done in step %s: it needs that first. %s\n"
				 "Next: set it right, then --resume",
				 why, d->name, now);
		free(now);
		free(why);
		return ORCH_FAILED;
	}
	int rc = d->action(c, msg);
	if (rc != ORCH_OK || !d->done || d->done(c, &why) == ORCH_OK)
		return rc;
	char *now = orch_node_now(c);
	*msg = xasprintf("%s: step %s finished, but its outcome is not there: %s. %s\n"
			 "Next: look at it, then --resume",
			 c->n->name, d->name, why, now);
	free(now);
	free(why);
	return ORCH_FAILED;
}

/* One step, journaled running before and done or failed after. */
static int run_step(struct orch *o, struct kube **k, const struct plan_node *n,
		    const struct step_def *d, struct jstep *s)
{
	struct journal *j = &o->p->j;
	struct nctx c = {.o = o, .k = *k, .n = n, .step = d->name, .step_start = mono_ms()};
	char desc[1024], *msg = NULL, *err = NULL;

	c.resumed = s->state == JS_RUNNING || s->state == JS_FAILED;
	c.was = s->state;
	orch_describe(o, n, d->name, desc, sizeof(desc));
	if (journal_mark(j, s, JS_RUNNING, NULL, &err) < 0) {
		orch_fail_run(o, ORCH_FAILED, err);
		free(err);
		return ORCH_FAILED;
	}
	orch_emit(o, ORCH_EV_STEP_START, n->name, d->name, c.step_start, "%s%s", desc,
		  c.resumed ? " (again: it did not finish before)" : "");
	int rc = step_work(&c, d, &msg);
	*k = c.k; /* steps may reconnect */
	if (rc == ORCH_OK) {
		const char *note = c.note ? c.note : "ok";
		if (journal_mark(j, s, JS_DONE, note, &err) < 0) {
			orch_fail_run(o, rc = ORCH_FAILED, err);
			free(err);
		} else {
			orch_emit(o, ORCH_EV_STEP_DONE, n->name, d->name, c.step_start, "%s", note);
		}
		free(c.note);
		return rc;
	}
	free(c.note);
	if (rc == ORCH_NOT_STARTED) { /* the run stops: this node never began */
		journal_mark(j, s, JS_PENDING, msg, &err);
		free(err);
		free(msg);
		return ORCH_FAILED;
	}
	if (o->stop && *o->stop && rc == ORCH_FAILED && !msg)
		msg = xasprintf("%s: interrupted", n->name);
	if (c.detached) /* its command runs on: the step is still running */
		journal_note(j, s, msg, &err);
	else
		journal_mark(j, s, JS_FAILED, msg, &err);
	free(err);
	orch_emit(o, ORCH_EV_STEP_FAIL, n->name, d->name, c.step_start, "%s", msg);
	orch_fail_run(o, rc, msg);
	free(msg);
	return rc;
}

/* Node n's steps that are not done yet, in order. A node under way is taken
 * to a safe point (its end) even when a sibling failed; Ctrl-C stops it
 * between steps; a node not yet leased is not started once the run stops. */
static int run_node(struct orch *o, struct kube **k, const struct plan_node *n)
{
	const char *names[ORCH_MAX_STEPS];
	size_t ns = orch_steps_for(o->plan, n, names);

	for (size_t i = 0; i < ns; i++) {
		struct jstep *s = journal_find(&o->p->j, n->name, names[i]);
		if (!s || s->state == JS_DONE || s->state == JS_SKIPPED)
			continue;
		if (orch_interrupted(o) || (orch_stopping(o) && !strcmp(names[i], "lease")))
			return ORCH_FAILED;
		int rc = run_step(o, k, n, step_by_name(names[i]), s);
		if (rc != ORCH_OK)
			return rc;
	}
	return ORCH_OK;
}

static void *worker_main(void *arg)
{
	struct orch *o = arg;
	const struct plan_node **order = o->p->order;
	size_t n = o->p->norder;
	struct kube *k = orch_kube_for(o);

	for (;;) {
		pthread_mutex_lock(&o->p->fmu);
		size_t i = o->p->next_worker;
		while (i < n && order[i]->role != PLAN_WORKER)
			i++;
		o->p->next_worker = i + 1;
		if (i < n) /* in line for the gate in plan order, not thread order */
			orch_queue_enter(o->p, i);
		pthread_mutex_unlock(&o->p->fmu);
		if (i >= n || orch_stopping(o)) {
			if (i < n)
				orch_queue_leave(o->p, i);
			break;
		}
		run_node(o, &k, order[i]);
		orch_queue_leave(o->p, i); /* a node that needed no lease step */
	}
	kube_free(&k);
	return NULL;
}

/* ---- setup, the run, dry run, status ----------------------------------------------------- */

void orch_priv_init(struct orch *o)
{
	struct orch_priv *p = o->p = xcalloc(1, sizeof(*o->p));
	pthread_mutex_init(&p->ev_mu, NULL);
	pthread_mutex_init(&p->kmu, NULL);
	pthread_mutex_init(&p->fmu, NULL);
	pthread_mutex_init(&p->qmu, NULL);
	pthread_cond_init(&p->kcv, NULL);
	pthread_cond_init(&p->qcv, NULL);
	p->run_start = mono_ms();
	plan_date(p->date, sizeof(p->date));
	p->order = orch_node_order(o->plan, &p->norder);
	p->queue = xcalloc(p->norder + 1, sizeof(*p->queue));
	p->nheld = o->plan->nnodes;
	p->held = xcalloc(p->nheld + 1, sizeof(*p->held));
	p->held_role = xcalloc(p->nheld + 1, sizeof(*p->held_role));
	static const struct orch_exec real_exec = {exec_job_run, exec_job_follow, exec_job_fate};
	if (!o->exec)
		o->exec = &real_exec;
	if (!o->poll_ms)
		o->poll_ms = 500;
	p->kc_ok = kubeconfig_load(o->plan->kubeconfig, o->plan->context, &p->kc, &p->kc_err) == 0;
}

void orch_priv_free(struct orch *o)
{
	struct orch_priv *p = o->p;
	if (p->keeper_on) {
		pthread_mutex_lock(&p->kmu);
		p->kstop = true;
		pthread_cond_broadcast(&p->kcv);
		pthread_mutex_unlock(&p->kmu);
		pthread_join(p->keeper, NULL);
	}
	for (size_t i = 0; i < p->nheld; i++)
		free(p->held[i]);
	free(p->held);
	free(p->held_role);
	free(p->order);
	free(p->queue);
	if (p->have_j)
		journal_close(&p->j);
	kubeconfig_free(&p->kc);
	free(p->kc_err);
	free(p->fail_msg);
	pthread_mutex_destroy(&p->ev_mu);
	pthread_mutex_destroy(&p->kmu);
	pthread_mutex_destroy(&p->fmu);
	pthread_mutex_destroy(&p->qmu);
	pthread_cond_destroy(&p->kcv);
	pthread_cond_destroy(&p->qcv);
	xfree(&o->p);
}

/* Writes the steps of a fresh run into the journal (only_new: of the nodes
 * an accepted plan change added); nodes at the target are skipped. */
static void plan_steps(struct orch *o, struct kube *k, bool only_new)
{
	const struct plan_node **order = o->p->order;
	for (size_t i = 0; i < o->p->norder; i++) {
		bool known = false;
		for (size_t s = 0; only_new && s < o->p->j.n; s++)
			known |= !strcmp(o->p->j.steps[s].node, order[i]->name);
		if (known)
			continue;
		const char *names[ORCH_MAX_STEPS];
		size_t ns = orch_steps_for(o->plan, order[i], names);
		struct kube_node kn;
		char *err = NULL, *skip = NULL;
		if (o->plan->kind == PLAN_UPGRADE &&
		    orch_node_get(k, order[i]->name, &kn, &err) == 1) {
			if (orch_at_target(kn.kubelet_version, o->plan->version))
				skip = xasprintf("already at %s", kn.kubelet_version);
			else if (orch_vcmp(kn.kubelet_version, o->plan->version) > 0)
				/* the preflight let only a newer patch through */
				skip = xasprintf("already at %s, a newer patch than %s",
						 kn.kubelet_version, o->plan->version);
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
			orch_emit(o, ORCH_EV_STEP_SKIP, order[i]->name, "-", 0, "%s", skip);
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
		orch_emit(o, ORCH_EV_INFO, "-", "journal", 0, "%s", err);
	pthread_mutex_unlock(&j->mu);
	free(err);
	journal_log(j, "-", "run", "%s%s%s", j->status, j->message ? ": " : "",
		    j->message ? j->message : "");
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "re");
	struct sbuf b = {0};
	char buf[4096];
	size_t n;
	if (!f)
		return NULL;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		orch_sb_add(&b, "%.*s", (int)n, buf);
	fclose(f);
	return b.s ? b.s : xstrdup("");
}

/* A resume of an edited plan. An edit that leaves the plan's meaning
 * (plan_meaning: nodes and their order, roles, version, pool) alone is the
 * fix of a failed run (a command, a drain option, a timeout, a comment): it
 * is taken and its diff logged. A changed meaning is refused with its diff,
 * unless --accept-plan-change; nodes it adds get their steps (*add_nodes).
 * A journal from before meanings were kept takes only the same file. */
static int plan_edit(struct orch *o, bool *add_nodes)
{
	struct journal *j = &o->p->j;
	char *h = journal_hash_file(o->plan->path);
	int rc = 0;

	if (h && !strcmp(h, j->plan_hash)) {
		free(h);
		return 0;
	}
	char *meaning = plan_meaning(o->plan), *text = read_text(o->plan->path);
	if (!h || !text || !j->plan_meaning) {
		orch_emit(o, ORCH_EV_RUN_END, "-", "resume", 0,
			  "%s changed since the run started (journal %s, which predates plan "
			  "edits being taken): --resume continues only the same plan; restore it, "
			  "or move the journal away to start afresh",
			  o->plan->path, j->path);
		rc = -1;
		goto out;
	}
	bool same = !strcmp(meaning, j->plan_meaning);
	char *diff = orch_line_diff(j->plan_text, text);
	if (!same && !o->accept_plan_change) {
		char *md = orch_line_diff(j->plan_meaning, meaning);
		orch_emit(o, ORCH_EV_RUN_END, "-", "resume", 0,
			  "%s changed what the run's steps mean (nodes, their order or roles, "
			  "the version or the pool):\n%sThe edit:\n%sNext: restore it, or "
			  "take it with --resume --accept-plan-change (steps done stay done; "
			  "nodes it adds are planned afresh)",
			  o->plan->path, md, diff);
		free(md);
		free(diff);
		rc = -1;
		goto out;
	}
	journal_log(j, "-", "plan", "edited since the run %s; taken%s:\n%s",
		    j->resumes ? "last resumed" : "started",
		    same ? " (commands, options or comments only)" : " (--accept-plan-change)",
		    diff);
	orch_emit(o, ORCH_EV_INFO, "-", "plan", 0, "the plan was edited; taken%s:\n%s",
		  same ? "" : " (--accept-plan-change)", diff);
	free(diff);
	*add_nodes = !same;
	free(j->plan_hash);
	free(j->plan_text);
	free(j->plan_meaning);
	j->plan_hash = h, h = NULL;
	j->plan_text = text, text = NULL;
	j->plan_meaning = meaning, meaning = NULL;
out:
	free(h);
	free(text);
	free(meaning);
	return rc;
}

/* Opens the journal: a resume loads it (and takes an edited plan, see
 * plan_edit), a fresh run refuses an unfinished one and creates it. 0 go on,
 * 1 nothing to do (a done run resumed), -1 stopped (said why). */
static int open_journal(struct orch *o, bool resume, bool *add_nodes)
{
	const char *kind = o->plan->kind == PLAN_UPGRADE ? "upgrade" : "migration";
	struct journal *j = &o->p->j;
	char *err = NULL;

	if (resume) {
		if (journal_load(j, o->plan->path, true, &err) < 0) {
			char *path = journal_path_for(o->plan->path, "journal");
			bool none = access(path, F_OK) < 0;
			free(path);
			orch_emit(o, ORCH_EV_RUN_END, "-", "resume", 0, "%s%s", err,
				  none ? ". Next: run it without --resume" : "");
			free(err);
			return -1;
		}
		o->p->have_j = true;
		if (plan_edit(o, add_nodes) < 0)
			return -1;
		if (!strcmp(j->status, "done")) {
			orch_emit(o, ORCH_EV_RUN_END, "-", "resume", 0,
				  "nothing to resume: the run is done");
			return 1;
		}
		j->resumes++;
		free(j->status);
		j->status = xstrdup("running");
		journal_log(j, "-", "run", "resumed (%d)", j->resumes);
		return 0;
	}
	if (journal_exists(o->plan->path)) {
		struct journal old;
		if (journal_load(&old, o->plan->path, false, &err) == 0) {
			bool done = !strcmp(old.status, "done");
			if (!done)
				orch_emit(o, ORCH_EV_RUN_END, "-", "start", 0,
					  "%s holds an unfinished run: continue it with --resume "
					  "(or move it away to start afresh)",
					  old.path);
			journal_close(&old);
			if (!done)
				return -1;
		}
		xfree(&err);
	}
	if (journal_create(j, o->plan->path, kind, &err) < 0) {
		orch_emit(o, ORCH_EV_RUN_END, "-", "start", 0, "%s", err);
		free(err);
		return -1;
	}
	o->p->have_j = true;
	j->plan_meaning = plan_meaning(o->plan);
	j->plan_text = read_text(o->plan->path);
	journal_log(j, "-", "run", "%s %s started", kind, o->plan->path);
	return 0;
}

/* The preflight, then (a fresh run) the hook: ORCH_OK or ORCH_FAILED, said. */
static int preflight(struct orch *o, struct kube *k, bool resume)
{
	struct strv why = {0}, ok = {0};
	orch_emit(o, ORCH_EV_STEP_START, "-", "preflight", 0,
		  "checking the cluster, lbd and the gate");
	orch_preflight(o, k, !resume, &why, &ok);
	if (!why.n && !resume && o->plan->hook_preflight)
		orch_run_hook(o, &why);
	for (size_t i = 0; i < ok.n; i++)
		journal_log(&o->p->j, "-", "preflight", "ok: %s", ok.v[i]);
	if (why.n) {
		struct sbuf b = {0};
		orch_sb_add(&b, "preflight refused to start (%zu reason%s):", why.n,
			    why.n > 1 ? "s" : "");
		for (size_t i = 0; i < why.n; i++)
			orch_sb_add(&b, "\n  - %s", why.v[i]);
		journal_log(&o->p->j, "-", "preflight", "%s", b.s);
		orch_emit(o, ORCH_EV_STEP_FAIL, "-", "preflight", 0, "%s", b.s);
		orch_fail_run(o, ORCH_FAILED, b.s);
		free(b.s);
	} else {
		orch_emit(o, ORCH_EV_STEP_DONE, "-", "preflight", 0, "%zu check(s) passed", ok.n);
	}
	int rc = why.n ? ORCH_FAILED : ORCH_OK;
	orch_sv_free(&why);
	orch_sv_free(&ok);
	return rc;
}

/* Starts the lease keeper; a lease a resumed run holds is renewed again. */
static void keep_leases(struct orch *o)
{
	if (pthread_create(&o->p->keeper, NULL, orch_keeper_main, o) == 0)
		o->p->keeper_on = true;
	for (size_t i = 0; i < o->plan->nnodes; i++) {
		const struct plan_node *pn = &o->plan->nodes[i];
		if (orch_run_holds_lease(o, pn->name))
			orch_keep_lease(o, pn->name, pn->role, true);
	}
}

/* Masters (and a migration's nodes) one at a time here, then the workers
 * from workers.concurrency threads. */
static void run_nodes(struct orch *o, struct kube **k)
{
	const struct plan_node **order = o->p->order;
	for (size_t i = 0; i < o->p->norder && !orch_stopping(o); i++)
		if (o->plan->kind == PLAN_MIGRATION || order[i]->role == PLAN_MASTER)
			run_node(o, k, order[i]);
	if (orch_stopping(o) || o->plan->kind != PLAN_UPGRADE)
		return;
	pthread_t t[100];
	int started = 0;
	for (int i = 0; i < o->plan->worker_concurrency && i < 100; i++)
		if (pthread_create(&t[i], NULL, worker_main, o) == 0)
			started++;
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
}

int orch_run(struct orch *o, bool resume)
{
	char *err = NULL;
	bool add_nodes = false;
	int rc;

	orch_priv_init(o);
	if ((rc = open_journal(o, resume, &add_nodes)) != 0) {
		orch_priv_free(o);
		return rc > 0 ? ORCH_OK : ORCH_FAILED;
	}
	struct kube *k = o->p->kc_ok ? orch_kube_for(o) : NULL;
	if ((rc = preflight(o, k, resume)) != ORCH_OK) {
		if (!resume) /* nothing was done: no journal that would ask for --resume */
			unlink(o->p->j.path);
		else
			finish(o, rc);
		goto out;
	}
	if (!resume || add_nodes) {
		plan_steps(o, k, add_nodes);
		if (journal_save(&o->p->j, &err) < 0) {
			orch_fail_run(o, ORCH_FAILED, err);
			free(err);
			rc = ORCH_FAILED;
			goto out;
		}
	}
	keep_leases(o);
	run_nodes(o, &k);
	if ((rc = o->p->rc) == ORCH_OK && orch_interrupted(o))
		orch_fail_run(o, rc = ORCH_FAILED, "interrupted");
	finish(o, rc);
out:
	orch_emit(o, ORCH_EV_RUN_END, "-", rc == ORCH_OK ? "done" : "stopped", 0, "%s",
		  rc == ORCH_OK ? "every step done" : (o->p->fail_msg ? o->p->fail_msg : "failed"));
	kube_free(&k);
	orch_priv_free(o);
	return rc;
}
