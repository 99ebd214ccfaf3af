/*
 * lbctl - the command line of lbd: pool edits, drain, nodes, the gate, and
 * the upgrade orchestrator. Global options come before the verb:
 *
 *   lbctl [-o json] [--socket PATH | --url URL --token-file F]
 *         [--kubeconfig F] [--context C] VERB ...
 *
 * Each verb lives in its own cmd_*.c and is listed in verbs[] below.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/version.h"
#include "lbctl/lbctl.h"

struct verb {
	const char *name;
	int (*fn)(int argc, char **argv, const struct lbctl_opts *o);
	const char *summary;
};

static int cmd_version(int argc, char **argv, const struct lbctl_opts *o)
{
	printf("lbctl %s\n", lbd_version);
	return EXIT_OK;
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
		   "    -o, --output json   machine-readable output\n"
		   "    --socket PATH       lbd admin socket (default /run/lbd/admin.sock,\n"
		   "                        or $LBD_SOCKET)\n"
		   "    --url URL           lbd admin TCP/TLS listener instead of the socket\n"
		   "    --token-file FILE   bearer token for --url\n"
		   "    --kubeconfig FILE   kubeconfig for node verbs (default $KUBECONFIG,\n"
		   "                        ~/.kube/config)\n"
		   "    --context NAME      kubeconfig context\n\n"
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
	} g[] = {{"--output", 'o'},	{"-o", 'o'},	       {"--socket", 's'}, {"--url", 'u'},
		 {"--token-file", 't'}, {"--kubeconfig", 'k'}, {"--context", 'C'}};
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
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	o.socket = getenv("LBD_SOCKET") ? getenv("LBD_SOCKET") : "/run/lbd/admin.sock";
	if (argc == 2 && !strcmp(argv[1], "--version"))
		return cmd_version(argc, argv, &o);
	/* "+": stop at the verb; its own options are its business. */
	while ((ch = getopt_long(argc, argv, "+o:h", longopts, NULL)) != -1) {
		switch (ch) {
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
			usage(stderr);
			return EXIT_USAGE;
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
			optind = 0; /* glibc: the verb's getopt starts afresh */
			return v->fn(n, argv + vi, &o);
		}
	}
	fprintf(stderr, "lbctl: unknown verb '%s' (see lbctl --help)\n", name);
	return EXIT_USAGE;
}
