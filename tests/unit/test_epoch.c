/* test_epoch.c - epoch-based reclamation with real threads: readers that
 * enter and leave critical sections in a loop while the main thread
 * publishes new objects and defers the old ones, as the relay does with
 * pool snapshots. A deferred object is poisoned, not freed, when the epoch
 * runs its free function, so a reader that could still see it finds the
 * poison (and ThreadSanitizer, in .ci/run, finds the unordered accesses). */
#include <check.h>

#include "tests/unit/unit.h"
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "lbd/epoch.h"

#define LIVE 0x11fe11fe11fe11feull
#define DEAD 0xdeaddeaddeaddeadull
#define NREADERS 3

struct obj {
	uint64_t magic; /* plain on purpose: the epoch must order the accesses */
	uint64_t gen;
	uint64_t check; /* gen ^ LIVE while live */
};

static _Atomic(struct obj *) cur;
static atomic_bool stop;
static atomic_ulong freed;
static atomic_ulong bad; /* a reader saw a poisoned or torn object */

static struct obj **all; /* every object ever made, freed at the end */
static size_t nall, capall;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct obj *obj_new(uint64_t gen)
{
	struct obj *o = malloc(sizeof(*o));
	ck_assert_ptr_nonnull(o);
	o->magic = LIVE;
	o->gen = gen;
	o->check = gen ^ LIVE;
	if (nall == capall) {
		capall = capall ? capall * 2 : 1024;
		all = realloc(all, capall * sizeof(*all));
		ck_assert_ptr_nonnull(all);
	}
	all[nall++] = o;
	return o;
}

/* The epoch's "free": poison, so a late reader notices. */
static void obj_poison(void *arg)
{
	struct obj *o = arg;
	o->magic = DEAD;
	o->check = 0;
	atomic_fetch_add(&freed, 1);
}

static bool obj_ok(const struct obj *o)
{
	return o->magic == LIVE && o->check == (o->gen ^ LIVE);
}

struct reader {
	struct epoch *e;
	int id;
	unsigned long sections;
};

/* A critical section: load the current object, use it a while (re-checking
 * it), leave; then announce a quiescent point, as a worker does between
 * callbacks. */
static void *reader_main(void *arg)
{
	struct reader *r = arg;
	unsigned spin = (unsigned)r->id * 7 + 1;

	while (!atomic_load(&stop)) {
		struct obj *o = atomic_load(&cur);
		for (unsigned i = 0; i < 4; i++) {
			if (!obj_ok(o))
				atomic_fetch_add(&bad, 1);
			/* Hold it a varying while: the writer swaps meanwhile. */
			for (volatile unsigned j = 0; j < (spin * 37 + i * 101) % 500; j++)
				;
		}
		spin = spin * 1103515245u + 12345u;
		r->sections++;
		/* Every few sections, as the relay does on a timer. */
		if (r->sections % 3 == 0)
			epoch_quiesce(r->e, r->id);
	}
	epoch_quiesce(r->e, r->id);
	return NULL;
}

static void free_all(void)
{
	for (size_t i = 0; i < nall; i++)
		free(all[i]);
	free(all);
	all = NULL;
	nall = capall = 0;
}

START_TEST(test_readers_never_see_a_freed_object)
{
	struct event_base *base = event_base_new();
	struct epoch *e = epoch_new(base, NREADERS);
	struct reader rd[NREADERS];
	pthread_t th[NREADERS];
	uint64_t gen = 0;
	unsigned long deferred = 0;

	atomic_store(&cur, obj_new(gen++));
	for (int i = 0; i < NREADERS; i++) {
		rd[i] = (struct reader){.e = e, .id = i};
		epoch_quiesce(e, i); /* as relay_start does before the thread runs */
		ck_assert_int_eq(pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
	}
	/* The writer: publish, defer the old one, let the reclaim timer run. */
	int64_t end = now_ms() + 1500;
	while (now_ms() < end) {
		struct obj *old = atomic_exchange(&cur, obj_new(gen++));
		epoch_defer(e, obj_poison, old);
		deferred++;
		event_base_loop(base, EVLOOP_NONBLOCK);
		nanosleep(&(struct timespec){0, 200 * 1000}, NULL);
	}
	/* Reclaiming keeps up while readers run: most deferred objects are
	 * already gone (a broken epoch that never frees passes no test). */
	unsigned long during = atomic_load(&freed);
	atomic_store(&stop, true);
	for (int i = 0; i < NREADERS; i++)
		pthread_join(th[i], NULL);

	unsigned long nbad = atomic_load(&bad);
	ck_assert_msg(nbad == 0, "%lu reads saw a freed (poisoned) object", nbad);
	for (int i = 0; i < NREADERS; i++)
		ck_assert_msg(rd[i].sections > 100, "reader %d ran %lu sections", i,
			      rd[i].sections);
	ck_assert_msg(deferred > 100, "only %lu objects deferred", deferred);
	ck_assert_msg(during > deferred / 2, "%lu of %lu freed while readers ran", during,
		      deferred);
	/* Every reader quiesced on its way out: the next tick frees the rest. */
	int64_t until = now_ms() + 2000;
	while (atomic_load(&freed) < deferred && now_ms() < until) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		nanosleep(&(struct timespec){0, 1000 * 1000}, NULL);
	}
	unsigned long nfreed = atomic_load(&freed);
	ck_assert_msg(nfreed == deferred, "%lu of %lu freed in the end", nfreed, deferred);
	ck_assert(obj_ok(atomic_load(&cur)));
	epoch_free(e);
	event_base_free(base);
	free_all();
}
END_TEST

/* One reader holds an object and does not quiesce: it stays, however many
 * ticks pass, while other readers move on; it goes once the reader does. */
struct holder {
	struct epoch *e;
	struct obj *held;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int step; /* 1: holding; 2: may let go; 3: let go */
};

static void *holder_main(void *arg)
{
	struct holder *h = arg;

	pthread_mutex_lock(&h->mu);
	h->held = atomic_load(&cur);
	h->step = 1;
	pthread_cond_broadcast(&h->cv);
	while (h->step != 2)
		pthread_cond_wait(&h->cv, &h->mu);
	if (!obj_ok(h->held))
		atomic_fetch_add(&bad, 1);
	h->step = 3;
	pthread_mutex_unlock(&h->mu);
	epoch_quiesce(h->e, 0);
	return NULL;
}

START_TEST(test_a_holding_reader_delays_the_free)
{
	struct event_base *base = event_base_new();
	struct epoch *e = epoch_new(base, 2);
	struct holder h = {.e = e};
	pthread_t th;

	pthread_mutex_init(&h.mu, NULL);
	pthread_cond_init(&h.cv, NULL);
	atomic_store(&cur, obj_new(1));
	epoch_quiesce(e, 0);
	epoch_quiesce(e, 1);
	ck_assert_int_eq(pthread_create(&th, NULL, holder_main, &h), 0);
	pthread_mutex_lock(&h.mu);
	while (h.step != 1)
		pthread_cond_wait(&h.cv, &h.mu);
	pthread_mutex_unlock(&h.mu);

	struct obj *old = atomic_exchange(&cur, obj_new(2));
	epoch_defer(e, obj_poison, old);
	/* Reader 1 quiesces all along; reader 0 holds old: several ticks. */
	int64_t end = now_ms() + 300;
	while (now_ms() < end) {
		epoch_quiesce(e, 1);
		event_base_loop(base, EVLOOP_NONBLOCK);
		nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
	}
	unsigned long early = atomic_load(&freed);
	ck_assert_msg(early == 0, "freed while a reader held it");

	pthread_mutex_lock(&h.mu);
	h.step = 2;
	pthread_cond_broadcast(&h.cv);
	pthread_mutex_unlock(&h.mu);
	pthread_join(th, NULL);
	unsigned long nbad = atomic_load(&bad);
	ck_assert_msg(nbad == 0, "the holder saw its object freed");
	end = now_ms() + 2000;
	while (atomic_load(&freed) == 0 && now_ms() < end) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		nanosleep(&(struct timespec){0, 1000 * 1000}, NULL);
	}
	unsigned long nfreed = atomic_load(&freed);
	ck_assert_msg(nfreed == 1, "%lu freed after the holder let go", nfreed);
	ck_assert_uint_eq(old->magic, DEAD);
	epoch_free(e);
	event_base_free(base);
	pthread_cond_destroy(&h.cv);
	pthread_mutex_destroy(&h.mu);
	free_all();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("epoch");
	TCase *tc = tcase_create("threads");

	tcase_set_timeout(tc, 20); /* each runs about 1.5 s, more under TSan */
	tcase_add_test(tc, test_readers_never_see_a_freed_object);
	tcase_add_test(tc, test_a_holding_reader_delays_the_free);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
