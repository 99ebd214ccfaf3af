/*
 * rebalance.h - spread connections again after a backend returns (opt-in per
 * pool: rebalance.enabled).
 *
 * HTTP/2 clients (kubelets, controllers) keep one connection for hours: after
 * a master comes back, its WATCHes stay on the masters that survived. When a
 * pool's spread is off (a backend more than tolerance_pct away from its fair
 * share: its weight's part of the pool's connections), a round begins: lbd
 * closes connections of the most loaded backends, at most `rate` per second
 * for the whole pool and never more than max_share_pct of a backend's
 * connections (counted when the round began), until the spread is within
 * tolerance. Closed clients reconnect and the balancer (least_conn) sends them
 * to the least loaded. A round that ends short of it (shares used up, or
 * nothing left above its fair share) waits REBALANCE_GAP_MS before the next. Each close is counted
 * per backend (lbd_backend_rebalance_closed_total); each round is logged once, at its end.
 *
 * Only backends enabled, up and with weight > 0 take part. Runs on the main
 * loop, from the drainer's tick (lbd/drain.c); closing goes through
 * relay_close_backend_conns (end=rebalance in the connection log).
 */
#ifndef LBD_REBALANCE_H
#define LBD_REBALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pool;
struct relay;

#define REBALANCE_GAP_MS 30000

/* What the pure planner sees of one backend. */
struct rebalance_be {
	uint64_t active; /* connections now */
	int weight;	 /* > 0 */
	uint64_t quota;	 /* closes it may still take this round */
};

/* Whether every backend is within tolerance_pct of its fair share (at
 * least one connection of slack, so small pools do not churn). */
bool rebalance_spread_ok(const struct rebalance_be *be, size_t n, int tolerance_pct);

/* How many of each backend's connections to close now (close[i]), at most
 * budget in all: one at a time from the most loaded (per weight) of those
 * above their fair share with quota left. Returns the total. Pure. */
size_t rebalance_plan(const struct rebalance_be *be, size_t n, size_t budget, size_t *close);

/* One tick for pool p; true while a round goes on or may start soon. */
bool rebalance_step(struct pool *p, struct relay *r, int64_t now_ms);

#endif
