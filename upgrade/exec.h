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
	bool stopped;	/* killed because tick asked */
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

#endif
