/*
 * admin.c - the admin API server (see admin.h) and its pool routes.
 *
 * The server half: listeners, a guard per connection that bounds the time a
 * request may take to arrive, bearer tokens, routing, JSON answers. The
 * route half: status, pools, backend edits, reload, metrics. Edits go
 * through server_backend_*(), which validate, persist and only then apply.
 */
#include "lbd/admin.h"
#include "common/tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/httpd.h"
#include "common/sock.h"
#include "common/text.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "lbd/drain.h"
#include "lbd/handover.h"
#include "lbd/metrics.h"
#include "lbd/server.h"
#include "lbd/statuspage.h"

#define ADMIN_MAX_TOKEN 4096

struct route {
	unsigned methods;
	char *pattern;
	admin_handler fn;
	void *arg;
};

/* One listening HTTP server: the unix socket, the TCP admin listener, or
 * the metrics listener. */
struct lst {
	struct admin *a;
	int kind;	  /* enum handover_kind */
	const char *what; /* for logs */
	struct httpd *h;
	bool need_token;
	bool metrics_only;
};

struct admin {
	struct server *s;
	struct event_base *base;
	struct lst *lst[3];
	size_t nlst;
	struct route *routes;
	size_t nroutes;
	char *socket_path;
	struct log_limit token_log; /* a line per 10 s for a bad token file */
	struct {
		admin_status_fn fn;
		void *arg;
	} status_hooks[4];
	size_t nstatus_hooks;
	bool keep_socket;	     /* handed over: the socket file is the new lbd's */
	admin_metrics_fn metrics_fn; /* more families for /metrics (the gate's) */
	void *metrics_arg;
};

struct admin_req {
	struct admin *a;
	struct lst *l;
	struct evhttp_request *req;
	enum admin_method method;
	char *params[ADMIN_MAX_PARAMS];
	size_t nparams;
	struct evkeyvalq query;
	bool answered;
	bool deferred; /* a heap copy (admin_defer): freed once answered */
};

/* ---- answers -------------------------------------------------------------------------- */

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Payload Too Large";
	case 422:
		return "Unprocessable Entity";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	case 507:
		return "Insufficient Storage";
	}
	return "Status";
}

void admin_reply_text(struct admin_req *r, int status, const char *ctype, const char *body,
		      size_t len)
{
	struct evbuffer *buf = evbuffer_new();
	struct evkeyvalq *out = evhttp_request_get_output_headers(r->req);

	BUG_ON(r->answered);
	r->answered = true;
	evhttp_add_header(out, "Content-Type", ctype);
	evhttp_add_header(out, "Connection", "close");
	evhttp_add_header(out, "Cache-Control", "no-store");
	evbuffer_add(buf, body, len);
	/* A deferred request whose client has gone: evhttp frees it here. */
	evhttp_send_reply(r->req, status, reason_phrase(status), buf);
	evbuffer_free(buf);
	if (r->deferred) {
		for (size_t i = 0; i < r->nparams; i++)
			free(r->params[i]);
		free(r);
	}
}

struct admin_req *admin_defer(struct admin_req *r)
{
	struct admin_req *d = xmalloc(sizeof(*d));

	BUG_ON(r->answered);
	*d = *r;
	d->deferred = true;
	TAILQ_INIT(&d->query); /* the query stays with r, freed by on_request */
	r->nparams = 0;	       /* the params move to d */
	r->answered = true;    /* r's part is done: d answers */
	return d;
}

size_t admin_listen_fds(const struct admin *a, struct admin_fd *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < a->nlst && n < max; i++)
		if (httpd_fd(a->lst[i]->h) >= 0)
			out[n++] = (struct admin_fd){a->lst[i]->kind, httpd_fd(a->lst[i]->h)};
	return n;
}

void admin_pause(struct admin *a)
{
	for (size_t i = 0; i < a->nlst; i++)
		httpd_pause(a->lst[i]->h);
}

void admin_resume(struct admin *a)
{
	for (size_t i = 0; i < a->nlst; i++)
		httpd_resume(a->lst[i]->h);
}

void admin_handed_over(struct admin *a)
{
	admin_pause(a);
	a->keep_socket = true;
}

void admin_on_metrics(struct admin *a, admin_metrics_fn fn, void *arg)
{
	a->metrics_fn = fn;
	a->metrics_arg = arg;
}

void admin_on_status(struct admin *a, admin_status_fn fn, void *arg)
{
	BUG_ON(a->nstatus_hooks == sizeof(a->status_hooks) / sizeof(a->status_hooks[0]));
	a->status_hooks[a->nstatus_hooks].fn = fn;
	a->status_hooks[a->nstatus_hooks++].arg = arg;
}

void admin_reply_json(struct admin_req *r, int status, json_t *body)
{
	/* body is NULL when a json_pack above failed (text that is not UTF-8
	 * slipped through): a fixed answer, never an exit. */
	char *s =
	    body ? json_dumps(body, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12))
		 : NULL;

	if (!s) {
		static const char fail[] = "{\"error\": \"internal error: the answer could not be "
					   "encoded as JSON\"}\n";
		log_warn("admin: an answer (status %d) could not be encoded as JSON", status);
		admin_reply_text(r, 500, "application/json", fail, sizeof(fail) - 1);
		json_decref(body);
		return;
	}
	size_t len = strlen(s);
	s = xrealloc(s, len + 2);
	s[len++] = '\n';
	admin_reply_text(r, status, "application/json", s, len);
	free(s);
	json_decref(body);
}

void admin_error(struct admin_req *r, int status, const char *fmt, ...)
{
	va_list ap;
	char msg[1024], clean[1024];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* msg may quote the request (a path from any client): JSON wants UTF-8. */
	text_clean_buf(clean, sizeof(clean), msg, strlen(msg));
	admin_reply_json(r, status, json_pack("{s:s}", "error", clean));
}

struct server *admin_server(const struct admin_req *r)
{
	return r->a->s;
}

enum admin_method admin_method(const struct admin_req *r)
{
	return r->method;
}

const char *admin_param(const struct admin_req *r, size_t i)
{
	return i < r->nparams ? r->params[i] : NULL;
}

const char *admin_query(const struct admin_req *r, const char *key)
{
	return evhttp_find_header(&r->query, key);
}

json_t *admin_body(struct admin_req *r, bool *bad)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;

	*bad = false;
	if (len == 0)
		return NULL;
	json_t *j =
	    json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		*bad = true;
		admin_error(r, 400, "invalid JSON body at line %d, column %d: %s", jerr.line,
			    jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		*bad = true;
		json_decref(j);
		admin_error(r, 400, "the body must be a JSON object");
		return NULL;
	}
	return j;
}

bool admin_only_keys(struct admin_req *r, json_t *obj, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v)
	{
		bool ok = false;
		for (const char *const *k = allowed; *k; k++)
			ok |= strcmp(*k, key) == 0;
		if (!ok) {
			char list[256] = "";
			for (const char *const *k = allowed; *k; k++)
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
					 k == allowed ? "" : ", ", *k);
			admin_error(r, 400, "unknown field '%s' (allowed: %s)", key, list);
			return false;
		}
	}
	return true;
}

/* ---- routing -------------------------------------------------------------------------- */

void admin_route(struct admin *a, unsigned methods, const char *pattern, admin_handler fn,
		 void *arg)
{
	a->routes = xrealloc(a->routes, (a->nroutes + 1) * sizeof(*a->routes));
	a->routes[a->nroutes++] = (struct route){methods, xstrdup(pattern), fn, arg};
}

/* Matches path against pattern; fills r->params (decoded) on a match. */
static bool route_match(const char *pattern, const char *path, struct admin_req *r)
{
	const char *p = pattern, *s = path;
	size_t np = 0;
	char *params[ADMIN_MAX_PARAMS];
	bool ok = true;

	while (*p && *s) {
		if (*p != '/' || *s != '/') {
			ok = false;
			break;
		}
		p++, s++;
		size_t pl = strcspn(p, "/"), sl = strcspn(s, "/");
		if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
			size_t outlen = 0;
			char *raw = xstrndup(s, sl);
			char *dec = sl > 0 ? evhttp_uridecode(raw, 0, &outlen) : NULL;
			free(raw);
			/* A name with control bytes or that is not UTF-8 names
			 * nothing here: no match, 404. */
			if (!dec || outlen != strlen(dec) || outlen == 0 || !text_is_clean(dec) ||
			    np == ADMIN_MAX_PARAMS) {
				free(dec);
				ok = false;
				break;
			}
			params[np++] = dec;
		} else if (pl != sl || memcmp(p, s, pl) != 0) {
			ok = false;
			break;
		}
		p += pl, s += sl;
	}
	ok = ok && !*p && !*s;
	if (!ok || !r) {
		for (size_t i = 0; i < np; i++)
			free(params[i]);
		return ok;
	}
	for (size_t i = 0; i < np; i++)
		r->params[i] = params[i];
	r->nparams = np;
	return true;
}

static void allow_header(unsigned m, char *buf, size_t len)
{
	static const char *const names[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};

	buf[0] = '\0';
	for (int i = 0; i < 5; i++)
		if (m & (1u << i))
			snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", buf[0] ? ", " : "",
				 names[i]);
}

static enum admin_method map_method(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET:
		return ADMIN_GET;
	case EVHTTP_REQ_POST:
		return ADMIN_POST;
	case EVHTTP_REQ_PUT:
		return ADMIN_PUT;
	case EVHTTP_REQ_PATCH:
		return ADMIN_PATCH;
	case EVHTTP_REQ_DELETE:
		return ADMIN_DELETE;
	default:
		return 0;
	}
}

/* ---- tokens --------------------------------------------------------------------------- */

static bool read_token(struct admin *a, unsigned char digest[SHA256_DIGEST_LENGTH])
{
	const char *path = a->s->cfg->admin.token_file;
	char buf[ADMIN_MAX_TOKEN + 1];
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	struct stat sb;
	bool exposed = fd >= 0 && (fstat(fd, &sb) < 0 || (sb.st_mode & 077));
	ssize_t n = fd >= 0 && !exposed ? read(fd, buf, ADMIN_MAX_TOKEN) : -1;
	const char *why = NULL;

	if (fd >= 0)
		close(fd);
	if (exposed)
		why = "readable by group or others (chmod 600 it)";
	else if (n < 0)
		why = strerror(errno);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
			 buf[n - 1] == '\t'))
		n--;
	if (!why && n <= 0)
		why = "empty";
	if (why) {
		uint64_t skipped;
		if (log_limit_due(&a->token_log, 10000, mono_ms(), &skipped))
			log_err("admin: token file %s: %s; refusing every TCP admin request (%llu "
				"more refused since the last such line)",
				path ? path : "(none)", why, (unsigned long long)skipped);
		return false;
	}
	SHA256((const unsigned char *)buf, (size_t)n, digest);
	OPENSSL_cleanse(buf, sizeof(buf));
	return true;
}

/* Compares digests, not the strings, so the time taken says nothing about
 * the token's length or its prefix. */
static bool token_ok(struct admin_req *r)
{
	const char *h =
	    evhttp_find_header(evhttp_request_get_input_headers(r->req), "Authorization");
	unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	if (!read_token(r->a, want))
		return false;
	h += 7;
	while (*h == ' ')
		h++;
	SHA256((const unsigned char *)h, strlen(h), got);
	return CRYPTO_memcmp(want, got, sizeof(want)) == 0;
}

/* ---- dispatch ------------------------------------------------------------------------- */

/* The metrics listener has no token: it serves the status page and the
 * read-only routes the page reads, never a mutation (their GET only). */
static bool metrics_listener_route(const char *pattern)
{
	static const char *const ok[] = {"/metrics", "/", "/v1/status", "/v1/pools",
					 "/v1/gate/status"};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strcmp(pattern, ok[i]) == 0)
			return true;
	return false;
}

static void dispatch(struct admin_req *r, const char *path)
{
	struct admin *a = r->a;
	unsigned allowed = 0;

	for (size_t i = 0; i < a->nroutes; i++) {
		struct route *rt = &a->routes[i];
		if (r->l->metrics_only && !metrics_listener_route(rt->pattern))
			continue;
		if (!route_match(rt->pattern, path, NULL))
			continue;
		if (!(rt->methods & r->method)) {
			allowed |= rt->methods;
			continue;
		}
		route_match(rt->pattern, path, r);
		rt->fn(r, rt->arg);
		BUG_ON(!r->answered);
		return;
	}
	if (allowed) {
		char allow[64];
		allow_header(allowed, allow, sizeof(allow));
		evhttp_add_header(evhttp_request_get_output_headers(r->req), "Allow", allow);
		admin_error(r, 405, "method not allowed on %s (allowed: %s)", path, allow);
		return;
	}
	if (!strncmp(path, "/v1/gate/", 9) || !strcmp(path, "/v1/gate")) {
		/* The gate's routes exist only with a gate: section. */
		admin_error(r, 404, "the gate is not enabled: lbd's config has no gate: section");
		return;
	}
	admin_error(r, 404, "no such route: %s", path);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct lst *l = arg;
	struct admin_req r = {.a = l->a, .l = l, .req = req};
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *q = uri ? evhttp_uri_get_query(uri) : NULL;

	r.method = map_method(evhttp_request_get_command(req));
	if (l->need_token && !token_ok(&r)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
				  "Bearer realm=\"lbd\"");
		admin_error(&r, 401,
			    "a valid bearer token is required (Authorization: Bearer "
			    "<token from admin.token_file>)");
		return;
	}
	if (!path || !*path) {
		admin_error(&r, 400, "bad request URI");
		return;
	}
	if (q && evhttp_parse_query_str(q, &r.query) < 0) {
		admin_error(&r, 400, "bad query string");
		return;
	}
	dispatch(&r, path);
	evhttp_clear_headers(&r.query);
	for (size_t i = 0; i < r.nparams; i++)
		free(r.params[i]);
}

/* ---- listeners ------------------------------------------------------------------------ */

static struct lst *lst_new(struct admin *a, int kind, const char *what, bool need_token,
			   bool metrics_only, SSL_CTX *ssl, const struct admin_limits *lim)
{
	struct lst *l = xcalloc(1, sizeof(*l));
	struct httpd_conf hc = {
	    .what = what,
	    .max_connections = lim ? lim->max_connections : 0,
	    .request_timeout_ms = lim ? lim->request_timeout_ms : 0,
	    .max_body = ADMIN_MAX_BODY,
	    .max_headers = ADMIN_MAX_HEADERS,
	    .methods = EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH |
		       EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS,
	};

	l->a = a;
	l->kind = kind;
	l->what = what;
	l->need_token = need_token;
	l->metrics_only = metrics_only;
	l->h = httpd_new(a->base, &hc, ssl, on_request, l);
	a->lst[a->nlst++] = l;
	return l;
}

static void lst_free(struct lst *l)
{
	httpd_free(&l->h);
	free(l);
}

static int mkdir_parent(const char *path, char **err)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');

	if (slash && slash != dir) {
		*slash = '\0';
		for (char *s = dir + 1;; s++) {
			char c = *s;
			if (c != '/' && c != '\0')
				continue;
			*s = '\0';
			if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
				*err = xasprintf("cannot create %s: %s", dir, strerror(errno));
				free(dir);
				return -1;
			}
			*s = c;
			if (!c)
				break;
		}
	}
	free(dir);
	return 0;
}

/* A socket file left by a dead lbd is removed; one a live lbd answers on,
 * or a file that is not a socket, is an error. */
static int clear_stale(const char *path, const struct sockaddr_un *sun, char **err)
{
	struct stat sb;

	if (lstat(path, &sb) < 0)
		return 0;
	if (!S_ISSOCK(sb.st_mode)) {
		*err = xasprintf("admin socket %s: exists and is not a socket", path);
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0) {
		close(fd);
		*err = xasprintf("admin socket %s: another process is serving it", path);
		return -1;
	}
	if (fd >= 0)
		close(fd);
	log_info("admin: removing stale socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT) {
		*err = xasprintf("admin socket %s: cannot remove it: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int open_unix(struct admin *a, const char *path, int mode, const struct admin_limits *lim,
		     char **err)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	if (strlen(path) >= sizeof(sun.sun_path)) {
		*err = xasprintf("admin socket %s: path too long", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	int fd = handover_take(HANDOVER_ADMIN_UNIX, (const struct sockaddr *)&sun, sizeof(sun));
	if (fd >= 0) {
		log_info("admin: serving %s, handed over by the old lbd", path);
		goto serve;
	}
	if (mkdir_parent(path, err) < 0 || clear_stale(path, &sun, err) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err = xasprintf("admin socket: %s", strerror(errno));
		return -1;
	}
	/* Created with the right mode: no moment where it is wider. */
	mode_t old = umask(0777 & ~(mode_t)mode);
	int rc = bind(fd, (const struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc < 0 || chmod(path, (mode_t)mode) < 0 || listen(fd, 64) < 0) {
		*err = xasprintf("admin socket %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	log_info("admin: listening on %s (mode %04o)", path, mode);
serve:;
	/* The socket's file mode keeps strangers out: its cap only bounds
	 * descriptors, so a burst of local clients (lbctl in a loop) is not
	 * turned away at admin.max_connections. */
	struct admin_limits ulim = *lim;
	if (ulim.max_connections < ADMIN_UNIX_MIN_CONNECTIONS)
		ulim.max_connections = ADMIN_UNIX_MIN_CONNECTIONS;
	struct lst *l = lst_new(a, HANDOVER_ADMIN_UNIX, "admin socket", false, false, NULL, &ulim);
	if (httpd_listen(l->h, fd, err) < 0) {
		unlink(path);
		return -1;
	}
	a->socket_path = xstrdup(path);
	return 0;
}

static int open_tcp(struct admin *a, const struct sockaddr_conf *addr, const char *what, bool token,
		    bool metrics_only, const struct tls_conf *tls, const struct admin_limits *lim,
		    char **err)
{
	SSL_CTX *ctx = NULL;

	if (tls && tls->cert && tls->key && !(ctx = tls_server_ctx(tls, what, err)))
		return -1;
	int kind = metrics_only ? HANDOVER_METRICS : HANDOVER_ADMIN_TCP;
	int fd = handover_take(kind, (const struct sockaddr *)&addr->ss, addr->len);
	if (fd < 0)
		fd = sock_listen_tcp((const struct sockaddr *)&addr->ss, addr->len, 64, what,
				     addr->text, err);
	if (fd < 0) {
		if (ctx)
			SSL_CTX_free(ctx);
		return -1;
	}
	struct lst *l = lst_new(a, kind, what, token, metrics_only, ctx, lim);
	if (httpd_listen(l->h, fd, err) < 0)
		return -1;
	log_info("%s: listening on %s (%s%s)", what, addr->text, ctx ? "TLS" : "plain HTTP",
		 token ? ", bearer token" : "");
	if (token && !ctx)
		log_warn("%s: no admin.tls cert/key: the bearer token travels in clear text", what);
	return 0;
}

/* ---- views ---------------------------------------------------------------------------- */

static json_t *rfc3339(int64_t wall)
{
	char buf[32];
	time_t t = (time_t)wall;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

static const char *health_name(const struct backend *b)
{
	return !b->health.known ? "unknown" : b->health.up ? "up" : "down";
}

static json_t *check_json(const struct check_result *c)
{
	return json_pack("{s:s,s:s,s:i,s:f}", "reason", check_reason_name(c->reason), "detail",
			 c->detail, "status", c->status, "latency_ms",
			 (double)c->latency_us / 1000.0);
}

static json_t *backend_json(const struct server *s, const struct pool *p, const struct backend *b)
{
	int64_t now = mono_ms();
	const struct state_entry *e = state_find(&s->st, p->conf.name, b->conf.name);
	json_t *o = json_object();
	struct backend_counts n;

	backend_counts_read(b, &n); /* summed over the workers */
	json_object_set_new(o, "name", json_string(b->conf.name));
	json_object_set_new(o, "address", json_string(b->conf.addr.text));
	json_object_set_new(o, "weight", json_integer(b->conf.weight));
	json_object_set_new(o, "state", json_string(backend_state_name(b->state)));
	json_object_set_new(o, "health", json_string(health_name(b)));
	json_object_set_new(o, "since", rfc3339((int64_t)time(NULL) - (now - b->since_ms) / 1000));
	json_object_set_new(o, "since_seconds", json_integer((now - b->since_ms) / 1000));
	json_object_set_new(
	    o, "check", b->health.known || b->last.detail[0] ? check_json(&b->last) : json_null());
	json_object_set_new(o, "last_failure",
			    b->has_fail ? check_json(&b->last_fail) : json_null());
	json_object_set_new(o, "check_latency_ms",
			    b->checks ? json_real((double)b->last.latency_us / 1000.0)
				      : json_null());
	json_object_set_new(o, "active", json_integer((json_int_t)b->active));
	json_object_set_new(o, "total", json_integer((json_int_t)n.connects));
	json_object_set_new(o, "connect_failures", json_integer((json_int_t)b->connect_failures));
	json_object_set_new(o, "empty_response_retries",
			    json_integer((json_int_t)b->empty_retries));
	json_object_set_new(o, "down_closing", json_boolean(b->down_closing));
	json_object_set_new(o, "down_closed", json_integer((json_int_t)b->down_closed));
	json_object_set_new(o, "rebalance_closed", json_integer((json_int_t)b->rb_closed));
	json_object_set_new(
	    o, "source",
	    json_string(server_file_backend(s, p->conf.name, b->conf.name) ? "file" : "runtime"));
	json_object_set_new(o, "runtime_edit", json_boolean(e != NULL));
	if (b->state == BE_DRAIN) {
		double left = drainer_seconds_left(b);
		json_object_set_new(o, "drain",
				    json_pack("{s:I,s:f,s:b,s:b,s:I,s:I}", "connections_left",
					      (json_int_t)b->active, "seconds_left",
					      left > 0 ? left : 0.0, "closing", b->drain_closing,
					      "remove_when_drained", b->remove_when_drained,
					      "closed_at_deadline", (json_int_t)b->drain_forced,
					      "started_seconds_ago",
					      (json_int_t)((now - b->drain_started_ms) / 1000)));
	} else {
		json_object_set_new(o, "drain", json_null());
		json_object_set_new(o, "last_drain_closed",
				    json_integer((json_int_t)b->drain_forced));
	}
	return o;
}

static json_t *pool_json(const struct server *s, const struct pool *p)
{
	json_t *arr = json_array();
	size_t up = 0, enabled = 0;

	for (size_t i = 0; i < p->nbe; i++) {
		json_array_append_new(arr, backend_json(s, p, p->be[i]));
		up += backend_is_up(p->be[i]);
		enabled += p->be[i]->state == BE_ENABLED;
	}
	const struct rebalance_conf *rb = &p->conf.rebalance;
	json_t *rbj = json_pack("{s:b,s:I,s:i,s:i,s:b}", "enabled", rb->enabled, "rate",
				(json_int_t)rb->rate, "max_share_pct", rb->max_share_pct,
				"tolerance_pct", rb->tolerance_pct, "round", p->rb.active);
	return json_pack(
	    "{s:s,s:s,s:I,s:I,s:s,s:I,s:o,s:b,s:I,s:I,s:o}", "name", p->conf.name, "balance",
	    balance_name(p->conf.balance), "drain_timeout_ms", (json_int_t)p->conf.drain_timeout_ms,
	    "drain_close_rate", (json_int_t)p->conf.drain_close_rate, "close_on_down",
	    down_close_name(p->conf.close_on_down), "down_close_rate",
	    (json_int_t)p->conf.down_close_rate, "rebalance", rbj, "fail_safe", p->fail_safe, "up",
	    (json_int_t)up, "enabled", (json_int_t)enabled, "backends", arr);
}

/* ---- routes --------------------------------------------------------------------------- */

/* Whether this lbd can take the VIP's clients now, and if not why: it runs,
 * is not stopping, accepts (not a self-upgrade's new process still held),
 * and every frontend has its listeners. Backend health is not part of it:
 * with every backend failing its checks lbd still relays in fail-safe, and
 * the peer of a pair sees the same backends (packaging/keepalived). */
static const char *not_serving_why(const struct server *s)
{
	if (s->stopping)
		return "stopping";
	if (relay_holding(s->relay))
		return "not accepting yet (a self-upgrade's new process)";
	if (s->nfes == 0)
		return "no frontend";
	for (size_t i = 0; i < s->nfes; i++)
		if (s->fes[i]->nls == 0)
			return "a frontend has no listener";
	return NULL;
}

static void h_status(struct admin_req *r, void *arg)
{
	struct server *s = admin_server(r);
	json_t *pools = json_array(), *fes = json_array();
	const char *why = not_serving_why(s);
	bool ok = !why;

	for (size_t i = 0; i < s->npools; i++) {
		struct pool *p = s->pools[i];
		size_t up = 0, enabled = 0;
		for (size_t j = 0; j < p->nbe; j++) {
			up += backend_is_up(p->be[j]) && p->be[j]->state == BE_ENABLED;
			enabled += p->be[j]->state == BE_ENABLED;
		}
		/* A pool with enabled backends and none up cannot serve well
		 * from here: that is what keepalived's track_script wants. */
		if (enabled > 0 && up == 0)
			ok = false;
		json_array_append_new(pools, json_pack("{s:s,s:I,s:I,s:I,s:b}", "name",
						       p->conf.name, "backends", (json_int_t)p->nbe,
						       "enabled", (json_int_t)enabled, "up",
						       (json_int_t)up, "fail_safe", p->fail_safe));
	}
	for (size_t i = 0; i < s->nfes; i++) {
		struct frontend *fe = s->fes[i];
		json_t *ls = json_array();
		for (size_t j = 0; j < fe->conf.nlisten; j++)
			if (j == 0 || strcmp(fe->conf.listen[j].text, fe->conf.listen[j - 1].text))
				json_array_append_new(ls, json_string(fe->conf.listen[j].text));
		json_array_append_new(
		    fes,
		    json_pack("{s:s,s:s,s:o,s:I,s:I,s:I,s:I,s:I}", "name", fe->conf.name, "pool",
			      fe->conf.pool, "listen", ls, "active", (json_int_t)fe->active,
			      "total", (json_int_t)fe->total, "refused_max_connections",
			      (json_int_t)fe->refused_max, "no_backend", (json_int_t)fe->no_backend,
			      "connect_retries", (json_int_t)fe->retried));
	}
	json_t *o = json_pack(
	    "{s:b,s:s,s:I,s:I,s:o,s:s,s:I,s:I,s:o,s:s,s:I,s:o,s:o}", "ok", ok, "state",
	    s->stopping ? "stopping" : "running", "pid", (json_int_t)getpid(), "uptime_seconds",
	    (json_int_t)((mono_ms() - s->started_ms) / 1000), "started", rfc3339(s->started_wall),
	    "config", s->config_path, "reloads", (json_int_t)s->reloads, "reload_failures",
	    (json_int_t)s->reload_failures, "last_reload_error",
	    s->last_reload_error ? json_string(s->last_reload_error) : json_null(), "state_file",
	    s->st.path ? s->st.path : "", "runtime_edits", (json_int_t)s->st.n, "frontends", fes,
	    "pools", pools);
	if (o) {
		json_object_set_new(o, "serving", json_boolean(!why));
		json_object_set_new(o, "not_serving", why ? json_string(why) : json_null());
	}
	for (size_t i = 0; o && i < r->a->nstatus_hooks; i++)
		r->a->status_hooks[i].fn(o, r->a->status_hooks[i].arg);
	admin_reply_json(r, 200, o);
}

static void h_page(struct admin_req *r, void *arg)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(r->req);

	/* Defence in depth: the page loads nothing but itself and the JSON API,
	 * so even text that slipped past its escaping could fetch nothing. */
	evhttp_add_header(
	    out, "Content-Security-Policy",
	    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
	    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
	    "frame-ancestors 'none'");
	evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(out, "Referrer-Policy", "no-referrer");
	admin_reply_text(r, 200, "text/html; charset=utf-8", statuspage_html,
			 strlen(statuspage_html));
}

static void h_pools(struct admin_req *r, void *arg)
{
	struct server *s = admin_server(r);
	json_t *arr = json_array();

	for (size_t i = 0; i < s->npools; i++)
		json_array_append_new(arr, pool_json(s, s->pools[i]));
	admin_reply_json(r, 200, json_pack("{s:o}", "pools", arr));
}

static void h_pool(struct admin_req *r, void *arg)
{
	struct server *s = admin_server(r);
	struct pool *p = server_pool(s, admin_param(r, 0));

	if (!p) {
		admin_error(r, 404, "no pool '%s'", admin_param(r, 0));
		return;
	}
	admin_reply_json(r, 200, pool_json(s, p));
}

/* GET /v1/pools/{pool}/backends: the pool's backends as in GET /v1/pools/{pool}. */
static void h_backends(struct admin_req *r, void *arg)
{
	struct server *s = admin_server(r);
	struct pool *p = server_pool(s, admin_param(r, 0));

	if (!p) {
		admin_error(r, 404, "no pool '%s'", admin_param(r, 0));
		return;
	}
	json_t *pj = pool_json(s, p);
	json_t *o = json_pack("{s:s,s:O}", "pool", p->conf.name, "backends",
			      json_object_get(pj, "backends"));
	json_decref(pj);
	admin_reply_json(r, 200, o);
}

static int serr_status(enum server_err e)
{
	switch (e) {
	case SERR_OK:
		return 200;
	case SERR_INVALID:
		return 400;
	case SERR_NOT_FOUND:
		return 404;
	case SERR_CONFLICT:
		return 409;
	case SERR_PERSIST:
		return 500;
	case SERR_NOSPACE:
		return 507;
	case SERR_CONFIG:
		return 422;
	}
	return 500;
}

static void reply_serr(struct admin_req *r, enum server_err e, char *err)
{
	admin_error(r, serr_status(e), "%s", err ? err : "failed");
	free(err);
}

static bool get_weight(struct admin_req *r, json_t *v, int *w)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 256) {
		admin_error(r, 400, "'weight' must be an integer 0..256");
		return false;
	}
	*w = (int)json_integer_value(v);
	return true;
}

static bool get_state(struct admin_req *r, json_t *v, enum backend_state *st)
{
	if (!json_is_string(v) || backend_state_parse(json_string_value(v), st) < 0) {
		admin_error(r, 400, "'state' must be one of enabled, drain, disabled");
		return false;
	}
	return true;
}

static void reply_backend(struct admin_req *r, int status, const char *pool, const char *name)
{
	struct server *s = admin_server(r);
	struct pool *p = server_pool(s, pool);
	struct backend *b = p ? pool_find(p, name) : NULL;

	if (!b) {
		admin_reply_json(
		    r, status,
		    json_pack("{s:s,s:s,s:b}", "pool", pool, "name", name, "removed", 1));
		return;
	}
	admin_reply_json(r, status, backend_json(s, p, b));
}

static void h_backend_add(struct admin_req *r, void *arg)
{
	static const char *const keys[] = {"name", "address", "weight", "state", NULL};
	const char *pool = admin_param(r, 0);
	bool bad;
	json_t *body = admin_body(r, &bad);
	int weight = 1;
	enum backend_state st = BE_ENABLED;
	char *err = NULL;

	if (bad)
		return;
	if (!body) {
		admin_error(r, 400,
			    "a JSON body is required: {\"name\": ..., \"address\": "
			    "\"IP:PORT\", \"weight\": N, \"state\": ...}");
		return;
	}
	json_t *name = json_object_get(body, "name"), *addr = json_object_get(body, "address");
	json_t *w = json_object_get(body, "weight"), *sv = json_object_get(body, "state");
	if (!admin_only_keys(r, body, keys))
		goto out;
	if (!json_is_string(name) || !json_is_string(addr)) {
		admin_error(r, 400, "'name' and 'address' are required strings");
		goto out;
	}
	if ((w && !get_weight(r, w, &weight)) || (sv && !get_state(r, sv, &st)))
		goto out;
	enum server_err e = server_backend_add(admin_server(r), pool, json_string_value(name),
					       json_string_value(addr), weight, st, &err);
	if (e != SERR_OK) {
		reply_serr(r, e, err);
		goto out;
	}
	char *loc = xasprintf("/v1/pools/%s/backends/%s", pool, json_string_value(name));
	evhttp_add_header(evhttp_request_get_output_headers(r->req), "Location", loc);
	free(loc);
	reply_backend(r, 201, pool, json_string_value(name));
out:
	json_decref(body);
}

static void h_backend_get(struct admin_req *r, void *arg)
{
	struct server *s = admin_server(r);
	struct pool *p = server_pool(s, admin_param(r, 0));
	struct backend *b = p ? pool_find(p, admin_param(r, 1)) : NULL;

	if (!p)
		admin_error(r, 404, "no pool '%s'", admin_param(r, 0));
	else if (!b)
		admin_error(r, 404, "no backend '%s' in pool '%s'", admin_param(r, 1),
			    admin_param(r, 0));
	else
		admin_reply_json(r, 200, backend_json(s, p, b));
}

static void h_backend_patch(struct admin_req *r, void *arg)
{
	static const char *const keys[] = {"state", "weight", NULL};
	const char *pool = admin_param(r, 0), *name = admin_param(r, 1);
	bool bad;
	json_t *body = admin_body(r, &bad);
	int weight = 0;
	enum backend_state st = BE_ENABLED;
	char *err = NULL;

	if (bad)
		return;
	if (!body) {
		admin_error(r, 400,
			    "a JSON body is required: {\"state\": "
			    "\"enabled|drain|disabled\", \"weight\": N}");
		return;
	}
	json_t *w = json_object_get(body, "weight"), *sv = json_object_get(body, "state");
	if (!admin_only_keys(r, body, keys))
		goto out;
	if (!w && !sv) {
		admin_error(r, 400, "nothing to change: give 'state' and/or 'weight'");
		goto out;
	}
	if ((w && !get_weight(r, w, &weight)) || (sv && !get_state(r, sv, &st)))
		goto out;
	enum server_err e = server_backend_patch(admin_server(r), pool, name, sv != NULL, st,
						 w != NULL, weight, &err);
	if (e != SERR_OK)
		reply_serr(r, e, err);
	else
		reply_backend(r, 200, pool, name);
out:
	json_decref(body);
}

static bool parse_bool_text(const char *s, bool *out)
{
	if (!strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "yes"))
		*out = true;
	else if (!strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "no"))
		*out = false;
	else
		return false;
	return true;
}

/*
 * A yes/no option given in the body ({"KEY": true}, no other key allowed) or
 * in the query (?KEY=1). Returns false, having answered 400, on bad input.
 */
static bool bool_option(struct admin_req *r, json_t *body, const char *key, bool *out)
{
	const char *const keys[] = {key, NULL};
	const char *q = admin_query(r, key);

	*out = false;
	if (body) {
		json_t *v = json_object_get(body, key);
		if (!admin_only_keys(r, body, keys))
			return false;
		if (v && !json_is_boolean(v)) {
			admin_error(r, 400, "'%s' must be true or false", key);
			return false;
		}
		*out = json_is_true(v);
	}
	if (q && !parse_bool_text(q, out)) {
		admin_error(r, 400, "query '%s' must be 1/0 or true/false", key);
		return false;
	}
	return true;
}

static void h_backend_delete(struct admin_req *r, void *arg)
{
	const char *pool = admin_param(r, 0), *name = admin_param(r, 1);
	bool bad, drain, pending = false;
	json_t *body = admin_body(r, &bad);
	char *err = NULL;

	if (bad)
		return;
	if (!bool_option(r, body, "drain", &drain))
		goto out;
	enum server_err e =
	    server_backend_remove(admin_server(r), pool, name, drain, &pending, &err);
	if (e != SERR_OK)
		reply_serr(r, e, err);
	else
		reply_backend(r, pending ? 202 : 200, pool, name);
out:
	json_decref(body);
}

static void h_reload(struct admin_req *r, void *arg)
{
	struct server *s = admin_server(r);
	bool bad, reset;
	json_t *body = admin_body(r, &bad);
	struct config_errors errs = {0};
	char *err = NULL;

	if (bad)
		return;
	if (!bool_option(r, body, "reset", &reset))
		goto out;
	log_info("admin: reload requested%s", reset ? " (runtime overlay reset)" : "");
	enum server_err e = server_reload_ex(s, reset, &errs, &err);
	if (e != SERR_OK) {
		json_t *arr = json_array();
		for (size_t i = 0; i < errs.n; i++)
			json_array_append_new(arr, json_string(errs.msgs[i]));
		config_errors_free(&errs);
		admin_reply_json(
		    r, serr_status(e),
		    json_pack("{s:s,s:o}", "error", err ? err : "reload failed", "errors", arr));
		free(err);
		goto out;
	}
	admin_reply_json(r, 200,
			 json_pack("{s:b,s:b,s:s,s:I,s:I}", "reloaded", 1, "reset", reset, "config",
				   s->config_path, "runtime_edits", (json_int_t)s->st.n, "reloads",
				   (json_int_t)s->reloads));
out:
	json_decref(body);
}

static void h_metrics(struct admin_req *r, void *arg)
{
	size_t len;
	char *text = metrics_render(admin_server(r), &len);

	if (r->a->metrics_fn) {
		char *more = r->a->metrics_fn(r->a->metrics_arg);
		size_t mlen = strlen(more);
		text = xrealloc(text, len + mlen + 1);
		memcpy(text + len, more, mlen + 1);
		len += mlen;
		free(more);
	}
	admin_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

/* ---- life ----------------------------------------------------------------------------- */

struct admin *admin_new(struct event_base *base, struct server *s, char **err)
{
	struct admin *a = xcalloc(1, sizeof(*a));
	const struct config *cfg = s->cfg;

	a->s = s;
	a->base = base;
	admin_route(a, ADMIN_GET, "/v1/status", h_status, NULL);
	admin_route(a, ADMIN_GET, "/v1/pools", h_pools, NULL);
	admin_route(a, ADMIN_GET, "/v1/pools/{pool}", h_pool, NULL);
	admin_route(a, ADMIN_POST, "/v1/pools/{pool}/backends", h_backend_add, NULL);
	admin_route(a, ADMIN_GET, "/v1/pools/{pool}/backends", h_backends, NULL);
	admin_route(a, ADMIN_GET, "/v1/pools/{pool}/backends/{name}", h_backend_get, NULL);
	admin_route(a, ADMIN_PATCH, "/v1/pools/{pool}/backends/{name}", h_backend_patch, NULL);
	admin_route(a, ADMIN_DELETE, "/v1/pools/{pool}/backends/{name}", h_backend_delete, NULL);
	admin_route(a, ADMIN_POST, "/v1/reload", h_reload, NULL);
	admin_route(a, ADMIN_GET, "/metrics", h_metrics, NULL);
	admin_route(a, ADMIN_GET, "/", h_page, NULL);

	const struct admin_limits alim = ADMIN_LIMITS(cfg->admin),
				  mlim = ADMIN_LIMITS(cfg->metrics);
	if (cfg->admin.socket &&
	    open_unix(a, cfg->admin.socket, cfg->admin.socket_mode ? cfg->admin.socket_mode : 0600,
		      &alim, err) < 0)
		goto fail;
	if (cfg->admin.listen) {
		/* At start-up, refuse outright what read_token would refuse
		 * on every request: a secret others can read. */
		struct stat sb;
		if (stat(cfg->admin.token_file, &sb) == 0 && (sb.st_mode & 077)) {
			*err = xasprintf("admin.token_file %s is readable by group or others "
					 "(mode %04o): chmod 600 it",
					 cfg->admin.token_file, (unsigned)(sb.st_mode & 07777));
			goto fail;
		}
		if (open_tcp(a, cfg->admin.listen, "admin listener", true, false, &cfg->admin.tls,
			     &alim, err) < 0)
			goto fail;
	}
	if (cfg->metrics.listen &&
	    open_tcp(a, cfg->metrics.listen, "metrics listener", false, true, NULL, &mlim, err) < 0)
		goto fail;
	return a;
fail:
	admin_free(a);
	return NULL;
}

void admin_free(struct admin *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->nlst; i++)
		lst_free(a->lst[i]);
	if (a->socket_path) {
		if (!a->keep_socket)
			unlink(a->socket_path);
		xfree(&a->socket_path);
	}
	for (size_t i = 0; i < a->nroutes; i++)
		free(a->routes[i].pattern);
	free(a->routes);
	free(a);
}
