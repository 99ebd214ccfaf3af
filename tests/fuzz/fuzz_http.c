/*
 * fuzz_http.c - lbd's HTTP servers as a client sees them: raw bytes in, one
 * HTTP answer out. (It was fuzz_admin.c; it serves the gate's listener too.)
 *
 * admin.c and gate.c parse and route on libevent's evhttp (common/httpd.c)
 * and have no transport-free entry point for the whole path, so this harness
 * runs the real things in-process, built as lbd builds them: a struct server
 * from a config in a scratch directory and admin_new() with its unix socket
 * and a TCP listener that needs a bearer token; and gate_start() with a
 * gate config (file store, tokens file) and a bound loopback socket as
 * gate.listen, as lbd's gate process gets it. All on one event_base that the
 * harness drives. Each input is written to a fresh connection (the admin
 * unix socket; the admin TCP listener when the input starts with "TCP\n";
 * the gate listener when it starts with "GATE\n"), the write side is shut,
 * and the loop runs until the server closes the connection. Every route
 * runs, edits included (they persist to the scratch state_dir); after each
 * input the runtime overlay is reset and every gate lease released, so
 * inputs do not pile up state.
 *
 * Not covered: the admin socket's gate routes (/v1/gate/...), which lbd forwards to
 * its gate process (lbd/gatesup.c forks one; here the admin server has no
 * gate, and answers them 404), and a status page route (there is none yet).
 *
 * Invariants: no crash, leak or sanitizer report; the server closes the
 * connection within its request timeout + 2 s; whatever it answers is one
 * complete HTTP response: a status line, headers ended by an empty line, a
 * body of exactly Content-Length bytes, or ending at the close where that is
 * what the answer says (HTTP/1.0, "Connection: close"), never a 500, and a JSON object body
 * with Content-Type application/json -- except, as documented, GET /metrics
 * on the admin API (Prometheus text) and an answer to HEAD (no body). No
 * fd stays open for good after the connection ends.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <dirent.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "gate/gate.h"
#include "lbd/admin.h"
#include "lbd/server.h"
#include "tests/fuzz/fuzz.h"

/*
 * libevent answers some requests itself, before any callback of ours: a bad
 * request line or header, a body over max_body (400/413/501...), with an
 * HTML page, which common/httpd.c rewrites as JSON. Build with
 * -DFUZZ_HTTP_ALLOW_EVHTTP_HTML=1 to tolerate evhttp's own page (recognised
 * exactly, by its template) when chasing something else.
 */
#ifndef FUZZ_HTTP_ALLOW_EVHTTP_HTML
#define FUZZ_HTTP_ALLOW_EVHTTP_HTML 0
#endif

enum target { ADMIN_UNIX, ADMIN_TCP, GATE };

static struct event_base *base;
static struct server srv;
static struct admin *adm;
static struct gate *gate;
static char dir[64], sock_path[128];
static int tcp_port, gate_port;

static int free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
		fatal("fuzz_http: no free port: %s", strerror(errno));
	close(fd);
	return ntohs(sin.sin_port);
}

/* gate.listen as lbd hands it to the gate process: bound, listening, non-blocking. */
static int gate_listen_fd(int *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
		fatal("fuzz_http: gate.listen: %s", strerror(errno));
	*port = ntohs(sin.sin_port);
	return fd;
}

static void put(const char *name, const char *text, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || chmod(path, 0600) < 0)
		fatal("fuzz_http: cannot write %s", path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char cfg_path[128], token[128], yaml[2048], *err = NULL;
	struct config_errors errs = {0};

	fuzz_quiet_logs();
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/dev/shm/lbd-fuzz-http.%d", (int)getpid());
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		fatal("fuzz_http: mkdir %s", dir);
	fuzz_scratch_at_exit(dir);
	snprintf(sock_path, sizeof(sock_path), "%s/admin.sock", dir);
	put("token", "s3cret\n", token, sizeof(token));
	tcp_port = free_port();
	snprintf(yaml, sizeof(yaml),
		 "state_dir: %s/state\n"
		 "admin: {socket: %s, listen: \"127.0.0.1:%d\", token_file: %s}\n"
		 "frontends: [{name: vip, listen: \"127.0.0.1:%d\", pool: masters}]\n"
		 "pools:\n"
		 "  - name: masters\n"
		 "    drain_timeout: 1h\n"
		 "    backends:\n"
		 "      - {name: m1, address: \"127.0.0.1:1\"}\n"
		 "      - {name: m2, address: \"127.0.0.1:2\", weight: 3}\n"
		 "    health: {type: tcp, interval: 1h, timeout: 1s}\n"
		 "  - name: other\n"
		 "    balance: round_robin\n"
		 "    backends: [{name: o1, address: \"[::1]:3\"}]\n"
		 "    health: {type: http, path: /healthz, interval: 1h, timeout: 1s}\n",
		 dir, sock_path, tcp_port, token, free_port());
	put("lbd.yaml", yaml, cfg_path, sizeof(cfg_path));

	struct config *cfg = config_load(cfg_path, &errs);
	if (!cfg)
		fatal("fuzz_http: config: %s", errs.n ? errs.msgs[0] : "?");
	if (!(base = event_base_new()))
		fatal("fuzz_http: event_base_new");
	if (server_start(&srv, base, cfg_path, cfg, false, false, &err) < 0)
		fatal("fuzz_http: server_start: %s", err);
	if (!(adm = admin_new(base, &srv, &err)))
		fatal("fuzz_http: admin_new: %s", err);

	/* The gate, as its process runs it: its own config (the gate takes it over). */
	char gtok[128], gcfg_path[128];
	int gfd = gate_listen_fd(&gate_port);
	put("gate-tokens", "# node token\nnode-1 tok1\nnode-2 tok2\n* admintok\n", gtok,
	    sizeof(gtok));
	snprintf(yaml, sizeof(yaml),
		 "state_dir: %s/gate-state\n"
		 "admin: {socket: %s/gate-admin.sock}\n"
		 "frontends: [{name: v, listen: \"127.0.0.1:1\", pool: m}]\n"
		 "pools:\n"
		 "  - name: m\n"
		 "    backends: [{name: node-1, address: \"127.0.0.1:2\"}]\n"
		 "gate:\n"
		 "  listen: \"127.0.0.1:%d\"\n"
		 "  tokens_file: %s\n"
		 "  store: file\n"
		 "  request_timeout: %ds\n"
		 "  concurrency: {masters: 1, workers: 2}\n"
		 "  lease_ttl: 1h\n",
		 dir, dir, gate_port, gtok, ADMIN_REQUEST_TIMEOUT_S);
	put("gate.yaml", yaml, gcfg_path, sizeof(gcfg_path));
	snprintf(cfg_path, sizeof(cfg_path), "%s/gate-state", dir);
	if (mkdir(cfg_path, 0700) < 0 && errno != EEXIST)
		fatal("fuzz_http: mkdir %s", cfg_path);
	struct config_errors gerrs = {0};
	struct config *gcfg = config_load(gcfg_path, &gerrs);
	if (!gcfg)
		fatal("fuzz_http: gate config: %s", gerrs.n ? gerrs.msgs[0] : "?");
	if (!(gate = gate_start(base, gcfg, gfd, false, &err)))
		fatal("fuzz_http: gate_start: %s", err ? err : "?");
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* connect(), carried through a signal (EINTR: the connect goes on; wait
 * for it and read its result). */
static int connect_retry(int fd, const struct sockaddr *sa, socklen_t len)
{
	if (connect(fd, sa, len) == 0)
		return 0;
	if (errno != EINTR)
		return -1;
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int err = 0;
	socklen_t elen = sizeof(err);
	while (poll(&p, 1, 5000) < 0 && errno == EINTR)
		;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err) {
		errno = err ? err : errno;
		return -1;
	}
	return 0;
}

static int connect_to(enum target t)
{
	int fd;

	if (t != ADMIN_UNIX) {
		struct sockaddr_in sin = {.sin_family = AF_INET,
					  .sin_port =
					      htons((uint16_t)(t == GATE ? gate_port : tcp_port)),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect_retry(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
			fatal("fuzz_http: connect tcp: %s", strerror(errno));
	} else {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect_retry(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
			fatal("fuzz_http: connect unix: %s", strerror(errno));
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

static void on_client(evutil_socket_t fd, short what, void *arg)
{
}

/* Sends data, shuts the write side, and collects the answer until lbd
 * closes. Returns the bytes received (in *out, NUL-terminated). */
static size_t exchange(enum target t, const uint8_t *data, size_t size, char **out)
{
	int fd = connect_to(t);
	size_t sent = 0, got = 0, cap = 4096;
	char *buf = xmalloc(cap + 1);
	int64_t deadline = now_ms() + (ADMIN_REQUEST_TIMEOUT_S + 2) * 1000;
	struct event *ev = event_new(base, fd, EV_READ | EV_WRITE | EV_PERSIST, on_client, NULL);
	bool shut = false, eof = false;

	event_add(ev, NULL);
	while (!eof) {
		FUZZ_ASSERT(now_ms() < deadline, "lbd kept the connection open past %ds",
			    ADMIN_REQUEST_TIMEOUT_S + 2);
		while (sent < size) {
			ssize_t n = write(fd, data + sent, size - sent);
			if (n <= 0)
				break;
			sent += (size_t)n;
		}
		if (sent == size && !shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
			event_del(ev);
			event_assign(ev, base, fd, EV_READ | EV_PERSIST, on_client, NULL);
			event_add(ev, NULL);
		}
		for (;;) {
			if (got == cap)
				buf = xrealloc(buf, (cap *= 2) + 1);
			ssize_t n = read(fd, buf + got, cap - got);
			if (n > 0) {
				got += (size_t)n;
				continue;
			}
			/* EOF, or a reset when lbd closed with our bytes unread. */
			if (n == 0 || (errno != EAGAIN && errno != EINTR))
				eof = true;
			else if (!shut && errno != EAGAIN)
				eof = true;
			break;
		}
		if (!eof)
			event_base_loop(base, EVLOOP_ONCE);
	}
	event_free(ev);
	close(fd);
	buf[got] = '\0';
	*out = buf;
	return got;
}

/* libevent's own error page (evhttp_send_error's template). */
static bool evhttp_html(const char *body, size_t len, int status)
{
	char head[64];
	int n = snprintf(head, sizeof(head), "<HTML><HEAD>\n<TITLE>%d ", status);
	return len > (size_t)n && !memcmp(body, head, (size_t)n) && len >= 15 &&
	       !memcmp(body + len - 15, "</BODY></HTML>\n", 15);
}

/* The value of header name in the header block [h, end), or NULL. */
static const char *header(const char *h, const char *end, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	for (const char *l = h; l < end;) {
		const char *eol = memmem(l, (size_t)(end - l), "\r\n", 2);
		if (!eol)
			eol = end;
		if ((size_t)(eol - l) > nl && !strncasecmp(l, name, nl) && l[nl] == ':') {
			const char *v = l + nl + 1;
			while (v < eol && *v == ' ')
				v++;
			*vlen = (size_t)(eol - v);
			return v;
		}
		l = eol + 2;
	}
	return NULL;
}

/* req: the bytes sent (its method and path decide the documented exceptions). */
static void check_answer(enum target t, const uint8_t *req, size_t req_len, const char *resp,
			 size_t len)
{
	int status = 0, major, minor;

	if (len == 0)
		return; /* closed without answering: a request that never completed */
	for (;;) {
		/* evhttp answers in the request's version, even "HTTP/0.1" */
		FUZZ_ASSERT(sscanf(resp, "HTTP/%d.%d %d", &major, &minor, &status) == 3,
			    "not an HTTP answer: %.80s", resp);
		FUZZ_ASSERT(status >= 100 && status <= 599, "status %d", status);
		if (status >= 200)
			break;
		/* 100 Continue, then the answer */
		const char *next = memmem(resp, len, "\r\n\r\n", 4);
		FUZZ_ASSERT(next, "a %d without the end of its headers", status);
		len -= (size_t)(next + 4 - resp);
		resp = next + 4;
		if (len == 0)
			return;
	}
	FUZZ_ASSERT(status != 500, "500 answer:\n%.2000s", resp);

	const char *eoh = memmem(resp, len, "\r\n\r\n", 4);
	FUZZ_ASSERT(eoh, "an answer without the end of its headers:\n%.2000s", resp);
	const char *hdrs = (const char *)memchr(resp, '\n', len) + 1, *body = eoh + 4;
	size_t blen = len - (size_t)(body - resp), vlen;
	const char *cl = header(hdrs, eoh + 2, "Content-Length", &vlen);
	if (cl) {
		char num[24] = {0};
		memcpy(num, cl, vlen < sizeof(num) - 1 ? vlen : sizeof(num) - 1);
		FUZZ_ASSERT(strtoull(num, NULL, 10) == blen,
			    "Content-Length %s but %zu byte(s) of body:\n%.2000s", num, blen, resp);
	}
	/* An answer to HEAD has no body (a request line that only starts with
	 * HEAD may be refused, with a body: checked below). */
	bool head = req_len >= 5 && !memcmp(req, "HEAD ", 5);
	if (status == 204 || status == 304)
		FUZZ_ASSERT(blen == 0, "a body with a %d", status);
	if ((head && blen == 0) || status == 204 || status == 304)
		return;
	/* Without Content-Length the body ends at the close (HTTP/1.0, or
	 * "Connection: close"), which we read to; else it could not end. */
	size_t cvlen;
	const char *conn = header(hdrs, eoh + 2, "Connection", &cvlen);
	FUZZ_ASSERT(cl || major < 1 || (major == 1 && minor == 0) ||
			(conn && cvlen == 5 && !strncasecmp(conn, "close", 5)),
		    "no Content-Length nor Connection: close in an HTTP/%d.%d answer (status "
		    "%d):\n%.2000s",
		    major, minor, status, resp);
	if (FUZZ_HTTP_ALLOW_EVHTTP_HTML && evhttp_html(body, blen, status) &&
	    (status == 400 || status == 413 || status == 501 || status == 405 || status == 414))
		return;
	size_t ctlen;
	const char *ct = header(hdrs, eoh + 2, "Content-Type", &ctlen);
	FUZZ_ASSERT(ct, "no Content-Type (status %d):\n%.2000s", status, resp);
	/* /metrics, with or without a query, is Prometheus text. */
	if (t != GATE && status == 200 && req_len >= 13 && !memcmp(req, "GET /metrics", 12) &&
	    (req[12] == ' ' || req[12] == '?')) {
		FUZZ_ASSERT(ctlen >= 10 && !memcmp(ct, "text/plain", 10), "metrics as %.*s",
			    (int)ctlen, ct);
		return;
	}
	FUZZ_ASSERT(ctlen >= 16 && !memcmp(ct, "application/json", 16),
		    "Content-Type %.*s (status %d):\n%.2000s", (int)ctlen, ct, status, resp);
	json_error_t je;
	json_t *j = json_loadb(body, blen, 0, &je);
	FUZZ_ASSERT(json_is_object(j), "the body is not a JSON object (%s):\n%.2000s", je.text,
		    resp);
	if (status >= 400)
		FUZZ_ASSERT(json_object_get(j, "error") || json_object_get(j, "reasons"),
			    "a %d without a reason:\n%.2000s", status, resp);
	json_decref(j);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

/*
 * Known, bounded: admin.c's guard holds a reference on each connection's
 * bufferevent until its request completes or ADMIN_REQUEST_TIMEOUT_S
 * passes, so a client that hangs up mid-request leaves its fd open in lbd
 * for up to that long (reported; tests/integration/test_faults.py has the
 * expected-failure test). What must not happen is an fd kept for good: the
 * allowance is the number of inputs of the last ADMIN_REQUEST_TIMEOUT_S + 2
 * seconds. Above 2000 held fds the harness waits for the guards to expire,
 * so a long run does not reach RLIMIT_NOFILE.
 */
#define HOLD_S (ADMIN_REQUEST_TIMEOUT_S + 2)
static int64_t recent[HOLD_S];

static int recent_inputs(int64_t now_s)
{
	int n = 0;
	for (int i = 0; i < HOLD_S; i++)
		n += (int)(recent[i] >> 32) > now_s - HOLD_S ? (int)(recent[i] & 0xffffffff) : 0;
	return n;
}

static void count_input(int64_t now_s)
{
	int64_t *b = &recent[now_s % HOLD_S];
	if ((*b >> 32) != now_s)
		*b = now_s << 32;
	(*b)++;
}

/* Back to no leases, through the gate's API itself. */
static void release_all(void)
{
	json_t *out = NULL, *l;
	size_t i;
	int status = gate_handle(gate, "GET", "/v1/gate/leases", NULL, NULL, &out);

	FUZZ_ASSERT(status == 200, "listing leases: %d", status);
	json_array_foreach(json_object_get(out, "leases"), i, l)
	{
		char path[512];
		json_t *o2 = NULL;
		snprintf(path, sizeof(path), "/v1/gate/leases/%s",
			 json_string_value(json_object_get(l, "node")));
		status = gate_handle(gate, "DELETE", path, NULL, NULL, &o2);
		FUZZ_ASSERT(status == 200, "releasing %s: %d", path, status);
		json_decref(o2);
	}
	json_decref(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int baseline;
	enum target t = ADMIN_UNIX;
	char *resp = NULL, *err = NULL;

	if (size >= 4 && memcmp(data, "TCP\n", 4) == 0)
		t = ADMIN_TCP, data += 4, size -= 4;
	else if (size >= 5 && memcmp(data, "GATE\n", 5) == 0)
		t = GATE, data += 5, size -= 5;
	count_input(now_ms() / 1000);
	size_t len = exchange(t, data, size, &resp);
	check_answer(t, data, size, resp, len);
	free(resp);
	/* Let evhttp free the connection, then drop what the input edited. */
	for (int i = 0; i < 4; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	if (srv.st.n > 0 && server_reload_ex(&srv, true, NULL, &err) != SERR_OK)
		fatal("fuzz_http: reset: %s", err ? err : "?");
	release_all();

	int fds = count_fds();
	if (!baseline)
		baseline = fds;
	FUZZ_ASSERT(fds <= baseline + 8 + recent_inputs(now_ms() / 1000),
		    "fd leak: %d open fds, %d at first, %d inputs in the last %d s", fds, baseline,
		    recent_inputs(now_ms() / 1000), HOLD_S);
	while (count_fds() > baseline + 2000)
		event_base_loop(base, EVLOOP_ONCE);
	return 0;
}
