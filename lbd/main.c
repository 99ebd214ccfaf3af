/*
 * lbd - the apiserver VIP: a TCP load balancer with /readyz checks.
 *
 *   lbd [-c FILE]      run in the foreground, logs to stderr
 *   lbd -t -c FILE     check FILE and exit 0 (ok) or 1 (every error printed)
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/sdnotify.h"
#include "common/version.h"
#include "common/xmalloc.h"
#include "config/config.h"
#include "gate/proc.h"
#include "lbd/admin.h"
#include "lbd/gatesup.h"
#include "lbd/handover.h"
#include "lbd/relay.h"
#include "lbd/server.h"

#define DEFAULT_CONFIG "/etc/lbd/lbd.yaml"

static void usage(FILE *f)
{
	fprintf(f, "usage: lbd [-c FILE] [-t] [-F]\n"
		   "  -c FILE   config file (default " DEFAULT_CONFIG ")\n"
		   "  -t        check the config and exit: 0 if valid, 1 with every error\n"
		   "  -F        if the runtime state file (state_dir/pools.json) cannot be\n"
		   "            read, rename it aside and start from the config file alone\n"
		   "            (its runtime edits are not applied); without -F lbd refuses\n"
		   "            to start. The same for the gate's state_dir/gate-leases.json\n"
		   "            (fences stay above every fence granted before); without -F\n"
		   "            the gate refuses every lease until the file is mended\n"
		   "  -h        this help\n"
		   "  --version print the version and exit\n"
		   "Signals: SIGHUP reloads the config, SIGTERM/SIGINT stop gracefully,\n"
		   "SIGUSR2 starts the binary on disk to take over without refusing a\n"
		   "connection (as lbctl restart does).\n");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *s = arg;

	if (sig == SIGUSR2) {
		log_info("SIGUSR2: starting the lbd binary on disk to take over");
		handover_begin();
	} else if (sig == SIGHUP && handover_done()) {
		log_info("SIGHUP: ignored; this lbd has handed over and only drains");
	} else if (sig == SIGHUP) {
		log_info("SIGHUP: reloading %s", s->config_path);
		sdnotify_reloading(); /* systemctl shows "reloading" until READY=1 */
		int rc = server_reload(s);
		sdnotify_ready(rc == 0 ? "serving; config reloaded"
				       : "serving; reload refused, running config kept");
	} else {
		log_info("%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		if (!handover_done()) /* else systemd follows the new lbd */
			sdnotify_stopping("stopping: draining connections");
		server_shutdown(s);
	}
}

/* server_on_reload: the gate follows a reload (NULL gate: it logs a section added). */
static void reload_gate(void *arg, const struct config *cfg)
{
	gatesup_reload(arg, cfg);
}

static struct config *load_or_report(const char *path)
{
	struct config_errors errs = {0};
	struct config *cfg = config_load(path, &errs);

	if (!cfg) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		fprintf(stderr, "%s: %zu error(s)\n", path, errs.n);
		/* A restart's new lbd: the old one says why it keeps serving. */
		char *why = xasprintf("%zu error(s) in the config, the first: %s", errs.n,
				      errs.n ? errs.msgs[0] : "?");
		handover_fail(why);
		free(why);
		config_errors_free(&errs);
	}
	return cfg;
}

/* Start-up failed: say why to the old lbd of a restart, if any, and exit. */
static void cannot_start(const char *err)
{
	handover_fail(err);
	fatal("cannot start: %s", err);
}

struct lbd {
	struct server *srv;
	struct admin *admin;
	struct gatesup *gate;
	bool inherited;
};

/* Serving from now on: at once, or when the old lbd of a restart has
 * stopped accepting (handover.h; the gate follows when the old one's is
 * gone). */
static void go(void *arg)
{
	struct lbd *l = arg;

	relay_release(l->srv->relay);
	admin_resume(l->admin);
	log_info("lbd %s serving: %zu frontends, %zu pools", lbd_version, l->srv->nfes,
		 l->srv->npools);
	/* After a handover the old lbd told systemd (MAINPID=, READY=1). */
	if (!l->inherited)
		sdnotifyf("READY=1\nSTATUS=serving %zu frontends, %zu pools", l->srv->nfes,
			  l->srv->npools);
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	bool test_only = false, from_config = false;
	int ch;

	/* jansson allocates like everything else: out of memory aborts (xmalloc's
	 * rule), so a json_pack that fails means bad input, never a full heap. */
	json_set_alloc_funcs(xmalloc, free);
	/* lbd starts its gate process as this binary (lbd/gatesup.c). */
	if (argc == 2 && strcmp(argv[1], GATE_PROCESS_ARG) == 0)
		return gate_process_main(GATE_CHAN_FD,
					 fcntl(GATE_LISTEN_FD, F_GETFD) >= 0 ? GATE_LISTEN_FD : -1);
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("lbd %s\n", lbd_version);
		return 0;
	}
	/* Hidden: the config table's keys and types (tests/integration/test_docs.py). */
	if (argc == 2 && strcmp(argv[1], "--dump-config-keys") == 0) {
		config_dump_keys(stdout);
		return 0;
	}
	handover_init(argc, argv);

	while ((ch = getopt(argc, argv, "c:tFh")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test_only = true;
			break;
		case 'F':
			from_config = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	struct config *cfg = load_or_report(path);
	if (!cfg)
		return 1;
	if (test_only) {
		printf("%s: ok\n", path);
		config_free(cfg);
		return 0;
	}
	log_setup(cfg->log.format, cfg->log.level, "lbd");
	signal(SIGPIPE, SIG_IGN);
	/* Before any event loop exists: the main thread wakes workers with
	 * event_active() across threads. */
	if (evthread_use_pthreads() < 0)
		fatal("libevent has no pthreads support");

	struct event_base *base = event_base_new();
	if (!base)
		fatal("cannot create the event loop");
	struct server srv;
	struct lbd l = {.srv = &srv, .inherited = handover_inherited()};
	char *err = NULL;
	/* A restart's new lbd opens everything but accepts only on "go". */
	if (server_start(&srv, base, path, cfg, from_config, l.inherited, &err) < 0)
		cannot_start(err);
	if (!(l.admin = admin_new(base, &srv, &err)))
		cannot_start(err);
	if (l.inherited)
		admin_pause(l.admin);
	l.gate = gatesup_start(base, &srv, l.admin, from_config, l.inherited, &err);
	if (!l.gate && err)
		cannot_start(err);
	server_on_reload(&srv, reload_gate, l.gate);

	struct event *sigs[4];
	int signos[4] = {SIGTERM, SIGINT, SIGHUP, SIGUSR2};
	for (int i = 0; i < 4; i++) {
		sigs[i] = evsignal_new(base, signos[i], on_signal, &srv);
		event_add(sigs[i], NULL);
	}
	log_info("lbd %s started: %zu frontends, %zu pools%s", lbd_version, srv.nfes, srv.npools,
		 l.inherited ? "; taking over from the old lbd" : "");
	handover_start(base, &srv, l.admin, l.gate, go, &l);

	event_base_dispatch(base);

	for (int i = 0; i < 4; i++)
		event_free(sigs[i]);
	handover_stop();
	gatesup_stop(&l.gate);
	admin_free(l.admin);
	server_free(&srv);
	event_base_free(base);
	log_info("lbd stopped");
	return 0;
}
