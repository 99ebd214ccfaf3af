/*
 * kube.c - Kubernetes REST over libcurl, answers decoded with jansson.
 *
 * One curl easy handle per struct kube, reused so that calls share a
 * keep-alive TLS connection. Credentials held in memory (decoded *-data or
 * files read by kubeconfig.c) go to curl as blobs, never to temp files.
 */
#include "kube/kube.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text.h"
#include "common/xmalloc.h"

struct kube {
	CURL *curl;
	char *server;
	char *token;
	char *tls_server_name;
	bool insecure;
	struct kc_blob ca, cert, key;
	int64_t timeout_ms;
	int page_size;
	bool dry_run;		     /* dryRun=All on every write */
	int eviction_known;	     /* 0 unknown, 1 known */
	char eviction_gv[64];	     /* "policy/v1", "policy/v1beta1", "" = unsupported */
	kube_transport_fn transport; /* a test's fake apiserver, or NULL */
	void *transport_arg;
};

/* The largest answer kept: the biggest lbd and lbctl read (a page of nodes
 * or pods) is a few MiB; past this a broken or hostile apiserver would
 * only grow our memory. */
#define KUBE_MAX_RESPONSE_MIB 64
#define KUBE_MAX_RESPONSE ((size_t)KUBE_MAX_RESPONSE_MIB << 20)

struct kube_buf {
	char *data;
	size_t len, cap;
	bool too_big; /* the answer passed KUBE_MAX_RESPONSE: curl was stopped */
};

static pthread_once_t kube_once = PTHREAD_ONCE_INIT;

static void kube_global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void blob_copy(struct kc_blob *dst, const struct kc_blob *src)
{
	dst->data = NULL;
	dst->len = 0;
	if (src->data) {
		dst->data = xmalloc(src->len + 1);
		memcpy(dst->data, src->data, src->len);
		dst->data[src->len] = '\0';
		dst->len = src->len;
	}
}

struct kube *kube_new(const struct kubeconfig *kc)
{
	struct kube *k = xcalloc(1, sizeof(*k));

	pthread_once(&kube_once, kube_global_init);
	k->curl = curl_easy_init(); /* NULL (out of memory): kube_request() tries again */
	k->server = xstrdup(kc->server);
	k->token = kc->token ? xstrdup(kc->token) : NULL;
	k->tls_server_name = kc->tls_server_name ? xstrdup(kc->tls_server_name) : NULL;
	k->insecure = kc->insecure;
	blob_copy(&k->ca, &kc->ca);
	blob_copy(&k->cert, &kc->cert);
	blob_copy(&k->key, &kc->key);
	k->timeout_ms = 30000;
	k->page_size = 500;
	return k;
}

struct kube *kube_clone(const struct kube *k)
{
	struct kube *n = xcalloc(1, sizeof(*n));

	n->curl = curl_easy_init();
	n->server = xstrdup(k->server);
	n->token = k->token ? xstrdup(k->token) : NULL;
	n->tls_server_name = k->tls_server_name ? xstrdup(k->tls_server_name) : NULL;
	n->insecure = k->insecure;
	blob_copy(&n->ca, &k->ca);
	blob_copy(&n->cert, &k->cert);
	blob_copy(&n->key, &k->key);
	n->timeout_ms = k->timeout_ms;
	n->page_size = k->page_size;
	n->dry_run = k->dry_run;
	n->eviction_known = k->eviction_known;
	memcpy(n->eviction_gv, k->eviction_gv, sizeof(n->eviction_gv));
	n->transport = k->transport;
	n->transport_arg = k->transport_arg;
	return n;
}

void kube_set_transport(struct kube *k, kube_transport_fn fn, void *arg)
{
	k->transport = fn;
	k->transport_arg = arg;
}

void kube_set_dry_run(struct kube *k, bool on)
{
	k->dry_run = on;
}

void kube_free(struct kube **kp)
{
	struct kube *k = *kp;

	if (!k)
		return;
	curl_easy_cleanup(k->curl);
	free(k->server);
	free(k->token);
	free(k->tls_server_name);
	free(k->ca.data);
	free(k->cert.data);
	free(k->key.data);
	xfree(kp);
}

void kube_set_timeout(struct kube *k, int64_t ms)
{
	k->timeout_ms = ms;
}

void kube_set_page_size(struct kube *k, int limit)
{
	k->page_size = limit;
}

static size_t kube_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct kube_buf *b = arg;
	size_t n = size * nmemb;

	if (n > KUBE_MAX_RESPONSE - b->len) {
		b->too_big = true;
		return 0; /* less than given: curl stops with CURLE_WRITE_ERROR */
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 8192;
		while (b->len + n + 1 > cap)
			cap *= 2;
		b->cap = cap < KUBE_MAX_RESPONSE + 1 ? cap : KUBE_MAX_RESPONSE + 1;
		b->data = xrealloc(b->data, b->cap);
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

static void err_set(struct kube_err *e, long status, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * The one way into a struct kube_err. What it holds is quoted into logs,
 * JSON answers and the journal, and much of it is the apiserver's (or a
 * proxy's) text: each field is cleaned here (common/text.h), so no caller
 * has to.
 */
static void err_set(struct kube_err *e, long status, const char *reason, const char *fmt, ...)
{
	char msg[2 * sizeof(e->message)];
	va_list ap;

	if (!e)
		return;
	memset(e, 0, sizeof(*e));
	e->status = status;
	if (reason)
		text_clean_buf(e->reason, sizeof(e->reason), reason, strlen(reason));
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	text_clean_buf(e->message, sizeof(e->message), msg, strlen(msg));
}

/* Fills e from a non-2xx answer: a Status object if the body is one, else
 * the body's start (any bytes: a proxy's HTML page, a cut UTF-8 character). */
static void err_from_answer(struct kube_err *e, long status, const struct kube_buf *b)
{
	json_t *st = b->data ? json_loadb(b->data, b->len, 0, NULL) : NULL;
	const char *msg = NULL, *reason = NULL, *cause = NULL;
	char *excerpt;

	if (st) {
		json_t *causes = json_object_get(json_object_get(st, "details"), "causes");
		msg = json_string_value(json_object_get(st, "message"));
		reason = json_string_value(json_object_get(st, "reason"));
		cause = json_string_value(json_object_get(json_array_get(causes, 0), "reason"));
	}
	if (msg) {
		err_set(e, status, reason, "%s", msg);
	} else {
		excerpt = text_clean(b->data, b->len, 200);
		err_set(e, status, reason, "HTTP %ld: %s", status,
			*excerpt ? excerpt : "(empty answer)");
		free(excerpt);
	}
	if (e && cause)
		text_clean_buf(e->cause, sizeof(e->cause), cause, strlen(cause));
	json_decref(st);
}

/* Retry-After in seconds (the apiserver sends whole seconds), bounded; 0 if none. */
static int retry_after(CURL *c)
{
#if LIBCURL_VERSION_NUM >= 0x075300
	struct curl_header *h = NULL;

	if (curl_easy_header(c, "Retry-After", 0, CURLH_HEADER, -1, &h) == CURLHE_OK && h &&
	    h->value) {
		char *end;
		long v = strtol(h->value, &end, 10);
		if (end != h->value && v > 0)
			return v > 600 ? 600 : (int)v;
	}
#else
	(void)c;
#endif
	return 0;
}

/* kube_request through k->transport: its answer judged as a real one. */
static int fake_request(struct kube *k, const char *method, const char *path, json_t *body,
			json_t **out, struct kube_err *e)
{
	json_t *ans = NULL;
	char *err = NULL;
	int status = k->transport(k->transport_arg, method, path, body, &ans, &err);
	int rc = 0;

	if (status < 0) {
		err_set(e, 0, "", "%s %s: %s", method, path, err ? err : "transport error");
		rc = -1;
	} else if (status < 200 || status > 299) {
		struct kube_buf b = {.data = ans ? json_dumps(ans, JSON_COMPACT) : NULL};
		b.len = b.data ? strlen(b.data) : 0;
		err_from_answer(e, status, &b);
		free(b.data);
		rc = -1;
	} else if (out) {
		*out = ans, ans = NULL;
	}
	json_decref(ans);
	free(err);
	return rc;
}

int kube_request(struct kube *k, const char *method, const char *path, json_t *body,
		 const char *content_type, json_t **out, struct kube_err *e)
{
	struct curl_slist *hdrs = NULL;
	struct kube_buf b = {0};
	bool write = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
	char *url = xasprintf(
		 "%s%s%s", k->server, path,
		 k->dry_run && write ? (strchr(path, '?') ? "&dryRun=All" : "?dryRun=All") : ""),
	     *payload = NULL, *h;
	char errbuf[CURL_ERROR_SIZE] = "";
	long status = 0;
	CURLcode rc;
	CURL *c = k->curl;

	if (out)
		*out = NULL;
	if (k->transport) {
		int frc = fake_request(k, method, url + strlen(k->server), body, out, e);
		free(url);
		return frc;
	}
	if (!c && !(c = k->curl = curl_easy_init())) {
		err_set(e, 0, "", "%s %s: cannot create a curl handle", method, path);
		free(url);
		return -1;
	}
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*"); /* never a proxy from the environment */
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)k->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, kube_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "lbctl/0.1 (lbd kube client)");
	curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	if (k->insecure) {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	} else if (k->ca.data) {
		struct curl_blob cb = {k->ca.data, k->ca.len, CURL_BLOB_NOCOPY};
		curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &cb);
	}
	if (k->cert.data) {
		struct curl_blob cb = {k->cert.data, k->cert.len, CURL_BLOB_NOCOPY};
		struct curl_blob kb = {k->key.data, k->key.len, CURL_BLOB_NOCOPY};
		curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cb);
		curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
		curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &kb);
		curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
	}
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (k->token) {
		h = xasprintf("Authorization: Bearer %s", k->token);
		hdrs = curl_slist_append(hdrs, h);
		free(h);
	}
	if (body) {
		payload = json_dumps(body, JSON_COMPACT);
		h = xasprintf("Content-Type: %s", content_type ? content_type : "application/json");
		hdrs = curl_slist_append(hdrs, h);
		free(h);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdrs);
	free(payload);
	if (rc != CURLE_OK && b.too_big) {
		err_set(e, 0, "", "%s %s: response larger than %d MiB", method, path,
			KUBE_MAX_RESPONSE_MIB);
		free(url);
		free(b.data);
		return -1;
	}
	if (rc != CURLE_OK) {
		err_set(e, 0, "", "%s %s: %s", method, url,
			*errbuf ? errbuf : curl_easy_strerror(rc));
		free(url);
		free(b.data);
		return -1;
	}
	free(url);
	if (status < 200 || status > 299) {
		err_from_answer(e, status, &b);
		if (e)
			e->retry_after_s = retry_after(c);
		free(b.data);
		return -1;
	}
	if (out && b.len > 0) {
		json_error_t je;
		*out = json_loadb(b.data, b.len, 0, &je);
		if (!*out) {
			err_set(e, status, "", "%s %s: answer is not JSON: %s", method, path,
				je.text);
			free(b.data);
			return -1;
		}
	}
	free(b.data);
	return 0;
}

const char *kube_err_str(const struct kube_err *e, char *buf, size_t len)
{
	char s[sizeof(e->message) + sizeof(e->reason) + 32];

	if (e->status == 0)
		snprintf(s, sizeof(s), "%s", e->message);
	else if (e->reason[0])
		snprintf(s, sizeof(s), "%ld %s: %s", e->status, e->reason, e->message);
	else
		snprintf(s, sizeof(s), "%ld: %s", e->status, e->message);
	/* The fields are clean already; this only keeps a short buf's cut
	 * between characters. */
	text_clean_buf(buf, len, s, strlen(s));
	return buf;
}

/* ------------------------------------------------------------------ helpers */

static char *jdup(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? xstrdup(s) : NULL;
}

/* "/api/v1/namespaces/NS/pods/NAME" with NS and NAME escaped: every byte but
 * RFC 3986's unreserved ones as %XX, as curl_easy_escape() does (which can
 * fail; this cannot). */
static char *esc(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *r = xmalloc(strlen(s) * 3 + 1), *o = r;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return r;
}

int kube_version(struct kube *k, char **git_version, struct kube_err *e)
{
	json_t *v;

	if (kube_request(k, "GET", "/version", NULL, NULL, &v, e) < 0)
		return -1;
	*git_version = jdup(v, "gitVersion");
	json_decref(v);
	if (!*git_version) {
		err_set(e, 200, "", "/version has no gitVersion");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ nodes */

void kube_node_from_json(json_t *obj, struct kube_node *n)
{
	json_t *md = json_object_get(obj, "metadata");
	json_t *st = json_object_get(obj, "status");
	json_t *ni = json_object_get(st, "nodeInfo");
	json_t *labels = json_object_get(md, "labels"), *c, *v;
	const char *key;
	size_t i, rl = 0;

	memset(n, 0, sizeof(*n));
	n->name = jdup(md, "name");
	n->created = jdup(md, "creationTimestamp");
	n->unschedulable =
	    json_is_true(json_object_get(json_object_get(obj, "spec"), "unschedulable"));
	n->kubelet_version = jdup(ni, "kubeletVersion");
	n->boot_id = jdup(ni, "bootID");
	json_array_foreach(json_object_get(st, "conditions"), i, c)
	{
		const char *t = json_string_value(json_object_get(c, "type"));
		if (t && strcmp(t, "Ready") == 0) {
			const char *s = json_string_value(json_object_get(c, "status"));
			n->ready = s && strcmp(s, "True") == 0;
			n->ready_reason = jdup(c, "reason");
		}
	}
	json_array_foreach(json_object_get(st, "addresses"), i, c)
	{
		const char *t = json_string_value(json_object_get(c, "type"));
		if (t && strcmp(t, "InternalIP") == 0 && !n->internal_ip)
			n->internal_ip = jdup(c, "address");
	}
	n->labels = json_is_object(labels) ? json_deep_copy(labels) : json_object();
	n->roles = xstrdup("");
	json_object_foreach(n->labels, key, v)
	{
		const char *pfx = "node-role.kubernetes.io/";
		if (strncmp(key, pfx, strlen(pfx)) == 0 && key[strlen(pfx)]) {
			char *r = xasprintf("%s%s%s", n->roles, rl ? "," : "", key + strlen(pfx));
			free(n->roles);
			n->roles = r;
			rl++;
		}
	}
}

void kube_node_clear(struct kube_node *n)
{
	xfree(&n->name);
	xfree(&n->ready_reason);
	xfree(&n->kubelet_version);
	xfree(&n->boot_id);
	xfree(&n->roles);
	xfree(&n->internal_ip);
	xfree(&n->created);
	json_decref(n->labels);
	n->labels = NULL;
}

void kube_node_list_free(struct kube_node_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		kube_node_clear(&l->v[i]);
	xfree(&l->v);
	l->n = 0;
}

/*
 * GET a collection page by page (limit/continue), calling add for each item.
 * query is "" or "fieldSelector=...&" (already escaped, ending in '&').
 */
static int kube_list(struct kube *k, const char *base, const char *query,
		     void (*add)(void *arg, json_t *item), void *arg, struct kube_err *e)
{
	char *cont = NULL;

	do {
		char *path, *ec = cont ? esc(cont) : NULL;
		json_t *page, *items, *it;
		size_t i;

		path = xasprintf("%s?%slimit=%d%s%s", base, query, k->page_size,
				 ec ? "&continue=" : "", ec ? ec : "");
		free(ec);
		xfree(&cont);
		if (kube_request(k, "GET", path, NULL, NULL, &page, e) < 0) {
			free(path);
			return -1;
		}
		free(path);
		items = json_object_get(page, "items");
		json_array_foreach(items, i, it)
		{
			add(arg, it);
		}
		cont = jdup(json_object_get(page, "metadata"), "continue");
		if (cont && !*cont)
			xfree(&cont);
		json_decref(page);
	} while (cont);
	return 0;
}

static void add_node(void *arg, json_t *item)
{
	struct kube_node_list *l = arg;

	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	kube_node_from_json(item, &l->v[l->n++]);
}

int kube_node_list(struct kube *k, struct kube_node_list *out, struct kube_err *e)
{
	memset(out, 0, sizeof(*out));
	if (kube_list(k, "/api/v1/nodes", "", add_node, out, e) < 0) {
		kube_node_list_free(out);
		return -1;
	}
	return 0;
}

int kube_node_get(struct kube *k, const char *name, struct kube_node *out, struct kube_err *e)
{
	char *n = esc(name), *path = xasprintf("/api/v1/nodes/%s", n);
	json_t *obj;
	int rc = kube_request(k, "GET", path, NULL, NULL, &obj, e);

	free(n);
	free(path);
	memset(out, 0, sizeof(*out));
	if (rc < 0)
		return -1;
	kube_node_from_json(obj, out);
	json_decref(obj);
	return 0;
}

int kube_node_set_unschedulable(struct kube *k, const char *name, bool on, struct kube_err *e)
{
	char *n = esc(name), *path = xasprintf("/api/v1/nodes/%s", n);
	/* kubectl sends exactly this: true to cordon, null (field removed) to uncordon. */
	json_t *patch =
	    json_pack("{s:{s:o}}", "spec", "unschedulable", on ? json_true() : json_null());
	int rc = kube_request(k, "PATCH", path, patch, "application/strategic-merge-patch+json",
			      NULL, e);

	json_decref(patch);
	free(n);
	free(path);
	return rc;
}

/* ------------------------------------------------------------------ pods */

void kube_pod_from_json(json_t *obj, struct kube_pod *p)
{
	json_t *md = json_object_get(obj, "metadata");
	json_t *spec = json_object_get(obj, "spec");
	json_t *st = json_object_get(obj, "status");
	json_t *ref, *vol, *c;
	size_t i;

	memset(p, 0, sizeof(*p));
	p->ns = jdup(md, "namespace");
	p->name = jdup(md, "name");
	p->uid = jdup(md, "uid");
	p->node = jdup(spec, "nodeName");
	p->phase = jdup(st, "phase");
	p->deleting = json_object_get(md, "deletionTimestamp") != NULL &&
		      !json_is_null(json_object_get(md, "deletionTimestamp"));
	p->deletion_ts = jdup(md, "deletionTimestamp");
	p->mirror = json_object_get(json_object_get(md, "annotations"),
				    "kubernetes.io/config.mirror") != NULL;
	json_array_foreach(json_object_get(md, "ownerReferences"), i, ref)
	{
		if (json_is_true(json_object_get(ref, "controller"))) {
			p->owner_kind = jdup(ref, "kind");
			p->owner_name = jdup(ref, "name");
			break;
		}
	}
	json_array_foreach(json_object_get(spec, "volumes"), i, vol)
	{
		if (json_object_get(vol, "emptyDir"))
			p->empty_dir = true;
	}
	json_array_foreach(json_object_get(st, "conditions"), i, c)
	{
		const char *t = json_string_value(json_object_get(c, "type"));
		const char *s = json_string_value(json_object_get(c, "status"));
		if (t && s && strcmp(t, "Ready") == 0)
			p->ready = strcmp(s, "True") == 0;
	}
	if (!p->ns)
		p->ns = xstrdup("default");
	if (!p->name)
		p->name = xstrdup("");
	if (!p->uid)
		p->uid = xstrdup("");
	if (!p->phase)
		p->phase = xstrdup("Unknown");
}

void kube_pod_clear(struct kube_pod *p)
{
	xfree(&p->ns);
	xfree(&p->name);
	xfree(&p->uid);
	xfree(&p->node);
	xfree(&p->phase);
	xfree(&p->owner_kind);
	xfree(&p->owner_name);
	xfree(&p->deletion_ts);
}

void kube_pod_list_free(struct kube_pod_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		kube_pod_clear(&l->v[i]);
	xfree(&l->v);
	l->n = 0;
}

static void add_pod(void *arg, json_t *item)
{
	struct kube_pod_list *l = arg;

	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	kube_pod_from_json(item, &l->v[l->n++]);
}

int kube_pods_on_node(struct kube *k, const char *node, struct kube_pod_list *out,
		      struct kube_err *e)
{
	return kube_pods_on_node_sel(k, node, NULL, out, e);
}

int kube_pods_on_node_sel(struct kube *k, const char *node, const char *label_selector,
			  struct kube_pod_list *out, struct kube_err *e)
{
	char *sel = xasprintf("spec.nodeName=%s", node), *esel = esc(sel);
	char *elab = label_selector && *label_selector ? esc(label_selector) : NULL;
	char *q = xasprintf("fieldSelector=%s&%s%s%s", esel, elab ? "labelSelector=" : "",
			    elab ? elab : "", elab ? "&" : "");
	int rc;

	free(elab);
	memset(out, 0, sizeof(*out));
	rc = kube_list(k, "/api/v1/pods", q, add_pod, out, e);
	free(sel);
	free(esel);
	free(q);
	if (rc < 0)
		kube_pod_list_free(out);
	return rc;
}

static char *pod_path(struct kube *k, const char *ns, const char *name, const char *sub)
{
	char *en = esc(ns), *nn = esc(name);
	char *p =
	    xasprintf("/api/v1/namespaces/%s/pods/%s%s%s", en, nn, sub ? "/" : "", sub ? sub : "");

	free(en);
	free(nn);
	return p;
}

int kube_pod_get(struct kube *k, const char *ns, const char *name, struct kube_pod *out,
		 struct kube_err *e)
{
	char *path = pod_path(k, ns, name, NULL);
	json_t *obj;
	int rc = kube_request(k, "GET", path, NULL, NULL, &obj, e);

	free(path);
	memset(out, 0, sizeof(*out));
	if (rc < 0)
		return -1;
	kube_pod_from_json(obj, out);
	json_decref(obj);
	return 0;
}

int kube_pod_delete(struct kube *k, const char *ns, const char *name, int grace_s,
		    struct kube_err *e)
{
	char *path = pod_path(k, ns, name, NULL);
	json_t *opts = json_pack("{s:s,s:s}", "kind", "DeleteOptions", "apiVersion", "v1");
	int rc;

	if (grace_s >= 0)
		json_object_set_new(opts, "gracePeriodSeconds", json_integer(grace_s));
	rc = kube_request(k, "DELETE", path, opts, "application/json", NULL, e);
	json_decref(opts);
	free(path);
	return rc;
}

/* kubectl's CheckEvictionSupport: /api/v1 lists "pods/eviction" with its group/version. */
int kube_eviction_supported(struct kube *k, bool *supported, struct kube_err *e)
{
	json_t *rl, *r;
	size_t i;

	if (!k->eviction_known) {
		if (kube_request(k, "GET", "/api/v1", NULL, NULL, &rl, e) < 0)
			return -1;
		k->eviction_gv[0] = '\0';
		json_array_foreach(json_object_get(rl, "resources"), i, r)
		{
			const char *n = json_string_value(json_object_get(r, "name"));
			const char *kind = json_string_value(json_object_get(r, "kind"));
			const char *g = json_string_value(json_object_get(r, "group"));
			const char *v = json_string_value(json_object_get(r, "version"));
			if (n && kind && strcmp(n, "pods/eviction") == 0 &&
			    strcmp(kind, "Eviction") == 0) {
				/* An old server without group/version: policy/v1beta1. */
				snprintf(k->eviction_gv, sizeof(k->eviction_gv), "%s/%s",
					 g && *g ? g : "policy", v && *v ? v : "v1beta1");
				break;
			}
		}
		json_decref(rl);
		k->eviction_known = 1;
	}
	*supported = k->eviction_gv[0] != '\0';
	return 0;
}

int kube_pod_evict(struct kube *k, const char *ns, const char *name, int grace_s,
		   struct kube_err *e)
{
	bool ok;
	char *path;
	json_t *ev;
	int rc;

	if (kube_eviction_supported(k, &ok, e) < 0)
		return -1;
	if (!ok) {
		err_set(e, 404, "NotFound", "the server does not offer pods/eviction");
		return -1;
	}
	ev = json_pack("{s:s,s:s,s:{s:s,s:s}}", "apiVersion", k->eviction_gv, "kind", "Eviction",
		       "metadata", "name", name, "namespace", ns);
	if (grace_s >= 0)
		json_object_set_new(ev, "deleteOptions",
				    json_pack("{s:i}", "gracePeriodSeconds", grace_s));
	path = pod_path(k, ns, name, "eviction");
	rc = kube_request(k, "POST", path, ev, "application/json", NULL, e);
	free(path);
	json_decref(ev);
	return rc;
}

int kube_daemonset_exists(struct kube *k, const char *ns, const char *name, struct kube_err *e)
{
	char *en = esc(ns), *nn = esc(name);
	char *path = xasprintf("/apis/apps/v1/namespaces/%s/daemonsets/%s", en, nn);
	int rc = kube_request(k, "GET", path, NULL, NULL, NULL, e);

	free(en);
	free(nn);
	free(path);
	return rc;
}

/* ------------------------------------------------------------------ leases */

static char *lease_path(struct kube *k, const char *ns, const char *name)
{
	char *en = esc(ns), *nn = name ? esc(name) : NULL;
	char *p = xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases%s%s", en,
			    nn ? "/" : "", nn ? nn : "");

	free(en);
	free(nn);
	return p;
}

int kube_lease_get(struct kube *k, const char *ns, const char *name, json_t **out,
		   struct kube_err *e)
{
	char *path = lease_path(k, ns, name);
	int rc = kube_request(k, "GET", path, NULL, NULL, out, e);

	free(path);
	return rc;
}

static void lease_prepare(json_t *lease, const char *ns)
{
	json_t *md = json_object_get(lease, "metadata");

	json_object_set_new(lease, "apiVersion", json_string("coordination.k8s.io/v1"));
	json_object_set_new(lease, "kind", json_string("Lease"));
	if (!json_is_object(md)) {
		md = json_object();
		json_object_set_new(lease, "metadata", md);
	}
	json_object_set_new(md, "namespace", json_string(ns));
}

int kube_lease_create(struct kube *k, const char *ns, json_t *lease, json_t **out,
		      struct kube_err *e)
{
	char *path = lease_path(k, ns, NULL);
	int rc;

	lease_prepare(lease, ns);
	rc = kube_request(k, "POST", path, lease, "application/json", out, e);
	free(path);
	return rc;
}

int kube_lease_update(struct kube *k, const char *ns, json_t *lease, json_t **out,
		      struct kube_err *e)
{
	const char *name;
	char *path;
	int rc;

	lease_prepare(lease, ns);
	name = json_string_value(json_object_get(json_object_get(lease, "metadata"), "name"));
	if (!name) {
		err_set(e, 0, "Invalid", "lease has no metadata.name");
		return -1;
	}
	path = lease_path(k, ns, name);
	rc = kube_request(k, "PUT", path, lease, "application/json", out, e);
	free(path);
	return rc;
}

int kube_lease_delete(struct kube *k, const char *ns, const char *name, struct kube_err *e)
{
	char *path = lease_path(k, ns, name);
	int rc = kube_request(k, "DELETE", path, NULL, NULL, NULL, e);

	free(path);
	return rc;
}
