/*
 * orch_checks.c - the step table's preconditions and outcome checks.
 *
 * A precondition says whether a step may start now: the node still holds
 * the lease this run took, it is still cordoned. It is read from the world
 * at that moment, never from the journal, so a resume after an hour (a
 * lease the gate dropped, a node someone uncordoned) stops before it acts.
 *
 * An outcome check says whether a step's effect is there: a backend
 * drained, a node uncordoned, a lease given back. The runner asks it after
 * the action, so a step is done only when what it promised can be seen. A
 * step that was interrupted runs its action again (every action is
 * idempotent: it finds what it did before lbctl died) rather than being
 * taken as done from a look at the world.
 *
 * Each returns ORCH_OK, or ORCH_FAILED with *msg saying what it saw.
 */
#define _GNU_SOURCE
#include "upgrade/orchestrator_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "upgrade/drain.h"

/* Transport errors (lbd restarting, the VIP moving) are retried this often. */
#define CHECK_TRIES 3

/* Who holds node's gate lease: 1 held (*holder, caller frees), 0 none, -1 unknown (*err). */
static int lease_holder(struct orch *o, const char *node, char **holder, char **err)
{
	long st = 0;
	json_t *out = NULL, *l;
	size_t i;

	*holder = NULL;
	for (int t = 0;; t++) {
		xfree(err);
		if (orch_lbd(o, "GET", "/v1/gate/leases", NULL, &st, &out, err) == 0)
			break;
		if (t + 1 == CHECK_TRIES)
			return -1;
		orch_sleep_ms(300);
	}
	if (st != 200 || !json_is_array(json_object_get(out, "leases"))) {
		*err = xasprintf("gate leases: %ld %s", st, orch_jerr(out));
		json_decref(out);
		return -1;
	}
	json_array_foreach(json_object_get(out, "leases"), i, l)
	{
		if (!strcmp(orch_jstr(l, "node"), node)) {
			*holder = xstrdup(orch_jstr(l, "holder"));
			break;
		}
	}
	json_decref(out);
	return *holder ? 1 : 0;
}

int orch_chk_leased(struct nctx *c, char **msg)
{
	char *holder = NULL, *err = NULL, *mine = orch_lease_holder(c->o);
	int rc = lease_holder(c->o, c->n->name, &holder, &err);

	if (rc == 1 && !strcmp(holder, mine)) {
		free(holder);
		free(mine);
		return ORCH_OK;
	}
	if (rc < 0)
		*msg = xasprintf("%s: cannot tell whether it still holds its gate lease: %s",
				 c->n->name, err);
	else if (rc == 0)
		*msg = xasprintf("%s: it no longer holds its gate lease (the gate released it, or "
				 "an admin did), so the gate may let another node down",
				 c->n->name);
	else
		*msg = xasprintf("%s: its gate lease is held by \"%s\", not by this run (\"%s\")",
				 c->n->name, holder, mine);
	free(holder);
	free(err);
	free(mine);
	return ORCH_FAILED;
}

int orch_chk_released(struct nctx *c, char **msg)
{
	char *holder = NULL, *err = NULL, *mine = orch_lease_holder(c->o);
	int rc = lease_holder(c->o, c->n->name, &holder, &err);
	int out = ORCH_OK;

	if (rc < 0) {
		*msg = xasprintf("%s: cannot tell whether its gate lease was given back: %s",
				 c->n->name, err);
		out = ORCH_FAILED;
	} else if (rc == 1 && !strcmp(holder, mine)) {
		*msg =
		    xasprintf("%s: the gate still lists its lease as held by this run", c->n->name);
		out = ORCH_FAILED;
	}
	free(holder);
	free(err);
	free(mine);
	return out;
}

/* The backend's state in lbd: 1 found (*state), 0 not in the pool, -1 unknown (*err). */
static int backend_state(struct orch *o, const char *name, char *state, size_t len, char **err)
{
	json_t *pool = NULL, *be = NULL;

	for (int t = 0; t < CHECK_TRIES; t++) {
		xfree(err);
		json_decref(pool);
		pool = NULL;
		if ((be = orch_get_backend(o, name, &pool, err)) || pool)
			break;
		orch_sleep_ms(300);
	}
	if (be)
		snprintf(state, len, "%s", orch_jstr(be, "state"));
	json_decref(be);
	if (!be && !pool)
		return -1;
	json_decref(pool);
	xfree(err);
	return be ? 1 : 0;
}

static int want_backend(struct nctx *c, const char *want, char **msg)
{
	char state[32] = "", *err = NULL;
	int rc = backend_state(c->o, c->n->backend, state, sizeof(state), &err);
	bool present = strcmp(want, "absent") != 0;

	if (rc >= 0 && (present ? rc == 1 && (!*want || !strcmp(state, want)) : rc == 0))
		return ORCH_OK;
	if (rc < 0)
		*msg = xasprintf("%s: backend %s: %s", c->n->name, c->n->backend, err);
	else if (rc == 0)
		*msg = xasprintf("%s: pool %s has no backend %s", c->n->name, c->o->plan->pool,
				 c->n->backend);
	else
		*msg = xasprintf("%s: backend %s/%s is %s, not %s", c->n->name, c->o->plan->pool,
				 c->n->backend, state, present ? want : "gone");
	free(err);
	return ORCH_FAILED;
}

int orch_chk_backend_disabled(struct nctx *c, char **msg)
{
	return want_backend(c, "disabled", msg);
}

int orch_chk_backend_enabled(struct nctx *c, char **msg)
{
	return want_backend(c, "enabled", msg);
}

int orch_chk_backend_present(struct nctx *c, char **msg)
{
	return want_backend(c, "", msg);
}

int orch_chk_backend_absent(struct nctx *c, char **msg)
{
	return want_backend(c, "absent", msg);
}

/* The node: 1 found (*cordoned), 0 gone, -1 unknown (*msg set). */
static int node_cordoned(struct nctx *c, bool *cordoned, char **msg)
{
	struct kube_node n;
	char *err = NULL;
	int rc = orch_node_get(c->k, c->n->name, &n, &err);

	if (rc < 0) {
		*msg = xasprintf("%s: %s", c->n->name, err);
		free(err);
		return -1;
	}
	if (rc == 1) {
		*cordoned = n.unschedulable;
		kube_node_clear(&n);
	}
	return rc;
}

int orch_chk_uncordoned(struct nctx *c, char **msg)
{
	bool cordoned = false;
	int rc = node_cordoned(c, &cordoned, msg);

	if (rc == 1 && !cordoned)
		return ORCH_OK;
	if (rc >= 0)
		*msg = xasprintf("%s: %s", c->n->name,
				 rc == 0 ? "the node is gone" : "the node is still cordoned");
	return ORCH_FAILED;
}

int orch_chk_node_gone(struct nctx *c, char **msg)
{
	bool cordoned;
	int rc = node_cordoned(c, &cordoned, msg);

	if (rc == 0)
		return ORCH_OK;
	if (rc == 1)
		*msg = xasprintf("%s: the node is still in the cluster", c->n->name);
	return ORCH_FAILED;
}

int orch_pre_leased(struct nctx *c, char **msg)
{
	/* a node that takes no lease (a joining worker) needs none */
	if (!journal_find(&c->o->p->j, c->n->name, "lease"))
		return ORCH_OK;
	return orch_chk_leased(c, msg);
}

/* The command runs only on a node that holds its lease and is still drained. */
int orch_pre_drained(struct nctx *c, char **msg)
{
	bool cordoned = false;
	int rc;

	if (orch_pre_leased(c, msg) != ORCH_OK)
		return ORCH_FAILED;
	if ((rc = node_cordoned(c, &cordoned, msg)) < 0)
		return ORCH_FAILED;
	if (rc == 0) {
		*msg = xasprintf("%s: the node is gone", c->n->name);
		return ORCH_FAILED;
	}
	if (!cordoned) {
		*msg =
		    xasprintf("%s: the node is no longer cordoned (someone uncordoned it), so "
			      "pods may be back on it. Next: `lbctl node drain %s`, then --resume",
			      c->n->name, c->n->name);
		return ORCH_FAILED;
	}
	return ORCH_OK;
}
