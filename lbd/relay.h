/*
 * relay.h - frontends, their listeners, and the TCP relay.
 *
 * A frontend accepts on its listeners, picks a backend from its pool, and
 * relays bytes both ways on non-blocking sockets with plain libevent events
 * (no bufferevents: the data path must stay ours to tune). A failed connect
 * (refused, unreachable, timed out) moves the client to the next backend,
 * up to conf.retries times, before any byte of the client is sent, so a dead
 * master costs the client nothing. Half-close is relayed in both directions;
 * a reset on one side is passed on as a reset to the other.
 *
 * A connection keeps no buffer while idle: data goes from a read straight to
 * a write; only what the peer could not take yet is kept, and reading from
 * that side pauses until it drains.
 */
#ifndef LBD_RELAY_H
#define LBD_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "lbd/pool.h"

struct event_base;
struct listener;

struct frontend {
	struct frontend_conf conf;
	struct pool *pool;
	struct event_base *base;
	struct listener **ls;
	size_t nls;
	uint64_t active;      /* client connections now */
	uint64_t total;	      /* accepted ever */
	uint64_t refused_max; /* closed at once: max_connections reached */
	uint64_t no_backend;  /* closed: no backend could be reached */
	uint64_t retried;     /* connects moved to another backend after a failure */
	bool retired;	      /* removed by a reload; freed with its last connection */
	struct conn *conns;   /* its client connections (the list is relay.c's) */
	int64_t last_warn_ms; /* rate limit for warnings */
};

/* Opens (binds and listens) every address of conf, without accepting yet.
 * On failure returns -1 and a message in err (caller frees). */
int relay_listeners_open(const struct frontend_conf *conf, struct listener ***ls, size_t *nls,
			 char **err);
void relay_listeners_close(struct listener **ls, size_t nls);

/* Takes ownership of the opened listeners and starts accepting. */
struct frontend *frontend_new(struct event_base *base, const struct frontend_conf *conf,
			      struct pool *pool, struct listener **ls, size_t nls);
/* Reload: new settings and pool; if ls is not NULL, they replace the
 * listeners (the old ones are closed; established connections stay). */
void frontend_update(struct frontend *fe, const struct frontend_conf *conf, struct pool *pool,
		     struct listener **ls, size_t nls);
/* Stops accepting. */
void frontend_stop(struct frontend *fe);
/* Stops accepting and frees fe once its last connection ends. */
void frontend_retire(struct frontend *fe);
/* Frees at once, closing every connection (for exit). */
void frontend_free(struct frontend *fe);

/* Closes up to n of b's connections (the drain deadline); returns how many. */
size_t relay_close_backend_conns(struct backend *b, size_t n);

#endif
