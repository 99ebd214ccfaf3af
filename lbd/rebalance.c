/* rebalance.c - see rebalance.h. */
#include "lbd/rebalance.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "lbd/pool.h"
#include "lbd/relay.h"

/* A backend's fair share of total connections over total weight. */
static double fair_share(const struct rebalance_be *b, uint64_t total, int64_t wsum)
{
	return (double)total * (double)b->weight / (double)wsum;
}

static void sums(const struct rebalance_be *be, size_t n, uint64_t *total, int64_t *wsum)
{
	*total = 0;
	*wsum = 0;
	for (size_t i = 0; i < n; i++) {
		*total += be[i].active;
		*wsum += be[i].weight;
	}
}

bool rebalance_spread_ok(const struct rebalance_be *be, size_t n, int tolerance_pct)
{
	uint64_t total;
	int64_t wsum;

	sums(be, n, &total, &wsum);
	if (n < 2 || wsum <= 0)
		return true;
	for (size_t i = 0; i < n; i++) {
		double fair = fair_share(&be[i], total, wsum);
		double slack = fmax(1.0, fair * tolerance_pct / 100.0);
		if (fabs((double)be[i].active - fair) > slack)
			return false;
	}
	return true;
}

size_t rebalance_plan(const struct rebalance_be *be, size_t n, size_t budget, size_t *close)
{
	uint64_t total;
	int64_t wsum;
	size_t done = 0;

	memset(close, 0, n * sizeof(*close));
	sums(be, n, &total, &wsum);
	if (n < 2 || wsum <= 0)
		return 0;
	while (done < budget) {
		size_t best = n;
		double best_load = 0;
		for (size_t i = 0; i < n; i++) {
			uint64_t left = be[i].active - close[i];
			if (close[i] >= be[i].quota ||
			    (double)left <= ceil(fair_share(&be[i], total, wsum)))
				continue;
			double load = (double)left / be[i].weight;
			if (best == n || load > best_load) {
				best = i;
				best_load = load;
			}
		}
		if (best == n)
			break;
		close[best]++;
		done++;
	}
	return done;
}

/* The backends taking part: enabled, up, weight > 0. */
static size_t members(const struct pool *p, struct backend **out, struct rebalance_be *be)
{
	size_t n = 0;

	for (size_t i = 0; i < p->nbe; i++) {
		struct backend *b = p->be[i];
		if (b->state != BE_ENABLED || b->conf.weight <= 0 || !backend_is_up(b))
			continue;
		out[n] = b;
		be[n] = (struct rebalance_be){b->active, b->conf.weight, 0};
		if (p->rb.active)
			be[n].quota =
			    b->rb_quota > b->rb_round_closed ? b->rb_quota - b->rb_round_closed : 0;
		n++;
	}
	return n;
}

/* "m1 150, m2 150, m3 0" */
static void describe(char *buf, size_t len, struct backend *const *bs, size_t n, bool closed)
{
	size_t off = 0;

	buf[0] = 0;
	for (size_t i = 0; i < n && off < len; i++) {
		int w = snprintf(buf + off, len - off, "%s%s %llu", i ? ", " : "", bs[i]->conf.name,
				 (unsigned long long)(closed ? bs[i]->rb_round_closed
							     : (uint64_t)bs[i]->active));
		if (w < 0)
			break;
		off += (size_t)w;
	}
}

static void round_end(struct pool *p, struct backend *const *bs, size_t n, bool ok, int64_t now)
{
	char closed[256], now_has[256];

	describe(closed, sizeof(closed), bs, n, true);
	describe(now_has, sizeof(now_has), bs, n, false);
	log_kv(LOG_LVL_INFO, LOG_KV("pool", p->conf.name, "reason", "rebalance"),
	       "pool %s: rebalance round over after %.1fs, %s: closed %s; connections now %s",
	       p->conf.name, (double)(now - p->rb.started_ms) / 1000.0,
	       ok ? "spread within tolerance"
		  : "nothing more to close (shares used up, or the rest at their fair share)",
	       closed, now_has);
	p->rb.active = false;
	p->rb.ended_ms = now;
	p->rb.short_of_it = !ok;
}

static void round_start(struct pool *p, struct backend *const *bs, size_t n, int64_t now)
{
	char has[256];

	for (size_t i = 0; i < n; i++) {
		uint64_t q = bs[i]->active * (uint64_t)p->conf.rebalance.max_share_pct / 100;
		bs[i]->rb_quota = q > 0 ? q : 1;
		bs[i]->rb_round_closed = 0;
	}
	describe(has, sizeof(has), bs, n, false);
	log_debug("pool %s: rebalance round begins: connections %s", p->conf.name, has);
	p->rb.active = true;
	p->rb.started_ms = now;
	/* One bucket across rounds: a round that begins right after one ended
	 * goes on from its credit (closerate.h), it does not start afresh. */
	if (now - p->rb.rate.last_ms >= 1000)
		close_rate_start(&p->rb.rate, now); /* the first one goes now */
}

bool rebalance_step(struct pool *p, struct relay *r, int64_t now)
{
	const struct rebalance_conf *rc = &p->conf.rebalance;
	size_t cap = p->nbe ? p->nbe : 1;
	struct backend **bs = xcalloc(cap, sizeof(*bs));
	struct rebalance_be *be = xcalloc(cap, sizeof(*be));
	size_t *close = xcalloc(cap, sizeof(*close));
	bool busy = false;

	if (!rc->enabled) {
		p->rb.active = false;
		goto out;
	}
	size_t n = members(p, bs, be);
	bool ok = rebalance_spread_ok(be, n, rc->tolerance_pct);
	if (!p->rb.active) {
		if (ok)
			goto out;
		if (p->rb.short_of_it && now - p->rb.ended_ms < REBALANCE_GAP_MS) {
			busy = true; /* look again once the gap is over */
			goto out;
		}
		round_start(p, bs, n, now);
		n = members(p, bs, be);
	} else if (ok) {
		round_end(p, bs, n, true, now);
		goto out;
	}
	size_t budget = close_rate_allowed(&p->rb.rate, rc->rate, now);
	size_t planned = rebalance_plan(be, n, budget, close);
	if (planned == 0 && budget > 0) {
		/* Shares used up, or every loaded one down to its fair share
		 * while the light ones wait for clients to reconnect. */
		round_end(p, bs, n, false, now);
		busy = true;
		goto out;
	}
	/* Credit not spent now (nothing above its share until the closed
	 * clients reconnect) is not saved up (closerate.h). */
	close_rate_spend(&p->rb.rate, planned);
	for (size_t i = 0; i < n; i++) {
		if (!close[i])
			continue;
		relay_close_backend_conns(r, bs[i], close[i], END_REBALANCE);
		bs[i]->rb_round_closed += close[i];
		bs[i]->rb_closed += close[i];
	}
	busy = true;
out:
	free(bs);
	free(be);
	free(close);
	return busy;
}
