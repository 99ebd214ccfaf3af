/*
 * httpd.c - see httpd.h.
 *
 * A guard per connection holds its bufferevent from accept until the
 * request has arrived or the connection is gone. Guards are
 * what the cap counts and what the deadline ends. libevent 2.1 has no close
 * hook for incoming connections, but it clears a bufferevent's callbacks
 * when its owner frees it: a sweep frees the guards of such connections
 * while any exist. A guard's reference keeps the bufferevent (and its fd)
 * alive until then; the sweep runs every 100 ms, so that is the longest a
 * descriptor outlives its connection.
 */
#define _GNU_SOURCE /* memmem */
#include "common/httpd.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xmalloc.h"

#define SWEEP_MS 100
#define PAUSE_MS 100 /* after EMFILE/ENFILE */

struct guard {
	struct httpd *h;
	struct bufferevent *bev;
	struct event *timer;
	bool over_cap; /* closed at once, not after the deadline */
	struct guard *prev, *next;
};

struct httpd {
	struct httpd *next_live; /* the list on_accept_error searches */
	struct event_base *base;
	struct httpd_conf conf;
	struct evhttp *http;
	SSL_CTX *ssl;
	httpd_cb cb;
	void *arg;
	struct guard *guards;
	size_t nguards;
	struct event *sweep;
	struct evconnlistener *lev;
	struct event *resume; /* re-enables lev after an accept error */
	bool paused;	      /* httpd_pause: resume() leaves it off */
	int64_t cap_logged_ms, deadline_logged_ms, accept_logged_ms;
	uint64_t refused, timed_out, accept_errors;
	bool rewriting; /* json_errors() is replacing a page: not its own input */
};

/* ---- guards --------------------------------------------------------------------------- */

static void guard_free(struct guard *g)
{
	struct httpd *h = g->h;

	if (g->prev)
		g->prev->next = g->next;
	else
		h->guards = g->next;
	if (g->next)
		g->next->prev = g->prev;
	h->nguards--;
	event_free(g->timer);
	bufferevent_decref(g->bev);
	free(g);
}

/* At most one line a second for each kind of trouble, with how many since. */
static bool log_due(int64_t *last_ms)
{
	int64_t now = mono_ms();

	if (*last_ms && now - *last_ms < 1000)
		return false;
	*last_ms = now;
	return true;
}

static void guard_expired(evutil_socket_t fd, short what, void *arg)
{
	struct guard *g = arg;
	struct httpd *h = g->h;
	bufferevent_event_cb ecb = NULL;

	bufferevent_getcb(g->bev, NULL, NULL, &ecb, NULL);
	if (ecb) {
		/* Still reading its request: end it. evhttp sees EOF and
		 * frees the connection the usual way. */
		evutil_socket_t s = bufferevent_getfd(g->bev);
		if (g->over_cap) {
			h->refused++;
			if (log_due(&h->cap_logged_ms))
				log_warn("%s: %d connections are sending requests (the cap); "
					 "closing new ones (%llu so far)",
					 h->conf.what, h->conf.max_connections,
					 (unsigned long long)h->refused);
		} else {
			h->timed_out++;
			if (log_due(&h->deadline_logged_ms))
				log_warn("%s: request not complete after %lldms; closing (%llu "
					 "so far)",
					 h->conf.what, (long long)h->conf.request_timeout_ms,
					 (unsigned long long)h->timed_out);
		}
		if (s >= 0)
			shutdown(s, SHUT_RDWR);
	}
	guard_free(g);
}

/* Frees the guards of connections evhttp has let go. */
static void sweep(struct httpd *h)
{
	struct guard *g = h->guards, *next;

	for (; g; g = next) {
		bufferevent_data_cb rcb = NULL, wcb = NULL;
		bufferevent_event_cb ecb = NULL;
		next = g->next;
		bufferevent_getcb(g->bev, &rcb, &wcb, &ecb, NULL);
		if (!rcb && !wcb && !ecb)
			guard_free(g); /* the last reference: closes the fd */
	}
}

static void guard_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct httpd *h = arg;

	sweep(h);
	if (h->guards) {
		struct timeval tv = {0, SWEEP_MS * 1000};
		evtimer_add(h->sweep, &tv);
	}
}

/* ---- evhttp's own error pages, as JSON ------------------------------------------------ */

/*
 * evhttp answers some requests itself, before (and instead of) our callback:
 * a body over max_body (413), a malformed request line, a malformed or
 * oversized header block, a bad Content-Length (400), a method outside
 * conf.methods (501), an Expect other than 100-continue (417). libevent 2.1
 * has no hook for these (evhttp_set_errorcb came with 2.2; the failed
 * request goes straight to evhttp_send_error, which writes a fixed HTML
 * page), but the page goes through the connection's output buffer, which
 * is ours (make_bev). Its whole response, head and body, is added there in
 * one call of evhttp_send(), and is not written to the socket before the
 * event loop runs again. So a callback on that buffer sees the page
 * complete and replaces it, status and headers kept, with
 * {"error": "..."} as application/json.
 *
 * The page is known by what evhttp_send_error() writes and nothing of ours
 * does: an error status, "Content-Type: text/html" and a body ending in
 * "</BODY></HTML>\n". Anything else passes untouched.
 */
#define PAGE_TAIL "</BODY></HTML>\n"
#define PAGE_MAX 2048 /* evhttp's pages are about 300 bytes with their head */
#define CONTINUE_LINE "HTTP/1.1 100 Continue\r\n\r\n"

static const char *error_text(struct httpd *h, int status, char *buf, size_t len)
{
	switch (status) {
	case 400:
		snprintf(buf, len,
			 "bad request: the request line or a header is malformed, or the headers "
			 "are over %zu bytes",
			 h->conf.max_headers);
		break;
	case 413:
		snprintf(buf, len, "request body too large: at most %zu bytes", h->conf.max_body);
		break;
	case 417:
		snprintf(buf, len, "unsupported Expect header: only 100-continue is understood");
		break;
	case 501:
		snprintf(buf, len, "method not supported");
		break;
	default:
		snprintf(buf, len, "the request failed (HTTP %d)", status);
		break;
	}
	return buf;
}

/* The JSON answer for the evhttp page in page[0..len) (after any 100
 * Continue), into out; or NULL if it is not such a page. */
static struct evbuffer *json_page(struct httpd *h, const char *page, size_t len)
{
	const char *hend = memmem(page, len, "\r\n\r\n", 4), *line, *eol;
	char text[256];
	int status = 0;

	/* The version is the request's, as evhttp echoes it ("HTTP/1.11"). */
	const char *sp = hend ? memchr(page, ' ', (size_t)(hend - page)) : NULL;
	if (!hend || strncmp(page, "HTTP/", 5) != 0 || !sp || sscanf(sp, " %3d", &status) != 1 ||
	    status < 400 || status > 599)
		return NULL;
	static const char html[] = "\r\nContent-Type: text/html\r\n";
	if (!memmem(page, (size_t)(hend - page) + 2, html, sizeof(html) - 1))
		return NULL;

	json_t *j = json_pack("{s:s}", "error", error_text(h, status, text, sizeof(text)));
	char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	struct evbuffer *out = evbuffer_new();

	json_decref(j);
	if (!body || !out) {
		free(body);
		if (out)
			evbuffer_free(out);
		return NULL; /* out of memory: the page goes as it is */
	}
	/* The status line and every header but the two that change. */
	eol = memchr(page, '\n', len);
	evbuffer_add(out, page, (size_t)(eol + 1 - page));
	for (line = eol + 1; line < hend + 2; line = eol + 1) {
		eol = memchr(line, '\n', (size_t)(hend + 2 - line));
		if (!eol)
			break;
		if (strncasecmp(line, "Content-Type:", 13) != 0 &&
		    strncasecmp(line, "Content-Length:", 15) != 0)
			evbuffer_add(out, line, (size_t)(eol + 1 - line));
	}
	evbuffer_add_printf(out,
			    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s\n",
			    strlen(body) + 1, body);
	free(body);
	return out;
}

static void json_errors(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct httpd *h = arg;
	size_t len = evbuffer_get_length(buf), tail = sizeof(PAGE_TAIL) - 1, skip = 0;
	char page[PAGE_MAX + 1];
	struct evbuffer_ptr pos;

	if (h->rewriting || !info->n_added || len < tail || len > PAGE_MAX)
		return;
	/* Cheap first: does what is there end like evhttp's page? */
	if (evbuffer_ptr_set(buf, &pos, len - tail, EVBUFFER_PTR_SET) < 0 ||
	    evbuffer_copyout_from(buf, &pos, page, tail) != (ev_ssize_t)tail ||
	    memcmp(page, PAGE_TAIL, tail) != 0)
		return;
	if (evbuffer_copyout(buf, page, len) != (ev_ssize_t)len)
		return;
	page[len] = '\0';
	if (len > sizeof(CONTINUE_LINE) - 1 &&
	    memcmp(page, CONTINUE_LINE, sizeof(CONTINUE_LINE) - 1) == 0)
		skip = sizeof(CONTINUE_LINE) - 1; /* still there, ahead of the page */

	struct evbuffer *json = json_page(h, page + skip, len - skip);
	if (!json)
		return;
	h->rewriting = true;
	evbuffer_drain(buf, len);
	evbuffer_add(buf, page, skip);
	evbuffer_add_buffer(buf, json);
	h->rewriting = false;
	evbuffer_free(json);
}

/* evhttp asks for the bufferevent of each new connection: the guard starts here. */
static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
	struct httpd *h = arg;
	struct bufferevent *bev;

	if (h->ssl) {
		SSL *ssl = SSL_new(h->ssl);
		if (!ssl)
			fatal("SSL_new failed"); /* out of memory: xmalloc's rule */
		bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
						     BEV_OPT_CLOSE_ON_FREE);
	} else {
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	if (!bev)
		fatal("cannot create a bufferevent");
	if (!evbuffer_add_cb(bufferevent_get_output(bev), json_errors, h))
		fatal("cannot watch a bufferevent");
	struct guard *g = xcalloc(1, sizeof(*g));
	g->h = h;
	g->bev = bev;
	bufferevent_incref(bev);
	/* Over the cap (counting only connections still there): the fd is
	 * not attached yet; a zero timer closes it on the next turn of the
	 * loop, before evhttp reads a byte. */
	if (h->nguards >= (size_t)h->conf.max_connections)
		sweep(h);
	g->over_cap = h->nguards >= (size_t)h->conf.max_connections;
	g->timer = evtimer_new(base, guard_expired, g);
	int64_t ms = g->over_cap ? 0 : h->conf.request_timeout_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(g->timer, &tv);
	g->next = h->guards;
	if (g->next)
		g->next->prev = g;
	h->guards = g;
	h->nguards++;
	if (!evtimer_pending(h->sweep, NULL)) {
		struct timeval sw = {0, SWEEP_MS * 1000};
		evtimer_add(h->sweep, &sw);
	}
	return bev;
}

/* The request is whole: its deadline ends. */
static void arrived(struct httpd *h, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;

	for (struct guard *g = h->guards; g && bev; g = g->next) {
		if (g->bev == bev) {
			guard_free(g);
			return;
		}
	}
}

/* ---- the listener --------------------------------------------------------------------- */

static void resume(evutil_socket_t fd, short what, void *arg)
{
	struct httpd *h = arg;
	if (!h->paused)
		evconnlistener_enable(h->lev);
}

void httpd_pause(struct httpd *h)
{
	h->paused = true;
	if (h->lev)
		evconnlistener_disable(h->lev);
}

void httpd_resume(struct httpd *h)
{
	h->paused = false;
	if (h->lev)
		evconnlistener_enable(h->lev);
}

int httpd_fd(const struct httpd *h)
{
	return h->lev ? evconnlistener_get_fd(h->lev) : -1;
}

/*
 * The live servers of this process. libevent hands an accept error callback
 * the listener's callback argument, which evhttp_bind_listener made the
 * evhttp: the callback finds its server here by the listener. A process has
 * three at most, all on its main loop.
 */
static struct httpd *live;

/*
 * accept() failed with something other than "try again". Out of
 * descriptors (EMFILE, ENFILE) or memory: stop accepting for a moment, as
 * the relay's listeners do; the kernel keeps the connections queued.
 */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
	struct httpd *h = live;
	int e = EVUTIL_SOCKET_ERROR();
	struct timeval tv = {0, PAUSE_MS * 1000};

	while (h && h->lev != lev)
		h = h->next_live;
	if (!h) {
		evconnlistener_disable(lev); /* cannot happen; never spin */
		return;
	}
	h->accept_errors++;
	if (log_due(&h->accept_logged_ms))
		log_warn("%s: accept: %s; pausing %dms (%llu errors so far)", h->conf.what,
			 strerror(e), PAUSE_MS, (unsigned long long)h->accept_errors);
	evconnlistener_disable(lev);
	evtimer_add(h->resume, &tv);
}

int httpd_listen(struct httpd *h, evutil_socket_t fd, char **err)
{
	BUG_ON(h->lev);
	h->lev = evconnlistener_new(h->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (!h->lev) {
		*err = xasprintf("%s: cannot listen", h->conf.what);
		evutil_closesocket(fd);
		return -1;
	}
	/* evhttp sets the accept callback; the error callback stays ours. */
	evhttp_bind_listener(h->http, h->lev);
	evconnlistener_set_error_cb(h->lev, on_accept_error);
	if (h->paused)
		evconnlistener_disable(h->lev);
	return 0;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct httpd *h = arg;

	arrived(h, req);
	h->cb(req, h->arg);
}

struct httpd *httpd_new(struct event_base *base, const struct httpd_conf *c, SSL_CTX *ssl,
			httpd_cb cb, void *arg)
{
	struct httpd *h = xcalloc(1, sizeof(*h));

	h->base = base;
	h->conf = *c;
	if (h->conf.max_connections <= 0)
		h->conf.max_connections = HTTPD_DEFAULT_MAX_CONNECTIONS;
	if (h->conf.request_timeout_ms <= 0)
		h->conf.request_timeout_ms = HTTPD_DEFAULT_REQUEST_TIMEOUT_MS;
	h->ssl = ssl;
	h->cb = cb;
	h->arg = arg;
	if (!(h->http = evhttp_new(base)))
		fatal("cannot create an HTTP server");
	h->sweep = evtimer_new(base, guard_sweep, h);
	h->resume = evtimer_new(base, resume, h);
	evhttp_set_max_body_size(h->http, (ev_ssize_t)c->max_body);
	evhttp_set_max_headers_size(h->http, (ev_ssize_t)c->max_headers);
	/* A body over max_body is read to its declared end (within the
	 * deadline) before the 413, so the client, still sending, is not reset
	 * before it can read the answer. */
	evhttp_set_flags(h->http, EVHTTP_SERVER_LINGERING_CLOSE);
	/* Per read and per write: the deadline above bounds the whole request. */
	evhttp_set_timeout(h->http, (int)((h->conf.request_timeout_ms + 999) / 1000));
	evhttp_set_allowed_methods(h->http, (ev_uint16_t)c->methods);
	evhttp_set_gencb(h->http, on_request, h);
	evhttp_set_bevcb(h->http, make_bev, h);
	h->next_live = live;
	live = h;
	return h;
}

struct evhttp *httpd_evhttp(struct httpd *h)
{
	return h->http;
}

size_t httpd_pending(const struct httpd *h)
{
	return h->nguards;
}

uint64_t httpd_refused(const struct httpd *h)
{
	return h->refused;
}

uint64_t httpd_timed_out(const struct httpd *h)
{
	return h->timed_out;
}

void httpd_free(struct httpd **hp)
{
	struct httpd *h = *hp;

	if (!h)
		return;
	for (struct httpd **pp = &live; *pp; pp = &(*pp)->next_live) {
		if (*pp == h) {
			*pp = h->next_live;
			break;
		}
	}
	evhttp_free(h->http); /* frees the bound listener too */
	while (h->guards)
		guard_free(h->guards);
	event_free(h->sweep);
	event_free(h->resume);
	if (h->ssl)
		SSL_CTX_free(h->ssl);
	free(h);
	*hp = NULL;
}
