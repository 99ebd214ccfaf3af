/*
 * lease.h - the gate's lease table: who may be down right now.
 *
 * A lease occupies one slot ("master-0", "worker-2"): a role has as many
 * slots as its concurrency. A lease has a holder node, role, reason,
 * created/renewed times, a TTL and a fencing number that only grows (a new
 * grant always gets a larger number than any before it, across restarts).
 *
 * The TTL does not free a slot. A lease whose holder stopped renewing is
 * "stale": the node may well be down (that is what it asked for), so the
 * slot keeps blocking until the gate sees the node back (new bootID, Ready,
 * and for a master its backend up and etcd member healthy, for `soak`), the
 * node is deleted from the cluster, the holder releases it, or an admin
 * does. This file is pure: the table lives in memory, and a store
 * (store_file.c, store_kube.c) makes it durable.
 */
#ifndef LBD_GATE_LEASE_H
#define LBD_GATE_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gate_role { GATE_ROLE_MASTER, GATE_ROLE_WORKER };

/* A node label value recorded at grant time (per-label caps count these). */
struct gate_label {
	char *key, *value;
};

struct gate_lease {
	char *node;
	enum gate_role role;
	int slot; /* index within the role: master-0, worker-1, ... */
	char *reason;
	int64_t created_ms, renewed_ms; /* wall clock, ms since the epoch */
	int64_t ttl_ms;
	uint64_t fence;
	char *boot_id; /* the node's bootID when granted; NULL if unknown */
	struct gate_label *labels;
	size_t nlabels;
	int64_t back_since_ms; /* outcomes all met since (0: not yet) */
	/* Who asked: "node/NAME" (a node's token, lbctl gate watch), "admin",
	 * "fleetlock/ID", "lbctl upgrade RUN". Only the holder renews or
	 * releases its lease (an admin may too); another asker is refused. */
	char *holder;
	/* The gate releases the lease itself once the node is back (gate
	 * watch asks for this); otherwise the holder releases it. */
	bool release_on_outcomes;
	char *version; /* store bookkeeping (kube resourceVersion); NULL for file */
};

struct lease_table {
	struct gate_lease *v;
	size_t n;
	uint64_t last_fence; /* the largest fencing number ever handed out */
};

const char *gate_role_name(enum gate_role r);
int gate_role_parse(const char *s, enum gate_role *out);
/* "master-0" into buf. */
const char *gate_slot_name(enum gate_role r, int slot, char *buf, size_t len);
int gate_slot_parse(const char *s, enum gate_role *role, int *slot);

/* TTL passed without a renewal. */
bool gate_lease_stale(const struct gate_lease *l, int64_t now_ms);

void gate_lease_copy(struct gate_lease *dst, const struct gate_lease *src);
void gate_lease_clear(struct gate_lease *l);
const char *gate_lease_label(const struct gate_lease *l, const char *key);

void lease_table_init(struct lease_table *t);
void lease_table_free(struct lease_table *t);
void lease_table_copy(struct lease_table *dst, const struct lease_table *src);
struct gate_lease *lease_table_find(struct lease_table *t, const char *node);
const struct gate_lease *lease_table_find_const(const struct lease_table *t, const char *node);
/* The first free slot of role below max, or -1. */
int lease_table_free_slot(const struct lease_table *t, enum gate_role role, int max);
size_t lease_table_count(const struct lease_table *t, enum gate_role role);

/*
 * Adds a lease for l->node in l->slot (copied), created and renewed now,
 * with the next fencing number (or l->fence if a store saw a larger one).
 * The caller has checked the slot is free and the node holds nothing
 * (BUG_ON otherwise).
 */
struct gate_lease *lease_table_add(struct lease_table *t, const struct gate_lease *l,
				   int64_t now_ms);
/* Renews node's lease (renewed = now; ttl if > 0; reason if non-NULL). */
struct gate_lease *lease_table_renew(struct lease_table *t, const char *node, int64_t now_ms,
				     int64_t ttl_ms, const char *reason);
/* Removes node's lease; returns 0, or -1 if it held none. */
int lease_table_remove(struct lease_table *t, const char *node);

#endif
