/*
 * lbctl.h - what the verbs of lbctl share.
 *
 * lbctl/main.c parses the global options and dispatches on the first word
 * to a cmd_*() function, each in its own file (cmd_pool.c, cmd_node.c, ...).
 * A verb prints a man-page style help on --help, human tables by default and
 * JSON with -o json, and returns one of the exit codes below (lbctl --help).
 */
#ifndef LBD_LBCTL_H
#define LBD_LBCTL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

enum lbctl_exit {
	EXIT_OK = 0,
	EXIT_ERROR = 1,
	EXIT_USAGE = 2,
	EXIT_REFUSED = 3, /* refused by the gate */
	EXIT_TIMEOUT = 4,
};

struct lbctl_opts {
	bool json;		/* -o json */
	const char *socket;	/* --socket PATH (admin unix socket), default /run/lbd/admin.sock */
	const char *url;	/* --url https://host:port (admin TCP listener) */
	const char *token_file; /* --token-file PATH */
	const char *cacert;	/* --cacert FILE (else $LBD_CACERT): CA of an https --url */
	const char *kubeconfig; /* --kubeconfig PATH */
	const char *context;	/* --context NAME */
};

/* The candidate nearest to word (a typo: a letter or two off, or a prefix
 * of three letters or more), or NULL: "did you mean". */
const char *lbctl_suggest(const char *word, const char *const *cands, size_t n);
/* After getopt_long (opterr = 0) returned '?': says which option was wrong
 * (with a "did you mean --x" from lo) on stderr, returns EXIT_USAGE. */
int lbctl_bad_option(const char *verb, char **argv, const struct option *lo);

/* Each takes the words after its verb (argv[0] is the verb itself). */
int cmd_pools(int argc, char **argv, const struct lbctl_opts *o);
int cmd_pool(int argc, char **argv, const struct lbctl_opts *o);
int cmd_backend(int argc, char **argv, const struct lbctl_opts *o);
int cmd_status(int argc, char **argv, const struct lbctl_opts *o);
int cmd_reload(int argc, char **argv, const struct lbctl_opts *o);
int cmd_restart(int argc, char **argv, const struct lbctl_opts *o);
int cmd_node(int argc, char **argv, const struct lbctl_opts *o);
int cmd_gate(int argc, char **argv, const struct lbctl_opts *o);
int cmd_upgrade(int argc, char **argv, const struct lbctl_opts *o);
int cmd_migrate(int argc, char **argv, const struct lbctl_opts *o);

#endif
