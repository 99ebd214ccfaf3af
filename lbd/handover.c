/*
 * handover.c - see handover.h.
 *
 * One lbd is at most in one of two roles at a time: the new process, until
 * its old one said "go" (or went away), and the old process, from a restart
 * until it exits. What the environment handed over is process-wide by
 * nature, so the state here is one static struct, touched only by the main
 * thread. Between fork and exec only async-signal-safe calls: lbd has
 * threads.
 */
#define _GNU_SOURCE
#include "lbd/handover.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/sdnotify.h"
#include "common/version.h"
#include "common/xmalloc.h"
#include "lbd/admin.h"
#include "lbd/gatesup.h"
#include "lbd/pool.h"
#include "lbd/relay.h"
#include "lbd/server.h"

#define MAX_INHERIT 1024
#define DRAIN_REPORT_MS 1000
/* A new lbd said "failed" or closed its channel: wait this long for its exit. */
#define EXIT_WAIT_MS 2000

static const char *const kind_names[] = {"relay", "admin-unix", "admin-tcp", "metrics", "gate"};

struct inherited {
	enum handover_kind kind;
	int fd;
};

static struct {
	int argc;
	char **argv;
	char exe[PATH_MAX];
	struct event_base *base;
	struct server *s;
	struct admin *a;
	struct gatesup *g;
	struct event *chld_ev;
	/* the new process: what it inherited, and its old lbd */
	struct inherited inh[MAX_INHERIT];
	size_t ninh;
	int up_fd;	    /* LBD_HANDOVER_FD until msg_open, else -1 */
	struct msgchan *up; /* to the old lbd */
	void (*go)(void *); /* run once on "go" */
	void *go_arg;
	struct event *checks; /* polls for the first check results */
	int64_t checks_until;
	pid_t prev_pid;	      /* the old lbd, while it drains */
	long long prev_conns; /* what it still holds */
	/* the old process */
	pid_t child;		   /* a new lbd not ready yet */
	pid_t exited;		   /* a new lbd reaped while its channel is still open */
	char exit_why[96];	   /* how that one exited */
	char fail_why[480];	   /* what a new lbd said ("failed") before it exits */
	struct msgchan *down;	   /* to it */
	struct admin_req *waiting; /* POST /v1/restart, answered with the result */
	struct event *deadline;
	bool done; /* handed over: draining */
	pid_t successor;
	struct event *report; /* "draining" messages */
	char last_error[512];
} H = {.up_fd = -1};

static void say(struct msgchan *c, json_t *m)
{
	if (c && m)
		msg_send(c, m);
	json_decref(m);
}

/* ---- the new process: what was handed over ------------------------------------------ */

void handover_init(int argc, char **argv)
{
	const char *inh = getenv("LBD_INHERIT"), *up = getenv("LBD_HANDOVER_FD");
	ssize_t n = readlink("/proc/self/exe", H.exe, sizeof(H.exe) - 1);

	H.argc = argc;
	H.argv = argv;
	H.exe[n > 0 ? n : 0] = '\0';
	/* After a package upgrade the running binary's file is gone: the new
	 * one has its name. */
	char *deleted = strstr(H.exe, " (deleted)");
	if (deleted && deleted[10] == '\0')
		*deleted = '\0';
	for (const char *p = inh; p && *p && H.ninh < MAX_INHERIT;) {
		const char *colon = strchr(p, ':');
		char *end;
		if (!colon)
			break;
		for (size_t k = 0; k < sizeof(kind_names) / sizeof(kind_names[0]); k++) {
			if (strlen(kind_names[k]) == (size_t)(colon - p) &&
			    strncmp(kind_names[k], p, (size_t)(colon - p)) == 0) {
				long fd = strtol(colon + 1, &end, 10);
				int acc = 0;
				socklen_t len = sizeof(acc);
				/* Only what really is a listening socket. */
				if (fd > 2 && fd < INT_MAX &&
				    getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) ==
					0 &&
				    acc) {
					fcntl((int)fd, F_SETFD, FD_CLOEXEC);
					H.inh[H.ninh++] = (struct inherited){k, (int)fd};
				}
			}
		}
		p = strchr(colon, ',');
		p = p ? p + 1 : NULL;
	}
	if (up) {
		H.up_fd = atoi(up);
		if (H.up_fd > 2)
			fcntl(H.up_fd, F_SETFD, FD_CLOEXEC);
		else
			H.up_fd = -1;
	}
	unsetenv("LBD_INHERIT");
	unsetenv("LBD_HANDOVER_FD");
}

bool handover_inherited(void)
{
	return H.up_fd >= 0 || H.up;
}

static bool same_addr(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct sockaddr_storage got;
	socklen_t glen = sizeof(got);

	if (getsockname(fd, (struct sockaddr *)&got, &glen) < 0 || got.ss_family != sa->sa_family)
		return false;
	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *a = (const void *)&got, *b = (const void *)sa;
		return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *a = (const void *)&got, *b = (const void *)sa;
		return a->sin6_port == b->sin6_port &&
		       memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
	}
	case AF_UNIX: {
		const struct sockaddr_un *a = (const void *)&got, *b = (const void *)sa;
		return strncmp(a->sun_path, b->sun_path, sizeof(a->sun_path)) == 0;
	}
	}
	return len == glen && memcmp(&got, sa, len) == 0;
}

int handover_take(enum handover_kind kind, const struct sockaddr *sa, socklen_t len)
{
	for (size_t i = 0; i < H.ninh; i++) {
		if (H.inh[i].fd < 0 || H.inh[i].kind != kind || !same_addr(H.inh[i].fd, sa, len))
			continue;
		int fd = H.inh[i].fd;
		H.inh[i].fd = -1;
		return fd;
	}
	return -1;
}

static void close_unused(void)
{
	for (size_t i = 0; i < H.ninh; i++) {
		if (H.inh[i].fd < 0)
			continue;
		log_info("handover: the config no longer uses an inherited %s socket; closing it",
			 kind_names[H.inh[i].kind]);
		close(H.inh[i].fd);
		H.inh[i].fd = -1;
	}
}

void handover_fail(const char *why)
{
	if (H.up_fd < 0)
		return;
	/* Before the event loop: a blocking write of one small message. */
	json_t *m = json_pack("{s:s,s:s}", "t", "failed", "why", why ? why : "unknown");
	char *text = m ? json_dumps(m, JSON_COMPACT) : NULL;
	if (text) {
		uint32_t len = (uint32_t)strlen(text);
		unsigned char hdr[4] = {len >> 24, len >> 16, len >> 8, len};
		if (write(H.up_fd, hdr, 4) == 4 && write(H.up_fd, text, len) < 0)
			log_warn("handover: cannot tell the old lbd why: %s", strerror(errno));
	}
	free(text);
	json_decref(m);
}

/* ---- the new process: ready, then go ------------------------------------------------ */

static void take_over(void)
{
	if (!H.go)
		return;
	void (*go)(void *) = H.go;
	H.go = NULL;
	go(H.go_arg);
}

static void on_up_msg(struct msgchan *c, json_t *m, void *arg)
{
	const char *t = json_string_value(json_object_get(m, "t"));

	if (!t)
		return;
	if (strcmp(t, "go") == 0) {
		log_info("handover: pid %d stopped accepting; taking over", (int)H.prev_pid);
		take_over();
	} else if (strcmp(t, "gate") == 0) {
		gatesup_go(H.g); /* the old gate process is gone */
	} else if (strcmp(t, "draining") == 0) {
		H.prev_conns = (long long)json_integer_value(json_object_get(m, "connections"));
	}
}

static void on_up_closed(struct msgchan *c, const char *why, void *arg)
{
	if (H.go)
		log_warn("handover: the old lbd (pid %d) went away before it said go; taking over",
			 (int)H.prev_pid);
	else if (H.prev_pid)
		log_info("handover: pid %d has finished draining", (int)H.prev_pid);
	H.prev_pid = 0;
	msg_close(&H.up);
	take_over();
	gatesup_go(H.g);
}

/* Every backend has a first check result (or the wait is over): say ready. */
static void poll_checks(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = H.s;
	size_t unknown = 0;

	for (size_t i = 0; i < s->npools; i++)
		for (size_t j = 0; j < s->pools[i]->nbe; j++)
			unknown += !s->pools[i]->be[j]->health.known;
	if (unknown > 0 && mono_ms() < H.checks_until) {
		struct timeval tv = {0, 50 * 1000};
		evtimer_add(H.checks, &tv);
		return;
	}
	if (unknown > 0)
		log_warn("handover: %zu backend(s) without a check result after %dms; ready anyway",
			 unknown, HANDOVER_CHECKS_MS);
	say(H.up,
	    json_pack("{s:s,s:i,s:s}", "t", "ready", "pid", (int)getpid(), "version", lbd_version));
	log_info("handover: ready; waiting for pid %d to stop accepting", (int)H.prev_pid);
}

/* ---- the old process ---------------------------------------------------------------- */

static void reply_waiting(int status, json_t *body)
{
	if (H.waiting)
		admin_reply_json(H.waiting, status, body);
	else
		json_decref(body);
	H.waiting = NULL;
}

/* The new lbd (pid) will not take over: this one serves on as before. */
static void abandon(pid_t pid, const char *why)
{
	snprintf(H.last_error, sizeof(H.last_error), "the new lbd (pid %d) %s", (int)pid, why);
	log_err("restart: %s; this lbd (pid %d) keeps serving", H.last_error, (int)getpid());
	if (H.child > 0) {
		kill(H.child, SIGKILL); /* not reaped yet: the pid is still its */
		H.child = -H.child;	/* on_sigchld reaps it */
	}
	H.exited = 0;
	H.fail_why[0] = '\0';
	msg_close(&H.down);
	evtimer_del(H.deadline);
	reply_waiting(500, json_pack("{s:s}", "error", H.last_error));
}

static void report_draining(evutil_socket_t fd, short what, void *arg)
{
	say(H.down, json_pack("{s:s,s:i,s:I}", "t", "draining", "pid", (int)getpid(), "connections",
			      (json_int_t)server_active_conns(H.s)));
}

/* version: the new lbd's, as it said in "ready" (an older one says none). */
static void hand_over(pid_t pid, const char *version)
{
	struct timeval tv = {DRAIN_REPORT_MS / 1000, 0};

	/* Stop accepting, then let the new lbd start: the accept queues are
	 * the same sockets, so a connection arriving now waits, not fails. */
	for (size_t i = 0; i < H.s->nfes; i++)
		frontend_stop(H.s->fes[i]);
	admin_handed_over(H.a);
	say(H.down, json_pack("{s:s}", "t", "go"));
	msg_flush(H.down, 1000);
	/* The gate moves only once ours is gone: never two gates at once. */
	gatesup_retire(H.g);
	say(H.down, json_pack("{s:s}", "t", "gate"));
	msg_flush(H.down, 1000);
	H.done = true;
	H.successor = pid;
	H.child = 0;
	evtimer_del(H.deadline);
	/* From now on systemd follows the new process (we are still main: allowed). */
	sdnotifyf("MAINPID=%d\nREADY=1\nSTATUS=replaced by pid %d; draining", (int)pid, (int)pid);
	log_info("restart: pid %d took over; draining %llu connection(s)", (int)pid,
		 (unsigned long long)server_active_conns(H.s));
	reply_waiting(200, json_pack("{s:i,s:i,s:s,s:s}", "old_pid", (int)getpid(), "new_pid",
				     (int)pid, "version", version ? version : "unknown",
				     "old_version", lbd_version));
	H.report = event_new(H.base, -1, EV_PERSIST, report_draining, NULL);
	event_add(H.report, &tv);
	report_draining(-1, 0, NULL);
	server_handover_drain(H.s);
}

/*
 * A new lbd that fails writes why ("failed"), closes the channel and exits:
 * the message, the channel's EOF and SIGCHLD arrive together, in any order.
 * Its own words say the most, then its exit status, then the EOF alone. So
 * nothing is decided on the message (and a message callback must not close
 * the channel: msg.h), SIGCHLD waits for the channel to be read to its end,
 * and the end of the channel waits (EXIT_WAIT_MS at most) for SIGCHLD.
 */
static void wait_exit(void)
{
	struct timeval tv = {EXIT_WAIT_MS / 1000, (EXIT_WAIT_MS % 1000) * 1000};
	evtimer_add(H.deadline, &tv); /* on_deadline if it does not exit */
}

static const char *best_why(const char *exit_why)
{
	return H.fail_why[0] ? H.fail_why : exit_why;
}

static void on_down_msg(struct msgchan *c, json_t *m, void *arg)
{
	const char *t = json_string_value(json_object_get(m, "t"));

	if (H.done || (H.child <= 0 && !H.exited) || !t)
		return;
	if (strcmp(t, "ready") == 0 && H.child > 0 && !H.fail_why[0]) {
		hand_over(H.child, json_string_value(json_object_get(m, "version")));
	} else if (strcmp(t, "failed") == 0) {
		const char *why = json_string_value(json_object_get(m, "why"));
		snprintf(H.fail_why, sizeof(H.fail_why), "refused to start: %s",
			 why ? why : "(no reason given)");
		if (H.child > 0)
			wait_exit();
	}
}

static void on_down_closed(struct msgchan *c, const char *why, void *arg)
{
	if (H.done) {
		msg_close(&H.down); /* the new lbd is gone: nobody to report to */
		return;
	}
	if (H.exited) {
		abandon(H.exited, best_why(H.exit_why));
	} else if (H.child > 0) {
		msg_close(&H.down);
		wait_exit();
	}
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	char why[96];

	if (H.exited) { /* reaped, but its channel is held open by someone else */
		abandon(H.exited, best_why(H.exit_why));
		return;
	}
	if (H.child <= 0)
		return;
	if (!H.down)
		snprintf(why, sizeof(why), "closed the handover channel before it was ready");
	else
		snprintf(why, sizeof(why), "was not ready within %ds", HANDOVER_READY_MS / 1000);
	abandon(H.child, best_why(why));
}

static void on_sigchld(evutil_socket_t sig, short what, void *arg)
{
	pid_t want = H.child < 0 ? -H.child : H.child;
	int status;
	char why[96];

	if (want <= 0 || waitpid(want, &status, WNOHANG) != want)
		return;
	if (H.child < 0) {
		H.child = 0; /* reaped the one abandon() killed */
		return;
	}
	if (WIFEXITED(status))
		snprintf(why, sizeof(why), "exited with status %d before it was ready",
			 WEXITSTATUS(status));
	else
		snprintf(why, sizeof(why), "was killed by signal %d before it was ready",
			 WTERMSIG(status));
	H.child = 0;  /* reaped: never signal that number again */
	if (H.down) { /* its last words may wait unread: on_down_closed decides */
		H.exited = want;
		snprintf(H.exit_why, sizeof(H.exit_why), "%s", why);
		return;
	}
	abandon(want, best_why(why));
}

/* The listening sockets to hand over, as LBD_INHERIT; fds collects them. */
static char *inherit_list(int *fds, size_t *nfds, size_t max)
{
	struct admin_fd afds[8];
	size_t na = admin_listen_fds(H.a, afds, 8), len = 0, cap = 256;
	char *out = xmalloc(cap);

	*nfds = 0;
	out[0] = '\0';
#define ADD(kind, fd)                                                                              \
	do {                                                                                       \
		if (*nfds < max) {                                                                 \
			fds[(*nfds)++] = (fd);                                                     \
			if (len + 32 > cap)                                                        \
				out = xrealloc(out, cap *= 2);                                     \
			len += (size_t)snprintf(out + len, cap - len, "%s%s:%d", len ? "," : "",   \
						kind_names[kind], (fd));                           \
		}                                                                                  \
	} while (0)
	for (size_t i = 0; i < H.s->nfes; i++) {
		int f[256];
		size_t n = relay_frontend_fds(H.s->fes[i], f, 256);
		for (size_t j = 0; j < n; j++)
			ADD(HANDOVER_RELAY, f[j]);
	}
	for (size_t i = 0; i < na; i++)
		ADD(afds[i].kind, afds[i].fd);
	if (H.g && gatesup_listen_fd(H.g) >= 0)
		ADD(HANDOVER_GATE, gatesup_listen_fd(H.g));
#undef ADD
	return out;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* fork + exec of the binary on disk with the listening sockets; 0 or -1 with why. */
static int spawn(char *why, size_t whylen)
{
	int fds[MAX_INHERIT], sv[2];
	size_t nfds, nenv = 0;
	extern char **environ;

	if (H.done) {
		snprintf(why, whylen, "this lbd has handed over to pid %d already",
			 (int)H.successor);
		return -1;
	}
	if (H.go) {
		snprintf(why, whylen, "this lbd is still taking over from pid %d", (int)H.prev_pid);
		return -1;
	}
	if (H.child != 0 || H.exited) {
		pid_t busy = H.exited ? H.exited : H.child < 0 ? -H.child : H.child;
		snprintf(why, whylen, "a restart is already under way (pid %d)", (int)busy);
		return -1;
	}
	if (!H.exe[0] || access(H.exe, X_OK) != 0) {
		snprintf(why, whylen, "cannot run %.200s: %s", H.exe[0] ? H.exe : "the binary",
			 strerror(errno));
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(why, whylen, "socketpair: %s", strerror(errno));
		return -1;
	}
	char *list = inherit_list(fds, &nfds, MAX_INHERIT - 1);
	for (char **e = environ; *e; e++)
		nenv++;
	char **envp = xcalloc(nenv + 3, sizeof(*envp));
	size_t k = 0;
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "LBD_INHERIT=", 12) != 0 &&
		    strncmp(*e, "LBD_HANDOVER_FD=", 16) != 0)
			envp[k++] = *e;
	char *inh = xasprintf("LBD_INHERIT=%s", list), *up = xasprintf("LBD_HANDOVER_FD=%d", sv[1]);
	envp[k++] = inh;
	envp[k++] = up;

	/* The new lbd gets these and nothing else (libcurl's sockets, say). */
	fds[nfds] = sv[1];
	qsort(fds, nfds + 1, sizeof(*fds), cmp_int);
	pid_t pid = fork();
	if (pid == 0) {
		unsigned lo = 3;
		for (size_t i = 0; i <= nfds; i++) {
			if ((unsigned)fds[i] > lo)
				close_range(lo, (unsigned)fds[i] - 1, 0);
			lo = (unsigned)fds[i] + 1;
			fcntl(fds[i], F_SETFD, 0);
		}
		close_range(lo, ~0U, 0);
		execve(H.exe, H.argv, envp);
		_exit(127);
	}
	int eno = errno;
	close(sv[1]);
	free(envp);
	free(inh);
	free(up);
	free(list);
	if (pid < 0) {
		close(sv[0]);
		snprintf(why, whylen, "fork: %s", strerror(eno));
		return -1;
	}
	H.child = pid;
	H.fail_why[0] = '\0';
	H.down = msg_open(H.base, sv[0], on_down_msg, on_down_closed, NULL);
	struct timeval tv = {HANDOVER_READY_MS / 1000, 0};
	evtimer_add(H.deadline, &tv);
	log_info("restart: started %s as pid %d with %zu listening socket(s); waiting for it to "
		 "be ready",
		 H.exe, (int)pid, nfds);
	return 0;
}

void handover_begin(void)
{
	char why[256];

	if (spawn(why, sizeof(why)) < 0)
		log_err("restart: %s; this lbd keeps serving", why);
}

static void route_restart(struct admin_req *r, void *arg)
{
	char why[256];

	if (spawn(why, sizeof(why)) < 0) {
		admin_error(r, H.done || H.child || H.exited || H.go ? 409 : 500, "%s", why);
		return;
	}
	H.waiting = admin_defer(r);
}

bool handover_done(void)
{
	return H.done;
}

static void status_hook(json_t *o, void *arg)
{
	handover_status(o);
}

void handover_status(json_t *o)
{
	json_object_set_new(o, "version", json_string(lbd_version));
	if (H.prev_pid)
		json_object_set_new(o, "previous",
				    json_pack("{s:i,s:s,s:I}", "pid", (int)H.prev_pid, "state",
					      H.go ? "stopping" : "draining", "connections",
					      (json_int_t)H.prev_conns));
	if (H.child > 0)
		json_object_set_new(
		    o, "restart", json_pack("{s:i,s:s}", "pid", (int)H.child, "state", "starting"));
	if (H.done)
		json_object_set_new(o, "successor", json_integer(H.successor));
	if (H.last_error[0])
		json_object_set_new(o, "last_restart_error", json_string(H.last_error));
}

void handover_start(struct event_base *base, struct server *s, struct admin *a, struct gatesup *g,
		    void (*go)(void *arg), void *arg)
{
	H.base = base;
	H.s = s;
	H.a = a;
	H.g = g;
	H.deadline = evtimer_new(base, on_deadline, NULL);
	H.chld_ev = evsignal_new(base, SIGCHLD, on_sigchld, NULL);
	event_add(H.chld_ev, NULL);
	admin_route(a, ADMIN_POST, "/v1/restart", route_restart, NULL);
	admin_on_status(a, status_hook, NULL);
	close_unused();
	H.go = go;
	H.go_arg = arg;
	if (H.up_fd < 0) {
		take_over();
		gatesup_go(g);
		return;
	}
	H.prev_pid = getppid();
	H.up = msg_open(base, H.up_fd, on_up_msg, on_up_closed, NULL);
	H.up_fd = -1;
	H.checks = evtimer_new(base, poll_checks, NULL);
	H.checks_until = mono_ms() + HANDOVER_CHECKS_MS;
	poll_checks(-1, 0, NULL);
}

void handover_stop(void)
{
	if (H.child > 0) {
		kill(H.child, SIGKILL);
		waitpid(H.child, NULL, 0);
	}
	H.child = 0;
	reply_waiting(503, json_pack("{s:s}", "error", "lbd is stopping"));
	if (H.down) {
		report_draining(-1, 0, NULL); /* the last word: none left */
		msg_flush(H.down, 1000);
	}
	msg_close(&H.down);
	msg_close(&H.up);
	if (H.report)
		event_free(H.report);
	if (H.checks)
		event_free(H.checks);
	if (H.deadline)
		event_free(H.deadline);
	if (H.chld_ev)
		event_free(H.chld_ev);
	H.report = H.checks = H.deadline = H.chld_ev = NULL;
}
