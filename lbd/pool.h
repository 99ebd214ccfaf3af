/*
 * pool.h - pools of backends, their live state, and balancing.
 *
 * A pool keeps its validated settings (conf) apart from live state, as
 * relayd does. Each backend owns its health check and the hysteresis fed by
 * it. Backends are reference counted: a connection holds a reference for its
 * whole life, so a backend removed by a reload or an admin edit stays valid
 * (and keeps its counters) until its last connection ends.
 *
 * Choosing a backend, in order of preference:
 *   1. enabled, weight > 0, and up by its check;
 *   2. fail-safe, when no backend is up: enabled backends whose last check
 *      still reached TCP (or that were never checked yet);
 *   3. any enabled backend - the connect retry sorts out the dead.
 * Backends already tried for this client connection are skipped.
 */
#ifndef LBD_POOL_H
#define LBD_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "lbd/check.h"

enum backend_state { BE_ENABLED, BE_DRAIN, BE_DISABLED };

/* Check latency histogram bounds in seconds (Prometheus le=...). */
#define CHECK_HIST_BUCKETS 8
extern const double pool_check_hist_le[CHECK_HIST_BUCKETS];

struct pool;
struct conn; /* lbd/relay.c */

struct backend {
	struct backend_conf conf;
	struct pool *pool; /* NULL once removed from its pool */
	enum backend_state state;
	struct check *check;
	struct check_health health;
	struct check_result last;      /* most recent check result */
	struct check_result last_fail; /* most recent failed one: the reason operators read */
	bool has_fail;
	int64_t since_ms; /* when health last changed (monotonic ms) */
	uint64_t active;  /* connections now */
	uint64_t total;	  /* connections ever */
	uint64_t connect_failures;
	int64_t drain_started_ms;
	/* Drain bookkeeping (lbd/drain.c, main loop only). */
	bool remove_when_drained; /* DELETE ?drain=1: remove once drained */
	bool drain_closing;	  /* deadline passed: closing at drain_close_rate */
	double close_credit;	  /* connections we may close now (rate limiter) */
	int64_t close_last_ms;
	uint64_t drain_forced; /* connections closed by the last drain deadline */
	/* Counters read by the admin API and /metrics (main loop). */
	uint64_t checks, check_fails[CHK_REASON_MAX];
	uint64_t check_hist[CHECK_HIST_BUCKETS + 1]; /* latency, cumulative at export */
	int64_t check_usec_sum;
	uint64_t health_changes, state_changes;
	/* Bytes relayed; relay.c is to count these (0 until it does). */
	uint64_t bytes_in, bytes_out;
	int refs;
	int rr_current;	    /* smooth weighted round robin */
	struct conn *conns; /* its connections (the list is relay.c's) */
};

struct pool {
	struct pool_conf conf; /* settings; conf.backends is unused at runtime (see be) */
	struct backend **be;
	size_t nbe;
	bool fail_safe;
	unsigned lc_offset; /* rotates ties in least_conn */
	struct check_engine *eng;
	/* Called after any backend's health or state changed (for drain and
	 * metrics); may be NULL. */
	void (*on_change)(struct pool *p, struct backend *b, void *arg);
	void *on_change_arg;
};

struct pool *pool_new(const struct pool_conf *conf, struct check_engine *eng);
void pool_free(struct pool *p);

/* Applies new settings and membership (backends matched by name; a changed
 * address replaces the backend). Runtime states of kept backends stay. */
void pool_update(struct pool *p, const struct pool_conf *conf);

struct backend *pool_find(const struct pool *p, const char *name);
/* Adds a backend (copied); its health is unknown until its first check. */
struct backend *pool_add(struct pool *p, const struct backend_conf *bc, enum backend_state st);
/* Detaches b from p; b lives on while connections hold it. */
void pool_remove(struct pool *p, struct backend *b);

/* Picks a backend for a client at src (may be NULL), skipping those in
 * tried[]. Returns NULL if none is usable. Takes no reference. */
struct backend *pool_pick(struct pool *p, const struct sockaddr *src, struct backend *const *tried,
			  size_t ntried);

void backend_ref(struct backend *b);
void backend_unref(struct backend *b);
void backend_set_state(struct backend *b, enum backend_state st);
const char *backend_state_name(enum backend_state st);
int backend_state_parse(const char *s, enum backend_state *out);
/* Up by its check; unknown counts as not up. */
bool backend_is_up(const struct backend *b);

/* Re-evaluates the pool's fail-safe state and logs transitions. */
void pool_recheck(struct pool *p);

#endif
