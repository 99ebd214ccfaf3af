/*
 * config.c - lbd.yaml to struct config: schema, defaults, validation.
 *
 * How it works: yaml_tree.c turns the file into a tree of nodes that keep
 * their line and column. The schema below is a set of tables in the spirit
 * of Redis's standardConfig: one row per key with its type, bounds and where
 * the value goes. walk_map() applies a table to a mapping, so unknown keys,
 * duplicate keys, wrong types and out-of-range values are caught the same
 * way in every section. Numeric defaults are set when a struct is created
 * (so "not given" and "given" need no flag), string defaults are filled in
 * after the walk, and then validate() checks what a table cannot: required
 * names, duplicates, references between sections.
 *
 * Every error is collected, never just the first, as
 *     FILE:LINE:COL: PATH: message
 * where PATH is the dotted path of the value (pools[0].health.interval) and
 * is left out for errors about the whole file. At the end they are sorted
 * into file order. Nothing here logs or exits: bad input is the caller's
 * to report.
 */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <strings.h>

#include "common/duration.h"
#include "common/xmalloc.h"
#include "config/yaml_tree.h"

#define DEFAULT_STATE_DIR "/var/lib/lbd"
/* A fixed path, not under state_dir: lbctl finds it without reading the config. */
#define DEFAULT_ADMIN_SOCKET "/run/lbd/admin.sock"
#define DEFAULT_HEALTH_PATH "/readyz"
#define DEFAULT_TZ "UTC"

/* A config file is a few kilobytes; anything this big is a mistake. */
#define MAX_CONFIG_BYTES (4u << 20)
/* After this many errors the rest is noise; say how many were left out. */
#define MAX_REPORTED_ERRORS 100

/* ---- error collection ---------------------------------------------------------------- */

struct err_item {
	int line, col;
	size_t seq; /* order found, to keep the sort stable */
	char *msg;
};

struct ctx {
	const char *file;
	struct err_item *errs;
	size_t nerrs, cap;
	struct config *cfg;
	const struct ynode *root;
};

static void add_error(struct ctx *c, int line, int col, char *msg)
{
	if (c->nerrs == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16;
		c->errs = xrealloc(c->errs, c->cap * sizeof(*c->errs));
	}
	c->errs[c->nerrs] = (struct err_item){line, col, c->nerrs, msg};
	c->nerrs++;
}

/* Reports an error at node `at` (NULL: the whole file) about the value at `path` ("" for none). */
__attribute__((format(printf, 4, 5))) static void cerr(struct ctx *c, const struct ynode *at,
						       const char *path, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (at)
		add_error(c, at->line, at->col,
			  xasprintf("%s:%d:%d: %s%s%s", c->file, at->line, at->col, path,
				    *path ? ": " : "", text));
	else
		add_error(c, 0, 0, xasprintf("%s: %s%s%s", c->file, path, *path ? ": " : "", text));
}

static int err_cmp(const void *a, const void *b)
{
	const struct err_item *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Hands the collected errors to the caller, in file order. */
static void errors_finish(struct ctx *c, struct config_errors *errs)
{
	size_t keep = c->nerrs;

	qsort(c->errs, c->nerrs, sizeof(*c->errs), err_cmp);
	if (keep > MAX_REPORTED_ERRORS)
		keep = MAX_REPORTED_ERRORS;
	if (errs && c->nerrs) {
		errs->n = keep + (c->nerrs > keep);
		errs->msgs = xcalloc(errs->n, sizeof(*errs->msgs));
		for (size_t i = 0; i < keep; i++)
			errs->msgs[i] = c->errs[i].msg;
		if (c->nerrs > keep)
			errs->msgs[keep] =
			    xasprintf("%s: %zu more errors not shown", c->file, c->nerrs - keep);
		for (size_t i = keep; i < c->nerrs; i++)
			free(c->errs[i].msg);
	} else {
		for (size_t i = 0; i < c->nerrs; i++)
			free(c->errs[i].msg);
	}
	xfree(&c->errs);
}

void config_errors_free(struct config_errors *errs)
{
	if (!errs)
		return;
	for (size_t i = 0; i < errs->n; i++)
		free(errs->msgs[i]);
	xfree(&errs->msgs);
	errs->n = 0;
}

/* A user's value made safe to quote in a message: short, one line. */
static const char *q(const char *s, char *buf, size_t len)
{
	size_t o = 0;

	for (; *s && o + 4 < len; s++)
		buf[o++] = isprint((unsigned char)*s) ? *s : '?';
	if (*s && len > 4) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}
#define QBUF 72
#define Q(s) q((s), (char[QBUF]){0}, QBUF)

static char *path_join(const char *path, const char *key)
{
	return *path ? xasprintf("%s.%s", path, key) : xstrdup(key);
}

/* ---- small enums ----------------------------------------------------------------------- */

static const char *const balance_names[] = {"least_conn", "round_robin", "source_hash"};
static const char *const health_names[] = {"https", "http", "tcp"};

const char *balance_name(enum balance b)
{
	return (unsigned)b < 3 ? balance_names[b] : "?";
}

int balance_parse(const char *s, enum balance *out)
{
	for (int i = 0; i < 3; i++) {
		if (strcmp(s, balance_names[i]) == 0) {
			*out = (enum balance)i;
			return 0;
		}
	}
	return -1;
}

const char *health_type_name(enum health_type t)
{
	return (unsigned)t < 3 ? health_names[t] : "?";
}

/* Setters for the F_ENUM rows: parse s into the field at dst, 0 or -1. */
static int set_balance(const char *s, void *dst)
{
	return balance_parse(s, dst);
}

static const char *const down_close_names[] = {"transport", "any", "never"};

const char *down_close_name(enum down_close d)
{
	return (unsigned)d < 3 ? down_close_names[d] : "?";
}

static int set_down_close(const char *s, void *dst)
{
	for (int i = 0; i < 3; i++) {
		if (strcmp(s, down_close_names[i]) == 0) {
			*(enum down_close *)dst = (enum down_close)i;
			return 0;
		}
	}
	return -1;
}

static int set_health_type(const char *s, void *dst)
{
	for (int i = 0; i < 3; i++) {
		if (strcmp(s, health_names[i]) == 0) {
			*(enum health_type *)dst = (enum health_type)i;
			return 0;
		}
	}
	return -1;
}

static int set_mode(const char *s, void *dst)
{
	if (strcmp(s, "tcp") == 0)
		*(enum fe_mode *)dst = FE_MODE_TCP;
	else if (strcmp(s, "tls") == 0)
		*(enum fe_mode *)dst = FE_MODE_TLS;
	else
		return -1;
	return 0;
}

static int set_log_format(const char *s, void *dst)
{
	return log_format_parse(s, dst);
}

static int set_log_level(const char *s, void *dst)
{
	return log_level_parse(s, dst);
}

static int set_store(const char *s, void *dst)
{
	__typeof__(((struct gate_conf *)0)->store) *store = dst;

	if (strcmp(s, "file") == 0)
		*store = GATE_STORE_FILE;
	else if (strcmp(s, "kubernetes") == 0)
		*store = GATE_STORE_KUBERNETES;
	else
		return -1;
	return 0;
}

/* Both parsed, and the same endpoint (an IPv4-mapped address is its IPv4 address). */
static bool sockaddr_conf_equal(const struct sockaddr_conf *a, const struct sockaddr_conf *b)
{
	return a->text && b->text && sockaddr_conf_same(a, b);
}

/* ---- copy and free --------------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void tls_conf_copy(struct tls_conf *dst, const struct tls_conf *src)
{
	dst->verify = src->verify;
	dst->ca = dup_or_null(src->ca);
	dst->cert = dup_or_null(src->cert);
	dst->key = dup_or_null(src->key);
	dst->sni = dup_or_null(src->sni);
	dst->ncerts = src->ncerts;
	dst->certs = src->ncerts ? xcalloc(src->ncerts, sizeof(*dst->certs)) : NULL;
	for (size_t i = 0; i < src->ncerts; i++) {
		dst->certs[i].cert = dup_or_null(src->certs[i].cert);
		dst->certs[i].key = dup_or_null(src->certs[i].key);
	}
}

void tls_conf_free(struct tls_conf *t)
{
	xfree(&t->ca);
	xfree(&t->cert);
	xfree(&t->key);
	xfree(&t->sni);
	for (size_t i = 0; i < t->ncerts; i++) {
		xfree(&t->certs[i].cert);
		xfree(&t->certs[i].key);
	}
	xfree(&t->certs);
	t->ncerts = 0;
}

void backend_conf_copy(struct backend_conf *dst, const struct backend_conf *src)
{
	dst->name = dup_or_null(src->name);
	sockaddr_conf_copy(&dst->addr, &src->addr);
	dst->weight = src->weight;
}

void backend_conf_free(struct backend_conf *b)
{
	xfree(&b->name);
	sockaddr_conf_free(&b->addr);
}

void health_conf_copy(struct health_conf *dst, const struct health_conf *src)
{
	*dst = *src;
	dst->path = dup_or_null(src->path);
	dst->token_file = dup_or_null(src->token_file);
	tls_conf_copy(&dst->tls, &src->tls);
}

void health_conf_free(struct health_conf *h)
{
	xfree(&h->path);
	xfree(&h->token_file);
	tls_conf_free(&h->tls);
}

static void addr_ptr_free(struct sockaddr_conf **a)
{
	if (*a) {
		sockaddr_conf_free(*a);
		xfree(a);
	}
}

static void strv_free(char ***v, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		free((*v)[i]);
	xfree(v);
	*n = 0;
}

static void gate_conf_free(struct gate_conf *g)
{
	addr_ptr_free(&g->listen);
	tls_conf_free(&g->tls);
	xfree(&g->tokens_file);
	for (size_t i = 0; i < g->nper_label; i++)
		free(g->per_label[i].label);
	xfree(&g->per_label);
	g->nper_label = 0;
	xfree(&g->quorum_pool);
	strv_free(&g->etcd_endpoints, &g->netcd_endpoints);
	xfree(&g->etcd_ca);
	xfree(&g->etcd_cert);
	xfree(&g->etcd_key);
	xfree(&g->kubeconfig);
	for (size_t i = 0; i < g->nwindows; i++) {
		struct gate_window *w = &g->windows[i];
		strv_free(&w->days, &w->ndays);
		free(w->start);
		free(w->end);
		free(w->tz);
	}
	xfree(&g->windows);
	g->nwindows = 0;
	xfree(&g->alerts_prometheus_url);
	xfree(&g->alerts_filter);
	for (size_t i = 0; i < g->nmembers; i++) {
		free(g->members[i].node);
		free(g->members[i].backend);
		free(g->members[i].etcd);
	}
	xfree(&g->members);
	g->nmembers = 0;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	free(cfg->state_dir);
	free(cfg->admin.socket);
	addr_ptr_free(&cfg->admin.listen);
	tls_conf_free(&cfg->admin.tls);
	free(cfg->admin.token_file);
	addr_ptr_free(&cfg->metrics.listen);
	for (size_t i = 0; i < cfg->nfrontends; i++) {
		struct frontend_conf *fe = &cfg->frontends[i];
		free(fe->name);
		for (size_t j = 0; j < fe->nlisten; j++)
			sockaddr_conf_free(&fe->listen[j]);
		free(fe->listen);
		free(fe->pool);
		tls_conf_free(&fe->tls);
	}
	free(cfg->frontends);
	for (size_t i = 0; i < cfg->npools; i++) {
		struct pool_conf *p = &cfg->pools[i];
		free(p->name);
		for (size_t j = 0; j < p->nbackends; j++)
			backend_conf_free(&p->backends[j]);
		free(p->backends);
		health_conf_free(&p->health);
	}
	free(cfg->pools);
	gate_conf_free(&cfg->gate);
	free(cfg);
}

const struct pool_conf *config_pool(const struct config *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->npools; i++) {
		if (cfg->pools[i].name && strcmp(cfg->pools[i].name, name) == 0)
			return &cfg->pools[i];
	}
	return NULL;
}

/* ---- the schema ------------------------------------------------------------------------ */

enum ftype {
	F_STR,	   /* char *, non-empty; .check may refuse it */
	F_INT,	   /* int within [min, max] */
	F_I64,	   /* int64_t within [min, max] */
	F_OCTAL,   /* int file mode: 0600 or "0600" */
	F_BOOL,	   /* bool */
	F_DUR,	   /* int64_t milliseconds, at least min, at most max unless max is 0 */
	F_ENUM,	   /* .set_enum parses it; .choices lists the words */
	F_ADDR,	   /* struct sockaddr_conf, inline */
	F_ADDRP,   /* struct sockaddr_conf *, optional */
	F_STRLIST, /* char **at off, size_t count at .count_off; a single string is a list of one */
	F_SECTION, /* a mapping described by .sub, for the struct at off */
	F_LIST,	   /* a list of mappings: array pointer at off, count at .count_off */
	F_CUSTOM,  /* .custom does it */
};

#define F_REQUIRED 1u

struct field;
typedef void custom_fn(struct ctx *c, const struct ynode *val, const char *path, void *base);
typedef const char *check_fn(const char *s);

struct field {
	const char *key;
	enum ftype type;
	size_t off;
	unsigned flags;
	int64_t min, max;
	const struct field *sub;   /* F_SECTION, F_LIST */
	size_t count_off;	   /* F_LIST, F_STRLIST */
	size_t elem_size;	   /* F_LIST */
	void (*elem_init)(void *); /* F_LIST: numeric defaults of a new element */
	int (*set_enum)(const char *s, void *dst);
	const char *choices; /* F_ENUM: for the message */
	check_fn *check;     /* F_STR, F_STRLIST: NULL if fine, else why not */
	custom_fn *custom;
};

static void walk_map(struct ctx *c, const struct ynode *map, const char *path,
		     const struct field *fields, void *base);

/* A scalar's text, or NULL after reporting why the node is not one. */
static const char *scalar(struct ctx *c, const struct ynode *v, const char *path, const char *what)
{
	if (v->kind == YNODE_BAD) {
		cerr(c, v, path, "%s", v->value);
		return NULL;
	}
	if (v->kind != YNODE_SCALAR || ynode_is_null(v)) {
		cerr(c, v, path, "expected %s, got %s", what, ynode_kind_name(v));
		return NULL;
	}
	return v->value;
}

static void set_str(struct ctx *c, const struct field *f, const struct ynode *v, const char *path,
		    char **dst)
{
	const char *s = scalar(c, v, path, "a string"), *why;

	if (!s)
		return;
	if (!*s) {
		cerr(c, v, path, "must not be empty");
		return;
	}
	if (f->check && (why = f->check(s))) {
		cerr(c, v, path, "%s", why);
		return;
	}
	free(*dst);
	*dst = xstrdup(s);
}

static void set_int(struct ctx *c, const struct field *f, const struct ynode *v, const char *path,
		    void *dst)
{
	const char *s = scalar(c, v, path, "an integer");
	long long n;
	char *end;

	if (!s)
		return;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (!(isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1]))) ||
	    *end) {
		cerr(c, v, path, "invalid integer '%s' (expected %lld..%lld)", Q(s),
		     (long long)f->min, (long long)f->max);
		return;
	}
	if (errno == ERANGE || n < f->min || n > f->max) {
		cerr(c, v, path, "%s is out of range (%lld..%lld)", Q(s), (long long)f->min,
		     (long long)f->max);
		return;
	}
	if (f->type == F_I64)
		*(int64_t *)dst = n;
	else
		*(int *)dst = (int)n;
}

static void set_octal(struct ctx *c, const struct ynode *v, const char *path, int *dst)
{
	const char *s = scalar(c, v, path, "a file mode"), *p;
	long m = 0;

	if (!s)
		return;
	p = strncmp(s, "0o", 2) == 0 ? s + 2 : s;
	if (!*p || strlen(p) > 4 || strspn(p, "01234567") != strlen(p)) {
		cerr(c, v, path, "invalid file mode '%s' (use octal, e.g. 0600)", Q(s));
		return;
	}
	m = strtol(p, NULL, 8);
	if (m > 0777) {
		cerr(c, v, path, "file mode %s is out of range (0000..0777)", Q(s));
		return;
	}
	*dst = (int)m;
}

static void set_bool(struct ctx *c, const struct ynode *v, const char *path, bool *dst)
{
	static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no",
									       "off"};
	const char *s = scalar(c, v, path, "true or false");

	if (!s)
		return;
	for (int i = 0; i < 3; i++) {
		if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
			*dst = strcasecmp(s, yes[i]) == 0;
			return;
		}
	}
	cerr(c, v, path, "invalid boolean '%s' (use true or false)", Q(s));
}

static void set_dur(struct ctx *c, const struct field *f, const struct ynode *v, const char *path,
		    int64_t *dst)
{
	const char *s = scalar(c, v, path, "a duration");
	char buf[32];
	int64_t ms;

	if (!s)
		return;
	if (duration_parse(s, &ms) < 0) {
		cerr(c, v, path, "invalid duration '%s' (use 500ms, 2s, 5m, 1h)", Q(s));
		return;
	}
	if (ms < f->min) {
		cerr(c, v, path, "%s is too short (at least %s)", Q(s),
		     duration_format(f->min, buf, sizeof(buf)));
		return;
	}
	if (f->max > 0 && ms > f->max) {
		cerr(c, v, path, "%s is too long (at most %s)", Q(s),
		     duration_format(f->max, buf, sizeof(buf)));
		return;
	}
	*dst = ms;
}

/* lbd's word for what an operator coming from HAProxy wrote, or NULL. */
static const char *haproxy_word(const char *key, const char *word)
{
	static const struct {
		const char *key, *haproxy, *lbd;
	} words[] = {
	    {"balance", "roundrobin", "round_robin"},
	    {"balance", "static-rr", "round_robin"},
	    {"balance", "leastconn", "least_conn"},
	    {"balance", "source", "source_hash"},
	    {"type", "tcp-check", "tcp"},
	    {"type", "httpchk", "http or https"},
	};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!strcmp(key, words[i].key) && !strcasecmp(word, words[i].haproxy))
			return words[i].lbd;
	return NULL;
}

static void set_enum(struct ctx *c, const struct field *f, const struct ynode *v, const char *path,
		     void *dst)
{
	const char *s = scalar(c, v, path, f->choices);

	if (s && f->set_enum(s, dst) < 0) {
		const char *lbd_word = haproxy_word(f->key, s);
		if (lbd_word)
			cerr(c, v, path, "invalid %s '%s' (use %s): HAProxy's %s is lbd's %s",
			     f->key, Q(s), f->choices, Q(s), lbd_word);
		else
			cerr(c, v, path, "invalid %s '%s' (use %s)", f->key, Q(s), f->choices);
	}
}

static int set_addr(struct ctx *c, const struct ynode *v, const char *path,
		    struct sockaddr_conf *dst)
{
	const char *s = scalar(c, v, path, "an address (IP:PORT)"), *why = NULL;

	if (!s)
		return -1;
	sockaddr_conf_free(dst);
	if (sockaddr_conf_resolve(s, dst, &why) < 0) {
		cerr(c, v, path, "invalid address '%s': %s", Q(s), why);
		return -1;
	}
	return 0;
}

static void set_addrp(struct ctx *c, const struct ynode *v, const char *path,
		      struct sockaddr_conf **dst)
{
	struct sockaddr_conf a;

	memset(&a, 0, sizeof(a));
	if (set_addr(c, v, path, &a) < 0)
		return;
	addr_ptr_free(dst);
	*dst = xmalloc(sizeof(**dst));
	**dst = a;
}

/* A list of strings, or a single string taken as a list of one. */
static void set_strlist(struct ctx *c, const struct field *f, const struct ynode *v,
			const char *path, char ***arr, size_t *n)
{
	const struct ynode *const *items = (const struct ynode *const *)&v;
	size_t cnt = 1;

	if (ynode_is_null(v))
		return;
	if (v->kind == YNODE_SEQ) {
		items = (const struct ynode *const *)v->kids;
		cnt = v->n;
	}
	strv_free(arr, n);
	*arr = xcalloc(cnt, sizeof(**arr));
	for (size_t i = 0; i < cnt; i++) {
		char *ipath = v->kind == YNODE_SEQ ? xasprintf("%s[%zu]", path, i) : xstrdup(path);
		char *s = NULL;

		set_str(c, f, items[i], ipath, &s);
		if (s)
			(*arr)[(*n)++] = s;
		free(ipath);
	}
}

static void walk_list(struct ctx *c, const struct field *f, const struct ynode *v, const char *path,
		      void *base)
{
	void **arr = (void **)((char *)base + f->off);
	size_t *n = (size_t *)((char *)base + f->count_off);

	if (ynode_is_null(v))
		return;
	if (v->kind != YNODE_SEQ) {
		cerr(c, v, path, "expected a list, got %s", ynode_kind_name(v));
		return;
	}
	/* One element per item, even a broken one, so item i is node v->kids[i]. */
	*arr = xcalloc(v->n, f->elem_size);
	*n = v->n;
	for (size_t i = 0; i < v->n; i++) {
		void *elem = (char *)*arr + i * f->elem_size;
		char *ipath = xasprintf("%s[%zu]", path, i);

		if (f->elem_init)
			f->elem_init(elem);
		walk_map(c, v->kids[i], ipath, f->sub, elem);
		free(ipath);
	}
}

static void set_field(struct ctx *c, const struct field *f, const struct ynode *v, const char *path,
		      void *base)
{
	void *dst = (char *)base + f->off;

	switch (f->type) {
	case F_STR:
		set_str(c, f, v, path, dst);
		break;
	case F_INT:
	case F_I64:
		set_int(c, f, v, path, dst);
		break;
	case F_OCTAL:
		set_octal(c, v, path, dst);
		break;
	case F_BOOL:
		set_bool(c, v, path, dst);
		break;
	case F_DUR:
		set_dur(c, f, v, path, dst);
		break;
	case F_ENUM:
		set_enum(c, f, v, path, dst);
		break;
	case F_ADDR:
		set_addr(c, v, path, dst);
		break;
	case F_ADDRP:
		set_addrp(c, v, path, dst);
		break;
	case F_STRLIST:
		set_strlist(c, f, v, path, dst, (size_t *)((char *)base + f->count_off));
		break;
	case F_SECTION:
		walk_map(c, v, path, f->sub, dst);
		break;
	case F_LIST:
		walk_list(c, f, v, path, base);
		break;
	case F_CUSTOM:
		f->custom(c, v, path, base);
		break;
	}
}

/* Levenshtein distance, capped, for "did you mean". */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[33];

	if (la > 32 || lb > 32)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static void unknown_key(struct ctx *c, const struct ynode *k, const char *path,
			const struct field *fields)
{
	const char *guess = NULL;
	size_t best = 3; /* only suggest near misses */

	for (const struct field *f = fields; f->key; f++) {
		size_t d = edit_distance(k->value, f->key);
		if (d < best) {
			best = d;
			guess = f->key;
		}
	}
	cerr(c, k, "", "unknown key '%s' in %s%s%s%s", Q(k->value), *path ? path : "the top level",
	     guess ? " (did you mean '" : "", guess ? guess : "", guess ? "'?)" : "");
}

/*
 * Applies a table to a mapping: every key must be in the table and given
 * once; a null value ("tls:" with nothing under it) is an empty mapping.
 */
static void walk_map(struct ctx *c, const struct ynode *map, const char *path,
		     const struct field *fields, void *base)
{
	if (map->kind == YNODE_BAD) {
		cerr(c, map, path, "%s", map->value);
		return;
	}
	if (map->kind != YNODE_MAP && !ynode_is_null(map)) {
		cerr(c, map, path, "expected a mapping (key: value), got %s", ynode_kind_name(map));
		return;
	}
	for (size_t i = 0; i + 1 < map->n; i += 2) {
		const struct ynode *k = map->kids[i], *v = map->kids[i + 1];
		const struct field *f;
		bool dup = false;
		char *kpath;

		if (k->kind != YNODE_SCALAR) {
			cerr(c, k, path, "keys must be plain words, not %s", ynode_kind_name(k));
			continue;
		}
		for (size_t j = 0; j < i && !dup; j += 2) {
			const struct ynode *prev = map->kids[j];
			if (prev->kind == YNODE_SCALAR && strcmp(prev->value, k->value) == 0) {
				kpath = path_join(path, k->value);
				cerr(c, k, kpath, "duplicate key '%s' (first at line %d)",
				     Q(k->value), prev->line);
				free(kpath);
				dup = true;
			}
		}
		if (dup)
			continue;
		for (f = fields; f->key && strcmp(f->key, k->value) != 0; f++)
			;
		if (!f->key) {
			unknown_key(c, k, path, fields);
			continue;
		}
		kpath = path_join(path, k->value);
		set_field(c, f, v, kpath, base);
		free(kpath);
	}
	for (const struct field *f = fields; f->key; f++) {
		if ((f->flags & F_REQUIRED) && !ynode_get(map, f->key))
			cerr(c, map, path, "missing required key '%s'", f->key);
	}
}

/* ---- checks for single strings --------------------------------------------------------- */

static const char *check_http_path(const char *s)
{
	return s[0] == '/' ? NULL : "must start with '/'";
}

static const char *check_hhmm(const char *s)
{
	if (strlen(s) != 5 || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
	    s[2] != ':' || !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
		return "expected a time as HH:MM, e.g. 02:30";
	int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
	if (m > 59 || h > 24 || (h == 24 && m != 0))
		return "time out of range (00:00..24:00)";
	return NULL;
}

static const char *const day_names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

static const char *check_day(const char *s)
{
	for (int i = 0; i < 7; i++) {
		if (strcmp(s, day_names[i]) == 0)
			return NULL;
	}
	return "expected a day: mon, tue, wed, thu, fri, sat or sun";
}

static const char *check_url(const char *s)
{
	if (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0)
		return NULL;
	return "expected a URL starting with http:// or https://";
}

static const char *check_label(const char *s)
{
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && !strchr("-_./", *s))
			return "not a valid node label name";
	}
	return NULL;
}

/* ---- tables ---------------------------------------------------------------------------- */

#define END_FIELDS                                                                                 \
	{                                                                                          \
		.key = NULL                                                                        \
	}
#define STR(st, k, m, ...)                                                                         \
	{                                                                                          \
		.key = k, .type = F_STR, .off = offsetof(st, m), __VA_ARGS__                       \
	}
#define INT(st, k, m, lo, hi)                                                                      \
	{                                                                                          \
		.key = k, .type = F_INT, .off = offsetof(st, m), .min = lo, .max = hi              \
	}
#define DUR(st, k, m, lo)                                                                          \
	{                                                                                          \
		.key = k, .type = F_DUR, .off = offsetof(st, m), .min = lo                         \
	}
/* A duration with an upper bound too. */
#define DUR_MAX(st, k, m, lo, hi)                                                                  \
	{                                                                                          \
		.key = k, .type = F_DUR, .off = offsetof(st, m), .min = lo, .max = hi              \
	}
/* The bounds every HTTP listener shares: admin, metrics, gate. */
#define LISTENER_BOUNDS(st)                                                                        \
	INT(st, "max_connections", max_connections, 1, CONF_LISTENER_MAX_CONN_MAX),                \
	    DUR_MAX(st, "request_timeout", request_timeout_ms, CONF_REQUEST_TIMEOUT_MIN_MS,        \
		    CONF_REQUEST_TIMEOUT_MAX_MS)
#define BOOL(st, k, m)                                                                             \
	{                                                                                          \
		.key = k, .type = F_BOOL, .off = offsetof(st, m)                                   \
	}
#define ENUM(st, k, m, fn, ch)                                                                     \
	{                                                                                          \
		.key = k, .type = F_ENUM, .off = offsetof(st, m), .set_enum = fn, .choices = ch    \
	}
#define SECTION(st, k, m, tbl)                                                                     \
	{                                                                                          \
		.key = k, .type = F_SECTION, .off = offsetof(st, m), .sub = tbl                    \
	}
#define ADDRP(st, k, m)                                                                            \
	{                                                                                          \
		.key = k, .type = F_ADDRP, .off = offsetof(st, m)                                  \
	}
#define LIST(st, k, m, cnt, et, tbl, init)                                                         \
	{                                                                                          \
		.key = k, .type = F_LIST, .off = offsetof(st, m), .count_off = offsetof(st, cnt),  \
		.elem_size = sizeof(et), .sub = tbl, .elem_init = init                             \
	}

static const struct field tls_cert_fields[] = {
    STR(struct tls_cert, "cert", cert),
    STR(struct tls_cert, "key", key),
    END_FIELDS,
};

static const struct field tls_fields[] = {
    BOOL(struct tls_conf, "verify", verify),
    STR(struct tls_conf, "ca", ca),
    STR(struct tls_conf, "cert", cert),
    STR(struct tls_conf, "key", key),
    STR(struct tls_conf, "sni", sni),
    LIST(struct tls_conf, "certs", certs, ncerts, struct tls_cert, tls_cert_fields, NULL),
    END_FIELDS,
};

static const struct field health_fields[] = {
    ENUM(struct health_conf, "type", type, set_health_type, "https, http or tcp"),
    STR(struct health_conf, "path", path, .check = check_http_path),
    INT(struct health_conf, "expect_status", expect_status, 100, 599),
    DUR(struct health_conf, "interval", interval_ms, 100),
    DUR(struct health_conf, "timeout", timeout_ms, 1),
    INT(struct health_conf, "rise", rise, 1, 100),
    INT(struct health_conf, "fall", fall, 1, 100),
    SECTION(struct health_conf, "tls", tls, tls_fields),
    STR(struct health_conf, "token_file", token_file),
    END_FIELDS,
};

static const struct field backend_fields[] = {
    STR(struct backend_conf, "name", name, .check = config_name_check, .flags = F_REQUIRED),
    {.key = "address",
     .type = F_ADDR,
     .off = offsetof(struct backend_conf, addr),
     .flags = F_REQUIRED},
    INT(struct backend_conf, "weight", weight, 0, 256),
    END_FIELDS,
};

static void backend_init(void *p)
{
	struct backend_conf *b = p;
	b->weight = 1;
}

static const struct field rebalance_fields[] = {
    BOOL(struct rebalance_conf, "enabled", enabled),
    {.key = "rate",
     .type = F_I64,
     .off = offsetof(struct rebalance_conf, rate),
     .min = 1,
     .max = 100000},
    INT(struct rebalance_conf, "max_share_pct", max_share_pct, 1, 100),
    INT(struct rebalance_conf, "tolerance_pct", tolerance_pct, 1, 1000),
    END_FIELDS,
};

static const struct field pool_fields[] = {
    STR(struct pool_conf, "name", name, .check = config_name_check, .flags = F_REQUIRED),
    ENUM(struct pool_conf, "balance", balance, set_balance,
	 "least_conn, round_robin or source_hash"),
    DUR(struct pool_conf, "drain_timeout", drain_timeout_ms, 0),
    {.key = "drain_close_rate",
     .type = F_I64,
     .off = offsetof(struct pool_conf, drain_close_rate),
     .min = 1,
     .max = 100000},
    LIST(struct pool_conf, "backends", backends, nbackends, struct backend_conf, backend_fields,
	 backend_init),
    SECTION(struct pool_conf, "health", health, health_fields),
    ENUM(struct pool_conf, "close_on_down", close_on_down, set_down_close,
	 "transport, any or never"),
    {.key = "down_close_rate",
     .type = F_I64,
     .off = offsetof(struct pool_conf, down_close_rate),
     .min = 1,
     .max = 100000},
    SECTION(struct pool_conf, "rebalance", rebalance, rebalance_fields),
    END_FIELDS,
};

static void pool_init(void *p)
{
	struct pool_conf *pool = p;

	pool->balance = BAL_LEAST_CONN;
	pool->drain_timeout_ms = 5 * 60 * 1000;
	pool->drain_close_rate = 100;
	pool->close_on_down = DOWN_CLOSE_TRANSPORT;
	pool->down_close_rate = 100;
	pool->rebalance.rate = 10;
	pool->rebalance.max_share_pct = 25;
	pool->rebalance.tolerance_pct = 20;
	pool->health.type = HC_HTTPS;
	pool->health.expect_status = 200;
	pool->health.interval_ms = 2000;
	pool->health.timeout_ms = 1000;
	pool->health.rise = 2;
	pool->health.fall = 3;
	pool->health.tls.verify = true;
}

static custom_fn set_fe_listen;

static const struct field fe_timeout_fields[] = {
    DUR(struct frontend_conf, "connect", connect_timeout_ms, 1),
    DUR(struct frontend_conf, "idle", idle_timeout_ms, 0),
    DUR(struct frontend_conf, "fin", fin_timeout_ms, 0),
    DUR_MAX(struct frontend_conf, "backend_user_timeout", user_timeout_ms, 0, 3600 * 1000),
    END_FIELDS,
};

/* TCP_KEEPIDLE and TCP_KEEPINTVL take whole seconds, 1..32767. */
static const struct field fe_keepalive_fields[] = {
    DUR_MAX(struct frontend_conf, "idle", keepalive_idle_ms, 0, 32767 * 1000),
    DUR_MAX(struct frontend_conf, "interval", keepalive_interval_ms, 1000, 32767 * 1000),
    INT(struct frontend_conf, "count", keepalive_count, 1, 127),
    END_FIELDS,
};

static const struct field frontend_fields[] = {
    STR(struct frontend_conf, "name", name, .flags = F_REQUIRED),
    {.key = "listen", .type = F_CUSTOM, .custom = set_fe_listen, .flags = F_REQUIRED},
    STR(struct frontend_conf, "pool", pool, .flags = F_REQUIRED),
    ENUM(struct frontend_conf, "mode", mode, set_mode, "tcp or tls"),
    INT(struct frontend_conf, "max_connections", max_connections, 1, 1000000),
    /* timeouts: a section whose fields live in the frontend struct itself */
    {.key = "timeouts", .type = F_SECTION, .off = 0, .sub = fe_timeout_fields},
    INT(struct frontend_conf, "retries", retries, 0, 16),
    BOOL(struct frontend_conf, "freebind", freebind),
    SECTION(struct frontend_conf, "tls", tls, tls_fields),
    {.key = "tcp_keepalive", .type = F_SECTION, .off = 0, .sub = fe_keepalive_fields},
    BOOL(struct frontend_conf, "log_connections", log_connections),
    BOOL(struct frontend_conf, "retry_on_empty_response", retry_on_empty_response),
    END_FIELDS,
};

static void frontend_init(void *p)
{
	struct frontend_conf *fe = p;

	fe->mode = FE_MODE_TCP;
	fe->max_connections = 10000;
	fe->connect_timeout_ms = 3000;
	fe->idle_timeout_ms = 3600 * 1000;
	fe->retries = 2;
	fe->tls.verify = true;
	fe->fin_timeout_ms = 30 * 1000;
	fe->user_timeout_ms = 20 * 1000;
	fe->keepalive_idle_ms = 30 * 1000;
	fe->keepalive_interval_ms = 10 * 1000;
	fe->keepalive_count = 3;
	fe->retry_on_empty_response = true;
}

static const struct field admin_fields[] = {
    STR(struct admin_conf, "socket", socket),
    {.key = "socket_mode", .type = F_OCTAL, .off = offsetof(struct admin_conf, socket_mode)},
    ADDRP(struct admin_conf, "listen", listen),
    SECTION(struct admin_conf, "tls", tls, tls_fields),
    STR(struct admin_conf, "token_file", token_file),
    LISTENER_BOUNDS(struct admin_conf),
    END_FIELDS,
};

static const struct field metrics_fields[] = {
    ADDRP(struct metrics_conf, "listen", listen),
    LISTENER_BOUNDS(struct metrics_conf),
    END_FIELDS,
};

static const struct field log_fields[] = {
    ENUM(struct log_conf, "format", format, set_log_format, "text or json"),
    ENUM(struct log_conf, "level", level, set_log_level, "debug, info, warn or error"),
    END_FIELDS,
};

static custom_fn set_per_label, set_members, set_gate;

static const struct field gate_conc_fields[] = {
    INT(struct gate_conf, "masters", conc_masters, 1, 9),
    INT(struct gate_conf, "workers", conc_workers, 1, 1000),
    {.key = "per_label", .type = F_CUSTOM, .custom = set_per_label},
    END_FIELDS,
};

static const struct field gate_etcd_fields[] = {
    {.key = "endpoints",
     .type = F_STRLIST,
     .off = offsetof(struct gate_conf, etcd_endpoints),
     .count_off = offsetof(struct gate_conf, netcd_endpoints),
     .check = check_url},
    STR(struct gate_conf, "ca", etcd_ca),
    STR(struct gate_conf, "cert", etcd_cert),
    STR(struct gate_conf, "key", etcd_key),
    END_FIELDS,
};

static const struct field gate_quorum_fields[] = {
    STR(struct gate_conf, "pool", quorum_pool),
    {.key = "etcd", .type = F_SECTION, .off = 0, .sub = gate_etcd_fields},
    END_FIELDS,
};

static const struct field gate_window_fields[] = {
    {.key = "days",
     .type = F_STRLIST,
     .off = offsetof(struct gate_window, days),
     .count_off = offsetof(struct gate_window, ndays),
     .check = check_day},
    STR(struct gate_window, "start", start, .check = check_hhmm, .flags = F_REQUIRED),
    STR(struct gate_window, "end", end, .check = check_hhmm, .flags = F_REQUIRED),
    STR(struct gate_window, "tz", tz),
    END_FIELDS,
};

static const struct field gate_alerts_fields[] = {
    STR(struct gate_conf, "prometheus_url", alerts_prometheus_url, .check = check_url),
    STR(struct gate_conf, "filter", alerts_filter),
    END_FIELDS,
};

static const struct field gate_fields[] = {
    ADDRP(struct gate_conf, "listen", listen),
    SECTION(struct gate_conf, "tls", tls, tls_fields),
    STR(struct gate_conf, "tokens_file", tokens_file),
    LISTENER_BOUNDS(struct gate_conf),
    ENUM(struct gate_conf, "store", store, set_store, "file or kubernetes"),
    {.key = "concurrency", .type = F_SECTION, .off = 0, .sub = gate_conc_fields},
    {.key = "quorum", .type = F_SECTION, .off = 0, .sub = gate_quorum_fields},
    STR(struct gate_conf, "kubeconfig", kubeconfig),
    BOOL(struct gate_conf, "require_all_nodes_ready", require_all_nodes_ready),
    LIST(struct gate_conf, "windows", windows, nwindows, struct gate_window, gate_window_fields,
	 NULL),
    {.key = "alerts", .type = F_SECTION, .off = 0, .sub = gate_alerts_fields},
    DUR(struct gate_conf, "lease_ttl", lease_ttl_ms, 1000),
    DUR(struct gate_conf, "soak", soak_ms, 0),
    {.key = "members", .type = F_CUSTOM, .custom = set_members},
    END_FIELDS,
};

static const struct field top_fields[] = {
    STR(struct config, "state_dir", state_dir),
    INT(struct config, "threads", threads, 0, 256),
    BOOL(struct config, "freebind", freebind),
    DUR(struct config, "shutdown_grace", shutdown_grace_ms, 0),
    SECTION(struct config, "admin", admin, admin_fields),
    SECTION(struct config, "metrics", metrics, metrics_fields),
    SECTION(struct config, "log", log, log_fields),
    LIST(struct config, "frontends", frontends, nfrontends, struct frontend_conf, frontend_fields,
	 frontend_init),
    LIST(struct config, "pools", pools, npools, struct pool_conf, pool_fields, pool_init),
    {.key = "gate", .type = F_CUSTOM, .custom = set_gate},
    END_FIELDS,
};

/* ---- custom setters -------------------------------------------------------------------- */

/* frontends[].listen: one address or a list of them, at least one. */
/* Can this host open an IPv6 socket at all (a kernel booted with
 * ipv6.disable=1 cannot)? */
static bool have_ipv6(void)
{
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/*
 * ":PORT" means every address, IPv6 too: each one gets a "[::]:PORT" twin
 * (same text, so logs and the API show what was written) unless the list
 * names that already, or the host has no IPv6. fe->listen has room for it.
 */
static void add_ipv6_twins(struct frontend_conf *fe)
{
	for (size_t i = 0; i < fe->nlisten; i++) {
		struct sockaddr_conf twin;
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&twin.ss;
		bool have = false;

		if (fe->listen[i].text[0] != ':' || !have_ipv6())
			continue;
		memset(&twin, 0, sizeof(twin));
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_any;
		sin6->sin6_port = htons((in_port_t)sockaddr_conf_port(&fe->listen[i]));
		twin.len = sizeof(*sin6);
		for (size_t j = 0; j < fe->nlisten; j++)
			have = have || sockaddr_conf_same(&fe->listen[j], &twin);
		if (have)
			continue;
		/* right after its original: the API lists a text once, logs pair up */
		twin.text = xstrdup(fe->listen[i].text);
		memmove(&fe->listen[i + 2], &fe->listen[i + 1],
			(fe->nlisten - i - 1) * sizeof(*fe->listen));
		fe->listen[++i] = twin;
		fe->nlisten++;
	}
}

static void set_fe_listen(struct ctx *c, const struct ynode *v, const char *path, void *base)
{
	struct frontend_conf *fe = base;
	const struct ynode *const *items = (const struct ynode *const *)&v;
	size_t cnt = 1;

	if (v->kind == YNODE_SEQ) {
		items = (const struct ynode *const *)v->kids;
		cnt = v->n;
	}
	if (cnt == 0 || ynode_is_null(v)) {
		cerr(c, v, path, "at least one listen address is required");
		return;
	}
	fe->listen = xcalloc(cnt * 2, sizeof(*fe->listen));
	for (size_t i = 0; i < cnt; i++) {
		char *ipath = v->kind == YNODE_SEQ ? xasprintf("%s[%zu]", path, i) : xstrdup(path);

		if (set_addr(c, items[i], ipath, &fe->listen[fe->nlisten]) == 0)
			fe->nlisten++;
		free(ipath);
	}
	add_ipv6_twins(fe);
}

/* Is v a mapping whose keys are the user's (labels, node names)? Null: an empty one. */
static bool user_map(struct ctx *c, const struct ynode *v, const char *path)
{
	if (ynode_is_null(v))
		return false;
	if (v->kind != YNODE_MAP) {
		cerr(c, v, path, "expected a mapping, got %s", ynode_kind_name(v));
		return false;
	}
	return true;
}

/* A user key: a non-empty scalar not seen before in the same mapping. */
static const char *user_key(struct ctx *c, const struct ynode *map, size_t i, const char *path)
{
	const struct ynode *k = map->kids[i];

	if (k->kind != YNODE_SCALAR || !*k->value) {
		cerr(c, k, path, "keys must be non-empty words");
		return NULL;
	}
	for (size_t j = 0; j < i; j += 2) {
		const struct ynode *prev = map->kids[j];
		if (prev->kind == YNODE_SCALAR && strcmp(prev->value, k->value) == 0) {
			cerr(c, k, path, "duplicate key '%s' (first at line %d)", Q(k->value),
			     prev->line);
			return NULL;
		}
	}
	return k->value;
}

static void set_per_label(struct ctx *c, const struct ynode *v, const char *path, void *base)
{
	static const struct field cap = {.key = "per_label", .type = F_INT, .min = 1, .max = 1000};
	struct gate_conf *g = base;

	if (!user_map(c, v, path))
		return;
	g->per_label = xcalloc(v->n / 2, sizeof(*g->per_label));
	for (size_t i = 0; i + 1 < v->n; i += 2) {
		const char *label = user_key(c, v, i, path), *why;
		struct gate_label_cap *lc = &g->per_label[g->nper_label];
		char *kpath;

		if (!label)
			continue;
		kpath = path_join(path, label);
		if ((why = check_label(label))) {
			cerr(c, v->kids[i], kpath, "%s", why);
		} else {
			lc->max = 0;
			set_int(c, &cap, v->kids[i + 1], kpath, &lc->max);
			if (lc->max > 0) {
				lc->label = xstrdup(label);
				g->nper_label++;
			}
		}
		free(kpath);
	}
}

static const struct field member_fields[] = {
    STR(struct gate_member, "backend", backend),
    STR(struct gate_member, "etcd", etcd),
    END_FIELDS,
};

static void set_members(struct ctx *c, const struct ynode *v, const char *path, void *base)
{
	struct gate_conf *g = base;

	if (!user_map(c, v, path))
		return;
	g->members = xcalloc(v->n / 2, sizeof(*g->members));
	for (size_t i = 0; i + 1 < v->n; i += 2) {
		const char *node = user_key(c, v, i, path);
		struct gate_member *m = &g->members[g->nmembers];
		char *kpath;

		if (!node)
			continue;
		kpath = path_join(path, node);
		m->node = xstrdup(node);
		g->nmembers++;
		walk_map(c, v->kids[i + 1], kpath, member_fields, m);
		free(kpath);
	}
}

/* gate: its presence turns the gate on, even with nothing under it. */
static void set_gate(struct ctx *c, const struct ynode *v, const char *path, void *base)
{
	struct config *cfg = base;

	cfg->gate.enabled = true;
	walk_map(c, v, path, gate_fields, &cfg->gate);
}

/* ---- defaults and cross-checks --------------------------------------------------------- */

static void config_init(struct config *cfg)
{
	cfg->shutdown_grace_ms = 30 * 1000;
	cfg->admin.socket_mode = 0600;
	cfg->admin.tls.verify = true;
	cfg->admin.max_connections = CONF_LISTENER_MAX_CONN_DEFAULT;
	cfg->admin.request_timeout_ms = CONF_REQUEST_TIMEOUT_DEFAULT_MS;
	cfg->metrics.max_connections = CONF_LISTENER_MAX_CONN_DEFAULT;
	cfg->metrics.request_timeout_ms = CONF_REQUEST_TIMEOUT_DEFAULT_MS;
	cfg->log.format = LOG_FMT_TEXT;
	cfg->log.level = LOG_LVL_INFO;
	cfg->gate.tls.verify = true;
	cfg->gate.max_connections = CONF_LISTENER_MAX_CONN_DEFAULT;
	cfg->gate.request_timeout_ms = CONF_REQUEST_TIMEOUT_DEFAULT_MS;
	cfg->gate.store = GATE_STORE_FILE;
	cfg->gate.conc_masters = 1;
	cfg->gate.conc_workers = 1;
	cfg->gate.lease_ttl_ms = 30 * 60 * 1000;
}

static void default_str(char **s, const char *def)
{
	if (!*s)
		*s = xstrdup(def);
}

/* String defaults, and those that depend on other keys, once the walk is done. */
static void apply_defaults(struct config *cfg, const struct ynode *root)
{
	/* The gate sees the nodes: it wants them all Ready unless told not to,
	 * as the "control plane Ready >= 2" sentinels it replaces did. */
	if (cfg->gate.kubeconfig && !ynode_get(ynode_get(root, "gate"), "require_all_nodes_ready"))
		cfg->gate.require_all_nodes_ready = true;
	default_str(&cfg->state_dir, DEFAULT_STATE_DIR);
	default_str(&cfg->admin.socket, DEFAULT_ADMIN_SOCKET);
	for (size_t i = 0; i < cfg->npools; i++)
		default_str(&cfg->pools[i].health.path, DEFAULT_HEALTH_PATH);
	for (size_t i = 0; i < cfg->gate.nwindows; i++) {
		struct gate_window *w = &cfg->gate.windows[i];
		default_str(&w->tz, DEFAULT_TZ);
		if (!w->days) {
			/* No days given: every day. */
			w->days = xcalloc(7, sizeof(*w->days));
			for (int d = 0; d < 7; d++)
				w->days[d] = xstrdup(day_names[d]);
			w->ndays = 7;
		}
	}
}

/* The node for key in map, or the closest node that exists, for an error's place. */
static const struct ynode *near(const struct ynode *map, const char *key, const struct ynode *dflt)
{
	const struct ynode *v = ynode_get(map, key);
	return v ? v : map ? map : dflt;
}

/* The i-th item of the list under key, if the file has one. */
static const struct ynode *item(const struct ynode *map, const char *key, size_t i)
{
	const struct ynode *l = ynode_get(map, key);
	return l && l->kind == YNODE_SEQ && i < l->n ? l->kids[i] : NULL;
}

static void check_tls_pair(struct ctx *c, const struct tls_conf *t, const struct ynode *parent,
			   const char *path)
{
	const struct ynode *tn = ynode_get(parent, "tls");

	if (!t->cert != !t->key)
		cerr(c, near(tn, t->cert ? "cert" : "key", parent), path,
		     "tls.cert and tls.key go together: set both or neither");
	for (size_t i = 0; i < t->ncerts; i++) {
		if (t->certs[i].cert && t->certs[i].key)
			continue;
		const struct ynode *en = item(tn, "certs", i);
		cerr(c, en ? en : near(tn, "certs", parent), path,
		     "tls.certs[%zu] needs both cert and key", i);
	}
	if (t->ncerts > 0 && !t->cert)
		cerr(c, near(tn, "certs", parent), path,
		     "tls.certs adds certificates to tls.cert and tls.key: set those too (the "
		     "default for clients without a matching SNI)");
}

static void validate_pools(struct ctx *c, const struct ynode *root)
{
	const struct config *cfg = c->cfg;

	for (size_t i = 0; i < cfg->npools; i++) {
		const struct pool_conf *p = &cfg->pools[i];
		const struct ynode *pn = item(root, "pools", i), *hn = ynode_get(pn, "health");
		char path[64];

		snprintf(path, sizeof(path), "pools[%zu]", i);
		for (size_t j = 0; p->name && j < i; j++) {
			if (cfg->pools[j].name && strcmp(cfg->pools[j].name, p->name) == 0) {
				cerr(c, near(pn, "name", root), path,
				     "duplicate pool name '%s' (first at line %d)", Q(p->name),
				     near(item(root, "pools", j), "name", root)->line);
				break;
			}
		}
		for (size_t b = 0; b < p->nbackends; b++) {
			const struct backend_conf *be = &p->backends[b];
			const struct ynode *bn = item(pn, "backends", b);
			char bpath[96];

			snprintf(bpath, sizeof(bpath), "%s.backends[%zu]", path, b);
			for (size_t j = 0; j < b; j++) {
				const struct backend_conf *o = &p->backends[j];
				const struct ynode *on = item(pn, "backends", j);

				if (be->name && o->name && strcmp(be->name, o->name) == 0)
					cerr(c, near(bn, "name", pn), bpath,
					     "duplicate backend name '%s' in pool '%s' (first at "
					     "line %d)",
					     Q(be->name), p->name ? Q(p->name) : "?",
					     near(on, "name", pn)->line);
				if (sockaddr_conf_equal(&be->addr, &o->addr))
					cerr(c, near(bn, "address", pn), bpath,
					     "backend address '%s' is already used by '%s' (line "
					     "%d)",
					     Q(be->addr.text), o->name ? Q(o->name) : "?",
					     near(on, "address", pn)->line);
			}
		}
		{
			char *hpath = xasprintf("%s.health", path);
			check_tls_pair(c, &p->health.tls, hn, hpath);
			if (p->health.token_file && p->health.type == HC_TCP)
				cerr(c, near(hn, "token_file", pn ? pn : root), hpath,
				     "token_file needs an http or https check (a tcp check sends "
				     "no request)");
			free(hpath);
		}
		/* With source_hash a closed client hashes back to the same backend:
		 * rounds would close connections for ever and move none. */
		if (p->rebalance.enabled && p->balance == BAL_SOURCE_HASH)
			cerr(c, near(pn, "rebalance", root), path,
			     "rebalance needs balance least_conn or round_robin (with source_hash "
			     "a closed client comes back to the same backend)");
	}
}

static void validate_frontends(struct ctx *c, const struct ynode *root)
{
	const struct config *cfg = c->cfg;

	if (cfg->nfrontends == 0)
		cerr(c, near(root, "frontends", root), "frontends",
		     "at least one frontend is required");
	for (size_t i = 0; i < cfg->nfrontends; i++) {
		const struct frontend_conf *fe = &cfg->frontends[i];
		const struct ynode *fn = item(root, "frontends", i);
		char path[64], *kpath;

		/* The top-level freebind is the default of every frontend. */
		if (fn && !ynode_get(fn, "freebind"))
			cfg->frontends[i].freebind = cfg->freebind;

		snprintf(path, sizeof(path), "frontends[%zu]", i);
		for (size_t j = 0; fe->name && j < i; j++) {
			if (cfg->frontends[j].name &&
			    strcmp(cfg->frontends[j].name, fe->name) == 0) {
				cerr(c, near(fn, "name", root), path,
				     "duplicate frontend name '%s' (first at line %d)", Q(fe->name),
				     near(item(root, "frontends", j), "name", root)->line);
				break;
			}
		}
		if (fe->pool && !config_pool(cfg, fe->pool)) {
			kpath = xasprintf("%s.pool", path);
			cerr(c, near(fn, "pool", root), kpath, "no pool named '%s'", Q(fe->pool));
			free(kpath);
		}
		if (fe->mode == FE_MODE_TLS && (!fe->tls.cert || !fe->tls.key)) {
			kpath = xasprintf("%s.mode", path);
			cerr(c, near(fn, "mode", root), kpath,
			     "mode tls requires tls.cert and tls.key");
			free(kpath);
		} else {
			check_tls_pair(c, &fe->tls, fn, path);
		}
		/* The same address twice would fail at bind(); say so now, with both places. */
		for (size_t a = 0; a < fe->nlisten; a++) {
			for (size_t j = 0; j <= i; j++) {
				const struct frontend_conf *o = &cfg->frontends[j];
				size_t lim = j == i ? a : o->nlisten;
				for (size_t b = 0; b < lim; b++) {
					if (!sockaddr_conf_equal(&fe->listen[a], &o->listen[b]))
						continue;
					kpath = xasprintf("%s.listen", path);
					cerr(c, near(fn, "listen", root), kpath,
					     "address '%s' is also the listen address of frontend "
					     "'%s'",
					     Q(fe->listen[a].text), o->name ? Q(o->name) : "?");
					free(kpath);
					goto next_addr;
				}
			}
		next_addr:;
		}
	}
}

static void validate_gate(struct ctx *c, const struct ynode *root)
{
	const struct gate_conf *g = &c->cfg->gate;
	const struct ynode *gn = ynode_get(root, "gate");
	const struct pool_conf *qp = NULL;

	if (!g->enabled)
		return;
	check_tls_pair(c, &g->tls, gn, "gate");
	for (size_t i = 0; i < g->nwindows; i++) {
		const struct ynode *wn = item(gn, "windows", i);
		const struct ynode *dn = ynode_get(wn, "days");

		/* An explicit empty list is more likely a mistake than "never". */
		if (dn && dn->kind == YNODE_SEQ && dn->n == 0) {
			char *kpath = xasprintf("gate.windows[%zu].days", i);
			cerr(c, dn, kpath, "no days given; leave 'days' out to mean every day");
			free(kpath);
		}
	}
	if (g->quorum_pool) {
		const struct ynode *qn = ynode_get(gn, "quorum");
		qp = config_pool(c->cfg, g->quorum_pool);
		if (!qp)
			cerr(c, near(qn, "pool", gn), "gate.quorum.pool", "no pool named '%s'",
			     Q(g->quorum_pool));
	}
	/* members[].backend only means something against the quorum pool. */
	for (size_t i = 0; qp && i < g->nmembers; i++) {
		const struct gate_member *m = &g->members[i];
		bool found = false;

		if (!m->backend)
			continue;
		for (size_t b = 0; b < qp->nbackends && !found; b++)
			found =
			    qp->backends[b].name && strcmp(qp->backends[b].name, m->backend) == 0;
		if (!found) {
			char *kpath = xasprintf("gate.members.%s.backend", m->node);
			const struct ynode *mn = ynode_get(ynode_get(gn, "members"), m->node);
			cerr(c, near(mn, "backend", gn), kpath,
			     "pool '%s' has no backend named '%s'", Q(qp->name), Q(m->backend));
			free(kpath);
		}
	}
}

/*
 * A check's timeout defaults to the smaller of 1s and its interval. A longer
 * one given is fine, as in HAProxy: a probe never overlaps the next, which
 * starts when it ends (lbd/check.c).
 */
static void health_defaults(struct config *cfg, const struct ynode *root)
{
	for (size_t i = 0; i < cfg->npools; i++) {
		struct health_conf *h = &cfg->pools[i].health;
		const struct ynode *hn = ynode_get(item(root, "pools", i), "health");

		if (!ynode_get(hn, "timeout") && h->timeout_ms > h->interval_ms)
			h->timeout_ms = h->interval_ms;
	}
}

static void validate(struct ctx *c, const struct ynode *root)
{
	const struct config *cfg = c->cfg;
	const struct ynode *an = ynode_get(root, "admin");

	health_defaults(c->cfg, root);
	validate_pools(c, root);
	validate_frontends(c, root);
	if (cfg->admin.listen && !cfg->admin.token_file)
		cerr(c, near(an, "listen", root), "admin.listen",
		     "a TCP admin listener needs admin.token_file (no token, no access)");
	check_tls_pair(c, &cfg->admin.tls, an, "admin");
	validate_gate(c, root);
}

/* ---- entry points ---------------------------------------------------------------------- */

struct config *config_load_string(const char *name, const char *yaml, size_t len,
				  struct config_errors *errs)
{
	struct ctx c = {.file = name ? name : "<config>"};
	struct ytree_error yerr;
	struct ynode *root = NULL;
	struct config *cfg;

	if (errs) {
		errs->msgs = NULL;
		errs->n = 0;
	}
	if (!yaml)
		len = 0;
	cfg = xcalloc(1, sizeof(*cfg));
	cfg->path = xstrdup(c.file);
	config_init(cfg);
	c.cfg = cfg;
	if (ytree_parse(yaml ? yaml : "", len, &root, &yerr) < 0) {
		add_error(&c, yerr.line, yerr.col,
			  xasprintf("%s:%d:%d: %s", c.file, yerr.line, yerr.col, yerr.msg));
		free(yerr.msg);
	} else if (!root || ynode_is_null(root)) {
		cerr(&c, NULL, "", "the file is empty (it needs at least frontends and pools)");
	} else if (root->kind != YNODE_MAP) {
		cerr(&c, root, "", "the top level must be a mapping (key: value), got %s",
		     ynode_kind_name(root));
	} else {
		c.root = root;
		walk_map(&c, root, "", top_fields, cfg);
		apply_defaults(cfg, root);
		validate(&c, root);
	}
	ytree_free(root);
	if (c.nerrs) {
		errors_finish(&c, errs);
		config_free(cfg);
		return NULL;
	}
	xfree(&c.errs);
	return cfg;
}

struct config *config_load(const char *path, struct config_errors *errs)
{
	struct config *cfg;
	size_t len = 0, cap = 4096;
	char *buf;
	FILE *f;

	if (errs) {
		errs->msgs = NULL;
		errs->n = 0;
	}
	f = fopen(path, "r");
	if (!f) {
		if (errs) {
			errs->msgs = xcalloc(1, sizeof(*errs->msgs));
			errs->msgs[0] = xasprintf("%s: cannot open: %s", path, strerror(errno));
			errs->n = 1;
		}
		return NULL;
	}
	buf = xmalloc(cap);
	for (;;) {
		size_t got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (len > MAX_CONFIG_BYTES || got == 0)
			break;
		if (len == cap) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
	}
	if (ferror(f) || len > MAX_CONFIG_BYTES) {
		if (errs) {
			errs->msgs = xcalloc(1, sizeof(*errs->msgs));
			errs->msgs[0] =
			    ferror(f)
				? xasprintf("%s: cannot read: %s", path, strerror(errno))
				: xasprintf("%s: larger than %u bytes", path, MAX_CONFIG_BYTES);
			errs->n = 1;
		}
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	cfg = config_load_string(path, buf, len, errs);
	free(buf);
	return cfg;
}

/* ---- the table, for the docs ------------------------------------------------------------ */

static void dump_fields(FILE *f, const char *prefix, const struct field *fields);

static void dump_line(FILE *f, const char *path, const char *type)
{
	fprintf(f, "%s\t%s\n", path, type);
}

static void dump_field(FILE *f, const char *path, const struct field *fd)
{
	char type[160];

	switch (fd->type) {
	case F_STR:
		dump_line(f, path, "string");
		break;
	case F_INT:
	case F_I64:
		snprintf(type, sizeof(type), "integer %lld..%lld", (long long)fd->min,
			 (long long)fd->max);
		dump_line(f, path, type);
		break;
	case F_OCTAL:
		dump_line(f, path, "file mode");
		break;
	case F_BOOL:
		dump_line(f, path, "boolean");
		break;
	case F_DUR:
		dump_line(f, path, "duration");
		break;
	case F_ENUM:
		snprintf(type, sizeof(type), "one of %s", fd->choices);
		dump_line(f, path, type);
		break;
	case F_ADDR:
	case F_ADDRP:
		dump_line(f, path, "address");
		break;
	case F_STRLIST:
		dump_line(f, path, "list of strings");
		break;
	case F_SECTION:
		dump_fields(f, path, fd->sub);
		break;
	case F_LIST: {
		char *p = xasprintf("%s[]", path);
		dump_fields(f, p, fd->sub);
		free(p);
		break;
	}
	case F_CUSTOM:
		if (fd->custom == set_gate) {
			dump_fields(f, path, gate_fields);
		} else if (fd->custom == set_members) {
			char *p = xasprintf("%s.NODE", path);
			dump_fields(f, p, member_fields);
			free(p);
		} else if (fd->custom == set_per_label) {
			char *p = xasprintf("%s.LABEL", path);
			dump_line(f, p, "integer 1..1000");
			free(p);
		} else if (fd->custom == set_fe_listen) {
			dump_line(f, path, "address or list of addresses");
		} else {
			dump_line(f, path, "custom");
		}
		break;
	}
}

static void dump_fields(FILE *f, const char *prefix, const struct field *fields)
{
	for (const struct field *fd = fields; fd->key; fd++) {
		char *path = *prefix ? xasprintf("%s.%s", prefix, fd->key) : xstrdup(fd->key);
		dump_field(f, path, fd);
		free(path);
	}
}

void config_dump_keys(FILE *f)
{
	dump_fields(f, "", top_fields);
}
