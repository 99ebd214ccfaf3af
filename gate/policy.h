/*
 * policy.h - may this node go down now? Pure functions over a snapshot of
 * the gate's inputs, the lease table and the gate config: no I/O, no clock
 * (the time is in the snapshot), so every rule is unit-tested (test_policy).
 *
 * Rules, all evaluated every time so a refusal lists every reason:
 *   - every input the config asks for is known and fresh (unknown = no);
 *   - concurrency: a free slot for the role, and per-label caps;
 *   - maintenance windows (days, start, end, IANA time zone);
 *   - no firing alert matching the filter;
 *   - (require_all_nodes_ready) every other node Ready and not cordoned,
 *     except nodes that hold a lease (they are down by agreement);
 *   - master: without this node and every other master lease holder, the
 *     healthy apiservers in the quorum pool (up by their check and serving:
 *     a drained, disabled or weight-0 backend is lost) and the healthy voting etcd
 *     members (kube/etcd.h's rule: learners excluded, a leader, no alarms;
 *     all endpoints agreeing on the member list and cluster ID) both stay
 *     at or above floor(n/2)+1. A
 *     leaving member counts as lost even when it is unhealthy already: a
 *     broken member under a lease is two members out, so when one member is
 *     down every master lease waits (fail closed) until it is back.
 */
#ifndef LBD_GATE_POLICY_H
#define LBD_GATE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "gate/lease.h"
#include "kube/etcd.h"

/* Each source says whether it answered, when, and if not, why. */
struct gate_source {
	bool known;
	int64_t at_ms; /* wall clock of the last good answer */
	char *why;     /* when !known: "timeout after 2s" */
};

struct gate_backend_in {
	char *name;
	bool up;      /* by its health check */
	bool serving; /* enabled with weight > 0: drained, disabled or weight 0 is lost */
	char *detail; /* the last failure, "readyz 503: [-]etcd failed" */
};

struct gate_pool_in {
	struct gate_source src;
	struct gate_backend_in *v;
	size_t n;
};

/*
 * etcd: what each endpoint said and the member list are kube/etcd.h's, and
 * so is the health rule, which the upgrade orchestrator applies too. The
 * gate's names for those types are kept for gate.c and the unit tests.
 */
#define gate_etcd_view kube_etcd_view
#define gate_etcd_member kube_etcd_member

struct gate_etcd_in {
	struct gate_source src;
	struct kube_etcd_member *members; /* from the first endpoint that answered */
	size_t nmembers;
	struct kube_etcd_view *views;
	size_t nviews;
};

struct gate_node_in {
	char *name;
	bool ready;
	bool unschedulable;
	char *boot_id;
	struct gate_label *labels;
	size_t nlabels;
};

struct gate_nodes_in {
	struct gate_source src;
	struct gate_node_in *v;
	size_t n;
};

struct gate_alerts_in {
	struct gate_source src;
	char **firing; /* "KubeAPIDown (severity=critical)" */
	size_t n;
};

struct gate_inputs {
	int64_t now_ms;	    /* wall clock of the decision */
	int64_t max_age_ms; /* older answers count as unknown */
	struct gate_pool_in pool;
	struct gate_etcd_in etcd;
	struct gate_nodes_in nodes;
	struct gate_alerts_in alerts;
};

/* A list of sentences. */
struct gate_text {
	char **v;
	size_t n;
};

struct gate_request {
	const char *node;
	enum gate_role role;
	bool hypothetical; /* status' "what would a worker get": no such node needed */
	bool stricter;	   /* asked master, the gate judged worker (gate_request_role) */
	bool release_on_outcomes;
};

struct gate_decision {
	bool granted;
	int slot;		     /* the free slot, when granted */
	struct gate_text reasons;    /* why not: every failed rule */
	struct gate_text arithmetic; /* every rule's numbers, granted or not (status) */
};

void gate_decide(const struct gate_conf *conf, const struct gate_inputs *in,
		 const struct lease_table *leases, const struct gate_request *req,
		 struct gate_decision *out);
void gate_decision_free(struct gate_decision *d);

/*
 * The role of node, from what the gate knows, never from the asker: a master
 * if it is a backend of quorum.pool (by name or members), a voting or
 * learning etcd member, or a Kubernetes node labelled
 * node-role.kubernetes.io/control-plane (or .../master). Evidence from one
 * source is enough for master; worker needs every configured source known.
 * Returns 0 with *role, or -1 with *why (caller frees): a source it needed
 * is unknown or stale (older than max_age), so the gate refuses.
 */
int gate_node_role(const struct gate_conf *conf, const struct gate_inputs *in, const char *node,
		   enum gate_role *role, char **why);

/*
 * The role a request is decided by. The asker may make its node's role only
 * stricter: asked (the body's role, or NULL) is master where gate_node_role
 * says worker or cannot tell, and the request is then decided by the master
 * rules and holds a master lease (req->stricter): a master about to join,
 * which lbctl migrate leases before its join command, takes the one master
 * slot so nothing else takes a master down while quorum changes. A worker
 * the gate sees running in the cluster gets that only from an admin
 * (admin): its own token would use the master slot to slip past
 * concurrency.workers. Without gate.kubeconfig the gate cannot tell a
 * running worker from a joining node, so only an admin may. Asking worker
 * for a master is refused: never weaker.
 * Fills req->role and req->stricter; 0, or -1 with *why (caller frees).
 */
int gate_request_role(const struct gate_conf *conf, const struct gate_inputs *in, const char *node,
		      const char *asked, bool admin, struct gate_request *req, char **why);

/* May holder (admin: an admin token or the admin socket) take node's lease? */
enum gate_hold {
	GATE_HOLD_NEW,	   /* node holds nothing: decide */
	GATE_HOLD_RENEW,   /* holder holds it: renew (same slot, same fence) */
	GATE_HOLD_REFUSED, /* someone else holds it: *why says who, since when */
};
enum gate_hold gate_hold_check(const struct lease_table *t, const char *node, const char *holder,
			       bool admin, char **why);

/* Quorum of n voters: floor(n/2)+1 (0 for n == 0), as kube_etcd_quorum. */
int gate_quorum(int n);

/* The backend and etcd member names of node (members map, else the node's name). */
const char *gate_node_backend(const struct gate_conf *conf, const char *node);
const char *gate_node_etcd(const struct gate_conf *conf, const char *node);

/*
 * Is the holder of l back? A new bootID, Ready, and for a master its backend
 * up in the pool and its etcd member healthy (when those are configured).
 * Returns true if so; otherwise *why (caller frees) says what is missing.
 * *gone is set when the node was deleted from the cluster (release at once).
 */
bool gate_lease_back(const struct gate_conf *conf, const struct gate_inputs *in,
		     const struct gate_lease *l, bool *gone, char **why);

/*
 * Release on outcomes, for the leases that asked for it
 * (release_on_outcomes): updates their back_since_ms from the inputs and
 * appends to nodes (with the matching line in why) each holder that has
 * been back for conf->soak_ms, or was deleted from the cluster. Other
 * leases are their holder's to release.
 */
void gate_outcomes(const struct gate_conf *conf, const struct gate_inputs *in,
		   struct lease_table *t, struct gate_text *nodes, struct gate_text *why);

/* Is t inside a window? *which (caller frees) names it or every reason not. */
bool gate_window_open(const struct gate_conf *conf, int64_t now_ms, char **which);

/* The etcd inputs as kube/etcd.h's struct, for its functions (no copy: e's arrays). */
static inline struct kube_etcd gate_etcd_cluster(const struct gate_etcd_in *e)
{
	return (struct kube_etcd){e->members, e->nmembers, e->views, e->nviews};
}

/* Etcd member health: kube_etcd_member_healthy over e (exposed for status). */
bool gate_etcd_member_healthy(const struct gate_etcd_in *e, uint64_t id, const char **why);

void gate_text_add(struct gate_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gate_text_free(struct gate_text *t);

void gate_inputs_free(struct gate_inputs *in);
void gate_inputs_copy(struct gate_inputs *dst, const struct gate_inputs *src);

#endif
