/*
 * fuzz_gate.c - gate_handle(), the gate API without a transport.
 *
 * Input: up to 8 requests separated by lines "---", each
 * "METHOD PATH\nTOKEN\nBODY". TOKEN "-" is the admin socket (no
 * token); anything else is sent as the bearer token of the TCP listener
 * (the tokens file knows "node-1 tok1" and "* admintok"). BODY, when not
 * empty, must be JSON (the listener answers 400 before gate_handle
 * otherwise, so such inputs stop here).
 *
 * The gate runs for real: config file, tokens file and file store in a
 * scratch directory, its thread ticking. No quorum inputs are configured, so
 * grants happen and the whole acquire/renew/release path runs. After each
 * input every lease is released, so inputs do not pile up state.
 *
 * Invariants: no crash or leak; a status in 200..599 and a JSON object
 * answer; an error answer says why ("error" or "reasons").
 */
#include <errno.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gate/gate.h"
#include "tests/fuzz/fuzz.h"

static struct gate *g;
static char dir[64];

static void put(const char *name, const char *text, mode_t mode, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || chmod(path, mode) < 0)
		fatal("fuzz_gate: cannot write %s", path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char cfg[128], tokens[128], yaml[1024], *err = NULL;

	fuzz_quiet_logs();
	snprintf(dir, sizeof(dir), "/tmp/lbd-fuzz-gate.%d", (int)getpid());
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		fatal("fuzz_gate: mkdir %s", dir);
	fuzz_scratch_at_exit(dir);
	snprintf(cfg, sizeof(cfg), "%s/state", dir);
	if (mkdir(cfg, 0700) < 0 && errno != EEXIST)
		fatal("fuzz_gate: mkdir %s", cfg);
	put("tokens", "# node token\nnode-1 tok1\nnode-2 tok2\n* admintok\n", 0600, tokens,
	    sizeof(tokens));
	snprintf(yaml, sizeof(yaml),
		 "state_dir: %s/state\n"
		 "admin: {socket: %s/admin.sock}\n"
		 "frontends: [{name: v, listen: \"127.0.0.1:1\", pool: m}]\n"
		 "pools:\n"
		 "  - name: m\n"
		 "    backends: [{name: node-1, address: \"127.0.0.1:2\"}]\n"
		 "gate:\n"
		 "  tokens_file: %s\n"
		 "  store: file\n"
		 "  concurrency: {masters: 1, workers: 2}\n"
		 "  lease_ttl: 1h\n",
		 dir, dir, tokens);
	put("lbd.yaml", yaml, 0600, cfg, sizeof(cfg));
	struct config_errors errs = {0};
	struct config *c = config_load(cfg, &errs);
	if (!c)
		fatal("fuzz_gate: %s", errs.n ? errs.msgs[0] : "config");
	g = gate_start(NULL, c, -1, false, &err);
	if (!g)
		fatal("fuzz_gate: gate_start: %s", err ? err : "no gate section?");
	return 0;
}

static void check_answer(int status, json_t *out)
{
	FUZZ_ASSERT(status >= 200 && status <= 599, "status %d", status);
	FUZZ_ASSERT(json_is_object(out), "answer is not a JSON object (status %d)", status);
	if (status >= 400)
		FUZZ_ASSERT(json_object_get(out, "error") || json_object_get(out, "reasons"),
			    "status %d without a reason", status);
}

/* Back to no leases, through the API itself. */
static void release_all(void)
{
	json_t *out = NULL;
	int status = gate_handle(g, "GET", "/v1/gate/leases", NULL, NULL, &out);
	FUZZ_ASSERT(status == 200, "listing leases: %d", status);
	json_t *leases = json_object_get(out, "leases"), *l;
	size_t i;
	json_array_foreach(leases, i, l)
	{
		char path[512];
		json_t *o2 = NULL;
		snprintf(path, sizeof(path), "/v1/gate/leases/%s",
			 json_string_value(json_object_get(l, "node")));
		status = gate_handle(g, "DELETE", path, NULL, NULL, &o2);
		FUZZ_ASSERT(status == 200, "releasing %s: %d", path, status);
		json_decref(o2);
	}
	json_decref(out);
}

/* One request: "METHOD PATH\nTOKEN\nBODY". */
static void one(char *req)
{
	char *line2 = NULL, *body_text = NULL, *nl = strchr(req, '\n');

	if (nl) {
		*nl = '\0';
		line2 = nl + 1;
		if ((nl = strchr(line2, '\n'))) {
			*nl = '\0';
			body_text = nl + 1;
		}
	}
	char *sp = strchr(req, ' ');
	if (!sp)
		return;
	*sp = '\0';
	const char *method = req, *path = sp + 1;
	const char *token = !line2 || strcmp(line2, "-") == 0 ? NULL : line2;
	json_t *body = NULL, *out = NULL;
	if (body_text && *body_text) {
		json_error_t je;
		if (!(body = json_loads(body_text, 0, &je)))
			return;
	}
	int status = gate_handle(g, method, path, token, body, &out);
	check_answer(status, out);
	json_decref(out);
	json_decref(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_cstr(data, size), *req = text;

	/* Up to 8 requests separated by "\n---\n": acquire, renew, release... */
	for (int i = 0; req && i < 8; i++) {
		char *sep = strstr(req, "\n---\n");
		if (sep)
			*sep = '\0';
		one(req);
		req = sep ? sep + 5 : NULL;
	}
	free(text);
	release_all();
	return 0;
}
