/*
 * fleetlock.c - see fleetlock.h.
 *
 * A thin translation: the protocol's lock and unlock become gate_acquire
 * and gate_release with the holder "fleetlock/<id>", and the gate's answers
 * become the protocol's {"kind", "value"} errors. Every decision (role,
 * quorum, concurrency, who may act for which node) stays in the gate.
 * Runs on the gate process's one event loop like the rest of gate.listen,
 * so looking up the holder and acting on it have nothing in between.
 */
#include "gate/fleetlock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "gate/gate.h"

#define PRE_REBOOT "/v1/pre-reboot"
#define STEADY_STATE "/v1/steady-state"

/* The groups the gate understands, and the role each names. */
static const struct {
	const char *group;
	const char *role;
} groups[] = {
    {"masters", "master"}, {"controllers", "master"}, {"control-plane", "master"},
    {"workers", "worker"}, {"default", "worker"},
};
#define GROUP_LIST "masters, controllers, control-plane (masters); workers, default (workers)"

bool gate_fleetlock_path(const char *path)
{
	return path && (strcmp(path, PRE_REBOOT) == 0 || strcmp(path, STEADY_STATE) == 0);
}

/* A protocol error: {"kind": kind, "value": text}, text never empty. */
static int fl_error(json_t **out, int status, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fl_error(json_t **out, int status, const char *kind, const char *fmt, ...)
{
	va_list ap;
	char buf[1024];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	*out = json_pack("{s:s,s:s}", "kind", kind, "value", *buf ? buf : kind);
	if (!*out) /* buf quoted text that is not UTF-8 */
		*out = json_pack("{s:s,s:s}", "kind", "internal", "value",
				 "internal error: the message is not UTF-8");
	return status;
}

/* The text of one of the gate's answers: its "error", or its reasons. */
static char *answer_text(json_t *ans)
{
	const char *e = json_string_value(json_object_get(ans, "error"));
	json_t *reasons = json_object_get(ans, "reasons"), *r;
	size_t i, len = 1;
	char *s;

	if (e)
		return xstrdup(e);
	json_array_foreach(reasons, i, r)
	{
		len += strlen(json_string_value(r) ?: "") + 2;
	}
	s = xcalloc(1, len);
	json_array_foreach(reasons, i, r)
	{
		if (i)
			strcat(s, "; ");
		strcat(s, json_string_value(r) ?: "");
	}
	return s;
}

/* Did the gate refuse for concurrency alone (the protocol's "semaphore full")? */
static bool only_concurrency(json_t *ans)
{
	json_t *reasons = json_object_get(ans, "reasons"), *r;
	size_t i;

	if (json_array_size(reasons) == 0)
		return false;
	json_array_foreach(reasons, i, r)
	{
		if (strncmp(json_string_value(r) ?: "", "concurrency", 11) != 0)
			return false;
	}
	return true;
}

/* Any of the gate's non-2xx answers, as a protocol error (ans is taken). */
static int translate(json_t *ans, int status, const char *refused_kind, json_t **out)
{
	char *text = answer_text(ans);
	const char *kind;

	switch (status) {
	case 400:
		kind = "bad_request";
		break;
	case 401:
		kind = "unauthorized";
		break;
	case 403:
		kind = "forbidden";
		break;
	case 409:
		kind = refused_kind;
		if (strcmp(refused_kind, "failed_lock") == 0) {
			if (only_concurrency(ans))
				kind = "failed_lock_semaphore_full";
			else if (strncmp(text, "role:", 5) == 0)
				kind = "failed_lock_role";
		}
		break;
	case 503:
		kind = "unavailable";
		break;
	default:
		kind = "internal";
	}
	fl_error(out, status, kind, "%s", text);
	free(text);
	json_decref(ans);
	return status;
}

/* The holder of node's lease now (caller frees), or NULL when it holds
 * none. Returns 0, or an error status with *out. */
static int holder_of(struct gate *g, const char *node, char **holder, json_t **out)
{
	json_t *ans = NULL, *l;
	size_t i;
	int st = gate_handle(g, "GET", "/v1/gate/leases", NULL, NULL, &ans);

	*holder = NULL;
	if (st != 200)
		return translate(ans, st, "internal", out);
	json_array_foreach(json_object_get(ans, "leases"), i, l)
	{
		if (strcmp(json_string_value(json_object_get(l, "node")) ?: "", node) == 0)
			*holder =
			    xstrdup(json_string_value(json_object_get(l, "holder")) ?: "admin");
	}
	json_decref(ans);
	return 0;
}

/* The protocol's group syntax: ^[a-zA-Z0-9.-]+$ */
static bool group_ok(const char *s)
{
	if (!s || !*s || strlen(s) > 253)
		return false;
	for (; *s; s++)
		if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') &&
		    !(*s >= '0' && *s <= '9') && *s != '-' && *s != '.')
			return false;
	return true;
}

static int lock(struct gate *g, const char *who, const char *id, const char *group,
		const char *role, json_t **out)
{
	char *holder = xasprintf("fleetlock/%s", id), *held = NULL, *reason = NULL;
	json_t *ans = NULL;
	int st;

	/* Never take over another holder's lease, even with an admin token
	 * (gate_acquire would let an admin renew it and hand it over). */
	if ((st = holder_of(g, id, &held, out)) != 0)
		goto done;
	if (held && strcmp(held, holder) != 0) {
		st = fl_error(out, 409, "failed_lock_held",
			      "%s holds a lease held by %s, not by this FleetLock client; it "
			      "reboots when %s releases it",
			      id, held, held);
		goto done;
	}
	reason = xasprintf("FleetLock pre-reboot (group %s)", group);
	struct gate_ask a = {
	    .node = id,
	    .role = role,
	    .holder = holder,
	    .reason = reason,
	    .release_on_outcomes = false, /* steady-state releases it */
	};
	st = gate_acquire(g, who, &a, &ans);
	if (st == 200 || st == 201) {
		*out = ans;
		st = 200;
	} else {
		st = translate(ans, st, "failed_lock", out);
	}
done:
	free(holder);
	free(held);
	free(reason);
	return st;
}

static int unlock(struct gate *g, const char *who, const char *id, json_t **out)
{
	char *holder = xasprintf("fleetlock/%s", id), *held = NULL;
	json_t *ans = NULL;
	int st;

	if ((st = holder_of(g, id, &held, out)) != 0)
		goto done;
	/* Unlock if held: a lease that is not this client's is left alone. */
	if (!held || strcmp(held, holder) != 0) {
		*out = json_pack("{s:b,s:s?}", "released", 0, "held_by", held);
		st = 200;
		goto done;
	}
	st = gate_release(g, who, id, holder, &ans);
	if (st == 200) {
		*out = ans;
	} else if (st == 404) { /* gone in the meantime: nothing held */
		json_decref(ans);
		*out = json_pack("{s:b}", "released", 0);
		st = 200;
	} else {
		st = translate(ans, st, "failed_unlock", out);
	}
done:
	free(holder);
	free(held);
	return st;
}

int gate_fleetlock(struct gate *g, const char *method, const char *path, const char *protocol,
		   const char *authorization, const char *body, size_t len, json_t **out)
{
	json_t *req = NULL, *params, *ans = NULL;
	const char *id, *group, *role = NULL, *token = "";
	char *who = NULL;
	json_error_t je;
	int st;

	*out = NULL;
	if (!gate_fleetlock_path(path))
		return fl_error(out, 404, "not_found", "no such FleetLock route");
	if (strcmp(method, "POST") != 0)
		return fl_error(out, 405, "method_not_allowed", "use POST");
	/* The protocol's guard against a request that was redirected here. */
	if (!protocol || strcmp(protocol, "true") != 0)
		return fl_error(out, 400, "missing_fleet_lock_header",
				"the header fleet-lock-protocol: true is required");
	if (!body || len == 0)
		return fl_error(out, 400, "bad_request",
				"body must be {\"client_params\": {\"id\": ID, \"group\": GROUP}}");
	if (!(req = json_loadb(body, len, 0, &je)))
		return fl_error(out, 400, "bad_request", "body is not JSON: %s", je.text);
	params = json_object_get(req, "client_params");
	id = json_string_value(json_object_get(params, "id"));
	group = json_string_value(json_object_get(params, "group"));
	if (!json_is_object(params)) {
		st =
		    fl_error(out, 400, "bad_request",
			     "client_params: an object {\"id\": ID, \"group\": GROUP} is required");
		goto done;
	}
	if (!gate_node_name_ok(id)) {
		st = fl_error(out, 400, "bad_request",
			      "client_params.id: the node's name (a Kubernetes node name: "
			      "lowercase letters, digits, '-' and '.') is required");
		goto done;
	}
	if (!group_ok(group)) {
		st = fl_error(out, 400, "bad_request",
			      "client_params.group: a non-empty group ([a-zA-Z0-9.-]+) is "
			      "required: " GROUP_LIST);
		goto done;
	}
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
		if (strcmp(groups[i].group, group) == 0)
			role = groups[i].role;
	if (!role) {
		st = fl_error(out, 400, "bad_request",
			      "client_params.group: unknown group '%s'; the gate knows " GROUP_LIST,
			      group);
		goto done;
	}

	/* gate.listen's tokens, like every other route there. */
	if (authorization && strncasecmp(authorization, "Bearer ", 7) == 0)
		token = authorization + 7;
	if ((st = gate_authenticate(g, token, &who, &ans)) != 0) {
		st = translate(ans, st, "unauthorized", out);
		goto done;
	}
	if (strcmp(who, "*") != 0 && strcmp(who, id) != 0) {
		st = fl_error(out, 403, "forbidden",
			      "this token belongs to node %s; client_params.id must be that node's "
			      "name",
			      who);
		goto done;
	}
	if (strcmp(path, PRE_REBOOT) == 0)
		st = lock(g, who, id, group, role, out);
	else
		st = unlock(g, who, id, out);
	log_info("gate: FleetLock %s for %s (group %s): %d",
		 strcmp(path, PRE_REBOOT) == 0 ? "pre-reboot" : "steady-state", id, group, st);
done:
	free(who);
	json_decref(req);
	return st;
}
