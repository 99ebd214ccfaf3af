/* state.c - the runtime overlay and its file. See state.h. */
#include "lbd/state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/atomicfile.h"
#include "common/xmalloc.h"

#define STATE_VERSION 1
#define STATE_MAX_BYTES (16 * 1024 * 1024)

static void entry_free(struct state_entry *e)
{
	xfree(&e->pool);
	xfree(&e->name);
	xfree(&e->address);
}

void state_clear(struct lbd_state *st)
{
	for (size_t i = 0; i < st->n; i++)
		entry_free(&st->e[i]);
	xfree(&st->e);
	st->n = 0;
}

void state_free(struct lbd_state *st)
{
	state_clear(st);
	xfree(&st->path);
}

static void entry_copy(struct state_entry *dst, const struct state_entry *src)
{
	*dst = *src;
	dst->pool = xstrdup(src->pool);
	dst->name = xstrdup(src->name);
	dst->address = src->address ? xstrdup(src->address) : NULL;
}

void state_copy(struct lbd_state *dst, const struct lbd_state *src)
{
	dst->path = src->path ? xstrdup(src->path) : NULL;
	dst->n = src->n;
	dst->e = xcalloc(src->n ? src->n : 1, sizeof(*dst->e));
	for (size_t i = 0; i < src->n; i++)
		entry_copy(&dst->e[i], &src->e[i]);
}

struct state_entry *state_find(const struct lbd_state *st, const char *pool, const char *name)
{
	for (size_t i = 0; i < st->n; i++)
		if (strcmp(st->e[i].pool, pool) == 0 && strcmp(st->e[i].name, name) == 0)
			return &st->e[i];
	return NULL;
}

static void state_del(struct lbd_state *st, struct state_entry *e)
{
	size_t i = (size_t)(e - st->e);

	entry_free(e);
	memmove(&st->e[i], &st->e[i + 1], (st->n - i - 1) * sizeof(*st->e));
	st->n--;
}

static struct state_entry *state_slot(struct lbd_state *st, const char *pool, const char *name)
{
	struct state_entry *e = state_find(st, pool, name);

	if (e) {
		xfree(&e->address);
	} else {
		st->e = xrealloc(st->e, (st->n + 1) * sizeof(*st->e));
		e = &st->e[st->n++];
		e->pool = xstrdup(pool);
		e->name = xstrdup(name);
	}
	char *p = e->pool, *n = e->name;
	memset(e, 0, sizeof(*e));
	e->pool = p;
	e->name = n;
	return e;
}

void state_put(struct lbd_state *st, const char *pool, const char *name,
	       const struct backend_conf *fb, const struct state_backend *want)
{
	struct state_entry *e;

	if (!want) {
		if (!fb) {
			if ((e = state_find(st, pool, name)))
				state_del(st, e);
			return;
		}
		e = state_slot(st, pool, name);
		e->removed = true;
		return;
	}
	bool addr_differs = !fb || strcmp(fb->addr.text, want->address) != 0;
	bool weight_differs = !fb || fb->weight != want->weight;
	bool state_differs = !fb || want->state != BE_ENABLED;
	if (!addr_differs && !weight_differs && !state_differs && !want->remove_when_drained) {
		if ((e = state_find(st, pool, name)))
			state_del(st, e);
		return;
	}
	e = state_slot(st, pool, name);
	if (addr_differs)
		e->address = xstrdup(want->address);
	e->has_weight = weight_differs;
	e->weight = want->weight;
	e->has_state = state_differs || want->remove_when_drained;
	e->state = want->state;
	e->remove_when_drained = want->remove_when_drained && want->state == BE_DRAIN;
}

static const struct backend_conf *file_backend(const struct pool_conf *fp, const char *name)
{
	for (size_t i = 0; fp && i < fp->nbackends; i++)
		if (strcmp(fp->backends[i].name, name) == 0)
			return &fp->backends[i];
	return NULL;
}

/* What e says pool/name should be, on top of fb; false if absent. */
static bool entry_want(const struct state_entry *e, const struct backend_conf *fb,
		       struct state_backend *w)
{
	if (e->removed)
		return false;
	if (!fb && !e->address)
		return false; /* an override of a file backend that is gone */
	w->address = e->address ? e->address : fb->addr.text;
	w->weight = e->has_weight || !fb ? e->weight : fb->weight;
	w->state = e->has_state ? e->state : BE_ENABLED;
	w->remove_when_drained = e->remove_when_drained;
	return true;
}

size_t state_reconcile(struct lbd_state *st, const struct config *cfg)
{
	size_t changed = 0;

	for (size_t i = st->n; i-- > 0;) {
		struct state_entry *e = &st->e[i];
		const struct pool_conf *fp = config_pool(cfg, e->pool);
		if (!fp) {
			log_info("overlay: pool %s is gone from the file; dropping its runtime "
				 "edit of %s",
				 e->pool, e->name);
			state_del(st, e);
			changed++;
			continue;
		}
		const struct backend_conf *fb = file_backend(fp, e->name);
		struct state_backend w;
		char *before = state_serialize(&(struct lbd_state){.e = e, .n = 1});
		char *pool = xstrdup(e->pool), *name = xstrdup(e->name);
		bool present = entry_want(e, fb, &w);
		char *addr = present ? xstrdup(w.address) : NULL;
		w.address = addr;
		state_put(st, pool, name, fb, present ? &w : NULL);
		struct state_entry *after = state_find(st, pool, name);
		char *now = after ? state_serialize(&(struct lbd_state){.e = after, .n = 1}) : NULL;
		if (!now || strcmp(before, now) != 0) {
			changed++;
			log_info("overlay: %s/%s: the file now agrees%s", pool, name,
				 now ? " in part; keeping the rest" : "; runtime edit dropped");
		}
		free(now);
		free(before);
		free(addr);
		free(pool);
		free(name);
	}
	return changed;
}

size_t state_effective(const struct lbd_state *st, const struct pool_conf *fp,
		       struct state_eff **out)
{
	struct state_eff *v = xcalloc(fp->nbackends + st->n + 1, sizeof(*v));
	size_t n = 0;

	for (size_t i = 0; i < fp->nbackends; i++) {
		const struct backend_conf *fb = &fp->backends[i];
		const struct state_entry *e = state_find(st, fp->name, fb->name);
		struct state_backend w;
		if (e && !entry_want(e, fb, &w))
			continue;
		struct state_eff *x = &v[n++];
		backend_conf_copy(&x->conf, fb);
		x->state = BE_ENABLED;
		if (!e)
			continue;
		x->runtime = true;
		x->state = w.state;
		x->remove_when_drained = w.remove_when_drained;
		x->conf.weight = w.weight;
		if (e->address) {
			const char *why;
			sockaddr_conf_free(&x->conf.addr);
			BUG_ON(sockaddr_conf_parse(e->address, &x->conf.addr, &why) < 0);
		}
	}
	for (size_t i = 0; i < st->n; i++) {
		const struct state_entry *e = &st->e[i];
		if (strcmp(e->pool, fp->name) != 0 || e->removed || !e->address ||
		    file_backend(fp, e->name))
			continue;
		struct state_eff *x = &v[n++];
		const char *why;
		x->conf.name = xstrdup(e->name);
		BUG_ON(sockaddr_conf_parse(e->address, &x->conf.addr, &why) < 0);
		x->conf.weight = e->has_weight ? e->weight : 1;
		x->state = e->has_state ? e->state : BE_ENABLED;
		x->remove_when_drained = e->remove_when_drained;
		x->runtime = true;
	}
	*out = v;
	return n;
}

void state_eff_free(struct state_eff *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		backend_conf_free(&e[i].conf);
	free(e);
}

/* ---- the file ------------------------------------------------------------------------- */

char *state_serialize(const struct lbd_state *st)
{
	json_t *root = json_object(), *arr = json_array();

	json_object_set_new(root, "version", json_integer(STATE_VERSION));
	for (size_t i = 0; i < st->n; i++) {
		const struct state_entry *e = &st->e[i];
		json_t *o = json_object();
		json_object_set_new(o, "pool", json_string(e->pool));
		json_object_set_new(o, "name", json_string(e->name));
		if (e->removed)
			json_object_set_new(o, "removed", json_true());
		if (e->address)
			json_object_set_new(o, "address", json_string(e->address));
		if (e->has_weight)
			json_object_set_new(o, "weight", json_integer(e->weight));
		if (e->has_state)
			json_object_set_new(o, "state", json_string(backend_state_name(e->state)));
		if (e->remove_when_drained)
			json_object_set_new(o, "remove_when_drained", json_true());
		json_array_append_new(arr, o);
	}
	json_object_set_new(root, "backends", arr);
	char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (!s) /* every string in it came from JSON or the config: valid UTF-8 */
		xmalloc_oom(0);
	char *out = xasprintf("%s\n", s);
	free(s);
	return out;
}

static int parse_entry(struct state_entry *e, json_t *o, char **why)
{
	const char *key;
	json_t *v;

	if (!json_is_object(o)) {
		*why = xstrdup("not an object");
		return -1;
	}
	json_object_foreach(o, key, v)
	{
		if (strcmp(key, "pool") == 0 || strcmp(key, "name") == 0) {
			if (!json_is_string(v) || json_string_length(v) == 0) {
				*why = xasprintf("'%s' must be a non-empty string", key);
				return -1;
			}
			*(key[0] == 'p' ? &e->pool : &e->name) = xstrdup(json_string_value(v));
		} else if (strcmp(key, "removed") == 0 || strcmp(key, "remove_when_drained") == 0) {
			if (!json_is_boolean(v)) {
				*why = xasprintf("'%s' must be true or false", key);
				return -1;
			}
			if (strcmp(key, "removed") == 0)
				e->removed = json_is_true(v);
			else
				e->remove_when_drained = json_is_true(v);
		} else if (strcmp(key, "address") == 0) {
			struct sockaddr_conf a;
			const char *w = "not a string";
			if (!json_is_string(v) ||
			    sockaddr_conf_parse(json_string_value(v), &a, &w) < 0) {
				*why = xasprintf("bad address: %s", w);
				return -1;
			}
			sockaddr_conf_free(&a);
			e->address = xstrdup(json_string_value(v));
		} else if (strcmp(key, "weight") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > 256) {
				*why = xstrdup("'weight' must be an integer 0..256");
				return -1;
			}
			e->has_weight = true;
			e->weight = (int)json_integer_value(v);
		} else if (strcmp(key, "state") == 0) {
			if (!json_is_string(v) ||
			    backend_state_parse(json_string_value(v), &e->state) < 0) {
				*why = xstrdup("'state' must be enabled, drain or disabled");
				return -1;
			}
			e->has_state = true;
		} else {
			*why = xasprintf("unknown key '%s'", key);
			return -1;
		}
	}
	if (!e->pool || !e->name) {
		*why = xstrdup("'pool' and 'name' are required");
		return -1;
	}
	if (e->removed && (e->address || e->has_weight || e->has_state)) {
		*why = xstrdup("a removed backend has no other keys");
		return -1;
	}
	if (e->remove_when_drained && (!e->has_state || e->state != BE_DRAIN)) {
		*why = xstrdup("'remove_when_drained' needs state drain");
		return -1;
	}
	return 0;
}

int state_parse(struct lbd_state *st, const char *name, const char *text, size_t len, char **err)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *arr, *v;
	const char *key;
	char *why = NULL;

	state_clear(st);
	if (!root) {
		*err = xasprintf("%s:%d:%d: not valid JSON: %s", name, jerr.line, jerr.column,
				 jerr.text);
		return -1;
	}
	if (!json_is_object(root)) {
		*err = xasprintf("%s: not a JSON object", name);
		goto fail;
	}
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "version") != 0 && strcmp(key, "backends") != 0) {
			*err = xasprintf("%s: unknown key '%s'", name, key);
			goto fail;
		}
	}
	v = json_object_get(root, "version");
	if (!json_is_integer(v) || json_integer_value(v) != STATE_VERSION) {
		*err = xasprintf("%s: 'version' must be %d", name, STATE_VERSION);
		goto fail;
	}
	arr = json_object_get(root, "backends");
	if (!json_is_array(arr)) {
		*err = xasprintf("%s: 'backends' must be an array", name);
		goto fail;
	}
	st->e = xcalloc(json_array_size(arr) + 1, sizeof(*st->e));
	for (size_t i = 0; i < json_array_size(arr); i++) {
		struct state_entry *e = &st->e[st->n++];
		if (parse_entry(e, json_array_get(arr, i), &why) < 0) {
			*err = xasprintf("%s: backends[%zu]: %s", name, i, why);
			goto fail;
		}
		for (size_t j = 0; j + 1 < st->n; j++) {
			if (strcmp(st->e[j].pool, e->pool) == 0 &&
			    strcmp(st->e[j].name, e->name) == 0) {
				*err = xasprintf("%s: backends[%zu]: %s/%s listed twice", name, i,
						 e->pool, e->name);
				goto fail;
			}
		}
	}
	json_decref(root);
	return 0;
fail:
	free(why);
	json_decref(root);
	state_clear(st);
	return -1;
}

static int mkdir_p(const char *dir, mode_t mode, char **err)
{
	char *p = xstrdup(dir);

	for (char *s = p + 1;; s++) {
		char c = *s;
		if (c != '/' && c != '\0')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST) {
			*err = xasprintf("cannot create %s: %s", p, strerror(errno));
			free(p);
			return -1;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	struct stat sb;
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		*err = xasprintf("%s: not a directory", dir);
		return -1;
	}
	return 0;
}

int state_open(struct lbd_state *st, const char *state_dir, char **err)
{
	memset(st, 0, sizeof(*st));
	if (mkdir_p(state_dir, 0700, err) < 0)
		return -1;
	st->path = xasprintf("%s/%s", state_dir, STATE_FILE_NAME);

	int fd = open(st->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		*err = xasprintf("%s: %s", st->path, strerror(errno));
		return -1;
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size > STATE_MAX_BYTES) {
		*err = xasprintf("%s: not a regular file of at most %d bytes", st->path,
				 STATE_MAX_BYTES);
		close(fd);
		return -1;
	}
	char *buf = xmalloc((size_t)sb.st_size + 1);
	size_t got = 0;
	while (got < (size_t)sb.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)sb.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			*err =
			    xasprintf("%s: read: %s", st->path, r < 0 ? strerror(errno) : "short");
			free(buf);
			close(fd);
			return -1;
		}
		got += (size_t)r;
	}
	close(fd);
	int rc = state_parse(st, st->path, buf, got, err);
	free(buf);
	return rc;
}

int state_save(const struct lbd_state *st, char **err, int *err_no)
{
	if (!st->path)
		return 0;
	char *text = state_serialize(st);
	int rc = atomic_write_file(st->path, text, strlen(text), 0600, err, err_no);
	free(text);
	return rc;
}
