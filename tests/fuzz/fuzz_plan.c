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
 */
#include "tests/fuzz/fuzz.h"
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct plan p;
	struct plan_errors errs;
	int rc = plan_load_string((const char *)data, size, NAME, &p, &errs);

	if (rc == 0) {
		FUZZ_ASSERT(errs.n == 0 && errs.msgs == NULL, "a plan and %zu errors", errs.n);
		loaded(&p);
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
