/*
 * relay.c - workers, listeners, connect with retry, and the byte relay.
 * See relay.h.
 *
 * Life of a connection (all on the worker that accepted it):
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
 *
 * The hot path touches only its worker's memory:
 *   - bytes and connect times are counted in the worker's own slot of the
 *     backend's counters (pool.h, backend_wcount), summed when read;
 *   - what a slow peer could not take yet goes to a buffer from the
 *     worker's free list, given back once written;
 *   - a bulk direction borrows a pipe from the worker's pool for as long as
 *     bytes sit in it and gives it back empty, so an idle connection holds
 *     its two sockets and nothing else, whatever it moved before;
 *   - activity is stamped with the worker's coarse clock (w->now_ms, moved
 *     on by the QUIESCE_MS tick), not with a clock call per read.
 *
 * Replay (frontend retry_on_empty_response, HAProxy's retry-on
 * empty-response with redispatch): until the backend sends its first byte,
 * a copy of what the client sent is kept (c->kept, at most KEEP_MAX bytes:
 * a TLS ClientHello or a small request; a worker's copies at most
 * KEEP_BUDGET). A backend that resets the connection before that byte, or
 * closes it with client bytes kept and before the client's own FIN (one
 * that died or restarted between its kernel's accept and its answer), is
 * then left for another one, which is
 * given the copy (conn_redispatch), within the same retries budget and
 * with the same picks as a failed connect. Once the backend has sent a byte,
 * or the client more than KEEP_MAX, the copy is freed and the connection
 * relays as without it: the flag c->keeping is all a read tests.
 */
#define _GNU_SOURCE
#include "lbd/relay.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h> /* events embedded in struct conn: one allocation */
#include <event2/thread.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "lbd/epoch.h"
#include "lbd/handover.h"

#define RELAY_CHUNK (16 * 1024)
#define ACCEPT_BURST 64
#define MAX_TRIED 17		 /* retries are at most 16 */
#define QUIESCE_MS 20		 /* how often a worker tells the epoch it holds nothing */
#define REAP_MS 100		 /* how often main looks for retired frontends to free */
#define SPLICE_AFTER (64 * 1024) /* back-to-back full reads before a direction splices */
#define PIPE_SIZE (256 * 1024)
#define PIPE_POOL 4	    /* empty pipes a worker keeps for its bulk directions */
#define BUF_POOL 16	    /* RELAY_CHUNK buffers a worker keeps for slow peers */
#define SPARES_IDLE_MS 1000 /* spares unused that long are let go */

/* Client bytes kept for a replay, at most: a replay fits one worker buffer. */
#define KEEP_MAX RELAY_CHUNK
_Static_assert(KEEP_MAX <= UINT16_MAX, "conn.nkept is 16 bits");
/* Kept bytes a worker holds at most, over all its connections: past it, a
 * new copy is not begun (and one that would pass it is let go), so clients
 * that send and wait cannot pin more memory than this. */
#define KEEP_BUDGET (8u << 20)
/* half_pump's results beside -1 (reset): the backend failed before its
 * first byte while the client's bytes are kept (see conn_redispatch). */
#define PUMP_BACKEND_RESET (-2)
#define PUMP_BACKEND_EOF (-3)

struct worker;

struct listener {
	struct worker *w;
	struct frontend *fe; /* the worker's to read once listening */
	int fd;
	bool listening; /* worker: ev is added */
	struct event ev;
	struct event pause;	/* re-enables accepting after fd exhaustion */
	struct listener *wnext; /* worker's list */
	char *text;
};

/* One direction of a connection: bytes read from src not yet written to dst. */
struct half {
	char *buf; /* user-space leftovers (read/write mode): a worker buffer */
	uint32_t off, len;
	uint32_t in_pipe; /* bytes in the pipe (splice mode) */
	int pipe[2];	  /* a worker pipe while bytes sit in it, else -1 */
	uint32_t moved;	  /* bytes of back-to-back full reads: decides the switch to splice */
	bool bulk;	  /* the direction splices (when a pipe can be had) */
	bool eof;	  /* src sent FIN */
	bool shut;	  /* we passed the FIN on to dst */
	uint64_t sent;	  /* bytes written to dst (the connection log) */
};

enum conn_phase { PH_HANDSHAKE, PH_CONNECTING, PH_RELAYING };

struct conn {
	struct worker *w;
	struct frontend *fe;
	struct backend *be;
	struct conn *prev, *next; /* worker's list */
	int cfd, bfd;
	short cwant, bwant; /* interest now registered */
	uint8_t phase;
	uint8_t ntried;
	bool tls_read_wants_write; /* SSL_read needs the socket writable */
	bool keeping;		   /* no backend byte yet: client bytes are copied to kept */
	SSL *ssl;		   /* mode tls: the client side */
	struct backend **tried;	   /* only while connecting after a failure, or keeping */
	char *kept;		   /* keeping: what the client sent so far (nkept bytes) */
	struct event cev, bev, tev;
	struct half c2b, b2c;
	int64_t last_active_ms; /* the worker's coarse clock at the last read */
	int64_t connect_us;	/* when the current connect() started */
	int64_t start_ms;
	uint8_t end; /* enum conn_end: why it ends, once known */
	/* Of kept. Here it fills a hole: 616 bytes, the same malloc chunk as
	 * a conn without replay (608). */
	uint16_t nkept;
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} src;
};

enum cmd_type { CMD_LISTEN, CMD_UNLISTEN, CMD_SET_FE, CMD_CLOSE_BACKEND, CMD_EXIT };

struct cmd {
	enum cmd_type type;
	struct listener *l;
	struct frontend *fe;
	struct backend *b; /* CLOSE_BACKEND: holds a reference */
	enum conn_end why; /* CLOSE_BACKEND */
};

struct worker {
	struct relay *r;
	int id;
	pthread_t thread;
	struct event_base *base;
	int64_t now_ms;		 /* coarse clock: mono_ms() at the last QUIESCE_MS tick */
	int pipes[PIPE_POOL][2]; /* empty pipes, ready for a bulk direction */
	int npipes;
	char *bufs[BUF_POOL]; /* free RELAY_CHUNK buffers */
	int nbufs;
	int64_t spares_used_ms; /* when a spare pipe or buffer was last taken */
	size_t kept_bytes;	/* of its connections' replay copies (KEEP_BUDGET) */
	int notify_fd;		/* eventfd: the main thread's doorbell */
	struct event *notify;
	struct event *quiesce;
	pthread_mutex_t mu;
	struct cmd *q; /* under mu */
	size_t nq, capq;
	struct conn *conns;
	struct listener *ls;
};

struct relay {
	int n;
	struct worker *w;
	struct epoch *ep;
	struct frontend **retired; /* main thread */
	size_t nretired;
	struct event *reap;
	bool hold;		/* main thread: relay_hold() */
	struct frontend **held; /* frontends waiting for relay_release() */
	size_t nheld;
};

/* Shared read buffer: one per worker thread. */
static _Thread_local char relay_buf[RELAY_CHUNK];

static void conn_connect(struct conn *c);
static void conn_connect_to(struct conn *c, struct backend *b);
static void conn_update_events(struct conn *c);
static void conn_rearm_timer(struct conn *c);
static void conn_close(struct conn *c, bool rst);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void listener_accept(evutil_socket_t lfd, short what, void *arg);
static void listener_resume(evutil_socket_t fd, short what, void *arg);
static void listeners_start(struct frontend *fe);

/* ---- commands from the main thread ---- */

static void worker_send(struct worker *w, struct cmd c)
{
	pthread_mutex_lock(&w->mu);
	if (w->nq == w->capq) {
		w->capq = w->capq ? w->capq * 2 : 8;
		w->q = xrealloc(w->q, w->capq * sizeof(*w->q));
	}
	w->q[w->nq++] = c;
	pthread_mutex_unlock(&w->mu);
	uint64_t one = 1;
	/* A full counter (never, in practice) still wakes the worker. */
	if (write(w->notify_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("worker %d: cannot wake it: %s", w->id, strerror(errno));
}

static void listener_free(struct listener *l)
{
	close(l->fd);
	free(l->text);
	free(l);
}

static void worker_unlisten(struct worker *w, struct listener *l)
{
	struct listener **pp = &w->ls;

	while (*pp && *pp != l)
		pp = &(*pp)->wnext;
	if (*pp)
		*pp = l->wnext;
	if (l->fe)
		atomic_fetch_sub(&l->fe->live_listeners, 1);
	if (l->listening) {
		event_del(&l->ev);
		event_del(&l->pause);
	}
	listener_free(l);
}

/* Takes one close from b's budget, shared by all workers. */
static bool take_close(struct backend *b)
{
	int64_t v = atomic_load(&b->close_budget);

	while (v > 0)
		if (atomic_compare_exchange_weak(&b->close_budget, &v, v - 1))
			return true;
	return false;
}

static void worker_close_backend(struct worker *w, struct backend *b, enum conn_end why)
{
	struct conn *c = w->conns, *next;

	for (; c; c = next) {
		next = c->next;
		if (c->be == b && c->phase == PH_RELAYING) {
			if (!take_close(b))
				return;
			c->end = why;
			conn_close(c, false);
		}
	}
}

static void worker_exit(struct worker *w)
{
	while (w->conns) {
		w->conns->end = END_STOPPING;
		conn_close(w->conns, false);
	}
	while (w->ls)
		worker_unlisten(w, w->ls);
	event_base_loopbreak(w->base);
}

static void worker_run_cmd(struct worker *w, struct cmd *c)
{
	switch (c->type) {
	case CMD_LISTEN:
		c->l->wnext = w->ls;
		w->ls = c->l;
		event_assign(&c->l->ev, w->base, c->l->fd, EV_READ | EV_PERSIST, listener_accept,
			     c->l);
		evtimer_assign(&c->l->pause, w->base, listener_resume, c->l);
		event_add(&c->l->ev, NULL);
		c->l->listening = true;
		break;
	case CMD_UNLISTEN:
		worker_unlisten(w, c->l);
		break;
	case CMD_SET_FE:
		atomic_fetch_sub(&c->l->fe->live_listeners, 1);
		c->l->fe = c->fe;
		break;
	case CMD_CLOSE_BACKEND:
		worker_close_backend(w, c->b, c->why);
		backend_unref(c->b);
		break;
	case CMD_EXIT:
		worker_exit(w);
		break;
	}
}

static void worker_notify(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct cmd *q;
	size_t n;
	uint64_t count;

	if (fd >= 0 && read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_warn("worker %d: doorbell: %s", w->id, strerror(errno));
	pthread_mutex_lock(&w->mu);
	q = w->q;
	n = w->nq;
	w->q = NULL;
	w->nq = w->capq = 0;
	pthread_mutex_unlock(&w->mu);
	for (size_t i = 0; i < n; i++)
		worker_run_cmd(w, &q[i]);
	free(q);
}

static void worker_spares_free(struct worker *w);

static void worker_quiesce(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	w->now_ms = mono_ms();
	epoch_quiesce(w->r->ep, w->id);
	/* A quiet worker gives its spares back: at rest lbd holds what it
	 * held before the traffic, so a leak still shows. */
	if ((w->npipes > 0 || w->nbufs > 0) && w->now_ms - w->spares_used_ms >= SPARES_IDLE_MS)
		worker_spares_free(w);
}

/* ---- a worker's spare pipes and buffers (its thread only) ---- */

/* An empty pipe for a bulk direction; false when none can be made (out
 * of descriptors): the direction then reads and writes for now. */
static bool worker_pipe_get(struct worker *w, int p[2])
{
	w->spares_used_ms = w->now_ms;
	if (w->npipes > 0) {
		w->npipes--;
		p[0] = w->pipes[w->npipes][0];
		p[1] = w->pipes[w->npipes][1];
		return true;
	}
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) {
		p[0] = p[1] = -1;
		return false;
	}
	fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE);
	return true;
}

/* Takes back a pipe; empty is the caller's promise (in_pipe == 0). */
static void worker_pipe_put(struct worker *w, int p[2])
{
	if (w->npipes < PIPE_POOL) {
		w->pipes[w->npipes][0] = p[0];
		w->pipes[w->npipes][1] = p[1];
		w->npipes++;
	} else {
		close(p[0]);
		close(p[1]);
	}
	p[0] = p[1] = -1;
}

static char *worker_buf_get(struct worker *w)
{
	w->spares_used_ms = w->now_ms;
	return w->nbufs > 0 ? w->bufs[--w->nbufs] : xmalloc(RELAY_CHUNK);
}

static void worker_buf_put(struct worker *w, char **buf)
{
	if (w->nbufs < BUF_POOL)
		w->bufs[w->nbufs++] = *buf;
	else
		free(*buf);
	*buf = NULL;
}

/* On the worker's thread, or after it ended. */
static void worker_spares_free(struct worker *w)
{
	while (w->npipes > 0) {
		w->npipes--;
		close(w->pipes[w->npipes][0]);
		close(w->pipes[w->npipes][1]);
	}
	while (w->nbufs > 0)
		free(w->bufs[--w->nbufs]);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	event_base_dispatch(w->base);
	return NULL;
}

/* ---- the relay (main thread) ---- */

static void reap_retired(evutil_socket_t fd, short what, void *arg);

static void frontend_destroy(void *arg)
{
	struct frontend *fe = arg;

	if (fe->ssl_ctx)
		SSL_CTX_free(fe->ssl_ctx);
	pool_release(fe->pool);
	for (size_t i = 0; i < fe->conf.nlisten; i++)
		sockaddr_conf_free(&fe->conf.listen[i]);
	free(fe->conf.listen);
	free(fe->conf.name);
	free(fe->conf.pool);
	tls_conf_free(&fe->conf.tls);
	free(fe->ls);
	free(fe);
}

/* See relay.h: tests replace it to make a worker fail to start. */
int (*relay_thread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *),
			   void *) = pthread_create;

struct relay *relay_start(struct event_base *main_base, int nthreads, char **err)
{
	struct relay *r = xcalloc(1, sizeof(*r));
	struct timeval q = {0, QUIESCE_MS * 1000};
	struct worker *w;
	int i, rc;

	if (nthreads <= 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		nthreads = cpus > 0 ? (int)cpus : 1;
	}
	r->n = nthreads;
	r->ep = epoch_new(main_base, nthreads);
	r->reap = evtimer_new(main_base, reap_retired, r);
	r->w = xcalloc((size_t)nthreads, sizeof(*r->w));
	for (i = 0; i < nthreads; i++) {
		w = &r->w[i];
		w->r = r;
		w->id = i;
		w->notify_fd = -1;
		w->now_ms = mono_ms();
		pthread_mutex_init(&w->mu, NULL);
		/* A worker's loop is touched by its own thread only (the main
		 * thread rings an eventfd), so it needs none of libevent's
		 * locks: they cost a mutex pair on every event change. */
		struct event_config *ec = event_config_new();
		event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
		w->base = event_base_new_with_config(ec);
		event_config_free(ec);
		if (!w->base) {
			*err = xasprintf("worker %d: cannot create its event loop", i);
			goto fail;
		}
		w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w->notify_fd < 0) {
			*err = xasprintf("worker %d: eventfd: %s", i, strerror(errno));
			goto fail;
		}
		w->notify =
		    event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST, worker_notify, w);
		event_add(w->notify, NULL);
		/* Keeps the loop alive while it has nothing else to do. */
		w->quiesce = event_new(w->base, -1, EV_PERSIST, worker_quiesce, w);
		event_add(w->quiesce, &q);
		epoch_quiesce(r->ep, i);
		/* pthread_create returns the error; it does not set errno. */
		if ((rc = relay_thread_create(&w->thread, NULL, worker_main, w)) != 0) {
			*err = xasprintf("cannot start worker thread %d: %s", i, strerror(rc));
			goto fail;
		}
	}
	log_info("relay: %d worker threads", nthreads);
	return r;
fail:
	/* Worker i has no thread: undo what it got. Workers 0..i-1 run:
	 * stop and join them, then free the rest as at exit. */
	if (w->quiesce)
		event_free(w->quiesce);
	if (w->notify)
		event_free(w->notify);
	if (w->notify_fd >= 0)
		close(w->notify_fd);
	if (w->base)
		event_base_free(w->base);
	pthread_mutex_destroy(&w->mu);
	r->n = i;
	relay_stop(r);
	relay_free(r);
	return NULL;
}

void relay_stop(struct relay *r)
{
	if (!r || !r->w)
		return;
	for (int i = 0; i < r->n; i++)
		worker_send(&r->w[i], (struct cmd){.type = CMD_EXIT});
	for (int i = 0; i < r->n; i++) {
		struct worker *w = &r->w[i];
		pthread_join(w->thread, NULL);
		/* Commands sent after the exit (none should be) still own refs. */
		worker_notify(-1, 0, w);
		event_free(w->notify);
		close(w->notify_fd);
		event_free(w->quiesce);
		event_base_free(w->base);
		pthread_mutex_destroy(&w->mu);
		worker_spares_free(w);
	}
	xfree(&r->w);
}

void relay_free(struct relay *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nretired; i++)
		frontend_destroy(r->retired[i]);
	free(r->retired);
	free(r->held);
	epoch_free(r->ep);
	event_free(r->reap);
	free(r);
}

struct epoch *relay_epoch(const struct relay *r)
{
	return r->ep;
}

int relay_nthreads(const struct relay *r)
{
	return r->n;
}

uint64_t relay_retired_active(const struct relay *r)
{
	uint64_t n = 0;
	for (size_t i = 0; i < r->nretired; i++)
		n += atomic_load(&r->retired[i]->active);
	return n;
}

static void reap_retired(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	size_t keep = 0;

	for (size_t i = 0; i < r->nretired; i++) {
		struct frontend *fe = r->retired[i];
		/* A worker's last touch of fe is the decrement of active, or
		 * of live_listeners, to 0; the epoch covers what follows. */
		if (atomic_load(&fe->active) == 0 && atomic_load(&fe->live_listeners) == 0)
			epoch_defer(r->ep, frontend_destroy, fe);
		else
			r->retired[keep++] = fe;
	}
	r->nretired = keep;
	if (keep > 0) {
		struct timeval tv = {0, REAP_MS * 1000};
		evtimer_add(r->reap, &tv);
	}
}

size_t relay_close_backend_conns(struct relay *r, struct backend *b, size_t n, enum conn_end why)
{
	if (n == 0 || !r->w)
		return 0;
	/* Any worker may hold b's connections: all are asked, and together
	 * they close no more than the budget allows. */
	atomic_store(&b->close_budget, (int64_t)n);
	for (int i = 0; i < r->n; i++) {
		backend_ref(b);
		worker_send(&r->w[i], (struct cmd){.type = CMD_CLOSE_BACKEND, .b = b, .why = why});
	}
	return n;
}

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
	/* SO_REUSEPORT: one socket per worker on the same address, and a
	 * reload binds before it closes, so no connect is refused between. */
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

/*
 * One socket per worker for each address; sockets an old lbd handed over
 * (handover.h) are taken first, every one of them, even when this lbd has
 * fewer workers: a connection waiting in the accept queue of a socket
 * nobody accepts on would be lost. A worker may then serve two.
 */
int relay_listeners_open(struct relay *r, const struct frontend_conf *conf, struct listener ***out,
			 size_t *nout, char **err)
{
	struct listener **ls = NULL;
	size_t n = 0;

	for (size_t a = 0; a < conf->nlisten; a++) {
		const struct sockaddr_conf *addr = &conf->listen[a];
		for (size_t k = 0;; k++) {
			int fd = handover_take(HANDOVER_RELAY, (const struct sockaddr *)&addr->ss,
					       addr->len);
			if (fd < 0 && k >= (size_t)r->n)
				break;
			if (fd < 0 && (fd = listener_socket(conf, addr, err)) < 0) {
				relay_listeners_close(ls, n);
				return -1;
			}
			ls = xrealloc(ls, (n + 1) * sizeof(*ls));
			ls[n] = xcalloc(1, sizeof(**ls));
			ls[n]->fd = fd;
			ls[n]->w = &r->w[k % (size_t)r->n];
			ls[n]->text = xstrdup(addr->text);
			n++;
		}
	}
	*out = ls ? ls : xcalloc(1, sizeof(*ls));
	*nout = n;
	return 0;
}

void relay_hold(struct relay *r)
{
	r->hold = true;
}

bool relay_holding(const struct relay *r)
{
	return r->hold;
}

void relay_release(struct relay *r)
{
	r->hold = false;
	for (size_t i = 0; i < r->nheld; i++)
		if (!r->held[i]->retired && r->held[i]->nls > 0)
			listeners_start(r->held[i]);
	xfree(&r->held);
	r->nheld = 0;
}

size_t relay_frontend_fds(const struct frontend *fe, int *fds, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < fe->nls && n < max; i++)
		fds[n++] = fe->ls[i]->fd;
	return n;
}

void relay_listeners_close(struct listener **ls, size_t nls)
{
	for (size_t i = 0; i < nls; i++)
		if (ls[i])
			listener_free(ls[i]);
	free(ls);
}

/* Main thread: hands listeners to their workers (they own them from now). */
static void listeners_start(struct frontend *fe)
{
	struct relay *r = fe->r;

	if (r->hold) {
		r->held = xrealloc(r->held, (r->nheld + 1) * sizeof(*r->held));
		r->held[r->nheld++] = fe;
		return;
	}
	for (size_t i = 0; i < fe->nls; i++) {
		struct listener *l = fe->ls[i];
		l->fe = fe;
		atomic_fetch_add(&fe->live_listeners, 1);
		worker_send(l->w, (struct cmd){.type = CMD_LISTEN, .l = l});
		if (i == 0 || strcmp(l->text, fe->ls[i - 1]->text) != 0)
			log_info("listening on %s (frontend %s)", l->text, fe->conf.name);
	}
}

static void listeners_stop(struct frontend *fe)
{
	for (size_t i = 0; i < fe->nls; i++)
		worker_send(fe->ls[i]->w, (struct cmd){.type = CMD_UNLISTEN, .l = fe->ls[i]});
	xfree(&fe->ls);
	fe->nls = 0;
}

static bool warn_ok(struct frontend *fe)
{
	int64_t now = mono_ms();
	int64_t last = atomic_load_explicit(&fe->last_warn_ms, memory_order_relaxed);

	if (now - last < 1000)
		return false;
	return atomic_compare_exchange_strong(&fe->last_warn_ms, &last, now);
}

/* ---- frontends (main thread) ---- */

static void frontend_conf_copy(struct frontend_conf *dst, const struct frontend_conf *src)
{
	*dst = *src;
	dst->name = xstrdup(src->name);
	dst->pool = xstrdup(src->pool);
	dst->listen = xcalloc(src->nlisten ? src->nlisten : 1, sizeof(*dst->listen));
	for (size_t i = 0; i < src->nlisten; i++)
		sockaddr_conf_copy(&dst->listen[i], &src->listen[i]);
	tls_conf_copy(&dst->tls, &src->tls);
}

static struct frontend *frontend_make(struct relay *r, const struct frontend_conf *conf,
				      struct pool *pool)
{
	struct frontend *fe = xcalloc(1, sizeof(*fe));

	frontend_conf_copy(&fe->conf, conf);
	fe->r = r;
	fe->pool = pool;
	pool_hold(pool);
	return fe;
}

/* TCP keepalive on a relayed socket, so a peer that vanished is found on a
 * quiet connection (a WATCH) without waiting for the idle timeout. The client
 * side gets it from the listening socket (accepted sockets inherit it: no
 * call per connection); a backend socket gets it at connect, with
 * TCP_USER_TIMEOUT, which also bounds how long written data may stay
 * unacknowledged. Best effort: a failure changes nothing but the detection
 * time. */
static void sock_keepalive(const struct frontend_conf *conf, int fd, bool backend)
{
	int on = conf->keepalive_idle_ms > 0;

	if (on || !backend) /* a listener may have had it on before a reload */
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	if (on) {
		int idle = (int)(conf->keepalive_idle_ms / 1000);
		int intvl = (int)(conf->keepalive_interval_ms / 1000), cnt = conf->keepalive_count;
		idle = idle > 0 ? idle : 1;
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	}
	if (backend && conf->user_timeout_ms > 0) {
		unsigned ms = (unsigned)conf->user_timeout_ms;
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
	}
}

/* The frontend's keepalive settings on its listening sockets, for the
 * connections they accept from now on. */
static void listeners_keepalive(const struct frontend *fe)
{
	for (size_t i = 0; i < fe->nls; i++)
		sock_keepalive(&fe->conf, fe->ls[i]->fd, false);
}

struct frontend *frontend_new(struct relay *r, const struct frontend_conf *conf, struct pool *pool,
			      struct listener **ls, size_t nls, SSL_CTX *ctx)
{
	struct frontend *fe = frontend_make(r, conf, pool);

	fe->ssl_ctx = ctx;
	fe->ls = ls;
	fe->nls = nls;
	listeners_keepalive(fe);
	listeners_start(fe);
	return fe;
}

#define SAME_STR(x, y) ((!(x) && !(y)) || ((x) && (y) && strcmp((x), (y)) == 0))
static bool frontend_conf_equal(const struct frontend_conf *a, const struct frontend_conf *b)
{
	return a->mode == b->mode && a->max_connections == b->max_connections &&
	       a->connect_timeout_ms == b->connect_timeout_ms &&
	       a->idle_timeout_ms == b->idle_timeout_ms && a->retries == b->retries &&
	       a->freebind == b->freebind && SAME_STR(a->pool, b->pool) &&
	       a->fin_timeout_ms == b->fin_timeout_ms && a->user_timeout_ms == b->user_timeout_ms &&
	       a->keepalive_idle_ms == b->keepalive_idle_ms &&
	       a->keepalive_interval_ms == b->keepalive_interval_ms &&
	       a->keepalive_count == b->keepalive_count &&
	       a->log_connections == b->log_connections &&
	       a->retry_on_empty_response == b->retry_on_empty_response &&
	       a->tls.verify == b->tls.verify && SAME_STR(a->tls.ca, b->tls.ca) &&
	       SAME_STR(a->tls.cert, b->tls.cert) && SAME_STR(a->tls.key, b->tls.key) &&
	       SAME_STR(a->tls.sni, b->tls.sni);
}
#undef SAME_STR

struct frontend *frontend_update(struct frontend *fe, const struct frontend_conf *conf,
				 struct pool *pool, struct listener **ls, size_t nls, SSL_CTX *ctx)
{
	if (!ls && !ctx && pool == fe->pool && frontend_conf_equal(&fe->conf, conf))
		return fe;

	struct frontend *nfe = frontend_make(fe->r, conf, pool);
	nfe->ssl_ctx = ctx;
	atomic_store(&nfe->tls_failures, atomic_load(&fe->tls_failures));
	/* Counters carry on: the frontend is the same to operators. */
	atomic_store(&nfe->total, atomic_load(&fe->total));
	atomic_store(&nfe->refused_max, atomic_load(&fe->refused_max));
	atomic_store(&nfe->no_backend, atomic_load(&fe->no_backend));
	atomic_store(&nfe->retried, atomic_load(&fe->retried));
	if (ls) {
		nfe->ls = ls;
		nfe->nls = nls;
		listeners_keepalive(nfe);
		listeners_start(nfe);
		listeners_stop(fe);
	} else {
		/* Same sockets, new settings: workers switch each listener. */
		nfe->ls = fe->ls;
		nfe->nls = fe->nls;
		fe->ls = NULL;
		fe->nls = 0;
		listeners_keepalive(nfe);
		for (size_t i = 0; i < nfe->nls; i++) {
			atomic_fetch_add(&nfe->live_listeners, 1);
			worker_send(nfe->ls[i]->w,
				    (struct cmd){.type = CMD_SET_FE, .l = nfe->ls[i], .fe = nfe});
		}
	}
	return nfe;
}

void frontend_stop(struct frontend *fe)
{
	listeners_stop(fe);
}

void frontend_retire(struct frontend *fe)
{
	struct relay *r = fe->r;

	listeners_stop(fe);
	fe->retired = true;
	r->retired = xrealloc(r->retired, (r->nretired + 1) * sizeof(*r->retired));
	r->retired[r->nretired++] = fe;
	if (!evtimer_pending(r->reap, NULL)) {
		struct timeval tv = {0, REAP_MS * 1000};
		evtimer_add(r->reap, &tv);
	}
}

void frontend_free(struct frontend *fe)
{
	/* Workers are gone: their listeners and connections with them. */
	xfree(&fe->ls);
	fe->nls = 0;
	frontend_destroy(fe);
}

/* ---- connections (worker threads) ---- */

static void listener_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	event_add(&l->ev, NULL);
}

static void conn_handshake_cb(evutil_socket_t fd, short what, void *arg);

/* Mode tls: completes the server handshake, then connects to a backend.
 * Backends are not touched for clients that fail it. */
static void conn_handshake(struct conn *c)
{
	int r = SSL_accept(c->ssl);
	short want;

	if (r == 1) {
		event_del(&c->cev);
		c->cwant = 0;
		event_del(&c->tev);
		conn_connect(c);
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		want = EV_READ;
		break;
	case SSL_ERROR_WANT_WRITE:
		want = EV_WRITE;
		break;
	default: {
		char buf[160];
		ERR_error_string_n(ERR_peek_last_error(), buf, sizeof(buf));
		ERR_clear_error();
		atomic_fetch_add_explicit(&c->fe->tls_failures, 1, memory_order_relaxed);
		log_debug("frontend %s: TLS handshake failed: %s", c->fe->conf.name, buf);
		conn_close(c, false);
		return;
	}
	}
	event_del(&c->cev);
	event_assign(&c->cev, c->w->base, c->cfd, want, conn_handshake_cb, c);
	event_add(&c->cev, NULL);
}

static void conn_handshake_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_handshake(arg);
}

static void conn_new(struct worker *w, struct frontend *fe, int fd, const struct sockaddr *sa,
		     socklen_t salen)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->w = w;
	c->fe = fe;
	c->cfd = fd;
	c->bfd = -1;
	if (fe->conf.log_connections) /* its only reader: no clock call otherwise */
		c->start_ms = mono_ms();
	c->c2b.pipe[0] = c->c2b.pipe[1] = -1;
	c->b2c.pipe[0] = c->b2c.pipe[1] = -1;
	/* A replay needs a retry to spend, and room in the worker's budget. */
	c->keeping =
	    fe->conf.retry_on_empty_response && fe->conf.retries > 0 && w->kept_bytes < KEEP_BUDGET;
	if (salen <= sizeof(c->src))
		memcpy(&c->src, sa, salen);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	atomic_fetch_add_explicit(&fe->total, 1, memory_order_relaxed);
	event_assign(&c->cev, w->base, -1, 0, NULL, NULL);
	event_assign(&c->bev, w->base, -1, 0, NULL, NULL);
	evtimer_assign(&c->tev, w->base, conn_timer_cb, c);
	if (fe->ssl_ctx) {
		int64_t ms = fe->conf.connect_timeout_ms;
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		c->ssl = SSL_new(fe->ssl_ctx);
		if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
			ERR_clear_error();
			conn_close(c, false);
			return;
		}
		c->phase = PH_HANDSHAKE;
		evtimer_add(&c->tev, &tv); /* the handshake gets the connect timeout */
		conn_handshake(c);
		return;
	}
	conn_connect(c);
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
		uint64_t was = atomic_fetch_add(&fe->active, 1);
		if (was >= (uint64_t)fe->conf.max_connections) {
			atomic_fetch_sub(&fe->active, 1);
			atomic_fetch_add_explicit(&fe->refused_max, 1, memory_order_relaxed);
			if (warn_ok(fe))
				log_warn("frontend %s: max_connections %d reached, closing new "
					 "connections",
					 fe->conf.name, fe->conf.max_connections);
			close(fd);
			continue;
		}
		conn_new(l->w, fe, fd, (struct sockaddr *)&ss, len);
	}
}

static void conn_release_backend(struct conn *c)
{
	if (!c->be)
		return;
	atomic_fetch_sub_explicit(&c->be->active, 1, memory_order_relaxed);
	backend_unref(c->be);
	c->be = NULL;
}

static void half_free(struct worker *w, struct half *h)
{
	if (h->buf)
		worker_buf_put(w, &h->buf);
	if (h->pipe[0] < 0)
		return;
	if (h->in_pipe == 0) {
		worker_pipe_put(w, h->pipe);
	} else {
		close(h->pipe[0]);
		close(h->pipe[1]);
	}
}

static const char *const end_names[END_MAX] = {
    [END_NONE] = "unknown",
    [END_CLIENT_FIN] = "client_fin",
    [END_BACKEND_FIN] = "backend_fin",
    [END_RESET] = "reset",
    [END_IDLE] = "idle_timeout",
    [END_FIN_TIMEOUT] = "fin_timeout",
    [END_DRAIN] = "drain",
    [END_BACKEND_DOWN] = "backend_down",
    [END_REBALANCE] = "rebalance",
    [END_STOPPING] = "stopping",
    [END_NO_BACKEND] = "no_backend",
    [END_TLS] = "tls_handshake",
};

const char *relay_end_name(enum conn_end e)
{
	return (unsigned)e < END_MAX ? end_names[e] : "unknown";
}

/* The connection log: one line per closed connection, as HAProxy's
 * `option tcplog`: who, through what, to which backend, how long, bytes each
 * way, and why it ended. */
static void conn_log(const struct conn *c)
{
	char addr[INET6_ADDRSTRLEN + 8] = "-", host[INET6_ADDRSTRLEN] = "";
	int64_t ms = mono_ms() - c->start_ms;

	if (c->src.sa.sa_family == AF_INET &&
	    inet_ntop(AF_INET, &c->src.in.sin_addr, host, sizeof(host)))
		snprintf(addr, sizeof(addr), "%s:%u", host, ntohs(c->src.in.sin_port));
	else if (c->src.sa.sa_family == AF_INET6 &&
		 inet_ntop(AF_INET6, &c->src.in6.sin6_addr, host, sizeof(host)))
		snprintf(addr, sizeof(addr), "[%s]:%u", host, ntohs(c->src.in6.sin6_port));
	log_info("connection client=%s frontend=%s backend=%s/%s duration=%lld.%03llds "
		 "to_backend=%llu to_client=%llu end=%s",
		 addr, c->fe->conf.name,
		 c->be ? c->fe->conf.pool : "-", /* b->pool is the main thread's */
		 c->be ? c->be->conf.name : "-", (long long)(ms / 1000), (long long)(ms % 1000),
		 (unsigned long long)c->c2b.sent, (unsigned long long)c->b2c.sent,
		 relay_end_name((enum conn_end)c->end));
}

/* Closes both sides. With rst, the sockets are reset rather than closed
 * gracefully, so a reset on one side reaches the other as a reset. */
static void conn_close(struct conn *c, bool rst)
{
	struct frontend *fe = c->fe;
	struct worker *w = c->w;
	struct linger lg = {1, 0};

	/* A reset after a FIN is the reset's doing; a close we asked for
	 * (drain, down, idle...) keeps its own reason. */
	if (rst && (c->end == END_NONE || c->end == END_CLIENT_FIN || c->end == END_BACKEND_FIN))
		c->end = END_RESET;
	else if (c->end == END_NONE && c->phase == PH_HANDSHAKE)
		c->end = END_TLS;
	else if (c->end == END_NONE && c->phase == PH_CONNECTING)
		c->end = END_NO_BACKEND;
	if (fe->conf.log_connections)
		conn_log(c);

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
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	half_free(w, &c->c2b);
	half_free(w, &c->b2c);
	if (c->ssl)
		SSL_free(c->ssl);
	free(c->tried);
	w->kept_bytes -= c->nkept;
	free(c->kept);
	free(c);
	/* The last touch of fe: a retired frontend may be freed after it. */
	atomic_fetch_sub(&fe->active, 1);
}

/* Counts bytes written for the connection log and, in the worker's slot, the backend's metrics. */
static void count_bytes(struct conn *c, struct half *h, ssize_t w)
{
	if (w <= 0 || !c->be)
		return;
	h->sent += (uint64_t)w;
	struct backend_wcount *wc = backend_wcount(c->be, c->w->id);
	backend_wcount_add(h == &c->c2b ? &wc->bytes_out : &wc->bytes_in, (uint64_t)w);
}

/* read(2), or SSL_read on the client side of a TLS frontend, with read's
 * conventions: 0 at EOF, -1 with errno EAGAIN when it would block. */
static ssize_t io_read(struct conn *c, int fd, void *buf, size_t n)
{
	if (!c->ssl || fd != c->cfd)
		return read(fd, buf, n);
	int r = SSL_read(c->ssl, buf, (int)n);
	if (r > 0)
		return r;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_WANT_WRITE:
		c->tls_read_wants_write = true;
		/* fall through */
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	default:
		ERR_clear_error();
		errno = ECONNRESET;
		return -1;
	}
}

static ssize_t io_write(struct conn *c, int fd, const void *buf, size_t n)
{
	if (!c->ssl || fd != c->cfd)
		return write(fd, buf, n);
	int r = SSL_write(c->ssl, buf, (int)n);
	if (r > 0)
		return r;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	default:
		ERR_clear_error();
		errno = EPIPE;
		return -1;
	}
}

/* Passes a FIN on: TLS says close_notify first. */
static void io_shut_wr(struct conn *c, int fd)
{
	if (c->ssl && fd == c->cfd) {
		SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	shutdown(fd, SHUT_WR);
}

/* Writes what is pending in h to dst. Returns -1 on a write error, 0 if
 * something is still pending, 1 if all is written. */
static int half_flush(struct conn *c, struct half *h, int dst)
{
	while (h->len > 0) {
		ssize_t w = io_write(c, dst, h->buf + h->off, h->len);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			return -1;
		}
		count_bytes(c, h, w);
		h->off += (uint32_t)w;
		h->len -= (uint32_t)w;
	}
	if (h->buf)
		worker_buf_put(c->w, &h->buf);
	h->off = 0;
	while (h->in_pipe > 0) {
		ssize_t w = splice(h->pipe[0], NULL, dst, NULL, h->in_pipe,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			return -1;
		}
		count_bytes(c, h, w);
		h->in_pipe -= (uint32_t)w;
	}
	if (h->pipe[0] >= 0) /* empty: back to the worker */
		worker_pipe_put(c->w, h->pipe);
	return 1;
}

/* Bulk: move src -> pipe -> dst without copying through user space. The
 * pipe is borrowed while bytes sit in it (half_flush gives it back). */
static int half_splice(struct conn *c, struct half *h, int src, int dst)
{
	for (int i = 0; i < 4 && !h->eof; i++) {
		if (h->pipe[0] < 0 && !worker_pipe_get(c->w, h->pipe))
			break;
		ssize_t n = splice(src, NULL, h->pipe[1], NULL, PIPE_SIZE,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return -1;
		}
		if (n == 0) {
			h->eof = true;
			break;
		}
		c->last_active_ms = c->w->now_ms;
		h->in_pipe += (uint32_t)n;
		int r = half_flush(c, h, dst);
		if (r <= 0)
			return r;
	}
	return 0;
}

/* Frees the copy of the client's bytes: the backend answered, the client
 * sent more than KEEP_MAX, or no other backend can be had. */
static void conn_keep_drop(struct conn *c)
{
	c->keeping = false;
	c->w->kept_bytes -= c->nkept;
	xfree(&c->kept);
	c->nkept = 0;
	if (c->phase == PH_RELAYING)
		xfree(&c->tried);
}

/* The room a copy of n bytes takes: 1 KiB, doubled as it grows (a client
 * that trickles bytes costs a few reallocs, not one per read). */
static size_t keep_room(size_t n)
{
	size_t room = 1024;
	while (room < n)
		room <<= 1;
	return room;
}

/* While keeping: n bytes were just read from src. The backend's first byte
 * ends the copy; a client's bytes are added to it, up to KEEP_MAX and the
 * worker's KEEP_BUDGET. Bulk (splice) never starts before either: it needs
 * SPLICE_AFTER > KEEP_MAX bytes from one side. Out of line: half_pump,
 * which runs for every read, stays as small as without replay. */
static __attribute__((noinline)) void conn_keep(struct conn *c, int src, const char *p, size_t n)
{
	size_t have = c->nkept;

	if (src == c->bfd || have + n > KEEP_MAX || c->w->kept_bytes + n > KEEP_BUDGET) {
		conn_keep_drop(c);
		return;
	}
	if (!c->kept || keep_room(have + n) > keep_room(have))
		c->kept = xrealloc(c->kept, keep_room(have + n));
	memcpy(c->kept + have, p, n);
	c->nkept = (uint16_t)(have + n);
	c->w->kept_bytes += n;
}

/* half_pump's result for an error on fd: a reset (-1), or, when the backend
 * failed before its first byte and the client's bytes are kept, a chance to
 * move the client (PUMP_BACKEND_RESET). */
static int half_fail(const struct conn *c, int fd)
{
	return c->keeping && fd == c->bfd ? PUMP_BACKEND_RESET : -1;
}

/* A direction that has moved enough to be bulk splices from now on. */
static void half_maybe_splice(struct half *h)
{
	if (!h->bulk && h->moved >= SPLICE_AFTER && h->len == 0)
		h->bulk = true;
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
		return r < 0 ? half_fail(c, dst) : 0;
	if (!c->ssl) /* TLS bytes must pass through OpenSSL */
		half_maybe_splice(h);
	if (h->bulk && h->pipe[0] < 0 && !worker_pipe_get(c->w, h->pipe)) {
		/* No descriptors for a pipe now: read and write, and try
		 * again once another SPLICE_AFTER bytes look bulk. */
		h->bulk = false;
		h->moved = 0;
	}
	if (h->bulk) {
		if (half_splice(c, h, src, dst) < 0)
			return -1;
		if (h->in_pipe == 0 && h->pipe[0] >= 0)
			worker_pipe_put(c->w, h->pipe);
		goto fin;
	}
	for (int i = 0; i < 4 && !h->eof; i++) {
		ssize_t n = io_read(c, src, relay_buf, sizeof(relay_buf));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return half_fail(c, src);
		}
		if (n == 0) {
			/* The backend closed before its first byte, with bytes of the
			 * client's to replay. Not when it only answered the client's
			 * own FIN, or when the client sent nothing: a connect-and-close
			 * (a port probe) must not cost every backend a connection. */
			if (c->keeping && src == c->bfd && c->nkept > 0 && !c->c2b.shut)
				return PUMP_BACKEND_EOF;
			h->eof = true;
			break;
		}
		if (c->keeping)
			conn_keep(c, src, relay_buf, (size_t)n);
		c->last_active_ms = c->w->now_ms;
		/* Only reads that fill the buffer, back to back, look like bulk:
		 * small requests on a long keep-alive never pay for a pipe. */
		h->moved = n == (ssize_t)sizeof(relay_buf) ? h->moved + (uint32_t)n : 0;
		ssize_t w = io_write(c, dst, relay_buf, (size_t)n);
		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return half_fail(c, dst);
			w = 0;
		}
		count_bytes(c, h, w);
		if (w < n) {
			/* The peer is slow: keep the rest, pause reading src. */
			h->len = (uint32_t)(n - w);
			h->buf = worker_buf_get(c->w);
			memcpy(h->buf, relay_buf + w, h->len);
			break;
		}
		if (n < (ssize_t)sizeof(relay_buf))
			break;
	}
fin:
	/* Pass a FIN on once everything before it was written. */
	if (h->eof && h->len == 0 && h->in_pipe == 0 && !h->shut) {
		io_shut_wr(c, dst);
		h->shut = true;
		conn_rearm_timer(c); /* half-closed: the fin timeout may be sooner */
	}
	return 0;
}

static bool conn_done(const struct conn *c)
{
	return c->c2b.shut && c->b2c.shut;
}

/*
 * The backend reset (reset) or closed the connection before its first byte,
 * while the client's bytes are kept: moves the client to another backend,
 * picked as after a failed connect and within the same retries budget, and
 * gives it the copy in place of what the old one had not taken yet. Returns
 * false, having changed nothing, when the budget is spent or no other
 * backend is left; true when the client was moved (or closed: a new
 * connect may fail at once).
 */
static bool conn_redispatch(struct conn *c, bool reset)
{
	struct frontend *fe = c->fe;
	struct half *h = &c->c2b;

	if (c->ntried >= fe->conf.retries || h->in_pipe > 0)
		return false;
	if (!c->tried)
		c->tried = xcalloc(MAX_TRIED, sizeof(*c->tried));
	c->tried[c->ntried] = c->be;
	struct backend *b = pool_pick(fe->pool, &c->src.sa, c->tried, (size_t)c->ntried + 1);
	if (!b)
		return false;
	log_debug("frontend %s: backend %s %s before its first byte; replaying the client's %u "
		  "bytes to %s",
		  fe->conf.name, c->be->conf.name, reset ? "reset the connection" : "closed",
		  (unsigned)c->nkept, b->conf.name);
	backend_empty_response(c->be);
	c->ntried++;
	if (h->buf)
		worker_buf_put(c->w, &h->buf);
	h->off = h->len = h->moved = 0;
	h->shut = false; /* a FIN the client sent goes to the new backend too */
	if (c->nkept > 0) {
		h->buf = worker_buf_get(c->w);
		memcpy(h->buf, c->kept, c->nkept);
		h->len = c->nkept;
	}
	/* The client waits, unread, until the new backend is connected. */
	event_del(&c->cev);
	c->cwant = 0;
	event_del(&c->bev);
	c->bwant = 0;
	event_del(&c->tev);
	close(c->bfd);
	c->bfd = -1;
	conn_release_backend(c);
	conn_connect_to(c, b);
	return true;
}

/*
 * half_pump said PUMP_BACKEND_RESET or PUMP_BACKEND_EOF: the client is moved
 * (1), or, with no other backend, the connection goes on as if nothing had
 * been kept: the EOF is read again and passed on (half_pump's result), a
 * reset is passed on as a reset (-1). Out of line and cold: the relay's
 * callback stays as small as without replay.
 */
static __attribute__((noinline, cold)) int conn_backend_gone(struct conn *c, int r)
{
	if (conn_redispatch(c, r == PUMP_BACKEND_RESET))
		return 1;
	conn_keep_drop(c);
	return r == PUMP_BACKEND_EOF ? half_pump(c, &c->b2c, c->bfd, c->cfd) : -1;
}

static void conn_relay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	bool client = fd == c->cfd;
	int r = 0;

	if (client) {
		bool rw = c->tls_read_wants_write && (what & EV_WRITE);
		c->tls_read_wants_write = false;
		if (what & EV_WRITE)
			r = half_pump(c, &c->b2c, c->bfd, c->cfd);
		if (r >= 0 && ((what & EV_READ) || rw))
			r = half_pump(c, &c->c2b, c->cfd, c->bfd);
	} else {
		if (what & EV_WRITE)
			r = half_pump(c, &c->c2b, c->cfd, c->bfd);
		if (r >= 0 && (what & EV_READ))
			r = half_pump(c, &c->b2c, c->bfd, c->cfd);
	}
	if (r < 0) {
		if (r != -1 && (r = conn_backend_gone(c, r)) > 0)
			return;
		if (r < 0) {
			conn_close(c, true);
			return;
		}
	}
	/* Who closed first: one read half runs per callback, so the first
	 * EOF seen is the first one sent. */
	if (c->end == END_NONE && (c->c2b.eof || c->b2c.eof))
		c->end = c->c2b.eof ? END_CLIENT_FIN : END_BACKEND_FIN;
	if (conn_done(c)) {
		conn_close(c, false);
		return;
	}
	conn_update_events(c);
	/* OpenSSL may hold decrypted or buffered records the kernel no longer
	 * reports as readable: come back for them. */
	if (c->ssl && (c->cwant & EV_READ) && SSL_has_pending(c->ssl))
		event_active(&c->cev, EV_READ, 0);
}

static void set_interest(struct conn *c, struct event *ev, int fd, short *have, short want)
{
	if (*have == want)
		return;
	event_del(ev);
	*have = want;
	if (!want)
		return;
	event_assign(ev, c->w->base, fd, want | EV_PERSIST, conn_relay_cb, c);
	event_add(ev, NULL);
}

static bool half_pending(const struct half *h)
{
	return h->len > 0 || h->in_pipe > 0;
}

static void conn_update_events(struct conn *c)
{
	short cw = 0, bw = 0;

	if (!c->c2b.eof && !half_pending(&c->c2b))
		cw |= EV_READ;
	if (half_pending(&c->b2c) || c->tls_read_wants_write)
		cw |= EV_WRITE;
	if (!c->b2c.eof && !half_pending(&c->b2c))
		bw |= EV_READ;
	if (half_pending(&c->c2b))
		bw |= EV_WRITE;
	set_interest(c, &c->cev, c->cfd, &c->cwant, cw);
	set_interest(c, &c->bev, c->bfd, &c->bwant, bw);
}

/* How long a relayed connection may stay quiet: the idle timeout, or the
 * fin timeout once one direction is closed and the other is not (a peer
 * that never finishes its half, HAProxy's client-fin/server-fin). */
static int64_t conn_idle_limit(const struct conn *c)
{
	int64_t limit = c->fe->conf.idle_timeout_ms, fin = c->fe->conf.fin_timeout_ms;

	if (fin > 0 && (c->c2b.shut || c->b2c.shut) && fin < limit)
		limit = fin;
	return limit;
}

static void conn_rearm_timer(struct conn *c)
{
	int64_t left = conn_idle_limit(c) - (mono_ms() - c->last_active_ms);

	if (left < 0)
		left = 0;
	struct timeval tv = {left / 1000, (left % 1000) * 1000};
	evtimer_add(&c->tev, &tv);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	if (c->phase == PH_HANDSHAKE) {
		atomic_fetch_add_explicit(&c->fe->tls_failures, 1, memory_order_relaxed);
		conn_close(c, false);
		return;
	}
	if (c->phase == PH_CONNECTING) {
		log_debug("frontend %s: connect to %s timed out", c->fe->conf.name,
			  c->be->conf.name);
		backend_connect_failed(c->be);
		conn_connect(c);
		return;
	}
	/* Stamps come from the coarse clock, up to a tick behind: a connection
	 * may be closed that much before a full idle_timeout. */
	int64_t idle = mono_ms() - c->last_active_ms;
	if (idle >= conn_idle_limit(c)) {
		c->end =
		    conn_idle_limit(c) < c->fe->conf.idle_timeout_ms ? END_FIN_TIMEOUT : END_IDLE;
		conn_close(c, false);
		return;
	}
	conn_rearm_timer(c);
}

static void conn_established(struct conn *c)
{
	int64_t ms = c->fe->conf.idle_timeout_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	c->phase = PH_RELAYING;
	backend_connect_time(c->be, c->w->id, mono_us() - c->connect_us);
	if (!c->keeping) /* else kept for a redispatch's picks */
		xfree(&c->tried);
	c->last_active_ms = c->w->now_ms;
	event_del(&c->bev);
	c->bwant = 0;
	evtimer_add(&c->tev, &tv);
	/* Redispatched after the client closed its side, with nothing left
	 * to replay: the FIN goes on now (half_pump would after the copy). */
	if (c->c2b.eof && !c->c2b.shut && c->c2b.len == 0) {
		io_shut_wr(c, c->bfd);
		c->c2b.shut = true;
		conn_rearm_timer(c); /* half-closed: the fin timeout may be sooner */
	}
	conn_update_events(c);
	/* OpenSSL may already hold what the client sent next. */
	if (c->ssl && (c->cwant & EV_READ) && SSL_has_pending(c->ssl))
		event_active(&c->cev, EV_READ, 0);
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
	backend_connect_failed(c->be);
	conn_connect(c);
}

/* Drops the backend being tried (if any) and tries the next one. */
static void conn_connect(struct conn *c)
{
	conn_connect_to(c, NULL);
}

/* Connects to b (picked, with its reference, by the caller), or when b is
 * NULL drops the backend being tried (if any) and picks the next one. */
static void conn_connect_to(struct conn *c, struct backend *b)
{
	struct frontend *fe = c->fe;

	for (;; b = NULL) {
		if (!b && c->be) {
			atomic_fetch_add_explicit(&fe->retried, 1, memory_order_relaxed);
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
		if (!b && c->ntried <= fe->conf.retries)
			b = pool_pick(fe->pool, &c->src.sa, c->tried, c->ntried);
		if (!b) {
			atomic_fetch_add_explicit(&fe->no_backend, 1, memory_order_relaxed);
			if (warn_ok(fe))
				log_warn("frontend %s: no backend reachable for a client after "
					 "%u attempts",
					 fe->conf.name, c->ntried);
			conn_close(c, false);
			return;
		}
		c->be = b; /* pool_pick took the reference */
		atomic_fetch_add_explicit(&b->active, 1, memory_order_relaxed);

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
		sock_keepalive(&fe->conf, c->bfd, true);
		c->phase = PH_CONNECTING;
		c->connect_us = mono_us();
		if (connect(c->bfd, (const struct sockaddr *)&a->ss, a->len) == 0) {
			conn_established(c);
			return;
		}
		if (errno == EINPROGRESS) {
			int64_t ms = fe->conf.connect_timeout_ms;
			struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
			event_assign(&c->bev, c->w->base, c->bfd, EV_WRITE, conn_connect_cb, c);
			event_add(&c->bev, NULL);
			evtimer_add(&c->tev, &tv);
			return;
		}
		log_debug("frontend %s: connect to %s: %s", fe->conf.name, b->conf.name,
			  strerror(errno));
		backend_connect_failed(b);
	}
}
