/*
 * handover.h - lbd replaces itself without refusing a connection.
 *
 * `kill -USR2 <pid>` or POST /v1/restart (lbctl restart) start the lbd
 * binary now on disk, with the same arguments, as nginx's USR2 does. The new
 * process inherits every listening socket (the VIP frontends' - the same
 * sockets, so what waits in their accept queues is not lost - the admin
 * socket and listeners, the metrics listener and gate.listen), loads the
 * config and the state, opens its listeners on the inherited sockets,
 * starts its checks, and, once every backend has a first check result
 * (or after HANDOVER_CHECKS_MS), says "ready". Until then it accepts
 * nothing: the old process serves as if nothing happened, and keeps doing
 * so if the new one fails (bad config, crash, not ready within
 * HANDOVER_READY_MS), logging why.
 *
 * On "ready" the old process stops accepting, stops its gate process (so no
 * two gates ever grant), tells the new one "go", hands systemd the new main
 * PID, and drains: established connections (WATCHes) are relayed until
 * they end, or until shutdown_grace and then closed at drain_close_rate;
 * then it exits. Until it does, it tells the new process how many
 * connections it still holds (GET /v1/status "previous").
 *
 * Between the two: a socketpair (common/msg.h framing), and in the new
 * process's environment LBD_HANDOVER_FD (its end) and LBD_INHERIT
 * ("kind:fd,kind:fd,...": kinds relay, admin-unix, admin-tcp, metrics,
 * gate). Each inherited socket is matched to the config by its own address
 * (getsockname), not by a name: a reload may rename a frontend.
 *
 *   new -> old   ready {pid, version} | failed {why}
 *   old -> new   go {}        the old one stopped accepting: accept
 *                gate {}      its gate process is gone: start ours
 *                draining {pid, connections}   once a second until it exits
 */
#ifndef LBD_HANDOVER_H
#define LBD_HANDOVER_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/socket.h>

struct event_base;
struct server;
struct admin;
struct gatesup;

#define HANDOVER_READY_MS 60000 /* the new lbd must be ready within this */
#define HANDOVER_CHECKS_MS 5000 /* it waits this long at most for first checks */

enum handover_kind {
	HANDOVER_RELAY,
	HANDOVER_ADMIN_UNIX,
	HANDOVER_ADMIN_TCP,
	HANDOVER_METRICS,
	HANDOVER_GATE,
};

/* ---- every lbd, at start-up ---- */

/* Before anything else: remembers argv and the binary's path for a later
 * restart, and takes what an old lbd handed over from the environment. */
void handover_init(int argc, char **argv);
/* True when an old lbd started this one: accept nothing before "go". */
bool handover_inherited(void);
/* An inherited listening socket of kind bound to sa (taken: ask again for
 * the next one), or -1. */
int handover_take(enum handover_kind kind, const struct sockaddr *sa, socklen_t len);
/* This lbd cannot start: tell the old one why (it keeps serving). */
void handover_fail(const char *why);

/*
 * Serving as soon as go() has run: sets up the restart route, closes
 * inherited sockets the config no longer uses, and, when an old lbd waits,
 * says "ready" once the first checks are in, calls go(arg) on its "go" and
 * starts the gate process (gatesup_go) on its "gate" (both at once
 * otherwise, or when the old lbd goes away).
 */
void handover_start(struct event_base *base, struct server *s, struct admin *a, struct gatesup *g,
		    void (*go)(void *arg), void *arg);

/* ---- the old lbd ---- */

/* SIGUSR2: starts the binary on disk; the result is logged. */
void handover_begin(void);
/* True once a new lbd took over: this one only drains. */
bool handover_done(void);
/* Its part of GET /v1/status (registered by handover_start): "version",
 * "previous" (the old lbd still draining), "restart" (under way),
 * "successor", "last_restart_error". */
void handover_status(json_t *status);
void handover_stop(void);

#endif
