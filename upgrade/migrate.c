/*
 * migrate.c - the migration steps: join a new node, add its backend; remove an
 * old node's etcd member (quorum checked, leadership moved off first), run
 * its remove_command, delete the node, remove its backend.
 */
#define _GNU_SOURCE
#include "upgrade/orchestrator_int.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/xmalloc.h"
#include "common/http.h"
#include "common/text.h"
#include "upgrade/drain.h"
#include "upgrade/exec.h"
#include "kube/kube.h"
#include "kube/kubeconfig.h"

/* etcd-remove's note ends with this and the removed member's client URL. */
#define NOTE_URL "its client URL was "

/* ---- migration steps -------------------------------------------------------------------- */

int orch_st_join(struct nctx *c, char **msg)
{
	struct kube_node n;
	char *err = NULL;
	int rc = orch_node_get(c->k, c->n->name, &n, &err);
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
	return orch_run_command(c, "join_command", c->o->plan->join_command, NULL, c->n->name, msg);
}

int orch_st_backend_add(struct nctx *c, char **msg)
{
	char *path = xasprintf("/v1/pools/%s/backends", c->o->plan->pool), *err = NULL;
	json_t *body = json_pack("{s:s,s:s,s:i,s:s}", "name", c->n->backend, "address",
				 c->n->address, "weight", 1, "state", "enabled"),
	       *out = NULL, *b;
	long st = 0;
	int rc = orch_lbd(c->o, "POST", path, body, &st, &out, &err);
	json_decref(body);
	free(path);
	if (rc == 0 && (st == 200 || st == 201)) {
		json_decref(out);
		c->note = xasprintf("backend %s %s added", c->n->backend, c->n->address);
		return ORCH_OK;
	}
	json_decref(out);
	/* Already there from an interrupted run? */
	if ((b = orch_get_backend(c->o, c->n->backend, NULL, &err)) &&
	    !strcmp(orch_jstr(b, "address"), c->n->address)) {
		json_decref(b);
		free(err);
		c->note = xstrdup("the backend was there already");
		return orch_set_backend_state(c, "enabled", msg);
	}
	json_decref(b);
	*msg = xasprintf("%s: adding backend %s (%s) to pool %s: %s", c->n->name, c->n->backend,
			 c->n->address, c->o->plan->pool, rc < 0 ? err : "refused by lbd");
	free(err);
	return ORCH_FAILED;
}

/* If the member to remove leads, hand leadership to a healthy voter first, so
 * the removal costs no election (the leader's own endpoint must be asked). */
static void move_leader_off(struct nctx *c, const struct kube_etcd *e,
			    const struct kube_etcd_member *me)
{
	struct orch *o = c->o;
	const struct kube_etcd_view *v = kube_etcd_view_of(e, me->id);
	char *err = NULL;

	if (!v || v->leader != me->id)
		return;
	for (size_t i = 0; i < e->nmembers; i++) {
		const struct kube_etcd_member *m = &e->members[i];
		if (m == me || !kube_etcd_member_healthy(e, m->id, NULL))
			continue;
		char *body = xasprintf("{\"targetID\":\"%" PRIu64 "\"}", m->id);
		json_t *out = orch_etcd_call(o, v->endpoint, "/v3/maintenance/transfer-leadership",
					     body, &err);
		orch_emit(o, ORCH_EV_INFO, c->n->name, c->step, c->step_start,
			  "etcd member %s leads: leadership to %s first: %s", c->n->etcd, m->name,
			  out ? "done" : err);
		journal_log(&o->p->j, c->n->name, c->step, "leadership to %s: %s", m->name,
			    out ? "done" : err);
		json_decref(out);
		free(err);
		free(body);
		return;
	}
}

/* The member list no longer has name (one poll). */
static bool etcd_gone(struct orch *o, const char *name)
{
	struct kube_etcd e;
	char *err = NULL;
	bool gone = orch_etcd_poll(o, &e, &err) == 0 && !kube_etcd_find(&e, name);
	free(err);
	kube_etcd_clear(&e);
	return gone;
}

int orch_st_etcd_remove(struct nctx *c, char **msg)
{
	struct orch *o = c->o;
	struct kube_etcd e;
	const struct kube_etcd_member *me;
	char *err = NULL;
	int voters, healthy_others = 0;
	struct sbuf bad = {0};

	if (orch_etcd_poll(o, &e, &err) < 0) {
		*msg = xasprintf("%s: etcd: %s", c->n->name, err);
		free(err);
		kube_etcd_clear(&e);
		return ORCH_FAILED;
	}
	if (!(me = kube_etcd_find(&e, c->n->etcd))) {
		kube_etcd_clear(&e);
		c->note = xasprintf("etcd member %s is not in the member list (removed already)",
				    c->n->etcd);
		return ORCH_OK;
	}
	/* The gate's rule and arithmetic: the healthy voters other than me must
	 * make a quorum of the voters that remain. */
	voters = kube_etcd_voters(&e);
	for (size_t i = 0; i < e.nmembers; i++) {
		const struct kube_etcd_member *m = &e.members[i];
		const char *why = NULL;
		if (m->learner || m == me)
			continue;
		if (kube_etcd_member_healthy(&e, m->id, &why))
			healthy_others++;
		else
			orch_sb_add(&bad, "%s%s: %s", bad.n ? "; " : "",
				    *m->name ? m->name : "(unstarted)", why);
	}
	int after = me->learner ? voters : voters - 1, quorum_after = kube_etcd_quorum(after);
	if (after < 1 || healthy_others < quorum_after) {
		*msg = xasprintf(
		    "%s: removing etcd member %s would lose quorum: %d voting members, "
		    "%d healthy without it, %d needed%s%s. Nothing was removed. "
		    "Next: make the other members healthy, then --resume",
		    c->n->name, c->n->etcd, voters, healthy_others, quorum_after ? quorum_after : 1,
		    bad.s ? "; " : "", bad.s ? bad.s : "");
		free(bad.s);
		kube_etcd_clear(&e);
		return ORCH_FAILED;
	}
	free(bad.s);
	move_leader_off(c, &e, me);
	char *idtxt = xasprintf("%" PRIu64, me->id), *url = xstrdup(me->url ? me->url : "");
	char *body = xasprintf("{\"ID\":\"%s\"}", idtxt);
	kube_etcd_clear(&e);
	int rc = -1;
	struct sbuf why = {0};
	for (size_t i = 0; i < o->plan->netcd_endpoints && rc < 0; i++) {
		json_t *out = orch_etcd_call(o, o->plan->etcd_endpoints[i],
					     "/v3/cluster/member/remove", body, &err);
		if (out) {
			rc = 0;
			json_decref(out);
		} else {
			orch_sb_add(&why, "%s%s", why.n ? "; " : "", err);
			free(err);
		}
	}
	free(body);
	if (rc < 0) {
		*msg = xasprintf("%s: etcd member remove %s (ID %s): %s", c->n->name, c->n->etcd,
				 idtxt, why.s);
		free(why.s);
		free(idtxt);
		free(url);
		return ORCH_FAILED;
	}
	free(why.s);
	/* Verify: the member list must no longer have it (bounded). */
	int64_t until = mono_ms() + 10000;
	while (!etcd_gone(o, c->n->etcd)) {
		if (mono_ms() >= until) {
			*msg = xasprintf(
			    "%s: etcd accepted the removal of member %s (ID %s) but still "
			    "lists it after 10s. Next: `etcdctl member list`, then --resume",
			    c->n->name, c->n->etcd, idtxt);
			free(idtxt);
			free(url);
			return ORCH_FAILED;
		}
		orch_sleep_ms(o->poll_ms);
	}
	/* gate-members reads the client URL back from this note (NOTE_URL). */
	c->note =
	    xasprintf("etcd member %s (ID %s) removed; %d voters left, %d healthy; " NOTE_URL "%s",
		      c->n->etcd, idtxt, after, healthy_others, *url ? url : "(none)");
	free(idtxt);
	free(url);
	return ORCH_OK;
}

const char *orch_replaced_by(const struct plan *pl, const char *old_node)
{
	for (size_t r = 0; r < pl->nreplace; r++)
		if (!strcmp(pl->replace[r].old_node, old_node))
			return pl->replace[r].new_node;
	return NULL;
}

int orch_st_remove_command(struct nctx *c, char **msg)
{
	return orch_run_command(c, "remove_command", c->o->plan->remove_command, c->n->name,
				orch_replaced_by(c->o->plan, c->n->name), msg);
}

/* The old machine's kubelet is stopped when its Node stops being Ready
 * (it no longer posts status). Deleting a Node whose kubelet still runs is
 * undone at once: the kubelet registers it again. 1 stopped, 0 gone, -1 not
 * within timeouts.node_ready (*msg), -2 error. */
static int kubelet_stopped(struct nctx *c, char **msg)
{
	int64_t deadline = mono_ms() + c->o->plan->t_node_ready_ms;
	char d[32];
	for (;;) {
		struct kube_node n;
		char *err = NULL;
		int rc = orch_node_get(c->k, c->n->name, &n, &err);
		if (rc <= 0) {
			if (rc < 0)
				*msg = xasprintf("%s: %s", c->n->name, err);
			free(err);
			return rc == 0 ? 0 : -2;
		}
		bool ready = n.ready;
		kube_node_clear(&n);
		if (!ready)
			return 1;
		if (mono_ms() >= deadline || orch_interrupted(c->o)) {
			*msg = xasprintf(
			    "%s: still Ready %s after remove_command: its kubelet runs, and would "
			    "register the Node again if it were deleted. Nothing was deleted. "
			    "Next: "
			    "stop the kubelet on %s (k3s-uninstall.sh, systemctl stop kubelet), "
			    "then --resume",
			    c->n->name,
			    orch_interrupted(c->o)
				? "(interrupted)"
				: orch_dur(c->o->plan->t_node_ready_ms, d, sizeof(d)),
			    c->n->name);
			return -1;
		}
		orch_emit(c->o, ORCH_EV_WAIT, c->n->name, c->step, c->step_start,
			  "waiting for its kubelet to stop (the Node still Ready)");
		orch_sleep_ms(c->o->poll_ms);
	}
}

int orch_st_node_delete(struct nctx *c, char **msg)
{
	char *path = xasprintf("/api/v1/nodes/%s", c->n->name), buf[600];
	struct kube_err e;
	int stopped = kubelet_stopped(c, msg);
	if (stopped < 0) {
		free(path);
		return stopped == -1 ? ORCH_TIMEOUT : ORCH_FAILED;
	}
	if (stopped == 0) {
		free(path);
		c->note = xstrdup("the node was gone already");
		return ORCH_OK;
	}
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

int orch_st_backend_remove(struct nctx *c, char **msg)
{
	char *path = orch_pool_path(c->o, c->n->backend), *err = NULL;
	json_t *out = NULL;
	long st = 0;
	int rc = orch_lbd(c->o, "DELETE", path, NULL, &st, &out, &err);
	free(path);
	if (rc < 0 || (st != 200 && st != 202 && st != 404)) {
		*msg = xasprintf("%s: removing backend %s: %s", c->n->name, c->n->backend,
				 rc < 0 ? err : orch_jerr(out));
		free(err);
		json_decref(out);
		return ORCH_FAILED;
	}
	json_decref(out);
	c->note = xstrdup(st == 404 ? "the backend was gone already" : "backend removed");
	return ORCH_OK;
}

/* ---- the gate's membership follows the cluster ------------------------------------------ */

/* a and b name the same URL (a trailing slash aside). */
static bool same_url(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	while (la && a[la - 1] == '/')
		la--;
	while (lb && b[lb - 1] == '/')
		lb--;
	return la == lb && !strncmp(a, b, la);
}

static bool json_has_url(json_t *a, const char *url)
{
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
	{
		if (json_is_string(v) && same_url(json_string_value(v), url))
			return true;
	}
	return false;
}

/* The gate's last answer from endpoint ep (its view's ok). */
static bool gate_view_ok(json_t *etcd, const char *ep)
{
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(etcd, "endpoints"), i, v)
	{
		if (same_url(orch_jstr(v, "endpoint"), ep))
			return json_is_true(json_object_get(v, "ok"));
	}
	return false;
}

/* The gate's etcd endpoints and members are its config file's, which lbctl
 * cannot change: after a master joins or leaves, compare what the gate now
 * counts (GET /v1/gate/status) with the cluster; when they differ, print the
 * exact YAML edit and stop (--resume once lbd has reloaded it). A voter's
 * client URL the config lacks must be added; the removed member's client URL
 * (from etcd-remove's note) must go, and so must a configured endpoint that
 * is no member's URL and does not answer the gate (one that answers, a DNS
 * name or VIP, is left alone). */
int orch_st_gate_members(struct nctx *c, char **msg)
{
	struct orch *o = c->o;
	char *err = NULL;
	long st = 0;
	json_t *gs = NULL, *etcd, *conf;
	struct sbuf add = {0}, del = {0}, mem = {0};
	bool is_new = orch_is_new_node(o->plan, c->n->name);
	size_t i;

	if (orch_lbd(o, "GET", "/v1/gate/status", NULL, &st, &gs, &err) < 0) {
		*msg = xasprintf("%s: the gate's status: %s", c->n->name, err);
		free(err);
		return ORCH_FAILED;
	}
	if (st == 404) {
		json_decref(gs);
		c->note = xstrdup("lbd runs no gate: nothing to check");
		return ORCH_OK;
	}
	if (st != 200 || !gs) {
		*msg = xasprintf("%s: the gate's status: %ld %s", c->n->name, st, orch_jerr(gs));
		json_decref(gs);
		return ORCH_FAILED;
	}
	/* The old master's etcd client URL, from its etcd-remove step. */
	const char *gone = NULL;
	struct jstep *rm = o->p->have_j ? journal_find(&o->p->j, c->n->name, "etcd-remove") : NULL;
	if (rm && rm->note && strstr(rm->note, NOTE_URL))
		gone = strstr(rm->note, NOTE_URL) + strlen(NOTE_URL);
	etcd = json_object_get(json_object_get(gs, "inputs"), "etcd");
	conf = json_object_get(etcd, "configured_endpoints");
	if (json_is_array(conf)) {
		struct kube_etcd e;
		json_t *v;
		if (orch_etcd_poll(o, &e, &err) < 0) {
			*msg = xasprintf("%s: etcd: %s", c->n->name, err);
			free(err);
			kube_etcd_clear(&e);
			json_decref(gs);
			return ORCH_FAILED;
		}
		for (size_t m = 0; m < e.nmembers; m++) {
			const struct kube_etcd_member *km = &e.members[m];
			if (km->learner || !km->url || json_has_url(conf, km->url))
				continue;
			/* etcd's text, outside ours: cleaned before the terminal and journal. */
			char *url = text_clean(km->url, strlen(km->url), 512),
			     *name = text_clean(km->name, strlen(km->name), 128);
			orch_sb_add(&add, "          - %s   # add (etcd member %s)\n", url,
				    *name ? name : "(unstarted)");
			free(url);
			free(name);
		}
		json_array_foreach(conf, i, v)
		{
			const char *ep = json_string_value(v);
			bool member = false;
			for (size_t m = 0; m < e.nmembers; m++)
				if (e.members[m].url && same_url(e.members[m].url, ep))
					member = true;
			if (ep && gone && same_url(ep, gone))
				orch_sb_add(&del,
					    "          - %s   # remove (etcd member %s, removed)\n",
					    ep, c->n->etcd);
			else if (ep && !member && !gate_view_ok(etcd, ep))
				orch_sb_add(&del,
					    "          - %s   # remove (no member's URL, "
					    "does not answer)\n",
					    ep);
		}
		kube_etcd_clear(&e);
	}
	/* A new master whose backend is named otherwise: the gate asks about
	 * its backend's name unless members maps it to the node. */
	if (is_new && c->n->role == PLAN_MASTER && strcmp(c->n->backend, c->n->name)) {
		json_t *d;
		bool by_backend = false;
		json_array_foreach(json_object_get(gs, "master"), i, d)
		{
			if (!strcmp(orch_jstr(d, "node"), c->n->backend))
				by_backend = true;
		}
		/* lbd checks members against the file's pool, not its runtime edits. */
		if (by_backend)
			orch_sb_add(
			    &mem,
			    "    members:\n      %s: {backend: %s, etcd: %s}   # add\n"
			    "  pools:   # the backend lbctl added, so that members can name it\n"
			    "    - name: %s\n      backends:\n"
			    "        - {name: %s, address: '%s'}   # add\n",
			    c->n->name, c->n->backend, c->n->etcd, o->plan->pool, c->n->backend,
			    c->n->address);
	}
	json_decref(gs);
	if (!add.s && !del.s && !mem.s) {
		c->note = xstrdup("the gate's etcd endpoints and members follow the cluster");
		return ORCH_OK;
	}
	*msg = xasprintf("%s: the gate's config no longer matches the cluster, so its quorum "
			 "arithmetic would be wrong. lbctl cannot change it: edit lbd's config "
			 "file:\n  gate:\n%s%s%s%s"
			 "Then `lbctl reload` (or systemctl reload lbd) and --resume; this step "
			 "checks GET /v1/gate/status again.",
			 c->n->name,
			 add.s || del.s ? "    quorum:\n      etcd:\n        endpoints:\n" : "",
			 add.s ? add.s : "", del.s ? del.s : "", mem.s ? mem.s : "");
	free(add.s);
	free(del.s);
	free(mem.s);
	return ORCH_REFUSED;
}
