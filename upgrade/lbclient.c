/*
 * lbclient.c - talking to lbd: the admin API (pools and backends) and the gate's
 * status, through the caller's orch_call_fn. Gate leases are in orch_lease.c.
 */
#define _GNU_SOURCE
#include "upgrade/orchestrator_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/xmalloc.h"
#include "common/http.h"
#include "upgrade/drain.h"
#include "upgrade/exec.h"
#include "kube/kube.h"
#include "kube/kubeconfig.h"

#define CALL_TIMEOUT_MS 15000

/* ---- lbd: admin and gate ---------------------------------------------------------------- */

int orch_lbd(struct orch *o, const char *method, const char *path, json_t *body, long *status,
	     json_t **out, char **err)
{
	*out = NULL;
	*err = NULL;
	return o->call(o->call_arg, method, path, body, CALL_TIMEOUT_MS, status, out, err);
}

const char *orch_jerr(json_t *j)
{
	const char *e = json_string_value(json_object_get(j, "error"));
	return e ? e : "(no error text)";
}

char *orch_pool_path(struct orch *o, const char *backend)
{
	return backend ? xasprintf("/v1/pools/%s/backends/%s", o->plan->pool, backend)
		       : xasprintf("/v1/pools/%s", o->plan->pool);
}

/* The backend's JSON (caller decrefs) from GET /v1/pools/POOL; NULL with *err. */
json_t *orch_get_backend(struct orch *o, const char *name, json_t **pool_out, char **err)
{
	char *path = orch_pool_path(o, NULL);
	long st = 0;
	json_t *pool = NULL, *b, *found = NULL;
	size_t i;

	if (orch_lbd(o, "GET", path, NULL, &st, &pool, err) < 0) {
		free(path);
		return NULL;
	}
	free(path);
	if (st != 200 || !pool) {
		*err = xasprintf("lbd: pool %s: %ld %s", o->plan->pool, st, orch_jerr(pool));
		json_decref(pool);
		return NULL;
	}
	/* The first of that name: the answer is outside data, a name twice must not leak. */
	json_array_foreach(json_object_get(pool, "backends"), i, b)
	{
		if (!strcmp(json_string_value(json_object_get(b, "name")) ?: "", name)) {
			found = json_incref(b);
			break;
		}
	}
	if (!found)
		*err = xasprintf("lbd: pool %s has no backend %s", o->plan->pool, name);
	if (pool_out)
		*pool_out = pool;
	else
		json_decref(pool);
	return found;
}

const char *orch_jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

json_t *orch_gate_status(struct orch *o, char **err)
{
	long st = 0;
	json_t *out = NULL;
	if (orch_lbd(o, "GET", "/v1/gate/status", NULL, &st, &out, err) < 0)
		return NULL;
	if (st != 200 || !out) {
		*err = st == 404 ? xstrdup("lbd has no gate (no gate: section in its config)")
				 : xasprintf("gate status: %ld %s", st, orch_jerr(out));
		json_decref(out);
		return NULL;
	}
	return out;
}
