/* exec.c - see exec.h. */
#define _GNU_SOURCE
#include "upgrade/exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/text.h"
#include "common/xmalloc.h"

struct outbuf {
	char keep[EXEC_KEEP];
	size_t nkeep;
	char line[1024];
	size_t nline;
};

static void keep_bytes(struct outbuf *o, const char *p, size_t n)
{
	if (n >= EXEC_KEEP - 1) {
		p += n - (EXEC_KEEP - 1);
		n = EXEC_KEEP - 1;
	}
	if (o->nkeep + n >= EXEC_KEEP) {
		size_t drop = o->nkeep + n - (EXEC_KEEP - 1);
		memmove(o->keep, o->keep + drop, o->nkeep - drop);
		o->nkeep -= drop;
	}
	memcpy(o->keep + o->nkeep, p, n);
	o->nkeep += n;
}

/* Hands the line gathered so far to fn, cleaned: it goes on to the plan's
 * log and the live view, and a command prints what it likes. */
static void line_out(struct outbuf *o, exec_line_fn fn, void *arg)
{
	char clean[3 * sizeof(o->line)]; /* room for every byte to become U+FFFD */

	if (o->nline > 0 && o->line[o->nline - 1] == '\r')
		o->nline--; /* a CRLF line */
	if (fn) {
		text_clean_buf(clean, sizeof(clean), o->line, o->nline);
		fn(arg, clean);
	}
	o->nline = 0;
}

static void feed_lines(struct outbuf *o, const char *p, size_t n, exec_line_fn fn, void *arg)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n' || o->nline == sizeof(o->line) - 1) {
			line_out(o, fn, arg);
			if (p[i] == '\n')
				continue;
		}
		o->line[o->nline++] = p[i];
	}
}

int exec_run(const char *cmd, int64_t timeout_ms, exec_line_fn on_line, exec_tick_fn tick,
	     void *arg, struct exec_result *r)
{
	int fds[2];
	pid_t pid;
	struct outbuf *o = xcalloc(1, sizeof(*o));
	int64_t start = mono_ms(), kill_at = 0, last_tick = start, eof_by = 0;
	int wst = 0;
	bool open_fd = true, exited = false;

	memset(r, 0, sizeof(*r));
	if (pipe2(fds, O_CLOEXEC) < 0) {
		r->status = -1;
		r->output = xasprintf("pipe: %s", strerror(errno));
		free(o);
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		r->status = -1;
		r->output = xasprintf("fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		free(o);
		return -1;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid); /* both sides, so the group exists before we might signal it */
	close(fds[1]);
	while (!exited || open_fd) {
		int64_t now = mono_ms();
		if (timeout_ms > 0 && !r->timed_out && !r->stopped && now - start >= timeout_ms) {
			r->timed_out = true;
			kill(-pid, SIGTERM);
			kill_at = now + 5000;
		}
		if (tick && now - last_tick >= 1000) {
			last_tick = now;
			if (!r->stopped && !r->timed_out && tick(arg)) {
				r->stopped = true;
				kill(-pid, SIGTERM);
				kill_at = now + 5000;
			}
		}
		if (kill_at && now >= kill_at) {
			kill(-pid, SIGKILL);
			kill_at = 0;
		}
		if (open_fd) {
			struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
			int n = poll(&pfd, 1, 200);
			if (n > 0) {
				char buf[4096];
				ssize_t got = read(fds[0], buf, sizeof(buf));
				if (got > 0) {
					keep_bytes(o, buf, (size_t)got);
					feed_lines(o, buf, (size_t)got, on_line, arg);
				} else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
					open_fd = false;
				}
			}
		} else {
			usleep(100 * 1000);
		}
		if (!exited) {
			pid_t w = waitpid(pid, &wst, WNOHANG);
			if (w == pid) {
				exited = true;
				/* The shell is gone; a background child still holding the
				 * pipe must not keep us here: read for 2s more, then stop
				 * listening (it is not killed: it may be meant to live). */
				eof_by = mono_ms() + 2000;
			}
		} else if (open_fd && mono_ms() >= eof_by) {
			open_fd = false;
		}
	}
	close(fds[0]);
	if (o->nline)
		line_out(o, on_line, arg);
	r->elapsed_ms = mono_ms() - start;
	/* Lines kept, everything else a terminal or JSON could choke on gone. */
	r->output = text_clean_lines(o->keep, o->nkeep, TEXT_NO_LIMIT);
	free(o);
	if (WIFEXITED(wst))
		r->status = WEXITSTATUS(wst);
	else if (WIFSIGNALED(wst))
		r->signal = WTERMSIG(wst), r->status = -1;
	return (!r->timed_out && !r->stopped && WIFEXITED(wst) && r->status == 0) ? 0 : -1;
}

void exec_result_free(struct exec_result *r)
{
	xfree(&r->output);
}

const char *exec_result_str(const struct exec_result *r, char *buf, size_t len)
{
	char d[32];
	if (r->timed_out)
		snprintf(buf, len, "timed out after %s",
			 duration_format(r->elapsed_ms, d, sizeof(d)));
	else if (r->running)
		snprintf(buf, len, "still running (lbctl stopped following it)");
	else if (r->stopped)
		snprintf(buf, len, "stopped (interrupted)");
	else if (r->signal)
		snprintf(buf, len, "killed by signal %d", r->signal);
	else
		snprintf(buf, len, "exit status %d", r->status);
	return buf;
}

/* ---- detached jobs -------------------------------------------------------------------- */

unsigned long long exec_proc_start(int pid)
{
	char path[64], buf[1024], state = 0;
	unsigned long long start = 0;
	ssize_t n;
	int fd;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* "pid (comm) S ppid ...": comm may hold anything, so count from its last ')'.
	 * starttime is field 22, the 20th after the closing parenthesis. */
	char *p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c", &state) != 1 || state == 'Z' || state == 'X')
		return 0;
	for (int field = 3; field <= 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", &start) != 1)
		return 0;
	return start;
}

/* Async-signal-safe pieces for the keeper (a fork of a threaded process). */
static size_t put_str(char *b, size_t at, const char *s)
{
	while (*s)
		b[at++] = *s++;
	return at;
}

static size_t put_int(char *b, size_t at, int v)
{
	char d[16];
	size_t n = 0;
	if (v < 0)
		b[at++] = '-', v = -v;
	do
		d[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < sizeof(d));
	while (n)
		b[at++] = d[--n];
	return at;
}

static void keeper_marker(const char *marker, const char *tmp, const char *what, int v)
{
	char b[64];
	size_t n = put_str(b, 0, what);
	if (v >= 0) {
		b[n++] = ' ';
		n = put_int(b, n, v);
	}
	b[n++] = '\n';
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, b, n) == (ssize_t)n && fsync(fd) == 0) {
		close(fd);
		rename(tmp, marker);
		return;
	}
	close(fd);
	unlink(tmp);
}

/* The keeper: its own session, waits for go, runs the command, writes the marker. */
static void keeper_main(const struct exec_job *job, const char *tmp, int go, int maxfd)
{
	char b;
	ssize_t n;
	int st = 0;

	setsid();
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN); /* the timeout's SIGTERM is for the command */
	signal(SIGPIPE, SIG_DFL);
	/* Nothing of lbctl's may stay open here: PLAN.lock's flock above all. */
	for (int fd = 3; fd < maxfd; fd++)
		if (fd != go)
			close(fd);
	do
		n = read(go, &b, 1);
	while (n < 0 && errno == EINTR);
	close(go);
	if (n != 1) {
		keeper_marker(job->marker, tmp, "not started", -1);
		_exit(0);
	}
	pid_t pid = fork();
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int out = open(job->output, O_WRONLY | O_CREAT | O_APPEND, 0644);
		signal(SIGHUP, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		if (in >= 0)
			dup2(in, 0);
		if (out >= 0) {
			dup2(out, 1);
			dup2(out, 2);
		}
		if (in > 2)
			close(in);
		if (out > 2)
			close(out);
		execl("/bin/sh", "sh", "-c", job->cmd, (char *)NULL);
		_exit(127);
	}
	if (pid < 0) {
		keeper_marker(job->marker, tmp, "exit", 127);
		_exit(0);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(st))
		keeper_marker(job->marker, tmp, "signal", WTERMSIG(st));
	else
		keeper_marker(job->marker, tmp, "exit", WEXITSTATUS(st));
	_exit(0);
}

static bool read_marker(const char *marker, struct exec_result *r, bool *not_started)
{
	char buf[64] = {0};
	int v = 0;
	FILE *f = fopen(marker, "re");
	*not_started = false;
	if (!f)
		return false;
	bool got = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	if (!got)
		return false;
	if (!strncmp(buf, "not started", 11))
		*not_started = true;
	else if (sscanf(buf, "signal %d", &v) == 1)
		r->signal = v, r->status = -1;
	else if (sscanf(buf, "exit %d", &v) == 1)
		r->status = v;
	else
		return false;
	return true;
}

enum exec_fate exec_job_fate(const struct exec_job *job, struct exec_result *r)
{
	bool ns;
	for (int pass = 0; pass < 2; pass++) {
		if (read_marker(job->marker, r, &ns))
			return ns ? EXEC_NOT_STARTED : EXEC_ENDED;
		if (pass == 0 && job->start && exec_proc_start(job->pid) == job->start)
			return EXEC_RUNNING;
		/* gone: it may have written the marker between the two looks */
	}
	return EXEC_LOST;
}

/* Follows a job; mine = the keeper is our child (reap it). */
static int follow(const struct exec_job *job, bool mine, int64_t timeout_ms, exec_line_fn on_line,
		  exec_tick_fn tick, void *arg, struct exec_result *r)
{
	struct outbuf *o = xcalloc(1, sizeof(*o));
	int64_t start = mono_ms(), kill_at = 0, last_tick = start;
	off_t at = 0;
	int fd = -1;
	enum exec_fate fate;

	for (;;) {
		int64_t now = mono_ms();
		bool ended = false;
		if (mine) {
			int wst;
			ended = waitpid(job->pid, &wst, WNOHANG) == job->pid;
		}
		if (fd < 0)
			fd = open(job->output, O_RDONLY | O_CLOEXEC);
		for (ssize_t got = 1; fd >= 0 && got > 0;) {
			char buf[4096];
			got = pread(fd, buf, sizeof(buf), at);
			if (got > 0) {
				at += got;
				keep_bytes(o, buf, (size_t)got);
				feed_lines(o, buf, (size_t)got, on_line, arg);
			}
		}
		fate = exec_job_fate(job, r);
		if (fate != EXEC_RUNNING || ended)
			break;
		if (timeout_ms > 0 && !r->timed_out && now - start >= timeout_ms) {
			r->timed_out = true;
			kill(-job->pid, SIGTERM);
			kill_at = now + 5000;
		}
		if (kill_at && now >= kill_at) {
			kill(-job->pid, SIGKILL);
			kill_at = 0;
		}
		if (tick && now - last_tick >= 1000) {
			last_tick = now;
			if (!r->timed_out && tick(arg)) {
				r->stopped = r->running = true;
				break;
			}
		}
		usleep(100 * 1000);
	}
	if (fd >= 0)
		close(fd);
	if (o->nline)
		line_out(o, on_line, arg);
	r->elapsed_ms = mono_ms() - start;
	r->output = text_clean_lines(o->keep, o->nkeep, TEXT_NO_LIMIT);
	free(o);
	if (r->running)
		return -1;
	if (fate == EXEC_RUNNING) /* our keeper exited without a marker */
		fate = exec_job_fate(job, r);
	if (fate == EXEC_NOT_STARTED) {
		r->status = -1;
		return -1;
	}
	if (fate == EXEC_LOST && !r->timed_out) {
		r->status = -1;
		r->signal = SIGKILL; /* killed with its keeper */
	}
	return (fate == EXEC_ENDED && !r->timed_out && !r->signal && r->status == 0) ? 0 : -1;
}

int exec_job_follow(const struct exec_job *job, int64_t timeout_ms, exec_line_fn on_line,
		    exec_tick_fn tick, void *arg, struct exec_result *r)
{
	memset(r, 0, sizeof(*r));
	return follow(job, false, timeout_ms, on_line, tick, arg, r);
}

int exec_job_run(struct exec_job *job, int64_t timeout_ms, exec_started_fn started,
		 exec_line_fn on_line, exec_tick_fn tick, void *arg, struct exec_result *r)
{
	int go[2];
	char *tmp = xasprintf("%s.tmp", job->marker);
	long maxfd = sysconf(_SC_OPEN_MAX);
	pid_t pid;

	memset(r, 0, sizeof(*r));
	if (maxfd < 0 || maxfd > 65536)
		maxfd = 65536;
	unlink(job->marker);
	if (pipe2(go, O_CLOEXEC) < 0) {
		r->status = -1;
		r->output = xasprintf("pipe: %s", strerror(errno));
		free(tmp);
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		close(go[1]);
		keeper_main(job, tmp, go[0], (int)maxfd);
	}
	free(tmp);
	close(go[0]);
	if (pid < 0) {
		r->status = -1;
		r->output = xasprintf("fork: %s", strerror(errno));
		close(go[1]);
		return -1;
	}
	job->pid = pid;
	/* It waits on the pipe, so it is there to be looked at. */
	job->start = exec_proc_start(pid);
	if (started && started(arg, job) < 0) {
		close(go[1]); /* EOF: it writes "not started" and exits */
		waitpid(pid, NULL, 0);
		r->status = -1;
		r->output = xstrdup("not started: it could not be recorded first");
		return -1;
	}
	ssize_t w;
	do
		w = write(go[1], "g", 1);
	while (w < 0 && errno == EINTR);
	close(go[1]);
	return follow(job, true, timeout_ms, on_line, tick, arg, r);
}
