/*
 * epoch.h - freeing what worker threads may still be reading.
 *
 * The main thread publishes new versions of shared, read-mostly objects
 * (pool snapshots, retired frontends) with an atomic pointer swap, and hands
 * the old version to epoch_defer(). Each worker announces a quiescent point
 * (epoch_quiesce) from a timer callback, that is between two callbacks, when
 * it holds no pointer into shared state. An object deferred at epoch E is
 * freed once every worker has announced an epoch >= E. Readers pay one
 * atomic load per access and nothing else.
 */
#ifndef LBD_EPOCH_H
#define LBD_EPOCH_H

#include <stdint.h>

struct event_base;
struct epoch;

/* nreaders: the worker threads. The reclaim timer runs on main_base. */
struct epoch *epoch_new(struct event_base *main_base, int nreaders);
/* Runs every pending free: call only when no reader runs any more. */
void epoch_free(struct epoch *e);

/* Main thread: fn(arg) once no reader can hold arg. With e NULL (unit tests,
 * no threads), fn runs at once. */
void epoch_defer(struct epoch *e, void (*fn)(void *), void *arg);

/* How many readers e was made for; 1 for e NULL (no threads: the caller
 * is the one reader). Sizes per-reader arrays such as a backend's counters. */
int epoch_readers(const struct epoch *e);

/* Reader `id`: "I hold nothing shared right now." */
void epoch_quiesce(struct epoch *e, int id);

#endif
