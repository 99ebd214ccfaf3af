/*
 * etcd.h - etcd through its v3 JSON gateway (the same port as gRPC), and the
 * one rule for "is this member healthy" that the gate and the upgrade
 * orchestrator both apply, so they can never disagree about a member.
 *
 * A poll asks every configured endpoint POST /v3/cluster/member/list,
 * /v3/maintenance/status, /v3/maintenance/alarm and GET /health, and then
 * every member's first client URL that no configured endpoint covers, so a
 * member's health is what that member itself says. Blocking (libcurl):
 * called from the gate's input thread and the orchestrator's threads.
 *
 * The rule (kube_etcd_member_healthy): a member is healthy only when
 *   - it is in the member list and is not a learner (it does not vote);
 *   - an endpoint answered for it (its member_id), and no endpoint at its
 *     client URL failed (a member we could not ask is unknown, not healthy);
 *   - every endpoint that answered for it says /health true, no status
 *     errors, and a leader (status.leader is not 0);
 *   - no alarm (NOSPACE, CORRUPT, ...) names it, and the endpoints that
 *     answered for it report no alarm at all (alarms are cluster-wide state,
 *     so an alarmed cluster has no healthy member: fail closed).
 * Quorum of n voters is n/2+1 (kube_etcd_quorum).
 */
#ifndef LBD_KUBE_ETCD_H
#define LBD_KUBE_ETCD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/http.h"

/* Where etcd is and how to ask it. */
struct kube_etcd_conf {
	char *const *endpoints; /* "https://10.0.0.1:2379" */
	size_t nendpoints;
	struct http_tls tls;
	int64_t timeout_ms; /* per call */
	/* A test's fake etcd in place of HTTP: kube_etcd_call's contract. */
	json_t *(*call)(void *arg, const char *endpoint, const char *path, const char *body,
			char **err);
	void *call_arg;
};

/* What one endpoint said. */
struct kube_etcd_view {
	char *endpoint;
	bool ok; /* member list, status, alarms and /health all answered */
	char *err;
	bool health;	  /* GET /health said "true" and status had no errors */
	char *health_why; /* why not */
	bool leaderless;  /* status.leader was 0: this member sees no leader */
	uint64_t leader;  /* status.leader */
	uint64_t cluster_id;
	uint64_t member_id; /* the member that answered */
	uint64_t *members;  /* ids in its member list, sorted */
	size_t nmembers;
	char **alarms; /* "NOSPACE on member 8e9e05c52164694d (seen by ...)" */
	size_t nalarms;
	uint64_t *alarm_members; /* the member alarms[i] is raised on; may be NULL */
};

struct kube_etcd_member {
	uint64_t id;
	char *name; /* "" until the member has started */
	bool learner;
	char *url; /* its first client URL, or NULL */
};

/* Everything one poll saw. */
struct kube_etcd {
	struct kube_etcd_member *members; /* from the first endpoint that answered */
	size_t nmembers;
	struct kube_etcd_view *views;
	size_t nviews;
};

/*
 * Asks every endpoint (see above) and fills e. Returns 0 when an endpoint
 * gave a member list; else -1 with *why (caller frees) naming each endpoint's
 * failure. e is filled either way (kube_etcd_clear it).
 */
int kube_etcd_poll(const struct kube_etcd_conf *c, struct kube_etcd *e, char **why);
void kube_etcd_clear(struct kube_etcd *e);

/* One JSON gateway call, body NULL for a GET. Any HTTP status but 200 is an
 * error (NULL with *err), except for /health, which answers 503 with its
 * reason; an answer that is not JSON is an error too. */
json_t *kube_etcd_call(const struct kube_etcd_conf *c, const char *endpoint, const char *path,
		       const char *body, char **err);

/* The rule above. *why (may be NULL) is set when not healthy; it points
 * into e or at a constant, so it lives as long as e. */
bool kube_etcd_member_healthy(const struct kube_etcd *e, uint64_t id, const char **why);

/* Quorum of n voters: floor(n/2)+1 (0 for n <= 0). */
int kube_etcd_quorum(int n);

/* Voting members (learners excluded). */
int kube_etcd_voters(const struct kube_etcd *e);

/* The member named name, or NULL. */
const struct kube_etcd_member *kube_etcd_find(const struct kube_etcd *e, const char *name);

/* The endpoint that answered for member id, or NULL. */
const struct kube_etcd_view *kube_etcd_view_of(const struct kube_etcd *e, uint64_t id);

/* Endpoints that answered must agree on the cluster ID and the member list;
 * each disagreement is passed to say (one sentence). Returns true if none. */
bool kube_etcd_agree(const struct kube_etcd *e, void (*say)(void *arg, const char *msg), void *arg);

/* An id as the JSON gateway writes a uint64: a decimal string (or a number). */
int kube_etcd_parse_id(json_t *v, uint64_t *out);

/* Lifetimes of the parts, for holders that keep them elsewhere (the gate). */
void kube_etcd_members_free(struct kube_etcd_member *m, size_t n);
void kube_etcd_views_free(struct kube_etcd_view *v, size_t n);
struct kube_etcd_member *kube_etcd_members_dup(const struct kube_etcd_member *m, size_t n);
struct kube_etcd_view *kube_etcd_views_dup(const struct kube_etcd_view *v, size_t n);

#endif
