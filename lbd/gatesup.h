/*
 * gatesup.h - lbd's side of the gate: it binds gate.listen, starts the gate
 * process (gate/proc.h) and keeps it running, feeds it the quorum pool's
 * health, and forwards the admin socket's gate routes to it.
 *
 * The VIP never waits on the gate: everything here is non-blocking on lbd's
 * main loop. If the gate process exits, crashes, or does not answer a ping
 * for GATESUP_HEARTBEAT_MS (then it is killed), lbd logs why and starts it
 * again after a backoff (100 ms, doubling to 5 s, back to 100 ms once it
 * has run for 30 s). Meanwhile the admin socket's gate routes answer 503
 * {"error": "gate restarting"}, and gate.listen stays bound here, so nodes'
 * connections wait in its queue for the next gate process.
 */
#ifndef LBD_GATESUP_H
#define LBD_GATESUP_H

#include <jansson.h>
#include <stdbool.h>

struct event_base;
struct server;
struct admin;
struct config;
struct gatesup;

#define GATESUP_HEARTBEAT_MS 10000

/*
 * NULL (and *err NULL) when s's config has no gate section. Binds
 * gate.listen (or takes it from an old lbd; an error here is a start-up
 * error, with *err), then starts the gate process and registers the gate
 * routes and the "gate" part of /v1/status with a. set_aside is lbd's -F,
 * handed on.
 */
struct gatesup *gatesup_start(struct event_base *base, struct server *s, struct admin *a,
			      bool set_aside, bool hold, char **err);
/* With hold, the gate process starts only now (a self-upgrade's new lbd,
 * once the old one has stopped its own: handover.h). */
void gatesup_go(struct gatesup *g);
/* gate.listen's socket, to hand over; -1 without one. */
int gatesup_listen_fd(const struct gatesup *g);
/* Handed over: stop the gate process for good (2 s at most); the routes
 * answer 503 from now on. */
void gatesup_retire(struct gatesup *g);
/* A reload succeeded: hand the gate its new settings (server_on_reload). */
void gatesup_reload(struct gatesup *g, const struct config *cfg);
/* Stops the gate process (SIGTERM, then SIGKILL after 2 s) and frees g. */
void gatesup_stop(struct gatesup **g);

#endif
