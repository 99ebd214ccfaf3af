/*
 * journal.h - what an upgrade or migration has done, on disk, next to its
 * plan: PLAN.journal (the state, JSON) and PLAN.log (the history, plain
 * timestamped lines, appended, never rewritten).
 *
 * The journal is the list of steps the run decided on at its start (nodes
 * already at the target are recorded as skipped), each pending, running,
 * done, failed or skipped. It is written before a step starts (running) and
 * after it ends (done/failed), each time atomically: temp file, fsync,
 * rename, fsync of the directory. So after a crash or kill -9, `--resume`
 * finds every finished step marked done and at most one step per node
 * marked running: the orchestrator checks that step's outcome before doing
 * it again (steps are written to be safe to repeat), and never redoes a
 * done one.
 *
 * PLAN.lock is held (flock) while a run is going, so two runs of one plan
 * cannot interleave; the kernel drops it when the process dies.
 *
 * The struct is shared by the orchestrator's worker threads: lock mu around
 * reads and writes of steps.
 */
#ifndef LBD_JOURNAL_H
#define LBD_JOURNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum jstate { JS_PENDING, JS_RUNNING, JS_DONE, JS_FAILED, JS_SKIPPED };

struct jstep {
	char *node; /* the node, or "-" for plan-wide steps (preflight) */
	char *step; /* "lease", "backend-drain", "drain", "command", "wait", ... */
	enum jstate state;
	char *started, *finished; /* RFC 3339 UTC, or NULL */
	char *note;		  /* why skipped, how it failed, what it did */
	int runs;		  /* times it was started (2 after a resumed interruption) */
	/* The command the step started last (upgrade/exec.h's job), written
	 * before the command starts: a resume reads its fate from here. */
	struct jcmd {
		int pid;		  /* its keeper, session and group leader; 0 = none */
		unsigned long long start; /* the keeper's start time (/proc/PID/stat) */
		char *marker, *output;	  /* its exit marker and output files */
		char *command;		  /* what it runs */
	} cmd;
};

struct journal {
	char *path, *log_path, *lock_path;
	char *plan_path;
	char *plan_hash;    /* hex FNV-1a of the plan file */
	char *plan_meaning; /* plan_meaning() at the start: --resume refuses another one */
	char *plan_text;    /* the plan file at the start (or the last accepted edit) */
	char *kind;	    /* "upgrade" | "migration" */
	char *status;	    /* "running" | "stopped" | "failed" | "done" */
	char *message;	    /* the last failure and the next manual step */
	char *started, *updated;
	struct jstep *steps;
	size_t n, cap;
	int resumes;

	pthread_mutex_t mu;
	FILE *log;
	int lock_fd;
};

/* PLAN.journal, PLAN.log, PLAN.lock for a plan path (caller frees). */
char *journal_path_for(const char *plan_path, const char *suffix);
/* Hex FNV-1a 64 of a file's bytes (caller frees), NULL if unreadable. */
char *journal_hash_file(const char *path);

/* Starts empty (fresh run) in j, takes the lock, opens the log. */
int journal_create(struct journal *j, const char *plan_path, const char *kind, char **err);
/* Reads an existing journal (status: lock 0 = don't lock, open no log). */
int journal_load(struct journal *j, const char *plan_path, bool lock, char **err);
/* Whether a journal file exists for the plan. */
bool journal_exists(const char *plan_path);

/* Appends a step (pending). Not saved until journal_save(). */
struct jstep *journal_add(struct journal *j, const char *node, const char *step, const char *note);
struct jstep *journal_find(struct journal *j, const char *node, const char *step);

/* Writes the state atomically. Call with mu held or from one thread. */
int journal_save(struct journal *j, char **err);
/* Sets a step's state (+ timestamps, note), saves, and logs a history line. mu taken inside. */
int journal_mark(struct journal *j, struct jstep *s, enum jstate st, const char *note, char **err);
/* Sets a step's note and saves (no history line). mu taken inside. */
int journal_note(struct journal *j, struct jstep *s, const char *note, char **err);
/* Records (and saves) the command a step is about to start; NULL job fields clear it. mu inside. */
int journal_cmd(struct journal *j, struct jstep *s, int pid, unsigned long long start,
		const char *marker, const char *output, const char *command, char **err);
/* One history line "2024-05-01T10:00:00Z node step: text". mu taken inside. */
void journal_log(struct journal *j, const char *node, const char *step, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

void journal_close(struct journal *j);
const char *journal_state_name(enum jstate s);
void journal_now(char *buf, size_t len);

#endif
