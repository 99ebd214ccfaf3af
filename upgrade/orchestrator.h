/*
 * orchestrator.h - the step machine behind `lbctl upgrade` and `lbctl migrate`.
 *
 * A run is: load the plan -> preflight (every reason it must not start,
 * listed) -> decide the steps (nodes already at the target are skipped) and
 * write them to the journal -> run them. An upgrade rolls masters one at a
 * time, then workers (up to workers.concurrency at once, never more than the
 * gate grants). Per node:
 *
 *   lease          ask the gate (wait while it refuses, with its reasons;
 *                  renewed in the background while held)
 *   backend-drain  masters: drain the node's backend in lbd, wait drained
 *   drain          cordon and drain the node (upgrade/drain.h)
 *   command        the plan's upgrade_command for the node
 *   wait           the outcomes: Ready, kubelet at the target, for a master
 *                  its backend up in lbd and its etcd member healthy (as the
 *                  gate sees it), all of them held for the soak time
 *   backend-enable masters: take new connections again
 *   uncordon
 *   release        give the lease back (404: the gate released it already)
 *
 * A migration replaces nodes (the new one joins: join_command or already
 * there; its backend is added and must come up; the old one is leased,
 * drained, its etcd member removed once quorum without it is checked, the
 * node deleted, its backend removed) or adds masters (one to three).
 *
 * Every step is journaled before and after it runs (upgrade/journal.h). On
 * any failure the run stops where it is: the node stays cordoned, the lease
 * held (so the gate lets nothing else go down), and the message says what
 * happened, which outcome never came, and the next manual step.
 *
 * lbd is reached through a callback (lbctl's admin client), so this module
 * does not depend on lbctl/.
 */
#ifndef LBD_ORCHESTRATOR_H
#define LBD_ORCHESTRATOR_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kube/etcd.h"
#include "kube/kube.h"
#include "upgrade/exec.h"
#include "upgrade/journal.h"
#include "upgrade/plan.h"

/* Exit codes, the same as lbctl's. */
enum orch_rc { ORCH_OK = 0, ORCH_FAILED = 1, ORCH_REFUSED = 3, ORCH_TIMEOUT = 4 };

/* One admin/gate API call: 0 with *status and *out (any status; *out NULL if
 * the body is not JSON), or -1 with *err (caller frees) if lbd is unreachable. */
typedef int (*orch_call_fn)(void *arg, const char *method, const char *path, json_t *body,
			    long timeout_ms, long *status, json_t **out, char **err);

enum orch_ev {
	ORCH_EV_STEP_START,
	ORCH_EV_STEP_DONE,
	ORCH_EV_STEP_SKIP,
	ORCH_EV_STEP_FAIL,
	ORCH_EV_WAIT,	/* msg: what is waited for, now */
	ORCH_EV_INFO,	/* msg: something that happened */
	ORCH_EV_OUTPUT, /* msg: a line of a command's output */
	ORCH_EV_RUN_END,
};

struct orch_event {
	enum orch_ev type;
	const char *node; /* "-" for the run */
	const char *step;
	const char *msg;
	int64_t step_ms; /* since the step started */
	int64_t run_ms;	 /* since the run started */
};

typedef void (*orch_event_fn)(void *arg, const struct orch_event *ev);

/* How node commands run: exec.h's detached jobs, unless a test fakes them. */
struct orch_exec {
	int (*job_run)(struct exec_job *job, int64_t timeout_ms, exec_started_fn started,
		       exec_line_fn on_line, exec_tick_fn tick, void *arg, struct exec_result *r);
	int (*job_follow)(const struct exec_job *job, int64_t timeout_ms, exec_line_fn on_line,
			  exec_tick_fn tick, void *arg, struct exec_result *r);
	enum exec_fate (*job_fate)(const struct exec_job *job, struct exec_result *r);
};

struct orch {
	const struct plan *plan;
	orch_call_fn call;
	void *call_arg;
	orch_event_fn on_event; /* called from worker threads too: serialised by the orchestrator */
	void *ev_arg;
	volatile sig_atomic_t *stop; /* set by SIGINT/SIGTERM: stop at the next safe point */
	int64_t poll_ms;	     /* between outcome checks; default 500 */
	bool accept_plan_change;     /* --resume takes a plan whose meaning changed */

	/* The world besides lbd, for tests of the step machine (unset: the real
	 * one): the apiserver, etcd's gateway and the node commands. */
	kube_transport_fn kube_fake;
	void *kube_fake_arg;
	json_t *(*etcd_fake)(void *arg, const char *endpoint, const char *path, const char *body,
			     char **err);
	void *etcd_fake_arg;
	const struct orch_exec *exec;

	/* private */
	struct orch_priv *p;
};

/* Dry run: the preflight verdict, every step in order, the gate's answer for
 * each node now; as text, or (json) one JSON object {plan, kind, version,
 * pool, preflight {ok, refuse, hook}, nodes [{name, role, now, skipped,
 * gate, steps [{step, does}]}], would_start}. Returns 0 (would start) or
 * ORCH_FAILED/ORCH_REFUSED. */
int orch_dry_run(struct orch *o, FILE *out, bool json);
/* A run, fresh or resumed (--resume). Returns an enum orch_rc. */
int orch_run(struct orch *o, bool resume);
/* `lbctl upgrade status PLAN`: prints the journal. Returns 0, or 1 if there is none. */
int orch_status(const char *plan_path, bool json, FILE *out);

#endif
