/*
 * conf.c - see conf.h.
 */
#include "gate/conf.h"

#include <stdio.h>
#include <string.h>

#include "common/xmalloc.h"

static char *dup0(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static char **strv_dup(char *const *v, size_t n)
{
	char **out = xcalloc(n + 1, sizeof(*out));
	for (size_t i = 0; i < n; i++)
		out[i] = dup0(v[i]);
	return out;
}

struct config *gate_conf_dup(const struct gate_conf *src)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	struct gate_conf *d = &cfg->gate;

	*d = *src; /* the scalars; every pointer is replaced below */
	if (src->listen) {
		d->listen = xcalloc(1, sizeof(*d->listen));
		sockaddr_conf_copy(d->listen, src->listen);
	}
	tls_conf_copy(&d->tls, &src->tls);
	d->tokens_file = dup0(src->tokens_file);
	d->per_label = xcalloc(src->nper_label + 1, sizeof(*d->per_label));
	for (size_t i = 0; i < src->nper_label; i++) {
		d->per_label[i].label = dup0(src->per_label[i].label);
		d->per_label[i].max = src->per_label[i].max;
	}
	d->quorum_pool = dup0(src->quorum_pool);
	d->etcd_endpoints = strv_dup(src->etcd_endpoints, src->netcd_endpoints);
	d->etcd_ca = dup0(src->etcd_ca);
	d->etcd_cert = dup0(src->etcd_cert);
	d->etcd_key = dup0(src->etcd_key);
	d->kubeconfig = dup0(src->kubeconfig);
	d->windows = xcalloc(src->nwindows + 1, sizeof(*d->windows));
	for (size_t i = 0; i < src->nwindows; i++) {
		const struct gate_window *w = &src->windows[i];
		d->windows[i].days = strv_dup(w->days, w->ndays);
		d->windows[i].ndays = w->ndays;
		d->windows[i].start = dup0(w->start);
		d->windows[i].end = dup0(w->end);
		d->windows[i].tz = dup0(w->tz);
	}
	d->alerts_prometheus_url = dup0(src->alerts_prometheus_url);
	d->alerts_filter = dup0(src->alerts_filter);
	d->members = xcalloc(src->nmembers + 1, sizeof(*d->members));
	for (size_t i = 0; i < src->nmembers; i++) {
		d->members[i].node = dup0(src->members[i].node);
		d->members[i].backend = dup0(src->members[i].backend);
		d->members[i].etcd = dup0(src->members[i].etcd);
	}
	return cfg;
}

bool gate_conf_str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static bool strv_eq(char *const *a, size_t na, char *const *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!gate_conf_str_eq(a[i], b[i]))
			return false;
	return true;
}

bool gate_conf_listen_eq(const struct gate_conf *a, const struct gate_conf *b)
{
	if (!a->listen || !b->listen)
		return !a->listen && !b->listen;
	return a->listen->len == b->listen->len &&
	       memcmp(&a->listen->ss, &b->listen->ss, a->listen->len) == 0;
}

bool gate_conf_tls_eq(const struct gate_conf *a, const struct gate_conf *b)
{
	const struct tls_conf *x = &a->tls, *y = &b->tls;

	if (!gate_conf_str_eq(x->cert, y->cert) || !gate_conf_str_eq(x->key, y->key) ||
	    !gate_conf_str_eq(x->ca, y->ca) || x->ncerts != y->ncerts)
		return false;
	for (size_t i = 0; i < x->ncerts; i++)
		if (!gate_conf_str_eq(x->certs[i].cert, y->certs[i].cert) ||
		    !gate_conf_str_eq(x->certs[i].key, y->certs[i].key))
			return false;
	return true;
}

bool gate_conf_etcd_eq(const struct gate_conf *a, const struct gate_conf *b)
{
	return strv_eq(a->etcd_endpoints, a->netcd_endpoints, b->etcd_endpoints,
		       b->netcd_endpoints) &&
	       gate_conf_str_eq(a->etcd_ca, b->etcd_ca) &&
	       gate_conf_str_eq(a->etcd_cert, b->etcd_cert) &&
	       gate_conf_str_eq(a->etcd_key, b->etcd_key);
}

bool gate_conf_alerts_eq(const struct gate_conf *a, const struct gate_conf *b)
{
	return gate_conf_str_eq(a->alerts_prometheus_url, b->alerts_prometheus_url) &&
	       gate_conf_str_eq(a->alerts_filter, b->alerts_filter);
}

static bool concurrency_eq(const struct gate_conf *a, const struct gate_conf *b)
{
	if (a->conc_masters != b->conc_masters || a->conc_workers != b->conc_workers ||
	    a->nper_label != b->nper_label)
		return false;
	for (size_t i = 0; i < a->nper_label; i++)
		if (!gate_conf_str_eq(a->per_label[i].label, b->per_label[i].label) ||
		    a->per_label[i].max != b->per_label[i].max)
			return false;
	return true;
}

static bool windows_eq(const struct gate_conf *a, const struct gate_conf *b)
{
	if (a->nwindows != b->nwindows)
		return false;
	for (size_t i = 0; i < a->nwindows; i++) {
		const struct gate_window *x = &a->windows[i], *y = &b->windows[i];
		if (!strv_eq(x->days, x->ndays, y->days, y->ndays) ||
		    !gate_conf_str_eq(x->start, y->start) || !gate_conf_str_eq(x->end, y->end) ||
		    !gate_conf_str_eq(x->tz, y->tz))
			return false;
	}
	return true;
}

static bool members_eq(const struct gate_conf *a, const struct gate_conf *b)
{
	if (a->nmembers != b->nmembers)
		return false;
	for (size_t i = 0; i < a->nmembers; i++)
		if (!gate_conf_str_eq(a->members[i].node, b->members[i].node) ||
		    !gate_conf_str_eq(a->members[i].backend, b->members[i].backend) ||
		    !gate_conf_str_eq(a->members[i].etcd, b->members[i].etcd))
			return false;
	return true;
}

char *gate_conf_changes(const struct gate_conf *a, const struct gate_conf *b)
{
	const struct {
		const char *name;
		bool same;
	} v[] = {
	    {"tokens_file", gate_conf_str_eq(a->tokens_file, b->tokens_file)},
	    {"concurrency", concurrency_eq(a, b)},
	    {"quorum.pool", gate_conf_str_eq(a->quorum_pool, b->quorum_pool)},
	    {"quorum.etcd", gate_conf_etcd_eq(a, b)},
	    {"kubeconfig", gate_conf_str_eq(a->kubeconfig, b->kubeconfig)},
	    {"require_all_nodes_ready", a->require_all_nodes_ready == b->require_all_nodes_ready},
	    {"windows", windows_eq(a, b)},
	    {"alerts", gate_conf_alerts_eq(a, b)},
	    {"lease_ttl", a->lease_ttl_ms == b->lease_ttl_ms},
	    {"soak", a->soak_ms == b->soak_ms},
	    {"members", members_eq(a, b)},
	};
	char buf[512];
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (!v[i].same && off < sizeof(buf))
			off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s",
						off ? ", " : "", v[i].name);
	return off ? xstrdup(buf) : NULL;
}
