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
#include "common/xmalloc.h"
#include "config/config.h"
#include "gate/proc.h"
#include "lbd/admin.h"
#include "lbd/gatesup.h"
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
		   "Signals: SIGHUP reloads the config, SIGTERM/SIGINT stop gracefully.\n");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *s = arg;

	if (sig == SIGHUP) {
		log_info("SIGHUP: reloading %s", s->config_path);
		sdnotify_reloading(); /* systemctl shows "reloading" until READY=1 */
		int rc = server_reload(s);
		sdnotify_ready(rc == 0 ? "serving; config reloaded"
				       : "serving; reload refused, running config kept");
	} else {
		log_info("%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
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
		config_errors_free(&errs);
	}
	return cfg;
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
	char *err = NULL;
	if (server_start(&srv, base, path, cfg, from_config, &err) < 0)
		fatal("cannot start: %s", err);
	struct admin *admin = admin_new(base, &srv, &err);
	if (!admin)
		fatal("cannot start: %s", err);
	struct gatesup *gate = gatesup_start(base, &srv, admin, from_config, &err);
	if (!gate && err)
		fatal("cannot start: %s", err);
	server_on_reload(&srv, reload_gate, gate);

	struct event *sigs[3];
	int signos[3] = {SIGTERM, SIGINT, SIGHUP};
	for (int i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(base, signos[i], on_signal, &srv);
		event_add(sigs[i], NULL);
	}
	log_info("lbd started: %zu frontends, %zu pools", srv.nfes, srv.npools);
	/* Listeners are open and the persisted state is applied: Type=notify may go on. */
	sdnotifyf("READY=1\nSTATUS=serving %zu frontends, %zu pools", srv.nfes, srv.npools);

	event_base_dispatch(base);

	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	gatesup_stop(&gate);
	admin_free(admin);
	server_free(&srv);
	event_base_free(base);
	log_info("lbd stopped");
	return 0;
}
