/* lease.c - see lease.h. Pure bookkeeping; stores make it durable. */
#include "gate/lease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/duration.h"
#include "common/xmalloc.h"
#include "gate/store.h"

const char *gate_role_name(enum gate_role r)
{
	return r == GATE_ROLE_MASTER ? "master" : "worker";
}

int gate_role_parse(const char *s, enum gate_role *out)
{
	if (!s)
		return -1;
	if (strcmp(s, "master") == 0)
		*out = GATE_ROLE_MASTER;
	else if (strcmp(s, "worker") == 0)
		*out = GATE_ROLE_WORKER;
	else
		return -1;
	return 0;
}

const char *gate_slot_name(enum gate_role r, int slot, char *buf, size_t len)
{
	snprintf(buf, len, "%s-%d", gate_role_name(r), slot);
	return buf;
}

int gate_slot_parse(const char *s, enum gate_role *role, int *slot)
{
	const char *dash = s ? strrchr(s, '-') : NULL;
	char rn[16], *end;
	long v;

	if (!dash || (size_t)(dash - s) >= sizeof(rn))
		return -1;
	memcpy(rn, s, (size_t)(dash - s));
	rn[dash - s] = '\0';
	if (gate_role_parse(rn, role) < 0 || !dash[1])
		return -1;
	v = strtol(dash + 1, &end, 10);
	if (*end || v < 0 || v > 100000)
		return -1;
	*slot = (int)v;
	return 0;
}

bool gate_lease_stale(const struct gate_lease *l, int64_t now_ms)
{
	return l->ttl_ms > 0 && now_ms > l->renewed_ms + l->ttl_ms;
}

static char *dup0(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void gate_lease_copy(struct gate_lease *dst, const struct gate_lease *src)
{
	*dst = *src;
	dst->node = dup0(src->node);
	dst->reason = dup0(src->reason);
	dst->boot_id = dup0(src->boot_id);
	dst->version = dup0(src->version);
	dst->holder = dup0(src->holder);
	dst->labels = src->nlabels ? xcalloc(src->nlabels, sizeof(*dst->labels)) : NULL;
	for (size_t i = 0; i < src->nlabels; i++) {
		dst->labels[i].key = xstrdup(src->labels[i].key);
		dst->labels[i].value = xstrdup(src->labels[i].value);
	}
}

void gate_lease_clear(struct gate_lease *l)
{
	free(l->node);
	free(l->reason);
	free(l->boot_id);
	free(l->version);
	free(l->holder);
	for (size_t i = 0; i < l->nlabels; i++) {
		free(l->labels[i].key);
		free(l->labels[i].value);
	}
	free(l->labels);
	memset(l, 0, sizeof(*l));
}

const char *gate_lease_label(const struct gate_lease *l, const char *key)
{
	for (size_t i = 0; i < l->nlabels; i++)
		if (strcmp(l->labels[i].key, key) == 0)
			return l->labels[i].value;
	return NULL;
}

void lease_table_init(struct lease_table *t)
{
	memset(t, 0, sizeof(*t));
}

void lease_table_free(struct lease_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		gate_lease_clear(&t->v[i]);
	xfree(&t->v);
	t->n = 0;
}

void lease_table_copy(struct lease_table *dst, const struct lease_table *src)
{
	dst->n = src->n;
	dst->last_fence = src->last_fence;
	dst->v = src->n ? xcalloc(src->n, sizeof(*dst->v)) : NULL;
	for (size_t i = 0; i < src->n; i++)
		gate_lease_copy(&dst->v[i], &src->v[i]);
}

struct gate_lease *lease_table_find(struct lease_table *t, const char *node)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].node, node) == 0)
			return &t->v[i];
	return NULL;
}

const struct gate_lease *lease_table_find_const(const struct lease_table *t, const char *node)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].node, node) == 0)
			return &t->v[i];
	return NULL;
}

static bool slot_taken(const struct lease_table *t, enum gate_role role, int slot)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].role == role && t->v[i].slot == slot)
			return true;
	return false;
}

int lease_table_free_slot(const struct lease_table *t, enum gate_role role, int max)
{
	for (int s = 0; s < max; s++)
		if (!slot_taken(t, role, s))
			return s;
	return -1;
}

size_t lease_table_count(const struct lease_table *t, enum gate_role role)
{
	size_t n = 0;
	for (size_t i = 0; i < t->n; i++)
		n += t->v[i].role == role;
	return n;
}

struct gate_lease *lease_table_add(struct lease_table *t, const struct gate_lease *l,
				   int64_t now_ms)
{
	struct gate_lease *nl;

	BUG_ON(lease_table_find(t, l->node) != NULL);
	BUG_ON(slot_taken(t, l->role, l->slot));
	t->v = xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
	nl = &t->v[t->n++];
	gate_lease_copy(nl, l);
	nl->created_ms = nl->renewed_ms = now_ms;
	nl->back_since_ms = 0;
	/* A fence is never reused: a store that knows a larger one (a Lease
	 * object written by the other lbd of a pair) raises last_fence first. */
	if (l->fence > t->last_fence)
		t->last_fence = l->fence;
	else
		t->last_fence++;
	nl->fence = t->last_fence;
	return nl;
}

struct gate_lease *lease_table_renew(struct lease_table *t, const char *node, int64_t now_ms,
				     int64_t ttl_ms, const char *reason)
{
	struct gate_lease *l = lease_table_find(t, node);

	if (!l)
		return NULL;
	l->renewed_ms = now_ms;
	if (ttl_ms > 0)
		l->ttl_ms = ttl_ms;
	if (reason && *reason) {
		free(l->reason);
		l->reason = xstrdup(reason);
	}
	return l;
}

int lease_table_remove(struct lease_table *t, const char *node)
{
	struct gate_lease *l = lease_table_find(t, node);
	size_t i;

	if (!l)
		return -1;
	i = (size_t)(l - t->v);
	gate_lease_clear(l);
	memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(*t->v));
	t->n--;
	return 0;
}

/* ---- JSON ------------------------------------------------------------------------------ */

static json_t *time_json(int64_t ms)
{
	char buf[40];
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

json_t *gate_lease_to_json(const struct gate_lease *l, int64_t now_ms)
{
	json_t *o = json_object(), *labels = json_object();
	char slot[32], ttl[32];

	json_object_set_new(o, "node", json_string(l->node));
	json_object_set_new(o, "role", json_string(gate_role_name(l->role)));
	json_object_set_new(o, "slot",
			    json_string(gate_slot_name(l->role, l->slot, slot, sizeof(slot))));
	json_object_set_new(o, "reason", json_string(l->reason ? l->reason : ""));
	json_object_set_new(o, "created", time_json(l->created_ms));
	json_object_set_new(o, "renewed", time_json(l->renewed_ms));
	json_object_set_new(o, "created_ms", json_integer(l->created_ms));
	json_object_set_new(o, "renewed_ms", json_integer(l->renewed_ms));
	json_object_set_new(o, "ttl", json_string(duration_format(l->ttl_ms, ttl, sizeof(ttl))));
	json_object_set_new(o, "ttl_ms", json_integer(l->ttl_ms));
	json_object_set_new(o, "fence", json_integer((json_int_t)l->fence));
	json_object_set_new(o, "boot_id", l->boot_id ? json_string(l->boot_id) : json_null());
	for (size_t i = 0; i < l->nlabels; i++)
		json_object_set_new(labels, l->labels[i].key, json_string(l->labels[i].value));
	json_object_set_new(o, "labels", labels);
	json_object_set_new(o, "back_since_ms", json_integer(l->back_since_ms));
	json_object_set_new(o, "holder", json_string(l->holder ? l->holder : "admin"));
	json_object_set_new(o, "release_on_outcomes", json_boolean(l->release_on_outcomes));
	if (now_ms > 0) {
		json_object_set_new(o, "expires", time_json(l->renewed_ms + l->ttl_ms));
		json_object_set_new(o, "stale", json_boolean(gate_lease_stale(l, now_ms)));
	}
	return o;
}

int gate_lease_from_json(json_t *o, struct gate_lease *l, const char **why)
{
	const char *node = json_string_value(json_object_get(o, "node"));
	const char *role = json_string_value(json_object_get(o, "role"));
	const char *slot = json_string_value(json_object_get(o, "slot"));
	const char *reason = json_string_value(json_object_get(o, "reason"));
	const char *boot = json_string_value(json_object_get(o, "boot_id"));
	json_t *labels = json_object_get(o, "labels"), *v;
	enum gate_role sr;
	const char *k;

	memset(l, 0, sizeof(*l));
	if (!json_is_object(o) || !node || !*node) {
		*why = "no node";
		return -1;
	}
	if (gate_role_parse(role, &l->role) < 0) {
		*why = "role is not master or worker";
		return -1;
	}
	if (gate_slot_parse(slot, &sr, &l->slot) < 0 || sr != l->role) {
		*why = "bad slot";
		return -1;
	}
	l->node = xstrdup(node);
	l->reason = xstrdup(reason ? reason : "");
	l->boot_id = boot ? xstrdup(boot) : NULL;
	l->created_ms = json_integer_value(json_object_get(o, "created_ms"));
	l->renewed_ms = json_integer_value(json_object_get(o, "renewed_ms"));
	l->ttl_ms = json_integer_value(json_object_get(o, "ttl_ms"));
	l->fence = (uint64_t)json_integer_value(json_object_get(o, "fence"));
	l->back_since_ms = json_integer_value(json_object_get(o, "back_since_ms"));
	/* A lease written before holders existed: an admin's, released on
	 * outcomes as every lease then was. */
	const char *holder = json_string_value(json_object_get(o, "holder"));
	l->holder = xstrdup(holder && *holder ? holder : "admin");
	json_t *roo = json_object_get(o, "release_on_outcomes");
	l->release_on_outcomes = roo ? json_is_true(roo) : true;
	if (json_is_object(labels)) {
		l->labels = xcalloc(json_object_size(labels) + 1, sizeof(*l->labels));
		json_object_foreach(labels, k, v)
		{
			if (!json_is_string(v))
				continue;
			l->labels[l->nlabels].key = xstrdup(k);
			l->labels[l->nlabels].value = xstrdup(json_string_value(v));
			l->nlabels++;
		}
	}
	return 0;
}
