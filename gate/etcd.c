/* etcd.c - see etcd.h. */
#include "gate/etcd.h"

#include <string.h>

#include "kube/etcd.h"

void gate_etcd_poll(const struct gate_conf *conf, int64_t now_ms, struct gate_etcd_in *e)
{
	struct kube_etcd_conf c = {
	    .endpoints = conf->etcd_endpoints,
	    .nendpoints = conf->netcd_endpoints,
	    .tls = {conf->etcd_ca, conf->etcd_cert, conf->etcd_key},
	    .timeout_ms = GATE_ETCD_TIMEOUT_MS,
	};
	struct kube_etcd k;
	char *why = NULL;

	memset(e, 0, sizeof(*e));
	if (kube_etcd_poll(&c, &k, &why) == 0) {
		e->src.known = true;
		e->src.at_ms = now_ms;
	} else {
		e->src.why = why;
	}
	e->members = k.members;
	e->nmembers = k.nmembers;
	e->views = k.views;
	e->nviews = k.nviews;
}
