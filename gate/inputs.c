/*
 * inputs.c - see inputs.h. The poller owns its clients (a struct kube is
 * for one thread at a time) and builds each source's new state without the
 * lock; only the swap is under it, so a snapshot never waits for a slow
 * etcd.
 */
#include "gate/inputs.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "gate/conf.h"
#include "gate/etcd.h"
#include "common/http.h"
#include "kube/kube.h"
#include "kube/kubeconfig.h"

#define GATE_KUBE_TIMEOUT_MS 2000
#define GATE_PROM_TIMEOUT_MS 2000

struct gate_inputs_src {
	/* The poller's alone: its settings, their generation, its client. */
	struct config *own;
	uint64_t own_gen;
	struct kube *kube;
	char *kube_err; /* why kube is NULL while own has a kubeconfig */
	int64_t interval_ms;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, kicked;	/* under mu */
	struct config *want;	/* under mu: the latest settings given */
	uint64_t gen;		/* under mu: bumped by each reconfigure */
	struct gate_inputs cur; /* under mu */
};

int64_t gate_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- kubernetes nodes ----------------------------------------------------------------- */

static void poll_nodes(struct gate_inputs_src *s, struct gate_nodes_in *out)
{
	struct kube_node_list l = {0};
	struct kube_err ke = {0};
	char eb[600];

	memset(out, 0, sizeof(*out));
	if (kube_node_list(s->kube, &l, &ke) < 0) {
		out->src.why = xasprintf("node list: %s", kube_err_str(&ke, eb, sizeof(eb)));
		return;
	}
	out->src.known = true;
	out->src.at_ms = gate_now_ms();
	out->n = l.n;
	out->v = xcalloc(l.n + 1, sizeof(*out->v));
	for (size_t i = 0; i < l.n; i++) {
		struct gate_node_in *n = &out->v[i];
		const char *k;
		json_t *v;
		n->name = xstrdup(l.v[i].name);
		n->ready = l.v[i].ready;
		n->unschedulable = l.v[i].unschedulable;
		n->boot_id = l.v[i].boot_id && *l.v[i].boot_id ? xstrdup(l.v[i].boot_id) : NULL;
		n->labels = xcalloc(json_object_size(l.v[i].labels) + 1, sizeof(*n->labels));
		json_object_foreach(l.v[i].labels, k, v)
		{
			if (!json_is_string(v))
				continue;
			n->labels[n->nlabels].key = xstrdup(k);
			n->labels[n->nlabels].value = xstrdup(json_string_value(v));
			n->nlabels++;
		}
	}
	kube_node_list_free(&l);
}

/* ---- prometheus ----------------------------------------------------------------------- */

static char *alert_text(json_t *metric)
{
	const char *name = json_string_value(json_object_get(metric, "alertname")), *k;
	char buf[512];
	size_t off = 0;
	json_t *v;

	off += (size_t)snprintf(buf, sizeof(buf), "%s", name ? name : "(unnamed alert)");
	json_object_foreach(metric, k, v)
	{
		if (off >= sizeof(buf) || !strcmp(k, "alertname") || !strcmp(k, "alertstate") ||
		    !strcmp(k, "__name__") || !json_is_string(v))
			continue;
		off +=
		    (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s=%s",
				     off == strlen(name ? name : "(unnamed alert)") ? " (" : ", ",
				     k, json_string_value(v));
	}
	if (off < sizeof(buf) && off != strlen(name ? name : "(unnamed alert)"))
		snprintf(buf + off, sizeof(buf) - off, ")");
	return xstrdup(buf);
}

static void poll_alerts(const struct gate_conf *conf, struct gate_alerts_in *out)
{
	char *q, *url, *err = NULL;
	json_t *ans = NULL, *res, *r;
	long status = 0;
	size_t i;
	CURL *c = curl_easy_init();

	memset(out, 0, sizeof(*out));
	q = xasprintf("ALERTS{alertstate=\"firing\"%s%s}", conf->alerts_filter ? "," : "",
		      conf->alerts_filter ? conf->alerts_filter : "");
	char *eq = curl_easy_escape(c, q, 0);
	url = xasprintf("%s/api/v1/query?query=%s", conf->alerts_prometheus_url, eq);
	curl_free(eq);
	curl_easy_cleanup(c);
	if (http_json("GET", url, NULL, NULL, GATE_PROM_TIMEOUT_MS, &status, &ans, &err) < 0) {
		out->src.why = xasprintf("query failed: %s", err);
	} else if (status != 200 || !ans ||
		   strcmp(json_string_value(json_object_get(ans, "status")) ?: "", "success") !=
		       0) {
		const char *e = json_string_value(json_object_get(ans, "error"));
		out->src.why =
		    xasprintf("query answered HTTP %ld%s%s", status, e ? ": " : "", e ? e : "");
	} else {
		res = json_object_get(json_object_get(ans, "data"), "result");
		out->src.known = true;
		out->src.at_ms = gate_now_ms();
		out->firing = xcalloc(json_array_size(res) + 1, sizeof(char *));
		json_array_foreach(res, i, r) out->firing[out->n++] =
		    alert_text(json_object_get(r, "metric"));
	}
	json_decref(ans);
	free(err);
	free(url);
	free(q);
}

/* ---- the poller ----------------------------------------------------------------------- */

static void swap_src(void *dst, void *src, size_t len)
{
	char tmp[256];
	BUG_ON(len > sizeof(tmp));
	memcpy(tmp, dst, len);
	memcpy(dst, src, len);
	memcpy(src, tmp, len);
}

/* (Re)builds the kubernetes client from own's kubeconfig. One that cannot be
 * loaded leaves the nodes input unknown, with s->kube_err saying why. */
static void load_kube(struct gate_inputs_src *s)
{
	const struct gate_conf *conf = &s->own->gate;
	struct kubeconfig kc = {0};
	char *err = NULL;

	kube_free(&s->kube);
	xfree(&s->kube_err);
	if (!conf->kubeconfig)
		return;
	if (kubeconfig_load(conf->kubeconfig, NULL, &kc, &err) < 0) {
		s->kube_err = xasprintf("kubeconfig %s: %s", conf->kubeconfig, err);
		log_warn("gate: %s; the nodes input is unknown until it loads", s->kube_err);
		free(err);
		return;
	}
	s->kube = kube_new(&kc);
	kube_set_timeout(s->kube, GATE_KUBE_TIMEOUT_MS);
	kubeconfig_free(&kc);
}

/* Takes the settings of a reconfigure, if one came. Returns the generation polled. */
static uint64_t adopt(struct gate_inputs_src *s)
{
	struct config *next = NULL;
	uint64_t gen;

	pthread_mutex_lock(&s->mu);
	gen = s->gen;
	if (gen != s->own_gen)
		next = gate_conf_dup(&s->want->gate);
	pthread_mutex_unlock(&s->mu);
	if (!next)
		return gen;
	config_free(s->own);
	s->own = next;
	s->own_gen = gen;
	load_kube(s);
	return gen;
}

static void *poller(void *arg)
{
	struct gate_inputs_src *s = arg;

	for (;;) {
		uint64_t gen = adopt(s);
		const struct gate_conf *conf = &s->own->gate;
		struct gate_inputs fresh = {0};
		struct timespec until;

		if (conf->netcd_endpoints)
			gate_etcd_poll(conf, gate_now_ms(), &fresh.etcd);
		if (s->kube)
			poll_nodes(s, &fresh.nodes);
		else if (conf->kubeconfig)
			fresh.nodes.src.why = xstrdup(s->kube_err ? s->kube_err : "no client");
		if (conf->alerts_prometheus_url)
			poll_alerts(conf, &fresh.alerts);

		pthread_mutex_lock(&s->mu);
		/* Swap in what was polled, unless the settings changed meanwhile;
		 * the old state goes out with fresh. */
		if (gen == s->gen) {
			if (conf->netcd_endpoints)
				swap_src(&s->cur.etcd, &fresh.etcd, sizeof(fresh.etcd));
			if (conf->kubeconfig)
				swap_src(&s->cur.nodes, &fresh.nodes, sizeof(fresh.nodes));
			if (conf->alerts_prometheus_url)
				swap_src(&s->cur.alerts, &fresh.alerts, sizeof(fresh.alerts));
		}
		pthread_mutex_unlock(&s->mu);
		gate_inputs_free(&fresh);

		pthread_mutex_lock(&s->mu);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += s->interval_ms / 1000;
		until.tv_nsec += (s->interval_ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		while (!s->stop && !s->kicked)
			if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0)
				break;
		s->kicked = false;
		bool stop = s->stop;
		pthread_mutex_unlock(&s->mu);
		if (stop)
			return NULL;
	}
}

static void src_free(struct gate_inputs_src *s);

struct gate_inputs_src *gate_inputs_start(const struct gate_conf *conf, int64_t interval_ms,
					  char **err)
{
	struct gate_inputs_src *s = xcalloc(1, sizeof(*s));

	s->own = gate_conf_dup(conf);
	s->want = gate_conf_dup(conf);
	s->interval_ms = interval_ms > 0 ? interval_ms : GATE_INPUTS_INTERVAL_MS;
	load_kube(s); /* unknown, not fatal: the nodes input says why */
	s->cur.pool.src.why = xstrdup("no pool health published yet");
	s->cur.etcd.src.why = xstrdup("not asked yet");
	s->cur.nodes.src.why = xstrdup("not asked yet");
	s->cur.alerts.src.why = xstrdup("not asked yet");
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	int rc = pthread_create(&s->thread, NULL, poller, s);
	if (rc != 0) {
		*err = xasprintf("gate: cannot start the input thread: %s", strerror(rc));
		src_free(s);
		return NULL;
	}
	return s;
}

void gate_inputs_stop(struct gate_inputs_src **sp)
{
	struct gate_inputs_src *s = *sp;

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	src_free(s);
	*sp = NULL;
}

/* Frees what gate_inputs_start made; the poller is not running. */
static void src_free(struct gate_inputs_src *s)
{
	kube_free(&s->kube);
	free(s->kube_err);
	config_free(s->own);
	config_free(s->want);
	gate_inputs_free(&s->cur);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

/* Under mu: the source's state is unknown from now on. */
static void forget(void *cur, void *blank, size_t len, struct gate_source *blank_src)
{
	blank_src->why = xstrdup("settings reloaded; not asked with the new ones yet");
	swap_src(cur, blank, len);
}

void gate_inputs_reconfigure(struct gate_inputs_src *s, const struct gate_conf *conf)
{
	struct config *next = gate_conf_dup(conf), *old;
	struct gate_inputs blank = {0};

	pthread_mutex_lock(&s->mu);
	old = s->want;
	if (!gate_conf_etcd_eq(&old->gate, conf))
		forget(&s->cur.etcd, &blank.etcd, sizeof(blank.etcd), &blank.etcd.src);
	if (!gate_conf_str_eq(old->gate.kubeconfig, conf->kubeconfig))
		forget(&s->cur.nodes, &blank.nodes, sizeof(blank.nodes), &blank.nodes.src);
	if (!gate_conf_alerts_eq(&old->gate, conf))
		forget(&s->cur.alerts, &blank.alerts, sizeof(blank.alerts), &blank.alerts.src);
	s->want = next;
	s->gen++;
	s->kicked = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	gate_inputs_free(&blank); /* what was forgotten */
	config_free(old);
}

void gate_inputs_kick(struct gate_inputs_src *s)
{
	pthread_mutex_lock(&s->mu);
	s->kicked = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

void gate_inputs_set_pool(struct gate_inputs_src *s, const struct gate_pool_in *p)
{
	struct gate_inputs tmp = {0}, src = {0};

	src.pool = *p;
	gate_inputs_copy(&tmp, &src); /* copies everything, of which only the pool is set */
	pthread_mutex_lock(&s->mu);
	swap_src(&s->cur.pool, &tmp.pool, sizeof(tmp.pool));
	pthread_mutex_unlock(&s->mu);
	gate_inputs_free(&tmp);
}

void gate_inputs_snapshot(struct gate_inputs_src *s, int64_t now_ms, struct gate_inputs *out)
{
	pthread_mutex_lock(&s->mu);
	gate_inputs_copy(out, &s->cur);
	pthread_mutex_unlock(&s->mu);
	out->now_ms = now_ms;
	out->max_age_ms = GATE_INPUTS_MAX_AGE_MS;
}
