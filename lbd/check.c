/*
 * check.c - active health checks (see check.h).
 *
 * Design note. One check_engine owns one CURLM and drives it from libevent
 * with libcurl's multi-socket API: curl tells us which sockets to watch
 * (sock_cb) and when to wake it (timer_cb); libevent tells curl what
 * happened (curl_multi_socket_action); finished transfers are collected with
 * curl_multi_info_read (engine_drain). Nothing here ever blocks the loop.
 *
 * Each struct check has its own libevent timer. A probe starts when it fires
 * (an easy handle for https/http, a non-blocking connect() for tcp); when the
 * probe ends, the result is built, the next probe is scheduled interval_ms
 * after this one started, and only then is the owner's callback run - last,
 * so the callback may free the check (or another one).
 *
 * No user code ever runs inside a curl callback, so check_free() may always
 * call curl_multi_remove_handle(); curl drops any pending DONE message of a
 * removed handle, so a freed check never gets a callback.
 */
#define _GNU_SOURCE
#include "lbd/check.h"

#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "common/duration.h"
#include "common/log.h"
#include "common/text.h"
#include "common/xmalloc.h"

/* Of a body, the first BODY_KEEP bytes are kept to explain a bad status
 * (a failing kube /readyz lists every check, the [-] lines can be far down);
 * past BODY_MAX bytes the transfer is aborted. */
#define BODY_KEEP 4096
#define BODY_MAX (64 * 1024)
/* Longest body line quoted in a detail. */
#define LINE_MAX_QUOTE 180

/* A socket curl asked us to watch. */
struct check_sock {
	struct check_engine *eng;
	curl_socket_t fd;
	struct event *ev;
	struct check_sock *prev, *next;
};

struct check_engine {
	struct event_base *base;
	CURLM *multi;
	struct event *timer; /* curl's single timeout */
	struct check_sock *socks;
	size_t nchecks;
};

struct check {
	struct check_engine *eng;
	struct health_conf conf; /* own copy: path, tls strings */
	struct sockaddr_storage ss;
	socklen_t sslen;
	char *name;
	char *label;	       /* last path component: "readyz" */
	char *url;	       /* "https://127.0.0.1:6443/readyz" */
	char *conn_to;	       /* CURLOPT_CONNECT_TO entry when an SNI name is set */
	const char *setup_err; /* set when no probe can ever be built */
	check_cb cb;
	void *arg;
	struct event *timer;
	bool in_flight;
	int64_t start_us; /* monotonic start of the current/last probe */

	/* https/http probe */
	CURL *easy;
	struct curl_slist *conn_to_list;
	struct curl_slist *headers; /* "Authorization: Bearer ..." from health.token_file */
	bool auth_warned;	    /* "wants credentials" logged since the last good answer */
	bool peer_connected;	    /* a socket of this probe reached the peer */
	char errbuf[CURL_ERROR_SIZE];
	char body[BODY_KEEP];
	size_t body_len;
	size_t body_total;
	bool body_too_big;

	/* tcp probe */
	int fd;
	struct event *io;
};

static const char *const reason_names[CHK_REASON_MAX] = {
    [CHK_OK] = "ok",
    [CHK_CONNECT_REFUSED] = "connect_refused",
    [CHK_CONNECT_TIMEOUT] = "connect_timeout",
    [CHK_CONNECT_ERROR] = "connect_error",
    [CHK_TIMEOUT] = "timeout",
    [CHK_TLS_ERROR] = "tls_error",
    [CHK_BAD_STATUS] = "bad_status",
    [CHK_READ_ERROR] = "read_error",
    [CHK_INTERNAL] = "internal",
};

const char *check_reason_name(enum check_reason r)
{
	if ((int)r < 0 || r >= CHK_REASON_MAX)
		return "unknown";
	return reason_names[r];
}

bool check_result_transport_dead(const struct check_result *r)
{
	switch (r->reason) {
	case CHK_CONNECT_REFUSED:
	case CHK_CONNECT_TIMEOUT:
	case CHK_CONNECT_ERROR:
		return true;
	case CHK_TIMEOUT:
		return !r->answered;
	default:
		return false;
	}
}

/*
 * Hysteresis. HAProxy's check->health: the counter lives in
 * [0, rise+fall-1] and the backend is up at or above `rise`. A success
 * that reaches `rise` jumps to the top, a failure that drops below `rise`
 * jumps to 0; so from up, exactly `fall` consecutive failures take it down,
 * and from down exactly `rise` consecutive successes bring it up, whatever
 * happened before (a flapping backend never creeps across the line).
 * Note: check.h's comment says "up at or above fall"; with the documented
 * rise/fall behaviour the threshold has to be `rise` (they agree when
 * rise == fall).
 */
void check_health_init(struct check_health *h, int rise, int fall)
{
	h->rise = rise > 0 ? rise : 1;
	h->fall = fall > 0 ? fall : 1;
	h->counter = 0;
	h->up = false;
	h->known = false;
}

bool check_health_update(struct check_health *h, bool ok)
{
	int top = h->rise + h->fall - 1;
	bool was_up = h->up;

	if (!h->known) {
		h->known = true;
		h->counter = ok ? top : 0;
		h->up = ok;
		return true;
	}
	if (ok) {
		if (h->counter < top)
			h->counter++;
		if (h->counter >= h->rise)
			h->counter = top;
	} else {
		if (h->counter > 0)
			h->counter--;
		if (h->counter < h->rise)
			h->counter = 0;
	}
	h->up = h->counter >= h->rise;
	return h->up != was_up;
}

/* ---- small helpers ---- */

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct timeval ms_to_tv(int64_t ms)
{
	struct timeval tv;
	if (ms < 0)
		ms = 0;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	return tv;
}

static int64_t conf_timeout_ms(const struct check *c)
{
	return c->conf.timeout_ms > 0 ? c->conf.timeout_ms : 1000;
}

static int64_t conf_interval_ms(const struct check *c)
{
	return c->conf.interval_ms > 0 ? c->conf.interval_ms : 2000;
}

/* "3ms", "0.4ms": for "in ..." texts. */
static void fmt_latency(int64_t us, char *buf, size_t len)
{
	if (us < 10000)
		snprintf(buf, len, "%lld.%lldms", (long long)(us / 1000),
			 (long long)(us % 1000 / 100));
	else
		snprintf(buf, len, "%lldms", (long long)((us + 500) / 1000));
}

static char *opt_strdup(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* "/readyz?verbose" -> "readyz"; "/" -> "status". */
static char *path_label(const char *path)
{
	size_t end = strcspn(path, "?#");
	while (end > 0 && path[end - 1] == '/')
		end--;
	size_t start = end;
	while (start > 0 && path[start - 1] != '/')
		start--;
	if (start == end)
		return xstrdup("status");
	return text_clean(path + start, end - start, 48);
}

/* Only what may stand as a URL host: a DNS name. */
static bool sni_ok(const char *s)
{
	if (!*s || strlen(s) > 253)
		return false;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_'))
			return false;
	}
	return true;
}

/* Numeric host for a URL ("[::1]" for IPv6) and the port; -1 if unsupported. */
static int addr_host(const struct sockaddr_storage *ss, char *host, size_t len, int *port)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(host, len, "%s", ip);
		*port = ntohs(sin->sin_port);
		return 0;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(host, len, "[%s]", ip);
		*port = ntohs(sin6->sin6_port);
		return 0;
	}
	return -1;
}

/* A socket with a peer address completed its TCP connect (until a reset). */
static bool has_peer(int fd)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);

	return getpeername(fd, (struct sockaddr *)&peer, &len) == 0;
}

/* ---- engine: libcurl multi-socket on libevent ---- */

static void engine_drain(struct check_engine *eng);

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
	struct check_sock *cs = arg;
	struct check_engine *eng = cs->eng; /* cs may be freed by socket_action */
	int action = 0, running = 0;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	curl_multi_socket_action(eng->multi, fd, action, &running);
	engine_drain(eng);
}

static void on_curl_timer(evutil_socket_t fd, short what, void *arg)
{
	struct check_engine *eng = arg;
	int running = 0;

	curl_multi_socket_action(eng->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	engine_drain(eng);
}

static void sock_free(struct check_engine *eng, struct check_sock *cs)
{
	if (cs->ev)
		event_free(cs->ev);
	if (cs->prev)
		cs->prev->next = cs->next;
	else
		eng->socks = cs->next;
	if (cs->next)
		cs->next->prev = cs->prev;
	free(cs);
}

static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *sockp)
{
	struct check_engine *eng = userp;
	struct check_sock *cs = sockp;
	short kind = EV_PERSIST;

	if (what == CURL_POLL_REMOVE) {
		if (cs) {
			curl_multi_assign(eng->multi, s, NULL);
			sock_free(eng, cs);
		}
		return 0;
	}
	/* curl watches a socket of a probe: once it has a peer, the TCP
	 * connect succeeded, whatever fails later (the TLS handshake may hang,
	 * and curl's CONNECT_TIME only counts once TLS is done too). */
	char *priv = NULL;
	if (easy && curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) == CURLE_OK && priv) {
		struct check *c = (struct check *)priv;
		if (!c->peer_connected)
			c->peer_connected = has_peer(s);
	}
	if (!cs) {
		cs = xcalloc(1, sizeof(*cs));
		cs->eng = eng;
		cs->fd = s;
		cs->next = eng->socks;
		if (eng->socks)
			eng->socks->prev = cs;
		eng->socks = cs;
		curl_multi_assign(eng->multi, s, cs);
	} else if (cs->ev) {
		/* Freeing an event from inside its own callback is fine in
		 * libevent: nothing touches it after the callback returns. */
		event_free(cs->ev);
		cs->ev = NULL;
	}
	if (what & CURL_POLL_IN)
		kind |= EV_READ;
	if (what & CURL_POLL_OUT)
		kind |= EV_WRITE;
	cs->ev = event_new(eng->base, s, kind, on_sock_event, cs);
	if (!cs->ev || event_add(cs->ev, NULL) < 0) {
		log_warn("check: cannot watch socket %d", (int)s);
		return -1;
	}
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct check_engine *eng = userp;

	if (timeout_ms < 0) {
		evtimer_del(eng->timer);
		return 0;
	}
	/* Even for 0 we go through the loop: curl must not be re-entered
	 * from its own callback. */
	struct timeval tv = ms_to_tv(timeout_ms);
	return evtimer_add(eng->timer, &tv) < 0 ? -1 : 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct check_engine *check_engine_new(struct event_base *base)
{
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK) {
		log_warn("check: curl_global_init: %s", curl_easy_strerror(curl_init_rc));
		return NULL;
	}

	struct check_engine *eng = xcalloc(1, sizeof(*eng));
	eng->base = base;
	eng->multi = curl_multi_init();
	eng->timer = evtimer_new(base, on_curl_timer, eng);
	if (!eng->multi || !eng->timer) {
		log_warn("check: cannot create the check engine");
		if (eng->multi)
			curl_multi_cleanup(eng->multi);
		if (eng->timer)
			event_free(eng->timer);
		free(eng);
		return NULL;
	}
	curl_multi_setopt(eng->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(eng->multi, CURLMOPT_SOCKETDATA, eng);
	curl_multi_setopt(eng->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(eng->multi, CURLMOPT_TIMERDATA, eng);
	return eng;
}

void check_engine_free(struct check_engine *eng)
{
	if (!eng)
		return;
	/* Checks point at the engine; their owners must free them first. */
	BUG_ON(eng->nchecks != 0);
	curl_multi_cleanup(eng->multi);
	while (eng->socks)
		sock_free(eng, eng->socks);
	event_free(eng->timer);
	free(eng);
}

/* ---- a probe's end: result, next schedule, callback ---- */

static void probe_end(struct check *c, struct check_result *res)
{
	int64_t now = now_us();

	res->latency_us = now - c->start_us;
	/* The detail quotes the backend (a body line, a status text, curl's
	 * words about its TLS) and goes on to logs, JSON and the gate: cleaned
	 * here, once, for every probe kind. */
	res->detail[sizeof(res->detail) - 1] = '\0';
	if (!text_is_clean(res->detail)) {
		char raw[sizeof(res->detail)];
		memcpy(raw, res->detail, sizeof(raw));
		text_clean_buf(res->detail, sizeof(res->detail), raw, strlen(raw));
	}
	c->in_flight = false;

	int64_t next_ms = (c->start_us + conf_interval_ms(c) * 1000 - now) / 1000;
	struct timeval tv = ms_to_tv(next_ms);
	evtimer_add(c->timer, &tv);

	log_debug("check %s: %s (%s)", c->name, check_reason_name(res->reason), res->detail);
	/* Last: the callback may free c. */
	c->cb(c->arg, res);
}

static void probe_fail_internal(struct check *c, const char *why)
{
	struct check_result res = {.reason = CHK_INTERNAL};
	snprintf(res.detail, sizeof(res.detail), "internal: %s", why);
	probe_end(c, &res);
}

/* ---- tcp probe ---- */

static void tcp_close(struct check *c)
{
	if (c->io) {
		event_free(c->io);
		c->io = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

static void tcp_finish(struct check *c, int err, bool timed_out)
{
	struct check_result res = {0};
	char buf[32];

	tcp_close(c);
	if (timed_out) {
		res.reason = CHK_CONNECT_TIMEOUT;
		snprintf(res.detail, sizeof(res.detail), "connect timeout after %s",
			 duration_format(conf_timeout_ms(c), buf, sizeof(buf)));
	} else if (err == 0) {
		res.reason = CHK_OK;
		res.tcp_ok = true;
		fmt_latency(now_us() - c->start_us, buf, sizeof(buf));
		snprintf(res.detail, sizeof(res.detail), "connected in %s", buf);
	} else if (err == ECONNREFUSED) {
		res.reason = CHK_CONNECT_REFUSED;
		snprintf(res.detail, sizeof(res.detail), "connect refused");
	} else if (err == ETIMEDOUT) {
		res.reason = CHK_CONNECT_TIMEOUT;
		snprintf(res.detail, sizeof(res.detail), "connect timeout");
	} else {
		res.reason = CHK_CONNECT_ERROR;
		snprintf(res.detail, sizeof(res.detail), "connect error: %s", strerror(err));
	}
	probe_end(c, &res);
}

static void on_tcp_event(evutil_socket_t fd, short what, void *arg)
{
	struct check *c = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	if (what & EV_TIMEOUT) {
		tcp_finish(c, 0, true);
		return;
	}
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	tcp_finish(c, err, false);
}

static void tcp_start(struct check *c)
{
	c->fd = socket(c->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		char why[96];
		snprintf(why, sizeof(why), "socket: %s", strerror(errno));
		probe_fail_internal(c, why);
		return;
	}
	if (connect(c->fd, (const struct sockaddr *)&c->ss, c->sslen) == 0) {
		tcp_finish(c, 0, false);
		return;
	}
	if (errno != EINPROGRESS) {
		tcp_finish(c, errno, false);
		return;
	}
	struct timeval tv = ms_to_tv(conf_timeout_ms(c));
	c->io = event_new(c->eng->base, c->fd, EV_WRITE, on_tcp_event, c);
	if (!c->io || event_add(c->io, &tv) < 0) {
		tcp_close(c);
		probe_fail_internal(c, "cannot watch the socket");
	}
}

/* ---- https/http probe ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct check *c = arg;
	size_t len = size * n;

	c->body_total += len;
	if (c->body_total > BODY_MAX) {
		c->body_too_big = true;
		return 0; /* aborts with CURLE_WRITE_ERROR */
	}
	size_t room = sizeof(c->body) - c->body_len;
	size_t take = len < room ? len : room;
	memcpy(c->body + c->body_len, p, take);
	c->body_len += take;
	return len;
}

static void http_release(struct check *c)
{
	if (c->easy) {
		curl_multi_remove_handle(c->eng->multi, c->easy);
		curl_easy_cleanup(c->easy);
		c->easy = NULL;
	}
	curl_slist_free_all(c->conn_to_list);
	c->conn_to_list = NULL;
	curl_slist_free_all(c->headers);
	c->headers = NULL;
}

/* Reads health.token_file at each probe (a rotated token is picked up at
 * the next one) into "Authorization: Bearer TOKEN". Returns NULL and sets
 * *why when the file cannot give a token that may stand in a header. */
static char *token_header(const char *path, char *why, size_t wl)
{
	char buf[4096];
	FILE *f = fopen(path, "re");

	if (!f) {
		snprintf(why, wl, "health.token_file %.150s: %s", path, strerror(errno));
		return NULL;
	}
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	bool more = n == sizeof(buf) - 1 && fgetc(f) != EOF;
	fclose(f);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
			 buf[n - 1] == '\t'))
		buf[--n] = '\0';
	const char *bad = more ? "longer than 4 KiB" : n == 0 ? "empty" : NULL;
	for (size_t i = 0; i < n && !bad; i++) {
		unsigned char ch = (unsigned char)buf[i];
		if (ch <= ' ' || ch >= 0x7f)
			bad = "not one token on one line";
	}
	char *h = bad ? NULL : xasprintf("Authorization: Bearer %s", buf);
	explicit_bzero(buf, sizeof(buf));
	if (bad)
		snprintf(why, wl, "health.token_file %.150s: %s", path, bad);
	return h;
}

static void http_setopts(struct check *c)
{
	CURL *e = c->easy;
	const struct tls_conf *tls = &c->conf.tls;
	long tmo = (long)conf_timeout_ms(c);

	curl_easy_setopt(e, CURLOPT_URL, c->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, c);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, tmo);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, tmo);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
	curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "lbd-check");
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	if (c->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&c->ss;
		if (sin6->sin6_scope_id)
			curl_easy_setopt(e, CURLOPT_ADDRESS_SCOPE, (long)sin6->sin6_scope_id);
	}
	if (c->headers)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
	if (c->conf.type != HC_HTTPS)
		return;

	/* Each probe does a full handshake, so a bad certificate shows. */
	curl_easy_setopt(e, CURLOPT_SSL_SESSIONID_CACHE, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, tls->verify ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, tls->verify ? 2L : 0L);
	if (tls->verify && tls->ca)
		curl_easy_setopt(e, CURLOPT_CAINFO, tls->ca);
	if (tls->cert)
		curl_easy_setopt(e, CURLOPT_SSLCERT, tls->cert);
	if (tls->key)
		curl_easy_setopt(e, CURLOPT_SSLKEY, tls->key);
	if (c->conn_to) {
		/* The URL's host is the SNI name; connect to the address. */
		c->conn_to_list = curl_slist_append(NULL, c->conn_to);
		curl_easy_setopt(e, CURLOPT_CONNECT_TO, c->conn_to_list);
	}
}

static void http_start(struct check *c)
{
	c->peer_connected = false;
	c->errbuf[0] = '\0';
	c->body_len = 0;
	c->body_total = 0;
	c->body_too_big = false;

	if (c->conf.token_file) {
		char why[200];
		char *h = token_header(c->conf.token_file, why, sizeof(why));
		if (!h) {
			probe_fail_internal(c, why);
			return;
		}
		c->headers = curl_slist_append(NULL, h);
		explicit_bzero(h, strlen(h));
		free(h);
	}
	c->easy = curl_easy_init();
	if (!c->easy) {
		http_release(c);
		probe_fail_internal(c, "curl_easy_init failed");
		return;
	}
	http_setopts(c);
	CURLMcode mrc = curl_multi_add_handle(c->eng->multi, c->easy);
	if (mrc != CURLM_OK) {
		curl_easy_cleanup(c->easy);
		c->easy = NULL;
		http_release(c);
		probe_fail_internal(c, curl_multi_strerror(mrc));
	}
}

/* The line of the body that explains a failure: the first "[-]" line (kube's
 * failed check) if any, else the first non-empty line. */
static void body_reason(const struct check *c, char *out, size_t len)
{
	const char *p = c->body, *end = c->body + c->body_len;
	const char *first = NULL, *pick = NULL;
	size_t first_len = 0, pick_len = 0;

	out[0] = '\0';
	while (p < end && !pick) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *s = p, *t = le;
		while (s < t && (*s == ' ' || *s == '\t' || *s == '\r'))
			s++;
		while (t > s && (t[-1] == ' ' || t[-1] == '\t' || t[-1] == '\r'))
			t--;
		if (t > s) {
			if (!first) {
				first = s;
				first_len = (size_t)(t - s);
			}
			if (t - s >= 3 && memcmp(s, "[-]", 3) == 0) {
				pick = s;
				pick_len = (size_t)(t - s);
			}
		}
		p = nl ? nl + 1 : end;
	}
	if (!pick) {
		pick = first;
		pick_len = first_len;
	}
	if (!pick)
		return;
	/* Cut between characters, marked, rather than at a byte count. */
	text_clean_buf(out, len, pick, pick_len);
}

static bool is_tls_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_USE_SSL_FAILED:
		return true;
	default:
		return false;
	}
}

/* Errors that happen only once the connection stood. */
static bool is_read_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_UNSUPPORTED_PROTOCOL: /* our URLs: only "HTTP/0.9", i.e. garbage */
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_RANGE_ERROR:
	case CURLE_TOO_MANY_REDIRECTS:
	case CURLE_FILESIZE_EXCEEDED:
	case CURLE_WRITE_ERROR:
		return true;
	default:
		return false;
	}
}

static const char *curl_why(const struct check *c, CURLcode rc)
{
	return c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
}

static void http_classify(struct check *c, CURLcode rc, long status, long oserr,
			  struct check_result *res)
{
	char buf[32], line[LINE_MAX_QUOTE + 1];
	size_t dl = sizeof(res->detail);

	if (rc == CURLE_WRITE_ERROR && c->body_too_big && status > 0)
		rc = CURLE_OK; /* we cut a long body short; the status stands */

	if (rc == CURLE_OK && status == c->conf.expect_status) {
		res->reason = CHK_OK;
		c->auth_warned = false;
		fmt_latency(now_us() - c->start_us, buf, sizeof(buf));
		snprintf(res->detail, dl, "%s %ld in %s", c->label, status, buf);
	} else if (rc == CURLE_OK && (status == 401 || status == 403)) {
		/* k3s runs its apiserver without anonymous auth: /readyz answers
		 * 401 to a check without credentials, on every master at once. */
		res->reason = CHK_BAD_STATUS;
		snprintf(res->detail, dl,
			 "%s %ld: the apiserver wants credentials: set health.tls.cert/key or "
			 "health.token_file%s",
			 c->label, status,
			 c->conf.token_file || c->conf.tls.cert ? " (the ones set were refused)"
								: "");
		if (!c->auth_warned)
			log_warn("check %s: %s", c->name, res->detail);
		c->auth_warned = true;
	} else if (rc == CURLE_OK) {
		res->reason = CHK_BAD_STATUS;
		body_reason(c, line, sizeof(line));
		if (line[0])
			snprintf(res->detail, dl, "%s %ld: %s", c->label, status, line);
		else
			snprintf(res->detail, dl, "%s %ld", c->label, status);
	} else if (rc == CURLE_COULDNT_CONNECT && oserr == ECONNREFUSED) {
		res->reason = CHK_CONNECT_REFUSED;
		snprintf(res->detail, dl, "connect refused");
	} else if ((rc == CURLE_OPERATION_TIMEDOUT && !res->tcp_ok) ||
		   (rc == CURLE_COULDNT_CONNECT && oserr == ETIMEDOUT)) {
		res->reason = CHK_CONNECT_TIMEOUT;
		snprintf(res->detail, dl, "connect timeout after %s",
			 duration_format(conf_timeout_ms(c), buf, sizeof(buf)));
	} else if (rc == CURLE_OPERATION_TIMEDOUT) {
		res->reason = CHK_TIMEOUT;
		snprintf(res->detail, dl, "timeout after %s (%s)",
			 duration_format(conf_timeout_ms(c), buf, sizeof(buf)),
			 status > 0 || c->body_total > 0 ? "partial answer" : "no answer");
	} else if (is_tls_error(rc)) {
		res->reason = CHK_TLS_ERROR;
		snprintf(res->detail, dl, "TLS: %.200s", curl_why(c, rc));
	} else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST) {
		res->reason = CHK_CONNECT_ERROR;
		snprintf(res->detail, dl, "connect error: %.200s",
			 oserr ? strerror((int)oserr) : curl_why(c, rc));
	} else if (is_read_error(rc) || res->tcp_ok) {
		res->reason = CHK_READ_ERROR;
		snprintf(res->detail, dl, "read error: %.200s", curl_why(c, rc));
	} else {
		res->reason = CHK_INTERNAL;
		snprintf(res->detail, dl, "internal: %.200s", curl_why(c, rc));
	}
}

static void http_done(struct check *c, CURLcode rc)
{
	struct check_result res = {0};
	long status = 0, oserr = 0;
	curl_off_t connect_us = 0, tls_us = 0;

	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(c->easy, CURLINFO_OS_ERRNO, &oserr);
	curl_easy_getinfo(c->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
	curl_easy_getinfo(c->easy, CURLINFO_APPCONNECT_TIME_T, &tls_us);
	http_release(c);

	res.status = (int)status;
	/* The TCP connect stood if a socket of the probe had a peer (seen in
	 * sock_cb, which also covers a TLS handshake that hangs), or if curl
	 * got anywhere past it: a status, a TLS or a read error. */
	res.tcp_ok = c->peer_connected || connect_us > 0 || status > 0 || is_tls_error(rc) ||
		     is_read_error(rc);
	/* A finished TLS handshake, a status or a body byte: the peer's
	 * process answered, whatever it said (check_result_transport_dead). */
	res.answered = tls_us > 0 || status > 0 || c->body_total > 0;
	http_classify(c, rc, status, oserr, &res);
	probe_end(c, &res);
}

static void engine_drain(struct check_engine *eng)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(eng->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		/* msg dies with its handle: copy what we need first. */
		CURL *easy = msg->easy_handle;
		CURLcode rc = msg->data.result;
		char *priv = NULL;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
		struct check *c = (struct check *)priv;
		BUG_ON(!c || c->easy != easy);
		http_done(c, rc);
	}
}

/* ---- checks ---- */

static void on_check_timer(evutil_socket_t fd, short what, void *arg)
{
	struct check *c = arg;

	c->start_us = now_us();
	c->in_flight = true;
	if (c->setup_err)
		probe_fail_internal(c, c->setup_err);
	else if (c->conf.type == HC_TCP)
		tcp_start(c);
	else
		http_start(c);
}

static void build_urls(struct check *c)
{
	char host[INET6_ADDRSTRLEN + 2];
	int port = 0;
	const char *path = c->conf.path;
	const char *scheme = c->conf.type == HC_HTTPS ? "https" : "http";
	const char *sni = c->conf.type == HC_HTTPS ? c->conf.tls.sni : NULL;

	if (addr_host(&c->ss, host, sizeof(host), &port) < 0) {
		c->setup_err = "unsupported address family";
		return;
	}
	if (c->conf.type == HC_TCP)
		return;
	if (sni && !sni_ok(sni)) {
		c->setup_err = "tls.sni is not a host name";
		return;
	}
	if (sni) {
		c->url =
		    xasprintf("%s://%s:%d%s%s", scheme, sni, port, path[0] == '/' ? "" : "/", path);
		c->conn_to = xasprintf("%s:%d:%s:%d", sni, port, host, port);
	} else {
		c->url = xasprintf("%s://%s:%d%s%s", scheme, host, port, path[0] == '/' ? "" : "/",
				   path);
	}
}

struct check *check_new(struct check_engine *eng, const struct health_conf *conf,
			const struct sockaddr_conf *addr, const char *backend_name, check_cb cb,
			void *arg)
{
	struct check *c = xcalloc(1, sizeof(*c));

	c->eng = eng;
	c->conf = *conf;
	c->conf.path = xstrdup(conf->path && conf->path[0] ? conf->path : "/readyz");
	c->conf.tls.ca = opt_strdup(conf->tls.ca);
	c->conf.tls.cert = opt_strdup(conf->tls.cert);
	c->conf.tls.key = opt_strdup(conf->tls.key);
	c->conf.tls.sni = opt_strdup(conf->tls.sni);
	if (addr->len > 0 && addr->len <= sizeof(c->ss)) {
		memcpy(&c->ss, &addr->ss, addr->len);
		c->sslen = addr->len;
	} else {
		c->ss.ss_family = AF_UNSPEC;
	}
	c->name = xstrdup(backend_name ? backend_name : "?");
	c->label = path_label(c->conf.path);
	c->cb = cb;
	c->arg = arg;
	c->fd = -1;
	c->timer = evtimer_new(eng->base, on_check_timer, c);
	if (!c->timer) /* evtimer_new() fails only when malloc does */
		xmalloc_oom(0);
	build_urls(c);
	eng->nchecks++;
	return c;
}

void check_start(struct check *c, int64_t first_delay_ms)
{
	if (c->in_flight)
		return; /* the running probe schedules the next one */
	struct timeval tv = ms_to_tv(first_delay_ms);
	evtimer_add(c->timer, &tv);
}

void check_free(struct check *c)
{
	if (!c)
		return;
	http_release(c);
	tcp_close(c);
	event_free(c->timer);
	c->eng->nchecks--;
	free(c->conf.path);
	free(c->conf.tls.ca);
	free(c->conf.tls.cert);
	free(c->conf.tls.key);
	free(c->conf.tls.sni);
	free(c->name);
	free(c->label);
	free(c->url);
	free(c->conn_to);
	free(c);
}
