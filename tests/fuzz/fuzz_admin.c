/*
 * fuzz_admin.c - the admin API as a client sees it: raw bytes in, one HTTP
 * answer out.
 *
 * admin.c parses and routes on libevent's evhttp and has no transport-free
 * entry point, so this harness runs the real thing in-process: a struct
 * server from a config in a scratch directory, admin_new() with its unix
 * socket and a TCP listener that needs a bearer token, all on one
 * event_base that the harness drives. Each input is written to a fresh
 * connection (the unix socket; the TCP listener when the input starts with
 * "TCP\n"), the write side is shut, and the loop runs until lbd closes the
 * connection. Every route runs, edits included (they persist to the scratch
 * state_dir); after each input the runtime overlay is reset, so inputs do
 * not pile up backends.
 *
 * Invariants: no crash, leak or sanitizer report; lbd closes the connection
 * within ADMIN_REQUEST_TIMEOUT_S + 2 s; whatever it answers is one
 * well-formed HTTP status line, never a 500; no fd stays open after the
 * connection ends.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <dirent.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lbd/admin.h"
#include "lbd/server.h"
#include "tests/fuzz/fuzz.h"

static struct event_base *base;
static struct server srv;
static struct admin *adm;
static char dir[64], sock_path[128];
static int tcp_port;

static int free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
		fatal("fuzz_admin: no free port: %s", strerror(errno));
	close(fd);
	return ntohs(sin.sin_port);
}

static void put(const char *name, const char *text, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || chmod(path, 0600) < 0)
		fatal("fuzz_admin: cannot write %s", path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char cfg_path[128], token[128], yaml[2048], *err = NULL;
	struct config_errors errs = {0};

	fuzz_quiet_logs();
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/dev/shm/lbd-fuzz-admin.%d", (int)getpid());
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		fatal("fuzz_admin: mkdir %s", dir);
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
		fatal("fuzz_admin: config: %s", errs.n ? errs.msgs[0] : "?");
	if (!(base = event_base_new()))
		fatal("fuzz_admin: event_base_new");
	if (server_start(&srv, base, cfg_path, cfg, false, false, &err) < 0)
		fatal("fuzz_admin: server_start: %s", err);
	if (!(adm = admin_new(base, &srv, &err)))
		fatal("fuzz_admin: admin_new: %s", err);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_to(bool tcp)
{
	int fd;

	if (tcp) {
		struct sockaddr_in sin = {.sin_family = AF_INET,
					  .sin_port = htons((uint16_t)tcp_port),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
			fatal("fuzz_admin: connect tcp: %s", strerror(errno));
	} else {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
			fatal("fuzz_admin: connect unix: %s", strerror(errno));
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

static void on_client(evutil_socket_t fd, short what, void *arg)
{
}

/* Sends data, shuts the write side, and collects the answer until lbd
 * closes. Returns the bytes received (in *out, NUL-terminated). */
static size_t exchange(bool tcp, const uint8_t *data, size_t size, char **out)
{
	int fd = connect_to(tcp);
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

static void check_answer(const char *resp, size_t len)
{
	int status = 0;

	if (len == 0)
		return;	  /* closed without answering: a request that never completed */
	int major, minor; /* evhttp answers in the request's version, even "HTTP/0.1" */
	FUZZ_ASSERT(sscanf(resp, "HTTP/%d.%d %d", &major, &minor, &status) == 3,
		    "not an HTTP answer: %.80s", resp);
	FUZZ_ASSERT(status >= 200 && status <= 599, "status %d", status);
	FUZZ_ASSERT(status != 500, "500 answer:\n%.2000s", resp);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int baseline;
	bool tcp = size >= 4 && memcmp(data, "TCP\n", 4) == 0;
	char *resp = NULL, *err = NULL;

	if (tcp)
		data += 4, size -= 4;
	count_input(now_ms() / 1000);
	size_t len = exchange(tcp, data, size, &resp);
	check_answer(resp, len);
	free(resp);
	/* Let evhttp free the connection, then drop what the input edited. */
	for (int i = 0; i < 4; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	if (srv.st.n > 0 && server_reload_ex(&srv, true, NULL, &err) != SERR_OK)
		fatal("fuzz_admin: reset: %s", err ? err : "?");

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
