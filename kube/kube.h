/*
 * kube.h - a small Kubernetes API client (libcurl + jansson).
 *
 * Design note: every call is blocking and a struct kube owns one curl easy
 * handle (keep-alive across calls), so a struct kube is used by one thread at
 * a time. That suits lbctl. The gate, which must never block its libevent
 * loop, should own a struct kube in a worker thread and hand results back,
 * or call kube_request() style helpers from a thread pool; nothing here keeps
 * global state except curl_global_init() (done once, thread-safe via
 * pthread_once).
 *
 * Errors: a call returns 0 or -1; on -1 the struct kube_err the caller passed
 * (may be NULL) says what happened: the HTTP status (0 if the request never
 * got an answer), the apiserver's Status reason ("NotFound",
 * "TooManyRequests", "Conflict", ...), its message, and the first cause's
 * reason (an eviction blocked by a PDB has cause "DisruptionBudget").
 * Every field is clean text (common/text.h): valid UTF-8, no control bytes,
 * fit to quote into JSON or a log as it is.
 */
#ifndef LBD_KUBE_H
#define LBD_KUBE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kube/kubeconfig.h"

struct kube;

struct kube_err {
	long status;	   /* HTTP status; 0 = transport error */
	char reason[64];   /* Status.reason */
	char cause[64];	   /* Status.details.causes[0].reason */
	char message[512]; /* Status.message, or the transport error */
	int retry_after_s; /* the Retry-After header (a 429 from Priority and Fairness), or 0 */
};

struct kube_node {
	char *name;
	bool ready;	       /* condition Ready == True */
	char *ready_reason;    /* the Ready condition's reason */
	bool unschedulable;    /* spec.unschedulable (cordoned) */
	char *kubelet_version; /* status.nodeInfo.kubeletVersion */
	char *boot_id;	       /* status.nodeInfo.bootID: changes on reboot */
	char *roles;	       /* "control-plane,master" from node-role labels, or "" */
	char *internal_ip;
	char *created;	/* metadata.creationTimestamp */
	json_t *labels; /* object, owned */
};

struct kube_node_list {
	struct kube_node *v;
	size_t n;
};

/* What drain needs to know about a pod. */
struct kube_pod {
	char *ns, *name, *uid;
	char *node;	  /* spec.nodeName or NULL */
	char *phase;	  /* status.phase */
	char *owner_kind; /* the controller ownerReference, or NULL (unmanaged) */
	char *owner_name;
	bool mirror;	   /* annotation kubernetes.io/config.mirror */
	bool empty_dir;	   /* any emptyDir volume */
	bool deleting;	   /* metadata.deletionTimestamp set */
	bool ready;	   /* condition Ready == True */
	char *deletion_ts; /* metadata.deletionTimestamp ("2026-01-02T03:04:05Z") or NULL */
};

struct kube_pod_list {
	struct kube_pod *v;
	size_t n;
};

/* Creates a client for a loaded kubeconfig (copied; kc may be freed after). */
struct kube *kube_new(const struct kubeconfig *kc);
void kube_free(struct kube **k);
/* Per-request timeout (default 30s) and list page size (default 500). */
void kube_set_timeout(struct kube *k, int64_t ms);
void kube_set_page_size(struct kube *k, int limit);
/* A second client with k's server, credentials and settings, for another
 * thread (drain evicts in parallel, one client per pod in flight). */
struct kube *kube_clone(const struct kube *k);
/* Server-side dry run: every PATCH, POST, PUT and DELETE carries dryRun=All,
 * so the apiserver validates (PDBs, RBAC) and stores nothing. */
void kube_set_dry_run(struct kube *k, bool on);

/*
 * A transport in place of HTTP, for tests that fake the apiserver: it
 * answers method and path (query string included) with an HTTP status and
 * a JSON body (*out, may stay NULL), or -1 with *err (caller frees) for a
 * transport error. Clones share it. Errors and Status objects are handled
 * as real answers are.
 */
typedef int (*kube_transport_fn)(void *arg, const char *method, const char *path, json_t *body,
				 json_t **out, char **err);
void kube_set_transport(struct kube *k, kube_transport_fn fn, void *arg);

/*
 * The generic call: method, path ("/api/v1/nodes"), optional JSON body and
 * content type. On 2xx returns 0 and, if out, the decoded answer (caller
 * decrefs; NULL for an empty body). Otherwise -1 with e filled.
 */
int kube_request(struct kube *k, const char *method, const char *path, json_t *body,
		 const char *content_type, json_t **out, struct kube_err *e);

/* GET /version -> gitVersion ("v1.31.4"); caller frees. */
int kube_version(struct kube *k, char **git_version, struct kube_err *e);

int kube_node_list(struct kube *k, struct kube_node_list *out, struct kube_err *e);
int kube_node_get(struct kube *k, const char *name, struct kube_node *out, struct kube_err *e);
/* Strategic-merge patch of spec.unschedulable, as kubectl cordon sends it. */
int kube_node_set_unschedulable(struct kube *k, const char *name, bool on, struct kube_err *e);
void kube_node_clear(struct kube_node *n);
void kube_node_list_free(struct kube_node_list *l);
/* Fills a struct kube_node from a Node object (exposed for tests). */
void kube_node_from_json(json_t *obj, struct kube_node *n);

/* Pods with spec.nodeName == node (all namespaces), following continue tokens. */
int kube_pods_on_node(struct kube *k, const char *node, struct kube_pod_list *out,
		      struct kube_err *e);
/* The same, narrowed by a label selector ("app=web,tier!=db"; NULL: none). */
int kube_pods_on_node_sel(struct kube *k, const char *node, const char *label_selector,
			  struct kube_pod_list *out, struct kube_err *e);
int kube_pod_get(struct kube *k, const char *ns, const char *name, struct kube_pod *out,
		 struct kube_err *e);
/* grace_s < 0: the pod's own terminationGracePeriodSeconds. */
int kube_pod_delete(struct kube *k, const char *ns, const char *name, int grace_s,
		    struct kube_err *e);
/*
 * POST pods/NAME/eviction with the Eviction version the server offers
 * (policy/v1, else v1beta1; found once through discovery of /api/v1).
 * Returns -1 with status 429 + cause "DisruptionBudget" when a PDB blocks it,
 * 404 when the pod is gone. kube_eviction_supported() says whether the server
 * has the subresource at all (drain deletes instead if not).
 */
int kube_pod_evict(struct kube *k, const char *ns, const char *name, int grace_s,
		   struct kube_err *e);
int kube_eviction_supported(struct kube *k, bool *supported, struct kube_err *e);
void kube_pod_clear(struct kube_pod *p);
void kube_pod_list_free(struct kube_pod_list *l);
void kube_pod_from_json(json_t *obj, struct kube_pod *p);

/* GET apps/v1 DaemonSet: 0 if it exists, -1 with e->status 404 if not. */
int kube_daemonset_exists(struct kube *k, const char *ns, const char *name, struct kube_err *e);

/*
 * Leases (coordination.k8s.io/v1) as JSON objects: get returns the object
 * (caller decrefs); create takes one without resourceVersion; update takes
 * one whose metadata.resourceVersion is the one read, and fails with status
 * 409 "Conflict" if someone wrote in between (compare-and-swap). On success
 * *out (if given) is the stored object with its new resourceVersion.
 */
int kube_lease_get(struct kube *k, const char *ns, const char *name, json_t **out,
		   struct kube_err *e);
int kube_lease_create(struct kube *k, const char *ns, json_t *lease, json_t **out,
		      struct kube_err *e);
int kube_lease_update(struct kube *k, const char *ns, json_t *lease, json_t **out,
		      struct kube_err *e);
int kube_lease_delete(struct kube *k, const char *ns, const char *name, struct kube_err *e);

/* "404 NotFound: pods \"x\" not found" style one-liner of an error. */
const char *kube_err_str(const struct kube_err *e, char *buf, size_t len);

#endif
