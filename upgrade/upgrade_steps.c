/*
 * upgrade_steps.c - the steps that take a node down and bring it back: backend-drain,
 * drain, command (the plan's commands are run here, for migrations too),
 * backend-enable, uncordon.
 */
#define _GNU_SOURCE
#include "upgrade/orchestrator_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/text.h"
#include "common/xmalloc.h"
#include "common/http.h"
#include "upgrade/drain.h"
#include "upgrade/exec.h"
#include "kube/kube.h"
#include "kube/kubeconfig.h"

int orch_st_backend_drain(struct nctx *c, char **msg)
{
	struct orch *o = c->o;
	const char *b = c->n->backend;
	char *err = NULL, *path, d[32];
	json_t *pool = NULL, *be = orch_get_backend(o, b, &pool, &err), *x, *out = NULL;
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
			   x) if (strcmp(orch_jstr(x, "name"), b) &&
				  !strcmp(orch_jstr(x, "state"), "enabled") &&
				  !strcmp(orch_jstr(x, "health"), "up")) others++;
	json_decref(pool);
	if (!strcmp(orch_jstr(be, "state"), "enabled")) {
		if (others == 0) {
			json_decref(be);
			*msg =
			    xasprintf("%s: no other backend of pool %s is enabled and up: draining "
				      "%s would take the VIP down. Next: bring another master "
				      "back, then --resume",
				      c->n->name, o->plan->pool, b);
			return ORCH_FAILED;
		}
		path = orch_pool_path(o, b);
		json_t *body = json_pack("{s:s}", "state", "drain");
		int rc = orch_lbd(o, "PATCH", path, body, &st, &out, &err);
		json_decref(body);
		free(path);
		if (rc < 0 || st != 200) {
			*msg = xasprintf("%s: draining backend %s: %s", c->n->name, b,
					 rc < 0 ? err : orch_jerr(out));
			free(err);
			json_decref(out);
			json_decref(be);
			return ORCH_FAILED;
		}
		json_decref(out);
	}
	json_decref(be);
	/* Our own apiserver connection may be one of those the drain waits for. */
	orch_kube_reconnect(c);
	int64_t deadline = mono_ms() + o->plan->t_backend_drain_ms;
	long long last_left = -1;
	for (;;) {
		be = orch_get_backend(o, b, NULL, &err);
		if (!be) {
			*msg = xasprintf("%s: %s", c->n->name, err);
			free(err);
			return ORCH_FAILED;
		}
		char s[32];
		snprintf(s, sizeof(s), "%s", orch_jstr(be, "state"));
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
			orch_emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start,
				  "backend %s draining: %lld connection(s) left", b, left);
			last_left = left;
		}
		if (mono_ms() >= deadline) {
			*msg = xasprintf("%s: backend %s still has %lld connection(s) after %s. It "
					 "stays draining in lbd. Next: `lbctl pool show %s`, then "
					 "--resume",
					 c->n->name, b, left,
					 orch_dur(o->plan->t_backend_drain_ms, d, sizeof(d)),
					 o->plan->pool);
			return ORCH_TIMEOUT;
		}
		if (orch_interrupted(o)) {
			*msg = xasprintf("%s: interrupted while backend %s drains", c->n->name, b);
			return ORCH_FAILED;
		}
		orch_sleep_ms(o->poll_ms);
	}
}

static void on_drain(void *arg, enum drain_event ev, const char *ns, const char *name,
		     const char *m)
{
	struct nctx *c = arg;
	static const char *const what[] = {"cordoned",	   "already cordoned", "warning",
					   "evicting pod", "deleting pod",     "retrying",
					   "evicted",	   "drained"};
	orch_emit(c->o, ORCH_EV_INFO, c->n->name, c->step, c->step_start, "%s%s%s%s%s%s", what[ev],
		  ns ? " " : "", ns ? ns : "", name ? "/" : "", name ? name : "",
		  m ? (m[0] ? ": " : "") : "");
	if (m && m[0])
		journal_log(&c->o->p->j, c->n->name, c->step, "%s: %s", what[ev], m);
}

int orch_st_drain(struct nctx *c, char **msg)
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
	d.poll_ms = 500;
	if (pl->kind == PLAN_MIGRATION) { /* a leaving node already gone has no pods */
		struct kube_node kn;
		char *err = NULL;
		int got = orch_node_get(c->k, c->n->name, &kn, &err);
		free(err);
		if (got == 0) {
			c->note = xstrdup("the node is gone already: nothing to drain");
			return ORCH_OK;
		}
		if (got == 1)
			kube_node_clear(&kn);
	}
	int rc = drain_node(c->k, c->n->name, &d, on_drain, c, &r);
	if (rc == DRAIN_OK) {
		c->note = xasprintf("%zu pod(s) evicted, %zu skipped", r.evicted, r.skipped);
		drain_result_free(&r);
		return ORCH_OK;
	}
	struct sbuf left = {0};
	for (size_t i = 0; i < r.nleft; i++)
		orch_sb_add(&left, "%s%s/%s%s", i ? ", " : "", r.left[i].ns, r.left[i].name,
			    r.left[i].pdb_blocked ? " (PodDisruptionBudget)" : "");
	orch_dur(pl->drain_timeout_ms, t, sizeof(t));
	char *now_s = orch_node_now(c);
	*msg = xasprintf("%s: drain %s%s: %s%s%s. %s Next: deal with those pods, then --resume",
			 c->n->name,
			 rc == DRAIN_TIMEOUT   ? "timed out after "
			 : rc == DRAIN_REFUSED ? "refused"
					       : "failed",
			 rc == DRAIN_TIMEOUT ? t : "", r.error ? r.error : "",
			 left.s ? "; pods left: " : "", left.s ? left.s : "", now_s);
	free(now_s);
	free(left.s);
	drain_result_free(&r);
	return rc == DRAIN_TIMEOUT ? ORCH_TIMEOUT : ORCH_FAILED;
}

static void on_line(void *arg, const char *line)
{
	struct nctx *c = arg;
	journal_log(&c->o->p->j, c->n->name, c->step, "| %s", line);
	orch_emit(c->o, ORCH_EV_OUTPUT, c->n->name, c->step, c->step_start, "%s", line);
}

static bool on_tick(void *arg)
{
	struct nctx *c = arg;
	return c->o->stop && *c->o->stop;
}

/* Writes the job to the journal before it starts (exec_job_run's started). */
static int on_started(void *arg, const struct exec_job *job)
{
	struct nctx *c = arg;
	struct jstep *s = journal_find(&c->o->p->j, c->n->name, c->step);
	char *err = NULL;
	int rc = s ? journal_cmd(&c->o->p->j, s, job->pid, job->start, job->marker, job->output,
				 job->cmd, &err)
		   : -1;
	free(err);
	return rc;
}

/* What became of the command this step started before, if any (-1: none). */
int orch_cmd_fate(struct nctx *c)
{
	struct jstep *s = journal_find(&c->o->p->j, c->n->name, c->step);
	struct exec_result r = {0};
	if (!s || !s->cmd.marker)
		return -1;
	struct exec_job job = {.cmd = s->cmd.command,
			       .marker = s->cmd.marker,
			       .output = s->cmd.output,
			       .pid = s->cmd.pid,
			       .start = s->cmd.start};
	enum exec_fate f = c->o->exec->job_fate(&job, &r);
	if (f == EXEC_ENDED && (r.status != 0 || r.signal) && c->was != JS_RUNNING)
		return EXEC_LOST; /* its failure was reported: the operator fixed it; run again */
	return f;
}

static int command_result(struct nctx *c, const char *what, const char *cmd, int pid,
			  struct exec_result *r, int rc, char **msg)
{
	char rs[64];
	if (rc == 0) {
		c->note =
		    xasprintf("%s: exit 0 in %s", what, orch_dur(r->elapsed_ms, rs, sizeof(rs)));
		return ORCH_OK;
	}
	if (r->running) {
		c->detached = true;
		*msg = xasprintf("%s: lbctl stopped; %s is still running (pid %d, in its own "
				 "session): %s\nNext: --resume waits for it and reads its exit "
				 "status; it is not started again",
				 c->n->name, what, pid, cmd);
		return ORCH_FAILED;
	}
	const char *tail = text_tail(r->output, 1500);
	char *now_s = orch_node_now(c);
	*msg = xasprintf("%s: %s failed (%s): %s\n--- its last output ---\n%s\n--- %s\n"
			 "Next: look at the node and the output (the plan's .log has all of "
			 "it), fix it by hand, then --resume",
			 c->n->name, what, exec_result_str(r, rs, sizeof(rs)), cmd, tail, now_s);
	free(now_s);
	return r->timed_out ? ORCH_TIMEOUT : ORCH_FAILED;
}

/* Runs a template for node n with old/new set for migrations. The command
 * runs detached (exec.h's job), recorded in the journal before it starts; a
 * command this step started before is waited for (or its exit status read)
 * instead of being started again. */
int orch_run_command(struct nctx *c, const char *what, const char *tmpl, const char *old_node,
		     const char *new_node, char **msg)
{
	struct orch *o = c->o;
	struct plan_vars v = {.node = c->n->name,
			      .host = c->n->host,
			      .version = o->plan->version,
			      .date = o->p->date,
			      .old_node = old_node,
			      .new_node = new_node};
	struct jstep *s = journal_find(&o->p->j, c->n->name, c->step);
	struct exec_result r;
	int rc, fate = orch_cmd_fate(c);

	if (s && (fate == EXEC_RUNNING || fate == EXEC_ENDED)) {
		struct exec_job job = {.cmd = s->cmd.command,
				       .marker = s->cmd.marker,
				       .output = s->cmd.output,
				       .pid = s->cmd.pid,
				       .start = s->cmd.start};
		char *cmd = xstrdup(job.cmd ? job.cmd : "?");
		journal_log(&o->p->j, c->n->name, c->step, "%s (pid %d) %s: not started again",
			    what, job.pid,
			    fate == EXEC_RUNNING
				? "is still running: waiting for it"
				: "ended while no lbctl watched: reading its marker");
		orch_emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start,
			  "%s started before (pid %d) %s: %s", what, job.pid,
			  fate == EXEC_RUNNING ? "still running, waiting for it" : "has ended",
			  cmd);
		rc = o->exec->job_follow(&job, o->plan->t_command_ms, NULL, on_tick, c, &r);
		rc = command_result(c, what, cmd, job.pid, &r, rc, msg);
		exec_result_free(&r);
		free(cmd);
		return rc;
	}
	char *err = NULL, *cmd = plan_expand(tmpl, &v, &err, NULL);
	if (!cmd) {
		*msg = xasprintf("%s: %s: %s", c->n->name, what, err);
		free(err);
		return ORCH_FAILED;
	}
	char *dir = journal_path_for(o->plan->path, "cmd");
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		*msg = xasprintf("%s: %s: %s", c->n->name, dir, strerror(errno));
		free(dir);
		free(cmd);
		return ORCH_FAILED;
	}
	int runs = s ? s->runs : 0;
	char *marker = xasprintf("%s/%s.%s.%d.exit", dir, c->n->name, c->step, runs);
	char *output = xasprintf("%s/%s.%s.%d.out", dir, c->n->name, c->step, runs);
	struct exec_job job = {.cmd = cmd, .marker = marker, .output = output};
	free(dir);
	unlink(output);
	journal_log(&o->p->j, c->n->name, c->step, "run: %s", cmd);
	orch_emit(o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start, "running: %s", cmd);
	rc = o->exec->job_run(&job, o->plan->t_command_ms, on_started, on_line, on_tick, c, &r);
	rc = command_result(c, what, cmd, job.pid, &r, rc, msg);
	exec_result_free(&r);
	free(marker);
	free(output);
	free(cmd);
	return rc;
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
		bool master = pn ? pn->role == PLAN_MASTER : orch_node_is_master(&nl.v[i]);
		if (master && orch_vcmp(nl.v[i].kubelet_version, c->o->plan->version) < 0) {
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

int orch_st_command(struct nctx *c, char **msg)
{
	struct kube_node n;
	char *err = NULL;
	int rc;

	if (c->n->role == PLAN_WORKER && (rc = masters_at_target(c, msg)) != ORCH_OK)
		return rc;
	if ((rc = orch_node_get(c->k, c->n->name, &n, &err)) <= 0) {
		*msg = xasprintf("%s: %s", c->n->name, rc == 0 ? "the node is gone" : err);
		free(err);
		return ORCH_FAILED;
	}
	int fate = c->resumed ? orch_cmd_fate(c) : -1;
	if (c->resumed && fate != EXEC_RUNNING && fate != EXEC_ENDED) {
		/* Interrupted with no command known to have run or be running:
		 * did one get as far as changing the node? */
		struct jstep *s = journal_find(&c->o->p->j, c->n->name, c->step);
		const char *was =
		    s && s->note && !strncmp(s->note, "bootID ", 7) ? s->note + 7 : NULL;
		if (orch_at_target(n.kubelet_version, c->o->plan->version) ||
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
	return orch_run_command(c, "upgrade_command", c->o->plan->upgrade_command, NULL, NULL, msg);
}

int orch_set_backend_state(struct nctx *c, const char *state, char **msg)
{
	char *path = orch_pool_path(c->o, c->n->backend), *err = NULL;
	json_t *body = json_pack("{s:s}", "state", state), *out = NULL;
	long st = 0;
	int rc = orch_lbd(c->o, "PATCH", path, body, &st, &out, &err);
	json_decref(body);
	free(path);
	if (rc < 0 || st != 200) {
		*msg = xasprintf("%s: setting backend %s %s: %s", c->n->name, c->n->backend, state,
				 rc < 0 ? err : orch_jerr(out));
		free(err);
		json_decref(out);
		return ORCH_FAILED;
	}
	json_decref(out);
	return ORCH_OK;
}

int orch_st_backend_enable(struct nctx *c, char **msg)
{
	return orch_set_backend_state(c, "enabled", msg);
}

int orch_st_uncordon(struct nctx *c, char **msg)
{
	struct kube_err e;
	bool changed = false;
	char buf[600];
	for (int i = 0; i < 3; i++) {
		if (drain_cordon(c->k, c->n->name, false, &changed, &e) == 0) {
			c->note = xstrdup(changed ? "uncordoned" : "was not cordoned");
			return ORCH_OK;
		}
		orch_sleep_ms(500);
	}
	*msg = xasprintf("%s: uncordon: %s. Next: `lbctl node uncordon %s`, then --resume",
			 c->n->name, kube_err_str(&e, buf, sizeof(buf)), c->n->name);
	return ORCH_FAILED;
}
