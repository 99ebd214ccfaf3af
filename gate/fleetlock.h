/*
 * fleetlock.h - the FleetLock protocol on gate.listen, so the update agents
 * of Fedora CoreOS and Flatcar (Zincati, and clients written for airlock)
 * take their reboot slot from the gate unchanged.
 *
 *   POST /v1/pre-reboot    lock: a lease for client_params.id
 *   POST /v1/steady-state  unlock: give that lease back if this client holds it
 *
 * Every request needs the header "fleet-lock-protocol: true" (else 400) and
 * a body {"client_params": {"id": ID, "group": GROUP}}. Success is 200;
 * every failure is a non-2xx status with {"kind": K, "value": text}, K from
 * a small fixed set (the protocol asks for bounded cardinality).
 *
 * The mapping onto the gate (docs/gate.md "FleetLock"):
 *   - id is the node's name, as the gate knows it (a Kubernetes node, a
 *     backend of quorum.pool, an etcd member); the lease is for that node;
 *   - authentication is gate.listen's: a bearer token from gate.tokens_file,
 *     and a node's token acts only for its own node (id must be its NODE);
 *     an admin token may act for any id;
 *   - the holder is "fleetlock/<id>", and the lease is not released on
 *     outcomes: the client says when it is back (steady-state);
 *   - group names a role: masters, controllers, control-plane -> master;
 *     workers, default -> worker (default is Zincati's own group). The
 *     role must be the one the gate derives for the node, else refused;
 *   - pre-reboot by the holder that holds the lease renews it (recursive
 *     lock); a lease of any other holder (lbctl upgrade, gate watch, an
 *     admin) is never taken over, even with an admin token;
 *   - steady-state releases only a lease held by fleetlock/<id>, and is
 *     200 when there is none (unlock if held).
 */
#ifndef LBD_GATE_FLEETLOCK_H
#define LBD_GATE_FLEETLOCK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct gate;

/* Is path one of the FleetLock routes above? */
bool gate_fleetlock_path(const char *path);

/*
 * Answers one FleetLock request without a transport: protocol is the
 * fleet-lock-protocol header (or NULL), authorization the Authorization
 * header (or NULL), body the raw request body (len bytes, may be NULL).
 * Returns the HTTP status and sets *out (caller decrefs).
 */
int gate_fleetlock(struct gate *g, const char *method, const char *path, const char *protocol,
		   const char *authorization, const char *body, size_t len, json_t **out);

#endif
