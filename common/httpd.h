/*
 * httpd.h - an evhttp server that a stranger cannot starve.
 *
 * lbd's small HTTP listeners (the admin unix socket and TCP listener, the
 * metrics listener, the gate's listener) all stand on this, so each has the
 * same three bounds:
 *   - a whole-request deadline: from accept to the last byte of the request
 *     (evhttp alone bounds only each read, so a byte every few seconds held
 *     a connection forever); past it the connection is shut down;
 *   - a connection cap on connections still sending their request: beyond
 *     it a new connection is closed at once, so slow clients cannot use up
 *     the process's descriptors (health checks need them too);
 *   - on EMFILE/ENFILE the listener pauses 100 ms and retries, logging at
 *     most once a second (libevent's default is to retry at once: a busy
 *     loop at 100% CPU writing a line per attempt).
 * Answers are the caller's (evhttp_send_reply): the callback runs once the
 * request has arrived whole, which ends its deadline. The errors evhttp
 * answers itself (400 malformed, 413 body too large, 417, 501) leave as
 * {"error": "..."} in application/json like the caller's, not as
 * libevent's HTML pages (see json_errors() in httpd.c).
 */
#ifndef LBD_COMMON_HTTPD_H
#define LBD_COMMON_HTTPD_H

#include <event2/http.h>
#include <event2/util.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct httpd;

#define HTTPD_DEFAULT_MAX_CONNECTIONS 64
#define HTTPD_DEFAULT_REQUEST_TIMEOUT_MS 10000

struct httpd_conf {
	const char *what;	    /* for logs: "gate listener" */
	int max_connections;	    /* 0: HTTPD_DEFAULT_MAX_CONNECTIONS */
	int64_t request_timeout_ms; /* 0: HTTPD_DEFAULT_REQUEST_TIMEOUT_MS */
	size_t max_body, max_headers;
	int methods; /* EVHTTP_REQ_* bits evhttp lets through */
};

typedef void (*httpd_cb)(struct evhttp_request *req, void *arg);

/* ssl, if not NULL, is taken over: connections speak TLS. c->what must
 * outlive the server. */
struct httpd *httpd_new(struct event_base *base, const struct httpd_conf *c, SSL_CTX *ssl,
			httpd_cb cb, void *arg);
/* Serves the listening socket fd (non-blocking; taken over, closed by
 * httpd_free). Returns 0, or -1 with *err. */
int httpd_listen(struct httpd *h, evutil_socket_t fd, char **err);
/* Stop and start accepting (the socket stays open: connections queue). */
void httpd_pause(struct httpd *h);
void httpd_resume(struct httpd *h);
/* The listening socket, or -1. */
int httpd_fd(const struct httpd *h);
/* The evhttp underneath (headers, callbacks). */
struct evhttp *httpd_evhttp(struct httpd *h);
/* Connections still sending their request, and connections closed so far
 * for the cap and for the deadline (for status and tests). */
size_t httpd_pending(const struct httpd *h);
uint64_t httpd_refused(const struct httpd *h);
uint64_t httpd_timed_out(const struct httpd *h);
void httpd_free(struct httpd **h);

#endif
