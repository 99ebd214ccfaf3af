/* http.c - see http.h. */
#include "common/http.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "common/text.h"
#include "common/xmalloc.h"

#define GATE_HTTP_MAX_BODY (4 << 20)

struct buf {
	char *p;
	size_t n;
	bool too_big;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t n = size * nmemb;

	if (b->n + n > GATE_HTTP_MAX_BODY) {
		b->too_big = true;
		return 0;
	}
	b->p = xrealloc(b->p, b->n + n + 1);
	memcpy(b->p + b->n, ptr, n);
	b->n += n;
	b->p[b->n] = '\0';
	return n;
}

static void global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

int http_json(const char *method, const char *url, const char *body, const struct http_tls *tls,
	      int64_t timeout_ms, long *status, json_t **out, char **err)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct curl_slist *hdrs = NULL;
	struct buf b = {0};
	char ebuf[CURL_ERROR_SIZE] = "";
	CURL *c;
	CURLcode rc;

	pthread_once(&once, global_init);
	*out = NULL;
	*status = 0;
	if (!(c = curl_easy_init())) {
		*err = xstrdup("curl_easy_init failed");
		return -1;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*"); /* the gate talks to its cluster directly */
	if (tls) {
		if (tls->ca)
			curl_easy_setopt(c, CURLOPT_CAINFO, tls->ca);
		if (tls->cert)
			curl_easy_setopt(c, CURLOPT_SSLCERT, tls->cert);
		if (tls->key)
			curl_easy_setopt(c, CURLOPT_SSLKEY, tls->key);
	}
	if (strcmp(method, "POST") == 0) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "{}");
	}
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		if (rc == CURLE_OPERATION_TIMEDOUT)
			*err = xasprintf("timeout after %lldms", (long long)timeout_ms);
		else if (b.too_big)
			*err = xstrdup("answer larger than 4MiB");
		else if (ebuf[0]) /* curl's words, but they may quote the peer's */
			*err = text_clean(ebuf, strlen(ebuf), TEXT_NO_LIMIT);
		else
			*err = xstrdup(curl_easy_strerror(rc));
	} else {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
		if (b.p)
			*out = json_loadb(b.p, b.n, 0, NULL);
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	free(b.p);
	return rc == CURLE_OK ? 0 : -1;
}
