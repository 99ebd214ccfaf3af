/*
 * gate.h - the quorum/reboot gate inside lbd: its API, its thread, its leases.
 *
 * Routes (DESIGN.md "Gate API"), served twice:
 *   - on the admin unix socket (registered with admin_route; the socket's
 *     file mode is the access control, so a request there acts as admin);
 *   - on gate.listen, TCP (TLS with gate.tls.cert/key), run by a thread of
 *     the gate's own with its own event loop, so a slow store (the
 *     kubernetes store does HTTP) never stalls lbd's relay loop. Every
 *     request there needs "Authorization: Bearer <token>" from
 *     gate.tokens_file, which holds lines "NODE TOKEN" ("*" as NODE: an
 *     admin token). A node's token takes and releases only that node's
 *     lease; an admin token may do anything. The file is read at each
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
 * Once a second the gate thread releases leases whose holders are back
 * (policy.h gate_outcomes) and, with the kubernetes store, re-reads the
 * slots another lbd may have written.
 */
#ifndef LBD_GATE_GATE_H
#define LBD_GATE_GATE_H

#include <jansson.h>

struct gate;
struct config;
struct server;
struct admin;
struct event_base;

/*
 * Starts the gate if the config has a gate section (else returns NULL with
 * *err NULL). Reads its own copy of the config at config_path (a reload
 * changes it: gate_reload), loads the leases, starts the input
 * thread and the listener thread, and adds a timer to main_base that
 * publishes the quorum pool's health from s. On error returns NULL, *err set.
 */
struct gate *gate_start(struct event_base *main_base, struct server *s, const char *config_path,
			char **err);
/*
 * A reload of lbd succeeded (SIGHUP or POST /v1/reload; main.c hooks it
 * with server_on_reload): apply cfg's gate section, copied, on the main
 * loop. Leases, the listener and the store are kept. Everything but
 * gate.listen, gate.tls and gate.store (and, with the kubernetes store,
 * the store's kubeconfig) applies at once, for the next request and the
 * next outcomes tick; those keep their running value, with a warning that
 * they need a restart. A gate section added (g NULL) or removed by the
 * reload is logged and otherwise ignored until a restart.
 */
void gate_reload(struct gate *g, const struct config *cfg);
/* Adds the gate routes to the admin API (unix socket: admin rights). */
void gate_register_routes(struct gate *g, struct admin *a);
void gate_stop(struct gate **g);

/*
 * The API without a transport (both listeners and the tests use it):
 * token NULL means the admin socket. body may be NULL. Returns the HTTP
 * status and sets *out (a JSON object, caller decrefs).
 */
int gate_handle(struct gate *g, const char *method, const char *path, const char *token,
		json_t *body, json_t **out);

#endif
