/*
 * check.h - active health checks: https/http GET (default /readyz) and tcp.
 *
 * One check engine per event loop drives libcurl's multi-socket interface
 * from libevent, so no check ever blocks the loop. Each struct check probes
 * one backend every interval and reports every result to its owner; a failed
 * check is data (a reason and a text operators read), not an error.
 * The rise/fall hysteresis is written once, here, as pure functions.
 */
#ifndef LBD_CHECK_H
#define LBD_CHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

struct event_base;
struct check_engine;
struct check;

enum check_reason {
	CHK_OK,
	CHK_CONNECT_REFUSED,
	CHK_CONNECT_TIMEOUT,
	CHK_CONNECT_ERROR,
	CHK_TIMEOUT, /* connected, but no complete answer in time */
	CHK_TLS_ERROR,
	CHK_BAD_STATUS,
	CHK_READ_ERROR, /* connection closed or garbage instead of HTTP */
	CHK_INTERNAL,
	CHK_REASON_MAX
};

struct check_result {
	enum check_reason reason;
	int status;	    /* HTTP status, 0 if none */
	bool tcp_ok;	    /* the TCP connect succeeded (the fail-safe uses this) */
	bool answered;	    /* some byte came back: a TLS handshake, a status, a body */
	int64_t latency_us; /* from start to result */
	/* What operators read: "readyz 503: [-]etcd failed", "connect refused",
	 * "TLS: certificate verify failed", "timeout after 1s". */
	char detail[256];
};

/* Hysteresis, as HAProxy's check->health: a counter between 0 and
 * rise+fall-1; the backend is up at or above rise (a success reaching rise
 * jumps to the top, a failure below rise drops to 0). The very first result
 * decides at once (up or down) so a fresh backend is not held unknown. */
struct check_health {
	int counter;
	int rise, fall;
	bool up;
	bool known; /* at least one result seen */
};

void check_health_init(struct check_health *h, int rise, int fall);
/* Feeds one result; returns true if h->up changed (or became known). */
bool check_health_update(struct check_health *h, bool ok);

const char *check_reason_name(enum check_reason r);

/* Whether a failed result says the backend's transport is dead, not its
 * application: the connect was refused, timed out or failed, or the probe
 * timed out without a byte back. A backend down for such a reason has no
 * use for its established connections (lbd/drain.c closes them); one that
 * answers, even 503, keeps them. */
bool check_result_transport_dead(const struct check_result *r);

typedef void (*check_cb)(void *arg, const struct check_result *res);

struct check_engine *check_engine_new(struct event_base *base);
void check_engine_free(struct check_engine *eng);

/* conf and addr are copied. The first probe runs after first_delay_ms, then
 * every conf->interval_ms; cb is called on the loop with each result. */
struct check *check_new(struct check_engine *eng, const struct health_conf *conf,
			const struct sockaddr_conf *addr, const char *backend_name, check_cb cb,
			void *arg);
void check_start(struct check *c, int64_t first_delay_ms);
/* Stops and frees; safe while a probe is in flight (cb is not called again). */
void check_free(struct check *c);

#endif
