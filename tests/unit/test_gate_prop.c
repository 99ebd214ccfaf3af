/*
 * test_gate_prop.c - a property test of the gate's policy (issue 14).
 *
 * Each sequence builds a random cluster (1..5 masters as backends of the
 * quorum pool and etcd members, 0..4 workers, one machine in no source;
 * every source configured or not, fresh, stale or unknown; caps, per-zone
 * cap, require_all_nodes_ready, soak) and runs ~20 random operations on it:
 * acquire (new, renew, refused), release, time passing, the world changing
 * (a backend down or drained, an etcd member sick, an alarm, a source going
 * stale, a node NotReady, cordoned, rebooted or deleted) and the outcomes
 * tick. After every operation an oracle that knows nothing of policy.c
 * checks, from the raw random world and its own record of the leases:
 *   - never more leases than a cap (per role, per zone);
 *   - a master grant never leaves the healthy serving apiservers or the
 *     healthy voting etcd members below n/2+1, counting every lease holder
 *     and the asker as lost;
 *   - a grant never relied on an input that was unknown or stale, and the
 *     role it got is the node's role in the cluster (any source that lists
 *     the node as a master makes it one);
 *   - require_all_nodes_ready and alerts hold at grant time;
 *   - one lease per node; a renew or release only by its holder or an
 *     admin; a renew keeps slot and fence; fences only grow;
 *   - the outcomes tick releases only leases that asked for it, whose node
 *     is gone or back (new bootID, Ready, a master's backend serving and
 *     etcd member healthy, all by fresh inputs) for the soak.
 *
 * gate.c's gate_acquire/gate_release/outcomes_tick are not callable without
 * a gate (store, input thread), so the driver below mirrors them in a few
 * lines: gate_hold_check -> RENEW (lease_table_renew; an admin hands the
 * lease to the holder it names) | REFUSED | NEW -> gate_node_role (refuse
 * when unknown, or when the asked role differs) -> gate_decide ->
 * lease_table_add with fill_lease's bootID and labels. Keep it in step
 * with gate.c.
 *
 * Environment:
 *   LBD_PROP_N=N     sequences in all (default 100000; split in 10 tests)
 *   LBD_PROP_BASE=B  first seed (default 0x14ba5e); sequence i is seed B+i
 *   LBD_PROP_SEED=S  run only seed S, printing the world and every step
 * A failure prints its seed and reruns it verbosely (world, each operation
 * and the gate's reasons), so `LBD_PROP_SEED=S build/tests/test_gate_prop`
 * reproduces it.
 */
#include <check.h>

#include "tests/unit/unit.h"
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "gate/policy.h"

#define NOW0_MS 1705320000000LL /* Monday 2024-01-15 12:00 UTC */
#define MAX_AGE_MS 5000
#define MAXM 5
#define MAXW 4
#define MAXN (MAXM + MAXW + 1)
#define CHUNKS 10
#define ZONE_KEY "topology.kubernetes.io/zone"
#define CP_KEY "node-role.kubernetes.io/control-plane"

/* ---- a tiny deterministic PRNG (splitmix64) -------------------------------------------- */

struct rng {
	uint64_t s;
};

static uint64_t rnext(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int below(struct rng *r, int n)
{
	return (int)(rnext(r) % (uint64_t)n);
}

static bool chance(struct rng *r, int pct)
{
	return below(r, 100) < pct;
}

/* ---- the world: the raw random state --------------------------------------------------- */

enum src { SRC_FRESH, SRC_STALE, SRC_UNKNOWN };
static const char *const src_name[] = {"fresh", "stale", "unknown"};

enum ek { EK_HEALTHY, EK_SICK, EK_LEADERLESS, EK_DOWN, EK_LEARNER, EK_ABSENT };
static const char *const ek_name[] = {"healthy", "sick", "leaderless", "down", "learner", "absent"};

struct machine {
	char name[16], backend[24], etcd[24]; /* backend/etcd: its names in those sources */
	bool map_b, map_e;		      /* named in gate.members with a backend / etcd */
	bool in_pool, up, serving;
	enum ek ek;
	bool in_kube, cp_label, ready, cordoned;
	int boot;
	char zone;
};

struct world {
	int nm, n; /* masters m1..; then workers w1..; the last is x1, in no source */
	struct machine v[MAXN];
	bool pool_conf, etcd_conf, kube_conf, alerts_conf;
	enum src pool, etcd, kube, alerts;
	bool alarm, split;
	int firing;
	int cap_m, cap_w, zone_cap; /* zone_cap 0: no per-label cap */
	bool all_ready;
	int64_t soak_ms, now;
};

/* The oracle's own record of the leases, by machine. */
struct shadow {
	bool has, master, roo;
	char holder[48];
	uint64_t fence;
	int boot;
	char zone;
	int64_t back_since;
};

struct run {
	uint64_t seed;
	bool verbose;
	struct rng rng;
	struct world w;
	struct shadow sh[MAXN];
	uint64_t max_fence;
	/* the gate's side */
	struct gate_conf conf;
	struct gate_member members[MAXM];
	struct gate_label_cap cap;
	struct lease_table t;
	struct gate_inputs in;
	bool in_ok; /* in matches w */
	/* the verdict */
	int op;
	char fail[1024];
	/* coverage */
	long grants, master_grants, renews, refusals, releases, outcome_releases;
};

static void say(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct run *r, const char *fmt, ...)
{
	va_list ap;

	if (!r->verbose)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static void violate(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violate(struct run *r, const char *fmt, ...)
{
	va_list ap;
	int off;

	if (r->fail[0])
		return;
	off = snprintf(r->fail, sizeof(r->fail), "op %d: ", r->op);
	va_start(ap, fmt);
	vsnprintf(r->fail + off, sizeof(r->fail) - (size_t)off, fmt, ap);
	va_end(ap);
	say(r, "  !!! VIOLATION: %s\n", r->fail);
}

static enum src rand_src(struct rng *g)
{
	int x = below(g, 100);
	return x < 84 ? SRC_FRESH : x < 92 ? SRC_STALE : SRC_UNKNOWN;
}

static void world_new(struct run *r)
{
	struct rng *g = &r->rng;
	struct world *w = &r->w;
	int nw;

	memset(w, 0, sizeof(*w));
	w->nm = 1 + below(g, MAXM);
	nw = below(g, MAXW + 1);
	w->n = w->nm + nw + 1;
	w->pool_conf = chance(g, 80);
	w->etcd_conf = chance(g, 70);
	w->kube_conf = chance(g, 70);
	w->alerts_conf = chance(g, 15);
	w->pool = rand_src(g);
	w->etcd = rand_src(g);
	w->kube = rand_src(g);
	w->alerts = rand_src(g);
	w->alarm = chance(g, 5);
	w->split = chance(g, 5);
	w->firing = chance(g, 20);
	w->cap_m = 1 + below(g, 2);
	w->cap_w = 1 + below(g, 3);
	w->zone_cap = w->kube_conf && chance(g, 25) ? 1 + below(g, 2) : 0;
	w->all_ready = chance(g, 60);
	w->soak_ms = chance(g, 50) ? 0 : 60000;
	w->now = NOW0_MS;
	for (int i = 0; i < w->n; i++) {
		struct machine *m = &w->v[i];
		bool master = i < w->nm, x = i == w->n - 1;
		int num = master ? i + 1 : x ? 1 : i - w->nm + 1;

		snprintf(m->name, sizeof(m->name), "%c%d", master ? 'm' : x ? 'x' : 'w', num);
		m->map_b = master && chance(g, 15);
		m->map_e = master && chance(g, 15);
		if (m->map_b)
			snprintf(m->backend, sizeof(m->backend), "api-%d", num);
		else
			snprintf(m->backend, sizeof(m->backend), "%s", m->name);
		if (m->map_e)
			snprintf(m->etcd, sizeof(m->etcd), "etcd-%d", num);
		else
			snprintf(m->etcd, sizeof(m->etcd), "%s", m->name);
		m->in_pool = master && chance(g, 90);
		m->up = chance(g, 85);
		m->serving = chance(g, 85);
		if (!master) {
			m->ek = EK_ABSENT;
		} else {
			int e = below(g, 100);
			m->ek = e < 60	 ? EK_HEALTHY
				: e < 68 ? EK_SICK
				: e < 73 ? EK_LEADERLESS
				: e < 83 ? EK_DOWN
				: e < 90 ? EK_LEARNER
					 : EK_ABSENT;
		}
		m->in_kube = !x && chance(g, 92);
		m->cp_label = master && chance(g, 70);
		m->ready = chance(g, 90);
		m->cordoned = chance(g, 8);
		m->boot = 1;
		m->zone = (char)('a' + below(g, 3));
	}
	/* A third of the worlds start calm, so leases pile up to the caps and
	 * the quorum margins before the operations break things. */
	if (chance(g, 35)) {
		w->pool = w->etcd = w->kube = w->alerts = SRC_FRESH;
		w->alarm = w->split = false;
		w->firing = 0;
		for (int i = 0; i < w->n; i++) {
			struct machine *m = &w->v[i];
			m->up = m->serving = m->ready = true;
			m->cordoned = false;
			m->ek = m->ek == EK_ABSENT || m->ek == EK_LEARNER ? m->ek : EK_HEALTHY;
		}
	}
}

static void world_print(const struct run *r)
{
	const struct world *w = &r->w;

	fprintf(stderr,
		"seed %" PRIu64 ": caps masters %d workers %d, zone cap %d, "
		"require_all_nodes_ready %s, soak %" PRId64 "s\n",
		r->seed, w->cap_m, w->cap_w, w->zone_cap, w->all_ready ? "on" : "off",
		w->soak_ms / 1000);
	fprintf(stderr,
		"  sources: pool %s, etcd %s, kubernetes %s, alerts %s (%d firing); "
		"etcd alarm %d, split %d\n",
		w->pool_conf ? src_name[w->pool] : "off", w->etcd_conf ? src_name[w->etcd] : "off",
		w->kube_conf ? src_name[w->kube] : "off",
		w->alerts_conf ? src_name[w->alerts] : "off", w->firing, w->alarm, w->split);
	for (int i = 0; i < w->n; i++) {
		const struct machine *m = &w->v[i];
		char pool[64] = "", etcd[64] = "", kube[64] = "";
		if (w->pool_conf)
			snprintf(pool, sizeof(pool), " backend %s%s %s", m->backend,
				 m->map_b ? " (members)" : "",
				 !m->in_pool  ? "not in the pool"
				 : !m->up     ? "down"
				 : m->serving ? "up"
					      : "up but drained");
		if (w->etcd_conf)
			snprintf(etcd, sizeof(etcd), ", etcd %s%s %s", m->etcd,
				 m->map_e ? " (members)" : "", ek_name[m->ek]);
		if (w->kube_conf)
			snprintf(kube, sizeof(kube), ", node%s%s%s", !m->in_kube ? " (absent)" : "",
				 m->cp_label ? " control-plane" : "",
				 m->cordoned ? " cordoned" : "");
		fprintf(stderr, "  %-3s%s%s%s; %s, boot %d, zone %c\n", m->name, pool, etcd, kube,
			m->ready ? "Ready" : "NotReady", m->boot, m->zone);
	}
}

/* ---- the gate's view of the world ------------------------------------------------------ */

static char *eps[] = {"http://e1", "http://e2", "http://e3", "http://e4", "http://e5"};

static void conf_build(struct run *r)
{
	static char pool[] = "apiservers", kc[] = "/etc/kubeconfig", prom[] = "http://prom",
		    zone[] = ZONE_KEY;
	struct gate_conf *c = &r->conf;
	const struct world *w = &r->w;

	memset(c, 0, sizeof(*c));
	c->enabled = true;
	c->conc_masters = w->cap_m;
	c->conc_workers = w->cap_w;
	c->quorum_pool = w->pool_conf ? pool : NULL;
	c->etcd_endpoints = w->etcd_conf ? eps : NULL;
	c->netcd_endpoints = w->etcd_conf ? (size_t)w->nm : 0;
	c->kubeconfig = w->kube_conf ? kc : NULL;
	c->alerts_prometheus_url = w->alerts_conf ? prom : NULL;
	c->require_all_nodes_ready = w->all_ready;
	c->lease_ttl_ms = 30 * 60 * 1000;
	c->soak_ms = w->soak_ms;
	if (w->zone_cap) {
		r->cap.label = zone;
		r->cap.max = w->zone_cap;
		c->per_label = &r->cap;
		c->nper_label = 1;
	}
	for (int i = 0; i < w->nm; i++) {
		const struct machine *m = &w->v[i];
		if (!m->map_b && !m->map_e)
			continue;
		r->members[c->nmembers] =
		    (struct gate_member){(char *)m->name, m->map_b ? (char *)m->backend : NULL,
					 m->map_e ? (char *)m->etcd : NULL};
		c->nmembers++;
	}
	c->members = c->nmembers ? r->members : NULL;
}

static void src_set(struct gate_source *s, enum src st, int64_t now)
{
	s->known = st != SRC_UNKNOWN;
	s->at_ms = st == SRC_FRESH ? now - 500 : now - 60000;
	s->why = st == SRC_UNKNOWN ? xstrdup("timeout (property test)") : NULL;
}

static void etcd_build(const struct world *w, struct gate_etcd_in *e)
{
	size_t n = 0, ok = 0;
	uint64_t ids[MAXM];

	for (int i = 0; i < w->nm; i++)
		if (w->v[i].ek != EK_ABSENT)
			ids[n++] = (uint64_t)(i + 1);
	e->members = xcalloc(n + 1, sizeof(*e->members));
	e->views = xcalloc(n + 1, sizeof(*e->views));
	for (int i = 0; i < w->nm; i++) {
		const struct machine *m = &w->v[i];
		struct kube_etcd_member *km;
		struct kube_etcd_view *v;
		if (m->ek == EK_ABSENT)
			continue;
		km = &e->members[e->nmembers++];
		km->id = (uint64_t)(i + 1);
		km->name = xstrdup(m->etcd);
		km->learner = m->ek == EK_LEARNER;
		km->url = xstrdup(eps[i]);
		v = &e->views[e->nviews++];
		v->endpoint = xstrdup(eps[i]);
		v->ok = m->ek != EK_DOWN;
		if (!v->ok) {
			v->err = xstrdup("connect refused");
			continue;
		}
		ok++;
		v->health = m->ek != EK_SICK;
		if (!v->health)
			v->health_why = xstrdup("/health false");
		v->leaderless = m->ek == EK_LEADERLESS;
		v->leader = v->leaderless ? 0 : 1;
		v->cluster_id = 0xc1;
		v->member_id = km->id;
		/* A membership change in progress: the second endpoint that
		 * answers lists one member less. */
		v->nmembers = w->split && ok == 2 && n > 1 ? n - 1 : n;
		v->members = xcalloc(n + 1, sizeof(*v->members));
		memcpy(v->members, ids, v->nmembers * sizeof(*ids));
		if (w->alarm) { /* cluster-wide: every endpoint that answers reports it */
			v->nalarms = 1;
			v->alarms = xcalloc(1, sizeof(*v->alarms));
			v->alarms[0] = xstrdup("NOSPACE");
			v->alarm_members = xcalloc(1, sizeof(*v->alarm_members));
			v->alarm_members[0] = ids[0];
		}
	}
}

static void inputs_build(struct run *r)
{
	const struct world *w = &r->w;
	struct gate_inputs *in = &r->in;

	if (r->in_ok)
		return;
	gate_inputs_free(in);
	in->now_ms = w->now;
	in->max_age_ms = MAX_AGE_MS;
	src_set(&in->pool.src, w->pool, w->now);
	in->pool.v = xcalloc((size_t)w->n + 1, sizeof(*in->pool.v));
	if (w->pool_conf && w->pool != SRC_UNKNOWN)
		for (int i = 0; i < w->n; i++) {
			const struct machine *m = &w->v[i];
			if (!m->in_pool)
				continue;
			in->pool.v[in->pool.n].name = xstrdup(m->backend);
			in->pool.v[in->pool.n].up = m->up;
			in->pool.v[in->pool.n].serving = m->serving;
			in->pool.n++;
		}
	src_set(&in->etcd.src, w->etcd, w->now);
	if (w->etcd_conf && w->etcd != SRC_UNKNOWN)
		etcd_build(w, &in->etcd);
	src_set(&in->nodes.src, w->kube, w->now);
	in->nodes.v = xcalloc((size_t)w->n + 1, sizeof(*in->nodes.v));
	if (w->kube_conf && w->kube != SRC_UNKNOWN)
		for (int i = 0; i < w->n; i++) {
			const struct machine *m = &w->v[i];
			struct gate_node_in *n;
			if (!m->in_kube)
				continue;
			n = &in->nodes.v[in->nodes.n++];
			n->name = xstrdup(m->name);
			n->ready = m->ready;
			n->unschedulable = m->cordoned;
			n->boot_id = xasprintf("boot-%d", m->boot);
			n->labels = xcalloc(2, sizeof(*n->labels));
			n->labels[n->nlabels].key = xstrdup(ZONE_KEY);
			n->labels[n->nlabels++].value = xasprintf("%c", m->zone);
			if (m->cp_label) {
				n->labels[n->nlabels].key = xstrdup(CP_KEY);
				n->labels[n->nlabels++].value = xstrdup("");
			}
		}
	src_set(&in->alerts.src, w->alerts, w->now);
	if (w->alerts_conf && w->alerts != SRC_UNKNOWN && w->firing) {
		in->alerts.firing = xcalloc(1, sizeof(char *));
		in->alerts.firing[in->alerts.n++] = xstrdup("NodeDown (severity=critical)");
	}
	r->in_ok = true;
}

/* ---- the oracle ------------------------------------------------------------------------ */

/* Every configured source answered within MAX_AGE_MS. */
static bool o_all_fresh(const struct world *w, const char **which)
{
	*which = w->pool_conf && w->pool != SRC_FRESH	    ? "pool"
		 : w->etcd_conf && w->etcd != SRC_FRESH	    ? "etcd"
		 : w->kube_conf && w->kube != SRC_FRESH	    ? "kubernetes nodes"
		 : w->alerts_conf && w->alerts != SRC_FRESH ? "alerts"
							    : NULL;
	return !*which;
}

/* A master if any configured source (or gate.members) lists it as one. */
static bool o_master(const struct world *w, int k)
{
	const struct machine *m = &w->v[k];
	return m->map_b || m->map_e || (w->pool_conf && m->in_pool) ||
	       (w->etcd_conf && m->ek != EK_ABSENT) || (w->kube_conf && m->in_kube && m->cp_label);
}

static bool o_etcd_healthy(const struct world *w, int k)
{
	return w->v[k].ek == EK_HEALTHY && !w->alarm;
}

static int o_quorum(int n)
{
	return n / 2 + 1;
}

/* Holds a lease, or is the asker: going down. */
static bool o_leaving(const struct run *r, int k, int asker)
{
	return k == asker || r->sh[k].has;
}

static void o_check_grant(struct run *r, int k, bool master, uint64_t fence)
{
	const struct world *w = &r->w;
	const char *stale;
	int same = 0;

	if (r->sh[k].has)
		violate(r, "%s granted a second lease (held by %s)", w->v[k].name, r->sh[k].holder);
	if (master != o_master(w, k))
		violate(r, "%s granted a %s lease but it is a %s", w->v[k].name,
			master ? "master" : "worker", o_master(w, k) ? "master" : "worker");
	if (!o_all_fresh(w, &stale))
		violate(r, "%s granted while %s was stale or unknown", w->v[k].name, stale);
	for (int i = 0; i < w->n; i++)
		same += r->sh[i].has && r->sh[i].master == master;
	if (same + 1 > (master ? w->cap_m : w->cap_w))
		violate(r, "%s granted a %s lease beyond the cap (%d held, cap %d)", w->v[k].name,
			master ? "master" : "worker", same, master ? w->cap_m : w->cap_w);
	if (w->zone_cap) {
		same = 0;
		for (int i = 0; i < w->n; i++)
			same += r->sh[i].has && r->sh[i].zone == w->v[k].zone;
		if (same + 1 > w->zone_cap)
			violate(r, "%s granted beyond the zone cap (%d held in zone %c, cap %d)",
				w->v[k].name, same, w->v[k].zone, w->zone_cap);
	}
	if (w->all_ready) {
		if (!w->kube_conf)
			violate(r, "%s granted with require_all_nodes_ready and no kubeconfig",
				w->v[k].name);
		for (int i = 0; i < w->n && w->kube_conf; i++)
			if (i != k && w->v[i].in_kube && !r->sh[i].has &&
			    (!w->v[i].ready || w->v[i].cordoned))
				violate(r, "%s granted while %s is %s", w->v[k].name, w->v[i].name,
					w->v[i].ready ? "cordoned" : "NotReady");
	}
	if (w->alerts_conf && w->firing)
		violate(r, "%s granted while an alert fires", w->v[k].name);
	if (w->kube_conf && !w->v[k].in_kube)
		violate(r, "%s granted but it is not a node of the cluster", w->v[k].name);
	if (master && w->pool_conf) {
		int n = 0, after = 0;
		for (int i = 0; i < w->n; i++) {
			const struct machine *m = &w->v[i];
			n += m->in_pool;
			after += m->in_pool && m->up && m->serving && !o_leaving(r, i, k);
		}
		if (after < o_quorum(n))
			violate(r,
				"%s granted a master lease leaving %d of %d apiservers, quorum %d",
				w->v[k].name, after, n, o_quorum(n));
	}
	if (master && w->etcd_conf) {
		int n = 0, after = 0, answering = 0;
		for (int i = 0; i < w->nm; i++) {
			const struct machine *m = &w->v[i];
			answering += m->ek != EK_ABSENT && m->ek != EK_DOWN;
			if (m->ek == EK_ABSENT || m->ek == EK_LEARNER)
				continue;
			n++;
			after += o_etcd_healthy(w, i) && !o_leaving(r, i, k);
		}
		if (after < o_quorum(n))
			violate(r,
				"%s granted a master lease leaving %d of %d etcd voters healthy, "
				"quorum %d",
				w->v[k].name, after, n, o_quorum(n));
		if (w->split && answering >= 2)
			violate(r, "%s granted a master lease while etcd endpoints disagree",
				w->v[k].name);
	}
	if (fence <= r->max_fence)
		violate(r, "%s granted fence %" PRIu64 ", not above %" PRIu64, w->v[k].name, fence,
			r->max_fence);
}

/* The holder rule, against the oracle's record: what may holder do with k? */
static void o_check_hold(struct run *r, int k, const char *holder, bool admin, enum gate_hold hc)
{
	const struct shadow *s = &r->sh[k];
	enum gate_hold want = !s->has					? GATE_HOLD_NEW
			      : admin || strcmp(s->holder, holder) == 0 ? GATE_HOLD_RENEW
									: GATE_HOLD_REFUSED;
	if (hc != want)
		violate(r, "hold check for %s by %s%s: gate %d, oracle %d (holder %s)",
			r->w.v[k].name, holder, admin ? " (admin)" : "", hc, want,
			s->has ? s->holder : "none");
}

/* Is the holder of k back, by fresh inputs only? */
static bool o_back(const struct world *w, const struct shadow *s, int k)
{
	const struct machine *m = &w->v[k];

	if (m->boot == s->boot || !m->ready)
		return false;
	if (s->master && w->pool_conf &&
	    (w->pool != SRC_FRESH || (m->in_pool && !(m->up && m->serving))))
		return false;
	if (s->master && w->etcd_conf &&
	    (w->etcd != SRC_FRESH || (m->ek != EK_ABSENT && !o_etcd_healthy(w, k))))
		return false;
	return true;
}

/* After every operation: the gate's table is the oracle's record. */
static void o_check_table(struct run *r)
{
	const struct world *w = &r->w;
	size_t held = 0;
	int masters = 0, workers = 0;

	for (int k = 0; k < w->n; k++) {
		const struct shadow *s = &r->sh[k];
		const struct gate_lease *l = lease_table_find_const(&r->t, w->v[k].name);
		held += s->has;
		masters += s->has && s->master;
		workers += s->has && !s->master;
		if (!s->has != !l) {
			violate(r, "%s: the table %s a lease, the oracle %s", w->v[k].name,
				l ? "has" : "has no", s->has ? "has one" : "has none");
			continue;
		}
		if (l && (strcmp(l->holder, s->holder) != 0 || l->fence != s->fence ||
			  (l->role == GATE_ROLE_MASTER) != s->master))
			violate(r,
				"%s: the table says %s fence %" PRIu64
				", the oracle %s fence %" PRIu64,
				w->v[k].name, l->holder, l->fence, s->holder, s->fence);
	}
	if (r->t.n != held)
		violate(r, "the table holds %zu leases, the oracle %zu", r->t.n, held);
	for (size_t i = 0; i < r->t.n; i++)
		for (size_t j = i + 1; j < r->t.n; j++)
			if (strcmp(r->t.v[i].node, r->t.v[j].node) == 0)
				violate(r, "two leases for %s", r->t.v[i].node);
	if (masters > w->cap_m || workers > w->cap_w)
		violate(r, "%d master and %d worker leases, caps %d and %d", masters, workers,
			w->cap_m, w->cap_w);
}

/* ---- the driver: gate.c's paths, mirrored ---------------------------------------------- */

static const char *holder_of(const struct run *r, int k, int choice, bool admin, char *buf,
			     size_t len)
{
	switch (choice) {
	case 1:
		return "lbctl upgrade run A";
	case 2:
		return "lbctl upgrade run B";
	case 3:
		snprintf(buf, len, "fleetlock/%s", r->w.v[k].name);
		return buf;
	default: /* named none: gate.c's default_holder */
		if (admin)
			return "admin";
		snprintf(buf, len, "node/%s", r->w.v[k].name);
		return buf;
	}
}

/* gate.c's fill_lease: the bootID and the per-label values at grant time. */
static void fill_lease(const struct run *r, struct gate_lease *l)
{
	for (size_t i = 0; i < r->in.nodes.n; i++) {
		const struct gate_node_in *n = &r->in.nodes.v[i];
		if (strcmp(n->name, l->node) != 0)
			continue;
		l->boot_id = n->boot_id ? xstrdup(n->boot_id) : NULL;
		l->labels = xcalloc(r->conf.nper_label + 1, sizeof(*l->labels));
		for (size_t c = 0; c < r->conf.nper_label; c++)
			for (size_t j = 0; j < n->nlabels; j++)
				if (strcmp(n->labels[j].key, r->conf.per_label[c].label) == 0) {
					l->labels[l->nlabels].key = xstrdup(n->labels[j].key);
					l->labels[l->nlabels].value = xstrdup(n->labels[j].value);
					l->nlabels++;
				}
	}
}

static void say_reasons(struct run *r, const struct gate_text *t)
{
	for (size_t i = 0; i < t->n; i++)
		say(r, "      - %s\n", t->v[i]);
}

/* gate_acquire. ask: 0 no role in the request, 1 master, 2 worker. */
static void op_acquire(struct run *r, int k, int hchoice, bool admin, int ask, bool roo)
{
	const struct machine *m = &r->w.v[k];
	int64_t ttl = chance(&r->rng, 50) ? 30 * 60 * 1000 : 5 * 60 * 1000;
	char hb[48], *why = NULL;
	const char *h = holder_of(r, k, hchoice, admin, hb, sizeof(hb));
	struct shadow *s = &r->sh[k];
	enum gate_hold hc = gate_hold_check(&r->t, m->name, h, admin, &why);

	say(r, "%2d acquire %s by %s%s%s%s: ", r->op, m->name, h, admin ? " (admin)" : "",
	    ask == 1   ? " role master"
	    : ask == 2 ? " role worker"
		       : "",
	    roo ? " release_on_outcomes" : "");
	o_check_hold(r, k, h, admin, hc);
	if (hc == GATE_HOLD_REFUSED) {
		say(r, "refused: %s\n", why);
		r->refusals++;
		free(why);
		return;
	}
	if (hc == GATE_HOLD_RENEW) {
		struct gate_lease *l = lease_table_find(&r->t, m->name);
		uint64_t fence = l->fence;
		int slot = l->slot;
		if (ask && (ask == 1) != (l->role == GATE_ROLE_MASTER)) {
			say(r, "refused: holds a %s lease\n", gate_role_name(l->role));
			r->refusals++;
			return;
		}
		l = lease_table_renew(&r->t, m->name, r->w.now, ttl, "renewed");
		if (strcmp(l->holder, h) != 0) { /* gate.c's renew(): an admin hands it over */
			free(l->holder);
			l->holder = xstrdup(h);
		}
		if (l->fence != fence || l->slot != slot)
			violate(r, "renewing %s changed its fence or slot", m->name);
		snprintf(s->holder, sizeof(s->holder), "%s", h);
		say(r, "renewed (fence %" PRIu64 ")\n", l->fence);
		r->renews++;
		return;
	}

	/* NEW: the role is the cluster's, then the policy. */
	enum gate_role role;
	struct gate_decision d;
	inputs_build(r);
	if (gate_node_role(&r->conf, &r->in, m->name, &role, &why) < 0) {
		say(r, "refused: %s\n", why);
		r->refusals++;
		free(why);
		return;
	}
	if (ask && (ask == 1) != (role == GATE_ROLE_MASTER)) {
		say(r, "refused: it is a %s\n", gate_role_name(role));
		r->refusals++;
		return;
	}
	struct gate_request req = {.node = m->name, .role = role};
	gate_decide(&r->conf, &r->in, &r->t, &req, &d);
	if (!d.granted) {
		say(r, "refused (%s):\n", gate_role_name(role));
		say_reasons(r, &d.reasons);
		r->refusals++;
		gate_decision_free(&d);
		return;
	}
	struct gate_lease nl = {.node = (char *)m->name,
				.role = role,
				.slot = d.slot,
				.ttl_ms = ttl,
				.holder = (char *)h,
				.release_on_outcomes = roo};
	gate_decision_free(&d);
	fill_lease(r, &nl);
	const struct gate_lease *added = lease_table_add(&r->t, &nl, r->w.now);
	free(nl.boot_id);
	for (size_t i = 0; i < nl.nlabels; i++) {
		free(nl.labels[i].key);
		free(nl.labels[i].value);
	}
	free(nl.labels);
	say(r, "GRANTED %s-%d fence %" PRIu64 "\n", gate_role_name(role), added->slot,
	    added->fence);
	o_check_grant(r, k, role == GATE_ROLE_MASTER, added->fence);
	r->max_fence = added->fence;
	*s = (struct shadow){.has = true,
			     .master = role == GATE_ROLE_MASTER,
			     .roo = roo,
			     .fence = added->fence,
			     .boot = m->boot,
			     .zone = m->zone};
	snprintf(s->holder, sizeof(s->holder), "%s", h);
	r->grants++;
	r->master_grants += role == GATE_ROLE_MASTER;
}

/* gate_release. */
static void op_release(struct run *r, int k, int hchoice, bool admin)
{
	const struct machine *m = &r->w.v[k];
	char hb[48], *why = NULL;
	const char *h = holder_of(r, k, hchoice, admin, hb, sizeof(hb));

	say(r, "%2d release %s by %s%s: ", r->op, m->name, h, admin ? " (admin)" : "");
	if (!lease_table_find_const(&r->t, m->name)) {
		if (r->sh[k].has)
			violate(r, "release: the table lost %s's lease", m->name);
		say(r, "404\n");
		return;
	}
	enum gate_hold hc = gate_hold_check(&r->t, m->name, h, admin, &why);
	o_check_hold(r, k, h, admin, hc);
	if (hc == GATE_HOLD_REFUSED) {
		say(r, "refused: %s\n", why);
		free(why);
		return;
	}
	lease_table_remove(&r->t, m->name);
	r->sh[k].has = false;
	r->releases++;
	say(r, "released\n");
}

/* outcomes_tick. */
static void op_outcomes(struct run *r)
{
	const struct world *w = &r->w;
	struct gate_text nodes = {0}, why = {0};

	say(r, "%2d outcomes tick:", r->op);
	inputs_build(r);
	/* The oracle's own soak clock, ticked as the gate's is. */
	for (int k = 0; k < w->n; k++) {
		struct shadow *s = &r->sh[k];
		if (!s->has || !s->roo)
			continue;
		if (w->kube_conf && w->kube == SRC_FRESH && w->v[k].in_kube && o_back(w, s, k)) {
			if (!s->back_since)
				s->back_since = w->now;
		} else {
			s->back_since = 0;
		}
	}
	gate_outcomes(&r->conf, &r->in, &r->t, &nodes, &why);
	for (size_t i = 0; i < nodes.n; i++) {
		int k = -1;
		for (int j = 0; j < w->n; j++)
			if (strcmp(w->v[j].name, nodes.v[i]) == 0)
				k = j;
		say(r, " releases %s (%s)", nodes.v[i], why.v[i]);
		if (k < 0 || !r->sh[k].has) {
			violate(r, "outcomes released %s, which holds no lease", nodes.v[i]);
			continue;
		}
		const struct shadow *s = &r->sh[k];
		bool fresh = w->kube_conf && w->kube == SRC_FRESH;
		bool gone = fresh && !w->v[k].in_kube;
		bool soaked = fresh && w->v[k].in_kube && s->back_since &&
			      w->now - s->back_since >= w->soak_ms;
		if (!s->roo)
			violate(r, "outcomes released %s, whose holder %s releases it itself",
				nodes.v[i], s->holder);
		else if (!gone && !soaked)
			violate(r, "outcomes released %s, which is not back (or not for the soak)",
				nodes.v[i]);
		lease_table_remove(&r->t, nodes.v[i]);
		r->sh[k].has = false;
		r->outcome_releases++;
	}
	say(r, "%s\n", nodes.n ? "" : " nothing");
	gate_text_free(&nodes);
	gate_text_free(&why);
}

static int pick_master(struct run *r)
{
	return below(&r->rng, r->w.nm);
}

/* The world changes. */
static void op_flip(struct run *r)
{
	struct world *w = &r->w;
	struct rng *g = &r->rng;
	struct machine *m;
	int k;

	r->in_ok = false;
	switch (below(g, 12)) {
	case 0:
		m = &w->v[pick_master(r)];
		m->up = !m->up;
		say(r, "%2d backend %s %s\n", r->op, m->backend, m->up ? "up" : "down");
		break;
	case 1:
		m = &w->v[pick_master(r)];
		m->serving = !m->serving;
		say(r, "%2d backend %s %s\n", r->op, m->backend,
		    m->serving ? "serving" : "drained");
		break;
	case 2:
	case 3:
		m = &w->v[pick_master(r)];
		if (m->ek != EK_ABSENT)
			m->ek = (enum ek)below(g, EK_ABSENT);
		say(r, "%2d etcd %s %s\n", r->op, m->etcd, ek_name[m->ek]);
		break;
	case 4:
		w->alarm = chance(g, 30) ? !w->alarm : w->alarm;
		w->split = chance(g, 30) ? !w->split : w->split;
		say(r, "%2d etcd alarm %d split %d\n", r->op, w->alarm, w->split);
		break;
	case 5:
	case 6: {
		enum src *s[] = {&w->pool, &w->etcd, &w->kube, &w->alerts};
		static const char *const sn[] = {"pool", "etcd", "kubernetes", "alerts"};
		k = below(g, 4);
		*s[k] = rand_src(g);
		say(r, "%2d %s %s\n", r->op, sn[k], src_name[*s[k]]);
		break;
	}
	case 7:
		m = &w->v[below(g, w->n)];
		m->ready = !m->ready;
		say(r, "%2d %s %s\n", r->op, m->name, m->ready ? "Ready" : "NotReady");
		break;
	case 8:
		m = &w->v[below(g, w->n)];
		m->cordoned = !m->cordoned;
		say(r, "%2d %s %s\n", r->op, m->name, m->cordoned ? "cordoned" : "uncordoned");
		break;
	case 9:
	case 10:
		/* Mostly a lease holder: that is what the outcomes tick waits for. */
		k = below(g, w->n);
		for (int i = 0; i < w->n && chance(g, 80); i++)
			if (r->sh[(k + i) % w->n].has) {
				k = (k + i) % w->n;
				break;
			}
		m = &w->v[k];
		m->boot++;
		m->ready = chance(g, 60);
		say(r, "%2d %s rebooted (boot %d, %s)\n", r->op, m->name, m->boot,
		    m->ready ? "Ready" : "NotReady");
		break;
	default:
		k = below(g, w->n);
		m = &w->v[k];
		if (k >= w->nm) /* a worker joins or leaves (a master's role would change) */
			m->in_kube = !m->in_kube;
		w->firing = chance(g, 30) ? !w->firing : w->firing;
		say(r, "%2d %s %s the cluster; %d alert(s) firing\n", r->op, m->name,
		    m->in_kube ? "in" : "not in", w->firing);
		break;
	}
}

static void op_time(struct run *r)
{
	static const int64_t steps[] = {1000, 20000, 300000, 1860000};
	int64_t d = steps[below(&r->rng, 4)];

	r->w.now += d;
	r->in_ok = false;
	say(r, "%2d time passes: +%" PRId64 "s\n", r->op, d / 1000);
}

/* ---- one sequence ---------------------------------------------------------------------- */

static void run_seq(struct run *r, uint64_t seed, bool verbose)
{
	int nops;

	memset(r->sh, 0, sizeof(r->sh));
	r->seed = seed;
	r->verbose = verbose;
	r->rng.s = seed;
	r->max_fence = 0;
	r->fail[0] = '\0';
	r->in_ok = false;
	r->op = 0;
	world_new(r);
	conf_build(r);
	lease_table_init(&r->t);
	if (verbose)
		world_print(r);
	nops = 10 + below(&r->rng, 21);
	for (r->op = 1; r->op <= nops && !r->fail[0]; r->op++) {
		int x = below(&r->rng, 100), k = below(&r->rng, r->w.n);
		int hchoice = below(&r->rng, 4);
		bool admin = chance(&r->rng, 10);

		if (x < 42) {
			int a = below(&r->rng, 100);
			op_acquire(r, k, hchoice, admin,
				   a < 70   ? 0
				   : a < 85 ? 1
					    : 2,
				   chance(&r->rng, 50));
		} else if (x < 54) {
			op_release(r, k, hchoice, admin);
		} else if (x < 76) {
			op_flip(r);
		} else if (x < 84) {
			op_time(r);
		} else {
			op_outcomes(r);
		}
		o_check_table(r);
	}
	lease_table_free(&r->t);
	gate_inputs_free(&r->in);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	char *end;
	uint64_t v;

	if (!s || !*s)
		return dflt;
	v = strtoull(s, &end, 0);
	return *end ? dflt : v;
}

/* Runs seed; on a violation reruns it verbosely and fails with the seed. */
static void run_checked(struct run *r, uint64_t seed, bool verbose)
{
	run_seq(r, seed, verbose);
	if (!r->fail[0])
		return;
	char fail[sizeof(r->fail)];
	memcpy(fail, r->fail, sizeof(fail));
	if (!verbose) {
		fprintf(stderr, "\ntest_gate_prop: seed %" PRIu64 " fails: %s\n", seed, fail);
		fprintf(stderr, "rerun: LBD_PROP_SEED=%" PRIu64 " BUILD/tests/test_gate_prop\n",
			seed);
		run_seq(r, seed, true);
	}
	ck_abort_msg("seed %" PRIu64 ": %s (LBD_PROP_SEED=%" PRIu64 " reproduces it)", seed, fail,
		     seed);
}

START_TEST(test_prop_chunk)
{
	uint64_t total = env_u64("LBD_PROP_N", 100000), base = env_u64("LBD_PROP_BASE", 0x14ba5e);
	uint64_t per = (total + CHUNKS - 1) / CHUNKS, from = (uint64_t)_i * per;
	static struct run r;

	memset(&r, 0, sizeof(r));
	for (uint64_t i = from; i < from + per && i < total; i++)
		run_checked(&r, base + i, false);
	if (getenv("LBD_PROP_STATS"))
		fprintf(stderr,
			"chunk %d: %ld grants (%ld master), %ld renewals, %ld refusals, %ld "
			"releases, %ld released on outcomes\n",
			_i, r.grants, r.master_grants, r.renews, r.refusals, r.releases,
			r.outcome_releases);
	/* The generator must reach the interesting states, or the test proves little. */
	if (per >= 1000 && from < total) {
		ck_assert_msg(r.grants > (long)per / 4, "only %ld grants", r.grants);
		ck_assert_msg(r.master_grants > (long)per / 50, "only %ld master grants",
			      r.master_grants);
		ck_assert_msg(r.renews > (long)per / 50, "only %ld renewals", r.renews);
		ck_assert_msg(r.refusals > (long)per, "only %ld refusals", r.refusals);
		ck_assert_msg(r.releases > (long)per / 50, "only %ld releases", r.releases);
		ck_assert_msg(r.outcome_releases > (long)per / 100, "only %ld outcome releases",
			      r.outcome_releases);
	}
}
END_TEST

START_TEST(test_prop_one_seed)
{
	static struct run r;

	memset(&r, 0, sizeof(r));
	run_checked(&r, env_u64("LBD_PROP_SEED", 0), true);
	fprintf(stderr, "seed %s: every invariant held\n", getenv("LBD_PROP_SEED"));
}
END_TEST

static Suite *prop_suite(void)
{
	Suite *s = suite_create("gate_prop");
	TCase *tc = tcase_create("core");

	if (getenv("LBD_PROP_SEED"))
		tcase_add_test(tc, test_prop_one_seed);
	else
		tcase_add_loop_test(tc, test_prop_chunk, 0, CHUNKS);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(prop_suite());
}
