/*
 * server.h - the running daemon: its config, pools and frontends, and how a
 * config is applied at start-up and on reload. State is passed, not global:
 * the admin API and the signal handlers get the struct server.
 *
 * Reload (SIGHUP, POST /v1/reload): parse and validate the file; open the
 * listeners of new or changed frontends; only if all of that worked, apply:
 * pools are matched by name (pool_update keeps the live state of kept
 * backends), frontends by name; removed ones stop taking connections and
 * are freed when their last connection ends. A config that fails validation,
 * or whose listeners cannot be opened, changes nothing.
 *
 * Runtime edits (the admin API): the backends lbd runs are the file with the
 * persisted overlay of runtime edits on top (lbd/state.h). An edit is
 * validated, persisted, and only then applied; a reload re-applies the
 * overlay on the new file, dropping entries the file now agrees with.
 */
#ifndef LBD_SERVER_H
#define LBD_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "lbd/pool.h"
#include "lbd/relay.h"
#include "lbd/state.h"

struct event_base;
struct event;
struct check_engine;
struct drainer;

/* See server_on_reload. */
typedef void server_reload_hook(void *arg, const struct config *cfg);
struct server_hook {
	server_reload_hook *fn;
	void *arg;
};

struct server {
	struct event_base *base;
	char *config_path;
	struct config *cfg;
	struct check_engine *eng;
	struct pool **pools;
	size_t npools;
	struct frontend **fes;
	size_t nfes;
	bool stopping;
	int64_t started_ms;
	int64_t stop_deadline_ms;
	bool handed_over;	/* a new lbd took over: drain, persist nothing */
	bool closing_logged;	/* handover: the grace is over, said once */
	int64_t stop_linger_ms; /* handover: do not exit before (its last words) */
	struct event *stop_timer;
	uint64_t reloads, reload_failures;
	int64_t started_wall;	 /* unix seconds */
	char *last_reload_error; /* NULL after a good reload */
	struct lbd_state st;	 /* the runtime overlay, as persisted */
	struct drainer *drain;
	struct relay *relay;		  /* the worker threads */
	struct server_hook *reload_hooks; /* server_on_reload */
	size_t nreload_hooks;
};

/* Why an edit or a reload was refused (the admin API maps it to a status). */
enum server_err {
	SERR_OK,
	SERR_INVALID,	/* bad input: 400 */
	SERR_NOT_FOUND, /* no such pool or backend: 404 */
	SERR_CONFLICT,	/* name or address taken: 409 */
	SERR_PERSIST,	/* the state file could not be written: 500 */
	SERR_NOSPACE,	/* ... because the disk is full: 507 */
	SERR_CONFIG,	/* reload: the file does not load or apply: 422 */
};

/* Runtime edits. Each returns SERR_OK, or an error with *err (caller frees)
 * and nothing changed. */
enum server_err server_backend_add(struct server *s, const char *pool, const char *name,
				   const char *address, int weight, enum backend_state st,
				   char **err);
/* has_*: which of state and weight to change. */
enum server_err server_backend_patch(struct server *s, const char *pool, const char *name,
				     bool has_state, enum backend_state st, bool has_weight,
				     int weight, char **err);
/* With drain and live connections: state drain now, removal when drained
 * (*pending set). Otherwise removed now; its connections are closed at the
 * pool's drain_close_rate. */
enum server_err server_backend_remove(struct server *s, const char *pool, const char *name,
				      bool drain, bool *pending, char **err);
/* Reload; reset drops the runtime overlay first. On SERR_CONFIG, errs holds
 * every config error (may be NULL). */
enum server_err server_reload_ex(struct server *s, bool reset, struct config_errors *errs,
				 char **err);
/* drain.c: b finished draining (no connections left, or closed). */
void server_drain_done(struct server *s, struct backend *b);
/* The file's version of pool/name, or NULL. */
const struct backend_conf *server_file_backend(const struct server *s, const char *pool,
					       const char *name);

/* Builds pools and frontends from cfg (taken over) and the persisted
 * runtime edits. An unreadable state file stops the start, unless
 * from_config: then it is renamed aside and lbd runs the file alone.
 * With hold, frontends accept only after relay_release() (handover.h).
 * Returns -1 with *err. */
int server_start(struct server *s, struct event_base *base, const char *config_path,
		 struct config *cfg, bool from_config, bool hold, char **err);
/* Re-reads config_path and applies it; returns 0, or -1 (all logged). */
int server_reload(struct server *s);
/* After each successful reload (server_reload and server_reload_ex: SIGHUP
 * and POST /v1/reload alike), fn(arg, s->cfg) runs on the main loop, in
 * the order registered, for parts of lbd that keep settings of their own
 * (the gate). cfg is the config just applied; copy what is kept. */
void server_on_reload(struct server *s, server_reload_hook *fn, void *arg);
/* Stops accepting; the loop exits when connections end or the grace passes. */
void server_shutdown(struct server *s);
/* A new lbd took over (handover.h; the frontends stopped accepting
 * already): relay what is open until it ends, or until shutdown_grace and
 * then close it at drain_close_rate; the loop exits when none is left. */
void server_handover_drain(struct server *s);
void server_free(struct server *s);

struct pool *server_pool(const struct server *s, const char *name);
uint64_t server_active_conns(const struct server *s);

#endif
