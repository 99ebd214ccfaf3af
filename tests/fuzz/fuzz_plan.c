/*
 * fuzz_plan.c - plan_load_string() (lbctl upgrade|migrate PLAN) on arbitrary
 * YAML, then template expansion of what loaded.
 *
 * The plan is read from memory: no file, no scratch directory.
 *
 * Invariants: no crash, leak or UB; a plan xor errors; every error names the
 * file and is one line (no '\n' inside); failure leaves the plan empty; a plan
 * that loads is complete (pool, nodes with names and hosts, the commands its
 * kind needs), and every template it holds expands for every node with every
 * value given (load time checked them), and expands or names its placeholder
 * with none given; a loaded plan can be freed, twice.
 *
 * Then what `lbctl upgrade|migrate PLAN --dry-run` does with a plan that
 * loaded (issue 19: a plan of more than 256 nodes crashed it, and this
 * harness stopped at the parser): orch_dry_run() on it, with no network.
 * The plan's kubeconfig is replaced by a path that does not exist, so the
 * Kubernetes client is never made and the preflight always has a reason
 * (which also keeps etcd from being asked); lbd and the gate are a stub that
 * answers from the plan itself: a pool with every master's backend, a gate
 * status with a stale lease on the first node, masters granted and refused
 * in turn, workers refused, an unknown input. The hook is only expanded by a
 * dry run, never run. Invariants: the dry run refuses (the preflight cannot
 * pass without a cluster), prints every node it works on and ends with
 * "nothing was changed".
 */
#include <jansson.h>

#include "tests/fuzz/fuzz.h"
#include "upgrade/orchestrator_int.h"
#include "upgrade/plan.h"

#define NAME "fuzz-plan.yaml"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet_logs();
	return 0;
}

static void expand(const char *tmpl, const struct plan_vars *v, bool must)
{
	char *err = (char *)"unset";
	size_t off = (size_t)-1;
	char *out;

	if (!tmpl)
		return;
	out = plan_expand(tmpl, v, &err, &off);
	if (out) {
		FUZZ_ASSERT(err == NULL, "an expansion and an error: %s", err);
		free(out);
		return;
	}
	FUZZ_ASSERT(!must, "a checked template does not expand: %s: %s", tmpl, err);
	FUZZ_ASSERT(err != NULL, "no expansion and no error");
	FUZZ_ASSERT(off < strlen(tmpl) && tmpl[off] == '{', "bad placeholder offset %zu", off);
	free(err);
}

static void loaded(struct plan *p)
{
	const struct plan_vars none = {0};
	char date[32];

	plan_date(date, sizeof(date));
	FUZZ_ASSERT(p->path && !strcmp(p->path, NAME), "path not kept");
	FUZZ_ASSERT(p->pool != NULL, "no pool");
	FUZZ_ASSERT(p->nnodes > 0 && p->nodes != NULL, "no nodes");
	FUZZ_ASSERT(p->lbd_socket || p->lbd_url, "no way to reach lbd");
	FUZZ_ASSERT(p->kind == PLAN_MIGRATION || (p->version && p->upgrade_command),
		    "an upgrade without version or upgrade_command");
	FUZZ_ASSERT(p->kind == PLAN_MIGRATION ||
			(!p->nreplace && !p->nadd && !p->join_command && !p->remove_command),
		    "an upgrade with migration keys");
	for (size_t i = 0; i < p->nnodes; i++) {
		const struct plan_node *n = &p->nodes[i];
		FUZZ_ASSERT(n->name && n->host, "node %zu without name or host", i);
		FUZZ_ASSERT(plan_node_find(p, n->name) == n, "node %s not found first", n->name);
		FUZZ_ASSERT(n->role == PLAN_WORKER || (n->backend && n->etcd),
			    "master %s without backend or etcd member", n->name);

		struct plan_vars all = {.node = n->name,
					.host = n->host,
					.version = p->version ? p->version : "v0.0.0",
					.date = date,
					.old_node = n->name,
					.new_node = n->name};
		expand(p->upgrade_command, &all, true);
		expand(p->hook_preflight, &all, true);
		expand(p->join_command, &all, true);
		expand(p->remove_command, &all, true);
	}
	expand(p->upgrade_command, &none, false);
	expand(p->hook_preflight, &none, false);
	expand(p->join_command, &none, false);
	expand(p->remove_command, &none, false);
	for (size_t i = 0; i < p->nreplace; i++)
		FUZZ_ASSERT(plan_node_find(p, p->replace[i].old_node) &&
				plan_node_find(p, p->replace[i].new_node),
			    "replace names a node not in nodes");
	for (size_t i = 0; i < p->nadd; i++)
		FUZZ_ASSERT(plan_node_find(p, p->add[i]), "add names a node not in nodes");
	if (p->version) {
		int x, y, z;
		FUZZ_ASSERT(plan_version_parse(p->version, &x, &y, &z) == 0,
			    "accepted version %s does not parse", p->version);
	}
}

/* lbd's admin API and the gate, as the plan would find them. */
static int stub_lbd(void *arg, const char *method, const char *path, json_t *body, long timeout_ms,
		    long *status, json_t **out, char **err)
{
	const struct plan *p = arg;
	char *pool_path = xasprintf("/v1/pools/%s", p->pool);

	*status = 200;
	if (!strcmp(method, "GET") && !strcmp(path, "/v1/gate/status")) {
		json_t *masters = json_array();
		for (size_t i = 0; i < p->nnodes; i++)
			if (p->nodes[i].role == PLAN_MASTER)
				json_array_append_new(masters,
						      json_pack("{s:s, s:b, s:[s]}", "node",
								p->nodes[i].name, "granted",
								(int)(i % 2 == 0), "reasons",
								"another master is down"));
		*out = json_pack("{s:{s:{s:b, s:s}}, s:[{s:s, s:b, s:s}], s:o, s:{s:b, s:[s]}}",
				 "inputs", "etcd", "known", 0, "why", "fuzz", "leases", "node",
				 p->nodes[0].name, "stale", 1, "reason", "fuzz", "master", masters,
				 "worker", "granted", 0, "reasons", "outside the window");
	} else if (!strcmp(method, "GET") && !strcmp(path, pool_path)) {
		json_t *b = json_array();
		for (size_t i = 0; i < p->nnodes; i++)
			if (p->nodes[i].backend)
				json_array_append_new(
				    b, json_pack("{s:s, s:s, s:b, s:s, s:i}", "name",
						 p->nodes[i].backend, "address",
						 p->nodes[i].address ? p->nodes[i].address
								     : "127.0.0.1:1",
						 "up", (int)(i % 3 != 0), "state", "enabled",
						 "weight", 1));
		*out = json_pack("{s:s, s:o}", "name", p->pool, "backends", b);
	} else {
		*status = 404;
		*out = json_pack("{s:s}", "error", "no such route (fuzz stub)");
	}
	free(pool_path);
	FUZZ_ASSERT(*out != NULL, "the stub's answer did not encode");
	return 0;
}

static void dry_run(struct plan *p)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	FUZZ_ASSERT(f != NULL, "open_memstream");
	/* No cluster: never the plan's kubeconfig (nor $KUBECONFIG). */
	free(p->kubeconfig);
	p->kubeconfig = xstrdup("/nonexistent/lbd-fuzz-plan/kubeconfig");
	struct orch o = {.plan = p, .call = stub_lbd, .call_arg = p};
	int rc = orch_dry_run(&o, f, false);
	fclose(f);
	FUZZ_ASSERT(rc == ORCH_FAILED, "a dry run without a cluster returned %d", rc);
	FUZZ_ASSERT(o.p == NULL, "the run's private state was not freed");
	FUZZ_ASSERT(len > 0 && strstr(text, "nothing was changed\n"), "dry run output ends:\n%s",
		    len > 400 ? text + len - 400 : text);
	FUZZ_ASSERT(strstr(text, "REFUSE  kubeconfig: "),
		    "the preflight did not refuse the kubeconfig");
	/* Every node the run would work on has its header in STEPS. */
	size_t n;
	const struct plan_node **order = orch_node_order(p, &n);
	const char *steps = strstr(text, "\nSTEPS\n");
	FUZZ_ASSERT(steps, "no STEPS section");
	for (size_t i = 0; i < n; i++) {
		FUZZ_ASSERT(order[i] != NULL, "a node in the order is not in the plan");
		char *head = xasprintf("\n%s (%s", order[i]->name, plan_role_name(order[i]->role));
		FUZZ_ASSERT(strstr(steps, head), "node %s missing from the steps", order[i]->name);
		free(head);
	}
	free(order);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct plan p;
	struct plan_errors errs;
	int rc = plan_load_string((const char *)data, size, NAME, &p, &errs);

	if (rc == 0) {
		FUZZ_ASSERT(errs.n == 0 && errs.msgs == NULL, "a plan and %zu errors", errs.n);
		loaded(&p);
		dry_run(&p);
		plan_free(&p);
		plan_free(&p); /* freeing leaves it empty */
	} else {
		FUZZ_ASSERT(rc == -1, "plan_load_string returned %d", rc);
		FUZZ_ASSERT(errs.n > 0, "no plan and no error");
		FUZZ_ASSERT(p.path == NULL && p.nodes == NULL && p.nnodes == 0 && p.pool == NULL,
			    "failure left a half plan");
		for (size_t i = 0; i < errs.n; i++) {
			FUZZ_ASSERT(strncmp(errs.msgs[i], NAME ":", sizeof(NAME)) == 0,
				    "error without the file name: %s", errs.msgs[i]);
			FUZZ_ASSERT(strchr(errs.msgs[i], '\n') == NULL,
				    "error of more than one line: %s", errs.msgs[i]);
		}
	}
	plan_errors_free(&errs);
	return 0;
}
