/* drain.c - see drain.h. */
#include "lbd/drain.h"

#include <event2/event.h>
#include <stdlib.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "lbd/pool.h"
#include "lbd/rebalance.h"
#include "lbd/relay.h"
#include "lbd/server.h"

struct orphan {
	struct backend *b;
	int64_t rate;
	struct close_rate bucket;
};

struct drainer {
	struct server *s;
	struct event *tick;
	struct orphan *orph;
	size_t norph;
};

double drainer_seconds_left(const struct backend *b)
{
	if (b->state != BE_DRAIN || !b->pool)
		return 0;
	int64_t deadline = b->drain_started_ms + b->pool->conf.drain_timeout_ms;
	return (double)(deadline - mono_ms()) / 1000.0;
}

/* Closes what the rate allows since the last call. */
static size_t close_some(struct relay *rl, struct backend *b, int64_t rate, struct close_rate *r,
			 int64_t now, enum conn_end why)
{
	size_t n = close_rate_allowed(r, rate, now);
	if (n == 0)
		return 0;
	close_rate_spend(r, n);
	uint64_t active = atomic_load(&b->active);
	if (n > active) /* counted as closed: no more than there are */
		n = (size_t)active;
	return relay_close_backend_conns(rl, b, n, why);
}

/* A backend down by its pool's close_on_down: its connections are closed at
 * down_close_rate, so their clients reconnect to live backends without a
 * storm. Stops as soon as the rule no longer holds (it answers again). */
static bool down_step(struct drainer *d, struct pool *p, struct backend *b, int64_t now)
{
	if (!backend_down_close(b)) {
		if (b->down_closing) {
			b->down_closing = false;
			atomic_store(&b->close_budget, 0);
			log_kv(LOG_LVL_INFO,
			       LOG_KV("pool", p->conf.name, "backend", b->conf.name, "reason",
				      b->last.detail),
			       "backend %s/%s: no longer closing its connections (%s)",
			       p->conf.name, b->conf.name, b->last.detail);
		}
		return false;
	}
	if (b->active == 0)
		return false;
	if (!b->down_closing) {
		b->down_closing = true;
		close_rate_start(&b->down_rate, now); /* the first one goes now */
		log_kv(
		    LOG_LVL_WARN,
		    LOG_KV("pool", p->conf.name, "backend", b->conf.name, "reason", b->last.detail),
		    "backend %s/%s is down (%s): closing its %llu connections at %lld/s",
		    p->conf.name, b->conf.name, b->last.detail, (unsigned long long)b->active,
		    (long long)p->conf.down_close_rate);
	}
	b->down_closed += close_some(d->s->relay, b, p->conf.down_close_rate, &b->down_rate, now,
				     END_BACKEND_DOWN);
	return b->active > 0;
}

static bool drain_step(struct drainer *d, struct pool *p, struct backend *b, int64_t now)
{
	if (b->active == 0) {
		server_drain_done(d->s, b);
		return false;
	}
	if (now < b->drain_started_ms + p->conf.drain_timeout_ms) {
		/* Dead while draining: its WATCHes hang, waiting helps nobody.
		 * The drain ends once they are closed (active 0, above). */
		down_step(d, p, b, now);
		return true;
	}
	if (!b->drain_closing) {
		b->drain_closing = true;
		close_rate_start(&b->close_rate, now); /* the first one goes at the deadline */
		log_kv(LOG_LVL_WARN,
		       LOG_KV("pool", p->conf.name, "backend", b->conf.name, "reason",
			      "drain deadline"),
		       "backend %s/%s: drain deadline passed; closing %llu connections at %lld/s",
		       p->conf.name, b->conf.name, (unsigned long long)b->active,
		       (long long)p->conf.drain_close_rate);
	}
	b->drain_forced +=
	    close_some(d->s->relay, b, p->conf.drain_close_rate, &b->close_rate, now, END_DRAIN);
	if (b->active == 0) {
		server_drain_done(d->s, b);
		return false;
	}
	return true;
}

static bool orphans_step(struct drainer *d, int64_t now)
{
	for (size_t i = d->norph; i-- > 0;) {
		struct orphan *o = &d->orph[i];
		if (o->b->active > 0)
			close_some(d->s->relay, o->b, o->rate, &o->bucket, now, END_DRAIN);
		if (o->b->active > 0)
			continue;
		backend_unref(o->b);
		d->orph[i] = d->orph[--d->norph];
	}
	return d->norph > 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct drainer *d = arg;
	struct server *s = d->s;
	int64_t now = mono_ms();
	bool busy = orphans_step(d, now);

	for (size_t i = 0; i < s->npools; i++) {
		struct pool *p = s->pools[i];
		/* server_drain_done may remove p->be[j]: walk from the end. */
		for (size_t j = p->nbe; j-- > 0;) {
			if (j >= p->nbe)
				continue;
			if (p->be[j]->state == BE_DRAIN)
				busy |= drain_step(d, p, p->be[j], now);
			else
				busy |= down_step(d, p, p->be[j], now);
		}
		if (p->conf.rebalance.enabled || p->rb.active)
			busy |= rebalance_step(p, d->s->relay, now);
	}
	if (busy) {
		struct timeval tv = {0, DRAIN_TICK_MS * 1000};
		evtimer_add(d->tick, &tv);
	}
}

void drainer_kick(struct drainer *d)
{
	if (!evtimer_pending(d->tick, NULL)) {
		struct timeval tv = {0, 0};
		evtimer_add(d->tick, &tv);
	}
}

void drainer_adopt(struct drainer *d, struct backend *b, int64_t rate)
{
	if (b->active == 0)
		return;
	backend_ref(b);
	d->orph = xrealloc(d->orph, (d->norph + 1) * sizeof(*d->orph));
	d->orph[d->norph] = (struct orphan){.b = b, .rate = rate};
	close_rate_start(&d->orph[d->norph++].bucket, mono_ms());
	log_kv(LOG_LVL_INFO, LOG_KV("backend", b->conf.name, "reason", "removed"),
	       "backend %s: removed; closing its %llu connections at %lld/s", b->conf.name,
	       (unsigned long long)b->active, (long long)rate);
	drainer_kick(d);
}

struct drainer *drainer_new(struct event_base *base, struct server *s)
{
	struct drainer *d = xcalloc(1, sizeof(*d));

	d->s = s;
	d->tick = evtimer_new(base, on_tick, d);
	return d;
}

void drainer_free(struct drainer *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->norph; i++)
		backend_unref(d->orph[i].b);
	free(d->orph);
	event_free(d->tick);
	free(d);
}
