/*
 * admin.h - the admin API: HTTP/1.1 + JSON on libevent's evhttp, on the main
 * loop.
 *
 * Listeners (opened once, at start; changing them needs a restart):
 *   - the unix socket admin.socket (mode admin.socket_mode, default 0600;
 *     its directory is created, a stale socket is replaced, a live one is
 *     an error): every route, no token - the file mode is the access control;
 *   - admin.listen, optional, TCP (TLS when admin.tls.cert/key are set):
 *     every route, each request needs "Authorization: Bearer <token>" with
 *     the token in admin.token_file (read at each request, so it can be
 *     rotated; compared in constant time);
 *   - metrics.listen, optional, plain TCP, no token: GET /metrics, the status
 *     page GET / (statuspage.h) and the read-only routes it reads
 *     (/v1/status, /v1/pools, /v1/gate/status); never a mutation.
 * Every answer closes its connection; a request must arrive whole within
 * ADMIN_REQUEST_TIMEOUT_S and ADMIN_MAX_BODY bytes, so a slow or huge client
 * cannot hold the API.
 *
 * Routing: admin_route() registers a handler for a method set and a path
 * pattern whose "{x}" segments match one path segment each (admin_param).
 * A path that matches with another method answers 405 with Allow; no match,
 * 404. Other modules (the gate) register their routes the same way.
 */
#ifndef LBD_ADMIN_H
#define LBD_ADMIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct server;
struct event_base;
struct admin;
struct admin_req;

#define ADMIN_MAX_BODY (64 * 1024)
#define ADMIN_MAX_HEADERS (16 * 1024)
#define ADMIN_REQUEST_TIMEOUT_S 10
#define ADMIN_MAX_PARAMS 4
/* The unix socket's connection cap is at least this (admin.c open_unix). */
#define ADMIN_UNIX_MIN_CONNECTIONS 1024

enum admin_method {
	ADMIN_GET = 1 << 0,
	ADMIN_POST = 1 << 1,
	ADMIN_PUT = 1 << 2,
	ADMIN_PATCH = 1 << 3,
	ADMIN_DELETE = 1 << 4,
};

typedef void (*admin_handler)(struct admin_req *r, void *arg);
typedef void (*admin_status_fn)(json_t *status, void *arg);
/* Prometheus text to append to /metrics (caller frees). */
typedef char *(*admin_metrics_fn)(void *arg);

/* Bounds of a listener (common/httpd.h): 0 takes httpd's default. */
struct admin_limits {
	int max_connections;
	int64_t request_timeout_ms;
};
#define ADMIN_LIMITS(section)                                                                      \
	((struct admin_limits){(section).max_connections, (section).request_timeout_ms})

/* Opens the listeners of s->cfg and registers the pool routes and /metrics.
 * Returns NULL with *err if a listener cannot be opened. */
struct admin *admin_new(struct event_base *base, struct server *s, char **err);
void admin_free(struct admin *a);

void admin_route(struct admin *a, unsigned methods, const char *pattern, admin_handler fn,
		 void *arg);

/* The listening sockets, for a self-upgrade (handover.h). */
struct admin_fd {
	int kind; /* enum handover_kind */
	int fd;
};
size_t admin_listen_fds(const struct admin *a, struct admin_fd *out, size_t max);
/* Stop and start accepting on every listener (the sockets stay open). */
void admin_pause(struct admin *a);
void admin_resume(struct admin *a);
/* A new lbd serves the sockets now: stop accepting, and never remove the
 * socket file (it is the new lbd's). */
void admin_handed_over(struct admin *a);

/* fn's families follow lbd's own in GET /metrics (the gate's; one). */
void admin_on_metrics(struct admin *a, admin_metrics_fn fn, void *arg);
/* fn adds its fields to the object GET /v1/status answers (the gate's, the
 * handover's; up to four). */
void admin_on_status(struct admin *a, admin_status_fn fn, void *arg);

/* ---- for handlers ---- */
struct server *admin_server(const struct admin_req *r);
enum admin_method admin_method(const struct admin_req *r);
/* The i-th "{x}" segment of the matched pattern, percent-decoded. */
const char *admin_param(const struct admin_req *r, size_t i);
/* A query parameter, or NULL. */
const char *admin_query(const struct admin_req *r, const char *key);
/* The body as a JSON object: NULL if there is none (empty body). On a bad
 * body, answers 400 itself and sets *bad. */
json_t *admin_body(struct admin_req *r, bool *bad);
/* Checks that obj has only the keys in allowed (NULL-terminated); if not,
 * answers 400 and returns false. */
bool admin_only_keys(struct admin_req *r, json_t *obj, const char *const *allowed);

/* Answers: each takes over body. */
void admin_reply_json(struct admin_req *r, int status, json_t *body);
void admin_reply_text(struct admin_req *r, int status, const char *ctype, const char *body,
		      size_t len);
void admin_error(struct admin_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * For a handler that answers later (the gate's routes, answered by the gate
 * process): returns a copy of r that stays valid until one admin_reply_*
 * on it, which frees it; r itself counts as answered. Params stay readable
 * on the copy; the query does not. If the client hangs up meanwhile, the
 * reply is dropped (evhttp frees an orphaned request when it is answered).
 */
struct admin_req *admin_defer(struct admin_req *r);

#endif
