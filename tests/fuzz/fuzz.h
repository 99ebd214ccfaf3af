/*
 * fuzz.h - what the libFuzzer harnesses share (header only: each harness is
 * one .c linked alone against the project's objects).
 */
#ifndef LBD_FUZZ_H
#define LBD_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A harness's own invariant broke: abort, so libFuzzer keeps the input. */
#define FUZZ_ASSERT(cond, ...)                                                                     \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz invariant failed at %s:%d: %s: ", __FILE__,          \
				__LINE__, #cond);                                                  \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A NUL-terminated copy of the input (parsers that want C strings). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = xmalloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Logs only what is worse than a warning: the fuzzer's own output stays readable. */
static inline void fuzz_quiet_logs(void)
{
	log_setup(LOG_FMT_TEXT, LOG_LVL_ERR, "fuzz");
}

#endif
