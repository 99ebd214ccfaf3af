/*
 * store_file.c - the file store (see store.h): <state_dir>/gate-leases.json,
 * {"version": 1, "last_fence": N, "leases": [...]}, replaced whole and
 * atomically on every change. A write that fails leaves the old file and the
 * caller applies nothing: nothing is acknowledged that was not persisted.
 *
 * A file that cannot be read or parsed is an error (the gate is unknown and
 * refuses) unless lbd runs with -F: then it is renamed aside, as pools.json
 * is, and a new file starts with no leases and a fencing number above every
 * one the old file could have handed out (fences never repeat: a holder's
 * fence is its proof against a stale writer).
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/atomicfile.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "gate/store.h"

struct file_store {
	struct gate_store base;
	char *path;
	bool set_aside;
};

static int file_save(struct file_store *s, const struct lease_table *t, char **err);

/*
 * The highest number written after a "fence" key ("fence", "last_fence")
 * in a file that no longer parses: a truncated or garbled file usually
 * still has them. 0 if none.
 */
static uint64_t scan_fences(const char *path)
{
	FILE *f = fopen(path, "re");
	uint64_t best = 0;
	char buf[1 << 16];
	size_t n;

	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (char *p = buf; (p = memmem(p, (size_t)(buf + n - p), "fence\"", 6)); p += 6) {
		char *q = p + 6, *end;
		while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r' || *q == ':')
			q++;
		if (*q < '0' || *q > '9')
			continue;
		unsigned long long v = strtoull(q, &end, 10);
		if (v > best)
			best = v;
	}
	return best;
}

/* -F: keep the unreadable file for a human, start a new one whose fences
 * are above every fence the old one may hold. */
static int put_aside(struct file_store *s, struct lease_table *t, const char *why, char **err)
{
	char aside[4096];
	uint64_t hw = scan_fences(s->path), floor_ms = (uint64_t)time(NULL) * 1000;

	/* link, not rename: an earlier file set aside in the same second stays. */
	int rc = -1;
	for (int i = 0; i < 100 && rc < 0; i++) {
		if (i == 0)
			snprintf(aside, sizeof(aside), "%s.corrupt-%lld", s->path,
				 (long long)time(NULL));
		else
			snprintf(aside, sizeof(aside), "%s.corrupt-%lld.%d", s->path,
				 (long long)time(NULL), i);
		rc = link(s->path, aside);
		if (rc < 0 && errno != EEXIST)
			break;
	}
	if (rc < 0 || unlink(s->path) < 0) {
		*err = xasprintf("%s: %s; and it cannot be set aside: %s", s->path, why,
				 strerror(errno));
		return -1;
	}
	lease_table_free(t);
	/* No fence found: the wall clock in ms is above any count of grants. */
	t->last_fence = hw ? hw : floor_ms;
	log_warn("gate: lease file %s: %s; set aside as %s (-F); starting with no leases, "
		 "fences from %llu (%s)",
		 s->path, why, aside, (unsigned long long)t->last_fence + 1,
		 hw ? "the highest the old file shows" : "none readable: the clock in ms");
	if (file_save(s, t, err) < 0)
		return -1;
	return 0;
}

static int parse_file(struct file_store *s, struct lease_table *t, char **err)
{
	json_error_t je;
	json_t *root, *arr, *v;
	size_t i;

	lease_table_free(t);
	t->last_fence = 0;
	if (access(s->path, F_OK) != 0 && errno == ENOENT)
		return 0; /* first start: no leases */
	if (!(root = json_load_file(s->path, 0, &je))) {
		*err = xasprintf("line %d: %s", je.line, je.text);
		return -1;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		*err = xstrdup("not a JSON object");
		return -1;
	}
	t->last_fence = (uint64_t)json_integer_value(json_object_get(root, "last_fence"));
	arr = json_object_get(root, "leases");
	json_array_foreach(arr, i, v)
	{
		struct gate_lease l = {0};
		const char *why = NULL;
		if (gate_lease_from_json(v, &l, &why) < 0 || lease_table_find(t, l.node)) {
			*err = xasprintf("lease %zu: %s", i, why ? why : "duplicate node");
			gate_lease_clear(&l);
			json_decref(root);
			lease_table_free(t);
			return -1;
		}
		t->v = xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
		t->v[t->n++] = l;
		if (l.fence > t->last_fence)
			t->last_fence = l.fence;
	}
	json_decref(root);
	return 0;
}

static int file_save(struct file_store *s, const struct lease_table *t, char **err)
{
	json_t *root = json_object(), *arr = json_array();
	char *text;
	int rc;

	for (size_t i = 0; i < t->n; i++)
		json_array_append_new(arr, gate_lease_to_json(&t->v[i], 0));
	json_object_set_new(root, "version", json_integer(1));
	json_object_set_new(root, "last_fence", json_integer((json_int_t)t->last_fence));
	json_object_set_new(root, "leases", arr);
	text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);

	char *line = xasprintf("%s\n", text);
	rc = atomic_write_file(s->path, line, strlen(line), 0600, err, NULL);
	free(line);
	free(text);
	return rc;
}

static int file_load(struct gate_store *gs, struct lease_table *t, char **err)
{
	struct file_store *s = (struct file_store *)gs;
	char *why = NULL;
	int rc;

	if (parse_file(s, t, &why) == 0)
		return 0;
	if (s->set_aside) {
		rc = put_aside(s, t, why, err);
	} else {
		*err =
		    xasprintf("%s: %s; fix or move the file away, or start lbd with -F to set it "
			      "aside",
			      s->path, why);
		rc = -1;
	}
	free(why);
	return rc;
}

static int file_next_fence(struct gate_store *gs, const struct lease_table *t, uint64_t *fence,
			   char **err)
{
	*fence = t->last_fence + 1;
	return 0;
}

static int file_put(struct gate_store *gs, const struct lease_table *after, struct gate_lease *l,
		    char **err)
{
	return file_save((struct file_store *)gs, after, err);
}

static int file_del(struct gate_store *gs, const struct lease_table *after,
		    const struct gate_lease *l, char **err)
{
	return file_save((struct file_store *)gs, after, err);
}

static void file_free(struct gate_store *gs)
{
	struct file_store *s = (struct file_store *)gs;
	free(s->path);
	free(s);
}

static const struct gate_store_ops file_ops = {
    .name = "file",
    .load = file_load,
    .next_fence = file_next_fence,
    .put = file_put,
    .del = file_del,
    .free = file_free,
};

struct gate_store *gate_store_file_new(const char *state_dir, bool set_aside, char **err)
{
	struct file_store *s;
	struct stat st;

	if (stat(state_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		*err = xasprintf("state_dir %s: %s", state_dir,
				 errno ? strerror(errno) : "not a directory");
		return NULL;
	}
	s = xcalloc(1, sizeof(*s));
	s->base.ops = &file_ops;
	s->path = xasprintf("%s/gate-leases.json", state_dir);
	s->set_aside = set_aside;
	return &s->base;
}

/* ---- the generic entry points ---------------------------------------------------------- */

void gate_store_free(struct gate_store **s)
{
	if (*s)
		(*s)->ops->free(*s);
	*s = NULL;
}

const char *gate_store_name(const struct gate_store *s)
{
	return s->ops->name;
}

int gate_store_load(struct gate_store *s, struct lease_table *t, char **err)
{
	return s->ops->load(s, t, err);
}

int gate_store_next_fence(struct gate_store *s, const struct lease_table *t, uint64_t *fence,
			  char **err)
{
	return s->ops->next_fence(s, t, fence, err);
}

int gate_store_put(struct gate_store *s, const struct lease_table *after, struct gate_lease *l,
		   char **err)
{
	return s->ops->put(s, after, l, err);
}

int gate_store_del(struct gate_store *s, const struct lease_table *after,
		   const struct gate_lease *l, char **err)
{
	return s->ops->del(s, after, l, err);
}
