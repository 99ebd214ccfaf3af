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
 *
 * Threads: everything here runs on the main thread except pool_pick and the
 * atomic counters, which worker threads use. Workers balance over an
 * immutable snapshot (struct pool_snap) that the main thread rebuilds on
 * every change (pool_recheck) and swaps in atomically; the old one is freed
 * through lbd/epoch.h once no worker can be reading it.
 */
#ifndef LBD_POOL_H
#define LBD_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "lbd/check.h"
#include "lbd/closerate.h"

enum backend_state { BE_ENABLED, BE_DRAIN, BE_DISABLED };

/* Check latency histogram bounds in seconds (Prometheus le=...). */
#define CHECK_HIST_BUCKETS 11
extern const double pool_check_hist_le[CHECK_HIST_BUCKETS];
/* Backend connect time histogram bounds in seconds. */
#define CONNECT_HIST_BUCKETS 12
extern const double pool_connect_hist_le[CONNECT_HIST_BUCKETS];

struct pool;
struct epoch;

/*
 * What one worker thread counts for one backend, on every read and write:
 * written by that worker only, with relaxed loads and stores (no locked
 * read-modify-write, no cache line shared with another writer), and summed
 * by readers (backend_counts_read). One cache line or more per worker.
 */
struct backend_wcount {
	_Atomic uint64_t bytes_in, bytes_out;
	/* Successful connects: time from connect() to established. */
	_Atomic uint64_t connect_hist[CONNECT_HIST_BUCKETS + 1]; /* per bucket, not cumulative */
	_Atomic uint64_t connect_usec_sum;
} __attribute__((aligned(64)));

/* The sum over workers, as read by /metrics and the admin API. */
struct backend_counts {
	uint64_t bytes_in, bytes_out;
	uint64_t connect_hist[CONNECT_HIST_BUCKETS + 1];
	uint64_t connect_usec_sum;
	uint64_t connects; /* connections ever established (the histogram's count) */
};

struct backend {
	struct backend_conf conf;
	struct pool *pool; /* NULL once removed from its pool */
	enum backend_state state;
	struct check *check;
	struct check_health health;
	struct check_result last;      /* most recent check result */
	struct check_result last_fail; /* most recent failed one: the reason operators read */
	bool has_fail;
	int64_t since_ms;	 /* when health last changed (monotonic ms) */
	_Atomic uint64_t active; /* connections now (workers count) */
	_Atomic uint64_t connect_failures;
	/* Connections it reset or closed before its first byte, whose
	 * clients were replayed to another backend (relay.c). */
	_Atomic uint64_t empty_retries;
	bool last_tcp_ok; /* of the last check (main thread) */
	int64_t drain_started_ms;
	/* Drain bookkeeping (lbd/drain.c, main loop only). */
	bool remove_when_drained;     /* DELETE ?drain=1: remove once drained */
	bool drain_closing;	      /* deadline passed: closing at drain_close_rate */
	struct close_rate close_rate; /* at drain_close_rate */
	uint64_t drain_forced;	      /* connections closed by the last drain deadline */
	/* Down-close bookkeeping (lbd/drain.c, main loop only): closing the
	 * connections of a backend down by pool_down_close's rule. */
	bool down_closing;
	struct close_rate down_rate; /* at down_close_rate */
	uint64_t down_closed;	     /* connections closed because the backend was down, ever */
	/* Rebalance bookkeeping (lbd/rebalance.c, main loop only). */
	uint64_t rb_quota;	  /* closes it may take in this round */
	uint64_t rb_round_closed; /* closed in this round */
	uint64_t rb_closed;	  /* closed by rebalance rounds, ever */
	/* Counters read by the admin API and /metrics (main loop). */
	uint64_t checks, check_fails[CHK_REASON_MAX];
	uint64_t check_hist[CHECK_HIST_BUCKETS + 1]; /* latency, cumulative at export */
	int64_t check_usec_sum;
	uint64_t health_changes, state_changes;
	/* Passive check: a worker whose connect failed marks the backend
	 * suspect until then (monotonic ms); picks avoid it while others are
	 * up, and its next good check clears the mark. */
	_Atomic int64_t suspect_until_ms;
	/* Drain deadline: connections the workers may still close (relay.c). */
	_Atomic int64_t close_budget;
	/* Per worker thread (relay.c writes slot w->id): see backend_wcount. */
	struct backend_wcount *wc;
	int nwc;
	_Atomic int refs;
};

/* What workers balance over: immutable but for the cursor. */
struct pool_snap {
	enum balance balance;
	_Atomic unsigned cursor; /* round robin position, least_conn tie rotation */
	uint16_t *rr;		 /* round robin order over up backends (indexes) */
	size_t nrr;
	size_t n;
	struct snap_be {
		struct backend *b; /* the snapshot holds a reference */
		int weight;
		uint8_t tiers; /* which preference tiers it is in (pool.c) */
	} be[];
};

struct pool {
	struct pool_conf conf; /* settings; conf.backends is unused at runtime (see be) */
	struct backend **be;
	size_t nbe;
	bool fail_safe;
	/* Rebalance rounds (lbd/rebalance.c, main loop only). */
	struct {
		bool active;
		int64_t started_ms, ended_ms;
		struct close_rate rate; /* one bucket across rounds */
		bool short_of_it;	/* the last round ended with its shares used up */
	} rb;
	bool freeing; /* pool_free() is emptying it: no fail-safe news to log */
	_Atomic(struct pool_snap *) snap;
	struct check_engine *eng;
	struct epoch *ep; /* NULL: no worker threads (unit tests) */
	int holds;	  /* frontends using the pool (pool_hold) */
	bool retired;	  /* pool_free'd, waiting for its last frontend */
	/* Called after any backend's health or state changed (for drain and
	 * metrics); may be NULL. */
	void (*on_change)(struct pool *p, struct backend *b, void *arg);
	void *on_change_arg;
};

struct pool *pool_new(const struct pool_conf *conf, struct check_engine *eng, struct epoch *ep);
/* Detaches every backend; the struct itself goes with its last hold. */
void pool_free(struct pool *p);
void pool_hold(struct pool *p);
void pool_release(struct pool *p);

/* Applies new settings and membership (backends matched by name; a changed
 * address replaces the backend). Runtime states of kept backends stay. */
void pool_update(struct pool *p, const struct pool_conf *conf);

struct backend *pool_find(const struct pool *p, const char *name);
/* Adds a backend (copied); its health is unknown until its first check. */
struct backend *pool_add(struct pool *p, const struct backend_conf *bc, enum backend_state st);
/* Detaches b from p; b lives on while connections hold it. */
void pool_remove(struct pool *p, struct backend *b);

/* Any thread. Picks a backend for a client at src (may be NULL), skipping
 * those in tried[]. Returns it with a reference taken, or NULL. */
struct backend *pool_pick(struct pool *p, const struct sockaddr *src, struct backend *const *tried,
			  size_t ntried);

void backend_ref(struct backend *b);
void backend_unref(struct backend *b);
void backend_set_state(struct backend *b, enum backend_state st);
const char *backend_state_name(enum backend_state st);
int backend_state_parse(const char *s, enum backend_state *out);
/* Up by its check; unknown counts as not up. */
bool backend_is_up(const struct backend *b);

/* Worker `id`'s slot of b's counters (relay.c, on that worker only). */
static inline struct backend_wcount *backend_wcount(struct backend *b, int id)
{
	return &b->wc[id < b->nwc ? id : 0];
}
/* Adds v to a counter only its own worker writes: a plain load and store. */
static inline void backend_wcount_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
			      memory_order_relaxed);
}
/* Records a successful connect of usec microseconds in worker id's slot. */
void backend_connect_time(struct backend *b, int id, int64_t usec);
/* Any thread: sums b's per-worker counters. */
void backend_counts_read(const struct backend *b, struct backend_counts *out);
/* Whether b's established connections should be closed because b is down:
 * by the pool's close_on_down, down by a dead transport (the default: see
 * check_result_transport_dead), down for any reason, or never. A draining
 * backend too (a master that dies while it drains), until its drain deadline
 * passes and the drain closes the rest. Main thread. */
bool backend_down_close(const struct backend *b);

/* Any thread: a connect to b was refused or timed out. */
void backend_connect_failed(struct backend *b);
/* Any thread: b reset or closed a connection before sending a byte, and its
 * client was moved to another backend. Counted; not marked suspect (a
 * client can cause it), nor a connect failure. */
void backend_empty_response(struct backend *b);

/* Re-evaluates the pool's fail-safe state, logs transitions, and publishes
 * a new snapshot. Call after any change to backends, states, weights. */
void pool_recheck(struct pool *p);

#endif
