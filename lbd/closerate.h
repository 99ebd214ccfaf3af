/*
 * closerate.h - closes per second: the one token bucket behind a drain's
 * deadline closes, a down backend's closes and rebalance rounds.
 *
 * Closes are allowed at rate per second. What is not spent when allowed
 * is not saved (one close at most carries over), and a stall of the main
 * loop saves up no more than rate + 1 (the bucket's size): with the loop
 * ticking, a second sees at most rate + 1 closes; right after a stall, at
 * most rate + 1 go at once. Main loop only.
 */
#ifndef LBD_CLOSERATE_H
#define LBD_CLOSERATE_H

#include <stddef.h>
#include <stdint.h>

struct close_rate {
	double credit;
	int64_t last_ms;
};

/* Starts the bucket with one close allowed now. */
static inline void close_rate_start(struct close_rate *r, int64_t now)
{
	r->credit = 1;
	r->last_ms = now;
}

/* The closes allowed at now, at rate per second (0 or less counts as 1). */
static inline size_t close_rate_allowed(struct close_rate *r, int64_t rate, int64_t now)
{
	double per_s = rate > 0 ? (double)rate : 1.0;

	r->credit += per_s * (double)(now - r->last_ms) / 1000.0;
	r->last_ms = now;
	if (r->credit > per_s + 1)
		r->credit = per_s + 1;
	return (size_t)r->credit;
}

/* n of the allowed closes were made. */
static inline void close_rate_spend(struct close_rate *r, size_t n)
{
	r->credit -= (double)n;
	if (r->credit > 1)
		r->credit = 1;
}

#endif
