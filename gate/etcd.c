/* etcd.c - see etcd.h. */
#include "gate/etcd.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "common/http.h"

int gate_etcd_parse_id(json_t *v, uint64_t *out)
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

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* One call; on failure sets v->err and returns NULL. */
static json_t *call(const struct gate_conf *conf, const char *endpoint, const char *method,
		    const char *path, const char *body, int64_t timeout_ms,
		    struct gate_etcd_view *v)
{
	struct http_tls tls = {conf->etcd_ca, conf->etcd_cert, conf->etcd_key};
	char *url = xasprintf("%s%s", endpoint, path), *err = NULL;
	json_t *out = NULL;
	long status = 0;

	if (http_json(method, url, body, &tls, timeout_ms, &status, &out, &err) < 0) {
		v->err = xasprintf("%s: %s", path, err);
	} else if (status != 200 && strcmp(path, "/health") != 0) {
		const char *msg = json_string_value(json_object_get(out, "error"));
		v->err =
		    xasprintf("%s: HTTP %ld%s%s", path, status, msg ? ": " : "", msg ? msg : "");
		json_decref(out);
		out = NULL;
	} else if (!out) {
		v->err = xasprintf("%s: HTTP %ld, not JSON", path, status);
	}
	free(err);
	free(url);
	return out;
}

static void parse_members(json_t *list, struct gate_etcd_view *v, struct gate_etcd_member **members,
			  char ***urls, size_t *nmembers)
{
	json_t *arr = json_object_get(list, "members"), *m;
	size_t i, n = json_array_size(arr);

	v->members = xcalloc(n + 1, sizeof(*v->members));
	if (members) {
		*members = xcalloc(n + 1, sizeof(**members));
		*urls = xcalloc(n + 1, sizeof(**urls));
		*nmembers = 0;
	}
	json_array_foreach(arr, i, m)
	{
		uint64_t id;
		if (gate_etcd_parse_id(json_object_get(m, "ID"), &id) < 0)
			continue;
		v->members[v->nmembers++] = id;
		if (members) {
			const char *name = json_string_value(json_object_get(m, "name"));
			const char *url =
			    json_string_value(json_array_get(json_object_get(m, "clientURLs"), 0));
			struct gate_etcd_member *gm = &(*members)[*nmembers];
			gm->id = id;
			gm->name = xstrdup(name ? name : "");
			gm->learner = json_is_true(json_object_get(m, "isLearner"));
			(*urls)[*nmembers] = url ? xstrdup(url) : NULL;
			(*nmembers)++;
		}
	}
	qsort(v->members, v->nmembers, sizeof(*v->members), cmp_u64);
}

void gate_etcd_probe(const struct gate_conf *conf, const char *endpoint, int64_t timeout_ms,
		     struct gate_etcd_view *v, struct gate_etcd_member **members, char ***urls,
		     size_t *nmembers)
{
	json_t *list = NULL, *st = NULL, *al = NULL, *hl = NULL, *a;
	json_t *hdr;
	size_t i;

	memset(v, 0, sizeof(*v));
	v->endpoint = xstrdup(endpoint);
	if (members) {
		*members = NULL;
		*urls = NULL;
		*nmembers = 0;
	}
	/* One failure ends the probe: a dead endpoint costs one timeout, not four. */
	if (!(list = call(conf, endpoint, "POST", "/v3/cluster/member/list", "{}", timeout_ms, v)))
		goto out;
	hdr = json_object_get(list, "header");
	if (gate_etcd_parse_id(json_object_get(hdr, "cluster_id"), &v->cluster_id) < 0 ||
	    gate_etcd_parse_id(json_object_get(hdr, "member_id"), &v->member_id) < 0) {
		v->err = xstrdup("member list: no cluster_id/member_id in its header");
		goto out;
	}
	parse_members(list, v, members, urls, nmembers);
	if (!(st = call(conf, endpoint, "POST", "/v3/maintenance/status", "{}", timeout_ms, v)))
		goto out;
	if (!(al = call(conf, endpoint, "POST", "/v3/maintenance/alarm", "{\"action\":\"GET\"}",
			timeout_ms, v)))
		goto out;
	v->alarms = xcalloc(json_array_size(json_object_get(al, "alarms")) + 1, sizeof(char *));
	json_array_foreach(json_object_get(al, "alarms"), i, a)
	{
		uint64_t mid = 0;
		const char *kind = json_string_value(json_object_get(a, "alarm"));
		gate_etcd_parse_id(json_object_get(a, "memberID"), &mid);
		if (kind && strcmp(kind, "NONE") != 0)
			v->alarms[v->nalarms++] =
			    xasprintf("%s on member %" PRIx64 " (seen by %s)", kind, mid, endpoint);
	}
	if (!(hl = call(conf, endpoint, "GET", "/health", NULL, timeout_ms, v)))
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

void gate_etcd_members_free(struct gate_etcd_member *m, char **urls, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(m[i].name);
		free(urls[i]);
	}
	free(m);
	free(urls);
}

static bool covered(const struct gate_etcd_in *e, const char *url)
{
	for (size_t i = 0; i < e->nviews; i++)
		if (strcmp(e->views[i].endpoint, url) == 0)
			return true;
	return false;
}

static bool member_seen(const struct gate_etcd_in *e, uint64_t id)
{
	for (size_t i = 0; i < e->nviews; i++)
		if (e->views[i].ok && e->views[i].member_id == id)
			return true;
	return false;
}

void gate_etcd_poll(const struct gate_conf *conf, int64_t now_ms, struct gate_etcd_in *e)
{
	struct gate_etcd_member *members = NULL;
	char **urls = NULL;
	size_t nmembers = 0, cap = conf->netcd_endpoints + 16;
	char why[512] = "";
	size_t off = 0;

	memset(e, 0, sizeof(*e));
	e->views = xcalloc(cap, sizeof(*e->views));
	for (size_t i = 0; i < conf->netcd_endpoints; i++) {
		struct gate_etcd_view *v = &e->views[e->nviews++];
		bool first = !members;
		gate_etcd_probe(conf, conf->etcd_endpoints[i], GATE_ETCD_TIMEOUT_MS, v,
				first ? &members : NULL, first ? &urls : NULL,
				first ? &nmembers : NULL);
		if (first && !v->ok && members) {
			gate_etcd_members_free(members, urls, nmembers);
			members = NULL;
			urls = NULL;
			nmembers = 0;
		}
	}
	/* Members no configured endpoint answered for: ask them at their own URL. */
	for (size_t m = 0; m < nmembers && e->nviews < cap; m++) {
		if (!urls[m] || member_seen(e, members[m].id) || covered(e, urls[m]))
			continue;
		gate_etcd_probe(conf, urls[m], GATE_ETCD_TIMEOUT_MS, &e->views[e->nviews++], NULL,
				NULL, NULL);
	}
	for (size_t i = 0; i < e->nviews && off < sizeof(why); i++)
		if (!e->views[i].ok)
			off += (size_t)snprintf(why + off, sizeof(why) - off, "%s%s: %s",
						off ? "; " : "", e->views[i].endpoint,
						e->views[i].err ? e->views[i].err : "?");
	if (members) {
		e->src.known = true;
		e->src.at_ms = now_ms;
		e->members = members;
		e->nmembers = nmembers;
		for (size_t i = 0; i < nmembers; i++)
			free(urls[i]);
		free(urls);
	} else {
		e->src.why = xasprintf("no endpoint answered (%s)", why);
	}
}
