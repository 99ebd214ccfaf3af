/*
 * lbctl - the command line of lbd: pool edits, drain, nodes, the gate, and
 * the upgrade orchestrator. Global options come before the verb:
 *
 *   lbctl [-o json] [--socket PATH | --url URL --token-file F [--cacert F]]
 *         [--kubeconfig F] [--context C] VERB ...
 *
 * Each verb lives in its own cmd_*.c and is listed in verbs[] below.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/text.h"
#include "common/version.h"
#include "lbctl/client.h"
#include "lbctl/lbctl.h"

struct verb {
	const char *name;
	int (*fn)(int argc, char **argv, const struct lbctl_opts *o);
	const char *summary;
};

static int cmd_version(int argc, char **argv, const struct lbctl_opts *o)
{
	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("NAME\n    lbctl version - which lbctl this is\n\n"
		       "SYNOPSIS\n    lbctl [-o json] version\n    lbctl --version\n\n"
		       "DESCRIPTION\n"
		       "    lbctl's version and the commit it was built from. lbd's own: lbd\n"
		       "    --version, or lbctl status (the running one).\n\n"
		       "EXIT STATUS\n    0 ok, 2 usage\n");
		return EXIT_OK;
	}
	if (argc > 1) {
		fprintf(stderr, "lbctl version: takes no arguments (see lbctl version --help)\n");
		return EXIT_USAGE;
	}
	if (o->json) {
		json_t *j = json_pack("{s:s}", "version", lbd_version);
		lbctl_print_json(j, stdout);
		json_decref(j);
	} else {
		printf("lbctl %s\n", lbd_version);
	}
	return EXIT_OK;
}

/* ---- did you mean --------------------------------------------------------------------- */

/* Edit distance (insert, delete, substitute, swap two neighbours), capped at 9. */
static int distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int d[40][40];

	if (la > 39 || lb > 39)
		return 9;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
			int best = sub < del ? sub : del;
			best = best < ins ? best : ins;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	return d[la][lb];
}

const char *lbctl_suggest(const char *word, const char *const *cands, size_t n)
{
	const char *best = NULL;
	int bestd = 3;

	for (size_t i = 0; i < n; i++) {
		if (!cands[i])
			continue;
		int d = distance(word, cands[i]);
		/* a prefix of a longer word ("upg") is a fair guess too */
		if (strlen(word) >= 3 && strncmp(cands[i], word, strlen(word)) == 0)
			d = d < 1 ? d : 1;
		if (d < bestd && (size_t)d * 3 <= strlen(cands[i]) + 1)
			best = cands[i], bestd = d;
	}
	return best;
}

int lbctl_bad_option(const char *verb, char **argv, const struct option *lo)
{
	const char *arg = argv[optind - 1] ? argv[optind - 1] : "";
	char who[64], help[80], word[64];
	const char *names[64];
	size_t n = 0;

	snprintf(who, sizeof(who), "lbctl%s%s", *verb ? " " : "", verb);
	snprintf(help, sizeof(help), "see %s --help", who);
	if (optopt) {
		for (const struct option *x = lo; x->name; x++)
			if (x->val == optopt) {
				fprintf(stderr, "%s: --%s %s (%s)\n", who, x->name,
					x->has_arg == required_argument ? "needs a value"
									: "takes no value",
					help);
				return EXIT_USAGE;
			}
		fprintf(stderr, "%s: unknown option '-%c' (%s)\n", who, optopt, help);
		return EXIT_USAGE;
	}
	snprintf(word, sizeof(word), "%s", arg + strspn(arg, "-"));
	word[strcspn(word, "=")] = '\0';
	for (const struct option *x = lo; x->name && n < 64; x++)
		names[n++] = x->name;
	const char *s = lbctl_suggest(word, names, n);
	if (s)
		fprintf(stderr, "%s: unknown option '%s'; did you mean --%s? (%s)\n", who, arg, s,
			help);
	else
		fprintf(stderr, "%s: unknown option '%s' (%s)\n", who, arg, help);
	return EXIT_USAGE;
}

/*
 * stderr while a verb runs under -o json: everything is written through,
 * and the first line is kept, so a usage error's JSON says what was wrong
 * (getopt's own words included), not only that something was.
 */
struct err_tee {
	FILE *to;
	char first[256];
	size_t n;
	bool done; /* the first line is complete (or full) */
};

static ssize_t tee_write(void *cookie, const char *buf, size_t len)
{
	struct err_tee *t = cookie;
	fwrite(buf, 1, len, t->to);
	for (size_t i = 0; i < len && !t->done; i++) {
		if (buf[i] == '\n' || t->n + 1 >= sizeof(t->first))
			t->done = t->n > 0 || t->n + 1 >= sizeof(t->first);
		else
			t->first[t->n++] = buf[i];
	}
	return (ssize_t)len;
}

/* Runs verb v; under -o json, a usage error is also one JSON object on stdout. */
static int run_verb(const struct verb *v, int argc, char **argv, struct lbctl_opts *o)
{
	struct err_tee t = {.to = stderr};
	FILE *tee =
	    o->json ? fopencookie(&t, "w", (cookie_io_functions_t){.write = tee_write}) : NULL;
	if (tee) {
		setvbuf(tee, NULL, _IONBF, 0);
		stderr = tee;
	}
	int rc = v->fn(argc, argv, o);
	if (tee) {
		stderr = t.to;
		fclose(tee);
	}
	if (rc == EXIT_USAGE && o->json) {
		/* the words went to stderr; a script gets them and the outcome too */
		char *msg = text_clean(t.first, t.n, sizeof(t.first));
		json_t *j = json_pack("{s:s,s:s,s:i}", "error", *msg ? msg : "usage error", "verb",
				      v->name, "exit", EXIT_USAGE);
		lbctl_print_json(j, stdout);
		json_decref(j);
		free(msg);
	}
	return rc;
}

static const struct verb verbs[] = {
    {"gate", cmd_gate, "gate status|acquire|release|watch: the reboot gate"},
    {"node", cmd_node, "list, cordon, uncordon, drain Kubernetes nodes"},
    {"pools", cmd_pools, "every pool and backend at a glance (why a backend is down)"},
    {"pool", cmd_pool, "pool show POOL"},
    {"backend", cmd_backend, "backend add|remove|drain|enable|disable|weight ..."},
    {"status", cmd_status, "is lbd running and serving (--check for keepalived)"},
    {"reload", cmd_reload, "re-read the config file (--reset drops runtime edits)"},
    {"restart", cmd_restart, "replace lbd by the binary on disk without refusing a connection"},
    {"version", cmd_version, "lbctl's version (lbd's: lbctl status)"},
    {"upgrade", cmd_upgrade, "upgrade PLAN [--dry-run] [--resume] | upgrade status PLAN"},
    {"migrate", cmd_migrate, "migrate PLAN [--dry-run] [--resume]: swap nodes behind the VIP"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
	fprintf(f, "NAME\n"
		   "    lbctl - control lbd, the Kubernetes apiserver VIP and reboot gate\n\n"
		   "SYNOPSIS\n"
		   "    lbctl [GLOBAL OPTIONS] VERB [ARGS...]\n"
		   "    lbctl VERB --help\n\n"
		   "VERBS\n");
	for (const struct verb *v = verbs; v->name; v++)
		fprintf(f, "    %-10s %s\n", v->name, v->summary);
	fprintf(f, "\nGLOBAL OPTIONS (before or after the verb)\n"
		   "    -o, --output json   machine-readable output; an error is then also\n"
		   "                        {\"error\": ...} on stdout (the text stays on stderr)\n"
		   "    --socket PATH       lbd admin socket (default /run/lbd/admin.sock,\n"
		   "                        or $LBD_SOCKET)\n"
		   "    --url URL           lbd admin TCP/TLS listener instead of the socket\n"
		   "    --token-file FILE   bearer token for --url\n"
		   "    --cacert FILE       CA bundle to verify an https --url (default\n"
		   "                        $LBD_CACERT, else the system's CAs)\n"
		   "    --kubeconfig FILE   kubeconfig for node verbs (default $KUBECONFIG,\n"
		   "                        ~/.kube/config)\n"
		   "    --context NAME      kubeconfig context\n"
		   "    --version           lbctl's version (as lbctl version)\n\n"
		   "EXIT STATUS\n"
		   "    0 ok, 1 error, 2 usage, 3 refused by the gate, 4 timed out\n");
}

/* Applies one global option; returns -1 on a bad value. */
static int set_global(struct lbctl_opts *o, int ch, const char *val)
{
	switch (ch) {
	case 'o':
		if (strcmp(val, "json") == 0) {
			o->json = true;
		} else if (strcmp(val, "table") != 0) {
			fprintf(stderr, "lbctl: -o takes json or table\n");
			return -1;
		}
		break;
	case 's':
		o->socket = val;
		break;
	case 'u':
		o->url = val;
		break;
	case 't':
		o->token_file = val;
		break;
	case 'k':
		o->kubeconfig = val;
		break;
	case 'C':
		o->context = val;
		break;
	case 'A':
		o->cacert = val;
		break;
	}
	return 0;
}

/*
 * Global options may also follow the verb, as kubectl allows
 * (`lbctl pools --socket S`): they are taken out of the verb's words here,
 * up to a "--". Returns the new word count, or -1 on a usage error.
 */
static int take_globals(struct lbctl_opts *o, int argc, char **argv)
{
	static const struct {
		const char *name;
		int ch;
	} g[] = {{"--output", 'o'},  {"-o", 'o'},	    {"--socket", 's'},
		 {"--url", 'u'},     {"--token-file", 't'}, {"--kubeconfig", 'k'},
		 {"--context", 'C'}, {"--cacert", 'A'}};
	int out = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		int ch = 0;
		if (strcmp(a, "--") == 0) {
			while (i < argc)
				argv[out++] = argv[i++];
			break;
		}
		for (size_t k = 0; k < sizeof(g) / sizeof(g[0]) && !ch; k++) {
			size_t n = strlen(g[k].name);
			if (strncmp(a, g[k].name, n) != 0)
				continue;
			if (a[n] == '=') {
				ch = g[k].ch, val = a + n + 1;
			} else if (a[n] == '\0') {
				if (i + 1 >= argc) {
					fprintf(stderr, "lbctl: %s needs a value\n", a);
					return -1;
				}
				ch = g[k].ch, val = argv[++i];
			} else if (g[k].name[1] != '-' && a[n] != '\0') {
				ch = g[k].ch, val = a + n; /* -ojson */
			}
		}
		if (!ch) {
			argv[out++] = argv[i];
			continue;
		}
		if (set_global(o, ch, val) < 0)
			return -1;
	}
	argv[out] = NULL;
	return out;
}

/* The --help text of "VERB [SUB] --help", run in a child with no lbd to
 * reach (a verb whose --help would still send a request gets nowhere). */
static char *help_of(const struct verb *v, const char *sub, const struct lbctl_opts *o)
{
	struct lbctl_opts none = *o;
	char *args[] = {(char *)v->name, (char *)(sub ? sub : "--help"), "--help", NULL};
	char *buf = NULL;
	size_t len = 0, got;
	int fd[2];
	pid_t pid;

	if (pipe(fd) < 0 || (pid = fork()) < 0)
		return NULL;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(fd[1], STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		dup2(null, STDIN_FILENO);
		close(fd[0]);
		none.socket = "/nonexistent/lbctl-parse-only", none.url = NULL;
		none.kubeconfig = "/nonexistent/lbctl-parse-only";
		alarm(5);
		optind = 0;
		int rc = v->fn(sub ? 3 : 2, args, &none);
		fflush(stdout);
		_exit(rc);
	}
	close(fd[1]);
	FILE *f = fdopen(fd[0], "r");
	char chunk[4096];
	while (f && (got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		buf = realloc(buf, len + got + 1);
		if (!buf)
			abort();
		memcpy(buf + len, chunk, got);
		len += got;
	}
	if (f)
		fclose(f);
	waitpid(pid, NULL, 0);
	if (buf)
		buf[len] = '\0';
	return buf;
}

/* Does help name flag (up to a '=') as a word of its own? */
static bool help_names(const char *help, const char *flag)
{
	size_t n = strcspn(flag, "=");

	for (const char *p = help; p && (p = strstr(p, flag)) != NULL; p++) {
		char before = p == help ? ' ' : p[-1], after = p[n];
		if (strncmp(p, flag, n) == 0 && !isalnum((unsigned char)before) && before != '-' &&
		    !isalnum((unsigned char)after) && after != '-')
			return true;
	}
	return false;
}

/* Is sub one of the sub-verbs help's synopsis lines ("lbctl VERB SUB ...")
 * name? -1 when the synopsis takes any word there (a PLAN, a NODE). */
static int sub_known(const char *help, const char *verb, const char *sub)
{
	size_t vl = strlen(verb);
	bool any = false;

	for (const char *p = help; p && (p = strstr(p, verb)) != NULL; p += vl) {
		bool after_lbctl = p - help >= 6 && strncmp(p - 6, "lbctl ", 6) == 0;
		bool after_opts = p - help >= 2 && p[-1] == ' ' && p[-2] == ']';
		if ((!after_lbctl && !after_opts) || p[vl] != ' ')
			continue;
		const char *w = p + vl + 1;
		size_t wl = strspn(w, "abcdefghijklmnopqrstuvwxyz-");
		if (isupper((unsigned char)w[0]))
			return -1;
		if (wl == 0 || w[0] == '-')
			continue;
		any = true;
		if (wl == strlen(sub) && strncmp(w, sub, wl) == 0)
			return 1;
	}
	return any ? 0 : -1;
}

/*
 * LBCTL_PARSE_ONLY=1, for tests/integration/test_docs.py (a command shown
 * in the docs must parse): the verb exists and every option after it is one
 * that the verb's --help (or its sub-verb's) names. Nothing is run; 0 or 2.
 */
static int parse_only(const struct verb *v, int argc, char **argv, const struct lbctl_opts *o)
{
	const char *sub = argc > 1 && argv[1][0] != '-' ? argv[1] : NULL;
	char *help = help_of(v, NULL, o), *subhelp = sub ? help_of(v, sub, o) : NULL;
	int rc = EXIT_OK;

	if (sub && help && sub_known(help, v->name, sub) == 0) {
		fprintf(stderr, "lbctl: %s: unknown sub-verb '%s' (see lbctl %s --help)\n", v->name,
			sub, v->name);
		rc = EXIT_USAGE;
	}
	for (int i = 1; i < argc && rc == EXIT_OK; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (argv[i][0] != '-' || argv[i][1] == '\0')
			continue;
		if (!help_names(help, argv[i]) && !help_names(subhelp, argv[i])) {
			fprintf(stderr, "lbctl: %s: unknown option '%s' (see lbctl %s --help)\n",
				v->name, argv[i], v->name);
			rc = EXIT_USAGE;
		}
	}
	free(help);
	free(subhelp);
	return rc;
}

int main(int argc, char **argv)
{
	struct lbctl_opts o = {0};
	static const struct option longopts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"socket", required_argument, NULL, 's'},
	    {"url", required_argument, NULL, 'u'},
	    {"token-file", required_argument, NULL, 't'},
	    {"kubeconfig", required_argument, NULL, 'k'},
	    {"context", required_argument, NULL, 'C'},
	    {"cacert", required_argument, NULL, 'A'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	o.socket = getenv("LBD_SOCKET") ? getenv("LBD_SOCKET") : "/run/lbd/admin.sock";
	/* "+": stop at the verb; its own options are its business. */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+o:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'V':
			return cmd_version(1, argv, &o);
		case 'A':
		case 'o':
		case 's':
		case 'u':
		case 't':
		case 'k':
		case 'C':
			if (set_global(&o, ch, optarg) < 0)
				return EXIT_USAGE;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			return lbctl_bad_option("", argv, longopts);
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[optind];
	if (strcmp(name, "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	for (const struct verb *v = verbs; v->name; v++) {
		if (strcmp(v->name, name) == 0) {
			int vi = optind;
			int n = take_globals(&o, argc - vi, argv + vi);
			if (n < 0)
				return EXIT_USAGE;
			if (getenv("LBCTL_PARSE_ONLY") &&
			    strcmp(getenv("LBCTL_PARSE_ONLY"), "1") == 0)
				return parse_only(v, n, argv + vi, &o);
			optind = 0; /* glibc: the verb's getopt starts afresh */
			opterr = 1; /* and says what it does not know, unless it asks */
			return run_verb(v, n, argv + vi, &o);
		}
	}
	const char *names[sizeof(verbs) / sizeof(verbs[0])];
	size_t n = 0;
	for (const struct verb *v = verbs; v->name; v++)
		names[n++] = v->name;
	const char *s = lbctl_suggest(name, names, n);
	if (s)
		fprintf(stderr, "lbctl: unknown verb '%s'; did you mean '%s'? (see lbctl --help)\n",
			name, s);
	else
		fprintf(stderr, "lbctl: unknown verb '%s' (see lbctl --help)\n", name);
	return EXIT_USAGE;
}
