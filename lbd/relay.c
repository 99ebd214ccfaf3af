/*
 * relay.c - listeners, connect with retry, and the byte relay. See relay.h.
 *
 * Life of a connection:
 *   accept -> CONNECTING (non-blocking connect to a picked backend, timer =
 *   connect timeout; on failure the next backend) -> RELAYING (both ways,
 *   timer = idle timeout) -> closed when both directions saw EOF and all
 *   was written, on a reset, on idle timeout, or by a drain deadline.
 *
 * Interest in events is recomputed after every step (conn_update_events):
 * read a side only when the other side has taken everything so far; write a
 * side only when something waits for it.
 *
 * A connection is freed inside the callback that closes it: only that
 * callback holds it, and it returns right after conn_close().
 */
#define _GNU_SOURCE
#include "lbd/relay.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h> /* events embedded in struct conn: one allocation */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xmalloc.h"

#define RELAY_CHUNK (16 * 1024)
#define ACCEPT_BURST 64
#define MAX_TRIED 17 /* retries are at most 16 */

struct listener {
	struct frontend *fe;
	int fd;
	struct event ev;
	struct event pause; /* re-enables accepting after fd exhaustion */
	char *text;
};

/* One direction of a connection: bytes read from src not yet written to dst. */
struct half {
	char *buf;
	uint32_t off, len;
	bool eof;  /* src sent FIN */
	bool shut; /* we passed the FIN on to dst */
};

enum conn_phase { PH_CONNECTING, PH_RELAYING };

struct conn {
	struct frontend *fe;
	struct backend *be;
	struct conn *fe_prev, *fe_next;
	struct conn *be_prev, *be_next;
	int cfd, bfd;
	short cwant, bwant; /* interest now registered */
	uint8_t phase;
	uint8_t ntried;
	struct backend **tried; /* only while connecting after a failure */
	struct event cev, bev, tev;
	struct half c2b, b2c;
	int64_t last_active_ms;
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} src;
};

/* Shared read buffer: the relay runs on one thread per event base. */
static _Thread_local char relay_buf[RELAY_CHUNK];

static void conn_connect(struct conn *c);
static void conn_update_events(struct conn *c);
static void conn_close(struct conn *c, bool rst);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);

/* ---- listeners ---- */

static int listener_socket(const struct frontend_conf *conf, const struct sockaddr_conf *a,
			   char **err)
{
	int one = 1;
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		*err = xasprintf("%s: socket: %s", a->text, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* SO_REUSEPORT lets a reload bind the same address before it closes
	 * the old socket, so no connection attempt is refused in between. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (a->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (conf->freebind)
		setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, 4096) < 0) {
		*err = xasprintf("%s: %s (frontend %s)", a->text, strerror(errno), conf->name);
		close(fd);
		return -1;
	}
	return fd;
}

int relay_listeners_open(const struct frontend_conf *conf, struct listener ***out, size_t *nout,
			 char **err)
{
	struct listener **ls = xcalloc(conf->nlisten, sizeof(*ls));

	for (size_t i = 0; i < conf->nlisten; i++) {
		int fd = listener_socket(conf, &conf->listen[i], err);
		if (fd < 0) {
			relay_listeners_close(ls, i);
			return -1;
		}
		ls[i] = xcalloc(1, sizeof(**ls));
		ls[i]->fd = fd;
		ls[i]->text = xstrdup(conf->listen[i].text);
	}
	*out = ls;
	*nout = conf->nlisten;
	return 0;
}

void relay_listeners_close(struct listener **ls, size_t nls)
{
	for (size_t i = 0; i < nls; i++) {
		if (!ls[i])
			continue;
		if (ls[i]->fe) {
			event_del(&ls[i]->ev);
			event_del(&ls[i]->pause);
		}
		close(ls[i]->fd);
		free(ls[i]->text);
		free(ls[i]);
	}
	free(ls);
}

static bool warn_ok(struct frontend *fe)
{
	int64_t now = mono_ms();
	if (now - fe->last_warn_ms < 1000)
		return false;
	fe->last_warn_ms = now;
	return true;
}

static void conn_new(struct frontend *fe, int fd, const struct sockaddr *sa, socklen_t salen)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fe = fe;
	c->cfd = fd;
	c->bfd = -1;
	if (salen <= sizeof(c->src))
		memcpy(&c->src, sa, salen);
	c->fe_next = fe->conns;
	if (fe->conns)
		fe->conns->fe_prev = c;
	fe->conns = c;
	fe->active++;
	fe->total++;
	event_assign(&c->cev, fe->base, -1, 0, NULL, NULL);
	event_assign(&c->bev, fe->base, -1, 0, NULL, NULL);
	evtimer_assign(&c->tev, fe->base, conn_timer_cb, c);
	conn_connect(c);
}

static void listener_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	event_add(&l->ev, NULL);
}

static void listener_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct listener *l = arg;
	struct frontend *fe = l->fe;

	for (int i = 0; i < ACCEPT_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Out of descriptors: stop accepting for a moment
				 * rather than spin; clients wait in the backlog. */
				struct timeval tv = {0, 100 * 1000};
				if (warn_ok(fe))
					log_warn("frontend %s: accept: %s; pausing 100ms",
						 fe->conf.name, strerror(errno));
				event_del(&l->ev);
				evtimer_add(&l->pause, &tv);
				return;
			}
			log_warn("frontend %s: accept: %s", fe->conf.name, strerror(errno));
			return;
		}
		if (fe->active >= (uint64_t)fe->conf.max_connections) {
			fe->refused_max++;
			if (warn_ok(fe))
				log_warn("frontend %s: max_connections %d reached, closing new "
					 "connections",
					 fe->conf.name, fe->conf.max_connections);
			close(fd);
			continue;
		}
		conn_new(fe, fd, (struct sockaddr *)&ss, len);
	}
}

static void listeners_start(struct frontend *fe)
{
	for (size_t i = 0; i < fe->nls; i++) {
		struct listener *l = fe->ls[i];
		l->fe = fe;
		event_assign(&l->ev, fe->base, l->fd, EV_READ | EV_PERSIST, listener_accept, l);
		evtimer_assign(&l->pause, fe->base, listener_resume, l);
		event_add(&l->ev, NULL);
		log_info("listening on %s (frontend %s)", l->text, fe->conf.name);
	}
}

/* ---- frontends ---- */

static void frontend_conf_copy(struct frontend_conf *dst, const struct frontend_conf *src)
{
	*dst = *src;
	dst->name = xstrdup(src->name);
	dst->pool = xstrdup(src->pool);
	dst->listen = xcalloc(src->nlisten, sizeof(*dst->listen));
	for (size_t i = 0; i < src->nlisten; i++)
		sockaddr_conf_copy(&dst->listen[i], &src->listen[i]);
	tls_conf_copy(&dst->tls, &src->tls);
}

static void frontend_conf_free(struct frontend_conf *c)
{
	for (size_t i = 0; i < c->nlisten; i++)
		sockaddr_conf_free(&c->listen[i]);
	xfree(&c->listen);
	xfree(&c->name);
	xfree(&c->pool);
	tls_conf_free(&c->tls);
}

struct frontend *frontend_new(struct event_base *base, const struct frontend_conf *conf,
			      struct pool *pool, struct listener **ls, size_t nls)
{
	struct frontend *fe = xcalloc(1, sizeof(*fe));

	frontend_conf_copy(&fe->conf, conf);
	fe->pool = pool;
	fe->base = base;
	fe->ls = ls;
	fe->nls = nls;
	listeners_start(fe);
	return fe;
}

void frontend_update(struct frontend *fe, const struct frontend_conf *conf, struct pool *pool,
		     struct listener **ls, size_t nls)
{
	frontend_conf_free(&fe->conf);
	frontend_conf_copy(&fe->conf, conf);
	fe->pool = pool;
	if (ls) {
		/* The new sockets are bound already (SO_REUSEPORT): accept on
		 * them first, then close the old ones. */
		struct listener **old = fe->ls;
		size_t nold = fe->nls;
		fe->ls = ls;
		fe->nls = nls;
		listeners_start(fe);
		relay_listeners_close(old, nold);
	}
}

void frontend_stop(struct frontend *fe)
{
	relay_listeners_close(fe->ls, fe->nls);
	fe->ls = NULL;
	fe->nls = 0;
}

static void frontend_destroy(struct frontend *fe)
{
	frontend_stop(fe);
	frontend_conf_free(&fe->conf);
	free(fe);
}

void frontend_free(struct frontend *fe)
{
	fe->retired = true;
	while (fe->conns) {
		if (fe->active == 1) {
			conn_close(fe->conns, false); /* frees fe too */
			return;
		}
		conn_close(fe->conns, false);
	}
	frontend_destroy(fe);
}

void frontend_retire(struct frontend *fe)
{
	frontend_stop(fe);
	fe->retired = true;
	fe->pool = NULL;
	if (fe->active == 0)
		frontend_destroy(fe);
}

/* ---- connections ---- */

static void be_list_add(struct conn *c)
{
	struct backend *b = c->be;
	c->be_prev = NULL;
	c->be_next = b->conns;
	if (b->conns)
		b->conns->be_prev = c;
	b->conns = c;
}

static void be_list_del(struct conn *c)
{
	if (c->be_prev)
		c->be_prev->be_next = c->be_next;
	else
		c->be->conns = c->be_next;
	if (c->be_next)
		c->be_next->be_prev = c->be_prev;
	c->be_prev = c->be_next = NULL;
}

static void conn_release_backend(struct conn *c)
{
	if (!c->be)
		return;
	be_list_del(c);
	c->be->active--;
	backend_unref(c->be);
	c->be = NULL;
}

/* Closes both sides. With rst, the sockets are reset rather than closed
 * gracefully, so a reset on one side reaches the other as a reset. */
static void conn_close(struct conn *c, bool rst)
{
	struct frontend *fe = c->fe;
	struct linger lg = {1, 0};

	event_del(&c->cev);
	event_del(&c->bev);
	event_del(&c->tev);
	if (rst) {
		setsockopt(c->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		if (c->bfd >= 0)
			setsockopt(c->bfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->cfd);
	if (c->bfd >= 0)
		close(c->bfd);
	conn_release_backend(c);
	if (c->fe_prev)
		c->fe_prev->fe_next = c->fe_next;
	else
		fe->conns = c->fe_next;
	if (c->fe_next)
		c->fe_next->fe_prev = c->fe_prev;
	free(c->c2b.buf);
	free(c->b2c.buf);
	free(c->tried);
	free(c);
	if (--fe->active == 0 && fe->retired)
		frontend_destroy(fe);
}

/* Counts bytes written for the backend's metrics. */
static void count_bytes(struct conn *c, const struct half *h, ssize_t w)
{
	if (w <= 0 || !c->be)
		return;
	if (h == &c->c2b)
		c->be->bytes_out += (uint64_t)w;
	else
		c->be->bytes_in += (uint64_t)w;
}

/* Writes what is pending in h to dst. Returns -1 on a write error, 0 if
 * something is still pending, 1 if all is written. */
static int half_flush(struct conn *c, struct half *h, int dst)
{
	while (h->len > 0) {
		ssize_t w = write(dst, h->buf + h->off, h->len);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			return -1;
		}
		count_bytes(c, h, w);
		h->off += (uint32_t)w;
		h->len -= (uint32_t)w;
	}
	xfree(&h->buf);
	h->off = 0;
	return 1;
}

/*
 * Moves bytes src -> dst for one direction. Reads at most a few chunks per
 * call so one busy connection cannot starve the others. Returns -1 when the
 * connection must be reset.
 */
static int half_pump(struct conn *c, struct half *h, int src, int dst)
{
	int r = half_flush(c, h, dst);
	if (r <= 0)
		return r;
	for (int i = 0; i < 4 && !h->eof; i++) {
		ssize_t n = read(src, relay_buf, sizeof(relay_buf));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return -1;
		}
		if (n == 0) {
			h->eof = true;
			break;
		}
		c->last_active_ms = mono_ms();
		ssize_t w = write(dst, relay_buf, (size_t)n);
		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return -1;
			w = 0;
		}
		count_bytes(c, h, w);
		if (w < n) {
			/* The peer is slow: keep the rest, pause reading src. */
			h->len = (uint32_t)(n - w);
			h->buf = xmalloc(h->len);
			memcpy(h->buf, relay_buf + w, h->len);
			break;
		}
		if (n < (ssize_t)sizeof(relay_buf))
			break;
	}
	/* Pass a FIN on once everything before it was written. */
	if (h->eof && h->len == 0 && !h->shut) {
		shutdown(dst, SHUT_WR);
		h->shut = true;
	}
	return 0;
}

static bool conn_done(const struct conn *c)
{
	return c->c2b.shut && c->b2c.shut;
}

static void conn_relay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	bool client = fd == c->cfd;
	int r = 0;

	if (client) {
		if (what & EV_WRITE)
			r = half_pump(c, &c->b2c, c->bfd, c->cfd);
		if (r >= 0 && (what & EV_READ))
			r = half_pump(c, &c->c2b, c->cfd, c->bfd);
	} else {
		if (what & EV_WRITE)
			r = half_pump(c, &c->c2b, c->cfd, c->bfd);
		if (r >= 0 && (what & EV_READ))
			r = half_pump(c, &c->b2c, c->bfd, c->cfd);
	}
	if (r < 0) {
		conn_close(c, true);
		return;
	}
	if (conn_done(c)) {
		conn_close(c, false);
		return;
	}
	conn_update_events(c);
}

static void set_interest(struct conn *c, struct event *ev, int fd, short *have, short want)
{
	if (*have == want)
		return;
	event_del(ev);
	*have = want;
	if (!want)
		return;
	event_assign(ev, c->fe->base, fd, want | EV_PERSIST, conn_relay_cb, c);
	event_add(ev, NULL);
}

static void conn_update_events(struct conn *c)
{
	short cw = 0, bw = 0;

	if (!c->c2b.eof && c->c2b.len == 0)
		cw |= EV_READ;
	if (c->b2c.len > 0)
		cw |= EV_WRITE;
	if (!c->b2c.eof && c->b2c.len == 0)
		bw |= EV_READ;
	if (c->c2b.len > 0)
		bw |= EV_WRITE;
	set_interest(c, &c->cev, c->cfd, &c->cwant, cw);
	set_interest(c, &c->bev, c->bfd, &c->bwant, bw);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	if (c->phase == PH_CONNECTING) {
		log_debug("frontend %s: connect to %s timed out", c->fe->conf.name,
			  c->be->conf.name);
		c->be->connect_failures++;
		conn_connect(c);
		return;
	}
	int64_t idle = mono_ms() - c->last_active_ms;
	if (idle >= c->fe->conf.idle_timeout_ms) {
		conn_close(c, false);
		return;
	}
	int64_t left = c->fe->conf.idle_timeout_ms - idle;
	struct timeval tv = {left / 1000, (left % 1000) * 1000};
	evtimer_add(&c->tev, &tv);
}

static void conn_established(struct conn *c)
{
	int64_t ms = c->fe->conf.idle_timeout_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	c->phase = PH_RELAYING;
	c->be->total++;
	xfree(&c->tried);
	c->last_active_ms = mono_ms();
	event_del(&c->bev);
	c->bwant = 0;
	evtimer_add(&c->tev, &tv);
	conn_update_events(c);
}

static void conn_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0) {
		event_del(&c->tev);
		conn_established(c);
		return;
	}
	log_debug("frontend %s: connect to %s: %s", c->fe->conf.name, c->be->conf.name,
		  strerror(err));
	c->be->connect_failures++;
	conn_connect(c);
}

/* Drops the backend being tried (if any) and tries the next one. */
static void conn_connect(struct conn *c)
{
	struct frontend *fe = c->fe;

	for (;;) {
		if (c->be) {
			fe->retried++;
			if (!c->tried)
				c->tried = xcalloc(MAX_TRIED, sizeof(*c->tried));
			c->tried[c->ntried++] = c->be;
			event_del(&c->bev);
			event_del(&c->tev);
			c->bwant = 0;
			close(c->bfd);
			c->bfd = -1;
			conn_release_backend(c);
		}
		/* tried[] holds pointers only to compare; a backend freed
		 * meanwhile cannot be picked again, so no reference is needed. */
		struct backend *b = NULL;
		if (fe->pool && c->ntried <= fe->conf.retries)
			b = pool_pick(fe->pool, &c->src.sa, c->tried, c->ntried);
		if (!b) {
			fe->no_backend++;
			if (warn_ok(fe))
				log_warn("frontend %s: no backend reachable for a client after "
					 "%u attempts",
					 fe->conf.name, c->ntried);
			conn_close(c, false);
			return;
		}
		c->be = b;
		backend_ref(b);
		b->active++;
		be_list_add(c);

		const struct sockaddr_conf *a = &b->conf.addr;
		c->bfd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->bfd < 0) {
			if (warn_ok(fe))
				log_warn("frontend %s: socket: %s", fe->conf.name, strerror(errno));
			conn_close(c, false);
			return;
		}
		int one = 1;
		setsockopt(c->bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->phase = PH_CONNECTING;
		if (connect(c->bfd, (const struct sockaddr *)&a->ss, a->len) == 0) {
			conn_established(c);
			return;
		}
		if (errno == EINPROGRESS) {
			int64_t ms = fe->conf.connect_timeout_ms;
			struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
			event_assign(&c->bev, fe->base, c->bfd, EV_WRITE, conn_connect_cb, c);
			event_add(&c->bev, NULL);
			evtimer_add(&c->tev, &tv);
			return;
		}
		log_debug("frontend %s: connect to %s: %s", fe->conf.name, b->conf.name,
			  strerror(errno));
		b->connect_failures++;
	}
}

size_t relay_close_backend_conns(struct backend *b, size_t n)
{
	size_t closed = 0;

	/* Hold b: closing its last connection may drop its last reference. */
	backend_ref(b);
	while (b->conns && closed < n) {
		conn_close(b->conns, false);
		closed++;
	}
	backend_unref(b);
	return closed;
}
