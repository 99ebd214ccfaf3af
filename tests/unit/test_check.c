/*
 * test_check.c - lbd/check.c: the rise/fall hysteresis, and real probes on
 * an event_base against servers this test runs itself on 127.0.0.1
 * (ephemeral ports): plain HTTP, silent, garbage, TLS with a self-signed
 * certificate made with the openssl CLI, a closed port, a full backlog.
 *
 * Every wait is a bounded event loop run; no sleep is ever an assertion.
 */
#define _GNU_SOURCE
#include <check.h>

#include "tests/unit/unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "common/text.h"
#include "lbd/check.h"

/* ---- hysteresis ---- */

struct hstep {
	bool ok;
	bool changed;
	bool up;
	int counter;
};

static void run_steps(int rise, int fall, const struct hstep *steps, size_t n)
{
	struct check_health h;

	check_health_init(&h, rise, fall);
	ck_assert(!h.known);
	ck_assert(!h.up);
	for (size_t i = 0; i < n; i++) {
		bool changed = check_health_update(&h, steps[i].ok);
		ck_assert_msg(changed == steps[i].changed, "step %zu: changed %d, want %d", i,
			      changed, steps[i].changed);
		ck_assert_msg(h.up == steps[i].up, "step %zu: up %d, want %d", i, h.up,
			      steps[i].up);
		ck_assert_msg(h.counter == steps[i].counter, "step %zu: counter %d, want %d", i,
			      h.counter, steps[i].counter);
		ck_assert(h.known);
		ck_assert_int_ge(h.counter, 0);
		ck_assert_int_le(h.counter, rise + fall - 1);
	}
}

#define RUN_STEPS(rise, fall, arr) run_steps(rise, fall, arr, sizeof(arr) / sizeof(arr[0]))

START_TEST(test_health_first_result_decides)
{
	static const struct hstep ok_first[] = {{true, true, true, 4}, {true, false, true, 4}};
	static const struct hstep fail_first[] = {{false, true, false, 0},
						  {false, false, false, 0}};
	RUN_STEPS(2, 3, ok_first);
	RUN_STEPS(2, 3, fail_first);
}
END_TEST

START_TEST(test_health_rise2_fall3)
{
	/* From fully up, the 3rd failure takes it down; from down, the 2nd
	 * success brings it up. */
	static const struct hstep s[] = {
	    {true, true, true, 4}, /* first: up at once, counter at the top */
	    {false, false, true, 3}, {false, false, true, 2},
	    {false, true, false, 0}, {false, false, false, 0}, /* floor */
	    {true, false, false, 1}, {true, true, true, 4},    /* rise reached: top */
	    {true, false, true, 4},			       /* cap */
	};
	RUN_STEPS(2, 3, s);
}
END_TEST

START_TEST(test_health_rise_gt_fall)
{
	/* rise=5 fall=2: two failures take it down, five successes up. */
	static const struct hstep s[] = {
	    {true, true, true, 6},   {false, false, true, 5}, {false, true, false, 0},
	    {true, false, false, 1}, {true, false, false, 2}, {true, false, false, 3},
	    {true, false, false, 4}, {true, true, true, 6},
	};
	RUN_STEPS(5, 2, s);
}
END_TEST

START_TEST(test_health_flapping)
{
	/* Alternating results never cross the line either way. */
	static const struct hstep from_up[] = {
	    {true, true, true, 4},   {false, false, true, 3}, {true, false, true, 4},
	    {false, false, true, 3}, {true, false, true, 4},  {false, false, true, 3},
	    {false, false, true, 2}, {true, false, true, 4},
	};
	static const struct hstep from_down[] = {
	    {false, true, false, 0}, {true, false, false, 1},  {false, false, false, 0},
	    {true, false, false, 1}, {false, false, false, 0}, {true, false, false, 1},
	    {true, true, true, 4},
	};
	RUN_STEPS(2, 3, from_up);
	RUN_STEPS(2, 3, from_down);
}
END_TEST

START_TEST(test_health_rise1_fall1)
{
	static const struct hstep s[] = {
	    {false, true, false, 0}, {true, true, true, 1},    {true, false, true, 1},
	    {false, true, false, 0}, {false, false, false, 0},
	};
	RUN_STEPS(1, 1, s);
}
END_TEST

START_TEST(test_transport_dead_rule)
{
	struct check_result r = {0};
	static const struct {
		enum check_reason reason;
		bool answered, dead;
	} t[] = {
	    {CHK_OK, true, false},
	    {CHK_CONNECT_REFUSED, false, true},
	    {CHK_CONNECT_TIMEOUT, false, true},
	    {CHK_CONNECT_ERROR, false, true},
	    {CHK_TIMEOUT, false, true},
	    {CHK_TIMEOUT, true, false},
	    {CHK_TLS_ERROR, true, false},
	    {CHK_BAD_STATUS, true, false},
	    {CHK_READ_ERROR, false, false},
	    {CHK_INTERNAL, false, false},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		r.reason = t[i].reason;
		r.answered = t[i].answered;
		ck_assert_msg(check_result_transport_dead(&r) == t[i].dead, "row %zu", i);
	}
}
END_TEST

START_TEST(test_reason_names)
{
	static const char *const want[CHK_REASON_MAX] = {
	    "ok",	 "connect_refused", "connect_timeout", "connect_error", "timeout",
	    "tls_error", "bad_status",	    "read_error",      "internal"};
	for (int i = 0; i < CHK_REASON_MAX; i++)
		ck_assert_str_eq(check_reason_name((enum check_reason)i), want[i]);
	ck_assert_str_eq(check_reason_name(CHK_REASON_MAX), "unknown");
}
END_TEST

/* ---- test servers ---- */

enum srv_mode { SRV_HTTP, SRV_SILENT, SRV_TLS };

struct srv {
	enum srv_mode mode;
	int lfd;
	int port;
	int family;
	const char *reply; /* sent after the request (HTTP and TLS) */
	size_t reply_len;
	size_t big_body; /* then this many more bytes */
	bool no_read;	 /* answer at once, without reading a request */
	SSL_CTX *ctx;
	pthread_t th;
	atomic_bool stop;
	atomic_int accepted;
	atomic_int handshakes;
	char sni[128];	/* written by the thread before handshakes is bumped */
	char req[2048]; /* the last request head, written before the reply is sent */
	int held[64];
	int nheld;
};

static char cert_dir[64];
static char cert_path[128], key_path[128];

static int listen_on(int family, int backlog, int *port)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		len = sizeof(*sin6);
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					: ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

/* Reads until the end of the request head, or a timeout/EOF, into buf
 * (sizeof struct srv's req). */
static void read_request(int fd, SSL *ssl, char *buf)
{
	size_t have = 0;
	const size_t size = sizeof(((struct srv *)0)->req);

	buf[0] = '\0';
	while (have < size - 1) {
		int n = ssl ? SSL_read(ssl, buf + have, (int)(size - 1 - have))
			    : (int)recv(fd, buf + have, size - 1 - have, 0);
		if (n <= 0)
			return;
		have += (size_t)n;
		buf[have] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			return;
	}
}

static void send_all(int fd, SSL *ssl, const char *p, size_t len)
{
	while (len > 0) {
		int n = ssl ? SSL_write(ssl, p, (int)len) : (int)send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

static void serve_one(struct srv *s, int fd)
{
	SSL *ssl = NULL;
	struct timeval tv = {.tv_sec = 3};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (s->mode == SRV_TLS) {
		ssl = SSL_new(s->ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) != 1) {
			ERR_clear_error();
			goto out;
		}
		const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
		snprintf(s->sni, sizeof(s->sni), "%s", name ? name : "");
		atomic_fetch_add(&s->handshakes, 1);
	}
	if (!s->no_read)
		read_request(fd, ssl, s->req);
	send_all(fd, ssl, s->reply, s->reply_len);
	if (s->big_body) {
		static char chunk[16384];
		memset(chunk, 'x', sizeof(chunk));
		for (size_t sent = 0; sent < s->big_body; sent += sizeof(chunk))
			send_all(fd, ssl, chunk, sizeof(chunk));
	}
	if (ssl)
		SSL_shutdown(ssl);
out:
	if (ssl)
		SSL_free(ssl);
	close(fd);
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;
	sigset_t pipe;

	/* A write to a peer that hung up fails with EPIPE here, no signal. */
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, NULL);
	while (!atomic_load(&s->stop)) {
		struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};
		if (poll(&pfd, 1, 20) <= 0)
			continue;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		atomic_fetch_add(&s->accepted, 1);
		if (s->mode == SRV_SILENT) {
			if (s->nheld < (int)(sizeof(s->held) / sizeof(s->held[0])))
				s->held[s->nheld++] = fd;
			else
				close(fd);
			continue;
		}
		serve_one(s, fd);
	}
	return NULL;
}

static struct srv *srv_start_family(enum srv_mode mode, const char *reply, int family)
{
	struct srv *s = calloc(1, sizeof(*s));

	ck_assert_ptr_nonnull(s);
	s->mode = mode;
	s->family = family;
	s->reply = reply ? reply : "";
	s->reply_len = strlen(s->reply);
	s->lfd = listen_on(family, 64, &s->port);
	if (s->lfd < 0) {
		free(s);
		return NULL;
	}
	if (mode == SRV_TLS) {
		s->ctx = SSL_CTX_new(TLS_server_method());
		ck_assert_ptr_nonnull(s->ctx);
		ck_assert_int_eq(SSL_CTX_use_certificate_file(s->ctx, cert_path, SSL_FILETYPE_PEM),
				 1);
		ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(s->ctx, key_path, SSL_FILETYPE_PEM),
				 1);
	}
	ck_assert_int_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
	return s;
}

static struct srv *srv_start(enum srv_mode mode, const char *reply)
{
	struct srv *s = srv_start_family(mode, reply, AF_INET);
	ck_assert_ptr_nonnull(s);
	return s;
}

static void srv_stop(struct srv *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->th, NULL);
	for (int i = 0; i < s->nheld; i++)
		close(s->held[i]);
	close(s->lfd);
	if (s->ctx)
		SSL_CTX_free(s->ctx);
	free(s);
}

/* A port nobody listens on: bound then closed. */
static int closed_port(void)
{
	int port;
	int fd = listen_on(AF_INET, 1, &port);
	ck_assert_int_ge(fd, 0);
	close(fd);
	return port;
}

/* ---- probing ---- */

static struct sockaddr_conf addr_of(int family, int port)
{
	struct sockaddr_conf a;

	memset(&a, 0, sizeof(a));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin->sin_port = htons((uint16_t)port);
		a.len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		sin6->sin6_port = htons((uint16_t)port);
		a.len = sizeof(*sin6);
	}
	return a;
}

static struct health_conf hconf(enum health_type type, int64_t timeout_ms)
{
	struct health_conf h;

	memset(&h, 0, sizeof(h));
	h.type = type;
	h.path = "/readyz";
	h.expect_status = 200;
	h.interval_ms = 60000; /* one probe per test unless said otherwise */
	h.timeout_ms = timeout_ms;
	h.rise = 2;
	h.fall = 3;
	h.tls.verify = false;
	return h;
}

struct ctx {
	struct check *c;
	int n;
	bool free_in_cb;
	struct check_result last;
	int64_t t[32]; /* when each result came */
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_result(void *arg, const struct check_result *r)
{
	struct ctx *x = arg;

	if (x->n < 32)
		x->t[x->n] = mono_ms();
	x->n++;
	x->last = *r;
	if (x->free_in_cb) {
		check_free(x->c);
		x->c = NULL;
	}
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
}

/* Runs the loop until *counter >= target or max_ms passed. Bounded. */
static bool run_until(struct event_base *base, const atomic_int *acounter, const int *counter,
		      int target, int64_t max_ms)
{
	int64_t end = mono_ms() + max_ms;

	for (;;) {
		int v = acounter ? atomic_load(acounter) : *counter;
		int64_t left = end - mono_ms();
		if (v >= target)
			return true;
		if (left <= 0)
			return false;
		/* A short guard so a counter bumped by another thread is seen. */
		int64_t slice = acounter && left > 10 ? 10 : left;
		struct timeval tv = {.tv_sec = slice / 1000, .tv_usec = (slice % 1000) * 1000};
		struct event *guard = evtimer_new(base, on_guard, NULL);
		evtimer_add(guard, &tv);
		event_base_loop(base, EVLOOP_ONCE);
		event_free(guard);
	}
}

static void run_for(struct event_base *base, int64_t ms)
{
	int never = 0;
	run_until(base, NULL, &never, INT_MAX, ms);
}

/* One probe of conf against addr; exactly one result within timeout+3s. */
static struct check_result probe(const struct health_conf *conf, const struct sockaddr_conf *addr)
{
	struct event_base *base = event_base_new();
	struct check_engine *eng = check_engine_new(base);
	struct ctx x = {0};

	ck_assert_ptr_nonnull(eng);
	x.c = check_new(eng, conf, addr, "be1", on_result, &x);
	check_start(x.c, 0);
	ck_assert_msg(run_until(base, NULL, &x.n, 1, conf->timeout_ms + 3000), "no result in time");
	ck_assert_int_eq(x.n, 1);
	check_free(x.c);
	check_engine_free(eng);
	event_base_free(base);
	return x.last;
}

#define REPLY_200 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
#define BODY_503 "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n"
#define REPLY_503                                                                                  \
	"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"    \
	"Content-Length: 63\r\n\r\n" BODY_503

START_TEST(test_http_ok)
{
	struct srv *s = srv_start(SRV_HTTP, REPLY_200);
	struct health_conf h = hconf(HC_HTTP, 1000);
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct check_result r = probe(&h, &a);

	ck_assert_msg(r.reason == CHK_OK, "reason %s: %s", check_reason_name(r.reason), r.detail);
	ck_assert_int_eq(r.status, 200);
	ck_assert(r.tcp_ok);
	ck_assert_int_gt(r.latency_us, 0);
	ck_assert_msg(strncmp(r.detail, "readyz 200 in ", 14) == 0, "detail: %s", r.detail);
	srv_stop(s);
}
END_TEST

START_TEST(test_http_ok_ipv6)
{
	struct srv *s = srv_start_family(SRV_HTTP, REPLY_200, AF_INET6);
	if (!s)
		return; /* no IPv6 loopback here */
	struct health_conf h = hconf(HC_HTTP, 1000);
	struct sockaddr_conf a = addr_of(AF_INET6, s->port);
	struct check_result r = probe(&h, &a);

	ck_assert_msg(r.reason == CHK_OK, "reason %s: %s", check_reason_name(r.reason), r.detail);
	srv_stop(s);
}
END_TEST

START_TEST(test_http_bad_status)
{
	ck_assert_int_eq(strlen(BODY_503), 63);
	struct srv *s = srv_start(SRV_HTTP, REPLY_503);
	struct health_conf h = hconf(HC_HTTP, 1000);
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct check_result r = probe(&h, &a);

	ck_assert_msg(r.reason == CHK_BAD_STATUS, "reason %s", check_reason_name(r.reason));
	ck_assert_int_eq(r.status, 503);
	ck_assert(r.tcp_ok);
	ck_assert(r.answered);
	ck_assert(!check_result_transport_dead(&r)); /* alive: its connections stay */
	ck_assert_str_eq(r.detail, "readyz 503: [-]etcd failed: reason withheld");
	srv_stop(s);
}
END_TEST

START_TEST(test_http_bad_status_no_dash_line)
{
	struct srv *s = srv_start(SRV_HTTP, "HTTP/1.1 500 Oops\r\nContent-Length: 24\r\n\r\n"
					    "\r\n  internal error  \r\nx\n");
	struct health_conf h = hconf(HC_HTTP, 1000);
	h.path = "/livez?verbose";
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct check_result r = probe(&h, &a);

	ck_assert_int_eq(r.reason, CHK_BAD_STATUS);
	ck_assert_str_eq(r.detail, "livez 500: internal error");
	srv_stop(s);
}
END_TEST

/* The body line quoted in a detail keeps its UTF-8, loses its control bytes,
 * and is cut between characters (180 bytes at most, marked "..."). */
START_TEST(test_http_bad_status_utf8)
{
	struct srv *s = srv_start(SRV_HTTP, "HTTP/1.1 503 No\r\nConnection: close\r\n\r\n"
					    "[-]caf\xC3\xA9 \x1b[31m\xE2\x82 down\n");
	struct health_conf h = hconf(HC_HTTP, 1000);
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct check_result r = probe(&h, &a);

	ck_assert_int_eq(r.reason, CHK_BAD_STATUS);
	ck_assert_str_eq(r.detail, "readyz 503: [-]caf\xC3\xA9 \xEF\xBF\xBD[31m\xEF\xBF\xBD down");
	srv_stop(s);

	/* 100 two-byte characters: a byte cut at 180 would fall on a boundary,
	 * so start them one byte in to make it fall inside one. */
	static char reply[512];
	int n = snprintf(reply, sizeof(reply), "HTTP/1.1 503 No\r\nConnection: close\r\n\r\nx");
	for (int i = 0; i < 100; i++)
		n += snprintf(reply + n, sizeof(reply) - (size_t)n, "\xC3\xA9");
	snprintf(reply + n, sizeof(reply) - (size_t)n, "\n");
	s = srv_start(SRV_HTTP, reply);
	a = addr_of(AF_INET, s->port);
	r = probe(&h, &a);
	ck_assert_int_eq(r.reason, CHK_BAD_STATUS);
	ck_assert_msg(text_is_clean(r.detail), "detail: %s", r.detail);
	size_t dl = strlen(r.detail);
	ck_assert_msg(dl > 3 && strcmp(r.detail + dl - 3, "...") == 0, "detail: %s", r.detail);
	ck_assert_uint_le(dl, strlen("readyz 503: ") + 180);
	srv_stop(s);
}
END_TEST

START_TEST(test_http_expect_status)
{
	struct srv *s = srv_start(SRV_HTTP, REPLY_503);
	struct health_conf h = hconf(HC_HTTP, 1000);
	h.expect_status = 503;
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct check_result r = probe(&h, &a);

	ck_assert_int_eq(r.reason, CHK_OK);
	srv_stop(s);
}
END_TEST

START_TEST(test_http_401_wants_credentials)
{
	/* k3s without anonymous auth answers 401 to a check with no credentials:
	 * the detail says what to set, not only the status. */
	struct srv *s = srv_start(SRV_HTTP, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
					    "Connection: close\r\n\r\n");
	struct health_conf h = hconf(HC_HTTP, 1000);
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct check_result r = probe(&h, &a);

	ck_assert_int_eq(r.reason, CHK_BAD_STATUS);
	ck_assert_int_eq(r.status, 401);
	ck_assert_str_eq(r.detail, "readyz 401: the apiserver wants credentials: set "
				   "health.tls.cert/key or health.token_file");
	srv_stop(s);
}
END_TEST

START_TEST(test_http_token_file)
{
	/* health.token_file: its token goes out as a bearer token, read at each
	 * probe; a file that gives no token fails the probe with why. */
	char path[] = "/tmp/lbd-check-token-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "tok-123\n", 8), 8);
	close(fd);

	struct srv *s = srv_start(SRV_HTTP, REPLY_200);
	struct health_conf h = hconf(HC_HTTP, 1000);
	h.token_file = path;
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct check_result r = probe(&h, &a);
	ck_assert_msg(r.reason == CHK_OK, "reason %s: %s", check_reason_name(r.reason), r.detail);
	ck_assert_msg(strstr(s->req, "\r\nAuthorization: Bearer tok-123\r\n"), "request: %s",
		      s->req);

	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "two\nlines\n", 10), 10);
	close(fd);
	r = probe(&h, &a);
	ck_assert_int_eq(r.reason, CHK_INTERNAL);
	ck_assert_msg(strstr(r.detail, "health.token_file") && strstr(r.detail, "not one token"),
		      "detail: %s", r.detail);

	unlink(path);
	r = probe(&h, &a);
	ck_assert_int_eq(r.reason, CHK_INTERNAL);
	ck_assert_msg(strstr(r.detail, "No such file"), "detail: %s", r.detail);
	srv_stop(s);
}
END_TEST

START_TEST(test_http_big_body)
{
	/* 200 with a body far beyond the limit: the status stands, the read
	 * is cut short. A 503 with a huge body is still a bad status. */
	struct srv *s = srv_start(SRV_HTTP, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
	s->big_body = 1 << 20;
	struct health_conf h = hconf(HC_HTTP, 2000);
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct check_result r = probe(&h, &a);
	ck_assert_msg(r.reason == CHK_OK, "reason %s: %s", check_reason_name(r.reason), r.detail);
	srv_stop(s);

	s = srv_start(SRV_HTTP, "HTTP/1.1 503 No\r\nConnection: close\r\n\r\n[-]x failed\n");
	s->big_body = 1 << 20;
	a = addr_of(AF_INET, s->port);
	r = probe(&h, &a);
	ck_assert_int_eq(r.reason, CHK_BAD_STATUS);
	ck_assert_str_eq(r.detail, "readyz 503: [-]x failed");
	srv_stop(s);
}
END_TEST

START_TEST(test_http_silent_timeout)
{
	struct srv *s = srv_start(SRV_SILENT, NULL);
	struct health_conf h = hconf(HC_HTTP, 300);
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct check_result r = probe(&h, &a);

	ck_assert_msg(r.reason == CHK_TIMEOUT, "reason %s: %s", check_reason_name(r.reason),
		      r.detail);
	ck_assert(r.tcp_ok);
	ck_assert_int_eq(r.status, 0);
	ck_assert_int_ge(r.latency_us, 250000);
	ck_assert_int_le(r.latency_us, 300000 + 1500000);
	ck_assert_str_eq(r.detail, "timeout after 300ms (no answer)");
	ck_assert(!r.answered);
	ck_assert(check_result_transport_dead(&r)); /* not a byte: as good as dead */
	srv_stop(s);
}
END_TEST

START_TEST(test_refused)
{
	struct sockaddr_conf a = addr_of(AF_INET, closed_port());
	enum health_type types[] = {HC_HTTP, HC_HTTPS, HC_TCP};

	for (size_t i = 0; i < 3; i++) {
		struct health_conf h = hconf(types[i], 1000);
		struct check_result r = probe(&h, &a);
		ck_assert_msg(r.reason == CHK_CONNECT_REFUSED, "type %zu: %s: %s", i,
			      check_reason_name(r.reason), r.detail);
		ck_assert(!r.tcp_ok);
		ck_assert(check_result_transport_dead(&r));
		ck_assert_str_eq(r.detail, "connect refused");
	}
}
END_TEST

static const char *const garbage[] = {
    "\x01\x02\x03\xff\xfe garbage \x00\x00 more",
    "HTTP/1.1 abc OK\r\n\r\n",
    "HTTP/1.1 999999999999999999 x\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n",
    "HTTP/1.1 503 Bad\r\nContent-Length: 10\r\n\r\n\x01\x1b[31m\xc3\xa9\n\x7f",
    "HTTP/1.1 200",
    "",
    "SSH-2.0-OpenSSH_9.2\r\n",
};

START_TEST(test_http_garbage)
{
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		struct srv *s = srv_start(SRV_HTTP, NULL);
		s->reply = garbage[i];
		s->reply_len = i == 0 ? 21 : strlen(garbage[i]);
		struct health_conf h = hconf(HC_HTTP, 1000);
		struct sockaddr_conf a = addr_of(AF_INET, s->port);
		struct check_result r = probe(&h, &a);
		ck_assert_msg(r.reason == CHK_READ_ERROR || r.reason == CHK_BAD_STATUS,
			      "garbage %zu: %s: %s", i, check_reason_name(r.reason), r.detail);
		ck_assert(r.tcp_ok);
		ck_assert_msg(text_is_clean(r.detail), "garbage %zu: detail not clean text", i);
		srv_stop(s);
	}
}
END_TEST

START_TEST(test_tcp)
{
	struct srv *s = srv_start(SRV_SILENT, NULL);
	struct health_conf h = hconf(HC_TCP, 1000);
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct check_result r = probe(&h, &a);

	ck_assert_msg(r.reason == CHK_OK, "%s: %s", check_reason_name(r.reason), r.detail);
	ck_assert(r.tcp_ok);
	ck_assert_msg(strncmp(r.detail, "connected in ", 13) == 0, "detail: %s", r.detail);
	srv_stop(s);
}
END_TEST

/* A listener whose accept queue is full drops new SYNs: the connect hangs. */
START_TEST(test_connect_timeout)
{
	int port, fill[4];
	int lfd = listen_on(AF_INET, 0, &port);
	struct sockaddr_conf a = addr_of(AF_INET, port);

	ck_assert_int_ge(lfd, 0);
	for (int i = 0; i < 4; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fill[i], (struct sockaddr *)&a.ss, a.len);
	}
	/* Let the handshakes of the fillers settle (setup, not an assertion). */
	usleep(100000);

	enum health_type types[] = {HC_TCP, HC_HTTP, HC_HTTPS};
	for (size_t i = 0; i < 3; i++) {
		struct health_conf h = hconf(types[i], 300);
		struct check_result r = probe(&h, &a);
		ck_assert_msg(r.reason == CHK_CONNECT_TIMEOUT, "type %zu: %s: %s", i,
			      check_reason_name(r.reason), r.detail);
		ck_assert(!r.tcp_ok);
		ck_assert_str_eq(r.detail, "connect timeout after 300ms");
		ck_assert_int_le(r.latency_us, 300000 + 1500000);
	}
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	close(lfd);
}
END_TEST

START_TEST(test_https)
{
	struct srv *s = srv_start(SRV_TLS, REPLY_200);
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct health_conf h = hconf(HC_HTTPS, 2000);
	struct check_result r;

	/* verify off: a self-signed certificate is fine (HAProxy "verify none"). */
	r = probe(&h, &a);
	ck_assert_msg(r.reason == CHK_OK, "%s: %s", check_reason_name(r.reason), r.detail);
	ck_assert(r.tcp_ok);
	ck_assert_str_eq(s->sni, ""); /* no SNI for an IP */

	/* verify on, system CAs: refused. */
	h.tls.verify = true;
	r = probe(&h, &a);
	ck_assert_msg(r.reason == CHK_TLS_ERROR, "%s: %s", check_reason_name(r.reason), r.detail);
	ck_assert(r.tcp_ok);
	ck_assert_msg(strncmp(r.detail, "TLS: ", 5) == 0, "detail: %s", r.detail);

	/* verify on with the right CA: the IP SAN matches. */
	h.tls.ca = cert_path;
	r = probe(&h, &a);
	ck_assert_msg(r.reason == CHK_OK, "%s: %s", check_reason_name(r.reason), r.detail);

	/* SNI: connect to the IP, present (and verify) the name. */
	h.tls.sni = "localhost";
	r = probe(&h, &a);
	ck_assert_msg(r.reason == CHK_OK, "%s: %s", check_reason_name(r.reason), r.detail);
	ck_assert_str_eq(s->sni, "localhost");

	h.tls.sni = "wrong.example";
	r = probe(&h, &a);
	ck_assert_msg(r.reason == CHK_TLS_ERROR, "%s: %s", check_reason_name(r.reason), r.detail);

	/* A bad SNI value never reaches a URL. */
	h.tls.sni = "evil/x@y";
	r = probe(&h, &a);
	ck_assert_int_eq(r.reason, CHK_INTERNAL);
	srv_stop(s);
}
END_TEST

START_TEST(test_https_errors)
{
	/* TLS to a plain HTTP server, and to a server that never handshakes. */
	struct srv *s = srv_start(SRV_HTTP, REPLY_200);
	s->no_read = true;
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct health_conf h = hconf(HC_HTTPS, 1000);
	struct check_result r = probe(&h, &a);
	ck_assert_msg(r.reason == CHK_TLS_ERROR, "%s: %s", check_reason_name(r.reason), r.detail);
	ck_assert(r.tcp_ok);
	srv_stop(s);

	s = srv_start(SRV_SILENT, NULL);
	a = addr_of(AF_INET, s->port);
	h.timeout_ms = 300;
	r = probe(&h, &a);
	ck_assert_msg(r.reason == CHK_TIMEOUT, "%s: %s", check_reason_name(r.reason), r.detail);
	ck_assert(r.tcp_ok);
	srv_stop(s);

	/* An unreadable CA file is a TLS error too, not a crash. */
	s = srv_start(SRV_TLS, REPLY_200);
	a = addr_of(AF_INET, s->port);
	h.timeout_ms = 1000;
	h.tls.verify = true;
	h.tls.ca = "/nonexistent/ca.pem";
	r = probe(&h, &a);
	ck_assert_msg(r.reason == CHK_TLS_ERROR, "%s: %s", check_reason_name(r.reason), r.detail);
	srv_stop(s);
}
END_TEST

/* check_free while the probe waits for an answer: no callback, ever. */
START_TEST(test_free_in_flight)
{
	enum health_type types[] = {HC_HTTP, HC_HTTPS};

	for (size_t i = 0; i < 2; i++) {
		struct srv *s = srv_start(SRV_SILENT, NULL);
		struct event_base *base = event_base_new();
		struct check_engine *eng = check_engine_new(base);
		struct health_conf h = hconf(types[i], 400);
		struct sockaddr_conf a = addr_of(AF_INET, s->port);
		struct ctx x = {0};

		x.c = check_new(eng, &h, &a, "be1", on_result, &x);
		check_start(x.c, 0);
		ck_assert(run_until(base, &s->accepted, NULL, 1, 2000));
		run_for(base, 50);
		ck_assert_int_eq(x.n, 0);
		check_free(x.c);
		run_for(base, 800); /* past the probe's timeout */
		ck_assert_int_eq(x.n, 0);
		check_engine_free(eng);
		event_base_free(base);
		srv_stop(s);
	}
}
END_TEST

/* check_free before the first probe, and from inside its own callback. */
START_TEST(test_free_early_and_in_cb)
{
	struct srv *s = srv_start(SRV_HTTP, REPLY_200);
	struct event_base *base = event_base_new();
	struct check_engine *eng = check_engine_new(base);
	struct health_conf h = hconf(HC_HTTP, 1000);
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct ctx x = {0}, y = {0};

	h.interval_ms = 100;
	x.c = check_new(eng, &h, &a, "be1", on_result, &x);
	check_start(x.c, 0);
	check_free(x.c);

	y.free_in_cb = true;
	y.c = check_new(eng, &h, &a, "be2", on_result, &y);
	check_start(y.c, 0);
	ck_assert(run_until(base, NULL, &y.n, 1, 3000));
	run_for(base, 400);
	ck_assert_int_eq(x.n, 0);
	ck_assert_int_eq(y.n, 1);
	ck_assert_ptr_null(y.c);
	check_engine_free(eng);
	event_base_free(base);
	srv_stop(s);
}
END_TEST

/* Probes repeat every interval, one at a time, first after first_delay. */
START_TEST(test_schedule)
{
	struct srv *s = srv_start(SRV_HTTP, REPLY_200);
	struct event_base *base = event_base_new();
	struct check_engine *eng = check_engine_new(base);
	struct health_conf h = hconf(HC_HTTP, 100);
	struct sockaddr_conf a = addr_of(AF_INET, s->port);
	struct ctx x = {0};

	h.interval_ms = 150;
	x.c = check_new(eng, &h, &a, "be1", on_result, &x);
	int64_t t0 = mono_ms();
	check_start(x.c, 200);
	ck_assert(run_until(base, NULL, &x.n, 1, 3000));
	ck_assert_int_ge(x.t[0] - t0, 190);
	ck_assert(run_until(base, NULL, &x.n, 5, 5000));
	for (int i = 1; i < 5; i++) {
		int64_t gap = x.t[i] - x.t[i - 1];
		ck_assert_msg(gap >= 100 && gap <= 1000, "gap %d: %lld ms", i, (long long)gap);
	}
	ck_assert_int_eq(x.last.reason, CHK_OK);
	check_free(x.c);
	check_engine_free(eng);
	event_base_free(base);
	srv_stop(s);
}
END_TEST

/* Many checks on one engine at once, mixed results. */
START_TEST(test_many)
{
	struct srv *ok = srv_start(SRV_HTTP, REPLY_200);
	struct srv *bad = srv_start(SRV_HTTP, REPLY_503);
	struct event_base *base = event_base_new();
	struct check_engine *eng = check_engine_new(base);
	struct ctx x[24];
	int port_closed = closed_port();

	memset(x, 0, sizeof(x));
	for (int i = 0; i < 24; i++) {
		struct health_conf h = hconf(i % 4 == 3 ? HC_TCP : HC_HTTP, 1000);
		int port = i % 3 == 0 ? ok->port : i % 3 == 1 ? bad->port : port_closed;
		struct sockaddr_conf a = addr_of(AF_INET, port);
		x[i].c = check_new(eng, &h, &a, "be", on_result, &x[i]);
		check_start(x[i].c, 0);
	}
	int64_t end = mono_ms() + 5000;
	for (int i = 0; i < 24; i++)
		ck_assert(run_until(base, NULL, &x[i].n, 1, end - mono_ms()));
	for (int i = 0; i < 24; i++) {
		enum check_reason want = i % 3 == 2   ? CHK_CONNECT_REFUSED
					 : i % 4 == 3 ? CHK_OK
					 : i % 3 == 0 ? CHK_OK
						      : CHK_BAD_STATUS;
		ck_assert_msg(x[i].last.reason == want, "check %d: %s: %s", i,
			      check_reason_name(x[i].last.reason), x[i].last.detail);
		ck_assert_int_eq(x[i].n, 1);
		check_free(x[i].c);
	}
	check_engine_free(eng);
	event_base_free(base);
	srv_stop(ok);
	srv_stop(bad);
}
END_TEST

/* ---- main ---- */

static void make_cert(void)
{
	char cmd[1024];

	snprintf(cert_dir, sizeof(cert_dir), "/tmp/lbd-test-check-XXXXXX");
	if (!mkdtemp(cert_dir)) {
		perror("test_check: mkdtemp");
		exit(1);
	}
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", cert_dir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", cert_dir);
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
		 "-keyout %s -out %s -days 2 -subj /CN=localhost "
		 "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1",
		 key_path, cert_path);
	if (system(cmd) != 0) {
		fprintf(stderr, "test_check: openssl could not make a certificate\n");
		exit(1);
	}
}

static void remove_cert(void)
{
	unlink(cert_path);
	unlink(key_path);
	rmdir(cert_dir);
}

static Suite *check_suite(void)
{
	Suite *s = suite_create("check");
	TCase *tc = tcase_create("health");

	tcase_add_test(tc, test_health_first_result_decides);
	tcase_add_test(tc, test_transport_dead_rule);
	tcase_add_test(tc, test_health_rise2_fall3);
	tcase_add_test(tc, test_health_rise_gt_fall);
	tcase_add_test(tc, test_health_flapping);
	tcase_add_test(tc, test_health_rise1_fall1);
	tcase_add_test(tc, test_reason_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("probe");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_http_ok);
	tcase_add_test(tc, test_http_ok_ipv6);
	tcase_add_test(tc, test_http_bad_status);
	tcase_add_test(tc, test_http_bad_status_no_dash_line);
	tcase_add_test(tc, test_http_bad_status_utf8);
	tcase_add_test(tc, test_http_expect_status);
	tcase_add_test(tc, test_http_401_wants_credentials);
	tcase_add_test(tc, test_http_token_file);
	tcase_add_test(tc, test_http_big_body);
	tcase_add_test(tc, test_http_silent_timeout);
	tcase_add_test(tc, test_refused);
	tcase_add_test(tc, test_http_garbage);
	tcase_add_test(tc, test_tcp);
	tcase_add_test(tc, test_connect_timeout);
	tcase_add_test(tc, test_https);
	tcase_add_test(tc, test_https_errors);
	tcase_add_test(tc, test_free_in_flight);
	tcase_add_test(tc, test_free_early_and_in_cb);
	tcase_add_test(tc, test_schedule);
	tcase_add_test(tc, test_many);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* TEST_CHECK_DEBUG=1 shows every probe's result line. */
	if (getenv("TEST_CHECK_DEBUG"))
		log_setup(LOG_FMT_TEXT, LOG_LVL_DEBUG, "test_check");
	make_cert();
	int rc = unit_run(check_suite());
	remove_cert();
	return rc;
}
