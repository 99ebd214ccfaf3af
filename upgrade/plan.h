/*
 * plan.h - an upgrade or migration plan: the YAML file `lbctl upgrade PLAN`
 * and `lbctl migrate PLAN` follow (config/examples/plan-*.yaml,
 * migrate-*.yaml, docs/upgrade.md).
 *
 * plan_load() reads and validates the whole file and reports every problem
 * as "file:line:col: message" (the place of the offending value), not only
 * the first; a plan with any error is never half-used.
 *
 * Commands are templates. {node}, {host}, {version}, {date}, {old} and
 * {new} are replaced; "${...}" is left to the shell; any other "{word}" is
 * an error at load time, so a typo never reaches a node. Values put into a
 * command are checked when the plan is loaded (names, hosts and versions
 * have no shell metacharacters), so no quoting is needed or done.
 */
#ifndef LBD_PLAN_H
#define LBD_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum plan_kind { PLAN_UPGRADE, PLAN_MIGRATION };
enum plan_role { PLAN_MASTER, PLAN_WORKER };

struct plan_node {
	char *name;	     /* the Kubernetes node name */
	enum plan_role role; /* master | worker */
	char *backend;	     /* masters: the pool backend (default: the node name) */
	char *address;	     /* a new master's backend address "host:port" (migrations) */
	char *host;	     /* {host}: what ssh reaches (default: the node name) */
	char *etcd;	     /* masters: the etcd member name (default: the node name) */
	int line, col;
};

struct plan_replace {
	char *old_node, *new_node;
	int line, col;
};

struct plan {
	char *path; /* as given */
	enum plan_kind kind;
	char *version; /* target kubelet version "v1.31.5+k3s1"; may be NULL in a migration */
	char *kubeconfig, *context;
	char *lbd_socket, *lbd_url, *lbd_token_file;
	char *pool;

	struct plan_node *nodes;
	size_t nnodes;

	char *upgrade_command; /* template */
	char *hook_preflight;  /* template, optional */
	char *join_command;    /* migration: run for a new node not yet in the cluster */
	char *remove_command;  /* migration: run for an old node once it is out */

	/* drain */
	int64_t drain_timeout_ms; /* default 5m */
	int grace_period_s;	  /* default -1: each pod's own */
	bool ignore_daemonsets, delete_emptydir_data, force, disable_eviction;

	/* timeouts */
	int64_t t_node_ready_ms;    /* outcomes after the command, default 10m */
	int64_t t_backend_drain_ms; /* default 2m */
	int64_t t_command_ms;	    /* default 15m */
	int64_t t_gate_ms;	    /* waiting for a lease, default 30m */

	int worker_concurrency; /* default 1 */
	int64_t soak_ms;	/* outcomes held this long, default 1m */
	int64_t lease_ttl_ms;	/* asked of the gate, renewed at a third; default 10m */

	/* etcd's JSON gateway, for migrations (member list/remove) */
	char **etcd_endpoints;
	size_t netcd_endpoints;
	char *etcd_ca, *etcd_cert, *etcd_key;

	/* migrations */
	struct plan_replace *replace;
	size_t nreplace;
	char **add; /* new masters joining (one master to three) */
	size_t nadd;
};

struct plan_errors {
	char **msgs; /* "file:line:col: message", in file order */
	size_t n;
};

/* Reads path; returns 0, or -1 with errs filled (plan left empty). */
int plan_load(const char *path, struct plan *p, struct plan_errors *errs);
/* The same from memory; name is used in messages. */
int plan_load_string(const char *text, size_t len, const char *name, struct plan *p,
		     struct plan_errors *errs);
void plan_free(struct plan *p);
void plan_errors_free(struct plan_errors *e);

const struct plan_node *plan_node_find(const struct plan *p, const char *name);
const char *plan_role_name(enum plan_role r);
/* What changes the meaning of steps already done, one line each: the kind,
 * the version, the pool, each node in order with its role and backend, a
 * migration's replacements and additions (caller frees). Commands, hooks,
 * timeouts, drain options and comments are not in it: a resume may take
 * an edit of those (the fix of a failed run). */
char *plan_meaning(const struct plan *p);

/* The values a template may use; NULL = not available here. */
struct plan_vars {
	const char *node, *host, *version, *date, *old_node, *new_node;
};

/*
 * Expands tmpl. Returns the command (caller frees), or NULL with *err
 * (caller frees) naming the placeholder that is unknown or has no value.
 * *bad_off, if given, is the offset of that placeholder in tmpl.
 */
char *plan_expand(const char *tmpl, const struct plan_vars *v, char **err, size_t *bad_off);

/* "20240501-103000" (UTC) for {date}. */
void plan_date(char *buf, size_t len);

/* Parses "v1.31.5+k3s1" (the "v" optional): major, minor, patch. */
int plan_version_parse(const char *s, int *major, int *minor, int *patch);

#endif
