/*
 * kubeconfig.h - which apiserver to talk to and with which credentials, read
 * from a kubeconfig file the way kubectl reads it.
 *
 * The file is chosen as kubectl does, except that only the FIRST file of a
 * colon-separated $KUBECONFIG is read (kubectl merges them all): an explicit
 * path, else the first entry of $KUBECONFIG, else ~/.kube/config. k3s's
 * /etc/rancher/k3s/k3s.yaml works as is.
 *
 * The context is --context if given, else current-context. From it come the
 * cluster (server, certificate-authority(-data), insecure-skip-tls-verify,
 * tls-server-name) and the user (client-certificate(-data) with
 * client-key(-data), token, tokenFile). Paths in the file are relative to the
 * file's directory; *-data fields are decoded from base64 and files are read,
 * so a loaded kubeconfig holds every credential in memory as PEM.
 *
 * Errors are one line, "file:line: message" ("context 'x' not found",
 * "user 'y' has no credentials"). exec and auth-provider plugins are not
 * supported and say so.
 */
#ifndef LBD_KUBECONFIG_H
#define LBD_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* A PEM blob in memory (decoded *-data, or a file's contents). */
struct kc_blob {
	char *data;
	size_t len;
};

struct kubeconfig {
	char *path;    /* the file read */
	char *context; /* the context in use */
	char *cluster; /* its cluster's name */
	char *user;    /* its user's name */
	char *namespace;

	char *server; /* "https://host:port" without a trailing slash */
	char *tls_server_name;
	bool insecure; /* insecure-skip-tls-verify */
	struct kc_blob ca;

	struct kc_blob cert; /* client certificate and key, both or neither */
	struct kc_blob key;
	char *token; /* bearer token (from token or tokenFile) */
	char *token_file;
};

/*
 * Picks the file as kubectl does (see above) into buf; explicit may be NULL.
 * Returns buf, or NULL if there is no home directory to look in.
 */
const char *kubeconfig_path(const char *explicit_path, char *buf, size_t len);

/*
 * Loads path (NULL: kubeconfig_path(NULL)) using context (NULL: the
 * current-context). On error returns -1 and sets *err (caller frees) to a
 * "file:line: message" text; kc is then empty.
 */
int kubeconfig_load(const char *path, const char *context, struct kubeconfig *kc, char **err);

/* Same, from a string (tests); name is used in messages and dir resolves
 * relative paths. */
int kubeconfig_load_string(const char *text, size_t len, const char *name, const char *dir,
			   const char *context, struct kubeconfig *kc, char **err);

void kubeconfig_free(struct kubeconfig *kc);

/* base64 decode (whitespace ignored). Returns -1 on bad input. Exposed for tests. */
int kc_base64_decode(const char *in, struct kc_blob *out);

#endif
