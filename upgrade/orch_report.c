/*
 * orch_report.c - what lbctl prints without running anything: the dry run (preflight,
 * every step, the gate's answer per node now) and the status of a run
 * from its journal.
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

/* What holds for node n now, read now, for a failure message: cordoned or
 * not, its gate lease held or not, its backend's state. Never what a step
 * assumed: a gate may have released the lease, someone may have
 * uncordoned the node or enabled the backend meanwhile. */
char *orch_node_now(struct nctx *c)
{
	struct orch *o = c->o;
	struct sbuf b = {0};
	struct kube_node kn;
	char *err = NULL;
	long st = 0;
	json_t *out = NULL, *l;
	size_t i;

	int got = c->k ? orch_node_get(c->k, c->n->name, &kn, &err) : -1;
	if (got == 1) {
		orch_sb_add(&b, "Now: %s is %s", c->n->name,
			    kn.unschedulable ? "cordoned" : "NOT cordoned");
		kube_node_clear(&kn);
	} else {
		orch_sb_add(&b, "Now: %s: %s", c->n->name,
			    got == 0 ? "not in the cluster" : "cordon unknown (no answer)");
	}
	xfree(&err);
	if (orch_lbd(o, "GET", "/v1/gate/leases", NULL, &st, &out, &err) == 0 && st == 200) {
		const char *holder = NULL;
		json_array_foreach(json_object_get(out, "leases"), i, l)
		{
			if (!strcmp(orch_jstr(l, "node"), c->n->name))
				holder = orch_jstr(l, "holder");
		}
		if (holder)
			orch_sb_add(&b,
				    "; it holds its gate lease (%s), so the gate lets no other "
				    "node down meanwhile",
				    holder);
		else
			orch_sb_add(&b, "; it holds NO gate lease: the gate may let another node "
					"down");
	} else {
		orch_sb_add(&b, "; its gate lease: unknown (%s)", err ? err : orch_jerr(out));
	}
	json_decref(out);
	xfree(&err);
	if (c->n->role == PLAN_MASTER && c->n->backend) {
		json_t *be = orch_get_backend(o, c->n->backend, NULL, &err);
		if (be)
			orch_sb_add(&b, "; backend %s/%s is %s (%s)", o->plan->pool, c->n->backend,
				    orch_jstr(be, "state"), orch_jstr(be, "health"));
		else
			orch_sb_add(&b, "; backend %s: %s", c->n->backend, err);
		json_decref(be);
		free(err);
	}
	orch_sb_add(&b, ".");
	return b.s;
}

static json_t *strv_json(const struct strv *v)
{
	json_t *a = json_array();
	for (size_t i = 0; i < v->n; i++)
		json_array_append_new(a, json_string(v->v[i]));
	return a;
}

/* The dry run, as text on out, or (json) as one JSON object: what the
 * preflight found, what the hook would run, each node with the gate's answer
 * now and its steps, and whether the run would start. */
int orch_dry_run(struct orch *o, FILE *out, bool json)
{
	const struct plan *pl = o->plan;
	struct strv why = {0}, ok = {0};
	char d1[32], desc[1024], *err = NULL, *tbuf = NULL;
	size_t tlen = 0;
	FILE *real = out;
	json_t *jn = json_array(), *jpre = json_object();
	int rc;

	if (json) /* the text goes nowhere; the same walk fills the JSON */
		out = open_memstream(&tbuf, &tlen);
	orch_priv_init(o);
	struct kube *k = o->p->kc_ok ? orch_kube_for(o) : NULL;
	if (pl->kind == PLAN_UPGRADE)
		fprintf(out,
			"upgrade %s to %s: masters one at a time, then workers (%d at a time)\n",
			pl->path, pl->version, pl->worker_concurrency);
	else
		fprintf(out, "migration %s: %zu replacement(s), %zu new master(s)\n", pl->path,
			pl->nreplace, pl->nadd);
	fprintf(out, "lbd: %s, pool %s; soak %s\n\n", pl->lbd_url ? pl->lbd_url : pl->lbd_socket,
		pl->pool, orch_dur(pl->soak_ms, d1, sizeof(d1)));
	orch_preflight(o, k, true, &why, &ok);
	fprintf(out, "PREFLIGHT\n");
	for (size_t i = 0; i < ok.n; i++)
		fprintf(out, "  ok      %s\n", ok.v[i]);
	for (size_t i = 0; i < why.n; i++)
		fprintf(out, "  REFUSE  %s\n", why.v[i]);
	json_object_set_new(jpre, "ok", strv_json(&ok));
	json_object_set_new(jpre, "refuse", strv_json(&why));
	if (pl->hook_preflight) {
		struct plan_vars v = {.version = pl->version, .date = o->p->date};
		char *cmd = plan_expand(pl->hook_preflight, &v, &err, NULL);
		fprintf(out, "  hook    would run: %s\n", cmd ? cmd : err);
		json_object_set_new(jpre, "hook", json_string(cmd ? cmd : err));
		free(cmd);
		xfree(&err);
	}
	json_t *st = orch_gate_status(o, &err);
	xfree(&err);
	fprintf(out, "\nSTEPS\n");
	size_t num = 0;
	for (size_t i = 0; i < o->p->norder; i++) {
		const struct plan_node *n = o->p->order[i];
		const char *names[ORCH_MAX_STEPS];
		size_t ns = orch_steps_for(pl, n, names);
		struct kube_node kn;
		char *ver = NULL, *gate = NULL;
		bool skip = false;
		if (k && orch_node_get(k, n->name, &kn, &err) == 1) {
			ver = xstrdup(kn.kubelet_version ? kn.kubelet_version : "?");
			skip = pl->kind == PLAN_UPGRADE &&
			       (orch_at_target(kn.kubelet_version, pl->version) ||
				orch_vcmp(kn.kubelet_version, pl->version) > 0);
			kube_node_clear(&kn);
		}
		xfree(&err);
		json_t *jnode = json_pack("{s:s,s:s,s:s?,s:b}", "name", n->name, "role",
					  plan_role_name(n->role), "now", ver, "skipped", skip);
		json_array_append_new(jn, jnode);
		fprintf(out, "%s (%s%s%s)", n->name, plan_role_name(n->role), ver ? ", now " : "",
			ver ? ver : "");
		if (skip) {
			fprintf(out, ": skipped, already at %s\n", pl->version);
			free(ver);
			continue;
		}
		if (ns && !strcmp(names[0], "lease")) {
			gate = orch_gate_answer(
			    st, n, pl->kind == PLAN_MIGRATION && orch_is_new_node(pl, n->name),
			    NULL);
			fprintf(out, "\n    gate now: %s",
				gate ? gate : "unknown (gate not reachable)");
			json_object_set_new(
			    jnode, "gate",
			    json_string(gate ? gate : "unknown (gate not reachable)"));
			free(gate);
		}
		fprintf(out, "\n");
		json_t *jsteps = json_array();
		for (size_t s = 0; s < ns; s++) {
			orch_describe(o, n, names[s], desc, sizeof(desc));
			fprintf(out, "  %3zu. %-14s %s\n", ++num, names[s], desc);
			json_array_append_new(
			    jsteps, json_pack("{s:s,s:s}", "step", names[s], "does", desc));
		}
		json_object_set_new(jnode, "steps", jsteps);
		free(ver);
	}
	json_decref(st);
	rc = why.n ? ORCH_FAILED : ORCH_OK;
	fprintf(out, "\n%s\n",
		rc == ORCH_OK
		    ? "dry run: the preflight passes; nothing was changed"
		    : "dry run: the preflight would refuse to start; nothing was changed");
	if (json) {
		fclose(out);
		free(tbuf);
		json_t *j = json_pack("{s:s,s:s,s:s?,s:s?,s:o,s:o,s:b}", "plan", pl->path, "kind",
				      pl->kind == PLAN_UPGRADE ? "upgrade" : "migration", "version",
				      pl->version, "pool", pl->pool, "preflight", jpre, "nodes", jn,
				      "would_start", rc == ORCH_OK);
		json_dumpf(j, real, JSON_INDENT(2));
		fputc('\n', real);
		json_decref(j);
	} else {
		json_decref(jpre);
		json_decref(jn);
	}
	kube_free(&k);
	orch_sv_free(&why);
	orch_sv_free(&ok);
	orch_priv_free(o);
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
