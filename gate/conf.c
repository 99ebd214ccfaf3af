/*
 * conf.c - see conf.h: copies, comparisons, and the JSON the gate process is
 * sent its settings in.
 */
#include "gate/conf.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- to JSON --------------------------------------------------------------------------- */

/* Builds one JSON value; *ok turns false (and stays so) if a value could not be made. */
struct enc {
	bool ok;
};

static json_t *enc_str(struct enc *e, const char *s)
{
	json_t *v;

	if (!s)
		return json_null();
	v = json_string(s); /* NULL: not valid UTF-8 */
	if (!v) {
		e->ok = false;
		return json_null();
	}
	return v;
}

static void enc_set(struct enc *e, json_t *o, const char *key, json_t *v)
{
	if (!v || json_object_set_new(o, key, v) < 0)
		e->ok = false;
}

static void enc_push(struct enc *e, json_t *a, json_t *v)
{
	if (!v || json_array_append_new(a, v) < 0)
		e->ok = false;
}

static json_t *enc_strv(struct enc *e, char *const *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		enc_push(e, a, enc_str(e, v[i]));
	return a;
}

static json_t *enc_tls(struct enc *e, const struct tls_conf *t)
{
	json_t *o = json_object(), *certs = json_array();

	enc_set(e, o, "verify", json_boolean(t->verify));
	enc_set(e, o, "ca", enc_str(e, t->ca));
	enc_set(e, o, "cert", enc_str(e, t->cert));
	enc_set(e, o, "key", enc_str(e, t->key));
	enc_set(e, o, "sni", enc_str(e, t->sni));
	for (size_t i = 0; i < t->ncerts; i++) {
		json_t *c = json_object();
		enc_set(e, c, "cert", enc_str(e, t->certs[i].cert));
		enc_set(e, c, "key", enc_str(e, t->certs[i].key));
		enc_push(e, certs, c);
	}
	enc_set(e, o, "certs", certs);
	return o;
}

json_t *gate_conf_to_json(const struct gate_conf *c)
{
	struct enc e = {.ok = true};
	json_t *o = json_object(), *per_label = json_array(), *windows = json_array(),
	       *members = json_array();
	char num[64];

	enc_set(&e, o, "enabled", json_boolean(c->enabled));
	/* A host name goes as the address it resolved to: the child does no DNS. */
	enc_set(&e, o, "listen",
		!c->listen ? json_null()
		: c->listen->resolved
		    ? enc_str(&e, sockaddr_conf_numeric(c->listen, num, sizeof(num)))
		    : enc_str(&e, c->listen->text));
	enc_set(&e, o, "tls", enc_tls(&e, &c->tls));
	enc_set(&e, o, "tokens_file", enc_str(&e, c->tokens_file));
	enc_set(&e, o, "max_connections", json_integer(c->max_connections));
	enc_set(&e, o, "request_timeout_ms", json_integer(c->request_timeout_ms));
	enc_set(&e, o, "store",
		json_string(c->store == GATE_STORE_KUBERNETES ? "kubernetes" : "file"));
	enc_set(&e, o, "conc_masters", json_integer(c->conc_masters));
	enc_set(&e, o, "conc_workers", json_integer(c->conc_workers));
	for (size_t i = 0; i < c->nper_label; i++) {
		json_t *l = json_object();
		enc_set(&e, l, "label", enc_str(&e, c->per_label[i].label));
		enc_set(&e, l, "max", json_integer(c->per_label[i].max));
		enc_push(&e, per_label, l);
	}
	enc_set(&e, o, "per_label", per_label);
	enc_set(&e, o, "quorum_pool", enc_str(&e, c->quorum_pool));
	enc_set(&e, o, "etcd_endpoints", enc_strv(&e, c->etcd_endpoints, c->netcd_endpoints));
	enc_set(&e, o, "etcd_ca", enc_str(&e, c->etcd_ca));
	enc_set(&e, o, "etcd_cert", enc_str(&e, c->etcd_cert));
	enc_set(&e, o, "etcd_key", enc_str(&e, c->etcd_key));
	enc_set(&e, o, "kubeconfig", enc_str(&e, c->kubeconfig));
	enc_set(&e, o, "require_all_nodes_ready", json_boolean(c->require_all_nodes_ready));
	for (size_t i = 0; i < c->nwindows; i++) {
		const struct gate_window *w = &c->windows[i];
		json_t *wo = json_object();
		enc_set(&e, wo, "days", enc_strv(&e, w->days, w->ndays));
		enc_set(&e, wo, "start", enc_str(&e, w->start));
		enc_set(&e, wo, "end", enc_str(&e, w->end));
		enc_set(&e, wo, "tz", enc_str(&e, w->tz));
		enc_push(&e, windows, wo);
	}
	enc_set(&e, o, "windows", windows);
	enc_set(&e, o, "alerts_prometheus_url", enc_str(&e, c->alerts_prometheus_url));
	enc_set(&e, o, "alerts_filter", enc_str(&e, c->alerts_filter));
	enc_set(&e, o, "lease_ttl_ms", json_integer(c->lease_ttl_ms));
	enc_set(&e, o, "soak_ms", json_integer(c->soak_ms));
	for (size_t i = 0; i < c->nmembers; i++) {
		json_t *m = json_object();
		enc_set(&e, m, "node", enc_str(&e, c->members[i].node));
		enc_set(&e, m, "backend", enc_str(&e, c->members[i].backend));
		enc_set(&e, m, "etcd", enc_str(&e, c->members[i].etcd));
		enc_push(&e, members, m);
	}
	enc_set(&e, o, "members", members);
	if (!e.ok || !o) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* ---- from JSON ------------------------------------------------------------------------- */

/* The first thing found wrong, as "gate settings: PATH: what"; later checks are skipped. */
struct dec {
	char *err;
};

__attribute__((format(printf, 3, 4))) static bool dec_fail(struct dec *d, const char *path,
							   const char *fmt, ...)
{
	char text[256];
	va_list ap;

	if (d->err)
		return false;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	d->err = xasprintf("gate settings: %s%s%s", path, *path ? ": " : "", text);
	return false;
}

static const char *json_kind(const json_t *v)
{
	if (!v)
		return "nothing";
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "?";
}

/* The path of key under path, in buf. */
static const char *sub(char *buf, size_t len, const char *path, const char *key)
{
	snprintf(buf, len, "%s%s%s", path, *path ? "." : "", key);
	return buf;
}
#define PATHLEN 128
#define SUB(path, key) sub((char[PATHLEN]){0}, PATHLEN, (path), (key))

/* o must be an object with exactly these keys (a NULL-terminated list). */
static bool dec_object(struct dec *d, const json_t *o, const char *path, const char *const *keys)
{
	const char *k;
	json_t *v;
	size_t n = 0;

	if (!json_is_object(o))
		return dec_fail(d, path, "expected an object, got %s", json_kind(o));
	for (; keys[n]; n++)
		if (!json_object_get(o, keys[n]))
			return dec_fail(d, SUB(path, keys[n]), "missing");
	json_object_foreach((json_t *)o, k, v)
	{
		size_t i = 0;
		while (keys[i] && strcmp(keys[i], k) != 0)
			i++;
		if (!keys[i])
			return dec_fail(d, path, "unknown key \"%.64s\"", k);
	}
	return true;
}

/* A string, or null when nullable; *out is replaced by a copy. */
static bool dec_str(struct dec *d, const json_t *o, const char *path, const char *key,
		    bool nullable, char **out)
{
	const json_t *v = json_object_get(o, key);

	if (!v || (json_is_null(v) && !nullable) || (!json_is_null(v) && !json_is_string(v)))
		return dec_fail(d, SUB(path, key), "expected a string%s, got %s",
				nullable ? " or null" : "", json_kind(v));
	free(*out);
	*out = json_is_null(v) ? NULL : xstrdup(json_string_value(v));
	return true;
}

static bool dec_int(struct dec *d, const json_t *o, const char *path, const char *key, int64_t min,
		    int64_t max, int64_t *out)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		return dec_fail(d, SUB(path, key), "expected an integer, got %s", json_kind(v));
	if (json_integer_value(v) < min || json_integer_value(v) > max)
		return dec_fail(d, SUB(path, key), "%lld is out of range (%lld..%lld)",
				(long long)json_integer_value(v), (long long)min, (long long)max);
	*out = json_integer_value(v);
	return true;
}

static bool dec_int32(struct dec *d, const json_t *o, const char *path, const char *key,
		      int64_t min, int64_t max, int *out)
{
	int64_t n;

	if (!dec_int(d, o, path, key, min, max, &n))
		return false;
	*out = (int)n;
	return true;
}

static bool dec_bool(struct dec *d, const json_t *o, const char *path, const char *key, bool *out)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_boolean(v))
		return dec_fail(d, SUB(path, key), "expected a boolean, got %s", json_kind(v));
	*out = json_is_true(v);
	return true;
}

/* The array under key, or NULL after saying why not. */
static const json_t *dec_array(struct dec *d, const json_t *o, const char *path, const char *key)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_array(v)) {
		dec_fail(d, SUB(path, key), "expected an array, got %s", json_kind(v));
		return NULL;
	}
	return v;
}

/* An array of strings, each passing check (NULL if fine, else why not). */
static bool dec_strv(struct dec *d, const json_t *o, const char *path, const char *key,
		     const char *(*check)(const char *), char ***out, size_t *n)
{
	const json_t *a = dec_array(d, o, path, key);
	char ipath[PATHLEN];

	if (!a)
		return false;
	*out = xcalloc(json_array_size(a) + 1, sizeof(**out));
	for (size_t i = 0; i < json_array_size(a); i++) {
		const json_t *v = json_array_get(a, i);
		const char *why;

		snprintf(ipath, sizeof(ipath), "%s%s%s[%zu]", path, *path ? "." : "", key, i);
		if (!json_is_string(v))
			return dec_fail(d, ipath, "expected a string, got %s", json_kind(v));
		if (check && (why = check(json_string_value(v))))
			return dec_fail(d, ipath, "%s, got \"%.32s\"", why, json_string_value(v));
		(*out)[(*n)++] = xstrdup(json_string_value(v));
	}
	return true;
}

static const char *check_day(const char *s)
{
	static const char *const days[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

	for (size_t i = 0; i < 7; i++)
		if (strcmp(s, days[i]) == 0)
			return NULL;
	return "expected a day (mon..sun)";
}

static bool dec_tls(struct dec *d, const json_t *o, const char *path, struct tls_conf *t)
{
	static const char *const keys[] = {"verify", "ca", "cert", "key", "sni", "certs", NULL};
	static const char *const cert_keys[] = {"cert", "key", NULL};
	const json_t *certs;
	char ipath[PATHLEN];

	if (!dec_object(d, o, path, keys) || !dec_bool(d, o, path, "verify", &t->verify) ||
	    !dec_str(d, o, path, "ca", true, &t->ca) ||
	    !dec_str(d, o, path, "cert", true, &t->cert) ||
	    !dec_str(d, o, path, "key", true, &t->key) ||
	    !dec_str(d, o, path, "sni", true, &t->sni) || !(certs = dec_array(d, o, path, "certs")))
		return false;
	t->certs = xcalloc(json_array_size(certs) + 1, sizeof(*t->certs));
	for (size_t i = 0; i < json_array_size(certs); i++) {
		const json_t *c = json_array_get(certs, i);

		snprintf(ipath, sizeof(ipath), "%s.certs[%zu]", path, i);
		t->ncerts++;
		if (!dec_object(d, c, ipath, cert_keys) ||
		    !dec_str(d, c, ipath, "cert", true, &t->certs[i].cert) ||
		    !dec_str(d, c, ipath, "key", true, &t->certs[i].key))
			return false;
	}
	return true;
}

static bool dec_listen(struct dec *d, const json_t *o, struct gate_conf *g)
{
	const json_t *v = json_object_get(o, "listen");
	struct sockaddr_conf a = {0};
	const char *why = NULL;

	if (json_is_null(v))
		return true;
	if (!json_is_string(v))
		return dec_fail(d, "listen", "expected an address or null, got %s", json_kind(v));
	if (sockaddr_conf_parse(json_string_value(v), &a, &why) < 0)
		return dec_fail(d, "listen", "invalid address \"%.64s\": %s", json_string_value(v),
				why ? why : "?");
	g->listen = xmalloc(sizeof(*g->listen));
	*g->listen = a;
	return true;
}

static bool dec_store(struct dec *d, const json_t *o, struct gate_conf *g)
{
	const json_t *v = json_object_get(o, "store");
	const char *s = json_string_value(v);

	if (s && strcmp(s, "file") == 0)
		g->store = GATE_STORE_FILE;
	else if (s && strcmp(s, "kubernetes") == 0)
		g->store = GATE_STORE_KUBERNETES;
	else
		return dec_fail(d, "store", "expected \"file\" or \"kubernetes\", got %s",
				s ? "another string" : json_kind(v));
	return true;
}

static bool dec_per_label(struct dec *d, const json_t *o, struct gate_conf *g)
{
	static const char *const keys[] = {"label", "max", NULL};
	const json_t *a = dec_array(d, o, "", "per_label");
	char ipath[PATHLEN];

	if (!a)
		return false;
	g->per_label = xcalloc(json_array_size(a) + 1, sizeof(*g->per_label));
	for (size_t i = 0; i < json_array_size(a); i++) {
		const json_t *l = json_array_get(a, i);
		struct gate_label_cap *lc = &g->per_label[i];

		snprintf(ipath, sizeof(ipath), "per_label[%zu]", i);
		g->nper_label++;
		if (!dec_object(d, l, ipath, keys) ||
		    !dec_str(d, l, ipath, "label", false, &lc->label) ||
		    !dec_int32(d, l, ipath, "max", 1, INT_MAX, &lc->max))
			return false;
	}
	return true;
}

static bool dec_windows(struct dec *d, const json_t *o, struct gate_conf *g)
{
	static const char *const keys[] = {"days", "start", "end", "tz", NULL};
	const json_t *a = dec_array(d, o, "", "windows");
	char ipath[PATHLEN];

	if (!a)
		return false;
	g->windows = xcalloc(json_array_size(a) + 1, sizeof(*g->windows));
	for (size_t i = 0; i < json_array_size(a); i++) {
		const json_t *wo = json_array_get(a, i);
		struct gate_window *w = &g->windows[i];

		snprintf(ipath, sizeof(ipath), "windows[%zu]", i);
		g->nwindows++;
		if (!dec_object(d, wo, ipath, keys) ||
		    !dec_strv(d, wo, ipath, "days", check_day, &w->days, &w->ndays) ||
		    !dec_str(d, wo, ipath, "start", false, &w->start) ||
		    !dec_str(d, wo, ipath, "end", false, &w->end) ||
		    !dec_str(d, wo, ipath, "tz", true, &w->tz))
			return false;
	}
	return true;
}

static bool dec_members(struct dec *d, const json_t *o, struct gate_conf *g)
{
	static const char *const keys[] = {"node", "backend", "etcd", NULL};
	const json_t *a = dec_array(d, o, "", "members");
	char ipath[PATHLEN];

	if (!a)
		return false;
	g->members = xcalloc(json_array_size(a) + 1, sizeof(*g->members));
	for (size_t i = 0; i < json_array_size(a); i++) {
		const json_t *mo = json_array_get(a, i);
		struct gate_member *m = &g->members[i];

		snprintf(ipath, sizeof(ipath), "members[%zu]", i);
		g->nmembers++;
		if (!dec_object(d, mo, ipath, keys) ||
		    !dec_str(d, mo, ipath, "node", false, &m->node) ||
		    !dec_str(d, mo, ipath, "backend", true, &m->backend) ||
		    !dec_str(d, mo, ipath, "etcd", true, &m->etcd))
			return false;
	}
	return true;
}

struct config *gate_conf_from_json(json_t *o, char **err)
{
	static const char *const keys[] = {"enabled",
					   "listen",
					   "tls",
					   "tokens_file",
					   "max_connections",
					   "request_timeout_ms",
					   "store",
					   "conc_masters",
					   "conc_workers",
					   "per_label",
					   "quorum_pool",
					   "etcd_endpoints",
					   "etcd_ca",
					   "etcd_cert",
					   "etcd_key",
					   "kubeconfig",
					   "require_all_nodes_ready",
					   "windows",
					   "alerts_prometheus_url",
					   "alerts_filter",
					   "lease_ttl_ms",
					   "soak_ms",
					   "members",
					   NULL};
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	struct gate_conf *g = &cfg->gate;
	struct dec d = {0};
	bool ok;

	if (err)
		*err = NULL;
	ok = o && dec_object(&d, o, "", keys) && dec_bool(&d, o, "", "enabled", &g->enabled) &&
	     dec_listen(&d, o, g) && dec_tls(&d, json_object_get(o, "tls"), "tls", &g->tls) &&
	     dec_str(&d, o, "", "tokens_file", true, &g->tokens_file) &&
	     dec_int32(&d, o, "", "max_connections", 1, CONF_LISTENER_MAX_CONN_MAX,
		       &g->max_connections) &&
	     dec_int(&d, o, "", "request_timeout_ms", CONF_REQUEST_TIMEOUT_MIN_MS,
		     CONF_REQUEST_TIMEOUT_MAX_MS, &g->request_timeout_ms) &&
	     dec_store(&d, o, g) &&
	     dec_int32(&d, o, "", "conc_masters", 1, INT_MAX, &g->conc_masters) &&
	     dec_int32(&d, o, "", "conc_workers", 1, INT_MAX, &g->conc_workers) &&
	     dec_per_label(&d, o, g) && dec_str(&d, o, "", "quorum_pool", true, &g->quorum_pool) &&
	     dec_strv(&d, o, "", "etcd_endpoints", NULL, &g->etcd_endpoints, &g->netcd_endpoints) &&
	     dec_str(&d, o, "", "etcd_ca", true, &g->etcd_ca) &&
	     dec_str(&d, o, "", "etcd_cert", true, &g->etcd_cert) &&
	     dec_str(&d, o, "", "etcd_key", true, &g->etcd_key) &&
	     dec_str(&d, o, "", "kubeconfig", true, &g->kubeconfig) &&
	     dec_bool(&d, o, "", "require_all_nodes_ready", &g->require_all_nodes_ready) &&
	     dec_windows(&d, o, g) &&
	     dec_str(&d, o, "", "alerts_prometheus_url", true, &g->alerts_prometheus_url) &&
	     dec_str(&d, o, "", "alerts_filter", true, &g->alerts_filter) &&
	     dec_int(&d, o, "", "lease_ttl_ms", 1000, INT64_MAX, &g->lease_ttl_ms) &&
	     dec_int(&d, o, "", "soak_ms", 0, INT64_MAX, &g->soak_ms) && dec_members(&d, o, g);
	if (!ok) {
		if (err)
			*err = d.err ? d.err : xstrdup("gate settings: none given");
		else
			free(d.err);
		config_free(cfg);
		return NULL;
	}
	return cfg;
}
