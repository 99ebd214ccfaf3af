/*
 * cmd_gate.c - lbctl gate status|acquire|release|watch: the gate's client.
 *
 * "watch" is the node side of kured's reboot: it runs on every node (a
 * DaemonSet, packaging/kured/), and
 *   1. when the reboot-required file exists, asks the gate for a lease;
 *   2. while it holds one (and the node has not rebooted yet), renews it
 *      and keeps kured's sentinel file, so kured (--reboot-sentinel=that
 *      file) reboots the node only under a lease;
 *   3. after the reboot (the node's bootID differs from the lease's), removes
 *      the sentinel and waits: the gate releases the lease itself once the
 *      node is Ready again, its backend up and etcd member healthy, for the
 *      soak time. Release on outcomes, not on actions.
 * The sentinel never exists without a lease: any doubt removes it.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/xmalloc.h"
#include "lbctl/client.h"
#include "lbctl/lbctl.h"

#define GATE_CALL_TIMEOUT_MS 15000
/* lbd restarts a gate process that died within a few seconds at most. */
#define GATE_RESTART_WAIT_MS 10000

/*
 * lbctl_call for the gate: while lbd answers 503 "gate restarting" (its gate
 * process is being restarted), asks again every 250 ms, for at most
 * GATE_RESTART_WAIT_MS, and says so once.
 */
static int gate_call(const struct lbctl_opts *o, const char *method, const char *path,
		     const json_t *body, struct lbctl_resp *r, char **err)
{
	int64_t until = mono_ms() + GATE_RESTART_WAIT_MS;
	bool said = false;

	for (;;) {
		int rc = lbctl_call(o, method, path, body, GATE_CALL_TIMEOUT_MS, r, err);
		if (rc < 0 || r->status != 503 ||
		    strcmp(lbctl_resp_error(r), "gate restarting") != 0 || mono_ms() >= until)
			return rc;
		if (!said)
			fprintf(stderr, "lbctl: the gate is restarting; asking again\n");
		said = true;
		lbctl_resp_free(r);
		usleep(250 * 1000);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"NAME\n"
		"    lbctl gate - ask lbd's quorum/reboot gate whether a node may go down\n\n"
		"SYNOPSIS\n"
		"    lbctl gate status\n"
		"    lbctl gate acquire --node N [--role master|worker] [--holder H]\n"
		"                       [--reason TEXT] [--ttl D]\n"
		"                       [--wait] [--timeout D]\n"
		"    lbctl gate release --node N [--ignore-not-found]\n"
		"    lbctl gate watch --node N [--reboot-required FILE]\n"
		"                     [--sentinel FILE] [--boot-id-file FILE] [--interval D]\n\n"
		"DESCRIPTION\n"
		"    status   the quorum arithmetic per input, the leases (stale ones marked),\n"
		"             and what a master and a worker request would get right now.\n"
		"    acquire  asks for a lease; refused: prints every reason and exits 3;\n"
		"             --wait asks again every 5s until --timeout (default 30m), exit 4.\n"
		"             The gate knows the node's role; --role may only make it\n"
		"             stricter: master for a node it counts a worker (a master\n"
		"             about to join) is decided by the master rules (an admin\n"
		"             only: the admin socket or token); worker for a master is\n"
		"             refused.\n"
		"    release  gives a lease back (a node token: only its own; admin: any).\n"
		"             --ignore-not-found: a node that holds no lease is not an\n"
		"             error (exit 0), so a script may release twice.\n"
		"    watch    the kured companion loop (see packaging/kured/). Defaults:\n"
		"             --reboot-required /var/run/reboot-required,\n"
		"             --sentinel /var/run/gated-reboot-required,\n"
		"             --boot-id-file /proc/sys/kernel/random/boot_id, --interval 10s.\n\n"
		"    A node talks to the gate listener: lbctl --url https://LBD:PORT\n"
		"    --token-file /etc/lbd/gate-token [--cacert CA] gate ...\n"
		"    On an lbd whose config has no gate: section, every verb says that the\n"
		"    gate is not enabled (exit 1).\n\n"
		"EXIT STATUS\n"
		"    0 ok, 1 error, 2 usage, 3 refused by the gate, 4 timed out\n");
}

static void print_reasons(json_t *ans)
{
	json_t *r;
	size_t i;

	fprintf(stderr, "refused:\n");
	json_array_foreach(json_object_get(ans, "reasons"), i, r)
	    fprintf(stderr, "  - %s\n", json_string_value(r));
}

static void print_lease(json_t *l, FILE *f)
{
	fprintf(f, "%-20s %-7s %-10s fence %-5lld renewed %s  ttl %s%s  %s\n",
		json_string_value(json_object_get(l, "node")),
		json_string_value(json_object_get(l, "role")),
		json_string_value(json_object_get(l, "slot")),
		(long long)json_integer_value(json_object_get(l, "fence")),
		json_string_value(json_object_get(l, "renewed")),
		json_string_value(json_object_get(l, "ttl")),
		json_is_true(json_object_get(l, "stale")) ? "  STALE (holder stopped renewing; "
							    "still blocks)"
							  : "",
		json_string_value(json_object_get(l, "reason")));
}

/* An lbd without a gate: section has no /v1/gate routes (an older one says
 * "no such route"). */
static bool gate_missing(const struct lbctl_resp *r)
{
	const char *e = lbctl_resp_error(r);
	return r->status == 404 &&
	       (!strncmp(e, "no such route", 13) || !strncmp(e, "the gate is not enabled", 23));
}

static int fail_resp(const struct lbctl_opts *o, const char *what, struct lbctl_resp *r)
{
	char prefix[64];

	snprintf(prefix, sizeof(prefix), "lbctl gate %s", what);
	if (gate_missing(r))
		lbctl_print_error(o, prefix,
				  "the gate is not enabled on this lbd (its config has no gate: "
				  "section; see docs/gate.md)",
				  r->status);
	else
		lbctl_print_error(o, prefix, lbctl_resp_error(r), r->status);
	return EXIT_ERROR;
}

/* A failed call (lbd not reached). */
static int fail_call(const struct lbctl_opts *o, const char *what, char *err)
{
	char prefix[64];

	snprintf(prefix, sizeof(prefix), "lbctl gate%s%s", *what ? " " : "", what);
	lbctl_print_error(o, prefix, err, 0);
	free(err);
	return EXIT_ERROR;
}

/* ---- status --------------------------------------------------------------------------- */

static void print_decision(json_t *d, const char *role)
{
	json_t *v;
	size_t i;

	printf("  %s %s: %s\n", role, json_string_value(json_object_get(d, "node")),
	       json_is_true(json_object_get(d, "granted")) ? "would be GRANTED"
							   : "would be REFUSED");
	json_array_foreach(json_object_get(d, "arithmetic"), i, v)
	    printf("      %s\n", json_string_value(v));
}

static int gate_status(int argc, char **argv, const struct lbctl_opts *o)
{
	static const struct option lo[] = {
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct lbctl_resp r = {0};
	char *err = NULL;
	json_t *v, *in;
	size_t i;
	const char *k;
	int ch;

	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (ch == 'h') {
			usage(stdout);
			return EXIT_OK;
		}
		return lbctl_bad_option("gate status", argv, lo);
	}
	if (optind < argc) {
		fprintf(stderr, "lbctl gate status: takes no arguments (see lbctl gate --help)\n");
		return EXIT_USAGE;
	}
	if (gate_call(o, "GET", "/v1/gate/status", NULL, &r, &err) < 0)
		return fail_call(o, "status", err);
	if (r.status != 200 || !r.json) {
		int rc = fail_resp(o, "status", &r);
		lbctl_resp_free(&r);
		return rc;
	}
	if (o->json) {
		lbctl_print_json(r.json, stdout);
		lbctl_resp_free(&r);
		return EXIT_OK;
	}
	printf("STORE  %s   concurrency: masters %lld, workers %lld\n",
	       json_string_value(json_object_get(r.json, "store")),
	       (long long)json_integer_value(
		   json_object_get(json_object_get(r.json, "concurrency"), "masters")),
	       (long long)json_integer_value(
		   json_object_get(json_object_get(r.json, "concurrency"), "workers")));
	printf("\nINPUTS\n");
	in = json_object_get(r.json, "inputs");
	json_object_foreach(in, k, v)
	{
		printf("  %-11s %s", k,
		       json_is_true(json_object_get(v, "known")) ? "known" : "UNKNOWN");
		if (json_object_get(v, "age_ms"))
			printf(" (%llds old)",
			       (long long)json_integer_value(json_object_get(v, "age_ms")) / 1000);
		if (json_object_get(v, "why"))
			printf(": %s", json_string_value(json_object_get(v, "why")));
		printf("\n");
	}
	printf("\nLEASES\n");
	if (json_array_size(json_object_get(r.json, "leases")) == 0)
		printf("  (none)\n");
	json_array_foreach(json_object_get(r.json, "leases"), i, v)
	{
		printf("  ");
		print_lease(v, stdout);
	}
	printf("\nA REQUEST NOW\n");
	json_array_foreach(json_object_get(r.json, "master"), i, v) print_decision(v, "master");
	print_decision(json_object_get(r.json, "worker"), "worker");
	if (json_object_get(r.json, "joining_master")) /* lbctl migrate asks for one */
		print_decision(json_object_get(r.json, "joining_master"), "master");
	lbctl_resp_free(&r);
	return EXIT_OK;
}

/* ---- acquire / release ---------------------------------------------------------------- */

/* One request. Returns EXIT_OK (granted or renewed), EXIT_REFUSED, EXIT_ERROR. */
struct ask {
	const char *node, *role, *reason, *ttl, *holder; /* role, ttl, holder: optional */
	bool release_on_outcomes;
};

static int acquire_once(const struct lbctl_opts *o, const struct ask *a, bool quiet, json_t **lease)
{
	struct lbctl_resp r = {0};
	char *err = NULL;
	json_t *body =
	    json_pack("{s:s,s:s}", "node", a->node, "reason", a->reason ? a->reason : "");
	int rc;

	if (!body) {
		fprintf(stderr, "lbctl gate: --node and --reason must be UTF-8 text\n");
		return EXIT_USAGE;
	}
	if (a->role)
		json_object_set_new(body, "role", json_string(a->role));
	if (a->ttl)
		json_object_set_new(body, "ttl", json_string(a->ttl));
	if (a->holder)
		json_object_set_new(body, "holder", json_string(a->holder));
	if (a->release_on_outcomes)
		json_object_set_new(body, "release_on_outcomes", json_true());
	if (gate_call(o, "POST", "/v1/gate/leases", body, &r, &err) < 0) {
		json_decref(body);
		return fail_call(o, quiet ? "" : "acquire", err);
	}
	json_decref(body);
	if ((r.status == 200 || r.status == 201) && r.json) {
		if (lease)
			*lease = json_incref(json_object_get(r.json, "lease"));
		rc = EXIT_OK;
	} else if (r.status == 409 && r.json && json_object_get(r.json, "reasons")) {
		if (!quiet)
			print_reasons(r.json);
		rc = EXIT_REFUSED;
	} else {
		rc = fail_resp(o, "acquire", &r);
		lbctl_resp_free(&r);
		return rc;
	}
	if (o->json && r.json && !quiet)
		lbctl_print_json(r.json, stdout);
	lbctl_resp_free(&r);
	return rc;
}

static int gate_acquire(int argc, char **argv, const struct lbctl_opts *o)
{
	static const struct option lo[] = {
	    {"node", required_argument, NULL, 'n'},
	    {"role", required_argument, NULL, 'r'},
	    {"reason", required_argument, NULL, 'R'},
	    {"ttl", required_argument, NULL, 'T'},
	    {"wait", no_argument, NULL, 'w'},
	    {"timeout", required_argument, NULL, 't'},
	    {"holder", required_argument, NULL, 'H'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct ask a = {.reason = "lbctl gate acquire"};
	bool wait = false;
	int64_t timeout = 30 * 60 * 1000, deadline;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'n':
			a.node = optarg;
			break;
		case 'r':
			if (strcmp(optarg, "master") != 0 && strcmp(optarg, "worker") != 0) {
				fprintf(
				    stderr,
				    "lbctl gate acquire: --role takes master or worker, not '%s'\n",
				    optarg);
				return EXIT_USAGE;
			}
			a.role = optarg;
			break;
		case 'R':
			a.reason = optarg;
			break;
		case 'T': {
			int64_t ms;
			if (duration_parse(optarg, &ms) < 0 || ms <= 0) {
				fprintf(
				    stderr,
				    "lbctl gate acquire: --ttl takes a duration (\"30m\", \"2h\"), "
				    "not '%s'\n",
				    optarg);
				return EXIT_USAGE;
			}
			a.ttl = optarg;
			break;
		}
		case 'H':
			a.holder = optarg;
			break;
		case 'w':
			wait = true;
			break;
		case 't':
			if (duration_parse(optarg, &timeout) < 0) {
				fprintf(stderr, "lbctl gate acquire: --timeout: not a duration\n");
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			return lbctl_bad_option("gate acquire", argv, lo);
		}
	}
	if (!a.node) {
		fprintf(stderr, "lbctl gate acquire: --node is required\n");
		return EXIT_USAGE;
	}
	deadline = mono_ms() + timeout;
	for (;;) {
		json_t *lease = NULL;
		rc = acquire_once(o, &a, wait && mono_ms() < deadline, &lease);
		if (rc == EXIT_OK) {
			if (!o->json)
				print_lease(lease, stdout);
			json_decref(lease);
			return EXIT_OK;
		}
		if (rc != EXIT_REFUSED || !wait)
			return rc;
		if (mono_ms() >= deadline) {
			acquire_once(o, &a, false, NULL);
			fprintf(stderr, "lbctl gate acquire: still refused after the timeout\n");
			return EXIT_TIMEOUT;
		}
		fprintf(stderr, "lbctl gate acquire: refused, asking again in 5s\n");
		sleep(5);
	}
}

static int release(const struct lbctl_opts *o, const char *node, bool missing_ok)
{
	struct lbctl_resp r = {0};
	char *err = NULL, *esc = lbctl_escape(node), path[600];
	int rc;

	snprintf(path, sizeof(path), "/v1/gate/leases/%s", esc);
	free(esc);
	if (gate_call(o, "DELETE", path, NULL, &r, &err) < 0)
		return fail_call(o, "release", err);
	if (r.status == 200 || (r.status == 404 && missing_ok && !gate_missing(&r)))
		rc = EXIT_OK;
	else
		rc = fail_resp(o, "release", &r);
	lbctl_resp_free(&r);
	return rc;
}

static int gate_release(int argc, char **argv, const struct lbctl_opts *o)
{
	static const struct option lo[] = {
	    {"node", required_argument, NULL, 'n'},
	    {"ignore-not-found", no_argument, NULL, 'i'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *node = NULL;
	bool missing_ok = false;
	int ch;

	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (ch == 'n') {
			node = optarg;
		} else if (ch == 'i') {
			missing_ok = true;
		} else if (ch == 'h') {
			usage(stdout);
			return EXIT_OK;
		} else {
			return lbctl_bad_option("gate release", argv, lo);
		}
	}
	if (!node) {
		fprintf(stderr, "lbctl gate release: --node is required\n");
		return EXIT_USAGE;
	}
	int rc = release(o, node, missing_ok);
	if (rc == EXIT_OK && o->json) {
		json_t *j = json_pack("{s:s,s:b}", "node", node, "released", 1);
		lbctl_print_json(j, stdout);
		json_decref(j);
	} else if (rc == EXIT_OK) {
		printf("released the lease of %s (or it held none)\n", node);
	}
	return rc;
}

/* ---- watch ---------------------------------------------------------------------------- */

static volatile sig_atomic_t stop_watch;

static void on_signal(int sig)
{
	stop_watch = 1;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	time_t t = time(NULL);
	struct tm tm;
	char ts[32];

	gmtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(stderr, "%s gate watch: ", ts);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static char *read_boot_id(const char *path)
{
	char buf[128] = "";
	FILE *f = fopen(path, "r");

	if (!f)
		return NULL;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, " \r\n")] = '\0';
	return buf[0] ? strdup(buf) : NULL;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static void sentinel(const char *path, bool on)
{
	if (on && !exists(path)) {
		FILE *f = fopen(path, "w");
		if (f) {
			fclose(f);
			say("created %s: kured may reboot this node now", path);
		} else {
			say("cannot create %s: %s", path, strerror(errno));
		}
	} else if (!on && exists(path)) {
		if (unlink(path) == 0)
			say("removed %s", path);
		else
			say("cannot remove %s: %s", path, strerror(errno));
	}
}

/* Our lease, if the gate has one (caller decrefs); -1 if the gate did not answer. */
static int my_lease(const struct lbctl_opts *o, const char *node, json_t **out)
{
	struct lbctl_resp r = {0};
	char *err = NULL;
	json_t *v;
	size_t i;

	*out = NULL;
	if (gate_call(o, "GET", "/v1/gate/leases", NULL, &r, &err) < 0 || r.status != 200 ||
	    !r.json) {
		say("cannot read the leases: %s", err ? err : lbctl_resp_error(&r));
		free(err);
		lbctl_resp_free(&r);
		return -1;
	}
	json_array_foreach(json_object_get(r.json, "leases"), i, v)
	{
		const char *n = json_string_value(json_object_get(v, "node"));
		if (n && strcmp(n, node) == 0)
			*out = json_incref(v);
	}
	lbctl_resp_free(&r);
	return 0;
}

static int gate_watch(int argc, char **argv, const struct lbctl_opts *o)
{
	static const struct option lo[] = {
	    {"node", required_argument, NULL, 'n'},
	    {"role", required_argument, NULL, 'r'},
	    {"reboot-required", required_argument, NULL, 'q'},
	    {"sentinel", required_argument, NULL, 's'},
	    {"boot-id-file", required_argument, NULL, 'b'},
	    {"interval", required_argument, NULL, 'i'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *node = getenv("NODE_NAME"), *role = NULL; /* the gate knows the role */
	const char *required = "/var/run/reboot-required", *sent = "/var/run/gated-reboot-required";
	const char *boot_file = "/proc/sys/kernel/random/boot_id";
	int64_t interval = 10000;
	char last_state[64] = "";
	int ch;

	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'n':
			node = optarg;
			break;
		case 'r':
			if (strcmp(optarg, "master") != 0 && strcmp(optarg, "worker") != 0) {
				fprintf(
				    stderr,
				    "lbctl gate watch: --role takes master or worker, not '%s'\n",
				    optarg);
				return EXIT_USAGE;
			}
			role = optarg;
			break;
		case 'q':
			required = optarg;
			break;
		case 's':
			sent = optarg;
			break;
		case 'b':
			boot_file = optarg;
			break;
		case 'i':
			if (duration_parse(optarg, &interval) < 0 || interval < 100) {
				fprintf(stderr,
					"lbctl gate watch: --interval: a duration >= 100ms\n");
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			return lbctl_bad_option("gate watch", argv, lo);
		}
	}
	if (!node) {
		fprintf(stderr, "lbctl gate watch: --node (or $NODE_NAME) is required\n");
		return EXIT_USAGE;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	char *me = xasprintf("node/%s", node);
	struct ask a = {.node = node,
			.role = role,
			.reason = "reboot-required (kured)",
			.holder = me,
			.release_on_outcomes = true};
	say("node %s: watching %s, sentinel %s", node, required, sent);
	while (!stop_watch) {
		json_t *lease = NULL;
		char *boot = read_boot_id(boot_file);
		const char *state;

		if (my_lease(o, node, &lease) < 0) {
			state = "gate unreachable";
			sentinel(sent, false); /* no proof of a lease: no reboot */
		} else if (lease && strcmp(json_string_value(json_object_get(lease, "holder"))
					       ? json_string_value(json_object_get(lease, "holder"))
					       : "",
					   me) != 0) {
			/* Another holder (lbctl upgrade, an admin) has this node down:
			 * kured must not reboot it on our account. */
			state = "held by another holder; not rebooting";
			sentinel(sent, false);
		} else if (lease) {
			const char *lb = json_string_value(json_object_get(lease, "boot_id"));
			if (lb && boot && strcmp(lb, boot) != 0) {
				state = "rebooted; waiting for the gate to see this node back";
				sentinel(sent, false);
			} else if (!exists(required)) {
				state = "reboot no longer required; releasing";
				sentinel(sent, false);
				release(o, node, true);
			} else {
				/* renew: asking again for what we hold is idempotent */
				bool ok = acquire_once(o, &a, true, NULL) == EXIT_OK;
				state = ok ? "holding the lease" : "renewal refused";
				sentinel(sent, ok);
			}
		} else {
			sentinel(sent, false);
			if (!exists(required)) {
				state = "idle";
			} else {
				int rc =
				    acquire_once(o, &a, strcmp(last_state, "refused") == 0, NULL);
				if (rc == EXIT_OK) {
					state = "granted";
					sentinel(sent, true);
				} else {
					state = rc == EXIT_REFUSED ? "refused" : "gate error";
				}
			}
		}
		if (strcmp(state, last_state) != 0) {
			say("%s", state);
			snprintf(last_state, sizeof(last_state), "%s", state);
		}
		json_decref(lease);
		free(boot);
		for (int64_t slept = 0; slept < interval && !stop_watch; slept += 100)
			usleep(100 * 1000);
	}
	say("stopping");
	free(me);
	return EXIT_OK;
}

int cmd_gate(int argc, char **argv, const struct lbctl_opts *o)
{
	const char *sub = argc > 1 ? argv[1] : NULL;

	if (!sub || strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 ||
	    strcmp(sub, "help") == 0) {
		usage(sub ? stdout : stderr);
		return sub ? EXIT_OK : EXIT_USAGE;
	}
	optind = 0;
	opterr = 0;
	if (strcmp(sub, "status") == 0)
		return gate_status(argc - 1, argv + 1, o);
	if (strcmp(sub, "acquire") == 0)
		return gate_acquire(argc - 1, argv + 1, o);
	if (strcmp(sub, "release") == 0)
		return gate_release(argc - 1, argv + 1, o);
	if (strcmp(sub, "watch") == 0)
		return gate_watch(argc - 1, argv + 1, o);
	static const char *const subs[] = {"status", "acquire", "release", "watch"};
	const char *guess = lbctl_suggest(sub, subs, sizeof(subs) / sizeof(subs[0]));
	fprintf(stderr,
		"lbctl gate: unknown command '%s'%s%s%s (status, acquire, release, watch)\n", sub,
		guess ? "; did you mean '" : "", guess ? guess : "", guess ? "'?" : "");
	return EXIT_USAGE;
}
