/*
 * kubeconfig.c - parse a kubeconfig with libyaml's document API.
 *
 * The whole file is loaded as a node tree (kubeconfigs are small), then the
 * context, its cluster and its user are looked up by name. Every node keeps
 * its start mark, so each error names the line it is about.
 */
#include "kube/kubeconfig.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "common/xmalloc.h"

struct kc_parse {
	yaml_document_t doc;
	const char *name; /* file name for messages */
	const char *dir;  /* relative paths resolve here */
	char **err;
};

static int kc_fail(struct kc_parse *p, const yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int kc_fail(struct kc_parse *p, const yaml_node_t *at, const char *fmt, ...)
{
	va_list ap;
	char msg[512];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Names, servers and paths are quoted from the file as written ("a\nb" is a valid
	 * context name): control characters become '?', so the message stays one line. */
	for (char *s = msg; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
	if (at)
		*p->err = xasprintf("%s:%zu: %s", p->name, at->start_mark.line + 1, msg);
	else
		*p->err = xasprintf("%s: %s", p->name, msg);
	return -1;
}

static yaml_node_t *kc_node(struct kc_parse *p, int id)
{
	return yaml_document_get_node(&p->doc, id);
}

/* The value of key in mapping m, or NULL. */
static yaml_node_t *kc_get(struct kc_parse *p, yaml_node_t *m, const char *key)
{
	yaml_node_pair_t *pair;

	if (!m || m->type != YAML_MAPPING_NODE)
		return NULL;
	for (pair = m->data.mapping.pairs.start; pair < m->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = kc_node(p, pair->key);
		if (k && k->type == YAML_SCALAR_NODE &&
		    strcmp((const char *)k->data.scalar.value, key) == 0)
			return kc_node(p, pair->value);
	}
	return NULL;
}

/* The key node of key in mapping m (its line is where the key is written), or NULL. */
static yaml_node_t *kc_key(struct kc_parse *p, yaml_node_t *m, const char *key)
{
	yaml_node_pair_t *pair;

	if (!m || m->type != YAML_MAPPING_NODE)
		return NULL;
	for (pair = m->data.mapping.pairs.start; pair < m->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = kc_node(p, pair->key);
		if (k && k->type == YAML_SCALAR_NODE &&
		    strcmp((const char *)k->data.scalar.value, key) == 0)
			return k;
	}
	return NULL;
}

/* A scalar's text, or NULL if absent, null or empty. */
static const char *kc_str(struct kc_parse *p, yaml_node_t *m, const char *key)
{
	yaml_node_t *n = kc_get(p, m, key);
	const char *s;

	if (!n || n->type != YAML_SCALAR_NODE)
		return NULL;
	s = (const char *)n->data.scalar.value;
	if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	    (strcmp(s, "null") == 0 || strcmp(s, "~") == 0))
		return NULL;
	return *s ? s : NULL;
}

static bool kc_bool(struct kc_parse *p, yaml_node_t *m, const char *key)
{
	const char *s = kc_str(p, m, key);

	return s && (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "yes") == 0);
}

/* In a list of {name: N, <kind>: {...}}, the {...} of the entry named name. */
static yaml_node_t *kc_named(struct kc_parse *p, yaml_node_t *list, const char *kind,
			     const char *name, yaml_node_t **entry)
{
	yaml_node_item_t *it;

	if (!list || list->type != YAML_SEQUENCE_NODE)
		return NULL;
	for (it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
		yaml_node_t *e = kc_node(p, *it);
		const char *n = kc_str(p, e, "name");
		if (n && strcmp(n, name) == 0) {
			if (entry)
				*entry = e;
			return kc_get(p, e, kind);
		}
	}
	return NULL;
}

static char *kc_resolve(struct kc_parse *p, const char *path)
{
	if (path[0] == '/' || !p->dir)
		return xstrdup(path);
	return xasprintf("%s/%s", p->dir, path);
}

static int kc_read_file(const char *path, struct kc_blob *out, char *why, size_t whylen)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 4096, n = 0, r;
	char *buf;

	if (!f) {
		snprintf(why, whylen, "%s", strerror(errno));
		return -1;
	}
	buf = xmalloc(cap + 1);
	while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			if (cap >= 16u << 20) {
				snprintf(why, whylen, "file too large");
				fclose(f);
				free(buf);
				return -1;
			}
			cap *= 2;
			buf = xrealloc(buf, cap + 1);
		}
	}
	fclose(f);
	buf[n] = '\0';
	out->data = buf;
	out->len = n;
	return 0;
}

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

int kc_base64_decode(const char *in, struct kc_blob *out)
{
	size_t n = strlen(in), o = 0;
	unsigned acc = 0;
	int bits = 0, pad = 0;
	char *buf = xmalloc(n / 4 * 3 + 4);

	for (const char *s = in; *s; s++) {
		int v;
		if (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
			continue;
		if (*s == '=') {
			pad++;
			continue;
		}
		if (pad || (v = b64val((unsigned char)*s)) < 0) {
			free(buf);
			return -1;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	if (pad > 2 || bits >= 6) {
		free(buf);
		return -1;
	}
	buf[o] = '\0';
	out->data = buf;
	out->len = o;
	return 0;
}

/* Fills blob from key-data (base64) or key (a file), whichever is set. */
static int kc_blob_from(struct kc_parse *p, yaml_node_t *m, const char *key, struct kc_blob *out,
			char **file_out)
{
	char dkey[64], why[256];
	const char *data, *file;

	snprintf(dkey, sizeof(dkey), "%s-data", key);
	data = kc_str(p, m, dkey);
	file = kc_str(p, m, key);
	if (data) {
		if (kc_base64_decode(data, out) < 0)
			return kc_fail(p, kc_get(p, m, dkey), "%s is not valid base64", dkey);
		return 0;
	}
	if (file) {
		char *path = kc_resolve(p, file);
		if (kc_read_file(path, out, why, sizeof(why)) < 0) {
			kc_fail(p, kc_get(p, m, key), "%s %s: %s", key, path, why);
			free(path);
			return -1;
		}
		if (file_out)
			*file_out = path;
		else
			free(path);
	}
	return 0;
}

static int kc_cluster(struct kc_parse *p, yaml_node_t *root, yaml_node_t *ctx_entry,
		      struct kubeconfig *kc)
{
	yaml_node_t *cl = kc_named(p, kc_get(p, root, "clusters"), "cluster", kc->cluster, NULL);
	const char *server;
	size_t n;

	if (!cl)
		return kc_fail(p, ctx_entry, "cluster '%s' (of context '%s') not found",
			       kc->cluster, kc->context);
	server = kc_str(p, cl, "server");
	if (!server)
		return kc_fail(p, cl, "cluster '%s' has no server", kc->cluster);
	if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)
		return kc_fail(p, kc_get(p, cl, "server"),
			       "cluster '%s': server '%s' is not an http(s) URL", kc->cluster,
			       server);
	kc->server = xstrdup(server);
	n = strlen(kc->server);
	while (n > 0 && kc->server[n - 1] == '/')
		kc->server[--n] = '\0';
	kc->insecure = kc_bool(p, cl, "insecure-skip-tls-verify");
	if (kc_str(p, cl, "tls-server-name"))
		kc->tls_server_name = xstrdup(kc_str(p, cl, "tls-server-name"));
	return kc_blob_from(p, cl, "certificate-authority", &kc->ca, NULL);
}

static int kc_user(struct kc_parse *p, yaml_node_t *root, yaml_node_t *ctx_entry,
		   struct kubeconfig *kc)
{
	yaml_node_t *entry = NULL;
	yaml_node_t *u = kc_named(p, kc_get(p, root, "users"), "user", kc->user, &entry);
	const char *tok, *tokfile;
	char why[256];

	if (!u && !entry)
		return kc_fail(p, ctx_entry, "user '%s' (of context '%s') not found", kc->user,
			       kc->context);
	if (kc_get(p, u, "exec") || kc_get(p, u, "auth-provider"))
		return kc_fail(p, u ? u : entry,
			       "user '%s': exec and auth-provider credential plugins are not "
			       "supported; use a token or a client certificate",
			       kc->user);
	if (kc_blob_from(p, u, "client-certificate", &kc->cert, NULL) < 0 ||
	    kc_blob_from(p, u, "client-key", &kc->key, NULL) < 0)
		return -1;
	if (!!kc->cert.data != !!kc->key.data)
		return kc_fail(p, u, "user '%s' has a client %s but no client %s", kc->user,
			       kc->cert.data ? "certificate" : "key",
			       kc->cert.data ? "key" : "certificate");
	tok = kc_str(p, u, "token");
	tokfile = kc_str(p, u, "tokenFile");
	if (tok) {
		kc->token = xstrdup(tok);
	} else if (tokfile) {
		struct kc_blob b = {0};
		char *path = kc_resolve(p, tokfile);
		if (kc_read_file(path, &b, why, sizeof(why)) < 0) {
			kc_fail(p, kc_get(p, u, "tokenFile"), "tokenFile %s: %s", path, why);
			free(path);
			return -1;
		}
		while (b.len > 0 && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r' ||
				     b.data[b.len - 1] == ' '))
			b.data[--b.len] = '\0';
		kc->token = b.data;
		kc->token_file = path;
	}
	if (!kc->token && !kc->cert.data) {
		if (kc_str(p, u, "username"))
			return kc_fail(p, u,
				       "user '%s': basic auth (username/password) is not "
				       "supported",
				       kc->user);
		return kc_fail(p, u ? u : entry, "user '%s' has no credentials", kc->user);
	}
	return 0;
}

static int kc_parse_doc(struct kc_parse *p, const char *context, struct kubeconfig *kc)
{
	yaml_node_t *root = yaml_document_get_root_node(&p->doc);
	yaml_node_t *ctx, *ctx_entry = NULL, *cc_node;
	const char *name, *s;

	if (!root)
		return kc_fail(p, NULL, "empty kubeconfig");
	if (root->type != YAML_MAPPING_NODE)
		return kc_fail(p, root, "a kubeconfig must be a mapping");
	cc_node = kc_get(p, root, "current-context");
	name = context ? context : kc_str(p, root, "current-context");
	if (!name)
		return kc_fail(p, root, "no current-context is set and no --context was given");
	ctx = kc_named(p, kc_get(p, root, "contexts"), "context", name, &ctx_entry);
	if (!ctx) {
		yaml_node_t *at = context ? kc_key(p, root, "contexts") : cc_node;
		return kc_fail(p, at ? at : root, "context '%s' not found", name);
	}
	kc->context = xstrdup(name);
	s = kc_str(p, ctx, "cluster");
	if (!s)
		return kc_fail(p, ctx, "context '%s' names no cluster", name);
	kc->cluster = xstrdup(s);
	s = kc_str(p, ctx, "user");
	if (!s)
		return kc_fail(p, ctx, "context '%s' names no user", name);
	kc->user = xstrdup(s);
	kc->namespace =
	    xstrdup(kc_str(p, ctx, "namespace") ? kc_str(p, ctx, "namespace") : "default");
	if (kc_cluster(p, root, ctx_entry, kc) < 0)
		return -1;
	return kc_user(p, root, ctx_entry, kc);
}

int kubeconfig_load_string(const char *text, size_t len, const char *name, const char *dir,
			   const char *context, struct kubeconfig *kc, char **err)
{
	yaml_parser_t parser;
	struct kc_parse p = {.name = name ? name : "kubeconfig", .dir = dir, .err = err};
	int rc;

	memset(kc, 0, sizeof(*kc));
	*err = NULL;
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &p.doc)) {
		if (parser.context)
			*err =
			    xasprintf("%s:%zu:%zu: %s %s (started at line %zu)", p.name,
				      parser.problem_mark.line + 1, parser.problem_mark.column + 1,
				      parser.problem ? parser.problem : "YAML error",
				      parser.context, parser.context_mark.line + 1);
		else
			*err = xasprintf("%s:%zu:%zu: %s", p.name, parser.problem_mark.line + 1,
					 parser.problem_mark.column + 1,
					 parser.problem ? parser.problem : "YAML error");
		yaml_parser_delete(&parser);
		return -1;
	}
	rc = kc_parse_doc(&p, context, kc);
	yaml_document_delete(&p.doc);
	yaml_parser_delete(&parser);
	if (rc < 0) {
		kubeconfig_free(kc);
		return -1;
	}
	kc->path = xstrdup(p.name);
	return 0;
}

const char *kubeconfig_path(const char *explicit_path, char *buf, size_t len)
{
	const char *env = getenv("KUBECONFIG"), *home;

	if (explicit_path && *explicit_path) {
		snprintf(buf, len, "%s", explicit_path);
		return buf;
	}
	if (env && *env) {
		/* Only the first file: kubectl would merge them all. */
		size_t n = strcspn(env, ":");
		snprintf(buf, len, "%.*s", (int)n, env);
		return buf;
	}
	home = getenv("HOME");
	if (!home || !*home) {
		struct passwd *pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : NULL;
	}
	if (!home)
		return NULL;
	snprintf(buf, len, "%s/.kube/config", home);
	return buf;
}

int kubeconfig_load(const char *path, const char *context, struct kubeconfig *kc, char **err)
{
	char pbuf[PATH_MAX], why[256];
	struct kc_blob text = {0};
	char *dir, *slash;
	int rc;

	memset(kc, 0, sizeof(*kc));
	*err = NULL;
	if (!path)
		path = kubeconfig_path(NULL, pbuf, sizeof(pbuf));
	if (!path) {
		*err = xstrdup("no kubeconfig: set --kubeconfig or KUBECONFIG (no home directory)");
		return -1;
	}
	if (kc_read_file(path, &text, why, sizeof(why)) < 0) {
		*err = xasprintf("%s: %s", path, why);
		return -1;
	}
	dir = xstrdup(path);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		xfree(&dir);
	rc = kubeconfig_load_string(text.data, text.len, path, dir ? dir : ".", context, kc, err);
	free(dir);
	free(text.data);
	return rc;
}

static void kc_blob_free(struct kc_blob *b)
{
	xfree(&b->data);
	b->len = 0;
}

void kubeconfig_free(struct kubeconfig *kc)
{
	xfree(&kc->path);
	xfree(&kc->context);
	xfree(&kc->cluster);
	xfree(&kc->user);
	xfree(&kc->namespace);
	xfree(&kc->server);
	xfree(&kc->tls_server_name);
	kc_blob_free(&kc->ca);
	kc_blob_free(&kc->cert);
	kc_blob_free(&kc->key);
	xfree(&kc->token);
	xfree(&kc->token_file);
}
