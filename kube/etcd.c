/* etcd.c - see etcd.h. */
#include "kube/etcd.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text.h"
#include "common/xmalloc.h"

int kube_etcd_parse_id(json_t *v, uint64_t *out)
{
	const char *s;
	char *end;

	if (json_is_integer(v)) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (!(s = json_string_value(v)) || !*s)
		return -1;
	*out = strtoull(s, &end, 10);
	return *end ? -1 : 0;
}

int kube_etcd_quorum(int n)
{
	return n <= 0 ? 0 : n / 2 + 1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* ---- the JSON gateway ------------------------------------------------------------------ */

json_t *kube_etcd_call(const struct kube_etcd_conf *c, const char *endpoint, const char *path,
		       const char *body, char **err)
{
	char *url = xasprintf("%s%s", endpoint, path), *e = NULL;
	json_t *out = NULL;
	long status = 0;

	*err = NULL;
	if (c->call) {
		free(url);
		return c->call(c->call_arg, endpoint, path, body, err);
	}
	if (http_json(body ? "POST" : "GET", url, body, &c->tls, c->timeout_ms, &status, &out, &e) <
	    0) {
		*err = xasprintf("%s: %s", path, e);
	} else if (status != 200 && strcmp(path, "/health") != 0) {
		const char *msg = json_string_value(json_object_get(out, "error"));
		*err = xasprintf("%s: HTTP %ld%s%s", path, status, msg ? ": " : "", msg ? msg : "");
		json_decref(out);
		out = NULL;
	} else if (!out) {
		*err = xasprintf("%s: HTTP %ld, not JSON", path, status);
	}
	free(e);
	free(url);
	return out;
}

static json_t *view_call(const struct kube_etcd_conf *c, struct kube_etcd_view *v, const char *path,
			 const char *body)
{
	return kube_etcd_call(c, v->endpoint, path, body, &v->err);
}

static void parse_members(json_t *list, struct kube_etcd_view *v, struct kube_etcd_member **members,
			  size_t *nmembers)
{
	json_t *arr = json_object_get(list, "members"), *m;
	size_t i, n = json_array_size(arr);

	v->members = xcalloc(n + 1, sizeof(*v->members));
	if (members) {
		*members = xcalloc(n + 1, sizeof(**members));
		*nmembers = 0;
	}
	json_array_foreach(arr, i, m)
	{
		uint64_t id;
		if (kube_etcd_parse_id(json_object_get(m, "ID"), &id) < 0)
			continue;
		v->members[v->nmembers++] = id;
		if (members) {
			const char *name = json_string_value(json_object_get(m, "name"));
			const char *url =
			    json_string_value(json_array_get(json_object_get(m, "clientURLs"), 0));
			struct kube_etcd_member *km = &(*members)[(*nmembers)++];
			km->id = id;
			/* etcd's text, quoted into messages, journals and JSON: cleaned here,
			 * as kube_err's fields are, so no caller has to. */
			km->name = text_clean(name ? name : "", name ? strlen(name) : 0, 256);
			km->learner = json_is_true(json_object_get(m, "isLearner"));
			km->url = url ? text_clean(url, strlen(url), 1024) : NULL;
		}
	}
	qsort(v->members, v->nmembers, sizeof(*v->members), cmp_u64);
}

static void parse_alarms(json_t *al, struct kube_etcd_view *v)
{
	json_t *arr = json_object_get(al, "alarms"), *a;
	size_t i, n = json_array_size(arr);

	v->alarms = xcalloc(n + 1, sizeof(*v->alarms));
	v->alarm_members = xcalloc(n + 1, sizeof(*v->alarm_members));
	json_array_foreach(arr, i, a)
	{
		uint64_t mid = 0;
		const char *kind = json_string_value(json_object_get(a, "alarm"));
		kube_etcd_parse_id(json_object_get(a, "memberID"), &mid);
		if (!kind || strcmp(kind, "NONE") == 0)
			continue;
		v->alarm_members[v->nalarms] = mid;
		v->alarms[v->nalarms++] =
		    xasprintf("%s on member %" PRIx64 " (seen by %s)", kind, mid, v->endpoint);
	}
}

/* Asks one endpoint; fills v (v->ok false with v->err on any failure). When
 * members is not NULL, also returns its member list (kube_etcd_members_free). */
static void probe(const struct kube_etcd_conf *c, const char *endpoint, struct kube_etcd_view *v,
		  struct kube_etcd_member **members, size_t *nmembers)
{
	json_t *list = NULL, *st = NULL, *al = NULL, *hl = NULL, *hdr, *a;
	size_t i;

	memset(v, 0, sizeof(*v));
	v->endpoint = xstrdup(endpoint);
	if (members) {
		*members = NULL;
		*nmembers = 0;
	}
	/* One failure ends the probe: a dead endpoint costs one timeout, not four. */
	if (!(list = view_call(c, v, "/v3/cluster/member/list", "{}")))
		goto out;
	hdr = json_object_get(list, "header");
	if (kube_etcd_parse_id(json_object_get(hdr, "cluster_id"), &v->cluster_id) < 0 ||
	    kube_etcd_parse_id(json_object_get(hdr, "member_id"), &v->member_id) < 0) {
		v->err = xstrdup("member list: no cluster_id/member_id in its header");
		goto out;
	}
	parse_members(list, v, members, nmembers);
	if (!(st = view_call(c, v, "/v3/maintenance/status", "{}")))
		goto out;
	if (kube_etcd_parse_id(json_object_get(st, "leader"), &v->leader) < 0)
		v->leader = 0;
	v->leaderless = v->leader == 0;
	if (!(al = view_call(c, v, "/v3/maintenance/alarm", "{\"action\":\"GET\"}")))
		goto out;
	parse_alarms(al, v);
	if (!(hl = view_call(c, v, "/health", NULL)))
		goto out;
	v->ok = true;
	v->health = strcmp(json_string_value(json_object_get(hl, "health")) ?: "", "true") == 0;
	if (!v->health) {
		const char *r = json_string_value(json_object_get(hl, "reason"));
		v->health_why = xasprintf("/health false%s%s", r && *r ? ": " : "", r ? r : "");
	}
	/* status.errors: what the member itself reports wrong (etcd >= 3.4). */
	json_array_foreach(json_object_get(st, "errors"), i, a)
	{
		if (!json_is_string(a))
			continue;
		v->health = false;
		free(v->health_why);
		v->health_why = xasprintf("status error: %s", json_string_value(a));
	}
out:
	json_decref(list);
	json_decref(st);
	json_decref(al);
	json_decref(hl);
}

/* ---- a poll ----------------------------------------------------------------------------- */

static bool covered(const struct kube_etcd *e, const char *url)
{
	for (size_t i = 0; i < e->nviews; i++)
		if (strcmp(e->views[i].endpoint, url) == 0)
			return true;
	return false;
}

const struct kube_etcd_view *kube_etcd_view_of(const struct kube_etcd *e, uint64_t id)
{
	for (size_t i = 0; i < e->nviews; i++)
		if (e->views[i].ok && e->views[i].member_id == id)
			return &e->views[i];
	return NULL;
}

int kube_etcd_poll(const struct kube_etcd_conf *c, struct kube_etcd *e, char **why)
{
	size_t cap = c->nendpoints + 16, off = 0;
	char buf[512] = "";

	memset(e, 0, sizeof(*e));
	*why = NULL;
	e->views = xcalloc(cap, sizeof(*e->views));
	for (size_t i = 0; i < c->nendpoints; i++) {
		struct kube_etcd_view *v = &e->views[e->nviews++];
		bool first = !e->members;
		probe(c, c->endpoints[i], v, first ? &e->members : NULL,
		      first ? &e->nmembers : NULL);
		if (first && !v->ok && e->members) {
			/* Only a list from an endpoint that answered everything. */
			kube_etcd_members_free(e->members, e->nmembers);
			e->members = NULL;
			e->nmembers = 0;
		}
	}
	/* Members no configured endpoint answered for: ask them at their own URL. */
	for (size_t m = 0; m < e->nmembers && e->nviews < cap; m++) {
		const struct kube_etcd_member *km = &e->members[m];
		if (!km->url || kube_etcd_view_of(e, km->id) || covered(e, km->url))
			continue;
		probe(c, km->url, &e->views[e->nviews++], NULL, NULL);
	}
	if (e->members)
		return 0;
	for (size_t i = 0; i < e->nviews && off < sizeof(buf); i++)
		if (!e->views[i].ok)
			off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s: %s",
						off ? "; " : "", e->views[i].endpoint,
						e->views[i].err ? e->views[i].err : "?");
	*why = xasprintf("no endpoint answered (%s)", c->nendpoints ? buf : "none configured");
	return -1;
}

void kube_etcd_clear(struct kube_etcd *e)
{
	kube_etcd_members_free(e->members, e->nmembers);
	kube_etcd_views_free(e->views, e->nviews);
	memset(e, 0, sizeof(*e));
}

/* ---- the rule --------------------------------------------------------------------------- */

static const struct kube_etcd_member *member_by_id(const struct kube_etcd *e, uint64_t id)
{
	for (size_t i = 0; i < e->nmembers; i++)
		if (e->members[i].id == id)
			return &e->members[i];
	return NULL;
}

bool kube_etcd_member_healthy(const struct kube_etcd *e, uint64_t id, const char **why)
{
	const struct kube_etcd_member *m = member_by_id(e, id);
	const char *w = NULL; /* the first reason found */
	bool answered = false;

	if (!m)
		w = "not in the member list";
	else if (m->learner)
		w = "a learner, not a voting member";
	for (size_t i = 0; i < e->nviews && !w; i++) {
		const struct kube_etcd_view *v = &e->views[i];
		if (!v->ok) {
			/* Its own URL did not answer: unknown, whoever else did. */
			if (m->url && v->endpoint && strcmp(v->endpoint, m->url) == 0)
				w = v->err ? v->err : "its endpoint did not answer";
			continue;
		}
		for (size_t a = 0; a < v->nalarms && !w && v->alarm_members; a++)
			if (v->alarm_members[a] == id)
				w = v->alarms[a];
		if (w || v->member_id != id)
			continue;
		answered = true;
		if (!v->health)
			w = v->health_why ? v->health_why : "/health is not true";
		else if (v->leaderless)
			w = "no leader (status.leader is 0)";
		else if (v->nalarms)
			w = v->alarms[0] ? v->alarms[0] : "alarm raised";
	}
	if (!w && !answered)
		w = !m->url && !(m->name && *m->name) ? "not started yet (no client URL)"
						      : "no endpoint reached it";
	if (w && why)
		*why = w;
	return !w;
}

int kube_etcd_voters(const struct kube_etcd *e)
{
	int n = 0;
	for (size_t i = 0; i < e->nmembers; i++)
		n += !e->members[i].learner;
	return n;
}

const struct kube_etcd_member *kube_etcd_find(const struct kube_etcd *e, const char *name)
{
	for (size_t i = 0; i < e->nmembers; i++)
		if (e->members[i].name && strcmp(e->members[i].name, name) == 0)
			return &e->members[i];
	return NULL;
}

static bool same_members(const struct kube_etcd_view *a, const struct kube_etcd_view *b)
{
	if (a->nmembers != b->nmembers)
		return false;
	for (size_t i = 0; i < a->nmembers; i++)
		if (a->members[i] != b->members[i])
			return false;
	return true;
}

bool kube_etcd_agree(const struct kube_etcd *e, void (*say)(void *arg, const char *msg), void *arg)
{
	const struct kube_etcd_view *first = NULL;
	bool ok = true;
	char msg[512];

	for (size_t i = 0; i < e->nviews; i++) {
		const struct kube_etcd_view *v = &e->views[i];
		if (!v->ok)
			continue;
		if (!first) {
			first = v;
			continue;
		}
		if (v->cluster_id != first->cluster_id) {
			snprintf(msg, sizeof(msg),
				 "%s reports cluster ID %" PRIx64 " but %s reports %" PRIx64
				 "; the endpoints are not one cluster",
				 v->endpoint, v->cluster_id, first->endpoint, first->cluster_id);
		} else if (!same_members(v, first)) {
			snprintf(msg, sizeof(msg),
				 "%s and %s disagree on the member list (%zu vs %zu members); "
				 "a membership change is in progress",
				 v->endpoint, first->endpoint, v->nmembers, first->nmembers);
		} else {
			continue;
		}
		ok = false;
		if (say)
			say(arg, msg);
	}
	return ok;
}

/* ---- lifetimes -------------------------------------------------------------------------- */

static char *dup0(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void kube_etcd_members_free(struct kube_etcd_member *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(m[i].name);
		free(m[i].url);
	}
	free(m);
}

void kube_etcd_views_free(struct kube_etcd_view *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].endpoint);
		free(v[i].err);
		free(v[i].health_why);
		free(v[i].members);
		for (size_t a = 0; a < v[i].nalarms; a++)
			free(v[i].alarms[a]);
		free(v[i].alarms);
		free(v[i].alarm_members);
	}
	free(v);
}

struct kube_etcd_member *kube_etcd_members_dup(const struct kube_etcd_member *m, size_t n)
{
	struct kube_etcd_member *d = xcalloc(n + 1, sizeof(*d));
	for (size_t i = 0; i < n; i++) {
		d[i] = m[i];
		d[i].name = dup0(m[i].name);
		d[i].url = dup0(m[i].url);
	}
	return d;
}

struct kube_etcd_view *kube_etcd_views_dup(const struct kube_etcd_view *v, size_t n)
{
	struct kube_etcd_view *d = xcalloc(n + 1, sizeof(*d));
	for (size_t i = 0; i < n; i++) {
		const struct kube_etcd_view *s = &v[i];
		d[i] = *s;
		d[i].endpoint = dup0(s->endpoint);
		d[i].err = dup0(s->err);
		d[i].health_why = dup0(s->health_why);
		d[i].members = xcalloc(s->nmembers + 1, sizeof(*d[i].members));
		if (s->nmembers)
			memcpy(d[i].members, s->members, s->nmembers * sizeof(*s->members));
		d[i].alarms = xcalloc(s->nalarms + 1, sizeof(*d[i].alarms));
		for (size_t a = 0; a < s->nalarms; a++)
			d[i].alarms[a] = xstrdup(s->alarms[a]);
		d[i].alarm_members = NULL;
		if (s->alarm_members) {
			d[i].alarm_members = xcalloc(s->nalarms + 1, sizeof(*d[i].alarm_members));
			if (s->nalarms)
				memcpy(d[i].alarm_members, s->alarm_members,
				       s->nalarms * sizeof(*s->alarm_members));
		}
	}
	return d;
}
