/*
 * cmd_pool.c - lbctl pools, pool, backend, status, reload: the admin API of
 * lbd from the command line. Tables for people, -o json for scripts; every
 * verb answers --help; `backend drain --wait` shows progress and tells a
 * drained backend (0) from a timeout (4).
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/duration.h"
#include "common/xmalloc.h"
#include "lbctl/client.h"
#include "lbctl/lbctl.h"

#define WAIT_POLL_MS 250

/* ---- helpers -------------------------------------------------------------------------- */

static int usage_err(const char *verb, const char *msg)
{
	fprintf(stderr, "lbctl %s: %s (see lbctl %s --help)\n", verb, msg, verb);
	return EXIT_USAGE;
}

/* An argument verb does not take; "did you mean" one of known (NULL-ended). */
static int bad_arg(const char *verb, const char *arg, const char *const *known)
{
	size_t n = 0;
	char word[64];

	while (known[n])
		n++;
	snprintf(word, sizeof(word), "%s", arg);
	const char *guess = lbctl_suggest(word, known, n);
	if (guess)
		fprintf(stderr,
			"lbctl %s: unknown argument '%s'; did you mean %s? (see lbctl %s --help)\n",
			verb, arg, guess, verb);
	else
		fprintf(stderr, "lbctl %s: unknown argument '%s' (see lbctl %s --help)\n", verb,
			arg, verb);
	return EXIT_USAGE;
}

/* Parses only --help (and -h) from argv; returns 1 if help was asked for,
 * -1 on an unknown option, 0 otherwise. Options of a verb are handled by the
 * verb itself. */
static int want_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return 1;
	return 0;
}

/* Calls lbd; on a transport error or an error status prints it and returns
 * EXIT_ERROR; else 0 with *r (caller frees). */
static int call(const struct lbctl_opts *o, const char *method, const char *path,
		const json_t *body, long timeout_ms, struct lbctl_resp *r)
{
	char *err = NULL;

	if (lbctl_call(o, method, path, body, timeout_ms, r, &err) < 0) {
		lbctl_print_error(o, "lbctl", err, 0);
		free(err);
		return EXIT_ERROR;
	}
	if (r->status >= 400) {
		if (o->json && r->json) {
			lbctl_print_json(r->json, stdout);
			fprintf(stderr, "lbctl: %s (HTTP %ld)\n", lbctl_resp_error(r), r->status);
		} else {
			lbctl_print_error(o, "lbctl", lbctl_resp_error(r), r->status);
		}
		json_t *errs = r->json ? json_object_get(r->json, "errors") : NULL;
		for (size_t i = 0; json_is_array(errs) && i < json_array_size(errs); i++)
			fprintf(stderr, "  %s\n", json_string_value(json_array_get(errs, i)));
		lbctl_resp_free(r);
		return EXIT_ERROR;
	}
	return 0;
}

static void print_json(const json_t *j)
{
	lbctl_print_json(j, stdout);
}

/* "1 connection", "2 connections" */
static const char *conns(long long n)
{
	return n == 1 ? "connection" : "connections";
}

static const char *jstr(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static long long jint(const json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static void fmt_secs(double s, char *buf, size_t len)
{
	duration_format((int64_t)(s * 1000) / 1000 * 1000, buf, len);
}

/* What an operator wants to read about a backend, in one cell. */
static void backend_why(const json_t *b, char *buf, size_t len)
{
	const json_t *d = json_object_get(b, "drain");
	const json_t *lf = json_object_get(b, "last_failure");
	const char *health = jstr(b, "health");

	if (json_is_object(d)) {
		char left[32];
		fmt_secs(json_real_value(json_object_get(d, "seconds_left")), left, sizeof(left));
		snprintf(buf, len, "draining: %lld left, %s%s%s", jint(d, "connections_left"),
			 json_is_true(json_object_get(d, "closing")) ? "deadline passed, closing"
								     : left,
			 json_is_true(json_object_get(d, "closing")) ? "" : " to deadline",
			 json_is_true(json_object_get(d, "remove_when_drained")) ? "; then removed"
										 : "");
	} else if (!strcmp(health, "down") && json_is_object(lf)) {
		/* close_on_down at work: its connections are being closed. */
		snprintf(buf, len, "%s%s", jstr(lf, "detail"),
			 json_is_true(json_object_get(b, "down_closing")) && jint(b, "active") > 0
			     ? "; closing its connections"
			     : "");
	} else if (!strcmp(health, "unknown")) {
		snprintf(buf, len, "no check result yet");
	} else {
		snprintf(buf, len, "-");
	}
}

static void table_header(void)
{
	printf("%-10s %-14s %-22s %-8s %-7s %3s %6s %8s %5s %8s %6s  %s\n", "POOL", "BACKEND",
	       "ADDRESS", "STATE", "HEALTH", "W", "ACTIVE", "TOTAL", "FAILS", "CHECK", "SINCE",
	       "WHY");
}

static void table_pool(const json_t *p)
{
	const json_t *arr = json_object_get(p, "backends");
	size_t i;
	json_t *b;

	json_array_foreach(arr, i, b)
	{
		char why[300], lat[16] = "-", since[32];
		const json_t *l = json_object_get(b, "check_latency_ms");
		if (json_is_number(l))
			snprintf(lat, sizeof(lat), "%.1fms", json_number_value(l));
		fmt_secs((double)jint(b, "since_seconds"), since, sizeof(since));
		backend_why(b, why, sizeof(why));
		printf("%-10s %-14s %-22s %-8s %-7s %3lld %6lld %8lld %5lld %8s %6s  %s\n",
		       jstr(p, "name"), jstr(b, "name"), jstr(b, "address"), jstr(b, "state"),
		       jstr(b, "health"), jint(b, "weight"), jint(b, "active"), jint(b, "total"),
		       jint(b, "connect_failures"), lat, since, why);
	}
	if (json_is_true(json_object_get(p, "fail_safe")))
		printf("%-10s ! fail-safe: no backend passes its checks; routing to those that "
		       "still accept TCP\n",
		       jstr(p, "name"));
}

/* ---- pools, pool show ----------------------------------------------------------------- */

int cmd_pools(int argc, char **argv, const struct lbctl_opts *o)
{
	struct lbctl_resp r;
	int rc;

	if (want_help(argc, argv)) {
		printf("NAME\n    lbctl pools - every pool and backend of lbd at a glance\n\n"
		       "SYNOPSIS\n    lbctl [-o json] pools\n\n"
		       "DESCRIPTION\n"
		       "    One line per backend: admin state (enabled, drain, disabled), health\n"
		       "    by its checks (up, down, unknown), weight, connections now and ever,\n"
		       "    failed connects, last check latency, time since the health changed,\n"
		       "    and WHY: the last failed check of a down backend (\"readyz 503:\n"
		       "    [-]etcd failed\") or the progress of a drain.\n\n"
		       "EXIT STATUS\n    0 ok, 1 error, 2 usage\n");
		return EXIT_OK;
	}
	if (argc > 1)
		return usage_err("pools", "takes no arguments");
	if ((rc = call(o, "GET", "/v1/pools", NULL, 0, &r)))
		return rc;
	if (o->json) {
		print_json(r.json);
	} else {
		size_t i;
		json_t *p;
		table_header();
		json_array_foreach(json_object_get(r.json, "pools"), i, p) table_pool(p);
	}
	lbctl_resp_free(&r);
	return EXIT_OK;
}

int cmd_pool(int argc, char **argv, const struct lbctl_opts *o)
{
	struct lbctl_resp r;
	int rc;

	if (want_help(argc, argv)) {
		printf(
		    "NAME\n    lbctl pool - one pool of lbd\n\n"
		    "SYNOPSIS\n    lbctl [-o json] pool show POOL\n\n"
		    "DESCRIPTION\n"
		    "    The pool's settings (balance, drain_timeout, drain_close_rate) and its\n"
		    "    backends, as in lbctl pools.\n\n"
		    "EXIT STATUS\n    0 ok, 1 error (no such pool), 2 usage\n");
		return EXIT_OK;
	}
	if (argc != 3 || strcmp(argv[1], "show") != 0)
		return usage_err("pool", "usage: lbctl pool show POOL");
	char *pe = lbctl_escape(argv[2]);
	char *path = xasprintf("/v1/pools/%s", pe);
	free(pe);
	rc = call(o, "GET", path, NULL, 0, &r);
	free(path);
	if (rc)
		return rc;
	if (o->json) {
		print_json(r.json);
	} else {
		char dt[32];
		duration_format(jint(r.json, "drain_timeout_ms"), dt, sizeof(dt));
		printf("pool %s: balance %s, drain_timeout %s, drain_close_rate %lld/s, %lld of "
		       "%zu backends up\n\n",
		       jstr(r.json, "name"), jstr(r.json, "balance"), dt,
		       jint(r.json, "drain_close_rate"), jint(r.json, "up"),
		       json_array_size(json_object_get(r.json, "backends")));
		table_header();
		table_pool(r.json);
	}
	lbctl_resp_free(&r);
	return EXIT_OK;
}

/* ---- backend -------------------------------------------------------------------------- */

static void backend_help(void)
{
	printf("NAME\n    lbctl backend - add, remove, drain, enable, disable, weigh a backend\n\n"
	       "SYNOPSIS\n"
	       "    lbctl backend add POOL NAME ADDR [--weight N] [--state STATE]\n"
	       "    lbctl backend remove POOL NAME [--drain [--wait] [--timeout D]]\n"
	       "    lbctl backend drain POOL NAME [--wait] [--timeout D]\n"
	       "    lbctl backend enable POOL NAME\n"
	       "    lbctl backend disable POOL NAME\n"
	       "    lbctl backend weight POOL NAME N\n\n"
	       "DESCRIPTION\n"
	       "    Runtime edits: lbd validates each one, writes it to its state file\n"
	       "    (fsync'd) and only then applies it; it survives a reload and a restart\n"
	       "    (see lbctl reload --reset and docs/admin-api.md).\n\n"
	       "    add      ADDR is IP:PORT, [IPv6]:PORT or HOST:PORT (lbd resolves the\n"
	       "             name now and keeps the address it gets). The backend takes\n"
	       "             traffic once its health checks pass. --weight 0..256\n"
	       "             (default 1).\n"
	       "    remove   at once (its connections are closed at the pool's\n"
	       "             drain_close_rate), or with --drain: drain first, remove when\n"
	       "             drained or at the pool's drain_timeout.\n"
	       "    drain    no new connections; established ones (WATCHes) go on until\n"
	       "             none is left or drain_timeout passes, then the rest are closed\n"
	       "             at drain_close_rate per second and the backend is disabled.\n"
	       "    enable   takes new connections again (cancels a drain).\n"
	       "    disable  no new connections; established ones are not cut.\n"
	       "    weight   0..256; 0 takes no new connections.\n\n"
	       "OPTIONS\n"
	       "    --wait         drain, remove --drain: wait until drained (or removed),\n"
	       "                   showing connections and time left\n"
	       "    --timeout D    with --wait: give up after D (\"90s\", \"5m\"); exit 4;\n"
	       "                   0 = never (the default)\n\n"
	       "EXIT STATUS\n"
	       "    0 done (drained), 1 error (refused edit, lbd unreachable), 2 usage,\n"
	       "    4 --wait timed out (the drain goes on in lbd)\n");
}

static char *backend_path(const char *pool, const char *name)
{
	char *pe = lbctl_escape(pool), *ne = name ? lbctl_escape(name) : NULL;
	char *path = ne ? xasprintf("/v1/pools/%s/backends/%s", pe, ne)
			: xasprintf("/v1/pools/%s/backends", pe);
	free(pe);
	free(ne);
	return path;
}

static void print_backend(const struct lbctl_opts *o, const json_t *b, const char *what,
			  const char *pool)
{
	if (o->json) {
		print_json(b);
		return;
	}
	if (json_is_true(json_object_get(b, "removed"))) {
		printf("%s/%s: removed\n", pool, jstr(b, "name"));
		return;
	}
	char why[300];
	backend_why(b, why, sizeof(why));
	printf("%s/%s: %s; %s, weight %lld, %s, %lld %s%s%s\n", pool, jstr(b, "name"), what,
	       jstr(b, "state"), jint(b, "weight"), jstr(b, "health"), jint(b, "active"),
	       conns(jint(b, "active")), strcmp(why, "-") ? "; " : "", strcmp(why, "-") ? why : "");
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls the backend until it is drained (disabled) or gone. */
static int wait_drained(const struct lbctl_opts *o, const char *pool, const char *name,
			int64_t timeout_ms)
{
	char *path = backend_path(pool, name);
	int64_t start = now_ms(), last_print = 0;
	long long last_left = -1;
	bool tty = isatty(STDOUT_FILENO) && !o->json;
	int rc = EXIT_ERROR;

	for (;;) {
		struct lbctl_resp r;
		char *err = NULL;
		if (lbctl_call(o, "GET", path, NULL, 5000, &r, &err) < 0) {
			fprintf(stderr, "%slbctl: %s\n", tty ? "\n" : "", err);
			free(err);
			break;
		}
		if (r.status == 404) {
			if (!o->json)
				printf("%s%s/%s: drained and removed\n", tty ? "\n" : "", pool,
				       name);
			else
				printf("{\"pool\": \"%s\", \"name\": \"%s\", \"removed\": true}\n",
				       pool, name);
			lbctl_resp_free(&r);
			rc = EXIT_OK;
			break;
		}
		if (r.status >= 400) {
			fprintf(stderr, "%slbctl: %s (HTTP %ld)\n", tty ? "\n" : "",
				lbctl_resp_error(&r), r.status);
			lbctl_resp_free(&r);
			break;
		}
		const char *st = jstr(r.json, "state");
		if (!strcmp(st, "disabled")) {
			long long forced = jint(r.json, "last_drain_closed");
			if (o->json)
				print_json(r.json);
			else if (forced)
				printf("%s%s/%s: drained at the deadline: %lld %s closed; "
				       "now disabled\n",
				       tty ? "\n" : "", pool, name, forced, conns(forced));
			else
				printf("%s%s/%s: drained: no connections left; now disabled\n",
				       tty ? "\n" : "", pool, name);
			lbctl_resp_free(&r);
			rc = EXIT_OK;
			break;
		}
		if (strcmp(st, "drain") != 0) {
			fprintf(stderr, "%slbctl: %s/%s is %s now: the drain was cancelled\n",
				tty ? "\n" : "", pool, name, st);
			lbctl_resp_free(&r);
			break;
		}
		const json_t *d = json_object_get(r.json, "drain");
		long long left = jint(d, "connections_left");
		double secs = json_real_value(json_object_get(d, "seconds_left"));
		bool closing = json_is_true(json_object_get(d, "closing"));
		int64_t now = now_ms();
		if (tty || left != last_left || now - last_print >= 1000) {
			char dl[32];
			fmt_secs(secs, dl, sizeof(dl));
			FILE *out = o->json ? stderr : stdout;
			fprintf(out, "%s%s/%s: draining, %lld %s left, %s%s", tty ? "\r" : "", pool,
				name, left, conns(left),
				closing ? "deadline passed, closing them" : dl,
				closing ? "" : " until the deadline");
			fprintf(out, tty ? "    " : "\n");
			fflush(out);
			last_left = left;
			last_print = now;
		}
		lbctl_resp_free(&r);
		if (timeout_ms > 0 && now - start >= timeout_ms) {
			fprintf(stderr,
				"%slbctl: %s/%s: not drained after %llds (%lld %s "
				"left); the drain goes on in lbd\n",
				tty ? "\n" : "", pool, name, (long long)(timeout_ms / 1000), left,
				conns(left));
			rc = EXIT_TIMEOUT;
			break;
		}
		usleep(WAIT_POLL_MS * 1000);
	}
	free(path);
	return rc;
}

struct bopts {
	int weight;
	bool has_weight;
	const char *state;
	bool drain, wait, has_timeout;
	int64_t timeout_ms; /* 0: never give up */
};

static int parse_bopts(int argc, char **argv, struct bopts *b)
{
	static const struct option lo[] = {
	    {"weight", required_argument, NULL, 'w'},  {"state", required_argument, NULL, 's'},
	    {"drain", no_argument, NULL, 'd'},	       {"wait", no_argument, NULL, 'W'},
	    {"timeout", required_argument, NULL, 'T'}, {NULL, 0, NULL, 0},
	};
	int ch;
	char *end;

	memset(b, 0, sizeof(*b));
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
		switch (ch) {
		case 'w':
			b->weight = (int)strtol(optarg, &end, 10);
			if (*end || !*optarg || b->weight < 0 || b->weight > 256)
				return usage_err("backend", "--weight takes 0..256");
			b->has_weight = true;
			break;
		case 's':
			if (strcmp(optarg, "enabled") && strcmp(optarg, "drain") &&
			    strcmp(optarg, "disabled"))
				return usage_err("backend",
						 "--state takes enabled, drain or disabled");
			b->state = optarg;
			break;
		case 'd':
			b->drain = true;
			break;
		case 'W':
			b->wait = true;
			break;
		case 'T':
			/* a bare 0 is "never", as for node drain and kubectl */
			if (!strcmp(optarg, "0"))
				b->timeout_ms = 0;
			else if (duration_parse(optarg, &b->timeout_ms) < 0 || b->timeout_ms < 0)
				return usage_err("backend",
						 "--timeout takes a duration (90s, 5m; 0 = never)");
			b->has_timeout = true;
			break;
		default:
			return lbctl_bad_option("backend", argv, lo);
		}
	}
	return 0;
}

/* Positional words after the options; "backend SUB POOL NAME ...". */
static int backend_do(const char *sub, int npos, char **pos, const struct bopts *bo,
		      const struct lbctl_opts *o)
{
	struct lbctl_resp r;
	json_t *body = NULL;
	const char *method;
	char *path;
	int rc;

	if (!strcmp(sub, "add")) {
		if (npos != 3)
			return usage_err("backend",
					 "usage: backend add POOL NAME ADDR [--weight N]");
		body = json_pack("{s:s,s:s}", "name", pos[1], "address", pos[2]);
		if (bo->has_weight)
			json_object_set_new(body, "weight", json_integer(bo->weight));
		if (bo->state)
			json_object_set_new(body, "state", json_string(bo->state));
		method = "POST";
		path = backend_path(pos[0], NULL);
	} else if (!strcmp(sub, "remove")) {
		if (npos != 2)
			return usage_err("backend", "usage: backend remove POOL NAME [--drain]");
		if (bo->wait && !bo->drain)
			return usage_err("backend", "--wait goes with --drain");
		method = "DELETE";
		char *bp = backend_path(pos[0], pos[1]);
		path = xasprintf("%s%s", bp, bo->drain ? "?drain=1" : "");
		free(bp);
	} else if (!strcmp(sub, "drain") || !strcmp(sub, "enable") || !strcmp(sub, "disable")) {
		if (npos != 2)
			return usage_err("backend",
					 "usage: backend drain|enable|disable POOL NAME");
		if (bo->wait && strcmp(sub, "drain") != 0)
			return usage_err("backend", "--wait goes with drain");
		body = json_pack("{s:s}", "state",
				 !strcmp(sub, "enable")	   ? "enabled"
				 : !strcmp(sub, "disable") ? "disabled"
							   : "drain");
		method = "PATCH";
		path = backend_path(pos[0], pos[1]);
	} else if (!strcmp(sub, "weight")) {
		char *end;
		long w = npos == 3 ? strtol(pos[2], &end, 10) : -1;
		if (npos != 3 || *end || !*pos[2] || w < 0 || w > 256)
			return usage_err("backend", "usage: backend weight POOL NAME N (0..256)");
		body = json_pack("{s:i}", "weight", (int)w);
		method = "PATCH";
		path = backend_path(pos[0], pos[1]);
	} else {
		static const char *const subs[] = {"add",    "remove",	"drain",
						   "enable", "disable", "weight"};
		const char *guess = lbctl_suggest(sub, subs, sizeof(subs) / sizeof(subs[0]));
		fprintf(stderr,
			"lbctl backend: unknown subcommand '%s'%s%s%s (see lbctl backend --help)\n",
			sub, guess ? "; did you mean '" : "", guess ? guess : "",
			guess ? "'?" : "");
		return EXIT_USAGE;
	}
	if (bo->has_timeout && !bo->wait) {
		json_decref(body);
		free(path);
		return usage_err("backend", "--timeout goes with --wait");
	}
	rc = call(o, method, path, body, 0, &r);
	json_decref(body);
	free(path);
	if (rc)
		return rc;
	bool pending = r.status == 202;
	if (!bo->wait || (!pending && strcmp(sub, "drain") != 0)) {
		print_backend(o, r.json,
			      !strcmp(sub, "add") ? "added"
			      : !strcmp(sub, "remove")
				  ? (pending ? "removal after the drain" : "removed")
				  : "done",
			      pos[0]);
		lbctl_resp_free(&r);
		return EXIT_OK;
	}
	if (!o->json)
		print_backend(o, r.json, pending ? "removal after the drain" : "draining", pos[0]);
	lbctl_resp_free(&r);
	return wait_drained(o, pos[0], pos[1], bo->timeout_ms);
}

int cmd_backend(int argc, char **argv, const struct lbctl_opts *o)
{
	struct bopts bo;
	int rc;

	if (want_help(argc, argv) || argc < 2) {
		backend_help();
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	/* "backend SUB args... [options]": options may come anywhere after SUB. */
	const char *sub = argv[1];
	char **rest = xcalloc((size_t)argc + 1, sizeof(*rest));
	int nrest = 0;
	rest[nrest++] = argv[0];
	for (int i = 2; i < argc; i++)
		rest[nrest++] = argv[i];
	/* Options are split from positional words, so they may come anywhere. */
	char **opts = xcalloc((size_t)argc + 1, sizeof(*opts)),
	     **pos = xcalloc((size_t)argc + 1, sizeof(*pos));
	int nopts = 0, npos = 0;
	opts[nopts++] = argv[0];
	for (int i = 1; i < nrest; i++) {
		const char *a = rest[i];
		if (a[0] == '-' && a[1]) {
			opts[nopts++] = rest[i];
			bool takes = !strcmp(a, "--weight") || !strcmp(a, "--state") ||
				     !strcmp(a, "--timeout");
			if (takes && i + 1 < nrest)
				opts[nopts++] = rest[++i];
		} else {
			pos[npos++] = rest[i];
		}
	}
	rc = parse_bopts(nopts, opts, &bo);
	if (!rc)
		rc = backend_do(sub, npos, pos, &bo, o);
	free(rest);
	free(opts);
	free(pos);
	return rc;
}

/* ---- status, reload, restart ---------------------------------------------------------- */

int cmd_status(int argc, char **argv, const struct lbctl_opts *o)
{
	struct lbctl_resp r;
	bool check = false, backends = false;
	char *err = NULL;

	if (want_help(argc, argv)) {
		printf("NAME\n    lbctl status - is lbd running, and serving?\n\n"
		       "SYNOPSIS\n    lbctl [-o json] status [--check | --check-backends]\n\n"
		       "DESCRIPTION\n"
		       "    Uptime, reloads, runtime edits, frontends and pools with how many\n"
		       "    backends are up. \"serving\" is true when lbd can take the VIP's\n"
		       "    clients: it runs, is not shutting down, accepts (not a self-upgrade's\n"
		       "    new process still waiting) and every frontend has its listeners.\n"
		       "    Backend health does not count: with every backend failing its\n"
		       "    checks lbd still relays in fail-safe, and a peer sees the same\n"
		       "    backends. \"ok\" is stricter: serving, and every pool with enabled\n"
		       "    backends has at least one up.\n\n"
		       "    --check            print nothing; exit 0 if serving, 1 otherwise,\n"
		       "                       within 2s. keepalived's track_script: the node\n"
		       "                       gives up the VIP only when IT cannot serve.\n"
		       "    --check-backends   the same, on \"ok\": exit 1 also when a pool has\n"
		       "                       no backend up. For a vrrp_script with a weight\n"
		       "                       (a lower priority), never to FAULT a node on it.\n\n"
		       "EXIT STATUS\n    0 serving (ok), 1 not, or unreachable, 2 usage\n");
		return EXIT_OK;
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--check") && !backends)
			check = true;
		else if (!strcmp(argv[i], "--check-backends") && !check)
			check = backends = true;
		else
			return bad_arg("status", argv[i],
				       (const char *const[]){"--check", "--help", NULL});
	}
	if (check) {
		if (lbctl_call(o, "GET", "/v1/status", NULL, 2000, &r, &err) < 0) {
			free(err);
			return EXIT_ERROR;
		}
		/* An lbd older than "serving" answers on "ok". */
		json_t *v = json_object_get(r.json, "serving");
		if (backends || !v)
			v = json_object_get(r.json, "ok");
		bool ok = r.status == 200 && json_is_true(v);
		lbctl_resp_free(&r);
		return ok ? EXIT_OK : EXIT_ERROR;
	}
	int rc = call(o, "GET", "/v1/status", NULL, 0, &r);
	if (rc)
		return rc;
	if (o->json) {
		print_json(r.json);
	} else {
		char up[32];
		size_t i;
		json_t *x;
		duration_format(jint(r.json, "uptime_seconds") * 1000, up, sizeof(up));
		printf("lbd %s (pid %lld), version %s, started %s (up %s), config %s\n",
		       jstr(r.json, "state"), jint(r.json, "pid"), jstr(r.json, "version"),
		       jstr(r.json, "started"), up, jstr(r.json, "config"));
		json_t *prev = json_object_get(r.json, "previous");
		if (json_is_object(prev))
			printf("previous lbd (pid %lld) still %s: %lld connection(s)\n",
			       jint(prev, "pid"), jstr(prev, "state"), jint(prev, "connections"));
		json_t *rs = json_object_get(r.json, "restart");
		if (json_is_object(rs))
			printf("restart under way: new lbd pid %lld %s\n", jint(rs, "pid"),
			       jstr(rs, "state"));
		if (json_is_string(json_object_get(r.json, "not_serving")))
			printf("NOT serving: %s\n", jstr(r.json, "not_serving"));
		printf("ok: %s; reloads %lld (%lld refused); runtime edits %lld in %s\n",
		       json_is_true(json_object_get(r.json, "ok")) ? "yes" : "NO",
		       jint(r.json, "reloads"), jint(r.json, "reload_failures"),
		       jint(r.json, "runtime_edits"), jstr(r.json, "state_file"));
		if (json_is_string(json_object_get(r.json, "last_reload_error")))
			printf("last reload: %s\n", jstr(r.json, "last_reload_error"));
		json_array_foreach(json_object_get(r.json, "frontends"), i, x)
		    printf("frontend %-10s pool %-10s active %lld, total %lld\n", jstr(x, "name"),
			   jstr(x, "pool"), jint(x, "active"), jint(x, "total"));
		json_array_foreach(json_object_get(r.json, "pools"), i, x)
		    printf("pool %-14s %lld of %lld enabled backends up%s\n", jstr(x, "name"),
			   jint(x, "up"), jint(x, "enabled"),
			   json_is_true(json_object_get(x, "fail_safe")) ? " (FAIL-SAFE)" : "");
	}
	bool ok = json_is_true(json_object_get(r.json, "ok"));
	lbctl_resp_free(&r);
	return ok ? EXIT_OK : EXIT_ERROR;
}

int cmd_restart(int argc, char **argv, const struct lbctl_opts *o)
{
	struct lbctl_resp r;

	if (want_help(argc, argv)) {
		printf(
		    "NAME\n    lbctl restart - replace lbd by the binary on disk, refusing no "
		    "connection\n\n"
		    "SYNOPSIS\n    lbctl [-o json] restart\n\n"
		    "DESCRIPTION\n"
		    "    Like kill -USR2 on lbd, but waits for the result. lbd starts the lbd\n"
		    "    binary now on disk with its own arguments; the new process inherits\n"
		    "    every listening socket (nothing waiting in an accept queue is lost),\n"
		    "    loads the config and the state (runtime edits), and says ready once\n"
		    "    its first health checks are in. Only then does the old one stop\n"
		    "    accepting and hand the gate over; it relays its open connections\n"
		    "    (WATCHes) until they end, or until shutdown_grace and then closes\n"
		    "    them at drain_close_rate, and exits. lbctl status shows it draining.\n\n"
		    "    If the new binary cannot start (a config that does not load, a crash,\n"
		    "    not ready within 60s), the running lbd keeps serving as before and\n"
		    "    this command prints why.\n\n"
		    "EXIT STATUS\n    0 the new lbd took over, 1 it did not (the old one serves "
		    "on)\n"
		    "    or lbd is unreachable, 2 usage\n");
		return EXIT_OK;
	}
	if (argc > 1)
		return usage_err("restart", "unknown argument");
	int rc = call(o, "POST", "/v1/restart", NULL, 90000, &r);
	if (rc)
		return rc;
	if (o->json)
		print_json(r.json);
	else
		printf("lbd restarted: pid %lld took over from pid %lld (version %s); the old one "
		       "drains its connections\n",
		       jint(r.json, "new_pid"), jint(r.json, "old_pid"), jstr(r.json, "version"));
	lbctl_resp_free(&r);
	return EXIT_OK;
}

int cmd_reload(int argc, char **argv, const struct lbctl_opts *o)
{
	struct lbctl_resp r;
	bool reset = false;

	if (want_help(argc, argv)) {
		printf("NAME\n    lbctl reload - re-read lbd's config file\n\n"
		       "SYNOPSIS\n    lbctl [-o json] reload [--reset]\n\n"
		       "DESCRIPTION\n"
		       "    Like SIGHUP, but answers: a config that does not load or apply is\n"
		       "    refused with every error, and nothing changes. Runtime edits are an\n"
		       "    overlay on the file and survive the reload; an edit the file now\n"
		       "    agrees with is dropped from the overlay.\n\n"
		       "    --reset   drop every runtime edit: lbd runs exactly the file\n"
		       "              (draining backends go back to the file's state).\n\n"
		       "EXIT STATUS\n    0 reloaded, 1 refused or unreachable, 2 usage\n");
		return EXIT_OK;
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--reset"))
			reset = true;
		else
			return bad_arg("reload", argv[i],
				       (const char *const[]){"--reset", "--help", NULL});
	}
	json_t *body = json_pack("{s:b}", "reset", reset);
	int rc = call(o, "POST", "/v1/reload", body, 0, &r);
	json_decref(body);
	if (rc)
		return rc;
	if (o->json)
		print_json(r.json);
	else
		printf("reloaded %s%s; %lld runtime edits in force\n", jstr(r.json, "config"),
		       reset ? " (runtime edits dropped)" : "", jint(r.json, "runtime_edits"));
	lbctl_resp_free(&r);
	return EXIT_OK;
}
