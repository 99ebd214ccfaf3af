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
 */
#ifndef LBD_SERVER_H
#define LBD_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "lbd/pool.h"
#include "lbd/relay.h"

struct event_base;
struct event;
struct check_engine;

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
	struct event *stop_timer;
	uint64_t reloads, reload_failures;
};

/* Builds pools and frontends from cfg (taken over). Returns -1 with *err. */
int server_start(struct server *s, struct event_base *base, const char *config_path,
		 struct config *cfg, char **err);
/* Re-reads config_path and applies it; returns 0, or -1 (all logged). */
int server_reload(struct server *s);
/* Stops accepting; the loop exits when connections end or the grace passes. */
void server_shutdown(struct server *s);
void server_free(struct server *s);

struct pool *server_pool(const struct server *s, const char *name);
uint64_t server_active_conns(const struct server *s);

#endif
