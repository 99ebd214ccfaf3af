/*
 * gate.h - the quorum/reboot gate: its API, its leases, its listener.
 *
 * The gate runs in a process of its own (gate/proc.c), a child of lbd, so
 * nothing it waits on (the apiserver, etcd, Prometheus, a slow node) can
 * stall or stop the VIP. Everything here runs on that process's one event
 * loop; only the input poller (inputs.h) has a thread.
 *
 * Routes (docs/gate.md), served twice:
 *   - on lbd's admin unix socket: lbd forwards them to the gate process
 *     (lbd/gatesup.c) and answers when it replies; the socket's file mode is
 *     the access control, so a request there acts as admin (token NULL);
 *   - on gate.listen, TCP (TLS with gate.tls.cert/key), a socket lbd binds
 *     and hands over. Every request there needs "Authorization: Bearer
 *     <token>" from gate.tokens_file, which holds lines "NODE TOKEN" ("*" as
 *     NODE: an admin token). A node's token takes and releases only that
 *     node's lease; an admin token may do anything. The file is read at each
 *     request (rotation needs no reload), refused if group/world-readable,
 *     and compared in constant time; no token is ever logged.
 *
 *   GET    /v1/gate/status          inputs, quorum arithmetic, leases, and
 *                                   what a master/worker request would get
 *   GET    /v1/gate/leases
 *   POST   /v1/gate/leases          {node, role, reason, ttl} -> 201 lease
 *                                   (200 when renewing one already held) |
 *                                   409 {"granted": false, "reasons": [...]}
 *   DELETE /v1/gate/leases/{node}   -> 200 | 404
 *
 * The lease store is never a reason not to start: one that cannot be opened
 * or read is unknown, every lease is refused with that reason, and the gate
 * tries again on each request and once a second until it answers. Once a
 * second the gate also releases leases whose holders are back (policy.h
 * gate_outcomes).
 */
#ifndef LBD_GATE_GATE_H
#define LBD_GATE_GATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "gate/policy.h"

struct gate;
struct config;
struct event_base;

/*
 * Starts the gate on base (NULL: no listener and no tick, for tests that
 * call gate_handle). cfg holds the gate section and state_dir, validated by
 * lbd; the gate takes it over. listen_fd is gate.listen, bound and
 * listening, or -1. set_aside is lbd's -F: a lease file that cannot be read
 * is renamed aside (store.h). Returns NULL with *err only for what a restart
 * cannot mend either: a TLS certificate that does not load.
 */
struct gate *gate_start(struct event_base *base, struct config *cfg, int listen_fd, bool set_aside,
			char **err);
/*
 * lbd reloaded its config: apply cfg's gate section (taken over). Leases,
 * the listener and the store are kept. Everything but gate.listen, gate.tls
 * and gate.store (and, with the kubernetes store, the store's kubeconfig)
 * applies at once, for the next request and the next outcomes tick; those
 * keep their running value, with a warning that they need a restart.
 */
void gate_reload(struct gate *g, struct config *cfg);
/* The quorum pool as lbd sees it now (copied). */
void gate_set_pool(struct gate *g, const struct gate_pool_in *p);
void gate_stop(struct gate **g);

/*
 * Leases by holder (FleetLock and the API use these). who is the token's
 * node ("*": an admin token; NULL: the admin socket). A request names its
 * holder, or it is "node/<who>" (a node's token) or "admin". The same
 * holder renews (same slot, same fence); another is refused (409) with
 * who holds it since when, unless it is an admin that names no holder (an
 * admin naming one, as lbctl upgrade does, is that holder like anyone). The role is the
 * cluster's (gate_node_role); a role in the request must match it or be
 * stricter (master for a node about to join: gate_request_role).
 */
struct gate_ask {
	const char *node;
	const char *role;   /* NULL: the gate says */
	const char *holder; /* NULL: the default above */
	const char *reason;
	int64_t ttl_ms; /* 0: lease_ttl */
	bool release_on_outcomes;
};
int gate_acquire(struct gate *g, const char *who, const struct gate_ask *a, json_t **out);
/* holder NULL: the default above. 200, 404 (none held), 409 (another's). */
int gate_release(struct gate *g, const char *who, const char *node, const char *holder,
		 json_t **out);

/* A Kubernetes node name (lowercase RFC 1123, at most 253): what leases are named by. */
bool gate_node_name_ok(const char *s);

/* The gate's Prometheus families (lbd_gate_leases, lbd_gate_requests_total,
 * lbd_gate_input_age_seconds, lbd_gate_store_known), as text for lbd's
 * /metrics (caller frees; NULL if out of memory). */
char *gate_metrics(struct gate *g);

/*
 * The node a gate.listen bearer token belongs to ("*": an admin token), by
 * gate.tokens_file: 0 with *who (caller frees), or an HTTP status with *out
 * {"error": ...}. FleetLock (fleetlock.h) authenticates with it.
 */
int gate_authenticate(struct gate *g, const char *token, char **who, json_t **out);

/*
 * The API without a transport (the listener, lbd's forwarded requests and
 * the tests use it): token NULL means the admin socket. body may be NULL.
 * Returns the HTTP status and sets *out (a JSON object, caller decrefs).
 */
int gate_handle(struct gate *g, const char *method, const char *path, const char *token,
		json_t *body, json_t **out);

#endif
