/* client.c - see client.h. */
#include "lbctl/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/text.h"
#include "common/xmalloc.h"

struct sink {
	char *buf;
	size_t len;
};

#define MAX_RESPONSE (64 * 1024 * 1024)

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t add = size * n;

	if (s->len + add > MAX_RESPONSE)
		return 0;
	s->buf = xrealloc(s->buf, s->len + add + 1);
	memcpy(s->buf + s->len, p, add);
	s->len += add;
	s->buf[s->len] = '\0';
	return add;
}

const char *lbctl_target(const struct lbctl_opts *o)
{
	return o->url ? o->url : o->socket;
}

static char *read_token(const char *path, char **err)
{
	FILE *f = fopen(path, "r");
	char buf[4097];
	size_t n;

	if (!f) {
		*err = xasprintf("token file %s: %s", path, strerror(errno));
		return NULL;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	while (n > 0 && strchr(" \t\r\n", buf[n - 1]))
		n--;
	if (n == 0) {
		*err = xasprintf("token file %s: empty", path);
		return NULL;
	}
	buf[n] = '\0';
	return xstrdup(buf);
}

/*
 * Why the admin socket at path cannot be reached, with what to do next, or
 * NULL when it answers a connect (then the fault lies past the socket).
 * Asked only after a failed call, so a working lbctl pays nothing for it.
 */
static char *socket_diagnosis(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat sb;
	int fd, e;

	if (stat(path, &sb) < 0) {
		if (errno == EACCES)
			return xasprintf("%s: permission denied on a directory above it: use root "
					 "or the lbd group (sudo lbctl ...)",
					 path);
		if (errno == ENOENT || errno == ENOTDIR)
			return xasprintf("%s does not exist: is lbd running? systemctl status lbd "
					 "(or give its admin.socket with --socket)",
					 path);
		return xasprintf("%s: %s", path, strerror(errno));
	}
	if (!S_ISSOCK(sb.st_mode))
		return xasprintf("%s is not a socket but a %s: give lbd's admin.socket with "
				 "--socket",
				 path, S_ISDIR(sb.st_mode) ? "directory" : "file");
	if (strlen(path) >= sizeof(sun.sun_path))
		return xasprintf("%s: path longer than a unix socket allows (%zu bytes)", path,
				 sizeof(sun.sun_path) - 1);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	e = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ? errno : 0;
	close(fd);
	if (e == EACCES || e == EPERM)
		return xasprintf("%s: permission denied: use root or the lbd group (sudo lbctl "
				 "...)",
				 path);
	if (e == ECONNREFUSED)
		return xasprintf("%s: nothing listens on it (a stale socket left by an lbd that "
				 "stopped): is lbd running? systemctl status lbd",
				 path);
	if (e)
		return xasprintf("%s: %s", path, strerror(e));
	return NULL;
}

char *lbctl_escape(const char *s)
{
	char *out = xmalloc(strlen(s) * 3 + 1), *p = out;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~')
			*p++ = (char)c;
		else
			p += sprintf(p, "%%%02X", c);
	}
	*p = '\0';
	return out;
}

int lbctl_call(const struct lbctl_opts *o, const char *method, const char *path, const json_t *body,
	       long timeout_ms, struct lbctl_resp *r, char **err)
{
	static bool inited;
	CURL *c;
	struct curl_slist *hdrs = NULL;
	struct sink sink = {0};
	char *url, *payload = NULL, *auth = NULL;
	char ebuf[CURL_ERROR_SIZE] = "";
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if (!inited) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		inited = true;
	}
	if (o->url) {
		if (!o->token_file) {
			*err = xstrdup("--url needs --token-file (the admin listener wants a "
				       "bearer token)");
			return -1;
		}
		char *tok = read_token(o->token_file, err);
		if (!tok)
			return -1;
		auth = xasprintf("Authorization: Bearer %s", tok);
		free(tok);
		size_t ul = strlen(o->url);
		url = xasprintf("%.*s%s", (int)(ul > 0 && o->url[ul - 1] == '/' ? ul - 1 : ul),
				o->url, path);
	} else {
		url = xasprintf("http://lbd%s", path);
	}
	c = curl_easy_init();
	if (!c) {
		*err = xstrdup("curl_easy_init failed");
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	if (!o->url)
		curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, o->socket);
	else if (o->cacert || getenv("LBD_CACERT"))
		curl_easy_setopt(c, CURLOPT_CAINFO, o->cacert ? o->cacert : getenv("LBD_CACERT"));
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms ? timeout_ms : 5000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms ? timeout_ms : 30000L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (auth)
		hdrs = curl_slist_append(hdrs, auth);
	if (body) {
		payload = json_dumps(body, JSON_COMPACT);
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	CURLcode cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		char *diag = o->url ? NULL : socket_diagnosis(o->socket);
		if (diag) {
			*err = xasprintf("cannot reach lbd: %s", diag);
			free(diag);
			free(sink.buf);
			goto out;
		}
		char *why = ebuf[0] ? text_clean(ebuf, strlen(ebuf), TEXT_NO_LIMIT)
				    : xstrdup(curl_easy_strerror(cc));
		*err = xasprintf("cannot reach lbd at %s: %s", lbctl_target(o), why);
		free(why);
		free(sink.buf);
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	r->json = sink.buf ? json_loadb(sink.buf, sink.len, 0, NULL) : NULL;
	if (r->json) {
		r->body = sink.buf;
	} else {
		/* Only ever quoted in a message (--url may reach anything): clean it. */
		r->body = text_clean(sink.buf, sink.len, 1000);
		free(sink.buf);
	}
	rc = 0;
out:
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	free(payload);
	free(url);
	if (auth) {
		memset(auth, 0, strlen(auth));
		free(auth);
	}
	return rc;
}

void lbctl_resp_free(struct lbctl_resp *r)
{
	if (r->json)
		json_decref(r->json);
	xfree(&r->body);
	r->json = NULL;
}

const char *lbctl_resp_error(const struct lbctl_resp *r)
{
	json_t *e = r->json ? json_object_get(r->json, "error") : NULL;

	if (json_is_string(e))
		return json_string_value(e);
	return r->body && r->body[0] ? r->body : "no answer body";
}

void lbctl_print_json(const json_t *j, FILE *f)
{
	char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | LBCTL_JSON_REAL) : NULL;

	fprintf(f, "%s\n", s ? s : "null");
	free(s);
}

void lbctl_print_error(const struct lbctl_opts *o, const char *prefix, const char *msg, long status)
{
	char *clean = text_clean_lines(msg, strlen(msg), 8192); /* no escapes from a peer */
	fprintf(stderr, "%s: %s", prefix, clean);
	free(clean);
	if (status)
		fprintf(stderr, " (HTTP %ld)", status);
	fputc('\n', stderr);
	if (!o->json)
		return;
	json_t *j = json_pack("{s:o}", "error", text_json(msg)); /* an answer's text: cleaned */
	if (j && status)
		json_object_set_new(j, "status", json_integer(status));
	lbctl_print_json(j, stdout);
	json_decref(j);
}
