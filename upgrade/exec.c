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
	else if (r->stopped)
		snprintf(buf, len, "stopped (interrupted)");
	else if (r->signal)
		snprintf(buf, len, "killed by signal %d", r->signal);
	else
		snprintf(buf, len, "exit status %d", r->status);
	return buf;
}
