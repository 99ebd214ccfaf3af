/* pool.c - see pool.h. */
#include "lbd/pool.h"

#include <math.h>
#include <netinet/in.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xmalloc.h"

static const char *const state_names[] = {"enabled", "drain", "disabled"};

const double pool_check_hist_le[CHECK_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05,
						       0.1,   0.25, 0.5,   1.0};

const char *backend_state_name(enum backend_state st)
{
	return state_names[st];
}

int backend_state_parse(const char *s, enum backend_state *out)
{
	for (int i = 0; i < 3; i++) {
		if (strcmp(s, state_names[i]) == 0) {
			*out = (enum backend_state)i;
			return 0;
		}
	}
	return -1;
}

bool backend_is_up(const struct backend *b)
{
	return b->health.known && b->health.up;
}

void backend_ref(struct backend *b)
{
	b->refs++;
}

static void backend_free(struct backend *b)
{
	if (b->check)
		check_free(b->check);
	backend_conf_free(&b->conf);
	free(b);
}

void backend_unref(struct backend *b)
{
	BUG_ON(b->refs <= 0);
	if (--b->refs == 0)
		backend_free(b);
}

static void notify(struct pool *p, struct backend *b)
{
	if (p->on_change)
		p->on_change(p, b, p->on_change_arg);
}

void backend_set_state(struct backend *b, enum backend_state st)
{
	if (b->state == st)
		return;
	log_info("backend %s/%s: %s -> %s", b->pool ? b->pool->conf.name : "-", b->conf.name,
		 state_names[b->state], state_names[st]);
	b->state = st;
	b->state_changes++;
	b->drain_started_ms = st == BE_DRAIN ? mono_ms() : 0;
	b->drain_closing = false;
	if (st == BE_DRAIN)
		b->drain_forced = 0;
	if (st != BE_DRAIN)
		b->remove_when_drained = false;
	if (b->pool) {
		pool_recheck(b->pool);
		notify(b->pool, b);
	}
}

void pool_recheck(struct pool *p)
{
	size_t enabled = 0, up = 0, known_down = 0;

	for (size_t i = 0; i < p->nbe; i++) {
		const struct backend *b = p->be[i];
		if (b->state != BE_ENABLED || b->conf.weight == 0)
			continue;
		enabled++;
		if (backend_is_up(b))
			up++;
		else if (b->health.known)
			known_down++;
	}
	bool fail_safe = enabled > 0 && up == 0 && known_down > 0;
	if (fail_safe && !p->fail_safe)
		log_warn("pool %s: all backends failing health checks, fail-safe: routing new "
			 "connections to backends that still accept TCP",
			 p->conf.name);
	else if (!fail_safe && p->fail_safe && enabled > 0)
		log_warn("pool %s: fail-safe over, %zu of %zu backends up", p->conf.name, up,
			 enabled);
	else if (!fail_safe && p->fail_safe)
		log_warn("pool %s: fail-safe over, no backend is enabled", p->conf.name);
	p->fail_safe = fail_safe;
}

static void on_check(void *arg, const struct check_result *res)
{
	struct backend *b = arg;
	struct pool *p = b->pool;
	bool ok = res->reason == CHK_OK;

	b->last = *res;
	b->checks++;
	if (res->reason < CHK_REASON_MAX)
		b->check_fails[res->reason] += !ok;
	b->check_usec_sum += res->latency_us;
	size_t bucket = 0;
	while (bucket < CHECK_HIST_BUCKETS &&
	       (double)res->latency_us / 1e6 > pool_check_hist_le[bucket])
		bucket++;
	b->check_hist[bucket]++;
	if (!ok) {
		b->last_fail = *res;
		b->has_fail = true;
	}
	if (!check_health_update(&b->health, ok))
		return;
	b->since_ms = mono_ms();
	b->health_changes++;
	if (b->health.up)
		log_info("backend %s/%s is UP: %s", p ? p->conf.name : "-", b->conf.name,
			 res->detail);
	else
		log_warn("backend %s/%s is DOWN: %s", p ? p->conf.name : "-", b->conf.name,
			 res->detail);
	if (p) {
		pool_recheck(p);
		notify(p, b);
	}
}

static void backend_start_check(struct backend *b, struct pool *p)
{
	check_health_init(&b->health, p->conf.health.rise, p->conf.health.fall);
	if (!p->eng)
		return;
	b->check = check_new(p->eng, &p->conf.health, &b->conf.addr, b->conf.name, on_check, b);
	check_start(b->check, 0);
}

struct backend *pool_add(struct pool *p, const struct backend_conf *bc, enum backend_state st)
{
	struct backend *b = xcalloc(1, sizeof(*b));

	backend_conf_copy(&b->conf, bc);
	b->pool = p;
	b->state = st;
	b->refs = 1; /* the pool's */
	b->since_ms = mono_ms();
	p->be = xrealloc(p->be, (p->nbe + 1) * sizeof(*p->be));
	p->be[p->nbe++] = b;
	backend_start_check(b, p);
	return b;
}

void pool_remove(struct pool *p, struct backend *b)
{
	for (size_t i = 0; i < p->nbe; i++) {
		if (p->be[i] != b)
			continue;
		memmove(&p->be[i], &p->be[i + 1], (p->nbe - i - 1) * sizeof(*p->be));
		p->nbe--;
		break;
	}
	/* A detached backend takes no new connections and needs no check. */
	b->pool = NULL;
	if (b->check) {
		check_free(b->check);
		b->check = NULL;
	}
	pool_recheck(p);
	backend_unref(b);
}

struct backend *pool_find(const struct pool *p, const char *name)
{
	for (size_t i = 0; i < p->nbe; i++)
		if (strcmp(p->be[i]->conf.name, name) == 0)
			return p->be[i];
	return NULL;
}

static void pool_conf_copy_settings(struct pool_conf *dst, const struct pool_conf *src)
{
	dst->name = xstrdup(src->name);
	dst->balance = src->balance;
	dst->drain_timeout_ms = src->drain_timeout_ms;
	dst->drain_close_rate = src->drain_close_rate;
	dst->backends = NULL;
	dst->nbackends = 0;
	health_conf_copy(&dst->health, &src->health);
}

struct pool *pool_new(const struct pool_conf *conf, struct check_engine *eng)
{
	struct pool *p = xcalloc(1, sizeof(*p));

	pool_conf_copy_settings(&p->conf, conf);
	p->eng = eng;
	for (size_t i = 0; i < conf->nbackends; i++)
		pool_add(p, &conf->backends[i], BE_ENABLED);
	return p;
}

void pool_free(struct pool *p)
{
	if (!p)
		return;
	while (p->nbe > 0)
		pool_remove(p, p->be[p->nbe - 1]);
	free(p->be);
	xfree(&p->conf.name);
	health_conf_free(&p->conf.health);
	free(p);
}

static bool health_conf_equal(const struct health_conf *a, const struct health_conf *b)
{
#define SAME_STR(x, y) ((!(x) && !(y)) || ((x) && (y) && strcmp((x), (y)) == 0))
	return a->type == b->type && SAME_STR(a->path, b->path) &&
	       a->expect_status == b->expect_status && a->interval_ms == b->interval_ms &&
	       a->timeout_ms == b->timeout_ms && a->rise == b->rise && a->fall == b->fall &&
	       a->tls.verify == b->tls.verify && SAME_STR(a->tls.ca, b->tls.ca) &&
	       SAME_STR(a->tls.cert, b->tls.cert) && SAME_STR(a->tls.key, b->tls.key) &&
	       SAME_STR(a->tls.sni, b->tls.sni);
#undef SAME_STR
}

static bool same_addr(const struct sockaddr_conf *a, const struct sockaddr_conf *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

void pool_update(struct pool *p, const struct pool_conf *conf)
{
	bool health_changed = !health_conf_equal(&p->conf.health, &conf->health);

	p->conf.balance = conf->balance;
	p->conf.drain_timeout_ms = conf->drain_timeout_ms;
	p->conf.drain_close_rate = conf->drain_close_rate;
	if (health_changed) {
		health_conf_free(&p->conf.health);
		health_conf_copy(&p->conf.health, &conf->health);
	}
	/* Gone from the file, or moved to another address: remove. */
	for (size_t i = p->nbe; i-- > 0;) {
		struct backend *b = p->be[i];
		const struct backend_conf *nc = NULL;
		for (size_t j = 0; j < conf->nbackends; j++)
			if (strcmp(conf->backends[j].name, b->conf.name) == 0)
				nc = &conf->backends[j];
		if (!nc || !same_addr(&nc->addr, &b->conf.addr)) {
			log_info("backend %s/%s: removed by reload", p->conf.name, b->conf.name);
			pool_remove(p, b);
		} else {
			b->conf.weight = nc->weight;
			if (health_changed) {
				/* New check settings: keep the health, re-probe now. */
				bool up = b->health.up, known = b->health.known;
				if (b->check)
					check_free(b->check);
				b->check = NULL;
				backend_start_check(b, p);
				b->health.known = known;
				b->health.up = up;
				b->health.counter = up ? b->health.rise + b->health.fall - 1 : 0;
			}
		}
	}
	for (size_t j = 0; j < conf->nbackends; j++) {
		if (!pool_find(p, conf->backends[j].name)) {
			log_info("backend %s/%s: added by reload", p->conf.name,
				 conf->backends[j].name);
			pool_add(p, &conf->backends[j], BE_ENABLED);
		}
	}
	pool_recheck(p);
}

/* ---- balancing ---- */

static bool was_tried(const struct backend *b, struct backend *const *tried, size_t ntried)
{
	for (size_t i = 0; i < ntried; i++)
		if (tried[i] == b)
			return true;
	return false;
}

enum tier { TIER_UP, TIER_LIVE, TIER_ANY };

static bool in_tier(const struct backend *b, enum tier t)
{
	if (b->state != BE_ENABLED || b->conf.weight <= 0)
		return false;
	switch (t) {
	case TIER_UP:
		return backend_is_up(b);
	case TIER_LIVE:
		return !b->health.known || b->last.tcp_ok;
	case TIER_ANY:
		return true;
	}
	return false;
}

static struct backend *pick_least_conn(struct pool *p, enum tier t, struct backend *const *tried,
				       size_t ntried)
{
	struct backend *best = NULL;
	size_t n = p->nbe;

	/* Lowest (active+1)/weight wins; compared by cross-multiplication.
	 * Start at a rotating offset so ties spread over the backends. */
	for (size_t k = 0; k < n; k++) {
		struct backend *b = p->be[(k + p->lc_offset) % n];
		if (!in_tier(b, t) || was_tried(b, tried, ntried))
			continue;
		if (!best || (b->active + 1) * (uint64_t)best->conf.weight <
				 (best->active + 1) * (uint64_t)b->conf.weight)
			best = b;
	}
	p->lc_offset++;
	return best;
}

static struct backend *pick_round_robin(struct pool *p, enum tier t, struct backend *const *tried,
					size_t ntried)
{
	struct backend *best = NULL;
	int total = 0;

	/* Smooth weighted round robin: every candidate gains its weight, the
	 * richest is picked and pays the total. Spreads 5:1:1 as a a b a c a a. */
	for (size_t i = 0; i < p->nbe; i++) {
		struct backend *b = p->be[i];
		if (!in_tier(b, t) || was_tried(b, tried, ntried))
			continue;
		b->rr_current += b->conf.weight;
		total += b->conf.weight;
		if (!best || b->rr_current > best->rr_current)
			best = b;
	}
	if (best)
		best->rr_current -= total;
	return best;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *s = data;
	for (size_t i = 0; i < len; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static uint64_t source_key(const struct sockaddr *src)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	if (!src)
		return h;
	if (src->sa_family == AF_INET)
		return fnv1a(h, &((const struct sockaddr_in *)src)->sin_addr, 4);
	if (src->sa_family == AF_INET6)
		return fnv1a(h, &((const struct sockaddr_in6 *)src)->sin6_addr, 16);
	return h;
}

static struct backend *pick_source_hash(struct pool *p, enum tier t, const struct sockaddr *src,
					struct backend *const *tried, size_t ntried)
{
	struct backend *best = NULL;
	double best_score = 0;
	uint64_t key = source_key(src);

	/* Weighted rendezvous hashing: a client stays on its backend while
	 * that backend is usable, and only the clients of a backend that goes
	 * away move. */
	for (size_t i = 0; i < p->nbe; i++) {
		struct backend *b = p->be[i];
		if (!in_tier(b, t) || was_tried(b, tried, ntried))
			continue;
		uint64_t h = mix64(fnv1a(key, b->conf.name, strlen(b->conf.name)));
		double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* (0,1) */
		double score = -(double)b->conf.weight / log(u);
		if (!best || score > best_score) {
			best = b;
			best_score = score;
		}
	}
	return best;
}

struct backend *pool_pick(struct pool *p, const struct sockaddr *src, struct backend *const *tried,
			  size_t ntried)
{
	for (enum tier t = TIER_UP; t <= TIER_ANY; t++) {
		struct backend *b = NULL;
		switch (p->conf.balance) {
		case BAL_LEAST_CONN:
			b = pick_least_conn(p, t, tried, ntried);
			break;
		case BAL_ROUND_ROBIN:
			b = pick_round_robin(p, t, tried, ntried);
			break;
		case BAL_SOURCE_HASH:
			b = pick_source_hash(p, t, src, tried, ntried);
			break;
		}
		if (b)
			return b;
	}
	return NULL;
}
