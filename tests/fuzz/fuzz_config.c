/*
 * fuzz_config.c - config_load_string() on arbitrary YAML.
 *
 * Invariants: it never crashes or leaks; it returns a config xor errors; every
 * error names the file ("fuzz.yaml:line:col: message" or at least "fuzz.yaml:").
 */
#include "config/config.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet_logs();
	sockaddr_conf_set_dns(false); /* random names must not become DNS queries */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_errors errs = {0};
	struct config *cfg = config_load_string("fuzz.yaml", (const char *)data, size, &errs);

	if (cfg) {
		FUZZ_ASSERT(errs.n == 0, "a config and %zu errors", errs.n);
		FUZZ_ASSERT(cfg->state_dir != NULL, "no state_dir after defaults");
		for (size_t i = 0; i < cfg->nfrontends; i++)
			FUZZ_ASSERT(config_pool(cfg, cfg->frontends[i].pool) != NULL,
				    "frontend %s names an unknown pool", cfg->frontends[i].name);
		config_free(cfg);
	} else {
		FUZZ_ASSERT(errs.n > 0, "no config and no error");
		for (size_t i = 0; i < errs.n; i++)
			FUZZ_ASSERT(strncmp(errs.msgs[i], "fuzz.yaml:", 10) == 0,
				    "error without the file name: %s", errs.msgs[i]);
	}
	config_errors_free(&errs);
	return 0;
}
