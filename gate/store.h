/*
 * store.h - where leases live between requests and across restarts.
 *
 *   file        (default) one JSON file under state_dir, replaced atomically
 *               (write temp, fsync, rename, fsync dir) on every change; the
 *               in-memory table is the truth while lbd runs.
 *   kubernetes  one coordination.k8s.io/v1 Lease per slot ("lbd-gate-master-0")
 *               and one for the fencing counter, every write a compare-and-swap
 *               on resourceVersion, so the two lbd of an active/passive pair
 *               never grant one slot twice: the loser gets a conflict.
 *
 * Every call blocks (file I/O, or HTTP to the apiserver with a timeout): the
 * gate calls them from its own thread, never from lbd's relay loop.
 * Returns: 0 ok, GATE_STORE_CONFLICT when another writer got there first
 * (the table was reloaded; decide again), -1 error with *err (caller frees).
 */
#ifndef LBD_GATE_STORE_H
#define LBD_GATE_STORE_H

#include <jansson.h>
#include <stdbool.h>

#include "gate/lease.h"

#define GATE_STORE_CONFLICT (-2)

struct gate_store;
struct kubeconfig;

/* set_aside (lbd -F): a file that cannot be read is renamed aside at load,
 * and a new one starts with fences above the old ones (store_file.c). */
struct gate_store *gate_store_file_new(const char *state_dir, bool set_aside, char **err);
/* ns: the namespace of the Lease objects. */
struct gate_store *gate_store_kube_new(const struct kubeconfig *kc, const char *ns, char **err);
void gate_store_free(struct gate_store **s);
const char *gate_store_name(const struct gate_store *s);

/* Replaces *t with what the store holds. */
int gate_store_load(struct gate_store *s, struct lease_table *t, char **err);
/* The next fencing number (file: t->last_fence + 1; kube: a CAS'd counter). */
int gate_store_next_fence(struct gate_store *s, const struct lease_table *t, uint64_t *fence,
			  char **err);
/* Records l (a new grant or a renewal); after is the table with l in it. */
int gate_store_put(struct gate_store *s, const struct lease_table *after, struct gate_lease *l,
		   char **err);
/* Removes l's slot; after is the table without l. */
int gate_store_del(struct gate_store *s, const struct lease_table *after,
		   const struct gate_lease *l, char **err);

/* Shared by both stores and the API (lease.c): a lease as JSON and back. */
json_t *gate_lease_to_json(const struct gate_lease *l, int64_t now_ms);
int gate_lease_from_json(json_t *o, struct gate_lease *l, const char **why);

/* The vtable behind the functions above (store_file.c, store_kube.c). */
struct gate_store_ops {
	const char *name;
	int (*load)(struct gate_store *s, struct lease_table *t, char **err);
	int (*next_fence)(struct gate_store *s, const struct lease_table *t, uint64_t *fence,
			  char **err);
	int (*put)(struct gate_store *s, const struct lease_table *after, struct gate_lease *l,
		   char **err);
	int (*del)(struct gate_store *s, const struct lease_table *after,
		   const struct gate_lease *l, char **err);
	void (*free)(struct gate_store *s);
};

struct gate_store {
	const struct gate_store_ops *ops;
};

#endif
