/*
 * orchestrator_int.h - the orchestrator's internals, shared by its files;
 * not for use outside upgrade/ (the API is orchestrator.h).
 *
 *   orchestrator.c   the step machine: step table, node runner, orch_run
 *   orch_checks.c    the table's preconditions and outcome checks
 *   orch_util.c      events, the failure flag, string builders, versions
 *   lbclient.c       lbd's admin API and the gate's status
 *   orch_lease.c     gate leases: the lease step, the keeper, the release step
 *   orch_cluster.c   Kubernetes and etcd helpers
 *   preflight.c      the preflight checks and hook
 *   upgrade_steps.c  backend-drain, drain, command, backend-enable, uncordon
 *   wait.c           wait (outcomes and soak), joined, backend-up
 *   migrate.c        join, backend-add, etcd-remove, remove-command,
 *                    node-delete, backend-remove
 *   orch_report.c    dry run and status
 *
 * struct orch_priv is a run's private state (struct orch's p); struct nctx is
 * a node being worked on by one thread; every step is an
 * int orch_st_NAME(struct nctx *, char **msg) returning an enum orch_rc.
 */
#ifndef LBD_ORCHESTRATOR_INT_H
#define LBD_ORCHESTRATOR_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upgrade/journal.h"
#include "kube/etcd.h"
#include "kube/kube.h"
#include "kube/kubeconfig.h"
#include "upgrade/orchestrator.h"
#include "upgrade/plan.h"

struct orch_priv {
	struct kubeconfig kc;
	char *kc_err;
	bool kc_ok;
	struct journal j;
	bool have_j;
	int64_t run_start;
	char date[32];
	pthread_mutex_t ev_mu;

	/* the plan's nodes in the order they are worked on (orch_node_order),
	 * sized from the plan: a plan has as many nodes as it lists */
	const struct plan_node **order;
	size_t norder;

	/* the lease keeper */
	pthread_t keeper;
	bool keeper_on;
	pthread_mutex_t kmu;
	pthread_cond_t kcv;
	bool kstop;
	/* leases being renewed: one slot per node of the plan (a node holds at
	 * most one), so no lease is ever left out for want of room */
	char **held;
	enum plan_role *held_role;
	size_t nheld;

	/* Worker nodes wait for a gate slot in plan order (FIFO): only the first
	 * waiting one asks; a release by this run wakes it at once. */
	pthread_mutex_t qmu;
	pthread_cond_t qcv;
	size_t *queue; /* the order index of each node waiting for a lease */
	size_t nq;
	unsigned long releases; /* leases this run gave back: progress */

	/* the first failure stops the run */
	pthread_mutex_t fmu;
	int rc;
	char *fail_msg;
	size_t next_worker;
};

/* A step that gave up before it changed anything (a lease not asked for
 * because the run is stopping): it goes back to pending. */
#define ORCH_NOT_STARTED 100

/* A node being worked on, by one thread. */
struct nctx {
	struct orch *o;
	struct kube *k;
	const struct plan_node *n;
	const char *step;
	int64_t step_start;
	bool resumed;	 /* this step was interrupted before */
	enum jstate was; /* its journal state before this start */
	bool detached;	 /* stopped (Ctrl-C) while its command runs on: step stays running */
	char *note;	 /* what the step did, for the journal */
};

/* A string being built (orch_sb_add). */
struct sbuf {
	char *s;
	size_t n;
};

/* A list of strings (orch_sv_add, orch_sv_free). */
struct strv {
	char **v;
	size_t n;
};

/* orch_util.c */
bool orch_at_target(const char *v, const char *target);
const char *orch_dur(int64_t ms, char *buf, size_t len);
void orch_emit(struct orch *o, enum orch_ev type, const char *node, const char *step,
	       int64_t step_start, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void orch_fail_run(struct orch *o, int rc, const char *msg);
__attribute__((format(printf, 2, 3))) void orch_sb_add(struct sbuf *b, const char *fmt, ...);
void orch_sleep_ms(int64_t ms);
/* Take no new node: the run failed somewhere, or was interrupted. */
bool orch_stopping(struct orch *o);
/* Ctrl-C (SIGINT/SIGTERM/SIGHUP): stop even a node in progress at its next safe point. */
bool orch_interrupted(struct orch *o);
__attribute__((format(printf, 2, 3))) void orch_sv_add(struct strv *s, const char *fmt, ...);
void orch_sv_free(struct strv *s);
int orch_vcmp(const char *a, const char *b);
/* The lines removed ("- ") and added ("+ ") from a to b; "" if none (caller frees). */
char *orch_line_diff(const char *a, const char *b);

/* lbclient.c */
json_t *orch_gate_status(struct orch *o, char **err);
json_t *orch_get_backend(struct orch *o, const char *name, json_t **pool_out, char **err);
const char *orch_jerr(json_t *j);
const char *orch_jstr(json_t *o, const char *k);
int orch_lbd(struct orch *o, const char *method, const char *path, json_t *body, long *status,
	     json_t **out, char **err);
char *orch_pool_path(struct orch *o, const char *backend);

/* orch_lease.c */
/* The gate holder of this run: "lbctl upgrade run <journal start>" (caller frees). */
char *orch_lease_holder(struct orch *o);
void orch_keep_lease(struct orch *o, const char *node, enum plan_role role, bool on);
void *orch_keeper_main(void *arg);
int orch_st_lease(struct nctx *c, char **msg);
/* The line of this run's nodes waiting for a lease, by plan order index. */
void orch_queue_enter(struct orch_priv *p, size_t ticket);
void orch_queue_leave(struct orch_priv *p, size_t ticket);
/* By the journal: this run took node's lease and has not given it back. */
bool orch_run_holds_lease(struct orch *o, const char *node);
int orch_st_release(struct nctx *c, char **msg);

/* orch_cluster.c */
json_t *orch_etcd_call(struct orch *o, const char *endpoint, const char *path, const char *body,
		       char **err);
/* kube_etcd_poll with the plan's etcd settings: every endpoint and every
 * member asked; -1 with *err when none answered or the endpoints that did
 * disagree on the cluster or its members. e is filled either way
 * (kube_etcd_clear it); judge members with kube_etcd_member_healthy, the
 * gate's rule. */
int orch_etcd_poll(struct orch *o, struct kube_etcd *e, char **err);
struct kube *orch_kube_for(struct orch *o);
void orch_kube_reconnect(struct nctx *c);
int orch_node_get(struct kube *k, const char *name, struct kube_node *n, char **err);
bool orch_node_is_master(const struct kube_node *n);

/* preflight.c */
bool orch_is_new_node(const struct plan *pl, const char *name);
/* The gate's answer for node n now, from its status, by the role the gate
 * gives it (a node the gate counts among its masters is asked as one,
 * whatever the plan says). joining: a migration's new master, which asks
 * for a master lease before it is any source's master: the status'
 * joining_master answer (ORCH_GATE_JOINING from a gate whose status has
 * none: decided when it asks). *verdict (if not NULL): ORCH_GATE_*. */
enum {
	ORCH_GATE_REFUSED,
	ORCH_GATE_GRANTED,
	ORCH_GATE_HELD,
	ORCH_GATE_NOT_MASTER,
	ORCH_GATE_JOINING
};
char *orch_gate_answer(json_t *st, const struct plan_node *n, bool joining, int *verdict);
void orch_preflight(struct orch *o, struct kube *k, bool fresh, struct strv *why, struct strv *ok);
int orch_run_hook(struct orch *o, struct strv *why);

/* upgrade_steps.c */
/* What became of the command this step started before: an enum exec_fate,
 * EXEC_LOST for a failure already reported (run it again), -1 for none. */
int orch_cmd_fate(struct nctx *c);
int orch_run_command(struct nctx *c, const char *what, const char *tmpl, const char *old_node,
		     const char *new_node, char **msg);
int orch_set_backend_state(struct nctx *c, const char *state, char **msg);
int orch_st_backend_drain(struct nctx *c, char **msg);
int orch_st_backend_enable(struct nctx *c, char **msg);
int orch_st_command(struct nctx *c, char **msg);
int orch_st_drain(struct nctx *c, char **msg);
int orch_st_uncordon(struct nctx *c, char **msg);

/* wait.c */
int orch_st_backend_up(struct nctx *c, char **msg);
int orch_st_joined(struct nctx *c, char **msg);
int orch_st_wait(struct nctx *c, char **msg);

/* migrate.c */
int orch_st_gate_members(struct nctx *c, char **msg);
const char *orch_replaced_by(const struct plan *pl, const char *old_node);
int orch_st_backend_add(struct nctx *c, char **msg);
int orch_st_backend_remove(struct nctx *c, char **msg);
int orch_st_etcd_remove(struct nctx *c, char **msg);
int orch_st_join(struct nctx *c, char **msg);
int orch_st_node_delete(struct nctx *c, char **msg);
int orch_st_remove_command(struct nctx *c, char **msg);

/* orch_report.c */
/* "Now: NODE is cordoned; it holds its gate lease ...; backend P/B is drain (up)."
 * read at this moment, for failure messages (caller frees). */
char *orch_node_now(struct nctx *c);

/* orch_checks.c: the step table's preconditions and outcome checks */
int orch_chk_backend_absent(struct nctx *c, char **msg);
int orch_chk_backend_disabled(struct nctx *c, char **msg);
int orch_chk_backend_enabled(struct nctx *c, char **msg);
int orch_chk_backend_present(struct nctx *c, char **msg);
int orch_chk_leased(struct nctx *c, char **msg);
int orch_chk_node_gone(struct nctx *c, char **msg);
int orch_chk_released(struct nctx *c, char **msg);
int orch_chk_uncordoned(struct nctx *c, char **msg);
int orch_pre_drained(struct nctx *c, char **msg);
int orch_pre_leased(struct nctx *c, char **msg);

/* orchestrator.c */
/* The most steps a node has (the step table's length). */
#define ORCH_MAX_STEPS 17
void orch_describe(struct orch *o, const struct plan_node *n, const char *step, char *buf,
		   size_t len);
/* The nodes in the order they are worked on, in an array the caller frees
 * (*n entries; never more than 2 * nreplace + nadd or nnodes). */
const struct plan_node **orch_node_order(const struct plan *pl, size_t *n);
void orch_priv_free(struct orch *o);
void orch_priv_init(struct orch *o);
size_t orch_steps_for(const struct plan *pl, const struct plan_node *n, const char **out);

#endif
