/*
 * cmd_upgrade.c - lbctl upgrade PLAN | upgrade status PLAN | migrate PLAN:
 * the front end of upgrade/orchestrator.h.
 *
 * It loads the plan (every error as file:line:col), points the admin client
 * at the lbd the plan names, and renders the orchestrator's events three
 * ways: a live view on a terminal (finished steps as lines, one status line
 * below them redrawn every second with each node's step, its elapsed time
 * and what it waits for), plain timestamped lines otherwise, or JSON lines
 * with -o json. SIGINT/SIGTERM/SIGHUP stop the run at the next safe point, with
 * the journal saying where; a second one kills at once (the journal still
 * holds). Neither reaches a node command: it runs in its own session.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/duration.h"
#include "common/xmalloc.h"
#include "lbctl/client.h"
#include "lbctl/lbctl.h"
#include "upgrade/orchestrator.h"
#include "upgrade/plan.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	if (stop_flag) {
		signal(sig, SIG_DFL);
		raise(sig);
	}
	stop_flag = 1;
}

static void usage(FILE *f, bool migrate)
{
	if (migrate)
		fprintf(
		    f,
		    "NAME\n"
		    "    lbctl migrate - swap nodes behind the VIP without losing quorum\n\n"
		    "SYNOPSIS\n"
		    "    lbctl migrate PLAN [--dry-run] [--resume [--accept-plan-change]]\n"
		    "    lbctl upgrade status PLAN\n\n"
		    "DESCRIPTION\n"
		    "    PLAN is a YAML file of kind: migration (config/examples/migrate-*.yaml).\n"
		    "    replace: [{old, new}] brings the new node in (join_command, or it has\n"
		    "    joined already), adds its backend to lbd and waits for /readyz and its\n"
		    "    etcd member; then, under a gate lease, drains the old backend and node,\n"
		    "    removes its etcd member once etcd keeps quorum without it, deletes the\n"
		    "    node and removes its backend. add: [NODE...] grows the control plane\n"
		    "    (one master to three), checking etcd membership between nodes.\n"
		    "    A new master joins under a master lease of its own (taken before the\n"
		    "    join, given back once it counts), so nothing else takes a master down\n"
		    "    while quorum changes; a new worker takes none.\n\n"
		    "    lbctl edits lbd's pool itself, but the gate's quorum.etcd.endpoints and\n"
		    "    members are lbd's config file: after each added master, and after a\n"
		    "    replaced master has left (its lease still held), the gate-members step\n"
		    "    compares what the gate counts (GET /v1/gate/status) with etcd's member\n"
		    "    list. When they differ it prints the exact YAML lines to add and remove\n"
		    "    and stops (exit 3); apply them, lbctl reload, then --resume.\n\n"
		    "    --dry-run, --resume, the journal, the history log and the exit status\n"
		    "    are those of lbctl upgrade (see lbctl upgrade --help, "
		    "docs/upgrade.md);\n"
		    "    exit 3 also means the gate's config must be edited first.\n");
	else
		fprintf(
		    f,
		    "NAME\n"
		    "    lbctl upgrade - roll a Kubernetes upgrade through the gate, node by "
		    "node\n\n"
		    "SYNOPSIS\n"
		    "    lbctl [-o json] upgrade PLAN [--dry-run] [--resume "
		    "[--accept-plan-change]]\n"
		    "    lbctl [-o json] upgrade status PLAN\n\n"
		    "DESCRIPTION\n"
		    "    PLAN is a YAML file of kind: upgrade (config/examples/plan-k3s.yaml,\n"
		    "    plan-kubeadm.yaml; docs/upgrade.md). After a preflight that lists every\n"
		    "    reason not to start (a node NotReady or cordoned, version skew, the gate\n"
		    "    unreachable or unhealthy, a backend down, the snapshot hook failing),\n"
		    "    masters are upgraded one at a time, then workers. Per node: a gate\n"
		    "    lease -> (master) drain its backend in lbd -> cordon and drain -> the\n"
		    "    plan's upgrade_command -> wait for Ready, the target kubelet version,\n"
		    "    (master) /readyz up in lbd and its etcd member healthy, held for the\n"
		    "    soak time -> enable the backend -> uncordon -> release the lease.\n"
		    "    Nodes already at the target are skipped.\n\n"
		    "    Every step is journaled in PLAN.journal before and after it runs, and\n"
		    "    logged with a timestamp in PLAN.log (the upgrade history). On any\n"
		    "    failure the run stops with the node cordoned and its lease held, and\n"
		    "    says what happened and the next manual step.\n\n"
		    "    A node command runs detached, in its own session, recorded in the\n"
		    "    journal (pid, start time, exit marker file) before it starts: Ctrl-C,\n"
		    "    a dropped ssh session (SIGHUP) or kill -9 of lbctl never reach it.\n"
		    "    Ctrl-C stops lbctl at the next safe point and names a command still\n"
		    "    running; --resume waits for it and reads its exit status, and never\n"
		    "    starts it a second time.\n\n"
		    "OPTIONS\n"
		    "    --dry-run   print the preflight verdict, every step it would take and\n"
		    "                the gate's answer for each node now; change nothing\n"
		    "    --resume    continue a stopped or crashed run from its journal: done\n"
		    "                steps are not repeated, an interrupted one is checked and\n"
		    "                finished; a command still running is waited for. The plan\n"
		    "                may have been edited (the fix of a failed run): a new\n"
		    "                command, drain option, timeout or comment is taken and\n"
		    "                its diff logged\n"
		    "    --accept-plan-change\n"
		    "                with --resume: take an edit that changes the plan's\n"
		    "                meaning (nodes, their order or roles, version, pool);\n"
		    "                without it such an edit is refused, with its diff\n\n"
		    "    status PLAN prints the journal: each step, its state, times and notes.\n\n"
		    "OUTPUT\n"
		    "    --dry-run with -o json prints one JSON object: plan, kind, version,\n"
		    "    pool, preflight {ok, refuse, hook}, nodes [{name, role, now, skipped,\n"
		    "    gate, steps [{step, does}]}], would_start (exit 1 when it would not).\n"
		    "    On a terminal a live view; otherwise one line per event; with -o json\n"
		    "    one JSON object per event (event, node, step, msg, step_ms, run_ms).\n\n"
		    "EXIT STATUS\n"
		    "    0 done, 1 error or refused preflight, 2 usage, 3 the gate kept\n"
		    "    refusing a lease, 4 a wait timed out (drain, a node never came back)\n");
}

/* ---- rendering ---------------------------------------------------------------------------- */

#define MAXLIVE 32

struct live {
	char node[64], step[32], msg[256];
	int64_t since_ms; /* run_ms when the step started */
	bool on;
};

struct view {
	bool json, tty;
	pthread_mutex_t mu;
	struct live nodes[MAXLIVE];
	int64_t run_ms;
	bool status_shown;
	const char *verb;
};

static const char *const ev_names[] = {"step_start", "step_done", "step_skip", "step_fail",
				       "wait",	     "info",	  "output",    "run_end"};

static void clear_status(struct view *v)
{
	if (v->tty && v->status_shown) {
		fputs("\r\033[K", stdout);
		v->status_shown = false;
	}
}

static void draw_status(struct view *v)
{
	struct winsize ws;
	int width = 100;
	char line[1024];
	size_t n = 0;

	if (!v->tty)
		return;
	if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
		width = ws.ws_col - 1;
	n += (size_t)snprintf(line, sizeof(line), "[%lld:%02lld]", (long long)(v->run_ms / 60000),
			      (long long)(v->run_ms / 1000 % 60));
	for (int i = 0; i < MAXLIVE && n < sizeof(line); i++) {
		struct live *l = &v->nodes[i];
		if (!l->on)
			continue;
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %s %s %llds: %s |", l->node,
				      l->step, (long long)((v->run_ms - l->since_ms) / 1000),
				      l->msg);
	}
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	if (n > 0 && line[n - 1] == '|')
		line[--n] = 0;
	if ((int)n > width)
		line[width] = 0;
	fprintf(stdout, "\r\033[K\033[1m%s\033[0m", line);
	fflush(stdout);
	v->status_shown = true;
}

static struct live *live_for(struct view *v, const char *node)
{
	struct live *free_slot = NULL;
	for (int i = 0; i < MAXLIVE; i++) {
		if (v->nodes[i].on && !strcmp(v->nodes[i].node, node))
			return &v->nodes[i];
		if (!v->nodes[i].on && !free_slot)
			free_slot = &v->nodes[i];
	}
	return free_slot;
}

static void on_event(void *arg, const struct orch_event *ev)
{
	struct view *v = arg;
	char ts[16];

	pthread_mutex_lock(&v->mu);
	v->run_ms = ev->run_ms;
	if (v->json) {
		json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "event", ev_names[ev->type],
				      "node", ev->node, "step", ev->step, "msg", ev->msg, "step_ms",
				      (json_int_t)ev->step_ms, "run_ms", (json_int_t)ev->run_ms);
		json_dumpf(o, stdout, JSON_COMPACT);
		json_decref(o);
		fputc('\n', stdout);
		fflush(stdout);
		pthread_mutex_unlock(&v->mu);
		return;
	}
	snprintf(ts, sizeof(ts), "%7.1fs", (double)ev->run_ms / 1000.0);
	struct live *l = live_for(v, ev->node);
	if (v->tty && (ev->type == ORCH_EV_WAIT || ev->type == ORCH_EV_OUTPUT) && l) {
		if (!l->on || strcmp(l->step, ev->step)) {
			snprintf(l->node, sizeof(l->node), "%s", ev->node);
			snprintf(l->step, sizeof(l->step), "%s", ev->step);
			l->since_ms = ev->run_ms - ev->step_ms;
			l->on = true;
		}
		snprintf(l->msg, sizeof(l->msg), "%s%s", ev->type == ORCH_EV_OUTPUT ? "| " : "",
			 ev->msg);
		draw_status(v);
		pthread_mutex_unlock(&v->mu);
		return;
	}
	clear_status(v);
	FILE *f = (ev->type == ORCH_EV_STEP_FAIL || ev->type == ORCH_EV_RUN_END) &&
			  strcmp(ev->step, "done")
		      ? stderr
		      : stdout;
	switch (ev->type) {
	case ORCH_EV_STEP_START:
		fprintf(f, "%s %s %s: %s\n", ts, ev->node, ev->step, ev->msg);
		if (v->tty && l) {
			snprintf(l->node, sizeof(l->node), "%s", ev->node);
			snprintf(l->step, sizeof(l->step), "%s", ev->step);
			snprintf(l->msg, sizeof(l->msg), "started");
			l->since_ms = ev->run_ms;
			l->on = strcmp(ev->node, "-") != 0;
		}
		break;
	case ORCH_EV_STEP_DONE:
		fprintf(f, "%s %s %s: done: %s\n", ts, ev->node, ev->step, ev->msg);
		if (l && l->on && !strcmp(l->step, ev->step))
			l->on = false;
		break;
	case ORCH_EV_STEP_SKIP:
		fprintf(f, "%s %s: skipped: %s\n", ts, ev->node, ev->msg);
		break;
	case ORCH_EV_STEP_FAIL:
		fflush(stdout);
		fprintf(f, "%s %s %s: FAILED: %s\n", ts, ev->node, ev->step, ev->msg);
		if (l)
			l->on = false;
		break;
	case ORCH_EV_WAIT:
		fprintf(f, "%s %s %s: %s\n", ts, ev->node, ev->step, ev->msg);
		break;
	case ORCH_EV_OUTPUT:
		fprintf(f, "%s %s %s: | %s\n", ts, ev->node, ev->step, ev->msg);
		break;
	case ORCH_EV_INFO:
		fprintf(f, "%s %s %s: %s\n", ts, ev->node, ev->step, ev->msg);
		break;
	case ORCH_EV_RUN_END:
		fflush(stdout);
		if (!strcmp(ev->step, "done"))
			fprintf(f, "%s lbctl %s: done: %s\n", ts, v->verb, ev->msg);
		else
			fprintf(f, "lbctl %s: stopped: %s\n", v->verb, ev->msg);
		break;
	}
	fflush(f);
	if (v->tty)
		draw_status(v);
	pthread_mutex_unlock(&v->mu);
}

/* Set by the main thread once the run is over, read by the ticker: an
 * atomic (volatile is no synchronisation). Release/acquire: what the main
 * thread did before asking the ticker to stop is visible to it once it
 * sees the flag; the view itself is under v->mu either way. */
static atomic_bool ticker_stop;

static void *ticker(void *arg)
{
	struct view *v = arg;
	while (!atomic_load_explicit(&ticker_stop, memory_order_acquire)) {
		usleep(1000 * 1000);
		pthread_mutex_lock(&v->mu);
		v->run_ms += 1000;
		bool any = false;
		for (int i = 0; i < MAXLIVE; i++)
			any |= v->nodes[i].on;
		if (any)
			draw_status(v);
		pthread_mutex_unlock(&v->mu);
	}
	return NULL;
}

/* ---- lbd through lbctl's admin client ----------------------------------------------------- */

static int call_lbd(void *arg, const char *method, const char *path, json_t *body, long timeout_ms,
		    long *status, json_t **out, char **err)
{
	const struct lbctl_opts *o = arg;
	struct lbctl_resp r = {0};
	if (lbctl_call(o, method, path, body, timeout_ms, &r, err) < 0)
		return -1;
	*status = r.status;
	*out = r.json ? json_incref(r.json) : NULL;
	lbctl_resp_free(&r);
	return 0;
}

/* ---- the verbs ------------------------------------------------------------------------------ */

static int load(const char *path, struct plan *p)
{
	struct plan_errors e = {0};
	if (plan_load(path, p, &e) == 0)
		return 0;
	for (size_t i = 0; i < e.n; i++)
		fprintf(stderr, "%s\n", e.msgs[i]);
	fprintf(stderr, "%zu error%s in the plan; nothing was done\n", e.n, e.n > 1 ? "s" : "");
	plan_errors_free(&e);
	return -1;
}

static int run_plan(int argc, char **argv, const struct lbctl_opts *go, bool migrate)
{
	static const struct option lo[] = {
	    {"dry-run", no_argument, NULL, 'n'},
	    {"resume", no_argument, NULL, 'r'},
	    {"accept-plan-change", no_argument, NULL, 'A'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *verb = migrate ? "migrate" : "upgrade";
	bool dry = false, resume = false, accept = false;
	int ch, rc;

	opterr = 0; /* lbctl_bad_option says it, with a suggestion */
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'n':
			dry = true;
			break;
		case 'r':
			resume = true;
			break;
		case 'A':
			accept = true;
			break;
		case 'h':
			usage(stdout, migrate);
			return EXIT_OK;
		default:
			return lbctl_bad_option(verb, argv, lo);
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "lbctl %s: one PLAN file (see lbctl %s --help)\n", verb, verb);
		return EXIT_USAGE;
	}
	if (dry && resume) {
		fprintf(stderr, "lbctl %s: --dry-run and --resume do not go together\n", verb);
		return EXIT_USAGE;
	}
	if (accept && !resume) {
		fprintf(stderr, "lbctl %s: --accept-plan-change goes with --resume\n", verb);
		return EXIT_USAGE;
	}
	struct plan p;
	if (load(argv[optind], &p) < 0)
		return EXIT_ERROR;
	if ((p.kind == PLAN_MIGRATION) != migrate) {
		fprintf(stderr, "lbctl %s: %s is a plan of kind %s: use lbctl %s\n", verb, p.path,
			migrate ? "upgrade" : "migration", migrate ? "upgrade" : "migrate");
		plan_free(&p);
		return EXIT_USAGE;
	}
	struct lbctl_opts lo2 = *go;
	if (p.lbd_url) {
		lo2.url = p.lbd_url;
		lo2.token_file = p.lbd_token_file;
	} else {
		lo2.url = NULL;
		lo2.socket = p.lbd_socket;
	}
	struct view v = {.json = go->json, .tty = !go->json && isatty(1), .verb = verb};
	pthread_mutex_init(&v.mu, NULL);
	struct orch o = {.plan = &p,
			 .call = call_lbd,
			 .call_arg = &lo2,
			 .on_event = on_event,
			 .ev_arg = &v,
			 .stop = &stop_flag,
			 .accept_plan_change = accept};
	if (dry) {
		rc = orch_dry_run(&o, stdout, go->json);
	} else {
		pthread_t t;
		bool tick = false;
		struct sigaction sa = {.sa_handler = on_signal};
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL); /* a dropped ssh session: stop, safely */
		signal(SIGPIPE, SIG_IGN);
		if (v.tty && pthread_create(&t, NULL, ticker, &v) == 0)
			tick = true;
		rc = orch_run(&o, resume);
		if (tick) {
			atomic_store_explicit(&ticker_stop, true, memory_order_release);
			pthread_join(t, NULL);
			pthread_mutex_lock(&v.mu);
			clear_status(&v);
			pthread_mutex_unlock(&v.mu);
		}
	}
	pthread_mutex_destroy(&v.mu);
	plan_free(&p);
	return rc;
}

static int status_plan(int argc, char **argv, const struct lbctl_opts *go)
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout, false);
		return EXIT_OK;
	}
	if (argc != 2) {
		fprintf(stderr, "lbctl upgrade status: one PLAN file\n");
		return EXIT_USAGE;
	}
	return orch_status(argv[1], go->json, stdout) == ORCH_OK ? EXIT_OK : EXIT_ERROR;
}

int cmd_upgrade(int argc, char **argv, const struct lbctl_opts *o)
{
	if (argc >= 2 && !strcmp(argv[1], "status"))
		return status_plan(argc - 1, argv + 1, o);
	return run_plan(argc, argv, o, false);
}

int cmd_migrate(int argc, char **argv, const struct lbctl_opts *o)
{
	return run_plan(argc, argv, o, true);
}
