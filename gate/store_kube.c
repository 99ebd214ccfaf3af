/*
 * store_kube.c - the kubernetes store (see store.h).
 *
 * One coordination.k8s.io/v1 Lease per slot, "lbd-gate-master-0", labelled
 * lbd.io/gate=slot; spec.holderIdentity is the holder node (empty: free),
 * and the annotation lbd.io/lease holds our lease as JSON (reason, fence,
 * bootID...). A grant writes the slot with the resourceVersion read just
 * before the decision (create if the object does not exist): if the other
 * lbd of a pair wrote in between, the apiserver answers 409 and this one
 * reports GATE_STORE_CONFLICT instead of granting. The fencing counter is
 * one more Lease, "lbd-gate-fence", bumped by compare-and-swap too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "gate/store.h"
#include "kube/kube.h"

#define KS_LABEL "lbd.io/gate"
#define KS_ANN "lbd.io/lease"
#define KS_FENCE_ANN "lbd.io/fence"
#define KS_FENCE_NAME "lbd-gate-fence"
#define KS_RETRIES 5
#define KS_TIMEOUT_MS 3000

struct slot_version {
	char *name, *rv;
};

struct kube_store {
	struct gate_store base;
	struct kube *k;
	char *ns;
	struct slot_version *sv; /* resourceVersions of the slot objects last read */
	size_t nsv;
};

static int kerr(char **err, const char *what, const struct kube_err *e)
{
	char buf[700];
	*err = xasprintf("%s: %s", what, kube_err_str(e, buf, sizeof(buf)));
	return e->status == 409 ? GATE_STORE_CONFLICT : -1;
}

static void slot_object_name(const struct gate_lease *l, char *buf, size_t len)
{
	char slot[32];
	snprintf(buf, len, "lbd-gate-%s", gate_slot_name(l->role, l->slot, slot, sizeof(slot)));
}

static void sv_set(struct kube_store *s, const char *name, const char *rv)
{
	for (size_t i = 0; i < s->nsv; i++) {
		if (strcmp(s->sv[i].name, name) == 0) {
			free(s->sv[i].rv);
			s->sv[i].rv = rv ? xstrdup(rv) : NULL;
			return;
		}
	}
	s->sv = xrealloc(s->sv, (s->nsv + 1) * sizeof(*s->sv));
	s->sv[s->nsv].name = xstrdup(name);
	s->sv[s->nsv].rv = rv ? xstrdup(rv) : NULL;
	s->nsv++;
}

static const char *sv_get(const struct kube_store *s, const char *name)
{
	for (size_t i = 0; i < s->nsv; i++)
		if (strcmp(s->sv[i].name, name) == 0)
			return s->sv[i].rv;
	return NULL;
}

static const char *rv_of(json_t *obj)
{
	return json_string_value(
	    json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
}

static const char *annotation(json_t *obj, const char *key)
{
	return json_string_value(
	    json_object_get(json_object_get(json_object_get(obj, "metadata"), "annotations"), key));
}

static int ks_load(struct gate_store *gs, struct lease_table *t, char **err)
{
	struct kube_store *s = (struct kube_store *)gs;
	struct kube_err e = {0};
	json_t *list = NULL, *item;
	size_t i;
	char *path = xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases?labelSelector=%s",
			       s->ns, KS_LABEL);

	if (kube_request(s->k, "GET", path, NULL, NULL, &list, &e) < 0) {
		free(path);
		kerr(err, "list gate Leases", &e);
		return -1;
	}
	free(path);
	lease_table_free(t);
	t->last_fence = 0;
	json_array_foreach(json_object_get(list, "items"), i, item)
	{
		const char *name =
		    json_string_value(json_object_get(json_object_get(item, "metadata"), "name"));
		const char *holder = json_string_value(
		    json_object_get(json_object_get(item, "spec"), "holderIdentity"));
		const char *ann = annotation(item, KS_ANN), *why = NULL;
		struct gate_lease l;
		json_t *lj;

		if (!name)
			continue;
		if (strcmp(name, KS_FENCE_NAME) == 0) {
			const char *f = annotation(item, KS_FENCE_ANN);
			uint64_t v = f ? strtoull(f, NULL, 10) : 0;
			if (v > t->last_fence)
				t->last_fence = v;
			continue;
		}
		sv_set(s, name, rv_of(item));
		if (!holder || !*holder || !ann)
			continue; /* a free slot */
		if (!(lj = json_loads(ann, 0, NULL)) || gate_lease_from_json(lj, &l, &why) < 0 ||
		    lease_table_find(t, l.node)) {
			log_warn(
			    "gate: Lease %s/%s: unreadable %s annotation (%s); it blocks its slot "
			    "until removed",
			    s->ns, name, KS_ANN, why ? why : "duplicate holder");
			json_decref(lj);
			if (why)
				gate_lease_clear(&l);
			continue;
		}
		json_decref(lj);
		l.version = xstrdup(rv_of(item) ? rv_of(item) : "");
		t->v = xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
		t->v[t->n++] = l;
		if (l.fence > t->last_fence)
			t->last_fence = l.fence;
	}
	json_decref(list);
	return 0;
}

static json_t *meta(const struct kube_store *s, const char *name, const char *kind, const char *rv)
{
	json_t *m = json_pack("{s:s,s:s,s:{s:s}}", "name", name, "namespace", s->ns, "labels",
			      KS_LABEL, kind);
	if (rv)
		json_object_set_new(m, "resourceVersion", json_string(rv));
	return m;
}

static int ks_next_fence(struct gate_store *gs, const struct lease_table *t, uint64_t *fence,
			 char **err)
{
	struct kube_store *s = (struct kube_store *)gs;

	for (int attempt = 0; attempt < KS_RETRIES; attempt++) {
		struct kube_err e = {0};
		json_t *cur = NULL, *obj;
		uint64_t v = t->last_fence;
		char buf[32];
		int rc;

		if (kube_lease_get(s->k, s->ns, KS_FENCE_NAME, &cur, &e) < 0 && e.status != 404) {
			kerr(err, "read the fencing counter", &e);
			return -1;
		}
		if (cur) {
			const char *f = annotation(cur, KS_FENCE_ANN);
			if (f && strtoull(f, NULL, 10) > v)
				v = strtoull(f, NULL, 10);
		}
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)(v + 1));
		obj = json_pack("{s:s,s:s,s:o,s:{}}", "apiVersion", "coordination.k8s.io/v1",
				"kind", "Lease", "metadata",
				meta(s, KS_FENCE_NAME, "fence", cur ? rv_of(cur) : NULL), "spec");
		json_object_set_new(json_object_get(obj, "metadata"), "annotations",
				    json_pack("{s:s}", KS_FENCE_ANN, buf));
		memset(&e, 0, sizeof(e));
		rc = cur ? kube_lease_update(s->k, s->ns, obj, NULL, &e)
			 : kube_lease_create(s->k, s->ns, obj, NULL, &e);
		json_decref(obj);
		json_decref(cur);
		if (rc == 0) {
			*fence = v + 1;
			return 0;
		}
		if (e.status != 409) {
			kerr(err, "bump the fencing counter", &e);
			return -1;
		}
	}
	*err = xstrdup("the fencing counter kept changing under us; try again");
	return -1;
}

static void micro_time(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char base[24];

	gmtime_r(&t, &tm);
	if (strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		base[0] = 0;
	snprintf(buf, len, "%s.%06dZ", base, (int)(ms % 1000) * 1000);
}

/* Writes slot name with holder (NULL: free) and the lease annotation. */
static int write_slot(struct kube_store *s, const char *name, const char *rv,
		      const struct gate_lease *l, char **new_rv, char **err)
{
	struct kube_err e = {0};
	json_t *obj, *spec = json_object(), *out = NULL;
	int rc;

	obj = json_pack("{s:s,s:s,s:o}", "apiVersion", "coordination.k8s.io/v1", "kind", "Lease",
			"metadata", meta(s, name, "slot", rv));
	if (l) {
		char acq[64], ren[64], *text;
		json_t *lj = gate_lease_to_json(l, 0);
		text = json_dumps(lj, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(lj);
		micro_time(l->created_ms, acq, sizeof(acq));
		micro_time(l->renewed_ms, ren, sizeof(ren));
		json_object_set_new(spec, "holderIdentity", json_string(l->node));
		json_object_set_new(spec, "leaseDurationSeconds",
				    json_integer((json_int_t)(l->ttl_ms / 1000)));
		json_object_set_new(spec, "acquireTime", json_string(acq));
		json_object_set_new(spec, "renewTime", json_string(ren));
		json_object_set_new(json_object_get(obj, "metadata"), "annotations",
				    json_pack("{s:s}", KS_ANN, text));
		free(text);
	}
	json_object_set_new(obj, "spec", spec);
	rc = rv ? kube_lease_update(s->k, s->ns, obj, &out, &e)
		: kube_lease_create(s->k, s->ns, obj, &out, &e);
	json_decref(obj);
	if (rc < 0) {
		json_decref(out);
		return kerr(err, name, &e);
	}
	*new_rv = rv_of(out) ? xstrdup(rv_of(out)) : NULL;
	json_decref(out);
	return 0;
}

static int ks_put(struct gate_store *gs, const struct lease_table *after, struct gate_lease *l,
		  char **err)
{
	struct kube_store *s = (struct kube_store *)gs;
	char name[64], *rv = NULL;
	int rc;

	slot_object_name(l, name, sizeof(name));
	/* A renewal knows its object's version; a grant uses the one read before deciding. */
	const char *expect = l->version ? l->version : sv_get(s, name);
	rc = write_slot(s, name, expect, l, &rv, err);
	if (rc == 0) {
		sv_set(s, name, rv);
		free(l->version);
		l->version = rv;
	}
	return rc;
}

static int ks_del(struct gate_store *gs, const struct lease_table *after,
		  const struct gate_lease *l, char **err)
{
	struct kube_store *s = (struct kube_store *)gs;
	char name[64], *rv = NULL;
	int rc;

	slot_object_name(l, name, sizeof(name));
	rc = write_slot(s, name, l->version ? l->version : sv_get(s, name), NULL, &rv, err);
	if (rc == 0)
		sv_set(s, name, rv);
	free(rv);
	return rc;
}

static void ks_free(struct gate_store *gs)
{
	struct kube_store *s = (struct kube_store *)gs;
	kube_free(&s->k);
	for (size_t i = 0; i < s->nsv; i++) {
		free(s->sv[i].name);
		free(s->sv[i].rv);
	}
	free(s->sv);
	free(s->ns);
	free(s);
}

static const struct gate_store_ops kube_ops = {
    .name = "kubernetes",
    .load = ks_load,
    .next_fence = ks_next_fence,
    .put = ks_put,
    .del = ks_del,
    .free = ks_free,
};

struct gate_store *gate_store_kube_new(const struct kubeconfig *kc, const char *ns, char **err)
{
	struct kube_store *s = xcalloc(1, sizeof(*s));

	s->base.ops = &kube_ops;
	s->k = kube_new(kc);
	kube_set_timeout(s->k, KS_TIMEOUT_MS);
	s->ns = xstrdup(ns);
	return &s->base;
}
