/*
 * fuzz.h - what the libFuzzer harnesses share (header only: each harness is
 * one .c linked alone against the project's objects).
 */
#ifndef LBD_FUZZ_H
#define LBD_FUZZ_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Removes a harness's scratch directory when the fuzzer exits. */
static char fuzz_scratch[128];

static inline int fuzz_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path) < 0 ? 0 : 0;
}

static inline void fuzz_rm_scratch(void)
{
	if (fuzz_scratch[0])
		nftw(fuzz_scratch, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void fuzz_scratch_at_exit(const char *dir)
{
	snprintf(fuzz_scratch, sizeof(fuzz_scratch), "%s", dir);
	atexit(fuzz_rm_scratch);
}

#endif
