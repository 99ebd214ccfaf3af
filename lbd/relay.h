/*
 * relay.h - worker threads, frontends, their listeners, and the TCP relay.
 *
 * The relay runs on worker threads, one event loop each (default: one per
 * core). Every listen address is opened once per worker with SO_REUSEPORT,
 * so the kernel spreads new connections over the workers and a connection
 * lives on one thread for its whole life, without locks. The main thread
 * (config, checks, admin API) talks to workers only through commands
 * (listen, stop listening, close a backend's connections, exit) and through
 * what workers read atomically: pool snapshots and counters.
 *
 * A frontend accepts, picks a backend from its pool, and relays bytes both
 * ways on non-blocking sockets with plain libevent events (no bufferevents).
 * A failed connect (refused, unreachable, timed out) moves the client to the
 * next backend, up to conf.retries times, before any byte of the client is
 * sent, so a dead master costs the client nothing. A backend that resets or
 * closes the connection before its first byte is left the same way
 * (conf.retry_on_empty_response): the client's first bytes, kept until then
 * (at most 16 KiB), are replayed to the next one. Half-close is relayed in
 * both directions; a reset on one side is passed on as a reset.
 *
 * Both sockets of a relayed connection use TCP keepalive (frontend
 * tcp_keepalive) and the backend's TCP_USER_TIMEOUT, so a peer that vanished
 * is found between health checks; a half-closed connection whose other side
 * never finishes ends after timeouts.fin. With log_connections, each closed
 * connection is logged once with why it ended (enum conn_end).
 *
 * A connection keeps no buffer while idle: data goes from a read straight to
 * a write; only what the peer could not take yet is kept, and reading from
 * that side pauses until it drains. Bulk transfers switch to splice(2)
 * through a pipe, so their bytes never cross into user space.
 *
 * A frontend's settings never change once it exists: a reload that changes
 * them makes a new frontend (taking over the listening sockets) and retires
 * the old one, which is freed after its last connection.
 */
#ifndef LBD_RELAY_H
#define LBD_RELAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "lbd/pool.h"

struct event_base;
struct listener;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
struct relay;
struct epoch;

struct frontend {
	struct frontend_conf conf; /* immutable */
	struct pool *pool;	   /* held (pool_hold) */
	struct relay *r;
	struct listener **ls; /* main thread's view, to send commands */
	size_t nls;
	_Atomic uint64_t active;       /* client connections now */
	_Atomic uint64_t total;	       /* accepted ever */
	_Atomic uint64_t refused_max;  /* closed at once: max_connections reached */
	_Atomic uint64_t no_backend;   /* closed: no backend could be reached */
	_Atomic uint64_t retried;      /* connects moved to another backend after a failure */
	_Atomic uint64_t tls_failures; /* mode tls: handshakes that failed */
	_Atomic int64_t last_warn_ms;  /* rate limit for warnings */
	struct ssl_ctx_st *ssl_ctx;    /* mode tls: certificate and settings, owned */
	/* Listeners workers may still accept on for this frontend: counted up
	 * by the main thread when it hands one over, down by the worker when
	 * it lets go. A retired frontend is freed when this and active are 0. */
	_Atomic int live_listeners;
	bool retired; /* main thread: replaced or removed by a reload */
};

/* Starts nthreads workers (0: one per core). The epoch reclaimer and the
 * retired-frontend reaper run on main_base. */
struct relay *relay_start(struct event_base *main_base, int nthreads, char **err);
/* How relay_start starts a worker: pthread_create. A seam for tests only
 * (tests/unit/test_relay.c makes the Nth start fail); nothing else sets it. */
extern int (*relay_thread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
/* Closes every connection, stops and joins the workers. */
void relay_stop(struct relay *r);
/* After relay_stop and after the last pool_free: frees what is left. */
void relay_free(struct relay *r);
struct epoch *relay_epoch(const struct relay *r);
int relay_nthreads(const struct relay *r);
/* Connections of retired frontends still open. */
uint64_t relay_retired_active(const struct relay *r);

/* Opens (binds and listens) every address of conf once per worker, without
 * accepting yet; sockets handed over by an old lbd are taken first (all of
 * them). On failure returns -1 and a message in err (caller frees). */
int relay_listeners_open(struct relay *r, const struct frontend_conf *conf, struct listener ***ls,
			 size_t *nls, char **err);
/* A self-upgrade's new lbd (handover.h): frontends made from now on open
 * their listeners but accept only after relay_release(). */
void relay_hold(struct relay *r);
void relay_release(struct relay *r);
/* Between relay_hold and relay_release: frontends do not accept yet. */
bool relay_holding(const struct relay *r);
/* The listening sockets of fe, to hand over to a new lbd. */
size_t relay_frontend_fds(const struct frontend *fe, int *fds, size_t max);

/* Closes listeners that were opened but never given to a frontend. */
void relay_listeners_close(struct listener **ls, size_t nls);

/* Takes ownership of the opened listeners (and of ctx, for mode tls: see
 * common/tls.h) and starts accepting. */
struct frontend *frontend_new(struct relay *r, const struct frontend_conf *conf, struct pool *pool,
			      struct listener **ls, size_t nls, struct ssl_ctx_st *ctx);
/* Reload: returns fe if nothing changed, else a new frontend with the new
 * settings, taking over fe's listeners (ls NULL) or using ls. A TLS frontend
 * is always renewed, so certificate files are re-read on every reload. The
 * caller retires fe when a new one is returned. */
struct frontend *frontend_update(struct frontend *fe, const struct frontend_conf *conf,
				 struct pool *pool, struct listener **ls, size_t nls,
				 struct ssl_ctx_st *ctx);
/* Stops accepting. */
void frontend_stop(struct frontend *fe);
/* Stops accepting; freed after its last connection. */
void frontend_retire(struct frontend *fe);
/* At exit, after relay_stop. */
void frontend_free(struct frontend *fe);

/* Why a connection ended, as the connection log (frontends[].log_connections)
 * says it. */
enum conn_end {
	END_NONE,	  /* not decided yet: conn_close works it out */
	END_CLIENT_FIN,	  /* the client closed its side first */
	END_BACKEND_FIN,  /* the backend closed its side first */
	END_RESET,	  /* a reset or an error on either side */
	END_IDLE,	  /* timeouts.idle */
	END_FIN_TIMEOUT,  /* timeouts.fin: half-closed, the other side never finished */
	END_DRAIN,	  /* a drain's deadline, or a removed backend's connections */
	END_BACKEND_DOWN, /* the backend is down (pool close_on_down) */
	END_REBALANCE,	  /* moved off a loaded backend (pool rebalance) */
	END_STOPPING,	  /* lbd stopping or handing over */
	END_NO_BACKEND,	  /* no backend could be connected to */
	END_TLS,	  /* mode tls: the handshake failed or timed out */
	END_MAX
};
const char *relay_end_name(enum conn_end e);

/* Asks the workers to close up to n of b's connections (a drain deadline,
 * a down backend, a rebalance: why); returns how many were asked for. They
 * close asynchronously. */
size_t relay_close_backend_conns(struct relay *r, struct backend *b, size_t n, enum conn_end why);

#endif
