/*
 * orch_cluster.c - Kubernetes and etcd access for the orchestrator: an apiserver client,
 * node lookups with retries, and etcd through kube/etcd.h (its health rule is the gate's).
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
	if (o->kube_fake)
		kube_set_transport(k, o->kube_fake, o->kube_fake_arg);
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

/* ---- etcd (migrations): kube/etcd.h with the plan's endpoints and TLS files ------------ */

#define ORCH_ETCD_TIMEOUT_MS 3000

static struct kube_etcd_conf etcd_conf(const struct orch *o)
{
	const struct plan *pl = o->plan;
	return (struct kube_etcd_conf){
	    .endpoints = pl->etcd_endpoints,
	    .nendpoints = pl->netcd_endpoints,
	    .tls = {pl->etcd_ca, pl->etcd_cert, pl->etcd_key},
	    .timeout_ms = ORCH_ETCD_TIMEOUT_MS,
	    .call = o->etcd_fake,
	    .call_arg = o->etcd_fake_arg,
	};
}

json_t *orch_etcd_call(struct orch *o, const char *endpoint, const char *path, const char *body,
		       char **err)
{
	struct kube_etcd_conf c = etcd_conf(o);
	char *e = NULL;
	json_t *out = kube_etcd_call(&c, endpoint, path, body, &e);
	if (!out)
		*err = xasprintf("%s%s", endpoint, e); /* "https://10.0.0.1:2379/v3/...: ..." */
	free(e);
	return out;
}

static void add_disagreement(void *arg, const char *msg)
{
	struct sbuf *b = arg;
	orch_sb_add(b, "%s%s", b->n ? "; " : "", msg);
}

int orch_etcd_poll(struct orch *o, struct kube_etcd *e, char **err)
{
	struct kube_etcd_conf c = etcd_conf(o);
	struct sbuf why = {0};

	if (kube_etcd_poll(&c, e, err) < 0)
		return -1;
	/* As the gate: a membership change in flight is no time to count a quorum. */
	if (!kube_etcd_agree(e, add_disagreement, &why)) {
		*err = why.s;
		return -1;
	}
	return 0;
}
