/* server.c - applying a config to the running daemon. See server.h. */
#include "lbd/server.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "lbd/check.h"
#include "lbd/drain.h"
#include "lbd/handover.h"
#include "common/tls.h"

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
	return n + relay_retired_active(s->relay);
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
	SSL_CTX *ctx; /* mode tls: certificate and key, freshly loaded */
};

static void prepared_free(struct prepared *prep, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (prep[i].ls)
			relay_listeners_close(prep[i].ls, prep[i].nls);
		if (prep[i].ctx)
			SSL_CTX_free(prep[i].ctx);
	}
}

static bool addr_unspecified(const struct sockaddr_conf *a)
{
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == 0;
	const struct in6_addr *i6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
	return IN6_IS_ADDR_UNSPECIFIED(i6);
}

/* Does a frontend of this lbd listen on a already, or on an address whose
 * bind a would collide with (":6443" narrowed to "192.0.2.10:6443" at a
 * reload, or widened back)? Then a probe would only find lbd itself. */
static bool listening_on(const struct server *s, const struct sockaddr_conf *a)
{
	for (size_t i = 0; i < s->nfes; i++)
		for (size_t j = 0; j < s->fes[i]->conf.nlisten; j++) {
			const struct sockaddr_conf *x = &s->fes[i]->conf.listen[j];
			if (sockaddr_conf_same(x, a))
				return true;
			if (x->ss.ss_family == a->ss.ss_family &&
			    sockaddr_conf_port(x) == sockaddr_conf_port(a) &&
			    (addr_unspecified(x) || addr_unspecified(a)))
				return true;
		}
	return false;
}

/*
 * Frontend sockets carry SO_REUSEPORT (one per worker), and the kernel would
 * let a second lbd, or anything else that sets it, bind beside them and take
 * half the VIP's connections. So before binding, ask the kernel once without
 * SO_REUSEPORT: EADDRINUSE means another socket holds the address. Not asked
 * for addresses this lbd already listens on (a reload) or was handed by the
 * old lbd (a self-upgrade, the one overlap that is meant).
 */
static int probe_free(const struct frontend_conf *fc, const struct sockaddr_conf *a, char **err)
{
	int one = 1;
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return 0; /* relay_listeners_open() will say why */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (fc->freebind)
		setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
	int rc = bind(fd, (const struct sockaddr *)&a->ss, a->len);
	int e = errno;
	close(fd);
	if (rc < 0 && e == EADDRINUSE) {
		*err = xasprintf("%s: another process already listens there (frontend %s): "
				 "is another lbd running? (ss -ltnp 'sport = :%d' shows which)",
				 a->text, fc->name, sockaddr_conf_port(a));
		return -1;
	}
	return 0;
}

static int prepare_listeners(struct server *s, const struct config *cfg, struct prepared *prep,
			     char **err)
{
	for (size_t i = 0; i < cfg->nfrontends; i++) {
		const struct frontend_conf *fc = &cfg->frontends[i];
		struct frontend *fe = server_frontend(s, fc->name);
		if (fc->mode == FE_MODE_TLS) {
			char *who = xasprintf("frontend %s", fc->name);
			prep[i].ctx = tls_server_ctx(&fc->tls, who, err);
			free(who);
			if (!prep[i].ctx) {
				prepared_free(prep, i);
				return -1;
			}
		}
		if (fe && same_listen(&fe->conf, fc))
			continue;
		for (size_t j = 0; !handover_inherited() && j < fc->nlisten; j++) {
			if (!listening_on(s, &fc->listen[j]) &&
			    probe_free(fc, &fc->listen[j], err) < 0) {
				prepared_free(prep, i + 1);
				return -1;
			}
		}
		if (relay_listeners_open(s->relay, fc, &prep[i].ls, &prep[i].nls, err) < 0) {
			prepared_free(prep, i + 1);
			return -1;
		}
	}
	return 0;
}

static void on_pool_change(struct pool *p, struct backend *b, void *arg)
{
	struct server *s = arg;

	if (b && s->drain &&
	    (b->state == BE_DRAIN || b->down_closing || backend_down_close(b) ||
	     p->conf.rebalance.enabled))
		drainer_kick(s->drain);
}

/* Applies the file's pool fc with the overlay on top to p (NULL: new). */
static struct pool *apply_pool(struct server *s, struct pool *p, const struct pool_conf *fc)
{
	struct state_eff *eff;
	size_t n = state_effective(&s->st, fc, &eff);
	struct pool_conf pc = *fc;

	pc.backends = xcalloc(n ? n : 1, sizeof(*pc.backends));
	for (size_t i = 0; i < n; i++)
		pc.backends[i] = eff[i].conf; /* shallow: eff owns them */
	pc.nbackends = n;
	if (p) {
		pool_update(p, &pc);
	} else {
		p = pool_new(&pc, s->eng, relay_epoch(s->relay));
		p->on_change = on_pool_change;
		p->on_change_arg = s;
		log_info("pool %s: %zu backends, balance %s", p->conf.name, p->nbe,
			 balance_name(p->conf.balance));
	}
	for (size_t i = 0; i < n; i++) {
		struct backend *b = pool_find(p, eff[i].conf.name);
		BUG_ON(!b);
		if (eff[i].runtime && b->state != eff[i].state)
			log_info("backend %s/%s: runtime state %s (overlay)", p->conf.name,
				 b->conf.name, backend_state_name(eff[i].state));
		backend_set_state(b, eff[i].state);
		b->remove_when_drained = eff[i].remove_when_drained;
	}
	pool_recheck(p);
	free(pc.backends);
	state_eff_free(eff, n);
	return p;
}

static void apply_pools(struct server *s, const struct config *cfg)
{
	struct pool **np = xcalloc(cfg->npools, sizeof(*np));

	for (size_t i = 0; i < cfg->npools; i++)
		np[i] = apply_pool(s, server_pool(s, cfg->pools[i].name), &cfg->pools[i]);
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
			fe = frontend_update(fe, fc, p, prep[i].ls, prep[i].nls, prep[i].ctx);
		else
			fe = frontend_new(s->relay, fc, p, prep[i].ls, prep[i].nls, prep[i].ctx);
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

/* Takes the overlay st (its entries; st is left empty) and applies cfg with
 * it. The listeners in prep are already open. */
static void server_commit(struct server *s, struct config *cfg, struct prepared *prep,
			  struct lbd_state *st)
{
	state_clear(&s->st);
	s->st.e = st->e;
	s->st.n = st->n;
	st->e = NULL;
	st->n = 0;
	apply_pools(s, cfg);
	apply_frontends(s, cfg, prep);
	config_free(s->cfg);
	s->cfg = cfg;
	drainer_kick(s->drain);
}

/* Applies cfg with the overlay; with reset, an empty overlay is persisted
 * first. Returns SERR_OK, or an error with *err and nothing changed. */
/* Says what each host name in cfg resolved to (at start and every reload). */
static void log_resolved(const struct config *cfg)
{
	char buf[64];

	for (size_t i = 0; i < cfg->nfrontends; i++)
		for (size_t j = 0; j < cfg->frontends[i].nlisten; j++) {
			const struct sockaddr_conf *a = &cfg->frontends[i].listen[j];
			if (a->resolved)
				log_info("frontend %s: %s resolves to %s", cfg->frontends[i].name,
					 a->text, sockaddr_conf_numeric(a, buf, sizeof(buf)));
		}
	for (size_t i = 0; i < cfg->npools; i++)
		for (size_t j = 0; j < cfg->pools[i].nbackends; j++) {
			const struct backend_conf *b = &cfg->pools[i].backends[j];
			if (b->addr.resolved)
				log_info("backend %s/%s: %s resolves to %s", cfg->pools[i].name,
					 b->name, b->addr.text,
					 sockaddr_conf_numeric(&b->addr, buf, sizeof(buf)));
		}
}

static enum server_err server_apply(struct server *s, struct config *cfg, bool reset, char **err)
{
	struct prepared *prep = xcalloc(cfg->nfrontends ? cfg->nfrontends : 1, sizeof(*prep));
	struct lbd_state st;
	enum server_err rc = SERR_OK;
	int eno = 0;

	if (prepare_listeners(s, cfg, prep, err) < 0) {
		free(prep);
		return SERR_CONFIG;
	}
	log_resolved(cfg);
	state_copy(&st, &s->st);
	if (reset) {
		state_clear(&st);
		if (state_save(&st, err, &eno) < 0) {
			rc = eno == ENOSPC || eno == EDQUOT ? SERR_NOSPACE : SERR_PERSIST;
			prepared_free(prep, cfg->nfrontends);
			state_free(&st);
			free(prep);
			return rc;
		}
		log_info("reload: runtime overlay cleared (%zu entries)", s->st.n);
	} else if (state_reconcile(&st, cfg) > 0) {
		/* Same meaning either way: a failed write is only untidy. */
		char *e2 = NULL;
		if (state_save(&st, &e2, &eno) < 0) {
			log_warn("overlay: cannot rewrite the state file: %s", e2);
			free(e2);
		}
	}
	server_commit(s, cfg, prep, &st);
	state_free(&st);
	free(prep);
	return SERR_OK;
}

/* -F: the state file could not be read; keep it for a human under a new
 * name and start with no runtime edits. Returns true if that worked. */
static bool set_state_aside(struct server *s, const char *state_dir, char **err)
{
	char *path = s->st.path ? xstrdup(s->st.path) : NULL;
	char *aside = path ? xasprintf("%s.corrupt-%lld", path, (long long)time(NULL)) : NULL;
	bool ok = path && rename(path, aside) == 0;

	if (ok) {
		log_warn("runtime state: %s; starting from the config file alone (-F), the "
			 "unreadable file is kept as %s",
			 *err, aside);
		xfree(err);
		state_free(&s->st);
		ok = state_open(&s->st, state_dir, err) == 0;
	}
	free(path);
	free(aside);
	return ok;
}

int server_start(struct server *s, struct event_base *base, const char *config_path,
		 struct config *cfg, bool from_config, bool hold, char **err)
{
	memset(s, 0, sizeof(*s));
	s->base = base;
	s->config_path = xstrdup(config_path);
	s->started_ms = mono_ms();
	s->started_wall = (int64_t)time(NULL);
	s->eng = check_engine_new(base);
	s->drain = drainer_new(base, s);
	s->relay = relay_start(base, cfg->threads, err);
	if (!s->relay) {
		config_free(cfg);
		return -1;
	}
	if (hold)
		relay_hold(s->relay);
	if (state_open(&s->st, cfg->state_dir, err) < 0 &&
	    !(from_config && set_state_aside(s, cfg->state_dir, err))) {
		char *e = *err;
		*err = xasprintf("runtime state: %s (lbd will not guess at acknowledged edits: "
				 "fix or move the file away, or start with -F to run the config "
				 "file alone)",
				 e);
		free(e);
		config_free(cfg);
		return -1;
	}
	if (s->st.n > 0)
		log_info("runtime overlay: %zu edits from %s", s->st.n, s->st.path);
	if (server_apply(s, cfg, false, err) != SERR_OK) {
		config_free(cfg);
		return -1;
	}
	return 0;
}

enum server_err server_reload_ex(struct server *s, bool reset, struct config_errors *errs,
				 char **err)
{
	struct config_errors e = {0};
	struct config *cfg = config_load(s->config_path, &e);
	enum server_err rc;

	s->reloads++;
	xfree(&s->last_reload_error);
	if (!cfg) {
		s->reload_failures++;
		log_err("reload: refused, keeping the running config: %zu error(s) in %s", e.n,
			s->config_path);
		for (size_t i = 0; i < e.n; i++)
			log_err("reload: %s", e.msgs[i]);
		*err = xasprintf("reload refused, running config kept: %zu error(s) in %s", e.n,
				 s->config_path);
		s->last_reload_error = xstrdup(*err);
		if (errs)
			*errs = e;
		else
			config_errors_free(&e);
		return SERR_CONFIG;
	}
	if (strcmp(cfg->state_dir, s->cfg->state_dir) != 0)
		log_warn("reload: state_dir changed to %s; it takes effect at the next start "
			 "(runtime edits stay in %s)",
			 cfg->state_dir, s->cfg->state_dir);
	rc = server_apply(s, cfg, reset, err);
	if (rc != SERR_OK) {
		s->reload_failures++;
		log_err("reload: refused, keeping the running config: %s", *err);
		s->last_reload_error = xstrdup(*err);
		config_free(cfg);
		return rc;
	}
	log_info("reload: applied %s (%zu frontends, %zu pools, %zu runtime edits)", s->config_path,
		 s->nfes, s->npools, s->st.n);
	for (size_t i = 0; i < s->nreload_hooks; i++)
		s->reload_hooks[i].fn(s->reload_hooks[i].arg, s->cfg);
	return SERR_OK;
}

void server_on_reload(struct server *s, server_reload_hook *fn, void *arg)
{
	s->reload_hooks =
	    xrealloc(s->reload_hooks, (s->nreload_hooks + 1) * sizeof(*s->reload_hooks));
	s->reload_hooks[s->nreload_hooks].fn = fn;
	s->reload_hooks[s->nreload_hooks].arg = arg;
	s->nreload_hooks++;
}

int server_reload(struct server *s)
{
	char *err = NULL;
	enum server_err rc = server_reload_ex(s, false, NULL, &err);

	free(err);
	return rc == SERR_OK ? 0 : -1;
}

/* ---- runtime edits ---------------------------------------------------------------------- */

const struct backend_conf *server_file_backend(const struct server *s, const char *pool,
					       const char *name)
{
	const struct pool_conf *fp = config_pool(s->cfg, pool);

	for (size_t i = 0; fp && i < fp->nbackends; i++)
		if (strcmp(fp->backends[i].name, name) == 0)
			return &fp->backends[i];
	return NULL;
}

/* Persists the overlay with pool/name set to want (NULL: absent). On
 * success the new overlay is in force; on failure nothing changed. */
static enum server_err persist(struct server *s, const char *pool, const char *name,
			       const struct state_backend *want, char **err)
{
	struct lbd_state st;
	char *e = NULL;
	int eno = 0;

	if (s->handed_over) {
		/* The new lbd owns pools.json now; this one only drains. */
		*err = xstrdup("this lbd has handed over to a new one; it changes nothing");
		return SERR_PERSIST;
	}
	state_copy(&st, &s->st);
	state_put(&st, pool, name, server_file_backend(s, pool, name), want);
	if (state_save(&st, &e, &eno) < 0) {
		*err = xasprintf("edit not applied: cannot persist it: %s", e);
		log_err("admin: %s", *err);
		free(e);
		state_free(&st);
		return eno == ENOSPC || eno == EDQUOT ? SERR_NOSPACE : SERR_PERSIST;
	}
	state_clear(&s->st);
	s->st.e = st.e;
	s->st.n = st.n;
	st.e = NULL;
	st.n = 0;
	state_free(&st);
	return SERR_OK;
}

static enum server_err find_backend(struct server *s, const char *pool, const char *name,
				    struct pool **pp, struct backend **bp, char **err)
{
	*pp = server_pool(s, pool);
	if (!*pp) {
		*err = xasprintf("no pool '%s'", pool);
		return SERR_NOT_FOUND;
	}
	*bp = name ? pool_find(*pp, name) : NULL;
	if (name && !*bp) {
		*err = xasprintf("no backend '%s' in pool '%s'", name, pool);
		return SERR_NOT_FOUND;
	}
	return SERR_OK;
}

enum server_err server_backend_add(struct server *s, const char *pool, const char *name,
				   const char *address, int weight, enum backend_state st,
				   char **err)
{
	struct pool *p;
	struct backend *b;
	struct backend_conf bc = {0};
	const char *why = NULL;
	enum server_err rc = find_backend(s, pool, NULL, &p, &b, err);

	if (rc != SERR_OK)
		return rc;
	if ((why = config_name_check(name))) {
		*err = xasprintf("bad backend name '%s': %s", name, why);
		return SERR_INVALID;
	}
	if (weight < 0 || weight > 256) {
		*err = xasprintf("bad weight %d: must be 0..256", weight);
		return SERR_INVALID;
	}
	if (sockaddr_conf_resolve(address, &bc.addr, &why) < 0) {
		*err = xasprintf("bad address '%s': %s", address, why);
		return SERR_INVALID;
	}
	if (bc.addr.resolved) {
		/* A runtime edit keeps the address the name has now: the state
		 * file and a restart then mean the same backend, whatever DNS
		 * says later (add it again to resolve again). */
		char num[64];
		sockaddr_conf_numeric(&bc.addr, num, sizeof(num));
		log_info("admin: backend %s/%s: %s resolves to %s", pool, name, address, num);
		xfree(&bc.addr.text);
		bc.addr.text = xstrdup(num);
		bc.addr.resolved = false;
	}
	if (addr_unspecified(&bc.addr)) {
		*err = xasprintf("bad address '%s': a backend needs a host, not the any address",
				 address);
		sockaddr_conf_free(&bc.addr);
		return SERR_INVALID;
	}
	if (pool_find(p, name)) {
		*err = xasprintf("backend '%s' already exists in pool '%s'", name, pool);
		sockaddr_conf_free(&bc.addr);
		return SERR_CONFLICT;
	}
	for (size_t i = 0; i < p->nbe; i++) {
		if (sockaddr_conf_same(&p->be[i]->conf.addr, &bc.addr)) {
			*err = xasprintf("address %s is already used by backend '%s' in pool '%s'",
					 address, p->be[i]->conf.name, pool);
			sockaddr_conf_free(&bc.addr);
			return SERR_CONFLICT;
		}
	}
	struct state_backend want = {bc.addr.text, weight, st, false};
	rc = persist(s, pool, name, &want, err);
	if (rc == SERR_OK) {
		bc.name = (char *)name;
		bc.weight = weight;
		pool_add(p, &bc, st);
		pool_recheck(p);
		log_kv(LOG_LVL_INFO, LOG_KV("pool", pool, "backend", name, "reason", "added"),
		       "admin: backend %s/%s added at %s, weight %d, %s", pool, name, bc.addr.text,
		       weight, backend_state_name(st));
		if (st == BE_DRAIN)
			drainer_kick(s->drain);
	}
	sockaddr_conf_free(&bc.addr);
	return rc;
}

static struct state_backend backend_want(const struct backend *b)
{
	return (struct state_backend){b->conf.addr.text, b->conf.weight, b->state,
				      b->remove_when_drained};
}

enum server_err server_backend_patch(struct server *s, const char *pool, const char *name,
				     bool has_state, enum backend_state st, bool has_weight,
				     int weight, char **err)
{
	struct pool *p;
	struct backend *b;
	enum server_err rc = find_backend(s, pool, name, &p, &b, err);

	if (rc != SERR_OK)
		return rc;
	if (has_weight && (weight < 0 || weight > 256)) {
		*err = xasprintf("bad weight %d: must be 0..256", weight);
		return SERR_INVALID;
	}
	struct state_backend want = backend_want(b);
	if (has_state) {
		want.state = st;
		/* A pending removal survives only a repeated drain. */
		want.remove_when_drained = b->remove_when_drained && st == BE_DRAIN;
	}
	if (has_weight)
		want.weight = weight;
	rc = persist(s, pool, name, &want, err);
	if (rc != SERR_OK)
		return rc;
	if (has_weight && b->conf.weight != weight) {
		log_info("admin: backend %s/%s weight %d -> %d", pool, name, b->conf.weight,
			 weight);
		b->conf.weight = weight;
	}
	b->remove_when_drained = want.remove_when_drained;
	if (has_state)
		backend_set_state(b, st);
	pool_recheck(p);
	if (b->state == BE_DRAIN)
		drainer_kick(s->drain);
	return SERR_OK;
}

static void remove_now(struct server *s, struct pool *p, struct backend *b)
{
	backend_ref(b);
	pool_remove(p, b);
	drainer_adopt(s->drain, b, p->conf.drain_close_rate);
	backend_unref(b);
}

enum server_err server_backend_remove(struct server *s, const char *pool, const char *name,
				      bool drain, bool *pending, char **err)
{
	struct pool *p;
	struct backend *b;
	enum server_err rc = find_backend(s, pool, name, &p, &b, err);

	*pending = false;
	if (rc != SERR_OK)
		return rc;
	if (drain && b->active > 0) {
		struct state_backend want = backend_want(b);
		want.state = BE_DRAIN;
		want.remove_when_drained = true;
		rc = persist(s, pool, name, &want, err);
		if (rc != SERR_OK)
			return rc;
		backend_set_state(b, BE_DRAIN); /* no-op if draining already */
		b->remove_when_drained = true;
		log_info("admin: backend %s/%s: removal once drained (%llu connections)", pool,
			 name, (unsigned long long)b->active);
		drainer_kick(s->drain);
		*pending = true;
		return SERR_OK;
	}
	rc = persist(s, pool, name, NULL, err);
	if (rc != SERR_OK)
		return rc;
	log_kv(LOG_LVL_INFO, LOG_KV("pool", pool, "backend", name, "reason", "removed"),
	       "admin: backend %s/%s removed", pool, name);
	remove_now(s, p, b);
	return SERR_OK;
}

void server_drain_done(struct server *s, struct backend *b)
{
	struct pool *p = b->pool;
	char *err = NULL;
	const char *pool = p->conf.name, *name = b->conf.name;

	/* The drain was acknowledged when it began; its end follows from it
	 * (after a restart a draining backend has no connections and ends at
	 * once), so a failed write is logged, not a reason to keep draining. */
	if (b->remove_when_drained) {
		if (persist(s, pool, name, NULL, &err) != SERR_OK)
			free(err);
		log_kv(LOG_LVL_INFO,
		       LOG_KV("pool", pool, "backend", name, "reason",
			      b->drain_forced ? "drained at the deadline" : "drained"),
		       "backend %s/%s: drained%s; removed", pool, name,
		       b->drain_forced ? " (deadline)" : "");
		remove_now(s, p, b);
		return;
	}
	struct state_backend want = backend_want(b);
	want.state = BE_DISABLED;
	want.remove_when_drained = false;
	if (persist(s, pool, name, &want, &err) != SERR_OK)
		free(err);
	log_kv(LOG_LVL_INFO,
	       LOG_KV("pool", pool, "backend", name, "reason",
		      b->drain_forced ? "drained at the deadline" : "drained"),
	       "backend %s/%s: drained%s; now disabled", pool, name,
	       b->drain_forced ? " (deadline)" : "");
	backend_set_state(b, BE_DISABLED);
}

#define STOP_TICK_MS 100

static void close_at_rate(struct server *s, uint64_t left);

static void stop_tick(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	uint64_t left = server_active_conns(s);

	/* stop_linger_ms: a handover's last words (lbctl's answer, the
	 * messages to the new lbd) are written by this loop; let it turn. */
	if (left == 0 && mono_ms() >= s->stop_linger_ms) {
		log_info("shutdown: all connections closed");
		event_base_loopexit(s->base, NULL);
		return;
	}
	if (mono_ms() >= s->stop_deadline_ms && !s->handed_over) {
		log_warn("shutdown: grace period over, closing %llu connections",
			 (unsigned long long)left);
		event_base_loopexit(s->base, NULL);
		return;
	}
	if (left > 0 && mono_ms() >= s->stop_deadline_ms)
		close_at_rate(s, left);
	struct timeval tv = {0, STOP_TICK_MS * 1000};
	evtimer_add(s->stop_timer, &tv);
}

/*
 * After a handover's grace: close what is left at each pool's
 * drain_close_rate, so the clients of the old lbd reconnect (to the new
 * one) spread out rather than all at once.
 */
static void close_at_rate(struct server *s, uint64_t left)
{
	if (!s->closing_logged) {
		log_warn("handover: shutdown_grace over, closing %llu connection(s) at each pool's "
			 "drain_close_rate",
			 (unsigned long long)left);
		s->closing_logged = true;
	}
	for (size_t i = 0; i < s->npools; i++) {
		struct pool *p = s->pools[i];
		int64_t budget = p->conf.drain_close_rate * STOP_TICK_MS / 1000;
		if (budget < 1)
			budget = 1;
		for (size_t j = 0; j < p->nbe && budget > 0; j++) {
			uint64_t active = atomic_load(&p->be[j]->active);
			size_t n = active < (uint64_t)budget ? (size_t)active : (size_t)budget;
			budget -=
			    (int64_t)relay_close_backend_conns(s->relay, p->be[j], n, END_STOPPING);
		}
	}
}

void server_handover_drain(struct server *s)
{
	s->handed_over = true;
	s->stopping = true;
	s->stop_linger_ms = mono_ms() + 1000;
	s->stop_deadline_ms = mono_ms() + s->cfg->shutdown_grace_ms;
	s->stop_timer = evtimer_new(s->base, stop_tick, s);
	stop_tick(-1, 0, s); /* stop_linger_ms keeps the loop up for the last words */
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
	/* Workers first: once joined, nothing else reads shared state. */
	relay_stop(s->relay);
	for (size_t i = 0; i < s->nfes; i++)
		frontend_free(s->fes[i]);
	xfree(&s->fes);
	drainer_free(s->drain);
	s->drain = NULL;
	for (size_t i = 0; i < s->npools; i++)
		pool_free(s->pools[i]);
	xfree(&s->pools);
	relay_free(s->relay); /* runs the deferred frees: pool snapshots */
	s->relay = NULL;
	if (s->eng)
		check_engine_free(s->eng);
	if (s->stop_timer)
		event_free(s->stop_timer);
	state_free(&s->st);
	xfree(&s->last_reload_error);
	xfree(&s->reload_hooks);
	s->nreload_hooks = 0;
	config_free(s->cfg);
	xfree(&s->config_path);
}
