/*
 * client.h - lbctl's HTTP client for lbd's admin API (libcurl).
 *
 * Talks to the unix socket (--socket, $LBD_SOCKET) or, with --url, to the
 * TCP/TLS admin listener with "Authorization: Bearer" from --token-file.
 * For --url https with a private CA: --cacert FILE, or $LBD_CACERT.
 * When the socket cannot be reached, says why and what to do next
 * (missing, not a socket, stale, permission denied).
 * JSON in, JSON out; reusable by any verb (gate verbs included).
 */
#ifndef LBD_LBCTL_CLIENT_H
#define LBD_LBCTL_CLIENT_H

#include <jansson.h>
#include <stdio.h>

#include "lbctl/lbctl.h"

struct lbctl_resp {
	long status;  /* HTTP status */
	json_t *json; /* parsed body, or NULL if it was not JSON */
	char *body;   /* the raw body if it is JSON; else its start as clean text
		       * (common/text.h), for messages */
};

/*
 * method "GET", "POST", ...; path "/v1/pools"; body may be NULL (not taken
 * over). timeout_ms bounds the whole call (0: 30s). Returns 0 with *r filled
 * (any HTTP status), or -1 with *err when lbd could not be reached.
 */
int lbctl_call(const struct lbctl_opts *o, const char *method, const char *path, const json_t *body,
	       long timeout_ms, struct lbctl_resp *r, char **err);
void lbctl_resp_free(struct lbctl_resp *r);
/* The "error" text of an error answer, or the raw body. */
const char *lbctl_resp_error(const struct lbctl_resp *r);
/* Percent-encodes s for a path segment (caller frees). */
char *lbctl_escape(const char *s);
/* Where lbctl talks to, for messages: the socket path or the URL. */
const char *lbctl_target(const struct lbctl_opts *o);

/* Floats as people write them: 45.291, not 45.290999999999997. */
#define LBCTL_JSON_REAL JSON_REAL_PRECISION(12)
/* j indented, with a newline, to f. */
void lbctl_print_json(const json_t *j, FILE *f);
/* "PREFIX: MSG (HTTP STATUS)" on stderr and, with -o json, {"error": MSG,
 * "status": STATUS} on stdout too, so a script reads every outcome as JSON.
 * status 0: none (lbd was not reached). */
void lbctl_print_error(const struct lbctl_opts *o, const char *prefix, const char *msg,
		       long status);

#endif
