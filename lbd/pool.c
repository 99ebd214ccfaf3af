/* pool.c - see pool.h. */
#include "lbd/pool.h"

#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "lbd/epoch.h"

static void pool_publish(struct pool *p);
static void snap_free(void *arg);

static const char *const state_names[] = {"enabled", "drain", "disabled"};

/* Checks time out after health.timeout (up to seconds): buckets reach 10 s. */
const double pool_check_hist_le[CHECK_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
						       0.5,   1.0,  2.5,   5.0,	 10.0};
/* A connect on a LAN takes well under a millisecond; a loaded master or a
 * lost SYN (retransmitted after 1 s) shows in the upper buckets. */
const double pool_connect_hist_le[CONNECT_HIST_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5};

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

bool backend_down_close(const struct backend *b)
{
	if (!b->pool || !b->health.known || b->health.up || b->drain_closing)
		return false;
	/* In fail-safe the pool routes new connections to backends that still
	 * accept TCP: closing theirs would only move clients in a circle. */
	if (b->pool->fail_safe && b->last.tcp_ok)
		return false;
	switch (b->pool->conf.close_on_down) {
	case DOWN_CLOSE_ANY:
		return true;
	case DOWN_CLOSE_NEVER:
		return false;
	case DOWN_CLOSE_TRANSPORT:
		break;
	}
	return check_result_transport_dead(&b->last);
}

void backend_ref(struct backend *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

static void backend_free(struct backend *b)
{
	if (b->check)
		check_free(b->check);
	backend_conf_free(&b->conf);
	free(b->wc);
	free(b);
}

void backend_unref(struct backend *b)
{
	int before = atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel);

	BUG_ON(before <= 0);
	if (before == 1)
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
	log_kv(LOG_LVL_INFO,
	       LOG_KV("pool", b->pool ? b->pool->conf.name : NULL, "backend", b->conf.name, "state",
		      state_names[st]),
	       "backend %s/%s: %s -> %s", b->pool ? b->pool->conf.name : "-", b->conf.name,
	       state_names[b->state], state_names[st]);
	b->state = st;
	b->state_changes++;
	atomic_store(&b->close_budget, 0); /* no close left over from a drain */
	b->drain_started_ms = st == BE_DRAIN ? mono_ms() : 0;
	b->drain_closing = false;
	b->down_closing = false; /* the drainer looks again in the new state */
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
	if (p->freeing)
		; /* a pool taken apart at shutdown or reload is no news */
	else if (fail_safe && !p->fail_safe)
		log_kv(LOG_LVL_WARN, LOG_KV("pool", p->conf.name, "reason", "fail-safe"),
		       "pool %s: all backends failing health checks, fail-safe: routing new "
		       "connections to backends that still accept TCP",
		       p->conf.name);
	else if (!fail_safe && p->fail_safe && enabled > 0)
		log_kv(LOG_LVL_WARN, LOG_KV("pool", p->conf.name, "reason", "fail-safe over"),
		       "pool %s: fail-safe over, %zu of %zu backends up", p->conf.name, up,
		       enabled);
	else if (!fail_safe && p->fail_safe)
		log_kv(LOG_LVL_WARN, LOG_KV("pool", p->conf.name, "reason", "no backend enabled"),
		       "pool %s: fail-safe over, no backend is enabled", p->conf.name);
	p->fail_safe = fail_safe;
	pool_publish(p);
}

static void on_check(void *arg, const struct check_result *res)
{
	struct backend *b = arg;
	struct pool *p = b->pool;
	bool ok = res->reason == CHK_OK;

	b->last = *res;
	b->checks++;
	if (ok)
		atomic_store(&b->suspect_until_ms, 0);
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
	bool tcp_was = b->last_tcp_ok;
	b->last_tcp_ok = res->tcp_ok;
	if (!check_health_update(&b->health, ok)) {
		/* The fail-safe tier follows tcp_ok: publish when it moves. */
		if (p && !b->health.up && tcp_was != res->tcp_ok)
			pool_recheck(p);
		/* A down backend's transport may die (or come back) while its
		 * health stays down: the drainer looks again. */
		if (p && (backend_down_close(b) || b->down_closing))
			notify(p, b);
		return;
	}
	b->since_ms = mono_ms();
	b->health_changes++;
	log_kv(b->health.up ? LOG_LVL_INFO : LOG_LVL_WARN,
	       LOG_KV("pool", p ? p->conf.name : NULL, "backend", b->conf.name, "state",
		      b->health.up ? "up" : "down", "reason", res->detail),
	       "backend %s/%s is %s: %s", p ? p->conf.name : "-", b->conf.name,
	       b->health.up ? "UP" : "DOWN", res->detail);
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
	b->nwc = epoch_readers(p->ep);
	if (posix_memalign((void **)&b->wc, 64, (size_t)b->nwc * sizeof(*b->wc)) != 0)
		xmalloc_oom((size_t)b->nwc * sizeof(*b->wc));
	memset(b->wc, 0, (size_t)b->nwc * sizeof(*b->wc));
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
	dst->close_on_down = src->close_on_down;
	dst->down_close_rate = src->down_close_rate;
	dst->rebalance = src->rebalance;
	dst->backends = NULL;
	dst->nbackends = 0;
	health_conf_copy(&dst->health, &src->health);
}

struct pool *pool_new(const struct pool_conf *conf, struct check_engine *eng, struct epoch *ep)
{
	struct pool *p = xcalloc(1, sizeof(*p));

	pool_conf_copy_settings(&p->conf, conf);
	p->eng = eng;
	p->ep = ep;
	for (size_t i = 0; i < conf->nbackends; i++)
		pool_add(p, &conf->backends[i], BE_ENABLED);
	pool_recheck(p);
	return p;
}

static void pool_destroy(struct pool *p)
{
	free(p->be);
	xfree(&p->conf.name);
	health_conf_free(&p->conf.health);
	free(p);
}

void pool_free(struct pool *p)
{
	if (!p)
		return;
	p->freeing = true;
	while (p->nbe > 0)
		pool_remove(p, p->be[p->nbe - 1]);
	/* Workers may still hold the (empty) snapshot; frontends that name
	 * this pool were retired with it and only reach it through that. */
	struct pool_snap *sn = atomic_exchange(&p->snap, NULL);
	if (sn)
		epoch_defer(p->ep, snap_free, sn);
	p->retired = true;
	if (p->holds == 0)
		pool_destroy(p);
}

void pool_hold(struct pool *p)
{
	p->holds++;
}

void pool_release(struct pool *p)
{
	BUG_ON(p->holds <= 0);
	if (--p->holds == 0 && p->retired)
		pool_destroy(p);
}

static bool health_conf_equal(const struct health_conf *a, const struct health_conf *b)
{
#define SAME_STR(x, y) ((!(x) && !(y)) || ((x) && (y) && strcmp((x), (y)) == 0))
	return a->type == b->type && SAME_STR(a->path, b->path) &&
	       a->expect_status == b->expect_status && a->interval_ms == b->interval_ms &&
	       a->timeout_ms == b->timeout_ms && a->rise == b->rise && a->fall == b->fall &&
	       a->tls.verify == b->tls.verify && SAME_STR(a->tls.ca, b->tls.ca) &&
	       SAME_STR(a->tls.cert, b->tls.cert) && SAME_STR(a->tls.key, b->tls.key) &&
	       SAME_STR(a->tls.sni, b->tls.sni) && SAME_STR(a->token_file, b->token_file);
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
	p->conf.close_on_down = conf->close_on_down;
	p->conf.down_close_rate = conf->down_close_rate;
	p->conf.rebalance = conf->rebalance;
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
			log_kv(LOG_LVL_INFO,
			       LOG_KV("pool", p->conf.name, "backend", b->conf.name, "reason",
				      "reload"),
			       "backend %s/%s: removed by reload", p->conf.name, b->conf.name);
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
			log_kv(LOG_LVL_INFO,
			       LOG_KV("pool", p->conf.name, "backend", conf->backends[j].name,
				      "reason", "reload"),
			       "backend %s/%s: added by reload", p->conf.name,
			       conf->backends[j].name);
			pool_add(p, &conf->backends[j], BE_ENABLED);
		}
	}
	pool_recheck(p);
}

/* ---- snapshots ---- */

enum { TIER_UP = 1, TIER_LIVE = 2, TIER_ANY = 4 };
#define RR_MAX 4096 /* longest precomputed round robin order */

static uint8_t tiers_of(const struct backend *b)
{
	uint8_t t = 0;

	if (b->state != BE_ENABLED || b->conf.weight <= 0)
		return 0;
	t |= TIER_ANY;
	if (backend_is_up(b))
		t |= TIER_UP;
	if (!b->health.known || b->last.tcp_ok)
		t |= TIER_LIVE;
	return t;
}

static void snap_free(void *arg)
{
	struct pool_snap *sn = arg;

	for (size_t i = 0; i < sn->n; i++)
		backend_unref(sn->be[i].b);
	free(sn->rr);
	free(sn);
}

/*
 * The round robin order of the up tier, computed once per snapshot with
 * smooth weighted round robin (every backend gains its weight, the richest
 * is picked and pays the total: 5:1:1 goes a a b a c a a). Workers then only
 * step an atomic cursor through it.
 */
static void snap_rr_order(struct pool_snap *sn)
{
	size_t total = 0;
	int *cur;

	for (size_t i = 0; i < sn->n; i++)
		if (sn->be[i].tiers & TIER_UP)
			total += (size_t)sn->be[i].weight;
	if (total == 0 || total > RR_MAX)
		return;
	cur = xcalloc(sn->n, sizeof(*cur));
	sn->rr = xcalloc(total, sizeof(*sn->rr));
	for (size_t k = 0; k < total; k++) {
		size_t best = SIZE_MAX;
		for (size_t i = 0; i < sn->n; i++) {
			if (!(sn->be[i].tiers & TIER_UP))
				continue;
			cur[i] += sn->be[i].weight;
			if (best == SIZE_MAX || cur[i] > cur[best])
				best = i;
		}
		cur[best] -= (int)total;
		sn->rr[k] = (uint16_t)best;
	}
	sn->nrr = total;
	free(cur);
}

/* Builds and publishes what workers balance over; the old snapshot is freed
 * once no worker can still be reading it. */
static void pool_publish(struct pool *p)
{
	struct pool_snap *sn = xcalloc(1, sizeof(*sn) + p->nbe * sizeof(sn->be[0]));
	struct pool_snap *old;

	sn->balance = p->conf.balance;
	sn->n = p->nbe;
	for (size_t i = 0; i < p->nbe; i++) {
		struct backend *b = p->be[i];
		backend_ref(b);
		sn->be[i].b = b;
		sn->be[i].weight = b->conf.weight;
		sn->be[i].tiers = tiers_of(b);
	}
	if (sn->balance == BAL_ROUND_ROBIN)
		snap_rr_order(sn);
	old = atomic_exchange(&p->snap, sn);
	if (old)
		epoch_defer(p->ep, snap_free, old);
}

/* ---- balancing (worker threads: reads only the snapshot) ---- */

#define SUSPECT_MS 2000

void backend_connect_time(struct backend *b, int id, int64_t usec)
{
	struct backend_wcount *wc = backend_wcount(b, id);
	size_t k = 0;

	while (k < CONNECT_HIST_BUCKETS && (double)usec / 1e6 > pool_connect_hist_le[k])
		k++;
	backend_wcount_add(&wc->connect_hist[k], 1);
	backend_wcount_add(&wc->connect_usec_sum, (uint64_t)(usec > 0 ? usec : 0));
}

void backend_counts_read(const struct backend *b, struct backend_counts *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < b->nwc; i++) {
		const struct backend_wcount *wc = &b->wc[i];
		out->bytes_in += atomic_load_explicit(&wc->bytes_in, memory_order_relaxed);
		out->bytes_out += atomic_load_explicit(&wc->bytes_out, memory_order_relaxed);
		out->connect_usec_sum +=
		    atomic_load_explicit(&wc->connect_usec_sum, memory_order_relaxed);
		for (int k = 0; k <= CONNECT_HIST_BUCKETS; k++) {
			uint64_t v =
			    atomic_load_explicit(&wc->connect_hist[k], memory_order_relaxed);
			out->connect_hist[k] += v;
			out->connects += v;
		}
	}
}

void backend_connect_failed(struct backend *b)
{
	atomic_fetch_add_explicit(&b->connect_failures, 1, memory_order_relaxed);
	atomic_store_explicit(&b->suspect_until_ms, mono_ms() + SUSPECT_MS, memory_order_relaxed);
}

void backend_empty_response(struct backend *b)
{
	/* Counted only: unlike a refused connect, any client can cause one (bytes
	 * the backend drops the connection over), and a stranger must not steer
	 * the pool by marking backends suspect. */
	atomic_fetch_add_explicit(&b->empty_retries, 1, memory_order_relaxed);
}

static bool suspect(const struct backend *b)
{
	int64_t until = atomic_load_explicit(&b->suspect_until_ms, memory_order_relaxed);
	return until != 0 && mono_ms() < until;
}

static bool was_tried(const struct backend *b, struct backend *const *tried, size_t ntried)
{
	for (size_t i = 0; i < ntried; i++)
		if (tried[i] == b)
			return true;
	return false;
}

/* A suspect backend leaves the up tier; the fail-safe tiers keep it, so a
 * pool whose every backend failed a connect still gets tried. */
static bool usable(const struct pool_snap *sn, size_t i, uint8_t tier, struct backend *const *tried,
		   size_t ntried)
{
	return (sn->be[i].tiers & tier) && !was_tried(sn->be[i].b, tried, ntried) &&
	       !(tier == TIER_UP && suspect(sn->be[i].b));
}

/* A retry scans from where the first pick was: it must not move the
 * cursor, or every next client would start at the failed backend again. */
static unsigned cursor_next(struct pool_snap *sn, size_t ntried)
{
	if (ntried > 0)
		return atomic_load_explicit(&sn->cursor, memory_order_relaxed);
	return atomic_fetch_add_explicit(&sn->cursor, 1, memory_order_relaxed);
}

static struct backend *pick_least_conn(struct pool_snap *sn, uint8_t tier,
				       struct backend *const *tried, size_t ntried)
{
	size_t best = SIZE_MAX, n = sn->n;
	uint64_t best_active = 0;
	unsigned off = cursor_next(sn, ntried);

	/* Lowest (active+1)/weight wins, compared by cross-multiplication.
	 * Start at a rotating offset so ties spread over the backends. */
	for (size_t k = 0; k < n; k++) {
		size_t i = (k + off) % n;
		if (!usable(sn, i, tier, tried, ntried))
			continue;
		uint64_t a = atomic_load_explicit(&sn->be[i].b->active, memory_order_relaxed);
		if (best == SIZE_MAX || (a + 1) * (uint64_t)sn->be[best].weight <
					    (best_active + 1) * (uint64_t)sn->be[i].weight) {
			best = i;
			best_active = a;
		}
	}
	return best == SIZE_MAX ? NULL : sn->be[best].b;
}

static struct backend *pick_round_robin(struct pool_snap *sn, uint8_t tier,
					struct backend *const *tried, size_t ntried)
{
	unsigned c = cursor_next(sn, ntried);

	if (tier == TIER_UP && sn->nrr > 0) {
		/* The precomputed order, from the cursor on, skipping tried. */
		for (size_t k = 0; k < sn->nrr; k++) {
			size_t i = sn->rr[(c + k) % sn->nrr];
			if (usable(sn, i, tier, tried, ntried))
				return sn->be[i].b;
		}
		return NULL;
	}
	for (size_t k = 0; k < sn->n; k++) {
		size_t i = (c + k) % sn->n;
		if (usable(sn, i, tier, tried, ntried))
			return sn->be[i].b;
	}
	return NULL;
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

static struct backend *pick_source_hash(struct pool_snap *sn, uint8_t tier,
					const struct sockaddr *src, struct backend *const *tried,
					size_t ntried)
{
	size_t best = SIZE_MAX;
	double best_score = 0;
	uint64_t key = source_key(src);

	/* Weighted rendezvous hashing: a client stays on its backend while
	 * that backend is usable, and only the clients of a backend that goes
	 * away move. */
	for (size_t i = 0; i < sn->n; i++) {
		if (!usable(sn, i, tier, tried, ntried))
			continue;
		const char *name = sn->be[i].b->conf.name;
		uint64_t h = mix64(fnv1a(key, name, strlen(name)));
		double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* (0,1) */
		double score = -(double)sn->be[i].weight / log(u);
		if (best == SIZE_MAX || score > best_score) {
			best = i;
			best_score = score;
		}
	}
	return best == SIZE_MAX ? NULL : sn->be[best].b;
}

struct backend *pool_pick(struct pool *p, const struct sockaddr *src, struct backend *const *tried,
			  size_t ntried)
{
	struct pool_snap *sn = atomic_load(&p->snap);
	static const uint8_t order[] = {TIER_UP, TIER_LIVE, TIER_ANY};

	if (!sn)
		return NULL;
	for (size_t t = 0; t < sizeof(order); t++) {
		struct backend *b = NULL;
		switch (sn->balance) {
		case BAL_LEAST_CONN:
			b = pick_least_conn(sn, order[t], tried, ntried);
			break;
		case BAL_ROUND_ROBIN:
			b = pick_round_robin(sn, order[t], tried, ntried);
			break;
		case BAL_SOURCE_HASH:
			b = pick_source_hash(sn, order[t], src, tried, ntried);
			break;
		}
		if (b) {
			backend_ref(b);
			return b;
		}
	}
	return NULL;
}
