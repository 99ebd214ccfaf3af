/* server.c - applying a config to the running daemon. See server.h. */
#include "lbd/server.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "lbd/check.h"

struct pool *server_pool(const struct server *s, const char *name)
{
	for (size_t i = 0; i < s->npools; i++)
		if (strcmp(s->pools[i]->conf.name, name) == 0)
			return s->pools[i];
	return NULL;
}

static struct frontend *server_frontend(const struct server *s, const char *name)
{
	for (size_t i = 0; i < s->nfes; i++)
		if (strcmp(s->fes[i]->conf.name, name) == 0)
			return s->fes[i];
	return NULL;
}

uint64_t server_active_conns(const struct server *s)
{
	uint64_t n = 0;
	for (size_t i = 0; i < s->nfes; i++)
		n += s->fes[i]->active;
	return n;
}

static bool same_listen(const struct frontend_conf *a, const struct frontend_conf *b)
{
	if (a->nlisten != b->nlisten || a->freebind != b->freebind)
		return false;
	for (size_t i = 0; i < a->nlisten; i++)
		if (a->listen[i].len != b->listen[i].len ||
		    memcmp(&a->listen[i].ss, &b->listen[i].ss, a->listen[i].len) != 0)
			return false;
	return true;
}

/* Listeners to open for cfg: for each frontend, NULL when its current ones
 * are kept. Returns -1 with *err if any cannot be opened (none is kept). */
struct prepared {
	struct listener **ls;
	size_t nls;
};

static int prepare_listeners(struct server *s, const struct config *cfg, struct prepared *prep,
			     char **err)
{
	for (size_t i = 0; i < cfg->nfrontends; i++) {
		const struct frontend_conf *fc = &cfg->frontends[i];
		struct frontend *fe = server_frontend(s, fc->name);
		if (fe && same_listen(&fe->conf, fc))
			continue;
		if (relay_listeners_open(fc, &prep[i].ls, &prep[i].nls, err) < 0) {
			for (size_t j = 0; j < i; j++)
				if (prep[j].ls)
					relay_listeners_close(prep[j].ls, prep[j].nls);
			return -1;
		}
	}
	return 0;
}

static void apply_pools(struct server *s, const struct config *cfg)
{
	struct pool **np = xcalloc(cfg->npools, sizeof(*np));

	for (size_t i = 0; i < cfg->npools; i++) {
		struct pool *p = server_pool(s, cfg->pools[i].name);
		if (p) {
			pool_update(p, &cfg->pools[i]);
		} else {
			p = pool_new(&cfg->pools[i], s->eng);
			log_info("pool %s: %zu backends, balance %s", p->conf.name, p->nbe,
				 balance_name(p->conf.balance));
		}
		np[i] = p;
	}
	/* Pools gone from the file: their backends live on in the
	 * connections that hold them. */
	for (size_t i = 0; i < s->npools; i++) {
		bool kept = false;
		for (size_t j = 0; j < cfg->npools; j++)
			kept |= np[j] == s->pools[i];
		if (!kept) {
			log_info("pool %s: removed by reload", s->pools[i]->conf.name);
			pool_free(s->pools[i]);
		}
	}
	free(s->pools);
	s->pools = np;
	s->npools = cfg->npools;
}

static void apply_frontends(struct server *s, const struct config *cfg, struct prepared *prep)
{
	struct frontend **nf = xcalloc(cfg->nfrontends, sizeof(*nf));

	for (size_t i = 0; i < cfg->nfrontends; i++) {
		const struct frontend_conf *fc = &cfg->frontends[i];
		struct frontend *fe = server_frontend(s, fc->name);
		struct pool *p = server_pool(s, fc->pool);
		BUG_ON(!p); /* validated: a frontend names an existing pool */
		if (fe)
			frontend_update(fe, fc, p, prep[i].ls, prep[i].nls);
		else
			fe = frontend_new(s->base, fc, p, prep[i].ls, prep[i].nls);
		nf[i] = fe;
	}
	for (size_t i = 0; i < s->nfes; i++) {
		bool kept = false;
		for (size_t j = 0; j < cfg->nfrontends; j++)
			kept |= nf[j] == s->fes[i];
		if (!kept) {
			log_info("frontend %s: removed by reload", s->fes[i]->conf.name);
			frontend_retire(s->fes[i]);
		}
	}
	free(s->fes);
	s->fes = nf;
	s->nfes = cfg->nfrontends;
}

static int server_apply(struct server *s, struct config *cfg, char **err)
{
	struct prepared *prep = xcalloc(cfg->nfrontends ? cfg->nfrontends : 1, sizeof(*prep));

	if (prepare_listeners(s, cfg, prep, err) < 0) {
		free(prep);
		return -1;
	}
	apply_pools(s, cfg);
	apply_frontends(s, cfg, prep);
	free(prep);
	config_free(s->cfg);
	s->cfg = cfg;
	return 0;
}

int server_start(struct server *s, struct event_base *base, const char *config_path,
		 struct config *cfg, char **err)
{
	memset(s, 0, sizeof(*s));
	s->base = base;
	s->config_path = xstrdup(config_path);
	s->started_ms = mono_ms();
	s->eng = check_engine_new(base);
	if (server_apply(s, cfg, err) < 0) {
		config_free(cfg);
		return -1;
	}
	return 0;
}

int server_reload(struct server *s)
{
	struct config_errors errs = {0};
	struct config *cfg = config_load(s->config_path, &errs);
	char *err = NULL;

	s->reloads++;
	if (!cfg) {
		s->reload_failures++;
		log_err("reload: refused, keeping the running config: %zu error(s) in %s", errs.n,
			s->config_path);
		for (size_t i = 0; i < errs.n; i++)
			log_err("reload: %s", errs.msgs[i]);
		config_errors_free(&errs);
		return -1;
	}
	if (server_apply(s, cfg, &err) < 0) {
		s->reload_failures++;
		log_err("reload: refused, keeping the running config: %s", err);
		free(err);
		config_free(cfg);
		return -1;
	}
	log_info("reload: applied %s (%zu frontends, %zu pools)", s->config_path, s->nfes,
		 s->npools);
	return 0;
}

static void stop_tick(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	uint64_t left = server_active_conns(s);

	if (left == 0) {
		log_info("shutdown: all connections closed");
		event_base_loopexit(s->base, NULL);
		return;
	}
	if (mono_ms() >= s->stop_deadline_ms) {
		log_warn("shutdown: grace period over, closing %llu connections",
			 (unsigned long long)left);
		event_base_loopexit(s->base, NULL);
		return;
	}
	struct timeval tv = {0, 100 * 1000};
	evtimer_add(s->stop_timer, &tv);
}

void server_shutdown(struct server *s)
{
	if (s->stopping) {
		log_warn("shutdown: second signal, exiting now");
		event_base_loopexit(s->base, NULL);
		return;
	}
	s->stopping = true;
	for (size_t i = 0; i < s->nfes; i++)
		frontend_stop(s->fes[i]);
	s->stop_deadline_ms = mono_ms() + s->cfg->shutdown_grace_ms;
	log_info("shutdown: not accepting; waiting up to %llds for %llu connections",
		 (long long)(s->cfg->shutdown_grace_ms / 1000),
		 (unsigned long long)server_active_conns(s));
	s->stop_timer = evtimer_new(s->base, stop_tick, s);
	stop_tick(-1, 0, s);
}

void server_free(struct server *s)
{
	for (size_t i = 0; i < s->nfes; i++)
		frontend_free(s->fes[i]);
	xfree(&s->fes);
	for (size_t i = 0; i < s->npools; i++)
		pool_free(s->pools[i]);
	xfree(&s->pools);
	if (s->eng)
		check_engine_free(s->eng);
	if (s->stop_timer)
		event_free(s->stop_timer);
	config_free(s->cfg);
	xfree(&s->config_path);
}
