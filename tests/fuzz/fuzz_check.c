/*
 * fuzz_check.c - the health check's handling of a backend's answer: HTTP
 * parsing (libcurl), the status, and the reason/detail lbd extracts from the
 * body ("readyz 503: [-]etcd failed").
 *
 * That extraction (check.c body_reason, http_classify) is static, so the
 * harness runs a real check: one http check against an in-process loopback
 * server on the same event_base. Each input is the server's whole answer:
 * the server reads the request, writes the input, shuts its write side, and
 * the loop runs until the check reports.
 *
 * Invariants: no crash, leak or sanitizer report; one result per probe, in
 * time; a detail that is non-empty printable ASCII; OK only with status 200;
 * a bad status quotes it ("readyz 503..."); the TCP connect counts as done.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lbd/check.h"
#include "common/text.h"
#include "tests/fuzz/fuzz.h"

static struct event_base *base;
static struct check_engine *eng;
static struct check *chk;
static int lfd = -1, cfd = -1;
static struct event *lev, *cev;
static const uint8_t *answer;
static size_t answer_len;
static char req[8192];
static size_t req_len;
static bool answered, have_result;
static struct check_result result;

static void on_result(void *arg, const struct check_result *res)
{
	FUZZ_ASSERT(!have_result, "two results for one probe");
	result = *res;
	have_result = true;
}

static void send_answer(void)
{
	size_t off = 0;

	answered = true;
	fcntl(cfd, F_SETFL, 0); /* blocking: the check reads on this same loop, so the
				   answer must fit the socket buffer (-max_len 65536 does) */
	while (off < answer_len) {
		ssize_t n = write(cfd, answer + off, answer_len - off);
		if (n <= 0)
			break; /* the check gave up (reset): fine */
		off += (size_t)n;
	}
	shutdown(cfd, SHUT_WR);
}

static void on_conn(evutil_socket_t fd, short what, void *arg)
{
	ssize_t n = read(fd, req + req_len, sizeof(req) - 1 - req_len);

	if (n > 0) {
		req_len += (size_t)n;
		req[req_len] = '\0';
	}
	if (!answered && (n <= 0 || strstr(req, "\r\n\r\n") || req_len == sizeof(req) - 1))
		send_answer();
	if (n == 0 || (n < 0 && errno != EAGAIN))
		event_del(cev);
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	int s = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (s < 0)
		return;
	FUZZ_ASSERT(cfd < 0, "a second connection during one probe");
	int big = 1 << 20;
	setsockopt(s, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	cfd = s;
	cev = event_new(base, s, EV_READ | EV_PERSIST, on_conn, NULL);
	event_add(cev, NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	char addr[64];
	const char *why = NULL;
	struct sockaddr_conf sa;
	struct health_conf hc = {.type = HC_HTTP,
				 .path = "/readyz?verbose",
				 .expect_status = 200,
				 .interval_ms = 3600 * 1000,
				 .timeout_ms = 2000,
				 .rise = 1,
				 .fall = 1};

	fuzz_quiet_logs();
	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(lfd, 8) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &len) < 0)
		fatal("fuzz_check: listen: %s", strerror(errno));
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sin.sin_port));
	if (sockaddr_conf_parse(addr, &sa, &why) < 0)
		fatal("fuzz_check: %s: %s", addr, why);
	base = event_base_new();
	eng = check_engine_new(base);
	lev = event_new(base, lfd, EV_READ | EV_PERSIST, on_accept, NULL);
	event_add(lev, NULL);
	chk = check_new(eng, &hc, &sa, "fuzz", on_result, NULL);
	sockaddr_conf_free(&sa);
	return 0;
}

static void check_result_ok(void)
{
	const struct check_result *r = &result;
	size_t n = strnlen(r->detail, sizeof(r->detail));

	FUZZ_ASSERT(r->reason < CHK_REASON_MAX, "reason %d", (int)r->reason);
	FUZZ_ASSERT(n > 0 && n < sizeof(r->detail), "empty or unterminated detail");
	/* Valid UTF-8 without control bytes: what JSON and a log line can take. */
	FUZZ_ASSERT(text_is_clean(r->detail), "the detail is not clean text: %s", r->detail);
	FUZZ_ASSERT(r->tcp_ok, "the connect stood, but tcp_ok is false (%s)", r->detail);
	if (r->reason == CHK_OK)
		FUZZ_ASSERT(r->status == 200, "OK with status %d", r->status);
	if (r->reason == CHK_BAD_STATUS) {
		char want[32];
		snprintf(want, sizeof(want), "readyz %d", r->status);
		FUZZ_ASSERT(r->status != 200 && strncmp(r->detail, want, strlen(want)) == 0,
			    "bad status %d, detail: %s", r->status, r->detail);
	}
	FUZZ_ASSERT(r->reason != CHK_CONNECT_REFUSED && r->reason != CHK_CONNECT_TIMEOUT,
		    "connect failure on a listening socket: %s", r->detail);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	answer = data;
	answer_len = size;
	answered = have_result = false;
	req_len = 0;
	req[0] = '\0';
	check_start(chk, 0);
	while (!have_result)
		event_base_loop(base, EVLOOP_ONCE);
	check_result_ok();
	if (cev)
		event_free(cev);
	cev = NULL;
	if (cfd >= 0)
		close(cfd);
	cfd = -1;
	return 0;
}
