/*
 * drain.h - cordon and drain a node as `kubectl drain` does.
 *
 * The semantics follow k8s.io/kubectl/pkg/drain:
 *   1. cordon (spec.unschedulable = true; "already cordoned" is fine);
 *   2. list the node's pods and run each through the filters, in kubectl's
 *      order: DaemonSet (refuse unless ignore_daemonsets; never deleted; a
 *      missing DaemonSet is refused unless force), mirror (skipped silently),
 *      emptyDir (refused unless delete_emptydir_data), unmanaged (refused
 *      unless force). Pods that finished (Succeeded/Failed) pass the last
 *      three. Any refusal stops the drain before anything is evicted, with
 *      kubectl's messages ("cannot delete Pods with local storage (use
 *      --delete-emptydir-data to override): ns/pod, ...");
 *   3. evict every remaining pod in parallel (Eviction API; DELETE with
 *      disable_eviction or when the server has no eviction subresource). A
 *      429 (a PDB, or API Priority and Fairness) is retried after its
 *      Retry-After if it has one, else every retry_ms; 404 means already
 *      gone. Only the pods of that one listing: a pod that arrives on the node
 *      while the drain runs is left alone, as kubectl leaves it;
 *   4. wait until each pod is gone (404, or the same name with a new UID, or
 *      terminating for longer than skip_wait_for_delete_timeout_s);
 *   5. stop at timeout_ms (0 = no limit) and report the pods left and
 *      whether a PDB is what blocks each.
 * dry_run: client = cordon and evict nothing, say what would be evicted;
 * server = send the cordon and the evictions with dryRun=All (the apiserver
 * checks them, PDBs included, and stores nothing).
 * The node stays cordoned whatever the outcome, as with kubectl.
 *
 * drain_filter_pod() is the pure part (no I/O), unit-tested on its own.
 */
#ifndef LBD_DRAIN_H
#define LBD_DRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kube/kube.h"

/* At most this many pods are evicted and waited for at once. */
#define DRAIN_MAX_PARALLEL 64

enum drain_dry_run { DRAIN_DRY_NONE, DRAIN_DRY_CLIENT, DRAIN_DRY_SERVER };

struct drain_opts {
	bool ignore_daemonsets;
	bool delete_emptydir_data;
	bool force;
	bool disable_eviction;		    /* DELETE instead of the Eviction API */
	int grace_period_s;		    /* < 0: each pod's own */
	int64_t timeout_ms;		    /* 0: wait forever */
	int64_t retry_ms;		    /* between evictions refused with 429; default 5000 */
	int64_t poll_ms;		    /* between "is it gone?" checks; default 1000 */
	const char *pod_selector;	    /* label selector on the node's pods; NULL: all */
	enum drain_dry_run dry_run;	    /* default none */
	int skip_wait_for_delete_timeout_s; /* > 0: a pod terminating longer is not waited for */
	bool cordoned; /* the caller ran drain_cordon_node() already: drain_node() does not */
};

/* Defaults as kubectl's: grace -1, no timeout, retry 5s, poll 1s. */
void drain_opts_init(struct drain_opts *o);

enum drain_verdict {
	DRAIN_POD_DELETE, /* evict (or delete) it */
	DRAIN_POD_SKIP,	  /* leave it: mirror pod, or an ignored DaemonSet pod */
	DRAIN_POD_REFUSE, /* the drain must not proceed */
};

/* Which filter decided, so messages can be grouped as kubectl groups them. */
enum drain_filter {
	DRAIN_F_NONE,
	DRAIN_F_DAEMONSET,
	DRAIN_F_DAEMONSET_MISSING,
	DRAIN_F_MIRROR,
	DRAIN_F_LOCAL_STORAGE,
	DRAIN_F_UNMANAGED,
	DRAIN_F_COUNT,
};

struct drain_decision {
	enum drain_verdict verdict;
	enum drain_filter filter;
	const char *message; /* static text: the fatal or warning message, or NULL */
};

/* Whether a DaemonSet owner exists: drain looks it up before filtering. */
enum drain_owner { DRAIN_OWNER_EXISTS, DRAIN_OWNER_MISSING };

/* The filters, pure. ds is only read for DaemonSet pods. */
struct drain_decision drain_filter_pod(const struct kube_pod *p, const struct drain_opts *o,
				       enum drain_owner ds);

/* Progress events, in the order kubectl prints them. Callbacks come from the
 * drain's worker threads, one at a time. CORDONED, ALREADY_CORDONED,
 * EVICTING, DELETING and DRAINED carry "(dry run)" or "(server dry run)" as
 * msg in a dry run, else NULL. */
enum drain_event {
	DRAIN_EV_CORDONED,	   /* node/N cordoned */
	DRAIN_EV_ALREADY_CORDONED, /* node/N already cordoned */
	DRAIN_EV_WARNING,	   /* msg: "ignoring DaemonSet-managed Pods: ns/a, ..." */
	DRAIN_EV_EVICTING,	   /* evicting pod ns/name */
	DRAIN_EV_DELETING,	   /* deleting pod ns/name (disable_eviction) */
	DRAIN_EV_RETRY,		   /* msg: "(will retry after 5s): <why, e.g. the PDB's message>" */
	DRAIN_EV_GONE,		   /* pod/name evicted (or deleted) */
	DRAIN_EV_DRAINED,	   /* node/N drained */
};

typedef void (*drain_progress_fn)(void *arg, enum drain_event ev, const char *ns, const char *name,
				  const char *msg);

enum drain_status {
	DRAIN_OK,
	DRAIN_REFUSED, /* filters refused some pods; nothing was evicted */
	DRAIN_TIMEOUT, /* timeout_ms passed with pods left */
	DRAIN_FAILED,  /* an API error */
};

struct drain_left {
	char *ns, *name;
	bool pdb_blocked; /* the last eviction got 429 from a disruption budget */
	char *why;	  /* the last error, or "waiting for deletion" */
};

struct drain_result {
	enum drain_status status;
	char *error;		 /* one line for humans (kubectl-like); NULL if OK */
	struct drain_left *left; /* pods left on timeout or failure */
	size_t nleft;
	size_t evicted; /* pods evicted or deleted */
	size_t skipped; /* mirror and ignored DaemonSet pods */
};

/* Cordons then drains node. Returns r->status (0 = DRAIN_OK). */
int drain_node(struct kube *k, const char *node, const struct drain_opts *o, drain_progress_fn cb,
	       void *arg, struct drain_result *r);
void drain_result_free(struct drain_result *r);

/* drain_node()'s first step on its own, dry-run aware, with its progress
 * event: kubectl cordons every node it was given before draining the first.
 * Returns 0, or -1 with *err (caller frees). */
int drain_cordon_node(struct kube *k, const char *node, const struct drain_opts *o,
		      drain_progress_fn cb, void *arg, char **err);

/* Cordon (on) or uncordon; *changed says whether the node was in the other state. */
int drain_cordon(struct kube *k, const char *node, bool on, bool *changed, struct kube_err *e);

#endif
