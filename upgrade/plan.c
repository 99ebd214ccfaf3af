/*
 * plan.c - see plan.h.
 *
 * The file is turned into a ytree (config/yaml_tree.h) first, then walked
 * key by key. Every check adds an error and goes on, so the operator sees
 * all of them at once; cross-checks (a replace naming a node that is not in
 * nodes, a migration without etcd endpoints) run after the walk and point at
 * the value they are about.
 */
#define _GNU_SOURCE
#include "upgrade/plan.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/duration.h"
#include "common/xmalloc.h"
#include "config/yaml_tree.h"

struct perr {
	int line, col;
	size_t seq;
	char *msg;
};

struct ctx {
	const char *file;
	struct perr *v;
	size_t n, cap;
};

__attribute__((format(printf, 4, 5))) static void perr_at(struct ctx *c, int line, int col,
							  const char *fmt, ...)
{
	va_list ap;
	char *m;

	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		abort();
	va_end(ap);
	for (char *s = m; *s; s++) /* quoted values may hold newlines: keep it one line */
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 8;
		c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
	}
	c->v[c->n] =
	    (struct perr){line, col, c->n, xasprintf("%s:%d:%d: %s", c->file, line, col, m)};
	c->n++;
	free(m);
}

#define perr(c, at, ...) perr_at((c), (at)->line, (at)->col, __VA_ARGS__)

static int perr_cmp(const void *a, const void *b)
{
	const struct perr *x = a, *y = b;
	if (x->line != y->line)
		return x->line - y->line;
	if (x->col != y->col)
		return x->col - y->col;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

char *plan_meaning(const struct plan *p)
{
	char *out = xasprintf("kind: %s\nversion: %s\npool: %s\n",
			      p->kind == PLAN_UPGRADE ? "upgrade" : "migration",
			      p->version ? p->version : "-", p->pool ? p->pool : "-");
	for (size_t i = 0; i < p->nnodes; i++) {
		const struct plan_node *n = &p->nodes[i];
		char *t = xasprintf("%snode: %s %s backend %s\n", out, n->name,
				    plan_role_name(n->role), n->backend ? n->backend : "-");
		free(out);
		out = t;
	}
	for (size_t i = 0; i < p->nreplace; i++) {
		char *t = xasprintf("%sreplace: %s with %s\n", out, p->replace[i].old_node,
				    p->replace[i].new_node);
		free(out);
		out = t;
	}
	for (size_t i = 0; i < p->nadd; i++) {
		char *t = xasprintf("%sadd: %s\n", out, p->add[i]);
		free(out);
		out = t;
	}
	return out;
}

const char *plan_role_name(enum plan_role r)
{
	return r == PLAN_MASTER ? "master" : "worker";
}

/* ---- values ---------------------------------------------------------------------------- */

static const char *scalar(struct ctx *c, const struct ynode *v, const char *key)
{
	if (v->kind == YNODE_BAD) {
		perr(c, v, "%s", v->value);
		return NULL;
	}
	if (v->kind != YNODE_SCALAR) {
		perr(c, v, "%s: expected a string, got %s", key, ynode_kind_name(v));
		return NULL;
	}
	if (ynode_is_null(v)) {
		perr(c, v, "%s: no value", key);
		return NULL;
	}
	return v->value;
}

static void set_str(struct ctx *c, const struct ynode *v, const char *key, char **dst)
{
	const char *s = scalar(c, v, key);
	if (s) {
		free(*dst);
		*dst = xstrdup(s);
	}
}

static void set_bool(struct ctx *c, const struct ynode *v, const char *key, bool *dst)
{
	const char *s = scalar(c, v, key);
	if (!s)
		return;
	if (!strcmp(s, "true") || !strcmp(s, "yes"))
		*dst = true;
	else if (!strcmp(s, "false") || !strcmp(s, "no"))
		*dst = false;
	else
		perr(c, v, "%s: expected true or false, got '%s'", key, s);
}

static void set_dur(struct ctx *c, const struct ynode *v, const char *key, int64_t *dst)
{
	const char *s = scalar(c, v, key);
	int64_t ms;
	if (!s)
		return;
	if (duration_parse(s, &ms) < 0)
		perr(c, v, "%s: '%s' is not a duration (500ms, 30s, 5m, 1h)", key, s);
	else
		*dst = ms;
}

static void set_int(struct ctx *c, const struct ynode *v, const char *key, int *dst, long lo,
		    long hi)
{
	const char *s = scalar(c, v, key);
	char *end;
	long n;
	if (!s)
		return;
	errno = 0;
	n = strtol(s, &end, 10);
	if (errno || *end || end == s || n < lo || n > hi)
		perr(c, v, "%s: expected a whole number from %ld to %ld, got '%s'", key, lo, hi, s);
	else
		*dst = (int)n;
}

/* Names and hosts go into shell commands unquoted: allow no metacharacters. */
static bool word_ok(const char *s, const char *extra)
{
	if (!*s || *s == '-')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._-", *s) && !strchr(extra, *s))
			return false;
	return true;
}

static void set_word(struct ctx *c, const struct ynode *v, const char *key, char **dst,
		     const char *extra, const char *what)
{
	const char *s = scalar(c, v, key);
	if (!s)
		return;
	if (!word_ok(s, extra)) {
		perr(c, v, "%s: '%s' is not %s", key, s, what);
		return;
	}
	free(*dst);
	*dst = xstrdup(s);
}

int plan_version_parse(const char *s, int *major, int *minor, int *patch)
{
	char *end;
	long v[3];

	if (*s == 'v')
		s++;
	for (int i = 0; i < 3; i++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v[i] = strtol(s, &end, 10);
		if (v[i] > 100000)
			return -1;
		s = end;
		if (i < 2 && *s++ != '.')
			return -1;
	}
	if (*s && *s != '+' && *s != '-')
		return -1;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr(".+-", *s))
			return -1;
	*major = (int)v[0];
	*minor = (int)v[1];
	*patch = (int)v[2];
	return 0;
}

/* ---- templates ------------------------------------------------------------------------- */

static const char *const var_names[] = {"node", "host", "version", "date", "old", "new"};

static const char *var_value(const struct plan_vars *v, size_t i)
{
	const char *vals[] = {v->node, v->host, v->version, v->date, v->old_node, v->new_node};
	return vals[i];
}

char *plan_expand(const char *tmpl, const struct plan_vars *v, char **err, size_t *bad_off)
{
	size_t cap = strlen(tmpl) + 64, n = 0;
	char *out = xmalloc(cap);

	*err = NULL;
	for (const char *p = tmpl; *p;) {
		const char *val = NULL;
		size_t len = 1;
		if (*p == '{' && !(p > tmpl && p[-1] == '$')) {
			const char *e = p + 1;
			while (isalnum((unsigned char)*e) || *e == '_')
				e++;
			if (*e == '}' && e > p + 1) {
				size_t i, wl = (size_t)(e - p - 1);
				for (i = 0; i < sizeof(var_names) / sizeof(*var_names); i++)
					if (strlen(var_names[i]) == wl &&
					    !strncmp(var_names[i], p + 1, wl))
						break;
				if (i == sizeof(var_names) / sizeof(*var_names))
					*err =
					    xasprintf("unknown placeholder {%.*s} (known: {node}, "
						      "{host}, {version}, {date}, {old}, {new})",
						      (int)wl, p + 1);
				else if (!(val = var_value(v, i)))
					*err = xasprintf("{%s} has no value here", var_names[i]);
				if (*err) {
					if (bad_off)
						*bad_off = (size_t)(p - tmpl);
					free(out);
					return NULL;
				}
				len = wl + 2;
			}
		}
		size_t add = val ? strlen(val) : 1;
		if (n + add + 1 > cap) {
			cap = 2 * (n + add + 1);
			out = xrealloc(out, cap);
		}
		if (val) {
			memcpy(out + n, val, add);
		} else {
			out[n] = *p;
		}
		n += add;
		p += len;
	}
	out[n] = 0;
	return out;
}

void plan_date(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y%m%d-%H%M%S", &tm);
}

/* Checks a template with sample values for what it may use; errors point at the placeholder. */
static void check_template(struct ctx *c, const struct ynode *v, const char *key,
			   const struct plan_vars *allowed)
{
	char *err = NULL, *out;
	size_t off = 0;

	if (v->kind != YNODE_SCALAR || ynode_is_null(v))
		return; /* reported by set_str */
	out = plan_expand(v->value, allowed, &err, &off);
	if (out) {
		free(out);
		return;
	}
	int line = v->line, col = v->col;
	if (!memchr(v->value, '\n', off)) /* one line: point at the placeholder itself */
		col += (int)off + (v->plain ? 0 : 1);
	perr_at(c, line, col, "%s: %s", key, err);
	free(err);
}

/* ---- the walk -------------------------------------------------------------------------- */

typedef void (*key_fn)(struct ctx *c, const struct ynode *v, struct plan *p, void *arg);

struct key {
	const char *name;
	key_fn fn;
};

static void walk(struct ctx *c, const struct ynode *map, const char *where, const struct key *keys,
		 struct plan *p, void *arg)
{
	if (map->kind != YNODE_MAP) {
		if (map->kind == YNODE_BAD)
			perr(c, map, "%s", map->value);
		else
			perr(c, map, "%s: expected a mapping, got %s", where, ynode_kind_name(map));
		return;
	}
	for (size_t i = 0; i + 1 < map->n; i += 2) {
		const struct ynode *k = map->kids[i], *v = map->kids[i + 1];
		const struct key *f;
		bool dup = false;
		if (k->kind != YNODE_SCALAR) { /* a list, a mapping or an alias as a key */
			perr(c, k, "%s%skeys must be plain words, not %s", where,
			     *where ? ": " : "", ynode_kind_name(k));
			continue;
		}
		for (size_t j = 0; j < i && !dup; j += 2)
			if (map->kids[j]->kind == YNODE_SCALAR &&
			    !strcmp(map->kids[j]->value, k->value)) {
				perr(c, k, "%s%s%s: duplicate key (first at line %d)", where,
				     *where ? "." : "", k->value, map->kids[j]->line);
				dup = true;
			}
		if (dup) /* reported; its value is not read, so nothing is set twice */
			continue;
		for (f = keys; f->name; f++)
			if (!strcmp(f->name, k->value))
				break;
		if (!f->name) {
			perr(c, k, "%s%sunknown key '%s'", where, *where ? ": " : "", k->value);
			continue;
		}
		f->fn(c, v, p, arg);
	}
}

#define STR_KEY(fname, key, field)                                                                 \
	static void fname(struct ctx *c, const struct ynode *v, struct plan *p, void *a)           \
	{                                                                                          \
		set_str(c, v, key, &p->field);                                                     \
	}
#define DUR_KEY(fname, key, field)                                                                 \
	static void fname(struct ctx *c, const struct ynode *v, struct plan *p, void *a)           \
	{                                                                                          \
		set_dur(c, v, key, &p->field);                                                     \
	}
#define BOOL_KEY(fname, key, field)                                                                \
	static void fname(struct ctx *c, const struct ynode *v, struct plan *p, void *a)           \
	{                                                                                          \
		set_bool(c, v, key, &p->field);                                                    \
	}

static void k_kind(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	const char *s = scalar(c, v, "kind");
	int *seen = a;
	if (!s)
		return;
	*seen = 1;
	if (!strcmp(s, "upgrade"))
		p->kind = PLAN_UPGRADE;
	else if (!strcmp(s, "migration"))
		p->kind = PLAN_MIGRATION;
	else
		perr(c, v, "kind: expected upgrade or migration, got '%s'", s);
}

static void k_version(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	const char *s = scalar(c, v, "version");
	int x, y, z;
	if (!s)
		return;
	if (plan_version_parse(s, &x, &y, &z) < 0 || s[0] != 'v')
		perr(c, v,
		     "version: '%s' is not a Kubernetes version such as v1.31.5 or v1.31.5+k3s1",
		     s);
	else
		p->version = xstrdup(s);
}

STR_KEY(k_kubeconfig, "kubeconfig", kubeconfig)
STR_KEY(k_upgrade_command, "upgrade_command", upgrade_command)
STR_KEY(k_join_command, "join_command", join_command)
STR_KEY(k_remove_command, "remove_command", remove_command)
DUR_KEY(k_soak, "soak", soak_ms)
DUR_KEY(k_lease_ttl, "lease_ttl", lease_ttl_ms)

static void k_context(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	set_str(c, v, "context", &p->context);
}

static void k_pool(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	set_word(c, v, "pool", &p->pool, "", "a pool name");
}

STR_KEY(k_lbd_socket, "lbd.socket", lbd_socket)
STR_KEY(k_lbd_url, "lbd.url", lbd_url)
STR_KEY(k_lbd_token, "lbd.token_file", lbd_token_file)

static void k_lbd(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	static const struct key keys[] = {{"socket", k_lbd_socket},
					  {"url", k_lbd_url},
					  {"token_file", k_lbd_token},
					  {NULL, NULL}};
	walk(c, v, "lbd", keys, p, NULL);
	if (v->kind == YNODE_MAP && p->lbd_socket && p->lbd_url)
		perr(c, v, "lbd: socket or url, not both");
	if (v->kind == YNODE_MAP && p->lbd_url && !p->lbd_token_file)
		perr(c, v, "lbd: url needs token_file");
}

static void k_hook_preflight(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	static const struct plan_vars allowed = {.version = "v0.0.0", .date = "d"};
	set_str(c, v, "hooks.preflight", &p->hook_preflight);
	check_template(c, v, "hooks.preflight", &allowed);
}

static void k_hooks(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	static const struct key keys[] = {{"preflight", k_hook_preflight}, {NULL, NULL}};
	walk(c, v, "hooks", keys, p, NULL);
}

DUR_KEY(k_drain_timeout, "drain.timeout", drain_timeout_ms)
BOOL_KEY(k_drain_ids, "drain.ignore_daemonsets", ignore_daemonsets)
BOOL_KEY(k_drain_ded, "drain.delete_emptydir_data", delete_emptydir_data)
BOOL_KEY(k_drain_force, "drain.force", force)
BOOL_KEY(k_drain_noev, "drain.disable_eviction", disable_eviction)

static void k_drain_grace(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	set_int(c, v, "drain.grace_period", &p->grace_period_s, -1, 86400);
}

static void k_drain(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	static const struct key keys[] = {{"timeout", k_drain_timeout},
					  {"grace_period", k_drain_grace},
					  {"ignore_daemonsets", k_drain_ids},
					  {"delete_emptydir_data", k_drain_ded},
					  {"force", k_drain_force},
					  {"disable_eviction", k_drain_noev},
					  {NULL, NULL}};
	walk(c, v, "drain", keys, p, NULL);
}

DUR_KEY(k_t_ready, "timeouts.node_ready", t_node_ready_ms)
DUR_KEY(k_t_bdrain, "timeouts.backend_drain", t_backend_drain_ms)
DUR_KEY(k_t_cmd, "timeouts.command", t_command_ms)
DUR_KEY(k_t_gate, "timeouts.gate", t_gate_ms)

static void k_timeouts(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	static const struct key keys[] = {{"node_ready", k_t_ready},
					  {"backend_drain", k_t_bdrain},
					  {"command", k_t_cmd},
					  {"gate", k_t_gate},
					  {NULL, NULL}};
	walk(c, v, "timeouts", keys, p, NULL);
}

static void k_w_conc(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	set_int(c, v, "workers.concurrency", &p->worker_concurrency, 1, 100);
}

static void k_workers(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	static const struct key keys[] = {{"concurrency", k_w_conc}, {NULL, NULL}};
	walk(c, v, "workers", keys, p, NULL);
}

static void strv_push(char ***v, size_t *n, const char *s)
{
	*v = xrealloc(*v, (*n + 2) * sizeof(**v));
	(*v)[(*n)++] = xstrdup(s);
	(*v)[*n] = NULL;
}

static void k_etcd_endpoints(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	if (v->kind != YNODE_SEQ) {
		perr(c, v, "etcd.endpoints: expected a list, got %s", ynode_kind_name(v));
		return;
	}
	for (size_t i = 0; i < v->n; i++) {
		const char *s = scalar(c, v->kids[i], "etcd.endpoints");
		if (!s)
			continue;
		if (strncmp(s, "http://", 7) && strncmp(s, "https://", 8))
			perr(c, v->kids[i],
			     "etcd.endpoints: '%s' is not an http:// or https:// URL", s);
		else
			strv_push(&p->etcd_endpoints, &p->netcd_endpoints, s);
	}
}

STR_KEY(k_etcd_ca, "etcd.ca", etcd_ca)
STR_KEY(k_etcd_cert, "etcd.cert", etcd_cert)
STR_KEY(k_etcd_key, "etcd.key", etcd_key)

static void k_etcd(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	static const struct key keys[] = {{"endpoints", k_etcd_endpoints},
					  {"ca", k_etcd_ca},
					  {"cert", k_etcd_cert},
					  {"key", k_etcd_key},
					  {NULL, NULL}};
	walk(c, v, "etcd", keys, p, NULL);
	if (v->kind == YNODE_MAP && !!p->etcd_cert != !!p->etcd_key)
		perr(c, v, "etcd: cert and key go together");
}

/* nodes[] */

static void k_n_name(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	set_word(c, v, "nodes.name", &((struct plan_node *)a)->name, "", "a node name");
}

static void k_n_role(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	struct plan_node *n = a;
	const char *s = scalar(c, v, "nodes.role");
	if (!s)
		return;
	if (!strcmp(s, "master") || !strcmp(s, "control-plane"))
		n->role = PLAN_MASTER;
	else if (!strcmp(s, "worker"))
		n->role = PLAN_WORKER;
	else
		perr(c, v, "nodes.role: expected master or worker, got '%s'", s);
}

static void k_n_backend(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	set_word(c, v, "nodes.backend", &((struct plan_node *)a)->backend, "", "a backend name");
}

static void k_n_host(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	set_word(c, v, "nodes.host", &((struct plan_node *)a)->host, "@:[]",
		 "a host (name, address or user@host)");
}

static void k_n_etcd(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	set_word(c, v, "nodes.etcd", &((struct plan_node *)a)->etcd, "", "an etcd member name");
}

static void k_n_address(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	struct plan_node *n = a;
	const char *s = scalar(c, v, "nodes.address");
	if (!s)
		return;
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s || !colon[1] ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) < 1 ||
	    atoi(colon + 1) > 65535)
		perr(c, v, "nodes.address: '%s' is not host:port", s);
	else
		n->address = xstrdup(s);
}

static void k_nodes(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	static const struct key keys[] = {
	    {"name", k_n_name}, {"role", k_n_role}, {"backend", k_n_backend},
	    {"host", k_n_host}, {"etcd", k_n_etcd}, {"address", k_n_address},
	    {NULL, NULL}};
	if (v->kind != YNODE_SEQ) {
		perr(c, v, "nodes: expected a list, got %s", ynode_kind_name(v));
		return;
	}
	p->nodes = xcalloc(v->n + 1, sizeof(*p->nodes));
	for (size_t i = 0; i < v->n; i++) {
		const struct ynode *it = v->kids[i];
		struct plan_node *n = &p->nodes[p->nnodes];
		n->role = PLAN_WORKER;
		n->line = it->line;
		n->col = it->col;
		walk(c, it, "nodes", keys, p, n);
		if (it->kind != YNODE_MAP)
			continue;
		if (!ynode_get(it, "name")) {
			perr(c, it, "nodes: an entry without a name");
		} else if (!ynode_get(it, "role")) {
			perr(c, it, "nodes: %s has no role (master or worker)",
			     n->name ? n->name : "?");
		}
		if (!n->name) {
			free(n->backend);
			free(n->host);
			free(n->etcd);
			free(n->address);
			memset(n, 0, sizeof(*n));
			continue;
		}
		for (size_t j = 0; j < p->nnodes; j++)
			if (!strcmp(p->nodes[j].name, n->name))
				perr(c, ynode_get(it, "name"),
				     "nodes: %s is listed twice (first at line %d)", n->name,
				     p->nodes[j].line);
		if (n->role == PLAN_WORKER && (n->backend || n->etcd || n->address))
			perr(c, it,
			     "nodes: %s is a worker: backend, address and etcd are for masters",
			     n->name);
		if (!n->host)
			n->host = xstrdup(n->name);
		if (n->role == PLAN_MASTER && !n->backend)
			n->backend = xstrdup(n->name);
		if (n->role == PLAN_MASTER && !n->etcd)
			n->etcd = xstrdup(n->name);
		p->nnodes++;
	}
}

static void k_replace(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	if (v->kind != YNODE_SEQ) {
		perr(c, v, "replace: expected a list of {old, new}, got %s", ynode_kind_name(v));
		return;
	}
	p->replace = xcalloc(v->n + 1, sizeof(*p->replace));
	for (size_t i = 0; i < v->n; i++) {
		const struct ynode *it = v->kids[i], *o, *nw;
		if (it->kind != YNODE_MAP) {
			perr(c, it, "replace: expected {old: NODE, new: NODE}, got %s",
			     ynode_kind_name(it));
			continue;
		}
		for (size_t j = 0; j + 1 < it->n; j += 2)
			if (it->kids[j]->kind != YNODE_SCALAR ||
			    (strcmp(it->kids[j]->value, "old") &&
			     strcmp(it->kids[j]->value, "new")))
				perr(c, it->kids[j], "replace: unknown key '%s'",
				     it->kids[j]->kind == YNODE_SCALAR
					 ? it->kids[j]->value
					 : ynode_kind_name(it->kids[j]));
		o = ynode_get(it, "old");
		nw = ynode_get(it, "new");
		if (!o || !nw) {
			perr(c, it, "replace: each entry needs old and new");
			continue;
		}
		const char *so = scalar(c, o, "replace.old"), *sn = scalar(c, nw, "replace.new");
		if (!so || !sn)
			continue;
		struct plan_replace *r = &p->replace[p->nreplace++];
		r->old_node = xstrdup(so);
		r->new_node = xstrdup(sn);
		r->line = it->line;
		r->col = it->col;
	}
}

static void k_add(struct ctx *c, const struct ynode *v, struct plan *p, void *a)
{
	if (v->kind != YNODE_SEQ) {
		perr(c, v, "add: expected a list of node names, got %s", ynode_kind_name(v));
		return;
	}
	for (size_t i = 0; i < v->n; i++) {
		const char *s = scalar(c, v->kids[i], "add");
		if (s)
			strv_push(&p->add, &p->nadd, s);
	}
}

/* Cross-checks, once everything is read. */
static void check_plan(struct ctx *c, const struct ynode *root, struct plan *p, int seen_kind)
{
	static const struct plan_vars node_vars = {
	    .node = "n", .host = "h", .version = "v0.0.0", .date = "d"};
	static const struct plan_vars mig_vars = {.node = "n",
						  .host = "h",
						  .version = "v0.0.0",
						  .date = "d",
						  .old_node = "o",
						  .new_node = "n"};
	const struct ynode *v;

	if (!seen_kind)
		perr(c, root, "kind: missing (upgrade or migration)");
	if (p->kind == PLAN_UPGRADE && !p->version && !ynode_get(root, "version"))
		perr(c, root, "version: missing (the target, e.g. v1.31.5+k3s1)");
	if (!p->pool && !ynode_get(root, "pool"))
		perr(c, root, "pool: missing (lbd's pool of apiservers)");
	if (!ynode_get(root, "nodes"))
		perr(c, root, "nodes: missing");
	else if (p->nnodes == 0 && ynode_get(root, "nodes")->kind == YNODE_SEQ)
		perr(c, ynode_get(root, "nodes"), "nodes: empty");
	if (p->kind == PLAN_UPGRADE && !ynode_get(root, "upgrade_command"))
		perr(c, root,
		     "upgrade_command: missing (lbctl never guesses how to upgrade a node)");
	if ((v = ynode_get(root, "upgrade_command")))
		check_template(c, v, "upgrade_command", &node_vars);
	if ((v = ynode_get(root, "join_command")))
		check_template(c, v, "join_command", &mig_vars);
	if ((v = ynode_get(root, "remove_command")))
		check_template(c, v, "remove_command", &mig_vars);
	if (p->kind == PLAN_UPGRADE) {
		const char *mk[] = {"replace", "add", "join_command", "remove_command"};
		for (size_t i = 0; i < 4; i++)
			if ((v = ynode_get(root, mk[i])))
				perr(c, v, "%s: only in a plan of kind migration", mk[i]);
		return;
	}
	/* migration */
	if (!p->nreplace && !p->nadd)
		perr(c, root, "a migration needs replace: [{old, new}] or add: [NODE, ...]");
	if (p->nreplace && !ynode_get(root, "remove_command"))
		perr(c, root,
		     "remove_command: missing: a replace deletes the old node, and lbctl deletes a "
		     "Node only once its machine's kubelet is stopped (else it registers the "
		     "Node again); say how (k3s-uninstall.sh, systemctl stop kubelet)");
	for (size_t i = 0; i < p->nreplace; i++) {
		const struct plan_replace *r = &p->replace[i];
		const struct plan_node *o = plan_node_find(p, r->old_node),
				       *n = plan_node_find(p, r->new_node);
		if (!o)
			perr_at(c, r->line, r->col, "replace: old node %s is not in nodes",
				r->old_node);
		if (!n)
			perr_at(c, r->line, r->col, "replace: new node %s is not in nodes",
				r->new_node);
		if (o && n && o->role != n->role)
			perr_at(c, r->line, r->col, "replace: %s is a %s but %s is a %s",
				r->old_node, plan_role_name(o->role), r->new_node,
				plan_role_name(n->role));
		if (n && n->role == PLAN_MASTER && !n->address)
			perr_at(c, n->line, n->col,
				"nodes: %s is a new master: give its backend address (host:port)",
				n->name);
		if (o && o->role == PLAN_MASTER && !p->netcd_endpoints)
			perr_at(c, r->line, r->col,
				"replace: removing master %s needs etcd.endpoints (its member is "
				"removed through etcd's JSON gateway)",
				r->old_node);
	}
	v = ynode_get(root, "add");
	for (size_t i = 0; i < p->nadd; i++) {
		const struct plan_node *n = plan_node_find(p, p->add[i]);
		const struct ynode *at = v && v->kind == YNODE_SEQ && i < v->n ? v->kids[i] : root;
		if (!n)
			perr(c, at, "add: %s is not in nodes", p->add[i]);
		else if (n->role != PLAN_MASTER)
			perr(c, at, "add: %s is a worker; add grows the control plane", p->add[i]);
		else if (!n->address)
			perr_at(c, n->line, n->col,
				"nodes: %s is a new master: give its backend address (host:port)",
				n->name);
	}
	if (p->nadd && !p->netcd_endpoints)
		perr(c, v ? v : root, "add: checking etcd membership needs etcd.endpoints");
}

static void defaults(struct plan *p)
{
	p->drain_timeout_ms = 5 * 60000;
	p->grace_period_s = -1;
	p->t_node_ready_ms = 10 * 60000;
	p->t_backend_drain_ms = 2 * 60000;
	p->t_command_ms = 15 * 60000;
	p->t_gate_ms = 30 * 60000;
	p->worker_concurrency = 1;
	p->soak_ms = 60000;
	p->lease_ttl_ms = 10 * 60000;
}

int plan_load_string(const char *text, size_t len, const char *name, struct plan *p,
		     struct plan_errors *errs)
{
	static const struct key keys[] = {
	    {"kind", k_kind},
	    {"version", k_version},
	    {"kubeconfig", k_kubeconfig},
	    {"context", k_context},
	    {"lbd", k_lbd},
	    {"pool", k_pool},
	    {"nodes", k_nodes},
	    {"upgrade_command", k_upgrade_command},
	    {"join_command", k_join_command},
	    {"remove_command", k_remove_command},
	    {"hooks", k_hooks},
	    {"drain", k_drain},
	    {"timeouts", k_timeouts},
	    {"workers", k_workers},
	    {"soak", k_soak},
	    {"lease_ttl", k_lease_ttl},
	    {"etcd", k_etcd},
	    {"replace", k_replace},
	    {"add", k_add},
	    {NULL, NULL},
	};
	struct ctx c = {.file = name};
	struct ynode *root = NULL;
	struct ytree_error ye = {0};
	int seen_kind = 0;

	memset(p, 0, sizeof(*p));
	memset(errs, 0, sizeof(*errs));
	defaults(p);
	p->path = xstrdup(name);
	if (ytree_parse(text, len, &root, &ye) < 0) {
		perr_at(&c, ye.line, ye.col, "%s", ye.msg);
		free(ye.msg);
	} else if (!root) {
		perr_at(&c, 1, 1, "empty plan (expected kind, version, nodes, ...)");
	} else {
		walk(&c, root, "", keys, p, &seen_kind);
		if (root->kind == YNODE_MAP)
			check_plan(&c, root, p, seen_kind);
		if (!p->lbd_socket && !p->lbd_url)
			p->lbd_socket = xstrdup("/run/lbd/admin.sock");
	}
	ytree_free(root);
	if (c.n == 0)
		return 0;
	qsort(c.v, c.n, sizeof(*c.v), perr_cmp);
	errs->msgs = xcalloc(c.n, sizeof(*errs->msgs));
	for (size_t i = 0; i < c.n; i++)
		errs->msgs[i] = c.v[i].msg;
	errs->n = c.n;
	free(c.v);
	plan_free(p);
	return -1;
}

int plan_load(const char *path, struct plan *p, struct plan_errors *errs)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (!f) {
		memset(p, 0, sizeof(*p));
		errs->msgs = xcalloc(1, sizeof(*errs->msgs));
		errs->msgs[0] = xasprintf("%s: %s", path, strerror(errno));
		errs->n = 1;
		return -1;
	}
	FILE *m = open_memstream(&buf, &len);
	char chunk[8192];
	size_t r;
	while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, r, m);
	fclose(f);
	fclose(m);
	rc = plan_load_string(buf, len, path, p, errs);
	free(buf);
	return rc;
}

static void strv_free(char ***v, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		free((*v)[i]);
	xfree(v);
	*n = 0;
}

void plan_free(struct plan *p)
{
	for (size_t i = 0; i < p->nnodes; i++) {
		struct plan_node *n = &p->nodes[i];
		free(n->name);
		free(n->backend);
		free(n->address);
		free(n->host);
		free(n->etcd);
	}
	/* a half-filled entry past nnodes (a node without a name) was cleared in k_nodes */
	xfree(&p->nodes);
	for (size_t i = 0; i < p->nreplace; i++) {
		free(p->replace[i].old_node);
		free(p->replace[i].new_node);
	}
	xfree(&p->replace);
	strv_free(&p->add, &p->nadd);
	strv_free(&p->etcd_endpoints, &p->netcd_endpoints);
	char **strs[] = {&p->path,	     &p->version,      &p->kubeconfig,
			 &p->context,	     &p->lbd_socket,   &p->lbd_url,
			 &p->lbd_token_file, &p->pool,	       &p->upgrade_command,
			 &p->hook_preflight, &p->join_command, &p->remove_command,
			 &p->etcd_ca,	     &p->etcd_cert,    &p->etcd_key};
	for (size_t i = 0; i < sizeof(strs) / sizeof(*strs); i++)
		xfree(strs[i]);
	memset(p, 0, sizeof(*p));
}

void plan_errors_free(struct plan_errors *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->msgs[i]);
	xfree(&e->msgs);
	e->n = 0;
}

const struct plan_node *plan_node_find(const struct plan *p, const char *name)
{
	for (size_t i = 0; i < p->nnodes; i++)
		if (!strcmp(p->nodes[i].name, name))
			return &p->nodes[i];
	return NULL;
}
