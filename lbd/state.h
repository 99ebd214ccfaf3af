/*
 * state.h - runtime pool edits, persisted under state_dir as an overlay on
 * the config file.
 *
 * The file says what the operator wrote; the overlay says how runtime edits
 * (the admin API) differ from it, one entry per (pool, backend):
 *   - a backend the file does not have: the entry holds all of it
 *     (address, weight, state);
 *   - a backend the file has: the entry holds only what differs (address,
 *     weight, state), or that it was removed.
 * The backends lbd runs = the file with the overlay on top. An entry the file
 * agrees with says nothing and is dropped (state_put, state_reconcile), so
 * the overlay only ever holds real differences, and `lbctl reload --reset`
 * can drop it whole.
 *
 * On disk: <state_dir>/pools.json, written atomically (temp file, fsync,
 * rename, fsync of the directory): after a crash it is the old or the new
 * version, never a mix. A file that does not parse is an error that stops
 * lbd at start-up: it holds acknowledged edits, so guessing is not allowed.
 */
#ifndef LBD_STATE_H
#define LBD_STATE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "lbd/pool.h"

#define STATE_FILE_NAME "pools.json"

struct state_entry {
	char *pool, *name;
	bool removed;  /* a file backend removed at runtime */
	char *address; /* NULL: the file's */
	bool has_weight;
	int weight;
	bool has_state;
	enum backend_state state;
	bool remove_when_drained; /* state drain, then removal */
};

struct lbd_state {
	char *path; /* NULL: not persisted (tests) */
	struct state_entry *e;
	size_t n;
};

/* The wanted shape of one backend, as the admin API edits it. */
struct state_backend {
	const char *address;
	int weight;
	enum backend_state state;
	bool remove_when_drained;
};

/* Creates state_dir (0700) if needed and loads pools.json (an absent file is
 * an empty overlay). Returns -1 with *err naming the file and the problem. */
int state_open(struct lbd_state *st, const char *state_dir, char **err);
/* Parses text (pools.json); name is used in messages. Pure. */
int state_parse(struct lbd_state *st, const char *name, const char *text, size_t len, char **err);
/* The JSON text of st (caller frees). */
char *state_serialize(const struct lbd_state *st);
/* Writes st to st->path atomically (common/atomicfile.h). Returns -1 with
 * *err and *err_no. */
int state_save(const struct lbd_state *st, char **err, int *err_no);

void state_copy(struct lbd_state *dst, const struct lbd_state *src);
void state_free(struct lbd_state *st);
void state_clear(struct lbd_state *st);

struct state_entry *state_find(const struct lbd_state *st, const char *pool, const char *name);
/* Records that pool/name should look like want (NULL: absent), given the
 * file's version fb (NULL: not in the file). Stores only the differences;
 * drops the entry when there are none. */
void state_put(struct lbd_state *st, const char *pool, const char *name,
	       const struct backend_conf *fb, const struct state_backend *want);

/* Drops entries of pools the file no longer has and entries the file now
 * agrees with. Returns how many entries were dropped or shrunk. */
size_t state_reconcile(struct lbd_state *st, const struct config *cfg);

/* One backend of a pool as lbd should run it: file + overlay. */
struct state_eff {
	struct backend_conf conf;
	enum backend_state state;
	bool remove_when_drained;
	bool runtime; /* differs from the file (or not in it) */
};

/* The backends of pool fp with the overlay on top: file order, then the
 * runtime-added ones. Returns the count; *out is freed with state_eff_free. */
size_t state_effective(const struct lbd_state *st, const struct pool_conf *fp,
		       struct state_eff **out);
void state_eff_free(struct state_eff *e, size_t n);

#endif
