/* epoch.c - see epoch.h. */
#include "lbd/epoch.h"

#include <event2/event.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/xmalloc.h"

#define EPOCH_TICK_MS 50

struct deferred {
	void (*fn)(void *);
	void *arg;
	uint64_t epoch;
};

struct epoch {
	_Atomic uint64_t now;
	int nreaders;
	_Atomic uint64_t *seen; /* per reader: the last epoch it announced */
	struct deferred *d;	/* main thread only */
	size_t nd;
	struct event *tick;
};

static uint64_t min_seen(struct epoch *e)
{
	uint64_t m = UINT64_MAX;
	for (int i = 0; i < e->nreaders; i++) {
		uint64_t v = atomic_load(&e->seen[i]);
		if (v < m)
			m = v;
	}
	return m;
}

static void reclaim(struct epoch *e, bool all)
{
	uint64_t safe = all ? UINT64_MAX : min_seen(e);
	size_t keep = 0;

	for (size_t i = 0; i < e->nd; i++) {
		if (e->d[i].epoch <= safe)
			e->d[i].fn(e->d[i].arg);
		else
			e->d[keep++] = e->d[i];
	}
	e->nd = keep;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct epoch *e = arg;

	reclaim(e, false);
	if (e->nd > 0) {
		struct timeval tv = {0, EPOCH_TICK_MS * 1000};
		evtimer_add(e->tick, &tv);
	}
}

struct epoch *epoch_new(struct event_base *main_base, int nreaders)
{
	struct epoch *e = xcalloc(1, sizeof(*e));

	e->nreaders = nreaders;
	e->seen = xcalloc((size_t)nreaders, sizeof(*e->seen));
	atomic_store(&e->now, 1);
	e->tick = evtimer_new(main_base, on_tick, e);
	return e;
}

void epoch_free(struct epoch *e)
{
	if (!e)
		return;
	reclaim(e, true);
	free(e->d);
	event_free(e->tick);
	free((void *)e->seen);
	free(e);
}

void epoch_defer(struct epoch *e, void (*fn)(void *), void *arg)
{
	if (!e) {
		fn(arg);
		return;
	}
	/* Readers that announce the new value afterwards started a fresh
	 * callback after the swap that made arg unreachable. */
	uint64_t ep = atomic_fetch_add(&e->now, 1) + 1;
	e->d = xrealloc(e->d, (e->nd + 1) * sizeof(*e->d));
	e->d[e->nd++] = (struct deferred){fn, arg, ep};
	if (!evtimer_pending(e->tick, NULL)) {
		struct timeval tv = {0, EPOCH_TICK_MS * 1000};
		evtimer_add(e->tick, &tv);
	}
}

int epoch_readers(const struct epoch *e)
{
	return e ? e->nreaders : 1;
}

void epoch_quiesce(struct epoch *e, int id)
{
	atomic_store(&e->seen[id], atomic_load(&e->now));
}
