/*
 * http.h - one blocking HTTP(S) request with libcurl, for the gate's input
 * thread (etcd's JSON gateway, Prometheus). Never called on an event loop.
 */
#ifndef LBD_COMMON_HTTP_H
#define LBD_COMMON_HTTP_H

#include <jansson.h>
#include <stdint.h>

struct http_tls {
	const char *ca, *cert, *key; /* NULL: system store / no client certificate */
};

/*
 * method "GET" or "POST" (body is sent as application/json). On an answer
 * (any status) returns 0 with *status and, if the body is JSON, *out (caller
 * decrefs; NULL otherwise). On a transport error or timeout returns -1 with
 * *err (caller frees): "connect refused", "timeout after 1s". *err is clean
 * text (common/text.h); the strings in *out are valid UTF-8 (jansson checks
 * on load) but may hold control characters: a log line cleans them itself.
 */
int http_json(const char *method, const char *url, const char *body, const struct http_tls *tls,
	      int64_t timeout_ms, long *status, json_t **out, char **err);

#endif
