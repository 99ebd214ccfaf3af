/*
 * fuzz_state.c - state_parse() on arbitrary pools.json text.
 *
 * Invariants: no crash or leak; a refusal says why, naming the file; what
 * parses serializes to text that parses again to the same text (so a state
 * lbd writes is a state lbd reads back).
 */
#include "lbd/state.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet_logs();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lbd_state st = {0}, st2 = {0};
	char *err = NULL;

	if (state_parse(&st, "pools.json", (const char *)data, size, &err) < 0) {
		FUZZ_ASSERT(err != NULL, "refused without a reason");
		FUZZ_ASSERT(strncmp(err, "pools.json", 10) == 0, "reason without the file: %s",
			    err);
		FUZZ_ASSERT(st.n == 0, "refused but %zu entries kept", st.n);
		free(err);
		state_free(&st);
		return 0;
	}
	char *text = state_serialize(&st);
	FUZZ_ASSERT(state_parse(&st2, "again", text, strlen(text), &err) == 0,
		    "own output refused: %s\n%s", err, text);
	FUZZ_ASSERT(st2.n == st.n, "%zu entries became %zu", st.n, st2.n);
	char *text2 = state_serialize(&st2);
	FUZZ_ASSERT(strcmp(text, text2) == 0, "round trip differs:\n%s\n---\n%s", text, text2);
	free(text);
	free(text2);
	state_free(&st);
	state_free(&st2);
	return 0;
}
