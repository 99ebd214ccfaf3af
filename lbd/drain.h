/*
 * drain.h - the end of a drain, on a main-loop timer.
 *
 * A backend in state drain takes no new connections (pool_pick skips it);
 * its established ones (WATCHes) keep flowing. Every tick this module reads
 * its connection count: at zero the drain is over; once the pool's
 * drain_timeout has passed since the drain began, the remaining connections
 * are closed at drain_close_rate per second, so thousands of watches do not
 * reconnect in the same millisecond. Either way server_drain_done() then
 * makes the backend disabled (or removes it, for DELETE ?drain=1).
 *
 * A backend down by its pool's close_on_down rule (by default: its transport
 * is dead, see check_result_transport_dead) has its connections closed at
 * down_close_rate, draining or not; one that answers again keeps the rest.
 *
 * A backend removed without a drain is detached from its pool at once; its
 * connections are handed here (drainer_adopt) and closed at the same rate.
 *
 * Counters are only read here; closing goes through relay_close_backend_conns.
 */
#ifndef LBD_LBD_DRAIN_H
#define LBD_LBD_DRAIN_H

#include <stdint.h>

struct server;
struct backend;
struct event_base;

#define DRAIN_TICK_MS 100

struct drainer *drainer_new(struct event_base *base, struct server *s);
void drainer_free(struct drainer *d);
/* Something may be draining now: make sure the timer runs. */
void drainer_kick(struct drainer *d);
/* b was detached from its pool: close its connections at rate per second.
 * Takes a reference of its own. */
void drainer_adopt(struct drainer *d, struct backend *b, int64_t rate);
/* Seconds until the deadline (<= 0: passed) of a draining backend. */
double drainer_seconds_left(const struct backend *b);

#endif
