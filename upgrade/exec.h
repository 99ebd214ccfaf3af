/*
 * exec.h - run one node command (an expanded plan template) with a bound.
 *
 * The command runs as `/bin/sh -c CMD` in its own process group, stdin from
 * /dev/null, stdout and stderr together into a pipe. Each line is handed to
 * a callback as it comes (for the step log and the live view) and the last
 * EXEC_KEEP bytes are kept for the failure message. Both are clean text
 * (common/text.h): a line has no control byte, the kept output only \n and
 * \t, whatever the command printed. At the timeout the group
 * gets SIGTERM, then SIGKILL 5s later. lbctl never makes a command up: what
 * runs is exactly what the plan says.
 */
#ifndef LBD_EXEC_H
#define LBD_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EXEC_KEEP 8192

typedef void (*exec_line_fn)(void *arg, const char *line);
/* Called about once a second while the command runs; return true to stop it (Ctrl-C). */
typedef bool (*exec_tick_fn)(void *arg);

struct exec_result {
	int status;	/* exit status when it exited (0 = success) */
	int signal;	/* the signal that ended it, or 0 */
	bool timed_out; /* killed at the timeout */
	bool stopped;	/* killed because tick asked (a job: no longer followed) */
	bool running;	/* a job left running when tick asked */
	int64_t elapsed_ms;
	char *output; /* the last EXEC_KEEP bytes of stdout+stderr, cleaned (text_clean_lines) */
};

/* Returns 0 when it ran and exited 0; -1 otherwise (r says why; r->output
 * has the text of a spawn failure). timeout_ms 0 = no bound. */
int exec_run(const char *cmd, int64_t timeout_ms, exec_line_fn on_line, exec_tick_fn tick,
	     void *arg, struct exec_result *r);
void exec_result_free(struct exec_result *r);
/* "exit status 3", "killed by signal 9", "timed out after 15m" */
const char *exec_result_str(const struct exec_result *r, char *buf, size_t len);

/*
 * A detached job: a command whose fate outlives lbctl.
 *
 * exec_job_run forks a keeper that leaves lbctl's session (setsid: no
 * SIGHUP, no terminal Ctrl-C, and a kill -9 of lbctl does not touch it),
 * then stops, blocked on a pipe. started() is called with the keeper's pid
 * and start time (/proc/PID/stat, so a reused pid is told apart): the
 * caller writes them to its journal and only then does the keeper start
 * `/bin/sh -c CMD` (stdin /dev/null, stdout+stderr appended to job->output)
 * and wait for it. When the command ends the keeper writes job->marker
 * atomically: "exit N", "signal N", or "not started" if lbctl died (or
 * started() failed) before saying go. So a later lbctl reads a command's
 * fate from the marker and never needs to start it again to know.
 *
 * exec_job_follow waits for a job started earlier (by this lbctl or one that
 * died), tailing its output. Both stop following, without touching the
 * command, when tick asks (Ctrl-C): r->stopped and r->running are then set.
 * At the timeout the job's process group gets SIGTERM (the keeper ignores
 * it), then SIGKILL 5s later.
 */
struct exec_job {
	const char *cmd;
	const char *marker;	  /* its exit status, written when it ends */
	const char *output;	  /* its stdout and stderr */
	int pid;		  /* the keeper: session and process group leader */
	unsigned long long start; /* the keeper's start time, clock ticks since boot */
};

enum exec_fate {
	EXEC_RUNNING,	  /* still running */
	EXEC_ENDED,	  /* ended: r has its status */
	EXEC_NOT_STARTED, /* its lbctl died (or gave up) before it started */
	EXEC_LOST,	  /* gone without a marker: killed with its keeper, or a reboot */
};

typedef int (*exec_started_fn)(void *arg, const struct exec_job *job);

/* Starts job->cmd detached (see above) and follows it; job->pid/start are set.
 * Returns 0 when it ran and exited 0, -1 otherwise (r says why). */
int exec_job_run(struct exec_job *job, int64_t timeout_ms, exec_started_fn started,
		 exec_line_fn on_line, exec_tick_fn tick, void *arg, struct exec_result *r);
/* Follows a job started before until it ends (timeout_ms from now). */
int exec_job_follow(const struct exec_job *job, int64_t timeout_ms, exec_line_fn on_line,
		    exec_tick_fn tick, void *arg, struct exec_result *r);
/* What became of a job, now; for EXEC_ENDED r->status/signal are set. */
enum exec_fate exec_job_fate(const struct exec_job *job, struct exec_result *r);
/* The start time of a live process (0 if it is gone or a zombie). */
unsigned long long exec_proc_start(int pid);

#endif
