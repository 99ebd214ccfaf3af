/*
 * gate.c - see gate.h.
 *
 * Threads: lbd's main loop (admin socket routes, the pool-health timer,
 * reloads), the gate thread (its own event_base: the TCP/TLS listener and
 * the one-second outcomes tick) and the input poller (inputs.c). g->mu
 * guards the lease table and the store; every decision is taken and
 * persisted under it, so two requests for one slot are serialized: the
 * first is granted and written, the second sees it taken. Nothing is
 * answered as granted before the store has it.
 *
 * Settings: g->conf is replaced by a reload (gate_reload, on the main loop)
 * under g->mu. The main loop may read it without the lock (it is the only
 * writer); the gate thread reads it only under g->mu, so the old settings
 * are freed once swapped out. The poller has a copy of its own.
 */
#include "gate/gate.h"
#include "common/tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/duration.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "config/config.h"
#include "gate/conf.h"
#include "gate/inputs.h"
#include "gate/policy.h"
#include "gate/store.h"
#include "lbd/admin.h"
#include "lbd/pool.h"
#include "lbd/server.h"
#include "kube/kubeconfig.h"

#define GATE_MAX_BODY (16 * 1024)
#define GATE_TOKENS_MAX (1 << 20)
/* A lease ttl above this is refused: renewed_ms + ttl_ms must not overflow. */
#define GATE_TTL_MAX_MS (10LL * 366 * 24 * 3600 * 1000)

struct gate {
	struct config *cfg;	      /* as read at start: the listener, TLS and store run on it */
	struct config *live;	      /* the settings of the last reload (gate_conf_dup), or NULL */
	const struct gate_conf *conf; /* &live->gate, else &cfg->gate; see above */
	struct server *srv;
	struct event *pool_timer; /* on the main loop */
	struct gate_inputs_src *inputs;
	pthread_mutex_t mu;
	struct lease_table table; /* under mu */
	struct gate_store *store; /* under mu */
	/* the gate thread */
	struct event_base *base;
	struct evhttp *http;
	SSL_CTX *ssl;
	struct event *tick, *stop_ev;
	pthread_t thread;
	bool thread_running;
};

/* ---- answers -------------------------------------------------------------------------- */

static int error_json(json_t **out, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int error_json(json_t **out, int status, const char *fmt, ...)
{
	va_list ap;
	char buf[1024];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	*out = json_pack("{s:s}", "error", buf);
	return status;
}

static json_t *text_json(const struct gate_text *t)
{
	json_t *a = json_array();
	for (size_t i = 0; i < t->n; i++)
		json_array_append_new(a, json_string(t->v[i]));
	return a;
}

static json_t *leases_json(const struct lease_table *t, int64_t now_ms)
{
	json_t *a = json_array();
	for (size_t i = 0; i < t->n; i++)
		json_array_append_new(a, gate_lease_to_json(&t->v[i], now_ms));
	return a;
}

/* ---- authentication ------------------------------------------------------------------- */

/* Constant time, and blind to length: compare digests. */
static bool token_eq(const char *a, const char *b)
{
	unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)a, strlen(a), da);
	SHA256((const unsigned char *)b, strlen(b), db);
	return CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}

/*
 * Who holds token: sets *who (caller frees; "*" = admin). Returns 0, or an
 * HTTP status with *out set. The file is read on every request.
 */
static int authenticate(const char *tokens_file, const char *token, char **who, json_t **out)
{
	struct stat st;
	FILE *f;
	char line[1024];
	bool found = false;

	*who = NULL;
	if (!tokens_file)
		return error_json(out, 401,
				  "gate.tokens_file is not set: the TCP listener admits "
				  "no one");
	if (!token || !*token)
		return error_json(out, 401, "missing Authorization: Bearer <token>");
	if (!(f = fopen(tokens_file, "re"))) {
		log_warn("gate: tokens file %s: %s", tokens_file, strerror(errno));
		return error_json(out, 503, "gate tokens file unreadable; see lbd's log");
	}
	if (fstat(fileno(f), &st) < 0 || (st.st_mode & 077)) {
		fclose(f);
		log_warn("gate: tokens file %s is readable by group or others; refusing every "
			 "token until it is chmod 600",
			 tokens_file);
		return error_json(out, 503, "gate tokens file is readable by others; refusing");
	}
	/* Check every line, even after a match, so timing says nothing about which. */
	while (fgets(line, sizeof(line), f)) {
		char *save = NULL, *name = strtok_r(line, " \t\r\n", &save);
		char *tok = name ? strtok_r(NULL, " \t\r\n", &save) : NULL;
		if (!name || name[0] == '#' || !tok)
			continue;
		if (token_eq(tok, token) && !found) {
			found = true;
			*who = xstrdup(name);
		}
	}
	fclose(f);
	explicit_bzero(line, sizeof(line));
	if (!found)
		return error_json(out, 401, "unknown token");
	return 0;
}

static bool may_act_for(const char *who, const char *node)
{
	return !who || strcmp(who, "*") == 0 || strcmp(who, node) == 0;
}

/* ---- the lease table under the lock --------------------------------------------------- */

/* Kubernetes store: re-read the slots (another lbd may have written), keeping
 * our in-memory soak timers for leases that did not change. */
static int refresh(struct gate *g, char **err)
{
	struct lease_table t;

	if (g->cfg->gate.store != GATE_STORE_KUBERNETES)
		return 0;
	lease_table_init(&t);
	if (gate_store_load(g->store, &t, err) < 0) {
		lease_table_free(&t);
		return -1;
	}
	for (size_t i = 0; i < t.n; i++) {
		const struct gate_lease *old = lease_table_find_const(&g->table, t.v[i].node);
		if (old && old->fence == t.v[i].fence && !t.v[i].back_since_ms)
			t.v[i].back_since_ms = old->back_since_ms;
	}
	if (g->table.last_fence > t.last_fence)
		t.last_fence = g->table.last_fence;
	lease_table_free(&g->table);
	g->table = t;
	return 0;
}

static const struct gate_node_in *find_node(const struct gate_inputs *in, const char *name)
{
	for (size_t i = 0; i < in->nodes.n; i++)
		if (strcmp(in->nodes.v[i].name, name) == 0)
			return &in->nodes.v[i];
	return NULL;
}

/* The lease to grant: bootID and per-label values as the inputs see them now. */
static void fill_lease(const struct gate *g, const struct gate_inputs *in, struct gate_lease *l)
{
	const struct gate_node_in *n = find_node(in, l->node);

	if (!n)
		return;
	l->boot_id = n->boot_id ? xstrdup(n->boot_id) : NULL;
	l->labels = xcalloc(g->conf->nper_label + 1, sizeof(*l->labels));
	for (size_t c = 0; c < g->conf->nper_label; c++) {
		const char *key = g->conf->per_label[c].label;
		for (size_t i = 0; i < n->nlabels; i++) {
			if (strcmp(n->labels[i].key, key) == 0) {
				l->labels[l->nlabels].key = xstrdup(key);
				l->labels[l->nlabels].value = xstrdup(n->labels[i].value);
				l->nlabels++;
			}
		}
	}
}

static int parse_ttl(json_t *v, int64_t dflt, int64_t *ttl)
{
	if (!v) {
		*ttl = dflt;
		return 0;
	}
	if (json_is_integer(v) && json_integer_value(v) > 0 &&
	    json_integer_value(v) <= GATE_TTL_MAX_MS / 1000) {
		*ttl = json_integer_value(v) * 1000; /* seconds */
		return 0;
	}
	if (json_is_string(v) && duration_parse(json_string_value(v), ttl) == 0 && *ttl >= 1000 &&
	    *ttl <= GATE_TTL_MAX_MS)
		return 0;
	return -1;
}

static bool node_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 253)
		return false;
	for (; *s; s++)
		if (!(*s >= 'a' && *s <= 'z') && !(*s >= '0' && *s <= '9') && *s != '-' &&
		    *s != '.')
			return false;
	return true;
}

static int handle_acquire(struct gate *g, const char *who, json_t *body, json_t **out)
{
	static const char *const keys[] = {"node", "role", "reason", "ttl", NULL};
	const char *node, *reason, *k;
	enum gate_role role;
	int64_t ttl, now = gate_now_ms();
	struct gate_inputs in;
	struct gate_decision d;
	struct gate_lease nl = {0};
	struct lease_table after;
	char *err = NULL;
	json_t *v;
	int rc;

	if (!json_is_object(body))
		return error_json(out, 400, "body must be a JSON object {node, role, reason, ttl}");
	json_object_foreach(body, k, v)
	{
		bool known = false;
		for (size_t i = 0; keys[i]; i++)
			known |= strcmp(keys[i], k) == 0;
		if (!known)
			return error_json(out, 400, "unknown key '%s' (node, role, reason, ttl)",
					  k);
	}
	node = json_string_value(json_object_get(body, "node"));
	reason = json_string_value(json_object_get(body, "reason"));
	if (!node_name_ok(node))
		return error_json(out, 400, "node: a Kubernetes node name is required");
	if (gate_role_parse(json_string_value(json_object_get(body, "role")), &role) < 0)
		return error_json(out, 400, "role: master or worker");
	if (json_object_get(body, "reason") && !reason)
		return error_json(out, 400, "reason: a string");
	if (reason && strlen(reason) > 1024)
		return error_json(out, 400, "reason: at most 1024 characters");
	if (parse_ttl(json_object_get(body, "ttl"), 0, &ttl) < 0) /* 0: lease_ttl, below */
		return error_json(out, 400,
				  "ttl: a duration such as \"30m\" (1s to 10 years) or seconds");
	if (!may_act_for(who, node))
		return error_json(out, 403, "this token may only take the lease of node %s", who);

	pthread_mutex_lock(&g->mu);
	if (ttl == 0)
		ttl = g->conf->lease_ttl_ms; /* read under the lock: a reload may change it */
	if (refresh(g, &err) < 0) {
		rc = error_json(out, 503, "lease store: %s", err);
		goto unlock;
	}
	struct gate_lease *held = lease_table_find(&g->table, node);
	if (held) {
		/* Asking again for what you hold renews it: same slot, same fence. */
		if (held->role != role) {
			*out = json_pack("{s:b,s:[s+++]}", "granted", 0, "reasons", node,
					 " already holds a ", gate_role_name(held->role),
					 " lease; release it first");
			rc = 409;
			goto unlock;
		}
		lease_table_copy(&after, &g->table);
		struct gate_lease *r = lease_table_renew(&after, node, now, ttl, reason);
		rc = gate_store_put(g->store, &after, r, &err);
		if (rc == 0) {
			lease_table_free(&g->table);
			g->table = after;
			*out =
			    json_pack("{s:b,s:b,s:o}", "granted", 1, "renewed", 1, "lease",
				      gate_lease_to_json(lease_table_find(&g->table, node), now));
			rc = 200;
		} else {
			lease_table_free(&after);
			rc = rc == GATE_STORE_CONFLICT
				 ? error_json(out, 409, "another lbd changed this lease; ask again")
				 : error_json(out, 503, "lease store: %s", err);
		}
		goto unlock;
	}

	gate_inputs_snapshot(g->inputs, now, &in);
	struct gate_request req = {.node = node, .role = role};
	gate_decide(g->conf, &in, &g->table, &req, &d);
	if (!d.granted) {
		*out = json_pack("{s:b,s:o}", "granted", 0, "reasons", text_json(&d.reasons));
		log_info("gate: refused %s lease to %s: %zu reason(s), first: %s",
			 gate_role_name(role), node, d.reasons.n,
			 d.reasons.n ? d.reasons.v[0] : "?");
		rc = 409;
		goto free_in;
	}
	nl.node = xstrdup(node);
	nl.role = role;
	nl.slot = d.slot;
	nl.reason = xstrdup(reason ? reason : "");
	nl.ttl_ms = ttl;
	fill_lease(g, &in, &nl);
	if ((rc = gate_store_next_fence(g->store, &g->table, &nl.fence, &err)) < 0) {
		rc = error_json(out, 503, "lease store: %s", err);
		goto free_lease;
	}
	lease_table_copy(&after, &g->table);
	struct gate_lease *added = lease_table_add(&after, &nl, now);
	rc = gate_store_put(g->store, &after, added, &err);
	if (rc == 0) {
		lease_table_free(&g->table);
		g->table = after;
		added = lease_table_find(&g->table, node);
		log_info("gate: granted %s lease %s-%d to %s (fence %llu): %s",
			 gate_role_name(role), gate_role_name(role), added->slot, node,
			 (unsigned long long)added->fence, added->reason);
		*out =
		    json_pack("{s:b,s:o}", "granted", 1, "lease", gate_lease_to_json(added, now));
		rc = 201;
	} else if (rc == GATE_STORE_CONFLICT) {
		lease_table_free(&after);
		*out =
		    json_pack("{s:b,s:[s]}", "granted", 0, "reasons",
			      "concurrency: another lbd granted this slot at the same moment; ask "
			      "again");
		rc = 409;
	} else {
		lease_table_free(&after);
		rc = error_json(out, 503, "lease store: %s (nothing was granted)", err);
	}
free_lease:
	gate_lease_clear(&nl);
free_in:
	gate_decision_free(&d);
	gate_inputs_free(&in);
unlock:
	pthread_mutex_unlock(&g->mu);
	free(err);
	return rc;
}

static int handle_release(struct gate *g, const char *who, const char *node, json_t **out)
{
	struct lease_table after;
	char *err = NULL;
	int rc;

	if (!node_name_ok(node))
		return error_json(out, 400, "not a node name");
	if (!may_act_for(who, node))
		return error_json(out, 403, "this token may only release the lease of node %s",
				  who);
	pthread_mutex_lock(&g->mu);
	if (refresh(g, &err) < 0) {
		rc = error_json(out, 503, "lease store: %s", err);
		goto unlock;
	}
	const struct gate_lease *l = lease_table_find_const(&g->table, node);
	if (!l) {
		rc = error_json(out, 404, "%s holds no lease", node);
		goto unlock;
	}
	json_t *was = gate_lease_to_json(l, gate_now_ms());
	lease_table_copy(&after, &g->table);
	lease_table_remove(&after, node);
	rc = gate_store_del(g->store, &after, l, &err);
	if (rc == 0) {
		lease_table_free(&g->table);
		g->table = after;
		log_info("gate: %s released the lease of %s",
			 who ? (strcmp(who, "*") ? who : "admin") : "admin socket", node);
		*out = json_pack("{s:o}", "released", was);
		rc = 200;
	} else {
		json_decref(was);
		lease_table_free(&after);
		rc = rc == GATE_STORE_CONFLICT
			 ? error_json(out, 409, "another lbd changed this lease")
			 : error_json(out, 503, "lease store: %s", err);
	}
unlock:
	pthread_mutex_unlock(&g->mu);
	free(err);
	return rc;
}

/* ---- status --------------------------------------------------------------------------- */

static json_t *source_json(const struct gate_source *s, int64_t now_ms)
{
	json_t *o = json_pack("{s:b}", "known", s->known);
	if (s->known)
		json_object_set_new(o, "age_ms", json_integer(now_ms - s->at_ms));
	if (s->why)
		json_object_set_new(o, "why", json_string(s->why));
	return o;
}

static json_t *decision_json(const struct gate_decision *d, const char *node)
{
	return json_pack("{s:s,s:b,s:o,s:o}", "node", node, "granted", d->granted, "reasons",
			 text_json(&d->reasons), "arithmetic", text_json(&d->arithmetic));
}

static json_t *inputs_json(const struct gate_conf *conf, const struct gate_inputs *in)
{
	json_t *o = json_object(), *a;

	if (conf->quorum_pool) {
		json_t *p = source_json(&in->pool.src, in->now_ms);
		a = json_array();
		for (size_t i = 0; i < in->pool.n; i++)
			json_array_append_new(
			    a, json_pack("{s:s,s:b,s:s?}", "name", in->pool.v[i].name, "up",
					 in->pool.v[i].up, "detail", in->pool.v[i].detail));
		json_object_set_new(p, "name", json_string(conf->quorum_pool));
		json_object_set_new(p, "backends", a);
		json_object_set_new(o, "pool", p);
	}
	if (conf->netcd_endpoints) {
		json_t *e = source_json(&in->etcd.src, in->now_ms);
		a = json_array();
		for (size_t i = 0; i < in->etcd.nmembers; i++) {
			const struct gate_etcd_member *m = &in->etcd.members[i];
			const char *why = NULL;
			bool h = gate_etcd_member_healthy(&in->etcd, m->id, &why);
			char id[24];
			snprintf(id, sizeof(id), "%llx", (unsigned long long)m->id);
			json_array_append_new(a, json_pack("{s:s,s:s,s:b,s:b,s:s?}", "id", id,
							   "name", m->name ? m->name : "",
							   "learner", m->learner, "healthy", h,
							   "why", h ? NULL : why));
		}
		json_object_set_new(e, "members", a);
		a = json_array();
		for (size_t i = 0; i < in->etcd.nviews; i++)
			json_array_append_new(a, json_pack("{s:s,s:b,s:s?}", "endpoint",
							   in->etcd.views[i].endpoint, "ok",
							   in->etcd.views[i].ok, "error",
							   in->etcd.views[i].err));
		json_object_set_new(e, "endpoints", a);
		json_object_set_new(o, "etcd", e);
	}
	if (conf->kubeconfig) {
		json_t *n = source_json(&in->nodes.src, in->now_ms);
		a = json_array();
		for (size_t i = 0; i < in->nodes.n; i++)
			json_array_append_new(a, json_pack("{s:s,s:b,s:b,s:s?}", "name",
							   in->nodes.v[i].name, "ready",
							   in->nodes.v[i].ready, "unschedulable",
							   in->nodes.v[i].unschedulable, "boot_id",
							   in->nodes.v[i].boot_id));
		json_object_set_new(n, "nodes", a);
		json_object_set_new(o, "kubernetes", n);
	}
	if (conf->alerts_prometheus_url) {
		json_t *al = source_json(&in->alerts.src, in->now_ms);
		a = json_array();
		for (size_t i = 0; i < in->alerts.n; i++)
			json_array_append_new(a, json_string(in->alerts.firing[i]));
		json_object_set_new(al, "firing", a);
		json_object_set_new(o, "alerts", al);
	}
	return o;
}

/* Masters to ask about: the pool's backends, else the etcd members. */
static void master_names(const struct gate_conf *conf, const struct gate_inputs *in,
			 struct gate_text *out)
{
	for (size_t i = 0; i < in->pool.n; i++) {
		const char *b = in->pool.v[i].name, *node = b;
		for (size_t m = 0; m < conf->nmembers; m++)
			if (conf->members[m].backend && strcmp(conf->members[m].backend, b) == 0)
				node = conf->members[m].node;
		gate_text_add(out, "%s", node);
	}
	if (out->n == 0)
		for (size_t i = 0; i < in->etcd.nmembers; i++)
			if (!in->etcd.members[i].learner && in->etcd.members[i].name &&
			    *in->etcd.members[i].name)
				gate_text_add(out, "%s", in->etcd.members[i].name);
}

static int handle_status(struct gate *g, json_t **out)
{
	int64_t now = gate_now_ms();
	struct gate_inputs in;
	struct gate_text masters = {0};
	json_t *o = json_object(), *ma = json_array(), *stale = json_array();
	char *err = NULL;

	pthread_mutex_lock(&g->mu);
	if (refresh(g, &err) < 0) {
		json_object_set_new(o, "store_error", json_string(err));
		free(err);
	}
	gate_inputs_snapshot(g->inputs, now, &in);
	master_names(g->conf, &in, &masters);
	for (size_t i = 0; i < masters.n; i++) {
		struct gate_decision d;
		struct gate_request r = {.node = masters.v[i], .role = GATE_ROLE_MASTER};
		if (lease_table_find_const(&g->table, masters.v[i]))
			continue; /* holds one */
		gate_decide(g->conf, &in, &g->table, &r, &d);
		json_array_append_new(ma, decision_json(&d, masters.v[i]));
		gate_decision_free(&d);
	}
	struct gate_decision wd;
	struct gate_request wr = {
	    .node = "(any worker)", .role = GATE_ROLE_WORKER, .hypothetical = true};
	gate_decide(g->conf, &in, &g->table, &wr, &wd);
	for (size_t i = 0; i < g->table.n; i++)
		if (gate_lease_stale(&g->table.v[i], now))
			json_array_append_new(stale, json_string(g->table.v[i].node));
	json_object_set_new(o, "store", json_string(gate_store_name(g->store)));
	json_object_set_new(o, "inputs", inputs_json(g->conf, &in));
	json_object_set_new(o, "leases", leases_json(&g->table, now));
	json_object_set_new(o, "stale", stale);
	json_object_set_new(o, "master", ma);
	json_object_set_new(o, "worker", decision_json(&wd, "(any worker)"));
	json_object_set_new(o, "concurrency",
			    json_pack("{s:i,s:i}", "masters", g->conf->conc_masters, "workers",
				      g->conf->conc_workers));
	pthread_mutex_unlock(&g->mu);
	gate_decision_free(&wd);
	gate_text_free(&masters);
	gate_inputs_free(&in);
	*out = o;
	return 200;
}

int gate_handle(struct gate *g, const char *method, const char *path, const char *token,
		json_t *body, json_t **out)
{
	static const char leases[] = "/v1/gate/leases";
	char *who = NULL;
	int rc;

	*out = NULL;
	if (token) {
		/* The file is read without the lock; its name may change with a reload. */
		pthread_mutex_lock(&g->mu);
		char *tokens_file = g->conf->tokens_file ? xstrdup(g->conf->tokens_file) : NULL;
		pthread_mutex_unlock(&g->mu);
		rc = authenticate(tokens_file, token, &who, out);
		free(tokens_file);
		if (rc != 0)
			return rc;
	}
	if (strcmp(path, "/v1/gate/status") == 0) {
		rc = strcmp(method, "GET") == 0 ? handle_status(g, out)
						: error_json(out, 405, "use GET");
	} else if (strcmp(path, leases) == 0) {
		if (strcmp(method, "GET") == 0) {
			pthread_mutex_lock(&g->mu);
			char *err = NULL;
			if (refresh(g, &err) < 0) {
				rc = error_json(out, 503, "lease store: %s", err);
				free(err);
			} else {
				*out = json_pack("{s:o}", "leases",
						 leases_json(&g->table, gate_now_ms()));
				rc = 200;
			}
			pthread_mutex_unlock(&g->mu);
		} else if (strcmp(method, "POST") == 0) {
			rc = handle_acquire(g, who, body, out);
		} else {
			rc = error_json(out, 405, "use GET or POST");
		}
	} else if (strncmp(path, leases, sizeof(leases) - 1) == 0 &&
		   path[sizeof(leases) - 1] == '/') {
		rc = strcmp(method, "DELETE") == 0
			 ? handle_release(g, who, path + sizeof(leases), out)
			 : error_json(out, 405, "use DELETE");
	} else {
		rc = error_json(out, 404, "no such gate route");
	}
	free(who);
	return rc;
}

/* ---- outcomes: release leases whose holders are back ---------------------------------- */

static void outcomes_tick(struct gate *g)
{
	struct gate_inputs in;
	struct gate_text nodes = {0}, why = {0};
	char *err = NULL;

	pthread_mutex_lock(&g->mu);
	if (refresh(g, &err) < 0) {
		log_warn("gate: lease store: %s", err);
		xfree(&err);
	}
	gate_inputs_snapshot(g->inputs, gate_now_ms(), &in);
	gate_outcomes(g->conf, &in, &g->table, &nodes, &why);
	for (size_t i = 0; i < nodes.n; i++) {
		const struct gate_lease *l = lease_table_find_const(&g->table, nodes.v[i]);
		struct lease_table after;
		if (!l)
			continue;
		lease_table_copy(&after, &g->table);
		lease_table_remove(&after, nodes.v[i]);
		if (gate_store_del(g->store, &after, l, &err) == 0) {
			lease_table_free(&g->table);
			g->table = after;
			log_info("gate: released the lease of %s: %s", nodes.v[i], why.v[i]);
		} else {
			lease_table_free(&after);
			log_warn("gate: could not release the lease of %s: %s", nodes.v[i],
				 err ? err : "conflict");
			xfree(&err);
		}
	}
	pthread_mutex_unlock(&g->mu);
	gate_text_free(&nodes);
	gate_text_free(&why);
	gate_inputs_free(&in);
}

/* ---- the gate thread: listener and tick ----------------------------------------------- */

static const char *method_name(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	default:
		return "OTHER";
	}
}

static void reply(struct evhttp_request *req, int status, json_t *body)
{
	struct evbuffer *b = evbuffer_new();
	char *text = json_dumps(body, JSON_COMPACT);

	evbuffer_add_printf(b, "%s\n", text ? text : "{}");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
	evhttp_send_reply(req, status, status < 300 ? "OK" : "Error", b);
	evbuffer_free(b);
	free(text);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct gate *g = arg;
	const char *auth =
	    evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_t *body = NULL, *out = NULL;
	int status;

	if (!path) {
		status = error_json(&out, 400, "bad request line");
		goto send;
	}
	if (len > 0) {
		json_error_t je;
		body = json_loadb((const char *)evbuffer_pullup(in, (ev_ssize_t)len), len, 0, &je);
		if (!body) {
			status = error_json(&out, 400, "body is not JSON: %s", je.text);
			goto send;
		}
	}
	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
		auth = "";
	else
		auth += 7;
	status =
	    gate_handle(g, method_name(evhttp_request_get_command(req)), path, auth, body, &out);
send:
	reply(req, status, out);
	json_decref(out);
	json_decref(body);
}

static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
	struct gate *g = arg;
	return bufferevent_openssl_socket_new(base, -1, SSL_new(g->ssl), BUFFEREVENT_SSL_ACCEPTING,
					      BEV_OPT_CLOSE_ON_FREE);
}

static void on_tick(evutil_socket_t fd, short ev, void *arg)
{
	outcomes_tick(arg);
}

static void on_stop(evutil_socket_t fd, short ev, void *arg)
{
	struct gate *g = arg;
	event_base_loopbreak(g->base);
}

static void *gate_thread(void *arg)
{
	struct gate *g = arg;
	event_base_dispatch(g->base);
	return NULL;
}

static int open_listener(struct gate *g, char **err)
{
	const struct sockaddr_conf *a = g->conf->listen;
	int one = 1, fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0) {
		*err = xasprintf("gate.listen %s: socket: %s", a->text, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, 128) < 0) {
		*err = xasprintf("gate.listen %s: %s", a->text, strerror(errno));
		close(fd);
		return -1;
	}
	if (g->conf->tls.cert && g->conf->tls.key) {
		g->ssl = tls_server_ctx(&g->conf->tls, "gate.tls", err);
		if (!g->ssl) {
			close(fd);
			return -1;
		}
		evhttp_set_bevcb(g->http, make_bev, g);
	}
	if (!evhttp_accept_socket_with_handle(g->http, fd)) {
		*err = xasprintf("gate.listen %s: evhttp refused the socket", a->text);
		close(fd);
		return -1;
	}
	return 0;
}

/* ---- the main loop's side: pool health ------------------------------------------------ */

static void publish_pool(evutil_socket_t fd, short ev, void *arg)
{
	struct gate *g = arg;
	struct pool *p;
	struct gate_pool_in in = {0};

	if (!g->conf->quorum_pool)
		return; /* not asked (a reload may add one) */
	p = server_pool(g->srv, g->conf->quorum_pool);
	if (!p) {
		in.src.why = xasprintf("lbd has no pool named %s", g->conf->quorum_pool);
	} else {
		in.src.known = true;
		in.src.at_ms = gate_now_ms();
		in.n = p->nbe;
		in.v = xcalloc(p->nbe + 1, sizeof(*in.v));
		for (size_t i = 0; i < p->nbe; i++) {
			const struct backend *b = p->be[i];
			in.v[i].name = b->conf.name;
			in.v[i].up = backend_is_up(b);
			in.v[i].detail = in.v[i].up    ? NULL
					 : b->has_fail ? (char *)b->last_fail.detail
						       : (char *)"no check result yet";
		}
	}
	gate_inputs_set_pool(g->inputs, &in); /* copies */
	free(in.v);
	free(in.src.why);
}

/* ---- life cycle ----------------------------------------------------------------------- */

static struct gate_store *open_store(const struct config *cfg, char **err)
{
	const struct gate_conf *c = &cfg->gate;
	struct kubeconfig kc = {0};
	struct gate_store *s;

	if (c->store == GATE_STORE_FILE)
		return gate_store_file_new(cfg->state_dir, err);
	if (!c->kubeconfig) {
		*err = xstrdup("gate.store kubernetes needs gate.kubeconfig");
		return NULL;
	}
	if (kubeconfig_load(c->kubeconfig, NULL, &kc, err) < 0)
		return NULL;
	s = gate_store_kube_new(&kc, kc.namespace ? kc.namespace : "kube-system", err);
	kubeconfig_free(&kc);
	return s;
}

struct gate *gate_start(struct event_base *main_base, struct server *s, const char *config_path,
			char **err)
{
	struct config_errors errs = {0};
	struct gate *g;

	*err = NULL;
	g = xcalloc(1, sizeof(*g));
	if (!(g->cfg = config_load(config_path, &errs))) {
		*err = xasprintf("gate: %s", errs.n ? errs.msgs[0] : "cannot load the config");
		config_errors_free(&errs);
		free(g);
		return NULL;
	}
	g->conf = &g->cfg->gate;
	if (!g->conf->enabled) {
		config_free(g->cfg);
		free(g);
		return NULL;
	}
	g->srv = s;
	pthread_mutex_init(&g->mu, NULL);
	lease_table_init(&g->table);
	if (!(g->store = open_store(g->cfg, err)) || gate_store_load(g->store, &g->table, err) < 0)
		goto fail;
	if (!(g->inputs = gate_inputs_start(g->conf, GATE_INPUTS_INTERVAL_MS, err)))
		goto fail;
	if (main_base) { /* even without quorum.pool: a reload may set it */
		struct timeval tv = {0, 500 * 1000};
		g->pool_timer = event_new(main_base, -1, EV_PERSIST, publish_pool, g);
		event_add(g->pool_timer, &tv);
		publish_pool(-1, 0, g);
	}
	g->base = event_base_new();
	g->http = evhttp_new(g->base);
	evhttp_set_gencb(g->http, on_request, g);
	evhttp_set_max_body_size(g->http, GATE_MAX_BODY);
	evhttp_set_max_headers_size(g->http, 16 * 1024);
	evhttp_set_timeout(g->http, 10);
	evhttp_set_allowed_methods(g->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE);
	if (g->conf->listen && open_listener(g, err) < 0)
		goto fail;
	struct timeval tick = {1, 0};
	g->tick = event_new(g->base, -1, EV_PERSIST, on_tick, g);
	event_add(g->tick, &tick);
	g->stop_ev = event_new(g->base, -1, 0, on_stop, g);
	if (pthread_create(&g->thread, NULL, gate_thread, g) != 0)
		fatal("gate: cannot start its thread");
	g->thread_running = true;
	log_info("gate: %zu lease(s) loaded from the %s store%s%s", g->table.n,
		 gate_store_name(g->store), g->conf->listen ? "; listening on " : "",
		 g->conf->listen ? g->conf->listen->text : "");
	return g;
fail:
	gate_stop(&g);
	return NULL;
}

void gate_stop(struct gate **gp)
{
	struct gate *g = *gp;

	if (!g)
		return;
	if (g->thread_running) {
		event_active(g->stop_ev, EV_TIMEOUT, 0);
		pthread_join(g->thread, NULL);
	}
	if (g->pool_timer)
		event_free(g->pool_timer);
	if (g->tick)
		event_free(g->tick);
	if (g->stop_ev)
		event_free(g->stop_ev);
	if (g->http)
		evhttp_free(g->http);
	if (g->base)
		event_base_free(g->base);
	if (g->ssl)
		SSL_CTX_free(g->ssl);
	gate_inputs_stop(&g->inputs);
	gate_store_free(&g->store);
	lease_table_free(&g->table);
	pthread_mutex_destroy(&g->mu);
	config_free(g->live);
	config_free(g->cfg);
	free(g);
	*gp = NULL;
}

/* ---- reload ------------------------------------------------------------------------- */

void gate_reload(struct gate *g, const struct config *cfg)
{
	const struct gate_conf *run, *nc = &cfg->gate;
	struct gate_conf want;
	struct config *live, *old;
	size_t nleases;
	char *changes;

	if (!g) {
		if (nc->enabled)
			log_warn("reload: a gate section was added; the gate starts at the next "
				 "restart of lbd");
		return;
	}
	if (!nc->enabled) {
		log_warn("reload: the gate section was removed; the gate keeps running with its "
			 "current settings until the next restart of lbd");
		return;
	}
	run = &g->cfg->gate; /* what the listener and the store were opened with */
	if (!gate_conf_listen_eq(run, nc))
		log_warn("reload: gate.listen changed to %s; it needs a restart of lbd, the gate "
			 "stays on %s",
			 nc->listen ? nc->listen->text : "(none)",
			 run->listen ? run->listen->text : "(none)");
	if (!gate_conf_tls_eq(run, nc))
		log_warn("reload: gate.tls changed; it needs a restart of lbd, the listener keeps "
			 "its certificate");
	if (run->store != nc->store)
		log_warn("reload: gate.store changed to %s; it needs a restart of lbd, the gate "
			 "keeps the %s store",
			 nc->store == GATE_STORE_KUBERNETES ? "kubernetes" : "file",
			 gate_store_name(g->store));
	else if (run->store == GATE_STORE_KUBERNETES &&
		 !gate_conf_str_eq(run->kubeconfig, nc->kubeconfig))
		log_warn("reload: gate.kubeconfig changed; the nodes input uses %s now, the "
			 "kubernetes lease store keeps %s until a restart of lbd",
			 nc->kubeconfig ? nc->kubeconfig : "(none)", run->kubeconfig);

	/* The new settings, but what cannot change live keeps its running value,
	 * so g->conf always says what the gate runs. */
	want = *nc; /* shallow: gate_conf_dup copies what it points to */
	want.listen = run->listen;
	want.tls = run->tls;
	want.store = run->store;
	live = gate_conf_dup(&want);

	changes = gate_conf_changes(g->conf, &live->gate);
	pthread_mutex_lock(&g->mu);
	old = g->live;
	g->live = live;
	g->conf = &live->gate;
	nleases = g->table.n;
	pthread_mutex_unlock(&g->mu);
	config_free(old); /* no thread can be reading it: see the top of this file */

	gate_inputs_reconfigure(g->inputs, g->conf);
	if (g->pool_timer)
		publish_pool(-1, 0, g); /* quorum.pool may name another pool now */
	if (changes)
		log_info("reload: gate settings applied (changed: %s); %zu lease(s) kept", changes,
			 nleases);
	else
		log_info("reload: gate settings unchanged");
	free(changes);
}

/* ---- admin socket routes -------------------------------------------------------------- */

static void admin_call(struct admin_req *r, struct gate *g, const char *path)
{
	const char *method = admin_method(r) == ADMIN_GET      ? "GET"
			     : admin_method(r) == ADMIN_POST   ? "POST"
			     : admin_method(r) == ADMIN_DELETE ? "DELETE"
							       : "OTHER";
	json_t *body = NULL, *out = NULL;
	bool bad = false;
	int status;

	if (admin_method(r) == ADMIN_POST) {
		body = admin_body(r, &bad);
		if (bad)
			return; /* admin_body answered 400 */
	}
	status = gate_handle(g, method, path, NULL, body, &out);
	admin_reply_json(r, status, out);
	json_decref(body);
}

static void admin_status(struct admin_req *r, void *arg)
{
	admin_call(r, arg, "/v1/gate/status");
}

static void admin_leases(struct admin_req *r, void *arg)
{
	admin_call(r, arg, "/v1/gate/leases");
}

static void admin_lease(struct admin_req *r, void *arg)
{
	char path[512];
	snprintf(path, sizeof(path), "/v1/gate/leases/%s", admin_param(r, 0));
	admin_call(r, arg, path);
}

void gate_register_routes(struct gate *g, struct admin *a)
{
	admin_route(a, ADMIN_GET, "/v1/gate/status", admin_status, g);
	admin_route(a, ADMIN_GET | ADMIN_POST, "/v1/gate/leases", admin_leases, g);
	admin_route(a, ADMIN_DELETE, "/v1/gate/leases/{node}", admin_lease, g);
}
