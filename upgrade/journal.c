/* journal.c - see journal.h. */
#define _GNU_SOURCE
#include "upgrade/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/atomicfile.h"
#include "common/xmalloc.h"

static const char *const state_names[] = {"pending", "running", "done", "failed", "skipped"};

const char *journal_state_name(enum jstate s)
{
	return state_names[s];
}

static int state_parse(const char *s, enum jstate *out)
{
	for (size_t i = 0; i < sizeof(state_names) / sizeof(*state_names); i++)
		if (s && !strcmp(s, state_names[i])) {
			*out = (enum jstate)i;
			return 0;
		}
	return -1;
}

void journal_now(char *buf, size_t len)
{
	struct timeval tv;
	struct tm tm;
	char t[32];
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", t, (int)(tv.tv_usec / 1000));
}

char *journal_path_for(const char *plan_path, const char *suffix)
{
	return xasprintf("%s.%s", plan_path, suffix);
}

bool journal_exists(const char *plan_path)
{
	char *p = journal_path_for(plan_path, "journal");
	bool ok = access(p, F_OK) == 0;
	free(p);
	return ok;
}

char *journal_hash_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint64_t h = 1469598103934665603ULL;
	int c;
	if (!f)
		return NULL;
	while ((c = getc(f)) != EOF) {
		h ^= (unsigned char)c;
		h *= 1099511628211ULL;
	}
	fclose(f);
	return xasprintf("%016" PRIx64, h);
}

static int take_lock(struct journal *j, char **err)
{
	j->lock_fd = open(j->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->lock_fd < 0) {
		*err = xasprintf("%s: %s", j->lock_path, strerror(errno));
		return -1;
	}
	if (flock(j->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		*err = xasprintf("%s: another lbctl is running this plan (%s)", j->lock_path,
				 strerror(errno));
		close(j->lock_fd);
		j->lock_fd = -1;
		return -1;
	}
	return 0;
}

static int open_log(struct journal *j, char **err)
{
	int fd = open(j->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || !(j->log = fdopen(fd, "a"))) {
		*err = xasprintf("%s: %s", j->log_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return 0;
}

static void init_paths(struct journal *j, const char *plan_path)
{
	memset(j, 0, sizeof(*j));
	pthread_mutex_init(&j->mu, NULL);
	j->lock_fd = -1;
	j->plan_path = xstrdup(plan_path);
	j->path = journal_path_for(plan_path, "journal");
	j->log_path = journal_path_for(plan_path, "log");
	j->lock_path = journal_path_for(plan_path, "lock");
}

int journal_create(struct journal *j, const char *plan_path, const char *kind, char **err)
{
	char now[40];

	init_paths(j, plan_path);
	if (take_lock(j, err) < 0 || open_log(j, err) < 0) {
		journal_close(j);
		return -1;
	}
	if (!(j->plan_hash = journal_hash_file(plan_path))) {
		*err = xasprintf("%s: %s", plan_path, strerror(errno));
		journal_close(j);
		return -1;
	}
	journal_now(now, sizeof(now));
	j->kind = xstrdup(kind);
	j->status = xstrdup("running");
	j->started = xstrdup(now);
	return 0;
}

static char *jdup(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? xstrdup(s) : NULL;
}

int journal_load(struct journal *j, const char *plan_path, bool lock, char **err)
{
	json_error_t je;
	json_t *root, *s;
	size_t i;

	init_paths(j, plan_path);
	if (lock && take_lock(j, err) < 0) {
		journal_close(j);
		return -1;
	}
	if (!(root = json_load_file(j->path, 0, &je))) {
		*err = access(j->path, F_OK)
			   ? xasprintf("%s: no journal (nothing was started)", j->path)
			   : xasprintf("%s:%d:%d: %s", j->path, je.line, je.column, je.text);
		journal_close(j);
		return -1;
	}
	j->plan_hash = jdup(root, "plan_hash");
	j->plan_meaning = jdup(root, "plan_meaning");
	j->plan_text = jdup(root, "plan_text");
	j->kind = jdup(root, "kind");
	j->status = jdup(root, "status");
	j->message = jdup(root, "message");
	j->started = jdup(root, "started");
	j->updated = jdup(root, "updated");
	j->resumes = (int)json_integer_value(json_object_get(root, "resumes"));
	json_array_foreach(json_object_get(root, "steps"), i, s)
	{
		enum jstate st;
		if (state_parse(json_string_value(json_object_get(s, "state")), &st) < 0 ||
		    !json_string_value(json_object_get(s, "node")) ||
		    !json_string_value(json_object_get(s, "step"))) {
			*err = xasprintf("%s: step %zu is not a valid entry", j->path, i + 1);
			json_decref(root);
			journal_close(j);
			return -1;
		}
		struct jstep *js = journal_add(j, json_string_value(json_object_get(s, "node")),
					       json_string_value(json_object_get(s, "step")), NULL);
		js->state = st;
		js->started = jdup(s, "started");
		js->finished = jdup(s, "finished");
		js->note = jdup(s, "note");
		js->runs = (int)json_integer_value(json_object_get(s, "runs"));
		json_t *cmd = json_object_get(s, "cmd");
		if (json_is_object(cmd)) {
			js->cmd.pid = (int)json_integer_value(json_object_get(cmd, "pid"));
			const char *st0 = json_string_value(json_object_get(cmd, "start"));
			js->cmd.start = st0 ? strtoull(st0, NULL, 10) : 0;
			js->cmd.marker = jdup(cmd, "marker");
			js->cmd.output = jdup(cmd, "output");
			js->cmd.command = jdup(cmd, "command");
		}
	}
	json_decref(root);
	if (!j->plan_hash || !j->status) {
		*err = xasprintf("%s: not a journal of lbctl upgrade/migrate", j->path);
		journal_close(j);
		return -1;
	}
	if (lock && open_log(j, err) < 0) {
		journal_close(j);
		return -1;
	}
	return 0;
}

struct jstep *journal_add(struct journal *j, const char *node, const char *step, const char *note)
{
	if (j->n == j->cap) {
		j->cap = j->cap ? 2 * j->cap : 32;
		j->steps = xrealloc(j->steps, j->cap * sizeof(*j->steps));
	}
	struct jstep *s = &j->steps[j->n++];
	memset(s, 0, sizeof(*s));
	s->node = xstrdup(node);
	s->step = xstrdup(step);
	s->note = note ? xstrdup(note) : NULL;
	return s;
}

struct jstep *journal_find(struct journal *j, const char *node, const char *step)
{
	for (size_t i = 0; i < j->n; i++)
		if (!strcmp(j->steps[i].node, node) && !strcmp(j->steps[i].step, step))
			return &j->steps[i];
	return NULL;
}

static json_t *to_json(struct journal *j)
{
	json_t *steps = json_array();
	for (size_t i = 0; i < j->n; i++) {
		struct jstep *s = &j->steps[i];
		json_t *o =
		    json_pack("{s:s,s:s,s:s,s:s?,s:s?,s:s?,s:i}", "node", s->node, "step", s->step,
			      "state", state_names[s->state], "started", s->started, "finished",
			      s->finished, "note", s->note, "runs", s->runs);
		if (s->cmd.marker) {
			char start[32];
			snprintf(start, sizeof(start), "%llu", s->cmd.start);
			json_object_set_new(o, "cmd",
					    json_pack("{s:i,s:i,s:s,s:s,s:s?,s:s?}", "pid",
						      s->cmd.pid, "pgid", s->cmd.pid, "start",
						      start, "marker", s->cmd.marker, "output",
						      s->cmd.output, "command", s->cmd.command));
		}
		json_array_append_new(steps, o);
	}
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s?,s:s?,s:s?,s:i,s:o}", "plan", j->plan_path,
			      "plan_hash", j->plan_hash, "kind", j->kind ? j->kind : "upgrade",
			      "status", j->status, "message", j->message, "started", j->started,
			      "updated", j->updated, "resumes", j->resumes, "steps", steps);
	if (j->plan_meaning)
		json_object_set_new(o, "plan_meaning", json_string(j->plan_meaning));
	if (j->plan_text)
		json_object_set_new(o, "plan_text", json_string(j->plan_text));
	return o;
}

int journal_save(struct journal *j, char **err)
{
	char now[40], *text;
	int rc;
	size_t len;

	journal_now(now, sizeof(now));
	free(j->updated);
	j->updated = xstrdup(now);
	json_t *o = to_json(j);
	text = json_dumps(o, JSON_INDENT(2));
	json_decref(o);
	len = strlen(text);
	char *line = xasprintf("%s\n", text);
	rc = atomic_write_file(j->path, line, len + 1, 0644, err, NULL);
	free(line);
	free(text);
	return rc;
}

static void log_line_locked(struct journal *j, const char *node, const char *step, const char *text)
{
	char now[40];
	if (!j->log)
		return;
	journal_now(now, sizeof(now));
	fprintf(j->log, "%s %s %s: %s\n", now, node, step, text);
	fflush(j->log);
	fdatasync(fileno(j->log));
}

void journal_log(struct journal *j, const char *node, const char *step, const char *fmt, ...)
{
	va_list ap;
	char *m;
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		abort();
	va_end(ap);
	pthread_mutex_lock(&j->mu);
	log_line_locked(j, node, step, m);
	pthread_mutex_unlock(&j->mu);
	free(m);
}

int journal_mark(struct journal *j, struct jstep *s, enum jstate st, const char *note, char **err)
{
	char now[40];
	int rc;

	journal_now(now, sizeof(now));
	pthread_mutex_lock(&j->mu);
	if (st == JS_RUNNING) {
		free(s->started);
		s->started = xstrdup(now);
		xfree(&s->finished);
		s->runs++;
	} else if (st != JS_PENDING) {
		free(s->finished);
		s->finished = xstrdup(now);
	}
	if (note) {
		free(s->note);
		s->note = xstrdup(note);
	}
	s->state = st;
	rc = journal_save(j, err);
	log_line_locked(j, s->node, s->step,
			st == JS_RUNNING
			    ? (s->runs > 1 ? "start (again: it was interrupted)" : "start")
			: st == JS_DONE	   ? "done"
			: st == JS_FAILED  ? "FAILED"
			: st == JS_SKIPPED ? "skipped"
					   : "pending");
	if (note && st != JS_RUNNING)
		log_line_locked(j, s->node, s->step, note);
	pthread_mutex_unlock(&j->mu);
	return rc;
}

int journal_note(struct journal *j, struct jstep *s, const char *note, char **err)
{
	int rc;
	pthread_mutex_lock(&j->mu);
	free(s->note);
	s->note = xstrdup(note);
	rc = journal_save(j, err);
	pthread_mutex_unlock(&j->mu);
	return rc;
}

static void cmd_clear(struct jcmd *c)
{
	xfree(&c->marker);
	xfree(&c->output);
	xfree(&c->command);
	c->pid = 0;
	c->start = 0;
}

int journal_cmd(struct journal *j, struct jstep *s, int pid, unsigned long long start,
		const char *marker, const char *output, const char *command, char **err)
{
	int rc;
	pthread_mutex_lock(&j->mu);
	cmd_clear(&s->cmd);
	if (marker) {
		s->cmd.pid = pid;
		s->cmd.start = start;
		s->cmd.marker = xstrdup(marker);
		s->cmd.output = output ? xstrdup(output) : NULL;
		s->cmd.command = command ? xstrdup(command) : NULL;
	}
	rc = journal_save(j, err);
	if (marker) {
		char *t = xasprintf("command started: pid %d (its own session and process group), "
				    "exit marker %s",
				    pid, marker);
		log_line_locked(j, s->node, s->step, t);
		free(t);
	}
	pthread_mutex_unlock(&j->mu);
	return rc;
}

void journal_close(struct journal *j)
{
	for (size_t i = 0; i < j->n; i++) {
		cmd_clear(&j->steps[i].cmd);
		free(j->steps[i].node);
		free(j->steps[i].step);
		free(j->steps[i].started);
		free(j->steps[i].finished);
		free(j->steps[i].note);
	}
	xfree(&j->steps);
	if (j->log)
		fclose(j->log);
	if (j->lock_fd >= 0)
		close(j->lock_fd);
	char **strs[] = {&j->path,	&j->log_path, &j->lock_path,	&j->plan_path,
			 &j->plan_hash, &j->kind,     &j->status,	&j->message,
			 &j->started,	&j->updated,  &j->plan_meaning, &j->plan_text};
	for (size_t i = 0; i < sizeof(strs) / sizeof(*strs); i++)
		xfree(strs[i]);
	pthread_mutex_destroy(&j->mu);
	memset(j, 0, sizeof(*j));
	j->lock_fd = -1;
}
