/*
 * orch_cluster.c - Kubernetes and etcd access for the orchestrator: an apiserver client,
 * node lookups with retries, and etcd's JSON gateway (member list, health).
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

/* ---- Kubernetes ------------------------------------------------------------------------ */

struct kube *orch_kube_for(struct orch *o)
{
	struct kube *k = kube_new(&o->p->kc);
	kube_set_timeout(k, 10000);
	return k;
}

/* A fresh connection: the old one may sit on a backend being drained. */
void orch_kube_reconnect(struct nctx *c)
{
	kube_free(&c->k);
	c->k = orch_kube_for(c->o);
}

/* GET the node, retrying transport errors briefly (the VIP may be moving). 1 found,
 * 0 not found, -1 error (*err). */
int orch_node_get(struct kube *k, const char *name, struct kube_node *n, char **err)
{
	struct kube_err e;
	char buf[600];
	for (int i = 0; i < 3; i++) {
		memset(n, 0, sizeof(*n));
		if (kube_node_get(k, name, n, &e) == 0)
			return 1;
		if (e.status == 404)
			return 0;
		if (e.status != 0)
			break;
		orch_sleep_ms(300);
	}
	*err = xstrdup(kube_err_str(&e, buf, sizeof(buf)));
	return -1;
}

bool orch_node_is_master(const struct kube_node *n)
{
	return n->roles && (strstr(n->roles, "control-plane") || strstr(n->roles, "master"));
}

/* ---- etcd (migrations): its JSON gateway ------------------------------------------------ */

json_t *orch_etcd_call(struct orch *o, const char *endpoint, const char *path, const char *body,
		       char **err)
{
	const struct plan *pl = o->plan;
	struct http_tls tls = {pl->etcd_ca, pl->etcd_cert, pl->etcd_key};
	char *url = xasprintf("%s%s", endpoint, path);
	long st = 0;
	json_t *out = NULL;
	int rc = http_json(body ? "POST" : "GET", url, body, &tls, 3000, &st, &out, err);
	free(url);
	if (rc < 0)
		return NULL;
	if (st != 200 || !out) {
		*err = xasprintf("%s%s: HTTP %ld %s", endpoint, path, st,
				 out ? orch_jstr(out, "error") : "");
		json_decref(out);
		return NULL;
	}
	return out;
}

/* The member list from the first endpoint that answers (caller decrefs). */
json_t *orch_etcd_members(struct orch *o, char **err)
{
	struct sbuf why = {0};
	for (size_t i = 0; i < o->plan->netcd_endpoints; i++) {
		char *e = NULL;
		json_t *m = orch_etcd_call(o, o->plan->etcd_endpoints[i], "/v3/cluster/member/list",
					   "{}", &e);
		if (m) {
			free(why.s);
			return m;
		}
		orch_sb_add(&why, "%s%s", why.n ? "; " : "", e);
		free(e);
	}
	*err = why.s ? why.s : xstrdup("no etcd endpoints in the plan");
	return NULL;
}

bool orch_etcd_member_healthy(struct orch *o, json_t *m, char **why)
{
	const char *url = json_string_value(json_array_get(json_object_get(m, "clientURLs"), 0));
	char *err = NULL;
	if (!url) {
		*why = xstrdup("no client URL (not started yet?)");
		return false;
	}
	json_t *h = orch_etcd_call(o, url, "/health", NULL, &err);
	if (!h) {
		*why = err;
		return false;
	}
	bool ok = !strcmp(orch_jstr(h, "health"), "true");
	if (!ok)
		*why = xasprintf("/health says health=%s%s%s", orch_jstr(h, "health"),
				 *orch_jstr(h, "reason") ? ": " : "", orch_jstr(h, "reason"));
	json_decref(h);
	return ok;
}

json_t *orch_etcd_find(json_t *list, const char *name)
{
	json_t *m;
	size_t i;
	json_array_foreach(json_object_get(list, "members"), i,
			   m) if (!strcmp(orch_jstr(m, "name"), name)) return m;
	return NULL;
}
