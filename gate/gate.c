/*
 * gate.c - see gate.h.
 *
 * Everything here runs on the gate process's one event loop (gate/proc.c):
 * requests from gate.listen and those lbd forwards from its admin socket,
 * the one-second tick, reloads and pool snapshots. Only the input poller
 * (inputs.c) has a thread of its own, behind its own lock. So a decision and
 * its write to the store happen with nothing in between: two requests for
 * one slot are serialized, the first granted and written, the second sees
 * it taken. Nothing is answered as granted before the store has it.
 *
 * A store that cannot be opened or read is unknown, not fatal: the gate
 * refuses (unknown means no) and tries again on every request and tick.
 */
#include "gate/gate.h"

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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/text.h"
#include "common/tls.h"
#include "common/xmalloc.h"
#include "config/config.h"
#include "gate/conf.h"
#include "gate/fleetlock.h"
#include "gate/inputs.h"
#include "gate/policy.h"
#include "gate/store.h"
#include "kube/kubeconfig.h"

#define GATE_MAX_BODY (16 * 1024)

/* Refusal reasons as /metrics counts them: the rule a reason text starts with. */
static const char *const reason_names[] = {"concurrency", "window", "alerts", "nodes", "pool",
					   "etcd",	  "role",   "store",  "held",  "other"};
#define GATE_NREASONS (sizeof(reason_names) / sizeof(reason_names[0]))
#define GATE_TOKENS_MAX (1 << 20)

/* A lease ttl above this is refused: renewed_ms + ttl_ms must not overflow. */
#define GATE_TTL_MAX_MS (10LL * 366 * 24 * 3600 * 1000)

struct gate {
	struct config *cfg;	      /* as started: the listener, TLS and store run on it */
	struct config *live;	      /* the settings of the last reload, or NULL */
	const struct gate_conf *conf; /* &live->gate, else &cfg->gate */
	bool set_aside;		      /* lbd -F: an unreadable lease file is renamed aside */
	struct gate_inputs_src *inputs;
	struct lease_table table;
	struct gate_store *store; /* NULL until it could be opened */
	bool loaded;		  /* table holds what the store had */
	char *store_why;	  /* why the store is unknown now, or NULL */
	int64_t store_retry_ms;	  /* while unknown: not asked again before (mono) */
	struct event_base *base;
	struct httpd *httpd; /* gate.listen, or NULL */
	struct event *tick;
	struct log_limit tokens_log; /* every request meets a bad tokens file */
	/* lease requests answered, by answer and refusal reason (gate_metrics) */
	uint64_t granted, renewed, errors, refused[GATE_NREASONS];
};

/* At most a line per 10 s for a tokens file every request finds bad. */
#define TOKENS_LOG_PERIOD_MS 10000

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
	if (!*out) /* buf quoted text that is not UTF-8 */
		*out = json_pack("{s:s}", "error", "internal error: the message is not UTF-8");
	return status;
}

static json_t *texts_json(const struct gate_text *t)
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
static int authenticate(struct gate *g, const char *token, char **who, json_t **out)
{
	const char *tokens_file = g->conf->tokens_file;
	uint64_t skipped;
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
		int e = errno;
		if (log_limit_due(&g->tokens_log, TOKENS_LOG_PERIOD_MS, mono_ms(), &skipped))
			log_warn("gate: tokens file %s: %s; refusing every token (%llu more "
				 "requests refused since the last such line)",
				 tokens_file, strerror(e), (unsigned long long)skipped);
		return error_json(out, 503, "gate tokens file unreadable; see lbd's log");
	}
	if (fstat(fileno(f), &st) < 0 || (st.st_mode & 077)) {
		fclose(f);
		if (log_limit_due(&g->tokens_log, TOKENS_LOG_PERIOD_MS, mono_ms(), &skipped))
			log_warn("gate: tokens file %s is readable by group or others; refusing "
				 "every token until it is chmod 600 (%llu more requests refused "
				 "since the last such line)",
				 tokens_file, (unsigned long long)skipped);
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

int gate_authenticate(struct gate *g, const char *token, char **who, json_t **out)
{
	return authenticate(g, token, who, out);
}

static bool may_act_for(const char *who, const char *node)
{
	return !who || strcmp(who, "*") == 0 || strcmp(who, node) == 0;
}

/* ---- the lease table and its store --------------------------------------------------- */

static struct gate_store *open_store(const struct gate *g, char **err)
{
	const struct gate_conf *c = &g->cfg->gate;
	struct kubeconfig kc = {0};
	struct gate_store *s;

	if (c->store == GATE_STORE_FILE)
		return gate_store_file_new(g->cfg->state_dir, g->set_aside, err);
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

/* Replaces the table with what the store holds, keeping our in-memory soak
 * timers for leases that did not change and never lowering the fence. */
static int reload_table(struct gate *g, char **err)
{
	struct lease_table t;

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

/*
 * Brings the table up to date with the store before a decision: the store
 * is opened and loaded once (tried again until it answers); the kubernetes
 * store is re-read every time, since the other lbd of a pair may have
 * written. Returns 0, or -1 when the store is unknown (g->store_why says
 * why; nothing may be granted or released). An unknown store is asked at
 * most once a second: each try may wait out a timeout, and requests queued
 * behind it (and lbd's heartbeat) would wait too.
 */
static int store_sync(struct gate *g)
{
	char *err = NULL;

	if (g->store_why && mono_ms() < g->store_retry_ms)
		return -1;

	if (!g->store && !(g->store = open_store(g, &err)))
		goto unknown;
	if (g->loaded && g->cfg->gate.store != GATE_STORE_KUBERNETES)
		return 0; /* the file store: the table is the truth while we run */
	if (reload_table(g, &err) < 0)
		goto unknown;
	if (!g->loaded)
		log_info("gate: %zu lease(s) loaded from the %s store", g->table.n,
			 gate_store_name(g->store));
	else if (g->store_why)
		log_info("gate: the %s lease store answers again", gate_store_name(g->store));
	g->loaded = true;
	xfree(&g->store_why);
	return 0;
unknown:;
	char *why = text_clean(err, strlen(err), 512); /* may quote a file's bytes */
	free(err);
	if (!g->store_why || strcmp(g->store_why, why) != 0)
		log_warn("gate: lease store unknown: %s; refusing every lease until it answers",
			 why);
	free(g->store_why);
	g->store_why = why;
	g->store_retry_ms = mono_ms() + 1000;
	return -1;
}

static const char *store_name(const struct gate *g)
{
	if (g->store)
		return gate_store_name(g->store);
	return g->cfg->gate.store == GATE_STORE_KUBERNETES ? "kubernetes" : "file";
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

bool gate_node_name_ok(const char *s)
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

/* Which of reason_names a refusal's first reason belongs to. */
static size_t reason_class(const char *r)
{
	if (!r)
		return GATE_NREASONS - 1;
	if (strstr(r, " is held by "))
		return 8;
	if (strncmp(r, "lease store", 11) == 0)
		return 7;
	for (size_t i = 0; i < GATE_NREASONS - 1; i++) {
		size_t n = strlen(reason_names[i]);
		if (strncmp(r, reason_names[i], n) == 0 && (r[n] == ':' || r[n] == ' '))
			return i;
	}
	return GATE_NREASONS - 1;
}

static void count(struct gate *g, int status, json_t *out)
{
	if (status == 201)
		g->granted++;
	else if (status == 200)
		g->renewed++;
	else if (status == 409 && json_is_false(json_object_get(out, "granted")))
		g->refused[reason_class(
		    json_string_value(json_array_get(json_object_get(out, "reasons"), 0)))]++;
	else
		g->errors++;
}

/* A refusal: 409 {"granted": false, "reasons": [why]}, logged. */
static int refuse1(json_t **out, const char *node, const char *why)
{
	*out = json_pack("{s:b,s:[s]}", "granted", 0, "reasons", why);
	if (!*out)
		return error_json(out, 500, "internal error: a refusal that is not UTF-8");
	log_kv(LOG_LVL_INFO, LOG_KV("node", node, "reason", why), "gate: refused a lease to %s: %s",
	       node, why);
	return 409;
}

static bool is_admin(const char *who)
{
	return !who || strcmp(who, "*") == 0;
}

/* The holder of a request that names none: the node's token, or an admin. */
static char *default_holder(const char *who)
{
	return is_admin(who) ? xstrdup("admin") : xasprintf("node/%s", who);
}

/* Renews node's lease for a: same slot, same fence, same holder. */
static int renew(struct gate *g, const struct gate_ask *a, int64_t now, json_t **out)
{
	struct lease_table after;
	char *err = NULL;
	int rc;

	lease_table_copy(&after, &g->table);
	struct gate_lease *r = lease_table_renew(&after, a->node, now, a->ttl_ms, a->reason);
	if (gate_lease_stale(lease_table_find_const(&g->table, a->node), now)) {
		char fence[24];
		log_kv(LOG_LVL_INFO,
		       LOG_KV("node", a->node, "holder", r->holder, "fence",
			      log_u64(fence, r->fence), "reason", "stale lease taken back"),
		       "gate: %s takes its stale lease of %s back (fence %llu)", r->holder, a->node,
		       (unsigned long long)r->fence);
	}
	rc = gate_store_put(g->store, &after, r, &err);
	if (rc == 0) {
		lease_table_free(&g->table);
		g->table = after;
		*out = json_pack("{s:b,s:b,s:o}", "granted", 1, "renewed", 1, "lease",
				 gate_lease_to_json(lease_table_find(&g->table, a->node), now));
		rc = 200;
	} else {
		lease_table_free(&after);
		rc = rc == GATE_STORE_CONFLICT
			 ? error_json(out, 409, "another lbd changed this lease; ask again")
			 : error_json(out, 503, "lease store: %s", err);
	}
	free(err);
	return rc;
}

/* A new lease for a, decided by the policy on req's role. */
static int grant(struct gate *g, const struct gate_ask *a, const struct gate_request *req,
		 struct gate_inputs *in, int64_t now, json_t **out)
{
	struct gate_decision d;
	struct gate_lease nl = {0};
	struct lease_table after;
	enum gate_role role = req->role;
	char *err = NULL;
	int rc;

	gate_decide(g->conf, in, &g->table, req, &d);
	if (!d.granted) {
		*out = json_pack("{s:b,s:o}", "granted", 0, "reasons", texts_json(&d.reasons));
		log_kv(LOG_LVL_INFO,
		       LOG_KV("node", a->node, "role", gate_role_name(role), "reason",
			      d.reasons.n ? d.reasons.v[0] : NULL),
		       "gate: refused %s lease to %s: %zu reason(s), first: %s",
		       gate_role_name(role), a->node, d.reasons.n,
		       d.reasons.n ? d.reasons.v[0] : "?");
		gate_decision_free(&d);
		return 409;
	}
	nl.node = xstrdup(a->node);
	nl.role = role;
	nl.slot = d.slot;
	nl.reason = xstrdup(a->reason ? a->reason : "");
	nl.ttl_ms = a->ttl_ms;
	nl.holder = xstrdup(a->holder);
	nl.release_on_outcomes = a->release_on_outcomes;
	gate_decision_free(&d);
	fill_lease(g, in, &nl);
	if ((rc = gate_store_next_fence(g->store, &g->table, &nl.fence, &err)) < 0) {
		rc = error_json(out, 503, "lease store: %s", err);
		goto done;
	}
	lease_table_copy(&after, &g->table);
	struct gate_lease *added = lease_table_add(&after, &nl, now);
	rc = gate_store_put(g->store, &after, added, &err);
	if (rc == 0) {
		lease_table_free(&g->table);
		g->table = after;
		added = lease_table_find(&g->table, a->node);
		char lease[48], fence[24];
		snprintf(lease, sizeof(lease), "%s-%d", gate_role_name(role), added->slot);
		log_kv(LOG_LVL_INFO,
		       LOG_KV("node", a->node, "role", gate_role_name(role), "lease", lease,
			      "fence", log_u64(fence, added->fence), "holder", added->holder,
			      "reason", added->reason),
		       "gate: granted %s lease %s to %s for %s (fence %llu): %s",
		       gate_role_name(role), lease, a->node, added->holder,
		       (unsigned long long)added->fence, added->reason);
		*out =
		    json_pack("{s:b,s:o}", "granted", 1, "lease", gate_lease_to_json(added, now));
		rc = 201;
	} else if (rc == GATE_STORE_CONFLICT) {
		lease_table_free(&after);
		rc = refuse1(out, a->node,
			     "concurrency: another lbd granted this slot at the same moment; ask "
			     "again");
	} else {
		lease_table_free(&after);
		rc = error_json(out, 503, "lease store: %s (nothing was granted)", err);
	}
done:
	gate_lease_clear(&nl);
	free(err);
	return rc;
}

int gate_acquire(struct gate *g, const char *who, const struct gate_ask *a, json_t **out)
{
	int64_t now = gate_now_ms();
	struct gate_ask ask = *a;
	struct gate_inputs in;
	char *why = NULL, *holder = NULL;
	int rc;

	if (!may_act_for(who, a->node))
		return error_json(out, 403, "this token may only take the lease of node %s", who);
	if (!ask.holder)
		ask.holder = holder = default_holder(who);
	if (ask.ttl_ms == 0)
		ask.ttl_ms = g->conf->lease_ttl_ms;
	if (store_sync(g) < 0) {
		/* Unknown means no: a refusal with the reason, like any other. */
		why = xasprintf("lease store unknown: %s", g->store_why);
		rc = refuse1(out, a->node, why);
		goto done;
	}
	/* An admin overrides another holder only as itself: a request that
	 * names its holder is that holder (lbctl upgrade asks as an admin, and
	 * a second run of the plan must not take over the first run's lease). */
	switch (
	    gate_hold_check(&g->table, a->node, ask.holder, is_admin(who) && !a->holder, &why)) {
	case GATE_HOLD_REFUSED:
		rc = refuse1(out, a->node, why);
		goto done;
	case GATE_HOLD_RENEW:
		if (a->role &&
		    strcmp(a->role, gate_role_name(lease_table_find(&g->table, a->node)->role)) !=
			0) {
			why = xasprintf("role: %s holds a %s lease, not a %s one", a->node,
					gate_role_name(lease_table_find(&g->table, a->node)->role),
					a->role);
			rc = refuse1(out, a->node, why);
			goto done;
		}
		rc = renew(g, &ask, now, out);
		goto done;
	case GATE_HOLD_NEW:
		break;
	}
	/* The role is the cluster's to say; the asker may only make it stricter
	 * (a master about to join: gate_request_role). */
	gate_inputs_snapshot(g->inputs, now, &in);
	struct gate_request req = {.release_on_outcomes = a->release_on_outcomes};
	if (gate_request_role(g->conf, &in, a->node, a->role, is_admin(who), &req, &why) < 0)
		rc = refuse1(out, a->node, why);
	else
		rc = grant(g, &ask, &req, &in, now, out);
	gate_inputs_free(&in);
done:
	free(why);
	free(holder);
	count(g, rc, *out);
	return rc;
}

static int handle_acquire(struct gate *g, const char *who, json_t *body, json_t **out)
{
	static const char *const keys[] = {
	    "node", "role", "reason", "ttl", "holder", "release_on_outcomes", NULL};
	struct gate_ask a = {0};
	enum gate_role role;
	const char *k;
	json_t *v, *roo;

	if (!json_is_object(body))
		return error_json(out, 400,
				  "body must be a JSON object {node, role, reason, ttl, holder, "
				  "release_on_outcomes}");
	json_object_foreach(body, k, v)
	{
		bool known = false;
		for (size_t i = 0; keys[i]; i++)
			known |= strcmp(keys[i], k) == 0;
		if (!known)
			return error_json(out, 400,
					  "unknown key '%s' (node, role, reason, ttl, holder, "
					  "release_on_outcomes)",
					  k);
	}
	a.node = json_string_value(json_object_get(body, "node"));
	a.reason = json_string_value(json_object_get(body, "reason"));
	a.role = json_string_value(json_object_get(body, "role"));
	a.holder = json_string_value(json_object_get(body, "holder"));
	roo = json_object_get(body, "release_on_outcomes");
	if (!gate_node_name_ok(a.node))
		return error_json(out, 400, "node: a Kubernetes node name is required");
	if ((json_object_get(body, "role") && !a.role) ||
	    (a.role && gate_role_parse(a.role, &role) < 0))
		return error_json(out, 400,
				  "role: master or worker (optional: the gate knows the role)");
	if (json_object_get(body, "reason") && !a.reason)
		return error_json(out, 400, "reason: a string");
	if (a.reason && strlen(a.reason) > 1024)
		return error_json(out, 400, "reason: at most 1024 characters");
	if ((json_object_get(body, "holder") && !a.holder) ||
	    (a.holder && (!*a.holder || strlen(a.holder) > 253 || !text_is_clean(a.holder))))
		return error_json(out, 400, "holder: 1 to 253 characters of text");
	if (roo && !json_is_boolean(roo))
		return error_json(out, 400, "release_on_outcomes: true or false");
	a.release_on_outcomes = json_is_true(roo);
	if (parse_ttl(json_object_get(body, "ttl"), 0, &a.ttl_ms) < 0) /* 0: lease_ttl */
		return error_json(out, 400,
				  "ttl: a duration such as \"30m\" (1s to 10 years) or seconds");
	return gate_acquire(g, who, &a, out);
}

int gate_release(struct gate *g, const char *who, const char *node, const char *holder,
		 json_t **out)
{
	struct lease_table after;
	char *err = NULL, *mine = NULL, *why = NULL;
	int rc;

	if (!gate_node_name_ok(node))
		return error_json(out, 400, "not a node name");
	if (!may_act_for(who, node))
		return error_json(out, 403, "this token may only release the lease of node %s",
				  who);
	if (store_sync(g) < 0) {
		rc = error_json(out, 503, "lease store unknown: %s (nothing was released)",
				g->store_why);
		goto done;
	}
	const struct gate_lease *l = lease_table_find_const(&g->table, node);
	if (!l) {
		rc = error_json(out, 404, "%s holds no lease", node);
		goto done;
	}
	/* Only its holder (or an admin) gives a lease back. */
	if (!holder)
		holder = mine = default_holder(who);
	if (gate_hold_check(&g->table, node, holder, is_admin(who), &why) == GATE_HOLD_REFUSED) {
		rc = error_json(out, 409, "%s", why);
		goto done;
	}
	json_t *was = gate_lease_to_json(l, gate_now_ms());
	lease_table_copy(&after, &g->table);
	lease_table_remove(&after, node);
	rc = gate_store_del(g->store, &after, l, &err);
	if (rc == 0) {
		/* l is in the table freed next: log from its copy in was. */
		log_kv(LOG_LVL_INFO,
		       LOG_KV("node", node, "holder",
			      json_string_value(json_object_get(was, "holder")), "reason",
			      "released"),
		       "gate: %s released the lease of %s (held by %s)",
		       who ? (strcmp(who, "*") ? who : "admin") : "admin socket", node,
		       json_string_value(json_object_get(was, "holder")));
		lease_table_free(&g->table);
		g->table = after;
		*out = json_pack("{s:o}", "released", was);
		rc = 200;
	} else {
		json_decref(was);
		lease_table_free(&after);
		rc = rc == GATE_STORE_CONFLICT
			 ? error_json(out, 409, "another lbd changed this lease")
			 : error_json(out, 503, "lease store: %s", err);
	}
done:
	free(err);
	free(mine);
	free(why);
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
			 texts_json(&d->reasons), "arithmetic", texts_json(&d->arithmetic));
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
		/* What the config names (endpoints above also has the members'
		 * own URLs it covers): lbctl migrate compares it with the cluster. */
		a = json_array();
		for (size_t i = 0; i < conf->netcd_endpoints; i++)
			json_array_append_new(a, json_string(conf->etcd_endpoints[i]));
		json_object_set_new(e, "configured_endpoints", a);
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
	bool known = store_sync(g) == 0;

	json_object_set_new(o, "store_known", json_boolean(known));
	if (!known)
		json_object_set_new(o, "store_error", json_string(g->store_why));
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
	/* What a master about to join would get (lbctl migrate's preflight). */
	struct gate_decision jd;
	struct gate_request jr = {.node = "(a joining master)",
				  .role = GATE_ROLE_MASTER,
				  .hypothetical = true,
				  .stricter = true};
	gate_decide(g->conf, &in, &g->table, &jr, &jd);
	for (size_t i = 0; i < g->table.n; i++)
		if (gate_lease_stale(&g->table.v[i], now))
			json_array_append_new(stale, json_string(g->table.v[i].node));
	json_object_set_new(o, "store", json_string(store_name(g)));
	json_object_set_new(o, "inputs", inputs_json(g->conf, &in));
	json_object_set_new(o, "leases", leases_json(&g->table, now));
	json_object_set_new(o, "stale", stale);
	json_object_set_new(o, "master", ma);
	json_object_set_new(o, "worker", decision_json(&wd, "(any worker)"));
	json_object_set_new(o, "joining_master", decision_json(&jd, "(a joining master)"));
	gate_decision_free(&jd);
	json_object_set_new(o, "concurrency",
			    json_pack("{s:i,s:i}", "masters", g->conf->conc_masters, "workers",
				      g->conf->conc_workers));
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
	if (token && (rc = authenticate(g, token, &who, out)) != 0)
		return rc;
	if (strcmp(path, "/v1/gate/status") == 0) {
		rc = strcmp(method, "GET") == 0 ? handle_status(g, out)
						: error_json(out, 405, "use GET");
	} else if (strcmp(path, leases) == 0) {
		if (strcmp(method, "GET") == 0) {
			if (store_sync(g) < 0) {
				rc = error_json(out, 503, "lease store unknown: %s", g->store_why);
			} else {
				*out = json_pack("{s:o}", "leases",
						 leases_json(&g->table, gate_now_ms()));
				rc = 200;
			}
		} else if (strcmp(method, "POST") == 0) {
			rc = handle_acquire(g, who, body, out);
		} else {
			rc = error_json(out, 405, "use GET or POST");
		}
	} else if (strncmp(path, leases, sizeof(leases) - 1) == 0 &&
		   path[sizeof(leases) - 1] == '/') {
		rc = strcmp(method, "DELETE") == 0
			 ? gate_release(g, who, path + sizeof(leases), NULL, out)
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

	if (store_sync(g) < 0)
		return; /* unknown: release nothing, decide nothing */
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
			log_kv(LOG_LVL_INFO, LOG_KV("node", nodes.v[i], "reason", why.v[i]),
			       "gate: released the lease of %s: %s", nodes.v[i], why.v[i]);
		} else {
			lease_table_free(&after);
			log_kv(LOG_LVL_WARN,
			       LOG_KV("node", nodes.v[i], "reason", err ? err : "conflict"),
			       "gate: could not release the lease of %s: %s", nodes.v[i],
			       err ? err : "conflict");
			xfree(&err);
		}
	}
	gate_text_free(&nodes);
	gate_text_free(&why);
	gate_inputs_free(&in);
}

/* ---- the listener and the tick ----------------------------------------------------- */

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
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

	if (!text) {
		status = 500;
		text = xstrdup("{\"error\":\"internal error: the answer could not be encoded\"}");
	}
	evbuffer_add_printf(b, "%s\n", text);
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
	if (gate_fleetlock_path(path)) { /* its own errors and header: fleetlock.h */
		status = gate_fleetlock(
		    g, method_name(evhttp_request_get_command(req)), path,
		    evhttp_find_header(evhttp_request_get_input_headers(req),
				       "fleet-lock-protocol"),
		    auth, len ? (const char *)evbuffer_pullup(in, (ev_ssize_t)len) : NULL, len,
		    &out);
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

static void on_tick(evutil_socket_t fd, short ev, void *arg)
{
	outcomes_tick(arg);
}

static int serve(struct gate *g, int fd, char **err)
{
	const struct gate_conf *c = &g->cfg->gate;
	SSL_CTX *ssl = NULL;
	struct httpd_conf hc = {
	    .what = "gate listener",
	    .max_connections = c->max_connections,
	    .request_timeout_ms = c->request_timeout_ms,
	    .max_body = GATE_MAX_BODY,
	    .max_headers = 16 * 1024,
	    .methods = EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE,
	};

	if (c->tls.cert && c->tls.key && !(ssl = tls_server_ctx(&c->tls, "gate.tls", err))) {
		close(fd);
		return -1;
	}
	g->httpd = httpd_new(g->base, &hc, ssl, on_request, g);
	return httpd_listen(g->httpd, fd, err);
}

/* ---- life cycle ----------------------------------------------------------------------- */

struct gate *gate_start(struct event_base *base, struct config *cfg, int listen_fd, bool set_aside,
			char **err)
{
	struct gate *g = xcalloc(1, sizeof(*g));

	*err = NULL;
	g->cfg = cfg;
	g->conf = &cfg->gate;
	g->set_aside = set_aside;
	g->base = base;
	lease_table_init(&g->table);
	store_sync(g); /* unknown is not a failure: the VIP never waits on the gate */
	if (!(g->inputs = gate_inputs_start(g->conf, GATE_INPUTS_INTERVAL_MS, err)))
		goto fail;
	if (base && listen_fd >= 0 && serve(g, listen_fd, err) < 0)
		goto fail;
	if (base) {
		struct timeval tick = {1, 0};
		g->tick = event_new(base, -1, EV_PERSIST, on_tick, g);
		event_add(g->tick, &tick);
	}
	log_info("gate: started with the %s store (%s)%s%s", store_name(g),
		 g->store_why ? "unknown for now" : "loaded",
		 g->conf->listen ? "; listening on " : "",
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
	if (g->tick)
		event_free(g->tick);
	httpd_free(&g->httpd);
	gate_inputs_stop(&g->inputs);
	gate_store_free(&g->store);
	lease_table_free(&g->table);
	free(g->store_why);
	config_free(g->live);
	config_free(g->cfg);
	free(g);
	*gp = NULL;
}

void gate_set_pool(struct gate *g, const struct gate_pool_in *p)
{
	gate_inputs_set_pool(g->inputs, p);
}

/* ---- reload ------------------------------------------------------------------------- */

void gate_reload(struct gate *g, struct config *cfg)
{
	const struct gate_conf *run = &g->cfg->gate, *nc = &cfg->gate;
	struct gate_conf want;
	struct config *live;
	char *changes;

	/* gate.listen is lbd's socket: lbd says when it changes. */
	if (!gate_conf_tls_eq(run, nc))
		log_warn("reload: gate.tls changed; it needs a restart of lbd, the listener keeps "
			 "its certificate");
	if (run->store != nc->store)
		log_warn("reload: gate.store changed to %s; it needs a restart of lbd, the gate "
			 "keeps the %s store",
			 nc->store == GATE_STORE_KUBERNETES ? "kubernetes" : "file", store_name(g));
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
	config_free(cfg);

	changes = gate_conf_changes(g->conf, &live->gate);
	config_free(g->live);
	g->live = live;
	g->conf = &live->gate;
	gate_inputs_reconfigure(g->inputs, g->conf);
	if (changes)
		log_info("reload: gate settings applied (changed: %s); %zu lease(s) kept", changes,
			 g->table.n);
	else
		log_info("reload: gate settings unchanged");
	free(changes);
}

/* ---- metrics ------------------------------------------------------------------------ */

static void input_age(FILE *f, const char *name, const struct gate_source *src, int64_t now_ms)
{
	fprintf(f, "lbd_gate_input_age_seconds{input=\"%s\"} ", name);
	if (src->known)
		fprintf(f, "%.3f\n", (double)(now_ms - src->at_ms) / 1000.0);
	else
		fputs("-1\n", f);
}

char *gate_metrics(struct gate *g)
{
	int64_t now = gate_now_ms();
	struct gate_inputs in;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	fputs("# HELP lbd_gate_leases Leases held now, by role and state (stale: its holder "
	      "stopped renewing; it still blocks its slot).\n# TYPE lbd_gate_leases gauge\n",
	      f);
	for (int r = GATE_ROLE_MASTER; r <= GATE_ROLE_WORKER; r++) {
		size_t active = 0, stale = 0;
		for (size_t i = 0; i < g->table.n; i++)
			if (g->table.v[i].role == (enum gate_role)r)
				gate_lease_stale(&g->table.v[i], now) ? stale++ : active++;
		fprintf(f, "lbd_gate_leases{role=\"%s\",state=\"active\"} %zu\n",
			gate_role_name((enum gate_role)r), active);
		fprintf(f, "lbd_gate_leases{role=\"%s\",state=\"stale\"} %zu\n",
			gate_role_name((enum gate_role)r), stale);
	}
	fputs("# HELP lbd_gate_requests_total Lease requests answered, by answer and, for "
	      "refusals, the rule of the first reason.\n# TYPE lbd_gate_requests_total "
	      "counter\n",
	      f);
	fprintf(f, "lbd_gate_requests_total{answer=\"granted\",reason=\"\"} %llu\n",
		(unsigned long long)g->granted);
	fprintf(f, "lbd_gate_requests_total{answer=\"renewed\",reason=\"\"} %llu\n",
		(unsigned long long)g->renewed);
	fprintf(f, "lbd_gate_requests_total{answer=\"error\",reason=\"\"} %llu\n",
		(unsigned long long)g->errors);
	for (size_t i = 0; i < GATE_NREASONS; i++)
		fprintf(f, "lbd_gate_requests_total{answer=\"refused\",reason=\"%s\"} %llu\n",
			reason_names[i], (unsigned long long)g->refused[i]);
	fputs("# HELP lbd_gate_input_age_seconds Age of each input's last good answer; -1 while "
	      "it is unknown (the gate refuses what needs it).\n# TYPE "
	      "lbd_gate_input_age_seconds gauge\n",
	      f);
	gate_inputs_snapshot(g->inputs, now, &in);
	if (g->conf->quorum_pool)
		input_age(f, "pool", &in.pool.src, now);
	if (g->conf->netcd_endpoints)
		input_age(f, "etcd", &in.etcd.src, now);
	if (g->conf->kubeconfig)
		input_age(f, "nodes", &in.nodes.src, now);
	if (g->conf->alerts_prometheus_url)
		input_age(f, "alerts", &in.alerts.src, now);
	gate_inputs_free(&in);
	fputs("# HELP lbd_gate_store_known 1 when the lease store answers.\n# TYPE "
	      "lbd_gate_store_known gauge\n",
	      f);
	fprintf(f, "lbd_gate_store_known %d\n", g->store_why ? 0 : 1);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
